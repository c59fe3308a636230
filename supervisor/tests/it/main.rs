//! Integration tests of the daemon: the real `sgevents` binary, real plugin processes (the
//! scriptable test plugin, Python plugins), real SQLite files in a temporary directory.
//!
//! Waits poll a condition with a generous guard (a hang fails the test instead of hanging it);
//! nothing here measures time.

mod alerts;
mod browser;
mod cli;
mod control;
mod crash;
mod delivery;
mod demo;
mod failures;
mod http;
mod legacy;
mod logs;
mod metrics;
mod migrate;
mod plugin_faults;
mod secrets;
mod service;
mod shotgrid;
mod shotgrid_fast;
mod site;
mod source_faults;
mod store_faults;
mod tryit;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use serde_json::json;

/// The longest a test waits for anything.
const GUARD: Duration = Duration::from_secs(60);

/// The test plugin binary, built by `cargo test` as an example of this package.
fn test_plugin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let path = dir.join("examples").join("test-plugin");
    assert!(
        path.exists(),
        "the test plugin is missing at {}; `cargo test` builds it",
        path.display()
    );
    path
}

/// The workspace's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// One event line: Task status changes on even ids, Shot creations on odd ones.
fn event(id: i64) -> String {
    let v = if id % 2 == 0 {
        json!({"id": id, "event_type": "Shotgun_Task_Change", "attribute_name": "sg_status_list",
               "meta": {"type": "attribute_change", "attribute_name": "sg_status_list", "old_value": "wtg", "new_value": "ip"},
               "entity": {"type": "Task", "id": id * 10, "name": "Anim"}, "user": {"type": "HumanUser", "id": 42, "name": "Ana Reyes"},
               "project": {"type": "Project", "id": 66, "name": "Forest Spirits"}, "session_uuid": null,
               "created_at": "2026-11-02T10:00:00Z", "description": "status change"})
    } else {
        json!({"id": id, "event_type": "Shotgun_Shot_New", "attribute_name": null,
               "meta": {"type": "new_entity", "entity_type": "Shot", "entity_id": id},
               "entity": {"type": "Shot", "id": id, "name": "010_0010"}, "user": {"type": "ApiUser", "id": 5, "name": "ingest_bot"},
               "project": {"type": "Project", "id": 70, "name": "Harbour Lights"}, "session_uuid": null,
               "created_at": "2026-11-02T10:00:00Z", "description": "created"})
    };
    format!("{v}\n")
}

/// A temporary directory with a configuration, an events file and the state.
struct Ctx {
    dir: tempfile::TempDir,
    /// Daemons started in the background, killed when the test ends, even by a panic.
    started: std::cell::RefCell<Vec<u32>>,
}

