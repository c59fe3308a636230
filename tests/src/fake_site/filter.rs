//! The filters of api3's `read`, as `shotgun_api3` sends them (`shared/reference/shotgrid-wire.md`
//! 2.4): `{"logical_operator": "and"|"or", "conditions": [...]}`, each condition a
//! `{"path", "relation", "values"}` test or a nested group, parsed into a [`Filter`] and evaluated
//! against one record at a time.
//!
//! The fake site has no schema, so a comparison goes by the values themselves, after ShotGrid's rules
//! as far as those can be followed without one:
//!
//! * a link (`{"type", "id", ...}`) equals another link of the same type and id, whatever else either
//!   carries; numbers compare as numbers (`1` is `1.0`); anything else compares exactly;
//! * on a list-valued field (multi-entity), `is` means "holds", `in` means "holds any of", and `is`
//!   null means "is empty";
//! * `contains`, `not_contains`, `starts_with` and `ends_with` ignore case, as on a real site; `is`
//!   and `in` do not, so that status codes match exactly;
//! * `greater_than`, `less_than` and `between` compare numbers with numbers and strings with strings
//!   (ISO 8601 dates and times sort as text); a null or mismatched field matches neither.
//!
//! Errors are the text of the `Fault` the site answers with.

use std::cmp::Ordering;

use serde_json::Value;

/// A parsed filter tree.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Filter {
    /// Every one holds; an empty group holds for every record.
    All(Vec<Filter>),
    /// At least one holds; an empty group holds for every record, as an empty filter list does.
    Any(Vec<Filter>),
    /// One test of one field, or of a dotted path such as `entity.Shot.code`.
    Test {
        /// The field or dotted path.
        path: String,
        /// What to test.
        relation: Relation,
        /// The values, as sent: one for most relations, a list for `in`, two for `between`.
        values: Vec<Value>,
    },
}

/// The relations the fake site supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Relation {
    Is,
    IsNot,
    In,
    NotIn,
    Contains,
    NotContains,
    StartsWith,
    EndsWith,
    GreaterThan,
    LessThan,
    Between,
    NotBetween,
    TypeIs,
    TypeIsNot,
}

impl Relation {
    fn parse(name: &str) -> Option<Relation> {
        Some(match name {
            "is" => Relation::Is,
            "is_not" => Relation::IsNot,
            "in" => Relation::In,
            "not_in" => Relation::NotIn,
            "contains" => Relation::Contains,
            "not_contains" => Relation::NotContains,
            "starts_with" => Relation::StartsWith,
            "ends_with" => Relation::EndsWith,
            "greater_than" => Relation::GreaterThan,
            "less_than" => Relation::LessThan,
            "between" => Relation::Between,
            "not_between" => Relation::NotBetween,
            "type_is" => Relation::TypeIs,
            "type_is_not" => Relation::TypeIsNot,
            _ => return None,
        })
    }

    /// How many values the relation takes; `None` for a list of any length.
    fn arity(self) -> Option<usize> {
        match self {
            Relation::In | Relation::NotIn => None,
            Relation::Between | Relation::NotBetween => Some(2),
            _ => Some(1),
        }
    }
}

impl Filter {
    /// Parses the `filters` of a `read` on `entity_type` (named in error messages).
    pub(crate) fn parse(entity_type: &str, filters: &Value) -> Result<Filter, String> {
        match filters {
            Value::Null => Ok(Filter::All(Vec::new())),
            // A bare list of conditions, as older clients send: all of them must hold.
            Value::Array(conditions) => conditions
                .iter()
                .map(|c| Filter::parse_condition(entity_type, c))
                .collect::<Result<_, _>>()
                .map(Filter::All),
            group => Filter::parse_group(entity_type, group),
        }
    }

