//! What only a real process shows: exit statuses, stdout kept for the protocol, a daemon that goes
//! away, credentials read from the environment.
//!
//! This test binary has its own `main` (`harness = false`): run plainly, it runs the checks below;
//! with `SGEVENTS_SDK_TEST_PLUGIN` set, it is a plugin built with `Plugin::run`, the one the checks
//! start. Most checks play a conformance transcript against it, whose waits are bounded.

use std::env;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, ExitCode, Stdio};
use std::thread;
use std::time::Duration;

use sgevents_sdk::protocol::transcript::Transcript;
use sgevents_sdk::protocol::{
    DaemonMessage, EventDelivery, Hello, PluginMessage, decode_plugin_line,
};
use sgevents_sdk::{Error, Map, Plugin, Subscription, testing};

/// The variable that turns this binary into a plugin, and says which one.
const PLUGIN: &str = "SGEVENTS_SDK_TEST_PLUGIN";

/// How long a transcript waits for each line before it fails: a guard, not a measurement.
const PATIENCE: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    if let Ok(which) = env::var(PLUGIN) {
        return plugin(&which).run();
    }
    let checks: [(&str, Check); 5] = [
        (
            "prints go to stderr, never to the protocol",
            prints_go_to_stderr,
        ),
        ("fatal exits with 125 at once", fatal_exits_at_once),
        (
            "a version mismatch exits with 125",
            version_mismatch_exits_125,
        ),
        (
            "a broken stdout ends the plugin with 0",
            broken_stdout_exits_0,
        ),
        (
            "credentials come from the environment",
            credentials_from_the_environment,
        ),
    ];
    let mut failed = 0;
    for (name, check) in checks {
        match check() {
            Ok(()) => eprintln!("test {name} ... ok"),
            Err(error) => {
                failed += 1;
                eprintln!("test {name} ... FAILED\n{error}");
            }
        }
    }
    eprintln!("process: {} passed, {failed} failed", checks.len() - failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// One check: `Err` says what went wrong.
type Check = fn() -> Result<(), String>;

/// The plugins the checks start.
fn plugin(which: &str) -> Plugin {
    let every = Subscription::new("every_event", ["*"]);
    match which {
        "prints" => print_everywhere(),
        "fatal" => Plugin::new().max_in_flight(2).on(every, |_, event| {
            if event.id == 1 {
                // Never returns: `fatal` must not wait for it.
                loop {
                    thread::park();
                }
            }
            Err(Error::fatal("license server unreachable"))
        }),
        "credentials" => Plugin::new().on(every, |ctx, _| match ctx.credentials() {
            Some(c)
                if (c.site_url(), c.script_name(), c.script_key())
                    == ("https://studio.example", "sgevents", "s3cr3t") =>
            {
                Ok(())
            }
            other => Err(Error::new(format!("unexpected credentials {other:?}"))),
        }),
        _ => Plugin::new().on(every, |_, _| Ok(())),
    }
}

#[allow(
    clippy::print_stdout,
    reason = "stray prints are what the check is about"
)]
fn print_everywhere() -> Plugin {
    Plugin::new().setup(|setup, _| {
        println!("printed during setup");
        setup.on(Subscription::new("every_event", ["*"]), |_, _| {
            print!("printed by a callback, without newline");
            println!("printed by a callback");
            let status = Command::new("sh")
                .args(["-c", "echo printed by a child process"])
                .status()?;
            if !status.success() {
                return Err(Error::new(format!("sh failed: {status}")));
            }
            Ok(())
        });
        Ok(())
    })
}

fn command(which: &str) -> Command {
    let mut command = Command::new(env::current_exe().expect("the test binary has a path"));
    command.env(PLUGIN, which);
    for var in [
        "SGEVENTS_SITE_URL",
        "SGEVENTS_SCRIPT_NAME",
        "SGEVENTS_SCRIPT_KEY",
    ] {
        command.env_remove(var);
    }
    command
}

fn hello_line(protocols: Vec<u32>) -> String {
    line(&DaemonMessage::Hello(Hello {
        protocols,
        plugin: "process-test".into(),
        config: Map::new(),
    }))
}

fn event_line(id: i64) -> String {
    line(&DaemonMessage::Event(EventDelivery {
        event_id: id,
        attempt: 1,
        subscriptions: vec!["every_event".into()],
        deadline_ms: 30_000,
        event: testing::task_status_change(id, "ip", "rev"),
    }))
}

