//! Conformance transcripts: complete exchanges kept as text files, and a driver that plays the
//! daemon's side of one against a real plugin process.
//!
//! A transcript is a text file of steps, one per line:
//!
//! ```text
//! # a comment; blank lines are ignored too
//! > {"type":"ping","nonce":7}     the daemon writes this line to the plugin's stdin
//! < {"type":"pong","nonce":7}     the plugin must write this line next on its stdout
//! > EOF                           the daemon closes the plugin's stdin
//! = exit 0                        the plugin must exit with this status, having written nothing more
//! ```
//!
//! An expected line matches the plugin's line when both are the same JSON value, with one
//! exception: an expected `error` string matches any actual `error` that contains it, because error
//! texts carry tracebacks and other details that differ between SDKs. Object key order and
//! whitespace never matter. The files live in `protocol/transcripts/`; the conformance plugins of
//! both SDKs run against all of them.

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::codec::{decode_daemon_line, decode_plugin_line};

/// One step of a transcript.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The daemon writes this line (kept verbatim).
    Send(String),
    /// The plugin must write a line matching this value.
    Expect(Value),
    /// The daemon closes stdin.
    CloseStdin,
    /// The plugin must exit with this status.
    Exit(i32),
}

/// A parsed transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// A name for messages, usually the file name.
    pub name: String,
    /// The steps with their 1-based line numbers in the file.
    pub steps: Vec<(usize, Step)>,
}

/// A transcript that cannot be parsed, or a plugin that did not follow it.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptError {
    /// The transcript's name.
    pub transcript: String,
    /// The line of the transcript where it went wrong.
    pub line: usize,
    /// What went wrong.
    pub message: String,
    /// What the plugin wrote on stderr, when a plugin ran.
    pub stderr: String,
}

impl fmt::Display for TranscriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.transcript, self.line, self.message)?;
        if !self.stderr.is_empty() {
            write!(f, "\nplugin stderr:\n{}", self.stderr)?;
        }
        Ok(())
    }
}

impl std::error::Error for TranscriptError {}

impl Transcript {
    /// Parses a transcript, checking that every `>` line is a daemon message, every `<` line a
    /// plugin message, and that it ends with an `= exit` step.
    pub fn parse(name: &str, text: &str) -> Result<Transcript, TranscriptError> {
        let fail = |line: usize, message: String| TranscriptError {
            transcript: name.to_owned(),
            line,
            message,
            stderr: String::new(),
        };
        let mut steps = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let step = if line == "> EOF" {
                Step::CloseStdin
            } else if let Some(json) = line.strip_prefix("> ") {
                decode_daemon_line(json.as_bytes())
                    .map_err(|e| fail(n, format!("not a daemon message: {e}")))?;
                Step::Send(json.to_owned())
            } else if let Some(json) = line.strip_prefix("< ") {
                decode_plugin_line(json.as_bytes())
                    .map_err(|e| fail(n, format!("not a plugin message: {e}")))?;
                Step::Expect(serde_json::from_str(json).map_err(|e| fail(n, e.to_string()))?)
            } else if let Some(code) = line.strip_prefix("= exit ") {
                Step::Exit(
                    code.trim()
                        .parse()
                        .map_err(|_| fail(n, format!("bad exit status `{code}`")))?,
                )
            } else {
                return Err(fail(
                    n,
                    format!(
                        "cannot read step `{line}`\nhint: steps start with `> `, `< `, `> EOF` or `= exit `"
                    ),
                ));
            };
            steps.push((n, step));
        }
        match steps.last() {
            Some((_, Step::Exit(_))) => Ok(Transcript {
                name: name.to_owned(),
                steps,
            }),
            _ => Err(fail(
                text.lines().count(),
                "a transcript must end with `= exit N`".into(),
            )),
        }
    }

    /// Plays the daemon's side against `command`, which must start the plugin.
    ///
    /// `patience` bounds each wait for a line or for the exit, so a hung plugin fails the run
    /// instead of hanging it; it is a guard, not a measurement.
    pub fn run(&self, command: &mut Command, patience: Duration) -> Result<(), TranscriptError> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.error(0, format!("cannot start the plugin {command:?}: {e}"), ""))?;
        let stderr = capture(child.stderr.take().expect("stderr is piped"));
        let lines = read_lines(child.stdout.take().expect("stdout is piped"));
        let mut stdin = child.stdin.take();
        let result = self.play(&mut child, &mut stdin, &lines, patience);
        drop(stdin);
        if result.is_err() {
            let _ = child.kill();
        }
        let _ = child.wait();
        result.map_err(|(line, message)| {
            let text = stderr.lock().map(|s| s.clone()).unwrap_or_default();
            self.error(line, message, &text)
        })
    }

    fn play(
        &self,
        child: &mut Child,
        stdin: &mut Option<ChildStdin>,
        lines: &Receiver<String>,
        patience: Duration,
    ) -> Result<(), (usize, String)> {
        for (n, step) in &self.steps {
            let n = *n;
            match step {
                Step::Send(line) => {
                    let pipe = stdin
                        .as_mut()
                        .ok_or((n, "stdin is already closed".to_owned()))?;
                    pipe.write_all(line.as_bytes())
                        .and_then(|()| pipe.write_all(b"\n"))
                        .and_then(|()| pipe.flush())
                        .map_err(|e| (n, format!("cannot write to the plugin: {e}")))?;
                }
                Step::CloseStdin => *stdin = None,
                Step::Expect(expected) => {
                    let line = match lines.recv_timeout(patience) {
                        Ok(line) => line,
                        Err(RecvTimeoutError::Timeout) => {
                            return Err((
                                n,
                                format!(
                                    "the plugin wrote nothing within {patience:?}; expected {expected}"
                                ),
                            ));
                        }
                        Err(RecvTimeoutError::Disconnected) => {
                            return Err((
                                n,
                                format!("the plugin closed stdout; expected {expected}"),
                            ));
                        }
                    };
                    decode_plugin_line(line.as_bytes())
                        .map_err(|e| (n, format!("the plugin wrote `{line}`: {e}")))?;
                    let actual: Value =
                        serde_json::from_str(&line).map_err(|e| (n, e.to_string()))?;
                    if !line_matches(expected, &actual) {
                        return Err((n, format!("expected {expected}\n     got {actual}")));
                    }
                }
                Step::Exit(code) => {
                    match lines.recv_timeout(patience) {
                        Err(RecvTimeoutError::Disconnected) => {}
                        Ok(line) => {
                            return Err((
                                n,
                                format!("expected the plugin to exit, but it wrote `{line}`"),
                            ));
                        }
                        Err(RecvTimeoutError::Timeout) => {
                            return Err((
                                n,
                                format!("the plugin did not close stdout within {patience:?}"),
                            ));
                        }
                    }
                    let status = wait_timeout(child, patience)
                        .map_err(|e| (n, e))?
                        .ok_or((n, format!("the plugin did not exit within {patience:?}")))?;
                    if status != *code {
                        return Err((n, format!("expected exit status {code}, got {status}")));
                    }
                }
            }
        }
        Ok(())
    }

    fn error(&self, line: usize, message: String, stderr: &str) -> TranscriptError {
        TranscriptError {
            transcript: self.name.clone(),
            line,
            message,
            stderr: stderr.to_owned(),
        }
    }
}

