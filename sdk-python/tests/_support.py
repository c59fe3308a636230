"""Helpers shared by the tests: paths, a TestCase that turns warnings into errors, sample events,
and a child-process driver with bounded waits."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import unittest
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

TESTS = Path(__file__).resolve().parent
SDK = TESTS.parent
SRC = SDK / "src"
REPO = SDK.parent
TRANSCRIPTS = REPO / "protocol" / "transcripts"
CONFORMANCE_PLUGIN = TESTS / "conformance_plugin.py"

# Tests run with PYTHONPATH=sdk-python/src; without it, use the source tree next door.
try:
    import sgevents  # noqa: F401
except ImportError:
    sys.path.insert(0, str(SRC))

GUARD = 20.0
"""How long any test waits for a plugin: a guard against hangs, never a measurement."""


class TestCase(unittest.TestCase):
    """A TestCase in which every warning is an error."""

    def setUp(self) -> None:
        super().setUp()
        catcher = warnings.catch_warnings()
        catcher.__enter__()
        self.addCleanup(catcher.__exit__, None, None, None)
        warnings.simplefilter("error")


def task_status_event(
    event_id: int = 2011531,
    old: str = "ip",
    new: str = "rev",
    task_id: int = 67378,
    created_at: str = "2026-11-02T10:15:31Z",
    **extra: Any,
) -> Dict[str, Any]:
    """A `Shotgun_Task_Change` on `sg_status_list`, as the daemon sends it."""
    event: Dict[str, Any] = {
        "id": event_id,
        "event_type": "Shotgun_Task_Change",
        "attribute_name": "sg_status_list",
        "meta": {
            "type": "attribute_change",
            "attribute_name": "sg_status_list",
            "entity_type": "Task",
            "entity_id": task_id,
            "field_data_type": "status_list",
            "old_value": old,
            "new_value": new,
        },
        "entity": {"type": "Task", "id": task_id, "name": "Anim"},
        "user": {"type": "HumanUser", "id": 42, "name": "Ana Reyes"},
        "project": {"type": "Project", "id": 66, "name": "Testing Sandbox"},
        "session_uuid": None,
        "created_at": created_at,
        "description": f'Ana Reyes changed "Status" from "{old}" to "{new}" on Task Anim',
    }
    event.update(extra)
    return event


def shot_new_event(event_id: int = 2011532) -> Dict[str, Any]:
    """A `Shotgun_Shot_New`, which has no attribute."""
    return {
        "id": event_id,
        "event_type": "Shotgun_Shot_New",
        "attribute_name": None,
        "meta": {"type": "new_entity", "entity_type": "Shot", "entity_id": 1246},
        "entity": {"type": "Shot", "id": 1246, "name": "010_0010"},
        "user": {"type": "ApiUser", "id": 5, "name": "ingest_bot"},
        "project": {"type": "Project", "id": 66, "name": "Testing Sandbox"},
        "session_uuid": None,
        "created_at": "2026-11-02T10:16:00Z",
        "description": "ingest_bot created new Shot 010_0010",
    }


def child_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The environment of a plugin process: ours, with the SDK first on PYTHONPATH, every
    warning an error, and no ShotGrid credentials unless `extra` gives some."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGEVENTS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC)] + [p for p in [env.get("PYTHONPATH")] if p])
    env["PYTHONWARNINGS"] = "error"
    env.update(extra or {})
    return env


class Child:
    """A plugin process with piped stdio; every wait is bounded by GUARD."""

    def __init__(
        self, argv: Sequence[str], env: Optional[Dict[str, str]] = None, cwd: Optional[str] = None
    ) -> None:
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env() if env is None else env,
            cwd=cwd,
        )
        self._lines: "queue.Queue[Optional[bytes]]" = queue.Queue()
        self._stderr: List[bytes] = []
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode("utf-8") + b"\n")
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def read_line(self) -> Optional[str]:
        """The next stdout line without its newline, or None once stdout is closed."""
        try:
            line = self._lines.get(timeout=GUARD)
        except queue.Empty:
            raise AssertionError(
                f"the plugin wrote nothing within {GUARD} s; stderr:\n{self.stderr()}"
            ) from None
        return None if line is None else line.decode("utf-8").rstrip("\n")

    def wait(self) -> int:
        try:
            return self.proc.wait(timeout=GUARD)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the plugin did not exit within {GUARD} s") from None

    def stderr(self) -> str:
        return b"".join(self._stderr).decode("utf-8", "replace")

    def finish(self) -> int:
        """Waits for the exit and for both readers, so stderr() is complete."""
        status = self.wait()
        for thread in self._threads:
            thread.join(GUARD)
        return status

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        for thread in self._threads:
            thread.join(GUARD)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
