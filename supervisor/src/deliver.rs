//! `sgevents deliver NAME`: the try-it loop. Starts one plugin exactly as the daemon does
//! (`PluginChild::spawn`), does the handshake, hands it chosen events one at a time exactly as
//! the daemon would (the same `event` lines, addressed to the subscriptions that match, attempt 1)
//! and prints each answer; the plugin's log lines go to stderr as the daemon's log records. Then
//! it stops the plugin as the daemon does (`shutdown`, stdin closed, SIGTERM, SIGKILL).
//!
//! Events come from the journal, read with [`store::open_read_only`] (so it works whether the
//! daemon runs or not), or from a JSON-lines file (`--event-file`). Nothing is written anywhere:
//! no cursor moves, no retry or failed event is recorded.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sgevents_protocol::{
    DaemonMessage, Event, Hello, PluginMessage, Register, SUPPORTED, Subscription,
    decode_plugin_line, encode, excerpt,
};
use tokio::time::timeout;

use crate::config::{Config, Origin, PluginLimits, PluginSpec};
use crate::plugin::child::{Incoming, PluginChild};
use crate::plugin::{event_line, matching};
use crate::store::{self, JournalRow, Reader};

/// The longest excerpt of a bad line shown.
const EXCERPT: usize = 200;
/// How many journal rows `--last` reads at a time, newest first.
const LAST_BATCH: i64 = 1000;

/// What `sgevents deliver` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The plugin's name.
    pub plugin: String,
    /// These event ids, in this order.
    pub events: Vec<i64>,
    /// The last N events the plugin subscribes to.
    pub last: Option<usize>,
    /// The command instead of the configured one (a plugin under development).
    pub command: Option<Vec<String>>,
    /// A JSON-lines file to take the events from instead of the journal.
    pub event_file: Option<PathBuf>,
}

/// Why `deliver` could not run.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// No such plugin, and no `--command`.
    #[error(
        "there is no plugin named `{name}` in the configuration\nhint: {}",
        if .known.is_empty() { "add a `[plugin.NAME]` table, or pass `--command` to try a plugin under development".to_owned() } else { format!("known plugins: {}; or pass `--command` to try a plugin under development", .known.join(", ")) }
    )]
    UnknownPlugin {
        /// The name asked for.
        name: String,
        /// The configured names.
        known: Vec<String>,
    },
    /// No event was chosen.
    #[error(
        "no events to deliver to `{0}`\nhint: name them with `--event ID` (repeatable) or `--last N`, or give `--event-file FILE`"
    )]
    NoEvents(String),
    /// An event id is not in the journal.
    #[error(
        "event `{event_id}` is not in the journal{range}\nhint: `sgevents tail` shows events as they are journaled; or pass `--event-file FILE` with the event in it"
    )]
    NotJournaled {
        /// The id.
        event_id: i64,
        /// The journal's range, in words.
        range: String,
    },
    /// An event id is not in the events file.
    #[error(
        "event `{event_id}` is not in `{file}`\nhint: check the id, or leave `--event` out to deliver every event of the file"
    )]
    NotInFile {
        /// The id.
        event_id: i64,
        /// The file.
        file: String,
    },
    /// The events file cannot be read.
    #[error(
        "cannot read the events file `{file}`: {error}\nhint: give a file of ShotGrid events, one JSON object per line"
    )]
    EventFile {
        /// The file.
        file: String,
        /// Why.
        error: String,
    },
    /// The plugin could not be started or failed its handshake.
    #[error("plugin `{plugin}` {problem}\nhint: {hint}")]
    Plugin {
        /// The plugin.
        plugin: String,
        /// What went wrong.
        problem: String,
        /// What to do.
        hint: String,
    },
    /// The state database.
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// The plugin's spec: the configured one, with `--command` if given; or, for a plugin under
/// development that is not configured yet, one made from `--command` with the default limits,
/// running in the configuration file's folder.
pub fn spec_for(config: &Config, options: &Options) -> Result<PluginSpec, DeliverError> {
    let configured = config
        .plugins
        .iter()
        .find(|p| p.name == options.plugin)
        .cloned();
    match (configured, &options.command) {
        (Some(mut spec), command) => {
            if let Some(command) = command {
                spec.command.clone_from(command);
                spec.origin = Origin::Command;
            }
            Ok(spec)
        }
        (None, Some(command)) => Ok(PluginSpec {
            name: options.plugin.clone(),
            command: command.clone(),
            env: Default::default(),
            config: Default::default(),
            enabled: true,
            start_at: None,
            credentials: None,
            cwd: config.base_dir.clone(),
            limits: PluginLimits::default(),
            origin: Origin::Command,
            alert_to: None,
            after: Vec::new(),
            inherit_env: Vec::new(),
            // Like every plugin: no variable a `*_env` key names.
            withheld_env: config.secret_env.clone(),
            user: None,
            group: None,
        }),
        (None, None) => Err(DeliverError::UnknownPlugin {
            name: options.plugin.clone(),
            known: config.plugins.iter().map(|p| p.name.clone()).collect(),
        }),
    }
}

