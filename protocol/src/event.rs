//! The event a plugin receives: a ShotGrid `EventLogEntry` in the flat shape of `shotgun_api3`.
//!
//! The fields the incumbent's plugins know are typed; every other field the site returns is kept
//! in [`Event::extra`] and written back untouched, so nothing is lost on the way to a plugin.
//! Every typed field but `id` may be absent or null on the wire: ShotGrid itself writes rows with a
//! null `event_type` (see `shared/reference/shotgrid-wire.md` 3.1), and a plugin must not be
//! disconnected for the site's oddities.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// One `EventLogEntry`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The entry's id, allocated by ShotGrid in increasing order.
    pub id: i64,
    /// `Shotgun_<EntityType>_<New|Change|Retirement|Revival>` and others; empty when null.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub event_type: String,
    /// The field that changed, on `_Change` events; `None` on the others.
    #[serde(default)]
    pub attribute_name: Option<String>,
    /// The change itself; its shape depends on the event type (any JSON, often an object).
    #[serde(default, deserialize_with = "shallow")]
    pub meta: Value,
    /// The entity the event is about; `None` once that entity is retired.
    #[serde(default)]
    pub entity: Option<EntityLink>,
    /// Who made the change (`HumanUser` or `ApiUser`).
    #[serde(default)]
    pub user: Option<EntityLink>,
    /// The project, `None` for site-level events.
    #[serde(default)]
    pub project: Option<EntityLink>,
    /// The browser session that caused the change, if any.
    #[serde(default)]
    pub session_uuid: Option<String>,
    /// When the change happened, ISO 8601 with an offset, as the site wrote it.
    #[serde(default)]
    pub created_at: Option<String>,
    /// The site's English rendering of the change.
    #[serde(default)]
    pub description: Option<String>,
    /// Every other field, passed through untouched.
    #[serde(flatten, deserialize_with = "shallow_map")]
    pub extra: Map<String, Value>,
}

/// A link to an entity: `{"type": "Task", "id": 67378, "name": "Anim"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityLink {
    /// The entity type, such as `Task` or `CustomEntity06`.
    #[serde(rename = "type")]
    pub entity_type: String,
    /// The entity's id.
    pub id: i64,
    /// The entity's display name, when the site sent one.
    #[serde(default)]
    pub name: Option<String>,
    /// Any other key of the link (`valid`, `status`, `uuid`, ...), passed through untouched.
    #[serde(flatten, deserialize_with = "shallow_map")]
    pub extra: Map<String, Value>,
}

impl Event {
    /// A bare event with only an id and a type; the rest empty. Handy in tests.
    pub fn new(id: i64, event_type: impl Into<String>) -> Event {
        Event {
            id,
            event_type: event_type.into(),
            attribute_name: None,
            meta: Value::Null,
            entity: None,
            user: None,
            project: None,
            session_uuid: None,
            created_at: None,
            description: None,
            extra: Map::new(),
        }
    }

    /// The type of the entity the event is about: `entity.type`, or `meta.entity_type` when the
    /// entity link is null (retired entities).
    pub fn entity_type(&self) -> Option<&str> {
        match &self.entity {
            Some(link) => Some(&link.entity_type),
            None => self.meta.get("entity_type").and_then(Value::as_str),
        }
    }

    /// The id of the event's project, if it has one.
    pub fn project_id(&self) -> Option<i64> {
        self.project.as_ref().map(|p| p.id)
    }

    /// Whether `meta.is_transient` is `true` (a thumbnail not ready yet, for example).
    pub fn is_transient(&self) -> bool {
        self.meta.get("is_transient").and_then(Value::as_bool) == Some(true)
    }
}

impl EntityLink {
    /// A link with a type, an id and a name.
    pub fn new(entity_type: impl Into<String>, id: i64, name: impl Into<String>) -> EntityLink {
        EntityLink {
            entity_type: entity_type.into(),
            id,
            name: Some(name.into()),
            extra: Map::new(),
        }
    }
}

fn null_as_empty<'de, D: Deserializer<'de>>(de: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(de)?.unwrap_or_default())
}

