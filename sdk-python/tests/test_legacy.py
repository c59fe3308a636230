"""The shotgunEvents plugin host (`sgevents.legacy`): the matchEvents translation table, how
callbacks are called (order, `args`, loggers, `sg`), stopOnError, load failures, setEmails, and the
real `python3 -m sgevents.legacy` process running the fixtures in `tests/legacy_plugins/`."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import _support
from _support import Child, TESTS, child_env, shot_new_event, task_status_event
from sgevents import Plugin, Subscription
from sgevents.legacy import MatchEvents, emails_to_alerts, legacy_plugin, match_events_filters
from sgevents.testing import PluginRunner, RunResult, legacy_runner

LEGACY_PLUGINS = TESTS / "legacy_plugins"
FAKE_SHOTGUN = TESTS / "fake_shotgun"


def ack(event_id: int) -> Dict[str, Any]:
    return {"type": "ack", "event_id": event_id}


def change(event_id: int, attribute: Optional[str], event_type: str = "Shotgun_Task_Change") -> Dict[str, Any]:
    """A `_Change` event on `attribute` (None: no attribute)."""
    return task_status_event(event_id, event_type=event_type, attribute_name=attribute)


def new_shot(event_id: int = 2011532) -> Dict[str, Any]:
    return shot_new_event(event_id)


# ---------------------------------------------------------------------------------------------
# matchEvents


TASK_STATUS = change(1, "sg_status_list")
TASK_STATUS_SHORT = change(2, "status")  # a substring of "sg_status_list"
TASK_CONTENT = change(3, "content")
SHOT_NEW = new_shot(4)
SHOT_STATUS = change(5, "sg_status_list", "Shotgun_Shot_Change")
TASK_RETIREMENT = change(6, None, "Shotgun_Task_Retirement")
ALL_EVENTS = [TASK_STATUS, TASK_STATUS_SHORT, TASK_CONTENT, SHOT_NEW, SHOT_STATUS, TASK_RETIREMENT]

# (what the rule is, matchEvents, subscription filters, ids of ALL_EVENTS that match)
TABLE: List[Tuple[str, Any, List[Any], List[int]]] = [
    ("rule 1: None matches every event", None, [(("*",), None)], [1, 2, 3, 4, 5, 6]),
    ("rule 1: {} matches every event", {}, [(("*",), None)], [1, 2, 3, 4, 5, 6]),
    ('rule 2: a "*" key with None matches every event', {"*": None}, [(("*",), None)], [1, 2, 3, 4, 5, 6]),
    (
        'rule 2: a "*" key applies its value to every event type',
        {"*": ["sg_status_list"]},
        [(("*",), ("sg_status_list",))],
        [1, 5],
    ),
    (
        'rule 2: with a "*" key, every other key is ignored',
        {"*": ["content"], "Shotgun_Shot_New": None},
        [(("*",), ("content",))],
        [3],
    ),
    ("rule 2: otherwise the event type must be a key", {"Shotgun_Task_Change": None}, [(("Shotgun_Task_Change",), None)], [1, 2, 3]),
    (
        "rule 2: a key is an exact event type, not a pattern",
        {"Shotgun_*_Change": None},
        [(("Shotgun_*_Change",), None)],
        [],
    ),
    ("rule 3: a value of None matches _New events", {"Shotgun_Shot_New": None}, [(("Shotgun_Shot_New",), None)], [4]),
    (
        'rule 3: a value containing "*" matches every attribute',
        {"Shotgun_Task_Change": ["content", "*"]},
        [(("Shotgun_Task_Change",), None)],
        [1, 2, 3],
    ),
    ('rule 3: the string "*" matches every attribute', {"Shotgun_Task_Change": "*"}, [(("Shotgun_Task_Change",), None)], [1, 2, 3]),
    (
        "rule 4: the attribute must be one of the value's items",
        {"Shotgun_Task_Change": ["sg_status_list", "content"]},
        [(("Shotgun_Task_Change",), ("sg_status_list", "content"))],
        [1, 3],
    ),
    (
        "rule 4: _New and _Retirement events (no attribute) never match a list",
        {"Shotgun_Shot_New": ["code"], "Shotgun_Task_Retirement": ["content"]},
        [(("Shotgun_Shot_New",), ("code",)), (("Shotgun_Task_Retirement",), ("content",))],
        [],
    ),
    ("rule 4: [] matches nothing", {"Shotgun_Task_Change": []}, [(("Shotgun_Task_Change",), ())], []),
    (
        "the deliberate difference: a string value is one exact attribute name (no substring match)",
        {"Shotgun_Task_Change": "sg_status_list"},
        [(("Shotgun_Task_Change",), ("sg_status_list",))],
        [1],
    ),
    (
        "event types with the same attributes share a subscription",
        {"Shotgun_Task_Change": ["sg_status_list"], "Shotgun_Shot_Change": ["sg_status_list"], "Shotgun_Shot_New": None},
        [(("Shotgun_Task_Change", "Shotgun_Shot_Change"), ("sg_status_list",)), (("Shotgun_Shot_New",), None)],
        [1, 4, 5],
    ),
    ("a dict value means its keys", {"Shotgun_Task_Change": {"content": 1}}, [(("Shotgun_Task_Change",), ("content",))], [3]),
]


class MatchEventsTests(_support.TestCase):
    def test_the_translation_table(self) -> None:
        for rule, match_events, filters, matching in TABLE:
            with self.subTest(rule=rule):
                match = MatchEvents(match_events)
                self.assertEqual(match_events_filters(match_events), filters)
                self.assertEqual([e["id"] for e in ALL_EVENTS if match.matches(e)], matching)

    def test_the_subscriptions_let_through_every_event_the_rules_accept(self) -> None:
        # The daemon filters with the subscriptions, the host with the rules: the daemon must never
        # drop an event a callback wants. Subscription.matches is the daemon's matcher.
        for rule, match_events, filters, _ in TABLE:
            subscriptions = [
                Subscription(name=f"s{i}", event_types=types, attributes=attributes)
                for i, (types, attributes) in enumerate(filters)
            ]
            for event in ALL_EVENTS:
                if MatchEvents(match_events).matches(event):
                    with self.subTest(rule=rule, event=event["id"]):
                        self.assertTrue(any(s.matches(event) for s in subscriptions))

    def test_the_incumbent_would_have_matched_a_substring(self) -> None:
        # What shotgunEvents did with a string value, for the record: `in` on a string.
        self.assertTrue("status" in "sg_status_list")
        self.assertFalse(MatchEvents({"Shotgun_Task_Change": "sg_status_list"}).matches(TASK_STATUS_SHORT))

    def test_suspicious_keys_and_items_are_warned_about(self) -> None:
        self.assertEqual(MatchEvents({"Shotgun_Task_Change": None}).warnings, [])
        self.assertIn("is not a pattern", MatchEvents({"Shotgun_*_Change": None}).warnings[0])
        self.assertIn(
            "its other keys are ignored (as in shotgunEvents): 'Shotgun_Shot_New'",
            MatchEvents({"*": None, "Shotgun_Shot_New": None}).warnings[0],
        )
        self.assertIn("holds 3, which is not an attribute name", MatchEvents({"Shotgun_Task_Change": ["content", 3]}).warnings[0])

    def test_a_value_that_is_not_a_dict_is_refused_with_a_hint(self) -> None:
        with self.assertRaises(TypeError) as caught:
            MatchEvents(["Shotgun_Task_Change"])
        self.assertIn("matchEvents must be a dict of event types to attribute names, got ['Shotgun_Task_Change']\nhint: ", str(caught.exception))
        with self.assertRaises(TypeError) as caught:
            MatchEvents({"Shotgun_Task_Change": 5})
        self.assertIn("matchEvents['Shotgun_Task_Change'] is 5", str(caught.exception))


# ---------------------------------------------------------------------------------------------
# The host, in process


class HostTestCase(_support.TestCase):
    def setUp(self) -> None:
        super().setUp()
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        self.dir = Path(directory.name)
        saved_path = list(sys.path)
        saved_modules = set(sys.modules)

        def restore() -> None:
            sys.path[:] = saved_path
            for name in set(sys.modules) - saved_modules:
                del sys.modules[name]

        self.addCleanup(restore)

    def write(self, body: str, name: str = "legacy_test_plugin") -> Path:
        path = self.dir / f"{name}.py"
        path.write_text('"""A test plugin."""\n' + textwrap.dedent(body), encoding="utf-8")
        return path

    def run_plugin(
        self, path: Path, events: List[Any], config: Optional[Dict[str, Any]] = None, **kwargs: Any
    ) -> RunResult:
        return PluginRunner(legacy_plugin(str(path), **kwargs), plugin_name=path.stem).run(events, config=config)

    def module(self, path: Path) -> Any:
        """The plugin's module, as the host loaded it into this process."""
        return sys.modules[path.stem]


