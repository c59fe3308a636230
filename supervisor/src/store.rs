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

use std::collections::{BTreeMap, HashMap};
use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::{oneshot, watch};

use crate::config::{StartAt, Synchronous};
use crate::liveness::{Alive, Life};

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 4;

/// The migrations, in order; `MIGRATIONS[n]` takes the schema from version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[
    include_str!("schema_v1.sql"),
    include_str!("schema_v2.sql"),
    include_str!("schema_v3.sql"),
    include_str!("schema_v4.sql"),
];

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

/// One event to append to the journal.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The ShotGrid id.
    pub event_id: i64,
    /// `event_type`.
    pub event_type: String,
    /// `attribute_name`.
    pub attribute_name: Option<String>,
    /// The entity type used for matching.
    pub entity_type: Option<String>,
    /// The project id.
    pub project_id: Option<i64>,
    /// `meta.is_transient`.
    pub is_transient: bool,
    /// `created_at` as the source wrote it.
    pub created_at: Option<String>,
    /// The whole event as one line of JSON.
    pub body: String,
}

/// One journaled event, as a plugin actor reads it.
#[derive(Debug, Clone)]
pub struct JournalRow {
    /// The local sequence number.
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
        events: Vec<NewEvent>,
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
        let head: i64 = conn
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
            .map_err(sql)?;
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
        events: Vec<NewEvent>,
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
        events: Vec<NewEvent>,
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

    /// Runs an operator's change inside the store's transaction (after every write sent before
    /// it), commits, and returns its result.
    pub async fn control<T: Send + 'static, E: Send + 'static>(
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

/// The columns [`journal_row`] reads, in its order.
pub(crate) const JOURNAL_COLUMNS: &str = "seq, event_id, event_type, attribute_name, entity_type, project_id, is_transient, created_at, body";

/// A journal row, from a query that selects [`JOURNAL_COLUMNS`].
pub(crate) fn journal_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JournalRow> {
    Ok(JournalRow {
        seq: r.get(0)?,
        event_id: r.get(1)?,
        event_type: r.get(2)?,
        attribute_name: r.get(3)?,
        entity_type: r.get(4)?,
        project_id: r.get(5)?,
        is_transient: r.get(6)?,
        created_at: r.get(7)?,
        body: r.get(8)?,
    })
}

/// Up to `limit` journaled events with `seq > after`, in order: for the store thread, and for the
/// read-only readers (`tail`).
pub(crate) fn read_journal(
    conn: &Connection,
    after: i64,
    limit: usize,
) -> Result<Vec<JournalRow>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {JOURNAL_COLUMNS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![after, limit as i64], journal_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Creates a new database at `path`, complete before it appears: built under a temporary name
/// (private, in WAL mode, migrated), closed, then renamed into place. A reader such as
/// `sqlite3 "file:state.db?mode=ro"` never sees a half-made file.
fn create(path: &Path) -> Result<(), StoreError> {
    let tmp = path.with_extension("db.new");
    for leftover in [
        tmp.clone(),
        tmp.with_extension("new-wal"),
        tmp.with_extension("new-shm"),
    ] {
        let _ = std::fs::remove_file(leftover);
    }
    let dir_error = |source| StoreError::Dir {
        path: path.to_path_buf(),
        source,
    };
    OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(dir_error)?;
    let conn = Connection::open(&tmp)?;
    // Before the first table: the file then gives pruned pages back (see `Worker::prune_step`).
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    migrate(&conn, &tmp)?;
    conn.close().map_err(|(_, e)| e)?;
    std::fs::rename(&tmp, path).map_err(dir_error)?;
    Ok(())
}

/// The device and inode of `path`: what "the same file" means.
fn file_identity(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

/// Runs SQLite's `quick_check` (or, `deep`, its `integrity_check`), interrupted after `limit`.
/// `Ok(true)`: the file is sound; `Ok(false)`: the check ran out of time; `Err(Damaged)`: it is not.
pub fn check_integrity(
    conn: &Connection,
    path: &Path,
    deep: bool,
    limit: Option<Duration>,
) -> Result<bool, StoreError> {
    let pragma = if deep {
        "integrity_check"
    } else {
        "quick_check"
    };
    let (done, finished) = mpsc::channel::<()>();
    let timer = limit.map(|limit| {
        let handle = conn.get_interrupt_handle();
        thread::spawn(move || {
            if finished.recv_timeout(limit) == Err(RecvTimeoutError::Timeout) {
                handle.interrupt();
            }
        })
    });
    // At most 5 problems: the first ones say enough.
    let result: rusqlite::Result<Vec<String>> = conn
        .prepare(&format!("PRAGMA {pragma}(5)"))
        .and_then(|mut stmt| stmt.query_map([], |r| r.get(0))?.collect());
    drop(done);
    if let Some(timer) = timer {
        let _ = timer.join();
    }
    match result {
        Ok(lines) if lines.len() == 1 && lines[0] == "ok" => Ok(true),
        Ok(lines) => Err(StoreError::Damaged {
            path: path.to_path_buf(),
            detail: format!("`PRAGMA {pragma}` found: {}", lines.join("; ")),
        }),
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted) => {
            Ok(false)
        }
        Err(e) => Err(StoreError::from_sqlite(path, e)),
    }
}

/// Turns on `auto_vacuum = INCREMENTAL` in a database made before schema 4, which takes one
/// `VACUUM` (a rewrite of the file, once).
fn incremental_vacuum_on(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let mode: i64 = conn
        .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
        .map_err(|e| StoreError::from_sqlite(path, e))?;
    if mode != 2 {
        tracing::info!(path = %path.display(), "rewriting the state database once so that pruning gives disk space back (auto_vacuum = incremental)");
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
            .and_then(|()| conn.execute_batch("VACUUM"))
            .map_err(|e| StoreError::from_sqlite(path, e))?;
    }
    Ok(())
}

fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| StoreError::from_sqlite(path, e))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
        });
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        conn.execute_batch(&format!(
            "BEGIN EXCLUSIVE; {sql}; PRAGMA user_version = {}; COMMIT;",
            from + 1
        ))?;
    }
    Ok(())
}

