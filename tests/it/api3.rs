//! The fake site's api3 JSON-RPC (`/api3/json`) driven by the real `shotgun_api3`, installed from the
//! package index into `target/pydeps/` on first use, in a `python3` subprocess over 127.0.0.1:
//! `info`, `find` and `find_one` with filters, fields and paging, `update` and `create` with the
//! event log rows they add, the faults the client raises, and `sgevents-fake-site --entities`.

use std::process::Command;

use serde_json::{Value, json};
use sgevents_tests::fake_site::{
    FakeSite, SHOTGUN_API3_VERSION, SiteOptions, python_with_shotgun_api3,
};

use crate::{SiteProgram, site};

/// What every script starts with: `sg` connected as `SG_SCRIPT`, and `out()` to print the answer.
const PRELUDE: &str = r#"
import datetime, json, os, sys
import shotgun_api3

def out(value):
    print(json.dumps(value, default=str, sort_keys=True))

def connect(**kwargs):
    sg = shotgun_api3.Shotgun(os.environ["SG_URL"], script_name=os.environ["SG_SCRIPT"],
                              api_key=os.environ["SG_KEY"], connect=False, **kwargs)
    # A guard against a site that stops answering, not a measurement.
    sg.config.timeout_secs = 60
    return sg

def caught(call):
    try:
        return {"returned": call()}
    except shotgun_api3.ShotgunError as e:
        return {"raised": type(e).__name__, "message": str(e)}
"#;

/// Runs `code` after the prelude against `url`, signed in as `script` with `key`, and returns what
/// its last `out()` printed.
fn python_as(url: &str, script: &str, key: &str, code: &str) -> Value {
    let out = Command::new("python3")
        .arg("-c")
        .arg(format!("{PRELUDE}\n{code}"))
        .env("PYTHONPATH", python_with_shotgun_api3())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("SG_URL", url)
        .env("SG_SCRIPT", script)
        .env("SG_KEY", key)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the script failed ({}):\n{code}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let last = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("the script printed nothing:\n{code}\nstderr:\n{stderr}"));
    serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {last}"))
}

/// [`python_as`] with the site's own Script.
fn python(site: &FakeSite, code: &str) -> Value {
    let defaults = SiteOptions::default();
    python_as(
        &site.url(),
        &defaults.script_name,
        &defaults.script_key,
        code,
    )
}

/// Two projects, two Shots, a user and five Tasks.
fn studio(site: &FakeSite) {
    let project = |id: i64| json!({"type": "Project", "id": id});
    let shot = |id: i64| json!({"type": "Shot", "id": id});
    let ana = json!({"type": "HumanUser", "id": 88});
    site.insert_entity("Project", json!({"id": 70, "name": "Harbour Lights"}));
    site.insert_entity("Project", json!({"id": 71, "name": "Night Ferry"}));
    site.insert_entity(
        "Shot",
        json!({"id": 12, "code": "010_0010", "project": project(70)}),
    );
    site.insert_entity(
        "Shot",
        json!({"id": 13, "code": "010_0020", "project": project(70)}),
    );
    site.insert_entity(
        "HumanUser",
        json!({"id": 88, "name": "Ana Reyes", "login": "ana"}),
    );
    let tasks = [
        (
            "Layout",
            "fin",
            Some(12),
            120,
            vec![ana.clone()],
            Some("2026-03-02"),
            70,
        ),
        ("Anim", "ip", Some(12), 480, vec![ana.clone()], None, 70),
        ("Light", "wtg", Some(12), 240, vec![], None, 70),
        ("Anim", "rdy", Some(13), 600, vec![], Some("2026-02-20"), 70),
        ("Anim", "ip", None, 300, vec![], None, 71),
    ];
    for (content, status, on, minutes, assignees, due, in_project) in tasks {
        site.insert_entity(
            "Task",
            json!({
                "content": content, "sg_status_list": status, "entity": on.map(shot),
                "est_in_mins": minutes, "task_assignees": assignees, "due_date": due,
                "project": project(in_project),
            }),
        );
    }
}

/// The ids in a list of records, or a list of ids.
fn ids(records: &Value) -> Vec<i64> {
    records
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {records}"))
        .iter()
        .map(|r| {
            r.as_i64()
                .or_else(|| r["id"].as_i64())
                .unwrap_or_else(|| panic!("no id: {r}"))
        })
        .collect()
}

