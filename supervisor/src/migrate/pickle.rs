//! A restricted unpickler for the incumbent's id file, written so that reading it can never run
//! code.
//!
//! A pickle is a program for a small stack machine, and several of its instructions import and call
//! arbitrary Python objects: `GLOBAL`/`STACK_GLOBAL` name any function or class, `REDUCE` calls it,
//! `INST`, `OBJ` and `NEWOBJ` build objects, `BUILD` sets their state, the extension opcodes fetch
//! registered constructors. Python's own `pickle.load` on a file someone could write therefore runs
//! their code (the incumbent's id file is created mode 0666 by its daemon mode). This machine
//! implements only what the id file's layout needs, for protocols 0 to 5:
//!
//! - values: `None`, booleans, integers (up to 64 bits), text, byte strings, tuples, dicts;
//! - `datetime.datetime`, and only through the exact constructs Python's pickler emits for it
//!   (`datetime datetime` applied to its 10-byte state, directly or via `_codecs.encode` for the
//!   protocols before 3, which had no bytes opcode);
//! - bookkeeping: `MARK`, `STOP`, `POP`, `POP_MARK`, `DUP`, the memo (`PUT`/`GET` and friends,
//!   `MEMOIZE`), `PROTO`, `FRAME`.
//!
//! Every other global, and every opcode that builds or mutates arbitrary objects, is refused with
//! an error naming it. Floats, lists and sets cannot run code but have no place in an id file, so
//! they are refused too. Sizes are bounded: the input, the stack, the memo, the number of values
//! and their nesting.
//!
//! Dicts live in an arena and are referred to by index, as Python refers to them by reference: the
//! pickler memoizes a dict before filling it, and a later `GET` must see it filled.

use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

/// The largest id file read, in bytes.
pub(crate) const MAX_INPUT: usize = 64 << 20;
/// The deepest nesting of tuples and dicts accepted.
pub(crate) const MAX_DEPTH: usize = 32;
/// The most values on the stack at once.
const MAX_STACK: usize = 1 << 20;
/// The most memo entries.
const MAX_MEMO: usize = 1 << 22;
/// The most values (dict entries count twice) in the whole result: a thousand times what an id
/// file holds, and about 70 MB while a file that shares values to blow past it is read and refused.
const MAX_VALUES: usize = 1 << 20;

/// Why a pickle was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PickleError {
    /// It asks for something that would run code in Python.
    #[error("a pickle file can run code; this one asks for {what} (byte {offset}); refusing")]
    RunsCode {
        /// What it asks for, in words (a global's dotted name in backticks, or an opcode).
        what: String,
        /// Where.
        offset: usize,
    },
    /// It is not a pickle of the id file's layout, or it is damaged.
    #[error("not a readable id file: {problem} (byte {offset})")]
    Invalid {
        /// What is wrong.
        problem: String,
        /// Where.
        offset: usize,
    },
    /// It is larger or deeper than any id file.
    #[error("{problem}; refusing")]
    TooLarge {
        /// Which limit.
        problem: String,
    },
}

/// A `datetime.datetime`, as its pickled state holds it (naive: the incumbent's backlog expiries
/// are local wall-clock times).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DateTime {
    pub(crate) year: u16,
    pub(crate) month: u8,
    pub(crate) day: u8,
    pub(crate) hour: u8,
    pub(crate) minute: u8,
    pub(crate) second: u8,
    pub(crate) microsecond: u32,
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.microsecond
        )
    }
}

/// A value read from a pickle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// Text (`str` in Python 3, `unicode` in Python 2).
    Str(String),
    /// Bytes (`bytes` in Python 3, `str` in Python 2).
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    /// Entries in the order they were set; a key set twice appears twice, the later one winning.
    Dict(Vec<(Value, Value)>),
    DateTime(DateTime),
}

impl Value {
    /// What kind of value this is, for error messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Str(_) => "a string",
            Value::Bytes(_) => "a byte string",
            Value::Tuple(_) => "a tuple",
            Value::Dict(_) => "a dict",
            Value::DateTime(_) => "a date",
        }
    }

    /// The integer this is (Python's booleans are integers).
    pub(crate) fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// The text this is: a string, or a Python 2 byte string read as UTF-8 (Latin-1 if it is not).
    pub(crate) fn as_text(&self) -> Option<String> {
        match self {
            Value::Str(s) => Some(s.clone()),
            Value::Bytes(b) => Some(match std::str::from_utf8(b) {
                Ok(s) => s.to_owned(),
                Err(_) => b.iter().map(|&c| char::from(c)).collect(),
            }),
            _ => None,
        }
    }
}

/// Reads one pickled value from `data`, refusing anything outside the id file's layout.
pub(crate) fn load(data: &[u8]) -> Result<Value, PickleError> {
    load_within(data, MAX_VALUES)
}

/// [`load`], with at most `budget` values in the result (shared values count each time).
fn load_within(data: &[u8], mut budget: usize) -> Result<Value, PickleError> {
    if data.len() > MAX_INPUT {
        return Err(PickleError::TooLarge {
            problem: format!(
                "the file is {} bytes, larger than any id file ({MAX_INPUT} bytes)",
                data.len()
            ),
        });
    }
    let mut machine = Machine {
        data,
        pos: 0,
        op_at: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        dicts: Vec::new(),
        entries: 0,
    };
    let top = machine.run()?;
    machine.export(&top, 0, &mut budget)
}

/// The two callables a legitimate id file names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Global {
    /// `datetime.datetime`.
    DateTime,
    /// `_codecs.encode`: how protocols 0 to 2 spell a `bytes` object (`encode(text, "latin1")`).
    CodecsEncode,
}

