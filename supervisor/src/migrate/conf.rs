//! The incumbent's configuration: an INI reader with the semantics of Python's `configparser` as
//! shotgunEvents uses it, and the conversion of what it read into a commented sgevents TOML file.
//!
//! The reader follows `configparser.ConfigParser` with its defaults: `[section]` headers (names
//! case-sensitive, `[DEFAULT]` inherited by every section), `key = value` or `key: value` (the
//! first `=` or `:` separates; keys case-insensitive), full-line comments starting with `#` or `;`
//! (a `#` later in a line is part of the value), values continued on more-indented lines and
//! joined with newlines, and a duplicate section or key refused. Interpolation (`%(name)s`, `%%`)
//! is kept symbolic: a name that is an option of the section or of `[DEFAULT]` is expanded, any
//! other name is an environment variable (shotgunEvents hands `os.environ` to the parser as its
//! defaults). Secrets keep the variable's name; other values are read from the environment
//! `sgevents migrate` runs in. A value may expand to at most 64 KiB, so that options naming others
//! many times each cannot multiply a value's size at every level.
//!
//! The TOML is written by hand, not serialized, so that every key carries a comment saying where
//! it came from and every setting without an equivalent is listed where it would have been.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A configuration file that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {problem}\nhint: {hint}")]
pub(crate) struct IniError {
    file: String,
    line: usize,
    problem: String,
    hint: String,
}

/// One `key = value`.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The key, lowercased (`configparser`'s `optionxform`).
    pub(crate) key: String,
    /// The key as written.
    pub(crate) spelled: String,
    /// The value before interpolation, continuation lines joined with `\n`.
    pub(crate) raw: String,
    /// The line it starts on.
    pub(crate) line: usize,
}

/// One `[section]`.
#[derive(Debug, Clone)]
pub(crate) struct Section {
    pub(crate) name: String,
    pub(crate) line: usize,
    pub(crate) entries: Vec<Entry>,
}

/// A parsed INI file.
#[derive(Debug, Clone)]
pub(crate) struct Ini {
    file: String,
    sections: Vec<Section>,
    defaults: Vec<Entry>,
}

/// A piece of a value after interpolation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Text(String),
    /// `%(NAME)s` naming no option: an environment variable.
    Env(String),
}

/// What a secret's value is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SecretValue {
    /// Nothing.
    Empty,
    /// Exactly one environment variable.
    Env(String),
    /// Text written in the file.
    Literal,
    /// Text mixed with environment variables.
    Mixed,
}

/// The same interpolation limit as `configparser`.
const MAX_INTERPOLATION_DEPTH: usize = 10;
/// The longest value interpolation may make, in bytes (each piece counts one more): options that
/// name others many times would otherwise multiply a value's size at every level.
const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Parses `text`, read from `file`.
pub(crate) fn parse(file: &Path, text: &str) -> Result<Ini, IniError> {
    let file = file.display().to_string();
    let error = |line: usize, problem: String, hint: &str| IniError {
        file: file.clone(),
        line,
        problem,
        hint: hint.to_owned(),
    };
    let mut ini = Ini {
        file: file.clone(),
        sections: Vec::new(),
        defaults: Vec::new(),
    };
    // Where keys go: nowhere yet, [DEFAULT], or a section.
    #[derive(Clone, Copy, PartialEq)]
    enum Target {
        Nowhere,
        Defaults,
        Section(usize),
    }
    let mut target = Target::Nowhere;
    // The entry being read (for continuation lines), and the value's lines so far.
    let mut open: Option<(Target, usize)> = None;
    let mut lines: Vec<Vec<String>> = Vec::new();
    let mut line_of: Vec<(Target, usize)> = Vec::new();
    let mut indent_level = 0;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let stripped = line.trim();
        let comment = stripped.starts_with('#') || stripped.starts_with(';');
        if comment || stripped.is_empty() {
            // An empty line may belong to a value continued below; a comment line never does.
            if !comment {
                if let Some(at) = open {
                    let slot = line_of.iter().position(|&o| o == at).expect("opened");
                    lines[slot].push(String::new());
                }
            }
            continue;
        }
        let indent = line.chars().take_while(|c| c.is_whitespace()).count();
        if let Some(at) = open {
            if indent > indent_level {
                let slot = line_of.iter().position(|&o| o == at).expect("opened");
                lines[slot].push(stripped.to_owned());
                continue;
            }
        }
        indent_level = indent;
        if let Some(name) = header(stripped) {
            open = None;
            if name == "DEFAULT" {
                target = Target::Defaults;
            } else if let Some(first) = ini.sections.iter().find(|s| s.name == name) {
                return Err(error(
                    number,
                    format!(
                        "section `[{name}]` appears twice (first on line {})",
                        first.line
                    ),
                    "merge the two sections: shotgunEvents refused this file too",
                ));
            } else {
                ini.sections.push(Section {
                    name: name.to_owned(),
                    line: number,
                    entries: Vec::new(),
                });
                target = Target::Section(ini.sections.len() - 1);
            }
            continue;
        }
        if target == Target::Nowhere {
            return Err(error(
                number,
                format!("`{stripped}` comes before any `[section]`"),
                "is this a shotgunEventDaemon.conf? it starts with a section such as [daemon]",
            ));
        }
        let Some(split) = stripped.find(['=', ':']) else {
            return Err(error(
                number,
                format!("`{stripped}` is not `key = value`"),
                "write `key = value` or `key: value`, or start the line with `#` to make it a comment",
            ));
        };
        let spelled = stripped[..split].trim_end();
        if spelled.is_empty() {
            return Err(error(
                number,
                format!("`{stripped}` has no key"),
                "write `key = value`",
            ));
        }
        let key = spelled.to_lowercase();
        let entries = match target {
            Target::Defaults => &mut ini.defaults,
            Target::Section(i) => &mut ini.sections[i].entries,
            Target::Nowhere => unreachable!("checked above"),
        };
        if let Some(first) = entries.iter().find(|e| e.key == key) {
            return Err(error(
                number,
                format!(
                    "`{spelled}` is set twice in this section (first on line {})",
                    first.line
                ),
                "keep one: shotgunEvents refused this file too",
            ));
        }
        entries.push(Entry {
            key,
            spelled: spelled.to_owned(),
            raw: String::new(),
            line: number,
        });
        let at = (target, entries.len() - 1);
        open = Some(at);
        line_of.push(at);
        lines.push(vec![stripped[split + 1..].trim().to_owned()]);
    }
    for ((target, index), value) in line_of.into_iter().zip(lines) {
        let entry = match target {
            Target::Defaults => &mut ini.defaults[index],
            Target::Section(i) => &mut ini.sections[i].entries[index],
            Target::Nowhere => unreachable!("no entry outside a section"),
        };
        entry.raw = value.join("\n").trim_end().to_owned();
    }
    Ok(ini)
}

/// `[name]`: the text between the first `[` and the last `]`, as `configparser` reads it.
fn header(line: &str) -> Option<&str> {
    let rest = line.strip_prefix('[')?;
    let end = rest.rfind(']')?;
    (end > 0).then(|| &rest[..end])
}

impl Ini {
    /// The file's name, for messages.
    pub(crate) fn file(&self) -> &str {
        &self.file
    }

