//! The incumbent's state: its id file read (with the restricted unpickler, or as the legacy single
//! integer), turned into where each plugin resumes, and written into the state database.
//!
//! shotgunEvents keeps, per plugin folder ("collection") and plugin, the last event id it processed
//! and a backlog of lower ids it was still waiting for (ids are allocated when a transaction starts
//! and appear when it commits, so the log can show id N+2 before N+1). sgevents records:
//!
//! - `plugin_resume`: each plugin's last id and backlog. The plugin's actor skips every journaled
//!   event at or below that id except the backlog ones, which the incumbent had not processed.
//! - `plugins`: a row per plugin at the journal's head, `stopped`, so that the plugin starts with
//!   what the source journals next.
//! - `source_state`: the source polls after the smallest last id over all plugins, so it fetches
//!   everything any plugin still needs.
//! - `source_gaps`: the backlog ids at or below that position, so the source asks for them again
//!   until its `gap_timeout`, like the incumbent did until its 5-minute expiry.
//!
//! Everything is written in one transaction, with the state directory's lock held, into a
//! database created and migrated exactly as the daemon does it (`store::create_offline`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::pickle::{self, PickleError, Value};
use crate::lock::{LockError, StateLock};
use crate::store::{self, SourcePosition};

/// What went wrong with the state.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StateError {
    #[error("cannot read the id file `{}`: {source}\nhint: pass shotgunEvents' `eventIdFile` (in the [daemon] section of its configuration)", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the id file `{}` is empty\nhint: shotgunEvents leaves it empty when it is killed while writing it, and then cannot start; without state sgevents starts at the newest event: run `sgevents migrate` without `--id-file` for that. Nothing was written", .0.display())]
    Empty(PathBuf),
    #[error("`{}`: {source}\nhint: {}", .path.display(), pickle_hint(.source))]
    Pickle { path: PathBuf, source: PickleError },
    #[error("`{}`: {at}: {problem}\nhint: shotgunEvents writes {{folder: {{plugin: (last id, {{event id: date}})}}}} or a single number; this file is neither. Nothing was written", .path.display())]
    Layout {
        path: PathBuf,
        at: String,
        problem: String,
    },
    #[error("the id file `{}` holds no event id for any plugin found in `legacy_paths` ({found})\nhint: check [plugins] paths in the old configuration; without state sgevents starts at the newest event: run `sgevents migrate` without `--id-file` for that. Nothing was written", .path.display())]
    NothingToResume { path: PathBuf, found: String },
    #[error("another sgevents{} is using the state directory `{}`\nhint: stop the daemon first (`systemctl stop sgevents`, or Ctrl-C), then migrate; nothing was written", .pid.map(|p| format!(" (pid {p})")).unwrap_or_default(), .dir.display())]
    DaemonRunning { dir: PathBuf, pid: Option<u32> },
    #[error("{0}")]
    Lock(LockError),
    #[error("{0}")]
    Store(#[from] store::StoreError),
    #[error("the state database `{}` is already in use: it holds {events} journaled events and {plugins} plugin rows\nhint: migrate into a new state directory (`--state-dir`), or pass `--force` to overwrite the migrated plugins' rows; nothing was written", .path.display())]
    InUse {
        path: PathBuf,
        events: i64,
        plugins: i64,
    },
    #[error("the state database `{}` follows `{location}`, but the old configuration names `{site}`\nhint: migrate into a new state directory (`--state-dir`); nothing was written", .path.display())]
    OtherSite {
        path: PathBuf,
        location: String,
        site: String,
    },
}

fn pickle_hint(e: &PickleError) -> &'static str {
    match e {
        PickleError::RunsCode { .. } => {
            "shotgunEvents' id file holds only dicts, tuples, numbers, strings and dates; this one was not written by it, or was tampered with: find out where it came from. Nothing was run and nothing was written"
        }
        PickleError::Invalid { .. } | PickleError::TooLarge { .. } => {
            "the file is damaged or is not shotgunEvents' id file; without state sgevents starts at the newest event: run `sgevents migrate` without `--id-file` for that. Nothing was written"
        }
    }
}