/// A value on the machine's stack. Cheap to clone: containers are shared.
#[derive(Debug, Clone)]
enum Obj {
    None,
    Bool(bool),
    Int(i64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    /// Items, and the nesting depth of tuples inside (bounded, so dropping never recurses deeply).
    Tuple(Rc<[Obj]>, usize),
    /// An index in the dict arena.
    Dict(usize),
    DateTime(DateTime),
    Global(Global),
}

impl Obj {
    fn kind(&self) -> &'static str {
        match self {
            Obj::None => "None",
            Obj::Bool(_) => "a boolean",
            Obj::Int(_) => "an integer",
            Obj::Str(_) => "a string",
            Obj::Bytes(_) => "a byte string",
            Obj::Tuple(..) => "a tuple",
            Obj::Dict(_) => "a dict",
            Obj::DateTime(_) => "a date",
            Obj::Global(_) => "a class or function",
        }
    }

    fn tuple_depth(&self) -> usize {
        match self {
            Obj::Tuple(_, depth) => *depth,
            _ => 0,
        }
    }
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    /// Where the opcode being run starts, for messages.
    op_at: usize,
    stack: Vec<Obj>,
    /// Stack lengths at each `MARK`.
    marks: Vec<usize>,
    memo: HashMap<u64, Obj>,
    dicts: Vec<Vec<(Obj, Obj)>>,
    /// Dict entries and tuple items created so far.
    entries: usize,
}

/// Opcodes that make Python build, call or change arbitrary objects.
fn code_opcode(op: u8) -> Option<&'static str> {
    Some(match op {
        b'i' => "INST, which creates an instance of any class",
        b'o' => "OBJ, which creates an instance of any class",
        b'b' => "BUILD, which sets an object's state (and can call its __setstate__)",
        0x82..=0x84 => "an EXT opcode, which fetches a registered constructor",
        b'P' | b'Q' => "a persistent id, which asks the loader to resolve an object",
        0x92 => "NEWOBJ_EX, which creates an instance of any class",
        _ => return None,
    })
}

/// Opcodes that cannot run code but build values an id file never holds.
fn foreign_opcode(op: u8) -> Option<&'static str> {
    Some(match op {
        b'F' | b'G' => "a float",
        b'l' | b']' | b'a' | b'e' => "a list",
        0x8f..=0x91 => "a set",
        0x96..=0x98 => "a buffer",
        _ => return None,
    })
}

