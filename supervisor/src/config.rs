//! Configuration: the raw TOML layer (serde, unknown keys refused) and the validated [`Config`]
//! that the rest of the daemon uses. Validation happens once, here; every error names the file,
//! the key and the offending value, and says what to do in a `hint:` line.
//!
//! Relative paths (`state_dir`, the source's `path`, `plugins.paths`) are resolved against the
//! directory that holds the configuration file, and plugins run with that directory as their
//! working directory, so a configuration behaves the same wherever `sgevents` is started from.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::logging::{LogConfig, LogFormat, validate_filter};

/// Where the configuration is looked for when `-c` is not given and `$SGEVENTS_CONFIG` is unset.
pub const DEFAULT_CONFIG: &str = "sgevents.toml";

/// The room an event line keeps for everything around the event itself (`encode_event_raw`): the
/// fixed fields take under 160 bytes (`event_id`, `attempt` and `deadline_ms` at their largest),
/// the rest is for the names of the subscriptions that matched.
pub const EVENT_ENVELOPE_RESERVE: usize = 64 * 1024;

/// The largest `[source] max_event_bytes`, and its default: an event this long still fits the
/// protocol's line limit ([`sgevents_protocol::DEFAULT_MAX_LINE_BYTES`], 16 MiB) once it is wrapped
/// in its event line (16 MiB − 64 KiB = 16,711,680 bytes).
pub const MAX_EVENT_BYTES: usize =
    sgevents_protocol::DEFAULT_MAX_LINE_BYTES - EVENT_ENVELOPE_RESERVE;

