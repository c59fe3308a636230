"""The legacy host gives callbacks the event `shotgun_api3` gave shotgunEvents: `sgevents._api3`
checked against the real library's own `_transform_inbound` and `_parse_records` on the same JSON,
in time zones the tests set (never UTC by accident), and the host's `event` and `sg` as a plugin
sees them.

The real `shotgun_api3` is the one the Rust tests install into `target/pydeps/` (the folder named
by `$SGEVENTS_SHOTGUN_API3_DIR`, else found under the repository's `target/pydeps/`); without it the
tests that compare with it are skipped, saying how to install it.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import sys
import tempfile
import textwrap
import time
import unittest
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import _support
from _support import REPO, shot_new_event, task_status_event
from sgevents import _api3
from sgevents._api3 import api3_event
from sgevents.legacy import legacy_plugin
from sgevents.testing import PluginRunner, RunResult


def _api3_dir() -> Optional[Path]:
    named = os.environ.get("SGEVENTS_SHOTGUN_API3_DIR")
    if named:
        return Path(named)
    found = sorted((REPO / "target" / "pydeps").glob("shotgun_api3-*/shotgun_api3/__init__.py"))
    return found[-1].parent.parent if found else None


API3_DIR = _api3_dir()
INSTALL = "python3 -m pip install --target target/pydeps/shotgun_api3-3.10.3 shotgun_api3==3.10.3"

ZONES = ["Europe/Paris", "America/Los_Angeles", "Australia/Sydney"]
"""Zones with daylight-saving time north and south, none of them UTC."""


class ZoneTestCase(_support.TestCase):
    """Runs each test in a time zone of its choice (`TZ` and `time.tzset`), with the real
    `shotgun_api3` importable; restores the zone, `sys.path` and `sys.modules` afterwards."""

    def setUp(self) -> None:
        super().setUp()
        saved_tz = os.environ.get("TZ")
        saved_path = list(sys.path)
        saved_modules = set(sys.modules)
        saved_api3 = sys.modules.pop("shotgun_api3", None)

        def restore() -> None:
            if saved_tz is None:
                os.environ.pop("TZ", None)
            else:
                os.environ["TZ"] = saved_tz
            time.tzset()
            sys.path[:] = saved_path
            for name in set(sys.modules) - saved_modules:
                del sys.modules[name]
            if saved_api3 is not None:
                sys.modules["shotgun_api3"] = saved_api3

        self.addCleanup(restore)

    def zone(self, name: str) -> None:
        """Makes `name` the local zone; a later `import shotgun_api3` computes its offsets in it."""
        os.environ["TZ"] = name
        time.tzset()
        self.assertNotEqual(time.tzname, ("UTC", "UTC"), f"the zone {name} is unknown to this system")
        for module in [m for m in sys.modules if m == "shotgun_api3" or m.startswith("shotgun_api3.")]:
            del sys.modules[module]

    def real_api3(self) -> Any:
        """The real `shotgun_api3`, imported fresh in the current zone."""
        if API3_DIR is None:
            self.skipTest(f"the real shotgun_api3 is not installed; run `{INSTALL}` at the repository's root")
        sys.path.insert(0, str(API3_DIR))
        import shotgun_api3

        self.assertEqual(Path(shotgun_api3.__file__).parent.parent, API3_DIR)
        return shotgun_api3


# What the site answers for `find("EventLogEntry", ...)`, one record each: the same JSON the
# daemon journals (it sends it without `type`, with `description`, and a null `event_type` as "").
RECORDS: List[Dict[str, Any]] = [
    {
        "type": "EventLogEntry", "id": 2011531, "event_type": "Shotgun_Shot_Change",
        "attribute_name": "sg_delivery_at",
        "meta": {"type": "attribute_change", "attribute_name": "sg_delivery_at", "entity_type": "Shot",
                 "entity_id": 1246, "field_data_type": "date_time",
                 "old_value": "2026-01-15T23:30:00Z", "new_value": "2026-07-14T18:30:00Z"},
        "entity": {"type": "Shot", "id": 1246, "name": "010_0010"},
        "user": {"type": "HumanUser", "id": 42, "name": "Ana Reyes"},
        "project": {"type": "Project", "id": 66, "name": "Testing Sandbox"},
        "session_uuid": "5a1d49b0-0c69-11e0-a24c-003048d17544",
        "created_at": "2026-11-02T10:15:31Z",
    },
    {
        # Around the switch to summer time in Paris (2026-03-29 01:00 UTC) and in Los Angeles
        # (2026-03-08 10:00 UTC); at any depth; other forms of dates stay strings.
        "type": "EventLogEntry", "id": 2011532, "event_type": "Shotgun_Task_Change",
        "attribute_name": "sg_notes&lt;2&gt;",
        "meta": {"type": "attribute_change", "field_data_type": "date_time",
                 "old_value": "2026-03-29T00:59:59Z", "new_value": "2026-03-29T01:00:00Z",
                 "nested": [{"at": ["2026-03-08T09:59:59Z", "2026-03-08T10:00:00Z"]}, [], {}, "", 0, False],
                 "retirement_date": "2015-07-13 22:32:35 UTC", "date": "2026-07-14",
                 "not_a_date": "2026-02-30T10:00:00Z", "almost": "2026-07-14T18:30:00",
                 "compact": "20260714T183000Z1234", "text": "a &lt; b", "number": 20260714},
        "entity": None, "user": None, "project": None, "session_uuid": None,
        "created_at": "2026-10-25T00:30:00Z",
    },
    {
        # A null event_type (ShotGrid writes some), a null created_at, meta not a dict.
        "type": "EventLogEntry", "id": 2011533, "event_type": None, "attribute_name": None,
        "meta": ["2026-12-31T23:59:59Z", None], "entity": None, "user": None, "project": None,
        "session_uuid": None, "created_at": None,
    },
    {
        # A local file link at the top of meta gets api3's `local_path` and `url`.
        "type": "EventLogEntry", "id": 2011534, "event_type": "Shotgun_Attachment_Change",
        "attribute_name": "this_file",
        "meta": {"link_type": "local", "local_path_linux": "/mnt/show/a.exr", "local_path_mac": "/Volumes/show/a.exr",
                 "local_path_windows": "S:\\a.exr", "name": "a.exr"},
        "entity": {"type": "Attachment", "id": 9, "name": "a.exr"},
        "user": {"type": "ApiUser", "id": 5, "name": "ingest_bot"}, "project": None,
        "session_uuid": None, "created_at": "2026-06-21T12:00:00Z",
    },
]


def flat(record: Dict[str, Any]) -> Dict[str, Any]:
    """The record as the daemon sends it to a plugin."""
    event = {key: value for key, value in record.items() if key != "type"}
    event["event_type"] = event["event_type"] or ""
    event["description"] = "the site's sentence"
    return event


def by_api3(shotgun_api3: Any, record: Dict[str, Any]) -> Dict[str, Any]:
    """What `find` returns for `record`: the answer's JSON through api3's own functions."""
    sg = shotgun_api3.Shotgun("https://studio.example.com", "script", "key", connect=False)
    answer = json.loads(json.dumps({"results": {"entities": [record]}}))
    entities = sg._transform_inbound(answer)["results"]["entities"]
    (result,) = sg._parse_records(entities)
    return dict(result)


def walk(value: Any, path: str = "event") -> Iterator[Any]:
    """(path, value) for every value at any depth."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, f"{path}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from walk(item, f"{path}[{index}]")


