//! Keeping stdout for the protocol alone.
//!
//! The protocol writer gets its own descriptor for the real stdout (a `dup` of fd 1, close-on-exec)
//! and fd 1 is then pointed at stderr. From there on `println!`, a library's stray print and the
//! output of any program a callback starts all land on stderr, where the daemon logs them as info
//! lines, and only the SDK can write protocol lines. Off Unix the redirection is not done.

use std::io::{self, Write};

use crate::log::Logger;

/// The writer for protocol lines: the real stdout, which the rest of the process no longer reaches.
pub(crate) fn protocol_stdout(logger: &Logger) -> Box<dyn Write + Send> {
    let stdout = io::stdout();
    // Whatever was printed before `run` goes out before the protocol starts.
    drop(stdout.lock().flush());
    imp::take(stdout, logger)
}

#[cfg(unix)]
mod imp {
    use std::fs::File;
    use std::io::{self, Stdout, Write};
    use std::os::fd::AsFd;

    use crate::log::Logger;

    pub(super) fn take(stdout: Stdout, logger: &Logger) -> Box<dyn Write + Send> {
        let protocol = match stdout.as_fd().try_clone_to_owned() {
            Ok(fd) => File::from(fd),
            Err(error) => {
                logger.warn(format_args!(
                    "cannot duplicate stdout ({error}); prints to stdout will corrupt the protocol"
                ));
                return Box::new(stdout);
            }
        };
        if let Err(error) = rustix::stdio::dup2_stdout(io::stderr()) {
            logger.warn(format_args!(
                "cannot point stdout at stderr ({error}); prints to stdout will corrupt the protocol"
            ));
        }
        Box::new(protocol)
    }
}

#[cfg(not(unix))]
mod imp {
    use std::io::{Stdout, Write};

    use crate::log::Logger;

    pub(super) fn take(stdout: Stdout, _logger: &Logger) -> Box<dyn Write + Send> {
        Box::new(stdout)
    }
}
