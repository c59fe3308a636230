//! A minimal client of ShotGrid's REST API v1, for reading the event log: client-credentials
//! sign-in, a token refreshed before it expires and once more on a 401, and `_search` on
//! `event_log_entries`, with answers turned into the flat shape `shotgun_api3` returns.
//!
//! Errors are classified for the poller (what to wait, whether a new sign-in can help) and say
//! what an operator should check. The script key is sent in the sign-in request body only, and
//! never appears in an error or a log.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Map, Value, json};

use crate::config::{Secret, ShotgridSource};

/// The event fields asked for: everything the flat event shape needs.
const FIELDS: &[&str] = &[
    "event_type",
    "attribute_name",
    "meta",
    "entity",
    "user",
    "project",
    "session_uuid",
    "created_at",
    "description",
];
/// How much of an unexpected answer an error shows.
const BODY_EXCERPT: usize = 200;

/// What went wrong talking to the site.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ClientError {
    /// No answer: DNS, refused connection, TLS, proxy, timeout.
    #[error("cannot reach {url}: {detail}")]
    Network {
        /// The URL asked.
        url: String,
        /// The error chain.
        detail: String,
        /// Whether it looks like a certificate problem.
        tls: bool,
    },
    /// An HTTP error status.
    #[error("{what} answered HTTP {status}: {body}")]
    Status {
        /// The request, in words.
        what: String,
        /// The status.
        status: u16,
        /// The start of the body, or the error title.
        body: String,
        /// What `Retry-After` said (seconds or an HTTP date).
        retry_after: Option<Duration>,
        /// The `code` of the body's first error, if it has one (104: a permission refusal).
        code: Option<i64>,
    },
    /// The site refused the script's name and key, or a fresh token.
    #[error("the site refused the script `{script}`: {detail}")]
    Auth {
        /// The script name.
        script: String,
        /// The site's words.
        detail: String,
    },
    /// A 2xx answer that is not the expected JSON.
    #[error(
        "{what} answered something that is not the expected JSON ({error}); the answer began with: {body}"
    )]
    BadAnswer {
        /// The request, in words.
        what: String,
        /// What was wrong with it.
        error: String,
        /// The start of the body.
        body: String,
    },
}

impl ClientError {
    /// What an operator should check.
    pub(crate) fn hint(&self, proxy: bool) -> &'static str {
        match self {
            ClientError::Network { tls: true, .. } => {
                "the site's certificate is not trusted here: set `source.ca_file` to your certificate authorities (PEM), or check `source.url`"
            }
            ClientError::Network { .. } if proxy => {
                "check `source.url`, the network, and that the proxy in `source.proxy` is up and allows the site"
            }
            ClientError::Network { .. } => {
                "check `source.url` and the network (DNS, firewall); set `source.proxy` if the studio needs one"
            }
            ClientError::Auth { .. } => {
                "check `source.script_name` and the key (`script_key_env` or `script_key_file`); the script must exist on the site and may read EventLogEntry"
            }
            ClientError::Status { status: 429, .. } => {
                "the site is rate-limiting this client; it will be retried after the delay it asked for"
            }
            ClientError::Status { status, .. } if *status >= 500 => {
                "the site is having trouble; it will be retried with backoff"
            }
            ClientError::Status { status: 403, .. }
            | ClientError::Status {
                status: 400,
                code: Some(104),
                ..
            } => {
                "the script may not read the event log: give its permission group read access to EventLogEntry (Site Preferences > Permissions: Scripts), or use another script in `source.script_name`"
            }
            ClientError::Status { .. } => {
                "check `source.url`: it must be the site's address, without a path"
            }
            ClientError::BadAnswer { .. } => {
                "check `source.url` (a proxy or a login page may be answering instead of the site)"
            }
        }
    }

    /// The delay the site asked for (429 or 503 with `Retry-After`).
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

struct Token {
    access: String,
    refresh_at: Instant,
}

