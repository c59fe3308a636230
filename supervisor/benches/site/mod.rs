//! What the ShotGrid source's benchmarks (`shotgrid.rs`, `catchup.rs`) share: the release build,
//! running and stopping the daemon, reading its journal, the bare client they are measured
//! against, the arrival-timing plugin, and the statistics.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The script key the benchmarks' fake sites accept.
pub(crate) const KEY: &str = "bench-key";

/// Builds the release binary and returns its path.
pub(crate) fn build() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "sgevents",
            "--bin",
            "sgevents",
        ])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build failed");
    let exe = std::env::current_exe().expect("bench executable");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/release")
        .join("sgevents")
}

pub(crate) fn spawn(sgevents: &Path, dir: &Path) -> Child {
    Command::new(sgevents)
        .args(["-c", "sgevents.toml", "run"])
        .current_dir(dir)
        .env("SGEVENTS_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sgevents starts")
}

pub(crate) fn stop(mut daemon: Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = daemon.wait();
}

pub(crate) fn journal_count(dir: &Path) -> i64 {
    let path = dir.join("var/state.db");
    let Ok(db) =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return 0;
    };
    db.query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap_or(0)
}

/// Waits until the daemon in `dir` has journaled `events` events, from the moment its state
/// database exists. One connection, asking for the newest `seq` (a fresh journal numbers its
/// events from 1): the wait costs next to no CPU, which the daemon and the site share with it.
/// The count is checked once at the end.
pub(crate) fn wait_journaled(dir: &Path, events: i64) {
    let path = dir.join("var/state.db");
    let mut db = None;
    wait("the journal to fill", || {
        if db.is_none() {
            db = rusqlite::Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .ok();
        }
        db.as_ref().is_some_and(|db| {
            db.query_row("SELECT max(seq) FROM events", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .ok()
            .flatten()
            .is_some_and(|seq| seq >= events)
        })
    });
    assert_eq!(journal_count(dir), events, "every event journaled once");
}

pub(crate) fn wait(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The same work as the daemon's poller, with nothing else: sign in, then page through every
/// event above 0 in batches of 500. Returns how many events it read.
pub(crate) fn bare_fetch(url: &str, newest: i64) -> usize {
    let addr = url.trim_start_matches("http://");
    let form = format!("grant_type=client_credentials&client_id=sgevents&client_secret={KEY}");
    let (_, body) = http(
        addr,
        "POST",
        "/api/v1/auth/access_token",
        "application/x-www-form-urlencoded",
        None,
        &form,
    );
    let token: serde_json::Value = serde_json::from_str(&body).expect("a token");
    let token = token["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    let mut high = 0i64;
    let mut read = 0;
    while high < newest {
        let query = serde_json::json!({
            "filters": [["id", "greater_than", high]],
            "fields": ["event_type", "attribute_name", "meta", "entity", "user", "project", "session_uuid", "created_at", "description"],
            "sort": "id", "page": {"size": 500, "number": 1},
        });
        let (status, body) = http(
            addr,
            "POST",
            "/api/v1/entity/event_log_entries/_search",
            "application/vnd+shotgun.api3_array+json",
            Some(&token),
            &query.to_string(),
        );
        assert_eq!(status, 200, "{body}");
        let page: serde_json::Value = serde_json::from_str(&body).expect("a page");
        let rows = page["data"].as_array().expect("data");
        read += rows.len();
        high = rows.last().and_then(|r| r["id"].as_i64()).expect("rows");
    }
    read
}

/// One HTTP/1.1 request on a new connection; returns the status and the body.
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    content_type: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: {content_type}\r\nAccept: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read");
    let text = String::from_utf8_lossy(&answer);
    let (head, rest) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    (status, body)
}

pub(crate) fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    out
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("numbers"));
    v[v.len() / 2]
}

pub(crate) fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).expect("numbers"));
    s[((s.len() as f64 - 1.0) * p).round() as usize]
}

/// A plugin with no SDK that appends `event_id nanoseconds` for each event it gets.
pub(crate) const ARRIVAL_PLUGIN: &str = r#"import json, sys, time
out = None
for line in sys.stdin:
    m = json.loads(line)
    if m["type"] == "hello":
        out = open(m["config"]["out"], "a", buffering=1)
        print(json.dumps({"type": "register", "protocol": 1, "subscriptions": [{"name": "all", "event_types": ["*"]}]}), flush=True)
    elif m["type"] == "event":
        out.write("%d %d\n" % (m["event_id"], time.time_ns()))
        print(json.dumps({"type": "ack", "event_id": m["event_id"]}), flush=True)
    elif m["type"] == "ping":
        print(json.dumps({"type": "pong", "nonce": m["nonce"]}), flush=True)
"#;

pub(crate) fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos()
}

pub(crate) fn wait_arrival(file: &Path, id: i64) -> u128 {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if let Some(ns) = text.lines().find_map(|l| {
            let (i, t) = l.split_once(' ')?;
            (i.parse::<i64>().ok()? == id).then(|| t.parse::<u128>().ok())?
        }) {
            return ns;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "event {id} was not delivered"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}
