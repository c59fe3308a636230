//! Benchmarks of the ShotGrid source against the fake site (`sgevents_tests::fake_site`), on
//! 127.0.0.1: how fast `sgevents` journals a site's event log with `batch_size = 500`, how many
//! requests that takes per 1,000 events, and the time from an event appearing on the site to its
//! delivery to a plugin with `fetch_interval = "1s"`.
//!
//! The baseline, measured in the same run, is the site itself: a plain HTTP client in this process
//! that signs in and pages through the same events with the same requests, as fast as it can.
//!
//! Run with `cargo bench -p sgevents --bench shotgrid`; it prints a Markdown table.

// A benchmark's job is to print its results.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::time::{Duration, Instant};

use sgevents_tests::fake_site::{FakeSite, SiteOptions};

mod site;

use site::{
    ARRIVAL_PLUGIN, KEY, bare_fetch, build, median, now_ns, percentile, spawn, stop, wait,
    wait_arrival, wait_journaled,
};

const EVENTS: usize = 50_000;
const RUNS: usize = 3;
const LATENCY_SAMPLES: usize = 40;

fn main() {
    let sgevents = build();
    let mut rows = Vec::new();

    let site = FakeSite::start(SiteOptions {
        script_key: KEY.into(),
        ..SiteOptions::default()
    })
    .expect("fake site");
    let ids = site.append(EVENTS);
    let newest = *ids.last().expect("events");

    let mut baseline = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let fetched = bare_fetch(&site.url(), newest);
        assert_eq!(fetched, EVENTS, "the baseline read every event");
        baseline.push(EVENTS as f64 / start.elapsed().as_secs_f64());
    }
    let base = median(&mut baseline);

    let mut ingest = Vec::new();
    let mut per_thousand = Vec::new();
    for _ in 0..RUNS {
        let dir = tempfile::tempdir().expect("temp dir");
        config(dir.path(), &site.url(), "1s", "");
        let before = site.stats().searches;
        let start = Instant::now();
        let daemon = spawn(&sgevents, dir.path());
        wait_journaled(dir.path(), EVENTS as i64);
        let elapsed = start.elapsed();
        stop(daemon);
        ingest.push(EVENTS as f64 / elapsed.as_secs_f64());
        per_thousand.push((site.stats().searches - before) as f64 * 1000.0 / EVENTS as f64);
    }
    let ingest_median = median(&mut ingest);
    rows.push(format!(
        "| bare fetch of the site (baseline) | {base:.0} events/s | {:.1} requests per 1,000 events | 1.00 |",
        1000.0 / 500.0
    ));
    rows.push(format!(
        "| `sgevents` journaling, batch_size 500, durable commits | {ingest_median:.0} events/s | {:.1} requests per 1,000 events | {:.2} |",
        median(&mut per_thousand),
        ingest_median / base
    ));

    // Latency: one event at a time on a quiet site, to a plugin that notes when it got it.
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
    config(dir.path(), &site.url(), "1s", &table);
    let daemon = spawn(&sgevents, dir.path());
    wait("the plugin to run", || {
        std::fs::read_to_string(&arrivals).is_ok_and(|t| !t.is_empty())
    });
    let mut latencies = Vec::new();
    let mut rng = fastrand::Rng::with_seed(11);
    for _ in 0..LATENCY_SAMPLES {
        // A random moment within the poll cycle, as real changes are.
        std::thread::sleep(Duration::from_millis(rng.u64(0..1000)));
        let appeared = now_ns();
        let id = site.append(1)[0];
        let arrived = wait_arrival(&arrivals, id);
        latencies.push((arrived - appeared) as f64 / 1e6);
    }
    stop(daemon);
    let p50 = median(&mut latencies);
    let p95 = percentile(&latencies, 0.95);
    rows.push(format!(
        "| event appears on the site → delivered to a plugin, fetch_interval 1s ({LATENCY_SAMPLES} samples) | median {p50:.0} ms | p95 {p95:.0} ms | |"
    ));

    println!("| measurement | result | | ratio to baseline |");
    println!("|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}

fn config(dir: &Path, url: &str, fetch_interval: &str, plugins: &str) {
    std::fs::write(dir.join("key"), KEY).expect("key");
    let text = format!(
        "[daemon]\nstate_dir = \"var\"\n\n[source]\nkind = \"shotgrid\"\nurl = \"{url}\"\nscript_name = \"sgevents\"\n\
         script_key_file = \"key\"\nbatch_size = 500\nfetch_interval = \"{fetch_interval}\"\nstart_at = \"earliest\"\n\n{plugins}"
    );
    std::fs::write(dir.join("sgevents.toml"), text).expect("config");
}