/// Makes the state directory (mode 0700) and the database in it if they are missing; returns the
/// database's path.
fn prepare(state_dir: &Path) -> Result<PathBuf, StoreError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .map_err(|source| StoreError::Dir {
            path: state_dir.to_path_buf(),
            source,
        })?;
    let path = db_path(state_dir);
    if !path.exists() {
        create(&path)?;
    }
    Ok(path)
}

/// Opens an existing state database read-write without the store thread, migrating it to this
/// version's schema: for the CLI's changes while the daemon is not running. The caller must hold
/// the state directory's lock ([`crate::lock::StateLock`]).
pub fn open_offline(state_dir: &Path) -> Result<Connection, StoreError> {
    let path = db_path(state_dir);
    if !path.exists() {
        return Err(StoreError::Missing(path));
    }
    let conn = Connection::open(&path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrate(&conn, &path)?;
    Ok(conn)
}

/// Like [`open_offline`], creating the directory and the database first when they are missing
/// (for `sgevents migrate`, which may write the first state).
pub fn create_offline(state_dir: &Path) -> Result<Connection, StoreError> {
    prepare(state_dir)?;
    open_offline(state_dir)
}

/// Opens the state database read-only, for `status` and other readers. Never creates it.
pub fn open_read_only(state_dir: &Path) -> Result<Connection, StoreError> {
    let path = db_path(state_dir);
    if !path.exists() {
        return Err(StoreError::Missing(path));
    }
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| StoreError::from_sqlite(&path, e))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path,
            found: version,
        });
    }
    if version < SCHEMA_VERSION {
        return Err(StoreError::Missing(path));
    }
    Ok(conn)
}

struct Worker {
    conn: Connection,
    /// The database file, and the device and inode it had when opened.
    path: PathBuf,
    identity: (u64, u64),
    /// `state.db-wal` and `state.db-shm`, with the device and inode they had when opened.
    sidecars: Vec<(PathBuf, (u64, u64))>,
    options: StoreOptions,
    head_tx: watch::Sender<i64>,
    fail_tx: watch::Sender<Option<String>>,
    cursors: HashMap<String, i64>,
    statuses: HashMap<String, PluginStatus>,
    /// Deliveries sent and not yet passed by the plugin's cursor, not yet written: most are
    /// answered within the group and never reach the file.
    in_flight: HashMap<String, BTreeMap<i64, (i64, u32)>>,
    writes: usize,
    failed: Option<String>,
    /// Since when another process's write lock has held up our writes.
    busy_since: Option<Instant>,
    prune: Prune,
}

