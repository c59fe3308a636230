//! The try-it loop: `deliver` (journaled events to a plugin, nothing moved), `tail` (the journal
//! live), `failed show` (a failed event in full), `new plugin` (a working plugin and its test) and
//! `status --watch` (redrawn in place, checked in a real tmux pane).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use super::*;

/// Every column of every `plugins` row, as SQLite quotes it: to compare byte for byte.
fn plugins_snapshot(ctx: &Ctx) -> Vec<String> {
    let db = ctx.db();
    let columns: Vec<String> = db
        .prepare("SELECT name FROM pragma_table_info('plugins')")
        .expect("columns")
        .query_map([], |r| r.get(0))
        .expect("rows")
        .map(Result::unwrap)
        .collect();
    let select = columns
        .iter()
        .map(|c| format!("quote({c})"))
        .collect::<Vec<_>>()
        .join(" || '|' || ");
    db.prepare(&format!("SELECT {select} FROM plugins ORDER BY name"))
        .expect("query")
        .query_map([], |r| r.get(0))
        .expect("rows")
        .map(Result::unwrap)
        .collect()
}

fn count(ctx: &Ctx, table: &str) -> i64 {
    ctx.db()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .expect("count")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a command to its end (under the guard) and returns its output.
fn output(mut cmd: Command) -> std::process::Output {
    wait_output(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starts"),
    )
}

#[test]
fn deliver_hands_journaled_events_over_and_moves_nothing() {
    let ctx = Ctx::new();
    ctx.events(1..=6);
    ctx.config(
        &[],
        &(ctx.test_plugin("a", "nack_at = 5")
            + "max_attempts = 1\n"
            + &format!(
                "\n[plugin.task_status]\ncommand = [\"python3\", {:?}]\nconfig = {{ ledger_dir = {:?} }}\n",
                root().join("plugins/python/task_status.py").display().to_string(),
                ctx.path("ledger").display().to_string()
            )),
    );
    assert_success(&ctx.run());
    assert_eq!(ctx.ids("a"), [1, 2, 3, 4, 5, 6]);
    let plugins = plugins_snapshot(&ctx);
    let failed = count(&ctx, "failed_events");
    assert_eq!(failed, 1, "event 5 failed for `a`");

    // The test plugin, two chosen events: the same event lines, attempt 1.
    let out = output(ctx.sgevents(&["deliver", "a", "--event", "4", "--event", "1"]));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("event 4: ack"), "{stdout}");
    assert!(stdout.contains("event 1: ack"), "{stdout}");
    assert_eq!(&ctx.records("a")[6..], [(4, 1), (1, 1)]);

    // A nack is printed with its error, and the exit status says not every event was acked.
    let out = output(ctx.sgevents(&["deliver", "a", "--event", "5"]));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("event 5: nack"), "{stdout}");

    // The example Python plugin: the last 2 events it subscribes to (Task status changes).
    let out = output(ctx.sgevents(&["deliver", "task_status", "--last", "2"]));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("event 4 (Shotgun_Task_Change sg_status_list Task 40) -> "),
        "{stdout}"
    );
    assert!(stdout.contains("event 6: ack"), "{stdout}");
    assert!(
        !stdout.contains("event 5"),
        "a new Shot is not a Task status change: {stdout}"
    );

    // An event it does not subscribe to is not sent, as the daemon would not send it.
    let out = output(ctx.sgevents(&["deliver", "task_status", "--event", "3"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("matches none of the plugin's subscriptions"),
        "{}",
        text(&out.stdout)
    );

    // An id that is not journaled is refused, with the journal's range.
    let out = output(ctx.sgevents(&["deliver", "a", "--event", "99"]));
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("event `99` is not in the journal (it holds events 1 to 6)\nhint: "),
        "{stderr}"
    );

    // Nothing moved: the plugins' rows byte for byte, the failed events, no retry.
    assert_eq!(plugins_snapshot(&ctx), plugins);
    assert_eq!(count(&ctx, "failed_events"), failed);
    assert_eq!(count(&ctx, "retries"), 0);
}

