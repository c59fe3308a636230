//! Throughput of journal → bridge → JetStream: `cargo bench -p nats-bridge --bench bridge`.
//!
//! A plain `main`, no harness. It builds the release `sgevents` (the bench profile builds the
//! release bridge), starts a `nats-server -js` with file storage in a temporary directory,
//! journals `SGEVENTS_BENCH_EVENTS` events (20,000 by default) once with a run that has no plugins,
//! then measures:
//!
//! 1. **the daemon with the bridge**, windows 1 and 256 (the default): each run starts from a copy
//!    of that state, with `exit_when_idle`, into a stream of its own, timed from the daemon's spawn
//!    to its exit; afterwards the stream must hold every event;
//! 2. **raw publishes**, the baseline: this process publishes the same bodies, with the same
//!    headers and subjects, through the same client (async-nats), 1 and 256 acknowledgements
//!    awaited at once, into a stream of its own.
//!
//! Figures are medians of `SGEVENTS_BENCH_REPEATS` runs (3), interleaved round-robin. Results go to
//! stdout as Markdown; progress to stderr.

// A benchmark's `main` exists to print its results: stdout is the report.
#![allow(clippy::print_stdout)]

use std::fs;
use std::future::IntoFuture;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::{Value, json};

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the release daemon and returns its path.
fn build_sgevents() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    eprintln!("bench: building sgevents (release)");
    let out = Command::new(cargo)
        .current_dir(root())
        .args(["build", "--release", "-p", "sgevents", "--bin", "sgevents"])
        .args(["--message-format=json-render-diagnostics"])
        .stderr(Stdio::inherit())
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "cargo build failed: {}", out.status);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "sgevents")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo reported the sgevents executable")
}

