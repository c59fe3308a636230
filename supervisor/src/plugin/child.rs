//! One plugin child process and its three pipes.
//!
//! The child runs in its own process group, so that signals reach everything it started and a
//! terminal's Ctrl-C reaches only the daemon. Each pipe has a task of its own: the stdout task
//! reads bounded lines and forwards them, the stderr task turns lines into log records (at most
//! `log_rate` a second, counting the rest), and the
//! stdin task writes what the actor queues. The actor therefore never blocks on a pipe, and can
//! always notice a deadline or a cancellation.

use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use prometheus_client::metrics::counter::Counter;
use sgevents_protocol::DEFAULT_MAX_LINE_BYTES;
use sgevents_protocol::log::{Level, parse_log_line};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;

use super::policy::{TokenBucket, thousands};
use crate::config::PluginSpec;

/// The longest stderr line kept in one log record.
const MAX_LOG_LINE: usize = 64 * 1024;
/// How long the stderr lines written before an exit may take to be relayed.
const STDERR_AFTER_EXIT: std::time::Duration = std::time::Duration::from_millis(500);
/// How many stderr lines are kept to explain an exit.
const STDERR_TAIL: usize = 5;

/// What the stdout task forwards.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A line, without its newline.
    Line(Vec<u8>),
    /// A line over the limit, dropped; its length.
    TooLong(usize),
}

/// The queue of lines to a child's stdin, written by its stdin task.
pub(crate) struct Stdin(Option<mpsc::UnboundedSender<String>>);

impl Stdin {
    /// Queues a line (newline included). Lines queued after the pipe broke are dropped: the exit
    /// will be noticed.
    pub(crate) fn send(&self, line: String) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(line);
        }
    }
}

/// A running plugin process.
pub(crate) struct PluginChild {
    /// The process; its `wait` may run beside `incoming` in one `select!`.
    pub(crate) process: Child,
    pid: u32,
    /// The queue to the child's stdin.
    pub(crate) stdin: Stdin,
    /// Lines from stdout; closed at end of file.
    pub(crate) incoming: mpsc::Receiver<Incoming>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    stderr_done: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl PluginChild {
    /// Starts the plugin's command; `log_dropped` counts its stderr lines dropped over
    /// `log_rate` (for the metrics).
    pub(crate) fn spawn(spec: &PluginSpec, log_dropped: Counter) -> std::io::Result<PluginChild> {
        // Through the launcher (`crate::launch`): the built environment, `user`, and the
        // parent-death signal; it then becomes the plugin, keeping this pid and process group.
        let mut cmd = crate::launch::command(spec)?;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn()?;
        let pid = child.id().unwrap_or(0);
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let stdin = child.stdin.take().expect("stdin is piped");

        let (line_tx, incoming) = mpsc::channel(256);
        tokio::spawn(read_stdout(
            BufReader::with_capacity(64 * 1024, stdout),
            line_tx,
        ));
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let (done_tx, stderr_done) = tokio::sync::oneshot::channel();
        let stderr_task = read_stderr(
            BufReader::new(stderr),
            spec.name.clone(),
            Arc::clone(&stderr_tail),
            spec.limits.log_rate,
            log_dropped,
        );
        tokio::spawn(async move {
            stderr_task.await;
            let _ = done_tx.send(());
        });
        let (stdin_tx, stdin_rx) = mpsc::unbounded_channel();
        tokio::spawn(write_stdin(stdin, stdin_rx));
        Ok(PluginChild {
            process: child,
            pid,
            stdin: Stdin(Some(stdin_tx)),
            incoming,
            stderr_tail,
            stderr_done: Some(stderr_done),
        })
    }

    /// The child's pid (and process group id).
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Queues a line (newline included) for the child's stdin.
    pub(crate) fn send(&self, line: String) {
        self.stdin.send(line);
    }

    /// Closes stdin once the queued lines are written.
    pub(crate) fn close_stdin(&mut self) {
        self.stdin.0 = None;
    }

    /// Waits for the child to exit.
    pub(crate) async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.process.wait().await
    }

    /// Whether it has exited, without waiting.
    pub(crate) fn try_wait(&mut self) -> Option<ExitStatus> {
        self.process.try_wait().ok().flatten()
    }

