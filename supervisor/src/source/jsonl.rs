//! The JSON-lines source: one `EventLogEntry` object per line of a file, ids increasing.
//!
//! The position saved with each batch is the byte offset after the last complete line read, so a
//! restart resumes there. With `follow`, lines appended later are picked up (a last line without
//! its newline is left for the next look, since it may still be being written); a file that
//! became shorter than the saved position was replaced, and is read again from its start, skipping
//! the ids already journaled. A line that is not an event is logged with its line number, counted,
//! and skipped; an id not above the last one journaled is skipped with a warning.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use sgevents_protocol::Event;
use tokio_util::sync::CancellationToken;

use super::journal_row;
use crate::config::{JsonlSource, StartAt};
use crate::store::{NewEvent, SourcePosition, Store};

/// What one look at the file found.
struct Batch {
    events: Vec<NewEvent>,
    position: SourcePosition,
    at_end: bool,
}

/// Reads the file into the journal until it is exhausted (without `follow`: the task then ends,
/// which tells the daemon so) or `cancel`.
pub(crate) async fn run(
    config: JsonlSource,
    store: Store,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let location = config.path.display().to_string();
    let mut position = match store.source_position().await? {
        Some(p) if p.kind == "jsonl" && p.location == location => p,
        Some(p) => {
            tracing::warn!(
                previous = %p.location,
                "the source changed from `{}` to `{location}`; reading the new file from its start, after event {}",
                p.location,
                p.last_event_id.unwrap_or(0)
            );
            SourcePosition {
                kind: "jsonl".into(),
                location: location.clone(),
                last_event_id: p.last_event_id,
                ..Default::default()
            }
        }
        None => first_position(&config, &location),
    };
    tracing::info!(path = %location, offset = position.offset, line = position.line, follow = config.follow, "reading events");
    loop {
        let path = config.path.clone();
        let (batch_size, follow, start_at) = (config.batch_size, config.follow, config.start_at);
        let from = position.clone();
        let read = tokio::task::spawn_blocking(move || {
            read_batch(&path, from, batch_size, follow, start_at)
        })
        .await?;
        let batch = match read {
            Ok(b) => b,
            Err(e) if follow => {
                tracing::warn!(path = %location, error = %e, "cannot read the events file; trying again");
                position.last_error = Some(e.to_string());
                if wait(&cancel, config.poll_interval * 10).await {
                    return Ok(());
                }
                continue;
            }
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "cannot read the events file `{location}`: {e}\nhint: check `source.path` in the configuration"
                ));
            }
        };
        let moved = batch.position != position;
        position = batch.position;
        if !batch.events.is_empty() {
            let n = batch.events.len();
            let head = store.append(batch.events, position.clone()).await?;
            tracing::debug!(events = n, head, "journaled");
        } else if moved {
            store.save_source(position.clone());
        }
        if batch.at_end {
            if !follow {
                tracing::info!(path = %location, lines = position.line, "read the whole events file");
                return Ok(());
            }
            if wait(&cancel, config.poll_interval).await {
                return Ok(());
            }
        } else if cancel.is_cancelled() {
            return Ok(());
        }
    }
}

