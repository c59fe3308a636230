//! The error a callback returns, and how it becomes the answer to an event.

use std::fmt;
use std::time::Duration;

/// What a failed callback asks for: a redelivery, giving up on the event, or stopping the plugin.
///
/// Any [`std::error::Error`] converts into an [`Error`] with `?`, and becomes a `nack` whose text is
/// the error's message followed by `": source"` for each error in its
/// [`source`](std::error::Error::source) chain. The constructors say what to do otherwise:
///
/// | constructor | answer |
/// |---|---|
/// | [`Error::new`], `?` on any error | `nack`: the daemon delivers the event again later |
/// | [`Error::retry`] with [`Error::after`] | `nack` with `retry_after_ms` |
/// | [`Error::term`] | `term`: the event can never succeed, it is recorded as failed |
/// | [`Error::fatal`] | `fatal`: the plugin cannot go on; it exits with status 125 |
///
/// `Error` deliberately does not implement [`std::error::Error`] (like `anyhow::Error`): that is what
/// lets every error type convert into it with `?`. For the same reason there is no `From<&str>` or
/// `From<String>` (the compiler would see them overlap); write `Error::new("message")`.
pub struct Error {
    kind: ErrorKind,
    message: String,
    retry_after: Option<Duration>,
}

/// Which answer an [`Error`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The event failed this time: answer `nack` so that it is delivered again.
    Nack,
    /// The event can never succeed: answer `term`.
    Term,
    /// The plugin cannot go on: answer `fatal` and exit with status 125.
    Fatal,
}

impl Error {
    /// An ordinary failure: the event is answered with `nack` and delivered again later.
    pub fn new(message: impl fmt::Display) -> Error {
        Error {
            kind: ErrorKind::Nack,
            message: message.to_string(),
            retry_after: None,
        }
    }

    /// A failure worth retrying; add [`Error::after`] to ask for a delay before the redelivery.
    ///
    /// Without a delay this is the same as [`Error::new`]: the daemon's own backoff applies.
    pub fn retry(message: impl fmt::Display) -> Error {
        Error::new(message)
    }

    /// Asks the daemon to wait `delay` before delivering the event again (`retry_after_ms`).
    ///
    /// Only a `nack` carries a delay: on a [`term`](Error::term) or [`fatal`](Error::fatal) error
    /// it is kept but not sent.
    pub fn after(mut self, delay: Duration) -> Error {
        self.retry_after = Some(delay);
        self
    }

    /// The event can never succeed (the Python SDK's `Skip`): it is answered with `term`, recorded
    /// as failed and not delivered again.
    pub fn term(message: impl fmt::Display) -> Error {
        Error {
            kind: ErrorKind::Term,
            message: message.to_string(),
            retry_after: None,
        }
    }

    /// The plugin cannot go on at all (a revoked license, a missing credential): it answers
    /// `fatal` and exits with status 125 at once. The daemon disables it and keeps its position at
    /// this event.
    pub fn fatal(message: impl fmt::Display) -> Error {
        Error {
            kind: ErrorKind::Fatal,
            message: message.to_string(),
            retry_after: None,
        }
    }

    /// Puts `context` in front of the message, as `"context: message"`, keeping the kind.
    pub fn context(mut self, context: impl fmt::Display) -> Error {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// Which answer this error gives.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The text sent to the daemon as the answer's `error`.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The delay asked for with [`Error::after`].
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The delay in whole milliseconds, as sent on a `nack`; `None` for other kinds.
    pub(crate) fn retry_after_ms(&self) -> Option<u64> {
        match self.kind {
            ErrorKind::Nack => self
                .retry_after
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            ErrorKind::Term | ErrorKind::Fatal => None,
        }
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(error: E) -> Error {
        Error::new(chain(&error))
    }
}

/// An error's message followed by `": source"` for each error of its source chain.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Error");
        s.field("kind", &self.kind).field("message", &self.message);
        if let Some(delay) = self.retry_after {
            s.field("retry_after", &delay);
        }
        s.finish()
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[derive(Debug)]
    struct Outer(io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("cannot publish the version")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    fn fails() -> Result<(), Error> {
        Err(Outer(io::Error::new(
            io::ErrorKind::NotFound,
            "no such file",
        )))?;
        Ok(())
    }

    #[test]
    fn question_mark_keeps_the_source_chain() {
        let err = fails().expect_err("it fails");
        assert_eq!(err.kind(), ErrorKind::Nack);
        assert_eq!(err.message(), "cannot publish the version: no such file");
        assert_eq!(err.retry_after_ms(), None);
    }

    #[test]
    fn kinds_and_delays() {
        let err = Error::retry("farm busy").after(Duration::from_millis(5000));
        assert_eq!(
            (err.kind(), err.retry_after_ms()),
            (ErrorKind::Nack, Some(5000))
        );
        let err = Error::term("no parent").after(Duration::from_secs(1));
        assert_eq!(
            (err.kind(), err.retry_after_ms()),
            (ErrorKind::Term, None),
            "only a nack has a delay"
        );
        assert_eq!(Error::fatal("license").kind(), ErrorKind::Fatal);
        assert_eq!(
            Error::new("x").context("loading Task 1").to_string(),
            "loading Task 1: x"
        );
        assert_eq!(Error::term("x").context("c").kind(), ErrorKind::Term);
    }
}
