//! `POST /webhooks/shotgrid` on the HTTP listener: ShotGrid's webhook deliveries, as a reason to
//! poll now.
//!
//! With `[source] webhook_secret_env` (or `webhook_secret_file`) set, a delivery whose
//! `X-SG-SIGNATURE` header is `sha1=` and the hex HMAC-SHA1 of the raw body with the secret
//! (compared in constant time) answers 200 at once and pokes the source ([`crate::source::Probe`]'s
//! `poke`): the poller polls now instead of waiting out its interval. Pokes coalesce: at most one
//! poll runs and one more is pending, however many deliveries arrive. A missing or wrong signature
//! answers 401, is counted and logged (the first ten, then every hundredth, so that a flood
//! cannot flood the log too). A body over [`MAX_BODY_BYTES`] is refused with 413 before it is
//! read whole. Without a secret the route answers 404.
//!
//! The payload is never read beyond its signature, and never journaled: the event log stays the
//! only source of truth, so a lost delivery only means the next poll comes at its usual time, and
//! a forged one (which needs the secret) only an early poll.

use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha1::Sha1;

use super::{HttpState, json_response};

/// The largest delivery read.
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The header that carries the signature.
pub(crate) const SIGNATURE_HEADER: &str = "x-sg-signature";

/// The handler of `POST /webhooks/shotgrid`.
pub(crate) async fn deliver(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (secret, poke, counts) = {
        let probe = state
            .source
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (
            probe.webhook_secret.clone(),
            std::sync::Arc::clone(&probe.poke),
            std::sync::Arc::clone(&probe.webhooks),
        )
    };
    let Some(secret) = secret else {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": "webhooks are off: `[source] webhook_secret_env` (or `webhook_secret_file`) is not set"}),
        );
    };
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty());
    if verify(secret.expose().as_bytes(), &body, signature) {
        counts.accepted.fetch_add(1, Ordering::Relaxed);
        poke.notify_one();
        return json_response(StatusCode::OK, &json!({"status": "ok"}));
    }
    let refused = counts.refused.fetch_add(1, Ordering::Relaxed) + 1;
    let why = if signature.is_some() {
        "a signature that does not match"
    } else {
        "no `X-SG-SIGNATURE` header"
    };
    if refused <= 10 || refused % 100 == 0 {
        tracing::warn!(
            refused,
            "refused a webhook delivery to /webhooks/shotgrid with {why} ({refused} refused since the start)\nhint: the webhook on the site must use the secret in `source.webhook_secret_env` (or `webhook_secret_file`); anything else reaching the endpoint is not ShotGrid"
        );
    }
    json_response(
        StatusCode::UNAUTHORIZED,
        &json!({"error": format!("refused: {why}")}),
    )
}

/// Whether `header` is `sha1=<hex HMAC-SHA1 of body with secret>`, compared in constant time.
pub(crate) fn verify(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(hex) = header.and_then(|h| h.trim().strip_prefix("sha1=")) else {
        return false;
    };
    let Some(signature) = decode_hex(hex) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 || !hex.is_ascii() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signature `verify` accepts: `sha1=` and the hex HMAC-SHA1 of `body` with `secret`.
    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(body);
        let bytes = mac.finalize().into_bytes();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha1={hex}")
    }

    #[test]
    fn signatures_verify_and_forgeries_do_not() {
        let body = br#"{"data":{"event_log_entry_id":42}}"#;
        let good = sign(b"s3cret", body);
        assert!(good.starts_with("sha1=") && good.len() == 5 + 40, "{good}");
        assert!(verify(b"s3cret", body, Some(&good)));
        assert!(verify(
            b"s3cret",
            body,
            Some(&good.to_uppercase().replace("SHA1=", "sha1="))
        ));
        assert!(!verify(b"other", body, Some(&good)), "another secret");
        assert!(!verify(b"s3cret", b"{}", Some(&good)), "another body");
        assert!(!verify(b"s3cret", body, None), "no header");
        assert!(!verify(b"s3cret", body, Some(&good[5..])), "no `sha1=`");
        assert!(!verify(b"s3cret", body, Some("sha1=zz")), "not hex");
        assert!(
            !verify(b"s3cret", body, Some(&good[..good.len() - 2])),
            "too short"
        );
    }
}
