//! Restart and retry policy, as data: when to restart a crashed plugin, when to give up on it, how
//! long to wait before redelivering a nacked event, and the token buckets that bound what a plugin
//! may send unasked (log lines, unsolicited messages).
//!
//! A plugin killed because an event timed out is *hung on that event*: the timeout is charged to
//! the event as a failed attempt (so `max_attempts` dead-letters a poison event), and the restart
//! waits the same doubling backoff as after a crash but does not count towards the crash loop
//! ([`RestartPolicy::on_hang`]). Everything else (exits, protocol violations, missed pings, a
//! handshake that times out) counts.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::backoff::Backoff;

/// The first retry delay.
pub(crate) const FIRST_DELAY: Duration = Duration::from_secs(1);
/// The longest retry delay.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(5 * 60);
/// A plugin that ran this long before crashing starts its backoff over.
pub(crate) const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// This many restarts within [`CRASH_WINDOW`] disable a plugin.
pub(crate) const CRASH_LIMIT: usize = 10;
/// See [`CRASH_LIMIT`].
pub(crate) const CRASH_WINDOW: Duration = Duration::from_secs(15 * 60);

/// What to do after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterCrash {
    /// Restart after this delay.
    Restart(Duration),
    /// Too many crashes: disable.
    Disable,
}

/// The restart policy of one plugin.
#[derive(Debug)]
pub(crate) struct RestartPolicy {
    crashes: VecDeque<Instant>,
    /// Restarts since the last healthy run.
    failures: u32,
    backoff: Backoff,
}

impl RestartPolicy {
    /// A policy whose delays start at `first` and double up to `max`.
    pub(crate) fn new(first: Duration, max: Duration) -> RestartPolicy {
        RestartPolicy {
            crashes: VecDeque::new(),
            failures: 0,
            backoff: Backoff::new(first, max),
        }
    }

    /// Records a crash at `now` of a child started at `started`.
    pub(crate) fn on_crash(&mut self, started: Instant, now: Instant) -> AfterCrash {
        while self
            .crashes
            .front()
            .is_some_and(|&t| now.duration_since(t) >= CRASH_WINDOW)
        {
            self.crashes.pop_front();
        }
        self.crashes.push_back(now);
        if self.crashes.len() >= CRASH_LIMIT {
            return AfterCrash::Disable;
        }
        AfterCrash::Restart(self.backoff(started, now))
    }

    /// Records a kill at `now` of a child started at `started` that hung on an event whose
    /// attempt was charged to it: the restart waits the backoff, but it is not a crash, since
    /// `max_attempts` already bounds how often one event can cause it.
    pub(crate) fn on_hang(&mut self, started: Instant, now: Instant) -> Duration {
        self.backoff(started, now)
    }

    /// The delay the next restart will wait if the child started at `started` stops at `now`,
    /// without recording anything.
    pub(crate) fn peek_delay(&self, started: Instant, now: Instant) -> Duration {
        self.backoff.delay(self.failures_after(started, now))
    }

    fn backoff(&mut self, started: Instant, now: Instant) -> Duration {
        self.failures = self.failures_after(started, now);
        self.backoff.delay(self.failures)
    }

    /// The count of failures in a row once the child started at `started` stopped at `now`: a
    /// run of [`HEALTHY_AFTER`] starts the count over.
    fn failures_after(&self, started: Instant, now: Instant) -> u32 {
        if now.duration_since(started) >= HEALTHY_AFTER {
            1
        } else {
            self.failures.saturating_add(1)
        }
    }
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up; starts full.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(rate: f64, burst: f64, now: Instant) -> TokenBucket {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            at: now,
        }
    }

    /// Takes one token at `now`; false when there is none.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Unsolicited messages (a `pong` for no outstanding ping) a plugin may send per second, and as a
