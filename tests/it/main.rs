//! Integration tests of sgevents: real plugin processes over real pipes.
//!
//! One test binary (`it`) with a module per area, as in ripgrep and uv. Shared helpers live here.

mod api3;
mod conformance;
mod examples;
mod fake_site;
mod python_sdk;
mod tidy;

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sgevents_protocol::transcript::Transcript;
use sgevents_tests::fake_site::{FakeSite, SiteOptions};

/// The longest any single step may wait for a plugin before the test fails. A guard against hangs,
/// not a measurement: healthy steps take milliseconds.
const PATIENCE: Duration = Duration::from_secs(30);

/// The workspace's root folder.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The fake site, in this process.
fn site() -> FakeSite {
    site_with(SiteOptions::default())
}

/// The fake site set up with `options`, in this process.
fn site_with(options: SiteOptions) -> FakeSite {
    FakeSite::start(options).expect("the fake site starts")
}

/// The fake site as a program (`sgevents-fake-site`), killed however the test ends.
struct SiteProgram {
    child: Child,
    /// The first line it printed: where it listens, and how to sign in.
    first: String,
    /// The URL it serves.
    url: String,
}

impl SiteProgram {
    /// Starts `sgevents-fake-site` with `args` and reads its first line.
    fn start<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> SiteProgram {
        let child = Command::new(env!("CARGO_BIN_EXE_sgevents-fake-site"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the fake site program starts");
        // Killed on drop, also when reading its first line fails.
        let mut program = SiteProgram {
            child,
            first: String::new(),
            url: String::new(),
        };
        BufReader::new(program.child.stdout.take().expect("stdout"))
            .read_line(&mut program.first)
            .expect("a first line");
        program.url = program
            .first
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {:?}", program.first))
            .to_owned();
        program
    }
}

impl Drop for SiteProgram {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `python3` with the Python SDK importable, as a plugin is started in development.
fn python(script: &Path) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .env("PYTHONPATH", root().join("sdk-python/src"))
        .env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}

/// Every transcript in a folder, parsed, in file name order.
fn transcripts(dir: &Path) -> Vec<Transcript> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let text = fs::read_to_string(path).expect("readable transcript");
            let name = path
                .strip_prefix(root())
                .unwrap_or(path)
                .display()
                .to_string();
            Transcript::parse(&name, &text).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect()
}

/// Runs every transcript against a fresh process from `command`, and fails with every mismatch.
fn run_all(transcripts: &[Transcript], mut command: impl FnMut() -> Command) {
    let failures: Vec<String> = transcripts
        .iter()
        .filter_map(|t| t.run(&mut command(), PATIENCE).err().map(|e| e.to_string()))
        .collect();
    assert!(
        failures.is_empty(),
        "{} transcript(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