    fn parse_group(entity_type: &str, group: &Value) -> Result<Filter, String> {
        let operator = group.get("logical_operator").and_then(Value::as_str);
        let Some(operator) = operator else {
            return Err(format!(
                "API read() {entity_type}: filters need a \"logical_operator\", got {group}"
            ));
        };
        let Some(conditions) = group.get("conditions").and_then(Value::as_array) else {
            return Err(format!(
                "API read() {entity_type}: filters need a list of \"conditions\", got {group}"
            ));
        };
        let parsed = conditions
            .iter()
            .map(|c| Filter::parse_condition(entity_type, c))
            .collect::<Result<Vec<_>, _>>()?;
        match operator {
            "and" | "all" => Ok(Filter::All(parsed)),
            "or" | "any" => Ok(Filter::Any(parsed)),
            other => Err(format!(
                "API read() {entity_type}: invalid logical_operator '{other}', expected 'and' or 'or'"
            )),
        }
    }

    /// `{"path", "relation", "values"}`, a nested group, or a `[path, relation, value...]` list.
    fn parse_condition(entity_type: &str, condition: &Value) -> Result<Filter, String> {
        let (path, relation, values) = match condition {
            Value::Object(fields) if fields.contains_key("logical_operator") => {
                return Filter::parse_group(entity_type, condition);
            }
            Value::Object(fields) => {
                let values = match fields.get("values") {
                    Some(Value::Array(values)) => values.clone(),
                    None => Vec::new(),
                    Some(one) => vec![one.clone()],
                };
                (fields.get("path"), fields.get("relation"), values)
            }
            Value::Array(parts) => {
                let values = match parts.get(2..).unwrap_or_default() {
                    [Value::Array(list)] => list.clone(),
                    rest => rest.to_vec(),
                };
                (parts.first(), parts.get(1), values)
            }
            other => {
                return Err(format!(
                    "API read() {entity_type}: invalid filter condition {other}"
                ));
            }
        };
        let (Some(path), Some(relation)) = (
            path.and_then(Value::as_str),
            relation.and_then(Value::as_str),
        ) else {
            return Err(format!(
                "API read() {entity_type}: a filter condition needs a \"path\" and a \"relation\", got {condition}"
            ));
        };
        if entity_type == "EventLogEntry" && path == "meta" {
            return Err(
                "API read() EventLogEntry.meta's 'serializable' data type cannot be used in a filter."
                    .to_owned(),
            );
        }
        let Some(parsed) = Relation::parse(relation) else {
            return Err(format!(
                "API read() {entity_type}.{path}: relation '{relation}' is not supported by the fake site"
            ));
        };
        if let Some(arity) = parsed.arity() {
            if values.len() != arity {
                return Err(format!(
                    "API read() {entity_type}.{path} {relation} expects {arity} value(s), got {}",
                    Value::from(values)
                ));
            }
        }
        Ok(Filter::Test {
            path: path.to_owned(),
            relation: parsed,
            values,
        })
    }

    /// Whether a record matches; `field` gives the value of a field or dotted path (null when unset).
    pub(crate) fn matches(&self, field: &dyn Fn(&str) -> Value) -> bool {
        match self {
            Filter::All(all) => all.iter().all(|f| f.matches(field)),
            Filter::Any(any) => any.is_empty() || any.iter().any(|f| f.matches(field)),
            Filter::Test {
                path,
                relation,
                values,
            } => test(&field(path), *relation, values),
        }
    }
}

fn test(field: &Value, relation: Relation, values: &[Value]) -> bool {
    let want = values.first().unwrap_or(&Value::Null);
    match relation {
        Relation::Is => is(field, want),
        Relation::IsNot => !is(field, want),
        Relation::In => values.iter().any(|want| is(field, want)),
        Relation::NotIn => !values.iter().any(|want| is(field, want)),
        Relation::Contains => contains(field, want),
        Relation::NotContains => !contains(field, want),
        Relation::StartsWith => text_test(field, want, |f, w| f.starts_with(w)),
        Relation::EndsWith => text_test(field, want, |f, w| f.ends_with(w)),
        Relation::GreaterThan => order(field, want) == Some(Ordering::Greater),
        Relation::LessThan => order(field, want) == Some(Ordering::Less),
        Relation::Between => between(field, values) == Some(true),
        Relation::NotBetween => between(field, values) == Some(false),
        Relation::TypeIs => link(field).is_some_and(|(kind, _)| Some(kind) == want.as_str()),
        Relation::TypeIsNot => link(field).is_none_or(|(kind, _)| Some(kind) != want.as_str()),
    }
}

