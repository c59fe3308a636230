//! Email alerts: what the daemon mails, to whom, and how often.
//!
//! # Theory of operation
//!
//! An [`Alerts`] handle is cheap to clone and is held by every plugin actor and the source. Its
//! [`Alerts::send`] stamps the alert and `try_send`s it into a bounded queue: it never waits, and
//! when the queue is full the alert is counted as dropped and the next mail says how many were.
//! One background task (started by [`Alerts::start`]) owns the SMTP transport and everything else:
//!
//! ```text
//!  actors, source ──send()──▶ bounded queue ──▶ worker: recipients ─▶ Limiter ─▶ outbox ─▶ SMTP
//!                                                 ▲ overrides from register     (one mail in flight)
//! ```
//!
//! - **Recipients.** A plugin's alert goes to what its `register` asked for
//!   ([`Alerts::set_recipients`]), else to its `alert_to`, else to `alerts.to`; the source's go to
//!   `alerts.to`. An empty set mails nobody.
//! - **Rate limit, per recipient set** (`Limiter`). The first alert for a set goes out at once and
//!   opens a window of `rate_limit`; what comes for that set within the window is held and mailed
//!   as one digest when the window ends, which opens the next window. A quiet window closes, and the
//!   next alert goes out at once again.
//! - **A dead or failing mail server never stalls anything.** Each mail has [`SEND_TIMEOUT`] in all;
//!   while one is in flight the worker keeps taking alerts off the queue. A mail that fails is
//!   logged as a warning with a hint and put back: its alerts join the next digest for the same
//!   recipients, retried after a backoff.
//! - **Stopping.** [`Alerts::shutdown`] turns everything held into digests and sends them, for at
//!   most [`SHUTDOWN_WAIT`]; what could not be sent is counted in a warning.
//! - **Reloading.** [`Alerts::reconfigure`] hands the worker the new server, recipients, prefix and
//!   rate limit, in queue order: alerts raised before the reload go as the old configuration said.
//!
//! [`check`] (connect and sign in) and [`send_test`] (one mail, at once) are for trying a setup.
//!
//! Mails never carry secrets: the SMTP password and every ShotGrid script key of the configuration
//! are replaced by `<redacted>` wherever they appear (a plugin's error message could quote one).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::sync::{mpsc, oneshot};

use crate::config::{AlertsConfig, Config};

mod letter;
mod limiter;
mod smtp;
#[cfg(test)]
mod tests;
mod worker;

use letter::{Letter, Text, clip};
use limiter::Limiter;
use smtp::{hint, hint_general, hint_timeout, hostname, transport};
use worker::{Route, Worker};

/// Alerts waiting for the worker; past this, [`Alerts::send`] drops and counts.
const QUEUE: usize = 1024;
/// The longest one mail may take, connection and TLS included.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest [`Alerts::shutdown`] waits for the last mails.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
/// The longest a connection to the mail server may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The first wait before a failed mail is tried again (or `rate_limit`, if shorter); it doubles up
/// to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_secs(30);
/// The longest wait between tries of a failing mail.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(15 * 60);
/// Alerts a digest lists; the rest are counted.
const MAX_LISTED: usize = 50;
/// Alerts held per recipient set while the mail server fails; the rest are counted.
const MAX_PENDING: usize = 500;
/// The longest reason or error quoted in a mail.
const MAX_TEXT: usize = 2000;

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

impl Alert {
    /// The plugin it is about; `None` for the source.
    pub fn plugin(&self) -> Option<&str> {
        match self {
            Alert::PluginDisabled { plugin, .. }
            | Alert::CrashLoop { plugin, .. }
            | Alert::EventFailed { plugin, .. } => Some(plugin),
            Alert::SourceFailing { .. } => None,
        }
    }

    /// What happened, in a few words, for a subject line (no free text from plugins).
    fn headline(&self) -> String {
        match self {
            Alert::PluginDisabled { plugin, .. } => format!("plugin {plugin} is disabled"),
            Alert::CrashLoop { plugin, .. } => {
                format!("plugin {plugin} crash-looped and is disabled")
            }
            Alert::EventFailed {
                plugin, event_id, ..
            } => format!("plugin {plugin} failed event {event_id}"),
            Alert::SourceFailing { since, .. } => format!(
                "the event source has been failing for {}",
                humantime::format_duration(Duration::from_secs(since.as_secs()))
            ),
        }
    }

