//! The daemon's core: opens the store, starts the source and one keeper per plugin, answers the
//! control socket, applies new configurations, and stops everything in order.
//!
//! Shutdown is decide, tell, wait. *Decide*: SIGTERM or SIGINT, `exit_when_idle` once the source is
//! exhausted and every plugin has caught up, or a failure of the state database. *Tell*: a
//! [`CancellationToken`] that every keeper, actor and the source watch; a second SIGINT cancels the
//! `hard` token too, and actors then kill their children at once. *Wait*: every task ends, then the
//! store commits what was answered and the daemon exits.
//!
//! Live changes go through one loop (`Daemon::supervise`), which never waits for a plugin:
//! requests for one plugin go to its keeper (`plugin::keeper`) and are answered from a
//! task of their own. A new configuration (SIGHUP, `sgevents reload`, or a plugin file that
//! changed) is compared plugin by plugin, and only the plugins whose settings or executables
//! changed are restarted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::alerts::Alerts;
use crate::config::{self, Config, SourceConfig};
use crate::control::server::{self, Envelope};
use crate::control::{ControlError, Request, Response, handle, ops};
use crate::http::{self, HttpState, PluginProbe};
use crate::plugin::keeper::{self, Command, KeeperHandle, Shared};
use crate::source;
use crate::store::{Store, StoreOptions};
use crate::watch::{Targets, WatchEvent, Watcher};
use crate::{config::Origin, notify};

/// How long the watcher waits for quiet before it reports changed plugin files.
const WATCH_DEBOUNCE: Duration = Duration::from_millis(300);

