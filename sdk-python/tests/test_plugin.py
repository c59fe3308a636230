"""The plugin API through sgevents.testing: register, setup hooks, callback order, and how each
outcome of a callback is answered (behaviours 3, 4, 5 and 11 of the SDK behaviour spec)."""

from __future__ import annotations

import datetime
import logging
import unittest
from typing import Any, Dict, List

import _support
from _support import shot_new_event, task_status_event
from sgevents import (
    CallbackError,
    Context,
    Fatal,
    Plugin,
    Retry,
    SdkError,
    Skip,
)
from sgevents.testing import Delivery, PluginRunner


def ack(event_id: int) -> Dict[str, Any]:
    return {"type": "ack", "event_id": event_id}


class RegisterTests(_support.TestCase):
    def test_register_lists_subscriptions_in_order_with_the_default_window(self) -> None:
        plugin = Plugin()

        @plugin.on("Shotgun_Task_Change", "Shotgun_Shot_*", attributes=["sg_status_list"],
                   entity_types=["Task", "Shot"], project_ids=[66, 70], skip_transient=True)
        def on_status(ctx: Context, event: Dict[str, Any]) -> None:
            pass

        @plugin.on("Shotgun_*_New", name="on_new")
        def created(ctx: Context, event: Dict[str, Any]) -> None:
            pass

        result = PluginRunner(plugin).run([])
        self.assertEqual(
            result.register,
            {
                "type": "register",
                "protocol": 1,
                "subscriptions": [
                    {"name": "on_status", "event_types": ["Shotgun_Task_Change", "Shotgun_Shot_*"],
                     "attributes": ["sg_status_list"], "entity_types": ["Task", "Shot"],
                     "project_ids": [66, 70], "skip_transient": True},
                    {"name": "on_new", "event_types": ["Shotgun_*_New"]},
                ],
                "max_in_flight": 1,
            },
        )
        self.assertEqual(result.exit_code, 0)
        self.assertEqual(result.messages, [result.register])

    def test_the_window_is_the_plugins(self) -> None:
        plugin = Plugin(max_in_flight=3)
        plugin.subscribe(lambda ctx, event: None, ["*"], name="every")
        self.assertEqual(PluginRunner(plugin).run([]).register["max_in_flight"], 3)  # type: ignore[index]

    def test_decorators_return_the_function_and_name_defaults_to_it(self) -> None:
        plugin = Plugin()

        def handler(ctx: Context, event: Dict[str, Any]) -> None:
            pass

        self.assertIs(plugin.on("*")(handler), handler)
        self.assertEqual([s.name for s in plugin.subscriptions], ["handler"])

        class Callable:
            def __call__(self, ctx: Context, event: Dict[str, Any]) -> None:
                pass

        self.assertEqual(plugin.subscribe(Callable(), ["*"]).name, "Callable")
        with self.assertRaises(TypeError):
            plugin.subscribe("not callable", ["*"])  # type: ignore[arg-type]

    def refused(self, plugin: Plugin, text: str) -> None:
        result = PluginRunner(plugin).run([shot_new_event()])
        self.assertIsNone(result.register)
        self.assertEqual(result.exit_code, 125)
        self.assertEqual(len(result.messages), 1, result.messages)
        self.assertIn(text, str(result.fatal))

    def test_an_invalid_register_is_answered_fatal(self) -> None:
        self.refused(Plugin(), "no subscriptions")
        twice = Plugin()
        twice.subscribe(lambda ctx, event: None, ["*"], name="a")
        twice.subscribe(lambda ctx, event: None, ["x"], name="a")
        self.refused(twice, "subscription name `a` is empty or used twice")
        no_types = Plugin()
        no_types.subscribe(lambda ctx, event: None, [], name="a")
        self.refused(no_types, "subscription `a` lists no event types")
        for window in (0, 1025):
            wide = Plugin(max_in_flight=window)
            wide.subscribe(lambda ctx, event: None, ["*"], name="a")
            self.refused(wide, f"max_in_flight `{window}` is out of range\nhint: ask for 1 to 1024")

    def test_no_common_version_is_answered_fatal(self) -> None:
        plugin = Plugin()
        plugin.subscribe(lambda ctx, event: None, ["*"], name="a")
        with PluginRunner(plugin).start(protocols=[99]) as session:
            self.assertIsNone(session.register)
            result = session.finish()
        self.assertEqual(result.exit_code, 125)
        self.assertEqual(
            result.messages,
            [{"type": "fatal", "error": "no common protocol version: the daemon offers [99], this plugin speaks [1]\n"
              "hint: upgrade the older of the two (the sgevents daemon or this plugin's SDK)"}],
        )