/// Where pruning is: deleting old events a chunk at a time, then giving the pages back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prune {
    Idle,
    Deleting { deleted: usize },
    Vacuuming { deleted: usize },
}

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ','now')";

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        let mut txn_started: Option<Instant> = None;
        let mut last_prune = Instant::now();
        loop {
            let wait = match txn_started {
                Some(t) => {
                    (t + self.options.commit_interval).saturating_duration_since(Instant::now())
                }
                // Pruning goes on a chunk at a time whenever nothing else is waiting.
                None if self.prune != Prune::Idle => Duration::ZERO,
                None => self
                    .options
                    .prune_every
                    .saturating_sub(last_prune.elapsed())
                    .min(IDENTITY_EVERY),
            };
            let cmd = match rx.recv_timeout(wait) {
                Ok(cmd) => cmd,
                Err(RecvTimeoutError::Timeout) => {
                    if txn_started.take().is_some() {
                        self.commit();
                    } else if self.failed.is_none() {
                        if let Err(e) = self.check_identity() {
                            self.fail(e);
                            continue;
                        }
                        if self.prune == Prune::Idle
                            && last_prune.elapsed() >= self.options.prune_every
                        {
                            self.prune = Prune::Deleting { deleted: 0 };
                            last_prune = Instant::now();
                        }
                        if self.prune != Prune::Idle {
                            if let Err(e) = self.prune_step() {
                                self.prune = Prune::Idle;
                                match e {
                                    StoreError::Replaced { .. } | StoreError::Damaged { .. } => {
                                        self.fail(e)
                                    }
                                    e => tracing::warn!(error = %e, "cannot prune the journal"),
                                }
                            }
                        }
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    if txn_started.is_some() {
                        self.commit();
                    }
                    return;
                }
            };
            if self.failed.is_some() {
                self.refuse(cmd);
                continue;
            }
            if cmd.is_write() && txn_started.is_none() {
                if let Err(e) = self.begin() {
                    self.fail(e);
                    self.refuse(cmd);
                    continue;
                }
                txn_started = Some(Instant::now());
            }
            // Appends, flushes and the daemon's stop are committed at once, and answered after the
            // commit: their callers rely on durability.
            let (commit_now, after_commit) = match cmd {
                Cmd::Append {
                    events,
                    position,
                    gaps,
                    reply,
                } => {
                    if let Err(e) = self.append(&events, &position, gaps.as_deref()) {
                        let _ = reply.send(Err(StoreError::Stopped(e.to_string())));
                        self.fail(e);
                        txn_started = None;
                        continue;
                    }
                    (true, Some(AfterCommit::Append(reply)))
                }
                Cmd::Flush { reply } => (true, Some(AfterCommit::Flush(reply))),
                Cmd::Control { op } => {
                    // Everything sent before it is committed first: the operator's change must
                    // see, and win over, it; and a change that fails (it met a damaged page,
                    // say) then takes nothing else with it when it is rolled back.
                    self.commit();
                    txn_started = None;
                    if let Some(e) = self.failed.clone() {
                        op(&self.conn).1(Err(e));
                        continue;
                    }
                    if let Err(e) = self.begin() {
                        self.fail(e);
                        self.refuse(Cmd::Control { op });
                        continue;
                    }
                    txn_started = Some(Instant::now());
                    let (ok, answer) = op(&self.conn);
                    if !ok {
                        let _ = self.conn.execute_batch("ROLLBACK");
                        txn_started = None;
                        answer(Ok(()));
                        continue;
                    }
                    (true, Some(AfterCommit::Control(answer)))
                }
                other => {
                    let commit_now = matches!(other, Cmd::DaemonStopped);
                    if let Err(e) = self.handle(other) {
                        self.fail(e);
                        txn_started = None;
                        continue;
                    }
                    (commit_now, None)
                }
            };
            self.writes += 1;
            if txn_started.is_some() && (commit_now || self.writes >= MAX_GROUP) {
                self.commit();
                txn_started = None;
            }
            match after_commit {
                Some(AfterCommit::Append(reply)) => {
                    let result = match &self.failed {
                        Some(e) => Err(StoreError::Stopped(e.clone())),
                        None => self
                            .conn
                            .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
                            .map_err(StoreError::from),
                    };
                    if let Ok(head) = &result {
                        self.head_tx.send_replace(*head);
                    }
                    let _ = reply.send(result);
                }
                Some(AfterCommit::Flush(reply)) => drop(reply.send(())),
                Some(AfterCommit::Control(answer)) => answer(match &self.failed {
                    Some(e) => Err(e.clone()),
                    None => Ok(()),
                }),
                None => {}
            }
        }
    }

    /// Opens a write transaction. Another process holding the write lock (a `sqlite3` shell in a
    /// transaction, a backup tool) is waited for, with backoff and one warning per episode:
    /// nothing is lost meanwhile, the writes wait in the channel.
    fn begin(&mut self) -> Result<(), StoreError> {
        let mut delay = Duration::from_millis(50);
        loop {
            match self.conn.execute_batch("BEGIN IMMEDIATE") {
                Ok(()) => {
                    if let Some(since) = self.busy_since.take() {
                        tracing::info!(
                            path = %self.path.display(),
                            "the write lock on `{}` is free again after {}; writing on",
                            self.path.display(),
                            humantime::format_duration(Duration::from_secs(since.elapsed().as_secs()))
                        );
                    }
                    return Ok(());
                }
                Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {
                    if self.busy_since.is_none() {
                        self.busy_since = Some(Instant::now());
                        tracing::warn!(
                            path = %self.path.display(),
                            "another process holds a write lock on `{}`; deliveries pause until it lets go (nothing is lost)\nhint: end the other program's transaction (a `sqlite3` shell? read with `sqlite3 \"file:state.db?mode=ro\"` instead)",
                            self.path.display()
                        );
                    }
                    self.check_identity()?;
                    thread::sleep(delay);
                    delay = (delay * 2).min(BUSY_BACKOFF_MAX);
                }
                Err(e) => return Err(StoreError::from_sqlite(&self.path, e)),
            }
        }
    }

    /// Whether `state.db` is still the file this connection opened.
    fn check_identity(&self) -> Result<(), StoreError> {
        match file_identity(&self.path) {
            Ok(identity) if identity == self.identity => Ok(()),
            _ => Err(StoreError::Replaced {
                path: self.path.clone(),
            }),
        }
    }

    fn fail(&mut self, e: StoreError) {
        let _ = self.conn.execute_batch("ROLLBACK");
        if let StoreError::Replaced { .. } = e {
            // The log beside the new file is this connection's, about the old one: left there,
            // SQLite would replay it onto the new file at the next start and damage it. (SQLite
            // itself leaves it behind when the file it belongs to was renamed or deleted.)
            for (sidecar, identity) in &self.sidecars {
                if file_identity(sidecar).ok() == Some(*identity) {
                    let _ = std::fs::remove_file(sidecar);
                }
            }
        }
        let message = e.to_string();
        // Said once, here; the daemon's exit names it again only as the reason it stopped.
        tracing::error!("{message}");
        self.failed = Some(message.clone());
        self.fail_tx.send_replace(Some(message));
    }

    fn refuse(&self, cmd: Cmd) {
        let err = || StoreError::Stopped(self.failed.clone().unwrap_or_default());
        match cmd {
            Cmd::ReadEvents { reply, .. } => drop(reply.send(Err(err()))),
            Cmd::OpenPlugin { reply, .. } => drop(reply.send(Err(err()))),
            Cmd::SourcePosition { reply } => drop(reply.send(Err(err()))),
            Cmd::SourceGaps { reply } => drop(reply.send(Err(err()))),
            Cmd::Leftovers { reply } => drop(reply.send(Err(err()))),
            Cmd::Append { reply, .. } => drop(reply.send(Err(err()))),
            Cmd::Flush { reply } => drop(reply.send(())),
            Cmd::Control { op } => op(&self.conn).1(Err(self.failed.clone().unwrap_or_default())),
            _ => {}
        }
    }

    fn commit(&mut self) {
        let result = self
            .apply_coalesced()
            .and_then(|()| self.check_identity())
            .and_then(|()| Ok(self.conn.execute_batch("COMMIT")?));
        self.writes = 0;
        if let Err(e) = result {
            self.fail(e);
        }
    }

    fn apply_coalesced(&mut self) -> Result<(), StoreError> {
        for (plugin, cursor) in self.cursors.drain() {
            self.conn
                .prepare_cached(&format!(
                    "UPDATE plugins SET cursor = ?2, \
                     last_event_id = COALESCE((SELECT event_id FROM events WHERE seq <= ?2 ORDER BY seq DESC LIMIT 1), last_event_id), \
                     updated_at = {NOW} WHERE name = ?1"
                ))?
                .execute(params![plugin, cursor])?;
            self.conn
                .prepare_cached("DELETE FROM in_flight WHERE plugin = ?1 AND seq <= ?2")?
                .execute(params![plugin, cursor])?;
        }
        for (plugin, sent) in &mut self.in_flight {
            let mut insert = self.conn.prepare_cached(&format!(
                "INSERT OR REPLACE INTO in_flight (plugin, seq, event_id, attempt, sent_at) VALUES (?1, ?2, ?3, ?4, {NOW})"
            ))?;
            for (seq, (event_id, attempt)) in std::mem::take(sent) {
                insert.execute(params![plugin, seq, event_id, attempt])?;
            }
        }
        for (plugin, s) in self.statuses.drain() {
            // A plugin's process group is its pid (children lead their own group); its start
            // time tells it from a later process that reuses the pid (see `orphans`).
            let start_ticks = s.pid.and_then(crate::orphans::start_ticks);
            self.conn
                .prepare_cached(&format!(
                    "UPDATE plugins SET state = ?2, pid = ?3, restarts = ?4, disabled_reason = ?5, last_error = ?6, \
                     fingerprint = ?7, pgid = ?3, pid_start_ticks = ?8, updated_at = {NOW} WHERE name = ?1"
                ))?
                .execute(params![plugin, s.state.as_str(), s.pid, s.restarts, s.disabled_reason, s.last_error, s.fingerprint, start_ticks])?;
        }
        Ok(())
    }

    fn handle(&mut self, cmd: Cmd) -> Result<(), StoreError> {
        match cmd {
            Cmd::ReadEvents {
                after,
                limit,
                reply,
            } => {
                let _ = reply.send(self.read_events(after, limit));
            }
            Cmd::OpenPlugin {
                name,
                start,
                fingerprint,
                reply,
            } => {
                // A restarted actor must read the cursor its predecessor last sent.
                self.apply_coalesced()?;
                let result = self.open_plugin(&name, start, &fingerprint);
                let _ = reply.send(result);
            }
            Cmd::SourcePosition { reply } => {
                let _ = reply.send(self.source_position());
            }
            Cmd::SourceGaps { reply } => {
                let _ = reply.send(self.source_gaps());
            }
            Cmd::Leftovers { reply } => {
                let _ = reply.send(self.leftovers());
            }
            Cmd::SaveSource { position } => self.save_source(&position)?,
            Cmd::Cursor { plugin, cursor } => {
                // What the cursor passed was answered: it need not be written at all.
                if let Some(sent) = self.in_flight.get_mut(&plugin) {
                    *sent = sent.split_off(&(cursor + 1));
                }
                self.cursors.insert(plugin, cursor);
            }
            Cmd::Sent { plugin, sent } => {
                let pending = self.in_flight.entry(plugin).or_default();
                for d in sent {
                    pending.insert(d.seq, (d.event_id, d.attempt));
                }
            }
            Cmd::Status { plugin, status } => {
                self.statuses.insert(plugin, status);
            }
            Cmd::Subscriptions { plugin, json } => {
                self.conn
                    .prepare_cached("UPDATE plugins SET subscriptions = ?2 WHERE name = ?1")?
                    .execute(params![plugin, json])?;
            }
            Cmd::Retry {
                plugin,
                seq,
                event_id,
                attempts,
                delay,
                error,
            } => {
                let offset = format!("+{:.3} seconds", delay.as_secs_f64());
                self.conn
                    .prepare_cached(&format!(
                        "INSERT INTO retries (plugin, seq, event_id, attempts, next_at, last_error, updated_at, attempt_times) \
                         VALUES (?1, ?2, ?3, ?4, strftime('%Y-%m-%dT%H:%M:%fZ','now', ?5), ?6, {NOW}, \
                         json_array(json_object('attempt', ?4, 'at', {NOW}))) \
                         ON CONFLICT (plugin, seq) DO UPDATE SET attempts = excluded.attempts, next_at = excluded.next_at, \
                         last_error = excluded.last_error, updated_at = excluded.updated_at, \
                         attempt_times = json_insert(COALESCE(retries.attempt_times, '[]'), '$[#]', \
                         json_object('attempt', excluded.attempts, 'at', excluded.updated_at))"
                    ))?
                    .execute(params![plugin, seq, event_id, attempts, offset, error])?;
                self.last_delivery_error(&plugin, event_id, attempts, &error)?;
            }
            Cmd::ClearRetry { plugin, seq } => {
                self.conn
                    .prepare_cached("DELETE FROM retries WHERE plugin = ?1 AND seq = ?2")?
                    .execute(params![plugin, seq])?;
            }
            Cmd::Failed {
                plugin,
                seq,
                event_id,
                attempts,
                error,
            } => {
                let times = self.failed_attempt_times(&plugin, seq, event_id, attempts)?;
                self.conn
                    .prepare_cached("DELETE FROM retries WHERE plugin = ?1 AND seq = ?2")?
                    .execute(params![plugin, seq])?;
                self.conn
                    .prepare_cached(&format!(
                        "INSERT INTO failed_events (plugin, event_id, seq, attempts, last_error, failed_at, attempt_times) \
                         VALUES (?1, ?2, ?3, ?4, ?5, {NOW}, ?6) \
                         ON CONFLICT (plugin, event_id) DO UPDATE SET attempts = excluded.attempts, \
                         last_error = excluded.last_error, failed_at = excluded.failed_at, retry_requested_at = NULL, \
                         attempt_times = excluded.attempt_times"
                    ))?
                    .execute(params![plugin, event_id, seq, attempts, error, times])?;
                self.last_delivery_error(&plugin, event_id, attempts, &error)?;
            }
            Cmd::DaemonStarted { pid, http } => {
                self.conn.execute(
                    &format!(
                        "INSERT INTO daemon (id, pid, started_at, stopped_at, version, boot_id, http_listen) VALUES (1, ?1, {NOW}, NULL, ?2, ?3, ?4) \
                         ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, started_at = excluded.started_at, \
                         stopped_at = NULL, version = excluded.version, boot_id = excluded.boot_id, \
                         http_listen = excluded.http_listen"
                    ),
                    params![pid, env!("CARGO_PKG_VERSION"), crate::orphans::boot_id(), http],
                )?;
            }
            Cmd::DaemonStopped => {
                self.conn.execute(
                    &format!(
                        "UPDATE daemon SET stopped_at = {NOW}, http_listen = NULL WHERE id = 1"
                    ),
                    [],
                )?;
            }
            Cmd::Timings { plugin, json } => {
                self.conn
                    .prepare_cached("UPDATE plugins SET timings = ?2 WHERE name = ?1")?
                    .execute(params![plugin, json])?;
            }
            Cmd::ResolveFailed { plugin, event_id } => {
                crate::control::ops::resolve_failed(&self.conn, &plugin, event_id)?;
            }
            Cmd::Append { .. } | Cmd::Flush { .. } | Cmd::Control { .. } => {
                unreachable!("handled by the commit loop")
            }
        }
        Ok(())
    }

    /// The `attempt_times` of an event that failed for good as attempt `attempt`: those its
    /// failed row already had (an operator's retry that failed again), those of its waiting
    /// retry, and this one, now.
    fn failed_attempt_times(
        &self,
        plugin: &str,
        seq: i64,
        event_id: i64,
        attempt: u32,
    ) -> Result<String, StoreError> {
        let earlier = |sql: &str, key: i64| -> Result<Vec<serde_json::Value>, StoreError> {
            let text: Option<String> = self
                .conn
                .prepare_cached(sql)?
                .query_row(params![plugin, key], |r| r.get(0))
                .optional()?
                .flatten();
            Ok(text
                .and_then(|t| serde_json::from_str::<Vec<serde_json::Value>>(&t).ok())
                .unwrap_or_default())
        };
        let mut times = earlier(
            "SELECT attempt_times FROM failed_events WHERE plugin = ?1 AND event_id = ?2",
            event_id,
        )?;
        times.extend(earlier(
            "SELECT attempt_times FROM retries WHERE plugin = ?1 AND seq = ?2",
            seq,
        )?);
        let now: String = self
            .conn
            .query_row(&format!("SELECT {NOW}"), [], |r| r.get(0))?;
        times.push(serde_json::json!({"attempt": attempt, "at": now}));
        Ok(serde_json::Value::Array(times).to_string())
    }

    /// Records a plugin's last delivery error (`plugins.last_delivery_error`).
    fn last_delivery_error(
        &self,
        plugin: &str,
        event_id: i64,
        attempt: u32,
        error: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE plugins SET last_delivery_error = ?2 WHERE name = ?1")?
            .execute(params![
                plugin,
                format!("event {event_id} (attempt {attempt}): {error}")
            ])?;
        Ok(())
    }

    fn read_events(&self, after: i64, limit: usize) -> Result<Vec<JournalRow>, StoreError> {
        read_journal(&self.conn, after, limit)
    }

    fn open_plugin(
        &self,
        name: &str,
        start: Option<StartAt>,
        fingerprint: &str,
    ) -> Result<PluginRecord, StoreError> {
        let existing = self
            .conn
            .query_row(
                "SELECT cursor, state, disabled_reason, restarts, fingerprint FROM plugins WHERE name = ?1",
                params![name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        let (cursor, state, disabled_reason, restarts, fp) = match existing {
            Some(row) => row,
            None => {
                let cursor = self.start_cursor(start)?;
                self.conn.execute(
                    &format!(
                        "INSERT INTO plugins (name, state, cursor, last_event_id, restarts, fingerprint, created_at, updated_at) \
                         VALUES (?1, 'stopped', ?2, (SELECT event_id FROM events WHERE seq <= ?2 ORDER BY seq DESC LIMIT 1), 0, ?3, {NOW}, {NOW})"
                    ),
                    params![name, cursor, fingerprint],
                )?;
                (
                    cursor,
                    "stopped".to_owned(),
                    None,
                    0,
                    Some(fingerprint.to_owned()),
                )
            }
        };
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, attempts FROM retries WHERE plugin = ?1 AND seq > ?2")?;
        let mut attempts = stmt
            .query_map(params![name, cursor], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, u32>(1)?))
            })?
            .collect::<Result<HashMap<_, _>, _>>()?;
        // Deliveries in flight when the daemon last stopped (or crashed) count as attempts made.
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, attempt FROM in_flight WHERE plugin = ?1 AND seq > ?2")?;
        for row in stmt.query_map(params![name, cursor], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, u32>(1)?))
        })? {
            let (seq, attempt) = row?;
            let known = attempts.entry(seq).or_insert(attempt);
            *known = (*known).max(attempt);
        }
        let resume = self
            .conn
            .query_row(
                "SELECT last_event_id, backlog FROM plugin_resume WHERE plugin = ?1",
                params![name],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()?
            .map(|(last_event_id, backlog)| Resume {
                last_event_id,
                backlog: serde_json::from_str::<Vec<i64>>(&backlog)
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
            });
        Ok(PluginRecord {
            cursor,
            state,
            disabled_reason,
            restarts,
            fingerprint: fp,
            attempts,
            resume,
        })
    }

    /// Where a plugin new to this database starts: the head, unless its `start_at` says otherwise.
    fn start_cursor(&self, start: Option<StartAt>) -> Result<i64, StoreError> {
        let q = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> Result<i64, StoreError> {
            Ok(self.conn.query_row(sql, p, |r| r.get(0))?)
        };
        match start {
            // The configuration allows a time only for the source, never for a plugin.
            None | Some(StartAt::Latest) | Some(StartAt::Time(_)) => {
                q("SELECT COALESCE(MAX(seq), 0) FROM events", &[])
            }
            Some(StartAt::Earliest) => q("SELECT COALESCE(MIN(seq) - 1, 0) FROM events", &[]),
            Some(StartAt::EventId(id)) => q(
                "SELECT COALESCE((SELECT MIN(seq) - 1 FROM events WHERE event_id >= ?1), (SELECT MAX(seq) FROM events), 0)",
                &[&id],
            ),
        }
    }

    fn append(
        &self,
        events: &[NewEvent],
        position: &SourcePosition,
        gaps: Option<&[GapRow]>,
    ) -> Result<(), StoreError> {
        // `OR IGNORE`: an id already journaled is never journaled twice. Sources do not send one;
        // if one did, skipping it keeps "nothing delivered twice" without stopping the daemon.
        let mut stmt = self.conn.prepare_cached(&format!(
            "INSERT OR IGNORE INTO events (event_id, event_type, attribute_name, entity_type, project_id, is_transient, created_at, journaled_at, body) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, {NOW}, ?8)"
        ))?;
        for e in events {
            let inserted = stmt.execute(params![
                e.event_id,
                e.event_type,
                e.attribute_name,
                e.entity_type,
                e.project_id,
                e.is_transient,
                e.created_at,
                e.body
            ])?;
            if inserted == 0 {
                tracing::warn!(
                    event_id = e.event_id,
                    "event {} is already in the journal; not journaling it again",
                    e.event_id
                );
            }
        }
        if let Some(gaps) = gaps {
            self.conn.execute("DELETE FROM source_gaps", [])?;
            let mut insert = self.conn.prepare_cached(
                "INSERT INTO source_gaps (first_id, last_id, first_seen) VALUES (?1, ?2, ?3)",
            )?;
            for g in gaps {
                insert.execute(params![g.first_id, g.last_id, g.first_seen])?;
            }
        }
        self.save_source(position)
    }

    fn leftovers(&self) -> Result<Leftovers, StoreError> {
        let boot_id = self
            .conn
            .query_row("SELECT boot_id FROM daemon WHERE id = 1", [], |r| r.get(0))
            .optional()?
            .flatten();
        let mut stmt = self.conn.prepare(
            "SELECT name, pgid, pid_start_ticks FROM plugins \
             WHERE pgid IS NOT NULL AND pid_start_ticks IS NOT NULL ORDER BY name",
        )?;
        let groups = stmt
            .query_map([], |r| {
                Ok(crate::orphans::Recorded {
                    plugin: r.get(0)?,
                    pgid: r.get(1)?,
                    start_ticks: r.get(2)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(Leftovers { boot_id, groups })
    }

    fn source_gaps(&self) -> Result<Vec<GapRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT first_id, last_id, first_seen FROM source_gaps ORDER BY first_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(GapRow {
                first_id: r.get(0)?,
                last_id: r.get(1)?,
                first_seen: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn save_source(&self, p: &SourcePosition) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO source_state (id, kind, location, position, line, last_event_id, malformed, skipped, last_error, \
                 oversized, file_dev, file_ino, file_head, updated_at) \
                 VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, {NOW}) \
                 ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, location = excluded.location, position = excluded.position, \
                 line = excluded.line, last_event_id = excluded.last_event_id, malformed = excluded.malformed, \
                 skipped = excluded.skipped, last_error = excluded.last_error, oversized = excluded.oversized, \
                 file_dev = excluded.file_dev, file_ino = excluded.file_ino, file_head = excluded.file_head, \
                 updated_at = excluded.updated_at"
            ))?
            .execute(params![
                p.kind,
                p.location,
                p.offset,
                p.line,
                p.last_event_id,
                p.malformed,
                p.skipped,
                p.last_error,
                p.oversized,
                p.file_dev,
                p.file_ino,
                p.file_head
            ])?;
        Ok(())
    }

    fn source_position(&self) -> Result<Option<SourcePosition>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT kind, location, position, line, last_event_id, malformed, skipped, last_error, \
                 oversized, file_dev, file_ino, file_head FROM source_state WHERE id = 1",
                [],
                |r| {
                    Ok(SourcePosition {
                        kind: r.get(0)?,
                        location: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                        offset: r.get(2)?,
                        line: r.get(3)?,
                        last_event_id: r.get(4)?,
                        malformed: r.get(5)?,
                        skipped: r.get(6)?,
                        last_error: r.get(7)?,
                        oversized: r.get(8)?,
                        file_dev: r.get(9)?,
                        file_ino: r.get(10)?,
                        file_head: r.get(11)?,
                    })
                },
            )
            .optional()?)
    }

    /// One step of pruning, in a transaction of its own so that deliveries go on between two:
    /// delete up to [`PRUNE_CHUNK`] events that every known plugin is past and that are older than
    /// the retention; once none are left, give up to [`VACUUM_CHUNK`] free pages back to the file
    /// system; then checkpoint, so that the file and its write-ahead log shrink.
    fn prune_step(&mut self) -> Result<(), StoreError> {
        self.begin()?;
        let step = match self.prune {
            Prune::Idle => Ok(Prune::Idle),
            Prune::Deleting { deleted } => {
                prune_journal(&self.conn, self.options.retention, PRUNE_CHUNK).map(|n| {
                    if n == PRUNE_CHUNK {
                        Prune::Deleting {
                            deleted: deleted + n,
                        }
                    } else if deleted + n > 0 {
                        Prune::Vacuuming {
                            deleted: deleted + n,
                        }
                    } else {
                        Prune::Idle
                    }
                })
            }
            Prune::Vacuuming { deleted } => self
                .conn
                .pragma_query_value(None, "freelist_count", |r| r.get::<_, i64>(0))
                .and_then(|free| {
                    if free == 0 {
                        return Ok(Prune::Idle);
                    }
                    self.conn
                        .execute_batch(&format!("PRAGMA incremental_vacuum({VACUUM_CHUNK})"))?;
                    let left: i64 = self
                        .conn
                        .pragma_query_value(None, "freelist_count", |r| r.get(0))?;
                    // Nothing given back (no incremental vacuum on this file): stop here.
                    Ok(if left < free {
                        Prune::Vacuuming { deleted }
                    } else {
                        Prune::Idle
                    })
                })
                .map_err(StoreError::from),
        };
        let next = match step {
            Ok(next) => next,
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        };
        self.check_identity()?;
        self.conn.execute_batch("COMMIT")?;
        if let (Prune::Vacuuming { deleted }, Prune::Idle) = (self.prune, next) {
            // Moves the pruned pages out of the log into the file, which shrinks; the log is cut
            // back to `journal_size_limit` when it next starts over. PASSIVE never waits for
            // readers.
            let _ = self
                .conn
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
            tracing::info!(deleted, "pruned the journal");
        }
        self.prune = next;
        Ok(())
    }
}

/// Deletes up to `limit` journaled events that every known plugin is past and that were journaled
/// longer than `retention` ago, oldest first; returns how many.
fn prune_journal(
    conn: &Connection,
    retention: Duration,
    limit: usize,
) -> Result<usize, StoreError> {
    let cutoff = format!("-{:.3} seconds", retention.as_secs_f64());
    Ok(conn
        .prepare_cached(
            "DELETE FROM events WHERE seq IN (SELECT seq FROM events \
             WHERE seq <= (SELECT COALESCE(MIN(cursor), 0) FROM plugins) \
             AND seq NOT IN (SELECT seq FROM failed_events) \
             AND journaled_at < strftime('%Y-%m-%dT%H:%M:%fZ','now', ?1) \
             ORDER BY seq LIMIT ?2)",
        )?
        .execute(params![cutoff, limit as i64])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> StoreOptions {
        StoreOptions {
            synchronous: Synchronous::Normal,
            commit_interval: Duration::from_millis(1),
            retention: Duration::from_secs(3600),
            prune_every: PRUNE_EVERY,
        }
    }

    fn event(id: i64) -> NewEvent {
        NewEvent {
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
