"""The reading loop and the workers (behaviours 1, 2, 4, 6, 7, 8 and 9 of the SDK behaviour spec):
lines the loop ignores, pings while callbacks run, the window, shutdown, EOF and a vanished stdout.

Concurrency is made deterministic with threading primitives the test controls: a callback waits
on an Event the test sets only after it has seen what it is checking for. Waits are bounded by a
guard; nothing sleeps to synchronise."""

from __future__ import annotations

import io
import json
import threading
import unittest
from typing import Any, Dict, List

import _support
from _support import GUARD, shot_new_event
from sgevents import Context, Plugin
from sgevents._protocol import DEFAULT_MAX_LINE_BYTES, encode
from sgevents._runner import serve
from sgevents.testing import PluginRunner

HELLO = {"type": "hello", "protocols": [1], "plugin": "test", "config": {}}


def event_message(event_id: int, subscriptions: List[str]) -> Dict[str, Any]:
    return {
        "type": "event", "event_id": event_id, "attempt": 1, "subscriptions": subscriptions,
        "deadline_ms": 30000, "event": shot_new_event(event_id),
    }


def acking_plugin(calls: List[int]) -> Plugin:
    plugin = Plugin()
    plugin.subscribe(lambda ctx, event: calls.append(event["id"]), ["*"], name="every")
    return plugin