#[test]
fn deliver_works_while_the_daemon_runs() {
    let ctx = Ctx::new();
    ctx.events(1..=3);
    ctx.config(
        &[
            ("exit_when_idle = true", "exit_when_idle = false"),
            (
                "path = \"events.jsonl\"",
                "path = \"events.jsonl\"\nfollow = true",
            ),
        ],
        &ctx.test_plugin("a", ""),
    );
    let mut daemon = ctx.start();
    ctx.started.borrow_mut().push(daemon.id());
    wait_for("the daemon delivered every event", || {
        ctx.ids("a").len() == 3
    });
    wait_for("the cursor committed", || {
        ctx.plugin_if_known("a").and_then(|p| p.1) == Some(3)
    });
    let before: (i64, Option<i64>) = ctx
        .db()
        .query_row(
            "SELECT cursor, last_event_id FROM plugins WHERE name = 'a'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("row");

    let out = output(ctx.sgevents(&["deliver", "a", "--event", "2"]));
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("event 2: ack"));
    assert_eq!(ctx.records("a")[3..], [(2, 1)]);

    signal(&daemon, nix::sys::signal::Signal::SIGTERM);
    let status = daemon.wait().expect("daemon exits");
    assert!(status.success(), "{}", ctx.log());
    // Only the daemon's own stop changed the row (its state and pid), never the position.
    let after: (i64, Option<i64>) = ctx
        .db()
        .query_row(
            "SELECT cursor, last_event_id FROM plugins WHERE name = 'a'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("row");
    assert_eq!(after, before);
}

#[test]
fn deliver_a_plugin_under_development_from_an_events_file() {
    let ctx = Ctx::new();
    ctx.events(1..=2);
    ctx.config(&[], "");
    std::fs::write(ctx.path("try.jsonl"), event(7) + &event(8)).expect("events file");
    let record = ctx.path("dev.rec");
    // Not configured: `--command` runs it; no state database is needed.
    let out = output(ctx.sgevents(&[
        "deliver",
        "dev",
        "--event-file",
        "try.jsonl",
        "--command",
        &test_plugin().display().to_string(),
    ]));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("event 7: ack") && stdout.contains("event 8: ack"),
        "{stdout}"
    );
    // The test plugin records nothing without its `record` key: its config is empty, as an
    // unconfigured plugin's is.
    assert!(!record.exists());
    assert!(!ctx.path("var/state.db").exists(), "nothing was written");
}

