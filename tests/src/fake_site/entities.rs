//! The fake site's entities: an in-memory table per entity type that api3's `read`, `update` and
//! `create` work on, the Scripts allowed to call them, and the `EventLogEntry` rows a write adds to
//! the log, shaped as `shared/reference/shotgrid-wire.md` 3.2 and 3.3 describe them.
//!
//! There is no schema. A type exists when it is one of ShotGrid's standard types (or a custom entity
//! type) or when a test seeded a record of it; a field exists on every record and is null until set.
//! The `EventLogEntry` type is the site's event log itself, which the site's state keeps.
//!
//! Tests reach all of this through [`FakeSite::insert_entity`], [`FakeSite::entity`],
//! [`FakeSite::entities`], [`FakeSite::add_script`], [`FakeSite::set_log_writes`] and
//! [`FakeSite::set_records_per_page`].

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::FakeSite;
use super::filter::{link, same};
use super::generate::iso8601;

/// ShotGrid's standard entity types, known to the site before anything is seeded.
const STANDARD_TYPES: [&str; 39] = [
    "ActionMenuItem",
    "ApiUser",
    "Asset",
    "Attachment",
    "Booking",
    "Camera",
    "ClientUser",
    "Cut",
    "CutItem",
    "Delivery",
    "Department",
    "EventLogEntry",
    "Group",
    "HumanUser",
    "Launch",
    "Level",
    "LocalStorage",
    "Note",
    "Page",
    "Phase",
    "PipelineConfiguration",
    "Playlist",
    "PlaylistVersionConnection",
    "Project",
    "PublishedFile",
    "PublishedFileType",
    "Release",
    "Reply",
    "Scene",
    "Sequence",
    "Shot",
    "Software",
    "Status",
    "Step",
    "Task",
    "TaskTemplate",
    "Ticket",
    "TimeLog",
    "Version",
];

/// Prefixes of the custom entity types a site can enable (`CustomEntity01` ...).
const CUSTOM_PREFIXES: [&str; 3] = [
    "CustomEntity",
    "CustomNonProjectEntity",
    "CustomThreadedEntity",
];

/// A Script: the credentials api3 calls carry, and the `ApiUser` its writes are credited to.
#[derive(Clone, Debug)]
pub(crate) struct Script {
    pub(crate) name: String,
    pub(crate) key: String,
    /// The id of its `ApiUser` record.
    pub(crate) user_id: i64,
}

/// One field that a write changed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Change {
    pub(crate) field: String,
    pub(crate) old: Value,
    pub(crate) new: Value,
}

/// How an `update` treats a list-valued field (`multi_entity_update_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Set,
    Add,
    Remove,
}

/// Who made a write, for the rows it logs.
#[derive(Clone, Debug)]
pub(crate) struct Author {
    /// The `ApiUser` link.
    pub(crate) user: Value,
    /// The `session_uuid` the caller sent, or null.
    pub(crate) session_uuid: Value,
}

/// The tables, the Scripts and the settings of api3.
#[derive(Debug)]
pub(crate) struct Store {
    tables: BTreeMap<String, BTreeMap<i64, Map<String, Value>>>,
    scripts: Vec<Script>,
    /// Whether `update` and `create` append `EventLogEntry` rows, as a real site always does.
    pub(crate) log_writes: bool,
    /// `api_max_entities_per_page` in `info`: the page size `shotgun_api3` reads with.
    pub(crate) records_per_page: u64,
}

impl Store {
    /// A store whose only Script is the site's own.
    pub(crate) fn new(script_name: &str, script_key: &str) -> Store {
        let mut store = Store {
            tables: BTreeMap::new(),
            scripts: Vec::new(),
            log_writes: true,
            records_per_page: 500,
        };
        store.add_script(script_name, script_key);
        store
    }

