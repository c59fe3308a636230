//! Run a plugin in memory, the way the daemon would, and look at its answers.
//!
//! The plugin goes through the very loop [`Plugin::run`] uses, on a thread of its own, with
//! in-memory pipes for stdin and stdout. Nothing is exited: where a real plugin would exit with
//! status 125 after `fatal`, the run ends with [`Exit::Fatal`] and the output is closed.
//!
//! Two ways to drive it:
//!
//! - [`Harness::run`]: the whole session at once. The harness says `hello`, delivers the events
//!   (each to the subscriptions that match it, as the daemon would), closes stdin and returns a
//!   [`Report`] with the `register` message, every answer, the exit and the log records.
//! - [`Harness::start`]: a [`Live`] plugin to talk to message by message, for tests about timing
//!   between messages (a `ping` while a callback works, a `shutdown` with events in flight).
//!
//! ```
//! use sgevents_sdk::testing::{self, Harness, PluginMessage};
//! use sgevents_sdk::{Error, Plugin, Subscription};
//!
//! let plugin = Plugin::new().on(Subscription::new("on_status", ["Shotgun_Task_Change"]), |_, event| {
//!     match event.meta["new_value"].as_str() {
//!         Some("fin") => Err(Error::term("a final task cannot change")),
//!         _ => Ok(()),
//!     }
//! });
//! let report = Harness::new(plugin)
//!     .event(testing::task_status_change(1, "wtg", "ip"))
//!     .event(testing::task_status_change(2, "ip", "fin"))
//!     .event(testing::new_entity(3, "Shot", 1246, "010_0010"))
//!     .run();
//! assert_eq!(report.answer(1), Some(&PluginMessage::Ack { event_id: 1 }));
//! assert!(matches!(report.answer(2), Some(PluginMessage::Term { .. })));
//! assert_eq!(report.undelivered, vec![3], "no subscription matches a new Shot");
//! ```

use std::panic;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde_json::{Map, Value, json};
use sgevents_protocol::log::parse_log_line;
use sgevents_protocol::{
    DEFAULT_MAX_LINE_BYTES, EntityLink, Event, LineReader, ReadLine, SUPPORTED, decode_plugin_line,
    encode, matching_subscriptions,
};

pub use sgevents_protocol::log::LogRecord;
pub use sgevents_protocol::{DaemonMessage, EventDelivery, Hello, PluginMessage, Register};

use crate::context::Credentials;
use crate::log::Logger;
use crate::pipe::{PipeReader, PipeWriter, pipe};
use crate::plugin::Plugin;
use crate::serve::{Exit, Options, serve};

/// The `deadline_ms` of the events a harness delivers, unless told otherwise.
const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

/// A plugin with the `hello` it will get and the events it will be sent.
#[derive(Debug)]
pub struct Harness {
    plugin: Plugin,
    hello: Hello,
    credentials: Option<Credentials>,
    max_line_bytes: usize,
    deliveries: Vec<Delivery>,
}

impl Harness {
    /// A harness for `plugin`, named `test-plugin`, with an empty configuration, no credentials
    /// and every protocol version the SDK speaks offered.
    pub fn new(plugin: Plugin) -> Harness {
        Harness {
            plugin,
            hello: Hello {
                protocols: SUPPORTED.to_vec(),
                plugin: "test-plugin".to_owned(),
                config: Map::new(),
            },
            credentials: None,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            deliveries: Vec::new(),
        }
    }

    /// The plugin's name in `hello`.
    pub fn plugin_name(mut self, name: impl Into<String>) -> Harness {
        self.hello.plugin = name.into();
        self
    }

    /// The plugin's configuration in `hello`.
    ///
    /// # Panics
    ///
    /// When `config` is not a JSON object.
    pub fn config(mut self, config: Value) -> Harness {
        match config {
            Value::Object(map) => self.hello.config = map,
            other => panic!("the plugin configuration must be a JSON object, not `{other}`"),
        }
        self
    }

