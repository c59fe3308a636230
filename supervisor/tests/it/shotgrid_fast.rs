//! The ShotGrid source catching up fast and polling adaptively, against the fake site: 50,000 events
//! behind a 150 ms round trip with gaps, journaled the same at one page at a time and at four;
//! a 429 halving the pages in flight; `min_fetch_interval`; and the fidelity fixes (`Retry-After`
//! as an HTTP date and at sign-in, the permissions hint, `start_at` at exactly a time).

use std::time::{Duration, Instant};

use sgevents_tests::fake_site::{FakeSite, Fault};

use crate::Ctx;
use crate::shotgrid::{assert_once_each, config, journal, start_at_time, stop, wait_delivered};
use crate::site::{shotgrid_config, site};

/// The longest the big catch-up may take: generous, the machine is shared.
const CATCH_UP_GUARD: Duration = Duration::from_secs(300);

/// A configuration with no plugin: the journal is what is checked.
fn journal_only(ctx: &Ctx, site: &FakeSite, source_extra: &str) {
    let source = format!(
        "fetch_interval = \"200ms\"\nrequest_timeout = \"10s\"\ngap_timeout = \"10m\"\n{source_extra}"
    );
    shotgrid_config(ctx, site, &source, "");
}

fn journal_len(ctx: &Ctx) -> usize {
    let Ok(db) = rusqlite::Connection::open_with_flags(
        ctx.path("var/state.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    ) else {
        return 0;
    };
    db.query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))
        .unwrap_or(0) as usize
}

