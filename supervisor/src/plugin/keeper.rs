//! The keeper of one plugin: the task that alone starts and stops that plugin's actor, and does
//! what operators ask of it (restart, stop, start, enable, disable, rewind, failed retry or drop,
//! a new configuration).
//!
//! Each plugin has its own keeper, and a keeper waits only for its own actor, so restarting one
//! plugin never pauses another. Commands to one keeper are done one at a time, in order.
//! Changes to the state database go through [`Store::control`], after everything the actor sent
//! before, so an operator's change always wins over the cursor the stopped actor last reported.

use std::sync::Arc;

use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Actor, ActorReport, Links, Live};
use crate::alerts::Alerts;
use crate::config::PluginSpec;
use crate::control::handle::{self, plural};
use crate::control::{ControlError, Request, Response, RewindTarget};
use crate::metrics::PluginMetrics;
use crate::store::PluginState;
use crate::store::Store;

/// What an operator (or the daemon) asks of one plugin.
#[derive(Debug)]
pub(crate) enum Command {
    Restart,
    Stop,
    Start,
    Enable,
    Disable,
    Rewind {
        to: RewindTarget,
        dry_run: bool,
    },
    FailedRetry {
        event: Option<i64>,
    },
    FailedDrop {
        event: Option<i64>,
    },
    /// A new configuration, or a changed executable: restart if anything differs.
    Update(Box<PluginSpec>),
    /// Gone from the configuration: stop, keeping its state.
    Remove,
}

/// What the rest of the daemon holds of a keeper.
pub(crate) struct KeeperHandle {
    tx: mpsc::UnboundedSender<(Command, oneshot::Sender<Response>)>,
    /// What its actor reports, for `exit_when_idle`.
    pub(crate) report: watch::Receiver<ActorReport>,
    /// Its cursor in memory, for plugins that run `after` it.
    pub(crate) progress: watch::Receiver<i64>,
    /// Its state in memory, for the HTTP listener.
    pub(crate) live: watch::Receiver<Live>,
    /// Ends after `Remove` or the daemon's stop.
    pub(crate) task: JoinHandle<()>,
}

impl KeeperHandle {
    /// Sends a command; the answer comes on the returned channel.
    pub(crate) fn ask(&self, command: Command) -> oneshot::Receiver<Response> {
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError((_, reply))) = self.tx.send((command, reply)) {
            let _ = reply.send(Response::error("the plugin's keeper has stopped"));
        }
        answer
    }
}

/// What every keeper shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) alerts: Alerts,
    /// The daemon's graceful stop; every actor's own stop is a child of it.
    pub(crate) cancel: CancellationToken,
    pub(crate) hard: CancellationToken,
}

/// Starts the keeper of `spec`; `gate` is the lowest cursor of the plugins it runs `after`.
pub(crate) fn spawn(
    spec: PluginSpec,
    shared: Shared,
    gate: Option<watch::Receiver<i64>>,
) -> KeeperHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let (report_tx, report) = watch::channel(ActorReport::default());
    let (progress_tx, progress) = watch::channel(0);
    let (live_tx, live) = watch::channel(Live::default());
    let (replay_tx, _) = watch::channel(0);
    let probe = live.clone();
    let metrics = crate::metrics::global().plugin(
        &spec.name,
        progress.clone(),
        Box::new(move || probe.borrow().state),
    );
    let keeper = Keeper {
        metrics,
        spec,
        shared,
        gate,
        report: report_tx,
        progress: progress_tx,
        live: live_tx,
        replay: replay_tx,
        run: None,
        held: None,
        fingerprint: String::new(),
    };
    let task = tokio::spawn(keeper.run(rx));
    KeeperHandle {
        tx,
        report,
        progress,
        live,
        task,
    }
}

struct Run {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

struct Keeper {
    spec: PluginSpec,
    /// Its metrics' handles, handed to each actor.
    metrics: Arc<PluginMetrics>,
    shared: Shared,
    gate: Option<watch::Receiver<i64>>,
    report: watch::Sender<ActorReport>,
    progress: watch::Sender<i64>,
    live: watch::Sender<Live>,
    replay: watch::Sender<u64>,
    run: Option<Run>,
    /// The fingerprint of what the keeper last started (or was created with): a changed
    /// executable shows as a different fingerprint of the same spec.
    fingerprint: String,
    /// Stopped or disabled by an operator: no actor until told otherwise.
    held: Option<Hold>,
}

/// Why an operator holds a plugin without an actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// `plugin stop`: until `plugin start` or the daemon's next start.
    Stopped,
    /// `plugin disable`: until `plugin enable`, or a changed executable or configuration.
    Disabled,
}