    /// The protocol versions `hello` offers (by default those the SDK speaks).
    pub fn protocols(mut self, protocols: impl IntoIterator<Item = u32>) -> Harness {
        self.hello.protocols = protocols.into_iter().collect();
        self
    }

    /// The ShotGrid credentials the plugin sees (by default none; the process environment is not
    /// read).
    pub fn credentials(mut self, credentials: Credentials) -> Harness {
        self.credentials = Some(credentials);
        self
    }

    /// The longest input line the plugin accepts (16 MiB as in real life), to test long lines
    /// cheaply.
    pub fn max_line_bytes(mut self, max: usize) -> Harness {
        self.max_line_bytes = max;
        self
    }

    /// An event for [`run`](Harness::run) to deliver: an [`Event`] (first attempt, to the
    /// subscriptions that match it) or a [`Delivery`] saying more.
    pub fn event(mut self, delivery: impl Into<Delivery>) -> Harness {
        self.deliveries.push(delivery.into());
        self
    }

    /// Runs the whole session: `hello`, then (when the plugin registers) every event in order,
    /// then the end of stdin; returns when the plugin's loop has returned.
    ///
    /// Events are written one after another without waiting for answers, so with a window above 1
    /// their answers may come in any order: look them up with [`Report::answer`].
    pub fn run(mut self) -> Report {
        let deliveries = std::mem::take(&mut self.deliveries);
        let mut live = self.start();
        if let Some(PluginMessage::Register(_)) = live.hello() {
            for delivery in deliveries {
                live.deliver(delivery);
            }
        }
        live.finish()
    }

    /// Starts the plugin and returns at once, before `hello`: drive it with the [`Live`] methods.
    /// Events added with [`event`](Harness::event) are not sent; use [`Live::deliver`].
    pub fn start(self) -> Live {
        let (input, plugin_input) = pipe();
        let (plugin_output, output) = pipe();
        let (logger, logs) = Logger::memory();
        let options = Options {
            max_line_bytes: self.max_line_bytes,
            credentials: self.credentials,
            logger,
            exit_on_fatal: false,
        };
        let plugin = self.plugin;
        let thread = thread::Builder::new()
            .name("sgevents-plugin".to_owned())
            .spawn(move || serve(plugin, plugin_input, plugin_output, options))
            .expect("cannot start a thread for the plugin");
        Live {
            input: Some(input),
            output: Some(LineReader::new(output, DEFAULT_MAX_LINE_BYTES)),
            buf: Vec::new(),
            thread,
            hello: self.hello,
            register: None,
            received: Vec::new(),
            logs,
            undelivered: Vec::new(),
        }
    }
}

/// One event to deliver, with the fields of the `event` message the daemon would choose.
#[derive(Debug, Clone)]
pub struct Delivery {
    event: Event,
    attempt: u32,
    subscriptions: Option<Vec<String>>,
    deadline: Duration,
}

impl Delivery {
    /// The first delivery of `event`, to the subscriptions that match it, with a 30 s deadline.
    pub fn new(event: Event) -> Delivery {
        Delivery {
            event,
            attempt: 1,
            subscriptions: None,
            deadline: DEFAULT_DEADLINE,
        }
    }

    /// Delivers it as this attempt (2 for the first redelivery).
    pub fn attempt(mut self, attempt: u32) -> Delivery {
        self.attempt = attempt;
        self
    }

    /// Names these subscriptions in the message, instead of the matching ones; sent as given,
    /// even empty or naming subscriptions the plugin does not have.
    pub fn subscriptions<I, S>(mut self, names: I) -> Delivery
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.subscriptions = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// The `deadline_ms` of the message.
    pub fn deadline(mut self, deadline: Duration) -> Delivery {
        self.deadline = deadline;
        self
    }
}

impl From<Event> for Delivery {
    fn from(event: Event) -> Delivery {
        Delivery::new(event)
    }
}