    /// Allows a Script (replacing the key of one of the same name) and returns its `ApiUser` id.
    pub(crate) fn add_script(&mut self, name: &str, key: &str) -> i64 {
        if let Some(script) = self.scripts.iter_mut().find(|s| s.name == name) {
            key.clone_into(&mut script.key);
            return script.user_id;
        }
        let mut user = Map::new();
        user.insert("firstname".to_owned(), json!(name));
        user.insert("description".to_owned(), json!("a Script of the fake site"));
        let user_id = self.insert("ApiUser", user);
        self.scripts.push(Script {
            name: name.to_owned(),
            key: key.to_owned(),
            user_id,
        });
        user_id
    }

    /// The Script these credentials sign in as.
    pub(crate) fn script(&self, name: &str, key: &str) -> Option<&Script> {
        self.scripts.iter().find(|s| s.name == name && s.key == key)
    }

    /// Whether `entity_type` exists on the site.
    pub(crate) fn knows(&self, entity_type: &str) -> bool {
        STANDARD_TYPES.contains(&entity_type)
            || self.tables.contains_key(entity_type)
            || CUSTOM_PREFIXES.iter().any(|prefix| {
                entity_type.strip_prefix(prefix).is_some_and(|n| {
                    n.len() == 2 && n.bytes().all(|b| b.is_ascii_digit()) && n != "00"
                })
            })
    }

    /// Stores a record, under its own `id` if it has one (replacing any record with that id), else
    /// under the next free id of its type. Returns the id.
    pub(crate) fn insert(&mut self, entity_type: &str, mut fields: Map<String, Value>) -> i64 {
        let table = self.tables.entry(entity_type.to_owned()).or_default();
        let id = match fields.get("id").and_then(Value::as_i64) {
            Some(id) => id,
            None => table.keys().next_back().map_or(1, |last| last + 1),
        };
        fields.insert("type".to_owned(), json!(entity_type));
        fields.insert("id".to_owned(), json!(id));
        table.insert(id, fields);
        id
    }

    pub(crate) fn get(&self, entity_type: &str, id: i64) -> Option<&Map<String, Value>> {
        self.tables.get(entity_type)?.get(&id)
    }

    /// The records of a type, by ascending id.
    pub(crate) fn rows(&self, entity_type: &str) -> impl Iterator<Item = &Map<String, Value>> {
        self.tables
            .get(entity_type)
            .into_iter()
            .flat_map(|t| t.values())
    }

    /// The value of `path` on `record`: a field, or `link.Type.field` through a link (a list of
    /// values through a list of links). Null when unset or when the link leads nowhere.
    pub(crate) fn resolve(&self, record: &Map<String, Value>, path: &str) -> Value {
        let mut parts = path.splitn(3, '.');
        let (field, via, rest) = (parts.next(), parts.next(), parts.next());
        let value = field.and_then(|f| record.get(f)).unwrap_or(&Value::Null);
        let (Some(via), Some(rest)) = (via, rest) else {
            return value.clone();
        };
        let through = |target: &Value| match link(target) {
            Some((kind, id)) if kind == via => {
                self.get(kind, id).map(|linked| self.resolve(linked, rest))
            }
            _ => None,
        };
        match value {
            Value::Array(targets) => targets.iter().filter_map(through).collect(),
            target => through(target).unwrap_or(Value::Null),
        }
    }

    /// A value as a read returns it: a link becomes `{"type", "id", "name"}` with the name the site
    /// has for it now; a list of links, a list of those; anything else is left as it is.
    pub(crate) fn render(&self, value: &Value) -> Value {
        match value {
            Value::Array(items) if items.iter().any(|item| link(item).is_some()) => {
                items.iter().map(|item| self.render(item)).collect()
            }
            _ => match link(value) {
                Some((kind, id)) => {
                    let name = match self.get(kind, id) {
                        Some(target) => display_name(target),
                        None => value.get("name").cloned().unwrap_or(Value::Null),
                    };
                    json!({"type": kind, "id": id, "name": name})
                }
                None => value.clone(),
            },
        }
    }

