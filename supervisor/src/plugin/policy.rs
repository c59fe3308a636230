//! Restart and retry policy, as data: when to restart a crashed plugin, when to give up on it, and
//! how long to wait before redelivering a nacked event.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

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
    next_delay: Option<Duration>,
    first: Duration,
    max: Duration,
}

impl RestartPolicy {
    /// A policy whose delays start at `first` and double up to `max`.
    pub(crate) fn new(first: Duration, max: Duration) -> RestartPolicy {
        RestartPolicy {
            crashes: VecDeque::new(),
            next_delay: None,
            first,
            max: max.max(first),
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
        if now.duration_since(started) >= HEALTHY_AFTER {
            self.next_delay = None;
        }
        let delay = self.next_delay.unwrap_or(self.first);
        self.next_delay = Some((delay * 2).min(self.max));
        AfterCrash::Restart(delay)
    }
}

/// The delay before redelivering an event nacked on delivery `attempt` (1-based), when the plugin
/// did not ask for one: 1 s doubling up to 5 minutes, with `jitter` in `[0, 1)` spreading it by
/// ±20%.
pub(crate) fn retry_delay(attempt: u32, jitter: f64) -> Duration {
    let base = FIRST_DELAY
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(MAX_DELAY);
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
    fn retry_delays() {
        assert_eq!(retry_delay(1, 0.5), Duration::from_secs(1));
        assert_eq!(retry_delay(4, 0.5), Duration::from_secs(8));
        assert_eq!(retry_delay(30, 0.5), MAX_DELAY);
        assert_eq!(retry_delay(1, 0.0), Duration::from_millis(800));
        assert_eq!(retry_delay(1, 1.0), Duration::from_millis(1200));
    }
}
