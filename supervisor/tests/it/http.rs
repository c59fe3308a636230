//! The HTTP listener (`[http]`): `/healthz` and `/readyz` on a real daemon, the address it reports,
//! the listener off, a non-loopback address refused without `allow_remote`, a taken port.
//!
//! [`get`] is a plain HTTP/1.1 GET over a `TcpStream`, for every test that reads the listener.

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::Value;

use crate::control::LIVE;
use crate::{Ctx, GUARD, assert_success, wait_for};

/// An answer: its status code, its headers (names in lower case, in order) and its body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Answer {
    /// The first header named `name` (lower case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}):\n{}", self.body))
    }
}

/// `GET path` on `addr` (`127.0.0.1:PORT`), one request on its own connection.
pub(crate) fn get(addr: &str, path: &str) -> Answer {
    try_get(addr, path).unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"))
}

/// [`get`], or why it failed.
pub(crate) fn try_get(addr: &str, path: &str) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(GUARD))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no end of headers in {text:?}")))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// The body of a chunked answer.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size =
            usize::from_str_radix(size.split(';').next().unwrap_or("0").trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

impl Ctx {
    /// The address the running daemon's HTTP listener bound, from `status --json`.
    pub(crate) fn http_addr(&self) -> String {
        let mut addr = String::new();
        wait_for("the daemon's HTTP address in `status --json`", || {
            let out = self
                .sgevents(&["status", "--json"])
                .output()
                .expect("status");
            let status: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            match status["daemon"]["http"].as_str() {
                Some(a) => {
                    addr = a.to_owned();
                    true
                }
                None => false,
            }
        });
        addr
    }
}

#[test]
fn readyz_waits_for_the_first_poll_and_every_handshake_and_healthz_is_ok_meanwhile() {
    let ctx = Ctx::new();
    // The events file does not exist yet: the source cannot complete a poll.
    let hold = ctx.path("register.go");
    let mut overrides = LIVE.to_vec();
    overrides.push(("handshake_timeout = \"2s\"", "handshake_timeout = \"60s\""));
    let held = format!("register_after = {:?}", hold.display().to_string());
    ctx.config(
        &overrides,
        &format!(
            "{}{}",
            ctx.test_plugin("quick", ""),
            ctx.test_plugin("held", &held)
        ),
    );
    let daemon = ctx.start();
    ctx.started.borrow_mut().push(daemon.id());
    let addr = ctx.http_addr();
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "the port the system chose: {addr}"
    );
    assert!(
        ctx.log()
            .contains(&format!("http listener on http://{addr}")),
        "the address is logged:\n{}",
        ctx.log()
    );

    let health = get(&addr, "/healthz");
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(health.header("content-type"), Some("application/json"));
    assert_eq!(health.json()["healthy"], true);

    let ready = get(&addr, "/readyz");
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.header("content-type"), Some("application/json"));
    let why = ready.json();
    assert_eq!(why["ready"], false);
    let waits = why["waiting_for"].to_string();
    assert!(waits.contains("source: no poll completed yet"), "{why}");
    assert!(waits.contains("plugin `held`"), "{why}");

    // The source's first poll: only the held plugin is waited for.
    ctx.events(1..=3);
    wait_for("readyz to wait for the held plugin only", || {
        let w = get(&addr, "/readyz").json()["waiting_for"].to_string();
        !w.contains("source") && !w.contains("`quick`")
    });
    let ready = get(&addr, "/readyz");
    assert_eq!(ready.status, 503);
    assert!(
        ready.json()["waiting_for"]
            .to_string()
            .contains("plugin `held`: no handshake finished yet (state starting)"),
        "{}",
        ready.body
    );

    std::fs::write(&hold, "").expect("release the held plugin");
    wait_for("readyz to answer 200", || {
        get(&addr, "/readyz").status == 200
    });
    let ready = get(&addr, "/readyz");
    assert_eq!(ready.json(), serde_json::json!({"ready": true}));
    assert_eq!(get(&addr, "/healthz").status, 200);
    assert_eq!(get(&addr, "/nothing-here").status, 404);

    ctx.stop(daemon);
    assert!(
        TcpStream::connect(&addr).is_err(),
        "the listener stopped with the daemon"
    );
    let status: Value = serde_json::from_slice(
        &ctx.sgevents(&["status", "--json"])
            .output()
            .expect("status")
            .stdout,
    )
    .expect("status json");
    assert_eq!(status["daemon"]["http"], Value::Null);
}