    /// A rendered link to a stored record.
    pub(crate) fn link_to(&self, entity_type: &str, id: i64) -> Value {
        self.render(&json!({"type": entity_type, "id": id}))
    }

    /// Applies an `update`'s fields to a stored record and returns what changed.
    pub(crate) fn update(
        &mut self,
        entity_type: &str,
        id: i64,
        fields: Vec<(String, Value, Mode)>,
    ) -> Option<Vec<Change>> {
        let record = self.tables.get_mut(entity_type)?.get_mut(&id)?;
        let mut changes = Vec::new();
        for (field, value, mode) in fields {
            if field == "id" || field == "type" {
                continue;
            }
            let old = record.get(&field).cloned().unwrap_or(Value::Null);
            let new = match (mode, &old, value) {
                (Mode::Set, _, value) => value,
                (Mode::Add, Value::Array(items), Value::Array(more)) => {
                    let mut items = items.clone();
                    for item in more {
                        if !items.iter().any(|i| same(i, &item)) {
                            items.push(item);
                        }
                    }
                    Value::Array(items)
                }
                (Mode::Add, _, value) => value,
                (Mode::Remove, Value::Array(items), Value::Array(gone)) => items
                    .iter()
                    .filter(|i| !gone.iter().any(|g| same(i, g)))
                    .cloned()
                    .collect(),
                (Mode::Remove, _, _) => old.clone(),
            };
            if !unchanged(&old, &new) {
                changes.push(Change {
                    field: field.clone(),
                    old,
                    new: new.clone(),
                });
            }
            record.insert(field, new);
        }
        Some(changes)
    }

    /// Stores a new record made of `fields` and returns its id and the fields that got a value.
    pub(crate) fn create(
        &mut self,
        entity_type: &str,
        fields: Vec<(String, Value)>,
    ) -> (i64, Vec<Change>) {
        let mut record = Map::new();
        let mut changes = Vec::new();
        for (field, value) in fields {
            if field == "id" || field == "type" {
                continue;
            }
            if !unchanged(&Value::Null, &value) {
                changes.push(Change {
                    field: field.clone(),
                    old: Value::Null,
                    new: value.clone(),
                });
            }
            record.insert(field, value);
        }
        (self.insert(entity_type, record), changes)
    }

