//! Whether a long-lived part of the daemon (its loop, the store thread, the source task) is alive:
//! an [`Alive`] flag that the part's [`AliveGuard`] holds while it runs. The guard marks the part
//! dead when it is dropped without [`AliveGuard::ended`], which is what a panic (or an aborted task)
//! does, so a part cannot die without the flag saying so. `/healthz` reads the flags.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

const NOT_STARTED: u8 = 0;
const RUNNING: u8 = 1;
const ENDED: u8 = 2;
const DIED: u8 = 3;

/// Where a part is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    /// Not started yet.
    NotStarted,
    /// Running.
    Running,
    /// Finished its work and returned normally.
    Ended,
    /// Stopped without returning normally: a panic, an error, or its task aborted.
    Died,
}

impl Life {
    /// The word `/healthz` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Life::NotStarted => "not started",
            Life::Running => "running",
            Life::Ended => "ended",
            Life::Died => "died",
        }
    }
}

/// A part's liveness flag. Cheap to clone; every clone reads the same flag.
#[derive(Debug, Clone, Default)]
pub struct Alive(Arc<AtomicU8>);

impl Alive {
    /// A flag for a part that has not started.
    pub fn new() -> Alive {
        Alive::default()
    }

    /// Marks the part running; it stays so while the returned guard lives.
    pub fn start(&self) -> AliveGuard {
        self.0.store(RUNNING, Ordering::SeqCst);
        AliveGuard(self.clone())
    }

    /// Where the part is now.
    pub fn life(&self) -> Life {
        match self.0.load(Ordering::SeqCst) {
            NOT_STARTED => Life::NotStarted,
            RUNNING => Life::Running,
            ENDED => Life::Ended,
            _ => Life::Died,
        }
    }
}

/// Held by a running part; dropped without [`AliveGuard::ended`], it marks the part dead.
#[derive(Debug)]
pub struct AliveGuard(Alive);

impl AliveGuard {
    /// The part finished normally.
    pub fn ended(self) {
        (self.0).0.store(ENDED, Ordering::SeqCst);
    }

    /// The part stopped with an error: dead, like a panic.
    pub fn died(self) {
        (self.0).0.store(DIED, Ordering::SeqCst);
    }
}

impl Drop for AliveGuard {
    fn drop(&mut self) {
        let _ = (self.0)
            .0
            .compare_exchange(RUNNING, DIED, Ordering::SeqCst, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_dropped_by_a_panic_marks_the_part_dead() {
        let alive = Alive::new();
        assert_eq!(alive.life(), Life::NotStarted);
        let flag = alive.clone();
        let joined = std::thread::spawn(move || {
            let _guard = flag.start();
            panic!("the part fails");
        })
        .join();
        assert!(joined.is_err());
        assert_eq!(alive.life(), Life::Died);
    }

    #[test]
    fn a_part_that_ends_normally_is_not_dead() {
        let alive = Alive::new();
        let guard = alive.start();
        assert_eq!(alive.life(), Life::Running);
        guard.ended();
        assert_eq!(alive.life(), Life::Ended);
    }
}
