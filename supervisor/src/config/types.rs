//! The validated configuration: [`Config`] and its parts, as the rest of the daemon uses them.
//! Built only by [`super::validate`]; re-exported from [`crate::config`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::ConfigError;
use crate::logging::LogConfig;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    /// The directory relative paths are resolved against; plugins run there.
    pub base_dir: PathBuf,
    /// `[daemon]`.
    pub daemon: DaemonConfig,
    /// `[source]`.
    pub source: SourceConfig,
    /// Every plugin, in start order (see [`discover`]).
    pub plugins: Vec<PluginSpec>,
    /// `[alerts]`: email alerts, when configured.
    pub alerts: Option<AlertsConfig>,
    /// `[http]`: the HTTP listener (probes, status page).
    pub http: HttpConfig,
    /// The plugin folders (`plugins.paths` and `plugins.legacy_paths`), resolved: what hot reload
    /// watches, with the configured commands' executables.
    pub plugin_dirs: Vec<PathBuf>,
    /// `plugins.paths` alone, resolved: where a file is a plugin only if it is executable.
    pub executable_dirs: Vec<PathBuf>,
    /// The file's text as it was read: discovering the plugins again (after a plugin file changed)
    /// re-validates this text, not whatever the file holds by then.
    pub text: String,
    /// The variables the `*_env` keys name (source, plugins, alerts): secrets, withheld from
    /// every plugin's environment under their own names.
    pub secret_env: BTreeSet<String>,
}

impl Config {
    /// Every secret value the daemon knows: the source's key, each plugin's key, the SMTP password,
    /// and the value of every variable a `*_env` key names. For redaction ([`crate::redact`]).
    pub fn secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let SourceConfig::Shotgrid(s) = &self.source {
            out.push(s.script_key.expose().to_owned());
            if let Some(secret) = &s.webhook_secret {
                out.push(secret.expose().to_owned());
            }
        }
        for p in &self.plugins {
            if let Some(c) = &p.credentials {
                out.push(c.script_key.expose().to_owned());
            }
        }
        if let Some(c) = self.alerts.as_ref().and_then(|a| a.credentials.as_ref()) {
            out.push(c.password.expose().to_owned());
        }
        for var in &self.secret_env {
            if let Ok(value) = std::env::var(var) {
                out.push(value);
            }
        }
        out
    }

    /// Discovers the plugins again with the same settings (the same text, not whatever the file
    /// holds now). A `[plugin.NAME]` table whose executable was removed leaves the plugin out.
    pub fn rediscover(&self) -> Result<Config, ConfigError> {
        super::validate::parse_mode(&self.file, &self.text, false, true)
    }
}

/// `[daemon]`.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Where `state.db` lives.
    pub state_dir: PathBuf,
    /// SQLite's `synchronous` setting for the state database.
    pub synchronous: Synchronous,
    /// How long journaled events are kept once every plugin is past them.
    pub journal_retention: Duration,
    /// How often the journal is pruned.
    pub prune_interval: Duration,
    /// Exit once the source is exhausted and every plugin has caught up.
    pub exit_when_idle: bool,
    /// The longest an answer waits before its group commit.
    pub commit_interval: Duration,
    /// The default log filter, overridden by `$SGEVENTS_LOG`.
    pub log_level: String,
    /// `log_dir`, `log_retention`, `log_per_plugin`, `log_format`, `timing_log`.
    pub logs: LogConfig,
}

/// SQLite's `synchronous` pragma, as far as it is safe to choose: `daemon.synchronous`, read in
/// any case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// Every commit reaches the disk before it returns: an answer survives a power cut.
    Full,
    /// Commits may be lost on a power cut (not on a crash of the daemon): lost answers become
    /// redeliveries.
    Normal,
}

impl Synchronous {
    /// The pragma's value.
    pub fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// `[source]`.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceConfig {
    /// A JSON-lines file of events.
    Jsonl(JsonlSource),
    /// A ShotGrid site's event log, polled over REST API v1.
    Shotgrid(ShotgridSource),
}

impl SourceConfig {
    /// The ShotGrid site the events come from, given to plugins with credentials.
    pub fn site_url(&self) -> Option<&str> {
        match self {
            SourceConfig::Jsonl(s) => s.site_url.as_deref(),
            SourceConfig::Shotgrid(s) => Some(&s.url),
        }
    }
}

