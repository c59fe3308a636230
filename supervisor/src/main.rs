//! The `sgevents` command: `run`, `check`, `status`, the control commands, the try-it loop
//! (`deliver`, `tail`, `failed show`, `new plugin`) and `migrate`. A thin layer over the library:
//! parse the arguments, set up logging, run the command, map the result to an exit status.

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
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        /// Redraw the table in place every SECS seconds until Ctrl-C
        #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "2")]
        watch: Option<f64>,
    },
    /// Start one plugin, hand it chosen events exactly as the daemon would, print its answers and
    /// stop it; moves no cursor, records nothing. Exit status 0 when every event was acked
    #[command(group(clap::ArgGroup::new("which").args(["event", "last"])))]
    Deliver {
        /// The plugin (a configured one, or any name with --command)
        name: String,
        /// Deliver this event id (repeatable; in the order given)
        #[arg(long, value_name = "ID")]
        event: Vec<i64>,
        /// Deliver the last N events the plugin subscribes to
        #[arg(long, value_name = "N")]
        last: Option<usize>,
        /// Run this command instead of the configured one (a plugin under development); its
        /// arguments follow it, up to the next option
        #[arg(long, value_name = "PROGRAM", num_args = 1..)]
        command: Option<Vec<String>>,
        /// Take the events from this JSON-lines file instead of the journal
        #[arg(long, value_name = "FILE")]
        event_file: Option<PathBuf>,
    },
    /// Follow newly journaled events, one line each: id, time, type, entity, attribute, user
    Tail {
        /// Only the events this plugin subscribes to
        #[arg(long, value_name = "NAME")]
        plugin: Option<String>,
        /// Only event types matching this glob (`*`, `?`), such as `Shotgun_Task_*`
        #[arg(long = "type", value_name = "GLOB")]
        event_type: Option<String>,
        /// Print each event's JSON, one per line
        #[arg(long)]
        json: bool,
    },
    /// Write something new: `new plugin NAME --lang python|rust|sh`
    New {
        #[command(subcommand)]
        what: NewWhat,
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
enum NewWhat {
    /// A working plugin with a subscription and a test, in a folder of its own; prints the
    /// `[plugin.NAME]` lines to add
    Plugin {
        /// Its name (letters, digits, `_`, `-`)
        name: String,
        /// Its language
        #[arg(long, value_enum)]
        lang: sgevents::scaffold::Lang,
        /// Where to create its folder
        #[arg(long, value_name = "PATH", default_value = ".")]
        dir: PathBuf,
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
    /// One failed event in full: the whole error, when each attempt failed, and the event
    Show {
        name: String,
        /// The event
        #[arg(long, value_name = "ID")]
        event: i64,
    },
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
                FailedAction::Show { .. } => return None,
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
    // `new plugin` needs no configuration; with one, the command it prints is relative to it.
    if let Command::New {
        what: NewWhat::Plugin { name, lang, dir },
    } = &cli.command
    {
        let config_dir = file
            .is_file()
            .then(|| file.parent().map(std::path::Path::to_path_buf))
            .flatten()
            .map(|d| {
                if d.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    d
                }
            });
        let written = sgevents::scaffold::new_plugin(name, *lang, dir, config_dir.as_deref())?;
        write_stdout(&written.render(name))?;
        return Ok(ExitCode::SUCCESS);
    }
    // `failed show` and `tail` only read the state database.
    if let Command::Failed {
        action: FailedAction::Show { name, event },
        json,
    } = &cli.command
    {
        let config = config::load_without_secrets(&file)?;
        let reader = sgevents::store::open_read_only(&config.daemon.state_dir)?;
        let detail = sgevents::control::show::failed_show(&reader, name, *event)?;
        let text = if *json {
            format!("{}\n", serde_json::to_string_pretty(&detail)?)
        } else {
            sgevents::control::show::render(&detail)
        };
        write_stdout(&text)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Tail {
        plugin,
        event_type,
        json,
    } = &cli.command
    {
        let config = config::load_without_secrets(&file)?;
        sgevents::tail::run(
            &config,
            &sgevents::tail::Options {
                plugin: plugin.clone(),
                event_type: event_type.clone(),
                json: *json,
            },
        )?;
        return Ok(ExitCode::SUCCESS);
    }
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
        Command::Status {
            watch: Some(secs), ..
        } => {
            let every = std::time::Duration::try_from_secs_f64(secs)
                .ok()
                .filter(|d| !d.is_zero())
                .with_context(|| {
                    format!("`--watch {secs}` is not a number of seconds above 0\nhint: such as `--watch 2` or `--watch 0.5`")
                })?;
            sgevents::status::watch(&config, every)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Deliver {
            name,
            event,
            last,
            command,
            event_file,
        } => {
            let options = sgevents::deliver::Options {
                plugin: name,
                events: event,
                last,
                command,
                event_file,
            };
            let acked = runtime.block_on(sgevents::deliver::run(&config, &options))?;
            Ok(if acked {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Status { json, watch: None } => {
            let status = sgevents::status::gather(&config)?;
            let text = if json {
                format!("{}\n", serde_json::to_string_pretty(&status)?)
            } else {
                sgevents::status::render(&status)
            };
            write_stdout(&text)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin { .. }
        | Command::Failed { .. }
        | Command::Reload { .. }
        | Command::Tail { .. }
        | Command::New { .. } => {
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
    let options =
        LogOptions::from_config(&config.daemon.log_level, &config.daemon.logs, format, files);
    Ok(sgevents::logging::init(&options)?)
}