type Incoming = mpsc::UnboundedReceiver<(Command, oneshot::Sender<Response>)>;

impl Keeper {
    async fn run(mut self, mut rx: Incoming) {
        self.start();
        loop {
            tokio::select! {
                _ = self.shared.cancel.cancelled() => break,
                msg = rx.recv() => match msg {
                    Some((Command::Remove, reply)) => {
                        self.stop().await;
                        crate::metrics::global().forget_plugin(&self.spec.name);
                        let _ = reply.send(Response::done(
                            format!("stopped plugin `{}`: it is no longer configured; its state is kept", self.spec.name),
                            json!({"plugin": self.spec.name, "action": "removed"}),
                        ));
                        return;
                    }
                    Some((command, reply)) => {
                        let response = self.handle(command).await;
                        let _ = reply.send(response);
                    }
                    None => break,
                },
            }
        }
        // The daemon is stopping: the actor's token is a child of the daemon's, so it is
        // stopping too; wait for it.
        if let Some(run) = self.run.take() {
            let _ = run.task.await;
        }
    }

    fn name(&self) -> &str {
        &self.spec.name
    }

    /// Starts an actor for the current spec.
    fn start(&mut self) {
        debug_assert!(self.run.is_none());
        self.held = None;
        self.fingerprint = self.spec.fingerprint();
        let cancel = self.shared.cancel.child_token();
        let links = Links {
            store: self.shared.store.clone(),
            alerts: self.shared.alerts.clone(),
            report: self.report.clone(),
            progress: self.progress.clone(),
            live: self.live.clone(),
            gate: self.gate.clone(),
            replay: self.replay.subscribe(),
            cancel: cancel.clone(),
            hard: self.shared.hard.clone(),
            metrics: self.metrics.clone(),
        };
        let actor = Actor::new(self.spec.clone(), links);
        let task = tokio::spawn(actor.run());
        self.run = Some(Run { cancel, task });
    }

    /// Stops the actor gracefully and waits for it; returns whether one was running.
    async fn stop(&mut self) -> bool {
        match self.run.take() {
            Some(run) => {
                run.cancel.cancel();
                let _ = run.task.await;
                true
            }
            None => false,
        }
    }

    /// Stops the actor and holds the plugin (no actor) until told otherwise; it counts as idle.
    async fn hold(&mut self, why: Hold) -> bool {
        let was = self.stop().await;
        self.held = Some(why);
        self.report.send_replace(ActorReport {
            caught_up_to: None,
            disabled: true,
        });
        let state = match why {
            Hold::Stopped => PluginState::Stopped,
            Hold::Disabled => PluginState::Disabled,
        };
        self.live.send_modify(|l| {
            l.state = state;
            l.pid = None;
        });
        was
    }

    /// A change that only touches the database, answered as the CLI answers it without a daemon.
    async fn direct(&self, request: Request) -> Result<Response, ControlError> {
        handle::direct(&self.shared.store, &request).await?
    }

    async fn handle(&mut self, command: Command) -> Response {
        match self.try_handle(command).await {
            Ok(r) => r,
            Err(e) => Response::error(e.to_string()),
        }
    }

