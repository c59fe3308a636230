//! The fake ShotGrid site (`sgevents_tests::fake_site`) and the configuration that polls it, shared
//! by every test that runs the daemon against it: one way to start the site, one configuration
//! text, each test saying only what it changes.

use sgevents_tests::fake_site::{FakeSite, SiteOptions};

use crate::Ctx;

/// The script key the fake site accepts and [`shotgrid_config`] writes to the key file.
pub(crate) const KEY: &str = "fake-key";

/// The `[plugins]` table of the tests: quick stops and restarts.
pub(crate) const PLUGINS: &str = r#"[plugins]
stop_grace = "500ms"
shutdown_drain = "2s"
restart_delay = "20ms"
"#;

/// The `[source]` keys of [`shotgrid_config`], before a test's own.
const SOURCE: &[&str] = &[
    r#"kind = "shotgrid""#,
    "url = {url}",
    r#"script_name = "sgevents""#,
    r#"script_key_file = "key""#,
    r#"fetch_interval = "50ms""#,
    r#"request_timeout = "2s""#,
    r#"start_at = "earliest""#,
];

/// The fake site, accepting the script `sgevents` with [`KEY`].
pub(crate) fn site() -> FakeSite {
    site_with(SiteOptions::default())
}

/// The fake site set up with `options`, accepting the script `sgevents` with [`KEY`].
pub(crate) fn site_with(options: SiteOptions) -> FakeSite {
    FakeSite::start(SiteOptions {
        script_key: KEY.into(),
        ..options
    })
    .expect("the fake site starts")
}

/// Writes the key file and `sgevents.toml`: a `[daemon]` with its state in `var/` and quick
/// commits, a `[source]` polling `site` quickly from the earliest event, with the lines of
/// `source` (a key named there replaces the default's line, others are added), then `rest` (the
/// `[plugins]` table and the plugins, `[http]`...).
pub(crate) fn shotgrid_config(ctx: &Ctx, site: &FakeSite, source: &str, rest: &str) {
    std::fs::write(ctx.path("key"), KEY).expect("key file");
    let url = format!("{:?}", site.url());
    let mut lines: Vec<String> = SOURCE.iter().map(|l| l.replace("{url}", &url)).collect();
    let key = |line: &str| line.split('=').next().unwrap_or_default().trim().to_owned();
    for line in source.lines().filter(|l| !l.trim().is_empty()) {
        match lines
            .iter_mut()
            .find(|l| l.contains('=') && key(l) == key(line))
        {
            Some(default) => *default = line.to_owned(),
            None => lines.push(line.to_owned()),
        }
    }
    let text = format!(
        "[daemon]\nstate_dir = \"var\"\ncommit_interval = \"1ms\"\n\n[source]\n{}\n\n{rest}",
        lines.join("\n")
    );
    std::fs::write(ctx.path("sgevents.toml"), text).expect("config");
}