/// One plugin's saved state in the pickle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Saved {
    /// The plugin folder, as the incumbent's configuration spelled it.
    pub(crate) collection: String,
    /// The plugin's name (its file stem).
    pub(crate) name: String,
    /// The last event id processed; `None` before the first.
    pub(crate) last_event_id: Option<i64>,
    /// Lower ids it was still waiting for.
    pub(crate) backlog: BTreeSet<i64>,
}

/// The id file's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IdFile {
    /// The old layout: one line with the last event id, for every plugin.
    Legacy(i64),
    /// The pickled layout.
    Collections(Vec<Saved>),
}

/// Reads the id file at `path`.
pub(crate) fn read_id_file(path: &Path) -> Result<IdFile, StateError> {
    let meta = std::fs::metadata(path).map_err(|source| StateError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.len() > pickle::MAX_INPUT as u64 {
        return Err(StateError::Pickle {
            path: path.to_path_buf(),
            source: PickleError::TooLarge {
                problem: format!(
                    "the file is {} bytes, larger than any id file ({} bytes)",
                    meta.len(),
                    pickle::MAX_INPUT
                ),
            },
        });
    }
    let data = std::fs::read(path).map_err(|source| StateError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_id_file(path, &data)
}

/// Parses the id file's bytes.
pub(crate) fn parse_id_file(path: &Path, data: &[u8]) -> Result<IdFile, StateError> {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Err(StateError::Empty(path.to_path_buf()));
    }
    // The legacy layout, as the incumbent reads it: the first line, stripped, all digits. No
    // pickle starts with a digit.
    let first = data.split(|&b| b == b'\n').next().unwrap_or_default();
    let first = first.trim_ascii();
    if !first.is_empty() && first.iter().all(u8::is_ascii_digit) {
        let text = std::str::from_utf8(first).expect("digits");
        return match text.parse::<i64>() {
            Ok(id) if id > 0 => Ok(IdFile::Legacy(id)),
            _ => Err(StateError::Layout {
                path: path.to_path_buf(),
                at: "the single event id".into(),
                problem: format!("`{text}` is not an event id"),
            }),
        };
    }
    let value = pickle::load(data).map_err(|source| StateError::Pickle {
        path: path.to_path_buf(),
        source,
    })?;
    layout(path, &value).map(IdFile::Collections)
}

/// `{collection: {plugin: (last id | None, {event id: datetime})}}`, leniently where the incumbent
/// was lenient: a falsy collection or plugin entry is skipped, and a plugin entry may be a bare
/// last id (an older layout `Plugin.setState` still reads).
fn layout(path: &Path, value: &Value) -> Result<Vec<Saved>, StateError> {
    let fail = |at: String, problem: String| StateError::Layout {
        path: path.to_path_buf(),
        at,
        problem,
    };
    let Value::Dict(collections) = value else {
        return Err(fail(
            "the top level".into(),
            format!("expected a dict of plugin folders, found {}", value.kind()),
        ));
    };
    let mut saved = Vec::new();
    for (key, plugins) in collections {
        let Some(collection) = key.as_text() else {
            return Err(fail(
                "the top level".into(),
                format!("a plugin folder is {}, not a string", key.kind()),
            ));
        };
        let plugins = match plugins {
            Value::Dict(p) => p,
            Value::None => continue,
            other => {
                return Err(fail(
                    format!("folder `{collection}`"),
                    format!("expected a dict of plugins, found {}", other.kind()),
                ));
            }
        };
        for (key, state) in plugins {
            let Some(name) = key.as_text() else {
                return Err(fail(
                    format!("folder `{collection}`"),
                    format!("a plugin name is {}, not a string", key.kind()),
                ));
            };
            let at = || format!("folder `{collection}`, plugin `{name}`");
            let (last, backlog) = match state {
                Value::None => continue,
                Value::Tuple(items) if items.len() == 2 => (&items[0], Some(&items[1])),
                v if v.as_int().is_some() => (v, None),
                other => {
                    return Err(fail(
                        at(),
                        format!("expected (last event id, backlog), found {}", other.kind()),
                    ));
                }
            };
            let last_event_id = match last {
                Value::None => None,
                v => match v.as_int() {
                    // The incumbent treats 0 like None (`if self._lastEventId:`).
                    Some(id) if id > 0 => Some(id),
                    Some(_) => None,
                    None => {
                        return Err(fail(
                            at(),
                            format!("the last event id is {}, not a number", v.kind()),
                        ));
                    }
                },
            };
            let mut ids = BTreeSet::new();
            match backlog {
                None | Some(Value::None) => {}
                Some(Value::Dict(entries)) => {
                    for (id, expiry) in entries {
                        let Some(id) = id.as_int().filter(|&id| id > 0) else {
                            return Err(fail(
                                at(),
                                format!("a backlog entry's key is {}, not an event id", id.kind()),
                            ));
                        };
                        if !matches!(expiry, Value::DateTime(_)) {
                            return Err(fail(
                                at(),
                                format!(
                                    "backlog event {id} expires at {}, not a date",
                                    expiry.kind()
                                ),
                            ));
                        }
                        ids.insert(id);
                    }
                }
                Some(other) => {
                    return Err(fail(
                        at(),
                        format!("the backlog is {}, not a dict", other.kind()),
                    ));
                }
            }
            saved.push(Saved {
                collection: collection.clone(),
                name,
                last_event_id,
                backlog: ids,
            });
        }
    }
    Ok(saved)
}

/// How a plugin's position was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum How {
    /// Its own entry in the pickle, in this folder.
    Saved { collection: String },
    /// The legacy single id.
    Legacy,
    /// It had no saved position: it starts after the newest event the incumbent processed, as a
    /// plugin added to the incumbent started at the newest event.
    NoState,
}

