//! The operator's changes to the state database, as `plugin list`, `status` and the status page
//! show them. The changes themselves, and the rows they read, are the store's
//! ([`crate::store::Change`]): made in the store thread's transaction or the CLI's, by the same
//! code.

pub use crate::store::{
    FailedRow, OPERATOR_DISABLED, PluginRow, Replay, RewindReport, WaitingRetry,
};

/// How `plugin list` and `status` say a waiting retry: "retry of event 42 (attempt 3) at <time>".
pub fn describe_retry(r: &WaitingRetry) -> String {
    format!(
        "retry of event {} (attempt {}) at {}",
        r.event_id, r.attempt, r.next_at
    )
}

/// The plugins among `after` that hold a plugin back: those disabled or stopped in `rows`.
pub fn held_back_by<'a>(after: &[String], rows: &'a [PluginRow]) -> Vec<&'a PluginRow> {
    after
        .iter()
        .filter_map(|a| rows.iter().find(|r| &r.name == a))
        .filter(|r| r.state == "disabled" || r.state == "stopped")
        .collect()
}

/// How `plugin list` and `status` say it: "held back: waits for `a` (disabled), `b` (stopped)".
pub fn describe_held_back(by: &[(&str, &str)]) -> String {
    let names: Vec<String> = by.iter().map(|(n, s)| format!("`{n}` ({s})")).collect();
    format!("held back: waits for {}", names.join(", "))
}
