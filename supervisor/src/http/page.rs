//! `GET /`: the status page, one server-rendered HTML document with its style inline and no
//! external asset (it works offline), light and dark after the system's theme, sized for a laptop
//! and a wall screen. It reloads itself every [`REFRESH_SECS`] seconds, keeping the errors a
//! reader opened open (a few lines of plain JavaScript; a meta refresh without it).
//!
//! Everything that comes from plugins, the site or the configuration goes through [`esc`]: a
//! plugin's error is hostile text.

use std::fmt::Write as _;
use std::time::SystemTime;

use serde_json::Value;

use super::snapshot::{FAILED_SHOWN, MINUTES, Snapshot};
use crate::config::Config;
use crate::control::ops;
use crate::table;

/// How often the page reloads itself.
pub const REFRESH_SECS: u64 = 5;

/// `text` safe in HTML text and in a quoted attribute.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON value as a cell: its text, or `-` for null.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => esc(s),
        v => esc(&v.to_string()),
    }
}

/// An id made of `name`'s letters and digits (plugin names are plain words; this keeps ids valid
/// whatever they are).
fn id_of(prefix: &str, name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{prefix}-{safe}")
}

/// "3 s", "4 min", "2 h 5 min", "3 d".
fn age(secs: u64) -> String {
    match secs {
        s if s < 90 => format!("{s} s"),
        s if s < 90 * 60 => format!("{} min", s / 60),
        s if s < 48 * 3600 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s => format!("{} d", s / 86400),
    }
}

/// Seconds from `at` (RFC 3339) to `now`.
fn seconds_since(at: &str, now: SystemTime) -> Option<u64> {
    let t = humantime::parse_rfc3339_weak(at.trim_end_matches('Z'))
        .or_else(|_| humantime::parse_rfc3339(at))
        .ok()?;
    Some(now.duration_since(t).unwrap_or_default().as_secs())
}

/// An error shown by its headline, opened in full on click.
fn error_details(id: &str, error: &str) -> String {
    format!(
        "<details id=\"{}\"><summary>{}</summary><pre>{}</pre></details>",
        esc(id),
        esc(&table::headline(error)),
        esc(error)
    )
}

/// The inline SVG sparkline of `series` (deliveries per second, oldest first), drawn over
/// [`MINUTES`] slots: the minutes before the first sample (the daemon's start) count as none.
fn sparkline(series: &[f64]) -> String {
    let mut padded = vec![0.0; MINUTES.saturating_sub(series.len())];
    padded.extend_from_slice(series);
    let series = &padded[..];
    const W: f64 = 150.0;
    const H: f64 = 30.0;
    let max = series.iter().copied().fold(0.0_f64, f64::max);
    let n = series.len().max(2) as f64 - 1.0;
    let points: Vec<String> = series
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let x = if series.len() < 2 {
                W
            } else {
                i as f64 * W / n
            };
            let y = if max > 0.0 {
                H - 2.0 - v / max * (H - 4.0)
            } else {
                H - 2.0
            };
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let values: Vec<String> = series.iter().map(|v| format!("{v:.2}")).collect();
    format!(
        "<svg class=\"spark\" viewBox=\"0 0 {W} {H}\" preserveAspectRatio=\"none\" role=\"img\" \
         aria-label=\"deliveries per second, last {MINUTES} minutes\"><title>deliveries/s per minute, \
         oldest first: {}</title><polyline points=\"{}\"/></svg>",
        values.join(" "),
        points.join(" ")
    )
}

fn rate_text(per_sec: f64) -> String {
    if per_sec >= 10.0 {
        format!("{per_sec:.0}/s")
    } else if per_sec > 0.0 {
        format!("{per_sec:.2}/s")
    } else {
        "0/s".to_owned()
    }
}

