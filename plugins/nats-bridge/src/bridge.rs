//! The session with the daemon and the publishes into JetStream.
//!
//! One task handles the daemon's messages in order. For each event it checks the connection and
//! the stream, then *sends* the publish at once, so the messages reach the server in journal order
//! on the one connection; the wait for JetStream's acknowledgement joins a set of up to
//! `max_in_flight` waits, and each answer (`ack`, `nack`, `term`) is written when its wait ends.
//!
//! Faults, and what the daemon is told:
//! - NATS unreachable (not connected, no acknowledgement in `publish_timeout`): `nack` with
//!   `retry_after_ms` (1 s doubling with the attempt, up to a minute); one warning when the outage
//!   starts and one line when publishing works again, whatever the number of events.
//!
//! **Order across outages.** A connection ([`Link`]) is used until its first fault and never
//! again: async-nats, left to reconnect, would send what it still had queued on the new
//! connection while what it had written to the dead one is lost, storing later events first. The
//! bridge instead drops the whole client (its runtime) and opens a new link with backoff; what
//! was pending on the old link fails and is nacked, and nothing after it is sent on the new link
//! until it has (see [`Session`]), so the daemon's redeliveries come first, in order.
//! - A publish JetStream refuses for good (a subject no stream covers, a message over the
//!   server's `max_payload` or the stream's `max_msg_size`, another 400 answer): `term` with why.
//! - The stream missing and `create_stream = false`: `fatal` naming the stream.
//!
//! Every message carries `Nats-Msg-Id: <site>:<event_id>`, so a redelivery (after a crash of the
//! daemon, of the bridge, or of the server) inside the stream's duplicate window is stored once.

use std::collections::BTreeMap;
use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::header::{self, HeaderMap};
use async_nats::jetstream::context::{
    GetStreamErrorKind, PublishAckFuture, PublishError, PublishErrorKind,
};
use async_nats::jetstream::stream::{self, StorageType};
use async_nats::jetstream::{self, Context};
use async_nats::{ConnectOptions, Event};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use sgevents_sdk::Logger;
use sgevents_sdk::protocol::{
    DaemonMessage, EventDelivery, PluginMessage, Register, choose_version, encode,
};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::stdin::Incoming;

/// The exit status that tells the daemon not to restart the plugin.
const EXIT_FATAL: u8 = 125;

/// The JetStream error code of a stream that does not exist.
const STREAM_NOT_FOUND: u64 = 10059;

/// How long after its retry a failed event that did not come back stops holding later ones.
const STALE: Duration = Duration::from_secs(30);

/// The longest an event is held back, unanswered, behind a failed one: well inside the daemon's
/// 15 minutes per delivery.
const HOLD_MAX: Duration = Duration::from_secs(10 * 60);

/// How often held-back events are looked at.
const TICK: Duration = Duration::from_millis(500);

/// The longest `retry_after_ms` the bridge asks for while NATS is unreachable.
const RETRY_MAX: Duration = Duration::from_secs(60);

/// How one event is answered, or that the plugin must stop.
enum Answer {
    Message(PluginMessage),
    Fatal(String),
}

/// A publish awaiting its acknowledgement: the event and its answer.
type Pending = Pin<Box<dyn Future<Output = (i64, Answer)> + Send>>;

