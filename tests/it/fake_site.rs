//! The fake ShotGrid site (`sgevents_tests::fake_site`) over real HTTP, through a small hand-written
//! client on a `TcpStream`: sign-in, token expiry, `_search` filters and paging, held and rolled-back
//! ids, injected faults and the counters; and the `sgevents-fake-site` program.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sgevents_tests::fake_site::{FakeSite, Fault, SiteOptions, Stats};

use crate::{PATIENCE, SiteProgram, root, site, site_with};

const ARRAY: &str = "application/vnd+shotgun.api3_array+json";
const HASH: &str = "application/vnd+shotgun.api3_hash+json";
const SEARCH: &str = "/api/v1/entity/event_log_entries/_search";

/// An HTTP answer as read off the socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The ids of a successful search, in answer order.
    fn ids(&self) -> Vec<i64> {
        assert_eq!(self.status, 200, "{}", self.body);
        self.json()["data"]
            .as_array()
            .expect("a data list")
            .iter()
            .map(|row| row["id"].as_i64().expect("an integer id"))
            .collect()
    }

    /// The title of an error answer, after checking the error body's shape.
    fn error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        let body = self.json();
        let errors = body["errors"].as_array().expect("an errors list");
        assert_eq!(errors.len(), 1);
        let error = errors[0].as_object().expect("an error object");
        let mut keys: Vec<&str> = error.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["code", "detail", "id", "meta", "source", "status", "title"]
        );
        assert_eq!(error["status"], status);
        error["title"].as_str().expect("a title").to_owned()
    }
}

/// One request on a fresh connection. `url` is the site's base URL.
fn http(url: &str, method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let host = url.strip_prefix("http://").expect("an http URL");
    let mut stream = TcpStream::connect(host).expect("the site accepts connections");
    stream.set_read_timeout(Some(PATIENCE)).expect("a timeout");
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("request sent");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("an answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let answer = Answer {
        status,
        headers,
        body: body.to_owned(),
    };
    let length = answer.header("Content-Length").map(|l| l.parse::<usize>());
    assert_eq!(length, Some(Ok(answer.body.len())), "a whole body");
    answer
}

