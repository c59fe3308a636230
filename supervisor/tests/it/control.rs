//! Operating one plugin at a time through the control socket and the CLI: restart, stop, start,
//! enable, disable, rewind, failed retry and drop, reload, `after` — with the daemon running, and
//! the database-only commands with it stopped.

use std::fs;
use std::process::{Child, Output};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::{Ctx, alive, assert_success, signal, wait_for};

/// A followed events file and a daemon that runs until it is stopped.
pub(crate) const LIVE: &[(&str, &str)] = &[
    ("exit_when_idle = true", "exit_when_idle = false"),
    (
        "path = \"events.jsonl\"",
        "path = \"events.jsonl\"\nfollow = true\npoll_interval = \"20ms\"",
    ),
];

impl Ctx {
    /// Runs `sgevents ARGS` to its end.
    pub(crate) fn cli(&self, args: &[&str]) -> Output {
        self.sgevents(args).output().expect("sgevents runs")
    }

    /// Runs `sgevents ARGS --json` and returns the response, asserting the exit status matches.
    pub(crate) fn cli_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.cli(&all);
        let response: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "`sgevents {}` printed no JSON ({e}):\n{}\n{}",
                all.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert_eq!(
            out.status.success(),
            response["ok"] == true,
            "the exit status says what `ok` says: {response}"
        );
        response
    }

    pub(crate) fn pid_of(&self, name: &str) -> i32 {
        fs::read_to_string(self.path(&format!("{name}.pid")))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits until the daemon answers on its control socket.
    pub(crate) fn wait_ready(&self) {
        wait_for("the control socket", || {
            self.path("var/control.sock").exists() && self.cli(&["plugin", "list"]).status.success()
        });
    }

    pub(crate) fn stop(&self, mut daemon: Child) {
        signal(&daemon, Signal::SIGTERM);
        let status = daemon.wait().expect("daemon exits");
        assert!(status.success(), "clean exit; log:\n{}", self.log());
    }
}

/// Appends the events `ids` to the followed file from a thread, 50 at a time, `pause_ms` apart.
pub(crate) fn feed(
    ctx: &Ctx,
    ids: std::ops::RangeInclusive<i64>,
    pause_ms: u64,
) -> std::thread::JoinHandle<()> {
    let path = ctx.path("events.jsonl");
    std::thread::spawn(move || {
        for chunk in ids.collect::<Vec<i64>>().chunks(50) {
            crate::append_events_to(&path, chunk.iter().copied());
            std::thread::sleep(std::time::Duration::from_millis(pause_ms));
        }
    })
}

pub(crate) fn with_pid(ctx: &Ctx, name: &str, extra: &str) -> String {
    let pid = ctx.path(&format!("{name}.pid"));
    let sep = if extra.is_empty() { "" } else { ", " };
    ctx.test_plugin(
        name,
        &format!("pid_file = {:?}{sep}{extra}", pid.display().to_string()),
    )
}

#[test]
fn restarting_one_of_four_plugins_under_load_leaves_the_others_alone() {
    let ctx = Ctx::new();
    ctx.events(1..=100);
    let names = ["a", "b", "c", "d"];
    // b is slow to stop (it ignores SIGTERM and outlives its stdin), so its restart takes a
    // while: long enough to see the others' deliveries go on meanwhile.
    let plugins: String = names
        .iter()
        .map(|n| {
            let stubborn = if *n == "b" {
                ", ignore_sigterm = true"
            } else {
                ""
            };
            with_pid(
                &ctx,
                n,
                &format!("slow_ms = 2, max_in_flight = 4{stubborn}"),
            )
        })
        .collect();
    ctx.config(LIVE, &plugins);
    let daemon = ctx.start();
    ctx.wait_ready();
    wait_for("every plugin started", || {
        names.iter().all(|n| ctx.pid_of(n) > 0)
    });
    let before: Vec<i32> = names.iter().map(|n| ctx.pid_of(n)).collect();

    // Events keep coming while `b` restarts.
    let writer = feed(&ctx, 101..=3000, 20);
    wait_for("deliveries under way", || ctx.ids("b").len() > 150);
    let counts =
        |ctx: &Ctx| -> Vec<usize> { ["a", "c", "d"].iter().map(|n| ctx.ids(n).len()).collect() };
    let before_restart = counts(&ctx);
    let response = ctx.cli_json(&["plugin", "restart", "b"]);
    let after_restart = counts(&ctx);
    for (i, n) in ["a", "c", "d"].iter().enumerate() {
        assert!(
            after_restart[i] > before_restart[i],
            "{n} received events while b was restarting ({} then {})",
            before_restart[i],
            after_restart[i]
        );
    }
    assert_eq!(response["data"]["action"], "restarted", "{response}");
    assert!(
        response["message"]
            .as_str()
            .unwrap()
            .contains("restarted plugin `b`"),
        "{response}"
    );
    wait_for("b's new child", || ctx.pid_of("b") != before[1]);
    writer.join().expect("writer");

    for n in names {
        wait_for(&format!("{n} caught up"), || {
            ctx.ids(n).last() == Some(&3000)
        });
    }
    let after: Vec<i32> = names.iter().map(|n| ctx.pid_of(n)).collect();
    assert_eq!(
        [before[0], before[2], before[3]],
        [after[0], after[2], after[3]],
        "the other plugins kept their processes"
    );
    assert!(!alive(before[1]), "b's old child is gone");
    ctx.stop(daemon);
    for n in names {
        assert_eq!(
            ctx.ids(n),
            (1..=3000).collect::<Vec<_>>(),
            "{n}: everything, once, in order (a graceful restart drains what is in flight)"
        );
    }
    assert_eq!(ctx.plugin("b").2, 0, "an operator's restart is not a crash");
}

