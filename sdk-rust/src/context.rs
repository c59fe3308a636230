//! What a callback knows about its plugin and its event ([`Context`]), the ShotGrid
//! [`Credentials`] the daemon hands to every plugin, and the two things a context borrows from the
//! loop that runs it ([`Registered`], [`Emit`]), defined here so the loop depends on contexts and
//! not the other way round.

use std::fmt;
use std::time::Duration;

use serde_json::{Map, Value};
use sgevents_protocol::{EventDelivery, PluginMessage};

use crate::log::Logger;

/// What a plugin knows once registered; shared by the loop's workers, borrowed by each
/// [`Context`].
pub(crate) struct Registered {
    pub(crate) plugin: String,
    pub(crate) config: Map<String, Value>,
    pub(crate) credentials: Option<Credentials>,
    pub(crate) logger: Logger,
}

/// Writing a message from a [`Context`], which does not know the writer's type.
pub(crate) trait Emit: Send + Sync {
    /// Writes `message` as one line; false when the output is closed.
    fn emit(&self, message: &PluginMessage) -> bool;
}

/// What a callback gets besides the event: the plugin, the delivery, progress reports and a
/// logger.
///
/// A context lives for one callback call. It is `Send` and `Sync`, so a callback may hand it to
/// threads it scopes itself.
pub struct Context<'a> {
    session: &'a Registered,
    emit: &'a dyn Emit,
    delivery: &'a EventDelivery,
    subscription: &'a str,
}

impl<'a> Context<'a> {
    pub(crate) fn new(
        session: &'a Registered,
        emit: &'a dyn Emit,
        delivery: &'a EventDelivery,
        subscription: &'a str,
    ) -> Context<'a> {
        Context {
            session,
            emit,
            delivery,
            subscription,
        }
    }

    /// The plugin's name in the daemon's configuration (`hello.plugin`).
    pub fn plugin(&self) -> &str {
        &self.session.plugin
    }

    /// The plugin's own configuration table (`hello.config`), empty when it has none.
    pub fn config(&self) -> &Map<String, Value> {
        &self.session.config
    }

    /// The id of the event being handled (the `EventLogEntry` id).
    pub fn event_id(&self) -> i64 {
        self.delivery.event_id
    }

    /// 1 on the first delivery of this event, counting up with every redelivery.
    pub fn attempt(&self) -> u32 {
        self.delivery.attempt
    }

    /// How long the daemon waits for the answer or the next [`progress`](Context::progress)
    /// report, counted from when it sent the event (`deadline_ms`); past it the plugin is deemed
    /// hung and restarted.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.delivery.deadline_ms)
    }

    /// The name of the subscription whose callback is running.
    pub fn subscription(&self) -> &str {
        self.subscription
    }

    /// The names of every subscription of this plugin that matched the event, in the order their
    /// callbacks run; [`subscription`](Context::subscription) is one of them.
    pub fn subscriptions(&self) -> &[String] {
        &self.delivery.subscriptions
    }

    /// Tells the daemon that work on this event goes on, which gives it a new deadline. Written at
    /// once.
    pub fn progress(&self) {
        self.emit.emit(&PluginMessage::Progress {
            event_id: self.delivery.event_id,
        });
    }

    /// The plugin's logger.
    pub fn log(&self) -> &Logger {
        &self.session.logger
    }

    /// The ShotGrid credentials the daemon passed in the environment, if it passed them.
    pub fn credentials(&self) -> Option<&Credentials> {
        self.session.credentials.as_ref()
    }
}

impl fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("plugin", &self.plugin())
            .field("event_id", &self.event_id())
            .field("attempt", &self.attempt())
            .field("subscription", &self.subscription)
            .finish_non_exhaustive()
    }
}

/// The environment variable holding the ShotGrid site's URL.
pub(crate) const SITE_URL_VAR: &str = "SGEVENTS_SITE_URL";
/// The environment variable holding the script (API user) name.
pub(crate) const SCRIPT_NAME_VAR: &str = "SGEVENTS_SCRIPT_NAME";
/// The environment variable holding the script's key.
pub(crate) const SCRIPT_KEY_VAR: &str = "SGEVENTS_SCRIPT_KEY";

