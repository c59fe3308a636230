//! The CLI's side of the control socket: sends one request to the running daemon, or, when it
//! is not running and the request only changes the state database, makes the change directly.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::handle::{NOT_CONFIGURED, plural};
use super::ops::{FailedRow, PluginRow};
use super::{ControlError, Request, Response};
use crate::lock::{LockError, StateLock};
use crate::store;
use crate::table;

/// How long the CLI waits for an answer: a restart waits for the plugin's drain and stop.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

/// Sends `request` to the daemon of `state_dir`, or applies it to the database directly when the
/// daemon is not running and the request allows it.
pub fn execute(state_dir: &Path, request: &Request) -> Result<Response, ControlError> {
    let socket = super::server::socket_path(state_dir);
    match UnixStream::connect(&socket) {
        Ok(stream) => send(stream, request).map_err(|e| {
            ControlError::Refused(format!(
                "the daemon did not answer on `{}`: {e}\nhint: `sgevents status` shows whether it runs; check its log",
                socket.display()
            ))
        }),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
            if matches!(request, Request::PluginList) {
                return offline_list(state_dir);
            }
            if !request.works_offline() {
                return Err(ControlError::NotRunning {
                    socket: socket.display().to_string(),
                });
            }
            offline(state_dir, request)
        }
        Err(e) => Err(ControlError::Refused(format!(
            "cannot connect to the daemon's control socket `{}`: {e}\nhint: run this command as the daemon's user",
            socket.display()
        ))),
    }
}

fn send(stream: UnixStream, request: &Request) -> std::io::Result<Response> {
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    (&stream).write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer)?;
    if answer.is_empty() {
        return Err(std::io::Error::new(
            ErrorKind::UnexpectedEof,
            "the connection closed without an answer",
        ));
    }
    serde_json::from_str(&answer).map_err(std::io::Error::other)
}

/// Takes the state directory's lock (so that no daemon starts meanwhile) and applies `request`
/// in one transaction.
fn offline(state_dir: &Path, request: &Request) -> Result<Response, ControlError> {
    let _lock = StateLock::acquire(state_dir).map_err(|e| match e {
        LockError::Busy { pid, .. } => ControlError::Refused(format!(
            "the daemon{} holds the state directory `{}` but does not answer on its control socket\nhint: it may be starting or stopping; try again in a moment",
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
            state_dir.display()
        )),
        other => ControlError::Refused(other.to_string()),
    })?;
    let mut response = super::handle::offline(state_dir, request)?;
    response
        .message
        .push_str(" (the daemon is not running: changed in the state database)");
    Ok(response)
}

/// The text the CLI prints for a successful response.
pub fn render(request: &Request, response: &Response) -> String {
    match request {
        Request::PluginList => {
            let rows: Vec<PluginRow> =
                serde_json::from_value(response.data["plugins"].clone()).unwrap_or_default();
            render_plugins(&rows, &response.data)
        }
        Request::FailedList { .. } => {
            let rows: Vec<FailedRow> =
                serde_json::from_value(response.data["failed"].clone()).unwrap_or_default();
            render_failed(&rows)
        }
        _ => format!("{}\n", response.message),
    }
}

fn render_plugins(rows: &[PluginRow], data: &serde_json::Value) -> String {
    let plugins: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let note = data["notes"][&r.name].as_str();
            let configured = note != Some(NOT_CONFIGURED);
            json!({
                "name": r.name, "state": r.state, "pid": r.pid, "last_event_id": r.last_event_id,
                "lag": r.lag, "retries_pending": r.retries_pending, "failed": r.failed,
                "restarts": r.restarts, "timings": r.timings, "configured": configured,
                "last_error": r.disabled_reason.clone().or_else(|| r.last_error.clone()),
                "note": note.filter(|_| configured),
                "waiting_retry": r.waiting_retry, "last_delivery_error": r.last_delivery_error,
            })
        })
        .collect();
    crate::status::plugin_table(&plugins)
}

fn render_failed(rows: &[FailedRow]) -> String {
    if rows.is_empty() {
        return "no failed events\n".into();
    }
    let cells = rows
        .iter()
        .map(|r| {
            let mut error = table::headline(&r.last_error).into_owned();
            if r.retry_requested_at.is_some() {
                error.push_str(" [retry requested]");
            }
            vec![
                r.plugin.clone(),
                r.event_id.to_string(),
                r.attempts.to_string(),
                r.failed_at.clone(),
                error,
            ]
        })
        .collect();
    table::render(
        &["PLUGIN", "EVENT", "ATTEMPTS", "FAILED AT", "ERROR"],
        cells,
        &[1, 2],
    )
}

/// `plugin list` with the daemon stopped: the state database's rows, read-only, every plugin that
/// is not disabled shown `stopped`.
fn offline_list(state_dir: &Path) -> Result<Response, ControlError> {
    let mut rows = store::open_read_only(state_dir)?.plugin_rows()?;
    for r in &mut rows {
        if r.state != "disabled" {
            r.state = "stopped".into();
            r.pid = None;
        }
    }
    let n = rows.len();
    Ok(Response::done(
        format!(
            "{n} plugin{} (the daemon is not running: from the state database)",
            plural(n)
        ),
        json!({"plugins": rows, "notes": {}, "daemon_running": false}),
    ))
}
