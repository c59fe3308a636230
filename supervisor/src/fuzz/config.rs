//! The configuration loader: TOML text read into a validated [`Config`](crate::config::Config)
//! by [`config::parse`].
//!
//! Configurations are generated table by table from the keys the README documents, each with a
//! value that is valid for it or, now and then, an odd one: a value of another type, an integer
//! past `i64`, `inf`, a date, a duration too long for any clock, arrays and inline tables nested
//! thousands deep. Then a line is added, duplicated or dropped and the text's bytes damaged. The
//! folder the file sits in holds a plugin folder with one executable, so plugin tables are
//! validated too. What is accepted must be accepted again from its own text; an error names the
//! file and ends with a hint.

use std::path::Path;

use proptest::prelude::*;
use proptest::sample::Index;

use super::{ByteChange, apply_byte_change, byte_change, check, check_message};
use crate::config;

fuzz_tests! {
    fuzz_config_text, fuzz_config_text_long => config_texts;
}

type Keys = &'static [(&'static str, &'static [&'static str])];

const DAEMON: Keys = &[
    ("state_dir", &["\"var\"", "\"/tmp/sgevents-fuzz\"", "\"\""]),
    ("synchronous", &["\"full\"", "\"NORMAL\"", "\"off\""]),
    ("journal_retention", &["\"7days\"", "\"1s\"", "\"0s\""]),
    ("exit_when_idle", &["true", "false"]),
    ("commit_interval", &["\"2ms\"", "\"1h\""]),
    (
        "log_level",
        &["\"info\"", "\"sgevents=debug,warn\"", "\"[\""],
    ),
    ("log_dir", &["\"logs\"", "\"/\""]),
    ("log_retention", &["7", "0", "-1", "100000"]),
    ("log_per_plugin", &["true", "false"]),
    ("log_format", &["\"text\"", "\"json\"", "\"xml\""]),
    ("timing_log", &["true", "false"]),
];

const HTTP: Keys = &[
    (
        "listen",
        &[
            "\"127.0.0.1:9750\"",
            "\"\"",
            "\"[::1]:0\"",
            "\"0.0.0.0:80\"",
            "\"localhost\"",
            "\"127.0.0.1:99999\"",
        ],
    ),
    ("allow_remote", &["true", "false"]),
];

const JSONL: Keys = &[
    ("kind", &["\"jsonl\""]),
    ("path", &["\"events.jsonl\"", "\"/dev/null\""]),
    ("follow", &["true", "false"]),
    ("poll_interval", &["\"500ms\"", "\"0s\""]),
    (
        "start_at",
        &[
            "\"earliest\"",
            "\"latest\"",
            "42",
            "0",
            "\"2026-11-02T10:00:00Z\"",
            "2026-11-02T10:00:00Z",
            "2026-11-02",
        ],
    ),
    ("batch_size", &["500", "0", "1", "100000000"]),
    (
        "site_url",
        &["\"https://studio.shotgrid.autodesk.com\"", "\"\""],
    ),
];

const SHOTGRID: Keys = &[
    ("kind", &["\"shotgrid\"", "\"ftp\""]),
    (
        "url",
        &[
            "\"https://studio.shotgrid.autodesk.com\"",
            "\"studio\"",
            "\"http://[::1]:8080/\"",
        ],
    ),
    ("script_name", &["\"sgevents\"", "\"\""]),
    (
        "script_key_env",
        &["\"SGEVENTS_FUZZ_NO_SUCH_VARIABLE\"", "\"PATH\""],
    ),
    ("script_key_file", &["\"key.txt\""]),
    ("fetch_interval", &["\"1s\""]),
    ("gap_timeout", &["\"10m\""]),
    ("proxy", &["\"http://proxy:3128\"", "\"::\""]),
    ("ca_file", &["\"ca.pem\""]),
    ("request_timeout", &["\"30s\""]),
    ("alert_after", &["\"5m\""]),
    ("start_at", &["\"latest\"", "1"]),
    ("batch_size", &["200"]),
];

const PLUGINS: Keys = &[
    (
        "paths",
        &[
            "[\"plugins\"]",
            "[]",
            "[\"missing\"]",
            "[\"plugins\", \"plugins\"]",
        ],
    ),
    ("legacy_paths", &["[]", "[\"plugins\"]"]),
    ("legacy_command", &["[\"python3\"]", "[]"]),
    ("legacy_env", &["{ A = \"b\" }", "{}"]),
    ("use_session_uuid", &["true"]),
    ("ack_timeout", &["\"30s\""]),
    ("max_attempts", &["10", "0", "1001"]),
    ("handshake_timeout", &["\"10s\""]),
    ("ping_interval", &["\"15s\""]),
    ("shutdown_drain", &["\"5s\""]),
    ("stop_grace", &["\"5s\""]),
    ("restart_delay", &["\"1s\""]),
    ("restart_delay_max", &["\"5m\"", "\"1ms\""]),
];

