//! Realistic `EventLogEntry` rows, deterministic from a seed.
//!
//! The generator plays a small studio at work: artists move Tasks through their statuses, a publish
//! bot creates Versions and their thumbnails, supervisors write Notes, coordinators create Shots and
//! now and then retire something. Each such action is a *story* of one or more rows (a create writes
//! a `_New` row and then one `_Change` row per field, `shared/reference/shotgrid-wire.md` 3.2), and stories are queued so
//! that any number of rows can be drawn one at a time. Rows are flat, in the shape `shotgun_api3`
//! returns, without an `id`: the site assigns ids when it allocates them.
//!
//! Everything but `created_at` depends only on the seed. `created_at` follows the wall clock (never
//! going backwards), because a daemon compares it with its own clock to decide whether a gap is old.

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// Task statuses in the order work moves through them.
const TASK_FLOW: [&str; 5] = ["wtg", "rdy", "ip", "rev", "fin"];

/// Step names of the Tasks on every Shot.
const STEPS: [&str; 4] = ["Layout", "Anim", "Light", "Comp"];

/// Remarks the Note and Version stories draw from.
const REMARKS: [&str; 6] = [
    "wip, please ignore the hands",
    "timing feels late on the turn",
    "matches the plate now",
    "needs another pass on the rim light",
    "approved for comp",
    "flicker in frames 1040-1052",
];

/// A linked record the generator keeps track of.
#[derive(Clone, Debug)]
struct Record {
    kind: &'static str,
    id: i64,
    name: String,
    project: usize,
    /// The Task status, for Tasks.
    status: usize,
}

impl Record {
    fn link(&self) -> Value {
        json!({"type": self.kind, "id": self.id, "name": self.name})
    }
}

/// Who writes events: `(type, id, name, session uuid)`.
const USERS: [(&str, i64, &str, Option<&str>); 4] = [
    (
        "HumanUser",
        88,
        "Ana Reyes",
        Some("dd6a1d6a-83a0-11ec-8826-0242ac110006"),
    ),
    (
        "HumanUser",
        91,
        "Tom Okafor",
        Some("4b1e7c52-83a1-11ec-9d3e-0242ac110006"),
    ),
    (
        "HumanUser",
        97,
        "Mei Lin",
        Some("9f03a2d8-83a1-11ec-b1f4-0242ac110006"),
    ),
    ("ApiUser", 6, "publish_bot", None),
];

/// The projects events belong to: `(id, name)`.
const PROJECTS: [(i64, &str); 2] = [(70, "Harbour Lights"), (71, "Night Ferry")];

/// Draws realistic events one at a time.
#[derive(Debug)]
pub(crate) struct Generator {
    rng: fastrand::Rng,
    queue: VecDeque<Value>,
    shots: Vec<Record>,
    tasks: Vec<Record>,
    versions: Vec<Record>,
    notes: Vec<Record>,
    next_entity_id: i64,
    last_second: u64,
}

impl Generator {
    /// A studio with a few Shots, each with its Tasks waiting to start.
    pub(crate) fn new(seed: u64) -> Generator {
        let mut generator = Generator {
            rng: fastrand::Rng::with_seed(seed),
            queue: VecDeque::new(),
            shots: Vec::new(),
            tasks: Vec::new(),
            versions: Vec::new(),
            notes: Vec::new(),
            next_entity_id: 1000,
            last_second: 0,
        };
        for n in 0..6 {
            let project = n % PROJECTS.len();
            let shot = generator.record(
                "Shot",
                format!("{:03}_{:04}", 10 * (n / 2 + 1), 10),
                project,
            );
            for step in STEPS {
                let task = generator.record("Task", step.to_owned(), project);
                generator.tasks.push(task);
            }
            generator.shots.push(shot);
        }
        generator
    }

