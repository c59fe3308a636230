"""The matcher the testing runner delivers with: the same cases as protocol/src/subscription.rs."""

from __future__ import annotations

import random
import unittest
from typing import Any, Dict

import _support
from _support import task_status_event
from sgevents import Plugin, Subscription
from sgevents._subscription import glob_match, matching_subscriptions


def bare(event_id: int, event_type: str) -> Dict[str, Any]:
    return {"id": event_id, "event_type": event_type}


def sub(name: str = "s", *event_types: str, **filters: Any) -> Subscription:
    return Subscription(name, event_types or ("*",), **filters)


def reference_glob(pattern: str, text: str) -> bool:
    """A slow but obviously right matcher: try every split at each star."""
    if not pattern:
        return not text
    if pattern[0] == "*":
        return any(reference_glob(pattern[1:], text[i:]) for i in range(len(text) + 1))
    return bool(text) and text[0] == pattern[0] and reference_glob(pattern[1:], text[1:])


class GlobTests(_support.TestCase):
    def test_globs(self) -> None:
        self.assertTrue(glob_match("*", ""))
        self.assertTrue(glob_match("*", "Shotgun_Task_Change"))
        self.assertTrue(glob_match("Shotgun_*_Change", "Shotgun_Task_Change"))
        self.assertTrue(glob_match("Shotgun_*_Change", "Shotgun_CustomEntity06_Change"))
        self.assertFalse(glob_match("Shotgun_*_Change", "Shotgun_Task_New"))
        self.assertTrue(glob_match("Shotgun_Task_*", "Shotgun_Task_"))
        self.assertTrue(glob_match("*_New", "Shotgun_Note_New"))
        self.assertTrue(glob_match("a*b*c", "a_b_b_c"))
        self.assertFalse(glob_match("a*b*c", "a_b_b_"))
        self.assertFalse(glob_match("Shotgun_Task_Change", "shotgun_task_change"))
        self.assertTrue(glob_match("**", "x"))
        self.assertFalse(glob_match("", "x"))
        self.assertTrue(glob_match("", ""))

    def test_glob_agrees_with_the_reference(self) -> None:
        rng = random.Random(20261102)
        for _ in range(3000):
            pattern = "".join(rng.choice("ab*_") for _ in range(rng.randint(0, 8)))
            text = "".join(rng.choice("ab_") for _ in range(rng.randint(0, 10)))
            self.assertEqual(glob_match(pattern, text), reference_glob(pattern, text), (pattern, text))

    def test_a_pattern_without_stars_is_equality(self) -> None:
        rng = random.Random(7)
        for _ in range(500):
            a = "".join(rng.choice("Ab_") for _ in range(rng.randint(0, 6)))
            b = "".join(rng.choice("Ab_") for _ in range(rng.randint(0, 6)))
            self.assertTrue(glob_match(a, a))
            self.assertEqual(glob_match(a, b), a == b)


