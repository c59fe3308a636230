//! One actor per plugin: a task that alone owns the plugin's child process, reads the journal at
//! the plugin's own pace, and delivers matching events over protocol v1.
//!
//! # Theory of operation
//!
//! [`Actor::run`] is a loop of *sessions*. A session starts the child ([`child::PluginChild`]),
//! performs the handshake, then serves: it fills the window from the journal (events that match
//! none of the plugin's subscriptions only move the cursor), and `select!`s over the child's
//! stdout lines, its timers (answer deadlines, retries, pings) and the daemon's cancellation. A
//! session ends in one of four ways ([`End`]): the daemon stopped it, it crashed or broke the
//! protocol (restart after a backoff, see [`policy`]), it hung on an event (the same, but the
//! timeout is charged to that event as a failed attempt, so a poison event is dead-lettered after
//! `max_attempts` instead of feeding the crash loop), or it must be disabled (fatal, failed
//! handshake, exit status 125, crash loop), keeping its position.
//!
//! What a plugin sends unasked is bounded: `pong`s for no ping and `progress` beyond a small rate
//! end the session as a protocol violation; its stderr lines beyond `log_rate` are dropped and
//! counted ([`child`]).
//!
//! What to do with each answer and each timer is decided by [`session::Session`], as pure data;
//! the actor performs its [`session::Effect`]s. Answers move the cursor through
//! [`window::Window`]; the actor hands cursor moves, retries and failures to the [`Store`], which
//! group-commits them. After any crash, the plugin restarts
//! from its committed cursor, so the events that were in flight are delivered again and nothing
//! is skipped.

pub(crate) mod child;
pub(crate) mod keeper;
pub(crate) mod policy;
pub(crate) mod session;
pub(crate) mod timings;
pub(crate) mod window;

use std::collections::{HashMap, VecDeque};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use sgevents_protocol::{
    AlertRecipients, DaemonMessage, Hello, MatchFields, PluginMessage, Register, SUPPORTED,
    Subscription, decode_plugin_line, encode, excerpt,
};
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

use self::child::{Incoming, PluginChild, Stdin};
use self::policy::{AfterCrash, CRASH_LIMIT, RestartPolicy};
pub(crate) use self::session::event_line;
use self::session::{EXCERPT, Effect, End, Session, first_line};
use self::timings::Timings;
use crate::alerts::{Alert, Alerts, Recipients};
use crate::config::PluginSpec;
use crate::metrics::PluginMetrics;
use crate::store::{JournalRow, PluginState, PluginStatus, Resume, Sent, Store, StoreError};

/// How many journal rows an actor reads at once.
const READ_BATCH: usize = 512;
/// The longest a moved cursor waits before it is handed to the store.
const PUBLISH_EVERY: Duration = Duration::from_millis(2);

/// What an actor tells the daemon about itself, for `exit_when_idle`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ActorReport {
    /// Running with nothing in flight, and everything up to this seq taken from the journal.
    pub(crate) caught_up_to: Option<i64>,
    /// Disabled: it will not move until an operator acts.
    pub(crate) disabled: bool,
}

/// A plugin as the HTTP listener sees it, in memory: published by its actor, and by its keeper
/// while an operator holds it without one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Live {
    /// Its state, as in `plugins.state`.
    pub(crate) state: PluginState,
    /// Its process while it runs.
    pub(crate) pid: Option<u32>,
    /// Handshakes completed since the daemon started (`/readyz` waits for one).
    pub(crate) handshakes: u64,
    /// Deliveries sent since its keeper started (counted as they are handed to the store).
    pub(crate) deliveries: u64,
}

impl Default for Live {
    fn default() -> Live {
        Live {
            state: PluginState::Starting,
            pid: None,
            handshakes: 0,
            deliveries: 0,
        }
    }
}

/// Why the serving loop stopped.
enum Step {
    /// A second signal: kill now.
    Hard,
    /// Stop gracefully.
    Shutdown,
    /// Kill the child, then end the session so.
    Kill(End),
    /// stdout closed.
    StdoutClosed,
    /// The child exited.
    Exited(Option<ExitStatus>),
}

