//! Subscriptions: what a plugin asks for, the pure function that decides whether an event matches,
//! and the checks a `register` message must pass.
//!
//! The daemon filters with [`matching_subscriptions`]; the SDKs never filter again. Matching is a
//! conjunction of the subscription's filters, each one absent meaning "anything":
//!
//! - `event_types`: glob patterns where `*` matches any run of characters (also none); the event's
//!   `event_type` must match at least one;
//! - `attributes`: exact names; when present the event's `attribute_name` must be one of them, so an
//!   event without an attribute never matches a present list;
//! - `entity_types`: exact names compared with [`Event::entity_type`];
//! - `project_ids`: the event's project id must be listed (site-level events never match);
//! - `skip_transient`: when true, events whose `meta.is_transient` is true never match.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::message::{MAX_IN_FLIGHT_LIMIT, Register};

/// One subscription of a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// The subscription's name, unique within the plugin; the SDKs map it to a callback.
    pub name: String,
    /// Glob patterns over `event_type`; at least one.
    pub event_types: Vec<String>,
    /// Exact attribute names; absent matches any event, with or without an attribute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Vec<String>>,
    /// Exact entity type names; absent matches any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_types: Option<Vec<String>>,
    /// Project ids; absent matches any event, including site-level ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_ids: Option<Vec<i64>>,
    /// Drop events whose `meta.is_transient` is true.
    #[serde(default, skip_serializing_if = "is_false")]
    pub skip_transient: bool,
}

fn is_false(b: &bool) -> bool {
    !b
}

impl Subscription {
    /// A subscription to the given event type patterns, with no other filter.
    pub fn new<I, S>(name: impl Into<String>, event_types: I) -> Subscription
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Subscription {
            name: name.into(),
            event_types: event_types.into_iter().map(Into::into).collect(),
            attributes: None,
            entity_types: None,
            project_ids: None,
            skip_transient: false,
        }
    }

    /// Whether `event` passes every filter of this subscription.
    pub fn matches(&self, event: &Event) -> bool {
        self.matches_fields(&MatchFields::of(event))
    }

    /// Whether an event with these fields passes every filter of this subscription.
    pub fn matches_fields(&self, event: &MatchFields<'_>) -> bool {
        if !self
            .event_types
            .iter()
            .any(|p| glob_match(p, event.event_type))
        {
            return false;
        }
        if let Some(attributes) = &self.attributes {
            match event.attribute_name {
                Some(name) if attributes.iter().any(|a| a == name) => {}
                _ => return false,
            }
        }
        if let Some(types) = &self.entity_types {
            match event.entity_type {
                Some(t) if types.iter().any(|x| x == t) => {}
                _ => return false,
            }
        }
        if let Some(ids) = &self.project_ids {
            match event.project_id {
                Some(id) if ids.contains(&id) => {}
                _ => return false,
            }
        }
        !(self.skip_transient && event.is_transient)
    }
}

/// The only fields of an event that matching looks at.
///
/// The daemon keeps these in its journal's columns, so it can filter without parsing event bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchFields<'a> {
    /// The event's `event_type`.
    pub event_type: &'a str,
    /// The event's `attribute_name`.
    pub attribute_name: Option<&'a str>,
    /// [`Event::entity_type`].
    pub entity_type: Option<&'a str>,
    /// [`Event::project_id`].
    pub project_id: Option<i64>,
    /// [`Event::is_transient`].
    pub is_transient: bool,
}

impl<'a> MatchFields<'a> {
    /// The match fields of `event`.
    pub fn of(event: &'a Event) -> MatchFields<'a> {
        MatchFields {
            event_type: &event.event_type,
            attribute_name: event.attribute_name.as_deref(),
            entity_type: event.entity_type(),
            project_id: event.project_id(),
            is_transient: event.is_transient(),
        }
    }
}

/// The names of the subscriptions that match `event`, in registration order.
///
/// An empty result means the plugin is not sent the event at all.
pub fn matching_subscriptions<'a>(
    subscriptions: &'a [Subscription],
    event: &Event,
) -> Vec<&'a str> {
    let fields = MatchFields::of(event);
    subscriptions
        .iter()
        .filter(|s| s.matches_fields(&fields))
        .map(|s| s.name.as_str())
        .collect()
}

