//! `sgevents new plugin NAME --lang python|rust|sh`: writes a working plugin in a folder of its
//! own, with one subscription (a Task's status change), a test, and the `[plugin.NAME]` lines to
//! add to the configuration.
//!
//! - Python: `NAME/<module>.py` with the Python SDK, and `NAME/test_<module>.py`, which runs it in
//!   memory with `sgevents.testing` (`python3 -m unittest` in the folder).
//! - Rust: a crate of its own (`NAME/Cargo.toml`, `NAME/src/main.rs`) with the Rust SDK, tested
//!   with `sgevents_sdk::testing` (`cargo test` in the folder).
//! - sh: `NAME/<module>.sh`, written from the protocol with no SDK, and `NAME/test.sh`, a transcript
//!   test: it plays the daemon's lines to the plugin and compares its answers line by line.
//!
//! The folder goes in `--dir` (default: the working directory) and is never overwritten. The SDKs
//! are found next to the sources this binary was built from; when they are not there, the lines
//! printed say what to point at.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The languages a plugin can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Python, with the Python SDK.
    Python,
    /// Rust, with the Rust SDK.
    Rust,
    /// POSIX sh, with no SDK.
    Sh,
}

/// Why the plugin was not written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name cannot be a plugin's.
    #[error(
        "`{0}` cannot be a plugin's name\nhint: use letters, digits, `_` and `-`, starting with a letter"
    )]
    BadName(String),
    /// The folder exists.
    #[error("`{0}` already exists\nhint: choose another name or `--dir`, or remove it first")]
    Exists(PathBuf),
    /// Writing failed.
    #[error("cannot write `{path}`: {error}\nhint: check that `--dir` exists and is writable")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

/// What was written, and what to add to the configuration.
#[derive(Debug, Clone)]
pub struct Scaffold {
    /// The plugin's folder.
    pub folder: PathBuf,
    /// The files written, in the folder.
    pub files: Vec<PathBuf>,
    /// The `[plugin.NAME]` lines.
    pub config: String,
    /// How to run its test.
    pub test: String,
}

/// The repository this binary was built from, where the SDKs are.
fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Writes plugin `name` in `dir/name/`. `config_dir` is the folder of the configuration file (where
/// plugins run), for the command's relative path.
pub fn new_plugin(
    name: &str,
    lang: Lang,
    dir: &Path,
    config_dir: Option<&Path>,
) -> Result<Scaffold, ScaffoldError> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Err(ScaffoldError::BadName(name.to_owned()));
    }
    let module = name.replace('-', "_");
    let folder = dir.join(name);
    if folder.exists() {
        return Err(ScaffoldError::Exists(folder));
    }
    let files: Vec<(String, String, bool)> = match lang {
        Lang::Python => vec![
            (
                format!("{module}.py"),
                PYTHON_PLUGIN.replace("NAME", name),
                true,
            ),
            (
                format!("test_{module}.py"),
                PYTHON_TEST.replace("MODULE", &module).replace("NAME", name),
                false,
            ),
        ],
        Lang::Rust => {
            let sdk = source_root().join("sdk-rust");
            let dependency = if sdk.join("Cargo.toml").is_file() {
                format!(
                    "sgevents-sdk = {{ path = {:?} }}",
                    sdk.display().to_string()
                )
            } else {
                "# The Rust SDK: the `sdk-rust` folder of the sgevents sources.\nsgevents-sdk = { path = \"/path/to/sgevents/sdk-rust\" }".to_owned()
            };
            vec![
                (
                    "Cargo.toml".into(),
                    RUST_CARGO
                        .replace("NAME", name)
                        .replace("DEPENDENCY", &dependency),
                    false,
                ),
                ("src/main.rs".into(), RUST_MAIN.replace("NAME", name), false),
            ]
        }
        Lang::Sh => vec![
            (
                format!("{module}.sh"),
                SH_PLUGIN.replace("NAME", name),
                true,
            ),
            (
                "test.sh".into(),
                SH_TEST.replace("MODULE", &module).replace("NAME", name),
                true,
            ),
        ],
    };
    let mut written = Vec::new();
    for (file, text, executable) in files {
        let path = folder.join(&file);
        write(&path, &text, executable)?;
        written.push(PathBuf::from(file));
    }
    // The command, relative to where plugins run when the folder is under it.
    let absolute = std::fs::canonicalize(&folder).unwrap_or_else(|_| folder.clone());
    let shown = config_dir
        .and_then(|c| std::fs::canonicalize(c).ok())
        .and_then(|c| absolute.strip_prefix(&c).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| absolute.clone());
    let at = |file: &str| shown.join(file).display().to_string();
    let mut config = format!("[plugin.{name}]\n");
    let test;
    match lang {
        Lang::Python => {
            let _ = writeln!(
                config,
                "command = [\"python3\", {:?}]",
                at(&format!("{module}.py"))
            );
            let sdk = source_root().join("sdk-python/src");
            if sdk.join("sgevents").is_dir() {
                let _ = writeln!(
                    config,
                    "env = {{ PYTHONPATH = {:?} }}   # the Python SDK (or `pip install` it and drop this line)",
                    sdk.display().to_string()
                );
                test = format!(
                    "cd {} && PYTHONPATH={} python3 -m unittest",
                    absolute.display(),
                    sdk.display()
                );
            } else {
                test = format!(
                    "cd {} && python3 -m unittest   # with the Python SDK installed (`pip install ./sdk-python`)",
                    absolute.display()
                );
            }
        }
        Lang::Rust => {
            let _ = writeln!(
                config,
                "command = [{:?}]   # after `cargo build --release` in {}",
                at(&format!("target/release/{name}")),
                absolute.display()
            );
            test = format!("cd {} && cargo test", absolute.display());
        }
        Lang::Sh => {
            let _ = writeln!(
                config,
                "command = [\"sh\", {:?}]",
                at(&format!("{module}.sh"))
            );
            test = format!("sh {}", absolute.join("test.sh").display());
        }
    }
    let _ = writeln!(config, "config = {{}}   # handed to the plugin in `hello`");
    Ok(Scaffold {
        folder: absolute,
        files: written,
        config,
        test,
    })
}

