//! Logging to stderr, one record per line, in the format of `sgevents_protocol::log`.

use std::fmt;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};

use sgevents_protocol::log::{Level, format_log_line};

/// Writes log records to stderr, where the daemon reads them as the plugin's log.
///
/// A one-line message is written as `I! message` (the prefix says the level: `E!`, `W!`, `I!`,
/// `D!`, `T!`); a message with newlines is written as one JSON object
/// `{"level":"info","message":"..."}`, so that one record always stays one line. Each record is
/// written with a single call, so records from several threads never mix.
///
/// Get one from [`Context::log`](crate::Context::log) in a callback, from
/// [`Setup::log`](crate::Setup::log) in the setup hook, or from [`logger()`](crate::logger) anywhere.
/// Under [`testing`](crate::testing) the records are kept in memory for the test to read.
#[derive(Clone)]
pub struct Logger {
    sink: Sink,
}

#[derive(Clone)]
enum Sink {
    Stderr,
    Memory(Arc<Mutex<Vec<String>>>),
}

impl Logger {
    /// A logger writing to the process's stderr.
    pub(crate) fn stderr() -> Logger {
        Logger { sink: Sink::Stderr }
    }

    /// A logger keeping its lines (newline included) in memory, and the lines.
    pub(crate) fn memory() -> (Logger, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        (
            Logger {
                sink: Sink::Memory(Arc::clone(&lines)),
            },
            lines,
        )
    }

    /// Writes one record at `level`.
    pub fn log(&self, level: Level, message: impl fmt::Display) {
        let line = format_log_line(level, &message.to_string());
        match &self.sink {
            // Nothing sensible can be done when stderr itself is gone.
            Sink::Stderr => drop(io::stderr().lock().write_all(line.as_bytes())),
            Sink::Memory(lines) => lines
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(line),
        }
    }

    /// Something failed.
    pub fn error(&self, message: impl fmt::Display) {
        self.log(Level::Error, message);
    }

    /// Something is wrong but work goes on.
    pub fn warn(&self, message: impl fmt::Display) {
        self.log(Level::Warn, message);
    }

    /// Normal operation.
    pub fn info(&self, message: impl fmt::Display) {
        self.log(Level::Info, message);
    }

    /// Detail for whoever debugs the plugin.
    pub fn debug(&self, message: impl fmt::Display) {
        self.log(Level::Debug, message);
    }

    /// Even more detail.
    pub fn trace(&self, message: impl fmt::Display) {
        self.log(Level::Trace, message);
    }
}

impl fmt::Debug for Logger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sink = match self.sink {
            Sink::Stderr => "stderr",
            Sink::Memory(_) => "memory",
        };
        f.debug_struct("Logger").field("sink", &sink).finish()
    }
}

/// A logger writing to stderr, for code outside callbacks (`main`, helper threads).
///
/// Inside a callback prefer [`Context::log`](crate::Context::log), which the
/// [`testing`](crate::testing) module captures.
pub fn logger() -> Logger {
    Logger::stderr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_records_are_prefixed_text_and_others_json() {
        let (log, lines) = Logger::memory();
        log.error("boom");
        log.warn(format_args!("event {} slow", 7));
        log.info("plain");
        log.debug("detail");
        log.trace("more");
        log.error("Traceback:\n  at x");
        let lines = lines.lock().expect("not poisoned").clone();
        assert_eq!(
            lines,
            vec![
                "E! boom\n",
                "W! event 7 slow\n",
                "I! plain\n",
                "D! detail\n",
                "T! more\n",
                "{\"level\":\"error\",\"message\":\"Traceback:\\n  at x\"}\n",
            ]
        );
    }
}
