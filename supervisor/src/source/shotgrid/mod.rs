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
//! # Catching up
//!
//! The poller works in *rounds*: a round reads until a page is not full. Each page is fetched and
//! parsed into journal rows on a task of its own, and the next request leaves as soon as the
//! previous answer is read: its *head* (how many rows, the last one's id) is taken from the raw
//! answer before the rows are parsed (pipelining: the next page starts after the last id of this
//! one). A page is sent to the journal and its commit waited for only before the next page is
//! sent, so neither parsing nor a slow disk holds back the requests. When a page is full and
//! `fetch_concurrency` is above 1, the poller asks for the site's newest id and fetches the ids up
//! to it as ranges of `batch_size` ids (`id between [a, b]`), up to `fetch_concurrency` at once,
//! then follows the log again after the newest id. Pages are journaled strictly in the order they
//! were asked for, that is in id order, so the ids a range lacks are gaps exactly as above. At
//! most `fetch_concurrency` pages are in flight, plus the one being journaled and the one whose
//! commit is awaited: memory stays bounded however far behind the source is. While pages follow
//! each other, the missing ids are asked for again at most once a second.
//!
//! A failed request ends the round: the requests still in flight are dropped, and the next round
//! starts again from the high water mark (what they had read is read again; nothing is journaled
//! twice, since a page only journals ids above the mark). A 429 also halves the pages in flight
//! (down to 1) for a minute ([`Throttle`]).
//!
//! # Waiting
//!
//! After a round that journaled new events the poller polls again after `min_fetch_interval`; the
//! wait doubles after each round that found nothing, up to `fetch_interval`: a busy site is read
//! within a fraction of a second, and an idle one costs a request per `fetch_interval`, as before.
//! Failures are retried with backoff (1 s doubling to 60 s, with jitter), or after the delay
//! `Retry-After` asks for (seconds or an HTTP date); each is a warning, and failing for longer than `alert_after` is an error and an email
//! alert ([`Alert::SourceFailing`], once per outage). Plugins go on working through the journal
//! meanwhile.

pub(crate) mod client;
pub(crate) mod gaps;

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use sgevents_protocol::Event;
use tokio_util::sync::CancellationToken;

use self::client::{Client, ClientError, Head};
use self::gaps::{Gap, Gaps, MAX_RANGES_PER_POLL, given_up};
use super::{fits, journal_row};
use crate::alerts::{Alert, Alerts};
use crate::backoff::Backoff;
use crate::config::{ShotgridSource, StartAt};
use crate::store::{GapRow, JournalRow, SourcePosition, Store};

/// The waits between retries of a failing request (before a ±20 % jitter).
const BACKOFF: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
/// The wait after a 429 that did not say how long.
const DEFAULT_THROTTLE: Duration = Duration::from_secs(30);
/// The longest a 429 may make the poller wait.
const MAX_THROTTLE: Duration = Duration::from_secs(10 * 60);
/// How long a 429's halved concurrency lasts before it doubles back.
const THROTTLE_HOLD: Duration = Duration::from_secs(60);
/// How often missing ids are asked for again while pages follow each other.
const GAPS_WHILE_CATCHING_UP: Duration = Duration::from_secs(1);

