//! A no-op plugin: subscribes to every event and acknowledges it at once, doing nothing else.
//!
//! It measures what the protocol and the daemon cost on their own (see `BENCHMARKS.md`). The window
//! comes from the `max_in_flight` key of the plugin's `config` table (1 to 64, default 1):
//!
//! ```toml
//! [plugin.noop]
//! command = ["target/release/examples/noop"]
//! config = { max_in_flight = 32 }
//! ```

use std::process::ExitCode;

use sgevents_sdk::{Error, Plugin, Subscription};

fn main() -> ExitCode {
    Plugin::new()
        .on(Subscription::new("all", ["*"]), |_ctx, _event| Ok(()))
        .setup(|setup, config| {
            let window = match config.get("max_in_flight") {
                None => 1,
                Some(value) => value
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| {
                        Error::fatal(format!(
                            "config `max_in_flight` must be an integer from 1 to 64, got {value}"
                        ))
                    })?,
            };
            setup.max_in_flight(window);
            Ok(())
        })
        .run()
}
