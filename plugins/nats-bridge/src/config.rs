//! The bridge's configuration (its `[plugin.NAME] config = {...}` table, handed over in `hello`),
//! the site name, and the subject template.
//!
//! Everything is checked at `hello`: a bad key or value is answered with `fatal` naming it, so a
//! typo never turns into events published where nobody reads them.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use sgevents_sdk::protocol::{Event, MAX_IN_FLIGHT_LIMIT, Subscription};
use sgevents_sdk::{Map, Value};

/// The window when the configuration names none: enough publishes in flight to hide the round
/// trip to the server, small enough for the daemon's window arithmetic.
pub(crate) const DEFAULT_MAX_IN_FLIGHT: u32 = 256;

/// The subject template when the configuration names none.
pub(crate) const DEFAULT_SUBJECT: &str = "sgevents.{site}.{event_type}";

/// The placeholders a subject template may use.
const PLACEHOLDERS: &[&str] = &[
    "site",
    "event_type",
    "project_id",
    "entity_type",
    "entity_id",
];

/// The raw table, as the operator wrote it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    url: Option<Urls>,
    #[serde(default)]
    creds_file: Option<PathBuf>,
    #[serde(default)]
    user_env: Option<String>,
    #[serde(default)]
    password_env: Option<String>,
    #[serde(default)]
    token_env: Option<String>,
    #[serde(default)]
    tls: Option<RawTls>,
    #[serde(default)]
    site: Option<String>,
    #[serde(default)]
    stream: Option<String>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    subscriptions: Option<Vec<Subscription>>,
    #[serde(default)]
    max_in_flight: Option<u32>,
    #[serde(default)]
    publish_timeout: Option<String>,
    #[serde(default)]
    create_stream: Option<bool>,
    #[serde(default)]
    stream_subjects: Option<Vec<String>>,
    #[serde(default)]
    max_age: Option<String>,
    #[serde(default)]
    max_bytes: Option<i64>,
    #[serde(default)]
    replicas: Option<usize>,
    #[serde(default)]
    duplicate_window: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Urls {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_file: PathBuf,
}

/// How the bridge signs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Auth {
    /// No credentials.
    None,
    /// A `.creds` file (JWT and nkey seed).
    CredsFile(PathBuf),
    /// A user and password, read from the environment.
    UserPassword(String, String),
    /// A token, read from the environment.
    Token(String),
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) urls: Vec<String>,
    pub(crate) auth: Auth,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) site: String,
    pub(crate) stream: String,
    pub(crate) subject: Template,
    pub(crate) subscriptions: Vec<Subscription>,
    pub(crate) max_in_flight: u32,
    pub(crate) publish_timeout: Duration,
    pub(crate) create_stream: bool,
    pub(crate) stream_subjects: Vec<String>,
    pub(crate) max_age: Duration,
    pub(crate) max_bytes: i64,
    pub(crate) replicas: usize,
    pub(crate) duplicate_window: Duration,
}