/// `is`: equality, or "holds" on a list-valued field.
fn is(field: &Value, want: &Value) -> bool {
    match field {
        Value::Array(items) if want.is_null() => items.is_empty(),
        Value::Array(items) => items.iter().any(|item| same(item, want)),
        _ => same(field, want),
    }
}

fn contains(field: &Value, want: &Value) -> bool {
    match field {
        Value::Array(items) => items.iter().any(|item| same(item, want)),
        _ => text_test(field, want, |f, w| f.contains(w)),
    }
}

/// A case-insensitive test of a text field; false when either side is not text.
fn text_test(field: &Value, want: &Value, test: impl Fn(&str, &str) -> bool) -> bool {
    match (field.as_str(), want.as_str()) {
        (Some(f), Some(w)) => test(&f.to_lowercase(), &w.to_lowercase()),
        _ => false,
    }
}

/// Whether `field` lies within `[low, high]`; `None` when it cannot be compared with them.
fn between(field: &Value, bounds: &[Value]) -> Option<bool> {
    let [low, high] = bounds else {
        return None;
    };
    let above = order(field, low)? != Ordering::Less;
    let below = order(field, high)? != Ordering::Greater;
    Some(above && below)
}

/// `{"type": "Task", "id": 5, ...}` → `("Task", 5)`.
pub(crate) fn link(value: &Value) -> Option<(&str, i64)> {
    Some((value.get("type")?.as_str()?, value.get("id")?.as_i64()?))
}

