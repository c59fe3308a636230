//! The operator's changes to the state database, as plain SQL over one connection.
//!
//! Each function runs inside a transaction its caller opened: the store thread's (while the
//! daemon runs) or the CLI's own (when it does not, with the state directory's lock held). So
//! the same code moves a cursor whether or not the daemon is running, and each change is atomic.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{ControlError, RewindTarget};
use crate::store::{JournalRow, StoreError};

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ','now')";

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
pub fn plugin_rows(conn: &Connection) -> Result<Vec<PluginRow>, StoreError> {
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

/// How `plugin list` and `status` say a waiting retry: "retry of event 42 (attempt 3) at <time>".
pub fn describe_retry(r: &WaitingRetry) -> String {
    format!(
        "retry of event {} (attempt {}) at {}",
        r.event_id, r.attempt, r.next_at
    )
}

/// The plugins among `after` that hold a plugin back: those disabled or stopped in `rows`.
pub fn held_back_by<'a>(after: &[String], rows: &'a [PluginRow]) -> Vec<&'a PluginRow> {
    after
        .iter()
        .filter_map(|a| rows.iter().find(|r| &r.name == a))
        .filter(|r| r.state == "disabled" || r.state == "stopped")
        .collect()
}

/// How `plugin list` and `status` say it: "held back: waits for `a` (disabled), `b` (stopped)".
pub fn describe_held_back(by: &[(&str, &str)]) -> String {
    let names: Vec<String> = by.iter().map(|(n, s)| format!("`{n}` ({s})")).collect();
    format!("held back: waits for {}", names.join(", "))
}

/// What the operator's changes read of one plugin's row.
struct Known {
    state: String,
    disabled_reason: Option<String>,
    cursor: i64,
    last_event_id: Option<i64>,
}

