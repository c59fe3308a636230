//! `sgevents status`: reads the state database (read-only), so it works whether the daemon runs
//! or not.

use std::fmt::Write as _;

use anyhow::Context;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::config::Config;
use crate::control::ops;
use crate::store::{DaemonRow, Reader, StoreError, open_read_only};
use crate::table;

/// Gathers the status as JSON (the `--json` output; the table is made from it).
pub fn gather(config: &Config) -> anyhow::Result<Value> {
    let conn = open_read_only(&config.daemon.state_dir)?;
    gather_from(&conn, config).context("cannot read the state database")
}

/// The status from `conn` (also the HTTP listener's `/api/status`, on its own read-only connection).
pub(crate) fn gather_from(conn: &Reader, config: &Config) -> Result<Value, StoreError> {
    let daemon = conn.daemon_row()?;
    let running = match &daemon {
        Some(DaemonRow {
            pid: Some(pid),
            stopped_at: None,
            ..
        }) => kill(Pid::from_raw(*pid as i32), None).is_ok(),
        _ => false,
    };
    let (head, events) = conn.journal_size()?;
    let source = conn.source_summary()?.map(|s| {
        json!({
            "kind": s.kind, "location": s.location, "line": s.line,
            "last_event_id": s.last_event_id, "malformed": s.malformed, "skipped": s.skipped,
            "last_error": s.last_error, "updated_at": s.updated_at,
            "oversized": s.oversized,
        })
    });
    let (gap_ranges, gap_ids) = conn.gap_totals()?;
    let source = source.map(|mut s| {
        s["gaps"] = json!(gap_ranges);
        s["missing_ids"] = json!(gap_ids);
        s
    });
    let mut rows = conn.plugin_rows()?;
    // The configuration's order first, then plugins that are only in the database.
    let order = |name: &str| {
        config
            .plugins
            .iter()
            .position(|p| p.name == name)
            .unwrap_or(usize::MAX)
    };
    rows.sort_by(|a, b| {
        order(&a.name)
            .cmp(&order(&b.name))
            .then(a.name.cmp(&b.name))
    });
    // A plugin that runs `after` a disabled or stopped one gets nothing meanwhile; that says
    // something only while the daemon runs.
    let held: Vec<Vec<String>> = rows
        .iter()
        .map(|r| match config.plugins.iter().find(|c| c.name == r.name) {
            Some(spec) if running => ops::held_back_by(&spec.after, &rows)
                .iter()
                .map(|d| d.name.clone())
                .collect(),
            _ => Vec::new(),
        })
        .collect();
    let plugins: Vec<Value> = rows
        .into_iter()
        .zip(held)
        .map(|(mut p, held_back_by)| {
            if !running && p.state != "disabled" {
                p.state = "stopped".into();
                p.pid = None;
            }
            let configured = config.plugins.iter().any(|c| c.name == p.name);
            json!({
                "name": p.name, "state": p.state, "pid": p.pid, "last_event_id": p.last_event_id, "lag": p.lag,
                "retries_pending": p.retries_pending, "failed": p.failed, "restarts": p.restarts,
                "last_error": p.disabled_reason.or(p.last_error),
                "configured": configured, "held_back_by": held_back_by, "timings": p.timings,
                "waiting_retry": p.waiting_retry, "last_delivery_error": p.last_delivery_error,
            })
        })
        .collect();
    Ok(json!({
        "daemon": {
            "running": running,
            "pid": daemon.as_ref().and_then(|d| d.pid),
            "started_at": daemon.as_ref().and_then(|d| d.started_at.clone()),
            "stopped_at": daemon.as_ref().and_then(|d| d.stopped_at.clone()),
            // The HTTP listener's address while the daemon runs with it.
            "http": daemon.as_ref().and_then(|d| d.http_listen.clone()).filter(|_| running),
        },
        "journal": { "head": head, "events": events },
        "source": source,
        "plugins": plugins,
    }))
}

