//! Fuzzing the daemon's readers of bytes that come from outside it, with generated input: the
//! JSON-lines source's line parser and the journal row made of it (`events`), the ShotGrid REST
//! answer parser (`shotgrid`), the control socket's requests (`control`), the configuration loader
//! (`config`), and the `migrate` readers: the incumbent's INI file (`ini`) and its pickled id file
//! (`pickle`). The plugin protocol's decoders are fuzzed in `protocol/tests/fuzz.rs`.
//!
//! The generators are structure-aware: they start from valid input of each format (events, JSON:API
//! answers, requests, configurations, INI files, pickles of the incumbent's state) and change one
//! thing (a value of the wrong type, a field dropped, duplicated or unknown, a number past every
//! integer limit, nesting thousands of levels deep, odd bytes), then damage the bytes (cut, not
//! UTF-8, NUL, CRLF). The properties: nothing panics or overflows the stack; an error is a message
//! with a hint where the parser's own messages have one; what is accepted satisfies the parser's
//! invariants (it round-trips, or what it produces parses again); documented limits hold.
//!
//! Each property runs 2,000 cases in the normal suite (`SGEVENTS_FUZZ_CASES` overrides it), and
//! 100,000 in its ignored twin: `cargo test --workspace -- --ignored fuzz` (BENCHMARKS.md,
//! "Fuzzing"). Failures are not persisted to files: proptest prints the shrunk input.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// A property as two tests: `$normal` with [`NORMAL_CASES`], `$long` (ignored) with
/// [`LONG_CASES`].
macro_rules! fuzz_tests {
    ($($normal:ident, $long:ident => $property:ident;)*) => {$(
        #[test]
        fn $normal() {
            $property($crate::fuzz::cases($crate::fuzz::NORMAL_CASES));
        }

        #[test]
        #[ignore = "long fuzz run: cargo test --workspace -- --ignored fuzz"]
        fn $long() {
            $property($crate::fuzz::cases($crate::fuzz::LONG_CASES));
        }
    )*};
}

mod config;
mod control;
mod events;
mod ini;
mod pickle;
mod shotgrid;

/// Cases per property in the normal suite.
pub(crate) const NORMAL_CASES: u32 = 2_000;
/// Cases per property in the long run (the ignored twins).
pub(crate) const LONG_CASES: u32 = 100_000;

/// `default`, unless `SGEVENTS_FUZZ_CASES` says otherwise.
pub(crate) fn cases(default: u32) -> u32 {
    std::env::var("SGEVENTS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `test` on `cases` inputs of `strategy`, with no failure files written.
pub(crate) fn check<S: Strategy>(
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

/// An error message as the daemon's own are written: not empty, lowercase first, a hint line.
pub(crate) fn check_message(text: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        text.starts_with(|c: char| c.is_lowercase() || c == '`' || c == '/'),
        "error not lowercase: {text}"
    );
    prop_assert!(text.contains("\nhint: "), "error without a hint: {text}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// JSON as text, so that it can hold what no `serde_json::Value` can.

/// A JSON value to render as text.
#[derive(Debug, Clone)]
pub(crate) enum Json {
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
    pub(crate) fn render(&self, out: &mut String) {
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

    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        self.render(&mut out);
        out
    }
}

pub(crate) fn render_object(fields: &[(String, Json)], out: &mut String) {
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

pub(crate) fn num(n: impl ToString) -> Json {
    Json::Num(n.to_string())
}

pub(crate) fn field(name: &str, value: Json) -> (String, Json) {
    (name.to_owned(), value)
}

/// Numbers at and past every edge: the integer types' limits, what overflows them, floats where
/// integers are expected, and literals that are not JSON at all.
pub(crate) fn odd_number() -> impl Strategy<Value = Json> {
    prop_oneof![
        any::<i64>().prop_map(num),
        any::<u64>().prop_map(num),
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
            "-1",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775809",
            "18446744073709551616",
            "123456789012345678901234567890123456789",
            "01",
            "+1",
            ".5",
            "NaN",
            "Infinity",
            "0x10",
        ])
        .prop_map(|s| Json::Num(s.to_owned())),
    ]
}

/// Strings: anything Unicode, control characters and NULs, very long ones, and raw escapes that
/// are not valid (lone surrogates, short `\u`).
pub(crate) fn odd_string() -> impl Strategy<Value = Json> {
    prop_oneof![
        16 => any::<String>().prop_map(Json::Str),
        4 => "[\\x00-\\x1f\\x7f\"\\\\ a]{0,8}".prop_map(Json::Str),
        // Rare, since an input holds many strings: each costs time in every parse.
        1 => (1usize..100_000, any::<char>()).prop_map(|(n, c)| Json::Str(c.to_string().repeat(n))),
        4 => prop::sample::select(vec![
            "\\ud800", "\\udc00", "\\ud800\\u0041", "\\u00", "\\u0000", "\\x41", "\\",
            "\\uD83D\\uDE00", "\\uzzzz",
        ])
        .prop_map(|s| Json::RawStr(s.to_owned())),
    ]
}

/// Any JSON value, odd scalars included, nested a little; or nested very deeply.
pub(crate) fn any_json() -> BoxedStrategy<Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        odd_number(),
        odd_string(),
    ];
    let tree = leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Json::Arr),
            prop::collection::vec((any::<String>(), inner), 0..3).prop_map(Json::Obj),
        ]
    });
    prop_oneof![
        24 => tree,
        1 => (
            // Anywhere up to 20,000 levels, and often at the limits (64 for an event's field,
            // 128 for serde_json).
            prop_oneof![0usize..20_000, 60usize..70, 120usize..132],
            any::<bool>()
        )
            .prop_map(|(n, o)| Json::Deep(n, o)),
    ]
    .boxed()
}