fn line(message: &DaemonMessage) -> String {
    sgevents_sdk::protocol::encode(message)
        .trim_end()
        .to_owned()
}

const REGISTER: &str = r#"{"type":"register","protocol":1,"subscriptions":[{"name":"every_event","event_types":["*"]}],"max_in_flight":1}"#;

fn play(which: &str, transcript: &str) -> Result<(), String> {
    Transcript::parse(which, transcript)
        .map_err(|e| e.to_string())?
        .run(&mut command(which), PATIENCE)
        .map_err(|e| e.to_string())
}

fn prints_go_to_stderr() -> Result<(), String> {
    let mut child = command("prints")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the plugin: {e}"))?;
    let input = format!("{}\n{}\n", hello_line(vec![1]), event_line(1));
    let mut stdin = child.stdin.take().expect("piped");
    stdin
        .write_all(input.as_bytes())
        .map_err(|e| e.to_string())?;
    drop(stdin);
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let messages: Vec<PluginMessage> = stdout
        .lines()
        .map(|l| {
            decode_plugin_line(l.as_bytes())
                .map_err(|e| format!("stdout has `{l}`: {e}\nstderr:\n{stderr}"))
        })
        .collect::<Result<_, _>>()?;
    if messages.len() != 2 || messages[1] != (PluginMessage::Ack { event_id: 1 }) {
        return Err(format!(
            "unexpected answers {messages:?}\nstderr:\n{stderr}"
        ));
    }
    for text in [
        "printed during setup",
        "printed by a callback",
        "printed by a child process",
    ] {
        if !stderr.contains(text) {
            return Err(format!("`{text}` is not on stderr:\n{stderr}"));
        }
    }
    if output.status.code() != Some(0) {
        return Err(format!("exit status {}", output.status));
    }
    Ok(())
}

fn fatal_exits_at_once() -> Result<(), String> {
    let register = REGISTER.replace(r#""max_in_flight":1"#, r#""max_in_flight":2"#);
    play(
        "fatal",
        &format!(
            "> {}\n< {register}\n> {}\n> {}\n< {{\"type\":\"fatal\",\"error\":\"license server unreachable\"}}\n= exit 125\n",
            hello_line(vec![1]),
            event_line(1),
            event_line(2),
        ),
    )
}

fn version_mismatch_exits_125() -> Result<(), String> {
    play(
        "plain",
        &format!(
            "> {}\n< {{\"type\":\"fatal\",\"error\":\"no common protocol version: the daemon offers [99], this plugin speaks [1]\"}}\n= exit 125\n",
            hello_line(vec![99])
        ),
    )
}

fn broken_stdout_exits_0() -> Result<(), String> {
    let mut child = command("plain")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the plugin: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    writeln!(stdin, "{}", hello_line(vec![1])).map_err(|e| e.to_string())?;
    let mut register = String::new();
    stdout.read_line(&mut register).map_err(|e| e.to_string())?;
    if register.trim_end() != REGISTER {
        return Err(format!("expected the register message, got `{register}`"));
    }
    // The daemon goes away: the ack of this event cannot be written.
    drop(stdout);
    writeln!(stdin, "{}", event_line(1)).map_err(|e| e.to_string())?;
    drop(stdin);
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() != Some(0) || !stderr.contains("cannot write to stdout") {
        return Err(format!("exit status {}, stderr:\n{stderr}", output.status));
    }
    Ok(())
}

fn credentials_from_the_environment() -> Result<(), String> {
    let transcript = format!(
        "> {}\n< {REGISTER}\n> {}\n< {{\"type\":\"ack\",\"event_id\":1}}\n> EOF\n= exit 0\n",
        hello_line(vec![1]),
        event_line(1)
    );
    let mut command = command("credentials");
    command
        .env("SGEVENTS_SITE_URL", "https://studio.example")
        .env("SGEVENTS_SCRIPT_NAME", "sgevents")
        .env("SGEVENTS_SCRIPT_KEY", "s3cr3t");
    Transcript::parse("credentials", &transcript)
        .map_err(|e| e.to_string())?
        .run(&mut command, PATIENCE)
        .map_err(|e| e.to_string())
}
