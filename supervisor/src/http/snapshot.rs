//! What the status page and `/api/status` show, held in memory: the status (`status --json`'s
//! data) read by a background task on a read-only connection of its own, and a per-minute ring of
//! each plugin's deliveries, sampled from the plugins' [`Live`](crate::plugin::Live) watches.
//!
//! A request never reads the database: it takes the last snapshot. A snapshot older than
//! [`FRESH_FOR`] is read again in the background (at most once per [`FRESH_FOR`], whatever the
//! number of requests, and never while nobody asks); only the very first request waits for one.
//! The read goes through SQLite's read-only connection (WAL: it never blocks the store thread).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::PluginProbe;
use crate::config::Config;
use crate::control::ops::FailedRow;
use crate::store::{Reader, StoreError};

/// How long a snapshot is shown before it is read again.
pub(crate) const FRESH_FOR: Duration = Duration::from_secs(2);
/// How long the first request waits for the first snapshot.
const FIRST_WAIT: Duration = Duration::from_secs(5);
/// The failed events shown per plugin (the newest).
pub(crate) const FAILED_SHOWN: usize = 25;
/// Minutes of deliveries kept per plugin.
pub(crate) const MINUTES: usize = 15;
/// How often the deliveries are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// The status as read at one moment.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    /// `status --json`'s data.
    pub(crate) status: Value,
    /// The newest failed events of each plugin (at most [`FAILED_SHOWN`] each), by plugin then seq.
    pub(crate) failed: Vec<FailedRow>,
    /// `created_at` of the newest journaled event.
    pub(crate) newest_created_at: Option<String>,
    /// When it was read.
    pub(crate) read_at: SystemTime,
    read_instant: Instant,
}

/// The snapshot kept for the handlers.
pub(crate) struct StatusCache {
    /// The configuration (the plugins' order and `after`; the state directory), replaced on reload.
    config: RwLock<Config>,
    current: Mutex<Option<Arc<Snapshot>>>,
    /// The last read's error, shown instead while there is no snapshot.
    error: Mutex<Option<String>>,
    wanted: Notify,
    /// Bumped after every read.
    reads: watch::Sender<u64>,
}

impl StatusCache {
    pub(crate) fn new(config: Config) -> StatusCache {
        StatusCache {
            config: RwLock::new(config),
            current: Mutex::new(None),
            error: Mutex::new(None),
            wanted: Notify::new(),
            reads: watch::channel(0).0,
        }
    }

    /// A new configuration (reload).
    pub(crate) fn set_config(&self, config: Config) {
        *self
            .config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = config;
    }

    /// The configuration.
    pub(crate) fn config(&self) -> Config {
        self.config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn current(&self) -> Option<Arc<Snapshot>> {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The latest snapshot (a stale one is read again in the background); the first request waits
    /// for the first read.
    pub(crate) async fn get(&self) -> Result<Arc<Snapshot>, String> {
        if let Some(s) = self.current() {
            if s.read_instant.elapsed() >= FRESH_FOR {
                self.wanted.notify_one();
            }
            return Ok(s);
        }
        let mut reads = self.reads.subscribe();
        self.wanted.notify_one();
        let _ = tokio::time::timeout(FIRST_WAIT, reads.changed()).await;
        self.current().ok_or_else(|| {
            self.error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
                .unwrap_or_else(|| "the status has not been read yet".to_owned())
        })
    }

    /// Reads the status whenever a request wants a fresh one, at most once per [`FRESH_FOR`].
    pub(crate) async fn refresh(self: Arc<Self>, cancel: CancellationToken) {
        let mut conn: Option<Reader> = None;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.wanted.notified() => {}
            }
            if self
                .current()
                .is_some_and(|s| s.read_instant.elapsed() < FRESH_FOR)
            {
                continue;
            }
            let config = self
                .config
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let joined = tokio::task::spawn_blocking(move || {
                let read = (|| {
                    let c = match conn.take() {
                        Some(c) => c,
                        None => crate::store::open_read_only(&config.daemon.state_dir)?,
                    };
                    let snapshot = read(&c, &config);
                    // A connection that failed is opened again next time.
                    if snapshot.is_ok() {
                        conn = Some(c);
                    }
                    snapshot
                })();
                (conn, read)
            })
            .await;
            match joined {
                Ok((c, Ok(snapshot))) => {
                    conn = c;
                    *self
                        .current
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) =
                        Some(Arc::new(snapshot));
                }
                Ok((c, Err(e))) => {
                    conn = c;
                    tracing::debug!(error = %e, "the status page cannot read the state database");
                    *self
                        .error
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.to_string());
                }
                Err(_) => conn = None,
            }
            self.reads.send_modify(|n| *n += 1);
        }
    }
}

