//! Missing ids, as ranges: ShotGrid allocates an id when a transaction starts and the row appears
//! when it commits, so the log can show id N+2 before N+1. A missing id is remembered with the time
//! it was first missed, asked for again on every poll, journaled if it appears, and given up after
//! `gap_timeout`.
//!
//! Ranges keep memory and storage bounded however large a gap is, and each poll asks for at most
//! [`MAX_RANGES_PER_POLL`] of them, oldest first.
//!
//! **Invariant:** ranges are disjoint and sorted, and every id in them is below the high water
//! mark and was never journaled.

use std::time::{Duration, SystemTime};

/// The most ranges asked for in one request.
pub(crate) const MAX_RANGES_PER_POLL: usize = 100;

/// One run of missing ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gap {
    /// The first missing id.
    pub(crate) first: i64,
    /// The last missing id (inclusive).
    pub(crate) last: i64,
    /// When it was first missed (wall clock, so that it survives a restart).
    pub(crate) since: SystemTime,
}

impl Gap {
    /// How many ids it covers.
    pub(crate) fn len(&self) -> i64 {
        self.last - self.first + 1
    }
}

/// Every missing id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Gaps {
    ranges: Vec<Gap>,
}

impl Gaps {
    /// Gaps as saved.
    pub(crate) fn from_ranges(mut ranges: Vec<Gap>) -> Gaps {
        ranges.sort_by_key(|g| g.first);
        Gaps { ranges }
    }

    /// The ranges, in id order.
    pub(crate) fn ranges(&self) -> &[Gap] {
        &self.ranges
    }

    /// Whether no id is missing.
    pub(crate) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// How many ids are missing.
    pub(crate) fn missing(&self) -> i64 {
        self.ranges.iter().map(Gap::len).sum()
    }

    /// Records `first..=last` as missing since `now`. The range is above every known gap, since
    /// it is found between the high water mark and a newer event.
    pub(crate) fn add(&mut self, first: i64, last: i64, now: SystemTime) {
        if first > last {
            return;
        }
        debug_assert!(
            self.ranges.last().is_none_or(|g| g.last < first),
            "gaps are found in id order"
        );
        self.ranges.push(Gap {
            first,
            last,
            since: now,
        });
    }

    /// The ranges to ask for in the next poll: the oldest ones first, at most `max`.
    pub(crate) fn to_ask(&self, max: usize) -> Vec<(i64, i64)> {
        self.ranges
            .iter()
            .take(max)
            .map(|g| (g.first, g.last))
            .collect()
    }

    /// Removes an id that appeared; returns whether it was missing.
    pub(crate) fn fill(&mut self, id: i64) -> bool {
        let Some(i) = self
            .ranges
            .iter()
            .position(|g| g.first <= id && id <= g.last)
        else {
            return false;
        };
        let g = self.ranges[i];
        match (id == g.first, id == g.last) {
            (true, true) => {
                self.ranges.remove(i);
            }
            (true, false) => self.ranges[i].first = id + 1,
            (false, true) => self.ranges[i].last = id - 1,
            (false, false) => {
                self.ranges[i].last = id - 1;
                self.ranges.insert(
                    i + 1,
                    Gap {
                        first: id + 1,
                        last: g.last,
                        since: g.since,
                    },
                );
            }
        }
        true
    }

    /// Gives up the gaps missed for longer than `timeout` at `now`; returns them.
    pub(crate) fn expire(&mut self, now: SystemTime, timeout: Duration) -> Vec<Gap> {
        let (old, young): (Vec<Gap>, Vec<Gap>) = self
            .ranges
            .iter()
            .partition(|g| now.duration_since(g.since).is_ok_and(|age| age >= timeout));
        self.ranges = young;
        old
    }
}

/// The log line for ids given up.
pub(crate) fn given_up(gap: &Gap, timeout: Duration) -> String {
    let timeout = humantime::format_duration(timeout);
    if gap.first == gap.last {
        format!(
            "event {} did not appear within {timeout}; giving up on it",
            gap.first
        )
    } else {
        format!(
            "events {} to {} ({} ids) did not appear within {timeout}; giving up on them",
            gap.first,
            gap.last,
            gap.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn fill_splits_and_trims_ranges() {
        let mut g = Gaps::default();
        g.add(10, 20, at(0));
        g.add(30, 30, at(5));
        assert_eq!(g.missing(), 12);
        assert!(g.fill(15));
        assert!(g.fill(10));
        assert!(g.fill(20));
        assert!(g.fill(30));
        assert!(!g.fill(30), "already filled");
        assert!(!g.fill(25), "never missing");
        assert_eq!(g.to_ask(10), [(11, 14), (16, 19)]);
        assert_eq!(
            g.ranges()[1].since,
            at(0),
            "a split keeps the original time"
        );
    }

    #[test]
    fn expiry_is_per_range_and_by_age() {
        let mut g = Gaps::default();
        g.add(1, 3, at(0));
        g.add(7, 7, at(100));
        let old = g.expire(at(299), Duration::from_secs(300));
        assert!(old.is_empty());
        let old = g.expire(at(300), Duration::from_secs(300));
        assert_eq!(
            old.iter().map(|x| (x.first, x.last)).collect::<Vec<_>>(),
            [(1, 3)]
        );
        assert_eq!(g.to_ask(10), [(7, 7)]);
        assert_eq!(
            given_up(&old[0], Duration::from_secs(300)),
            "events 1 to 3 (3 ids) did not appear within 5m; giving up on them"
        );
        assert_eq!(
            given_up(
                &Gap {
                    first: 1234,
                    last: 1234,
                    since: at(0)
                },
                Duration::from_secs(300)
            ),
            "event 1234 did not appear within 5m; giving up on it"
        );
    }

    #[test]
    fn a_huge_gap_is_one_range() {
        let mut g = Gaps::default();
        g.add(1, 10_000_000, at(0));
        assert_eq!(g.ranges().len(), 1);
        assert_eq!(g.missing(), 10_000_000);
        for i in 0..200 {
            g.add(20_000_000 + i * 10, 20_000_000 + i * 10 + 5, at(1));
        }
        assert_eq!(
            g.to_ask(MAX_RANGES_PER_POLL).len(),
            MAX_RANGES_PER_POLL,
            "a poll asks for a bounded number of ranges"
        );
        assert_eq!(
            g.to_ask(MAX_RANGES_PER_POLL)[0],
            (1, 10_000_000),
            "oldest first"
        );
    }
}
