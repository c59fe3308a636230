//! A plugin for the daemon's integration tests, whose behaviour each test chooses through the
//! plugin's `config` table (handed over in `hello`). It speaks the protocol with the protocol crate
//! only, so it can also break it on purpose.
//!
//! Keys (all optional): `record` (a file to append `event_id attempt` lines to, one per delivery),
//! `subscriptions` (subscription objects; default every event), `max_in_flight`, `slow_ms` (work
//! per event), `pid_file` (written at start), `progress_every_ms` (with `slow_ms`: send `progress` this often), `env_dump` (a file to write the `SGEVENTS_*` variables
//! and `STUDIO_ROOT` to at `hello`), `trace` and `tag` (a file shared by plugins: `<tag> <id> recv`
//! when an event arrives, `<tag> <id> done` just before it is answered), and per-event behaviours keyed by event id (one id, or a list):
//! `crash_at` (exit 3), `hang_at` (stop answering, keep running), `garbage_at`, `oversize_at`
//! (write a 17 MiB line), each with an optional `<behaviour>_times` (only that many times in all,
//! counted in `<record>.<behaviour>` across restarts; `hang_from_attempt`: hang only on deliveries
//! with at least that attempt number); `nack_at` (with `nack_times`: nack until that many
//! attempts; with `nack_backoff = true` the nack asks for no delay, so the daemon's backoff
//! applies), `term_at`, `fatal_at`. Whole-plugin behaviours: `exit_at_start` (exit with that
//! status at `hello`), `no_register`, `bad_register`, `banner` (a non-protocol line before
//! `register`), `register_after` (a file: `register` is sent only once it exists), `error_suffix` (text appended
//! to every nack, term and fatal error), `no_pong`, `ignore_sigterm` (and keep running after stdin closes), `nack_all`,
//! `stderr_flood` (that many stderr lines, `flood line N`, written by a thread started at `hello`;
//! the first event is answered only once they are all written), `pong_flood` (that many `pong`s
//! for no ping right after `register`; with `pong_flood_times`).
//! Secrets tests: `env_all` (a file to write the whole environment to at `hello`, sorted, then
//! `#cwd=` and `#uid=` lines), `environ_probe` (a file rewritten at each event with what reading
//! `/proc/<pid>/environ` gave, for the parent (the daemon) and for each pid in the files
//! `probe_pid_files` names: `<label>\tOK\t<variables>` or `<label>\tERR\t<error>`), `leak_key`
//! (print `SGEVENTS_SCRIPT_KEY` on stderr at each event and put it in every `nack`, `term` and
//! `fatal` error).

use std::fs::OpenOptions;
use std::io::{BufRead, Write};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Map, Value, json};
use sgevents_protocol::{DaemonMessage, PluginMessage, decode_daemon_line, encode};

/// With `trace` (a file shared by several plugins) and `tag`: appends `<tag> <event id> <phase>`,
/// one write per line, so that the order of lines is the order things happened across plugins.
fn trace(config: &Map<String, Value>, id: i64, phase: &str) {
    if let Some(path) = config.get("trace").and_then(Value::as_str) {
        let tag = config.get("tag").and_then(Value::as_str).unwrap_or("?");
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("trace file");
        f.write_all(format!("{tag} {id} {phase}\n").as_bytes())
            .expect("trace");
    }
}

/// With `environ_probe`: tries to read the daemon's and the siblings' `/proc/<pid>/environ`.
fn probe(config: &Map<String, Value>, out: &str) {
    let mut targets = vec![("parent".to_owned(), std::os::unix::process::parent_id())];
    for file in config
        .get("probe_pid_files")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if let Some(pid) = std::fs::read_to_string(file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            targets.push((file.to_owned(), pid));
        }
    }
    let text: String = targets
        .iter()
        .map(
            |(label, pid)| match std::fs::read(format!("/proc/{pid}/environ")) {
                Ok(bytes) => format!(
                    "{label}\tOK\t{}\n",
                    String::from_utf8_lossy(&bytes).replace('\0', " ")
                ),
                Err(e) => format!("{label}\tERR\t{e}\n"),
            },
        )
        .collect();
    std::fs::write(out, text).expect("environ probe");
}

