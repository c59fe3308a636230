//! Logging: `tracing` records to stderr, as text or as JSON lines for log shippers, and, when
//! `daemon.log_dir` is set, to log files that are rotated every day (UTC) and pruned.
//!
//! # Where a record goes
//!
//! ```text
//!                ┌─▶ stderr               filter: $SGEVENTS_LOG, else daemon.log_level
//!   a record ────┼─▶ sgevents.log         same filter; with per-plugin files, not plugins' stderr
//!   (tracing)    ├─▶ plugins/<name>.log   same filter; records that carry `plugin = <name>`
//!                └─▶ timing.log           only target `sgevents::timing`, whatever the filter
//! ```
//!
//! The timing records (one per answered delivery) are kept off stderr, `sgevents.log` and the
//! plugin files unless the filter names `sgevents::timing` itself: at thousands of events a second
//! they would drown everything else.
//!
//! A plugin's stderr lines are relayed by `plugin/child.rs` with target [`PLUGIN_TARGET`], their
//! own level and a `plugin` field. With `log_per_plugin` they go to that plugin's file only (and
//! stderr); the daemon's own records about a plugin (restarts, failed events) carry the same field
//! and go to both `sgevents.log` and the plugin's file.
//!
//! # Files
//!
//! The current file keeps its plain name (`sgevents.log`), so `tail -F` follows it; at the first
//! record of a new day it is renamed `sgevents.log.2026-11-01` (the day its lines were written) and
//! a new one is started, and the oldest rotated files beyond `log_retention` are deleted. A file
//! left by an earlier run on an earlier day is rotated when the daemon starts.
//!
//! Files are written by one background thread: a record is formatted on the thread that logs it
//! and queued (never blocking the daemon on a slow disk; when the queue is full the record is
//! dropped, and a line in `sgevents.log` says how many were). The [`LogGuard`] that [`init`] returns
//! flushes the queue when it is dropped, so `main` holds it for the life of the process.
//!
//! **Invariant:** the log folder and the files opened at start are checked by [`init`], so a
//! folder the daemon cannot write stops it at start with an error naming the path.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata};
use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::fmt::{self, MakeWriter};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::Registry;
use tracing_subscriber::util::SubscriberInitExt;

/// The target of the timing records: one per answered delivery, for `timing.log`.
pub const TIMING_TARGET: &str = "sgevents::timing";
/// The target of the lines a plugin writes on stderr, relayed by `plugin/child.rs`.
pub const PLUGIN_TARGET: &str = "plugin";
/// The daemon's log file, in the log folder.
pub const MAIN_FILE: &str = "sgevents.log";
/// The timing log, in the log folder.
pub const TIMING_FILE: &str = "timing.log";
/// The folder of the per-plugin files, in the log folder.
pub const PLUGINS_DIR: &str = "plugins";
/// The environment variable whose filter overrides `daemon.log_level`.
pub const FILTER_ENV: &str = "SGEVENTS_LOG";

/// Whether something takes the timing records (`timing.log`, or a filter that names their target);
/// set once by [`init`]. The plugin actors ask [`timing_records_taken`] rather than
/// tracing's `enabled!` macro: with per-layer filters, a check that the filter refuses can leave
/// the refusal behind in the thread's filter state (when it races the callsite's registration on
/// another thread), and the next record on that thread is then dropped.
static TIMING_TAKEN: AtomicBool = AtomicBool::new(false);

/// Whether the timing records go anywhere (see [`TIMING_TAKEN`]).
pub fn timing_records_taken() -> bool {
    TIMING_TAKEN.load(Ordering::Relaxed)
}

/// Whether the logger of `opts` takes timing records somewhere.
fn takes_timing(opts: &LogOptions) -> bool {
    opts.files.as_ref().is_some_and(|f| f.timing) || opts.filter.contains(TIMING_TARGET)
}

/// Records waiting for the file writer; past this, new ones are dropped (and counted).
const QUEUE_LINES: usize = 64 * 1024;
/// How many rotated files with the same date may pile up (clock changes) before the oldest is
/// overwritten.
const MAX_SAME_DAY: u32 = 100;

/// How records are written, on stderr and in the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per record
    #[default]
    Text,
    /// One JSON object per line, for log shippers
    Json,
}

