//! What a plugin's session does with each answer and each timer, as pure data: no I/O, no tokio,
//! no store handle.
//!
//! [`Session`] holds what the answers act on: the in-flight [`Window`], the deliveries each event
//! has had, the ping state and the budgets of what a plugin may send unasked. Its methods take
//! plain values (the line the plugin wrote, the current time, the restart delay) and push
//! [`Effect`]s (write this line, record this retry or failure, count this answer...) that the
//! [`Actor`](super::Actor) performs in order; a session that must end returns its [`End`]. The
//! effects pushed before an `End` are performed too (a timed-out event is charged first).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sgevents_protocol::{
    DaemonMessage, PluginMessage, decode_plugin_line, encode, encode_event_raw, excerpt,
};

use super::child::Incoming;
use super::policy::{
    PROGRESS_BURST, PROGRESS_RATE, TokenBucket, UNSOLICITED_BURST, UNSOLICITED_RATE, retry_delay,
};
use super::window::{Slot, SlotState, Window};
use crate::config::PluginLimits;
use crate::store::{JournalRow, Sent};

/// How much of an offending line a log message shows.
pub(super) const EXCERPT: usize = 200;

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// The daemon stopped it.
    Stopped,
    /// It crashed, hung or broke the protocol: restart after a backoff.
    Crashed(String),
    /// It hung on an event, and the timeout was charged to that event as a failed attempt: restart
    /// after a backoff, without counting towards the crash loop (see [`policy`](super::policy)).
    Hung(String),
    /// Disable it, keeping its position.
    Disable(String),
}

/// What the actor does for the session, in the order the session pushed them.
#[derive(Debug, PartialEq)]
pub(crate) enum Effect {
    /// Write this line (newline included) to the plugin's stdin.
    Write(String),
    /// A delivery was sent again: record it as in flight.
    Sent(Sent),
    /// A delivery was answered (or timed out) after `duration`: count it, and write its timing
    /// record.
    Answered {
        /// The event's ShotGrid id.
        event_id: i64,
        /// The delivery number answered.
        attempt: u32,
        /// `ack`, `nack`, `failed`, `term` or `timeout`.
        outcome: &'static str,
        /// From its sending to its answer.
        duration: Duration,
        /// When the event happened (the journal's `created_at`).
        created_at: Option<String>,
    },
    /// An event is finished.
    Finished {
        /// Its journal seq.
        seq: i64,
        /// Its ShotGrid id.
        event_id: i64,
        /// It had a `retries` row: clear it.
        clear_retry: bool,
        /// It was a failed event an operator asked for again: resolve it in `failed_events`.
        resolve_failed: bool,
    },
    /// An event is to be delivered again after `delay`: record it in `retries`.
    Retry {
        /// Its journal seq.
        seq: i64,
        /// Its ShotGrid id.
        event_id: i64,
        /// The delivery number that failed.
        attempt: u32,
        /// The wait before the next delivery.
        delay: Duration,
        /// Why it failed.
        error: String,
        /// The plugin nacked it (logged as a warning); otherwise it timed out and the session's
        /// end says so.
        nacked: bool,
    },
    /// An event is given up: record it in `failed_events`, alert, log.
    Failed {
        /// Its journal seq.
        seq: i64,
        /// Its ShotGrid id.
        event_id: i64,
        /// How many deliveries it had.
        attempts: u32,
        /// Why it failed.
        error: String,
    },
}

/// The pings of an idle plugin.
#[derive(Debug)]
struct Ping {
    next: Instant,
    outstanding: Option<u64>,
    missed: u32,
    nonce: u64,
}

/// The delivery state of one plugin, which each session's answers and timers act on.
#[derive(Debug)]
pub(crate) struct Session {
    /// The events in flight and the cursor.
    pub(crate) window: Window,
    /// The deliveries each unfinished event has had (including those of earlier sessions).
    attempts: HashMap<i64, u32>,
    limits: PluginLimits,
    ping: Ping,
    /// What the plugin may send unasked this session: `pong`s for no ping, and `progress`.
    unsolicited: TokenBucket,
    progress_budget: TokenBucket,
}