/// Where one plugin resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resume {
    pub(crate) plugin: String,
    pub(crate) last_event_id: i64,
    /// Ids below `last_event_id` still to be processed, ascending.
    pub(crate) backlog: Vec<i64>,
    pub(crate) how: How,
}

/// What is to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) resumes: Vec<Resume>,
    /// Saved states that were not used, and why.
    pub(crate) skipped: Vec<String>,
    /// Where the source polls after: the smallest last id.
    pub(crate) source_after: i64,
}

/// Decides where each plugin found in the folders resumes.
///
/// `plugins` are the plugins found (name, file), in order; `configured` are the plugin folders as
/// the old configuration spelled them and as absolute paths (the pickle's keys are the former).
pub(crate) fn plan(
    path: &Path,
    file: &IdFile,
    plugins: &[(String, PathBuf)],
    configured: &[String],
) -> Result<Plan, StateError> {
    let names: Vec<&str> = {
        let mut seen = BTreeSet::new();
        plugins
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| seen.insert(*n))
            .collect()
    };
    let nothing = || StateError::NothingToResume {
        path: path.to_path_buf(),
        found: if names.is_empty() {
            "no *.py file".into()
        } else {
            names.join(", ")
        },
    };
    let mut resumes = Vec::new();
    let mut skipped = Vec::new();
    match file {
        IdFile::Legacy(id) => {
            for name in &names {
                resumes.push(Resume {
                    plugin: (*name).to_owned(),
                    last_event_id: *id,
                    backlog: Vec::new(),
                    how: How::Legacy,
                });
            }
        }
        IdFile::Collections(saved) => {
            let newest = saved.iter().filter_map(|s| s.last_event_id).max();
            let mut by_name: BTreeMap<&str, Vec<&Saved>> = BTreeMap::new();
            for s in saved {
                by_name.entry(&s.name).or_default().push(s);
            }
            for name in &names {
                let entries = by_name.remove(name).unwrap_or_default();
                // Prefer the folders the configuration still names (the incumbent used their
                // entries); among them, or else among all, the highest last id, as the incumbent
                // did for a plugin whose folder had moved.
                let current: Vec<&Saved> = entries
                    .iter()
                    .copied()
                    .filter(|s| configured.contains(&s.collection) && s.last_event_id.is_some())
                    .collect();
                let pool: Vec<&Saved> = if current.is_empty() {
                    entries
                        .iter()
                        .copied()
                        .filter(|s| s.last_event_id.is_some())
                        .collect()
                } else {
                    current
                };
                let best = pool.iter().filter_map(|s| s.last_event_id).max();
                match best {
                    Some(last) => {
                        let winners: Vec<&&Saved> = pool
                            .iter()
                            .filter(|s| s.last_event_id == Some(last))
                            .collect();
                        let backlog: BTreeSet<i64> = winners
                            .iter()
                            .flat_map(|s| s.backlog.iter().copied())
                            .filter(|&id| id < last)
                            .collect();
                        for other in entries
                            .iter()
                            .filter(|s| !winners.iter().any(|w| std::ptr::eq(**w, **s)))
                        {
                            skipped.push(format!(
                                "`{name}` in `{}` (last event {}): `{name}` has a position in another folder too; the one in `{}` was used",
                                other.collection,
                                other.last_event_id.map_or("none".into(), |i| i.to_string()),
                                winners[0].collection
                            ));
                        }
                        resumes.push(Resume {
                            plugin: (*name).to_owned(),
                            last_event_id: last,
                            backlog: backlog.into_iter().collect(),
                            how: How::Saved {
                                collection: winners[0].collection.clone(),
                            },
                        });
                    }
                    None => {
                        let Some(newest) = newest else {
                            return Err(nothing());
                        };
                        resumes.push(Resume {
                            plugin: (*name).to_owned(),
                            last_event_id: newest,
                            backlog: Vec::new(),
                            how: How::NoState,
                        });
                    }
                }
            }
            for (name, entries) in by_name {
                for s in entries {
                    skipped.push(format!(
                        "`{name}` in `{}`: there is no {name}.py in `legacy_paths` (a plugin removed from shotgunEvents keeps its entry)",
                        s.collection
                    ));
                }
            }
        }
    }
    let Some(source_after) = resumes.iter().map(|r| r.last_event_id).min() else {
        return Err(nothing());
    };
    Ok(Plan {
        resumes,
        skipped,
        source_after,
    })
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Written {
    /// The source's high water mark.
    pub(crate) source_after: i64,
    /// Missing ids recorded for the source to ask for again.
    pub(crate) gap_ids: usize,
    /// Whether an existing journal's position was kept (`--force` on a database in use).
    pub(crate) kept_position: bool,
}

