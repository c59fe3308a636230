//! End-to-end benchmarks of the daemon: `cargo bench -p sgevents --bench pipeline`.
//!
//! A plain `main`, no harness: it builds the release `sgevents` and the Rust SDK's `noop` example,
//! generates realistic `EventLogEntry` lines into a temporary directory, and measures
//!
//! 1. **throughput**: a journal of 100,000 events delivered to 1 and to 4 no-op plugins (Rust SDK
//!    and Python SDK, windows 1 and 32), with the default durable group commit. The file is
//!    journaled once by a run with no plugins; each measured run starts from a copy of that state
//!    with `start_at = "earliest"` plugins and `exit_when_idle`, timed from spawn to exit, and is
//!    checked afterwards (every plugin's `last_event_id` is the last event, nothing failed);
//! 2. **the bare pipe**, the baseline: this process plays the daemon for one plugin process,
//!    writing `hello` and the very event lines the daemon sends (the journal's bodies, encoded
//!    with the daemon's encoder) while reading the answers, never more than the window
//!    unanswered. The daemon's throughput is reported as a fraction of it;
//! 3. **memory**: VmRSS and VmHWM of the daemon running 10 idle Rust no-op plugins;
//! 4. **latency** from an event appended to the followed file to its arrival in a plugin, with the
//!    default `poll_interval` (100ms) and with 10ms.
//!
//! Throughput figures are medians of 5 runs (3 for the slow Python window-1 cases), interleaved
//! round-robin so that a disturbance spreads over every case. Results go to stdout as Markdown;
//! progress goes to stderr. Apart from the build in `target/`, nothing is written outside the
//! temporary directory (Python's bytecode cache included). Smaller runs for trying it out:
//!
//! ```sh
//! SGEVENTS_BENCH_EVENTS=5000 SGEVENTS_BENCH_REPEATS=1 SGEVENTS_BENCH_SAMPLES=20 \
//!     cargo bench -p sgevents --bench pipeline
//! ```
//!
//! `SGEVENTS_BENCH_FILTER=TEXT` runs only the throughput cases whose label contains `TEXT` (such
//! as `Rust window 32 bare pipe`, or `daemon, 1 plugin`), and skips the memory and latency parts:
//! handy under `perf`.

// A benchmark's `main` exists to print its results: stdout is the report.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags};
use serde_json::{Map, Value, json};
use sgevents_protocol::{DaemonMessage, Hello, SUPPORTED, encode, encode_event_raw};

/// The longest any single daemon or plugin run may take before the benchmark gives up.
const GUARD: Duration = Duration::from_secs(600);

/// The `deadline_ms` the daemon sends with the default `ack_timeout` (30s).
const DEADLINE_MS: u64 = 30_000;

/// The first event id of the generated log (a realistic magnitude).
const FIRST_ID: i64 = 40_000_001;

/// The no-op plugins' only subscription (the name both no-op examples register).
const SUBSCRIPTION: &str = "all";

fn main() {
    let settings = Settings::from_env();
    let tools = Tools::build();
    let tmp = tempfile::Builder::new()
        .prefix("sgevents-bench-")
        .tempdir()
        .expect("a temporary directory");
    let dir = tmp.path();
    fs::create_dir_all(dir.join("pycache")).expect("mkdir pycache");
    eprintln!("bench: working in {}", dir.display());

    let events = dir.join("events.jsonl");
    let last_id = write_events(&events, settings.events);
    let line_bytes = fs::metadata(&events).expect("events file").len() / settings.events as u64;
    eprintln!(
        "bench: {} events, {line_bytes} bytes per line on average",
        settings.events
    );

    let journal = Journal::make(&tools, dir, &events, settings.events, last_id);
    let throughput = throughput(&tools, &settings, dir, &events, &journal, last_id);
    if settings.filter.is_some() {
        report_throughput(&journal, &throughput, line_bytes);
        return;
    }
    let rss = idle_rss(&tools, dir, settings.idle_plugins);
    let latency: Vec<LatencyResult> = [None, Some("10ms")]
        .into_iter()
        .map(|poll| latency(&tools, dir, poll, settings.latency_samples))
        .collect();

    report(&settings, line_bytes, &journal, &throughput, &rss, &latency);
}

// ---------------------------------------------------------------------------------------------
// Settings and tools.

/// Sizes, from the environment so that a quick run can shrink them.
struct Settings {
    events: usize,
    repeats: usize,
    slow_repeats: usize,
    latency_samples: usize,
    idle_plugins: usize,
    filter: Option<String>,
}

