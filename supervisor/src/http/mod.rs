//! The read-only HTTP listener (`[http]`): `/healthz` and `/readyz` for probes, the status page
//! `/` ([`page`]) and `/api/status` (`status --json`'s data, from the snapshot of `snapshot`),
//! and the routes other modules add (see below).
//!
//! # Shape
//!
//! - [`bind`] binds `[http] listen` at start, before anything else runs, so that a taken port
//!   stops the start with an error (or, for the default address, a warning and no listener).
//! - `HttpState` is what every handler reads: handles on what the daemon already holds in
//!   memory (the store's head and failure watches, liveness flags, each plugin's `Live` watch
//!   and cursor, the status snapshot, the deliveries' rings). A handler never waits on the
//!   daemon's loop, a plugin or the store thread, and never queries the database itself (the
//!   snapshot is read in the background, at most every 2 s). Add a field for a new route's data
//!   (a metrics registry, a webhook's channel) and fill it in `daemon::run`.
//! - `router` is the one list of routes: add yours there (`.route("/metrics", get(...))`), with
//!   `State<HttpState>` as the handler's extractor. Routes are read-only: operations stay on the
//!   control socket.
//! - `serve` runs the accept loop on the daemon's runtime until the daemon's stop: at most
//!   [`MAX_CONNECTIONS`] connections at once (beyond that, new ones wait in the kernel's queue of
//!   [`BACKLOG`]),
//!   request headers within [`MAX_HEADER_BYTES`] read within [`HEADER_TIMEOUT`] (slowloris), a
//!   body of at most [`MAX_BODY_BYTES`], and no connection lives longer than [`CONNECTION_LIFETIME`]
//!   (a client that never reads its answer). HTTP/1.1 only, keep-alive allowed.
//!
//! `/healthz` answers 200 while the daemon's loop, the store thread and the source task are alive
//! (a source that read its whole file and ended counts as alive) and the store has not failed; 503
//! with the reasons otherwise. `/readyz` answers 200 once the source has completed a poll and every
//! plugin that is not disabled or stopped has finished a handshake since the daemon started; 503
//! with what it waits for before. Both answer JSON.
//!
//! `/metrics` answers the Prometheus exposition of [`crate::metrics`]: OpenMetrics text when the
//! `Accept` header asks for it, else the Prometheus text format 0.0.4; one encoding at a time, the
//! last one served again for 250 ms, so a burst of scrapes costs the daemon little.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub mod page;
pub(crate) mod snapshot;
pub(crate) mod webhook;

use self::snapshot::{Rates, StatusCache};
use crate::config::{Config, HttpConfig};
use crate::liveness::{Alive, Life};
use crate::plugin::Live;
use crate::source::Probe;
use crate::store::{PluginState, Store};

/// The most connections served at once.
pub const MAX_CONNECTIONS: usize = 256;
/// The most a request's line and headers may take (hyper's read buffer; 8 KiB at least).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// The longest a client may take to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request body a route reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The longest one connection lives; then it is closed after its answer in progress.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// The kernel's queue of connections not accepted yet (std's `bind` asks for 128): a burst of
/// connections waits there while [`MAX_CONNECTIONS`] are served, instead of having its SYNs dropped
/// and retried a second later.
pub const BACKLOG: i32 = 1024;
/// How long the daemon's stop waits for answers in progress.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// A listener that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The address cannot be bound.
    #[error(
        "cannot listen for HTTP on `{addr}`: {source}\nhint: {}",
        bind_hint(source)
    )]
    Bind {
        /// `[http] listen`.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

fn bind_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            "another program (or another sgevents) uses that port: set a free one in `[http] listen` (port 0: any free port), or `listen = \"\"` to turn the listener off"
        }
        std::io::ErrorKind::PermissionDenied => {
            "ports below 1024 need privileges: use a port above 1024 in `[http] listen`"
        }
        _ => "check `[http] listen`: the address must be one of this machine's",
    }
}

/// Binds `[http] listen`; `None` when the listener is off, or when the default address is taken
/// (logged as a warning: the daemon runs without the listener).
pub fn bind(config: &HttpConfig) -> Result<Option<std::net::TcpListener>, HttpError> {
    let Some(addr) = config.listen else {
        return Ok(None);
    };
    let listener = match std::net::TcpListener::bind(addr) {
        Ok(l) => l,
        Err(source) if !config.listen_set && source.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::warn!(
                "the HTTP listener is off: its default address `{addr}` is in use\nhint: set a free address in `[http] listen`, or `listen = \"\"` to say the listener is not wanted"
            );
            return Ok(None);
        }
        Err(source) => return Err(HttpError::Bind { addr, source }),
    };
    let backlog =
        nix::sys::socket::Backlog::new(BACKLOG).unwrap_or(nix::sys::socket::Backlog::MAXCONN);
    nix::sys::socket::listen(&listener, backlog).map_err(|e| HttpError::Bind {
        addr,
        source: e.into(),
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| HttpError::Bind { addr, source })?;
    Ok(Some(listener))
}

