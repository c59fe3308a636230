//! The daemon's Prometheus metrics, served by `GET /metrics` on the HTTP listener.
//!
//! # Theory of operation
//!
//! One registry per process ([`global`]), built with the `prometheus-client` crate. Two kinds of
//! metric live in it:
//!
//! - **Pushed** where the event happens, as cheap atomics: source requests and their durations,
//!   gaps given up, store commit durations (kept by the store, [`crate::store::StoreStats`]), and
//!   per plugin the deliveries by outcome, their durations and the stderr lines dropped. The
//!   per-plugin handles are looked up once, when a keeper starts ([`Metrics::plugin`]), and held
//!   by the actor: the per-event path never looks up a label.
//! - **Read at scrape time** ([`Live`], a `Collector`) from what the daemon already keeps: the
//!   journal head (the store's `watch`), the journal's size and the source's position
//!   ([`crate::store::StoreStats`]), each plugin's in-memory cursor and state (its keeper's
//!   `progress` and `live` watches), its restarts and window (atomics its actor sets when they
//!   change), its failed
//!   events (one indexed count on a read-only connection), and the process's own figures from
//!   `/proc/self` and `getrusage`.
//!
//! [`Metrics::encode`] writes the OpenMetrics text format, or the Prometheus text format 0.0.4
//! ([`Format::negotiate`] picks one from the request's `Accept` header). Every metric's name,
//! type, labels and meaning are listed in `docs/OPERATIONS.md`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::watch;

use crate::store::{PluginState, StoreStats};

/// The buckets of `sgevents_plugin_delivery_duration_seconds`: half a millisecond to five minutes.
const DELIVERY_BUCKETS: [f64; 17] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];
/// The buckets of `sgevents_source_request_duration_seconds`: 5 ms to a minute.
const REQUEST_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

fn delivery_histogram() -> Histogram {
    Histogram::new(DELIVERY_BUCKETS)
}

/// The plugin states, in the order of `sgevents_plugin_state`'s series.
const STATES: [PluginState; 5] = [
    PluginState::Starting,
    PluginState::Running,
    PluginState::Backoff,
    PluginState::Disabled,
    PluginState::Stopped,
];

/// The process's registry, created on first use (the daemon forces it at start, which is
/// `process_start_time_seconds`).
pub fn global() -> &'static Metrics {
    static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &GLOBAL
}

/// Which text format to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text (what Prometheus asks for first).
    OpenMetrics,
    /// The Prometheus text format 0.0.4 (for a client that does not ask for OpenMetrics).
    Text,
}

impl Format {
    /// OpenMetrics when the `Accept` header names it, else the Prometheus text format.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabel {
    plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginOutcome {
    plugin: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginStateLabel {
    plugin: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

/// How a request to the ShotGrid site ended, as `sgevents_source_requests_total{outcome}` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestOutcome {
    /// A 2xx answer that could be read.
    Ok,
    /// HTTP 429.
    Throttled,
    /// HTTP 5xx.
    ServerError,
    /// Another HTTP error status, or credentials refused.
    Refused,
    /// No answer: DNS, connection, TLS, timeout.
    Network,
    /// A 2xx answer that is not the expected JSON.
    BadAnswer,
}

impl RequestOutcome {
    fn label(self) -> &'static str {
        match self {
            RequestOutcome::Ok => "ok",
            RequestOutcome::Throttled => "throttled",
            RequestOutcome::ServerError => "server_error",
            RequestOutcome::Refused => "refused",
            RequestOutcome::Network => "network",
            RequestOutcome::BadAnswer => "bad_answer",
        }
    }
}

/// The source's pushed metrics.
#[derive(Debug)]
pub(crate) struct SourceMetrics {
    requests: Family<Outcome, Counter>,
    request_duration: Histogram,
    gaps_given_up: Counter,
    /// The newest event id the site has, as last learnt; `i64::MIN` until then.
    site_newest: Arc<AtomicI64>,
}

impl SourceMetrics {
    /// Counts one request to the site and its duration.
    pub(crate) fn request(&self, outcome: RequestOutcome, took: Duration) {
        self.requests
            .get_or_create(&Outcome {
                outcome: outcome.label(),
            })
            .inc();
        self.request_duration.observe(took.as_secs_f64());
    }

