"""The wire format of protocol version 1: the only module of the SDK that knows how lines look.

It mirrors `protocol/src/message.rs` (messages and version constants), `protocol/src/codec.rs`
(decoding, encoding, the bounded line reader) and the `register` checks of
`protocol/src/subscription.rs`, including their error texts, so that both SDKs say the same thing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple, Union

PROTOCOL_V1 = 1
"""Protocol version 1, the version this SDK speaks."""
CURRENT = PROTOCOL_V1
"""The newest version this SDK speaks."""
SUPPORTED: Tuple[int, ...] = (PROTOCOL_V1,)
"""Every version this SDK can speak, oldest first."""
DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024
"""The longest line either side must accept, in bytes, newline excluded: 16 MiB."""
DEFAULT_MAX_IN_FLIGHT = 1
"""The window a plugin asks for unless it says otherwise."""
MAX_IN_FLIGHT_LIMIT = 1024
"""The largest window a plugin may ask for."""

EXCERPT_BYTES = 200
"""How much of a bad line a log message quotes."""

_U32_MAX = 2**32 - 1
_U64_MAX = 2**64 - 1
_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1

DAEMON_KINDS = ("hello", "event", "ping", "shutdown")
"""The `type` of every message the daemon may send."""


def choose_version(offered: Sequence[int]) -> Optional[int]:
    """The newest version that both `offered` and `SUPPORTED` contain, or None."""
    for version in reversed(SUPPORTED):
        if version in offered:
            return version
    return None


def no_common_version(offered: Sequence[int]) -> str:
    """The `fatal` error of a handshake that found no common version."""
    return (
        f"no common protocol version: the daemon offers {list(offered)}, "
        f"this plugin speaks {list(SUPPORTED)}\n"
        "hint: upgrade the older of the two (the sgevents daemon or this plugin's SDK)"
    )


class DecodeError(ValueError):
    """A line from the daemon that is not a valid daemon message; the text says why."""


class _FieldError(Exception):
    pass


def decode_daemon_line(line: bytes) -> Dict[str, Any]:
    """Decodes one line written by the daemon (trailing whitespace allowed) into a dict.

    Checks what `sgevents_protocol::decode_daemon_line` checks: UTF-8, JSON, an object, a known
    string `type`, and the type and range of every field the message defines. Unknown fields are
    kept (the protocol may grow by adding fields).
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DecodeError(f"line is not valid UTF-8 (bad byte after {err.start} bytes)") from None
    try:
        value = _DECODER.decode(text)
    except (ValueError, RecursionError) as err:
        raise DecodeError(f"line is not JSON: {err}") from None
    if not isinstance(value, dict):
        raise DecodeError("line is JSON but not an object")
    kind = value.get("type")
    if not isinstance(kind, str):
        raise DecodeError("message has no string `type` field")
    if kind not in DAEMON_KINDS:
        raise DecodeError(f"unknown message type `{kind}`")
    try:
        _CHECKS[kind](value)
    except _FieldError as err:
        raise DecodeError(f"bad `{kind}` message: {err}") from None
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"`{name}` is not valid JSON")


# What `json.loads(text, parse_constant=_reject_constant)` builds on every call, built once.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _field(obj: Mapping[str, Any], key: str) -> Any:
    if key not in obj:
        raise _FieldError(f"missing field `{key}`")
    return obj[key]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(value: Any, key: str, low: int, high: int, what: str) -> None:
    if not _is_int(value) or not low <= value <= high:
        raise _FieldError(f"`{key}` must be {what}, got {json.dumps(value)}")


def _u32(obj: Mapping[str, Any], key: str) -> None:
    _check_int(_field(obj, key), key, 0, _U32_MAX, "an unsigned 32-bit integer")


def _u64(obj: Mapping[str, Any], key: str) -> None:
    _check_int(_field(obj, key), key, 0, _U64_MAX, "an unsigned 64-bit integer")


def _i64(obj: Mapping[str, Any], key: str) -> None:
    _check_int(_field(obj, key), key, _I64_MIN, _I64_MAX, "a 64-bit integer")


