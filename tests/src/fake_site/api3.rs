//! `POST /api3/json`: the JSON-RPC endpoint `shotgun_api3` talks to, as
//! `shared/reference/shotgrid-wire.md` section 2 describes it and `shotgun_api3` 3.10.3 sends it.
//!
//! A request is `{"method_name", "params": [<auth>, <call params>]}`; `info` goes without the auth
//! dict. Four methods are served:
//!
//! * `info`: the server version (new enough for every feature the client checks for, so it pages
//!   with `has_next_page`) and `api_max_entities_per_page`, answered bare as a real site does;
//! * `read` (`find`, `find_one`): `type`, `filters` (see [`Filter`]), `return_fields` (dotted
//!   `link.Type.field` paths too), `sorts`, `paging` and `return_only`, answered as
//!   `{"results": {"entities": [...], "paging_info": {...}}}`. `EventLogEntry` reads the event log;
//! * `update`: `type`, `id` and `fields` (`[{"field_name", "value", "multi_entity_update_mode"}]`),
//!   answered with the updated fields, `type` and `id`;
//! * `create`: `type`, `fields` and `return_fields`, answered with the new record's fields and id.
//!
//! Every call but `info` must carry the `script_name` and `script_key` of an allowed Script. Errors
//! are answered with HTTP 200 and `{"exception": true, "message", "error_code"}`, which the client
//! raises as `AuthenticationFault` (code 102) or `Fault` (any other code, 103 here). Links in answers
//! are `{"type", "id", "name"}` with the name the site has for the record now.

use serde_json::{Map, Value, json};

use super::entities::{Author, Mode, Script};
use super::filter::{Filter, sort_order};
use super::{Shared, State};

/// The server version `info` reports: past 7.4.0, so `shotgun_api3` uses every feature it knows.
const VERSION: [u64; 3] = [8, 0, 0];

/// A refused call, as the client sees it.
#[derive(Debug)]
struct Fault {
    code: u32,
    message: String,
}

impl Fault {
    /// Raised as `AuthenticationFault`.
    fn auth(message: impl Into<String>) -> Fault {
        Fault {
            code: 102,
            message: message.into(),
        }
    }

    /// Raised as `Fault`: a bad request.
    fn invalid(message: impl Into<String>) -> Fault {
        Fault {
            code: 103,
            message: message.into(),
        }
    }
}

/// Answers one JSON-RPC request body; the answer always goes out with HTTP 200.
pub(super) fn call(shared: &Shared, body: &str) -> Value {
    match dispatch(shared, body) {
        Ok(answer) => answer,
        Err(fault) => {
            json!({"exception": true, "message": fault.message, "error_code": fault.code})
        }
    }
}

fn dispatch(shared: &Shared, body: &str) -> Result<Value, Fault> {
    let request: Value = serde_json::from_str(body)
        .map_err(|e| Fault::invalid(format!("API request body is not JSON: {e}")))?;
    let Some(method) = request.get("method_name").and_then(Value::as_str) else {
        return Err(Fault::invalid(format!(
            "API request has no \"method_name\": {request}"
        )));
    };
    let params = match request.get("params") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(params)) => params.clone(),
        Some(other) => {
            return Err(Fault::invalid(format!(
                "API {method}() \"params\" must be a list, got {other}"
            )));
        }
    };
    let mut state = shared.state();
    if method == "info" {
        return Ok(json!({
            "version": VERSION,
            "full_version": [VERSION[0], VERSION[1], VERSION[2], 0],
            "user_authentication_method": "default",
            "api_max_entities_per_page": state.store.records_per_page,
        }));
    }
    let (script, session_uuid) = authenticate(&state, method, params.first())?;
    let author = Author {
        user: state.store.link_to("ApiUser", script.user_id),
        session_uuid,
    };
    let empty = json!({});
    let call = params.get(1).unwrap_or(&empty);
    if !call.is_object() {
        return Err(Fault::invalid(format!(
            "API {method}() parameters must be an object, got {call}"
        )));
    }
    let results = match method {
        "read" => read(&state, call)?,
        "update" => update(&mut state, &author, call)?,
        "create" => create(&mut state, &author, call)?,
        other => {
            return Err(Fault::invalid(format!(
                "API {other}() is not supported by the fake site (it serves info, read, update and create)"
            )));
        }
    };
    Ok(json!({ "results": results }))
}