#[test]
fn stop_start_disable_and_enable_one_plugin() {
    let ctx = Ctx::new();
    ctx.events(1..=10);
    ctx.config(
        LIVE,
        &format!("{}{}", with_pid(&ctx, "a", ""), with_pid(&ctx, "b", "")),
    );
    let daemon = ctx.start();
    ctx.wait_ready();
    wait_for("both caught up", || {
        ctx.ids("a").len() == 10 && ctx.ids("b").len() == 10
    });
    let a_pid = ctx.pid_of("a");
    let b_pid = ctx.pid_of("b");

    let r = ctx.cli_json(&["plugin", "stop", "b"]);
    assert_eq!(r["data"]["action"], "stopped", "{r}");
    assert!(!alive(b_pid), "b's child stopped");
    wait_for("b recorded as stopped", || ctx.plugin("b").0 == "stopped");
    ctx.append_events(11..=20);
    wait_for("a goes on", || ctx.ids("a").len() == 20);
    assert_eq!(ctx.ids("b").len(), 10, "a stopped plugin gets nothing");
    assert_eq!(ctx.pid_of("a"), a_pid);

    let r = ctx.cli_json(&["plugin", "start", "b"]);
    assert_eq!(r["data"]["action"], "started", "{r}");
    wait_for("b catches up", || ctx.ids("b").len() == 20);

    let r = ctx.cli_json(&["plugin", "disable", "b"]);
    assert_eq!(r["data"]["action"], "disabled", "{r}");
    let (state, _, _, reason) = ctx.plugin("b");
    assert_eq!(state, "disabled");
    assert!(reason.unwrap().contains("disabled by an operator"));
    let r = ctx.cli_json(&["plugin", "restart", "b"]);
    assert_eq!(r["ok"], false);
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("sgevents plugin enable b"),
        "a disabled plugin is not restarted; the error says how to enable it: {r}"
    );

    // The list shows both, with b's reason.
    let out = ctx.cli(&["plugin", "list"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("PLUGIN"), "{text}");
    let b_line = text
        .lines()
        .find(|l| l.starts_with("b "))
        .expect("b listed");
    assert!(
        b_line.contains("disabled") && b_line.contains("disabled by an operator"),
        "{b_line}"
    );

    // Disabled survives a restart of the daemon.
    ctx.stop(daemon);
    let daemon = ctx.start();
    ctx.wait_ready();
    ctx.append_events(21..=25);
    wait_for("a goes on", || ctx.ids("a").len() == 25);
    assert_eq!(
        ctx.ids("b").len(),
        20,
        "b stays disabled across a daemon restart"
    );
    let r = ctx.cli_json(&["plugin", "enable", "b"]);
    assert_eq!(r["data"]["action"], "enabled", "{r}");
    wait_for("b catches up after enable", || ctx.ids("b").len() == 25);
    ctx.stop(daemon);
    assert_eq!(
        ctx.ids("b"),
        (1..=25).collect::<Vec<_>>(),
        "nothing lost, nothing twice"
    );

    let r = ctx.cli_json(&["plugin", "restart", "nope"]);
    assert_eq!(r["ok"], false);
    let m = r["message"].as_str().unwrap();
    assert!(m.contains("daemon is not running"), "{m}");
}