    /// The `EventLogEntry` rows a real site writes for a write, without ids: for a create, a
    /// `Shotgun_<Type>_New` row then one `_Change` row per field that got a value (`in_create`); for
    /// an update, one `_Change` row per field whose value changed.
    pub(crate) fn log_rows(
        &self,
        entity_type: &str,
        id: i64,
        author: &Author,
        changes: &[Change],
        created: bool,
    ) -> Vec<Value> {
        let Some(record) = self.get(entity_type, id) else {
            return Vec::new();
        };
        let entity = self.link_to(entity_type, id);
        let name = display_name(record);
        let name = name.as_str().unwrap_or("");
        let user = author.user["name"].as_str().unwrap_or("");
        let project = if entity_type == "Project" {
            entity.clone()
        } else {
            self.render(record.get("project").unwrap_or(&Value::Null))
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let row = |action: &str, attribute_name: Option<&str>, meta: Value, description: String| {
            json!({
                "type": "EventLogEntry",
                "event_type": format!("Shotgun_{entity_type}_{action}"),
                "attribute_name": attribute_name,
                "meta": meta,
                "entity": entity,
                "user": author.user,
                "project": project,
                "session_uuid": author.session_uuid,
                "created_at": iso8601(now),
                "description": description,
            })
        };
        let mut rows = Vec::new();
        if created {
            rows.push(row(
                "New",
                None,
                json!({"type": "new_entity", "entity_type": entity_type, "entity_id": id}),
                format!("{user} created new {entity_type} {name}"),
            ));
        }
        for change in changes {
            let field = change.field.as_str();
            let mut meta = json!({
                "type": "attribute_change", "attribute_name": field, "entity_type": entity_type,
                "entity_id": id, "field_data_type": data_type(field, &change.old, &change.new),
                "platform_id": null,
            });
            if let (Value::Array(_), _) | (_, Value::Array(_)) = (&change.old, &change.new) {
                let old = list(&change.old);
                let new = list(&change.new);
                let missing_from = |these: &[Value], those: &[Value]| -> Vec<Value> {
                    these
                        .iter()
                        .filter(|v| !those.iter().any(|w| same(v, w)))
                        .map(|v| self.render(v))
                        .collect()
                };
                meta["added"] = Value::from(missing_from(new, old));
                meta["removed"] = Value::from(missing_from(old, new));
            } else {
                meta["old_value"] = self.render(&change.old);
                meta["new_value"] = self.render(&change.new);
            }
            if created {
                meta["in_create"] = json!(true);
            }
            let description = if created {
                format!(
                    "{user} set \"{field}\" to \"{}\" on {entity_type} {name}",
                    self.shown(&change.new)
                )
            } else {
                format!(
                    "{user} changed \"{field}\" from \"{}\" to \"{}\" on {entity_type} {name}",
                    self.shown(&change.old),
                    self.shown(&change.new)
                )
            };
            rows.push(row("Change", Some(field), meta, description));
        }
        rows
    }

    /// A value as a description sentence shows it.
    fn shown(&self, value: &Value) -> String {
        match self.render(value) {
            Value::Null => String::new(),
            Value::String(s) => s,
            Value::Array(items) => items
                .iter()
                .map(|item| self.shown(item))
                .collect::<Vec<_>>()
                .join(", "),
            link @ Value::Object(_) => match link.get("name") {
                Some(Value::String(name)) => name.clone(),
                _ => link.to_string(),
            },
            other => other.to_string(),
        }
    }
}

/// Whether a write leaves a field as it was: links by type and id, lists item by item.
fn unchanged(old: &Value, new: &Value) -> bool {
    match (old, new) {
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
        }
        // A field that was never set and is set to an empty list has not changed either.
        (Value::Null, Value::Array(b)) | (Value::Array(b), Value::Null) => b.is_empty(),
        _ => same(old, new),
    }
}

