//! The logger's tests: layers built with a captured stderr, files in temporary folders.

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::files::{RollingFile, date_of, day_of};
use super::*;

/// A stderr stand-in that keeps what is written.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = CapturedWriter;
    fn make_writer(&'a self) -> CapturedWriter {
        CapturedWriter(Arc::clone(&self.0))
    }
}

struct CapturedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn options(filter: &str, format: LogFormat, files: Option<LogFiles>) -> LogOptions {
    LogOptions {
        filter: filter.to_owned(),
        format,
        ansi: false,
        files,
        warning: None,
    }
}

/// Runs `f` with the logger of `opts`, its stderr captured; drops the guard (flushing the
/// files) before returning stderr's text.
fn with_logger(opts: &LogOptions, f: impl FnOnce()) -> String {
    let stderr = Captured::default();
    let (layers, guard) = layers(opts, stderr.clone()).expect("logging starts");
    let subscriber = tracing_subscriber::registry().with(layers);
    tracing::subscriber::with_default(subscriber, f);
    drop(guard);
    stderr.text()
}

/// The record the plugin actor writes for each answered delivery.
fn timing_record(plugin: &str, event_id: i64) {
    tracing::info!(target: "sgevents::timing", plugin = %plugin, event_id, attempt = 1_u32, outcome = "ack", duration_ms = 1.5_f64, delay_ms = 250_i64, "delivery");
}

#[test]
fn timing_records_are_taken_by_the_timing_file_or_a_filter_that_names_them() {
    let files = |timing| LogFiles {
        dir: PathBuf::from("logs"),
        retention: 1,
        per_plugin: false,
        timing,
    };
    for (filter, files, want) in [
        ("info", None, false),
        ("trace", None, false),
        ("warn,sgevents::timing=info", None, true),
        ("info", Some(files(false)), false),
        ("info", Some(files(true)), true),
    ] {
        let opts = options(filter, LogFormat::Text, files);
        assert_eq!(takes_timing(&opts), want, "{filter} {:?}", opts.files);
    }
}

#[test]
fn timing_records_stay_off_stderr_unless_the_filter_names_them() {
    let text = with_logger(&options("info", LogFormat::Text, None), || {
        tracing::info!("daemon line");
        timing_record("solo", 7);
    });
    assert!(text.contains("daemon line"), "{text}");
    assert!(!text.contains("delivery"), "{text}");

    let text = with_logger(&options("trace", LogFormat::Text, None), || {
        timing_record("solo", 7);
    });
    assert!(!text.contains("delivery"), "even at trace: {text}");

    let text = with_logger(
        &options("warn,sgevents::timing=info", LogFormat::Text, None),
        || {
            tracing::info!("daemon line");
            timing_record("solo", 7);
        },
    );
    assert!(!text.contains("daemon line"), "{text}");
    assert!(
        text.contains("delivery plugin=solo event_id=7"),
        "named explicitly: {text}"
    );
}