/// A running plugin, talked to message by message.
///
/// Every method writing to the plugin returns at once; [`recv`](Live::recv) blocks until the
/// plugin writes a line. Dropping a `Live` closes the plugin's stdin, so its loop ends once its
/// callbacks return.
#[derive(Debug)]
pub struct Live {
    input: Option<PipeWriter>,
    output: Option<LineReader<PipeReader>>,
    buf: Vec<u8>,
    thread: JoinHandle<Exit>,
    hello: Hello,
    register: Option<Register>,
    received: Vec<PluginMessage>,
    logs: Arc<Mutex<Vec<String>>>,
    undelivered: Vec<i64>,
}

impl Live {
    /// Sends `hello` and returns the plugin's first answer: `register`, or `fatal`.
    pub fn hello(&mut self) -> Option<PluginMessage> {
        self.send(&DaemonMessage::Hello(self.hello.clone()));
        let first = self.recv();
        if let Some(PluginMessage::Register(register)) = &first {
            self.register = Some(register.clone());
        }
        first
    }

    /// The plugin's `register` message, once [`hello`](Live::hello) got it.
    pub fn register(&self) -> Option<&Register> {
        self.register.as_ref()
    }

    /// Sends an event, as [`Harness::event`] describes. Returns false, sending nothing, when the
    /// delivery names no subscription and none of the registered ones matches the event: the
    /// daemon would not send it either.
    pub fn deliver(&mut self, delivery: impl Into<Delivery>) -> bool {
        let Delivery {
            event,
            attempt,
            subscriptions,
            deadline,
        } = delivery.into();
        let subscriptions = match subscriptions {
            Some(names) => names,
            None => {
                let registered = self
                    .register
                    .as_ref()
                    .map(|r| r.subscriptions.as_slice())
                    .unwrap_or_default();
                let names: Vec<String> = matching_subscriptions(registered, &event)
                    .into_iter()
                    .map(str::to_owned)
                    .collect();
                if names.is_empty() {
                    self.undelivered.push(event.id);
                    return false;
                }
                names
            }
        };
        let deadline_ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
        self.send(&DaemonMessage::Event(EventDelivery {
            event_id: event.id,
            attempt,
            subscriptions,
            deadline_ms,
            event,
        }));
        true
    }

    /// Sends any daemon message.
    pub fn send(&mut self, message: &DaemonMessage) {
        self.write(encode(message).as_bytes());
    }

    /// Sends `line` followed by a newline, as it is: for bad input.
    pub fn send_line(&mut self, line: impl AsRef<[u8]>) {
        let mut bytes = line.as_ref().to_vec();
        bytes.push(b'\n');
        self.write(&bytes);
    }

    fn write(&mut self, bytes: &[u8]) {
        use std::io::Write;

        let input = self
            .input
            .as_mut()
            .expect("stdin was closed with close_input");
        // A plugin whose loop has returned reads nothing more; like the daemon, ignore it.
        drop(input.write_all(bytes));
    }

    /// The plugin's next message, waiting for it; `None` once the plugin has closed its output
    /// (its loop returned, or it answered `fatal`).
    ///
    /// # Panics
    ///
    /// When the plugin writes a line that is not a protocol message.
    pub fn recv(&mut self) -> Option<PluginMessage> {
        let reader = self.output.as_mut()?;
        match reader.read(&mut self.buf) {
            Ok(ReadLine::Line) => {}
            Ok(ReadLine::Eof) => return None,
            Ok(ReadLine::TooLong { len }) => panic!("the plugin wrote a line of {len} bytes"),
            Err(error) => panic!("cannot read the plugin's output: {error}"),
        }
        let message = decode_plugin_line(&self.buf).unwrap_or_else(|error| {
            panic!(
                "the plugin wrote `{}`: {error}",
                String::from_utf8_lossy(&self.buf)
            )
        });
        self.received.push(message.clone());
        Some(message)
    }

    /// Closes the plugin's stdin, as the daemon does last.
    pub fn close_input(&mut self) {
        self.input = None;
    }

    /// Stops reading the plugin's stdout, as a daemon that went away: its next write fails with a
    /// broken pipe.
    pub fn close_output(&mut self) {
        self.output = None;
    }

