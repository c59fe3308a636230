//! A fake ShotGrid site: the REST API v1 endpoints an event daemon uses, over real HTTP on loopback.
//!
//! It serves `POST /api/v1/auth/access_token`, `GET /api/v1` and
//! `POST /api/v1/entity/event_log_entries/_search` as `shared/reference/shotgrid-wire.md` section 4
//! describes them, error bodies included, over an event log the test controls:
//!
//! * [`FakeSite::append`] and [`FakeSite::append_events`] add rows that are visible at once;
//! * [`FakeSite::hold`] allocates ids whose rows stay invisible until [`FakeSite::commit`] (a long
//!   transaction) or forever after [`FakeSite::rollback`], so later rows get higher ids and a reader
//!   sees a gap, as on a real site (shotgunEvents.md 2.5);
//! * [`FakeSite::fail_next`] makes the next searches fail in a chosen way (a 429 with `Retry-After`
//!   in seconds or as an HTTP date, a permission refusal, ...), [`FakeSite::fail_next_sign_in`]
//!   the next sign-ins, [`FakeSite::set_faults`] makes searches fail at random rates, and
//!   [`FakeSite::expire_tokens`] revokes every token;
//! * [`FakeSite::set_latency`] (or [`SiteOptions::latency`]) adds a delay to every answer, as the
//!   round trip to a remote site;
//! * [`FakeSite::set_webhook`] sends a signed webhook delivery for each event that becomes
//!   visible, as ShotGrid's webhooks do;
//! * [`FakeSite::stats`] counts what clients did, including the searches by id range and the most
//!   answered at once.
//!
//! It also serves `POST /api3/json`, the JSON-RPC endpoint of `shotgun_api3` (`info`, `read`,
//! `update`, `create`; see `api3.rs`), over the same event log and an in-memory set of entities, so
//! that a test can run a real Python plugin and assert what it changed:
//!
//! * [`FakeSite::insert_entity`] seeds records, [`FakeSite::entity`] and [`FakeSite::entities`] read
//!   them back, and [`FakeSite::add_script`] allows more Scripts than the site's own;
//! * a write appends the `EventLogEntry` rows a real site writes for it, so that it shows up as new
//!   events; [`FakeSite::set_log_writes`] turns that off;
//! * [`python_with_shotgun_api3`] installs `shotgun_api3` for the tests, once, into `target/pydeps/`
//!   ([`python_with_prometheus_client`] likewise `prometheus_client`).
//!
//! # Theory of operation
//!
//! `tiny_http` accepts connections and parses requests on its own threads. One acceptor thread takes
//! each parsed request and hands it to a new thread, so a request told to hang never holds up another.
//! All state sits in one [`Mutex`] that a request holds only while it reads or updates the log, never
//! while it sleeps or writes its answer. Dropping the [`FakeSite`] stops the acceptor, closes the
//! listening socket and wakes every hanging request, which then answers as usual.

mod api3;
mod entities;
mod filter;
mod generate;
mod pydeps;
mod search;
mod server;
mod webhook;

pub use pydeps::{
    PROMETHEUS_CLIENT_VERSION, SHOTGUN_API3_VERSION, python_with, python_with_prometheus_client,
    python_with_shotgun_api3,
};
pub use webhook::{post as post_webhook, signature as webhook_signature};

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use generate::Generator;

/// How a [`FakeSite`] is set up.
#[derive(Clone, Debug)]
pub struct SiteOptions {
    /// The Script name clients sign in with (`client_id`).
    pub script_name: String,
    /// The Script key clients sign in with (`client_secret`).
    pub script_key: String,
    /// The port to listen on, on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// How long an access token stays valid; `expires_in` says this in whole seconds.
    pub token_lifetime: Duration,
    /// The id of the first row appended or held.
    pub first_id: i64,
    /// Seeds the generated events and the random faults.
    pub seed: u64,
    /// Added to every answer, as the round trip to a remote site ([`FakeSite::set_latency`]).
    pub latency: Duration,
}

