//! The `sgevents` command: `run`, `check` and `status`. A thin layer over the library: parse the
//! arguments, set up logging, run the command, map the result to an exit status.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sgevents::config::{self, DEFAULT_CONFIG};
use sgevents::control::{Request, RewindTarget, client};
use sgevents::logging::{LogFormat, LogGuard, LogOptions};

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
    /// Log as text lines or as JSON objects (one per line) [default: `daemon.log_format`, else text]
    #[arg(
        long,
        global = true,
        env = "SGEVENTS_LOG_FORMAT",
        value_name = "FORMAT",
        value_enum
    )]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon
    Run,
    /// Validate the configuration, start each plugin, show its subscriptions, and stop it
    Check {
        /// Check the whole state database page by page (`PRAGMA integrity_check`), however long
        /// it takes, instead of the bounded quick check
        #[arg(long)]
        deep: bool,
    },
    /// Show each plugin's state and the source's position, from the state database
    Status {
        /// Print JSON, for scripts
        #[arg(long)]
        json: bool,
    },
    /// Control one plugin of the running daemon (some work without it)
    Plugin {
        #[command(subcommand)]
        action: PluginAction,
        /// Print JSON, for scripts
        #[arg(long, global = true)]
        json: bool,
    },
    /// List, retry or drop the events plugins gave up on
    Failed {
        #[command(subcommand)]
        action: FailedAction,
        /// Print JSON, for scripts
        #[arg(long, global = true)]
        json: bool,
    },
    /// Make the running daemon re-read its configuration (as SIGHUP does)
    Reload {
        /// Print JSON, for scripts
        #[arg(long)]
        json: bool,
    },
    /// Convert a shotgunEvents configuration (and, with --id-file, its state) for sgevents
    Migrate {
        /// The shotgunEvents configuration (shotgunEventDaemon.conf)
        #[arg(long, value_name = "PATH")]
        conf: PathBuf,
        /// shotgunEvents' id file (its `eventIdFile`): each plugin resumes where it stopped
        #[arg(long, value_name = "PATH")]
        id_file: Option<PathBuf>,
        /// Where to write the sgevents configuration
        #[arg(long, value_name = "PATH", default_value = "sgevents.toml")]
        out: PathBuf,
        /// The state directory [default: var, next to --out]
        #[arg(long, value_name = "PATH")]
        state_dir: Option<PathBuf>,
        /// Replace --out, and write into a state database that already has events or plugins
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Clone, Subcommand)]
enum PluginAction {
    /// Every plugin: state, pid, position, lag, failures, durations
    List,
    /// Stop then start one plugin; the others are not touched
    Restart { name: String },
    /// Stop one plugin until `plugin start` or the daemon's next start
    Stop { name: String },
    /// Start a plugin stopped with `plugin stop`
    Start { name: String },
    /// Enable a disabled plugin (and start it when the daemon runs)
    Enable { name: String },
    /// Stop a plugin and keep it disabled, across restarts, until `plugin enable`
    Disable { name: String },
    /// Move a plugin's position: replay from an event, or skip its backlog
    #[command(group(clap::ArgGroup::new("target").required(true).args(["to_event", "to_latest"])))]
    Rewind {
        name: String,
        /// Deliver this event id next (and everything journaled after it)
        #[arg(long, value_name = "ID")]
        to_event: Option<i64>,
        /// Skip every journaled event: deliver only what comes next
        #[arg(long)]
        to_latest: bool,
        /// Only say how many events that means
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Clone, Subcommand)]
enum FailedAction {
    /// The failed events of one plugin, or of all
    List { name: Option<String> },
    /// Deliver a plugin's failed events (or one) again
    Retry {
        name: String,
        /// Only this event
        #[arg(long, value_name = "ID")]
        event: Option<i64>,
    },
    /// Forget a plugin's failed events (or one)
    Drop {
        name: String,
        /// Only this event
        #[arg(long, value_name = "ID")]
        event: Option<i64>,
    },
}

