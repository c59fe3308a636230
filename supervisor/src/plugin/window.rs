//! The in-flight window of one plugin and its cursor, as pure data.
//!
//! Events are taken from the journal in `seq` order. An event that matches none of the plugin's
//! subscriptions is finished the moment it is taken; one that matches occupies a slot until it is
//! acked, termed or given up. The cursor is the end of the contiguous run of finished events:
//! `cursor = first unfinished seq - 1`, or the last taken seq when nothing is unfinished.
//!
//! **Invariant:** the cursor never moves backwards, and never passes an unfinished event.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::store::JournalRow;

/// An event taken from the journal and not finished yet.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    /// The journal row (kept to resend it).
    pub(crate) row: JournalRow,
    /// The names of the subscriptions it matched.
    pub(crate) subscriptions: Vec<String>,
    /// The delivery number of the latest send.
    pub(crate) attempt: u32,
    /// The delivery number this series started at: 1, or more for a failed event retried by an
    /// operator (`max_attempts` counts from here).
    pub(crate) first_attempt: u32,
    /// Where it is.
    pub(crate) state: SlotState,
    /// A failed event an operator asked for again: it sits behind the cursor, and finishing it
    /// never moves the cursor.
    pub(crate) replay: bool,
    /// When it was last sent.
    pub(crate) sent_at: Instant,
}

/// Where an unfinished event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotState {
    /// Sent; must be answered (or progressed) by `deadline`, and finished by `cap`.
    Sent {
        /// When the plugin is deemed hung.
        deadline: Instant,
        /// The latest the deadline may move to.
        cap: Instant,
    },
    /// Nacked; to be sent again at `at`.
    Waiting {
        /// When to redeliver.
        at: Instant,
    },
}

/// The window and the cursor.
#[derive(Debug)]
pub(crate) struct Window {
    cursor: i64,
    frontier: i64,
    slots: BTreeMap<i64, Slot>,
    capacity: usize,
}

