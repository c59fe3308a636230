//! `nats-bridge`: an sgevents plugin that publishes every event it subscribes to into a NATS
//! JetStream stream, and acks each one to the daemon only after JetStream's publish
//! acknowledgement (the event is then stored, and replicated as the stream says).
//!
//! Workers anywhere then consume the stream with any NATS client; see `README.md` in this folder.
//!
//! The bridge speaks the protocol itself, on the types of `sgevents_sdk::protocol`, rather than
//! through the SDK's worker threads: one task reads the daemon's lines in order and *sends* each
//! publish in that order on the one connection, so JetStream stores a subject's events in journal
//! order, while up to `max_in_flight` acknowledgements are awaited at once (`bridge.rs`). A thread
//! reads stdin (`stdin.rs`); `config.rs` checks the configuration at `hello`.

mod bridge;
mod config;
mod stdin;

use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let log = sgevents_sdk::logger();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("nats-bridge")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            log.error(format_args!(
                "cannot start the async runtime: {e}\nhint: the machine is out of threads or \
                 memory"
            ));
            return ExitCode::from(1);
        }
    };
    let incoming = stdin::spawn_reader();
    let code = runtime.block_on(bridge::run(incoming, log));
    // The client's background tasks never end by themselves.
    runtime.shutdown_timeout(Duration::from_millis(200));
    ExitCode::from(code)
}