/// Matches `text` against `pattern`, where `*` stands for any run of characters (also none) and
/// every other character stands for itself. Case-sensitive, like ShotGrid's event types.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    // The classic linear-time wildcard match: remember the last `*` and where it started matching,
    // and on a mismatch let that star swallow one more character.
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Why a `register` message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterError {
    /// The plugin chose a version the daemon did not offer.
    VersionNotOffered {
        /// The version the plugin chose.
        chosen: u32,
        /// The versions the daemon offered.
        offered: Vec<u32>,
    },
    /// `max_in_flight` is 0 or above [`MAX_IN_FLIGHT_LIMIT`].
    BadWindow(u32),
    /// The plugin registered no subscription, so it could never receive an event.
    NoSubscriptions,
    /// A subscription has an empty or repeated name.
    BadName(String),
    /// A subscription has no event type pattern.
    NoEventTypes(String),
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::VersionNotOffered { chosen, offered } => write!(
                f,
                "the plugin chose protocol version `{chosen}`, which the daemon did not offer \
                 (offered: {offered:?})\nhint: upgrade the older side; the plugin must choose one \
                 of the offered versions"
            ),
            RegisterError::BadWindow(n) => write!(
                f,
                "max_in_flight `{n}` is out of range\nhint: ask for 1 to {MAX_IN_FLIGHT_LIMIT}"
            ),
            RegisterError::NoSubscriptions => write!(
                f,
                "the plugin registered no subscriptions, so it would never receive an event\n\
                 hint: register at least one, or answer `fatal` saying why there is nothing to do"
            ),
            RegisterError::BadName(name) => write!(
                f,
                "subscription name `{name}` is empty or used twice\nhint: give each subscription \
                 its own non-empty name"
            ),
            RegisterError::NoEventTypes(name) => write!(
                f,
                "subscription `{name}` lists no event types\nhint: add a pattern such as \
                 \"Shotgun_Task_Change\", or \"*\" for every event"
            ),
        }
    }
}

impl std::error::Error for RegisterError {}

