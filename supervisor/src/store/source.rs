//! The source's rows: its position (`source_state`), saved with each batch it journals, and the
//! missing ids it waits for (`source_gaps`). The daemon and `migrate` write them alike.

use rusqlite::{Connection, OptionalExtension, params};

use super::schema::NOW;
use super::{GapRow, Reader, SourcePosition, StoreError};

/// Saves the source's position and counters (the one row of `source_state`).
pub(super) fn save_source(conn: &Connection, p: &SourcePosition) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
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

/// The source's saved position.
pub(super) fn source_position(conn: &Connection) -> Result<Option<SourcePosition>, StoreError> {
    Ok(conn
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

/// The newest event id the source journaled, as saved.
pub(super) fn last_event_id(conn: &Connection) -> Result<Option<i64>, rusqlite::Error> {
    Ok(conn
        .query_row(
            "SELECT last_event_id FROM source_state WHERE id = 1",
            [],
            |r| r.get(0),
        )
        .optional()?
        .flatten())
}

/// The missing ids the source saved, in order.
pub(super) fn source_gaps(conn: &Connection) -> Result<Vec<GapRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
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

/// Forgets every saved missing id.
pub(super) fn clear_gaps(conn: &Connection) -> Result<(), StoreError> {
    conn.execute("DELETE FROM source_gaps", [])?;
    Ok(())
}

/// Saves runs of missing ids.
pub(super) fn insert_gaps(conn: &Connection, gaps: &[GapRow]) -> Result<(), StoreError> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO source_gaps (first_id, last_id, first_seen) VALUES (?1, ?2, ?3)",
    )?;
    for g in gaps {
        insert.execute(params![g.first_id, g.last_id, g.first_seen])?;
    }
    Ok(())
}

/// How many runs of missing ids are saved.
pub(super) fn gap_count(conn: &Connection) -> Result<i64, rusqlite::Error> {
    conn.query_row("SELECT count(*) FROM source_gaps", [], |r| r.get(0))
}

/// What `status` shows of the source.
#[derive(Debug, Clone)]
pub struct SourceSummary {
    /// Its kind.
    pub kind: String,
    /// What it reads.
    pub location: Option<String>,
    /// Lines read so far.
    pub line: i64,
    /// The newest event id journaled.
    pub last_event_id: Option<i64>,
    /// Malformed records seen.
    pub malformed: i64,
    /// Records skipped.
    pub skipped: i64,
    /// The last problem it reported.
    pub last_error: Option<String>,
    /// When it was saved.
    pub updated_at: String,
    /// Events skipped for their size.
    pub oversized: i64,
}

impl Reader {
    /// What `status` shows of the source, if it saved a position.
    pub fn source_summary(&self) -> Result<Option<SourceSummary>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT kind, location, line, last_event_id, malformed, skipped, last_error, updated_at, oversized FROM source_state WHERE id = 1", [], |r| {
                Ok(SourceSummary {
                    kind: r.get(0)?, location: r.get(1)?, line: r.get(2)?,
                    last_event_id: r.get(3)?, malformed: r.get(4)?, skipped: r.get(5)?,
                    last_error: r.get(6)?, updated_at: r.get(7)?,
                    oversized: r.get(8)?,
                })
            })
            .optional()?)
    }

    /// The runs of missing ids saved, and how many ids they hold.
    pub fn gap_totals(&self) -> Result<(i64, i64), StoreError> {
        Ok(self.conn.query_row(
            "SELECT count(*), COALESCE(SUM(last_id - first_id + 1), 0) FROM source_gaps",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }
}
