//! Benchmark of the ShotGrid source catching up (issue 14): events/s journaling 50,000 events from
//! the fake site with 0, 50 and 150 ms added to every answer, at `fetch_concurrency` 1, 2, 4 and 8,
//! each next to a bare sequential client measured in the same run on the same site (sign in, then
//! `_search` after `_search`, nothing else); the daemon's peak RSS (VmHWM) while catching up with
//! the defaults; requests an idle site gets per hour with the defaults; and the time from an event
//! appearing on the site to its delivery to a plugin on a quiet site, polling only and with
//! webhooks (`fetch_interval = "30s"`, the fake site's signed deliveries).
//!
//! Run with `cargo bench -p sgevents --bench catchup`; it prints Markdown tables. About 14 minutes.
//! `cargo bench -p sgevents --bench catchup -- --latency 0 --concurrency 1 --catch-up-only` runs
//! part of the first table (each flag may be repeated; the defaults are every value); `--runs N`
//! takes the median of N runs instead of 3.

// A benchmark's job is to print its results.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::time::{Duration, Instant};

use sgevents_tests::fake_site::{FakeSite, SiteOptions};

mod site;

use site::{
    ARRIVAL_PLUGIN, KEY, bare_fetch, build, journal_count, median, now_ns, percentile, spawn, stop,
    wait, wait_arrival, wait_journaled,
};

const EVENTS: usize = 50_000;
const RUNS: usize = 3;
const LATENCY_SAMPLES: usize = 40;
const LATENCIES_MS: [u64; 3] = [0, 50, 150];
const CONCURRENCY: [usize; 4] = [1, 2, 4, 8];

/// Which cells of the catch-up table to measure, and whether to measure anything else.
struct Selection {
    latencies_ms: Vec<u64>,
    concurrency: Vec<usize>,
    catch_up_only: bool,
    runs: usize,
}

/// Reads `--latency MS`, `--concurrency N` (each repeatable), `--runs N` and `--catch-up-only`;
/// cargo's own
/// `--bench` is ignored.
fn selection() -> Selection {
    let mut chosen = Selection {
        latencies_ms: Vec::new(),
        concurrency: Vec::new(),
        catch_up_only: false,
        runs: RUNS,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| -> u64 {
            let v = args.next().unwrap_or_default();
            v.parse()
                .unwrap_or_else(|_| panic!("`{flag}` takes a number, not `{v}`"))
        };
        match arg.as_str() {
            "--latency" => chosen.latencies_ms.push(value("--latency")),
            "--concurrency" => chosen.concurrency.push(value("--concurrency") as usize),
            "--catch-up-only" => chosen.catch_up_only = true,
            "--runs" => chosen.runs = value("--runs").max(1) as usize,
            "--bench" => {}
            other => panic!(
                "unknown argument `{other}`\nhint: --latency MS, --concurrency N, --runs N, --catch-up-only"
            ),
        }
    }
    if chosen.latencies_ms.is_empty() {
        chosen.latencies_ms = LATENCIES_MS.to_vec();
    }
    if chosen.concurrency.is_empty() {
        chosen.concurrency = CONCURRENCY.to_vec();
    }
    chosen
}

fn main() {
    let chosen = selection();
    let sgevents = build();
    let site = FakeSite::start(SiteOptions {
        script_key: KEY.into(),
        ..SiteOptions::default()
    })
    .expect("fake site");
    let ids = site.append(EVENTS);
    let newest = *ids.last().expect("events");

    let columns: Vec<String> = chosen
        .concurrency
        .iter()
        .map(|c| format!("concurrency {c}"))
        .collect();
    println!(
        "| added latency | bare sequential client | {} | peak RSS, concurrency 4 (VmHWM) |",
        columns.join(" | ")
    );
    println!("|---|---|{}---|", "---|".repeat(columns.len()));
    for &latency in &chosen.latencies_ms {
        site.set_latency(Duration::from_millis(latency));
        let mut bare = Vec::new();
        for _ in 0..chosen.runs {
            let start = Instant::now();
            assert_eq!(bare_fetch(&site.url(), newest), EVENTS);
            bare.push(EVENTS as f64 / start.elapsed().as_secs_f64());
        }
        let bare = median(&mut bare);
        let mut cells = vec![format!("{bare:.0} events/s")];
        let mut peak = Vec::new();
        for &concurrency in &chosen.concurrency {
            let mut rates = Vec::new();
            for _ in 0..chosen.runs {
                let (rate, hwm) = catch_up(&sgevents, &site.url(), concurrency);
                rates.push(rate);
                if concurrency == 4 {
                    peak.push(hwm);
                }
            }
            let rate = median(&mut rates);
            cells.push(format!("{rate:.0} ({:.2})", rate / bare));
        }
        let peak = if peak.is_empty() {
            "-".to_owned()
        } else {
            format!("{:.1} MiB", median(&mut peak) / 1024.0)
        };
        println!("| {latency} ms | {} | {peak} |", cells.join(" | "));
    }
    if chosen.catch_up_only {
        return;
    }

    // Idle: requests in a minute once the poller has settled, with the defaults, per hour.
    site.set_latency(Duration::ZERO);
    let idle = FakeSite::start(SiteOptions {
        script_key: KEY.into(),
        ..SiteOptions::default()
    })
    .expect("fake site");
    idle.append(10);
    let dir = tempfile::tempdir().expect("temp dir");
    config(dir.path(), &idle.url(), "", "");
    let daemon = spawn(&sgevents, dir.path());
    wait("the idle daemon to read the site", || {
        journal_count(dir.path()) >= 10
    });
    std::thread::sleep(Duration::from_secs(15));
    let before = idle.stats().searches;
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(60));
    let per_hour = (idle.stats().searches - before) as f64 * 3600.0 / start.elapsed().as_secs_f64();
    stop(daemon);
    println!();
    println!(
        "| idle site, defaults (fetch_interval 5s, min_fetch_interval 250ms) | {per_hour:.0} requests per hour |"
    );

    // Latency: one event at a time on a quiet site, to a plugin that notes when it got it.
    println!();
    println!(
        "| event appears on the site → delivered to a plugin ({LATENCY_SAMPLES} samples) | median | p95 |"
    );
    println!("|---|---|---|");
    for fetch_interval in ["1s", "5s"] {
        let (p50, p95) = delivery_latency(&sgevents, fetch_interval, false);
        println!("| fetch_interval {fetch_interval}, no webhooks | {p50:.0} ms | {p95:.0} ms |");
    }
    let (p50, p95) = delivery_latency(&sgevents, "30s", true);
    println!("| fetch_interval 30s, webhooks | {p50:.0} ms | {p95:.0} ms |");
}