    /// The next event, without an `id`.
    pub(crate) fn next_event(&mut self) -> Value {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return event;
            }
            self.story();
        }
    }

    fn record(&mut self, kind: &'static str, name: String, project: usize) -> Record {
        self.next_entity_id += 1;
        Record {
            kind,
            id: self.next_entity_id,
            name,
            project,
            status: 0,
        }
    }

    /// Queues the rows of one action.
    fn story(&mut self) {
        let roll = self.rng.u32(0..100);
        let human = self.rng.usize(0..3);
        match roll {
            // Weighted so that about half the rows are Task status changes: creations write several.
            0..=79 => self.task_status(human),
            80..=85 => self.new_version(),
            86..=89 => self.new_note(human),
            90..=94 => match self.pick_version() {
                Some(version) => self.thumbnail(&version),
                None => self.new_version(),
            },
            95..=97 => self.new_shot(human),
            _ => self.retire(human),
        }
    }

    fn task_status(&mut self, user: usize) {
        let index = self.rng.usize(0..self.tasks.len());
        let old = self.tasks[index].status;
        // Mostly forward; a review sends work back to in progress now and then; finished work reopens.
        let new = match TASK_FLOW[old] {
            "fin" => 2,
            "rev" if self.rng.bool() => 2,
            _ => old + 1,
        };
        self.tasks[index].status = new;
        let task = self.tasks[index].clone();
        let meta = change_meta(
            &task,
            "sg_status_list",
            "status_list",
            json!(TASK_FLOW[old]),
            json!(TASK_FLOW[new]),
            false,
        );
        let description = format!(
            "{} changed \"Status\" from \"{}\" to \"{}\" on Task {}",
            USERS[user].2, TASK_FLOW[old], TASK_FLOW[new], task.name
        );
        self.push_change(&task, user, "sg_status_list", meta, description);
    }

    fn new_version(&mut self) {
        let bot = USERS.len() - 1;
        let shot = self.shots[self.rng.usize(0..self.shots.len())].clone();
        let take = self.versions.len() + 1;
        let step = STEPS[self.rng.usize(0..STEPS.len())];
        let version = self.record(
            "Version",
            format!("{}_{step}_v{take:03}", shot.name),
            shot.project,
        );
        self.push_new(&version, bot);
        let remark = REMARKS[self.rng.usize(0..REMARKS.len())];
        let fields: [(&str, &str, &str, Value); 4] = [
            ("code", "Version Name", "text", json!(version.name)),
            ("description", "Description", "text", json!(remark)),
            ("sg_status_list", "Status", "status_list", json!("rev")),
            ("entity", "Link", "entity", shot.link()),
        ];
        for (field, label, data_type, value) in fields {
            self.push_set(&version, bot, field, label, data_type, value);
        }
        self.versions.push(version);
    }

    fn new_note(&mut self, user: usize) {
        let project = self.rng.usize(0..PROJECTS.len());
        let remark = REMARKS[self.rng.usize(0..REMARKS.len())];
        let note = self.record("Note", format!("Note {}", self.notes.len() + 1), project);
        self.push_new(&note, user);
        self.push_set(&note, user, "subject", "Subject", "text", json!(note.name));
        self.push_set(&note, user, "content", "Body", "text", json!(remark));
        self.notes.push(note);
    }

    fn new_shot(&mut self, user: usize) {
        let project = self.rng.usize(0..PROJECTS.len());
        let sequence = 10 * self.rng.u32(1..10);
        let shot = self.record(
            "Shot",
            format!("{sequence:03}_{:04}", 10 * self.shots.len()),
            project,
        );
        self.push_new(&shot, user);
        self.push_set(&shot, user, "code", "Shot Code", "text", json!(shot.name));
        self.push_set(
            &shot,
            user,
            "sg_status_list",
            "Status",
            "status_list",
            json!("wtg"),
        );
        self.shots.push(shot);
    }

    /// Two rows: the thumbnail is transient until the server has rendered it (shotgrid-wire.md 3.3.8).
    fn thumbnail(&mut self, version: &Record) {
        let bot = USERS.len() - 1;
        for transient in [true, false] {
            let mut meta = change_meta(version, "image", "image", Value::Null, Value::Null, false);
            meta["is_transient"] = json!(transient);
            let description = format!(
                "{} changed \"Thumbnail\" on Version {}",
                USERS[bot].2, version.name
            );
            self.push_change(version, bot, "image", meta, description);
        }
    }

    /// Retires a Version or a Note: a `retirement_date` change, then the `_Retirement` row, both with
    /// a null `entity` because the link no longer resolves (shotgrid-wire.md 3.3.6).
    fn retire(&mut self, user: usize) {
        let pool = if self.rng.bool() {
            &mut self.versions
        } else {
            &mut self.notes
        };
        if pool.is_empty() {
            return self.new_note(user);
        }
        let record = pool.remove(self.rng.usize(0..pool.len()));
        let date = self.timestamp().replace('T', " ").replace('Z', " UTC");
        let meta = change_meta(
            &record,
            "retirement_date",
            "date_time",
            Value::Null,
            json!(date),
            false,
        );
        let description = format!("{} retired {} {}", USERS[user].2, record.kind, record.name);
        let mut change = self.row(
            &record,
            user,
            "Change",
            Some("retirement_date"),
            meta,
            description.clone(),
        );
        change["entity"] = Value::Null;
        self.queue.push_back(change);
        let meta = json!({
            "type": "entity_retirement", "entity_type": record.kind, "entity_id": record.id,
            "class_name": record.kind, "id": record.id, "display_name": record.name,
            "retirement_date": date,
        });
        let mut retirement = self.row(&record, user, "Retirement", None, meta, description);
        retirement["entity"] = Value::Null;
        self.queue.push_back(retirement);
    }

    fn pick_version(&mut self) -> Option<Record> {
        if self.versions.is_empty() {
            return None;
        }
        Some(self.versions[self.rng.usize(0..self.versions.len())].clone())
    }

    fn push_new(&mut self, record: &Record, user: usize) {
        let meta =
            json!({"type": "new_entity", "entity_type": record.kind, "entity_id": record.id});
        let description = format!(
            "{} created new {} {}",
            USERS[user].2, record.kind, record.name
        );
        let row = self.row(record, user, "New", None, meta, description);
        self.queue.push_back(row);
    }

    /// A `_Change` row written while creating `record`.
    fn push_set(
        &mut self,
        record: &Record,
        user: usize,
        field: &str,
        label: &str,
        data_type: &str,
        value: Value,
    ) {
        let shown = match &value {
            Value::String(s) => s.clone(),
            Value::Object(link) => link
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            other => other.to_string(),
        };
        let description = format!(
            "{} set \"{label}\" to \"{shown}\" on {} {}",
            USERS[user].2, record.kind, record.name
        );
        let meta = change_meta(record, field, data_type, Value::Null, value, true);
        self.push_change(record, user, field, meta, description);
    }

    fn push_change(
        &mut self,
        record: &Record,
        user: usize,
        field: &str,
        meta: Value,
        description: String,
    ) {
        let row = self.row(record, user, "Change", Some(field), meta, description);
        self.queue.push_back(row);
    }

    fn row(
        &mut self,
        record: &Record,
        user: usize,
        action: &str,
        attribute_name: Option<&str>,
        meta: Value,
        description: String,
    ) -> Value {
        let (user_type, user_id, user_name, session) = USERS[user];
        let (project_id, project_name) = PROJECTS[record.project];
        json!({
            "type": "EventLogEntry",
            "event_type": format!("Shotgun_{}_{action}", record.kind),
            "attribute_name": attribute_name,
            "meta": meta,
            "entity": record.link(),
            "user": {"type": user_type, "id": user_id, "name": user_name},
            "project": {"type": "Project", "id": project_id, "name": project_name},
            "session_uuid": session,
            "created_at": self.timestamp(),
            "description": description,
        })
    }

    /// Now, as ShotGrid writes it, never earlier than the last one.
    fn timestamp(&mut self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.last_second = self.last_second.max(now);
        iso8601(self.last_second)
    }
}