impl Default for SiteOptions {
    fn default() -> SiteOptions {
        SiteOptions {
            script_name: "sgevents".to_owned(),
            script_key: "fake-key".to_owned(),
            port: 0,
            token_lifetime: Duration::from_secs(600),
            first_id: 1,
            seed: 1,
            latency: Duration::ZERO,
        }
    }
}

/// One way a search can fail.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Answer with this status (503, 500, ...) and an error body.
    Status(u16),
    /// Answer 429 with a `Retry-After` header of this many seconds.
    Throttle {
        /// The `Retry-After` value, in seconds.
        retry_after_s: u64,
    },
    /// Answer 429 with a `Retry-After` header that is an HTTP date this many seconds ahead.
    ThrottleUntil {
        /// How far ahead the date is, in seconds.
        retry_after_s: u64,
    },
    /// Answer 400 code 104, the site's permission refusal.
    Forbidden,
    /// Wait this long, then answer normally.
    Hang(Duration),
    /// Answer 200 with an HTML page instead of JSON, as a proxy in front of a site might.
    Garbage,
    /// Answer 401 as if the token had expired.
    Unauthorized,
}

/// Random faults: the chance that a search fails in each way. The rates add up; what is left over
/// is the chance that a search is served normally.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Chance of a 503 or 500.
    pub error_rate: f64,
    /// Chance of a 429.
    pub throttle_rate: f64,
    /// The `Retry-After` of those 429s, in seconds.
    pub retry_after_s: u64,
    /// Chance of a hang before the normal answer.
    pub hang_rate: f64,
    /// How long those hangs last.
    pub hang_for: Duration,
}

/// What clients did since the site started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Tokens issued.
    pub sign_ins: u64,
    /// Sign-ins refused (400 or 401).
    pub failed_sign_ins: u64,
    /// Requests to `_search`, whatever their answer.
    pub searches: u64,
    /// Searches refused for a missing, unknown or expired token (not counting [`Fault::Unauthorized`]).
    pub unauthorized: u64,
    /// Searches that got an injected fault, [`Fault::Hang`] included.
    pub faults: u64,
    /// Searches with a `between` range on `id` alone (a concurrent catch-up's pages).
    pub range_searches: u64,
    /// The most searches answered at the same time.
    pub most_concurrent: u64,
    /// Rows returned by successful searches.
    pub rows_served: u64,
}

/// A running fake site. Dropping it stops the server.
pub struct FakeSite {
    shared: Arc<Shared>,
    server: Arc<tiny_http::Server>,
    acceptor: Option<JoinHandle<()>>,
    url: String,
}

/// What the request threads share with the [`FakeSite`] handle.
#[derive(Debug)]
struct Shared {
    script_name: String,
    script_key: String,
    token_lifetime: Duration,
    /// Added to every answer.
    latency: Mutex<Duration>,
    /// Searches being answered now.
    concurrent: std::sync::atomic::AtomicU64,
    /// Where webhook deliveries go, if anywhere.
    webhook: Mutex<Option<webhook::Target>>,
    state: Mutex<State>,
    /// Set once the site is dropped; hanging requests wait on it.
    stopped: Mutex<bool>,
    stopping: Condvar,
}

#[derive(Debug)]
struct State {
    visible: BTreeMap<i64, Value>,
    held: BTreeMap<i64, Value>,
    next_id: i64,
    generator: Generator,
    tokens: HashMap<String, Token>,
    rng: fastrand::Rng,
    faults: Faults,
    queued: VecDeque<Fault>,
    /// Faults for the next sign-ins.
    queued_sign_ins: VecDeque<Fault>,
    stats: Stats,
    /// The entities and Scripts of api3.
    store: entities::Store,
}

