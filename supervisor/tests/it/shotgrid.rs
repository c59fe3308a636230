//! The ShotGrid source against the fake site (`sgevents_tests::fake_site`), a real HTTP server on
//! 127.0.0.1 driven by each test: every event once and in order, late and never-filled gaps, the
//! incumbent's two gap bugs, faults of every kind (one page at a time and four), `kill -9`,
//! `start_at`, and `check`. Its helpers (`config`, `journal`, ...) serve `shotgrid_fast.rs` too; the
//! site and its configuration are `site.rs`'s.

use std::collections::BTreeSet;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;
use sgevents_tests::fake_site::{FakeSite, Fault, SiteOptions};

use crate::site::{KEY, PLUGINS, shotgrid_config, site, site_with};
use crate::{Ctx, alive, signal, wait_for};

/// A configuration polling `site` quickly (with `source_extra` in `[source]`), with a test plugin
/// recording to `p.rec`.
pub(crate) fn config(ctx: &Ctx, site: &FakeSite, source_extra: &str, plugin_extra: &str) {
    let plugins = format!("{PLUGINS}{}", ctx.test_plugin("p", plugin_extra));
    shotgrid_config(ctx, site, source_extra, &plugins);
}

/// The ids in the journal, in journal order.
pub(crate) fn journal(ctx: &Ctx) -> Vec<i64> {
    let db = ctx.db();
    let mut stmt = db
        .prepare("SELECT event_id FROM events ORDER BY seq")
        .expect("query");
    stmt.query_map([], |r| r.get(0))
        .expect("rows")
        .map(Result::unwrap)
        .collect()
}

pub(crate) fn stop(ctx: &Ctx, mut daemon: std::process::Child) {
    signal(&daemon, Signal::SIGTERM);
    let status = daemon.wait().expect("exit");
    assert!(status.success(), "{}", ctx.log());
}