/// Runs the daemon until it is told to stop.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let options = StoreOptions {
        prune_every: config.daemon.prune_interval,
        ..StoreOptions::new(
            config.daemon.synchronous,
            config.daemon.commit_interval,
            config.daemon.journal_retention,
        )
    };
    // Held until this function returns: one daemon per state directory.
    let _lock = crate::lock::StateLock::acquire(&config.daemon.state_dir)?;
    // Before anything else starts: a taken port stops the start here.
    let http_listener = crate::http::bind(&config.http)?;
    let (store, store_thread) = Store::open(&config.daemon.state_dir, options)?;
    crate::metrics::global().watch_store(
        store.head(),
        store.stats(),
        config.daemon.state_dir.clone(),
    );
    // Before anything is delivered: a plugin that outlived a crashed daemon must not work on an
    // event that a new instance is about to get.
    let leftovers = store.leftovers().await?;
    crate::orphans::kill_leftovers(&leftovers.groups, leftovers.boot_id.as_deref());
    let (listener, socket) = server::bind(&config.daemon.state_dir)?;
    let http_state = HttpState::new(store.clone(), config.clone());
    let http_addr = match &http_listener {
        Some(l) => Some(
            l.local_addr()
                .context("cannot read the HTTP listener's address")?,
        ),
        None => None,
    };
    store.daemon_started(std::process::id(), http_addr.map(|a| a.to_string()));
    tracing::info!(
        config = %config.file.display(),
        state = %config.daemon.state_dir.display(),
        plugins = config.plugins.len(),
        "sgevents {} started",
        env!("CARGO_PKG_VERSION")
    );
    warn_inherit_all(&config);

    for path in config::not_executable(&config.executable_dirs) {
        tracing::warn!("{}", config::not_executable_note(&path));
    }

    let cancel = CancellationToken::new();
    let hard = CancellationToken::new();
    let alerts = Alerts::start(&config)?;
    let shared = Shared {
        store: store.clone(),
        alerts: alerts.clone(),
        cancel: cancel.clone(),
        hard: hard.clone(),
    };
    let (requests_tx, requests) = mpsc::channel::<Envelope>(64);
    let server_task = tokio::spawn(server::serve(listener, socket, requests_tx, cancel.clone()));
    let http_task = match (http_listener, http_addr) {
        (Some(l), Some(addr)) => {
            let l =
                tokio::net::TcpListener::from_std(l).context("cannot serve the HTTP listener")?;
            if addr.ip().is_loopback() {
                tracing::info!("http listener on http://{addr}");
            } else {
                tracing::warn!(
                    "http listener on http://{addr}, open to other machines (`allow_remote = true`)"
                );
            }
            let app = http::router(http_state.clone());
            http::start_background(&http_state, &cancel);
            Some(tokio::spawn(http::serve(l, app, cancel.clone())))
        }
        _ => None,
    };

    let (readd_tx, readd_rx) = mpsc::unbounded_channel();
    let mut daemon = Daemon {
        source: None,
        config,
        shared,
        keepers: BTreeMap::new(),
        reports: Arc::new(Notify::new()),
        watcher: None,
        readd_tx,
        readd_rx,
        http: http_state,
    };
    // Every configured plugin has its row before the source journals anything: on a brand-new
    // database each one starts at the beginning of the journal, whoever is quicker.
    for spec in &daemon.config.plugins {
        store
            .open_plugin(&spec.name, spec.start_at, &spec.fingerprint())
            .await
            .with_context(|| format!("cannot record plugin `{}`", spec.name))?;
    }
    for spec in after_order(daemon.config.plugins.clone()) {
        daemon.add(spec);
    }
    daemon.start_source();
    daemon.watch();
    notify::ready();
    notify::status(&format!("running {} plugins", daemon.keepers.len()));
    tokio::spawn(notify::watchdog(cancel.clone()));

    let outcome = daemon.supervise(requests).await;

    notify::stopping();
    cancel.cancel();
    let keepers: Vec<KeeperHandle> = std::mem::take(&mut daemon.keepers).into_values().collect();
    let source = daemon.source.take();
    let stop = async {
        for k in keepers {
            let _ = k.task.await;
        }
        if let Some(s) = source {
            let _ = s.task.await;
        }
    };
    tokio::pin!(stop);
    tokio::select! {
        _ = &mut stop => {}
        _ = hard.cancelled() => {
            // A second SIGINT: actors are killing their children; give them a moment to reap.
            let _ = tokio::time::timeout(Duration::from_secs(2), &mut stop).await;
        }
    }
    let _ = server_task.await;
    if let Some(t) = http_task {
        let _ = t.await;
    }
    if !hard.is_cancelled() {
        alerts.shutdown().await;
    }
    store.daemon_stopped();
    store.flush().await;
    let failure = store.failure();
    drop(daemon);
    drop(store);
    let _ = tokio::task::spawn_blocking(move || store_thread.join()).await;
    if failure.is_some() {
        // The store logged the error itself, once, with its hint: the exit only points at it.
        anyhow::bail!("stopped because the state database failed (the error above says why)");
    }
    tracing::info!("sgevents stopped");
    outcome
}

/// `inherit_env = ["*"]` gives plugins the daemon's whole environment, as before version 4.
fn warn_inherit_all(config: &Config) {
    for spec in &config.plugins {
        if spec.inherit_env.iter().any(|p| p == "*") {
            tracing::warn!(
                plugin = %spec.name,
                "plugin `{}` inherits the daemon's whole environment (`inherit_env = [\"*\"]`); only the variables `*_env` keys name are withheld\nhint: list the variables it needs instead (see docs/SECURITY.md)",
                spec.name
            );
        }
    }
}

