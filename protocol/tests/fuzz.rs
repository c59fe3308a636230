//! Fuzzing the protocol crate's readers of bytes that come from a plugin: the stdout decoder
//! (`decode_plugin_line`, and `decode_daemon_line`, which the SDKs use), the bounded
//! `LineReader`, `excerpt`, and the stderr record format (`parse_log_line`).
//!
//! The generators are structure-aware: valid messages of every type, then one field of the wrong
//! type, a field dropped, duplicated or unknown, a wrong `type`; numbers no Rust integer holds
//! (`1e400`, `u64::MAX + 1`, `-0`); strings with lone surrogates, NULs and 100 KiB of text;
//! nesting thousands of levels deep; then the line itself cut, spliced with bytes that are not
//! UTF-8, NULs, CRs and newlines. The properties: nothing panics (or overflows the stack); a
//! decoded message encodes back to itself; an error names the problem in lowercase and ends with
//! a hint; a line over the limit is never held in memory.
//!
//! Each property runs 2,000 cases in the normal suite (`SGEVENTS_FUZZ_CASES` overrides it), and
//! 100,000 in its ignored twin: `cargo test --workspace -- --ignored fuzz` (see BENCHMARKS.md,
//! "Fuzzing"). Failures are not persisted to files: proptest prints the shrunk input.

use std::io::{BufReader, Cursor, Read};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sgevents_protocol::log::{Level, format_log_line, parse_log_line};
use sgevents_protocol::{
    DEFAULT_MAX_LINE_BYTES, DecodeError, LineReader, PluginMessage, ReadLine, decode_daemon_line,
    decode_plugin_line, encode, excerpt,
};

// ---------------------------------------------------------------------------------------------
// Running a property with the normal and the long case counts.

/// Cases per property in the normal suite.
const NORMAL_CASES: u32 = 2_000;
/// Cases per property in the long run (the ignored twins).
const LONG_CASES: u32 = 100_000;

/// `default`, unless `SGEVENTS_FUZZ_CASES` says otherwise.
fn cases(default: u32) -> u32 {
    std::env::var("SGEVENTS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `test` on `cases` inputs of `strategy`, with no failure files written.
fn check<S: Strategy>(
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
}

/// A property as two tests: `$normal` with [`NORMAL_CASES`], `$long` (ignored) with
/// [`LONG_CASES`].
macro_rules! fuzz_tests {
    ($($normal:ident, $long:ident => $property:ident;)*) => {$(
        #[test]
        fn $normal() {
            $property(cases(NORMAL_CASES));
        }

        #[test]
        #[ignore = "long fuzz run: cargo test --workspace -- --ignored fuzz"]
        fn $long() {
            $property(cases(LONG_CASES));
        }
    )*};
}

fuzz_tests! {
    fuzz_decode_plugin_line, fuzz_decode_plugin_line_long => decode_plugin_lines;
    fuzz_decode_daemon_line, fuzz_decode_daemon_line_long => decode_daemon_lines;
    fuzz_line_reader, fuzz_line_reader_long => line_reader;
    fuzz_parse_log_line, fuzz_parse_log_line_long => log_lines;
    fuzz_log_line_round_trip, fuzz_log_line_round_trip_long => log_round_trip;
}

// ---------------------------------------------------------------------------------------------
// JSON as text, so that it can hold what no `serde_json::Value` can.

#[derive(Debug, Clone)]
enum Json {
    Null,
    Bool(bool),
    /// A number literal as written, valid JSON or not.
    Num(String),
    /// A string, escaped as serde_json escapes it.
    Str(String),
    /// The inside of a string literal, written as is (odd escapes, lone surrogates).
    RawStr(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
    /// `n` nested arrays (or objects) around `null`.
    Deep(usize, bool),
}

impl Json {
    fn render(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(n) => out.push_str(n),
            Json::Str(s) => out.push_str(&serde_json::to_string(s).expect("strings serialize")),
            Json::RawStr(s) => {
                out.push('"');
                out.push_str(s);
                out.push('"');
            }
            Json::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.render(out);
                }
                out.push(']');
            }
            Json::Obj(fields) => render_object(fields, out),
            Json::Deep(n, objects) => {
                let (open, close) = if *objects {
                    ("{\"a\":", "}")
                } else {
                    ("[", "]")
                };
                for _ in 0..*n {
                    out.push_str(open);
                }
                out.push_str("null");
                for _ in 0..*n {
                    out.push_str(close);
                }
            }
        }
    }
}