def _optional_str(obj: Mapping[str, Any], key: str) -> None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise _FieldError(f"`{key}` must be a string or null, got {json.dumps(value)}")


def _check_hello(msg: Mapping[str, Any]) -> None:
    protocols = _field(msg, "protocols")
    if not isinstance(protocols, list):
        raise _FieldError("`protocols` must be a list of versions")
    for version in protocols:
        _check_int(version, "protocols", 0, _U32_MAX, "a list of unsigned 32-bit integers")
    if not isinstance(_field(msg, "plugin"), str):
        raise _FieldError("`plugin` must be a string")
    if "config" in msg and not isinstance(msg["config"], dict):
        raise _FieldError("`config` must be an object")


def _check_link(event: Mapping[str, Any], key: str) -> None:
    link = event.get(key)
    if link is None:
        return
    if not isinstance(link, dict):
        raise _FieldError(f"`event.{key}` must be an entity link or null")
    if not isinstance(_field(link, "type"), str):
        raise _FieldError(f"`event.{key}.type` must be a string")
    _i64(link, "id")
    _optional_str(link, "name")


def _event_is_plainly_valid(msg: Mapping[str, Any]) -> bool:
    """True when the event passes every check of `_check_event`, tested inline for speed.

    Any doubt (a missing key, another type, a value out of range) gives False, and then
    `_check_event` runs the checks one by one to find the error to report. `type(x) is int` rules
    out `bool` as `_is_int` does; JSON decoding makes no other subclass of int or str.
    """
    try:
        event = msg["event"]
        event_id = msg["event_id"]
        attempt = msg["attempt"]
        deadline = msg["deadline_ms"]
        subscriptions = msg["subscriptions"]
        if not (
            type(event_id) is int
            and _I64_MIN <= event_id <= _I64_MAX
            and type(attempt) is int
            and 0 <= attempt <= _U32_MAX
            and type(deadline) is int
            and 0 <= deadline <= _U64_MAX
            and type(subscriptions) is list
            and type(event) is dict
        ):
            return False
        for name in subscriptions:
            if type(name) is not str:
                return False
        event_get = event.get
        ident = event["id"]
        if not (type(ident) is int and _I64_MIN <= ident <= _I64_MAX):
            return False
        for key in ("event_type", "attribute_name", "session_uuid", "created_at", "description"):
            value = event_get(key)
            if value is not None and type(value) is not str:
                return False
        for key in ("entity", "user", "project"):
            link = event_get(key)
            if link is None:
                continue
            if type(link) is not dict:
                return False
            ident = link["id"]
            name = link.get("name")
            if not (
                type(link["type"]) is str
                and type(ident) is int
                and _I64_MIN <= ident <= _I64_MAX
                and (name is None or type(name) is str)
            ):
                return False
    except (KeyError, TypeError):
        return False
    return True


def _check_event(msg: Mapping[str, Any]) -> None:
    if _event_is_plainly_valid(msg):
        return
    _i64(msg, "event_id")
    _u32(msg, "attempt")
    subscriptions = _field(msg, "subscriptions")
    if not isinstance(subscriptions, list) or not all(isinstance(s, str) for s in subscriptions):
        raise _FieldError("`subscriptions` must be a list of names")
    _u64(msg, "deadline_ms")
    event = _field(msg, "event")
    if not isinstance(event, dict):
        raise _FieldError("`event` must be an object")
    _i64(event, "id")
    for key in ("event_type", "attribute_name", "session_uuid", "created_at", "description"):
        _optional_str(event, key)
    for key in ("entity", "user", "project"):
        _check_link(event, key)


def _check_ping(msg: Mapping[str, Any]) -> None:
    _u64(msg, "nonce")


def _check_shutdown(msg: Mapping[str, Any]) -> None:
    _u64(msg, "drain_ms")


_CHECKS = {
    "hello": _check_hello,
    "event": _check_event,
    "ping": _check_ping,
    "shutdown": _check_shutdown,
}


