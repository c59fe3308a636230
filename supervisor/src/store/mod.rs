//! The state database: the one owner of the SQLite connection.
//!
//! A dedicated thread owns the [`rusqlite::Connection`]; everything else talks to it through a
//! [`Store`] handle that sends commands over a channel. Reads are answered at once. Writes are
//! **group-committed**: the thread opens a transaction on the first write, applies the writes that
//! arrive within `commit_interval` (or until 512 of them), then commits them together, so that a
//! busy plugin costs one `fsync` per group rather than one per answer. Cursor moves are coalesced
//! per plugin within a group, since only the last one matters.
//!
//! **Invariant:** a plugin's cursor, its failed events and its retries change in the same
//! transaction, so after any crash the database describes one consistent moment: every event at or
//! below a cursor was finished, and nothing above it was skipped.
//!
//! The schema is public (documented in `docs/STATE.md`) and versioned with `PRAGMA user_version`.
//!
//! **Only this module knows the schema**: no SQL text and no call on a `rusqlite::Connection`
//! outside it (`tests/it/tidy.rs` checks). Everyone else reads and writes through its typed
//! functions: the daemon through [`Store`], the CLI, `status`, `tail`, `deliver`, the HTTP listener
//! and the metrics through a read-only [`Reader`], the CLI's changes and `migrate` through an
//! [`Offline`] transaction when no daemon runs.
//!
//! - `schema.rs`: creation, migrations by `user_version`, integrity checks, the one `NOW`.
//! - `worker.rs`: the store thread (group commit, the operator's changes, pruning, identity).
//! - `journal.rs`, `plugins.rs`, `failed.rs`, `source.rs`, `status.rs`: the tables' reads and
//!   writes, each beside the tables it touches.
//! - `change.rs`: the operator's changes as typed commands ([`Change`]).
//! - `offline.rs`: the openers without the store thread ([`Reader`], [`Offline`]).

mod change;
mod failed;
mod journal;
mod offline;
mod plugins;
mod schema;
mod source;
mod status;
mod worker;

pub use change::{Change, Changed};
pub use failed::{FailedRecord, FailedRow, Replay};
pub use offline::{
    Offline, Reader, change_offline, check_file, create_offline, open_offline, open_read_only,
};
pub use plugins::{OPERATOR_DISABLED, PluginRow, RewindReport, WaitingRetry};
pub use schema::{SCHEMA_VERSION, check_integrity};
pub use source::SourceSummary;
pub use status::DaemonRow;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use prometheus_client::metrics::histogram::Histogram;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

use crate::config::{StartAt, Synchronous};
use crate::liveness::{Alive, Life};
use schema::{file_identity, incremental_vacuum_on, migrate, prepare};
use worker::{Prune, Worker};

/// How many writes one transaction takes at most.
const MAX_GROUP: usize = 512;

/// How often the journal is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// How many events one pruning transaction deletes at most: deliveries go on between two.
const PRUNE_CHUNK: usize = 10_000;

/// How many free pages one `incremental_vacuum` transaction gives back at most (16 MiB of 4 KiB
/// pages).
const VACUUM_CHUNK: i64 = 4096;

/// The size the write-ahead log is cut back to after a checkpoint.
const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// How long SQLite waits for another process's lock before it says "busy".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest wait between two retries of a write that another process's lock held up.
const BUSY_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How often an idle store checks that `state.db` is still the file it opened.
const IDENTITY_EVERY: Duration = Duration::from_secs(1);

/// How long the check of the database at start may take before it is skipped.
pub const QUICK_CHECK_LIMIT: Duration = Duration::from_secs(10);

/// The file name of the state database inside the state directory.
pub const DB_FILE: &str = "state.db";

/// A failure of the state database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("state database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file system said no.
    #[error(
        "cannot prepare the state directory `{path}`: {source}\nhint: check that the daemon's user may create and write it"
    )]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database was written by a newer version.
    #[error(
        "the state database `{path}` has schema version {found}, newer than this sgevents knows ({SCHEMA_VERSION})\nhint: run the newer sgevents, or restore a backup taken before the upgrade"
    )]
    TooNew {
        /// The database.
        path: PathBuf,
        /// Its version.
        found: i64,
    },
    /// There is no database yet.
    #[error(
        "there is no state database at `{0}`\nhint: start the daemon once with `sgevents run` to create it"
    )]
    Missing(PathBuf),
    /// The store thread stopped after an earlier error.
    #[error("the state database is unavailable after an earlier error: {0}")]
    Stopped(String),
    /// The file is damaged (a failed `quick_check` or `integrity_check`, or SQLite's own refusal).
    #[error(
        "the state database `{path}` is damaged: {detail}\nhint: stop here and restore it from a backup (docs/OPERATIONS.md, \"Restore\"); `sgevents check --deep` checks a file thoroughly"
    )]
    Damaged {
        /// The database.
        path: PathBuf,
        /// What SQLite found.
        detail: String,
    },
    /// The file the daemon opened is no longer the one at its path.
    #[error(
        "the state database `{path}` was deleted or replaced while the daemon was using it; stopping so as to write nothing more into a file that is gone\nhint: never move or overwrite state.db while the daemon runs; restore a backup with the daemon stopped (docs/OPERATIONS.md, \"Restore\"), then start it again"
    )]
    Replaced {
        /// The database.
        path: PathBuf,
    },
}