impl Settings {
    fn from_env() -> Settings {
        let var = |name: &str, default: usize| -> usize {
            match std::env::var(name) {
                Ok(v) => v
                    .parse()
                    .unwrap_or_else(|_| panic!("${name} must be a positive integer, got {v:?}")),
                Err(_) => default,
            }
        };
        let repeats = var("SGEVENTS_BENCH_REPEATS", 5).max(1);
        Settings {
            events: var("SGEVENTS_BENCH_EVENTS", 100_000).max(10),
            repeats,
            slow_repeats: repeats.min(3),
            latency_samples: var("SGEVENTS_BENCH_SAMPLES", 200).max(1),
            idle_plugins: 10,
            filter: std::env::var("SGEVENTS_BENCH_FILTER").ok(),
        }
    }
}

/// The programs under test.
struct Tools {
    sgevents: PathBuf,
    noop_rust: PathBuf,
    noop_python: PathBuf,
    python_path: PathBuf,
}

impl Tools {
    /// Builds the daemon and the Rust no-op plugin in release, and finds the Python one.
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
        let mut built = BTreeMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Ok(msg) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if msg["reason"] == "compiler-artifact" {
                if let (Some(name), Some(exe)) =
                    (msg["target"]["name"].as_str(), msg["executable"].as_str())
                {
                    built.insert(name.to_owned(), PathBuf::from(exe));
                }
            }
        }
        let find = |name: &str| {
            built
                .get(name)
                .cloned()
                .unwrap_or_else(|| panic!("cargo did not report the `{name}` executable"))
        };
        Tools {
            sgevents: find("sgevents"),
            noop_rust: find("noop"),
            noop_python: root.join("sdk-python/examples/noop.py"),
            python_path: root.join("sdk-python/src"),
        }
    }
}

/// Which SDK a no-op plugin is written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Sdk {
    Rust,
    Python,
}

impl Sdk {
    fn label(self) -> &'static str {
        match self {
            Sdk::Rust => "Rust",
            Sdk::Python => "Python",
        }
    }

    /// The command, as a TOML array.
    fn toml_command(self, tools: &Tools) -> String {
        match self {
            Sdk::Rust => format!("[{}]", toml_str(&tools.noop_rust)),
            Sdk::Python => format!("[\"python3\", {}]", toml_str(&tools.noop_python)),
        }
    }

    fn command(self, tools: &Tools) -> Command {
        match self {
            Sdk::Rust => Command::new(&tools.noop_rust),
            Sdk::Python => {
                let mut c = Command::new("python3");
                c.arg(&tools.noop_python);
                c
            }
        }
    }
}

/// A path as a TOML (and JSON) string.
fn toml_str(path: &Path) -> String {
    Value::from(path.display().to_string()).to_string()
}

/// The environment every process of the benchmark gets: Python finds the SDK and keeps its
/// bytecode cache in the temporary directory, not in the repository, and runs with its standard
/// buffering (as under a service manager), whatever the caller's shell exports.
fn python_env(cmd: &mut Command, tools: &Tools, dir: &Path) {
    cmd.env("PYTHONPATH", &tools.python_path)
        .env_remove("PYTHONDONTWRITEBYTECODE")
        .env_remove("PYTHONUNBUFFERED")
        .env("PYTHONPYCACHEPREFIX", dir.join("pycache"));
}

// ---------------------------------------------------------------------------------------------
// Events.

/// Writes `count` Task status changes, one JSON object per line, and returns the last id.
fn write_events(path: &Path, count: usize) -> i64 {
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut out = BufWriter::new(fs::File::create(path).expect("create the events file"));
    let (mut id, mut last) = (FIRST_ID, FIRST_ID);
    for _ in 0..count {
        out.write_all(event_line(id, &mut rng).as_bytes())
            .expect("write events");
        last = id;
        // Ids have gaps, as on a real site (other entity types' events are not in this log).
        id += 1 + i64::from(rng.u8(..3) == 0);
    }
    out.flush().expect("write events");
    last
}

