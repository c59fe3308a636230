//! The JSON-lines source: one `EventLogEntry` object per line of a file, ids increasing.
//!
//! The position saved with each batch is the byte offset after the last complete line read, so a
//! restart resumes there. With `follow`, lines appended later are picked up (a last line without
//! its newline is left for the next look, since it may still be being written). A line that is
//! not an event is logged with its line number, counted, and skipped; an id not above the last one
//! journaled is skipped with a warning.
//!
//! # The file's identity
//!
//! An offset means something only in the file it was read from, so the position also keeps the
//! file's device and inode and a fingerprint of its first line ([`head_of`]). Each look compares
//! them with the file now under the path ([`identity_change`]): a new file (a rotation, `mv new
//! events.jsonl`, while running or stopped), a file that shrank, or one rewritten in place (its
//! first line changed) is read again from its start, once logged at WARN; the ids already
//! journaled are skipped quietly while it catches up, and the journal's unique event id refuses a
//! duplicate anyway. A file that is the same as before is resumed at the offset, silently.
//!
//! # Bounded reading
//!
//! A line is never held beyond `max_event_bytes` ([`read_line`]): a longer one is skipped as
//! oversized ([`super::oversized`]) as soon as it passes the limit, even before its newline is
//! written, and the rest of it is consumed without being kept; the saved offset may then point
//! inside that line, which the next look (or a restart) recognises because the byte before it is
//! not a newline, and skips to the line's end. A followed file that has not changed since a look
//! reached its end (same device, inode, size and modification time, [`Stamp`]) is not read again,
//! so an unfinished last line costs nothing while it waits.

use std::fs::{File, Metadata};
use std::io::{BufRead, BufReader, ErrorKind, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use sgevents_protocol::Event;
use tokio_util::sync::CancellationToken;

use super::{fits, journal_row, oversized};
use crate::config::{JsonlSource, StartAt};
use crate::store::{JournalRow, SourcePosition, Store};

/// How much of the first line the fingerprint covers.
const HEAD_BYTES: usize = 4096;

/// What one look at the file found.
struct Batch {
    events: Vec<JournalRow>,
    position: SourcePosition,
    at_end: bool,
}

/// Reads the file into the journal until it is exhausted (without `follow`: the task then ends,
/// which tells the daemon so) or `cancel`.
pub(crate) async fn run(
    config: JsonlSource,
    store: Store,
    cancel: CancellationToken,
    probe: super::Probe,
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
    let mut reader = Reader::new(&config);
    loop {
        let from = position.clone();
        let (back, read) = tokio::task::spawn_blocking(move || {
            let read = reader.read_batch(from);
            (reader, read)
        })
        .await?;
        reader = back;
        let follow = config.follow;
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
        probe.polled();
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
    let mut file = BufReader::new(File::open(path)?);
    let mut n = 0;
    loop {
        let buf = match file.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(n);
        }
        n += buf.iter().filter(|&&b| b == b'\n').count() as i64;
        let k = buf.len();
        file.consume(k);
    }
}

/// What identifies the file's state cheaply: a look that reached the end of a file with the same
/// stamp would find nothing new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
}

impl Stamp {
    fn of(meta: &Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }
}

/// Why the saved offset does not apply to the file now under the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Another file (device or inode): a rotation or a `mv`.
    Replaced,
    /// The same file, now shorter than the offset.
    Shrank,
    /// The same file, its first line different: rewritten in place.
    Rewritten,
}

impl Change {
    fn describe(self, path: &str, position: &SourcePosition, len: u64) -> String {
        let what = match self {
            Change::Replaced => format!(
                "the events file `{path}` is a new file (another device or inode than the one read up to byte {})",
                position.offset
            ),
            Change::Shrank => format!(
                "the events file `{path}` shrank to {len} bytes, below the position read (byte {})",
                position.offset
            ),
            Change::Rewritten => format!(
                "the events file `{path}` was rewritten in place (its first line changed since byte {} was read)",
                position.offset
            ),
        };
        match position.last_event_id {
            Some(last) => format!(
                "{what}; reading it from its start, skipping the events up to {last} already journaled"
            ),
            None => format!("{what}; reading it from its start"),
        }
    }
}