impl StoreError {
    /// `e`, or [`StoreError::Damaged`] when SQLite says the file is not a sound database.
    fn from_sqlite(path: &Path, e: rusqlite::Error) -> StoreError {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
                StoreError::Damaged {
                    path: path.to_path_buf(),
                    detail: e.to_string(),
                }
            }
            _ => StoreError::Sqlite(e),
        }
    }
}

/// Why an operator's change could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// No such plugin.
    #[error("there is no plugin named `{name}`\nhint: {}", if .known.is_empty() { "no plugin has run yet; check the configuration's `[plugin.NAME]` sections and plugin paths".to_owned() } else { format!("known plugins: {}", .known.join(", ")) })]
    UnknownPlugin {
        /// The name asked for.
        name: String,
        /// The names known.
        known: Vec<String>,
    },
    /// The event to rewind to is not in the journal.
    #[error("event {event_id} is not in the journal{}\nhint: rewind to a journaled event (`sqlite3 state.db 'SELECT min(event_id), max(event_id) FROM events'`), or raise `daemon.journal_retention` to keep more", .oldest.map(|o| format!(" (the oldest journaled event is {o})")).unwrap_or_else(|| " (the journal is empty)".into()))]
    NotJournaled {
        /// The id asked for.
        event_id: i64,
        /// The oldest journaled id.
        oldest: Option<i64>,
    },
    /// The event is not among the plugin's failed events.
    #[error(
        "event {event_id} is not a failed event of plugin `{plugin}`\nhint: `sgevents failed list {plugin}` shows them"
    )]
    NotFailed {
        /// The plugin.
        plugin: String,
        /// The event.
        event_id: i64,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for ChangeError {
    fn from(e: rusqlite::Error) -> Self {
        ChangeError::Store(e.into())
    }
}

/// Where `plugin rewind` moves a cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewindTarget {
    /// Deliver this event id next (or the first journaled one after it).
    Event(i64),
    /// Skip everything journaled: deliver only what comes next.
    Latest,
}

/// One event of the journal: what a source appends (its `seq` is then ignored: the journal
/// assigns it) and what a plugin actor reads.
#[derive(Debug, Clone)]
pub struct JournalRow {
    /// The local sequence number (0 in an event not journaled yet).
    pub seq: i64,
    /// The ShotGrid id.
    pub event_id: i64,
    /// `event_type`.
    pub event_type: String,
    /// `attribute_name`.
    pub attribute_name: Option<String>,
    /// Entity type for matching.
    pub entity_type: Option<String>,
    /// Project id.
    pub project_id: Option<i64>,
    /// `meta.is_transient`.
    pub is_transient: bool,
    /// `created_at` as the source wrote it.
    pub created_at: Option<String>,
    /// The whole event as one line of JSON.
    pub body: String,
}

/// Where the source is, saved with each batch it appends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourcePosition {
    /// The source's kind (`jsonl`).
    pub kind: String,
    /// What it reads (a file path).
    pub location: String,
    /// A byte offset or other resumable position.
    pub offset: i64,
    /// Lines read so far.
    pub line: i64,
    /// The newest event id journaled.
    pub last_event_id: Option<i64>,
    /// Malformed records seen, in all.
    pub malformed: i64,
    /// Records skipped because their id was not above the last one.
    pub skipped: i64,
    /// The last problem the source reported.
    pub last_error: Option<String>,
    /// Events skipped because they exceed `max_event_bytes`, in all.
    pub oversized: i64,
    /// The jsonl source's file: its device number (`None` for ShotGrid).
    pub file_dev: Option<i64>,
    /// The jsonl source's file: its inode number.
    pub file_ino: Option<i64>,
    /// The jsonl source's file: a hex fingerprint of its first line.
    pub file_head: Option<String>,
}

/// What the previous daemon recorded of its plugins' processes.
#[derive(Debug, Clone, Default)]
pub struct Leftovers {
    /// The boot it ran in.
    pub boot_id: Option<String>,
    /// The process groups of the plugins it was running.
    pub groups: Vec<crate::orphans::Recorded>,
}

/// A run of ids the source is waiting for, as saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GapRow {
    /// The first missing id.
    pub first_id: i64,
    /// The last missing id (inclusive).
    pub last_id: i64,
    /// When it was first missed, RFC 3339 (UTC).
    pub first_seen: String,
}

