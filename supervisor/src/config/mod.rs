//! Configuration: the raw TOML layer (serde, unknown keys refused) and the validated [`Config`]
//! that the rest of the daemon uses. Validation happens once, here; every error names the file,
//! the key and the offending value, and says what to do in a `hint:` line.
//!
//! Relative paths (`state_dir`, the source's `path`, `plugins.paths`) are resolved against the
//! directory that holds the configuration file, and plugins run with that directory as their
//! working directory, so a configuration behaves the same wherever `sgevents` is started from.

//!
//! - [`raw`]: exactly what the TOML file says (serde, `deny_unknown_fields`);
//! - [`types`]: the validated [`Config`] and its parts, re-exported here;
//! - [`validate`]: raw → typed, with every error and its hint;
//! - [`discover`]: finding plugin executables and shotgunEvents plugin files in folders.

mod discover;
mod raw;
mod types;
mod validate;

#[cfg(test)]
pub(crate) mod tests;

use std::fmt;
use std::path::Path;

pub(crate) use discover::is_editor_temp;
pub use discover::{discover, discover_legacy, not_executable, not_executable_note, plugin_name};
pub use types::*;

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
    pub(super) fn at(
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

    pub(super) fn plain(file: &Path, problem: impl fmt::Display, hint: &str) -> ConfigError {
        ConfigError {
            message: format!("{}: {problem}\nhint: {hint}", file.display()),
        }
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
    validate::parse_mode(file, text, skip_secrets, false)
}