class RegisterTests(HostTestCase):
    def test_register_has_one_subscription_per_callback_filter_and_window_one(self) -> None:
        path = self.write("""
            def registerCallbacks(reg):
                reg.registerCallback("s", "k", on_status, {"Shotgun_Task_Change": "sg_status_list", "Shotgun_Shot_New": None})
                reg.registerCallback("s", "k", on_status, {"Shotgun_Shot_Change": ["code"]})
                reg.registerCallback("s", "k", everything)
            def on_status(sg, logger, event, args): pass
            def everything(sg, logger, event, args): pass
        """)
        result = self.run_plugin(path, [])
        self.assertEqual(result.exit_code, 0)
        self.assertEqual(
            result.register,
            {
                "type": "register",
                "protocol": 1,
                "subscriptions": [
                    {"name": "on_status", "event_types": ["Shotgun_Task_Change"], "attributes": ["sg_status_list"]},
                    {"name": "on_status[2]", "event_types": ["Shotgun_Shot_New"]},
                    {"name": "on_status#2", "event_types": ["Shotgun_Shot_Change"], "attributes": ["code"]},
                    {"name": "everything", "event_types": ["*"]},
                ],
                "max_in_flight": 1,
            },
        )

    def test_a_plugin_that_registers_nothing_gets_a_subscription_that_matches_nothing(self) -> None:
        path = self.write("""
            def registerCallbacks(reg):
                reg.logger.info("nothing to register today")
        """)
        result = self.run_plugin(path, [])
        self.assertEqual(result.exit_code, 0)
        self.assertEqual(
            result.register["subscriptions"],  # type: ignore[index]
            [{"name": "no_callbacks", "event_types": ["*"], "attributes": []}],
        )
        self.assertTrue(any(level == "warn" and "registered no callback" in m for level, m in result.logs))

    def test_set_emails_true_false_and_addresses_become_register_alerts(self) -> None:
        cases = [
            ("reg.setEmails(True)", True),
            ("reg.setEmails(False)", False),
            ('reg.setEmails("td@studio.com", "lead@studio.com")', ["td@studio.com", "lead@studio.com"]),
            ('reg.setEmails(["td@studio.com"])', ["td@studio.com"]),
            ("reg.setEmails()", False),
        ]
        for call, alerts in cases:
            with self.subTest(call=call):
                path = self.write(f"""
                    def registerCallbacks(reg):
                        {call}
                        reg.registerCallback("s", "k", cb)
                    def cb(sg, logger, event, args): pass
                """)
                register = self.run_plugin(path, []).register
                assert register is not None
                self.assertEqual(register["alerts"], alerts)

    def test_without_set_emails_register_has_no_alerts(self) -> None:
        path = self.write("""
            def registerCallbacks(reg):
                reg.registerCallback("s", "k", cb)
            def cb(sg, logger, event, args): pass
        """)
        register = self.run_plugin(path, []).register
        assert register is not None
        self.assertNotIn("alerts", register)

    def test_set_emails_refuses_what_is_not_an_address(self) -> None:
        with self.assertRaises(ValueError) as caught:
            emails_to_alerts(("True", "td@studio.com"))
        self.assertEqual(
            str(caught.exception),
            "setEmails got 'True', which is not an email address\n"
            'hint: call reg.setEmails("td@studio.com", ...); True and False go alone',
        )
        with self.assertRaises(TypeError):
            emails_to_alerts((None,))

    def test_the_registrar_has_the_incumbents_api_and_nothing_else(self) -> None:
        path = self.write("""
            SEEN = {}
            def registerCallbacks(reg):
                SEEN["logger"] = reg.logger.name
                SEEN["same"] = reg.getLogger() is reg.logger
                SEEN["api"] = sorted(name for name in dir(reg) if not name.startswith("_"))
                reg.registerCallback("s", "k", cb)
            def cb(sg, logger, event, args): pass
        """, name="api_check")
        self.run_plugin(path, [])
        self.assertEqual(
            self.module(path).SEEN,
            {
                "logger": "plugin.api_check",
                "same": True,
                "api": ["getLogger", "logger", "registerCallback", "setEmails"],
            },
        )


