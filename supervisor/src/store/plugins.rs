//! The `plugins` table and what hangs off it: a plugin's row (created where a new plugin starts),
//! its cursor, status, subscriptions and timings, its retries and deliveries in flight, the
//! process groups a crashed daemon left, `plugin list`'s rows, and the operator's changes of a
//! plugin (enable, disable, rewind).

use std::collections::HashMap;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::schema::NOW;
use super::{
    ChangeError, Leftovers, PluginRecord, PluginStatus, Reader, Resume, RewindTarget, StoreError,
};
use crate::config::StartAt;

/// The reason recorded when an operator disables a plugin.
pub const OPERATOR_DISABLED: &str = "disabled by an operator (`sgevents plugin disable`)";

/// One plugin, as `plugin list` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PluginRow {
    /// Its name.
    pub name: String,
    /// `starting`, `running`, `backoff`, `disabled` or `stopped`.
    pub state: String,
    /// The child's pid while it runs.
    pub pid: Option<i64>,
    /// Every event with `seq` at or below it is finished.
    pub cursor: i64,
    /// The event id at the cursor.
    pub last_event_id: Option<i64>,
    /// Journaled events after the cursor.
    pub lag: i64,
    /// Events waiting for a redelivery.
    pub retries_pending: i64,
    /// Events in `failed_events`.
    pub failed: i64,
    /// Restarts in all.
    pub restarts: i64,
    /// Why it is disabled.
    pub disabled_reason: Option<String>,
    /// The last error it had.
    pub last_error: Option<String>,
    /// The summary of its delivery durations (JSON), when it has delivered.
    pub timings: Option<serde_json::Value>,
    /// Its waiting retry with the earliest `next_at` (from `retries`), if any.
    #[serde(default)]
    pub waiting_retry: Option<WaitingRetry>,
    /// Its last delivery error (a nack's, a timeout's, a term's): "event N (attempt A): error".
    #[serde(default)]
    pub last_delivery_error: Option<String>,
}

/// An event waiting for its redelivery to one plugin.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WaitingRetry {
    /// The ShotGrid id.
    pub event_id: i64,
    /// The number of the delivery that waits (the deliveries made so far, plus one).
    pub attempt: i64,
    /// Not before this time (UTC, ISO 8601); a retry that is already sent and not answered yet
    /// keeps its row, with this time in the past.
    pub next_at: String,
    /// The error of the delivery before it.
    pub error: String,
}

/// Every plugin the database knows, by name (`plugin list` and `status` both show these).
pub(super) fn plugin_rows(conn: &Connection) -> Result<Vec<PluginRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.name, p.state, p.pid, p.cursor, p.last_event_id, l.lag, l.retries_pending, \
         l.failed, p.restarts, p.disabled_reason, p.last_error, p.timings, p.last_delivery_error, \
         (SELECT json_object('event_id', r.event_id, 'attempt', r.attempts + 1, 'next_at', r.next_at, \
                 'error', r.last_error) \
          FROM retries r WHERE r.plugin = p.name ORDER BY r.next_at, r.seq LIMIT 1) \
         FROM plugins p JOIN plugin_lag l ON l.name = p.name ORDER BY p.name",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(PluginRow {
            name: r.get(0)?,
            state: r.get(1)?,
            pid: r.get(2)?,
            cursor: r.get(3)?,
            last_event_id: r.get(4)?,
            lag: r.get(5)?,
            retries_pending: r.get(6)?,
            failed: r.get(7)?,
            restarts: r.get(8)?,
            disabled_reason: r.get(9)?,
            last_error: r.get(10)?,
            timings: r
                .get::<_, Option<String>>(11)?
                .and_then(|t| serde_json::from_str(&t).ok()),
            last_delivery_error: r.get(12)?,
            waiting_retry: r
                .get::<_, Option<String>>(13)?
                .and_then(|t| serde_json::from_str(&t).ok()),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// What the operator's changes read of one plugin's row.
struct Known {
    state: String,
    disabled_reason: Option<String>,
    cursor: i64,
    last_event_id: Option<i64>,
}