/// The control request a `plugin`, `failed` or `reload` command makes, and whether to print JSON.
fn control_request(command: &Command) -> Option<(Request, bool)> {
    Some(match command {
        Command::Plugin { action, json } => (
            match action.clone() {
                PluginAction::List => Request::PluginList,
                PluginAction::Restart { name } => Request::PluginRestart { plugin: name },
                PluginAction::Stop { name } => Request::PluginStop { plugin: name },
                PluginAction::Start { name } => Request::PluginStart { plugin: name },
                PluginAction::Enable { name } => Request::PluginEnable { plugin: name },
                PluginAction::Disable { name } => Request::PluginDisable { plugin: name },
                PluginAction::Rewind {
                    name,
                    to_event,
                    to_latest: _,
                    dry_run,
                } => Request::PluginRewind {
                    plugin: name,
                    to: to_event.map_or(RewindTarget::Latest, RewindTarget::Event),
                    dry_run,
                },
            },
            *json,
        ),
        Command::Failed { action, json } => (
            match action.clone() {
                FailedAction::List { name } => Request::FailedList { plugin: name },
                FailedAction::Retry { name, event } => Request::FailedRetry {
                    plugin: name,
                    event,
                },
                FailedAction::Drop { name, event } => Request::FailedDrop {
                    plugin: name,
                    event,
                },
            },
            *json,
        ),
        Command::Reload { json } => (Request::Reload, *json),
        _ => return None,
    })
}

/// Runs a control command: prints what was done (or JSON), fails with the daemon's error.
fn control(state_dir: &std::path::Path, request: &Request, json: bool) -> anyhow::Result<ExitCode> {
    match client::execute(state_dir, request) {
        Ok(response) if json => {
            write_stdout(&format!("{}\n", serde_json::to_string_pretty(&response)?))?;
            Ok(if response.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Ok(response) if response.ok => {
            write_stdout(&client::render(request, &response))?;
            Ok(ExitCode::SUCCESS)
        }
        Ok(response) => anyhow::bail!("{}", response.message),
        Err(e) if json => {
            let response = sgevents::control::Response::error(e.to_string());
            write_stdout(&format!("{}\n", serde_json::to_string_pretty(&response)?))?;
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}

fn main() -> ExitCode {
    // The plugin launcher (`sgevents::launch`), hidden: the daemon alone starts it.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args
        .get(1)
        .is_some_and(|a| a == sgevents::launch::SUBCOMMAND)
    {
        return sgevents::launch::main(&args[2..]);
    }
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
    // `migrate` writes the configuration: it must not need one.
    if let Command::Migrate {
        conf,
        id_file,
        out,
        state_dir,
        force,
    } = cli.command
    {
        let report = sgevents::migrate::run(&sgevents::migrate::Options {
            conf,
            id_file,
            out,
            state_dir,
            force,
        })?;
        write_stdout(&report.render())?;
        return Ok(ExitCode::SUCCESS);
    }
    let file = cli.config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    // `status` and the control commands only need the state directory: they must work in a shell
    // without the daemon's keys.
    if let Some((request, json)) = control_request(&cli.command) {
        let config = match config::load_without_secrets(&file) {
            Ok(c) => c,
            Err(e) if request == Request::Reload => anyhow::bail!(
                "the configuration is invalid, so the daemon was not asked to reload; it keeps its running configuration\n{e}"
            ),
            Err(e) => return Err(e.into()),
        };
        return control(&config.daemon.state_dir, &request, json);
    }
    if matches!(cli.command, Command::Run) {
        // Before anything is created: the state, the lock and the socket are the daemon's alone.
        sgevents::launch::restrict_umask();
        // Its /proc files (`environ` holds every key) become root's: a plugin running as the
        // daemon's own user cannot read them.
        let _ = nix::sys::prctl::set_dumpable(false);
    }
    let config = match cli.command {
        Command::Status { .. } => config::load_without_secrets(&file)?,
        _ => config::load(&file)?,
    };
    sgevents::redact::set(config.secrets());
    // Held to the end: dropping it writes out the log files' queue.
    let _log = init_logging(&config, cli.log_format, matches!(cli.command, Command::Run))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Run => {
            runtime.block_on(sgevents::daemon::run(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { deep } => {
            let (report, ok) = runtime.block_on(sgevents::check::check(&config, deep));
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
        Command::Plugin { .. } | Command::Failed { .. } | Command::Reload { .. } => {
            unreachable!("control commands return before the configuration is loaded in full")
        }
        Command::Migrate { .. } => {
            unreachable!("migrate returns before any configuration is read")
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

/// Logs go to stderr, and for `run` to the files of `daemon.log_dir` (see `sgevents::logging`).
fn init_logging(
    config: &config::Config,
    format: Option<LogFormat>,
    files: bool,
) -> anyhow::Result<LogGuard> {
    let options = LogOptions::from_config(&config.daemon, format, files);
    Ok(sgevents::logging::init(&options)?)
}
