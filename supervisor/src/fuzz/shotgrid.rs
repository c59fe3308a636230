//! The ShotGrid REST answer parser: the body of a `_search` on `event_log_entries`
//! ([`answer_rows`], JSON:API rows turned into the flat shape), then each row read as an
//! [`Event`] and journaled, as the poller does.
//!
//! Answers are generated as the site writes them (`data` rows with `attributes` and
//! `relationships`, `links`, `meta`), then one thing is changed at the answer's level or in a row,
//! and the body's bytes are damaged (the client reads the body lossily as text).

use proptest::prelude::*;
use serde_json::Value;
use sgevents_protocol::Event;

use super::events::{check_journaled, link, meta};
use super::{
    FieldChange, Fields, Json, any_json, apply_field_change, byte_change, check, field,
    field_change, num, odd_number, odd_string,
};
use crate::source::shotgrid::client::answer_rows;

const ANSWER_FIELDS: &[&str] = &[
    "data",
    "links",
    "meta",
    "errors",
    "id",
    "type",
    "attributes",
    "relationships",
    "event_type",
    "attribute_name",
    "meta",
    "session_uuid",
    "created_at",
    "description",
    "entity",
    "user",
    "project",
];

fuzz_tests! {
    fuzz_shotgrid_answer, fuzz_shotgrid_answer_long => shotgrid_answers;
}

/// One JSON:API row of `event_log_entries`.
fn row() -> BoxedStrategy<Fields> {
    (
        prop_oneof![4 => any::<i64>().prop_map(num), 1 => odd_number()],
        (
            odd_string(),
            prop::option::of(odd_string()),
            meta(),
            odd_string(),
        ),
        (link(), link(), link()),
        prop::option::of((any::<String>(), any_json())),
        field_change(ANSWER_FIELDS),
    )
        .prop_map(
            |(
                id,
                (event_type, attribute, meta, created),
                (entity, user, project),
                extra,
                change,
            )| {
                let mut attributes = vec![
                    field("event_type", event_type),
                    field("meta", meta),
                    field("session_uuid", Json::Null),
                    field("created_at", created),
                ];
                if let Some(a) = attribute {
                    attributes.push(field("attribute_name", a));
                }
                if let Some((k, v)) = extra {
                    attributes.push((k, v));
                }
                let relationship = |data: Json| {
                    Json::Obj(vec![field("data", data), field("links", Json::Obj(vec![]))])
                };
                let relationships = vec![
                    field("entity", relationship(entity)),
                    field("user", relationship(user)),
                    field("project", relationship(project)),
                ];
                vec![
                    field("type", Json::Str("EventLogEntry".into())),
                    field("id", id),
                    field("attributes", apply_field_change(attributes, change)),
                    field("relationships", Json::Obj(relationships)),
                    field(
                        "links",
                        Json::Obj(vec![field("self", Json::Str("/api/v1/x".into()))]),
                    ),
                ]
            },
        )
        .boxed()
}

/// A whole answer body, damaged or not.
fn answer() -> BoxedStrategy<Vec<u8>> {
    (
        prop::collection::vec((row(), field_change(ANSWER_FIELDS)), 0..3),
        field_change(ANSWER_FIELDS),
        byte_change(),
    )
        .prop_map(|(rows, change, bytes)| {
            let data = rows
                .into_iter()
                .map(|(r, c)| apply_field_change(r, c))
                .collect();
            let answer = vec![
                field("data", Json::Arr(data)),
                field(
                    "links",
                    Json::Obj(vec![field("self", Json::Str("/api/v1/x".into()))]),
                ),
            ];
            let change = match change {
                // Most often the answer itself is fine and its rows are odd.
                FieldChange::Whole(_) | FieldChange::Drop(_) => change,
                _ => FieldChange::None,
            };
            super::apply_byte_change(apply_field_change(answer, change).text(), bytes)
        })
        .boxed()
}

fn shotgrid_answers(cases: u32) {
    check(cases, answer(), |body| {
        let text = String::from_utf8_lossy(&body);
        match answer_rows(&text) {
            Ok(rows) => {
                for row in rows {
                    // The flat shape: an integer id and every field asked for, null if absent.
                    prop_assert!(row.get("id").and_then(Value::as_i64).is_some(), "{row}");
                    for name in ["event_type", "meta", "entity", "project", "created_at"] {
                        prop_assert!(row.get(name).is_some(), "no `{name}` in {row}");
                    }
                    // As the poller reads it: an event, or logged and skipped.
                    if let Ok(event) = serde_json::from_value::<Event>(row.clone()) {
                        prop_assert_eq!(Some(event.id), row.get("id").and_then(Value::as_i64));
                        check_journaled(&event)?;
                    }
                }
            }
            Err(e) => prop_assert!(!e.is_empty()),
        }
        Ok(())
    });
}

/// Found by `fuzz_shotgrid_answer`: an attribute named `id` (or a relationship so named) replaced
/// the row's own id in the flat shape, so an odd answer could journal an event under an id that is
/// not its own (or, with a non-integer `id`, drop it as unreadable). The row's id wins.
#[test]
fn fuzz_regression_an_attribute_named_id_does_not_replace_the_rows_id() {
    let body = r#"{"data":[
        {"type":"EventLogEntry","id":42,"attributes":{"id":7,"event_type":"Shotgun_Task_Change"},"relationships":{}},
        {"type":"EventLogEntry","id":43,"attributes":{"id":[]},"relationships":{}},
        {"type":"EventLogEntry","id":44,"attributes":{},"relationships":{"id":{"data":{"type":"Task","id":1}}}}
    ]}"#;
    let rows = answer_rows(body).expect("three rows");
    let ids: Vec<Option<i64>> = rows.iter().map(|r| r["id"].as_i64()).collect();
    assert_eq!(ids, [Some(42), Some(43), Some(44)]);
    for row in rows {
        let event: Event = serde_json::from_value(row).expect("an event");
        assert!((42..=44).contains(&event.id), "{event:?}");
    }
}