/// A signed-in (or about to be) client of one site. Shared by the requests in flight (`&self`):
/// the token sits behind a lock held while it is checked or renewed, so concurrent requests sign
/// in once.
pub(crate) struct Client {
    http: reqwest::Client,
    url: String,
    script_name: String,
    key: Secret,
    token: tokio::sync::Mutex<Option<Token>>,
}

impl Client {
    /// A client for the configured site (nothing is sent yet).
    pub(crate) fn new(config: &ShotgridSource) -> Result<Client, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("sgevents/", env!("CARGO_PKG_VERSION")));
        if let Some(proxy) = &config.proxy {
            builder = builder.proxy(
                reqwest::Proxy::all(proxy)
                    .map_err(|e| format!("bad `source.proxy` `{proxy}`: {e}"))?,
            );
        }
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read `source.ca_file` `{}`: {e}", path.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                format!(
                    "`source.ca_file` `{}` is not a PEM bundle: {e}",
                    path.display()
                )
            })? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        Ok(Client {
            http,
            url: config.url.clone(),
            script_name: config.script_name.clone(),
            key: config.script_key.clone(),
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// Signs in with the script's name and key.
    pub(crate) async fn sign_in(&self) -> Result<(), ClientError> {
        let mut token = self.token.lock().await;
        self.sign_in_locked(&mut token).await
    }

    /// One sign-in (the token's lock held), counted in the metrics.
    async fn sign_in_locked(&self, slot: &mut Option<Token>) -> Result<(), ClientError> {
        let started = Instant::now();
        let result = self.sign_in_request(slot).await;
        record(started, &result);
        result
    }

    async fn sign_in_request(&self, slot: &mut Option<Token>) -> Result<(), ClientError> {
        let url = format!("{}/api/v1/auth/access_token", self.url);
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.script_name.as_str()),
            ("client_secret", self.key.expose()),
        ];
        let response = self
            .http
            .post(&url)
            .header("Accept", "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| network(&url, &e))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = response.text().await.map_err(|e| network(&url, &e))?;
        if status == StatusCode::BAD_REQUEST
            || status == StatusCode::UNAUTHORIZED
            || status == StatusCode::FORBIDDEN
        {
            return Err(ClientError::Auth {
                script: self.script_name.clone(),
                detail: error_title(&body).unwrap_or_else(|| excerpt(&body)),
            });
        }
        if !status.is_success() {
            return Err(ClientError::Status {
                what: "the sign-in".into(),
                status: status.as_u16(),
                body: error_title(&body).unwrap_or_else(|| excerpt(&body)),
                retry_after,
                code: error_code(&body),
            });
        }
        let answer: Value = serde_json::from_str(&body).map_err(|e| ClientError::BadAnswer {
            what: "the sign-in".into(),
            error: e.to_string(),
            body: excerpt(&body),
        })?;
        let Some(access) = answer.get("access_token").and_then(Value::as_str) else {
            return Err(ClientError::BadAnswer {
                what: "the sign-in".into(),
                error: "no `access_token`".into(),
                body: excerpt(&body),
            });
        };
        let lifetime = Duration::from_secs(
            answer
                .get("expires_in")
                .and_then(Value::as_u64)
                .unwrap_or(600),
        );
        // Refresh when four fifths of the lifetime are gone: early enough that a slow request
        // started just before does not outlive the token.
        *slot = Some(Token {
            access: access.to_owned(),
            refresh_at: Instant::now() + lifetime.mul_f64(0.8),
        });
        tracing::debug!(site = %self.url, lifetime = ?lifetime, "signed in");
        Ok(())
    }

    async fn token(&self) -> Result<String, ClientError> {
        let mut slot = self.token.lock().await;
        if slot.as_ref().is_none_or(|t| Instant::now() >= t.refresh_at) {
            self.sign_in_locked(&mut slot).await?;
        }
        Ok(slot.as_ref().expect("signed in").access.clone())
    }

    /// A `_search` on the event log, signing in again once if the token was refused.
    async fn search(&self, what: &str, body: Value, hash: bool) -> Result<Vec<Value>, ClientError> {
        self.search_answer(what, body, hash).await?.rows()
    }

    /// Like [`Client::search`], with the answer's body as it came: its rows are read later
    /// ([`Answer::rows_after_head`], [`Answer::rows`]).
    async fn search_answer(
        &self,
        what: &str,
        body: Value,
        hash: bool,
    ) -> Result<Answer, ClientError> {
        match self.search_once(what, &body, hash).await {
            Err(ClientError::Status { status: 401, .. }) => {
                tracing::info!(site = %self.url, "the site refused the token; signing in again");
                *self.token.lock().await = None;
                match self.search_once(what, &body, hash).await {
                    Err(ClientError::Status {
                        status: 401, body, ..
                    }) => Err(ClientError::Auth {
                        script: self.script_name.clone(),
                        detail: format!("a fresh token was refused too (HTTP 401: {body})"),
                    }),
                    other => other,
                }
            }
            other => other,
        }
    }

    /// One `_search` request (and a sign-in first when the token is due), counted in the metrics.
    async fn search_once(
        &self,
        what: &str,
        body: &Value,
        hash: bool,
    ) -> Result<Answer, ClientError> {
        let started = Instant::now();
        let result = self.search_request(what, body, hash).await;
        record(started, &result);
        result
    }

    async fn search_request(
        &self,
        what: &str,
        body: &Value,
        hash: bool,
    ) -> Result<Answer, ClientError> {
        let token = self.token().await?;
        let url = format!("{}/api/v1/entity/event_log_entries/_search", self.url);
        let content_type = if hash {
            "application/vnd+shotgun.api3_hash+json"
        } else {
            "application/vnd+shotgun.api3_array+json"
        };
        let response = self
            .http
            .post(&url)
            .bearer_auth(token)
            .header("Accept", "application/json")
            .header("Content-Type", content_type)
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| network(&url, &e))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let text = response.text().await.map_err(|e| network(&url, &e))?;
        if !status.is_success() {
            return Err(ClientError::Status {
                what: what.to_owned(),
                status: status.as_u16(),
                body: error_title(&text).unwrap_or_else(|| excerpt(&text)),
                retry_after,
                code: error_code(&text),
            });
        }
        Ok(Answer {
            what: what.to_owned(),
            text,
        })
    }

    /// Up to `limit` events with an id above `after`, in id order, as the site's answer: its
    /// [`Answer::rows_after_head`] tells where the next page starts before the rows are read.
    pub(crate) async fn events_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Answer, ClientError> {
        let body = json!({
            "filters": [["id", "greater_than", after]],
            "fields": FIELDS, "sort": "id", "page": {"size": limit, "number": 1},
            "options": {"include_archived_projects": true},
        });
        self.search_answer(&format!("the event log (ids above {after})"), body, false)
            .await
    }

    /// The events with an id from `first` to `last` (inclusive), in id order: one page of a
    /// catch-up, `limit` at least the range's length.
    pub(crate) async fn events_between(
        &self,
        first: i64,
        last: i64,
        limit: usize,
    ) -> Result<Vec<Value>, ClientError> {
        let body = json!({
            "filters": [["id", "between", [first, last]]],
            "fields": FIELDS, "sort": "id", "page": {"size": limit, "number": 1},
            "options": {"include_archived_projects": true},
        });
        self.search(
            &format!("the event log (ids {first} to {last})"),
            body,
            false,
        )
        .await
    }

    /// The events that exist in any of the id ranges (inclusive), in id order.
    pub(crate) async fn events_in(
        &self,
        ranges: &[(i64, i64)],
        limit: usize,
    ) -> Result<Vec<Value>, ClientError> {
        let conditions: Vec<Value> = ranges
            .iter()
            .map(|(a, b)| json!(["id", "between", [a, b]]))
            .collect();
        let body = json!({
            "filters": {"logical_operator": "or", "conditions": conditions},
            "fields": FIELDS, "sort": "id", "page": {"size": limit, "number": 1},
            "options": {"include_archived_projects": true},
        });
        self.search(
            &format!("the event log ({} missing id ranges)", ranges.len()),
            body,
            true,
        )
        .await
    }

    /// The newest event's id, if the log has any.
    pub(crate) async fn newest_id(&self) -> Result<Option<i64>, ClientError> {
        let body = json!({"filters": [], "fields": ["id"], "sort": "-id", "page": {"size": 1, "number": 1}});
        let rows = self
            .search("the event log (newest event)", body, false)
            .await?;
        Ok(rows
            .first()
            .and_then(|r| r.get("id"))
            .and_then(Value::as_i64))
    }

    /// The id of the first event created at or after `time` (RFC 3339), if there is one.
    pub(crate) async fn first_id_since(&self, time: &str) -> Result<Option<i64>, ClientError> {
        let body = json!({
            "filters": [["created_at", "greater_than", time]],
            "fields": ["id"], "sort": "id", "page": {"size": 1, "number": 1},
        });
        let rows = self
            .search(
                &format!("the event log (first event after {time})"),
                body,
                false,
            )
            .await?;
        Ok(rows
            .first()
            .and_then(|r| r.get("id"))
            .and_then(Value::as_i64))
    }
}