struct SourceRun {
    cancel: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

struct Daemon {
    config: Config,
    shared: Shared,
    keepers: BTreeMap<String, KeeperHandle>,
    source: Option<SourceRun>,
    /// Fires when any plugin's report changes.
    reports: Arc<Notify>,
    /// Hot reload: the plugin files' watcher, what it watches, and its reports.
    watcher: Option<(Watcher, Targets, mpsc::Receiver<WatchEvent>)>,
    /// Plugins a reload stopped to start again (their `after` changed, or that of a plugin they
    /// run after): sent here once the old keepers have stopped their actors, never before, so that
    /// two processes of one plugin never run at once.
    readd_tx: mpsc::UnboundedSender<Vec<config::PluginSpec>>,
    readd_rx: mpsc::UnboundedReceiver<Vec<config::PluginSpec>>,
    /// What the HTTP listener reads (kept whether it listens or not).
    http: HttpState,
}

impl Daemon {
    /// Starts a keeper for `spec`, gated by the plugins it runs `after`.
    fn add(&mut self, spec: config::PluginSpec) {
        let gate = if spec.after.is_empty() {
            None
        } else {
            let inputs: Vec<watch::Receiver<i64>> = spec
                .after
                .iter()
                .filter_map(|a| self.keepers.get(a).map(|k| k.progress.clone()))
                .collect();
            Some(lowest_of(inputs))
        };
        let name = spec.name.clone();
        let handle = keeper::spawn(spec, self.shared.clone(), gate);
        self.http
            .plugins
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                name.clone(),
                PluginProbe {
                    live: handle.live.clone(),
                    progress: handle.progress.clone(),
                },
            );
        // Wake the loop whenever this plugin's report changes (for `exit_when_idle`); ends with
        // the keeper.
        let mut report = handle.report.clone();
        let reports = self.reports.clone();
        tokio::spawn(async move {
            while report.changed().await.is_ok() {
                reports.notify_one();
            }
        });
        self.keepers.insert(name, handle);
    }

    /// What hot reload watches: the plugin folders, and the executables of configured commands.
    fn targets(&self) -> Targets {
        Targets {
            dirs: self.config.plugin_dirs.clone(),
            files: self
                .config
                .plugins
                .iter()
                .filter(|p| p.origin == Origin::Command)
                .filter_map(|p| p.executable())
                .collect(),
        }
    }

    /// (Re)starts the watcher when what it should watch changed. Without it the daemon runs on,
    /// without hot reload.
    fn watch(&mut self) {
        let targets = self.targets();
        if self
            .watcher
            .as_ref()
            .is_some_and(|(_, t, _)| t.dirs == targets.dirs && t.files == targets.files)
        {
            return;
        }
        self.watcher = None;
        match Watcher::start(&targets, WATCH_DEBOUNCE) {
            Ok((w, rx)) => self.watcher = Some((w, targets, rx)),
            Err(e) => tracing::error!("hot reload is off: {e}"),
        }
    }

    /// Plugin files changed: discover the plugins again (with the configuration as it was
    /// loaded) and apply what differs.
    fn rescan(&mut self, paths: &[std::path::PathBuf]) {
        let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        tracing::info!("plugin files changed: {}", shown.join(", "));
        match self.config.rediscover() {
            Ok(mut new) => {
                // The configuration file was edited since it was loaded (a reload that failed, or
                // none yet): a new plugin may have a table there (its `start_at`, its `env`...)
                // that the loaded text lacks. Started now, with the defaults, it would begin at
                // the head, and its row would outlive the fix. It waits for a good reload.
                let edited = std::fs::read_to_string(&self.config.file)
                    .is_ok_and(|text| text != self.config.text);
                if edited {
                    new.plugins.retain(|p| {
                        let known = self.keepers.contains_key(&p.name);
                        if !known {
                            tracing::warn!(
                                plugin = %p.name,
                                "plugin `{}` appeared, but `{}` changed since it was loaded; it starts once the configuration is reloaded, with its settings there\nhint: fix the configuration if needed, then `sgevents reload` (or SIGHUP)",
                                p.name,
                                self.config.file.display()
                            );
                        }
                        known
                    });
                }
                let (reply, answer) = oneshot::channel();
                self.apply(new, reply);
                tokio::spawn(async move {
                    let _ = answer.await;
                });
            }
            Err(e) => tracing::error!("cannot discover the plugins again; nothing changed: {e}"),
        }
    }

