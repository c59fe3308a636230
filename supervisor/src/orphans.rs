//! Plugins that outlived a crashed daemon.
//!
//! A plugin busy with an event when the daemon is `kill -9`-ed would finish it while the restarted
//! daemon hands the same event to a new instance: the same work twice, at the same time. Two
//! defences: the launcher gives each child a parent-death signal (it dies with the daemon), and,
//! for whatever that cannot reach (processes the plugin started, in its process group), the store
//! records each plugin's process group and its leader's start time; at start, before anything is
//! delivered, the daemon kills every recorded group that still runs.
//!
//! A pid can be reused by an unrelated process, so a group is killed only when its leader still
//! runs with the recorded start time, or, once the leader is gone, only its members that started
//! after the leader did. Nothing is killed after a reboot (the boot id differs), since start times
//! then count from another boot. Groups are recorded only while a plugin runs (a clean stop clears
//! them), so only a crash of the daemon leaves one to look for.

use std::path::Path;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// A process group recorded for a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The plugin.
    pub plugin: String,
    /// Its process group (its leader's pid).
    pub pgid: i32,
    /// The leader's start time, in clock ticks after boot.
    pub start_ticks: u64,
}

/// What `/proc/PID/stat` says of a process: its parent, process group and start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    ppid: i32,
    pgrp: i32,
    start_ticks: u64,
}

/// Parses the fields after the command name (which may hold spaces and parentheses, so the text
/// is cut after its last `)`).
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ppid(4) pgrp(5) ... starttime(22): indexes 0, 1, 2 and 19.
    Some(Stat {
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The start time of process `pid` (clock ticks after boot), if it runs.
pub fn start_ticks(pid: u32) -> Option<u64> {
    stat(i32::try_from(pid).ok()?).map(|s| s.start_ticks)
}

/// This boot's id (Linux), to tell start times of this boot from those of an earlier one.
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
}

/// The processes of group `pgid` to kill, given its recorded leader start time, from a listing of
/// `(pid, stat)`.
fn to_kill(pgid: i32, start_ticks: u64, procs: &[(i32, Stat)]) -> Vec<i32> {
    let members: Vec<&(i32, Stat)> = procs.iter().filter(|(_, s)| s.pgrp == pgid).collect();
    match members.iter().find(|(pid, _)| *pid == pgid) {
        // The leader runs: the whole group, if it is the recorded one.
        Some((_, leader)) if leader.start_ticks == start_ticks => {
            members.iter().map(|(pid, _)| *pid).collect()
        }
        // Another process has the pid: not ours.
        Some(_) => Vec::new(),
        // The leader is gone (killed by its parent-death signal): the members that started
        // after it, which are what it left behind.
        None => members
            .iter()
            .filter(|(_, s)| s.start_ticks >= start_ticks)
            .map(|(pid, _)| *pid)
            .collect(),
    }
}

/// Every process now running, with its stat.
fn processes() -> Vec<(i32, Stat)> {
    let Ok(dir) = std::fs::read_dir(Path::new("/proc")) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, stat(pid)?)))
        .collect()
}

/// Kills what is left of the recorded plugin process groups (see the module docs); returns, per
/// plugin, how many processes were killed. `recorded_boot` is the boot id the previous daemon
/// recorded.
pub fn kill_leftovers(recorded: &[Recorded], recorded_boot: Option<&str>) -> Vec<(String, usize)> {
    if recorded.is_empty() || recorded_boot.is_none() || recorded_boot != boot_id().as_deref() {
        return Vec::new();
    }
    let procs = processes();
    let me = std::process::id() as i32;
    let mut killed = Vec::new();
    for r in recorded {
        let pids: Vec<i32> = to_kill(r.pgid, r.start_ticks, &procs)
            .into_iter()
            .filter(|&p| p != me)
            .collect();
        if pids.is_empty() {
            continue;
        }
        if pids.contains(&r.pgid) {
            let _ = killpg(Pid::from_raw(r.pgid), Signal::SIGKILL);
        } else {
            for &pid in &pids {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        tracing::warn!(
            plugin = %r.plugin,
            pgid = r.pgid,
            "plugin `{}` outlived the previous daemon (process group {}, {} process{}); killed it before delivering anything, so that no event is handled twice at once",
            r.plugin,
            r.pgid,
            pids.len(),
            if pids.len() == 1 { "" } else { "es" }
        );
        killed.push((r.plugin.clone(), pids.len()));
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(ppid: i32, pgrp: i32, start_ticks: u64) -> Stat {
        Stat {
            ppid,
            pgrp,
            start_ticks,
        }
    }

    #[test]
    fn stat_lines_with_odd_names() {
        let line = "4242 (my (odd) plugin) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_stat(line), Some(st(1, 4242, 987654)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1"), None);
    }

    #[test]
    fn only_the_recorded_group_is_killed() {
        let procs = [
            (100, st(1, 100, 500)),   // the recorded leader, orphaned
            (101, st(100, 100, 510)), // its child
            (200, st(1, 200, 900)),   // someone else
        ];
        assert_eq!(to_kill(100, 500, &procs), [100, 101]);
        assert!(
            to_kill(100, 499, &procs).is_empty(),
            "a leader with another start time is a reused pid: left alone"
        );
        assert!(to_kill(300, 500, &procs).is_empty());
    }

    #[test]
    fn without_its_leader_only_orphans_started_after_it_are_killed() {
        let procs = [
            (101, st(1, 100, 510)),   // orphaned member started after the leader
            (102, st(101, 100, 520)), // its child
            (103, st(1, 100, 400)),   // started before the leader: not ours
        ];
        assert_eq!(to_kill(100, 500, &procs), [101, 102]);
    }

    #[test]
    fn this_process_has_a_start_time_and_the_boot_an_id() {
        assert!(start_ticks(std::process::id()).is_some());
        assert!(boot_id().is_some_and(|b| !b.is_empty()));
        assert!(
            kill_leftovers(
                &[Recorded {
                    plugin: "x".into(),
                    pgid: 1,
                    start_ticks: 0
                }],
                Some("another boot")
            )
            .is_empty(),
            "nothing is killed after a reboot"
        );
    }
}
