//! How the CLI shows rows and errors: one table style for `status`, `plugin list` and `failed list`
//! (columns as wide as their widest cell, numbers right-aligned, two spaces apart, the last column
//! free), and the one line of an error worth a table cell.

/// The line of `error` that says what happened: for a Python traceback, its last line (the
/// exception, such as `KeyError: 'entity'`), not `Traceback (most recent call last):`; otherwise its
/// first line (the Rust SDK writes a whole error chain on one line). The full text stays in the
/// state database, `failed show` and `--json`.
pub fn headline(error: &str) -> std::borrow::Cow<'_, str> {
    const TRACEBACK: &str = "Traceback (most recent call last):";
    let first = error.lines().next().unwrap_or_default();
    // Also behind a prefix the daemon adds, such as `event 2 (attempt 1): `.
    if let Some(at) = first.find(TRACEBACK) {
        if let Some(last) = error
            .lines()
            .rev()
            .take_while(|l| !l.contains(TRACEBACK))
            .find(|l| !l.trim().is_empty() && !l.starts_with(' '))
            .filter(|l| !l.starts_with("Traceback") && !l.starts_with("During handling"))
        {
            return format!("{}{}", &first[..at], last.trim_end()).into();
        }
    }
    first.into()
}

/// Renders `rows` under `header`; the columns whose index is in `numeric` are right-aligned.
pub fn render(header: &[&str], rows: Vec<Vec<String>>, numeric: &[usize]) -> String {
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    table.extend(rows);
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            table
                .iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in table {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i + 1 == row.len() {
                    cell.clone()
                } else if numeric.contains(&i) {
                    format!("{cell:>w$}", w = widths[i])
                } else {
                    format!("{cell:<w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `-` for nothing.
pub fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// The `MS P50/P95/MAX` cell of a plugin's timing summary (`plugins.timings`).
pub fn timings_cell(timings: Option<&serde_json::Value>) -> String {
    let Some(t) = timings.filter(|t| !t.is_null()) else {
        return "-".into();
    };
    let ms = |v: &serde_json::Value| v.as_f64().map_or("-".into(), |x| format!("{x:.1}"));
    format!(
        "{}/{}/{}",
        ms(&t["p50_ms"]),
        ms(&t["p95_ms"]),
        ms(&t["max_ms"])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_python_traceback_is_shown_by_its_exception() {
        let tb = "Traceback (most recent call last):\n  File \"/p/x.py\", line 3, in on_event\n    e[\"entity\"]\nKeyError: 'entity'\n";
        assert_eq!(headline(tb), "KeyError: 'entity'");
        let chained = "Traceback (most recent call last):\n  File \"a\", line 1\nValueError: bad\n\nDuring handling of the above exception, another exception occurred:\n\nTraceback (most recent call last):\n  File \"b\", line 2\nRuntimeError: worse";
        assert_eq!(headline(chained), "RuntimeError: worse");
        assert_eq!(
            headline("cannot update Task 12: permission denied: read-only field"),
            "cannot update Task 12: permission denied: read-only field"
        );
        assert_eq!(headline("first\nsecond"), "first");
        assert_eq!(headline(""), "");
        assert_eq!(
            headline(
                "event 2 (attempt 1): Traceback (most recent call last):\n  File \"x\"\nKeyError: 'k'"
            ),
            "event 2 (attempt 1): KeyError: 'k'"
        );
        assert_eq!(
            headline("Traceback (most recent call last):\n"),
            "Traceback (most recent call last):",
            "nothing better to show"
        );
    }

    #[test]
    fn columns_align_and_numbers_go_right() {
        let out = render(
            &["PLUGIN", "LAG", "NOTE"],
            vec![
                vec!["a".into(), "5".into(), "x".into()],
                vec!["long_name".into(), "12345".into(), String::new()],
            ],
            &[1],
        );
        assert_eq!(
            out,
            "PLUGIN       LAG  NOTE\na              5  x\nlong_name  12345\n"
        );
    }
}