/// A plugin's row, as the actor needs it at start.
#[derive(Debug, Clone)]
pub struct PluginRecord {
    /// The cursor: every event with `seq <= cursor` is finished.
    pub cursor: i64,
    /// The recorded state.
    pub state: String,
    /// Why it is disabled, if it is.
    pub disabled_reason: Option<String>,
    /// Restarts so far.
    pub restarts: i64,
    /// The fingerprint recorded with the state.
    pub fingerprint: Option<String>,
    /// Deliveries recorded for events waiting for a retry: seq to attempts.
    pub attempts: HashMap<i64, u32>,
    /// Where a plugin migrated from shotgunEvents resumes (`plugin_resume`).
    pub resume: Option<Resume>,
}

/// Events a plugin migrated from shotgunEvents already processed: every id at or below
/// `last_event_id` except those in `backlog`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resume {
    /// The incumbent's last processed id.
    pub last_event_id: i64,
    /// Ids below it the incumbent was still waiting for.
    pub backlog: std::collections::HashSet<i64>,
}

impl Resume {
    /// Whether the incumbent already processed `event_id`.
    pub fn done(&self, event_id: i64) -> bool {
        event_id <= self.last_event_id && !self.backlog.contains(&event_id)
    }
}

/// The states a plugin can be in, as written in `plugins.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginState {
    /// Being started, or in its handshake.
    Starting,
    /// Handshake done, receiving events.
    Running,
    /// Waiting before a restart.
    Backoff,
    /// Not started until an operator enables it.
    Disabled,
    /// Not running because the daemon is not (or is stopping it).
    Stopped,
}

impl PluginState {
    /// The word stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginState::Starting => "starting",
            PluginState::Running => "running",
            PluginState::Backoff => "backoff",
            PluginState::Disabled => "disabled",
            PluginState::Stopped => "stopped",
        }
    }
}

/// A plugin's status fields, written whenever they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginStatus {
    /// State.
    pub state: PluginState,
    /// The child's pid while it runs.
    pub pid: Option<u32>,
    /// Restarts in all.
    pub restarts: i64,
    /// Why it is disabled.
    pub disabled_reason: Option<String>,
    /// The last error it had.
    pub last_error: Option<String>,
    /// The fingerprint of its configuration.
    pub fingerprint: String,
}

/// A delivery the actor sent: recorded (group-committed) until the cursor passes it, so that after a
/// crash of the daemon the event is delivered again as the next attempt, not as attempt 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Its journal seq.
    pub seq: i64,
    /// Its ShotGrid id.
    pub event_id: i64,
    /// The attempt number it was sent as.
    pub attempt: u32,
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// An operator's change, run inside the current transaction; it returns whether it succeeded (if
/// not, its writes are rolled back) and what answers the caller once the transaction is committed
/// (`Err` with the reason when the commit failed).
type ControlOp = Box<dyn FnOnce(&Connection) -> (bool, ControlAnswer) + Send>;
type ControlAnswer = Box<dyn FnOnce(Result<(), String>) + Send>;

/// A reply that may only be sent once the transaction is committed.
enum AfterCommit {
    Append(Reply<i64>),
    Flush(oneshot::Sender<()>),
    Control(ControlAnswer),
}

enum Cmd {
    ReadEvents {
        after: i64,
        limit: usize,
        reply: Reply<Vec<JournalRow>>,
    },
    OpenPlugin {
        name: String,
        start: Option<StartAt>,
        fingerprint: String,
        reply: Reply<PluginRecord>,
    },
    SourcePosition {
        reply: Reply<Option<SourcePosition>>,
    },
    Append {
        events: Vec<JournalRow>,
        position: SourcePosition,
        gaps: Option<Vec<GapRow>>,
        reply: Reply<i64>,
    },
    SourceGaps {
        reply: Reply<Vec<GapRow>>,
    },
    Leftovers {
        reply: Reply<Leftovers>,
    },
    SaveSource {
        position: SourcePosition,
    },
    Cursor {
        plugin: String,
        cursor: i64,
    },
    Status {
        plugin: String,
        status: PluginStatus,
    },
    Subscriptions {
        plugin: String,
        json: String,
    },
    Retry {
        plugin: String,
        seq: i64,
        event_id: i64,
        attempts: u32,
        delay: Duration,
        error: String,
    },
    ClearRetry {
        plugin: String,
        seq: i64,
    },
    Failed {
        plugin: String,
        seq: i64,
        event_id: i64,
        attempts: u32,
        error: String,
    },
    DaemonStarted {
        pid: u32,
        http: Option<String>,
    },
    DaemonStopped,
    Control {
        op: ControlOp,
    },
    Timings {
        plugin: String,
        json: String,
    },
    Sent {
        plugin: String,
        sent: Vec<Sent>,
    },
    ResolveFailed {
        plugin: String,
        event_id: i64,
    },
    Flush {
        reply: oneshot::Sender<()>,
    },
}