class SetupTests(_support.TestCase):
    def make(self) -> Plugin:
        plugin = Plugin()

        @plugin.on("Shotgun_Shot_New")
        def static(ctx: Context, event: Dict[str, Any]) -> None:
            pass

        @plugin.setup
        def setup(p: Plugin, config: Dict[str, Any]) -> None:
            self.assertIs(p, plugin)
            for pattern in config["patterns"]:
                p.subscribe(lambda ctx, event: None, [pattern], name=f"on_{pattern}")
            p.max_in_flight = config["window"]

        return plugin

    def test_setup_gets_the_config_and_may_subscribe_and_set_the_window(self) -> None:
        plugin = self.make()
        result = PluginRunner(plugin).run([], config={"patterns": ["a", "b"], "window": 4})
        self.assertEqual(
            result.register["subscriptions"],  # type: ignore[index]
            [{"name": "static", "event_types": ["Shotgun_Shot_New"]},
             {"name": "on_a", "event_types": ["a"]},
             {"name": "on_b", "event_types": ["b"]}],
        )
        self.assertEqual(result.register["max_in_flight"], 4)  # type: ignore[index]

    def test_each_session_starts_from_the_declared_plugin(self) -> None:
        plugin = self.make()
        first = PluginRunner(plugin).run([], config={"patterns": ["a"], "window": 2})
        second = PluginRunner(plugin).run([], config={"patterns": ["a"], "window": 2})
        self.assertEqual(first.register, second.register)
        self.assertEqual([s.name for s in plugin.subscriptions], ["static"])
        self.assertEqual(plugin.max_in_flight, 1)

    def test_a_failing_setup_is_answered_fatal(self) -> None:
        plugin = Plugin()
        plugin.subscribe(lambda ctx, event: None, ["*"], name="a")

        @plugin.setup
        def setup(p: Plugin, config: Dict[str, Any]) -> None:
            raise KeyError("ledger_dir")

        result = PluginRunner(plugin).run([shot_new_event()])
        self.assertEqual(result.exit_code, 125)
        self.assertIn("the plugin's setup hook failed:\nTraceback", str(result.fatal))
        self.assertIn("KeyError: 'ledger_dir'", str(result.fatal))

    def test_fatal_in_setup_sends_its_message(self) -> None:
        plugin = Plugin()

        @plugin.setup
        def setup(p: Plugin, config: Dict[str, Any]) -> None:
            raise Fatal("`ledger_dir` is not configured")

        result = PluginRunner(plugin).run([])
        self.assertEqual(result.messages, [{"type": "fatal", "error": "`ledger_dir` is not configured"}])
        self.assertEqual(result.exit_code, 125)