    /// Sends `signal` to the child's whole process group.
    pub(crate) fn signal(&self, signal: Signal) {
        if self.pid > 0 {
            // ESRCH (already gone) is fine.
            let _ = killpg(Pid::from_raw(self.pid as i32), signal);
        }
    }

    /// Kills the process group and reaps the child.
    pub(crate) async fn kill(&mut self) {
        self.signal(Signal::SIGKILL);
        let _ = self.process.wait().await;
    }

    /// The last lines the child wrote on stderr, for an exit message.
    pub(crate) async fn stderr_tail(&mut self) -> Option<String> {
        self.stderr_relayed().await;
        let tail = self.stderr_tail.lock().ok()?;
        tail.back().cloned()
    }

    /// After an exit: waits until the stderr task has relayed every line the child wrote (its
    /// end of the pipe closed), at most [`STDERR_AFTER_EXIT`]: a plugin's last lines at a stop
    /// reach the log before the daemon exits. A process the child left behind that still holds
    /// the pipe only costs the wait.
    pub(crate) async fn stderr_relayed(&mut self) {
        if let Some(done) = self.stderr_done.take() {
            let _ = tokio::time::timeout(STDERR_AFTER_EXIT, done).await;
        }
    }
}

impl Drop for PluginChild {
    fn drop(&mut self) {
        // Whatever the child started must not outlive it.
        self.signal(Signal::SIGKILL);
    }
}

/// Reads `\n`-terminated lines of at most [`DEFAULT_MAX_LINE_BYTES`], never holding more.
async fn read_stdout(mut reader: impl AsyncBufRead + Unpin, tx: mpsc::Sender<Incoming>) {
    let mut line = Vec::new();
    loop {
        match read_bounded_line(&mut reader, &mut line, DEFAULT_MAX_LINE_BYTES).await {
            Ok(Some(None)) => {
                if tx
                    .send(Incoming::Line(std::mem::take(&mut line)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Ok(Some(Some(len))) => {
                if tx.send(Incoming::TooLong(len)).await.is_err() {
                    return;
                }
            }
            Ok(None) | Err(_) => return,
        }
    }
}

/// Reads one line into `buf`, never holding more than `max` bytes of it. `Ok(None)` at end of
/// file; `Ok(Some(None))` for a line; `Ok(Some(Some(len)))` for a line longer than `max`, consumed
/// and dropped. (The control socket reads its requests with it too, through a `take` that ends
/// an over-long request as soon as it passes the limit.)
pub(crate) async fn read_bounded_line(
    reader: &mut (impl AsyncBufRead + Unpin),
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<Option<usize>>> {
    buf.clear();
    let mut len = 0usize;
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(match len {
                0 => None,
                n if n > max => Some(Some(n)),
                _ => Some(None),
            });
        }
        let (part, used, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], i + 1, true),
            None => (chunk, chunk.len(), false),
        };
        len += part.len();
        if len <= max {
            buf.extend_from_slice(part);
        } else {
            buf.clear();
        }
        reader.consume(used);
        if done {
            return Ok(Some(if len > max { Some(len) } else { None }));
        }
    }
}