    /// Counts `n` gaps given up.
    pub(crate) fn gaps_given_up(&self, n: u64) {
        self.gaps_given_up.inc_by(n);
    }

    /// The site's newest event id is at least `id`.
    pub(crate) fn site_newest_at_least(&self, id: i64) {
        self.site_newest.fetch_max(id, Ordering::Relaxed);
    }
}

/// One plugin's handles, held by its actor (and its child's stderr task).
#[derive(Debug)]
pub(crate) struct PluginMetrics {
    ack: Counter,
    nack: Counter,
    term: Counter,
    timeout: Counter,
    duration: Histogram,
    /// Stderr lines dropped over `log_rate`.
    pub(crate) log_dropped: Counter,
    live: Arc<PluginLive>,
}

/// A plugin's current state, as its actor and keeper publish it (read at scrape time).
pub(crate) type StateProbe = Box<dyn Fn() -> PluginState + Send + Sync>;

/// What the collector reads of one plugin at scrape time.
struct PluginLive {
    /// Its state.
    state: StateProbe,
    restarts: AtomicI64,
    in_flight: AtomicI64,
    /// Its keeper's in-memory cursor.
    cursor: watch::Receiver<i64>,
}

impl PluginMetrics {
    /// Counts an answered (or timed-out) delivery: `outcome` is the timing record's word (`ack`,
    /// `nack`, `failed` (a nack that gives up: counted as `nack`), `term` or `timeout`).
    pub(crate) fn delivered(&self, outcome: &str, took: Duration) {
        let counter = match outcome {
            "ack" => &self.ack,
            "nack" | "failed" => &self.nack,
            "term" => &self.term,
            _ => &self.timeout,
        };
        counter.inc();
        self.duration.observe(took.as_secs_f64());
    }

    /// Its restarts, whenever they change.
    pub(crate) fn set_restarts(&self, restarts: i64) {
        self.live.restarts.store(restarts, Ordering::Relaxed);
    }

    /// Deliveries in its window (sent, or waiting for a retry).
    pub(crate) fn set_in_flight(&self, n: usize) {
        self.live.in_flight.store(n as i64, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for PluginLive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginLive")
            .field("state", &(self.state)())
            .field("restarts", &self.restarts)
            .field("in_flight", &self.in_flight)
            .field("cursor", &*self.cursor.borrow())
            .finish()
    }
}

impl PluginLive {
    fn new(cursor: watch::Receiver<i64>, state: StateProbe) -> PluginLive {
        PluginLive {
            state,
            restarts: AtomicI64::new(0),
            in_flight: AtomicI64::new(0),
            cursor,
        }
    }
}

/// The registry and what its collector reads.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub(crate) source: SourceMetrics,
    deliveries: Family<PluginOutcome, Counter>,
    delivery_duration: Family<PluginLabel, Histogram, fn() -> Histogram>,
    log_dropped: Family<PluginLabel, Counter>,
    live: Arc<Live>,
}

/// The figures read at scrape time.
#[derive(Debug)]
struct Live {
    started: SystemTime,
    /// [`SourceMetrics::site_newest`].
    site_newest: Arc<AtomicI64>,
    /// The journal head, once a daemon's store is open.
    head: Mutex<Option<watch::Receiver<i64>>>,
    store: Mutex<Option<Arc<StoreStats>>>,
    /// The state directory, for the failed events' count.
    state_dir: Mutex<Option<PathBuf>>,
    /// A read-only connection for that count, opened on first use.
    conn: Mutex<Option<crate::store::Reader>>,
    plugins: Mutex<BTreeMap<String, Arc<PluginLive>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric, none of them fed yet.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<Outcome, Counter>::default();
        registry.register(
            "sgevents_source_requests",
            "Requests to the ShotGrid site, by outcome (ok, throttled, server_error, refused, network, bad_answer)",
            requests.clone(),
        );
        let request_duration = Histogram::new(REQUEST_BUCKETS);
        registry.register_with_unit(
            "sgevents_source_request_duration",
            "How long requests to the ShotGrid site took, answer read",
            Unit::Seconds,
            request_duration.clone(),
        );
        let gaps_given_up = Counter::default();
        registry.register(
            "sgevents_source_gaps_given_up",
            "Gaps in the site's event ids given up after `gap_timeout`",
            gaps_given_up.clone(),
        );
        let deliveries = Family::<PluginOutcome, Counter>::default();
        registry.register(
            "sgevents_plugin_deliveries",
            "Deliveries answered, by outcome: ack, nack (including the last one before an event fails), term, timeout",
            deliveries.clone(),
        );
        let delivery_duration: Family<PluginLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(delivery_histogram);
        registry.register_with_unit(
            "sgevents_plugin_delivery_duration",
            "From sending an event to its answer (or its timeout)",
            Unit::Seconds,
            delivery_duration.clone(),
        );
        let log_dropped = Family::<PluginLabel, Counter>::default();
        registry.register(
            "sgevents_plugin_log_lines_dropped",
            "Stderr lines of the plugin dropped over `log_rate`",
            log_dropped.clone(),
        );
        registry.register(
            "sgevents_build",
            "The daemon's version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        let site_newest = Arc::new(AtomicI64::new(i64::MIN));
        let live = Arc::new(Live {
            started: SystemTime::now(),
            site_newest: site_newest.clone(),
            head: Mutex::new(None),
            store: Mutex::new(None),
            state_dir: Mutex::new(None),
            conn: Mutex::new(None),
            plugins: Mutex::new(BTreeMap::new()),
        });
        registry.register_collector(Box::new(live.clone()));
        Metrics {
            registry,
            source: SourceMetrics {
                requests,
                request_duration,
                gaps_given_up,
                site_newest,
            },
            deliveries,
            delivery_duration,
            log_dropped,
            live,
        }
    }