#[test]
fn listen_empty_turns_the_listener_off() {
    let ctx = Ctx::new();
    ctx.events(1..=2);
    ctx.config(
        &[("listen = \"127.0.0.1:0\"", "listen = \"\"")],
        &ctx.test_plugin("a", ""),
    );
    let out = ctx.run();
    assert_success(&out);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains("http listener"), "{log}");
    let http: Option<String> = ctx
        .db()
        .query_row("SELECT http_listen FROM daemon", [], |r| r.get(0))
        .expect("daemon row");
    assert_eq!(http, None);
}

#[test]
fn a_remote_address_needs_allow_remote_and_is_logged() {
    let ctx = Ctx::new();
    ctx.events(1..=2);
    ctx.config(
        &[("listen = \"127.0.0.1:0\"", "listen = \"0.0.0.0:0\"")],
        &ctx.test_plugin("a", ""),
    );
    let out = ctx.run();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`http.listen` = `\"0.0.0.0:0\"`: not a loopback address")
            && err.contains("hint: ")
            && err.contains("allow_remote = true"),
        "{err}"
    );
    assert!(
        !ctx.path("var/state.db").exists(),
        "refused before anything started"
    );

    ctx.config(
        &[(
            "listen = \"127.0.0.1:0\"",
            "listen = \"0.0.0.0:0\"\nallow_remote = true",
        )],
        &ctx.test_plugin("a", ""),
    );
    let out = ctx.run();
    assert_success(&out);
    let log = String::from_utf8_lossy(&out.stderr);
    let line = log
        .lines()
        .find(|l| l.contains("http listener on http://0.0.0.0:"))
        .unwrap_or_else(|| panic!("the remote address is logged:\n{log}"));
    assert!(
        line.contains("WARN") && line.contains("open to other machines"),
        "{line}"
    );
}

#[test]
fn a_taken_port_stops_the_start_with_a_hint() {
    let ctx = Ctx::new();
    ctx.events(1..=2);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = taken.local_addr().expect("address").to_string();
    ctx.config(
        &[("listen = \"127.0.0.1:0\"", &format!("listen = \"{addr}\""))],
        &ctx.test_plugin("a", ""),
    );
    let out = ctx.run();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen for HTTP on `{addr}`"))
            && err.contains("hint: another program (or another sgevents) uses that port"),
        "{err}"
    );
    assert!(ctx.records("a").is_empty(), "nothing was delivered");
    drop(taken);
    // Held only by the test: free again, the same configuration starts.
    let out = ctx.run();
    assert_success(&out);
}

#[test]
fn oversized_headers_and_slow_clients_are_cut_off_while_others_are_served() {
    let ctx = Ctx::new();
    ctx.config(LIVE, &ctx.test_plugin("a", ""));
    ctx.events(1..=2);
    let daemon = ctx.start();
    ctx.started.borrow_mut().push(daemon.id());
    let addr = ctx.http_addr();

    // A client that sends half a request and then nothing.
    let mut slow = TcpStream::connect(&addr).expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .expect("half a request");
    // Others are served meanwhile.
    assert_eq!(get(&addr, "/healthz").status, 200);

    // Headers over 16 KiB: refused with 431, or the connection closed.
    let mut big = TcpStream::connect(&addr).expect("connect");
    big.set_read_timeout(Some(GUARD)).expect("timeout");
    let filler = "x".repeat(32 * 1024);
    let _ = write!(
        big,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: {filler}\r\n\r\n"
    );
    let mut answer = Vec::new();
    let _ = big.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );

    // The slow client is closed by the daemon (after 5 s), not served.
    slow.set_read_timeout(Some(GUARD)).expect("timeout");
    let mut rest = Vec::new();
    let read = slow.read_to_end(&mut rest);
    assert!(
        read.is_ok(),
        "closed by the daemon within the guard: {read:?}"
    );
    let rest = String::from_utf8_lossy(&rest);
    assert!(!rest.contains("200 OK"), "{rest}");
    assert_eq!(get(&addr, "/healthz").status, 200);
    ctx.stop(daemon);
}
