//! Operating one plugin at a time: the control socket, its requests, and the changes they make.
//!
//! # Theory of operation
//!
//! While the daemon runs, it listens on `<state_dir>/control.sock` (mode 0600) for JSON lines:
//! one [`Request`] per line, one [`Response`] per line back (`server`). The CLI's `plugin`,
//! `failed` and `reload` subcommands are clients of that socket ([`client`]). Requests that act
//! on a plugin go to that plugin's keeper, which alone starts and stops its actor, so one
//! plugin's restart never touches another's.
//!
//! When the daemon is not running, the commands that only change the state database (`enable`,
//! `disable`, `rewind`, `failed retry`, `failed drop`, and the read-only `failed list`) take the
//! state directory's lock and make the same change directly ([`handle`], with the store's
//! [`crate::store::change_offline`]), in one transaction. The
//! others say that the daemon is not running.
//!
//! `failed show` ([`show`]) only reads, so it reads the database directly (read-only), daemon or not.
//!
//! The wire format is documented in `docs/OPERATIONS.md` ("The control socket").

pub mod client;
pub mod handle;
pub mod ops;
pub(crate) mod server;
pub mod show;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::store::RewindTarget;
use crate::store::{ChangeError, StoreError};

/// The socket's file name in the state directory.
pub const SOCKET_FILE: &str = "control.sock";

/// One request on the control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Every plugin and its state.
    PluginList,
    /// Stop then start one plugin.
    PluginRestart {
        /// The plugin.
        plugin: String,
    },
    /// Stop one plugin until `plugin start` or the daemon's next start.
    PluginStop {
        /// The plugin.
        plugin: String,
    },
    /// Start a stopped plugin.
    PluginStart {
        /// The plugin.
        plugin: String,
    },
    /// Enable a disabled plugin and start it.
    PluginEnable {
        /// The plugin.
        plugin: String,
    },
    /// Stop a plugin and keep it disabled, across restarts, until it is enabled.
    PluginDisable {
        /// The plugin.
        plugin: String,
    },
    /// Move a plugin's cursor.
    PluginRewind {
        /// The plugin.
        plugin: String,
        /// Where to.
        to: RewindTarget,
        /// Only say what it would do.
        #[serde(default)]
        dry_run: bool,
    },
    /// The failed events of one plugin, or all.
    FailedList {
        /// The plugin, or all.
        #[serde(default)]
        plugin: Option<String>,
    },
    /// Deliver failed events again.
    FailedRetry {
        /// The plugin.
        plugin: String,
        /// One event, or all of the plugin's.
        #[serde(default)]
        event: Option<i64>,
    },
    /// Forget failed events.
    FailedDrop {
        /// The plugin.
        plugin: String,
        /// One event, or all of the plugin's.
        #[serde(default)]
        event: Option<i64>,
    },
    /// Re-read the configuration, as SIGHUP does.
    Reload,
}

impl Request {
    /// Whether the CLI may apply it to the database directly when the daemon is not running.
    pub fn works_offline(&self) -> bool {
        matches!(
            self,
            Request::PluginEnable { .. }
                | Request::PluginDisable { .. }
                | Request::PluginRewind { .. }
                | Request::FailedList { .. }
                | Request::FailedRetry { .. }
                | Request::FailedDrop { .. }
        )
    }
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Whether it was done.
    pub ok: bool,
    /// What was done, for people; or the error, with a hint.
    pub message: String,
    /// What was done, for scripts.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
}

impl Response {
    /// A success.
    pub fn done(message: impl Into<String>, data: Value) -> Response {
        Response {
            ok: true,
            message: message.into(),
            data,
        }
    }

    /// A failure.
    pub fn error(message: impl Into<String>) -> Response {
        Response {
            ok: false,
            message: message.into(),
            data: Value::Null,
        }
    }
}

/// Why a control request could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The state database refused the change: no such plugin, event or failed event.
    #[error(transparent)]
    Change(#[from] ChangeError),
    /// The request needs a running daemon.
    #[error(
        "the daemon is not running (no answer on `{socket}`)\nhint: start it with `sgevents run`; `sgevents status` shows the state it left"
    )]
    NotRunning {
        /// The socket path.
        socket: String,
    },
    /// The request cannot be done as things are.
    #[error("{0}")]
    Refused(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
