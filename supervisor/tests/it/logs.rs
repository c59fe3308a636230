//! Logs: the files of `daemon.log_dir` (the daemon's log, one file per plugin, the timing log),
//! and JSON lines with `--log-format json`.

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::{Ctx, assert_success};

/// A Python plugin (the SDK) that logs, for each event, a warning and an info line naming itself.
const TALKER: &str = r#"
import os
from sgevents import Plugin

plugin = Plugin()
NAME = os.environ["SGEVENTS_PLUGIN"]

@plugin.on("*")
def talk(ctx, event):
    ctx.log.warning("%s saw event %d", NAME, event["id"])
    ctx.log.info("%s is fine", NAME)

if __name__ == "__main__":
    plugin.run()
"#;

/// `[plugin.NAME]` tables running [`TALKER`], written to `talker.py` in the test's folder.
fn talkers(ctx: &Ctx, names: &[&str]) -> String {
    let script = ctx.path("talker.py");
    fs::write(&script, TALKER).expect("write talker.py");
    names
        .iter()
        .map(|name| {
            format!(
                "\n[plugin.{name}]\ncommand = [\"python3\", {:?}]\n",
                script.display().to_string()
            )
        })
        .collect()
}

/// [`Ctx::config`]'s override that adds `keys` to the `[daemon]` table.
fn daemon_keys(keys: &str) -> (&'static str, String) {
    (
        "state_dir = \"var\"",
        format!("state_dir = \"var\"\n{keys}"),
    )
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn log_files_hold_the_daemon_log_and_each_plugin_s_own_lines() {
    let ctx = Ctx::new();
    ctx.events(1..=3);
    let (from, to) = daemon_keys("log_dir = \"logs\"\nlog_per_plugin = true");
    ctx.config(&[(from, &to)], &talkers(&ctx, &["alpha", "beta"]));
    let out = ctx.run();
    assert_success(&out);

    let main = read(&ctx.path("logs/sgevents.log"));
    assert!(
        main.contains(&format!(
            "INFO sgevents {} started",
            env!("CARGO_PKG_VERSION")
        )),
        "the start line:\n{main}"
    );
    assert!(
        !main.contains("saw event"),
        "plugins' own lines go to their files:\n{main}"
    );

    for (name, other) in [("alpha", "beta"), ("beta", "alpha")] {
        let file = read(&ctx.path(&format!("logs/plugins/{name}.log")));
        for id in 1..=3 {
            assert!(
                file.contains(&format!("WARN {name} saw event {id} plugin={name}")),
                "{name}'s warning about event {id}, with its level:\n{file}"
            );
        }
        assert!(
            file.contains(&format!("INFO {name} is fine plugin={name}")),
            "{file}"
        );
        assert!(
            !file.contains(other),
            "only {name}'s records are in its file:\n{file}"
        );
    }

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("alpha saw event 3") && stderr.contains("beta saw event 3"),
        "stderr keeps every record:\n{stderr}"
    );
    assert!(
        ctx.path("logs/timing.log").exists(),
        "the timing log is on with log_dir"
    );
}

/// Needs the plugin actor's timing record (`target: "sgevents::timing"`, one per answered
/// delivery).
#[test]
fn the_timing_log_has_one_line_per_answered_delivery() {
    let ctx = Ctx::new();
    ctx.events(1..=5);
    let (from, to) = daemon_keys("log_dir = \"logs\"");
    ctx.config(&[(from, &to)], &ctx.test_plugin("solo", ""));
    let out = ctx.run();
    assert_success(&out);
    let timing = read(&ctx.path("logs/timing.log"));
    let lines: Vec<&str> = timing.lines().collect();
    assert_eq!(lines.len(), 5, "one line per delivery:\n{timing}");
    for (id, line) in (1..=5).zip(&lines) {
        assert!(
            line.contains(&format!(
                "INFO delivery plugin=solo event_id={id} attempt=1 outcome=\"ack\" duration_ms="
            )),
            "{line}"
        );
        assert!(line.contains(" delay_ms="), "{line}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("delivery plugin="),
        "timing records stay off stderr:\n{stderr}"
    );
    let main = read(&ctx.path("logs/sgevents.log"));
    assert!(!main.contains("delivery plugin="), "{main}");
}

#[test]
fn the_json_flag_makes_stderr_and_the_files_json_lines() {
    let ctx = Ctx::new();
    ctx.events(1..=2);
    let (from, to) = daemon_keys("log_dir = \"logs\"\nlog_format = \"text\"");
    ctx.config(&[(from, &to)], &talkers(&ctx, &["alpha"]));
    let child = ctx
        .sgevents(&["--log-format", "json", "run"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sgevents starts");
    let out = crate::wait_output(child);
    assert_success(&out);

    let parse = |text: &str, what: &str| -> Vec<Value> {
        text.lines()
            .map(|line| {
                let v: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("a {what} line is not JSON ({e}): {line}"));
                assert!(v["level"].is_string(), "{what}: no level: {line}");
                assert!(v["message"].is_string(), "{what}: no message: {line}");
                v
            })
            .collect()
    };
    let stderr = parse(&String::from_utf8_lossy(&out.stderr), "stderr");
    let warning = stderr
        .iter()
        .find(|v| v["message"] == "alpha saw event 2")
        .unwrap_or_else(|| panic!("the plugin's line on stderr: {stderr:?}"));
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert_eq!(warning["plugin"], "alpha", "{warning}");

    let main = parse(&read(&ctx.path("logs/sgevents.log")), "sgevents.log");
    assert!(
        main.iter().any(|v| v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("sgevents ") && m.ends_with(" started"))),
        "the flag wins over `log_format = \"text\"`: {main:?}"
    );
}

#[test]
fn a_log_dir_that_cannot_be_made_stops_the_daemon_at_start() {
    let ctx = Ctx::new();
    ctx.events(1..=2);
    fs::write(ctx.path("blocker"), "a file where the log folder should be").expect("write");
    let (from, to) = daemon_keys("log_dir = \"blocker/logs\"");
    ctx.config(&[(from, &to)], &ctx.test_plugin("solo", ""));
    let out = ctx.run();
    assert!(!out.status.success(), "the daemon must not start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: cannot create the log folder `./blocker/logs`"),
        "{stderr}"
    );
    assert!(stderr.contains("\nhint: "), "{stderr}");
    assert!(
        ctx.records("solo").is_empty(),
        "no event was delivered: {:?}",
        ctx.records("solo")
    );
}

#[test]
fn a_plugins_last_lines_at_a_graceful_stop_reach_the_log() {
    // The plugin writes 500 lines of 4 KiB on stderr after its stdin closed, then exits at once:
    // the daemon stops only once they are relayed.
    let ctx = Ctx::new();
    ctx.events(1..=3);
    ctx.config(
        &[],
        &ctx.test_plugin("bye", "farewell_lines = 500, farewell_pad = 4096"),
    );
    let out = ctx.run();
    assert_success(&out);
    let log = String::from_utf8_lossy(&out.stderr);
    let farewells = log
        .lines()
        .filter(|l| l.contains("plugin=bye") && l.contains("farewell "))
        .count();
    assert_eq!(farewells, 500, "every last line was relayed");
    assert!(log.contains("farewell 500 of 500 "), "the last one too");
}