/// Runs the session until stdin closes; returns the exit status.
pub(crate) async fn run(mut incoming: mpsc::Receiver<Incoming>, log: Logger) -> u8 {
    let hello = loop {
        match incoming.recv().await {
            None => return 0,
            Some(Incoming::Message(message, _)) => match *message {
                DaemonMessage::Hello(hello) => break hello,
                other => log.warn(format_args!(
                    "ignoring `{}` before `hello`",
                    message_kind(&other)
                )),
            },
            Some(Incoming::Bad(why)) => log.error(why),
        }
    };
    let Some(version) = choose_version(&hello.protocols) else {
        return fatal(&format!(
            "no common protocol version: the daemon offers {:?}, the bridge speaks 1\nhint: run a \
             daemon and a bridge of the same release",
            hello.protocols
        ));
    };
    let site_url = std::env::var("SGEVENTS_SITE_URL").ok();
    let config = match Config::parse(&hello.config, site_url.as_deref(), |name| {
        std::env::var(name).ok()
    }) {
        Ok(config) => config,
        Err(e) => return fatal(&e),
    };
    let register = Register {
        protocol: version,
        subscriptions: config.subscriptions.clone(),
        max_in_flight: config.max_in_flight,
        alerts: None,
    };
    if let Err(e) = register.validate(&hello.protocols) {
        return fatal(&format!(
            "invalid `subscriptions` in the configuration: {e}"
        ));
    }
    let bridge = match Bridge::connect(config, log.clone()).await {
        Ok(bridge) => bridge,
        Err(e) => return fatal(&e),
    };
    log.info(format_args!(
        "publishing to stream `{}` on `{}` as site `{}` (subject `{}`, {} in flight)",
        bridge.config.stream,
        bridge.config.urls.join(","),
        bridge.config.site,
        bridge.config.subject.text(),
        bridge.config.max_in_flight
    ));
    if !write(&PluginMessage::Register(register)) {
        return 0;
    }

    let mut session = Session {
        bridge,
        pending: FuturesUnordered::new(),
        inflight: BTreeMap::new(),
        failed: BTreeMap::new(),
        queued: BTreeMap::new(),
    };
    let mut tick = tokio::time::interval(TICK);
    let mut shutting_down = false;
    let end = loop {
        let step = tokio::select! {
            Some((event_id, answer)) = session.pending.next(), if !session.pending.is_empty() => {
                session.inflight.remove(&event_id);
                session.answered(event_id, answer)
            }
            _ = tick.tick() => session.tick(),
            message = incoming.recv() => {
                let Some(message) = message else { break Ok(()) };
                let (message, raw) = match message {
                    Incoming::Message(message, raw) => (*message, raw),
                    Incoming::Bad(why) => {
                        log.error(why);
                        continue;
                    }
                };
                match message {
                    DaemonMessage::Event(delivery) if shutting_down => send(PluginMessage::Nack {
                        event_id: delivery.event_id,
                        error: "plugin is shutting down".into(),
                        retry_after_ms: None,
                    }),
                    DaemonMessage::Event(delivery) => session.event(delivery, raw).await,
                    DaemonMessage::Ping { nonce } => send(PluginMessage::Pong { nonce }),
                    DaemonMessage::Shutdown { .. } => {
                        shutting_down = true;
                        session.give_back("plugin is shutting down")
                    }
                    DaemonMessage::Hello(_) => {
                        log.error("ignoring a second `hello`");
                        Ok(())
                    }
                }
            }
        };
        let step = match step {
            Ok(()) => session.release().await,
            Err(end) => Err(end),
        };
        if let Err(end) = step {
            break Err(end);
        }
    };
    // stdin closed (or the daemon is gone): answer what is in flight, then leave.
    let end = end.and_then(|()| session.give_back("plugin is stopping"));
    let end = match end {
        Ok(()) => loop {
            let Some((event_id, answer)) = session.pending.next().await else {
                break Ok(());
            };
            session.failed.remove(&event_id);
            session.inflight.remove(&event_id);
            if let Err(end) = answer_to_daemon(answer) {
                break Err(end);
            }
        },
        Err(end) => Err(end),
    };
    if let Some(link) = session.bridge.link() {
        let _ = tokio::time::timeout(Duration::from_secs(2), link.client.flush()).await;
    }
    match end {
        Ok(()) | Err(End::DaemonGone) => 0,
        Err(End::Fatal(error)) => fatal(&error),
    }
}

/// Why the session ends early.
enum End {
    /// stdout is closed: the daemon is gone.
    DaemonGone,
    /// The bridge cannot go on.
    Fatal(String),
}

/// Writes a message; the daemon being gone ends the session.
fn send(message: PluginMessage) -> Result<(), End> {
    if write(&message) {
        Ok(())
    } else {
        Err(End::DaemonGone)
    }
}

fn answer_to_daemon(answer: Answer) -> Result<(), End> {
    match answer {
        Answer::Message(message) => send(message),
        Answer::Fatal(error) => Err(End::Fatal(error)),
    }
}

/// An event held back, unanswered, behind an earlier one whose publish failed.
struct Queued {
    delivery: EventDelivery,
    raw: Option<Bytes>,
    /// When it was delivered.
    since: Instant,
    /// When its deadline was last pushed back (delivery or `progress`).
    progressed: Instant,
}

/// The session's events: the publishes awaiting their acknowledgement (and the connection each
/// was sent on), the events nacked after a failed publish (until the daemon brings them back),
/// and the events held back behind them.
///
/// **Order.** An event is published only when nothing before it can still be stored later:
/// - no earlier event waits for its redelivery after a failed publish. The daemon's window lets
///   later events overtake a nacked one; such an event is held back, unanswered (with `progress`
///   to keep its deadline), and published once nothing earlier waits;
/// - no earlier event is still awaiting its acknowledgement on an *older* connection. A
///   connection is used until its first fault and never again ([`Link`]), so what was sent on it
///   and not acknowledged fails as a whole (and comes back from the daemon, in order), while what
///   follows goes on the new one only after those failures are known.
///
/// On one connection, publishes reach the server in the order they were sent (TCP), so the
/// pipelined window keeps the order. A failed event the daemon does not bring back within
/// [`STALE`] of its retry (it gave up after `max_attempts`, or an operator acted) holds nothing
/// any more; an event held back for [`HOLD_MAX`] is nacked, as the daemon's 15-minute limit per
/// delivery requires.
struct Session {
    bridge: Arc<Bridge>,
    pending: FuturesUnordered<Pending>,
    /// The events in `pending`, with the [`Link::id`] of the connection each was sent on.
    inflight: BTreeMap<i64, u64>,
    failed: BTreeMap<i64, Instant>,
    queued: BTreeMap<i64, Queued>,
}