/// The body of a successful `_search` answer, not read yet.
#[derive(Debug)]
pub(crate) struct Answer {
    /// What was asked for, for the errors.
    what: String,
    text: String,
}

/// How many rows an answer has, and the last one's id: where the next page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) rows: usize,
    pub(crate) last_id: Option<i64>,
}

impl Answer {
    /// The rows, each in the flat shape ([`answer_rows`]).
    pub(crate) fn rows(&self) -> Result<Vec<Value>, ClientError> {
        answer_rows(&self.text).map_err(|e| self.bad(e))
    }

    /// The rows as [`Answer::rows`], handing their [`Head`] to `tell` first: the JSON is checked
    /// and the rows only delimited for it, so the next request can leave while the rows are
    /// parsed (one reading of the body serves both).
    pub(crate) fn rows_after_head(
        &self,
        tell: impl FnOnce(Head),
    ) -> Result<Vec<Value>, ClientError> {
        let rows = envelope(&self.text).map_err(|e| self.bad(e))?;
        tell(head_of(&rows).map_err(|e| self.bad(e))?);
        flat_rows(rows).map_err(|e| self.bad(e))
    }

    fn bad(&self, error: String) -> ClientError {
        ClientError::BadAnswer {
            what: self.what.clone(),
            error,
            body: excerpt(&self.text),
        }
    }
}

