//! The ShotGrid source: one poller for the whole studio that reads a site's event log into the
//! journal over REST API v1.
//!
//! # Theory of operation
//!
//! The poller keeps a *high water mark*: the highest id it has seen. Each poll asks for up to
//! `batch_size` events above it, in id order. When ids skip, the skipped ones are remembered as
//! [`gaps::Gaps`] (ShotGrid allocates ids when a transaction starts and shows rows when it
//! commits, so a gap often fills a moment later). The mark moves past a gap at once, so the events
//! after it are never stalled; every poll then asks for the missing ids only (`between` ranges in
//! one request), journals those that appeared, and gives up on those missing for longer than
//! `gap_timeout`. If the event after a gap is already older than `gap_timeout` by the site's own
//! clock (its `created_at` against the newest event's), the gap is given up at once.
//!
//! New events, late events, the new high water mark and the remaining gaps are committed in one
//! transaction, so a crash at any moment resumes exactly where the journal stops, and a late event
//! is journaled once, after everything already journaled: plugins get it once, after what they
//! already have, and no cursor moves backwards. The incumbent's two gap bugs (re-delivering the
//! events after a late one, and stalling on a gap followed by a full batch) cannot happen, since
//! the mark never moves back and a poll never re-reads what it already has.
//!
//! An event whose journaled JSON is longer than `max_event_bytes` is skipped with an ERROR and
//! counted in `source_state.oversized` ([`super::fits`]); the mark moves past it.
//!
//! A full batch is followed at once by the next poll; otherwise the poller waits `fetch_interval`.
//! Failures are retried with backoff (1 s doubling to 60 s, with jitter), or after the delay a 429
//! asks for; each is a warning, and failing for longer than `alert_after` is an error and an email
//! alert ([`Alert::SourceFailing`], once per outage). Plugins go on working through the journal
//! meanwhile.

pub(crate) mod client;
pub(crate) mod gaps;

use std::time::{Duration, Instant, SystemTime};

use sgevents_protocol::Event;
use tokio_util::sync::CancellationToken;

use self::client::{Client, ClientError};
use self::gaps::{Gap, Gaps, MAX_RANGES_PER_POLL, given_up};
use super::{fits, journal_row};
use crate::alerts::{Alert, Alerts};
use crate::config::{ShotgridSource, StartAt};
use crate::store::{GapRow, SourcePosition, Store};

/// The longest wait between retries of a failing request.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The wait after a 429 that did not say how long.
const DEFAULT_THROTTLE: Duration = Duration::from_secs(30);
/// The longest a 429 may make the poller wait.
const MAX_THROTTLE: Duration = Duration::from_secs(10 * 60);

