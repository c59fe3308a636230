"""The wire format: versions, decoding, encoding, the bounded line reader, register validation
and the stderr log format (the same cases as protocol/src/*.rs)."""

from __future__ import annotations

import io
import json
import logging
import unittest
from typing import Any, Dict, List, Union

import _support
from sgevents._log import LEVELS, format_log_line, level_name
from sgevents._protocol import (
    DecodeError,
    LineReader,
    TooLong,
    choose_version,
    decode_daemon_line,
    encode,
    excerpt,
    no_common_version,
    validate_register,
)


class VersionTests(_support.TestCase):
    def test_chooses_the_newest_common_version(self) -> None:
        self.assertEqual(choose_version([1]), 1)
        self.assertEqual(choose_version([1, 2, 3]), 1)
        self.assertIsNone(choose_version([2]))
        self.assertIsNone(choose_version([]))

    def test_mismatch_names_both_sides_and_says_what_to_do(self) -> None:
        self.assertEqual(
            no_common_version([99]),
            "no common protocol version: the daemon offers [99], this plugin speaks [1]\n"
            "hint: upgrade the older of the two (the sgevents daemon or this plugin's SDK)",
        )


class DecodeTests(_support.TestCase):
    def assertRefused(self, line: bytes, text: str) -> None:
        with self.assertRaises(DecodeError) as caught:
            decode_daemon_line(line)
        self.assertIn(text, str(caught.exception))

    def test_decodes_and_keeps_unknown_fields(self) -> None:
        msg = decode_daemon_line(b'{"type":"ping","nonce":7,"later":"field"}\n')
        self.assertEqual(msg, {"type": "ping", "nonce": 7, "later": "field"})
        hello = decode_daemon_line(b'{"type":"hello","protocols":[1],"plugin":"x"}')
        self.assertEqual(hello["plugin"], "x")

    def test_says_what_is_wrong(self) -> None:
        self.assertRefused(b"hello world", "line is not JSON")
        self.assertRefused(b"", "line is not JSON")
        self.assertRefused(b"[1,2]", "line is JSON but not an object")
        self.assertRefused(b'{"nonce":1}', "message has no string `type` field")
        self.assertRefused(b'{"type":7}', "message has no string `type` field")
        self.assertRefused(b'{"type":"pingg","nonce":1}', "unknown message type `pingg`")
        self.assertRefused(b'{"type":"ack","event_id":1}', "unknown message type `ack`")
        self.assertRefused(b'{"type":"ping","nonce":"12"}', "bad `ping` message")
        self.assertRefused(b'{"type":"ping","nonce":-1}', "bad `ping` message")
        self.assertRefused(b'{"type":"ping","nonce":true}', "bad `ping` message")
        self.assertRefused(b'{"type":"ping","nonce":1.5}', "bad `ping` message")
        self.assertRefused(b'{"type":"ping"}', "missing field `nonce`")
        self.assertRefused(b'{"type":"shutdown","drain_ms":NaN}', "line is not JSON")
        self.assertRefused(b'{"type":"hello","protocols":[1]}', "missing field `plugin`")
        self.assertRefused(b'{"type":"hello","protocols":[1],"plugin":"x","config":[]}', "`config`")
        self.assertRefused(b'{"type":"ping\xff"}', "not valid UTF-8 (bad byte after 13 bytes)")

    def test_checks_event_fields(self) -> None:
        good = {
            "type": "event", "event_id": 1, "attempt": 1, "subscriptions": ["a"],
            "deadline_ms": 30000, "event": {"id": 1, "event_type": None, "entity": None},
        }
        self.assertEqual(decode_daemon_line(json.dumps(good).encode())["event_id"], 1)
        for key, value, text in [
            ("attempt", -1, "`attempt`"),
            ("subscriptions", "a", "`subscriptions`"),
            ("event", {"event_type": "x"}, "missing field `id`"),
            ("event", {"id": 1, "entity": {"id": 3}}, "missing field `type`"),
            ("event", {"id": 1, "project": {"type": "Project", "id": "66"}}, "`id`"),
        ]:
            bad = dict(good, **{key: value})
            with self.subTest(key=key, value=value):
                self.assertRefused(json.dumps(bad).encode(), text)


