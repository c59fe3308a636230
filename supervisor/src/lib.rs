//! The sgevents daemon: journals a ShotGrid event log in SQLite and supervises plugin processes
//! that speak protocol v1 (`protocol/PROTOCOL.md`).
//!
//! # Theory of operation
//!
//! ```text
//!  source task ──append batches──▶ Store (one thread, one SQLite connection) ◀── cursor moves,
//!  (ShotGrid REST                    │ journal head (watch)                         retries, failures
//!   or a jsonl file)                 │
//!                                    ▼                                                   ▲
//!                        one Actor per plugin ──event lines──▶ child stdin               │
//!                                    ▲ ◀──────answers────────── child stdout ────────────┘
//! ```
//!
//! - [`config`] validates the TOML once into typed values and discovers plugins.
//! - [`store`] owns the database and alone knows its schema: migrations, the journal, group commit,
//!   pruning, and the typed reads and writes every other module (the CLI, `status`, `migrate`) uses.
//! - `source` fills the journal; plugins never talk to it.
//! - `plugin` is the actor of one plugin (its child, its window, its cursor, its restarts) and its
//!   keeper, which alone starts and stops the actor and does what operators ask of that plugin.
//! - [`daemon`] starts everything, answers the [`control`] socket, applies new configurations and
//!   changed plugin files (`watch`), and stops it all in order; [`status`] and [`check`] are the
//!   read-only commands.
//! - The try-it loop: [`deliver`] runs one plugin on chosen events as the daemon would, writing
//!   nothing; [`tail`] follows the journal; [`scaffold`] writes a new plugin and its test.
//! - [`http`] is the read-only HTTP listener (probes; see its module docs for adding a route);
//!   [`liveness`] the alive flags it reads.
//! - [`alerts`] mails operators, [`logging`] writes stderr and the log files, [`notify`] talks to
//!   systemd, [`migrate`] converts a shotgunEvents installation.
//!
//! **Invariant:** while the daemon runs, only the store thread touches the read-write SQLite
//! connection (the CLI writes directly only under the state directory's lock, which a running
//! daemon holds), and only actors touch their children.

pub mod alerts;
pub(crate) mod backoff;
pub mod check;
pub mod config;
pub mod control;
pub mod daemon;
pub mod deliver;
pub mod http;
pub mod launch;
pub mod liveness;
pub mod lock;
pub mod logging;
pub mod metrics;
pub mod migrate;
pub mod notify;
pub mod orphans;
pub(crate) mod plugin;
pub mod privilege;
pub mod redact;
pub mod scaffold;
pub(crate) mod source;
pub mod status;
pub mod store;
pub mod table;
pub mod tail;
pub(crate) mod watch;

#[cfg(test)]
mod fuzz;