/// A plugin as the handlers see it.
#[derive(Debug, Clone)]
pub(crate) struct PluginProbe {
    /// Its state, pid and handshakes, from its actor and keeper.
    pub(crate) live: watch::Receiver<Live>,
    /// Its cursor in memory.
    #[allow(
        dead_code,
        reason = "read by the routes that show lag (/metrics, the status page)"
    )]
    pub(crate) progress: watch::Receiver<i64>,
}

/// What the handlers read. Cheap to clone.
#[derive(Clone)]
pub(crate) struct HttpState {
    /// The store's handle: its head, failure and thread's liveness (never its queries here).
    pub(crate) store: Store,
    /// The daemon's loop.
    pub(crate) daemon_loop: Alive,
    /// The current run of the source (replaced when a reload restarts it).
    pub(crate) source: Arc<Mutex<Probe>>,
    /// The configured plugins, by name (kept by the daemon as keepers come and go).
    pub(crate) plugins: Arc<RwLock<BTreeMap<String, PluginProbe>>>,
    /// The status page's and `/api/status`'s snapshot, and the configuration it is read with.
    pub(crate) status: Arc<StatusCache>,
    /// Each plugin's deliveries per minute.
    pub(crate) rates: Arc<Rates>,
}

impl HttpState {
    /// The state of a daemon whose loop, source and plugins are not started yet.
    pub(crate) fn new(store: Store, config: Config) -> HttpState {
        HttpState {
            store,
            daemon_loop: Alive::new(),
            source: Arc::default(),
            plugins: Arc::default(),
            status: Arc::new(StatusCache::new(config)),
            rates: Arc::default(),
        }
    }

    /// A new configuration (reload): the page shows the plugins in its order, with its `after`.
    pub(crate) fn set_config(&self, config: Config) {
        self.status.set_config(config);
    }

    /// The current source run's probe.
    pub(crate) fn source(&self) -> Probe {
        self.source
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The configured plugins, by name.
    pub(crate) fn plugins(&self) -> BTreeMap<String, PluginProbe> {
        self.plugins
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// What is wrong with the daemon's health, if anything.
    pub(crate) fn health_problems(&self) -> Vec<String> {
        // A part that has not started yet is no problem: the listener answers from the start, and
        // a reload starts a new source task; `/readyz` covers starting. A part that stopped is.
        let mut problems = Vec::new();
        let life = self.daemon_loop.life();
        if !matches!(life, Life::Running | Life::NotStarted) {
            problems.push(format!("daemon loop: {}", life.as_str()));
        }
        let life = self.store.thread_life();
        if !matches!(life, Life::Running | Life::NotStarted) {
            problems.push(format!("store thread: {}", life.as_str()));
        }
        if let Some(e) = self.store.failure() {
            problems.push(format!("store: failed: {e}"));
        }
        let life = self.source().alive.life();
        if life == Life::Died {
            problems.push(format!("source task: {}", life.as_str()));
        }
        problems
    }

    /// What the daemon still waits for before it is ready, if anything.
    pub(crate) fn readiness_waits(&self) -> Vec<String> {
        let mut waits = Vec::new();
        if !self.source().has_polled() {
            waits.push("source: no poll completed yet".to_owned());
        }
        for (name, p) in self.plugins() {
            let live = p.live.borrow().clone();
            let enabled = !matches!(live.state, PluginState::Disabled | PluginState::Stopped);
            if enabled && live.handshakes == 0 {
                waits.push(format!(
                    "plugin `{name}`: no handshake finished yet (state {})",
                    live.state.as_str()
                ));
            }
        }
        waits
    }
}

/// Every route of the listener.
pub(crate) fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/", get(status_page))
        .route("/api/status", get(api_status))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // ShotGrid's webhook deliveries (`webhook.rs`): added after the layer
        // above, with a limit of their own.
        .route(
            "/webhooks/shotgrid",
            axum::routing::post(webhook::deliver)
                .layer(DefaultBodyLimit::max(webhook::MAX_BODY_BYTES)),
        )
        .with_state(state)
}

/// A JSON answer.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut text = serde_json::to_string(body).unwrap_or_else(|_| "{}".to_owned());
    text.push('\n');
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

async fn healthz(State(state): State<HttpState>) -> Response {
    let problems = state.health_problems();
    if problems.is_empty() {
        json_response(StatusCode::OK, &json!({"healthy": true}))
    } else {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"healthy": false, "problems": problems}),
        )
    }
}

async fn readyz(State(state): State<HttpState>) -> Response {
    let waits = state.readiness_waits();
    if waits.is_empty() {
        json_response(StatusCode::OK, &json!({"ready": true}))
    } else {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"ready": false, "waiting_for": waits}),
        )
    }
}

