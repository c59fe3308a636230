//! `sgevents migrate`: moves a studio from shotgunEvents to sgevents in one step.
//!
//! ```text
//!  shotgunEventDaemon.conf ──conf.rs──▶ sgevents.toml (commented; what has no equivalent listed)
//!  eventIdFile ──pickle.rs──▶ state.rs ──▶ <state_dir>/state.db (plugin_resume, plugins,
//!   (pickle, or one integer)                source_state, source_gaps)
//! ```
//!
//! The old configuration is read with `configparser`'s rules (`conf`); secrets stay in the
//! environment (a `%(VAR)s` reference becomes `*_env = "VAR"`; a literal key is never copied). The
//! old state is read by a restricted unpickler that refuses anything but plain data (`pickle`),
//! so a tampered id file cannot run code. Where each plugin resumes is decided and written in one
//! transaction, under the state directory's lock (`state`).
//!
//! Nothing is written unless everything succeeds: the TOML goes to a temporary file, the database
//! transaction commits, then the TOML is renamed into place.

pub(crate) mod conf;
pub(crate) mod pickle;
pub(crate) mod state;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use state::How;

/// What `sgevents migrate` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The shotgunEvents configuration (`shotgunEventDaemon.conf`).
    pub conf: PathBuf,
    /// shotgunEvents' id file (its `eventIdFile`), to resume where it stopped.
    pub id_file: Option<PathBuf>,
    /// Where the sgevents configuration is written.
    pub out: PathBuf,
    /// The state directory; `var` next to `out` when `None`.
    pub state_dir: Option<PathBuf>,
    /// Replace an existing `out`, and write into a state database that is already in use.
    pub force: bool,
}

/// A migration that could not be done; nothing was written.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct MigrateError {
    message: String,
}

impl MigrateError {
    fn new(message: impl Into<String>) -> MigrateError {
        MigrateError {
            message: message.into(),
        }
    }
}

impl From<conf::IniError> for MigrateError {
    fn from(e: conf::IniError) -> MigrateError {
        MigrateError::new(e.to_string())
    }
}

impl From<state::StateError> for MigrateError {
    fn from(e: state::StateError) -> MigrateError {
        MigrateError::new(e.to_string())
    }
}

/// What a migration did, for the operator.
#[derive(Debug, Clone)]
pub struct Report {
    conf: PathBuf,
    out: PathBuf,
    todo: Vec<String>,
    dropped: Vec<String>,
    info: Vec<String>,
    state: Option<StateReport>,
}

#[derive(Debug, Clone)]
struct StateReport {
    id_file: PathBuf,
    db: PathBuf,
    legacy: bool,
    plugins: Vec<(String, i64, usize, How)>,
    source_after: i64,
    gap_ids: usize,
    kept_position: bool,
    skipped: Vec<String>,
}

impl Report {
    /// The report as text: what was written, where each plugin resumes, what to do next, and what
    /// has no equivalent.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "wrote {} from {}",
            self.out.display(),
            self.conf.display()
        );
        if let Some(st) = &self.state {
            let _ = writeln!(
                s,
                "\nstate: {} from {}{}",
                st.db.display(),
                st.id_file.display(),
                if st.legacy {
                    " (the legacy one-number layout: one position for every plugin)"
                } else {
                    ""
                }
            );
            for (name, last, backlog, how) in &st.plugins {
                let _ = write!(
                    s,
                    "  {name} resumes after event {last} ({backlog} backlog id{})",
                    if *backlog == 1 { "" } else { "s" }
                );
                if *how == How::NoState {
                    s.push_str(": it had no saved position, so it starts after the newest event shotgunEvents processed");
                }
                s.push('\n');
            }
            if st.kept_position {
                let _ = writeln!(
                    s,
                    "  the source keeps its position (after event {}) and asks again for {} backlog id{} it had not journaled",
                    st.source_after,
                    st.gap_ids,
                    if st.gap_ids == 1 { "" } else { "s" }
                );
            } else {
                let _ = writeln!(
                    s,
                    "  the source starts after event {} and asks again for {} id{} shotgunEvents was still waiting for",
                    st.source_after,
                    st.gap_ids,
                    if st.gap_ids == 1 { "" } else { "s" }
                );
            }
            for skipped in &st.skipped {
                let _ = writeln!(s, "  not used: {skipped}");
            }
        }
        for (title, lines) in [
            ("to do before starting sgevents", &self.todo),
            (
                "not carried over (no equivalent in sgevents)",
                &self.dropped,
            ),
            ("notes", &self.info),
        ] {
            if lines.is_empty() {
                continue;
            }
            let _ = writeln!(s, "\n{title}:");
            for line in lines {
                let _ = writeln!(s, "  - {line}");
            }
        }
        let _ = writeln!(
            s,
            "\nnext: sgevents -c {} check, then sgevents -c {} run",
            self.out.display(),
            self.out.display()
        );
        s
    }
}

