//! Raw → typed: [`parse_mode`] reads the text into the [raw layer](super::raw) and the
//! `Validator` checks every value, resolves paths, reads the keys and discovers the plugins. Every
//! error names the file, the key and the offending value, and ends with a `hint:` line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::value::StringDeserializer;
use serde::de::{DeserializeOwned, IntoDeserializer};
use serde_json::{Map, Value};

use super::discover::{discover, discover_legacy, plugin_name};
use super::raw::*;
use super::*;
use crate::logging::{LogConfig, LogFormat, validate_filter};

/// The two keys that may name one secret, and what to tell an operator when it is not there.
struct SecretKeys {
    env: &'static str,
    file: &'static str,
    /// When the environment variable is not set.
    env_hint: &'static str,
    /// When the file is empty.
    empty_hint: &'static str,
}

/// `source.script_key_env` / `source.script_key_file`.
const SCRIPT_KEY: SecretKeys = SecretKeys {
    env: "source.script_key_env",
    file: "source.script_key_file",
    env_hint: "export it in the daemon's environment (or its service file); the key itself never goes in the configuration",
    empty_hint: "put the script's key in it, alone",
};

/// `source.webhook_secret_env` / `source.webhook_secret_file`.
const WEBHOOK_SECRET: SecretKeys = SecretKeys {
    env: "source.webhook_secret_env",
    file: "source.webhook_secret_file",
    env_hint: "export it in the daemon's environment (or its service file), with the secret given to the webhook on the site; or remove the key to turn webhooks off",
    empty_hint: "put the webhook's secret in it, alone, as given to the webhook on the site",
};