/// The event log rows after `after`.
fn events_after(site: &FakeSite, after: i64) -> Vec<Value> {
    site.entities("EventLogEntry")
        .into_iter()
        .filter(|row| row["id"].as_i64().is_some_and(|id| id > after))
        .collect()
}

#[test]
fn info_tells_the_client_a_version_it_accepts() {
    let site = site();
    let got = python(
        &site,
        r#"
sg = shotgun_api3.Shotgun(os.environ["SG_URL"], script_name=os.environ["SG_SCRIPT"], api_key=os.environ["SG_KEY"])
out({"library": shotgun_api3.__version__, "info": sg.info(), "version": list(sg.server_caps.version),
     "per_page": sg.config.records_per_page,
     "without_counts": sg.server_caps.ensure_paging_info_without_counts_support()})
"#,
    );
    assert_eq!(got["library"], SHOTGUN_API3_VERSION);
    assert_eq!(got["version"], json!([8, 0, 0]));
    assert_eq!(got["info"]["version"], json!([8, 0, 0]));
    assert_eq!(got["info"]["user_authentication_method"], "default");
    assert_eq!(got["per_page"], 500);
    assert_eq!(got["without_counts"], true);
}

#[test]
fn find_filters_and_returns_fields() {
    let site = site();
    studio(&site);
    let got = python(
        &site,
        r#"
sg = connect()
found = lambda *args, **kwargs: [r["id"] for r in sg.find(*args, **kwargs)]
project = {"type": "Project", "id": 70, "name": "whatever the client had"}
out({
    "is": found("Task", [["sg_status_list", "is", "ip"]]),
    "is_not": found("Task", [["sg_status_list", "is_not", "ip"]]),
    "in": found("Task", [["sg_status_list", "in", ["ip", "rdy"]], ["id", "not_in", [5]]]),
    "in_spread": found("Task", [["id", "in", 1, 3]]),
    "contains": found("Task", [["content", "contains", "NIM"]]),
    "range": found("Task", [["est_in_mins", "greater_than", 200], ["est_in_mins", "less_than", 600]]),
    "date": found("Task", [["due_date", "greater_than", datetime.date(2026, 3, 1)]]),
    "any": found("Task", [["id", "is", 1], ["id", "is", 3]], filter_operator="any"),
    "nested": found("Task", [
        ["entity", "is", {"type": "Shot", "id": 12}],
        {"filter_operator": "any", "filters": [
            ["sg_status_list", "is", "fin"],
            ["task_assignees", "is", {"type": "HumanUser", "id": 88}],
        ]},
    ]),
    "no_entity": found("Task", [["entity", "is", None]]),
    "dotted": found("Task", [["entity.Shot.code", "is", "010_0020"]]),
    "limit": found("Task", [], limit=2, order=[{"field_name": "id", "direction": "desc"}]),
    "records": sg.find(
        "Task",
        [["project", "is", project], ["sg_status_list", "is_not", "fin"]],
        ["content", "sg_status_list", "entity", "entity.Shot.code", "task_assignees", "no_such_field"],
        order=[{"field_name": "est_in_mins", "direction": "desc"}],
    ),
})
"#,
    );
    assert_eq!(ids(&got["is"]), [2, 5]);
    assert_eq!(ids(&got["is_not"]), [1, 3, 4]);
    assert_eq!(ids(&got["in"]), [2, 4]);
    assert_eq!(ids(&got["in_spread"]), [1, 3]);
    assert_eq!(ids(&got["contains"]), [2, 4, 5]);
    assert_eq!(ids(&got["range"]), [2, 3, 5]);
    assert_eq!(ids(&got["date"]), [1]);
    assert_eq!(ids(&got["any"]), [1, 3]);
    assert_eq!(ids(&got["nested"]), [1, 2]);
    assert_eq!(ids(&got["no_entity"]), [5]);
    assert_eq!(ids(&got["dotted"]), [4]);
    assert_eq!(ids(&got["limit"]), [5, 4]);
    let ana = json!([{"type": "HumanUser", "id": 88, "name": "Ana Reyes"}]);
    assert_eq!(
        got["records"],
        json!([
            {"type": "Task", "id": 4, "content": "Anim", "sg_status_list": "rdy",
             "entity": {"type": "Shot", "id": 13, "name": "010_0020"},
             "entity.Shot.code": "010_0020", "task_assignees": [], "no_such_field": null},
            {"type": "Task", "id": 2, "content": "Anim", "sg_status_list": "ip",
             "entity": {"type": "Shot", "id": 12, "name": "010_0010"},
             "entity.Shot.code": "010_0010", "task_assignees": ana, "no_such_field": null},
            {"type": "Task", "id": 3, "content": "Light", "sg_status_list": "wtg",
             "entity": {"type": "Shot", "id": 12, "name": "010_0010"},
             "entity.Shot.code": "010_0010", "task_assignees": [], "no_such_field": null},
        ])
    );
}