    /// Reads the journal and the source's position from this daemon's store from now on.
    pub(crate) fn watch_store(
        &self,
        head: watch::Receiver<i64>,
        stats: Arc<StoreStats>,
        state_dir: PathBuf,
    ) {
        *lock(&self.live.head) = Some(head);
        *lock(&self.live.store) = Some(stats);
        *lock(&self.live.state_dir) = Some(state_dir);
        *lock(&self.live.conn) = None;
    }

    /// The handles of plugin `name`, whose in-memory cursor is `cursor` and whose state `state`
    /// says; its series appear.
    pub(crate) fn plugin(
        &self,
        name: &str,
        cursor: watch::Receiver<i64>,
        state: StateProbe,
    ) -> Arc<PluginMetrics> {
        let outcome = |outcome| {
            self.deliveries.get_or_create_owned(&PluginOutcome {
                plugin: name.to_owned(),
                outcome,
            })
        };
        let label = PluginLabel {
            plugin: name.to_owned(),
        };
        let live = Arc::new(PluginLive::new(cursor, state));
        lock(&self.live.plugins).insert(name.to_owned(), live.clone());
        Arc::new(PluginMetrics {
            ack: outcome("ack"),
            nack: outcome("nack"),
            term: outcome("term"),
            timeout: outcome("timeout"),
            duration: self.delivery_duration.get_or_create_owned(&label),
            log_dropped: self.log_dropped.get_or_create_owned(&label),
            live,
        })
    }

    /// Plugin `name` is no longer configured: its gauges go (its counters stay).
    pub(crate) fn forget_plugin(&self, name: &str) {
        lock(&self.live.plugins).remove(name);
    }

    /// The exposition, in `format`. Reads `/proc/self` and counts failed events in the state
    /// database: call it where blocking is fine.
    pub fn encode(&self, format: Format) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let done = match format {
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)
            }
            Format::Text => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            }
        };
        if let Err(e) = done {
            // Writing to a String cannot fail; should an encoder refuse a value, say so.
            tracing::error!("cannot encode the metrics: {e}");
        }
        out
    }
}

/// How long an encoded exposition is served again: a burst of scrapes costs at most one encoding
/// per format in this time.
const REUSE_FOR: Duration = Duration::from_millis(250);

