//! Lines on the wire: decoding one line into a message, encoding a message into one line, and a
//! line reader that never holds more than the line limit in memory.
//!
//! Decoding takes the fast path first (straight into the message type) and only on failure parses
//! again to say precisely what is wrong, so a well-behaved peer pays for one parse per line.

use std::fmt;
use std::io::{self, BufRead};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::message::{DaemonMessage, PluginMessage};

/// Why a line is not a valid message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The line is empty or white space only.
    Empty,
    /// The line is not UTF-8; `valid_up_to` bytes are.
    NotUtf8 {
        /// How many leading bytes are valid UTF-8.
        valid_up_to: usize,
    },
    /// The line is not JSON at all.
    NotJson(String),
    /// The line is JSON but not an object.
    NotAnObject,
    /// The object has no string `type`.
    MissingType,
    /// The `type` names no message of this direction.
    UnknownType(String),
    /// The `type` is known but a field is missing or has the wrong type.
    BadFields {
        /// The message type.
        kind: String,
        /// serde's description of the problem.
        error: String,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Empty => write!(
                f,
                "an empty line\nhint: write one JSON message per line and no blank lines; print \
                 nothing else on stdout (logs go to stderr)"
            ),
            DecodeError::NotUtf8 { valid_up_to } => write!(
                f,
                "line is not valid UTF-8 (bad byte after {valid_up_to} bytes)\nhint: write text \
                 as UTF-8; binary data must be encoded, for example as base64"
            ),
            DecodeError::NotJson(err) => write!(
                f,
                "line is not JSON: {err}\nhint: stdout carries protocol messages only; send logs \
                 and prints to stderr"
            ),
            DecodeError::NotAnObject => write!(
                f,
                "line is JSON but not an object\nhint: every message is an object with a `type`"
            ),
            DecodeError::MissingType => write!(
                f,
                "message has no string `type` field\nhint: every message names its type, such as \
                 {{\"type\":\"ack\",\"event_id\":1}}"
            ),
            DecodeError::UnknownType(kind) => write!(
                f,
                "unknown message type `{kind}`\nhint: see protocol/PROTOCOL.md for the messages of \
                 protocol version 1"
            ),
            DecodeError::BadFields { kind, error } => write!(
                f,
                "bad `{kind}` message: {error}\nhint: see the `{kind}` section of \
                 protocol/PROTOCOL.md"
            ),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decodes one line written by a plugin (without its newline, or with it: trailing whitespace is
/// allowed).
pub fn decode_plugin_line(line: &[u8]) -> Result<PluginMessage, DecodeError> {
    decode(
        line,
        &[
            "register", "ack", "nack", "term", "progress", "fatal", "pong",
        ],
    )
}

/// Decodes one line written by the daemon.
pub fn decode_daemon_line(line: &[u8]) -> Result<DaemonMessage, DecodeError> {
    decode(line, &["hello", "event", "ping", "shutdown"])
}

fn decode<T: DeserializeOwned>(line: &[u8], kinds: &[&str]) -> Result<T, DecodeError> {
    if let Ok(msg) = serde_json::from_slice(line) {
        return Ok(msg);
    }
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err(DecodeError::Empty);
    }
    let text = std::str::from_utf8(line).map_err(|e| DecodeError::NotUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    let object = value.as_object().ok_or(DecodeError::NotAnObject)?;
    let kind = object
        .get("type")
        .and_then(Value::as_str)
        .ok_or(DecodeError::MissingType)?;
    if !kinds.contains(&kind) {
        return Err(DecodeError::UnknownType(kind.to_owned()));
    }
    match serde_json::from_value(value.clone()) {
        Ok(msg) => Ok(msg),
        Err(e) => Err(DecodeError::BadFields {
            kind: kind.to_owned(),
            error: e.to_string(),
        }),
    }
}

/// Encodes a message as one line, newline included.
///
/// JSON escapes every control character inside strings, so the result never contains a newline
/// but the last one.
pub fn encode<T: Serialize>(msg: &T) -> String {
    let mut line = serde_json::to_string(msg).expect("protocol messages always serialize");
    line.push('\n');
    line
}

/// Encodes an `event` message around an event that is already JSON text, newline included.
///
/// The daemon keeps events as JSON text in its journal and sends them to many plugins: this writes
/// the same bytes as encoding a [`DaemonMessage::Event`] with [`encode`], without parsing the event
/// again. `event_json` must be one JSON object on one line, as `serde_json::to_string` writes it.
pub fn encode_event_raw(
    event_id: i64,
    attempt: u32,
    subscriptions: &[&str],
    deadline_ms: u64,
    event_json: &str,
) -> String {
    debug_assert!(!event_json.contains('\n'), "event JSON must be one line");
    let subscriptions = serde_json::to_string(subscriptions).expect("strings always serialize");
    let mut line = String::with_capacity(event_json.len() + subscriptions.len() + 96);
    line.push_str("{\"type\":\"event\",\"event_id\":");
    line.push_str(&event_id.to_string());
    line.push_str(",\"attempt\":");
    line.push_str(&attempt.to_string());
    line.push_str(",\"subscriptions\":");
    line.push_str(&subscriptions);
    line.push_str(",\"deadline_ms\":");
    line.push_str(&deadline_ms.to_string());
    line.push_str(",\"event\":");
    line.push_str(event_json);
    line.push_str("}\n");
    line
}

/// The start of `line` for a log message: at most `max` bytes, cut on a character boundary, with
/// an ellipsis and the full length when cut. Invalid UTF-8 is shown lossily.
pub fn excerpt(line: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches(['\n', '\r']);
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes in all)", &text[..end], line.len())
}

/// What [`LineReader::read`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadLine {
    /// A line is in the buffer, without its newline.
    Line,
    /// A line longer than the limit was read and thrown away; `len` is its length in bytes.
    TooLong {
        /// The discarded line's length.
        len: usize,
    },
    /// The stream ended.
    Eof,
}

