//! A worker of the sgevents NATS bridge in Rust: a durable pull consumer shared by every copy of
//! this program (on any machine), explicit acks, redelivery after `ack_wait`, at most
//! `max_deliver` deliveries.
//!
//! ```text
//! cargo run -p nats-bridge --example worker -- nats://nats1:4222 publish-versions \
//!     'sgevents.mystudio.Shotgun_Version_New'
//! ```
//!
//! Arguments: the server URL, the consumer's (durable) name, the filter subject. Put the work in
//! `handle`: `Ok` acknowledges the event, `Err(Retry)` asks for a redelivery after a delay,
//! `Err(Skip)` drops it for good. See `README.md` next to this file.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer};
use futures_util::StreamExt;
use serde_json::Value;

/// What went wrong with one event.
enum Failure {
    /// Try again after this long.
    Retry(String, Duration),
    /// Never try again.
    Skip(String),
}

/// The work for one event; replace with yours. Must be idempotent on `event["id"]`.
fn handle(event: &Value) -> Result<(), Failure> {
    match event["event_type"].as_str() {
        Some(kind) => {
            eprintln!("event {} {kind}", event["id"]);
            Ok(())
        }
        None if event["id"].is_i64() => Err(Failure::Skip("no event type".into())),
        None => Err(Failure::Retry("unreadable".into(), Duration::from_secs(5))),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), async_nats::Error> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let durable = args.next().unwrap_or_else(|| "workers".into());
    let filter = args.next().unwrap_or_else(|| "sgevents.>".into());

    let client = async_nats::ConnectOptions::new()
        .name(format!("sgevents-worker {durable}"))
        .connect(url)
        .await?;
    let stream = jetstream::new(client).get_stream("SGEVENTS").await?;
    // Created by the first worker, found by the others (same name, same settings).
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            &durable,
            consumer::pull::Config {
                durable_name: Some(durable.clone()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(60),
                max_deliver: 5,
                // 1 keeps the events of the filter subject strictly in order (one at a time).
                max_ack_pending: 1000,
                filter_subject: filter.clone(),
                ..Default::default()
            },
        )
        .await?;
    eprintln!("consuming `{filter}` as {durable}");
    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        let message = message?;
        let answer = match serde_json::from_slice::<Value>(&message.payload) {
            Ok(event) => handle(&event),
            Err(e) => Err(Failure::Skip(format!("not JSON: {e}"))),
        };
        match answer {
            // Waits for the server's confirmation: a crash right after does not bring it back.
            Ok(()) => message.double_ack().await?,
            Err(Failure::Retry(why, delay)) => {
                eprintln!("retrying in {delay:?}: {why}");
                message.ack_with(AckKind::Nak(Some(delay))).await?;
            }
            Err(Failure::Skip(why)) => {
                eprintln!("dropped: {why}");
                message.ack_with(AckKind::Term).await?;
            }
        }
    }
    Ok(())
}
