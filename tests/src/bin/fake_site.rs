//! `sgevents-fake-site`: the fake ShotGrid site as a program, to run the daemon against by hand or
//! from a bench. It serves the REST API v1 on loopback, grows its event log at a steady rate, leaves
//! gaps that fill later (or never), and fails requests at chosen rates. It also serves api3's
//! JSON-RPC to `shotgun_api3` clients over entities seeded from a file. Runs until interrupted.
#![allow(
    clippy::print_stdout,
    reason = "the first line of stdout is the site's URL, for scripts to read"
)]

use std::collections::VecDeque;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::Value;
use sgevents_tests::fake_site::{FakeSite, Faults, SiteOptions};

const HELP: &str = "\
sgevents-fake-site: a fake ShotGrid site serving an event log over REST API v1, and entities over
api3's JSON-RPC (/api3/json, for shotgun_api3), on 127.0.0.1

Usage: sgevents-fake-site [OPTIONS]

Options:
  --port N                   port to listen on; 0 picks a free one [default: 0]
  --script-name NAME         Script name clients sign in with [default: sgevents]
  --script-key KEY           Script key clients sign in with [default: fake-key]
  --token-lifetime DURATION  how long an access token lasts [default: 10m]
  --seed N                   seed of the generated events and random faults [default: 1]
  --first-id N               id of the first event [default: 1, or the first id in --events]
  --events FILE              load flat events from a JSON-lines file, visible at start
  --entities FILE            load entities from a JSON-lines file, one object with its `type` a line
  --script NAME=KEY          also allow this Script on api3 (repeatable)
  --no-log-writes            api3 writes append no EventLogEntry rows [default: they do]
  --initial N                generated events visible at start [default: 0]
  --rate R                   generated events appended per second [default: 0]
  --gap-every N              hold every N-th appended event, as an open transaction [default: off]
  --gap-fill-after DURATION  commit a held event this long after it was allocated [default: 5s]
  --gap-never-fraction F     chance that a held event is rolled back instead [default: 0]
  --error-rate F             chance that a search gets a 503 or 500 [default: 0]
  --throttle-rate F          chance that a search gets a 429 [default: 0]
  --retry-after SECONDS      Retry-After of those 429s [default: 5]
  --hang-rate F              chance that a search hangs before its answer [default: 0]
  --hang-for DURATION        how long those hangs last [default: 30s]
  --latency DURATION         added to every answer, as a remote site's round trip [default: 0ms]
  --webhook-url URL          send a signed webhook delivery (POST) here for each new event
  --webhook-secret S         the secret those deliveries are signed with (X-SG-SIGNATURE)
  -h, --help                 print this help

Durations are a number with a unit: 500ms, 5s, 2m.
The first line on stdout is the site's URL; counters go to stderr every 10 seconds.
";

