//! The SDK's behaviour (`/tmp/sdk-behaviour.md`, mirrored in the crate docs), checked in memory
//! through the `testing` module, which runs the same loop as `Plugin::run`.
//!
//! Tests about the order of messages use `Live` and callbacks that block on a channel the test
//! releases only after it has seen what it waits for: no sleeps, no timing.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use serde_json::json;
use sgevents_sdk::protocol::encode;
use sgevents_sdk::testing::{self, DaemonMessage, Delivery, Harness, PluginMessage};
use sgevents_sdk::{Credentials, Error, Event, Exit, Level, Plugin, Subscription};

fn every(name: &str) -> Subscription {
    Subscription::new(name, ["*"])
}

fn ack(event_id: i64) -> PluginMessage {
    PluginMessage::Ack { event_id }
}

fn nack(event_id: i64, error: &str) -> PluginMessage {
    PluginMessage::Nack {
        event_id,
        error: error.to_owned(),
        retry_after_ms: None,
    }
}

/// A callback that says it started, then waits for the test to release it.
struct Gate {
    entered: Receiver<i64>,
    release: Sender<()>,
}

fn gated() -> (
    Gate,
    impl Fn(&sgevents_sdk::Context<'_>, &Event) -> Result<(), Error> + Send + Sync + 'static,
) {
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let callback = move |ctx: &sgevents_sdk::Context<'_>, _: &Event| {
        entered_tx
            .send(ctx.event_id())
            .expect("the test waits for the callback");
        release_rx
            .lock()
            .expect("not poisoned")
            .recv()
            .expect("the test releases the callback");
        Ok(())
    };
    (Gate { entered, release }, callback)
}

// --- handshake ------------------------------------------------------------------------------

#[test]
fn registers_every_subscription_in_order_with_an_explicit_default_window() {
    let plugin = Plugin::new()
        .on(
            Subscription::new("on_status", ["Shotgun_Task_Change"]).attributes(["sg_status_list"]),
            |_, _| Ok(()),
        )
        .setup(|setup, _| {
            setup.on(
                Subscription::new("on_new", ["Shotgun_*_New"])
                    .project_ids([66])
                    .skip_transient(),
                |_, _| Ok(()),
            );
            Ok(())
        })
        .on(every("last_of_the_builder"), |_, _| Ok(()));
    let report = Harness::new(plugin).run();
    let register = report.register.expect("registered");
    assert_eq!(register.protocol, 1);
    assert_eq!(register.max_in_flight, 1);
    let names: Vec<&str> = register
        .subscriptions
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["on_status", "last_of_the_builder", "on_new"],
        "builder first, then setup hooks"
    );
    assert_eq!(
        register.subscriptions[0].attributes,
        Some(vec!["sg_status_list".to_owned()])
    );
    assert_eq!(register.subscriptions[2].project_ids, Some(vec![66]));
    assert!(register.subscriptions[2].skip_transient);
    let line = encode(&PluginMessage::Register(register));
    assert!(
        line.contains(r#""max_in_flight":1"#),
        "the window is always written: {line}"
    );
    assert_eq!((report.answers, report.exit), (vec![], Exit::Success));
}