class CallbackTests(_support.TestCase):
    def test_callbacks_run_in_registration_order_and_stop_at_the_first_failure(self) -> None:
        plugin = Plugin()
        calls: List[str] = []

        def make(name: str, fail: bool) -> Any:
            def callback(ctx: Context, event: Dict[str, Any]) -> None:
                calls.append(f"{name}:{event['id']}")
                if fail and event["id"] == 2:
                    raise RuntimeError("second fails")
            return callback

        plugin.subscribe(make("first", False), ["*"], name="first")
        plugin.subscribe(make("second", True), ["*"], name="second")
        plugin.subscribe(make("third", False), ["*"], name="third")
        result = PluginRunner(plugin).run([shot_new_event(1), shot_new_event(2)])
        self.assertEqual(calls, ["first:1", "second:1", "third:1", "first:2", "second:2"])
        self.assertEqual(result.answer(1), ack(1))
        self.assertEqual(result.answer(2)["type"], "nack")

    def test_the_daemon_order_is_followed(self) -> None:
        plugin = Plugin()
        calls: List[str] = []
        plugin.subscribe(lambda ctx, event: calls.append("a"), ["*"], name="a")
        plugin.subscribe(lambda ctx, event: calls.append("b"), ["*"], name="b")
        PluginRunner(plugin).run([Delivery(shot_new_event(), subscriptions=["b", "a"]), Delivery(shot_new_event(2), subscriptions=["b"])])
        self.assertEqual(calls, ["b", "a", "b"])

    def outcome(self, error: BaseException) -> Any:
        plugin = Plugin()

        @plugin.on("*")
        def callback(ctx: Context, event: Dict[str, Any]) -> None:
            raise error

        return PluginRunner(plugin).run([shot_new_event(7)])

    def test_an_ordinary_exception_is_a_nack_with_the_full_traceback(self) -> None:
        plugin = Plugin()

        @plugin.on("*")
        def parse_frame_range(ctx: Context, event: Dict[str, Any]) -> None:
            int("10-20")

        result = PluginRunner(plugin).run([shot_new_event(7)])
        answer = result.answer(7)
        self.assertEqual(set(answer), {"type", "event_id", "error"})
        self.assertEqual(answer["type"], "nack")
        error = answer["error"]
        self.assertTrue(error.startswith("Traceback (most recent call last):\n"), error)
        self.assertIn("in parse_frame_range", error)
        self.assertIn('int("10-20")', error)
        self.assertTrue(error.endswith("ValueError: invalid literal for int() with base 10: '10-20'"), error)
        self.assertNotIn("_runner.py", error, "the SDK's own frames say nothing useful")
        self.assertIn(("warn", "event 7 failed in `parse_frame_range` (attempt 1); answering nack:\n" + error), result.logs)

    def test_system_exit_in_a_callback_is_an_ordinary_failure(self) -> None:
        answer = self.outcome(SystemExit(3)).answer(7)
        self.assertEqual(answer["type"], "nack")
        self.assertIn("SystemExit: 3", answer["error"])

    def test_retry_is_a_nack_with_a_delay(self) -> None:
        result = self.outcome(Retry("render farm busy", retry_after=5))
        self.assertEqual(result.answer(7), {"type": "nack", "event_id": 7, "error": "render farm busy", "retry_after_ms": 5000})
        self.assertIn(("warn", "event 7 in `callback` (attempt 1) failed; answering nack with a retry in 5000 ms: render farm busy"), result.logs)
        self.assertEqual(
            self.outcome(Retry("later", retry_after=datetime.timedelta(milliseconds=1500))).answer(7)["retry_after_ms"], 1500
        )
        self.assertEqual(self.outcome(Retry("whenever")).answer(7), {"type": "nack", "event_id": 7, "error": "whenever"})

    def test_errors_name_their_explicit_causes(self) -> None:
        try:
            try:
                raise ConnectionError("connection refused")
            except ConnectionError as cause:
                raise Retry("shotgrid unreachable") from cause
        except Retry as err:
            retry = err
        self.assertEqual(self.outcome(retry).answer(7)["error"], "shotgrid unreachable: connection refused")

    def test_skip_is_a_term(self) -> None:
        result = self.outcome(Skip("Task 67378 has no parent Shot"))
        self.assertEqual(result.answer(7), {"type": "term", "event_id": 7, "error": "Task 67378 has no parent Shot"})
        self.assertIn(("error", "event 7 in `callback` (attempt 1) can never succeed; answering term: Task 67378 has no parent Shot"), result.logs)

    def test_fatal_ends_the_session_with_125_without_ending_the_test(self) -> None:
        plugin = Plugin()
        seen: List[int] = []

        @plugin.on("*")
        def callback(ctx: Context, event: Dict[str, Any]) -> None:
            seen.append(event["id"])
            if event["id"] == 2:
                raise Fatal("license server unreachable")

        result = PluginRunner(plugin).run([shot_new_event(1), shot_new_event(2), shot_new_event(3)])
        self.assertEqual(result.exit_code, 125)
        self.assertEqual(result.messages[1:], [ack(1), {"type": "fatal", "error": "license server unreachable"}])
        self.assertEqual(seen, [1, 2], "nothing runs after fatal")
        self.assertIn(("error", "event 2 in `callback` (attempt 1): the plugin cannot go on; answering fatal and exiting: license server unreachable"), result.logs)

    def test_an_unknown_subscription_is_a_term_and_runs_nothing(self) -> None:
        plugin = Plugin()
        calls: List[str] = []
        plugin.subscribe(lambda ctx, event: calls.append("known"), ["*"], name="known")
        result = PluginRunner(plugin).run([Delivery(shot_new_event(9), subscriptions=["known", "gone"])])
        self.assertEqual(result.answer(9), {"type": "term", "event_id": 9, "error": 'no callback for subscription "gone" in this plugin'})
        self.assertEqual(calls, [])
        self.assertIn(("error", 'event 9: no callback for subscription "gone" in this plugin; answering term'), result.logs)

    def test_no_subscriptions_named_is_an_ack(self) -> None:
        plugin = Plugin()
        plugin.subscribe(lambda ctx, event: None, ["*"], name="a")
        self.assertEqual(PluginRunner(plugin).run([Delivery(shot_new_event(4), subscriptions=[])]).answer(4), ack(4))