/// The deepest nesting of arrays and objects accepted in one field of an event (`meta`, another
/// field, a key of a link).
///
/// A decoder stops at some depth (serde_json, which the daemon and the Rust SDK use, at 128
/// levels), and an event reaches a plugin inside an `event` message and its `event` object: an
/// event nested just under the limit on its own would be read by the daemon and journaled, and
/// then no plugin could read the line it is sent in. ShotGrid's own events nest a few levels.
pub const MAX_FIELD_DEPTH: usize = 64;

/// How deeply arrays and objects nest in `value` (0 for a scalar), counted without recursion.
fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, d)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(fields) => Box::new(fields.values()),
            _ => continue,
        };
        deepest = deepest.max(d + 1);
        stack.extend(children.map(|c| (c, d + 1)));
    }
    deepest
}

fn too_deep<E: serde::de::Error>(field: &str) -> E {
    E::custom(format_args!(
        "`{field}` is nested deeper than {MAX_FIELD_DEPTH} levels"
    ))
}

fn shallow<'de, D: Deserializer<'de>>(de: D) -> Result<Value, D::Error> {
    let value = Value::deserialize(de)?;
    if depth(&value) > MAX_FIELD_DEPTH {
        return Err(too_deep("meta"));
    }
    Ok(value)
}

fn shallow_map<'de, D: Deserializer<'de>>(de: D) -> Result<Map<String, Value>, D::Error> {
    let map = Map::<String, Value>::deserialize(de)?;
    match map.iter().find(|(_, v)| depth(v) > MAX_FIELD_DEPTH) {
        Some((key, _)) => Err(too_deep(key)),
        None => Ok(map),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TASK_CHANGE: &str = r#"{"id":2011531,"event_type":"Shotgun_Task_Change",
        "attribute_name":"sg_status_list",
        "meta":{"type":"attribute_change","attribute_name":"sg_status_list","entity_type":"Task",
                "entity_id":67378,"old_value":"wtg","new_value":"ip"},
        "entity":{"type":"Task","id":67378,"name":"Anim","valid":"valid"},
        "user":{"type":"HumanUser","id":42,"name":"Ana Reyes"},
        "project":{"type":"Project","id":66,"name":"Testing Sandbox"},
        "session_uuid":null,"created_at":"2026-11-02T10:15:00Z",
        "description":"Ana Reyes changed \"Status\" from \"wtg\" to \"ip\" on Task Anim",
        "cached_display_name":null,"image":null}"#;

    #[test]
    fn reads_the_flat_shape_and_keeps_unknown_fields() {
        let ev: Event = serde_json::from_str(TASK_CHANGE).expect("valid event");
        assert_eq!(ev.id, 2011531);
        assert_eq!(ev.entity_type(), Some("Task"));
        assert_eq!(ev.project_id(), Some(66));
        assert_eq!(
            ev.entity.as_ref().and_then(|e| e.extra.get("valid")),
            Some(&Value::from("valid"))
        );
        assert!(ev.extra.contains_key("cached_display_name"));
        assert!(ev.extra.contains_key("image"));
    }

    #[test]
    fn writes_back_exactly_what_it_read() {
        let original: Value = serde_json::from_str(TASK_CHANGE).expect("valid json");
        let ev: Event = serde_json::from_value(original.clone()).expect("valid event");
        assert_eq!(serde_json::to_value(&ev).expect("serializable"), original);
    }

    #[test]
    fn tolerates_a_null_event_type_and_missing_fields() {
        let ev: Event = serde_json::from_str(r#"{"id":7,"event_type":null}"#).expect("valid");
        assert_eq!(ev.event_type, "");
        assert_eq!(ev.entity_type(), None);
        assert!(!ev.is_transient());
    }

    #[test]
    fn retired_entities_take_their_type_from_meta() {
        let ev: Event = serde_json::from_str(
            r#"{"id":8,"event_type":"Shotgun_Task_Retirement","entity":null,
                "meta":{"type":"entity_retirement","entity_type":"Task","entity_id":67531}}"#,
        )
        .expect("valid");
        assert_eq!(ev.entity_type(), Some("Task"));
    }

    #[test]
    fn an_event_without_an_id_is_rejected() {
        let err = serde_json::from_str::<Event>(r#"{"event_type":"Shotgun_Task_New"}"#)
            .expect_err("id is required");
        assert!(err.to_string().contains("missing field `id`"), "{err}");
    }
}