/// The command line, validated.
#[derive(Debug)]
struct Args {
    site: SiteOptions,
    first_id_given: bool,
    events: Option<String>,
    entities: Option<String>,
    scripts: Vec<(String, String)>,
    log_writes: bool,
    initial: usize,
    rate: f64,
    gap_every: u64,
    gap_fill_after: Duration,
    gap_never_fraction: f64,
    faults: Faults,
    webhook_url: Option<String>,
    webhook_secret: Option<String>,
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("error: {message}\nhint: see `sgevents-fake-site --help`");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(mut args: Args) -> Result<(), String> {
    let events = match &args.events {
        Some(path) => load_events(path)?,
        None => Vec::new(),
    };
    if !args.first_id_given {
        if let Some(id) = events.first().and_then(|e| e["id"].as_i64()) {
            args.site.first_id = id;
        }
    }
    let entities = match &args.entities {
        Some(path) => load_entities(path)?,
        None => Vec::new(),
    };
    let (name, key) = (args.site.script_name.clone(), args.site.script_key.clone());
    let port = args.site.port;
    let site = FakeSite::start(args.site)
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    site.append_events(events);
    for (entity_type, fields) in entities {
        site.insert_entity(&entity_type, fields);
    }
    for (name, key) in &args.scripts {
        site.add_script(name, key);
    }
    site.set_log_writes(args.log_writes);
    site.append(args.initial);
    site.set_faults(args.faults);
    if let (Some(url), Some(secret)) = (&args.webhook_url, &args.webhook_secret) {
        site.set_webhook(url, secret);
    }
    println!(
        "fake ShotGrid site at {} (script_name {name}, key {key})",
        site.url()
    );

    // Held events waiting for their commit (true) or rollback (false), in the order they fall due.
    let mut pending: VecDeque<(Instant, i64, bool)> = VecDeque::new();
    let mut rng = fastrand::Rng::with_seed(0x6a95);
    let start = Instant::now();
    let mut appended: u64 = 0;
    let mut last_report = start;
    loop {
        let now = Instant::now();
        // Whole events due since the start at this rate; a float is exact enough for pacing.
        let due = (now.duration_since(start).as_secs_f64() * args.rate) as u64;
        while appended < due {
            appended += 1;
            if args.gap_every > 0 && appended % args.gap_every == 0 {
                let commit = rng.f64() >= args.gap_never_fraction;
                pending.extend(
                    site.hold(1)
                        .into_iter()
                        .map(|id| (now + args.gap_fill_after, id, commit)),
                );
            } else {
                site.append(1);
            }
        }
        while pending.front().is_some_and(|(when, _, _)| *when <= now) {
            if let Some((_, id, commit)) = pending.pop_front() {
                if commit {
                    site.commit(&[id]);
                } else {
                    site.rollback(&[id]);
                }
            }
        }
        if now.duration_since(last_report) >= Duration::from_secs(10) {
            last_report = now;
            let s = site.stats();
            eprintln!(
                "newest id {}, {} visible, {} held; sign-ins {} (failed {}), searches {} (unauthorized {}, faults {}), rows served {}",
                site.newest_id(),
                site.visible_ids().len(),
                pending.len(),
                s.sign_ins,
                s.failed_sign_ins,
                s.searches,
                s.unauthorized,
                s.faults,
                s.rows_served
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn load_events(path: &str) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read `{path}`: {e}"))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line).map_err(|e| {
                format!(
                    "`{path}` line {}: not a JSON event: {e}\nhint: --events takes one flat event object per line",
                    n + 1
                )
            })
        })
        .collect()
}

/// Entities as `(type, fields)`, from one JSON object a line, each with its `type`.
fn load_entities(path: &str) -> Result<Vec<(String, Value)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read `{path}`: {e}"))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            let hint = "hint: --entities takes one JSON object a line, such as \
                        {\"type\": \"Task\", \"id\": 5, \"content\": \"Anim\"}";
            let fields: Value = serde_json::from_str(line)
                .map_err(|e| format!("`{path}` line {}: not JSON: {e}\n{hint}", n + 1))?;
            match fields.get("type").and_then(Value::as_str) {
                Some(entity_type) if fields.is_object() => Ok((entity_type.to_owned(), fields)),
                _ => Err(format!(
                    "`{path}` line {}: an entity needs a \"type\"\n{hint}",
                    n + 1
                )),
            }
        })
        .collect()
}

