//! [`Plugin`]: the builder an author fills with subscriptions and callbacks, then runs; and
//! [`Setup`], what the setup hook fills at `hello` time.

use std::fmt;

use serde_json::{Map, Value};
use sgevents_protocol::{AlertRecipients, DEFAULT_MAX_IN_FLIGHT, Event};

use crate::context::{Context, Credentials};
use crate::error::Error;
use crate::log::Logger;
use crate::subscription::Subscription;

/// A callback: called once per event for its subscription.
pub(crate) type Callback = dyn Fn(&Context<'_>, &Event) -> Result<(), Error> + Send + Sync;

/// The setup hook: called once with the `hello` configuration.
type SetupHook = dyn FnOnce(&mut Setup, &Map<String, Value>) -> Result<(), Error> + Send;

/// A subscription and its callback.
pub(crate) struct Handler {
    pub(crate) subscription: sgevents_protocol::Subscription,
    pub(crate) callback: Box<Callback>,
}

/// A plugin: its subscriptions with their callbacks, its window, and its setup hooks.
///
/// Build it, then call [`run`](Plugin::run) from `main`. To test it, hand it to
/// [`testing::Harness`](crate::testing::Harness) instead.
pub struct Plugin {
    pub(crate) handlers: Vec<Handler>,
    pub(crate) max_in_flight: u32,
    pub(crate) alerts: Option<AlertRecipients>,
    pub(crate) setup: Vec<Box<SetupHook>>,
}

impl Plugin {
    /// A plugin with no subscriptions yet and a window of 1 (events strictly one after another).
    pub fn new() -> Plugin {
        Plugin {
            handlers: Vec::new(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            alerts: None,
            setup: Vec::new(),
        }
    }

    /// Calls `callback` for every event matching `subscription`.
    ///
    /// When several subscriptions match one event, their callbacks run in registration order
    /// (these first, then those of the setup hooks) and the first failure answers the event.
    pub fn on<S, F>(mut self, subscription: S, callback: F) -> Plugin
    where
        S: Into<Subscription>,
        F: Fn(&Context<'_>, &Event) -> Result<(), Error> + Send + Sync + 'static,
    {
        self.handlers.push(handler(subscription, callback));
        self
    }

    /// How many events may be in flight at once, 1 to 1024 (default 1). The SDK runs that many
    /// worker threads, so callbacks of different events may run concurrently when it is above 1.
    pub fn max_in_flight(mut self, max_in_flight: u32) -> Plugin {
        self.max_in_flight = max_in_flight;
        self
    }

    /// Who the daemon mails about this plugin's alerts (disabled, crash loop, failed events):
    /// `AlertRecipients::Default(true)` the daemon's configured recipients (also the default),
    /// `Default(false)` nobody, or `To(addresses)`. Sent in `register`.
    pub fn alerts(mut self, recipients: AlertRecipients) -> Plugin {
        self.alerts = Some(recipients);
        self
    }

    /// Runs `hook` at `hello` time with the plugin's configuration (`hello.config`), before the
    /// plugin registers: it may add subscriptions and set the window from the configuration.
    ///
    /// Hooks run in the order they were added. A hook that fails (or panics) makes the plugin
    /// answer `fatal` with the error and exit with status 125.
    pub fn setup<F>(mut self, hook: F) -> Plugin
    where
        F: FnOnce(&mut Setup, &Map<String, Value>) -> Result<(), Error> + Send + 'static,
    {
        self.setup.push(Box::new(hook));
        self
    }
}

impl Default for Plugin {
    fn default() -> Plugin {
        Plugin::new()
    }
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .handlers
            .iter()
            .map(|h| h.subscription.name.as_str())
            .collect();
        f.debug_struct("Plugin")
            .field("subscriptions", &names)
            .field("max_in_flight", &self.max_in_flight)
            .field("setup_hooks", &self.setup.len())
            .finish()
    }
}

fn handler<S, F>(subscription: S, callback: F) -> Handler
where
    S: Into<Subscription>,
    F: Fn(&Context<'_>, &Event) -> Result<(), Error> + Send + Sync + 'static,
{
    Handler {
        subscription: subscription.into().into_wire(),
        callback: Box::new(callback),
    }
}

/// What a setup hook fills: more subscriptions and the window, decided from the configuration.
pub struct Setup {
    pub(crate) handlers: Vec<Handler>,
    pub(crate) max_in_flight: u32,
    pub(crate) alerts: Option<AlertRecipients>,
    pub(crate) plugin: String,
    pub(crate) credentials: Option<Credentials>,
    pub(crate) logger: Logger,
}

impl Setup {
    /// Calls `callback` for every event matching `subscription`, like [`Plugin::on`].
    pub fn on<S, F>(&mut self, subscription: S, callback: F) -> &mut Setup
    where
        S: Into<Subscription>,
        F: Fn(&Context<'_>, &Event) -> Result<(), Error> + Send + Sync + 'static,
    {
        self.handlers.push(handler(subscription, callback));
        self
    }

    /// Sets the window, like [`Plugin::max_in_flight`].
    pub fn max_in_flight(&mut self, max_in_flight: u32) -> &mut Setup {
        self.max_in_flight = max_in_flight;
        self
    }

    /// Sets who gets the plugin's alerts, like [`Plugin::alerts`].
    pub fn alerts(&mut self, recipients: AlertRecipients) -> &mut Setup {
        self.alerts = Some(recipients);
        self
    }

    /// The plugin's name in the daemon's configuration (`hello.plugin`).
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// The ShotGrid credentials the daemon passed, if it passed them.
    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// The plugin's logger.
    pub fn log(&self) -> &Logger {
        &self.logger
    }
}

impl fmt::Debug for Setup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .handlers
            .iter()
            .map(|h| h.subscription.name.as_str())
            .collect();
        f.debug_struct("Setup")
            .field("plugin", &self.plugin)
            .field("subscriptions", &names)
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}
