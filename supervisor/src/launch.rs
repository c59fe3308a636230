//! How a plugin process starts: its built environment, and the launcher between the daemon and the
//! plugin's command.
//!
//! ```text
//!  daemon ──spawn /proc/self/exe __launch --parent-pid P [--user U --group G] -- CMD ARGS──▶
//!  launcher (same pid, own process group, clean environment, pipes already in place):
//!    switch group then user (when asked) → PR_SET_PDEATHSIG = SIGKILL → parent still P? → exec CMD
//! ```
//!
//! The launcher is the daemon's own binary run with a hidden subcommand ([`SUBCOMMAND`]), so the
//! steps between `fork` and `exec` need no `unsafe` `pre_exec`. `exec` keeps the pid and process
//! group, so the daemon's signals and its `PluginChild` see the plugin itself. The parent-death
//! signal is set after the uid/gid change (which clears it); a daemon that died before it was set
//! is noticed by `getppid`. Note that Linux sends it when the *thread* that spawned the child ends,
//! not the process: plugins are spawned from tokio's worker threads, which live as long as the
//! runtime (never from `spawn_blocking` or `block_in_place`, whose threads end when idle).
//!
//! The environment ([`plugin_env`]) is built, not inherited: a small base, the plugin's own
//! credentials as `SGEVENTS_*`, `[plugins] env` and `[plugin.NAME] env`, and what `inherit_env`
//! passes through; never a variable a `*_env` key names (see docs/SECURITY.md).

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::errno::Errno;
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Group, Pid, User};
use sgevents_protocol::{PROTOCOL_V1, glob_match};

use crate::config::PluginSpec;

/// The hidden subcommand of `sgevents` that starts a plugin.
pub const SUBCOMMAND: &str = "__launch";

/// The launcher could not switch user or group, or set the parent-death signal.
pub const EXIT_SETUP: u8 = 126;
/// The launcher could not run the plugin's command.
pub const EXIT_EXEC: u8 = 127;

/// The daemon's own environment variables a plugin gets when they are set (plus every `LC_*`).
pub const BASE_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "TZ",
    "TMPDIR",
    "PYTHONPATH",
    "PYTHONHOME",
];

/// Never passed through, even by `inherit_env = ["*"]`: the service manager's channel is the
/// daemon's alone, and the `SGEVENTS_` credentials are each plugin's own.
const NEVER_INHERITED: &[&str] = &[
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "SGEVENTS_SITE_URL",
    "SGEVENTS_SCRIPT_NAME",
    "SGEVENTS_SCRIPT_KEY",
];

/// The umask the daemon was started with (it runs under 077); plugins get it back. `u32::MAX`
/// while unset.
static PLUGIN_UMASK: AtomicU32 = AtomicU32::new(u32::MAX);

/// Sets the daemon's umask to 077, so that nothing it creates (state, lock, socket) is readable
/// by others, and remembers the previous one for plugins. Call once at start, before anything is
/// created.
pub fn restrict_umask() {
    let old = nix::sys::stat::umask(Mode::from_bits_truncate(0o077));
    PLUGIN_UMASK.store(old.bits(), Ordering::Relaxed);
}

/// Whether `name` matches one of `patterns` (names, or globs with `*`).
pub fn inherited(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| glob_match(p, name))
}

/// The environment of `spec`'s process, from the daemon's `daemon_env`: the base ([`BASE_ENV`],
/// `LC_*`), what `inherit_env` passes through, the run-as user's `HOME`/`USER`/`LOGNAME`, then
/// `env`, then `SGEVENTS_PROTOCOL`, `SGEVENTS_PLUGIN` and the plugin's own credentials. A variable
/// that a `*_env` key names never appears under its own name.
pub fn plugin_env(
    spec: &PluginSpec,
    daemon_env: impl IntoIterator<Item = (String, String)>,
    run_as: Option<&User>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for (k, v) in daemon_env {
        let base = BASE_ENV.contains(&k.as_str()) || k.starts_with("LC_");
        let passed = base || inherited(&spec.inherit_env, &k);
        if passed && !spec.withheld_env.contains(&k) && !NEVER_INHERITED.contains(&k.as_str()) {
            env.insert(k, v);
        }
    }
    if let Some(user) = run_as {
        env.insert("HOME".into(), user.dir.display().to_string());
        env.insert("USER".into(), user.name.clone());
        env.insert("LOGNAME".into(), user.name.clone());
    }
    for (k, v) in &spec.env {
        if !NEVER_INHERITED.contains(&k.as_str()) {
            env.insert(k.clone(), v.clone());
        }
    }
    env.insert("SGEVENTS_PROTOCOL".into(), PROTOCOL_V1.to_string());
    env.insert("SGEVENTS_PLUGIN".into(), spec.name.clone());
    if let Some(c) = &spec.credentials {
        env.insert("SGEVENTS_SITE_URL".into(), c.site_url.clone());
        env.insert("SGEVENTS_SCRIPT_NAME".into(), c.script_name.clone());
        env.insert(
            "SGEVENTS_SCRIPT_KEY".into(),
            c.script_key.expose().to_owned(),
        );
    }
    env
}

