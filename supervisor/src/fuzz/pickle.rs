//! The `migrate` reader of the incumbent's id file: the restricted unpickler ([`pickle::load`])
//! and the layout check on top of it ([`state::parse_id_file`]).
//!
//! Values of the id file's shape (`{folder: {plugin: (last id, {event id: datetime})}}`, and other
//! values an unpickler meets) are pickled here as Python does it, in the styles of protocol 0
//! (text opcodes, `_codecs.encode` for bytes), 2 (binary, memo puts) and 4 (frames, `MEMOIZE`,
//! `STACK_GLOBAL`), then damaged: a byte flipped, the data cut, an opcode that would run code
//! inserted between two others, values nested far past the depth bound. A pickle left whole reads
//! back as the value it was made from; a damaged one is refused with an error, and one that asks
//! for code is refused as such.

use std::path::Path;

use proptest::prelude::*;
use proptest::sample::Index;

use super::check;
use crate::migrate::pickle::{self, DateTime, PickleError, Value};
use crate::migrate::state;

fuzz_tests! {
    fuzz_pickle_round_trip, fuzz_pickle_round_trip_long => round_trips;
    fuzz_pickle_damaged, fuzz_pickle_damaged_long => damaged_pickles;
}

/// How a value is pickled: as Python's protocols 0, 2 and 4 write it.
#[derive(Debug, Clone, Copy)]
enum Style {
    Text,
    Binary,
    Framed,
}

/// A pickle as its opcodes, each with its arguments, so that damage can go between two of them.
struct Writer {
    style: Style,
    ops: Vec<Vec<u8>>,
    memo: u32,
}

impl Writer {
    fn op(&mut self, bytes: impl Into<Vec<u8>>) {
        self.ops.push(bytes.into());
    }

    /// Memoizes the value on top of the stack, as the pickler does for strings, dicts, tuples.
    fn memoize(&mut self) {
        let n = self.memo;
        self.memo += 1;
        match self.style {
            Style::Text => self.op(format!("p{n}\n")),
            Style::Binary if n < 256 => self.op([b'q', n as u8]),
            Style::Binary => {
                let mut op = vec![b'r'];
                op.extend_from_slice(&n.to_le_bytes());
                self.op(op);
            }
            Style::Framed => self.op([0x94]),
        }
    }

    fn text(&mut self, s: &str) {
        match self.style {
            Style::Text => {
                // raw-unicode-escape, with the characters Python escapes in protocol 0.
                let mut op = vec![b'V'];
                for c in s.chars() {
                    match c {
                        '\\' | '\n' | '\r' | '\0' | '\u{1a}' => {
                            op.extend_from_slice(format!("\\u{:04x}", u32::from(c)).as_bytes());
                        }
                        c if u32::from(c) < 256 => op.push(u32::from(c) as u8),
                        c if u32::from(c) < 0x10000 => {
                            op.extend_from_slice(format!("\\u{:04x}", u32::from(c)).as_bytes());
                        }
                        c => op.extend_from_slice(format!("\\U{:08x}", u32::from(c)).as_bytes()),
                    }
                }
                op.push(b'\n');
                self.op(op);
            }
            Style::Framed if s.len() < 256 => {
                let mut op = vec![0x8c, s.len() as u8];
                op.extend_from_slice(s.as_bytes());
                self.op(op);
            }
            Style::Binary | Style::Framed => {
                let mut op = vec![b'X'];
                op.extend_from_slice(&(s.len() as u32).to_le_bytes());
                op.extend_from_slice(s.as_bytes());
                self.op(op);
            }
        }
        self.memoize();
    }

    fn global(&mut self, module: &str, name: &str) {
        match self.style {
            Style::Framed => {
                self.text(module);
                self.text(name);
                self.op([0x93]);
            }
            _ => self.op(format!("c{module}\n{name}\n")),
        }
        self.memoize();
    }

    fn bytes(&mut self, b: &[u8]) {
        match self.style {
            // Python 3's protocols before 3 spell bytes as `_codecs.encode(text, "latin1")`.
            Style::Text | Style::Binary => {
                self.global("_codecs", "encode");
                let latin1: String = b.iter().map(|&c| char::from(c)).collect();
                if matches!(self.style, Style::Text) {
                    self.op("(");
                    self.text(&latin1);
                    self.text("latin1");
                    self.op("t");
                } else {
                    self.text(&latin1);
                    self.text("latin1");
                    self.op([0x86]);
                }
                self.op("R");
                self.memoize();
            }
            Style::Framed => {
                let mut op = vec![b'C', b.len() as u8];
                op.extend_from_slice(b);
                self.op(op);
                self.memoize();
            }
        }
    }

