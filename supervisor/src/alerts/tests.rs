//! The alerts' tests: the limiter and the texts driven by plain values, and the worker against a
//! fake SMTP server.

use std::path::{Path, PathBuf};

use sgevents_tests::smtp::{FakeSmtp, ServerTls, SmtpOptions};

use super::limiter::Mail;
use super::*;
use crate::config::{SmtpCredentials, SmtpTls, parse};

const MINUTE: Duration = Duration::from_secs(60);

fn failed(plugin: &str, event_id: i64) -> Stamped {
    Stamped {
        at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000),
        alert: Alert::EventFailed {
            plugin: plugin.to_owned(),
            event_id,
            error: format!("cannot do event {event_id}"),
        },
    }
}

fn to(addresses: &[&str]) -> Vec<String> {
    addresses.iter().map(|a| (*a).to_owned()).collect()
}

fn ids(mail: &Mail) -> Vec<i64> {
    mail.alerts
        .iter()
        .map(|s| match s.alert {
            Alert::EventFailed { event_id, .. } => event_id,
            _ => -1,
        })
        .collect()
}

#[test]
fn the_first_alert_goes_at_once_and_the_rest_of_the_window_becomes_one_digest() {
    let t0 = Instant::now();
    let ops = to(&["ops@studio.example"]);
    let mut l = Limiter::new(10 * MINUTE);
    let first = l.offer(t0, ops.clone(), failed("a", 1)).expect("at once");
    assert_eq!((first.to.clone(), ids(&first)), (ops.clone(), vec![1]));
    for (i, id) in (2..=5).enumerate() {
        let at = t0 + Duration::from_secs(10 * (i as u64 + 1));
        assert_eq!(l.offer(at, ops.clone(), failed("a", id)), None, "held");
    }
    assert_eq!(l.next_due(), Some(t0 + 10 * MINUTE));
    assert!(
        l.due(t0 + 9 * MINUTE).is_empty(),
        "nothing before the window ends"
    );
    let digests = l.due(t0 + 10 * MINUTE);
    assert_eq!(digests.len(), 1);
    assert_eq!(ids(&digests[0]), [2, 3, 4, 5]);
    assert_eq!(l.next_due(), None, "nothing held any more");

    // The digest opened the next window: what comes in it waits for its end.
    let t1 = t0 + 10 * MINUTE;
    assert_eq!(l.offer(t1 + MINUTE, ops.clone(), failed("a", 6)), None);
    assert_eq!(l.next_due(), Some(t1 + 10 * MINUTE));
    let digests = l.due(t1 + 10 * MINUTE);
    assert_eq!(ids(&digests[0]), [6]);

    // A quiet window closes: the next alert goes out at once again.
    let t2 = t1 + 10 * MINUTE;
    assert!(l.due(t2 + 10 * MINUTE).is_empty());
    assert!(l.slots.is_empty(), "the quiet window was closed");
    let again = l
        .offer(t2 + 11 * MINUTE, ops.clone(), failed("a", 7))
        .expect("at once after a quiet window");
    assert_eq!(ids(&again), [7]);
}

#[test]
fn a_late_alert_after_a_window_with_no_digest_goes_at_once() {
    let t0 = Instant::now();
    let ops = to(&["ops@studio.example"]);
    let mut l = Limiter::new(MINUTE);
    assert!(l.offer(t0, ops.clone(), failed("a", 1)).is_some());
    // No `due` call in between: the expired, empty window does not hold the next alert.
    assert!(l.offer(t0 + 2 * MINUTE, ops, failed("a", 2)).is_some());
}

#[test]
fn recipient_sets_are_limited_apart() {
    let t0 = Instant::now();
    let mut l = Limiter::new(10 * MINUTE);
    let (ops, anim) = (to(&["ops@s.example"]), to(&["anim@s.example"]));
    assert!(l.offer(t0, ops.clone(), failed("a", 1)).is_some());
    assert!(
        l.offer(t0, anim.clone(), failed("b", 2)).is_some(),
        "another set is not held by the first"
    );
    assert!(l.offer(t0, ops.clone(), failed("a", 3)).is_none());
    assert!(l.offer(t0, anim.clone(), failed("b", 4)).is_none());
    let mut digests = l.due(t0 + 10 * MINUTE);
    digests.sort_by(|a, b| a.to.cmp(&b.to));
    assert_eq!(
        digests
            .iter()
            .map(|d| (d.to.clone(), ids(d)))
            .collect::<Vec<_>>(),
        [(anim, vec![4]), (ops, vec![3])]
    );
}