impl Window {
    /// A window of `capacity` slots starting after `cursor`.
    pub(crate) fn new(cursor: i64, capacity: usize) -> Window {
        Window {
            cursor,
            frontier: cursor,
            slots: BTreeMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Every event at or below this seq is finished.
    pub(crate) fn cursor(&self) -> i64 {
        self.cursor
    }

    /// The last seq taken from the journal.
    pub(crate) fn frontier(&self) -> i64 {
        self.frontier
    }

    /// Whether another event may be sent.
    pub(crate) fn has_room(&self) -> bool {
        self.slots.len() < self.capacity
    }

    /// Whether nothing is unfinished.
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// How many events are unfinished: sent and unanswered, or waiting for a retry.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether any event is sent and unanswered (waiting retries do not count).
    pub(crate) fn any_sent(&self) -> bool {
        self.slots
            .values()
            .any(|s| matches!(s.state, SlotState::Sent { .. }))
    }

    /// Changes the capacity (after a handshake).
    pub(crate) fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
    }

    /// Takes an event that matched nothing: finished at once.
    pub(crate) fn skip(&mut self, seq: i64) {
        debug_assert!(seq > self.frontier, "journal rows come in seq order");
        self.frontier = seq;
        self.advance();
    }

    /// Takes an event that was sent.
    pub(crate) fn sent(&mut self, slot: Slot) {
        let seq = slot.row.seq;
        debug_assert!(seq > self.frontier, "journal rows come in seq order");
        self.frontier = seq;
        self.slots.insert(seq, slot);
    }

    /// Takes a failed event sent again: it is at or behind the cursor, so the cursor and the
    /// frontier stay where they are, and finishing it never moves them.
    pub(crate) fn replay(&mut self, slot: Slot) {
        debug_assert!(
            slot.row.seq <= self.cursor,
            "a replayed event is behind the cursor"
        );
        self.slots.insert(slot.row.seq, slot);
    }

    /// The slot of `event_id`, if it is unfinished.
    pub(crate) fn find(&mut self, event_id: i64) -> Option<&mut Slot> {
        self.slots.values_mut().find(|s| s.row.event_id == event_id)
    }

    /// Finishes the event at `seq`; returns its slot.
    pub(crate) fn finish(&mut self, seq: i64) -> Option<Slot> {
        let slot = self.slots.remove(&seq);
        self.advance();
        slot
    }

    fn advance(&mut self) {
        // Replays sit behind the cursor, tracked in `failed_events`: they never hold it.
        let next = match self.slots.values().find(|s| !s.replay) {
            Some(first) => first.row.seq - 1,
            None => self.frontier,
        };
        debug_assert!(next >= self.cursor, "the cursor never moves backwards");
        self.cursor = self.cursor.max(next);
    }

    /// Forgets every unfinished event (the plugin restarted): they are taken again from the
    /// journal, after the cursor.
    pub(crate) fn reset(&mut self) {
        self.slots.clear();
        self.frontier = self.cursor;
    }

    /// The earliest deadline of a sent event.
    pub(crate) fn next_deadline(&self) -> Option<(Instant, i64)> {
        self.slots
            .values()
            .filter_map(|s| match s.state {
                SlotState::Sent { deadline, .. } => Some((deadline, s.row.event_id)),
                SlotState::Waiting { .. } => None,
            })
            .min()
    }

    /// The earliest retry.
    pub(crate) fn next_retry(&self) -> Option<Instant> {
        self.slots
            .values()
            .filter_map(|s| match s.state {
                SlotState::Waiting { at } => Some(at),
                SlotState::Sent { .. } => None,
            })
            .min()
    }

    /// The seqs of the events whose retry is due at `now`, in order.
    pub(crate) fn due_retries(&self, now: Instant) -> Vec<i64> {
        self.slots
            .iter()
            .filter(|(_, s)| matches!(s.state, SlotState::Waiting { at } if at <= now))
            .map(|(&seq, _)| seq)
            .collect()
    }

    /// The slot at `seq`.
    pub(crate) fn get_mut(&mut self, seq: i64) -> Option<&mut Slot> {
        self.slots.get_mut(&seq)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;

    /// A journal row at `seq`, for event `seq + 1000`.
    pub(crate) fn row(seq: i64) -> JournalRow {
        JournalRow {
            seq,
            event_id: seq + 1000,
            event_type: "Shotgun_Task_Change".into(),
            attribute_name: None,
            entity_type: None,
            project_id: None,
            is_transient: false,
            created_at: None,
            body: "{}".into(),
        }
    }

    fn sent(seq: i64, at: Instant) -> Slot {
        Slot {
            row: row(seq),
            subscriptions: vec!["s".into()],
            attempt: 1,
            first_attempt: 1,
            state: SlotState::Sent {
                deadline: at,
                cap: at,
            },
            replay: false,
            sent_at: at,
        }
    }

    #[test]
    fn a_replayed_event_never_moves_or_holds_the_cursor() {
        let now = Instant::now();
        let mut w = Window::new(10, 4);
        let mut old = sent(5, now);
        old.replay = true;
        w.replay(old);
        assert_eq!(w.frontier(), 10, "a replay is not taken from the journal");
        assert_eq!(w.cursor(), 10);
        w.sent(sent(11, now));
        w.finish(11);
        assert_eq!(
            w.cursor(),
            11,
            "the journal's events move on past an unfinished replay"
        );
        assert!(w.get_mut(5).is_some(), "the replay still takes a slot");
        let done = w.finish(5).expect("the replay was in flight");
        assert!(done.replay);
        assert_eq!(
            w.cursor(),
            11,
            "finishing it leaves the cursor where it was"
        );
    }

    #[test]
    fn skipped_events_advance_the_cursor_only_when_nothing_is_before_them() {
        let now = Instant::now();
        let mut w = Window::new(10, 2);
        w.skip(11);
        assert_eq!(w.cursor(), 11);
        w.sent(sent(12, now));
        w.skip(13);
        w.skip(14);
        assert_eq!(w.cursor(), 11, "event 12 is unfinished");
        assert!(w.has_room());
        w.sent(sent(15, now));
        assert!(!w.has_room());
        w.finish(15);
        assert_eq!(
            w.cursor(),
            11,
            "out-of-order answers do not pass an unfinished event"
        );
        w.finish(12);
        assert_eq!(w.cursor(), 15);
        assert!(w.is_empty());
    }

    #[test]
    fn reset_goes_back_to_the_cursor() {
        let now = Instant::now();
        let mut w = Window::new(0, 4);
        w.sent(sent(1, now));
        w.sent(sent(2, now));
        w.finish(2);
        w.reset();
        assert_eq!(
            (w.cursor(), w.frontier()),
            (0, 0),
            "event 2 was acked out of order and is taken again"
        );
    }

    #[test]
    fn timers() {
        let now = Instant::now();
        let mut w = Window::new(0, 4);
        w.sent(sent(1, now + Duration::from_secs(5)));
        w.sent(sent(2, now + Duration::from_secs(3)));
        assert_eq!(
            w.next_deadline(),
            Some((now + Duration::from_secs(3), 1002))
        );
        let slot = w.get_mut(2).expect("slot");
        slot.state = SlotState::Waiting {
            at: now + Duration::from_secs(1),
        };
        assert_eq!(
            w.next_deadline(),
            Some((now + Duration::from_secs(5), 1001))
        );
        assert_eq!(w.next_retry(), Some(now + Duration::from_secs(1)));
        assert!(w.due_retries(now).is_empty());
        assert_eq!(w.due_retries(now + Duration::from_secs(1)), [2]);
        assert!(w.any_sent());
        assert_eq!(w.find(1001).map(|s| s.row.seq), Some(1));
        assert!(w.find(7).is_none());
    }
}
