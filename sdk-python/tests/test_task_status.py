"""plugins/python/task_status.py through sgevents.testing: the ledger in a temporary directory,
and the parent roll-up against a fake ShotGrid connection."""

from __future__ import annotations

import importlib.util
import json
import tempfile
import unittest
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, List, Optional, Tuple

import _support
from _support import REPO, task_status_event
from sgevents.testing import Delivery, PluginRunner, RunResult

CREDS = {
    "SGEVENTS_SITE_URL": "https://studio.shotgrid.autodesk.com",
    "SGEVENTS_SCRIPT_NAME": "task_status",
    "SGEVENTS_SCRIPT_KEY": "s3cr3t",
}


def load_plugin() -> ModuleType:
    path = REPO / "plugins" / "python" / "task_status.py"
    spec = importlib.util.spec_from_file_location("task_status_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TASK_STATUS = load_plugin()


class FakeShotgrid:
    """The few `shotgun_api3.Shotgun` calls the plugin makes, over in-memory tables."""

    def __init__(self, tasks: Dict[int, Dict[str, Any]], entities: Dict[Tuple[str, int], Dict[str, Any]]) -> None:
        self.tasks = tasks
        self.entities = entities
        self.updates: List[Tuple[str, int, Dict[str, Any]]] = []
        self.fail: Optional[Exception] = None

    def _check(self) -> None:
        if self.fail is not None:
            raise self.fail

    def find_one(self, entity_type: str, filters: List[List[Any]], fields: List[str]) -> Optional[Dict[str, Any]]:
        self._check()
        [[field, op, value]] = filters
        assert (field, op) == ("id", "is")
        row = self.tasks.get(value) if entity_type == "Task" else self.entities.get((entity_type, value))
        return None if row is None else {"type": entity_type, "id": value, **{f: row.get(f) for f in fields}}

    def find(self, entity_type: str, filters: List[List[Any]], fields: List[str]) -> List[Dict[str, Any]]:
        self._check()
        assert entity_type == "Task"
        [[field, op, link]] = filters
        assert (field, op) == ("entity", "is")
        return [
            {"type": "Task", "id": tid, **{f: row.get(f) for f in fields}}
            for tid, row in self.tasks.items()
            if row.get("entity") and (row["entity"]["type"], row["entity"]["id"]) == (link["type"], link["id"])
        ]

    def update(self, entity_type: str, entity_id: int, data: Dict[str, Any]) -> Dict[str, Any]:
        self._check()
        self.updates.append((entity_type, entity_id, data))
        self.entities[(entity_type, entity_id)].update(data)
        return {"type": entity_type, "id": entity_id, **data}


class Untouchable:
    """A connection the test says must not be used."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"ctx.sg.{name} was used")


SHOT = {"type": "Shot", "id": 1246, "name": "010_0010"}


def shotgrid(anim: str = "fin", light: str = "fin", comp: str = "na", shot_status: str = "ip") -> FakeShotgrid:
    return FakeShotgrid(
        tasks={
            67378: {"content": "Anim", "sg_status_list": anim, "entity": SHOT},
            67379: {"content": "Light", "sg_status_list": light, "entity": SHOT},
            67380: {"content": "Comp", "sg_status_list": comp, "entity": SHOT},
            70000: {"content": "Orphan", "sg_status_list": "fin", "entity": None},
        },
        entities={("Shot", 1246): {"sg_status_list": shot_status}},
    )


class LedgerTests(_support.TestCase):
    def setUp(self) -> None:
        super().setUp()
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        self.ledger = Path(directory.name) / "ledger"

    def run_plugin(self, events: List[Any], **config: Any) -> RunResult:
        return PluginRunner(TASK_STATUS.plugin, plugin_name="task-status", sg=Untouchable()).run(
            events, config={"ledger_dir": str(self.ledger), **config}
        )

    def lines(self, day: str) -> List[Dict[str, Any]]:
        return [json.loads(line) for line in (self.ledger / f"{day}.jsonl").read_text(encoding="utf-8").splitlines()]

    def test_transitions_are_appended_per_day_once_each(self) -> None:
        first = task_status_event(2011531, "wtg", "ip", created_at="2026-11-02T10:15:31Z")
        late = task_status_event(2011532, "ip", "rev", created_at="2026-11-03T00:30:00+02:00")  # still the 2nd in UTC
        next_day = task_status_event(2011533, "rev", "ip", created_at="2026-11-03T09:00:00Z")
        transient = task_status_event(2011534, meta={"type": "attribute_change", "is_transient": True})
        other_field = dict(task_status_event(2011535), attribute_name="due_date")
        result = self.run_plugin([first, Delivery(first, attempt=2), late, next_day, transient, other_field])

        self.assertEqual(result.answers, [{"type": "ack", "event_id": i} for i in (2011531, 2011531, 2011532, 2011533)])
        self.assertEqual(result.undelivered, [2011534, 2011535])
        self.assertEqual(sorted(p.name for p in self.ledger.iterdir()), ["2026-11-02.jsonl", "2026-11-03.jsonl"])
        self.assertEqual(
            self.lines("2026-11-02"),
            [
                {
                    "event_id": 2011531,
                    "time": "2026-11-02T10:15:31Z",
                    "task": {"type": "Task", "id": 67378, "name": "Anim"},
                    "old_status": "wtg",
                    "new_status": "ip",
                    "user": {"type": "HumanUser", "id": 42, "name": "Ana Reyes"},
                    "project": {"type": "Project", "id": 66, "name": "Testing Sandbox"},
                },
                {
                    "event_id": 2011532,
                    "time": "2026-11-03T00:30:00+02:00",
                    "task": {"type": "Task", "id": 67378, "name": "Anim"},
                    "old_status": "ip",
                    "new_status": "rev",
                    "user": {"type": "HumanUser", "id": 42, "name": "Ana Reyes"},
                    "project": {"type": "Project", "id": 66, "name": "Testing Sandbox"},
                },
            ],
        )
        self.assertEqual([e["event_id"] for e in self.lines("2026-11-03")], [2011533])
        self.assertTrue(any("already in" in m and "2011531" in m for _, m in result.logs), result.logs)

    def test_a_torn_last_line_does_not_swallow_the_next_one(self) -> None:
        self.ledger.mkdir()
        (self.ledger / "2026-11-02.jsonl").write_text('{"event_id": 1}\n{"event_id": 2, "tas', encoding="utf-8")
        self.run_plugin([task_status_event(2011531)])
        lines = (self.ledger / "2026-11-02.jsonl").read_text(encoding="utf-8").splitlines()
        self.assertEqual(json.loads(lines[-1])["event_id"], 2011531)
        self.assertEqual(len(lines), 3)

    def test_a_final_status_is_logged_and_left_alone_without_update_parent(self) -> None:
        result = self.run_plugin([task_status_event(1, "rev", "fin")])
        self.assertEqual(result.answers, [{"type": "ack", "event_id": 1}])
        self.assertIn(("info", "task 67378 (Anim) is final (fin)"), result.logs)

    def test_the_final_status_is_configurable(self) -> None:
        result = self.run_plugin([task_status_event(1, "rev", "apr")], final_status="apr")
        self.assertIn(("info", "task 67378 (Anim) is final (apr)"), result.logs)


class ParentTests(_support.TestCase):
    def setUp(self) -> None:
        super().setUp()
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        self.config = {"ledger_dir": directory.name, "update_parent": True}

    def run_plugin(self, sg: Any, event: Dict[str, Any], environ: Dict[str, str] = CREDS) -> RunResult:
        return PluginRunner(TASK_STATUS.plugin, plugin_name="task-status", environ=environ, sg=sg).run(
            [event], config=self.config
        )

    def test_the_parent_becomes_final_when_all_its_tasks_are(self) -> None:
        sg = shotgrid(anim="fin", light="fin", comp="na")
        result = self.run_plugin(sg, task_status_event(5, "rev", "fin", task_id=67378))
        self.assertEqual(result.answer(5), {"type": "ack", "event_id": 5})
        self.assertEqual(sg.updates, [("Shot", 1246, {"sg_status_list": "fin"})])
        self.assertIn(("info", "Shot 1246 is now fin: all its tasks are fin"), result.logs)

    def test_the_parent_keeps_its_status_while_a_task_is_not_final(self) -> None:
        sg = shotgrid(anim="fin", light="ip")
        result = self.run_plugin(sg, task_status_event(6, "rev", "fin"))
        self.assertEqual(result.answer(6)["type"], "ack")
        self.assertEqual(sg.updates, [])
        self.assertIn(("info", "Shot 1246 keeps its status: 1 of its 3 tasks are not fin yet"), result.logs)

    def test_a_parent_already_final_is_not_updated_again(self) -> None:
        sg = shotgrid(shot_status="fin")
        self.run_plugin(sg, task_status_event(7, "rev", "fin"))
        self.assertEqual(sg.updates, [])

    def test_a_task_without_parent_is_a_term(self) -> None:
        result = self.run_plugin(shotgrid(), task_status_event(8, "rev", "fin", task_id=70000))
        self.assertEqual(
            result.answer(8),
            {"type": "term", "event_id": 8, "error": "task 70000 has no parent entity, so there is no status to roll up"},
        )

    def test_shotgrid_errors_are_retried_later(self) -> None:
        sg = shotgrid()
        sg.fail = ConnectionError("connection reset by peer")
        result = self.run_plugin(sg, task_status_event(9, "rev", "fin"))
        self.assertEqual(
            result.answer(9),
            {"type": "nack", "event_id": 9, "error": "shotgrid request failed: read Task 67378: connection reset by peer",
             "retry_after_ms": 60000},
        )
        self.config["retry_after_s"] = 5
        self.assertEqual(self.run_plugin(sg, task_status_event(9, "rev", "fin")).answer(9)["retry_after_ms"], 5000)

    def test_without_credentials_the_parent_is_left_alone(self) -> None:
        result = self.run_plugin(Untouchable(), task_status_event(10, "rev", "fin"), environ={})
        self.assertEqual(result.answer(10)["type"], "ack")
        self.assertIn(
            ("warn", "update_parent is on but the plugin has no ShotGrid credentials; not updating the parent of task 67378"),
            result.logs,
        )

    def test_statuses_that_are_not_final_do_nothing(self) -> None:
        result = self.run_plugin(Untouchable(), task_status_event(11, "wtg", "ip"))
        self.assertEqual(result.answer(11)["type"], "ack")


if __name__ == "__main__":
    unittest.main()
