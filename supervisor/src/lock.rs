//! The single-instance lock of a state directory: two daemons on one state database would deliver
//! every event twice, so the second one refuses to start.
//!
//! The lock is an exclusive `flock` on the state directory itself: a file can be deleted from under
//! its holder (and a second daemon would then lock a new file of the same name), the directory that
//! holds the database cannot be without taking the database with it. `<state_dir>/sgevents.lock`
//! holds the pid of the daemon that has the lock, for people and for the error message; deleting
//! it changes nothing. The kernel drops an `flock` when its process ends, however it ends, so a
//! lock left by a `kill -9` never blocks the next start.
//!
//! Taking the lock also enforces the state directory's permissions, at every start: the directory
//! 0700, and the database (with its `-wal` and `-shm`), the lock file and the control socket 0600.
//! A directory restored wider (a `cp` under umask 022) is corrected with one WARN; one that cannot
//! be corrected (another owner) is refused.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The lock file's name in the state directory.
pub const LOCK_FILE: &str = "sgevents.lock";

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another daemon holds it.
    #[error("another sgevents{} is using the state directory `{}`\nhint: stop it first, or give this configuration its own `state_dir`", .pid.map(|p| format!(" (pid {p})")).unwrap_or_default(), .dir.display())]
    Busy {
        /// The state directory.
        dir: PathBuf,
        /// The pid written in the lock file, if readable.
        pid: Option<u32>,
    },
    /// A state file's permissions are wider than they must be, and cannot be corrected.
    #[error("`{}` is readable by others (mode {mode:04o}) and cannot be made private: {source}\nhint: give the state directory and its files to the daemon's user (chown -R), then start again", .path.display())]
    Permissions {
        /// The file or directory.
        path: PathBuf,
        /// Its mode.
        mode: u32,
        /// Why `chmod` failed.
        source: std::io::Error,
    },
    /// The file system said no.
    #[error("cannot lock the state directory `{}`: {source}\nhint: check that the daemon's user may create and write files there", .dir.display())]
    Io {
        /// The state directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct StateLock {
    _dir: Flock<File>,
}

impl StateLock {
    /// Takes the lock of `state_dir` (creating the directory, mode 0700, if needed).
    pub fn acquire(state_dir: &Path) -> Result<StateLock, LockError> {
        let io = |source| LockError::Io {
            dir: state_dir.to_path_buf(),
            source,
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(io)?;
        let dir = File::open(state_dir).map_err(io)?;
        let dir = match Flock::lock(dir, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((_, Errno::EWOULDBLOCK)) => {
                let pid = std::fs::read_to_string(state_dir.join(LOCK_FILE))
                    .ok()
                    .and_then(|text| text.trim().parse().ok());
                return Err(LockError::Busy {
                    dir: state_dir.to_path_buf(),
                    pid,
                });
            }
            Err((_, errno)) => return Err(io(std::io::Error::from(errno))),
        };
        // The pid, for `status` readers and the message above; written only under the lock.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(state_dir.join(LOCK_FILE))
            .map_err(io)?;
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        let corrected = make_private(state_dir)?;
        if !corrected.is_empty() {
            tracing::warn!(
                "the state directory was readable by others; made private (directory 0700, files 0600): {}",
                corrected.join(", ")
            );
        }
        Ok(StateLock { _dir: dir })
    }
}

/// Makes `state_dir` 0700 and its state files 0600 where they are wider; returns what changed
/// (`path (was 0755)`).
pub fn make_private(state_dir: &Path) -> Result<Vec<String>, LockError> {
    let db = crate::store::db_path(state_dir);
    let with = |suffix: &str| {
        let mut name = db.clone().into_os_string();
        name.push(suffix);
        PathBuf::from(name)
    };
    let targets = [
        (state_dir.to_path_buf(), 0o700),
        (db.clone(), 0o600),
        (with("-wal"), 0o600),
        (with("-shm"), 0o600),
        (with("-journal"), 0o600),
        (state_dir.join(LOCK_FILE), 0o600),
        (state_dir.join(crate::control::SOCKET_FILE), 0o600),
    ];
    let mut corrected = Vec::new();
    for (path, want) in targets {
        // Not following a link: a link in the state directory is not the daemon's to change.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & !want == 0 {
            continue;
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(want)).map_err(
            |source| LockError::Permissions {
                path: path.clone(),
                mode,
                source,
            },
        )?;
        corrected.push(format!("{} (was {mode:04o})", path.display()));
    }
    Ok(corrected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_and_a_dropped_one_frees_the_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = dir.path().join("var");
        let first = StateLock::acquire(&state).expect("the first lock");
        let err = StateLock::acquire(&state).expect_err("held").to_string();
        assert!(
            err.starts_with(&format!(
                "another sgevents (pid {}) is using the state directory",
                std::process::id()
            )),
            "{err}"
        );
        assert!(err.contains("\nhint: "), "{err}");
        drop(first);
        StateLock::acquire(&state).expect("free again");
    }

    #[test]
    fn deleting_the_lock_file_does_not_free_the_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = dir.path().join("var");
        let _first = StateLock::acquire(&state).expect("the first lock");
        std::fs::remove_file(state.join(LOCK_FILE)).expect("delete the lock file");
        let err = StateLock::acquire(&state)
            .expect_err("still held")
            .to_string();
        assert!(err.starts_with("another sgevents"), "{err}");
    }
}
