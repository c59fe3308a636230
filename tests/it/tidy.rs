//! House rules checked on the whole tree: every Rust file opens with a `//!` module doc, and no
//! code asks `tracing::enabled!` (see [`no_tracing_enabled_checks`]).

use std::fs;
use std::path::Path;

use crate::root;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).expect("readable folder") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if !matches!(name, "target" | ".git" | "build") && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_has_a_module_doc() {
    let mut files = Vec::new();
    rust_files(&root(), &mut files);
    assert!(files.len() > 30, "found only {} Rust files", files.len());
    let missing: Vec<String> = files
        .iter()
        .filter(|p| {
            !fs::read_to_string(p)
                .expect("readable")
                .trim_start()
                .starts_with("//!")
        })
        .map(|p| p.strip_prefix(root()).unwrap_or(p).display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` module doc: {missing:?}"
    );
}

/// `tracing::enabled!` with per-layer filters (the daemon's logger) can lose a log record: a check
/// that the filter refuses, racing the callsite's registration on another thread, leaves the
/// refusal in the thread's filter state, and the next record on that thread (once, a plugin's
/// "broke the protocol" warning) is dropped. Code asks the logger's own flags instead
/// (`logging::timing_records_taken`).
#[test]
fn no_tracing_enabled_checks() {
    let mut files = Vec::new();
    rust_files(&root(), &mut files);
    let this = Path::new(file!()).file_name();
    let found: Vec<String> = files
        .iter()
        .filter(|p| p.file_name() != this)
        .filter(|p| {
            let text = fs::read_to_string(p).expect("readable");
            text.contains("tracing::enabled!") || text.contains(" enabled!(")
        })
        .map(|p| p.strip_prefix(root()).unwrap_or(p).display().to_string())
        .collect();
    assert!(
        found.is_empty(),
        "`tracing::enabled!` in {found:?}\nhint: it can drop the next record on the thread; use a flag the logger sets"
    );
}