/// The row of `plugin`, or an error naming the plugins the database knows.
fn known(conn: &Connection, plugin: &str) -> Result<Known, ChangeError> {
    conn.query_row(
        "SELECT state, disabled_reason, cursor, last_event_id FROM plugins WHERE name = ?1",
        params![plugin],
        |r| {
            Ok(Known {
                state: r.get(0)?,
                disabled_reason: r.get(1)?,
                cursor: r.get(2)?,
                last_event_id: r.get(3)?,
            })
        },
    )
    .optional()
    .map_err(StoreError::from)?
    .ok_or_else(|| unknown_plugin(conn, plugin))
}

/// The state of `plugin`, or an error naming the plugins the database knows.
pub(super) fn plugin_state(conn: &Connection, plugin: &str) -> Result<String, ChangeError> {
    Ok(known(conn, plugin)?.state)
}

pub(super) fn unknown_plugin(conn: &Connection, plugin: &str) -> ChangeError {
    let known: Vec<String> = conn
        .prepare("SELECT name FROM plugins ORDER BY name")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .unwrap_or_default();
    ChangeError::UnknownPlugin {
        name: plugin.to_owned(),
        known,
    }
}

/// Marks `plugin` disabled by an operator; returns whether it was not disabled already.
pub(super) fn disable(conn: &Connection, plugin: &str) -> Result<bool, ChangeError> {
    if known(conn, plugin)?.state == "disabled" {
        return Ok(false);
    }
    conn.execute(
        &format!(
            "UPDATE plugins SET state = 'disabled', pid = NULL, disabled_reason = ?2, updated_at = {NOW} WHERE name = ?1"
        ),
        params![plugin, OPERATOR_DISABLED],
    )
    .map_err(StoreError::from)?;
    Ok(true)
}

/// Clears a disabled plugin's state; returns the reason it was disabled for, or `None` when it was
/// not disabled.
pub(super) fn enable(conn: &Connection, plugin: &str) -> Result<Option<String>, ChangeError> {
    let row = known(conn, plugin)?;
    if row.state != "disabled" {
        return Ok(None);
    }
    conn.execute(
        &format!(
            "UPDATE plugins SET state = 'stopped', disabled_reason = NULL, last_error = NULL, updated_at = {NOW} WHERE name = ?1"
        ),
        params![plugin],
    )
    .map_err(StoreError::from)?;
    Ok(Some(
        row.disabled_reason
            .unwrap_or_else(|| "no reason recorded".into()),
    ))
}

