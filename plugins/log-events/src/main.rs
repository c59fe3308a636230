//! Example plugin: logs one line per event it receives, the classic smoke test of a deployment.
//!
//! `event 2011531 Shotgun_Task_Change Task 67378 "Anim" sg_status_list by Ana Reyes`

use std::process::ExitCode;

use sgevents_sdk::{Event, Plugin, Subscription};

fn main() -> ExitCode {
    Plugin::new()
        .on(Subscription::new("every_event", ["*"]), |ctx, event| {
            ctx.log().info(describe(event));
            Ok(())
        })
        .run()
}

/// Id, type, entity, attribute and user of an event, on one line.
fn describe(event: &Event) -> String {
    let mut parts = vec![format!("event {}", event.id)];
    if !event.event_type.is_empty() {
        parts.push(event.event_type.clone());
    }
    if let Some(entity) = &event.entity {
        parts.push(format!("{} {}", entity.entity_type, entity.id));
        parts.extend(entity.name.as_ref().map(|name| format!("{name:?}")));
    } else if let Some(entity_type) = event.entity_type() {
        // A retired entity: its link is gone, `meta` still says what it was.
        parts.push(format!("{entity_type} {}", event.meta["entity_id"]));
    }
    parts.extend(event.attribute_name.clone());
    if let Some(user) = &event.user {
        parts.push(match &user.name {
            Some(name) => format!("by {name}"),
            None => format!("by {} {}", user.entity_type, user.id),
        });
    }
    parts.join(" ")
}