/// The `data` rows of an answer's body, each still as its raw text.
fn envelope(text: &str) -> Result<Vec<&serde_json::value::RawValue>, String> {
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow, default)]
        data: Option<Vec<&'a serde_json::value::RawValue>>,
    }
    let answer: Envelope<'_> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    answer.data.ok_or_else(|| "no `data` list".to_owned())
}

/// How many rows there are, and the last one's id.
fn head_of(rows: &[&serde_json::value::RawValue]) -> Result<Head, String> {
    #[derive(serde::Deserialize)]
    struct Id {
        id: Option<i64>,
    }
    let last_id = match rows.last() {
        Some(raw) => {
            serde_json::from_str::<Id>(raw.get())
                .map_err(|e| e.to_string())?
                .id
        }
        None => None,
    };
    Ok(Head {
        rows: rows.len(),
        last_id,
    })
}

/// Reads the body of a successful `_search` answer: its `data` rows, each in the flat shape
/// ([`flatten`]). The error says what is wrong with the body.
pub(crate) fn answer_rows(text: &str) -> Result<Vec<Value>, String> {
    flat_rows(envelope(text)?)
}

/// Each raw row in the flat shape.
fn flat_rows(rows: Vec<&serde_json::value::RawValue>) -> Result<Vec<Value>, String> {
    // Rows are read one at a time from the raw text and moved into the flat shape: a page is
    // never held as a whole JSON tree next to its flat copy (memory while catching up).
    rows.into_iter()
        .map(|raw| {
            let row: Value = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
            flatten(row)
        })
        .collect()
}

