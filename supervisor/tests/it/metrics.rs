//! `GET /metrics` on a real daemon: the exposition in both formats parsed by Prometheus's own
//! Python parsers (`prometheus_client`, installed into `target/pydeps/` like `shotgun_api3`), its
//! values checked against the state database after the run, the ShotGrid source's metrics against
//! the fake site, the Grafana dashboard's queries against the exposition, and a burst of 5,000
//! connections while events flow.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::SystemTime;

use nix::sys::signal::Signal;
use serde_json::Value;
use sgevents_tests::fake_site::{FakeSite, python_with_prometheus_client};

use crate::control::LIVE;
use crate::http::get;
use crate::site::{PLUGINS, site};
use crate::{Ctx, GUARD, root, signal, wait_for};

/// What Prometheus sends (its default `Accept`).
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Parses the two expositions with `prometheus_client`'s OpenMetrics parser and its Prometheus
/// text parser; prints `{"openmetrics": {...}, "text": {...}}`, each with the families' types and
/// every sample as `[name, labels, value]`.
const PARSE: &str = r#"
import json, math, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families as prometheus

def dump(families):
    types, samples = {}, []
    for family in families:
        types[family.name] = family.type
        for s in family.samples:
            value = s.value if math.isfinite(s.value) else str(s.value)
            samples.append([s.name, s.labels, value])
    return {"types": types, "samples": samples}

with open(sys.argv[1]) as f:
    om = dump(openmetrics(f.read()))
with open(sys.argv[2]) as f:
    text = dump(prometheus(f.read()))
print(json.dumps({"openmetrics": om, "text": text}))
"#;

/// `GET /metrics` with `accept` (or none): the status, the content type and the body.
fn scrape(addr: &str, accept: Option<&str>) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(GUARD)).expect("timeout");
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n"
    )
    .expect("request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("answer");
    let text = String::from_utf8(raw).expect("utf-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("headers end");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, content_type, body)
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// The value of the sample written `series` (its name and labels exactly as the daemon writes
/// them), from the raw text: for the waits, before the real parser has its say.
fn raw_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

/// Samples as the Python parser gave them.
struct Parsed {
    types: BTreeMap<String, String>,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Parsed {
    fn from(v: &Value) -> Parsed {
        let types = v["types"]
            .as_object()
            .expect("types")
            .iter()
            .map(|(k, t)| (k.clone(), t.as_str().expect("type").to_owned()))
            .collect();
        let samples = v["samples"]
            .as_array()
            .expect("samples")
            .iter()
            .map(|s| {
                let labels = s[1]
                    .as_object()
                    .expect("labels")
                    .iter()
                    .map(|(k, v)| {
                        let v = v.as_str().expect("label");
                        // A bucket's bound as a number: `1.0` in OpenMetrics is `1` in 0.0.4.
                        let v = match (k.as_str(), v.parse::<f64>()) {
                            ("le", Ok(bound)) if bound.is_finite() => bound.to_string(),
                            _ => v.to_owned(),
                        };
                        (k.clone(), v)
                    })
                    .collect();
                let value = s[2].as_f64().unwrap_or(f64::INFINITY);
                (s[0].as_str().expect("name").to_owned(), labels, value)
            })
            .collect();
        Parsed { types, samples }
    }

    /// The value of sample `name` with exactly `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|(n, l, _)| n == name && *l == want)
            .map(|(_, _, v)| *v)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
    }

    fn plugin(&self, name: &str, plugin: &str) -> f64 {
        self.value(name, &[("plugin", plugin)])
    }

    fn delivered(&self, plugin: &str, outcome: &str) -> f64 {
        self.value(
            "sgevents_plugin_deliveries_total",
            &[("plugin", plugin), ("outcome", outcome)],
        )
    }

    /// Every sample whose name starts with `prefix`, by name and labels.
    fn with_prefix(&self, prefix: &str) -> BTreeMap<String, f64> {
        self.samples
            .iter()
            .filter(|(n, _, _)| n.starts_with(prefix))
            .map(|(n, l, v)| (format!("{n}{l:?}"), *v))
            .collect()
    }

    fn names(&self) -> Vec<&str> {
        self.samples.iter().map(|(n, _, _)| n.as_str()).collect()
    }
}

/// Scrapes `addr` in both formats and parses them with `prometheus_client`.
fn parse_both(ctx: &Ctx, addr: &str) -> (Parsed, Parsed) {
    let pydeps = python_with_prometheus_client();
    let (status, content_type, openmetrics) = scrape(addr, Some(PROMETHEUS_ACCEPT));
    assert_eq!(status, 200, "{openmetrics}");
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{content_type}"
    );
    let (status, content_type, text) = scrape(addr, None);
    assert_eq!(status, 200, "{text}");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    std::fs::write(ctx.path("metrics.om"), &openmetrics).expect("write");
    std::fs::write(ctx.path("metrics.txt"), &text).expect("write");
    std::fs::write(ctx.path("parse.py"), PARSE).expect("write");
    let out = Command::new("python3")
        .arg(ctx.path("parse.py"))
        .arg(ctx.path("metrics.om"))
        .arg(ctx.path("metrics.txt"))
        .env("PYTHONPATH", &pydeps)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "prometheus_client refused the exposition:\n{}\n--- OpenMetrics:\n{openmetrics}\n--- text:\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let both: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    (
        Parsed::from(&both["openmetrics"]),
        Parsed::from(&both["text"]),
    )
}

