//! Smoke test: the real `log-events` binary registers for every event, acknowledges each one and
//! logs it on stderr.

use std::io::Write;
use std::process::{Command, Stdio};

use sgevents_sdk::protocol::{
    DaemonMessage, EventDelivery, Hello, PluginMessage, decode_plugin_line, encode,
};
use sgevents_sdk::{Event, Map, Subscription, testing};

#[test]
fn registers_acknowledges_and_logs_every_event() {
    let events = [
        testing::task_status_change(2011531, "wtg", "ip"),
        testing::new_entity(2011532, "Shot", 1246, "010_0010"),
        Event::new(2011533, "Shotgun_User_Login"),
    ];
    let mut input = encode(&DaemonMessage::Hello(Hello {
        protocols: vec![1],
        plugin: "log-events".into(),
        config: Map::new(),
    }));
    for event in &events {
        input += &encode(&DaemonMessage::Event(EventDelivery {
            event_id: event.id,
            attempt: 1,
            subscriptions: vec!["every_event".into()],
            deadline_ms: 30_000,
            event: event.clone(),
        }));
    }

    let mut child = Command::new(env!("CARGO_BIN_EXE_log-events"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("SGEVENTS_SITE_URL")
        .spawn()
        .expect("log-events starts");
    let mut stdin = child.stdin.take().expect("piped");
    stdin
        .write_all(input.as_bytes())
        .expect("the plugin reads its stdin");
    drop(stdin);
    let output = child.wait_with_output().expect("log-events runs");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    let stderr = String::from_utf8(output.stderr).expect("UTF-8");
    assert_eq!(output.status.code(), Some(0), "stderr:\n{stderr}");

    let messages: Vec<PluginMessage> = stdout
        .lines()
        .map(|line| decode_plugin_line(line.as_bytes()).expect("only protocol on stdout"))
        .collect();
    let PluginMessage::Register(register) = &messages[0] else {
        panic!("expected register first, got {messages:?}");
    };
    assert_eq!(
        register.subscriptions,
        vec![Subscription::new("every_event", ["*"]).into_wire()]
    );
    assert_eq!(register.max_in_flight, 1);
    let acks: Vec<PluginMessage> = events
        .iter()
        .map(|e| PluginMessage::Ack { event_id: e.id })
        .collect();
    assert_eq!(messages[1..], acks[..]);

    for line in [
        r#"I! event 2011531 Shotgun_Task_Change Task 67378 "Anim" sg_status_list by Ana Reyes"#,
        r#"I! event 2011532 Shotgun_Shot_New Shot 1246 "010_0010" by ingest_bot"#,
        "I! event 2011533 Shotgun_User_Login",
    ] {
        assert!(
            stderr.lines().any(|l| l == line),
            "`{line}` is not on stderr:\n{stderr}"
        );
    }
}
