//! The `migrate` reader of the incumbent's configuration: the INI parser ([`conf::parse`]), its
//! interpolation ([`Ini::pieces`](conf::Ini::pieces)) and the conversion into a TOML file
//! ([`conf::convert`]).
//!
//! Files are generated from shotgunEventDaemon.conf's sections and keys, with values that refer to
//! other options and to environment variables (`%(name)s`, `%%`, broken references, loops),
//! continuation lines, comments, `[DEFAULT]`, duplicate sections and keys, section and key names
//! with odd characters, CRLF line ends, and damaged bytes. What is read must convert into TOML that
//! parses, and a secret written in the old file must not be copied into it.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::{ByteChange, apply_byte_change, byte_change, check, check_message};
use crate::migrate::conf;

fuzz_tests! {
    fuzz_migrate_ini, fuzz_migrate_ini_long => ini_files;
}

/// Written as the value of the secrets (`[shotgun] key`, `[emails] password`); never copied.
const SECRET: &str = "SECRETVALUE";

/// Keys, each with values to choose from.
type Keys = &'static [(&'static str, &'static [&'static str])];

const SECTIONS: &[(&str, Keys)] = &[
    (
        "daemon",
        &[
            ("pidFile", &["/var/run/sged.pid"]),
            ("eventIdFile", &["/var/log/sged/sged.id", "sged.id"]),
            ("logMode", &["1", "0", "2"]),
            ("logPath", &["/var/log/sged", "logs"]),
            ("logFile", &["shotgunEventDaemon"]),
            ("logging", &["20", "10", "INFO", "x"]),
            ("timing_log", &["on", "off", "maybe"]),
            ("conn_retry_sleep", &["60", "-1", "1_0"]),
            ("max_conn_retries", &["5"]),
            ("fetch_interval", &["3", "0.5", "0"]),
            ("max_event_batch_size", &["250", "99999999999999999999"]),
        ],
    ),
    (
        "shotgun",
        &[
            (
                "server",
                &[
                    "https://studio.shotgrid.autodesk.com",
                    "%(SG_URL)s",
                    "studio",
                    "",
                ],
            ),
            ("name", &["sgevents", "%(SG_NAME)s"]),
            ("key", &["%(SG_KEY)s", SECRET, "a%(SG_KEY)s", ""]),
            (
                "proxy_server",
                &["proxy.lan:3128", "http://u:p@proxy:8080", ""],
            ),
            ("use_session_uuid", &["True", "no", "2"]),
            ("ca_certs", &["/etc/ssl/ca.pem", "ca.pem"]),
        ],
    ),
    (
        "plugins",
        &[(
            "paths",
            &[
                "/opt/sg/plugins, relative/plugins",
                "",
                ",,",
                "%(HOME)s/plugins",
            ],
        )],
    ),
    (
        "emails",
        &[
            ("enabled", &["yes", "no", "1"]),
            ("server", &["smtp.lan", ""]),
            ("port", &["587", "0", "70000", "x"]),
            ("useTLS", &["True", "false"]),
            ("username", &["%(SMTP_USER)s", "user"]),
            ("password", &[SECRET, "%(SMTP_PASSWORD)s", ""]),
            ("from", &["daemon@studio"]),
            ("to", &["a@studio, b@studio", ""]),
            ("subject", &["[SG]", "%%d"]),
        ],
    ),
    ("DEFAULT", &[("logPath", &["/tmp"]), ("root", &["/srv"])]),
    ("sentry", &[("sentry_dsn", &["https://key@sentry/1"])]),
];

/// A value that is odd somewhere: references (to options, to variables, to itself), broken
/// ones, percent signs, anything.
fn odd_value() -> BoxedStrategy<String> {
    prop_oneof![
        prop::sample::select(vec![
            "%(logpath)s/x",
            "%(root)s",
            "%(server)s%(server)s",
            "%(paths)s",
            "%(name)s",
            "%(SG_URL)s",
            "%(NOT_SET)s",
            "%(",
            "%(x)",
            "%()s",
            "%(x)d",
            "%",
            "100%",
            "%%",
            "%%(x)s",
            "-1",
            "99999999999999999999",
            "0x10",
            "True",
            "",
            " ",
            "a = b",
            "[x]",
            "\"quoted\"",
            "'quoted'",
            "C:\\path",
            "\u{0}",
            "\u{7f}\u{85}\u{2028}",
        ])
        .prop_map(str::to_owned),
        // Any text but line breaks (which make lines of their own below).
        any::<String>().prop_map(|s| s.replace(['\n', '\r'], " ")),
    ]
    .boxed()
}

/// One line of a file.
fn line(section: usize) -> BoxedStrategy<String> {
    let (_, keys) = SECTIONS[section];
    let entry = (
        prop::sample::select(keys),
        prop_oneof![12 => Just(None), 1 => odd_value().prop_map(Some)],
        any::<prop::sample::Index>(),
        prop::sample::select(vec![" = ", ": ", "=", ":", " =  "]),
    )
        .prop_map(|((key, values), odd, index, separator)| {
            let value = odd.unwrap_or_else(|| index.get(values).to_string());
            format!("{key}{separator}{value}")
        });
    prop_oneof![
        20 => entry,
        2 => "[ \\t]{1,3}[a-z%()/ ]{0,12}".prop_map(|s| s.trim_end().to_owned()),
        1 => prop::sample::select(vec!["# comment", "; comment", "  # indented", "", "   "])
            .prop_map(str::to_owned),
        1 => (any::<String>(), odd_value()).prop_map(|(k, v)| {
            format!("{} = {v}", k.replace(['\n', '\r', '=', ':', '[', '#', ';'], "_"))
        }),
        1 => any::<String>().prop_map(|s| s.replace(['\n', '\r'], " ")),
    ]
    .boxed()
}

