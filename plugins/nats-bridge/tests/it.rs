//! The bridge against a real `nats-server -js`: the real `sgevents` daemon runs the real bridge
//! binary, and a real client (async-nats here, nats-py for the example workers) reads the stream.
//!
//! The server is Debian's `nats-server` package; a machine without it fails these tests with the
//! command to install it (they are never skipped). The `sgevents` binary is the one built next to
//! the bridge (`cargo test --workspace` builds both; `cargo build -p sgevents` otherwise).
//!
//! Waits poll a condition under a generous guard; the only sleep is the outage itself (the issue's
//! "NATS stopped for 10 s").

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use rusqlite::{Connection, OpenFlags};
use serde_json::json;

/// The longest any wait lasts before the test fails.
const GUARD: Duration = Duration::from_secs(120);

/// The issue's number of events.
const EVENTS: i64 = 20_000;

/// The version of nats-py the example worker is tested with.
const NATS_PY_VERSION: &str = "2.16.0";

fn bridge_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nats-bridge"))
}

/// The daemon built next to the bridge.
fn sgevents_exe() -> PathBuf {
    let path = bridge_exe().with_file_name("sgevents");
    assert!(
        path.is_file(),
        "the daemon is missing at `{}`\nhint: run `cargo build -p sgevents` (or `cargo test \
         --workspace`, which builds every binary first)",
        path.display()
    );
    path
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// One event: Task status changes, Shot creations and Version creations, on a few entities.
fn event_line(id: i64) -> String {
    let v = match id % 3 {
        0 => {
            json!({"id": id, "event_type": "Shotgun_Task_Change", "attribute_name": "sg_status_list",
            "meta": {"type": "attribute_change", "attribute_name": "sg_status_list", "old_value": "wtg", "new_value": "ip"},
            "entity": {"type": "Task", "id": id % 7, "name": "Anim"}, "user": {"type": "HumanUser", "id": 42, "name": "Ana Reyes"},
            "project": {"type": "Project", "id": 66, "name": "Forest Spirits"}, "session_uuid": null,
            "created_at": "2026-11-02T10:00:00Z", "description": "status change"})
        }
        1 => json!({"id": id, "event_type": "Shotgun_Shot_New", "attribute_name": null,
            "meta": {"type": "new_entity", "entity_type": "Shot", "entity_id": id},
            "entity": {"type": "Shot", "id": id, "name": "010_0010"}, "user": {"type": "ApiUser", "id": 5, "name": "ingest_bot"},
            "project": {"type": "Project", "id": 70, "name": "Harbour Lights"}, "session_uuid": null,
            "created_at": "2026-11-02T10:00:01Z", "description": "created"}),
        _ => json!({"id": id, "event_type": "Shotgun_Version_New", "attribute_name": null,
            "meta": {"type": "new_entity", "entity_type": "Version", "entity_id": id, "float": 0.1},
            "entity": {"type": "Version", "id": id, "name": "v001"}, "user": null, "project": null,
            "session_uuid": null, "created_at": "2026-11-02T10:00:02.5+01:00", "description": null}),
    };
    format!("{v}\n")
}

/// A `nats-server -js` on a free loopback port, with its store in a folder that outlives it.
struct Nats {
    port: u16,
    store: PathBuf,
    child: Option<Child>,
}

impl Nats {
    fn start(store: &Path) -> Nats {
        let mut nats = Nats::stopped(store);
        nats.restart();
        nats
    }

    /// A server not started yet, with its port chosen.
    fn stopped(store: &Path) -> Nats {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Nats {
            port,
            store: store.to_path_buf(),
            child: None,
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and store, and waits until JetStream answers.
    fn restart(&mut self) {
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "`nats-server` is not installed: these tests run a real NATS server\nhint: \
                 `apt-get install nats-server` (Debian and Ubuntu), or put the nats-server \
                 binary on PATH"
            ),
            Err(e) => panic!("cannot start nats-server: {e}"),
        };
        self.child = Some(child);
        let url = self.url();
        wait_for("JetStream to answer", || {
            rt().block_on(async {
                let Ok(client) = async_nats::connect(&url).await else {
                    return false;
                };
                // Any answer of the JetStream API (no "no responders").
                client
                    .request("$JS.API.INFO", bytes::Bytes::new())
                    .await
                    .is_ok()
            })
        });
    }

    /// Stops the server (SIGTERM, as a service manager does) and waits for it to exit.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// A folder with the daemon's configuration, the events file and the state.
struct Ctx {
    dir: tempfile::TempDir,
    daemons: Vec<Child>,
}

impl Drop for Ctx {
    fn drop(&mut self) {
        for child in &mut self.daemons {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Ctx {
    fn new() -> Ctx {
        Ctx {
            dir: tempfile::tempdir().expect("temp dir"),
            daemons: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Appends events `ids` to `events.jsonl`, in one write.
    fn append(&self, ids: std::ops::RangeInclusive<i64>) {
        let text: String = ids.map(event_line).collect();
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("events.jsonl"))
            .expect("events file");
        f.write_all(text.as_bytes()).expect("append");
    }

    /// Writes `sgevents.toml`: the bridge (`[plugin.nats]`) with `bridge_config`, then `more`.
    fn config(&self, bridge_config: &str, more: &str) {
        let text = format!(
            r#"
[daemon]
state_dir = "var"
commit_interval = "1ms"

[source]
kind = "jsonl"
path = "events.jsonl"
follow = true
poll_interval = "20ms"

[plugins]
restart_delay = "50ms"
restart_delay_max = "500ms"
stop_grace = "1s"

[plugin.nats]
command = [{bridge:?}]
config = {{ {bridge_config} }}
{more}
"#,
            bridge = bridge_exe().display().to_string(),
        );
        fs::write(self.path("sgevents.toml"), text).expect("config");
    }

    /// Starts `sgevents run`, logging to `daemon.log`.
    fn start(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("daemon.log"))
            .expect("log");
        let child = Command::new(sgevents_exe())
            .current_dir(self.dir.path())
            .args(["-c", "sgevents.toml", "run"])
            .env("SGEVENTS_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("sgevents starts");
        self.daemons.push(child);
    }

    /// Kills the newest daemon with SIGKILL.
    fn kill_daemon(&mut self) {
        let mut child = self.daemons.pop().expect("a daemon runs");
        child.kill().expect("kill -9");
        child.wait().expect("reaped");
    }

    /// Stops the newest daemon gracefully.
    fn stop_daemon(&mut self) {
        let mut child = self.daemons.pop().expect("a daemon runs");
        signal(child.id(), nix::sys::signal::Signal::SIGTERM);
        child.wait().expect("reaped");
    }

    fn log(&self) -> String {
        fs::read_to_string(self.path("daemon.log")).unwrap_or_default()
    }

    /// Polls `cond` until it holds; fails after [`GUARD`] with `what` and the daemon's last lines.
    fn wait_for(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            if start.elapsed() > GUARD {
                let log = self.log();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                panic!("timed out waiting for {what}; the daemon's last lines:\n{tail}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// A plugin's (state, last_event_id, pid, disabled_reason), once the database has its row.
    fn plugin(&self, name: &str) -> Option<PluginRow> {
        let db = Connection::open_with_flags(
            self.path("var/state.db"),
            OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .ok()?;
        db.query_row(
            "SELECT state, last_event_id, pid, disabled_reason FROM plugins WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .ok()
    }

    fn cursor(&self, name: &str) -> i64 {
        self.plugin(name).and_then(|p| p.1).unwrap_or(0)
    }
}

fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
}

/// Polls `cond` until it holds; fails after [`GUARD`] with `what`.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < GUARD, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The stream's (message count, last sequence), or `None` before it exists.
fn stream_state(nats: &Nats) -> Option<(u64, u64)> {
    let url = nats.url();
    rt().block_on(async {
        let client = async_nats::connect(&url).await.ok()?;
        let mut stream = jetstream::new(client).get_stream("SGEVENTS").await.ok()?;
        let info = stream.info().await.ok()?;
        Some((info.state.messages, info.state.last_sequence))
    })
}

fn stored(nats: &Nats) -> u64 {
    stream_state(nats).map_or(0, |s| s.0)
}

/// One stored message: (stream sequence, subject, Nats-Msg-Id, event id header, body).
type Stored = (u64, String, String, i64, serde_json::Value);

/// Every message of the stream, in stream order, read with an ordered consumer.
fn read_stream(nats: &Nats) -> Vec<Stored> {
    let url = nats.url();
    rt().block_on(async {
        let client = async_nats::connect(&url).await.expect("connect");
        let stream = jetstream::new(client)
            .get_stream("SGEVENTS")
            .await
            .expect("the stream exists");
        let total = stream.cached_info().state.messages;
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig::default())
            .await
            .expect("ordered consumer");
        let mut messages = consumer.messages().await.expect("messages");
        let mut out = Vec::new();
        while (out.len() as u64) < total {
            let message = tokio::time::timeout(GUARD, messages.next())
                .await
                .expect("the stream's messages arrive")
                .expect("more messages")
                .expect("a message");
            let info = message.info().expect("a JetStream message");
            let headers = message.headers.clone().expect("headers");
            let get = |name: &str| {
                headers
                    .get(name)
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default()
            };
            out.push((
                info.stream_sequence,
                message.subject.to_string(),
                headers
                    .get(async_nats::header::NATS_MESSAGE_ID)
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default(),
                get("Sgevents-Event-Id").parse().expect("an event id"),
                serde_json::from_slice(&message.payload).expect("the body is JSON"),
            ));
        }
        out
    })
}

/// Checks that the stream holds events 1..=`n` once each, in order per subject, with their ids,
/// headers and bodies; returns the messages.
fn assert_every_event_once(nats: &Nats, n: i64) -> Vec<Stored> {
    let (messages, last) = stream_state(nats).expect("the stream exists");
    assert_eq!(
        (messages, last),
        (n as u64, n as u64),
        "the stream's message count and last sequence: every event stored, none twice"
    );
    let stored = read_stream(nats);
    let ids: BTreeSet<i64> = stored.iter().map(|m| m.3).collect();
    assert_eq!(ids.len() as i64, n, "no event stored twice");
    assert_eq!(ids, (1..=n).collect(), "no event missing");
    let mut last_per_subject: BTreeMap<&str, i64> = BTreeMap::new();
    for (seq, subject, msg_id, id, body) in &stored {
        assert_eq!(msg_id, &format!("test:{id}"), "message {seq}");
        assert_eq!(
            body["id"],
            json!(id),
            "message {seq}: the body is the event"
        );
        let want: serde_json::Value =
            serde_json::from_str(event_line(*id).trim()).expect("the event");
        assert_eq!(
            body, &want,
            "message {seq}: the event as the daemon sent it"
        );
        let event_type = want["event_type"].as_str().expect("a type");
        assert_eq!(subject, &format!("sgevents.test.{event_type}"));
        if let Some(prev) = last_per_subject.insert(subject, *id) {
            assert!(
                prev < *id,
                "subject {subject}: event {id} stored after {prev} (message {seq})"
            );
        }
    }
    stored
}

/// A plugin's row: (state, last_event_id, pid, disabled_reason).
type PluginRow = (String, Option<i64>, Option<i64>, Option<String>);

/// The bridge's process: the one whose executable is the bridge and whose folder is `dir`.
fn bridge_pid(dir: &Path) -> Option<u32> {
    let exe = bridge_exe();
    fs::read_dir("/proc").ok()?.find_map(|entry| {
        let entry = entry.ok()?;
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let proc_exe = fs::read_link(entry.path().join("exe")).ok()?;
        let cwd = fs::read_link(entry.path().join("cwd")).ok()?;
        (proc_exe == exe && cwd == dir).then_some(pid)
    })
}

#[test]
fn twenty_thousand_events_are_stored_once_each_in_order() {
    let mut ctx = Ctx::new();
    let nats = Nats::start(&ctx.path("nats"));
    ctx.append(1..=EVENTS);
    ctx.config(&format!("url = {:?}, site = \"test\"", nats.url()), "");
    ctx.start();
    ctx.wait_for("20,000 events in the stream", || {
        stored(&nats) >= EVENTS as u64
    });
    ctx.wait_for("the bridge's cursor at the last event", || {
        ctx.cursor("nats") == EVENTS
    });
    ctx.stop_daemon();
    assert_every_event_once(&nats, EVENTS);
    let log = ctx.log();
    assert!(
        log.contains("created stream `SGEVENTS`"),
        "the bridge created its stream:\n{log}"
    );
    assert!(log.contains("256 in flight"), "the default window:\n{log}");
}

#[test]
fn crashes_of_the_daemon_and_the_bridge_lose_nothing_and_store_nothing_twice() {
    let mut ctx = Ctx::new();
    let nats = Nats::start(&ctx.path("nats"));
    let quarter = EVENTS / 4;
    ctx.append(1..=quarter);
    ctx.config(&format!("url = {:?}, site = \"test\"", nats.url()), "");
    ctx.start();
    ctx.wait_for("events stored", || stored(&nats) >= 3000);
    ctx.kill_daemon();

    ctx.append(quarter + 1..=2 * quarter);
    ctx.start();
    ctx.wait_for("more events stored", || stored(&nats) >= 8000);
    let dir = ctx.dir.path().canonicalize().expect("dir");
    let pid = bridge_pid(&dir).expect("the bridge runs");
    signal(pid, nix::sys::signal::Signal::SIGKILL);

    ctx.append(2 * quarter + 1..=3 * quarter);
    ctx.wait_for("events stored after the bridge's crash", || {
        stored(&nats) >= 13_000
    });
    ctx.kill_daemon();

    ctx.append(3 * quarter + 1..=EVENTS);
    ctx.start();
    ctx.wait_for("20,000 events in the stream", || {
        stored(&nats) >= EVENTS as u64
    });
    ctx.wait_for("the bridge's cursor at the last event", || {
        ctx.cursor("nats") == EVENTS
    });
    ctx.stop_daemon();
    assert_every_event_once(&nats, EVENTS);
    assert!(
        bridge_pid(&dir).is_none_or(|now| now != pid),
        "the bridge was restarted"
    );
}

#[test]
fn a_nats_outage_of_ten_seconds_loses_nothing_and_other_plugins_go_on() {
    let mut ctx = Ctx::new();
    let mut nats = Nats::start(&ctx.path("nats"));
    let half = EVENTS / 2;
    ctx.append(1..=half);
    // A second plugin (no SDK, standard library only) that the outage must not touch.
    let other = format!(
        "[plugin.count]\ncommand = [\"python3\", {:?}]\n",
        root()
            .join("plugins/raw/count_events.py")
            .display()
            .to_string()
    );
    ctx.config(&format!("url = {:?}, site = \"test\"", nats.url()), &other);
    ctx.start();
    ctx.wait_for("events stored", || stored(&nats) >= 4000);

    nats.stop();
    ctx.append(half + 1..=EVENTS);
    // The other plugin gets every event while NATS is down.
    ctx.wait_for("the other plugin's cursor at the last event", || {
        ctx.cursor("count") == EVENTS
    });
    // The outage itself: the issue's 10 s, measured from the stop.
    std::thread::sleep(Duration::from_secs(10));
    let during = ctx.plugin("nats").expect("the bridge's row");
    assert_ne!(
        during.0, "disabled",
        "the bridge is not disabled: {during:?}"
    );
    assert!(during.1.unwrap_or(0) < EVENTS, "the bridge waited for NATS");
    nats.restart();

    ctx.wait_for("20,000 events in the stream", || {
        stored(&nats) >= EVENTS as u64
    });
    ctx.wait_for("the bridge's cursor at the last event", || {
        ctx.cursor("nats") == EVENTS
    });
    let after = ctx.plugin("nats").expect("the bridge's row");
    assert_eq!(after.3, None, "never disabled");
    ctx.stop_daemon();
    // Every event once, and in order per subject: what was queued or in flight on the
    // connection the server dropped is never sent on the next one (the bridge opens a new
    // client), it comes back from the daemon in order.
    assert_every_event_once(&nats, EVENTS);

    let log = ctx.log();
    let outages = log.matches("is unreachable (").count();
    let back = log.matches("is back: publishing again").count();
    assert!(
        (1..=2).contains(&outages) && back == outages,
        "one warning per outage and one line when it ends ({outages} and {back}):\n{log}"
    );
    let failed: i64 =
        Connection::open_with_flags(ctx.path("var/state.db"), OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("state.db")
            .query_row("SELECT count(*) FROM failed_events", [], |r| r.get(0))
            .expect("count");
    assert_eq!(failed, 0, "no event failed");
}

/// A folder to put on `PYTHONPATH` so that `python3` can `import nats` (nats-py), installed once
/// with pip into `target/pydeps/`, like `shotgun_api3` for the daemon's tests.
fn python_with_nats_py() -> PathBuf {
    sgevents_tests::fake_site::python_with("nats-py", NATS_PY_VERSION, "nats")
}

#[test]
fn a_pool_of_three_python_workers_consumes_every_event_once() {
    let pydeps = python_with_nats_py();
    let mut ctx = Ctx::new();
    let nats = Nats::start(&ctx.path("nats"));
    ctx.append(1..=EVENTS);
    ctx.config(&format!("url = {:?}, site = \"test\"", nats.url()), "");
    ctx.start();
    let worker = root().join("plugins/nats-bridge/examples/worker.py");
    let mut workers: Vec<Child> = (0..3)
        .map(|i| {
            let log = fs::File::create(ctx.path(&format!("worker{i}.log"))).expect("log");
            Command::new("python3")
                .arg(&worker)
                .args(["--server", &nats.url(), "--durable", "pool"])
                .args(["--filter", "sgevents.test.>", "--ack-wait", "30"])
                .arg("--record")
                .arg(ctx.path(&format!("worker{i}.ids")))
                .env("PYTHONPATH", &pydeps)
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("python3 runs the worker")
        })
        .collect();
    let recorded = || -> Vec<i64> {
        (0..3)
            .flat_map(|i| {
                let text =
                    fs::read_to_string(ctx.path(&format!("worker{i}.ids"))).unwrap_or_default();
                let complete = text.rfind('\n').map_or("", |end| &text[..end]).to_owned();
                complete
                    .lines()
                    .map(|l| l.parse::<i64>().expect("an id"))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let worker_logs = || {
        (0..3)
            .map(|i| fs::read_to_string(ctx.path(&format!("worker{i}.log"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let start = Instant::now();
    while recorded().len() < EVENTS as usize {
        assert!(
            start.elapsed() < GUARD,
            "the workers did not consume every event: {} of {EVENTS}; their logs:\n{}",
            recorded().len(),
            worker_logs()
        );
        for w in &mut workers {
            assert!(
                w.try_wait().expect("try_wait").is_none(),
                "a worker exited; logs:\n{}",
                worker_logs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every delivery acknowledged: nothing pending, nothing waiting for an ack.
    let url = nats.url();
    ctx.wait_for("the consumer to have nothing pending", || {
        rt().block_on(async {
            let client = async_nats::connect(&url).await.expect("connect");
            let stream = jetstream::new(client)
                .get_stream("SGEVENTS")
                .await
                .expect("stream");
            let mut consumer: consumer::PullConsumer =
                stream.get_consumer("pool").await.expect("the durable");
            let info = consumer.info().await.expect("info");
            info.num_pending == 0 && info.num_ack_pending == 0 && info.num_redelivered == 0
        })
    });
    for w in &mut workers {
        signal(w.id(), nix::sys::signal::Signal::SIGTERM);
    }
    for w in &mut workers {
        let status = w.wait().expect("reaped");
        assert!(
            status.success(),
            "a worker ended badly; logs:\n{}",
            worker_logs()
        );
    }
    let ids = recorded();
    let distinct: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(ids.len(), distinct.len(), "no event consumed twice");
    assert_eq!(distinct, (1..=EVENTS).collect(), "every event consumed");
    ctx.stop_daemon();
}

#[test]
fn nats_down_at_start_is_waited_for() {
    let mut ctx = Ctx::new();
    let mut nats = Nats::stopped(&ctx.path("nats"));
    ctx.append(1..=100);
    ctx.config(&format!("url = {:?}, site = \"test\"", nats.url()), "");
    ctx.start();
    ctx.wait_for("the bridge to say NATS is unreachable", || {
        ctx.log().contains("is unreachable (")
    });
    nats.restart();
    ctx.wait_for("the bridge's cursor at the last event", || {
        ctx.cursor("nats") == 100
    });
    ctx.stop_daemon();
    assert_every_event_once(&nats, 100);
    let log = ctx.log();
    assert_eq!(
        log.matches("is unreachable (").count(),
        1,
        "one warning:\n{log}"
    );
    assert!(log.contains("is back: publishing again"), "{log}");
}

#[test]
fn a_missing_stream_is_fatal_and_an_uncovered_subject_is_termed() {
    // create_stream = false and no stream: fatal, naming the stream; the position is kept.
    let mut ctx = Ctx::new();
    let nats = Nats::start(&ctx.path("nats"));
    ctx.append(1..=10);
    ctx.config(
        &format!(
            "url = {:?}, site = \"test\", create_stream = false",
            nats.url()
        ),
        "",
    );
    ctx.start();
    ctx.wait_for("the bridge to be disabled", || {
        ctx.plugin("nats").is_some_and(|p| p.0 == "disabled")
    });
    let (_, cursor, _, reason) = ctx.plugin("nats").expect("row");
    let reason = reason.unwrap_or_default();
    assert!(
        reason.contains("stream `SGEVENTS` does not exist") && reason.contains("hint: "),
        "{reason}"
    );
    assert_eq!(cursor.unwrap_or(0), 0, "the position is kept");
    ctx.stop_daemon();

    // A stream that does not store the bridge's subjects: each event is termed, with why.
    let url = nats.url();
    rt().block_on(async {
        let client = async_nats::connect(&url).await.expect("connect");
        jetstream::new(client)
            .create_stream(jetstream::stream::Config {
                name: "SGEVENTS".into(),
                subjects: vec!["other.>".into()],
                ..Default::default()
            })
            .await
            .expect("stream created");
    });
    let mut ctx = Ctx::new();
    ctx.append(1..=10);
    ctx.config(
        &format!(
            "url = {:?}, site = \"test\", create_stream = false",
            nats.url()
        ),
        "",
    );
    ctx.start();
    ctx.wait_for("the bridge's cursor at the last event", || {
        ctx.cursor("nats") == 10
    });
    ctx.stop_daemon();
    let db =
        Connection::open_with_flags(ctx.path("var/state.db"), OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("state.db");
    let mut stmt = db
        .prepare("SELECT event_id, last_error FROM failed_events WHERE plugin = 'nats' ORDER BY event_id")
        .expect("query");
    let failed: Vec<(i64, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .map(Result::unwrap)
        .collect();
    assert_eq!(failed.len(), 10, "every event failed once: {failed:?}");
    assert!(
        failed[0].1.contains(
            "subject `sgevents.test.Shotgun_Shot_New` is not stored by stream `SGEVENTS`"
        ),
        "{failed:?}"
    );
    assert_eq!(stored(&nats), 0);
}