#[test]
fn alert_recipients_go_out_in_register_only_when_set() {
    use sgevents_sdk::protocol::AlertRecipients;
    let report = Harness::new(Plugin::new().on(every("e"), |_, _| Ok(()))).run();
    let register = report.register.expect("registered");
    assert_eq!(register.alerts, None);
    let line = encode(&PluginMessage::Register(register));
    assert!(!line.contains("alerts"), "absent unless set: {line}");

    let to = AlertRecipients::To(vec!["td@studio.example".into()]);
    let report = Harness::new(
        Plugin::new()
            .alerts(to.clone())
            .on(every("e"), |_, _| Ok(())),
    )
    .run();
    assert_eq!(report.register.expect("registered").alerts, Some(to));

    let plugin = Plugin::new().setup(|setup, _| {
        setup.on(every("e"), |_, _| Ok(()));
        setup.alerts(AlertRecipients::Default(false));
        Ok(())
    });
    let report = Harness::new(plugin).run();
    let register = report.register.expect("registered");
    assert_eq!(register.alerts, Some(AlertRecipients::Default(false)));
    let line = encode(&PluginMessage::Register(register));
    assert!(line.contains(r#""alerts":false"#), "{line}");
}

#[test]
fn the_setup_hook_builds_subscriptions_from_the_config() {
    let plugin = Plugin::new().setup(|setup, config| {
        assert_eq!(setup.plugin(), "studio-sync");
        for name in config["watch"].as_array().expect("a list") {
            let name = name.as_str().expect("a string");
            setup.on(
                Subscription::new(name, [format!("Shotgun_{name}_New")]),
                |_, _| Ok(()),
            );
        }
        setup.max_in_flight(
            u32::try_from(config["window"].as_u64().expect("a number")).expect("small"),
        );
        Ok(())
    });
    let report = Harness::new(plugin)
        .plugin_name("studio-sync")
        .config(json!({"watch": ["Shot", "Asset"], "window": 3}))
        .event(testing::new_entity(1, "Asset", 7, "chair"))
        .event(testing::new_entity(2, "Note", 8, "hello"))
        .run();
    let register = report.register.expect("registered");
    assert_eq!(register.max_in_flight, 3);
    assert_eq!(
        register.subscriptions[1].event_types,
        vec!["Shotgun_Asset_New"]
    );
    assert_eq!(report.answers, vec![ack(1)]);
    assert_eq!(
        report.undelivered,
        vec![2],
        "no subscription matches a new Note"
    );
}

#[test]
fn a_version_mismatch_is_fatal() {
    let report = Harness::new(Plugin::new().on(every("e"), |_, _| Ok(())))
        .protocols([99])
        .run();
    assert_eq!(report.register, None);
    assert_eq!(
        report.answers,
        vec![PluginMessage::Fatal {
            error:
                "no common protocol version: the daemon offers [99], this plugin speaks [1]\nhint: \
                    upgrade the older of the two (the sgevents daemon or this plugin's SDK)"
                    .to_owned()
        }]
    );
    assert_eq!(report.exit, Exit::Fatal);
    assert_eq!(report.exit.code(), 125);
}

#[test]
fn the_newest_common_version_is_chosen() {
    let report = Harness::new(Plugin::new().on(every("e"), |_, _| Ok(())))
        .protocols([1, 2, 7])
        .run();
    assert_eq!(report.register.expect("registered").protocol, 1);
}

#[test]
fn no_subscriptions_is_fatal() {
    let report = Harness::new(Plugin::new()).run();
    let error = report.fatal().expect("fatal");
    assert!(error.contains("no subscriptions"), "{error}");
    assert_eq!((report.register, report.exit), (None, Exit::Fatal));
}

#[test]
fn an_invalid_register_is_fatal() {
    let report = Harness::new(Plugin::new().max_in_flight(0).on(every("e"), |_, _| Ok(()))).run();
    assert!(
        report.fatal().expect("fatal").contains("max_in_flight `0`"),
        "{report:?}"
    );
    let twice = Plugin::new()
        .on(every("e"), |_, _| Ok(()))
        .on(every("e"), |_, _| Ok(()));
    let report = Harness::new(twice).run();
    assert!(
        report
            .fatal()
            .expect("fatal")
            .contains("subscription name `e`"),
        "{report:?}"
    );
    assert_eq!(report.exit, Exit::Fatal);
}

#[test]
fn a_failing_or_panicking_setup_hook_is_fatal() {
    let plugin = Plugin::new()
        .on(every("e"), |_, _| Ok(()))
        .setup(|_, config| {
            config
                .get("token")
                .ok_or_else(|| Error::new("the config has no `token`"))?;
            Ok(())
        });
    let report = Harness::new(plugin).run();
    assert_eq!(
        report.fatal(),
        Some("plugin setup failed: the config has no `token`")
    );
    assert_eq!((report.register, report.exit), (None, Exit::Fatal));

    let plugin = Plugin::new().setup(|_, _| panic!("no database"));
    let report = Harness::new(plugin).run();
    assert_eq!(report.fatal(), Some("plugin setup panicked: no database"));
    assert_eq!(report.exit, Exit::Fatal);
}

// --- events and answers ---------------------------------------------------------------------

#[test]
fn callbacks_run_in_order_and_stop_at_the_first_failure() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut plugin = Plugin::new();
    for name in ["a", "b", "c"] {
        let calls = Arc::clone(&calls);
        plugin = plugin.on(every(name), move |_, event| {
            calls
                .lock()
                .expect("not poisoned")
                .push(format!("{}:{name}", event.id));
            if event.meta["fail_in"] == name {
                Err(Error::new(format!("{name} failed")))
            } else {
                Ok(())
            }
        });
    }
    let mut failing = testing::task_status_change(2, "ip", "rev");
    failing.meta["fail_in"] = json!("b");
    let report = Harness::new(plugin)
        .event(testing::task_status_change(1, "ip", "rev"))
        .event(failing)
        .run();
    assert_eq!(report.answers, vec![ack(1), nack(2, "b failed")]);
    assert_eq!(
        *calls.lock().expect("not poisoned"),
        ["1:a", "1:b", "1:c", "2:a", "2:b"]
    );
}

#[derive(Debug)]
struct Publish(std::num::ParseIntError);

impl fmt::Display for Publish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cannot publish the version")
    }
}

