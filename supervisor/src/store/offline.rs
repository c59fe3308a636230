//! The state database without the store thread: the read-only [`Reader`] of `status`, `tail`,
//! `deliver`, `failed show`, the HTTP listener and the metrics (daemon or not), and the write
//! transaction [`Offline`] of the CLI's changes and `migrate` when no daemon runs (under the state
//! directory's lock).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, params};

use super::change::{Change, Changed};
use super::schema::{SCHEMA_VERSION, check_integrity, migrate, now, prepare};
use super::{
    BUSY_TIMEOUT, ChangeError, GapRow, SourcePosition, StoreError, db_path, journal, plugins,
    source,
};

/// A read-only connection to the state database. Its typed reads are defined beside the tables
/// they read (`journal.rs`, `plugins.rs`, `failed.rs`, `source.rs`, `status.rs`).
pub struct Reader {
    pub(super) conn: Connection,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").finish_non_exhaustive()
    }
}

impl Reader {
    /// How long a read waits for another process's lock before it says "busy".
    pub fn set_busy_timeout(&self, timeout: Duration) -> Result<(), StoreError> {
        Ok(self.conn.busy_timeout(timeout)?)
    }

    /// Runs `f` in one read transaction, so that everything it reads describes one moment.
    pub fn consistently<T>(
        &self,
        f: impl FnOnce(&Reader) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        let value = f(self)?;
        tx.finish()?;
        Ok(value)
    }

    /// The connection itself, for tests that read what no typed read returns.
    #[cfg(test)]
    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }
}

/// A write transaction (`BEGIN IMMEDIATE`) on the state database without the store thread; rolled
/// back when dropped uncommitted.
pub struct Offline {
    pub(super) conn: Connection,
    open: bool,
}

impl Offline {
    /// Commits the transaction.
    pub fn commit(mut self) -> Result<(), StoreError> {
        self.conn.execute_batch("COMMIT")?;
        self.open = false;
        Ok(())
    }
}

impl Drop for Offline {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// Opens an existing state database read-write without the store thread, migrating it to this
/// version's schema, and begins a write transaction: for the CLI's changes while the daemon is not
/// running. The caller must hold the state directory's lock ([`crate::lock::StateLock`]).
pub fn open_offline(state_dir: &Path) -> Result<Offline, StoreError> {
    let path = db_path(state_dir);
    if !path.exists() {
        return Err(StoreError::Missing(path));
    }
    let conn = Connection::open(&path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrate(&conn, &path)?;
    conn.execute_batch("BEGIN IMMEDIATE")?;
    Ok(Offline { conn, open: true })
}

/// Like [`open_offline`], creating the directory and the database first when they are missing
/// (for `sgevents migrate`, which may write the first state).
pub fn create_offline(state_dir: &Path) -> Result<Offline, StoreError> {
    prepare(state_dir)?;
    open_offline(state_dir)
}

/// Makes an operator's change with the daemon stopped, in a transaction of its own: the same
/// change the store thread makes while it runs ([`crate::store::Store::change`]). The caller must
/// hold the state directory's lock.
pub fn change_offline(state_dir: &Path, change: &Change) -> Result<Changed, ChangeError> {
    let db = open_offline(state_dir)?;
    let changed = change.apply(&db.conn)?;
    db.commit()?;
    Ok(changed)
}

/// Opens the state database read-only, for `status` and other readers. Never creates it.
pub fn open_read_only(state_dir: &Path) -> Result<Reader, StoreError> {
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
    Ok(Reader { conn })
}

/// Checks the database file `db` (of any version) read-only, as [`check_integrity`] does: for
/// `sgevents check`.
pub fn check_file(db: &Path, deep: bool, limit: Option<Duration>) -> Result<bool, StoreError> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(StoreError::Sqlite)?;
    check_integrity(&conn, db, deep, limit)
}

/// What `migrate` reads and writes, in its one transaction.
impl Offline {
    /// How many events the journal holds, and how many plugin rows there are.
    pub fn counts(&self) -> Result<(i64, i64), StoreError> {
        let count = |sql: &str| -> Result<i64, rusqlite::Error> {
            self.conn.query_row(sql, [], |r| r.get(0))
        };
        Ok((
            count("SELECT count(*) FROM events")?,
            count("SELECT count(*) FROM plugins")?,
        ))
    }

    /// The source's saved position.
    pub fn source_position(&self) -> Result<Option<SourcePosition>, StoreError> {
        source::source_position(&self.conn)
    }

    /// Saves the source's position, as the daemon does with each batch.
    pub fn save_source(&self, position: &SourcePosition) -> Result<(), StoreError> {
        source::save_source(&self.conn, position)
    }

    /// Whether event `event_id` is journaled.
    pub fn is_journaled(&self, event_id: i64) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM events WHERE event_id = ?1")?
            .exists([event_id])?)
    }

    /// The missing ids the source saved.
    pub fn source_gaps(&self) -> Result<Vec<GapRow>, StoreError> {
        source::source_gaps(&self.conn)
    }

    /// Forgets every saved missing id.
    pub fn clear_gaps(&self) -> Result<(), StoreError> {
        source::clear_gaps(&self.conn)
    }

    /// Saves runs of missing ids, first missed now.
    pub fn add_gaps(&self, ranges: &[(i64, i64)]) -> Result<(), StoreError> {
        let first_seen = now(&self.conn)?;
        let gaps: Vec<GapRow> = ranges
            .iter()
            .map(|&(first_id, last_id)| GapRow {
                first_id,
                last_id,
                first_seen: first_seen.clone(),
            })
            .collect();
        source::insert_gaps(&self.conn, &gaps)
    }

    /// The journal's head: the highest `seq`, 0 when empty.
    pub fn head(&self) -> Result<i64, StoreError> {
        Ok(journal::head(&self.conn)?)
    }

    /// The first journaled event a plugin migrated with `last_event_id` and `backlog` (a JSON
    /// list of ids) still needs: its `seq`.
    pub fn first_needed(
        &self,
        last_event_id: i64,
        backlog: &str,
    ) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT MIN(seq) FROM events WHERE event_id > ?1 OR event_id IN (SELECT value FROM json_each(?2))",
            )?
            .query_row(params![last_event_id, backlog], |row| row.get(0))?)
    }

    /// Writes a migrated plugin's row, `stopped` at `cursor`, and where it resumes (`backlog`: a
    /// JSON list of ids).
    pub fn put_migrated_plugin(
        &self,
        name: &str,
        cursor: i64,
        last_event_id: i64,
        backlog: &str,
    ) -> Result<(), StoreError> {
        plugins::put_stopped(&self.conn, name, cursor, Some(last_event_id), None)?;
        plugins::put_resume(&self.conn, name, last_event_id, backlog)
    }
}
