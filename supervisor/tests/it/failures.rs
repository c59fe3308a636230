//! Failures: crashes, crash loops, nack, term, fatal, hangs, protocol violations, stubborn
//! children, and the graceful drain.

use nix::sys::signal::Signal;

use crate::{Ctx, alive, assert_success, signal, wait_for};

#[test]
fn a_crash_mid_stream_restarts_the_plugin_and_redelivers() {
    let ctx = Ctx::new();
    ctx.events(1..=50);
    ctx.config(
        &[],
        &format!(
            "{}{}",
            ctx.test_plugin("crashy", "crash_at = 20, crash_times = 1"),
            ctx.test_plugin("calm", "")
        ),
    );
    assert_success(&ctx.run());
    let records = ctx.records("crashy");
    let twenty: Vec<_> = records.iter().filter(|(id, _)| *id == 20).collect();
    assert_eq!(
        twenty,
        [&(20, 1), &(20, 2)],
        "delivered again after the restart, as attempt 2"
    );
    let mut ids: Vec<i64> = records.iter().map(|r| r.0).collect();
    ids.dedup();
    assert_eq!(ids, (1..=50).collect::<Vec<_>>());
    assert_eq!(ctx.plugin("crashy").2, 1, "one restart");
    assert_eq!(
        ctx.ids("calm"),
        (1..=50).collect::<Vec<_>>(),
        "the other plugin is untouched"
    );
    assert_eq!(ctx.plugin("calm").2, 0);
}

#[test]
fn a_crash_loop_ends_disabled_and_the_others_go_on() {
    let ctx = Ctx::new();
    ctx.events(1..=30);
    ctx.config(
        &[],
        &format!(
            "{}{}",
            ctx.test_plugin("loop", "exit_at_start = 3"),
            ctx.test_plugin("calm", "")
        ),
    );
    let out = ctx.run();
    assert_success(&out);
    let (state, _, restarts, reason) = ctx.plugin("loop");
    assert_eq!(state, "disabled");
    assert_eq!(restarts, 10);
    let reason = reason.expect("a reason");
    assert!(
        reason.starts_with("crash loop: 10 restarts within 15m; last: exited"),
        "{reason}"
    );
    assert!(
        reason.contains("exiting at start with status 3"),
        "the reason quotes the plugin's last log line: {reason}"
    );
    assert_eq!(ctx.ids("calm"), (1..=30).collect::<Vec<_>>());
}

#[test]
fn nack_is_retried_then_failed_after_max_attempts() {
    let ctx = Ctx::new();
    ctx.events(1..=10);
    let plugins = ctx
        .test_plugin("n", "nack_at = 7")
        .replace("\nconfig", "\nmax_attempts = 3\nconfig")
        + &ctx.test_plugin("m", "nack_at = 4, nack_times = 2");
    ctx.config(&[], &plugins);
    assert_success(&ctx.run());
    let sevens: Vec<_> = ctx.records("n").into_iter().filter(|r| r.0 == 7).collect();
    assert_eq!(sevens, [(7, 1), (7, 2), (7, 3)]);
    assert_eq!(
        ctx.failed("n"),
        [(
            7,
            3,
            "cannot do event 7 yet (given up after 3 attempts)".to_owned()
        )]
    );
    assert_eq!(
        *ctx.ids("n").last().expect("records"),
        10,
        "moved on after the failure"
    );
    assert_eq!(ctx.plugin("n").1, Some(10));
    let fours: Vec<_> = ctx.records("m").into_iter().filter(|r| r.0 == 4).collect();
    assert_eq!(
        fours,
        [(4, 1), (4, 2), (4, 3)],
        "succeeded on the third attempt"
    );
    assert!(ctx.failed("m").is_empty());
    let pending: i64 = ctx
        .db()
        .query_row("SELECT count(*) FROM retries", [], |r| r.get(0))
        .expect("count");
    assert_eq!(pending, 0, "finished events leave no retry behind");
}

#[test]
fn term_fails_the_event_at_once() {
    let ctx = Ctx::new();
    ctx.events(1..=5);
    ctx.config(&[], &ctx.test_plugin("t", "term_at = 3"));
    assert_success(&ctx.run());
    assert_eq!(ctx.ids("t"), [1, 2, 3, 4, 5]);
    assert_eq!(
        ctx.failed("t"),
        [(3, 1, "event 3 can never work".to_owned())]
    );
}