/// The exposition of [`global`] in `format`, for `GET /metrics`: encoded on a blocking thread,
/// one encoding at a time, and the last one served again within [`REUSE_FOR`].
pub async fn exposition(format: Format) -> Arc<str> {
    type Cache = [Option<(std::time::Instant, Arc<str>)>; 2];
    static LAST: LazyLock<tokio::sync::Mutex<Cache>> = LazyLock::new(Default::default);
    let mut last = LAST.lock().await;
    let slot = &mut last[usize::from(format == Format::Text)];
    if let Some((at, text)) = slot {
        if at.elapsed() < REUSE_FOR {
            return text.clone();
        }
    }
    let text: Arc<str> = tokio::task::spawn_blocking(move || global().encode(format))
        .await
        .unwrap_or_else(|e| format!("# cannot encode the metrics: {e}\n"))
        .into();
    *slot = Some((std::time::Instant::now(), text.clone()));
    text
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Encodes one gauge or counter without labels.
fn single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    kind: MetricType,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, unit, kind)?;
    put(&mut m, kind, value)
}

/// Whole numbers are written as such (`3`, not `3.0`).
fn put(m: &mut MetricEncoder, kind: MetricType, value: f64) -> Result<(), std::fmt::Error> {
    let whole = value.fract() == 0.0 && value.abs() < 9.0e15;
    match kind {
        MetricType::Counter if whole && value >= 0.0 => {
            m.encode_counter::<NoLabelSet, u64, f64>(&(value as u64), None)
        }
        MetricType::Counter => m.encode_counter::<NoLabelSet, f64, f64>(&value, None),
        _ if whole => m.encode_gauge(&(value as i64)),
        _ => m.encode_gauge(&value),
    }
}

/// Encodes one series per plugin.
fn per_plugin(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    plugins: &[(String, f64)],
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, None, kind)?;
    for (plugin, value) in plugins {
        let label = PluginLabel {
            plugin: plugin.clone(),
        };
        put(&mut m.encode_family(&label)?, kind, *value)?;
    }
    Ok(())
}

impl Live {
    /// Failed events per plugin: one indexed count. `None` when the database cannot be read.
    fn failed_counts(&self) -> Option<BTreeMap<String, i64>> {
        let dir = lock(&self.state_dir).clone()?;
        let mut conn = lock(&self.conn);
        if conn.is_none() {
            // A scrape never waits long for a lock: without an answer, the gauge is left out.
            *conn = crate::store::open_read_only(&dir)
                .ok()
                .filter(|c| c.set_busy_timeout(Duration::from_millis(50)).is_ok());
        }
        let c = conn.as_ref()?;
        let counts = c.failed_counts();
        match counts {
            Ok(counts) => Some(counts),
            Err(e) => {
                tracing::debug!(error = %e, "cannot count the failed events for the metrics");
                *conn = None;
                None
            }
        }
    }