/// Where the events come from.
enum Events {
    /// Chosen before the plugin starts.
    Rows(Vec<JournalRow>),
    /// The last N the plugin subscribes to, chosen once it registered.
    Last(usize, Source),
}

enum Source {
    Journal(Reader),
    File(Vec<JournalRow>),
}

/// Runs `deliver`; returns whether every event was acked.
pub async fn run(config: &Config, options: &Options) -> Result<bool, DeliverError> {
    let spec = spec_for(config, options)?;
    let source = match &options.event_file {
        Some(file) => Source::File(read_file(&config.base_dir, file)?),
        None => Source::Journal(store::open_read_only(&config.daemon.state_dir)?),
    };
    let events = match (options.last, options.events.is_empty(), source) {
        (Some(n), _, source) => Events::Last(n, source),
        (None, false, Source::Journal(conn)) => Events::Rows(
            options
                .events
                .iter()
                .map(|&id| journal_event(&conn, id))
                .collect::<Result<_, _>>()?,
        ),
        (None, false, Source::File(rows)) => Events::Rows(
            options
                .events
                .iter()
                .map(|&id| {
                    rows.iter()
                        .find(|r| r.event_id == id)
                        .cloned()
                        .ok_or_else(|| DeliverError::NotInFile {
                            event_id: id,
                            file: options
                                .event_file
                                .clone()
                                .unwrap_or_default()
                                .display()
                                .to_string(),
                        })
                })
                .collect::<Result<_, _>>()?,
        ),
        (None, true, Source::File(rows)) => Events::Rows(rows),
        (None, true, Source::Journal(_)) => {
            return Err(DeliverError::NoEvents(options.plugin.clone()));
        }
    };

    let mut child = PluginChild::spawn(&spec, Default::default()).map_err(|e| DeliverError::Plugin {
        plugin: spec.name.clone(),
        problem: format!("cannot be started (command `{}`): {e}", spec.command.join(" ")),
        hint: "check the command: a path is relative to the configuration file's folder, where plugins run".into(),
    })?;
    // Ctrl-C stops the plugin too: it runs in a process group of its own, which the terminal's
    // signal does not reach.
    let outcome = tokio::select! {
        outcome = session(&spec, &mut child, events) => outcome,
        _ = tokio::signal::ctrl_c() => {
            say("interrupted: stopping the plugin");
            Ok(false)
        }
    };
    stop(&spec, &mut child).await;
    outcome
}

/// The handshake and the deliveries; returns whether every event was acked.
async fn session(
    spec: &PluginSpec,
    child: &mut PluginChild,
    events: Events,
) -> Result<bool, DeliverError> {
    let register = match handshake(spec, child).await {
        Ok(r) => r,
        Err(problem) => {
            return Err(DeliverError::Plugin {
                plugin: spec.name.clone(),
                problem,
                hint: "see its log lines above; `sgevents check` runs the same handshake".into(),
            });
        }
    };
    say(&format!(
        "plugin `{}` registered {} (max_in_flight {}): {}",
        spec.name,
        count(register.subscriptions.len(), "subscription"),
        register.max_in_flight,
        describe_subscriptions(&register.subscriptions)
    ));
    let rows = match events {
        Events::Rows(rows) => rows,
        Events::Last(n, Source::Journal(conn)) => {
            last_journaled(&conn, &register.subscriptions, n)?
        }
        Events::Last(n, Source::File(rows)) => {
            let mut chosen: Vec<JournalRow> = rows
                .into_iter()
                .rev()
                .filter(|r| !matching(&register.subscriptions, r).is_empty())
                .take(n)
                .collect();
            chosen.reverse();
            chosen
        }
    };
    if rows.is_empty() {
        say("no event matches the plugin's subscriptions: nothing delivered");
    }
    let mut all_acked = !rows.is_empty();
    let mut gone = false;
    for row in &rows {
        if gone {
            say(&format!(
                "event {}: not delivered (the plugin stopped)",
                row.event_id
            ));
            all_acked = false;
            continue;
        }
        let names = matching(&register.subscriptions, row);
        if names.is_empty() {
            say(&format!(
                "event {} ({}): not delivered: it matches none of the plugin's subscriptions (the daemon skips it too)",
                row.event_id,
                describe_row(row)
            ));
            all_acked = false;
            continue;
        }
        say(&format!(
            "event {} ({}) -> {}, attempt 1",
            row.event_id,
            describe_row(row),
            names.join(", ")
        ));
        child.send(event_line(row, 1, &names, &spec.limits));
        let (acked, stopped) = answer(spec, child, row.event_id).await;
        all_acked &= acked;
        gone = stopped;
    }
    Ok(all_acked)
}

