//! The text of the mails: subjects, bodies, digests, with secrets redacted.

use std::path::PathBuf;
use std::time::Duration;

use lettre::Message;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;

use super::limiter::Mail;
use super::{Alert, MAX_LISTED, MAX_TEXT, Stamped};
use crate::config::{Config, SourceConfig};

/// A composed mail: subject and plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Letter {
    pub(super) subject: String,
    pub(super) body: String,
}

/// What every mail needs to know about the daemon.
#[derive(Debug, Clone)]
pub(super) struct Text {
    pub(super) prefix: String,
    pub(super) host: String,
    pub(super) from: String,
    /// The configuration file, absolute, for the commands the mails suggest.
    pub(super) config_file: PathBuf,
    /// Strings never to be mailed: the SMTP password and the ShotGrid script keys.
    pub(super) secrets: Vec<String>,
}

impl Text {
    pub(super) fn of(config: &Config, host: String) -> Text {
        let mut secrets = Vec::new();
        if let Some(c) = config.alerts.as_ref().and_then(|a| a.credentials.as_ref()) {
            secrets.push(c.password.expose().to_owned());
        }
        if let SourceConfig::Shotgrid(s) = &config.source {
            secrets.push(s.script_key.expose().to_owned());
        }
        for p in &config.plugins {
            if let Some(c) = &p.credentials {
                secrets.push(c.script_key.expose().to_owned());
            }
        }
        // A very short "secret" would redact ordinary words; such a key is no protection anyway.
        secrets.retain(|s| s.len() >= 4);
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let config_file =
            std::fs::canonicalize(&config.file).unwrap_or_else(|_| config.file.clone());
        let alerts = config.alerts.as_ref();
        Text {
            prefix: alerts.map_or_else(|| "[sgevents]".to_owned(), |a| a.subject_prefix.clone()),
            host,
            from: alerts.map(|a| a.from.clone()).unwrap_or_default(),
            config_file,
            secrets,
        }
    }

    pub(super) fn redact(&self, text: &str) -> String {
        self.secrets
            .iter()
            .fold(text.to_owned(), |t, s| t.replace(s.as_str(), "<redacted>"))
    }

    /// The subject and body of a mail.
    pub(super) fn letter(&self, mail: &Mail, window: Duration) -> Letter {
        let cli = format!("sgevents -c {}", self.config_file.display());
        let mut commands: Vec<String> = Vec::new();
        let alone = mail.alerts.len() == 1;
        for s in &mail.alerts {
            for c in s.alert.commands(alone) {
                let c = format!("{cli} {c}");
                if !commands.contains(&c) {
                    commands.push(c);
                }
            }
        }
        let (subject, mut body) = if let ([one], 0) = (mail.alerts.as_slice(), mail.omitted) {
            let subject = format!("{} {}: {}", self.prefix, self.host, one.alert.headline());
            (subject, self.single(one))
        } else {
            self.digest(mail, window)
        };
        if mail.dropped > 0 {
            body.push_str(&format!(
                "\n{} more alert(s) were dropped because they came faster than the daemon could queue them; the daemon's log has each of them.\n",
                mail.dropped
            ));
        }
        body.push_str("\nWhat to do next:\n");
        for c in &commands {
            body.push_str(&format!("  {c}\n"));
        }
        body.push_str(&format!(
            "\n-- \nsgevents on {}, configuration {}.\nTo change who gets these mails, edit [alerts] `to`, or `alert_to` in a plugin's table.\n",
            self.host,
            self.config_file.display()
        ));
        Letter {
            subject: self.redact(&subject),
            body: self.redact(&body),
        }
    }