/// One realistic `Shotgun_Task_Change` of `sg_status_list`, in the flat `EventLogEntry` shape, with
/// its newline (about 600 bytes).
fn event_line(id: i64, rng: &mut fastrand::Rng) -> String {
    const STATUSES: [&str; 7] = ["wtg", "rdy", "ip", "rev", "apr", "fin", "hld"];
    const TASKS: [&str; 8] = [
        "Anim", "Layout", "Lighting", "Comp", "FX", "Model", "Rig", "Lookdev",
    ];
    const USERS: [(i64, &str); 6] = [
        (42, "Ana Reyes"),
        (57, "Tomás Okafor"),
        (88, "Mei Lindqvist"),
        (91, "Jonas Brandt"),
        (104, "Priya Raman"),
        (131, "Chloé Dubois"),
    ];
    const PROJECTS: [(i64, &str); 3] = [
        (66, "Forest Spirits"),
        (70, "Harbour Lights"),
        (85, "The Long Winter"),
    ];
    let old = STATUSES[rng.usize(..STATUSES.len())];
    let new = STATUSES[rng.usize(..STATUSES.len())];
    let task = TASKS[rng.usize(..TASKS.len())];
    let (user_id, user) = USERS[rng.usize(..USERS.len())];
    let (project_id, project) = PROJECTS[rng.usize(..PROJECTS.len())];
    let entity_id = 60_000 + rng.i64(..40_000);
    let seconds = (id - FIRST_ID) * 3;
    let created_at = format!(
        "2026-11-{:02}T{:02}:{:02}:{:02}Z",
        2 + seconds / 86_400 % 27,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60
    );
    let session = format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        rng.u32(..),
        rng.u16(..),
        rng.u16(..0x1000),
        rng.u16(..0x1000),
        rng.u64(..1 << 48)
    );
    let event = json!({
        "id": id,
        "event_type": "Shotgun_Task_Change",
        "attribute_name": "sg_status_list",
        "meta": {
            "type": "attribute_change",
            "attribute_name": "sg_status_list",
            "entity_type": "Task",
            "entity_id": entity_id,
            "field_data_type": "status_list",
            "old_value": old,
            "new_value": new,
        },
        "entity": {"type": "Task", "id": entity_id, "name": task},
        "user": {"type": "HumanUser", "id": user_id, "name": user},
        "project": {"type": "Project", "id": project_id, "name": project},
        "session_uuid": session,
        "created_at": created_at,
        "description": format!("{user} changed \"Status\" from \"{old}\" to \"{new}\" on Task {task}"),
    });
    format!("{event}\n")
}

// ---------------------------------------------------------------------------------------------
// Running the daemon.

/// Writes `sgevents.toml` into `dir`: `[daemon]` and `[source]` with `extra` lines, then `plugins`.
fn write_config(dir: &Path, events: &Path, daemon: &str, source: &str, plugins: &str) -> PathBuf {
    let text = format!(
        "[daemon]\nstate_dir = \"var\"\n{daemon}\n\
         [source]\nkind = \"jsonl\"\npath = {}\n{source}\n{plugins}",
        toml_str(events)
    );
    let file = dir.join("sgevents.toml");
    fs::write(&file, text).expect("write the configuration");
    file
}

/// A child process that is stopped when dropped, so that a failing benchmark (a panic) leaves no
/// daemon or plugin behind: SIGTERM, then SIGKILL after 10 seconds.
struct Reaped(Child);

