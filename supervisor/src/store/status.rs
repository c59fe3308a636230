//! The `daemon` row (written at the daemon's start and clean stop) and what `status` reads of it.

use rusqlite::{Connection, OptionalExtension, params};

use super::schema::NOW;
use super::{Reader, StoreError};

/// Records the daemon's start; `http` is the address the HTTP listener bound, when it is on.
pub(super) fn daemon_started(
    conn: &Connection,
    pid: u32,
    http: Option<&str>,
) -> Result<(), StoreError> {
    conn.execute(
        &format!(
            "INSERT INTO daemon (id, pid, started_at, stopped_at, version, boot_id, http_listen) VALUES (1, ?1, {NOW}, NULL, ?2, ?3, ?4) \
             ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, started_at = excluded.started_at, \
             stopped_at = NULL, version = excluded.version, boot_id = excluded.boot_id, \
             http_listen = excluded.http_listen"
        ),
        params![pid, env!("CARGO_PKG_VERSION"), crate::orphans::boot_id(), http],
    )?;
    Ok(())
}

/// Records the daemon's clean stop.
pub(super) fn daemon_stopped(conn: &Connection) -> Result<(), StoreError> {
    conn.execute(
        &format!("UPDATE daemon SET stopped_at = {NOW}, http_listen = NULL WHERE id = 1"),
        [],
    )?;
    Ok(())
}

/// The `daemon` row, as `status` reads it.
#[derive(Debug, Clone)]
pub struct DaemonRow {
    /// The pid of the daemon that last started.
    pub pid: Option<i64>,
    /// When it started.
    pub started_at: Option<String>,
    /// When it stopped cleanly (`None` while it runs, or after a crash).
    pub stopped_at: Option<String>,
    /// The address its HTTP listener bound, while it runs.
    pub http_listen: Option<String>,
}

impl Reader {
    /// The `daemon` row, if a daemon ever started.
    pub fn daemon_row(&self) -> Result<Option<DaemonRow>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT pid, started_at, stopped_at, http_listen FROM daemon WHERE id = 1",
                [],
                |r| {
                    Ok(DaemonRow {
                        pid: r.get(0)?,
                        started_at: r.get(1)?,
                        stopped_at: r.get(2)?,
                        http_listen: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }
}