fn render_object(fields: &[(String, Json)], out: &mut String) {
    out.push('{');
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(k).expect("strings serialize"));
        out.push(':');
        v.render(out);
    }
    out.push('}');
}

fn num(n: impl ToString) -> Json {
    Json::Num(n.to_string())
}

/// Numbers at and past every edge: the integer types' limits, what overflows them, floats where
/// integers are expected, and literals that are not JSON at all.
fn odd_number() -> impl Strategy<Value = Json> {
    prop_oneof![
        any::<i64>().prop_map(num),
        any::<u64>().prop_map(num),
        any::<u32>().prop_map(num),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(num),
        prop::sample::select(vec![
            "0",
            "-0",
            "-0.0",
            "0.5",
            "1.0",
            "1e400",
            "-1e400",
            "1E-400",
            "4294967296",
            "-1",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775809",
            "18446744073709551615",
            "18446744073709551616",
            "123456789012345678901234567890123456789",
            "1e18",
            "01",
            "+1",
            ".5",
            "1.",
            "NaN",
            "Infinity",
            "-",
            "0x10",
        ])
        .prop_map(|s| Json::Num(s.to_owned())),
    ]
}

/// Strings: anything Unicode, control characters and NULs, very long ones, and raw escapes that
/// are not valid (lone surrogates, short `\u`).
fn odd_string() -> impl Strategy<Value = Json> {
    prop_oneof![
        4 => any::<String>().prop_map(Json::Str),
        1 => "[\\x00-\\x1f\\x7f\"\\\\ a]{0,8}".prop_map(Json::Str),
        1 => (1usize..100_000, any::<char>()).prop_map(|(n, c)| Json::Str(c.to_string().repeat(n))),
        1 => prop::sample::select(vec![
            "\\ud800", "\\udc00", "\\ud800\\u0041", "\\u00", "\\u0000", "\\x41", "\\", "\\'",
            "\\uD83D\\uDE00", "\\uzzzz",
        ])
        .prop_map(|s| Json::RawStr(s.to_owned())),
    ]
}

/// Any JSON value, odd scalars included, nested a little; or nested very deeply.
fn any_json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        odd_number(),
        odd_string(),
    ];
    let tree = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Arr),
            prop::collection::vec((field_name(), inner), 0..4).prop_map(Json::Obj),
        ]
    });
    prop_oneof![
        8 => tree,
        1 => (
            // Anywhere up to 20,000 levels, and often at the limits (64 for an event's field,
            // 128 for serde_json).
            prop_oneof![0usize..20_000, 60usize..70, 120usize..132],
            any::<bool>()
        )
            .prop_map(|(n, o)| Json::Deep(n, o)),
    ]
}

/// Field names: the protocol's own (so a duplicate or a wrong type hits a real field), or any.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "type", "event_id", "error", "retry_after_ms", "nonce", "protocol", "subscriptions",
            "max_in_flight", "alerts", "name", "event_types", "attributes", "entity_types",
            "project_ids", "skip_transient", "attempt", "deadline_ms", "event", "id", "drain_ms",
            "protocols", "plugin", "config", "meta", "entity",
        ])
        .prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

// ---------------------------------------------------------------------------------------------
// Messages: valid ones, then one thing wrong.

type Fields = Vec<(String, Json)>;

fn field(name: &str, value: Json) -> (String, Json) {
    (name.to_owned(), value)
}