impl Cmd {
    fn is_write(&self) -> bool {
        !matches!(
            self,
            Cmd::ReadEvents { .. }
                | Cmd::SourcePosition { .. }
                | Cmd::SourceGaps { .. }
                | Cmd::Leftovers { .. }
        )
    }
}

/// A handle on the store thread. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Cmd>,
    head: watch::Receiver<i64>,
    failure: watch::Receiver<Option<String>>,
    /// The thread's liveness (`/healthz`).
    alive: Alive,
    stats: Arc<StoreStats>,
}

/// What the store thread keeps count of as it writes, for the metrics (`crate::metrics`): read
/// at scrape time, never a query.
#[derive(Debug)]
pub struct StoreStats {
    /// Events in the journal (counted once at open, then kept as events are added and pruned).
    events: AtomicI64,
    /// `source_state.last_event_id`; `i64::MIN` for none.
    last_event_id: AtomicI64,
    /// The `created_at` of the newest journaled event, as `f64` bits of seconds since the Unix
    /// epoch; NaN for none (or one that cannot be read).
    newest_created: AtomicU64,
    /// Rows of `source_gaps`.
    gaps: AtomicI64,
    /// How long commits take.
    pub(crate) commit_duration: Histogram,
}

/// The buckets of `sgevents_store_commit_duration_seconds`: 0.1 ms to 5 s.
const COMMIT_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

impl StoreStats {
    fn new(events: i64, last_event_id: Option<i64>, created: Option<&str>, gaps: i64) -> Self {
        let stats = StoreStats {
            events: AtomicI64::new(events),
            last_event_id: AtomicI64::new(last_event_id.unwrap_or(i64::MIN)),
            newest_created: AtomicU64::new(f64::NAN.to_bits()),
            gaps: AtomicI64::new(gaps),
            commit_duration: Histogram::new(COMMIT_BUCKETS),
        };
        stats.set_newest_created(created);
        stats
    }

    fn set_newest_created(&self, created: Option<&str>) {
        let secs = created
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(f64::NAN, |d| d.as_secs_f64());
        self.newest_created.store(secs.to_bits(), Ordering::Relaxed);
    }

    /// Events in the journal.
    pub fn events(&self) -> i64 {
        self.events.load(Ordering::Relaxed)
    }

    /// The newest event id the source journaled.
    pub fn last_event_id(&self) -> Option<i64> {
        Some(self.last_event_id.load(Ordering::Relaxed)).filter(|&v| v != i64::MIN)
    }

    /// The `created_at` of the newest journaled event, in seconds since the Unix epoch.
    pub fn newest_created(&self) -> Option<f64> {
        Some(f64::from_bits(self.newest_created.load(Ordering::Relaxed))).filter(|v| !v.is_nan())
    }

    /// The gaps the source waits for.
    pub fn gaps(&self) -> i64 {
        self.gaps.load(Ordering::Relaxed)
    }
}

/// Settings of the store thread.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `synchronous`.
    pub synchronous: Synchronous,
    /// The longest a write waits for its group commit.
    pub commit_interval: Duration,
    /// How long finished events are kept.
    pub retention: Duration,
    /// How often the journal is pruned ([`PRUNE_EVERY`] by default; benchmarks use less).
    pub prune_every: Duration,
}

impl StoreOptions {
    /// The options with the default pruning interval.
    pub fn new(synchronous: Synchronous, commit_interval: Duration, retention: Duration) -> Self {
        StoreOptions {
            synchronous,
            commit_interval,
            retention,
            prune_every: PRUNE_EVERY,
        }
    }
}

/// The path of the state database in `state_dir`.
pub fn db_path(state_dir: &Path) -> PathBuf {
    state_dir.join(DB_FILE)
}

