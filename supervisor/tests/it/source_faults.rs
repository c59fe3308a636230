//! The JSON-lines source's faults: the followed file replaced, rewritten or shrunk under the
//! daemon (while it runs and while it is stopped), an event longer than `max_event_bytes`, and a
//! line that never ends; and the ShotGrid source's oversized event. Each time, every event of the
//! new file above the last one journaled reaches the plugin exactly once, and the daemon says what
//! it did once.

use std::fs;
use std::io::Write;
use std::process::Child;

use nix::sys::signal::Signal;

use crate::{Ctx, assert_success, event, signal, wait_for};

/// The bound on the daemon's peak resident memory (`VmHWM`) while it skips a line far longer
/// than that: one line is never held beyond `max_event_bytes` (16 MiB less 64 KiB by default).
const MAX_RESIDENT_KIB: u64 = 64 * 1024;

/// Follows `events.jsonl` with one test plugin `p`, and does not exit when idle.
fn follow(ctx: &Ctx) {
    ctx.config(
        &[
            ("exit_when_idle = true", "exit_when_idle = false"),
            (
                "path = \"events.jsonl\"",
                "path = \"events.jsonl\"\nfollow = true\npoll_interval = \"20ms\"",
            ),
        ],
        &ctx.test_plugin("p", ""),
    );
}

fn stop(mut daemon: Child) {
    signal(&daemon, Signal::SIGTERM);
    assert!(daemon.wait().expect("exit").success(), "a clean stop");
}

/// The log's WARN lines about the events file.
fn warnings(ctx: &Ctx) -> Vec<String> {
    ctx.log()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("events.jsonl"))
        .map(str::to_owned)
        .collect()
}

/// Writes `ids` to `events.new`, to be moved over `events.jsonl`.
fn new_file(ctx: &Ctx, ids: impl IntoIterator<Item = i64>) -> std::path::PathBuf {
    let text: String = ids.into_iter().map(event).collect();
    let path = ctx.path("events.new");
    fs::write(&path, text).expect("write the new file");
    path
}

/// Truncates `events.jsonl` in place (same inode) and writes `ids` in one write.
fn rewrite_in_place(ctx: &Ctx, ids: impl IntoIterator<Item = i64>) {
    let text: String = ids.into_iter().map(event).collect();
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(ctx.path("events.jsonl"))
        .expect("open in place");
    f.write_all(text.as_bytes()).expect("rewrite");
}