/// An issued token: an access token expires, a refresh token lasts until [`FakeSite::expire_tokens`].
#[derive(Clone, Copy, Debug)]
enum Token {
    Access { expires: Instant },
    Refresh,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic in one request thread must not take the whole site down with it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sleeps for `duration`, or until the site is dropped.
    fn hang(&self, duration: Duration) {
        let stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = self
            .stopping
            .wait_timeout_while(stopped, duration, |stopped| !*stopped)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

impl State {
    fn allocate(&mut self, event: Value) -> (i64, Value) {
        let id = self.next_id;
        self.next_id += 1;
        let mut event = event;
        if let Some(fields) = event.as_object_mut() {
            fields.insert("id".to_owned(), Value::from(id));
        }
        (id, event)
    }

    /// The fault for the next search, if it gets one.
    fn next_fault(&mut self) -> Option<Fault> {
        if let Some(fault) = self.queued.pop_front() {
            return Some(fault);
        }
        let f = self.faults;
        if f.error_rate + f.throttle_rate + f.hang_rate <= 0.0 {
            return None;
        }
        let roll = self.rng.f64();
        if roll < f.error_rate {
            Some(Fault::Status(if self.rng.bool() { 503 } else { 500 }))
        } else if roll < f.error_rate + f.throttle_rate {
            Some(Fault::Throttle {
                retry_after_s: f.retry_after_s,
            })
        } else if roll < f.error_rate + f.throttle_rate + f.hang_rate {
            Some(Fault::Hang(f.hang_for))
        } else {
            None
        }
    }
}

impl FakeSite {
    /// Starts a site listening on `127.0.0.1:<port>`.
    pub fn start(options: SiteOptions) -> std::io::Result<FakeSite> {
        let cannot = |e: &dyn std::fmt::Display| {
            std::io::Error::other(format!(
                "cannot start the fake site on port {}: {e}",
                options.port
            ))
        };
        let listener =
            std::net::TcpListener::bind(("127.0.0.1", options.port)).map_err(|e| cannot(&e))?;
        // Without it an answer written in two parts waits for the client's delayed ACK (40 ms on
        // Linux) on a kept-alive connection: no real site's front end answers like that.
        socket2::SockRef::from(&listener)
            .set_tcp_nodelay(true)
            .map_err(|e| cannot(&e))?;
        let server = tiny_http::Server::from_listener(listener, None).map_err(|e| cannot(&e))?;
        let server = Arc::new(server);
        let port = server
            .server_addr()
            .to_ip()
            .map(|addr| addr.port())
            .ok_or_else(|| {
                std::io::Error::other("the fake site is not listening on an IP address")
            })?;
        let store = entities::Store::new(&options.script_name, &options.script_key);
        let shared = Arc::new(Shared {
            script_name: options.script_name,
            script_key: options.script_key,
            token_lifetime: options.token_lifetime,
            latency: Mutex::new(options.latency),
            concurrent: std::sync::atomic::AtomicU64::new(0),
            webhook: Mutex::new(None),
            state: Mutex::new(State {
                visible: BTreeMap::new(),
                held: BTreeMap::new(),
                next_id: options.first_id,
                generator: Generator::new(options.seed),
                tokens: HashMap::new(),
                rng: fastrand::Rng::with_seed(options.seed ^ 0x5eed_fa17),
                faults: Faults::default(),
                queued: VecDeque::new(),
                queued_sign_ins: VecDeque::new(),
                stats: Stats::default(),
                store,
            }),
            stopped: Mutex::new(false),
            stopping: Condvar::new(),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            let server = Arc::clone(&server);
            std::thread::Builder::new()
                .name("fake-site-accept".to_owned())
                .spawn(move || server::accept(&server, &shared))?
        };
        Ok(FakeSite {
            shared,
            server,
            acceptor: Some(acceptor),
            url: format!("http://127.0.0.1:{port}"),
        })
    }

    /// The site's base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Appends `n` generated events, visible at once, and returns their ids.
    pub fn append(&self, n: usize) -> Vec<i64> {
        let mut state = self.shared.state();
        let ids: Vec<i64> = (0..n)
            .map(|_| {
                let event = state.generator.next_event();
                let (id, event) = state.allocate(event);
                state.visible.insert(id, event);
                id
            })
            .collect();
        self.deliver(&state, &ids);
        ids
    }

    /// Sends webhook deliveries for `ids`, newly visible, if [`FakeSite::set_webhook`] asked.
    fn deliver(&self, state: &State, ids: &[i64]) {
        let target = self
            .shared
            .webhook
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(target) = target {
            let events = ids
                .iter()
                .filter_map(|id| state.visible.get(id).cloned())
                .collect();
            webhook::send(target, events);
        }
    }

    /// From now on, each event that becomes visible is also sent to `url` as a ShotGrid webhook
    /// delivery signed with `secret` (`X-SG-SIGNATURE: sha1=...`).
    pub fn set_webhook(&self, url: &str, secret: &str) {
        *self
            .shared
            .webhook
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(webhook::Target {
            url: url.to_owned(),
            secret: secret.to_owned(),
        });
    }

    /// Appends flat events in the `shotgun_api3` shape, visible at once; each one's `id` is replaced
    /// by the next id. Returns the ids.
    pub fn append_events(&self, events: Vec<Value>) -> Vec<i64> {
        let mut state = self.shared.state();
        let ids: Vec<i64> = events
            .into_iter()
            .map(|event| {
                let (id, event) = state.allocate(event);
                state.visible.insert(id, event);
                id
            })
            .collect();
        self.deliver(&state, &ids);
        ids
    }

    /// Allocates ids for `n` generated events that stay invisible until [`FakeSite::commit`], as
    /// rows of a transaction still open. Rows appended later get higher ids.
    pub fn hold(&self, n: usize) -> Vec<i64> {
        let mut state = self.shared.state();
        (0..n)
            .map(|_| {
                let event = state.generator.next_event();
                let (id, event) = state.allocate(event);
                state.held.insert(id, event);
                id
            })
            .collect()
    }

    /// Makes held ids visible. Ids that are not held are ignored.
    pub fn commit(&self, ids: &[i64]) {
        let mut state = self.shared.state();
        for id in ids {
            if let Some(event) = state.held.remove(id) {
                state.visible.insert(*id, event);
            }
        }
        self.deliver(&state, ids);
    }

    /// Drops held ids: they will never be visible, as rows of a rolled-back transaction.
    pub fn rollback(&self, ids: &[i64]) {
        let mut state = self.shared.state();
        for id in ids {
            state.held.remove(id);
        }
    }

    /// Sets the rates of random faults on searches, from now on.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.state().faults = faults;
    }

    /// The next `n` searches get `fault`, before any random fault is drawn. Calls queue up in order.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        self.shared
            .state()
            .queued
            .extend(std::iter::repeat_n(fault, n));
    }

    /// The next `n` sign-ins get `fault` ([`Fault::Status`], [`Fault::Throttle`] or
    /// [`Fault::ThrottleUntil`]; others answer 500).
    pub fn fail_next_sign_in(&self, n: usize, fault: Fault) {
        self.shared
            .state()
            .queued_sign_ins
            .extend(std::iter::repeat_n(fault, n));
    }

    /// Sets the delay added to every answer from now on.
    pub fn set_latency(&self, latency: Duration) {
        *self
            .shared
            .latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = latency;
    }

    /// Revokes every token issued so far: requests with them get 401 from now on.
    pub fn expire_tokens(&self) {
        self.shared.state().tokens.clear();
    }

    /// Counters since the site started.
    pub fn stats(&self) -> Stats {
        self.shared.state().stats
    }

    /// The highest id allocated, visible or not (`first_id - 1` before any).
    pub fn newest_id(&self) -> i64 {
        self.shared.state().next_id - 1
    }

    /// The ids a search can see, ascending.
    pub fn visible_ids(&self) -> Vec<i64> {
        self.shared.state().visible.keys().copied().collect()
    }
}

impl std::fmt::Debug for FakeSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSite")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeSite {
    fn drop(&mut self) {
        *self
            .shared
            .stopped
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.shared.stopping.notify_all();
        self.server.unblock();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<FakeSite>();
    }
}