fn strings(max: usize) -> impl Strategy<Value = Json> {
    prop::collection::vec(any::<String>().prop_map(Json::Str), 0..max).prop_map(Json::Arr)
}

fn subscription() -> impl Strategy<Value = Json> {
    (
        any::<String>(),
        strings(3),
        prop::option::of(strings(3)),
        prop::option::of(strings(3)),
        prop::option::of(prop::collection::vec(any::<i64>().prop_map(num), 0..3)),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(name, types, attrs, entities, projects, skip)| {
            let mut f = vec![field("name", Json::Str(name)), field("event_types", types)];
            if let Some(a) = attrs {
                f.push(field("attributes", a));
            }
            if let Some(e) = entities {
                f.push(field("entity_types", e));
            }
            if let Some(p) = projects {
                f.push(field("project_ids", Json::Arr(p)));
            }
            if let Some(s) = skip {
                f.push(field("skip_transient", Json::Bool(s)));
            }
            Json::Obj(f)
        })
}

/// A valid message from a plugin, as its fields (`type` first).
fn plugin_message() -> impl Strategy<Value = Fields> {
    let typed = |t: &str, rest: Fields| {
        let mut f = vec![field("type", Json::Str(t.to_owned()))];
        f.extend(rest);
        f
    };
    prop_oneof![
        (
            0u32..3,
            prop::collection::vec(subscription(), 0..3),
            prop::option::of(0u32..100),
            prop::option::of(prop_oneof![any::<bool>().prop_map(Json::Bool), strings(3)]),
        )
            .prop_map(move |(protocol, subs, window, alerts)| {
                let mut f = vec![
                    field("protocol", num(protocol)),
                    field("subscriptions", Json::Arr(subs)),
                ];
                if let Some(w) = window {
                    f.push(field("max_in_flight", num(w)));
                }
                if let Some(a) = alerts {
                    f.push(field("alerts", a));
                }
                typed("register", f)
            }),
        any::<i64>().prop_map(move |id| typed("ack", vec![field("event_id", num(id))])),
        any::<i64>().prop_map(move |id| typed("progress", vec![field("event_id", num(id))])),
        (
            any::<i64>(),
            any::<String>(),
            prop::option::of(any::<u64>())
        )
            .prop_map(move |(id, error, after)| {
                let mut f = vec![field("event_id", num(id)), field("error", Json::Str(error))];
                if let Some(a) = after {
                    f.push(field("retry_after_ms", num(a)));
                }
                typed("nack", f)
            }),
        (any::<i64>(), any::<String>()).prop_map(move |(id, error)| typed(
            "term",
            vec![field("event_id", num(id)), field("error", Json::Str(error))]
        )),
        any::<String>().prop_map(move |e| typed("fatal", vec![field("error", Json::Str(e))])),
        any::<u64>().prop_map(move |n| typed("pong", vec![field("nonce", num(n))])),
    ]
}

/// A valid message from the daemon, as its fields.
fn daemon_message() -> impl Strategy<Value = Fields> {
    let typed = |t: &str, rest: Fields| {
        let mut f = vec![field("type", Json::Str(t.to_owned()))];
        f.extend(rest);
        f
    };
    prop_oneof![
        (
            prop::collection::vec(0u32..4, 0..3),
            any::<String>(),
            any_json()
        )
            .prop_map(move |(protocols, plugin, config)| typed(
                "hello",
                vec![
                    field(
                        "protocols",
                        Json::Arr(protocols.into_iter().map(num).collect())
                    ),
                    field("plugin", Json::Str(plugin)),
                    field("config", config),
                ]
            )),
        (
            any::<i64>(),
            any::<u32>(),
            strings(3),
            any::<u64>(),
            any::<i64>(),
            any_json()
        )
            .prop_map(move |(id, attempt, subs, deadline, event_id, meta)| typed(
                "event",
                vec![
                    field("event_id", num(id)),
                    field("attempt", num(attempt)),
                    field("subscriptions", subs),
                    field("deadline_ms", num(deadline)),
                    field(
                        "event",
                        Json::Obj(vec![
                            field("id", num(event_id)),
                            field("event_type", Json::Str("Shotgun_Task_Change".into())),
                            field("meta", meta),
                        ])
                    ),
                ]
            )),
        any::<u64>().prop_map(move |n| typed("ping", vec![field("nonce", num(n))])),
        any::<u64>().prop_map(move |n| typed("shutdown", vec![field("drain_ms", num(n))])),
    ]
}