/// Turns one JSON:API row into the flat `shotgun_api3` shape: `id`, the attributes as they are,
/// and each relationship's `data` (a link or null) under its name. The row's `id` is the event's,
/// whatever the attributes hold.
/// The row's values are moved, not copied.
pub(crate) fn flatten(row: Value) -> Result<Value, String> {
    let id = row
        .get("id")
        .and_then(Value::as_i64)
        .ok_or("a row has no integer `id`")?;
    let Value::Object(mut row) = row else {
        return Err("a row is not an object".to_owned());
    };
    let mut flat = Map::new();
    for name in FIELDS {
        flat.insert((*name).into(), Value::Null);
    }
    if let Some(Value::Object(attributes)) = row.remove("attributes") {
        for (k, v) in attributes {
            flat.insert(k, v);
        }
    }
    if let Some(Value::Object(relationships)) = row.remove("relationships") {
        for (k, mut v) in relationships {
            let data = v.get_mut("data").map(Value::take).unwrap_or(Value::Null);
            flat.insert(k, data);
        }
    }
    // Last: an attribute or relationship named `id` must not replace the row's own.
    flat.insert("id".into(), Value::from(id));
    Ok(Value::Object(flat))
}

/// Counts a request to the site, by how it ended, and its duration
/// (`sgevents_source_requests_total`, `sgevents_source_request_duration_seconds`).
fn record<T>(started: Instant, result: &Result<T, ClientError>) {
    use crate::metrics::RequestOutcome;
    let outcome = match result {
        Ok(_) => RequestOutcome::Ok,
        Err(ClientError::Status { status: 429, .. }) => RequestOutcome::Throttled,
        Err(ClientError::Status { status, .. }) if *status >= 500 => RequestOutcome::ServerError,
        Err(ClientError::Status { .. } | ClientError::Auth { .. }) => RequestOutcome::Refused,
        Err(ClientError::Network { .. }) => RequestOutcome::Network,
        Err(ClientError::BadAnswer { .. }) => RequestOutcome::BadAnswer,
    };
    crate::metrics::global()
        .source
        .request(outcome, started.elapsed());
}

fn network(url: &str, e: &reqwest::Error) -> ClientError {
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    let lower = detail.to_ascii_lowercase();
    let tls =
        lower.contains("certificate") || lower.contains("tls") || lower.contains("unknownissuer");
    ClientError::Network {
        url: url.to_owned(),
        detail,
        tls,
    }
}

/// What `Retry-After` asks for: a number of seconds, or an HTTP date (RFC 9110), which is a
/// wait until then (none if it is past).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get("retry-after")?.to_str().ok()?.trim();
    parse_retry_after(value, std::time::SystemTime::now())
}

pub(crate) fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The `code` of the first error of an error body.
fn error_code(body: &str) -> Option<i64> {
    let v: Value = serde_json::from_str(body).ok()?;
    v.get("errors")?.get(0)?.get("code")?.as_i64()
}

/// The `title` of the first error of an error body.
fn error_title(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    v.get("errors")?
        .get(0)?
        .get("title")?
        .as_str()
        .map(str::to_owned)
}