/// Renders the status as text.
pub fn render(status: &Value) -> String {
    let mut out = String::new();
    let d = &status["daemon"];
    if d["running"].as_bool() == Some(true) {
        let http = d["http"]
            .as_str()
            .map(|a| format!(", http://{a}/"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "daemon:  running (pid {}, since {}{http})",
            d["pid"],
            d["started_at"].as_str().unwrap_or("?")
        );
    } else {
        let since = d["stopped_at"]
            .as_str()
            .map(|s| format!(", stopped {s}"))
            .unwrap_or_default();
        let _ = writeln!(out, "daemon:  not running{since}");
    }
    match status["source"].as_object() {
        Some(s) => {
            let last = s["last_event_id"]
                .as_i64()
                .map_or("-".to_owned(), |v| v.to_string());
            let problem = s["last_error"]
                .as_str()
                .map(|e| format!(" (last problem: {e})"))
                .unwrap_or_default();
            let kind = s["kind"].as_str().unwrap_or("?");
            // Events over `max_event_bytes`, skipped: said only when there were some.
            let problem = match s["oversized"].as_i64() {
                Some(n) if n > 0 => format!(", {n} oversized skipped{problem}"),
                _ => problem,
            };
            let location = s["location"].as_str().unwrap_or("?");
            if kind == "shotgrid" {
                let _ = writeln!(
                    out,
                    "source:  shotgrid {location}: last event {last}, {} gaps ({} ids) waited for{problem}",
                    s["gaps"], s["missing_ids"]
                );
            } else {
                let _ = writeln!(
                    out,
                    "source:  {kind} {location}: line {}, last event {last}, {} malformed, {} skipped{problem}",
                    s["line"], s["malformed"], s["skipped"]
                );
            }
        }
        None => {
            let _ = writeln!(out, "source:  nothing read yet");
        }
    }
    let _ = writeln!(
        out,
        "journal: {} events kept, head seq {}",
        status["journal"]["events"], status["journal"]["head"]
    );
    let _ = writeln!(out);
    out.push_str(&plugin_table(
        status["plugins"].as_array().map_or(&[][..], Vec::as_slice),
    ));
    out
}

/// The plugins' table, shared by `status` and `plugin list`: one row per plugin (its state, pid,
/// last event, lag, retries, failed events, restarts, delivery durations and the headline of its
/// last error, or what holds it back), then a line per plugin for a waiting retry and its last
/// delivery error. Each plugin is an object of `status --json`'s `plugins` list; a `note` string
/// stands in for the error column when present.
pub fn plugin_table(plugins: &[Value]) -> String {
    let header = [
        "PLUGIN",
        "STATE",
        "PID",
        "LAST EVENT",
        "LAG",
        "RETRIES",
        "FAILED",
        "RESTARTS",
        "MS P50/P95/MAX",
        "LAST ERROR",
    ];
    let dash = |v: &Value| {
        if v.is_null() {
            "-".to_owned()
        } else {
            v.to_string()
        }
    };
    let state_of = |name: &str| {
        plugins
            .iter()
            .find(|q| q["name"] == name)
            .and_then(|q| q["state"].as_str())
            .unwrap_or("?")
    };
    let rows = plugins
        .iter()
        .map(|p| {
            let held: Vec<(&str, &str)> = p["held_back_by"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|a| (a, state_of(a)))
                .collect();
            let error = if let Some(note) = p["note"].as_str() {
                note.to_owned()
            } else if !held.is_empty() {
                ops::describe_held_back(&held)
            } else {
                p["last_error"]
                    .as_str()
                    .map_or_else(|| "-".into(), |e| table::headline(e).into_owned())
            };
            let name = if p["configured"].as_bool() == Some(false) {
                format!("{} (not configured)", p["name"].as_str().unwrap_or("?"))
            } else {
                p["name"].as_str().unwrap_or("?").to_owned()
            };
            vec![
                name,
                p["state"].as_str().unwrap_or("?").to_owned(),
                dash(&p["pid"]),
                dash(&p["last_event_id"]),
                dash(&p["lag"]),
                dash(&p["retries_pending"]),
                dash(&p["failed"]),
                dash(&p["restarts"]),
                table::timings_cell(Some(&p["timings"])),
                error,
            ]
        })
        .collect();
    let mut out = table::render(&header, rows, &[2, 3, 4, 5, 6, 7]);
    // What a plugin waits for, and its last delivery error, under the table.
    for p in plugins {
        let mut notes = Vec::new();
        if let Ok(retry) = serde_json::from_value::<ops::WaitingRetry>(p["waiting_retry"].clone()) {
            notes.push(ops::describe_retry(&retry));
        }
        if let Some(error) = p["last_delivery_error"].as_str() {
            notes.push(format!("last delivery error: {}", table::headline(error)));
        }
        if !notes.is_empty() {
            let _ = writeln!(
                out,
                "`{}`: {}",
                p["name"].as_str().unwrap_or("?"),
                notes.join("; ")
            );
        }
    }
    out
}

/// `status --watch SECS`: redraws the status in place every `every` until interrupted. Each frame
/// moves the cursor home, writes every line followed by "clear to end of line", then clears to
/// the end of the screen: nothing is erased before it is overwritten, so it does not flicker (in a
/// terminal or in tmux). Only the first frame clears the whole screen. A database that cannot be
/// read (the daemon not started yet) is shown in the frame, and the next frame tries again.
pub fn watch(config: &Config, every: std::time::Duration) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let mut first = true;
    loop {
        let body = match gather(config) {
            Ok(status) => render(&status),
            Err(e) => format!("{e:#}\n"),
        };
        let mut frame = String::from(if first { "\x1b[H\x1b[2J" } else { "\x1b[H" });
        first = false;
        let _ = writeln!(
            frame,
            "every {}: sgevents status (Ctrl-C stops)\x1b[K\n\x1b[K",
            humantime::format_duration(every)
        );
        for line in body.lines() {
            frame.push_str(line);
            frame.push_str("\x1b[K\n");
        }
        frame.push_str("\x1b[J");
        if out
            .write_all(frame.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            // The terminal is gone.
            return Ok(());
        }
        std::thread::sleep(every);
    }
}