    fn int(&mut self, n: i64) {
        match self.style {
            Style::Text if n % 2 == 0 => self.op(format!("I{n}\n")),
            Style::Text => self.op(format!("L{n}L\n")),
            _ if (0..256).contains(&n) => self.op([b'K', n as u8]),
            _ if (0..65536).contains(&n) => {
                let mut op = vec![b'M'];
                op.extend_from_slice(&(n as u16).to_le_bytes());
                self.op(op);
            }
            _ if i32::try_from(n).is_ok() => {
                let mut op = vec![b'J'];
                op.extend_from_slice(&(n as i32).to_le_bytes());
                self.op(op);
            }
            _ => {
                // LONG1: little-endian two's complement, as short as the sign allows.
                let mut bytes = n.to_le_bytes().to_vec();
                while bytes.len() > 1 {
                    let last = bytes[bytes.len() - 1];
                    let next = bytes[bytes.len() - 2];
                    if (last == 0 && next & 0x80 == 0) || (last == 0xff && next & 0x80 != 0) {
                        bytes.pop();
                    } else {
                        break;
                    }
                }
                let mut op = vec![0x8a, bytes.len() as u8];
                op.extend_from_slice(&bytes);
                self.op(op);
            }
        }
    }

    fn value(&mut self, v: &Value) {
        match v {
            Value::None => self.op("N"),
            Value::Bool(b) => match self.style {
                Style::Text => self.op(if *b { "I01\n" } else { "I00\n" }),
                _ => self.op([if *b { 0x88 } else { 0x89 }]),
            },
            Value::Int(n) => self.int(*n),
            Value::Str(s) => self.text(s),
            Value::Bytes(b) => self.bytes(b),
            Value::Tuple(items) => {
                match (self.style, items.len()) {
                    (Style::Binary | Style::Framed, 0) => self.op(")"),
                    (Style::Binary | Style::Framed, n @ 1..=3) => {
                        for item in items {
                            self.value(item);
                        }
                        self.op([0x84 + n as u8]);
                    }
                    _ => {
                        self.op("(");
                        for item in items {
                            self.value(item);
                        }
                        self.op("t");
                    }
                }
                self.memoize();
            }
            Value::Dict(entries) => {
                match self.style {
                    Style::Text => self.op("(d"),
                    _ => self.op("}"),
                }
                self.memoize();
                match self.style {
                    Style::Text => {
                        for (k, v) in entries {
                            self.value(k);
                            self.value(v);
                            self.op("s");
                        }
                    }
                    _ if entries.is_empty() => {}
                    _ => {
                        self.op("(");
                        for (k, v) in entries {
                            self.value(k);
                            self.value(v);
                        }
                        self.op("u");
                    }
                }
            }
            Value::DateTime(d) => {
                let state = [
                    (d.year >> 8) as u8,
                    d.year as u8,
                    d.month,
                    d.day,
                    d.hour,
                    d.minute,
                    d.second,
                    (d.microsecond >> 16) as u8,
                    (d.microsecond >> 8) as u8,
                    d.microsecond as u8,
                ];
                self.global("datetime", "datetime");
                self.bytes(&state);
                self.op([0x85]);
                self.op("R");
                self.memoize();
            }
        }
    }
}

/// `value` pickled in `style`, as its opcodes (the protocol header first, `STOP` last).
fn pickled(value: &Value, style: Style) -> Vec<Vec<u8>> {
    let mut w = Writer {
        style,
        ops: Vec::new(),
        memo: 0,
    };
    w.value(value);
    w.op(".");
    let mut ops = match style {
        Style::Text => vec![],
        Style::Binary => vec![vec![0x80, 2]],
        Style::Framed => {
            let len: usize = w.ops.iter().map(Vec::len).sum();
            let mut frame = vec![0x95];
            frame.extend_from_slice(&(len as u64).to_le_bytes());
            vec![vec![0x80, 4], frame]
        }
    };
    ops.extend(w.ops);
    ops
}

fn date() -> impl Strategy<Value = Value> {
    (
        1u16..=9999,
        1u8..=12,
        1u8..=31,
        0u8..24,
        0u8..60,
        0u8..60,
        0u32..1_000_000,
    )
        .prop_map(|(year, month, day, hour, minute, second, microsecond)| {
            Value::DateTime(DateTime {
                year,
                month,
                day,
                hour,
                minute,
                second,
                microsecond,
            })
        })
}