const PLUGIN: Keys = &[
    ("command", &["[\"/bin/cat\"]", "[]", "[\"\"]"]),
    ("env", &["{ A = \"1\" }", "{}"]),
    (
        "config",
        &["{ a = 1, b = [1, 2], c = { d = \"e\" } }", "{}"],
    ),
    ("enabled", &["true", "false"]),
    ("start_at", &["\"earliest\"", "\"latest\"", "7", "-7"]),
    ("script_name", &["\"bot\""]),
    ("script_key_env", &["\"SGEVENTS_FUZZ_NO_SUCH_VARIABLE\""]),
    ("ack_timeout", &["\"1m\""]),
    ("max_attempts", &["3"]),
    ("alert_to", &["[\"a@b.c\"]", "[]"]),
    ("after", &["[\"fuzzplugin\"]", "[\"ghost\"]", "[]"]),
];

const ALERTS: Keys = &[
    ("smtp_host", &["\"smtp.lan\"", "\"\""]),
    ("smtp_port", &["25", "0", "70000"]),
    ("tls", &["\"starttls\"", "\"none\"", "\"tls\"", "\"maybe\""]),
    ("username_env", &["\"SGEVENTS_FUZZ_NO_SUCH_VARIABLE\""]),
    ("password_env", &["\"SGEVENTS_FUZZ_NO_SUCH_VARIABLE\""]),
    ("from", &["\"daemon@studio\"", "\"not an address\""]),
    ("to", &["[\"a@studio\"]", "[]"]),
    ("subject_prefix", &["\"[sg]\""]),
    ("rate_limit", &["\"10m\""]),
    ("ca_file", &["\"ca.pem\""]),
];

/// A TOML value that is odd somewhere: any type, at the limits, or deeply nested.
fn odd_value() -> BoxedStrategy<String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| toml::Value::Float(f).to_string()),
        any::<String>().prop_map(|s| toml::Value::String(s).to_string()),
        prop::sample::select(vec![
            "9223372036854775808",
            "-9223372036854775809",
            "0x7FFFFFFFFFFFFFFF",
            "0o777",
            "0b101",
            "+1",
            "-0",
            "1_000",
            "01",
            "1__0",
            "inf",
            "-inf",
            "nan",
            "1e400",
            "-0.0",
            ".5",
            "true",
            "1979-05-27T07:32:00Z",
            "1979-05-27T00:32:00.999999-07:00",
            "1979-05-27",
            "07:32:00",
            "9999-12-31T23:59:59Z",
            "1979-13-45T99:99:99Z",
            "\"18446744073709551616s\"",
            "\"99999999999999years\"",
            "\"584942417355years\"",
            "\"1ns\"",
            "\"-1s\"",
            "\"\\u0000\"",
            "\"\\uD800\"",
            "\"\\x41\"",
            "'literal'",
            "\"\"\"multi\nline\"\"\"",
            "[1, \"a\", 1.5]",
            "[[1], [\"a\"]]",
            "{}",
            "{ a = { b = 2 } }",
            "",
        ])
        .prop_map(str::to_owned),
        (1usize..2_000, any::<bool>()).prop_map(|(n, tables)| if tables {
            format!("{}1{}", "{ a = ".repeat(n), " }".repeat(n))
        } else {
            format!("{}1{}", "[".repeat(n), "]".repeat(n))
        }),
    ]
    .boxed()
}

/// The lines of one table: some of its keys, each valid or (rarely: a configuration has about 40
/// keys) odd.
fn table(header: &'static str, keys: Keys) -> BoxedStrategy<Vec<String>> {
    // A strategy per key; a union generates only the branch it picks, so odd values cost
    // nothing when they are not chosen.
    let lines: Vec<BoxedStrategy<Option<String>>> = keys
        .iter()
        .map(|&(key, valid)| {
            let value = prop_oneof![
                // The first value listed is valid on its own; the others may not be.
                40 => Just(valid[0].to_owned()),
                20 => prop::sample::select(valid).prop_map(str::to_owned),
                1 => odd_value(),
            ];
            // The keys a source needs are there nearly always, the others now and then.
            let p = if matches!(key, "kind" | "path" | "url" | "script_name") {
                0.97
            } else {
                0.3
            };
            prop::option::weighted(p, value.prop_map(move |v| format!("{key} = {v}"))).boxed()
        })
        .collect();
    lines
        .prop_map(move |lines| {
            std::iter::once(header.to_owned())
                .chain(lines.into_iter().flatten())
                .collect()
        })
        .boxed()
}