/// What a rewind did, or would do with `--dry-run`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RewindReport {
    /// The plugin.
    pub plugin: String,
    /// The cursor before.
    pub from_cursor: i64,
    /// The cursor after.
    pub to_cursor: i64,
    /// The event id at the old cursor.
    pub from_event_id: Option<i64>,
    /// The first event the plugin gets next (`None`: the next one the source journals).
    pub next_event_id: Option<i64>,
    /// Journaled events the plugin will be offered again (backwards), before its subscriptions
    /// filter them.
    pub replayed: i64,
    /// Journaled events it will never be offered (forwards: the backlog skipped).
    pub skipped: i64,
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// What the operator should know: the event asked for is older than the journal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Moves `plugin`'s cursor so that it gets `target` next (or nothing before the next new event),
/// forgetting its pending retries. With `dry_run`, only says what that means.
pub(super) fn rewind(
    conn: &Connection,
    plugin: &str,
    target: RewindTarget,
    dry_run: bool,
) -> Result<RewindReport, ChangeError> {
    let Known {
        cursor: from_cursor,
        last_event_id: from_event_id,
        ..
    } = known(conn, plugin)?;
    let head: i64 = conn
        .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
        .map_err(StoreError::from)?;
    let mut note = None;
    let to_cursor = match target {
        RewindTarget::Latest => head,
        RewindTarget::Event(id) => {
            let found: Option<(i64, i64)> = conn
                .query_row(
                    "SELECT seq, event_id FROM events WHERE event_id >= ?1 ORDER BY event_id LIMIT 1",
                    params![id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(StoreError::from)?;
            let (oldest, first_seq): (Option<i64>, Option<i64>) = conn
                .query_row("SELECT MIN(event_id), MIN(seq) FROM events", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(StoreError::from)?;
            // Before the oldest journaled event: from there, saying so (and whether pruning removed
            // what was before it).
            let pruned = first_seq.is_some_and(|s| s > 1);
            match (found, oldest) {
                (Some((seq, _)), Some(oldest)) if id < oldest => {
                    note = Some(format!(
                        "event {id} is older than the journal, which starts at event {oldest}{}; rewinding to there",
                        if pruned {
                            " (older events were pruned: `daemon.journal_retention`)"
                        } else {
                            ""
                        }
                    ));
                    seq - 1
                }
                (Some((seq, _)), _) => seq - 1,
                // Past the newest journaled event: the plugin waits for new ones.
                (None, Some(_)) => head,
                (None, None) => {
                    return Err(ChangeError::NotJournaled {
                        event_id: id,
                        oldest: None,
                    });
                }
            }
        }
    };
    let count = |lo: i64, hi: i64| -> Result<i64, StoreError> {
        Ok(conn.query_row(
            "SELECT count(*) FROM events WHERE seq > ?1 AND seq <= ?2",
            params![lo, hi],
            |r| r.get(0),
        )?)
    };
    let (replayed, skipped) = if to_cursor < from_cursor {
        (count(to_cursor, from_cursor)?, 0)
    } else {
        (0, count(from_cursor, to_cursor)?)
    };
    let next_event_id: Option<i64> = conn
        .query_row(
            "SELECT event_id FROM events WHERE seq > ?1 ORDER BY seq LIMIT 1",
            params![to_cursor],
            |r| r.get(0),
        )
        .optional()
        .map_err(StoreError::from)?;
    if !dry_run {
        conn.execute(
            &format!(
                "UPDATE plugins SET cursor = ?2, \
                 last_event_id = (SELECT event_id FROM events WHERE seq <= ?2 ORDER BY seq DESC LIMIT 1), \
                 updated_at = {NOW} WHERE name = ?1"
            ),
            params![plugin, to_cursor],
        )
        .map_err(StoreError::from)?;
        conn.execute("DELETE FROM retries WHERE plugin = ?1", params![plugin])
            .map_err(StoreError::from)?;
        // A rewound event is a new delivery from attempt 1, like a retry forgotten.
        conn.execute("DELETE FROM in_flight WHERE plugin = ?1", params![plugin])
            .map_err(StoreError::from)?;
    }
    Ok(RewindReport {
        plugin: plugin.to_owned(),
        from_cursor,
        to_cursor,
        from_event_id,
        next_event_id,
        replayed,
        skipped,
        dry_run,
        note,
    })
}

impl Reader {
    /// Every plugin the database knows, by name (`plugin list` and `status` both show these).
    pub fn plugin_rows(&self) -> Result<Vec<PluginRow>, StoreError> {
        plugin_rows(&self.conn)
    }

    /// The names of the plugins the database knows, in order.
    pub fn plugin_names(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .conn
            .prepare("SELECT name FROM plugins ORDER BY name")
            .and_then(|mut s| {
                s.query_map([], |r| r.get(0))?
                    .collect::<Result<Vec<String>, _>>()
            })?)
    }

    /// A plugin's recorded subscriptions (`plugins.subscriptions`), as JSON text.
    pub fn subscriptions(&self, plugin: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT subscriptions FROM plugins WHERE name = ?1",
                params![plugin],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }
}

/// Writes the row of a plugin that is `stopped` at `cursor`: a plugin new to the daemon, or one
/// `migrate` records (which replaces the row). `last_event_id` `None`: the event at the cursor.
pub(super) fn put_stopped(
    conn: &Connection,
    name: &str,
    cursor: i64,
    last_event_id: Option<i64>,
    fingerprint: Option<&str>,
) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "INSERT INTO plugins (name, state, cursor, last_event_id, restarts, fingerprint, created_at, updated_at) \
         VALUES (?1, 'stopped', ?2, COALESCE(?3, (SELECT event_id FROM events WHERE seq <= ?2 ORDER BY seq DESC LIMIT 1)), 0, ?4, {NOW}, {NOW}) \
         ON CONFLICT (name) DO UPDATE SET state = 'stopped', cursor = excluded.cursor, \
         last_event_id = excluded.last_event_id, pid = NULL, disabled_reason = NULL, updated_at = excluded.updated_at"
    ))?
    .execute(params![name, cursor, last_event_id, fingerprint])?;
    Ok(())
}