#[test]
fn a_failed_mail_is_held_again_and_retried_with_backoff() {
    let t0 = Instant::now();
    let ops = to(&["ops@s.example"]);
    let mut l = Limiter::new(10 * MINUTE);
    let first = l.offer(t0, ops.clone(), failed("a", 1)).expect("at once");
    assert!(l.offer(t0 + MINUTE, ops.clone(), failed("a", 2)).is_none());
    // The first mail fails: it is tried again after 30 s, not at the end of its window.
    let t1 = t0 + MINUTE;
    assert_eq!(l.failed(t1, first), Duration::from_secs(30));
    assert_eq!(l.next_due(), Some(t1 + Duration::from_secs(30)));
    assert!(l.due(t1 + Duration::from_secs(29)).is_empty());
    let retry = l.due(t1 + Duration::from_secs(30));
    assert_eq!(
        ids(&retry[0]),
        [1, 2],
        "the failed alert comes first, with what came since"
    );
    // Failing again: 60 s, then 120 s.
    let t2 = t1 + Duration::from_secs(30);
    let retry = retry.into_iter().next().expect("one mail");
    assert_eq!(l.failed(t2, retry), Duration::from_secs(60));
    let retry = l.due(t2 + Duration::from_secs(60)).remove(0);
    assert_eq!(
        l.failed(t2 + Duration::from_secs(60), retry),
        Duration::from_secs(120)
    );
    let mut quick = Limiter::new(Duration::from_secs(2));
    let m = quick
        .offer(t0, ops.clone(), failed("a", 1))
        .expect("at once");
    let w1 = quick.failed(t0 + Duration::from_secs(2), m);
    assert_eq!(
        w1,
        Duration::from_secs(2),
        "the first retry after rate_limit when shorter than 30 s"
    );
    let m = quick.due(t0 + Duration::from_secs(4)).remove(0);
    let w2 = quick.failed(t0 + Duration::from_secs(4), m);
    assert_eq!(w2, Duration::from_secs(4), "then doubling");
    let m = quick.due(t0 + Duration::from_secs(8)).remove(0);
    quick.sent(&m.to);
    assert_eq!(
        quick.slots[&ops].failures, 0,
        "a sent mail resets the backoff"
    );
}

#[test]
fn held_alerts_are_capped_and_the_rest_counted() {
    let t0 = Instant::now();
    let ops = to(&["ops@s.example"]);
    let mut l = Limiter::new(MINUTE);
    assert!(l.offer(t0, ops.clone(), failed("a", 0)).is_some());
    for id in 1..=(MAX_PENDING as i64 + 7) {
        assert!(l.offer(t0, ops.clone(), failed("a", id)).is_none());
    }
    let digest = l.due(t0 + MINUTE).remove(0);
    assert_eq!(digest.alerts.len(), MAX_PENDING);
    assert_eq!(digest.omitted, 7);
}

#[test]
fn drain_gives_everything_held() {
    let t0 = Instant::now();
    let mut l = Limiter::new(MINUTE);
    let (ops, anim) = (to(&["ops@s.example"]), to(&["anim@s.example"]));
    assert!(l.offer(t0, ops.clone(), failed("a", 1)).is_some());
    assert!(l.offer(t0, ops.clone(), failed("a", 2)).is_none());
    assert!(l.offer(t0, anim.clone(), failed("b", 3)).is_some());
    let drained = l.drain();
    assert_eq!(drained.len(), 1, "only the set with held alerts");
    assert_eq!(ids(&drained[0]), [2]);
    assert!(l.slots.is_empty());
}

fn config(alerts: &str, plugins: &str) -> Config {
    let text = format!(
        "[source]\nkind = \"jsonl\"\npath = \"e.jsonl\"\n[alerts]\nsmtp_host = \"127.0.0.1\"\nfrom = \"sgevents@studio.example\"\n{alerts}\n{plugins}"
    );
    parse(Path::new("/etc/sgevents/sgevents.toml"), &text).unwrap_or_else(|e| panic!("{e}"))
}

/// A configuration whose `[alerts]` table is `alerts`.
fn with_alerts(alerts: &str) -> String {
    format!("[source]\nkind = \"jsonl\"\npath = \"e.jsonl\"\n[alerts]\n{alerts}\n")
}

