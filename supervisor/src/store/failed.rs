//! `failed_events`: an event a plugin failed for good (recorded with its attempt times), the
//! operator's list, retry and drop of them, the replays an actor reads, `failed show`'s detail,
//! and the counts the metrics and the status page read.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::journal::journal_row;
use super::plugins::{self, plugin_state};
use super::schema::{NOW, now};
use super::{ChangeError, JournalRow, Reader, StoreError};

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
pub(super) fn failed_list(
    conn: &Connection,
    plugin: Option<&str>,
) -> Result<Vec<FailedRow>, ChangeError> {
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
) -> Result<(), ChangeError> {
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
            return Err(ChangeError::NotFailed {
                plugin: plugin.to_owned(),
                event_id: id,
            });
        }
    }
    Ok(())
}

/// Asks for the failed events of `plugin` (one, or all) to be delivered again; returns how many.
pub(super) fn failed_retry(
    conn: &Connection,
    plugin: &str,
    event: Option<i64>,
) -> Result<usize, ChangeError> {
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
pub(super) fn failed_drop(
    conn: &Connection,
    plugin: &str,
    event: Option<i64>,
) -> Result<usize, ChangeError> {
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
pub(super) fn replay_rows(
    conn: &Connection,
    plugin: &str,
) -> Result<(Vec<Replay>, Vec<i64>), StoreError> {
    // The journal's columns first, as `journal_row` reads them; `e.seq` is null for an
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
            journaled.then(|| journal_row(r)).transpose()?,
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
pub(super) fn failed_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FailedRow> {
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

/// Records a failed event (forgetting its retry), with its attempt times.
pub(super) fn put_failed(
    conn: &Connection,
    plugin: &str,
    seq: i64,
    event_id: i64,
    attempts: u32,
    error: &str,
) -> Result<(), StoreError> {
    let times = failed_attempt_times(conn, plugin, seq, event_id, attempts)?;
    plugins::clear_retry(conn, plugin, seq)?;
    conn.prepare_cached(&format!(
        "INSERT INTO failed_events (plugin, event_id, seq, attempts, last_error, failed_at, attempt_times) \
         VALUES (?1, ?2, ?3, ?4, ?5, {NOW}, ?6) \
         ON CONFLICT (plugin, event_id) DO UPDATE SET attempts = excluded.attempts, \
         last_error = excluded.last_error, failed_at = excluded.failed_at, retry_requested_at = NULL, \
         attempt_times = excluded.attempt_times"
    ))?
    .execute(params![plugin, event_id, seq, attempts, error, times])?;
    plugins::last_delivery_error(conn, plugin, event_id, attempts, error)
}

/// The `attempt_times` of an event that failed for good as attempt `attempt`: those its
/// failed row already had (an operator's retry that failed again), those of its waiting
/// retry, and this one, now.
fn failed_attempt_times(
    conn: &Connection,
    plugin: &str,
    seq: i64,
    event_id: i64,
    attempt: u32,
) -> Result<String, StoreError> {
    let earlier = |sql: &str, key: i64| -> Result<Vec<serde_json::Value>, StoreError> {
        let text: Option<String> = conn
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
    times.push(serde_json::json!({"attempt": attempt, "at": now(conn)?}));
    Ok(serde_json::Value::Array(times).to_string())
}

/// A retried failed event was acked: it is no longer failed.
pub(super) fn resolve_failed(
    conn: &Connection,
    plugin: &str,
    event_id: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM failed_events WHERE plugin = ?1 AND event_id = ?2")?
        .execute(params![plugin, event_id])?;
    Ok(())
}

/// One failed event as `failed show` reads it, with its journaled event.
#[derive(Debug, Clone)]
pub struct FailedRecord {
    /// Its journal seq.
    pub seq: i64,
    /// Deliveries it had.
    pub attempts: i64,
    /// When it failed (UTC).
    pub failed_at: String,
    /// When an operator asked for it again, if the plugin has not had it yet.
    pub retry_requested_at: Option<String>,
    /// The last error, whole.
    pub error: String,
    /// `attempt_times` (JSON), when recorded.
    pub attempt_times: Option<String>,
    /// The event as journaled; `None` once pruned from the journal.
    pub body: Option<String>,
}

impl Reader {
    /// Failed event `event_id` of `plugin`, if it is one.
    pub fn failed_record(
        &self,
        plugin: &str,
        event_id: i64,
    ) -> Result<Option<FailedRecord>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT f.seq, f.attempts, f.failed_at, f.retry_requested_at, f.last_error, f.attempt_times, e.body \
                 FROM failed_events f LEFT JOIN events e ON e.seq = f.seq \
                 WHERE f.plugin = ?1 AND f.event_id = ?2",
                params![plugin, event_id],
                |r| {
                    Ok(FailedRecord {
                        seq: r.get(0)?,
                        attempts: r.get(1)?,
                        failed_at: r.get(2)?,
                        retry_requested_at: r.get(3)?,
                        error: r.get(4)?,
                        attempt_times: r.get(5)?,
                        body: r.get(6)?,
                    })
                },
            )
            .optional()?)
    }

    /// Failed events per plugin: one indexed count.
    pub fn failed_counts(&self) -> Result<BTreeMap<String, i64>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT plugin, count(*) FROM failed_events GROUP BY plugin")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
                    .collect::<Result<BTreeMap<_, _>, _>>()
            })?)
    }

    /// The newest `per_plugin` failed events of each plugin, by plugin then journal order.
    pub fn newest_failed(&self, per_plugin: usize) -> Result<Vec<FailedRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT plugin, event_id, seq, attempts, last_error, failed_at, retry_requested_at FROM \
             (SELECT *, row_number() OVER (PARTITION BY plugin ORDER BY seq DESC) AS n FROM failed_events) \
             WHERE n <= ?1 ORDER BY plugin, seq",
        )?;
        let failed = stmt
            .query_map([per_plugin as i64], failed_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(failed)
    }
}