impl Session {
    /// Whether event `event_id` must wait, given the connection `link` it would be sent on.
    fn blocked(&self, event_id: i64, link: Option<u64>) -> bool {
        self.failed.range(..event_id).next().is_some()
            || self
                .inflight
                .range(..event_id)
                .any(|(_, sent_on)| Some(*sent_on) != link)
    }

    /// A new delivery from the daemon.
    async fn event(&mut self, delivery: EventDelivery, raw: Option<Bytes>) -> Result<(), End> {
        let event_id = delivery.event_id;
        self.failed.remove(&event_id);
        let link = self.bridge.live_link().await;
        if self.blocked(event_id, link.as_ref().map(|l| l.id)) {
            let now = Instant::now();
            self.queued.insert(
                event_id,
                Queued {
                    delivery,
                    raw,
                    since: now,
                    progressed: now,
                },
            );
            return Ok(());
        }
        self.publish(link, delivery, raw).await
    }

    async fn publish(
        &mut self,
        link: Option<Arc<Link>>,
        delivery: EventDelivery,
        raw: Option<Bytes>,
    ) -> Result<(), End> {
        let event_id = delivery.event_id;
        let link_id = link.as_ref().map(|l| l.id);
        match Arc::clone(&self.bridge).start(link, delivery, raw).await {
            Start::Waiting(future) => {
                if let Some(link_id) = link_id {
                    self.inflight.insert(event_id, link_id);
                }
                self.pending.push(future);
                Ok(())
            }
            Start::Answered(answer) => self.answered(event_id, answer),
        }
    }

    /// An answer for the daemon; a nack keeps the event among the failed ones.
    fn answered(&mut self, event_id: i64, answer: Answer) -> Result<(), End> {
        if let Answer::Message(PluginMessage::Nack { retry_after_ms, .. }) = &answer {
            let retry = Duration::from_millis(retry_after_ms.unwrap_or(1000));
            self.failed.insert(event_id, Instant::now() + retry);
        }
        answer_to_daemon(answer)
    }

    /// Publishes the held-back events that nothing earlier holds any more, in journal order.
    async fn release(&mut self) -> Result<(), End> {
        let now = Instant::now();
        self.failed.retain(|_, due| *due + STALE > now);
        while let Some(&event_id) = self.queued.keys().next() {
            let link = self.bridge.live_link().await;
            if self.blocked(event_id, link.as_ref().map(|l| l.id)) {
                break;
            }
            let Some(queued) = self.queued.remove(&event_id) else {
                break;
            };
            self.publish(link, queued.delivery, queued.raw).await?;
        }
        Ok(())
    }

    /// Keeps the held-back events alive, and gives back those held too long.
    fn tick(&mut self) -> Result<(), End> {
        let now = Instant::now();
        let mut too_long = Vec::new();
        for (&event_id, queued) in &mut self.queued {
            if now.duration_since(queued.since) > HOLD_MAX {
                too_long.push(event_id);
                continue;
            }
            let third = Duration::from_millis(queued.delivery.deadline_ms / 3);
            if now.duration_since(queued.progressed) >= third {
                queued.progressed = now;
                send(PluginMessage::Progress { event_id })?;
            }
        }
        for event_id in too_long {
            if let Some(queued) = self.queued.remove(&event_id) {
                let answer = nack(
                    event_id,
                    "held back too long behind an event NATS did not store".into(),
                    retry_after(queued.delivery.attempt),
                );
                self.answered(event_id, answer)?;
            }
        }
        Ok(())
    }

    /// Nacks every held-back event (the plugin is stopping).
    fn give_back(&mut self, why: &str) -> Result<(), End> {
        for (event_id, _) in std::mem::take(&mut self.queued) {
            send(PluginMessage::Nack {
                event_id,
                error: why.to_owned(),
                retry_after_ms: None,
            })?;
        }
        Ok(())
    }
}

fn message_kind(message: &DaemonMessage) -> &'static str {
    match message {
        DaemonMessage::Hello(_) => "hello",
        DaemonMessage::Event(_) => "event",
        DaemonMessage::Ping { .. } => "ping",
        DaemonMessage::Shutdown { .. } => "shutdown",
    }
}