class DispatchTests(HostTestCase):
    def test_callbacks_run_in_registration_order_with_their_loggers_and_args(self) -> None:
        path = self.write("""
            CALLS = []
            def registerCallbacks(reg):
                reg.registerCallback("s", "k", second, None, "b")
                reg.registerCallback("s", "k", first, {"Shotgun_Task_Change": ["sg_status_list"]}, "a")
                reg.registerCallback("s", "k", third, {"Shotgun_Shot_New": None}, "c")
            def first(sg, logger, event, args):
                CALLS.append(("first", event["id"], logger.name, args))
            def second(sg, logger, event, args):
                CALLS.append(("second", event["id"], logger.name, args))
            def third(sg, logger, event, args):
                CALLS.append(("third", event["id"], logger.name, args))
        """, name="order")
        result = self.run_plugin(path, [task_status_event(10), new_shot(11), change(12, "content")])
        self.assertEqual([result.answer(i) for i in (10, 11, 12)], [ack(10), ack(11), ack(12)])
        self.assertEqual(
            self.module(path).CALLS,
            [
                ("second", 10, "plugin.order.second", "b"),
                ("first", 10, "plugin.order.first", "a"),
                ("second", 11, "plugin.order.second", "b"),
                ("third", 11, "plugin.order.third", "c"),
                ("second", 12, "plugin.order.second", "b"),
            ],
        )

    def test_args_is_the_same_object_for_every_event_so_callbacks_share_state(self) -> None:
        path = self.write("""
            IDS = []
            def registerCallbacks(reg):
                state = {"count": 0}
                reg.registerCallback("s", "k", count, None, state)
                reg.registerCallback("s", "k", look, None, state)
            def count(sg, logger, event, args):
                args["count"] += 1
            def look(sg, logger, event, args):
                IDS.append((id(args), args["count"]))
        """, name="shared")
        result = self.run_plugin(path, [new_shot(1), new_shot(2), new_shot(3)])
        self.assertEqual(result.exit_code, 0)
        seen = self.module(path).IDS
        self.assertEqual([count for _, count in seen], [1, 2, 3])
        self.assertEqual(len({ident for ident, _ in seen}), 1)

    def test_the_shared_state_fixture_counts_across_events(self) -> None:
        path = LEGACY_PLUGINS / "shared_state.py"
        out = self.dir / "out.txt"
        os.environ["LEGACY_OUT"] = str(out)
        self.addCleanup(os.environ.pop, "LEGACY_OUT", None)
        result = self.run_plugin(path, [new_shot(7), new_shot(8), new_shot(9)])
        self.assertEqual([m["type"] for m in result.answers], ["ack", "ack", "ack"])
        self.assertEqual(out.read_text(encoding="utf-8"), "7 1\n8 2\n9 3\n")

    def test_register_callback_after_registration_fails_the_callback(self) -> None:
        path = self.write("""
            def registerCallbacks(reg):
                reg.registerCallback("s", "k", cb, None, reg, stopOnError=False)
            def cb(sg, logger, event, args):
                args.registerCallback("s", "k", cb)
        """, name="late")
        result = self.run_plugin(path, [new_shot(1)])
        self.assertEqual(
            result.answer(1)["error"],
            "callback `cb` failed (stopOnError=False): RuntimeError: registerCallback was called after "
            "registerCallbacks returned; the subscriptions are fixed by then\nhint: register every "
            "callback inside registerCallbacks(reg)",
        )

    def test_an_event_the_rules_reject_is_acked_without_calling_anything(self) -> None:
        # "Shotgun_*_Change" is a pattern to the daemon, an exact name to the incumbent's rules.
        path = self.write("""
            CALLS = []
            def registerCallbacks(reg):
                reg.registerCallback("s", "k", cb, {"Shotgun_*_Change": None})
            def cb(sg, logger, event, args):
                CALLS.append(event["id"])
        """, name="pattern_key")
        result = self.run_plugin(path, [change(20, "content")])
        self.assertEqual(result.answer(20), ack(20))
        self.assertEqual(self.module(path).CALLS, [])

    def test_a_callback_is_called_once_when_several_of_its_subscriptions_match(self) -> None:
        path = self.write("""
            CALLS = []
            def registerCallbacks(reg):
                reg.registerCallback("s", "k", cb, {"Shotgun_Task_Change": ["content"], "Shotgun_*_Change": None})
            def cb(sg, logger, event, args):
                CALLS.append(event["id"])
        """, name="twice")
        result = self.run_plugin(path, [change(21, "content")])
        self.assertEqual(result.answer(21), ack(21))
        self.assertEqual(self.module(path).CALLS, [21])