    fn start_source(&mut self) {
        let store = self.shared.store.clone();
        let cancel = self.shared.cancel.child_token();
        let probe = source::Probe::with_webhook(match &self.config.source {
            SourceConfig::Shotgrid(src) => src.webhook_secret.clone(),
            SourceConfig::Jsonl(_) => None,
        });
        *self
            .http
            .source
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = probe.clone();
        let run: std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>> =
            match self.config.source.clone() {
                SourceConfig::Jsonl(src) => Box::pin(source::jsonl::run(
                    src,
                    store,
                    cancel.clone(),
                    probe.clone(),
                )),
                SourceConfig::Shotgrid(src) => Box::pin(source::shotgrid::run(
                    src,
                    store,
                    cancel.clone(),
                    self.shared.alerts.clone(),
                    probe.clone(),
                )),
            };
        let task = tokio::spawn(async move {
            // A panic or an abort drops the guard unended: the task shows as dead.
            let alive = probe.alive.start();
            let result = run.await;
            match &result {
                Ok(()) => alive.ended(),
                Err(_) => alive.died(),
            }
            result
        });
        self.source = Some(SourceRun { cancel, task });
    }

    /// Waits for a reason to stop, doing what is asked meanwhile; returns how the daemon ends.
    async fn supervise(&mut self, requests: mpsc::Receiver<Envelope>) -> anyhow::Result<()> {
        // `/healthz` reads the loop's life: returning ends it; a panic drops the guard unended.
        let alive = self.http.daemon_loop.start();
        let outcome = self.supervise_loop(requests).await;
        alive.ended();
        outcome
    }

    async fn supervise_loop(
        &mut self,
        mut requests: mpsc::Receiver<Envelope>,
    ) -> anyhow::Result<()> {
        let mut sigterm = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        let mut sigint = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
        let mut sighup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
        let store = self.shared.store.clone();
        let mut failure = store.failure_watch();
        let mut head = store.head();
        let mut source_done = false;
        let reports = self.reports.clone();
        loop {
            if self.config.daemon.exit_when_idle && source_done && self.all_idle(*head.borrow()) {
                tracing::info!(
                    "the source is exhausted and every plugin has caught up; exiting (exit_when_idle)"
                );
                return Ok(());
            }
            let source_task = async {
                match &mut self.source {
                    Some(s) => (&mut s.task).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sigterm.recv() => {
                    tracing::info!("SIGTERM: stopping gracefully");
                    return Ok(());
                }
                _ = sigint.recv() => {
                    tracing::info!("SIGINT: stopping gracefully; press Ctrl-C again to stop at once");
                    let hard = self.shared.hard.clone();
                    tokio::spawn(async move {
                        if let Ok(mut again) = signal(SignalKind::interrupt()) {
                            again.recv().await;
                            tracing::warn!("second SIGINT: stopping at once");
                            hard.cancel();
                        }
                    });
                    return Ok(());
                }
                _ = sighup.recv() => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    let (reply, answer) = oneshot::channel();
                    self.reload(reply);
                    tokio::spawn(async move {
                        if let Ok(r) = answer.await {
                            if !r.ok {
                                tracing::error!("{}", r.message);
                            }
                        }
                    });
                }
                _ = failure.changed() => {
                    let e = store.failure().unwrap_or_default();
                    anyhow::bail!("the state database failed: {e}");
                }
                result = source_task, if !source_done => {
                    source_done = true;
                    self.source = None;
                    match result {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Err(e.context("the event source stopped")),
                        Err(e) => anyhow::bail!("the event source crashed: {e}"),
                    }
                }
                Some((request, reply)) = requests.recv() => self.handle(request, reply),
                event = next_change(&mut self.watcher) => match event {
                    Some(WatchEvent::Changed(paths)) => self.rescan(&paths),
                    Some(WatchEvent::Failed(e)) => tracing::error!("hot reload may miss changes: {e}"),
                    None => {
                        tracing::error!("the plugin file watcher stopped; hot reload is off until the next reload");
                        self.watcher = None;
                    }
                },
                Some(specs) = self.readd_rx.recv() => {
                    for spec in after_order(specs) {
                        // Still configured, and not started again meanwhile by another reload.
                        if self.keepers.contains_key(&spec.name)
                            || !self.config.plugins.iter().any(|p| p.name == spec.name)
                        {
                            continue;
                        }
                        self.add(spec);
                    }
                }
                _ = reports.notified() => {}
                _ = head.changed() => {}
            }
        }
    }

