//! Redaction of the secrets the daemon knows, in every text that comes from a plugin or a remote
//! answer before the daemon writes it anywhere (logs, the state database, control answers).
//!
//! The set is global: [`set`] replaces it at start and at each reload, from
//! [`crate::config::Config::secrets`] (the source's key, each plugin's key, the SMTP password, and
//! the value of every variable a `*_env` key names). [`redact`] replaces each of them, longest
//! first, by `<redacted>`. Values shorter than [`MIN_SECRET`] bytes are ignored: redacting a
//! two-letter "key" would mangle every message, and such a key protects nothing anyway.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

/// What a secret is replaced by.
pub const REDACTED: &str = "<redacted>";

/// Shorter values are not redacted.
pub const MIN_SECRET: usize = 6;

static SECRETS: RwLock<Option<Arc<Vec<String>>>> = RwLock::new(None);

/// Replaces the set of secrets (at start and at each reload).
pub fn set(secrets: impl IntoIterator<Item = String>) {
    let mut list: Vec<String> = Vec::new();
    for s in secrets {
        if s.len() < MIN_SECRET {
            continue;
        }
        // In a JSON log line or a JSON answer, a secret holding `"` or `\` appears escaped.
        let escaped = serde_json::to_string(&s).unwrap_or_default();
        let escaped = escaped
            .strip_prefix('"')
            .and_then(|e| e.strip_suffix('"'))
            .unwrap_or_default()
            .to_owned();
        if escaped != s && escaped.len() >= MIN_SECRET {
            list.push(escaped);
        }
        list.push(s);
    }
    list.sort_by_key(|s| std::cmp::Reverse(s.len()));
    list.dedup();
    let mut guard = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    *guard = if list.is_empty() {
        None
    } else {
        Some(Arc::new(list))
    };
}

/// `text` with every known secret replaced by `<redacted>`; borrowed when there is none in it.
pub fn redact(text: &str) -> Cow<'_, str> {
    let secrets = match SECRETS.read() {
        Ok(guard) => guard.clone(),
        Err(e) => e.into_inner().clone(),
    };
    let Some(secrets) = secrets else {
        return Cow::Borrowed(text);
    };
    redact_with(&secrets, text)
}

/// `bytes` redacted when they are UTF-8 text (a line of a plugin, a log record); as they are
/// otherwise.
pub fn redact_bytes(bytes: &[u8]) -> Cow<'_, [u8]> {
    match std::str::from_utf8(bytes) {
        Ok(text) => match redact(text) {
            Cow::Borrowed(_) => Cow::Borrowed(bytes),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        },
        Err(_) => Cow::Borrowed(bytes),
    }
}

fn redact_with<'a>(secrets: &[String], text: &'a str) -> Cow<'a, str> {
    let mut out = Cow::Borrowed(text);
    for s in secrets {
        if out.contains(s.as_str()) {
            out = Cow::Owned(out.replace(s.as_str(), REDACTED));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_first_and_short_values_ignored() {
        let secrets = vec!["abcdef-long".to_owned(), "abcdef".to_owned()];
        assert_eq!(
            redact_with(&secrets, "k=abcdef-long and abcdef"),
            "k=<redacted> and <redacted>"
        );
        assert!(matches!(
            redact_with(&secrets, "nothing here"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn the_global_set() {
        set(["tiny".to_owned(), "s3cr\"et-value".to_owned()]);
        assert_eq!(redact("tiny s3cr\"et-value"), "tiny <redacted>");
        assert_eq!(
            redact("{\"m\":\"s3cr\\\"et-value\"}"),
            "{\"m\":\"<redacted>\"}"
        );
        assert_eq!(&*redact_bytes(b"x s3cr\"et-value"), b"x <redacted>");
        set(Vec::new());
        assert_eq!(redact("s3cr\"et-value"), "s3cr\"et-value");
    }
}