pub(crate) fn wait_delivered(ctx: &Ctx, ids: &[i64]) {
    let want: BTreeSet<i64> = ids.iter().copied().collect();
    let start = std::time::Instant::now();
    while !want.is_subset(&ctx.ids("p").into_iter().collect()) {
        if start.elapsed() > crate::GUARD {
            let log = ctx.log();
            let tail: Vec<&str> = log
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            panic!(
                "timed out waiting for events {ids:?}; the daemon's log ends with:\n{}",
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn assert_once_each(ctx: &Ctx, want: &[i64]) {
    let got = ctx.ids("p");
    let distinct: BTreeSet<i64> = got.iter().copied().collect();
    assert_eq!(
        got.len(),
        distinct.len(),
        "no event delivered twice: {got:?}"
    );
    assert_eq!(distinct, want.iter().copied().collect::<BTreeSet<_>>());
    let journal = journal(ctx);
    assert_eq!(
        journal.len(),
        journal.iter().copied().collect::<BTreeSet<_>>().len(),
        "no event journaled twice"
    );
}

#[test]
fn every_event_once_and_in_order_through_full_batches() {
    let site = site();
    let ids = site.append(1234);
    let ctx = Ctx::new();
    config(&ctx, &site, "batch_size = 500", "");
    let daemon = ctx.start();
    wait_delivered(&ctx, &ids);
    let more = site.append(10);
    wait_delivered(&ctx, &more);
    stop(&ctx, daemon);
    let all: Vec<i64> = ids.iter().chain(more.iter()).copied().collect();
    assert_eq!(ctx.ids("p"), all, "in id order, each once");
    assert_eq!(journal(&ctx), all);
    let requests = site.stats().searches;
    assert!(
        requests < 60,
        "one poller, batches of 500: {requests} requests for 1244 events"
    );
}

#[test]
fn late_events_are_delivered_once_after_what_plugins_have() {
    let site = site();
    let before = site.append(5);
    let held = site.hold(2);
    let after = site.append(5);
    let ctx = Ctx::new();
    config(&ctx, &site, "gap_timeout = \"10m\"", "");
    let daemon = ctx.start();
    wait_delivered(&ctx, &after);
    let gaps: i64 = ctx
        .db()
        .query_row("SELECT count(*) FROM source_gaps", [], |r| r.get(0))
        .expect("gaps");
    assert_eq!(gaps, 1, "the two held ids are one gap");
    site.commit(&held);
    wait_delivered(&ctx, &held);
    stop(&ctx, daemon);
    let expected: Vec<i64> = before
        .iter()
        .chain(after.iter())
        .chain(held.iter())
        .copied()
        .collect();
    assert_eq!(
        ctx.ids("p"),
        expected,
        "the late ones come after what the plugin already had, once"
    );
    assert_eq!(journal(&ctx), expected);
    assert!(
        ctx.log()
            .contains(&format!("event {} appeared late; journaling it", held[0])),
        "{}",
        ctx.log()
    );
    let gaps: i64 = ctx
        .db()
        .query_row("SELECT count(*) FROM source_gaps", [], |r| r.get(0))
        .expect("gaps");
    assert_eq!(gaps, 0);
}

/// The incumbent stalled on a gap followed by a full batch, re-reading the same batch until the
/// gap expired; here the events after the gap flow while it is still open.
#[test]
fn a_gap_before_a_full_batch_does_not_stall_the_events_after_it() {
    let site = site();
    let first = site.append(1);
    let held = site.hold(1);
    let after = site.append(35);
    let ctx = Ctx::new();
    config(&ctx, &site, "batch_size = 10\ngap_timeout = \"10m\"", "");
    let daemon = ctx.start();
    wait_delivered(&ctx, &after);
    assert!(!ctx.ids("p").contains(&held[0]), "the gap is still open");
    site.rollback(&held);
    stop(&ctx, daemon);
    let expected: Vec<i64> = first.iter().chain(after.iter()).copied().collect();
    assert_once_each(&ctx, &expected);
}

#[test]
fn gaps_that_never_fill_are_given_up_after_the_timeout() {
    let site = site();
    site.append(3);
    let held = site.hold(3);
    let after = site.append(3);
    let ctx = Ctx::new();
    config(&ctx, &site, "gap_timeout = \"300ms\"", "");
    let daemon = ctx.start();
    wait_delivered(&ctx, &after);
    site.rollback(&held);
    wait_for("the gap given up", || {
        ctx.log().contains(&format!(
            "events {} to {} (3 ids) did not appear within 300ms; giving up on them",
            held[0], held[2]
        ))
    });
    wait_for("no gap left", || {
        ctx.db()
            .query_row("SELECT count(*) FROM source_gaps", [], |r| {
                r.get::<_, i64>(0)
            })
            .expect("gaps")
            == 0
    });
    stop(&ctx, daemon);
    assert!(ctx.ids("p").iter().all(|id| !held.contains(id)));
}

#[test]
fn a_gap_whose_next_event_is_old_by_the_sites_clock_is_given_up_at_once() {
    let site = site();
    let event = |created: &str| {
        json!({"id": 0, "event_type": "Shotgun_Shot_New", "attribute_name": null, "meta": {"type": "new_entity"},
               "entity": {"type": "Shot", "id": 1, "name": "010"}, "user": null, "project": {"type": "Project", "id": 66, "name": "p"},
               "session_uuid": null, "created_at": created, "description": "created"})
    };
    site.append_events(vec![event("2026-11-02T08:00:00Z")]);
    let held = site.hold(1);
    site.append_events(vec![
        event("2026-11-02T08:00:01Z"),
        event("2026-11-02T12:00:00Z"),
    ]);
    let ctx = Ctx::new();
    config(&ctx, &site, "gap_timeout = \"10m\"", "");
    let daemon = ctx.start();
    wait_for("the gap given up at once", || {
        ctx.log().contains(&format!(
            "event {} did not appear within 10m; giving up on it (the event after them is older",
            held[0]
        ))
    });
    stop(&ctx, daemon);
    let gaps: i64 = ctx
        .db()
        .query_row("SELECT count(*) FROM source_gaps", [], |r| r.get(0))
        .expect("gaps");
    assert_eq!(gaps, 0, "it was never waited for");
}

#[test]
fn faults_of_every_kind_lose_nothing_and_duplicate_nothing() {
    faults_of_every_kind(1);
}

/// The same with pages fetched four at a time while catching up.
#[test]
fn faults_of_every_kind_lose_nothing_and_duplicate_nothing_at_concurrency_4() {
    faults_of_every_kind(4);
}

fn faults_of_every_kind(concurrency: usize) {
    let site = site();
    let mut all = site.append(20);
    let ctx = Ctx::new();
    config(
        &ctx,
        &site,
        &format!("batch_size = 7\nfetch_concurrency = {concurrency}\nrequest_timeout = \"300ms\""),
        "",
    );
    site.fail_next(2, Fault::Status(503));
    let daemon = ctx.start();
    wait_delivered(&ctx, &all);
    for fault in [
        Fault::Throttle { retry_after_s: 1 },
        Fault::Hang(Duration::from_millis(1500)),
        Fault::Garbage,
        Fault::Unauthorized,
        Fault::Status(500),
    ] {
        site.fail_next(1, fault);
        all.extend(site.append(9));
        wait_delivered(&ctx, &all);
    }
    site.expire_tokens();
    all.extend(site.append(9));
    wait_delivered(&ctx, &all);
    stop(&ctx, daemon);
    assert_once_each(&ctx, &all);
    let log = ctx.log();
    for words in [
        "answered HTTP 503",
        "answered HTTP 429",
        "answered something that is not the expected JSON",
        "operation timed out",
        "the site refused the token; signing in again",
        "the ShotGrid source is back after",
    ] {
        assert!(log.contains(words), "expected `{words}` in the log:\n{log}");
    }
    assert!(site.stats().sign_ins >= 3, "signed in again after the 401s");
    assert!(!log.contains(KEY), "the key never reaches the log");
}

#[test]
fn kill_9_while_polling_resumes_at_the_right_id() {
    let site = site();
    let mut all = site.append(200);
    let ctx = Ctx::new();
    config(&ctx, &site, "batch_size = 20", "");
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..3 {
        let daemon = ctx.start();
        let target = ctx.ids("p").len() + rng.usize(5..40);
        all.extend(site.append(rng.usize(20..60)));
        wait_for("progress", || ctx.ids("p").len() >= target);
        signal(&daemon, Signal::SIGKILL);
        let _ = { daemon }.wait();
        let pid: Option<i64> = ctx
            .db()
            .query_row("SELECT pid FROM plugins WHERE name = 'p'", [], |r| r.get(0))
            .expect("pid");
        wait_for("the orphaned plugin to exit", || {
            pid.is_none_or(|p| !alive(p as i32))
        });
    }
    let daemon = ctx.start();
    wait_delivered(&ctx, &all);
    stop(&ctx, daemon);
    let journal = journal(&ctx);
    assert_eq!(
        journal, all,
        "the journal holds every event once, in order, across the kills"
    );
    let seen: BTreeSet<i64> = ctx.ids("p").into_iter().collect();
    assert_eq!(
        seen,
        all.iter().copied().collect(),
        "the plugin saw every event"
    );
}

#[test]
fn start_at_latest_an_id_and_a_time() {
    let site = site();
    let old = site.append(5);
    let ctx = Ctx::new();
    config(&ctx, &site, "start_at = \"latest\"", "");
    let daemon = ctx.start();
    wait_for("the journal to start", || {
        ctx.plugin_if_known("p").is_some_and(|p| p.0 == "running")
    });
    wait_for("the start point", || {
        ctx.log()
            .contains(&format!("starting the journal after event {}", old[4]))
    });
    let new = site.append(3);
    wait_delivered(&ctx, &new);
    stop(&ctx, daemon);
    assert_eq!(ctx.ids("p"), new, "latest: only what came after the start");

    let ctx = Ctx::new();
    config(&ctx, &site, &format!("start_at = {}", old[3]), "");
    let daemon = ctx.start();
    wait_delivered(&ctx, &new);
    stop(&ctx, daemon);
    assert_eq!(
        ctx.ids("p"),
        [&[old[3], old[4]][..], &new[..]].concat(),
        "an id: from that event on"
    );

    let (ids, got) = start_at_time(
        [
            "2026-11-02T08:00:00Z",
            "2026-11-02T09:00:00Z",
            "2026-11-02T10:00:00Z",
        ],
        "2026-11-02T08:30:00Z",
    );
    assert_eq!(
        got,
        ids[1..],
        "a time: from the first event created after it"
    );
}

/// Three events created at `times`, read by a daemon that starts at the time `start_at` until
/// the plugin has the last two: their ids, and the ids the plugin got.
pub(crate) fn start_at_time(times: [&str; 3], start_at: &str) -> (Vec<i64>, Vec<i64>) {
    let site = site();
    let event = |created: &str| {
        json!({"id": 0, "event_type": "Shotgun_Task_Change", "attribute_name": "sg_status_list", "meta": {"type": "attribute_change"},
               "entity": null, "user": null, "project": null, "session_uuid": null, "created_at": created, "description": "d"})
    };
    let ids = site.append_events(times.map(event).to_vec());
    let ctx = Ctx::new();
    config(&ctx, &site, &format!("start_at = {start_at:?}"), "");
    let daemon = ctx.start();
    wait_delivered(&ctx, &ids[1..]);
    stop(&ctx, daemon);
    (ids, ctx.ids("p"))
}

#[test]
fn check_signs_in_and_explains_what_is_wrong() {
    let site = site();
    let ids = site.append(4);
    let ctx = Ctx::new();
    config(&ctx, &site, "", "");
    let out = ctx.sgevents(&["check"]).output().expect("check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!(
            "shotgrid {}: signed in as script `sgevents`, newest event {}",
            site.url(),
            ids[3]
        )),
        "{text}"
    );

    std::fs::write(ctx.path("key"), "wrong-key").expect("key");
    let out = ctx.sgevents(&["check"]).output().expect("check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "the site refused the script `sgevents`: Can't authenticate script 'sgevents'"
        ),
        "{text}"
    );
    assert!(
        text.contains("hint: check `source.script_name` and the key"),
        "{text}"
    );
    assert!(!text.contains("wrong-key"), "the key is never shown");

    let text = std::fs::read_to_string(ctx.path("sgevents.toml")).expect("config");
    // Port 9 (discard) on loopback: nothing listens there.
    std::fs::write(
        ctx.path("sgevents.toml"),
        text.replace(&site.url(), "http://127.0.0.1:9"),
    )
    .expect("config");
    let out = ctx.sgevents(&["check"]).output().expect("check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("cannot reach http://127.0.0.1:9/api/v1/auth/access_token"),
        "{text}"
    );
    assert!(
        text.contains("hint: check `source.url` and the network"),
        "{text}"
    );
}

/// `config/fake-site.toml`, the README's way to try sgevents without a real site, stays valid and
/// its plugins start against the fake site.
#[test]
fn the_fake_site_example_configuration_checks_out() {
    let site = site();
    site.append(3);
    let ctx = Ctx::new();
    let text = crate::example_config(&ctx, "fake-site.toml", "fake-site")
        .replace("http://127.0.0.1:8089", &site.url());
    std::fs::write(ctx.path("sgevents.toml"), text).expect("config");
    let out = ctx
        .sgevents(&["check"])
        .env("SGEVENTS_SCRIPT_KEY", KEY)
        .output()
        .expect("check");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["log-events", "task_status", "count_events"] {
        assert!(report.contains(&format!("plugin {name}: ok")), "{report}");
    }
}

/// `config/sgevents.toml`, the example the Debian package installs as /etc/sgevents/sgevents.toml,
/// stays valid: with its site and folders pointed at the fake site and a temporary folder, `check`
/// signs in and passes. (`.ci/package` checks the installed copy with the installed binary.)
#[test]
fn the_packaged_example_configuration_checks_out() {
    let site = site();
    site.append(3);
    let ctx = Ctx::new();
    let text = std::fs::read_to_string(crate::root().join("config/sgevents.toml"))
        .expect("the example configuration");
    let quoted = |p: std::path::PathBuf| format!("{:?}", p.display().to_string());
    let rewritten = text
        .replace("\"/var/lib/sgevents\"", &quoted(ctx.path("var")))
        .replace("\"/var/log/sgevents\"", &quoted(ctx.path("logs")))
        .replace(
            "\"https://mystudio.shotgrid.autodesk.com\"",
            &format!("{:?}", site.url()),
        );
    assert!(
        !rewritten.contains("= \"/var/") && !rewritten.contains("mystudio"),
        "every path and the site were redirected:\n{rewritten}"
    );
    std::fs::write(ctx.path("sgevents.toml"), rewritten).expect("config");
    let out = ctx
        .sgevents(&["check"])
        .env("SGEVENTS_SCRIPT_KEY", KEY)
        .output()
        .expect("check");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("is valid"), "{report}");
}

