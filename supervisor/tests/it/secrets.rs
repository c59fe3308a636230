//! Issue 11: each plugin holds only its own secrets. Clean environments, `user =`, redaction,
//! the state directory's permissions, and the parent-death signal of the plugin launcher.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use super::*;

const A_KEY: &str = "a-key-0f3b9c2e";
const B_KEY: &str = "b-key-7d41aa90";
const SMTP_USER: &str = "mail-bot-user";
const SMTP_PASS: &str = "mail-pass-5e8f";

/// A `[plugin.NAME]` table running the test plugin with its own key in `NAME_KEY`.
fn keyed_plugin(name: &str, var: &str, extra: &str, config: &str) -> String {
    format!(
        "\n[plugin.{name}]\ncommand = [{:?}]\nscript_name = \"{name}_bot\"\nscript_key_env = \"{var}\"\n{extra}\nconfig = {{ {config} }}\n",
        test_plugin().display().to_string()
    )
}

fn quoted(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).expect("exists").permissions().mode() & 0o777
}

const SITE: (&str, &str) = (
    "path = \"events.jsonl\"",
    "path = \"events.jsonl\"\nsite_url = \"https://studio.example\"",
);

/// The `[alerts]` table with a login from the environment (nothing is mailed in these runs).
const ALERTS: &str = "\n[alerts]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = 9\nusername_env = \"SMTP_USER\"\npassword_env = \"SMTP_PASS\"\nfrom = \"sgevents@studio.example\"\nto = [\"ops@studio.example\"]\n";

#[test]
fn a_plugin_gets_a_built_environment_with_only_its_own_key() {
    let ctx = Ctx::new();
    ctx.events(1..=2);
    let a = keyed_plugin(
        "a",
        "A_KEY",
        "",
        &format!("env_all = {}", quoted(&ctx.path("a.env"))),
    );
    let b = keyed_plugin(
        "b",
        "B_KEY",
        "inherit_env = [\"OCIO\"]\nenv = { ONLY_B = \"1\" }",
        &format!("env_all = {}", quoted(&ctx.path("b.env"))),
    );
    ctx.config(
        &[
            SITE,
            (
                "[plugins]\n",
                // `A_KEY` and `SMTP_*` match, and are withheld all the same.
                "[plugins]\ninherit_env = [\"STUDIO_*\", \"A_KEY\", \"SMTP_*\"]\nenv = { ALL_PLUGINS = \"yes\" }\n",
            ),
        ],
        &format!("{a}{b}{ALERTS}"),
    );
    let with_env = |cmd: &mut Command| {
        cmd.env("A_KEY", A_KEY)
            .env("B_KEY", B_KEY)
            .env("SMTP_USER", SMTP_USER)
            .env("SMTP_PASS", SMTP_PASS)
            .env("STUDIO_ROOT", "/mnt/projects")
            .env("OCIO", "/studio/ocio/config.ocio")
            .env("UNRELATED_VAR", "not for plugins")
            .env("SGEVENTS_SCRIPT_KEY", "the-daemons-own-key");
    };
    let mut cmd = ctx.sgevents(&["run"]);
    with_env(&mut cmd);
    let out = wait_output(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sgevents starts"),
    );
    assert_success(&out);
    let read = |name: &str| fs::read_to_string(ctx.path(&format!("{name}.env"))).expect("env");
    let (a_env, b_env) = (read("a"), read("b"));
    for (env, own, other) in [(&a_env, A_KEY, B_KEY), (&b_env, B_KEY, A_KEY)] {
        assert!(
            env.contains(&format!("SGEVENTS_SCRIPT_KEY={own}\n")),
            "{env}"
        );
        for leak in [
            other,
            SMTP_USER,
            SMTP_PASS,
            "the-daemons-own-key",
            "not for plugins",
        ] {
            assert!(!env.contains(leak), "`{leak}` leaked:\n{env}");
        }
        for var in [
            "A_KEY=",
            "B_KEY=",
            "SMTP_USER=",
            "SMTP_PASS=",
            "UNRELATED_VAR=",
        ] {
            assert!(!env.lines().any(|l| l.starts_with(var)), "{var}\n{env}");
        }
        assert!(env.contains("\nPATH=") || env.starts_with("PATH="), "{env}");
        assert!(env.contains("STUDIO_ROOT=/mnt/projects\n"), "{env}");
        assert!(env.contains("ALL_PLUGINS=yes\n"), "{env}");
    }
    assert!(
        !a_env.contains("OCIO=") && !a_env.contains("ONLY_B="),
        "{a_env}"
    );
    assert!(
        b_env.contains("OCIO=/studio/ocio/config.ocio\n") && b_env.contains("ONLY_B=1\n"),
        "{b_env}"
    );

    // `check` says that `inherit_env` matched a secret's variable.
    let mut cmd = ctx.sgevents(&["check"]);
    with_env(&mut cmd);
    let out = cmd.output().expect("check runs");
    let text = String::from_utf8_lossy(&out.stdout);
    for var in ["A_KEY", "SMTP_PASS", "SMTP_USER"] {
        assert!(
            text.contains(&format!(
                "plugin a: note: `inherit_env` matches `{var}`, which a `*_env` key names: it is withheld"
            )),
            "{text}"
        );
    }
}