    fn encode_source(
        &self,
        encoder: &mut DescriptorEncoder,
        stats: Option<&StoreStats>,
    ) -> Result<(), std::fmt::Error> {
        let Some(stats) = stats else { return Ok(()) };
        if let Some(id) = stats.last_event_id() {
            single(
                encoder,
                "sgevents_source_last_event_id",
                "The newest event id journaled",
                None,
                MetricType::Gauge,
                id as f64,
            )?;
        }
        let newest = self.site_newest.load(Ordering::Relaxed);
        if newest != i64::MIN {
            single(
                encoder,
                "sgevents_source_site_newest_event_id",
                "The newest event id the ShotGrid site has, as last learnt (a page that was not full shows it; a full one, a lower bound)",
                None,
                MetricType::Gauge,
                newest as f64,
            )?;
        }
        if let Some(created) = stats.newest_created() {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            single(
                encoder,
                "sgevents_source_lag",
                "Now less the created_at of the newest journaled event",
                Some(&Unit::Seconds),
                MetricType::Gauge,
                (now - created).max(0.0),
            )?;
        }
        single(
            encoder,
            "sgevents_source_gaps_open",
            "Gaps (runs of missing event ids) the ShotGrid source waits for",
            None,
            MetricType::Gauge,
            stats.gaps() as f64,
        )?;
        single(
            encoder,
            "sgevents_journal_events",
            "Events kept in the journal",
            None,
            MetricType::Gauge,
            stats.events() as f64,
        )?;
        let m = encoder.encode_descriptor(
            "sgevents_store_commit_duration",
            "How long the store's commits took",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        stats.commit_duration.encode(m)
    }

    fn encode_plugins(
        &self,
        encoder: &mut DescriptorEncoder,
        head: Option<i64>,
    ) -> Result<(), std::fmt::Error> {
        let plugins: Vec<(String, Arc<PluginLive>)> = lock(&self.plugins)
            .iter()
            .map(|(n, p)| (n.clone(), p.clone()))
            .collect();
        let each = |f: &dyn Fn(&PluginLive) -> f64| -> Vec<(String, f64)> {
            plugins.iter().map(|(n, p)| (n.clone(), f(p))).collect()
        };
        per_plugin(
            encoder,
            "sgevents_plugin_up",
            "1 while the plugin's process runs and has finished its handshake",
            MetricType::Gauge,
            &each(&|p| f64::from(u8::from((p.state)() == PluginState::Running))),
        )?;
        {
            let mut m = encoder.encode_descriptor(
                "sgevents_plugin_state",
                "1 for the plugin's current state (starting, running, backoff, disabled, stopped)",
                None,
                MetricType::Gauge,
            )?;
            for (name, p) in &plugins {
                let current = (p.state)();
                for state in STATES {
                    let label = PluginStateLabel {
                        plugin: name.clone(),
                        state: state.as_str(),
                    };
                    m.encode_family(&label)?
                        .encode_gauge(&i64::from(state == current))?;
                }
            }
        }
        if let Some(head) = head {
            per_plugin(
                encoder,
                "sgevents_plugin_lag_events",
                "Journaled events after the plugin's cursor (matching or not)",
                MetricType::Gauge,
                &each(&|p| (head - *p.cursor.borrow()).max(0) as f64),
            )?;
        }
        per_plugin(
            encoder,
            "sgevents_plugin_in_flight",
            "Events in the plugin's window: sent and unanswered, or waiting for a retry",
            MetricType::Gauge,
            &each(&|p| p.in_flight.load(Ordering::Relaxed) as f64),
        )?;
        if let Some(counts) = self.failed_counts() {
            per_plugin(
                encoder,
                "sgevents_plugin_failed_events",
                "Events in failed_events for the plugin (given up; `sgevents failed list`)",
                MetricType::Gauge,
                &plugins
                    .iter()
                    .map(|(n, _)| (n.clone(), counts.get(n).copied().unwrap_or(0) as f64))
                    .collect::<Vec<_>>(),
            )?;
        }
        per_plugin(
            encoder,
            "sgevents_plugin_restarts",
            "Restarts of the plugin after a crash or hang, as `plugins.restarts` records them",
            MetricType::Counter,
            &each(&|p| p.restarts.load(Ordering::Relaxed) as f64),
        )?;
        Ok(())
    }
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = lock(&self.store).clone();
        let head = lock(&self.head).as_ref().map(|h| *h.borrow());
        self.encode_source(&mut encoder, stats.as_deref())?;
        if let Some(head) = head {
            single(
                &mut encoder,
                "sgevents_journal_head_seq",
                "The highest journal seq committed",
                None,
                MetricType::Gauge,
                head as f64,
            )?;
        }
        self.encode_plugins(&mut encoder, head)?;
        process::encode(&mut encoder, self.started)
    }
}

/// The process's own figures, the names the Prometheus client libraries use.
mod process {
    use super::*;

