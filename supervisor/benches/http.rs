//! What the HTTP listener and its `/metrics` cost the daemon: `cargo bench -p sgevents --bench http`.
//!
//! A plain `main`, no harness: it builds the release `sgevents` and the Rust SDK's `noop` example,
//! works in a temporary directory, and measures
//!
//! 1. **steady state**: the daemon following a file that gains `RATE` events a second, delivered
//!    to 4 no-op plugins, for `SECONDS` seconds: its CPU time (utime + stime of `/proc/PID/stat`)
//!    over that window and its VmRSS and VmHWM at the end, with `[http] listen = ""` (off) and
//!    with the listener on and `GET /metrics` every second (as Prometheus would scrape it);
//! 2. **a burst**: the time to deliver a file of `BURST_EVENTS` events to one no-op plugin
//!    (window 1, from the daemon's spawn to its exit with `exit_when_idle`), alone and while
//!    5,000 connections ask for `/metrics` (50 threads, 100 connections each, all opened before
//!    any answer is read).
//!
//! The cases alternate (off, on, off, on...) `REPEATS` times; the report gives every run and the
//! medians, in Markdown on stdout. Sizes: `SGEVENTS_BENCH_REPEATS` (5), `SGEVENTS_BENCH_SECONDS`
//! (30), `SGEVENTS_BENCH_RATE` (200), `SGEVENTS_BENCH_BURST_EVENTS` (50000).

// A benchmark's `main` exists to print its results: stdout is the report.
#![allow(clippy::print_stdout)]

