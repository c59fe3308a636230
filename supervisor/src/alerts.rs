//! Email alerts: what the daemon mails, to whom, and how often.
//!
//! SKELETON: the interface the actors and the source use. The SMTP side is being written.

use std::time::Duration;

/// Something an operator should hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alert {
    /// A plugin was disabled (fatal, failed handshake, exit 125, operator...).
    PluginDisabled {
        /// The plugin.
        plugin: String,
        /// Why.
        reason: String,
    },
    /// A plugin crash-looped (and was disabled).
    CrashLoop {
        /// The plugin.
        plugin: String,
        /// The last crash.
        reason: String,
    },
    /// A plugin gave up on an event: it is in `failed_events`.
    EventFailed {
        /// The plugin.
        plugin: String,
        /// The event.
        event_id: i64,
        /// The plugin's error.
        error: String,
    },
    /// The source has been failing for longer than its threshold.
    SourceFailing {
        /// For how long.
        since: Duration,
        /// The last error.
        error: String,
    },
}

/// Who gets a plugin's alerts, as the plugin asked in `register` (`alerts`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Recipients {
    /// The configured ones.
    #[default]
    Configured,
    /// Nobody.
    Nobody,
    /// These addresses.
    To(Vec<String>),
}

/// A handle on the alert sender; cheap to clone, never blocks.
#[derive(Debug, Clone, Default)]
pub struct Alerts {}

impl Alerts {
    /// A handle that sends nothing (no `[alerts]` section).
    pub fn none() -> Alerts {
        Alerts {}
    }

    /// Queues an alert; returns at once.
    pub fn send(&self, alert: Alert) {
        let _ = alert;
    }

    /// Sets who gets the alerts of `plugin` (from its `register`).
    pub fn set_recipients(&self, plugin: &str, recipients: Recipients) {
        let _ = (plugin, recipients);
    }
}