/// `kind = "shotgrid"`.
#[derive(Debug, Clone, PartialEq)]
pub struct ShotgridSource {
    /// The site, without a trailing slash.
    pub url: String,
    /// The script (API user) the daemon reads the log as.
    pub script_name: String,
    /// Its key, from `script_key_env` or `script_key_file`.
    pub script_key: Secret,
    /// The longest wait between polls when the last batch was not full.
    pub fetch_interval: Duration,
    /// The wait after a poll that found new events (doubling while nothing new arrives, up to
    /// `fetch_interval`); never above `fetch_interval`.
    pub min_fetch_interval: Duration,
    /// Pages fetched at once while catching up (1 to 16).
    pub fetch_concurrency: usize,
    /// The secret of ShotGrid's webhook deliveries (`webhook_secret_env` or `webhook_secret_file`):
    /// set, it enables `POST /webhooks/shotgrid` on the HTTP listener.
    pub webhook_secret: Option<Secret>,
    /// Events per request.
    pub batch_size: usize,
    /// How long a missing id is waited for.
    pub gap_timeout: Duration,
    /// Where a brand-new journal starts.
    pub start_at: StartAt,
    /// An HTTP(S) proxy for every request.
    pub proxy: Option<String>,
    /// A PEM file of extra trusted certificate authorities.
    pub ca_file: Option<PathBuf>,
    /// The longest one request may take.
    pub request_timeout: Duration,
    /// After failing this long, the source logs an error (what alerts hook onto).
    pub alert_after: Duration,
    /// The longest event journaled (its JSON, in bytes); a longer one is skipped and counted.
    pub max_event_bytes: usize,
}

/// A secret string: never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `kind = "jsonl"`.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonlSource {
    /// The file.
    pub path: PathBuf,
    /// Keep reading lines appended later.
    pub follow: bool,
    /// Where the journal starts on a brand-new state database.
    pub start_at: StartAt,
    /// How often a followed file is checked for new lines.
    pub poll_interval: Duration,
    /// Events per journal transaction.
    pub batch_size: usize,
    /// The site the events came from.
    pub site_url: Option<String>,
    /// The longest line (one event) read; a longer one is skipped and counted, never held whole.
    pub max_event_bytes: usize,
}

/// Where to start: the source's journal on a new database, or a plugin that is new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// From the first event there is.
    Earliest,
    /// From the next event to come.
    Latest,
    /// From this event id on (the event itself included).
    EventId(i64),
    /// From the first event created at or after this time (RFC 3339, UTC); ShotGrid source only.
    Time(std::time::SystemTime),
}

/// `[http] listen` when it is not set.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:9750";

/// `[http]`: the read-only HTTP listener (see `crate::http`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Where it listens; `None` when `listen = ""` turns it off.
    pub listen: Option<std::net::SocketAddr>,
    /// Whether `listen` was set in the file. The default address, when taken, is a warning and
    /// the daemon runs without the listener; an address the file names is an error.
    pub listen_set: bool,
    /// A non-loopback `listen` is allowed.
    pub allow_remote: bool,
}

/// `[alerts]`: mail to operators when something needs a person (see [`crate::alerts`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertsConfig {
    /// The mail server's host name or address.
    pub smtp_host: String,
    /// Its port: 587 for STARTTLS, 465 for implicit TLS, 25 without TLS, unless set.
    pub smtp_port: u16,
    /// How the connection is secured.
    pub tls: SmtpTls,
    /// The login, read from the environment variables `username_env` and `password_env` name.
    pub credentials: Option<SmtpCredentials>,
    /// The sender: an address, or `Name <address>`.
    pub from: String,
    /// Who gets the alerts that no plugin setting (`alert_to`, `register`) directs elsewhere.
    pub to: Vec<String>,
    /// What every subject starts with.
    pub subject_prefix: String,
    /// After a mail to some recipients, what comes for them within this long goes out as one digest
    /// when it ends.
    pub rate_limit: Duration,
    /// A PEM file of extra certificate authorities (a mail server with a private CA).
    pub ca_file: Option<PathBuf>,
}

/// How the connection to the mail server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain TCP upgraded with `STARTTLS`, which the server must offer (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No encryption (port 25): only for a relay on the same machine or a trusted network.
    None,
}

/// The mail server login. The password is a [`Secret`]: `Debug` never shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpCredentials {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: Secret,
}

