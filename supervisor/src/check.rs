//! `sgevents check`: validates the configuration, the source, and every plugin's handshake, and
//! says plainly what is wrong.

use std::fmt::Write as _;
use std::time::Duration;

use sgevents_protocol::{
    DaemonMessage, Hello, PluginMessage, SUPPORTED, decode_plugin_line, encode, excerpt,
};

use crate::config::{Config, PluginSpec, SourceConfig};
use crate::plugin::child::{Incoming, PluginChild};

/// Checks the state database, if there is one, without changing it: what to print after its path.
fn state_check(
    state_dir: &std::path::Path,
    deep: bool,
) -> Result<String, crate::store::StoreError> {
    use crate::store::{QUICK_CHECK_LIMIT, check_file};
    let db = crate::store::db_path(state_dir);
    if !db.exists() {
        return Ok("not created yet: the daemon creates it".into());
    }
    let limit = (!deep).then_some(QUICK_CHECK_LIMIT);
    Ok(match check_file(&db, deep, limit)? {
        true if deep => "sound: integrity_check ok".into(),
        true => "sound: quick_check ok; `--deep` checks every page".into(),
        false => format!(
            "quick_check did not finish within {}; run `sgevents check --deep` to check it fully",
            humantime::format_duration(QUICK_CHECK_LIMIT)
        ),
    })
}

/// Checks everything; returns the report and whether all is well.
/// With `deep`, the state database is checked page by page (`integrity_check`), however long that
/// takes; otherwise with SQLite's quick check, bounded in time like at the daemon's start.
pub async fn check(config: &Config, deep: bool) -> (String, bool) {
    let mut out = String::new();
    let mut ok = true;
    let _ = writeln!(out, "configuration: {} is valid", config.file.display());
    let db = crate::store::db_path(&config.daemon.state_dir);
    match state_check(&config.daemon.state_dir, deep) {
        Ok(verdict) => {
            let _ = writeln!(out, "state:         {} ({verdict})", db.display());
        }
        Err(e) => {
            ok = false;
            let _ = writeln!(out, "state:         error: {e}");
        }
    }
    match &config.source {
        SourceConfig::Jsonl(s) => match std::fs::metadata(&s.path) {
            Ok(m) if m.is_file() => {
                let _ = writeln!(
                    out,
                    "source:        jsonl {} ({} bytes{})",
                    s.path.display(),
                    m.len(),
                    if s.follow { ", followed" } else { "" }
                );
            }
            Ok(_) => {
                ok = false;
                let _ = writeln!(
                    out,
                    "source:        error: `{}` is not a file\nhint: point `source.path` at a JSON-lines file of events",
                    s.path.display()
                );
            }
            Err(e) if s.follow && e.kind() == std::io::ErrorKind::NotFound => {
                let _ = writeln!(
                    out,
                    "source:        jsonl {} (does not exist yet; followed, so it will be read once it does)",
                    s.path.display()
                );
            }
            Err(e) => {
                ok = false;
                let _ = writeln!(
                    out,
                    "source:        error: cannot read `{}`: {e}\nhint: check `source.path`",
                    s.path.display()
                );
            }
        },
        SourceConfig::Shotgrid(s) => match crate::source::shotgrid::check(s).await {
            Ok(text) => {
                let _ = writeln!(out, "source:        {text}");
            }
            Err(e) => {
                ok = false;
                let _ = writeln!(out, "source:        error: {e}");
            }
        },
    }
    if let Some(alerts) = &config.alerts {
        match crate::alerts::check(alerts).await {
            Ok(text) => {
                let _ = writeln!(out, "alerts:        {text}");
            }
            Err(e) => {
                ok = false;
                let _ = writeln!(out, "alerts:        error: {e}");
            }
        }
    }
    match config.http.listen {
        None => {
            let _ = writeln!(out, "http:          off (`listen = \"\"`)");
        }
        Some(addr) => match std::net::TcpListener::bind(addr) {
            Ok(_) => {
                let _ = writeln!(out, "http:          http://{addr}/ (free)");
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                let _ = writeln!(
                    out,
                    "http:          http://{addr}/ is in use: by this daemon if it runs; otherwise `run` {}",
                    if config.http.listen_set {
                        "refuses to start\nhint: free the port, or set another `[http] listen`"
                    } else {
                        "starts without the listener (a warning)"
                    }
                );
            }
            Err(e) => {
                ok = false;
                let _ = writeln!(
                    out,
                    "http:          error: cannot listen on `{addr}`: {e}\nhint: check `[http] listen`"
                );
            }
        },
    }
    if config.plugins.is_empty() {
        let _ = writeln!(
            out,
            "plugins:       none configured (add `plugins.paths` or `[plugin.NAME]` tables)"
        );
    }
    for path in crate::config::not_executable(&config.executable_dirs) {
        let _ = writeln!(
            out,
            "note:          {}",
            crate::config::not_executable_note(&path)
        );
    }
    for spec in &config.plugins {
        if !spec.enabled {
            let _ = writeln!(out, "plugin {}: skipped (enabled = false)", spec.name);
            continue;
        }
        for var in &spec.withheld_env {
            if crate::launch::inherited(&spec.inherit_env, var) {
                let _ = writeln!(
                    out,
                    "plugin {}: note: `inherit_env` matches `{var}`, which a `*_env` key names: it is withheld all the same (a plugin gets only its own key, as SGEVENTS_SCRIPT_KEY)",
                    spec.name
                );
            }
        }
        match handshake(spec).await {
            Ok(text) => {
                let _ = write!(out, "plugin {}: ok, {text}", spec.name);
            }
            Err(e) => {
                ok = false;
                let _ = writeln!(out, "plugin {}: error: {e}", spec.name);
            }
        }
    }
    (out, ok)
}