#[test]
fn tokens_are_refreshed_before_they_expire() {
    let site = site_with(SiteOptions {
        token_lifetime: Duration::from_secs(1),
        ..SiteOptions::default()
    });
    let mut all = site.append(5);
    let ctx = Ctx::new();
    config(&ctx, &site, "", "");
    let daemon = ctx.start();
    wait_delivered(&ctx, &all);
    // Keep polling across several token lifetimes.
    wait_for("three sign-ins", || site.stats().sign_ins >= 3);
    all.extend(site.append(5));
    wait_delivered(&ctx, &all);
    stop(&ctx, daemon);
    assert_eq!(
        site.stats().unauthorized,
        0,
        "no request was made with an expired token"
    );
    assert_once_each(&ctx, &all);
}

#[test]
fn plugins_go_on_with_the_journal_while_the_site_is_down() {
    let site = site();
    let all = site.append(40);
    let ctx = Ctx::new();
    config(&ctx, &site, "alert_after = \"800ms\"", "slow_ms = 25");
    let daemon = ctx.start();
    wait_for("the whole log journaled", || {
        ctx.plugin_if_known("p").is_some() && journal(&ctx).len() == all.len()
    });
    assert!(
        ctx.ids("p").len() < all.len(),
        "the plugin is still working through the journal"
    );
    site.fail_next(1_000_000, Fault::Status(503));
    wait_delivered(&ctx, &all);
    assert!(
        ctx.log().contains("answered HTTP 503"),
        "the site was down meanwhile"
    );
    stop(&ctx, daemon);
    assert_once_each(&ctx, &all);
}

#[test]
fn check_explains_tls_and_proxy_failures() {
    let site = site();
    site.append(1);
    let ctx = Ctx::new();
    config(&ctx, &site, "", "");
    let base = std::fs::read_to_string(ctx.path("sgevents.toml")).expect("config");

    // The fake site speaks plain HTTP: asking it for TLS fails the handshake.
    let https = site.url().replace("http://", "https://");
    std::fs::write(ctx.path("sgevents.toml"), base.replace(&site.url(), &https)).expect("config");
    let out = ctx.sgevents(&["check"]).output().expect("check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("cannot reach {https}/api/v1/auth/access_token")),
        "{text}"
    );
    assert!(text.contains("hint: "), "{text}");

    // A proxy that is not there.
    std::fs::write(
        ctx.path("sgevents.toml"),
        base.replace(
            "start_at = \"earliest\"",
            "start_at = \"earliest\"\nproxy = \"http://127.0.0.1:9\"",
        ),
    )
    .expect("config");
    let out = ctx.sgevents(&["check"]).output().expect("check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "hint: check `source.url`, the network, and that the proxy in `source.proxy` is up"
        ),
        "{text}"
    );
}
