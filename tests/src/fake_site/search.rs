//! The `_search` request: its body parsed into a [`Query`], run over the visible rows, and the rows
//! rendered in the JSON:API shape of `shared/reference/shotgrid-wire.md` 4.4.
//!
//! Only what an event daemon needs is implemented: filters on `id` and `created_at`, `and`/`or`
//! groups, sorting on `id` or `created_at`, and paging. Anything else is refused the way the real site
//! refuses a bad request (400, code 103), with a title that names the offending piece.

use std::collections::BTreeMap;
use std::ops::Bound;

use serde_json::{Map, Value, json};

/// Scalar fields, returned under `attributes`, in the order they are rendered.
const ATTRIBUTES: [&str; 10] = [
    "event_type",
    "attribute_name",
    "meta",
    "session_uuid",
    "created_at",
    "description",
    "cached_display_name",
    "image",
    "filmstrip_image",
    "image_blur_hash",
];

/// Entity fields, returned under `relationships`.
const RELATIONSHIPS: [&str; 4] = ["entity", "user", "project", "image_source_entity"];

/// The plural path segment of `EventLogEntry`, used in every link.
const SEGMENT: &str = "event_log_entries";

/// A refused request: the HTTP status, the error title and its `source`.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) status: u16,
    pub(crate) code: u32,
    pub(crate) title: String,
    pub(crate) source: Value,
}

fn invalid(title: impl Into<String>, source: Value) -> Refusal {
    Refusal {
        status: 400,
        code: 103,
        title: title.into(),
        source,
    }
}

/// Which of the two vendor content types the body was sent as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `application/vnd+shotgun.api3_array+json`: a list of triples, all of which must hold.
    Array,
    /// `application/vnd+shotgun.api3_hash+json`: a `logical_operator` group.
    Hash,
}

/// A parsed filter tree.
#[derive(Clone, Debug)]
enum Filter {
    All(Vec<Filter>),
    Any(Vec<Filter>),
    Id(IdTest),
    CreatedAfter(String),
    CreatedBefore(String),
}

#[derive(Clone, Debug)]
enum IdTest {
    Is(i64),
    IsNot(i64),
    Greater(i64),
    Less(i64),
    In(Vec<i64>),
    NotIn(Vec<i64>),
    Between(i64, i64),
}

impl Filter {
    fn matches(&self, id: i64, created_at: &str) -> bool {
        match self {
            Filter::All(all) => all.iter().all(|f| f.matches(id, created_at)),
            // An empty `or` group constrains nothing, like an empty filter list.
            Filter::Any(any) => any.is_empty() || any.iter().any(|f| f.matches(id, created_at)),
            Filter::Id(test) => match test {
                IdTest::Is(v) => id == *v,
                IdTest::IsNot(v) => id != *v,
                IdTest::Greater(v) => id > *v,
                IdTest::Less(v) => id < *v,
                IdTest::In(list) => list.contains(&id),
                IdTest::NotIn(list) => !list.contains(&id),
                IdTest::Between(a, b) => (*a..=*b).contains(&id),
            },
            Filter::CreatedAfter(t) => created_at > t.as_str(),
            Filter::CreatedBefore(t) => created_at < t.as_str(),
        }
    }

    /// Inclusive bounds that contain every id this filter can match, so that a poll for
    /// `id greater_than N` reads only the tail of the log.
    fn id_bounds(&self) -> (i64, i64) {
        let full = (i64::MIN, i64::MAX);
        match self {
            Filter::All(all) => all
                .iter()
                .map(Filter::id_bounds)
                .fold(full, |(lo, hi), (l, h)| (lo.max(l), hi.min(h))),
            Filter::Any(any) if any.is_empty() => full,
            Filter::Any(any) => any
                .iter()
                .map(Filter::id_bounds)
                .fold((i64::MAX, i64::MIN), |(lo, hi), (l, h)| {
                    (lo.min(l), hi.max(h))
                }),
            Filter::Id(IdTest::Is(v)) => (*v, *v),
            Filter::Id(IdTest::Greater(v)) => (v.saturating_add(1), i64::MAX),
            Filter::Id(IdTest::Less(v)) => (i64::MIN, v.saturating_sub(1)),
            Filter::Id(IdTest::Between(a, b)) => (*a, *b),
            Filter::Id(IdTest::In(list)) => match (list.iter().min(), list.iter().max()) {
                (Some(lo), Some(hi)) => (*lo, *hi),
                _ => (1, 0),
            },
            _ => full,
        }
    }
}

