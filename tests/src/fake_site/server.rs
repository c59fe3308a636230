//! The HTTP side of the fake site: the acceptor loop, routing, sign-in, token checks, faults and the
//! error bodies of `shared/reference/shotgrid-wire.md` 4.5. api3's JSON-RPC is in `api3.rs`.

use std::time::Instant;

use serde_json::{Value, json};

use super::search::{Query, Refusal, Shape};
use super::{Fault, Shared, Token};

const ARRAY_TYPE: &str = "application/vnd+shotgun.api3_array+json";
const HASH_TYPE: &str = "application/vnd+shotgun.api3_hash+json";

/// Takes requests until the server is unblocked by the site's drop, each on its own thread.
pub(super) fn accept(server: &tiny_http::Server, shared: &std::sync::Arc<Shared>) {
    loop {
        match server.recv() {
            Ok(request) => {
                let shared = std::sync::Arc::clone(shared);
                let spawned = std::thread::Builder::new()
                    .name("fake-site-request".to_owned())
                    .spawn(move || serve(&shared, request));
                // Out of threads: the client sees its connection close, as from an overloaded site.
                drop(spawned);
            }
            Err(_)
                if *shared
                    .stopped
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =>
            {
                return;
            }
            // A failed accept on one connection says nothing about the next.
            Err(_) => {}
        }
    }
}

/// A request as the routes see it, read off the wire.
#[derive(Debug)]
struct Incoming {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    content_type: String,
    authorization: Option<String>,
    body: String,
}

/// An answer before it goes on the wire.
#[derive(Debug)]
struct Reply {
    status: u16,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Reply {
    fn json(status: u16, body: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json; charset=utf-8",
            headers: Vec::new(),
            body: body.to_string(),
        }
    }

    /// The error body every ShotGrid error has: `{"errors": [{id, status, code, title, source, detail, meta}]}`.
    fn error(status: u16, code: u32, title: &str, source: Value, detail: Value) -> Reply {
        let id = format!("{:032x}", fastrand::u128(..));
        Reply::json(
            status,
            &json!({"errors": [{
                "id": id, "status": status, "code": code, "title": title,
                "source": source, "detail": detail, "meta": null,
            }]}),
        )
    }

    fn refused(refusal: Refusal) -> Reply {
        Reply::error(
            refusal.status,
            refusal.code,
            &refusal.title,
            refusal.source,
            Value::Null,
        )
    }

    fn unauthorized(detail: &str) -> Reply {
        Reply::error(401, 102, "Unauthorized", Value::Null, json!(detail))
    }
}

fn serve(shared: &Shared, mut request: tiny_http::Request) {
    let header = |name: &'static str| {
        request
            .headers()
            .iter()
            .find(|h| h.field.equiv(name))
            .map(|h| h.value.as_str().to_owned())
    };
    let (path, query) = match request.url().split_once('?') {
        Some((path, query)) => (path.to_owned(), form_pairs(query)),
        None => (request.url().to_owned(), Vec::new()),
    };
    let mut incoming = Incoming {
        method: request.method().as_str().to_ascii_uppercase(),
        path,
        query,
        content_type: header("Content-Type").unwrap_or_default(),
        authorization: header("Authorization"),
        body: String::new(),
    };
    let reply = match request.as_reader().read_to_string(&mut incoming.body) {
        Ok(_) => {
            let latency = *shared
                .latency
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !latency.is_zero() {
                shared.hang(latency);
            }
            route(shared, &incoming)
        }
        Err(e) => Reply::error(
            400,
            103,
            "Request Parameters invalid.",
            json!({"body": format!("cannot read the body: {e}")}),
            Value::Null,
        ),
    };
    let mut response = tiny_http::Response::from_string(reply.body)
        .with_status_code(reply.status)
        // A length rather than chunks: simpler for the small clients tests write.
        .with_chunked_threshold(usize::MAX);
    let headers =
        std::iter::once(("Content-Type", reply.content_type.to_owned())).chain(reply.headers);
    for (name, value) in headers {
        if let Ok(header) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(header);
        }
    }
    // The client may have gone; nobody is left to tell.
    let _ = request.respond(response);
}