class EncodeTests(_support.TestCase):
    def test_encodes_one_compact_line(self) -> None:
        line = encode({"type": "fatal", "error": "two\nlines"})
        self.assertEqual(line, b'{"type":"fatal","error":"two\\nlines"}\n')
        self.assertEqual(line.count(b"\n"), 1)

    def test_keeps_unicode_as_utf8(self) -> None:
        self.assertEqual(encode({"error": "é"}), '{"error":"é"}\n'.encode("utf-8"))

    def test_excerpts_cut_on_char_boundaries(self) -> None:
        self.assertEqual(excerpt(b"short\n", 10), "short")
        self.assertEqual(excerpt("ééééé".encode("utf-8"), 3), "é... (10 bytes in all)")
        self.assertEqual(excerpt(b"head", 10, total=100), "head... (100 bytes in all)")


class LineReaderTests(_support.TestCase):
    def read_all(self, data: bytes, limit: int, capacity: int) -> List[Union[bytes, TooLong, None]]:
        reader = LineReader(io.BufferedReader(io.BytesIO(data), buffer_size=capacity), limit)
        got: List[Union[bytes, TooLong, None]] = []
        while True:
            item = reader.read()
            got.append(item)
            if item is None:
                return got

    def test_limits_and_resyncs(self) -> None:
        for capacity in (1, 2, 3, 64):
            with self.subTest(capacity=capacity):
                self.assertEqual(
                    self.read_all(b"abc\n0123456789\nxy\n\nlast", 5, capacity),
                    [b"abc", TooLong(10, b"012345"), b"xy", b"", b"last", None],
                )

    def test_accepts_exactly_the_limit(self) -> None:
        self.assertEqual(
            self.read_all(b"12345\n123456", 5, 4), [b"12345", TooLong(6, b"123456"), None]
        )


class RegisterValidationTests(_support.TestCase):
    def register(self, subs: List[Dict[str, Any]], window: object = 1, protocol: int = 1) -> Dict[str, Any]:
        return {"type": "register", "protocol": protocol, "subscriptions": subs, "max_in_flight": window}

    def test_validation(self) -> None:
        one = [{"name": "a", "event_types": ["*"]}]
        self.assertIsNone(validate_register(self.register(one), [1]))
        self.assertIsNone(validate_register(self.register(one, 1024), [1]))
        problem = validate_register(self.register(one, protocol=1), [2])
        self.assertIn("the plugin chose protocol version `1`", str(problem))
        self.assertIn("hint:", str(problem))
        self.assertIn("max_in_flight `0` is out of range", str(validate_register(self.register(one, 0), [1])))
        self.assertIn("max_in_flight `1025` is out of range", str(validate_register(self.register(one, 1025), [1])))
        self.assertIn("out of range", str(validate_register(self.register(one, "4"), [1])))
        self.assertIn("no subscriptions", str(validate_register(self.register([]), [1])))
        dup = [{"name": "a", "event_types": ["*"]}, {"name": "a", "event_types": ["x"]}]
        self.assertIn("subscription name `a` is empty or used twice", str(validate_register(self.register(dup), [1])))
        self.assertIn("is empty or used twice", str(validate_register(self.register([{"name": "", "event_types": ["*"]}]), [1])))
        self.assertIn("subscription `a` lists no event types", str(validate_register(self.register([{"name": "a", "event_types": []}]), [1])))


class LogFormatTests(_support.TestCase):
    def test_single_lines_are_prefixed_text(self) -> None:
        self.assertEqual(
            [format_log_line(level, "one line") for level in LEVELS],
            ["E! one line\n", "W! one line\n", "I! one line\n", "D! one line\n", "T! one line\n"],
        )

    def test_multi_line_messages_are_one_json_line(self) -> None:
        for level in LEVELS:
            for message in ("Traceback:\n  line 1\nValueError: x", "carriage\rreturn"):
                line = format_log_line(level, message)
                self.assertTrue(line.endswith("\n"))
                self.assertEqual(line.count("\n"), 1, line)
                self.assertEqual(json.loads(line), {"level": level, "message": message})

    def test_python_levels_map_by_threshold(self) -> None:
        self.assertEqual(level_name(logging.CRITICAL), "error")
        self.assertEqual(level_name(logging.ERROR), "error")
        self.assertEqual(level_name(logging.WARNING), "warn")
        self.assertEqual(level_name(logging.INFO), "info")
        self.assertEqual(level_name(logging.DEBUG), "debug")
        self.assertEqual(level_name(5), "trace")


if __name__ == "__main__":
    unittest.main()