fn excerpt(body: &str) -> String {
    sgevents_protocol::excerpt(body.as_bytes(), BODY_EXCERPT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_the_flat_shape() {
        let row = json!({
            "type": "EventLogEntry", "id": 42,
            "attributes": {"event_type": "Shotgun_Shot_Change", "attribute_name": "sg_status_list",
                           "meta": {"type": "attribute_change"}, "session_uuid": null, "created_at": "2026-01-21T19:47:33Z"},
            "relationships": {
                "entity": {"data": {"id": 1246, "name": "sh010", "type": "Shot"}, "links": {}},
                "project": {"data": null, "links": {}}},
            "links": {"self": "/api/v1/entity/event_log_entries/42"}});
        let flat = flatten(row).expect("a row");
        assert_eq!(flat["id"], 42);
        assert_eq!(flat["event_type"], "Shotgun_Shot_Change");
        assert_eq!(
            flat["entity"],
            json!({"id": 1246, "name": "sh010", "type": "Shot"})
        );
        assert_eq!(flat["project"], Value::Null);
        assert_eq!(
            flat["user"],
            Value::Null,
            "fields not sent are null, as shotgun_api3 gives them"
        );
        assert!(flat.get("links").is_none());
        let event: sgevents_protocol::Event =
            serde_json::from_value(flat).expect("the protocol's event");
        assert_eq!(event.entity_type(), Some("Shot"));
    }

    fn answer(text: &str) -> Answer {
        Answer {
            what: "the event log (ids above 7)".into(),
            text: text.into(),
        }
    }

    #[test]
    fn the_head_is_the_row_count_and_the_last_id_as_the_rows_say() {
        let page = answer(
            r#"{"data": [{"type": "EventLogEntry", "id": 8, "attributes": {"id": 99}},
                          {"type": "EventLogEntry", "id": 11, "attributes": {}}],
                "links": {"self": "x"}}"#,
        );
        let mut head = None;
        let rows = page.rows_after_head(|h| head = Some(h)).expect("rows");
        assert_eq!(
            head,
            Some(Head {
                rows: 2,
                last_id: Some(11)
            }),
            "the row's own id, not an attribute's"
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows.last().and_then(|r| r["id"].as_i64()), Some(11));

        let mut head = None;
        let rows = answer(r#"{"data": []}"#)
            .rows_after_head(|h| head = Some(h))
            .expect("no rows");
        assert!(rows.is_empty());
        assert_eq!(
            head,
            Some(Head {
                rows: 0,
                last_id: None
            })
        );
    }

    #[test]
    fn a_head_that_cannot_be_read_is_a_bad_answer_like_the_rows() {
        for (body, says) in [
            (r#"{"data": [{"id": 8}"#, "EOF"),
            (r#"{"errors": []}"#, "no `data` list"),
            (r#"{"data": [{"id": "eight"}]}"#, "invalid type"),
        ] {
            let page = answer(body);
            let mut told = false;
            let error = page
                .rows_after_head(|_| told = true)
                .expect_err(body)
                .to_string();
            assert!(error.contains(says), "{body}: {error}");
            assert!(error.contains("ids above 7"), "{error}");
            assert!(!told, "{body}: no head");
            assert!(page.rows().is_err(), "{body}: the rows fail alone too");
        }
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10)),
            "a date is a wait until then"
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:27 GMT", now),
            Some(Duration::ZERO),
            "a date past is no wait"
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn a_permission_refusal_has_its_own_hint() {
        let refusal = |status, code| ClientError::Status {
            what: "the event log".into(),
            status,
            body: "permission denied".into(),
            retry_after: None,
            code,
        };
        assert!(
            refusal(400, Some(104))
                .hint(false)
                .contains("permission group")
        );
        assert!(refusal(403, None).hint(false).contains("permission group"));
        assert!(refusal(400, Some(103)).hint(false).contains("source.url"));
    }

    #[test]
    fn rows_without_an_id_are_refused() {
        assert!(flatten(json!({"attributes": {}})).is_err());
    }

    #[test]
    fn error_titles_and_hints() {
        let body = r#"{"errors":[{"id":"x","status":400,"code":102,"title":"Can't authenticate script 'bot'","source":null,"detail":null,"meta":null}]}"#;
        assert_eq!(
            error_title(body).as_deref(),
            Some("Can't authenticate script 'bot'")
        );
        assert_eq!(error_title("<html>"), None);
        let tls = ClientError::Network {
            url: "u".into(),
            detail: "invalid peer certificate: UnknownIssuer".into(),
            tls: true,
        };
        assert!(tls.hint(false).contains("source.ca_file"));
        let net = ClientError::Network {
            url: "u".into(),
            detail: "dns error".into(),
            tls: false,
        };
        assert!(net.hint(true).contains("source.proxy"));
    }
}