#[test]
fn rewind_replays_from_an_event_or_skips_the_backlog() {
    let ctx = Ctx::new();
    ctx.events(1..=30);
    ctx.config(
        LIVE,
        &format!("{}{}", ctx.test_plugin("a", ""), ctx.test_plugin("b", "")),
    );
    let daemon = ctx.start();
    ctx.wait_ready();
    wait_for("caught up", || {
        ctx.ids("a").len() == 30 && ctx.ids("b").len() == 30
    });

    let r = ctx.cli_json(&["plugin", "rewind", "a", "--to-event", "21", "--dry-run"]);
    assert_eq!(r["data"]["replayed"], 10, "{r}");
    assert_eq!(r["data"]["dry_run"], true);
    assert!(r["message"].as_str().unwrap().contains("would move"), "{r}");
    assert_eq!(ctx.plugin("a").1, Some(30), "a dry run changes nothing");
    assert_eq!(ctx.ids("a").len(), 30);

    let r = ctx.cli_json(&["plugin", "rewind", "a", "--to-event", "21"]);
    assert_eq!(r["data"]["replayed"], 10, "{r}");
    assert_eq!(r["data"]["next_event_id"], 21);
    wait_for("the replay", || ctx.ids("a").len() == 40);
    let ids = ctx.ids("a");
    assert_eq!(
        &ids[30..],
        (21..=30).collect::<Vec<_>>(),
        "replayed in order"
    );
    assert_eq!(ctx.ids("b").len(), 30, "the other plugin is not rewound");

    let r = ctx.cli_json(&["plugin", "rewind", "a", "--to-event", "999"]);
    assert_eq!(
        r["data"]["next_event_id"],
        Value::Null,
        "past the newest: waits for new events"
    );

    let r = ctx.cli_json(&["plugin", "rewind", "a", "--to-event", "0"]);
    assert_eq!(r["data"]["replayed"], 30, "from the start: {r}");
    assert_eq!(
        r["message"],
        "moved plugin `a`, which had finished up to event 30: 30 journaled events will be offered again; its next event is 1\n\
         note: event 0 is older than the journal, which starts at event 1; rewinding to there",
        "event ids, not journal positions; and a note for an event before the journal"
    );
    wait_for("the full replay", || ctx.ids("a").len() == 70);
    ctx.stop(daemon);

    // Offline: skip b's backlog while the daemon is stopped.
    ctx.append_events(31..=40);
    let r = ctx.cli_json(&["plugin", "rewind", "b", "--to-latest", "--dry-run"]);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(
        r["data"]["skipped"], 0,
        "the stopped daemon journaled nothing new yet: {r}"
    );
    let daemon = ctx.start();
    ctx.wait_ready();
    wait_for("b gets the new events", || ctx.ids("b").len() == 40);
    ctx.stop(daemon);
    let out = ctx.cli(&["plugin", "rewind", "b", "--to-event", "35"]);
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("6 journaled events will be offered again"),
        "{text}"
    );
    assert!(text.contains("the daemon is not running"), "{text}");
    let daemon = ctx.start();
    ctx.wait_ready();
    wait_for("b's offline rewind", || ctx.ids("b").len() == 46);
    ctx.stop(daemon);
    assert_eq!(&ctx.ids("b")[40..], (35..=40).collect::<Vec<_>>());

    // Bad input: a clear error, nothing changed.
    let out = ctx.cli(&["plugin", "rewind", "b"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--to-event") && err.contains("--to-latest"),
        "{err}"
    );
    let r = ctx.cli_json(&["plugin", "rewind", "ghost", "--to-latest"]);
    assert_eq!(r["ok"], false);
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("known plugins: a, b"),
        "{r}"
    );
}

