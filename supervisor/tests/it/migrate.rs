//! `sgevents migrate`: the real binary on a shotgunEvents configuration and id files made by
//! Python's own pickle; the TOML it writes is loaded by the daemon's loader, and the rows it writes
//! are read back from SQLite. Malicious id files are refused with nothing written.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use rusqlite::Connection;
use sgevents::config::{SmtpTls, SourceConfig};

use crate::Ctx;

/// A studio's shotgunEventDaemon.conf: every key shotgunEvents reads, and some it does not.
const CONF: &str = "\
# The studio's event daemon.
[daemon]
pidFile: /var/run/shotgunEventDaemon.pid
eventIdFile: @ID_FILE@
logMode: 1
logPath: @LOGS@
logFile: shotgunEventDaemon
logging: 10
timing_log: on
conn_retry_sleep = 60
max_conn_retries = 5
fetch_interval = 2
max_event_batch_size = 300
trace_sql = yes

[shotgun]
server: %(SG_ED_SITE_URL)s
name: event_daemon
key: %(SG_ED_API_KEY)s
proxy_server: proxy.studio.lan:3128
# Shotgun server v2.3+ required.
use_session_uuid: True

[plugins]
paths: @PLUGINS@,
    @PLUGINS@/../more_plugins

[emails]
enabled: True
server: smtp.studio.lan
port: 587
useTLS: True
username: %(SG_ED_EMAIL_USERNAME)s
password: %(SG_ED_EMAIL_PASSWORD)s
from: shotgun-daemon@studio.example
to: pipeline@studio.example, td@studio.example
subject: [SG events]

[sentry]
sentry_dsn: https://public@sentry.studio.lan/3
";

const SITE: &str = "https://studio.shotgrid.autodesk.com";

/// A test folder with the old configuration and its plugin folders.
struct Studio {
    ctx: Ctx,
    plugins: PathBuf,
}

impl Studio {
    fn new() -> Studio {
        let ctx = Ctx::new();
        let plugins = ctx.path("plugins");
        let more = ctx.path("more_plugins");
        fs::create_dir_all(&plugins).expect("mkdir");
        fs::create_dir_all(&more).expect("mkdir");
        for file in ["logArgs.py", "task_status.py", ".hidden.py", "README.txt"] {
            fs::write(
                plugins.join(file),
                "def registerCallbacks(reg):\n    pass\n",
            )
            .expect("write");
        }
        fs::write(
            more.join("newOne.py"),
            "def registerCallbacks(reg):\n    pass\n",
        )
        .expect("write");
        let conf = CONF
            .replace("@ID_FILE@", &ctx.path("sged.id").display().to_string())
            .replace("@LOGS@", &ctx.path("logs").display().to_string())
            .replace("@PLUGINS@", &plugins.display().to_string());
        fs::write(ctx.path("shotgunEventDaemon.conf"), conf).expect("write conf");
        Studio { ctx, plugins }
    }

    /// Writes the id file with Python's pickle, as shotgunEvents does.
    fn pickle(&self, expr: &str) {
        let script = format!(
            "import pickle, sys, datetime\nexp = datetime.datetime.now() + datetime.timedelta(minutes=5)\n\
             PLUGINS = {:?}\nstate = {expr}\n\
             open({:?}, 'wb').write(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))",
            self.plugins.display().to_string(),
            self.ctx.path("sged.id").display().to_string()
        );
        python(&script);
    }

    fn migrate(&self, extra: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sgevents"));
        cmd.current_dir(self.ctx.dir.path())
            .args(["migrate", "--conf", "shotgunEventDaemon.conf"])
            .args(extra)
            .env("SG_ED_SITE_URL", format!("{SITE}/"))
            .env_remove("SG_ED_API_KEY")
            .env_remove("SGEVENTS_CONFIG");
        crate::wait_output(cmd.spawn_piped())
    }

    fn db(&self) -> Connection {
        self.ctx.db()
    }
}

trait SpawnPiped {
    fn spawn_piped(&mut self) -> std::process::Child;
}

