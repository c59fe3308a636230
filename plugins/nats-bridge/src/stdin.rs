//! The thread that reads the daemon's lines from stdin and hands them, decoded and in order, to
//! the bridge's task.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use sgevents_sdk::protocol::{
    DEFAULT_MAX_LINE_BYTES, DaemonMessage, LineReader, ReadLine, decode_daemon_line, excerpt,
};
use tokio::sync::mpsc;

/// What the reader found.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A message; for an `event`, also the event's JSON exactly as the daemon wrote it.
    Message(Box<DaemonMessage>, Option<Bytes>),
    /// A line that is not a message, with why.
    Bad(String),
}

/// The `event` field of an event line, unparsed.
#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(borrow)]
    event: &'a RawValue,
}

/// Starts the reader; the channel closes at end of file (or when stdin fails).
pub(crate) fn spawn_reader() -> mpsc::Receiver<Incoming> {
    let (tx, rx) = mpsc::channel(1024);
    std::thread::spawn(move || {
        let mut reader = LineReader::new(std::io::stdin().lock(), DEFAULT_MAX_LINE_BYTES);
        let mut line = Vec::new();
        loop {
            let incoming = match reader.read(&mut line) {
                Ok(ReadLine::Line) => decode(&line),
                Ok(ReadLine::TooLong { len }) => Incoming::Bad(format!(
                    "ignoring a line of {len} bytes from the daemon, over the protocol's limit"
                )),
                Ok(ReadLine::Eof) | Err(_) => break,
            };
            if tx.blocking_send(incoming).is_err() {
                break;
            }
        }
    });
    rx
}

fn decode(line: &[u8]) -> Incoming {
    match decode_daemon_line(line) {
        Ok(message) => {
            let raw = match message {
                DaemonMessage::Event(_) => serde_json::from_slice::<RawEvent<'_>>(line)
                    .ok()
                    .map(|raw| Bytes::copy_from_slice(raw.event.get().as_bytes())),
                _ => None,
            };
            Incoming::Message(Box::new(message), raw)
        }
        Err(e) => Incoming::Bad(format!(
            "ignoring a line from the daemon: {e}: {}",
            excerpt(line, 200)
        )),
    }
}