#[test]
fn fatal_disables_keeping_the_position_until_the_config_changes() {
    let ctx = Ctx::new();
    ctx.events(1..=10);
    ctx.config(&[], &ctx.test_plugin("f", "fatal_at = 6"));
    assert_success(&ctx.run());
    assert_eq!(ctx.ids("f"), [1, 2, 3, 4, 5, 6]);
    let (state, last, _, reason) = ctx.plugin("f");
    assert_eq!(
        (state.as_str(), last),
        ("disabled", Some(5)),
        "the position stays before the event that failed"
    );
    assert_eq!(
        reason.as_deref(),
        Some("fatal error: cannot go on at event 6")
    );

    // Restarting the daemon with the same configuration keeps it disabled.
    let out = ctx.run();
    assert_success(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("plugin `f` stays disabled"));
    assert_eq!(ctx.ids("f").len(), 6);

    // Fixing it (any change to its configuration) enables it; it resumes at event 6.
    ctx.config(&[], &ctx.test_plugin("f", "fatal_at = 999"));
    assert_success(&ctx.run());
    assert_eq!(ctx.ids("f"), [1, 2, 3, 4, 5, 6, 6, 7, 8, 9, 10]);
    assert_eq!(ctx.plugin("f").0, "stopped");
}

#[test]
fn exit_status_125_and_failed_handshakes_disable_at_once() {
    let ctx = Ctx::new();
    ctx.events(1..=3);
    let plugins = [
        ctx.test_plugin("quits", "exit_at_start = 125"),
        ctx.test_plugin("old", "bad_register = true"),
        ctx.test_plugin("chatty", "banner = true"),
    ]
    .concat();
    ctx.config(&[], &plugins);
    assert_success(&ctx.run());
    for (name, want) in [
        ("quits", "exited during the handshake (exit status: 125)"),
        (
            "old",
            "failed handshake: the plugin chose protocol version `99`",
        ),
        ("chatty", "failed handshake: line is not JSON"),
    ] {
        let (state, _, restarts, reason) = ctx.plugin(name);
        assert_eq!((state.as_str(), restarts), ("disabled", 0), "{name}");
        let reason = reason.unwrap_or_default();
        assert!(
            reason.contains(want) || reason.starts_with("exited with status 125"),
            "{name}: {reason}"
        );
    }
    let reason = ctx.plugin("chatty").3.unwrap_or_default();
    assert!(
        reason.contains("`test plugin v1.0 starting up`")
            && reason.contains("hint: stdout carries protocol messages only"),
        "{reason}"
    );
}

#[test]
fn a_hung_plugin_is_killed_and_the_event_redelivered() {
    let ctx = Ctx::new();
    ctx.events(1..=8);
    // The plugin hangs for good, so any timeout shows it; a short one would also catch answers
    // that are merely slow on a loaded machine.
    ctx.config(&[], &ctx.test_plugin("h", "hang_at = 4, hang_times = 1"));
    let out = ctx.run();
    assert_success(&out);
    let fours: Vec<_> = ctx.records("h").into_iter().filter(|r| r.0 == 4).collect();
    assert_eq!(fours, [(4, 1), (4, 2)]);
    assert_eq!(*ctx.ids("h").last().expect("records"), 8);
    assert!(String::from_utf8_lossy(&out.stderr).contains("did not answer event 4 in time"));
}

#[test]
fn protocol_violations_restart_the_plugin_with_the_line_in_the_log() {
    let ctx = Ctx::new();
    ctx.events(1..=6);
    ctx.config(
        &[],
        &format!(
            "{}{}",
            ctx.test_plugin("garbage", "garbage_at = 2, garbage_times = 1"),
            ctx.test_plugin("huge", "oversize_at = 3, oversize_times = 1")
        ),
    );
    let out = ctx.run();
    assert_success(&out);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("plugin `garbage` broke the protocol: line is not JSON")
            && log.contains("`this is not json`"),
        "{log}"
    );
    assert!(log.contains("plugin `huge` broke the protocol: wrote a line of 17825792 bytes, over the 16 MiB limit"), "{log}");
    for name in ["garbage", "huge"] {
        let mut ids = ctx.ids(name);
        ids.dedup();
        assert_eq!(
            ids,
            [1, 2, 3, 4, 5, 6],
            "{name} got everything after its restart"
        );
        assert_eq!(ctx.plugin(name).2, 1);
    }
}

#[test]
fn an_idle_plugin_that_stops_answering_pings_is_restarted() {
    let ctx = Ctx::new();
    ctx.events(1..=2);
    ctx.config(
        &[("exit_when_idle = true", "exit_when_idle = false")],
        &ctx.test_plugin("deaf", "no_pong = true"),
    );
    let mut daemon = ctx.start();
    wait_for("a restart for missed pings", || {
        ctx.log().contains("did not answer two pings in a row")
    });
    signal(&daemon, Signal::SIGTERM);
    assert!(daemon.wait().expect("exit").success());
    assert!(ctx.plugin("deaf").2 >= 1);
}

#[test]
fn a_plugin_that_ignores_sigterm_is_killed() {
    let ctx = Ctx::new();
    ctx.events(1..=3);
    let pid_file = ctx.path("stubborn.pid");
    ctx.config(
        &[],
        &ctx.test_plugin(
            "stubborn",
            &format!(
                "ignore_sigterm = true, pid_file = {:?}",
                pid_file.display().to_string()
            ),
        ),
    );
    let out = ctx.run();
    assert_success(&out);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("plugin `stubborn` ignored SIGTERM; killing it"),
        "{log}"
    );
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(!alive(pid), "the plugin is gone");
}