    /// The sections, in file order (not `[DEFAULT]`).
    pub(crate) fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// `key` in `section`, or in `[DEFAULT]`.
    pub(crate) fn get(&self, section: &str, key: &str) -> Option<&Entry> {
        let key = key.to_lowercase();
        self.sections
            .iter()
            .find(|s| s.name == section)
            .and_then(|s| s.entries.iter().find(|e| e.key == key))
            .or_else(|| self.defaults.iter().find(|e| e.key == key))
    }

    /// Whether `section` exists.
    pub(crate) fn has_section(&self, section: &str) -> bool {
        self.sections.iter().any(|s| s.name == section)
    }

    /// The value of `key` in `section` with options interpolated, environment variables left as
    /// [`Piece::Env`].
    pub(crate) fn pieces(&self, section: &str, entry: &Entry) -> Result<Vec<Piece>, IniError> {
        let mut out = Vec::new();
        self.expand(section, entry, &entry.raw, 0, &mut out, &mut 0)?;
        // Merge neighbouring text.
        let mut merged: Vec<Piece> = Vec::new();
        for piece in out {
            match (merged.last_mut(), piece) {
                (Some(Piece::Text(a)), Piece::Text(b)) => a.push_str(&b),
                (_, p) => merged.push(p),
            }
        }
        merged.retain(|p| !matches!(p, Piece::Text(t) if t.is_empty()));
        Ok(merged)
    }

    fn expand(
        &self,
        section: &str,
        entry: &Entry,
        raw: &str,
        depth: usize,
        out: &mut Vec<Piece>,
        size: &mut usize,
    ) -> Result<(), IniError> {
        let fail = |problem: String, hint: &str| IniError {
            file: self.file.clone(),
            line: entry.line,
            problem,
            hint: hint.to_owned(),
        };
        if depth > MAX_INTERPOLATION_DEPTH {
            return Err(fail(
                format!(
                    "`{}` refers to options that refer back to it (more than {MAX_INTERPOLATION_DEPTH} levels of `%(name)s`)",
                    entry.spelled
                ),
                "break the loop of references: shotgunEvents refused this file too",
            ));
        }
        let push = |out: &mut Vec<Piece>, size: &mut usize, piece: Piece| {
            *size += 1 + match &piece {
                Piece::Text(t) | Piece::Env(t) => t.len(),
            };
            if *size > MAX_VALUE_BYTES {
                return Err(fail(
                    format!(
                        "`{}` expands to more than {} KiB (options that refer to others many times)",
                        entry.spelled,
                        MAX_VALUE_BYTES / 1024
                    ),
                    "write the value out, or refer to each option once",
                ));
            }
            out.push(piece);
            Ok(())
        };
        let mut rest = raw;
        while let Some(p) = rest.find('%') {
            push(out, size, Piece::Text(rest[..p].to_owned()))?;
            rest = &rest[p..];
            if let Some(after) = rest.strip_prefix("%%") {
                push(out, size, Piece::Text("%".into()))?;
                rest = after;
            } else if let Some(after) = rest.strip_prefix("%(") {
                let Some((name, tail)) = after
                    .split_once(')')
                    .filter(|(name, tail)| !name.is_empty() && tail.starts_with('s'))
                else {
                    return Err(fail(
                        format!("`{}` has a bad reference `{rest}`", entry.spelled),
                        "write `%(NAME)s` for a variable, and `%%` for a percent sign",
                    ));
                };
                rest = &tail[1..];
                match self.get(section, name) {
                    Some(option) => {
                        self.expand(section, option, &option.raw, depth + 1, out, size)?
                    }
                    None => push(out, size, Piece::Env(name.to_owned()))?,
                }
            } else {
                return Err(fail(
                    format!(
                        "`{}` has a `%` that is neither `%%` nor `%(name)s`: `{rest}`",
                        entry.spelled
                    ),
                    "write `%%` for a percent sign: shotgunEvents refused this value too",
                ));
            }
        }
        push(out, size, Piece::Text(rest.to_owned()))
    }
}

/// What a secret option holds.
pub(crate) fn secret(pieces: &[Piece]) -> SecretValue {
    match pieces {
        [] => SecretValue::Empty,
        [Piece::Env(name)] => SecretValue::Env(name.clone()),
        p if p.iter().all(|p| matches!(p, Piece::Text(_))) => SecretValue::Literal,
        _ => SecretValue::Mixed,
    }
}

// ---------------------------------------------------------------------------------------------
// The conversion.

/// What the conversion needs besides the file.
pub(crate) struct Context<'a> {
    /// `daemon.state_dir` as it is to be written.
    pub(crate) state_dir: String,
    /// Relative paths of the old file are relative to the old daemon's working directory: this.
    pub(crate) cwd: PathBuf,
    /// Reads an environment variable (case-insensitively as a fallback, like `configparser`).
    pub(crate) env: &'a dyn Fn(&str) -> Option<String>,
    /// Whether `--id-file` was given.
    pub(crate) id_file: Option<PathBuf>,
}

/// The converted configuration and what the operator must hear about it.
#[derive(Debug, Default)]
pub(crate) struct Converted {
    /// The TOML file's text.
    pub(crate) toml: String,
    /// What the operator must do before starting sgevents.
    pub(crate) todo: Vec<String>,
    /// Settings with no equivalent, each with why or what replaces it.
    pub(crate) dropped: Vec<String>,
    /// Things worth knowing that need no action.
    pub(crate) info: Vec<String>,
    /// `[plugins] paths`, made absolute.
    pub(crate) legacy_paths: Vec<PathBuf>,
    /// `[plugins] paths` as written (the keys of the incumbent's id file).
    pub(crate) legacy_paths_as_written: Vec<String>,
    /// The site's URL, when it could be read.
    pub(crate) site_url: Option<String>,
    /// `[daemon] eventIdFile`, made absolute.
    pub(crate) event_id_file: Option<PathBuf>,
}

/// The default environment variables for secrets written literally in the old file.
pub(crate) const DEFAULT_KEY_ENV: &str = "SGEVENTS_SCRIPT_KEY";
const DEFAULT_SMTP_USER_ENV: &str = "SGEVENTS_SMTP_USERNAME";
const DEFAULT_SMTP_PASSWORD_ENV: &str = "SGEVENTS_SMTP_PASSWORD";

/// The keys shotgunEvents reads, by section (lowercase, as `configparser` stores them).
const KNOWN: &[(&str, &[&str])] = &[
    (
        "daemon",
        &[
            "pidfile",
            "eventidfile",
            "logmode",
            "logpath",
            "logfile",
            "logging",
            "timing_log",
            "conn_retry_sleep",
            "max_conn_retries",
            "fetch_interval",
            "max_event_batch_size",
        ],
    ),
    (
        "shotgun",
        &[
            "server",
            "name",
            "key",
            "proxy_server",
            "use_session_uuid",
            "ca_certs",
        ],
    ),
    ("plugins", &["paths"]),
    (
        "emails",
        &[
            "enabled", "server", "port", "usetls", "username", "password", "from", "to", "subject",
        ],
    ),
];

/// One TOML table being written.
struct Table {
    header: String,
    lines: Vec<String>,
}

impl Table {
    fn new(header: &str) -> Table {
        Table {
            header: header.to_owned(),
            lines: Vec::new(),
        }
    }