class StopOnErrorTests(HostTestCase):
    def test_stop_on_error_true_answers_fatal_and_leaves_the_event_unacked(self) -> None:
        path = self.write("""
            CALLS = []
            def registerCallbacks(reg):
                reg.registerCallback("s", "k", fine, None)
                reg.registerCallback("s", "k", fragile, None)
                reg.registerCallback("s", "k", after, None)
            def fine(sg, logger, event, args):
                CALLS.append(("fine", event["id"]))
            def fragile(sg, logger, event, args):
                api_key = "hunter2-secret"
                if event["id"] == 31:
                    raise RuntimeError("cannot reach the render farm")
            def after(sg, logger, event, args):
                CALLS.append(("after", event["id"]))
        """, name="fragile_plugin")
        result = self.run_plugin(path, [new_shot(30), new_shot(31), new_shot(32)])
        self.assertEqual(result.exit_code, 125)
        self.assertEqual(result.answer(30), ack(30))
        self.assertEqual([m.get("event_id") for m in result.answers], [30, None], "31 is never answered")
        self.assertEqual(
            result.fatal,
            "callback `fragile` of legacy plugin `fragile_plugin` failed on event 31 (stopOnError=True): "
            "RuntimeError: cannot reach the render farm\n"
            "hint: fix the plugin (the traceback is in its log), then enable it: it starts again at "
            "this event, running each of its callbacks again",
        )
        self.assertEqual(self.module(path).CALLS, [("fine", 30), ("after", 30), ("fine", 31)])
        trace = [m for level, m in result.logs if level == "error" and "stopOnError=True" in m and "Traceback" in m]
        self.assertEqual(len(trace), 1, result.logs)
        self.assertIn('raise RuntimeError("cannot reach the render farm")', trace[0])
        self.assertFalse(any("hunter2-secret" in m for _, m in result.logs), "local variables are never logged")

    def test_stop_on_error_false_answers_term_naming_the_callback_and_moves_on(self) -> None:
        path = self.write("""
            CALLS = []
            def registerCallbacks(reg):
                reg.registerCallback("s", "k", picky, None, stopOnError=False)
                reg.registerCallback("s", "k", after, None)
            def picky(sg, logger, event, args):
                if event["id"] % 2 == 0:
                    raise ValueError("even id %d" % event["id"])
            def after(sg, logger, event, args):
                CALLS.append(event["id"])
        """, name="picky_plugin")
        result = self.run_plugin(path, [new_shot(40), new_shot(41)])
        self.assertEqual(result.exit_code, 0)
        self.assertEqual(
            result.answer(40),
            {"type": "term", "event_id": 40, "error": "callback `picky` failed (stopOnError=False): ValueError: even id 40"},
        )
        self.assertEqual(result.answer(41), ack(41))
        self.assertEqual(self.module(path).CALLS, [40, 41], "the other callback still ran on event 40")
        self.assertTrue(any("Traceback" in m and "stopOnError=False" in m for _, m in result.logs))

    def test_the_raises_fixture(self) -> None:
        path = LEGACY_PLUGINS / "raises.py"
        out = self.dir / "out.txt"
        os.environ["LEGACY_OUT"] = str(out)
        self.addCleanup(os.environ.pop, "LEGACY_OUT", None)
        result = self.run_plugin(path, [new_shot(51), new_shot(52), change(53, "boom"), new_shot(55)])
        self.assertEqual(result.answer(51), ack(51))
        self.assertEqual(result.answer(52)["type"], "term")
        self.assertIn("`fails_on_even`", result.answer(52)["error"])
        self.assertIn("callback `fails_on_boom` of legacy plugin `raises` failed on event 53", str(result.fatal))
        self.assertEqual(result.exit_code, 125)
        self.assertEqual(
            out.read_text(encoding="utf-8").split("\n"),
            ["fails_on_even 51", "fails_on_boom 51", "fails_on_even 52", "fails_on_boom 52",
             "fails_on_even 53", "fails_on_boom 53", ""],
        )


