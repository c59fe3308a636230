//! The crash test: 20,000 events, the daemon `kill -9`-ed at random moments several times and
//! restarted. Afterwards every plugin has seen every matching event; an event is delivered again
//! only if it was in flight at a kill, that is sent but not yet finished in a committed transaction
//! (above the committed cursor); cursors end at the last event.

use std::collections::BTreeSet;

use nix::sys::signal::Signal;

use crate::{Ctx, alive, assert_success, signal, wait_for};

const EVENTS: i64 = 20_000;
const KILLS: usize = 5;

#[test]
fn kill_9_at_random_moments_loses_nothing() {
    let ctx = Ctx::new();
    ctx.events(1..=EVENTS);
    let plugins = [
        ("all", ""),
        (
            "tasks",
            r#"subscriptions = [{ name = "t", event_types = ["Shotgun_Task_Change"] }]"#,
        ),
        ("wide", "max_in_flight = 32"),
    ];
    let tables: String = plugins.iter().map(|(n, c)| ctx.test_plugin(n, c)).collect();
    ctx.config(
        &[("commit_interval = \"1ms\"", "commit_interval = \"5ms\"")],
        &tables,
    );
    let expected = |name: &str| -> BTreeSet<i64> {
        (1..=EVENTS)
            .filter(|id| name != "tasks" || id % 2 == 0)
            .collect()
    };

    let mut rng = fastrand::Rng::with_seed(0x5e_e7e5);
    // For each plugin: how many record lines existed at each kill, and the committed last event.
    let mut marks: Vec<Vec<(usize, i64)>> = vec![Vec::new(); plugins.len()];
    for kill in 0..KILLS {
        let before = ctx.ids("all").len();
        // Kill somewhere in the next part of the stream, so that each kill lands mid-stream.
        let target = before + rng.usize(200..(EVENTS as usize - before) / (KILLS - kill + 1));
        let daemon = ctx.start();
        wait_for("progress before the kill", || {
            ctx.ids("all").len() >= target
        });
        signal(&daemon, Signal::SIGKILL);
        let _ = { daemon }.wait();
        // Children notice the closed pipes and exit; wait for them so their last lines are in.
        let pids: Vec<i32> = {
            let db = ctx.db();
            let mut stmt = db
                .prepare("SELECT pid FROM plugins WHERE pid IS NOT NULL")
                .expect("query");
            stmt.query_map([], |r| r.get(0))
                .expect("rows")
                .map(Result::unwrap)
                .collect()
        };
        wait_for("the orphaned plugins to exit", || {
            pids.iter().all(|&p| !alive(p))
        });
        for (i, (name, _)) in plugins.iter().enumerate() {
            let committed = ctx.plugin(name).1.unwrap_or(0);
            marks[i].push((ctx.ids(name).len(), committed));
        }
    }
    assert_success(&ctx.run());

    for (i, (name, _)) in plugins.iter().enumerate() {
        let ids = ctx.ids(name);
        let seen: BTreeSet<i64> = ids.iter().copied().collect();
        assert_eq!(seen, expected(name), "{name} saw every matching event");
        assert_eq!(
            ctx.plugin(name).1,
            Some(EVENTS),
            "{name}'s cursor is at the last event"
        );
        for (k, &(lines, committed)) in marks[i].iter().enumerate() {
            let later = &ids[lines..];
            let repeated: Vec<i64> = later
                .iter()
                .copied()
                .filter(|&id| id <= committed)
                .collect();
            assert!(
                repeated.is_empty(),
                "{name}: after kill {k}, events at or below the committed cursor ({committed}) were delivered again: {:?}",
                &repeated[..repeated.len().min(10)]
            );
        }
        // What is redelivered is what was answered but not yet committed at a kill: a few
        // milliseconds of group commit. A cursor that is not committed would leave thousands.
        for (k, &(lines, committed)) in marks[i].iter().enumerate() {
            let uncommitted: BTreeSet<i64> = ids[..lines]
                .iter()
                .copied()
                .filter(|&id| id > committed)
                .collect();
            assert!(
                uncommitted.len() <= 5000,
                "{name}: at kill {k}, {} delivered events were above the committed cursor ({committed})",
                uncommitted.len()
            );
        }
    }
}