/// Relays the child's stderr lines as log records, at most `log_rate` a second (and as many in a
/// burst; 0: no limit). Lines over the rate are read and dropped without being decoded or
/// formatted; their count is reported once a second while it grows, by a task started with the
/// first drop ([`report_dropped`]).
async fn read_stderr(
    mut reader: impl AsyncBufRead + Unpin,
    plugin: String,
    tail: Arc<Mutex<VecDeque<String>>>,
    log_rate: u32,
    log_dropped: Counter,
) {
    let mut bucket = (log_rate > 0).then(|| {
        let rate = f64::from(log_rate);
        TokenBucket::new(rate, rate, Instant::now())
    });
    let dropped = Arc::new(AtomicU64::new(0));
    let mut reporter: Option<tokio::task::JoinHandle<()>> = None;
    let mut line = Vec::new();
    // The last line dropped, kept raw so that an exit message can still show it.
    let mut last_dropped: Option<Vec<u8>> = None;
    loop {
        let too_long = match read_bounded_line(&mut reader, &mut line, MAX_LOG_LINE).await {
            Ok(Some(None)) => {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                None
            }
            Ok(Some(Some(len))) => Some(len),
            Ok(None) | Err(_) => break,
        };
        if let Some(bucket) = &mut bucket {
            if !bucket.take(Instant::now()) {
                dropped.fetch_add(1, Ordering::Relaxed);
                log_dropped.inc();
                let keep = last_dropped.get_or_insert_with(Vec::new);
                std::mem::swap(keep, &mut line);
                if reporter.as_ref().is_none_or(|r| r.is_finished()) {
                    reporter = Some(tokio::spawn(report_dropped(
                        plugin.clone(),
                        Arc::clone(&dropped),
                        log_rate,
                    )));
                }
                continue;
            }
        }
        last_dropped = None;
        let text = match too_long {
            None => String::from_utf8_lossy(&line).into_owned(),
            Some(len) => {
                format!("(a log line of {len} bytes was dropped: longer than {MAX_LOG_LINE})")
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        // A secret the plugin logged reaches neither the logs nor an exit message.
        let text = crate::redact::redact(&text).into_owned();
        let record = parse_log_line(&text);
        push_tail(&tail, record.message.clone());
        let message = if record.fields.is_empty() {
            record.message
        } else {
            format!(
                "{} {}",
                record.message,
                serde_json::Value::Object(record.fields)
            )
        };
        match record.level {
            Level::Error => tracing::error!(target: "plugin", plugin = %plugin, "{message}"),
            Level::Warn => tracing::warn!(target: "plugin", plugin = %plugin, "{message}"),
            Level::Info => tracing::info!(target: "plugin", plugin = %plugin, "{message}"),
            Level::Debug => tracing::debug!(target: "plugin", plugin = %plugin, "{message}"),
            Level::Trace => tracing::trace!(target: "plugin", plugin = %plugin, "{message}"),
        }
    }
    if let Some(raw) = last_dropped {
        push_tail(
            &tail,
            parse_log_line(&crate::redact::redact(&String::from_utf8_lossy(&raw))).message,
        );
    }
    let n = dropped.swap(0, Ordering::Relaxed);
    if n > 0 {
        warn_dropped(&plugin, n, log_rate);
    }
}

/// Keeps `message` among the last [`STDERR_TAIL`] lines.
fn push_tail(tail: &Mutex<VecDeque<String>>, message: String) {
    if let Ok(mut t) = tail.lock() {
        if t.len() == STDERR_TAIL {
            t.pop_front();
        }
        t.push_back(message);
    }
}

/// Reports the lines dropped, once a second, until a second passes without any.
async fn report_dropped(plugin: String, dropped: Arc<AtomicU64>, log_rate: u32) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let n = dropped.swap(0, Ordering::Relaxed);
        if n == 0 {
            return;
        }
        warn_dropped(&plugin, n, log_rate);
    }
}

fn warn_dropped(plugin: &str, n: u64, log_rate: u32) {
    tracing::warn!(
        plugin = %plugin,
        dropped = n,
        log_rate,
        "plugin `{plugin}`: {} log lines dropped",
        thousands(n)
    );
}

async fn write_stdin(stdin: ChildStdin, mut rx: mpsc::UnboundedReceiver<String>) {
    let mut out = BufWriter::with_capacity(64 * 1024, stdin);
    while let Some(line) = rx.recv().await {
        if out.write_all(line.as_bytes()).await.is_err() {
            return;
        }
        // Write everything queued, then flush once: batches lines under load, and costs one
        // write per line when idle.
        while let Ok(line) = rx.try_recv() {
            if out.write_all(line.as_bytes()).await.is_err() {
                return;
            }
        }
        if out.flush().await.is_err() {
            return;
        }
    }
    // The sender is gone: closing the pipe tells the plugin to exit.
    let _ = out.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_lines() {
        let input: &[u8] = b"abc\n0123456789\nxy\nlast";
        let mut reader = BufReader::with_capacity(3, input);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        while let Some(r) = read_bounded_line(&mut reader, &mut buf, 5)
            .await
            .expect("in memory")
        {
            got.push((r, String::from_utf8_lossy(&buf).into_owned()));
        }
        assert_eq!(
            got,
            [
                (None, "abc".to_owned()),
                (Some(10), String::new()),
                (None, "xy".to_owned()),
                (None, "last".to_owned())
            ]
        );
    }
}