    /// One line for a digest: the headline and the reason.
    fn line(&self) -> String {
        let (what, why) = match self {
            Alert::PluginDisabled { plugin, reason } => {
                (format!("plugin `{plugin}` is disabled"), reason)
            }
            Alert::CrashLoop { plugin, reason } => (
                format!("plugin `{plugin}` crash-looped and is disabled"),
                reason,
            ),
            Alert::EventFailed {
                plugin,
                event_id,
                error,
            } => (format!("plugin `{plugin}` failed event {event_id}"), error),
            Alert::SourceFailing { error, .. } => (self.headline(), error),
        };
        format!("{what}: {}", clip(why))
    }

    /// What the operator can do, as commands of the `sgevents` CLI (after `sgevents -c FILE`);
    /// `alone`: the only alert of its mail, so a command may name its event.
    fn commands(&self, alone: bool) -> Vec<String> {
        match self {
            Alert::PluginDisabled { plugin, .. } | Alert::CrashLoop { plugin, .. } => {
                vec!["status".to_owned(), format!("plugin enable {plugin}")]
            }
            Alert::EventFailed {
                plugin, event_id, ..
            } => vec![
                format!("failed list {plugin}"),
                if alone {
                    format!("failed retry {plugin} --event {event_id}")
                } else {
                    format!("failed retry {plugin}")
                },
            ],
            Alert::SourceFailing { .. } => vec!["status".to_owned()],
        }
    }

    /// The kind, for a digest's counts: (singular, plural).
    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            Alert::PluginDisabled { .. } => ("plugin disabled", "plugins disabled"),
            Alert::CrashLoop { .. } => ("crash loop", "crash loops"),
            Alert::EventFailed { .. } => ("failed event", "failed events"),
            Alert::SourceFailing { .. } => ("source outage", "source outages"),
        }
    }
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

impl From<sgevents_protocol::AlertRecipients> for Recipients {
    fn from(wire: sgevents_protocol::AlertRecipients) -> Recipients {
        match wire {
            sgevents_protocol::AlertRecipients::Default(true) => Recipients::Configured,
            sgevents_protocol::AlertRecipients::Default(false) => Recipients::Nobody,
            sgevents_protocol::AlertRecipients::To(list) => Recipients::To(list),
        }
    }
}

/// Alerts cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    /// The TLS settings of the mail server cannot be built (a bad `ca_file`).
    #[error(
        "cannot set up TLS for the mail server `{host}`: {error}\nhint: check `alerts.ca_file`: it must be a PEM file of certificate authorities"
    )]
    Tls {
        /// `alerts.smtp_host`.
        host: String,
        /// What went wrong.
        error: String,
    },
}

/// A handle on the alert sender; cheap to clone, never blocks.
#[derive(Debug, Clone, Default)]
pub struct Alerts {
    inner: Option<Arc<Shared>>,
}

/// What the handles share with the worker.
#[derive(Debug)]
struct Shared {
    tx: mpsc::Sender<Command>,
    /// Alerts dropped on a full queue since the last mail was composed.
    dropped: AtomicU64,
    /// Plugins' own choices from `register`.
    overrides: Mutex<BTreeMap<String, Recipients>>,
}

#[derive(Debug)]
enum Command {
    /// An alert, and who its plugin wanted it to go to when it was raised.
    Alert(Stamped, Recipients),
    /// A reloaded configuration.
    Reconfigure(Box<Settings>),
    Shutdown {
        deadline: Instant,
        done: oneshot::Sender<()>,
    },
}

/// What a reload changes in the worker.
struct Settings {
    /// `None`: keep the transport (there is no `[alerts]` table any more, so nothing is sent).
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    route: Route,
    text: Text,
    window: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("route", &self.route)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

/// An alert and when it was raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stamped {
    at: SystemTime,
    alert: Alert,
}