impl LogFormat {
    /// Reads `"text"` or `"json"` (any case).
    pub fn parse(text: &str) -> Option<LogFormat> {
        match text.to_ascii_lowercase().as_str() {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// Everything [`init`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    /// The filter in force: `$SGEVENTS_LOG`, else `daemon.log_level` (an `EnvFilter` directive).
    pub filter: String,
    /// Text or JSON.
    pub format: LogFormat,
    /// Colour on stderr (text only).
    pub ansi: bool,
    /// The log files; `None`: stderr only.
    pub files: Option<LogFiles>,
    /// A problem to log once logging works (an unusable `$SGEVENTS_LOG`).
    pub warning: Option<String>,
}

/// The log files of `sgevents run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFiles {
    /// The log folder.
    pub dir: PathBuf,
    /// How many daily files of each log are kept, the current one included (at least 1).
    pub retention: u32,
    /// One more file per plugin, `plugins/<name>.log`.
    pub per_plugin: bool,
    /// `timing.log`.
    pub timing: bool,
}

/// The log settings of `[daemon]` (`daemon.log_*` and `daemon.timing_log`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `log_dir`: where the log files go; `None`: stderr only.
    pub dir: Option<PathBuf>,
    /// `log_retention`: how many daily files of each log are kept, the current one included.
    pub retention: u32,
    /// `log_per_plugin`: one more file per plugin, `plugins/<name>.log`.
    pub per_plugin: bool,
    /// `log_format`: on stderr and in the files; the `--log-format` flag overrides it.
    pub format: LogFormat,
    /// `timing_log`: `timing.log`, one line per answered delivery.
    pub timing: bool,
}

impl LogOptions {
    /// The options of a command: the configuration's `daemon.log_level` and log keys (`logs`), the
    /// `--log-format` flag (which wins over `daemon.log_format`), `$SGEVENTS_LOG`, and whether this
    /// command writes the log files (only `run` does: `status` and `check` must not rotate the
    /// daemon's files).
    pub fn from_config(
        log_level: &str,
        logs: &LogConfig,
        format: Option<LogFormat>,
        with_files: bool,
    ) -> LogOptions {
        let (filter, warning) = choose_filter(std::env::var(FILTER_ENV).ok(), log_level);
        let format = format.unwrap_or(logs.format);
        let files = match (&logs.dir, with_files) {
            (Some(dir), true) => Some(LogFiles {
                dir: dir.clone(),
                retention: logs.retention,
                per_plugin: logs.per_plugin,
                timing: logs.timing,
            }),
            _ => None,
        };
        use std::io::IsTerminal;
        LogOptions {
            filter,
            format,
            ansi: format == LogFormat::Text && std::io::stderr().is_terminal(),
            files,
            warning,
        }
    }
}