class Api3ConversionTests(ZoneTestCase):
    def assert_same(self, ours: Any, theirs: Any, same_tz: bool) -> None:
        """Equal, key order included, with the same type everywhere, and every datetime at the
        same wall-clock time, offset and zone name (and the same `tzinfo` object if `same_tz`)."""
        self.assertEqual(ours, theirs)
        self.assertEqual([path for path, _ in walk(ours)], [path for path, _ in walk(theirs)], "key order")
        pairs = list(zip(walk(ours), walk(theirs)))
        self.assertEqual(len(pairs), len(list(walk(theirs))))
        for (path, a), (_, b) in pairs:
            self.assertIs(type(a), type(b), path)
            if isinstance(a, datetime.datetime):
                self.assertEqual(
                    (a.isoformat(), a.tzname(), a.utcoffset(), a.dst()),
                    (b.isoformat(), b.tzname(), b.utcoffset(), b.dst()),
                    path,
                )
                self.assertEqual(a.strftime("%Y-%m-%d %H:%M:%S %Z %z"), b.strftime("%Y-%m-%d %H:%M:%S %Z %z"), path)
                if same_tz:
                    self.assertIs(a.tzinfo, b.tzinfo, path)

    def test_the_event_is_what_api3_returned_with_its_zone(self) -> None:
        for zone in ZONES:
            with self.subTest(zone=zone):
                self.zone(zone)
                shotgun_api3 = self.real_api3()
                for record in RECORDS:
                    theirs = by_api3(shotgun_api3, record)
                    self.assert_same(api3_event(flat(record), shotgun_api3.sg_timezone.local), theirs, same_tz=True)

    def test_the_copy_of_api3s_local_zone_converts_the_same(self) -> None:
        for zone in ZONES:
            with self.subTest(zone=zone):
                self.zone(zone)
                shotgun_api3 = self.real_api3()
                ours = _api3.LocalTimezone()
                for record in RECORDS:
                    self.assert_same(api3_event(flat(record), ours), by_api3(shotgun_api3, record), same_tz=False)

    def test_every_hour_of_two_years_converts_as_api3_does(self) -> None:
        for zone in ZONES:
            with self.subTest(zone=zone):
                self.zone(zone)
                shotgun_api3 = self.real_api3()
                sg = shotgun_api3.Shotgun("https://studio.example.com", "script", "key", connect=False)
                ours = _api3.LocalTimezone()
                start = datetime.datetime(2025, 1, 1)
                stamps = [(start + datetime.timedelta(hours=n)).strftime("%Y-%m-%dT%H:%M:%SZ") for n in range(2 * 365 * 24)]
                theirs = sg._transform_inbound(stamps)
                converted = _api3.transform_inbound(stamps, ours)
                for stamp, a, b in zip(stamps, converted, theirs):
                    if (a.isoformat(), a.tzname()) != (b.isoformat(), b.tzname()):
                        self.fail(f"{stamp} in {zone}: {a.isoformat()} {a.tzname()} != {b.isoformat()} {b.tzname()}")

    def test_without_convert_datetimes_to_utc_the_datetimes_are_naive_utc(self) -> None:
        self.zone("Europe/Paris")
        shotgun_api3 = self.real_api3()
        sg = shotgun_api3.Shotgun("https://studio.example.com", "script", "key", convert_datetimes_to_utc=False, connect=False)
        for record in RECORDS:
            self.assert_same(_api3.transform_inbound(record, None), sg._transform_inbound(copy.deepcopy(record)), same_tz=False)

    def test_the_shape_in_words(self) -> None:
        self.zone("Europe/Paris")
        event = api3_event(flat(RECORDS[0]), _api3.LocalTimezone())
        self.assertEqual(
            list(event),
            ["type", "id", "event_type", "attribute_name", "meta", "entity", "user", "project", "session_uuid", "created_at"],
        )
        self.assertEqual(event["type"], "EventLogEntry")
        self.assertEqual(event["created_at"].strftime("%Y-%m-%d %H:%M:%S %Z%z"), "2026-11-02 11:15:31 CET+0100")
        self.assertEqual(event["meta"]["new_value"].strftime("%Y-%m-%d %H:%M %Z%z"), "2026-07-14 20:30 CEST+0200")
        self.assertEqual(event["meta"]["old_value"].strftime("%Y-%m-%d %H:%M %Z"), "2026-01-16 00:30 CET")
        self.assertIsNone(api3_event(flat(RECORDS[2]))["event_type"])
        self.assertEqual(flat(RECORDS[2])["event_type"], "", "the daemon's shape has no null event_type")

    def test_a_created_at_in_another_iso_form_is_a_datetime_too(self) -> None:
        self.zone("Europe/Paris")
        tz = _api3.LocalTimezone()
        for value in ("2026-11-02T10:15:31+00:00", "2026-11-02T11:15:31+01:00", "2026-11-02T10:15:31", "2026-11-02 10:15:31Z"):
            with self.subTest(value=value):
                created = api3_event(dict(flat(RECORDS[0]), created_at=value), tz)["created_at"]
                self.assertEqual(created.strftime("%Y-%m-%d %H:%M:%S %Z"), "2026-11-02 11:15:31 CET")
        self.assertEqual(api3_event(dict(flat(RECORDS[0]), created_at="yesterday"), tz)["created_at"], "yesterday")
        # Nested strings keep api3's rule exactly.
        meta = api3_event(dict(flat(RECORDS[0]), meta={"at": "2026-11-02T10:15:31+00:00"}), tz)["meta"]
        self.assertEqual(meta, {"at": "2026-11-02T10:15:31+00:00"})

    def test_the_flat_event_is_not_changed(self) -> None:
        event = flat(RECORDS[3])
        before = copy.deepcopy(event)
        api3_event(event)
        self.assertEqual(event, before)