/// One thing wrong with a message's fields.
#[derive(Debug, Clone)]
enum FieldChange {
    None,
    /// Field `index % len` gets this value instead (most often of the wrong type).
    Replace(usize, Json),
    Drop(usize),
    Duplicate(usize, Json),
    Add(String, Json),
    /// The whole message is this value instead.
    Whole(Json),
}

fn field_change() -> impl Strategy<Value = FieldChange> {
    prop_oneof![
        2 => Just(FieldChange::None),
        4 => (any::<usize>(), any_json()).prop_map(|(i, v)| FieldChange::Replace(i, v)),
        1 => any::<usize>().prop_map(FieldChange::Drop),
        1 => (any::<usize>(), any_json()).prop_map(|(i, v)| FieldChange::Duplicate(i, v)),
        2 => (field_name(), any_json()).prop_map(|(k, v)| FieldChange::Add(k, v)),
        1 => any_json().prop_map(FieldChange::Whole),
    ]
}

fn apply_field_change(mut fields: Fields, change: FieldChange) -> String {
    let len = fields.len();
    match change {
        FieldChange::None => {}
        FieldChange::Replace(i, v) => fields[i % len].1 = v,
        FieldChange::Drop(i) => {
            fields.remove(i % len);
        }
        FieldChange::Duplicate(i, v) => {
            let name = fields[i % len].0.clone();
            fields.push((name, v));
        }
        FieldChange::Add(k, v) => fields.insert(len / 2, (k, v)),
        FieldChange::Whole(v) => {
            let mut out = String::new();
            v.render(&mut out);
            return out;
        }
    }
    let mut out = String::new();
    render_object(&fields, &mut out);
    out
}

/// What happens to the line's bytes on the way.
#[derive(Debug, Clone)]
enum ByteChange {
    None,
    /// Cut at `index % (len + 1)`.
    Cut(usize),
    /// This byte inserted at `index % (len + 1)`.
    Insert(usize, u8),
    /// The byte at `index % len` replaced.
    Replace(usize, u8),
    /// These bytes appended (newlines, CRLF, spaces, NULs, garbage after the object).
    Append(Vec<u8>),
    /// A UTF-8 byte order mark before.
    Bom,
}

fn odd_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        prop::sample::select(vec![
            0x00, 0xff, 0xfe, 0xc3, 0x80, 0xed, 0xa0, 0xf4, 0x90, b'\r', b'\n', b'"', b'\\', b'{',
            b'}', b'[', b']', b',', b':', b' ',
        ]),
        any::<u8>(),
    ]
}

fn byte_change() -> impl Strategy<Value = ByteChange> {
    prop_oneof![
        4 => Just(ByteChange::None),
        2 => any::<usize>().prop_map(ByteChange::Cut),
        2 => (any::<usize>(), odd_byte()).prop_map(|(i, b)| ByteChange::Insert(i, b)),
        1 => (any::<usize>(), odd_byte()).prop_map(|(i, b)| ByteChange::Replace(i, b)),
        1 => prop_oneof![
            Just(b"\r\n".to_vec()),
            Just(b"\n".to_vec()),
            Just(b" \t ".to_vec()),
            Just(b"\0".to_vec()),
            Just(b"{}".to_vec()),
            prop::collection::vec(any::<u8>(), 1..8),
        ]
        .prop_map(ByteChange::Append),
        1 => Just(ByteChange::Bom),
    ]
}

