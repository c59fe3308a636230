//! The format of a plugin's stderr: one log record per line.
//!
//! A line is either plain text, optionally starting with a level prefix `E!`, `W!`, `I!`, `D!` or
//! `T!` (error, warn, info, debug, trace; one optional space after it), or a JSON object with a
//! `level` and a `message` and any other fields. Plain text without a prefix, and JSON without a
//! known level, is info. The SDKs write single-line messages as prefixed text, which reads well in a
//! terminal, and messages with newlines (tracebacks) as JSON, so one record stays one line.

use std::fmt;

use serde_json::{Map, Value};

/// A record's level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Something failed.
    Error,
    /// Something is wrong but work goes on.
    Warn,
    /// Normal operation.
    Info,
    /// Detail for whoever debugs the plugin.
    Debug,
    /// Even more detail.
    Trace,
}

impl Level {
    /// The text prefix of this level, such as `W!`.
    pub fn prefix(self) -> &'static str {
        match self {
            Level::Error => "E!",
            Level::Warn => "W!",
            Level::Info => "I!",
            Level::Debug => "D!",
            Level::Trace => "T!",
        }
    }

    /// The level's name as written in JSON records: `error`, `warn`, `info`, `debug`, `trace`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        }
    }

    /// Reads a level name, ignoring case; `warning`, `critical` and `fatal` are accepted too.
    pub fn from_name(name: &str) -> Option<Level> {
        match name.to_ascii_lowercase().as_str() {
            "error" | "critical" | "fatal" => Some(Level::Error),
            "warn" | "warning" => Some(Level::Warn),
            "info" => Some(Level::Info),
            "debug" => Some(Level::Debug),
            "trace" => Some(Level::Trace),
            _ => None,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One record read from a plugin's stderr.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    /// The record's level.
    pub level: Level,
    /// The message.
    pub message: String,
    /// The other fields of a JSON record; empty for text.
    pub fields: Map<String, Value>,
}

/// Reads one stderr line (without its newline).
pub fn parse_log_line(line: &str) -> LogRecord {
    let line = line.trim_end_matches(['\n', '\r']);
    if line.starts_with('{') {
        if let Ok(Value::Object(mut fields)) = serde_json::from_str::<Value>(line) {
            if let Some(Value::String(message)) = fields.remove("message") {
                let level = match fields.remove("level") {
                    Some(Value::String(name)) => Level::from_name(&name).unwrap_or(Level::Info),
                    _ => Level::Info,
                };
                return LogRecord {
                    level,
                    message,
                    fields,
                };
            }
        }
    }
    for level in [
        Level::Error,
        Level::Warn,
        Level::Info,
        Level::Debug,
        Level::Trace,
    ] {
        if let Some(rest) = line.strip_prefix(level.prefix()) {
            let message = rest.strip_prefix(' ').unwrap_or(rest);
            return LogRecord {
                level,
                message: message.to_owned(),
                fields: Map::new(),
            };
        }
    }
    LogRecord {
        level: Level::Info,
        message: line.to_owned(),
        fields: Map::new(),
    }
}

/// Writes one record as one stderr line, newline included: prefixed text when the message is one
/// line, a JSON object otherwise.
pub fn format_log_line(level: Level, message: &str) -> String {
    if message.contains(['\n', '\r']) {
        let mut record = Map::new();
        record.insert("level".into(), Value::from(level.as_str()));
        record.insert("message".into(), Value::from(message));
        let mut line = Value::Object(record).to_string();
        line.push('\n');
        line
    } else {
        format!("{} {message}\n", level.prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_with_and_without_prefix() {
        assert_eq!(parse_log_line("W! disk almost full").level, Level::Warn);
        assert_eq!(
            parse_log_line("W! disk almost full").message,
            "disk almost full"
        );
        assert_eq!(parse_log_line("E!no space").message, "no space");
        let plain = parse_log_line("just words\n");
        assert_eq!(
            (plain.level, plain.message.as_str()),
            (Level::Info, "just words")
        );
    }

    #[test]
    fn json_records_keep_level_and_fields() {
        let rec = parse_log_line(r#"{"level":"WARNING","message":"slow","task":67378}"#);
        assert_eq!(rec.level, Level::Warn);
        assert_eq!(rec.message, "slow");
        assert_eq!(rec.fields.get("task"), Some(&Value::from(67378)));
    }

    #[test]
    fn json_without_message_is_plain_text() {
        let rec = parse_log_line(r#"{"level":"error"}"#);
        assert_eq!(
            (rec.level, rec.message.as_str()),
            (Level::Info, r#"{"level":"error"}"#)
        );
    }

    #[test]
    fn formatting_round_trips() {
        for level in [
            Level::Error,
            Level::Warn,
            Level::Info,
            Level::Debug,
            Level::Trace,
        ] {
            for message in ["one line", "Traceback:\n  line 1\nValueError: x"] {
                let line = format_log_line(level, message);
                assert!(
                    line.ends_with('\n') && line.matches('\n').count() == 1,
                    "{line:?}"
                );
                let rec = parse_log_line(&line);
                assert_eq!((rec.level, rec.message.as_str()), (level, message));
            }
        }
    }
}