/// What to sort on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sort {
    Id { descending: bool },
    CreatedAt { descending: bool },
}

/// A parsed `_search` request.
#[derive(Debug)]
pub(crate) struct Query {
    filter: Filter,
    attributes: Vec<&'static str>,
    relationships: Vec<&'static str>,
    sort: Sort,
    /// Rows per page, 1..=5000.
    pub(crate) size: usize,
    /// The 1-based page number.
    pub(crate) number: usize,
}

impl Query {
    /// Parses a `_search` body. `query` holds the query-string parameters, which the Node client uses
    /// for `fields`, `sort` and `page[...]`; the body wins where both give one.
    pub(crate) fn parse(
        shape: Shape,
        body: &Value,
        query: &[(String, String)],
    ) -> Result<Query, Refusal> {
        let Some(body) = body.as_object() else {
            return Err(invalid(
                "Request Parameters invalid.",
                json!({"body": "must be a JSON object"}),
            ));
        };
        let param = |key: &str| {
            query
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| Value::String(v.clone()))
        };
        let filter = match body.get("filters") {
            None | Some(Value::Null) => Filter::All(Vec::new()),
            Some(filters) => parse_filters(shape, filters)?,
        };
        let fields = body.get("fields").cloned().or_else(|| param("fields"));
        let (attributes, relationships) = parse_fields(fields.as_ref())?;
        let sort = parse_sort(body.get("sort").cloned().or_else(|| param("sort")).as_ref())?;
        let page = body.get("page").and_then(Value::as_object);
        let size = page
            .and_then(|p| p.get("size").cloned())
            .or_else(|| param("page[size]"));
        let number = page
            .and_then(|p| p.get("number").cloned())
            .or_else(|| param("page[number]"));
        let size = page_number(size.as_ref(), "size", 500)?;
        if size > 5000 {
            return Err(invalid(
                "size must be less than 5000",
                json!({"page": {"size": size}}),
            ));
        }
        let number = page_number(number.as_ref(), "number", 1)?;
        Ok(Query {
            filter,
            attributes,
            relationships,
            sort,
            size,
            number,
        })
    }

    /// The rows of the asked page, cloned out of `visible`.
    pub(crate) fn run(&self, visible: &BTreeMap<i64, Value>) -> Vec<Value> {
        let skip = (self.number - 1).saturating_mul(self.size);
        let created_at = |event: &Value| event["created_at"].as_str().unwrap_or("").to_owned();
        let keep = |(id, event): &(&i64, &Value)| {
            self.filter
                .matches(**id, event["created_at"].as_str().unwrap_or(""))
        };
        let (lo, hi) = self.filter.id_bounds();
        if lo > hi {
            return Vec::new();
        }
        let range = visible.range((Bound::Included(lo), Bound::Included(hi)));
        let page = |rows: &mut dyn Iterator<Item = (&i64, &Value)>| -> Vec<Value> {
            rows.filter(keep)
                .skip(skip)
                .take(self.size)
                .map(|(_, e)| e.clone())
                .collect()
        };
        match self.sort {
            Sort::Id { descending: false } => page(&mut range.into_iter()),
            Sort::Id { descending: true } => page(&mut range.rev()),
            Sort::CreatedAt { descending } => {
                let mut rows: Vec<(&i64, &Value)> = range.filter(keep).collect();
                // Stable, so rows created in the same second stay in id order.
                rows.sort_by_key(|(_, e)| created_at(e));
                if descending {
                    rows.reverse();
                }
                page(&mut rows.into_iter())
            }
        }
    }

    /// The answer to the request: rows rendered, and the page links.
    pub(crate) fn render(&self, rows: &[Value]) -> Value {
        let base = format!("/api/v1/entity/{SEGMENT}/_search");
        let page_link = |number: usize| {
            format!(
                "{base}?page%5Bnumber%5D={number}&page%5Bsize%5D={}",
                self.size
            )
        };
        let mut links = Map::new();
        links.insert("self".to_owned(), json!(base));
        links.insert("next".to_owned(), json!(page_link(self.number + 1)));
        if self.number > 1 {
            links.insert("prev".to_owned(), json!(page_link(self.number - 1)));
        }
        let data: Vec<Value> = rows.iter().map(|row| self.render_row(row)).collect();
        json!({"data": data, "links": links})
    }

    fn render_row(&self, event: &Value) -> Value {
        let id = event["id"].as_i64().unwrap_or_default();
        let attributes: Map<String, Value> = self
            .attributes
            .iter()
            .map(|&field| {
                (
                    field.to_owned(),
                    event.get(field).cloned().unwrap_or(Value::Null),
                )
            })
            .collect();
        let relationships: Map<String, Value> = self
            .relationships
            .iter()
            .map(|&field| (field.to_owned(), relationship(id, field, event.get(field))))
            .collect();
        json!({
            "type": "EventLogEntry",
            "attributes": attributes,
            "relationships": relationships,
            "id": id,
            "links": {"self": format!("/api/v1/entity/{SEGMENT}/{id}")},
        })
    }
}