/// Sends `hello` and reads `register`, as the actor does.
async fn handshake(spec: &PluginSpec, child: &mut PluginChild) -> Result<Register, String> {
    child.send(encode(&DaemonMessage::Hello(Hello {
        protocols: SUPPORTED.to_vec(),
        plugin: spec.name.clone(),
        config: spec.config.clone(),
    })));
    let limit = spec.limits.handshake_timeout;
    match timeout(limit, child.incoming.recv()).await {
        Err(_) => Err(format!(
            "did not answer `hello` within {}",
            humantime::format_duration(limit)
        )),
        Ok(None) => {
            let status = timeout(spec.limits.stop_grace, child.wait()).await;
            Err(format!(
                "exited during the handshake{}",
                match status {
                    Ok(Ok(s)) => format!(" ({s})"),
                    _ => String::new(),
                }
            ))
        }
        Ok(Some(Incoming::TooLong(n))) => Err(format!(
            "failed handshake: wrote a line of {n} bytes, over the 16 MiB limit"
        )),
        Ok(Some(Incoming::Line(line))) => match decode_plugin_line(&line) {
            Ok(PluginMessage::Register(reg)) => match reg.validate(SUPPORTED) {
                Ok(()) => Ok(reg),
                Err(e) => Err(format!("failed handshake: {e}")),
            },
            Ok(PluginMessage::Fatal { error }) => {
                Err(format!("sent a fatal error instead of `register`: {error}"))
            }
            Ok(other) => Err(format!(
                "failed handshake: expected `register`, got `{}`",
                other.kind()
            )),
            Err(e) => Err(format!(
                "failed handshake: {}: `{}` (stdout carries protocol messages only; log to stderr)",
                e.to_string().lines().next().unwrap_or_default(),
                excerpt(&line, EXCERPT)
            )),
        },
    }
}

/// Waits for the answer to `event_id` and prints it. Returns (acked, the plugin is gone).
async fn answer(spec: &PluginSpec, child: &mut PluginChild, event_id: i64) -> (bool, bool) {
    let started = Instant::now();
    let cap = started + spec.limits.progress_cap;
    let mut deadline = started + spec.limits.ack_timeout;
    loop {
        let until = deadline.min(cap);
        let incoming = match tokio::time::timeout_at(until.into(), child.incoming.recv()).await {
            Ok(incoming) => incoming,
            Err(_) => {
                say(&format!(
                    "event {event_id}: no answer within {} (`ack_timeout`; the daemon would kill the plugin and deliver it again as attempt 2)",
                    humantime::format_duration(if until == cap {
                        spec.limits.progress_cap
                    } else {
                        spec.limits.ack_timeout
                    })
                ));
                return (false, true);
            }
        };
        let line = match incoming {
            None => {
                let status = timeout(spec.limits.stop_grace, child.wait()).await;
                say(&format!(
                    "event {event_id}: the plugin exited before answering{}",
                    match status {
                        Ok(Ok(s)) => format!(" ({s})"),
                        _ => String::new(),
                    }
                ));
                return (false, true);
            }
            Some(Incoming::TooLong(n)) => {
                say(&format!(
                    "event {event_id}: the plugin broke the protocol: wrote a line of {n} bytes, over the 16 MiB limit"
                ));
                return (false, true);
            }
            Some(Incoming::Line(line)) => line,
        };
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let msg = match decode_plugin_line(&line) {
            Ok(msg) => msg,
            Err(e) => {
                say(&format!(
                    "event {event_id}: the plugin broke the protocol: {}: `{}`",
                    e.to_string().lines().next().unwrap_or_default(),
                    excerpt(&line, EXCERPT)
                ));
                return (false, true);
            }
        };
        if let Some(other) = msg.event_id().filter(|&id| id != event_id) {
            say(&format!(
                "event {event_id}: the plugin broke the protocol: `{}` for event {other}, which it was not given",
                msg.kind()
            ));
            return (false, true);
        }
        match msg {
            PluginMessage::Ack { .. } => {
                say(&format!("event {event_id}: ack ({ms:.1} ms)"));
                return (true, false);
            }
            PluginMessage::Nack {
                error,
                retry_after_ms,
                ..
            } => {
                let after = retry_after_ms
                    .map(|ms| format!(", retry after {} ms", ms))
                    .unwrap_or_default();
                say(&format!(
                    "event {event_id}: nack ({ms:.1} ms{after}): {}",
                    error.trim_end()
                ));
                return (false, false);
            }
            PluginMessage::Term { error, .. } => {
                say(&format!(
                    "event {event_id}: term ({ms:.1} ms): {}",
                    error.trim_end()
                ));
                return (false, false);
            }
            PluginMessage::Fatal { error } => {
                say(&format!(
                    "event {event_id}: fatal ({ms:.1} ms): {} (the daemon would disable the plugin)",
                    error.trim_end()
                ));
                return (false, true);
            }
            PluginMessage::Progress { .. } => {
                deadline = Instant::now() + spec.limits.ack_timeout;
            }
            PluginMessage::Pong { .. } => {}
            PluginMessage::Register(_) => {
                say(&format!(
                    "event {event_id}: the plugin broke the protocol: a second `register`"
                ));
                return (false, true);
            }
        }
    }
}

