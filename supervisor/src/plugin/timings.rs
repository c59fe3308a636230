//! The summary of one plugin's delivery durations that `status` and `plugin list` show.
//!
//! Durations run from sending an event to its answer. The summary covers every answer since the
//! actor started (count, mean, max) and the last [`RECENT`] answers (median and 95th percentile),
//! and is handed to the store at most once per [`EVERY`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How many recent durations the percentiles cover.
pub(crate) const RECENT: usize = 1024;
/// How often the summary is written.
pub(crate) const EVERY: Duration = Duration::from_secs(1);

/// The durations of one plugin's answers.
#[derive(Debug, Default)]
pub(crate) struct Timings {
    count: u64,
    total_ms: f64,
    max_ms: f64,
    recent: VecDeque<f64>,
    dirty: bool,
    written: Option<Instant>,
}

impl Timings {
    /// Counts one answer.
    pub(crate) fn record(&mut self, duration: Duration) {
        let ms = duration.as_secs_f64() * 1000.0;
        self.count += 1;
        self.total_ms += ms;
        self.max_ms = self.max_ms.max(ms);
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(ms);
        self.dirty = true;
    }

    /// The summary as JSON, when it changed and was not written within [`EVERY`].
    pub(crate) fn take_summary(&mut self) -> Option<String> {
        if !self.dirty || self.written.is_some_and(|w| w.elapsed() < EVERY) {
            return None;
        }
        self.dirty = false;
        self.written = Some(Instant::now());
        Some(self.summary().to_string())
    }

    /// The summary as JSON when it changed, however recently it was written: for a plugin that
    /// has caught up or is stopping, so that what is recorded counts every answer.
    pub(crate) fn take_summary_now(&mut self) -> Option<String> {
        self.written = None;
        self.take_summary()
    }

    /// The summary.
    pub(crate) fn summary(&self) -> serde_json::Value {
        let mut sorted: Vec<f64> = self.recent.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let pick = |q: f64| -> f64 {
            if sorted.is_empty() {
                return 0.0;
            }
            let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
            sorted[i.min(sorted.len() - 1)]
        };
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        serde_json::json!({
            "count": self.count,
            "mean_ms": round(if self.count == 0 { 0.0 } else { self.total_ms / self.count as f64 }),
            "p50_ms": round(pick(0.5)),
            "p95_ms": round(pick(0.95)),
            "max_ms": round(self.max_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_every_answer_and_ranks_the_recent_ones() {
        let mut t = Timings::default();
        for ms in 1..=100 {
            t.record(Duration::from_millis(ms));
        }
        let s = t.summary();
        assert_eq!(s["count"], 100);
        assert_eq!(s["max_ms"], 100.0);
        assert_eq!(s["mean_ms"], 50.5);
        assert_eq!(s["p50_ms"], 51.0);
        assert_eq!(s["p95_ms"], 95.0);
    }

    #[test]
    fn percentiles_cover_only_the_recent_answers() {
        let mut t = Timings::default();
        t.record(Duration::from_secs(10));
        for _ in 0..RECENT {
            t.record(Duration::from_millis(2));
        }
        let s = t.summary();
        assert_eq!(s["max_ms"], 10_000.0, "the maximum is over every answer");
        assert_eq!(s["p95_ms"], 2.0, "the old slow answer left the recent ones");
    }

    #[test]
    fn a_summary_is_taken_only_when_something_changed() {
        let mut t = Timings::default();
        assert_eq!(t.take_summary(), None);
        t.record(Duration::from_millis(3));
        assert!(t.take_summary().is_some());
        assert_eq!(t.take_summary(), None, "nothing new since");
    }
}
