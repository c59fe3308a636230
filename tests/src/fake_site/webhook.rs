//! Webhook deliveries of the fake site ([`super::FakeSite::set_webhook`]): one signed `POST` for
//! each event that becomes visible, in the shape of ShotGrid's webhooks (a `data` object naming
//! the event log entry), `X-SG-SIGNATURE: sha1=<hex HMAC-SHA1 of the body>`. Sent in order on a
//! thread of their own, over a new connection each, to an `http://` URL; a failed delivery is
//! dropped, as the site drops one its receiver refuses.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha1::Sha1;

/// Where deliveries go, and their secret.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) url: String,
    pub(crate) secret: String,
}

/// Sends one delivery for each event, in order, on a new thread.
pub(crate) fn send(target: Target, events: Vec<Value>) {
    if events.is_empty() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("fake-site-webhook".to_owned())
        .spawn(move || {
            for event in events {
                let body = payload(&event).to_string();
                let _ = post(
                    &target.url,
                    &signature(&target.secret, body.as_bytes()),
                    &body,
                );
            }
        });
    drop(spawned);
}

/// ShotGrid's delivery body for one event log entry.
fn payload(event: &Value) -> Value {
    json!({
        "data": {
            "id": format!("{}.0.0", event["id"]),
            "event_log_entry_id": event["id"],
            "event_type": event["event_type"],
            "operation": event["meta"]["type"],
            "user": event["user"],
            "entity": event["entity"],
            "project": event["project"],
            "meta": event["meta"],
            "created_at": event["created_at"],
            "attribute_name": event["attribute_name"],
            "session_uuid": event["session_uuid"],
        },
        "timestamp": event["created_at"],
    })
}

/// `sha1=` and the hex HMAC-SHA1 of `body` with `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha1={hex}")
}

/// One `POST` of a JSON body with a signature; returns the status.
pub fn post(url: &str, signature: &str, body: &str) -> std::io::Result<u16> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        std::io::Error::other(format!("`{url}`: only http:// webhook URLs are supported"))
    })?;
    let (addr, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nX-SG-SIGNATURE: {signature}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no HTTP status in the answer"))
}