impl Session {
    /// The state of a plugin at `cursor`, whose events have had `attempts` deliveries.
    pub(crate) fn new(
        cursor: i64,
        attempts: HashMap<i64, u32>,
        limits: PluginLimits,
        now: Instant,
    ) -> Session {
        Session {
            window: Window::new(cursor, 1),
            attempts,
            limits,
            ping: Ping {
                next: now + limits.ping_interval,
                outstanding: None,
                missed: 0,
                nonce: 0,
            },
            unsolicited: TokenBucket::new(UNSOLICITED_RATE, UNSOLICITED_BURST, now),
            progress_budget: TokenBucket::new(PROGRESS_RATE, PROGRESS_BURST, now),
        }
    }

    /// A new session after a handshake that asked for `max_in_flight`: the window starts again
    /// at the cursor, and the budgets afresh.
    pub(crate) fn begin(&mut self, max_in_flight: u32, now: Instant) {
        self.window.reset();
        self.window.set_capacity(max_in_flight as usize);
        self.unsolicited = TokenBucket::new(UNSOLICITED_RATE, UNSOLICITED_BURST, now);
        let window = f64::from(max_in_flight.max(1));
        self.progress_budget =
            TokenBucket::new(PROGRESS_RATE * window, PROGRESS_BURST * window, now);
    }

    /// The serving starts at `now`: the first ping is due one `ping_interval` later.
    pub(crate) fn start_pings(&mut self, now: Instant) {
        self.ping = Ping {
            next: now + self.limits.ping_interval,
            outstanding: None,
            missed: 0,
            nonce: 0,
        };
    }

    /// Takes journal event `row`, matching the subscriptions `names`, and sends it at `now`:
    /// the line to write and the delivery to record.
    pub(crate) fn deliver(
        &mut self,
        row: JournalRow,
        names: Vec<String>,
        now: Instant,
    ) -> (String, Sent) {
        let attempt = self.attempts.get(&row.seq).map_or(1, |a| a + 1);
        let mut slot = Slot {
            row,
            subscriptions: names,
            attempt,
            first_attempt: 1,
            state: SlotState::Waiting { at: now },
            replay: false,
            sent_at: now,
        };
        let line = send(&self.limits, &mut self.attempts, &mut slot, now);
        let sent = Sent {
            seq: slot.row.seq,
            event_id: slot.row.event_id,
            attempt: slot.attempt,
        };
        self.window.sent(slot);
        (line, sent)
    }

    /// Sends failed event `row` again at `now`, as an operator asked, after the `attempts`
    /// deliveries it failed with: the line to write. The delivery count goes on from where it
    /// failed; `max_attempts` and the retry backoff count afresh, from the first delivery of this
    /// retry.
    pub(crate) fn replay(
        &mut self,
        row: JournalRow,
        names: Vec<String>,
        attempts: u32,
        now: Instant,
    ) -> String {
        let delivered = self
            .attempts
            .get(&row.seq)
            .map_or(attempts, |&a| a.max(attempts));
        let mut slot = Slot {
            row,
            subscriptions: names,
            attempt: delivered + 1,
            first_attempt: attempts + 1,
            state: SlotState::Waiting { at: now },
            replay: true,
            sent_at: now,
        };
        let line = send(&self.limits, &mut self.attempts, &mut slot, now);
        self.window.replay(slot);
        line
    }