#[test]
fn alerts_config_defaults_and_ports() {
    let c = config("to = [\"ops@studio.example\"]", "");
    let a = c.alerts.expect("[alerts]");
    assert_eq!(a.smtp_host, "127.0.0.1");
    assert_eq!((a.tls, a.smtp_port), (SmtpTls::StartTls, 587));
    assert_eq!(a.subject_prefix, "[sgevents]");
    assert_eq!(a.rate_limit, 10 * MINUTE);
    assert_eq!(a.credentials, None);
    assert_eq!(a.to, ["ops@studio.example"]);
    let a = config("to = [\"o@s.example\"]\ntls = \"implicit\"", "")
        .alerts
        .expect("[alerts]");
    assert_eq!((a.tls, a.smtp_port), (SmtpTls::Implicit, 465));
    let a = config(
        "to = [\"Ops <o@s.example>\"]\ntls = \"none\"\nsubject_prefix = \"[render farm]\"\nrate_limit = \"2s\"",
        "",
    )
    .alerts
    .expect("[alerts]");
    assert_eq!((a.tls, a.smtp_port), (SmtpTls::None, 25));
    assert_eq!(a.subject_prefix, "[render farm]");
    assert_eq!(a.rate_limit, Duration::from_secs(2));
    let a = config("to = [\"o@s.example\"]\nsmtp_port = 2525", "")
        .alerts
        .expect("[alerts]");
    assert_eq!(a.smtp_port, 2525);
    assert!(
        parse(
            Path::new("x.toml"),
            "[source]\nkind = \"jsonl\"\npath = \"e\"\n"
        )
        .expect("valid")
        .alerts
        .is_none(),
        "no [alerts], no mail"
    );
}