#[test]
fn inherit_all_restores_the_old_environment_with_a_warning() {
    let ctx = Ctx::new();
    ctx.events(1..=1);
    let a = keyed_plugin(
        "a",
        "A_KEY",
        "inherit_env = [\"*\"]",
        &format!("env_all = {}", quoted(&ctx.path("a.env"))),
    );
    ctx.config(&[SITE], &a);
    let out = wait_output(
        ctx.sgevents(&["run"])
            .env("A_KEY", A_KEY)
            .env("UNRELATED_VAR", "passed through")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sgevents starts"),
    );
    assert_success(&out);
    let env = fs::read_to_string(ctx.path("a.env")).expect("env");
    assert!(env.contains("UNRELATED_VAR=passed through\n"), "{env}");
    assert!(!env.lines().any(|l| l.starts_with("A_KEY=")), "{env}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("plugin `a` inherits the daemon's whole environment"),
        "{stderr}"
    );
}

/// Every text column of every table.
fn db_texts(db: &Connection) -> Vec<String> {
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .expect("tables")
        .query_map([], |r| r.get(0))
        .expect("rows")
        .map(Result::unwrap)
        .collect();
    let mut out = Vec::new();
    for t in tables {
        let mut stmt = db
            .prepare(&format!("SELECT * FROM \"{t}\""))
            .expect("select");
        let n = stmt.column_count();
        let mut rows = stmt.query([]).expect("rows");
        while let Some(row) = rows.next().expect("row") {
            for i in 0..n {
                if let Ok(rusqlite::types::ValueRef::Text(t)) = row.get_ref(i) {
                    out.push(String::from_utf8_lossy(t).into_owned());
                }
            }
        }
    }
    out
}