impl Machine<'_> {
    fn invalid(&self, problem: impl Into<String>) -> PickleError {
        PickleError::Invalid {
            problem: problem.into(),
            offset: self.op_at,
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], PickleError> {
        if self.data.len() - self.pos < n {
            return Err(PickleError::Invalid {
                problem: format!("the data ends in the middle of {what} (truncated?)"),
                offset: self.op_at,
            });
        }
        let bytes = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn byte(&mut self, what: &str) -> Result<u8, PickleError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, PickleError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, PickleError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i32(&mut self, what: &str) -> Result<i32, PickleError> {
        Ok(self.u32(what)? as i32)
    }

    fn u64(&mut self, what: &str) -> Result<u64, PickleError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A length read from the data, checked against what is left before anything is allocated.
    fn length(&mut self, n: u64, what: &str) -> Result<usize, PickleError> {
        let left = (self.data.len() - self.pos) as u64;
        if n > left {
            return Err(self.invalid(format!(
                "{what} claims {n} bytes but only {left} are left (truncated?)"
            )));
        }
        Ok(n as usize)
    }

    /// A line ending in `\n` (protocol 0's text arguments), without the newline.
    fn line(&mut self, what: &str) -> Result<&[u8], PickleError> {
        let rest = &self.data[self.pos..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return Err(self.invalid(format!(
                "the data ends in the middle of {what} (truncated?)"
            )));
        };
        self.pos += end + 1;
        Ok(&rest[..end])
    }

    fn push(&mut self, obj: Obj) -> Result<(), PickleError> {
        if self.stack.len() >= MAX_STACK {
            return Err(PickleError::TooLarge {
                problem: format!("more than {MAX_STACK} values on the stack"),
            });
        }
        self.stack.push(obj);
        Ok(())
    }

    fn pop(&mut self, what: &str) -> Result<Obj, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.invalid(format!("{what} finds the stack empty")));
        }
        Ok(self.stack.pop().expect("checked"))
    }

    fn top(&self, what: &str) -> Result<&Obj, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.invalid(format!("{what} finds the stack empty")));
        }
        Ok(self.stack.last().expect("checked"))
    }

    fn pop_mark(&mut self, what: &str) -> Result<Vec<Obj>, PickleError> {
        let Some(mark) = self.marks.pop() else {
            return Err(self.invalid(format!("{what} finds no MARK")));
        };
        Ok(self.stack.split_off(mark))
    }

    fn count(&mut self, n: usize) -> Result<(), PickleError> {
        self.entries += n;
        if self.entries > MAX_VALUES {
            return Err(PickleError::TooLarge {
                problem: format!("more than {MAX_VALUES} values"),
            });
        }
        Ok(())
    }

    fn tuple(&mut self, items: Vec<Obj>) -> Result<Obj, PickleError> {
        let depth = 1 + items.iter().map(Obj::tuple_depth).max().unwrap_or(0);
        if depth > MAX_DEPTH {
            return Err(PickleError::TooLarge {
                problem: format!("values nested deeper than {MAX_DEPTH} levels"),
            });
        }
        self.count(items.len())?;
        Ok(Obj::Tuple(items.into(), depth))
    }

    fn new_dict(&mut self, entries: Vec<(Obj, Obj)>) -> Result<Obj, PickleError> {
        self.count(2 * entries.len() + 1)?;
        self.dicts.push(entries);
        Ok(Obj::Dict(self.dicts.len() - 1))
    }

    fn set_items(&mut self, items: Vec<Obj>, what: &str) -> Result<(), PickleError> {
        if items.len() % 2 != 0 {
            return Err(self.invalid(format!("{what} has a key without a value")));
        }
        let Obj::Dict(index) = *self.top(what)? else {
            let kind = self.top(what)?.kind();
            return Err(self.invalid(format!("{what} applies to {kind}, not a dict")));
        };
        self.count(items.len())?;
        let mut items = items.into_iter();
        while let (Some(k), Some(v)) = (items.next(), items.next()) {
            self.dicts[index].push((k, v));
        }
        Ok(())
    }

    fn memo_put(&mut self, key: u64) -> Result<(), PickleError> {
        let obj = self.top("PUT")?.clone();
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&key) {
            return Err(PickleError::TooLarge {
                problem: format!("more than {MAX_MEMO} memo entries"),
            });
        }
        self.memo.insert(key, obj);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Result<(), PickleError> {
        let Some(obj) = self.memo.get(&key).cloned() else {
            return Err(self.invalid(format!("GET of memo entry {key}, which was never set")));
        };
        self.push(obj)
    }

    fn decimal(&self, line: &[u8], what: &str) -> Result<u64, PickleError> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                self.invalid(format!(
                    "{what} expects a number, not {:?}",
                    String::from_utf8_lossy(line)
                ))
            })
    }

    /// Resolves a global, refusing all but the two an id file uses.
    fn global(&self, module: &str, name: &str, opcode: &str) -> Result<Obj, PickleError> {
        match (module, name) {
            ("datetime", "datetime") => Ok(Obj::Global(Global::DateTime)),
            ("_codecs", "encode") => Ok(Obj::Global(Global::CodecsEncode)),
            _ => Err(PickleError::RunsCode {
                what: format!("`{module}.{name}` ({opcode})"),
                offset: self.op_at,
            }),
        }
    }

    /// Calls one of the allowed callables (`REDUCE`, or `NEWOBJ` for the class).
    fn call(&self, callable: Obj, args: Obj, opcode: &str) -> Result<Obj, PickleError> {
        let Obj::Global(global) = callable else {
            return Err(self.invalid(format!(
                "{opcode} calls {}, not a class or function",
                callable.kind()
            )));
        };
        let Obj::Tuple(args, _) = args else {
            return Err(self.invalid(format!(
                "{opcode} passes {} as arguments, not a tuple",
                args.kind()
            )));
        };
        match (global, &args[..]) {
            (Global::DateTime, [state]) | (Global::DateTime, [state, Obj::None]) => {
                let bytes: Vec<u8> = match state {
                    Obj::Bytes(b) => b.to_vec(),
                    // Python 2 pickles read as text, which `datetime` accepts as Latin-1.
                    Obj::Str(s) => latin1(s).ok_or_else(|| {
                        self.invalid("a date's state is text outside Latin-1".to_owned())
                    })?,
                    other => {
                        return Err(self.invalid(format!(
                            "`datetime.datetime` is given {}; only its 10-byte pickled state is accepted",
                            other.kind()
                        )));
                    }
                };
                self.datetime(&bytes).map(Obj::DateTime)
            }
            (Global::CodecsEncode, [Obj::Str(text), Obj::Str(encoding)])
                if opcode == "REDUCE"
                    && matches!(encoding.as_ref(), "latin1" | "latin-1" | "iso-8859-1") =>
            {
                let bytes = latin1(text).ok_or_else(|| {
                    self.invalid("`_codecs.encode` is given text outside Latin-1".to_owned())
                })?;
                Ok(Obj::Bytes(bytes.into()))
            }
            (Global::DateTime, _) => Err(self.invalid(
                "`datetime.datetime` is called with arguments other than its pickled state",
            )),
            (Global::CodecsEncode, _) => Err(self
                .invalid("`_codecs.encode` is used other than to spell a byte string in Latin-1")),
        }
    }

    fn datetime(&self, b: &[u8]) -> Result<DateTime, PickleError> {
        if b.len() != 10 {
            return Err(self.invalid(format!(
                "a date's state is {} bytes, not 10 (a time zone or a different class?)",
                b.len()
            )));
        }
        let d = DateTime {
            year: u16::from(b[0]) << 8 | u16::from(b[1]),
            // The high bit of the month is `fold` (protocol 4 and later).
            month: b[2] & 0x7f,
            day: b[3],
            hour: b[4],
            minute: b[5],
            second: b[6],
            microsecond: u32::from(b[7]) << 16 | u32::from(b[8]) << 8 | u32::from(b[9]),
        };
        let sane = (1..=9999).contains(&d.year)
            && (1..=12).contains(&d.month)
            && (1..=31).contains(&d.day)
            && d.hour < 24
            && d.minute < 60
            && d.second < 60
            && d.microsecond < 1_000_000;
        if !sane {
            return Err(self.invalid(format!("a date out of range ({d})")));
        }
        Ok(d)
    }

    fn run(&mut self) -> Result<Obj, PickleError> {
        loop {
            self.op_at = self.pos;
            let Some(&op) = self.data.get(self.pos) else {
                return Err(self.invalid(if self.pos == 0 {
                    "the file is empty"
                } else {
                    "the data ends before STOP (truncated?)"
                }));
            };
            self.pos += 1;
            if let Some(what) = code_opcode(op) {
                return Err(PickleError::RunsCode {
                    what: what.to_owned(),
                    offset: self.op_at,
                });
            }
            if let Some(what) = foreign_opcode(op) {
                return Err(self.invalid(format!(
                    "{what} (opcode {:?}), which an id file never holds",
                    char::from(op)
                )));
            }
            match op {
                // Protocol and framing.
                0x80 => {
                    let version = self.byte("PROTO")?;
                    if version > 5 {
                        return Err(self.invalid(format!(
                            "pickle protocol {version}, newer than 5 (the newest there is)"
                        )));
                    }
                }
                0x95 => {
                    let n = self.u64("FRAME")?;
                    self.length(n, "FRAME")?;
                }
                b'.' => return self.pop("STOP"),
                // The stack.
                b'(' => {
                    if self.marks.len() >= MAX_STACK {
                        return Err(PickleError::TooLarge {
                            problem: format!("more than {MAX_STACK} marks"),
                        });
                    }
                    self.marks.push(self.stack.len());
                }
                b'0' => {
                    // Python pops a value, or else a mark.
                    let floor = self.marks.last().copied().unwrap_or(0);
                    if self.stack.len() > floor {
                        self.stack.pop();
                    } else {
                        self.pop_mark("POP")?;
                    }
                }
                b'1' => {
                    self.pop_mark("POP_MARK")?;
                }
                b'2' => {
                    let top = self.top("DUP")?.clone();
                    self.push(top)?;
                }
                // The memo.
                b'p' => {
                    let line = self.line("PUT")?.to_vec();
                    let key = self.decimal(&line, "PUT")?;
                    self.memo_put(key)?;
                }
                b'q' => {
                    let key = self.byte("BINPUT")?;
                    self.memo_put(u64::from(key))?;
                }
                b'r' => {
                    let key = self.u32("LONG_BINPUT")?;
                    self.memo_put(u64::from(key))?;
                }
                0x94 => {
                    let key = self.memo.len() as u64;
                    self.memo_put(key)?;
                }
                b'g' => {
                    let line = self.line("GET")?.to_vec();
                    let key = self.decimal(&line, "GET")?;
                    self.memo_get(key)?;
                }
                b'h' => {
                    let key = self.byte("BINGET")?;
                    self.memo_get(u64::from(key))?;
                }
                b'j' => {
                    let key = self.u32("LONG_BINGET")?;
                    self.memo_get(u64::from(key))?;
                }
                // Constants and numbers.
                b'N' => self.push(Obj::None)?,
                0x88 => self.push(Obj::Bool(true))?,
                0x89 => self.push(Obj::Bool(false))?,
                b'I' => {
                    let line = self.line("INT")?.to_vec();
                    let obj = match line.as_slice() {
                        b"01" => Obj::Bool(true),
                        b"00" => Obj::Bool(false),
                        text => Obj::Int(self.int_text(text, "INT")?),
                    };
                    self.push(obj)?;
                }
                b'L' => {
                    let line = self.line("LONG")?.to_vec();
                    let text = line.strip_suffix(b"L").unwrap_or(&line);
                    let n = self.int_text(text, "LONG")?;
                    self.push(Obj::Int(n))?;
                }
                b'J' => {
                    let n = self.i32("BININT")?;
                    self.push(Obj::Int(i64::from(n)))?;
                }
                b'K' => {
                    let n = self.byte("BININT1")?;
                    self.push(Obj::Int(i64::from(n)))?;
                }
                b'M' => {
                    let n = self.u16("BININT2")?;
                    self.push(Obj::Int(i64::from(n)))?;
                }
                0x8a => {
                    let n = usize::from(self.byte("LONG1")?);
                    let bytes = self.take(n, "LONG1")?.to_vec();
                    let n = self.long_bytes(&bytes)?;
                    self.push(Obj::Int(n))?;
                }
                0x8b => {
                    let n = self.i32("LONG4")?;
                    if n < 0 {
                        return Err(self.invalid("LONG4 with a negative length"));
                    }
                    let n = self.length(n as u64, "LONG4")?;
                    let bytes = self.take(n, "LONG4")?.to_vec();
                    let n = self.long_bytes(&bytes)?;
                    self.push(Obj::Int(n))?;
                }
                // Text.
                b'V' => {
                    let line = self.line("UNICODE")?.to_vec();
                    let text = raw_unicode_escape(&line)
                        .ok_or_else(|| self.invalid("UNICODE with a malformed \\u escape"))?;
                    self.push(Obj::Str(text.into()))?;
                }
                b'X' | 0x8c | 0x8d => {
                    let (n, name) = match op {
                        b'X' => (u64::from(self.u32("BINUNICODE")?), "BINUNICODE"),
                        0x8c => (
                            u64::from(self.byte("SHORT_BINUNICODE")?),
                            "SHORT_BINUNICODE",
                        ),
                        _ => (self.u64("BINUNICODE8")?, "BINUNICODE8"),
                    };
                    let n = self.length(n, name)?;
                    let offset = self.op_at;
                    let bytes = self.take(n, name)?;
                    let text: Rc<str> = std::str::from_utf8(bytes)
                        .map_err(|_| PickleError::Invalid {
                            problem: format!("{name} that is not UTF-8"),
                            offset,
                        })?
                        .into();
                    self.push(Obj::Str(text))?;
                }
                // Byte strings (Python 3 bytes; Python 2 str).
                b'S' => {
                    let line = self.line("STRING")?.to_vec();
                    let bytes = python_string_literal(&line).ok_or_else(|| {
                        self.invalid("STRING whose argument is not a quoted string")
                    })?;
                    self.push(Obj::Bytes(bytes.into()))?;
                }
                b'T' | b'U' | b'B' | b'C' | 0x8e => {
                    let (n, name) = match op {
                        b'T' => {
                            let n = self.i32("BINSTRING")?;
                            if n < 0 {
                                return Err(self.invalid("BINSTRING with a negative length"));
                            }
                            (n as u64, "BINSTRING")
                        }
                        b'U' => (u64::from(self.byte("SHORT_BINSTRING")?), "SHORT_BINSTRING"),
                        b'B' => (u64::from(self.u32("BINBYTES")?), "BINBYTES"),
                        b'C' => (u64::from(self.byte("SHORT_BINBYTES")?), "SHORT_BINBYTES"),
                        _ => (self.u64("BINBYTES8")?, "BINBYTES8"),
                    };
                    let n = self.length(n, name)?;
                    let bytes: Rc<[u8]> = self.take(n, name)?.into();
                    self.push(Obj::Bytes(bytes))?;
                }
                // Tuples.
                b')' => {
                    let t = self.tuple(Vec::new())?;
                    self.push(t)?;
                }
                b't' => {
                    let items = self.pop_mark("TUPLE")?;
                    let t = self.tuple(items)?;
                    self.push(t)?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop("TUPLE1/2/3")?);
                    }
                    items.reverse();
                    let t = self.tuple(items)?;
                    self.push(t)?;
                }
                // Dicts.
                b'}' => {
                    let d = self.new_dict(Vec::new())?;
                    self.push(d)?;
                }
                b'd' => {
                    let items = self.pop_mark("DICT")?;
                    if items.len() % 2 != 0 {
                        return Err(self.invalid("DICT has a key without a value"));
                    }
                    let mut entries = Vec::with_capacity(items.len() / 2);
                    let mut items = items.into_iter();
                    while let (Some(k), Some(v)) = (items.next(), items.next()) {
                        entries.push((k, v));
                    }
                    let d = self.new_dict(entries)?;
                    self.push(d)?;
                }
                b's' => {
                    let value = self.pop("SETITEM")?;
                    let key = self.pop("SETITEM")?;
                    self.set_items(vec![key, value], "SETITEM")?;
                }
                b'u' => {
                    let items = self.pop_mark("SETITEMS")?;
                    self.set_items(items, "SETITEMS")?;
                }
                // The two allowed globals, and calls to them.
                b'c' => {
                    let module = self.line("GLOBAL")?.to_vec();
                    let name = self.line("GLOBAL")?.to_vec();
                    let (module, name) = (
                        String::from_utf8_lossy(&module).into_owned(),
                        String::from_utf8_lossy(&name).into_owned(),
                    );
                    let g = self.global(&module, &name, "GLOBAL")?;
                    self.push(g)?;
                }
                0x93 => {
                    let name = self.pop("STACK_GLOBAL")?;
                    let module = self.pop("STACK_GLOBAL")?;
                    let (Obj::Str(module), Obj::Str(name)) = (module, name) else {
                        return Err(
                            self.invalid("STACK_GLOBAL whose module and name are not strings")
                        );
                    };
                    let g = self.global(&module, &name, "STACK_GLOBAL")?;
                    self.push(g)?;
                }
                b'R' => {
                    let args = self.pop("REDUCE")?;
                    let callable = self.pop("REDUCE")?;
                    let v = self.call(callable, args, "REDUCE")?;
                    self.push(v)?;
                }
                0x81 => {
                    let args = self.pop("NEWOBJ")?;
                    let class = self.pop("NEWOBJ")?;
                    if !matches!(class, Obj::Global(Global::DateTime)) {
                        return Err(self.invalid(format!(
                            "NEWOBJ creates {}, not a `datetime.datetime`",
                            class.kind()
                        )));
                    }
                    let v = self.call(class, args, "NEWOBJ")?;
                    self.push(v)?;
                }
                other => {
                    return Err(self.invalid(format!(
                        "unknown opcode 0x{other:02x} (not a pickle, or damaged)"
                    )));
                }
            }
        }
    }

    fn int_text(&self, text: &[u8], what: &str) -> Result<i64, PickleError> {
        std::str::from_utf8(text)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                self.invalid(format!(
                    "{what} {:?} is not an integer of at most 64 bits",
                    String::from_utf8_lossy(text)
                ))
            })
    }

    /// A little-endian two's complement integer (LONG1, LONG4).
    fn long_bytes(&self, bytes: &[u8]) -> Result<i64, PickleError> {
        if bytes.is_empty() {
            return Ok(0);
        }
        let negative = bytes[bytes.len() - 1] & 0x80 != 0;
        let fill = if negative { 0xff } else { 0 };
        // Longer than 8 bytes is fine only if the extra bytes are sign extension.
        let (low, high) = bytes.split_at(bytes.len().min(8));
        let fits = high.iter().all(|&b| b == fill)
            && (high.is_empty() || (low[low.len() - 1] & 0x80 != 0) == negative);
        if !fits {
            return Err(self.invalid("an integer larger than 64 bits"));
        }
        let mut a = [fill; 8];
        a[..low.len()].copy_from_slice(low);
        Ok(i64::from_le_bytes(a))
    }

    /// Turns a stack value into an owned [`Value`], within the depth and size limits.
    fn export(&self, obj: &Obj, depth: usize, budget: &mut usize) -> Result<Value, PickleError> {
        if depth > MAX_DEPTH {
            return Err(PickleError::TooLarge {
                problem: format!(
                    "values nested deeper than {MAX_DEPTH} levels (or a dict that contains itself)"
                ),
            });
        }
        if *budget == 0 {
            return Err(PickleError::TooLarge {
                problem: "too many values once shared ones are counted each time".into(),
            });
        }
        *budget -= 1;
        Ok(match obj {
            Obj::None => Value::None,
            Obj::Bool(b) => Value::Bool(*b),
            Obj::Int(i) => Value::Int(*i),
            Obj::Str(s) => Value::Str(s.to_string()),
            Obj::Bytes(b) => Value::Bytes(b.to_vec()),
            Obj::DateTime(d) => Value::DateTime(*d),
            Obj::Tuple(items, _) => Value::Tuple(
                items
                    .iter()
                    .map(|o| self.export(o, depth + 1, budget))
                    .collect::<Result<_, _>>()?,
            ),
            Obj::Dict(index) => Value::Dict(
                self.dicts[*index]
                    .iter()
                    .map(|(k, v)| {
                        Ok((
                            self.export(k, depth + 1, budget)?,
                            self.export(v, depth + 1, budget)?,
                        ))
                    })
                    .collect::<Result<_, PickleError>>()?,
            ),
            Obj::Global(_) => {
                return Err(PickleError::Invalid {
                    problem: "the result holds a class or function itself, not a value".into(),
                    offset: self.pos.saturating_sub(1),
                });
            }
        })
    }
}

