//! [`Plugin::run`]: a plugin as a process, the loop of [`serve`](crate::serve) over the real
//! stdin and stdout, with the credentials of the environment.

use std::process::ExitCode;

use sgevents_protocol::DEFAULT_MAX_LINE_BYTES;

use crate::context::Credentials;
use crate::log::Logger;
use crate::plugin::Plugin;
use crate::serve::{self, Options};
use crate::stdio;

impl Plugin {
    /// Runs the plugin on stdin and stdout until the daemon closes stdin, and returns the exit
    /// status to return from `main`: 0 normally, 125 after `fatal`.
    ///
    /// A `fatal` answer exits the process at once with status 125, without waiting for the other
    /// callbacks. Before anything else, `run` gives the protocol its own handle on stdout and points
    /// the process's stdout at stderr (on Unix), so a stray `println!` becomes a log line instead of
    /// corrupting the protocol; it reads the ShotGrid [`Credentials`] from the environment.
    pub fn run(self) -> ExitCode {
        let logger = Logger::stderr();
        let credentials =
            Credentials::from_vars(|name| std::env::var(name).ok()).unwrap_or_else(|error| {
                logger.warn(error);
                None
            });
        let output = stdio::protocol_stdout(&logger);
        let options = Options {
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            credentials,
            logger,
            exit_on_fatal: true,
        };
        let exit = serve::serve(self, std::io::stdin().lock(), output, options);
        ExitCode::from(exit.code())
    }
}