/// A line changed in the whole text.
#[derive(Debug, Clone)]
enum LineChange {
    None,
    /// An unknown key, or a known key of another table, at line `index % len`.
    Insert(Index, String),
    Duplicate(Index),
    Drop(Index),
}

fn config_text() -> BoxedStrategy<Vec<u8>> {
    let source = prop_oneof![
        3 => table("[source]", JSONL),
        1 => table("[source]", SHOTGRID),
        1 => Just(vec![]),
    ];
    let change = prop_oneof![
        8 => Just(LineChange::None),
        1 => (any::<Index>(), prop_oneof![
            Just("unknown_key = 1".to_owned()),
            Just("[unknown_table]".to_owned()),
            Just("[source]".to_owned()),
            Just("[plugin.\"\"]".to_owned()),
            Just("[plugin.\"a.b\"]".to_owned()),
            Just("paths = \"plugins\"".to_owned()),
            any::<String>(),
        ]).prop_map(|(i, l)| LineChange::Insert(i, l)),
        1 => any::<Index>().prop_map(LineChange::Duplicate),
        1 => any::<Index>().prop_map(LineChange::Drop),
    ];
    (
        table("[daemon]", DAEMON),
        source,
        table("[plugins]", PLUGINS),
        prop::option::of(table("[plugin.fuzzplugin]", PLUGIN)),
        prop::option::of(table("[plugin.ghost]", PLUGIN)),
        prop::option::of(table("[alerts]", ALERTS)),
        prop::option::of(table("[http]", HTTP)),
        change,
        prop_oneof![3 => Just(ByteChange::None), 1 => byte_change()],
        any::<bool>(),
    )
        .prop_map(
            |(daemon, source, plugins, plugin, ghost, alerts, http, change, bytes, crlf)| {
                let mut lines: Vec<String> = [
                    Some(daemon),
                    Some(source),
                    Some(plugins),
                    plugin,
                    ghost,
                    alerts,
                    http,
                ]
                .into_iter()
                .flatten()
                .flatten()
                .collect();
                if !lines.is_empty() {
                    match change {
                        LineChange::None => {}
                        LineChange::Insert(i, line) => {
                            let at = i.index(lines.len() + 1);
                            lines.insert(at, line);
                        }
                        LineChange::Duplicate(i) => {
                            let line = lines[i.index(lines.len())].clone();
                            lines.push(line);
                        }
                        LineChange::Drop(i) => {
                            lines.remove(i.index(lines.len()));
                        }
                    }
                }
                let text = lines.join(if crlf { "\r\n" } else { "\n" });
                apply_byte_change(text, bytes)
            },
        )
        .boxed()
}

/// A folder with `plugins/fuzzplugin`, an executable, for the configuration to live in.
fn workspace() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("a temporary folder");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).expect("mkdir");
    let exe = plugins.join("fuzzplugin");
    std::fs::write(&exe, "#!/bin/sh\nexit 0\n").expect("write");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// Parses `text` as the file `file`, checking what is returned.
fn parse_checked(file: &Path, text: &str) -> Result<(), TestCaseError> {
    match config::parse(file, text) {
        Ok(config) => {
            prop_assert_eq!(&config.text, text);
            if let Err(e) = config::parse(file, &config.text) {
                prop_assert!(false, "accepted once, refused again: {e}");
            }
        }
        Err(e) => {
            let message = e.to_string();
            prop_assert!(
                message.starts_with(&file.display().to_string()),
                "the error does not name the file: {message}"
            );
            check_message(&message)?;
        }
    }
    Ok(())
}

fn config_texts(cases: u32) {
    let dir = workspace();
    let file = dir.path().join("sgevents.toml");
    check(cases, config_text(), |bytes| {
        parse_checked(&file, &String::from_utf8_lossy(&bytes))
    });
}

/// Deeply nested values where the configuration takes any TOML (a plugin's `config` table),
/// and where it takes none: refused with an error, never a stack overflow.
#[test]
fn fuzz_fixed_config_deep_nesting() {
    let dir = workspace();
    let file = dir.path().join("sgevents.toml");
    for n in [10, 127, 128, 129, 1_000, 100_000] {
        for (open, close) in [("[", "]"), ("{ a = ", " }")] {
            let value = format!("{}1{}", open.repeat(n), close.repeat(n));
            for text in [
                format!(
                    "[source]\nkind = \"jsonl\"\npath = \"e.jsonl\"\n[plugins]\npaths = [\"plugins\"]\n[plugin.fuzzplugin]\nconfig = {{ deep = {value} }}\n"
                ),
                format!("[source]\nkind = \"jsonl\"\npath = {value}\n"),
                format!("x = {value}\n"),
            ] {
                parse_checked(&file, &text).unwrap_or_else(|e| panic!("{n} levels: {e}"));
            }
        }
    }
}
