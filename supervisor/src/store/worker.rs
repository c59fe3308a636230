//! The store thread: the one read-write connection while the daemon runs, its group commit, the
//! operator's changes each in a transaction of its own, the file's identity checked before each
//! commit and every second, waiting out another writer's lock, and pruning a chunk at a time.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::watch;

use super::schema::file_identity;
use super::{
    AfterCommit, BUSY_BACKOFF_MAX, Cmd, GapRow, IDENTITY_EVERY, JournalRow, MAX_GROUP, PRUNE_CHUNK,
    PluginStatus, SourcePosition, StoreError, StoreOptions, StoreStats, VACUUM_CHUNK, failed,
    journal, plugins, source, status,
};

pub(super) struct Worker {
    pub(super) conn: Connection,
    /// The database file, and the device and inode it had when opened.
    pub(super) path: PathBuf,
    pub(super) identity: (u64, u64),
    /// `state.db-wal` and `state.db-shm`, with the device and inode they had when opened.
    pub(super) sidecars: Vec<(PathBuf, (u64, u64))>,
    pub(super) options: StoreOptions,
    pub(super) head_tx: watch::Sender<i64>,
    pub(super) fail_tx: watch::Sender<Option<String>>,
    pub(super) cursors: HashMap<String, i64>,
    pub(super) statuses: HashMap<String, PluginStatus>,
    /// Deliveries sent and not yet passed by the plugin's cursor, not yet written: most are
    /// answered within the group and never reach the file.
    pub(super) in_flight: HashMap<String, BTreeMap<i64, (i64, u32)>>,
    pub(super) writes: usize,
    pub(super) failed: Option<String>,
    /// Since when another process's write lock has held up our writes.
    pub(super) busy_since: Option<Instant>,
    pub(super) prune: Prune,
    pub(super) stats: Arc<StoreStats>,
}

/// Where pruning is: deleting old events a chunk at a time, then giving the pages back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Prune {
    Idle,
    Deleting { deleted: usize },
    Vacuuming { deleted: usize },
}

impl Worker {
    pub(super) fn run(mut self, rx: mpsc::Receiver<Cmd>) {
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
                        None => journal::head(&self.conn).map_err(StoreError::from),
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
        let started = Instant::now();
        let result = self
            .apply_coalesced()
            .and_then(|()| self.check_identity())
            .and_then(|()| Ok(self.conn.execute_batch("COMMIT")?));
        self.writes = 0;
        match result {
            Ok(()) => self
                .stats
                .commit_duration
                .observe(started.elapsed().as_secs_f64()),
            Err(e) => self.fail(e),
        }
    }

    fn apply_coalesced(&mut self) -> Result<(), StoreError> {
        for (plugin, cursor) in self.cursors.drain() {
            plugins::set_cursor(&self.conn, &plugin, cursor)?;
        }
        for (plugin, sent) in &mut self.in_flight {
            plugins::put_in_flight(&self.conn, plugin, std::mem::take(sent))?;
        }
        for (plugin, s) in self.statuses.drain() {
            plugins::set_status(&self.conn, &plugin, &s)?;
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
                let _ = reply.send(journal::read_journal(&self.conn, after, limit));
            }
            Cmd::OpenPlugin {
                name,
                start,
                fingerprint,
                reply,
            } => {
                // A restarted actor must read the cursor its predecessor last sent.
                self.apply_coalesced()?;
                let result = plugins::open_plugin(&self.conn, &name, start, &fingerprint);
                let _ = reply.send(result);
            }
            Cmd::SourcePosition { reply } => {
                let _ = reply.send(source::source_position(&self.conn));
            }
            Cmd::SourceGaps { reply } => {
                let _ = reply.send(source::source_gaps(&self.conn));
            }
            Cmd::Leftovers { reply } => {
                let _ = reply.send(plugins::leftovers(&self.conn));
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
                plugins::set_subscriptions(&self.conn, &plugin, &json)?
            }
            Cmd::Retry {
                plugin,
                seq,
                event_id,
                attempts,
                delay,
                error,
            } => plugins::put_retry(&self.conn, &plugin, seq, event_id, attempts, delay, &error)?,
            Cmd::ClearRetry { plugin, seq } => plugins::clear_retry(&self.conn, &plugin, seq)?,
            Cmd::Failed {
                plugin,
                seq,
                event_id,
                attempts,
                error,
            } => failed::put_failed(&self.conn, &plugin, seq, event_id, attempts, &error)?,
            Cmd::DaemonStarted { pid, http } => {
                status::daemon_started(&self.conn, pid, http.as_deref())?
            }
            Cmd::DaemonStopped => status::daemon_stopped(&self.conn)?,
            Cmd::Timings { plugin, json } => plugins::set_timings(&self.conn, &plugin, &json)?,
            Cmd::ResolveFailed { plugin, event_id } => {
                failed::resolve_failed(&self.conn, &plugin, event_id)?
            }
            Cmd::Append { .. } | Cmd::Flush { .. } | Cmd::Control { .. } => {
                unreachable!("handled by the commit loop")
            }
        }
        Ok(())
    }

    fn append(
        &self,
        events: &[JournalRow],
        position: &SourcePosition,
        gaps: Option<&[GapRow]>,
    ) -> Result<(), StoreError> {
        let (added, newest) = journal::insert_events(&self.conn, events)?;
        // Counted before the commit, which follows at once: if it fails, the daemon stops.
        self.stats.events.fetch_add(added, Ordering::Relaxed);
        if let Some(e) = newest {
            self.stats.set_newest_created(e.created_at.as_deref());
        }
        if let Some(gaps) = gaps {
            self.stats.gaps.store(gaps.len() as i64, Ordering::Relaxed);
            source::clear_gaps(&self.conn)?;
            source::insert_gaps(&self.conn, gaps)?;
        }
        self.save_source(position)
    }

    fn save_source(&self, p: &SourcePosition) -> Result<(), StoreError> {
        source::save_source(&self.conn, p)?;
        self.stats
            .last_event_id
            .store(p.last_event_id.unwrap_or(i64::MIN), Ordering::Relaxed);
        Ok(())
    }

    /// One step of pruning, in a transaction of its own so that deliveries go on between two:
    /// delete up to [`PRUNE_CHUNK`] events that every known plugin is past and that are older than
    /// the retention; once none are left, give up to [`VACUUM_CHUNK`] free pages back to the file
    /// system; then checkpoint, so that the file and its write-ahead log shrink.
    fn prune_step(&mut self) -> Result<(), StoreError> {
        self.begin()?;
        let mut pruned = 0;
        let step = match self.prune {
            Prune::Idle => Ok(Prune::Idle),
            Prune::Deleting { deleted } => {
                journal::prune_journal(&self.conn, self.options.retention, PRUNE_CHUNK).map(|n| {
                    pruned = n;
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
        self.stats
            .events
            .fetch_sub(pruned as i64, Ordering::Relaxed);
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