/// Writes one protocol line on stdout; `false` when the daemon is gone.
fn write(message: &PluginMessage) -> bool {
    let line = encode(message);
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())
        .and_then(|()| out.flush())
        .is_ok()
}

/// Writes `fatal`, logs it, and returns the status that keeps the plugin stopped.
fn fatal(error: &str) -> u8 {
    sgevents_sdk::logger().error(error);
    write(&PluginMessage::Fatal {
        error: error.to_owned(),
    });
    EXIT_FATAL
}

/// How an event's publish started, inside the bridge.
enum Publish {
    /// Sent; the answer comes when JetStream acknowledges it (or not).
    Waiting(Pin<Box<dyn Future<Output = Answer> + Send>>),
    /// Answered at once.
    Answered(Answer),
}

/// How an event's publish started.
enum Start {
    /// Sent; the answer comes when JetStream acknowledges it (or not).
    Waiting(Pending),
    /// Answered at once (NATS down, a message that can never be stored, or a fatal fault).
    Answered(Answer),
}

/// One connection to NATS, used until its first fault and never again.
///
/// The client (async-nats) queues publishes in memory and, when its connection drops, reconnects
/// by itself and sends what it still had queued, while what was already written to the dead
/// connection is lost: later events of a subject would be stored before earlier ones. So a link
/// never reconnects: the client runs on a runtime of its own, on its own thread, and its
/// reconnect-delay callback, which async-nats calls before any reconnection attempt, marks the
/// link lost and stalls the attempt; the bridge then closes the link, which drops that runtime
/// and with it everything still queued (the publishes awaiting an acknowledgement on it fail at
/// once, and are nacked). The next connection is a new link ([`Bridge::keep_linked`]).
struct Link {
    /// Which link this is (1, 2, ...): publishes remember the link they were sent on.
    id: u64,
    client: async_nats::Client,
    js: Context,
    /// The connection was lost (or the bridge gave up on it): never used again.
    lost: Arc<AtomicBool>,
    /// Dropping it ends the link's runtime, and with it the connection and its queue.
    stop: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl Link {
    /// Connects, on a thread and runtime of the link's own.
    async fn open(id: u64, options: ConnectOptions, config: &Config) -> Result<Link, String> {
        let lost = Arc::new(AtomicBool::new(false));
        let established = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let options = options
            .name(format!("sgevents-nats-bridge ({})", config.site))
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None)
            .reconnect_delay_callback({
                let lost = Arc::clone(&lost);
                let established = Arc::clone(&established);
                move |_| {
                    if established.load(Ordering::Acquire) {
                        // A reconnection: never (the bridge closes this link and opens another).
                        lost.store(true, Ordering::Release);
                        NEVER
                    } else {
                        // The first connection tries each server once, at once.
                        Duration::ZERO
                    }
                }
            })
            .event_callback(|event| async move {
                if let Event::ServerError(e) = event {
                    sgevents_sdk::logger().warn(format_args!("NATS server error: {e}"));
                }
            });
        let urls = config.urls.clone();
        let marked = Arc::clone(&established);
        std::thread::Builder::new()
            .name(format!("nats-link-{id}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cannot start a runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match options.connect(urls).await {
                        Ok(client) => {
                            marked.store(true, Ordering::Release);
                            if ready_tx.send(Ok(client)).is_ok() {
                                let _ = stop_rx.await;
                            }
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                        }
                    }
                });
                // Dropping the runtime here ends the connection's tasks: nothing queued on this
                // link is sent after this.
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        let client = ready_rx
            .await
            .map_err(|_| "the connection's thread ended".to_owned())??;
        let js = jetstream::context::ContextBuilder::new()
            .timeout(config.publish_timeout)
            .max_ack_inflight(config.max_in_flight as usize)
            .backpressure_on_inflight(true)
            .build(client.clone());
        Ok(Link {
            id,
            client,
            js,
            lost,
            stop: std::sync::Mutex::new(Some(stop_tx)),
        })
    }

    fn is_live(&self) -> bool {
        !self.lost.load(Ordering::Acquire) && self.client.connection_state() == State::Connected
    }

    /// Ends the link for good: its runtime stops, dropping whatever it still had queued.
    fn close(&self) {
        self.lost.store(true, Ordering::Release);
        self.stop
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
    }
}

/// How long a lost link's reconnection attempt waits: for ever, in effect (the bridge closes the
/// link long before).
const NEVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// The connection (one [`Link`] at a time), the stream's state and the outage flag.
struct Bridge {
    config: Config,
    log: Logger,
    /// The current link, if any.
    link: std::sync::Mutex<Option<Arc<Link>>>,
    /// Wakes [`Bridge::keep_linked`] when a link is given up.
    lost: tokio::sync::Notify,
    /// The stream was found (or created) on the current link.
    stream_ready: AtomicBool,
    /// An outage was logged and has not ended yet.
    down: Arc<Outage>,
}