/// A header and its lines.
fn section() -> BoxedStrategy<Vec<String>> {
    (0..SECTIONS.len())
        .prop_flat_map(|i| {
            let header = prop_oneof![
                12 => Just(format!("[{}]", SECTIONS[i].0)),
                1 => prop::sample::select(vec!["[]", "[ a b ]", "[x]y]", "[\u{0}]", "[DEFAULT", "[Daemon]"])
                    .prop_map(str::to_owned),
                1 => any::<String>().prop_map(|s| format!("[{}]", s.replace(['\n', '\r'], " "))),
            ];
            (header, prop::collection::vec(line(i), 0..8), prop::bool::weighted(0.1))
        })
        .prop_map(|(header, lines, duplicates)| {
            // Keys are drawn with replacement: keep a duplicate (an error) only now and then.
            let mut seen = std::collections::HashSet::new();
            let lines = lines.into_iter().filter(|l| {
                let key = l.split(['=', ':']).next().unwrap_or("").trim().to_lowercase();
                duplicates || l.starts_with([' ', '\t']) || seen.insert(key)
            });
            std::iter::once(header).chain(lines).collect()
        })
        .boxed()
}

fn ini_text() -> BoxedStrategy<Vec<u8>> {
    (
        prop::collection::vec(section(), 0..6),
        prop::option::weighted(0.05, prop::collection::vec(any::<String>(), 1..3)),
        any::<bool>(),
        prop_oneof![3 => Just(ByteChange::None), 1 => byte_change()],
    )
        .prop_map(|(sections, before, crlf, bytes)| {
            let mut lines: Vec<String> = before.unwrap_or_default();
            lines.extend(sections.into_iter().flatten());
            let text = lines.join(if crlf { "\r\n" } else { "\n" });
            apply_byte_change(text, bytes)
        })
        .boxed()
}

fn env(name: &str) -> Option<String> {
    let value = match name {
        "SG_URL" => "https://studio.shotgrid.autodesk.com/",
        "SG_NAME" => "sgevents",
        "SG_KEY" => "from-the-environment",
        "SMTP_USER" => "mailer",
        "HOME" => "/home/sg",
        _ => return None,
    };
    Some(value.to_owned())
}

fn ini_files(cases: u32) {
    let file = Path::new("/etc/shotgunEventDaemon.conf");
    check(cases, ini_text(), |bytes| {
        let text = String::from_utf8_lossy(&bytes);
        let ini = match conf::parse(file, &text) {
            Ok(ini) => ini,
            Err(e) => {
                let message = e.to_string();
                prop_assert!(
                    message.starts_with("/etc/shotgunEventDaemon.conf:"),
                    "{message}"
                );
                return check_message(&message);
            }
        };
        for section in ini.sections() {
            for entry in &section.entries {
                if let Err(e) = ini.pieces(&section.name, entry) {
                    check_message(&e.to_string())?;
                }
            }
        }
        let lookup = env;
        let ctx = conf::Context {
            state_dir: "var".into(),
            cwd: PathBuf::from("/srv/sg"),
            env: &lookup,
            id_file: None,
        };
        match conf::convert(&ini, &ctx) {
            Ok(converted) => {
                if let Err(e) = toml::from_str::<toml::Table>(&converted.toml) {
                    prop_assert!(
                        false,
                        "the converted file is not TOML: {e}\n{}",
                        converted.toml
                    );
                }
                prop_assert!(
                    !converted.toml.contains(SECRET),
                    "a secret was copied:\n{}",
                    converted.toml
                );
            }
            Err(e) => check_message(&e.to_string())?,
        }
        Ok(())
    });
}

/// Options that each name the next one several times: every level multiplies the value's size
/// (a "billion laughs"). Within the 10 levels of references `configparser` allows, 4 references
/// per level made a 16 MiB value, and 10 per level would have made 10^10 pieces: the reader now
/// refuses a value that expands past its limit, as soon as it does.
#[test]
fn fuzz_regression_interpolation_cannot_blow_up() {
    for (fanout, leaf) in [(4, "0123456789abcdef"), (10, "x"), (10, "")] {
        let refs = |next: &str| format!("%({next})s").repeat(fanout);
        let mut text = format!("[shotgun]\nserver = {}\n", refs("a1"));
        for i in 1..10 {
            text.push_str(&format!("a{i} = {}\n", refs(&format!("a{}", i + 1))));
        }
        text.push_str(&format!("a10 = {leaf}\n"));
        let ini = conf::parse(Path::new("shotgunEventDaemon.conf"), &text).expect("an INI file");
        let entry = ini.get("shotgun", "server").expect("server").clone();
        let message = match ini.pieces("shotgun", &entry) {
            Ok(pieces) => panic!(
                "{fanout} references per level: a value of {} pieces was made",
                pieces.len()
            ),
            Err(e) => e.to_string(),
        };
        assert!(message.contains("expands to more than"), "{message}");
        check_message(&message).expect("a clean error");
    }
}
