//! [`Backoff`]: the one doubling backoff of every retry loop of the daemon (a plugin's restarts, a
//! nacked event's redelivery, a failing mail, the ShotGrid source's failed requests). Pure data:
//! the caller counts its failures and asks for the wait of the next one.

use std::time::Duration;

/// Waits that start at `first` and double with each failure in a row, up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    first: Duration,
    max: Duration,
}

impl Backoff {
    /// A backoff from `first` doubling to `max` (at least `first`).
    pub(crate) const fn new(first: Duration, max: Duration) -> Backoff {
        let max = if max.as_nanos() < first.as_nanos() {
            first
        } else {
            max
        };
        Backoff { first, max }
    }

    /// The wait after the `failures`-th failure in a row (1-based; 0 counts as the first):
    /// `first` doubled `failures - 1` times, at most `max`.
    pub(crate) fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1);
        if doublings >= u32::BITS {
            return self.max;
        }
        self.first
            .checked_mul(1 << doublings)
            .map_or(self.max, |d| d.min(self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn doubles_from_the_first_wait_up_to_the_longest() {
        let b = Backoff::new(S, 60 * S);
        let waits: Vec<u64> = (1..=9).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(b.delay(0), S, "no failure yet counts as the first");
    }

    #[test]
    fn never_overflows_and_stays_at_the_longest_wait() {
        let b = Backoff::new(Duration::from_millis(20), 5 * 60 * S);
        for n in [20, 31, 32, 33, 64, 1000, u32::MAX] {
            assert_eq!(b.delay(n), 5 * 60 * S, "{n} failures");
        }
        let huge = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(huge.delay(2), Duration::MAX);
    }

    #[test]
    fn a_longest_wait_below_the_first_is_the_first() {
        let b = Backoff::new(10 * S, S);
        assert_eq!((b.delay(1), b.delay(5)), (10 * S, 10 * S));
    }
}