impl Config {
    /// Reads `config` (from `hello`); `site_url` is `SGEVENTS_SITE_URL` when the daemon set it,
    /// `env` reads the variables the credentials keys name.
    pub(crate) fn parse(
        config: &Map<String, Value>,
        site_url: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, String> {
        let raw: Raw = serde_json::from_value(Value::Object(config.clone())).map_err(|e| {
            format!(
                "invalid nats-bridge configuration: {e}\nhint: see plugins/nats-bridge/README.md \
                 for the keys of its `config` table"
            )
        })?;
        let urls = match raw.url {
            None => vec!["nats://127.0.0.1:4222".to_owned()],
            Some(Urls::One(url)) => vec![url],
            Some(Urls::Many(urls)) => urls,
        };
        if urls.is_empty() || urls.iter().any(|u| u.trim().is_empty()) {
            return Err(format!(
                "config `url` `{urls:?}` names no server\nhint: give `url = \"nats://host:4222\"` \
                 or a list of the cluster's servers"
            ));
        }
        let var = |key: &str, name: &Option<String>| -> Result<Option<String>, String> {
            let Some(name) = name else { return Ok(None) };
            match env(name).filter(|v| !v.is_empty()) {
                Some(value) => Ok(Some(value)),
                None => Err(format!(
                    "config `{key}` names the environment variable `{name}`, which is not set\n\
                     hint: pass it to the plugin: `env` or `inherit_env = [\"{name}\"]` in its \
                     `[plugin.NAME]` table"
                )),
            }
        };
        let user = var("user_env", &raw.user_env)?;
        let password = var("password_env", &raw.password_env)?;
        let token = var("token_env", &raw.token_env)?;
        let auth = match (raw.creds_file, user, password, token) {
            (None, None, None, None) => Auth::None,
            (Some(file), None, None, None) => Auth::CredsFile(file),
            (None, Some(user), Some(password), None) => Auth::UserPassword(user, password),
            (None, None, None, Some(token)) => Auth::Token(token),
            _ => {
                return Err(
                    "config names more than one way to sign in (or `user_env` without \
                            `password_env`)\nhint: give one of `creds_file`, `user_env` with \
                            `password_env`, or `token_env`"
                        .to_owned(),
                );
            }
        };
        let site = match raw.site {
            Some(site) => {
                let clean = sanitize(&site);
                if clean != site || site.is_empty() {
                    return Err(format!(
                        "config `site` `{site}` is not a single NATS subject token\nhint: use \
                         letters, digits, `_` and `-` only, such as `{}`",
                        if clean.is_empty() { "mystudio" } else { &clean }
                    ));
                }
                site
            }
            None => site_from_url(site_url),
        };
        let stream = raw.stream.unwrap_or_else(|| "SGEVENTS".to_owned());
        if stream.is_empty() || sanitize(&stream) != stream {
            return Err(format!(
                "config `stream` `{stream}` is not a valid stream name\nhint: use letters, \
                 digits, `_` and `-` only, such as `SGEVENTS`"
            ));
        }
        let subject = Template::parse(raw.subject.as_deref().unwrap_or(DEFAULT_SUBJECT))?;
        let subscriptions = raw
            .subscriptions
            .unwrap_or_else(|| vec![Subscription::new("all", ["*"])]);
        let max_in_flight = raw.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT);
        if !(1..=MAX_IN_FLIGHT_LIMIT).contains(&max_in_flight) {
            return Err(format!(
                "config `max_in_flight` `{max_in_flight}` is out of range\nhint: give 1 to \
                 {MAX_IN_FLIGHT_LIMIT} (default {DEFAULT_MAX_IN_FLIGHT})"
            ));
        }
        let duration = |key: &str, value: Option<String>, default: Duration| match value {
            None => Ok(default),
            Some(text) => humantime::parse_duration(&text).map_err(|e| {
                format!(
                    "config `{key}` `{text}` is not a duration: {e}\nhint: write it like \"2m\", \
                     \"7days\" or \"500ms\""
                )
            }),
        };
        let publish_timeout = duration(
            "publish_timeout",
            raw.publish_timeout,
            Duration::from_secs(5),
        )?;
        if publish_timeout.is_zero() {
            return Err(
                "config `publish_timeout` `0s` is too short\nhint: give the longest \
                        wait for JetStream's acknowledgement, such as \"5s\""
                    .to_owned(),
            );
        }
        let stream_subjects = match raw.stream_subjects {
            Some(subjects) if !subjects.is_empty() => subjects,
            Some(_) => {
                return Err(
                    "config `stream_subjects` is empty\nhint: list the subjects the \
                            stream stores, such as [\"sgevents.>\"], or leave it out"
                        .to_owned(),
                );
            }
            None => vec![subject.stream_subject().ok_or_else(|| {
                format!(
                    "config `subject` `{}` starts with a placeholder, so no stream subject can be \
                     derived from it\nhint: set `stream_subjects`, or start the subject with a \
                     fixed token such as `sgevents.`",
                    subject.text
                )
            })?],
        };
        let duplicate_window = duration(
            "duplicate_window",
            raw.duplicate_window,
            Duration::from_secs(120),
        )?;
        if duplicate_window < Duration::from_secs(1) {
            return Err(format!(
                "config `duplicate_window` `{}` is too short\nhint: redeliveries after a crash \
                 are stored once only inside this window; keep 2 minutes or more",
                humantime::format_duration(duplicate_window)
            ));
        }
        let replicas = raw.replicas.unwrap_or(1);
        if !(1..=5).contains(&replicas) {
            return Err(format!(
                "config `replicas` `{replicas}` is out of range\nhint: JetStream keeps 1 to 5 \
                 copies; 3 on a 3-node cluster"
            ));
        }
        Ok(Config {
            urls,
            auth,
            ca_file: raw.tls.map(|t| t.ca_file),
            site,
            stream,
            subject,
            subscriptions,
            max_in_flight,
            publish_timeout,
            create_stream: raw.create_stream.unwrap_or(true),
            stream_subjects,
            max_age: duration("max_age", raw.max_age, Duration::ZERO)?,
            max_bytes: raw.max_bytes.unwrap_or(-1),
            replicas,
            duplicate_window,
        })
    }
}