/// One entry of `relationships`: the link reduced to `{id, name, type}`, and its links.
fn relationship(id: i64, field: &str, value: Option<&Value>) -> Value {
    let mut links = Map::new();
    links.insert(
        "self".to_owned(),
        json!(format!(
            "/api/v1/entity/{SEGMENT}/{id}/relationships/{field}"
        )),
    );
    let data = match value {
        Some(Value::Object(link)) => {
            let kind = link.get("type").and_then(Value::as_str).unwrap_or("");
            let target = link.get("id").cloned().unwrap_or(Value::Null);
            links.insert(
                "related".to_owned(),
                json!(format!("/api/v1/entity/{}/{target}", plural(kind))),
            );
            json!({"id": target, "name": link.get("name").cloned().unwrap_or(Value::Null), "type": kind})
        }
        _ => Value::Null,
    };
    json!({"data": data, "links": links})
}

/// `HumanUser` → `human_users`, `Project` → `projects`: the path segment of an entity type.
fn plural(kind: &str) -> String {
    let mut snake = String::new();
    for (i, c) in kind.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            snake.push('_');
        }
        snake.push(c.to_ascii_lowercase());
    }
    if let Some(stem) = snake.strip_suffix('y') {
        format!("{stem}ies")
    } else if snake.ends_with('s') {
        format!("{snake}es")
    } else {
        format!("{snake}s")
    }
}

fn parse_filters(shape: Shape, filters: &Value) -> Result<Filter, Refusal> {
    match (shape, filters) {
        (Shape::Array, Value::Array(triples)) => {
            let parsed = triples
                .iter()
                .map(|triple| match triple {
                    Value::Array(parts) => parse_triple(parts),
                    other => Err(invalid(
                        "Request Parameters invalid.",
                        json!({"filters": format!("expected a [field, relation, value] list, got {other}")}),
                    )),
                })
                .collect::<Result<_, _>>()?;
            Ok(Filter::All(parsed))
        }
        (Shape::Array, other) => Err(invalid(
            "Request Parameters invalid.",
            json!({"filters": format!("expected a list of [field, relation, value] lists, got {other}")}),
        )),
        (Shape::Hash, group) => parse_group(group),
    }
}

/// A `{"logical_operator": "and"|"or", "conditions": [...]}` group.
fn parse_group(group: &Value) -> Result<Filter, Refusal> {
    let operator = group.get("logical_operator").and_then(Value::as_str);
    let Some(operator) = operator else {
        return Err(invalid(
            "Missing logical operator",
            json!({"filters": group}),
        ));
    };
    let conditions = match group.get("conditions") {
        Some(Value::Array(conditions)) => conditions,
        _ => {
            return Err(invalid(
                "Request Parameters invalid.",
                json!({"filters": {"conditions": "must be a list"}}),
            ));
        }
    };
    let parsed = conditions
        .iter()
        .map(|condition| match condition {
            Value::Array(parts) => parse_triple(parts),
            nested => parse_group(nested),
        })
        .collect::<Result<Vec<_>, _>>()?;
    match operator.to_ascii_lowercase().as_str() {
        "and" | "all" => Ok(Filter::All(parsed)),
        "or" | "any" => Ok(Filter::Any(parsed)),
        other => Err(invalid(
            format!("Unknown logical operator '{other}'"),
            json!({"filters": {"logical_operator": other}}),
        )),
    }
}

