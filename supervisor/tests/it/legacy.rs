//! Unmodified shotgunEvents plugins (`plugins.legacy_paths`), each in its own process through the
//! Python SDK's legacy host, against the fake site with the real `shotgun_api3`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;
use serde_json::{Value, json};
use sgevents_tests::fake_site::{FakeSite, python_with_shotgun_api3};

use crate::site::{KEY, PLUGINS, shotgrid_config, site};
use crate::{Ctx, root, signal, wait_for};

const TASKS_SCRIPT: (&str, &str) = ("shot_to_task", "task-key");

/// The fixture plugins of the Python SDK, copied so that each test owns its folder.
fn fixtures(ctx: &Ctx, only: &[&str]) -> PathBuf {
    let dir = ctx.path("legacy");
    std::fs::create_dir_all(&dir).expect("folder");
    let src = root().join("sdk-python/tests/legacy_plugins");
    for name in only {
        std::fs::copy(src.join(name), dir.join(name)).expect("copy fixture");
    }
    dir
}

fn pythonpath() -> String {
    std::env::join_paths([root().join("sdk-python/src"), python_with_shotgun_api3()])
        .expect("paths")
        .to_string_lossy()
        .into_owned()
}

/// A configuration polling `site`, with the incumbent plugins of `folder` and `tables`.
fn config(ctx: &Ctx, site: &FakeSite, folder: &Path, plugins_extra: &str, tables: &str) {
    let plugins = format!(
        "{PLUGINS}legacy_paths = [{folder:?}]\nlegacy_env = {{ PYTHONPATH = {pythonpath:?}, PYTHONDONTWRITEBYTECODE = \"1\" }}\n{plugins_extra}\n{tables}",
        folder = folder.display().to_string(),
        pythonpath = pythonpath(),
    );
    shotgrid_config(ctx, site, "request_timeout = \"5s\"", &plugins);
}

