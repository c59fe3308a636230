//! The journal (`events`): appending a batch, reading it in order, pruning what every plugin is
//! past, and the read-only reads of `tail`, `deliver` and `status`.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::schema::NOW;
use super::{JournalRow, Reader, StoreError};

/// The columns [`journal_row`] reads, in its order.
const JOURNAL_COLUMNS: &str = "seq, event_id, event_type, attribute_name, entity_type, project_id, is_transient, created_at, body";

/// A journal row, from a query that selects [`JOURNAL_COLUMNS`].
pub(super) fn journal_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JournalRow> {
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
pub(super) fn read_journal(
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

/// Deletes up to `limit` journaled events that every known plugin is past and that were journaled
/// longer than `retention` ago, oldest first; returns how many.
pub(super) fn prune_journal(
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

/// Appends `events` (their `seq` is ignored: the journal assigns it); an id already journaled is
/// skipped with a warning. Returns how many were added and the newest one added.
pub(super) fn insert_events<'a>(
    conn: &Connection,
    events: &'a [JournalRow],
) -> Result<(i64, Option<&'a JournalRow>), StoreError> {
    // `OR IGNORE`: an id already journaled is never journaled twice. Sources do not send one;
    // if one did, skipping it keeps "nothing delivered twice" without stopping the daemon.
    let mut stmt = conn.prepare_cached(&format!(
        "INSERT OR IGNORE INTO events (event_id, event_type, attribute_name, entity_type, project_id, is_transient, created_at, journaled_at, body) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, {NOW}, ?8)"
    ))?;
    let mut added = 0;
    let mut newest: Option<&JournalRow> = None;
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
        } else {
            added += 1;
            newest = Some(e);
        }
    }
    Ok((added, newest))
}

/// The journal's head (the highest `seq`, 0 when empty) and how many events it holds.
pub(super) fn head_and_count(conn: &Connection) -> Result<(i64, i64), rusqlite::Error> {
    conn.query_row(
        "SELECT COALESCE(MAX(seq), 0), count(*) FROM events",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// The journal's head: the highest `seq`, 0 when empty.
pub(super) fn head(conn: &Connection) -> Result<i64, rusqlite::Error> {
    conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
}

/// The `created_at` of the event at `seq`, if there is one.
pub(super) fn created_at(conn: &Connection, seq: i64) -> Result<Option<String>, rusqlite::Error> {
    Ok(conn
        .query_row("SELECT created_at FROM events WHERE seq = ?1", [seq], |r| {
            r.get(0)
        })
        .optional()?
        .flatten())
}

impl Reader {
    /// Up to `limit` journaled events with `seq > after`, in order.
    pub fn read_journal(&self, after: i64, limit: usize) -> Result<Vec<JournalRow>, StoreError> {
        read_journal(&self.conn, after, limit)
    }

    /// Up to `limit` journaled events with `seq < before`, newest first.
    pub fn journal_before(&self, before: i64, limit: i64) -> Result<Vec<JournalRow>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {JOURNAL_COLUMNS} FROM events WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2"
        ))?;
        let rows = stmt
            .query_map(params![before, limit], journal_row)
            .and_then(|r| r.collect())?;
        Ok(rows)
    }

    /// The journaled event `event_id` (the last journaled, should there be two).
    pub fn journal_event(&self, event_id: i64) -> Result<Option<JournalRow>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT {JOURNAL_COLUMNS} FROM events WHERE event_id = ?1 ORDER BY seq DESC LIMIT 1"
                ),
                params![event_id],
                journal_row,
            )
            .optional()?)
    }

    /// The lowest and highest journaled event ids (`None` when the journal is empty).
    pub fn journal_range(&self) -> Result<Option<(i64, i64)>, StoreError> {
        let range: Option<(Option<i64>, Option<i64>)> = self
            .conn
            .query_row("SELECT min(event_id), max(event_id) FROM events", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        Ok(match range {
            Some((Some(lo), Some(hi))) => Some((lo, hi)),
            _ => None,
        })
    }

    /// The journal's head (`seq`) and the event id there.
    pub fn journal_head(&self) -> Result<(i64, Option<i64>), StoreError> {
        Ok(self.conn.query_row(
            "SELECT COALESCE(MAX(seq), 0), (SELECT event_id FROM events ORDER BY seq DESC LIMIT 1) FROM events",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    /// The journal's head (`seq`) and how many events it holds.
    pub fn journal_size(&self) -> Result<(i64, i64), StoreError> {
        Ok(head_and_count(&self.conn)?)
    }

    /// The `created_at` of the newest journaled event.
    pub fn newest_created_at(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT created_at FROM events ORDER BY seq DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?)
    }
}