/// Equality as a filter sees it: links by type and id, numbers by value, the rest exactly.
pub(crate) fn same(a: &Value, b: &Value) -> bool {
    match (link(a), link(b)) {
        (Some(x), Some(y)) => x == y,
        (None, None) => match (a, b) {
            (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
            _ => a == b,
        },
        _ => false,
    }
}

/// The order of two values of the same kind: numbers, or text; `None` for anything else.
fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// A total order over any two values, for `sorts`: null, then booleans, numbers, text, links (by
/// type, then id), lists and other objects.
pub(crate) fn sort_order(a: &Value, b: &Value) -> Ordering {
    fn rank(value: &Value) -> u8 {
        match value {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Number(_) => 2,
            Value::String(_) => 3,
            Value::Object(_) if link(value).is_some() => 4,
            Value::Array(_) => 5,
            Value::Object(_) => 6,
        }
    }
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(_), Value::Number(_)) | (Value::String(_), Value::String(_)) => {
            order(a, b).unwrap_or(Ordering::Equal)
        }
        _ => match (link(a), link(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => rank(a).cmp(&rank(b)),
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn task() -> Value {
        json!({
            "type": "Task", "id": 7, "content": "Anim", "sg_status_list": "ip",
            "est_in_mins": 480, "due_date": "2026-03-14", "done": false,
            "entity": {"type": "Shot", "id": 12, "name": "010_0010"},
            "task_assignees": [{"type": "HumanUser", "id": 88}, {"type": "HumanUser", "id": 91}],
            "sg_versions": [],
            "description": null,
        })
    }

    /// Whether the task above matches `filters`, given as shotgun_api3 sends them.
    fn matches(filters: Value) -> bool {
        let record = task();
        let filter = Filter::parse("Task", &filters).expect("a valid filter");
        filter.matches(&|path| record.get(path).cloned().unwrap_or(Value::Null))
    }

    fn one(path: &str, relation: &str, values: Value) -> bool {
        matches(json!({"logical_operator": "and", "conditions": [
            {"path": path, "relation": relation, "values": values}
        ]}))
    }

    #[test]
    fn is_and_is_not() {
        assert!(one("sg_status_list", "is", json!(["ip"])));
        assert!(!one("sg_status_list", "is", json!(["IP"])), "is is exact");
        assert!(one("sg_status_list", "is_not", json!(["fin"])));
        assert!(one("est_in_mins", "is", json!([480.0])), "numbers by value");
        assert!(one("done", "is", json!([false])));
        assert!(one("description", "is", json!([null])));
        assert!(one("missing_field", "is", json!([null])), "unset is null");
        assert!(!one("description", "is_not", json!([null])));
        assert!(one("id", "is", json!([7])));
    }

    #[test]
    fn links_compare_by_type_and_id() {
        assert!(one(
            "entity",
            "is",
            json!([{"type": "Shot", "id": 12, "name": "another name"}])
        ));
        assert!(!one("entity", "is", json!([{"type": "Asset", "id": 12}])));
        assert!(one("entity", "is_not", json!([{"type": "Shot", "id": 13}])));
        assert!(!one("entity", "is", json!([null])));
        assert!(one("entity", "type_is", json!(["Shot"])));
        assert!(one("entity", "type_is_not", json!(["Asset"])));
        assert!(one("description", "type_is_not", json!(["Asset"])));
    }

    #[test]
    fn list_fields_hold_their_items() {
        assert!(one(
            "task_assignees",
            "is",
            json!([{"type": "HumanUser", "id": 91}])
        ));
        assert!(!one(
            "task_assignees",
            "is",
            json!([{"type": "HumanUser", "id": 97}])
        ));
        assert!(one(
            "task_assignees",
            "is_not",
            json!([{"type": "HumanUser", "id": 97}])
        ));
        assert!(one("sg_versions", "is", json!([null])), "empty is null");
        assert!(!one("task_assignees", "is", json!([null])));
        assert!(one(
            "task_assignees",
            "in",
            json!([{"type": "HumanUser", "id": 1}, {"type": "HumanUser", "id": 88}])
        ));
        assert!(one(
            "task_assignees",
            "contains",
            json!([{"type": "HumanUser", "id": 88}])
        ));
    }

    #[test]
    fn in_and_not_in() {
        assert!(one("sg_status_list", "in", json!(["rdy", "ip"])));
        assert!(!one("sg_status_list", "in", json!(["rdy", "fin"])));
        assert!(
            !one("sg_status_list", "in", json!([])),
            "an empty list holds nothing"
        );
        assert!(one("sg_status_list", "not_in", json!(["rdy", "fin"])));
        assert!(!one("sg_status_list", "not_in", json!(["ip"])));
        assert!(one("id", "in", json!([1, 7, 9])));
        assert!(one("description", "in", json!([null, "x"])));
    }

    #[test]
    fn text_relations_ignore_case() {
        assert!(one("content", "contains", json!(["NIM"])));
        assert!(!one("content", "contains", json!(["comp"])));
        assert!(one("content", "not_contains", json!(["comp"])));
        assert!(one("content", "starts_with", json!(["an"])));
        assert!(one("content", "ends_with", json!(["IM"])));
        assert!(
            !one("description", "contains", json!(["x"])),
            "null holds no text"
        );
        assert!(one("description", "not_contains", json!(["x"])));
        assert!(
            !one("est_in_mins", "contains", json!(["48"])),
            "a number is not text"
        );
    }

    #[test]
    fn order_relations() {
        assert!(one("est_in_mins", "greater_than", json!([479])));
        assert!(!one("est_in_mins", "greater_than", json!([480])));
        assert!(one("est_in_mins", "less_than", json!([480.5])));
        assert!(one("due_date", "greater_than", json!(["2026-03-01"])));
        assert!(one("due_date", "less_than", json!(["2026-04-01"])));
        assert!(
            !one("description", "greater_than", json!([0])),
            "null is not ordered"
        );
        assert!(
            !one("est_in_mins", "greater_than", json!(["1"])),
            "mismatched kinds"
        );
        assert!(one("est_in_mins", "between", json!([480, 500])));
        assert!(!one("est_in_mins", "between", json!([481, 500])));
        assert!(one("est_in_mins", "not_between", json!([481, 500])));
        assert!(!one("description", "not_between", json!([1, 2])));
        assert!(one("id", "greater_than", json!([6])));
    }

    #[test]
    fn groups_nest() {
        let is =
            |status: &str| json!({"path": "sg_status_list", "relation": "is", "values": [status]});
        assert!(matches(
            json!({"logical_operator": "or", "conditions": [is("fin"), is("ip")]})
        ));
        assert!(!matches(
            json!({"logical_operator": "and", "conditions": [is("fin"), is("ip")]})
        ));
        assert!(matches(
            json!({"logical_operator": "and", "conditions": []})
        ));
        assert!(matches(json!({"logical_operator": "or", "conditions": []})));
        assert!(matches(json!({"logical_operator": "and", "conditions": [
            {"path": "content", "relation": "is", "values": ["Anim"]},
            {"logical_operator": "or", "conditions": [is("fin"), is("ip")]},
        ]})));
        assert!(!matches(json!({"logical_operator": "and", "conditions": [
            {"path": "content", "relation": "is", "values": ["Comp"]},
            {"logical_operator": "or", "conditions": [is("fin"), is("ip")]},
        ]})));
        // The REST form, a list of [path, relation, value...] that must all hold, is read too.
        assert!(matches(json!([
            ["content", "is", "Anim"],
            ["id", "in", [6, 7]]
        ])));
        assert!(matches(json!([["id", "in", 6, 7]])));
        assert!(matches(Value::Null));
    }

    #[test]
    fn bad_filters_are_refused_with_what_is_wrong() {
        let refused =
            |filters: Value| Filter::parse("Task", &filters).expect_err("an invalid filter");
        let message = refused(json!({"conditions": []}));
        assert!(message.contains("logical_operator"), "{message}");
        let message = refused(json!({"logical_operator": "xor", "conditions": []}));
        assert!(message.contains("'xor'"), "{message}");
        let message = refused(json!({"logical_operator": "and", "conditions": [
            {"path": "content", "relation": "sounds_like", "values": ["x"]}
        ]}));
        assert_eq!(
            message,
            "API read() Task.content: relation 'sounds_like' is not supported by the fake site"
        );
        let message = refused(json!({"logical_operator": "and", "conditions": [
            {"path": "content", "relation": "is", "values": ["a", "b"]}
        ]}));
        assert!(message.contains("expects 1 value"), "{message}");
        let message = refused(json!({"logical_operator": "and", "conditions": [
            {"path": "id", "relation": "between", "values": [1]}
        ]}));
        assert!(message.contains("expects 2 value"), "{message}");
        let message =
            refused(json!({"logical_operator": "and", "conditions": [{"relation": "is"}]}));
        assert!(message.contains("\"path\""), "{message}");
        let meta = json!({"logical_operator": "and", "conditions": [
            {"path": "meta", "relation": "is", "values": [null]}
        ]});
        assert!(
            Filter::parse("Task", &meta).is_ok(),
            "only the log's meta is refused"
        );
        let message = Filter::parse("EventLogEntry", &meta).expect_err("meta is not filterable");
        assert!(message.contains("cannot be used in a filter"), "{message}");
    }

    #[test]
    fn sorting_is_total() {
        let mut values = vec![
            json!("b"),
            json!(2),
            json!({"type": "Shot", "id": 2}),
            Value::Null,
            json!(true),
            json!(1.5),
            json!("a"),
            json!({"type": "Asset", "id": 9}),
        ];
        values.sort_by(sort_order);
        assert_eq!(
            values,
            [
                Value::Null,
                json!(true),
                json!(1.5),
                json!(2),
                json!("a"),
                json!("b"),
                json!({"type": "Asset", "id": 9}),
                json!({"type": "Shot", "id": 2}),
            ]
        );
    }
}
