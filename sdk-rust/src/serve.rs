//! The loop every plugin runs, over real stdio ([`Plugin::run`](crate::Plugin::run)) or in memory
//! ([`testing`](crate::testing)): the same code either way.
//!
//! The caller's thread reads: it answers `ping` itself, queues events for the workers and notices
//! `shutdown` and the end of input. `max_in_flight` scoped worker threads take events off the queue
//! and run their callbacks. Every output line goes through [`Output`], one mutex around the writer,
//! so lines never interleave and a `fatal` is the last line ever written.
//!
//! **Invariant:** the loop returns only once every worker has finished; the scope guarantees it.
//! Ending early on `fatal` is done by `exit` in a real process; in memory the output is closed
//! instead and the loop returns at the end of input.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufRead, Read, Write};
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;

use sgevents_protocol::codec::excerpt;
use sgevents_protocol::{
    DaemonMessage, EventDelivery, Hello, LineReader, PluginMessage, ReadLine, Register, SUPPORTED,
    choose_version, decode_daemon_line, encode,
};

use crate::context::{Context, Credentials, Emit, Registered};
use crate::error::{Error, ErrorKind};
use crate::log::Logger;
use crate::plugin::{Callback, Plugin, Setup};

/// The `error` of the `nack` answering an event that arrives after `shutdown`.
pub(crate) const SHUTTING_DOWN: &str = "plugin is shutting down";

/// How much of a bad input line goes into its log record.
const EXCERPT_BYTES: usize = 100;

/// How the loop ended: what the process's exit status is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exit {
    /// Input ended (stdin closed): status 0.
    Success,
    /// The daemon stopped reading the output (a broken pipe): status 0, since the daemon has gone
    /// and will deliver the unanswered events again.
    OutputClosed,
    /// The plugin answered `fatal`: status 125.
    Fatal,
}

impl Exit {
    /// The process exit status: 0, or 125 after `fatal`.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success | Exit::OutputClosed => 0,
            Exit::Fatal => 125,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}

/// How to run the loop.
pub(crate) struct Options {
    /// The longest input line accepted, newline excluded.
    pub(crate) max_line_bytes: usize,
    /// What callbacks see as [`Context::credentials`].
    pub(crate) credentials: Option<Credentials>,
    /// Where the SDK's and the callbacks' log records go.
    pub(crate) logger: Logger,
    /// Exit the process with status 125 right after writing `fatal` (a real plugin), or close the
    /// output and let the loop return [`Exit::Fatal`] (in memory).
    pub(crate) exit_on_fatal: bool,
}

/// Runs a plugin over `input` and `output` until input ends; see the module docs.
pub(crate) fn serve<R: BufRead, W: Write + Send>(
    plugin: Plugin,
    input: R,
    output: W,
    options: Options,
) -> Exit {
    let Options {
        max_line_bytes,
        credentials,
        logger,
        exit_on_fatal,
    } = options;
    let out = Output::new(output, logger.clone(), exit_on_fatal);
    let head = RefCell::new(Vec::new());
    let mut lines = Lines {
        reader: LineReader::new(
            HeadRecorder {
                inner: input,
                head: &head,
            },
            max_line_bytes,
        ),
        head: &head,
        buf: Vec::new(),
        max: max_line_bytes,
        logger: logger.clone(),
    };

    let hello = loop {
        match lines.next() {
            None => {
                logger.debug("stdin closed before `hello`");
                return Exit::Success;
            }
            Some(DaemonMessage::Hello(hello)) => break hello,
            Some(other) => {
                logger.error(format_args!(
                    "ignoring a `{}` message before `hello`",
                    other.kind()
                ));
            }
        }
    };
    let (register, session) = match handshake(plugin, hello, credentials, &logger) {
        Ok(ready) => ready,
        Err(error) => {
            logger.error(format_args!("cannot start: {error}"));
            out.fatal(&error);
            return out.end();
        }
    };
    let window = register.max_in_flight;
    logger.debug(format_args!(
        "registering {} subscriptions with max_in_flight {window}",
        register.subscriptions.len()
    ));
    if !out.send(&PluginMessage::Register(register)) {
        return out.end();
    }

    let (jobs, queue) = mpsc::channel();
    let queue = Mutex::new(queue);
    thread::scope(|scope| {
        for i in 0..window {
            let spawned = thread::Builder::new()
                .name(format!("sgevents-worker-{i}"))
                .spawn_scoped(scope, || work(&queue, &out, &session));
            if let Err(error) = spawned {
                let error = format!("cannot start worker thread {i}: {error}");
                logger.error(&error);
                out.fatal(&error);
                return;
            }
        }
        read(&mut lines, jobs, &out, &logger);
        // `jobs` is dropped: the workers finish what is queued, then the scope joins them.
    });
    out.end()
}