fn route(shared: &Shared, request: &Incoming) -> Reply {
    let path = request.path.trim_end_matches('/');
    match (request.method.as_str(), path) {
        ("GET", "/api/v1") => Reply::json(
            200,
            &json!({"data": {
                "shotgun_version": "fake", "api_version": "v1", "site_name": "fake",
                "user_authentication_method": "default",
            }}),
        ),
        ("POST", "/api/v1/auth/access_token") => sign_in(shared, request),
        // Faults are not injected here: they stand for what the daemon's REST polls meet.
        ("POST", "/api3/json") => Reply::json(200, &super::api3::call(shared, &request.body)),
        (
            "POST",
            "/api/v1/entity/event_log_entries/_search" | "/api/v1/entity/EventLogEntry/_search",
        ) => search(shared, request),
        _ => Reply::error(
            404,
            104,
            "Not Found",
            Value::Null,
            json!(format!("{} {} not found", request.method, request.path)),
        ),
    }
}

/// `POST /api/v1/auth/access_token`, credentials in the query string or a form body.
fn sign_in(shared: &Shared, request: &Incoming) -> Reply {
    let mut params = request.query.clone();
    if request.content_type.is_empty()
        || request
            .content_type
            .starts_with("application/x-www-form-urlencoded")
    {
        params.extend(form_pairs(&request.body));
    }
    let param = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let mut state = shared.state();
    if let Some(fault) = state.queued_sign_ins.pop_front() {
        state.stats.failed_sign_ins += 1;
        return fault_reply(fault).unwrap_or_else(|| {
            Reply::error(500, 100, "Internal Server Error", Value::Null, Value::Null)
        });
    }
    let refusal = match param("grant_type") {
        Some("client_credentials") => match (param("client_id"), param("client_secret")) {
            (Some(name), Some(key)) if name == shared.script_name && key == shared.script_key => {
                None
            }
            (Some(name), Some(_)) => {
                Some((400, 102, format!("Can't authenticate script '{name}'")))
            }
            _ => Some((
                400,
                102,
                "Missing or invalid authentication arguments".to_owned(),
            )),
        },
        Some("refresh_token") => match param("refresh_token") {
            Some(token) if matches!(state.tokens.get(token), Some(Token::Refresh)) => None,
            Some(_) => Some((401, 102, "Unauthorized".to_owned())),
            None => Some((
                400,
                102,
                "Missing or invalid authentication arguments".to_owned(),
            )),
        },
        Some(_) => Some((400, 103, "Unsupported grant_type".to_owned())),
        None => Some((
            400,
            102,
            "Missing or invalid authentication arguments".to_owned(),
        )),
    };
    if let Some((status, code, title)) = refusal {
        state.stats.failed_sign_ins += 1;
        return Reply::error(status, code, &title, Value::Null, Value::Null);
    }
    state.stats.sign_ins += 1;
    let serial = state.stats.sign_ins;
    let mut token = |kind: &str| format!("fake-{kind}.{serial}.{:016x}", state.rng.u64(..));
    let (access, refresh) = (token("access"), token("refresh"));
    let expires = Instant::now() + shared.token_lifetime;
    state
        .tokens
        .insert(access.clone(), Token::Access { expires });
    state.tokens.insert(refresh.clone(), Token::Refresh);
    Reply::json(
        200,
        &json!({
            "token_type": "Bearer", "access_token": access,
            "expires_in": shared.token_lifetime.as_secs(), "refresh_token": refresh,
        }),
    )
}

/// `POST .../_search`: token, then faults, then the request itself.
fn search(shared: &Shared, request: &Incoming) -> Reply {
    let fault = {
        let mut state = shared.state();
        state.stats.searches += 1;
        let token = request
            .authorization
            .as_deref()
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim);
        let refusal = match token.map(|token| state.tokens.get(token)) {
            None => Some("missing `Authorization: Bearer <token>` header"),
            Some(None | Some(Token::Refresh)) => Some("unknown or revoked token"),
            Some(Some(Token::Access { expires })) if Instant::now() >= *expires => {
                Some("token expired")
            }
            Some(Some(Token::Access { .. })) => None,
        };
        if let Some(detail) = refusal {
            state.stats.unauthorized += 1;
            return Reply::unauthorized(detail);
        }
        let fault = state.next_fault();
        if fault.is_some() {
            state.stats.faults += 1;
        }
        fault
    };
    match fault {
        None => {}
        Some(Fault::Hang(duration)) => shared.hang(duration),
        Some(fault) => {
            if let Some(reply) = fault_reply(fault) {
                return reply;
            }
        }
    }
    let concurrent = shared
        .concurrent
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        + 1;
    let reply = answer_search(shared, request);
    shared
        .concurrent
        .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    let mut state = shared.state();
    state.stats.most_concurrent = state.stats.most_concurrent.max(concurrent);
    if request.body.contains("\"between\"") && !request.body.contains("logical_operator") {
        state.stats.range_searches += 1;
    }
    reply
}