    /// What the plugin wrote, at `now`. `jitter` (in `[0, 1)`) is asked for when a nack's retry
    /// delay is the session's to choose.
    pub(crate) fn on_incoming(
        &mut self,
        incoming: Incoming,
        now: Instant,
        jitter: impl FnOnce() -> f64,
        out: &mut Vec<Effect>,
    ) -> Result<(), End> {
        let line = match incoming {
            Incoming::Line(line) => line,
            Incoming::TooLong(n) => {
                return Err(End::Crashed(format!(
                    "broke the protocol: wrote a line of {n} bytes, over the 16 MiB limit"
                )));
            }
        };
        // A secret in an error (`nack`, `term`, `fatal`) never reaches a log, the database or an
        // answer; nor one in a line that breaks the protocol.
        let line = crate::redact::redact_bytes(&line);
        let msg = decode_plugin_line(&line).map_err(|e| {
            End::Crashed(format!(
                "broke the protocol: {}: `{}`",
                first_line(&e.to_string()),
                excerpt(&line, EXCERPT)
            ))
        })?;
        self.ping.next = now + self.limits.ping_interval;
        let limits = self.limits;
        match msg {
            PluginMessage::Ack { event_id } => {
                let seq = self.sent_seq(event_id, "ack")?;
                self.answered(seq, "ack", now, out);
                self.finish(seq, out);
            }
            PluginMessage::Nack {
                event_id,
                error,
                retry_after_ms,
            } => {
                let seq = self.sent_seq(event_id, "nack")?;
                let gives_up = self
                    .window
                    .get_mut(seq)
                    .is_some_and(|s| s.attempt + 1 - s.first_attempt >= limits.max_attempts);
                self.answered(seq, if gives_up { "failed" } else { "nack" }, now, out);
                let slot = self.window.get_mut(seq).expect("found above");
                let attempt = slot.attempt;
                if gives_up {
                    self.fail(
                        seq,
                        attempt,
                        format!("{error} (given up after {attempt} attempts)"),
                        out,
                    );
                } else {
                    // The backoff counts the attempts of this series: a failed event an operator
                    // asked for again starts it from the beginning.
                    let delay = match retry_after_ms {
                        Some(ms) => Duration::from_millis(ms),
                        None => retry_delay(attempt + 1 - slot.first_attempt, jitter()),
                    };
                    slot.state = SlotState::Waiting { at: now + delay };
                    // A retried failed event stays marked in `failed_events` until it is finished;
                    // its waiting retry is in `retries` like any other, so that `status` shows it.
                    out.push(Effect::Retry {
                        seq,
                        event_id,
                        attempt,
                        delay,
                        error,
                        nacked: true,
                    });
                }
            }
            PluginMessage::Term { event_id, error } => {
                let seq = self.sent_seq(event_id, "term")?;
                self.answered(seq, "term", now, out);
                let attempt = self.window.get_mut(seq).map_or(1, |s| s.attempt);
                self.fail(seq, attempt, error, out);
            }
            PluginMessage::Progress { event_id } => {
                let seq = self.sent_seq(event_id, "progress")?;
                if !self.progress_budget.take(now) {
                    return Err(End::Crashed(format!(
                        "broke the protocol: sent `progress` faster than {PROGRESS_RATE} a second for each event in flight (last for event {event_id})"
                    )));
                }
                let slot = self.window.get_mut(seq).expect("found above");
                if let SlotState::Sent { cap, .. } = slot.state {
                    slot.state = SlotState::Sent {
                        deadline: (now + limits.ack_timeout).min(cap),
                        cap,
                    };
                }
            }
            PluginMessage::Fatal { error } => {
                return Err(End::Disable(format!("fatal error: {error}")));
            }
            PluginMessage::Pong { nonce } => {
                if self.ping.outstanding == Some(nonce) {
                    self.ping.outstanding = None;
                    self.ping.missed = 0;
                } else if !self.unsolicited.take(now) {
                    return Err(End::Crashed(format!(
                        "broke the protocol: sent unsolicited `pong`s (nonce {nonce}, no ping outstanding with it) faster than {UNSOLICITED_RATE} a second"
                    )));
                }
            }
            PluginMessage::Register(_) => {
                return Err(End::Crashed(
                    "broke the protocol: sent `register` a second time".into(),
                ));
            }
        }
        Ok(())
    }

    /// The seq of the sent, unanswered event `event_id`, or a protocol violation.
    fn sent_seq(&mut self, event_id: i64, kind: &str) -> Result<i64, End> {
        match self.window.find(event_id) {
            Some(slot) if matches!(slot.state, SlotState::Sent { .. }) => Ok(slot.row.seq),
            _ => Err(End::Crashed(format!(
                "broke the protocol: `{kind}` for event {event_id}, which is not in flight"
            ))),
        }
    }

    /// The delivery at `seq` was answered (`outcome`) at `now`.
    fn answered(&mut self, seq: i64, outcome: &'static str, now: Instant, out: &mut Vec<Effect>) {
        if let Some(slot) = self.window.get_mut(seq) {
            out.push(Effect::Answered {
                event_id: slot.row.event_id,
                attempt: slot.attempt,
                outcome,
                duration: now.saturating_duration_since(slot.sent_at),
                created_at: slot.row.created_at.clone(),
            });
        }
    }