/// The daemon's environment, the variables that are text.
fn daemon_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// The command that starts `spec` through the launcher, with its environment and working folder,
/// its stdio not yet set. Fails like a spawn would when the program is missing or not executable.
pub(crate) fn command(spec: &PluginSpec) -> std::io::Result<tokio::process::Command> {
    let run_as = match &spec.user {
        None => None,
        Some(name) => Some(User::from_name(name).ok().flatten().ok_or_else(|| {
            std::io::Error::other(format!(
                "no user `{name}` on this machine\nhint: create it, or correct `plugin.{}.user`",
                spec.name
            ))
        })?),
    };
    let env = plugin_env(spec, daemon_env(), run_as.as_ref());
    let mut program = PathBuf::from(&spec.command[0]);
    if program.components().count() > 1 && program.is_relative() {
        // `./plugin` is relative to the plugin's folder (which may itself be relative to the
        // daemon's); with `user` the plugin runs in the user's home, so the launcher gets it whole.
        let joined = spec.cwd.join(&program);
        program = std::path::absolute(&joined).unwrap_or(joined);
    }
    find_program(&program, &spec.cwd, env.get("PATH").map(String::as_str))?;
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let mut cmd = tokio::process::Command::new(launcher_path(&exe));
    cmd.arg(SUBCOMMAND)
        .arg("--parent-pid")
        .arg(std::process::id().to_string());
    let umask = PLUGIN_UMASK.load(Ordering::Relaxed);
    if umask != u32::MAX {
        cmd.arg("--umask").arg(format!("{umask:o}"));
    }
    if let Some(user) = &spec.user {
        cmd.arg("--user").arg(user);
        if let Some(group) = &spec.group {
            cmd.arg("--group").arg(group);
        }
    }
    cmd.arg("--")
        .arg(&program)
        .args(&spec.command[1..])
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(&env);
    Ok(cmd)
}

/// `/proc/self/exe` works even when the binary was replaced on disk (an upgrade while running).
fn launcher_path(exe: &Path) -> PathBuf {
    let proc = Path::new("/proc/self/exe");
    if proc.exists() {
        proc.to_path_buf()
    } else {
        exe.to_path_buf()
    }
}

/// Finds `program` as `execvp` would (a path, or a name on `path`), or the error a spawn would
/// give: the launcher's own exec failure would otherwise only show as an exit.
fn find_program(program: &Path, cwd: &Path, path: Option<&str>) -> std::io::Result<()> {
    let executable =
        |p: &Path| std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.components().count() > 1 || program.is_absolute() {
        return match executable(&cwd.join(program)) {
            Ok(true) => Ok(()),
            Ok(false) => Err(std::io::Error::from_raw_os_error(Errno::EACCES as i32)),
            Err(e) => Err(e),
        };
    }
    let found = path
        .unwrap_or("/usr/local/bin:/usr/bin:/bin")
        .split(':')
        .map(|d| cwd.join(if d.is_empty() { "." } else { d }).join(program))
        .any(|p| executable(&p).unwrap_or(false));
    if found {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(Errno::ENOENT as i32))
    }
}

/// The launcher's arguments (after [`SUBCOMMAND`]).
#[derive(Debug, Default, PartialEq)]
struct Args {
    parent: Option<i32>,
    umask: Option<u32>,
    user: Option<String>,
    group: Option<String>,
    command: Vec<OsString>,
}

fn parse(args: &[OsString]) -> Result<Args, String> {
    let mut out = Args::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |what: &str| {
            it.next()
                .and_then(|v| v.to_str())
                .map(str::to_owned)
                .ok_or_else(|| format!("`{what}` needs a value"))
        };
        match arg.to_str() {
            Some("--parent-pid") => {
                out.parent = Some(value("--parent-pid")?.parse().map_err(|_| "bad pid")?);
            }
            Some("--umask") => {
                out.umask =
                    Some(u32::from_str_radix(&value("--umask")?, 8).map_err(|_| "bad umask")?);
            }
            Some("--user") => out.user = Some(value("--user")?),
            Some("--group") => out.group = Some(value("--group")?),
            Some("--") => {
                out.command = it.cloned().collect();
                break;
            }
            _ => return Err(format!("unknown argument `{}`", arg.to_string_lossy())),
        }
    }
    if out.command.is_empty() {
        return Err("no command after `--`".into());
    }
    Ok(out)
}