/// Reads `\n`-terminated lines, holding at most `max` bytes of one line in memory.
///
/// A longer line is consumed up to its newline and reported as [`ReadLine::TooLong`], so one bad
/// line never costs unbounded memory and the stream stays in step. A last line without a newline is
/// still returned as a line.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    max: usize,
}

impl<R: BufRead> LineReader<R> {
    /// A reader over `inner` with a line limit of `max` bytes.
    pub fn new(inner: R, max: usize) -> LineReader<R> {
        LineReader { inner, max }
    }

    /// Reads the next line into `buf`, replacing what it held.
    pub fn read(&mut self, buf: &mut Vec<u8>) -> io::Result<ReadLine> {
        buf.clear();
        let mut len = 0usize;
        loop {
            let chunk = match self.inner.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                return Ok(match len {
                    0 => ReadLine::Eof,
                    n if n > self.max => ReadLine::TooLong { len: n },
                    _ => ReadLine::Line,
                });
            }
            let (part, used, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (&chunk[..i], i + 1, true),
                None => (chunk, chunk.len(), false),
            };
            len += part.len();
            if len <= self.max {
                buf.extend_from_slice(part);
            } else {
                buf.clear();
            }
            self.inner.consume(used);
            if done {
                return Ok(if len > self.max {
                    ReadLine::TooLong { len }
                } else {
                    ReadLine::Line
                });
            }
        }
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufReader, Cursor};

    use super::*;

    #[test]
    fn decodes_and_ignores_unknown_fields() {
        let msg =
            decode_plugin_line(br#"{"type":"ack","event_id":3,"later":"field"}"#).expect("ack");
        assert_eq!(msg, PluginMessage::Ack { event_id: 3 });
        let msg = decode_daemon_line(b"{\"type\":\"ping\",\"nonce\":7}\n").expect("ping");
        assert_eq!(msg, DaemonMessage::Ping { nonce: 7 });
    }

    #[test]
    fn says_what_is_wrong() {
        assert!(matches!(
            decode_plugin_line(b"hello world"),
            Err(DecodeError::NotJson(_))
        ));
        assert_eq!(decode_plugin_line(b"[1,2]"), Err(DecodeError::NotAnObject));
        assert_eq!(decode_plugin_line(b""), Err(DecodeError::Empty));
        assert_eq!(decode_plugin_line(b"  \r"), Err(DecodeError::Empty));
        assert!(
            DecodeError::Empty
                .to_string()
                .starts_with("an empty line\nhint: "),
            "{}",
            DecodeError::Empty
        );
        assert_eq!(
            decode_plugin_line(br#"{"event_id":1}"#),
            Err(DecodeError::MissingType)
        );
        assert_eq!(
            decode_plugin_line(br#"{"type":7}"#),
            Err(DecodeError::MissingType)
        );
        assert_eq!(
            decode_plugin_line(br#"{"type":"acknowledge","event_id":1}"#),
            Err(DecodeError::UnknownType("acknowledge".into()))
        );
        assert_eq!(
            decode_plugin_line(br#"{"type":"hello","protocols":[1],"plugin":"x"}"#),
            Err(DecodeError::UnknownType("hello".into())),
            "a daemon message is not a plugin message"
        );
        let err = decode_plugin_line(br#"{"type":"ack","event_id":"12"}"#).expect_err("bad field");
        assert!(
            matches!(&err, DecodeError::BadFields { kind, .. } if kind == "ack"),
            "{err:?}"
        );
        assert_eq!(
            decode_plugin_line(b"{\"type\":\"ack\xff\"}"),
            Err(DecodeError::NotUtf8 { valid_up_to: 12 })
        );
    }

    #[test]
    fn errors_read_well() {
        let text = DecodeError::UnknownType("acknowledge".into()).to_string();
        assert!(
            text.starts_with("unknown message type `acknowledge`"),
            "{text}"
        );
        assert!(text.contains("\nhint: "), "{text}");
    }

    #[test]
    fn encodes_one_line() {
        let line = encode(&PluginMessage::Fatal {
            error: "two\nlines".into(),
        });
        assert_eq!(line, "{\"type\":\"fatal\",\"error\":\"two\\nlines\"}\n");
        assert_eq!(line.matches('\n').count(), 1);
    }

    #[test]
    fn raw_event_encoding_writes_what_encode_writes() {
        use crate::event::Event;
        use crate::message::EventDelivery;
        let mut event = Event::new(42, "Shotgun_Task_Change");
        event.attribute_name = Some("sg_status_list".into());
        event.description = Some("quotes \" and \\ and é".into());
        let delivery = DaemonMessage::Event(EventDelivery {
            event_id: 42,
            attempt: 3,
            subscriptions: vec!["a".into(), "b\"c".into()],
            deadline_ms: 30000,
            event: event.clone(),
        });
        let body = serde_json::to_string(&event).expect("serializable");
        assert_eq!(
            encode_event_raw(42, 3, &["a", "b\"c"], 30000, &body),
            encode(&delivery)
        );
    }

    #[test]
    fn excerpts_cut_on_char_boundaries() {
        assert_eq!(excerpt(b"short\n", 10), "short");
        let cut = excerpt("ééééé".as_bytes(), 3);
        assert_eq!(cut, "é... (10 bytes in all)");
    }

    fn read_all(input: &[u8], max: usize, capacity: usize) -> Vec<(ReadLine, Vec<u8>)> {
        let mut reader = LineReader::new(
            BufReader::with_capacity(capacity, Cursor::new(input.to_vec())),
            max,
        );
        let mut out = Vec::new();
        let mut buf = Vec::new();
        loop {
            let got = reader.read(&mut buf).expect("in-memory read");
            out.push((got, buf.clone()));
            if got == ReadLine::Eof {
                return out;
            }
        }
    }

    #[test]
    fn line_reader_limits_and_resyncs() {
        for capacity in [1, 2, 3, 64] {
            let got = read_all(b"abc\n0123456789\nxy\n\nlast", 5, capacity);
            assert_eq!(
                got,
                vec![
                    (ReadLine::Line, b"abc".to_vec()),
                    (ReadLine::TooLong { len: 10 }, vec![]),
                    (ReadLine::Line, b"xy".to_vec()),
                    (ReadLine::Line, vec![]),
                    (ReadLine::Line, b"last".to_vec()),
                    (ReadLine::Eof, vec![]),
                ],
                "capacity {capacity}"
            );
        }
    }

    #[test]
    fn line_reader_accepts_exactly_the_limit() {
        let got = read_all(b"12345\n123456", 5, 4);
        assert_eq!(got[0], (ReadLine::Line, b"12345".to_vec()));
        assert_eq!(got[1], (ReadLine::TooLong { len: 6 }, vec![]));
    }
}