/// A plugin's row, created if it is new (see `docs/STATE.md` for where a new plugin starts).
pub(super) fn open_plugin(
    conn: &Connection,
    name: &str,
    start: Option<StartAt>,
    fingerprint: &str,
) -> Result<PluginRecord, StoreError> {
    let existing = conn
        .query_row(
            "SELECT cursor, state, disabled_reason, restarts, fingerprint FROM plugins WHERE name = ?1",
            params![name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?;
    let (cursor, state, disabled_reason, restarts, fp) = match existing {
        Some(row) => row,
        None => {
            let cursor = start_cursor(conn, start)?;
            put_stopped(conn, name, cursor, None, Some(fingerprint))?;
            (
                cursor,
                "stopped".to_owned(),
                None,
                0,
                Some(fingerprint.to_owned()),
            )
        }
    };
    let mut stmt =
        conn.prepare_cached("SELECT seq, attempts FROM retries WHERE plugin = ?1 AND seq > ?2")?;
    let mut attempts = stmt
        .query_map(params![name, cursor], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, u32>(1)?))
        })?
        .collect::<Result<HashMap<_, _>, _>>()?;
    // Deliveries in flight when the daemon last stopped (or crashed) count as attempts made.
    let mut stmt =
        conn.prepare_cached("SELECT seq, attempt FROM in_flight WHERE plugin = ?1 AND seq > ?2")?;
    for row in stmt.query_map(params![name, cursor], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, u32>(1)?))
    })? {
        let (seq, attempt) = row?;
        let known = attempts.entry(seq).or_insert(attempt);
        *known = (*known).max(attempt);
    }
    let resume = conn
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
fn start_cursor(conn: &Connection, start: Option<StartAt>) -> Result<i64, StoreError> {
    let q = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> Result<i64, StoreError> {
        Ok(conn.query_row(sql, p, |r| r.get(0))?)
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

/// Moves a plugin's cursor, and forgets its deliveries in flight that the cursor passed.
pub(super) fn set_cursor(conn: &Connection, plugin: &str, cursor: i64) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "UPDATE plugins SET cursor = ?2, \
         last_event_id = COALESCE((SELECT event_id FROM events WHERE seq <= ?2 ORDER BY seq DESC LIMIT 1), last_event_id), \
         updated_at = {NOW} WHERE name = ?1"
    ))?
    .execute(params![plugin, cursor])?;
    conn.prepare_cached("DELETE FROM in_flight WHERE plugin = ?1 AND seq <= ?2")?
        .execute(params![plugin, cursor])?;
    Ok(())
}

/// Records deliveries in flight: seq to (event id, attempt).
pub(super) fn put_in_flight(
    conn: &Connection,
    plugin: &str,
    sent: impl IntoIterator<Item = (i64, (i64, u32))>,
) -> Result<(), StoreError> {
    let mut insert = conn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO in_flight (plugin, seq, event_id, attempt, sent_at) VALUES (?1, ?2, ?3, ?4, {NOW})"
    ))?;
    for (seq, (event_id, attempt)) in sent {
        insert.execute(params![plugin, seq, event_id, attempt])?;
    }
    Ok(())
}

