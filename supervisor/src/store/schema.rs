//! The schema: the `schema_v*.sql` migrations applied by `PRAGMA user_version`, the creation of a
//! new database (complete before it appears), the integrity checks, and the one `NOW` every
//! timestamp the database writes is made of.

use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use rusqlite::Connection;

use super::{StoreError, db_path};

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 4;

/// The migrations, in order; `MIGRATIONS[n]` takes the schema from version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[
    include_str!("schema_v1.sql"),
    include_str!("schema_v2.sql"),
    include_str!("schema_v3.sql"),
    include_str!("schema_v4.sql"),
];

/// The time now, as every timestamp column holds it (UTC, RFC 3339 with milliseconds): an SQL
/// expression.
pub(super) const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ','now')";

/// The time now, as [`NOW`] writes it.
pub(super) fn now(conn: &Connection) -> Result<String, StoreError> {
    Ok(conn.query_row(&format!("SELECT {NOW}"), [], |r| r.get(0))?)
}

/// Creates a new database at `path`, complete before it appears: built under a temporary name
/// (private, in WAL mode, migrated), closed, then renamed into place. A reader such as
/// `sqlite3 "file:state.db?mode=ro"` never sees a half-made file.
pub(super) fn create(path: &Path) -> Result<(), StoreError> {
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
pub(super) fn file_identity(path: &Path) -> std::io::Result<(u64, u64)> {
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
pub(super) fn incremental_vacuum_on(conn: &Connection, path: &Path) -> Result<(), StoreError> {
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

pub(super) fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
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
pub(super) fn prepare(state_dir: &Path) -> Result<PathBuf, StoreError> {
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
