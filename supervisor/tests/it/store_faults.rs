//! Faults an operator or the machine can cause around the state: the lock file deleted, the
//! database replaced or damaged, another writer holding it, the daemon killed while plugins work,
//! and a journal that grows. Each ends with nothing lost and nothing handled twice at once.

use std::fs;
use std::io::{Seek, SeekFrom, Write};

use nix::sys::signal::Signal;
use rusqlite::Connection;

use crate::control::LIVE;
use crate::{Ctx, signal, test_plugin, wait_for};

/// Whether `pid` runs (a zombie, which nothing may reap in a container, does not).
fn running(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .and_then(|i| s[i + 1..].split_whitespace().next().map(str::to_owned))
        })
        .is_some_and(|state| state != "Z" && state != "X")
}

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

#[test]
fn deleting_the_lock_file_does_not_let_a_second_daemon_in() {
    let ctx = Ctx::new();
    ctx.events(1..=10);
    ctx.config(LIVE, &ctx.test_plugin("t", ""));
    let daemon = ctx.start();
    wait_for("the first events", || ctx.ids("t").len() == 10);
    fs::remove_file(ctx.path("var/sgevents.lock")).expect("delete the lock file");

    let second = ctx.run();
    assert!(!second.status.success(), "a second daemon must not start");
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("another sgevents is using the state directory"),
        "{err}"
    );

    ctx.append_events(11..=20);
    wait_for("the next events", || ctx.ids("t").len() == 20);
    ctx.stop(daemon);
    assert_eq!(
        ctx.ids("t"),
        (1..=20).collect::<Vec<_>>(),
        "every event once"
    );
}

#[test]
fn a_replaced_database_stops_the_daemon_with_one_clear_error() {
    let ctx = Ctx::new();
    ctx.events(1..=10);
    ctx.config(LIVE, &ctx.test_plugin("t", ""));
    let mut daemon = ctx.start();
    wait_for("the events", || ctx.ids("t").len() == 10);
    // What a careless restore does: a copy moved over the live file.
    fs::copy(ctx.path("var/state.db"), ctx.path("copy.db")).expect("copy");
    fs::rename(ctx.path("copy.db"), ctx.path("var/state.db")).expect("replace");

    let mut status = None;
    wait_for("the daemon to stop", || {
        status = daemon.try_wait().expect("try_wait");
        status.is_some()
    });
    assert!(
        !status.expect("exited").success(),
        "a failure, not a clean stop"
    );
    let log = ctx.log();
    assert_eq!(
        count(
            &log,
            "was deleted or replaced while the daemon was using it"
        ),
        1,
        "said once:\n{log}"
    );
    assert!(
        log.contains("hint: never move or overwrite state.db"),
        "{log}"
    );
    assert!(
        !ctx.path("var/state.db-wal").exists(),
        "the stale write-ahead log is gone, so it cannot be replayed onto the new file"
    );

    // The replaced file is a sound database: the next start uses it.
    let out = ctx.sgevents(&["check"]).output().expect("check runs");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("sound: quick_check ok"), "{report}");
}

#[test]
fn a_deleted_database_stops_the_daemon() {
    let ctx = Ctx::new();
    ctx.events(1..=5);
    ctx.config(LIVE, &ctx.test_plugin("t", ""));
    let mut daemon = ctx.start();
    wait_for("the events", || ctx.ids("t").len() == 5);
    fs::remove_file(ctx.path("var/state.db")).expect("delete");
    wait_for("the daemon to stop", || {
        daemon.try_wait().expect("try_wait").is_some()
    });
    assert_eq!(
        count(&ctx.log(), "was deleted or replaced"),
        1,
        "{}",
        ctx.log()
    );
}

/// Overwrites `len` bytes at `at` of `path` with garbage.
fn damage(path: &std::path::Path, at: u64, len: usize) {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open to damage");
    f.seek(SeekFrom::Start(at)).expect("seek");
    f.write_all(&vec![0xA5; len]).expect("damage");
}