class LoadFailureTests(HostTestCase):
    def assert_refused(self, path: Path, starts: str) -> RunResult:
        result = self.run_plugin(path, [new_shot(1)])
        self.assertIsNone(result.register)
        self.assertEqual(result.exit_code, 125)
        self.assertEqual(result.messages, [{"type": "fatal", "error": result.fatal}])
        self.assertTrue(str(result.fatal).startswith(starts), result.fatal)
        self.assertIn("\nhint: ", str(result.fatal))
        return result

    def test_an_import_error_is_fatal_naming_the_path_and_the_error(self) -> None:
        path = LEGACY_PLUGINS / "broken_import.py"
        result = self.assert_refused(
            path, f"cannot load legacy plugin `{path}`: ImportError: broken_import.py fails at import on purpose"
        )
        self.assertTrue(any("Traceback" in m and "broken_import.py" in m for _, m in result.logs))
        self.assertNotIn("broken_import", sys.modules)

    def test_a_syntax_error_is_fatal_naming_the_path_and_line(self) -> None:
        path = self.write("def registerCallbacks(reg)\n    pass\n", name="typo")
        self.assert_refused(path, f"cannot load legacy plugin `{path}`: SyntaxError: ")

    def test_a_missing_file_is_fatal_naming_the_path(self) -> None:
        path = self.dir / "gone.py"
        self.assert_refused(path, f"cannot read legacy plugin `{path}`: No such file or directory")

    def test_a_file_without_register_callbacks_is_fatal(self) -> None:
        path = self.write("x = 1\n", name="no_register")
        self.assert_refused(path, f"legacy plugin `{path}` has no registerCallbacks function")

    def test_register_callbacks_raising_is_fatal(self) -> None:
        path = self.write("""
            def registerCallbacks(reg):
                reg.registerCallback("s", "k", "not a function")
        """, name="bad_register")
        result = self.assert_refused(path, f"registerCallbacks of legacy plugin `{path}` failed: TypeError: registerCallback needs a callable")
        self.assertTrue(any("Traceback" in m for _, m in result.logs))

    def test_the_plugin_folder_comes_first_on_sys_path(self) -> None:
        (self.dir / "studio_helpers.py").write_text('"""A helper."""\nSTATUS = "fin"\n', encoding="utf-8")
        path = self.write("""
            import studio_helpers
            def registerCallbacks(reg):
                reg.registerCallback("s", "k", cb)
            def cb(sg, logger, event, args):
                pass
        """, name="uses_helper")
        result = self.run_plugin(path, [])
        self.assertIsNotNone(result.register)
        self.assertEqual(sys.path[0], str(self.dir))


