//! The daemon's side of the control socket: accepts connections on `<state_dir>/control.sock`
//! (mode 0600), reads one JSON request per line and writes one JSON response per line.
//!
//! The server only parses and forwards: each request goes to the daemon's supervisor loop with a
//! channel for the answer, so a slow request (a plugin draining before a restart) never holds
//! up another connection.
//!
//! A request is read with a bounded line reader: one longer than [`MAX_REQUEST`] is refused as
//! soon as it passes the limit (an error answer, then the connection is closed), so a connection
//! never holds more than that much of it in memory.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Request, Response, SOCKET_FILE};
use crate::plugin::child::read_bounded_line;

/// The longest request line accepted.
const MAX_REQUEST: usize = 64 * 1024;

/// A request and where its answer goes.
pub(crate) type Envelope = (Request, oneshot::Sender<Response>);

/// The path of the socket in `state_dir`.
pub(crate) fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_FILE)
}

/// Binds the socket (replacing a stale one: the caller holds the state directory's lock, so no
/// other daemon uses it) and serves it until `cancel`, removing it at the end.
pub(crate) fn bind(state_dir: &Path) -> anyhow::Result<(UnixListener, PathBuf)> {
    let path = socket_path(state_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "cannot remove the stale control socket `{}`\nhint: check the state directory's permissions",
                    path.display()
                )
            });
        }
    }
    let listener = UnixListener::bind(&path).with_context(|| {
        format!(
            "cannot listen on the control socket `{}`\nhint: the path must be shorter than 108 bytes and its folder writable; choose a shorter `state_dir` if needed",
            path.display()
        )
    })?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make `{}` private (mode 0600)", path.display()))?;
    Ok((listener, path))
}

/// Accepts connections until `cancel`; removes the socket file at the end.
pub(crate) async fn serve(
    listener: UnixListener,
    path: PathBuf,
    requests: mpsc::Sender<Envelope>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, requests.clone(), cancel.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control socket: cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
        }
    }
    let _ = std::fs::remove_file(&path);
}

async fn connection(
    stream: UnixStream,
    requests: mpsc::Sender<Envelope>,
    cancel: CancellationToken,
) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        // At most one byte over the limit is read: enough to know the request is too long.
        let mut limited = (&mut reader).take(MAX_REQUEST as u64 + 1);
        let read = tokio::select! {
            _ = cancel.cancelled() => return,
            read = read_bounded_line(&mut limited, &mut line, MAX_REQUEST) => match read {
                Ok(Some(read)) => read,
                Ok(None) | Err(_) => return,
            },
        };
        if read.is_some() {
            let response = Response::error(format!(
                "request over the {MAX_REQUEST}-byte limit: refused, and the connection closed\nhint: send one JSON request per line, each shorter than {MAX_REQUEST} bytes"
            ));
            let _ = write_response(&mut write, &response).await;
            return;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let response = match serde_json::from_slice::<Request>(&line) {
            Ok(request) => ask(&requests, request).await,
            Err(e) => Response::error(format!(
                "not a control request: {e}\nhint: send one JSON object per line, such as {{\"command\": \"plugin_list\"}}; see docs/OPERATIONS.md"
            )),
        };
        if write_response(&mut write, &response).await.is_err() {
            return;
        }
    }
}

async fn write_response(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    response: &Response,
) -> std::io::Result<()> {
    // Errors and failed events quote plugins: no secret leaves in an answer.
    let mut text =
        crate::redact::redact(&serde_json::to_string(response).unwrap_or_default()).into_owned();
    text.push('\n');
    write.write_all(text.as_bytes()).await
}

async fn ask(requests: &mpsc::Sender<Envelope>, request: Request) -> Response {
    let (reply, answer) = oneshot::channel();
    if requests.send((request, reply)).await.is_err() {
        return Response::error("the daemon is stopping");
    }
    answer
        .await
        .unwrap_or_else(|_| Response::error("the daemon is stopping"))
}