class ContextTests(_support.TestCase):
    def test_the_context_describes_the_delivery(self) -> None:
        plugin = Plugin()
        seen: List[Context] = []

        @plugin.on("Shotgun_Task_Change", name="on_status")
        def callback(ctx: Context, event: Dict[str, Any]) -> None:
            seen.append(ctx)
            ctx.log.info("task %s is now %s", event["entity"]["id"], event["meta"]["new_value"])
            ctx.progress()
            ctx.progress()

        runner = PluginRunner(plugin, plugin_name="task-status")
        result = runner.run([Delivery(task_status_event(11, new="fin"), attempt=3, deadline_ms=5000)], config={"final_status": "fin"})
        (ctx,) = seen
        self.assertEqual(ctx.plugin_name, "task-status")
        self.assertEqual(ctx.config, {"final_status": "fin"})
        self.assertEqual((ctx.event_id, ctx.attempt, ctx.deadline_ms, ctx.subscription), (11, 3, 5000, "on_status"))
        self.assertIsNone(ctx.credentials)
        self.assertIsInstance(ctx.log, logging.Logger)
        self.assertEqual(ctx.log.name, "plugin.task-status.on_status")
        self.assertIn(("info", "task 67378 is now fin"), result.logs)
        self.assertEqual(
            result.messages[1:],
            [{"type": "progress", "event_id": 11}, {"type": "progress", "event_id": 11}, ack(11)],
        )
        self.assertEqual(result.progress(11), 2)

    def test_debug_records_of_callbacks_are_kept(self) -> None:
        plugin = Plugin()
        plugin.subscribe(lambda ctx, event: ctx.log.debug("detail %d", 1), ["*"], name="a")
        self.assertIn(("debug", "detail 1"), PluginRunner(plugin).run([shot_new_event()]).logs)


class ExceptionTests(_support.TestCase):
    def test_exceptions_carry_their_answer(self) -> None:
        self.assertEqual((Retry.answer, Skip.answer, Fatal.answer), ("nack", "term", "fatal"))
        self.assertEqual(Fatal.exit_code, 125)
        for cls in (Retry, Skip, Fatal):
            self.assertTrue(issubclass(cls, CallbackError))
            self.assertFalse(issubclass(cls, SdkError))
        self.assertEqual(str(Skip("why")), "why")
        self.assertEqual(Skip("why").message, "why")
        self.assertEqual(Retry("x", retry_after=0.25).retry_after_ms, 250)
        self.assertIsNone(Retry("x").retry_after_ms)
        with self.assertRaises(ValueError):
            Retry("x", retry_after=-1)


if __name__ == "__main__":
    unittest.main()
