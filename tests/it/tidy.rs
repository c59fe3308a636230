//! House rules checked on the whole tree: every Rust file opens with a `//!` module doc, no
//! code asks `tracing::enabled!` (see [`no_tracing_enabled_checks`]), no import cycles, and only
//! `supervisor/src/store/` knows the schema (see [`only_the_store_knows_the_schema`]).

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

/// The modules of one crate (`src/a.rs` and `src/a/mod.rs` are `a`; `src/a/b.rs` is `a::b`; the
/// crate root is left out: it declares the modules and re-exports their items) and the modules
/// each one names through `crate::` and `super::` paths outside comments and outside its inline
/// test module, each with the line that names it.
fn rust_imports(src: &Path) -> Vec<(String, String, String)> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let module_of = |path: &Path| -> Option<String> {
        let rel = path.strip_prefix(src).ok()?.with_extension("");
        let mut parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        if parts.is_empty() || parts == ["lib"] || parts == ["main"] || parts[0] == "bin" {
            return None;
        }
        Some(parts.join("::"))
    };
    let modules: Vec<String> = files.iter().filter_map(|p| module_of(p)).collect();
    let mut edges = Vec::new();
    for path in &files {
        let Some(from) = module_of(path) else {
            continue;
        };
        let text = fs::read_to_string(path).expect("readable");
        // `super::` names the parent's modules. The file's inline test module comes last and is
        // left out: a test may use whatever it checks against.
        let parent = from.rsplit_once("::").map(|(p, _)| format!("{p}::"));
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let test_module = line.trim() == "#[cfg(test)]"
                && lines
                    .get(i + 1)
                    .is_some_and(|next| next.trim_start().starts_with("mod "));
            if test_module {
                break;
            }
            let code = line.split("//").next().unwrap_or("");
            let code = code.replace("crate::", "\u{1}");
            let code = code.replace("super::*", "").replace(
                "super::",
                &format!("\u{1}{}", parent.as_deref().unwrap_or_default()),
            );
            let mut rest = code.as_str();
            while let Some(at) = rest.find('\u{1}') {
                rest = &rest[at + 1..];
                let path: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                // The longest module that the path starts with.
                let target = modules
                    .iter()
                    .filter(|m| path == **m || path.starts_with(&format!("{m}::")))
                    .max_by_key(|m| m.len());
                // `use crate::a::{b, c}` names `a::b` and `a::c` when they are modules.
                let mut targets: Vec<String> = target.into_iter().cloned().collect();
                if path.ends_with("::") && rest[path.len()..].starts_with('{') {
                    let inside = &rest[path.len() + 1..];
                    let inside = &inside[..inside.find('}').unwrap_or(inside.len())];
                    for item in inside.split(',') {
                        let item = item.trim().trim_start_matches("self");
                        let full = format!("{path}{item}");
                        if modules.contains(&full) {
                            targets.push(full);
                        }
                    }
                }
                for to in targets {
                    let related = from == to
                        || from.starts_with(&format!("{to}::"))
                        || to.starts_with(&format!("{from}::"));
                    if !related {
                        edges.push((from.clone(), to, line.trim().to_owned()));
                    }
                }
            }
        }
    }
    edges
}

/// The modules of a Python package and the ones each imports relatively (`from .a import x`,
/// `from . import a`), with the line.
fn python_imports(package: &Path) -> Vec<(String, String, String)> {
    let mut edges = Vec::new();
    for entry in fs::read_dir(package).expect("readable package") {
        let path = entry.expect("entry").path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".py"))
        else {
            continue;
        };
        if name == "__init__" {
            continue;
        }
        let text = fs::read_to_string(&path).expect("readable");
        for line in text.lines() {
            let code = line.split('#').next().unwrap_or("").trim();
            let Some(rest) = code.strip_prefix("from .") else {
                continue;
            };
            let targets: Vec<String> = if let Some(names) = rest.strip_prefix(" import ") {
                names
                    .split(',')
                    .map(|n| n.split_whitespace().next().unwrap_or("").to_owned())
                    .collect()
            } else {
                vec![rest.split([' ', '.']).next().unwrap_or("").to_owned()]
            };
            for to in targets.into_iter().filter(|t| !t.is_empty() && t != name) {
                edges.push((name.to_owned(), to, code.to_owned()));
            }
        }
    }
    edges
}

/// The cycles among `edges`: each strongly connected set of two or more modules, with the lines
/// that tie it.
fn cycles(edges: &[(String, String, String)]) -> Vec<String> {
    use std::collections::{BTreeMap, BTreeSet};
    let mut next: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (from, to, _) in edges {
        next.entry(from).or_default().insert(to);
    }
    let reaches = |a: &str, b: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![a];
        while let Some(m) = stack.pop() {
            if m == b {
                return true;
            }
            if seen.insert(m) {
                stack.extend(next.get(m).into_iter().flatten().copied());
            }
        }
        false
    };
    let mut found = Vec::new();
    for (from, to, line) in edges {
        if reaches(to, from) {
            found.push(format!("{from} -> {to} ({line})"));
        }
    }
    found.sort();
    found.dedup();
    found
}