/// The answer of an injected fault; `None` for one that answers normally after all.
fn fault_reply(fault: Fault) -> Option<Reply> {
    match fault {
        Fault::Hang(_) => None,
        Fault::Status(status) => {
            let title = tiny_http::StatusCode(status).default_reason_phrase();
            Some(Reply::error(
                status,
                100,
                title,
                Value::Null,
                json!("injected by the fake site"),
            ))
        }
        Fault::Throttle { retry_after_s } => {
            let mut reply = Reply::error(
                429,
                100,
                "Too Many Requests",
                Value::Null,
                json!("injected by the fake site"),
            );
            reply
                .headers
                .push(("Retry-After", retry_after_s.to_string()));
            Some(reply)
        }
        Fault::ThrottleUntil { retry_after_s } => {
            let mut reply = Reply::error(
                429,
                100,
                "Too Many Requests",
                Value::Null,
                json!("injected by the fake site"),
            );
            let at = std::time::SystemTime::now() + std::time::Duration::from_secs(retry_after_s);
            reply
                .headers
                .push(("Retry-After", httpdate::fmt_http_date(at)));
            Some(reply)
        }
        Fault::Forbidden => Some(Reply::error(
            400,
            104,
            "API read() EventLogEntry: permission denied by rule 'Script: no EventLogEntry'",
            Value::Null,
            json!("injected by the fake site"),
        )),
        Fault::Garbage => Some(Reply {
            status: 200,
            content_type: "text/html; charset=utf-8",
            headers: Vec::new(),
            body: "<html><head><title>Maintenance</title></head>\
                   <body><h1>We'll be right back</h1></body></html>\n"
                .to_owned(),
        }),
        Fault::Unauthorized => Some(Reply::unauthorized("token expired")),
    }
}

/// A search past its token and faults.
fn answer_search(shared: &Shared, request: &Incoming) -> Reply {
    let media_type = request.content_type.split(';').next().unwrap_or("").trim();
    let shape = match media_type {
        ARRAY_TYPE => Shape::Array,
        HASH_TYPE => Shape::Hash,
        other => {
            return Reply::error(
                415,
                103,
                &format!("Unsupported Content-Type '{other}'"),
                json!({"content_type": format!("Content-Type must be one of: '{ARRAY_TYPE}', '{HASH_TYPE}'.")}),
                Value::Null,
            );
        }
    };
    let body = if request.body.trim().is_empty() {
        Ok(json!({}))
    } else {
        serde_json::from_str(&request.body)
    };
    let body: Value = match body {
        Ok(body) => body,
        Err(e) => {
            return Reply::error(
                400,
                103,
                "Request Parameters invalid.",
                json!({"body": format!("not JSON: {e}")}),
                Value::Null,
            );
        }
    };
    let query = match Query::parse(shape, &body, &request.query) {
        Ok(query) => query,
        Err(refusal) => return Reply::refused(refusal),
    };
    let rows = {
        let mut state = shared.state();
        let rows = query.run(&state.visible);
        state.stats.rows_served += rows.len() as u64;
        rows
    };
    Reply::json(200, &query.render(&rows))
}

/// `a=1&b=x%20y` → `[("a", "1"), ("b", "x y")]`.
fn form_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let hex = |b: u8| char::from(b).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.extend(u8::try_from(high * 16 + low));
                i += 2;
            }
            (b'+', _, _) => out.push(b' '),
            (byte, _, _) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_pairs_decode() {
        assert_eq!(
            form_pairs("client_id=a%20b&client_secret=x+y&page%5Bsize%5D=3&flag&bad=%zz%4"),
            [
                ("client_id", "a b"),
                ("client_secret", "x y"),
                ("page[size]", "3"),
                ("flag", ""),
                ("bad", "%zz%4"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }
}