#[test]
fn secrets_a_plugin_prints_or_returns_are_written_nowhere() {
    let ctx = Ctx::new();
    ctx.events(1..=4);
    // `a` logs its key at each event, returns it in a `term` (event 1) and a `nack` (event 2);
    // `c` returns it in a `fatal` (event 3), which disables it.
    let a = keyed_plugin(
        "a",
        "A_KEY",
        "",
        "leak_key = true, term_at = 1, nack_at = 2, nack_times = 1",
    );
    let c = keyed_plugin("c", "B_KEY", "", "leak_key = true, fatal_at = 3");
    ctx.config(
        &[
            SITE,
            ("exit_when_idle = true", "exit_when_idle = false"),
            (
                "commit_interval = \"1ms\"",
                // JSON lines: a secret quoted in JSON is redacted too.
                "commit_interval = \"1ms\"\nlog_dir = \"logs\"\nlog_per_plugin = true\nlog_format = \"json\"",
            ),
        ],
        &format!("{a}{c}"),
    );
    let log = fs::File::create(ctx.path("daemon.log")).expect("log");
    let mut daemon = ctx
        .sgevents(&["run"])
        .env("A_KEY", A_KEY)
        .env("B_KEY", B_KEY)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("sgevents starts");
    wait_for("the term, the nack's retry and the fatal", || {
        ctx.plugin_if_known("c")
            .is_some_and(|(state, ..)| state == "disabled")
            && ctx
                .plugin_if_known("a")
                .is_some_and(|(_, last, ..)| last == Some(4))
            && !ctx.failed("a").is_empty()
    });
    // Answers of the running daemon, as scripts read them.
    let mut answers = String::new();
    for args in [
        &["failed", "list", "--json"][..],
        &["plugin", "list", "--json"],
        &["status", "--json"],
    ] {
        let out = ctx.sgevents(args).output().expect("cli runs");
        answers.push_str(&String::from_utf8_lossy(&out.stdout));
        answers.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    signal(&daemon, nix::sys::signal::Signal::SIGTERM);
    let status = daemon.wait().expect("daemon exits");
    assert!(status.success(), "{}", ctx.log());

    // The leaks happened (and were redacted), so the test saw what it means to see.
    let failed = ctx.failed("a");
    assert!(
        failed[0]
            .2
            .contains("can never work (my key is <redacted>)"),
        "{failed:?}"
    );
    let (_, _, _, reason) = ctx.plugin("c");
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("(my key is <redacted>)")),
        "{reason:?}"
    );
    assert!(ctx.log().contains("with key <redacted>"), "{}", ctx.log());
    assert!(answers.contains("<redacted>"), "{answers}");

    let mut texts = vec![("daemon stderr".to_owned(), ctx.log())];
    texts.push(("--json answers".to_owned(), answers));
    let mut dirs = vec![ctx.path("logs")];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("log dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let text = String::from_utf8_lossy(&fs::read(&path).expect("log")).into_owned();
                texts.push((path.display().to_string(), text));
            }
        }
    }
    assert!(texts.len() >= 4, "the daemon's and the plugins' log files");
    for (i, t) in db_texts(&ctx.db()).into_iter().enumerate() {
        texts.push((format!("state.db text #{i}"), t));
    }
    for file in ["state.db", "state.db-wal"] {
        if let Ok(bytes) = fs::read(ctx.path("var").join(file)) {
            texts.push((
                file.to_owned(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
    for (what, text) in &texts {
        for secret in [A_KEY, B_KEY] {
            assert!(!text.contains(secret), "`{secret}` is in {what}:\n{text}");
        }
    }
}

#[test]
fn a_world_readable_state_directory_is_made_private_at_start() {
    let ctx = Ctx::new();
    ctx.events(1..=2);
    let plugin = ctx.test_plugin("a", "");
    ctx.config(
        &[(
            "commit_interval = \"1ms\"",
            "commit_interval = \"1ms\"\nlog_dir = \"logs\"\nlog_per_plugin = true",
        )],
        &plugin,
    );
    assert_success(&ctx.run());
    let var = ctx.path("var");
    // As a restore under umask 022 leaves it.
    fs::set_permissions(&var, fs::Permissions::from_mode(0o755)).expect("chmod");
    for f in ["state.db", "sgevents.lock"] {
        fs::set_permissions(var.join(f), fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    fs::write(var.join("state.db-wal"), b"").expect("wal");
    fs::set_permissions(var.join("state.db-wal"), fs::Permissions::from_mode(0o644))
        .expect("chmod");
    fs::set_permissions(ctx.path("logs"), fs::Permissions::from_mode(0o777)).expect("chmod");
    ctx.append_events(3..=4);
    let out = ctx.run();
    assert_success(&out);
    assert_eq!(mode(&var), 0o700);
    for f in ["state.db", "sgevents.lock"] {
        assert_eq!(mode(&var.join(f)), 0o600, "{f}");
    }
    for f in ["state.db-wal", "state.db-shm"] {
        if var.join(f).exists() {
            assert_eq!(mode(&var.join(f)), 0o600, "{f}");
        }
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr
            .matches("the state directory was readable by others")
            .count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("(was 0755)"), "{stderr}");
    assert_eq!(mode(&ctx.path("logs")), 0o750);
    assert_eq!(mode(&ctx.path("logs/plugins")), 0o750);
    assert_eq!(mode(&ctx.path("logs/sgevents.log")), 0o640);
    assert_eq!(mode(&ctx.path("logs/plugins/a.log")), 0o640);
}

/// Whether `pid` is gone or a zombie (dead, not yet reaped by whoever inherited it).
fn dead(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn a_busy_plugin_dies_with_a_killed_daemon() {
    let ctx = Ctx::new();
    ctx.events(1..=1);
    let plugin = ctx.test_plugin(
        "busy",
        &format!(
            "slow_ms = 600000, pid_file = {}",
            quoted(&ctx.path("busy.pid"))
        ),
    );
    ctx.config(
        &[
            ("exit_when_idle = true", "exit_when_idle = false"),
            ("ack_timeout = \"2s\"", "ack_timeout = \"20m\""),
        ],
        &plugin,
    );
    let mut daemon = ctx.start();
    wait_for("the plugin to get its event", || {
        !ctx.ids("busy").is_empty()
    });
    let pid: i32 = fs::read_to_string(ctx.path("busy.pid"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(!dead(pid));
    signal(&daemon, nix::sys::signal::Signal::SIGKILL);
    let _ = daemon.wait();
    wait_for("the plugin to die with the daemon", || dead(pid));
}

/// A system user made for one test, removed when dropped (even by a panic).
struct TestUser(String);

impl TestUser {
    fn new(name: &str) -> TestUser {
        let _ = Command::new("userdel").arg(name).output();
        let out = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .arg(name)
            .output()
            .expect("useradd runs");
        assert!(
            out.status.success(),
            "useradd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        TestUser(name.to_owned())
    }

    fn uid(&self) -> u32 {
        nix::unistd::User::from_name(&self.0)
            .expect("lookup")
            .expect("exists")
            .uid
            .as_raw()
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.0).output();
    }
}

#[test]
fn a_plugin_run_as_its_own_user_cannot_read_other_environments() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: running plugins as other users needs root");
        return;
    }
    if Command::new("useradd").arg("--help").output().is_err() {
        eprintln!("skipped: no useradd on this machine");
        return;
    }
    let tag = std::process::id();
    let (ua, ub) = (
        TestUser::new(&format!("sgevt{tag}a")),
        TestUser::new(&format!("sgevt{tag}b")),
    );
    let ctx = Ctx::new();
    // The plugins, as their users, reach the test plugin and write in `out`.
    fs::set_permissions(ctx.path(""), fs::Permissions::from_mode(0o755)).expect("chmod");
    let out_dir = ctx.path("out");
    fs::create_dir(&out_dir).expect("mkdir");
    fs::set_permissions(&out_dir, fs::Permissions::from_mode(0o777)).expect("chmod");
    ctx.events(1..=2);
    let o = |f: &str| quoted(&out_dir.join(f));
    // `b` probes `a` (which it runs after, so `a` has started) and the daemon. (`after` names a
    // plugin that starts first: the tables start in name order.)
    let a = keyed_plugin(
        "a",
        "A_KEY",
        &format!("user = \"{}\"", ua.0),
        &format!("pid_file = {}, record = {}", o("a.pid"), o("a.rec")),
    );
    let b = keyed_plugin(
        "b",
        "B_KEY",
        &format!("user = \"{}\"\nafter = [\"a\"]", ub.0),
        &format!(
            "env_all = {}, environ_probe = {}, probe_pid_files = [{}], record = {}",
            o("b.env"),
            o("b.probe"),
            o("a.pid"),
            o("b.rec")
        ),
    );
    ctx.config(&[SITE], &format!("{a}{b}"));
    let out = wait_output(
        ctx.sgevents(&["run"])
            .env("A_KEY", A_KEY)
            .env("B_KEY", B_KEY)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sgevents starts"),
    );
    assert_success(&out);
    let env = fs::read_to_string(out_dir.join("b.env")).expect("env");
    assert!(env.contains(&format!("#uid={}\n", ub.uid())), "{env}");
    assert!(env.contains(&format!("USER={}\n", ub.0)), "{env}");
    assert!(env.contains(&format!("LOGNAME={}\n", ub.0)), "{env}");
    let home = nix::unistd::User::from_name(&ub.0)
        .expect("lookup")
        .expect("user")
        .dir;
    assert!(env.contains(&format!("HOME={}\n", home.display())), "{env}");
    // Its home does not exist (--no-create-home): the plugin runs in `/`.
    assert!(env.contains("#cwd=/\n"), "{env}");
    assert!(
        env.contains(&format!("SGEVENTS_SCRIPT_KEY={B_KEY}\n")),
        "{env}"
    );
    let probe = fs::read_to_string(out_dir.join("b.probe")).expect("probe");
    let lines: Vec<&str> = probe.lines().collect();
    assert_eq!(lines.len(), 2, "the daemon and the sibling: {probe}");
    for line in lines {
        assert!(line.contains("\tERR\t"), "{probe}");
    }
    assert!(!probe.contains(B_KEY) && !probe.contains(A_KEY), "{probe}");
    let rec = fs::read_to_string(out_dir.join("b.rec")).expect("b delivered");
    assert_eq!(rec.lines().count(), 2, "{rec}");
}

#[test]
fn user_needs_a_daemon_that_may_switch_users() {
    if nix::unistd::geteuid().is_root() {
        // Checked as a non-root daemon: run the check as `nobody`.
        let ctx = Ctx::new();
        fs::set_permissions(ctx.path(""), fs::Permissions::from_mode(0o755)).expect("chmod");
        ctx.events(1..=1);
        ctx.config(
            &[],
            "\n[plugin.a]\ncommand = [\"/bin/true\"]\nuser = \"root\"\n",
        );
        let out = Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_sgevents"))
            .args(["-c", "sgevents.toml", "check"])
            .current_dir(ctx.path(""))
            .output();
        let Ok(out) = out else {
            eprintln!("skipped: no setpriv on this machine");
            return;
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("setpriv:") {
            eprintln!("skipped: setpriv cannot switch here: {stderr}");
            return;
        }
        assert!(!out.status.success());
        assert!(
            stderr.contains("`plugin.a.user` = `\"root\"`: the daemon runs as uid")
                && stderr.contains("without CAP_SETUID and CAP_SETGID")
                && stderr.contains("\nhint: run the daemon as root"),
            "{stderr}"
        );
    } else {
        let ctx = Ctx::new();
        ctx.events(1..=1);
        ctx.config(
            &[],
            "\n[plugin.a]\ncommand = [\"/bin/true\"]\nuser = \"root\"\n",
        );
        let out = ctx.sgevents(&["check"]).output().expect("check runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains("without CAP_SETUID and CAP_SETGID"),
            "{stderr}"
        );
    }
}

#[test]
fn migrate_passes_the_variables_a_legacy_plugin_reads() {
    let ctx = Ctx::new();
    let plugins = ctx.path("plugins");
    fs::create_dir_all(&plugins).expect("mkdir");
    fs::write(
        plugins.join("logArgs.py"),
        "import os\n\ndef registerCallbacks(reg):\n    reg.registerCallback('logArgs', os.environ[\"SGDAEMON_LOGARGS_KEY\"], run)\n    \
         os.getenv('SG_ED_API_KEY')\n\ndef run(sg, logger, event, args):\n    pass\n",
    )
    .expect("write");
    fs::write(
        plugins.join("quiet.py"),
        "def registerCallbacks(reg):\n    pass\n",
    )
    .expect("write");
    fs::write(
        ctx.path("shotgunEventDaemon.conf"),
        format!(
            "[daemon]\n\n[shotgun]\nserver: https://studio.shotgrid.autodesk.com\nname: event_daemon\nkey: %(SG_ED_API_KEY)s\n\n[plugins]\npaths: {}\n",
            plugins.display()
        ),
    )
    .expect("conf");
    let out = Command::new(env!("CARGO_BIN_EXE_sgevents"))
        .current_dir(ctx.path(""))
        .args(["migrate", "--conf", "shotgunEventDaemon.conf"])
        .env_remove("SGEVENTS_CONFIG")
        .output()
        .expect("migrate runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let toml = fs::read_to_string(ctx.path("sgevents.toml")).expect("toml");
    assert!(
        toml.contains("[plugin.logArgs]\ninherit_env = [\"SGDAEMON_LOGARGS_KEY\"]\n"),
        "{toml}"
    );
    assert!(
        toml.contains("# `SG_ED_API_KEY` holds a key named by a `*_env` setting"),
        "{toml}"
    );
    assert!(!toml.contains("[plugin.quiet]"), "{toml}");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("plugin `logArgs` gets SGDAEMON_LOGARGS_KEY from the daemon's environment"),
        "{report}"
    );
    // The daemon's loader takes it.
    let config = sgevents::config::load_without_secrets(&ctx.path("sgevents.toml"))
        .unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let spec = config
        .plugins
        .iter()
        .find(|p| p.name == "logArgs")
        .expect("the plugin");
    assert_eq!(spec.inherit_env, ["SGDAEMON_LOGARGS_KEY"]);
}

#[test]
fn a_relative_command_runs_from_the_configuration_s_folder_through_the_launcher() {
    let ctx = Ctx::new();
    let sub = ctx.path("conf");
    fs::create_dir_all(sub.join("bin")).expect("mkdir");
    fs::copy(test_plugin(), sub.join("bin/plugin")).expect("copy");
    fs::write(sub.join("events.jsonl"), event(1) + &event(2)).expect("events");
    fs::write(
        sub.join("sgevents.toml"),
        format!(
            "{HEADER}\n[plugin.rel]\ncommand = [\"./bin/plugin\"]\nconfig = {{ record = {} }}\n",
            quoted(&sub.join("rel.rec"))
        ),
    )
    .expect("config");
    // The daemon runs one folder up: the plugin's folder is `conf`, relative to it.
    let out = wait_output(
        Command::new(env!("CARGO_BIN_EXE_sgevents"))
            .current_dir(ctx.path(""))
            .args(["-c", "conf/sgevents.toml", "run"])
            .env_remove("SGEVENTS_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sgevents starts"),
    );
    assert_success(&out);
    let rec = fs::read_to_string(sub.join("rel.rec")).expect("delivered");
    assert_eq!(rec, "1 1\n2 1\n");
}

#[test]
fn a_command_its_user_cannot_run_fails_with_the_launcher_s_message() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: running plugins as other users needs root");
        return;
    }
    let user = TestUser::new(&format!("sgevt{}c", std::process::id()));
    let ctx = Ctx::new();
    fs::set_permissions(ctx.path(""), fs::Permissions::from_mode(0o755)).expect("chmod");
    // Root's alone: the daemon finds it, its user may not run it.
    let program = ctx.path("private-plugin");
    fs::copy(test_plugin(), &program).expect("copy");
    fs::set_permissions(&program, fs::Permissions::from_mode(0o700)).expect("chmod");
    ctx.events(1..=1);
    ctx.config(
        &[],
        &format!(
            "\n[plugin.p]\ncommand = [{}]\nuser = \"{}\"\n",
            quoted(&program),
            user.0
        ),
    );
    let out = ctx.sgevents(&["check"]).output().expect("check runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(
            "exited before answering `hello` (exit status: 127); last log line: cannot run `"
        ) && text.contains("Permission denied")
            && text.contains("by its `user`"),
        "{text}"
    );
}

#[test]
fn a_plugin_of_the_daemon_s_own_user_cannot_read_the_daemon_s_environment() {
    // Root reads every /proc file: the daemon runs as `nobody` here, its plugin too.
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: the test starts the daemon as `nobody`, which needs root");
        return;
    }
    let ctx = Ctx::new();
    fs::set_permissions(ctx.path(""), fs::Permissions::from_mode(0o777)).expect("chmod");
    ctx.events(1..=1);
    let a = keyed_plugin(
        "a",
        "A_KEY",
        "",
        &format!(
            "env_all = {}, environ_probe = {}",
            quoted(&ctx.path("a.env")),
            quoted(&ctx.path("a.probe"))
        ),
    );
    ctx.config(&[SITE], &a);
    let spawned = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_sgevents"))
        .args(["-c", "sgevents.toml", "run"])
        .current_dir(ctx.path(""))
        .env("A_KEY", A_KEY)
        .env("B_KEY", B_KEY)
        .env_remove("SGEVENTS_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(child) = spawned else {
        eprintln!("skipped: no setpriv on this machine");
        return;
    };
    let out = wait_output(child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("setpriv:") {
        eprintln!("skipped: setpriv cannot switch here: {stderr}");
        return;
    }
    assert_success(&out);
    let env = fs::read_to_string(ctx.path("a.env")).expect("env");
    assert!(
        env.contains("#uid=65534\n"),
        "the plugin runs as nobody too: {env}"
    );
    let probe = fs::read_to_string(ctx.path("a.probe")).expect("probe");
    assert!(probe.starts_with("parent\tERR\t"), "{probe}");
    assert!(!probe.contains(B_KEY), "{probe}");
}