    pub(super) fn encode(
        encoder: &mut DescriptorEncoder,
        started: SystemTime,
    ) -> Result<(), std::fmt::Error> {
        if let Ok(usage) = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        {
            let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
            single(
                encoder,
                "process_cpu",
                "User and system CPU time spent",
                Some(&Unit::Seconds),
                MetricType::Counter,
                secs(usage.user_time()) + secs(usage.system_time()),
            )?;
        }
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            let kib = |key: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(key))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                    .map(|v| v * 1024.0)
            };
            if let Some(rss) = kib("VmRSS:") {
                single(
                    encoder,
                    "process_resident_memory",
                    "Resident memory size",
                    Some(&Unit::Bytes),
                    MetricType::Gauge,
                    rss,
                )?;
            }
            if let Some(vsz) = kib("VmSize:") {
                single(
                    encoder,
                    "process_virtual_memory",
                    "Virtual memory size",
                    Some(&Unit::Bytes),
                    MetricType::Gauge,
                    vsz,
                )?;
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            // Less the descriptor that reads the directory.
            let n = dir.count().saturating_sub(1);
            single(
                encoder,
                "process_open_fds",
                "Open file descriptors",
                None,
                MetricType::Gauge,
                n as f64,
            )?;
        }
        if let Ok((soft, _)) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        {
            single(
                encoder,
                "process_max_fds",
                "The limit on open file descriptors",
                None,
                MetricType::Gauge,
                soft as f64,
            )?;
        }
        let start = started
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        single(
            encoder,
            "process_start_time",
            "When the daemon started, in seconds since the Unix epoch",
            Some(&Unit::Seconds),
            MetricType::Gauge,
            start,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{JournalRow, SourcePosition, Store, StoreOptions};

    fn event(id: i64) -> JournalRow {
        JournalRow {
            seq: 0,
            event_id: id,
            event_type: "Shotgun_Task_Change".into(),
            attribute_name: None,
            entity_type: Some("Task".into()),
            project_id: None,
            is_transient: false,
            created_at: Some("2026-11-02T10:00:00Z".into()),
            body: format!("{{\"id\":{id}}}"),
        }
    }

    /// The value of the sample `line_start` (name and labels, exactly as written).
    fn value(text: &str, line_start: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(line_start)?.strip_prefix(' '))
            .map(|v| v.parse().expect("a number"))
    }

    #[test]
    fn the_format_follows_the_accept_header() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(Format::negotiate(None), Format::Text);
        assert!(
            Format::OpenMetrics
                .content_type()
                .starts_with("application/openmetrics-text")
        );
        assert!(
            Format::Text
                .content_type()
                .starts_with("text/plain; version=0.0.4")
        );
    }

    #[test]
    fn plugin_series_are_encoded_with_their_labels() {
        let m = Metrics::new();
        let (_cursor_tx, cursor) = watch::channel(3);
        let p = m.plugin("roll-up", cursor, Box::new(|| PluginState::Backoff));
        p.delivered("ack", Duration::from_millis(2));
        p.delivered("ack", Duration::from_millis(4));
        p.delivered("failed", Duration::from_millis(1));
        p.delivered("timeout", Duration::from_secs(1));
        p.log_dropped.inc_by(7);
        p.set_restarts(2);
        p.set_in_flight(5);
        m.source
            .request(RequestOutcome::Throttled, Duration::from_millis(20));
        m.source.gaps_given_up(1);

        let text = m.encode(Format::OpenMetrics);
        assert!(text.ends_with("# EOF\n"), "{text}");
        let v = |s: &str| value(&text, s);
        assert_eq!(
            v("sgevents_plugin_deliveries_total{plugin=\"roll-up\",outcome=\"ack\"}"),
            Some(2.0)
        );
        assert_eq!(
            v("sgevents_plugin_deliveries_total{plugin=\"roll-up\",outcome=\"nack\"}"),
            Some(1.0)
        );
        assert_eq!(
            v("sgevents_plugin_deliveries_total{plugin=\"roll-up\",outcome=\"term\"}"),
            Some(0.0)
        );
        assert_eq!(
            v("sgevents_plugin_deliveries_total{plugin=\"roll-up\",outcome=\"timeout\"}"),
            Some(1.0)
        );
        assert_eq!(
            v("sgevents_plugin_delivery_duration_seconds_count{plugin=\"roll-up\"}"),
            Some(4.0)
        );
        assert_eq!(
            v("sgevents_plugin_delivery_duration_seconds_bucket{le=\"0.005\",plugin=\"roll-up\"}"),
            Some(3.0)
        );
        assert_eq!(
            v("sgevents_plugin_log_lines_dropped_total{plugin=\"roll-up\"}"),
            Some(7.0)
        );
        assert_eq!(
            v("sgevents_plugin_state{plugin=\"roll-up\",state=\"backoff\"}"),
            Some(1.0)
        );
        assert_eq!(
            v("sgevents_plugin_state{plugin=\"roll-up\",state=\"running\"}"),
            Some(0.0)
        );
        assert_eq!(v("sgevents_plugin_up{plugin=\"roll-up\"}"), Some(0.0));
        assert_eq!(
            v("sgevents_plugin_in_flight{plugin=\"roll-up\"}"),
            Some(5.0)
        );
        assert_eq!(
            v("sgevents_plugin_restarts_total{plugin=\"roll-up\"}"),
            Some(2.0)
        );
        assert_eq!(
            v("sgevents_source_requests_total{outcome=\"throttled\"}"),
            Some(1.0)
        );
        assert_eq!(v("sgevents_source_gaps_given_up_total"), Some(1.0));
        assert_eq!(
            v("sgevents_source_request_duration_seconds_count"),
            Some(1.0)
        );
        assert!(
            text.contains("# TYPE sgevents_source_request_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("# UNIT sgevents_source_request_duration_seconds seconds"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "sgevents_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        assert!(
            v("process_resident_memory_bytes").is_some_and(|b| b > 0.0),
            "{text}"
        );
        assert!(v("process_open_fds").is_some_and(|n| n > 0.0), "{text}");
        assert!(v("process_cpu_seconds_total").is_some(), "{text}");
        // Nothing about a journal before a store is watched, nor a site never polled.
        assert!(!text.contains("sgevents_journal_head_seq"), "{text}");
        assert!(
            !text.contains("sgevents_source_site_newest_event_id"),
            "{text}"
        );

        // A plugin no longer configured loses its gauges, keeps its counters.
        m.forget_plugin("roll-up");
        let text = m.encode(Format::Text);
        assert!(!text.contains("sgevents_plugin_up{"), "{text}");
        assert!(
            text.contains("sgevents_plugin_deliveries_total{plugin=\"roll-up\",outcome=\"ack\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn the_prometheus_text_format_has_no_eof_and_types_counters_by_their_sample_name() {
        let m = Metrics::new();
        m.source
            .request(RequestOutcome::Ok, Duration::from_millis(20));
        let text = m.encode(Format::Text);
        assert!(!text.contains("# EOF"), "{text}");
        assert!(
            text.contains("# TYPE sgevents_source_requests_total counter"),
            "{text}"
        );
        assert!(
            text.contains("sgevents_source_requests_total{outcome=\"ok\"} 1"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn journal_and_source_figures_come_from_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = StoreOptions::new(
            crate::config::Synchronous::Normal,
            Duration::from_millis(1),
            Duration::from_secs(3600),
        );
        let (store, thread) = Store::open(dir.path(), options).expect("store");
        let m = Metrics::new();
        m.watch_store(store.head(), store.stats(), dir.path().to_path_buf());
        let position = SourcePosition {
            kind: "jsonl".into(),
            location: "x".into(),
            last_event_id: Some(12),
            ..Default::default()
        };
        store
            .append(vec![event(10), event(11), event(12)], position)
            .await
            .expect("append");
        let (_tx, cursor) = watch::channel(1);
        let _p = m.plugin("a", cursor, Box::new(|| PluginState::Starting));
        store.failed("a", 2, 11, 3, "boom");
        store.flush().await;

        let text = m.encode(Format::OpenMetrics);
        let v = |s: &str| value(&text, s);
        assert_eq!(v("sgevents_journal_events"), Some(3.0), "{text}");
        assert_eq!(v("sgevents_journal_head_seq"), Some(3.0), "{text}");
        assert_eq!(v("sgevents_source_last_event_id"), Some(12.0), "{text}");
        assert_eq!(v("sgevents_source_gaps_open"), Some(0.0), "{text}");
        assert_eq!(
            v("sgevents_plugin_lag_events{plugin=\"a\"}"),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            v("sgevents_plugin_failed_events{plugin=\"a\"}"),
            Some(1.0),
            "{text}"
        );
        // 2026-11-02T10:00:00Z is in the past of any machine running this.
        assert!(
            v("sgevents_source_lag_seconds").is_some_and(|s| s > 0.0),
            "{text}"
        );
        assert!(
            v("sgevents_store_commit_duration_seconds_count").is_some_and(|n| n >= 1.0),
            "{text}"
        );
        drop(store);
        thread.join().expect("store thread");
    }
}
