//! Example plugin: logs one line per event it receives, the classic smoke test of a deployment.
//!
//! `event 2011531 Shotgun_Task_Change Task 67378 "Anim" sg_status_list by Ana Reyes`
//!
//! With `summary_every = N` in its `config` (the demo uses it), each event is logged at debug only,
//! and at info a summary every N events (`1,000 events; last: event ...`), and once more when it
//! stops.

use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sgevents_sdk::{Event, Plugin, Subscription};

/// Events seen, and the last one, described.
static SEEN: AtomicU64 = AtomicU64::new(0);
static LAST: Mutex<String> = Mutex::new(String::new());

fn main() -> ExitCode {
    let code = Plugin::new()
        .on(Subscription::new("every_event", ["*"]), |ctx, event| {
            let line = describe(event);
            let every = ctx
                .config()
                .get("summary_every")
                .and_then(|v| v.as_u64())
                .unwrap_or(0);
            if every == 0 {
                ctx.log().info(line);
                return Ok(());
            }
            ctx.log().debug(&line);
            let seen = SEEN.fetch_add(1, Ordering::Relaxed) + 1;
            if seen % every == 0 {
                ctx.log()
                    .info(format!("{} events; last: {line}", thousands(seen)));
            }
            if let Ok(mut last) = LAST.lock() {
                *last = line;
            }
            Ok(())
        })
        .run();
    let seen = SEEN.load(Ordering::Relaxed);
    if seen > 0 {
        let last = LAST.lock().map(|l| l.clone()).unwrap_or_default();
        // The SDK has stopped: its log is plain stderr now, in the same format.
        eprintln!("I! {} events in all; last: {last}", thousands(seen));
    }
    code
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Id, type, entity, attribute and user of an event, on one line.
fn describe(event: &Event) -> String {
    let mut parts = vec![format!("event {}", event.id)];
    if !event.event_type.is_empty() {
        parts.push(event.event_type.clone());
    }
    if let Some(entity) = &event.entity {
        parts.push(format!("{} {}", entity.entity_type, entity.id));
        parts.extend(entity.name.as_ref().map(|name| format!("{name:?}")));
    } else if let Some(entity_type) = event.entity_type() {
        // A retired entity: its link is gone, `meta` still says what it was.
        parts.push(format!("{entity_type} {}", event.meta["entity_id"]));
    }
    parts.extend(event.attribute_name.clone());
    if let Some(user) = &event.user {
        parts.push(match &user.name {
            Some(name) => format!("by {name}"),
            None => format!("by {} {}", user.entity_type, user.id),
        });
    }
    parts.join(" ")
}
