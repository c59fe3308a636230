//! The worker: the one task that owns the SMTP transport, routes each alert to its recipients
//! ([`Route`]), holds it in the [`Limiter`](super::limiter::Limiter) and sends the mails, one in
//! flight at a time.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::sync::mpsc;

use super::letter::Text;
use super::limiter::{Limiter, Mail};
use super::smtp::{hint, hint_timeout};
use super::{Alert, Command, Recipients, SEND_TIMEOUT, Settings, Shared, Stamped};
use crate::config::Config;

/// Why a mail was not sent, and what to check.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) error: String,
    pub(super) hint: String,
}

pub(super) type InFlight = Pin<Box<dyn Future<Output = (Mail, Result<(), Failure>)> + Send>>;

pub(super) struct Worker {
    pub(super) transport: Arc<AsyncSmtpTransport<Tokio1Executor>>,
    pub(super) route: Route,
    pub(super) text: Text,
    pub(super) limiter: Limiter,
    pub(super) shared: Arc<Shared>,
    /// The alerts the mail in flight carries, for the count at stop.
    pub(super) in_flight_alerts: usize,
}

impl Worker {
    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
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

    pub(super) fn reconfigure(&mut self, settings: Settings) {
        if let Some(transport) = settings.transport {
            self.transport = Arc::new(transport);
        }
        self.route = settings.route;
        self.text = settings.text;
        self.limiter.window = settings.window;
        tracing::debug!(route = ?self.route, "email alerts reconfigured");
    }

    /// Routes an alert and offers it to the limiter; a mail to send at once, if any.
    pub(super) fn offer(&mut self, stamped: Stamped, chosen: &Recipients) -> Option<Mail> {
        let to = self.route.recipients(&stamped.alert, chosen);
        if to.is_empty() {
            tracing::debug!(alert = ?stamped.alert, "an alert for nobody (the plugin or `alert_to` says so)");
            return None;
        }
        let mut mail = self.limiter.offer(Instant::now(), to, stamped)?;
        mail.dropped += self.shared.dropped.swap(0, Ordering::Relaxed);
        Some(mail)
    }

    pub(super) fn due(&mut self, now: Instant) -> Vec<Mail> {
        let mut mails = self.limiter.due(now);
        if let Some(first) = mails.first_mut() {
            first.dropped += self.shared.dropped.swap(0, Ordering::Relaxed);
        }
        mails
    }

    /// Sends one mail; the future owns what it needs, so the worker goes on meanwhile.
    pub(super) fn deliver(&self, mail: Mail) -> InFlight {
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
    pub(super) async fn finish(
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

pub(super) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

pub(super) async fn poll(in_flight: &mut Option<InFlight>) -> (Mail, Result<(), Failure>) {
    match in_flight {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

// ---------------------------------------------------------------------------------------------
// Routing: who gets an alert.

/// The configured recipients: `alerts.to`, and each plugin's `alert_to`.
#[derive(Debug, Clone, Default)]
pub(super) struct Route {
    pub(super) to: Vec<String>,
    pub(super) plugins: BTreeMap<String, Vec<String>>,
}

impl Route {
    pub(super) fn of(config: &Config) -> Route {
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
    pub(super) fn recipients(&self, alert: &Alert, chosen: &Recipients) -> Vec<String> {
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
