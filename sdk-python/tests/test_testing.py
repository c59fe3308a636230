"""sgevents.testing itself (behaviour 12 of the SDK behaviour spec): what a run returns, events
that match nothing are not delivered, delivery overrides, captured prints and logs, and the
print-to-log stand-in for sys.stdout."""

from __future__ import annotations

import io
import logging
import os
import sys
import threading
import unittest
from typing import Any, Dict, List
from unittest import mock

import _support
from _support import GUARD, shot_new_event, task_status_event
from sgevents import Context, Plugin
from sgevents._log import PrintToLog
from sgevents.testing import Delivery, PluginRunner


def status_plugin(calls: List[Any]) -> Plugin:
    plugin = Plugin()

    @plugin.on("Shotgun_Task_Change", attributes=["sg_status_list"], skip_transient=True)
    def on_status(ctx: Context, event: Dict[str, Any]) -> None:
        calls.append((ctx.subscription, event["id"], ctx.attempt))
        print("status of", event["entity"]["id"], "is", event["meta"]["new_value"])

    @plugin.on("Shotgun_*")
    def on_any(ctx: Context, event: Dict[str, Any]) -> None:
        calls.append((ctx.subscription, event["id"], ctx.attempt))

    return plugin


class RunnerTests(_support.TestCase):
    def test_a_run_returns_register_answers_exit_code_and_logs(self) -> None:
        calls: List[Any] = []
        transient = task_status_event(3, meta={"type": "attribute_change", "is_transient": True, "new_value": "ip"})
        result = PluginRunner(status_plugin(calls)).run(
            [task_status_event(1), shot_new_event(2), transient, {"id": 4, "event_type": "Other_Event"}]
        )
        self.assertEqual([s["name"] for s in result.register["subscriptions"]], ["on_status", "on_any"])  # type: ignore[index]
        self.assertEqual(calls, [("on_status", 1, 1), ("on_any", 1, 1), ("on_any", 2, 1), ("on_any", 3, 1)])
        self.assertEqual(result.answers, [{"type": "ack", "event_id": i} for i in (1, 2, 3)])
        self.assertEqual(result.undelivered, [4], "an event no subscription matches is not sent")
        self.assertEqual(result.exit_code, 0)
        self.assertIsNone(result.fatal)
        self.assertIn(("info", "status of 67378 is rev"), result.logs, "prints become info records")
        with self.assertRaises(KeyError):
            result.answer(4)

    def test_deliveries_can_override_attempt_subscriptions_and_id(self) -> None:
        calls: List[Any] = []
        result = PluginRunner(status_plugin(calls)).run(
            [
                Delivery(task_status_event(1), attempt=4),
                Delivery(task_status_event(2), subscriptions=["on_any"]),
                Delivery(task_status_event(3), event_id=33),
            ]
        )
        self.assertEqual(
            calls,
            [("on_status", 1, 4), ("on_any", 1, 4), ("on_any", 2, 1), ("on_status", 3, 1), ("on_any", 3, 1)],
        )
        self.assertEqual(result.answer(33), {"type": "ack", "event_id": 33})

    def test_the_environment_is_only_what_the_test_gives(self) -> None:
        seen: List[Any] = []
        plugin = Plugin()
        plugin.subscribe(lambda ctx, event: seen.append(ctx.credentials), ["*"], name="a")
        env = {"SGEVENTS_SITE_URL": "https://x", "SGEVENTS_SCRIPT_NAME": "n", "SGEVENTS_SCRIPT_KEY": "k"}
        with mock.patch.dict(os.environ, env):
            PluginRunner(plugin).run([shot_new_event()])
        self.assertEqual(seen, [None])

    def test_a_live_session_is_driven_step_by_step(self) -> None:
        calls: List[Any] = []
        with PluginRunner(status_plugin(calls)).start() as session:
            self.assertIsNotNone(session.register)
            self.assertFalse(session.deliver({"id": 9, "event_type": "Nothing"}))
            self.assertTrue(session.deliver(shot_new_event(2), attempt=2))
            self.assertEqual(session.read(), {"type": "ack", "event_id": 2})
            session.close()
            with self.assertRaises(EOFError):
                session.read()
            result = session.finish()
        self.assertEqual(calls, [("on_any", 2, 2)])
        self.assertEqual(result.undelivered, [9])
        self.assertIs(session.finish(), result)

    def test_the_runner_leaves_stdout_and_logging_as_they_were(self) -> None:
        stdout = sys.stdout
        root_handlers = list(logging.getLogger().handlers)
        levels = [logging.getLogger(n).level for n in ("", "plugin", "sgevents")]
        PluginRunner(status_plugin([])).run([task_status_event()])
        self.assertIs(sys.stdout, stdout)
        self.assertEqual(logging.getLogger().handlers, root_handlers)
        self.assertEqual([logging.getLogger(n).level for n in ("", "plugin", "sgevents")], levels)


class PrintToLogTests(_support.TestCase):
    def test_lines_are_logged_whole_per_thread(self) -> None:
        logger = logging.getLogger("test.print")
        printer = PrintToLog(logger)
        first_half = threading.Event()
        second_done = threading.Event()

        def other() -> None:
            first_half.wait(GUARD)
            print("other", "thread", file=printer)
            second_done.set()

        thread = threading.Thread(target=other)
        with self.assertLogs("test.print", "INFO") as logs:
            thread.start()
            print("this", end="", file=printer)
            first_half.set()
            self.assertTrue(second_done.wait(GUARD))
            print(" thread", file=printer, flush=True)
            print("two\nlines", file=printer)
            printer.write("no newline yet")
            printer.close_lines()
            printer.buffer.write("bytes é\n".encode("utf-8"))
            thread.join(GUARD)
        self.assertEqual(
            [r.getMessage() for r in logs.records],
            ["other thread", "this thread", "two", "lines", "no newline yet", "bytes é"],
        )

    def test_it_refuses_a_file_descriptor(self) -> None:
        printer = PrintToLog(logging.getLogger("test.print"))
        with self.assertRaises(io.UnsupportedOperation):
            printer.fileno()
        self.assertFalse(printer.isatty())
        self.assertTrue(printer.writable())
        self.assertEqual(printer.encoding, "utf-8")


if __name__ == "__main__":
    unittest.main()