    fn key(&mut self, key: &str, value: String, comment: &str) {
        let mut line = format!("{key} = {value}");
        if !comment.is_empty() {
            let pad = 33usize.saturating_sub(line.chars().count()).max(1);
            line.push_str(&" ".repeat(pad));
            line.push_str("# ");
            line.push_str(&one_line(comment));
        }
        self.lines.push(line);
    }

    fn comment(&mut self, text: &str) {
        self.lines.push(format!("# {}", one_line(text)));
    }

    fn render(&self, out: &mut String) {
        out.push('\n');
        out.push_str(&self.header);
        out.push('\n');
        for line in &self.lines {
            out.push_str(line);
            out.push('\n');
        }
    }
}

/// A TOML basic string.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn quote_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", items.join(", "))
}

/// Text safe for a one-line TOML comment.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Python's `getboolean`.
fn boolean(text: &str) -> Option<bool> {
    match text.trim().to_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// Python's `getint` (`int(text)`).
fn integer(text: &str) -> Option<i64> {
    text.trim().replace('_', "").parse().ok()
}

/// Converts the old configuration.
pub(crate) fn convert(ini: &Ini, ctx: &Context<'_>) -> Result<Converted, IniError> {
    let mut c = Converter {
        ini,
        ctx,
        out: Converted::default(),
        secrets: Vec::new(),
    };
    c.run()?;
    Ok(c.out)
}

struct Converter<'a> {
    ini: &'a Ini,
    ctx: &'a Context<'a>,
    out: Converted,
    /// The variables secrets are read from, for the reminder to export them.
    secrets: Vec<String>,
}

/// An option's value after interpolation and the environment.
struct Read {
    /// `[section] key = raw`, for comments (never used for secrets).
    origin: String,
    /// The value, if every variable it uses is set.
    value: Option<String>,
    /// Variables it read.
    vars: Vec<String>,
    /// Variables it needs that are not set.
    missing: Vec<String>,
}