/// The arguments, or `None` for `--help`.
fn parse(mut argv: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut args = Args {
        site: SiteOptions::default(),
        first_id_given: false,
        events: None,
        entities: None,
        scripts: Vec::new(),
        log_writes: true,
        initial: 0,
        rate: 0.0,
        gap_every: 0,
        gap_fill_after: Duration::from_secs(5),
        gap_never_fraction: 0.0,
        faults: Faults {
            retry_after_s: 5,
            hang_for: Duration::from_secs(30),
            ..Faults::default()
        },
        webhook_url: None,
        webhook_secret: None,
    };
    while let Some(flag) = argv.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        if flag == "--no-log-writes" {
            args.log_writes = false;
            continue;
        }
        let (flag, inline) = match flag.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (flag, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| argv.next())
                .ok_or_else(|| format!("`{flag}` needs a value"))
        };
        match flag.as_str() {
            "--port" => args.site.port = number(&flag, &value()?)?,
            "--script-name" => args.site.script_name = value()?,
            "--script-key" => args.site.script_key = value()?,
            "--token-lifetime" => args.site.token_lifetime = duration(&flag, &value()?)?,
            "--seed" => args.site.seed = number(&flag, &value()?)?,
            "--first-id" => {
                args.site.first_id = number(&flag, &value()?)?;
                args.first_id_given = true;
            }
            "--events" => args.events = Some(value()?),
            "--entities" => args.entities = Some(value()?),
            "--script" => {
                let script = value()?;
                match script.split_once('=') {
                    Some((name, key)) if !name.is_empty() => {
                        args.scripts.push((name.to_owned(), key.to_owned()));
                    }
                    _ => {
                        return Err(format!("`--script` takes NAME=KEY, not `{script}`"));
                    }
                }
            }
            "--initial" => args.initial = number(&flag, &value()?)?,
            "--rate" => args.rate = rate(&flag, &value()?, f64::MAX)?,
            "--gap-every" => args.gap_every = number(&flag, &value()?)?,
            "--gap-fill-after" => args.gap_fill_after = duration(&flag, &value()?)?,
            "--gap-never-fraction" => args.gap_never_fraction = rate(&flag, &value()?, 1.0)?,
            "--error-rate" => args.faults.error_rate = rate(&flag, &value()?, 1.0)?,
            "--throttle-rate" => args.faults.throttle_rate = rate(&flag, &value()?, 1.0)?,
            "--retry-after" => args.faults.retry_after_s = number(&flag, &value()?)?,
            "--hang-rate" => args.faults.hang_rate = rate(&flag, &value()?, 1.0)?,
            "--hang-for" => args.faults.hang_for = duration(&flag, &value()?)?,
            "--latency" => args.site.latency = duration(&flag, &value()?)?,
            "--webhook-url" => args.webhook_url = Some(value()?),
            "--webhook-secret" => args.webhook_secret = Some(value()?),
            _ => return Err(format!("unknown option `{flag}`")),
        }
    }
    match (&args.webhook_url, &args.webhook_secret) {
        (Some(url), Some(_)) if !url.starts_with("http://") => {
            return Err(format!("`--webhook-url` takes an http:// URL, not `{url}`"));
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err("`--webhook-url` and `--webhook-secret` go together".to_owned());
        }
        _ => {}
    }
    let f = args.faults;
    if f.error_rate + f.throttle_rate + f.hang_rate > 1.0 {
        return Err(
            "`--error-rate`, `--throttle-rate` and `--hang-rate` add up to more than 1".to_owned(),
        );
    }
    Ok(Some(args))
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("`{flag}` takes a whole number, not `{value}`"))
}

/// A rate or a fraction: a number from 0 to `max`.
fn rate(flag: &str, value: &str, max: f64) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(r) if (0.0..=max).contains(&r) => Ok(r),
        _ if max == 1.0 => Err(format!(
            "`{flag}` takes a fraction from 0 to 1, not `{value}`"
        )),
        _ => Err(format!(
            "`{flag}` takes a number of 0 or more, not `{value}`"
        )),
    }
}

/// `500ms`, `5s`, `2m`, `1.5s`.
fn duration(flag: &str, value: &str) -> Result<Duration, String> {
    let (number, scale) = if let Some(n) = value.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = value.strip_suffix('m') {
        (n, 60.0)
    } else {
        (value, f64::NAN)
    };
    match number.trim().parse::<f64>() {
        Ok(n) if n >= 0.0 && scale.is_finite() => {
            Duration::try_from_secs_f64(n * scale).map_err(|e| e.to_string())
        }
        _ => Err(format!(
            "`{flag}` takes a duration such as `500ms`, `5s` or `2m`, not `{value}`"
        )),
    }
}