fn wait_journaled(ctx: &Ctx, n: usize) {
    let start = Instant::now();
    while journal_len(ctx) < n {
        assert!(
            start.elapsed() < CATCH_UP_GUARD,
            "{} of {n} events journaled; the log:\n{}",
            journal_len(ctx),
            ctx.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Catches up `site` from the start with `concurrency`, then journals the late `commit` ids;
/// returns the journal.
fn catch_up(site: &FakeSite, concurrency: usize, visible: usize, commit: &[i64]) -> Vec<i64> {
    let ctx = Ctx::new();
    journal_only(
        &ctx,
        site,
        &format!("batch_size = 500\nfetch_concurrency = {concurrency}"),
    );
    let daemon = ctx.start();
    wait_journaled(&ctx, visible);
    site.commit(commit);
    wait_journaled(&ctx, visible + commit.len());
    stop(&ctx, daemon);
    assert!(
        ctx.log()
            .contains(&format!("event {} appeared late; journaling it", commit[0])),
        "{}",
        ctx.log()
    );
    journal(&ctx)
}

/// 50,000 events behind a 150 ms round trip, with a gap every 250 ids (most never filled, a few
/// filled late): one page at a time and four at once journal the same ids in the same order,
/// each once, the late ones after the rest.
#[test]
fn catch_up_of_50000_events_with_latency_and_gaps_is_the_same_at_concurrency_1_and_4() {
    let site = site();
    let mut held = Vec::new();
    let mut visible = Vec::new();
    for _ in 0..200 {
        visible.extend(site.append(249));
        held.extend(site.hold(1));
    }
    // The first ten gaps fill late; the rest never.
    let (late, never) = held.split_at(10);
    site.rollback(never);
    site.set_latency(Duration::from_millis(150));

    let searches = site.stats().searches;
    let one = catch_up(&site, 1, visible.len(), &late[..5]);
    let one_stats = site.stats();
    assert_eq!(
        one_stats.range_searches, 0,
        "one page at a time follows the log"
    );
    let four = catch_up(&site, 4, visible.len() + 5, &late[5..]);
    let four_stats = site.stats();
    assert!(
        four_stats.range_searches >= 90,
        "four at a time asks for id ranges: {four_stats:?}"
    );
    assert!(
        four_stats.most_concurrent >= 2,
        "pages were fetched at once: {four_stats:?}"
    );

    let mut want = visible.clone();
    want.extend(&late[..5]);
    assert_eq!(one, want, "every visible id in order, then the late ones");
    // The second daemon found the first five late ones already visible: in id order with the
    // rest, then the other five late.
    let mut four_want: Vec<i64> = want.clone();
    four_want.sort_unstable();
    four_want.extend(&late[5..]);
    assert_eq!(four, four_want, "the same ids in the same order");
    assert!(
        one_stats.searches - searches > 100,
        "the counters count: {one_stats:?}"
    );
}

/// A 429 (here the first request's) halves the pages fetched at once from eight to four, waits
/// what `Retry-After` says, and loses nothing; the catch-up then goes on four at a time.
#[test]
fn a_429_halves_the_pages_in_flight_and_honours_retry_after() {
    let site = site();
    let ids = site.append(3000);
    site.set_latency(Duration::from_millis(20));
    let ctx = Ctx::new();
    // Generous: a timed-out request on a busy machine would end the round early.
    config(
        &ctx,
        &site,
        "batch_size = 100\nfetch_concurrency = 8\nrequest_timeout = \"30s\"",
        "",
    );
    site.fail_next(1, Fault::Throttle { retry_after_s: 1 });
    let daemon = ctx.start();
    wait_delivered(&ctx, &ids);
    let more = site.append(1000);
    wait_delivered(&ctx, &more);
    stop(&ctx, daemon);
    let all: Vec<i64> = ids.iter().chain(&more).copied().collect();
    assert_once_each(&ctx, &all);
    assert_eq!(journal(&ctx), all, "in id order");
    let log = ctx.log();
    assert!(log.contains("answered HTTP 429"), "{log}");
    assert!(
        log.contains("retrying in 1s"),
        "Retry-After honoured:\n{log}"
    );
    assert!(
        log.contains("the site is rate-limiting; fetching 4 pages at once instead of 8"),
        "{log}"
    );
    let stats = site.stats();
    assert!(stats.range_searches > 0, "{stats:?}");
    assert!(
        stats.most_concurrent <= 4,
        "never more than the halved concurrency in flight: {stats:?}"
    );
}

/// The wait a log line announces after `after`: "retrying in 4s 512ms" → 4.
fn announced_wait_s(log: &str, after: &str) -> u64 {
    let line = log
        .lines()
        .find(|l| l.contains(after))
        .unwrap_or_else(|| panic!("no line with `{after}` in:\n{log}"));
    let rest = line
        .split("retrying in ")
        .nth(1)
        .unwrap_or_else(|| panic!("no wait in `{line}`"));
    rest.split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number in `{line}`"))
}

#[test]
fn retry_after_as_an_http_date_is_honoured() {
    let site = site();
    let ids = site.append(3);
    let ctx = Ctx::new();
    config(&ctx, &site, "", "");
    site.fail_next(1, Fault::ThrottleUntil { retry_after_s: 4 });
    let daemon = ctx.start();
    wait_delivered(&ctx, &ids);
    stop(&ctx, daemon);
    let wait = announced_wait_s(&ctx.log(), "answered HTTP 429");
    assert!(
        (2..=4).contains(&wait),
        "the date 4 s ahead (whole seconds) is a wait of 3 to 4 s, not the default 30 s: {wait}"
    );
}

#[test]
fn a_429_at_sign_in_honours_retry_after() {
    let site = site();
    let ids = site.append(3);
    let ctx = Ctx::new();
    config(&ctx, &site, "", "");
    site.fail_next_sign_in(1, Fault::Throttle { retry_after_s: 2 });
    let daemon = ctx.start();
    wait_delivered(&ctx, &ids);
    stop(&ctx, daemon);
    let log = ctx.log();
    assert!(log.contains("the sign-in answered HTTP 429"), "{log}");
    assert_eq!(announced_wait_s(&log, "the sign-in answered HTTP 429"), 2);
}

#[test]
fn a_permission_refusal_gets_a_permissions_hint() {
    let site = site();
    let ids = site.append(3);
    let ctx = Ctx::new();
    config(&ctx, &site, "", "");
    site.fail_next(1, Fault::Forbidden);
    let daemon = ctx.start();
    wait_delivered(&ctx, &ids);
    stop(&ctx, daemon);
    let log = ctx.log();
    let line = log
        .lines()
        .skip_while(|l| !l.contains("answered HTTP 400"))
        .take(2)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        line.contains("permission group read access to EventLogEntry"),
        "{line}\n{log}"
    );
    assert!(!line.contains("check `source.url`"), "{line}");
}

#[test]
fn start_at_a_time_includes_the_events_at_exactly_that_time() {
    let (ids, got) = start_at_time(
        [
            "2026-11-02T09:59:59Z",
            "2026-11-02T10:00:00Z",
            "2026-11-02T10:00:01Z",
        ],
        "2026-11-02T10:00:00Z",
    );
    assert_eq!(got, ids[1..], "from the event at exactly that time");
}

/// With `fetch_interval = "1h"`, an event that follows others closely is still read within the
/// guard: after a poll that found events the next comes after `min_fetch_interval`, doubling.
/// Then an idle site costs no more than `fetch_interval` allows, plus the doublings.
#[test]
fn polls_come_soon_after_new_events_and_slow_down_when_idle() {
    let site = site();
    let first = site.append(3);
    let ctx = Ctx::new();
    config(
        &ctx,
        &site,
        "min_fetch_interval = \"40ms\"\nfetch_interval = \"1h\"",
        "",
    );
    let daemon = ctx.start();
    wait_delivered(&ctx, &first);
    let second = site.append(2);
    wait_delivered(&ctx, &second);
    stop(&ctx, daemon);

    // Idle: fetch_interval 500ms, from 40ms. Over an idle stretch of T seconds, at most T / 0.5
    // polls plus the doublings (40, 80, 160, 320 ms) and one in flight; fewer on a slow machine.
    let ctx = Ctx::new();
    config(
        &ctx,
        &site,
        "min_fetch_interval = \"40ms\"\nfetch_interval = \"500ms\"",
        "",
    );
    let daemon = ctx.start();
    let all: Vec<i64> = first.iter().chain(&second).copied().collect();
    wait_delivered(&ctx, &all);
    let before = site.stats().searches;
    let start = Instant::now();
    // Not a synchronisation: the idle stretch being measured.
    std::thread::sleep(Duration::from_secs(5));
    let searches = site.stats().searches - before;
    let elapsed = start.elapsed().as_secs_f64();
    stop(&ctx, daemon);
    let bound = (elapsed / 0.5).ceil() as u64 + 4 + 2;
    assert!(
        searches <= bound,
        "{searches} requests in {elapsed:.1} s of idle with fetch_interval 500ms (at most {bound})"
    );
    assert!(searches >= 1, "it still polls when idle");
}

/// `POST /webhooks/shotgrid`: a signed delivery makes the poller poll at once (here it would
/// otherwise wait an hour); deliveries coalesce; a forged or unsigned one is refused with 401 and
/// logged with its count; a body over 1 MiB is refused.
#[test]
fn webhooks_poll_at_once_and_forged_or_oversized_ones_are_refused() {
    const SECRET: &str = "hook-secret";
    let site = site();
    let first = site.append(2);
    let ctx = Ctx::new();
    std::fs::write(ctx.path("hook"), SECRET).expect("secret file");
    config(
        &ctx,
        &site,
        "webhook_secret_file = \"hook\"\nmin_fetch_interval = \"1h\"",
        "",
    );
    let text = std::fs::read_to_string(ctx.path("sgevents.toml")).expect("config");
    let text = text.replace("fetch_interval = \"50ms\"", "fetch_interval = \"1h\"");
    std::fs::write(
        ctx.path("sgevents.toml"),
        format!("{text}\n[http]\nlisten = \"127.0.0.1:0\"\n"),
    )
    .expect("config");
    let daemon = ctx.start();
    wait_delivered(&ctx, &first);
    let addr = ctx.http_addr();
    let url = format!("http://{addr}/webhooks/shotgrid");

    // The fake site's own deliveries, one per new event.
    site.set_webhook(&url, SECRET);
    let second = site.append(3);
    wait_delivered(&ctx, &second);

    // Forged, unsigned, oversized.
    let body = r#"{"data":{"event_log_entry_id":1}}"#;
    let forged = sgevents_tests::fake_site::webhook_signature("not-the-secret", body.as_bytes());
    let post = |signature: &str, body: &str| {
        sgevents_tests::fake_site::post_webhook(&url, signature, body).expect("a webhook answer")
    };
    assert_eq!(post(&forged, body), 401, "a forged signature");
    assert_eq!(post("", body), 401, "no signature");
    assert_eq!(post("sha1=nothex", body), 401, "not a signature");
    let big = format!(r#"{{"data":{{"pad":"{}"}}}}"#, "x".repeat(1024 * 1024));
    let signed = sgevents_tests::fake_site::webhook_signature(SECRET, big.as_bytes());
    assert_eq!(post(&signed, &big), 413, "over 1 MiB");
    let good = sgevents_tests::fake_site::webhook_signature(SECRET, body.as_bytes());
    assert_eq!(post(&good, body), 200, "a valid delivery");

    // A burst of deliveries while each poll takes 300 ms: at most one poll runs and one is
    // pending, so the polls are bounded by the burst's length, not by the deliveries.
    site.set_webhook("http://127.0.0.1:1/", SECRET);
    site.set_latency(Duration::from_millis(300));
    let before = site.stats().searches;
    let start = Instant::now();
    for _ in 0..20 {
        assert_eq!(post(&good, body), 200);
    }
    let burst = start.elapsed().as_secs_f64();
    crate::wait_for("a poll for the burst", || site.stats().searches > before);
    let third = site.append(1);
    assert_eq!(post(&good, body), 200);
    wait_delivered(&ctx, &third);
    stop(&ctx, daemon);
    // Rounds started during the burst (one per 300 ms at most, plus the first), one pending,
    // and the one for the last delivery; each round is one search on this quiet site.
    let searches = site.stats().searches - before;
    let bound = (burst / 0.3).ceil() as u64 + 4;
    assert!(
        searches <= bound,
        "{searches} searches for 21 deliveries over {burst:.2} s (at most {bound})"
    );
    let log = ctx.log();
    assert!(
        log.contains("refused a webhook delivery to /webhooks/shotgrid with a signature that does not match (1 refused since the start)"),
        "{log}"
    );
    assert!(
        log.contains("with no `X-SG-SIGNATURE` header (2 refused since the start)"),
        "{log}"
    );
    assert!(!log.contains(SECRET), "the secret never reaches the log");
}