/// Stops the plugin as the daemon does: `shutdown`, stdin closed, then SIGTERM and SIGKILL to its
/// process group after `stop_grace` each.
async fn stop(spec: &PluginSpec, child: &mut PluginChild) {
    let drain = spec.limits.shutdown_drain;
    child.send(encode(&DaemonMessage::Shutdown {
        drain_ms: drain.as_millis() as u64,
    }));
    child.close_stdin();
    let grace = spec.limits.stop_grace;
    if let Ok(Ok(status)) = timeout(grace, child.wait()).await {
        if !status.success() {
            say(&format!("plugin `{}` exited: {status}", spec.name));
        }
        return;
    }
    child.signal(nix::sys::signal::Signal::SIGTERM);
    if timeout(grace, child.wait()).await.is_ok() {
        return;
    }
    say(&format!(
        "plugin `{}` did not exit after SIGTERM; killed",
        spec.name
    ));
    child.kill().await;
}

/// One journaled event by id.
fn journal_event(conn: &Reader, event_id: i64) -> Result<JournalRow, DeliverError> {
    match conn.journal_event(event_id)? {
        Some(row) => Ok(row),
        None => {
            let range = match conn.journal_range()? {
                Some((lo, hi)) => format!(" (it holds events {lo} to {hi})"),
                _ => " (it is empty)".into(),
            };
            Err(DeliverError::NotJournaled { event_id, range })
        }
    }
}

/// The last `n` journaled events that match `subscriptions`, oldest first.
fn last_journaled(
    conn: &Reader,
    subscriptions: &[Subscription],
    n: usize,
) -> Result<Vec<JournalRow>, DeliverError> {
    let mut chosen = Vec::new();
    let mut before = i64::MAX;
    while chosen.len() < n {
        let rows = conn.journal_before(before, LAST_BATCH)?;
        let Some(last) = rows.last() else { break };
        before = last.seq;
        chosen.extend(
            rows.into_iter()
                .filter(|r| !matching(subscriptions, r).is_empty())
                .take(n - chosen.len()),
        );
    }
    chosen.reverse();
    Ok(chosen)
}

/// The events of a JSON-lines file, normalised as the jsonl source journals them (blank lines
/// skipped; a line that is not an event is an error naming it).
fn read_file(base: &Path, file: &Path) -> Result<Vec<JournalRow>, DeliverError> {
    let path = base.join(file);
    let shown = file.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|e| DeliverError::EventFile {
        file: shown.clone(),
        error: e.to_string(),
    })?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let event: Event = serde_json::from_str(line).map_err(|e| DeliverError::EventFile {
            file: shown.clone(),
            error: format!("line {}: {e}", i + 1),
        })?;
        let row = crate::source::journal_row(&event);
        rows.push(JournalRow {
            seq: i as i64 + 1,
            event_id: row.event_id,
            event_type: row.event_type,
            attribute_name: row.attribute_name,
            entity_type: row.entity_type,
            project_id: row.project_id,
            is_transient: row.is_transient,
            created_at: row.created_at,
            body: row.body,
        });
    }
    Ok(rows)
}

/// `Shotgun_Task_Change sg_status_list Task 420`.
fn describe_row(row: &JournalRow) -> String {
    let mut text = if row.event_type.is_empty() {
        "no event_type".to_owned()
    } else {
        row.event_type.clone()
    };
    if let Some(a) = &row.attribute_name {
        let _ = write!(text, " {a}");
    }
    if let Ok(body) = serde_json::from_str::<serde_json::Value>(&row.body) {
        if let (Some(t), Some(id)) = (
            body["entity"]["type"].as_str(),
            body["entity"]["id"].as_i64(),
        ) {
            let _ = write!(text, " {t} {id}");
        }
    }
    text
}

fn describe_subscriptions(subs: &[Subscription]) -> String {
    subs.iter()
        .map(|s| format!("{} ({})", s.name, s.event_types.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// Prints one line of the report on stdout (a closed pipe is not an error).
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
