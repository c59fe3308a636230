//! The raw layer: exactly what the TOML file says, read by serde with unknown keys refused
//! (`deny_unknown_fields` on every table). Nothing here is checked beyond its type; [`super::validate`]
//! turns it into the typed [`super::Config`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::de::{DeserializeOwned, IgnoredAny, Visitor};
use serde::{Deserialize, Deserializer};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) daemon: RawDaemon,
    pub(super) source: Option<RawSource>,
    #[serde(default)]
    pub(super) plugins: RawPlugins,
    #[serde(default)]
    pub(super) plugin: BTreeMap<String, RawPlugin>,
    pub(super) alerts: Option<RawAlerts>,
    #[serde(default)]
    pub(super) http: RawHttp,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub(super) listen: Option<String>,
    pub(super) allow_remote: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    pub(super) state_dir: Option<PathBuf>,
    pub(super) synchronous: Option<String>,
    pub(super) journal_retention: Option<String>,
    pub(super) prune_interval: Option<String>,
    pub(super) exit_when_idle: Option<bool>,
    pub(super) commit_interval: Option<String>,
    pub(super) log_level: Option<String>,
    pub(super) log_dir: Option<PathBuf>,
    pub(super) log_retention: Option<i64>,
    pub(super) log_per_plugin: Option<bool>,
    pub(super) log_format: Option<String>,
    pub(super) timing_log: Option<bool>,
}

/// `[source]`: one variant per `kind`, each refusing the keys it does not know, the other kind's
/// included ([`super::validate`] says those in the words of the kind).
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(super) enum RawSource {
    /// `kind = "jsonl"`: a file of events.
    Jsonl(RawJsonl),
    /// `kind = "shotgrid"`: a ShotGrid site's event log.
    Shotgrid(Box<RawShotgrid>),
}

impl RawSource {
    /// Every `kind`.
    pub(super) const KINDS: [&'static str; 2] = ["jsonl", "shotgrid"];

    /// The keys a `[source]` of `kind` accepts, or `None` for no such kind.
    pub(super) fn keys(kind: &str) -> Option<&'static [&'static str]> {
        match kind {
            "jsonl" => Some(keys_of::<RawJsonl>()),
            "shotgrid" => Some(keys_of::<RawShotgrid>()),
            _ => None,
        }
    }

    /// Reads the `[source]` of `text` as the variant `kind` names, alone and straight from the
    /// text: serde's error then points at the offending line, where through the tag it points at
    /// the `[source]` header. `None` when it reads (or there is no such kind).
    pub(super) fn error_alone(kind: &str, text: &str) -> Option<toml::de::Error> {
        #[derive(Deserialize)]
        struct Alone<T> {
            #[serde(rename = "source")]
            _source: T,
        }
        match kind {
            "jsonl" => toml::from_str::<Alone<RawJsonl>>(text).err(),
            "shotgrid" => toml::from_str::<Alone<RawShotgrid>>(text).err(),
            _ => None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJsonl {
    /// Taken by the tag when read as a [`RawSource`]; here so that the variant can be read alone
    /// ([`RawSource::error_alone`]).
    #[serde(rename = "kind")]
    _kind: Option<IgnoredAny>,
    pub(super) path: Option<PathBuf>,
    pub(super) follow: Option<bool>,
    pub(super) poll_interval: Option<String>,
    pub(super) site_url: Option<String>,
    pub(super) start_at: Option<toml::Value>,
    pub(super) batch_size: Option<i64>,
    pub(super) max_event_bytes: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawShotgrid {
    /// Taken by the tag when read as a [`RawSource`]; here so that the variant can be read alone
    /// ([`RawSource::error_alone`]).
    #[serde(rename = "kind")]
    _kind: Option<IgnoredAny>,
    pub(super) url: Option<String>,
    pub(super) script_name: Option<String>,
    pub(super) script_key_env: Option<String>,
    pub(super) script_key_file: Option<PathBuf>,
    pub(super) fetch_interval: Option<String>,
    pub(super) min_fetch_interval: Option<String>,
    pub(super) fetch_concurrency: Option<i64>,
    pub(super) webhook_secret_env: Option<String>,
    pub(super) webhook_secret_file: Option<PathBuf>,
    pub(super) gap_timeout: Option<String>,
    pub(super) proxy: Option<String>,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) request_timeout: Option<String>,
    pub(super) alert_after: Option<String>,
    pub(super) start_at: Option<toml::Value>,
    pub(super) batch_size: Option<i64>,
    pub(super) max_event_bytes: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlugins {
    #[serde(default)]
    pub(super) paths: Vec<PathBuf>,
    #[serde(default)]
    pub(super) legacy_paths: Vec<PathBuf>,
    pub(super) legacy_command: Option<Vec<String>>,
    #[serde(default)]
    pub(super) legacy_env: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) env: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) inherit_env: Vec<String>,
    pub(super) use_session_uuid: Option<bool>,
    pub(super) ack_timeout: Option<String>,
    pub(super) max_attempts: Option<i64>,
    pub(super) handshake_timeout: Option<String>,
    pub(super) ping_interval: Option<String>,
    pub(super) shutdown_drain: Option<String>,
    pub(super) stop_grace: Option<String>,
    pub(super) restart_delay: Option<String>,
    pub(super) restart_delay_max: Option<String>,
    pub(super) log_rate: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlugin {
    pub(super) command: Option<Vec<String>>,
    #[serde(default)]
    pub(super) env: BTreeMap<String, String>,
    pub(super) config: Option<toml::Table>,
    pub(super) enabled: Option<bool>,
    pub(super) start_at: Option<toml::Value>,
    pub(super) script_name: Option<String>,
    pub(super) script_key_env: Option<String>,
    pub(super) ack_timeout: Option<String>,
    pub(super) max_attempts: Option<i64>,
    pub(super) log_rate: Option<i64>,
    pub(super) restart_delay: Option<String>,
    pub(super) restart_delay_max: Option<String>,
    pub(super) alert_to: Option<Vec<String>>,
    #[serde(default)]
    pub(super) after: Vec<String>,
    #[serde(default)]
    pub(super) inherit_env: Vec<String>,
    pub(super) user: Option<String>,
    pub(super) group: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerts {
    pub(super) smtp_host: Option<String>,
    pub(super) smtp_port: Option<i64>,
    pub(super) tls: Option<String>,
    pub(super) username_env: Option<String>,
    pub(super) password_env: Option<String>,
    pub(super) from: Option<String>,
    pub(super) to: Option<Vec<String>>,
    pub(super) subject_prefix: Option<String>,
    pub(super) rate_limit: Option<String>,
    pub(super) ca_file: Option<PathBuf>,
}

/// The keys a table read as `T` accepts, as serde's derive declares them: `T` is asked to read
/// itself from a deserializer that only records the field names it is given.
fn keys_of<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Keys<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for Keys<'_> {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a table"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(serde::de::Error::custom("keys recorded"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }

    let mut keys: &'static [&'static str] = &[];
    // Always an error: the point is what it recorded on the way.
    let _ = T::deserialize(Keys(&mut keys));
    keys
}
