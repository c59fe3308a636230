//! The JSON-lines source's line parser: one line of the events file becomes an [`Event`] and its
//! journal row ([`journal_row`]), whose body is what every plugin later receives.
//!
//! `read_batch` in `source/jsonl.rs` is private; this reads a line the way it does (newline and CR
//! stripped, blank lines skipped, `serde_json::from_slice` into [`Event`]) and then follows the
//! event on to the wire: the journal body, wrapped by `encode_event_raw`, must decode on the
//! plugin's side into the very event the line held.

use proptest::prelude::*;
use sgevents_protocol::{DaemonMessage, Event, decode_daemon_line, encode_event_raw};

use super::{Fields, Json, any_json, check, damaged, field, num, odd_number, odd_string};
use crate::source::journal_row;

/// The fields of an `EventLogEntry` and of its links.
pub(super) const EVENT_FIELDS: &[&str] = &[
    "id",
    "event_type",
    "attribute_name",
    "meta",
    "entity",
    "user",
    "project",
    "session_uuid",
    "created_at",
    "description",
    "type",
    "name",
    "is_transient",
    "entity_type",
];

fuzz_tests! {
    fuzz_jsonl_line, fuzz_jsonl_line_long => jsonl_lines;
}

/// A string, or sometimes null or something else.
fn text_or_odd() -> BoxedStrategy<Json> {
    prop_oneof![
        6 => prop::sample::select(vec![
            "Shotgun_Task_Change", "Shotgun_Shot_New", "Shotgun_Version_Retirement",
            "sg_status_list", "Task", "2026-01-21T19:47:33Z", "2026-01-21T19:47:33+01:00", "",
        ])
        .prop_map(|s| Json::Str(s.to_owned())),
        2 => odd_string(),
        1 => Just(Json::Null),
        1 => any_json(),
    ]
    .boxed()
}

/// An entity link, `{"type": "Task", "id": 67378, "name": "Anim"}`, sometimes odd or null.
pub(super) fn link() -> BoxedStrategy<Json> {
    prop_oneof![
        6 => (text_or_odd(), any::<i64>(), prop::option::of(text_or_odd()), prop::option::of(any_json()))
            .prop_map(|(t, id, name, extra)| {
                let mut f = vec![field("type", t), field("id", num(id))];
                if let Some(n) = name {
                    f.push(field("name", n));
                }
                if let Some(x) = extra {
                    f.push(field("valid", x));
                }
                Json::Obj(f)
            }),
        2 => Just(Json::Null),
        1 => any_json(),
    ]
    .boxed()
}

/// `meta`: an object with the keys matching looks at, and values of any kind.
pub(super) fn meta() -> BoxedStrategy<Json> {
    prop_oneof![
        4 => (text_or_odd(), prop::option::of(prop_oneof![any::<bool>().prop_map(Json::Bool), any_json()]), any_json(), any_json())
            .prop_map(|(entity_type, transient, old, new)| {
                let mut f = vec![
                    field("type", Json::Str("attribute_change".into())),
                    field("entity_type", entity_type),
                    field("old_value", old),
                    field("new_value", new),
                ];
                if let Some(t) = transient {
                    f.push(field("is_transient", t));
                }
                Json::Obj(f)
            }),
        1 => any_json(),
    ]
    .boxed()
}

/// A valid `EventLogEntry` as its fields, in the flat shape (or with odd values where the event
/// allows any).
pub(super) fn event_fields() -> BoxedStrategy<Fields> {
    (
        prop_oneof![4 => any::<i64>().prop_map(num), 1 => odd_number()],
        text_or_odd(),
        prop::option::of(text_or_odd()),
        meta(),
        (link(), link(), link()),
        (text_or_odd(), text_or_odd(), text_or_odd()),
        prop::option::of((any::<String>(), any_json())),
    )
        .prop_map(
            |(
                id,
                event_type,
                attribute,
                meta,
                (entity, user, project),
                (session, created, description),
                extra,
            )| {
                let mut f = vec![
                    field("id", id),
                    field("event_type", event_type),
                    field("meta", meta),
                    field("entity", entity),
                    field("user", user),
                    field("project", project),
                    field("session_uuid", session),
                    field("created_at", created),
                    field("description", description),
                ];
                if let Some(a) = attribute {
                    f.push(field("attribute_name", a));
                }
                if let Some((k, v)) = extra {
                    f.push((k, v));
                }
                f
            },
        )
        .boxed()
}

/// What a journaled event must satisfy: its row's columns agree with the event, its body is one
/// line that reads back as the same event, and the line the daemon sends with it decodes, on the
/// plugin's side, into that event.
pub(super) fn check_journaled(event: &Event) -> Result<(), TestCaseError> {
    let row = journal_row(event);
    prop_assert_eq!(row.event_id, event.id);
    prop_assert_eq!(&row.event_type, &event.event_type);
    prop_assert_eq!(&row.attribute_name, &event.attribute_name);
    prop_assert_eq!(row.entity_type.as_deref(), event.entity_type());
    prop_assert_eq!(row.project_id, event.project_id());
    prop_assert_eq!(row.is_transient, event.is_transient());
    prop_assert_eq!(&row.created_at, &event.created_at);
    prop_assert!(!row.body.contains('\n'), "the body is more than one line");
    let back: Event = serde_json::from_str(&row.body).map_err(|e| {
        TestCaseError::fail(format!(
            "the journal body does not read back: {e}: {}",
            row.body
        ))
    })?;
    prop_assert_eq!(&back, event);
    prop_assert_eq!(
        journal_row(&back).body,
        row.body.clone(),
        "the body is not stable"
    );
    let line = encode_event_raw(event.id, 1, &["s"], 1000, &row.body);
    match decode_daemon_line(line.as_bytes()) {
        Ok(DaemonMessage::Event(delivery)) => prop_assert_eq!(&delivery.event, event),
        other => prop_assert!(false, "the event line does not decode: {other:?}"),
    }
    Ok(())
}

fn jsonl_lines(cases: u32) {
    check(cases, damaged(event_fields(), EVENT_FIELDS), |line| {
        // As `read_batch` reads a line.
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        match serde_json::from_slice::<Event>(text) {
            Ok(event) => check_journaled(&event)?,
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        Ok(())
    });
}