impl Drop for Ctx {
    fn drop(&mut self) {
        for &pid in self.started.borrow().iter() {
            // Only if that pid is still our daemon (it may have exited and the pid been reused).
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains("sgevents") {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// The `[daemon]`, `[source]`, `[http]` and `[plugins]` tables with short limits for tests (the
/// HTTP listener on any free port: tests run daemons in parallel). Plugins follow.
const HEADER: &str = r#"
[daemon]
state_dir = "var"
exit_when_idle = true
commit_interval = "1ms"

[source]
kind = "jsonl"
path = "events.jsonl"

[http]
listen = "127.0.0.1:0"

[plugins]
ack_timeout = "2s"
handshake_timeout = "2s"
ping_interval = "1s"
stop_grace = "500ms"
shutdown_drain = "2s"
restart_delay = "20ms"
restart_delay_max = "100ms"
"#;

impl Ctx {
    fn new() -> Ctx {
        Ctx {
            dir: tempfile::tempdir().expect("temp dir"),
            started: Default::default(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes events with the given ids to `events.jsonl` (replacing it).
    fn events(&self, ids: impl IntoIterator<Item = i64>) {
        let text: String = ids.into_iter().map(event).collect();
        fs::write(self.path("events.jsonl"), text).expect("write events");
    }

    /// Appends events.
    fn append_events(&self, ids: impl IntoIterator<Item = i64>) {
        append_events_to(&self.path("events.jsonl"), ids);
    }

    /// Writes `sgevents.toml`: [`HEADER`] with `overrides` applied by a plain text replace of
    /// whole lines (`"key = old" => "key = new"`), then `plugins`.
    fn config(&self, overrides: &[(&str, &str)], plugins: &str) {
        let mut text = HEADER.to_owned();
        for (from, to) in overrides {
            assert!(text.contains(from), "the header has no `{from}`");
            text = text.replace(from, to);
        }
        text.push_str(plugins);
        fs::write(self.path("sgevents.toml"), text).expect("write config");
    }

    /// A `[plugin.NAME]` table running the test plugin with `config`, recording to `NAME.rec`.
    fn test_plugin(&self, name: &str, config: &str) -> String {
        let record = self.path(&format!("{name}.rec"));
        let sep = if config.is_empty() { "" } else { ", " };
        format!(
            "\n[plugin.{name}]\ncommand = [{:?}]\nconfig = {{ record = {:?}{sep}{config} }}\n",
            test_plugin().display().to_string(),
            record.display().to_string()
        )
    }

    fn sgevents(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sgevents"));
        cmd.current_dir(self.dir.path())
            .args(["-c", "sgevents.toml"])
            .args(args)
            .env("SGEVENTS_LOG", "info")
            .env("PYTHONPATH", root().join("sdk-python/src"))
            .env("PYTHONDONTWRITEBYTECODE", "1");
        cmd
    }

    /// Runs `sgevents run` to its end (the configurations exit when idle) and returns its output.
    fn run(&self) -> Output {
        let child = self
            .sgevents(&["run"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sgevents starts");
        wait_output(child)
    }

    /// Starts `sgevents run` in the background, logging to `daemon.log`.
    fn start(&self) -> Child {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("daemon.log"))
            .expect("log file");
        self.sgevents(&["run"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("sgevents starts")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.path("daemon.log")).unwrap_or_default()
    }

    /// The deliveries a test plugin recorded: (event id, attempt), in order.
    fn records(&self, name: &str) -> Vec<(i64, u32)> {
        let text = fs::read_to_string(self.path(&format!("{name}.rec"))).unwrap_or_default();
        // A line still being written (no newline yet) is not a delivery yet.
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .map(|l| {
                let (id, attempt) = l.split_once(' ').expect("`id attempt`");
                (id.parse().expect("id"), attempt.parse().expect("attempt"))
            })
            .collect()
    }

    fn ids(&self, name: &str) -> Vec<i64> {
        self.records(name).into_iter().map(|(id, _)| id).collect()
    }

    /// The state database, read-only.
    fn db(&self) -> Connection {
        let path = self.path("var/state.db");
        Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("state.db opens read-only")
    }

    /// A plugin's row: (state, last_event_id, restarts, disabled_reason).
    fn plugin(&self, name: &str) -> (String, Option<i64>, i64, Option<String>) {
        self.plugin_if_known(name)
            .unwrap_or_else(|| panic!("no row for plugin `{name}` in var/state.db"))
    }

    /// A plugin's row, or `None` while there is no database or row yet.
    fn plugin_if_known(&self, name: &str) -> Option<(String, Option<i64>, i64, Option<String>)> {
        let path = self.path("var/state.db");
        let db = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
        db.query_row(
            "SELECT state, last_event_id, restarts, disabled_reason FROM plugins WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .ok()
    }

    fn failed(&self, name: &str) -> Vec<(i64, i64, String)> {
        let db = self.db();
        let mut stmt = db.prepare("SELECT event_id, attempts, last_error FROM failed_events WHERE plugin = ?1 ORDER BY event_id").expect("query");
        stmt.query_map([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("rows")
            .map(Result::unwrap)
            .collect()
    }
}

/// Appends events with the given ids to the events file at `path`, in one write.
fn append_events_to(path: &Path, ids: impl IntoIterator<Item = i64>) {
    use std::io::Write;
    let text: String = ids.into_iter().map(event).collect();
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open events");
    f.write_all(text.as_bytes()).expect("append");
}

/// An example configuration from `config/`, rewritten to run inside `ctx`: state and ledgers in the
/// temporary folder, the Rust plugin from this build, every other relative path made absolute.
fn example_config(ctx: &Ctx, file: &str, var: &str) -> String {
    let root = root();
    let examples = test_plugin()
        .parent()
        .expect("examples folder")
        .to_path_buf();
    let text =
        fs::read_to_string(root.join("config").join(file)).expect("the example configuration");
    let quoted = |p: PathBuf| format!("{:?}", p.display().to_string());
    let rewritten = text
        .replace(
            &format!("\"../var/{var}/task_status\""),
            &quoted(ctx.path("task_status")),
        )
        .replace(&format!("\"../var/{var}\""), &quoted(ctx.path("var")))
        .replace(
            "\"../target/release/log-events\"",
            &quoted(examples.join("log-events")),
        )
        .replace(
            "\"demo-events.jsonl\"",
            &quoted(root.join("config/demo-events.jsonl")),
        )
        .replace("\"../", &format!("\"{}/", root.display()));
    assert!(
        !rewritten.contains("\"../"),
        "every relative path was redirected:\n{rewritten}"
    );
    rewritten
}

/// Waits for a child to exit and collects its output; kills it after [`GUARD`]. Both pipes are
/// drained while it runs: a child blocked on a full pipe would never exit.
fn wait_output(mut child: Child) -> Output {
    use std::io::Read;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if start.elapsed() > GUARD {
            let _ = child.kill();
            let _ = child.wait();
            let err = stderr.join().unwrap_or_default();
            panic!(
                "sgevents did not exit within {GUARD:?}; stderr:\n{}",
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Polls `cond` until it holds; fails after [`GUARD`] with `what`.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < GUARD, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `signal` to a process.
fn signal(child: &Child, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).expect("signal");
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// Asserts that a run succeeded, showing its log if not.
fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "sgevents failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
