//! The daemon's side of the control socket: accepts connections on `<state_dir>/control.sock`
//! (mode 0600), reads one JSON request per line and writes one JSON response per line.
//!
//! The server only parses and forwards: each request goes to the daemon's supervisor loop with a
//! channel for the answer, so a slow request (a plugin draining before a restart) never holds
//! up another connection.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Request, Response, SOCKET_FILE};

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
    let mut lines = BufReader::new(read).lines();
    loop {
        let line = tokio::select! {
            _ = cancel.cancelled() => return,
            line = lines.next_line() => match line {
                Ok(Some(line)) => line,
                Ok(None) | Err(_) => return,
            },
        };
        if line.trim().is_empty() {
            continue;
        }
        let response = if line.len() > MAX_REQUEST {
            Response::error(format!(
                "request of {} bytes is over the {MAX_REQUEST}-byte limit\nhint: one request per line",
                line.len()
            ))
        } else {
            match serde_json::from_str::<Request>(&line) {
                Ok(request) => ask(&requests, request).await,
                Err(e) => Response::error(format!(
                    "not a control request: {e}\nhint: send one JSON object per line, such as {{\"command\": \"plugin_list\"}}; see docs/OPERATIONS.md"
                )),
            }
        };
        // Errors and failed events quote plugins: no secret leaves in an answer.
        let mut text = crate::redact::redact(&serde_json::to_string(&response).unwrap_or_default())
            .into_owned();
        text.push('\n');
        if write.write_all(text.as_bytes()).await.is_err() {
            return;
        }
    }
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