use std::fs;
use std::io::{BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The longest anything may take before the benchmark gives up.
const GUARD: Duration = Duration::from_secs(600);

fn main() {
    let var = |name: &str, default: u64| -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let repeats = var("SGEVENTS_BENCH_REPEATS", 5).max(1) as usize;
    let seconds = var("SGEVENTS_BENCH_SECONDS", 30);
    let rate = var("SGEVENTS_BENCH_RATE", 200).max(1);
    let burst_events = var("SGEVENTS_BENCH_BURST_EVENTS", 50_000).max(100) as usize;
    let tools = Tools::build();
    let tmp = tempfile::Builder::new()
        .prefix("sgevents-bench-http-")
        .tempdir()
        .expect("a temporary directory");
    let dir = tmp.path();
    eprintln!("bench: working in {}", dir.display());

    let mut steady: [Vec<Steady>; 2] = [Vec::new(), Vec::new()];
    let mut burst: [Vec<Burst>; 2] = [Vec::new(), Vec::new()];
    for round in 0..repeats {
        // `SGEVENTS_BENCH_SECONDS=0`: the burst only.
        for (i, on) in [false, true]
            .into_iter()
            .enumerate()
            .filter(|_| seconds > 0)
        {
            let run = dir.join(format!("steady-{round}-{on}"));
            let s = steady_state(&tools, &run, on, seconds, rate);
            eprintln!(
                "bench: steady, listener {}: cpu {:?}, rss {} KiB, hwm {} KiB",
                if on { "on" } else { "off" },
                s.cpu,
                s.rss_kib,
                s.hwm_kib
            );
            steady[i].push(s);
        }
        for (i, with) in [false, true].into_iter().enumerate() {
            let run = dir.join(format!("burst-{round}-{with}"));
            let b = burst_run(&tools, &run, with, burst_events);
            eprintln!(
                "bench: {burst_events} events, burst {with}: {:?}, daemon and plugin CPU {:?}, load generator CPU {:?}",
                b.took, b.daemon_cpu, b.client_cpu
            );
            burst[i].push(b);
        }
    }
    report(seconds, rate, burst_events, &steady, &burst);
}

struct Tools {
    sgevents: PathBuf,
    noop: PathBuf,
}

impl Tools {
    fn build() -> Tools {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the workspace root")
            .to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        eprintln!("bench: building sgevents and the noop example (release)");
        let out = Command::new(cargo)
            .current_dir(&root)
            .args([
                "build",
                "--release",
                "-p",
                "sgevents",
                "-p",
                "sgevents-sdk",
                "--bin",
                "sgevents",
                "--example",
                "noop",
                "--message-format=json-render-diagnostics",
            ])
            .stderr(Stdio::inherit())
            .output()
            .expect("cargo runs");
        assert!(out.status.success(), "cargo build failed: {}", out.status);
        let find = |name: &str| -> PathBuf {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
                .find_map(|m| m["executable"].as_str().map(PathBuf::from))
                .unwrap_or_else(|| panic!("cargo did not report the `{name}` executable"))
        };
        Tools {
            sgevents: find("sgevents"),
            noop: find("noop"),
        }
    }
}

/// One event line, about 600 bytes like a real `Shotgun_Task_Change`.
fn event_line(id: u64) -> String {
    format!(
        "{{\"id\":{id},\"event_type\":\"Shotgun_Task_Change\",\"attribute_name\":\"sg_status_list\",\
         \"meta\":{{\"type\":\"attribute_change\",\"attribute_name\":\"sg_status_list\",\"entity_type\":\"Task\",\
         \"entity_id\":{e},\"field_data_type\":\"status_list\",\"old_value\":\"wtg\",\"new_value\":\"ip\"}},\
         \"entity\":{{\"type\":\"Task\",\"id\":{e},\"name\":\"Animation\"}},\
         \"user\":{{\"type\":\"HumanUser\",\"id\":42,\"name\":\"Ana Reyes\"}},\
         \"project\":{{\"type\":\"Project\",\"id\":66,\"name\":\"Forest Spirits\"}},\
         \"session_uuid\":\"0d6c4f2e-6a5b-11ef-9c33-0242ac120002\",\
         \"created_at\":\"2026-11-02T10:00:00Z\",\"description\":\"Ana Reyes changed Status from wtg to ip on Task Animation\"}}\n",
        e = 1000 + id % 5000
    )
}

/// A free port on 127.0.0.1 (freed again at once: good enough for a benchmark).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn write_config(dir: &Path, tools: &Tools, listen: &str, follow: bool, plugins: usize) {
    let noop = Value::from(tools.noop.display().to_string());
    let mut text = format!(
        "[daemon]\nstate_dir = \"var\"\nexit_when_idle = {}\n\n[http]\nlisten = \"{listen}\"\n\n\
         [source]\nkind = \"jsonl\"\npath = \"events.jsonl\"\nfollow = {follow}\npoll_interval = \"20ms\"\n",
        !follow
    );
    for i in 0..plugins {
        text.push_str(&format!(
            "\n[plugin.noop{i}]\ncommand = [{noop}]\nstart_at = \"earliest\"\nconfig = {{ max_in_flight = 1 }}\n"
        ));
    }
    fs::write(dir.join("sgevents.toml"), text).expect("config");
}

fn spawn(tools: &Tools, dir: &Path) -> Child {
    let log = fs::File::create(dir.join("daemon.log")).expect("log");
    Command::new(&tools.sgevents)
        .args(["-c", "sgevents.toml", "run"])
        .current_dir(dir)
        .env_remove("SGEVENTS_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("sgevents starts")
}

fn stop(child: &mut Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
}

/// (utime + stime, cutime + cstime) of this process: its own CPU, and that of its waited-for
/// children (the daemon, and the plugins it waited for), in clock ticks of 10 ms.
fn self_cpu() -> (Duration, Duration) {
    let stat = fs::read_to_string("/proc/self/stat").expect("stat");
    let after = &stat[stat.rfind(')').expect("(comm)") + 2..];
    let f: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|v| v.parse().expect("number"))
        .collect();
    let ticks = |n: u64| Duration::from_millis(n * 10);
    (ticks(f[0] + f[1]), ticks(f[2] + f[3]))
}