    async fn try_handle(&mut self, command: Command) -> Result<Response, ControlError> {
        let name = self.spec.name.clone();
        let data = |action: &str| json!({"plugin": name, "action": action});
        match command {
            Command::Restart => {
                self.refuse_if_disabled("restart").await?;
                self.stop().await;
                self.start();
                Ok(Response::done(
                    format!("restarted plugin `{name}`"),
                    data("restarted"),
                ))
            }
            Command::Stop => {
                if self.held.is_some() {
                    return Ok(Response::done(
                        format!("plugin `{name}` is already stopped"),
                        data("none"),
                    ));
                }
                self.hold(Hold::Stopped).await;
                Ok(Response::done(
                    format!(
                        "stopped plugin `{name}`; it stays stopped until `sgevents plugin start {name}` or the daemon's next start"
                    ),
                    data("stopped"),
                ))
            }
            Command::Start => {
                if self.run.is_some() {
                    return Ok(Response::done(
                        format!("plugin `{name}` is already running"),
                        data("none"),
                    ));
                }
                self.refuse_if_disabled("start").await?;
                self.start();
                Ok(Response::done(
                    format!("started plugin `{name}`"),
                    data("started"),
                ))
            }
            Command::Enable => {
                if !self.spec.enabled {
                    return Err(ControlError::Refused(format!(
                        "plugin `{name}` is disabled in the configuration (`enabled = false`)\nhint: set `enabled = true` in `[plugin.{name}]`, then `sgevents reload`"
                    )));
                }
                match self.shared.store.enable(&name).await?? {
                    Some(reason) => {
                        self.stop().await;
                        self.start();
                        Ok(Response::done(
                            format!(
                                "enabled plugin `{name}` (it was disabled: {reason}) and started it"
                            ),
                            json!({"plugin": name, "action": "enabled", "was_disabled": reason}),
                        ))
                    }
                    None => Ok(Response::done(
                        format!("plugin `{name}` is not disabled"),
                        data("none"),
                    )),
                }
            }
            Command::Disable => {
                self.hold(Hold::Disabled).await;
                self.direct(Request::PluginDisable { plugin: name }).await
            }
            Command::Rewind { to, dry_run } => {
                let was_running = !dry_run && self.stop().await;
                let result = self
                    .direct(Request::PluginRewind {
                        plugin: name,
                        to,
                        dry_run,
                    })
                    .await;
                if was_running {
                    self.start();
                }
                result
            }
            Command::FailedRetry { event } => {
                let n = self.shared.store.failed_retry(&name, event).await??;
                self.replay.send_modify(|v| *v += 1);
                let when = if self.run.is_some() && self.held.is_none() {
                    "now"
                } else {
                    "once it runs again"
                };
                Ok(Response::done(
                    format!(
                        "{n} failed event{} of plugin `{name}` will be delivered again {when}",
                        plural(n)
                    ),
                    json!({"plugin": name, "action": "retry", "events": n}),
                ))
            }
            Command::FailedDrop { event } => {
                self.direct(Request::FailedDrop {
                    plugin: name,
                    event,
                })
                .await
            }
            Command::Update(spec) => {
                let fingerprint = spec.fingerprint();
                let changed = *spec != self.spec || fingerprint != self.fingerprint;
                if !changed {
                    return Ok(Response::done(
                        format!("plugin `{name}` is unchanged"),
                        data("unchanged"),
                    ));
                }
                self.spec = *spec;
                self.fingerprint = fingerprint;
                // A plugin disabled by an operator is enabled again by a change (as after a
                // failure: the actor compares fingerprints); one stopped by an operator stays so.
                if self.held == Some(Hold::Stopped) {
                    return Ok(Response::done(
                        format!(
                            "plugin `{name}` changed; it stays stopped as an operator asked (`sgevents plugin start {name}`)"
                        ),
                        data("updated"),
                    ));
                }
                self.stop().await;
                self.start();
                Ok(Response::done(
                    format!("plugin `{name}` changed; restarted it"),
                    data("restarted"),
                ))
            }
            Command::Remove => unreachable!("handled by the loop"),
        }
    }

    /// Refuses `what` for a plugin disabled in the database, saying how to enable it.
    async fn refuse_if_disabled(&mut self, what: &str) -> Result<(), ControlError> {
        if !self.spec.enabled {
            return Err(ControlError::Refused(format!(
                "cannot {what} plugin `{}`: it is disabled in the configuration (`enabled = false`)\nhint: set `enabled = true` in `[plugin.{}]`, then `sgevents reload`",
                self.name(),
                self.name()
            )));
        }
        if self.shared.store.plugin_state(self.name()).await?? == "disabled" {
            return Err(ControlError::Refused(format!(
                "cannot {what} plugin `{}`: it is disabled\nhint: `sgevents plugin list` says why; `sgevents plugin enable {}` enables and starts it",
                self.name(),
                self.name()
            )));
        }
        Ok(())
    }
}