impl Scaffold {
    /// What `new plugin` prints.
    pub fn render(&self, name: &str) -> String {
        let mut out = format!("wrote plugin `{name}` in {}:\n", self.folder.display());
        for f in &self.files {
            let _ = writeln!(out, "  {}", f.display());
        }
        let _ = write!(
            out,
            "\nadd to the configuration (paths are relative to its folder, where plugins run):\n\n{}\n\
             test it:      {}\n\
             try it:       sgevents deliver {name} --last 5   (journaled events; or --event-file FILE)\n",
            self.config, self.test
        );
        out
    }
}

fn write(path: &Path, text: &str, executable: bool) -> Result<(), ScaffoldError> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |error| ScaffoldError::Write {
        path: path.to_path_buf(),
        error,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    std::fs::write(path, text).map_err(fail)?;
    if executable {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(fail)?;
    }
    Ok(())
}

const PYTHON_PLUGIN: &str = r#"#!/usr/bin/env python3
"""NAME: an sgevents plugin, written by `sgevents new plugin`.

It logs every status change of a Task. Change the subscription (`@plugin.on`) and the callback to
your needs. A callback that returns acknowledges the event; an exception asks for a retry;
`sgevents.Skip`, `sgevents.Retry` and `sgevents.Fatal` say more (see the SDK's README).

Try it on journaled events with `sgevents deliver NAME --last 5`; test it with
`python3 -m unittest` in this folder.
"""

from sgevents import Plugin

plugin = Plugin()


@plugin.on("Shotgun_Task_Change", attributes=["sg_status_list"], name="task_status")
def on_task_status(ctx, event):
    """A Task's status changed."""
    meta = event.get("meta") or {}
    task = event.get("entity") or {}
    ctx.log.info(
        "task %s: %s -> %s", task.get("id"), meta.get("old_value"), meta.get("new_value")
    )


if __name__ == "__main__":
    plugin.run()
"#;

const PYTHON_TEST: &str = r#""""Tests of NAME, run in memory by `sgevents.testing` as the daemon would run it.

