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

pub(crate) mod jsonl;
pub(crate) mod shotgrid;

use sgevents_protocol::{Event, MatchFields};

use crate::store::NewEvent;

/// Turns a parsed event into a journal row, normalised to the flat shape.
pub(crate) fn journal_row(event: &Event) -> NewEvent {
    let fields = MatchFields::of(event);
    NewEvent {
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