/// The id file's layout: `{folder: {plugin: (last id | None, {event id: datetime})}}`, with the
/// older entries it may hold (a bare last id, None).
fn id_file() -> impl Strategy<Value = Value> {
    let state = prop_oneof![
        4 => (
            prop_oneof![any::<i64>().prop_map(Value::Int), Just(Value::None)],
            prop::collection::vec((any::<i64>().prop_map(Value::Int), date()), 0..4),
        )
            .prop_map(|(last, backlog)| Value::Tuple(vec![last, Value::Dict(backlog)])),
        1 => any::<i64>().prop_map(Value::Int),
        1 => Just(Value::None),
    ];
    let plugins = prop::collection::vec((any::<String>().prop_map(Value::Str), state), 0..4)
        .prop_map(Value::Dict);
    prop::collection::vec(
        (
            any::<String>().prop_map(Value::Str),
            prop_oneof![4 => plugins, 1 => Just(Value::None)],
        ),
        0..3,
    )
    .prop_map(Value::Dict)
}

/// Any value the unpickler builds, a few levels deep.
fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::None),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        prop::sample::select(vec![0i64, 255, 256, 65535, 65536, -1, i64::MIN, i64::MAX])
            .prop_map(Value::Int),
        any::<String>().prop_map(Value::Str),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bytes),
        date(),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Tuple),
            prop::collection::vec((inner.clone(), inner), 0..4).prop_map(Value::Dict),
        ]
    })
}

fn style() -> impl Strategy<Value = Style> {
    prop::sample::select(vec![Style::Text, Style::Binary, Style::Framed])
}

fn round_trips(cases: u32) {
    let value = prop_oneof![id_file(), any_value()];
    check(cases, (value, style()), |(value, style)| {
        let data = pickled(&value, style).concat();
        match pickle::load(&data) {
            Ok(read) => prop_assert_eq!(read, value),
            Err(e) => prop_assert!(false, "refused: {e}"),
        }
        if let Err(e) = state::parse_id_file(Path::new("sged.id"), &data) {
            let message = e.to_string();
            prop_assert!(message.contains("\nhint: "), "{message}");
        }
        Ok(())
    });
}

/// What is done to a whole pickle.
#[derive(Debug, Clone)]
enum Damage {
    /// The byte at the index replaced.
    Flip(Index, u8),
    /// Cut at the index.
    Cut(Index),
    /// Opcodes that ask for code, between two opcodes before `STOP`.
    Code(Index, &'static [u8]),
    /// Opcodes an id file never holds (floats, lists, sets...), between two opcodes.
    Foreign(Index, &'static [u8]),
    /// `n` nested tuples or dicts (or marks) between two opcodes.
    Deep(Index, usize, u8),
    /// Random bytes between two opcodes.
    Insert(Index, Vec<u8>),
}

/// Opcodes, with their arguments, that Python would use to run code.
const CODE: &[&[u8]] = &[
    b"cos\nsystem\n",
    b"cbuiltins\neval\n",
    b"c__builtin__\nexec\n",
    b"cdatetime\ntimedelta\n",
    b"csubprocess\nPopen\n",
    b"\x8c\x08builtins\x8c\x04eval\x93",
    b"\x8c\x02os\x8c\x06system\x93",
    b"(ios\nsystem\n",
    b"(o",
    b"b",
    b"\x82\x01",
    b"\x83\x01\x00",
    b"\x84\x01\x00\x00\x00",
    b"Pid\n",
    b"Q",
    b"\x92",
];

/// Opcodes that cannot run code but build what an id file never holds.
const FOREIGN: &[&[u8]] = &[
    b"F1.5\n",
    b"G\x3f\xf8\x00\x00\x00\x00\x00\x00",
    b"]",
    b"(l",
    b"\x8f",
    b"\x96",
    b"\x97",
];

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        3 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Damage::Flip(i, b)),
        2 => any::<Index>().prop_map(Damage::Cut),
        2 => (any::<Index>(), prop::sample::select(CODE)).prop_map(|(i, c)| Damage::Code(i, c)),
        1 => (any::<Index>(), prop::sample::select(FOREIGN))
            .prop_map(|(i, c)| Damage::Foreign(i, c)),
        1 => (any::<Index>(), 1usize..5_000, prop::sample::select(vec![b'(', b')', b'}', 0x85]))
            .prop_map(|(i, n, op)| Damage::Deep(i, n, op)),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Damage::Insert(i, b)),
    ]
}

/// `n` levels of nesting made with `op`: tuples (`)` then `TUPLE1`s), dicts (`}` and `SETITEM`s
/// under keys), or bare marks and empty tuples.
fn deep(n: usize, op: u8) -> Vec<u8> {
    match op {
        0x85 => [&b")"[..], &vec![0x85; n]].concat(),
        b'}' => {
            let mut out = b"}".to_vec();
            for _ in 0..n {
                out.extend_from_slice(b"}K\x01");
            }
            for _ in 0..n {
                // Each dict goes into the one below it: d[1] = inner.
                out.extend_from_slice(b"s");
            }
            out
        }
        op => vec![op; n],
    }
}

