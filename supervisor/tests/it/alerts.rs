//! Email alerts with the real daemon against the fake SMTP server (`sgevents_tests::smtp`): a
//! failed event is mailed, a burst becomes one digest, STARTTLS with a login from the environment,
//! a mail server that never answers delays nothing, and a long ShotGrid outage is mailed once.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use sgevents_tests::smtp::{FakeSmtp, Received, ServerTls, SmtpOptions};

use crate::{Ctx, GUARD, assert_success, signal, wait_for, wait_output};

/// An `[alerts]` table for a plain (no TLS, no login) server on `port`.
fn plain_alerts(port: u16, rate_limit: &str) -> String {
    format!(
        "\n[alerts]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\ntls = \"none\"\nfrom = \"sgevents <sgevents@studio.example>\"\nto = [\"pipeline@studio.example\"]\nsubject_prefix = \"[farm]\"\nrate_limit = \"{rate_limit}\"\n"
    )
}

/// The event ids a mail names as failed ("failed event N").
fn failed_ids(mail: &Received) -> Vec<i64> {
    let text = format!("{}\n{}", mail.subject, mail.body);
    let mut ids: Vec<i64> = text
        .match_indices("failed event ")
        .filter_map(|(at, m)| {
            let digits: String = text[at + m.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[test]
fn a_termed_event_is_mailed_naming_the_plugin_and_the_event() {
    let smtp = FakeSmtp::plain();
    let ctx = Ctx::new();
    ctx.events(1..=5);
    ctx.config(
        &[],
        &format!(
            "{}{}",
            ctx.test_plugin("publish", "term_at = 3"),
            plain_alerts(smtp.port(), "10m")
        ),
    );
    assert_success(&ctx.run());
    assert_eq!(ctx.ids("publish"), [1, 2, 3, 4, 5]);
    let mails = smtp.messages();
    assert_eq!(
        mails.len(),
        1,
        "one mail: {:#?}",
        mails.iter().map(|m| &m.subject).collect::<Vec<_>>()
    );
    let mail = &mails[0];
    assert_eq!(mail.mail_from, "sgevents@studio.example");
    assert_eq!(mail.rcpt_to, ["pipeline@studio.example"]);
    assert!(
        mail.subject.starts_with("[farm] ")
            && mail.subject.ends_with(": plugin publish failed event 3"),
        "{}",
        mail.subject
    );
    assert!(
        mail.body.contains("event 3 can never work"),
        "the plugin's error: {}",
        mail.body
    );
    let config = std::fs::canonicalize(ctx.path("sgevents.toml")).expect("config path");
    assert!(
        mail.body.contains(&format!(
            "sgevents -c {} failed list publish",
            config.display()
        )),
        "what to do next: {}",
        mail.body
    );
}

#[test]
fn a_burst_of_failures_is_one_mail_then_one_digest_and_alert_to_routes_a_plugin() {
    let smtp = FakeSmtp::plain();
    let ctx = Ctx::new();
    ctx.events(1..=20);
    // Every event fails at its first nack; `anim` fails event 7 only and mails its own team.
    let plugins = ctx
        .test_plugin("comp", "nack_all = true")
        .replace("\nconfig", "\nmax_attempts = 1\nconfig")
        + &ctx.test_plugin("anim", "term_at = 7").replace(
            "\nconfig",
            "\nalert_to = [\"anim-td@studio.example\"]\nconfig",
        );
    ctx.config(
        &[("exit_when_idle = true", "exit_when_idle = false")],
        &format!("{plugins}{}", plain_alerts(smtp.port(), "2s")),
    );
    let mut daemon = ctx.start();
    wait_for("every event of comp to fail", || {
        ctx.plugin_if_known("comp").is_some() && ctx.failed("comp").len() == 20
    });
    // The first failure goes at once, the rest of the burst in one digest when the window ends.
    wait_for("every failure of comp to be mailed", || {
        let mut ids: Vec<i64> = smtp
            .messages()
            .iter()
            .filter(|m| m.rcpt_to == ["pipeline@studio.example"])
            .flat_map(failed_ids)
            .collect();
        ids.sort_unstable();
        ids == (1..=20).collect::<Vec<_>>()
    });
    signal(&daemon, Signal::SIGTERM);
    let status = wait_exit(&mut daemon);
    assert!(status.success(), "{status}\n{}", ctx.log());

    let mails = smtp.messages();
    let comp: Vec<&Received> = mails
        .iter()
        .filter(|m| m.rcpt_to == ["pipeline@studio.example"])
        .collect();
    assert_eq!(
        failed_ids(comp[0]),
        [1],
        "the first failure, at once: {}",
        comp[0].subject
    );
    assert!(
        comp[0].subject.ends_with(": plugin comp failed event 1"),
        "{}",
        comp[0].subject
    );
    let digest = comp[1];
    assert!(
        digest.subject.contains(" alerts (") && digest.subject.contains("failed events"),
        "a digest: {}",
        digest.subject
    );
    assert!(
        comp.len() < 20 && comp.len() <= 3,
        "a burst is not one mail per failure: {:#?}",
        comp.iter().map(|m| &m.subject).collect::<Vec<_>>()
    );
    let anim: Vec<&Received> = mails
        .iter()
        .filter(|m| m.rcpt_to == ["anim-td@studio.example"])
        .collect();
    assert_eq!(
        anim.len(),
        1,
        "alert_to routes anim's alert to its own team"
    );
    assert!(
        anim[0].subject.ends_with(": plugin anim failed event 7"),
        "{}",
        anim[0].subject
    );
    assert!(
        comp.iter().all(|m| !m.body.contains("plugin `anim`")),
        "anim's alert does not go to `to`"
    );
}

#[test]
fn starttls_with_a_login_from_the_environment() {
    let smtp = FakeSmtp::start(SmtpOptions {
        tls: ServerTls::StartTls,
        login: Some(("sgevents-bot".into(), "s3cret-mail-pass".into())),
        silent: false,
    });
    let ctx = Ctx::new();
    std::fs::write(ctx.path("mail-ca.pem"), smtp.ca_pem().expect("a CA")).expect("write the CA");
    ctx.events(1..=3);
    let alerts = format!(
        "\n[alerts]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\ntls = \"starttls\"\nca_file = \"mail-ca.pem\"\nusername_env = \"SGEVENTS_TEST_SMTP_USER\"\npassword_env = \"SGEVENTS_TEST_SMTP_PASS\"\nfrom = \"sgevents@studio.example\"\nto = [\"pipeline@studio.example\"]\n",
        smtp.port()
    );
    ctx.config(
        &[],
        &format!("{}{alerts}", ctx.test_plugin("f", "fatal_at = 2")),
    );

    // Without the variables, the daemon refuses to start and names the missing one.
    let out = wait_output(
        ctx.sgevents(&["run"])
            .env_remove("SGEVENTS_TEST_SMTP_USER")
            .env_remove("SGEVENTS_TEST_SMTP_PASS")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sgevents starts"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("`alerts.username_env` = `\"SGEVENTS_TEST_SMTP_USER\"`: the environment variable is not set"),
        "{stderr}"
    );

    let out = wait_output(
        ctx.sgevents(&["run"])
            .env("SGEVENTS_TEST_SMTP_USER", "sgevents-bot")
            .env("SGEVENTS_TEST_SMTP_PASS", "s3cret-mail-pass")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sgevents starts"),
    );
    assert_success(&out);
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let mail = &mails[0];
    assert!(mail.tls, "sent after STARTTLS");
    assert_eq!(mail.login.as_deref(), Some("sgevents-bot"));
    assert!(
        mail.subject.ends_with(": plugin f is disabled"),
        "{}",
        mail.subject
    );
    assert!(
        mail.body.contains("cannot go on at event 2"),
        "the reason: {}",
        mail.body
    );
    assert!(
        mail.body.contains("plugin enable f"),
        "what to do next: {}",
        mail.body
    );
    assert!(
        !mail.data.contains("s3cret-mail-pass"),
        "no secret in the mail"
    );
    assert_eq!(smtp.failed_logins(), 0);
}

#[test]
fn a_mail_server_that_never_answers_delays_no_event() {
    let smtp = FakeSmtp::silent();
    let ctx = Ctx::new();
    ctx.events(1..=5);
    ctx.config(
        &[
            ("exit_when_idle = true", "exit_when_idle = false"),
            (
                "path = \"events.jsonl\"",
                "path = \"events.jsonl\"\nfollow = true\npoll_interval = \"20ms\"",
            ),
        ],
        &format!(
            "{}{}",
            ctx.test_plugin("t", "term_at = 2"),
            plain_alerts(smtp.port(), "10m")
        ),
    );
    let mut daemon = ctx.start();
    // Event 2 fails; its mail goes to a server that accepts the connection and never answers.
    smtp.wait_for_connections(1, GUARD);
    ctx.append_events(6..=40);
    wait_for("every event, while the mail hangs", || {
        ctx.ids("t") == (1..=40).collect::<Vec<_>>()
    });
    assert!(
        smtp.messages().is_empty(),
        "the mail is still waiting on the silent server"
    );
    assert_eq!(ctx.failed("t").len(), 1);

    // Stopping waits a bounded moment for the mail, then says what was not sent.
    signal(&daemon, Signal::SIGTERM);
    let status = wait_exit(&mut daemon);
    assert!(status.success(), "{status}\n{}", ctx.log());
    let log = ctx.log();
    assert!(
        log.contains("1 alert(s) were not mailed before stopping"),
        "{log}"
    );
}

/// Waits for a background daemon to exit; kills it and fails after [`GUARD`].
fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if start.elapsed() > GUARD {
            let _ = child.kill();
            panic!("the daemon did not stop within {GUARD:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_long_shotgrid_outage_is_mailed_once() {
    use crate::site::{KEY, shotgrid_config, site};
    use sgevents_tests::fake_site::Fault;
    let site = site();
    site.append(3);
    site.fail_next(1_000_000, Fault::Status(503));
    let smtp = FakeSmtp::plain();
    let ctx = Ctx::new();
    shotgrid_config(
        &ctx,
        &site,
        "alert_after = \"1s\"",
        &plain_alerts(smtp.port(), "10m"),
    );
    let mut daemon = ctx.start();
    let mails = smtp.wait_for_messages(1, GUARD);
    let mail = &mails[0];
    assert!(
        mail.subject
            .contains(": the event source has been failing for "),
        "{}",
        mail.subject
    );
    assert!(
        mail.body.contains("HTTP 503") && mail.body.contains(&site.url()),
        "the last error: {}",
        mail.body
    );
    assert!(
        mail.body.contains("nothing is lost"),
        "what it means: {}",
        mail.body
    );
    assert!(!mail.data.contains(KEY), "no secret in the mail");
    assert_eq!(mail.rcpt_to, ["pipeline@studio.example"]);
    signal(&daemon, Signal::SIGTERM);
    let status = wait_exit(&mut daemon);
    assert!(status.success(), "{status}\n{}", ctx.log());
    assert_eq!(smtp.messages().len(), 1, "once per outage");
}

#[test]
fn a_legacy_plugin_s_set_emails_routes_its_alerts() {
    let smtp = FakeSmtp::plain();
    let ctx = Ctx::new();
    ctx.events(1..=4);
    let folder = ctx.path("legacy");
    std::fs::create_dir_all(&folder).expect("folder");
    let plugin = |emails: &str| {
        format!(
            "def registerCallbacks(reg):\n    reg.setEmails({emails})\n    reg.registerCallback('s', 'k', cb, None, None, stopOnError=False)\n\n\n\
             def cb(sg, logger, event, args):\n    if event['id'] == 2:\n        raise ValueError('no good')\n"
        )
    };
    std::fs::write(
        folder.join("team.py"),
        plugin("'td@studio.example', 'lead@studio.example'"),
    )
    .expect("team");
    std::fs::write(folder.join("quiet.py"), plugin("False")).expect("quiet");
    std::fs::write(folder.join("usual.py"), plugin("True")).expect("usual");
    let pythonpath = crate::root().join("sdk-python/src").display().to_string();
    ctx.config(
        &[(
            "[plugins]",
            &format!(
                "[plugins]\nlegacy_paths = [\"legacy\"]\nlegacy_env = {{ PYTHONPATH = {pythonpath:?} }}"
            ),
        )],
        &plain_alerts(smtp.port(), "10m"),
    );
    assert_success(&ctx.run());
    for name in ["team", "quiet", "usual"] {
        assert_eq!(ctx.failed(name).len(), 1, "{name} failed event 2");
    }
    // The daemon has exited, and it sends what is queued before it does: every mail is in.
    let mails = smtp.wait_for_messages(2, GUARD);
    let to_of = |plugin: &str| -> Vec<Vec<String>> {
        mails
            .iter()
            .filter(|m| m.subject.contains(&format!("plugin {plugin} failed")))
            .map(|m| {
                let mut to = m.rcpt_to.clone();
                to.sort();
                to
            })
            .collect()
    };
    assert_eq!(
        to_of("team"),
        [vec![
            "lead@studio.example".to_owned(),
            "td@studio.example".to_owned()
        ]],
        "setEmails(addresses)"
    );
    assert_eq!(
        to_of("usual"),
        [vec!["pipeline@studio.example".to_owned()]],
        "setEmails(True)"
    );
    assert!(to_of("quiet").is_empty(), "setEmails(False): no mail");
}

#[test]
fn check_signs_in_to_the_mail_server_or_says_why_not() {
    let smtp = FakeSmtp::plain();
    let ctx = Ctx::new();
    ctx.events(1..=2);
    ctx.config(
        &[],
        &format!(
            "{}{}",
            ctx.test_plugin("p", ""),
            plain_alerts(smtp.port(), "10m")
        ),
    );
    let out = ctx.sgevents(&["check"]).output().expect("check runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "alerts:        mail server 127.0.0.1:{}: connected",
            smtp.port()
        )),
        "{text}"
    );
    assert!(smtp.messages().is_empty(), "check sends no mail");

    // Nobody listens on this port any more.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    ctx.config(
        &[],
        &format!("{}{}", ctx.test_plugin("p", ""), plain_alerts(port, "10m")),
    );
    let out = ctx.sgevents(&["check"]).output().expect("check runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("alerts:        error: mail server") && text.contains("hint:"),
        "{text}"
    );
}