/// Writes `plan` into the state database in `state_dir`, for the site `site_url`.
pub(crate) fn write(
    state_dir: &Path,
    site_url: &str,
    plan: &Plan,
    force: bool,
) -> Result<Written, StateError> {
    let _lock = StateLock::acquire(state_dir).map_err(|e| match e {
        LockError::Busy { dir, pid } => StateError::DaemonRunning { dir, pid },
        other => StateError::Lock(other),
    })?;
    let db = store::create_offline(state_dir)?;
    let path = store::db_path(state_dir);
    let (events, plugins) = db.counts()?;
    if (events > 0 || plugins > 0) && !force {
        return Err(StateError::InUse {
            path,
            events,
            plugins,
        });
    }

    // The source: after the smallest last id, unless a journal exists (`--force`), whose high
    // water mark never moves backwards.
    let existing = db.source_position()?;
    let position = match (&existing, events) {
        (Some(saved), 1..) => {
            if saved.kind != "shotgrid" || saved.location != site_url {
                return Err(StateError::OtherSite {
                    path,
                    location: format!("{} {}", saved.kind, saved.location)
                        .trim()
                        .to_owned(),
                    site: site_url.to_owned(),
                });
            }
            saved.offset
        }
        _ => plan.source_after,
    };
    let kept_position = events > 0 && existing.is_some();
    if !kept_position {
        db.save_source(&SourcePosition {
            kind: "shotgrid".into(),
            location: site_url.to_owned(),
            offset: position,
            last_event_id: Some(position),
            ..SourcePosition::default()
        })?;
    }

    // The backlog ids the source would not fetch by itself: those at or below its position, not
    // journaled yet.
    let mut wanted: BTreeSet<i64> = plan
        .resumes
        .iter()
        .flat_map(|r| r.backlog.iter().copied())
        .filter(|&id| id <= position)
        .collect();
    if events > 0 {
        let mut known = Vec::new();
        for &id in &wanted {
            if db.is_journaled(id)? {
                known.push(id);
            }
        }
        for id in known {
            wanted.remove(&id);
        }
        let existing = db.source_gaps()?;
        wanted.retain(|id| {
            !existing
                .iter()
                .any(|g| (g.first_id..=g.last_id).contains(id))
        });
    } else {
        db.clear_gaps()?;
    }
    let gap_ids = wanted.len();
    db.add_gaps(&ranges(&wanted))?;

    // The plugins: at the journal's head (with `--force` on a journal: just before the first
    // journaled event they still need), their resume rows beside.
    let head = db.head()?;
    for r in &plan.resumes {
        let backlog = serde_json::to_string(&r.backlog).expect("a list of numbers");
        let cursor = if events > 0 {
            db.first_needed(r.last_event_id, &backlog)?
                .map_or(head, |seq| seq - 1)
        } else {
            head
        };
        db.put_migrated_plugin(&r.plugin, cursor, r.last_event_id, &backlog)?;
    }
    db.commit()?;
    Ok(Written {
        source_after: position,
        gap_ids,
        kept_position,
    })
}