Run them with `python3 -m unittest` in this folder (the Python SDK on PYTHONPATH or installed).
"""

import unittest

from sgevents.testing import PluginRunner

from MODULE import plugin


def task_status_change(event_id, old, new):
    return {
        "id": event_id,
        "event_type": "Shotgun_Task_Change",
        "attribute_name": "sg_status_list",
        "meta": {"type": "attribute_change", "attribute_name": "sg_status_list",
                 "old_value": old, "new_value": new},
        "entity": {"type": "Task", "id": 420, "name": "Anim"},
        "user": {"type": "HumanUser", "id": 42, "name": "Ana Reyes"},
        "project": {"type": "Project", "id": 66, "name": "Forest Spirits"},
        "created_at": "2026-11-02T10:00:00Z",
    }


class TestPlugin(unittest.TestCase):
    def test_a_task_status_change_is_acked_and_logged(self):
        event = task_status_change(1, "wtg", "ip")
        result = PluginRunner(plugin).run([event])
        self.assertEqual(result.answer(1), {"type": "ack", "event_id": 1})
        self.assertIn(("info", "task 420: wtg -> ip"), result.logs)

    def test_other_events_are_not_delivered(self):
        shot = {"id": 2, "event_type": "Shotgun_Shot_New", "entity": {"type": "Shot", "id": 7}}
        result = PluginRunner(plugin).run([shot])
        self.assertEqual(result.undelivered, [2])


if __name__ == "__main__":
    unittest.main()
"#;

const RUST_CARGO: &str = r#"[package]
name = "NAME"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
DEPENDENCY

# A crate of its own, even inside another workspace.
[workspace]
"#;

const RUST_MAIN: &str = r#"//! NAME: an sgevents plugin, written by `sgevents new plugin`.
//!
//! It logs every status change of a Task. Change the subscription and the callback to your needs:
//! `Ok(())` acknowledges the event, an error asks for a retry (`Error::term` and `Error::fatal` say
//! "never" and "stop this plugin"). Try it on journaled events with
//! `sgevents deliver NAME --last 5`; test it with `cargo test`.

use std::process::ExitCode;

use sgevents_sdk::{Plugin, Subscription};

/// The plugin: its subscriptions and callbacks.
fn plugin() -> Plugin {
    Plugin::new().on(
        Subscription::new("task_status", ["Shotgun_Task_Change"]).attributes(["sg_status_list"]),
        |ctx, event| {
            let task = event.entity.as_ref().map_or(0, |e| e.id);
            let old = event.meta["old_value"].as_str().unwrap_or("-");
            let new = event.meta["new_value"].as_str().unwrap_or("-");
            ctx.log().info(format!("task {task}: {old} -> {new}"));
            Ok(())
        },
    )
}

fn main() -> ExitCode {
    plugin().run()
}

#[cfg(test)]
mod tests {
    use sgevents_sdk::testing::{self, Harness, PluginMessage};

    use super::plugin;

    #[test]
    fn a_task_status_change_is_acked_and_logged() {
        let report = Harness::new(plugin())
            .event(testing::task_status_change(1, "wtg", "ip"))
            .event(testing::new_entity(2, "Shot", 1246, "010_0010"))
            .run();
        assert_eq!(report.answer(1), Some(&PluginMessage::Ack { event_id: 1 }));
        assert_eq!(report.undelivered, vec![2], "no subscription matches a new Shot");
        assert!(
            report.logs.iter().any(|r| r.message.ends_with("wtg -> ip")),
            "{:?}",
            report.logs
        );
    }
}
"#;

const SH_PLUGIN: &str = r#"#!/bin/sh
# NAME: an sgevents plugin in plain POSIX sh, written by `sgevents new plugin` from
# protocol/PROTOCOL.md, with no SDK.
#
# It subscribes to Task status changes and acknowledges each one, logging its id on stderr (a line
# starting with `I! ` is an info record). Change the `register` line and the `event` branch to your
# needs. Reading JSON in sh is crude: it relies on the daemon writing each message's `type` first
# and an event's `event_id` second, which it does; anything serious wants an SDK.
#
# Try it on journaled events with `sgevents deliver NAME --last 5`; test it with `sh test.sh`.

while IFS= read -r line; do
  case "$line" in
    '{"type":"hello"'*)
      printf '%s\n' '{"type":"register","protocol":1,"subscriptions":[{"name":"task_status","event_types":["Shotgun_Task_Change"],"attributes":["sg_status_list"]}],"max_in_flight":1}'
      ;;
    '{"type":"event"'*)
      id=${line#*\"event_id\":}
      id=${id%%,*}
      echo "I! event $id: a Task's status changed" >&2
      printf '{"type":"ack","event_id":%s}\n' "$id"
      ;;
    '{"type":"ping"'*)
      nonce=${line#*\"nonce\":}
      nonce=${nonce%%[,\}]*}
      printf '{"type":"pong","nonce":%s}\n' "$nonce"
      ;;
    '{"type":"shutdown"'*)
      # Nothing is in flight (one event at a time): the daemon closes stdin next, and we exit.
      ;;
  esac
done
"#;

const SH_TEST: &str = r#"#!/bin/sh
# A transcript test of NAME: plays the daemon's side of a session (hello, an event, a ping,
# shutdown) to the plugin and compares what it writes on stdout with the expected lines.
# Run: sh test.sh (exit status 0 when it passes).

cd "$(dirname "$0")" || exit 2

expected='{"type":"register","protocol":1,"subscriptions":[{"name":"task_status","event_types":["Shotgun_Task_Change"],"attributes":["sg_status_list"]}],"max_in_flight":1}
{"type":"ack","event_id":7}
{"type":"pong","nonce":3}'

got=$(printf '%s\n' \
  '{"type":"hello","protocols":[1],"plugin":"NAME","config":{}}' \
  '{"type":"event","event_id":7,"attempt":1,"subscriptions":["task_status"],"deadline_ms":30000,"event":{"id":7,"event_type":"Shotgun_Task_Change","attribute_name":"sg_status_list","entity":{"type":"Task","id":420}}}' \
  '{"type":"ping","nonce":3}' \
  '{"type":"shutdown","drain_ms":10000}' \
  | sh ./MODULE.sh 2>/dev/null)

if [ "$got" = "$expected" ]; then
  echo "ok: NAME answered as expected"
else
  echo "FAILED: NAME answered:"
  echo "$got"
  echo "expected:"
  echo "$expected"
  exit 1
fi
"#;
