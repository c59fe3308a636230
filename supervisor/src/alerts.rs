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

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::{mpsc, oneshot};

use crate::config::{AlertsConfig, Config, SmtpTls, SourceConfig};

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
        let Some(shared) = &self.inner else {
            return;
        };
        let deadline = Instant::now() + SHUTDOWN_WAIT;
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

/// This machine's name, for subjects and `EHLO`.
fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

fn transport(
    config: &AlertsConfig,
    host: &str,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, AlertsError> {
    let tls_error = |error: String| AlertsError::Tls {
        host: config.smtp_host.clone(),
        error,
    };
    let parameters = || -> Result<TlsParameters, AlertsError> {
        let mut builder = TlsParameters::builder(config.smtp_host.clone());
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| tls_error(format!("cannot read `{}`: {e}", path.display())))?;
            let ca = Certificate::from_pem(&pem)
                .map_err(|e| tls_error(format!("`{}`: {e}", path.display())))?;
            builder = builder.add_root_certificate(ca);
        }
        builder.build_rustls().map_err(|e| tls_error(e.to_string()))
    };
    let tls = match config.tls {
        SmtpTls::StartTls => Tls::Required(parameters()?),
        SmtpTls::Implicit => Tls::Wrapper(parameters()?),
        SmtpTls::None => Tls::None,
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.smtp_host)
        .port(config.smtp_port)
        .tls(tls)
        .timeout(Some(CONNECT_TIMEOUT))
        .hello_name(ClientId::Domain(host.to_owned()));
    if let Some(c) = &config.credentials {
        builder = builder.credentials(Credentials::new(
            c.username.clone(),
            c.password.expose().to_owned(),
        ));
    }
    Ok(builder.build())
}

fn hint(e: &lettre::transport::smtp::Error) -> String {
    let code = e.status().map(|c| c.to_string()).unwrap_or_default();
    if e.is_timeout() {
        hint_timeout()
    } else if e.is_tls() {
        "check that `alerts.tls` fits the port (\"starttls\" on 587, \"implicit\" on 465) and that the server's certificate is trusted (`alerts.ca_file` for a private certificate authority)".to_owned()
    } else if code == "535" || code == "530" || code == "534" {
        "check the user name and password in the environment variables `alerts.username_env` and `alerts.password_env` name".to_owned()
    } else if e.is_permanent() {
        "the server refused the mail: check `alerts.from` and the recipients, and the server's log"
            .to_owned()
    } else {
        hint_general()
    }
}

fn hint_general() -> String {
    "check that `alerts.smtp_host` and `alerts.smtp_port` name a mail server that is up and reachable from this machine".to_owned()
}

fn hint_timeout() -> String {
    "check that `alerts.smtp_host` and `alerts.smtp_port` name a mail server that answers from this machine, and that `alerts.tls` fits the port (\"implicit\" on a STARTTLS port waits forever)".to_owned()
}

// ---------------------------------------------------------------------------------------------
// The worker.

/// Why a mail was not sent, and what to check.
#[derive(Debug)]
struct Failure {
    error: String,
    hint: String,
}

type InFlight = Pin<Box<dyn Future<Output = (Mail, Result<(), Failure>)> + Send>>;

struct Worker {
    transport: Arc<AsyncSmtpTransport<Tokio1Executor>>,
    route: Route,
    text: Text,
    limiter: Limiter,
    shared: Arc<Shared>,
    /// The alerts the mail in flight carries, for the count at stop.
    in_flight_alerts: usize,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut outbox: VecDeque<Mail> = VecDeque::new();
        let mut in_flight: Option<InFlight> = None;
        loop {
            if in_flight.is_none() {
                if let Some(mail) = outbox.pop_front() {
                    self.in_flight_alerts = mail.alerts.len();
                    in_flight = Some(self.deliver(mail));
                }
            }
            let next = self.limiter.next_due();
            tokio::select! {
                command = rx.recv() => match command {
                    Some(Command::Alert(stamped, chosen)) => {
                        if let Some(mail) = self.offer(stamped, &chosen) {
                            outbox.push_back(mail);
                        }
                    }
                    Some(Command::Reconfigure(settings)) => self.reconfigure(*settings),
                    Some(Command::Shutdown { deadline, done }) => {
                        self.finish(&mut rx, outbox, in_flight, deadline).await;
                        let _ = done.send(());
                        return;
                    }
                    // Every handle is gone without a shutdown: nothing more will come.
                    None => return,
                },
                () = sleep_until(next), if next.is_some() => {
                    outbox.extend(self.due(Instant::now()));
                }
                (mail, result) = poll(&mut in_flight), if in_flight.is_some() => {
                    in_flight = None;
                    self.in_flight_alerts = 0;
                    match result {
                        Ok(()) => self.limiter.sent(&mail.to),
                        Err(Failure { error, hint }) => {
                            let to = mail.to.join(", ");
                            let count = mail.alerts.len();
                            let wait = self.limiter.failed(Instant::now(), mail);
                            // Whole seconds, rounded up: "30s", not "29s 999ms 812us".
                            let wait = Duration::from_secs(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
                            tracing::warn!(
                                "cannot mail {count} alert(s) to {to}: {error}; trying again in {} with what comes meanwhile\nhint: {hint}",
                                humantime::format_duration(wait)
                            );
                        }
                    }
                }
            }
        }
    }

    fn reconfigure(&mut self, settings: Settings) {
        if let Some(transport) = settings.transport {
            self.transport = Arc::new(transport);
        }
        self.route = settings.route;
        self.text = settings.text;
        self.limiter.window = settings.window;
        tracing::debug!(route = ?self.route, "email alerts reconfigured");
    }

    /// Routes an alert and offers it to the limiter; a mail to send at once, if any.
    fn offer(&mut self, stamped: Stamped, chosen: &Recipients) -> Option<Mail> {
        let to = self.route.recipients(&stamped.alert, chosen);
        if to.is_empty() {
            tracing::debug!(alert = ?stamped.alert, "an alert for nobody (the plugin or `alert_to` says so)");
            return None;
        }
        let mut mail = self.limiter.offer(Instant::now(), to, stamped)?;
        mail.dropped += self.shared.dropped.swap(0, Ordering::Relaxed);
        Some(mail)
    }

    fn due(&mut self, now: Instant) -> Vec<Mail> {
        let mut mails = self.limiter.due(now);
        if let Some(first) = mails.first_mut() {
            first.dropped += self.shared.dropped.swap(0, Ordering::Relaxed);
        }
        mails
    }

    /// Sends one mail; the future owns what it needs, so the worker goes on meanwhile.
    fn deliver(&self, mail: Mail) -> InFlight {
        let letter = self.text.letter(&mail, self.limiter.window);
        let message = self.text.message(&mail.to, &letter);
        let transport = self.transport.clone();
        Box::pin(async move {
            let message = match message {
                Ok(m) => m,
                Err(e) => {
                    let failure = Failure {
                        error: format!("cannot compose the mail: {e}"),
                        hint: "check `alerts.from` and the recipients' addresses".to_owned(),
                    };
                    return (mail, Err(failure));
                }
            };
            let result = match tokio::time::timeout(SEND_TIMEOUT, transport.send(message)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(Failure {
                    error: e.to_string(),
                    hint: hint(&e),
                }),
                Err(_) => Err(Failure {
                    error: format!(
                        "no answer within {}",
                        humantime::format_duration(SEND_TIMEOUT)
                    ),
                    hint: hint_timeout(),
                }),
            };
            (mail, result)
        })
    }