/// The site's name in subjects and message ids: the first label of the host of `site_url`
/// (`mystudio` for `https://mystudio.shotgrid.autodesk.com`), sanitized; `default` without one.
pub(crate) fn site_from_url(site_url: Option<&str>) -> String {
    let host = site_url
        .map(|url| url.split_once("://").map_or(url, |(_, rest)| rest))
        .map(|rest| rest.split(['/', ':', '?', '#']).next().unwrap_or_default())
        .map(|host| host.rsplit('@').next().unwrap_or_default())
        .map(|host| host.split('.').next().unwrap_or_default())
        .map(sanitize)
        .unwrap_or_default();
    if host.is_empty() {
        "default".to_owned()
    } else {
        host
    }
}

/// `text` as one NATS subject token: every character but ASCII letters, digits, `_` and `-`
/// (dots, spaces, the wildcards `*` and `>`, anything else) becomes `_`.
pub(crate) fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A part of a subject template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Placeholder(String),
}

/// A subject template such as `sgevents.{site}.{event_type}`.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    text: String,
    parts: Vec<Part>,
}

impl Template {
    /// Parses and checks a template: known placeholders, and a valid subject once filled.
    pub(crate) fn parse(text: &str) -> Result<Template, String> {
        let bad = |why: &str| {
            format!(
                "config `subject` `{text}` {why}\nhint: write dot-separated tokens with the \
                 placeholders {}, such as `{DEFAULT_SUBJECT}`",
                PLACEHOLDERS
                    .iter()
                    .map(|p| format!("{{{p}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let Some(close) = rest[open..].find('}') else {
                return Err(bad("has a `{` without its `}`"));
            };
            let name = &rest[open + 1..open + close];
            if !PLACEHOLDERS.contains(&name) {
                return Err(bad(&format!("has an unknown placeholder `{{{name}}}`")));
            }
            parts.push(Part::Placeholder(name.to_owned()));
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return Err(bad("has a `}` without its `{`"));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        let template = Template {
            text: text.to_owned(),
            parts,
        };
        // Placeholders are filled with one token's characters, so checking a sample checks all.
        let sample = template.render_with(|_| "x".to_owned());
        let valid = !sample.is_empty()
            && sample.split('.').all(|token| {
                !token.is_empty()
                    && token
                        .chars()
                        .all(|c| !c.is_whitespace() && c != '*' && c != '>')
            });
        if !valid {
            return Err(bad(
                "is not a valid subject (empty token, space or wildcard)",
            ));
        }
        Ok(template)
    }

    /// The template as written.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// The subject of `event`; every value is one sanitized token, `none` when the event has none.
    pub(crate) fn render(&self, site: &str, event: &Event) -> String {
        self.render_with(|name| {
            let value = match name {
                "site" => site.to_owned(),
                "event_type" => event.event_type.clone(),
                "project_id" => event
                    .project_id()
                    .map(|id| id.to_string())
                    .unwrap_or_default(),
                "entity_type" => event.entity_type().unwrap_or_default().to_owned(),
                "entity_id" => event
                    .entity
                    .as_ref()
                    .map(|e| e.id)
                    .or_else(|| event.meta.get("entity_id").and_then(Value::as_i64))
                    .map(|id| id.to_string())
                    .unwrap_or_default(),
                _ => String::new(),
            };
            let clean = sanitize(&value);
            if clean.is_empty() {
                "none".to_owned()
            } else {
                clean
            }
        })
    }

    fn render_with(&self, value: impl Fn(&str) -> String) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Placeholder(name) => out.push_str(&value(name)),
            }
        }
        out
    }

    /// The subject a new stream stores: the fixed tokens before the first placeholder, then
    /// `>` (`sgevents.>` for the default template); `None` when the first token is not fixed.
    pub(crate) fn stream_subject(&self) -> Option<String> {
        let fixed = match self.parts.first() {
            Some(Part::Text(text)) => text.as_str(),
            _ => return None,
        };
        let has_placeholder = self.parts.len() > 1;
        if !has_placeholder {
            return Some(fixed.to_owned());
        }
        // The tokens that are whole before the first placeholder.
        let whole = fixed.rsplit_once('.').map(|(head, _)| head)?;
        Some(format!("{whole}.>"))
    }
}