/// Whether the file now under the path (`dev`, `ino`, `len`, the fingerprint of its first line
/// `head`) is not the one `saved` was read from. Nothing read yet, or no identity saved (a journal
/// from before file identities), is never a change.
fn identity_change(
    saved: &SourcePosition,
    dev: i64,
    ino: i64,
    len: u64,
    head: Option<&str>,
) -> Option<Change> {
    if saved.offset == 0 {
        return None;
    }
    if let (Some(d), Some(i)) = (saved.file_dev, saved.file_ino) {
        if (d, i) != (dev, ino) {
            return Some(Change::Replaced);
        }
    }
    if len < saved.offset as u64 {
        return Some(Change::Shrank);
    }
    match &saved.file_head {
        Some(saved) if Some(saved.as_str()) != head => Some(Change::Rewritten),
        _ => None,
    }
}

/// The fingerprint of the file's first line (at most its first [`HEAD_BYTES`]): 64-bit FNV-1a,
/// in hex. `None` while the file has no complete first line.
fn head_of(file: &File) -> std::io::Result<Option<String>> {
    let mut buf = vec![0; HEAD_BYTES];
    let mut n = 0;
    while n < HEAD_BYTES {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let head = match buf[..n].iter().position(|&b| b == b'\n') {
        Some(end) => &buf[..=end],
        None if n == HEAD_BYTES => &buf[..],
        None => return Ok(None),
    };
    Ok(Some(format!("{:016x}", fnv1a(head))))
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Whether `offset` is at the start of a line (the start of the file, or just after a newline).
fn at_line_start(file: &File, offset: i64) -> std::io::Result<bool> {
    if offset <= 0 {
        return Ok(true);
    }
    let mut byte = [0];
    file.read_exact_at(&mut byte, offset as u64 - 1)?;
    Ok(byte[0] == b'\n')
}

/// What [`read_line`] found.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// The end of the file, nothing read.
    End,
    /// A line with its newline, this many bytes, in the buffer.
    Whole(usize),
    /// The file's last line, without a newline, this many bytes, in the buffer.
    Unfinished(usize),
    /// A line longer than the limit: `consumed` bytes read (its newline included when `ended`); the
    /// buffer holds its first `max` bytes.
    TooLong { consumed: usize, ended: bool },
}

/// Reads one line into `line` (cleared first), never holding more than `max` bytes of it (the
/// newline aside): a longer line is consumed to its end (or the file's) without being kept.
fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>, max: usize) -> std::io::Result<Line> {
    line.clear();
    let mut n = 0;
    loop {
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(if n == 0 {
                Line::End
            } else {
                Line::Unfinished(n)
            });
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) if line.len() + i > max => {
                // What fits is kept, to name the event.
                line.extend_from_slice(&buf[..max - line.len()]);
                reader.consume(i + 1);
                return Ok(Line::TooLong {
                    consumed: n + i + 1,
                    ended: true,
                });
            }
            Some(i) => {
                line.extend_from_slice(&buf[..=i]);
                reader.consume(i + 1);
                return Ok(Line::Whole(n + i + 1));
            }
            None if line.len() + buf.len() > max => {
                let k = buf.len();
                line.extend_from_slice(&buf[..max - line.len()]);
                reader.consume(k);
                let (rest, ended) = skip_line(reader)?;
                return Ok(Line::TooLong {
                    consumed: n + k + rest,
                    ended,
                });
            }
            None => {
                let k = buf.len();
                line.extend_from_slice(buf);
                reader.consume(k);
                n += k;
            }
        }
    }
}

/// Consumes the rest of a line without keeping it: the bytes consumed, and whether its newline
/// was found (otherwise the file ended first).
fn skip_line(reader: &mut impl BufRead) -> std::io::Result<(usize, bool)> {
    let mut n = 0;
    loop {
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok((n, false));
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok((n + i + 1, true));
            }
            None => {
                let k = buf.len();
                reader.consume(k);
                n += k;
            }
        }
    }
}

