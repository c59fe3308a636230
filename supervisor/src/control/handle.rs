//! Requests that only change the state database, handled the same way wherever they run: by the
//! CLI when no daemon runs (`client.rs`, in a transaction of its own), by the daemon for a plugin
//! that is in the database but not configured, and by a plugin's keeper.

use rusqlite::Connection;
use serde_json::json;

use super::ops;
use super::{ControlError, Request, Response};

/// Applies a request that only changes the state database. Used by the CLI when the daemon is not
/// running, and by the daemon for a plugin that is in the database but not configured.
pub fn direct(conn: &Connection, request: &Request) -> Result<Response, ControlError> {
    match request {
        Request::PluginEnable { plugin } => Ok(match ops::enable(conn, plugin)? {
            Some(reason) => Response::done(
                format!(
                    "enabled plugin `{plugin}` (it was disabled: {reason}); it starts with the daemon"
                ),
                json!({"plugin": plugin, "action": "enabled", "was_disabled": reason}),
            ),
            None => Response::done(
                format!("plugin `{plugin}` is not disabled"),
                json!({"plugin": plugin, "action": "none"}),
            ),
        }),
        Request::PluginDisable { plugin } => Ok(if ops::disable(conn, plugin)? {
            Response::done(
                format!(
                    "disabled plugin `{plugin}`; it keeps its position and stays disabled until `sgevents plugin enable {plugin}`"
                ),
                json!({"plugin": plugin, "action": "disabled"}),
            )
        } else {
            Response::done(
                format!("plugin `{plugin}` is already disabled"),
                json!({"plugin": plugin, "action": "none"}),
            )
        }),
        Request::PluginRewind {
            plugin,
            to,
            dry_run,
        } => {
            let report = ops::rewind(conn, plugin, *to, *dry_run)?;
            Ok(Response::done(
                describe_rewind(&report),
                serde_json::to_value(&report).unwrap_or_default(),
            ))
        }
        Request::FailedList { plugin } => failed_list(conn, plugin.as_deref()),
        Request::FailedRetry { plugin, event } => {
            let n = ops::failed_retry(conn, plugin, *event)?;
            Ok(Response::done(
                format!(
                    "{n} failed event{} of plugin `{plugin}` will be delivered again when it runs",
                    plural(n)
                ),
                json!({"plugin": plugin, "action": "retry", "events": n}),
            ))
        }
        Request::FailedDrop { plugin, event } => {
            let n = ops::failed_drop(conn, plugin, *event)?;
            Ok(Response::done(
                format!("dropped {n} failed event{} of plugin `{plugin}`", plural(n)),
                json!({"plugin": plugin, "action": "drop", "events": n}),
            ))
        }
        Request::PluginList
        | Request::PluginRestart { .. }
        | Request::PluginStop { .. }
        | Request::PluginStart { .. }
        | Request::Reload => Err(ControlError::Refused(
            "this request needs a running plugin".into(),
        )),
    }
}

/// `failed list` as a response.
pub fn failed_list(conn: &Connection, plugin: Option<&str>) -> Result<Response, ControlError> {
    let rows = ops::failed_list(conn, plugin)?;
    let n = rows.len();
    Ok(Response::done(
        format!("{n} failed event{}", plural(n)),
        json!({"failed": rows}),
    ))
}

/// What `plugin list` notes of a plugin that is in the state database but not configured.
pub(crate) const NOT_CONFIGURED: &str = "not configured (state kept)";

/// The plural "s" of a count.
pub(crate) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// One sentence saying what a rewind did or would do.
fn describe_rewind(r: &ops::RewindReport) -> String {
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
