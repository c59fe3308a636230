//! The control socket's request parser: one line of JSON read into a [`Request`] (as
//! `control/server.rs` does, `serde_json::from_str` on the line the socket read as text).
//!
//! Requests of every command are generated, then one field is changed (wrong type, unknown,
//! dropped, duplicated) and the line damaged. What parses must write back as the same request.

use proptest::prelude::*;

use super::{Fields, Json, check, damaged, field, num, odd_string};
use crate::control::Request;

const REQUEST_FIELDS: &[&str] = &["command", "plugin", "to", "dry_run", "event", "latest"];

fuzz_tests! {
    fuzz_control_request, fuzz_control_request_long => control_requests;
}

fn plugin_name() -> BoxedStrategy<Json> {
    prop_oneof![
        3 => "[a-z_-]{1,12}".prop_map(Json::Str),
        1 => odd_string(),
    ]
    .boxed()
}

/// A valid request, as its fields.
fn request() -> BoxedStrategy<Fields> {
    let command = |name: &str, rest: Fields| {
        let mut f = vec![field("command", Json::Str(name.to_owned()))];
        f.extend(rest);
        f
    };
    prop_oneof![
        prop::sample::select(vec!["plugin_list", "reload"]).prop_map(move |c| command(c, vec![])),
        (
            prop::sample::select(vec![
                "plugin_restart",
                "plugin_stop",
                "plugin_start",
                "plugin_enable",
                "plugin_disable",
            ]),
            plugin_name()
        )
            .prop_map(move |(c, p)| command(c, vec![field("plugin", p)])),
        (
            plugin_name(),
            prop_oneof![
                any::<i64>().prop_map(|id| Json::Obj(vec![field("event", num(id))])),
                Just(Json::Str("latest".into())),
            ],
            prop::option::of(any::<bool>())
        )
            .prop_map(move |(p, to, dry)| {
                let mut f = vec![field("plugin", p), field("to", to)];
                if let Some(d) = dry {
                    f.push(field("dry_run", Json::Bool(d)));
                }
                command("plugin_rewind", f)
            }),
        prop::option::of(prop_oneof![plugin_name(), Just(Json::Null)]).prop_map(move |p| {
            command(
                "failed_list",
                p.map(|p| vec![field("plugin", p)]).unwrap_or_default(),
            )
        }),
        (
            prop::sample::select(vec!["failed_retry", "failed_drop"]),
            plugin_name(),
            prop::option::of(prop_oneof![any::<i64>().prop_map(num), Just(Json::Null)])
        )
            .prop_map(move |(c, p, e)| {
                let mut f = vec![field("plugin", p)];
                if let Some(e) = e {
                    f.push(field("event", e));
                }
                command(c, f)
            }),
    ]
    .boxed()
}

fn control_requests(cases: u32) {
    check(cases, damaged(request(), REQUEST_FIELDS), |line| {
        // The socket reads lines as text; a line that is not UTF-8 ends the connection before
        // any parsing, so only text reaches the parser.
        let Ok(line) = std::str::from_utf8(&line) else {
            return Ok(());
        };
        match serde_json::from_str::<Request>(line) {
            Ok(request) => {
                let text = serde_json::to_string(&request).expect("requests serialize");
                let back: Request = serde_json::from_str(&text).expect("a request reads back");
                prop_assert_eq!(back, request);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        Ok(())
    });
}