#[test]
fn find_one_gives_the_first_match_or_none() {
    let site = site();
    studio(&site);
    let got = python(
        &site,
        r#"
sg = connect()
out({
    "newest_anim": sg.find_one("Task", [["content", "is", "Anim"]], ["content"],
                               order=[{"column": "id", "direction": "desc"}]),
    "none": sg.find_one("Task", [["content", "is", "Comp"]]),
    "shot": sg.find_one("Shot", [["id", "is", 12]], ["code", "project"]),
})
"#,
    );
    assert_eq!(
        got["newest_anim"],
        json!({"type": "Task", "id": 5, "content": "Anim"})
    );
    assert_eq!(got["none"], Value::Null);
    assert_eq!(
        got["shot"],
        json!({"type": "Shot", "id": 12, "code": "010_0010",
               "project": {"type": "Project", "id": 70, "name": "Harbour Lights"}})
    );
}

#[test]
fn find_reads_every_page() {
    let site = site();
    site.set_records_per_page(2);
    for n in 1..=5 {
        site.insert_entity("Asset", json!({"code": format!("prop_{n}")}));
    }
    let got = python(
        &site,
        r#"
sg = connect()
found = lambda *args, **kwargs: [r["id"] for r in sg.find(*args, **kwargs)]
out({"per_page": sg.config.records_per_page, "all": found("Asset", []),
     "limit": found("Asset", [], limit=3), "page": found("Asset", [], limit=2, page=2)})
"#,
    );
    assert_eq!(got["per_page"], 2);
    assert_eq!(ids(&got["all"]), [1, 2, 3, 4, 5]);
    assert_eq!(ids(&got["limit"]), [1, 2, 3]);
    assert_eq!(ids(&got["page"]), [3, 4]);
}

#[test]
fn update_changes_the_entity_and_logs_each_changed_field() {
    let site = site();
    studio(&site);
    let before = site.newest_id();
    let got = python(
        &site,
        &format!(
            r#"
sg = connect()
updated = sg.update("Task", 3, {{"sg_status_list": "ip", "content": "Light",
                                 "task_assignees": [{{"type": "HumanUser", "id": 88}}]}})
out({{"updated": updated,
     "events": sg.find("EventLogEntry", [["id", "greater_than", {before}]],
                       ["event_type", "attribute_name", "meta", "entity", "user", "project"])}})
"#
        ),
    );
    let ana = json!({"type": "HumanUser", "id": 88, "name": "Ana Reyes"});
    assert_eq!(
        got["updated"],
        json!({"type": "Task", "id": 3, "sg_status_list": "ip", "content": "Light",
               "task_assignees": [ana]})
    );
    let task = site.entity("Task", 3).expect("task 3");
    assert_eq!(task["sg_status_list"], "ip");
    assert_eq!(
        task["task_assignees"],
        json!([{"type": "HumanUser", "id": 88}])
    );

    // `content` did not change: a row for each of the two other fields, readable over api3 too.
    let rows = events_after(&site, before);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(ids(&got["events"]), ids(&Value::from(rows.clone())));
    let sgevents = json!({"type": "ApiUser", "id": 1, "name": "sgevents"});
    let light = json!({"type": "Task", "id": 3, "name": "Light"});
    let harbour = json!({"type": "Project", "id": 70, "name": "Harbour Lights"});
    assert_eq!(rows[0]["event_type"], "Shotgun_Task_Change");
    assert_eq!(rows[0]["attribute_name"], "sg_status_list");
    assert_eq!(
        rows[0]["meta"],
        json!({"type": "attribute_change", "attribute_name": "sg_status_list",
               "entity_type": "Task", "entity_id": 3, "field_data_type": "status_list",
               "old_value": "wtg", "new_value": "ip", "platform_id": null})
    );
    assert_eq!(rows[1]["attribute_name"], "task_assignees");
    assert_eq!(rows[1]["meta"]["added"], json!([ana]));
    assert_eq!(rows[1]["meta"]["removed"], json!([]));
    for row in &rows {
        assert_eq!(row["entity"], light);
        assert_eq!(row["user"], sgevents);
        assert_eq!(row["project"], harbour);
        assert_eq!(row["session_uuid"], Value::Null);
    }
    assert_eq!(got["events"][0]["meta"], rows[0]["meta"]);
    assert_eq!(got["events"][0]["user"], sgevents);

    // Writing the same values again changes nothing and logs nothing.
    let again = site.newest_id();
    python(
        &site,
        r#"out(connect().update("Task", 3, {"sg_status_list": "ip"}))"#,
    );
    assert_eq!(site.newest_id(), again);
}