/// The Script the auth dict signs in as, and the `session_uuid` it carries.
fn authenticate(
    state: &State,
    method: &str,
    auth: Option<&Value>,
) -> Result<(Script, Value), Fault> {
    let Some(auth) = auth.and_then(Value::as_object) else {
        return Err(Fault::auth(format!(
            "API {method}() needs authentication parameters before its own"
        )));
    };
    let text = |key: &str| auth.get(key).and_then(Value::as_str);
    let script = match (text("script_name"), text("script_key")) {
        (Some(name), Some(key)) => state
            .store
            .script(name, key)
            .cloned()
            .ok_or_else(|| Fault::auth(format!("Can't authenticate script '{name}'")))?,
        _ if auth.contains_key("user_login") || auth.contains_key("session_token") => {
            return Err(Fault::auth(
                "the fake site signs in Scripts only: use script_name and api_key",
            ));
        }
        _ => return Err(Fault::auth("Missing or invalid authentication arguments")),
    };
    let session_uuid = auth.get("session_uuid").cloned().unwrap_or(Value::Null);
    Ok((script, session_uuid))
}

/// The entity type a call works on, which must exist.
fn entity_type<'a>(state: &State, method: &str, call: &'a Value) -> Result<&'a str, Fault> {
    let Some(entity_type) = call.get("type").and_then(Value::as_str) else {
        return Err(Fault::invalid(format!(
            "API {method}() needs an entity \"type\""
        )));
    };
    if !state.store.knows(entity_type) {
        return Err(Fault::invalid(format!(
            "API {method}() entity type '{entity_type}' doesn't exist."
        )));
    }
    Ok(entity_type)
}

/// A list of field names, or `default` when absent.
fn field_names(
    method: &str,
    value: Option<&Value>,
    default: &[&str],
) -> Result<Vec<String>, Fault> {
    match value {
        None | Some(Value::Null) => Ok(default.iter().map(|&f| f.to_owned()).collect()),
        Some(Value::Array(names)) => names
            .iter()
            .map(|name| {
                name.as_str().map(str::to_owned).ok_or_else(|| {
                    Fault::invalid(format!(
                        "API {method}() field names must be text, got {name}"
                    ))
                })
            })
            .collect(),
        Some(other) => Err(Fault::invalid(format!(
            "API {method}() expected a list of field names, got {other}"
        ))),
    }
}

/// `paging.entities_per_page` or `paging.current_page`: a positive integer.
fn paging(call: &Value, key: &str, default: u64) -> Result<u64, Fault> {
    match call.get("paging").and_then(|p| p.get(key)) {
        None => Ok(default),
        Some(value) => value.as_u64().filter(|n| *n > 0).ok_or_else(|| {
            Fault::invalid(format!(
                "API read() invalid/missing integer 'paging' '{key}': {value}"
            ))
        }),
    }
}