/// A realistic `Shotgun_Task_Change` event.
fn event(id: i64) -> Value {
    json!({"id": id, "event_type": "Shotgun_Task_Change", "attribute_name": "sg_status_list",
        "meta": {"type": "attribute_change", "attribute_name": "sg_status_list", "entity_type": "Task",
                 "entity_id": id % 5000, "field_data_type": "status_list", "old_value": "ip", "new_value": "fin"},
        "entity": {"type": "Task", "id": id % 5000, "name": "Anim"},
        "user": {"type": "HumanUser", "id": 42, "name": "Ana Reyes"},
        "project": {"type": "Project", "id": 66, "name": "Forest Spirits"},
        "session_uuid": "6f1c1a52-1b2b-11ee-9a5e-0242ac120002",
        "created_at": "2026-11-02T10:15:00Z",
        "description": "Ana Reyes changed \"Status\" from \"ip\" to \"fin\" on Task Anim"})
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

fn run_daemon(sgevents: &Path, dir: &Path) -> Duration {
    let start = Instant::now();
    let status = Command::new(sgevents)
        .current_dir(dir)
        .args(["-c", "sgevents.toml", "run"])
        .env("SGEVENTS_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .expect("sgevents runs");
    assert!(status.success(), "sgevents failed: {status}");
    start.elapsed()
}

fn config(plugin: &str) -> String {
    format!(
        "[daemon]\nstate_dir = \"var\"\nexit_when_idle = true\n\n[source]\nkind = \"jsonl\"\n\
         path = \"events.jsonl\"\n{plugin}"
    )
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let events = env_number("SGEVENTS_BENCH_EVENTS", 20_000) as i64;
    let repeats = env_number("SGEVENTS_BENCH_REPEATS", 3).max(1);
    let sgevents = build_sgevents();
    let bridge = PathBuf::from(env!("CARGO_BIN_EXE_nats-bridge"));
    let tmp = tempfile::tempdir().expect("temp dir");

    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    let mut server: Child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(tmp.path().join("nats"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server runs (apt-get install nats-server)");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // The JetStream context starts a task of its own.
    let _runtime = rt.enter();
    let client = rt.block_on(async {
        let started = Instant::now();
        loop {
            if let Ok(client) = async_nats::connect(&url).await
                && client
                    .request("$JS.API.INFO", bytes::Bytes::new())
                    .await
                    .is_ok()
            {
                break client;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "nats-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let js = jetstream::new(client);

    eprintln!("bench: journaling {events} events");
    let base = tmp.path().join("base");
    fs::create_dir_all(&base).expect("mkdir");
    let bodies: Vec<String> = (1..=events).map(|id| event(id).to_string()).collect();
    fs::write(base.join("events.jsonl"), bodies.join("\n") + "\n").expect("events");
    fs::write(base.join("sgevents.toml"), config("")).expect("config");
    run_daemon(&sgevents, &base);

    let cases: Vec<(String, usize, bool)> = vec![
        ("daemon → bridge → JetStream, window 1".into(), 1, true),
        ("daemon → bridge → JetStream, window 256".into(), 256, true),
        ("raw async-nats publishes, 1 in flight".into(), 1, false),
        ("raw async-nats publishes, 256 in flight".into(), 256, false),
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for round in 0..repeats {
        for (i, (label, window, daemon)) in cases.iter().enumerate() {
            let name = format!("B{i}R{round}");
            let subject_head = format!("b{i}r{round}");
            let elapsed = if *daemon {
                let dir = tmp.path().join(&name);
                fs::create_dir_all(dir.join("var")).expect("mkdir");
                copy_dir(&base.join("var"), &dir.join("var"));
                fs::copy(base.join("events.jsonl"), dir.join("events.jsonl")).expect("copy");
                let plugin = format!(
                    "\n[plugin.nats]\ncommand = [{:?}]\nstart_at = \"earliest\"\nconfig = {{ url = \
                     {url:?}, site = \"bench\", stream = \"{name}\", subject = \
                     \"{subject_head}.{{site}}.{{event_type}}\", max_in_flight = {window} }}\n",
                    bridge.display().to_string()
                );
                fs::write(dir.join("sgevents.toml"), config(&plugin)).expect("config");
                run_daemon(&sgevents, &dir)
            } else {
                rt.block_on(raw_publish(&js, &name, &subject_head, &bodies, *window))
            };
            let stored = rt.block_on(async {
                let mut s = js.get_stream(&name).await.expect("the stream");
                s.info().await.expect("info").state.messages
            });
            assert_eq!(stored, events as u64, "{label}: every event stored");
            let rate = events as f64 / elapsed.as_secs_f64();
            eprintln!("bench: {label}: {rate:.0} events/s ({elapsed:?})");
            rates[i].push(rate);
        }
    }
    println!("| {events} events, file storage | events/s (median of {repeats}) |");
    println!("|---|---:|");
    for ((label, _, _), runs) in cases.iter().zip(rates) {
        println!("| {label} | {:.0} |", median(runs));
    }
    let _ = server.kill();
    let _ = server.wait();
}

/// Publishes `bodies` into a new stream, `window` acknowledgements awaited at once.
async fn raw_publish(
    js: &jetstream::Context,
    name: &str,
    subject_head: &str,
    bodies: &[String],
    window: usize,
) -> Duration {
    js.create_stream(stream::Config {
        name: name.to_owned(),
        subjects: vec![format!("{subject_head}.>")],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .expect("stream");
    let subject = format!("{subject_head}.bench.Shotgun_Task_Change");
    let start = Instant::now();
    let mut pending: FuturesUnordered<
        <jetstream::context::PublishAckFuture as IntoFuture>::IntoFuture,
    > = FuturesUnordered::new();
    for (i, body) in bodies.iter().enumerate() {
        if pending.len() >= window {
            pending
                .next()
                .await
                .expect("a publish")
                .expect("acknowledged");
        }
        let id = i + 1;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("bench:{id}").as_str(),
        );
        headers.insert("Sgevents-Site", "bench");
        headers.insert("Sgevents-Event-Id", id.to_string().as_str());
        headers.insert("Sgevents-Event-Type", "Shotgun_Task_Change");
        headers.insert("Sgevents-Created-At", "2026-11-02T10:15:00Z");
        let ack = js
            .publish_with_headers(subject.clone(), headers, body.clone().into())
            .await
            .expect("sent");
        pending.push(ack.into_future());
    }
    while let Some(ack) = pending.next().await {
        ack.expect("acknowledged");
    }
    start.elapsed()
}