    pub(super) fn single(&self, one: &Stamped) -> String {
        let at = humantime::format_rfc3339_seconds(one.at);
        let (what, why, meaning) = match &one.alert {
            Alert::PluginDisabled { plugin, reason } => (
                format!("Plugin `{plugin}` on {} was disabled at {at}.", self.host),
                format!("Reason: {}", clip(reason)),
                "It receives no events until it is enabled again. Its position is kept: nothing after it is skipped, and it resumes where it stopped. Read its log lines before this moment in the daemon's log, fix the cause, then enable it.",
            ),
            Alert::CrashLoop { plugin, reason } => (
                format!(
                    "Plugin `{plugin}` on {} kept crashing and was disabled at {at}.",
                    self.host
                ),
                format!("Last crash: {}", clip(reason)),
                "It receives no events until it is enabled again. Its position is kept: nothing after it is skipped. Read its log lines (its stderr) in the daemon's log, fix the cause, then enable it.",
            ),
            Alert::EventFailed {
                plugin,
                event_id,
                error,
            } => (
                format!(
                    "Plugin `{plugin}` on {} gave up on event {event_id} at {at}.",
                    self.host
                ),
                format!("Error: {}", clip(error)),
                "The plugin moved on to the next events. This one is kept in failed_events, and the journal keeps it until it is retried or dropped: once the cause is fixed, retry it.",
            ),
            Alert::SourceFailing { since, error } => (
                format!(
                    "The event source of sgevents on {} has been failing for {} (as of {at}).",
                    self.host,
                    humantime::format_duration(Duration::from_secs(since.as_secs()))
                ),
                format!("Last error: {}", clip(error)),
                "Plugins go on with what is already journaled. The source keeps retrying and, once it can read again, catches up from where it stopped: nothing is lost. Check the site's status, the network and the proxy from this machine; the daemon's log has each failure with a hint.",
            ),
        };
        format!("{what}\n\n{why}\n\n{meaning}\n")
    }

    pub(super) fn digest(&self, mail: &Mail, window: Duration) -> (String, String) {
        let total = mail.alerts.len() as u64 + mail.omitted;
        let mut counts: Vec<(&str, &str, usize)> = Vec::new();
        for s in &mail.alerts {
            let (one, many) = s.alert.kind();
            match counts.iter_mut().find(|c| c.0 == one) {
                Some(c) => c.2 += 1,
                None => counts.push((one, many, 1)),
            }
        }
        let summary = counts
            .iter()
            .map(|(one, many, n)| format!("{n} {}", if *n == 1 { one } else { many }))
            .collect::<Vec<_>>()
            .join(", ");
        let subject = format!(
            "{} {}: {total} alerts ({summary}{})",
            self.prefix,
            self.host,
            if mail.omitted > 0 { ", ..." } else { "" }
        );
        let mut body = format!(
            "{total} alerts from sgevents on {}. To keep mail down, these recipients get at most one mail per {}: what comes in between is collected in one digest like this one.\n\n",
            self.host,
            humantime::format_duration(window)
        );
        for s in mail.alerts.iter().take(MAX_LISTED) {
            body.push_str(&format!(
                "- {}  {}\n",
                humantime::format_rfc3339_seconds(s.at),
                s.alert.line()
            ));
        }
        let unlisted = mail.alerts.len().saturating_sub(MAX_LISTED) as u64 + mail.omitted;
        if unlisted > 0 {
            body.push_str(&format!(
                "- and {unlisted} more, not listed here (the daemon's log has each of them)\n"
            ));
        }
        (subject, body)
    }

    pub(super) fn message(&self, to: &[String], letter: &Letter) -> Result<Message, String> {
        let from: Mailbox = self
            .from
            .parse()
            .map_err(|e| format!("`alerts.from` = `{}`: {e}", self.from))?;
        let mut builder = Message::builder()
            .from(from)
            .subject(letter.subject.clone())
            .message_id(Some(format!(
                "<{:016x}.{}@{}>",
                fastrand::u64(..),
                std::process::id(),
                self.host
            )));
        for address in to {
            let mailbox: Mailbox = address
                .parse()
                .map_err(|e| format!("`{address}` is not an email address: {e}"))?;
            builder = builder.to(mailbox);
        }
        builder
            .header(ContentType::TEXT_PLAIN)
            .body(letter.body.clone())
            .map_err(|e| e.to_string())
    }
}

/// A reason or error, cut to [`MAX_TEXT`] characters.
pub(super) fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_TEXT) {
        Some((end, _)) => format!("{}... (cut)", &text[..end]),
        None => text.to_owned(),
    }
}