#[test]
fn failed_events_are_listed_retried_and_dropped() {
    let ctx = Ctx::new();
    ctx.events(1..=20);
    // Nacked once at 7 and 9: with max_attempts = 1 they fail at once; the retry (attempt 2)
    // succeeds. 12 is termed every time.
    let plugins = ctx
        .test_plugin("f", "nack_at = [7, 9], nack_times = 1, term_at = 12")
        .replace("\nconfig", "\nmax_attempts = 1\nconfig");
    ctx.config(LIVE, &plugins);
    let daemon = ctx.start();
    ctx.wait_ready();
    wait_for("three failures", || ctx.failed("f").len() == 3);

    let r = ctx.cli_json(&["failed", "list", "f"]);
    let ids: Vec<i64> = r["data"]["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["event_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [7, 9, 12], "{r}");
    let out = ctx.cli(&["failed", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("EVENT") && text.lines().count() == 4,
        "{text}"
    );

    let r = ctx.cli_json(&["failed", "retry", "f", "--event", "7"]);
    assert_eq!(r["data"]["events"], 1, "{r}");
    wait_for("7 delivered again and acked", || ctx.failed("f").len() == 2);
    let sevens: Vec<_> = ctx.records("f").into_iter().filter(|r| r.0 == 7).collect();
    assert_eq!(sevens, [(7, 1), (7, 2)], "the retry is delivery 2");

    let r = ctx.cli_json(&["failed", "retry", "f"]);
    assert_eq!(r["data"]["events"], 2, "{r}");
    wait_for("9 acked, 12 failed again", || {
        let f = ctx.failed("f");
        f.len() == 1 && f[0].0 == 12 && f[0].1 == 2
    });
    let r = ctx.cli_json(&["failed", "retry", "f", "--event", "8"]);
    assert_eq!(r["ok"], false);
    assert!(
        r["message"].as_str().unwrap().contains("failed list f"),
        "{r}"
    );
    ctx.stop(daemon);

    // Offline: retry is recorded and done at the next start; drop forgets.
    let r = ctx.cli_json(&["failed", "retry", "f", "--event", "12"]);
    assert_eq!(r["ok"], true, "{r}");
    let pending: Option<String> = ctx
        .db()
        .query_row(
            "SELECT retry_requested_at FROM failed_events WHERE plugin = 'f' AND event_id = 12",
            [],
            |r| r.get(0),
        )
        .expect("row");
    assert!(pending.is_some(), "the retry waits for the daemon");
    let daemon = ctx.start();
    ctx.wait_ready();
    wait_for("12 delivered at start", || {
        ctx.records("f").iter().filter(|r| r.0 == 12).count() == 3
    });
    wait_for("12 failed again", || {
        ctx.failed("f").first().is_some_and(|f| f.1 == 3)
    });
    ctx.stop(daemon);
    let r = ctx.cli_json(&["failed", "drop", "f"]);
    assert_eq!(r["data"]["events"], 1, "{r}");
    assert!(ctx.failed("f").is_empty());
    let ids: std::collections::BTreeSet<i64> = ctx.ids("f").into_iter().collect();
    assert_eq!(ids.len(), 20, "every event delivered");
    assert_eq!(
        ctx.records("f").len(),
        20 + 1 + 2 + 1,
        "each event once, plus one redelivery per retry asked for"
    );
}

#[test]
fn reload_restarts_only_what_changed_and_keeps_a_bad_configuration_out() {
    let ctx = Ctx::new();
    ctx.events(1..=10);
    let base = format!("{}{}", with_pid(&ctx, "a", ""), with_pid(&ctx, "b", ""));
    ctx.config(LIVE, &base);
    let daemon = ctx.start();
    ctx.wait_ready();
    wait_for("caught up", || {
        ctx.ids("a").len() == 10 && ctx.ids("b").len() == 10
    });
    let (a_pid, b_pid) = (ctx.pid_of("a"), ctx.pid_of("b"));

    // Nothing changed.
    let r = ctx.cli_json(&["reload"]);
    assert!(
        r["message"].as_str().unwrap().contains("nothing changed"),
        "{r}"
    );

    // b's settings change; c is new.
    let changed = format!(
        "{}{}{}",
        with_pid(&ctx, "a", ""),
        with_pid(&ctx, "b", "slow_ms = 1"),
        with_pid(&ctx, "c", "")
    );
    ctx.config(LIVE, &changed);
    signal(&daemon, Signal::SIGHUP);
    wait_for("b restarted", || {
        ctx.pid_of("b") != b_pid && ctx.pid_of("b") > 0
    });
    wait_for("c started", || ctx.pid_of("c") > 0);
    assert_eq!(
        ctx.pid_of("a"),
        a_pid,
        "a did not change, so it was not restarted"
    );

    // A bad file is refused, the running configuration stays.
    fs::write(ctx.path("sgevents.toml"), "[daemon\nbroken").expect("write");
    let out = ctx.cli(&["reload"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unclosed table") && err.contains("keeps its running configuration"),
        "{err}"
    );
    // Through SIGHUP, with a file that parses but does not validate.
    ctx.config(LIVE, &format!("{changed}\n[plugin.d]\n"));
    signal(&daemon, Signal::SIGHUP);
    wait_for("the rejection logged", || {
        ctx.log().contains("the new configuration is invalid")
    });
    ctx.append_events(11..=15);
    wait_for("the old configuration keeps running", || {
        ["a", "b", "c"]
            .iter()
            .all(|n| ctx.ids(n).last() == Some(&15))
    });
    assert_eq!(ctx.pid_of("a"), a_pid);

    // c goes away: stopped, its state kept.
    ctx.config(
        LIVE,
        &format!(
            "{}{}",
            with_pid(&ctx, "a", ""),
            with_pid(&ctx, "b", "slow_ms = 1")
        ),
    );
    let c_pid = ctx.pid_of("c");
    let r = ctx.cli_json(&["reload"]);
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("no longer configured"),
        "{r}"
    );
    assert!(!alive(c_pid), "c's child stopped");
    assert_eq!(ctx.plugin("c").1, Some(15), "c's position is kept");
    ctx.stop(daemon);
}

#[test]
fn after_holds_a_plugin_back_until_the_one_it_waits_for_finished() {
    let ctx = Ctx::new();
    ctx.events(1..=30);
    // `first` hangs on 10 (once): until it is killed and redelivered, `second` must not get 10.
    // `free` waits for nobody: once it has an event, a `second` that was not held back would
    // have had it too.
    let plugins = format!(
        "{}{}{}",
        ctx.test_plugin("first", "hang_at = 10, hang_times = 1"),
        ctx.test_plugin("second", "")
            .replace("\nconfig", "\nafter = [\"first\"]\nconfig"),
        ctx.test_plugin("free", "")
    );
    ctx.config(
        &[
            LIVE[0],
            LIVE[1],
            ("ack_timeout = \"2s\"", "ack_timeout = \"1s\""),
        ],
        &plugins,
    );
    let daemon = ctx.start();
    wait_for("first is stuck on 10", || ctx.ids("first").contains(&10));
    assert!(
        ctx.ids("second").iter().all(|&id| id < 10),
        "second never gets an event before first finished it: {:?}",
        ctx.ids("second")
    );
    wait_for("both finish", || {
        ctx.ids("first").last() == Some(&30) && ctx.ids("second").last() == Some(&30)
    });
    assert_eq!(ctx.ids("second"), (1..=30).collect::<Vec<_>>());

    // A disabled `first` holds `second` back, and the list says so.
    let r = ctx.cli_json(&["plugin", "disable", "first"]);
    assert_eq!(r["ok"], true, "{r}");
    ctx.append_events(31..=35);
    wait_for("free gets 35", || ctx.ids("free").last() == Some(&35));
    assert_eq!(ctx.ids("second").last(), Some(&30), "held back");
    let r = ctx.cli_json(&["plugin", "list"]);
    let note = r["data"]["notes"]["second"].as_str().unwrap_or_default();
    assert!(note.contains("waits for `first` (disabled)"), "{r}");
    let out = ctx.cli(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("second"))
        .expect("second listed");
    assert!(
        line.contains("held back: waits for `first` (disabled)"),
        "{text}"
    );
    let out = ctx.cli(&["status", "--json"]);
    let status: Value = serde_json::from_slice(&out.stdout).expect("json");
    let second = status["plugins"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "second"))
        .expect("second in the status");
    assert_eq!(second["held_back_by"][0], "first", "{status}");
    assert!(
        second["timings"]["count"].as_u64().unwrap_or(0) > 0,
        "status has a duration summary per plugin: {status}"
    );
    let r = ctx.cli_json(&["plugin", "enable", "first"]);
    assert_eq!(r["ok"], true, "{r}");
    wait_for("second goes on", || ctx.ids("second").last() == Some(&35));
    ctx.stop(daemon);
}