#[test]
fn multi_entity_update_modes_add_and_remove() {
    let site = site();
    studio(&site);
    site.insert_entity("HumanUser", json!({"id": 91, "name": "Tom Okafor"}));
    let got = python(
        &site,
        r#"
sg = connect()
tom = {"type": "HumanUser", "id": 91}
added = sg.update("Task", 2, {"task_assignees": [tom]}, multi_entity_update_modes={"task_assignees": "add"})
removed = sg.update("Task", 2, {"task_assignees": [{"type": "HumanUser", "id": 88}]},
                    multi_entity_update_modes={"task_assignees": "remove"})
out({"added": added["task_assignees"], "removed": removed["task_assignees"]})
"#,
    );
    assert_eq!(ids(&got["added"]), [88, 91]);
    assert_eq!(
        got["removed"],
        json!([{"type": "HumanUser", "id": 91, "name": "Tom Okafor"}])
    );
    let rows = site.entities("EventLogEntry");
    let removed = rows.last().expect("a row");
    assert_eq!(
        removed["meta"]["removed"],
        json!([{"type": "HumanUser", "id": 88, "name": "Ana Reyes"}])
    );
    assert_eq!(removed["meta"]["added"], json!([]));
}

#[test]
fn create_returns_the_new_entity_and_logs_it() {
    let site = site();
    studio(&site);
    let before = site.newest_id();
    let got = python(
        &site,
        r#"
sg = connect()
out(sg.create("Note", {"subject": "Timing", "content": "late on the turn", "project": {"type": "Project", "id": 70},
                       "note_links": [{"type": "Shot", "id": 12}], "sg_status_list": None},
              ["project.Project.name", "created_by"]))
"#,
    );
    let harbour = json!({"type": "Project", "id": 70, "name": "Harbour Lights"});
    let shot = json!({"type": "Shot", "id": 12, "name": "010_0010"});
    assert_eq!(
        got,
        json!({"type": "Note", "id": 1, "subject": "Timing", "content": "late on the turn",
               "project": harbour, "note_links": [shot], "sg_status_list": null,
               "project.Project.name": "Harbour Lights", "created_by": null})
    );
    let note = site.entity("Note", 1).expect("the new note");
    assert_eq!(note["subject"], "Timing");
    assert_eq!(site.entities("Note").len(), 1);

    // A `_New` row, then a `_Change` row for each field that got a value, in the order sent.
    let rows = events_after(&site, before);
    let shape: Vec<(&str, &Value)> = rows
        .iter()
        .map(|r| (r["event_type"].as_str().unwrap_or(""), &r["attribute_name"]))
        .collect();
    assert_eq!(
        shape,
        [
            ("Shotgun_Note_New", &Value::Null),
            ("Shotgun_Note_Change", &json!("subject")),
            ("Shotgun_Note_Change", &json!("content")),
            ("Shotgun_Note_Change", &json!("project")),
            ("Shotgun_Note_Change", &json!("note_links")),
        ]
    );
    assert_eq!(
        rows[0]["meta"],
        json!({"type": "new_entity", "entity_type": "Note", "entity_id": 1})
    );
    assert_eq!(
        rows[1]["meta"],
        json!({"type": "attribute_change", "attribute_name": "subject", "entity_type": "Note",
               "entity_id": 1, "field_data_type": "text", "old_value": null,
               "new_value": "Timing", "in_create": true, "platform_id": null})
    );
    assert_eq!(rows[4]["meta"]["added"], json!([shot]));
    for row in &rows {
        assert_eq!(
            row["entity"],
            json!({"type": "Note", "id": 1, "name": "Timing"})
        );
        assert_eq!(row["project"], harbour);
    }
}