/// `[field, relation, value]`, or api3's `[field, relation, value, value, ...]`.
fn parse_triple(parts: &[Value]) -> Result<Filter, Refusal> {
    let (Some(field), Some(relation)) = (
        parts.first().and_then(Value::as_str),
        parts.get(1).and_then(Value::as_str),
    ) else {
        return Err(invalid(
            "Request Parameters invalid.",
            json!({"filters": format!("expected [field, relation, value], got {}", Value::from(parts.to_vec()))}),
        ));
    };
    let value = match parts.len() {
        0..=2 => Value::Null,
        3 => parts[2].clone(),
        _ => Value::from(parts[2..].to_vec()),
    };
    let unsupported = || {
        invalid(
            format!(
                "API read() EventLogEntry.{field}: relation '{relation}' is not supported by the fake site."
            ),
            json!({ format!("EventLogEntry.{field}"): relation }),
        )
    };
    let bad_value = |expected: &str| {
        invalid(
            "Request Parameters invalid.",
            json!({"filters": format!("EventLogEntry.{field} {relation} expects {expected}, got {value}")}),
        )
    };
    match field {
        "id" => {
            let one = || value.as_i64().ok_or_else(|| bad_value("an integer"));
            let many = || -> Result<Vec<i64>, Refusal> {
                match &value {
                    Value::Array(list) => list
                        .iter()
                        .map(|v| v.as_i64().ok_or_else(|| bad_value("a list of integers")))
                        .collect(),
                    single => single
                        .as_i64()
                        .map(|v| vec![v])
                        .ok_or_else(|| bad_value("a list of integers")),
                }
            };
            let test = match relation {
                "is" => IdTest::Is(one()?),
                "is_not" => IdTest::IsNot(one()?),
                "greater_than" => IdTest::Greater(one()?),
                "less_than" => IdTest::Less(one()?),
                "in" => IdTest::In(many()?),
                "not_in" => IdTest::NotIn(many()?),
                "between" => match many()?.as_slice() {
                    [a, b] => IdTest::Between(*a, *b),
                    _ => return Err(bad_value("[low, high]")),
                },
                _ => return Err(unsupported()),
            };
            Ok(Filter::Id(test))
        }
        "created_at" => {
            let Some(time) = value.as_str().map(str::to_owned) else {
                return Err(bad_value(
                    "an ISO 8601 date time such as \"2026-01-21T19:47:33Z\"",
                ));
            };
            match relation {
                "greater_than" => Ok(Filter::CreatedAfter(time)),
                "less_than" => Ok(Filter::CreatedBefore(time)),
                _ => Err(unsupported()),
            }
        }
        "meta" => Err(invalid(
            "API read() EventLogEntry.meta's 'serializable' data type cannot be used in a filter.",
            json!({"EventLogEntry.meta": "cannot be used in a filter"}),
        )),
        _ if ATTRIBUTES.contains(&field) || RELATIONSHIPS.contains(&field) => Err(invalid(
            format!(
                "API read() EventLogEntry.{field}: filters on this field are not supported by the fake site."
            ),
            json!({ format!("EventLogEntry.{field}"): "filter not supported" }),
        )),
        _ => Err(invalid(
            format!("API read() EventLogEntry.{field} doesn't exist."),
            json!({ format!("EventLogEntry.{field}"): " does not exist." }),
        )),
    }
}