impl Alerts {
    /// A handle that sends nothing (no `[alerts]` section).
    pub fn none() -> Alerts {
        Alerts { inner: None }
    }

    /// Starts the background task that mails alerts as `config.alerts` says; a handle that sends
    /// nothing when there is no `[alerts]` table. Must be called inside the tokio runtime.
    pub fn start(config: &Config) -> Result<Alerts, AlertsError> {
        let Some(alerts) = &config.alerts else {
            return Ok(Alerts::none());
        };
        let host = hostname();
        let transport = transport(alerts, &host)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let shared = Arc::new(Shared {
            tx,
            dropped: AtomicU64::new(0),
            overrides: Mutex::new(BTreeMap::new()),
        });
        let worker = Worker {
            transport: Arc::new(transport),
            route: Route::of(config),
            text: Text::of(config, host),
            limiter: Limiter::new(alerts.rate_limit),
            shared: shared.clone(),
            in_flight_alerts: 0,
        };
        tracing::info!(
            server = %format!("{}:{}", alerts.smtp_host, alerts.smtp_port),
            to = %alerts.to.join(", "),
            rate_limit = %humantime::format_duration(alerts.rate_limit),
            "email alerts are on"
        );
        tokio::spawn(worker.run(rx));
        Ok(Alerts {
            inner: Some(shared),
        })
    }

    /// Applies a reloaded configuration: the server, the recipients (`to`, `alert_to`), the
    /// subject prefix and the rate limit. Alerts already queued go as the old configuration said.
    /// Email alerts cannot be turned on by a reload (the handles are already given out): that
    /// takes a restart; removing `[alerts]` turns them off. On an error the old settings stay.
    pub fn reconfigure(&self, config: &Config) -> Result<(), AlertsError> {
        let Some(shared) = &self.inner else {
            if config.alerts.is_some() {
                tracing::warn!(
                    "the new configuration has an [alerts] table, but email alerts were off when the daemon started\nhint: restart the daemon to turn them on"
                );
            }
            return Ok(());
        };
        let host = hostname();
        let settings = match &config.alerts {
            Some(alerts) => Settings {
                transport: Some(transport(alerts, &host)?),
                route: Route::of(config),
                text: Text::of(config, host),
                window: alerts.rate_limit,
            },
            None => {
                tracing::info!(
                    "the configuration has no [alerts] table any more: email alerts are off"
                );
                Settings {
                    transport: None,
                    route: Route::default(),
                    text: Text::of(config, host),
                    window: Duration::from_secs(10 * 60),
                }
            }
        };
        if let Err(mpsc::error::TrySendError::Full(command)) =
            shared.tx.try_send(Command::Reconfigure(Box::new(settings)))
        {
            let tx = shared.tx.clone();
            tokio::spawn(async move { tx.send(command).await });
        }
        Ok(())
    }

    /// Whether alerts go anywhere (there is an `[alerts]` table).
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Queues an alert; returns at once.
    pub fn send(&self, alert: Alert) {
        let Some(shared) = &self.inner else {
            return;
        };
        // The plugin's choice as it is now: an alert raised before a `register` that changes it
        // goes where the plugin wanted it then.
        let chosen = alert
            .plugin()
            .and_then(|p| {
                shared
                    .overrides
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(p)
                    .cloned()
            })
            .unwrap_or_default();
        let stamped = Stamped {
            at: SystemTime::now(),
            alert,
        };
        match shared.tx.try_send(Command::Alert(stamped, chosen)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                if shared.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(
                        "the alert queue is full ({QUEUE} alerts); dropping alerts until it drains\nhint: the next mail says how many were dropped; the daemon's log has every one of them"
                    );
                }
            }
            // Stopped: alerts raised while the daemon stops are in its log only.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Sets who gets the alerts of `plugin` (from its `register`).
    pub fn set_recipients(&self, plugin: &str, recipients: Recipients) {
        let Some(shared) = &self.inner else {
            return;
        };
        let recipients = match recipients {
            Recipients::To(list) if !list.is_empty() => {
                let (good, bad): (Vec<String>, Vec<String>) =
                    list.into_iter().partition(|a| a.parse::<Mailbox>().is_ok());
                if !bad.is_empty() {
                    tracing::warn!(
                        plugin,
                        "plugin `{plugin}` asked for alerts to addresses that are not email addresses: {}; ignoring them\nhint: fix the `alerts` list the plugin sends in `register`",
                        bad.join(", ")
                    );
                }
                if good.is_empty() {
                    Recipients::Configured
                } else {
                    Recipients::To(good)
                }
            }
            other => other,
        };
        shared
            .overrides
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(plugin.to_owned(), recipients);
    }