fn stop(ctx: &Ctx, mut daemon: std::process::Child) {
    signal(&daemon, Signal::SIGTERM);
    let status = daemon.wait().expect("exit");
    assert!(status.success(), "{}", ctx.log());
}

fn count(ctx: &Ctx, sql: &str) -> f64 {
    ctx.db()
        .query_row(sql, [], |r| r.get::<_, Option<i64>>(0))
        .expect(sql)
        .unwrap_or(0) as f64
}

#[test]
fn the_exposition_parses_with_prometheus_parsers_and_matches_the_state_database() {
    let ctx = Ctx::new();
    ctx.events(1..=200);
    let plugins = [
        // Floods stderr over its `log_rate`: the lines dropped are counted.
        ctx.test_plugin("acks", "stderr_flood = 300")
            .replace("\nconfig", "\nlog_rate = 10\nconfig"),
        // Nacks three events until they fail.
        ctx.test_plugin("nacks", "nack_at = [10, 20, 30]")
            .replace("\nconfig", "\nmax_attempts = 3\nconfig"),
        // Crashes twice on event 50, then goes on.
        ctx.test_plugin("crashes", "crash_at = 50, crash_times = 2"),
    ]
    .concat();
    ctx.config(LIVE, &plugins);
    let daemon = ctx.start();
    let addr = ctx.http_addr();
    let names = ["acks", "nacks", "crashes"];
    let series = |name: &str, plugin: &str| format!("{name}{{plugin=\"{plugin}\"}}");
    // Caught up and quiet: every plugin running with nothing in flight or left, and every line the
    // flood wrote either logged or counted as dropped.
    wait_for("every plugin caught up, as /metrics says", || {
        let (_, _, text) = scrape(&addr, None);
        let v = |name: &str, plugin: &str| raw_value(&text, &series(name, plugin));
        let relayed = ctx.log().matches("flood line ").count() as f64;
        names.iter().all(|p| {
            v("sgevents_plugin_lag_events", p) == Some(0.0)
                && v("sgevents_plugin_in_flight", p) == Some(0.0)
                && v("sgevents_plugin_up", p) == Some(1.0)
        }) && v("sgevents_plugin_failed_events", "nacks") == Some(3.0)
            && v("sgevents_plugin_restarts_total", "crashes") == Some(2.0)
            && v("sgevents_plugin_log_lines_dropped_total", "acks")
                .is_some_and(|d| d + relayed == 300.0)
    });
    let (m, text) = parse_both(&ctx, &addr);
    let relayed = ctx.log().matches("flood line ").count() as f64;
    stop(&ctx, daemon);

    // Metric types as Prometheus reads them.
    for (family, kind) in [
        ("sgevents_plugin_deliveries", "counter"),
        ("sgevents_plugin_restarts", "counter"),
        ("sgevents_plugin_delivery_duration_seconds", "histogram"),
        ("sgevents_store_commit_duration_seconds", "histogram"),
        ("sgevents_plugin_state", "gauge"),
        ("sgevents_journal_events", "gauge"),
        ("sgevents_build", "info"),
        ("process_cpu_seconds", "counter"),
        ("process_resident_memory_bytes", "gauge"),
    ] {
        assert_eq!(
            m.types.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }

    // The journal and the source against the database.
    assert_eq!(
        m.value("sgevents_journal_events", &[]),
        count(&ctx, "SELECT count(*) FROM events")
    );
    assert_eq!(
        m.value("sgevents_journal_head_seq", &[]),
        count(&ctx, "SELECT MAX(seq) FROM events")
    );
    assert_eq!(
        m.value("sgevents_source_last_event_id", &[]),
        count(&ctx, "SELECT last_event_id FROM source_state")
    );
    assert_eq!(
        m.value("sgevents_source_gaps_open", &[]),
        count(&ctx, "SELECT count(*) FROM source_gaps")
    );
    assert!(m.value("sgevents_store_commit_duration_seconds_count", &[]) >= 1.0);
    // Every event was created at 2026-11-02T10:00:00Z.
    let created = humantime::parse_rfc3339("2026-11-02T10:00:00Z").expect("time");
    let age = SystemTime::now()
        .duration_since(created)
        .expect("the past")
        .as_secs_f64();
    let lag = m.value("sgevents_source_lag_seconds", &[]);
    assert!((age - lag).abs() < 600.0, "lag {lag}, age {age}");

    // Each plugin against its row, its failed events and what it recorded.
    let events = count(&ctx, "SELECT count(*) FROM events");
    for p in names {
        let row = |sql: &str| count(&ctx, &sql.replace("$P", &format!("'{p}'")));
        assert_eq!(
            m.plugin("sgevents_plugin_lag_events", p),
            row("SELECT lag FROM plugin_lag WHERE name = $P"),
            "{p}"
        );
        assert_eq!(
            m.plugin("sgevents_plugin_failed_events", p),
            row("SELECT failed FROM plugin_lag WHERE name = $P"),
            "{p}"
        );
        assert_eq!(
            m.plugin("sgevents_plugin_restarts_total", p),
            row("SELECT restarts FROM plugins WHERE name = $P"),
            "{p}"
        );
        // Every event was finished once: acked, or failed after its nacks.
        let failed = row("SELECT count(*) FROM failed_events WHERE plugin = $P");
        assert_eq!(m.delivered(p, "ack"), events - failed, "{p}");
        assert_eq!(
            m.delivered(p, "nack"),
            row("SELECT SUM(attempts) FROM failed_events WHERE plugin = $P"),
            "{p}"
        );
        assert_eq!(m.delivered(p, "term"), 0.0, "{p}");
        assert_eq!(m.delivered(p, "timeout"), 0.0, "{p}");
        let answered: f64 = ["ack", "nack", "term", "timeout"]
            .iter()
            .map(|o| m.delivered(p, o))
            .sum();
        assert_eq!(
            m.plugin("sgevents_plugin_delivery_duration_seconds_count", p),
            answered,
            "{p}"
        );
        assert_eq!(
            m.value(
                "sgevents_plugin_delivery_duration_seconds_bucket",
                &[("plugin", p), ("le", "+Inf")]
            ),
            answered,
            "{p}"
        );
        // Running when scraped (the database says `stopped` now that the daemon has stopped).
        assert_eq!(m.plugin("sgevents_plugin_up", p), 1.0, "{p}");
        for state in ["starting", "running", "backoff", "disabled", "stopped"] {
            let want = if state == "running" { 1.0 } else { 0.0 };
            assert_eq!(
                m.value("sgevents_plugin_state", &[("plugin", p), ("state", state)]),
                want,
                "{p} {state}"
            );
        }
    }
    assert_eq!(m.delivered("nacks", "nack"), 9.0);
    assert_eq!(m.delivered("crashes", "ack"), 200.0);
    assert_eq!(m.plugin("sgevents_plugin_restarts_total", "crashes"), 2.0);
    let dropped = m.plugin("sgevents_plugin_log_lines_dropped_total", "acks");
    assert!(
        dropped > 0.0 && dropped + relayed == 300.0,
        "{dropped} + {relayed}"
    );
    assert_eq!(
        m.plugin("sgevents_plugin_log_lines_dropped_total", "nacks"),
        0.0
    );

    // The build and the process.
    assert_eq!(
        m.value(
            "sgevents_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert!(m.value("process_resident_memory_bytes", &[]) > 1e6);
    assert!(m.value("process_open_fds", &[]) > 3.0);
    assert!(m.value("process_cpu_seconds_total", &[]) > 0.0);
    assert!(m.value("process_start_time_seconds", &[]) > 1.7e9);

    // The Prometheus text format says the same of the plugins and the journal.
    for prefix in ["sgevents_plugin_", "sgevents_journal_"] {
        assert_eq!(m.with_prefix(prefix), text.with_prefix(prefix), "{prefix}");
    }
}

/// A configuration polling `site`, with the listener on any free port.
fn shotgrid_config(ctx: &Ctx, site: &FakeSite) {
    let rest = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n\n{PLUGINS}{}",
        ctx.test_plugin("p", "")
    );
    crate::site::shotgrid_config(ctx, site, "gap_timeout = \"10m\"", &rest);
}

/// The metric names a query of the dashboard uses.
fn dashboard_metrics() -> Vec<String> {
    let path = root().join("config/grafana-dashboard.json");
    let text = std::fs::read_to_string(&path).expect("the dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert!(dashboard["title"].is_string() && dashboard["uid"].is_string());
    assert!(dashboard["schemaVersion"].as_i64().is_some_and(|v| v >= 30));
    let mut exprs = Vec::new();
    fn walk(v: &Value, exprs: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                if let Some(e) = o.get("expr").and_then(Value::as_str) {
                    exprs.push(e.to_owned());
                }
                o.values().for_each(|v| walk(v, exprs));
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, exprs)),
            _ => {}
        }
    }
    walk(&dashboard["panels"], &mut exprs);
    assert!(exprs.len() >= 10, "{exprs:?}");
    for panel in [
        "Lag",
        "Deliveries/s",
        "Failures/s",
        "Restarts",
        "Source lag",
    ] {
        assert!(
            dashboard["panels"]
                .as_array()
                .expect("panels")
                .iter()
                .any(|p| p["title"].as_str().is_some_and(|t| t.starts_with(panel))),
            "no panel `{panel}`"
        );
    }
    let mut names: Vec<String> = Vec::new();
    for e in &exprs {
        let mut word = String::new();
        for c in e.chars().chain(std::iter::once(' ')) {
            if c.is_ascii_alphanumeric() || c == '_' {
                word.push(c);
            } else {
                if word.starts_with("sgevents_") || word.starts_with("process_") {
                    names.push(std::mem::take(&mut word));
                }
                word.clear();
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

#[test]
fn shotgrid_source_metrics_and_every_metric_the_dashboard_queries() {
    let site = site();
    site.append(5);
    let _held = site.hold(2);
    let after = site.append(5);
    let ctx = Ctx::new();
    shotgrid_config(&ctx, &site);
    let daemon = ctx.start();
    let addr = ctx.http_addr();
    let newest = *after.last().expect("ids") as f64;
    wait_for("the source journaled the visible events", || {
        let (_, _, text) = scrape(&addr, None);
        raw_value(&text, "sgevents_source_last_event_id") == Some(newest)
            && raw_value(&text, "sgevents_plugin_lag_events{plugin=\"p\"}") == Some(0.0)
    });
    let (m, _) = parse_both(&ctx, &addr);
    stop(&ctx, daemon);

    assert_eq!(m.value("sgevents_source_site_newest_event_id", &[]), newest);
    assert_eq!(m.value("sgevents_source_last_event_id", &[]), newest);
    assert_eq!(
        m.value("sgevents_source_gaps_open", &[]),
        count(&ctx, "SELECT count(*) FROM source_gaps")
    );
    assert_eq!(m.value("sgevents_source_gaps_open", &[]), 1.0);
    assert_eq!(m.value("sgevents_source_gaps_given_up_total", &[]), 0.0);
    let ok = m.value("sgevents_source_requests_total", &[("outcome", "ok")]);
    assert!(ok >= 2.0, "{ok}");
    let requests: f64 = m
        .samples
        .iter()
        .filter(|(n, _, _)| n == "sgevents_source_requests_total")
        .map(|(_, _, v)| v)
        .sum();
    // Scraped after the requests it counts: the histogram has at least as many.
    assert!(m.value("sgevents_source_request_duration_seconds_count", &[]) >= requests);

    let present = m.names();
    let missing: Vec<String> = dashboard_metrics()
        .into_iter()
        .filter(|n| !present.contains(&n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics the daemon does not expose: {missing:?}"
    );
}

#[test]
fn a_burst_of_5000_connections_neither_stalls_deliveries_nor_the_listener() {
    let ctx = Ctx::new();
    let total = 3000;
    ctx.events(1..=total);
    ctx.config(LIVE, &ctx.test_plugin("p", "slow_ms = 2"));
    let daemon = ctx.start();
    let addr = ctx.http_addr();
    let before = ctx.records("p").len();

    // 5,000 connections from 50 threads: each opens 100 and sends a request on each, then reads
    // every answer.
    let threads: Vec<_> = (0..50)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let request = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
                let mut streams = Vec::new();
                let mut refused = 0;
                for _ in 0..100 {
                    match TcpStream::connect(&addr) {
                        Ok(mut s) => {
                            let _ = s.set_read_timeout(Some(GUARD));
                            let _ = s.set_write_timeout(Some(GUARD));
                            let _ = s.write_all(request.as_bytes());
                            streams.push(s);
                        }
                        Err(_) => refused += 1,
                    }
                }
                let mut answered = 0;
                let mut closed = 0;
                for mut s in streams {
                    let mut buf = Vec::new();
                    match s.read_to_end(&mut buf) {
                        Ok(_) if buf.starts_with(b"HTTP/1.1 200") => answered += 1,
                        // Closed, reset, refused for load or timed out: it ended.
                        _ => closed += 1,
                    }
                }
                (answered, closed, refused)
            })
        })
        .collect();
    let (mut answered, mut ended) = (0, 0);
    for t in threads {
        let (a, c, r) = t.join().expect("burst thread");
        answered += a;
        ended += a + c + r;
    }
    let during = ctx.records("p").len();
    assert_eq!(ended, 5000);
    assert!(answered > 0, "no request of the burst was answered");

    // Deliveries went on through the burst, and all of them arrive.
    assert!(
        during > before || during == total as usize,
        "no delivery during the burst ({before} before, {during} after)\n{}",
        ctx.log()
    );
    wait_for("every event delivered", || {
        ctx.records("p").len() == total as usize
    });
    // The listener still answers, at once.
    let after = get(&addr, "/metrics");
    assert_eq!(after.status, 200);
    assert!(after.body.contains("sgevents_plugin_deliveries_total"));
    stop(&ctx, daemon);
}