/// Converts the configuration `options.conf` into `options.out` and, with `options.id_file`,
/// records where each plugin resumes in the state database. Reads the process's environment for
/// the values the old configuration took from it (`%(VAR)s`), except secrets, which stay
/// references.
pub fn run(options: &Options) -> Result<Report, MigrateError> {
    let bytes = std::fs::read(&options.conf).map_err(|e| {
        MigrateError::new(format!(
            "cannot read the shotgunEvents configuration `{}`: {e}\nhint: pass its path with `--conf` (shotgunEvents read shotgunEventDaemon.conf next to its script, or in /etc)",
            options.conf.display()
        ))
    })?;
    // Python read it in the locale's encoding: UTF-8, or else most likely Latin-1. A byte order
    // mark (Windows editors) is skipped.
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes);
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    };
    let ini = conf::parse(&options.conf, &text)?;
    let cwd = std::env::current_dir().map_err(|e| {
        MigrateError::new(format!(
            "cannot read the working directory: {e}\nhint: run sgevents migrate from an existing directory"
        ))
    })?;
    let out = cwd.join(&options.out);
    if out.exists() && !options.force {
        return Err(MigrateError::new(format!(
            "`{}` already exists\nhint: choose another `--out`, or pass `--force` to replace it",
            out.display()
        )));
    }
    let out_dir = out.parent().unwrap_or(Path::new("/")).to_path_buf();
    let (state_dir, state_dir_text) = match &options.state_dir {
        Some(dir) => {
            let dir = cwd.join(dir);
            let text = dir.display().to_string();
            (dir, text)
        }
        None => (out_dir.join("var"), "var".to_owned()),
    };
    let env = |name: &str| {
        std::env::var(name).ok().or_else(|| {
            // configparser lowercases the environment's names; so did the old file's lookups.
            std::env::vars()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
    };
    let mut converted = conf::convert(
        &ini,
        &conf::Context {
            state_dir: state_dir_text,
            cwd: cwd.clone(),
            env: &env,
            id_file: options.id_file.clone(),
        },
    )?;
    plugin_env_tables(&mut converted);

    // Everything about the state is read and decided before anything is written.
    let plan = match &options.id_file {
        None => None,
        Some(id_file) => {
            let id_file = cwd.join(id_file);
            let Some(site) = converted.site_url.clone() else {
                return Err(MigrateError::new(format!(
                    "cannot record where the old daemon stopped without the site's URL, which [shotgun] server in `{}` does not give here\nhint: export the variable it reads (see the report of a run without `--id-file`), or write the URL in the old file",
                    options.conf.display()
                )));
            };
            let file = state::read_id_file(&id_file)?;
            let plugins = legacy_plugins(&converted.legacy_paths)?;
            let mut configured = converted.legacy_paths_as_written.clone();
            configured.extend(
                converted
                    .legacy_paths
                    .iter()
                    .map(|p| p.display().to_string()),
            );
            let plan = state::plan(&id_file, &file, &plugins, &configured)?;
            Some((
                id_file,
                site,
                matches!(file, state::IdFile::Legacy(_)),
                plan,
            ))
        }
    };

    let tmp = out.with_file_name(format!(
        ".{}.migrate-{}",
        out.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    std::fs::write(&tmp, &converted.toml).map_err(|e| {
        MigrateError::new(format!(
            "cannot write `{}`: {e}\nhint: check that its folder exists and that you may write in it; nothing was written",
            out.display()
        ))
    })?;
    let state = match plan {
        None => None,
        Some((id_file, site, legacy, plan)) => {
            let written = match state::write(&state_dir, &site, &plan, options.force) {
                Ok(w) => w,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e.into());
                }
            };
            Some(StateReport {
                id_file,
                db: crate::store::db_path(&state_dir),
                legacy,
                plugins: plan
                    .resumes
                    .iter()
                    .map(|r| {
                        (
                            r.plugin.clone(),
                            r.last_event_id,
                            r.backlog.len(),
                            r.how.clone(),
                        )
                    })
                    .collect(),
                source_after: written.source_after,
                gap_ids: written.gap_ids,
                kept_position: written.kept_position,
                skipped: plan.skipped,
            })
        }
    };
    std::fs::rename(&tmp, &out).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        MigrateError::new(format!(
            "cannot write `{}`: {e}\nhint: check that you may write in its folder{}",
            out.display(),
            if state.is_some() {
                "; the state was recorded: run again with `--force` to write the configuration"
            } else {
                ""
            }
        ))
    })?;
    Ok(Report {
        conf: options.conf.clone(),
        out,
        todo: converted.todo,
        dropped: converted.dropped,
        info: converted.info,
        state,
    })
}