    /// Sends what is still held (as digests) and stops the worker, waiting at most
    /// [`SHUTDOWN_WAIT`]. Call it once, at daemon stop, after the actors and the source have ended.
    pub async fn shutdown(&self) {
        self.shutdown_within(SHUTDOWN_WAIT).await;
    }

    /// [`shutdown`](Alerts::shutdown), waiting at most `wait` (the tests' silent servers).
    pub(crate) async fn shutdown_within(&self, wait: Duration) {
        let Some(shared) = &self.inner else {
            return;
        };
        let deadline = Instant::now() + wait;
        let (done, finished) = oneshot::channel();
        let tell = shared.tx.send(Command::Shutdown { deadline, done });
        let until = tokio::time::Instant::from_std(deadline) + Duration::from_millis(500);
        if tokio::time::timeout_at(until, tell).await.is_ok() {
            let _ = tokio::time::timeout_at(until, finished).await;
        }
    }
}

/// Connects to the mail server and signs in, without sending anything: for `sgevents check`.
pub async fn check(config: &AlertsConfig) -> Result<String, String> {
    let transport = transport(config, &hostname()).map_err(|e| e.to_string())?;
    let server = format!("{}:{}", config.smtp_host, config.smtp_port);
    match tokio::time::timeout(SEND_TIMEOUT, transport.test_connection()).await {
        Ok(Ok(true)) => Ok(format!(
            "mail server {server}: connected{}",
            if config.credentials.is_some() {
                " and signed in"
            } else {
                ""
            }
        )),
        Ok(Ok(false)) => Err(format!(
            "mail server {server}: connected, but it does not answer NOOP\nhint: {}",
            hint_general()
        )),
        Ok(Err(e)) => Err(format!("mail server {server}: {e}\nhint: {}", hint(&e))),
        Err(_) => Err(format!(
            "mail server {server}: no answer within {}\nhint: {}",
            humantime::format_duration(SEND_TIMEOUT),
            hint_timeout()
        )),
    }
}

/// Sends one test mail to `alerts.to` at once, ignoring the rate limit: for trying a setup.
pub async fn send_test(config: &Config) -> Result<String, String> {
    let Some(alerts) = &config.alerts else {
        return Err(format!(
            "{}: there is no `[alerts]` table\nhint: add one naming the mail server (see the README)",
            config.file.display()
        ));
    };
    let host = hostname();
    let transport = transport(alerts, &host).map_err(|e| e.to_string())?;
    let text = Text::of(config, host);
    let letter = Letter {
        subject: format!("{} {}: test mail", text.prefix, text.host),
        body: format!(
            "This is a test mail from sgevents on {}, checking the [alerts] settings of {}.\n\nAlerts come from this address to: {} (and to what a plugin's `alert_to` or `register` names for its own alerts).\n",
            text.host,
            text.config_file.display(),
            alerts.to.join(", ")
        ),
    };
    let message = text
        .message(&alerts.to, &letter)
        .map_err(|e| format!("cannot compose the test mail: {e}"))?;
    match tokio::time::timeout(SEND_TIMEOUT, transport.send(message)).await {
        Ok(Ok(_)) => Ok(format!("sent a test mail to {}", alerts.to.join(", "))),
        Ok(Err(e)) => Err(format!(
            "cannot send the test mail: {e}\nhint: {}",
            hint(&e)
        )),
        Err(_) => Err(format!(
            "cannot send the test mail: no answer within {}\nhint: {}",
            humantime::format_duration(SEND_TIMEOUT),
            hint_timeout()
        )),
    }
}