/// Whether a plugin's `actual` line matches the transcript's `expected` one (see the module docs).
pub fn line_matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(want), Value::Object(got)) => {
            want.len() == got.len()
                && want
                    .iter()
                    .all(|(key, w)| match (key.as_str(), w, got.get(key)) {
                        ("error", Value::String(w), Some(Value::String(g))) => {
                            g.contains(w.as_str())
                        }
                        (_, w, Some(g)) => w == g,
                        (_, _, None) => false,
                    })
        }
        _ => expected == actual,
    }
}

fn read_lines(stdout: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

fn capture(stderr: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(mut all) = sink.lock() {
                all.push_str(&line);
                all.push('\n');
            }
        }
    });
    text
}

fn wait_timeout(child: &mut Child, patience: Duration) -> Result<Option<i32>, String> {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(Some(status.code().unwrap_or(-1))),
            Ok(None) if start.elapsed() >= patience => return Ok(None),
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("cannot wait for the plugin: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parses_steps() {
        let t = Transcript::parse(
            "t",
            "# c\n\n> {\"type\":\"ping\",\"nonce\":1}\n< {\"type\":\"pong\",\"nonce\":1}\n> EOF\n= exit 0\n",
        )
        .expect("valid transcript");
        assert_eq!(
            t.steps,
            vec![
                (3, Step::Send("{\"type\":\"ping\",\"nonce\":1}".into())),
                (4, Step::Expect(json!({"type": "pong", "nonce": 1}))),
                (5, Step::CloseStdin),
                (6, Step::Exit(0)),
            ]
        );
    }

    #[test]
    fn refuses_bad_transcripts() {
        let err = Transcript::parse("t", "> {\"type\":\"pong\",\"nonce\":1}\n= exit 0")
            .expect_err("wrong direction");
        assert_eq!(err.line, 1);
        assert!(err.message.contains("not a daemon message"), "{err}");
        let err = Transcript::parse("t", "> EOF\n").expect_err("no exit");
        assert!(err.message.contains("must end with"), "{err}");
        let err = Transcript::parse("t", "ack\n= exit 0").expect_err("no direction");
        assert!(err.message.contains("cannot read step `ack`"), "{err}");
    }

    #[test]
    fn errors_match_by_substring_and_nothing_else_does() {
        let want = json!({"type": "nack", "event_id": 1, "error": "boom"});
        assert!(line_matches(
            &want,
            &json!({"type": "nack", "event_id": 1, "error": "Traceback...\nboom: x"})
        ));
        assert!(!line_matches(
            &want,
            &json!({"type": "nack", "event_id": 1, "error": "bang"})
        ));
        assert!(!line_matches(
            &want,
            &json!({"type": "nack", "event_id": 2, "error": "boom"})
        ));
        assert!(!line_matches(
            &want,
            &json!({"type": "nack", "event_id": 1, "error": "boom", "retry_after_ms": 5})
        ));
        let want = json!({"type": "register", "protocol": 1, "subscriptions": [{"name": "error"}]});
        assert!(!line_matches(
            &want,
            &json!({"type": "register", "protocol": 1, "subscriptions": [{"name": "errors"}]})
        ));
    }
}
