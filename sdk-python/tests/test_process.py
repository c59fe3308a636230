"""`Plugin.run()` in a real process: the exit status of `fatal` (at once, not waiting for other
workers), stdout kept for the protocol (prints and child processes go to stderr), the stderr log
format, and a daemon that stops reading stdout."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path
from typing import Dict, List, Optional

import _support
from _support import GUARD, Child, child_env, shot_new_event

HELLO = json.dumps({"type": "hello", "protocols": [1], "plugin": "proc", "config": {}})


def event_line(event_id: int) -> str:
    return json.dumps({
        "type": "event", "event_id": event_id, "attempt": 1, "subscriptions": ["callback"],
        "deadline_ms": 30000, "event": shot_new_event(event_id),
    })


class ProcessTests(_support.TestCase):
    def script(self, body: str) -> List[str]:
        """A plugin script: `body` defines `callback(ctx, event)`; `window` may be set."""
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        path = Path(directory.name) / "plugin.py"
        path.write_text(
            "import os, subprocess, sys, threading, warnings\n"
            "from sgevents import Fatal, Plugin\n"
            "window = 1\n"
            + textwrap.dedent(body)
            + "\nplugin = Plugin(max_in_flight=window)\n"
            "plugin.subscribe(callback, ['*'])\n"
            "plugin.run()\n",
            encoding="utf-8",
        )
        return [sys.executable, str(path)]

    def start(self, argv: List[str], env: Optional[Dict[str, str]] = None) -> Child:
        child = Child(argv, env)
        self.addCleanup(child.kill)
        child.send(HELLO)
        register = json.loads(str(child.read_line()))
        self.assertEqual(register["type"], "register", child.stderr())
        return child

    def test_fatal_exits_125_at_once_without_waiting_for_other_workers(self) -> None:
        child = self.start(self.script("""
            window = 2
            never = threading.Event()
            def callback(ctx, event):
                if event["id"] == 1:
                    never.wait()  # stuck for good: the exit must not wait for it
                raise Fatal("license server unreachable")
        """))
        child.send(event_line(1))
        child.send(event_line(2))
        self.assertEqual(json.loads(str(child.read_line())), {"type": "fatal", "error": "license server unreachable"})
        self.assertIsNone(child.read_line(), "stdout closes right after fatal")
        self.assertEqual(child.finish(), 125)
        self.assertIn("E! event 2 in `callback` (attempt 1): the plugin cannot go on; answering fatal and exiting: license server unreachable", child.stderr())

    def test_prints_and_child_processes_cannot_write_into_the_protocol(self) -> None:
        child = self.start(self.script("""
            def callback(ctx, event):
                print("printed", "by", "a callback")
                print("partial", end="")
                print(" line", flush=True)
                sys.stdout.buffer.write(b"raw bytes\\n")
                sys.__stdout__.write("through sys.__stdout__\\n")
                sys.__stdout__.flush()
                subprocess.run([sys.executable, "-c", "print('from a child process')"], check=True)
                try:
                    sys.stdout.fileno()
                except OSError as err:
                    ctx.log.info("fileno refused: %s", err)
        """))
        child.send(event_line(1))
        self.assertEqual(json.loads(str(child.read_line())), {"type": "ack", "event_id": 1})
        child.close_stdin()
        self.assertIsNone(child.read_line(), "nothing but protocol on stdout")
        self.assertEqual(child.finish(), 0)
        stderr = child.stderr().splitlines()
        for expected in (
            "I! printed by a callback",
            "I! partial line",
            "I! raw bytes",
            "through sys.__stdout__",
            "from a child process",
            "I! fileno refused: stdout is reserved for the sgevents protocol; print() output goes to the log",
        ):
            self.assertIn(expected, stderr)

    def test_logs_go_to_stderr_in_the_protocol_format(self) -> None:
        child = self.start(self.script("""
            import logging
            def callback(ctx, event):
                ctx.log.info("one line")
                ctx.log.debug("some detail")
                ctx.log.warning("careful")
                ctx.log.error("two\\nlines")
                logging.getLogger("somelib").info("a library speaks")
                warnings.warn("old API", DeprecationWarning)
                try:
                    {}["missing"]
                except KeyError:
                    ctx.log.exception("lookup failed")
        """), child_env({"PYTHONWARNINGS": "default"}))
        child.send(event_line(1))
        self.assertEqual(json.loads(str(child.read_line())), {"type": "ack", "event_id": 1})
        child.close_stdin()
        self.assertIsNone(child.read_line())
        self.assertEqual(child.finish(), 0)
        lines = child.stderr().splitlines()
        self.assertIn("I! one line", lines)
        self.assertIn("D! some detail", lines)
        self.assertIn("W! careful", lines)
        self.assertIn('{"level":"error","message":"two\\nlines"}', lines)
        self.assertIn("I! a library speaks", lines)
        records = [json.loads(l) for l in lines if l.startswith("{")]
        warned = [r for r in records if "DeprecationWarning: old API" in r["message"]]
        self.assertEqual([r["level"] for r in warned], ["warn"], records)
        self.assertFalse(warned[0]["message"].endswith("\n"), "trailing newlines are trimmed")
        tracebacks = [r for r in records if r["message"].startswith("lookup failed\nTraceback")]
        self.assertEqual(len(tracebacks), 1, records)
        self.assertEqual(tracebacks[0]["level"], "error")
        self.assertTrue(tracebacks[0]["message"].endswith("KeyError: 'missing'"))

    def test_a_daemon_that_stops_reading_gets_a_quiet_exit_0(self) -> None:
        argv = self.script("""
            def callback(ctx, event):
                pass
        """)
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env())
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        self.addCleanup(proc.stderr.close)
        self.addCleanup(proc.wait)
        self.addCleanup(lambda: None if proc.poll() is not None else proc.kill())
        proc.stdin.write(HELLO.encode() + b"\n")
        proc.stdin.flush()
        self.assertEqual(json.loads(proc.stdout.readline())["type"], "register")
        proc.stdout.close()  # the daemon goes away: the ack will meet a closed pipe
        proc.stdin.write(event_line(1).encode() + b"\n")
        proc.stdin.close()
        try:
            proc.wait(timeout=GUARD)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the plugin did not exit within {GUARD} s") from None
        stderr = proc.stderr.read()
        self.assertEqual(proc.returncode, 0, stderr)
        text = stderr.decode()
        self.assertIn("stdout is closed", text)
        self.assertIn("the daemon went away", text)
        self.assertNotIn("Traceback", text)


if __name__ == "__main__":
    unittest.main()