impl SpawnPiped for Command {
    fn spawn_piped(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("sgevents starts")
    }
}

fn python(script: &str) {
    let out = Command::new("python3")
        .args(["-c", script])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python3 failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "sgevents migrate failed ({}):\n{}",
        out.status,
        stderr(out)
    );
}

fn rows<T: rusqlite::types::FromSql>(db: &Connection, sql: &str) -> Vec<Vec<T>> {
    let mut stmt = db.prepare(sql).expect("query");
    let n = stmt.column_count();
    stmt.query_map([], |r| (0..n).map(|i| r.get(i)).collect())
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[test]
fn the_configuration_and_the_pickled_state_are_migrated() {
    let studio = Studio::new();
    studio.pickle(
        "{PLUGINS: {'logArgs': (1000, {996: exp, 997: exp}), 'task_status': (990, {985: exp, 987: exp}), \
          'removed': (500, {})}, '/old/plugins': {'logArgs': (900, {})}}",
    );
    let out = studio.migrate(&["--id-file", "sged.id"]);
    assert_ok(&out);
    let report = stdout(&out);
    let ctx = &studio.ctx;

    // The report: what was written, where each plugin resumes, what to do, what has no equivalent.
    for line in [
        &format!(
            "wrote {} from shotgunEventDaemon.conf",
            ctx.path("sgevents.toml").display()
        ),
        &format!(
            "state: {} from {}",
            ctx.path("var/state.db").display(),
            ctx.path("sged.id").display()
        ),
        "  logArgs resumes after event 1000 (2 backlog ids)\n",
        "  task_status resumes after event 990 (2 backlog ids)\n",
        "  newOne resumes after event 1000 (0 backlog ids): it had no saved position",
        "  the source starts after event 990 and asks again for 2 ids shotgunEvents was still waiting for",
        "  not used: `logArgs` in `/old/plugins` (last event 900)",
        "  not used: `removed` in ",
        "to do before starting sgevents:\n  - export $SG_ED_API_KEY (the script's key), $SG_ED_EMAIL_USERNAME (the SMTP user name), $SG_ED_EMAIL_PASSWORD (the SMTP password) in the daemon's environment",
        "not carried over (no equivalent in sgevents):",
        "[daemon] pidFile = /var/run/shotgunEventDaemon.pid: sgevents writes no pid file",
        "[daemon] max_conn_retries = 5: the ShotGrid source retries",
        "[daemon] conn_retry_sleep = 60",
        "[daemon] logFile = shotgunEventDaemon: sgevents names its files itself",
        "[daemon] trace_sql: not a shotgunEvents setting",
        "[sentry] (sentry_dsn): not read by shotgunEvents itself",
        "next: sgevents -c ",
    ] {
        assert!(
            report.contains(line),
            "no `{line}` in the report:\n{report}"
        );
    }
    assert!(
        !report.contains("sentry.studio.lan"),
        "unknown values are not shown:\n{report}"
    );

    // The TOML: commented, every mapped key, secrets as variable names only.
    let toml_path = ctx.path("sgevents.toml");
    let text = fs::read_to_string(&toml_path).expect("the configuration was written");
    for line in [
        "state_dir = \"var\"",
        "log_level = \"debug\"",
        &format!("log_dir = \"{}\"", ctx.path("logs").display()),
        "log_per_plugin = true",
        "timing_log = true",
        "kind = \"shotgrid\"",
        &format!("url = \"{SITE}\""),
        "script_name = \"event_daemon\"",
        "script_key_env = \"SG_ED_API_KEY\"",
        "fetch_interval = \"2s\"",
        "batch_size = 300",
        "proxy = \"http://proxy.studio.lan:3128\"",
        &format!(
            "legacy_paths = [\"{}\", \"{}/../more_plugins\"]",
            studio.plugins.display(),
            studio.plugins.display()
        ),
        "use_session_uuid = true",
        "smtp_host = \"smtp.studio.lan\"",
        "smtp_port = 587",
        "tls = \"starttls\"",
        "username_env = \"SG_ED_EMAIL_USERNAME\"",
        "password_env = \"SG_ED_EMAIL_PASSWORD\"",
        "from = \"shotgun-daemon@studio.example\"",
        "to = [\"pipeline@studio.example\", \"td@studio.example\"]",
        "subject_prefix = \"[SG events]\"",
        "# not carried over: [daemon] eventIdFile",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(line)),
            "no line starting with `{line}` in:\n{text}"
        );
    }

    // The daemon's own loader accepts it (secrets are not read: they live in the daemon's
    // environment), and finds the legacy plugins.
    let config = sgevents::config::load_without_secrets(&toml_path)
        .unwrap_or_else(|e| panic!("the daemon refuses the migrated configuration: {e}\n{text}"));
    assert_eq!(config.daemon.state_dir, ctx.path("var"));
    assert_eq!(config.daemon.log_level, "debug");
    assert_eq!(
        config.daemon.logs.dir.as_deref(),
        Some(ctx.path("logs").as_path())
    );
    assert!(config.daemon.logs.per_plugin && config.daemon.logs.timing);
    let SourceConfig::Shotgrid(source) = &config.source else {
        panic!("a ShotGrid source")
    };
    assert_eq!(source.url, SITE);
    assert_eq!(source.script_name, "event_daemon");
    assert_eq!(source.fetch_interval, Duration::from_secs(2));
    assert_eq!(source.batch_size, 300);
    assert_eq!(source.gap_timeout, Duration::from_secs(300));
    let names: Vec<&str> = config.plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["logArgs", "task_status", "newOne"]);
    let alerts = config.alerts.as_ref().expect("[alerts]");
    assert_eq!(
        (alerts.smtp_host.as_str(), alerts.smtp_port, alerts.tls),
        ("smtp.studio.lan", 587, SmtpTls::StartTls)
    );
    assert_eq!(alerts.to, ["pipeline@studio.example", "td@studio.example"]);

    // The state database: where each plugin resumes, the source's position and the ids it asks
    // for again.
    let db = studio.db();
    let resume: Vec<Vec<rusqlite::types::Value>> = rows(
        &db,
        "SELECT plugin, last_event_id, backlog FROM plugin_resume ORDER BY plugin",
    );
    use rusqlite::types::Value::{Integer as I, Text as T};
    assert_eq!(
        resume,
        [
            vec![T("logArgs".into()), I(1000), T("[996,997]".into())],
            vec![T("newOne".into()), I(1000), T("[]".into())],
            vec![T("task_status".into()), I(990), T("[985,987]".into())],
        ]
    );
    let plugins: Vec<Vec<rusqlite::types::Value>> = rows(
        &db,
        "SELECT name, state, cursor, last_event_id FROM plugins ORDER BY name",
    );
    assert_eq!(
        plugins,
        [
            vec![T("logArgs".into()), T("stopped".into()), I(0), I(1000)],
            vec![T("newOne".into()), T("stopped".into()), I(0), I(1000)],
            vec![T("task_status".into()), T("stopped".into()), I(0), I(990)],
        ]
    );
    let source: Vec<Vec<rusqlite::types::Value>> = rows(
        &db,
        "SELECT kind, location, position, last_event_id FROM source_state",
    );
    assert_eq!(
        source,
        [vec![T("shotgrid".into()), T(SITE.into()), I(990), I(990)]]
    );
    let gaps: Vec<Vec<i64>> = rows(
        &db,
        "SELECT first_id, last_id FROM source_gaps ORDER BY first_id",
    );
    assert_eq!(
        gaps,
        [vec![985, 985], vec![987, 987]],
        "996 and 997 are above 990: polled anyway"
    );
    assert_eq!(
        rows::<i64>(&db, "SELECT count(*) FROM events"),
        [vec![0]],
        "nothing is journaled"
    );
    drop(db);

    // `status` reads the migrated configuration and database as the daemon left them.
    let status = Command::new(env!("CARGO_BIN_EXE_sgevents"))
        .current_dir(ctx.dir.path())
        .args(["-c", "sgevents.toml", "status"])
        .output()
        .expect("status runs");
    assert!(status.status.success(), "{}", stderr(&status));
    let shown = stdout(&status);
    for name in ["logArgs", "task_status", "newOne"] {
        assert!(shown.contains(name), "{shown}");
    }

    // Running it again is refused: the configuration exists, and the database is in use.
    let out = studio.migrate(&["--id-file", "sged.id"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            "sgevents.toml` already exists\nhint: choose another `--out`, or pass `--force`"
        ),
        "{}",
        stderr(&out)
    );
    let out = studio.migrate(&["--id-file", "sged.id", "--out", "other.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("is already in use: it holds 0 journaled events and 3 plugin rows"),
        "{err}"
    );
    assert!(err.contains("\nhint: "), "{err}");
    assert!(
        !ctx.path("other.toml").exists(),
        "a refused migration writes no configuration"
    );
    assert!(
        fs::read_dir(ctx.dir.path()).expect("list").all(|e| !e
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .contains(".migrate-")),
        "no temporary file is left behind"
    );

    // A daemon using the state directory: refused, even with --force.
    let lock = sgevents::lock::StateLock::acquire(&ctx.path("var")).expect("lock");
    let out = studio.migrate(&["--id-file", "sged.id", "--force"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("another sgevents"), "{err}");
    assert!(err.contains("hint: stop the daemon first"), "{err}");
    drop(lock);

    // With --force it is redone: the rows are replaced, not duplicated.
    let out = studio.migrate(&["--id-file", "sged.id", "--force"]);
    assert_ok(&out);
    let db = studio.db();
    assert_eq!(rows::<i64>(&db, "SELECT count(*) FROM plugins"), [vec![3]]);
    assert_eq!(
        rows::<i64>(&db, "SELECT count(*) FROM plugin_resume"),
        [vec![3]]
    );
}

#[test]
fn the_legacy_one_number_id_file_applies_to_every_plugin() {
    let studio = Studio::new();
    fs::write(studio.ctx.path("sged.id"), "4242\n").expect("write");
    let out = studio.migrate(&[
        "--id-file",
        "sged.id",
        "--out",
        "conf/sgevents.toml",
        "--state-dir",
        "state",
    ]);
    assert!(
        !out.status.success() && stderr(&out).contains("cannot write"),
        "the --out folder must exist: {}",
        stderr(&out)
    );
    assert!(!studio.ctx.path("state").exists(), "nothing written");
    fs::create_dir(studio.ctx.path("conf")).expect("mkdir");
    let out = studio.migrate(&[
        "--id-file",
        "sged.id",
        "--out",
        "conf/sgevents.toml",
        "--state-dir",
        "state",
    ]);
    assert_ok(&out);
    let report = stdout(&out);
    assert!(report.contains("(the legacy one-number layout"), "{report}");
    for name in ["logArgs", "newOne", "task_status"] {
        assert!(
            report.contains(&format!(
                "  {name} resumes after event 4242 (0 backlog ids)\n"
            )),
            "{report}"
        );
    }
    assert!(
        report.contains("the source starts after event 4242 and asks again for 0 ids"),
        "{report}"
    );
    // --state-dir is written as an absolute path, since the TOML lives elsewhere.
    let text = fs::read_to_string(studio.ctx.path("conf/sgevents.toml")).expect("written");
    let state = studio.ctx.path("state");
    assert!(
        text.contains(&format!("state_dir = \"{}\"", state.display())),
        "{text}"
    );
    let db = Connection::open(state.join("state.db")).expect("the database is there");
    assert_eq!(
        rows::<i64>(
            &db,
            "SELECT last_event_id FROM plugin_resume ORDER BY plugin"
        ),
        [vec![4242], vec![4242], vec![4242]]
    );
    assert_eq!(
        rows::<i64>(&db, "SELECT position FROM source_state"),
        [vec![4242]]
    );
    assert_eq!(
        rows::<i64>(&db, "SELECT count(*) FROM source_gaps"),
        [vec![0]]
    );
}

#[test]
fn without_an_id_file_only_the_configuration_is_written() {
    let studio = Studio::new();
    // Written on Windows in Latin-1, with a byte order mark: still read.
    let conf = studio.ctx.path("shotgunEventDaemon.conf");
    let text = fs::read(&conf).expect("read");
    fs::write(
        &conf,
        [&b"\xef\xbb\xbf# R\xe9glages du studio\n"[..], &text].concat(),
    )
    .expect("write");
    let out = studio.migrate(&[]);
    assert_ok(&out);
    let report = stdout(&out);
    assert!(
        report.contains(&format!(
            "no state was migrated: to resume where shotgunEvents stopped (rather than at the newest event), stop it and run `sgevents migrate` again with `--id-file {}`",
            studio.ctx.path("sged.id").display()
        )),
        "{report}"
    );
    assert!(!report.contains("\nstate: "), "{report}");
    assert!(studio.ctx.path("sgevents.toml").exists());
    assert!(
        !studio.ctx.path("var").exists(),
        "no state directory without --id-file"
    );
}

#[test]
fn a_pickle_that_would_run_code_is_refused_and_nothing_is_written() {
    let studio = Studio::new();
    let marker = studio.ctx.path("pwned");
    let id_file = studio.ctx.path("sged.id");
    let evil = |script: &str| {
        python(&format!(
            "import pickle, sys, os, datetime\nclass Evil:\n    def __reduce__(self):\n        return (os.system, ('touch {}',))\n\
             class Plain:\n    pass\n\
             open({:?}, 'wb').write({script})",
            marker.display(),
            id_file.display().to_string()
        ))
    };
    let cases: Vec<(&str, &str)> = vec![
        (
            "pickle.dumps({'/p': {'logArgs': (1, {2: Evil()})}}, protocol=4)",
            "a pickle file can run code; this one asks for `posix.system` (STACK_GLOBAL",
        ),
        (
            "pickle.dumps(Evil(), protocol=0)",
            "a pickle file can run code; this one asks for `posix.system` (GLOBAL",
        ),
        (
            "pickle.dumps({'/p': {'logArgs': (1, {2: Plain()})}}, protocol=2)",
            "a pickle file can run code; this one asks for `__main__.Plain` (GLOBAL",
        ),
        (
            "b'\\x80\\x02}q\\x00}b.'",
            "a pickle file can run code; this one asks for BUILD",
        ),
        (
            "b'(i__main__\\nEvil\\n.'",
            "a pickle file can run code; this one asks for INST",
        ),
        (
            "b'\\x80\\x02\\x82\\x01.'",
            "a pickle file can run code; this one asks for an EXT opcode",
        ),
        (
            "b'\\x80\\x04\\xfe.'",
            "not a readable id file: unknown opcode 0xfe",
        ),
        (
            "pickle.dumps({'/p': {'logArgs': (1, {})}}, protocol=4)[:-6]",
            "not a readable id file: ",
        ),
        (
            "pickle.dumps((lambda f: f(f, 100))(lambda f, n: (f(f, n - 1),) if n else ()), protocol=4)",
            "values nested deeper than 32 levels; refusing",
        ),
        ("b''", "is empty"),
    ];
    for (script, want) in cases {
        evil(script);
        let out = studio.migrate(&["--id-file", "sged.id"]);
        assert_eq!(out.status.code(), Some(1), "{script}");
        let err = stderr(&out);
        assert!(err.contains(want), "{script}: expected `{want}` in:\n{err}");
        assert!(err.contains("\nhint: "), "{err}");
        assert!(err.contains("othing was written"), "{err}");
        assert!(
            !studio.ctx.path("sgevents.toml").exists(),
            "{script}: no configuration written"
        );
        assert!(
            !studio.ctx.path("var").exists(),
            "{script}: no state directory"
        );
        assert!(!marker.exists(), "{script}: the payload never ran");
    }
    // A file that is neither layout.
    fs::write(&id_file, b"not a pickle at all\n").expect("write");
    let out = studio.migrate(&["--id-file", "sged.id"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not a readable id file"),
        "{}",
        stderr(&out)
    );
    assert!(!Path::new(&studio.ctx.path("sgevents.toml")).exists());
}
