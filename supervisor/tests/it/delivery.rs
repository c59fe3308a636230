//! Delivery: order, fan-out, filters, windows, following a file, where new plugins start.

use crate::{Ctx, assert_success, root, wait_for};

#[test]
fn one_plugin_gets_every_event_once_in_order() {
    let ctx = Ctx::new();
    ctx.events(1..=500);
    ctx.config(&[], &ctx.test_plugin("solo", ""));
    assert_success(&ctx.run());
    assert_eq!(
        ctx.records("solo"),
        (1..=500).map(|id| (id, 1)).collect::<Vec<_>>()
    );
    let (state, last, restarts, _) = ctx.plugin("solo");
    assert_eq!((state.as_str(), last, restarts), ("stopped", Some(500), 0));
}

#[test]
fn fan_out_to_three_plugins_with_filters_and_windows() {
    let ctx = Ctx::new();
    ctx.events(1..=600);
    let tasks = r#"subscriptions = [{ name = "status", event_types = ["Shotgun_Task_*"], attributes = ["sg_status_list"] }]"#;
    let shots = r#"max_in_flight = 16, subscriptions = [{ name = "shots", event_types = ["Shotgun_Shot_New"], project_ids = [70] }]"#;
    let python = format!(
        "\n[plugin.python_counter]\ncommand = [\"python3\", {:?}]\nconfig = {{ report_every = 100000 }}\n",
        root()
            .join("plugins/raw/count_events.py")
            .display()
            .to_string()
    );
    ctx.config(
        &[],
        &format!(
            "{}{}{}{python}",
            ctx.test_plugin("all", ""),
            ctx.test_plugin("tasks", tasks),
            ctx.test_plugin("shots", shots)
        ),
    );
    let out = ctx.run();
    assert_success(&out);
    assert_eq!(ctx.ids("all"), (1..=600).collect::<Vec<_>>());
    assert_eq!(
        ctx.ids("tasks"),
        (1..=600).filter(|id| id % 2 == 0).collect::<Vec<_>>()
    );
    let mut shots = ctx.ids("shots");
    assert_eq!(
        shots,
        (1..=600).filter(|id| id % 2 == 1).collect::<Vec<_>>(),
        "a window sends in journal order"
    );
    shots.dedup();
    assert_eq!(shots.len(), 300);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("600 events: Shotgun_Shot_New=300, Shotgun_Task_Change=300"),
        "the Python plugin's log reaches the daemon's:\n{log}"
    );
    for name in ["all", "tasks", "shots", "python_counter"] {
        assert_eq!(
            ctx.plugin(name).1,
            Some(600),
            "{name}'s cursor is at the end, filtered events included"
        );
    }
}

#[test]
fn a_followed_file_delivers_appended_events() {
    let ctx = Ctx::new();
    ctx.events(1..=10);
    ctx.config(
        &[
            ("exit_when_idle = true", "exit_when_idle = false"),
            (
                "path = \"events.jsonl\"",
                "path = \"events.jsonl\"\nfollow = true\npoll_interval = \"20ms\"",
            ),
        ],
        &ctx.test_plugin("f", ""),
    );
    let mut daemon = ctx.start();
    wait_for("the first ten events", || ctx.ids("f").len() == 10);
    ctx.append_events(11..=25);
    wait_for("the appended events", || ctx.ids("f").len() == 25);
    crate::signal(&daemon, nix::sys::signal::Signal::SIGTERM);
    assert!(daemon.wait().expect("exit").success());
    assert_eq!(ctx.ids("f"), (1..=25).collect::<Vec<_>>());
}

#[test]
fn a_plugin_added_later_starts_at_the_head_unless_told_otherwise() {
    let ctx = Ctx::new();
    ctx.events(1..=20);
    ctx.config(&[], &ctx.test_plugin("first", ""));
    assert_success(&ctx.run());
    ctx.append_events(21..=30);
    let plugins = format!(
        "{}{}{}",
        ctx.test_plugin("first", ""),
        ctx.test_plugin("late", ""),
        ctx.test_plugin("replay", "")
            .replace("\nconfig", "\nstart_at = \"earliest\"\nconfig")
    );
    ctx.config(&[], &plugins);
    assert_success(&ctx.run());
    assert_eq!(ctx.ids("first"), (1..=30).collect::<Vec<_>>());
    assert_eq!(
        ctx.ids("late"),
        (21..=30).collect::<Vec<_>>(),
        "new to an existing database: starts at the head"
    );
    assert_eq!(
        ctx.ids("replay"),
        (1..=30).collect::<Vec<_>>(),
        "start_at = \"earliest\""
    );
}