fn read(state: &State, call: &Value) -> Result<Value, Fault> {
    let entity_type = entity_type(state, "read", call)?;
    let filter = Filter::parse(entity_type, call.get("filters").unwrap_or(&Value::Null))
        .map_err(Fault::invalid)?;
    let fields = field_names("read", call.get("return_fields"), &["id"])?;
    let mut sorts = Vec::new();
    for sort in call
        .get("sorts")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
    {
        let Some(field) = sort.get("field_name").and_then(Value::as_str) else {
            return Err(Fault::invalid(format!(
                "API read() a sort needs a \"field_name\", got {sort}"
            )));
        };
        let descending = match sort.get("direction").and_then(Value::as_str) {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(other) => {
                return Err(Fault::invalid(format!(
                    "API read() sort direction '{other}' is neither 'asc' nor 'desc'"
                )));
            }
        };
        sorts.push((field, descending));
    }
    let per_page = paging(call, "entities_per_page", state.store.records_per_page)?;
    let page = paging(call, "current_page", 1)?;

    let store = &state.store;
    let rows: Vec<&Map<String, Value>> = if entity_type == "EventLogEntry" {
        state
            .visible
            .values()
            .filter_map(Value::as_object)
            .collect()
    } else {
        store.rows(entity_type).collect()
    };
    // Nothing is ever retired on the fake site.
    let retired_only = call.get("return_only").and_then(Value::as_str) == Some("retired");
    let mut matched: Vec<&Map<String, Value>> = rows
        .into_iter()
        .filter(|row| !retired_only && filter.matches(&|path| store.resolve(row, path)))
        .collect();
    // Stable, over rows in id order: ties stay in id order, the default sort.
    matched.sort_by(|a, b| {
        sorts
            .iter()
            .map(|(field, descending)| {
                let order = sort_order(&store.resolve(a, field), &store.resolve(b, field));
                if *descending { order.reverse() } else { order }
            })
            .find(|order| order.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let count = matched.len() as u64;
    let skip = usize::try_from((page - 1).saturating_mul(per_page)).unwrap_or(usize::MAX);
    let take = usize::try_from(per_page).unwrap_or(usize::MAX);
    let entities: Vec<Value> = matched
        .iter()
        .skip(skip)
        .take(take)
        .map(|row| {
            let mut out = Map::new();
            out.insert("type".to_owned(), json!(entity_type));
            out.insert(
                "id".to_owned(),
                row.get("id").cloned().unwrap_or(Value::Null),
            );
            for field in &fields {
                if field != "type" && field != "id" {
                    out.insert(field.clone(), store.render(&store.resolve(row, field)));
                }
            }
            Value::Object(out)
        })
        .collect();
    Ok(json!({
        "entities": entities,
        "paging_info": {
            "current_page": page,
            "entities_per_page": per_page,
            "entity_count": count,
            "page_count": count.div_ceil(per_page),
            "has_next_page": page.saturating_mul(per_page) < count,
        },
    }))
}

/// The `fields` of an `update` or `create`: `[{"field_name", "value", "multi_entity_update_mode"}]`.
fn written_fields(method: &str, call: &Value) -> Result<Vec<(String, Value, Mode)>, Fault> {
    let Some(fields) = call.get("fields").and_then(Value::as_array) else {
        return Err(Fault::invalid(format!(
            "API {method}() needs a list of \"fields\", got {}",
            call.get("fields").unwrap_or(&Value::Null)
        )));
    };
    fields
        .iter()
        .map(|field| {
            let Some(name) = field.get("field_name").and_then(Value::as_str) else {
                return Err(Fault::invalid(format!(
                    "API {method}() a field needs a \"field_name\", got {field}"
                )));
            };
            let mode = match field.get("multi_entity_update_mode").and_then(Value::as_str) {
                None | Some("set") => Mode::Set,
                Some("add") => Mode::Add,
                Some("remove") => Mode::Remove,
                Some(other) => {
                    return Err(Fault::invalid(format!(
                        "API {method}() {name}: multi_entity_update_mode '{other}' is not one of set, add, remove"
                    )));
                }
            };
            let value = field.get("value").cloned().unwrap_or(Value::Null);
            Ok((name.to_owned(), value, mode))
        })
        .collect()
}

/// The event log cannot be written through api3 on the fake site.
fn writable<'a>(method: &str, entity_type: &'a str) -> Result<&'a str, Fault> {
    if entity_type == "EventLogEntry" {
        return Err(Fault::invalid(format!(
            "API {method}() EventLogEntry: the event log is written by the site, not by clients"
        )));
    }
    Ok(entity_type)
}

/// Appends a write's rows to the event log, visible at once, when the site logs writes.
fn log(
    state: &mut State,
    entity_type: &str,
    id: i64,
    author: &Author,
    changes: &[super::entities::Change],
    created: bool,
) {
    if !state.store.log_writes {
        return;
    }
    for row in state
        .store
        .log_rows(entity_type, id, author, changes, created)
    {
        let (row_id, row) = state.allocate(row);
        state.visible.insert(row_id, row);
    }
}

fn update(state: &mut State, author: &Author, call: &Value) -> Result<Value, Fault> {
    let entity_type = writable("update", entity_type(state, "update", call)?)?;
    let Some(id) = call.get("id").and_then(Value::as_i64) else {
        return Err(Fault::invalid(format!(
            "API update() {entity_type}: needs an integer \"id\", got {}",
            call.get("id").unwrap_or(&Value::Null)
        )));
    };
    let fields = written_fields("update", call)?;
    let names: Vec<String> = fields.iter().map(|(name, _, _)| name.clone()).collect();
    let Some(changes) = state.store.update(entity_type, id, fields) else {
        return Err(Fault::invalid(format!(
            "API update() {entity_type} {id} doesn't exist."
        )));
    };
    log(state, entity_type, id, author, &changes, false);
    Ok(written(state, entity_type, id, names))
}

fn create(state: &mut State, author: &Author, call: &Value) -> Result<Value, Fault> {
    let entity_type = writable("create", entity_type(state, "create", call)?)?;
    let fields = written_fields("create", call)?;
    let mut names: Vec<String> = fields.iter().map(|(name, _, _)| name.clone()).collect();
    names.extend(field_names("create", call.get("return_fields"), &[])?);
    let fields = fields
        .into_iter()
        .map(|(name, value, _)| (name, value))
        .collect();
    let (id, changes) = state.store.create(entity_type, fields);
    log(state, entity_type, id, author, &changes, true);
    Ok(written(state, entity_type, id, names))
}

/// The answer to `update` and `create`: the entity's type and id, and the fields `names` as they
/// are now.
fn written(state: &State, entity_type: &str, id: i64, names: Vec<String>) -> Value {
    let store = &state.store;
    let mut out = Map::new();
    out.insert("type".to_owned(), json!(entity_type));
    out.insert("id".to_owned(), json!(id));
    if let Some(record) = store.get(entity_type, id) {
        for name in names {
            if name != "type" && name != "id" {
                let value = store.render(&store.resolve(record, &name));
                out.insert(name, value);
            }
        }
    }
    Value::Object(out)
}