/// `status --json`'s data, from the last snapshot.
async fn api_status(State(state): State<HttpState>) -> Response {
    match state.status.get().await {
        Ok(snapshot) => json_response(StatusCode::OK, &snapshot.status),
        Err(e) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"error": format!("cannot read the status: {e}")}),
        ),
    }
}

/// The status page.
async fn status_page(State(state): State<HttpState>) -> Response {
    let snapshot = match state.status.get().await {
        Ok(s) => s,
        Err(e) => {
            let body = format!(
                "<!doctype html><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"{}\">\
                 <title>sgevents</title><p>cannot read the status yet: {}</p>\n",
                page::REFRESH_SECS,
                page::esc(&e)
            );
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                body,
            )
                .into_response();
        }
    };
    let config = state.status.config();
    let now = std::time::SystemTime::now();
    let rates = |name: &str| state.rates.series(name, now);
    let body = page::render(&page::PageInput {
        snapshot: &snapshot,
        config: &config,
        rates: &rates,
        now,
    });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// `GET /metrics`: OpenMetrics text when the `Accept` header asks for it (Prometheus does), else
/// the Prometheus text format 0.0.4 (see `crate::metrics`).
async fn metrics(headers: axum::http::HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = crate::metrics::Format::negotiate(accept);
    let body = crate::metrics::exposition(format).await;
    (
        [(header::CONTENT_TYPE, format.content_type())],
        body.to_string(),
    )
        .into_response()
}

/// Starts what the routes need in the background (the status snapshot's reader, the deliveries'
/// sampler), until `cancel`.
pub(crate) fn start_background(state: &HttpState, cancel: &CancellationToken) {
    tokio::spawn(state.status.clone().refresh(cancel.clone()));
    tokio::spawn(
        state
            .rates
            .clone()
            .run(state.plugins.clone(), cancel.clone()),
    );
}

/// Serves `app` on `listener` until `cancel`, then lets answers in progress finish (briefly).
pub(crate) async fn serve(listener: TcpListener, app: Router, cancel: CancellationToken) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let connections = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            _ = cancel.cancelled() => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // wait a moment rather than spin.
                    tracing::debug!(error = %e, "cannot accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(app.clone());
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .max_buf_size(MAX_HEADER_BYTES);
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let cancel = cancel.clone();
        connections.spawn(async move {
            let _permit = permit;
            tokio::pin!(conn);
            let stop = tokio::select! {
                _ = conn.as_mut() => return,
                _ = tokio::time::sleep(CONNECTION_LIFETIME) => CONNECTION_LIFETIME,
                _ = cancel.cancelled() => STOP_GRACE,
            };
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(stop.min(STOP_GRACE), conn).await;
        });
    }
    connections.close();
    let _ = tokio::time::timeout(STOP_GRACE * 2, connections.wait()).await;
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::config::Synchronous;
    use crate::store::StoreOptions;

    #[test]
    fn healthz_names_what_is_not_alive_and_a_failed_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let options = StoreOptions::new(
            Synchronous::Normal,
            Duration::from_millis(1),
            Duration::from_secs(3600),
        );
        let (store, _thread) = Store::open(dir.path(), options).expect("store");
        let config = crate::config::parse(
            &dir.path().join("sgevents.toml"),
            "[source]\nkind = \"jsonl\"\npath = \"e\"\n",
        )
        .expect("config");
        let state = HttpState::new(store, config);
        assert!(
            state.health_problems().is_empty(),
            "parts not started yet are no problem (a probe at start, a reload's new source task)"
        );
        let daemon_loop = state.daemon_loop.start();
        let source = state.source().alive.start();
        assert!(state.health_problems().is_empty());
        source.died();
        assert_eq!(state.health_problems(), ["source task: died"]);
        daemon_loop.died();
        assert_eq!(
            state.health_problems(),
            ["daemon loop: died", "source task: died"]
        );

        // The database replaced under the store: the store fails, and says so.
        let db = crate::store::db_path(dir.path());
        std::fs::rename(&db, dir.path().join("moved.db")).expect("move the database");
        std::fs::write(&db, b"").expect("another file");
        let start = Instant::now();
        while state.store.failure().is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the store never failed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let problems = state.health_problems();
        assert!(
            problems.iter().any(|p| p.starts_with("store: failed: ")),
            "{problems:?}"
        );
    }

    #[test]
    fn the_default_address_taken_is_a_warning_and_a_named_one_an_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let addr = taken.local_addr().expect("address");
        let mut config = HttpConfig {
            listen: Some(addr),
            listen_set: false,
            allow_remote: false,
        };
        assert!(bind(&config).expect("a warning only").is_none());
        config.listen_set = true;
        let err = bind(&config).expect_err("taken").to_string();
        assert!(
            err.starts_with(&format!("cannot listen for HTTP on `{addr}`: "))
                && err.contains("\nhint: another program"),
            "{err}"
        );
        config.listen = None;
        assert!(bind(&config).expect("off").is_none());
    }
}