const STYLE: &str = r#"
:root { color-scheme: light dark;
  --bg: #f6f7f9; --fg: #1c1e21; --muted: #626873; --card: #ffffff; --line: #dde1e6;
  --ok: #1a7f37; --warn: #9a6700; --bad: #c4231c; --idle: #626873; --accent: #0b63c9; }
@media (prefers-color-scheme: dark) { :root {
  --bg: #0e1116; --fg: #e5e8ec; --muted: #98a0ab; --card: #171b22; --line: #2b323d;
  --ok: #3fb950; --warn: #d29922; --bad: #ff6b61; --idle: #98a0ab; --accent: #5eaaff; } }
* { box-sizing: border-box; }
html { font-size: clamp(14px, 0.55vw + 9px, 26px); }
body { margin: 0; padding: 1.2rem 1.6rem 2rem; background: var(--bg); color: var(--fg);
  font: 1rem/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif; }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: .4rem 1.2rem; margin-bottom: 1rem; }
h1 { font-size: 1.5rem; margin: 0; letter-spacing: -.01em; }
h2 { font-size: 1.1rem; margin: 1.6rem 0 .6rem; }
h3 { font-size: 1rem; margin: 1rem 0 .4rem; }
.muted, .meta { color: var(--muted); }
.card { background: var(--card); border: 1px solid var(--line); border-radius: .5rem; padding: .8rem 1rem; }
.facts { display: flex; flex-wrap: wrap; gap: .6rem 2.2rem; margin: 0; }
.facts div { min-width: 7rem; } .facts dt { color: var(--muted); font-size: .8rem; }
.facts dd { margin: 0; font-size: 1.15rem; font-variant-numeric: tabular-nums; }
table { width: 100%; border-collapse: collapse; background: var(--card); border: 1px solid var(--line);
  border-radius: .5rem; overflow: hidden; }
th, td { text-align: left; padding: .5rem .7rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: .8rem; color: var(--muted); font-weight: 600; }
tr:last-child td { border-bottom: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.name { font-weight: 600; white-space: nowrap; }
.badge { display: inline-block; padding: .05rem .55rem; border-radius: 1rem; font-size: .85rem;
  font-weight: 600; border: 1px solid currentColor; }
.state-running { color: var(--ok); } .state-starting, .state-backoff { color: var(--warn); }
.state-disabled { color: var(--bad); } .state-stopped { color: var(--idle); }
.bad { color: var(--bad); font-weight: 600; }
.spark { width: 7.5rem; height: 1.5rem; vertical-align: middle; }
.spark polyline { fill: none; stroke: var(--accent); stroke-width: 2; vector-effect: non-scaling-stroke; }
td.rate { white-space: nowrap; }
.rate-now { font-variant-numeric: tabular-nums; margin-left: .4rem; }
details summary { cursor: pointer; overflow-wrap: anywhere; }
details pre { white-space: pre-wrap; overflow-wrap: anywhere; margin: .4rem 0 0; padding: .5rem;
  background: var(--bg); border: 1px solid var(--line); border-radius: .3rem; font-size: .85rem; max-height: 24rem; overflow: auto; }
.waits { font-size: .85rem; color: var(--muted); } .waits .held { color: var(--warn); }
footer { margin-top: 1.6rem; font-size: .8rem; color: var(--muted); }
a { color: var(--accent); }
"#;

/// Keeps the errors a reader opened open across reloads.
const SCRIPT: &str = r#"
(function () {
  var key = "sgevents-open";
  JSON.parse(sessionStorage.getItem(key) || "[]").forEach(function (id) {
    var d = document.getElementById(id); if (d) { d.open = true; }
  });
  setTimeout(function () {
    var open = Array.prototype.map.call(document.querySelectorAll("details[open]"), function (d) { return d.id; });
    sessionStorage.setItem(key, JSON.stringify(open));
    location.reload();
  }, REFRESH_MS);
})();
"#;

/// What the page needs besides the snapshot.
pub(crate) struct PageInput<'a> {
    pub(crate) snapshot: &'a Snapshot,
    pub(crate) config: &'a Config,
    /// Each plugin's deliveries per second, per minute, oldest first.
    pub(crate) rates: &'a dyn Fn(&str) -> Vec<f64>,
    pub(crate) now: SystemTime,
}

/// The whole page.
pub(crate) fn render(input: &PageInput<'_>) -> String {
    let s = &input.snapshot.status;
    let source = &s["source"];
    let site = source["location"].as_str().unwrap_or("no source read yet");
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>sgevents · {}</title><noscript><meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\"></noscript>\
         <style>{STYLE}</style></head><body>",
        esc(site)
    );
    let d = &s["daemon"];
    let _ = write!(
        out,
        "<header><h1>sgevents</h1><span class=\"site\" id=\"site\">{}</span>\
         <span class=\"meta\">version {} · pid {} · since {}</span></header>",
        esc(site),
        env!("CARGO_PKG_VERSION"),
        cell(&d["pid"]),
        cell(&d["started_at"])
    );
    source_section(&mut out, input);
    plugins_section(&mut out, input);
    failed_section(&mut out, input);
    let read = humantime::format_rfc3339_seconds(input.snapshot.read_at);
    let _ = writeln!(
        out,
        "<footer>read at {read} · reloads every {REFRESH_SECS} s · \
         <a href=\"/api/status\">/api/status</a> (as <code>sgevents status --json</code>)</footer>\
         <script>{}</script></body></html>",
        SCRIPT.replace("REFRESH_MS", &(REFRESH_SECS * 1000).to_string())
    );
    out
}

fn source_section(out: &mut String, input: &PageInput<'_>) {
    let s = &input.snapshot.status;
    let src = &s["source"];
    let _ = write!(
        out,
        "<section id=\"source\"><h2>Source</h2><div class=\"card\"><dl class=\"facts\">"
    );
    let fact = |out: &mut String, id: &str, label: &str, value: String| {
        let _ = write!(
            out,
            "<div id=\"{id}\"><dt>{label}</dt><dd>{value}</dd></div>"
        );
    };
    fact(out, "source-kind", "kind", cell(&src["kind"]));
    fact(
        out,
        "source-last-event",
        "last event",
        cell(&src["last_event_id"]),
    );
    let lag = input
        .snapshot
        .newest_created_at
        .as_deref()
        .and_then(|at| seconds_since(at, input.now))
        .map_or_else(|| "-".to_owned(), age);
    fact(out, "source-lag", "lag (newest event's age)", lag);
    fact(
        out,
        "journal-events",
        "events kept",
        cell(&s["journal"]["events"]),
    );
    if src["kind"] == "shotgrid" {
        fact(
            out,
            "source-gaps",
            "gaps (missing ids)",
            format!("{} ({})", cell(&src["gaps"]), cell(&src["missing_ids"])),
        );
    } else {
        fact(out, "source-line", "line", cell(&src["line"]));
        fact(
            out,
            "source-malformed",
            "malformed",
            cell(&src["malformed"]),
        );
    }
    if src["oversized"].as_i64().unwrap_or(0) > 0 {
        fact(
            out,
            "source-oversized",
            "oversized, skipped",
            cell(&src["oversized"]),
        );
    }
    out.push_str("</dl>");
    if let Some(e) = src["last_error"].as_str() {
        let _ = write!(
            out,
            "<p class=\"bad\">last problem:</p>{}",
            error_details("source-error", e)
        );
    }
    out.push_str("</div></section>");
}

fn plugins_section(out: &mut String, input: &PageInput<'_>) {
    let plugins = input.snapshot.status["plugins"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let _ = write!(
        out,
        "<section id=\"plugins\"><h2>Plugins ({})</h2><table><thead><tr><th>plugin</th><th>state</th>\
         <th class=\"num\">pid</th><th class=\"num\">lag</th><th>deliveries/s, {MINUTES} min</th>\
         <th class=\"num\">failed</th><th class=\"num\">restarts</th><th>last error</th></tr></thead><tbody>",
        plugins.len()
    );
    for p in plugins {
        let name = p["name"].as_str().unwrap_or("?");
        let state = p["state"].as_str().unwrap_or("?");
        let series = (input.rates)(name);
        let now_rate = series.last().copied().unwrap_or(0.0);
        let failed = p["failed"].as_i64().unwrap_or(0);
        let spec = input.config.plugins.iter().find(|c| c.name == name);
        let _ = write!(
            out,
            "<tr class=\"plugin\" id=\"{}\" data-plugin=\"{}\" data-state=\"{}\">\
             <td class=\"name\">{}{}",
            id_of("plugin", name),
            esc(name),
            esc(state),
            esc(name),
            if p["configured"] == false {
                " <span class=\"muted\">(not configured)</span>"
            } else {
                ""
            }
        );
        // `after`: what it waits for, and who holds it back now.
        if let Some(spec) = spec.filter(|s| !s.after.is_empty()) {
            let after: Vec<String> = spec
                .after
                .iter()
                .map(|a| format!("<code>{}</code>", esc(a)))
                .collect();
            let _ = write!(out, "<div class=\"waits\">after {}", after.join(", "));
            let held: Vec<String> = p["held_back_by"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|a| format!("<code>{}</code>", esc(a)))
                .collect();
            if !held.is_empty() {
                let _ = write!(
                    out,
                    " · <span class=\"held\">held back by {}</span>",
                    held.join(", ")
                );
            }
            out.push_str("</div>");
        }
        let _ = write!(
            out,
            "</td><td class=\"state\"><span class=\"badge state-{}\">{}</span></td>\
             <td class=\"num pid\">{}</td><td class=\"num lag\">{}</td>\
             <td class=\"rate\">{}<span class=\"rate-now\">{}</span></td>\
             <td class=\"num failed{}\">{}</td><td class=\"num restarts\">{}</td><td class=\"error\">",
            esc(state),
            esc(state),
            cell(&p["pid"]),
            cell(&p["lag"]),
            sparkline(&series),
            rate_text(now_rate),
            if failed > 0 { " bad" } else { "" },
            failed,
            cell(&p["restarts"]),
        );
        let mut any = false;
        if let Some(e) = p["last_error"].as_str() {
            out.push_str(&error_details(&id_of("error", name), e));
            any = true;
        }
        if let Some(e) = p["last_delivery_error"].as_str() {
            let _ = write!(
                out,
                "<div class=\"muted\">last delivery error:</div>{}",
                error_details(&id_of("delivery-error", name), e)
            );
            any = true;
        }
        if let Ok(retry) = serde_json::from_value::<ops::WaitingRetry>(p["waiting_retry"].clone()) {
            let _ = write!(
                out,
                "<div class=\"waits\">{}</div>",
                esc(&ops::describe_retry(&retry))
            );
            any = true;
        }
        if !any {
            out.push_str("<span class=\"muted\">-</span>");
        }
        out.push_str("</td></tr>");
    }
    out.push_str("</tbody></table></section>");
}

fn failed_section(out: &mut String, input: &PageInput<'_>) {
    let failed = &input.snapshot.failed;
    let plugins = input.snapshot.status["plugins"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    out.push_str("<section id=\"failed\"><h2>Failed events</h2>");
    if failed.is_empty() {
        out.push_str("<p class=\"muted\">none</p>");
    }
    let mut names: Vec<&str> = failed.iter().map(|f| f.plugin.as_str()).collect();
    names.dedup();
    for name in names {
        let total = plugins
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["failed"].as_i64())
            .unwrap_or(0);
        let shown: Vec<_> = failed.iter().filter(|f| f.plugin == name).collect();
        let more = if total as usize > shown.len() {
            format!(
                " <span class=\"muted\">(the newest {FAILED_SHOWN}: <code>sgevents failed list {}</code> for all)</span>",
                esc(name)
            )
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "<h3 id=\"{}\"><code>{}</code>: {total}{more}</h3><table><thead><tr>\
             <th class=\"num\">event</th><th class=\"num\">attempts</th><th>failed at</th><th>error</th>\
             </tr></thead><tbody>",
            id_of("failed", name),
            esc(name)
        );
        for f in shown {
            let retry = f
                .retry_requested_at
                .as_deref()
                .map(|at| format!("<div class=\"waits\">retry asked at {}</div>", esc(at)))
                .unwrap_or_default();
            let _ = write!(
                out,
                "<tr class=\"failed-event\" data-plugin=\"{}\" data-event-id=\"{}\">\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}{retry}</td></tr>",
                esc(name),
                f.event_id,
                f.event_id,
                f.attempts,
                esc(&f.failed_at),
                error_details(
                    &format!("{}-{}", id_of("failed", name), f.event_id),
                    &f.last_error
                )
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("</section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_html_would_read() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn a_sparkline_scales_to_its_highest_value() {
        let mut series = vec![0.0; MINUTES - 2];
        series.extend([1.0, 2.0]);
        let svg = sparkline(&series);
        assert!(
            svg.starts_with("<svg")
                && svg.contains("0.0,28.0 ")
                && svg.ends_with(" 150.0,2.0\"/></svg>"),
            "{svg}"
        );
        // Before the first sample: a flat line over every slot.
        let flat = sparkline(&[]);
        assert_eq!(flat.matches(",28.0").count(), MINUTES, "{flat}");
    }
}