/// A ShotGrid site and the script (API user) a plugin connects as.
///
/// [`Plugin::run`](crate::Plugin::run) reads them once at start from `SGEVENTS_SITE_URL`,
/// `SGEVENTS_SCRIPT_NAME` and `SGEVENTS_SCRIPT_KEY`, which the daemon sets: all three or none.
/// The key never appears in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    site_url: String,
    script_name: String,
    script_key: String,
}

impl Credentials {
    /// Credentials from their three parts (for tests; plugins get theirs from the daemon).
    pub fn new(
        site_url: impl Into<String>,
        script_name: impl Into<String>,
        script_key: impl Into<String>,
    ) -> Credentials {
        Credentials {
            site_url: site_url.into(),
            script_name: script_name.into(),
            script_key: script_key.into(),
        }
    }

    /// The site, such as `https://studio.shotgrid.autodesk.com`.
    pub fn site_url(&self) -> &str {
        &self.site_url
    }

    /// The script (API user) name.
    pub fn script_name(&self) -> &str {
        &self.script_name
    }

    /// The script's key. Keep it out of logs and error messages.
    pub fn script_key(&self) -> &str {
        &self.script_key
    }

    /// Reads the three variables through `var`, which returns a variable's value when it is set.
    /// An empty value counts as unset. Some but not all of them set is an error naming the missing
    /// ones.
    pub(crate) fn from_vars(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Credentials>, String> {
        let get = |name: &str| var(name).filter(|value| !value.is_empty());
        match (get(SITE_URL_VAR), get(SCRIPT_NAME_VAR), get(SCRIPT_KEY_VAR)) {
            (Some(site_url), Some(script_name), Some(script_key)) => Ok(Some(Credentials {
                site_url,
                script_name,
                script_key,
            })),
            (None, None, None) => Ok(None),
            (url, name, key) => {
                let missing: Vec<&str> = [
                    (SITE_URL_VAR, url.is_none()),
                    (SCRIPT_NAME_VAR, name.is_none()),
                    (SCRIPT_KEY_VAR, key.is_none()),
                ]
                .into_iter()
                .filter_map(|(var, missing)| missing.then_some(var))
                .collect();
                Err(format!(
                    "ignoring the ShotGrid credentials in the environment: {} not set\nhint: the \
                     daemon sets {SITE_URL_VAR}, {SCRIPT_NAME_VAR} and {SCRIPT_KEY_VAR} together; \
                     set all three or none",
                    missing.join(" and ")
                ))
            }
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("site_url", &self.site_url)
            .field("script_name", &self.script_name)
            .field("script_key", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<Option<Credentials>, String> {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Credentials::from_vars(|name| env.get(name).cloned())
    }

    #[test]
    fn all_three_or_none() {
        let full = read(&[
            (SITE_URL_VAR, "https://studio.example"),
            (SCRIPT_NAME_VAR, "sgevents"),
            (SCRIPT_KEY_VAR, "s3cr3t"),
            ("UNRELATED", "x"),
        ]);
        assert_eq!(
            full,
            Ok(Some(Credentials::new(
                "https://studio.example",
                "sgevents",
                "s3cr3t"
            )))
        );
        assert_eq!(read(&[]), Ok(None));
        assert_eq!(
            read(&[(SITE_URL_VAR, ""), (SCRIPT_NAME_VAR, "")]),
            Ok(None),
            "empty counts as unset"
        );
    }

    #[test]
    fn partial_credentials_name_what_is_missing() {
        let err = read(&[
            (SITE_URL_VAR, "https://studio.example"),
            (SCRIPT_NAME_VAR, "sgevents"),
        ])
        .expect_err("the key is missing");
        assert!(err.contains("SGEVENTS_SCRIPT_KEY not set"), "{err}");
        let err = read(&[(SCRIPT_KEY_VAR, "s3cr3t")]).expect_err("two are missing");
        assert!(
            err.contains("SGEVENTS_SITE_URL and SGEVENTS_SCRIPT_NAME not set"),
            "{err}"
        );
        assert!(!err.contains("s3cr3t"), "{err}");
    }

    #[test]
    fn debug_redacts_the_key() {
        let text = format!(
            "{:?}",
            Credentials::new("https://studio.example", "sgevents", "s3cr3t")
        );
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(
            text.contains("sgevents") && text.contains("<redacted>"),
            "{text}"
        );
    }
}