#[test]
fn a_damaged_database_is_refused_at_start_with_the_file_and_a_hint() {
    let ctx = Ctx::new();
    ctx.events(1..=2000);
    ctx.config(&[], &ctx.test_plugin("t", ""));
    crate::assert_success(&ctx.run());
    let db = ctx.path("var/state.db");
    assert!(
        !ctx.path("var/state.db-wal").exists(),
        "a clean stop checkpoints"
    );
    let size = fs::metadata(&db).expect("db").len();
    // Pages in the middle of the file: the journal's.
    damage(&db, size / 2, 8192);

    let out = ctx.run();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(count(&err, "is damaged"), 1, "said once:\n{err}");
    assert!(
        err.contains("var/state.db` is damaged"),
        "names the file: {err}"
    );
    assert!(
        err.contains("hint: stop here and restore it from a backup"),
        "{err}"
    );
    assert_eq!(
        fs::metadata(&db).expect("db").len(),
        size,
        "the damaged file is left as it is, for the operator"
    );

    let out = ctx.sgevents(&["check", "--deep"]).output().expect("check");
    assert!(!out.status.success());
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("integrity_check"), "{report}");
    assert!(report.contains("is damaged"), "{report}");

    // A file that is not a database at all.
    damage(&db, 0, 100);
    let out = ctx.run();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(count(&err, "is damaged"), 1, "{err}");
}

#[test]
fn another_writer_holding_the_database_pauses_deliveries_and_loses_nothing() {
    let ctx = Ctx::new();
    ctx.events(1..=50);
    ctx.config(LIVE, &ctx.test_plugin("t", ""));
    let mut daemon = ctx.start();
    wait_for("the first events", || ctx.ids("t").len() == 50);

    // `sqlite3 state.db` then `BEGIN IMMEDIATE`, as an operator might.
    let other = Connection::open(ctx.path("var/state.db")).expect("open");
    other
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    ctx.append_events(51..=100);
    wait_for("the warning", || {
        ctx.log().contains("another process holds a write lock on")
    });
    // The warning comes once the store's busy timeout (5 s) ran out: where the daemon used to
    // exit, it is still up, and nothing was journaled meanwhile.
    assert!(
        daemon.try_wait().expect("try_wait").is_none(),
        "the daemon stays up:\n{}",
        ctx.log()
    );
    assert_eq!(ctx.ids("t").len(), 50, "nothing can be journaled meanwhile");
    other.execute_batch("COMMIT").expect("let go");
    drop(other);

    wait_for("the rest", || ctx.ids("t").len() == 100);
    ctx.stop(daemon);
    assert_eq!(ctx.ids("t"), (1..=100).collect::<Vec<_>>());
    assert_eq!(
        count(&ctx.log(), "another process holds a write lock"),
        1,
        "one warning per episode"
    );
    assert!(ctx.log().contains("is free again after"), "{}", ctx.log());
}

#[test]
fn a_plugin_does_not_outlive_a_killed_daemon_and_redelivery_counts_on() {
    let ctx = Ctx::new();
    ctx.events(1..=10);
    let gc = ctx.path("grandchild.pid");
    let pid = ctx.path("t.pid");
    // The plugin leaves a process of its own in its group, as a shell pipeline would.
    let plugin = format!(
        "\n[plugin.t]\ncommand = [\"sh\", \"-c\", \"sleep 1000 & echo $! > {gc}; exec {exe}\"]\n\
         config = {{ record = {rec:?}, pid_file = {pid:?}, hang_at = 5, hang_times = 1 }}\n",
        gc = gc.display(),
        exe = test_plugin().display(),
        rec = ctx.path("t.rec").display().to_string(),
        pid = pid.display().to_string(),
    );
    ctx.config(LIVE, &plugin);
    let mut daemon = ctx.start();
    wait_for("event 5 in flight", || ctx.records("t").contains(&(5, 1)));
    // Sends are committed with the next group (a few milliseconds): a kill before that would
    // deliver it again as attempt 1, as docs/STATE.md says.
    wait_for("the delivery of event 5 recorded", || {
        ctx.db()
            .query_row(
                "SELECT count(*) FROM in_flight WHERE plugin = 't' AND event_id = 5 AND attempt = 1",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap_or(0)
            == 1
    });
    let first = ctx.pid_of("t");
    let grandchild: i32 = fs::read_to_string(&gc)
        .expect("grandchild pid")
        .trim()
        .parse()
        .expect("pid");
    assert!(running(first) && running(grandchild));
    signal(&daemon, Signal::SIGKILL);
    let _ = daemon.wait();

    // The parent-death signal: the plugin itself goes with the daemon.
    wait_for("the plugin to die with the daemon", || !running(first));
    assert!(
        running(grandchild),
        "what the plugin started lives on until the next start"
    );

    let daemon = ctx.start();
    wait_for("event 5 again", || {
        ctx.records("t").iter().any(|r| r.0 == 5 && r.1 > 1)
    });
    assert!(
        !running(grandchild),
        "the next start killed the plugin's process group before delivering"
    );
    assert!(
        ctx.log().contains("outlived the previous daemon"),
        "{}",
        ctx.log()
    );
    wait_for("the rest", || ctx.ids("t").contains(&10));
    ctx.stop(daemon);
    let fives: Vec<u32> = ctx
        .records("t")
        .iter()
        .filter(|r| r.0 == 5)
        .map(|r| r.1)
        .collect();
    assert_eq!(fives, [1, 2], "the redelivery after the crash is attempt 2");
}

#[test]
fn pruning_gives_the_space_back() {
    let ctx = Ctx::new();
    ctx.events(1..=30_000);
    ctx.config(
        &[
            ("exit_when_idle = true", "exit_when_idle = false"),
            (
                "commit_interval = \"1ms\"",
                "commit_interval = \"5ms\"\njournal_retention = \"1s\"\nprune_interval = \"1s\"",
            ),
        ],
        &ctx.test_plugin("t", "max_in_flight = 32"),
    );
    let daemon = ctx.start();
    wait_for("every event", || ctx.ids("t").len() == 30_000);
    let db = ctx.path("var/state.db");
    wait_for("the journal to be pruned and the pages given back", || {
        let conn = ctx.db();
        let (events, free): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM events), (SELECT freelist_count FROM pragma_freelist_count)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("counts");
        events == 0 && free == 0
    });
    ctx.stop(daemon);
    let size = fs::metadata(&db).expect("db").len();
    assert!(
        size < 1024 * 1024,
        "the file shrank after pruning 30,000 events: {size} bytes"
    );
    assert!(ctx.log().contains("pruned the journal"), "{}", ctx.log());
    let auto_vacuum: i64 = ctx
        .db()
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .expect("pragma");
    assert_eq!(auto_vacuum, 2, "incremental");
}