class MatchTests(_support.TestCase):
    def test_event_types_and_attributes(self) -> None:
        ev = task_status_event(1)
        self.assertTrue(sub("s", "Shotgun_Task_Change").matches(ev))
        self.assertTrue(sub("s", "Shotgun_Task_Change", attributes=["sg_status_list"]).matches(ev))
        self.assertFalse(
            sub("s", "Shotgun_Task_Change", attributes=["sg_status"]).matches(ev),
            "attributes are exact names, not substrings",
        )
        self.assertFalse(sub("s", "Shotgun_Task_Change", attributes=[]).matches(ev), "an empty list matches nothing")
        self.assertFalse(sub("s", "Shotgun_Shot_Change").matches(ev))

    def test_an_absent_attribute_list_matches_events_without_attribute(self) -> None:
        ev = bare(2, "Shotgun_Task_New")
        self.assertTrue(sub("s", "Shotgun_Task_New").matches(ev))
        self.assertFalse(sub("s", "*", attributes=["sg_status_list"]).matches(ev))

    def test_entity_types_and_projects(self) -> None:
        ev = task_status_event(3)
        self.assertTrue(sub(entity_types=["Task"]).matches(ev))
        self.assertFalse(sub(entity_types=["Shot"]).matches(ev))
        self.assertTrue(sub(project_ids=[1, 66]).matches(ev))
        self.assertFalse(sub(project_ids=[1]).matches(ev))
        self.assertFalse(sub(project_ids=[1]).matches(bare(4, "Shotgun_User_Login")), "site-level events have no project")

    def test_retired_entities_take_their_type_from_meta(self) -> None:
        ev = {
            "id": 8, "event_type": "Shotgun_Task_Retirement", "entity": None,
            "meta": {"type": "entity_retirement", "entity_type": "Task", "entity_id": 67531},
        }
        self.assertTrue(sub(entity_types=["Task"]).matches(ev))
        self.assertFalse(sub(entity_types=["Task"]).matches(bare(9, "Shotgun_Task_Retirement")))

    def test_a_null_event_type_is_empty(self) -> None:
        ev = {"id": 7, "event_type": None}
        self.assertTrue(sub("s", "*").matches(ev))
        self.assertFalse(sub("s", "Shotgun_*").matches(ev))

    def test_skip_transient(self) -> None:
        ev = task_status_event(5, meta={"type": "attribute_change", "is_transient": True})
        self.assertTrue(sub().matches(ev))
        self.assertFalse(sub(skip_transient=True).matches(ev))
        ev["meta"] = {"type": "attribute_change", "is_transient": False}
        self.assertTrue(sub(skip_transient=True).matches(ev))

    def test_matching_keeps_registration_order(self) -> None:
        subs = [sub("b", "*"), sub("never", "Shotgun_Shot_New"), sub("a", "Shotgun_Task_*")]
        self.assertEqual(matching_subscriptions(subs, task_status_event(6)), ["b", "a"])

    def test_filters_are_a_conjunction(self) -> None:
        rng = random.Random(99)
        for _ in range(2000):
            attr = rng.choice([None, "a", "b", "ab"])
            listed = rng.choice([None, [], ["a"], ["b", "c"], ["ab", "a"]])
            project = rng.choice([None, 0, 1, 2])
            ids = rng.choice([None, [], [1], [0, 2]])
            ev: Dict[str, Any] = {"id": 1, "event_type": "Shotgun_Task_Change", "attribute_name": attr}
            if project is not None:
                ev["project"] = {"type": "Project", "id": project, "name": "p"}
            s = Subscription("s", ["Shotgun_*"], attributes=listed, project_ids=ids)
            attr_ok = listed is None or (attr is not None and attr in listed)
            project_ok = ids is None or (project is not None and project in ids)
            self.assertEqual(s.matches(ev), attr_ok and project_ok, (attr, listed, project, ids))


class SubscriptionTests(_support.TestCase):
    def test_wire_form_leaves_out_absent_filters(self) -> None:
        self.assertEqual(sub("a", "x").to_wire(), {"name": "a", "event_types": ["x"]})
        full = Subscription(
            "on_status", ["Shotgun_Task_Change"], attributes=["sg_status_list"],
            entity_types=["Task"], project_ids=[66], skip_transient=True,
        )
        wire = full.to_wire()
        self.assertEqual(
            wire,
            {
                "name": "on_status", "event_types": ["Shotgun_Task_Change"], "attributes": ["sg_status_list"],
                "entity_types": ["Task"], "project_ids": [66], "skip_transient": True,
            },
        )
        self.assertEqual(Subscription.from_wire(wire), full)

    def test_a_string_instead_of_a_list_is_refused_with_a_hint(self) -> None:
        with self.assertRaises(TypeError) as caught:
            Subscription("a", ["Shotgun_Task_Change"], attributes="sg_status_list")
        self.assertIn("attributes=['sg_status_list']", str(caught.exception))
        with self.assertRaises(TypeError):
            Subscription("a", "Shotgun_Task_Change")
        with self.assertRaises(TypeError):
            Plugin().on("Shotgun_Task_Change", attributes="sg_status_list")(lambda ctx, event: None)
        with self.assertRaises(TypeError):
            Plugin().subscribe(lambda ctx, event: None, "Shotgun_Task_Change")
        with self.assertRaises(TypeError):
            Subscription("a", ["*"], project_ids=["66"])  # type: ignore[list-item]
        with self.assertRaises(TypeError):
            Subscription("a", ["*"], skip_transient=1)  # type: ignore[arg-type]


if __name__ == "__main__":
    unittest.main()
