//! The status page (`GET /`) in a real browser: headless Chromium loads it from a running daemon
//! with three plugins (one healthy, one with failed events whose error is hostile HTML, one
//! disabled), the rendered DOM is checked, a screenshot is taken, and a second load after more
//! events shows the new figures.
//!
//! Chromium (Debian package `chromium`) is required: without it the test fails and says how to
//! install it. It runs as root in CI, hence `--no-sandbox`, with a profile of its own.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::control::LIVE;
use crate::http::get;
use crate::{Ctx, wait_for, wait_output};

/// The hostile part of the failing plugin's errors.
const HOSTILE: &str = "<script>document.title='owned'</script><b>bold</b>";

/// Runs headless Chromium with `args` then `url`; returns its stdout.
fn chromium(ctx: &Ctx, args: &[&str], url: &str) -> String {
    let found = Command::new("sh")
        .args(["-c", "command -v chromium"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "the browser test needs Chromium, which is not installed\nhint: apt-get install -y chromium (Debian), then run the test again"
    );
    let profile = ctx.path("chromium-profile");
    let child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let out = wait_output(child);
    assert!(
        out.status.success(),
        "chromium failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The rendered DOM of `url`.
fn dump_dom(ctx: &Ctx, url: &str) -> String {
    let dom = chromium(ctx, &["--dump-dom"], url);
    assert!(dom.contains("</html>"), "a whole document:\n{dom}");
    dom
}

/// The `<tr>` of plugin `name`.
fn row<'a>(dom: &'a str, name: &str) -> &'a str {
    let start = dom
        .find(&format!("data-plugin=\"{name}\""))
        .unwrap_or_else(|| panic!("no row for plugin `{name}`:\n{dom}"));
    let end = dom[start..].find("</tr>").map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

/// The text of the element with `id` (up to its first closing tag).
fn text_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element `{id}`:\n{dom}"));
    let dd = dom[start..]
        .find("<dd>")
        .map(|i| start + i + 4)
        .expect("dd");
    let end = dom[dd..].find("</dd>").map(|i| dd + i).expect("/dd");
    &dom[dd..end]
}

/// The mean brightness (0 to 255) of a screenshot's top row of pixels: the page's background.
/// Read by Python's standard library (zlib), which the tests need anyway.
fn background(png: &Path) -> f64 {
    const SCRIPT: &str = r#"
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
pos, idat, width, kind = 8, b"", 0, 0
while pos < len(data):
    n, tag = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if tag == b"IHDR":
        width, _, depth, kind = struct.unpack(">IIBB", body[:10])
        assert depth == 8, depth
    elif tag == b"IDAT":
        idat += body
    pos += 12 + n
channels = {2: 3, 6: 4}[kind]
raw = zlib.decompress(idat)
filt, row = raw[0], bytearray(raw[1:1 + width * channels])
if filt in (1, 4):  # Sub, and Paeth over a zero row: the byte to the left
    for i in range(channels, len(row)):
        row[i] = (row[i] + row[i - channels]) & 255
elif filt == 3:  # Average over a zero row
    for i in range(len(row)):
        row[i] = (row[i] + (row[i - channels] if i >= channels else 0) // 2) & 255
rgb = [row[i + c] for i in range(0, len(row), channels) for c in range(3)]
print(sum(rgb) / len(rgb))
"#;
    let out = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(png)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "cannot read {}: {}",
        png.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a brightness")
}

/// `status --json`'s data as the listener serves it.
fn api_status(addr: &str) -> Value {
    let answer = get(addr, "/api/status");
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()
}

#[test]
fn the_status_page_in_headless_chromium_shows_plugins_states_and_failed_events() {
    let ctx = Ctx::new();
    ctx.events(1..=20);
    let failing = format!("term_at = [4, 9, 25], error_suffix = {HOSTILE:?}");
    ctx.config(
        LIVE,
        &format!(
            "{}{}after = [\"healthy\"]\n{}enabled = false\n",
            ctx.test_plugin("healthy", ""),
            ctx.test_plugin("failing", &failing),
            ctx.test_plugin("off", ""),
        ),
    );
    let daemon = ctx.start();
    ctx.started.borrow_mut().push(daemon.id());
    let addr = ctx.http_addr();
    let url = format!("http://{addr}/");
    wait_for("the first 20 events delivered, and 2 failed", || {
        let s = api_status(&addr);
        let p = |name: &str| {
            s["plugins"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["name"] == name).cloned())
                .unwrap_or(Value::Null)
        };
        p("healthy")["last_event_id"] == 20 && p("failing")["failed"] == 2
    });

    // /api/status is `status --json`'s data.
    let page = get(&addr, "/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let cli: Value = serde_json::from_slice(
        &ctx.sgevents(&["status", "--json"])
            .output()
            .expect("status")
            .stdout,
    )
    .expect("status json");
    let api = api_status(&addr);
    assert_eq!(api["daemon"], cli["daemon"]);
    assert_eq!(api["journal"], cli["journal"]);
    let names = |v: &Value| -> Vec<String> {
        v["plugins"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| format!("{} {}", p["name"], p["state"]))
            .collect()
    };
    assert_eq!(names(&api), names(&cli));

    let dom = dump_dom(&ctx, &url);
    assert!(row(&dom, "healthy").contains("data-state=\"running\""));
    assert!(row(&dom, "failing").contains("data-state=\"running\""));
    assert!(row(&dom, "off").contains("data-state=\"disabled\""));
    assert!(row(&dom, "off").contains("disabled in the configuration"));
    assert!(row(&dom, "healthy").contains("<svg class=\"spark\""));
    assert!(
        row(&dom, "failing").contains("after <code>healthy</code>"),
        "{}",
        row(&dom, "failing")
    );
    assert!(
        row(&dom, "failing").contains("<td class=\"num failed bad\">2</td>"),
        "{}",
        row(&dom, "failing")
    );
    // The failed events, with their errors as text: the hostile HTML is shown, never run.
    for id in [4, 9] {
        let needle = format!("data-plugin=\"failing\" data-event-id=\"{id}\"");
        let at = dom
            .find(&needle)
            .unwrap_or_else(|| panic!("failed event {id} is listed:\n{dom}"));
        let rest = &dom[at..at + dom[at..].find("</tr>").expect("row end")];
        assert!(
            rest.contains(&format!(
                "event {id} can never work&lt;script&gt;document.title='owned'&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;"
            )),
            "{rest}"
        );
    }
    assert!(
        !dom.contains("<b>bold</b>"),
        "no element from a plugin's error"
    );
    assert!(
        !dom.contains("owned</title>"),
        "no script of a plugin's ran"
    );
    assert_eq!(
        dom.matches("<script").count(),
        1,
        "only the page's own script"
    );
    assert_eq!(text_of(&dom, "source-last-event"), "20");

    // A screenshot, as an operator's browser would draw it.
    let shot = ctx.path("status-page.png");
    chromium(
        &ctx,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,900",
        ],
        &url,
    );
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "a PNG of the page ({} bytes)",
        png.len()
    );
    // The system's dark theme: the page follows it (`prefers-color-scheme`).
    let dark = ctx.path("status-page-dark.png");
    chromium(
        &ctx,
        &[
            &format!("--screenshot={}", dark.display()),
            "--window-size=1280,900",
            "--force-dark-mode",
            "--blink-settings=preferredColorScheme=0",
        ],
        &url,
    );
    let light = background(&shot);
    let dark = background(&dark);
    assert!(
        light > 200.0 && dark < 60.0,
        "a light page in the light theme ({light:.0}), a dark one in the dark theme ({dark:.0})"
    );
    if let Ok(dir) = std::env::var("SGEVENTS_SCREENSHOT_DIR") {
        std::fs::copy(&shot, Path::new(&dir).join("status-page.png")).expect("copy screenshot");
    }

    // More events: one more fails; the next load shows the new figures.
    ctx.append_events(21..=30);
    wait_for("the new events delivered", || {
        let s = api_status(&addr);
        s["source"]["last_event_id"] == 30
            && s["plugins"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == "failing" && p["failed"] == 3)
    });
    let dom = dump_dom(&ctx, &url);
    assert_eq!(text_of(&dom, "source-last-event"), "30");
    assert!(
        row(&dom, "failing").contains("<td class=\"num failed bad\">3</td>"),
        "{}",
        row(&dom, "failing")
    );
    assert!(dom.contains("data-plugin=\"failing\" data-event-id=\"25\""));
    ctx.stop(daemon);
}
