//! Python packages for the tests that run real Python clients: `shotgun_api3` against the fake
//! site, `prometheus_client` for the test that parses `GET /metrics` with Prometheus's own Python
//! parser, and any other a crate's tests ask for with [`python_with`] (the NATS bridge's
//! `nats-py`): installed from the package index on first use into `target/pydeps/`, kept out of
//! every Python environment, and found there by putting the folder on `PYTHONPATH`.
//!
//! The install runs `python3 -m pip install --target <tmp> <package>==<version>` into a folder of
//! its own and renames it into place, so a folder that exists is complete: a killed install leaves
//! only a temporary folder, never a half-installed one. Within a process, one caller installs and
//! the others wait for it; two processes racing each download once and the second rename loses
//! harmlessly. `--target` also keeps Debian's pip from refusing with "externally-managed-environment".

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};

/// The release of `shotgun_api3` the tests run against: the one `shared/reference/shotgrid-wire.md`
/// was captured from. A new one gets a folder of its own.
pub const SHOTGUN_API3_VERSION: &str = "3.10.3";

/// A folder to put on `PYTHONPATH` so that `python3` can `import shotgun_api3`, installing it from
/// the package index on first use (it needs `python3 -m pip` and the network once).
///
/// # Panics
///
/// If the install fails; the message says why and which command to run by hand.
pub fn python_with_shotgun_api3() -> PathBuf {
    python_with("shotgun_api3", SHOTGUN_API3_VERSION, "shotgun_api3")
}

/// The release of `prometheus_client` whose parsers check the daemon's `/metrics`.
pub const PROMETHEUS_CLIENT_VERSION: &str = "0.26.0";

/// A folder to put on `PYTHONPATH` so that `python3` can `import prometheus_client` (its
/// `parser` and `openmetrics.parser`), installing it on first use like [`python_with_shotgun_api3`].
///
/// # Panics
///
/// If the install fails; the message says why and which command to run by hand.
pub fn python_with_prometheus_client() -> PathBuf {
    python_with(
        "prometheus-client",
        PROMETHEUS_CLIENT_VERSION,
        "prometheus_client",
    )
}

/// A folder to put on `PYTHONPATH` so that `python3` can `import module`, which the package
/// `package==version` provides, installing it into `target/pydeps/<module>-<version>/` on first
/// use (it needs `python3 -m pip` and the network once). A failed install is not tried again by
/// the same process.
///
/// # Panics
///
/// If the install fails; the message says why and which command to run by hand.
pub fn python_with(package: &str, version: &str, module: &str) -> PathBuf {
    static INSTALLED: Mutex<Option<HashMap<String, Result<PathBuf, String>>>> = Mutex::new(None);
    // Held while installing: the other callers wait for the one that installs.
    let mut installed = INSTALLED.lock().unwrap_or_else(PoisonError::into_inner);
    let result = installed
        .get_or_insert_with(HashMap::new)
        .entry(format!("{package}=={version}"))
        .or_insert_with(|| install(package, version, module))
        .clone();
    drop(installed);
    result.unwrap_or_else(|message| panic!("{message}"))
}

/// The cargo target folder: `CARGO_TARGET_DIR`, else the workspace's `target/`.
fn target_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new(env!("CARGO_MANIFEST_DIR")))
        .to_path_buf();
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    }
}

/// Installs `package==version`, which provides the Python module `module`, into a folder of
/// `target/pydeps/` of its own; returns that folder.
fn install(package: &str, version: &str, module: &str) -> Result<PathBuf, String> {
    let pydeps = target_dir().join("pydeps");
    let dir = pydeps.join(format!("{module}-{version}"));
    let installed = |dir: &Path| dir.join(module).join("__init__.py").is_file();
    if installed(&dir) {
        return Ok(dir);
    }
    let by_hand = format!(
        "python3 -m pip install --target {} {package}=={version}",
        dir.display()
    );
    let pip = Command::new("python3")
        .args(["-m", "pip", "--version"])
        .output();
    if !pip.is_ok_and(|out| out.status.success()) {
        return Err(format!(
            "cannot install {package} for the tests: `python3 -m pip` is not available\n\
             hint: install pip (on Debian: `apt-get install python3-pip`), or run `{by_hand}`"
        ));
    }
    std::fs::create_dir_all(&pydeps)
        .map_err(|e| format!("cannot create `{}`: {e}", pydeps.display()))?;
    let staging = pydeps.join(format!(".{module}-{version}.{}", std::process::id()));
    // Left over from an install this process id made before, killed halfway.
    let _ = std::fs::remove_dir_all(&staging);
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            "--no-deps",
            "--retries",
            "2",
            "--timeout",
            "30",
            "--target",
        ])
        .arg(&staging)
        .arg(format!("{package}=={version}"))
        // A private folder needs no virtualenv, and `--user` cannot be combined with `--target`:
        // settings that developers often keep in their environment.
        .env("PIP_REQUIRE_VIRTUALENV", "0")
        .env("PIP_USER", "0")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .map_err(|e| format!("cannot run `python3 -m pip`: {e}\nhint: run `{by_hand}`"))?;
    if !out.status.success() || !installed(&staging) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(format!(
            "cannot install {package}=={version} into `{}`: pip failed ({}):\n{}\
             hint: the tests need the package index once; check the network (or pip's proxy \
             settings) and run `{by_hand}`",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if let Err(e) = std::fs::rename(&staging, &dir) {
        let _ = std::fs::remove_dir_all(&staging);
        // Another process installed it first.
        if !installed(&dir) {
            return Err(format!(
                "cannot move {package} into `{}`: {e}\nhint: delete `{}` and run the tests again",
                dir.display(),
                pydeps.display()
            ));
        }
    }
    Ok(dir)
}
