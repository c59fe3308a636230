//! Write sgevents plugins in Rust: subscriptions, callbacks and [`Plugin::run`], with no async
//! runtime.
//!
//! An sgevents plugin is a program the daemon starts and feeds with ShotGrid `EventLogEntry`
//! events, one JSON line per message on stdin, answering on stdout. This crate owns that
//! conversation: the handshake, the worker threads, the answers, liveness and shutdown. A plugin
//! only says which events it wants and what to do with each one:
//!
//! ```no_run
//! use std::process::ExitCode;
//! use std::time::Duration;
//!
//! use sgevents_sdk::{Error, Plugin, Subscription};
//!
//! fn main() -> ExitCode {
//!     Plugin::new()
//!         .on(
//!             Subscription::new("on_status", ["Shotgun_Task_Change"]).attributes(["sg_status_list"]),
//!             |ctx, event| {
//!                 let new = event.meta["new_value"].as_str().unwrap_or_default();
//!                 ctx.log().info(format_args!("task status of event {} is now {new}", event.id));
//!                 match new {
//!                     // The event can never succeed: record it as failed, do not retry.
//!                     "omt" => Err(Error::term("omitted tasks are not published")),
//!                     // Try again later, no sooner than in a minute.
//!                     "hld" => Err(Error::retry("task on hold").after(Duration::from_secs(60))),
//!                     _ => Ok(()),
//!                 }
//!             },
//!         )
//!         // Subscriptions that depend on the plugin's configuration in the daemon.
//!         .setup(|setup, config| {
//!             if let Some(ids) = config.get("projects").and_then(|v| v.as_array()) {
//!                 let ids = ids.iter().filter_map(|v| v.as_i64());
//!                 setup.on(
//!                     Subscription::new("new_versions", ["Shotgun_Version_New"]).project_ids(ids),
//!                     |ctx, event| {
//!                         // Any error converts with `?` and answers `nack` with its causes.
//!                         let dir = std::path::Path::new("/mnt/review").join(event.id.to_string());
//!                         std::fs::create_dir_all(&dir)?;
//!                         ctx.progress();
//!                         Ok(())
//!                     },
//!                 );
//!             }
//!             setup.max_in_flight(4);
//!             Ok(())
//!         })
//!         .run()
//! }
//! ```
//!
//! # Theory of operation
//!
//! **Handshake.** [`Plugin::run`] reads stdin line by line (16 MiB at most per line). The first
//! message is `hello`: the SDK picks the newest protocol version both sides speak, runs the setup
//! hooks with the plugin's configuration, and answers `register` with every subscription in
//! registration order and `max_in_flight`. No common version, a failing setup hook, or a
//! `register` that [`sgevents_protocol::Register::validate`] refuses (no subscriptions, a repeated
//! name, a window outside 1 to 1024) is answered with `fatal`, and the process exits with status 125.
//!
//! **Threads.** The thread that calls `run` reads stdin for the rest of the session: it answers
//! `ping` at once, even while every callback is busy, and queues each `event` for the
//! `max_in_flight` worker threads. With the default window of 1 there is one worker, so events
//! are handled strictly one after another in arrival order; a larger window lets callbacks of
//! different events run at the same time, so they must be `Send + Sync`. No async runtime is
//! involved: blocking in a callback is fine.
//!
//! **Answers.** A worker calls the callbacks of the subscriptions named in the event, in that order,
//! and stops at the first failure, which decides the answer: `ack` when all succeed, `nack` for an
//! ordinary [`Error`] or a panic (caught: the process goes on), `nack` with `retry_after_ms` for
//! [`Error::retry`]`(..).`[`after`](Error::after)`(..)`, `term` for [`Error::term`], and for
//! [`Error::fatal`] a `fatal` line after which the process exits with status 125 at once, without
//! waiting for other callbacks. A subscription name the plugin has no callback for (a daemon bug)
//! is answered with `term` before any callback runs. Every failure is also logged with the event
//! id (a `nack` at warn level, the others at error level). Every output line is written and flushed
//! whole under one lock, so lines of the reader and the workers never interleave.
//!
//! **Context.** A callback gets a [`Context`]: the plugin's name and configuration from `hello`, the
//! event id, attempt, deadline and matched subscription, [`progress`](Context::progress) (written
//! at once), a logger, and the ShotGrid [`Credentials`] that `run` read once at start from
//! `SGEVENTS_SITE_URL`, `SGEVENTS_SCRIPT_NAME` and `SGEVENTS_SCRIPT_KEY` (all three or none).
//!
//! **Ending.** After `shutdown` new events are refused (`nack` "plugin is shutting down") while the
//! events in flight finish; the plugin exits with status 0 when stdin closes. stdin closing at any
//! time is the end: the events in flight finish and are answered, then the process exits with 0.
//! When stdout is gone (the daemon died), the plugin logs it and exits with 0 once the callbacks in
//! flight return; the daemon will deliver the unanswered events again.
//!
//! **stdout is the protocol's.** On Unix, `run` keeps a private handle on stdout for protocol lines
//! and points the process's stdout at stderr, so a stray `println!` (or a library's, or the output
//! of a program a callback starts) becomes a log line instead of corrupting the conversation. Log
//! with [`Context::log`] or [`logger()`]: records go to stderr as `I! message` lines (JSON for
//! messages with newlines), which the daemon files under the plugin's name.
//!
//! **Testing.** The [`testing`] module runs a plugin through the same loop with in-memory pipes:
//! give it a configuration and events, read back the `register` message, the answers and the log.
//!
//! Only `sgevents_protocol` knows the wire format; this crate uses its types for every line it reads
//! or writes.

mod context;
mod error;
mod log;
mod pipe;
mod plugin;
mod run;
mod serve;
mod stdio;
mod subscription;
pub mod testing;

pub use context::{Context, Credentials};
pub use error::{Error, ErrorKind};
pub use log::{Logger, logger};
pub use plugin::{Plugin, Setup};
pub use serve::Exit;
pub use subscription::Subscription;

pub use serde_json::{Map, Value};
/// The protocol crate, for its message types and helpers.
pub use sgevents_protocol as protocol;
pub use sgevents_protocol::log::Level;
pub use sgevents_protocol::{EntityLink, Event};