class ShotgunTests(HostTestCase):
    def setUp(self) -> None:
        super().setUp()
        sys.path.insert(0, str(FAKE_SHOTGUN))
        sys.modules.pop("shotgun_api3", None)
        import shotgun_api3  # the fake in tests/fake_shotgun

        self.fake: Any = shotgun_api3
        self.assertEqual(Path(self.fake.__file__).parent, FAKE_SHOTGUN)

    CONFIG = {
        "site_url": "https://studio.shotgrid.autodesk.com",
        "proxy": "proxy.studio:3128",
        "use_session_uuid": True,
        "ca_certs": "/etc/ssl/studio.pem",
    }

    def test_one_connection_per_script_made_on_first_use_and_reused(self) -> None:
        path = self.write("""
            SGS = []
            def registerCallbacks(reg):
                reg.registerCallback("script_a", "key_a", one, None)
                reg.registerCallback("script_a", "key_a", two, None)
                reg.registerCallback("script_b", "key_b", three, None)
            def one(sg, logger, event, args):
                SGS.append(("one", sg))
                sg.find("Shot", [])
            def two(sg, logger, event, args):
                SGS.append(("two", sg))
                sg.find("Shot", [])
            def three(sg, logger, event, args):
                SGS.append(("three", sg))
                if event["id"] == 2:
                    sg.find("Shot", [])
        """, name="sg_user")
        events = [new_shot(1), dict(new_shot(2), session_uuid="uuid-2"), dict(new_shot(3), session_uuid="uuid-3")]
        result = self.run_plugin(path, events, config=self.CONFIG)
        self.assertEqual([m["type"] for m in result.answers], ["ack", "ack", "ack"])
        made = self.fake.made
        self.assertEqual([sg.script_name for sg in made], ["script_a", "script_b"])
        a, b = made
        self.assertEqual(
            (a.base_url, a.api_key, a.http_proxy, a.ca_certs),
            ("https://studio.shotgrid.autodesk.com", "key_a", "proxy.studio:3128", "/etc/ssl/studio.pem"),
        )
        # set_session_uuid before every callback: a is made on event 1 (before `one`), b on event 2.
        self.assertEqual(a.session_uuids, [None, None, "uuid-2", "uuid-2", "uuid-3", "uuid-3"])
        self.assertEqual(b.session_uuids, ["uuid-2", "uuid-3"])
        sgs = self.module(path).SGS
        self.assertIs(sgs[0][1], sgs[1][1], "one and two share script_a's connection")
        self.assertIsNot(sgs[0][1], sgs[2][1])
        self.assertEqual(len({id(sg) for name, sg in sgs if name == "one"}), 1, "reused across events")
        self.assertNotIn("key_a", repr(sgs[0][1]))

    def test_without_use_session_uuid_the_uuid_is_not_set(self) -> None:
        path = self.write("""
            def registerCallbacks(reg):
                reg.registerCallback("script_a", "key_a", cb, None)
            def cb(sg, logger, event, args):
                sg.find("Shot", [])
        """, name="no_uuid")
        config = dict(self.CONFIG, use_session_uuid=False)
        self.run_plugin(path, [dict(new_shot(1), session_uuid="uuid-1")], config=config)
        self.assertEqual([sg.session_uuids for sg in self.fake.made], [[]])

    def test_a_callback_that_never_touches_sg_needs_no_shotgun_api3(self) -> None:
        sys.modules["shotgun_api3"] = None  # type: ignore[assignment]  # `import` now fails
        path = self.write("""
            def registerCallbacks(reg):
                reg.registerCallback("script_a", "key_a", cb, None)
            def cb(sg, logger, event, args):
                logger.info("sg is %r", sg)
        """, name="no_sg")
        result = self.run_plugin(path, [dict(new_shot(1), session_uuid="uuid-1")], config=self.CONFIG)
        self.assertEqual(result.answer(1), ack(1))
        self.assertIn(("info", "sg is <sg for script 'script_a' (not connected yet)>"), result.logs)

    def test_touching_sg_without_shotgun_api3_says_what_to_install(self) -> None:
        sys.modules["shotgun_api3"] = None  # type: ignore[assignment]
        path = self.write("""
            def registerCallbacks(reg):
                reg.registerCallback("script_a", "key_a", cb, None, stopOnError=False)
            def cb(sg, logger, event, args):
                sg.find("Shot", [])
        """, name="needs_sg")
        result = self.run_plugin(path, [new_shot(1)], config=self.CONFIG)
        error = result.answer(1)["error"]
        self.assertIn("ShotgunNotInstalled: cannot make `sg` for script `script_a` of legacy plugin `needs_sg`: `shotgun_api3` cannot be imported", error)
        self.assertTrue(error.endswith("hint: pip install shotgun_api3 into the Python that runs legacy plugins"), error)

    def test_the_shot_to_task_fixture_updates_the_shots_tasks(self) -> None:
        self.fake.TASKS = {"1246": [
            {"type": "Task", "id": 1, "content": "Anim", "sg_status_list": "ip"},
            {"type": "Task", "id": 2, "content": "Comp", "sg_status_list": "fin"},
        ]}
        os.environ.update(SGDAEMON_SHOT_TO_TASK_NAME="shot_to_task", SGDAEMON_SHOT_TO_TASK_KEY="secret")
        self.addCleanup(os.environ.pop, "SGDAEMON_SHOT_TO_TASK_NAME", None)
        self.addCleanup(os.environ.pop, "SGDAEMON_SHOT_TO_TASK_KEY", None)
        event = task_status_event(
            70, new="fin", event_type="Shotgun_Shot_Change", entity={"type": "Shot", "id": 1246, "name": "010_0010"}
        )
        result = self.run_plugin(LEGACY_PLUGINS / "shot_to_task.py", [event, new_shot(71)], config=self.CONFIG)
        self.assertEqual(result.answer(70), ack(70))
        self.assertEqual(result.undelivered, [71])
        (sg,) = self.fake.made
        self.assertEqual((sg.script_name, sg.api_key), ("shot_to_task", "secret"))
        self.assertEqual(
            sg.calls,
            [
                ("find", "Task", [["entity", "is", {"type": "Shot", "id": 1246}]], ["content", "sg_status_list"]),
                ("update", "Task", 1, {"sg_status_list": "fin"}),
            ],
        )