/// Signs in with the query string, as both official REST clients do.
fn sign_in_with(site: &FakeSite, params: &str) -> Answer {
    http(
        &site.url(),
        "POST",
        &format!("/api/v1/auth/access_token?{params}"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "",
    )
}

fn token(site: &FakeSite) -> String {
    let answer = sign_in_with(
        site,
        "client_id=sgevents&client_secret=fake-key&grant_type=client_credentials",
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()["access_token"]
        .as_str()
        .expect("a token")
        .to_owned()
}

fn search_as(url: &str, token: &str, content_type: &str, body: &Value) -> Answer {
    let bearer = format!("Bearer {token}");
    http(
        url,
        "POST",
        SEARCH,
        &[("Authorization", &bearer), ("Content-Type", content_type)],
        &body.to_string(),
    )
}

fn search(site: &FakeSite, token: &str, body: Value) -> Answer {
    search_as(&site.url(), token, ARRAY, &body)
}

/// The ids matching `filters` (array form), first page of 500.
fn find(site: &FakeSite, token: &str, filters: Value) -> Vec<i64> {
    search(site, token, json!({"filters": filters, "fields": ["id"]})).ids()
}

/// Waits for a condition another thread makes true. A guard against hangs, not a timer.
fn wait_for(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn sign_in_with_the_query_string_gives_a_bearer_token() {
    let site = site();
    let answer = sign_in_with(
        &site,
        "client_id=sgevents&client_secret=fake-key&grant_type=client_credentials",
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 600);
    assert!(body["access_token"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(
        body["refresh_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
}

#[test]
fn sign_in_with_a_form_body() {
    let site = site_with(SiteOptions {
        script_name: "ingest bot".to_owned(),
        script_key: "k&y=1".to_owned(),
        ..SiteOptions::default()
    });
    let answer = http(
        &site.url(),
        "POST",
        "/api/v1/auth/access_token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "grant_type=client_credentials&client_id=ingest+bot&client_secret=k%26y%3D1",
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["token_type"], "Bearer");
}

#[test]
fn sign_in_refusals() {
    let site = site();
    let wrong_key = sign_in_with(
        &site,
        "client_id=sgevents&client_secret=nope&grant_type=client_credentials",
    );
    assert_eq!(wrong_key.error(400), "Can't authenticate script 'sgevents'");
    let wrong_name = sign_in_with(
        &site,
        "client_id=other&client_secret=fake-key&grant_type=client_credentials",
    );
    assert_eq!(wrong_name.error(400), "Can't authenticate script 'other'");
    let missing = sign_in_with(&site, "client_id=sgevents&grant_type=client_credentials");
    assert_eq!(
        missing.error(400),
        "Missing or invalid authentication arguments"
    );
    let nothing = sign_in_with(&site, "");
    assert_eq!(
        nothing.error(400),
        "Missing or invalid authentication arguments"
    );
    let grant = sign_in_with(&site, "username=a&password=b&grant_type=password");
    assert_eq!(grant.error(400), "Unsupported grant_type");
    let stats = site.stats();
    assert_eq!((stats.sign_ins, stats.failed_sign_ins), (0, 5));
}

#[test]
fn a_token_expires_after_its_lifetime() {
    let site = site_with(SiteOptions {
        token_lifetime: Duration::ZERO,
        ..SiteOptions::default()
    });
    site.append(1);
    let token = token(&site);
    let answer = search(&site, &token, json!({}));
    assert_eq!(answer.error(401), "Unauthorized");
    assert_eq!(site.stats().unauthorized, 1);
}

#[test]
fn expired_tokens_are_refused_until_the_client_signs_in_again() {
    let site = site();
    site.append(2);
    let old = token(&site);
    assert_eq!(find(&site, &old, json!([])), [1, 2]);
    site.expire_tokens();
    assert_eq!(search(&site, &old, json!({})).error(401), "Unauthorized");
    let new = token(&site);
    assert_eq!(find(&site, &new, json!([])), [1, 2]);
}

#[test]
fn missing_and_unknown_tokens_are_refused() {
    let site = site();
    let url = site.url();
    let no_header = http(&url, "POST", SEARCH, &[("Content-Type", ARRAY)], "{}");
    assert_eq!(no_header.error(401), "Unauthorized");
    assert_eq!(
        search(&site, "made-up", json!({})).error(401),
        "Unauthorized"
    );
    assert_eq!(site.stats().unauthorized, 2);
}

#[test]
fn a_refresh_token_gives_a_new_access_token_until_tokens_expire() {
    let site = site();
    site.append(1);
    let first = sign_in_with(
        &site,
        "client_id=sgevents&client_secret=fake-key&grant_type=client_credentials",
    )
    .json();
    let refresh = first["refresh_token"].as_str().expect("a refresh token");
    let again = sign_in_with(
        &site,
        &format!("grant_type=refresh_token&refresh_token={refresh}"),
    );
    let access = again.json()["access_token"]
        .as_str()
        .expect("a token")
        .to_owned();
    assert_eq!(find(&site, &access, json!([])), [1]);
    site.expire_tokens();
    let refused = sign_in_with(
        &site,
        &format!("grant_type=refresh_token&refresh_token={refresh}"),
    );
    assert_eq!(refused.error(401), "Unauthorized");
}

#[test]
fn the_api_root_answers_without_a_token_and_other_paths_are_not_found() {
    let site = site();
    let root = http(&site.url(), "GET", "/api/v1", &[], "");
    assert_eq!(root.status, 200);
    assert_eq!(root.json()["data"]["api_version"], "v1");
    let missing = http(&site.url(), "GET", "/api/v1/entity/shots", &[], "");
    assert_eq!(missing.error(404), "Not Found");
    let wrong_method = http(&site.url(), "GET", SEARCH, &[], "");
    assert_eq!(wrong_method.error(404), "Not Found");
}

#[test]
fn the_daemon_poll_pages_through_the_log() {
    let site = site();
    assert_eq!(site.append(10), (1..=10).collect::<Vec<_>>());
    let token = token(&site);
    let page = |number: usize| {
        search(
            &site,
            &token,
            json!({
                "filters": [["id", "greater_than", 3]],
                "fields": ["event_type", "attribute_name", "meta", "entity", "user", "project", "session_uuid", "created_at"],
                "sort": "id",
                "page": {"size": 3, "number": number},
            }),
        )
    };
    assert_eq!(page(1).ids(), [4, 5, 6]);
    assert_eq!(page(2).ids(), [7, 8, 9]);
    assert_eq!(page(3).ids(), [10]);
    assert_eq!(page(4).ids(), Vec::<i64>::new());
    let links = &page(3).json()["links"];
    assert_eq!(links["self"], SEARCH);
    assert_eq!(
        links["next"],
        format!("{SEARCH}?page%5Bnumber%5D=4&page%5Bsize%5D=3")
    );
    assert_eq!(
        links["prev"],
        format!("{SEARCH}?page%5Bnumber%5D=2&page%5Bsize%5D=3")
    );
    // `next` is there even on an empty page, and there is no `prev` on the first.
    assert!(page(4).json()["links"]["next"].is_string());
    assert!(page(1).json()["links"].get("prev").is_none());
}

#[test]
fn id_relations() {
    let site = site();
    site.append(10);
    let token = token(&site);
    assert_eq!(find(&site, &token, json!([["id", "is", 4]])), [4]);
    assert_eq!(find(&site, &token, json!([["id", "less_than", 3]])), [1, 2]);
    assert_eq!(
        find(&site, &token, json!([["id", "in", [9, 2, 5, 42]]])),
        [2, 5, 9]
    );
    assert_eq!(
        find(&site, &token, json!([["id", "between", [3, 5]]])),
        [3, 4, 5]
    );
    assert_eq!(
        find(
            &site,
            &token,
            json!([["id", "not_in", [1, 2, 3]], ["id", "less_than", 7]])
        ),
        [4, 5, 6]
    );
    assert_eq!(
        find(&site, &token, json!([["id", "greater_than", 10]])),
        Vec::<i64>::new()
    );
}

#[test]
fn created_at_relations_compare_iso_times() {
    let site = site();
    let event =
        |created_at: &str| json!({"event_type": "Shotgun_Shot_New", "created_at": created_at});
    site.append_events(vec![
        event("2026-01-01T10:00:00Z"),
        event("2026-01-01T11:00:00Z"),
        event("2026-01-01T12:00:00Z"),
    ]);
    let token = token(&site);
    assert_eq!(
        find(
            &site,
            &token,
            json!([["created_at", "greater_than", "2026-01-01T10:30:00Z"]])
        ),
        [2, 3]
    );
    assert_eq!(
        find(
            &site,
            &token,
            json!([["created_at", "less_than", "2026-01-01T11:00:00Z"]])
        ),
        [1]
    );
}

#[test]
fn hash_filters_nest_and_and_or_groups() {
    let site = site();
    site.append(20);
    let token = token(&site);
    let filters = json!({"logical_operator": "or", "conditions": [
        ["id", "is", 2],
        {"logical_operator": "and", "conditions": [["id", "greater_than", 10], ["id", "less_than", 13]]},
        ["id", "in", [19, 20]],
    ]});
    let answer = search_as(
        &site.url(),
        &token,
        HASH,
        &json!({"filters": filters, "fields": "id"}),
    );
    assert_eq!(answer.ids(), [2, 11, 12, 19, 20]);
    let api3_form = json!({"filters": {"path": "id", "relation": "is", "values": [2]}});
    let answer = search_as(&site.url(), &token, HASH, &api3_form);
    assert_eq!(answer.error(400), "Missing logical operator");
}

#[test]
fn sort_descending_with_one_row_gives_the_newest_id() {
    let site = site();
    site.append(7);
    let held = site.hold(1);
    let token = token(&site);
    let newest = search(
        &site,
        &token,
        json!({"filters": [], "fields": ["id"], "sort": "-id", "page": {"size": 1, "number": 1}}),
    );
    assert_eq!(newest.ids(), [7]);
    assert_eq!(site.newest_id(), held[0]);
}

#[test]
fn fields_choose_attributes_and_relationships() {
    let site = site();
    site.append_events(vec![json!({
        "type": "EventLogEntry", "id": 999,
        "event_type": "Shotgun_Task_Change", "attribute_name": "sg_status_list",
        "meta": {"type": "attribute_change", "old_value": "wtg", "new_value": "ip"},
        "entity": {"type": "Task", "id": 5021, "name": "Anim"},
        "user": {"type": "HumanUser", "id": 88, "name": "Ana Reyes"},
        "project": null, "session_uuid": null, "created_at": "2026-01-21T19:47:33Z",
        "description": "Ana Reyes changed \"Status\" from \"wtg\" to \"ip\" on Task Anim",
    })]);
    let token = token(&site);
    let row = |fields: Value| {
        let answer = search(&site, &token, json!({"fields": fields}));
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.json()["data"][0].clone()
    };
    let keys = |value: &Value| {
        let mut keys: Vec<String> = value
            .as_object()
            .expect("an object")
            .keys()
            .cloned()
            .collect();
        keys.sort();
        keys
    };

    let some = row(json!(["event_type", "meta", "entity", "project"]));
    assert_eq!(some["id"], 1, "the id is the site's, not the event's");
    assert_eq!(some["type"], "EventLogEntry");
    assert_eq!(keys(&some["attributes"]), ["event_type", "meta"]);
    assert_eq!(some["attributes"]["meta"]["new_value"], "ip");
    assert_eq!(keys(&some["relationships"]), ["entity", "project"]);
    assert_eq!(
        some["relationships"]["entity"]["data"],
        json!({"id": 5021, "name": "Anim", "type": "Task"})
    );
    assert_eq!(
        some["relationships"]["entity"]["links"]["related"],
        "/api/v1/entity/tasks/5021"
    );
    assert!(some["relationships"]["project"]["data"].is_null());
    assert!(
        some["relationships"]["project"]["links"]
            .get("related")
            .is_none()
    );
    assert_eq!(some["links"]["self"], "/api/v1/entity/event_log_entries/1");

    let comma = row(json!("created_at,user"));
    assert_eq!(keys(&comma["attributes"]), ["created_at"]);
    assert_eq!(comma["attributes"]["created_at"], "2026-01-21T19:47:33Z");
    assert_eq!(keys(&comma["relationships"]), ["user"]);

    let none = row(json!(["id"]));
    assert_eq!(none["attributes"], json!({}));
    assert_eq!(none["relationships"], json!({}));

    let all = row(json!("*"));
    for field in [
        "event_type",
        "attribute_name",
        "meta",
        "session_uuid",
        "created_at",
        "description",
    ] {
        assert!(all["attributes"].get(field).is_some(), "{field}");
    }
    for field in ["entity", "user", "project"] {
        assert!(all["relationships"].get(field).is_some(), "{field}");
    }

    let unknown = search(&site, &token, json!({"fields": ["event_type", "colour"]}));
    assert!(unknown.error(400).contains("EventLogEntry.colour"));
}

#[test]
fn bad_searches_are_refused() {
    let site = site();
    site.append(1);
    let token = token(&site);
    let url = site.url();

    let plain = search_as(&url, &token, "application/json", &json!({}));
    assert_eq!(
        plain.error(415),
        "Unsupported Content-Type 'application/json'"
    );
    assert_eq!(
        plain.json()["errors"][0]["code"],
        103,
        "the recorded 415 has code 103"
    );

    let too_big = search(&site, &token, json!({"page": {"size": 5001, "number": 1}}));
    assert_eq!(too_big.error(400), "size must be less than 5000");
    let biggest = search(&site, &token, json!({"page": {"size": 5000, "number": 1}}));
    assert_eq!(biggest.ids(), [1]);
    let zero = search(&site, &token, json!({"page": {"size": 0}}));
    assert_eq!(zero.error(400), "size must be greater than 0");

    let meta = search(&site, &token, json!({"filters": [["meta", "is", {}]]}));
    assert!(meta.error(400).contains("EventLogEntry.meta"));
    let field = search(&site, &token, json!({"filters": [["colour", "is", 1]]}));
    assert!(field.error(400).contains("EventLogEntry.colour"));
    let relation = search(
        &site,
        &token,
        json!({"filters": [["id", "starts_with", 1]]}),
    );
    let title = relation.error(400);
    assert!(title.contains("starts_with"), "{title}");
    assert_eq!(relation.json()["errors"][0]["code"], 103);

    let not_json = http(
        &url,
        "POST",
        SEARCH,
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", ARRAY),
        ],
        "{filters",
    );
    assert_eq!(not_json.error(400), "Request Parameters invalid.");
}

#[test]
fn the_type_name_path_segment_works_too() {
    let site = site();
    site.append(2);
    let token = token(&site);
    let answer = http(
        &site.url(),
        "POST",
        "/api/v1/entity/EventLogEntry/_search",
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", ARRAY),
        ],
        r#"{"filters": [["id", "greater_than", 1]]}"#,
    );
    assert_eq!(answer.ids(), [2]);
}

#[test]
fn held_ids_are_invisible_until_committed_and_rolled_back_ones_never_appear() {
    let site = site();
    assert_eq!(site.append(2), [1, 2]);
    assert_eq!(site.hold(2), [3, 4]);
    assert_eq!(site.append(2), [5, 6]);
    let token = token(&site);
    assert_eq!(
        find(&site, &token, json!([["id", "greater_than", 0]])),
        [1, 2, 5, 6]
    );
    assert_eq!(
        find(&site, &token, json!([["id", "in", [3, 4]]])),
        Vec::<i64>::new()
    );
    assert_eq!(site.visible_ids(), [1, 2, 5, 6]);
    assert_eq!(site.newest_id(), 6);

    site.commit(&[3]);
    site.rollback(&[4]);
    assert_eq!(
        find(&site, &token, json!([["id", "greater_than", 2]])),
        [3, 5, 6]
    );
    // Committing a rolled-back id does nothing: it is gone for good.
    site.commit(&[4]);
    assert_eq!(site.visible_ids(), [1, 2, 3, 5, 6]);
    assert_eq!(site.append(1), [7]);
}

#[test]
fn appended_events_keep_their_fields_and_get_the_next_ids() {
    let site = site_with(SiteOptions {
        first_id: 2_011_000,
        ..SiteOptions::default()
    });
    let events: Vec<Value> = std::fs::read_to_string(root().join("config/demo-events.jsonl"))
        .expect("the demo events")
        .lines()
        .take(3)
        .map(|line| serde_json::from_str(line).expect("a JSON event"))
        .collect();
    assert_eq!(
        site.append_events(events.clone()),
        [2_011_000, 2_011_001, 2_011_002]
    );
    let token = token(&site);
    let answer = search(
        &site,
        &token,
        json!({"fields": ["event_type", "meta", "entity"]}),
    );
    let rows = answer.json()["data"].clone();
    for (row, event) in rows.as_array().expect("rows").iter().zip(&events) {
        assert_eq!(row["attributes"]["event_type"], event["event_type"]);
        assert_eq!(row["attributes"]["meta"], event["meta"]);
        assert_eq!(
            row["relationships"]["entity"]["data"]["id"],
            event["entity"]["id"]
        );
    }
}

#[test]
fn generated_events_look_like_shotgun_rows() {
    let site = site();
    site.append(200);
    let token = token(&site);
    let answer = search(&site, &token, json!({"fields": "*"}));
    let rows = answer.json()["data"].as_array().expect("rows").clone();
    assert_eq!(rows.len(), 200);
    let task_changes = rows
        .iter()
        .filter(|r| {
            r["attributes"]["event_type"] == "Shotgun_Task_Change"
                && r["attributes"]["attribute_name"] == "sg_status_list"
        })
        .count();
    assert!(task_changes > 60, "only {task_changes} Task status changes");
    for row in &rows {
        let attributes = &row["attributes"];
        let event_type = attributes["event_type"].as_str().expect("an event type");
        assert!(event_type.starts_with("Shotgun_"), "{event_type}");
        let created_at = attributes["created_at"].as_str().expect("a time");
        assert!(
            created_at.len() == 20 && created_at.ends_with('Z'),
            "{created_at}"
        );
        assert!(attributes["meta"].is_object());
        assert!(row["relationships"]["user"]["data"]["id"].is_i64());
    }
}

#[test]
fn each_fault_kind_hits_the_next_search_only() {
    let site = site();
    site.append(3);
    let token = token(&site);
    let all = json!({"fields": ["id"]});

    site.fail_next(2, Fault::Status(503));
    assert_eq!(
        search(&site, &token, all.clone()).error(503),
        "Service Unavailable"
    );
    assert_eq!(
        search(&site, &token, all.clone()).error(503),
        "Service Unavailable"
    );
    assert_eq!(search(&site, &token, all.clone()).ids(), [1, 2, 3]);

    site.fail_next(1, Fault::Status(500));
    assert_eq!(
        search(&site, &token, all.clone()).error(500),
        "Internal Server Error"
    );

    site.fail_next(1, Fault::Throttle { retry_after_s: 7 });
    let throttled = search(&site, &token, all.clone());
    assert_eq!(throttled.error(429), "Too Many Requests");
    assert_eq!(throttled.header("Retry-After"), Some("7"));

    site.fail_next(1, Fault::Hang(Duration::from_millis(20)));
    assert_eq!(search(&site, &token, all.clone()).ids(), [1, 2, 3]);

    site.fail_next(1, Fault::Garbage);
    let garbage = search(&site, &token, all.clone());
    assert_eq!(garbage.status, 200);
    assert!(
        serde_json::from_str::<Value>(&garbage.body).is_err(),
        "{}",
        garbage.body
    );
    assert!(
        garbage
            .header("Content-Type")
            .is_some_and(|t| t.starts_with("text/html"))
    );

    site.fail_next(1, Fault::Unauthorized);
    assert_eq!(
        search(&site, &token, all.clone()).error(401),
        "Unauthorized"
    );

    // Sign-in is never faulted.
    site.fail_next(1, Fault::Status(503));
    let signed_in = sign_in_with(
        &site,
        "client_id=sgevents&client_secret=fake-key&grant_type=client_credentials",
    );
    assert_eq!(signed_in.status, 200);
    assert_eq!(
        search(&site, &token, all.clone()).error(503),
        "Service Unavailable"
    );
    assert_eq!(search(&site, &token, all).ids(), [1, 2, 3]);

    let stats = site.stats();
    assert_eq!(stats.faults, 8);
    assert_eq!(stats.unauthorized, 0, "an injected 401 counts as a fault");
}

#[test]
fn a_hanging_search_does_not_hold_up_others() {
    let site = site();
    site.append(3);
    let token = token(&site);
    site.fail_next(1, Fault::Hang(Duration::from_secs(3600)));
    let hanging = thread::spawn({
        let (url, token) = (site.url(), token.clone());
        move || search_as(&url, &token, ARRAY, &json!({"fields": ["id"]}))
    });
    wait_for("the hanging search to arrive", || site.stats().faults == 1);
    assert_eq!(
        search(&site, &token, json!({"fields": ["id"]})).ids(),
        [1, 2, 3]
    );
    // Dropping the site wakes the hanging request, which then answers as usual.
    drop(site);
    assert_eq!(hanging.join().expect("the client thread").ids(), [1, 2, 3]);
}

#[test]
fn random_faults_follow_their_rates() {
    let site = site();
    site.append(1);
    let token = token(&site);
    site.set_faults(sgevents_tests::fake_site::Faults {
        throttle_rate: 1.0,
        retry_after_s: 2,
        ..Default::default()
    });
    let answer = search(&site, &token, json!({}));
    assert_eq!(answer.error(429), "Too Many Requests");
    assert_eq!(answer.header("Retry-After"), Some("2"));
    site.set_faults(sgevents_tests::fake_site::Faults::default());
    assert_eq!(search(&site, &token, json!({"fields": ["id"]})).ids(), [1]);
}

#[test]
fn stats_count_what_clients_did() {
    let site = site();
    site.append(5);
    assert_eq!(site.stats(), Stats::default());
    let token = token(&site);
    let _ = sign_in_with(
        &site,
        "client_id=sgevents&client_secret=x&grant_type=client_credentials",
    );
    assert_eq!(
        find(&site, &token, json!([["id", "greater_than", 2]])),
        [3, 4, 5]
    );
    assert_eq!(find(&site, &token, json!([])), [1, 2, 3, 4, 5]);
    let _ = search(&site, "stale", json!({}));
    site.fail_next(1, Fault::Garbage);
    let _ = search(&site, &token, json!({}));
    assert_eq!(
        site.stats(),
        Stats {
            sign_ins: 1,
            failed_sign_ins: 1,
            searches: 4,
            unauthorized: 1,
            faults: 1,
            rows_served: 8,
            range_searches: 0,
            most_concurrent: 1,
        }
    );
}

#[test]
fn the_program_serves_its_initial_events_until_killed() {
    let program = SiteProgram::start(["--initial", "4", "--script-key", "sekrit"]);
    let (first, url) = (&program.first, &program.url);
    assert!(first.contains("key sekrit"), "{first}");
    let signed_in = http(
        url,
        "POST",
        "/api/v1/auth/access_token?client_id=sgevents&client_secret=sekrit&grant_type=client_credentials",
        &[],
        "",
    );
    let token = signed_in.json()["access_token"]
        .as_str()
        .expect("a token")
        .to_owned();
    let answer = search_as(url, &token, ARRAY, &json!({"fields": ["id"]}));
    drop(program);
    assert_eq!(answer.ids(), [1, 2, 3, 4]);
}

#[test]
fn the_program_explains_bad_options() {
    let output = Command::new(env!("CARGO_BIN_EXE_sgevents-fake-site"))
        .args(["--hang-for", "soon"])
        .output()
        .expect("the fake site program runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("error: `--hang-for` takes a duration"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: "), "{stderr}");
}

/// `set_webhook`: each event that becomes visible is POSTed, signed with the secret.
#[test]
fn new_events_are_sent_as_signed_webhook_deliveries() {
    let receiver = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = receiver.local_addr().expect("address").port();
    let site = site();
    site.set_webhook(&format!("http://127.0.0.1:{port}/hook"), "s3");
    let id = site.append(1)[0];
    let (mut stream, _) = receiver.accept().expect("a delivery");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut head = Vec::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("a header line");
        if line.trim().is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().expect("a length");
        }
        head.push(line.trim().to_owned());
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("the body");
    stream
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .expect("answer");
    assert_eq!(head[0], "POST /hook HTTP/1.1");
    let signature = sgevents_tests::fake_site::webhook_signature("s3", &body);
    assert!(
        head.iter()
            .any(|h| h == &format!("X-SG-SIGNATURE: {signature}")),
        "{head:?}"
    );
    let delivery: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(delivery["data"]["event_log_entry_id"], id);
}
