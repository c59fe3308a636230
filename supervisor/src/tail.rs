//! `sgevents tail`: follows the journal live, one line per newly journaled event (id, time, type,
//! entity, attribute, user), or the event's JSON with `--json`.
//!
//! It polls the state database read-only ([`store::open_read_only`]), so it never disturbs the
//! daemon and works whether the daemon runs or not (it then waits for one to journal something).
//! `--plugin NAME` keeps the events that plugin's recorded subscriptions match, with the daemon's
//! own matcher; `--type GLOB` those whose `event_type` matches the glob (`*` and `?`).

use std::io::Write;
use std::time::Duration;

use serde_json::Value;
use sgevents_protocol::{Subscription, glob_match};

use crate::config::Config;
use crate::store::{self, JournalRow, Reader, StoreError};

/// How often the journal is polled.
const POLL: Duration = Duration::from_millis(250);
/// Rows read per query.
const BATCH: usize = 1000;

/// What `sgevents tail` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only what this plugin subscribes to.
    pub plugin: Option<String>,
    /// Only event types matching this glob.
    pub event_type: Option<String>,
    /// One JSON object per line: the event as journaled.
    pub json: bool,
}

/// Why `tail` stopped.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// The plugin is unknown or never registered.
    #[error(
        "plugin `{0}` has no recorded subscriptions\nhint: a plugin records them at its first handshake with the daemon; start the daemon once, or filter with `--type GLOB`"
    )]
    NoSubscriptions(String),
    /// The state database.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Follows the journal until interrupted (or stdout closes).
pub fn run(config: &Config, options: &Options) -> Result<(), TailError> {
    let conn = store::open_read_only(&config.daemon.state_dir)?;
    let subscriptions = match &options.plugin {
        Some(name) => Some(subscriptions(&conn, name)?),
        None => None,
    };
    let (mut after, head_id) = conn.journal_head()?;
    eprintln!(
        "following the journal of `{}` after event {} (Ctrl-C stops)",
        store::db_path(&config.daemon.state_dir).display(),
        head_id.map_or("-".to_owned(), |id| id.to_string())
    );
    let mut out = std::io::stdout().lock();
    loop {
        let rows = read(&conn, after)?;
        if rows.is_empty() {
            std::thread::sleep(POLL);
            continue;
        }
        for row in rows {
            after = row.seq;
            if let Some(glob) = &options.event_type {
                if !glob_match(glob, &row.event_type) {
                    continue;
                }
            }
            if let Some(subs) = &subscriptions {
                if crate::plugin::matching(subs, &row).is_empty() {
                    continue;
                }
            }
            let line = if options.json {
                row.body.clone()
            } else {
                line(&row)
            };
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                // A closed pipe (`| head`): done.
                return Ok(());
            }
        }
    }
}

/// A plugin's recorded subscriptions (`plugins.subscriptions`).
fn subscriptions(conn: &Reader, plugin: &str) -> Result<Vec<Subscription>, TailError> {
    let json = conn.subscriptions(plugin)?;
    json.and_then(|j| serde_json::from_str(&j).ok())
        .ok_or_else(|| TailError::NoSubscriptions(plugin.to_owned()))
}

fn read(conn: &Reader, after: i64) -> Result<Vec<JournalRow>, StoreError> {
    conn.read_journal(after, BATCH)
}

/// `2011003  2026-11-02T10:00:00Z  Shotgun_Task_Change  Task 420 (Anim)  sg_status_list  HumanUser 42 (Ana Reyes)`.
pub fn line(row: &JournalRow) -> String {
    let body: Value = serde_json::from_str(&row.body).unwrap_or(Value::Null);
    let link = |v: &Value| match (v["type"].as_str(), v["id"].as_i64()) {
        (Some(t), Some(id)) => match v["name"].as_str() {
            Some(name) => format!("{t} {id} ({name})"),
            None => format!("{t} {id}"),
        },
        _ => "-".to_owned(),
    };
    let dash = |s: Option<&str>| s.filter(|s| !s.is_empty()).unwrap_or("-").to_owned();
    format!(
        "{:>10}  {:<24}  {:<28}  {:<32}  {:<20}  {}",
        row.event_id,
        dash(row.created_at.as_deref()),
        dash(Some(&row.event_type)),
        link(&body["entity"]),
        dash(row.attribute_name.as_deref()),
        link(&body["user"]),
    )
    .trim_end()
    .to_owned()
}
