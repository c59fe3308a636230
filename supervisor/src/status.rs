//! `sgevents status`: reads the state database (read-only), so it works whether the daemon runs
//! or not.

use std::fmt::Write as _;

use anyhow::Context;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use rusqlite::{Connection, OptionalExtension};
use serde_json::{Value, json};

use crate::config::Config;
use crate::store::open_read_only;

/// One plugin's row of the status.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginRow {
    /// Name.
    pub name: String,
    /// State (as recorded; `stopped` when the daemon is not running).
    pub state: String,
    /// The child's pid.
    pub pid: Option<i64>,
    /// The last event finished.
    pub last_event_id: Option<i64>,
    /// Journal events after its cursor.
    pub lag: i64,
    /// Events waiting for a retry.
    pub retries: i64,
    /// Failed events.
    pub failed: i64,
    /// Restarts.
    pub restarts: i64,
    /// Why it is disabled, or its last error.
    pub last_error: Option<String>,
    /// The summary of its delivery durations (JSON), once it has delivered.
    pub timings: Option<Value>,
}

/// Gathers the status as JSON (the `--json` output; the table is made from it).
pub fn gather(config: &Config) -> anyhow::Result<Value> {
    let conn = open_read_only(&config.daemon.state_dir)?;
    gather_from(&conn, config).context("cannot read the state database")
}

fn gather_from(conn: &Connection, config: &Config) -> rusqlite::Result<Value> {
    let daemon: Option<(Option<i64>, Option<String>, Option<String>)> = conn
        .query_row(
            "SELECT pid, started_at, stopped_at FROM daemon WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let running = match &daemon {
        Some((Some(pid), _, None)) => kill(Pid::from_raw(*pid as i32), None).is_ok(),
        _ => false,
    };
    let (head, events): (i64, i64) = conn.query_row(
        "SELECT COALESCE(MAX(seq), 0), count(*) FROM events",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let source = conn
        .query_row("SELECT kind, location, line, last_event_id, malformed, skipped, last_error, updated_at FROM source_state WHERE id = 1", [], |r| {
            Ok(json!({
                "kind": r.get::<_, String>(0)?, "location": r.get::<_, Option<String>>(1)?, "line": r.get::<_, i64>(2)?,
                "last_event_id": r.get::<_, Option<i64>>(3)?, "malformed": r.get::<_, i64>(4)?, "skipped": r.get::<_, i64>(5)?,
                "last_error": r.get::<_, Option<String>>(6)?, "updated_at": r.get::<_, String>(7)?,
            }))
        })
        .optional()?;
    let (gap_ranges, gap_ids): (i64, i64) = conn.query_row(
        "SELECT count(*), COALESCE(SUM(last_id - first_id + 1), 0) FROM source_gaps",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let source = source.map(|mut s| {
        s["gaps"] = json!(gap_ranges);
        s["missing_ids"] = json!(gap_ids);
        s
    });
    let mut stmt = conn.prepare(
        "SELECT p.name, p.state, p.pid, p.last_event_id, l.lag, l.retries_pending, l.failed, p.restarts, \
         COALESCE(p.disabled_reason, p.last_error), p.timings FROM plugins p JOIN plugin_lag l ON l.name = p.name",
    )?;
    let mut rows: Vec<PluginRow> = stmt
        .query_map([], |r| {
            Ok(PluginRow {
                name: r.get(0)?,
                state: r.get(1)?,
                pid: r.get(2)?,
                last_event_id: r.get(3)?,
                lag: r.get(4)?,
                retries: r.get(5)?,
                failed: r.get(6)?,
                restarts: r.get(7)?,
                last_error: r.get(8)?,
                timings: r
                    .get::<_, Option<String>>(9)?
                    .and_then(|t| serde_json::from_str(&t).ok()),
            })
        })?
        .collect::<Result<_, _>>()?;
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
    let states: std::collections::BTreeMap<String, String> = rows
        .iter()
        .map(|r| (r.name.clone(), r.state.clone()))
        .collect();
    let plugins: Vec<Value> = rows
        .into_iter()
        .map(|mut p| {
            if !running && p.state != "disabled" {
                p.state = "stopped".into();
                p.pid = None;
            }
            let spec = config.plugins.iter().find(|c| c.name == p.name);
            // A plugin that runs `after` a disabled one gets nothing until it is enabled.
            let held_back_by: Vec<&String> = spec
                .map(|s| s.after.iter().filter(|a| states.get(*a).map(String::as_str) == Some("disabled")).collect())
                .unwrap_or_default();
            json!({
                "name": p.name, "state": p.state, "pid": p.pid, "last_event_id": p.last_event_id, "lag": p.lag,
                "retries_pending": p.retries, "failed": p.failed, "restarts": p.restarts, "last_error": p.last_error,
                "configured": spec.is_some(), "held_back_by": held_back_by, "timings": p.timings,
            })
        })
        .collect();
    Ok(json!({
        "daemon": {
            "running": running,
            "pid": daemon.as_ref().and_then(|d| d.0),
            "started_at": daemon.as_ref().and_then(|d| d.1.clone()),
            "stopped_at": daemon.as_ref().and_then(|d| d.2.clone()),
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
        let _ = writeln!(
            out,
            "daemon:  running (pid {}, since {})",
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
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    let dash = |v: &Value| {
        if v.is_null() {
            "-".to_owned()
        } else {
            v.to_string()
        }
    };
    for p in status["plugins"].as_array().into_iter().flatten() {
        let held: Vec<String> = p["held_back_by"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(|a| format!("`{a}` (disabled)")))
            .collect();
        let error = if held.is_empty() {
            p["last_error"]
                .as_str()
                .map(|e| e.lines().next().unwrap_or("").to_owned())
                .unwrap_or_else(|| "-".into())
        } else {
            format!("held back: waits for {}", held.join(", "))
        };
        let t = &p["timings"];
        let ms = |v: &Value| v.as_f64().map_or("-".into(), |x| format!("{x:.1}"));
        let timings = if t.is_null() {
            "-".to_owned()
        } else {
            format!(
                "{}/{}/{}",
                ms(&t["p50_ms"]),
                ms(&t["p95_ms"]),
                ms(&t["max_ms"])
            )
        };
        let name = if p["configured"].as_bool() == Some(false) {
            format!("{} (not configured)", p["name"].as_str().unwrap_or("?"))
        } else {
            p["name"].as_str().unwrap_or("?").to_owned()
        };
        table.push(vec![
            name,
            p["state"].as_str().unwrap_or("?").to_owned(),
            dash(&p["pid"]),
            dash(&p["last_event_id"]),
            dash(&p["lag"]),
            dash(&p["retries_pending"]),
            dash(&p["failed"]),
            dash(&p["restarts"]),
            timings,
            error,
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            table
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in table {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i + 1 == row.len() {
                    cell.clone()
                } else {
                    format!("{cell:<w$}", w = widths[i])
                }
            })
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}