/// Reads one snapshot.
fn read(conn: &Reader, config: &Config) -> Result<Snapshot, StoreError> {
    let (status, newest_created_at, failed) = conn.consistently(|r| {
        Ok((
            crate::status::gather_from(r, config)?,
            r.newest_created_at()?,
            r.newest_failed(FAILED_SHOWN)?,
        ))
    })?;
    Ok(Snapshot {
        status,
        failed,
        newest_created_at,
        read_at: SystemTime::now(),
        read_instant: Instant::now(),
    })
}

/// Deliveries per minute of one plugin.
#[derive(Debug, Default)]
struct Ring {
    /// The minute (since the epoch) of the last count.
    minute: u64,
    /// Counts, oldest first; the last is `minute`'s.
    counts: VecDeque<u64>,
    /// The plugin's total when last sampled.
    total: u64,
}

/// Every plugin's ring.
#[derive(Debug, Default)]
pub(crate) struct Rates {
    rings: Mutex<BTreeMap<String, Ring>>,
}

fn minute_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / 60
}

impl Rates {
    /// Adds each plugin's deliveries since the last sample to the current minute.
    pub(crate) fn sample(&self, plugins: &BTreeMap<String, PluginProbe>, now: SystemTime) {
        let minute = minute_of(now);
        let mut rings = self
            .rings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        rings.retain(|name, _| plugins.contains_key(name));
        for (name, probe) in plugins {
            let total = probe.live.borrow().deliveries;
            self.add(rings.entry(name.clone()).or_default(), minute, total);
        }
    }

    fn add(&self, ring: &mut Ring, minute: u64, total: u64) {
        if ring.counts.is_empty() {
            ring.minute = minute;
            ring.counts.push_back(0);
        }
        while ring.minute < minute {
            ring.minute += 1;
            ring.counts.push_back(0);
        }
        while ring.counts.len() > MINUTES {
            ring.counts.pop_front();
        }
        // A new keeper (a reload) counts from zero again.
        let delta = if total >= ring.total {
            total - ring.total
        } else {
            total
        };
        ring.total = total;
        if let Some(last) = ring.counts.back_mut() {
            *last += delta;
        }
    }

    /// `plugin`'s deliveries per second in each of the last [`MINUTES`] minutes, oldest first (the
    /// current minute over the seconds it has run); empty before the first sample.
    pub(crate) fn series(&self, plugin: &str, now: SystemTime) -> Vec<f64> {
        let rings = self
            .rings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(ring) = rings.get(plugin) else {
            return Vec::new();
        };
        let minute = minute_of(now);
        let mut counts: Vec<u64> = ring.counts.iter().copied().collect();
        // Minutes without a sample since (the sampler runs every few seconds) had nothing.
        counts.extend(std::iter::repeat_n(
            0,
            minute.saturating_sub(ring.minute) as usize,
        ));
        let skip = counts.len().saturating_sub(MINUTES);
        let n = counts.len() - skip;
        let into_minute = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() % 60;
        counts
            .into_iter()
            .skip(skip)
            .enumerate()
            .map(|(i, c)| {
                let secs = if i + 1 == n { into_minute.max(1) } else { 60 };
                c as f64 / secs as f64
            })
            .collect()
    }

    /// Samples every [`SAMPLE_EVERY`] until `cancel`.
    pub(crate) async fn run(
        self: Arc<Self>,
        plugins: Arc<RwLock<BTreeMap<String, PluginProbe>>>,
        cancel: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = plugins
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            self.sample(&now, SystemTime::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_fifteen_minutes_and_rates_per_second() {
        let rates = Rates::default();
        let mut ring = Ring::default();
        let t0 = 1_000_000u64;
        rates.add(&mut ring, t0, 120);
        rates.add(&mut ring, t0, 180);
        rates.add(&mut ring, t0 + 1, 240);
        assert_eq!(ring.counts, [180, 60]);
        rates.add(&mut ring, t0 + 40, 240);
        assert_eq!(ring.counts.len(), MINUTES);
        assert_eq!(ring.counts.back(), Some(&0));
        // A new keeper counts from zero.
        rates.add(&mut ring, t0 + 40, 7);
        assert_eq!(ring.counts.back(), Some(&7));
        rates
            .rings
            .lock()
            .expect("lock")
            .insert("a".to_owned(), ring);
        let now = UNIX_EPOCH + Duration::from_secs((t0 + 40) * 60 + 30);
        let series = rates.series("a", now);
        assert_eq!(series.len(), MINUTES);
        assert_eq!(series.last(), Some(&(7.0 / 30.0)));
        // Two minutes later, nothing sampled: two more empty minutes.
        let later = rates.series("a", now + Duration::from_secs(120));
        assert_eq!(later.len(), MINUTES);
        assert_eq!(later[MINUTES - 3], 7.0 / 60.0);
        assert_eq!(later[MINUTES - 1], 0.0);
    }
}