/// No module of these crates imports, directly or through others, a module that imports it: a
/// cycle makes two modules one in all but name (issue 16).
#[test]
fn no_import_cycles_between_modules() {
    let root = root();
    let mut problems = Vec::new();
    for krate in [
        "supervisor/src",
        "protocol/src",
        "sdk-rust/src",
        "tests/src",
        "plugins/log-events/src",
        "plugins/nats-bridge/src",
    ] {
        let edges = rust_imports(&root.join(krate));
        for cycle in cycles(&edges) {
            problems.push(format!("{krate}: {cycle}"));
        }
    }
    let edges = python_imports(&root.join("sdk-python/src/sgevents"));
    assert!(
        edges.iter().any(|(from, _, _)| from == "_runner"),
        "the Python import scan found nothing: {edges:?}"
    );
    for cycle in cycles(&edges) {
        problems.push(format!("sdk-python: {cycle}"));
    }
    assert!(
        problems.is_empty(),
        "import cycles:\n{}\nhint: move what both sides share into a module of its own",
        problems.join("\n")
    );
}

#[test]
fn the_cycle_check_sees_a_cycle() {
    let edge = |a: &str, b: &str| (a.to_owned(), b.to_owned(), format!("use crate::{b}"));
    let found = cycles(&[
        edge("a", "b"),
        edge("b", "c"),
        edge("c", "a"),
        edge("c", "d"),
    ]);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(cycles(&[edge("a", "b"), edge("b", "c"), edge("a", "c")]).is_empty());
}

/// What a file's lines do with the database, outside comments and outside its inline test module:
/// each line that names `rusqlite`, calls a connection's method, or holds SQL text.
fn schema_uses(text: &str) -> Vec<String> {
    const CALLS: &[&str] = &[
        "rusqlite",
        ".prepare(",
        ".prepare_cached(",
        ".execute(",
        ".execute_batch(",
        ".query_row(",
        ".query_map(",
        ".pragma_",
        ".transaction(",
        ".transaction_with_behavior(",
        ".unchecked_transaction(",
    ];
    const SQL: &[&str] = &[
        "SELECT ",
        "INSERT ",
        "UPDATE ",
        "DELETE FROM",
        "CREATE TABLE",
        "PRAGMA ",
    ];
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let test_module = line.trim() == "#[cfg(test)]"
            && lines
                .get(i + 1)
                .is_some_and(|next| next.trim_start().starts_with("mod "));
        if test_module {
            break;
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        if CALLS.iter().chain(SQL).any(|w| line.contains(w)) {
            found.push(format!("{}: {}", i + 1, line.trim()));
        }
    }
    found
}

/// Only `supervisor/src/store/` knows the schema (issue 16): no other file of the daemon's crate
/// names `rusqlite`, calls a connection's methods (`.prepare(`, `.execute(`, `.query_row(`, ...)
/// or holds SQL text (`SELECT `, `INSERT `, `UPDATE `, `DELETE FROM`); they call the store's typed
/// functions. Left out, because a test may set up a fault with raw SQL: a file's inline test
/// module (`#[cfg(test)] mod ...`, which comes last), and the test-only files (`tests.rs`, the
/// `fuzz/` module). The integration tests under `supervisor/tests/` read the database with SQL
/// as a user would, and are not checked either.
#[test]
fn only_the_store_knows_the_schema() {
    let src = root().join("supervisor/src");
    let store = src.join("store");
    assert!(store.join("mod.rs").is_file(), "no `store/` module");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let checked: Vec<&std::path::PathBuf> = files
        .iter()
        .filter(|p| !p.starts_with(&store) && !p.starts_with(src.join("fuzz")))
        .filter(|p| p.file_name().is_some_and(|n| n != "tests.rs"))
        .collect();
    assert!(checked.len() > 30, "checked only {} files", checked.len());
    let mut problems = Vec::new();
    for path in checked {
        for use_ in schema_uses(&fs::read_to_string(path).expect("readable")) {
            let rel = path.strip_prefix(root()).unwrap_or(path).display();
            problems.push(format!("{rel}:{use_}"));
        }
    }
    assert!(
        problems.is_empty(),
        "SQL or `rusqlite` outside `supervisor/src/store/`:\n{}\nhint: add a typed function to `store/` (beside the table it touches) and call it",
        problems.join("\n")
    );
}

#[test]
fn the_schema_check_sees_sql() {
    let text = "//! a module\nfn f(c: &Reader) {\n    // SELECT in a comment is fine\n    c.conn.query_row(\"SELECT 1\", [], |r| r.get(0));\n}\n#[cfg(test)]\nmod tests {\n    use rusqlite::Connection;\n}\n";
    let found = schema_uses(text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("4: "), "{found:?}");
    assert_eq!(schema_uses("let s = \"DELETE FROM events\";").len(), 1);
    assert!(schema_uses("use crate::store::Reader;").is_empty());
}