impl std::ops::Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if !matches!(self.0.try_wait(), Ok(None)) {
            return;
        }
        signal(&self.0, nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        while matches!(self.0.try_wait(), Ok(None)) {
            if start.elapsed() > Duration::from_secs(10) {
                let _ = self.0.kill();
                let _ = self.0.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Sends `signal` to `child`.
fn signal(child: &Child, signal: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal);
}

/// Starts `sgevents run` on `config`, logging to `daemon.log` beside it.
fn spawn_daemon(tools: &Tools, config: &Path) -> Reaped {
    let dir = config.parent().expect("config folder");
    let log = fs::File::create(dir.join("daemon.log")).expect("create daemon.log");
    let mut cmd = Command::new(&tools.sgevents);
    cmd.arg("-c")
        .arg(config)
        .arg("run")
        .current_dir(dir)
        .env_remove("SGEVENTS_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    python_env(&mut cmd, tools, dir);
    Reaped(cmd.spawn().expect("sgevents starts"))
}

/// Waits for `child` to exit; kills it (and fails) after [`GUARD`].
fn wait_guarded(child: &mut Child, what: &str) -> ExitStatus {
    let (done, watch) = mpsc::channel::<()>();
    let pid = child.id() as i32;
    let what_owned = what.to_owned();
    let watchdog = std::thread::spawn(move || {
        if watch.recv_timeout(GUARD) == Err(mpsc::RecvTimeoutError::Timeout) {
            eprintln!("bench: {what_owned} did not finish within {GUARD:?}; killing it");
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    });
    let status = child.wait().expect("wait for a child");
    let _ = done.send(());
    watchdog.join().expect("watchdog");
    status
}

/// The end of a daemon log, for failure messages.
fn log_tail(dir: &Path) -> String {
    let text = fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn try_db(dir: &Path) -> rusqlite::Result<Connection> {
    Connection::open_with_flags(dir.join("var/state.db"), OpenFlags::SQLITE_OPEN_READ_ONLY)
}

fn open_db(dir: &Path) -> Connection {
    try_db(dir).unwrap_or_else(|e| panic!("cannot open {}/var/state.db: {e}", dir.display()))
}

/// Polls `cond` every 10ms until it holds; fails after [`GUARD`].
fn wait_for(what: &str, dir: &Path, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < GUARD,
            "timed out waiting for {what}; daemon log:\n{}",
            log_tail(dir)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------------
// Journal.

/// The journaled state every throughput run starts from.
struct Journal {
    state_dir: PathBuf,
    /// The exact `event` lines the daemon sends a no-op plugin, in order.
    lines: Vec<Vec<u8>>,
    ingest: Duration,
}

impl Journal {
    /// Runs the daemon with no plugins until it has journaled the whole file.
    fn make(tools: &Tools, dir: &Path, events: &Path, count: usize, last_id: i64) -> Journal {
        let jdir = dir.join("journal");
        fs::create_dir_all(&jdir).expect("mkdir journal");
        let config = write_config(&jdir, events, "exit_when_idle = true", "", "");
        eprintln!("bench: journaling the events (no plugins)");
        let start = Instant::now();
        let mut child = spawn_daemon(tools, &config);
        let status = wait_guarded(&mut child, "the journaling run");
        let ingest = start.elapsed();
        assert!(
            status.success(),
            "the journaling run failed ({status}):\n{}",
            log_tail(&jdir)
        );
        let db = open_db(&jdir);
        let (rows, max): (i64, i64) = db
            .query_row("SELECT count(*), max(event_id) FROM events", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("count the journal");
        assert_eq!(
            (rows as usize, max),
            (count, last_id),
            "the journal is incomplete"
        );
        let mut stmt = db
            .prepare("SELECT event_id, body FROM events ORDER BY seq")
            .expect("query");
        let lines: Vec<Vec<u8>> = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .expect("rows")
            .map(|row| {
                let (id, body) = row.expect("row");
                encode_event_raw(id, 1, &[SUBSCRIPTION], DEADLINE_MS, &body).into_bytes()
            })
            .collect();
        eprintln!(
            "bench: journaled in {:.2}s ({:.0} events/s)",
            ingest.as_secs_f64(),
            count as f64 / ingest.as_secs_f64()
        );
        Journal {
            state_dir: jdir.join("var"),
            lines,
            ingest,
        }
    }

    /// Copies the journaled state into `dir/var`.
    fn copy_to(&self, dir: &Path) {
        let var = dir.join("var");
        fs::create_dir_all(&var).expect("mkdir var");
        for entry in fs::read_dir(&self.state_dir).expect("read the journal's state") {
            let entry = entry.expect("entry");
            if entry.file_type().expect("file type").is_file() {
                fs::copy(entry.path(), var.join(entry.file_name())).expect("copy the state");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Throughput.

/// One measured configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Case {
    sdk: Sdk,
    window: u32,
    /// Plugins the daemon runs; 0 is the bare pipe (one plugin, no daemon).
    plugins: usize,
}

impl Case {
    fn repeats(&self, settings: &Settings) -> usize {
        if self.sdk == Sdk::Python && self.window == 1 {
            settings.slow_repeats
        } else {
            settings.repeats
        }
    }

    fn label(&self) -> String {
        let who = if self.plugins == 0 {
            "bare pipe".to_owned()
        } else {
            format!("daemon, {} plugin(s)", self.plugins)
        };
        format!("{} window {} {who}", self.sdk.label(), self.window)
    }
}

/// One run: its wall time (spawn to exit) and the CPU time it took.
#[derive(Debug, Clone, Copy)]
struct Sample {
    wall: Duration,
    /// Daemon runs: the daemon's and its plugins'. Bare pipe: the plugin's and this process's.
    cpu: Duration,
}

/// Every run, per case.
type Timings = BTreeMap<Case, Vec<Sample>>;

/// CPU time used so far by this process and by its waited-for descendants, from
/// `/proc/self/stat` (in clock ticks of 10ms: Linux's `USER_HZ` is 100).
fn cpu_used() -> (Duration, Duration) {
    let stat = fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    // Fields after the `(comm)`, which may hold spaces: state is field 3, utime 14 ... cstime 17.
    let after = &stat[stat.rfind(')').expect("stat has (comm)") + 2..];
    let fields: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|f| f.parse().expect("a number"))
        .collect();
    let ticks = |n: u64| Duration::from_millis(n * 10);
    (ticks(fields[0] + fields[1]), ticks(fields[2] + fields[3]))
}

fn throughput(
    tools: &Tools,
    settings: &Settings,
    dir: &Path,
    events: &Path,
    journal: &Journal,
    last_id: i64,
) -> Timings {
    let mut cases = Vec::new();
    for sdk in [Sdk::Rust, Sdk::Python] {
        for window in [1, 32] {
            for plugins in [0, 1, 4] {
                cases.push(Case {
                    sdk,
                    window,
                    plugins,
                });
            }
        }
    }
    let rounds = cases.iter().map(|c| c.repeats(settings)).max().unwrap_or(1);
    let mut timings = Timings::new();
    let mut run_no = 0;
    // Round-robin over the cases, so that a disturbance spreads over all of them.
    for round in 0..rounds {
        for case in &cases {
            let filtered_out = settings
                .filter
                .as_ref()
                .is_some_and(|f| !case.label().contains(f.as_str()));
            if round >= case.repeats(settings) || filtered_out {
                continue;
            }
            run_no += 1;
            let sample = if case.plugins == 0 {
                bare_pipe(tools, dir, *case, &journal.lines)
            } else {
                let run_dir = dir.join(format!("run-{run_no}"));
                let t = daemon_throughput(tools, &run_dir, events, journal, *case, last_id);
                // Each copy of the state is as big as the journal: keep the disk tidy.
                let _ = fs::remove_dir_all(&run_dir);
                t
            };
            let deliveries = journal.lines.len() * case.plugins.max(1);
            eprintln!(
                "bench: round {} {:<40} {:>7.2}s  {:>9.0} deliveries/s  cpu {:.2}s",
                round + 1,
                case.label(),
                sample.wall.as_secs_f64(),
                deliveries as f64 / sample.wall.as_secs_f64(),
                sample.cpu.as_secs_f64()
            );
            timings.entry(*case).or_default().push(sample);
        }
    }
    timings
}

/// Delivers the journal to `case.plugins` no-op plugins; times it from spawn to exit.
fn daemon_throughput(
    tools: &Tools,
    run_dir: &Path,
    events: &Path,
    journal: &Journal,
    case: Case,
    last_id: i64,
) -> Sample {
    journal.copy_to(run_dir);
    let names: Vec<String> = (1..=case.plugins).map(|i| format!("noop{i}")).collect();
    let plugins: String = names
        .iter()
        .map(|name| {
            format!(
                "\n[plugin.{name}]\ncommand = {}\nconfig = {{ max_in_flight = {} }}\nstart_at = \"earliest\"\n",
                case.sdk.toml_command(tools),
                case.window
            )
        })
        .collect();
    let config = write_config(run_dir, events, "exit_when_idle = true", "", &plugins);
    let (_, children_before) = cpu_used();
    let start = Instant::now();
    let mut child = spawn_daemon(tools, &config);
    let status = wait_guarded(&mut child, &case.label());
    let wall = start.elapsed();
    let cpu = cpu_used().1 - children_before;
    assert!(
        status.success(),
        "{}: sgevents failed ({status}):\n{}",
        case.label(),
        log_tail(run_dir)
    );
    verify_delivered(run_dir, &names, last_id, &case.label());
    Sample { wall, cpu }
}

/// Fails loudly unless every plugin's cursor is at the last event and nothing failed or waits.
fn verify_delivered(run_dir: &Path, names: &[String], last_id: i64, what: &str) {
    let db = open_db(run_dir);
    let mut stmt = db
        .prepare("SELECT name, last_event_id FROM plugins")
        .expect("query plugins");
    let rows: BTreeMap<String, Option<i64>> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .map(|r| r.expect("row"))
        .collect();
    for name in names {
        let got = rows.get(name).copied().flatten();
        assert_eq!(
            got,
            Some(last_id),
            "{what}: plugin `{name}` did not get everything: last_event_id {got:?}, expected {last_id}; plugins: {rows:?}\n{}",
            log_tail(run_dir)
        );
    }
    let (failed, retries): (i64, i64) = db
        .query_row(
            "SELECT (SELECT count(*) FROM failed_events), (SELECT count(*) FROM retries)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("count failures");
    assert_eq!(
        (failed, retries),
        (0, 0),
        "{what}: failed events or pending retries"
    );
}

/// The baseline: this process plays the daemon for one no-op plugin, with nothing in between.
/// Spawns it, sends `hello` and every event line, never more than `window` unanswered, closes
/// stdin and waits for the exit; times it from spawn to exit.
fn bare_pipe(tools: &Tools, dir: &Path, case: Case, lines: &[Vec<u8>]) -> Sample {
    let mut config = Map::new();
    config.insert("max_in_flight".into(), Value::from(case.window));
    let hello = encode(&DaemonMessage::Hello(Hello {
        protocols: SUPPORTED.to_vec(),
        plugin: "noop1".into(),
        config,
    }));
    let window = case.window as usize;
    let mut cmd = case.sdk.command(tools);
    cmd.current_dir(dir)
        .env("SGEVENTS_PROTOCOL", "1")
        .env("SGEVENTS_PLUGIN", "noop1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    python_env(&mut cmd, tools, dir);

    let (own_before, children_before) = cpu_used();
    let start = Instant::now();
    let mut child = Reaped(cmd.spawn().expect("the plugin starts"));
    let mut stdin = BufWriter::with_capacity(1 << 16, child.stdin.take().expect("stdin"));
    let mut stdout = BufReader::with_capacity(1 << 16, child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdin.write_all(hello.as_bytes()).expect("write hello");
    stdin.flush().expect("flush hello");
    stdout.read_line(&mut line).expect("read register");
    let register: Value = serde_json::from_str(&line).expect("register is JSON");
    assert_eq!(register["type"], "register", "{line}");
    assert_eq!(
        register["max_in_flight"].as_u64(),
        Some(u64::from(case.window)),
        "the plugin did not take its window from the config: {line}"
    );

    let (mut sent, mut answered) = (0, 0);
    while answered < lines.len() {
        while sent < lines.len() && sent - answered < window {
            stdin.write_all(&lines[sent]).expect("write an event");
            sent += 1;
        }
        stdin.flush().expect("flush events");
        // One answer at least, then every complete one already read.
        loop {
            line.clear();
            let n = stdout.read_line(&mut line).expect("read an answer");
            assert!(n > 0, "{}: the plugin closed its stdout", case.label());
            assert!(
                line.starts_with("{\"type\":\"ack\""),
                "{}: not an ack: {line}",
                case.label()
            );
            answered += 1;
            if !stdout.buffer().contains(&b'\n') {
                break;
            }
        }
    }
    drop(stdin);
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).expect("read to the end");
    let status = wait_guarded(&mut child, &case.label());
    let wall = start.elapsed();
    let (own, children) = cpu_used();
    let cpu = (own - own_before) + (children - children_before);
    assert!(
        status.success() && rest.is_empty(),
        "{}: the plugin ended badly ({status}), after: {}",
        case.label(),
        String::from_utf8_lossy(&rest)
    );
    Sample { wall, cpu }
}

// ---------------------------------------------------------------------------------------------
// Memory.

struct RssResult {
    plugins: usize,
    daemon_rss_kib: u64,
    daemon_hwm_kib: u64,
    plugin_rss_kib: Vec<u64>,
}

/// A `/proc/PID/status` field in KiB.
fn proc_kib(pid: i64, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The daemon's memory with `count` idle Rust no-op plugins on a followed file.
fn idle_rss(tools: &Tools, dir: &Path, count: usize) -> RssResult {
    eprintln!("bench: RSS with {count} idle plugins");
    let rdir = dir.join("rss");
    fs::create_dir_all(&rdir).expect("mkdir rss");
    let events = rdir.join("events.jsonl");
    let last_id = write_events(&events, 100);
    let names: Vec<String> = (1..=count).map(|i| format!("idle{i:02}")).collect();
    let plugins: String = names
        .iter()
        .map(|name| {
            format!(
                "\n[plugin.{name}]\ncommand = {}\nstart_at = \"earliest\"\n",
                Sdk::Rust.toml_command(tools)
            )
        })
        .collect();
    let config = write_config(&rdir, &events, "", "follow = true", &plugins);
    let mut child = spawn_daemon(tools, &config);
    wait_for("every idle plugin to run and catch up", &rdir, || {
        // The database appears when the daemon has created it.
        try_db(&rdir)
            .and_then(|db| {
                db.query_row(
                    "SELECT count(*) FROM plugins WHERE state = 'running' AND last_event_id = ?1",
                    [last_id],
                    |r| r.get::<_, i64>(0),
                )
            })
            .is_ok_and(|n| n as usize == count)
    });
    // Idle for a while: pings, polls of the file, nothing else.
    std::thread::sleep(Duration::from_secs(3));
    let pid = i64::from(child.id());
    let daemon_rss_kib = proc_kib(pid, "VmRSS");
    let daemon_hwm_kib = proc_kib(pid, "VmHWM");
    let pids: Vec<i64> = {
        let db = open_db(&rdir);
        let mut stmt = db
            .prepare("SELECT pid FROM plugins WHERE state = 'running'")
            .expect("query");
        stmt.query_map([], |r| r.get(0))
            .expect("rows")
            .map(|r| r.expect("row"))
            .collect()
    };
    let plugin_rss_kib = pids.iter().map(|&p| proc_kib(p, "VmRSS")).collect();
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    let status = wait_guarded(&mut child, "the idle daemon");
    assert!(
        status.success(),
        "the idle daemon failed ({status}):\n{}",
        log_tail(&rdir)
    );
    RssResult {
        plugins: count,
        daemon_rss_kib,
        daemon_hwm_kib,
        plugin_rss_kib,
    }
}

// ---------------------------------------------------------------------------------------------
// Latency.

/// A plugin with no SDK that writes `event_id arrival_ns` (CLOCK_REALTIME) for every event the
/// moment its line is read, then acknowledges it.
const RECORDER: &str = r#"import json, sys, time
out = sys.stdout
record = None
while True:
    line = sys.stdin.buffer.readline()
    now = time.time_ns()
    if not line:
        break
    msg = json.loads(line)
    kind = msg["type"]
    if kind == "event":
        record.write("%d %d\n" % (msg["event_id"], now))
        record.flush()
        out.write('{"type":"ack","event_id":%d}\n' % msg["event_id"])
        out.flush()
    elif kind == "hello":
        record = open(msg["config"]["record"], "a")
        out.write(json.dumps({"type": "register", "protocol": 1, "max_in_flight": 1,
                              "subscriptions": [{"name": "all", "event_types": ["*"]}]}) + "\n")
        out.flush()
    elif kind == "ping":
        out.write(json.dumps({"type": "pong", "nonce": msg["nonce"]}) + "\n")
        out.flush()
"#;

struct LatencyResult {
    poll: &'static str,
    samples: Vec<Duration>,
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_nanos() as i128
}

/// Reads the complete lines appended to the recorder's file since the last call.
struct Tail {
    file: Option<fs::File>,
    path: PathBuf,
    partial: String,
}

impl Tail {
    fn records(&mut self) -> Vec<(i64, i128)> {
        if self.file.is_none() {
            self.file = fs::File::open(&self.path).ok();
        }
        let Some(file) = &mut self.file else {
            return Vec::new();
        };
        file.read_to_string(&mut self.partial)
            .expect("read the records");
        let Some(end) = self.partial.rfind('\n') else {
            return Vec::new();
        };
        let complete: String = self.partial.drain(..=end).collect();
        complete
            .lines()
            .map(|l| {
                let (id, ns) = l.split_once(' ').expect("`id ns`");
                (id.parse().expect("id"), ns.parse().expect("ns"))
            })
            .collect()
    }
}

/// Appends events one at a time to a followed file and measures when the plugin reads each.
fn latency(tools: &Tools, dir: &Path, poll: Option<&'static str>, samples: usize) -> LatencyResult {
    let label = poll.unwrap_or("100ms (default)");
    eprintln!("bench: latency, poll_interval {label}, {samples} samples");
    let ldir = dir.join(format!("latency-{}", poll.unwrap_or("default")));
    fs::create_dir_all(&ldir).expect("mkdir latency");
    let events = ldir.join("events.jsonl");
    let mut last_id = write_events(&events, 5);
    let recorder = ldir.join("recorder.py");
    fs::write(&recorder, RECORDER).expect("write the recorder");
    let record = ldir.join("arrivals.txt");
    let source = match poll {
        Some(p) => format!("follow = true\npoll_interval = \"{p}\""),
        None => "follow = true".to_owned(),
    };
    let plugin = format!(
        "\n[plugin.recorder]\ncommand = [\"python3\", {}]\nconfig = {{ record = {} }}\nstart_at = \"earliest\"\n",
        toml_str(&recorder),
        toml_str(&record)
    );
    let config = write_config(&ldir, &events, "", &source, &plugin);
    let mut child = spawn_daemon(tools, &config);
    let mut tail = Tail {
        file: None,
        path: record,
        partial: String::new(),
    };
    let mut seen = 0;
    wait_for("the first events to arrive", &ldir, || {
        seen += tail.records().len();
        seen >= 5
    });

    let period_us = poll
        .map(|p| humantime::parse_duration(p).expect("a duration"))
        .unwrap_or(Duration::from_millis(100))
        .as_micros() as u64;
    let mut rng = fastrand::Rng::with_seed(7);
    let mut appender = fs::OpenOptions::new()
        .append(true)
        .open(&events)
        .expect("open the events file");
    let mut results = Vec::with_capacity(samples);
    for _ in 0..samples {
        last_id += 1;
        let line = event_line(last_id, &mut rng);
        let sent = now_ns();
        appender
            .write_all(line.as_bytes())
            .expect("append an event");
        let start = Instant::now();
        let arrived = loop {
            if let Some(&(_, ns)) = tail.records().iter().find(|(id, _)| *id == last_id) {
                break ns;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "event {last_id} never arrived; daemon log:\n{}",
                log_tail(&ldir)
            );
            std::thread::sleep(Duration::from_micros(500));
        };
        results.push(Duration::from_nanos((arrived - sent).max(0) as u64));
        // A pause uniform over a whole poll period: the arrival happened just after a poll, so
        // without it every append would fall at the same phase of the daemon's polling.
        std::thread::sleep(Duration::from_micros(rng.u64(0..period_us)));
    }
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    let status = wait_guarded(&mut child, "the latency daemon");
    assert!(
        status.success(),
        "the latency daemon failed ({status}):\n{}",
        log_tail(&ldir)
    );
    LatencyResult {
        poll: label,
        samples: results,
    }
}

// ---------------------------------------------------------------------------------------------
// Report.

/// The value at `q` (0 to 1) of sorted `values`, nearest rank.
fn quantile<T: Copy>(sorted: &[T], q: f64) -> T {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The median of `field` over `samples`.
fn median(samples: &[Sample], field: impl Fn(&Sample) -> Duration) -> Duration {
    let mut sorted: Vec<Duration> = samples.iter().map(field).collect();
    sorted.sort();
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }
}

/// `12,345`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn report(
    settings: &Settings,
    line_bytes: u64,
    journal: &Journal,
    timings: &Timings,
    rss: &RssResult,
    latency: &[LatencyResult],
) {
    report_throughput(journal, timings, line_bytes);
    report_memory(rss);
    report_latency(settings, latency);
    println!(
        "\nSizes: {} events, {} runs per case ({} for Python window 1), {} latency samples.",
        settings.events, settings.repeats, settings.slow_repeats, settings.latency_samples
    );
}

fn report_throughput(journal: &Journal, timings: &Timings, line_bytes: u64) {
    let n = journal.lines.len() as f64;
    let rate = |t: Duration| n / t.as_secs_f64();
    println!(
        "## Throughput: {} events (~{line_bytes} B per line), synchronous = \"full\"\n",
        journal.lines.len()
    );
    println!(
        "Journaling them (no plugins) took {:.2}s: {} events/s.\n",
        journal.ingest.as_secs_f64(),
        thousands(rate(journal.ingest))
    );
    println!(
        "Medians of the runs (spawn to exit). Per plugin: events/s each plugin received; \
         aggregate: deliveries/s over all plugins; vs pipe: per-plugin rate / bare-pipe rate; \
         CPU: CPU time per delivery, daemon and plugins together (bare pipe: plugin and driver).\n"
    );
    println!(
        "| SDK | window | plugins | per plugin (events/s) | aggregate (deliveries/s) | bare pipe (events/s) | vs pipe | CPU µs/delivery (pipe) | runs | spread (per plugin) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for (case, times) in timings {
        if case.plugins == 0 {
            continue;
        }
        let pipe_samples = timings.get(&Case {
            plugins: 0,
            ..*case
        });
        let pipe = pipe_samples.map(|t| rate(median(t, |s| s.wall)));
        let per_plugin = rate(median(times, |s| s.wall));
        let aggregate = per_plugin * case.plugins as f64;
        let cpu_per = |samples: &[Sample], deliveries: f64| {
            median(samples, |s| s.cpu).as_secs_f64() * 1e6 / deliveries
        };
        let cpu = cpu_per(times, n * case.plugins as f64);
        let pipe_cpu = pipe_samples.map(|t| cpu_per(t, n));
        let (fast, slow) = (
            times.iter().map(|s| s.wall).min().unwrap_or_default(),
            times.iter().map(|s| s.wall).max().unwrap_or_default(),
        );
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} ({}) | {} | {}–{} |",
            case.sdk.label(),
            case.window,
            case.plugins,
            thousands(per_plugin),
            if case.plugins > 1 {
                thousands(aggregate)
            } else {
                "".to_owned()
            },
            pipe.map_or("?".to_owned(), thousands),
            pipe.map_or("?".to_owned(), |p| format!("{:.2}", per_plugin / p)),
            cpu,
            pipe_cpu.map_or("?".to_owned(), |c| format!("{c:.1}")),
            times.len(),
            thousands(rate(slow)),
            thousands(rate(fast)),
        );
    }
}

fn report_memory(rss: &RssResult) {
    println!(
        "\n## Memory: the daemon with {} idle Rust no-op plugins\n",
        rss.plugins
    );
    let mib = |kib: u64| kib as f64 / 1024.0;
    let plugins_total: u64 = rss.plugin_rss_kib.iter().sum();
    println!("| daemon VmRSS | daemon VmHWM | plugins' VmRSS (each, mean) |");
    println!("|---:|---:|---:|");
    println!(
        "| {:.1} MiB | {:.1} MiB | {:.1} MiB |",
        mib(rss.daemon_rss_kib),
        mib(rss.daemon_hwm_kib),
        mib(plugins_total) / rss.plugin_rss_kib.len().max(1) as f64
    );
}

fn report_latency(settings: &Settings, latency: &[LatencyResult]) {
    println!(
        "\n## Latency: append to the followed file → read by the plugin ({} samples)\n",
        settings.latency_samples
    );
    println!("| poll_interval | median | p95 | max |");
    println!("|---|---:|---:|---:|");
    for l in latency {
        let mut sorted = l.samples.clone();
        sorted.sort();
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
        println!(
            "| {} | {} | {} | {} |",
            l.poll,
            ms(quantile(&sorted, 0.5)),
            ms(quantile(&sorted, 0.95)),
            ms(*sorted.last().expect("samples"))
        );
    }
}