/// The event's top-level `"id"` in the start of its JSON text, when it is there as a plain
/// integer: enough to name an oversized event without parsing it.
fn id_in(text: &[u8]) -> Option<i64> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => {
                let start = i + 1;
                let mut j = start;
                while j < text.len() && text[j] != b'"' {
                    j += if text[j] == b'\\' { 2 } else { 1 };
                }
                if j >= text.len() {
                    return None;
                }
                let key = &text[start..j];
                i = j + 1;
                if depth == 1 && key == b"id" {
                    let rest = text[i..].trim_ascii_start();
                    if let Some(rest) = rest.strip_prefix(b":") {
                        let rest = rest.trim_ascii_start();
                        let end = rest
                            .iter()
                            .position(|b| !(b.is_ascii_digit() || *b == b'-'))
                            .unwrap_or(rest.len());
                        return std::str::from_utf8(&rest[..end]).ok()?.parse().ok();
                    }
                }
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// The reading side, moved into a blocking task for each look, with what it remembers between
/// looks.
struct Reader {
    path: PathBuf,
    batch_size: usize,
    follow: bool,
    start_at: StartAt,
    max_event_bytes: usize,
    /// The file as it was when the last look reached its end.
    idle_at: Option<Stamp>,
    /// After a change of file: ids up to this one are already journaled and skipped quietly.
    replaying: Option<i64>,
}

impl Reader {
    fn new(config: &JsonlSource) -> Reader {
        Reader {
            path: config.path.clone(),
            batch_size: config.batch_size,
            follow: config.follow,
            start_at: config.start_at,
            max_event_bytes: config.max_event_bytes,
            idle_at: None,
            replaying: None,
        }
    }

    /// A look that reached the end of the file as it was at `stamp`.
    fn at_end(&mut self, stamp: Stamp, position: SourcePosition, events: Vec<JournalRow>) -> Batch {
        self.idle_at = Some(stamp);
        Batch {
            events,
            position,
            at_end: true,
        }
    }

    /// One look: up to `batch_size` events after `position`.
    fn read_batch(&mut self, mut position: SourcePosition) -> std::io::Result<Batch> {
        if let Some(seen) = self.idle_at {
            // Nothing changed since the last look reached the end: it is not read again.
            if std::fs::metadata(&self.path).is_ok_and(|m| Stamp::of(&m) == seen) {
                return Ok(Batch {
                    events: Vec::new(),
                    position,
                    at_end: true,
                });
            }
        }
        let path = self.path.display().to_string();
        let mut file = File::open(&self.path)?;
        let stamp = Stamp::of(&file.metadata()?);
        let head = head_of(&file)?;
        let (dev, ino) = (stamp.dev as i64, stamp.ino as i64);
        if let Some(change) = identity_change(&position, dev, ino, stamp.len, head.as_deref()) {
            tracing::warn!(path = %path, "{}", change.describe(&path, &position, stamp.len));
            position.offset = 0;
            position.line = 0;
            self.replaying = position.last_event_id;
        }
        (position.file_dev, position.file_ino, position.file_head) = (Some(dev), Some(ino), head);
        self.idle_at = None;
        // An offset inside a line: the rest of a line skipped as too long.
        let mut skipping = !at_line_start(&file, position.offset)?;
        file.seek(SeekFrom::Start(position.offset as u64))?;
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        let mut events = Vec::new();
        let mut line = Vec::new();
        let max = self.max_event_bytes;
        loop {
            if events.len() >= self.batch_size {
                return Ok(Batch {
                    events,
                    position,
                    at_end: false,
                });
            }
            if skipping {
                let (n, ended) = skip_line(&mut reader)?;
                position.offset += n as i64;
                if !ended {
                    return Ok(self.at_end(stamp, position, events));
                }
                position.line += 1;
                skipping = false;
                continue;
            }
            let n = match read_line(&mut reader, &mut line, max)? {
                Line::End => return Ok(self.at_end(stamp, position, events)),
                // Possibly still being written: leave it for the next look.
                Line::Unfinished(_) if self.follow => {
                    return Ok(self.at_end(stamp, position, events));
                }
                Line::Whole(n) | Line::Unfinished(n) => n,
                Line::TooLong { consumed, ended } => {
                    position.offset += consumed as i64;
                    let number = position.line + 1;
                    let event = match id_in(&line) {
                        Some(id) => format!("event `{id}` (line {number} of `{path}`)"),
                        None => format!("line {number} of `{path}`"),
                    };
                    let size = if ended {
                        format!("{} bytes long", consumed - 1)
                    } else {
                        format!("at least {consumed} bytes long (its end is not written yet)")
                    };
                    oversized(&mut position, &event, &size, max);
                    if !ended {
                        return Ok(self.at_end(stamp, position, events));
                    }
                    position.line += 1;
                    continue;
                }
            };
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
                    tracing::error!(path = %path, line = position.line, "{message}: `{}`", sgevents_protocol::excerpt(text, 120));
                    position.last_error = Some(message);
                    continue;
                }
            };
            if let StartAt::EventId(first) = self.start_at {
                if position.last_event_id.is_none() && event.id < first {
                    continue;
                }
            }
            if let Some(last) = position.last_event_id {
                if event.id <= last {
                    if self.replaying.is_some_and(|upto| event.id <= upto) {
                        tracing::debug!(path = %path, line = position.line, "event {} is already journaled", event.id);
                    } else {
                        position.skipped += 1;
                        tracing::warn!(path = %path, line = position.line, "skipping event {} on line {}: its id is not above the last one journaled ({last})", event.id, position.line);
                    }
                    continue;
                }
            }
            self.replaying = None;
            let row = journal_row(&event);
            if !fits(&row, max, &mut position) {
                continue;
            }
            position.last_event_id = Some(event.id);
            events.push(row);
        }
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

    fn config(path: &Path, batch_size: usize, follow: bool, start_at: StartAt) -> JsonlSource {
        JsonlSource {
            path: path.to_owned(),
            follow,
            start_at,
            poll_interval: std::time::Duration::from_millis(1),
            batch_size,
            site_url: None,
            max_event_bytes: crate::config::MAX_EVENT_BYTES,
        }
    }

    /// One look with a fresh reader.
    fn read_batch(
        path: &Path,
        position: SourcePosition,
        batch_size: usize,
        follow: bool,
        start_at: StartAt,
    ) -> std::io::Result<Batch> {
        Reader::new(&config(path, batch_size, follow, start_at)).read_batch(position)
    }

    fn lines(ids: impl IntoIterator<Item = i64>) -> String {
        ids.into_iter()
            .map(|i| format!("{{\"id\":{i},\"event_type\":\"A\"}}\n"))
            .collect()
    }

    fn ids(b: &Batch) -> Vec<i64> {
        b.events.iter().map(|e| e.event_id).collect()
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
        let cfg = config(&path, 10, true, StartAt::Latest);
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

    #[test]
    fn identity_changes() {
        let saved = SourcePosition {
            offset: 100,
            file_dev: Some(1),
            file_ino: Some(2),
            file_head: Some("aa".into()),
            ..position()
        };
        let same = identity_change(&saved, 1, 2, 100, Some("aa"));
        assert_eq!(same, None, "the same file, not grown");
        assert_eq!(identity_change(&saved, 1, 2, 500, Some("aa")), None);
        assert_eq!(
            identity_change(&saved, 1, 3, 500, Some("aa")),
            Some(Change::Replaced)
        );
        assert_eq!(
            identity_change(&saved, 9, 2, 500, Some("aa")),
            Some(Change::Replaced)
        );
        assert_eq!(
            identity_change(&saved, 1, 2, 99, Some("aa")),
            Some(Change::Shrank)
        );
        assert_eq!(
            identity_change(&saved, 1, 2, 500, Some("bb")),
            Some(Change::Rewritten)
        );
        assert_eq!(
            identity_change(&saved, 1, 2, 500, None),
            Some(Change::Rewritten),
            "a first line no longer complete is another first line"
        );
        let unknown = SourcePosition {
            file_dev: None,
            file_ino: None,
            file_head: None,
            ..saved.clone()
        };
        assert_eq!(
            identity_change(&unknown, 1, 3, 500, Some("bb")),
            None,
            "a position saved before file identities is trusted"
        );
        assert_eq!(
            identity_change(&unknown, 1, 3, 50, None),
            Some(Change::Shrank)
        );
        let fresh = SourcePosition { offset: 0, ..saved };
        assert_eq!(
            identity_change(&fresh, 7, 7, 0, None),
            None,
            "nothing read yet"
        );
    }

    #[test]
    fn the_head_is_the_first_line_or_its_first_4_kib() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("e.jsonl");
        let head = |text: &str| {
            std::fs::write(&path, text).expect("write");
            head_of(&File::open(&path).expect("open")).expect("head")
        };
        assert_eq!(head(""), None);
        assert_eq!(head("{\"id\":1,"), None, "no complete first line yet");
        let first = head("{\"id\":1}\n");
        assert_eq!(first.as_deref().map(str::len), Some(16));
        assert_eq!(
            head("{\"id\":1}\n{\"id\":2}\n"),
            first,
            "later lines do not count"
        );
        assert_ne!(head("{\"id\":2}\n"), first);
        let long = "x".repeat(HEAD_BYTES);
        assert!(head(&long).is_some(), "a first line of 4 KiB or more");
        assert_eq!(head(&format!("{long}yyy\n")), head(&format!("{long}zzz")));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn lines_are_read_within_the_limit() {
        let mut line = Vec::new();
        let mut input: &[u8] = b"short\nthis one is too long\nend";
        assert_eq!(
            read_line(&mut input, &mut line, 10).expect("read"),
            Line::Whole(6)
        );
        assert_eq!(line, b"short\n");
        assert_eq!(
            read_line(&mut input, &mut line, 10).expect("read"),
            Line::TooLong {
                consumed: 21,
                ended: true
            }
        );
        assert!(line.len() <= 10, "never held beyond the limit");
        assert_eq!(
            read_line(&mut input, &mut line, 10).expect("read"),
            Line::Unfinished(3)
        );
        assert_eq!(
            read_line(&mut input, &mut line, 10).expect("read"),
            Line::End
        );
        // Through a small buffer, a long line without its end is consumed and not kept.
        let big = vec![b'a'; 100_000];
        let mut reader = BufReader::with_capacity(1024, &big[..]);
        assert_eq!(
            read_line(&mut reader, &mut line, 4096).expect("read"),
            Line::TooLong {
                consumed: 100_000,
                ended: false
            }
        );
        assert!(line.capacity() <= 8192, "capacity {}", line.capacity());
        let mut exact: &[u8] = b"0123456789\n";
        assert_eq!(
            read_line(&mut exact, &mut line, 10).expect("read"),
            Line::Whole(11)
        );
    }

    #[test]
    fn the_id_of_an_oversized_line() {
        assert_eq!(id_in(br#"{"id":11,"event_type":"A"}"#), Some(11));
        assert_eq!(
            id_in(br#"{"entity":{"type":"Task","id":5},"meta":[{"id":6}],"d":"}{\"id\":7","id" : 12, "x":"#),
            Some(12),
            "nested ids and ids inside strings are not the event's"
        );
        assert_eq!(id_in(br#"{"event_type":"id","x":"aaaa"#), None);
        assert_eq!(id_in(br#"{"id":"12"}"#), None);
        assert_eq!(id_in(b"not json"), None);
    }

    #[test]
    fn an_oversized_line_is_skipped_counted_and_never_held() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("e.jsonl");
        let big = format!(
            "{{\"id\":2,\"event_type\":\"A\",\"d\":\"{}\"}}\n",
            "x".repeat(5000)
        );
        std::fs::write(&path, format!("{}{big}{}", lines([1]), lines([3]))).expect("write");
        let mut cfg = config(&path, 100, false, StartAt::Earliest);
        cfg.max_event_bytes = 2048;
        let b = Reader::new(&cfg).read_batch(position()).expect("read");
        assert_eq!(ids(&b), [1, 3]);
        assert_eq!((b.position.oversized, b.position.line), (1, 3));
        let error = b.position.last_error.expect("last error");
        assert!(
            error.starts_with("skipped event `2` (line 2 of `"),
            "{error}"
        );
        assert!(
            error.contains(&format!("it is {} bytes long", big.len() - 1)),
            "{error}"
        );

        // A journaled body over the limit (normalising adds fields) is refused too.
        std::fs::write(
            &path,
            format!("{{\"id\":4,\"d\":\"{}\"}}\n", "x".repeat(1000)),
        )
        .expect("write");
        cfg.max_event_bytes = 1024;
        let b = Reader::new(&cfg).read_batch(position()).expect("read");
        assert_eq!((b.events.len(), b.position.oversized), (0, 1));
    }

    #[test]
    fn an_unfinished_oversized_line_is_skipped_once_and_the_rest_follows() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("e.jsonl");
        let head = format!(
            "{{\"id\":2,\"event_type\":\"A\",\"d\":\"{}",
            "x".repeat(5000)
        );
        std::fs::write(&path, format!("{}{head}", lines([1]))).expect("write");
        let mut cfg = config(&path, 100, true, StartAt::Earliest);
        cfg.max_event_bytes = 2048;
        let mut reader = Reader::new(&cfg);
        let b = reader.read_batch(position()).expect("read");
        assert_eq!(
            (ids(&b), b.position.oversized),
            (vec![1], 1),
            "counted before its end"
        );
        assert!(b.at_end);
        let stamp = Stamp::of(&std::fs::metadata(&path).expect("stat"));
        assert_eq!(
            reader.idle_at,
            Some(stamp),
            "an unchanged file is not read again"
        );
        let mid = b.position.clone();

        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        f.write_all(b"xxxx").expect("append");
        let b = reader.read_batch(mid.clone()).expect("read");
        assert_eq!(
            (b.events.len(), b.position.oversized),
            (0, 1),
            "not counted again"
        );
        assert_ne!(reader.idle_at, Some(stamp), "the file changed");
        f.write_all(format!("xx\"}}\n{}", lines([3])).as_bytes())
            .expect("append");
        let b = reader.read_batch(b.position).expect("read");
        assert_eq!(
            (ids(&b), b.position.oversized, b.position.line),
            (vec![3], 1, 3)
        );
        // A restart inside the line (the offset saved mid-line) skips the rest of it too.
        let b = read_batch(&path, mid, 100, true, StartAt::Earliest).expect("read");
        assert_eq!(
            (ids(&b), b.position.oversized, b.position.line),
            (vec![3], 1, 3)
        );
    }

    #[test]
    fn a_new_file_under_the_path_is_read_from_its_start() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("e.jsonl");
        std::fs::write(&path, lines(1..=10)).expect("write");
        let b = read_batch(&path, position(), 100, true, StartAt::Earliest).expect("read");
        assert!(b.position.file_ino.is_some() && b.position.file_head.is_some());
        let saved = b.position;
        let same = read_batch(&path, saved.clone(), 100, true, StartAt::Earliest).expect("read");
        assert_eq!(same.position, saved, "the same file resumes at the offset");

        // `mv new e.jsonl`: longer than the offset, ids 6..=10 already journaled.
        let new = dir.path().join("new.jsonl");
        std::fs::write(&new, lines(6..=30)).expect("write");
        std::fs::rename(&new, &path).expect("mv");
        let mut reader = Reader::new(&config(&path, 100, true, StartAt::Earliest));
        let b = reader.read_batch(saved.clone()).expect("read");
        assert_eq!(ids(&b), (11..=30).collect::<Vec<_>>());
        assert_eq!(b.position.skipped, 0, "ids read again are not faults");
        assert_ne!(b.position.file_ino, saved.file_ino);

        // Rewritten in place, longer, another first line.
        let saved = b.position;
        std::fs::write(&path, lines(25..=60)).expect("rewrite");
        let b = reader.read_batch(saved).expect("read");
        assert_eq!(ids(&b), (31..=60).collect::<Vec<_>>());
        assert_eq!(b.position.line, 36);
    }

    #[test]
    fn an_unchanged_file_is_not_read_again() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("e.jsonl");
        let unfinished = "x".repeat(26);
        std::fs::write(&path, format!("{}{unfinished}", lines([1]))).expect("write");
        let mut reader = Reader::new(&config(&path, 100, true, StartAt::Earliest));
        let b = reader.read_batch(position()).expect("read");
        assert_eq!((ids(&b), b.at_end), (vec![1], true));
        // Its unfinished line changed behind the reader's back, with the same size and time: not
        // looked at. (A real writer changes the size or the time.)
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        let mtime = f.metadata().expect("stat").modified().expect("mtime");
        let end = lines([2]);
        assert_eq!(end.len(), unfinished.len());
        f.write_all_at(end.as_bytes(), lines([1]).len() as u64)
            .expect("overwrite");
        f.set_modified(mtime).expect("set mtime");
        let b = reader.read_batch(b.position).expect("read");
        assert!(b.events.is_empty() && b.at_end, "not read again");
        f.set_modified(std::time::SystemTime::now()).expect("touch");
        let b = reader.read_batch(b.position).expect("read");
        assert_eq!(ids(&b), [2], "read once it changed");
    }
}
