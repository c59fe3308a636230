//! The README's main command runs `config/demo.toml`; this runs the same file, its paths pointed
//! into a temporary folder, and checks that every plugin (Rust SDK, Python SDK, no SDK) got through
//! every event.

use std::fs;

use crate::{Ctx, assert_success, root};

#[test]
fn the_demo_configuration_runs_to_completion() {
    let ctx = Ctx::new();
    let root = root();
    let rewritten = crate::example_config(&ctx, "demo.toml", "demo");
    fs::write(ctx.path("sgevents.toml"), rewritten).expect("write config");

    let out = ctx.run();
    assert_success(&out);

    let events = fs::read_to_string(root.join("config/demo-events.jsonl")).expect("demo events");
    let parsed: Vec<serde_json::Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).expect("an event"))
        .collect();
    assert!(parsed.len() >= 1000, "the demo has a few thousand events");
    let last = parsed.last().and_then(|e| e["id"].as_i64()).expect("ids");
    for name in ["log-events", "task_status", "count_events"] {
        let (state, last_event, restarts, reason) = ctx.plugin(name);
        assert_eq!(
            (state.as_str(), last_event, restarts, reason),
            ("stopped", Some(last), 0, None),
            "{name}"
        );
        assert!(ctx.failed(name).is_empty(), "{name} failed no event");
    }
    let log = String::from_utf8_lossy(&out.stderr);
    let total = parsed.len();
    assert!(
        log.contains(&format!(
            "{},{:03} events in all; last: event {last} ",
            total / 1000,
            total % 1000
        )),
        "log-events summed up every event, up to the last one"
    );
    let lines = log
        .lines()
        .filter(|l| l.contains("plugin=log-events"))
        .count();
    assert!(
        lines < 20,
        "log-events logs a summary, not a line per event: {lines} lines"
    );
    assert!(
        log.contains(&format!("{} events: ", parsed.len())),
        "count_events counted them all"
    );

    // The Python plugin's ledger holds each non-transient Task status change once.
    let changes = parsed
        .iter()
        .filter(|e| {
            e["event_type"] == "Shotgun_Task_Change"
                && e["attribute_name"] == "sg_status_list"
                && e["meta"]["is_transient"] != true
        })
        .count();
    let mut ledgered = 0;
    for entry in fs::read_dir(ctx.path("task_status")).expect("the ledger folder") {
        ledgered += fs::read_to_string(entry.expect("entry").path())
            .expect("ledger")
            .lines()
            .count();
    }
    assert_eq!(ledgered, changes);
}