/// Asserts that `p` got exactly `expected`, each once, in order, at its first attempt.
fn assert_delivered(ctx: &Ctx, expected: impl IntoIterator<Item = i64>) {
    let expected: Vec<(i64, u32)> = expected.into_iter().map(|id| (id, 1)).collect();
    let got = ctx.records("p");
    let missing: Vec<i64> = expected
        .iter()
        .map(|&(id, _)| id)
        .filter(|id| !got.iter().any(|(g, _)| g == id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} events never delivered: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert_eq!(got, expected, "every event once, in order");
}

/// Asserts one WARN about the events file, saying `what` and that it was read from its start.
fn assert_warned_once(ctx: &Ctx, what: &str) {
    let warnings = warnings(ctx);
    assert_eq!(warnings.len(), 1, "one warning: {warnings:#?}");
    assert!(
        warnings[0].contains(what) && warnings[0].contains("reading it from its start"),
        "{}",
        warnings[0]
    );
}

/// `source_state.oversized`, or `None` while it cannot be read.
fn oversized(ctx: &Ctx) -> Option<i64> {
    ctx.db()
        .query_row("SELECT oversized FROM source_state WHERE id = 1", [], |r| {
            r.get(0)
        })
        .ok()
}

fn source_state(ctx: &Ctx) -> (i64, Option<i64>, Option<String>) {
    ctx.db()
        .query_row(
            "SELECT oversized, file_ino, last_error FROM source_state WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("source_state")
}

#[test]
fn a_file_moved_over_the_followed_one_is_read_from_its_start() {
    let ctx = Ctx::new();
    ctx.events(1..=100);
    follow(&ctx);
    let daemon = ctx.start();
    wait_for("the first file", || ctx.ids("p").len() == 100);
    // `mv new events.jsonl`: 250 events, longer than the offset; 51..=100 are journaled already.
    fs::rename(new_file(&ctx, 51..=300), ctx.path("events.jsonl")).expect("mv");
    wait_for("the last event of the new file", || {
        ctx.ids("p").last() == Some(&300)
    });
    stop(daemon);
    assert_delivered(&ctx, 1..=300);
    assert_warned_once(&ctx, "is a new file");
    let ino = fs::metadata(ctx.path("events.jsonl")).expect("stat");
    assert_eq!(
        source_state(&ctx).1,
        Some(std::os::unix::fs::MetadataExt::ino(&ino) as i64),
        "the new file's identity is saved"
    );
}

#[test]
fn a_file_rotated_while_the_daemon_is_stopped_is_read_from_its_start() {
    let ctx = Ctx::new();
    ctx.events(1..=100);
    follow(&ctx);
    let daemon = ctx.start();
    wait_for("the first file", || ctx.ids("p").len() == 100);
    stop(daemon);
    // The same file, grown while stopped: resumed at the offset, nothing said.
    ctx.append_events(101..=110);
    let daemon = ctx.start();
    wait_for("the events appended while stopped", || {
        ctx.ids("p").len() == 110
    });
    stop(daemon);
    assert!(warnings(&ctx).is_empty(), "{:#?}", warnings(&ctx));
    fs::rename(ctx.path("events.jsonl"), ctx.path("events.jsonl.1")).expect("rotate");
    fs::rename(new_file(&ctx, 51..=300), ctx.path("events.jsonl")).expect("mv");
    let daemon = ctx.start();
    wait_for("the last event of the new file", || {
        ctx.ids("p").last() == Some(&300)
    });
    stop(daemon);
    assert_delivered(&ctx, 1..=300);
    assert_warned_once(&ctx, "is a new file");
}

#[test]
fn a_file_truncated_and_rewritten_longer_is_read_from_its_start() {
    let ctx = Ctx::new();
    ctx.events(1..=100);
    follow(&ctx);
    let daemon = ctx.start();
    wait_for("the first file", || ctx.ids("p").len() == 100);
    rewrite_in_place(&ctx, 81..=300);
    wait_for("the last event of the rewritten file", || {
        ctx.ids("p").last() == Some(&300)
    });
    stop(daemon);
    assert_delivered(&ctx, 1..=300);
    // The daemon may look while the file is empty (it shrank) or once rewritten (its first line
    // changed): either way, once.
    let warnings = warnings(&ctx);
    assert_eq!(warnings.len(), 1, "one warning: {warnings:#?}");
    assert!(
        (warnings[0].contains("shrank") || warnings[0].contains("rewritten in place"))
            && warnings[0].contains("reading it from its start"),
        "{}",
        warnings[0]
    );
}

#[test]
fn a_file_that_shrank_is_read_from_its_start() {
    let ctx = Ctx::new();
    ctx.events(1..=100);
    follow(&ctx);
    let daemon = ctx.start();
    wait_for("the first file", || ctx.ids("p").len() == 100);
    rewrite_in_place(&ctx, 91..=130);
    wait_for("the last event of the shorter file", || {
        ctx.ids("p").last() == Some(&130)
    });
    // The same file afterwards: resumed at the offset, nothing said.
    crate::append_events_to(&ctx.path("events.jsonl"), 131..=140);
    wait_for("events appended after", || {
        ctx.ids("p").last() == Some(&140)
    });
    stop(daemon);
    assert_delivered(&ctx, 1..=140);
    assert_warned_once(&ctx, "shrank");
    let (_, _, last_error) = source_state(&ctx);
    assert_eq!(last_error, None, "ids read again are not errors");
}

#[test]
fn an_event_above_max_event_bytes_is_skipped_and_counted() {
    let ctx = Ctx::new();
    ctx.events(1..=10);
    let big = format!(
        "{{\"id\":11,\"event_type\":\"Shotgun_Shot_New\",\"description\":\"{}\"}}\n",
        "a".repeat(17 << 20)
    );
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(ctx.path("events.jsonl"))
        .expect("open");
    f.write_all(big.as_bytes()).expect("append the big event");
    drop(f);
    ctx.append_events(12..=20);
    ctx.config(&[], &ctx.test_plugin("p", ""));
    let out = ctx.run();
    assert_success(&out);
    assert_delivered(&ctx, (1..=10).chain(12..=20));
    let (oversized, _, last_error) = source_state(&ctx);
    assert_eq!(oversized, 1);
    let last_error = last_error.expect("last_error");
    assert!(
        last_error.starts_with("skipped event `11` (line 11 of `")
            && last_error.contains(&format!("it is {} bytes long", big.len() - 1)),
        "{last_error}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("skipped event `11`"))
        .collect();
    assert_eq!(errors.len(), 1, "one ERROR:\n{stderr}");
    assert!(
        stderr.contains("hint: no plugin receives it"),
        "the hint:\n{stderr}"
    );
    let (state, last, restarts, _) = ctx.plugin("p");
    assert_eq!((state.as_str(), last, restarts), ("stopped", Some(20), 0));
    let status = ctx.sgevents(&["status"]).output().expect("status");
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("0 skipped, 1 oversized skipped (last problem: skipped event `11`"),
        "status says so:\n{status}"
    );
}

/// The daemon's peak resident memory, in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[test]
fn a_line_that_never_ends_is_skipped_without_holding_it() {
    let ctx = Ctx::new();
    ctx.events(1..=10);
    follow(&ctx);
    let daemon = ctx.start();
    let pid = daemon.id();
    wait_for("the first events", || ctx.ids("p").len() == 10);
    // 80 MiB of one event that is still being written: no newline yet.
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(ctx.path("events.jsonl"))
        .expect("open");
    f.write_all(b"{\"id\":11,\"event_type\":\"Shotgun_Shot_New\",\"description\":\"")
        .expect("append");
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..80 {
        f.write_all(&chunk).expect("append");
    }
    wait_for("the unfinished line skipped (or held)", || {
        peak_kib(pid) > MAX_RESIDENT_KIB || oversized(&ctx) == Some(1)
    });
    assert!(
        peak_kib(pid) <= MAX_RESIDENT_KIB,
        "the daemon held {} KiB",
        peak_kib(pid)
    );
    let (oversized, _, last_error) = source_state(&ctx);
    assert_eq!(oversized, 1, "skipped before its end is written");
    assert!(
        last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("skipped event `11` (line 11 of `")
                && e.contains("its end is not written yet")),
        "{last_error:?}"
    );
    // Its end, then more events.
    f.write_all(b"\"}\n").expect("append");
    drop(f);
    ctx.append_events(12..=20);
    wait_for("the events after the long line", || {
        ctx.ids("p").last() == Some(&20)
    });
    assert!(
        peak_kib(pid) <= MAX_RESIDENT_KIB,
        "the daemon held {} KiB",
        peak_kib(pid)
    );
    stop(daemon);
    assert_delivered(&ctx, (1..=10).chain(12..=20));
    assert_eq!(source_state(&ctx).0, 1, "counted once");
    let errors = ctx
        .log()
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("skipped event `11`"))
        .count();
    assert_eq!(errors, 1, "one ERROR:\n{}", ctx.log());
    assert_eq!(ctx.plugin("p").2, 0, "the plugin never restarted");
}