    /// At stop: everything held becomes a mail, and they go out until `deadline`.
    async fn finish(
        &mut self,
        rx: &mut mpsc::Receiver<Command>,
        mut outbox: VecDeque<Mail>,
        in_flight: Option<InFlight>,
        deadline: Instant,
    ) {
        while let Ok(command) = rx.try_recv() {
            if let Command::Alert(stamped, chosen) = command {
                if let Some(mail) = self.offer(stamped, &chosen) {
                    outbox.push_back(mail);
                }
            }
        }
        outbox.extend(self.limiter.drain());
        if let Some(first) = outbox.front_mut() {
            first.dropped += self.shared.dropped.swap(0, Ordering::Relaxed);
        }
        let mut unsent: usize =
            outbox.iter().map(|m| m.alerts.len()).sum::<usize>() + self.in_flight_alerts;
        let work = async {
            let mut in_flight = in_flight;
            loop {
                let current = match in_flight.take() {
                    Some(f) => f,
                    None => match outbox.pop_front() {
                        Some(mail) => self.deliver(mail),
                        None => break,
                    },
                };
                let (mail, result) = current.await;
                match result {
                    Ok(()) => unsent = unsent.saturating_sub(mail.alerts.len()),
                    Err(Failure { error, hint }) => tracing::warn!(
                        "cannot mail {} alert(s) to {} while stopping: {error}\nhint: {hint}",
                        mail.alerts.len(),
                        mail.to.join(", ")
                    ),
                }
            }
        };
        let in_time = tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), work).await;
        if in_time.is_err() || unsent > 0 {
            tracing::warn!(
                "{unsent} alert(s) were not mailed before stopping\nhint: the daemon's log has each of them; check the mail server (`alerts.smtp_host`)"
            );
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

async fn poll(in_flight: &mut Option<InFlight>) -> (Mail, Result<(), Failure>) {
    match in_flight {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

// ---------------------------------------------------------------------------------------------
// Routing: who gets an alert.

/// The configured recipients: `alerts.to`, and each plugin's `alert_to`.
#[derive(Debug, Clone, Default)]
struct Route {
    to: Vec<String>,
    plugins: BTreeMap<String, Vec<String>>,
}

impl Route {
    fn of(config: &Config) -> Route {
        Route {
            to: config
                .alerts
                .as_ref()
                .map(|a| a.to.clone())
                .unwrap_or_default(),
            plugins: config
                .plugins
                .iter()
                .filter_map(|p| Some((p.name.clone(), p.alert_to.clone()?)))
                .collect(),
        }
    }

    /// The recipient set of an alert, sorted and without duplicates: what its plugin `chose` in
    /// `register`, else `alert_to`, else `alerts.to`. Empty: nobody.
    fn recipients(&self, alert: &Alert, chosen: &Recipients) -> Vec<String> {
        let list = match alert.plugin() {
            None => &self.to,
            Some(plugin) => match chosen {
                Recipients::Nobody => return Vec::new(),
                Recipients::To(list) => list,
                Recipients::Configured => self.plugins.get(plugin).unwrap_or(&self.to),
            },
        };
        list.iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The rate limiter: pure data, driven by explicit instants.

/// A mail to send: to whom, and the alerts it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mail {
    to: Vec<String>,
    alerts: Vec<Stamped>,
    /// Alerts held beyond [`MAX_PENDING`], counted only.
    omitted: u64,
    /// Alerts dropped on a full queue, counted only.
    dropped: u64,
}

/// The rate limit of one recipient set.
#[derive(Debug)]
struct Slot {
    /// Until when alerts are held; the digest goes out then.
    open_until: Instant,
    pending: Vec<Stamped>,
    omitted: u64,
    dropped: u64,
    /// Failed tries in a row, for the backoff.
    failures: u32,
}

/// One mail at once per recipient set, then one digest per window.
#[derive(Debug)]
pub(crate) struct Limiter {
    window: Duration,
    slots: BTreeMap<Vec<String>, Slot>,
}

impl Limiter {
    pub(crate) fn new(window: Duration) -> Limiter {
        Limiter {
            window,
            slots: BTreeMap::new(),
        }
    }

    /// An alert for `to` at `now`: a mail to send at once, or `None` if it is held for a digest.
    pub(crate) fn offer(&mut self, now: Instant, to: Vec<String>, alert: Stamped) -> Option<Mail> {
        match self.slots.get_mut(&to) {
            Some(slot) if slot.open_until > now || !slot.pending.is_empty() => {
                hold(slot, alert);
                None
            }
            _ => {
                self.slots.insert(
                    to.clone(),
                    Slot {
                        open_until: now + self.window,
                        pending: Vec::new(),
                        omitted: 0,
                        dropped: 0,
                        failures: 0,
                    },
                );
                Some(Mail {
                    to,
                    alerts: vec![alert],
                    omitted: 0,
                    dropped: 0,
                })
            }
        }
    }

    /// The digests whose window has ended by `now`; each opens the next window. Quiet windows
    /// close.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<Mail> {
        let mut mails = Vec::new();
        self.slots.retain(|to, slot| {
            if slot.open_until > now {
                return true;
            }
            if slot.pending.is_empty() {
                return false;
            }
            slot.open_until = now + self.window;
            mails.push(take(to, slot));
            true
        });
        mails
    }

    /// When the next digest is due, if any alert is held.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.slots
            .values()
            .filter(|s| !s.pending.is_empty())
            .map(|s| s.open_until)
            .min()
    }

    /// A mail could not be sent: its alerts are held again, before those that came since, and
    /// tried with them after a backoff (30 s, or the window if shorter, doubling up to 15 min).
    /// Returns the wait.
    pub(crate) fn failed(&mut self, now: Instant, mail: Mail) -> Duration {
        let slot = self.slots.entry(mail.to).or_insert_with(|| Slot {
            open_until: now,
            pending: Vec::new(),
            omitted: 0,
            dropped: 0,
            failures: 0,
        });
        slot.failures += 1;
        let mut pending = mail.alerts;
        pending.append(&mut slot.pending);
        if pending.len() > MAX_PENDING {
            slot.omitted += (pending.len() - MAX_PENDING) as u64;
            pending.truncate(MAX_PENDING);
        }
        slot.pending = pending;
        slot.omitted += mail.omitted;
        slot.dropped += mail.dropped;
        let wait = FIRST_RETRY_DELAY
            .min(self.window)
            .saturating_mul(1 << (slot.failures - 1).min(10))
            .min(MAX_RETRY_DELAY);
        // A failed mail does not wait for the end of its window: nothing reached the recipients.
        slot.open_until = now + wait;
        wait
    }

    /// A mail to `to` went out: the backoff starts over.
    pub(crate) fn sent(&mut self, to: &[String]) {
        if let Some(slot) = self.slots.get_mut(to) {
            slot.failures = 0;
        }
    }

    /// Everything held, as mails (at stop).
    pub(crate) fn drain(&mut self) -> Vec<Mail> {
        let slots = std::mem::take(&mut self.slots);
        slots
            .into_iter()
            .filter(|(_, s)| !s.pending.is_empty())
            .map(|(to, mut slot)| take(&to, &mut slot))
            .collect()
    }
}

fn hold(slot: &mut Slot, alert: Stamped) {
    if slot.pending.len() < MAX_PENDING {
        slot.pending.push(alert);
    } else {
        slot.omitted += 1;
    }
}

fn take(to: &[String], slot: &mut Slot) -> Mail {
    Mail {
        to: to.to_vec(),
        alerts: std::mem::take(&mut slot.pending),
        omitted: std::mem::take(&mut slot.omitted),
        dropped: std::mem::take(&mut slot.dropped),
    }
}

// ---------------------------------------------------------------------------------------------
// The text of the mails.

/// A composed mail: subject and plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Letter {
    subject: String,
    body: String,
}

/// What every mail needs to know about the daemon.
#[derive(Debug, Clone)]
struct Text {
    prefix: String,
    host: String,
    from: String,
    /// The configuration file, absolute, for the commands the mails suggest.
    config_file: PathBuf,
    /// Strings never to be mailed: the SMTP password and the ShotGrid script keys.
    secrets: Vec<String>,
}

impl Text {
    fn of(config: &Config, host: String) -> Text {
        let mut secrets = Vec::new();
        if let Some(c) = config.alerts.as_ref().and_then(|a| a.credentials.as_ref()) {
            secrets.push(c.password.expose().to_owned());
        }
        if let SourceConfig::Shotgrid(s) = &config.source {
            secrets.push(s.script_key.expose().to_owned());
        }
        for p in &config.plugins {
            if let Some(c) = &p.credentials {
                secrets.push(c.script_key.expose().to_owned());
            }
        }
        // A very short "secret" would redact ordinary words; such a key is no protection anyway.
        secrets.retain(|s| s.len() >= 4);
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let config_file =
            std::fs::canonicalize(&config.file).unwrap_or_else(|_| config.file.clone());
        let alerts = config.alerts.as_ref();
        Text {
            prefix: alerts.map_or_else(|| "[sgevents]".to_owned(), |a| a.subject_prefix.clone()),
            host,
            from: alerts.map(|a| a.from.clone()).unwrap_or_default(),
            config_file,
            secrets,
        }
    }

    fn redact(&self, text: &str) -> String {
        self.secrets
            .iter()
            .fold(text.to_owned(), |t, s| t.replace(s.as_str(), "<redacted>"))
    }

    /// The subject and body of a mail.
    fn letter(&self, mail: &Mail, window: Duration) -> Letter {
        let cli = format!("sgevents -c {}", self.config_file.display());
        let mut commands: Vec<String> = Vec::new();
        let alone = mail.alerts.len() == 1;
        for s in &mail.alerts {
            for c in s.alert.commands(alone) {
                let c = format!("{cli} {c}");
                if !commands.contains(&c) {
                    commands.push(c);
                }
            }
        }
        let (subject, mut body) = if let ([one], 0) = (mail.alerts.as_slice(), mail.omitted) {
            let subject = format!("{} {}: {}", self.prefix, self.host, one.alert.headline());
            (subject, self.single(one))
        } else {
            self.digest(mail, window)
        };
        if mail.dropped > 0 {
            body.push_str(&format!(
                "\n{} more alert(s) were dropped because they came faster than the daemon could queue them; the daemon's log has each of them.\n",
                mail.dropped
            ));
        }
        body.push_str("\nWhat to do next:\n");
        for c in &commands {
            body.push_str(&format!("  {c}\n"));
        }
        body.push_str(&format!(
            "\n-- \nsgevents on {}, configuration {}.\nTo change who gets these mails, edit [alerts] `to`, or `alert_to` in a plugin's table.\n",
            self.host,
            self.config_file.display()
        ));
        Letter {
            subject: self.redact(&subject),
            body: self.redact(&body),
        }
    }

    fn single(&self, one: &Stamped) -> String {
        let at = humantime::format_rfc3339_seconds(one.at);
        let (what, why, meaning) = match &one.alert {
            Alert::PluginDisabled { plugin, reason } => (
                format!("Plugin `{plugin}` on {} was disabled at {at}.", self.host),
                format!("Reason: {}", clip(reason)),
                "It receives no events until it is enabled again. Its position is kept: nothing after it is skipped, and it resumes where it stopped. Read its log lines before this moment in the daemon's log, fix the cause, then enable it.",
            ),
            Alert::CrashLoop { plugin, reason } => (
                format!(
                    "Plugin `{plugin}` on {} kept crashing and was disabled at {at}.",
                    self.host
                ),
                format!("Last crash: {}", clip(reason)),
                "It receives no events until it is enabled again. Its position is kept: nothing after it is skipped. Read its log lines (its stderr) in the daemon's log, fix the cause, then enable it.",
            ),
            Alert::EventFailed {
                plugin,
                event_id,
                error,
            } => (
                format!(
                    "Plugin `{plugin}` on {} gave up on event {event_id} at {at}.",
                    self.host
                ),
                format!("Error: {}", clip(error)),
                "The plugin moved on to the next events. This one is kept in failed_events, and the journal keeps it until it is retried or dropped: once the cause is fixed, retry it.",
            ),
            Alert::SourceFailing { since, error } => (
                format!(
                    "The event source of sgevents on {} has been failing for {} (as of {at}).",
                    self.host,
                    humantime::format_duration(Duration::from_secs(since.as_secs()))
                ),
                format!("Last error: {}", clip(error)),
                "Plugins go on with what is already journaled. The source keeps retrying and, once it can read again, catches up from where it stopped: nothing is lost. Check the site's status, the network and the proxy from this machine; the daemon's log has each failure with a hint.",
            ),
        };
        format!("{what}\n\n{why}\n\n{meaning}\n")
    }

    fn digest(&self, mail: &Mail, window: Duration) -> (String, String) {
        let total = mail.alerts.len() as u64 + mail.omitted;
        let mut counts: Vec<(&str, &str, usize)> = Vec::new();
        for s in &mail.alerts {
            let (one, many) = s.alert.kind();
            match counts.iter_mut().find(|c| c.0 == one) {
                Some(c) => c.2 += 1,
                None => counts.push((one, many, 1)),
            }
        }
        let summary = counts
            .iter()
            .map(|(one, many, n)| format!("{n} {}", if *n == 1 { one } else { many }))
            .collect::<Vec<_>>()
            .join(", ");
        let subject = format!(
            "{} {}: {total} alerts ({summary}{})",
            self.prefix,
            self.host,
            if mail.omitted > 0 { ", ..." } else { "" }
        );
        let mut body = format!(
            "{total} alerts from sgevents on {}. To keep mail down, these recipients get at most one mail per {}: what comes in between is collected in one digest like this one.\n\n",
            self.host,
            humantime::format_duration(window)
        );
        for s in mail.alerts.iter().take(MAX_LISTED) {
            body.push_str(&format!(
                "- {}  {}\n",
                humantime::format_rfc3339_seconds(s.at),
                s.alert.line()
            ));
        }
        let unlisted = mail.alerts.len().saturating_sub(MAX_LISTED) as u64 + mail.omitted;
        if unlisted > 0 {
            body.push_str(&format!(
                "- and {unlisted} more, not listed here (the daemon's log has each of them)\n"
            ));
        }
        (subject, body)
    }

    fn message(&self, to: &[String], letter: &Letter) -> Result<Message, String> {
        let from: Mailbox = self
            .from
            .parse()
            .map_err(|e| format!("`alerts.from` = `{}`: {e}", self.from))?;
        let mut builder = Message::builder()
            .from(from)
            .subject(letter.subject.clone())
            .message_id(Some(format!(
                "<{:016x}.{}@{}>",
                fastrand::u64(..),
                std::process::id(),
                self.host
            )));
        for address in to {
            let mailbox: Mailbox = address
                .parse()
                .map_err(|e| format!("`{address}` is not an email address: {e}"))?;
            builder = builder.to(mailbox);
        }
        builder
            .header(ContentType::TEXT_PLAIN)
            .body(letter.body.clone())
            .map_err(|e| e.to_string())
    }
}

/// A reason or error, cut to [`MAX_TEXT`] characters.
fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_TEXT) {
        Some((end, _)) => format!("{}... (cut)", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use sgevents_tests::smtp::{FakeSmtp, ServerTls, SmtpOptions};

    use super::*;
    use crate::config::{SmtpCredentials, parse};

    const MINUTE: Duration = Duration::from_secs(60);

    fn failed(plugin: &str, event_id: i64) -> Stamped {
        Stamped {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000),
            alert: Alert::EventFailed {
                plugin: plugin.to_owned(),
                event_id,
                error: format!("cannot do event {event_id}"),
            },
        }
    }

    fn to(addresses: &[&str]) -> Vec<String> {
        addresses.iter().map(|a| (*a).to_owned()).collect()
    }

    fn ids(mail: &Mail) -> Vec<i64> {
        mail.alerts
            .iter()
            .map(|s| match s.alert {
                Alert::EventFailed { event_id, .. } => event_id,
                _ => -1,
            })
            .collect()
    }

    #[test]
    fn the_first_alert_goes_at_once_and_the_rest_of_the_window_becomes_one_digest() {
        let t0 = Instant::now();
        let ops = to(&["ops@studio.example"]);
        let mut l = Limiter::new(10 * MINUTE);
        let first = l.offer(t0, ops.clone(), failed("a", 1)).expect("at once");
        assert_eq!((first.to.clone(), ids(&first)), (ops.clone(), vec![1]));
        for (i, id) in (2..=5).enumerate() {
            let at = t0 + Duration::from_secs(10 * (i as u64 + 1));
            assert_eq!(l.offer(at, ops.clone(), failed("a", id)), None, "held");
        }
        assert_eq!(l.next_due(), Some(t0 + 10 * MINUTE));
        assert!(
            l.due(t0 + 9 * MINUTE).is_empty(),
            "nothing before the window ends"
        );
        let digests = l.due(t0 + 10 * MINUTE);
        assert_eq!(digests.len(), 1);
        assert_eq!(ids(&digests[0]), [2, 3, 4, 5]);
        assert_eq!(l.next_due(), None, "nothing held any more");

        // The digest opened the next window: what comes in it waits for its end.
        let t1 = t0 + 10 * MINUTE;
        assert_eq!(l.offer(t1 + MINUTE, ops.clone(), failed("a", 6)), None);
        assert_eq!(l.next_due(), Some(t1 + 10 * MINUTE));
        let digests = l.due(t1 + 10 * MINUTE);
        assert_eq!(ids(&digests[0]), [6]);

        // A quiet window closes: the next alert goes out at once again.
        let t2 = t1 + 10 * MINUTE;
        assert!(l.due(t2 + 10 * MINUTE).is_empty());
        assert!(l.slots.is_empty(), "the quiet window was closed");
        let again = l
            .offer(t2 + 11 * MINUTE, ops.clone(), failed("a", 7))
            .expect("at once after a quiet window");
        assert_eq!(ids(&again), [7]);
    }

    #[test]
    fn a_late_alert_after_a_window_with_no_digest_goes_at_once() {
        let t0 = Instant::now();
        let ops = to(&["ops@studio.example"]);
        let mut l = Limiter::new(MINUTE);
        assert!(l.offer(t0, ops.clone(), failed("a", 1)).is_some());
        // No `due` call in between: the expired, empty window does not hold the next alert.
        assert!(l.offer(t0 + 2 * MINUTE, ops, failed("a", 2)).is_some());
    }

    #[test]
    fn recipient_sets_are_limited_apart() {
        let t0 = Instant::now();
        let mut l = Limiter::new(10 * MINUTE);
        let (ops, anim) = (to(&["ops@s.example"]), to(&["anim@s.example"]));
        assert!(l.offer(t0, ops.clone(), failed("a", 1)).is_some());
        assert!(
            l.offer(t0, anim.clone(), failed("b", 2)).is_some(),
            "another set is not held by the first"
        );
        assert!(l.offer(t0, ops.clone(), failed("a", 3)).is_none());
        assert!(l.offer(t0, anim.clone(), failed("b", 4)).is_none());
        let mut digests = l.due(t0 + 10 * MINUTE);
        digests.sort_by(|a, b| a.to.cmp(&b.to));
        assert_eq!(
            digests
                .iter()
                .map(|d| (d.to.clone(), ids(d)))
                .collect::<Vec<_>>(),
            [(anim, vec![4]), (ops, vec![3])]
        );
    }

    #[test]
    fn a_failed_mail_is_held_again_and_retried_with_backoff() {
        let t0 = Instant::now();
        let ops = to(&["ops@s.example"]);
        let mut l = Limiter::new(10 * MINUTE);
        let first = l.offer(t0, ops.clone(), failed("a", 1)).expect("at once");
        assert!(l.offer(t0 + MINUTE, ops.clone(), failed("a", 2)).is_none());
        // The first mail fails: it is tried again after 30 s, not at the end of its window.
        let t1 = t0 + MINUTE;
        assert_eq!(l.failed(t1, first), Duration::from_secs(30));
        assert_eq!(l.next_due(), Some(t1 + Duration::from_secs(30)));
        assert!(l.due(t1 + Duration::from_secs(29)).is_empty());
        let retry = l.due(t1 + Duration::from_secs(30));
        assert_eq!(
            ids(&retry[0]),
            [1, 2],
            "the failed alert comes first, with what came since"
        );
        // Failing again: 60 s, then 120 s.
        let t2 = t1 + Duration::from_secs(30);
        let retry = retry.into_iter().next().expect("one mail");
        assert_eq!(l.failed(t2, retry), Duration::from_secs(60));
        let retry = l.due(t2 + Duration::from_secs(60)).remove(0);
        assert_eq!(
            l.failed(t2 + Duration::from_secs(60), retry),
            Duration::from_secs(120)
        );
        let mut quick = Limiter::new(Duration::from_secs(2));
        let m = quick
            .offer(t0, ops.clone(), failed("a", 1))
            .expect("at once");
        let w1 = quick.failed(t0 + Duration::from_secs(2), m);
        assert_eq!(
            w1,
            Duration::from_secs(2),
            "the first retry after rate_limit when shorter than 30 s"
        );
        let m = quick.due(t0 + Duration::from_secs(4)).remove(0);
        let w2 = quick.failed(t0 + Duration::from_secs(4), m);
        assert_eq!(w2, Duration::from_secs(4), "then doubling");
        let m = quick.due(t0 + Duration::from_secs(8)).remove(0);
        quick.sent(&m.to);
        assert_eq!(
            quick.slots[&ops].failures, 0,
            "a sent mail resets the backoff"
        );
    }

    #[test]
    fn held_alerts_are_capped_and_the_rest_counted() {
        let t0 = Instant::now();
        let ops = to(&["ops@s.example"]);
        let mut l = Limiter::new(MINUTE);
        assert!(l.offer(t0, ops.clone(), failed("a", 0)).is_some());
        for id in 1..=(MAX_PENDING as i64 + 7) {
            assert!(l.offer(t0, ops.clone(), failed("a", id)).is_none());
        }
        let digest = l.due(t0 + MINUTE).remove(0);
        assert_eq!(digest.alerts.len(), MAX_PENDING);
        assert_eq!(digest.omitted, 7);
    }

    #[test]
    fn drain_gives_everything_held() {
        let t0 = Instant::now();
        let mut l = Limiter::new(MINUTE);
        let (ops, anim) = (to(&["ops@s.example"]), to(&["anim@s.example"]));
        assert!(l.offer(t0, ops.clone(), failed("a", 1)).is_some());
        assert!(l.offer(t0, ops.clone(), failed("a", 2)).is_none());
        assert!(l.offer(t0, anim.clone(), failed("b", 3)).is_some());
        let drained = l.drain();
        assert_eq!(drained.len(), 1, "only the set with held alerts");
        assert_eq!(ids(&drained[0]), [2]);
        assert!(l.slots.is_empty());
    }

    fn config(alerts: &str, plugins: &str) -> Config {
        let text = format!(
            "[source]\nkind = \"jsonl\"\npath = \"e.jsonl\"\n[alerts]\nsmtp_host = \"127.0.0.1\"\nfrom = \"sgevents@studio.example\"\n{alerts}\n{plugins}"
        );
        parse(Path::new("/etc/sgevents/sgevents.toml"), &text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn alerts_err(alerts: &str) -> String {
        let text = format!("[source]\nkind = \"jsonl\"\npath = \"e.jsonl\"\n[alerts]\n{alerts}\n");
        parse(Path::new("sgevents.toml"), &text)
            .expect_err("an invalid [alerts] table")
            .to_string()
    }

    #[test]
    fn alerts_config_defaults_and_ports() {
        let c = config("to = [\"ops@studio.example\"]", "");
        let a = c.alerts.expect("[alerts]");
        assert_eq!(a.smtp_host, "127.0.0.1");
        assert_eq!((a.tls, a.smtp_port), (SmtpTls::StartTls, 587));
        assert_eq!(a.subject_prefix, "[sgevents]");
        assert_eq!(a.rate_limit, 10 * MINUTE);
        assert_eq!(a.credentials, None);
        assert_eq!(a.to, ["ops@studio.example"]);
        let a = config("to = [\"o@s.example\"]\ntls = \"implicit\"", "")
            .alerts
            .expect("[alerts]");
        assert_eq!((a.tls, a.smtp_port), (SmtpTls::Implicit, 465));
        let a = config(
            "to = [\"Ops <o@s.example>\"]\ntls = \"none\"\nsubject_prefix = \"[render farm]\"\nrate_limit = \"2s\"",
            "",
        )
        .alerts
        .expect("[alerts]");
        assert_eq!((a.tls, a.smtp_port), (SmtpTls::None, 25));
        assert_eq!(a.subject_prefix, "[render farm]");
        assert_eq!(a.rate_limit, Duration::from_secs(2));
        let a = config("to = [\"o@s.example\"]\nsmtp_port = 2525", "")
            .alerts
            .expect("[alerts]");
        assert_eq!(a.smtp_port, 2525);
        assert!(
            parse(
                Path::new("x.toml"),
                "[source]\nkind = \"jsonl\"\npath = \"e\"\n"
            )
            .expect("valid")
            .alerts
            .is_none(),
            "no [alerts], no mail"
        );
    }

    #[test]
    fn alerts_credentials_come_from_the_environment_and_stay_secret() {
        // PATH is set in every environment a test runs in; its value stands in for a password.
        let path = std::env::var("PATH").expect("PATH is set");
        let c = config(
            "to = [\"o@s.example\"]\nusername_env = \"PATH\"\npassword_env = \"PATH\"",
            "",
        );
        let a = c.alerts.as_ref().expect("[alerts]");
        assert_eq!(
            a.credentials,
            Some(SmtpCredentials {
                username: path.clone(),
                password: crate::config::Secret::new(path.clone()),
            })
        );
        let shown = format!("{a:?}");
        assert!(
            shown.contains("<redacted>") && shown.matches(&path).count() == 1,
            "the password never shows in debug output: {shown}"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("sgevents.toml");
        std::fs::write(&file, "[source]\nkind = \"jsonl\"\npath = \"e\"\n[alerts]\nsmtp_host = \"h\"\nfrom = \"a@b.example\"\nto = [\"a@b.example\"]\nusername_env = \"SGEVENTS_TEST_NO_SUCH_VAR\"\npassword_env = \"SGEVENTS_TEST_NO_SUCH_VAR\"\n").expect("write");
        assert!(crate::config::load(&file).is_err(), "the daemon needs them");
        let c = crate::config::load_without_secrets(&file);
        assert!(
            c.is_ok(),
            "`status` works without the mail credentials: {c:?}"
        );
    }

    #[test]
    fn every_bad_alerts_value_says_what_to_do() {
        let base = "smtp_host = \"smtp.s.example\"\nfrom = \"sgevents@s.example\"\nto = [\"o@s.example\"]\n";
        let dir = tempfile::tempdir().expect("temp dir");
        let not_pem = dir.path().join("ca.txt");
        std::fs::write(&not_pem, "not a certificate\n").expect("write");
        let not_pem = not_pem.display().to_string();
        let cases: &[(&str, &str)] = &[
            (
                "from = \"a@b.example\"\nto = [\"a@b.example\"]",
                "`alerts.smtp_host` is missing",
            ),
            (
                "smtp_host = \"smtp://mail.example\"\nfrom = \"a@b.example\"\nto = [\"a@b.example\"]",
                "`alerts.smtp_host` = `\"smtp://mail.example\"`: not a host name",
            ),
            (
                "smtp_host = \"mail.example:587\"\nfrom = \"a@b.example\"\nto = [\"a@b.example\"]",
                "`alerts.smtp_host` = `\"mail.example:587\"`: not a host name",
            ),
            (
                &format!("{base}smtp_port = 0"),
                "`alerts.smtp_port` = `0`: out of range",
            ),
            (
                &format!("{base}smtp_port = 70000"),
                "`alerts.smtp_port` = `70000`: out of range",
            ),
            (
                &format!("{base}tls = \"ssl\""),
                "`alerts.tls` = `\"ssl\"`: unknown setting",
            ),
            (
                &format!("{base}username_env = \"U\""),
                "`[alerts]` sets only one of `username_env` and `password_env`",
            ),
            (
                &format!("{base}password_env = \"P\""),
                "`[alerts]` sets only one of `username_env` and `password_env`",
            ),
            (
                &format!(
                    "{base}username_env = \"SGEVENTS_TEST_NO_SUCH_VAR\"\npassword_env = \"PATH\""
                ),
                "`alerts.username_env` = `\"SGEVENTS_TEST_NO_SUCH_VAR\"`: the environment variable is not set",
            ),
            (
                &format!(
                    "{base}username_env = \"PATH\"\npassword_env = \"SGEVENTS_TEST_NO_SUCH_VAR\""
                ),
                "`alerts.password_env` = `\"SGEVENTS_TEST_NO_SUCH_VAR\"`: the environment variable is not set",
            ),
            (
                &format!("{base}tls = \"none\"\nusername_env = \"PATH\"\npassword_env = \"PATH\""),
                "the password would cross the network unencrypted",
            ),
            (
                "smtp_host = \"h\"\nto = [\"a@b.example\"]",
                "`alerts.from` is missing",
            ),
            (
                "smtp_host = \"h\"\nfrom = \"sgevents\"\nto = [\"a@b.example\"]",
                "`alerts.from` = `\"sgevents\"`: not an email address",
            ),
            (
                "smtp_host = \"h\"\nfrom = \"a@b.example\"",
                "`alerts.to` is missing or empty",
            ),
            (
                "smtp_host = \"h\"\nfrom = \"a@b.example\"\nto = []",
                "`alerts.to` is missing or empty",
            ),
            (
                "smtp_host = \"h\"\nfrom = \"a@b.example\"\nto = [\"ops at studio\"]",
                "`alerts.to` = `\"ops at studio\"`: not an email address",
            ),
            (
                &format!("{base}subject_prefix = \"[a]\\n[b]\""),
                "`alerts.subject_prefix` = `\"[a]\\n[b]\"`: contains a line break",
            ),
            (
                &format!("{base}rate_limit = \"often\""),
                "`alerts.rate_limit` = `\"often\"`: not a duration",
            ),
            (
                &format!("{base}rate_limit = \"0s\""),
                "`alerts.rate_limit` = `\"0s\"`: must be longer than zero",
            ),
            (
                &format!("{base}ca_file = \"/no/such/ca.pem\""),
                "`alerts.ca_file` = `/no/such/ca.pem`: cannot read it",
            ),
            (
                &format!("{base}ca_file = {not_pem:?}"),
                &format!("`alerts.ca_file` = `{not_pem}`: holds no PEM certificate"),
            ),
            (
                &format!("{base}tls = \"none\"\nca_file = {not_pem:?}"),
                "`alerts.ca_file` does not apply to tls = \"none\"",
            ),
            (
                &format!("{base}smtp_user = \"me\""),
                "unknown field `smtp_user`",
            ),
        ];
        for (table, expected) in cases {
            let err = alerts_err(table);
            assert!(
                err.contains(expected),
                "for:\n{table}\nexpected `{expected}` in:\n{err}"
            );
            assert!(err.contains("\nhint: "), "a hint for:\n{table}\n{err}");
        }
    }

    #[test]
    fn alert_to_is_checked_and_needs_an_alerts_table() {
        let c = config(
            "to = [\"o@s.example\"]",
            "[plugin.x]\ncommand = [\"x\"]\nalert_to = [\"anim@s.example\", \"Lead <lead@s.example>\"]\n[plugin.y]\ncommand = [\"y\"]\nalert_to = []\n[plugin.z]\ncommand = [\"z\"]\n",
        );
        let alert_to: Vec<_> = c.plugins.iter().map(|p| p.alert_to.clone()).collect();
        assert_eq!(
            alert_to,
            [
                Some(to(&["anim@s.example", "Lead <lead@s.example>"])),
                Some(vec![]),
                None
            ]
        );
        let err = parse(
            Path::new("sgevents.toml"),
            "[source]\nkind = \"jsonl\"\npath = \"e\"\n[plugin.x]\ncommand = [\"x\"]\nalert_to = [\"a@b.example\"]\n",
        )
        .expect_err("alert_to without [alerts]")
        .to_string();
        assert!(
            err.contains("`plugin.x.alert_to` is set, but there is no `[alerts]` table"),
            "{err}"
        );
        assert!(err.contains("\nhint: "), "{err}");
        let err = parse(
            Path::new("sgevents.toml"),
            "[source]\nkind = \"jsonl\"\npath = \"e\"\n[alerts]\nsmtp_host = \"h\"\nfrom = \"a@b.example\"\nto = [\"a@b.example\"]\n[plugin.x]\ncommand = [\"x\"]\nalert_to = [\"nobody\"]\n",
        )
        .expect_err("a bad alert_to")
        .to_string();
        assert!(
            err.contains("`plugin.x.alert_to` = `\"nobody\"`: not an email address"),
            "{err}"
        );
    }

    #[test]
    fn recipients_follow_register_then_alert_to_then_to() {
        let c = config(
            "to = [\"ops@s.example\", \"ops@s.example\"]",
            "[plugin.x]\ncommand = [\"x\"]\nalert_to = [\"b@s.example\", \"a@s.example\"]\n[plugin.quiet]\ncommand = [\"q\"]\nalert_to = []\n[plugin.plain]\ncommand = [\"p\"]\n",
        );
        let route = Route::of(&c);
        let configured = Recipients::Configured;
        let alert = |p: &str| failed(p, 1).alert;
        assert_eq!(
            route.recipients(&alert("plain"), &configured),
            to(&["ops@s.example"]),
            "`to`, without duplicates"
        );
        assert_eq!(
            route.recipients(&alert("x"), &configured),
            to(&["a@s.example", "b@s.example"]),
            "alert_to, sorted"
        );
        assert!(route.recipients(&alert("quiet"), &configured).is_empty());
        let source = Alert::SourceFailing {
            since: MINUTE,
            error: "down".into(),
        };
        assert_eq!(
            route.recipients(&source, &Recipients::Nobody),
            to(&["ops@s.example"]),
            "the source's alerts always go to `to`"
        );

        let dev = Recipients::To(to(&["dev@s.example"]));
        assert_eq!(
            route.recipients(&alert("x"), &dev),
            to(&["dev@s.example"]),
            "register's list beats alert_to"
        );
        assert_eq!(
            route.recipients(&alert("plain"), &dev),
            to(&["dev@s.example"])
        );
        assert!(
            route
                .recipients(&alert("x"), &Recipients::Nobody)
                .is_empty()
        );
        assert!(
            route.recipients(&alert("quiet"), &configured).is_empty(),
            "`true` in register means the configuration's choice, here alert_to = []"
        );

        use sgevents_protocol::AlertRecipients;
        assert_eq!(
            Recipients::from(AlertRecipients::Default(true)),
            Recipients::Configured
        );
        assert_eq!(
            Recipients::from(AlertRecipients::Default(false)),
            Recipients::Nobody
        );
        assert_eq!(
            Recipients::from(AlertRecipients::To(to(&["a@b.example"]))),
            Recipients::To(to(&["a@b.example"]))
        );
    }

    fn text() -> Text {
        Text {
            prefix: "[sgevents]".to_owned(),
            host: "render01".to_owned(),
            from: "sgevents@s.example".to_owned(),
            config_file: PathBuf::from("/etc/sgevents/sgevents.toml"),
            secrets: vec!["hunter2-smtp".to_owned(), "sg-script-key".to_owned()],
        }
    }

    fn mail(alerts: Vec<Stamped>) -> Mail {
        Mail {
            to: to(&["ops@s.example"]),
            alerts,
            omitted: 0,
            dropped: 0,
        }
    }

    #[test]
    fn a_single_alert_names_the_host_what_happened_and_what_to_do() {
        let t = text();
        let l = t.letter(&mail(vec![failed("task_status", 2011531)]), 10 * MINUTE);
        assert_eq!(
            l.subject,
            "[sgevents] render01: plugin task_status failed event 2011531"
        );
        assert!(l.body.contains("gave up on event 2011531"), "{}", l.body);
        assert!(
            l.body.contains("Error: cannot do event 2011531"),
            "{}",
            l.body
        );
        assert!(
            l.body
                .contains("sgevents -c /etc/sgevents/sgevents.toml failed list task_status\n"),
            "{}",
            l.body
        );
        assert!(
            l.body.contains(
                "sgevents -c /etc/sgevents/sgevents.toml failed retry task_status --event 2011531\n"
            ),
            "{}",
            l.body
        );

        let disabled = Stamped {
            at: SystemTime::UNIX_EPOCH,
            alert: Alert::PluginDisabled {
                plugin: "publish".into(),
                reason: "fatal error: no database".into(),
            },
        };
        let l = t.letter(&mail(vec![disabled]), 10 * MINUTE);
        assert_eq!(l.subject, "[sgevents] render01: plugin publish is disabled");
        assert!(
            l.body.contains("Reason: fatal error: no database"),
            "{}",
            l.body
        );
        assert!(
            l.body
                .contains("sgevents -c /etc/sgevents/sgevents.toml plugin enable publish"),
            "{}",
            l.body
        );

        let crash = Stamped {
            at: SystemTime::UNIX_EPOCH,
            alert: Alert::CrashLoop {
                plugin: "publish".into(),
                reason: "exited with status 3".into(),
            },
        };
        let l = t.letter(&mail(vec![crash]), 10 * MINUTE);
        assert_eq!(
            l.subject,
            "[sgevents] render01: plugin publish crash-looped and is disabled"
        );
        assert!(l.body.contains("plugin enable publish"), "{}", l.body);

        let source = Stamped {
            at: SystemTime::UNIX_EPOCH,
            alert: Alert::SourceFailing {
                since: Duration::from_millis(312_400),
                error: "cannot reach https://s.example: connection refused".into(),
            },
        };
        let l = t.letter(&mail(vec![source]), 10 * MINUTE);
        assert_eq!(
            l.subject,
            "[sgevents] render01: the event source has been failing for 5m 12s"
        );
        assert!(l.body.contains("nothing is lost"), "{}", l.body);
        assert!(
            l.body
                .contains("sgevents -c /etc/sgevents/sgevents.toml status"),
            "{}",
            l.body
        );
    }

    #[test]
    fn a_digest_counts_lists_and_mentions_what_was_dropped() {
        let t = text();
        let mut alerts: Vec<Stamped> = (1..=60).map(|id| failed("a", id)).collect();
        alerts.push(Stamped {
            at: SystemTime::UNIX_EPOCH,
            alert: Alert::PluginDisabled {
                plugin: "b".into(),
                reason: "exited with status 125".into(),
            },
        });
        let mut m = mail(alerts);
        m.omitted = 4;
        m.dropped = 9;
        let l = t.letter(&m, 10 * MINUTE);
        assert_eq!(
            l.subject,
            "[sgevents] render01: 65 alerts (60 failed events, 1 plugin disabled, ...)"
        );
        assert!(l.body.contains("at most one mail per 10m"), "{}", l.body);
        assert!(
            l.body
                .contains("plugin `a` failed event 1: cannot do event 1"),
            "{}",
            l.body
        );
        assert!(
            !l.body.contains("failed event 51:"),
            "only {MAX_LISTED} are listed"
        );
        assert!(l.body.contains("and 15 more, not listed"), "{}", l.body);
        assert!(
            l.body.contains("9 more alert(s) were dropped"),
            "{}",
            l.body
        );
        assert!(l.body.contains("failed list a\n"), "{}", l.body);
        assert!(
            l.body.contains("failed retry a\n"),
            "a digest retries them all: {}",
            l.body
        );
        assert!(l.body.contains("plugin enable b\n"), "{}", l.body);
        assert_eq!(
            l.body.matches("failed list a").count(),
            1,
            "each command once"
        );
    }

    #[test]
    fn secrets_never_reach_a_mail() {
        let t = text();
        let leaky = Stamped {
            at: SystemTime::UNIX_EPOCH,
            alert: Alert::PluginDisabled {
                plugin: "p".into(),
                reason: "login failed with key sg-script-key and hunter2-smtp".into(),
            },
        };
        let l = t.letter(&mail(vec![leaky]), MINUTE);
        assert!(
            !l.body.contains("sg-script-key") && !l.body.contains("hunter2-smtp"),
            "{}",
            l.body
        );
        assert!(
            l.body
                .contains("login failed with key <redacted> and <redacted>"),
            "{}",
            l.body
        );

        let dir = tempfile::tempdir().expect("temp dir");
        let key = dir.path().join("key");
        std::fs::write(&key, "the-source-key\n").expect("key");
        let text = format!(
            "[source]\nkind = \"shotgrid\"\nurl = \"https://s.example\"\nscript_name = \"sg\"\nscript_key_file = {:?}\n[alerts]\nsmtp_host = \"h\"\nfrom = \"a@b.example\"\nto = [\"a@b.example\"]\n",
            key.display().to_string()
        );
        let c = parse(&dir.path().join("sgevents.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
        let t = Text::of(&c, "h".into());
        assert_eq!(t.redact("key the-source-key!"), "key <redacted>!");
    }

    /// A configuration mailing through `smtp` (plain, no login).
    fn live(smtp: &FakeSmtp, rate_limit: &str, plugins: &str) -> Config {
        config(
            &format!(
                "to = [\"ops@s.example\"]\ntls = \"none\"\nsmtp_port = {}\nrate_limit = \"{rate_limit}\"",
                smtp.port()
            ),
            plugins,
        )
    }

    /// Waits for `n` messages without blocking the runtime.
    async fn messages(smtp: &Arc<FakeSmtp>, n: usize) -> Vec<sgevents_tests::smtp::Received> {
        let smtp = smtp.clone();
        tokio::task::spawn_blocking(move || smtp.wait_for_messages(n, Duration::from_secs(60)))
            .await
            .expect("waited")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mail_goes_out_at_once_then_the_burst_as_one_digest_at_stop() {
        let smtp = Arc::new(FakeSmtp::plain());
        let c = live(
            &smtp,
            "1h",
            "[plugin.anim]\ncommand = [\"x\"]\nalert_to = [\"anim@s.example\"]\n",
        );
        let alerts = Alerts::start(&c).expect("started");
        assert!(alerts.is_enabled());
        alerts.send(failed("comp", 1).alert);
        let first = messages(&smtp, 1).await;
        assert_eq!(first[0].rcpt_to, ["ops@s.example"]);
        assert_eq!(first[0].mail_from, "sgevents@studio.example");
        assert!(
            first[0].subject.ends_with(": plugin comp failed event 1"),
            "{}",
            first[0].subject
        );
        for id in 2..=4 {
            alerts.send(failed("comp", id).alert);
        }
        // Another recipient set is not held by the first; a plugin's register overrides alert_to.
        alerts.send(failed("anim", 10).alert);
        alerts.set_recipients(
            "anim",
            Recipients::To(to(&["dev@s.example", "not an address"])),
        );
        alerts.send(failed("anim", 11).alert);
        alerts.set_recipients("comp", Recipients::Nobody);
        alerts.send(failed("comp", 5).alert);
        let got = messages(&smtp, 3).await;
        let rcpts: Vec<_> = got.iter().map(|m| m.rcpt_to.clone()).collect();
        assert_eq!(
            rcpts,
            [
                to(&["ops@s.example"]),
                to(&["anim@s.example"]),
                to(&["dev@s.example"])
            ]
        );
        alerts.shutdown().await;
        let all = smtp.messages();
        assert_eq!(
            all.len(),
            4,
            "one digest at stop: {:#?}",
            all.iter().map(|m| &m.subject).collect::<Vec<_>>()
        );
        let digest = &all[3];
        assert_eq!(digest.rcpt_to, ["ops@s.example"]);
        assert!(
            digest.subject.ends_with(": 3 alerts (3 failed events)"),
            "{}",
            digest.subject
        );
        for id in 2..=4 {
            assert!(
                digest
                    .body
                    .contains(&format!("plugin `comp` failed event {id}:")),
                "{}",
                digest.body
            );
        }
        assert!(
            !digest.body.contains("event 5:"),
            "comp asked for nobody afterwards"
        );
        // After shutdown, alerts go nowhere and nothing blocks.
        alerts.send(failed("comp", 6).alert);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn starttls_with_a_login_and_a_private_ca() {
        let smtp = Arc::new(FakeSmtp::start(SmtpOptions {
            tls: ServerTls::StartTls,
            login: Some(("sgevents".into(), "hunter2-smtp".into())),
            silent: false,
        }));
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, smtp.ca_pem().expect("a CA")).expect("write CA");
        let mut c = config(
            &format!(
                "to = [\"ops@s.example\"]\nsmtp_port = {}\nca_file = {:?}",
                smtp.port(),
                ca.display().to_string()
            ),
            "",
        );
        let alerts_config = c.alerts.as_mut().expect("[alerts]");
        alerts_config.credentials = Some(SmtpCredentials {
            username: "sgevents".into(),
            password: crate::config::Secret::new("hunter2-smtp"),
        });
        assert_eq!(
            check(alerts_config).await,
            Ok(format!(
                "mail server 127.0.0.1:{}: connected and signed in",
                smtp.port()
            ))
        );
        let alerts = Alerts::start(&c).expect("started");
        alerts.send(Alert::PluginDisabled {
            plugin: "p".into(),
            reason: "the password is hunter2-smtp".into(),
        });
        let got = messages(&smtp, 1).await;
        assert!(got[0].tls, "the message came over TLS");
        assert_eq!(got[0].login.as_deref(), Some("sgevents"));
        assert!(
            got[0].body.contains("the password is <redacted>"),
            "{}",
            got[0].body
        );
        assert!(!got[0].data.contains("hunter2"), "{}", got[0].data);
        alerts.shutdown().await;

        // A wrong password: `check` says so, with a hint.
        let alerts_config = c.alerts.as_mut().expect("[alerts]");
        alerts_config.credentials = Some(SmtpCredentials {
            username: "sgevents".into(),
            password: crate::config::Secret::new("wrong"),
        });
        let err = check(alerts_config).await.expect_err("refused");
        assert!(
            err.contains("535") && err.contains("hint: check the user name and password"),
            "{err}"
        );
        assert_eq!(smtp.failed_logins(), 1);
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        // A handle whose worker never reads: the queue fills, and `send` still returns at once.
        let (tx, _rx) = mpsc::channel(QUEUE);
        let alerts = Alerts {
            inner: Some(Arc::new(Shared {
                tx,
                dropped: AtomicU64::new(0),
                overrides: Mutex::new(BTreeMap::new()),
            })),
        };
        for id in 0..(QUEUE as i64 + 5) {
            alerts.send(failed("a", id).alert);
        }
        let shared = alerts.inner.as_ref().expect("enabled");
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 5);
        // Nothing to do without an [alerts] table.
        let none = Alerts::none();
        none.send(failed("a", 1).alert);
        none.set_recipients("a", Recipients::Nobody);
        assert!(!none.is_enabled());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_server_never_blocks_send_and_stopping_is_bounded() {
        let smtp = Arc::new(FakeSmtp::silent());
        let c = live(&smtp, "1h", "");
        let alerts = Alerts::start(&c).expect("started");
        alerts.send(failed("a", 1).alert);
        let wait = smtp.clone();
        tokio::task::spawn_blocking(move || wait.wait_for_connections(1, Duration::from_secs(60)))
            .await
            .expect("connected");
        // The mail in flight waits on the silent server; the worker goes on taking alerts.
        for id in 2..=(QUEUE as i64 + 100) {
            alerts.send(failed("a", id).alert);
        }
        alerts.set_recipients("a", Recipients::Nobody);
        alerts.send(failed("a", 0).alert);
        // Stopping gives up on the silent server after SHUTDOWN_WAIT instead of SEND_TIMEOUT.
        alerts.shutdown().await;
        assert!(smtp.messages().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_mail_is_retried_with_what_came_meanwhile() {
        let smtp = Arc::new(FakeSmtp::plain());
        smtp.fail_next(1);
        let c = live(&smtp, "200ms", "");
        let alerts = Alerts::start(&c).expect("started");
        alerts.send(failed("a", 1).alert);
        let wait = smtp.clone();
        tokio::task::spawn_blocking(move || wait.wait_for_connections(1, Duration::from_secs(60)))
            .await
            .expect("connected");
        alerts.send(failed("a", 2).alert);
        let got = messages(&smtp, 1).await;
        let mut ids = Vec::new();
        for m in &got {
            for id in [1, 2] {
                if m.body.contains(&format!("failed event {id}")) {
                    ids.push(id);
                }
            }
        }
        alerts.shutdown().await;
        let all = smtp.messages();
        let text: String = all.iter().map(|m| m.body.clone()).collect();
        assert!(
            text.contains("failed event 1") && text.contains("failed event 2"),
            "the refused alert was mailed later, with the next: {text}"
        );
        assert_eq!(ids.first(), Some(&1), "the refused alert comes first");
        assert_eq!(smtp.refused(), 1, "the first try was refused");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reload_changes_the_recipients_and_can_turn_alerts_off() {
        let smtp = Arc::new(FakeSmtp::plain());
        let alerts = Alerts::start(&live(&smtp, "1h", "")).expect("started");
        alerts.send(failed("a", 1).alert);
        assert_eq!(messages(&smtp, 1).await[0].rcpt_to, ["ops@s.example"]);

        let reloaded = config(
            &format!(
                "to = [\"night-shift@s.example\"]\ntls = \"none\"\nsmtp_port = {}\nsubject_prefix = \"[night]\"",
                smtp.port()
            ),
            "",
        );
        alerts.reconfigure(&reloaded).expect("reconfigured");
        alerts.send(failed("a", 2).alert);
        let got = messages(&smtp, 2).await;
        assert_eq!(got[1].rcpt_to, ["night-shift@s.example"]);
        assert!(got[1].subject.starts_with("[night] "), "{}", got[1].subject);

        let without = parse(
            Path::new("/etc/sgevents/sgevents.toml"),
            "[source]\nkind = \"jsonl\"\npath = \"e\"\n",
        )
        .expect("valid");
        alerts.reconfigure(&without).expect("reconfigured");
        alerts.send(failed("a", 3).alert);
        alerts.shutdown().await;
        assert_eq!(smtp.messages().len(), 2, "alerts are off without [alerts]");

        // A handle started without [alerts] stays off (a restart turns alerts on).
        let off = Alerts::none();
        off.reconfigure(&reloaded).expect("nothing to do");
        assert!(!off.is_enabled());
    }
}