impl Bridge {
    /// Checks the connection settings and starts connecting in the background: an unreachable
    /// server is an outage, not an error. Only a configuration that cannot work (an unreadable
    /// credentials file or CA file) is an error.
    async fn connect(config: Config, log: Logger) -> Result<Arc<Bridge>, String> {
        options(&config).await?;
        let bridge = Arc::new(Bridge {
            config,
            log,
            link: std::sync::Mutex::new(None),
            lost: tokio::sync::Notify::new(),
            stream_ready: AtomicBool::new(false),
            down: Arc::new(Outage::default()),
        });
        tokio::spawn(Arc::clone(&bridge).keep_linked());
        Ok(bridge)
    }

    /// Keeps one live link: opens the first, and a new one whenever the current one is lost,
    /// retrying with backoff (100 ms doubling up to 5 s) while NATS cannot be reached.
    async fn keep_linked(self: Arc<Self>) {
        let mut next_id = 1;
        let mut failures: u32 = 0;
        loop {
            if self.link().is_some() {
                // Woken when a link is given up; the timeout catches a connection whose loss
                // only its state shows.
                let _ = tokio::time::timeout(Duration::from_secs(1), self.lost.notified()).await;
                continue;
            }
            let opened = match options(&self.config).await {
                Ok(options) => Link::open(next_id, options, &self.config).await,
                Err(e) => Err(e),
            };
            match opened {
                Ok(link) => {
                    next_id += 1;
                    failures = 0;
                    self.stream_ready.store(false, Ordering::Release);
                    *self.slot() = Some(Arc::new(link));
                }
                Err(e) => {
                    self.down.start(&self.log, &self.urls(), &e);
                    let exp = failures.min(6);
                    failures = failures.saturating_add(1);
                    let delay = Duration::from_millis(100 * 2u64.pow(exp));
                    tokio::time::sleep(delay.min(Duration::from_secs(5))).await;
                }
            }
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Arc<Link>>> {
        self.link
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current link if it is live; a link found lost is given up here.
    fn link(&self) -> Option<Arc<Link>> {
        let mut slot = self.slot();
        match slot.as_ref() {
            Some(link) if link.is_live() => Some(Arc::clone(link)),
            Some(link) => {
                link.close();
                *slot = None;
                drop(slot);
                self.down.start(&self.log, &self.urls(), "connection lost");
                self.lost.notify_one();
                None
            }
            None => None,
        }
    }

    /// The current link; before the first outage, waits a moment for one to be opened.
    async fn live_link(&self) -> Option<Arc<Link>> {
        if let Some(link) = self.link() {
            return Some(link);
        }
        if self.down.is_down() {
            return None;
        }
        // The first connection, or a loss not noticed yet: give it a moment before calling it
        // an outage.
        let patience = self.config.publish_timeout.min(Duration::from_secs(2));
        let since = Instant::now();
        while since.elapsed() < patience && !self.down.is_down() {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if let Some(link) = self.link() {
                return Some(link);
            }
        }
        None
    }

    /// Gives up `link` after a fault on it: nothing more is sent on it, and a new one is opened.
    fn retire(&self, link: &Link, why: &str) {
        let fresh = !link.lost.swap(true, Ordering::AcqRel);
        link.close();
        let current = {
            let mut slot = self.slot();
            let current = slot.as_ref().is_some_and(|current| current.id == link.id);
            if current {
                *slot = None;
            }
            current
        };
        // A late failure on a link given up before (its outage may be over) says nothing new.
        if fresh || current {
            self.down.start(&self.log, &self.urls(), why);
            self.lost.notify_one();
        }
    }

    fn urls(&self) -> String {
        self.config.urls.join(",")
    }

    /// Starts the publish of one event on `link`; its answer comes with the event's id.
    async fn start(
        self: Arc<Self>,
        link: Option<Arc<Link>>,
        delivery: EventDelivery,
        raw: Option<Bytes>,
    ) -> Start {
        let event_id = delivery.event_id;
        let Some(link) = link else {
            self.down.start(&self.log, &self.urls(), "not connected");
            let answer = self.unreachable(event_id, delivery.attempt, "NATS is not connected");
            return Start::Answered(answer);
        };
        match self.publish(link, delivery, raw).await {
            Publish::Answered(answer) => Start::Answered(answer),
            Publish::Waiting(future) => {
                Start::Waiting(Box::pin(async move { (event_id, future.await) }))
            }
        }
    }

    /// Publishes one event on `link`: checks the stream, sends the message.
    async fn publish(
        self: Arc<Self>,
        link: Arc<Link>,
        delivery: EventDelivery,
        raw: Option<Bytes>,
    ) -> Publish {
        let event_id = delivery.event_id;
        let attempt = delivery.attempt;
        if !self.stream_ready.load(Ordering::Acquire) {
            match self.ensure_stream(&link).await {
                Ok(()) => self.stream_ready.store(true, Ordering::Release),
                Err(StreamFault::Fatal(error)) => return Publish::Answered(Answer::Fatal(error)),
                Err(StreamFault::Retry(error)) => {
                    self.down.start(&self.log, &self.urls(), &error);
                    return Publish::Answered(self.unreachable(event_id, attempt, &error));
                }
            }
        }
        let payload = match raw {
            Some(raw) => raw,
            None => match serde_json::to_vec(&delivery.event) {
                Ok(json) => Bytes::from(json),
                Err(e) => {
                    return Publish::Answered(term(event_id, format!("cannot encode it: {e}")));
                }
            },
        };
        let subject = self
            .config
            .subject
            .render(&self.config.site, &delivery.event);
        let headers = self.headers(&delivery);
        let max_payload = link.client.server_info().max_payload;
        let size = payload.len() + headers_len(&headers) + subject.len();
        if max_payload > 0 && size > max_payload {
            return Publish::Answered(term(
                event_id,
                format!(
                    "the message is {size} bytes, over the NATS server's max_payload \
                     ({max_payload} bytes)\nhint: raise `max_payload` in the server's \
                     configuration"
                ),
            ));
        }
        let sent_at = Instant::now();
        match link
            .js
            .publish_with_headers(subject.clone(), headers, payload)
            .await
        {
            Ok(ack) => Publish::Waiting(Box::pin(
                self.finish(link, ack, subject, event_id, attempt, sent_at),
            )),
            Err(e) => {
                self.retire(&link, &e.to_string());
                Publish::Answered(self.unreachable(event_id, attempt, &e.to_string()))
            }
        }
    }

    /// The headers of an event's message.
    fn headers(&self, delivery: &EventDelivery) -> HeaderMap {
        let event = &delivery.event;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::NATS_MESSAGE_ID,
            format!("{}:{}", self.config.site, delivery.event_id).as_str(),
        );
        headers.insert("Sgevents-Site", self.config.site.as_str());
        headers.insert("Sgevents-Event-Id", delivery.event_id.to_string().as_str());
        headers.insert("Sgevents-Event-Type", one_line(&event.event_type).as_str());
        if let Some(at) = &event.created_at {
            headers.insert("Sgevents-Created-At", one_line(at).as_str());
        }
        headers
    }

    /// Waits for JetStream's acknowledgement and turns it into the answer.
    async fn finish(
        self: Arc<Self>,
        link: Arc<Link>,
        ack: PublishAckFuture,
        subject: String,
        event_id: i64,
        attempt: u32,
        sent_at: Instant,
    ) -> Answer {
        match ack.await {
            Ok(_) => {
                self.down.end(&self.log, &self.urls(), sent_at);
                Answer::Message(PluginMessage::Ack { event_id })
            }
            Err(e) => self.refused(&link, e, &subject, event_id, attempt).await,
        }
    }

    /// What a failed publish means.
    async fn refused(
        &self,
        link: &Link,
        error: PublishError,
        subject: &str,
        event_id: i64,
        attempt: u32,
    ) -> Answer {
        match error.kind() {
            PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => {
                // What was sent on this link after this event may be lost too, or still queued:
                // the link is given up, so none of it can be stored after a later event.
                self.retire(link, &error.to_string());
                self.unreachable(event_id, attempt, &format!("no acknowledgement: {error}"))
            }
            PublishErrorKind::StreamNotFound => {
                self.no_stream_for(link, subject, event_id, attempt).await
            }
            _ => {
                let api = std::error::Error::source(&error)
                    .and_then(|s| s.downcast_ref::<jetstream::Error>());
                match api {
                    // A request JetStream refuses as such (too big for the stream, ...).
                    Some(api) if api.code() == 400 => term(
                        event_id,
                        format!("JetStream refused the message on `{subject}`: {api}"),
                    ),
                    _ => nack(
                        event_id,
                        format!("JetStream could not store it: {error}"),
                        retry_after(attempt),
                    ),
                }
            }
        }
    }

    /// Nobody answered the publish: the stream is missing, does not cover the subject, or
    /// JetStream is not ready yet (a server just started).
    async fn no_stream_for(
        &self,
        link: &Link,
        subject: &str,
        event_id: i64,
        attempt: u32,
    ) -> Answer {
        match link.js.get_stream(&self.config.stream).await {
            Ok(mut stream) => {
                let subjects = match stream.info().await {
                    Ok(info) => info.config.subjects.clone(),
                    Err(e) => {
                        return nack(
                            event_id,
                            format!("no stream answered on `{subject}` ({e})"),
                            retry_after(attempt),
                        );
                    }
                };
                if subjects
                    .iter()
                    .any(|pattern| subject_matches(pattern, subject))
                {
                    // Covered: JetStream was not ready (it is recovering the stream).
                    nack(
                        event_id,
                        format!("JetStream did not answer on `{subject}` yet"),
                        retry_after(attempt),
                    )
                } else {
                    term(
                        event_id,
                        format!(
                            "subject `{subject}` is not stored by stream `{}` (its subjects: \
                             {subjects:?})\nhint: add the subject to the stream, or change the \
                             bridge's `subject` template",
                            self.config.stream
                        ),
                    )
                }
            }
            Err(e) if is_not_found(&e) => {
                self.stream_ready.store(false, Ordering::Release);
                match self.ensure_stream(link).await {
                    Ok(()) => nack(
                        event_id,
                        format!("stream `{}` was missing; created again", self.config.stream),
                        Some(Duration::ZERO),
                    ),
                    Err(StreamFault::Fatal(error)) => Answer::Fatal(error),
                    Err(StreamFault::Retry(error)) => nack(event_id, error, retry_after(attempt)),
                }
            }
            Err(e) => nack(
                event_id,
                format!("no stream answered on `{subject}` ({e})"),
                retry_after(attempt),
            ),
        }
    }

    /// Finds the stream, or creates it with the configured settings.
    async fn ensure_stream(&self, link: &Link) -> Result<(), StreamFault> {
        let name = &self.config.stream;
        match link.js.get_stream(name).await {
            Ok(mut stream) => {
                if let Ok(info) = stream.info().await
                    && info.config.duplicate_window < Duration::from_secs(60)
                {
                    self.log.warn(format_args!(
                        "stream `{name}` keeps message ids for {} only: a redelivery after a \
                         longer outage may be stored twice\nhint: `nats stream edit {name} \
                         --dupe-window 2m`",
                        humantime::format_duration(info.config.duplicate_window)
                    ));
                }
                Ok(())
            }
            Err(e) if is_not_found(&e) => {
                if !self.config.create_stream {
                    return Err(StreamFault::Fatal(format!(
                        "stream `{name}` does not exist on `{}`\nhint: create it (`nats stream \
                         add {name} --subjects '{}'`), or set `create_stream = true` in the \
                         bridge's config",
                        self.urls(),
                        self.config.stream_subjects.join(" ")
                    )));
                }
                let c = &self.config;
                let created = link
                    .js
                    .create_stream(stream::Config {
                        name: name.clone(),
                        subjects: c.stream_subjects.clone(),
                        storage: StorageType::File,
                        max_age: c.max_age,
                        max_bytes: c.max_bytes,
                        num_replicas: c.replicas,
                        duplicate_window: c.duplicate_window,
                        ..Default::default()
                    })
                    .await;
                match created {
                    Ok(_) => {
                        self.log.info(format_args!(
                            "created stream `{name}` (subjects {:?}, file storage, {} \
                             replica(s), duplicate window {})",
                            c.stream_subjects,
                            c.replicas,
                            humantime::format_duration(c.duplicate_window)
                        ));
                        Ok(())
                    }
                    // Another bridge made it first.
                    Err(_) if link.js.get_stream(name).await.is_ok() => Ok(()),
                    Err(e) => {
                        let text = e.to_string();
                        if text.contains("subjects overlap") || text.contains("10065") {
                            Err(StreamFault::Fatal(format!(
                                "cannot create stream `{name}`: {e}\nhint: another stream \
                                 already stores {:?}; set `stream` to its name, or change \
                                 `stream_subjects`",
                                c.stream_subjects
                            )))
                        } else {
                            Err(StreamFault::Retry(format!(
                                "cannot create stream `{name}`: {e}"
                            )))
                        }
                    }
                }
            }
            Err(e) => Err(StreamFault::Retry(format!(
                "cannot look up stream `{name}`: {e}"
            ))),
        }
    }

    /// The answer while NATS cannot be reached.
    fn unreachable(&self, event_id: i64, attempt: u32, why: &str) -> Answer {
        nack(
            event_id,
            format!("NATS at `{}` is unreachable: {why}", self.urls()),
            retry_after(attempt),
        )
    }
}

/// The client's options for the configured credentials and TLS (read again for each link).
async fn options(config: &Config) -> Result<ConnectOptions, String> {
    let mut options = match &config.auth {
        crate::config::Auth::None => ConnectOptions::new(),
        crate::config::Auth::CredsFile(path) => ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|e| {
            format!(
                "cannot read config `creds_file` `{}`: {e}\nhint: give the path of the \
                     `.creds` file (JWT and seed) the NATS account issued, readable by the \
                     plugin's user",
                path.display()
            )
        })?,
        crate::config::Auth::UserPassword(user, password) => {
            ConnectOptions::with_user_and_password(user.clone(), password.clone())
        }
        crate::config::Auth::Token(token) => ConnectOptions::with_token(token.clone()),
    };
    if let Some(ca) = &config.ca_file {
        if !ca.is_file() {
            return Err(format!(
                "config `tls.ca_file` `{}` is not a readable file\nhint: give the PEM file of \
                 the certificate authority that signed the NATS servers' certificates",
                ca.display()
            ));
        }
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    Ok(options)
}

/// Why the stream is not usable.
enum StreamFault {
    /// Never on its own: stop the plugin.
    Fatal(String),
    /// Try again later.
    Retry(String),
}

fn is_not_found(error: &async_nats::jetstream::context::GetStreamError) -> bool {
    matches!(error.kind(), GetStreamErrorKind::JetStream(e)
        if e.error_code() == jetstream::ErrorCode(STREAM_NOT_FOUND))
}

/// Whether NATS is unreachable, and since when: one warning when an outage starts, one line when
/// it ends.
#[derive(Default)]
struct Outage {
    since: std::sync::Mutex<Option<Instant>>,
}

impl Outage {
    fn since(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn is_down(&self) -> bool {
        self.since().is_some()
    }

    /// Logs the start of an outage, once.
    fn start(&self, log: &Logger, urls: &str, why: &str) {
        let mut since = self.since();
        if since.is_none() {
            *since = Some(Instant::now());
            log.warn(format_args!(
                "NATS at `{urls}` is unreachable ({why}): events are nacked and retried until it \
                 is back\nhint: check the NATS servers; the bridge reconnects by itself"
            ));
        }
    }

    /// Ends the outage when a publish sent after it started was stored (an acknowledgement of
    /// an older one, still on its way, says nothing about now).
    fn end(&self, log: &Logger, urls: &str, sent_at: Instant) {
        let mut since = self.since();
        if since.is_some_and(|since| sent_at > since) {
            *since = None;
            log.info(format_args!("NATS at `{urls}` is back: publishing again"));
        }
    }
}

/// The delay asked for before the redelivery of a delivery that failed at `attempt`: 1 s,
/// doubling with each attempt, up to [`RETRY_MAX`].
fn retry_after(attempt: u32) -> Option<Duration> {
    let exp = attempt.saturating_sub(1).min(10);
    Some(Duration::from_millis(1000 * 2u64.pow(exp)).min(RETRY_MAX))
}

fn nack(event_id: i64, error: String, retry_after: Option<Duration>) -> Answer {
    Answer::Message(PluginMessage::Nack {
        event_id,
        error,
        retry_after_ms: retry_after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    })
}

fn term(event_id: i64, error: String) -> Answer {
    sgevents_sdk::logger().error(format_args!(
        "event {event_id} can never be published: {error}"
    ));
    Answer::Message(PluginMessage::Term { event_id, error })
}

/// A header value on one line.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The bytes the headers take on the wire, roughly (`NATS/1.0\r\n`, `Name: value\r\n` each).
fn headers_len(headers: &HeaderMap) -> usize {
    12 + headers
        .iter()
        .map(|(name, values)| {
            values
                .iter()
                .map(|v| name.to_string().len() + v.as_str().len() + 4)
                .sum::<usize>()
        })
        .sum::<usize>()
}

/// Whether the NATS subject pattern `pattern` (with `*` and `>`) matches `subject`.
pub(crate) fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut tokens = subject.split('.');
    for p in pattern.split('.') {
        match (p, tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (p, Some(t)) if p == t => {}
            _ => return false,
        }
    }
    tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_match_like_nats() {
        assert!(subject_matches(
            "sgevents.>",
            "sgevents.s.Shotgun_Task_Change"
        ));
        assert!(!subject_matches("sgevents.>", "sgevents"));
        assert!(subject_matches("a.*.c", "a.b.c"));
        assert!(!subject_matches("a.*.c", "a.b.c.d"));
        assert!(!subject_matches("a.b", "a.c"));
        assert!(subject_matches("a.b", "a.b"));
    }

    #[test]
    fn retries_back_off_to_a_minute() {
        let ms = |a| retry_after(a).map(|d| d.as_millis());
        assert_eq!(ms(1), Some(1000));
        assert_eq!(ms(2), Some(2000));
        assert_eq!(ms(7), Some(60_000));
        assert_eq!(ms(u32::MAX), Some(60_000));
    }
}
