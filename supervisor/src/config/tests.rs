//! Unit tests of the configuration loader.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::logging::{LogConfig, LogFormat};

fn parse_ok(text: &str) -> Config {
    parse(Path::new("/etc/sgevents/sgevents.toml"), text).unwrap_or_else(|e| panic!("{e}"))
}

fn parse_err(text: &str) -> String {
    parse(Path::new("sgevents.toml"), text)
        .expect_err("invalid configuration")
        .to_string()
}

const MINIMAL: &str = "[source]\nkind = \"jsonl\"\npath = \"events.jsonl\"\n";

/// A `[source]` of kind shotgrid, every key it needs there but the script's key.
const SHOTGRID: &str =
    "[source]\nkind = \"shotgrid\"\nurl = \"https://s.example\"\nscript_name = \"sgevents\"\n";

/// Every configuration that must be refused: (the case's name, the text, what the error says).
/// Each error starts with the file's name and ends with a hint; each fragment is in it, and a
/// fragment starting with `^` begins it (after the file's name).
fn refused() -> Vec<(&'static str, String, Vec<&'static str>)> {
    let keyed = format!("{SHOTGRID}script_key_env = \"PATH\"\n");
    let daemon = |line: &str| format!("[daemon]\n{line}\n{MINIMAL}");
    let plugins = |lines: &str| format!("{MINIMAL}[plugins]\n{lines}\n");
    let plugin_x = |lines: &str| format!("{MINIMAL}[plugin.x]\ncommand = [\"x\"]\n{lines}\n");
    vec![
        // Said in plain words: serde's type errors.
        (
            "an integer as a string",
            plugins("max_attempts = \"three\""),
            vec!["\nexpected an integer, found string \"three\"\n"],
        ),
        (
            "a command as a string",
            format!("{MINIMAL}[plugin.x]\ncommand = \"python3 x.py\"\n"),
            vec![
                "\nexpected an array such as `[\"python3\", \"plugin.py\"]`, found string \"python3 x.py\"\n",
            ],
        ),
        (
            "an unknown key",
            plugins("ack_timeuot = \"30s\""),
            vec!["^invalid configuration", "ack_timeuot"],
        ),
        // [daemon]
        (
            "log_retention 0",
            daemon("log_retention = 0"),
            vec!["`daemon.log_retention` = `0`: out of range"],
        ),
        (
            "log_retention 5000",
            daemon("log_retention = 5000"),
            vec!["`daemon.log_retention` = `5000`: out of range"],
        ),
        (
            "log_format xml",
            daemon("log_format = \"xml\""),
            vec!["`daemon.log_format` = `\"xml\"`: unknown log format"],
        ),
        (
            "log_dir empty",
            daemon("log_dir = \"\""),
            vec!["`daemon.log_dir` = `\"\"`: an empty path"],
        ),
        (
            "log_per_plugin without log_dir",
            daemon("log_per_plugin = true"),
            vec!["`daemon.log_per_plugin` = `true`: there is no `daemon.log_dir`"],
        ),
        (
            "timing_log without log_dir",
            daemon("timing_log = true"),
            vec!["`daemon.timing_log` = `true`: there is no `daemon.log_dir`"],
        ),
        (
            "log_retention as a string",
            daemon("log_retention = \"14\""),
            vec!["invalid configuration"],
        ),
        (
            "log_rotation, no such key",
            daemon("log_rotation = \"daily\""),
            vec!["log_rotation"],
        ),
        (
            "synchronous off",
            daemon("synchronous = \"off\""),
            vec!["`daemon.synchronous` = `\"off\"`"],
        ),
        // [plugins] and [plugin.NAME]
        (
            "a duration of parsecs",
            plugins("ack_timeout = \"30 parsecs\""),
            vec![
                "^`plugins.ack_timeout` = `\"30 parsecs\"`: not a duration",
                "hint: write a duration",
            ],
        ),
        (
            "max_attempts 0",
            plugins("max_attempts = 0"),
            vec!["`plugins.max_attempts` = `0`: out of range"],
        ),
        (
            "log_rate -1",
            plugins("log_rate = -1"),
            vec!["`plugins.log_rate` = `-1`: out of range"],
        ),
        (
            "inherit_env not a name",
            plugins("inherit_env = [\"BAD-NAME\"]"),
            vec!["`plugins.inherit_env` = `\"BAD-NAME\"`: not a variable name or glob"],
        ),
        (
            "a plugin folder that is not there",
            plugins("paths = [\"/no/such/folder\"]"),
            vec!["`plugins.paths` = `/no/such/folder`: cannot read the folder"],
        ),
        (
            "a plugin without a command",
            format!("{MINIMAL}[plugin.ghost]\nenv = {{ A = \"1\" }}\n"),
            vec!["`[plugin.ghost]` has no `command`"],
        ),
        (
            "an empty command",
            format!("{MINIMAL}[plugin.x]\ncommand = []\n"),
            vec!["empty command"],
        ),
        (
            "a bad plugin name",
            format!("{MINIMAL}[plugin.\"bad name\"]\ncommand = [\"x\"]\n"),
            vec!["not a valid plugin name"],
        ),
        (
            "script_name without a key",
            plugin_x("script_name = \"bot\""),
            vec!["sets only one of"],
        ),
        (
            "plugin credentials without a site",
            plugin_x("script_name = \"bot\"\nscript_key_env = \"SGEVENTS_TEST_NO_SUCH_VAR\""),
            vec!["names no site"],
        ),
        (
            "plugin credentials with an unset variable",
            format!(
                "{}[plugin.x]\ncommand = [\"x\"]\nscript_name = \"bot\"\nscript_key_env = \"SGEVENTS_TEST_NO_SUCH_VAR\"\n",
                MINIMAL.replace("path", "site_url = \"https://studio.example\"\npath")
            ),
            vec![
                "`plugin.x.script_key_env` = `\"SGEVENTS_TEST_NO_SUCH_VAR\"`: the environment variable is not set",
            ],
        ),
        (
            "group without user",
            plugin_x("group = \"anim\""),
            vec!["`plugin.x.group` = `\"anim\"`: `group` is set without `user`"],
        ),
        (
            "no such user",
            plugin_x("user = \"sgevents-no-such-user\""),
            vec!["`plugin.x.user` = `\"sgevents-no-such-user\"`: no such user on this machine"],
        ),
        (
            "a plugin starting at a time",
            plugin_x("start_at = \"2026-11-02T10:00:00Z\""),
            vec!["`plugin.x.start_at`"],
        ),
        // [source]
        (
            "no source",
            String::new(),
            vec!["there is no `[source]` table"],
        ),
        (
            "an unknown kind",
            "[source]\nkind = \"kafka\"\n".into(),
            vec![
                "`source.kind` = `\"kafka\"`: unknown source kind",
                "\"shotgrid\"",
                "\"jsonl\"",
            ],
        ),
        (
            "a kind that is not a string",
            "[source]\nkind = 3\npath = \"e\"\n".into(),
            vec![
                "`source.kind` = `3`: unknown source kind",
                "\"shotgrid\"",
                "\"jsonl\"",
            ],
        ),
        (
            "no kind",
            "[source]\npath = \"e\"\n".into(),
            vec!["`source.kind` is missing", "\"shotgrid\"", "\"jsonl\""],
        ),
        (
            "a source that is not a table",
            "source = 3\n".into(),
            vec!["`source` = `3`: not a table"],
        ),
        (
            "start_at yesterday",
            MINIMAL.replace("path", "start_at = \"yesterday\"\npath"),
            vec!["`source.start_at` = `\"yesterday\"`: not a starting point"],
        ),
        (
            "max_event_bytes too large",
            MINIMAL.replace("path", "max_event_bytes = 16777216\npath"),
            vec!["`source.max_event_bytes` = `16777216`: above the largest"],
        ),
        (
            "max_event_bytes too small",
            MINIMAL.replace("path", "max_event_bytes = 10\npath"),
            vec!["too small"],
        ),
        (
            "a shotgrid key under jsonl",
            "[source]\nkind = \"jsonl\"\npath = \"e\"\nurl = \"https://s\"\n".into(),
            vec![
                "`source.url` does not apply to kind = \"jsonl\"",
                "change `source.kind`",
            ],
        ),
        (
            "a jsonl key under shotgrid",
            format!("{SHOTGRID}path = \"events.jsonl\"\n"),
            vec![
                "`source.path` does not apply to kind = \"shotgrid\"",
                "change `source.kind`",
            ],
        ),
        (
            "a jsonl key under shotgrid, with its key",
            format!("{keyed}follow = true\n"),
            vec!["`source.follow` does not apply to kind = \"shotgrid\""],
        ),
        (
            "an unknown source key, on its line",
            MINIMAL.replace("path", "pathh = \"x\"\npath"),
            vec![
                "^invalid configuration",
                "line 3",
                "pathh = \"x\"",
                "unknown field `pathh`",
            ],
        ),
        (
            "a source value of the wrong type, on its line",
            format!("{keyed}fetch_concurrency = \"4\"\n"),
            vec![
                "line 6",
                "fetch_concurrency = \"4\"",
                "expected an integer, found string \"4\"",
            ],
        ),
        (
            "a time under jsonl",
            MINIMAL.replace("path", "start_at = \"2026-11-02T10:00:00Z\"\npath"),
            vec!["only the ShotGrid source understands"],
        ),
        (
            "no script key",
            SHOTGRID.into(),
            vec!["the script's key is missing"],
        ),
        (
            "script_key_env unset",
            format!("{SHOTGRID}script_key_env = \"SGEVENTS_TEST_UNSET_KEY\"\n"),
            vec![
                "`source.script_key_env` = `\"SGEVENTS_TEST_UNSET_KEY\"`: the environment variable is not set",
            ],
        ),
        (
            "both script keys",
            format!("{SHOTGRID}script_key_env = \"A\"\nscript_key_file = \"B\"\n"),
            vec!["both `source.script_key_env` and `source.script_key_file`"],
        ),
        (
            "fetch_concurrency 17",
            format!("{keyed}fetch_concurrency = 17\n"),
            vec!["`source.fetch_concurrency` = `17`: out of range"],
        ),
        (
            "webhook_secret_env unset",
            format!("{keyed}webhook_secret_env = \"SGEVENTS_TEST_UNSET_HOOK\"\n"),
            vec![
                "`source.webhook_secret_env` = `\"SGEVENTS_TEST_UNSET_HOOK\"`: the environment variable is not set",
            ],
        ),
        (
            "both webhook secrets",
            format!("{keyed}webhook_secret_env = \"A\"\nwebhook_secret_file = \"B\"\n"),
            vec!["both `source.webhook_secret_env` and `source.webhook_secret_file`"],
        ),
        (
            "a url that is not one",
            "[source]\nkind = \"shotgrid\"\nurl = \"mystudio\"\nscript_name = \"n\"\n".into(),
            vec!["`source.url` = `\"mystudio\"`: not an http(s) URL"],
        ),
        // [http]
        (
            "listen beyond loopback",
            format!("{MINIMAL}[http]\nlisten = \"0.0.0.0:9750\"\n"),
            vec!["`http.listen` = `\"0.0.0.0:9750\"`: not a loopback address"],
        ),
        (
            "listen on a name",
            format!("{MINIMAL}[http]\nlisten = \"localhost\"\n"),
            vec!["`http.listen` = `\"localhost\"`: not an IP address with a port"],
        ),
    ]
}