/// burst; beyond, it broke the protocol.
pub(crate) const UNSOLICITED_RATE: f64 = 10.0;
/// See [`UNSOLICITED_RATE`].
pub(crate) const UNSOLICITED_BURST: f64 = 20.0;
/// `progress` messages a plugin may send per second for each event it may have in flight
/// (`max_in_flight`), and as a burst for each; beyond, it broke the protocol. Generous: a plugin
/// that calls `progress` for each item of a loop is legitimate; one that writes it as fast as it
/// can only burns the daemon's time.
pub(crate) const PROGRESS_RATE: f64 = 100.0;
/// See [`PROGRESS_RATE`].
pub(crate) const PROGRESS_BURST: f64 = 1000.0;

/// `n` with thousands separators: `48,210`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The delay before redelivering an event nacked on delivery `attempt` (1-based), when the plugin
/// did not ask for one: 1 s doubling up to 5 minutes, with `jitter` in `[0, 1)` spreading it by
/// ±20%.
pub(crate) fn retry_delay(attempt: u32, jitter: f64) -> Duration {
    let base = Backoff::new(FIRST_DELAY, MAX_DELAY).delay(attempt);
    base.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap() {
        let mut p = RestartPolicy::new(FIRST_DELAY, MAX_DELAY);
        let t0 = Instant::now();
        let mut delays = Vec::new();
        let mut now = t0;
        for _ in 0..9 {
            match p.on_crash(now, now) {
                AfterCrash::Restart(d) => delays.push(d.as_secs()),
                AfterCrash::Disable => panic!("disabled too early"),
            }
            now += Duration::from_secs(1);
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256]);
        assert_eq!(
            p.on_crash(now, now),
            AfterCrash::Disable,
            "the tenth crash within 15 minutes"
        );
    }

    #[test]
    fn crashes_older_than_the_window_are_forgotten() {
        let mut p = RestartPolicy::new(FIRST_DELAY, MAX_DELAY);
        let mut now = Instant::now();
        for _ in 0..20 {
            assert!(matches!(p.on_crash(now, now), AfterCrash::Restart(_)));
            now += Duration::from_secs(100);
        }
    }

    #[test]
    fn a_healthy_run_resets_the_delay() {
        let mut p = RestartPolicy::new(FIRST_DELAY, MAX_DELAY);
        let now = Instant::now();
        assert_eq!(
            p.on_crash(now, now),
            AfterCrash::Restart(Duration::from_secs(1))
        );
        assert_eq!(
            p.on_crash(now, now),
            AfterCrash::Restart(Duration::from_secs(2))
        );
        let later = now + Duration::from_secs(120);
        assert_eq!(
            p.on_crash(now + Duration::from_secs(30), later),
            AfterCrash::Restart(Duration::from_secs(1))
        );
    }

    #[test]
    fn hangs_back_off_without_counting_as_crashes() {
        let mut p = RestartPolicy::new(FIRST_DELAY, MAX_DELAY);
        let now = Instant::now();
        let delays: Vec<u64> = (0..12).map(|_| p.on_hang(now, now).as_secs()).collect();
        assert_eq!(&delays[..4], [1, 2, 4, 8]);
        assert_eq!(p.peek_delay(now, now), MAX_DELAY);
        assert!(
            matches!(p.on_crash(now, now), AfterCrash::Restart(_)),
            "twelve hangs are not a crash loop"
        );
    }

    #[test]
    fn token_bucket_allows_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 20.0, t0);
        assert_eq!((0..25).filter(|_| b.take(t0)).count(), 20);
        let later = t0 + Duration::from_millis(500);
        assert_eq!((0..25).filter(|_| b.take(later)).count(), 5);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(48_210), "48,210");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn retry_delays() {
        assert_eq!(retry_delay(1, 0.5), Duration::from_secs(1));
        assert_eq!(retry_delay(4, 0.5), Duration::from_secs(8));
        assert_eq!(retry_delay(30, 0.5), MAX_DELAY);
        assert_eq!(retry_delay(1, 0.0), Duration::from_millis(800));
        assert_eq!(retry_delay(1, 1.0), Duration::from_millis(1200));
    }
}