/// Starts the plugin, performs the handshake, describes its subscriptions and stops it.
async fn handshake(spec: &PluginSpec) -> Result<String, String> {
    let mut child = PluginChild::spawn(spec, Default::default()).map_err(|e| {
        format!("cannot start `{}`: {e}\nhint: check `command` (paths are relative to the configuration's folder) and that the file is executable", spec.command.join(" "))
    })?;
    let hello = DaemonMessage::Hello(Hello {
        protocols: SUPPORTED.to_vec(),
        plugin: spec.name.clone(),
        config: spec.config.clone(),
    });
    child.send(encode(&hello));
    let limit = spec.limits.handshake_timeout;
    let answer = tokio::time::timeout(limit, child.incoming.recv()).await;
    let result = match answer {
        Err(_) => Err(format!(
            "no answer to `hello` within {}\nhint: the plugin must answer with one `register` line on stdout",
            humantime::format_duration(limit)
        )),
        Ok(None) => {
            let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            let tail = child
                .stderr_tail()
                .await
                .map(|t| format!("; last log line: {t}"))
                .unwrap_or_default();
            Err(format!(
                "exited before answering `hello` ({}){tail}",
                status
                    .ok()
                    .and_then(Result::ok)
                    .map_or("still running".into(), |s| s.to_string())
            ))
        }
        Ok(Some(Incoming::TooLong(n))) => Err(format!(
            "answered with a line of {n} bytes, over the 16 MiB limit"
        )),
        Ok(Some(Incoming::Line(line))) => match decode_plugin_line(&line) {
            Ok(PluginMessage::Register(reg)) => match reg.validate(SUPPORTED) {
                Ok(()) => {
                    let mut text = format!(
                        "protocol {}, max_in_flight {}\n",
                        reg.protocol, reg.max_in_flight
                    );
                    for s in &reg.subscriptions {
                        let _ = writeln!(
                            text,
                            "  {}: {}",
                            s.name,
                            serde_json::to_string(s).unwrap_or_default()
                        );
                    }
                    Ok(text)
                }
                Err(e) => Err(e.to_string()),
            },
            Ok(PluginMessage::Fatal { error }) => Err(format!("answered `fatal`: {error}")),
            Ok(other) => Err(format!("answered `{}` instead of `register`", other.kind())),
            Err(e) => Err(format!("{e}\n(the line was `{}`)", excerpt(&line, 200))),
        },
    };
    child.send(encode(&DaemonMessage::Shutdown { drain_ms: 0 }));
    child.close_stdin();
    if tokio::time::timeout(spec.limits.stop_grace, child.wait())
        .await
        .is_err()
    {
        child.kill().await;
    }
    result
}