/// Consecutive ids as inclusive ranges.
fn ranges(ids: &BTreeSet<i64>) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for &id in ids {
        match out.last_mut() {
            Some((_, last)) if *last + 1 == id => *last = id,
            _ => out.push((id, id)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use rusqlite::{Connection, params};

    use super::*;

    fn saved(collection: &str, name: &str, last: Option<i64>, backlog: &[i64]) -> Saved {
        Saved {
            collection: collection.into(),
            name: name.into(),
            last_event_id: last,
            backlog: backlog.iter().copied().collect(),
        }
    }

    fn pickle(expr: &str, protocol: u8) -> Vec<u8> {
        crate::migrate::python3(&format!(
            "import pickle, sys, datetime\nexp = datetime.datetime(2026, 11, 2, 10, 0)\nsys.stdout.buffer.write(pickle.dumps({expr}, protocol={protocol}))"
        ))
    }

    #[test]
    fn both_layouts() {
        let p = Path::new("/x/sged.id");
        for protocol in 0..=5 {
            let data = pickle(
                "{'/a': {'one': (100, {97: exp, 98: exp}), 'two': (None, {}), 'old': 40, 'zero': None}, '/b': {}, '/c': None}",
                protocol,
            );
            assert_eq!(
                parse_id_file(p, &data).unwrap_or_else(|e| panic!("{e}")),
                IdFile::Collections(vec![
                    saved("/a", "one", Some(100), &[97, 98]),
                    saved("/a", "two", None, &[]),
                    saved("/a", "old", Some(40), &[]),
                ]),
                "protocol {protocol}"
            );
        }
        assert_eq!(
            parse_id_file(p, b"12345\n").expect("legacy"),
            IdFile::Legacy(12345)
        );
        assert_eq!(
            parse_id_file(p, b"  77  ").expect("legacy"),
            IdFile::Legacy(77)
        );
        let err = parse_id_file(p, b"\n\n").expect_err("empty").to_string();
        assert!(
            err.starts_with("the id file `/x/sged.id` is empty"),
            "{err}"
        );
        let err = parse_id_file(p, b"0\n").expect_err("zero").to_string();
        assert!(err.contains("`0` is not an event id"), "{err}");
        for (expr, want) in [
            ("[1]", "a list"),
            ("{'/a': [1]}", "a list"),
            (
                "{'/a': {'p': 'x'}}",
                "expected (last event id, backlog), found a string",
            ),
            ("{'/a': {'p': ('x', {})}}", "the last event id is a string"),
            (
                "{'/a': {'p': (5, {3: 'soon'})}}",
                "backlog event 3 expires at a string, not a date",
            ),
            ("{'/a': {'p': (5, (3,))}}", "the backlog is a tuple"),
            ("{1: {}}", "a plugin folder is an integer"),
            ("(1, 2)", "expected a dict of plugin folders, found a tuple"),
        ] {
            let err = parse_id_file(p, &pickle(expr, 4))
                .expect_err(expr)
                .to_string();
            assert!(err.contains(want), "{expr}: {err}");
            assert!(err.contains("\nhint: "), "{err}");
        }
    }

    fn found(names: &[&str]) -> Vec<(String, PathBuf)> {
        names
            .iter()
            .map(|n| (n.to_string(), PathBuf::from(format!("/a/{n}.py"))))
            .collect()
    }

    #[test]
    fn plans() {
        let p = Path::new("sged.id");
        let configured = vec!["/a".to_owned()];
        let file = IdFile::Collections(vec![
            saved("/a", "one", Some(100), &[97, 98, 150]),
            saved("/old", "one", Some(120), &[110]),
            saved("/old", "moved", Some(90), &[80]),
            saved("/other", "moved", Some(95), &[94]),
            saved("/other", "moved2", Some(95), &[93]),
            saved("/a", "fresh", None, &[]),
            saved("/a", "gone", Some(10), &[]),
        ]);
        let plan = plan(
            p,
            &file,
            &found(&["fresh", "moved", "new", "one"]),
            &configured,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let got: Vec<(&str, i64, &[i64], &How)> = plan
            .resumes
            .iter()
            .map(|r| (r.plugin.as_str(), r.last_event_id, &r.backlog[..], &r.how))
            .collect();
        assert_eq!(
            got,
            vec![
                ("fresh", 120, &[][..], &How::NoState),
                (
                    "moved",
                    95,
                    &[94][..],
                    &How::Saved {
                        collection: "/other".into()
                    }
                ),
                ("new", 120, &[][..], &How::NoState),
                // The configured folder's entry wins over a higher one elsewhere, as in the incumbent.
                (
                    "one",
                    100,
                    &[97, 98][..],
                    &How::Saved {
                        collection: "/a".into()
                    }
                ),
            ]
        );
        assert_eq!(plan.source_after, 95);
        let skipped = plan.skipped.join("\n");
        assert!(
            skipped.contains("`gone` in `/a`: there is no gone.py"),
            "{skipped}"
        );
        assert!(skipped.contains("`moved2` in `/other`"), "{skipped}");
        assert!(
            skipped.contains("`one` in `/old` (last event 120)"),
            "{skipped}"
        );

        let plan = super::plan(
            p,
            &IdFile::Legacy(500),
            &found(&["b", "a", "b"]),
            &configured,
        )
        .expect("legacy");
        assert_eq!(
            plan.resumes
                .iter()
                .map(|r| (r.plugin.as_str(), r.last_event_id))
                .collect::<Vec<_>>(),
            [("b", 500), ("a", 500)]
        );
        let err = super::plan(p, &IdFile::Legacy(500), &[], &configured)
            .expect_err("no plugins")
            .to_string();
        assert!(err.contains("(no *.py file)"), "{err}");
        let err = super::plan(
            p,
            &IdFile::Collections(vec![saved("/a", "x", None, &[])]),
            &found(&["x"]),
            &configured,
        )
        .expect_err("no ids")
        .to_string();
        assert!(
            err.contains("holds no event id for any plugin found in `legacy_paths` (x)"),
            "{err}"
        );
    }

    #[test]
    fn consecutive_ids_become_ranges() {
        let ids: BTreeSet<i64> = [1, 2, 3, 5, 7, 8].into_iter().collect();
        assert_eq!(ranges(&ids), [(1, 3), (5, 5), (7, 8)]);
        assert!(ranges(&BTreeSet::new()).is_empty());
    }

    fn resume(plugin: &str, last: i64, backlog: &[i64]) -> Resume {
        Resume {
            plugin: plugin.into(),
            last_event_id: last,
            backlog: backlog.to_vec(),
            how: How::Legacy,
        }
    }

    #[test]
    fn writes_rows_in_one_transaction_and_refuses_a_database_in_use() {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = dir.path().join("var");
        let plan = Plan {
            resumes: vec![
                resume("a", 100, &[90, 91, 92, 99]),
                resume("b", 95, &[93, 94]),
            ],
            skipped: vec![],
            source_after: 95,
        };
        let written =
            write(&state, "https://s.example", &plan, false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            written,
            Written {
                source_after: 95,
                gap_ids: 5,
                kept_position: false
            }
        );
        let reader = store::open_read_only(&state).expect("a complete database");
        let db = reader.connection();
        let gaps: Vec<(i64, i64)> = db
            .prepare("SELECT first_id, last_id FROM source_gaps ORDER BY first_id")
            .expect("query")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(
            gaps,
            [(90, 94)],
            "99 is above the high water mark: polled normally"
        );
        let source: (String, String, i64, i64) = db
            .query_row(
                "SELECT kind, location, position, last_event_id FROM source_state",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .expect("source row");
        assert_eq!(
            source,
            ("shotgrid".into(), "https://s.example".into(), 95, 95)
        );
        let rows: Vec<(String, String, i64, i64, String)> = db
            .prepare("SELECT p.name, p.state, p.cursor, r.last_event_id, r.backlog FROM plugins p JOIN plugin_resume r ON r.plugin = p.name ORDER BY p.name")
            .expect("query")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(
            rows,
            [
                ("a".into(), "stopped".into(), 0, 100, "[90,91,92,99]".into()),
                ("b".into(), "stopped".into(), 0, 95, "[93,94]".into()),
            ]
        );
        drop(reader);

        let err = write(&state, "https://s.example", &plan, false)
            .expect_err("in use")
            .to_string();
        assert!(
            err.contains("holds 0 journaled events and 2 plugin rows"),
            "{err}"
        );
        assert!(
            err.contains("hint: migrate into a new state directory"),
            "{err}"
        );

        // A daemon holding the lock: refused before anything is opened.
        let held = StateLock::acquire(&state).expect("lock");
        let err = write(&state, "https://s.example", &plan, true)
            .expect_err("locked")
            .to_string();
        assert!(err.contains("hint: stop the daemon first"), "{err}");
        drop(held);

        // --force on a journal: the high water mark stays, plugins start at the first event they
        // still need, journaled backlog ids are not gaps.
        let conn = Connection::open(store::db_path(&state)).expect("open");
        for (id, seq) in [(92, 1), (96, 2), (101, 3)] {
            conn.execute(
                "INSERT INTO events (seq, event_id, event_type, journaled_at, body) VALUES (?2, ?1, 'Shotgun_Shot_New', 'now', '{}')",
                params![id, seq],
            )
            .expect("insert");
        }
        conn.execute(
            "UPDATE source_state SET position = 101, last_event_id = 101",
            [],
        )
        .expect("update");
        conn.execute("DELETE FROM source_gaps WHERE first_id = 90", [])
            .expect("delete");
        conn.execute("INSERT INTO source_gaps VALUES (93, 93, 'then')", [])
            .expect("insert");
        drop(conn);
        let written =
            write(&state, "https://s.example", &plan, true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            written,
            Written {
                source_after: 101,
                gap_ids: 4,
                kept_position: true
            },
            "90, 91, 94 and 99 (92 is journaled, 93 already a gap)"
        );
        let reader = store::open_read_only(&state).expect("db");
        let db = reader.connection();
        let cursors: Vec<(String, i64)> = db
            .prepare("SELECT name, cursor FROM plugins ORDER BY name")
            .expect("query")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(
            cursors,
            [("a".into(), 0), ("b".into(), 1)],
            "a needs 92 (seq 1); b needs 96 (seq 2)"
        );
        drop(reader);
        let err = write(&state, "https://other.example", &plan, true)
            .expect_err("another site")
            .to_string();
        assert!(err.contains("follows `shotgrid https://s.example`, but the old configuration names `https://other.example`"), "{err}");
    }
}