/// Chooses the version, runs the setup hooks and builds the `register` answer; an error is the
/// text of the `fatal` answer.
fn handshake(
    plugin: Plugin,
    hello: Hello,
    credentials: Option<Credentials>,
    logger: &Logger,
) -> Result<(Register, Session), String> {
    let Some(protocol) = choose_version(&hello.protocols) else {
        return Err(format!(
            "no common protocol version: the daemon offers {:?}, this plugin speaks {:?}\nhint: \
             upgrade the older of the two (the sgevents daemon or this plugin's SDK)",
            hello.protocols, SUPPORTED
        ));
    };
    let Plugin {
        handlers,
        max_in_flight,
        alerts,
        setup: hooks,
    } = plugin;
    let mut setup = Setup {
        handlers,
        max_in_flight,
        alerts,
        plugin: hello.plugin,
        credentials,
        logger: logger.clone(),
    };
    for hook in hooks {
        match panic::catch_unwind(AssertUnwindSafe(|| hook(&mut setup, &hello.config))) {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(format!("plugin setup failed: {error}")),
            Err(payload) => {
                return Err(format!(
                    "plugin setup panicked: {}",
                    panic_message(&*payload)
                ));
            }
        }
    }
    let Setup {
        handlers,
        max_in_flight,
        alerts,
        plugin,
        credentials,
        logger,
    } = setup;
    let register = Register {
        protocol,
        subscriptions: handlers.iter().map(|h| h.subscription.clone()).collect(),
        max_in_flight,
        alerts,
    };
    register
        .validate(&hello.protocols)
        .map_err(|e| e.to_string())?;
    let handlers = handlers
        .into_iter()
        .map(|h| (h.subscription.name, h.callback))
        .collect();
    Ok((
        register,
        Session {
            known: Registered {
                plugin,
                config: hello.config,
                credentials,
                logger,
            },
            handlers,
        },
    ))
}

/// Reads messages after the handshake until input ends or the output is closed.
fn read<R: BufRead, W: Write + Send>(
    lines: &mut Lines<'_, R>,
    jobs: Sender<EventDelivery>,
    out: &Output<W>,
    logger: &Logger,
) {
    let mut shutting_down = false;
    while let Some(message) = lines.next() {
        match message {
            DaemonMessage::Hello(_) => logger.error("ignoring a second `hello`"),
            DaemonMessage::Event(delivery) if shutting_down => {
                let event_id = delivery.event_id;
                logger.warn(format_args!(
                    "event {event_id}: refused, the plugin is shutting down"
                ));
                out.send(&PluginMessage::Nack {
                    event_id,
                    error: SHUTTING_DOWN.to_owned(),
                    retry_after_ms: None,
                });
            }
            DaemonMessage::Event(delivery) => {
                // The queue's receiver lives until the loop returns, so this cannot fail.
                drop(jobs.send(delivery));
            }
            DaemonMessage::Ping { nonce } => {
                out.send(&PluginMessage::Pong { nonce });
            }
            DaemonMessage::Shutdown { .. } => {
                if !shutting_down {
                    logger.info("shutdown requested: finishing the events in flight");
                }
                shutting_down = true;
            }
        }
        if !out.is_open() {
            return;
        }
    }
    logger.debug("stdin closed: finishing the events in flight");
}

/// One worker: takes events off the queue until it is closed and empty.
fn work<W: Write + Send>(
    queue: &Mutex<Receiver<EventDelivery>>,
    out: &Output<W>,
    session: &Session,
) {
    loop {
        // The guard is dropped at the end of this statement, so only waiting is serialised.
        let next = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(delivery) = next else { return };
        if !out.is_open() {
            // After `fatal` or a broken pipe nobody would read the answer.
            continue;
        }
        match session.handle(&delivery, out) {
            Answer::Message(message) => {
                out.send(&message);
            }
            Answer::Fatal(error) => out.fatal(&error),
        }
    }
}

/// A registered plugin and its callbacks by subscription name; shared by the workers.
pub(crate) struct Session {
    known: Registered,
    handlers: HashMap<String, Box<Callback>>,
}

/// How one event is answered.
enum Answer {
    Message(PluginMessage),
    Fatal(String),
}