/// Plugins read their own variables (`os.environ["SGDAEMON_LOGARGS_KEY"]`), which sgevents no
/// longer passes by default: each plugin file that names some gets a `[plugin.NAME]` table with an
/// `inherit_env` line, and a comment for those the daemon withholds (a `*_env` key names them).
fn plugin_env_tables(converted: &mut conf::Converted) {
    let Ok(plugins) = legacy_plugins(&converted.legacy_paths) else {
        // A missing folder is reported by the conversion itself.
        return;
    };
    let secrets = secret_vars(&converted.toml);
    let mut tables = String::new();
    for (name, path) in plugins {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let names = env_names(&String::from_utf8_lossy(&bytes));
        if names.is_empty() {
            continue;
        }
        let (withheld, passed): (Vec<String>, Vec<String>) =
            names.into_iter().partition(|n| secrets.contains(n));
        let _ = writeln!(
            tables,
            "
# {} reads these environment variables (os.environ / os.getenv); sgevents passes a plugin
# only what `inherit_env` (or `env`) names",
            path.display()
        );
        for var in &withheld {
            let _ = writeln!(
                tables,
                "# `{var}` holds a key named by a `*_env` setting: it is withheld from every plugin; give
# this plugin its own script_name/script_key_env and read SGEVENTS_SCRIPT_KEY instead"
            );
            converted.todo.push(format!(
                "plugin `{name}` reads ${var}, a key the daemon withholds from plugins: give it its own `script_name`/`script_key_env` (see sdk-python/README.md)"
            ));
        }
        let quoted: Vec<String> = passed.iter().map(|v| format!("{v:?}")).collect();
        let table = format!(
            "[plugin.{name}]
inherit_env = [{}]",
            quoted.join(", ")
        );
        if passed.is_empty() {
            let _ = writeln!(tables, "# [plugin.{name}]");
        } else {
            let _ = writeln!(tables, "{table}");
            converted.info.push(format!(
                "plugin `{name}` gets {} from the daemon's environment (`inherit_env`): export {} there",
                passed.join(", "),
                if passed.len() == 1 { "it" } else { "them" }
            ));
        }
    }
    converted.toml.push_str(&tables);
}