/// One burst run: its time, the CPU of the daemon and its plugin, and that of the load generator.
struct Burst {
    took: Duration,
    daemon_cpu: Duration,
    client_cpu: Duration,
}

/// utime + stime of `pid`, in clock ticks of 10 ms (Linux's `USER_HZ` is 100).
fn cpu(pid: u32) -> Duration {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = &stat[stat.rfind(')').expect("(comm)") + 2..];
    let f: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|v| v.parse().expect("number"))
        .collect();
    Duration::from_millis((f[0] + f[1]) * 10)
}

fn kib(pid: u32, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("field")
}

/// `GET /metrics` on a connection of its own; whether it was answered 200.
fn scrape(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.1 200")
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < GUARD, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Steady {
    cpu: Duration,
    rss_kib: u64,
    hwm_kib: u64,
    scrapes: usize,
}

fn steady_state(tools: &Tools, dir: &Path, on: bool, seconds: u64, rate: u64) -> Steady {
    fs::create_dir_all(dir).expect("mkdir");
    let addr = format!("127.0.0.1:{}", free_port());
    write_config(dir, tools, if on { &addr } else { "" }, true, 4);
    let events = dir.join("events.jsonl");
    fs::write(&events, "").expect("events");
    let mut child = spawn(tools, dir);
    let pid = child.id();
    // Warm up: every plugin started.
    wait_for("the daemon to start its plugins", || {
        fs::read_to_string(dir.join("daemon.log"))
            .is_ok_and(|l| l.matches("is running").count() >= 4)
    });
    let mut file = BufWriter::new(
        fs::OpenOptions::new()
            .append(true)
            .open(&events)
            .expect("open events"),
    );
    let start = Instant::now();
    let cpu0 = cpu(pid);
    let (mut id, mut next_scrape, mut scrapes) = (1u64, start, 0);
    let tick = Duration::from_millis(100);
    let per_tick = (rate / 10).max(1);
    while start.elapsed() < Duration::from_secs(seconds) {
        for _ in 0..per_tick {
            file.write_all(event_line(id).as_bytes()).expect("append");
            id += 1;
        }
        file.flush().expect("flush");
        if on && Instant::now() >= next_scrape {
            scrapes += usize::from(scrape(&addr));
            next_scrape += Duration::from_secs(1);
        }
        let next = start + tick * (id / per_tick) as u32;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let used = cpu(pid) - cpu0;
    let result = Steady {
        cpu: used,
        rss_kib: kib(pid, "VmRSS"),
        hwm_kib: kib(pid, "VmHWM"),
        scrapes,
    };
    stop(&mut child);
    result
}

fn burst_run(tools: &Tools, dir: &Path, with: bool, events: usize) -> Burst {
    fs::create_dir_all(dir).expect("mkdir");
    let addr = format!("127.0.0.1:{}", free_port());
    write_config(dir, tools, &addr, false, 1);
    let mut out = BufWriter::new(fs::File::create(dir.join("events.jsonl")).expect("events"));
    for id in 1..=events as u64 {
        out.write_all(event_line(id).as_bytes()).expect("write");
    }
    out.flush().expect("flush");
    drop(out);
    let (own0, children0) = self_cpu();
    let start = Instant::now();
    let mut child = spawn(tools, dir);
    let burst = with.then(|| {
        let addr = addr.clone();
        std::thread::spawn(move || {
            wait_for("the listener", || TcpStream::connect(&addr).is_ok());
            let threads: Vec<_> = (0..50)
                .map(|_| {
                    let addr = addr.clone();
                    std::thread::spawn(move || {
                        let streams: Vec<TcpStream> = (0..100)
                            .filter_map(|_| {
                                let mut s = TcpStream::connect(&addr).ok()?;
                                let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                                let _ = s.write_all(
                                    b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                );
                                Some(s)
                            })
                            .collect();
                        let mut ok = 0;
                        for mut s in streams {
                            let mut buf = Vec::new();
                            if s.read_to_end(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.1 200")
                            {
                                ok += 1;
                            }
                        }
                        ok
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().unwrap_or(0))
                .sum::<usize>()
        })
    });
    let status = child.wait().expect("wait");
    let took = start.elapsed();
    assert!(status.success(), "the daemon failed: {status}");
    if let Some(b) = burst {
        let answered = b.join().expect("burst");
        eprintln!("bench: the burst had {answered} of 5000 answered");
    }
    let (own1, children1) = self_cpu();
    Burst {
        took,
        daemon_cpu: children1 - children0,
        client_cpu: own1 - own0,
    }
}

fn median<T: Copy + Ord>(v: &[T]) -> T {
    let mut s = v.to_vec();
    s.sort();
    s[s.len() / 2]
}

fn report(
    seconds: u64,
    rate: u64,
    burst_events: usize,
    steady: &[Vec<Steady>; 2],
    burst: &[Vec<Burst>; 2],
) {
    if !steady[0].is_empty() {
        report_steady(seconds, rate, steady);
    }
    report_burst(burst_events, burst);
}

fn report_steady(seconds: u64, rate: u64, steady: &[Vec<Steady>; 2]) {
    println!("### Steady state: {rate} events/s for {seconds} s to 4 no-op plugins\n");
    println!(
        "| listener | daemon CPU (s), each run | median CPU | CPU share | median VmRSS | median VmHWM | scrapes |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (i, label) in ["off", "on, `/metrics` every second"].iter().enumerate() {
        let runs = &steady[i];
        let cpus: Vec<Duration> = runs.iter().map(|s| s.cpu).collect();
        let each: Vec<String> = cpus
            .iter()
            .map(|c| format!("{:.2}", c.as_secs_f64()))
            .collect();
        let cpu = median(&cpus);
        println!(
            "| {label} | {} | {:.2} | {:.2} % | {:.1} MiB | {:.1} MiB | {} |",
            each.join(", "),
            cpu.as_secs_f64(),
            100.0 * cpu.as_secs_f64() / seconds as f64,
            median(&runs.iter().map(|s| s.rss_kib).collect::<Vec<_>>()) as f64 / 1024.0,
            median(&runs.iter().map(|s| s.hwm_kib).collect::<Vec<_>>()) as f64 / 1024.0,
            median(&runs.iter().map(|s| s.scrapes).collect::<Vec<_>>()),
        );
    }
}

fn report_burst(burst_events: usize, burst: &[Vec<Burst>; 2]) {
    println!(
        "\n### {burst_events} events to one no-op plugin (window 1), alone and under a burst of 5,000 connections\n"
    );
    println!(
        "| case | each run (s) | median (s) | events/s | daemon + plugin CPU (s), median | load generator CPU (s), median |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    let secs = |d: Duration| d.as_secs_f64();
    for (i, label) in ["alone", "with the burst"].iter().enumerate() {
        let each: Vec<String> = burst[i]
            .iter()
            .map(|b| format!("{:.2}", secs(b.took)))
            .collect();
        let m = median(&burst[i].iter().map(|b| b.took).collect::<Vec<_>>());
        println!(
            "| {label} | {} | {:.2} | {:.0} | {:.2} | {:.2} |",
            each.join(", "),
            secs(m),
            burst_events as f64 / secs(m),
            secs(median(
                &burst[i].iter().map(|b| b.daemon_cpu).collect::<Vec<_>>()
            )),
            secs(median(
                &burst[i].iter().map(|b| b.client_cpu).collect::<Vec<_>>()
            )),
        );
    }
    let took = |i: usize| median(&burst[i].iter().map(|b| b.took).collect::<Vec<_>>());
    let (alone, with) = (took(0), took(1));
    println!(
        "\nSlowdown under the burst: {:+.1} %",
        100.0 * (with.as_secs_f64() / alone.as_secs_f64() - 1.0)
    );
}
