//! The sgevents plugin protocol, version 1: the one place that knows the wire format.
//!
//! A plugin is any executable that reads JSON lines on stdin and writes JSON lines on stdout. This
//! crate holds everything both sides need to agree on, and nothing else:
//!
//! - [`message`]: the messages, [`DaemonMessage`] (daemon to plugin) and [`PluginMessage`] (plugin
//!   to daemon), with the version constants;
//! - [`event`]: the flat `EventLogEntry` shape ([`Event`]) that plugins receive;
//! - [`subscription`]: what a plugin asks for ([`Subscription`]), the pure matching function the
//!   daemon filters with, and validation of a `register` answer;
//! - [`codec`]: decoding and encoding of single lines, and a bounded line reader;
//! - [`log`]: the format of a plugin's stderr log records;
//! - [`transcript`]: conformance transcripts, and a driver that runs a plugin process against one.
//!
//! The written specification is `protocol/PROTOCOL.md`; a test parses every example in it with
//! these types, so the two cannot drift apart.
//!
//! **API boundary:** this crate depends on `serde` and `serde_json` only. The daemon and the SDKs
//! build on it; it builds on neither.

pub mod codec;
pub mod event;
pub mod log;
pub mod message;
pub mod subscription;
pub mod transcript;

pub use codec::{
    DecodeError, LineReader, ReadLine, decode_daemon_line, decode_plugin_line, encode,
    encode_event_raw, excerpt,
};
pub use event::{EntityLink, Event};
pub use message::{
    AlertRecipients, CURRENT, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_LINE_BYTES, DaemonMessage,
    EventDelivery, Hello, MAX_IN_FLIGHT_LIMIT, PROTOCOL_V1, PluginMessage, Register, RegisterError,
    SUPPORTED, choose_version,
};
pub use subscription::{MatchFields, Subscription, glob_match, matching_subscriptions};
