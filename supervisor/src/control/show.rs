//! `sgevents failed show NAME --event ID`: everything the state database keeps about one failed
//! event: the whole error (a Python traceback in full), when each attempt failed, and the event.
//!
//! It only reads (`store::open_read_only`), so it works whether the daemon runs or not, and never
//! changes a cursor or `failed_events`.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ControlError;
use crate::store::{ChangeError, FailedRecord, Reader};

/// One failed event in full (the `--json` output; the text is made from it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedDetail {
    /// The plugin.
    pub plugin: String,
    /// The ShotGrid event id.
    pub event_id: i64,
    /// Its journal seq.
    pub seq: i64,
    /// Deliveries made.
    pub attempts: i64,
    /// When it failed for good (UTC).
    pub failed_at: String,
    /// When an operator asked for it again, if that is pending.
    pub retry_requested_at: Option<String>,
    /// The last error, whole.
    pub error: String,
    /// When each failed attempt ended: `{"attempt": N, "at": "<UTC>"}`, oldest first; `None` when
    /// the event failed before the database recorded them (schema 3 and older).
    pub attempt_times: Option<Vec<Value>>,
    /// The event as journaled; `None` once pruned from the journal.
    pub event: Option<Value>,
}

/// Reads failed event `event_id` of `plugin`.
pub fn failed_show(
    reader: &Reader,
    plugin: &str,
    event_id: i64,
) -> Result<FailedDetail, ControlError> {
    let known = reader.plugin_names()?;
    if !known.iter().any(|k| k == plugin) {
        return Err(ChangeError::UnknownPlugin {
            name: plugin.to_owned(),
            known,
        }
        .into());
    }
    let Some(FailedRecord {
        seq,
        attempts,
        failed_at,
        retry_requested_at,
        error,
        attempt_times: times,
        body,
    }) = reader.failed_record(plugin, event_id)?
    else {
        return Err(ChangeError::NotFailed {
            plugin: plugin.to_owned(),
            event_id,
        }
        .into());
    };
    Ok(FailedDetail {
        plugin: plugin.to_owned(),
        event_id,
        seq,
        attempts,
        failed_at,
        retry_requested_at,
        error,
        attempt_times: times.and_then(|t| serde_json::from_str(&t).ok()),
        event: body.and_then(|b| serde_json::from_str(&b).ok()),
    })
}

/// The text `failed show` prints.
pub fn render(d: &FailedDetail) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "plugin `{}`, event {} (seq {}): failed at {} after {} attempt{}",
        d.plugin,
        d.event_id,
        d.seq,
        d.failed_at,
        d.attempts,
        super::handle::plural(d.attempts as usize)
    );
    if let Some(at) = &d.retry_requested_at {
        let _ = writeln!(
            out,
            "retry requested at {at}: it is delivered again when the plugin runs"
        );
    }
    let _ = writeln!(out, "\nattempts (when each failed, UTC):");
    match &d.attempt_times {
        Some(times) if !times.is_empty() => {
            for t in times {
                let _ = writeln!(
                    out,
                    "  attempt {:<4} {}",
                    t["attempt"].to_string(),
                    t["at"].as_str().unwrap_or("?")
                );
            }
        }
        _ => {
            let _ = writeln!(
                out,
                "  not recorded (the event failed before the state database kept attempt times)"
            );
        }
    }
    let _ = writeln!(out, "\nerror:\n{}", d.error.trim_end());
    match &d.event {
        Some(event) => {
            let _ = writeln!(
                out,
                "\nevent:\n{}",
                serde_json::to_string_pretty(event).unwrap_or_default()
            );
        }
        None => {
            let _ = writeln!(
                out,
                "\nevent: no longer in the journal (pruned after `daemon.journal_retention`)"
            );
        }
    }
    out
}