/// One plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSpec {
    /// Its name: the file stem of a discovered executable, or the `[plugin.NAME]` key.
    pub name: String,
    /// The program and its arguments.
    pub command: Vec<String>,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// The `config` table, handed over in `hello`.
    pub config: Map<String, Value>,
    /// `enabled = false` keeps it from starting.
    pub enabled: bool,
    /// Where a plugin new to the state database starts; the journal head when `None`.
    pub start_at: Option<StartAt>,
    /// ShotGrid credentials for `SGEVENTS_SITE_URL` and `SGEVENTS_SCRIPT_*`.
    pub credentials: Option<Credentials>,
    /// Working directory.
    pub cwd: PathBuf,
    /// Timeouts and limits.
    pub limits: PluginLimits,
    /// Where it came from, for messages.
    pub origin: Origin,
    /// `alert_to`: who gets this plugin's alerts instead of `alerts.to` (empty: nobody).
    pub alert_to: Option<Vec<String>>,
    /// `after`: the plugins that must finish an event before this one gets it.
    pub after: Vec<String>,
    /// `[plugins] inherit_env` then `[plugin.NAME] inherit_env`: names or globs of the daemon's
    /// environment variables passed through (`"*"`: all, as before version 4).
    pub inherit_env: Vec<String>,
    /// The names of the variables every `*_env` key of the configuration names (source, plugins,
    /// alerts): never passed to a plugin under their own name, whatever `inherit_env` says.
    pub withheld_env: BTreeSet<String>,
    /// `user`: the Unix user the plugin runs as (the daemon must run as root).
    pub user: Option<String>,
    /// `group`: the group it runs as; the user's primary group when `None`.
    pub group: Option<String>,
}

/// Where a plugin came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// An executable found in a `plugins.paths` folder.
    Discovered(PathBuf),
    /// A `[plugin.NAME]` table with a `command`.
    Command,
    /// A shotgunEvents plugin file found in a `plugins.legacy_paths` folder, run by the Python
    /// SDK's legacy host.
    Legacy(PathBuf),
}

/// A plugin's ShotGrid credentials. The key is a [`Secret`]: `Debug` never shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The site.
    pub site_url: String,
    /// The script (API user) name.
    pub script_name: String,
    /// The script key, read from the environment variable `script_key_env` names.
    pub script_key: Secret,
}

/// Timeouts and limits of one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    /// How long an event may go unanswered (each `progress` restarts it).
    pub ack_timeout: Duration,
    /// The total an event may take, `progress` or not.
    pub progress_cap: Duration,
    /// Deliveries before an event is recorded as failed.
    pub max_attempts: u32,
    /// How long a plugin has to answer `hello`.
    pub handshake_timeout: Duration,
    /// How often an idle plugin is pinged.
    pub ping_interval: Duration,
    /// How long `shutdown` waits for the answers in flight.
    pub shutdown_drain: Duration,
    /// After stdin closes: the wait before SIGTERM, and again before SIGKILL.
    pub stop_grace: Duration,
    /// The first restart delay after a crash; it doubles with each crash.
    pub restart_delay: Duration,
    /// The longest restart delay.
    pub restart_delay_max: Duration,
    /// Stderr lines a second relayed to the log (and as many in a burst); the excess is dropped
    /// and counted. 0: no limit.
    pub log_rate: u32,
}

impl Default for PluginLimits {
    fn default() -> PluginLimits {
        PluginLimits {
            ack_timeout: Duration::from_secs(30),
            progress_cap: Duration::from_secs(15 * 60),
            max_attempts: 10,
            handshake_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(15),
            shutdown_drain: Duration::from_secs(10),
            stop_grace: Duration::from_secs(5),
            restart_delay: Duration::from_secs(1),
            restart_delay_max: Duration::from_secs(5 * 60),
            log_rate: 1000,
        }
    }
}

impl PluginSpec {
    /// A fingerprint of everything that defines the plugin's behaviour: command, environment,
    /// config and the executable's size and modification time. A plugin disabled by a failure is
    /// enabled again when this changes (the operator edited something).
    pub fn fingerprint(&self) -> String {
        let mut value = serde_json::json!({
            "command": self.command, "env": self.env, "config": self.config,
        });
        // Added in version 4, only when set: a plugin that uses none keeps its fingerprint.
        if !self.inherit_env.is_empty() {
            value["inherit_env"] = serde_json::json!(self.inherit_env);
        }
        if let Some(user) = &self.user {
            value["user"] = serde_json::json!(user);
        }
        if let Some(group) = &self.group {
            value["group"] = serde_json::json!(group);
        }
        let mut text = value.to_string();
        if let Some(meta) = self.executable().and_then(|p| std::fs::metadata(p).ok()) {
            use std::os::unix::fs::MetadataExt;
            text.push_str(&format!(
                "|{}|{}.{}",
                meta.len(),
                meta.mtime(),
                meta.mtime_nsec()
            ));
        }
        // FNV-1a: stable across Rust versions, unlike the std hasher.
        let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        format!("{hash:016x}")
    }

    /// The executable the command runs, when it is a path (not a program found on `PATH`) or a
    /// script given to an interpreter.
    pub fn executable(&self) -> Option<PathBuf> {
        if let Origin::Legacy(file) = &self.origin {
            return Some(file.clone());
        }
        // `python3 plugin.py`: the script is the executable that matters; `./plugin`: itself.
        self.command
            .iter()
            .take(2)
            .rev()
            .map(|arg| self.cwd.join(arg))
            .find(|p| p.is_file())
    }
}