#[test]
fn a_17_mib_shotgrid_event_is_skipped_and_counted() {
    let site = crate::site::site();
    let mut ids = site.append(5);
    let big = site.append_events(vec![serde_json::json!({
        "id": 0, "event_type": "Shotgun_Shot_New", "attribute_name": null, "meta": {"type": "new_entity"},
        "entity": {"type": "Shot", "id": 1, "name": "010"}, "user": null, "project": {"type": "Project", "id": 66, "name": "p"},
        "session_uuid": null, "created_at": "2026-11-02T08:00:00Z", "description": "a".repeat(17 << 20)
    })])[0];
    ids.extend(site.append(5));
    let ctx = Ctx::new();
    crate::shotgrid::config(&ctx, &site, "request_timeout = \"20s\"", "");
    let daemon = ctx.start();
    wait_for("the events around the big one", || {
        ctx.ids("p").last() == ids.last()
    });
    stop(daemon);
    assert_delivered(&ctx, ids);
    // (`last_error` is cleared by the next successful poll, so it is not looked at here.)
    let (oversized, file_ino, _) = source_state(&ctx);
    assert_eq!(
        (oversized, file_ino),
        (1, None),
        "counted; no file identity"
    );
    let errors = ctx
        .log()
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains(&format!("skipped event `{big}`")))
        .count();
    assert_eq!(errors, 1, "one ERROR:\n{}", ctx.log());
    assert_eq!(ctx.plugin("p").2, 0, "the plugin never restarted");
}