    /// The log records the plugin wrote so far.
    pub fn logs(&self) -> Vec<LogRecord> {
        self.logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|l| parse_log_line(l))
            .collect()
    }

    /// Closes stdin, reads what is left of the output and waits for the loop to return.
    pub fn finish(mut self) -> Report {
        self.close_input();
        while self.recv().is_some() {}
        let exit = self
            .thread
            .join()
            .unwrap_or_else(|payload| panic::resume_unwind(payload));
        let logs = self
            .logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|l| parse_log_line(l))
            .collect();
        Report {
            register: self.register,
            answers: self
                .received
                .into_iter()
                .filter(|m| !matches!(m, PluginMessage::Register(_)))
                .collect(),
            exit,
            logs,
            undelivered: self.undelivered,
        }
    }
}

/// What a plugin did in a session.
#[derive(Debug, Clone)]
pub struct Report {
    /// The `register` answer to `hello`; `None` when the plugin answered `fatal` instead.
    pub register: Option<Register>,
    /// Every other message the plugin wrote, in order: answers, `progress`, `pong`, `fatal`.
    pub answers: Vec<PluginMessage>,
    /// How the plugin's loop ended.
    pub exit: Exit,
    /// The plugin's log records (the SDK's and the callbacks').
    pub logs: Vec<LogRecord>,
    /// The ids of the events that were not sent because no subscription matches them.
    pub undelivered: Vec<i64>,
}

impl Report {
    /// The answer (`ack`, `nack` or `term`) to the event `event_id`, the last one if it was
    /// delivered more than once.
    pub fn answer(&self, event_id: i64) -> Option<&PluginMessage> {
        self.answers.iter().rev().find(|m| {
            matches!(
                m,
                PluginMessage::Ack { .. } | PluginMessage::Nack { .. } | PluginMessage::Term { .. }
            ) && m.event_id() == Some(event_id)
        })
    }

    /// The `error` of the plugin's `fatal` answer, if it gave one.
    pub fn fatal(&self) -> Option<&str> {
        self.answers.iter().find_map(|m| match m {
            PluginMessage::Fatal { error } => Some(error.as_str()),
            _ => None,
        })
    }
}

/// A realistic `Shotgun_Task_Change` event: Ana Reyes changes the status of Task 67378 "Anim" in
/// project 66 from `old` to `new`.
pub fn task_status_change(id: i64, old: &str, new: &str) -> Event {
    let mut event = Event::new(id, "Shotgun_Task_Change");
    event.attribute_name = Some("sg_status_list".to_owned());
    event.meta = json!({
        "type": "attribute_change",
        "attribute_name": "sg_status_list",
        "entity_type": "Task",
        "entity_id": 67378,
        "field_data_type": "status_list",
        "old_value": old,
        "new_value": new,
    });
    event.entity = Some(EntityLink::new("Task", 67378, "Anim"));
    event.user = Some(EntityLink::new("HumanUser", 42, "Ana Reyes"));
    event.project = Some(EntityLink::new("Project", 66, "Testing Sandbox"));
    event.created_at = Some("2026-11-02T10:15:00Z".to_owned());
    event.description = Some(format!(
        "Ana Reyes changed \"Status\" from \"{old}\" to \"{new}\" on Task Anim"
    ));
    event
}

/// A realistic `Shotgun_<entity_type>_New` event: the API user `ingest_bot` creates an entity in
/// project 66.
pub fn new_entity(id: i64, entity_type: &str, entity_id: i64, name: &str) -> Event {
    let mut event = Event::new(id, format!("Shotgun_{entity_type}_New"));
    event.meta = json!({"type": "new_entity", "entity_type": entity_type, "entity_id": entity_id});
    event.entity = Some(EntityLink::new(entity_type, entity_id, name));
    event.user = Some(EntityLink::new("ApiUser", 5, "ingest_bot"));
    event.project = Some(EntityLink::new("Project", 66, "Testing Sandbox"));
    event.created_at = Some("2026-11-02T10:16:00Z".to_owned());
    event.description = Some(format!("ingest_bot created new {entity_type} {name}"));
    event
}