    fn all_idle(&self, head: i64) -> bool {
        self.keepers.values().all(|k| {
            let r = *k.report.borrow();
            r.disabled || r.caught_up_to.is_some_and(|seq| seq >= head)
        })
    }

    /// Answers one control request; anything slow runs in a task of its own.
    fn handle(&mut self, request: Request, reply: oneshot::Sender<Response>) {
        let plugin_command = |r: &Request| -> Option<(String, Command)> {
            Some(match r.clone() {
                Request::PluginRestart { plugin } => (plugin, Command::Restart),
                Request::PluginStop { plugin } => (plugin, Command::Stop),
                Request::PluginStart { plugin } => (plugin, Command::Start),
                Request::PluginEnable { plugin } => (plugin, Command::Enable),
                Request::PluginDisable { plugin } => (plugin, Command::Disable),
                Request::PluginRewind {
                    plugin,
                    to,
                    dry_run,
                } => (plugin, Command::Rewind { to, dry_run }),
                Request::FailedRetry { plugin, event } => (plugin, Command::FailedRetry { event }),
                Request::FailedDrop { plugin, event } => (plugin, Command::FailedDrop { event }),
                Request::PluginList | Request::FailedList { .. } | Request::Reload => return None,
            })
        };
        match plugin_command(&request) {
            Some((name, command)) => match self.keepers.get(&name) {
                Some(k) => forward(k.ask(command), reply),
                // Known to the database but not configured: what only changes the database
                // still works on it.
                None if request.works_offline() => {
                    let store = self.shared.store.clone();
                    tokio::spawn(async move {
                        let r = handle::direct(&store, &request).await;
                        let _ = reply.send(respond(r));
                    });
                }
                None => {
                    let known: Vec<String> = self.keepers.keys().cloned().collect();
                    let e = crate::store::ChangeError::UnknownPlugin { name, known };
                    let _ = reply.send(Response::error(format!(
                        "{e}\n(only configured plugins can be restarted, stopped or started)"
                    )));
                }
            },
            None => match request {
                Request::Reload => self.reload(reply),
                Request::FailedList { plugin } => {
                    let store = self.shared.store.clone();
                    tokio::spawn(async move {
                        let r = handle::direct(&store, &Request::FailedList { plugin }).await;
                        let _ = reply.send(respond(r));
                    });
                }
                Request::PluginList => self.list(reply),
                _ => unreachable!("plugin commands are handled above"),
            },
        }
    }

    fn list(&self, reply: oneshot::Sender<Response>) {
        let store = self.shared.store.clone();
        let configured: BTreeMap<String, Vec<String>> = self
            .config
            .plugins
            .iter()
            .map(|p| (p.name.clone(), p.after.clone()))
            .collect();
        tokio::spawn(async move {
            let rows = store
                .plugin_rows()
                .await
                .map(|r| r.map_err(ControlError::from));
            let rows = match rows {
                Ok(Ok(rows)) => rows,
                other => {
                    let _ = reply.send(respond(
                        other.map(|r| r.map(|_| Response::done("", json!(null)))),
                    ));
                    return;
                }
            };
            let mut notes = serde_json::Map::new();
            for r in &rows {
                match configured.get(&r.name) {
                    None => {
                        notes.insert(r.name.clone(), json!(handle::NOT_CONFIGURED));
                    }
                    Some(after) => {
                        let held: Vec<(&str, &str)> = ops::held_back_by(after, &rows)
                            .iter()
                            .map(|d| (d.name.as_str(), d.state.as_str()))
                            .collect();
                        if !held.is_empty() {
                            notes.insert(r.name.clone(), json!(ops::describe_held_back(&held)));
                        }
                    }
                }
            }
            let n = rows.len();
            let _ = reply.send(Response::done(
                format!("{n} plugin{}", handle::plural(n)),
                json!({"plugins": rows, "notes": notes}),
            ));
        });
    }