fn apply_byte_change(text: String, change: ByteChange) -> Vec<u8> {
    let mut bytes = text.into_bytes();
    let len = bytes.len();
    match change {
        ByteChange::None => {}
        ByteChange::Cut(i) => bytes.truncate(i % (len + 1)),
        ByteChange::Insert(i, b) => bytes.insert(i % (len + 1), b),
        ByteChange::Replace(i, b) if len > 0 => bytes[i % len] = b,
        ByteChange::Replace(..) => {}
        ByteChange::Append(tail) => bytes.extend(tail),
        ByteChange::Bom => {
            bytes.splice(0..0, [0xef, 0xbb, 0xbf]);
        }
    }
    bytes
}

/// Lines a plugin could write: mostly messages with something wrong, some random bytes.
fn lines_from(messages: BoxedStrategy<Fields>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        9 => (messages, field_change(), byte_change())
            .prop_map(|(f, fc, bc)| apply_byte_change(apply_field_change(f, fc), bc)),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

// ---------------------------------------------------------------------------------------------
// Properties.

/// What every decoding error must look like.
fn check_error(line: &[u8], err: &DecodeError) -> Result<(), TestCaseError> {
    let text = err.to_string();
    prop_assert!(
        text.starts_with(|c: char| c.is_lowercase()),
        "error not lowercase: {text}"
    );
    prop_assert!(text.contains("\nhint: "), "error without a hint: {text}");
    // A line that is not UTF-8 is always reported as such, where it stops being UTF-8.
    if let Err(utf8) = std::str::from_utf8(line) {
        prop_assert_eq!(
            err,
            &DecodeError::NotUtf8 {
                valid_up_to: utf8.valid_up_to()
            }
        );
    }
    Ok(())
}

fn decode_plugin_lines(cases: u32) {
    check(cases, lines_from(plugin_message().boxed()), |line| {
        match decode_plugin_line(&line) {
            Ok(msg) => {
                // What was read is what encoding writes back.
                let again = encode(&msg);
                prop_assert_eq!(again.matches('\n').count(), 1);
                prop_assert_eq!(decode_plugin_line(again.as_bytes()), Ok(msg));
            }
            Err(e) => check_error(&line, &e)?,
        }
        let cut = excerpt(&line, 120);
        prop_assert!(cut.len() <= 120 + 40, "excerpt too long: {}", cut.len());
        Ok(())
    });
}

fn decode_daemon_lines(cases: u32) {
    check(cases, lines_from(daemon_message().boxed()), |line| {
        match decode_daemon_line(&line) {
            Ok(msg) => {
                let again = encode(&msg);
                prop_assert_eq!(decode_daemon_line(again.as_bytes()), Ok(msg));
            }
            Err(e) => check_error(&line, &e)?,
        }
        Ok(())
    });
}

/// Lines of lengths around the limit, separated by newlines or not, read through buffers of every
/// small size: each comes out whole or as `TooLong` with its length, never more than the limit in
/// memory, and the reader stays in step.
fn line_reader(cases: u32) {
    let input = (
        prop::collection::vec(
            (
                prop_oneof![0usize..12, 12usize..40],
                any::<u8>(),
                any::<bool>(),
            ),
            0..8,
        ),
        1usize..20,
        1usize..17,
    );
    check(cases, input, |(parts, max, capacity)| {
        let mut input = Vec::new();
        for (len, byte, newline) in &parts {
            // A line's own bytes never contain the newline.
            let b = if *byte == b'\n' { b'x' } else { *byte };
            input.extend(std::iter::repeat_n(b, *len));
            if *newline {
                input.push(b'\n');
            }
        }
        // The model: split on newlines; a last piece without one is a line if it is not empty.
        let mut want = Vec::new();
        let mut pieces: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
        if pieces.last().is_some_and(|p| p.is_empty()) {
            pieces.pop();
        }
        for piece in pieces {
            want.push(if piece.len() > max {
                (ReadLine::TooLong { len: piece.len() }, Vec::new())
            } else {
                (ReadLine::Line, piece.to_vec())
            });
        }
        want.push((ReadLine::Eof, Vec::new()));
        let mut reader = LineReader::new(
            BufReader::with_capacity(capacity, Cursor::new(input.clone())),
            max,
        );
        let mut got = Vec::new();
        let mut buf = Vec::new();
        loop {
            let r = reader.read(&mut buf).expect("in-memory read");
            prop_assert!(
                buf.len() <= max,
                "held {} bytes over the limit {max}",
                buf.len()
            );
            got.push((r, buf.clone()));
            if r == ReadLine::Eof {
                break;
            }
        }
        prop_assert_eq!(got, want);
        Ok(())
    });
}

/// Stderr lines, as the daemon reads them (bytes made text lossily): JSON records with fields of
/// every type, prefixed text, and garbage.
fn log_lines(cases: u32) {
    let record = prop_oneof![
        (
            prop::option::of(prop_oneof![
                prop::sample::select(vec![
                    "error", "WARNING", "warn", "info", "Debug", "trace", "critical", "fatal",
                    "loud", ""
                ])
                .prop_map(|s| Json::Str(s.to_owned())),
                any_json(),
            ]),
            prop::option::of(prop_oneof![3 => odd_string(), 1 => any_json()]),
            prop::collection::vec((field_name(), any_json()), 0..3),
        )
            .prop_map(|(level, message, mut fields)| {
                if let Some(l) = level {
                    fields.insert(0, field("level", l));
                }
                if let Some(m) = message {
                    fields.push(field("message", m));
                }
                let mut out = String::new();
                render_object(&fields, &mut out);
                out
            }),
        (
            prop::sample::select(vec!["E!", "W!", "I!", "D!", "T!", "X!", "", "e!"]),
            prop::sample::select(vec!["", " ", "  "]),
            any::<String>()
        )
            .prop_map(|(prefix, space, text)| format!("{prefix}{space}{text}")),
    ];
    check(
        cases,
        (record, byte_change()).prop_map(|(r, c)| apply_byte_change(r, c)),
        |bytes| {
            let text = String::from_utf8_lossy(&bytes);
            let record = parse_log_line(&text);
            let line = text.trim_end_matches(['\n', '\r']);
            // The message is the line, or a part of it, or the JSON record's decoded `message`.
            if record.fields.is_empty() && !line.starts_with('{') {
                prop_assert!(line.ends_with(&record.message), "{:?}", record);
            }
            prop_assert!(!record.fields.contains_key("message"));
            prop_assert!(!record.fields.contains_key("level"));
            Ok(())
        },
    );
}

/// What the SDKs write, the daemon reads back as it was: any message at any level.
fn log_round_trip(cases: u32) {
    let level = prop::sample::select(vec![
        Level::Error,
        Level::Warn,
        Level::Info,
        Level::Debug,
        Level::Trace,
    ]);
    let message = prop_oneof![
        any::<String>(),
        "[\\x00-\\x1f{}\"!EWIDT ]{0,12}",
        (any::<String>(), any::<String>()).prop_map(|(a, b)| format!("{a}\n{b}")),
    ];
    check(cases, (level, message), |(level, message)| {
        let line = format_log_line(level, &message);
        prop_assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let record = parse_log_line(&line);
        prop_assert_eq!((record.level, record.message.as_str()), (level, &*message));
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Fixed cases at the limits.

#[test]
fn fuzz_fixed_deep_nesting_is_an_error_not_a_stack_overflow() {
    for n in [127, 128, 129, 10_000, 1_000_000] {
        for objects in [false, true] {
            let mut inner = String::new();
            Json::Deep(n, objects).render(&mut inner);
            let line = format!(r#"{{"type":"fatal","error":"x","extra":{inner}}}"#);
            match decode_plugin_line(line.as_bytes()) {
                Ok(msg) => assert!(n < 128, "{n} levels decoded: {msg:?}"),
                Err(e) => check_error(line.as_bytes(), &e).expect("a clean error"),
            }
            let err = decode_plugin_line(inner.as_bytes()).expect_err("not a message");
            check_error(inner.as_bytes(), &err).expect("a clean error");
            let record = parse_log_line(&inner);
            assert_eq!(record.message, inner, "deep JSON on stderr is plain text");
        }
    }
}

#[test]
fn fuzz_fixed_every_cut_of_every_message_type() {
    let lines = [
        r#"{"type":"register","protocol":1,"subscriptions":[{"name":"s","event_types":["Shotgun_*_Change"],"attributes":["sg_status_list"],"entity_types":["Task"],"project_ids":[1,-2],"skip_transient":true}],"max_in_flight":4,"alerts":["a@b"]}"#,
        r#"{"type":"ack","event_id":9223372036854775807}"#,
        r#"{"type":"nack","event_id":-1,"error":"é\u0000\ud83d\ude00","retry_after_ms":18446744073709551615}"#,
        r#"{"type":"term","event_id":0,"error":""}"#,
        r#"{"type":"progress","event_id":1}"#,
        r#"{"type":"fatal","error":"boom"}"#,
        r#"{"type":"pong","nonce":0}"#,
    ];
    for line in lines {
        let full = decode_plugin_line(line.as_bytes()).expect("a valid message");
        let bytes = line.as_bytes();
        for cut in 0..bytes.len() {
            let part = &bytes[..cut];
            match decode_plugin_line(part) {
                Ok(msg) => panic!("{cut} bytes of {line} decoded as {msg:?} (full: {full:?})"),
                Err(e) => check_error(part, &e).expect("a clean error"),
            }
        }
        for tail in ["\n", "\r\n", " \t\r\n"] {
            let with = format!("{line}{tail}");
            assert_eq!(
                decode_plugin_line(with.as_bytes()),
                Ok(full.clone()),
                "{with:?}"
            );
        }
    }
}

#[test]
fn fuzz_fixed_numbers_out_of_range_are_bad_fields() {
    // Too large for any number serde_json holds: not JSON it can read.
    for n in ["1e400", "-1e400"] {
        let line = format!(r#"{{"type":"ack","event_id":{n}}}"#);
        let err = decode_plugin_line(line.as_bytes()).expect_err(&line);
        assert!(matches!(err, DecodeError::NotJson(_)), "{line}: {err:?}");
        check_error(line.as_bytes(), &err).expect("a clean error");
    }
    for n in [
        "18446744073709551616",
        "9223372036854775808",
        "-9223372036854775809",
        "1.0",
        "-0.0",
        // serde_json reads `-0` as the float -0.0, not the integer 0.
        "-0",
    ] {
        let line = format!(r#"{{"type":"ack","event_id":{n}}}"#);
        let err = decode_plugin_line(line.as_bytes()).expect_err(&line);
        assert!(
            matches!(&err, DecodeError::BadFields { kind, .. } if kind == "ack"),
            "{line}: {err:?}"
        );
    }
}

/// A line one byte over the protocol's limit is consumed and reported without being held; one at
/// the limit is returned whole. The input is generated as it is read, so the test itself holds
/// only what the reader holds.
#[test]
fn fuzz_fixed_line_over_the_protocol_limit_is_never_held() {
    let max = DEFAULT_MAX_LINE_BYTES;
    let input = std::io::repeat(b'x')
        .take(max as u64 + 1)
        .chain(&b"\n"[..])
        .chain(std::io::repeat(b'y').take(max as u64))
        .chain(&b"\n{\"type\":\"pong\",\"nonce\":1}\n"[..]);
    let mut reader = LineReader::new(BufReader::with_capacity(64 * 1024, input), max);
    let mut buf = Vec::new();
    assert_eq!(
        reader.read(&mut buf).expect("read"),
        ReadLine::TooLong { len: max + 1 }
    );
    assert!(buf.is_empty());
    assert!(buf.capacity() <= 2 * max, "held {} bytes", buf.capacity());
    assert_eq!(reader.read(&mut buf).expect("read"), ReadLine::Line);
    assert_eq!(buf.len(), max);
    assert!(buf.capacity() <= 2 * max, "held {} bytes", buf.capacity());
    assert_eq!(reader.read(&mut buf).expect("read"), ReadLine::Line);
    assert_eq!(
        decode_plugin_line(&buf),
        Ok(PluginMessage::Pong { nonce: 1 }),
        "the reader stayed in step"
    );
    assert_eq!(reader.read(&mut buf).expect("read"), ReadLine::Eof);
}

/// Found by `fuzz_decode_daemon_line`: serde_json's default float parser may be one unit in the
/// last place off, so an event's float (a `meta` value, an extra field) changed on its way from the
/// site to a plugin. The workspace enables serde_json's `float_roundtrip`, which reads every float
/// exactly.
#[test]
fn fuzz_regression_floats_pass_through_unchanged() {
    for f in [
        4.272_614_280_710_507_4e178_f64,
        -2.379_203_033_455_266_7e-231,
        1.215_665_921_024_414_9e232,
        0.1,
        f64::MAX,
        f64::MIN_POSITIVE,
        5e-324,
    ] {
        // As Rust prints it (all digits, no exponent) and as serde_json writes it.
        for text in [format!("{f}"), serde_json::to_string(&f).expect("a number")] {
            let line = format!(
                r#"{{"type":"event","event_id":1,"attempt":1,"subscriptions":[],"deadline_ms":1,"event":{{"id":1,"meta":{{"v":{text}}},"x":[{text}]}}}}"#
            );
            let msg = decode_daemon_line(line.as_bytes()).expect("an event");
            let sgevents_protocol::DaemonMessage::Event(delivery) = &msg else {
                panic!("{msg:?}");
            };
            assert_eq!(delivery.event.meta["v"].as_f64(), Some(f), "{text}");
            assert_eq!(delivery.event.extra["x"][0].as_f64(), Some(f), "{text}");
            assert_eq!(
                decode_daemon_line(encode(&msg).as_bytes()),
                Ok(msg.clone()),
                "{text}"
            );
        }
    }
}

/// Found by probing what `fuzz_jsonl_line` checks: an event whose `meta` (or an extra field, or a
/// key of a link) nested 126 levels deep was read (the event alone was within serde_json's
/// recursion limit of 128) and journaled, but the `event` message around it was not: no Rust
/// plugin could decode the line, every time it was sent. Events now refuse fields nested deeper
/// than `MAX_FIELD_DEPTH`, so a source skips such an event as unreadable, and everything it
/// accepts reaches plugins.
#[test]
fn fuzz_regression_an_event_too_deep_for_the_wire_is_refused() {
    for n in 0..200 {
        let mut deep = String::new();
        Json::Deep(n, n % 2 == 0).render(&mut deep);
        for event in [
            format!(r#"{{"id":1,"meta":{deep}}}"#),
            format!(r#"{{"id":1,"custom":{deep}}}"#),
            format!(r#"{{"id":1,"entity":{{"type":"Task","id":2,"x":{deep}}}}}"#),
        ] {
            let Ok(parsed) = serde_json::from_str::<sgevents_protocol::Event>(&event) else {
                continue;
            };
            let body = serde_json::to_string(&parsed).expect("an event serializes");
            let line = sgevents_protocol::encode_event_raw(1, 1, &["s"], 1000, &body);
            match decode_daemon_line(line.as_bytes()) {
                Ok(sgevents_protocol::DaemonMessage::Event(delivery)) => {
                    assert_eq!(delivery.event, parsed, "{n} levels")
                }
                other => panic!("{n} levels: read, but its event line is not: {other:?}"),
            }
        }
    }
}