fn damaged_pickles(cases: u32) {
    let value = prop_oneof![3 => id_file(), 1 => any_value()];
    check(
        cases,
        (value, style(), damage()),
        |(value, style, damage)| {
            let mut ops = pickled(&value, style);
            // Between two opcodes, before STOP (the last one), so that it is run.
            let before_stop = |i: &Index, ops: &Vec<Vec<u8>>| i.index(ops.len());
            let code = matches!(damage, Damage::Code(..));
            match &damage {
                Damage::Flip(i, b) => {
                    let mut data = ops.concat();
                    let at = i.index(data.len());
                    data[at] = *b;
                    ops = vec![data];
                }
                Damage::Cut(i) => {
                    let mut data = ops.concat();
                    data.truncate(i.index(data.len()));
                    ops = vec![data];
                }
                Damage::Code(i, bytes) | Damage::Foreign(i, bytes) => {
                    let at = before_stop(i, &ops);
                    ops.insert(at, bytes.to_vec());
                }
                Damage::Deep(i, n, op) => {
                    let at = before_stop(i, &ops);
                    ops.insert(at, deep(*n, *op));
                }
                Damage::Insert(i, bytes) => {
                    let at = before_stop(i, &ops);
                    ops.insert(at, bytes.clone());
                }
            }
            let data = ops.concat();
            match pickle::load(&data) {
                Ok(read) => prop_assert!(!code, "code was not refused: {read:?}"),
                Err(e) => {
                    let message = e.to_string();
                    prop_assert!(message.starts_with(|c: char| c.is_lowercase()), "{message}");
                    if code {
                        // Damage in a framed pickle's length may stop it first; nothing else may.
                        prop_assert!(
                            matches!(e, PickleError::RunsCode { .. }),
                            "code refused as something else: {message}"
                        );
                    }
                }
            }
            if let Err(e) = state::parse_id_file(Path::new("sged.id"), &data) {
                let message = e.to_string();
                prop_assert!(message.contains("\nhint: "), "{message}");
            }
            Ok(())
        },
    );
}

/// Nesting past the bound, as tuples, dicts and marks, a million levels deep: refused as too
/// deep or damaged, never a stack overflow, within the size limits.
#[test]
fn fuzz_fixed_pickle_deep_nesting() {
    for n in [31, 32, 33, 1_000, 1_000_000] {
        // (`)` alone is not nesting: n empty tuples side by side, which is fine.)
        for op in [0x85, b'}', b'('] {
            for style in [[0x80u8, 2], [0x80, 4]] {
                let data = [&style[..], &deep(n, op), b"."].concat();
                if let Err(e) = pickle::load(&data) {
                    let message = e.to_string();
                    assert!(message.starts_with(|c: char| c.is_lowercase()), "{message}");
                } else {
                    assert!(n <= 32, "{n} levels of {op:#x} accepted");
                }
            }
        }
    }
}

/// The peak memory of this process so far (`VmHWM`), in bytes.
fn peak_memory() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a number");
    kib * 1024
}

/// Found while bounding the unpickler's memory: dicts that each hold the one below twice, 30
/// levels deep, are a 396-byte file whose values, counted each time they are shared, stopped only
/// at the 16,777,216-value limit: `sgevents migrate` built 1.1 GB of values (and took 10 s in a
/// debug build) before refusing it. The limit is now 1,048,576 values, a thousand times what an
/// id file holds, and the same file is refused within tens of megabytes.
#[test]
fn fuzz_regression_a_small_pickle_cannot_take_a_gigabyte() {
    let mut bomb = b"\x80\x02}q\x00".to_vec();
    for level in 1..=30u8 {
        bomb.extend_from_slice(&[b'}', b'q', level]);
        bomb.extend_from_slice(&[
            b'(',
            b'K',
            1,
            b'h',
            level - 1,
            b'K',
            2,
            b'h',
            level - 1,
            b'u',
        ]);
    }
    bomb.push(b'.');
    let before = peak_memory();
    let err = pickle::load(&bomb).expect_err("refused");
    let grew = peak_memory().saturating_sub(before);
    assert!(err.to_string().contains("too many values"), "{err}");
    // Other tests run in parallel: the margin is wide, the fault was 1.1 GB.
    assert!(
        grew < 400 << 20,
        "reading {} bytes took {grew} bytes",
        bomb.len()
    );
}