impl Register {
    /// Checks a `register` answer against the versions offered in `hello`.
    pub fn validate(&self, offered: &[u32]) -> Result<(), RegisterError> {
        if !offered.contains(&self.protocol) {
            return Err(RegisterError::VersionNotOffered {
                chosen: self.protocol,
                offered: offered.to_vec(),
            });
        }
        if self.max_in_flight == 0 || self.max_in_flight > MAX_IN_FLIGHT_LIMIT {
            return Err(RegisterError::BadWindow(self.max_in_flight));
        }
        if self.subscriptions.is_empty() {
            return Err(RegisterError::NoSubscriptions);
        }
        let mut seen = HashSet::new();
        for sub in &self.subscriptions {
            if sub.name.is_empty() || !seen.insert(sub.name.as_str()) {
                return Err(RegisterError::BadName(sub.name.clone()));
            }
            if sub.event_types.is_empty() {
                return Err(RegisterError::NoEventTypes(sub.name.clone()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::event::EntityLink;

    fn task_status(id: i64) -> Event {
        let mut ev = Event::new(id, "Shotgun_Task_Change");
        ev.attribute_name = Some("sg_status_list".into());
        ev.entity = Some(EntityLink::new("Task", 67378, "Anim"));
        ev.project = Some(EntityLink::new("Project", 66, "Sandbox"));
        ev.meta = json!({"type": "attribute_change", "old_value": "wtg", "new_value": "ip"});
        ev
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "Shotgun_Task_Change"));
        assert!(glob_match("Shotgun_*_Change", "Shotgun_Task_Change"));
        assert!(glob_match(
            "Shotgun_*_Change",
            "Shotgun_CustomEntity06_Change"
        ));
        assert!(!glob_match("Shotgun_*_Change", "Shotgun_Task_New"));
        assert!(glob_match("Shotgun_Task_*", "Shotgun_Task_"));
        assert!(glob_match("*_New", "Shotgun_Note_New"));
        assert!(glob_match("a*b*c", "a_b_b_c"));
        assert!(!glob_match("a*b*c", "a_b_b_"));
        assert!(!glob_match("Shotgun_Task_Change", "shotgun_task_change"));
        assert!(glob_match("**", "x"));
        assert!(!glob_match("", "x"));
        assert!(glob_match("", ""));
    }

    #[test]
    fn event_types_and_attributes() {
        let ev = task_status(1);
        let mut sub = Subscription::new("s", ["Shotgun_Task_Change"]);
        assert!(sub.matches(&ev));
        sub.attributes = Some(vec!["sg_status_list".into()]);
        assert!(sub.matches(&ev));
        sub.attributes = Some(vec!["sg_status".into()]);
        assert!(
            !sub.matches(&ev),
            "attributes are exact names, not substrings"
        );
        sub.attributes = Some(vec![]);
        assert!(!sub.matches(&ev), "an empty list matches nothing");
        assert!(!Subscription::new("s", ["Shotgun_Shot_Change"]).matches(&ev));
    }

    #[test]
    fn an_absent_attribute_list_matches_events_without_attribute() {
        let ev = Event::new(2, "Shotgun_Task_New");
        assert!(Subscription::new("s", ["Shotgun_Task_New"]).matches(&ev));
        let mut sub = Subscription::new("s", ["*"]);
        sub.attributes = Some(vec!["sg_status_list".into()]);
        assert!(!sub.matches(&ev));
    }

    #[test]
    fn entity_types_and_projects() {
        let ev = task_status(3);
        let mut sub = Subscription::new("s", ["*"]);
        sub.entity_types = Some(vec!["Task".into()]);
        assert!(sub.matches(&ev));
        sub.entity_types = Some(vec!["Shot".into()]);
        assert!(!sub.matches(&ev));
        let mut sub = Subscription::new("s", ["*"]);
        sub.project_ids = Some(vec![1, 66]);
        assert!(sub.matches(&ev));
        sub.project_ids = Some(vec![1]);
        assert!(!sub.matches(&ev));
        assert!(
            !sub.matches(&Event::new(4, "Shotgun_User_Login")),
            "site-level events have no project"
        );
    }

    #[test]
    fn skip_transient() {
        let mut ev = task_status(5);
        ev.meta = json!({"type": "attribute_change", "is_transient": true});
        let mut sub = Subscription::new("s", ["*"]);
        assert!(sub.matches(&ev));
        sub.skip_transient = true;
        assert!(!sub.matches(&ev));
        ev.meta = json!({"type": "attribute_change", "is_transient": false});
        assert!(sub.matches(&ev));
    }

    #[test]
    fn matching_keeps_registration_order() {
        let ev = task_status(6);
        let subs = vec![
            Subscription::new("b", ["*"]),
            Subscription::new("never", ["Shotgun_Shot_New"]),
            Subscription::new("a", ["Shotgun_Task_*"]),
        ];
        assert_eq!(matching_subscriptions(&subs, &ev), vec!["b", "a"]);
    }

    fn register(subs: Vec<Subscription>, window: u32) -> Register {
        Register {
            protocol: 1,
            subscriptions: subs,
            max_in_flight: window,
            alerts: None,
        }
    }

    #[test]
    fn register_validation() {
        let ok = register(vec![Subscription::new("a", ["*"])], 1);
        assert_eq!(ok.validate(&[1]), Ok(()));
        assert!(matches!(
            ok.validate(&[2]),
            Err(RegisterError::VersionNotOffered { chosen: 1, .. })
        ));
        assert_eq!(
            register(vec![Subscription::new("a", ["*"])], 0).validate(&[1]),
            Err(RegisterError::BadWindow(0))
        );
        assert_eq!(
            register(vec![Subscription::new("a", ["*"])], 1025).validate(&[1]),
            Err(RegisterError::BadWindow(1025))
        );
        assert_eq!(
            register(vec![Subscription::new("a", ["*"])], 1024).validate(&[1]),
            Ok(())
        );
        assert_eq!(
            register(vec![], 1).validate(&[1]),
            Err(RegisterError::NoSubscriptions)
        );
        let dup = register(
            vec![Subscription::new("a", ["*"]), Subscription::new("a", ["x"])],
            1,
        );
        assert_eq!(dup.validate(&[1]), Err(RegisterError::BadName("a".into())));
        let empty: Vec<String> = vec![];
        assert_eq!(
            register(vec![Subscription::new("a", empty)], 1).validate(&[1]),
            Err(RegisterError::NoEventTypes("a".into()))
        );
    }

    #[test]
    fn register_errors_carry_a_hint() {
        let err = RegisterError::VersionNotOffered {
            chosen: 2,
            offered: vec![1],
        };
        let text = err.to_string();
        assert!(text.contains("`2`") && text.contains("hint:"), "{text}");
    }

    /// A slow but obviously right reference matcher: try every split at each star.
    fn reference_glob(p: &[u8], t: &[u8]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some((b'*', rest)) => (0..=t.len()).any(|i| reference_glob(rest, &t[i..])),
            Some((c, rest)) => t.first() == Some(c) && reference_glob(rest, &t[1..]),
        }
    }

    proptest! {
        #[test]
        fn glob_agrees_with_the_reference(pattern in "[ab*_]{0,8}", text in "[ab_]{0,10}") {
            prop_assert_eq!(glob_match(&pattern, &text), reference_glob(pattern.as_bytes(), text.as_bytes()));
        }

        #[test]
        fn a_pattern_without_stars_is_equality(text in "[A-Za-z_]{0,12}", other in "[A-Za-z_]{0,12}") {
            prop_assert!(glob_match(&text, &text));
            prop_assert_eq!(glob_match(&text, &other), text == other);
        }

        #[test]
        fn star_matches_every_type(text in "\\PC{0,20}") {
            prop_assert!(glob_match("*", &text));
        }

        #[test]
        fn filters_are_a_conjunction(
            attr in proptest::option::of("[a-c]{1,2}"),
            listed in proptest::option::of(proptest::collection::vec("[a-c]{1,2}", 0..3)),
            project in proptest::option::of(0i64..4),
            ids in proptest::option::of(proptest::collection::vec(0i64..4, 0..3)),
        ) {
            let mut ev = Event::new(1, "Shotgun_Task_Change");
            ev.attribute_name = attr.clone();
            ev.project = project.map(|id| EntityLink::new("Project", id, "p"));
            let mut sub = Subscription::new("s", ["Shotgun_*"]);
            sub.attributes = listed.clone();
            sub.project_ids = ids.clone();
            let attr_ok = match (&listed, &attr) {
                (None, _) => true,
                (Some(list), Some(a)) => list.contains(a),
                (Some(_), None) => false,
            };
            let project_ok = match (&ids, project) {
                (None, _) => true,
                (Some(list), Some(p)) => list.contains(&p),
                (Some(_), None) => false,
            };
            prop_assert_eq!(sub.matches(&ev), attr_ok && project_ok);
        }
    }
}