    /// Re-reads the configuration file and applies it; answers with what changed. An invalid
    /// file changes nothing.
    fn reload(&mut self, reply: oneshot::Sender<Response>) {
        notify::reloading();
        let loaded = config::load(&self.config.file);
        notify::ready();
        let new = match loaded {
            Ok(c) => c,
            Err(e) => {
                let _ = reply.send(Response::error(format!(
                    "the new configuration is invalid; the running one stays\n{e}"
                )));
                return;
            }
        };
        self.apply(new, reply);
    }

    /// Applies `new` with the fewest restarts: only the plugins whose settings or executables
    /// changed restart; new ones start; gone ones stop, keeping their state.
    fn apply(&mut self, new: Config, reply: oneshot::Sender<Response>) {
        // The old secrets too: a plugin still running may print one.
        crate::redact::set(new.secrets().into_iter().chain(self.config.secrets()));
        warn_inherit_all(&new);
        let mut notes: Vec<String> = Vec::new();
        let later = |what: &str| format!("{what} changed: it takes effect at the next start");
        if new.daemon.state_dir != self.config.daemon.state_dir {
            notes.push(later("`daemon.state_dir`"));
        }
        if new.daemon.logs != self.config.daemon.logs
            || new.daemon.log_level != self.config.daemon.log_level
        {
            notes.push(later("the log settings"));
        }
        if new.http != self.config.http {
            notes.push(later("`[http]`"));
        }
        if new.alerts != self.config.alerts {
            match self.shared.alerts.reconfigure(&new) {
                Ok(()) => notes.push("applied the new `[alerts]`".into()),
                Err(e) => notes.push(format!("cannot apply the new `[alerts]`: {e}")),
            }
        }
        if new.daemon.synchronous != self.config.daemon.synchronous
            || new.daemon.commit_interval != self.config.daemon.commit_interval
            || new.daemon.journal_retention != self.config.daemon.journal_retention
        {
            notes.push(later("the state database's settings"));
        }
        let mut waits: Vec<(String, oneshot::Receiver<Response>)> = Vec::new();
        let old: BTreeMap<String, config::PluginSpec> = self
            .config
            .plugins
            .iter()
            .map(|p| (p.name.clone(), p.clone()))
            .collect();
        let new_names: BTreeSet<&str> = new.plugins.iter().map(|p| p.name.as_str()).collect();
        // Gone plugins first, and plugins whose `after` changed (their gate is rebuilt); then,
        // until nothing more changes, the plugins that run after one of those: their gate watches
        // a keeper that goes, and must be built again from the new one.
        let mut rebuilt: BTreeSet<String> = BTreeSet::new();
        for (name, spec) in &old {
            let gone = !new_names.contains(name.as_str());
            let regated = new
                .plugins
                .iter()
                .any(|p| &p.name == name && p.after != spec.after);
            if gone || regated {
                rebuilt.insert(name.clone());
            }
        }
        loop {
            let more: Vec<String> = new
                .plugins
                .iter()
                .filter(|p| !rebuilt.contains(&p.name) && self.keepers.contains_key(&p.name))
                .filter(|p| p.after.iter().any(|a| rebuilt.contains(a)))
                .map(|p| p.name.clone())
                .collect();
            if more.is_empty() {
                break;
            }
            rebuilt.extend(more);
        }
        let mut removals: Vec<(String, oneshot::Receiver<Response>)> = Vec::new();
        for name in &rebuilt {
            if let Some(k) = self.keepers.remove(name) {
                removals.push((name.clone(), k.ask(Command::Remove)));
            }
            self.http
                .plugins
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(name);
        }
        let mut added = Vec::new();
        let mut readd = Vec::new();
        for spec in &new.plugins {
            if rebuilt.contains(&spec.name) {
                readd.push(spec.clone());
                continue;
            }
            match self.keepers.get(&spec.name) {
                Some(k) => waits.push((
                    spec.name.clone(),
                    k.ask(Command::Update(Box::new(spec.clone()))),
                )),
                None => added.push(spec.clone()),
            }
        }
        // A new plugin waits with the restarted ones when any restart: it may run after them.
        if !readd.is_empty() {
            readd.append(&mut added);
        }
        let source_changed = self.config.source != new.source;
        self.http.set_config(new.clone());
        self.config = new;
        self.watch();
        for spec in after_order(added) {
            notes.push(format!("started plugin `{}`", spec.name));
            self.add(spec);
        }
        if source_changed {
            if let Some(s) = self.source.take() {
                s.cancel.cancel();
                s.task.abort();
            }
            self.start_source();
            notes.push("the source changed: restarted it".into());
        }
        let readd_tx = self.readd_tx.clone();
        tokio::spawn(async move {
            let mut lines = notes;
            let mut changed = Vec::new();
            // The old actors first: only once they have stopped do their plugins start again.
            for (name, answer) in removals {
                match answer.await {
                    Ok(r) => lines.push(r.message),
                    Err(_) => lines.push(format!("plugin `{name}`: its keeper stopped")),
                }
            }
            if !readd.is_empty() {
                lines.extend(readd.iter().map(|s| format!("started plugin `{}`", s.name)));
                let _ = readd_tx.send(readd);
            }
            for (name, answer) in waits {
                match answer.await {
                    Ok(r) if r.data["action"] == "unchanged" => {}
                    Ok(r) => {
                        changed.push(name);
                        lines.push(r.message);
                    }
                    Err(_) => lines.push(format!("plugin `{name}`: its keeper stopped")),
                }
            }
            let message = if lines.is_empty() {
                "reloaded the configuration: nothing changed".to_owned()
            } else {
                format!("reloaded the configuration:\n  {}", lines.join("\n  "))
            };
            tracing::info!("{message}");
            let _ = reply.send(Response::done(message, json!({"changes": lines})));
        });
    }
}