#[test]
fn writes_log_nothing_when_switched_off() {
    let site = site();
    studio(&site);
    site.set_log_writes(false);
    let before = site.newest_id();
    python(
        &site,
        r#"
sg = connect()
sg.update("Task", 3, {"sg_status_list": "ip"})
out(sg.create("Shot", {"code": "010_0030"}))
"#,
    );
    assert_eq!(site.newest_id(), before);
    assert_eq!(
        site.entity("Task", 3).expect("task 3")["sg_status_list"],
        "ip"
    );
    assert_eq!(
        site.entity("Shot", 14).expect("the new shot")["code"],
        "010_0030"
    );
}

#[test]
fn another_script_signs_in_and_its_writes_are_credited_to_it() {
    let site = site();
    studio(&site);
    assert_eq!(site.add_script("task_roll_up", "k2"), 2);
    let before = site.newest_id();
    python_as(
        &site.url(),
        "task_roll_up",
        "k2",
        r#"
sg = connect()
sg.set_session_uuid("5a1d49b0-0c69-11e0-a24c-003048d17544")
out(sg.update("Task", 5, {"sg_status_list": "rev"}))
"#,
    );
    let rows = events_after(&site, before);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0]["user"],
        json!({"type": "ApiUser", "id": 2, "name": "task_roll_up"})
    );
    assert_eq!(
        rows[0]["session_uuid"],
        "5a1d49b0-0c69-11e0-a24c-003048d17544"
    );
    assert_eq!(
        rows[0]["project"],
        json!({"type": "Project", "id": 71, "name": "Night Ferry"})
    );
}

#[test]
fn a_bad_script_key_is_an_authentication_fault() {
    let site = site();
    let got = python_as(
        &site.url(),
        "sgevents",
        "wrong-key",
        r#"
sg = shotgun_api3.Shotgun(os.environ["SG_URL"], script_name=os.environ["SG_SCRIPT"], api_key=os.environ["SG_KEY"])
out({"find": caught(lambda: sg.find_one("Task", [])),
     "update": caught(lambda: sg.update("Task", 1, {"content": "x"}))})
"#,
    );
    for call in ["find", "update"] {
        assert_eq!(got[call]["raised"], "AuthenticationFault", "{got}");
        assert_eq!(got[call]["message"], "Can't authenticate script 'sgevents'");
    }
    let got = python_as(
        &site.url(),
        "nobody",
        "fake-key",
        r#"out(caught(lambda: connect().find("Task", [])))"#,
    );
    assert_eq!(got["raised"], "AuthenticationFault", "{got}");
    assert_eq!(got["message"], "Can't authenticate script 'nobody'");
}

#[test]
fn bad_calls_are_faults_that_name_what_is_wrong() {
    let site = site();
    studio(&site);
    let got = python(
        &site,
        r#"
sg = connect()
out({
    "unknown_type": caught(lambda: sg.find("Widget", [])),
    "create_unknown_type": caught(lambda: sg.create("Widget", {"code": "x"})),
    "missing_record": caught(lambda: sg.update("Task", 99, {"content": "x"})),
    "meta_filter": caught(lambda: sg.find("EventLogEntry", [["meta", "is", None]])),
    "relation": caught(lambda: sg.find("Task", [["content", "sounds_like", "anim"]])),
    "log_write": caught(lambda: sg.update("EventLogEntry", 1, {"description": "x"})),
    "method": caught(lambda: sg.delete("Task", 1)),
    "custom_type": caught(lambda: sg.find("CustomEntity05", [])),
})
"#,
    );
    let fault = |name: &str, needle: &str| {
        let call = &got[name];
        assert_eq!(call["raised"], "Fault", "{name}: {call}");
        let message = call["message"].as_str().unwrap_or("");
        assert!(message.contains(needle), "{name}: {message}");
    };
    fault("unknown_type", "entity type 'Widget' doesn't exist");
    fault("create_unknown_type", "API create() entity type 'Widget'");
    fault("missing_record", "API update() Task 99 doesn't exist");
    fault(
        "meta_filter",
        "'serializable' data type cannot be used in a filter",
    );
    fault("relation", "relation 'sounds_like' is not supported");
    fault("log_write", "EventLogEntry");
    fault("method", "API delete() is not supported");
    assert_eq!(got["custom_type"], json!({"returned": []}));
    assert_eq!(site.entity("Task", 1).expect("task 1")["content"], "Layout");
}