#[test]
fn after_must_name_plugins_and_make_no_cycle() {
    let ctx = Ctx::new();
    ctx.events(1..=3);
    let cyc = format!(
        "{}{}",
        ctx.test_plugin("x", "")
            .replace("\nconfig", "\nafter = [\"y\"]\nconfig"),
        ctx.test_plugin("y", "")
            .replace("\nconfig", "\nafter = [\"x\"]\nconfig")
    );
    ctx.config(&[], &cyc);
    let out = ctx.cli(&["check"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cycle") && err.contains("x waits for y waits for x"),
        "{err}"
    );

    ctx.config(
        &[],
        &ctx.test_plugin("x", "")
            .replace("\nconfig", "\nafter = [\"nobody\"]\nconfig"),
    );
    let out = ctx.cli(&["run"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plugin.x.after") && err.contains("\"nobody\""),
        "{err}"
    );
    assert!(!ctx.path("var/state.db").exists(), "nothing started");
}

#[test]
fn the_control_socket_is_private_and_answers_bad_requests_clearly() {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::fs::PermissionsExt;
    let ctx = Ctx::new();
    ctx.events(1..=3);
    ctx.config(LIVE, &ctx.test_plugin("a", ""));
    let daemon = ctx.start();
    ctx.wait_ready();
    let sock = ctx.path("var/control.sock");
    let mode = fs::metadata(&sock).expect("socket").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let stream = std::os::unix::net::UnixStream::connect(&sock).expect("connect");
    let mut reader = BufReader::new(&stream);
    let mut ask = |line: &str| -> Value {
        (&stream)
            .write_all(format!("{line}\n").as_bytes())
            .expect("write");
        let mut answer = String::new();
        reader.read_line(&mut answer).expect("read");
        serde_json::from_str(&answer).expect("a JSON answer")
    };
    let r = ask("not json");
    assert_eq!(r["ok"], false);
    assert!(r["message"].as_str().unwrap().contains("hint:"), "{r}");
    let r = ask(r#"{"command": "plugin_explode", "plugin": "a"}"#);
    assert_eq!(r["ok"], false);
    let r = ask(r#"{"command": "plugin_list"}"#);
    assert_eq!(r["ok"], true, "one connection serves several requests: {r}");
    assert_eq!(r["data"]["plugins"][0]["name"], "a");
    ctx.stop(daemon);
    assert!(!sock.exists(), "the socket is removed at exit");
}

#[test]
fn replaced_new_and_removed_executables_are_picked_up_while_running() {
    use std::os::unix::fs::PermissionsExt;
    let ctx = Ctx::new();
    ctx.events(1..=5);
    let bin = ctx.path("bin");
    fs::create_dir_all(&bin).expect("bin");
    // A plugin is a small script around the test plugin, so each version can say it started.
    let version = |name: &str, v: u32| {
        format!(
            "#!/bin/sh\necho {v} >> {:?}\nexec {:?}\n",
            ctx.path(&format!("{name}.versions")).display().to_string(),
            crate::test_plugin().display().to_string()
        )
    };
    let install = |name: &str, v: u32| {
        // An atomic save, as editors and deploy tools do: a temporary file renamed over.
        let tmp = bin.join(format!(".{name}.tmp"));
        fs::write(&tmp, version(name, v)).expect("write");
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::rename(&tmp, bin.join(name)).expect("rename");
    };
    let versions = |name: &str| -> Vec<u32> {
        fs::read_to_string(ctx.path(&format!("{name}.versions")))
            .unwrap_or_default()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect()
    };
    install("p", 1);
    install("q", 1);
    let table = |name: &str| {
        format!(
            "\n[plugin.{name}]\nconfig = {{ record = {:?}, pid_file = {:?} }}\n",
            ctx.path(&format!("{name}.rec")).display().to_string(),
            ctx.path(&format!("{name}.pid")).display().to_string()
        )
    };
    let mut overrides = LIVE.to_vec();
    overrides.push(("[plugins]", "[plugins]\npaths = [\"bin\"]"));
    ctx.config(&overrides, &format!("{}{}", table("p"), table("q")));
    let daemon = ctx.start();
    ctx.wait_ready();
    wait_for("p and q deliver", || {
        ctx.ids("p").len() == 5 && ctx.ids("q").len() == 5
    });
    let q_pid = ctx.pid_of("q");

    // Replaced: version 2 serves the next event, and q is untouched. Issue 5 asked for "within
    // 2 s"; what stands behind that bound is checked instead of the wall clock, which a loaded
    // machine can stretch: the restart came from the watcher's report of this very change (whose
    // debounce is 300 ms), as a reload of p alone, and not from a crash, a signal or a periodic
    // rescan (there is none). The test sends no `reload` and no SIGHUP.
    install("p", 2);
    ctx.append_events([6]);
    wait_for("version 2 of p delivers event 6", || {
        versions("p") == [1, 2] && ctx.ids("p").contains(&6)
    });
    let log = ctx.log();
    let p_path = bin.join("p").display().to_string();
    let noticed = log
        .lines()
        .position(|l| l.contains("plugin files changed: ") && l.contains(&p_path))
        .unwrap_or_else(|| panic!("the watcher reported `{p_path}`:\n{log}"));
    let restarted = log
        .lines()
        .position(|l| l.contains("plugin `p` changed; restarted it"))
        .unwrap_or_else(|| panic!("the reload restarted p:\n{log}"));
    assert!(noticed < restarted, "the change came first:\n{log}");
    assert!(
        !log.lines()
            .any(|l| l.contains("plugin `p`") && l.contains("restarting in")),
        "p was restarted by the change, not by a crash:\n{log}"
    );
    assert_eq!(ctx.pid_of("q"), q_pid, "q was not restarted");
    assert_eq!(versions("q"), [1]);

    // Editor temporary files change nothing (an executable `q~` is no second `q`), and a new
    // executable r starts (it has no table: discovered as it is). r's start comes from a change
    // seen after the editor files', so by then they were seen too.
    fs::write(bin.join(".q.swp"), "x").expect("swap file");
    fs::write(bin.join("q~"), "x").expect("backup file");
    fs::set_permissions(bin.join("q~"), fs::Permissions::from_mode(0o755)).expect("chmod");
    install("r", 1);
    wait_for("r runs", || {
        versions("r") == [1] && ctx.plugin_if_known("r").is_some_and(|p| p.0 == "running")
    });
    assert_eq!(versions("q"), [1], "editor files restarted nothing");
    assert_eq!(ctx.pid_of("q"), q_pid);
    ctx.append_events([7, 8]);
    wait_for("r gets 8", || ctx.plugin("r").1 == Some(8));

    // Removed: q stops, its state kept; back: it resumes where it stopped.
    fs::remove_file(bin.join("q")).expect("remove");
    wait_for("q stopped", || {
        ctx.plugin("q").0 == "stopped" && !crate::alive(q_pid)
    });
    ctx.append_events([9, 10]);
    wait_for("the others go on", || {
        ctx.ids("p").contains(&10) && ctx.plugin("r").1 == Some(10)
    });
    assert!(!ctx.ids("q").contains(&9));
    install("q", 2);
    wait_for("q resumes", || ctx.ids("q").ends_with(&[9, 10]));
    ctx.stop(daemon);
    assert_eq!(
        ctx.ids("q"),
        (1..=10).collect::<Vec<_>>(),
        "nothing lost while it was away"
    );
    let mut p = ctx.ids("p");
    p.dedup();
    assert_eq!(p, (1..=10).collect::<Vec<_>>());
}

#[test]
fn after_holds_under_load_while_plugins_are_restarted() {
    let ctx = Ctx::new();
    ctx.events(1..=50);
    let trace = ctx.path("trace");
    let traced = |name: &str, extra: &str| {
        ctx.test_plugin(
            name,
            &format!(
                "trace = {:?}, tag = {name:?}, max_in_flight = 8{extra}",
                trace.display().to_string()
            ),
        )
    };
    // c waits for a and b; b waits for a. a is slow, b a little.
    let plugins = format!(
        "{}{}{}",
        traced("a", ", slow_ms = 1"),
        traced("b", "").replace("\nconfig", "\nafter = [\"a\"]\nconfig"),
        traced("c", "").replace("\nconfig", "\nafter = [\"a\", \"b\"]\nconfig"),
    );
    ctx.config(LIVE, &plugins);
    let daemon = ctx.start();
    ctx.wait_ready();
    let writer = feed(&ctx, 51..=1500, 10);
    for (round, name) in ["a", "b", "a", "c", "b", "a"].iter().enumerate() {
        wait_for("progress", || ctx.ids("c").len() > 150 * (round + 1));
        let r = ctx.cli_json(&["plugin", "restart", name]);
        assert_eq!(r["ok"], true, "{r}");
    }
    writer.join().expect("writer");
    wait_for("c caught up", || ctx.ids("c").last() == Some(&1500));
    ctx.stop(daemon);

    // In the trace, every `b N recv` comes after some `a N done`, and every `c N recv` after
    // an `a N done` and a `b N done`.
    let text = fs::read_to_string(&trace).expect("trace");
    let mut done: std::collections::HashSet<(String, i64)> = Default::default();
    let mut checked = 0;
    for line in text.lines() {
        let mut parts = line.split(' ');
        let (tag, id, phase) = (
            parts.next().unwrap().to_owned(),
            parts.next().unwrap().parse::<i64>().unwrap(),
            parts.next().unwrap(),
        );
        if phase == "done" {
            done.insert((tag, id));
            continue;
        }
        let waits_for: &[&str] = match tag.as_str() {
            "b" => &["a"],
            "c" => &["a", "b"],
            _ => &[],
        };
        for w in waits_for {
            assert!(
                done.contains(&(w.to_string(), id)),
                "{tag} got event {id} before {w} finished it"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 1500 * 3,
        "every delivery was checked ({checked})"
    );
    for n in ["a", "b", "c"] {
        let mut ids = ctx.ids(n);
        ids.dedup();
        let unique: std::collections::BTreeSet<i64> = ids.iter().copied().collect();
        assert_eq!(unique.len(), 1500, "{n} got every event");
    }
}

#[test]
fn a_plugin_named_before_the_one_it_runs_after_still_gets_its_events() {
    let ctx = Ctx::new();
    ctx.events(1..=20);
    // `a` sorts before `z`: its gate is built once `z`'s keeper exists, not from nothing.
    let plugins = format!(
        "{}{}",
        ctx.test_plugin("a", "")
            .replace("\nconfig", "\nafter = [\"z\"]\nconfig"),
        ctx.test_plugin("z", "")
    );
    ctx.config(&[], &plugins);
    crate::assert_success(&ctx.run());
    assert_eq!(ctx.ids("z"), (1..=20).collect::<Vec<_>>());
    assert_eq!(ctx.ids("a"), (1..=20).collect::<Vec<_>>());
}

#[test]
fn a_plugin_that_appears_after_a_failed_reload_waits_to_start_with_its_settings() {
    use std::os::unix::fs::PermissionsExt;
    let ctx = Ctx::new();
    ctx.events(1..=5);
    let bin = ctx.path("bin");
    fs::create_dir_all(&bin).expect("bin");
    let mut overrides = LIVE.to_vec();
    overrides.push(("[plugins]", "[plugins]\npaths = [\"bin\"]"));
    ctx.config(&overrides, &ctx.test_plugin("a", ""));
    let daemon = ctx.start();
    ctx.wait_ready();
    wait_for("a caught up", || ctx.ids("a").len() == 5);

    // A table for `late`, which wants every journaled event, before its executable exists: the
    // reload fails.
    let late = format!(
        "\n[plugin.late]\nstart_at = \"earliest\"\nconfig = {{ record = {:?} }}\n",
        ctx.path("late.rec").display().to_string()
    );
    ctx.config(&overrides, &format!("{}{late}", ctx.test_plugin("a", "")));
    signal(&daemon, Signal::SIGHUP);
    wait_for("the failed reload", || {
        ctx.log().contains("the new configuration is invalid")
    });

    // Its executable arrives: the watcher sees it, but it waits for the configuration.
    let tmp = bin.join(".late.tmp");
    fs::write(
        &tmp,
        format!(
            "#!/bin/sh\nexec {:?}\n",
            crate::test_plugin().display().to_string()
        ),
    )
    .expect("write");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::rename(&tmp, bin.join("late")).expect("rename");
    wait_for("the watcher's warning", || {
        ctx.log().contains("plugin `late` appeared, but")
    });
    assert!(
        ctx.plugin_if_known("late").is_none(),
        "not started with the defaults"
    );

    // Now the configuration loads: `late` starts with its `start_at`, from the first event.
    let r = ctx.cli_json(&["reload"]);
    assert_eq!(r["ok"], true, "{r}");
    wait_for("late gets every journaled event", || {
        ctx.ids("late").len() == 5
    });
    ctx.stop(daemon);
    assert_eq!(ctx.ids("late"), (1..=5).collect::<Vec<_>>());
}

#[test]
fn a_reload_that_changes_after_never_runs_a_plugin_twice_at_once_nor_stalls_its_followers() {
    let ctx = Ctx::new();
    ctx.events(1..=5);
    let trace = ctx.path("trace");
    let traced = |name: &str, extra: &str| {
        with_pid(
            &ctx,
            name,
            &format!(
                "trace = {:?}, tag = {name:?}{extra}",
                trace.display().to_string()
            ),
        )
    };
    // `a` runs after `x`, `b` after `a`. `a` is slow: a reload lands while it works on an event.
    let config = |a_after: &str| {
        format!(
            "{}{}{}",
            traced("x", ""),
            traced("a", ", slow_ms = 300")
                .replace("\nconfig", &format!("\nafter = [{a_after}]\nconfig")),
            traced("b", "").replace("\nconfig", "\nafter = [\"a\"]\nconfig"),
        )
    };
    ctx.config(LIVE, &config("\"x\""));
    let daemon = ctx.start();
    ctx.wait_ready();
    wait_for("b caught up", || ctx.ids("b").len() == 5);
    let first_a = ctx.pid_of("a");

    ctx.append_events(6..=8);
    wait_for("a working on 6", || ctx.ids("a").contains(&6));
    // `a` no longer waits for `x`: its gate is rebuilt, and so is `b`'s.
    ctx.config(LIVE, &config(""));
    let r = ctx.cli_json(&["reload"]);
    assert_eq!(r["ok"], true, "{r}");
    wait_for("a restarted", || {
        ctx.pid_of("a") != first_a && ctx.pid_of("a") > 0
    });
    ctx.append_events(9..=10);
    wait_for("b gets the events after the reload", || {
        ctx.ids("b").contains(&10)
    });
    ctx.stop(daemon);

    // Never two instances of `a` at once: each `recv` of `a` is followed by its `done` before
    // the next `recv` (its window is 1).
    let text = fs::read_to_string(&trace).expect("trace");
    let mut open: Option<&str> = None;
    for line in text.lines().filter(|l| l.starts_with("a ")) {
        let mut parts = line.split(' ');
        let (id, phase) = (parts.nth(1).unwrap_or(""), parts.next().unwrap_or(""));
        match phase {
            "recv" => {
                assert!(
                    open.is_none(),
                    "a second `a` got event {id} while {open:?} was in the works:\n{text}"
                );
                open = Some(id);
            }
            _ => open = None,
        }
    }
}
