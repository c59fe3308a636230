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

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::Metadata;
use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::fmt::{self, MakeWriter};
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::registry::Registry;
use tracing_subscriber::util::SubscriberInitExt;

mod files;
#[cfg(test)]
mod tests;

use files::{FileWriter, PluginFiles, WriterGuard};

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

/// How records are written, on stderr and in the files: `daemon.log_format`, read in any case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per record
    #[default]
    Text,
    /// One JSON object per line, for log shippers
    Json,
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
// Redaction of stderr (the files redact in `files::FileHandle`).

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