/// What links an actor to the rest of the daemon; its keeper makes a new set for each run.
pub(crate) struct Links {
    /// The state database.
    pub(crate) store: Store,
    /// Where alerts go.
    pub(crate) alerts: Alerts,
    /// What it tells the daemon (for `exit_when_idle`).
    pub(crate) report: watch::Sender<ActorReport>,
    /// Its cursor, in memory, as it moves: what plugins that run `after` it wait for.
    pub(crate) progress: watch::Sender<i64>,
    /// Its state in memory, for the HTTP listener.
    pub(crate) live: watch::Sender<Live>,
    /// The lowest cursor of the plugins this one runs `after`: it takes no event beyond it.
    pub(crate) gate: Option<watch::Receiver<i64>>,
    /// Bumped when an operator asks for failed events again.
    pub(crate) replay: watch::Receiver<u64>,
    /// A graceful stop of this run.
    pub(crate) cancel: CancellationToken,
    /// The daemon's immediate stop.
    pub(crate) hard: CancellationToken,
    /// Its metrics' handles.
    pub(crate) metrics: Arc<PluginMetrics>,
}

/// The actor of one plugin.
pub(crate) struct Actor {
    spec: PluginSpec,
    store: Store,
    alerts: Alerts,
    head: watch::Receiver<i64>,
    report: watch::Sender<ActorReport>,
    progress: watch::Sender<i64>,
    live: watch::Sender<Live>,
    gate: Option<watch::Receiver<i64>>,
    replay: watch::Receiver<u64>,
    /// Failed events an operator asked for again, to send before the journal's next ones, with
    /// the deliveries they had.
    replays: VecDeque<(JournalRow, u32)>,
    replay_open: bool,
    resume: Option<Resume>,
    timings: Timings,
    cancel: CancellationToken,
    hard: CancellationToken,
    /// The window, and what the plugin's answers and timers do to it.
    session: Session,
    /// What the session asked for and the actor has not done yet.
    effects: Vec<Effect>,
    buffer: VecDeque<JournalRow>,
    subscriptions: Vec<Subscription>,
    status: PluginStatus,
    published_cursor: i64,
    published_at: Instant,
    /// Deliveries sent since the last publish, for the store's record of what is in flight.
    sent: Vec<Sent>,
    policy: RestartPolicy,
    /// When the current session's child was started.
    session_started: Instant,
    metrics: Arc<PluginMetrics>,
}

impl Actor {
    /// An actor for `spec`.
    pub(crate) fn new(spec: PluginSpec, links: Links) -> Actor {
        let fingerprint = spec.fingerprint();
        let Links {
            store,
            alerts,
            report,
            progress,
            live,
            gate,
            replay,
            cancel,
            hard,
            metrics,
        } = links;
        Actor {
            head: store.head(),
            store,
            alerts,
            report,
            progress,
            live,
            gate,
            replay,
            replays: VecDeque::new(),
            replay_open: true,
            resume: None,
            timings: Timings::default(),
            cancel,
            hard,
            session: Session::new(0, HashMap::new(), spec.limits, Instant::now()),
            effects: Vec::new(),
            buffer: VecDeque::new(),
            subscriptions: Vec::new(),
            status: PluginStatus {
                state: PluginState::Stopped,
                pid: None,
                restarts: 0,
                disabled_reason: None,
                last_error: None,
                fingerprint,
            },
            published_cursor: 0,
            published_at: Instant::now(),
            sent: Vec::new(),
            policy: RestartPolicy::new(spec.limits.restart_delay, spec.limits.restart_delay_max),
            session_started: Instant::now(),
            metrics,
            spec,
        }
    }