fn list(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

/// The display name of a record, as links show it: the first of the fields ShotGrid names records by.
fn display_name(record: &Map<String, Value>) -> Value {
    let fields: &[&str] = match record.get("type").and_then(Value::as_str) {
        Some("Task") => &["content"],
        Some("Note") => &["subject"],
        Some("ApiUser") => &["firstname"],
        Some("HumanUser" | "Project" | "Department" | "Group" | "Step") => &["name"],
        _ => &["code", "name", "title"],
    };
    fields
        .iter()
        .chain(&["code", "name", "content", "subject", "title"])
        .find_map(|f| record.get(*f).filter(|v| !v.is_null()))
        .cloned()
        .unwrap_or(Value::Null)
}

/// The `field_data_type` a real site's schema would give, guessed from the field and its values.
fn data_type(field: &str, old: &Value, new: &Value) -> &'static str {
    let sample = if new.is_null() { old } else { new };
    match sample {
        _ if field.ends_with("status_list") => "status_list",
        Value::Array(_) => "multi_entity",
        Value::Object(_) if link(sample).is_some() => "entity",
        Value::Bool(_) => "checkbox",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "number",
        Value::String(s) if is_date_time(s) => "date_time",
        Value::String(s) if s.len() == 10 && is_date_time(&format!("{s}T00:00:00Z")) => "date",
        _ => "text",
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`, the form api3 sends date times in.
fn is_date_time(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 20
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            10 => *b == b'T',
            13 | 16 => *b == b':',
            19 => *b == b'Z',
            _ => b.is_ascii_digit(),
        })
}

/// The entity store, for tests: seed records before a client reads them, read them back after it
/// wrote.
impl FakeSite {
    /// Stores a record of `entity_type` and returns its id. `fields` is a JSON object of field
    /// values, links as `{"type", "id"}`; its `id`, if any, is kept (replacing a record with that
    /// id), otherwise the next free id of the type is used. Seeding logs no event. An
    /// `EventLogEntry` is appended to the event log as by [`FakeSite::append_events`].
    ///
    /// # Panics
    ///
    /// If `fields` is not a JSON object.
    pub fn insert_entity(&self, entity_type: &str, fields: Value) -> i64 {
        let Value::Object(fields) = fields else {
            panic!(
                "insert_entity(\"{entity_type}\", ...) takes a JSON object of fields, not {fields}"
            );
        };
        if entity_type == "EventLogEntry" {
            let mut state = self.shared.state();
            let (id, event) = state.allocate(Value::Object(fields));
            state.visible.insert(id, event);
            return id;
        }
        self.shared.state().store.insert(entity_type, fields)
    }

    /// A record as the site stores it now (with `type` and `id`), or `None`. For `EventLogEntry`,
    /// a visible row of the event log.
    pub fn entity(&self, entity_type: &str, id: i64) -> Option<Value> {
        let state = self.shared.state();
        if entity_type == "EventLogEntry" {
            return state.visible.get(&id).cloned();
        }
        state
            .store
            .get(entity_type, id)
            .map(|record| Value::Object(record.clone()))
    }

    /// Every record of `entity_type`, by ascending id. For `EventLogEntry`, the visible rows of the
    /// event log, those that api3 writes added included.
    pub fn entities(&self, entity_type: &str) -> Vec<Value> {
        let state = self.shared.state();
        if entity_type == "EventLogEntry" {
            return state.visible.values().cloned().collect();
        }
        state
            .store
            .rows(entity_type)
            .map(|record| Value::Object(record.clone()))
            .collect()
    }

    /// Lets api3 calls sign in with another Script, as each plugin of the incumbent daemon does with
    /// its own. Returns the id of the Script's `ApiUser`, whom its writes are credited to. The site's
    /// own Script ([`super::SiteOptions`]) is allowed from the start.
    pub fn add_script(&self, name: &str, key: &str) -> i64 {
        self.shared.state().store.add_script(name, key)
    }

    /// Whether api3's `update` and `create` append `EventLogEntry` rows to the event log, as a real
    /// site does. On by default.
    pub fn set_log_writes(&self, on: bool) {
        self.shared.state().store.log_writes = on;
    }

    /// The page size `info` tells `shotgun_api3` to read with (`api_max_entities_per_page`, 500 by
    /// default); a small one makes `find` page. Clients read it once, when they connect.
    pub fn set_records_per_page(&self, n: u64) {
        self.shared.state().store.records_per_page = n.max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(value: Value) -> Map<String, Value> {
        value.as_object().expect("an object").clone()
    }

    fn store() -> Store {
        let mut store = Store::new("sgevents", "k");
        store.insert(
            "Project",
            fields(json!({"id": 70, "name": "Harbour Lights"})),
        );
        store.insert(
            "Shot",
            fields(json!({"id": 12, "code": "010_0010", "project": {"type": "Project", "id": 70}})),
        );
        store.insert(
            "Task",
            fields(json!({
                "content": "Anim", "sg_status_list": "wtg",
                "entity": {"type": "Shot", "id": 12}, "project": {"type": "Project", "id": 70},
                "task_assignees": [{"type": "HumanUser", "id": 88, "name": "Ana Reyes"}],
            })),
        );
        store
    }

    #[test]
    fn ids_follow_the_highest_of_each_type() {
        let mut store = store();
        assert_eq!(store.insert("Task", Map::new()), 2);
        assert_eq!(store.insert("Task", fields(json!({"id": 40}))), 40);
        assert_eq!(store.insert("Task", Map::new()), 41);
        assert_eq!(store.insert("Shot", Map::new()), 13);
        assert_eq!(store.insert("Asset", Map::new()), 1);
        // The site's own Script is the first ApiUser.
        assert_eq!(store.script("sgevents", "k").map(|s| s.user_id), Some(1));
        assert!(store.script("sgevents", "wrong").is_none());
        assert_eq!(store.add_script("ingest", "k2"), 2);
        assert_eq!(
            store.add_script("ingest", "k3"),
            2,
            "a new key, the same user"
        );
        assert!(store.script("ingest", "k3").is_some());
    }

    #[test]
    fn types_are_standard_custom_or_seeded() {
        let mut store = store();
        assert!(store.knows("Version"));
        assert!(store.knows("CustomEntity07"));
        assert!(store.knows("CustomNonProjectEntity12"));
        assert!(!store.knows("CustomEntity7"));
        assert!(!store.knows("Widget"));
        store.insert("Widget", Map::new());
        assert!(store.knows("Widget"));
    }

    #[test]
    fn paths_resolve_through_links() {
        let store = store();
        let task = store.get("Task", 1).expect("the task").clone();
        assert_eq!(store.resolve(&task, "content"), json!("Anim"));
        assert_eq!(store.resolve(&task, "nothing"), Value::Null);
        assert_eq!(store.resolve(&task, "entity.Shot.code"), json!("010_0010"));
        assert_eq!(
            store.resolve(&task, "entity.Shot.project.Project.name"),
            json!("Harbour Lights")
        );
        assert_eq!(store.resolve(&task, "entity.Asset.code"), Value::Null);
        assert_eq!(
            store.resolve(&task, "task_assignees.HumanUser.name"),
            json!([]),
            "the user is not stored"
        );
        assert_eq!(
            store.render(&task["entity"]),
            json!({"type": "Shot", "id": 12, "name": "010_0010"})
        );
        assert_eq!(
            store.render(&task["task_assignees"]),
            json!([{"type": "HumanUser", "id": 88, "name": "Ana Reyes"}]),
            "a link to nothing keeps the name it was given"
        );
    }

    #[test]
    fn updates_report_only_what_changed() {
        let mut store = store();
        let changes = store
            .update(
                "Task",
                1,
                vec![
                    ("sg_status_list".to_owned(), json!("ip"), Mode::Set),
                    ("content".to_owned(), json!("Anim"), Mode::Set),
                    (
                        "entity".to_owned(),
                        json!({"type": "Shot", "id": 12, "name": "x"}),
                        Mode::Set,
                    ),
                    (
                        "task_assignees".to_owned(),
                        json!([{"type": "HumanUser", "id": 91}, {"type": "HumanUser", "id": 88}]),
                        Mode::Add,
                    ),
                ],
            )
            .expect("the task exists");
        let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["sg_status_list", "task_assignees"]);
        assert_eq!(
            store.get("Task", 1).expect("the task")["task_assignees"],
            json!([{"type": "HumanUser", "id": 88, "name": "Ana Reyes"}, {"type": "HumanUser", "id": 91}])
        );
        let changes = store
            .update(
                "Task",
                1,
                vec![(
                    "task_assignees".to_owned(),
                    json!([{"type": "HumanUser", "id": 88}]),
                    Mode::Remove,
                )],
            )
            .expect("the task exists");
        assert_eq!(changes[0].new, json!([{"type": "HumanUser", "id": 91}]));
        assert!(store.update("Task", 99, Vec::new()).is_none());
    }

    #[test]
    fn writes_log_rows_like_a_real_site() {
        let mut store = store();
        let author = Author {
            user: store.link_to("ApiUser", 1),
            session_uuid: Value::Null,
        };
        let (id, changes) = store.create(
            "Task",
            vec![
                ("content".to_owned(), json!("Comp")),
                ("entity".to_owned(), json!({"type": "Shot", "id": 12})),
                ("project".to_owned(), json!({"type": "Project", "id": 70})),
                ("sg_versions".to_owned(), json!([])),
                ("description".to_owned(), Value::Null),
            ],
        );
        let rows = store.log_rows("Task", id, &author, &changes, true);
        let kinds: Vec<(&str, &Value)> = rows
            .iter()
            .map(|r| (r["event_type"].as_str().unwrap_or(""), &r["attribute_name"]))
            .collect();
        assert_eq!(
            kinds,
            [
                ("Shotgun_Task_New", &Value::Null),
                ("Shotgun_Task_Change", &json!("content")),
                ("Shotgun_Task_Change", &json!("entity")),
                ("Shotgun_Task_Change", &json!("project")),
            ]
        );
        assert_eq!(
            rows[0]["meta"],
            json!({"type": "new_entity", "entity_type": "Task", "entity_id": id})
        );
        assert_eq!(
            rows[2]["meta"],
            json!({
                "type": "attribute_change", "attribute_name": "entity", "entity_type": "Task",
                "entity_id": id, "field_data_type": "entity", "old_value": null,
                "new_value": {"type": "Shot", "id": 12, "name": "010_0010"},
                "in_create": true, "platform_id": null,
            })
        );
        for row in &rows {
            assert_eq!(
                row["entity"],
                json!({"type": "Task", "id": id, "name": "Comp"})
            );
            assert_eq!(
                row["user"],
                json!({"type": "ApiUser", "id": 1, "name": "sgevents"})
            );
            assert_eq!(
                row["project"],
                json!({"type": "Project", "id": 70, "name": "Harbour Lights"})
            );
            assert!(
                is_date_time(row["created_at"].as_str().unwrap_or("")),
                "{row}"
            );
        }
        assert_eq!(
            rows[1]["description"],
            "sgevents set \"content\" to \"Comp\" on Task Comp"
        );

        let changes = store
            .update(
                "Task",
                id,
                vec![
                    ("sg_status_list".to_owned(), json!("ip"), Mode::Set),
                    (
                        "task_assignees".to_owned(),
                        json!([{"type": "HumanUser", "id": 88}]),
                        Mode::Set,
                    ),
                ],
            )
            .expect("the task exists");
        let rows = store.log_rows("Task", id, &author, &changes, false);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0]["meta"],
            json!({
                "type": "attribute_change", "attribute_name": "sg_status_list",
                "entity_type": "Task", "entity_id": id, "field_data_type": "status_list",
                "old_value": null, "new_value": "ip", "platform_id": null,
            })
        );
        assert_eq!(
            rows[0]["description"],
            "sgevents changed \"sg_status_list\" from \"\" to \"ip\" on Task Comp"
        );
        assert_eq!(rows[1]["meta"]["field_data_type"], "multi_entity");
        assert_eq!(
            rows[1]["meta"]["added"],
            json!([{"type": "HumanUser", "id": 88, "name": null}])
        );
        assert_eq!(rows[1]["meta"]["removed"], json!([]));
        assert!(rows[1]["meta"].get("new_value").is_none());
    }

    #[test]
    fn data_types_are_guessed_from_values() {
        let guess = |field: &str, value: Value| data_type(field, &Value::Null, &value);
        assert_eq!(guess("sg_status_list", json!("ip")), "status_list");
        assert_eq!(guess("code", json!("x")), "text");
        assert_eq!(guess("sg_cut_in", json!(1001)), "number");
        assert_eq!(guess("sg_ratio", json!(1.5)), "float");
        assert_eq!(guess("sg_ok", json!(true)), "checkbox");
        assert_eq!(guess("due_date", json!("2026-03-14")), "date");
        assert_eq!(guess("sg_when", json!("2026-03-14T10:00:00Z")), "date_time");
        assert_eq!(guess("entity", json!({"type": "Shot", "id": 1})), "entity");
        assert_eq!(guess("shots", json!([])), "multi_entity");
    }
}