/// Polls the site into the journal until `cancel`; an outage longer than `alert_after` goes to
/// `alerts`.
pub(crate) async fn run(
    config: ShotgridSource,
    store: Store,
    cancel: CancellationToken,
    alerts: Alerts,
    probe: super::Probe,
) -> anyhow::Result<()> {
    let mut client = Client::new(&config).map_err(anyhow::Error::msg)?;
    let mut outage = Outage::default();
    let saved = store.source_position().await?;
    let mut position = match saved {
        Some(p) if p.kind == "shotgrid" && p.location == config.url => p,
        Some(p) if p.kind == "shotgrid" => anyhow::bail!(
            "the state database follows the site `{}`, but the configuration names `{}`\nhint: use another `state_dir` for another site, or correct `source.url`",
            p.location,
            config.url
        ),
        _ => {
            let high = loop {
                match start_point(&mut client, config.start_at).await {
                    Ok(high) => break high,
                    Err(e) => {
                        let wait = outage.failed(&e, &config, &alerts);
                        if sleep_or_cancel(&cancel, wait).await {
                            return Ok(());
                        }
                    }
                }
            };
            tracing::info!(site = %config.url, "starting the journal after event {high}");
            let p = SourcePosition {
                kind: "shotgrid".into(),
                location: config.url.clone(),
                offset: high,
                last_event_id: Some(high),
                ..Default::default()
            };
            store
                .append_with_gaps(Vec::new(), p.clone(), Vec::new())
                .await?;
            p
        }
    };
    let mut gaps = Gaps::from_ranges(
        store
            .source_gaps()
            .await?
            .iter()
            .filter_map(gap_from_row)
            .collect(),
    );
    tracing::info!(
        site = %config.url,
        after = position.offset,
        gaps = gaps.ranges().len(),
        missing = gaps.missing(),
        "polling the event log as script `{}`",
        config.script_name
    );

    loop {
        if cancel.is_cancelled() {
            return Ok(());
        }
        let high = position.offset;
        let rows = match client.events_after(high, config.batch_size).await {
            Ok(rows) => rows,
            Err(e) => {
                let wait = outage.failed(&e, &config, &alerts);
                // The site's answer is quoted: no secret goes in the state database.
                position.last_error = Some(crate::redact::redact(&e.to_string()).into_owned());
                store.save_source(position.clone());
                if sleep_or_cancel(&cancel, wait).await {
                    return Ok(());
                }
                continue;
            }
        };
        outage.recovered();
        let full = rows.len() >= config.batch_size;
        // A page that was not full ends at the site's newest event; a full one is a lower bound.
        let page_end = rows.iter().filter_map(|r| r.get("id")?.as_i64()).max();
        crate::metrics::global()
            .source
            .site_newest_at_least(page_end.unwrap_or(high));
        let now = SystemTime::now();
        let mut fresh = events_of(rows);
        fresh.retain(|e| e.id > high);

        // Ids the batch skipped become gaps, unless the site's own clock says they are long gone.
        let newest = fresh.last().and_then(created);
        let mut mark = high;
        for event in &fresh {
            if event.id > mark + 1 {
                let old = match (newest, created(event)) {
                    (Some(newest), Some(at)) => newest
                        .duration_since(at)
                        .is_ok_and(|age| age > config.gap_timeout),
                    _ => false,
                };
                if old {
                    let gap = Gap {
                        first: mark + 1,
                        last: event.id - 1,
                        since: now,
                    };
                    tracing::info!(site = %config.url, "{} (the event after them is older than that by the site's clock)", given_up(&gap, config.gap_timeout));
                    crate::metrics::global().source.gaps_given_up(1);
                } else {
                    gaps.add(mark + 1, event.id - 1, now);
                }
            }
            mark = event.id;
        }

        // Ask again for the missing ids only.
        let mut late = Vec::new();
        if !gaps.is_empty() {
            match client
                .events_in(&gaps.to_ask(MAX_RANGES_PER_POLL), config.batch_size)
                .await
            {
                Ok(rows) => {
                    for event in events_of(rows) {
                        if gaps.fill(event.id) {
                            tracing::info!(site = %config.url, "event {} appeared late; journaling it", event.id);
                            late.push(event);
                        }
                    }
                }
                // The new events go on regardless; the gaps are asked for again next time.
                Err(e) => {
                    tracing::warn!(site = %config.url, "cannot ask for the missing events: {e}")
                }
            }
        }
        for gap in gaps.expire(now, config.gap_timeout) {
            tracing::info!(site = %config.url, "{}", given_up(&gap, config.gap_timeout));
            crate::metrics::global().source.gaps_given_up(1);
        }

        late.sort_by_key(|e| e.id);
        position.offset = mark;
        position.last_event_id = Some(mark);
        position.last_error = None;
        // An event too long for an event line is skipped (an ERROR, `source_state.oversized`);
        // the mark moves past it all the same, so it is never asked for again.
        let rows: Vec<_> = late
            .iter()
            .chain(fresh.iter())
            .map(journal_row)
            .filter(|row| fits(row, config.max_event_bytes, &mut position))
            .collect();
        let journaled = rows.len();
        store
            .append_with_gaps(rows, position.clone(), gap_rows(&gaps))
            .await?;
        probe.polled();
        if journaled > 0 {
            tracing::debug!(site = %config.url, journaled, high_water = mark, gaps = gaps.ranges().len(), "polled");
        }
        if !full && sleep_or_cancel(&cancel, config.fetch_interval).await {
            return Ok(());
        }
    }
}

/// Where a brand-new journal starts: the id to poll after.
async fn start_point(client: &mut Client, start: StartAt) -> Result<i64, ClientError> {
    Ok(match start {
        StartAt::Earliest => 0,
        StartAt::EventId(id) => id - 1,
        StartAt::Latest => client.newest_id().await?.unwrap_or(0),
        StartAt::Time(time) => {
            let time = humantime::format_rfc3339_seconds(time).to_string();
            match client.first_id_since(&time).await? {
                Some(id) => id - 1,
                None => client.newest_id().await?.unwrap_or(0),
            }
        }
    })
}