#[test]
fn json_lines_are_flat_objects() {
    let text = with_logger(&options("info", LogFormat::Json, None), || {
        tracing::warn!(target: "plugin", plugin = %"alpha", "disk is full");
    });
    let line: serde_json::Value =
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(line["level"], "WARN", "{line}");
    assert_eq!(line["plugin"], "alpha", "{line}");
    assert_eq!(line["message"], "disk is full", "{line}");
    assert_eq!(line["target"], "plugin", "{line}");
    assert!(line["timestamp"].is_string(), "{line}");
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn files_get_their_records() {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = LogFiles {
        dir: dir.path().join("logs"),
        retention: 3,
        per_plugin: true,
        timing: true,
    };
    let stderr = with_logger(&options("info", LogFormat::Text, Some(files)), || {
        tracing::info!("sgevents started");
        tracing::warn!(target: "plugin", plugin = %"alpha", "alpha's own line");
        tracing::error!(target: "plugin", plugin = %"beta", "beta's own line");
        tracing::warn!(plugin = %"alpha", "plugin `alpha` crashed; restarting");
        let span = tracing::info_span!("actor", plugin = %"beta");
        span.in_scope(|| tracing::info!("in beta's span"));
        tracing::debug!(target: "plugin", plugin = %"alpha", "below the filter");
        tracing::info!(target: "plugin", plugin = %"../escape", "a name that is not a file");
        timing_record("alpha", 1);
        timing_record("beta", 2);
    });
    let logs = dir.path().join("logs");
    let main = read(&logs.join("sgevents.log"));
    assert!(main.contains("INFO sgevents started"), "{main}");
    assert!(
        main.contains("plugin `alpha` crashed"),
        "the daemon's records about a plugin stay: {main}"
    );
    assert!(
        !main.contains("own line"),
        "plugin lines go to their files: {main}"
    );
    assert!(!main.contains("delivery"), "{main}");

    let alpha = read(&logs.join("plugins/alpha.log"));
    assert!(
        alpha.contains("WARN alpha's own line plugin=alpha"),
        "{alpha}"
    );
    assert!(alpha.contains("plugin `alpha` crashed"), "{alpha}");
    assert!(!alpha.contains("beta"), "{alpha}");
    assert!(!alpha.contains("below the filter"), "{alpha}");
    assert!(!alpha.contains("delivery"), "{alpha}");

    let beta = read(&logs.join("plugins/beta.log"));
    assert!(beta.contains("ERROR beta's own line"), "{beta}");
    assert!(
        beta.contains("in beta's span"),
        "a span's plugin field routes too: {beta}"
    );
    assert!(!beta.contains("alpha"), "{beta}");
    let plugin_files: Vec<_> = std::fs::read_dir(logs.join("plugins"))
        .expect("plugins folder")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(plugin_files.len(), 2, "{plugin_files:?}");

    let timing = read(&logs.join("timing.log"));
    let lines: Vec<&str> = timing.lines().collect();
    assert_eq!(lines.len(), 2, "{timing}");
    assert!(
        lines[0].ends_with(
            " INFO delivery plugin=alpha event_id=1 attempt=1 outcome=\"ack\" duration_ms=1.5 delay_ms=250"
        ),
        "{timing}"
    );
    assert!(lines[1].contains("plugin=beta event_id=2"), "{timing}");

    assert!(
        stderr.contains("alpha's own line"),
        "stderr keeps everything"
    );
    assert!(!stderr.contains("delivery"), "{stderr}");
}

#[test]
fn json_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = LogFiles {
        dir: dir.path().to_path_buf(),
        retention: 3,
        per_plugin: false,
        timing: true,
    };
    with_logger(&options("info", LogFormat::Json, Some(files)), || {
        tracing::info!(target: "plugin", plugin = %"alpha", "alpha's own line");
        timing_record("alpha", 1);
    });
    let main = read(&dir.path().join("sgevents.log"));
    let line: serde_json::Value = serde_json::from_str(main.trim()).expect("json");
    assert_eq!(
        line["plugin"], "alpha",
        "without per-plugin files, sgevents.log has it"
    );
    let timing = read(&dir.path().join("timing.log"));
    let line: serde_json::Value = serde_json::from_str(timing.trim()).expect("json");
    assert_eq!(line["target"], TIMING_TARGET);
    assert_eq!(line["event_id"], 1);
    assert_eq!(line["duration_ms"], 1.5);
    assert_eq!(line["outcome"], "ack");
    assert!(!dir.path().join(PLUGINS_DIR).exists());
}

#[test]
fn a_log_folder_that_cannot_be_made_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, "a file, not a folder").expect("write");
    let files = LogFiles {
        dir: blocker.join("logs"),
        retention: 3,
        per_plugin: false,
        timing: false,
    };
    let Err(err) = layers(
        &options("info", LogFormat::Text, Some(files)),
        Captured::default(),
    ) else {
        panic!("a folder under a file cannot be made");
    };
    let err = err.to_string();
    assert!(
        err.starts_with(&format!(
            "cannot create the log folder `{}`",
            blocker.join("logs").display()
        )),
        "{err}"
    );
    assert!(err.contains("\nhint: "), "{err}");
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    names.sort();
    names
}

