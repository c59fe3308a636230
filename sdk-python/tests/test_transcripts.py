"""Runs the conformance plugin as a real process against every transcript in
protocol/transcripts, playing the daemon's side (see protocol/src/transcript.rs)."""

from __future__ import annotations

import json
import sys
import unittest
from pathlib import Path
from typing import Any, List, Tuple, Union

import _support
from _support import CONFORMANCE_PLUGIN, TRANSCRIPTS, Child

Step = Tuple[int, str, Union[str, int, Any, None]]


def parse(path: Path) -> List[Step]:
    """The steps of a transcript: (line number, kind, payload) with kind `send`, `expect`,
    `close` or `exit`."""
    steps: List[Step] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line == "> EOF":
            steps.append((number, "close", None))
        elif line.startswith("> "):
            steps.append((number, "send", line[2:]))
        elif line.startswith("< "):
            steps.append((number, "expect", json.loads(line[2:])))
        elif line.startswith("= exit "):
            steps.append((number, "exit", int(line[len("= exit ") :])))
        else:
            raise ValueError(f"{path.name}:{number}: cannot read step `{line}`")
    if not steps or steps[-1][1] != "exit":
        raise ValueError(f"{path.name}: a transcript must end with `= exit N`")
    return steps


def same(a: Any, b: Any) -> bool:
    """JSON equality, where 1, 1.0 and true are three different values."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def line_matches(expected: Any, actual: Any) -> bool:
    """Same JSON value, except that an expected `error` string need only be contained in the
    actual one (error texts carry tracebacks that differ between SDKs)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        if expected.keys() != actual.keys():
            return False
        for key, want in expected.items():
            got = actual[key]
            if key == "error" and isinstance(want, str) and isinstance(got, str):
                if want not in got:
                    return False
            elif not same(want, got):
                return False
        return True
    return same(expected, actual)


class LineMatchTests(_support.TestCase):
    def test_errors_match_by_substring_and_nothing_else_does(self) -> None:
        want = {"type": "nack", "event_id": 1, "error": "boom"}
        self.assertTrue(line_matches(want, {"type": "nack", "event_id": 1, "error": "Traceback...\nboom: x"}))
        self.assertFalse(line_matches(want, {"type": "nack", "event_id": 1, "error": "bang"}))
        self.assertFalse(line_matches(want, {"type": "nack", "event_id": 2, "error": "boom"}))
        self.assertFalse(line_matches(want, {"type": "nack", "event_id": 1, "error": "boom", "retry_after_ms": 5}))
        self.assertFalse(line_matches({"a": 1}, {"a": True}))
        self.assertFalse(line_matches({"a": [{"name": "error"}]}, {"a": [{"name": "errors"}]}))


class TranscriptTests(_support.TestCase):
    """One test per transcript file, added below."""

    def play(self, path: Path) -> None:
        child = Child([sys.executable, str(CONFORMANCE_PLUGIN)])
        self.addCleanup(child.kill)
        for number, kind, payload in parse(path):
            where = f"{path.name}:{number}"
            if kind == "send":
                child.send(str(payload))
            elif kind == "close":
                child.close_stdin()
            elif kind == "expect":
                line = child.read_line()
                self.assertIsNotNone(line, f"{where}: the plugin closed stdout; expected {payload}\n{child.stderr()}")
                actual = json.loads(str(line))
                self.assertTrue(
                    line_matches(payload, actual),
                    f"{where}: expected {json.dumps(payload)}\n     got {line}\nstderr:\n{child.stderr()}",
                )
            else:
                line = child.read_line()
                self.assertIsNone(line, f"{where}: expected the plugin to exit, but it wrote {line}")
                status = child.finish()
                self.assertEqual(status, payload, f"{where}: exit status\nstderr:\n{child.stderr()}")


def _add_transcript_tests() -> None:
    paths = sorted(TRANSCRIPTS.glob("*.txt"))
    if not paths:
        raise RuntimeError(f"no transcripts found in {TRANSCRIPTS}")
    for path in paths:
        name = "test_" + path.stem.replace("-", "_")

        def test(self: TranscriptTests, path: Path = path) -> None:
            self.play(path)

        test.__doc__ = f"protocol/transcripts/{path.name}"
        setattr(TranscriptTests, name, test)


_add_transcript_tests()

if __name__ == "__main__":
    unittest.main()
