//! The Rust SDK's conformance plugin: an ordinary plugin, built with the SDK's public API only,
//! whose behaviour each conformance transcript chooses (`protocol/transcripts/README.md`).
//!
//! It registers the subscriptions listed in `hello.config.subscriptions` from its setup hook, with
//! one callback for all of them that does what the event's `conformance` field says.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use serde_json::Value;
use sgevents_sdk::{Context, Error, Event, Plugin, protocol};

/// Per delivery (event id and attempt), the subscriptions whose callbacks ran so far.
type Called = Mutex<HashMap<(i64, u32), Vec<String>>>;

fn main() -> ExitCode {
    Plugin::new()
        .setup(|setup, config| {
            let subscriptions: Vec<protocol::Subscription> = match config.get("subscriptions") {
                Some(list) => serde_json::from_value(list.clone())?,
                None => Vec::new(),
            };
            let called = Arc::new(Called::default());
            for subscription in subscriptions {
                let called = Arc::clone(&called);
                setup.on(subscription, move |ctx, event| conform(&called, ctx, event));
            }
            if let Some(window) = config.get("max_in_flight") {
                let window = window
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| {
                        Error::new(format!(
                            "`max_in_flight` must be a whole number, not `{window}`"
                        ))
                    })?;
                setup.max_in_flight(window);
            }
            Ok(())
        })
        .run()
}

/// The one callback: applies the event's `conformance` action.
fn conform(called: &Called, ctx: &Context<'_>, event: &Event) -> Result<(), Error> {
    let key = (ctx.event_id(), ctx.attempt());
    let names = {
        let mut all = called.lock().unwrap_or_else(PoisonError::into_inner);
        let names = all.entry(key).or_default();
        names.push(ctx.subscription().to_owned());
        names.join(",")
    };
    let result = act(event.extra.get("conformance"), ctx, &names);
    // Forget the delivery once no more of its callbacks will run.
    if result.is_err() || ctx.subscriptions().last().map(String::as_str) == Some(ctx.subscription())
    {
        called
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
    }
    result
}

fn act(spec: Option<&Value>, ctx: &Context<'_>, called: &str) -> Result<(), Error> {
    let field = |key: &str| spec.and_then(|s| s.get(key));
    let only_in = field("in").and_then(Value::as_str);
    if only_in.is_some_and(|name| name != ctx.subscription()) {
        return Ok(());
    }
    if field("attempts")
        .and_then(Value::as_u64)
        .is_some_and(|n| u64::from(ctx.attempt()) > n)
    {
        return Ok(());
    }
    let error = field("error")
        .and_then(Value::as_str)
        .unwrap_or("conformance failure");
    match field("action").and_then(Value::as_str).unwrap_or("ack") {
        "ack" => Ok(()),
        "nack" => {
            let error = match only_in {
                Some(_) => format!("{error} [called: {called}]"),
                None => error.to_owned(),
            };
            match field("retry_after_ms").and_then(Value::as_u64) {
                Some(ms) => Err(Error::retry(error).after(Duration::from_millis(ms))),
                None => Err(Error::new(error)),
            }
        }
        "term" => Err(Error::term(error)),
        "fatal" => Err(Error::fatal(error)),
        "slow" => {
            let progress = field("progress").and_then(Value::as_u64).unwrap_or(0);
            let pause =
                Duration::from_millis(field("sleep_ms").and_then(Value::as_u64).unwrap_or(0));
            if progress == 0 {
                thread::sleep(pause);
            }
            for _ in 0..progress {
                ctx.progress();
                thread::sleep(pause);
            }
            Ok(())
        }
        other => Err(Error::term(format!("unknown conformance action `{other}`"))),
    }
}