/// The watcher's next report; never, without a watcher.
async fn next_change(
    watcher: &mut Option<(Watcher, Targets, mpsc::Receiver<WatchEvent>)>,
) -> Option<WatchEvent> {
    match watcher {
        Some((_, _, rx)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Passes a keeper's answer on.
fn forward(answer: oneshot::Receiver<Response>, reply: oneshot::Sender<Response>) {
    tokio::spawn(async move {
        let r = answer
            .await
            .unwrap_or_else(|_| Response::error("the plugin's keeper stopped"));
        let _ = reply.send(r);
    });
}

fn respond(r: Result<Result<Response, ControlError>, crate::store::StoreError>) -> Response {
    match r {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Response::error(e.to_string()),
        Err(e) => Response::error(e.to_string()),
    }
}

/// `specs` in their order, except that a plugin comes after the plugins it runs `after`: its gate
/// is built from their keepers, which must exist by then. (The configuration refuses cycles.)
fn after_order(specs: Vec<config::PluginSpec>) -> Vec<config::PluginSpec> {
    let mut pending = specs;
    let mut ordered: Vec<config::PluginSpec> = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let waiting: BTreeSet<String> = pending.iter().map(|p| p.name.clone()).collect();
        let ready = pending
            .iter()
            .position(|p| p.after.iter().all(|a| !waiting.contains(a)))
            // A cycle cannot pass validation; should one appear, keep the configured order.
            .unwrap_or(0);
        ordered.push(pending.remove(ready));
    }
    ordered
}

/// A watch of the lowest of `inputs`: how far a plugin that runs `after` them may go.
fn lowest_of(inputs: Vec<watch::Receiver<i64>>) -> watch::Receiver<i64> {
    let lowest =
        |inputs: &[watch::Receiver<i64>]| inputs.iter().map(|r| *r.borrow()).min().unwrap_or(0);
    let (tx, rx) = watch::channel(lowest(&inputs));
    let moved = Arc::new(Notify::new());
    let done = CancellationToken::new();
    for input in &inputs {
        let mut input = input.clone();
        let moved = moved.clone();
        let done = done.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = done.cancelled() => return,
                    changed = input.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        moved.notify_one();
                    }
                }
            }
        });
    }
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tx.closed() => break,
                _ = moved.notified() => {
                    let value = lowest(&inputs);
                    tx.send_if_modified(|v| {
                        let changed = *v != value;
                        *v = value;
                        changed
                    });
                }
            }
        }
        done.cancel();
    });
    rx
}