/// Parses rows into events, in id order; a row that is not an event is logged and skipped.
fn events_of(rows: Vec<serde_json::Value>) -> Vec<Event> {
    let mut events: Vec<Event> = rows
        .into_iter()
        .filter_map(|row| match serde_json::from_value::<Event>(row) {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::error!("the site sent an event that cannot be read: {e}");
                None
            }
        })
        .collect();
    events.sort_by_key(|e| e.id);
    events.dedup_by_key(|e| e.id);
    events
}

fn created(event: &Event) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(event.created_at.as_deref()?).ok()
}

fn gap_rows(gaps: &Gaps) -> Vec<GapRow> {
    gaps.ranges()
        .iter()
        .map(|g| GapRow {
            first_id: g.first,
            last_id: g.last,
            first_seen: humantime::format_rfc3339_millis(g.since).to_string(),
        })
        .collect()
}

fn gap_from_row(row: &GapRow) -> Option<Gap> {
    let since = humantime::parse_rfc3339_weak(&row.first_seen).ok()?;
    Some(Gap {
        first: row.first_id,
        last: row.last_id,
        since,
    })
}

/// Waits `d` unless cancelled first; true when cancelled.
async fn sleep_or_cancel(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

/// The state of a run of failures: backoff, and whether it has been reported as an outage.
#[derive(Debug, Default)]
struct Outage {
    since: Option<Instant>,
    failures: u32,
    delay: Option<Duration>,
    alerted: bool,
}

impl Outage {
    /// Records a failure; returns how long to wait before the next try. The first failure past
    /// `alert_after` is logged as an error and sent to `alerts`.
    fn failed(&mut self, e: &ClientError, config: &ShotgridSource, alerts: &Alerts) -> Duration {
        let since = *self.since.get_or_insert_with(Instant::now);
        self.failures += 1;
        let wait = match e {
            ClientError::Status { status: 429, .. } => e
                .retry_after()
                .unwrap_or(DEFAULT_THROTTLE)
                .min(MAX_THROTTLE),
            _ => match e.retry_after() {
                Some(d) => d.min(MAX_THROTTLE),
                None => {
                    let base = self.delay.unwrap_or(Duration::from_secs(1));
                    self.delay = Some((base * 2).min(MAX_BACKOFF));
                    base.mul_f64(0.8 + 0.4 * fastrand::f64())
                }
            },
        };
        let hint = e.hint(config.proxy.is_some());
        tracing::warn!(
            site = %config.url,
            failures = self.failures,
            "cannot read the ShotGrid event log: {e}; retrying in {}\nhint: {hint}",
            humantime::format_duration(Duration::from_millis(wait.as_millis() as u64))
        );
        if !self.alerted && since.elapsed() >= config.alert_after {
            self.alerted = true;
            tracing::error!(
                site = %config.url,
                failures = self.failures,
                "the ShotGrid source has been failing for more than {}: {e}\nhint: {hint}; plugins go on with what is journaled",
                humantime::format_duration(config.alert_after)
            );
            alerts.send(Alert::SourceFailing {
                since: since.elapsed(),
                error: format!(
                    "cannot read the event log of {}: {e}; hint: {hint}",
                    config.url
                ),
            });
        }
        wait
    }

    /// Records a success after failures.
    fn recovered(&mut self) {
        if let Some(since) = self.since.take() {
            tracing::info!(
                "the ShotGrid source is back after {} and {} failed requests; catching up",
                humantime::format_duration(Duration::from_secs(since.elapsed().as_secs())),
                self.failures
            );
        }
        *self = Outage::default();
    }
}

/// `sgevents check` for this source: signs in and reads the newest event id.
pub(crate) async fn check(config: &ShotgridSource) -> Result<String, String> {
    let mut client = Client::new(config)?;
    let hint = |e: &ClientError| format!("{e}\nhint: {}", e.hint(config.proxy.is_some()));
    client.sign_in().await.map_err(|e| hint(&e))?;
    let newest = client.newest_id().await.map_err(|e| hint(&e))?;
    Ok(format!(
        "shotgrid {}: signed in as script `{}`, newest event {}",
        config.url,
        config.script_name,
        newest.map_or("none yet".to_owned(), |id| id.to_string())
    ))
}