#[test]
fn failed_show_prints_the_whole_traceback_each_attempt_and_the_event() {
    let ctx = Ctx::new();
    ctx.events(1..=2);
    std::fs::write(
        ctx.path("broken.py"),
        "from sgevents import Plugin\n\nplugin = Plugin()\n\n\ndef helper(event):\n    return event[\"nope\"]\n\n\n@plugin.on(\"Shotgun_Task_Change\")\ndef on_task(ctx, event):\n    helper(event)\n\n\nif __name__ == \"__main__\":\n    plugin.run()\n",
    )
    .expect("plugin");
    ctx.config(
        &[],
        "\n[plugin.broken]\ncommand = [\"python3\", \"broken.py\"]\nmax_attempts = 2\n",
    );
    assert_success(&ctx.run());
    let times: String = ctx
        .db()
        .query_row(
            "SELECT attempt_times FROM failed_events WHERE plugin = 'broken' AND event_id = 2",
            [],
            |r| r.get(0),
        )
        .expect("a failed event with its attempt times");
    let times: Vec<serde_json::Value> = serde_json::from_str(&times).expect("JSON");
    assert_eq!(times.len(), 2, "{times:?}");
    assert_eq!(
        (times[0]["attempt"].as_i64(), times[1]["attempt"].as_i64()),
        (Some(1), Some(2))
    );

    let out = output(ctx.sgevents(&["failed", "show", "broken", "--event", "2"]));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.starts_with("plugin `broken`, event 2 (seq 2): failed at "),
        "{stdout}"
    );
    assert!(stdout.contains("after 2 attempts"), "{stdout}");
    for line in [
        "Traceback (most recent call last):",
        "in on_task",
        "in helper",
        "    return event[\"nope\"]",
        "KeyError: 'nope'",
    ] {
        assert!(stdout.contains(line), "`{line}` is missing:\n{stdout}");
    }
    for t in &times {
        let line = format!(
            "  attempt {:<4} {}",
            t["attempt"].to_string(),
            t["at"].as_str().unwrap()
        );
        assert!(stdout.contains(&line), "`{line}` is missing:\n{stdout}");
    }
    assert!(
        stdout.contains("\"name\": \"Ana Reyes\""),
        "the event: {stdout}"
    );

    let out = output(ctx.sgevents(&["failed", "show", "broken", "--event", "2", "--json"]));
    let detail: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(
        detail["error"]
            .as_str()
            .unwrap()
            .contains("\n    return event[\"nope\"]\n"),
        "{detail}"
    );
    assert_eq!(detail["event"]["id"], 2);
    assert_eq!(detail["attempt_times"].as_array().map(Vec::len), Some(2));

    let out = output(ctx.sgevents(&["failed", "show", "broken", "--event", "1"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(
            "event 1 is not a failed event of plugin `broken`\nhint: `sgevents failed list broken` shows them"
        ),
        "{}",
        text(&out.stderr)
    );
}

/// Reads a child's stdout lines on a thread, so a test can wait for them under the guard.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Starts `sgevents tail ARGS` and waits until it follows the journal.
fn tail(ctx: &Ctx, args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = ctx
        .sgevents(&[&["tail"], args].concat())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tail starts");
    let stderr = child.stderr.take().expect("piped");
    let mut first = String::new();
    BufReader::new(stderr)
        .read_line(&mut first)
        .expect("tail says what it follows");
    assert!(first.starts_with("following the journal of "), "{first}");
    let rx = lines_of(&mut child);
    (child, rx)
}

#[test]
fn tail_follows_new_events_with_filters() {
    let ctx = Ctx::new();
    ctx.events(1..=2);
    ctx.config(
        &[
            ("exit_when_idle = true", "exit_when_idle = false"),
            (
                "path = \"events.jsonl\"",
                "path = \"events.jsonl\"\nfollow = true",
            ),
        ],
        &ctx.test_plugin(
            "shots",
            r#"subscriptions = [{ name = "new_shots", event_types = ["Shotgun_Shot_New"] }]"#,
        ),
    );
    let mut daemon = ctx.start();
    ctx.started.borrow_mut().push(daemon.id());
    wait_for("the plugin handled what was there", || {
        ctx.plugin_if_known("shots").and_then(|p| p.1) == Some(2)
    });

    let (mut tasks, task_lines) = tail(&ctx, &["--type", "Shotgun_Task_*"]);
    let (mut shots, shot_lines) = tail(&ctx, &["--plugin", "shots", "--json"]);
    ctx.append_events(10..=13);

    let next =
        |rx: &mpsc::Receiver<String>| rx.recv_timeout(GUARD).expect("a line within the guard");
    let first = next(&task_lines);
    let words: Vec<&str> = first.split_whitespace().collect();
    assert_eq!(
        words,
        [
            "10",
            "2026-11-02T10:00:00Z",
            "Shotgun_Task_Change",
            "Task",
            "100",
            "(Anim)",
            "sg_status_list",
            "HumanUser",
            "42",
            "(Ana",
            "Reyes)"
        ],
        "{first}"
    );
    assert!(next(&task_lines).trim_start().starts_with("12 "));
    let shot: serde_json::Value = serde_json::from_str(&next(&shot_lines)).expect("JSON");
    assert_eq!(
        (shot["id"].as_i64(), shot["event_type"].as_str()),
        (Some(11), Some("Shotgun_Shot_New"))
    );
    let shot: serde_json::Value = serde_json::from_str(&next(&shot_lines)).expect("JSON");
    assert_eq!(shot["id"], 13);
    // Nothing from before it started, nothing filtered out.
    assert!(task_lines.try_recv().is_err() && shot_lines.try_recv().is_err());

    for child in [&mut tasks, &mut shots] {
        let _ = child.kill();
        let _ = child.wait();
    }
    signal(&daemon, nix::sys::signal::Signal::SIGTERM);
    assert!(daemon.wait().expect("the daemon exits").success());
    let out = output(ctx.sgevents(&["tail", "--plugin", "nobody"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("plugin `nobody` has no recorded subscriptions\nhint: "));
}

/// The `[plugin.NAME]` lines `new plugin` printed.
fn printed_config(stdout: &str, name: &str) -> String {
    let start = stdout
        .find(&format!("[plugin.{name}]"))
        .unwrap_or_else(|| panic!("no [plugin.{name}] in:\n{stdout}"));
    stdout[start..]
        .split("\n\n")
        .next()
        .expect("the table")
        .to_owned()
}

#[test]
fn new_plugins_run_under_the_daemon_and_their_tests_pass() {
    let ctx = Ctx::new();
    ctx.events(1..=4);
    ctx.config(&[], "");
    let mut config = std::fs::read_to_string(ctx.path("sgevents.toml")).expect("config");
    for (name, lang) in [("notes", "python"), ("sh-notes", "sh")] {
        let out =
            output(ctx.sgevents(&["new", "plugin", name, "--lang", lang, "--dir", "plugins"]));
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
        let table = printed_config(&stdout, name);
        config.push('\n');
        config.push_str(&table);
        config.push('\n');
    }
    assert!(
        config.contains("command = [\"python3\", \"plugins/notes/notes.py\"]"),
        "{config}"
    );
    assert!(
        config.contains("command = [\"sh\", \"plugins/sh-notes/sh_notes.sh\"]"),
        "{config}"
    );
    std::fs::write(ctx.path("sgevents.toml"), &config).expect("config");

    // Both run under the real daemon and ack the Task status changes (2 and 4).
    let out = ctx.run();
    assert_success(&out);
    let log = text(&out.stderr);
    assert!(log.contains("task 20: wtg -> ip"), "{log}");
    assert!(log.contains("event 4: a Task's status changed"), "{log}");
    for name in ["notes", "sh-notes"] {
        assert_eq!(ctx.plugin(name).1, Some(4), "{log}");
        assert!(ctx.failed(name).is_empty(), "{log}");
    }

    // `deliver` prints the answer, and the plugin's log lines as the daemon's records (stderr).
    let out = output(ctx.sgevents(&["deliver", "sh-notes", "--event", "2"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("event 2: ack"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("event 2: a Task's status changed"),
        "{}",
        text(&out.stderr)
    );

    // Their own tests pass.
    let out = output({
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "unittest", "-v"])
            .current_dir(ctx.path("plugins/notes"))
            .env("PYTHONPATH", root().join("sdk-python/src"))
            .env("PYTHONDONTWRITEBYTECODE", "1");
        cmd
    });
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("Ran 2 tests"),
        "{}",
        text(&out.stderr)
    );
    let out = output({
        let mut cmd = Command::new("sh");
        cmd.arg(ctx.path("plugins/sh-notes/test.sh"));
        cmd
    });
    assert!(out.status.success(), "{}", text(&out.stdout));

    // Rust: the crate is written (compiling it is left to `cargo test` in its folder).
    let out = output(ctx.sgevents(&[
        "new", "plugin", "rs-notes", "--lang", "rust", "--dir", "plugins",
    ]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let main = std::fs::read_to_string(ctx.path("plugins/rs-notes/src/main.rs")).expect("main.rs");
    assert!(main.contains("sgevents_sdk::testing"), "{main}");
    let cargo =
        std::fs::read_to_string(ctx.path("plugins/rs-notes/Cargo.toml")).expect("Cargo.toml");
    assert!(
        cargo.contains(&format!(
            "{:?}",
            root().join("sdk-rust").display().to_string()
        )),
        "{cargo}"
    );

    // An existing folder is never overwritten.
    let out = output(ctx.sgevents(&["new", "plugin", "notes", "--lang", "sh", "--dir", "plugins"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("already exists\nhint: "));
}

/// A tmux server of this test's own (its own socket), killed when the test ends.
struct Tmux(String);

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.0])
            .args(args)
            .output()
            .expect("tmux runs")
    }

    fn screen(&self) -> String {
        text(&self.cmd(&["capture-pane", "-p", "-t", "watch"]).stdout)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

#[test]
fn status_watch_redraws_in_place_in_tmux() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("tmux is not installed: skipped");
        return;
    }
    let ctx = Ctx::new();
    ctx.events(1..=2);
    ctx.config(&[], &ctx.test_plugin("a", ""));
    assert_success(&ctx.run());
    let tmux = Tmux(format!("sgevents-test-{}", std::process::id()));
    let command = format!(
        "cd {:?} && {:?} -c sgevents.toml status --watch 0.2",
        ctx.path("").display().to_string(),
        env!("CARGO_BIN_EXE_sgevents")
    );
    let started = tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        "watch",
        "-x",
        "160",
        "-y",
        "30",
        &command,
    ]);
    assert!(started.status.success(), "{}", text(&started.stderr));
    wait_for("the first frame", || {
        tmux.screen().contains("daemon:  not running")
    });
    // A change in the database shows in a later frame, in the same place: one table on the screen.
    ctx.append_events(3..=3);
    assert_success(&ctx.run());
    wait_for("a frame with the new position", || {
        let screen = tmux.screen();
        screen
            .lines()
            .any(|l| l.starts_with("a ") && l.split_whitespace().nth(3) == Some("3"))
    });
    let screen = tmux.screen();
    assert_eq!(screen.matches("PLUGIN").count(), 1, "{screen}");
    assert_eq!(
        screen.matches("every 200ms: sgevents status").count(),
        1,
        "{screen}"
    );
    assert!(
        screen.starts_with("every 200ms: sgevents status (Ctrl-C stops)"),
        "the frame starts at the top:\n{screen}"
    );
}