fn out(ctx: &Ctx, name: &str) -> Vec<String> {
    std::fs::read_to_string(ctx.path(&format!("{name}.out")))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn shot_status(shot: i64, new: &str) -> Value {
    json!({
        "event_type": "Shotgun_Shot_Change", "attribute_name": "sg_status_list",
        "entity": {"type": "Shot", "id": shot, "name": format!("sh{shot}")},
        "project": {"type": "Project", "id": 70, "name": "Harbour Lights"},
        "meta": {"type": "attribute_change", "attribute_name": "sg_status_list", "entity_type": "Shot",
                 "entity_id": shot, "field_data_type": "status_list", "old_value": "wtg", "new_value": new},
        "user": {"type": "HumanUser", "id": 42, "name": "Ana Reyes"}, "session_uuid": null,
        "created_at": "2026-11-02T10:00:00Z", "description": "status change",
    })
}

fn asset_change(attribute: &str) -> Value {
    json!({
        "event_type": "Shotgun_Asset_Change", "attribute_name": attribute,
        "entity": {"type": "Asset", "id": 5, "name": "tree"},
        "project": {"type": "Project", "id": 70, "name": "Harbour Lights"},
        "meta": {"type": "attribute_change", "attribute_name": attribute, "entity_type": "Asset",
                 "entity_id": 5, "old_value": "a", "new_value": "b"},
        "user": {"type": "HumanUser", "id": 42, "name": "Ana Reyes"}, "session_uuid": null,
        "created_at": "2026-11-02T10:00:00Z", "description": "change",
    })
}

#[test]
fn incumbent_plugins_run_unchanged_each_in_its_own_process() {
    let ctx = Ctx::new();
    let site = site();
    site.add_script(TASKS_SCRIPT.0, TASKS_SCRIPT.1);
    let shot = site.insert_entity("Shot", json!({"code": "sh1", "sg_status_list": "wtg"}));
    let tasks: Vec<i64> = ["Anim", "Light"]
        .iter()
        .map(|c| {
            site.insert_entity(
                "Task",
                json!({"content": c, "sg_status_list": "wtg", "entity": {"type": "Shot", "id": shot}}),
            )
        })
        .collect();
    let other = site.insert_entity(
        "Task",
        json!({"content": "Other", "sg_status_list": "wtg", "entity": {"type": "Shot", "id": shot + 100}}),
    );

    let folder = fixtures(
        &ctx,
        &[
            "log_all.py",
            "shared_state.py",
            "shot_to_task.py",
            "raises.py",
            "broken_import.py",
        ],
    );
    // A hidden file and a subfolder are not plugins.
    std::fs::write(folder.join(".hidden.py"), "raise SystemExit(1)\n").expect("hidden");
    std::fs::create_dir_all(folder.join("sub")).expect("sub");
    std::fs::write(folder.join("sub/nested.py"), "raise SystemExit(1)\n").expect("nested");
    let env = |name: &str| {
        format!(
            "\n[plugin.{name}]\nenv = {{ LEGACY_OUT = {:?} }}\n",
            ctx.path(&format!("{name}.out")).display().to_string()
        )
    };
    let tables = format!(
        "{}{}{}\n[plugin.shot_to_task]\nenv = {{ SGDAEMON_SHOT_TO_TASK_NAME = {:?}, SGDAEMON_SHOT_TO_TASK_KEY = {:?} }}\n",
        env("log_all"),
        env("shared_state"),
        env("raises"),
        TASKS_SCRIPT.0,
        TASKS_SCRIPT.1
    );
    config(&ctx, &site, &folder, "", &tables);

    // 1..=4: other events; 5: "boom"; 6: another; 7: the Shot's status changes (shot_to_task
    // acts, and its writes are journaled after all of these, whatever the plugins' pace).
    let mut ids = site.append_events((0..4).map(|_| asset_change("description")).collect());
    let daemon = ctx.start();
    wait_for("log_all got the first four", || {
        out(&ctx, "log_all").len() == 4
    });
    let boom = site.append_events(vec![asset_change("boom")])[0];
    let after_boom = site.append_events(vec![asset_change("description")])[0];
    ids.push(boom);
    ids.push(after_boom);
    ids.extend(site.append_events(vec![shot_status(shot, "ip")]));

    wait_for("log_all got everything", || out(&ctx, "log_all").len() >= 7);
    let logged: Vec<i64> = out(&ctx, "log_all")
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(logged[..7], ids, "every event, once, in order");

    // Two callbacks sharing `args`: the second sees the first's count, event after event.
    wait_for("shared_state", || out(&ctx, "shared_state").len() >= 7);
    let counts: Vec<String> = out(&ctx, "shared_state")[..7].to_vec();
    let expected: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| format!("{id} {}", i + 1))
        .collect();
    assert_eq!(counts, expected, "args is the same object between events");

    // shot_to_task changed the Shot's Tasks through shotgun_api3, and nothing else.
    wait_for("the Tasks updated", || {
        tasks.iter().all(|t| {
            site.entity("Task", *t)
                .is_some_and(|e| e["sg_status_list"] == "ip")
        })
    });
    assert_eq!(
        site.entity("Task", other).unwrap()["sg_status_list"],
        "wtg",
        "another Shot's Task is untouched"
    );

    // raises: even ids failed (stopOnError=False) and it moved on; "boom" disabled it there.
    wait_for("raises disabled at boom", || {
        ctx.plugin_if_known("raises")
            .is_some_and(|p| p.0 == "disabled")
    });
    let (_, last, _, reason) = ctx.plugin("raises");
    assert_eq!(last, Some(boom - 1), "position kept before the fatal event");
    assert!(
        reason.unwrap().contains("boom on event"),
        "the reason names the error"
    );
    let failed: BTreeSet<i64> = ctx.failed("raises").iter().map(|f| f.0).collect();
    let even: BTreeSet<i64> = ids
        .iter()
        .copied()
        .filter(|i| i % 2 == 0 && *i < boom)
        .collect();
    assert_eq!(
        failed, even,
        "the even ids before boom are in failed_events"
    );
    let noted = out(&ctx, "raises");
    for id in ids.iter().filter(|&&i| i < boom) {
        assert!(
            noted.contains(&format!("fails_on_boom {id}")),
            "the second callback ran after the first failed on {id}: {noted:?}"
        );
    }

    // broken_import: disabled, naming the file.
    wait_for("broken_import disabled", || {
        ctx.plugin_if_known("broken_import")
            .is_some_and(|p| p.0 == "disabled")
    });
    let reason = ctx.plugin("broken_import").3.unwrap();
    assert!(
        reason.contains("broken_import.py") && reason.contains("ImportError"),
        "{reason}"
    );
    // Fixed in place (not renamed): hot reload enables it again, and it resumes where it stopped.
    std::fs::write(
        folder.join("broken_import.py"),
        format!(
            "def registerCallbacks(reg):\n    reg.registerCallback('s', 'k', note)\n\n\ndef note(sg, logger, event, args):\n    with open({:?}, 'a') as f:\n        f.write('%d\\n' % event['id'])\n",
            ctx.path("fixed.out").display().to_string()
        ),
    )
    .expect("fix the plugin");
    // Every journaled event: the seven above and the Task changes shot_to_task's updates made.
    let journal = || -> Vec<i64> {
        let db = ctx.db();
        let mut stmt = db
            .prepare("SELECT event_id FROM events ORDER BY seq")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    wait_for("the Task changes journaled", || {
        journal().len() == ids.len() + tasks.len()
    });
    wait_for("log_all got the Task changes", || {
        out(&ctx, "log_all").len() == journal().len()
    });
    let logged: Vec<i64> = out(&ctx, "log_all")
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(logged, journal(), "every event, once, in order");
    let start = std::time::Instant::now();
    while out(&ctx, "fixed").len() != journal().len() {
        assert!(
            start.elapsed() < crate::GUARD,
            "the fixed plugin did not catch up: {:?}; log:\n{}",
            out(&ctx, "fixed"),
            ctx.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let fixed: Vec<i64> = out(&ctx, "fixed")
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(
        fixed,
        journal(),
        "it got every event from where it was disabled (the start)"
    );
    assert_eq!(ctx.plugin("broken_import").0, "running");

    let log = ctx.log();
    assert!(
        !log.contains("hidden") && !log.contains("nested"),
        "hidden files and subfolders are not plugins"
    );

    // Each plugin had a process of its own.
    let db = ctx.db();
    let names: Vec<String> = db
        .prepare("SELECT name FROM plugins ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        names,
        [
            "broken_import",
            "log_all",
            "raises",
            "shared_state",
            "shot_to_task"
        ]
    );
    let pids: BTreeSet<String> = log
        .lines()
        .filter(|l| l.contains("is running") && l.contains("pid="))
        .filter_map(|l| l.split("pid=").nth(1))
        .map(|p| p.split_whitespace().next().unwrap_or_default().to_owned())
        .collect();
    assert!(pids.len() >= 4, "one process per plugin: {pids:?}");

    signal(&daemon, Signal::SIGTERM);
    let mut daemon = daemon;
    assert!(daemon.wait().expect("exit").success(), "{}", ctx.log());
}

#[test]
fn a_migrated_studio_resumes_exactly_where_shotgun_events_stopped() {
    let ctx = Ctx::new();
    let site = site();
    let ids = site.append_events((0..30).map(|_| asset_change("description")).collect());
    // The incumbent had processed up to ids[19] for `a` (still waiting for ids[16], a gap it
    // saw) and up to ids[24] for `b`.
    let folder = ctx.path("plugins");
    std::fs::create_dir_all(&folder).expect("folder");
    let log_all = root().join("sdk-python/tests/legacy_plugins/log_all.py");
    for name in ["a.py", "b.py"] {
        std::fs::copy(&log_all, folder.join(name)).expect("copy");
    }
    let conf = format!(
        "[daemon]\neventIdFile: {id}\nlogMode: 0\nlogPath: {logs}\nlogFile: sged\nlogging: 20\nfetch_interval: 1\nmax_event_batch_size: 500\n\n\
         [shotgun]\nserver: {url}\nname: sgevents\nkey: %(SG_ED_API_KEY)s\nuse_session_uuid: False\n\n\
         [plugins]\npaths: {folder}\n\n[emails]\nenabled: False\n",
        id = ctx.path("sged.id").display(),
        logs = ctx.path("logs").display(),
        url = site.url(),
        folder = folder.display(),
    );
    std::fs::write(ctx.path("shotgunEventDaemon.conf"), conf).expect("conf");
    let script = format!(
        "import pickle, datetime\nexp = datetime.datetime.now() + datetime.timedelta(minutes=5)\n\
         state = {{{folder:?}: {{'a': ({a}, {{{gap}: exp}}), 'b': ({b}, {{}})}}}}\n\
         open({out:?}, 'wb').write(pickle.dumps(state, protocol=2))",
        folder = folder.display().to_string(),
        a = ids[19],
        gap = ids[16],
        b = ids[24],
        out = ctx.path("sged.id").display().to_string(),
    );
    let status = std::process::Command::new("python3")
        .args(["-c", &script])
        .status()
        .expect("python3");
    assert!(status.success());

    let migrated = std::process::Command::new(env!("CARGO_BIN_EXE_sgevents"))
        .current_dir(ctx.path(""))
        .args([
            "migrate",
            "--conf",
            "shotgunEventDaemon.conf",
            "--id-file",
            "sged.id",
        ])
        .args(["--out", "sgevents.toml"])
        .env("SG_ED_API_KEY", KEY)
        .env_remove("SGEVENTS_CONFIG")
        .output()
        .expect("migrate runs");
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let report = String::from_utf8_lossy(&migrated.stdout);
    assert!(
        report.contains(&format!("a resumes after event {} (1 backlog id", ids[19])),
        "{report}"
    );

    // The migrated file, plus what this test needs: where the SDK is, and each plugin's output.
    let text = std::fs::read_to_string(ctx.path("sgevents.toml")).expect("toml");
    let text = text.replacen(
        "[plugins]\n",
        &format!(
            "[plugins]\nlegacy_env = {{ PYTHONPATH = {:?} }}\n",
            pythonpath()
        ),
        1,
    );
    // Each plugin's table: migrate wrote one (`inherit_env`, for the variables the file reads).
    let mut text = text;
    for n in ["a", "b"] {
        let header = format!("[plugin.{n}]\n");
        assert!(text.contains(&header), "{text}");
        text = text.replacen(
            &header,
            &format!(
                "{header}env = {{ LEGACY_OUT = {:?} }}\n",
                ctx.path(&format!("{n}.out")).display().to_string()
            ),
            1,
        );
    }
    std::fs::write(ctx.path("sgevents.toml"), text).expect("toml");

    let mut daemon = ctx
        .sgevents(&["run"])
        .env("SG_ED_API_KEY", KEY)
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(ctx.path("daemon.log"))
                .expect("log"),
        )
        .spawn()
        .expect("daemon");
    let want_a: Vec<i64> = std::iter::once(ids[16])
        .chain(ids[20..].iter().copied())
        .collect();
    let want_b: Vec<i64> = ids[25..].to_vec();
    let got =
        |n: &str| -> BTreeSet<i64> { out(&ctx, n).iter().map(|l| l.parse().unwrap()).collect() };
    let start = std::time::Instant::now();
    while got("a").len() < want_a.len() || got("b").len() < want_b.len() {
        assert!(
            start.elapsed() < crate::GUARD,
            "a: {:?}, b: {:?}; log:\n{}",
            got("a"),
            got("b"),
            ctx.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // One more poll's worth: nothing else arrives.
    site.append_events(vec![asset_change("description")]);
    wait_for("the new event", || out(&ctx, "b").len() == want_b.len() + 1);
    signal(&daemon, Signal::SIGTERM);
    assert!(daemon.wait().expect("exit").success(), "{}", ctx.log());
    let a: Vec<i64> = out(&ctx, "a").iter().map(|l| l.parse().unwrap()).collect();
    let b: Vec<i64> = out(&ctx, "b").iter().map(|l| l.parse().unwrap()).collect();
    let newest = *site.visible_ids().last().unwrap();
    let mut want_a_all = want_a.clone();
    want_a_all.push(newest);
    let mut want_b_all = want_b.clone();
    want_b_all.push(newest);
    assert_eq!(
        a.iter().copied().collect::<BTreeSet<_>>(),
        want_a_all.iter().copied().collect::<BTreeSet<_>>(),
        "a: its backlog id and everything after its last id, nothing it had done"
    );
    assert_eq!(a.len(), want_a_all.len(), "each once");
    assert_eq!(
        b, want_b_all,
        "b: everything after its last id, in order, once"
    );
}

/// A Shot's `date_time` field changed, as the site logs it.
fn delivery_change(shot: i64, new: &str, created_at: &str) -> Value {
    json!({
        "event_type": "Shotgun_Shot_Change", "attribute_name": "sg_delivery_at",
        "entity": {"type": "Shot", "id": shot, "name": format!("sh{shot}")},
        "project": {"type": "Project", "id": 70, "name": "Harbour Lights"},
        "meta": {"type": "attribute_change", "attribute_name": "sg_delivery_at", "entity_type": "Shot",
                 "entity_id": shot, "field_data_type": "date_time", "old_value": null, "new_value": new},
        "user": {"type": "HumanUser", "id": 42, "name": "Ana Reyes"}, "session_uuid": null,
        "created_at": created_at, "description": "delivery change",
    })
}

#[test]
fn an_incumbent_plugin_gets_api3s_event_in_its_local_time_and_a_real_shotgun() {
    let ctx = Ctx::new();
    let site = site();
    let script = ("delivery_dates", "delivery-key");
    site.add_script(script.0, script.1);
    let shot = site.insert_entity("Shot", json!({"code": "sh1"}));
    let tasks: Vec<i64> = ["Anim", "Comp"]
        .iter()
        .map(|c| {
            site.insert_entity(
                "Task",
                json!({"content": c, "entity": {"type": "Shot", "id": shot}}),
            )
        })
        .collect();
    let other = site.insert_entity(
        "Task",
        json!({"content": "Other", "entity": {"type": "Shot", "id": shot + 100}}),
    );
    let folder = fixtures(&ctx, &["delivery_dates.py"]);
    // The plugin's own environment: its credentials, and a local time zone that is not UTC (the
    // daemon's, the test's, stays as it is).
    let tables = format!(
        "\n[plugin.delivery_dates]\nenv = {{ TZ = \"Europe/Paris\", SGDAEMON_DELIVERY_NAME = {:?}, SGDAEMON_DELIVERY_KEY = {:?} }}\n",
        script.0, script.1
    );
    config(&ctx, &site, &folder, "", &tables);

    // Changed on a winter day (CET, +01:00); the new delivery is 22:30 UTC on a summer day,
    // which is 00:30 the next day in Paris (CEST, +02:00).
    let ids = site.append_events(vec![
        delivery_change(shot, "2026-07-14T22:30:00Z", "2024-11-02T10:00:00Z"),
        shot_status(shot, "ip"),
    ]);
    let daemon = ctx.start();
    let note = "delivery Wed 15 Jul 2026 00:30 CEST (changed 2024-11-02 11:00 CET)";
    let start = std::time::Instant::now();
    while !tasks.iter().all(|t| {
        site.entity("Task", *t)
            .is_some_and(|e| e["sg_delivery_note"] == note)
    }) {
        assert!(
            start.elapsed() < crate::GUARD,
            "the Tasks were not updated; plugin: {:?}; log:\n{}",
            ctx.plugin_if_known("delivery_dates"),
            ctx.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for task in &tasks {
        let task = site.entity("Task", *task).unwrap();
        assert_eq!(
            (
                &task["sg_delivery_at"],
                &task["sg_delivery_date"],
                &task["sg_delivery_note"]
            ),
            (
                &json!("2026-07-14T22:30:00Z"),
                &json!("2026-07-15"),
                &json!(note)
            ),
            "the datetime went back to the site in UTC, the date is Paris's: {task}"
        );
    }
    assert!(
        site.entity("Task", other).unwrap()["sg_delivery_note"].is_null(),
        "another Shot's Task is untouched"
    );
    // The plugin acknowledged the event (it did not stop on one of its checks) and went on.
    wait_for("past both events", || {
        ctx.plugin_if_known("delivery_dates")
            .is_some_and(|p| p.1 >= Some(ids[1]))
    });
    let (state, _, _, reason) = ctx.plugin("delivery_dates");
    assert_eq!(state, "running", "{reason:?}\n{}", ctx.log());
    assert!(ctx.failed("delivery_dates").is_empty());

    signal(&daemon, Signal::SIGTERM);
    let mut daemon = daemon;
    assert!(daemon.wait().expect("exit").success(), "{}", ctx.log());
}
