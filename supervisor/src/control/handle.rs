//! Requests that only change the state database, handled the same way wherever they run: by the
//! CLI when no daemon runs (`client.rs`, in a transaction of its own), by the daemon for a plugin
//! that is in the database but not configured, and by a plugin's keeper. The change itself is the
//! store's ([`Change`]); this is what a request asks of it and what the answer says.

use std::path::Path;

use serde_json::json;

use super::ops::RewindReport;
use super::{ControlError, Request, Response};
use crate::store::{self, Change, Changed, Store, StoreError};

/// The change `request` makes to the state database; refused for a request that needs a running
/// plugin.
pub fn change_of(request: &Request) -> Result<Change, ControlError> {
    Ok(match request.clone() {
        Request::PluginEnable { plugin } => Change::Enable { plugin },
        Request::PluginDisable { plugin } => Change::Disable { plugin },
        Request::PluginRewind {
            plugin,
            to,
            dry_run,
        } => Change::Rewind {
            plugin,
            to,
            dry_run,
        },
        Request::FailedList { plugin } => Change::FailedList { plugin },
        Request::FailedRetry { plugin, event } => Change::FailedRetry { plugin, event },
        Request::FailedDrop { plugin, event } => Change::FailedDrop { plugin, event },
        Request::PluginList
        | Request::PluginRestart { .. }
        | Request::PluginStop { .. }
        | Request::PluginStart { .. }
        | Request::Reload => {
            return Err(ControlError::Refused(
                "this request needs a running plugin".into(),
            ));
        }
    })
}

/// Makes the change of a request that only changes the state database in the running daemon's
/// store (after everything sent before it); the outer error: the commit failed.
pub async fn direct(
    store: &Store,
    request: &Request,
) -> Result<Result<Response, ControlError>, StoreError> {
    let change = match change_of(request) {
        Ok(change) => change,
        Err(e) => return Ok(Err(e)),
    };
    let changed = store.change(change.clone()).await?;
    Ok(changed
        .map(|changed| respond(&change, changed))
        .map_err(ControlError::from))
}

/// Makes the change of a request that only changes the state database with the daemon stopped,
/// in a transaction of its own. The caller holds the state directory's lock.
pub fn offline(state_dir: &Path, request: &Request) -> Result<Response, ControlError> {
    let change = change_of(request)?;
    let changed = store::change_offline(state_dir, &change)?;
    Ok(respond(&change, changed))
}

/// The answer to a change made.
pub fn respond(change: &Change, changed: Changed) -> Response {
    let plugin = change.plugin().unwrap_or_default();
    match changed {
        Changed::Enabled(Some(reason)) => Response::done(
            format!(
                "enabled plugin `{plugin}` (it was disabled: {reason}); it starts with the daemon"
            ),
            json!({"plugin": plugin, "action": "enabled", "was_disabled": reason}),
        ),
        Changed::Enabled(None) => Response::done(
            format!("plugin `{plugin}` is not disabled"),
            json!({"plugin": plugin, "action": "none"}),
        ),
        Changed::Disabled(true) => Response::done(
            format!(
                "disabled plugin `{plugin}`; it keeps its position and stays disabled until `sgevents plugin enable {plugin}`"
            ),
            json!({"plugin": plugin, "action": "disabled"}),
        ),
        Changed::Disabled(false) => Response::done(
            format!("plugin `{plugin}` is already disabled"),
            json!({"plugin": plugin, "action": "none"}),
        ),
        Changed::Rewound(report) => Response::done(
            describe_rewind(&report),
            serde_json::to_value(&report).unwrap_or_default(),
        ),
        Changed::FailedList(rows) => {
            let n = rows.len();
            Response::done(
                format!("{n} failed event{}", plural(n)),
                json!({"failed": rows}),
            )
        }
        Changed::Retried(n) => Response::done(
            format!(
                "{n} failed event{} of plugin `{plugin}` will be delivered again when it runs",
                plural(n)
            ),
            json!({"plugin": plugin, "action": "retry", "events": n}),
        ),
        Changed::Dropped(n) => Response::done(
            format!("dropped {n} failed event{} of plugin `{plugin}`", plural(n)),
            json!({"plugin": plugin, "action": "drop", "events": n}),
        ),
    }
}

/// What `plugin list` notes of a plugin that is in the state database but not configured.
pub(crate) const NOT_CONFIGURED: &str = "not configured (state kept)";

/// The plural "s" of a count.
pub(crate) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// One sentence saying what a rewind did or would do.
fn describe_rewind(r: &RewindReport) -> String {
    let verb = if r.dry_run { "would move" } else { "moved" };
    let next = match r.next_event_id {
        Some(id) => format!("its next event is {id}"),
        None => "it gets the next event the source journals".into(),
    };
    let what = if r.replayed > 0 {
        format!(
            "{} journaled event{} will be offered again",
            r.replayed,
            plural(r.replayed as usize)
        )
    } else if r.skipped > 0 {
        format!(
            "{} journaled event{} will be skipped",
            r.skipped,
            plural(r.skipped as usize)
        )
    } else {
        "nothing is replayed or skipped".into()
    };
    let from = match r.from_event_id {
        Some(id) => format!("had finished up to event {id}"),
        None => "had finished nothing".into(),
    };
    let note = r
        .note
        .as_ref()
        .map(|n| format!("\nnote: {n}"))
        .unwrap_or_default();
    format!(
        "{verb} plugin `{}`, which {from}: {what}; {next}{note}",
        r.plugin
    )
}