fn latin1(text: &str) -> Option<Vec<u8>> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect()
}

/// Decodes Python's `raw-unicode-escape`: bytes are Latin-1 characters, except `\uXXXX` and
/// `\UXXXXXXXX` after an odd number of backslashes.
fn raw_unicode_escape(bytes: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(char::from(bytes[i]));
            i += 1;
            continue;
        }
        let run = bytes[i..].iter().take_while(|&&b| b == b'\\').count();
        let after = i + run;
        let escape = match bytes.get(after) {
            Some(b'u') if run % 2 == 1 => Some(4),
            Some(b'U') if run % 2 == 1 => Some(8),
            _ => None,
        };
        match escape {
            None => {
                out.extend(std::iter::repeat_n('\\', run));
                i = after;
            }
            Some(digits) => {
                out.extend(std::iter::repeat_n('\\', run - 1));
                let hex = bytes.get(after + 1..after + 1 + digits)?;
                let code = u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                out.push(char::from_u32(code)?);
                i = after + 1 + digits;
            }
        }
    }
    Some(out)
}

/// Decodes the argument of protocol 0's `STRING`: a Python 2 string literal, quoted, with
/// backslash escapes.
fn python_string_literal(line: &[u8]) -> Option<Vec<u8>> {
    let quote = *line.first()?;
    if line.len() < 2 || !matches!(quote, b'\'' | b'"') || line[line.len() - 1] != quote {
        return None;
    }
    let body = &line[1..line.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let Some(&e) = body.get(i) else {
            out.push(b'\\');
            break;
        };
        i += 1;
        match e {
            b'\\' | b'\'' | b'"' => out.push(e),
            b'a' => out.push(0x07),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'\n' => {}
            b'x' => {
                let hex = body.get(i..i + 2)?;
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut n = u32::from(e - b'0');
                let mut digits = 1;
                while digits < 3 && matches!(body.get(i), Some(b'0'..=b'7')) {
                    n = n * 8 + u32::from(body[i] - b'0');
                    i += 1;
                    digits += 1;
                }
                out.push((n & 0xff) as u8);
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn python(script: &str) -> Vec<u8> {
        crate::migrate::python3(script)
    }

    fn pickled(expr: &str, protocol: u8) -> Vec<u8> {
        python(&format!(
            "import pickle, sys, datetime\nsys.stdout.buffer.write(pickle.dumps({expr}, protocol={protocol}))"
        ))
    }

    fn dt(y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8, us: u32) -> Value {
        Value::DateTime(DateTime {
            year: y,
            month: mo,
            day: d,
            hour: h,
            minute: mi,
            second: s,
            microsecond: us,
        })
    }

    #[test]
    fn the_id_file_layout_in_every_protocol() {
        // One datetime shared by two backlog ids, as the incumbent does for a gap (a memo GET),
        // a None last id, an empty collection, non-ASCII names, a large id, a negative number.
        let expr = "(lambda exp: {'/studio/plugins': {'logArgs': (9000000001, {8999999990: exp, 8999999991: exp}), \
                     'new': (None, {}), 'caf\\u00e9': (7, {5: datetime.datetime(2026, 12, 31, 23, 59, 58, 999999)})}, \
                     '/old': {}, '/neg': {'x': (-5, {})}})(datetime.datetime(2026, 11, 2, 10, 4, 5, 123456))";
        let exp = dt(2026, 11, 2, 10, 4, 5, 123456);
        let want = Value::Dict(vec![
            (
                Value::Str("/studio/plugins".into()),
                Value::Dict(vec![
                    (
                        Value::Str("logArgs".into()),
                        Value::Tuple(vec![
                            Value::Int(9000000001),
                            Value::Dict(vec![
                                (Value::Int(8999999990), exp.clone()),
                                (Value::Int(8999999991), exp.clone()),
                            ]),
                        ]),
                    ),
                    (
                        Value::Str("new".into()),
                        Value::Tuple(vec![Value::None, Value::Dict(vec![])]),
                    ),
                    (
                        Value::Str("café".into()),
                        Value::Tuple(vec![
                            Value::Int(7),
                            Value::Dict(vec![(
                                Value::Int(5),
                                dt(2026, 12, 31, 23, 59, 58, 999999),
                            )]),
                        ]),
                    ),
                ]),
            ),
            (Value::Str("/old".into()), Value::Dict(vec![])),
            (
                Value::Str("/neg".into()),
                Value::Dict(vec![(
                    Value::Str("x".into()),
                    Value::Tuple(vec![Value::Int(-5), Value::Dict(vec![])]),
                )]),
            ),
        ]);
        for protocol in 0..=5 {
            let data = pickled(expr, protocol);
            let got = load(&data).unwrap_or_else(|e| panic!("protocol {protocol}: {e}"));
            assert_eq!(got, want, "protocol {protocol}");
        }
    }

    #[test]
    fn booleans_bytes_and_big_small_numbers() {
        let expr = "(True, False, b'\\x00\\xff\\\\\\n', 'a\\\\u0041\\n\\u20ac', 2**63 - 1, -2**63, 255, 256, 65536, -1, ())";
        for protocol in 0..=5 {
            let got = load(&pickled(expr, protocol))
                .unwrap_or_else(|e| panic!("protocol {protocol}: {e}"));
            assert_eq!(
                got,
                Value::Tuple(vec![
                    Value::Bool(true),
                    Value::Bool(false),
                    Value::Bytes(vec![0, 0xff, b'\\', b'\n']),
                    Value::Str("a\\u0041\n€".into()),
                    Value::Int(i64::MAX),
                    Value::Int(i64::MIN),
                    Value::Int(255),
                    Value::Int(256),
                    Value::Int(65536),
                    Value::Int(-1),
                    Value::Tuple(vec![]),
                ]),
                "protocol {protocol}"
            );
        }
        let err = load(&pickled("2**64", 2)).expect_err("too big");
        assert!(err.to_string().contains("larger than 64 bits"), "{err}");
        let err = load(&pickled("2**64", 0)).expect_err("too big");
        assert!(err.to_string().contains("at most 64 bits"), "{err}");
    }

    #[test]
    fn python2_pickles_of_the_layout() {
        // What Python 2's pickle wrote for {'/p': {'a': (10, {8: datetime(2026, 1, 2, 3, 4, 5, 6)})}}
        // with protocols 0 and 2 (its str is a byte string).
        let p0 = b"(dp0\nS'/p'\np1\n(dp2\nS'a'\np3\n(I10\n(dp4\nI8\ncdatetime\ndatetime\np5\n(S'\\x07\\xea\\x01\\x02\\x03\\x04\\x05\\x00\\x00\\x06'\np6\ntp7\nRp8\nstp9\nss.";
        let p2 = b"\x80\x02}q\x00U\x02/pq\x01}q\x02U\x01aq\x03K\n}q\x04K\x08cdatetime\ndatetime\nq\x05U\n\x07\xea\x01\x02\x03\x04\x05\x00\x00\x06q\x06\x85q\x07Rq\x08s\x86q\tss.";
        let want = Value::Dict(vec![(
            Value::Bytes(b"/p".to_vec()),
            Value::Dict(vec![(
                Value::Bytes(b"a".to_vec()),
                Value::Tuple(vec![
                    Value::Int(10),
                    Value::Dict(vec![(Value::Int(8), dt(2026, 1, 2, 3, 4, 5, 6))]),
                ]),
            )]),
        )]);
        assert_eq!(load(p0).expect("protocol 0"), want);
        assert_eq!(load(p2).expect("protocol 2"), want);
        assert_eq!(
            Value::Bytes(b"/p".to_vec()).as_text().as_deref(),
            Some("/p")
        );
    }

    fn refused(data: &[u8]) -> String {
        load(data).expect_err("refused").to_string()
    }

    #[test]
    fn code_is_refused_by_name() {
        let evil = python(
            "import pickle, sys, os\nclass Evil:\n    def __reduce__(self):\n        return (os.system, ('touch /tmp/sgevents-pwned',))\n\
             sys.stdout.buffer.write(pickle.dumps({'/p': {'a': (1, {2: Evil()})}}, protocol=4))",
        );
        let err = refused(&evil);
        assert!(
            err.starts_with(
                "a pickle file can run code; this one asks for `posix.system` (STACK_GLOBAL)"
            ),
            "{err}"
        );
        assert!(err.ends_with("; refusing"), "{err}");
        for protocol in [0, 2] {
            let evil = python(&format!(
                "import pickle, sys, os\nclass Evil:\n    def __reduce__(self):\n        return (os.system, ('true',))\n\
                 sys.stdout.buffer.write(pickle.dumps(Evil(), protocol={protocol}))"
            ));
            let err = refused(&evil);
            assert!(err.contains("`posix.system` (GLOBAL)"), "{err}");
        }
        // A hand-written one: GLOBAL builtins.eval + REDUCE.
        let err = refused(b"cbuiltins\neval\n(S'1+1'\ntR.");
        assert!(err.contains("`builtins.eval` (GLOBAL)"), "{err}");
        // Instances of any class: protocol 0's INST, protocol 1's OBJ, and NEWOBJ via its class.
        let err = refused(b"(i__main__\nEvil\n.");
        assert!(err.contains("INST"), "{err}");
        assert!(err.starts_with("a pickle file can run code"), "{err}");
        let err = refused(b"(c__main__\nEvil\no.");
        assert!(err.contains("`__main__.Evil` (GLOBAL)"), "{err}");
        let err = refused(b"NN\x93.");
        assert!(
            err.contains("STACK_GLOBAL whose module and name are not strings"),
            "{err}"
        );
        let err = refused(b"\x80\x02(o.");
        assert!(err.contains("OBJ"), "{err}");
        let plain_object = python(
            "import pickle, sys\nclass Plain:\n    pass\np = Plain(); p.x = 1\nsys.stdout.buffer.write(pickle.dumps(p, protocol=2))",
        );
        let err = refused(&plain_object);
        assert!(err.contains("`__main__.Plain`"), "{err}");
        // BUILD on an allowed value: refused before it can touch anything.
        let err = refused(b"\x80\x02}}b.");
        assert!(err.contains("BUILD"), "{err}");
        assert!(err.contains("byte 4"), "{err}");
        for (data, what) in [
            (&b"\x80\x02\x82\x01."[..], "EXT"),
            (b"\x80\x02\x92.", "NEWOBJ_EX"),
            (b"Pid\n.", "persistent id"),
        ] {
            let err = refused(data);
            assert!(
                err.starts_with("a pickle file can run code") && err.contains(what),
                "{err}"
            );
        }
        // `_codecs.encode` is allowed only to spell Latin-1 bytes.
        let err = refused(b"c_codecs\nencode\n(Vx\nVrot13\ntR.");
        assert!(err.contains("other than to spell a byte string"), "{err}");
        let err = refused(b"cdatetime\ndatetime\n(I2026\nI1\nI2\ntR.");
        assert!(
            err.contains("with arguments other than its pickled state"),
            "{err}"
        );
        let err = refused(b"cdatetime\ndatetime\n(I2026\ntR.");
        assert!(err.contains("only its 10-byte pickled state"), "{err}");
    }

    #[test]
    fn foreign_values_and_damage_are_refused() {
        for (expr, what) in [
            ("[1, 2]", "a list"),
            ("1.5", "a float"),
            ("{1, 2}", "a set"),
            ("frozenset([1])", "a set"),
        ] {
            let err = refused(&pickled(expr, 4));
            assert!(err.contains(what), "{expr}: {err}");
            assert!(err.contains("an id file never holds"), "{err}");
        }
        let err = refused(&pickled(
            "datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)",
            4,
        ));
        assert!(err.contains("`datetime.timezone`"), "{err}");

        let err = refused(b"\x80\x02\xff.");
        assert!(err.contains("unknown opcode 0xff"), "{err}");
        assert!(err.contains("byte 2"), "{err}");
        assert!(refused(b"").contains("the file is empty"));
        assert!(refused(b"\x80\x04}").contains("before STOP"));
        let full = pickled("{'/p': {'a': (1, {})}}", 4);
        for cut in 1..full.len() {
            let err = refused(&full[..cut]);
            assert!(
                err.starts_with("not a readable id file"),
                "cut at {cut}: {err}"
            );
        }
        // Lengths larger than the data are refused before anything is allocated.
        let err = refused(b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\x7f.");
        assert!(err.contains("only 1 are left"), "{err}");
        assert!(refused(b"\x80\x06N.").contains("protocol 6"));
        assert!(refused(b"h\x05.").contains("never set"));
        assert!(refused(b"s.").contains("finds the stack empty"));
        assert!(refused(b"(Ns.").contains("finds the stack empty"));
        assert!(refused(b"N(NNu.").contains("applies to None, not a dict"));
        assert!(refused(b"t.").contains("finds no MARK"));
        assert!(refused(b"\x80\x02cdatetime\ndatetime\n.").contains("holds a class or function"));
    }

    #[test]
    fn nesting_and_size_are_bounded() {
        // Deep tuples, as Python writes them.
        let deep = python(
            "import pickle, sys\nt = ()\nfor _ in range(200):\n    t = (t,)\nsys.stdout.buffer.write(pickle.dumps(t, protocol=4))",
        );
        let err = refused(&deep);
        assert!(err.contains("nested deeper than 32 levels"), "{err}");
        // Deep dicts.
        let deep = python(
            "import pickle, sys\nd = {}\nfor _ in range(200):\n    d = {'k': d}\nsys.stdout.buffer.write(pickle.dumps(d, protocol=2))",
        );
        assert!(refused(&deep).contains("nested deeper than 32 levels"));
        // A dict that contains itself.
        let cycle = python(
            "import pickle, sys\nd = {}\nd['self'] = d\nsys.stdout.buffer.write(pickle.dumps(d, protocol=2))",
        );
        assert!(refused(&cycle).contains("contains itself"));
        // Shared values that double at each level: 2**40 values once expanded.
        let mut bomb = b"\x80\x02}q\x00".to_vec();
        for level in 1..=40u8 {
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
        let err = refused(&bomb);
        assert!(
            err.contains("nested deeper") || err.contains("values once shared"),
            "{err}"
        );
        // The same, shallow enough: the size limit stops it.
        let mut bomb = b"\x80\x02}q\x00".to_vec();
        for level in 1..=20u8 {
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
        let err = load_within(&bomb, 100_000)
            .expect_err("too many")
            .to_string();
        assert!(
            err.contains("too many values once shared ones are counted"),
            "{err}"
        );
        let small = [&bomb[..bomb.len() - 1 - 10 * 13], b"."].concat();
        assert!(load_within(&small, 100_000).is_ok(), "10 levels fit");
        // Marks without values are an error at the end, not a crash.
        let mut marks = vec![b'('; 100_000];
        marks.push(b'.');
        assert!(refused(&marks).contains("finds the stack empty"));
        let big = vec![b'N'; MAX_INPUT + 1];
        assert!(refused(&big).contains("larger than any id file"));
    }

    #[test]
    fn escapes() {
        assert_eq!(
            raw_unicode_escape(b"a\\u0041\\\\u0041\\U0001F600\xe9").as_deref(),
            Some("aA\\\\u0041😀é")
        );
        assert_eq!(raw_unicode_escape(b"\\u00"), None);
        assert_eq!(
            python_string_literal(b"'a\\'b\\x41\\101\\n\\q'").as_deref(),
            Some(&b"a'bAA\n\\q"[..])
        );
        assert_eq!(python_string_literal(b"'unterminated"), None);
    }
}