/// `fields` as a list, a comma string or `"*"`; absent means every field.
fn parse_fields(fields: Option<&Value>) -> Result<(Vec<&'static str>, Vec<&'static str>), Refusal> {
    let names: Vec<String> = match fields {
        None | Some(Value::Null) => vec!["*".to_owned()],
        Some(Value::String(list)) => list.split(',').map(|f| f.trim().to_owned()).collect(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|f| {
                f.as_str().map(str::to_owned).ok_or_else(|| {
                    invalid(
                        "Request Parameters invalid.",
                        json!({"fields": format!("expected field names, got {f}")}),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(invalid(
                "Request Parameters invalid.",
                json!({"fields": format!("expected a list of field names, got {other}")}),
            ));
        }
    };
    let mut attributes = Vec::new();
    let mut relationships = Vec::new();
    for name in &names {
        match name.as_str() {
            "*" => {
                attributes = ATTRIBUTES.to_vec();
                relationships = RELATIONSHIPS.to_vec();
                break;
            }
            // Always at the top level; `audit_trail` is never returned, even when asked for.
            "" | "id" | "type" | "audit_trail" => {}
            name => {
                if let Some(field) = ATTRIBUTES.iter().find(|f| **f == name) {
                    attributes.push(*field);
                } else if let Some(field) = RELATIONSHIPS.iter().find(|f| **f == name) {
                    relationships.push(*field);
                } else {
                    return Err(invalid(
                        format!("API read() EventLogEntry.{name} doesn't exist."),
                        json!({ format!("EventLogEntry.{name}"): " does not exist." }),
                    ));
                }
            }
        }
    }
    // Rendered in a fixed order whatever order they were asked in, without repeats.
    attributes.sort_by_key(|f| ATTRIBUTES.iter().position(|a| a == f));
    attributes.dedup();
    relationships.sort_by_key(|f| RELATIONSHIPS.iter().position(|r| r == f));
    relationships.dedup();
    Ok((attributes, relationships))
}

/// `"id"`, `"-id"`, `"created_at"`, `"-created_at"`; the first key of a comma list counts. An unknown
/// sort field falls back to id ascending, as on a live site.
fn parse_sort(sort: Option<&Value>) -> Result<Sort, Refusal> {
    let key = match sort {
        None | Some(Value::Null) => return Ok(Sort::Id { descending: false }),
        Some(Value::String(s)) => s.split(',').next().unwrap_or("").trim().to_owned(),
        Some(other) => {
            return Err(invalid(
                "Request Parameters invalid.",
                json!({"sort": format!("expected a string such as \"-id\", got {other}")}),
            ));
        }
    };
    let (descending, field) = match key.strip_prefix('-') {
        Some(field) => (true, field),
        None => (false, key.as_str()),
    };
    Ok(match field {
        "created_at" => Sort::CreatedAt { descending },
        "id" => Sort::Id { descending },
        _ => Sort::Id { descending: false },
    })
}

/// `page.size` or `page.number`: a positive integer (a string of digits too, from a query string).
fn page_number(value: Option<&Value>, key: &str, default: usize) -> Result<usize, Refusal> {
    let number = match value {
        None | Some(Value::Null) => return Ok(default),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    };
    match number {
        Some(n) if n > 0 => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
        Some(_) => Err(invalid(
            format!("{key} must be greater than 0"),
            json!({"page": {key: value}}),
        )),
        None => Err(invalid(
            "Request Parameters invalid.",
            json!({"page": {key: format!("expected a positive integer, got {}", value.unwrap_or(&Value::Null))}}),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plural_path_segments() {
        assert_eq!(plural("HumanUser"), "human_users");
        assert_eq!(plural("Project"), "projects");
        assert_eq!(plural("EventLogEntry"), "event_log_entries");
        assert_eq!(plural("Status"), "statuses");
    }

    #[test]
    fn bounds_narrow_the_scan() {
        let query = |filters: Value| {
            Query::parse(Shape::Hash, &json!({"filters": filters}), &[])
                .expect("valid")
                .filter
                .id_bounds()
        };
        let group = json!({"logical_operator": "and", "conditions": [["id", "greater_than", 5], ["id", "less_than", 9]]});
        assert_eq!(query(group), (6, 8));
        let group = json!({"logical_operator": "or", "conditions": [["id", "is", 5], ["id", "between", [20, 30]]]});
        assert_eq!(query(group), (5, 30));
        let group = json!({"logical_operator": "or", "conditions": [["id", "is", 5], ["created_at", "greater_than", "2026"]]});
        assert_eq!(query(group), (i64::MIN, i64::MAX));
    }
}