def encode(message: Mapping[str, Any]) -> bytes:
    """Encodes a message as one line, newline included.

    JSON escapes every control character inside strings, so the result holds no newline but the
    last one.
    """
    text = json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8", "replace") + b"\n"


def excerpt(line: bytes, max_bytes: int = EXCERPT_BYTES, total: Optional[int] = None) -> str:
    """The start of `line` for a log message: at most `max_bytes`, cut on a character boundary,
    with an ellipsis and the full length (`total`, else `len(line)`) when cut."""
    total = len(line) if total is None else total
    text = line.decode("utf-8", "replace").rstrip("\r\n")
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes and total <= len(line):
        return text
    cut = encoded[:max_bytes].decode("utf-8", "ignore")
    return f"{cut}... ({total} bytes in all)"


class LineSource(Protocol):
    """What the loop reads from: a binary stream with `readline(size)` (stdin, a pipe, BytesIO)."""

    def readline(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class TooLong:
    """A line longer than the limit, read and thrown away: its length and its first bytes."""

    length: int
    head: bytes


class LineReader:
    """Reads `\\n`-terminated lines, holding at most `max_bytes` of one line in memory.

    A longer line is consumed up to its newline and reported as `TooLong`, so one bad line never
    costs unbounded memory and the stream stays in step. A last line without a newline is still a
    line. `stream` needs only `readline(size)`.
    """

    def __init__(self, stream: LineSource, max_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self._stream = stream
        self._max = max_bytes

    def read(self) -> Union[bytes, TooLong, None]:
        """The next line without its newline, `TooLong`, or None at the end of the stream."""
        chunk = self._stream.readline(self._max + 1)
        if not chunk:
            return None
        if chunk.endswith(b"\n"):
            return chunk[:-1]
        if len(chunk) <= self._max:
            return chunk
        head = chunk[:EXCERPT_BYTES]
        length = len(chunk)
        while True:
            rest = self._stream.readline(64 * 1024)
            if not rest:
                return TooLong(length, head)
            if rest.endswith(b"\n"):
                return TooLong(length + len(rest) - 1, head)
            length += len(rest)


def validate_register(register: Mapping[str, Any], offered: Sequence[int]) -> Optional[str]:
    """Checks a `register` message like `sgevents_protocol::Register::validate`.

    Returns None when it is acceptable, else the error text (the `fatal` message to send).
    """
    chosen = register.get("protocol")
    if chosen not in offered:
        return (
            f"the plugin chose protocol version `{chosen}`, which the daemon did not offer "
            f"(offered: {list(offered)})\nhint: upgrade the older side; the plugin must choose one "
            "of the offered versions"
        )
    window = register.get("max_in_flight")
    if not (isinstance(window, int) and not isinstance(window, bool) and 1 <= window <= MAX_IN_FLIGHT_LIMIT):
        return (
            f"max_in_flight `{window!r}` is out of range\n"
            f"hint: ask for 1 to {MAX_IN_FLIGHT_LIMIT}"
        )
    alerts = register.get("alerts")
    if not (
        alerts is None
        or isinstance(alerts, bool)
        or (isinstance(alerts, list) and all(isinstance(a, str) and a for a in alerts))
    ):
        return (
            f"alerts `{json.dumps(alerts, default=repr)}` is not true, false or a list of addresses\n"
            'hint: send true (the daemon\'s recipients), false (nobody) or ["td@studio.com"]'
        )
    subscriptions: List[Mapping[str, Any]] = list(register.get("subscriptions") or [])
    if not subscriptions:
        return (
            "the plugin registered no subscriptions, so it would never receive an event\n"
            "hint: register at least one, or answer `fatal` saying why there is nothing to do"
        )
    seen = set()
    for sub in subscriptions:
        name = sub.get("name", "")
        if not name or name in seen:
            return (
                f"subscription name `{name}` is empty or used twice\n"
                "hint: give each subscription its own non-empty name"
            )
        seen.add(name)
        if not sub.get("event_types"):
            return (
                f"subscription `{name}` lists no event types\n"
                'hint: add a pattern such as "Shotgun_Task_Change", or "*" for every event'
            )
    return None