class Blocker:
    """A callback that signals it started and waits until the test releases it."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, ctx: Context, event: Dict[str, Any]) -> None:
        self.started.set()
        if not self.release.wait(GUARD):
            raise RuntimeError("the test never released the callback")

    def wait_started(self, test: unittest.TestCase) -> None:
        test.assertTrue(self.started.wait(GUARD), "the callback never started")


class StartAndEndTests(_support.TestCase):
    def test_eof_before_hello_exits_0_having_written_nothing(self) -> None:
        out = io.BytesIO()
        self.assertEqual(serve(acking_plugin([]), io.BytesIO(b""), out, environ={}), 0)
        self.assertEqual(out.getvalue(), b"")

    def test_messages_before_hello_are_logged_and_ignored(self) -> None:
        calls: List[int] = []
        out = io.BytesIO()
        stdin = io.BytesIO(
            encode({"type": "ping", "nonce": 1})
            + encode(event_message(1, ["every"]))
            + encode(HELLO)
            + encode({"type": "ping", "nonce": 2})
        )
        with self.assertLogs("sgevents", "ERROR") as logs:
            self.assertEqual(serve(acking_plugin(calls), stdin, out, environ={}), 0)
        messages = [json.loads(line) for line in out.getvalue().splitlines()]
        self.assertEqual([m["type"] for m in messages], ["register", "pong"])
        self.assertEqual(messages[1], {"type": "pong", "nonce": 2})
        self.assertEqual(calls, [])
        self.assertEqual(
            [r.getMessage() for r in logs.records],
            ["ignoring `ping`, which came before `hello`", "ignoring `event`, which came before `hello`"],
        )

    def test_a_second_hello_is_ignored(self) -> None:
        with PluginRunner(acking_plugin([])).start() as session:
            session.send(HELLO)
            session.send({"type": "ping", "nonce": 5})
            self.assertEqual(session.read(), {"type": "pong", "nonce": 5})
            self.assertIn(("error", "ignoring a second `hello`"), session.logs)

    def test_eof_lets_running_callbacks_finish_and_answer(self) -> None:
        plugin = Plugin()
        blocker = Blocker()
        plugin.subscribe(blocker, ["*"], name="slow")
        with PluginRunner(plugin).start() as session:
            session.deliver(shot_new_event(1))
            blocker.wait_started(self)
            session.close()
            session.wait_for_log("stdin closed; finishing 1 event(s) in flight")
            blocker.release.set()
            result = session.finish()
        self.assertEqual(result.answers, [{"type": "ack", "event_id": 1}])
        self.assertEqual(result.exit_code, 0)

    def test_eof_lets_queued_events_run_too(self) -> None:
        calls: List[int] = []
        result = PluginRunner(acking_plugin(calls)).run([shot_new_event(i) for i in range(1, 6)])
        self.assertEqual(calls, [1, 2, 3, 4, 5])
        self.assertEqual([a["event_id"] for a in result.answers], [1, 2, 3, 4, 5])


class BadLineTests(_support.TestCase):
    def test_bad_oversized_and_unknown_lines_are_logged_and_skipped(self) -> None:
        calls: List[int] = []
        with PluginRunner(acking_plugin(calls)).start() as session:
            session.send_line(b"this is not json")
            session.send_line(b"[1,2,3]")
            session.send_line(b'{"type":"acknowledge","event_id":1}')
            session.send_line(b'{"type":"ping","nonce":"seven"}')
            session.send_line(b'{"type":"ping\xff"}')
            session.send_line(b"x" * (DEFAULT_MAX_LINE_BYTES + 1))
            session.send_line(b"")
            session.send({"type": "ping", "nonce": 7})
            self.assertEqual(session.read(), {"type": "pong", "nonce": 7})
            session.deliver(shot_new_event(3))
            self.assertEqual(session.read(), {"type": "ack", "event_id": 3})
            result = session.finish()
        errors = [message for level, message in result.logs if level == "error"]
        self.assertEqual(len(errors), 7, errors)
        self.assertTrue(errors[0].startswith("ignoring a line from the daemon: line is not JSON: "), errors[0])
        self.assertTrue(errors[0].endswith("`this is not json`"), errors[0])
        self.assertEqual(errors[1], "ignoring a line from the daemon: line is JSON but not an object: `[1,2,3]`")
        self.assertEqual(
            errors[2],
            'ignoring a line from the daemon: unknown message type `acknowledge`: `{"type":"acknowledge","event_id":1}`',
        )
        self.assertIn("bad `ping` message", errors[3])
        self.assertIn("not valid UTF-8", errors[4])
        self.assertEqual(
            errors[5],
            f"ignoring a line of {DEFAULT_MAX_LINE_BYTES + 1} bytes from the daemon, over the limit of "
            f"{DEFAULT_MAX_LINE_BYTES} bytes: `{'x' * 200}... ({DEFAULT_MAX_LINE_BYTES + 1} bytes in all)`",
        )
        self.assertIn("line is not JSON", errors[6])
        self.assertEqual(calls, [3])
        self.assertEqual(result.exit_code, 0)

    def test_a_line_of_exactly_the_limit_is_read(self) -> None:
        # Pad a ping with spaces (allowed around JSON) to exactly 16 MiB.
        ping = b'{"type":"ping","nonce":9}'
        line = ping + b" " * (DEFAULT_MAX_LINE_BYTES - len(ping))
        with PluginRunner(acking_plugin([])).start() as session:
            session.send_line(line)
            self.assertEqual(session.read(), {"type": "pong", "nonce": 9})


class ConcurrencyTests(_support.TestCase):
    def test_pings_are_answered_while_a_callback_runs(self) -> None:
        plugin = Plugin()
        blocker = Blocker()
        plugin.subscribe(blocker, ["*"], name="busy")
        with PluginRunner(plugin).start() as session:
            session.deliver(shot_new_event(1))
            blocker.wait_started(self)
            session.send({"type": "ping", "nonce": 42})
            self.assertEqual(session.read(), {"type": "pong", "nonce": 42})
            self.assertFalse(blocker.release.is_set())
            blocker.release.set()
            self.assertEqual(session.read(), {"type": "ack", "event_id": 1})

    def test_a_window_of_two_runs_two_callbacks_at_once(self) -> None:
        plugin = Plugin(max_in_flight=2)
        barrier = threading.Barrier(2, timeout=GUARD)
        plugin.subscribe(lambda ctx, event: barrier.wait(), ["*"], name="meet")
        result = PluginRunner(plugin).run([shot_new_event(1), shot_new_event(2)])
        self.assertEqual(sorted(a["event_id"] for a in result.answers), [1, 2])
        self.assertEqual({a["type"] for a in result.answers}, {"ack"}, result.answers)

    def test_a_window_of_one_runs_events_one_at_a_time_in_order(self) -> None:
        plugin = Plugin()
        lock = threading.Lock()
        running: List[int] = []
        order: List[int] = []
        overlaps: List[List[int]] = []

        def callback(ctx: Context, event: Dict[str, Any]) -> None:
            with lock:
                running.append(event["id"])
                if len(running) > 1:
                    overlaps.append(list(running))
                order.append(event["id"])
            with lock:
                running.remove(event["id"])

        plugin.subscribe(callback, ["*"], name="one")
        result = PluginRunner(plugin).run([shot_new_event(i) for i in range(1, 21)])
        self.assertEqual(order, list(range(1, 21)))
        self.assertEqual(overlaps, [])
        self.assertEqual([a["event_id"] for a in result.answers], list(range(1, 21)))

    def test_shutdown_drains_in_flight_events_and_refuses_new_ones(self) -> None:
        plugin = Plugin()
        blocker = Blocker()
        plugin.subscribe(blocker, ["*"], name="slow")
        with PluginRunner(plugin).start() as session:
            session.deliver(shot_new_event(1))
            blocker.wait_started(self)
            session.send({"type": "shutdown", "drain_ms": 10000})
            session.deliver(shot_new_event(2))
            self.assertEqual(session.read(), {"type": "nack", "event_id": 2, "error": "plugin is shutting down"})
            session.send({"type": "ping", "nonce": 3})
            self.assertEqual(session.read(), {"type": "pong", "nonce": 3}, "it keeps reading after shutdown")
            blocker.release.set()
            self.assertEqual(session.read(), {"type": "ack", "event_id": 1})
            result = session.finish()
        self.assertEqual(result.exit_code, 0)
        self.assertIn(("info", "shutdown asked: finishing 1 event(s) in flight, taking no new ones"), result.logs)


class BrokenStdout:
    """A stdout whose reader went away after `allowed` writes."""

    def __init__(self, allowed: int) -> None:
        self.allowed = allowed
        self.lines: List[bytes] = []

    def write(self, data: bytes) -> int:
        if len(self.lines) >= self.allowed:
            raise BrokenPipeError(32, "Broken pipe")
        self.lines.append(data)
        return len(data)

    def flush(self) -> None:
        pass


class BrokenStdoutTests(_support.TestCase):
    def test_a_vanished_stdout_ends_the_session_quietly_with_0(self) -> None:
        calls: List[int] = []
        stdout = BrokenStdout(allowed=1)
        stdin = io.BytesIO(
            encode(HELLO) + encode(event_message(1, ["every"])) + b"".join(encode(event_message(i, ["every"])) for i in range(2, 50))
        )
        with self.assertLogs("sgevents", "WARNING") as logs:
            status = serve(acking_plugin(calls), stdin, stdout, environ={})
        self.assertEqual(status, 0)
        self.assertEqual(len(stdout.lines), 1, "only register got out")
        self.assertTrue(any("stdout is closed" in line and "the daemon went away" in line for line in logs.output), logs.output)
        self.assertEqual(calls, [1], "work stops once nobody can read the answers")


if __name__ == "__main__":
    unittest.main()