class HostShapeTests(ZoneTestCase):
    """The host, in process: what a callback gets."""

    def setUp(self) -> None:
        super().setUp()
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        self.dir = Path(directory.name)

    def run_plugin(self, body: str, events: List[Dict[str, Any]], name: str) -> RunResult:
        path = self.dir / f"{name}.py"
        path.write_text('"""A test plugin."""\n' + textwrap.dedent(body), encoding="utf-8")
        config = {"site_url": "https://studio.example.com", "use_session_uuid": True}
        return PluginRunner(legacy_plugin(str(path)), plugin_name=name).run(events, config=config)

    PLUGIN = """
        import datetime
        SEEN = []
        def registerCallbacks(reg):
            reg.registerCallback("script", "key", first, {"Shotgun_Shot_Change": ["sg_delivery_at"], "Shotgun_Task_Change": None})
            reg.registerCallback("script", "key", second, {"*": None})
        def first(sg, logger, event, args):
            SEEN.append(("first", event, sg))
            event["touched_by_first"] = True
        def second(sg, logger, event, args):
            SEEN.append(("second", event, sg))
            if event["attribute_name"] == "sg_delivery_at":
                logger.info("created %s, new value %s",
                            event["created_at"].strftime("%Y-%m-%d %H:%M %Z"),
                            event["meta"]["new_value"].strftime("%Y-%m-%d %H:%M %Z"))
    """

    def test_callbacks_get_api3s_event_and_a_shotgun_that_has_not_connected(self) -> None:
        self.zone("Europe/Paris")
        shotgun_api3 = self.real_api3()
        result = self.run_plugin(self.PLUGIN, [flat(RECORDS[0]), task_status_event(7)], name="shape")
        self.assertEqual([a["type"] for a in result.answers], ["ack", "ack"], result.logs)
        self.assertIn(("info", "created 2026-11-02 11:15 CET, new value 2026-07-14 20:30 CEST"), result.logs)
        seen = sys.modules["shape"].SEEN
        self.assertEqual([name for name, _, _ in seen], ["first", "second", "first", "second"])
        (_, event, sg), (_, same, _) = seen[:2]
        self.assertIs(event, same, "every callback gets the same dict, as in shotgunEvents")
        self.assertTrue(same["touched_by_first"])
        del event["touched_by_first"]
        self.assertEqual(event, by_api3(shotgun_api3, RECORDS[0]))
        self.assertIs(event["created_at"].tzinfo, shotgun_api3.sg_timezone.local)
        self.assertIs(seen[2][1]["created_at"].tzinfo, shotgun_api3.sg_timezone.local)
        self.assertEqual(seen[2][1]["type"], "EventLogEntry")
        self.assertNotIn("description", seen[2][1])
        # `sg` passes isinstance without connecting (nothing listens at studio.example.com).
        self.assertIsInstance(sg, shotgun_api3.Shotgun)
        self.assertIs(sg.__class__, shotgun_api3.Shotgun)
        self.assertIn("not connected yet", repr(sg))

    def test_sg_becomes_a_real_shotgun_on_first_use(self) -> None:
        self.zone("Europe/Paris")
        shotgun_api3 = self.real_api3()
        result = self.run_plugin("""
            def registerCallbacks(reg):
                reg.registerCallback("script", "key", cb)
            def cb(sg, logger, event, args):
                logger.info("base_url %s, config.script_name %s, session %s", sg.base_url, sg.config.script_name, sg.config.session_uuid)
                logger.info("find is %r", sg.find.__func__.__qualname__)
                global SG
                SG = sg
        """, [dict(shot_new_event(1), session_uuid="uuid-1")], name="real_sg")
        self.assertEqual(result.answer(1)["type"], "ack", result.logs)
        self.assertIn(("info", "base_url https://studio.example.com, config.script_name script, session uuid-1"), result.logs)
        self.assertIn(("info", "find is 'Shotgun.find'"), result.logs)
        sg = sys.modules["real_sg"].SG
        self.assertIn("(connected)", repr(sg))
        self.assertIs(sg.__class__, shotgun_api3.Shotgun)
        self.assertIsInstance(sg, shotgun_api3.Shotgun)

    def test_without_shotgun_api3_the_event_is_converted_all_the_same(self) -> None:
        self.zone("Europe/Paris")
        sys.modules["shotgun_api3"] = None  # type: ignore[assignment]  # `import` now fails
        result = self.run_plugin(self.PLUGIN, [flat(RECORDS[0])], name="no_api3")
        self.assertEqual(result.answer(2011531)["type"], "ack", result.logs)
        self.assertIn(("info", "created 2026-11-02 11:15 CET, new value 2026-07-14 20:30 CEST"), result.logs)
        _, event, sg = sys.modules["no_api3"].SEEN[0]
        self.assertIsInstance(event["created_at"].tzinfo, _api3.LocalTimezone)
        self.assertIn("not connected yet", repr(sg))

    def test_a_null_event_type_arrives_as_none_and_matches_only_star(self) -> None:
        self.zone("Europe/Paris")
        record = flat(RECORDS[2])
        result = self.run_plugin(self.PLUGIN, [record], name="null_type")
        self.assertEqual(result.answer(2011533)["type"], "ack", result.logs)
        seen = sys.modules["null_type"].SEEN
        self.assertEqual([name for name, _, _ in seen], ["second"])
        self.assertIsNone(seen[0][1]["event_type"])


if __name__ == "__main__":
    unittest.main()