/// Catches up the whole site with `concurrency`: events/s and the daemon's VmHWM (KiB).
fn catch_up(sgevents: &Path, url: &str, concurrency: usize) -> (f64, f64) {
    let dir = tempfile::tempdir().expect("temp dir");
    config(
        dir.path(),
        url,
        &format!("fetch_concurrency = {concurrency}"),
        "",
    );
    let start = Instant::now();
    let daemon = spawn(sgevents, dir.path());
    wait_journaled(dir.path(), EVENTS as i64);
    let elapsed = start.elapsed();
    let hwm = peak_kib(daemon.id());
    stop(daemon);
    (EVENTS as f64 / elapsed.as_secs_f64(), hwm)
}

fn peak_kib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0)
}

/// Median and p95 of the time from an event's append on a quiet site to its plugin; with
/// `webhooks`, the site sends a signed delivery for each event.
fn delivery_latency(sgevents: &Path, fetch_interval: &str, webhooks: bool) -> (f64, f64) {
    let site = FakeSite::start(SiteOptions {
        script_key: KEY.into(),
        ..SiteOptions::default()
    })
    .expect("fake site");
    site.append(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let arrivals = dir.path().join("arrivals");
    let plugin = dir.path().join("arrival.py");
    std::fs::write(&plugin, ARRIVAL_PLUGIN).expect("plugin");
    let table = format!(
        "[plugin.arrival]\ncommand = [\"python3\", {:?}]\nconfig = {{ out = {:?} }}\n",
        plugin.display().to_string(),
        arrivals.display().to_string()
    );
    let mut source = format!("fetch_interval = \"{fetch_interval}\"");
    let mut http = String::new();
    if webhooks {
        std::fs::write(dir.path().join("hook"), "bench-hook").expect("secret");
        source.push_str("\nwebhook_secret_file = \"hook\"");
        // A free port for the listener, so that the site knows where to deliver.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        http = format!("[http]\nlisten = \"127.0.0.1:{port}\"\n\n");
        site.set_webhook(
            &format!("http://127.0.0.1:{port}/webhooks/shotgrid"),
            "bench-hook",
        );
    }
    config(dir.path(), &site.url(), &source, &format!("{http}{table}"));
    let daemon = spawn(sgevents, dir.path());
    wait("the plugin to run", || {
        std::fs::read_to_string(&arrivals).is_ok_and(|t| !t.is_empty())
    });
    let mut cycle = humantime::parse_duration(fetch_interval).expect("a duration");
    if webhooks {
        // Polls follow deliveries, not the cycle: a second between events is enough.
        cycle = Duration::from_secs(1);
    }
    let mut latencies = Vec::new();
    let mut rng = fastrand::Rng::with_seed(11);
    for _ in 0..LATENCY_SAMPLES {
        // A random moment within the longest poll cycle, as real changes are.
        std::thread::sleep(Duration::from_millis(rng.u64(0..cycle.as_millis() as u64)));
        let appeared = now_ns();
        let id = site.append(1)[0];
        let arrived = wait_arrival(&arrivals, id);
        latencies.push((arrived - appeared) as f64 / 1e6);
    }
    stop(daemon);
    let p50 = median(&mut latencies);
    (p50, percentile(&latencies, 0.95))
}

fn config(dir: &Path, url: &str, source_extra: &str, plugins: &str) {
    std::fs::write(dir.join("key"), KEY).expect("key");
    let text = format!(
        "[daemon]\nstate_dir = \"var\"\n\n[source]\nkind = \"shotgrid\"\nurl = \"{url}\"\nscript_name = \"sgevents\"\n\
         script_key_file = \"key\"\nstart_at = \"earliest\"\n{source_extra}\n\n{plugins}"
    );
    std::fs::write(dir.join("sgevents.toml"), text).expect("config");
}
