//! Keeps `PROTOCOL.md` and the transcripts true to the protocol types: every example in the spec
//! parses, every transcript line round-trips, and every message type has its section.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sgevents_protocol::transcript::{Step, Transcript};
use sgevents_protocol::{DaemonMessage, PluginMessage, decode_daemon_line, decode_plugin_line};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Decodes a line in whichever direction its `type` belongs to, and re-encodes it as a value.
fn reencode(line: &str) -> Result<Value, String> {
    if let Ok(msg) = decode_daemon_line(line.as_bytes()) {
        return Ok(serde_json::to_value(&msg).expect("serializable"));
    }
    match decode_plugin_line(line.as_bytes()) {
        Ok(msg) => Ok(serde_json::to_value(&msg).expect("serializable")),
        Err(e) => Err(e.to_string()),
    }
}

/// The fenced code blocks of a markdown text: (info string, first line number, body).
fn code_blocks(text: &str) -> Vec<(String, usize, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => open = Some((info.trim().to_owned(), i + 2, String::new())),
            (Some(_), Some(_)) => blocks.push(open.take().expect("open block")),
            (Some((_, _, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "unclosed code block in PROTOCOL.md");
    blocks
}

#[test]
fn every_json_example_in_the_spec_is_a_message_that_round_trips() {
    let spec = fs::read_to_string(root().join("PROTOCOL.md")).expect("PROTOCOL.md is readable");
    let mut seen = std::collections::BTreeSet::new();
    for (info, first, body) in code_blocks(&spec).into_iter().filter(|b| b.0 == "json") {
        for (i, line) in body
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let at = format!("PROTOCOL.md:{} ({info} block)", first + i);
            let reencoded = reencode(line).unwrap_or_else(|e| panic!("{at}: {e}"));
            let original: Value = serde_json::from_str(line).expect("valid JSON");
            assert_eq!(reencoded, original, "{at}: the example does not round-trip");
            seen.insert(original["type"].as_str().expect("typed").to_owned());
        }
    }
    let all = [
        "ack", "event", "fatal", "hello", "nack", "ping", "pong", "progress", "register",
        "shutdown", "term",
    ];
    assert_eq!(
        seen.iter().map(String::as_str).collect::<Vec<_>>(),
        all,
        "one example per message type"
    );
}

#[test]
fn every_transcript_in_the_spec_parses() {
    let spec = fs::read_to_string(root().join("PROTOCOL.md")).expect("PROTOCOL.md is readable");
    let blocks: Vec<_> = code_blocks(&spec)
        .into_iter()
        .filter(|b| b.0 == "transcript")
        .collect();
    assert!(blocks.len() >= 3, "the spec should show full transcripts");
    for (_, first, body) in blocks {
        let name = format!("PROTOCOL.md block at line {first}");
        let transcript = Transcript::parse(&name, &body).unwrap_or_else(|e| panic!("{e}"));
        for (n, step) in &transcript.steps {
            if let Step::Send(line) = step {
                // Shortened events gain their null fields when re-encoded; what must hold is that
                // decoding the re-encoded message gives the same message back.
                let once = reencode(line).unwrap_or_else(|e| panic!("{name}, step {n}: {e}"));
                let twice = reencode(&once.to_string()).expect("re-encoded line decodes");
                assert_eq!(once, twice, "{name}, step {n}");
            }
        }
    }
}

fn transcript_files() -> Vec<PathBuf> {
    let dir = root().join("transcripts");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .expect("protocol/transcripts exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    files
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned()
}

/// Fields that transcripts add to show that receivers ignore what they do not know.
const DELIBERATELY_UNKNOWN: &[&str] = &["capabilities"];

#[test]
fn every_transcript_line_round_trips_exactly() {
    let files = transcript_files();
    for path in &files {
        let name = name_of(path);
        let text = fs::read_to_string(path).expect("readable transcript");
        let transcript = Transcript::parse(&name, &text).unwrap_or_else(|e| panic!("{e}"));
        for (n, step) in &transcript.steps {
            let line = match step {
                Step::Send(line) => line.clone(),
                Step::Expect(value) => value.to_string(),
                Step::CloseStdin | Step::Exit(_) => continue,
            };
            let mut original: Value = serde_json::from_str(&line).expect("valid JSON");
            let reencoded = reencode(&line).unwrap_or_else(|e| panic!("{name}:{n}: {e}"));
            // Transcripts may carry fields from a future version on purpose, to show they are
            // ignored; those, and only those, are dropped by the round trip.
            if let Some(object) = original.as_object_mut() {
                for field in DELIBERATELY_UNKNOWN {
                    object.remove(*field);
                }
            }
            assert_eq!(
                reencoded, original,
                "{name}:{n}: the line does not round-trip"
            );
        }
    }
}

#[test]
fn the_transcripts_cover_what_the_spec_promises() {
    let names: Vec<String> = transcript_files().iter().map(|p| name_of(p)).collect();
    for wanted in [
        "handshake.txt",
        "ack.txt",
        "two-subscriptions.txt",
        "nack-retry.txt",
        "term.txt",
        "fatal.txt",
        "progress.txt",
        "ping-during-work.txt",
        "shutdown-drain.txt",
        "version-mismatch.txt",
        "stdin-eof.txt",
        "eof-before-hello.txt",
        "no-subscriptions.txt",
    ] {
        assert!(
            names.iter().any(|n| n == wanted),
            "missing transcript {wanted}; have {names:?}"
        );
    }
    // Every message type appears in at least one transcript, in the right direction.
    let all: String = transcript_files()
        .iter()
        .map(|p| fs::read_to_string(p).expect("readable"))
        .collect();
    for kind in ["hello", "event", "ping", "shutdown"] {
        assert!(
            all.contains(&format!("> {{\"type\":\"{kind}\"")),
            "no transcript sends `{kind}`"
        );
    }
    for kind in [
        "register", "ack", "nack", "term", "progress", "fatal", "pong",
    ] {
        assert!(
            all.contains(&format!("< {{\"type\":\"{kind}\"")),
            "no transcript expects `{kind}`"
        );
    }
}

#[test]
fn every_message_type_has_a_section_in_the_spec() {
    let spec = fs::read_to_string(root().join("PROTOCOL.md")).expect("PROTOCOL.md is readable");
    let daemon = [
        DaemonMessage::Ping { nonce: 0 }.kind(),
        DaemonMessage::Shutdown { drain_ms: 0 }.kind(),
        "hello",
        "event",
    ];
    let plugin = [
        PluginMessage::Ack { event_id: 0 }.kind(),
        PluginMessage::Progress { event_id: 0 }.kind(),
        PluginMessage::Pong { nonce: 0 }.kind(),
        "register",
        "nack",
        "term",
        "fatal",
    ];
    for kind in daemon.iter().chain(plugin.iter()) {
        let heading = spec
            .lines()
            .any(|l| l.starts_with("### ") && l.contains(&format!("`{kind}`")));
        assert!(heading, "PROTOCOL.md has no `### ` section for `{kind}`");
    }
}