class LegacyRunnerTests(HostTestCase):
    def test_legacy_runner_with_a_stand_in_for_shotgun(self) -> None:
        made: List[Tuple[str, Dict[str, Any]]] = []

        class FakeShotgun:
            def __init__(self, base_url: str, **kwargs: Any) -> None:
                made.append((base_url, kwargs))

            def find(self, *args: Any) -> List[Any]:
                return []

        path = self.write("""
            def registerCallbacks(reg):
                reg.registerCallback("script", "key", cb, {"Shotgun_Shot_New": None})
            def cb(sg, logger, event, args):
                logger.info("found %r", sg.find("Shot", []))
        """, name="stand_in")
        runner = legacy_runner(str(path), shotgun_class=FakeShotgun)
        result = runner.run([new_shot(1), task_status_event(2)], config={"site_url": "https://studio.shotgrid.autodesk.com"})
        self.assertEqual(runner.plugin_name, "stand_in")
        self.assertEqual(result.answer(1), ack(1))
        self.assertEqual(result.undelivered, [2])
        self.assertIn(("info", "found []"), result.logs)
        self.assertEqual(
            made,
            [("https://studio.shotgrid.autodesk.com",
              {"script_name": "script", "api_key": "key", "http_proxy": None, "ca_certs": None})],
        )

    def test_without_a_site_url_sg_cannot_be_made(self) -> None:
        path = self.write("""
            def registerCallbacks(reg):
                reg.registerCallback("script", "key", cb)
            def cb(sg, logger, event, args):
                sg.find("Shot", [])
        """, name="no_site")
        result = legacy_runner(str(path), shotgun_class=lambda *a, **k: None).run([new_shot(1)])
        self.assertEqual(result.exit_code, 125)
        self.assertIn(
            "SdkError: cannot make `sg` for script `script` of legacy plugin `no_site`: the daemon "
            "gave no `site_url`\nhint: set the ShotGrid site in the daemon's configuration",
            str(result.fatal),
        )

    def test_a_wrong_type_in_hello_config_is_fatal(self) -> None:
        path = self.write("def registerCallbacks(reg):\n    pass\n", name="cfg")
        result = legacy_runner(str(path)).run([], config={"use_session_uuid": "yes"})
        self.assertEqual(result.exit_code, 125)
        self.assertTrue(str(result.fatal).startswith("`hello.config.use_session_uuid` is 'yes', not true or false\nhint: "))


class AlertsTests(_support.TestCase):
    def test_plugin_alerts_goes_into_register(self) -> None:
        for alerts in (True, False, ["td@studio.com"]):
            plugin = Plugin(alerts=alerts)
            plugin.subscribe(lambda ctx, event: None, ["*"], name="all")
            register = PluginRunner(plugin).run([]).register
            assert register is not None
            self.assertEqual(register["alerts"], alerts)

    def test_a_setup_hook_may_set_alerts_for_the_session(self) -> None:
        plugin = Plugin()
        plugin.subscribe(lambda ctx, event: None, ["*"], name="all")

        @plugin.setup
        def setup(p: Plugin, config: Dict[str, Any]) -> None:
            p.alerts = config["to"]

        register = PluginRunner(plugin).run([], config={"to": ("a@studio.com", "b@studio.com")}).register
        assert register is not None
        self.assertEqual(register["alerts"], ["a@studio.com", "b@studio.com"])
        self.assertIsNone(plugin.alerts, "the session's alerts do not stick to the plugin")

    def test_alerts_refuses_a_plain_string_with_a_hint(self) -> None:
        with self.assertRaises(TypeError) as caught:
            Plugin(alerts="td@studio.com")  # type: ignore[arg-type]
        self.assertEqual(
            str(caught.exception),
            "`alerts` must be True, False or a list of addresses, not the string 'td@studio.com'\n"
            "hint: write alerts=['td@studio.com']",
        )


# ---------------------------------------------------------------------------------------------
# The real process


def hello(config: Optional[Dict[str, Any]] = None) -> str:
    return json.dumps({"type": "hello", "protocols": [1], "plugin": "legacy", "config": config or {}})


def event_line(event: Dict[str, Any], subscriptions: List[str]) -> str:
    return json.dumps({
        "type": "event", "event_id": event["id"], "attempt": 1, "subscriptions": subscriptions,
        "deadline_ms": 30000, "event": event,
    })