#[test]
fn the_event_log_reads_as_the_incumbent_daemon_reads_it() {
    let site = site();
    let appended = site.append(12);
    let got = python(
        &site,
        r#"
sg = connect()
newest = sg.find_one("EventLogEntry", filters=[], fields=["id"], order=[{"column": "id", "direction": "desc"}])
fields = ["id", "event_type", "attribute_name", "meta", "entity", "user", "project", "session_uuid", "created_at"]
batch = sg.find("EventLogEntry", [["id", "greater_than", 4]], fields, [{"column": "id", "direction": "asc"}], limit=5)
out({"newest": newest, "batch": batch,
     "created_at_type": type(batch[0]["created_at"]).__name__})
"#,
    );
    assert_eq!(
        got["newest"],
        json!({"type": "EventLogEntry", "id": appended[11]})
    );
    assert_eq!(ids(&got["batch"]), [5, 6, 7, 8, 9]);
    // The client turned the wire's "YYYY-MM-DDTHH:MM:SSZ" into a datetime.
    assert_eq!(got["created_at_type"], "datetime");
    let stored = site.entity("EventLogEntry", 5).expect("row 5");
    let served = &got["batch"][0];
    for field in [
        "event_type",
        "attribute_name",
        "meta",
        "entity",
        "user",
        "project",
        "session_uuid",
    ] {
        assert_eq!(served[field], stored[field], "{field}");
    }
}

#[test]
fn the_program_seeds_entities_from_a_file() {
    let dir = std::env::temp_dir().join(format!("sgevents-api3-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    let file = dir.join("entities.jsonl");
    std::fs::write(
        &file,
        "{\"type\": \"Shot\", \"id\": 12, \"code\": \"010_0010\"}\n\n\
         {\"type\": \"Task\", \"content\": \"Anim\", \"entity\": {\"type\": \"Shot\", \"id\": 12}}\n",
    )
    .expect("the entities file");
    let program = SiteProgram::start([
        "--entities".as_ref(),
        file.as_os_str(),
        "--script".as_ref(),
        "plugin=k9".as_ref(),
        "--no-log-writes".as_ref(),
    ]);
    let got = python_as(
        &program.url,
        "plugin",
        "k9",
        r#"
sg = connect()
sg.update("Task", 1, {"sg_status_list": "ip"})
out({"tasks": sg.find("Task", [], ["content", "entity", "sg_status_list"]),
     "log": sg.find("EventLogEntry", [])})
"#,
    );
    drop(program);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        got["tasks"],
        json!([{"type": "Task", "id": 1, "content": "Anim", "sg_status_list": "ip",
                "entity": {"type": "Shot", "id": 12, "name": "010_0010"}}])
    );
    assert_eq!(got["log"], json!([]));
}

#[test]
fn the_program_explains_a_bad_entities_file() {
    let dir = std::env::temp_dir().join(format!("sgevents-api3-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    let file = dir.join("entities.jsonl");
    std::fs::write(&file, "{\"code\": \"no type\"}\n").expect("the entities file");
    let output = Command::new(env!("CARGO_BIN_EXE_sgevents-fake-site"))
        .arg("--entities")
        .arg(&file)
        .output()
        .expect("the fake site program runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 1: an entity needs a \"type\""),
        "{stderr}"
    );
    assert!(stderr.contains("hint: "), "{stderr}");
}