impl Session {
    /// Runs the callbacks of one event in order, stopping at the first failure.
    fn handle(&self, delivery: &EventDelivery, emit: &dyn Emit) -> Answer {
        let event_id = delivery.event_id;
        // Every name is checked before any callback runs: a name without a callback is a daemon
        // bug, and running half of the callbacks would not help.
        let mut callbacks = Vec::with_capacity(delivery.subscriptions.len());
        for name in &delivery.subscriptions {
            let Some(callback) = self.handlers.get(name) else {
                let error = format!("no callback for subscription \"{name}\" in this plugin");
                self.known.logger.error(format_args!(
                    "event {event_id} (attempt {}): {error}",
                    delivery.attempt
                ));
                return Answer::Message(PluginMessage::Term { event_id, error });
            };
            callbacks.push((name.as_str(), callback));
        }
        for (name, callback) in callbacks {
            let context = Context::new(&self.known, emit, delivery, name);
            let result =
                panic::catch_unwind(AssertUnwindSafe(|| callback(&context, &delivery.event)));
            let error = match result {
                Ok(Ok(())) => continue,
                Ok(Err(error)) => error,
                Err(payload) => Error::new(format_args!(
                    "callback panicked: {}",
                    panic_message(&*payload)
                )),
            };
            return self.failure(delivery, name, error);
        }
        Answer::Message(PluginMessage::Ack { event_id })
    }

    /// Logs a failed event and turns the error into its answer.
    fn failure(&self, delivery: &EventDelivery, name: &str, error: Error) -> Answer {
        let (event_id, attempt) = (delivery.event_id, delivery.attempt);
        let retry_after_ms = error.retry_after_ms();
        let kind = error.kind();
        let message = error.message().to_owned();
        match kind {
            ErrorKind::Nack => {
                let delay = retry_after_ms
                    .map(|ms| format!(", retry in {ms} ms"))
                    .unwrap_or_default();
                self.known.logger.warn(format_args!(
                    "event {event_id} (attempt {attempt}) failed in `{name}`{delay}: {message}"
                ));
                Answer::Message(PluginMessage::Nack {
                    event_id,
                    error: message,
                    retry_after_ms,
                })
            }
            ErrorKind::Term => {
                self.known.logger.error(format_args!(
                    "event {event_id} (attempt {attempt}) can never succeed, says `{name}`: \
                     {message}"
                ));
                Answer::Message(PluginMessage::Term {
                    event_id,
                    error: message,
                })
            }
            ErrorKind::Fatal => {
                self.known.logger.error(format_args!(
                    "event {event_id} (attempt {attempt}): `{name}` says the plugin cannot go \
                     on: {message}"
                ));
                Answer::Fatal(message)
            }
        }
    }
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}

/// The one writer of protocol lines.
struct Output<W> {
    state: Mutex<OutputState<W>>,
    logger: Logger,
    exit_on_fatal: bool,
}

struct OutputState<W> {
    /// `None` once closed, by a `fatal` or a failed write.
    writer: Option<W>,
    /// How the loop ends as far as the output knows: [`Exit::Success`] while it is open.
    end: Exit,
}

impl<W: Write> Output<W> {
    fn new(writer: W, logger: Logger, exit_on_fatal: bool) -> Output<W> {
        Output {
            state: Mutex::new(OutputState {
                writer: Some(writer),
                end: Exit::Success,
            }),
            logger,
            exit_on_fatal,
        }
    }

    fn lock(&self) -> MutexGuard<'_, OutputState<W>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes and flushes one line; false when the output is (or just got) closed.
    fn send(&self, message: &PluginMessage) -> bool {
        let mut state = self.lock();
        let Some(writer) = state.writer.as_mut() else {
            return false;
        };
        let line = encode(message);
        match writer
            .write_all(line.as_bytes())
            .and_then(|()| writer.flush())
        {
            Ok(()) => true,
            Err(error) => {
                self.logger.error(format_args!(
                    "cannot write to stdout ({error}): the daemon has gone away; exiting once the \
                     callbacks in flight return"
                ));
                state.writer = None;
                state.end = Exit::OutputClosed;
                false
            }
        }
    }

    /// Writes `fatal` as the last line, then exits the process (or closes the output in memory).
    fn fatal(&self, error: &str) {
        let mut state = self.lock();
        let Some(mut writer) = state.writer.take() else {
            return;
        };
        state.end = Exit::Fatal;
        let line = encode(&PluginMessage::Fatal {
            error: error.to_owned(),
        });
        if let Err(write_error) = writer
            .write_all(line.as_bytes())
            .and_then(|()| writer.flush())
        {
            self.logger.error(format_args!(
                "cannot write `fatal` to stdout: {write_error}"
            ));
        }
        if self.exit_on_fatal {
            // At once, still holding the lock so that nothing follows the `fatal` line, and
            // without waiting for the other workers.
            drop(io::stderr().flush());
            std::process::exit(i32::from(Exit::Fatal.code()));
        }
        // In memory, closing the output is what the process's exit would do.
        drop(writer);
    }

