//! Every message of protocol version 1, in both directions.
//!
//! Each message is one JSON object with a `type` field naming it. Fields not listed here are
//! ignored when reading (the protocol may grow by adding fields), but a `type` not listed here is
//! an error: a peer cannot safely skip a message whose meaning it does not know.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::event::Event;
use crate::subscription::Subscription;

/// Protocol version 1, the version this crate speaks.
pub const PROTOCOL_V1: u32 = 1;
/// The newest version this crate speaks.
pub const CURRENT: u32 = PROTOCOL_V1;
/// Every version this crate can speak, oldest first.
pub const SUPPORTED: &[u32] = &[PROTOCOL_V1];
/// The longest line either side must accept, in bytes, newline excluded: 16 MiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 * 1024 * 1024;
/// The window a plugin gets when its `register` does not name one.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 1;
/// The largest window a plugin may ask for.
pub const MAX_IN_FLIGHT_LIMIT: u32 = 1024;

/// Picks the version to speak: the newest one that both `offered` and [`SUPPORTED`] contain.
///
/// Returns `None` when there is none, in which case a plugin answers `fatal` and exits.
pub fn choose_version(offered: &[u32]) -> Option<u32> {
    SUPPORTED
        .iter()
        .rev()
        .copied()
        .find(|v| offered.contains(v))
}

/// A message from the daemon to a plugin, written on the plugin's stdin.
// Messages live one at a time on their way to or from a pipe; boxing the event would cost an
// allocation per event for no memory saved.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DaemonMessage {
    /// The first message of every session; the plugin answers with `register`.
    Hello(Hello),
    /// One event to process; the plugin answers with `ack`, `nack` or `term`.
    Event(EventDelivery),
    /// A liveness check; the plugin answers `pong` with the same nonce, even while it is busy.
    Ping {
        /// Opaque number to echo back.
        nonce: u64,
    },
    /// Finish and answer the events in flight, then exit when stdin closes.
    Shutdown {
        /// How long the daemon waits for the answers before it closes stdin.
        drain_ms: u64,
    },
}

/// The `hello` message: the versions the daemon offers and the plugin's own configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// Protocol versions the daemon can speak; the plugin picks exactly one.
    pub protocols: Vec<u32>,
    /// The plugin's name in the daemon's configuration.
    pub plugin: String,
    /// The plugin's own `config` table from the daemon's configuration, `{}` when there is none.
    #[serde(default)]
    pub config: Map<String, Value>,
}

/// The `event` message: one journal event, addressed to one plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventDelivery {
    /// The ShotGrid `EventLogEntry` id; the idempotency key of this delivery.
    pub event_id: i64,
    /// 1 for the first delivery, counting up with every redelivery of the same event.
    pub attempt: u32,
    /// The names of this plugin's subscriptions that matched, in registration order.
    pub subscriptions: Vec<String>,
    /// How long the plugin has to answer (or to send `progress`) before it is deemed hung.
    pub deadline_ms: u64,
    /// The event itself, in the flat shape `shotgun_api3` returns.
    pub event: Event,
}

/// A message from a plugin to the daemon, written on the plugin's stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PluginMessage {
    /// The answer to `hello`: the chosen version, the subscriptions and the window.
    Register(Register),
    /// The event was handled.
    Ack {
        /// The event this answers.
        event_id: i64,
    },
    /// The event failed this time; deliver it again later.
    Nack {
        /// The event this answers.
        event_id: i64,
        /// What went wrong, for the logs and the failed-events table.
        #[serde(default)]
        error: String,
        /// How long to wait before the redelivery; the daemon's backoff when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// The event can never succeed: record it as failed and move on.
    Term {
        /// The event this answers.
        event_id: i64,
        /// Why it can never succeed.
        #[serde(default)]
        error: String,
    },
    /// Still working on the event: extend its deadline.
    Progress {
        /// The event being worked on.
        event_id: i64,
    },
    /// The plugin cannot go on at all: disable it and keep its position.
    Fatal {
        /// Why, in words an operator can act on.
        #[serde(default)]
        error: String,
    },
    /// The answer to `ping`.
    Pong {
        /// The nonce of the ping this answers.
        nonce: u64,
    },
}

/// The `register` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Register {
    /// The version the plugin chose among those offered in `hello`.
    pub protocol: u32,
    /// What the plugin wants to receive, in the order its callbacks run.
    pub subscriptions: Vec<Subscription>,
    /// How many events the daemon may send before the first is answered (1 to 1024).
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u32,
    /// Who is mailed about this plugin's alerts (disabled, crash loop, failed events): `true` or
    /// absent for the daemon's configured recipients, `false` for nobody, or a list of addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<AlertRecipients>,
}

/// The `alerts` field of `register`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AlertRecipients {
    /// `true`: the configured recipients; `false`: nobody.
    Default(bool),
    /// These addresses instead of the configured ones.
    To(Vec<String>),
}

fn default_max_in_flight() -> u32 {
    DEFAULT_MAX_IN_FLIGHT
}

impl PluginMessage {
    /// The event this message answers or reports on, if it is about one.
    pub fn event_id(&self) -> Option<i64> {
        match self {
            PluginMessage::Ack { event_id }
            | PluginMessage::Nack { event_id, .. }
            | PluginMessage::Term { event_id, .. }
            | PluginMessage::Progress { event_id } => Some(*event_id),
            PluginMessage::Register(_)
            | PluginMessage::Fatal { .. }
            | PluginMessage::Pong { .. } => None,
        }
    }

    /// The message's `type` as written on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginMessage::Register(_) => "register",
            PluginMessage::Ack { .. } => "ack",
            PluginMessage::Nack { .. } => "nack",
            PluginMessage::Term { .. } => "term",
            PluginMessage::Progress { .. } => "progress",
            PluginMessage::Fatal { .. } => "fatal",
            PluginMessage::Pong { .. } => "pong",
        }
    }
}

impl DaemonMessage {
    /// The message's `type` as written on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            DaemonMessage::Hello(_) => "hello",
            DaemonMessage::Event(_) => "event",
            DaemonMessage::Ping { .. } => "ping",
            DaemonMessage::Shutdown { .. } => "shutdown",
        }
    }
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
    use super::*;

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

    #[test]
    fn chooses_the_newest_common_version() {
        assert_eq!(choose_version(&[1]), Some(1));
        assert_eq!(choose_version(&[1, 2, 3]), Some(1));
        assert_eq!(choose_version(&[2]), None);
        assert_eq!(choose_version(&[]), None);
    }

    #[test]
    fn register_window_defaults_to_one() {
        let reg: Register =
            serde_json::from_str(r#"{"protocol":1,"subscriptions":[]}"#).expect("valid register");
        assert_eq!(reg.max_in_flight, 1);
    }

    #[test]
    fn nack_without_retry_after_omits_it_on_the_wire() {
        let line = serde_json::to_string(&PluginMessage::Nack {
            event_id: 5,
            error: "boom".into(),
            retry_after_ms: None,
        })
        .expect("serializable");
        assert_eq!(line, r#"{"type":"nack","event_id":5,"error":"boom"}"#);
    }
}