/// The variables the `*_env` keys of the converted configuration name.
fn secret_vars(toml_text: &str) -> std::collections::BTreeSet<String> {
    fn visit(value: &toml::Value, out: &mut std::collections::BTreeSet<String>) {
        if let toml::Value::Table(t) = value {
            for (k, v) in t {
                match v {
                    toml::Value::String(s) if k.ends_with("_env") => {
                        out.insert(s.clone());
                    }
                    _ => visit(v, out),
                }
            }
        }
    }
    let mut out = std::collections::BTreeSet::new();
    if let Ok(table) = toml_text.parse::<toml::Table>() {
        visit(&toml::Value::Table(table), &mut out);
    }
    out
}

/// The names a Python file reads with `os.environ[...]`, `os.environ.get(...)`, `os.getenv(...)`
/// (or `environ`/`getenv` imported from `os`), given as string literals; once each.
fn env_names(source: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for token in ["environ[", "environ.get(", "getenv(", "environ.setdefault("] {
        let mut rest = source;
        while let Some(at) = rest.find(token) {
            let after = &rest[at + token.len()..];
            rest = after;
            let after = after.trim_start();
            let Some(quote) = after.chars().next().filter(|c| *c == '"' || *c == '\'') else {
                continue;
            };
            let body = &after[1..];
            let Some(end) = body.find(quote) else {
                continue;
            };
            let name = &body[..end];
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if valid && !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        }
    }
    names
}

/// The shotgunEvents plugins in `folders`, found as the daemon finds them
/// ([`crate::config::discover_legacy`]), with their names.
fn legacy_plugins(folders: &[PathBuf]) -> Result<Vec<(String, PathBuf)>, MigrateError> {
    let files = crate::config::discover_legacy(folders).map_err(|(folder, e)| {
        MigrateError::new(format!(
            "cannot read the plugin folder `{}`: {e}\nhint: migrate on the machine that has the plugins, or correct [plugins] paths in the old configuration; nothing was written",
            folder.display()
        ))
    })?;
    Ok(files
        .into_iter()
        .map(|p| (crate::config::plugin_name(&p), p))
        .collect())
}

/// Runs python3 with `script` and returns its stdout; the tests make real pickles with it.
#[cfg(test)]
pub(crate) fn python3(script: &str) -> Vec<u8> {
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .output()
        .expect("python3 runs (the tests need it on the PATH)");
    assert!(
        out.status.success(),
        "python3 failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_names_in_a_plugin_file() {
        let source = "import os\nfrom os import getenv\nKEY = os.environ[\"SGDAEMON_LOGARGS_KEY\"]\n\
                      mode = os.environ.get('LOGARGS_MODE', 'x')\nhost = getenv( \"SMTP_HOST\")\n\
                      again = os.getenv('LOGARGS_MODE')\nbad = os.environ[name]\n";
        assert_eq!(
            env_names(source),
            ["SGDAEMON_LOGARGS_KEY", "LOGARGS_MODE", "SMTP_HOST"]
        );
    }

    #[test]
    fn legacy_plugins_are_python_files_in_name_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(a.join("sub.py")).expect("mkdir");
        std::fs::create_dir_all(&b).expect("mkdir");
        for f in [
            "zeta.py",
            "Alpha.py",
            ".hidden.py",
            "notes.txt",
            ".py",
            "helper.pyc",
        ] {
            std::fs::write(a.join(f), "").expect("write");
        }
        std::fs::write(a.join("sub.py").join("deep.py"), "").expect("write");
        std::fs::write(b.join("aardvark.py"), "").expect("write");
        let found = legacy_plugins(&[a.clone(), b.clone(), a.clone()]).expect("readable");
        let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Alpha", "zeta", "aardvark"]);
        let err = legacy_plugins(&[dir.path().join("nope")])
            .expect_err("missing")
            .to_string();
        assert!(err.contains("cannot read the plugin folder"), "{err}");
        assert!(err.contains("\nhint: "), "{err}");
    }
}