#[test]
fn a_damaged_journal_range_stops_the_plugin_that_reads_it_not_the_daemon() {
    let ctx = Ctx::new();
    ctx.events(1..=20_000);
    // b is slow: it is still at the start of the journal when the middle is damaged.
    let plugins = ctx.test_plugin("a", "max_in_flight = 32") + &ctx.test_plugin("b", "slow_ms = 2");
    ctx.config(LIVE, &plugins);
    let daemon = ctx.start();
    ctx.wait_ready();
    wait_for("a to reach the end", || ctx.ids("a").len() == 20_000);
    assert!(ctx.ids("b").len() < 5_000, "b is still early");

    // Journal pages ahead of b (2,000 events' worth), long written back from the log into the
    // file and out of the daemon's cache, are damaged on disk.
    let db = ctx.path("var/state.db");
    let (leaves, page_size): (Vec<i64>, i64) = {
        let conn = ctx.db();
        let mut stmt = conn
            .prepare("SELECT pageno FROM dbstat WHERE name = 'events' AND pagetype = 'leaf' ORDER BY path")
            .expect("dbstat");
        let leaves = stmt
            .query_map([], |r| r.get(0))
            .expect("pages")
            .map(Result::unwrap)
            .collect();
        let size = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .expect("page size");
        (leaves, size)
    };
    // Those pages must be read from the file, not from frames of the write-ahead log that still
    // hold them (a reader's snapshot can keep old frames in use): the log is written back and
    // emptied first. The daemon goes on writing cursors, so this may take a few tries.
    let writer = rusqlite::Connection::open(&db).expect("state.db opens");
    writer
        .busy_timeout(std::time::Duration::from_secs(2))
        .expect("busy timeout");
    wait_for("the write-ahead log to be written back and emptied", || {
        writer
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            })
            .is_ok_and(|busy| busy == 0)
    });
    drop(writer);
    // A little ahead of b, so that it gets there soon, however slow the machine.
    let at = ctx.ids("b").len() + 2_000;
    let (from, to) = (
        leaves.len() * at / 20_000,
        leaves.len() * (at + 2_000) / 20_000,
    );
    for page in &leaves[from..to] {
        damage(&db, ((page - 1) * page_size) as u64, page_size as usize);
    }

    wait_for("b to be disabled", || ctx.plugin("b").0 == "disabled");
    let reason = ctx.plugin("b").3.unwrap_or_default();
    assert!(
        reason.starts_with("cannot read the journal after its position"),
        "{reason}"
    );
    assert!(reason.contains("malformed"), "{reason}");
    assert!(
        ctx.ids("b").len() < 12_000,
        "b got no event past the damage"
    );

    // An operator's rewind into the damaged range fails, alone.
    let out = ctx.cli(&["plugin", "rewind", "a", "--to-event", "1"]);
    assert!(!out.status.success(), "the rewind cannot read the range");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("malformed"), "{err}");

    // The daemon and the other plugin go on.
    ctx.append_events(20_001..=20_010);
    wait_for("a to get the new events", || ctx.ids("a").len() == 20_010);
    ctx.stop(daemon);
}
