//! The `sgevents` command: `run`, `check` and `status`. A thin layer over the library: parse the
//! arguments, set up logging, run the command, map the result to an exit status.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sgevents::config::{self, DEFAULT_CONFIG};
use tracing_subscriber::EnvFilter;

/// sgevents: a ShotGrid event daemon that hands each event to plugin processes.
#[derive(Debug, Parser)]
#[command(name = "sgevents", version, about)]
struct Cli {
    /// The configuration file [default: sgevents.toml in the working directory]
    #[arg(
        short,
        long,
        global = true,
        env = "SGEVENTS_CONFIG",
        value_name = "PATH"
    )]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon
    Run,
    /// Validate the configuration, start each plugin, show its subscriptions, and stop it
    Check,
    /// Show each plugin's state and the source's position, from the state database
    Status {
        /// Print JSON, for scripts
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let file = cli.config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    // `status` only reads the state database: it must work in a shell without the daemon's keys.
    let config = match cli.command {
        Command::Status { .. } => config::load_without_secrets(&file)?,
        _ => config::load(&file)?,
    };
    init_logging(&config.daemon.log_level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Run => {
            runtime.block_on(sgevents::daemon::run(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check => {
            let (report, ok) = runtime.block_on(sgevents::check::check(&config));
            write_stdout(&report)?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Status { json } => {
            let status = sgevents::status::gather(&config)?;
            let text = if json {
                format!("{}\n", serde_json::to_string_pretty(&status)?)
            } else {
                sgevents::status::render(&status)
            };
            write_stdout(&text)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes a command's output; a closed pipe (`| head`) is not an error.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Logs go to stderr; `$SGEVENTS_LOG` (an `EnvFilter` directive) overrides `daemon.log_level`.
fn init_logging(default: &str) {
    let filter =
        EnvFilter::try_from_env("SGEVENTS_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