#[test]
fn alerts_credentials_come_from_the_environment_and_stay_secret() {
    // PATH is set in every environment a test runs in; its value stands in for a password.
    let path = std::env::var("PATH").expect("PATH is set");
    let c = config(
        "to = [\"o@s.example\"]\nusername_env = \"PATH\"\npassword_env = \"PATH\"",
        "",
    );
    let a = c.alerts.as_ref().expect("[alerts]");
    assert_eq!(
        a.credentials,
        Some(SmtpCredentials {
            username: path.clone(),
            password: crate::config::Secret::new(path.clone()),
        })
    );
    let shown = format!("{a:?}");
    assert!(
        shown.contains("<redacted>") && shown.matches(&path).count() == 1,
        "the password never shows in debug output: {shown}"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("sgevents.toml");
    std::fs::write(&file, "[source]\nkind = \"jsonl\"\npath = \"e\"\n[alerts]\nsmtp_host = \"h\"\nfrom = \"a@b.example\"\nto = [\"a@b.example\"]\nusername_env = \"SGEVENTS_TEST_NO_SUCH_VAR\"\npassword_env = \"SGEVENTS_TEST_NO_SUCH_VAR\"\n").expect("write");
    assert!(crate::config::load(&file).is_err(), "the daemon needs them");
    let c = crate::config::load_without_secrets(&file);
    assert!(
        c.is_ok(),
        "`status` works without the mail credentials: {c:?}"
    );
}

#[test]
fn every_bad_alerts_value_says_what_to_do() {
    let base =
        "smtp_host = \"smtp.s.example\"\nfrom = \"sgevents@s.example\"\nto = [\"o@s.example\"]\n";
    let dir = tempfile::tempdir().expect("temp dir");
    let not_pem = dir.path().join("ca.txt");
    std::fs::write(&not_pem, "not a certificate\n").expect("write");
    let not_pem = not_pem.display().to_string();
    crate::config::tests::assert_refused([
        (
            "no smtp_host",
            with_alerts("from = \"a@b.example\"\nto = [\"a@b.example\"]"),
            vec!["`alerts.smtp_host` is missing".into()],
        ),
        (
            "smtp_host a URL",
            with_alerts("smtp_host = \"smtp://mail.example\"\nfrom = \"a@b.example\"\nto = [\"a@b.example\"]"),
            vec!["`alerts.smtp_host` = `\"smtp://mail.example\"`: not a host name".into()],
        ),
        (
            "smtp_host with a port",
            with_alerts("smtp_host = \"mail.example:587\"\nfrom = \"a@b.example\"\nto = [\"a@b.example\"]"),
            vec!["`alerts.smtp_host` = `\"mail.example:587\"`: not a host name".into()],
        ),
        (
            "smtp_port 0",
            with_alerts(&format!("{base}smtp_port = 0")),
            vec!["`alerts.smtp_port` = `0`: out of range".into()],
        ),
        (
            "smtp_port 70000",
            with_alerts(&format!("{base}smtp_port = 70000")),
            vec!["`alerts.smtp_port` = `70000`: out of range".into()],
        ),
        (
            "tls ssl",
            with_alerts(&format!("{base}tls = \"ssl\"")),
            vec!["`alerts.tls` = `\"ssl\"`: unknown setting".into()],
        ),
        (
            "username_env alone",
            with_alerts(&format!("{base}username_env = \"U\"")),
            vec!["`[alerts]` sets only one of `username_env` and `password_env`".into()],
        ),
        (
            "password_env alone",
            with_alerts(&format!("{base}password_env = \"P\"")),
            vec!["`[alerts]` sets only one of `username_env` and `password_env`".into()],
        ),
        (
            "username_env unset",
            with_alerts(&format!("{base}username_env = \"SGEVENTS_TEST_NO_SUCH_VAR\"\npassword_env = \"PATH\"")),
            vec!["`alerts.username_env` = `\"SGEVENTS_TEST_NO_SUCH_VAR\"`: the environment variable is not set".into()],
        ),
        (
            "password_env unset",
            with_alerts(&format!("{base}username_env = \"PATH\"\npassword_env = \"SGEVENTS_TEST_NO_SUCH_VAR\"")),
            vec!["`alerts.password_env` = `\"SGEVENTS_TEST_NO_SUCH_VAR\"`: the environment variable is not set".into()],
        ),
        (
            "a password in clear",
            with_alerts(&format!("{base}tls = \"none\"\nusername_env = \"PATH\"\npassword_env = \"PATH\"")),
            vec!["the password would cross the network unencrypted".into()],
        ),
        (
            "no from",
            with_alerts("smtp_host = \"h\"\nto = [\"a@b.example\"]"),
            vec!["`alerts.from` is missing".into()],
        ),
        (
            "from not an address",
            with_alerts("smtp_host = \"h\"\nfrom = \"sgevents\"\nto = [\"a@b.example\"]"),
            vec!["`alerts.from` = `\"sgevents\"`: not an email address".into()],
        ),
        (
            "no to",
            with_alerts("smtp_host = \"h\"\nfrom = \"a@b.example\""),
            vec!["`alerts.to` is missing or empty".into()],
        ),
        (
            "to empty",
            with_alerts("smtp_host = \"h\"\nfrom = \"a@b.example\"\nto = []"),
            vec!["`alerts.to` is missing or empty".into()],
        ),
        (
            "to not an address",
            with_alerts("smtp_host = \"h\"\nfrom = \"a@b.example\"\nto = [\"ops at studio\"]"),
            vec!["`alerts.to` = `\"ops at studio\"`: not an email address".into()],
        ),
        (
            "subject_prefix with a line break",
            with_alerts(&format!("{base}subject_prefix = \"[a]\\n[b]\"")),
            vec!["`alerts.subject_prefix` = `\"[a]\\n[b]\"`: contains a line break".into()],
        ),
        (
            "rate_limit not a duration",
            with_alerts(&format!("{base}rate_limit = \"often\"")),
            vec!["`alerts.rate_limit` = `\"often\"`: not a duration".into()],
        ),
        (
            "rate_limit zero",
            with_alerts(&format!("{base}rate_limit = \"0s\"")),
            vec!["`alerts.rate_limit` = `\"0s\"`: must be longer than zero".into()],
        ),
        (
            "ca_file missing",
            with_alerts(&format!("{base}ca_file = \"/no/such/ca.pem\"")),
            vec!["`alerts.ca_file` = `/no/such/ca.pem`: cannot read it".into()],
        ),
        (
            "ca_file not PEM",
            with_alerts(&format!("{base}ca_file = {not_pem:?}")),
            vec![format!("`alerts.ca_file` = `{not_pem}`: holds no PEM certificate")],
        ),
        (
            "ca_file with tls none",
            with_alerts(&format!("{base}tls = \"none\"\nca_file = {not_pem:?}")),
            vec!["`alerts.ca_file` does not apply to tls = \"none\"".into()],
        ),
        (
            "an unknown key",
            with_alerts(&format!("{base}smtp_user = \"me\"")),
            vec!["unknown field `smtp_user`".into()],
        ),
        (
            "alert_to without [alerts]",
            "[source]\nkind = \"jsonl\"\npath = \"e\"\n[plugin.x]\ncommand = [\"x\"]\nalert_to = [\"a@b.example\"]\n".into(),
            vec!["`plugin.x.alert_to` is set, but there is no `[alerts]` table".into()],
        ),
        (
            "alert_to not an address",
            format!("{}[plugin.x]\ncommand = [\"x\"]\nalert_to = [\"nobody\"]\n", with_alerts("smtp_host = \"h\"\nfrom = \"a@b.example\"\nto = [\"a@b.example\"]")),
            vec!["`plugin.x.alert_to` = `\"nobody\"`: not an email address".into()],
        ),
    ]);
}

#[test]
fn alert_to_is_checked_and_needs_an_alerts_table() {
    let c = config(
        "to = [\"o@s.example\"]",
        "[plugin.x]\ncommand = [\"x\"]\nalert_to = [\"anim@s.example\", \"Lead <lead@s.example>\"]\n[plugin.y]\ncommand = [\"y\"]\nalert_to = []\n[plugin.z]\ncommand = [\"z\"]\n",
    );
    let alert_to: Vec<_> = c.plugins.iter().map(|p| p.alert_to.clone()).collect();
    assert_eq!(
        alert_to,
        [
            Some(to(&["anim@s.example", "Lead <lead@s.example>"])),
            Some(vec![]),
            None
        ]
    );
}

#[test]
fn recipients_follow_register_then_alert_to_then_to() {
    let c = config(
        "to = [\"ops@s.example\", \"ops@s.example\"]",
        "[plugin.x]\ncommand = [\"x\"]\nalert_to = [\"b@s.example\", \"a@s.example\"]\n[plugin.quiet]\ncommand = [\"q\"]\nalert_to = []\n[plugin.plain]\ncommand = [\"p\"]\n",
    );
    let route = Route::of(&c);
    let configured = Recipients::Configured;
    let alert = |p: &str| failed(p, 1).alert;
    assert_eq!(
        route.recipients(&alert("plain"), &configured),
        to(&["ops@s.example"]),
        "`to`, without duplicates"
    );
    assert_eq!(
        route.recipients(&alert("x"), &configured),
        to(&["a@s.example", "b@s.example"]),
        "alert_to, sorted"
    );
    assert!(route.recipients(&alert("quiet"), &configured).is_empty());
    let source = Alert::SourceFailing {
        since: MINUTE,
        error: "down".into(),
    };
    assert_eq!(
        route.recipients(&source, &Recipients::Nobody),
        to(&["ops@s.example"]),
        "the source's alerts always go to `to`"
    );

    let dev = Recipients::To(to(&["dev@s.example"]));
    assert_eq!(
        route.recipients(&alert("x"), &dev),
        to(&["dev@s.example"]),
        "register's list beats alert_to"
    );
    assert_eq!(
        route.recipients(&alert("plain"), &dev),
        to(&["dev@s.example"])
    );
    assert!(
        route
            .recipients(&alert("x"), &Recipients::Nobody)
            .is_empty()
    );
    assert!(
        route.recipients(&alert("quiet"), &configured).is_empty(),
        "`true` in register means the configuration's choice, here alert_to = []"
    );

    use sgevents_protocol::AlertRecipients;
    assert_eq!(
        Recipients::from(AlertRecipients::Default(true)),
        Recipients::Configured
    );
    assert_eq!(
        Recipients::from(AlertRecipients::Default(false)),
        Recipients::Nobody
    );
    assert_eq!(
        Recipients::from(AlertRecipients::To(to(&["a@b.example"]))),
        Recipients::To(to(&["a@b.example"]))
    );
}

fn text() -> Text {
    Text {
        prefix: "[sgevents]".to_owned(),
        host: "render01".to_owned(),
        from: "sgevents@s.example".to_owned(),
        config_file: PathBuf::from("/etc/sgevents/sgevents.toml"),
        secrets: vec!["hunter2-smtp".to_owned(), "sg-script-key".to_owned()],
    }
}

fn mail(alerts: Vec<Stamped>) -> Mail {
    Mail {
        to: to(&["ops@s.example"]),
        alerts,
        omitted: 0,
        dropped: 0,
    }
}

#[test]
fn a_single_alert_names_the_host_what_happened_and_what_to_do() {
    let t = text();
    let l = t.letter(&mail(vec![failed("task_status", 2011531)]), 10 * MINUTE);
    assert_eq!(
        l.subject,
        "[sgevents] render01: plugin task_status failed event 2011531"
    );
    assert!(l.body.contains("gave up on event 2011531"), "{}", l.body);
    assert!(
        l.body.contains("Error: cannot do event 2011531"),
        "{}",
        l.body
    );
    assert!(
        l.body
            .contains("sgevents -c /etc/sgevents/sgevents.toml failed list task_status\n"),
        "{}",
        l.body
    );
    assert!(
        l.body.contains(
            "sgevents -c /etc/sgevents/sgevents.toml failed retry task_status --event 2011531\n"
        ),
        "{}",
        l.body
    );

    let disabled = Stamped {
        at: SystemTime::UNIX_EPOCH,
        alert: Alert::PluginDisabled {
            plugin: "publish".into(),
            reason: "fatal error: no database".into(),
        },
    };
    let l = t.letter(&mail(vec![disabled]), 10 * MINUTE);
    assert_eq!(l.subject, "[sgevents] render01: plugin publish is disabled");
    assert!(
        l.body.contains("Reason: fatal error: no database"),
        "{}",
        l.body
    );
    assert!(
        l.body
            .contains("sgevents -c /etc/sgevents/sgevents.toml plugin enable publish"),
        "{}",
        l.body
    );

    let crash = Stamped {
        at: SystemTime::UNIX_EPOCH,
        alert: Alert::CrashLoop {
            plugin: "publish".into(),
            reason: "exited with status 3".into(),
        },
    };
    let l = t.letter(&mail(vec![crash]), 10 * MINUTE);
    assert_eq!(
        l.subject,
        "[sgevents] render01: plugin publish crash-looped and is disabled"
    );
    assert!(l.body.contains("plugin enable publish"), "{}", l.body);

    let source = Stamped {
        at: SystemTime::UNIX_EPOCH,
        alert: Alert::SourceFailing {
            since: Duration::from_millis(312_400),
            error: "cannot reach https://s.example: connection refused".into(),
        },
    };
    let l = t.letter(&mail(vec![source]), 10 * MINUTE);
    assert_eq!(
        l.subject,
        "[sgevents] render01: the event source has been failing for 5m 12s"
    );
    assert!(l.body.contains("nothing is lost"), "{}", l.body);
    assert!(
        l.body
            .contains("sgevents -c /etc/sgevents/sgevents.toml status"),
        "{}",
        l.body
    );
}

#[test]
fn a_digest_counts_lists_and_mentions_what_was_dropped() {
    let t = text();
    let mut alerts: Vec<Stamped> = (1..=60).map(|id| failed("a", id)).collect();
    alerts.push(Stamped {
        at: SystemTime::UNIX_EPOCH,
        alert: Alert::PluginDisabled {
            plugin: "b".into(),
            reason: "exited with status 125".into(),
        },
    });
    let mut m = mail(alerts);
    m.omitted = 4;
    m.dropped = 9;
    let l = t.letter(&m, 10 * MINUTE);
    assert_eq!(
        l.subject,
        "[sgevents] render01: 65 alerts (60 failed events, 1 plugin disabled, ...)"
    );
    assert!(l.body.contains("at most one mail per 10m"), "{}", l.body);
    assert!(
        l.body
            .contains("plugin `a` failed event 1: cannot do event 1"),
        "{}",
        l.body
    );
    assert!(
        !l.body.contains("failed event 51:"),
        "only {MAX_LISTED} are listed"
    );
    assert!(l.body.contains("and 15 more, not listed"), "{}", l.body);
    assert!(
        l.body.contains("9 more alert(s) were dropped"),
        "{}",
        l.body
    );
    assert!(l.body.contains("failed list a\n"), "{}", l.body);
    assert!(
        l.body.contains("failed retry a\n"),
        "a digest retries them all: {}",
        l.body
    );
    assert!(l.body.contains("plugin enable b\n"), "{}", l.body);
    assert_eq!(
        l.body.matches("failed list a").count(),
        1,
        "each command once"
    );
}

#[test]
fn secrets_never_reach_a_mail() {
    let t = text();
    let leaky = Stamped {
        at: SystemTime::UNIX_EPOCH,
        alert: Alert::PluginDisabled {
            plugin: "p".into(),
            reason: "login failed with key sg-script-key and hunter2-smtp".into(),
        },
    };
    let l = t.letter(&mail(vec![leaky]), MINUTE);
    assert!(
        !l.body.contains("sg-script-key") && !l.body.contains("hunter2-smtp"),
        "{}",
        l.body
    );
    assert!(
        l.body
            .contains("login failed with key <redacted> and <redacted>"),
        "{}",
        l.body
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("key");
    std::fs::write(&key, "the-source-key\n").expect("key");
    let text = format!(
        "[source]\nkind = \"shotgrid\"\nurl = \"https://s.example\"\nscript_name = \"sg\"\nscript_key_file = {:?}\n[alerts]\nsmtp_host = \"h\"\nfrom = \"a@b.example\"\nto = [\"a@b.example\"]\n",
        key.display().to_string()
    );
    let c = parse(&dir.path().join("sgevents.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
    let t = Text::of(&c, "h".into());
    assert_eq!(t.redact("key the-source-key!"), "key <redacted>!");
}

/// A configuration mailing through `smtp` (plain, no login).
fn live(smtp: &FakeSmtp, rate_limit: &str, plugins: &str) -> Config {
    config(
        &format!(
            "to = [\"ops@s.example\"]\ntls = \"none\"\nsmtp_port = {}\nrate_limit = \"{rate_limit}\"",
            smtp.port()
        ),
        plugins,
    )
}

/// Waits for `n` messages without blocking the runtime.
async fn messages(smtp: &Arc<FakeSmtp>, n: usize) -> Vec<sgevents_tests::smtp::Received> {
    let smtp = smtp.clone();
    tokio::task::spawn_blocking(move || smtp.wait_for_messages(n, Duration::from_secs(60)))
        .await
        .expect("waited")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_goes_out_at_once_then_the_burst_as_one_digest_at_stop() {
    let smtp = Arc::new(FakeSmtp::plain());
    let c = live(
        &smtp,
        "1h",
        "[plugin.anim]\ncommand = [\"x\"]\nalert_to = [\"anim@s.example\"]\n",
    );
    let alerts = Alerts::start(&c).expect("started");
    assert!(alerts.is_enabled());
    alerts.send(failed("comp", 1).alert);
    let first = messages(&smtp, 1).await;
    assert_eq!(first[0].rcpt_to, ["ops@s.example"]);
    assert_eq!(first[0].mail_from, "sgevents@studio.example");
    assert!(
        first[0].subject.ends_with(": plugin comp failed event 1"),
        "{}",
        first[0].subject
    );
    for id in 2..=4 {
        alerts.send(failed("comp", id).alert);
    }
    // Another recipient set is not held by the first; a plugin's register overrides alert_to.
    alerts.send(failed("anim", 10).alert);
    alerts.set_recipients(
        "anim",
        Recipients::To(to(&["dev@s.example", "not an address"])),
    );
    alerts.send(failed("anim", 11).alert);
    alerts.set_recipients("comp", Recipients::Nobody);
    alerts.send(failed("comp", 5).alert);
    let got = messages(&smtp, 3).await;
    let rcpts: Vec<_> = got.iter().map(|m| m.rcpt_to.clone()).collect();
    assert_eq!(
        rcpts,
        [
            to(&["ops@s.example"]),
            to(&["anim@s.example"]),
            to(&["dev@s.example"])
        ]
    );
    alerts.shutdown().await;
    let all = smtp.messages();
    assert_eq!(
        all.len(),
        4,
        "one digest at stop: {:#?}",
        all.iter().map(|m| &m.subject).collect::<Vec<_>>()
    );
    let digest = &all[3];
    assert_eq!(digest.rcpt_to, ["ops@s.example"]);
    assert!(
        digest.subject.ends_with(": 3 alerts (3 failed events)"),
        "{}",
        digest.subject
    );
    for id in 2..=4 {
        assert!(
            digest
                .body
                .contains(&format!("plugin `comp` failed event {id}:")),
            "{}",
            digest.body
        );
    }
    assert!(
        !digest.body.contains("event 5:"),
        "comp asked for nobody afterwards"
    );
    // After shutdown, alerts go nowhere and nothing blocks.
    alerts.send(failed("comp", 6).alert);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_with_a_login_and_a_private_ca() {
    let smtp = Arc::new(FakeSmtp::start(SmtpOptions {
        tls: ServerTls::StartTls,
        login: Some(("sgevents".into(), "hunter2-smtp".into())),
        silent: false,
    }));
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, smtp.ca_pem().expect("a CA")).expect("write CA");
    let mut c = config(
        &format!(
            "to = [\"ops@s.example\"]\nsmtp_port = {}\nca_file = {:?}",
            smtp.port(),
            ca.display().to_string()
        ),
        "",
    );
    let alerts_config = c.alerts.as_mut().expect("[alerts]");
    alerts_config.credentials = Some(SmtpCredentials {
        username: "sgevents".into(),
        password: crate::config::Secret::new("hunter2-smtp"),
    });
    assert_eq!(
        check(alerts_config).await,
        Ok(format!(
            "mail server 127.0.0.1:{}: connected and signed in",
            smtp.port()
        ))
    );
    let alerts = Alerts::start(&c).expect("started");
    alerts.send(Alert::PluginDisabled {
        plugin: "p".into(),
        reason: "the password is hunter2-smtp".into(),
    });
    let got = messages(&smtp, 1).await;
    assert!(got[0].tls, "the message came over TLS");
    assert_eq!(got[0].login.as_deref(), Some("sgevents"));
    assert!(
        got[0].body.contains("the password is <redacted>"),
        "{}",
        got[0].body
    );
    assert!(!got[0].data.contains("hunter2"), "{}", got[0].data);
    alerts.shutdown().await;

    // A wrong password: `check` says so, with a hint.
    let alerts_config = c.alerts.as_mut().expect("[alerts]");
    alerts_config.credentials = Some(SmtpCredentials {
        username: "sgevents".into(),
        password: crate::config::Secret::new("wrong"),
    });
    let err = check(alerts_config).await.expect_err("refused");
    assert!(
        err.contains("535") && err.contains("hint: check the user name and password"),
        "{err}"
    );
    assert_eq!(smtp.failed_logins(), 1);
}

#[test]
fn a_full_queue_drops_and_counts_instead_of_waiting() {
    // A handle whose worker never reads: the queue fills, and `send` still returns at once.
    let (tx, _rx) = mpsc::channel(QUEUE);
    let alerts = Alerts {
        inner: Some(Arc::new(Shared {
            tx,
            dropped: AtomicU64::new(0),
            overrides: Mutex::new(BTreeMap::new()),
        })),
    };
    for id in 0..(QUEUE as i64 + 5) {
        alerts.send(failed("a", id).alert);
    }
    let shared = alerts.inner.as_ref().expect("enabled");
    assert_eq!(shared.dropped.load(Ordering::Relaxed), 5);
    // Nothing to do without an [alerts] table.
    let none = Alerts::none();
    none.send(failed("a", 1).alert);
    none.set_recipients("a", Recipients::Nobody);
    assert!(!none.is_enabled());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_never_blocks_send_and_stopping_is_bounded() {
    let smtp = Arc::new(FakeSmtp::silent());
    let c = live(&smtp, "1h", "");
    let alerts = Alerts::start(&c).expect("started");
    alerts.send(failed("a", 1).alert);
    let wait = smtp.clone();
    tokio::task::spawn_blocking(move || wait.wait_for_connections(1, Duration::from_secs(60)))
        .await
        .expect("connected");
    // The mail in flight waits on the silent server; the worker goes on taking alerts.
    for id in 2..=(QUEUE as i64 + 100) {
        alerts.send(failed("a", id).alert);
    }
    alerts.set_recipients("a", Recipients::Nobody);
    alerts.send(failed("a", 0).alert);
    // Stopping gives up on the silent server after its wait instead of SEND_TIMEOUT (here 300 ms
    // rather than the daemon's SHUTDOWN_WAIT, which the test would only wait out).
    alerts.shutdown_within(Duration::from_millis(300)).await;
    assert!(smtp.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_mail_is_retried_with_what_came_meanwhile() {
    let smtp = Arc::new(FakeSmtp::plain());
    smtp.fail_next(1);
    let c = live(&smtp, "200ms", "");
    let alerts = Alerts::start(&c).expect("started");
    alerts.send(failed("a", 1).alert);
    let wait = smtp.clone();
    tokio::task::spawn_blocking(move || wait.wait_for_connections(1, Duration::from_secs(60)))
        .await
        .expect("connected");
    alerts.send(failed("a", 2).alert);
    let got = messages(&smtp, 1).await;
    let mut ids = Vec::new();
    for m in &got {
        for id in [1, 2] {
            if m.body.contains(&format!("failed event {id}")) {
                ids.push(id);
            }
        }
    }
    alerts.shutdown().await;
    let all = smtp.messages();
    let text: String = all.iter().map(|m| m.body.clone()).collect();
    assert!(
        text.contains("failed event 1") && text.contains("failed event 2"),
        "the refused alert was mailed later, with the next: {text}"
    );
    assert_eq!(ids.first(), Some(&1), "the refused alert comes first");
    assert_eq!(smtp.refused(), 1, "the first try was refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_the_recipients_and_can_turn_alerts_off() {
    let smtp = Arc::new(FakeSmtp::plain());
    let alerts = Alerts::start(&live(&smtp, "1h", "")).expect("started");
    alerts.send(failed("a", 1).alert);
    assert_eq!(messages(&smtp, 1).await[0].rcpt_to, ["ops@s.example"]);

    let reloaded = config(
        &format!(
            "to = [\"night-shift@s.example\"]\ntls = \"none\"\nsmtp_port = {}\nsubject_prefix = \"[night]\"",
            smtp.port()
        ),
        "",
    );
    alerts.reconfigure(&reloaded).expect("reconfigured");
    alerts.send(failed("a", 2).alert);
    let got = messages(&smtp, 2).await;
    assert_eq!(got[1].rcpt_to, ["night-shift@s.example"]);
    assert!(got[1].subject.starts_with("[night] "), "{}", got[1].subject);

    let without = parse(
        Path::new("/etc/sgevents/sgevents.toml"),
        "[source]\nkind = \"jsonl\"\npath = \"e\"\n",
    )
    .expect("valid");
    alerts.reconfigure(&without).expect("reconfigured");
    alerts.send(failed("a", 3).alert);
    alerts.shutdown().await;
    assert_eq!(smtp.messages().len(), 2, "alerts are off without [alerts]");

    // A handle started without [alerts] stays off (a restart turns alerts on).
    let off = Alerts::none();
    off.reconfigure(&reloaded).expect("nothing to do");
    assert!(!off.is_enabled());
}