/// The row of `plugin`, or an error naming the plugins the database knows.
fn known(conn: &Connection, plugin: &str) -> Result<Known, ControlError> {
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
pub fn plugin_state(conn: &Connection, plugin: &str) -> Result<String, ControlError> {
    Ok(known(conn, plugin)?.state)
}

fn unknown_plugin(conn: &Connection, plugin: &str) -> ControlError {
    let known: Vec<String> = conn
        .prepare("SELECT name FROM plugins ORDER BY name")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .unwrap_or_default();
    ControlError::UnknownPlugin {
        name: plugin.to_owned(),
        known,
    }
}

/// Marks `plugin` disabled by an operator; returns whether it was not disabled already.
pub fn disable(conn: &Connection, plugin: &str) -> Result<bool, ControlError> {
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
pub fn enable(conn: &Connection, plugin: &str) -> Result<Option<String>, ControlError> {
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
pub fn rewind(
    conn: &Connection,
    plugin: &str,
    target: RewindTarget,
    dry_run: bool,
) -> Result<RewindReport, ControlError> {
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
                    return Err(ControlError::NotJournaled {
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

/// One row of `failed_events`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FailedRow {
    /// The plugin.
    pub plugin: String,
    /// The event.
    pub event_id: i64,
    /// Its journal seq.
    pub seq: i64,
    /// Deliveries it had.
    pub attempts: i64,
    /// The plugin's last error.
    pub last_error: String,
    /// When it failed (UTC).
    pub failed_at: String,
    /// When an operator asked for it again, if the plugin has not had it yet.
    pub retry_requested_at: Option<String>,
}

/// The failed events of `plugin` (or of every plugin), oldest first.
pub fn failed_list(
    conn: &Connection,
    plugin: Option<&str>,
) -> Result<Vec<FailedRow>, ControlError> {
    if let Some(p) = plugin {
        plugin_state(conn, p)?;
    }
    let mut stmt = conn
        .prepare_cached(
            "SELECT plugin, event_id, seq, attempts, last_error, failed_at, retry_requested_at \
             FROM failed_events WHERE ?1 IS NULL OR plugin = ?1 ORDER BY plugin, seq",
        )
        .map_err(StoreError::from)?;
    let rows = stmt
        .query_map(params![plugin], failed_row)
        .map_err(StoreError::from)?;
    Ok(rows.collect::<Result<_, _>>().map_err(StoreError::from)?)
}

fn check_failed_event(
    conn: &Connection,
    plugin: &str,
    event: Option<i64>,
) -> Result<(), ControlError> {
    plugin_state(conn, plugin)?;
    if let Some(id) = event {
        let found: Option<i64> = conn
            .query_row(
                "SELECT seq FROM failed_events WHERE plugin = ?1 AND event_id = ?2",
                params![plugin, id],
                |r| r.get(0),
            )
            .optional()
            .map_err(StoreError::from)?;
        if found.is_none() {
            return Err(ControlError::NotFailed {
                plugin: plugin.to_owned(),
                event_id: id,
            });
        }
    }
    Ok(())
}

/// Asks for the failed events of `plugin` (one, or all) to be delivered again; returns how many.
pub fn failed_retry(
    conn: &Connection,
    plugin: &str,
    event: Option<i64>,
) -> Result<usize, ControlError> {
    check_failed_event(conn, plugin, event)?;
    Ok(conn
        .execute(
            &format!(
                "UPDATE failed_events SET retry_requested_at = {NOW} \
                 WHERE plugin = ?1 AND (?2 IS NULL OR event_id = ?2)"
            ),
            params![plugin, event],
        )
        .map_err(StoreError::from)?)
}

/// Forgets the failed events of `plugin` (one, or all); returns how many.
pub fn failed_drop(
    conn: &Connection,
    plugin: &str,
    event: Option<i64>,
) -> Result<usize, ControlError> {
    check_failed_event(conn, plugin, event)?;
    // A retry of a dropped failed event that was waiting (behind the cursor) waits no more.
    conn.execute(
        "DELETE FROM retries WHERE plugin = ?1 AND (?2 IS NULL OR event_id = ?2) \
         AND seq IN (SELECT seq FROM failed_events WHERE plugin = ?1) \
         AND seq <= (SELECT cursor FROM plugins WHERE name = ?1)",
        params![plugin, event],
    )
    .map_err(StoreError::from)?;
    Ok(conn
        .execute(
            "DELETE FROM failed_events WHERE plugin = ?1 AND (?2 IS NULL OR event_id = ?2)",
            params![plugin, event],
        )
        .map_err(StoreError::from)?)
}

/// A failed event to deliver again: its journal row and the deliveries it had.
pub type Replay = (JournalRow, u32);

/// The failed events of `plugin` that an operator asked for again, with their journal rows, in
/// journal order, each with the deliveries it had. Rows whose event left the journal are reported
/// in the second list (and no longer marked for retry).
pub fn replay_rows(conn: &Connection, plugin: &str) -> Result<(Vec<Replay>, Vec<i64>), StoreError> {
    // The journal's columns first, as `store::journal_row` reads them; `e.seq` is null for an
    // event that left the journal.
    let mut stmt = conn.prepare_cached(
        "SELECT e.seq, e.event_id, e.event_type, e.attribute_name, e.entity_type, e.project_id, \
         e.is_transient, e.created_at, e.body, f.event_id, f.attempts \
         FROM failed_events f LEFT JOIN events e ON e.seq = f.seq \
         WHERE f.plugin = ?1 AND f.retry_requested_at IS NOT NULL ORDER BY f.seq",
    )?;
    let mut rows = Vec::new();
    let mut missing = Vec::new();
    let found = stmt.query_map(params![plugin], |r| {
        let journaled = r.get::<_, Option<i64>>(0)?.is_some();
        Ok((
            r.get::<_, i64>(9)?,
            journaled
                .then(|| crate::store::journal_row(r))
                .transpose()?,
            r.get::<_, u32>(10)?,
        ))
    })?;
    for row in found {
        match row? {
            (_, Some(journal), attempts) => rows.push((journal, attempts)),
            (event_id, None, _) => missing.push(event_id),
        }
    }
    if !missing.is_empty() {
        conn.execute(
            "UPDATE failed_events SET retry_requested_at = NULL, \
                 last_error = last_error || ' (cannot be retried: the event left the journal)' \
                 WHERE plugin = ?1 AND retry_requested_at IS NOT NULL AND seq NOT IN (SELECT seq FROM events)",
            params![plugin],
        )?;
    }
    Ok((rows, missing))
}

/// The columns of a `failed_events` row that [`FailedRow`] holds, selected in this order:
/// `plugin, event_id, seq, attempts, last_error, failed_at, retry_requested_at`.
pub(crate) fn failed_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FailedRow> {
    Ok(FailedRow {
        plugin: r.get(0)?,
        event_id: r.get(1)?,
        seq: r.get(2)?,
        attempts: r.get(3)?,
        last_error: r.get(4)?,
        failed_at: r.get(5)?,
        retry_requested_at: r.get(6)?,
    })
}