/// Waits `d` or until cancelled; true when cancelled.
async fn wait(cancel: &CancellationToken, d: std::time::Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

/// The position of a brand-new journal, from `start_at`.
fn first_position(config: &JsonlSource, location: &str) -> SourcePosition {
    let mut p = SourcePosition {
        kind: "jsonl".into(),
        location: location.to_owned(),
        ..Default::default()
    };
    if config.start_at == StartAt::Latest {
        if let Ok(meta) = std::fs::metadata(&config.path) {
            p.offset = meta.len() as i64;
            p.line = count_lines(&config.path).unwrap_or(0);
        }
    }
    p
}

fn count_lines(path: &Path) -> std::io::Result<i64> {
    let mut n = 0;
    for line in BufReader::new(File::open(path)?).split(b'\n') {
        line?;
        n += 1;
    }
    Ok(n)
}

fn read_batch(
    path: &PathBuf,
    mut position: SourcePosition,
    max: usize,
    follow: bool,
    start_at: StartAt,
) -> std::io::Result<Batch> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len() as i64;
    if len < position.offset {
        tracing::warn!(
            path = %path.display(),
            "the events file is shorter than the saved position (offset {}); it was replaced: reading it from the start, skipping events up to {}",
            position.offset,
            position.last_event_id.unwrap_or(0)
        );
        position.offset = 0;
        position.line = 0;
    }
    file.seek(SeekFrom::Start(position.offset as u64))?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut events = Vec::new();
    let mut line = Vec::new();
    loop {
        if events.len() >= max {
            return Ok(Batch {
                events,
                position,
                at_end: false,
            });
        }
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(Batch {
                events,
                position,
                at_end: true,
            });
        }
        if line.last() != Some(&b'\n') && follow {
            // Possibly still being written: leave it for the next look.
            return Ok(Batch {
                events,
                position,
                at_end: true,
            });
        }
        position.offset += n as i64;
        position.line += 1;
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let event: Event = match serde_json::from_slice(text) {
            Ok(e) => e,
            Err(e) => {
                position.malformed += 1;
                let message = format!("line {} is not an event: {e}", position.line);
                tracing::error!(path = %path.display(), line = position.line, "{message}: `{}`", sgevents_protocol::excerpt(text, 120));
                position.last_error = Some(message);
                continue;
            }
        };
        if let StartAt::EventId(first) = start_at {
            if position.last_event_id.is_none() && event.id < first {
                continue;
            }
        }
        if let Some(last) = position.last_event_id {
            if event.id <= last {
                position.skipped += 1;
                tracing::warn!(path = %path.display(), line = position.line, "skipping event {} on line {}: its id is not above the last one journaled ({last})", event.id, position.line);
                continue;
            }
        }
        position.last_event_id = Some(event.id);
        events.push(journal_row(&event));
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn position() -> SourcePosition {
        SourcePosition {
            kind: "jsonl".into(),
            location: "x".into(),
            ..Default::default()
        }
    }

    #[test]
    fn reads_skips_and_counts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("e.jsonl");
        std::fs::write(
            &path,
            "{\"id\":1,\"event_type\":\"Shotgun_Shot_New\"}\n\nnot json\n{\"id\":3,\"event_type\":\"A\"}\n{\"id\":2,\"event_type\":\"B\"}\n{\"id\":4,\"event_type\":\"C\"}",
        )
        .expect("write");
        let b = read_batch(&path, position(), 100, false, StartAt::Earliest).expect("read");
        assert_eq!(
            b.events.iter().map(|e| e.event_id).collect::<Vec<_>>(),
            [1, 3, 4]
        );
        assert_eq!(
            (b.position.malformed, b.position.skipped, b.position.line),
            (1, 1, 6)
        );
        assert!(
            b.position
                .last_error
                .as_deref()
                .is_some_and(|e| e.starts_with("line 3 is not an event"))
        );
        assert!(b.at_end);
        assert!(
            b.events[0].body.contains("\"attribute_name\":null"),
            "bodies are normalised: {}",
            b.events[0].body
        );
    }

    #[test]
    fn follow_leaves_a_partial_line_and_resumes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("e.jsonl");
        std::fs::write(&path, "{\"id\":1,\"event_type\":\"A\"}\n{\"id\":2,").expect("write");
        let b = read_batch(&path, position(), 100, true, StartAt::Earliest).expect("read");
        assert_eq!(b.events.len(), 1);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        f.write_all(b"\"event_type\":\"B\"}\n").expect("append");
        let b = read_batch(&path, b.position, 100, true, StartAt::Earliest).expect("read");
        assert_eq!(b.events.iter().map(|e| e.event_id).collect::<Vec<_>>(), [2]);
        assert_eq!(b.position.line, 2);
    }

    #[test]
    fn batches_and_start_at() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("e.jsonl");
        let text: String = (1..=10)
            .map(|i| format!("{{\"id\":{i},\"event_type\":\"A\"}}\n"))
            .collect();
        std::fs::write(&path, text).expect("write");
        let b = read_batch(&path, position(), 4, false, StartAt::Earliest).expect("read");
        assert_eq!((b.events.len(), b.at_end), (4, false));
        let b = read_batch(&path, b.position, 100, false, StartAt::Earliest).expect("read");
        assert_eq!(b.events.first().map(|e| e.event_id), Some(5));
        let b = read_batch(&path, position(), 100, false, StartAt::EventId(8)).expect("read");
        assert_eq!(
            b.events.iter().map(|e| e.event_id).collect::<Vec<_>>(),
            [8, 9, 10]
        );
        assert_eq!(
            b.position.skipped, 0,
            "events before start_at are not counted as skipped"
        );
        let cfg = JsonlSource {
            path: path.clone(),
            follow: true,
            start_at: StartAt::Latest,
            poll_interval: std::time::Duration::from_millis(1),
            batch_size: 10,
            site_url: None,
        };
        let p = first_position(&cfg, "x");
        assert_eq!(p.line, 10);
        let b = read_batch(&path, p, 100, true, StartAt::Latest).expect("read");
        assert!(b.events.is_empty());
    }

    #[test]
    fn a_replaced_file_is_read_again_without_duplicates() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("e.jsonl");
        std::fs::write(
            &path,
            "{\"id\":1,\"event_type\":\"A\"}\n{\"id\":2,\"event_type\":\"A\"}\n",
        )
        .expect("write");
        let b = read_batch(&path, position(), 100, true, StartAt::Earliest).expect("read");
        std::fs::write(
            &path,
            "{\"id\":2,\"event_type\":\"A\"}\n{\"id\":3,\"event_type\":\"A\"}\n",
        )
        .expect("rewrite shorter");
        std::fs::write(&path, "{\"id\":3,\"event_type\":\"A\"}\n").expect("rewrite shorter");
        let b = read_batch(&path, b.position, 100, true, StartAt::Earliest).expect("read");
        assert_eq!(b.events.iter().map(|e| e.event_id).collect::<Vec<_>>(), [3]);
    }
}
