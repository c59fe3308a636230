//! The rate limiter: one mail at once per recipient set, then one digest per window. Pure data,
//! driven by explicit instants.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{FIRST_RETRY_DELAY, MAX_PENDING, MAX_RETRY_DELAY, Stamped};
use crate::backoff::Backoff;

/// A mail to send: to whom, and the alerts it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mail {
    pub(super) to: Vec<String>,
    pub(super) alerts: Vec<Stamped>,
    /// Alerts held beyond [`MAX_PENDING`], counted only.
    pub(super) omitted: u64,
    /// Alerts dropped on a full queue, counted only.
    pub(super) dropped: u64,
}

/// The rate limit of one recipient set.
#[derive(Debug)]
pub(super) struct Slot {
    /// Until when alerts are held; the digest goes out then.
    pub(super) open_until: Instant,
    pub(super) pending: Vec<Stamped>,
    pub(super) omitted: u64,
    pub(super) dropped: u64,
    /// Failed tries in a row, for the backoff.
    pub(super) failures: u32,
}

/// One mail at once per recipient set, then one digest per window.
#[derive(Debug)]
pub(crate) struct Limiter {
    pub(super) window: Duration,
    pub(super) slots: BTreeMap<Vec<String>, Slot>,
}

impl Limiter {
    pub(crate) fn new(window: Duration) -> Limiter {
        Limiter {
            window,
            slots: BTreeMap::new(),
        }
    }

    /// An alert for `to` at `now`: a mail to send at once, or `None` if it is held for a digest.
    pub(crate) fn offer(&mut self, now: Instant, to: Vec<String>, alert: Stamped) -> Option<Mail> {
        match self.slots.get_mut(&to) {
            Some(slot) if slot.open_until > now || !slot.pending.is_empty() => {
                hold(slot, alert);
                None
            }
            _ => {
                self.slots.insert(
                    to.clone(),
                    Slot {
                        open_until: now + self.window,
                        pending: Vec::new(),
                        omitted: 0,
                        dropped: 0,
                        failures: 0,
                    },
                );
                Some(Mail {
                    to,
                    alerts: vec![alert],
                    omitted: 0,
                    dropped: 0,
                })
            }
        }
    }

    /// The digests whose window has ended by `now`; each opens the next window. Quiet windows
    /// close.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<Mail> {
        let mut mails = Vec::new();
        self.slots.retain(|to, slot| {
            if slot.open_until > now {
                return true;
            }
            if slot.pending.is_empty() {
                return false;
            }
            slot.open_until = now + self.window;
            mails.push(take(to, slot));
            true
        });
        mails
    }

    /// When the next digest is due, if any alert is held.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.slots
            .values()
            .filter(|s| !s.pending.is_empty())
            .map(|s| s.open_until)
            .min()
    }

    /// A mail could not be sent: its alerts are held again, before those that came since, and
    /// tried with them after a backoff (30 s, or the window if shorter, doubling up to 15 min).
    /// Returns the wait.
    pub(crate) fn failed(&mut self, now: Instant, mail: Mail) -> Duration {
        let slot = self.slots.entry(mail.to).or_insert_with(|| Slot {
            open_until: now,
            pending: Vec::new(),
            omitted: 0,
            dropped: 0,
            failures: 0,
        });
        slot.failures += 1;
        let mut pending = mail.alerts;
        pending.append(&mut slot.pending);
        if pending.len() > MAX_PENDING {
            slot.omitted += (pending.len() - MAX_PENDING) as u64;
            pending.truncate(MAX_PENDING);
        }
        slot.pending = pending;
        slot.omitted += mail.omitted;
        slot.dropped += mail.dropped;
        let wait =
            Backoff::new(FIRST_RETRY_DELAY.min(self.window), MAX_RETRY_DELAY).delay(slot.failures);
        // A failed mail does not wait for the end of its window: nothing reached the recipients.
        slot.open_until = now + wait;
        wait
    }

    /// A mail to `to` went out: the backoff starts over.
    pub(crate) fn sent(&mut self, to: &[String]) {
        if let Some(slot) = self.slots.get_mut(to) {
            slot.failures = 0;
        }
    }

    /// Everything held, as mails (at stop).
    pub(crate) fn drain(&mut self) -> Vec<Mail> {
        let slots = std::mem::take(&mut self.slots);
        slots
            .into_iter()
            .filter(|(_, s)| !s.pending.is_empty())
            .map(|(to, mut slot)| take(&to, &mut slot))
            .collect()
    }
}

pub(super) fn hold(slot: &mut Slot, alert: Stamped) {
    if slot.pending.len() < MAX_PENDING {
        slot.pending.push(alert);
    } else {
        slot.omitted += 1;
    }
}

pub(super) fn take(to: &[String], slot: &mut Slot) -> Mail {
    Mail {
        to: to.to_vec(),
        alerts: std::mem::take(&mut slot.pending),
        omitted: std::mem::take(&mut slot.omitted),
        dropped: std::mem::take(&mut slot.dropped),
    }
}
