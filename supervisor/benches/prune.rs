//! Pruning a large journal while deliveries go on: 1,000,000 events journaled, every plugin past
//! them, `journal_retention = 30s`. Measures how long pruning takes, the largest the write-ahead log
//! grows, the file's size before and after, and the longest a commit waits meanwhile (what a
//! plugin's answer waits for), next to the same commit round trip measured before pruning starts.
//!
//! `cargo bench -p sgevents --bench prune` (about 2 minutes). `SGEVENTS_BENCH_EVENTS` sets the
//! count. Prints Markdown.

#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use sgevents::config::Synchronous;
use sgevents::store::{JournalRow, SourcePosition, Store, StoreOptions, db_path};

const RETENTION: Duration = Duration::from_secs(30);
const BATCH: usize = 500;

fn event(id: i64) -> JournalRow {
    let body = format!(
        "{{\"id\":{id},\"event_type\":\"Shotgun_Task_Change\",\"attribute_name\":\"sg_status_list\",\
         \"meta\":{{\"type\":\"attribute_change\",\"attribute_name\":\"sg_status_list\",\"entity_type\":\"Task\",\
         \"entity_id\":{id},\"field_data_type\":\"status_list\",\"old_value\":\"wtg\",\"new_value\":\"ip\"}},\
         \"entity\":{{\"type\":\"Task\",\"id\":{id},\"name\":\"Animation\"}},\
         \"user\":{{\"type\":\"HumanUser\",\"id\":42,\"name\":\"Ana Reyes\"}},\
         \"project\":{{\"type\":\"Project\",\"id\":66,\"name\":\"Forest Spirits\"}},\
         \"session_uuid\":\"3f0c8a9e-2b1d-11ef-9c1e-0242ac120002\",\"created_at\":\"2026-11-02T10:00:00Z\",\
         \"description\":\"Ana Reyes changed Status from wtg to ip on Task Animation\"}}"
    );
    JournalRow {
        seq: 0,
        event_id: id,
        event_type: "Shotgun_Task_Change".into(),
        attribute_name: Some("sg_status_list".into()),
        entity_type: Some("Task".into()),
        project_id: Some(66),
        is_transient: false,
        created_at: Some("2026-11-02T10:00:00Z".into()),
        body,
    }
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let events: i64 = std::env::var("SGEVENTS_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let db = db_path(dir.path());
    let wal = dir.path().join("state.db-wal");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let options = StoreOptions {
            prune_every: Duration::from_secs(1),
            ..StoreOptions::new(Synchronous::Full, Duration::from_millis(5), RETENTION)
        };
        let (store, thread) = Store::open(dir.path(), options).expect("open");
        store.open_plugin("p", None, "fp").await.expect("plugin");

        // Journal everything, as a source would, in batches.
        let journal_start = Instant::now();
        let mut head = 0;
        for first in (1..=events).step_by(BATCH) {
            let last = (first + BATCH as i64 - 1).min(events);
            let position = SourcePosition {
                kind: "jsonl".into(),
                location: "bench".into(),
                last_event_id: Some(last),
                ..Default::default()
            };
            head = store
                .append((first..=last).map(event).collect(), position)
                .await
                .expect("append");
        }
        let journaled_in = journal_start.elapsed();
        store.set_cursor("p", head);
        store.flush().await;

        // The WAL, sampled every 5 ms from now on.
        let peak_wal = Arc::new(AtomicU64::new(size(&wal)));
        let done = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (peak, done, wal) = (peak_wal.clone(), done.clone(), wal.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    peak.fetch_max(size(&wal), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        let file_before = size(&db);

        // Commit round trips (a cursor move and a flush, what an answer costs) until pruning is
        // over: before it starts (the baseline), then while it runs.
        let reader =
            Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("reader");
        let pruned = || {
            reader
                .query_row(
                    "SELECT (SELECT MIN(seq) FROM events) IS NULL AND (SELECT freelist_count FROM pragma_freelist_count) = 0",
                    [],
                    |r| r.get::<_, bool>(0),
                )
                .unwrap_or(false)
        };
        let prune_due = journal_start + RETENTION;
        let mut before = Vec::new();
        let mut during = Vec::new();
        let mut prune_start = None;
        let mut checked = Instant::now();
        let mut flip = 0;
        loop {
            let t = Instant::now();
            flip = 1 - flip;
            store.set_cursor("p", head - flip);
            store.set_cursor("p", head);
            store.flush().await;
            let took = t.elapsed();
            let started = reader
                .query_row("SELECT MIN(seq) FROM events", [], |r| r.get::<_, Option<i64>>(0))
                .ok()
                .flatten()
                != Some(1);
            if started {
                prune_start.get_or_insert_with(Instant::now);
                during.push(took);
            } else if Instant::now() < prune_due {
                before.push(took);
            }
            if prune_start.is_some() && checked.elapsed() > Duration::from_millis(50) {
                checked = Instant::now();
                if pruned() {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let prune_took = prune_start.expect("pruning started").elapsed();
        done.store(true, Ordering::Relaxed);
        sampler.join().expect("sampler");
        drop(reader);
        drop(store);
        thread.join().expect("store thread");
        before.sort();
        during.sort();
        println!("| | |\n|---|---|");
        println!("| events journaled | {events} in {:.1} s |", journaled_in.as_secs_f64());
        println!("| file before pruning | {} |", mib(file_before));
        println!("| pruning (delete, give pages back, checkpoint) | {:.1} s |", prune_took.as_secs_f64());
        println!("| write-ahead log, largest | {} |", mib(peak_wal.load(Ordering::Relaxed)));
        println!("| file after pruning | {} (log {}) |", mib(size(&db)), mib(size(&wal)));
        println!(
            "| commit round trip before pruning: median, max | {:.2} ms, {:.2} ms ({} samples) |",
            quantile(&before, 0.5).as_secs_f64() * 1000.0,
            before.last().expect("samples").as_secs_f64() * 1000.0,
            before.len()
        );
        println!(
            "| commit round trip while pruning: median, p99, max (the longest delivery pause) | {:.2} ms, {:.2} ms, {:.2} ms ({} samples) |",
            quantile(&during, 0.5).as_secs_f64() * 1000.0,
            quantile(&during, 0.99).as_secs_f64() * 1000.0,
            during.last().expect("samples").as_secs_f64() * 1000.0,
            during.len()
        );
    });
}
