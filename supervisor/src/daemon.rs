//! The daemon's core: opens the store, starts the source and one actor per plugin, and stops them
//! all in order.
//!
//! Shutdown is decide, tell, wait. *Decide*: SIGTERM or SIGINT, `exit_when_idle` once the source is
//! exhausted and every plugin has caught up, or a failure of the state database. *Tell*: a
//! [`CancellationToken`] that every actor and the source watch; a second SIGINT cancels the `hard`
//! token too, and actors then kill their children at once. *Wait*: every task ends, then the store
//! commits what was answered and the daemon exits.

use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, SourceConfig};
use crate::plugin::{Actor, ActorReport};
use crate::source;
use crate::store::{Store, StoreOptions};

/// Runs the daemon until it is told to stop.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let options = StoreOptions {
        synchronous: config.daemon.synchronous,
        commit_interval: config.daemon.commit_interval,
        retention: config.daemon.journal_retention,
    };
    // Held until this function returns: one daemon per state directory.
    let _lock = crate::lock::StateLock::acquire(&config.daemon.state_dir)?;
    let (store, store_thread) = Store::open(&config.daemon.state_dir, options)?;
    store.daemon_started(std::process::id());
    tracing::info!(
        config = %config.file.display(),
        state = %config.daemon.state_dir.display(),
        plugins = config.plugins.len(),
        "sgevents {} started",
        env!("CARGO_PKG_VERSION")
    );

    let cancel = CancellationToken::new();
    let hard = CancellationToken::new();
    let mut tasks = JoinSet::new();

    let mut reports = Vec::new();
    for spec in config.plugins.clone() {
        let (tx, rx) = watch::channel(ActorReport::default());
        reports.push((spec.name.clone(), rx));
        let actor = Actor::new(spec, store.clone(), tx, cancel.child_token(), hard.clone());
        tasks.spawn(actor.run());
    }

    let source_task = {
        let store = store.clone();
        let cancel = cancel.child_token();
        match config.source.clone() {
            SourceConfig::Jsonl(src) => tokio::spawn(source::jsonl::run(src, store, cancel)),
            SourceConfig::Shotgrid(src) => tokio::spawn(source::shotgrid::run(src, store, cancel)),
        }
    };

    let outcome = supervise(&config, &store, &cancel, &hard, reports, source_task).await;

    cancel.cancel();
    let stop = async { while tasks.join_next().await.is_some() {} };
    tokio::select! {
        _ = stop => {}
        _ = hard.cancelled() => {
            // A second SIGINT: actors are killing their children; give them a moment to reap.
            let _ = tokio::time::timeout(Duration::from_secs(2), async { while tasks.join_next().await.is_some() {} }).await;
        }
    }
    store.daemon_stopped();
    store.flush().await;
    let failure = store.failure();
    drop(store);
    let _ = tokio::task::spawn_blocking(move || store_thread.join()).await;
    if let Some(e) = failure {
        anyhow::bail!("stopped because the state database failed: {e}");
    }
    tracing::info!("sgevents stopped");
    outcome
}

/// Waits for a reason to stop; returns how the daemon should end.
async fn supervise(
    config: &Config,
    store: &Store,
    cancel: &CancellationToken,
    hard: &CancellationToken,
    mut reports: Vec<(String, watch::Receiver<ActorReport>)>,
    mut source_task: tokio::task::JoinHandle<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let mut sigterm = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    // SIGHUP would end the daemon at once by default; until configuration reload exists, it is
    // received and ignored, so that a `reload` of the service never stops it.
    let mut sighup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    let mut failure = store.failure_watch();
    let mut head = store.head();
    // The source's task ends by itself only when the source is exhausted.
    let mut source_done = false;
    let (any_report_tx, mut any_report) = watch::channel(());
    for (_, rx) in &reports {
        let mut rx = rx.clone();
        let tx = any_report_tx.clone();
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                tx.send_replace(());
            }
        });
    }
    loop {
        if config.daemon.exit_when_idle && source_done && all_idle(&mut reports, *head.borrow()) {
            tracing::info!(
                "the source is exhausted and every plugin has caught up; exiting (exit_when_idle)"
            );
            return Ok(());
        }
        tokio::select! {
            _ = sigterm.recv() => {
                tracing::info!("SIGTERM: stopping gracefully");
                return Ok(());
            }
            _ = sigint.recv() => {
                tracing::info!("SIGINT: stopping gracefully; press Ctrl-C again to stop at once");
                let hard = hard.clone();
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
                tracing::warn!("SIGHUP: reloading the configuration is not supported yet; ignoring it\nhint: restart the daemon to apply a new configuration");
            }
            _ = failure.changed() => {
                let e = store.failure().unwrap_or_default();
                anyhow::bail!("the state database failed: {e}");
            }
            result = &mut source_task, if !source_done => {
                source_done = true;
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        cancel.cancel();
                        return Err(e.context("the event source stopped"));
                    }
                    Err(e) => anyhow::bail!("the event source crashed: {e}"),
                }
            }
            _ = any_report.changed() => {}
            _ = head.changed() => {}
        }
    }
}

fn all_idle(reports: &mut [(String, watch::Receiver<ActorReport>)], head: i64) -> bool {
    reports.iter_mut().all(|(_, rx)| {
        let r = *rx.borrow();
        r.disabled || r.caught_up_to.is_some_and(|seq| seq >= head)
    })
}