impl std::error::Error for Publish {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// One callback whose failure is chosen by the event's new status.
fn by_status() -> Plugin {
    Plugin::new().on(every("by_status"), |_, event| match event.meta["new_value"]
        .as_str()
        .unwrap_or_default()
    {
        "nack" => Err(Error::new("database is locked")),
        "chain" => {
            "x".parse::<u8>().map_err(Publish)?;
            Ok(())
        }
        "retry" => Err(Error::retry("render farm busy").after(Duration::from_millis(5000))),
        "term" => Err(Error::term("Task 67378 has no parent Shot")),
        "panic" => panic!("index out of range"),
        "fatal" => Err(Error::fatal("license server unreachable")),
        _ => Ok(()),
    })
}

#[test]
fn errors_map_to_answers() {
    let report = Harness::new(by_status())
        .event(testing::task_status_change(1, "ip", "ok"))
        .event(testing::task_status_change(2, "ip", "nack"))
        .event(testing::task_status_change(3, "ip", "chain"))
        .event(testing::task_status_change(4, "ip", "retry"))
        .event(testing::task_status_change(5, "ip", "term"))
        .event(testing::task_status_change(6, "ip", "panic"))
        .run();
    assert_eq!(
        report.answers,
        vec![
            ack(1),
            nack(2, "database is locked"),
            nack(
                3,
                "cannot publish the version: invalid digit found in string"
            ),
            PluginMessage::Nack {
                event_id: 4,
                error: "render farm busy".into(),
                retry_after_ms: Some(5000)
            },
            PluginMessage::Term {
                event_id: 5,
                error: "Task 67378 has no parent Shot".into()
            },
            nack(6, "callback panicked: index out of range"),
        ]
    );
    assert_eq!(
        report.exit,
        Exit::Success,
        "a panic is caught and the plugin goes on"
    );
    // Every failed event is logged with its id: nack at warn level, term at error level.
    let logged = |level: Level, id: i64| {
        report
            .logs
            .iter()
            .any(|r| r.level == level && r.message.starts_with(&format!("event {id} (attempt 1)")))
    };
    for id in [2, 3, 4, 6] {
        assert!(logged(Level::Warn, id), "event {id}: {:?}", report.logs);
    }
    assert!(logged(Level::Error, 5), "{:?}", report.logs);
    assert!(!logged(Level::Warn, 1) && !logged(Level::Error, 1));
}

#[test]
fn fatal_ends_the_plugin_at_once() {
    let mut live = Harness::new(by_status()).start();
    live.hello();
    live.deliver(testing::task_status_change(1, "ip", "fatal"));
    assert_eq!(
        live.recv(),
        Some(PluginMessage::Fatal {
            error: "license server unreachable".into()
        })
    );
    assert_eq!(
        live.recv(),
        None,
        "the output closes right after `fatal`, stdin still open"
    );
    live.deliver(testing::task_status_change(2, "ip", "ok"));
    let report = live.finish();
    assert_eq!(report.exit, Exit::Fatal);
    assert_eq!(report.answer(2), None, "nothing is answered after `fatal`");
    assert!(
        report
            .logs
            .iter()
            .any(|r| r.level == Level::Error && r.message.starts_with("event 1 (attempt 1)"))
    );
}

#[test]
fn a_subscription_without_callback_is_term_and_runs_nothing() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let plugin = Plugin::new().on(every("known"), move |_, _| {
        counted.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    let report = Harness::new(plugin)
        .event(
            Delivery::new(testing::task_status_change(1, "ip", "rev"))
                .subscriptions(["known", "ghost"]),
        )
        .run();
    assert_eq!(
        report.answers,
        vec![PluginMessage::Term {
            event_id: 1,
            error: "no callback for subscription \"ghost\" in this plugin".into()
        }]
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[test]
fn the_context_describes_the_plugin_and_the_delivery() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut plugin = Plugin::new();
    for name in ["first", "second"] {
        let seen = Arc::clone(&seen);
        plugin = plugin.on(every(name), move |ctx, _| {
            seen.lock().expect("not poisoned").push(format!(
                "{} {} {} {} {:?} {} {:?} {:?}",
                ctx.plugin(),
                ctx.config()["greeting"],
                ctx.event_id(),
                ctx.attempt(),
                ctx.deadline(),
                ctx.subscription(),
                ctx.subscriptions(),
                ctx.credentials()
                    .map(|c| (c.site_url(), c.script_name(), c.script_key())),
            ));
            Ok(())
        });
    }
    let delivery = Delivery::new(testing::task_status_change(9, "ip", "rev"))
        .attempt(3)
        .deadline(Duration::from_millis(1500));
    let report = Harness::new(plugin)
        .plugin_name("studio-sync")
        .config(json!({"greeting": "hi"}))
        .credentials(Credentials::new(
            "https://studio.example",
            "sgevents",
            "s3cr3t",
        ))
        .event(delivery)
        .run();
    assert_eq!(report.answers, vec![ack(9)]);
    let creds = r#"Some(("https://studio.example", "sgevents", "s3cr3t"))"#;
    assert_eq!(
        *seen.lock().expect("not poisoned"),
        [
            format!(r#"studio-sync "hi" 9 3 1.5s first ["first", "second"] {creds}"#),
            format!(r#"studio-sync "hi" 9 3 1.5s second ["first", "second"] {creds}"#),
        ]
    );
}

#[test]
fn progress_is_written_at_once() {
    let (gate, wait) = gated();
    let plugin = Plugin::new().on(every("slow"), move |ctx, event| {
        ctx.progress();
        wait(ctx, event)
    });
    let mut live = Harness::new(plugin).start();
    live.hello();
    live.deliver(testing::task_status_change(1, "ip", "rev"));
    assert_eq!(
        live.recv(),
        Some(PluginMessage::Progress { event_id: 1 }),
        "while the callback still runs"
    );
    gate.release.send(()).expect("the callback waits");
    assert_eq!(live.recv(), Some(ack(1)));
    assert_eq!(live.finish().exit, Exit::Success);
}

// --- the reading loop -----------------------------------------------------------------------

#[test]
fn ping_is_answered_while_a_callback_runs() {
    let (gate, callback) = gated();
    let mut live = Harness::new(Plugin::new().on(every("slow"), callback)).start();
    live.hello();
    live.send(&DaemonMessage::Ping { nonce: 1 });
    assert_eq!(live.recv(), Some(PluginMessage::Pong { nonce: 1 }), "idle");
    live.deliver(testing::task_status_change(1, "ip", "rev"));
    assert_eq!(gate.entered.recv(), Ok(1));
    live.send(&DaemonMessage::Ping { nonce: 7 });
    assert_eq!(live.recv(), Some(PluginMessage::Pong { nonce: 7 }), "busy");
    gate.release.send(()).expect("the callback waits");
    assert_eq!(live.recv(), Some(ack(1)));
    assert_eq!(live.finish().exit, Exit::Success);
}

#[test]
fn shutdown_refuses_new_events_and_drains_those_in_flight() {
    let (gate, callback) = gated();
    let mut live = Harness::new(Plugin::new().on(every("slow"), callback)).start();
    live.hello();
    live.deliver(testing::task_status_change(1, "ip", "rev"));
    assert_eq!(gate.entered.recv(), Ok(1));
    live.send(&DaemonMessage::Shutdown { drain_ms: 10_000 });
    live.deliver(testing::task_status_change(2, "ip", "rev"));
    assert_eq!(live.recv(), Some(nack(2, "plugin is shutting down")));
    live.send(&DaemonMessage::Ping { nonce: 3 });
    assert_eq!(
        live.recv(),
        Some(PluginMessage::Pong { nonce: 3 }),
        "it keeps reading until EOF"
    );
    gate.release.send(()).expect("the callback waits");
    assert_eq!(live.recv(), Some(ack(1)), "the event in flight is answered");
    let report = live.finish();
    assert_eq!(report.exit, Exit::Success);
    assert!(
        gate.entered.try_recv().is_err(),
        "the refused event never reached a callback"
    );
}

#[test]
fn end_of_input_waits_for_the_events_in_flight() {
    let (gate, callback) = gated();
    let mut live = Harness::new(Plugin::new().on(every("slow"), callback)).start();
    live.hello();
    live.deliver(testing::task_status_change(1, "ip", "rev"));
    live.deliver(testing::task_status_change(2, "ip", "rev"));
    assert_eq!(gate.entered.recv(), Ok(1));
    live.close_input();
    gate.release.send(()).expect("the callback waits");
    gate.release.send(()).expect("the callback waits");
    assert_eq!(live.recv(), Some(ack(1)));
    assert_eq!(live.recv(), Some(ack(2)), "a queued event is in flight too");
    assert_eq!(live.recv(), None);
    assert_eq!(live.finish().exit, Exit::Success);
}

#[test]
fn end_of_input_before_hello_writes_nothing() {
    let report = Harness::new(Plugin::new().on(every("e"), |_, _| Ok(())))
        .start()
        .finish();
    assert_eq!(
        (report.register, report.answers, report.exit),
        (None, vec![], Exit::Success)
    );
}

#[test]
fn bad_lines_are_logged_and_skipped() {
    let mut live = Harness::new(Plugin::new().on(every("e"), |_, _| Ok(())))
        .max_line_bytes(300)
        .start();
    live.send(&DaemonMessage::Ping { nonce: 1 });
    live.send_line("not json");
    assert!(
        matches!(live.hello(), Some(PluginMessage::Register(_))),
        "messages before hello are ignored"
    );
    live.send_line(r#"{"type":"bogus","nonce":2}"#);
    let long = format!(
        r#"{{"type":"ping","nonce":3,"pad":"{}"}}"#,
        "x".repeat(1000)
    );
    live.send_line(&long);
    live.send_line(r#"{"type":"event","event_id":"4"}"#);
    live.send_line("\u{feff}\u{0}binary");
    live.send(&DaemonMessage::Hello(testing::Hello {
        protocols: vec![1],
        plugin: "again".into(),
        config: Default::default(),
    }));
    live.send(&DaemonMessage::Ping { nonce: 5 });
    assert_eq!(
        live.recv(),
        Some(PluginMessage::Pong { nonce: 5 }),
        "the loop goes on, and answers nothing else"
    );
    let report = live.finish();
    assert_eq!(report.answers, vec![PluginMessage::Pong { nonce: 5 }]);
    assert_eq!(report.exit, Exit::Success);
    let errors: Vec<&str> = report
        .logs
        .iter()
        .filter(|r| r.level == Level::Error)
        .map(|r| r.message.as_str())
        .collect();
    let expected = [
        "ignoring a `ping` message before `hello`",
        "ignoring a bad line from the daemon `not json`: line is not JSON",
        "ignoring a bad line from the daemon `{\"type\":\"bogus\",\"nonce\":2}`: unknown message type `bogus`",
        &format!(
            "ignoring a line of {} bytes from the daemon, over the limit of 300 bytes: `{}",
            long.len(),
            &long[..40]
        ),
        "ignoring a bad line from the daemon `{\"type\":\"event\",\"event_id\":\"4\"}`: bad `event` message",
        "ignoring a bad line from the daemon `\u{feff}\u{0}binary`: line is not JSON",
        "ignoring a second `hello`",
    ];
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    for (got, want) in errors.iter().zip(expected.iter()) {
        assert!(
            got.starts_with(want),
            "{got:?} does not start with {want:?}"
        );
    }
}

#[test]
fn a_window_of_one_runs_events_one_after_another_in_order() {
    let active = Arc::new(AtomicUsize::new(0));
    let order = Arc::new(Mutex::new(Vec::new()));
    let (a, o) = (Arc::clone(&active), Arc::clone(&order));
    let plugin = Plugin::new().on(every("e"), move |_, event| {
        assert_eq!(
            a.fetch_add(1, Ordering::SeqCst),
            0,
            "another callback is running"
        );
        o.lock().expect("not poisoned").push(event.id);
        a.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    });
    let mut harness = Harness::new(plugin);
    for id in 1..=6 {
        harness = harness.event(testing::task_status_change(id, "ip", "rev"));
    }
    let report = harness.run();
    assert_eq!(report.answers, (1..=6).map(ack).collect::<Vec<_>>());
    assert_eq!(*order.lock().expect("not poisoned"), [1, 2, 3, 4, 5, 6]);
}

#[test]
fn a_larger_window_runs_callbacks_concurrently() {
    // Each callback waits for the other: this only returns if both run at the same time.
    let both = Barrier::new(2);
    let plugin = Plugin::new().max_in_flight(2).on(every("e"), move |_, _| {
        both.wait();
        Ok(())
    });
    let report = Harness::new(plugin)
        .event(testing::task_status_change(1, "ip", "rev"))
        .event(testing::task_status_change(2, "ip", "rev"))
        .run();
    assert_eq!(report.register.as_ref().map(|r| r.max_in_flight), Some(2));
    assert_eq!(
        (report.answer(1), report.answer(2)),
        (Some(&ack(1)), Some(&ack(2)))
    );
}

#[test]
fn a_daemon_that_stops_reading_ends_the_plugin_quietly() {
    let mut live = Harness::new(Plugin::new().on(every("e"), |_, _| Ok(()))).start();
    live.hello();
    live.close_output();
    live.deliver(testing::task_status_change(1, "ip", "rev"));
    let report = live.finish();
    assert_eq!(report.exit, Exit::OutputClosed);
    assert_eq!(report.exit.code(), 0);
    assert!(
        report
            .logs
            .iter()
            .any(|r| r.level == Level::Error && r.message.starts_with("cannot write to stdout")),
        "{:?}",
        report.logs
    );
}

#[test]
fn prints_never_reach_the_protocol_output() {
    // In memory the protocol output is a pipe of its own, so a print cannot reach it; `Live::recv`
    // panics on any line that is not a protocol message. `tests/process.rs` checks the same of a
    // real process, where `run` points stdout at stderr.
    #[allow(
        clippy::print_stdout,
        reason = "the stray print is what this test is about"
    )]
    let plugin = Plugin::new().on(every("e"), |_, event| {
        println!("a stray print about event {}", event.id);
        Ok(())
    });
    let report = Harness::new(plugin)
        .event(testing::task_status_change(1, "ip", "rev"))
        .run();
    assert_eq!(report.answers, vec![ack(1)]);
}

#[test]
fn callbacks_log_through_the_context() {
    let plugin = Plugin::new().on(every("e"), |ctx, event| {
        ctx.log().info(format_args!("event {} seen", event.id));
        ctx.log().debug("two\nlines");
        Ok(())
    });
    let report = Harness::new(plugin)
        .event(testing::task_status_change(1, "ip", "rev"))
        .run();
    let records: Vec<(Level, &str)> = report
        .logs
        .iter()
        .filter(|r| r.level == Level::Info || r.message.contains('\n'))
        .map(|r| (r.level, r.message.as_str()))
        .collect();
    assert_eq!(
        records,
        [(Level::Info, "event 1 seen"), (Level::Debug, "two\nlines")]
    );
}