/// Polls the site into the journal until `cancel`; an outage longer than `alert_after` goes to
/// `alerts`.
pub(crate) async fn run(
    config: ShotgridSource,
    store: Store,
    cancel: CancellationToken,
    alerts: Alerts,
    probe: super::Probe,
) -> anyhow::Result<()> {
    let client = Client::new(&config).map_err(anyhow::Error::msg)?;
    let mut outage = Outage::default();
    let saved = store.source_position().await?;
    let position = match saved {
        Some(p) if p.kind == "shotgrid" && p.location == config.url => p,
        Some(p) if p.kind == "shotgrid" => anyhow::bail!(
            "the state database follows the site `{}`, but the configuration names `{}`\nhint: use another `state_dir` for another site, or correct `source.url`",
            p.location,
            config.url
        ),
        _ => {
            let high = loop {
                match start_point(&client, config.start_at).await {
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
    let gaps = Gaps::from_ranges(
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

    let mut poller = Poller {
        client: std::sync::Arc::new(client),
        throttle: Throttle::new(config.fetch_concurrency),
        config,
        store,
        alerts,
        outage,
        position,
        gaps,
        gaps_asked: None,
        probe,
        committing: None,
    };
    // Adaptive polling: soon after new events, then doubling up to `fetch_interval`.
    let mut interval = poller.config.min_fetch_interval;
    loop {
        if cancel.is_cancelled() {
            return Ok(());
        }
        match poller.round(&cancel).await? {
            Round::Cancelled => return Ok(()),
            // A failure's wait (backoff, `Retry-After`) is not cut short by a webhook.
            Round::Failed(wait) => {
                if sleep_or_cancel(&cancel, wait).await {
                    return Ok(());
                }
            }
            Round::Done { new } => {
                interval = if new > 0 {
                    poller.config.min_fetch_interval
                } else {
                    (interval * 2).min(poller.config.fetch_interval)
                };
                // A webhook delivery (`probe.poke`) ends the wait at once; one that arrived
                // during the round is pending, and any more were coalesced with it.
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(interval) => {}
                    _ = poller.probe.poke.notified() => {
                        tracing::debug!(site = %poller.config.url, "polling early for a webhook");
                    }
                }
            }
        }
    }
}

/// How a round of polls ended.
enum Round {
    /// Stopped by the daemon.
    Cancelled,
    /// A request failed: wait this long before the next round.
    Failed(Duration),
    /// Caught up: the last page was not full. `new` events were journaled.
    Done { new: usize },
}

/// One request of a round.
#[derive(Debug, Clone, Copy)]
enum Request {
    /// Up to `batch_size` events above this id: following the log, or one page after another.
    After(i64),
    /// The events from the first id to the last (inclusive): a page of a concurrent catch-up.
    Between(i64, i64),
}

/// A page as the fetching task leaves it: the journal rows, in id order.
struct Page {
    rows: Vec<JournalRow>,
}

/// A request in flight: the task that fetches and parses its page and, for a request that
/// follows the log ([`Request::After`]), the answer's [`Head`] as soon as it is read.
struct Fetch {
    task: tokio::task::JoinHandle<Result<Page, ClientError>>,
    head: Option<tokio::sync::oneshot::Receiver<Head>>,
}

/// The poller between rounds: what it has journaled, and how.
struct Poller {
    config: ShotgridSource,
    store: Store,
    client: std::sync::Arc<Client>,
    alerts: Alerts,
    outage: Outage,
    position: SourcePosition,
    gaps: Gaps,
    /// When the missing ids were last asked for.
    gaps_asked: Option<Instant>,
    throttle: Throttle,
    /// Told of each completed poll; its `poke` asks for an early one (a webhook).
    probe: super::Probe,
    /// The last page sent to the journal, until its commit is seen: the poller goes on reading
    /// the site meanwhile.
    committing: Option<crate::store::Answer<i64>>,
}

impl Poller {
    /// Starts fetching `request` on its own task, parsed into journal rows there. A request that
    /// follows the log also tells the answer's [`Head`] before the rows are parsed, so that the
    /// next page can be asked for at once.
    fn fetch(&self, request: Request) -> Fetch {
        let client = std::sync::Arc::clone(&self.client);
        let limit = self.config.batch_size;
        let (head_tx, head) = match request {
            Request::After(_) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                (Some(tx), Some(rx))
            }
            Request::Between(..) => (None, None),
        };
        let task = tokio::spawn(async move {
            let rows = match request {
                Request::After(high) => {
                    let answer = client.events_after(high, limit).await?;
                    answer.rows_after_head(|head| {
                        if let Some(tx) = head_tx {
                            let _ = tx.send(head);
                        }
                    })?
                }
                Request::Between(first, last) => client.events_between(first, last, limit).await?,
            };
            let rows = events_of(rows).iter().map(journal_row).collect();
            Ok(Page { rows })
        });
        Fetch { task, head }
    }

    /// Polls until caught up. The next request leaves as soon as the previous answer is read,
    /// before its page is parsed and journaled (pipelining); when behind, up to
    /// `fetch_concurrency` pages of `batch_size` ids are fetched at once, and journaled strictly in
    /// id order.
    async fn round(&mut self, cancel: &CancellationToken) -> anyhow::Result<Round> {
        let mut queue: VecDeque<Fetch> = VecDeque::new();
        queue.push_back(self.fetch(Request::After(self.position.offset)));
        // While catching up by ranges: the next id to ask for, and the newest id to reach.
        let mut plan: Option<(i64, i64)> = None;
        let mut new = 0;
        while let Some(fetch) = queue.pop_front() {
            // What comes after a page that follows the log is asked for as soon as its head is
            // read: the next page after its last id, or the site's newest id to plan ranges.
            let mut failed = None;
            if let Some(head) = fetch.head {
                let head = tokio::select! {
                    _ = cancel.cancelled() => {
                        fetch.task.abort();
                        abort(&mut queue);
                        return Ok(Round::Cancelled);
                    }
                    head = head => head.ok(),
                };
                if let Some(Head {
                    rows,
                    last_id: Some(last),
                }) = head
                {
                    if rows >= self.config.batch_size {
                        match self.follow(last, &mut queue).await {
                            Ok(ranges) => plan = ranges,
                            Err(e) => failed = Some(e),
                        }
                    }
                }
            }
            let answer = tokio::select! {
                _ = cancel.cancelled() => {
                    abort(&mut queue);
                    return Ok(Round::Cancelled);
                }
                answer = fetch.task => answer,
            };
            let page = match answer {
                Ok(Ok(page)) => page,
                Ok(Err(e)) => {
                    abort(&mut queue);
                    self.committed().await?;
                    return Ok(Round::Failed(self.failed(&e)));
                }
                Err(e) => {
                    abort(&mut queue);
                    anyhow::bail!("a request to the site stopped unexpectedly: {e}");
                }
            };
            self.outage.recovered();
            self.throttle.recover();
            // A page that was not full ends at the site's newest event; a full one is a lower
            // bound.
            let page_end = page
                .rows
                .last()
                .map_or(self.position.offset, |r| r.event_id);
            crate::metrics::global()
                .source
                .site_newest_at_least(page_end);
            if let Some(e) = failed {
                // The site's newest id could not be read: this page is still journaled before
                // the wait.
                abort(&mut queue);
                self.journal(page.rows, true).await?;
                self.committed().await?;
                return Ok(Round::Failed(self.failed(&e)));
            }

            // Ranges are asked for before this page is journaled, up to the concurrency.
            if let Some((next, newest)) = plan {
                let concurrency = self.throttle.concurrency();
                let mut next = next;
                let step = self.config.batch_size as i64;
                plan = Some((next, newest));
                while queue.len() < concurrency {
                    if next > newest {
                        // The ranges reach the newest id: then follow the log again.
                        queue.push_back(self.fetch(Request::After(newest)));
                        plan = None;
                        break;
                    }
                    let last = (next + step - 1).min(newest);
                    queue.push_back(self.fetch(Request::Between(next, last)));
                    next = last + 1;
                    plan = Some((next, newest));
                }
            }
            let more = !queue.is_empty();
            new += self.journal(page.rows, more).await?;
        }
        self.committed().await?;
        Ok(Round::Done { new })
    }

    /// After a full page that followed the log up to `last`: with one page at a time, asks for
    /// the next page at once; with more, asks for the site's newest id and returns the ranges
    /// to fetch (from the id after `last` to the newest).
    async fn follow(
        &mut self,
        last: i64,
        queue: &mut VecDeque<Fetch>,
    ) -> Result<Option<(i64, i64)>, ClientError> {
        if self.throttle.concurrency() <= 1 {
            queue.push_back(self.fetch(Request::After(last)));
            return Ok(None);
        }
        let newest = self.client.newest_id().await?;
        let newest = newest.unwrap_or(last).max(last);
        crate::metrics::global().source.site_newest_at_least(newest);
        Ok(Some((last + 1, newest)))
    }

    /// Records a failed request: the error kept in the source's state, the throttle halved on a
    /// 429; returns how long to wait.
    fn failed(&mut self, e: &ClientError) -> Duration {
        if let ClientError::Status { status: 429, .. } = e {
            self.throttle.throttled(&self.config.url);
        }
        let wait = self.outage.failed(e, &self.config, &self.alerts);
        // The site's answer is quoted: no secret goes in the state database.
        self.position.last_error = Some(crate::redact::redact(&e.to_string()).into_owned());
        self.store.save_source(self.position.clone());
        wait
    }

    /// Journals one page (rows above the high water mark, in id order) with the late events that
    /// appeared, the new mark and the remaining gaps, in one transaction; returns how many events
    /// it journaled. `more`: other pages follow at once, so the missing ids are asked for at most
    /// once a second.
    async fn journal(&mut self, mut fresh: Vec<JournalRow>, more: bool) -> anyhow::Result<usize> {
        let config = &self.config;
        let high = self.position.offset;
        let now = SystemTime::now();
        fresh.retain(|e| e.event_id > high);

        // Ids the batch skipped become gaps, unless the site's own clock says they are long gone.
        let newest = fresh.last().and_then(created);
        let mut mark = high;
        for event in &fresh {
            if event.event_id > mark + 1 {
                let old = match (newest, created(event)) {
                    (Some(newest), Some(at)) => newest
                        .duration_since(at)
                        .is_ok_and(|age| age > config.gap_timeout),
                    _ => false,
                };
                if old {
                    let gap = Gap {
                        first: mark + 1,
                        last: event.event_id - 1,
                        since: now,
                    };
                    tracing::info!(site = %config.url, "{} (the event after them is older than that by the site's clock)", given_up(&gap, config.gap_timeout));
                    crate::metrics::global().source.gaps_given_up(1);
                } else {
                    self.gaps.add(mark + 1, event.event_id - 1, now);
                }
            }
            mark = event.event_id;
        }

        // Ask again for the missing ids only.
        let mut late = Vec::new();
        let due = !more
            || self
                .gaps_asked
                .is_none_or(|at| at.elapsed() >= GAPS_WHILE_CATCHING_UP);
        if !self.gaps.is_empty() && due {
            self.gaps_asked = Some(Instant::now());
            match self
                .client
                .events_in(&self.gaps.to_ask(MAX_RANGES_PER_POLL), config.batch_size)
                .await
            {
                Ok(rows) => {
                    for event in events_of(rows) {
                        if self.gaps.fill(event.id) {
                            tracing::info!(site = %config.url, "event {} appeared late; journaling it", event.id);
                            late.push(journal_row(&event));
                        }
                    }
                }
                // The new events go on regardless; the gaps are asked for again next time.
                Err(e) => {
                    tracing::warn!(site = %config.url, "cannot ask for the missing events: {e}")
                }
            }
        }
        for gap in self.gaps.expire(now, config.gap_timeout) {
            tracing::info!(site = %config.url, "{}", given_up(&gap, config.gap_timeout));
            crate::metrics::global().source.gaps_given_up(1);
        }

        late.sort_by_key(|e| e.event_id);
        let position = &mut self.position;
        position.offset = mark;
        position.last_event_id = Some(mark);
        position.last_error = None;
        // An event too long for an event line is skipped (an ERROR, `source_state.oversized`);
        // the mark moves past it all the same, so it is never asked for again.
        let rows: Vec<_> = late
            .into_iter()
            .chain(fresh)
            .filter(|row| fits(row, config.max_event_bytes, position))
            .collect();
        let journaled = rows.len();
        if journaled > 0 {
            tracing::debug!(site = %config.url, journaled, high_water = mark, gaps = self.gaps.ranges().len(), "polled");
        }
        // The commit of the page before is waited for first: at most one page is committing
        // while the next requests are in flight.
        self.committed().await?;
        self.committing = Some(self.store.append_with_gaps_sent(
            rows,
            self.position.clone(),
            gap_rows(&self.gaps),
        ));
        Ok(journaled)
    }

    /// Waits for the page being committed, if one is: the journal then holds everything this
    /// poller has read.
    async fn committed(&mut self) -> anyhow::Result<()> {
        if let Some(commit) = self.committing.take() {
            commit.await?;
            self.probe.polled();
        }
        Ok(())
    }
}

/// Stops the fetches of a round that ends early; what they would have read is asked for again.
fn abort(queue: &mut VecDeque<Fetch>) {
    for fetch in queue.drain(..) {
        fetch.task.abort();
    }
}

/// How many pages are fetched at once: `fetch_concurrency`, halved by each 429 and doubled back
/// after [`THROTTLE_HOLD`] without one.
#[derive(Debug)]
struct Throttle {
    configured: usize,
    current: usize,
    since: Option<Instant>,
}

impl Throttle {
    fn new(configured: usize) -> Throttle {
        Throttle {
            configured,
            current: configured,
            since: None,
        }
    }

    fn concurrency(&self) -> usize {
        self.current
    }

    /// A 429: half as many pages at once, for a while.
    fn throttled(&mut self, site: &str) {
        let halved = (self.current / 2).max(1);
        if halved < self.current {
            tracing::info!(site = %site, "the site is rate-limiting; fetching {halved} pages at once instead of {}", self.current);
        }
        self.current = halved;
        self.since = Some(Instant::now());
    }

    /// A success: back up one step once the last 429 is [`THROTTLE_HOLD`] old.
    fn recover(&mut self) {
        if let Some(since) = self.since {
            if since.elapsed() >= THROTTLE_HOLD {
                self.current = (self.current * 2).min(self.configured);
                self.since = (self.current < self.configured).then(Instant::now);
            }
        }
    }
}

/// Where a brand-new journal starts: the id to poll after.
async fn start_point(client: &Client, start: StartAt) -> Result<i64, ClientError> {
    Ok(match start {
        StartAt::Earliest => 0,
        StartAt::EventId(id) => id - 1,
        StartAt::Latest => client.newest_id().await?.unwrap_or(0),
        StartAt::Time(time) => {
            // The site compares `greater_than` strictly, and `created_at` has whole seconds: from
            // a second before, so that the events at exactly `time` are included.
            let time = humantime::format_rfc3339_seconds(time - Duration::from_secs(1)).to_string();
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

fn created(event: &JournalRow) -> Option<SystemTime> {
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
    /// The failures that waited by [`BACKOFF`] (not by the site's `Retry-After`).
    backed_off: u32,
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
                    self.backed_off += 1;
                    BACKOFF
                        .delay(self.backed_off)
                        .mul_f64(0.8 + 0.4 * fastrand::f64())
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
    let client = Client::new(config)?;
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