/// Records a plugin's status fields.
pub(super) fn set_status(
    conn: &Connection,
    plugin: &str,
    s: &PluginStatus,
) -> Result<(), StoreError> {
    // A plugin's process group is its pid (children lead their own group); its start
    // time tells it from a later process that reuses the pid (see `orphans`).
    let start_ticks = s.pid.and_then(crate::orphans::start_ticks);
    conn.prepare_cached(&format!(
        "UPDATE plugins SET state = ?2, pid = ?3, restarts = ?4, disabled_reason = ?5, last_error = ?6, \
         fingerprint = ?7, pgid = ?3, pid_start_ticks = ?8, updated_at = {NOW} WHERE name = ?1"
    ))?
    .execute(params![plugin, s.state.as_str(), s.pid, s.restarts, s.disabled_reason, s.last_error, s.fingerprint, start_ticks])?;
    Ok(())
}

/// Records a plugin's registered subscriptions, as JSON.
pub(super) fn set_subscriptions(
    conn: &Connection,
    plugin: &str,
    json: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE plugins SET subscriptions = ?2 WHERE name = ?1")?
        .execute(params![plugin, json])?;
    Ok(())
}

/// Records a plugin's delivery-duration summary (JSON).
pub(super) fn set_timings(conn: &Connection, plugin: &str, json: &str) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE plugins SET timings = ?2 WHERE name = ?1")?
        .execute(params![plugin, json])?;
    Ok(())
}

/// Records that an event waits for a retry after `delay`.
pub(super) fn put_retry(
    conn: &Connection,
    plugin: &str,
    seq: i64,
    event_id: i64,
    attempts: u32,
    delay: Duration,
    error: &str,
) -> Result<(), StoreError> {
    let offset = format!("+{:.3} seconds", delay.as_secs_f64());
    conn.prepare_cached(&format!(
        "INSERT INTO retries (plugin, seq, event_id, attempts, next_at, last_error, updated_at, attempt_times) \
         VALUES (?1, ?2, ?3, ?4, strftime('%Y-%m-%dT%H:%M:%fZ','now', ?5), ?6, {NOW}, \
         json_array(json_object('attempt', ?4, 'at', {NOW}))) \
         ON CONFLICT (plugin, seq) DO UPDATE SET attempts = excluded.attempts, next_at = excluded.next_at, \
         last_error = excluded.last_error, updated_at = excluded.updated_at, \
         attempt_times = json_insert(COALESCE(retries.attempt_times, '[]'), '$[#]', \
         json_object('attempt', excluded.attempts, 'at', excluded.updated_at))"
    ))?
    .execute(params![plugin, seq, event_id, attempts, offset, error])?;
    last_delivery_error(conn, plugin, event_id, attempts, error)
}

/// Forgets a retry: the event finished (or failed for good).
pub(super) fn clear_retry(conn: &Connection, plugin: &str, seq: i64) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM retries WHERE plugin = ?1 AND seq = ?2")?
        .execute(params![plugin, seq])?;
    Ok(())
}

/// Records a plugin's last delivery error (`plugins.last_delivery_error`).
pub(super) fn last_delivery_error(
    conn: &Connection,
    plugin: &str,
    event_id: i64,
    attempt: u32,
    error: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE plugins SET last_delivery_error = ?2 WHERE name = ?1")?
        .execute(params![
            plugin,
            format!("event {event_id} (attempt {attempt}): {error}")
        ])?;
    Ok(())
}

/// The plugin process groups the previous daemon recorded as running, and its boot id.
pub(super) fn leftovers(conn: &Connection) -> Result<Leftovers, StoreError> {
    let boot_id = conn
        .query_row("SELECT boot_id FROM daemon WHERE id = 1", [], |r| r.get(0))
        .optional()?
        .flatten();
    let mut stmt = conn.prepare(
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

/// Records where a plugin migrated from shotgunEvents resumes (`plugin_resume`).
pub(super) fn put_resume(
    conn: &Connection,
    plugin: &str,
    last_event_id: i64,
    backlog: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "INSERT INTO plugin_resume (plugin, last_event_id, backlog, migrated_at) VALUES (?1, ?2, ?3, {NOW}) \
         ON CONFLICT (plugin) DO UPDATE SET last_event_id = excluded.last_event_id, backlog = excluded.backlog, \
         migrated_at = excluded.migrated_at"
    ))?
    .execute(params![plugin, last_event_id, backlog])?;
    Ok(())
}