    fn finish(&mut self, seq: i64, out: &mut Vec<Effect>) {
        if let Some(slot) = self.window.finish(seq) {
            // A replay may have a `retries` row from before the daemon restarted.
            let retried = self
                .attempts
                .remove(&seq)
                .is_some_and(|a| a > slot.first_attempt);
            out.push(Effect::Finished {
                seq,
                event_id: slot.row.event_id,
                clear_retry: retried || slot.replay,
                resolve_failed: slot.replay,
            });
        }
    }

    fn fail(&mut self, seq: i64, attempts: u32, error: String, out: &mut Vec<Effect>) {
        if let Some(slot) = self.window.finish(seq) {
            self.attempts.remove(&seq);
            out.push(Effect::Failed {
                seq,
                event_id: slot.row.event_id,
                attempts,
                error,
            });
        }
    }

    /// The next moment an answer deadline, a retry or a ping is due.
    pub(crate) fn next_timer(&self) -> Option<Instant> {
        let ping_at = (!self.window.any_sent()).then_some(self.ping.next);
        [
            self.window.next_deadline().map(|(d, _)| d),
            self.window.next_retry(),
            ping_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// What is due at `now`: a missed deadline ends the session (a plugin restarted now would wait
    /// `restart_delay`), due retries are sent again, an idle plugin is pinged.
    pub(crate) fn on_timer(
        &mut self,
        now: Instant,
        restart_delay: Duration,
        out: &mut Vec<Effect>,
    ) -> Result<(), End> {
        if let Some((deadline, event_id)) = self.window.next_deadline() {
            if deadline <= now {
                return Err(self.hung(event_id, now, restart_delay, out));
            }
        }
        for seq in self.window.due_retries(now) {
            // Re-sent in place: the slot keeps its position in the window.
            if let Some(slot) = self.window.get_mut(seq) {
                slot.attempt += 1;
                out.push(Effect::Write(send(
                    &self.limits,
                    &mut self.attempts,
                    slot,
                    now,
                )));
                if !slot.replay {
                    out.push(Effect::Sent(Sent {
                        seq,
                        event_id: slot.row.event_id,
                        attempt: slot.attempt,
                    }));
                }
            }
        }
        if !self.window.any_sent() && self.ping.next <= now {
            let ping = &mut self.ping;
            if ping.outstanding.is_some() {
                ping.missed += 1;
                if ping.missed >= 2 {
                    return Err(End::Crashed(
                        "did not answer two pings in a row; killed as hung".into(),
                    ));
                }
            }
            ping.nonce += 1;
            ping.outstanding = Some(ping.nonce);
            ping.next = now + self.limits.ping_interval;
            out.push(Effect::Write(encode(&DaemonMessage::Ping {
                nonce: ping.nonce,
            })));
        }
        Ok(())
    }

    /// The end of a session whose plugin did not answer `event_id` in time: the timeout is charged
    /// to the event as a failed attempt, recorded like a nack's (`retries`, to be sent again after
    /// `restart_delay`), and on the `max_attempts`-th the event goes to `failed_events` and the
    /// cursor moves past it.
    fn hung(
        &mut self,
        event_id: i64,
        now: Instant,
        restart_delay: Duration,
        out: &mut Vec<Effect>,
    ) -> End {
        let limits = self.limits;
        let error = format!(
            "did not answer within ack_timeout {} (or {} in all)",
            humantime::format_duration(limits.ack_timeout),
            humantime::format_duration(limits.progress_cap)
        );
        let Some(slot) = self.window.find(event_id) else {
            return End::Crashed(format!(
                "did not answer event {event_id} in time ({error}); killed as hung"
            ));
        };
        let (seq, attempt, first) = (slot.row.seq, slot.attempt, slot.first_attempt);
        self.answered(seq, "timeout", now, out);
        let what = format!(
            "did not answer event {event_id} in time (attempt {attempt}; {error}); killed as hung"
        );
        if attempt + 1 - first >= limits.max_attempts {
            self.fail(
                seq,
                attempt,
                format!("{error} (given up after {attempt} attempts)"),
                out,
            );
            End::Hung(format!(
                "{what}; event {event_id} is recorded in failed_events after {} attempts",
                attempt + 1 - first
            ))
        } else {
            // It is sent again once the plugin has restarted.
            out.push(Effect::Retry {
                seq,
                event_id,
                attempt,
                delay: restart_delay,
                error,
                nacked: false,
            });
            End::Hung(format!(
                "{what}; event {event_id} will be delivered again (attempt {} of {})",
                attempt + 1,
                limits.max_attempts + first - 1
            ))
        }
    }
}

/// Marks `slot` sent at `now` and counts its delivery in `attempts`; the line to write.
fn send(
    limits: &PluginLimits,
    attempts: &mut HashMap<i64, u32>,
    slot: &mut Slot,
    now: Instant,
) -> String {
    let line = event_line(&slot.row, slot.attempt, &slot.subscriptions, limits);
    slot.state = SlotState::Sent {
        deadline: now + limits.ack_timeout,
        cap: now + limits.progress_cap,
    };
    slot.sent_at = now;
    attempts.insert(slot.row.seq, slot.attempt);
    line
}

/// The `event` line (newline included) that delivers `row` as attempt `attempt` to the
/// subscriptions `names`, with the plugin's `ack_timeout` as its deadline. `sgevents deliver`
/// sends the same bytes.
pub(crate) fn event_line(
    row: &JournalRow,
    attempt: u32,
    names: &[String],
    limits: &PluginLimits,
) -> String {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    encode_event_raw(
        row.event_id,
        attempt,
        &names,
        limits.ack_timeout.as_millis() as u64,
        &row.body,
    )
}

/// The first line of `text`.
pub(crate) fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn limits() -> PluginLimits {
        PluginLimits {
            ack_timeout: 30 * S,
            progress_cap: 100 * S,
            max_attempts: 3,
            ping_interval: 15 * S,
            ..PluginLimits::default()
        }
    }

    /// A journal row at `seq`, for event `seq + 1000`, with its time.
    fn row(seq: i64) -> JournalRow {
        JournalRow {
            created_at: Some("2026-11-02T10:15:00Z".into()),
            ..super::super::window::tests::row(seq)
        }
    }

    /// A session at cursor 0 with a window of `max_in_flight`, started at `t0`.
    fn session(max_in_flight: u32, t0: Instant) -> Session {
        let mut s = Session::new(0, HashMap::new(), limits(), t0);
        s.begin(max_in_flight, t0);
        s.start_pings(t0);
        s
    }

    fn line(text: &str) -> Incoming {
        Incoming::Line(text.as_bytes().to_vec())
    }

    /// What the plugin answers at `now`: its effects, or how the session ends.
    fn answer(s: &mut Session, text: &str, now: Instant) -> Result<Vec<Effect>, End> {
        let mut out = Vec::new();
        s.on_incoming(line(text), now, || 0.5, &mut out)?;
        Ok(out)
    }

    fn timer(s: &mut Session, now: Instant) -> (Vec<Effect>, Result<(), End>) {
        let mut out = Vec::new();
        let result = s.on_timer(now, 7 * S, &mut out);
        (out, result)
    }

    fn crashed(result: Result<Vec<Effect>, End>) -> String {
        match result {
            Err(End::Crashed(reason)) => reason,
            other => panic!("expected a crash, got {other:?}"),
        }
    }

    #[test]
    fn an_ack_finishes_the_event_and_moves_the_cursor() {
        let t0 = Instant::now();
        let mut s = session(2, t0);
        let (line, sent) = s.deliver(row(1), vec!["all".into()], t0);
        assert!(line.starts_with(r#"{"type":"event","event_id":1001,"attempt":1,"subscriptions":["all"],"deadline_ms":30000"#), "{line}");
        assert_eq!((sent.seq, sent.event_id, sent.attempt), (1, 1001, 1));
        s.deliver(row(2), vec!["all".into()], t0);
        let out = answer(&mut s, r#"{"type":"ack","event_id":1002}"#, t0 + 2 * S).unwrap();
        assert_eq!(
            out,
            [
                Effect::Answered {
                    event_id: 1002,
                    attempt: 1,
                    outcome: "ack",
                    duration: 2 * S,
                    created_at: Some("2026-11-02T10:15:00Z".into()),
                },
                Effect::Finished {
                    seq: 2,
                    event_id: 1002,
                    clear_retry: false,
                    resolve_failed: false,
                },
            ]
        );
        assert_eq!(s.window.cursor(), 0, "event 1 is still in flight");
        answer(&mut s, r#"{"type":"ack","event_id":1001}"#, t0 + 3 * S).unwrap();
        assert_eq!(s.window.cursor(), 2);
        assert!(s.window.is_empty());
    }

    #[test]
    fn a_nack_waits_and_is_sent_again_until_max_attempts_then_it_fails() {
        let t0 = Instant::now();
        let mut s = session(1, t0);
        s.deliver(row(1), vec!["all".into()], t0);

        // The plugin's own delay is kept.
        let out = answer(
            &mut s,
            r#"{"type":"nack","event_id":1001,"error":"locked","retry_after_ms":5000}"#,
            t0 + S,
        )
        .unwrap();
        assert!(matches!(
            out[0],
            Effect::Answered {
                outcome: "nack",
                ..
            }
        ));
        assert_eq!(
            out[1],
            Effect::Retry {
                seq: 1,
                event_id: 1001,
                attempt: 1,
                delay: 5 * S,
                error: "locked".into(),
                nacked: true,
            }
        );
        assert_eq!(
            s.next_timer(),
            Some(t0 + 6 * S),
            "the retry is the next timer"
        );
        let (out, end) = timer(&mut s, t0 + 5 * S);
        assert!(out.is_empty() && end.is_ok(), "not due yet: {out:?}");

        let (out, end) = timer(&mut s, t0 + 6 * S);
        end.unwrap();
        let [Effect::Write(line), Effect::Sent(sent)] = &out[..] else {
            panic!("expected the event again: {out:?}");
        };
        assert!(line.contains(r#""attempt":2"#), "{line}");
        assert_eq!(sent.attempt, 2);

        // Without a delay of its own: the backoff of the second attempt, 2 s with no jitter.
        let out = answer(
            &mut s,
            r#"{"type":"nack","event_id":1001,"error":"locked"}"#,
            t0 + 7 * S,
        )
        .unwrap();
        assert!(
            matches!(&out[1], Effect::Retry { attempt: 2, delay, .. } if *delay == 2 * S),
            "{out:?}"
        );
        let (_, end) = timer(&mut s, t0 + 9 * S);
        end.unwrap();

        // The third nack is the last of `max_attempts = 3`.
        let out = answer(
            &mut s,
            r#"{"type":"nack","event_id":1001,"error":"locked"}"#,
            t0 + 10 * S,
        )
        .unwrap();
        assert!(matches!(
            out[0],
            Effect::Answered {
                outcome: "failed",
                attempt: 3,
                ..
            }
        ));
        assert_eq!(
            out[1],
            Effect::Failed {
                seq: 1,
                event_id: 1001,
                attempts: 3,
                error: "locked (given up after 3 attempts)".into(),
            }
        );
        assert_eq!(s.window.cursor(), 1, "the cursor moves past a failed event");
    }

    #[test]
    fn a_term_fails_the_event_at_once() {
        let t0 = Instant::now();
        let mut s = session(1, t0);
        s.deliver(row(4), vec!["all".into()], t0);
        let out = answer(
            &mut s,
            r#"{"type":"term","event_id":1004,"error":"no parent Shot"}"#,
            t0,
        )
        .unwrap();
        assert!(matches!(
            out[0],
            Effect::Answered {
                outcome: "term",
                ..
            }
        ));
        assert_eq!(
            out[1],
            Effect::Failed {
                seq: 4,
                event_id: 1004,
                attempts: 1,
                error: "no parent Shot".into(),
            }
        );
        assert_eq!(s.window.cursor(), 4);
    }

    #[test]
    fn an_ack_timeout_is_charged_to_the_event_and_ends_the_session() {
        let t0 = Instant::now();
        let mut s = session(1, t0);
        s.deliver(row(1), vec!["all".into()], t0);
        assert_eq!(
            s.next_timer(),
            Some(t0 + 30 * S),
            "the ack deadline, not a ping"
        );
        let (out, end) = timer(&mut s, t0 + 29 * S);
        assert!(out.is_empty() && end.is_ok());

        let (out, end) = timer(&mut s, t0 + 30 * S);
        let Err(End::Hung(reason)) = end else {
            panic!("expected a hang: {end:?}");
        };
        assert!(
            reason.contains("will be delivered again (attempt 2 of 3)"),
            "{reason}"
        );
        assert!(matches!(
            out[0],
            Effect::Answered {
                outcome: "timeout",
                ..
            }
        ));
        assert!(
            matches!(&out[1], Effect::Retry { seq: 1, attempt: 1, delay, nacked: false, .. } if *delay == 7 * S),
            "the retry waits the restart's delay: {out:?}"
        );

        // The next session sends it as attempt 2; a timeout on the third gives it up.
        s.begin(1, t0 + 40 * S);
        let (line, _) = s.deliver(row(1), vec!["all".into()], t0 + 40 * S);
        assert!(line.contains(r#""attempt":2"#), "{line}");
        s.begin(1, t0 + 80 * S);
        s.deliver(row(1), vec!["all".into()], t0 + 80 * S);
        let (out, end) = timer(&mut s, t0 + 110 * S);
        let Err(End::Hung(reason)) = end else {
            panic!("expected a hang: {end:?}");
        };
        assert!(
            reason.contains("recorded in failed_events after 3 attempts"),
            "{reason}"
        );
        assert!(
            matches!(&out[1], Effect::Failed { attempts: 3, error, .. } if error.contains("given up after 3 attempts")),
            "{out:?}"
        );
        assert_eq!(s.window.cursor(), 1);
    }

    #[test]
    fn progress_extends_the_deadline_up_to_the_cap() {
        let t0 = Instant::now();
        let mut s = session(1, t0);
        s.deliver(row(1), vec!["all".into()], t0);
        let progress = r#"{"type":"progress","event_id":1001}"#;
        assert!(answer(&mut s, progress, t0 + 20 * S).unwrap().is_empty());
        assert_eq!(s.next_timer(), Some(t0 + 50 * S));
        let (_, end) = timer(&mut s, t0 + 49 * S);
        assert!(end.is_ok(), "the deadline moved");
        answer(&mut s, progress, t0 + 90 * S).unwrap();
        assert_eq!(
            s.next_timer(),
            Some(t0 + 100 * S),
            "never beyond progress_cap after the sending"
        );
        let (_, end) = timer(&mut s, t0 + 100 * S);
        assert!(matches!(end, Err(End::Hung(_))), "{end:?}");
    }

    #[test]
    fn progress_faster_than_its_budget_breaks_the_protocol() {
        let t0 = Instant::now();
        let mut s = session(1, t0);
        s.deliver(row(1), vec!["all".into()], t0);
        let progress = r#"{"type":"progress","event_id":1001}"#;
        let burst = PROGRESS_BURST as usize;
        for _ in 0..burst {
            answer(&mut s, progress, t0).unwrap();
        }
        let reason = crashed(answer(&mut s, progress, t0));
        assert!(reason.contains("sent `progress` faster than"), "{reason}");
    }

    #[test]
    fn answers_for_events_not_in_flight_break_the_protocol() {
        let t0 = Instant::now();
        let mut s = session(2, t0);
        s.deliver(row(1), vec!["all".into()], t0);
        for kind in ["ack", "progress"] {
            let reason = crashed(answer(
                &mut s,
                &format!(r#"{{"type":"{kind}","event_id":999}}"#),
                t0,
            ));
            assert_eq!(
                reason,
                format!("broke the protocol: `{kind}` for event 999, which is not in flight")
            );
        }
        // Acked once: a second ack is for an event no longer in the window.
        answer(&mut s, r#"{"type":"ack","event_id":1001}"#, t0).unwrap();
        let reason = crashed(answer(&mut s, r#"{"type":"ack","event_id":1001}"#, t0));
        assert!(reason.contains("`ack` for event 1001"), "{reason}");
        // Nacked: it waits for its retry, and is not in flight until it is sent again.
        s.deliver(row(2), vec!["all".into()], t0);
        answer(
            &mut s,
            r#"{"type":"nack","event_id":1002,"error":"x","retry_after_ms":1000}"#,
            t0,
        )
        .unwrap();
        let reason = crashed(answer(
            &mut s,
            r#"{"type":"term","event_id":1002,"error":"x"}"#,
            t0,
        ));
        assert!(reason.contains("`term` for event 1002"), "{reason}");
    }

    #[test]
    fn protocol_violations_end_the_session() {
        let t0 = Instant::now();
        let mut s = session(1, t0);
        let reason = crashed(answer(&mut s, "hello there", t0));
        assert!(reason.starts_with("broke the protocol: "), "{reason}");
        assert!(reason.ends_with("`hello there`"), "{reason}");

        let mut out = Vec::new();
        let end = s.on_incoming(Incoming::TooLong(20_000_000), t0, || 0.5, &mut out);
        assert_eq!(
            end,
            Err(End::Crashed(
                "broke the protocol: wrote a line of 20000000 bytes, over the 16 MiB limit".into()
            ))
        );

        let register = r#"{"type":"register","protocol":1,"subscriptions":[{"name":"all","event_types":["*"]}],"max_in_flight":1}"#;
        assert_eq!(
            crashed(answer(&mut s, register, t0)),
            "broke the protocol: sent `register` a second time"
        );

        assert_eq!(
            answer(&mut s, r#"{"type":"fatal","error":"no licence"}"#, t0),
            Err(End::Disable("fatal error: no licence".into()))
        );
    }

    #[test]
    fn an_idle_plugin_is_pinged_and_two_missed_pings_end_the_session() {
        let t0 = Instant::now();
        let mut s = session(1, t0);
        assert_eq!(s.next_timer(), Some(t0 + 15 * S));
        let (out, end) = timer(&mut s, t0 + 15 * S);
        end.unwrap();
        assert_eq!(
            out,
            [Effect::Write("{\"type\":\"ping\",\"nonce\":1}\n".into())]
        );
        // Answered: the count of missed pings starts again.
        answer(&mut s, r#"{"type":"pong","nonce":1}"#, t0 + 16 * S).unwrap();
        assert_eq!(
            s.next_timer(),
            Some(t0 + 31 * S),
            "any line puts the next ping off"
        );
        timer(&mut s, t0 + 31 * S).1.unwrap();
        let (out, end) = timer(&mut s, t0 + 46 * S);
        assert!(end.is_ok(), "one missed ping is not yet a hang");
        assert_eq!(
            out,
            [Effect::Write("{\"type\":\"ping\",\"nonce\":3}\n".into())]
        );
        let (_, end) = timer(&mut s, t0 + 61 * S);
        assert_eq!(
            end,
            Err(End::Crashed(
                "did not answer two pings in a row; killed as hung".into()
            ))
        );
    }

    #[test]
    fn no_ping_while_an_event_is_in_flight() {
        let t0 = Instant::now();
        let mut s = session(1, t0);
        s.deliver(row(1), vec!["all".into()], t0);
        let (out, end) = timer(&mut s, t0 + 20 * S);
        assert!(out.is_empty() && end.is_ok(), "{out:?}");
    }

    #[test]
    fn unsolicited_pongs_are_bounded() {
        let t0 = Instant::now();
        let mut s = session(1, t0);
        for _ in 0..UNSOLICITED_BURST as usize {
            answer(&mut s, r#"{"type":"pong","nonce":42}"#, t0).unwrap();
        }
        let reason = crashed(answer(&mut s, r#"{"type":"pong","nonce":42}"#, t0));
        assert!(
            reason.contains("sent unsolicited `pong`s (nonce 42"),
            "{reason}"
        );
    }

    #[test]
    fn a_replayed_failed_event_counts_on_and_is_resolved_when_acked() {
        let t0 = Instant::now();
        let mut s = Session::new(10, HashMap::from([(5, 2)]), limits(), t0);
        s.begin(2, t0);
        // It failed after 3 deliveries; a `retries` row from before says 2.
        let line = s.replay(row(5), vec!["all".into()], 3, t0);
        assert!(line.contains(r#""attempt":4"#), "{line}");
        assert_eq!(s.window.cursor(), 10, "a replay sits behind the cursor");
        let out = answer(&mut s, r#"{"type":"ack","event_id":1005}"#, t0).unwrap();
        assert_eq!(
            out[1],
            Effect::Finished {
                seq: 5,
                event_id: 1005,
                clear_retry: true,
                resolve_failed: true,
            }
        );
        assert_eq!(s.window.cursor(), 10);
    }

    #[test]
    fn a_retried_event_clears_its_retry_row_when_acked() {
        let t0 = Instant::now();
        let mut s = Session::new(0, HashMap::from([(1, 1)]), limits(), t0);
        s.begin(1, t0);
        let (_, sent) = s.deliver(row(1), vec!["all".into()], t0);
        assert_eq!(sent.attempt, 2, "it was delivered once before the restart");
        let out = answer(&mut s, r#"{"type":"ack","event_id":1001}"#, t0).unwrap();
        assert!(
            matches!(
                out[1],
                Effect::Finished {
                    clear_retry: true,
                    resolve_failed: false,
                    ..
                }
            ),
            "{out:?}"
        );
    }
}