#[test]
fn bad_lines_in_the_source_are_counted_and_skipped() {
    let ctx = Ctx::new();
    ctx.events(1..=3);
    std::fs::write(
        ctx.path("events.jsonl"),
        format!(
            "{}this is not an event\n{}{}{}",
            crate::event(1),
            crate::event(2),
            crate::event(2),
            crate::event(5)
        ),
    )
    .expect("write");
    ctx.config(&[], &ctx.test_plugin("p", ""));
    let out = ctx.run();
    assert_success(&out);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("line 2 is not an event"), "{log}");
    assert!(log.contains("skipping event 2 on line 4"), "{log}");
    assert_eq!(ctx.ids("p"), [1, 2, 5]);
    let status = ctx
        .sgevents(&["status", "--json"])
        .output()
        .expect("status");
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(
        (
            v["source"]["malformed"].as_i64(),
            v["source"]["skipped"].as_i64()
        ),
        (Some(1), Some(1))
    );
}

#[test]
fn plugins_get_their_environment_and_only_their_own_credentials() {
    let ctx = Ctx::new();
    ctx.events(1..=2);
    let dump = |name: &str| {
        format!(
            "env_dump = {:?}",
            ctx.path(&format!("{name}.env")).display().to_string()
        )
    };
    let with = ctx.test_plugin("with", &dump("with")).replace(
        "\nconfig",
        "\nscript_name = \"task_bot\"\nscript_key_env = \"SGEVENTS_TEST_PLUGIN_KEY\"\nenv = { STUDIO_ROOT = \"/mnt/projects\" }\nconfig",
    );
    let without = ctx.test_plugin("without", &dump("without"));
    ctx.config(
        &[(
            "path = \"events.jsonl\"",
            "path = \"events.jsonl\"\nsite_url = \"https://studio.example\"",
        )],
        &format!("{with}{without}"),
    );
    let out = ctx
        .sgevents(&["run"])
        .env("SGEVENTS_TEST_PLUGIN_KEY", "k3y")
        // The daemon's own environment must not leak a key into a plugin without credentials.
        .env("SGEVENTS_SCRIPT_KEY", "the-daemons-own")
        .output()
        .expect("sgevents runs");
    assert_success(&out);
    let read =
        |name: &str| std::fs::read_to_string(ctx.path(&format!("{name}.env"))).expect("env dump");
    assert_eq!(
        read("with"),
        "SGEVENTS_PROTOCOL=1\nSGEVENTS_PLUGIN=with\nSGEVENTS_SITE_URL=https://studio.example\nSGEVENTS_SCRIPT_NAME=task_bot\n\
         SGEVENTS_SCRIPT_KEY=k3y\nSTUDIO_ROOT=/mnt/projects\n"
    );
    assert_eq!(
        read("without"),
        "SGEVENTS_PROTOCOL=1\nSGEVENTS_PLUGIN=without\nSGEVENTS_SITE_URL=<unset>\nSGEVENTS_SCRIPT_NAME=<unset>\n\
         SGEVENTS_SCRIPT_KEY=<unset>\nSTUDIO_ROOT=<unset>\n"
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("k3y"),
        "the key is never logged"
    );
}

#[test]
fn the_duration_summary_counts_every_answer() {
    let ctx = Ctx::new();
    ctx.events(1..=3000);
    ctx.config(&[], &ctx.test_plugin("t", ""));
    crate::assert_success(&ctx.run());
    let timings: String = ctx
        .db()
        .query_row("SELECT timings FROM plugins WHERE name = 't'", [], |r| {
            r.get(0)
        })
        .expect("timings");
    let timings: serde_json::Value = serde_json::from_str(&timings).expect("json");
    assert_eq!(timings["count"], 3000, "{timings}");
}