fn main() {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    let mut config = Map::new();
    let mut flood: Option<JoinHandle<()>> = None;
    let mut lines = stdin.lock().lines();
    while let Some(Ok(line)) = lines.next() {
        let Ok(msg) = decode_daemon_line(line.as_bytes()) else {
            eprintln!("E! cannot read `{line}`");
            continue;
        };
        match msg {
            DaemonMessage::Hello(hello) => {
                config = hello.config;
                if let Some(path) = config.get("env_dump").and_then(Value::as_str) {
                    let vars = [
                        "SGEVENTS_PROTOCOL",
                        "SGEVENTS_PLUGIN",
                        "SGEVENTS_SITE_URL",
                        "SGEVENTS_SCRIPT_NAME",
                        "SGEVENTS_SCRIPT_KEY",
                        "STUDIO_ROOT",
                    ];
                    let text: String = vars
                        .iter()
                        .map(|v| {
                            format!(
                                "{v}={}\n",
                                std::env::var(v).unwrap_or_else(|_| "<unset>".into())
                            )
                        })
                        .collect();
                    std::fs::write(path, text).expect("env dump");
                }
                if let Some(path) = config.get("env_all").and_then(Value::as_str) {
                    let mut vars: Vec<String> = std::env::vars_os()
                        .map(|(k, v)| format!("{}={}\n", k.to_string_lossy(), v.to_string_lossy()))
                        .collect();
                    vars.sort();
                    let cwd = std::env::current_dir().map(|d| d.display().to_string());
                    let uid = std::fs::read_to_string("/proc/self/status")
                        .unwrap_or_default()
                        .lines()
                        .find_map(|l| l.strip_prefix("Uid:"))
                        .and_then(|u| u.split_whitespace().next().map(str::to_owned))
                        .unwrap_or_default();
                    vars.push(format!("#cwd={}\n#uid={uid}\n", cwd.unwrap_or_default()));
                    std::fs::write(path, vars.concat()).expect("env_all");
                }
                if let Some(path) = config.get("pid_file").and_then(Value::as_str) {
                    std::fs::write(path, std::process::id().to_string()).expect("pid file");
                }
                if let Some(code) = config.get("exit_at_start").and_then(Value::as_i64) {
                    eprintln!("E! exiting at start with status {code}, as configured");
                    std::process::exit(code as i32);
                }
                if config.get("ignore_sigterm").and_then(Value::as_bool) == Some(true) {
                    ignore_sigterm();
                }
                if config.get("no_register").and_then(Value::as_bool) == Some(true) {
                    continue;
                }
                if let Some(path) = config.get("register_after").and_then(Value::as_str) {
                    while !std::path::Path::new(path).exists() {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                if config.get("banner").and_then(Value::as_bool) == Some(true) {
                    send_raw(&mut out, "test plugin v1.0 starting up\n");
                }
                let subs = config
                    .get("subscriptions")
                    .cloned()
                    .unwrap_or_else(|| json!([{"name": "all", "event_types": ["*"]}]));
                let protocol = if config.get("bad_register").and_then(Value::as_bool) == Some(true)
                {
                    99
                } else {
                    1
                };
                let window = config.get("max_in_flight").cloned().unwrap_or(json!(1));
                if let Some(n) = config.get("stderr_flood").and_then(Value::as_u64) {
                    flood = Some(std::thread::spawn(move || {
                        let mut err = std::io::BufWriter::new(std::io::stderr().lock());
                        for i in 0..n {
                            if writeln!(err, "flood line {i}").is_err() {
                                return;
                            }
                        }
                        let _ = err.flush();
                    }));
                }
                let register = json!({"type": "register", "protocol": protocol, "subscriptions": subs, "max_in_flight": window});
                send_raw(&mut out, &format!("{register}\n"));
                if let Some(n) = config.get("pong_flood").and_then(Value::as_u64) {
                    if once(&config, "pong_flood") {
                        let pong = encode(&PluginMessage::Pong { nonce: 999_999 });
                        let text = pong.repeat(n as usize);
                        send_raw(&mut out, &text);
                    }
                }
            }
            DaemonMessage::Event(delivery) => {
                let id = delivery.event_id;
                // `key = 7` or `key = [7, 9]`.
                let is = |key: &str| match config.get(key) {
                    Some(Value::Array(ids)) => ids.iter().any(|v| v.as_i64() == Some(id)),
                    Some(v) => v.as_i64() == Some(id),
                    None => false,
                };
                if let Some(path) = config.get("record").and_then(Value::as_str) {
                    let mut f = OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .expect("record file");
                    // One write call per line, so that a reader never sees half a line.
                    f.write_all(format!("{id} {}\n", delivery.attempt).as_bytes())
                        .expect("record");
                }
                trace(&config, id, "recv");
                if let Some(thread) = flood.take() {
                    let _ = thread.join();
                }
                let leak = if config.get("leak_key").and_then(Value::as_bool) == Some(true) {
                    let key = std::env::var("SGEVENTS_SCRIPT_KEY").unwrap_or_default();
                    eprintln!("I! working on event {id} with key {key}");
                    format!(" (my key is {key})")
                } else {
                    String::new()
                };
                // `error_suffix`: appended to every nack, term and fatal error.
                let leak = match config.get("error_suffix").and_then(Value::as_str) {
                    Some(suffix) => format!("{leak}{suffix}"),
                    None => leak,
                };
                if let Some(path) = config.get("environ_probe").and_then(Value::as_str) {
                    probe(&config, path);
                }
                if is("crash_at") && once(&config, "crash") {
                    eprintln!("E! crashing on event {id}, as configured");
                    std::process::exit(3);
                }
                let hang_from = config
                    .get("hang_from_attempt")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                if is("hang_at")
                    && u64::from(delivery.attempt) >= hang_from
                    && once(&config, "hang")
                {
                    eprintln!("W! hanging on event {id}, as configured");
                    loop {
                        std::thread::sleep(Duration::from_secs(3600));
                    }
                }
                if is("garbage_at") && once(&config, "garbage") {
                    send_raw(&mut out, "this is not json\n");
                    continue;
                }
                if is("oversize_at") && once(&config, "oversize") {
                    let line = "x".repeat(17 * 1024 * 1024);
                    send_raw(&mut out, &format!("{line}\n"));
                    continue;
                }
                if let Some(ms) = config.get("slow_ms").and_then(Value::as_u64) {
                    // With `progress_every_ms`, the work is done in steps with a `progress` after each.
                    match config.get("progress_every_ms").and_then(Value::as_u64) {
                        Some(step) if step > 0 => {
                            let mut left = ms;
                            while left > 0 {
                                std::thread::sleep(Duration::from_millis(step.min(left)));
                                left = left.saturating_sub(step);
                                send_raw(
                                    &mut out,
                                    &encode(&PluginMessage::Progress { event_id: id }),
                                );
                            }
                        }
                        _ => std::thread::sleep(Duration::from_millis(ms)),
                    }
                }
                let nack_times = config
                    .get("nack_times")
                    .and_then(Value::as_u64)
                    .unwrap_or(u64::MAX);
                let answer = if (is("nack_at")
                    || config.get("nack_all").and_then(Value::as_bool) == Some(true))
                    && u64::from(delivery.attempt) <= nack_times
                {
                    PluginMessage::Nack {
                        event_id: id,
                        error: format!("cannot do event {id} yet{leak}"),
                        retry_after_ms: if config.get("nack_backoff").and_then(Value::as_bool)
                            == Some(true)
                        {
                            None
                        } else {
                            Some(10)
                        },
                    }
                } else if is("term_at") {
                    PluginMessage::Term {
                        event_id: id,
                        error: format!("event {id} can never work{leak}"),
                    }
                } else if is("fatal_at") {
                    send_raw(
                        &mut out,
                        &encode(&PluginMessage::Fatal {
                            error: format!("cannot go on at event {id}{leak}"),
                        }),
                    );
                    std::process::exit(125);
                } else {
                    PluginMessage::Ack { event_id: id }
                };
                trace(&config, id, "done");
                send_raw(&mut out, &encode(&answer));
            }
            DaemonMessage::Ping { nonce } => {
                if config.get("no_pong").and_then(Value::as_bool) != Some(true) {
                    send_raw(&mut out, &encode(&PluginMessage::Pong { nonce }));
                }
            }
            DaemonMessage::Shutdown { .. } => {}
        }
    }
    // Last words: lines on stderr after stdin closed, just before the exit.
    if let Some(n) = config.get("farewell_lines").and_then(Value::as_u64) {
        let pad = "x".repeat(
            config
                .get("farewell_pad")
                .and_then(Value::as_u64)
                .unwrap_or(0) as usize,
        );
        let mut err = std::io::stderr().lock();
        for i in 1..=n {
            let _ = writeln!(err, "I! farewell {i} of {n} {pad}");
        }
    }
    if config.get("ignore_sigterm").and_then(Value::as_bool) == Some(true) {
        eprintln!("W! stdin closed, but staying up, as configured");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

/// Whether a limited behaviour may happen once more (`<what>_times`, unlimited when absent).
fn once(config: &Map<String, Value>, what: &str) -> bool {
    let Some(times) = config.get(&format!("{what}_times")).and_then(Value::as_i64) else {
        return true;
    };
    let record = config
        .get("record")
        .and_then(Value::as_str)
        .expect("`record` is needed with `_times`");
    let counter = format!("{record}.{what}");
    let done = std::fs::read_to_string(&counter)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or(0);
    if done >= times {
        return false;
    }
    std::fs::write(&counter, (done + 1).to_string()).expect("counter file");
    true
}

fn send_raw(out: &mut impl Write, line: &str) {
    if out
        .write_all(line.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        std::process::exit(0);
    }
}

fn ignore_sigterm() {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
    // A blocked SIGTERM stays pending forever: the plugin ignores it without a handler.
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).expect("block SIGTERM");
}
