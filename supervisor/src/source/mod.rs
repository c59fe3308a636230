//! Event sources: what fills the journal.
//!
//! A source is a task that reads events from somewhere, in ascending id order, and appends them to
//! the journal in batches with [`Store::append`](crate::store::Store::append), each batch in one
//! transaction together with the source's new position, so that after a crash it resumes exactly
//! after the last committed batch. It tells the daemon when it is exhausted (a JSON-lines file read
//! to its end without `follow`), which `exit_when_idle` waits for. Plugins never talk to a source:
//! they read the journal, so a slow or disabled plugin never holds the source back.
//!
//! [`shotgrid`] polls a site's event log over REST; [`jsonl`] reads a file (the demo, tests,
//! replays).
//!
//! Both sources refuse an event longer than `[source] max_event_bytes` (by default, and at most,
//! the protocol's line limit less [`EVENT_ENVELOPE_RESERVE`](crate::config::EVENT_ENVELOPE_RESERVE),
//! so that every journaled event fits in the line that carries it to a plugin): it is skipped with
//! an ERROR and counted in `source_state.oversized` ([`oversized`]), never journaled.

pub(crate) mod jsonl;
pub(crate) mod shotgrid;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sgevents_protocol::{Event, MatchFields};

use crate::liveness::Alive;
use crate::store::{JournalRow, SourcePosition};

/// What the daemon knows of one run of the source, for `/healthz` (is its task alive) and
/// `/readyz` (has it completed a poll). A new run (a reload that changes `[source]`) gets a new
/// probe. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Probe {
    /// The task's liveness: the daemon holds its guard around the run.
    pub(crate) alive: Alive,
    polled: Arc<AtomicBool>,
    /// Asks the ShotGrid source for a poll now (a webhook): coalesced, so that at most one poll
    /// runs and one more is pending however many deliveries arrive.
    pub(crate) poke: Arc<tokio::sync::Notify>,
    /// The webhook's secret, when `[source]` enables webhooks (the ShotGrid source only).
    pub(crate) webhook_secret: Option<crate::config::Secret>,
    /// Webhook deliveries accepted, and refused for a missing or wrong signature.
    pub(crate) webhooks: Arc<WebhookCounts>,
}

/// What `POST /webhooks/shotgrid` saw since the source started.
#[derive(Debug, Default)]
pub(crate) struct WebhookCounts {
    /// Deliveries with a valid signature.
    pub(crate) accepted: std::sync::atomic::AtomicU64,
    /// Deliveries refused with 401.
    pub(crate) refused: std::sync::atomic::AtomicU64,
}

impl Probe {
    /// The probe of a new run; `webhook_secret` enables `POST /webhooks/shotgrid` for it.
    pub(crate) fn with_webhook(webhook_secret: Option<crate::config::Secret>) -> Probe {
        Probe {
            webhook_secret,
            ..Probe::default()
        }
    }

    /// The source completed a poll: it read the site (or the file) and committed what it found.
    pub(crate) fn polled(&self) {
        self.polled.store(true, Ordering::SeqCst);
    }

    /// Whether it has completed a poll since it started.
    pub(crate) fn has_polled(&self) -> bool {
        self.polled.load(Ordering::SeqCst)
    }
}

/// Turns a parsed event into a journal row, normalised to the flat shape.
pub(crate) fn journal_row(event: &Event) -> JournalRow {
    let fields = MatchFields::of(event);
    JournalRow {
        seq: 0,
        event_id: event.id,
        event_type: event.event_type.clone(),
        attribute_name: event.attribute_name.clone(),
        entity_type: fields.entity_type.map(str::to_owned),
        project_id: fields.project_id,
        is_transient: fields.is_transient,
        created_at: event.created_at.clone(),
        body: serde_json::to_string(event).expect("events always serialize"),
    }
}

/// Records an event skipped for its size: an ERROR naming it (`event`, an event id or a line),
/// its `size` (such as "17825792 bytes long") and `max`, counted in `position.oversized` and kept
/// as `position.last_error`.
pub(crate) fn oversized(position: &mut SourcePosition, event: &str, size: &str, max: usize) {
    position.oversized += 1;
    let message = format!("skipped {event}: it is {size}, above `source.max_event_bytes` ({max})");
    tracing::error!(
        source = %position.location,
        oversized = position.oversized,
        "{message}\nhint: no plugin receives it; fix or trim the event at its origin, or raise \
         `source.max_event_bytes` (at most {}) if it was set lower; `source_state.oversized` counts these",
        crate::config::MAX_EVENT_BYTES
    );
    position.last_error = Some(message);
}

/// Whether `row` is within `max` bytes; if not, it is recorded with [`oversized`].
pub(crate) fn fits(row: &JournalRow, max: usize, position: &mut SourcePosition) -> bool {
    if row.body.len() <= max {
        return true;
    }
    oversized(
        position,
        &format!("event `{}`", row.event_id),
        &format!("{} bytes long", row.body.len()),
        max,
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversized_row_is_counted_and_named() {
        let mut position = SourcePosition::default();
        let row =
            journal_row(&serde_json::from_str(r#"{"id":7,"event_type":"A"}"#).expect("event"));
        assert!(fits(&row, row.body.len(), &mut position));
        assert!(!fits(&row, row.body.len() - 1, &mut position));
        assert_eq!(position.oversized, 1);
        let error = position.last_error.expect("last error");
        assert!(
            error.starts_with("skipped event `7`: it is ") && error.contains("max_event_bytes"),
            "{error}"
        );
    }
}