#[test]
fn refused_configurations_say_why_and_what_to_do() {
    assert_refused(refused());
}

/// Parses each row's text as `sgevents.toml` and checks that it is refused with an error that
/// names the file, holds each of the row's fragments (one starting with `^` begins the error,
/// after the file's name) and ends with a hint; fails once, naming every row that did not.
pub(crate) fn assert_refused<F: AsRef<str>>(
    rows: impl IntoIterator<Item = (&'static str, String, Vec<F>)>,
) {
    let mut failed = Vec::new();
    for (name, text, fragments) in rows {
        let err = match parse(Path::new("sgevents.toml"), &text) {
            Ok(_) => {
                failed.push(format!("{name}: accepted:\n{text}"));
                continue;
            }
            Err(e) => e.to_string(),
        };
        let Some(said) = err.strip_prefix("sgevents.toml: ") else {
            failed.push(format!("{name}: does not name the file:\n{err}"));
            continue;
        };
        if !err.contains("\nhint: ") {
            failed.push(format!("{name}: no hint:\n{err}"));
        }
        for fragment in &fragments {
            let fragment = fragment.as_ref();
            let found = match fragment.strip_prefix('^') {
                Some(start) => said.starts_with(start),
                None => err.contains(fragment),
            };
            if !found {
                failed.push(format!("{name}: {fragment:?} is not in:\n{err}"));
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

#[test]
fn files_without_the_executable_bit_are_named() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, mode) in [
        ("run.py", 0o755),
        ("forgot_chmod.py", 0o644),
        (".hidden", 0o644),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, "").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let found = not_executable(&[dir.path().to_path_buf()]);
    assert_eq!(found, [dir.path().join("forgot_chmod.py")]);
    assert_eq!(
        not_executable_note(Path::new("plugins/forgot_chmod.py")),
        "`plugins/forgot_chmod.py` in a plugins folder is not executable, so it is not a plugin\n\
         hint: run `chmod +x plugins/forgot_chmod.py` to make it one, or move it out of the folder"
    );
}

#[test]
fn a_plugin_overrides_the_restart_backoff() {
    let c = parse_ok(&format!(
        "{MINIMAL}[plugins]\nrestart_delay = \"2s\"\n[plugin.x]\ncommand = [\"x\"]\nrestart_delay = \"5s\"\nrestart_delay_max = \"10m\"\n[plugin.y]\ncommand = [\"y\"]\n"
    ));
    let limits = |n: &str| {
        c.plugins
            .iter()
            .find(|p| p.name == n)
            .map(|p| (p.limits.restart_delay, p.limits.restart_delay_max))
            .expect("plugin")
    };
    assert_eq!(
        limits("x"),
        (Duration::from_secs(5), Duration::from_secs(600))
    );
    assert_eq!(
        limits("y"),
        (Duration::from_secs(2), Duration::from_secs(300)),
        "the others keep [plugins]'"
    );
}

#[test]
fn type_errors_and_log_filters_are_said_in_plain_words() {
    let err = parse_err(&format!("[daemon]\nlog_level = \"verbose\"\n{MINIMAL}"));
    assert_eq!(
        err,
        "sgevents.toml: `daemon.log_level` = `\"verbose\"`: `verbose` is not a level (one of trace, debug, info, warn, error, off)\n\
         hint: write a level (\"trace\", \"debug\", \"info\", \"warn\", \"error\") or a filter such as \"info,sgevents=debug\""
    );
    for ok in ["debug", "info,sgevents=debug", "warn,plugin=info", "OFF"] {
        let c = parse_ok(&format!("[daemon]\nlog_level = {ok:?}\n{MINIMAL}"));
        assert_eq!(c.daemon.log_level, ok);
    }
}

#[test]
fn max_event_bytes_defaults_to_what_an_event_line_can_carry() {
    let SourceConfig::Jsonl(s) = parse_ok(MINIMAL).source else {
        panic!("a jsonl source")
    };
    assert_eq!(s.max_event_bytes, MAX_EVENT_BYTES);
    // The largest event, wrapped with the largest fixed fields and 63 KiB of subscription
    // names, still fits the protocol's line limit.
    let body = format!(
        "{{\"id\":1,\"x\":\"{}\"}}",
        "a".repeat(MAX_EVENT_BYTES - 15)
    );
    assert_eq!(body.len(), MAX_EVENT_BYTES);
    let names: Vec<String> = (0..63).map(|i| format!("{i:0>1018}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let line = sgevents_protocol::encode_event_raw(i64::MAX, u32::MAX, &names, u64::MAX, &body);
    assert!(
        line.len() <= sgevents_protocol::DEFAULT_MAX_LINE_BYTES,
        "{} bytes",
        line.len()
    );
    let c = parse_ok(&MINIMAL.replace("path", "max_event_bytes = 4096\npath"));
    let SourceConfig::Jsonl(s) = c.source else {
        panic!("a jsonl source")
    };
    assert_eq!(s.max_event_bytes, 4096);
}

#[test]
fn defaults() {
    let c = parse_ok(MINIMAL);
    assert_eq!(c.daemon.state_dir, Path::new("/etc/sgevents/var"));
    assert_eq!(c.daemon.synchronous, Synchronous::Full);
    for (text, want) in [
        ("normal", Synchronous::Normal),
        ("NORMAL", Synchronous::Normal),
        ("Full", Synchronous::Full),
    ] {
        let c = parse_ok(&format!("[daemon]\nsynchronous = {text:?}\n{MINIMAL}"));
        assert_eq!(c.daemon.synchronous, want, "any case, as always");
    }
    assert_eq!(
        c.daemon.journal_retention,
        Duration::from_secs(7 * 24 * 3600)
    );
    assert!(!c.daemon.exit_when_idle);
    let SourceConfig::Jsonl(s) = &c.source else {
        panic!("a jsonl source")
    };
    assert_eq!(s.path, Path::new("/etc/sgevents/events.jsonl"));
    assert!(!s.follow);
    assert_eq!(s.start_at, StartAt::Earliest);
    assert!(c.plugins.is_empty());
}

#[test]
fn log_settings() {
    let c = parse_ok(MINIMAL);
    assert_eq!(
        c.daemon.logs,
        LogConfig {
            dir: None,
            retention: 14,
            per_plugin: false,
            format: LogFormat::Text,
            timing: false,
        },
        "stderr only by default"
    );
    let c = parse_ok(&format!("[daemon]\nlog_dir = \"logs\"\n{MINIMAL}"));
    assert_eq!(
        c.daemon.logs.dir.as_deref(),
        Some(Path::new("/etc/sgevents/logs"))
    );
    assert!(
        c.daemon.logs.timing,
        "the timing log is on when there are files"
    );
    let c = parse_ok(&format!(
        "[daemon]\nlog_dir = \"/var/log/sgevents\"\nlog_retention = 30\nlog_per_plugin = true\n\
         log_format = \"JSON\"\ntiming_log = false\n{MINIMAL}"
    ));
    assert_eq!(
        c.daemon.logs,
        LogConfig {
            dir: Some(PathBuf::from("/var/log/sgevents")),
            retention: 30,
            per_plugin: true,
            format: LogFormat::Json,
            timing: false,
        }
    );
}

#[test]
fn plugin_tables() {
    let c = parse_ok(&format!(
        "{MINIMAL}[plugins]\nack_timeout = \"2m\"\nmax_attempts = 3\n\
         [plugin.task_status]\ncommand = [\"python3\", \"plugins/python/task_status.py\"]\n\
         env = {{ STUDIO_ROOT = \"/mnt/projects\" }}\nconfig = {{ final_status = \"fin\", n = 3 }}\n\
         start_at = \"earliest\"\nack_timeout = \"5s\"\n\
         [plugin.a_first]\ncommand = [\"/bin/true\"]\nenabled = false\nstart_at = 2011531\n"
    ));
    let names: Vec<_> = c.plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["a_first", "task_status"],
        "command plugins start in name order"
    );
    let ts = &c.plugins[1];
    assert_eq!(ts.command, ["python3", "plugins/python/task_status.py"]);
    assert_eq!(
        ts.env.get("STUDIO_ROOT").map(String::as_str),
        Some("/mnt/projects")
    );
    assert_eq!(ts.config.get("final_status"), Some(&Value::from("fin")));
    assert_eq!(ts.start_at, Some(StartAt::Earliest));
    assert_eq!(ts.limits.ack_timeout, Duration::from_secs(5));
    assert_eq!(ts.limits.max_attempts, 3);
    assert_eq!(ts.cwd, Path::new("/etc/sgevents"));
    assert!(!c.plugins[0].enabled);
    assert_eq!(c.plugins[0].start_at, Some(StartAt::EventId(2011531)));
    assert_eq!(c.plugins[0].limits.ack_timeout, Duration::from_secs(120));
}

#[test]
fn log_rate_defaults_overrides_and_bounds() {
    let c = parse_ok(&format!(
        "{MINIMAL}[plugins]\nlog_rate = 50\n\
         [plugin.quiet]\ncommand = [\"/bin/true\"]\nlog_rate = 0\n\
         [plugin.plain]\ncommand = [\"/bin/true\"]\n"
    ));
    let rate = |name: &str| {
        c.plugins
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.limits.log_rate)
    };
    assert_eq!(rate("quiet"), Some(0), "0: no limit");
    assert_eq!(rate("plain"), Some(50), "the [plugins] default");
    assert_eq!(PluginLimits::default().log_rate, 1000);
}

#[test]
fn environment_and_user_settings() {
    let c = parse_ok(&format!(
        "{MINIMAL}site_url = \"https://s.example\"\n[plugins]\ninherit_env = [\"STUDIO_*\"]\nenv = {{ A = \"1\", B = \"all\" }}\n\
         [plugin.x]\ncommand = [\"x\"]\ninherit_env = [\"OCIO\"]\nenv = {{ B = \"x\" }}\n"
    ));
    let x = &c.plugins[0];
    assert_eq!(x.inherit_env, ["STUDIO_*", "OCIO"]);
    assert_eq!(x.env["A"], "1");
    assert_eq!(x.env["B"], "x");
    assert_eq!(x.user, None);
}

#[test]
fn the_variables_env_keys_name_are_secret() {
    let c = parse_with(
        Path::new("x.toml"),
                        "[source]\nkind = \"shotgrid\"\nurl = \"https://s.example\"\nscript_name = \"d\"\nscript_key_env = \"SRC_KEY\"\n\
             [plugin.x]\ncommand = [\"x\"]\nscript_name = \"x\"\nscript_key_env = \"X_KEY\"\n\
             [alerts]\nsmtp_host = \"mail\"\nusername_env = \"MAIL_USER\"\npassword_env = \"MAIL_PASS\"\nfrom = \"a@b.example\"\nto = [\"c@d.example\"]\n"
        ,
        true,
    )
    .expect("valid");
    let want = ["MAIL_PASS", "MAIL_USER", "SRC_KEY", "X_KEY"];
    assert_eq!(c.secret_env.iter().collect::<Vec<_>>(), want);
    assert_eq!(c.plugins[0].withheld_env, c.secret_env);
}

#[test]
fn credentials_are_redacted_in_debug() {
    let c = Credentials {
        site_url: "https://s".into(),
        script_name: "bot".into(),
        script_key: Secret::new("s3cret"),
    };
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("s3cret") && shown.contains("<redacted>"),
        "{shown}"
    );
}

#[test]
fn discovery_order_and_filters() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).expect("mkdir");
    std::fs::create_dir_all(&b).expect("mkdir");
    let make = |p: PathBuf, mode: u32| {
        std::fs::write(&p, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    make(a.join("zeta.py"), 0o755);
    make(a.join("Alpha"), 0o755);
    make(a.join("beta.sh"), 0o755);
    make(a.join(".hidden"), 0o755);
    make(a.join("notes.txt"), 0o644);
    std::fs::create_dir(a.join("subdir")).expect("mkdir");
    make(b.join("aardvark"), 0o700);
    let found = discover(&[a.clone(), b.clone(), a.clone()]).expect("readable");
    let names: Vec<String> = found.iter().map(|p| plugin_name(p)).collect();
    assert_eq!(names, ["Alpha", "beta", "zeta", "aardvark"]);

    let text = format!(
        "[source]\nkind = \"jsonl\"\npath = \"e\"\n[plugins]\npaths = [{:?}, {:?}]\n[plugin.beta]\nconfig = {{ x = 1 }}\n[plugin.extra]\ncommand = [\"/bin/cat\"]\n",
        a.display().to_string(),
        b.display().to_string()
    );
    let c = parse(&dir.path().join("sgevents.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<_> = c.plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Alpha", "beta", "zeta", "aardvark", "extra"]);
    assert_eq!(c.plugins[1].config.get("x"), Some(&Value::from(1)));
    assert_eq!(c.plugins[1].origin, Origin::Discovered(a.join("beta.sh")));
}

#[test]
fn duplicate_stems_and_missing_folders_are_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d).expect("mkdir");
        let p = d.join("same.py");
        std::fs::write(&p, "").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let text = format!(
        "[source]\nkind = \"jsonl\"\npath = \"e\"\n[plugins]\npaths = [{:?}, {:?}]\n",
        a.display().to_string(),
        b.display().to_string()
    );
    let err = parse(Path::new("x.toml"), &text)
        .expect_err("duplicate")
        .to_string();
    assert!(err.contains("two plugins are named `same`"), "{err}");
}