/// The `meta` of an `attribute_change` row (shotgrid-wire.md 3.3.2).
fn change_meta(
    record: &Record,
    field: &str,
    data_type: &str,
    old: Value,
    new: Value,
    in_create: bool,
) -> Value {
    let mut meta = json!({
        "type": "attribute_change", "attribute_name": field, "entity_type": record.kind,
        "entity_id": record.id, "field_data_type": data_type, "old_value": old, "new_value": new,
        "platform_id": null,
    });
    if in_create {
        meta["in_create"] = json!(true);
    }
    meta
}

/// Seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn iso8601(secs: u64) -> String {
    // Howard Hinnant's civil_from_days, on days since 1970-01-01.
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn without_times(mut events: Vec<Value>) -> Vec<Value> {
        for event in &mut events {
            event["created_at"] = Value::Null;
            if let Some(meta) = event["meta"].as_object_mut() {
                meta.remove("new_value");
                meta.remove("retirement_date");
            }
        }
        events
    }

    fn draw(seed: u64, n: usize) -> Vec<Value> {
        let mut generator = Generator::new(seed);
        (0..n).map(|_| generator.next_event()).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_events() {
        assert_eq!(without_times(draw(7, 300)), without_times(draw(7, 300)));
        assert_ne!(without_times(draw(7, 300)), without_times(draw(8, 300)));
    }

    #[test]
    fn task_status_changes_chain_old_to_new() {
        let mut last: std::collections::HashMap<i64, String> = std::collections::HashMap::new();
        let mut seen = 0;
        for event in draw(3, 2000) {
            if event["event_type"] != "Shotgun_Task_Change" {
                continue;
            }
            let meta = &event["meta"];
            let id = meta["entity_id"].as_i64().expect("entity id");
            let old = meta["old_value"].as_str().expect("old value").to_owned();
            let expected = last.get(&id).cloned().unwrap_or_else(|| "wtg".to_owned());
            assert_eq!(old, expected, "task {id}");
            last.insert(
                id,
                meta["new_value"].as_str().expect("new value").to_owned(),
            );
            seen += 1;
        }
        assert!(seen > 500, "only {seen} task changes");
    }

    #[test]
    fn every_kind_of_story_appears() {
        let events = draw(1, 2000);
        let has = |pred: &dyn Fn(&Value) -> bool| events.iter().any(pred);
        for kind in ["Shot", "Version", "Note"] {
            let event_type = format!("Shotgun_{kind}_New");
            assert!(
                has(&|e| e["event_type"] == *event_type && e["meta"]["type"] == "new_entity"),
                "{kind}"
            );
        }
        assert!(has(&|e| e["meta"]["is_transient"] == true));
        assert!(has(&|e| e["meta"]["is_transient"] == false));
        assert!(has(&|e| e["event_type"]
            .as_str()
            .is_some_and(|t| t.ends_with("_Retirement"))
            && e["entity"].is_null()));
        assert!(
            events
                .windows(2)
                .all(|w| w[0]["created_at"].as_str() <= w[1]["created_at"].as_str())
        );
    }

    #[test]
    fn timestamps_are_iso_8601_in_utc() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_436_470_417), "2015-07-09T19:33:37Z");
        assert_eq!(iso8601(1_709_164_800), "2024-02-29T00:00:00Z");
    }
}