impl Converter<'_> {
    fn read(&self, section: &str, key: &str) -> Result<Option<Read>, IniError> {
        let Some(entry) = self.ini.get(section, key) else {
            return Ok(None);
        };
        let pieces = self.ini.pieces(section, entry)?;
        let (mut value, mut vars, mut missing) = (String::new(), Vec::new(), Vec::new());
        for piece in pieces {
            match piece {
                Piece::Text(t) => value.push_str(&t),
                Piece::Env(name) => match (self.ctx.env)(&name) {
                    Some(v) => {
                        value.push_str(&v);
                        vars.push(name);
                    }
                    None => missing.push(name),
                },
            }
        }
        Ok(Some(Read {
            origin: format!("[{section}] {} = {}", entry.spelled, entry.raw),
            value: missing.is_empty().then(|| value.trim().to_owned()),
            vars,
            missing,
        }))
    }

    /// Where a value came from, for its comment: the option, and the variables it read.
    fn from(read: &Read) -> String {
        let mut text = format!("from {}", read.origin);
        if !read.vars.is_empty() {
            let vars: Vec<String> = read.vars.iter().map(|v| format!("${v}")).collect();
            let _ = write!(text, " ({} when migrated)", vars.join(", "));
        }
        text
    }

    fn unset_note(&mut self, read: &Read, key: &str) {
        let vars: Vec<String> = read.missing.iter().map(|v| format!("${v}")).collect();
        self.out.todo.push(format!(
            "`{key}` is not written: `{}` reads {}, which {} not set where `sgevents migrate` ran; set `{key}` by hand",
            read.origin,
            vars.join(", "),
            if vars.len() == 1 { "is" } else { "are" }
        ));
    }

    /// A path of the old file, made absolute against the old daemon's working directory.
    fn absolute(&mut self, what: &str, text: &str) -> PathBuf {
        let path = Path::new(text);
        if path.is_absolute() {
            return path.to_path_buf();
        }
        let abs = self.ctx.cwd.join(path);
        self.out.info.push(format!(
            "{what} `{text}` is relative to the directory shotgunEvents was started from; written as `{}` (relative to where `sgevents migrate` ran)",
            abs.display()
        ));
        abs
    }

    fn run(&mut self) -> Result<(), IniError> {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "# sgevents configuration, converted by `sgevents migrate` from the shotgunEvents\n\
             # configuration {}.\n\
             # Check it with `sgevents -c <this file> check`; the README's Configuration section\n\
             # describes every key. \"not carried over\" comments list the old settings that\n\
             # sgevents has no equivalent for.",
            one_line(self.ini.file())
        );
        let daemon = self.daemon()?;
        let source = self.source()?;
        let plugins = self.plugins()?;
        let alerts = self.alerts()?;
        let others = self.others();
        for table in [Some(daemon), Some(source), Some(plugins), alerts, others]
            .into_iter()
            .flatten()
        {
            table.render(&mut text);
        }
        self.out.toml = text;
        if !self.secrets.is_empty() {
            self.out.todo.insert(
                0,
                format!(
                    "export {} in the daemon's environment (its service file): sgevents reads secrets only from there",
                    self.secrets.join(", ")
                ),
            );
        }
        Ok(())
    }

    fn daemon(&mut self) -> Result<Table, IniError> {
        let mut t = Table::new("[daemon]");
        t.key(
            "state_dir",
            quote(&self.ctx.state_dir),
            "the state database (state.db) and its lock; a relative path is relative to this file's folder",
        );

        match self.read("daemon", "logging")? {
            None => {
                t.key(
                    "log_level",
                    quote("info"),
                    "[daemon] logging was not set (shotgunEvents required it)",
                );
            }
            Some(read) => {
                let level = read.value.as_deref().and_then(integer);
                let word = match level {
                    Some(n) if n <= 10 => "debug",
                    Some(n) if n <= 20 => "info",
                    Some(n) if n <= 30 => "warn",
                    Some(_) => "error",
                    None => {
                        self.out.todo.push(format!(
                            "`{}` is not a logging level (10, 20, 30, 40 or 50); `daemon.log_level` is \"info\"",
                            read.origin
                        ));
                        "info"
                    }
                };
                if level == Some(50) {
                    self.out.info.push(
                        "[daemon] logging = 50 (critical) became log_level = \"error\": sgevents has no critical level".into(),
                    );
                } else if level.is_some_and(|n| ![10, 20, 30, 40].contains(&n)) {
                    self.out.info.push(format!(
                        "`{}` is between the usual levels; it became log_level = \"{word}\"",
                        read.origin
                    ));
                }
                t.key("log_level", quote(word), &Self::from(&read));
            }
        }

        // Log files: logPath is the folder; without it, logFile was a path of its own.
        let log_path = self.read("daemon", "logpath")?;
        let log_file = self.read("daemon", "logfile")?;
        let mut log_dir: Option<(PathBuf, String)> = None;
        if let Some(read) = &log_path {
            match &read.value {
                Some(v) if !v.is_empty() => {
                    let dir = self.absolute("[daemon] logPath", v);
                    log_dir = Some((dir, Self::from(read)));
                }
                Some(_) => {}
                None => self.unset_note(read, "daemon.log_dir"),
            }
        }
        if log_dir.is_none() {
            if let Some(read) = &log_file {
                if let Some(parent) = read
                    .value
                    .as_deref()
                    .map(Path::new)
                    .and_then(Path::parent)
                    .filter(|p| !p.as_os_str().is_empty())
                {
                    let dir = self.absolute(
                        "the folder of [daemon] logFile",
                        &parent.display().to_string(),
                    );
                    log_dir = Some((dir, format!("the folder of {}", Self::from(read))));
                }
            }
        }
        let per_plugin = match self.read("daemon", "logmode")? {
            None => None,
            Some(read) => match read.value.as_deref().and_then(integer) {
                Some(mode) => Some((mode != 0, Self::from(&read))),
                None => {
                    self.out.todo.push(format!(
                        "`{}` is not 0 or 1; `daemon.log_per_plugin` is not written",
                        read.origin
                    ));
                    None
                }
            },
        };
        let timing = self
            .read("daemon", "timing_log")?
            .map(|read| (read.value.as_deref() == Some("on"), Self::from(&read)));
        match &log_dir {
            Some((dir, from)) => {
                t.key("log_dir", quote(&dir.display().to_string()), from);
                if let Some((on, from)) = &per_plugin {
                    let what = if *on {
                        "a file per plugin"
                    } else {
                        "plugins log to sgevents.log"
                    };
                    t.key("log_per_plugin", on.to_string(), &format!("{from}: {what}"));
                }
                let (on, from) = timing.unwrap_or((
                    false,
                    "[daemon] timing_log was not set: off, as in shotgunEvents".into(),
                ));
                t.key("timing_log", on.to_string(), &from);
            }
            None => {
                t.comment(
                    "log_dir is not set: the old file named no log folder, so sgevents logs to stderr only",
                );
                self.out.todo.push(
                    "no log folder could be derived from [daemon] logPath / logFile: sgevents logs to stderr only; set `daemon.log_dir` (with `log_per_plugin` and `timing_log`) for log files".into(),
                );
            }
        }
        if let Some(read) = &log_file {
            self.drop_key(
                &mut t,
                read,
                "sgevents names its files itself: sgevents.log, plugins/<plugin>.log and timing.log in `log_dir`, rotated daily",
            );
        }
        if let Some(read) = self.read("daemon", "pidfile")? {
            self.drop_key(
                &mut t,
                &read,
                "sgevents writes no pid file: <state_dir>/sgevents.lock holds the running daemon's pid under a lock that a kill -9 cannot leave stale, and a service manager (systemd) tracks the process",
            );
        }
        if let Some(read) = self.read("daemon", "eventidfile")? {
            let why = match &self.ctx.id_file {
                Some(_) => {
                    "the state lives in <state_dir>/state.db; `sgevents migrate --id-file` imported the old state into it"
                }
                None => {
                    "the state lives in <state_dir>/state.db; `sgevents migrate --id-file` imports the old state into it"
                }
            };
            self.drop_key(&mut t, &read, why);
            if let Some(v) = read.value.as_deref().filter(|v| !v.is_empty()) {
                let path = self.absolute("[daemon] eventIdFile", v);
                if self.ctx.id_file.is_none() {
                    self.out.todo.push(format!(
                        "no state was migrated: to resume where shotgunEvents stopped (rather than at the newest event), stop it and run `sgevents migrate` again with `--id-file {}`",
                        path.display()
                    ));
                }
                self.out.event_id_file = Some(path);
            }
        }
        for key in ["max_conn_retries", "conn_retry_sleep"] {
            if let Some(read) = self.read("daemon", key)? {
                self.drop_key(
                    &mut t,
                    &read,
                    "the ShotGrid source retries a failing request with a backoff of at most 60s and never gives up; it logs an error (and mails, with [alerts]) once the site has failed for `source.alert_after` (5m)",
                );
            }
        }
        self.unknown_keys(&mut t, "daemon");
        Ok(t)
    }

    fn source(&mut self) -> Result<Table, IniError> {
        let mut t = Table::new("[source]");
        t.key(
            "kind",
            quote("shotgrid"),
            "the site's event log, polled over REST API v1",
        );
        match self.read("shotgun", "server")? {
            Some(read) => match read.value.as_deref() {
                Some("") => {
                    t.comment("url: [shotgun] server is empty in the old file");
                    self.out.todo.push(
                        "[shotgun] server is empty: set `source.url` to the site's address".into(),
                    );
                }
                Some(url) => {
                    let url = url.trim_end_matches('/').to_owned();
                    t.key("url", quote(&url), &Self::from(&read));
                    self.out.site_url = Some(url);
                }
                None => {
                    t.comment(&format!("url: {} (not set when migrated)", read.origin));
                    self.unset_note(&read, "source.url");
                }
            },
            None => {
                t.comment("url: [shotgun] server is missing from the old file");
                self.out.todo.push(
                    "[shotgun] server is missing: set `source.url` to the site's address".into(),
                );
            }
        }
        match self.read("shotgun", "name")? {
            Some(read) => match read.value.as_deref() {
                Some(name) if !name.is_empty() => {
                    t.key("script_name", quote(name), &Self::from(&read));
                }
                Some(_) => {
                    t.comment("script_name: [shotgun] name is empty in the old file");
                    self.out
                        .todo
                        .push("[shotgun] name is empty: set `source.script_name`".into());
                }
                None => {
                    t.comment(&format!(
                        "script_name: {} (not set when migrated)",
                        read.origin
                    ));
                    self.unset_note(&read, "source.script_name");
                }
            },
            None => {
                t.comment("script_name: [shotgun] name is missing from the old file");
                self.out
                    .todo
                    .push("[shotgun] name is missing: set `source.script_name`".into());
            }
        }
        let (var, comment) =
            self.secret_env("shotgun", "key", DEFAULT_KEY_ENV, "the script's key")?;
        t.key("script_key_env", quote(&var), &comment);

        let interval = match self.read("daemon", "fetch_interval")? {
            Some(read) => match read.value.as_deref().and_then(integer) {
                Some(n) if n >= 1 => (format!("{n}s"), Self::from(&read)),
                Some(n) => {
                    self.out.info.push(format!(
                        "`{}`: sgevents waits at least 1s between polls of a quiet site",
                        read.origin
                    ));
                    (
                        "1s".into(),
                        format!(
                            "{}: {n}s is not allowed, 1s is the least",
                            Self::from(&read)
                        ),
                    )
                }
                None => {
                    self.out.todo.push(format!(
                        "`{}` is not a number of seconds; `source.fetch_interval` is \"5s\"",
                        read.origin
                    ));
                    (
                        "5s".into(),
                        "[daemon] fetch_interval is not a number".into(),
                    )
                }
            },
            None => ("5s".into(), "[daemon] fetch_interval was not set".into()),
        };
        t.key("fetch_interval", quote(&interval.0), &interval.1);
        let batch = match self.read("daemon", "max_event_batch_size")? {
            Some(read) => match read.value.as_deref().and_then(integer) {
                Some(n) if (1..=5000).contains(&n) => (n, Self::from(&read)),
                Some(n) if n > 5000 => {
                    self.out.info.push(format!(
                        "`{}`: the site returns at most 5000 events per request, so `source.batch_size` is 5000",
                        read.origin
                    ));
                    (5000, format!("{}: 5000 is the most", Self::from(&read)))
                }
                _ => {
                    self.out.todo.push(format!(
                        "`{}` is not a positive number; `source.batch_size` is 500",
                        read.origin
                    ));
                    (500, "shotgunEvents' default".into())
                }
            },
            None => (
                500,
                "[daemon] max_event_batch_size was not set: shotgunEvents' default".into(),
            ),
        };
        t.key("batch_size", batch.0.to_string(), &batch.1);
        t.key(
            "gap_timeout",
            quote("5m"),
            "how long a missing id is waited for; shotgunEvents' fixed BACKLOG_TIMEOUT",
        );
        t.comment(
            "start_at = \"latest\" (the default): a journal without migrated state starts at the newest event, like shotgunEvents without its id file",
        );
        if let Some(read) = self.read("shotgun", "proxy_server")? {
            match read.value.as_deref() {
                Some("") => {}
                Some(proxy) => {
                    let proxy = self.proxy(proxy);
                    // Not `Self::from`: the old value may hold a password.
                    t.key(
                        "proxy",
                        quote(&proxy),
                        &format!("from [shotgun] proxy_server{}", Self::proxy_note(&read)),
                    );
                }
                None => {
                    t.comment("proxy: [shotgun] proxy_server reads variables that were not set when migrated");
                    let read = Read {
                        origin: "[shotgun] proxy_server".into(),
                        ..read
                    };
                    self.unset_note(&read, "source.proxy");
                }
            }
        }
        if let Some(read) = self.read("shotgun", "ca_certs")? {
            match read.value.as_deref() {
                Some("") => {}
                Some(path) => {
                    let path = self.absolute("[shotgun] ca_certs", path);
                    t.key(
                        "ca_file",
                        quote(&path.display().to_string()),
                        &Self::from(&read),
                    );
                }
                None => self.unset_note(&read, "source.ca_file"),
            }
        }
        self.unknown_keys(&mut t, "shotgun");
        Ok(t)
    }

    fn proxy_note(read: &Read) -> String {
        if read.vars.is_empty() {
            String::new()
        } else {
            let vars: Vec<String> = read.vars.iter().map(|v| format!("${v}")).collect();
            format!(" ({} when migrated)", vars.join(", "))
        }
    }

    /// shotgun_api3's proxy is `[user:password@]host[:port]`; sgevents takes a URL. Credentials
    /// are not written into the file.
    fn proxy(&mut self, text: &str) -> String {
        let (scheme, rest) = match text.split_once("://") {
            Some((scheme, rest)) => (scheme.to_owned(), rest),
            None => ("http".to_owned(), text),
        };
        let rest = match rest.rsplit_once('@') {
            Some((_, host)) => {
                self.out.todo.push(
                    "[shotgun] proxy_server has a user and password, which were not copied: add them to `source.proxy` as http://user:password@host:port if you accept them in the file".into(),
                );
                host
            }
            None => rest,
        };
        format!("{scheme}://{rest}")
    }

    /// The environment variable a secret is to be read from, and the comment saying why.
    fn secret_env(
        &mut self,
        section: &str,
        key: &str,
        default: &str,
        what: &str,
    ) -> Result<(String, String), IniError> {
        let Some(entry) = self.ini.get(section, key) else {
            self.out.todo.push(format!(
                "[{section}] {key} is missing: export {what} as ${default} in the daemon's environment"
            ));
            return Ok((default.to_owned(), format!("[{section}] {key} was not set")));
        };
        let spelled = entry.spelled.clone();
        let pieces = self.ini.pieces(section, entry)?;
        Ok(match secret(&pieces) {
            SecretValue::Env(var) => {
                self.secrets.push(format!("${var} ({what})"));
                let comment = format!(
                    "from [{section}] {spelled} = %({var})s: the daemon reads {what} from ${var}"
                );
                (var, comment)
            }
            SecretValue::Literal => {
                self.out.todo.push(format!(
                    "[{section}] {spelled} holds {what} itself, which was not copied: export it as ${default} in the daemon's environment (or its service file)"
                ));
                (
                    default.to_owned(),
                    format!(
                        "[{section}] {spelled} held {what} itself (not copied): export it as ${default}"
                    ),
                )
            }
            SecretValue::Mixed => {
                self.out.todo.push(format!(
                    "[{section}] {spelled} builds {what} from text and variables, which was not copied: export the whole value as ${default}"
                ));
                (
                    default.to_owned(),
                    format!(
                        "[{section}] {spelled} mixed text and variables (not copied): export ${default}"
                    ),
                )
            }
            SecretValue::Empty => {
                self.out.todo.push(format!(
                    "[{section}] {spelled} is empty: export {what} as ${default} in the daemon's environment"
                ));
                (
                    default.to_owned(),
                    format!("[{section}] {spelled} was empty"),
                )
            }
        })
    }

    fn plugins(&mut self) -> Result<Table, IniError> {
        let mut t = Table::new("[plugins]");
        match self.read("plugins", "paths")? {
            Some(read) => match read.value.clone() {
                Some(value) => {
                    let written: Vec<String> = value
                        .split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect();
                    let paths: Vec<PathBuf> = written
                        .iter()
                        .map(|p| self.absolute("[plugins] paths entry", p))
                        .collect();
                    let shown: Vec<String> =
                        paths.iter().map(|p| p.display().to_string()).collect();
                    t.key(
                        "legacy_paths",
                        quote_list(&shown),
                        &format!(
                            "{}: every *.py there runs as a shotgunEvents plugin",
                            Self::from(&read)
                        ),
                    );
                    for path in &paths {
                        if !path.is_dir() {
                            self.out.todo.push(format!(
                                "the plugin folder `{}` does not exist here: create it or correct `plugins.legacy_paths`",
                                path.display()
                            ));
                        }
                    }
                    self.out.legacy_paths = paths;
                    self.out.legacy_paths_as_written = written;
                }
                None => {
                    t.comment(&format!(
                        "legacy_paths: {} (not set when migrated)",
                        read.origin
                    ));
                    self.unset_note(&read, "plugins.legacy_paths");
                }
            },
            None => {
                t.comment("legacy_paths: [plugins] paths is missing from the old file");
                self.out.todo.push("[plugins] paths is missing: set `plugins.legacy_paths` to the folders of the shotgunEvents plugins".into());
            }
        }
        if let Some(read) = self.read("shotgun", "use_session_uuid")? {
            match read.value.as_deref().and_then(boolean) {
                Some(on) => t.key("use_session_uuid", on.to_string(), &Self::from(&read)),
                None => self.out.todo.push(format!(
                    "`{}` is not a boolean; `plugins.use_session_uuid` is not written (off)",
                    read.origin
                )),
            }
        }
        t.comment(
            "paths = [...]: folders of executables speaking the sgevents protocol (see the README), none yet",
        );
        self.unknown_keys(&mut t, "plugins");
        Ok(t)
    }

    fn alerts(&mut self) -> Result<Option<Table>, IniError> {
        if !self.ini.has_section("emails") {
            self.out
                .info
                .push("the old file has no [emails] section: no [alerts] written".into());
            return Ok(None);
        }
        let server = self.read("emails", "server")?;
        let enabled = match self.read("emails", "enabled")? {
            Some(read) => match read.value.as_deref().and_then(boolean) {
                Some(on) => on,
                None => {
                    self.out.todo.push(format!(
                        "`{}` is not a boolean; [alerts] is not written",
                        read.origin
                    ));
                    false
                }
            },
            // Older shotgunEvents sent mail whenever a server was set.
            None => server
                .as_ref()
                .and_then(|r| r.value.as_deref())
                .is_some_and(|v| !v.is_empty()),
        };
        let mut t = Table::new("[alerts]");
        if !enabled {
            self.out
                .info
                .push("[emails] is not enabled: no [alerts] written".into());
            let mut note =
                Table::new("# [alerts]: not written, [emails] was not enabled in the old file");
            self.unknown_keys(&mut note, "emails");
            return Ok(Some(note));
        }
        match server {
            Some(read) if read.value.as_deref().is_some_and(|v| !v.is_empty()) => {
                t.key(
                    "smtp_host",
                    quote(read.value.as_deref().unwrap_or_default()),
                    &Self::from(&read),
                );
            }
            Some(read) if read.value.is_none() => {
                t.comment(&format!(
                    "smtp_host: {} (not set when migrated)",
                    read.origin
                ));
                self.unset_note(&read, "alerts.smtp_host");
            }
            _ => {
                t.comment("smtp_host: [emails] server is empty in the old file");
                self.out
                    .todo
                    .push("[emails] server is empty: set `alerts.smtp_host`".into());
            }
        }
        let port = match self.read("emails", "port")? {
            Some(read) => match read.value.as_deref().and_then(integer) {
                Some(p) if (1..=65535).contains(&p) => (p, Self::from(&read)),
                _ => {
                    self.out.todo.push(format!(
                        "`{}` is not a port; `alerts.smtp_port` is 25",
                        read.origin
                    ));
                    (25, "[emails] port is not a port number".into())
                }
            },
            None => (
                25,
                "[emails] port was not set: 25, as in shotgunEvents".into(),
            ),
        };
        t.key("smtp_port", port.0.to_string(), &port.1);
        let use_tls = match self.read("emails", "usetls")? {
            Some(read) => match read.value.as_deref().and_then(boolean) {
                Some(on) => Some((on, read.origin)),
                None => {
                    self.out.todo.push(format!(
                        "`{}` is not a boolean; `alerts.tls` is \"none\"",
                        read.origin
                    ));
                    None
                }
            },
            None => None,
        };
        let has_user = self
            .ini
            .get("emails", "username")
            .is_some_and(|e| !e.raw.is_empty());
        match use_tls {
            Some((true, origin)) if has_user => {
                t.key("tls", quote("starttls"), &format!("from {origin}"))
            }
            Some((true, origin)) => {
                self.out.info.push(format!(
                    "`{origin}`, but shotgunEvents used STARTTLS only with a username, and there is none: `alerts.tls` is \"none\", as the old daemon behaved; set \"starttls\" if the server supports it"
                ));
                t.key(
                    "tls",
                    quote("none"),
                    &format!("from {origin} without a username: shotgunEvents sent in the clear"),
                );
            }
            // shotgunEvents logged in without encryption; sgevents never sends a password in the
            // clear (its configuration refuses credentials with tls = "none").
            _ if has_user => {
                self.out.todo.push(
                    "shotgunEvents logged in to the mail server unencrypted ([emails] useTLS off, with a username); sgevents never sends a password in the clear, so `alerts.tls` is \"starttls\": check that the server offers it (or use \"implicit\", usually on port 465)".into(),
                );
                t.key(
                    "tls",
                    quote("starttls"),
                    "[emails] useTLS was off, with a login: see the report",
                );
            }
            Some((false, origin)) => t.key("tls", quote("none"), &format!("from {origin}")),
            None => t.key(
                "tls",
                quote("none"),
                "[emails] useTLS was not set: no TLS, as in shotgunEvents",
            ),
        }
        if has_user {
            let (var, comment) = self.secret_env(
                "emails",
                "username",
                DEFAULT_SMTP_USER_ENV,
                "the SMTP user name",
            )?;
            t.key("username_env", quote(&var), &comment);
            let (var, comment) = self.secret_env(
                "emails",
                "password",
                DEFAULT_SMTP_PASSWORD_ENV,
                "the SMTP password",
            )?;
            t.key("password_env", quote(&var), &comment);
        } else if self
            .ini
            .get("emails", "password")
            .is_some_and(|e| !e.raw.is_empty())
        {
            self.out.info.push("[emails] password is set without a username: shotgunEvents never used it, and it was not copied".into());
        }
        match self.read("emails", "from")? {
            Some(read) if read.value.as_deref().is_some_and(|v| !v.is_empty()) => {
                t.key(
                    "from",
                    quote(read.value.as_deref().unwrap_or_default()),
                    &Self::from(&read),
                );
            }
            Some(read) if read.value.is_none() => self.unset_note(&read, "alerts.from"),
            _ => self
                .out
                .todo
                .push("[emails] from is empty: set `alerts.from`".into()),
        }
        match self.read("emails", "to")? {
            Some(read) if read.value.is_some() => {
                let to: Vec<String> = read
                    .value
                    .as_deref()
                    .unwrap_or_default()
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect();
                if to.is_empty() {
                    self.out
                        .todo
                        .push("[emails] to is empty: set `alerts.to`".into());
                } else {
                    t.key("to", quote_list(&to), &Self::from(&read));
                }
            }
            Some(read) => self.unset_note(&read, "alerts.to"),
            None => self
                .out
                .todo
                .push("[emails] to is missing: set `alerts.to`".into()),
        }
        if let Some(read) = self.read("emails", "subject")? {
            match read.value.as_deref() {
                Some(subject) => t.key("subject_prefix", quote(subject), &Self::from(&read)),
                None => self.unset_note(&read, "alerts.subject_prefix"),
            }
        }
        self.unknown_keys(&mut t, "emails");
        Ok(Some(t))
    }

    /// Sections shotgunEvents does not read.
    fn others(&mut self) -> Option<Table> {
        let mut lines = Vec::new();
        for section in self.ini.sections() {
            if KNOWN.iter().any(|(name, _)| *name == section.name) {
                continue;
            }
            let keys: Vec<&str> = section.entries.iter().map(|e| e.spelled.as_str()).collect();
            let line = format!(
                "[{}] ({}): not read by shotgunEvents itself (a fork's or a plugin's?); sgevents has no equivalent",
                section.name,
                if keys.is_empty() {
                    "empty".to_owned()
                } else {
                    keys.join(", ")
                }
            );
            self.out.dropped.push(line.clone());
            lines.push(format!("# not carried over: {}", one_line(&line)));
        }
        (!lines.is_empty()).then(|| Table {
            header: "# Other sections of the old file".into(),
            lines,
        })
    }

    /// Lists a known setting with no equivalent, in the table and the report.
    fn drop_key(&mut self, t: &mut Table, read: &Read, why: &str) {
        t.comment(&format!("not carried over: {}: {why}", read.origin));
        self.out.dropped.push(format!("{}: {why}", read.origin));
    }

    /// Lists the keys of `section` that shotgunEvents does not read (names only: an unknown
    /// value may be a secret).
    fn unknown_keys(&mut self, t: &mut Table, section: &str) {
        let known = KNOWN
            .iter()
            .find(|(name, _)| *name == section)
            .map_or(&[][..], |(_, keys)| keys);
        let Some(s) = self.ini.sections().iter().find(|s| s.name == section) else {
            return;
        };
        for entry in &s.entries {
            if !known.contains(&entry.key.as_str()) {
                let line = format!(
                    "[{section}] {}: not a shotgunEvents setting; sgevents has no equivalent",
                    entry.spelled
                );
                t.comment(&format!("not carried over: {line}"));
                self.out.dropped.push(line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ini(text: &str) -> Ini {
        parse(Path::new("shotgunEventDaemon.conf"), text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn value(ini: &Ini, section: &str, key: &str) -> Vec<Piece> {
        let entry = ini.get(section, key).unwrap_or_else(|| panic!("no {key}"));
        ini.pieces(section, entry).unwrap_or_else(|e| panic!("{e}"))
    }

    fn text(s: &str) -> Vec<Piece> {
        vec![Piece::Text(s.into())]
    }

    #[test]
    fn sections_keys_delimiters_and_comments() {
        let i = ini(
            "# leading comment\n; another\n[daemon]\npidFile: /var/run/x.pid\n\
                     LogMode = 1\n  fetch_interval=5\n# comment = not a key\n    ; indented comment\n\
                     logFile = daemon # not a comment\nempty =\ncolon = a: b = c\n\n[shotgun]\nserver = https://s\n",
        );
        assert_eq!(i.sections().len(), 2);
        assert_eq!(value(&i, "daemon", "pidfile"), text("/var/run/x.pid"));
        assert_eq!(value(&i, "daemon", "PIDFILE"), text("/var/run/x.pid"));
        assert_eq!(
            i.get("daemon", "logmode").map(|e| e.spelled.as_str()),
            Some("LogMode")
        );
        // More indented than the key before it: a continuation line, as configparser reads it.
        assert_eq!(value(&i, "daemon", "logmode"), text("1\nfetch_interval=5"));
        assert!(i.get("daemon", "fetch_interval").is_none());
        assert_eq!(
            value(&i, "daemon", "logfile"),
            text("daemon # not a comment")
        );
        assert_eq!(value(&i, "daemon", "empty"), vec![]);
        assert_eq!(value(&i, "daemon", "colon"), text("a: b = c"));
        assert!(i.get("daemon", "comment").is_none());
        assert!(
            i.get("Daemon", "pidfile").is_none(),
            "section names are case-sensitive"
        );
        assert_eq!(i.get("shotgun", "server").map(|e| e.line), Some(14));
    }

    #[test]
    fn continuation_lines_and_defaults() {
        let i = ini(
            "[DEFAULT]\nroot = /studio\n[plugins]\npaths = /a,\n    /b,\n\n  /c\n\n# c\nnext = 1\n\
                     [daemon]\nlogPath = %(root)s/logs\n",
        );
        assert_eq!(value(&i, "plugins", "paths"), text("/a,\n/b,\n\n/c"));
        assert_eq!(value(&i, "plugins", "next"), text("1"));
        assert_eq!(value(&i, "daemon", "logpath"), text("/studio/logs"));
        assert_eq!(
            value(&i, "daemon", "root"),
            text("/studio"),
            "[DEFAULT] is inherited"
        );
        let i = ini("[a]\nx = 1\n\n   # a comment inside\n  cont\n");
        assert_eq!(value(&i, "a", "x"), text("1\n\ncont"));
    }

    #[test]
    fn interpolation_keeps_environment_variables() {
        let i = ini(
            "[shotgun]\nserver = %(SG_ED_SITE_URL)s\nkey = %(SG_ED_API_KEY)s\nname = bot\n\
                     alias = %(name)s-%(SUFFIX)s 100%%\nchain = %(key)s\nloop = %(loop)s\nbad = 5%\nbad2 = %(x)d\n",
        );
        assert_eq!(
            value(&i, "shotgun", "server"),
            vec![Piece::Env("SG_ED_SITE_URL".into())]
        );
        assert_eq!(
            value(&i, "shotgun", "alias"),
            vec![
                Piece::Text("bot-".into()),
                Piece::Env("SUFFIX".into()),
                Piece::Text(" 100%".into())
            ]
        );
        assert_eq!(
            secret(&value(&i, "shotgun", "chain")),
            SecretValue::Env("SG_ED_API_KEY".into())
        );
        assert_eq!(secret(&value(&i, "shotgun", "name")), SecretValue::Literal);
        assert_eq!(secret(&value(&i, "shotgun", "alias")), SecretValue::Mixed);
        for key in ["loop", "bad", "bad2"] {
            let e = i.get("shotgun", key).expect("entry");
            let err = i.pieces("shotgun", e).expect_err(key).to_string();
            assert!(err.starts_with("shotgunEventDaemon.conf:"), "{err}");
            assert!(err.contains("\nhint: "), "{err}");
        }
    }

    #[test]
    fn malformed_files_name_the_line() {
        for (text, want) in [
            (
                "key = 1\n",
                "shotgunEventDaemon.conf:1: `key = 1` comes before any `[section]`",
            ),
            (
                "[a]\njust words\n",
                "shotgunEventDaemon.conf:2: `just words` is not `key = value`",
            ),
            (
                "[a]\nx = 1\n[a]\n",
                "shotgunEventDaemon.conf:3: section `[a]` appears twice (first on line 1)",
            ),
            (
                "[a]\nx = 1\nX: 2\n",
                "shotgunEventDaemon.conf:3: `X` is set twice in this section (first on line 2)",
            ),
            ("[a]\n= 1\n", "`= 1` has no key"),
        ] {
            let err = parse(Path::new("shotgunEventDaemon.conf"), text)
                .expect_err(text)
                .to_string();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(err.contains("\nhint: "), "{err}");
        }
    }

    fn convert_with(text: &str, env: &[(&str, &str)]) -> Converted {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |name: &str| {
            env.iter()
                .find(|(k, _)| k == name)
                .or_else(|| env.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
                .map(|(_, v)| v.clone())
        };
        let ctx = Context {
            state_dir: "var".into(),
            cwd: PathBuf::from("/srv/sg"),
            env: &lookup,
            id_file: None,
        };
        convert(&ini(text), &ctx).unwrap_or_else(|e| panic!("{e}"))
    }

    const EXAMPLE: &str = "[daemon]\npidFile: /var/log/sged/sged.pid\neventIdFile: /var/log/sged/sged.id\nlogMode: 1\n\
        logPath: /var/log/sged\nlogFile: shotgunEventDaemon\nlogging: 20\ntiming_log: on\nconn_retry_sleep = 60\n\
        max_conn_retries = 5\nfetch_interval = 3\nmax_event_batch_size = 250\n\n\
        [shotgun]\nserver: %(SG_ED_SITE_URL)s\nname: %(SG_ED_SCRIPT_NAME)s\nkey: %(SG_ED_API_KEY)s\n\
        proxy_server: proxy.lan:3128\nuse_session_uuid: True\n\n[plugins]\npaths: /opt/sg/plugins, relative/plugins\n\n\
        [emails]\nenabled: yes\nserver: smtp.lan\nport: 587\nuseTLS: True\nusername: %(SG_ED_EMAIL_USERNAME)s\n\
        password: hunter2-literal\nfrom: daemon@studio\nto: a@studio, b@studio\nsubject: [SG]\ncustom_thing: secret?\n\n\
        [sentry]\nsentry_dsn: https://key@sentry/1\n";

    #[test]
    fn the_example_converts_to_every_key() {
        let c = convert_with(
            EXAMPLE,
            &[
                ("SG_ED_SITE_URL", "https://studio.shotgrid.autodesk.com/"),
                ("sg_ed_script_name", "event_daemon"),
            ],
        );
        let t = &c.toml;
        for line in [
            "state_dir = \"var\"",
            "log_level = \"info\"",
            "log_dir = \"/var/log/sged\"",
            "log_per_plugin = true",
            "timing_log = true",
            "kind = \"shotgrid\"",
            "url = \"https://studio.shotgrid.autodesk.com\"",
            "script_name = \"event_daemon\"",
            "script_key_env = \"SG_ED_API_KEY\"",
            "fetch_interval = \"3s\"",
            "batch_size = 250",
            "gap_timeout = \"5m\"",
            "proxy = \"http://proxy.lan:3128\"",
            "legacy_paths = [\"/opt/sg/plugins\", \"/srv/sg/relative/plugins\"]",
            "use_session_uuid = true",
            "smtp_host = \"smtp.lan\"",
            "smtp_port = 587",
            "tls = \"starttls\"",
            "username_env = \"SG_ED_EMAIL_USERNAME\"",
            "password_env = \"SGEVENTS_SMTP_PASSWORD\"",
            "from = \"daemon@studio\"",
            "to = [\"a@studio\", \"b@studio\"]",
            "subject_prefix = \"[SG]\"",
        ] {
            assert!(
                t.lines().any(|l| l.starts_with(line)),
                "missing `{line}` in:\n{t}"
            );
        }
        assert!(
            !t.contains("hunter2"),
            "a literal password is never copied:\n{t}"
        );
        assert!(
            !t.contains("secret?") && !t.contains("sentry/1"),
            "unknown values are not shown:\n{t}"
        );
        assert!(t.contains("# not carried over: [daemon] pidFile = /var/log/sged/sged.pid: sgevents writes no pid file"));
        assert!(
            t.contains("# not carried over: [emails] custom_thing: not a shotgunEvents setting")
        );
        assert!(t.contains("# not carried over: [sentry] (sentry_dsn)"));
        assert!(t.contains("($SG_ED_SITE_URL when migrated)"));
        let toml: toml::Table = toml::from_str(t).unwrap_or_else(|e| panic!("{e}\n{t}"));
        assert_eq!(toml["source"]["batch_size"].as_integer(), Some(250));
        assert_eq!(
            c.site_url.as_deref(),
            Some("https://studio.shotgrid.autodesk.com")
        );
        assert_eq!(
            c.legacy_paths_as_written,
            ["/opt/sg/plugins", "relative/plugins"]
        );
        assert_eq!(
            c.event_id_file.as_deref(),
            Some(Path::new("/var/log/sged/sged.id"))
        );
        let dropped = c.dropped.join("\n");
        for key in [
            "pidFile",
            "eventIdFile",
            "logFile",
            "conn_retry_sleep",
            "max_conn_retries",
            "custom_thing",
            "[sentry]",
        ] {
            assert!(dropped.contains(key), "{key} in:\n{dropped}");
        }
        let todo = c.todo.join("\n");
        assert!(
            todo.contains(
                "password itself, which was not copied: export it as $SGEVENTS_SMTP_PASSWORD"
            ),
            "{todo}"
        );
        assert!(todo.contains("--id-file /var/log/sged/sged.id"), "{todo}");
        assert!(!todo.contains("hunter2"));
    }

    #[test]
    fn literal_keys_unset_variables_and_odd_values() {
        let c = convert_with(
            "[daemon]\nlogging = 50\nlogFile = /var/log/sg/daemon.log\nlogMode = 0\nfetch_interval = 0\nmax_event_batch_size = 9000\n\
             [shotgun]\nserver = %(SITE)s\nname = bot\nkey = 0123abcd-literal\nproxy_server = http://me:pw@proxy:8080\nuse_session_uuid = off\n\
             [plugins]\npaths = /p\n[emails]\nenabled = False\nserver = smtp\n",
            &[],
        );
        let t = &c.toml;
        assert!(
            !t.contains("0123abcd"),
            "a literal key is never copied:\n{t}"
        );
        assert!(
            !t.contains("me:pw"),
            "proxy credentials are not copied:\n{t}"
        );
        assert!(
            t.contains("script_key_env = \"SGEVENTS_SCRIPT_KEY\""),
            "{t}"
        );
        assert!(t.contains("log_level = \"error\""), "{t}");
        assert!(t.contains("log_dir = \"/var/log/sg\""), "{t}");
        assert!(t.contains("log_per_plugin = false"), "{t}");
        assert!(t.contains("timing_log = false"), "{t}");
        assert!(t.contains("fetch_interval = \"1s\""), "{t}");
        assert!(t.contains("batch_size = 5000"), "{t}");
        assert!(t.contains("proxy = \"http://proxy:8080\""), "{t}");
        assert!(t.contains("use_session_uuid = false"), "{t}");
        assert!(
            !t.lines().any(|l| l.starts_with("url =")),
            "an unresolved url is not written:\n{t}"
        );
        assert!(!t.lines().any(|l| l.starts_with("[alerts]")), "{t}");
        assert!(c.site_url.is_none());
        let todo = c.todo.join("\n");
        assert!(todo.contains("export it as $SGEVENTS_SCRIPT_KEY"), "{todo}");
        assert!(
            todo.contains("`source.url` is not written: `[shotgun] server = %(SITE)s` reads $SITE"),
            "{todo}"
        );
        assert!(
            todo.contains("proxy_server has a user and password"),
            "{todo}"
        );
        toml::from_str::<toml::Table>(t).unwrap_or_else(|e| panic!("{e}\n{t}"));
    }

    #[test]
    fn mail_settings() {
        let base = "[daemon]\n[shotgun]\nserver = https://s\nname = n\nkey = %(K)s\n[plugins]\npaths = /p\n";
        // A login without TLS: sgevents uses STARTTLS rather than send the password in the clear.
        let c = convert_with(
            &format!(
                "{base}[emails]\nenabled = on\nserver = smtp\nusername = bob\npassword = %(PW)s\nfrom = a@b\nto = c@d\n"
            ),
            &[],
        );
        assert!(c.toml.contains("tls = \"starttls\""), "{}", c.toml);
        assert!(
            c.toml.contains("username_env = \"SGEVENTS_SMTP_USERNAME\""),
            "{}",
            c.toml
        );
        assert!(c.toml.contains("password_env = \"PW\""), "{}", c.toml);
        assert!(c.toml.contains("smtp_port = 25"), "{}", c.toml);
        assert!(
            c.todo
                .join("\n")
                .contains("never sends a password in the clear"),
            "{:?}",
            c.todo
        );
        // TLS asked for without a login: shotgunEvents never used it.
        let c = convert_with(
            &format!(
                "{base}[emails]\nenabled = on\nserver = smtp\nuseTLS = True\nfrom = a@b\nto = c@d\n"
            ),
            &[],
        );
        assert!(c.toml.contains("tls = \"none\""), "{}", c.toml);
        assert!(!c.toml.contains("username_env"), "{}", c.toml);
        // No `enabled` (older versions): mail is on when a server is set.
        let c = convert_with(
            &format!("{base}[emails]\nserver = smtp\nfrom = a@b\nto = c@d\n"),
            &[],
        );
        assert!(c.toml.contains("\n[alerts]\n"), "{}", c.toml);
        let c = convert_with(&format!("{base}[emails]\nserver =\nfrom =\nto =\n"), &[]);
        assert!(!c.toml.contains("\n[alerts]\n"), "{}", c.toml);
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
        let v: toml::Table =
            toml::from_str(&format!("k = {}", quote("a\"b\\c\nd\u{1}é"))).expect("toml");
        assert_eq!(v["k"].as_str(), Some("a\"b\\c\nd\u{1}é"));
    }
}
