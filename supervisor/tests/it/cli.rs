//! The command line: configuration errors, `check`, `status`, and reading the state database with
//! `sqlite3` while the daemon runs.

use std::process::Command;

use nix::sys::signal::Signal;

use crate::{Ctx, assert_success, root, signal, wait_for};

fn stderr_of(ctx: &Ctx, args: &[&str]) -> (i32, String) {
    let out = ctx.sgevents(args).output().expect("sgevents runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_configurations_are_refused_with_a_clear_error_and_nothing_written() {
    let ctx = Ctx::new();
    ctx.events(1..=3);
    let (code, err) = stderr_of(&ctx, &["run"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("error: sgevents.toml: cannot read the configuration"),
        "{err}"
    );
    assert!(err.contains("hint: pass the file with `-c PATH`"), "{err}");

    let cases: &[(&str, &str)] = &[
        (
            "[source]\nkind = \"jsonl\"\npath = \"events.jsonl\"\n[plugins]\nack_timeuot = \"3s\"\n",
            "unknown field `ack_timeuot`",
        ),
        (
            "[source]\nkind = \"jsonl\"\npath = \"events.jsonl\"\n[plugins]\nack_timeout = \"3 parsecs\"\n",
            "`plugins.ack_timeout` = `\"3 parsecs\"`: not a duration",
        ),
        (
            "[daemon]\nstate_dir = \"var\"\n",
            "there is no `[source]` table",
        ),
        (
            "[source]\nkind = \"jsonl\"\npath = \"events.jsonl\"\n[plugin.ghost]\nconfig = { a = 1 }\n",
            "`[plugin.ghost]` has no `command`",
        ),
        (
            "[source]\nkind = \"jsonl\"\npath = \"events.jsonl\"\n[plugins]\npaths = [\"nowhere\"]\n",
            "`plugins.paths` = `./nowhere`: cannot read the folder",
        ),
        (
            "[source]\nkind = \"jsonl\"\npath = \"events.jsonl\"\n[plugin.x]\ncommand = [\"x\"]\nmax_attempts = -1\n",
            "`plugin.x.max_attempts` = `-1`: out of range",
        ),
        ("this is not toml", "invalid configuration"),
    ];
    for (text, want) in cases {
        std::fs::write(ctx.path("sgevents.toml"), text).expect("write");
        let (code, err) = stderr_of(&ctx, &["run"]);
        assert_eq!(code, 1, "{text}");
        assert!(err.contains(want), "expected `{want}` in:\n{err}");
        assert!(
            err.contains("hint: "),
            "every error says what to do:\n{err}"
        );
        assert!(
            !ctx.path("var").exists(),
            "a refused configuration writes nothing"
        );
    }
}

#[test]
fn check_reports_each_plugin_and_fails_on_any_problem() {
    let ctx = Ctx::new();
    ctx.events(1..=3);
    let good = ctx.test_plugin("good", r#"subscriptions = [{ name = "status", event_types = ["Shotgun_Task_Change"], attributes = ["sg_status_list"] }]"#);
    let python = format!(
        "\n[plugin.python]\ncommand = [\"python3\", {:?}]\n",
        root()
            .join("plugins/raw/count_events.py")
            .display()
            .to_string()
    );
    ctx.config(&[], &format!("{good}{python}"));
    let out = ctx.sgevents(&["check"]).output().expect("check runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("plugin good: ok, protocol 1, max_in_flight 1"),
        "{text}"
    );
    assert!(text.contains(r#"status: {"name":"status","event_types":["Shotgun_Task_Change"],"attributes":["sg_status_list"]}"#), "{text}");
    assert!(text.contains("plugin python: ok"), "{text}");
    assert!(
        !ctx.path("var").exists(),
        "check does not create the state database"
    );

    ctx.config(
        &[],
        &format!("{good}{}", ctx.test_plugin("old", "bad_register = true")),
    );
    let out = ctx.sgevents(&["check"]).output().expect("check runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("plugin old: error: the plugin chose protocol version `99`"),
        "{text}"
    );
}

#[test]
fn status_works_with_and_without_the_daemon() {
    let ctx = Ctx::new();
    ctx.events(1..=40);
    ctx.config(
        &[],
        &format!(
            "{}{}",
            ctx.test_plugin("a", ""),
            ctx.test_plugin("b", "term_at = 7")
        ),
    );
    let (code, err) = stderr_of(&ctx, &["status"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("there is no state database at")
            && err.contains("hint: start the daemon once"),
        "{err}"
    );

    assert_success(&ctx.run());
    let out = ctx.sgevents(&["status"]).output().expect("status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.starts_with("daemon:  not running, stopped "), "{text}");
    assert!(
        text.contains("line 40, last event 40, 0 malformed, 0 skipped"),
        "{text}"
    );
    let header = text
        .lines()
        .find(|l| l.starts_with("PLUGIN"))
        .expect("a table");
    for column in [
        "STATE",
        "PID",
        "LAST EVENT",
        "LAG",
        "RETRIES",
        "FAILED",
        "RESTARTS",
        "LAST ERROR",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let b = text
        .lines()
        .find(|l| l.starts_with("b "))
        .expect("a row for b");
    let cells: Vec<&str> = b.split_whitespace().collect();
    assert_eq!(
        &cells[..8],
        ["b", "stopped", "-", "40", "0", "0", "1", "0"],
        "{b}"
    );

    let out = ctx
        .sgevents(&["status", "--json"])
        .output()
        .expect("status");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["plugins"][0]["name"], "a");
    assert_eq!(v["plugins"][1]["failed"], 1);
    assert_eq!(v["journal"]["head"], 40);

    // While it runs: the daemon's pid and live plugin states.
    ctx.config(
        &[("exit_when_idle = true", "exit_when_idle = false")],
        &ctx.test_plugin("a", ""),
    );
    let mut daemon = ctx.start();
    wait_for("a running plugin in status", || {
        let out = ctx
            .sgevents(&["status", "--json"])
            .output()
            .expect("status");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["daemon"]["running"] == true
            && v["plugins"][0]["state"] == "running"
            && v["plugins"][0]["pid"].is_i64()
    });
    signal(&daemon, Signal::SIGTERM);
    assert!(daemon.wait().expect("exit").success());
}

#[test]
fn sqlite3_reads_the_state_while_the_daemon_runs() {
    let ctx = Ctx::new();
    ctx.events(1..=300);
    ctx.config(
        &[("exit_when_idle = true", "exit_when_idle = false")],
        &ctx.test_plugin("p", ""),
    );
    let mut daemon = ctx.start();
    wait_for("the state database", || ctx.path("var/state.db").exists());
    // From the moment it exists, every read succeeds while the daemon writes.
    wait_for("the journal and the cursor", || {
        let out = Command::new("sqlite3")
            .current_dir(ctx.path(""))
            .args(["file:var/state.db?mode=ro", "SELECT (SELECT count(*) FROM events) || ' ' || last_event_id FROM plugins WHERE name = 'p'"])
            .output()
            .expect("the sqlite3 command line shell is installed");
        assert!(
            out.status.success(),
            "sqlite3 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim() == "300 300"
    });
    let out = Command::new("sqlite3")
        .current_dir(ctx.path(""))
        .args([
            "-header",
            "file:var/state.db?mode=ro",
            "SELECT name, state, lag FROM plugin_lag",
        ])
        .output()
        .expect("sqlite3");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "name|state|lag\np|running|0\n"
    );
    signal(&daemon, Signal::SIGTERM);
    assert!(daemon.wait().expect("exit").success());
}

#[test]
fn status_works_without_the_daemons_keys_in_the_environment() {
    let ctx = Ctx::new();
    ctx.events(1..=2);
    ctx.config(&[], &ctx.test_plugin("p", ""));
    assert_success(&ctx.run());
    // The same state, now configured with a ShotGrid source whose key lives in a variable that
    // this shell does not have, as on an operator's login.
    std::fs::write(
        ctx.path("sgevents.toml"),
        "[daemon]\nstate_dir = \"var\"\n[source]\nkind = \"shotgrid\"\nurl = \"https://studio.example\"\n\
         script_name = \"sgevents\"\nscript_key_env = \"SGEVENTS_TEST_ABSENT_KEY\"\n",
    )
    .expect("config");
    let out = ctx
        .sgevents(&["status"])
        .env_remove("SGEVENTS_TEST_ABSENT_KEY")
        .output()
        .expect("status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("PLUGIN"));
    let (code, err) = stderr_of(&ctx, &["check"]);
    assert_eq!(code, 1, "commands that use the key still require it");
    assert!(err.contains("SGEVENTS_TEST_ABSENT_KEY"), "{err}");
}

#[test]
fn sighup_reloads_and_never_stops_the_daemon() {
    let ctx = Ctx::new();
    ctx.events(1..=3);
    ctx.config(
        &[("exit_when_idle = true", "exit_when_idle = false")],
        &ctx.test_plugin("p", ""),
    );
    let mut daemon = ctx.start();
    wait_for("the events", || ctx.ids("p").len() == 3);
    signal(&daemon, Signal::SIGHUP);
    wait_for("the reload to be logged", || {
        ctx.log()
            .contains("reloaded the configuration: nothing changed")
    });
    assert!(
        daemon.try_wait().expect("try_wait").is_none(),
        "still running"
    );
    signal(&daemon, Signal::SIGTERM);
    assert!(daemon.wait().expect("exit").success());
}

#[test]
fn a_second_daemon_on_the_same_state_is_refused_and_a_killed_one_does_not_block() {
    let ctx = Ctx::new();
    ctx.events(1..=3);
    ctx.config(
        &[("exit_when_idle = true", "exit_when_idle = false")],
        &ctx.test_plugin("p", ""),
    );
    let first = ctx.start();
    wait_for("the first daemon", || ctx.ids("p").len() == 3);
    let (code, err) = stderr_of(&ctx, &["run"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "another sgevents (pid {}) is using the state directory",
            first.id()
        )),
        "{err}"
    );
    assert!(err.contains("hint: stop it first"), "{err}");

    signal(&first, Signal::SIGKILL);
    let _ = { first }.wait();
    ctx.append_events(4..=5);
    let mut second = ctx.start();
    wait_for(
        "the next daemon, despite the lock file left by kill -9",
        || ctx.ids("p").contains(&5),
    );
    signal(&second, Signal::SIGTERM);
    assert!(second.wait().expect("exit").success());
}

#[test]
fn a_plugin_file_without_the_executable_bit_is_named_at_check_and_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let ctx = Ctx::new();
    ctx.events(1..=3);
    std::fs::create_dir(ctx.path("plugins")).expect("mkdir");
    let file = ctx.path("plugins/forgot_chmod.py");
    std::fs::write(&file, "#!/usr/bin/env python3\n").expect("write");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    ctx.config(
        &[("[plugins]\n", "[plugins]\npaths = [\"plugins\"]\n")],
        &ctx.test_plugin("t", ""),
    );
    let out = ctx.sgevents(&["check"]).output().expect("check runs");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains(
            "note:          `./plugins/forgot_chmod.py` in a plugins folder is not executable, so it is not a plugin\n\
             hint: run `chmod +x ./plugins/forgot_chmod.py` to make it one, or move it out of the folder\n"
        ),
        "{report}"
    );
    let run = ctx.run();
    crate::assert_success(&run);
    assert!(
        String::from_utf8_lossy(&run.stderr)
            .contains("`./plugins/forgot_chmod.py` in a plugins folder is not executable"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

#[test]
fn a_python_traceback_is_shown_by_its_exception_and_plugin_list_works_without_the_daemon() {
    let ctx = Ctx::new();
    ctx.events(1..=2);
    std::fs::write(
        ctx.path("broken.py"),
        "from sgevents import Plugin\n\
         plugin = Plugin()\n\
         @plugin.on(\"*\")\n\
         def handle(ctx, event):\n    return event[\"no such key\"]\n\
         plugin.run()\n",
    )
    .expect("plugin file");
    ctx.config(
        &[],
        "\n[plugin.broken]\ncommand = [\"python3\", \"broken.py\"]\nmax_attempts = 1\n",
    );
    assert_success(&ctx.run());

    let failed = ctx
        .sgevents(&["failed", "list"])
        .output()
        .expect("failed list");
    let text = String::from_utf8_lossy(&failed.stdout);
    assert!(text.contains("KeyError: 'no such key'"), "{text}");
    assert!(!text.contains("Traceback"), "{text}");
    let json = ctx
        .sgevents(&["failed", "list", "--json"])
        .output()
        .expect("failed list");
    assert!(
        String::from_utf8_lossy(&json.stdout).contains("Traceback (most recent call last)"),
        "the whole text stays for scripts"
    );

    // The daemon has exited: `plugin list` reads the state database, like `status`.
    let list = ctx
        .sgevents(&["plugin", "list"])
        .output()
        .expect("plugin list");
    assert_success(&list);
    let text = String::from_utf8_lossy(&list.stdout);
    let status = ctx.sgevents(&["status"]).output().expect("status");
    let status = String::from_utf8_lossy(&status.stdout);
    let header = "PLUGIN  STATE    PID  LAST EVENT  LAG  RETRIES  FAILED  RESTARTS  MS P50/P95/MAX  LAST ERROR";
    assert!(text.starts_with(header), "{text}");
    assert!(status.contains(header), "one table style:\n{status}");
    assert!(
        text.contains("last delivery error: event 2 (attempt 1): KeyError: 'no such key'"),
        "{text}"
    );
    for t in [&text, &status] {
        assert!(t.contains("broken  stopped"), "{t}");
    }
}