impl Store {
    /// Opens (creating if needed) the state database in `state_dir` and starts its thread.
    pub fn open(
        state_dir: &Path,
        options: StoreOptions,
    ) -> Result<(Store, thread::JoinHandle<()>), StoreError> {
        let path = prepare(state_dir)?;
        let identity = file_identity(&path).map_err(|source| StoreError::Dir {
            path: path.clone(),
            source,
        })?;
        let sql = |e| StoreError::from_sqlite(&path, e);
        let conn = Connection::open(&path).map_err(sql)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", options.synchronous.pragma())
            .map_err(sql)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql)?;
        conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)
            .map_err(sql)?;
        if !check_integrity(&conn, &path, false, Some(QUICK_CHECK_LIMIT))? {
            tracing::warn!(
                path = %path.display(),
                "the check of the state database `{}` did not finish within {} and was skipped\nhint: stop the daemon and run `sgevents check --deep` to check it fully",
                path.display(),
                humantime::format_duration(QUICK_CHECK_LIMIT)
            );
        }
        migrate(&conn, &path)?;
        incremental_vacuum_on(&conn, &path)?;
        let (head, events) = journal::head_and_count(&conn).map_err(sql)?;
        let created = journal::created_at(&conn, head).map_err(sql)?;
        let last_event_id = source::last_event_id(&conn).map_err(sql)?;
        let gaps = source::gap_count(&conn).map_err(sql)?;
        let stats = Arc::new(StoreStats::new(
            events,
            last_event_id,
            created.as_deref(),
            gaps,
        ));
        let (head_tx, head_rx) = watch::channel(head);
        let (fail_tx, fail_rx) = watch::channel(None);
        let (tx, rx) = mpsc::channel();
        // The write-ahead log and its index as they are now, to remove them if the database is
        // replaced under the daemon (see `Worker::fail`).
        let sidecars = ["-wal", "-shm"]
            .iter()
            .map(|suffix| PathBuf::from(format!("{}{suffix}", path.display())))
            .filter_map(|p| Some((file_identity(&p).ok()?, p)))
            .map(|(identity, p)| (p, identity))
            .collect();
        let worker = Worker {
            conn,
            path,
            identity,
            sidecars,
            options,
            head_tx,
            fail_tx,
            cursors: HashMap::new(),
            statuses: HashMap::new(),
            in_flight: HashMap::new(),
            writes: 0,
            failed: None,
            busy_since: None,
            prune: Prune::Idle,
            stats: stats.clone(),
        };
        let alive = Alive::new();
        let guard = alive.start();
        let thread = thread::Builder::new()
            .name("sgevents-store".into())
            .spawn(move || {
                // A panic drops the guard unended: the thread shows as dead.
                worker.run(rx);
                guard.ended();
            })
            .map_err(|source| StoreError::Dir {
                path: state_dir.to_path_buf(),
                source,
            })?;
        Ok((
            Store {
                tx,
                head: head_rx,
                failure: fail_rx,
                alive,
                stats,
            },
            thread,
        ))
    }

    fn send(&self, cmd: Cmd) {
        // The thread outlives every handle; if it died, the failure watch says why.
        let _ = self.tx.send(cmd);
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(make(reply));
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::Stopped(
                self.failure()
                    .unwrap_or_else(|| "the store thread is gone".into()),
            ))
        })
    }

    /// The journal's head: the highest `seq` committed.
    pub fn head(&self) -> watch::Receiver<i64> {
        self.head.clone()
    }

    /// What the store thread counts as it writes (for the metrics).
    pub fn stats(&self) -> Arc<StoreStats> {
        self.stats.clone()
    }

    /// The error that stopped the store, if one did.
    pub fn failure(&self) -> Option<String> {
        self.failure.borrow().clone()
    }

    /// Where the store thread is in its life: running until every handle is dropped, dead after
    /// a panic.
    pub fn thread_life(&self) -> Life {
        self.alive.life()
    }

    /// A receiver that changes when the store fails.
    pub fn failure_watch(&self) -> watch::Receiver<Option<String>> {
        self.failure.clone()
    }

    /// Up to `limit` events with `seq > after`, in order.
    pub async fn read_events(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<JournalRow>, StoreError> {
        self.ask(|reply| Cmd::ReadEvents {
            after,
            limit,
            reply,
        })
        .await
    }

    /// A plugin's row, created if it is new (see `docs/STATE.md` for where a new plugin starts).
    pub async fn open_plugin(
        &self,
        name: &str,
        start: Option<StartAt>,
        fingerprint: &str,
    ) -> Result<PluginRecord, StoreError> {
        let (name, fingerprint) = (name.to_owned(), fingerprint.to_owned());
        self.ask(|reply| Cmd::OpenPlugin {
            name,
            start,
            fingerprint,
            reply,
        })
        .await
    }

    /// The source's saved position.
    pub async fn source_position(&self) -> Result<Option<SourcePosition>, StoreError> {
        self.ask(|reply| Cmd::SourcePosition { reply }).await
    }

    /// Appends a batch to the journal with the source's new position, in one transaction, and
    /// returns the new head once it is committed.
    pub async fn append(
        &self,
        events: Vec<JournalRow>,
        position: SourcePosition,
    ) -> Result<i64, StoreError> {
        self.ask(|reply| Cmd::Append {
            events,
            position,
            gaps: None,
            reply,
        })
        .await
    }

    /// Like [`Store::append`], also replacing the saved missing ids with `gaps`, in the same
    /// transaction.
    pub async fn append_with_gaps(
        &self,
        events: Vec<JournalRow>,
        position: SourcePosition,
        gaps: Vec<GapRow>,
    ) -> Result<i64, StoreError> {
        self.ask(|reply| Cmd::Append {
            events,
            position,
            gaps: Some(gaps),
            reply,
        })
        .await
    }

    /// The plugin process groups the previous daemon recorded as running, and its boot id: what a
    /// daemon that crashed may have left behind ([`crate::orphans`]).
    pub async fn leftovers(&self) -> Result<Leftovers, StoreError> {
        self.ask(|reply| Cmd::Leftovers { reply }).await
    }

    /// The missing ids the source saved.
    pub async fn source_gaps(&self) -> Result<Vec<GapRow>, StoreError> {
        self.ask(|reply| Cmd::SourceGaps { reply }).await
    }

    /// Saves the source's position and counters without events.
    pub fn save_source(&self, position: SourcePosition) {
        self.send(Cmd::SaveSource { position });
    }

    /// Moves a plugin's cursor (group-committed).
    pub fn set_cursor(&self, plugin: &str, cursor: i64) {
        self.send(Cmd::Cursor {
            plugin: plugin.to_owned(),
            cursor,
        });
    }

    /// Records a plugin's status (group-committed).
    pub fn set_status(&self, plugin: &str, status: PluginStatus) {
        self.send(Cmd::Status {
            plugin: plugin.to_owned(),
            status,
        });
    }

    /// Records a plugin's registered subscriptions, as JSON.
    pub fn set_subscriptions(&self, plugin: &str, json: String) {
        self.send(Cmd::Subscriptions {
            plugin: plugin.to_owned(),
            json,
        });
    }

    /// Records that an event waits for a retry.
    pub fn retry(
        &self,
        plugin: &str,
        seq: i64,
        event_id: i64,
        attempts: u32,
        delay: Duration,
        error: &str,
    ) {
        self.send(Cmd::Retry {
            plugin: plugin.to_owned(),
            seq,
            event_id,
            attempts,
            delay,
            error: error.to_owned(),
        });
    }

    /// Forgets a retry: the event finished.
    pub fn clear_retry(&self, plugin: &str, seq: i64) {
        self.send(Cmd::ClearRetry {
            plugin: plugin.to_owned(),
            seq,
        });
    }

    /// Records a failed event (and forgets its retry).
    pub fn failed(&self, plugin: &str, seq: i64, event_id: i64, attempts: u32, error: &str) {
        self.send(Cmd::Failed {
            plugin: plugin.to_owned(),
            seq,
            event_id,
            attempts,
            error: error.to_owned(),
        });
    }

    /// Makes an operator's change in a transaction of its own, after everything sent before it
    /// is committed (so it sees, and wins over, it); rolled back alone when it fails. The outer
    /// error: the commit failed.
    pub async fn change(&self, change: Change) -> Result<Result<Changed, ChangeError>, StoreError> {
        self.control(move |conn| change.apply(conn)).await
    }

    /// [`Change::Enable`]: the reason `plugin` was disabled for, or `None` when it was not.
    pub async fn enable(
        &self,
        plugin: &str,
    ) -> Result<Result<Option<String>, ChangeError>, StoreError> {
        let plugin = plugin.to_owned();
        self.control(move |conn| plugins::enable(conn, &plugin))
            .await
    }

    /// [`Change::FailedRetry`]: how many failed events of `plugin` will be delivered again.
    pub async fn failed_retry(
        &self,
        plugin: &str,
        event: Option<i64>,
    ) -> Result<Result<usize, ChangeError>, StoreError> {
        let plugin = plugin.to_owned();
        self.control(move |conn| failed::failed_retry(conn, &plugin, event))
            .await
    }

    /// Every plugin the database knows, by name, read after everything sent before.
    pub async fn plugin_rows(&self) -> Result<Result<Vec<PluginRow>, StoreError>, StoreError> {
        self.control(plugins::plugin_rows).await
    }

    /// The recorded state of `plugin`, read after everything sent before.
    pub async fn plugin_state(
        &self,
        plugin: &str,
    ) -> Result<Result<String, ChangeError>, StoreError> {
        let plugin = plugin.to_owned();
        self.control(move |conn| plugins::plugin_state(conn, &plugin))
            .await
    }

    /// The failed events of `plugin` that an operator asked for again, with their journal rows,
    /// in journal order, each with the deliveries it had. Rows whose event left the journal are
    /// reported in the second list (and no longer marked for retry).
    pub async fn replay_rows(
        &self,
        plugin: &str,
    ) -> Result<Result<(Vec<Replay>, Vec<i64>), StoreError>, StoreError> {
        let plugin = plugin.to_owned();
        self.control(move |conn| failed::replay_rows(conn, &plugin))
            .await
    }

    /// Runs `f` inside the store's transaction (after every write sent before it), commits, and
    /// returns its result: the operator's changes above, and nothing else.
    async fn control<T: Send + 'static, E: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<Result<T, E>, StoreError> {
        let (tx, rx) = oneshot::channel::<Result<Result<T, E>, StoreError>>();
        let op: ControlOp = Box::new(move |conn| {
            let value = f(conn);
            let ok = value.is_ok();
            let answer: ControlAnswer = Box::new(move |committed: Result<(), String>| {
                let _ = tx.send(committed.map(|()| value).map_err(StoreError::Stopped));
            });
            (ok, answer)
        });
        self.send(Cmd::Control { op });
        rx.await.unwrap_or_else(|_| {
            Err(StoreError::Stopped(
                self.failure()
                    .unwrap_or_else(|| "the store thread is gone".into()),
            ))
        })
    }

    /// Records deliveries just sent (group-committed with the answers; see [`Sent`]).
    pub fn sent(&self, plugin: &str, sent: Vec<Sent>) {
        self.send(Cmd::Sent {
            plugin: plugin.to_owned(),
            sent,
        });
    }

    /// Records a plugin's delivery-duration summary (JSON).
    pub fn set_timings(&self, plugin: &str, json: String) {
        self.send(Cmd::Timings {
            plugin: plugin.to_owned(),
            json,
        });
    }

    /// A retried failed event was finished: it is failed no more.
    pub fn resolve_failed(&self, plugin: &str, event_id: i64) {
        self.send(Cmd::ResolveFailed {
            plugin: plugin.to_owned(),
            event_id,
        });
    }

    /// Records the daemon's start.
    /// `http` is the address the HTTP listener bound, when it is on.
    pub fn daemon_started(&self, pid: u32, http: Option<String>) {
        self.send(Cmd::DaemonStarted { pid, http });
    }

    /// Records the daemon's clean stop.
    pub fn daemon_stopped(&self) {
        self.send(Cmd::DaemonStopped);
    }

    /// Commits everything sent so far, and waits for it.
    pub async fn flush(&self) {
        let (reply, done) = oneshot::channel();
        self.send(Cmd::Flush { reply });
        let _ = done.await;
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::params;

    use super::*;
    use crate::store::journal::prune_journal;

    fn options() -> StoreOptions {
        StoreOptions {
            synchronous: Synchronous::Normal,
            commit_interval: Duration::from_millis(1),
            retention: Duration::from_secs(3600),
            prune_every: PRUNE_EVERY,
        }
    }

    fn event(id: i64) -> JournalRow {
        JournalRow {
            seq: 0,
            event_id: id,
            event_type: "Shotgun_Task_Change".into(),
            attribute_name: Some("sg_status_list".into()),
            entity_type: Some("Task".into()),
            project_id: Some(66),
            is_transient: false,
            created_at: Some("2026-11-02T10:00:00Z".into()),
            body: format!("{{\"id\":{id}}}"),
        }
    }

    fn position(last: i64) -> SourcePosition {
        SourcePosition {
            kind: "jsonl".into(),
            location: "e.jsonl".into(),
            offset: last * 10,
            line: last,
            last_event_id: Some(last),
            oversized: 2,
            file_dev: Some(2049),
            file_ino: Some(last + 7),
            file_head: Some("cbf29ce484222325".into()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn journal_cursor_failures_and_retries_persist() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, thread) = Store::open(dir.path(), options()).expect("open");
        let rec = store.open_plugin("a", None, "fp").await.expect("plugin");
        assert_eq!(
            rec.cursor, 0,
            "a new database starts plugins at the beginning"
        );
        let head = store
            .append((101..=105).map(event).collect(), position(105))
            .await
            .expect("append");
        assert_eq!(head, 5);
        assert_eq!(*store.head().borrow(), 5);
        let rows = store.read_events(2, 2).await.expect("read");
        assert_eq!(
            rows.iter().map(|r| (r.seq, r.event_id)).collect::<Vec<_>>(),
            [(3, 103), (4, 104)]
        );

        store.set_cursor("a", 3);
        store.failed("a", 2, 102, 10, "boom");
        store.retry("a", 4, 104, 2, Duration::from_secs(5), "locked");
        let late = store.open_plugin("late", None, "fp").await.expect("plugin");
        assert_eq!(late.cursor, 5, "a plugin added later starts at the head");
        let early = store
            .open_plugin("early", Some(StartAt::Earliest), "fp")
            .await
            .expect("plugin");
        assert_eq!(early.cursor, 0);
        let from = store
            .open_plugin("from", Some(StartAt::EventId(104)), "fp")
            .await
            .expect("plugin");
        assert_eq!(from.cursor, 3, "starts with event 104 itself");
        store.flush().await;
        drop(store);
        thread.join().expect("store thread");

        let (store, thread) = Store::open(dir.path(), options()).expect("reopen");
        let rec = store.open_plugin("a", None, "fp").await.expect("plugin");
        assert_eq!(rec.cursor, 3);
        assert_eq!(rec.attempts.get(&4), Some(&2));
        assert_eq!(
            store.source_position().await.expect("position"),
            Some(position(105))
        );
        drop(store);
        thread.join().expect("store thread");

        let conn = open_read_only(dir.path()).expect("read-only");
        let conn = conn.connection();
        let (last, lag): (i64, i64) = conn
            .query_row(
                "SELECT last_event_id, lag FROM plugin_lag WHERE name = 'a'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("view");
        assert_eq!((last, lag), (103, 2));
        let failed: (i64, String) = conn
            .query_row(
                "SELECT event_id, last_error FROM failed_events WHERE plugin = 'a'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("failed row");
        assert_eq!(failed, (102, "boom".to_owned()));
        let pending: i64 = conn
            .query_row(
                "SELECT count(*) FROM pending_events WHERE plugin = 'a'",
                [],
                |r| r.get(0),
            )
            .expect("view");
        assert_eq!(pending, 2);
    }

    #[test]
    fn pruning_keeps_what_any_plugin_still_needs_and_what_is_recent() {
        let dir = tempfile::tempdir().expect("temp dir");
        let conn = Connection::open(dir.path().join("t.db")).expect("open");
        migrate(&conn, dir.path()).expect("migrate");
        for id in 1..=10 {
            let age = if id <= 8 { "-2 days" } else { "-1 minutes" };
            conn.execute(
                "INSERT INTO events (event_id, event_type, journaled_at, body) \
                 VALUES (?1, 'T', strftime('%Y-%m-%dT%H:%M:%fZ','now', ?2), '{}')",
                params![id, age],
            )
            .expect("insert");
        }
        for (name, cursor) in [("ahead", 10), ("behind", 5)] {
            conn.execute(
                "INSERT INTO plugins (name, state, cursor, created_at, updated_at) VALUES (?1, 'stopped', ?2, 'x', 'x')",
                params![name, cursor],
            )
            .expect("plugin");
        }
        let day = Duration::from_secs(24 * 3600);
        assert_eq!(
            prune_journal(&conn, day, 1000).expect("prune"),
            5,
            "only what the slowest plugin is past"
        );
        conn.execute("UPDATE plugins SET cursor = 10 WHERE name = 'behind'", [])
            .expect("advance");
        assert_eq!(
            prune_journal(&conn, day, 1000).expect("prune"),
            3,
            "events 9 and 10 are younger than the retention"
        );
        let left: Vec<i64> = conn
            .prepare("SELECT event_id FROM events ORDER BY seq")
            .expect("query")
            .query_map([], |r| r.get(0))
            .expect("rows")
            .map(Result::unwrap)
            .collect();
        assert_eq!(left, [9, 10]);
        conn.execute(
            "INSERT INTO events (event_id, event_type, journaled_at, body) VALUES (11, 'T', 'x', '{}')",
            [],
        )
        .expect("insert");
        let seq: i64 = conn
            .query_row("SELECT seq FROM events WHERE event_id = 11", [], |r| {
                r.get(0)
            })
            .expect("seq");
        assert_eq!(seq, 11, "sequence numbers are never reused after pruning");
    }

    #[test]
    fn files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let state = dir.path().join("var");
        let (store, thread) = Store::open(&state, options()).expect("open");
        drop(store);
        thread.join().expect("store thread");
        let mode = |p: &Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&db_path(&state)), 0o600);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let conn = Connection::open(db_path(dir.path())).expect("create");
        conn.pragma_update(None, "user_version", 99)
            .expect("set version");
        drop(conn);
        let err = Store::open(dir.path(), options())
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains("schema version 99") && err.contains("hint:"),
            "{err}"
        );
    }

    #[test]
    fn status_needs_an_existing_database() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = open_read_only(dir.path()).expect_err("missing").to_string();
        assert!(err.starts_with("there is no state database at"), "{err}");
        assert!(
            !db_path(dir.path()).exists(),
            "a reader never creates the database"
        );
    }

    #[tokio::test]
    async fn attempt_times_follow_an_event_from_its_retries_to_its_failure() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, thread) = Store::open(dir.path(), options()).expect("open");
        store
            .open_plugin("a", Some(StartAt::Earliest), "fp")
            .await
            .expect("plugin");
        store
            .append((101..=102).map(event).collect(), position(102))
            .await
            .expect("append");
        store.retry("a", 1, 101, 1, Duration::from_secs(5), "locked");
        store.retry("a", 1, 101, 2, Duration::from_secs(5), "locked");
        store.failed("a", 1, 101, 3, "boom");
        // An operator's retry of the failed event, failing again, adds to them.
        store.failed("a", 1, 101, 4, "boom again");
        store.flush().await;
        drop(store);
        thread.join().expect("store thread");

        let conn = open_read_only(dir.path()).expect("read-only");
        let conn = conn.connection();
        let times: String = conn
            .query_row(
                "SELECT attempt_times FROM failed_events WHERE plugin = 'a' AND event_id = 101",
                [],
                |r| r.get(0),
            )
            .expect("failed row");
        let times: Vec<serde_json::Value> = serde_json::from_str(&times).expect("JSON");
        let attempts: Vec<i64> = times.iter().filter_map(|t| t["attempt"].as_i64()).collect();
        assert_eq!(attempts, [1, 2, 3, 4], "{times:?}");
        assert!(
            times
                .iter()
                .all(|t| t["at"].as_str().is_some_and(|at| at.ends_with('Z'))),
            "{times:?}"
        );
        let retries: i64 = conn
            .query_row("SELECT count(*) FROM retries", [], |r| r.get(0))
            .expect("count");
        assert_eq!(retries, 0, "the retry row went with the failure");
    }
}
