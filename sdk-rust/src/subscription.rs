//! [`Subscription`]: the protocol's subscription with builder methods for its filters.

use sgevents_protocol::{Event, Subscription as Wire};

/// What one callback wants to receive: a name and event type patterns, narrowed by optional
/// filters.
///
/// The daemon does the matching (see [`sgevents_protocol::subscription`] for the exact rules); the
/// SDK only registers the subscription and calls its callback. Every filter left out matches
/// anything.
///
/// ```
/// use sgevents_sdk::Subscription;
///
/// let sub = Subscription::new("on_status", ["Shotgun_Task_Change", "Shotgun_Shot_*"])
///     .attributes(["sg_status_list"])
///     .entity_types(["Task", "Shot"])
///     .project_ids([66, 70])
///     .skip_transient();
/// assert_eq!(sub.name(), "on_status");
/// ```
///
/// A [`sgevents_protocol::Subscription`] (read from configuration, for example) converts into it
/// with `From`, and every method taking a subscription accepts either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription(Wire);

impl Subscription {
    /// A subscription named `name` (unique within the plugin) to the events whose `event_type`
    /// matches one of the glob patterns (`*` matches any run of characters).
    pub fn new<I, S>(name: impl Into<String>, event_types: I) -> Subscription
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Subscription(Wire::new(name, event_types))
    }

    /// Only events whose `attribute_name` is one of these exact names (so never events without an
    /// attribute).
    pub fn attributes<I, S>(mut self, attributes: I) -> Subscription
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.0.attributes = Some(attributes.into_iter().map(Into::into).collect());
        self
    }

    /// Only events about an entity of one of these types (`entity.type`, or `meta.entity_type` for
    /// retired entities).
    pub fn entity_types<I, S>(mut self, entity_types: I) -> Subscription
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.0.entity_types = Some(entity_types.into_iter().map(Into::into).collect());
        self
    }

    /// Only events of these projects (so never site-level events).
    pub fn project_ids(mut self, project_ids: impl IntoIterator<Item = i64>) -> Subscription {
        self.0.project_ids = Some(project_ids.into_iter().collect());
        self
    }

    /// Leave out transient events (`meta.is_transient`, such as a thumbnail not ready yet).
    pub fn skip_transient(mut self) -> Subscription {
        self.0.skip_transient = true;
        self
    }

    /// The subscription's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Whether the daemon would send `event` to this subscription.
    pub fn matches(&self, event: &Event) -> bool {
        self.0.matches(event)
    }

    /// The subscription as written in the `register` message.
    pub fn as_wire(&self) -> &Wire {
        &self.0
    }

    /// The subscription as written in the `register` message.
    pub fn into_wire(self) -> Wire {
        self.0
    }
}

impl From<Wire> for Subscription {
    fn from(wire: Wire) -> Subscription {
        Subscription(wire)
    }
}

impl From<Subscription> for Wire {
    fn from(sub: Subscription) -> Wire {
        sub.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_set_the_wire_fields() {
        let wire = Subscription::new("s", ["Shotgun_Task_Change"])
            .attributes(["sg_status_list"])
            .entity_types(["Task"])
            .project_ids([66])
            .skip_transient()
            .into_wire();
        assert_eq!(wire.event_types, vec!["Shotgun_Task_Change"]);
        assert_eq!(wire.attributes, Some(vec!["sg_status_list".to_owned()]));
        assert_eq!(wire.entity_types, Some(vec!["Task".to_owned()]));
        assert_eq!(wire.project_ids, Some(vec![66]));
        assert!(wire.skip_transient);
        let bare = Subscription::new("b", ["*"]).into_wire();
        assert_eq!(
            (
                bare.attributes,
                bare.entity_types,
                bare.project_ids,
                bare.skip_transient
            ),
            (None, None, None, false)
        );
    }
}