class ProcessTests(_support.TestCase):
    def setUp(self) -> None:
        super().setUp()
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        self.dir = Path(directory.name)
        self.out = self.dir / "out.txt"

    def start(self, plugin: str, extra_env: Optional[Dict[str, str]] = None) -> Child:
        env = child_env({"LEGACY_OUT": str(self.out), **(extra_env or {})})
        path = LEGACY_PLUGINS / plugin
        child = Child([sys.executable, "-m", "sgevents.legacy", str(path)], env, cwd=str(LEGACY_PLUGINS))
        self.addCleanup(child.kill)
        return child

    def read(self, child: Child) -> Dict[str, Any]:
        line = child.read_line()
        self.assertIsNotNone(line, child.stderr())
        return dict(json.loads(str(line)))

    def test_log_all_acks_and_logs_every_event(self) -> None:
        child = self.start("log_all.py")
        child.send(hello({"site_url": "https://studio.shotgrid.autodesk.com", "use_session_uuid": True}))
        register = self.read(child)
        self.assertEqual(register["subscriptions"], [{"name": "log_event", "event_types": ["*"]}])
        for event in (new_shot(101), task_status_event(102)):
            child.send(event_line(event, ["log_event"]))
            self.assertEqual(self.read(child), ack(event["id"]))
        child.close_stdin()
        self.assertEqual(child.finish(), 0, child.stderr())
        self.assertEqual(self.out.read_text(encoding="utf-8"), "101\n102\n")
        self.assertIn("D! dispatching event 101 to callback `log_event`", child.stderr())

    def test_broken_import_is_fatal_and_exits_125(self) -> None:
        child = self.start("broken_import.py")
        child.send(hello())
        fatal = self.read(child)
        self.assertEqual(fatal["type"], "fatal")
        self.assertTrue(
            fatal["error"].startswith(
                f"cannot load legacy plugin `{LEGACY_PLUGINS / 'broken_import.py'}`: ImportError: "
                "broken_import.py fails at import on purpose\nhint: "
            ),
            fatal,
        )
        self.assertEqual(child.finish(), 125)
        self.assertIn('"level":"error","message":"cannot load `', child.stderr())

    def test_raises_terms_even_ids_and_stops_at_boom(self) -> None:
        child = self.start("raises.py")
        child.send(hello())
        names = [s["name"] for s in self.read(child)["subscriptions"]]
        self.assertEqual(names, ["fails_on_even", "fails_on_boom"])
        child.send(event_line(new_shot(201), names))
        self.assertEqual(self.read(child), ack(201))
        child.send(event_line(new_shot(202), names))
        self.assertEqual(
            self.read(child),
            {"type": "term", "event_id": 202,
             "error": "callback `fails_on_even` failed (stopOnError=False): ValueError: event 202 has an even id"},
        )
        child.send(event_line(change(203, "boom"), names))
        fatal = self.read(child)
        self.assertEqual(fatal["type"], "fatal")
        self.assertIn("callback `fails_on_boom` of legacy plugin `raises` failed on event 203 (stopOnError=True): RuntimeError: boom on event 203", fatal["error"])
        self.assertEqual(child.finish(), 125)

    def test_shot_to_task_with_a_fake_shotgun_api3(self) -> None:
        log = self.dir / "sg.jsonl"
        tasks = {"1246": [{"type": "Task", "id": 9, "sg_status_list": "ip"}]}
        env = {
            "PYTHONPATH": os.pathsep.join([str(_support.SRC), str(FAKE_SHOTGUN)]),
            "FAKE_SHOTGUN_LOG": str(log),
            "FAKE_SHOTGUN_TASKS": json.dumps(tasks),
            "SGDAEMON_SHOT_TO_TASK_NAME": "shot_to_task",
            "SGDAEMON_SHOT_TO_TASK_KEY": "secret",
        }
        child = self.start("shot_to_task.py", env)
        child.send(hello({"site_url": "https://studio.shotgrid.autodesk.com", "proxy": None, "use_session_uuid": True}))
        names = [s["name"] for s in self.read(child)["subscriptions"]]
        for event_id in (301, 302):
            event = task_status_event(
                event_id, new="fin", event_type="Shotgun_Shot_Change",
                entity={"type": "Shot", "id": 1246, "name": "010_0010"}, session_uuid=f"uuid-{event_id}",
            )
            child.send(event_line(event, names))
            self.assertEqual(self.read(child), ack(event_id))
        child.close_stdin()
        self.assertEqual(child.finish(), 0, child.stderr())
        calls = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
        self.assertEqual([c["call"] for c in calls], ["Shotgun", "set_session_uuid", "find", "update",
                                                     "set_session_uuid", "find", "update"])
        self.assertEqual(calls[0]["script_name"], "shot_to_task")
        self.assertEqual([c["session_uuid"] for c in calls if c["call"] == "set_session_uuid"], ["uuid-301", "uuid-302"])
        self.assertIn("I! Task 9 of Shot 1246 is now fin", child.stderr())

    def test_without_a_path_it_prints_the_usage_and_exits_2(self) -> None:
        child = Child([sys.executable, "-m", "sgevents.legacy"], child_env())
        self.addCleanup(child.kill)
        self.assertEqual(child.finish(), 2)
        self.assertIn("usage: python3 -m sgevents.legacy /abs/path/plugin.py", child.stderr())


if __name__ == "__main__":
    unittest.main()
