//! Runs the Python SDK's own test suite (stdlib `unittest`), so that `cargo test` is the one command
//! that runs every test of the project. The real `shotgun_api3` is installed for it (into
//! `target/pydeps/`, kept out of `PYTHONPATH`): the legacy host's event is checked against it.

use std::process::Command;

use sgevents_tests::fake_site::python_with_shotgun_api3;

use crate::root;

#[test]
fn the_python_sdk_test_suite_passes() {
    let out = Command::new("python3")
        .args([
            "-m",
            "unittest",
            "discover",
            "-s",
            "sdk-python/tests",
            "-t",
            "sdk-python",
        ])
        .current_dir(root())
        .env("PYTHONPATH", root().join("sdk-python/src"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("SGEVENTS_SHOTGUN_API3_DIR", python_with_shotgun_api3())
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Python SDK's tests failed:\n{stderr}"
    );
    // unittest reports "Ran N tests" on stderr; a suite that found nothing is a failure too.
    let ran = stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("Ran ")
                .and_then(|r| r.split(' ').next()?.parse::<u32>().ok())
        })
        .unwrap_or(0);
    assert!(
        ran >= 20,
        "expected the Python suite to run at least 20 tests, it ran {ran}:\n{stderr}"
    );
}