/// A field name: one of `known` (so a duplicate or a wrong type hits a real field), or any.
pub(crate) fn field_name(known: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(known).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
    .boxed()
}

/// The fields of an object.
pub(crate) type Fields = Vec<(String, Json)>;

/// One thing wrong with an object's fields.
#[derive(Debug, Clone)]
pub(crate) enum FieldChange {
    None,
    /// Field `index % len` gets this value instead (most often of the wrong type).
    Replace(usize, Json),
    Drop(usize),
    Duplicate(usize, Json),
    Add(String, Json),
    /// The whole object is this value instead.
    Whole(Json),
}

pub(crate) fn field_change(known: &'static [&'static str]) -> impl Strategy<Value = FieldChange> {
    prop_oneof![
        3 => Just(FieldChange::None),
        4 => (any::<usize>(), any_json()).prop_map(|(i, v)| FieldChange::Replace(i, v)),
        1 => any::<usize>().prop_map(FieldChange::Drop),
        1 => (any::<usize>(), any_json()).prop_map(|(i, v)| FieldChange::Duplicate(i, v)),
        2 => (field_name(known), any_json()).prop_map(|(k, v)| FieldChange::Add(k, v)),
        1 => any_json().prop_map(FieldChange::Whole),
    ]
}

/// `fields` with `change` applied, as a JSON value.
pub(crate) fn apply_field_change(mut fields: Fields, change: FieldChange) -> Json {
    let len = fields.len();
    match change {
        FieldChange::None => {}
        FieldChange::Replace(..) | FieldChange::Drop(_) | FieldChange::Duplicate(..)
            if len == 0 => {}
        FieldChange::Replace(i, v) => fields[i % len].1 = v,
        FieldChange::Drop(i) => {
            fields.remove(i % len);
        }
        FieldChange::Duplicate(i, v) => {
            let name = fields[i % len].0.clone();
            fields.push((name, v));
        }
        FieldChange::Add(k, v) => fields.insert(len / 2, (k, v)),
        FieldChange::Whole(v) => return v,
    }
    Json::Obj(fields)
}

/// What happens to a line's bytes on the way.
#[derive(Debug, Clone)]
pub(crate) enum ByteChange {
    None,
    /// Cut at `index % (len + 1)`.
    Cut(usize),
    /// This byte inserted at `index % (len + 1)`.
    Insert(usize, u8),
    /// The byte at `index % len` replaced.
    Replace(usize, u8),
    /// These bytes appended (newlines, CRLF, spaces, NULs, garbage after the value).
    Append(Vec<u8>),
    /// A UTF-8 byte order mark before.
    Bom,
}

pub(crate) fn odd_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        prop::sample::select(vec![
            0x00, 0xff, 0xfe, 0xc3, 0x80, 0xed, 0xa0, 0xf4, 0x90, b'\r', b'\n', b'"', b'\\', b'{',
            b'}', b'[', b']', b',', b':', b' ', b'=', b'#', b'\'',
        ]),
        any::<u8>(),
    ]
}

pub(crate) fn byte_change() -> impl Strategy<Value = ByteChange> {
    prop_oneof![
        5 => Just(ByteChange::None),
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

pub(crate) fn apply_byte_change(text: String, change: ByteChange) -> Vec<u8> {
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

/// Bytes made from valid `objects` with one field changed and the bytes damaged; sometimes just
/// random bytes.
pub(crate) fn damaged(
    objects: BoxedStrategy<Fields>,
    known: &'static [&'static str],
) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        12 => (objects, field_change(known), byte_change())
            .prop_map(|(f, fc, bc)| apply_byte_change(apply_field_change(f, fc).text(), bc)),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
    .boxed()
}
