//! An operator's changes to the state database (`plugin enable`, `disable`, `rewind`, `failed
//! retry`, `failed drop`, and the `failed list` read beside them), as typed commands: made by the
//! store thread in a transaction of its own after everything sent before them
//! ([`crate::store::Store::change`]), or by the CLI in its own transaction when no daemon runs
//! ([`crate::store::change_offline`]). The same code either way.

use rusqlite::Connection;

use super::failed::{self, FailedRow};
use super::plugins::{self, RewindReport};
use super::{ChangeError, RewindTarget};

/// An operator's change (or read) of one plugin's rows, or of every plugin's failed events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Clears a disabled plugin's state.
    Enable {
        /// The plugin.
        plugin: String,
    },
    /// Marks a plugin disabled by an operator.
    Disable {
        /// The plugin.
        plugin: String,
    },
    /// Moves a plugin's cursor.
    Rewind {
        /// The plugin.
        plugin: String,
        /// Where to.
        to: RewindTarget,
        /// Only say what it would do.
        dry_run: bool,
    },
    /// The failed events of one plugin, or of all.
    FailedList {
        /// The plugin, or all.
        plugin: Option<String>,
    },
    /// Asks for failed events to be delivered again.
    FailedRetry {
        /// The plugin.
        plugin: String,
        /// One event, or all of the plugin's.
        event: Option<i64>,
    },
    /// Forgets failed events.
    FailedDrop {
        /// The plugin.
        plugin: String,
        /// One event, or all of the plugin's.
        event: Option<i64>,
    },
}

/// What a [`Change`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Changed {
    /// [`Change::Enable`]: the reason it was disabled for, or `None` when it was not disabled.
    Enabled(Option<String>),
    /// [`Change::Disable`]: whether it was not disabled already.
    Disabled(bool),
    /// [`Change::Rewind`].
    Rewound(RewindReport),
    /// [`Change::FailedList`].
    FailedList(Vec<FailedRow>),
    /// [`Change::FailedRetry`]: how many.
    Retried(usize),
    /// [`Change::FailedDrop`]: how many.
    Dropped(usize),
}

impl Change {
    /// The plugin it is about (`None`: every plugin's failed events).
    pub fn plugin(&self) -> Option<&str> {
        match self {
            Change::Enable { plugin }
            | Change::Disable { plugin }
            | Change::Rewind { plugin, .. }
            | Change::FailedRetry { plugin, .. }
            | Change::FailedDrop { plugin, .. } => Some(plugin),
            Change::FailedList { plugin } => plugin.as_deref(),
        }
    }

    /// Makes the change inside the transaction the caller opened.
    pub(super) fn apply(&self, conn: &Connection) -> Result<Changed, ChangeError> {
        Ok(match self {
            Change::Enable { plugin } => Changed::Enabled(plugins::enable(conn, plugin)?),
            Change::Disable { plugin } => Changed::Disabled(plugins::disable(conn, plugin)?),
            Change::Rewind {
                plugin,
                to,
                dry_run,
            } => Changed::Rewound(plugins::rewind(conn, plugin, *to, *dry_run)?),
            Change::FailedList { plugin } => {
                Changed::FailedList(failed::failed_list(conn, plugin.as_deref())?)
            }
            Change::FailedRetry { plugin, event } => {
                Changed::Retried(failed::failed_retry(conn, plugin, *event)?)
            }
            Change::FailedDrop { plugin, event } => {
                Changed::Dropped(failed::failed_drop(conn, plugin, *event)?)
            }
        })
    }
}