/// Runs the launcher (`sgevents __launch ...`, started by the daemon only): returns only on a
/// failure, with its exit status; on success the process becomes the plugin.
pub fn main(args: &[OsString]) -> ExitCode {
    let args = match parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "error: sgevents {SUBCOMMAND}: {e}\nhint: this subcommand is the daemon's plugin launcher; it is not for direct use"
            );
            return ExitCode::from(EXIT_SETUP);
        }
    };
    let program = args.command[0].clone();
    // stderr is the plugin's log: one JSON record keeps the message and its hint together.
    let fail = |status: u8, what: String| {
        let record =
            serde_json::json!({"level": "error", "message": what, "launcher_status": status});
        eprintln!("{record}");
        ExitCode::from(status)
    };
    if let Some(mask) = args.umask {
        nix::sys::stat::umask(Mode::from_bits_truncate(mask as nix::libc::mode_t));
    }
    let mut home = None;
    if let Some(name) = &args.user {
        match switch_user(name, args.group.as_deref()) {
            Ok(dir) => home = Some(dir),
            Err(e) => {
                return fail(
                    EXIT_SETUP,
                    format!(
                        "cannot run the plugin as user `{name}`: {e}\nhint: the daemon must run as root (or with CAP_SETUID and CAP_SETGID); see docs/SECURITY.md"
                    ),
                );
            }
        }
    }
    // After the uid/gid change, which clears it.
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        return fail(
            EXIT_SETUP,
            format!("cannot set the parent-death signal: {e}\nhint: report this as a bug"),
        );
    }
    if let Some(parent) = args.parent {
        if nix::unistd::getppid() != Pid::from_raw(parent) {
            // The daemon died before the signal was set: nobody reads this plugin.
            return ExitCode::from(1);
        }
    }
    if let Some(dir) = home {
        // The working folder follows the user: its home, or `/` when it has none.
        if std::env::set_current_dir(&dir).is_err() {
            let _ = std::env::set_current_dir("/");
        }
    }
    let err = std::process::Command::new(&program)
        .args(&args.command[1..])
        .exec();
    fail(
        EXIT_EXEC,
        format!(
            "cannot run `{}`: {err}\nhint: check the plugin's `command`: the program must exist and be executable{}",
            Path::new(&program).display(),
            if args.user.is_some() {
                " by its `user`"
            } else {
                ""
            }
        ),
    )
}

/// Switches to group then user `name` (its supplementary groups too); returns its home folder.
fn switch_user(name: &str, group: Option<&str>) -> Result<PathBuf, String> {
    let user = User::from_name(name)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no user `{name}`"))?;
    let gid: Gid = match group {
        None => user.gid,
        Some(g) => {
            Group::from_name(g)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no group `{g}`"))?
                .gid
        }
    };
    let cname = CString::new(OsStr::new(name).as_bytes()).map_err(|e| e.to_string())?;
    nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
    nix::unistd::initgroups(&cname, gid).map_err(|e| format!("initgroups: {e}"))?;
    nix::unistd::setgid(gid).map_err(|e| format!("setgid: {e}"))?;
    nix::unistd::setuid(user.uid).map_err(|e| format!("setuid: {e}"))?;
    Ok(user.dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_is_built() {
        let text = "[source]\nkind = \"jsonl\"\npath = \"e.jsonl\"\nsite_url = \"https://s.example\"\n\
                    [plugins]\ninherit_env = [\"STUDIO_*\", \"A_VAR\"]\nenv = { ALL = \"1\", MINE = \"all\" }\n\
                    [plugin.a]\ncommand = [\"x\"]\nenv = { MINE = \"a\" }\ninherit_env = [\"OCIO\"]\n\
                    [plugin.b]\ncommand = [\"x\"]\nscript_name = \"b\"\nscript_key_env = \"A_VAR\"\n";
        let config = crate::config::parse_with(Path::new("x.toml"), text, true).expect("valid");
        let a = &config.plugins[0];
        let daemon = [
            ("PATH", "/bin"),
            ("LC_ALL", "C"),
            ("STUDIO_ROOT", "/mnt"),
            ("A_VAR", "secret"),
            ("OCIO", "o.ocio"),
            ("OTHER", "no"),
            ("NOTIFY_SOCKET", "/run/n"),
            ("SGEVENTS_SCRIPT_KEY", "daemon's"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let env = plugin_env(a, daemon.clone(), None);
        let keys: Vec<&str> = env.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "ALL",
                "LC_ALL",
                "MINE",
                "OCIO",
                "PATH",
                "SGEVENTS_PLUGIN",
                "SGEVENTS_PROTOCOL",
                "STUDIO_ROOT"
            ]
        );
        assert_eq!(env["MINE"], "a");
        let mut all = a.clone();
        all.inherit_env = vec!["*".into()];
        let env = plugin_env(&all, daemon, None);
        assert!(env.contains_key("OTHER") && !env.contains_key("A_VAR"));
        assert!(!env.contains_key("NOTIFY_SOCKET") && !env.contains_key("SGEVENTS_SCRIPT_KEY"));
    }

    #[test]
    fn arguments() {
        let a = |v: &[&str]| parse(&v.iter().map(OsString::from).collect::<Vec<_>>());
        assert_eq!(
            a(&["--parent-pid", "7", "--user", "u", "--", "x", "--user"]).expect("valid"),
            Args {
                parent: Some(7),
                user: Some("u".into()),
                command: vec!["x".into(), "--user".into()],
                ..Args::default()
            }
        );
        assert!(a(&["--parent-pid", "7"]).is_err());
        assert!(a(&["--bogus", "--", "x"]).is_err());
    }
}