#[cfg(test)]
mod tests {
    use sgevents_sdk::EntityLink;

    use super::*;

    fn parse(json: Value) -> Result<Config, String> {
        let Value::Object(map) = json else {
            panic!("an object")
        };
        Config::parse(&map, None, |name| {
            (name == "NATS_TOKEN").then(|| "s3cr3t".to_owned())
        })
    }

    #[test]
    fn defaults() {
        let c = parse(serde_json::json!({})).expect("valid");
        assert_eq!(c.urls, ["nats://127.0.0.1:4222"]);
        assert_eq!(c.stream, "SGEVENTS");
        assert_eq!(c.site, "default");
        assert_eq!(c.max_in_flight, 256);
        assert_eq!(c.stream_subjects, ["sgevents.>"]);
        assert_eq!(c.duplicate_window, Duration::from_secs(120));
        assert!(c.create_stream);
        assert_eq!(c.subscriptions.len(), 1);
        assert_eq!(c.auth, Auth::None);
    }

    #[test]
    fn the_site_comes_from_the_config_or_the_site_url() {
        assert_eq!(
            site_from_url(Some("https://mystudio.shotgrid.autodesk.com")),
            "mystudio"
        );
        assert_eq!(site_from_url(Some("http://127.0.0.1:8080/x")), "127");
        assert_eq!(site_from_url(Some("https://my studio*.x")), "my_studio_");
        assert_eq!(site_from_url(None), "default");
        let c = parse(serde_json::json!({"site": "forest"})).expect("valid");
        assert_eq!(c.site, "forest");
        let err = parse(serde_json::json!({"site": "a.b"})).expect_err("a dot");
        assert!(err.contains("`a.b`") && err.contains("\nhint: "), "{err}");
    }

    #[test]
    fn subjects() {
        let t = Template::parse("sgevents.{site}.{project_id}.{entity_type}.{entity_id}")
            .expect("valid");
        let mut event = Event::new(7, "Shotgun_Task_Change");
        event.entity = Some(EntityLink::new("Task", 42, "Anim"));
        event.project = Some(EntityLink::new("Project", 66, "Forest"));
        assert_eq!(t.render("mystudio", &event), "sgevents.mystudio.66.Task.42");
        let bare = Event::new(8, "Shotgun_User.Login *");
        assert_eq!(
            Template::parse(DEFAULT_SUBJECT)
                .expect("valid")
                .render("s", &bare),
            "sgevents.s.Shotgun_User_Login__"
        );
        assert_eq!(t.render("s", &bare), "sgevents.s.none.none.none");
        assert_eq!(t.stream_subject().as_deref(), Some("sgevents.>"));
        assert_eq!(
            Template::parse("a.b.{site}x")
                .expect("valid")
                .stream_subject()
                .as_deref(),
            Some("a.b.>")
        );
        assert_eq!(
            Template::parse("a.b{site}")
                .expect("valid")
                .stream_subject()
                .as_deref(),
            Some("a.>")
        );
        assert_eq!(
            Template::parse("{site}.x").expect("valid").stream_subject(),
            None
        );
        for bad in [
            "sgevents.{nope}",
            "sgevents.{site",
            "a..b",
            "a.*",
            "a b",
            "",
        ] {
            let err = Template::parse(bad).expect_err(bad);
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
    }

    #[test]
    fn bad_values_are_named() {
        let err = parse(serde_json::json!({"max_in_flight": 5000})).expect_err("too wide");
        assert!(err.contains("`5000`"), "{err}");
        let err = parse(serde_json::json!({"urls": "x"})).expect_err("unknown key");
        assert!(err.contains("`urls`"), "{err}");
        let err = parse(serde_json::json!({"user_env": "NATS_USER", "password_env": "NATS_PW"}))
            .expect_err("unset");
        assert!(err.contains("`NATS_USER`"), "{err}");
        let c = parse(serde_json::json!({"token_env": "NATS_TOKEN"})).expect("set");
        assert_eq!(c.auth, Auth::Token("s3cr3t".into()));
        let err = parse(serde_json::json!({"max_age": "forever"})).expect_err("not a duration");
        assert!(err.contains("`forever`"), "{err}");
        let err = parse(serde_json::json!({"subject": "{site}.x"})).expect_err("no prefix");
        assert!(err.contains("stream_subjects"), "{err}");
    }
}