/// The levels a filter directive may name alone.
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Checks a log filter (`daemon.log_level`, `$SGEVENTS_LOG`): an `EnvFilter` whose directives are
/// each a level (`debug`) or `target=level` (`sgevents=debug`). A bare word that is not a level is
/// a valid `EnvFilter` (a target name, every level), but one that silences everything else, so it
/// is refused: `verbose` is a mistake, not a wish.
pub fn validate_filter(text: &str) -> Result<(), String> {
    EnvFilter::builder()
        .parse(text)
        .map_err(|e| e.to_string())?;
    for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if !directive.contains('=') && !directive.contains('[') {
            let word = directive.to_ascii_lowercase();
            if !LEVELS.contains(&word.as_str()) {
                return Err(format!(
                    "`{directive}` is not a level (one of {})",
                    LEVELS.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// `$SGEVENTS_LOG` when it is set and valid, else `log_level`; and a warning for an invalid one.
fn choose_filter(env: Option<String>, log_level: &str) -> (String, Option<String>) {
    match env {
        Some(text) if !text.trim().is_empty() => match validate_filter(&text) {
            Ok(()) => (text, None),
            Err(e) => (
                log_level.to_owned(),
                Some(format!(
                    "ignoring ${FILTER_ENV} = `{text}`: {e}; using `daemon.log_level` = `{log_level}`\nhint: write levels such as `debug`, or a filter such as `info,sgevents=debug`"
                )),
            ),
        },
        _ => (log_level.to_owned(), None),
    }
}

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log folder (or its `plugins` folder) cannot be created.
    #[error("cannot create the log folder `{}`: {error}\nhint: create it and let the daemon's user write in it, or change `daemon.log_dir`", .dir.display())]
    Dir {
        /// The folder.
        dir: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// A log file cannot be opened for writing.
    #[error("cannot write the log file `{}`: {error}\nhint: let the daemon's user write in the log folder, or change `daemon.log_dir`", .file.display())]
    File {
        /// The file.
        file: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// The writer thread cannot start.
    #[error(
        "cannot start the log writer: {0}\nhint: the system is out of threads or memory; retry"
    )]
    Thread(io::Error),
    /// Another logger is installed already (a bug).
    #[error("logging is already set up: {0}")]
    Installed(String),
}

/// Keeps the file writer running; dropping it writes out what is queued and stops it. Hold it
/// until the process ends.
#[must_use = "dropping the guard stops the log files"]
#[derive(Debug, Default)]
pub struct LogGuard {
    /// Only dropped: its `Drop` stops the writer.
    _writer: Option<WriterGuard>,
}

/// Installs the global logger described by `opts`: stderr, and the files when `opts.files` is set.
pub fn init(opts: &LogOptions) -> Result<LogGuard, LogError> {
    let (layers, guard) = layers(opts, Redacting(std::io::stderr))?;
    TIMING_TAKEN.store(takes_timing(opts), Ordering::Relaxed);
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|e| LogError::Installed(e.to_string()))?;
    if let Some(warning) = &opts.warning {
        tracing::warn!("{warning}");
    }
    Ok(guard)
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// The layers of `opts`, with `stderr` as the stderr writer (a buffer in tests).
fn layers<W>(opts: &LogOptions, stderr: W) -> Result<(Vec<BoxedLayer>, LogGuard), LogError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let mut layers = vec![
        format_layer(opts.format, stderr, opts.ansi)
            .with_filter(general_filter(&opts.filter))
            .boxed(),
    ];
    let Some(files) = &opts.files else {
        return Ok((layers, LogGuard::default()));
    };
    let writer = FileWriter::start(files, opts.format)?;
    let main = format_layer(opts.format, writer.handle(MAIN_FILE), false);
    if files.per_plugin {
        let not_plugin_lines = filter_fn(|m: &Metadata<'_>| m.target() != PLUGIN_TARGET);
        layers.push(
            main.with_filter(FilterExt::<Registry>::and(
                general_filter(&opts.filter),
                not_plugin_lines,
            ))
            .boxed(),
        );
        layers.push(
            PluginFiles::new(opts.format, writer.clone())
                .with_filter(general_filter(&opts.filter))
                .boxed(),
        );
    } else {
        layers.push(main.with_filter(general_filter(&opts.filter)).boxed());
    }
    if files.timing {
        let timing_only = filter_fn(|m: &Metadata<'_>| m.target() == TIMING_TARGET);
        layers.push(
            format_layer(opts.format, writer.handle(TIMING_FILE), false)
                .with_filter(timing_only)
                .boxed(),
        );
    }
    let guard = LogGuard {
        _writer: Some(writer.guard()),
    };
    Ok((layers, guard))
}

/// The filter of stderr, `sgevents.log` and the plugin files: `directives`, with the timing
/// records off unless `directives` names their target.
fn general_filter(directives: &str) -> EnvFilter {
    let mut text = directives.to_owned();
    if !text.contains(TIMING_TARGET) {
        text.push_str(&format!(",{TIMING_TARGET}=off"));
    }
    EnvFilter::builder().parse_lossy(text)
}

/// One formatting layer: text (as the daemon always wrote it: time, level, message, fields) or
/// flat JSON objects (`timestamp`, `level`, `message`, the fields, `target`).
fn format_layer<W>(format: LogFormat, writer: W, ansi: bool) -> BoxedLayer
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    match format {
        LogFormat::Text => fmt::layer()
            .with_writer(writer)
            .with_ansi(ansi)
            .with_target(false)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .with_ansi(false)
            .boxed(),
    }
}

// ---------------------------------------------------------------------------------------------
// One file per plugin.

/// Sends each record that carries a `plugin` field (on itself or on a span it is in) to that
/// plugin's file, formatted by a layer of its own made on the plugin's first record.
struct PluginFiles {
    format: LogFormat,
    writer: FileWriter,
    by_plugin: Mutex<HashMap<String, Arc<BoxedLayer>>>,
    /// A layer of the same format that formats spans' fields, which the per-plugin layers (made
    /// after the span, or never told of it) then find in the span's extensions.
    spans: BoxedLayer,
}

/// A span's `plugin` field, kept in its extensions.
struct SpanPlugin(String);

impl PluginFiles {
    fn new(format: LogFormat, writer: FileWriter) -> PluginFiles {
        PluginFiles {
            format,
            spans: format_layer(format, io::sink, false),
            writer,
            by_plugin: Mutex::default(),
        }
    }

    fn layer_of(&self, plugin: &str) -> Arc<BoxedLayer> {
        let mut map = self.by_plugin.lock().unwrap_or_else(|e| e.into_inner());
        let layer = map.entry(plugin.to_owned()).or_insert_with(|| {
            let file = format!("{PLUGINS_DIR}/{plugin}.log");
            Arc::new(format_layer(self.format, self.writer.handle(&file), false))
        });
        Arc::clone(layer)
    }
}

impl Layer<Registry> for PluginFiles {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, Registry>) {
        let mut found = PluginField::default();
        attrs.record(&mut found);
        if let (Some(name), Some(span)) = (found.0, ctx.span(id)) {
            span.extensions_mut().insert(SpanPlugin(name));
        }
        self.spans.on_new_span(attrs, id, ctx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, Registry>) {
        self.spans.on_record(id, values, ctx);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, Registry>) {
        let mut found = PluginField::default();
        event.record(&mut found);
        let name = found.0.or_else(|| {
            ctx.event_scope(event)?
                .find_map(|span| span.extensions().get::<SpanPlugin>().map(|p| p.0.clone()))
        });
        if let Some(name) = name.filter(|n| is_file_name(n)) {
            self.layer_of(&name).on_event(event, ctx);
        }
    }
}

/// A plugin name that is safe as a file name (the configuration allows no other, but a record's
/// field could say anything).
fn is_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Finds a field named `plugin`.
#[derive(Default)]
struct PluginField(Option<String>);

impl Visit for PluginField {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "plugin" {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `plugin = %name` arrives here, as a value whose Debug is its Display.
        if field.name() == "plugin" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Redaction of stderr (the files redact in `FileHandle`).

/// A `MakeWriter` whose writers redact each record ([`crate::redact`]) before writing it.
struct Redacting<M>(M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(self.0.make_writer())
    }
}

struct RedactingWriter<W>(W);

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // One record per `write_all`: a buffer is a whole line, never half a secret.
        self.0.write_all(&crate::redact::redact_bytes(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

// ---------------------------------------------------------------------------------------------
// The file writer: a queue and one thread that owns every open file.

enum Message {
    /// A formatted record for the file of that name (relative to the log folder).
    Record(Arc<str>, Vec<u8>),
    /// Write out what is queued and stop.
    Stop,
}

/// The sending side of the writer thread's queue.
#[derive(Clone)]
struct FileWriter {
    tx: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl FileWriter {
    /// Creates the folders, opens (and if needed rotates) `sgevents.log` and `timing.log`, and
    /// starts the thread.
    fn start(files: &LogFiles, format: LogFormat) -> Result<FileWriter, LogError> {
        let dir_error = |dir: &Path| {
            let dir = dir.to_path_buf();
            move |error| LogError::Dir { dir, error }
        };
        create_log_dir(&files.dir).map_err(dir_error(&files.dir))?;
        if files.per_plugin {
            let plugins = files.dir.join(PLUGINS_DIR);
            create_log_dir(&plugins).map_err(dir_error(&plugins))?;
        }
        let retention = files.retention.max(1);
        let today = day_of(SystemTime::now());
        let mut open = HashMap::new();
        let mut names = vec![MAIN_FILE];
        if files.timing {
            names.push(TIMING_FILE);
        }
        for name in names {
            let path = files.dir.join(name);
            let file = RollingFile::open(path.clone(), retention, today)
                .map_err(|error| LogError::File { file: path, error })?;
            open.insert(Arc::<str>::from(name), file);
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_LINES);
        let dropped = Arc::new(AtomicU64::new(0));
        let state = Files {
            dir: files.dir.clone(),
            retention,
            format,
            open,
        };
        let thread = std::thread::Builder::new()
            .name("sgevents-log".into())
            .spawn({
                let dropped = Arc::clone(&dropped);
                move || write_files(rx, state, &dropped)
            })
            .map_err(LogError::Thread)?;
        Ok(FileWriter {
            tx,
            dropped,
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    /// A writer for the fmt layers, into the file `name` of the log folder.
    fn handle(&self, name: &str) -> FileHandle {
        FileHandle {
            name: Arc::from(name),
            writer: self.clone(),
        }
    }

    fn guard(&self) -> WriterGuard {
        WriterGuard {
            tx: self.tx.clone(),
            thread: self.thread.lock().unwrap_or_else(|e| e.into_inner()).take(),
        }
    }

    fn send(&self, name: &Arc<str>, bytes: &[u8]) {
        match self
            .tx
            .try_send(Message::Record(Arc::clone(name), bytes.to_vec()))
        {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Stops the writer thread when dropped, after it wrote what was queued.
struct WriterGuard {
    tx: SyncSender<Message>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for WriterGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterGuard").finish_non_exhaustive()
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        if self.tx.send(Message::Stop).is_ok() {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// The `MakeWriter` of one file: each formatted record becomes one queued message.
struct FileHandle {
    name: Arc<str>,
    writer: FileWriter,
}

impl<'a> MakeWriter<'a> for FileHandle {
    type Writer = &'a FileHandle;

    fn make_writer(&'a self) -> &'a FileHandle {
        self
    }
}

impl Write for &FileHandle {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // The fmt layer writes each record with one `write_all` of its whole line; a secret a
        // plugin logged never reaches the file.
        self.writer
            .send(&self.name, &crate::redact::redact_bytes(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the writer thread owns.
struct Files {
    dir: PathBuf,
    retention: u32,
    format: LogFormat,
    /// Open files by name; a plugin's file is opened at its first record.
    open: HashMap<Arc<str>, RollingFile>,
}

impl Files {
    fn write(&mut self, name: &Arc<str>, today: u64, bytes: &[u8]) {
        if !self.open.contains_key(name) {
            let path = self.dir.join(&**name);
            let file = RollingFile::open(path.clone(), self.retention, today).unwrap_or_else(|e| {
                report(self.format, &path, &e);
                RollingFile::broken(path, self.retention, today)
            });
            self.open.insert(Arc::clone(name), file);
        }
        if let Some(file) = self.open.get_mut(name) {
            file.write(today, bytes, self.format);
        }
    }

    fn flush(&mut self) {
        for file in self.open.values_mut() {
            file.flush(self.format);
        }
    }
}

/// The writer thread: writes batches of queued records, flushing after each batch, until told to
/// stop.
fn write_files(rx: Receiver<Message>, mut files: Files, dropped: &AtomicU64) {
    let main: Arc<str> = Arc::from(MAIN_FILE);
    while let Ok(first) = rx.recv() {
        let today = day_of(SystemTime::now());
        let mut stop = false;
        for message in std::iter::once(first).chain(rx.try_iter()) {
            match message {
                Message::Record(name, bytes) => files.write(&name, today, &bytes),
                Message::Stop => {
                    stop = true;
                    break;
                }
            }
        }
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let note = format!(
                "{} WARN {lost} log records were dropped: the log files could not keep up\n",
                humantime::format_rfc3339_micros(SystemTime::now())
            );
            files.write(&main, today, note.as_bytes());
        }
        files.flush();
        if stop {
            return;
        }
    }
}

/// Says on stderr that a log file failed. The writer cannot log through `tracing` (its records
/// would come back to it), so it writes one line in the stderr format.
fn report(format: LogFormat, path: &Path, error: &io::Error) {
    let message = format!(
        "cannot write the log file `{}`: {error}; its records are lost until it can be written",
        path.display()
    );
    let now = humantime::format_rfc3339_micros(SystemTime::now());
    match format {
        LogFormat::Text => eprintln!("{now} ERROR {message}"),
        LogFormat::Json => eprintln!(
            "{}",
            serde_json::json!({"timestamp": now.to_string(), "level": "ERROR", "message": message, "target": "sgevents::logging"})
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Daily rotation.

/// A log file that starts afresh every day (UTC): `NAME` is the current one, `NAME.YYYY-MM-DD`
/// the earlier days', of which `retention - 1` are kept.
struct RollingFile {
    path: PathBuf,
    retention: u32,
    /// `None` after an error: reopened at the next record.
    out: Option<BufWriter<File>>,
    /// The day (since the epoch, UTC) the current file's lines belong to.
    day: u64,
    /// An error was reported and the file has not worked since.
    failing: bool,
}

impl RollingFile {
    /// Opens `path` for appending, rotating it first when it was last written on an earlier day.
    fn open(path: PathBuf, retention: u32, today: u64) -> io::Result<RollingFile> {
        if let Ok(modified) = std::fs::metadata(&path).and_then(|m| m.modified()) {
            let day = day_of(modified);
            if day < today {
                std::fs::rename(&path, rotated_name(&path, day))?;
            }
        }
        let out = open_append(&path)?;
        let file = RollingFile {
            path,
            retention,
            out: Some(out),
            day: today,
            failing: false,
        };
        file.prune();
        Ok(file)
    }

    /// A file that could not be opened; it is retried at each record.
    fn broken(path: PathBuf, retention: u32, today: u64) -> RollingFile {
        RollingFile {
            path,
            retention,
            out: None,
            day: today,
            failing: true,
        }
    }

    fn write(&mut self, today: u64, bytes: &[u8], format: LogFormat) {
        // A clock that goes back does not rotate: the lines stay in the newer day's file.
        if today > self.day {
            self.rotate(today, format);
        }
        if self.out.is_none() {
            match open_append(&self.path) {
                Ok(out) => self.out = Some(out),
                Err(e) => return self.fail(&e, format),
            }
        }
        if let Some(out) = &mut self.out {
            match out.write_all(bytes) {
                Ok(()) => self.failing = false,
                Err(e) => self.fail(&e, format),
            }
        }
    }

    fn flush(&mut self, format: LogFormat) {
        if let Some(out) = &mut self.out {
            if let Err(e) = out.flush() {
                self.fail(&e, format);
            }
        }
    }

    fn fail(&mut self, error: &io::Error, format: LogFormat) {
        self.out = None;
        if !self.failing {
            self.failing = true;
            report(format, &self.path, error);
        }
    }

    /// Closes the current file as `NAME.<its day>`, starts a new one and prunes the old ones.
    fn rotate(&mut self, today: u64, format: LogFormat) {
        self.flush(format);
        // Rename only the file this writer has open: if someone moved it away (logrotate, an
        // operator) the name is left alone.
        let ours = match (&self.out, std::fs::metadata(&self.path)) {
            (Some(out), Ok(on_disk)) => out
                .get_ref()
                .metadata()
                .is_ok_and(|m| (m.dev(), m.ino()) == (on_disk.dev(), on_disk.ino())),
            _ => false,
        };
        self.out = None;
        if ours {
            if let Err(e) = std::fs::rename(&self.path, rotated_name(&self.path, self.day)) {
                report(format, &self.path, &e);
            }
        }
        self.day = today;
        self.prune();
    }

    /// Deletes the oldest rotated files beyond `retention - 1`.
    fn prune(&self) {
        let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name()) else {
            return;
        };
        let prefix = format!("{}.", name.to_string_lossy());
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut rotated: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.strip_prefix(&prefix).is_some_and(starts_with_date))
            .collect();
        // `NAME.2026-11-01` < `NAME.2026-11-01.1` < `NAME.2026-11-02`: oldest first.
        rotated.sort();
        let keep = self.retention.saturating_sub(1) as usize;
        let excess = rotated.len().saturating_sub(keep);
        for old in &rotated[..excess] {
            let _ = std::fs::remove_file(dir.join(old));
        }
    }
}

fn open_append(path: &Path) -> io::Result<BufWriter<File>> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(LOG_FILE_MODE)
        .open(path)?;
    // The daemon's umask (077) would leave a new file 0600; an older one may be wider.
    if file.metadata()?.permissions().mode() & 0o777 != LOG_FILE_MODE {
        file.set_permissions(std::fs::Permissions::from_mode(LOG_FILE_MODE))?;
    }
    Ok(BufWriter::with_capacity(64 * 1024, file))
}

/// Log files: the daemon's user writes, its group (operators, a log shipper) reads.
const LOG_FILE_MODE: u32 = 0o640;
/// The log folder and its `plugins` folder.
const LOG_DIR_MODE: u32 = 0o750;

/// Creates a log folder if needed, and makes it 0750 (the daemon runs under umask 077).
fn create_log_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(LOG_DIR_MODE)
        .create(dir)?;
    if std::fs::metadata(dir)?.permissions().mode() & 0o7777 != LOG_DIR_MODE {
        // Best effort: a folder the daemon does not own keeps its mode.
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(LOG_DIR_MODE));
    }
    Ok(())
}

/// Days since the epoch, UTC.
fn day_of(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

/// `YYYY-MM-DD` of a day since the epoch.
fn date_of(day: u64) -> String {
    let time = UNIX_EPOCH + Duration::from_secs(day * 86_400);
    humantime::format_rfc3339_seconds(time).to_string()[..10].to_owned()
}

fn starts_with_date(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 10
        && b[..10].iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
        && (b.len() == 10 || b[10] == b'.')
}

/// `NAME.YYYY-MM-DD`, or `NAME.YYYY-MM-DD.N` when that exists already.
fn rotated_name(path: &Path, day: u64) -> PathBuf {
    let base = format!("{}.{}", path.display(), date_of(day));
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while candidate.exists() && n < MAX_SAME_DAY {
        candidate = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stderr stand-in that keeps what is written.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = CapturedWriter;
        fn make_writer(&'a self) -> CapturedWriter {
            CapturedWriter(Arc::clone(&self.0))
        }
    }

    struct CapturedWriter(Arc<Mutex<Vec<u8>>>);

    impl Write for CapturedWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn options(filter: &str, format: LogFormat, files: Option<LogFiles>) -> LogOptions {
        LogOptions {
            filter: filter.to_owned(),
            format,
            ansi: false,
            files,
            warning: None,
        }
    }

    /// Runs `f` with the logger of `opts`, its stderr captured; drops the guard (flushing the
    /// files) before returning stderr's text.
    fn with_logger(opts: &LogOptions, f: impl FnOnce()) -> String {
        let stderr = Captured::default();
        let (layers, guard) = layers(opts, stderr.clone()).expect("logging starts");
        let subscriber = tracing_subscriber::registry().with(layers);
        tracing::subscriber::with_default(subscriber, f);
        drop(guard);
        stderr.text()
    }

    /// The record the plugin actor writes for each answered delivery.
    fn timing_record(plugin: &str, event_id: i64) {
        tracing::info!(target: "sgevents::timing", plugin = %plugin, event_id, attempt = 1_u32, outcome = "ack", duration_ms = 1.5_f64, delay_ms = 250_i64, "delivery");
    }

    #[test]
    fn timing_records_are_taken_by_the_timing_file_or_a_filter_that_names_them() {
        let files = |timing| LogFiles {
            dir: PathBuf::from("logs"),
            retention: 1,
            per_plugin: false,
            timing,
        };
        for (filter, files, want) in [
            ("info", None, false),
            ("trace", None, false),
            ("warn,sgevents::timing=info", None, true),
            ("info", Some(files(false)), false),
            ("info", Some(files(true)), true),
        ] {
            let opts = options(filter, LogFormat::Text, files);
            assert_eq!(takes_timing(&opts), want, "{filter} {:?}", opts.files);
        }
    }

    #[test]
    fn timing_records_stay_off_stderr_unless_the_filter_names_them() {
        let text = with_logger(&options("info", LogFormat::Text, None), || {
            tracing::info!("daemon line");
            timing_record("solo", 7);
        });
        assert!(text.contains("daemon line"), "{text}");
        assert!(!text.contains("delivery"), "{text}");

        let text = with_logger(&options("trace", LogFormat::Text, None), || {
            timing_record("solo", 7);
        });
        assert!(!text.contains("delivery"), "even at trace: {text}");

        let text = with_logger(
            &options("warn,sgevents::timing=info", LogFormat::Text, None),
            || {
                tracing::info!("daemon line");
                timing_record("solo", 7);
            },
        );
        assert!(!text.contains("daemon line"), "{text}");
        assert!(
            text.contains("delivery plugin=solo event_id=7"),
            "named explicitly: {text}"
        );
    }

    #[test]
    fn json_lines_are_flat_objects() {
        let text = with_logger(&options("info", LogFormat::Json, None), || {
            tracing::warn!(target: "plugin", plugin = %"alpha", "disk is full");
        });
        let line: serde_json::Value =
            serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(line["level"], "WARN", "{line}");
        assert_eq!(line["plugin"], "alpha", "{line}");
        assert_eq!(line["message"], "disk is full", "{line}");
        assert_eq!(line["target"], "plugin", "{line}");
        assert!(line["timestamp"].is_string(), "{line}");
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    }

    #[test]
    fn files_get_their_records() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = LogFiles {
            dir: dir.path().join("logs"),
            retention: 3,
            per_plugin: true,
            timing: true,
        };
        let stderr = with_logger(&options("info", LogFormat::Text, Some(files)), || {
            tracing::info!("sgevents started");
            tracing::warn!(target: "plugin", plugin = %"alpha", "alpha's own line");
            tracing::error!(target: "plugin", plugin = %"beta", "beta's own line");
            tracing::warn!(plugin = %"alpha", "plugin `alpha` crashed; restarting");
            let span = tracing::info_span!("actor", plugin = %"beta");
            span.in_scope(|| tracing::info!("in beta's span"));
            tracing::debug!(target: "plugin", plugin = %"alpha", "below the filter");
            tracing::info!(target: "plugin", plugin = %"../escape", "a name that is not a file");
            timing_record("alpha", 1);
            timing_record("beta", 2);
        });
        let logs = dir.path().join("logs");
        let main = read(&logs.join("sgevents.log"));
        assert!(main.contains("INFO sgevents started"), "{main}");
        assert!(
            main.contains("plugin `alpha` crashed"),
            "the daemon's records about a plugin stay: {main}"
        );
        assert!(
            !main.contains("own line"),
            "plugin lines go to their files: {main}"
        );
        assert!(!main.contains("delivery"), "{main}");

        let alpha = read(&logs.join("plugins/alpha.log"));
        assert!(
            alpha.contains("WARN alpha's own line plugin=alpha"),
            "{alpha}"
        );
        assert!(alpha.contains("plugin `alpha` crashed"), "{alpha}");
        assert!(!alpha.contains("beta"), "{alpha}");
        assert!(!alpha.contains("below the filter"), "{alpha}");
        assert!(!alpha.contains("delivery"), "{alpha}");

        let beta = read(&logs.join("plugins/beta.log"));
        assert!(beta.contains("ERROR beta's own line"), "{beta}");
        assert!(
            beta.contains("in beta's span"),
            "a span's plugin field routes too: {beta}"
        );
        assert!(!beta.contains("alpha"), "{beta}");
        let plugin_files: Vec<_> = std::fs::read_dir(logs.join("plugins"))
            .expect("plugins folder")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(plugin_files.len(), 2, "{plugin_files:?}");

        let timing = read(&logs.join("timing.log"));
        let lines: Vec<&str> = timing.lines().collect();
        assert_eq!(lines.len(), 2, "{timing}");
        assert!(
            lines[0].ends_with(
                " INFO delivery plugin=alpha event_id=1 attempt=1 outcome=\"ack\" duration_ms=1.5 delay_ms=250"
            ),
            "{timing}"
        );
        assert!(lines[1].contains("plugin=beta event_id=2"), "{timing}");

        assert!(
            stderr.contains("alpha's own line"),
            "stderr keeps everything"
        );
        assert!(!stderr.contains("delivery"), "{stderr}");
    }

    #[test]
    fn json_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = LogFiles {
            dir: dir.path().to_path_buf(),
            retention: 3,
            per_plugin: false,
            timing: true,
        };
        with_logger(&options("info", LogFormat::Json, Some(files)), || {
            tracing::info!(target: "plugin", plugin = %"alpha", "alpha's own line");
            timing_record("alpha", 1);
        });
        let main = read(&dir.path().join("sgevents.log"));
        let line: serde_json::Value = serde_json::from_str(main.trim()).expect("json");
        assert_eq!(
            line["plugin"], "alpha",
            "without per-plugin files, sgevents.log has it"
        );
        let timing = read(&dir.path().join("timing.log"));
        let line: serde_json::Value = serde_json::from_str(timing.trim()).expect("json");
        assert_eq!(line["target"], TIMING_TARGET);
        assert_eq!(line["event_id"], 1);
        assert_eq!(line["duration_ms"], 1.5);
        assert_eq!(line["outcome"], "ack");
        assert!(!dir.path().join(PLUGINS_DIR).exists());
    }

    #[test]
    fn a_log_folder_that_cannot_be_made_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, "a file, not a folder").expect("write");
        let files = LogFiles {
            dir: blocker.join("logs"),
            retention: 3,
            per_plugin: false,
            timing: false,
        };
        let Err(err) = layers(
            &options("info", LogFormat::Text, Some(files)),
            Captured::default(),
        ) else {
            panic!("a folder under a file cannot be made");
        };
        let err = err.to_string();
        assert!(
            err.starts_with(&format!(
                "cannot create the log folder `{}`",
                blocker.join("logs").display()
            )),
            "{err}"
        );
        assert!(err.contains("\nhint: "), "{err}");
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn rotation_and_retention() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sgevents.log");
        let day = |date: &str| {
            day_of(humantime::parse_rfc3339(&format!("{date}T12:00:00Z")).expect("date"))
        };
        assert_eq!(date_of(day("2026-11-02")), "2026-11-02");
        // Rotated files of earlier runs, and files that only look alike.
        for old in [
            "sgevents.log.2026-10-28",
            "sgevents.log.2026-10-29",
            "sgevents.log.2026-10-30",
            "sgevents.log.backup",
            "timing.log.2026-10-01",
        ] {
            std::fs::write(dir.path().join(old), "old\n").expect("write");
        }
        let mut file = RollingFile::open(path.clone(), 3, day("2026-11-01")).expect("opens");
        assert_eq!(
            names(dir.path()),
            [
                "sgevents.log",
                "sgevents.log.2026-10-29",
                "sgevents.log.2026-10-30",
                "sgevents.log.backup",
                "timing.log.2026-10-01"
            ],
            "retention 3: the current file and two rotated ones"
        );
        file.write(day("2026-11-01"), b"first day\n", LogFormat::Text);
        file.write(day("2026-11-02"), b"second day\n", LogFormat::Text);
        file.write(day("2026-11-01"), b"clock went back\n", LogFormat::Text);
        file.flush(LogFormat::Text);
        assert_eq!(
            read(&dir.path().join("sgevents.log.2026-11-01")),
            "first day\n"
        );
        assert_eq!(read(&path), "second day\nclock went back\n");
        assert_eq!(
            names(dir.path()),
            [
                "sgevents.log",
                "sgevents.log.2026-10-30",
                "sgevents.log.2026-11-01",
                "sgevents.log.backup",
                "timing.log.2026-10-01"
            ]
        );
        drop(file);

        // A file left by a run on an earlier day is rotated at start, under its own day.
        let last_written = humantime::parse_rfc3339("2026-11-02T23:59:00Z").expect("time");
        File::options()
            .append(true)
            .open(&path)
            .and_then(|f| f.set_modified(last_written))
            .expect("set mtime");
        let mut file = RollingFile::open(path.clone(), 3, day("2026-11-05")).expect("opens");
        file.write(day("2026-11-05"), b"fifth\n", LogFormat::Text);
        file.flush(LogFormat::Text);
        assert_eq!(
            read(&dir.path().join("sgevents.log.2026-11-02")),
            "second day\nclock went back\n"
        );
        assert_eq!(read(&path), "fifth\n");
        assert_eq!(
            names(dir.path())
                .iter()
                .filter(|n| n.starts_with("sgevents.log."))
                .count(),
            3,
            "two rotated ones, plus `sgevents.log.backup`, which is not a rotated file"
        );
    }

    #[test]
    fn a_file_moved_away_is_not_renamed_again() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("timing.log");
        let mut file = RollingFile::open(path.clone(), 5, 100).expect("opens");
        file.write(100, b"a\n", LogFormat::Text);
        file.flush(LogFormat::Text);
        std::fs::rename(&path, dir.path().join("moved")).expect("move");
        std::fs::write(&path, "someone else's\n").expect("write");
        file.write(101, b"b\n", LogFormat::Text);
        file.flush(LogFormat::Text);
        assert_eq!(read(&path), "someone else's\nb\n");
        assert_eq!(read(&dir.path().join("moved")), "a\n");
    }

    #[test]
    fn the_filter_comes_from_the_environment_when_it_is_valid() {
        assert_eq!(choose_filter(None, "info"), ("info".to_owned(), None));
        assert_eq!(
            choose_filter(Some("debug".into()), "info"),
            ("debug".to_owned(), None)
        );
        assert_eq!(choose_filter(Some(" ".into()), "warn").0, "warn");
        let (filter, warning) = choose_filter(Some("info,sgevents=loud".into()), "warn");
        assert_eq!(filter, "warn");
        let warning = warning.expect("a warning");
        assert!(
            warning.contains("$SGEVENTS_LOG = `info,sgevents=loud`")
                && warning.contains("\nhint: "),
            "{warning}"
        );
    }

    #[test]
    fn the_format_flag_wins_and_only_run_writes_files() {
        let config = crate::config::parse(
            Path::new("/etc/sgevents/sgevents.toml"),
            "[daemon]\nlog_dir = \"logs\"\nlog_format = \"json\"\n[source]\nkind = \"jsonl\"\npath = \"e\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let run =
            LogOptions::from_config(&config.daemon.log_level, &config.daemon.logs, None, true);
        assert_eq!(run.format, LogFormat::Json);
        assert!(!run.ansi);
        assert_eq!(
            run.files,
            Some(LogFiles {
                dir: PathBuf::from("/etc/sgevents/logs"),
                retention: 14,
                per_plugin: false,
                timing: true
            })
        );
        let flag = LogOptions::from_config(
            &config.daemon.log_level,
            &config.daemon.logs,
            Some(LogFormat::Text),
            false,
        );
        assert_eq!(flag.format, LogFormat::Text);
        assert_eq!(flag.files, None, "only `run` writes the files");
    }
}