/// The smallest `[source] max_event_bytes`.
pub const MIN_EVENT_BYTES: usize = 1024;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    fn at(
        file: &Path,
        key: &str,
        value: impl fmt::Display,
        problem: impl fmt::Display,
        hint: &str,
    ) -> ConfigError {
        ConfigError {
            message: format!(
                "{}: `{key}` = `{value}`: {problem}\nhint: {hint}",
                file.display()
            ),
        }
    }

    fn plain(file: &Path, problem: impl fmt::Display, hint: &str) -> ConfigError {
        ConfigError {
            message: format!("{}: {problem}\nhint: {hint}", file.display()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The raw layer: exactly what the TOML file says.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    daemon: RawDaemon,
    source: Option<RawSource>,
    #[serde(default)]
    plugins: RawPlugins,
    #[serde(default)]
    plugin: BTreeMap<String, RawPlugin>,
    alerts: Option<RawAlerts>,
    #[serde(default)]
    http: RawHttp,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<String>,
    allow_remote: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    state_dir: Option<PathBuf>,
    synchronous: Option<String>,
    journal_retention: Option<String>,
    prune_interval: Option<String>,
    exit_when_idle: Option<bool>,
    commit_interval: Option<String>,
    log_level: Option<String>,
    log_dir: Option<PathBuf>,
    log_retention: Option<i64>,
    log_per_plugin: Option<bool>,
    log_format: Option<String>,
    timing_log: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    kind: String,
    start_at: Option<toml::Value>,
    batch_size: Option<i64>,
    max_event_bytes: Option<i64>,
    // kind = "jsonl"
    path: Option<PathBuf>,
    follow: Option<bool>,
    poll_interval: Option<String>,
    site_url: Option<String>,
    // kind = "shotgrid"
    url: Option<String>,
    script_name: Option<String>,
    script_key_env: Option<String>,
    script_key_file: Option<PathBuf>,
    fetch_interval: Option<String>,
    min_fetch_interval: Option<String>,
    fetch_concurrency: Option<i64>,
    webhook_secret_env: Option<String>,
    webhook_secret_file: Option<PathBuf>,
    gap_timeout: Option<String>,
    proxy: Option<String>,
    ca_file: Option<PathBuf>,
    request_timeout: Option<String>,
    alert_after: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugins {
    #[serde(default)]
    paths: Vec<PathBuf>,
    #[serde(default)]
    legacy_paths: Vec<PathBuf>,
    legacy_command: Option<Vec<String>>,
    #[serde(default)]
    legacy_env: BTreeMap<String, String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    inherit_env: Vec<String>,
    use_session_uuid: Option<bool>,
    ack_timeout: Option<String>,
    max_attempts: Option<i64>,
    handshake_timeout: Option<String>,
    ping_interval: Option<String>,
    shutdown_drain: Option<String>,
    stop_grace: Option<String>,
    restart_delay: Option<String>,
    restart_delay_max: Option<String>,
    log_rate: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    command: Option<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    config: Option<toml::Table>,
    enabled: Option<bool>,
    start_at: Option<toml::Value>,
    script_name: Option<String>,
    script_key_env: Option<String>,
    ack_timeout: Option<String>,
    max_attempts: Option<i64>,
    log_rate: Option<i64>,
    restart_delay: Option<String>,
    restart_delay_max: Option<String>,
    alert_to: Option<Vec<String>>,
    #[serde(default)]
    after: Vec<String>,
    #[serde(default)]
    inherit_env: Vec<String>,
    user: Option<String>,
    group: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    smtp_host: Option<String>,
    smtp_port: Option<i64>,
    tls: Option<String>,
    username_env: Option<String>,
    password_env: Option<String>,
    from: Option<String>,
    to: Option<Vec<String>>,
    subject_prefix: Option<String>,
    rate_limit: Option<String>,
    ca_file: Option<PathBuf>,
}

// ---------------------------------------------------------------------------------------------
// The validated layer.

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
        parse_mode(&self.file, &self.text, false, true)
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

/// SQLite's `synchronous` pragma, as far as it is safe to choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Reads and validates the configuration file at `file`.
pub fn load(file: &Path) -> Result<Config, ConfigError> {
    parse(file, &read(file)?)
}

/// Reads and validates the configuration, except the secrets: script keys are not read (they are
/// left empty), so that commands which only read the state database, such as `status`, work in a
/// shell that does not have the daemon's keys.
pub fn load_without_secrets(file: &Path) -> Result<Config, ConfigError> {
    parse_with(file, &read(file)?, true)
}

fn read(file: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(file).map_err(|e| {
        ConfigError::plain(
            file,
            format!("cannot read the configuration: {e}"),
            "pass the file with `-c PATH`, set $SGEVENTS_CONFIG, or create sgevents.toml in the working directory",
        )
    })
}

/// Validates the configuration `text`, read from `file`.
pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
    parse_with(file, text, false)
}

pub(crate) fn parse_with(
    file: &Path,
    text: &str,
    skip_secrets: bool,
) -> Result<Config, ConfigError> {
    parse_mode(file, text, skip_secrets, false)
}

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

fn parse_mode(
    file: &Path,
    text: &str,
    skip_secrets: bool,
    rediscover: bool,
) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        ConfigError::plain(
            file,
            format!(
                "invalid configuration: {}",
                plain_type_error(e.to_string().trim_end())
            ),
            "see the Configuration section of the README for every key and its type",
        )
    })?;
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
        let synchronous = match raw
            .synchronous
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("full") => Synchronous::Full,
            Some("normal") => Synchronous::Normal,
            Some(_) => {
                return Err(ConfigError::at(
                    self.file,
                    "daemon.synchronous",
                    format!("{:?}", raw.synchronous.unwrap_or_default()),
                    "unknown setting",
                    "use \"full\" (the default: answers survive a power cut) or \"normal\" (faster; a power cut may turn answers into redeliveries)",
                ));
            }
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
            Some(text) => LogFormat::parse(text).ok_or_else(|| {
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
        match raw.kind.as_str() {
            "jsonl" => {
                let foreign = [
                    ("url", raw.url.is_some()),
                    ("script_name", raw.script_name.is_some()),
                    ("script_key_env", raw.script_key_env.is_some()),
                    ("script_key_file", raw.script_key_file.is_some()),
                    ("fetch_interval", raw.fetch_interval.is_some()),
                    ("min_fetch_interval", raw.min_fetch_interval.is_some()),
                    ("fetch_concurrency", raw.fetch_concurrency.is_some()),
                    ("webhook_secret_env", raw.webhook_secret_env.is_some()),
                    ("webhook_secret_file", raw.webhook_secret_file.is_some()),
                    ("gap_timeout", raw.gap_timeout.is_some()),
                    ("proxy", raw.proxy.is_some()),
                    ("ca_file", raw.ca_file.is_some()),
                    ("request_timeout", raw.request_timeout.is_some()),
                    ("alert_after", raw.alert_after.is_some()),
                ];
                self.refuse_foreign("jsonl", &foreign)?;
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
            "shotgrid" => self.shotgrid(raw),
            other => Err(ConfigError::at(
                self.file,
                "source.kind",
                format!("{other:?}"),
                "unknown source kind",
                "use \"shotgrid\" (a ShotGrid site) or \"jsonl\" (a file of events)",
            )),
        }
    }

    fn refuse_foreign(&self, kind: &str, keys: &[(&str, bool)]) -> Result<(), ConfigError> {
        match keys.iter().find(|(_, present)| *present) {
            Some((key, _)) => Err(ConfigError::plain(
                self.file,
                format!("`source.{key}` does not apply to kind = \"{kind}\""),
                "remove it, or change `source.kind`; the README lists the keys of each kind",
            )),
            None => Ok(()),
        }
    }

    fn shotgrid(&self, raw: RawSource) -> Result<SourceConfig, ConfigError> {
        let foreign = [
            ("path", raw.path.is_some()),
            ("follow", raw.follow.is_some()),
            ("poll_interval", raw.poll_interval.is_some()),
            ("site_url", raw.site_url.is_some()),
        ];
        self.refuse_foreign("shotgrid", &foreign)?;
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
        let script_key = match (raw.script_key_env, raw.script_key_file) {
            (Some(_), None) | (None, Some(_)) if self.skip_secrets => Secret::new(""),
            (Some(var), None) => match std::env::var(&var) {
                Ok(key) if !key.trim().is_empty() => Secret::new(key.trim()),
                _ => {
                    return Err(ConfigError::at(
                        self.file,
                        "source.script_key_env",
                        format!("{var:?}"),
                        "the environment variable is not set",
                        "export it in the daemon's environment (or its service file); the key itself never goes in the configuration",
                    ));
                }
            },
            (None, Some(path)) => {
                let path = self.resolve(&path);
                match std::fs::read_to_string(&path) {
                    Ok(key) if !key.trim().is_empty() => Secret::new(key.trim()),
                    Ok(_) => {
                        return Err(ConfigError::at(
                            self.file,
                            "source.script_key_file",
                            path.display(),
                            "the file is empty",
                            "put the script's key in it, alone",
                        ));
                    }
                    Err(e) => {
                        return Err(ConfigError::at(
                            self.file,
                            "source.script_key_file",
                            path.display(),
                            format!("cannot read it: {e}"),
                            "check the path and that the daemon's user may read it (keep it mode 0600)",
                        ));
                    }
                }
            }
            (Some(_), Some(_)) => {
                return Err(ConfigError::plain(
                    self.file,
                    "both `source.script_key_env` and `source.script_key_file` are set",
                    "keep one of them",
                ));
            }
            (None, None) => {
                return Err(ConfigError::plain(
                    self.file,
                    "the script's key is missing",
                    "set script_key_env = \"VARIABLE\" (an environment variable that holds it) or script_key_file = \"/etc/sgevents/key\"",
                ));
            }
        };
        let batch_size = self.int(
            "source.batch_size",
            raw.batch_size,
            500,
            1..=5000,
            "use 1 to 5000 (the site's largest page)",
        )? as usize;
        let webhook_secret =
            self.webhook_secret(raw.webhook_secret_env, raw.webhook_secret_file)?;
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

    /// `source.webhook_secret_env` or `source.webhook_secret_file`: the webhook's secret, if set.
    fn webhook_secret(
        &self,
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
                    "source.webhook_secret_env",
                    format!("{var:?}"),
                    "the environment variable is not set",
                    "export it in the daemon's environment (or its service file), with the secret given to the webhook on the site; or remove the key to turn webhooks off",
                )),
            },
            (None, Some(path)) => {
                let path = self.resolve(&path);
                match std::fs::read_to_string(&path) {
                    Ok(secret) if !secret.trim().is_empty() => Ok(Some(Secret::new(secret.trim()))),
                    Ok(_) => Err(ConfigError::at(
                        self.file,
                        "source.webhook_secret_file",
                        path.display(),
                        "the file is empty",
                        "put the webhook's secret in it, alone, as given to the webhook on the site",
                    )),
                    Err(e) => Err(ConfigError::at(
                        self.file,
                        "source.webhook_secret_file",
                        path.display(),
                        format!("cannot read it: {e}"),
                        "check the path and that the daemon's user may read it (keep it mode 0600)",
                    )),
                }
            }
            (Some(_), Some(_)) => Err(ConfigError::plain(
                self.file,
                "both `source.webhook_secret_env` and `source.webhook_secret_file` are set",
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
    if let Some(v) = raw.source.as_ref().and_then(|s| s.script_key_env.clone()) {
        out.insert(v);
    }
    if let Some(v) = raw
        .source
        .as_ref()
        .and_then(|s| s.webhook_secret_env.clone())
    {
        out.insert(v);
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

/// A discovered executable's plugin name: its file name without the last extension.
pub fn plugin_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Finds the plugins in `folders`: every regular, executable, non-hidden file directly in each
/// folder (not in sub-folders), folders in the order given, files in ascending byte order of their
/// names. This order is the start order, and the order of `status` and `check`.
pub fn discover(folders: &[PathBuf]) -> Result<Vec<PathBuf>, (PathBuf, std::io::Error)> {
    let mut found = Vec::new();
    let mut seen_folders = BTreeSet::new();
    for folder in folders {
        if !seen_folders.insert(folder.clone()) {
            continue;
        }
        let entries = std::fs::read_dir(folder).map_err(|e| (folder.clone(), e))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            // An editor's backup (`plugin.py~`) keeps the executable bit and the stem.
            .filter(|p| !is_editor_temp(p))
            .filter(|p| {
                // `metadata` follows symlinks: a link to an executable is a plugin.
                std::fs::metadata(p)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
            .collect();
        files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        found.extend(files);
    }
    Ok(found)
}

/// The regular, non-hidden files directly in `folders` that [`discover`] passes over because no
/// one may execute them: most likely a plugin whose `chmod +x` was forgotten.
pub fn not_executable(folders: &[PathBuf]) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = folders
        .iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter_map(|folder| std::fs::read_dir(folder).ok())
        .flat_map(|entries| entries.filter_map(Result::ok))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .filter(|p| !is_editor_temp(p))
        .filter(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 == 0)
        })
        .collect();
    found.sort();
    found
}

/// What to say of a file [`not_executable`] found.
pub fn not_executable_note(path: &Path) -> String {
    format!(
        "`{}` in a plugins folder is not executable, so it is not a plugin\nhint: run `chmod +x {}` to make it one, or move it out of the folder",
        path.display(),
        path.display()
    )
}

/// The settings shared by every shotgunEvents plugin.
struct Legacy {
    paths: Vec<PathBuf>,
    command: Vec<String>,
    env: BTreeMap<String, String>,
    /// What every legacy plugin's `hello.config` holds: site, proxy, CA file, session uuid option.
    hello: Map<String, Value>,
}

/// The shotgunEvents plugin files in `folders`: every `*.py` that is not hidden, not in a
/// subfolder, in ascending name order per folder, folders in the order given.
pub fn discover_legacy(folders: &[PathBuf]) -> Result<Vec<PathBuf>, (PathBuf, std::io::Error)> {
    let mut found = Vec::new();
    let mut seen_folders = BTreeSet::new();
    for folder in folders {
        if !seen_folders.insert(folder.clone()) {
            continue;
        }
        let entries = std::fs::read_dir(folder).map_err(|e| (folder.clone(), e))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                !name.starts_with('.') && name.ends_with(".py") && name.len() > 3
            })
            .map(|e| e.path())
            .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
            .collect();
        files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        found.extend(files);
    }
    Ok(found)
}

/// Whether `path` names an editor's or a downloader's temporary file, whose changes are not plugin
/// changes:
///
/// - hidden files, `.*` (vim's `.x.swp`, emacs's lock `.#x`, kate's `.x.kate-swp`, gedit's
///   `.goutputstream-*`, rsync's `.x.AbC123`); discovery skips them too;
/// - backups and autosaves: `x~`, `#x#`, `x.bak`;
/// - vim's swap files wherever its `directory` puts them (`x.swp`, `x.swo`, `x.swn`, `x.swx`) and
///   the `4913` it creates to test whether a folder is writable;
/// - partial downloads and copies: `x.tmp`, `x.part`, `x.crdownload`;
/// - dpkg's files in flight: `x.dpkg-new`, `x.dpkg-tmp`, `x.dpkg-old`.
///
/// Extensions are compared without regard to ASCII case.
pub(crate) fn is_editor_temp(path: &Path) -> bool {
    const EXTENSIONS: &[&str] = &[
        "swp",
        "swo",
        "swn",
        "swx",
        "kate-swp",
        "tmp",
        "part",
        "crdownload",
        "bak",
        "dpkg-new",
        "dpkg-tmp",
        "dpkg-old",
    ];
    let Some(name) = path.file_name() else {
        return false;
    };
    let name = name.to_string_lossy();
    if name.starts_with('.') || name.ends_with('~') || name == "4913" {
        return true;
    }
    if name.len() > 1 && name.starts_with('#') && name.ends_with('#') {
        return true;
    }
    name.rsplit_once('.').is_some_and(|(stem, ext)| {
        !stem.is_empty() && EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Config {
        parse(Path::new("/etc/sgevents/sgevents.toml"), text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn parse_err(text: &str) -> String {
        parse(Path::new("sgevents.toml"), text)
            .expect_err("invalid configuration")
            .to_string()
    }

    const MINIMAL: &str = "[source]\nkind = \"jsonl\"\npath = \"events.jsonl\"\n";

    #[test]
    fn files_without_the_executable_bit_are_named() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, mode) in [
            ("run.py", 0o755),
            ("forgot_chmod.py", 0o644),
            (".hidden", 0o644),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, "").expect("write");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        }
        let found = not_executable(&[dir.path().to_path_buf()]);
        assert_eq!(found, [dir.path().join("forgot_chmod.py")]);
        assert_eq!(
            not_executable_note(Path::new("plugins/forgot_chmod.py")),
            "`plugins/forgot_chmod.py` in a plugins folder is not executable, so it is not a plugin\n\
             hint: run `chmod +x plugins/forgot_chmod.py` to make it one, or move it out of the folder"
        );
    }

    #[test]
    fn a_plugin_overrides_the_restart_backoff() {
        let c = parse_ok(&format!(
            "{MINIMAL}[plugins]\nrestart_delay = \"2s\"\n[plugin.x]\ncommand = [\"x\"]\nrestart_delay = \"5s\"\nrestart_delay_max = \"10m\"\n[plugin.y]\ncommand = [\"y\"]\n"
        ));
        let limits = |n: &str| {
            c.plugins
                .iter()
                .find(|p| p.name == n)
                .map(|p| (p.limits.restart_delay, p.limits.restart_delay_max))
                .expect("plugin")
        };
        assert_eq!(
            limits("x"),
            (Duration::from_secs(5), Duration::from_secs(600))
        );
        assert_eq!(
            limits("y"),
            (Duration::from_secs(2), Duration::from_secs(300)),
            "the others keep [plugins]'"
        );
    }

    #[test]
    fn type_errors_and_log_filters_are_said_in_plain_words() {
        let err = parse_err(&format!("{MINIMAL}[plugins]\nmax_attempts = \"three\"\n"));
        assert!(
            err.contains("\nexpected an integer, found string \"three\"\n"),
            "{err}"
        );
        let err = parse_err(&format!(
            "{MINIMAL}[plugin.x]\ncommand = \"python3 x.py\"\n"
        ));
        assert!(
            err.contains(
                "\nexpected an array such as `[\"python3\", \"plugin.py\"]`, found string \"python3 x.py\"\n"
            ),
            "{err}"
        );
        let err = parse_err(&format!("[daemon]\nlog_level = \"verbose\"\n{MINIMAL}"));
        assert_eq!(
            err,
            "sgevents.toml: `daemon.log_level` = `\"verbose\"`: `verbose` is not a level (one of trace, debug, info, warn, error, off)\n\
             hint: write a level (\"trace\", \"debug\", \"info\", \"warn\", \"error\") or a filter such as \"info,sgevents=debug\""
        );
        for ok in ["debug", "info,sgevents=debug", "warn,plugin=info", "OFF"] {
            let c = parse_ok(&format!("[daemon]\nlog_level = {ok:?}\n{MINIMAL}"));
            assert_eq!(c.daemon.log_level, ok);
        }
    }

    #[test]
    fn max_event_bytes_defaults_to_what_an_event_line_can_carry() {
        let SourceConfig::Jsonl(s) = parse_ok(MINIMAL).source else {
            panic!("a jsonl source")
        };
        assert_eq!(s.max_event_bytes, MAX_EVENT_BYTES);
        // The largest event, wrapped with the largest fixed fields and 63 KiB of subscription
        // names, still fits the protocol's line limit.
        let body = format!(
            "{{\"id\":1,\"x\":\"{}\"}}",
            "a".repeat(MAX_EVENT_BYTES - 15)
        );
        assert_eq!(body.len(), MAX_EVENT_BYTES);
        let names: Vec<String> = (0..63).map(|i| format!("{i:0>1018}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let line = sgevents_protocol::encode_event_raw(i64::MAX, u32::MAX, &names, u64::MAX, &body);
        assert!(
            line.len() <= sgevents_protocol::DEFAULT_MAX_LINE_BYTES,
            "{} bytes",
            line.len()
        );
        let c = parse_ok(&MINIMAL.replace("path", "max_event_bytes = 4096\npath"));
        let SourceConfig::Jsonl(s) = c.source else {
            panic!("a jsonl source")
        };
        assert_eq!(s.max_event_bytes, 4096);
        let err = parse_err(&MINIMAL.replace("path", "max_event_bytes = 16777216\npath"));
        assert!(
            err.contains("`source.max_event_bytes` = `16777216`: above the largest")
                && err.contains("\nhint: "),
            "{err}"
        );
        let err = parse_err(&MINIMAL.replace("path", "max_event_bytes = 10\npath"));
        assert!(err.contains("too small"), "{err}");
    }

    #[test]
    fn defaults() {
        let c = parse_ok(MINIMAL);
        assert_eq!(c.daemon.state_dir, Path::new("/etc/sgevents/var"));
        assert_eq!(c.daemon.synchronous, Synchronous::Full);
        assert_eq!(
            c.daemon.journal_retention,
            Duration::from_secs(7 * 24 * 3600)
        );
        assert!(!c.daemon.exit_when_idle);
        let SourceConfig::Jsonl(s) = &c.source else {
            panic!("a jsonl source")
        };
        assert_eq!(s.path, Path::new("/etc/sgevents/events.jsonl"));
        assert!(!s.follow);
        assert_eq!(s.start_at, StartAt::Earliest);
        assert!(c.plugins.is_empty());
    }

    #[test]
    fn log_settings() {
        let c = parse_ok(MINIMAL);
        assert_eq!(
            c.daemon.logs,
            LogConfig {
                dir: None,
                retention: 14,
                per_plugin: false,
                format: LogFormat::Text,
                timing: false,
            },
            "stderr only by default"
        );
        let c = parse_ok(&format!("[daemon]\nlog_dir = \"logs\"\n{MINIMAL}"));
        assert_eq!(
            c.daemon.logs.dir.as_deref(),
            Some(Path::new("/etc/sgevents/logs"))
        );
        assert!(
            c.daemon.logs.timing,
            "the timing log is on when there are files"
        );
        let c = parse_ok(&format!(
            "[daemon]\nlog_dir = \"/var/log/sgevents\"\nlog_retention = 30\nlog_per_plugin = true\n\
             log_format = \"JSON\"\ntiming_log = false\n{MINIMAL}"
        ));
        assert_eq!(
            c.daemon.logs,
            LogConfig {
                dir: Some(PathBuf::from("/var/log/sgevents")),
                retention: 30,
                per_plugin: true,
                format: LogFormat::Json,
                timing: false,
            }
        );
        for (bad, expected) in [
            (
                "log_retention = 0",
                "`daemon.log_retention` = `0`: out of range",
            ),
            (
                "log_retention = 5000",
                "`daemon.log_retention` = `5000`: out of range",
            ),
            (
                "log_format = \"xml\"",
                "`daemon.log_format` = `\"xml\"`: unknown log format",
            ),
            ("log_dir = \"\"", "`daemon.log_dir` = `\"\"`: an empty path"),
            (
                "log_per_plugin = true",
                "`daemon.log_per_plugin` = `true`: there is no `daemon.log_dir`",
            ),
            (
                "timing_log = true",
                "`daemon.timing_log` = `true`: there is no `daemon.log_dir`",
            ),
            ("log_retention = \"14\"", "invalid configuration"),
            ("log_rotation = \"daily\"", "log_rotation"),
        ] {
            let err = parse_err(&format!("[daemon]\n{bad}\n{MINIMAL}"));
            assert!(err.contains(expected), "{bad}: {err}");
            assert!(err.contains("\nhint: "), "{bad}: {err}");
        }
    }

    #[test]
    fn plugin_tables() {
        let c = parse_ok(&format!(
            "{MINIMAL}[plugins]\nack_timeout = \"2m\"\nmax_attempts = 3\n\
             [plugin.task_status]\ncommand = [\"python3\", \"plugins/python/task_status.py\"]\n\
             env = {{ STUDIO_ROOT = \"/mnt/projects\" }}\nconfig = {{ final_status = \"fin\", n = 3 }}\n\
             start_at = \"earliest\"\nack_timeout = \"5s\"\n\
             [plugin.a_first]\ncommand = [\"/bin/true\"]\nenabled = false\nstart_at = 2011531\n"
        ));
        let names: Vec<_> = c.plugins.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["a_first", "task_status"],
            "command plugins start in name order"
        );
        let ts = &c.plugins[1];
        assert_eq!(ts.command, ["python3", "plugins/python/task_status.py"]);
        assert_eq!(
            ts.env.get("STUDIO_ROOT").map(String::as_str),
            Some("/mnt/projects")
        );
        assert_eq!(ts.config.get("final_status"), Some(&Value::from("fin")));
        assert_eq!(ts.start_at, Some(StartAt::Earliest));
        assert_eq!(ts.limits.ack_timeout, Duration::from_secs(5));
        assert_eq!(ts.limits.max_attempts, 3);
        assert_eq!(ts.cwd, Path::new("/etc/sgevents"));
        assert!(!c.plugins[0].enabled);
        assert_eq!(c.plugins[0].start_at, Some(StartAt::EventId(2011531)));
        assert_eq!(c.plugins[0].limits.ack_timeout, Duration::from_secs(120));
    }

    #[test]
    fn log_rate_defaults_overrides_and_bounds() {
        let c = parse_ok(&format!(
            "{MINIMAL}[plugins]\nlog_rate = 50\n\
             [plugin.quiet]\ncommand = [\"/bin/true\"]\nlog_rate = 0\n\
             [plugin.plain]\ncommand = [\"/bin/true\"]\n"
        ));
        let rate = |name: &str| {
            c.plugins
                .iter()
                .find(|p| p.name == name)
                .map(|p| p.limits.log_rate)
        };
        assert_eq!(rate("quiet"), Some(0), "0: no limit");
        assert_eq!(rate("plain"), Some(50), "the [plugins] default");
        assert_eq!(PluginLimits::default().log_rate, 1000);
        let err = parse_err(&format!("{MINIMAL}[plugins]\nlog_rate = -1\n"));
        assert!(
            err.contains("`plugins.log_rate` = `-1`: out of range") && err.contains("\nhint: "),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_name_the_file_and_the_key() {
        let err = parse_err(&format!("{MINIMAL}[plugins]\nack_timeuot = \"30s\"\n"));
        assert!(
            err.starts_with("sgevents.toml: invalid configuration"),
            "{err}"
        );
        assert!(err.contains("ack_timeuot"), "{err}");
        assert!(err.contains("\nhint: "), "{err}");
    }

    #[test]
    fn bad_values_name_the_key_and_the_value() {
        let err = parse_err(&format!(
            "{MINIMAL}[plugins]\nack_timeout = \"30 parsecs\"\n"
        ));
        assert!(
            err.starts_with(
                "sgevents.toml: `plugins.ack_timeout` = `\"30 parsecs\"`: not a duration"
            ),
            "{err}"
        );
        assert!(err.contains("hint: write a duration"), "{err}");
        let err = parse_err(&format!("{MINIMAL}[plugins]\nmax_attempts = 0\n"));
        assert!(
            err.contains("`plugins.max_attempts` = `0`: out of range"),
            "{err}"
        );
        let err = parse_err("[source]\nkind = \"kafka\"\n");
        assert!(
            err.contains("`source.kind` = `\"kafka\"`: unknown source kind"),
            "{err}"
        );
        let err = parse_err("[source]\nkind = \"jsonl\"\npath = \"e\"\nstart_at = \"yesterday\"\n");
        assert!(
            err.contains("`source.start_at` = `\"yesterday\"`: not a starting point"),
            "{err}"
        );
        let err = parse_err(
            "[daemon]\nsynchronous = \"off\"\n[source]\nkind = \"jsonl\"\npath = \"e\"\n",
        );
        assert!(err.contains("`daemon.synchronous` = `\"off\"`"), "{err}");
    }

    #[test]
    fn missing_pieces_say_what_to_add() {
        assert!(parse_err("").contains("there is no `[source]` table"));
        let err = parse_err(&format!("{MINIMAL}[plugin.ghost]\nenv = {{ A = \"1\" }}\n"));
        assert!(err.contains("`[plugin.ghost]` has no `command`"), "{err}");
        let err = parse_err(&format!("{MINIMAL}[plugin.x]\ncommand = []\n"));
        assert!(err.contains("empty command"), "{err}");
        let err = parse_err(&format!(
            "{MINIMAL}[plugin.\"bad name\"]\ncommand = [\"x\"]\n"
        ));
        assert!(err.contains("not a valid plugin name"), "{err}");
        let err = parse_err(&format!(
            "{MINIMAL}[plugin.x]\ncommand = [\"x\"]\nscript_name = \"bot\"\n"
        ));
        assert!(err.contains("sets only one of"), "{err}");
    }

    #[test]
    fn credentials_need_a_site_and_a_set_variable() {
        let err = parse_err(&format!(
            "{MINIMAL}[plugin.x]\ncommand = [\"x\"]\nscript_name = \"bot\"\nscript_key_env = \"SGEVENTS_TEST_NO_SUCH_VAR\"\n"
        ));
        assert!(err.contains("names no site"), "{err}");
        let text = "[source]\nkind = \"jsonl\"\npath = \"e\"\nsite_url = \"https://studio.example\"\n\
                    [plugin.x]\ncommand = [\"x\"]\nscript_name = \"bot\"\nscript_key_env = \"SGEVENTS_TEST_NO_SUCH_VAR\"\n";
        let err = parse_err(text);
        assert!(err.contains("`plugin.x.script_key_env` = `\"SGEVENTS_TEST_NO_SUCH_VAR\"`: the environment variable is not set"), "{err}");
    }

    #[test]
    fn environment_and_user_settings() {
        let c = parse_ok(&format!(
            "{MINIMAL}site_url = \"https://s.example\"\n[plugins]\ninherit_env = [\"STUDIO_*\"]\nenv = {{ A = \"1\", B = \"all\" }}\n\
             [plugin.x]\ncommand = [\"x\"]\ninherit_env = [\"OCIO\"]\nenv = {{ B = \"x\" }}\n"
        ));
        let x = &c.plugins[0];
        assert_eq!(x.inherit_env, ["STUDIO_*", "OCIO"]);
        assert_eq!(x.env["A"], "1");
        assert_eq!(x.env["B"], "x");
        assert_eq!(x.user, None);
        let err = parse_err(&format!(
            "{MINIMAL}[plugins]\ninherit_env = [\"BAD-NAME\"]\n"
        ));
        assert!(
            err.contains("`plugins.inherit_env` = `\"BAD-NAME\"`: not a variable name or glob"),
            "{err}"
        );
        let err = parse_err(&format!(
            "{MINIMAL}[plugin.x]\ncommand = [\"x\"]\ngroup = \"anim\"\n"
        ));
        assert!(
            err.contains("`plugin.x.group` = `\"anim\"`: `group` is set without `user`"),
            "{err}"
        );
        let err = parse_err(&format!(
            "{MINIMAL}[plugin.x]\ncommand = [\"x\"]\nuser = \"sgevents-no-such-user\"\n"
        ));
        assert!(
            err.contains(
                "`plugin.x.user` = `\"sgevents-no-such-user\"`: no such user on this machine"
            ),
            "{err}"
        );
        assert!(err.contains("\nhint: "), "{err}");
    }

    #[test]
    fn the_variables_env_keys_name_are_secret() {
        let c = parse_with(
            Path::new("x.toml"),
                            "[source]\nkind = \"shotgrid\"\nurl = \"https://s.example\"\nscript_name = \"d\"\nscript_key_env = \"SRC_KEY\"\n\
                 [plugin.x]\ncommand = [\"x\"]\nscript_name = \"x\"\nscript_key_env = \"X_KEY\"\n\
                 [alerts]\nsmtp_host = \"mail\"\nusername_env = \"MAIL_USER\"\npassword_env = \"MAIL_PASS\"\nfrom = \"a@b.example\"\nto = [\"c@d.example\"]\n"
            ,
            true,
        )
        .expect("valid");
        let want = ["MAIL_PASS", "MAIL_USER", "SRC_KEY", "X_KEY"];
        assert_eq!(c.secret_env.iter().collect::<Vec<_>>(), want);
        assert_eq!(c.plugins[0].withheld_env, c.secret_env);
    }

    #[test]
    fn credentials_are_redacted_in_debug() {
        let c = Credentials {
            site_url: "https://s".into(),
            script_name: "bot".into(),
            script_key: Secret::new("s3cret"),
        };
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("<redacted>"),
            "{shown}"
        );
    }

    #[test]
    fn discovery_order_and_filters() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).expect("mkdir");
        std::fs::create_dir_all(&b).expect("mkdir");
        let make = |p: PathBuf, mode: u32| {
            std::fs::write(&p, "#!/bin/sh\n").expect("write");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        };
        make(a.join("zeta.py"), 0o755);
        make(a.join("Alpha"), 0o755);
        make(a.join("beta.sh"), 0o755);
        make(a.join(".hidden"), 0o755);
        make(a.join("notes.txt"), 0o644);
        std::fs::create_dir(a.join("subdir")).expect("mkdir");
        make(b.join("aardvark"), 0o700);
        let found = discover(&[a.clone(), b.clone(), a.clone()]).expect("readable");
        let names: Vec<String> = found.iter().map(|p| plugin_name(p)).collect();
        assert_eq!(names, ["Alpha", "beta", "zeta", "aardvark"]);

        let text = format!(
            "[source]\nkind = \"jsonl\"\npath = \"e\"\n[plugins]\npaths = [{:?}, {:?}]\n[plugin.beta]\nconfig = {{ x = 1 }}\n[plugin.extra]\ncommand = [\"/bin/cat\"]\n",
            a.display().to_string(),
            b.display().to_string()
        );
        let c = parse(&dir.path().join("sgevents.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<_> = c.plugins.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["Alpha", "beta", "zeta", "aardvark", "extra"]);
        assert_eq!(c.plugins[1].config.get("x"), Some(&Value::from(1)));
        assert_eq!(c.plugins[1].origin, Origin::Discovered(a.join("beta.sh")));
    }

    #[test]
    fn duplicate_stems_and_missing_folders_are_errors() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        for d in [&a, &b] {
            std::fs::create_dir_all(d).expect("mkdir");
            let p = d.join("same.py");
            std::fs::write(&p, "").expect("write");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let text = format!(
            "[source]\nkind = \"jsonl\"\npath = \"e\"\n[plugins]\npaths = [{:?}, {:?}]\n",
            a.display().to_string(),
            b.display().to_string()
        );
        let err = parse(Path::new("x.toml"), &text)
            .expect_err("duplicate")
            .to_string();
        assert!(err.contains("two plugins are named `same`"), "{err}");
        let err = parse(
            Path::new("x.toml"),
            "[source]\nkind = \"jsonl\"\npath = \"e\"\n[plugins]\npaths = [\"/no/such/folder\"]\n",
        )
        .expect_err("missing folder")
        .to_string();
        assert!(
            err.contains("`plugins.paths` = `/no/such/folder`: cannot read the folder"),
            "{err}"
        );
    }

    #[test]
    fn fingerprints_change_with_the_config() {
        let c = parse_ok(&format!(
            "{MINIMAL}[plugin.x]\ncommand = [\"/bin/cat\"]\nconfig = {{ a = 1 }}\n"
        ));
        let d = parse_ok(&format!(
            "{MINIMAL}[plugin.x]\ncommand = [\"/bin/cat\"]\nconfig = {{ a = 2 }}\n"
        ));
        assert_eq!(c.plugins[0].fingerprint(), c.plugins[0].fingerprint());
        assert_ne!(c.plugins[0].fingerprint(), d.plugins[0].fingerprint());
    }

    #[test]
    fn a_shotgrid_source() {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = dir.path().join("key");
        std::fs::write(&key, "s3cret-key\n").expect("write key");
        let text = format!(
            "[source]\nkind = \"shotgrid\"\nurl = \"https://studio.example/\"\nscript_name = \"sgevents\"\n\
             script_key_file = {:?}\nfetch_interval = \"1s\"\nstart_at = \"2026-11-02T10:00:00Z\"\nproxy = \"http://proxy:3128\"\n\
             [plugin.x]\ncommand = [\"x\"]\n",
            key.display().to_string()
        );
        let c = parse(&dir.path().join("sgevents.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
        let SourceConfig::Shotgrid(s) = &c.source else {
            panic!("a shotgrid source")
        };
        assert_eq!(
            s.url, "https://studio.example",
            "the trailing slash is dropped"
        );
        assert_eq!(s.script_key.expose(), "s3cret-key");
        assert_eq!(
            (s.fetch_interval, s.batch_size, s.gap_timeout),
            (Duration::from_secs(1), 500, Duration::from_secs(300))
        );
        assert_eq!(
            s.start_at,
            StartAt::Time(humantime::parse_rfc3339("2026-11-02T10:00:00Z").expect("time"))
        );
        assert!(
            !format!("{c:?}").contains("s3cret-key"),
            "the key never shows in debug output"
        );
        assert_eq!(c.source.site_url(), Some("https://studio.example"));
        assert_eq!(
            (
                s.min_fetch_interval,
                s.fetch_concurrency,
                s.webhook_secret.is_none()
            ),
            (Duration::from_millis(250), 4, true),
            "the defaults"
        );
        let hook = dir.path().join("hook");
        std::fs::write(&hook, "h00k\n").expect("write secret");
        let tuned = text.replace(
            "fetch_interval = \"1s\"\n",
            &format!(
                "fetch_interval = \"1s\"\nmin_fetch_interval = \"5s\"\nfetch_concurrency = 16\nwebhook_secret_file = {:?}\n",
                hook.display().to_string()
            ),
        );
        let c = parse(&dir.path().join("sgevents.toml"), &tuned).unwrap_or_else(|e| panic!("{e}"));
        let SourceConfig::Shotgrid(s) = &c.source else {
            panic!("a shotgrid source")
        };
        assert_eq!(
            s.min_fetch_interval,
            Duration::from_secs(1),
            "capped at fetch_interval"
        );
        assert_eq!(s.fetch_concurrency, 16);
        assert_eq!(s.webhook_secret.as_ref().map(Secret::expose), Some("h00k"));
        assert!(
            c.secrets().iter().any(|v| v == "h00k"),
            "the webhook's secret is redacted"
        );
        let text = "[source]\nkind = \"shotgrid\"\nurl = \"https://s.example\"\nscript_name = \"n\"\nscript_key_file = \"k\"\n";
        let err = parse(Path::new("/x/sgevents.toml"), text)
            .expect_err("missing key file")
            .to_string();
        assert!(
            err.contains("`source.script_key_file` = `/x/k`: cannot read it"),
            "{err}"
        );
    }

    #[test]
    fn shotgrid_source_errors() {
        let base = "[source]\nkind = \"shotgrid\"\nurl = \"https://s.example\"\nscript_name = \"sgevents\"\n";
        let err = parse_err(base);
        assert!(err.contains("the script's key is missing"), "{err}");
        let err = parse_err(&format!(
            "{base}script_key_env = \"SGEVENTS_TEST_UNSET_KEY\"\n"
        ));
        assert!(err.contains("`source.script_key_env` = `\"SGEVENTS_TEST_UNSET_KEY\"`: the environment variable is not set"), "{err}");
        let err = parse_err(&format!(
            "{base}script_key_env = \"A\"\nscript_key_file = \"B\"\n"
        ));
        assert!(
            err.contains("both `source.script_key_env` and `source.script_key_file`"),
            "{err}"
        );
        let keyed = format!("{base}script_key_env = \"PATH\"\n");
        let err = parse_err(&format!("{keyed}fetch_concurrency = 17\n"));
        assert!(
            err.contains("`source.fetch_concurrency` = `17`: out of range"),
            "{err}"
        );
        let err = parse_err(&format!(
            "{keyed}webhook_secret_env = \"SGEVENTS_TEST_UNSET_HOOK\"\n"
        ));
        assert!(
            err.contains("`source.webhook_secret_env` = `\"SGEVENTS_TEST_UNSET_HOOK\"`: the environment variable is not set"),
            "{err}"
        );
        let err = parse_err(&format!(
            "{keyed}webhook_secret_env = \"A\"\nwebhook_secret_file = \"B\"\n"
        ));
        assert!(
            err.contains("both `source.webhook_secret_env` and `source.webhook_secret_file`"),
            "{err}"
        );
        let err =
            parse_err("[source]\nkind = \"shotgrid\"\nurl = \"mystudio\"\nscript_name = \"n\"\n");
        assert!(
            err.contains("`source.url` = `\"mystudio\"`: not an http(s) URL"),
            "{err}"
        );
        let err = parse_err(&format!("{base}path = \"events.jsonl\"\n"));
        assert!(
            err.contains("`source.path` does not apply to kind = \"shotgrid\""),
            "{err}"
        );
        let err = parse_err("[source]\nkind = \"jsonl\"\npath = \"e\"\nurl = \"https://s\"\n");
        assert!(
            err.contains("`source.url` does not apply to kind = \"jsonl\""),
            "{err}"
        );
        let err = parse_err(
            "[source]\nkind = \"jsonl\"\npath = \"e\"\nstart_at = \"2026-11-02T10:00:00Z\"\n",
        );
        assert!(
            err.contains("only the ShotGrid source understands"),
            "{err}"
        );
        let err = parse_err(&format!(
            "{MINIMAL}[plugin.x]\ncommand = [\"x\"]\nstart_at = \"2026-11-02T10:00:00Z\"\n"
        ));
        assert!(
            err.contains("`plugin.x.start_at`"),
            "a plugin cannot start at a time: {err}"
        );
    }

    #[test]
    fn http_listens_on_loopback_by_default_and_elsewhere_only_when_allowed() {
        let c = parse_ok(MINIMAL);
        assert_eq!(
            c.http,
            HttpConfig {
                listen: Some("127.0.0.1:9750".parse().expect("address")),
                listen_set: false,
                allow_remote: false,
            }
        );
        let c = parse_ok(&format!("{MINIMAL}[http]\nlisten = \"\"\n"));
        assert_eq!(c.http.listen, None);
        let c = parse_ok(&format!("{MINIMAL}[http]\nlisten = \"[::1]:0\"\n"));
        assert_eq!(c.http.listen, Some("[::1]:0".parse().expect("address")));
        assert!(c.http.listen_set);
        let err = parse_err(&format!("{MINIMAL}[http]\nlisten = \"0.0.0.0:9750\"\n"));
        assert!(
            err.contains("`http.listen` = `\"0.0.0.0:9750\"`: not a loopback address")
                && err.contains("hint: "),
            "{err}"
        );
        let c = parse_ok(&format!(
            "{MINIMAL}[http]\nlisten = \"0.0.0.0:9750\"\nallow_remote = true\n"
        ));
        assert!(c.http.allow_remote);
        let err = parse_err(&format!("{MINIMAL}[http]\nlisten = \"localhost\"\n"));
        assert!(
            err.contains("`http.listen` = `\"localhost\"`: not an IP address with a port"),
            "{err}"
        );
    }
}