    fn is_open(&self) -> bool {
        self.lock().writer.is_some()
    }

    fn end(&self) -> Exit {
        self.lock().end
    }
}

impl<W: Write + Send> Emit for Output<W> {
    fn emit(&self, message: &PluginMessage) -> bool {
        self.send(message)
    }
}

impl<W> fmt::Debug for Output<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Output").finish_non_exhaustive()
    }
}

/// Daemon messages read from input; bad lines are logged and skipped.
struct Lines<'h, R> {
    reader: LineReader<HeadRecorder<'h, R>>,
    head: &'h RefCell<Vec<u8>>,
    buf: Vec<u8>,
    max: usize,
    logger: Logger,
}

impl<R: BufRead> Lines<'_, R> {
    /// The next valid message; `None` at the end of input (or when input cannot be read).
    fn next(&mut self) -> Option<DaemonMessage> {
        loop {
            self.head.borrow_mut().clear();
            match self.reader.read(&mut self.buf) {
                Ok(ReadLine::Eof) => return None,
                Err(error) => {
                    self.logger.error(format_args!(
                        "cannot read stdin ({error}); stopping as at its end"
                    ));
                    return None;
                }
                Ok(ReadLine::TooLong { len }) => self.logger.error(format_args!(
                    "ignoring a line of {len} bytes from the daemon, over the limit of {} bytes: \
                     `{}...`",
                    self.max,
                    excerpt(&self.head.borrow(), EXCERPT_BYTES)
                )),
                Ok(ReadLine::Line) => match decode_daemon_line(&self.buf) {
                    Ok(message) => return Some(message),
                    Err(error) => self.logger.error(format_args!(
                        "ignoring a bad line from the daemon `{}`: {error}",
                        excerpt(&self.buf, EXCERPT_BYTES)
                    )),
                },
            }
        }
    }
}

/// Passes reads through and keeps the first bytes consumed since `head` was last cleared, so that
/// a line too long to keep can still be shown by its start.
struct HeadRecorder<'h, R> {
    inner: R,
    head: &'h RefCell<Vec<u8>>,
}

impl<R: BufRead> Read for HeadRecorder<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = {
            let available = self.fill_buf()?;
            let n = available.len().min(out.len());
            out[..n].copy_from_slice(&available[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for HeadRecorder<'_, R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        let mut head = self.head.borrow_mut();
        let room = EXCERPT_BYTES.saturating_sub(head.len()).min(amount);
        if room > 0 {
            // The bytes being consumed are the start of what `fill_buf` returned; they are still
            // buffered, so this call does no I/O.
            if let Ok(buffered) = self.inner.fill_buf() {
                head.extend_from_slice(&buffered[..room.min(buffered.len())]);
            }
        }
        self.inner.consume(amount);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(Exit::Success.code(), 0);
        assert_eq!(Exit::OutputClosed.code(), 0);
        assert_eq!(Exit::Fatal.code(), 125);
    }

    #[test]
    fn bad_lines_are_logged_with_their_start_and_skipped() {
        let long = format!(
            "{{\"type\":\"ping\",\"nonce\":1,\"pad\":\"{}\"}}",
            "x".repeat(500)
        );
        let input = format!(
            "not json\n{{\"type\":\"bogus\"}}\n{long}\n{{\"type\":\"ping\",\"nonce\":2}}\n"
        );
        let head = RefCell::new(Vec::new());
        let (logger, logs) = Logger::memory();
        let mut lines = Lines {
            reader: LineReader::new(
                HeadRecorder {
                    inner: Cursor::new(input),
                    head: &head,
                },
                200,
            ),
            head: &head,
            buf: Vec::new(),
            max: 200,
            logger,
        };
        assert_eq!(lines.next(), Some(DaemonMessage::Ping { nonce: 2 }));
        assert_eq!(lines.next(), None);
        let logs = logs.lock().expect("not poisoned").clone();
        assert_eq!(logs.len(), 3, "{logs:?}");
        assert!(
            logs[0].contains("`not json`") && logs[0].contains("not JSON"),
            "{}",
            logs[0]
        );
        assert!(
            logs[1].contains("unknown message type `bogus`"),
            "{}",
            logs[1]
        );
        let too_long = format!(
            "E! ignoring a line of {} bytes from the daemon, over the limit of 200 bytes: ",
            long.len()
        );
        assert!(logs[2].starts_with(&too_long), "{}", logs[2]);
        assert!(
            logs[2].contains(r#"`{"type":"ping","nonce":1,"pad":"xxx"#),
            "{}",
            logs[2]
        );
        assert!(
            logs.iter()
                .all(|l| l.starts_with("{\"level\":\"error\"") || l.starts_with("E! "))
        );
    }
}