#[test]
fn sigterm_drains_what_is_in_flight_so_nothing_is_delivered_twice() {
    let ctx = Ctx::new();
    ctx.events(1..=200);
    ctx.config(
        &[("exit_when_idle = true", "exit_when_idle = false")],
        &ctx.test_plugin("slow", "slow_ms = 20, max_in_flight = 4"),
    );
    let mut daemon = ctx.start();
    wait_for("some deliveries", || ctx.ids("slow").len() >= 10);
    signal(&daemon, Signal::SIGTERM);
    assert!(daemon.wait().expect("exit").success(), "{}", ctx.log());
    let delivered = ctx.ids("slow").len();
    assert!(delivered < 200, "stopped mid-stream");
    let last = ctx.plugin("slow").1.expect("a cursor");
    assert_eq!(
        last, delivered as i64,
        "every delivered event was answered and committed before exit"
    );
    ctx.config(
        &[],
        &ctx.test_plugin("slow", "slow_ms = 0, max_in_flight = 4"),
    );
    assert_success(&ctx.run());
    assert_eq!(
        ctx.ids("slow"),
        (1..=200).collect::<Vec<_>>(),
        "no duplicates after a graceful stop"
    );
}

#[test]
fn a_second_sigint_stops_at_once_without_losing_committed_state() {
    let ctx = Ctx::new();
    ctx.events(1..=100);
    ctx.config(
        &[("exit_when_idle = true", "exit_when_idle = false")],
        &ctx.test_plugin("s", "slow_ms = 5000"),
    );
    let mut daemon = ctx.start();
    wait_for("the first delivery", || !ctx.ids("s").is_empty());
    signal(&daemon, Signal::SIGINT);
    wait_for("the graceful stop to begin", || {
        ctx.log().contains("SIGINT: stopping gracefully")
    });
    signal(&daemon, Signal::SIGINT);
    let status = daemon.wait().expect("exit");
    assert!(status.success(), "{}", ctx.log());
    assert!(ctx.log().contains("second SIGINT: stopping at once"));
    assert_eq!(
        ctx.plugin("s").1,
        None,
        "the unanswered event is not marked done"
    );
}

#[test]
fn a_plugin_that_never_registers_is_restarted_then_disabled() {
    let ctx = Ctx::new();
    ctx.events(1..=3);
    ctx.config(
        &[(
            "handshake_timeout = \"2s\"",
            "handshake_timeout = \"500ms\"",
        )],
        &format!(
            "{}{}",
            ctx.test_plugin("mute", "no_register = true"),
            ctx.test_plugin("calm", "")
        ),
    );
    assert_success(&ctx.run());
    let (state, _, restarts, reason) = ctx.plugin("mute");
    assert_eq!((state.as_str(), restarts), ("disabled", 10));
    let reason = reason.unwrap_or_default();
    assert!(
        reason.contains("did not answer `hello` within 500ms"),
        "{reason}"
    );
    assert_eq!(ctx.ids("calm"), [1, 2, 3]);
}

#[test]
fn a_stuck_plugin_never_holds_back_another() {
    let ctx = Ctx::new();
    ctx.events(1..=300);
    ctx.config(
        &[
            ("exit_when_idle = true", "exit_when_idle = false"),
            ("ack_timeout = \"2s\"", "ack_timeout = \"1h\""),
        ],
        &format!(
            "{}{}",
            ctx.test_plugin("stuck", "hang_at = 1"),
            ctx.test_plugin("fast", "max_in_flight = 8")
        ),
    );
    let mut daemon = ctx.start();
    wait_for("the fast plugin to finish", || {
        ctx.plugin_if_known("fast")
            .is_some_and(|p| p.1 == Some(300))
    });
    assert_eq!(
        ctx.ids("stuck"),
        [1],
        "the stuck one is still on its first event"
    );
    signal(&daemon, Signal::SIGTERM);
    assert!(daemon.wait().expect("exit").success());
}

#[test]
fn progress_keeps_slow_work_alive_past_the_ack_timeout() {
    let ctx = Ctx::new();
    ctx.events(1..=3);
    // Each event takes 3 s, well past the 2 s ack_timeout, with a progress every 400 ms.
    ctx.config(
        &[],
        &ctx.test_plugin("slow", "slow_ms = 3000, progress_every_ms = 400"),
    );
    let out = ctx.run();
    assert_success(&out);
    assert_eq!(
        ctx.records("slow"),
        [(1, 1), (2, 1), (3, 1)],
        "each event delivered once"
    );
    assert_eq!(ctx.plugin("slow").2, 0, "never killed as hung");
}