/// Says serde's `invalid type: string "x", expected i64` in plain words: `expected an integer,
/// found the string "x"`; for an array, with an example (`command` gets a command's).
fn plain_type_error(message: &str) -> String {
    let command_line = message.lines().any(|l| {
        l.split('|')
            .nth(1)
            .is_some_and(|code| code.trim_start().starts_with("command"))
    });
    message
        .lines()
        .map(|line| {
            let Some(rest) = line.strip_prefix("invalid type: ") else {
                return line.to_owned();
            };
            let Some((found, expected)) = rest.rsplit_once(", expected ") else {
                return line.to_owned();
            };
            let expected = match expected {
                "i64" | "u64" | "u32" | "i32" | "usize" | "an integer" => "an integer".to_owned(),
                "a boolean" => "true or false".to_owned(),
                "a string" => "a string in quotes".to_owned(),
                "a map" => "a table such as `{ key = \"value\" }`".to_owned(),
                "a sequence" if command_line => {
                    "an array such as `[\"python3\", \"plugin.py\"]`".to_owned()
                }
                "a sequence" => "an array such as `[\"a\", \"b\"]`".to_owned(),
                other => other.to_owned(),
            };
            format!("expected {expected}, found {found}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A setting whose values a serde enum names (`rename_all = "lowercase"`), read in any ASCII case
/// as it always was; `None` for a value it does not name (the caller says so, with the key).
fn named<T: DeserializeOwned>(text: &str) -> Option<T> {
    let text: StringDeserializer<serde::de::value::Error> =
        text.to_ascii_lowercase().into_deserializer();
    T::deserialize(text).ok()
}

/// serde's error, its type errors in plain words.
fn invalid(file: &Path, e: &toml::de::Error) -> ConfigError {
    ConfigError::plain(
        file,
        format!(
            "invalid configuration: {}",
            plain_type_error(e.to_string().trim_end())
        ),
        "see the Configuration section of the README for every key and its type",
    )
}

/// What is wrong with the `[source]` table, said better than serde says it through the tag: a
/// missing or unknown `kind`, a key of another kind, or (read as its kind alone) a key or value
/// on its own line. `None` when the table is fine, or the text is not TOML: the error is serde's,
/// and elsewhere.
fn source_error(file: &Path, text: &str) -> Option<ConfigError> {
    let doc: toml::Table = toml::from_str(text).ok()?;
    let table = match doc.get("source")? {
        toml::Value::Table(table) => table,
        other => {
            return Some(ConfigError::at(
                file,
                "source",
                other,
                "not a table",
                "write it as a table, such as:\n[source]\nkind = \"jsonl\"\npath = \"events.jsonl\"",
            ));
        }
    };
    let kinds = "use \"shotgrid\" (a ShotGrid site) or \"jsonl\" (a file of events)";
    let Some(kind) = table.get("kind") else {
        return Some(ConfigError::plain(
            file,
            "`source.kind` is missing",
            &format!("say which source this is: {kinds}"),
        ));
    };
    let Some((name, keys)) = kind
        .as_str()
        .and_then(|name| Some((name, RawSource::keys(name)?)))
    else {
        let shown = match kind {
            toml::Value::String(name) => format!("{name:?}"),
            other => other.to_string(),
        };
        return Some(ConfigError::at(
            file,
            "source.kind",
            shown,
            "unknown source kind",
            kinds,
        ));
    };
    let foreign = table.keys().find(|key| {
        !keys.contains(&key.as_str())
            && RawSource::KINDS
                .iter()
                .filter_map(|other| RawSource::keys(other))
                .any(|other| other.contains(&key.as_str()))
    });
    match foreign {
        Some(key) => Some(ConfigError::plain(
            file,
            format!("`source.{key}` does not apply to kind = \"{name}\""),
            "remove it, or change `source.kind`; the README lists the keys of each kind",
        )),
        None => RawSource::error_alone(name, text).map(|e| invalid(file, &e)),
    }
}

pub(super) fn parse_mode(
    file: &Path,
    text: &str,
    skip_secrets: bool,
    rediscover: bool,
) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text)
        .map_err(|e| source_error(file, text).unwrap_or_else(|| invalid(file, &e)))?;
    let base_dir = file
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let v = Validator {
        file,
        base_dir: &base_dir,
        skip_secrets,
        rediscover,
    };
    let mut config = v.config(raw)?;
    config.text = text.to_owned();
    Ok(config)
}

struct Validator<'a> {
    file: &'a Path,
    base_dir: &'a Path,
    /// Do not read keys (see [`load_without_secrets`]).
    skip_secrets: bool,
    /// Discovering again while running: a `[plugin.NAME]` table whose executable is gone (for now)
    /// leaves that plugin out instead of being an error.
    rediscover: bool,
}

impl Validator<'_> {
    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let secret_env = secret_env(&raw);
        let daemon = self.daemon(raw.daemon)?;
        let source = match raw.source {
            Some(s) => self.source(s)?,
            None => {
                return Err(ConfigError::plain(
                    self.file,
                    "there is no `[source]` table",
                    "add one, such as:\n[source]\nkind = \"jsonl\"\npath = \"events.jsonl\"",
                ));
            }
        };
        let defaults = self.plugin_defaults(&raw.plugins)?;
        let paths: Vec<PathBuf> = raw.plugins.paths.iter().map(|p| self.resolve(p)).collect();
        let legacy = self.legacy(&raw.plugins, &source)?;
        let common_env = raw.plugins.env.clone();
        let common_inherit = raw.plugins.inherit_env.clone();
        self.check_inherit("plugins.inherit_env", &common_inherit)?;
        let mut plugins = self.plugins(&paths, &legacy, raw.plugin, defaults, source.site_url())?;
        for spec in &mut plugins {
            // `[plugins] env` first: a plugin's own `env` (and `legacy_env`) wins.
            let mut env = common_env.clone();
            env.append(&mut spec.env);
            spec.env = env;
            let mut inherit = common_inherit.clone();
            inherit.append(&mut spec.inherit_env);
            spec.inherit_env = inherit;
            spec.withheld_env = secret_env.clone();
        }
        self.check_after(&plugins)?;
        let alerts = raw.alerts.map(|a| self.alerts(a)).transpose()?;
        let http = self.http(raw.http)?;
        if let (None, Some(p)) = (&alerts, plugins.iter().find(|p| p.alert_to.is_some())) {
            return Err(ConfigError::plain(
                self.file,
                format!(
                    "`plugin.{}.alert_to` is set, but there is no `[alerts]` table",
                    p.name
                ),
                "add an [alerts] table naming the mail server (see the README), or remove `alert_to`",
            ));
        }
        Ok(Config {
            file: self.file.to_path_buf(),
            base_dir: self.base_dir.to_path_buf(),
            daemon,
            source,
            plugins,
            alerts,
            http,
            plugin_dirs: paths.iter().chain(&legacy.paths).cloned().collect(),
            executable_dirs: paths.clone(),
            text: String::new(),
            secret_env,
        })
    }

    fn http(&self, raw: RawHttp) -> Result<HttpConfig, ConfigError> {
        let allow_remote = raw.allow_remote.unwrap_or(false);
        let listen_set = raw.listen.is_some();
        let text = raw.listen.unwrap_or_else(|| DEFAULT_HTTP_LISTEN.to_owned());
        let text = text.trim();
        if text.is_empty() {
            return Ok(HttpConfig {
                listen: None,
                listen_set,
                allow_remote,
            });
        }
        let addr: std::net::SocketAddr = text.parse().map_err(|_| {
            ConfigError::at(
                self.file,
                "http.listen",
                format!("{text:?}"),
                "not an IP address with a port",
                "write an address and a port, such as \"127.0.0.1:9750\" or \"[::1]:9750\" (port 0: any free port), or \"\" to turn the listener off",
            )
        })?;
        if !addr.ip().is_loopback() && !allow_remote {
            return Err(ConfigError::at(
                self.file,
                "http.listen",
                format!("{text:?}"),
                "not a loopback address: the probes and the status page would be open to other machines",
                "listen on 127.0.0.1 (a reverse proxy can publish it), or set `allow_remote = true` in [http] if other machines must reach it",
            ));
        }
        Ok(HttpConfig {
            listen: Some(addr),
            listen_set,
            allow_remote,
        })
    }

    fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    /// A duration key, read with `humantime`. Not through `humantime-serde`: serde's error for a
    /// bad value is a TOML parse error without the key's name, the "write a duration such as"
    /// hint, or the keyed "must be longer than zero".
    fn duration(
        &self,
        key: &str,
        value: &Option<String>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(text) = value else {
            return Ok(default);
        };
        let d = humantime::parse_duration(text).map_err(|e| {
            ConfigError::at(
                self.file,
                key,
                format!("{text:?}"),
                format!("not a duration ({e})"),
                "write a duration such as \"30s\", \"5m\" or \"7days\"",
            )
        })?;
        if d.is_zero() {
            return Err(ConfigError::at(
                self.file,
                key,
                format!("{text:?}"),
                "must be longer than zero",
                "write a duration such as \"30s\"",
            ));
        }
        Ok(d)
    }

    /// `daemon.log_level`, checked as the log filter it is (see [`crate::logging::validate_filter`]).
    fn log_level(&self, value: Option<String>) -> Result<String, ConfigError> {
        let text = value.unwrap_or_else(|| "info".to_owned());
        validate_filter(&text).map_err(|problem| {
            ConfigError::at(
                self.file,
                "daemon.log_level",
                format!("{text:?}"),
                problem,
                "write a level (\"trace\", \"debug\", \"info\", \"warn\", \"error\") or a filter such as \"info,sgevents=debug\"",
            )
        })?;
        Ok(text)
    }

    fn daemon(&self, raw: RawDaemon) -> Result<DaemonConfig, ConfigError> {
        let synchronous = match &raw.synchronous {
            None => Synchronous::Full,
            Some(text) => named(text).ok_or_else(|| {
                ConfigError::at(
                    self.file,
                    "daemon.synchronous",
                    format!("{text:?}"),
                    "unknown setting",
                    "use \"full\" (the default: answers survive a power cut) or \"normal\" (faster; a power cut may turn answers into redeliveries)",
                )
            })?,
        };
        let logs = self.logs(&raw)?;
        Ok(DaemonConfig {
            state_dir: self.resolve(raw.state_dir.as_deref().unwrap_or(Path::new("var"))),
            synchronous,
            journal_retention: self.duration(
                "daemon.journal_retention",
                &raw.journal_retention,
                Duration::from_secs(7 * 24 * 3600),
            )?,
            prune_interval: self.duration(
                "daemon.prune_interval",
                &raw.prune_interval,
                Duration::from_secs(60),
            )?,
            exit_when_idle: raw.exit_when_idle.unwrap_or(false),
            commit_interval: self.duration(
                "daemon.commit_interval",
                &raw.commit_interval,
                Duration::from_millis(5),
            )?,
            log_level: self.log_level(raw.log_level)?,
            logs,
        })
    }

    fn logs(&self, raw: &RawDaemon) -> Result<LogConfig, ConfigError> {
        let dir = match &raw.log_dir {
            Some(p) if p.as_os_str().is_empty() => {
                return Err(ConfigError::at(
                    self.file,
                    "daemon.log_dir",
                    "\"\"",
                    "an empty path",
                    "name a folder, such as log_dir = \"/var/log/sgevents\", or remove the key to log to stderr only",
                ));
            }
            Some(p) => Some(self.resolve(p)),
            None => None,
        };
        let retention = self.int(
            "daemon.log_retention",
            raw.log_retention,
            14,
            1..=3650,
            "use 1 to 3650: how many daily files of each log are kept, today's included",
        )? as u32;
        let format = match &raw.log_format {
            None => LogFormat::Text,
            Some(text) => named(text).ok_or_else(|| {
                ConfigError::at(
                    self.file,
                    "daemon.log_format",
                    format!("{text:?}"),
                    "unknown log format",
                    "use \"text\" (the default: one line per record, for people) or \"json\" (one JSON object per line, for log shippers)",
                )
            })?,
        };
        for (key, value) in [
            ("log_per_plugin", raw.log_per_plugin),
            ("timing_log", raw.timing_log),
        ] {
            if value == Some(true) && dir.is_none() {
                return Err(ConfigError::at(
                    self.file,
                    &format!("daemon.{key}"),
                    "true",
                    "there is no `daemon.log_dir` to write it in",
                    "set log_dir = \"logs\" (a folder, relative to this file), or remove the key",
                ));
            }
        }
        Ok(LogConfig {
            per_plugin: raw.log_per_plugin.unwrap_or(false),
            timing: raw.timing_log.unwrap_or(dir.is_some()),
            dir,
            retention,
            format,
        })
    }

    fn start_at(&self, key: &str, value: &toml::Value) -> Result<StartAt, ConfigError> {
        match value {
            toml::Value::String(s) if s == "earliest" => Ok(StartAt::Earliest),
            toml::Value::String(s) if s == "latest" => Ok(StartAt::Latest),
            toml::Value::Integer(id) if *id > 0 => Ok(StartAt::EventId(*id)),
            toml::Value::String(s)
                if key == "source.start_at" && humantime::parse_rfc3339_weak(s).is_ok() =>
            {
                Ok(StartAt::Time(
                    humantime::parse_rfc3339_weak(s).expect("checked"),
                ))
            }
            toml::Value::Datetime(d) if key == "source.start_at" => {
                humantime::parse_rfc3339_weak(&d.to_string())
                    .map(StartAt::Time)
                    .map_err(|e| {
                        ConfigError::at(
                            self.file,
                            key,
                            d,
                            format!("not a time ({e})"),
                            "write a time such as \"2026-11-02T10:00:00Z\"",
                        )
                    })
            }
            other => Err(ConfigError::at(
                self.file,
                key,
                other,
                "not a starting point",
                "use \"earliest\", \"latest\", an event id such as 2011531, or (for the ShotGrid source) a time such as \"2026-11-02T10:00:00Z\"",
            )),
        }
    }

    fn source(&self, raw: RawSource) -> Result<SourceConfig, ConfigError> {
        match raw {
            RawSource::Jsonl(raw) => self.jsonl(raw),
            RawSource::Shotgrid(raw) => self.shotgrid(*raw),
        }
    }

    fn jsonl(&self, raw: RawJsonl) -> Result<SourceConfig, ConfigError> {
        if let Some(StartAt::Time(_)) = raw
            .start_at
            .as_ref()
            .map(|v| self.start_at("source.start_at", v))
            .transpose()?
        {
            return Err(ConfigError::plain(
                self.file,
                "`source.start_at` is a time, which only the ShotGrid source understands",
                "use \"earliest\", \"latest\" or an event id",
            ));
        }
        let Some(path) = raw.path else {
            return Err(ConfigError::plain(
                self.file,
                "`source.path` is missing",
                "name the JSON-lines file of events, such as path = \"events.jsonl\"",
            ));
        };
        let start_at = match &raw.start_at {
            Some(v) => self.start_at("source.start_at", v)?,
            None => StartAt::Earliest,
        };
        let batch_size = self.int(
            "source.batch_size",
            raw.batch_size,
            500,
            1..=10_000,
            "use 1 to 10000",
        )? as usize;
        Ok(SourceConfig::Jsonl(JsonlSource {
            path: self.resolve(&path),
            follow: raw.follow.unwrap_or(false),
            start_at,
            poll_interval: self.duration(
                "source.poll_interval",
                &raw.poll_interval,
                Duration::from_millis(100),
            )?,
            batch_size,
            site_url: raw.site_url,
            max_event_bytes: self.max_event_bytes(raw.max_event_bytes)?,
        }))
    }

    fn shotgrid(&self, raw: RawShotgrid) -> Result<SourceConfig, ConfigError> {
        let Some(url) = raw.url else {
            return Err(ConfigError::plain(
                self.file,
                "`source.url` is missing",
                "name the site, such as url = \"https://mystudio.shotgrid.autodesk.com\"",
            ));
        };
        let url = url.trim_end_matches('/').to_owned();
        if !(url.starts_with("https://") || url.starts_with("http://"))
            || url.len() <= "https://".len()
        {
            return Err(ConfigError::at(
                self.file,
                "source.url",
                format!("{url:?}"),
                "not an http(s) URL",
                "write the site's address, such as \"https://mystudio.shotgrid.autodesk.com\"",
            ));
        }
        let Some(script_name) = raw.script_name.filter(|n| !n.is_empty()) else {
            return Err(ConfigError::plain(
                self.file,
                "`source.script_name` is missing",
                "name the ShotGrid script (API user) the daemon reads the event log as",
            ));
        };
        let script_key = self
            .secret(&SCRIPT_KEY, raw.script_key_env, raw.script_key_file)?
            .ok_or_else(|| {
                ConfigError::plain(
                    self.file,
                    "the script's key is missing",
                    "set script_key_env = \"VARIABLE\" (an environment variable that holds it) or script_key_file = \"/etc/sgevents/key\"",
                )
            })?;
        let batch_size = self.int(
            "source.batch_size",
            raw.batch_size,
            500,
            1..=5000,
            "use 1 to 5000 (the site's largest page)",
        )? as usize;
        let webhook_secret = self.secret(
            &WEBHOOK_SECRET,
            raw.webhook_secret_env,
            raw.webhook_secret_file,
        )?;
        let fetch_concurrency = self.int(
            "source.fetch_concurrency",
            raw.fetch_concurrency,
            4,
            1..=16,
            "use 1 (one page at a time) to 16",
        )? as usize;
        let start_at = match &raw.start_at {
            Some(v) => self.start_at("source.start_at", v)?,
            None => StartAt::Latest,
        };
        let fetch_interval = self.duration(
            "source.fetch_interval",
            &raw.fetch_interval,
            Duration::from_secs(5),
        )?;
        // Above `fetch_interval` it would only slow polls down: capped, as documented.
        let min_fetch_interval = self
            .duration(
                "source.min_fetch_interval",
                &raw.min_fetch_interval,
                Duration::from_millis(250),
            )?
            .min(fetch_interval);
        if let Some(proxy) = &raw.proxy {
            if !(proxy.starts_with("http://")
                || proxy.starts_with("https://")
                || proxy.starts_with("socks5://"))
            {
                return Err(ConfigError::at(
                    self.file,
                    "source.proxy",
                    format!("{proxy:?}"),
                    "not a proxy URL",
                    "write it like \"http://proxy.studio.lan:3128\"",
                ));
            }
        }
        let ca_file = match raw.ca_file {
            None => None,
            Some(path) => {
                let path = self.resolve(&path);
                if let Err(e) = std::fs::metadata(&path) {
                    return Err(ConfigError::at(
                        self.file,
                        "source.ca_file",
                        path.display(),
                        format!("cannot read it: {e}"),
                        "point it at a PEM file of certificate authorities",
                    ));
                }
                Some(path)
            }
        };
        Ok(SourceConfig::Shotgrid(ShotgridSource {
            url,
            script_name,
            script_key,
            fetch_interval,
            min_fetch_interval,
            fetch_concurrency,
            webhook_secret,
            batch_size,
            gap_timeout: self.duration(
                "source.gap_timeout",
                &raw.gap_timeout,
                Duration::from_secs(5 * 60),
            )?,
            start_at,
            proxy: raw.proxy,
            ca_file,
            request_timeout: self.duration(
                "source.request_timeout",
                &raw.request_timeout,
                Duration::from_secs(30),
            )?,
            alert_after: self.duration(
                "source.alert_after",
                &raw.alert_after,
                Duration::from_secs(5 * 60),
            )?,
            max_event_bytes: self.max_event_bytes(raw.max_event_bytes)?,
        }))
    }

    /// A secret named by an environment variable (`keys.env`) or a file (`keys.file`), if either
    /// is set; its surrounding whitespace is dropped. With `skip_secrets`, an empty one.
    fn secret(
        &self,
        keys: &SecretKeys,
        env: Option<String>,
        file: Option<PathBuf>,
    ) -> Result<Option<Secret>, ConfigError> {
        match (env, file) {
            (None, None) => Ok(None),
            (Some(_), None) | (None, Some(_)) if self.skip_secrets => Ok(Some(Secret::new(""))),
            (Some(var), None) => match std::env::var(&var) {
                Ok(secret) if !secret.trim().is_empty() => Ok(Some(Secret::new(secret.trim()))),
                _ => Err(ConfigError::at(
                    self.file,
                    keys.env,
                    format!("{var:?}"),
                    "the environment variable is not set",
                    keys.env_hint,
                )),
            },
            (None, Some(path)) => {
                let path = self.resolve(&path);
                match std::fs::read_to_string(&path) {
                    Ok(secret) if !secret.trim().is_empty() => Ok(Some(Secret::new(secret.trim()))),
                    Ok(_) => Err(ConfigError::at(
                        self.file,
                        keys.file,
                        path.display(),
                        "the file is empty",
                        keys.empty_hint,
                    )),
                    Err(e) => Err(ConfigError::at(
                        self.file,
                        keys.file,
                        path.display(),
                        format!("cannot read it: {e}"),
                        "check the path and that the daemon's user may read it (keep it mode 0600)",
                    )),
                }
            }
            (Some(_), Some(_)) => Err(ConfigError::plain(
                self.file,
                format!("both `{}` and `{}` are set", keys.env, keys.file),
                "keep one of them",
            )),
        }
    }

    /// `source.max_event_bytes`: at most [`MAX_EVENT_BYTES`], so that every journaled event fits
    /// the protocol's line limit once wrapped in its event line.
    fn max_event_bytes(&self, value: Option<i64>) -> Result<usize, ConfigError> {
        let key = "source.max_event_bytes";
        match value {
            None => Ok(MAX_EVENT_BYTES),
            Some(n) if n > MAX_EVENT_BYTES as i64 => Err(ConfigError::at(
                self.file,
                key,
                n,
                format!(
                    "above the largest event an event line can carry ({MAX_EVENT_BYTES} bytes: the protocol's 16 MiB line limit less 64 KiB for the rest of the line)"
                ),
                "leave it out for the largest, or use a smaller value; bigger events cannot reach plugins",
            )),
            Some(n) if n < MIN_EVENT_BYTES as i64 => Err(ConfigError::at(
                self.file,
                key,
                n,
                "too small for an event",
                "use at least 1024 (bytes); leave it out for the largest",
            )),
            Some(n) => Ok(n as usize),
        }
    }

    fn alerts(&self, raw: RawAlerts) -> Result<AlertsConfig, ConfigError> {
        let Some(smtp_host) = raw.smtp_host else {
            return Err(ConfigError::plain(
                self.file,
                "`alerts.smtp_host` is missing",
                "name the mail server, such as smtp_host = \"smtp.studio.lan\"",
            ));
        };
        if smtp_host.is_empty()
            || smtp_host.contains(|c: char| c.is_whitespace() || c == '/')
            || (smtp_host.contains(':') && smtp_host.parse::<std::net::Ipv6Addr>().is_err())
        {
            return Err(ConfigError::at(
                self.file,
                "alerts.smtp_host",
                format!("{smtp_host:?}"),
                "not a host name",
                "write the server's name or address alone, such as \"smtp.studio.lan\"; the port goes in `smtp_port`",
            ));
        }
        let tls = match raw.tls.as_deref() {
            None | Some("starttls") => SmtpTls::StartTls,
            Some("implicit") => SmtpTls::Implicit,
            Some("none") => SmtpTls::None,
            Some(other) => {
                return Err(ConfigError::at(
                    self.file,
                    "alerts.tls",
                    format!("{other:?}"),
                    "unknown setting",
                    "use \"starttls\" (the default, port 587), \"implicit\" (TLS from the start, port 465) or \"none\" (port 25, unencrypted: a relay on this machine or a trusted network only)",
                ));
            }
        };
        let default_port = match tls {
            SmtpTls::StartTls => 587,
            SmtpTls::Implicit => 465,
            SmtpTls::None => 25,
        };
        let smtp_port = self.int(
            "alerts.smtp_port",
            raw.smtp_port,
            default_port,
            1..=65535,
            "use the mail server's port: usually 587 (starttls), 465 (implicit) or 25 (none)",
        )? as u16;
        let credentials = match (raw.username_env, raw.password_env) {
            (None, None) => None,
            (Some(user_var), Some(pass_var)) => {
                if tls == SmtpTls::None {
                    return Err(ConfigError::plain(
                        self.file,
                        "`alerts.username_env` is set with tls = \"none\": the password would cross the network unencrypted",
                        "use tls = \"starttls\" or \"implicit\", or drop the credentials for a relay that needs none",
                    ));
                }
                let read = |key: &str, var: &str| {
                    if self.skip_secrets {
                        return Ok(String::new());
                    }
                    match std::env::var(var) {
                        Ok(value) if !value.is_empty() => Ok(value),
                        _ => Err(ConfigError::at(
                            self.file,
                            key,
                            format!("{var:?}"),
                            "the environment variable is not set",
                            "export it in the daemon's environment (or its service file); credentials never go in the configuration",
                        )),
                    }
                };
                Some(SmtpCredentials {
                    username: read("alerts.username_env", &user_var)?,
                    password: Secret::new(read("alerts.password_env", &pass_var)?),
                })
            }
            _ => {
                return Err(ConfigError::plain(
                    self.file,
                    "`[alerts]` sets only one of `username_env` and `password_env`",
                    "set both: the environment variables that hold the mail server's user name and password",
                ));
            }
        };
        let Some(from) = raw.from else {
            return Err(ConfigError::plain(
                self.file,
                "`alerts.from` is missing",
                "give the sender, such as from = \"sgevents <sgevents@studio.example>\"",
            ));
        };
        let from = self.mailbox("alerts.from", from)?;
        let to = match raw.to {
            Some(to) if !to.is_empty() => to
                .into_iter()
                .map(|a| self.mailbox("alerts.to", a))
                .collect::<Result<Vec<_>, _>>()?,
            _ => {
                return Err(ConfigError::plain(
                    self.file,
                    "`alerts.to` is missing or empty",
                    "list who gets the alerts, such as to = [\"pipeline@studio.example\"]",
                ));
            }
        };
        let subject_prefix = raw
            .subject_prefix
            .unwrap_or_else(|| "[sgevents]".to_owned());
        if subject_prefix.contains(['\r', '\n']) {
            return Err(ConfigError::at(
                self.file,
                "alerts.subject_prefix",
                format!("{subject_prefix:?}"),
                "contains a line break",
                "keep it on one line, such as \"[sgevents]\"",
            ));
        }
        let ca_file = match raw.ca_file {
            None => None,
            Some(_) if tls == SmtpTls::None => {
                return Err(ConfigError::plain(
                    self.file,
                    "`alerts.ca_file` does not apply to tls = \"none\"",
                    "remove it, or use tls = \"starttls\" or \"implicit\"",
                ));
            }
            Some(path) => {
                let path = self.resolve(&path);
                let problem = match std::fs::read(&path) {
                    Err(e) => Some(format!("cannot read it: {e}")),
                    Ok(pem)
                        if !String::from_utf8_lossy(&pem)
                            .contains("-----BEGIN CERTIFICATE-----")
                            || lettre::transport::smtp::client::Certificate::from_pem(&pem)
                                .is_err() =>
                    {
                        Some("holds no PEM certificate".to_owned())
                    }
                    Ok(_) => None,
                };
                if let Some(problem) = problem {
                    return Err(ConfigError::at(
                        self.file,
                        "alerts.ca_file",
                        path.display(),
                        problem,
                        "point it at a PEM file of the certificate authorities that signed the mail server's certificate",
                    ));
                }
                Some(path)
            }
        };
        Ok(AlertsConfig {
            smtp_host,
            smtp_port,
            tls,
            credentials,
            from,
            to,
            subject_prefix,
            rate_limit: self.duration(
                "alerts.rate_limit",
                &raw.rate_limit,
                Duration::from_secs(10 * 60),
            )?,
            ca_file,
        })
    }

    /// Checks an email address (`a@b.example` or `Name <a@b.example>`).
    fn mailbox(&self, key: &str, value: String) -> Result<String, ConfigError> {
        match value.parse::<lettre::message::Mailbox>() {
            Ok(_) => Ok(value),
            Err(e) => Err(ConfigError::at(
                self.file,
                key,
                format!("{value:?}"),
                format!("not an email address ({e})"),
                "write it as \"someone@studio.example\" or \"Someone <someone@studio.example>\"",
            )),
        }
    }

    fn plugin_defaults(&self, raw: &RawPlugins) -> Result<PluginLimits, ConfigError> {
        let d = PluginLimits::default();
        Ok(PluginLimits {
            ack_timeout: self.duration("plugins.ack_timeout", &raw.ack_timeout, d.ack_timeout)?,
            progress_cap: d.progress_cap,
            max_attempts: self.attempts(
                "plugins.max_attempts",
                raw.max_attempts,
                d.max_attempts,
            )?,
            handshake_timeout: self.duration(
                "plugins.handshake_timeout",
                &raw.handshake_timeout,
                d.handshake_timeout,
            )?,
            ping_interval: self.duration(
                "plugins.ping_interval",
                &raw.ping_interval,
                d.ping_interval,
            )?,
            shutdown_drain: self.duration(
                "plugins.shutdown_drain",
                &raw.shutdown_drain,
                d.shutdown_drain,
            )?,
            stop_grace: self.duration("plugins.stop_grace", &raw.stop_grace, d.stop_grace)?,
            restart_delay: self.duration(
                "plugins.restart_delay",
                &raw.restart_delay,
                d.restart_delay,
            )?,
            restart_delay_max: self.duration(
                "plugins.restart_delay_max",
                &raw.restart_delay_max,
                d.restart_delay_max,
            )?,
            log_rate: self.log_rate("plugins.log_rate", raw.log_rate, d.log_rate)?,
        })
    }

    fn log_rate(&self, key: &str, value: Option<i64>, default: u32) -> Result<u32, ConfigError> {
        let n = self.int(
            key,
            value,
            default.into(),
            0..=1_000_000,
            "use 0 (no limit) to 1000000 lines per second",
        )?;
        Ok(n as u32)
    }

    fn attempts(&self, key: &str, value: Option<i64>, default: u32) -> Result<u32, ConfigError> {
        let n = self.int(
            key,
            value,
            default.into(),
            1..=1000,
            "use 1 to 1000 deliveries",
        )?;
        Ok(n as u32)
    }

    /// An integer setting: `default` when absent, else within `range`.
    fn int(
        &self,
        key: &str,
        value: Option<i64>,
        default: i64,
        range: std::ops::RangeInclusive<i64>,
        hint: &str,
    ) -> Result<i64, ConfigError> {
        match value {
            None => Ok(default),
            Some(n) if range.contains(&n) => Ok(n),
            Some(n) => Err(ConfigError::at(self.file, key, n, "out of range", hint)),
        }
    }

    /// The settings of `plugins.legacy_paths`.
    fn legacy(&self, raw: &RawPlugins, source: &SourceConfig) -> Result<Legacy, ConfigError> {
        let command = raw.legacy_command.clone().unwrap_or_else(|| {
            ["python3", "-m", "sgevents.legacy"]
                .map(String::from)
                .to_vec()
        });
        if command.is_empty() || command[0].is_empty() {
            return Err(ConfigError::at(
                self.file,
                "plugins.legacy_command",
                "[]",
                "empty command",
                "leave it out for [\"python3\", \"-m\", \"sgevents.legacy\"], or give the program and its arguments",
            ));
        }
        let mut hello = Map::new();
        let (proxy, ca) = match source {
            SourceConfig::Shotgrid(s) => (s.proxy.clone(), s.ca_file.clone()),
            SourceConfig::Jsonl(_) => (None, None),
        };
        hello.insert(
            "site_url".into(),
            source.site_url().map(Value::from).unwrap_or(Value::Null),
        );
        hello.insert(
            "proxy".into(),
            proxy.map(Value::from).unwrap_or(Value::Null),
        );
        hello.insert(
            "ca_certs".into(),
            ca.map(|p| Value::from(p.display().to_string()))
                .unwrap_or(Value::Null),
        );
        hello.insert(
            "use_session_uuid".into(),
            Value::from(raw.use_session_uuid.unwrap_or(false)),
        );
        // The host's folder is the plugin's (`cwd`); with PYTHONSAFEPATH, a plugin folder holding a
        // `json.py` or `logging.py` cannot shadow the standard library before the host starts (the
        // host puts the folder on `sys.path` itself, after).
        let mut env = raw.legacy_env.clone();
        env.entry("PYTHONSAFEPATH".into())
            .or_insert_with(|| "1".into());
        Ok(Legacy {
            paths: raw.legacy_paths.iter().map(|p| self.resolve(p)).collect(),
            command,
            env,
            hello,
        })
    }

    /// `after` names configured plugins and makes no cycle.
    fn check_after(&self, plugins: &[PluginSpec]) -> Result<(), ConfigError> {
        let names: BTreeSet<&str> = plugins.iter().map(|p| p.name.as_str()).collect();
        for p in plugins {
            for a in &p.after {
                if !names.contains(a.as_str()) {
                    return Err(ConfigError::at(
                        self.file,
                        &format!("plugin.{}.after", p.name),
                        format!("{a:?}"),
                        "no plugin has that name",
                        &format!(
                            "name configured plugins: {}",
                            names.iter().copied().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
                if a == &p.name {
                    return Err(ConfigError::at(
                        self.file,
                        &format!("plugin.{}.after", p.name),
                        format!("{a:?}"),
                        "a plugin cannot wait for itself",
                        "remove it from the list",
                    ));
                }
            }
        }
        // Depth-first search for a cycle, reporting it in full.
        let after: BTreeMap<&str, &[String]> = plugins
            .iter()
            .map(|p| (p.name.as_str(), p.after.as_slice()))
            .collect();
        fn visit<'a>(
            n: &'a str,
            after: &BTreeMap<&'a str, &'a [String]>,
            path: &mut Vec<&'a str>,
            done: &mut BTreeSet<&'a str>,
        ) -> Option<Vec<&'a str>> {
            if let Some(i) = path.iter().position(|p| *p == n) {
                let mut cycle = path[i..].to_vec();
                cycle.push(n);
                return Some(cycle);
            }
            if done.contains(n) {
                return None;
            }
            path.push(n);
            for a in after.get(n).copied().unwrap_or_default() {
                if let Some(c) = visit(a, after, path, done) {
                    return Some(c);
                }
            }
            path.pop();
            done.insert(n);
            None
        }
        let mut done = BTreeSet::new();
        for p in plugins {
            if let Some(cycle) = visit(&p.name, &after, &mut Vec::new(), &mut done) {
                return Err(ConfigError::plain(
                    self.file,
                    format!("`after` makes a cycle: {}", cycle.join(" waits for ")),
                    "a plugin can only wait for plugins that do not wait for it; remove one `after` entry",
                ));
            }
        }
        Ok(())
    }

    fn plugins(
        &self,
        paths: &[PathBuf],
        legacy: &Legacy,
        mut tables: BTreeMap<String, RawPlugin>,
        defaults: PluginLimits,
        site_url: Option<&str>,
    ) -> Result<Vec<PluginSpec>, ConfigError> {
        let discovered = discover(paths).map_err(|(dir, e)| {
            ConfigError::at(
                self.file,
                "plugins.paths",
                dir.display(),
                format!("cannot read the folder: {e}"),
                "create it, or remove it from `plugins.paths`",
            )
        })?;
        let mut specs = Vec::new();
        let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
        for exe in discovered {
            let name = plugin_name(&exe);
            if let Some(first) = seen.get(&name) {
                return Err(ConfigError::plain(
                    self.file,
                    format!(
                        "two plugins are named `{name}`: `{}` and `{}`",
                        first.display(),
                        exe.display()
                    ),
                    "plugin names come from file stems and must be unique across `plugins.paths`; rename one",
                ));
            }
            seen.insert(name.clone(), exe.clone());
            let table = tables.remove(&name).unwrap_or_default();
            let command = vec![exe.display().to_string()];
            specs.push(self.plugin(
                name,
                table,
                Some(command),
                Origin::Discovered(exe),
                defaults,
                site_url,
            )?);
        }
        // shotgunEvents plugin files, each run by the legacy host, after the executables.
        let files = discover_legacy(&legacy.paths).map_err(|(dir, e)| {
            ConfigError::at(
                self.file,
                "plugins.legacy_paths",
                dir.display(),
                format!("cannot read the folder: {e}"),
                "create it, or remove it from `plugins.legacy_paths`",
            )
        })?;
        for file in files {
            // The host runs in the plugin's folder: it gets the file's absolute path.
            let file = std::path::absolute(&file).unwrap_or(file);
            let name = plugin_name(&file);
            if let Some(first) = seen.get(&name) {
                return Err(ConfigError::plain(
                    self.file,
                    format!(
                        "two plugins are named `{name}`: `{}` and `{}`",
                        first.display(),
                        file.display()
                    ),
                    "plugin names come from file stems and must be unique across `plugins.paths` and `plugins.legacy_paths`; rename one",
                ));
            }
            seen.insert(name.clone(), file.clone());
            let mut table = tables.remove(&name).unwrap_or_default();
            if table.command.is_some() {
                return Err(ConfigError::plain(
                    self.file,
                    format!(
                        "`[plugin.{name}]` sets a `command`, but `{name}` is a shotgunEvents plugin found in `plugins.legacy_paths`"
                    ),
                    "remove `command` (the legacy host runs it), or rename one of them",
                ));
            }
            let mut command = legacy.command.clone();
            command.push(file.display().to_string());
            let mut env = legacy.env.clone();
            env.append(&mut table.env);
            table.env = env;
            let mut spec = self.plugin(
                name,
                table,
                Some(command),
                Origin::Legacy(file.clone()),
                defaults,
                site_url,
            )?;
            for (k, v) in &legacy.hello {
                spec.config.insert(k.clone(), v.clone());
            }
            spec.config.insert(
                "legacy_path".into(),
                Value::from(file.display().to_string()),
            );
            if let Some(dir) = file.parent() {
                spec.cwd = dir.to_path_buf();
            }
            specs.push(spec);
        }
        // Plugins added by a table with a command start after the discovered ones, by name.
        for (name, table) in tables {
            check_name(self.file, &name)?;
            if table.command.is_none() && self.rediscover {
                tracing::info!(plugin = %name, "no executable named `{name}` in the plugin folders now; the plugin is left out");
                continue;
            }
            if table.command.is_none() {
                return Err(ConfigError::plain(
                    self.file,
                    format!(
                        "`[plugin.{name}]` has no `command` and no executable named `{name}` was found in `plugins.paths`"
                    ),
                    "add command = [\"path/to/program\", \"arg\"], or put an executable with that name in a plugins folder",
                ));
            }
            specs.push(self.plugin(name, table, None, Origin::Command, defaults, site_url)?);
        }
        Ok(specs)
    }

    fn plugin(
        &self,
        name: String,
        raw: RawPlugin,
        discovered: Option<Vec<String>>,
        origin: Origin,
        defaults: PluginLimits,
        site_url: Option<&str>,
    ) -> Result<PluginSpec, ConfigError> {
        let key = |k: &str| format!("plugin.{name}.{k}");
        let command = match (raw.command, discovered) {
            (Some(c), _) | (None, Some(c)) => c,
            (None, None) => unreachable!("checked by the caller"),
        };
        if command.is_empty() || command[0].is_empty() {
            return Err(ConfigError::at(
                self.file,
                &key("command"),
                "[]",
                "empty command",
                "give the program and its arguments, such as [\"python3\", \"plugins/x.py\"]",
            ));
        }
        let config = match raw.config {
            None => Map::new(),
            Some(table) => match serde_json::to_value(table) {
                Ok(Value::Object(map)) => map,
                _ => {
                    return Err(ConfigError::plain(
                        self.file,
                        format!("`{}` cannot be turned into JSON", key("config")),
                        "use plain strings, numbers, booleans, arrays and tables",
                    ));
                }
            },
        };
        let credentials = match (raw.script_name, raw.script_key_env) {
            (None, None) => None,
            (Some(script_name), Some(var)) => {
                let Some(site_url) = site_url else {
                    return Err(ConfigError::plain(
                        self.file,
                        format!(
                            "plugin `{name}` has ShotGrid credentials but the source names no site"
                        ),
                        "set `site_url` in [source] so plugins know which site their script key belongs to",
                    ));
                };
                let script_key = if self.skip_secrets {
                    String::new()
                } else {
                    std::env::var(&var).map_err(|_| {
                    ConfigError::at(self.file, &key("script_key_env"), format!("{var:?}"), "the environment variable is not set", "export it in the daemon's environment (or its service file); the key itself never goes in the configuration")
                })?
                };
                Some(Credentials {
                    site_url: site_url.to_owned(),
                    script_name,
                    script_key: Secret::new(script_key),
                })
            }
            _ => {
                return Err(ConfigError::plain(
                    self.file,
                    format!("plugin `{name}` sets only one of `script_name` and `script_key_env`"),
                    "set both: the script's name, and the environment variable that holds its key",
                ));
            }
        };
        let start_at = match &raw.start_at {
            Some(v) => Some(self.start_at(&key("start_at"), v)?),
            None => None,
        };
        let mut limits = defaults;
        limits.ack_timeout =
            self.duration(&key("ack_timeout"), &raw.ack_timeout, defaults.ack_timeout)?;
        limits.max_attempts = self.attempts(
            &key("max_attempts"),
            raw.max_attempts,
            defaults.max_attempts,
        )?;
        limits.log_rate = self.log_rate(&key("log_rate"), raw.log_rate, defaults.log_rate)?;
        limits.restart_delay = self.duration(
            &key("restart_delay"),
            &raw.restart_delay,
            defaults.restart_delay,
        )?;
        limits.restart_delay_max = self.duration(
            &key("restart_delay_max"),
            &raw.restart_delay_max,
            defaults.restart_delay_max,
        )?;
        self.check_inherit(&key("inherit_env"), &raw.inherit_env)?;
        self.run_as(&name, &raw.user, &raw.group)?;
        let (user, group) = (raw.user, raw.group);
        let alert_to = match raw.alert_to {
            None => None,
            Some(list) => Some(
                list.into_iter()
                    .map(|a| self.mailbox(&key("alert_to"), a))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        Ok(PluginSpec {
            name,
            command,
            env: raw.env,
            config,
            enabled: raw.enabled.unwrap_or(true),
            start_at,
            credentials,
            cwd: self.base_dir.to_path_buf(),
            limits,
            origin,
            alert_to,
            after: raw.after,
            inherit_env: raw.inherit_env,
            withheld_env: BTreeSet::new(),
            user,
            group,
        })
    }

    /// `inherit_env` holds variable names or globs (`STUDIO_*`, `*`).
    fn check_inherit(&self, key: &str, list: &[String]) -> Result<(), ConfigError> {
        for pattern in list {
            let ok = !pattern.is_empty()
                && pattern
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '*'));
            if !ok {
                return Err(ConfigError::at(
                    self.file,
                    key,
                    format!("{pattern:?}"),
                    "not a variable name or glob",
                    "give names such as \"OCIO\", or globs such as \"STUDIO_*\" (letters, digits, `_` and `*`)",
                ));
            }
        }
        Ok(())
    }

    /// `user` and `group`: they exist, and the daemon may switch to them.
    fn run_as(
        &self,
        name: &str,
        user: &Option<String>,
        group: &Option<String>,
    ) -> Result<(), ConfigError> {
        let key = |k: &str| format!("plugin.{name}.{k}");
        if user.is_none() {
            if let Some(g) = group {
                return Err(ConfigError::at(
                    self.file,
                    &key("group"),
                    format!("{g:?}"),
                    "`group` is set without `user`",
                    "set `user` too (the plugin runs as that user, in that group), or remove `group`",
                ));
            }
            return Ok(());
        }
        if self.skip_secrets {
            // `status` and the control commands do not start plugins.
            return Ok(());
        }
        let user = user.as_deref().unwrap_or_default();
        match nix::unistd::User::from_name(user) {
            Ok(Some(_)) => {}
            _ => {
                return Err(ConfigError::at(
                    self.file,
                    &key("user"),
                    format!("{user:?}"),
                    "no such user on this machine",
                    "create the user (useradd --system NAME), or correct `user`",
                ));
            }
        }
        if let Some(g) = group {
            if !matches!(nix::unistd::Group::from_name(g), Ok(Some(_))) {
                return Err(ConfigError::at(
                    self.file,
                    &key("group"),
                    format!("{g:?}"),
                    "no such group on this machine",
                    "create the group (groupadd --system NAME), or correct `group`",
                ));
            }
        }
        if !crate::privilege::can_switch_user() {
            return Err(ConfigError::at(
                self.file,
                &key("user"),
                format!("{user:?}"),
                format!(
                    "the daemon runs as uid {} without CAP_SETUID and CAP_SETGID, so it cannot run a plugin as another user",
                    nix::unistd::geteuid()
                ),
                "run the daemon as root (under systemd: remove `User=` from the unit, see docs/SECURITY.md) or give it CAP_SETUID and CAP_SETGID; or remove `user`",
            ));
        }
        Ok(())
    }
}

/// The variables the configuration's `*_env` keys name.
fn secret_env(raw: &RawConfig) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Some(RawSource::Shotgrid(s)) = &raw.source {
        out.extend(s.script_key_env.clone());
        out.extend(s.webhook_secret_env.clone());
    }
    for p in raw.plugin.values() {
        if let Some(v) = &p.script_key_env {
            out.insert(v.clone());
        }
    }
    if let Some(a) = &raw.alerts {
        out.extend(a.username_env.clone());
        out.extend(a.password_env.clone());
    }
    out
}

fn check_name(file: &Path, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::at(
            file,
            &format!("plugin.{name}"),
            name,
            "not a valid plugin name",
            "use letters, digits, `_`, `-` and `.`, not starting with `.`",
        ))
    }
}

/// The settings shared by every shotgunEvents plugin.
struct Legacy {
    paths: Vec<PathBuf>,
    command: Vec<String>,
    env: BTreeMap<String, String>,
    /// What every legacy plugin's `hello.config` holds: site, proxy, CA file, session uuid option.
    hello: Map<String, Value>,
}