#[test]
fn fingerprints_change_with_the_config() {
    let c = parse_ok(&format!(
        "{MINIMAL}[plugin.x]\ncommand = [\"/bin/cat\"]\nconfig = {{ a = 1 }}\n"
    ));
    let d = parse_ok(&format!(
        "{MINIMAL}[plugin.x]\ncommand = [\"/bin/cat\"]\nconfig = {{ a = 2 }}\n"
    ));
    assert_eq!(c.plugins[0].fingerprint(), c.plugins[0].fingerprint());
    assert_ne!(c.plugins[0].fingerprint(), d.plugins[0].fingerprint());
}

#[test]
fn a_shotgrid_source() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("key");
    std::fs::write(&key, "s3cret-key\n").expect("write key");
    let text = format!(
        "[source]\nkind = \"shotgrid\"\nurl = \"https://studio.example/\"\nscript_name = \"sgevents\"\n\
         script_key_file = {:?}\nfetch_interval = \"1s\"\nstart_at = \"2026-11-02T10:00:00Z\"\nproxy = \"http://proxy:3128\"\n\
         [plugin.x]\ncommand = [\"x\"]\n",
        key.display().to_string()
    );
    let c = parse(&dir.path().join("sgevents.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
    let SourceConfig::Shotgrid(s) = &c.source else {
        panic!("a shotgrid source")
    };
    assert_eq!(
        s.url, "https://studio.example",
        "the trailing slash is dropped"
    );
    assert_eq!(s.script_key.expose(), "s3cret-key");
    assert_eq!(
        (s.fetch_interval, s.batch_size, s.gap_timeout),
        (Duration::from_secs(1), 500, Duration::from_secs(300))
    );
    assert_eq!(
        s.start_at,
        StartAt::Time(humantime::parse_rfc3339("2026-11-02T10:00:00Z").expect("time"))
    );
    assert!(
        !format!("{c:?}").contains("s3cret-key"),
        "the key never shows in debug output"
    );
    assert_eq!(c.source.site_url(), Some("https://studio.example"));
    assert_eq!(
        (
            s.min_fetch_interval,
            s.fetch_concurrency,
            s.webhook_secret.is_none()
        ),
        (Duration::from_millis(250), 4, true),
        "the defaults"
    );
    let hook = dir.path().join("hook");
    std::fs::write(&hook, "h00k\n").expect("write secret");
    let tuned = text.replace(
        "fetch_interval = \"1s\"\n",
        &format!(
            "fetch_interval = \"1s\"\nmin_fetch_interval = \"5s\"\nfetch_concurrency = 16\nwebhook_secret_file = {:?}\n",
            hook.display().to_string()
        ),
    );
    let c = parse(&dir.path().join("sgevents.toml"), &tuned).unwrap_or_else(|e| panic!("{e}"));
    let SourceConfig::Shotgrid(s) = &c.source else {
        panic!("a shotgrid source")
    };
    assert_eq!(
        s.min_fetch_interval,
        Duration::from_secs(1),
        "capped at fetch_interval"
    );
    assert_eq!(s.fetch_concurrency, 16);
    assert_eq!(s.webhook_secret.as_ref().map(Secret::expose), Some("h00k"));
    assert!(
        c.secrets().iter().any(|v| v == "h00k"),
        "the webhook's secret is redacted"
    );
    let text = "[source]\nkind = \"shotgrid\"\nurl = \"https://s.example\"\nscript_name = \"n\"\nscript_key_file = \"k\"\n";
    let err = parse(Path::new("/x/sgevents.toml"), text)
        .expect_err("missing key file")
        .to_string();
    assert!(
        err.contains("`source.script_key_file` = `/x/k`: cannot read it"),
        "{err}"
    );
}

#[test]
fn http_listens_on_loopback_by_default_and_elsewhere_only_when_allowed() {
    let c = parse_ok(MINIMAL);
    assert_eq!(
        c.http,
        HttpConfig {
            listen: Some("127.0.0.1:9750".parse().expect("address")),
            listen_set: false,
            allow_remote: false,
        }
    );
    let c = parse_ok(&format!("{MINIMAL}[http]\nlisten = \"\"\n"));
    assert_eq!(c.http.listen, None);
    let c = parse_ok(&format!("{MINIMAL}[http]\nlisten = \"[::1]:0\"\n"));
    assert_eq!(c.http.listen, Some("[::1]:0".parse().expect("address")));
    assert!(c.http.listen_set);
    let c = parse_ok(&format!(
        "{MINIMAL}[http]\nlisten = \"0.0.0.0:9750\"\nallow_remote = true\n"
    ));
    assert!(c.http.allow_remote);
}