    /// Runs the plugin until the daemon stops it.
    pub(crate) async fn run(mut self) {
        let record = match self
            .store
            .open_plugin(
                &self.spec.name,
                self.spec.start_at,
                &self.status.fingerprint,
            )
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(plugin = %self.spec.name, error = %e, "cannot load the plugin's state");
                return;
            }
        };
        self.session = Session::new(
            record.cursor,
            record.attempts,
            self.spec.limits,
            Instant::now(),
        );
        self.published_cursor = record.cursor;
        self.progress.send_replace(record.cursor);
        self.resume = record.resume;
        self.status.restarts = record.restarts;
        self.status.last_error = None;

        if !self.spec.enabled {
            self.stay_disabled("disabled in the configuration (enabled = false)".into())
                .await;
            return;
        }
        if record.state == PluginState::Disabled.as_str() {
            let reason = record
                .disabled_reason
                .unwrap_or_else(|| "no reason recorded".into());
            if record.fingerprint.as_deref() == Some(self.status.fingerprint.as_str()) {
                tracing::warn!(
                    plugin = %self.spec.name,
                    "plugin `{}` stays disabled: {reason}\nhint: fix the cause, then change its configuration or executable to enable it again",
                    self.spec.name
                );
                self.stay_disabled(reason).await;
                return;
            }
            tracing::info!(plugin = %self.spec.name, "plugin `{}` was disabled ({reason}); its configuration or executable changed, so it is enabled again", self.spec.name);
        }

        loop {
            let started = Instant::now();
            let (reason, after) = match self.session().await {
                End::Stopped => break,
                End::Disable(reason) => {
                    self.disable(reason).await;
                    return;
                }
                End::Crashed(reason) => (reason, self.policy.on_crash(started, Instant::now())),
                // Charged to the event it hung on: `max_attempts` bounds it, not the crash loop.
                End::Hung(reason) => (
                    reason,
                    AfterCrash::Restart(self.policy.on_hang(started, Instant::now())),
                ),
            };
            self.status.restarts += 1;
            self.status.last_error = Some(reason.clone());
            match after {
                AfterCrash::Disable => {
                    let window = humantime::format_duration(policy::CRASH_WINDOW);
                    self.alerts.send(Alert::CrashLoop {
                        plugin: self.spec.name.clone(),
                        reason: reason.clone(),
                    });
                    self.disable_quietly(format!(
                        "crash loop: {CRASH_LIMIT} restarts within {window}; last: {reason}"
                    ))
                    .await;
                    return;
                }
                AfterCrash::Restart(delay) => {
                    tracing::warn!(
                        plugin = %self.spec.name,
                        "plugin `{}` {reason}; restarting in {}",
                        self.spec.name,
                        humantime::format_duration(delay)
                    );
                    self.set_state(PluginState::Backoff, None);
                    tokio::select! {
                        _ = sleep(delay) => {}
                        _ = self.cancel.cancelled() => break,
                    }
                }
            }
        }
        self.publish_cursor();
        self.set_state(PluginState::Stopped, None);
        self.report.send_replace(ActorReport::default());
    }

    async fn disable(&mut self, reason: String) {
        self.alerts.send(Alert::PluginDisabled {
            plugin: self.spec.name.clone(),
            reason: reason.clone(),
        });
        self.disable_quietly(reason).await;
    }

    /// Disables without an alert of its own (the caller sent a more precise one).
    async fn disable_quietly(&mut self, reason: String) {
        tracing::error!(
            plugin = %self.spec.name,
            "plugin `{}` is disabled: {reason}\nhint: it keeps its position; fix the cause, then change its configuration or executable to enable it again",
            self.spec.name
        );
        self.publish_cursor();
        self.stay_disabled(reason).await;
    }

    async fn stay_disabled(&mut self, reason: String) {
        self.status.disabled_reason = Some(reason);
        self.set_state(PluginState::Disabled, None);
        self.report.send_replace(ActorReport {
            caught_up_to: None,
            disabled: true,
        });
        self.cancel.cancelled().await;
    }

    fn set_state(&mut self, state: PluginState, pid: Option<u32>) {
        self.status.state = state;
        self.status.pid = pid;
        if state != PluginState::Disabled {
            self.status.disabled_reason = None;
        }
        self.metrics.set_restarts(self.status.restarts);
        if state != PluginState::Running {
            self.metrics.set_in_flight(0);
        }
        self.store.set_status(&self.spec.name, self.status.clone());
        self.live.send_modify(|l| {
            l.state = state;
            l.pid = pid;
            if state == PluginState::Running {
                l.handshakes += 1;
            }
        });
    }

    fn publish_cursor(&mut self) {
        if !self.sent.is_empty() {
            let n = self.sent.len() as u64;
            self.live.send_modify(|l| l.deliveries += n);
            self.store
                .sent(&self.spec.name, std::mem::take(&mut self.sent));
            self.published_at = Instant::now();
        }
        let cursor = self.session.window.cursor();
        if cursor != self.published_cursor {
            self.store.set_cursor(&self.spec.name, cursor);
            self.published_cursor = cursor;
            self.published_at = Instant::now();
            self.progress.send_replace(cursor);
        }
        // At most once a second while busy; at once when caught up or stopping.
        let summary = if self.idle() {
            self.timings.take_summary_now()
        } else {
            self.timings.take_summary()
        };
        if let Some(json) = summary {
            self.store.set_timings(&self.spec.name, json);
        }
    }

    /// Publishes a moved cursor now and then rather than after every answer: the store commits in
    /// groups anyway, and one message per answer would wake it for each one.
    fn publish_cursor_soon(&mut self) {
        if self.unpublished()
            && (self.session.window.is_empty() || self.published_at.elapsed() >= PUBLISH_EVERY)
        {
            self.publish_cursor();
        }
    }

    /// Whether a cursor move or a delivery waits to be handed to the store.
    fn unpublished(&self) -> bool {
        self.session.window.cursor() != self.published_cursor || !self.sent.is_empty()
    }

    /// Nothing in flight and nothing left to read: the plugin has caught up with the journal.
    fn idle(&self) -> bool {
        self.session.window.is_empty()
            && self.buffer.is_empty()
            && self.replays.is_empty()
            && self.session.window.frontier() >= *self.head.borrow()
    }

    fn publish_report(&self) {
        // Only a plugin that reached the head reports: anything else would change the report with
        // every event and wake the supervisor for nothing.
        let caught_up = self.status.state == PluginState::Running && self.idle();
        let report = ActorReport {
            caught_up_to: caught_up.then(|| self.session.window.frontier()),
            disabled: false,
        };
        self.report.send_if_modified(|r| {
            let changed = *r != report;
            *r = report;
            changed
        });
    }

    async fn session(&mut self) -> End {
        self.session_started = Instant::now();
        self.set_state(PluginState::Starting, None);
        let mut child = match PluginChild::spawn(&self.spec, self.metrics.log_dropped.clone()) {
            Ok(c) => c,
            Err(e) => {
                return End::Crashed(format!(
                    "cannot be started (command `{}`): {e}",
                    self.spec.command.join(" ")
                ));
            }
        };
        self.set_state(PluginState::Starting, Some(child.pid()));
        let register = match self.handshake(&mut child).await {
            Ok(r) => r,
            Err(end) => return end,
        };
        self.subscriptions = register.subscriptions;
        self.alerts.set_recipients(
            &self.spec.name,
            match register.alerts {
                None | Some(AlertRecipients::Default(true)) => Recipients::Configured,
                Some(AlertRecipients::Default(false)) => Recipients::Nobody,
                Some(AlertRecipients::To(to)) => Recipients::To(to),
            },
        );
        self.store.set_subscriptions(
            &self.spec.name,
            serde_json::to_string(&self.subscriptions).unwrap_or_default(),
        );
        self.session.begin(register.max_in_flight, Instant::now());
        self.buffer.clear();
        self.load_replays().await;
        self.set_state(PluginState::Running, Some(child.pid()));
        tracing::info!(
            plugin = %self.spec.name,
            pid = child.pid(),
            subscriptions = self.subscriptions.len(),
            max_in_flight = register.max_in_flight,
            cursor = self.session.window.cursor(),
            "plugin `{}` is running",
            self.spec.name
        );
        let end = self.serve(&mut child).await;
        self.publish_cursor();
        // What it answered in this session is recorded in full, however it ended.
        if let Some(json) = self.timings.take_summary_now() {
            self.store.set_timings(&self.spec.name, json);
        }
        end
    }

    async fn handshake(&mut self, child: &mut PluginChild) -> Result<Register, End> {
        let hello = DaemonMessage::Hello(Hello {
            protocols: SUPPORTED.to_vec(),
            plugin: self.spec.name.clone(),
            config: self.spec.config.clone(),
        });
        child.send(encode(&hello));
        let limit = self.spec.limits.handshake_timeout;
        let hard = self.hard.clone();
        let cancel = self.cancel.clone();
        tokio::select! {
            biased;
            _ = hard.cancelled() => {
                child.kill().await;
                Err(End::Stopped)
            }
            _ = cancel.cancelled() => {
                child.close_stdin();
                self.stop_child(child).await;
                Err(End::Stopped)
            }
            msg = child.incoming.recv() => {
                let failure = match msg {
                    // A secret the plugin wrote never reaches a log, the database or an answer.
                    Some(Incoming::Line(line)) => {
                        let line = crate::redact::redact_bytes(&line);
                        match decode_plugin_line(&line) {
                        Ok(PluginMessage::Register(reg)) => match reg.validate(SUPPORTED) {
                            Ok(()) => return Ok(reg),
                            Err(e) => format!("failed handshake: {e}"),
                        },
                        Ok(PluginMessage::Fatal { error }) => format!("fatal error instead of `register`: {error}"),
                        Ok(other) => format!("failed handshake: expected `register`, got `{}`", other.kind()),
                        Err(e) => format!(
                            "failed handshake: {}: `{}`\nhint: stdout carries protocol messages only; log to stderr",
                            first_line(&e.to_string()),
                            excerpt(&line, EXCERPT)
                        ),
                        }
                    }
                    Some(Incoming::TooLong(n)) => format!("failed handshake: wrote a line of {n} bytes, over the 16 MiB limit"),
                    None => {
                        let status = self.wait_exit(child).await;
                        return Err(self.exit_end(status, child, " during the handshake").await);
                    }
                };
                child.kill().await;
                Err(End::Disable(failure))
            }
            _ = sleep(limit) => {
                child.kill().await;
                Err(End::Crashed(format!("did not answer `hello` within {}", humantime::format_duration(limit))))
            }
        }
    }

    async fn serve(&mut self, child: &mut PluginChild) -> End {
        self.session.start_pings(Instant::now());
        let step = self.serve_loop(child).await;
        match step {
            Step::Hard => {
                child.kill().await;
                End::Stopped
            }
            Step::Shutdown => self.shutdown(child).await,
            Step::Kill(end) => {
                child.kill().await;
                end
            }
            Step::StdoutClosed => {
                let status = self.wait_exit(child).await;
                self.exit_end(status, child, "").await
            }
            Step::Exited(status) => {
                // Take the lines it wrote before exiting: a `fatal` says more than the exit.
                while let Ok(Some(m)) =
                    timeout(Duration::from_millis(200), child.incoming.recv()).await
                {
                    if let Err(end) = self.on_incoming(m, &child.stdin) {
                        child.signal(Signal::SIGKILL);
                        return end;
                    }
                }
                self.exit_end(status, child, "").await
            }
        }
    }

    /// The serving loop. Its futures (cancellation, the child's exit, the timer) live across
    /// iterations: creating them anew for every event would cost more than the event.
    async fn serve_loop(&mut self, child: &mut PluginChild) -> Step {
        let PluginChild {
            process,
            incoming,
            stdin,
            ..
        } = child;
        let (hard, cancel) = (self.hard.clone(), self.cancel.clone());
        let far = Instant::now() + Duration::from_secs(24 * 3600);
        let hard_stop = hard.cancelled();
        let graceful_stop = cancel.cancelled();
        let exited = process.wait();
        let timer = tokio::time::sleep_until(far.into());
        tokio::pin!(hard_stop, graceful_stop, exited, timer);
        let mut armed: Option<Instant> = None;
        loop {
            if let Err(end) = self.fill(stdin).await {
                return Step::Kill(end);
            }
            self.publish_cursor_soon();
            self.publish_report();
            self.metrics.set_in_flight(self.session.window.len());
            // The timer is only moved earlier: when it fires early, nothing is due and it is
            // armed again. This spares a timer update for every event.
            let next = self.next_timer(far);
            if armed.is_none_or(|a| next < a) {
                timer.as_mut().reset(next.into());
                armed = Some(next);
            }
            // `fill` stopped with room left only when the journal has nothing more yet.
            let waiting = self.session.window.has_room() && self.buffer.is_empty();
            tokio::select! {
                biased;
                _ = &mut hard_stop => return Step::Hard,
                _ = &mut graceful_stop => return Step::Shutdown,
                msg = incoming.recv() => match msg {
                    Some(m) => {
                        let mut result = self.on_incoming(m, stdin);
                        // Take what else is already there before committing and refilling.
                        while result.is_ok() {
                            match incoming.try_recv() {
                                Ok(m) => result = self.on_incoming(m, stdin),
                                Err(_) => break,
                            }
                        }
                        if let Err(end) = result {
                            return Step::Kill(end);
                        }
                    }
                    None => return Step::StdoutClosed,
                },
                status = &mut exited => return Step::Exited(status.ok()),
                _ = &mut timer => {
                    armed = None;
                    if let Err(end) = self.on_timer(stdin) {
                        return Step::Kill(end);
                    }
                    self.publish_cursor_soon();
                }
                changed = self.head.changed(), if waiting => {
                    if changed.is_err() {
                        // The store is gone: the daemon is stopping.
                        return Step::Shutdown;
                    }
                }
                changed = self.replay.changed(), if self.replay_open => {
                    match changed {
                        Ok(()) => self.load_replays().await,
                        // The keeper is gone; it stops this run too.
                        Err(_) => self.replay_open = false,
                    }
                }
                _ = gate_moved(&mut self.gate), if waiting => {}
            }
        }
    }

    /// Reads the failed events an operator asked for again.
    async fn load_replays(&mut self) {
        let plugin = self.spec.name.clone();
        let cursor = self.session.window.cursor();
        match self.store.replay_rows(&plugin).await {
            Ok(Ok((rows, missing))) => {
                for event_id in missing {
                    tracing::warn!(plugin = %self.spec.name, event_id, "plugin `{}`: failed event {event_id} cannot be retried: it left the journal", self.spec.name);
                }
                let queued: std::collections::HashSet<i64> =
                    self.replays.iter().map(|(r, _)| r.seq).collect();
                // An event after the cursor (the plugin was rewound) comes from the journal anyway.
                let fresh: Vec<(JournalRow, u32)> = rows
                    .into_iter()
                    .filter(|(r, _)| r.seq <= cursor && !queued.contains(&r.seq))
                    .filter(|(r, _)| self.session.window.get_mut(r.seq).is_none())
                    .collect();
                self.replays.extend(fresh);
            }
            Ok(Err(e)) | Err(e) => {
                tracing::error!(plugin = %self.spec.name, error = %e, "cannot read the failed events to retry");
            }
        }
    }

    /// The names of the subscriptions `row` matches.
    fn matching(&self, row: &JournalRow) -> Vec<String> {
        matching(&self.subscriptions, row)
    }

    /// Sends journal events while the window has room.
    async fn fill(&mut self, stdin: &Stdin) -> Result<(), End> {
        while self.session.window.has_room() {
            let Some((row, attempts)) = self.replays.pop_front() else {
                break;
            };
            let names = self.matching(&row);
            if names.is_empty() {
                tracing::info!(plugin = %self.spec.name, event_id = row.event_id, "plugin `{}` no longer subscribes to failed event {}; forgetting it", self.spec.name, row.event_id);
                self.store.resolve_failed(&self.spec.name, row.event_id);
                continue;
            }
            tracing::info!(plugin = %self.spec.name, event_id = row.event_id, "delivering failed event {} to plugin `{}` again, as an operator asked", row.event_id, self.spec.name);
            stdin.send(self.session.replay(row, names, attempts, Instant::now()));
        }
        while self.session.window.has_room() {
            if self.buffer.is_empty() {
                let mut head = *self.head.borrow_and_update();
                if let Some(gate) = &mut self.gate {
                    head = head.min(*gate.borrow_and_update());
                }
                if head <= self.session.window.frontier() {
                    break;
                }
                match self
                    .store
                    .read_events(self.session.window.frontier(), READ_BATCH)
                    .await
                {
                    Ok(rows) if rows.is_empty() => break,
                    Ok(rows) => self
                        .buffer
                        .extend(rows.into_iter().take_while(|r| r.seq <= head)),
                    // The store stopped: the daemon is stopping with it.
                    Err(e @ StoreError::Stopped(_)) => {
                        tracing::error!(plugin = %self.spec.name, error = %e, "cannot read the journal");
                        return Err(End::Stopped);
                    }
                    // A damaged part of the journal stops this plugin, not the daemon.
                    Err(e) => {
                        return Err(End::Disable(format!(
                            "cannot read the journal after its position (seq {}): {}",
                            self.session.window.frontier(),
                            first_line(&e.to_string())
                        )));
                    }
                }
            }
            let Some(row) = self.buffer.pop_front() else {
                break;
            };
            // A plugin migrated from shotgunEvents skips what the incumbent already processed.
            let done_before = self.resume.as_ref().is_some_and(|r| r.done(row.event_id));
            let names = if done_before {
                Vec::new()
            } else {
                self.matching(&row)
            };
            if names.is_empty() {
                self.session.window.skip(row.seq);
                continue;
            }
            let (line, sent) = self.session.deliver(row, names, Instant::now());
            stdin.send(line);
            tracing::trace!(plugin = %self.spec.name, event_id = sent.event_id, attempt = sent.attempt, "delivered");
            self.sent.push(sent);
        }
        Ok(())
    }

    /// Hands what the plugin wrote to the session, and does what it asks.
    fn on_incoming(&mut self, incoming: Incoming, stdin: &Stdin) -> Result<(), End> {
        let result =
            self.session
                .on_incoming(incoming, Instant::now(), fastrand::f64, &mut self.effects);
        self.perform(stdin);
        result
    }

    /// Hands the timer to the session, and does what it asks.
    fn on_timer(&mut self, stdin: &Stdin) -> Result<(), End> {
        let now = Instant::now();
        let restart_delay = self.policy.peek_delay(self.session_started, now);
        let result = self.session.on_timer(now, restart_delay, &mut self.effects);
        self.perform(stdin);
        result
    }

    /// Does what the session asked for, in order.
    fn perform(&mut self, stdin: &Stdin) {
        let mut effects = std::mem::take(&mut self.effects);
        for effect in effects.drain(..) {
            match effect {
                Effect::Write(line) => stdin.send(line),
                Effect::Sent(sent) => self.sent.push(sent),
                Effect::Answered {
                    event_id,
                    attempt,
                    outcome,
                    duration,
                    created_at,
                } => self.record_timing(event_id, attempt, outcome, duration, created_at),
                Effect::Finished {
                    seq,
                    event_id,
                    clear_retry,
                    resolve_failed,
                } => {
                    if clear_retry {
                        self.store.clear_retry(&self.spec.name, seq);
                    }
                    if resolve_failed {
                        self.store.resolve_failed(&self.spec.name, event_id);
                    }
                    tracing::trace!(plugin = %self.spec.name, event_id, "finished");
                }
                Effect::Retry {
                    seq,
                    event_id,
                    attempt,
                    delay,
                    error,
                    nacked,
                } => {
                    self.store
                        .retry(&self.spec.name, seq, event_id, attempt, delay, &error);
                    if nacked {
                        tracing::warn!(
                            plugin = %self.spec.name,
                            event_id,
                            attempt,
                            "plugin `{}` could not process event {event_id} (attempt {attempt}): {}; retrying in {}",
                            self.spec.name,
                            crate::table::headline(&error),
                            humantime::format_duration(Duration::from_millis(delay.as_millis() as u64))
                        );
                    }
                }
                Effect::Failed {
                    seq,
                    event_id,
                    attempts,
                    error,
                } => {
                    self.store
                        .failed(&self.spec.name, seq, event_id, attempts, &error);
                    self.alerts.send(Alert::EventFailed {
                        plugin: self.spec.name.clone(),
                        event_id,
                        error: error.clone(),
                    });
                    tracing::error!(
                        plugin = %self.spec.name,
                        event_id,
                        attempts,
                        "plugin `{}` failed event {event_id}: {}; recorded in failed_events, moving on",
                        self.spec.name,
                        crate::table::headline(&error)
                    );
                }
            }
        }
        self.effects = effects;
    }

    /// Writes the timing record of an answered delivery and counts its duration.
    fn record_timing(
        &mut self,
        event_id: i64,
        attempt: u32,
        outcome: &str,
        duration: Duration,
        created_at: Option<String>,
    ) {
        self.timings.record(duration);
        self.metrics.delivered(outcome, duration);
        // The record itself only when something takes it (the timing log): parsing the event's
        // time for every answer would cost the hot path for nothing otherwise.
        if !crate::logging::timing_records_taken() {
            return;
        }
        let delay_ms = created_at
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
            .map(|d| d.as_millis() as i64);
        tracing::info!(
            target: "sgevents::timing",
            plugin = %self.spec.name,
            event_id,
            attempt,
            outcome,
            duration_ms = duration.as_secs_f64() * 1000.0,
            delay_ms,
            "delivery"
        );
    }

    /// The next moment something may be due; `far` when nothing is.
    fn next_timer(&self, far: Instant) -> Instant {
        let publish_at = self
            .unpublished()
            .then(|| self.published_at + PUBLISH_EVERY);
        [self.session.next_timer(), publish_at]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(far)
    }

    /// Waits for an exit after stdout closed; kills a child that closed stdout but stays.
    async fn wait_exit(&self, child: &mut PluginChild) -> Option<ExitStatus> {
        match timeout(self.spec.limits.stop_grace, child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                child.kill().await;
                child.try_wait()
            }
        }
    }

    async fn exit_end(
        &self,
        status: Option<ExitStatus>,
        child: &mut PluginChild,
        when: &str,
    ) -> End {
        // Clean up whatever the plugin left behind in its process group.
        child.signal(Signal::SIGKILL);
        let tail = child
            .stderr_tail()
            .await
            .map(|t| format!(" (last log line: {t})"))
            .unwrap_or_default();
        match status {
            Some(s) if s.code() == Some(125) => {
                End::Disable(format!("exited with status 125{when}{tail}"))
            }
            Some(s) => End::Crashed(format!("exited{when} ({s}){tail}")),
            None => End::Crashed(format!("exited{when}{tail}")),
        }
    }

    /// The graceful stop: `shutdown`, drain, close stdin, then signals.
    async fn shutdown(&mut self, child: &mut PluginChild) -> End {
        let drain = self.spec.limits.shutdown_drain;
        child.send(encode(&DaemonMessage::Shutdown {
            drain_ms: drain.as_millis() as u64,
        }));
        let until = Instant::now() + drain;
        let hard = self.hard.clone();
        while self.session.window.any_sent() {
            tokio::select! {
                biased;
                _ = hard.cancelled() => {
                    child.kill().await;
                    return End::Stopped;
                }
                msg = child.incoming.recv() => match msg {
                    Some(m) => {
                        if self.on_incoming(m, &child.stdin).is_err() {
                            break;
                        }
                    }
                    None => break,
                },
                _ = sleep_until(until.into()) => {
                    tracing::warn!(plugin = %self.spec.name, "plugin `{}` did not answer its events within {}; they will be delivered again", self.spec.name, humantime::format_duration(drain));
                    break;
                }
            }
        }
        self.publish_cursor();
        child.close_stdin();
        self.stop_child(child).await;
        // What it wrote last (a summary, say) is logged before the daemon goes on to exit.
        child.stderr_relayed().await;
        End::Stopped
    }

    /// After stdin is closed: wait, SIGTERM the group, wait, SIGKILL.
    async fn stop_child(&self, child: &mut PluginChild) {
        if self.exits_within_grace(child).await {
            return;
        }
        tracing::info!(plugin = %self.spec.name, "plugin `{}` did not exit when its stdin closed; sending SIGTERM", self.spec.name);
        child.signal(Signal::SIGTERM);
        if self.exits_within_grace(child).await {
            return;
        }
        tracing::warn!(plugin = %self.spec.name, "plugin `{}` ignored SIGTERM; killing it", self.spec.name);
        child.kill().await;
    }

    /// Waits up to `stop_grace` for the child to exit; true when it did, or when a hard stop
    /// killed it meanwhile.
    async fn exits_within_grace(&self, child: &mut PluginChild) -> bool {
        tokio::select! {
            biased;
            _ = self.hard.cancelled() => {
                child.kill().await;
                true
            }
            _ = child.wait() => true,
            _ = sleep(self.spec.limits.stop_grace) => false,
        }
    }
}

/// Waits until the gate of an `after` plugin moves; never, without a gate or once the plugins
/// it waits for are gone.
async fn gate_moved(gate: &mut Option<watch::Receiver<i64>>) {
    match gate {
        Some(rx) => {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

/// The names of the `subscriptions` that journaled event `row` matches, in their order: what the
/// actor addresses an event to (none: it is not sent). `sgevents deliver` uses it too.
pub(crate) fn matching(subscriptions: &[Subscription], row: &JournalRow) -> Vec<String> {
    let fields = MatchFields {
        event_type: &row.event_type,
        attribute_name: row.attribute_name.as_deref(),
        entity_type: row.entity_type.as_deref(),
        project_id: row.project_id,
        is_transient: row.is_transient,
    };
    subscriptions
        .iter()
        .filter(|s| s.matches_fields(&fields))
        .map(|s| s.name.clone())
        .collect()
}
