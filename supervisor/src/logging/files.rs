//! The log files: one thread that owns every open file and writes what a bounded queue brings
//! (`sgevents.log`, `timing.log`, `plugins/<name>.log`), each rotated daily under its documented
//! name; and the layer that sends each plugin's records to its own file.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::Event;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::Registry;

use super::{
    BoxedLayer, LogError, LogFiles, LogFormat, MAIN_FILE, MAX_SAME_DAY, PLUGINS_DIR, QUEUE_LINES,
    TIMING_FILE, format_layer,
};

// ---------------------------------------------------------------------------------------------
// One file per plugin.

/// Sends each record that carries a `plugin` field (on itself or on a span it is in) to that
/// plugin's file, formatted by a layer of its own made on the plugin's first record.
pub(super) struct PluginFiles {
    pub(super) format: LogFormat,
    pub(super) writer: FileWriter,
    pub(super) by_plugin: Mutex<HashMap<String, Arc<BoxedLayer>>>,
    /// A layer of the same format that formats spans' fields, which the per-plugin layers (made
    /// after the span, or never told of it) then find in the span's extensions.
    pub(super) spans: BoxedLayer,
}

/// A span's `plugin` field, kept in its extensions.
pub(super) struct SpanPlugin(String);

impl PluginFiles {
    pub(super) fn new(format: LogFormat, writer: FileWriter) -> PluginFiles {
        PluginFiles {
            format,
            spans: format_layer(format, io::sink, false),
            writer,
            by_plugin: Mutex::default(),
        }
    }

    pub(super) fn layer_of(&self, plugin: &str) -> Arc<BoxedLayer> {
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
pub(super) fn is_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Finds a field named `plugin`.
#[derive(Default)]
pub(super) struct PluginField(Option<String>);

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
// The file writer: a queue and one thread that owns every open file.

pub(super) enum Message {
    /// A formatted record for the file of that name (relative to the log folder).
    Record(Arc<str>, Vec<u8>),
    /// Write out what is queued and stop.
    Stop,
}

/// The sending side of the writer thread's queue.
#[derive(Clone)]
pub(super) struct FileWriter {
    pub(super) tx: SyncSender<Message>,
    pub(super) dropped: Arc<AtomicU64>,
    pub(super) thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl FileWriter {
    /// Creates the folders, opens (and if needed rotates) `sgevents.log` and `timing.log`, and
    /// starts the thread.
    pub(super) fn start(files: &LogFiles, format: LogFormat) -> Result<FileWriter, LogError> {
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
    pub(super) fn handle(&self, name: &str) -> FileHandle {
        FileHandle {
            name: Arc::from(name),
            writer: self.clone(),
        }
    }

    pub(super) fn guard(&self) -> WriterGuard {
        WriterGuard {
            tx: self.tx.clone(),
            thread: self.thread.lock().unwrap_or_else(|e| e.into_inner()).take(),
        }
    }

    pub(super) fn send(&self, name: &Arc<str>, bytes: &[u8]) {
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
pub(super) struct WriterGuard {
    pub(super) tx: SyncSender<Message>,
    pub(super) thread: Option<JoinHandle<()>>,
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
pub(super) struct FileHandle {
    pub(super) name: Arc<str>,
    pub(super) writer: FileWriter,
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
pub(super) struct Files {
    pub(super) dir: PathBuf,
    pub(super) retention: u32,
    pub(super) format: LogFormat,
    /// Open files by name; a plugin's file is opened at its first record.
    pub(super) open: HashMap<Arc<str>, RollingFile>,
}

impl Files {
    pub(super) fn write(&mut self, name: &Arc<str>, today: u64, bytes: &[u8]) {
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

    pub(super) fn flush(&mut self) {
        for file in self.open.values_mut() {
            file.flush(self.format);
        }
    }
}

/// The writer thread: writes batches of queued records, flushing after each batch, until told to
/// stop.
pub(super) fn write_files(rx: Receiver<Message>, mut files: Files, dropped: &AtomicU64) {
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
pub(super) fn report(format: LogFormat, path: &Path, error: &io::Error) {
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
pub(super) struct RollingFile {
    pub(super) path: PathBuf,
    pub(super) retention: u32,
    /// `None` after an error: reopened at the next record.
    pub(super) out: Option<BufWriter<File>>,
    /// The day (since the epoch, UTC) the current file's lines belong to.
    pub(super) day: u64,
    /// An error was reported and the file has not worked since.
    pub(super) failing: bool,
}

impl RollingFile {
    /// Opens `path` for appending, rotating it first when it was last written on an earlier day.
    pub(super) fn open(path: PathBuf, retention: u32, today: u64) -> io::Result<RollingFile> {
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
    pub(super) fn broken(path: PathBuf, retention: u32, today: u64) -> RollingFile {
        RollingFile {
            path,
            retention,
            out: None,
            day: today,
            failing: true,
        }
    }

    pub(super) fn write(&mut self, today: u64, bytes: &[u8], format: LogFormat) {
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

    pub(super) fn flush(&mut self, format: LogFormat) {
        if let Some(out) = &mut self.out {
            if let Err(e) = out.flush() {
                self.fail(&e, format);
            }
        }
    }

    pub(super) fn fail(&mut self, error: &io::Error, format: LogFormat) {
        self.out = None;
        if !self.failing {
            self.failing = true;
            report(format, &self.path, error);
        }
    }

    /// Closes the current file as `NAME.<its day>`, starts a new one and prunes the old ones.
    pub(super) fn rotate(&mut self, today: u64, format: LogFormat) {
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
    pub(super) fn prune(&self) {
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

pub(super) fn open_append(path: &Path) -> io::Result<BufWriter<File>> {
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
pub(super) const LOG_FILE_MODE: u32 = 0o640;
/// The log folder and its `plugins` folder.
pub(super) const LOG_DIR_MODE: u32 = 0o750;

/// Creates a log folder if needed, and makes it 0750 (the daemon runs under umask 077).
pub(super) fn create_log_dir(dir: &Path) -> io::Result<()> {
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
pub(super) fn day_of(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

/// `YYYY-MM-DD` of a day since the epoch.
pub(super) fn date_of(day: u64) -> String {
    let time = UNIX_EPOCH + Duration::from_secs(day * 86_400);
    humantime::format_rfc3339_seconds(time).to_string()[..10].to_owned()
}

pub(super) fn starts_with_date(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 10
        && b[..10].iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
        && (b.len() == 10 || b[10] == b'.')
}

/// `NAME.YYYY-MM-DD`, or `NAME.YYYY-MM-DD.N` when that exists already.
pub(super) fn rotated_name(path: &Path, day: u64) -> PathBuf {
    let base = format!("{}.{}", path.display(), date_of(day));
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while candidate.exists() && n < MAX_SAME_DAY {
        candidate = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    candidate
}