#[test]
fn rotation_and_retention() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sgevents.log");
    let day =
        |date: &str| day_of(humantime::parse_rfc3339(&format!("{date}T12:00:00Z")).expect("date"));
    assert_eq!(date_of(day("2026-11-02")), "2026-11-02");
    // Rotated files of earlier runs, and files that only look alike.
    for old in [
        "sgevents.log.2026-10-28",
        "sgevents.log.2026-10-29",
        "sgevents.log.2026-10-30",
        "sgevents.log.backup",
        "timing.log.2026-10-01",
    ] {
        std::fs::write(dir.path().join(old), "old\n").expect("write");
    }
    let mut file = RollingFile::open(path.clone(), 3, day("2026-11-01")).expect("opens");
    assert_eq!(
        names(dir.path()),
        [
            "sgevents.log",
            "sgevents.log.2026-10-29",
            "sgevents.log.2026-10-30",
            "sgevents.log.backup",
            "timing.log.2026-10-01"
        ],
        "retention 3: the current file and two rotated ones"
    );
    file.write(day("2026-11-01"), b"first day\n", LogFormat::Text);
    file.write(day("2026-11-02"), b"second day\n", LogFormat::Text);
    file.write(day("2026-11-01"), b"clock went back\n", LogFormat::Text);
    file.flush(LogFormat::Text);
    assert_eq!(
        read(&dir.path().join("sgevents.log.2026-11-01")),
        "first day\n"
    );
    assert_eq!(read(&path), "second day\nclock went back\n");
    assert_eq!(
        names(dir.path()),
        [
            "sgevents.log",
            "sgevents.log.2026-10-30",
            "sgevents.log.2026-11-01",
            "sgevents.log.backup",
            "timing.log.2026-10-01"
        ]
    );
    drop(file);

    // A file left by a run on an earlier day is rotated at start, under its own day.
    let last_written = humantime::parse_rfc3339("2026-11-02T23:59:00Z").expect("time");
    File::options()
        .append(true)
        .open(&path)
        .and_then(|f| f.set_modified(last_written))
        .expect("set mtime");
    let mut file = RollingFile::open(path.clone(), 3, day("2026-11-05")).expect("opens");
    file.write(day("2026-11-05"), b"fifth\n", LogFormat::Text);
    file.flush(LogFormat::Text);
    assert_eq!(
        read(&dir.path().join("sgevents.log.2026-11-02")),
        "second day\nclock went back\n"
    );
    assert_eq!(read(&path), "fifth\n");
    assert_eq!(
        names(dir.path())
            .iter()
            .filter(|n| n.starts_with("sgevents.log."))
            .count(),
        3,
        "two rotated ones, plus `sgevents.log.backup`, which is not a rotated file"
    );
}

#[test]
fn a_file_moved_away_is_not_renamed_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("timing.log");
    let mut file = RollingFile::open(path.clone(), 5, 100).expect("opens");
    file.write(100, b"a\n", LogFormat::Text);
    file.flush(LogFormat::Text);
    std::fs::rename(&path, dir.path().join("moved")).expect("move");
    std::fs::write(&path, "someone else's\n").expect("write");
    file.write(101, b"b\n", LogFormat::Text);
    file.flush(LogFormat::Text);
    assert_eq!(read(&path), "someone else's\nb\n");
    assert_eq!(read(&dir.path().join("moved")), "a\n");
}

#[test]
fn the_filter_comes_from_the_environment_when_it_is_valid() {
    assert_eq!(choose_filter(None, "info"), ("info".to_owned(), None));
    assert_eq!(
        choose_filter(Some("debug".into()), "info"),
        ("debug".to_owned(), None)
    );
    assert_eq!(choose_filter(Some(" ".into()), "warn").0, "warn");
    let (filter, warning) = choose_filter(Some("info,sgevents=loud".into()), "warn");
    assert_eq!(filter, "warn");
    let warning = warning.expect("a warning");
    assert!(
        warning.contains("$SGEVENTS_LOG = `info,sgevents=loud`") && warning.contains("\nhint: "),
        "{warning}"
    );
}

#[test]
fn the_format_flag_wins_and_only_run_writes_files() {
    let config = crate::config::parse(
        Path::new("/etc/sgevents/sgevents.toml"),
        "[daemon]\nlog_dir = \"logs\"\nlog_format = \"json\"\n[source]\nkind = \"jsonl\"\npath = \"e\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let run = LogOptions::from_config(&config.daemon.log_level, &config.daemon.logs, None, true);
    assert_eq!(run.format, LogFormat::Json);
    assert!(!run.ansi);
    assert_eq!(
        run.files,
        Some(LogFiles {
            dir: PathBuf::from("/etc/sgevents/logs"),
            retention: 14,
            per_plugin: false,
            timing: true
        })
    );
    let flag = LogOptions::from_config(
        &config.daemon.log_level,
        &config.daemon.logs,
        Some(LogFormat::Text),
        false,
    );
    assert_eq!(flag.format, LogFormat::Text);
    assert_eq!(flag.files, None, "only `run` writes the files");
}
