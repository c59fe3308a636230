"""Run a plugin in memory, the way the daemon would, and look at what it answered.

```python
from sgevents.testing import PluginRunner, Delivery

result = PluginRunner(plugin).run(
    [task_event, Delivery(other_event, attempt=2)],
    config={"final_status": "fin"},
)
assert result.answer(task_event["id"]) == {"type": "ack", "event_id": task_event["id"]}
assert ("info", "task 67378 is now fin") in result.logs
```

The runner plays the daemon: it sends `hello` (with `config`), reads `register`, then sends each
event addressed to the subscriptions that match it under the daemon's own rules (an event that
matches none is not sent, and is listed in `RunResult.undelivered`), closes stdin and waits for the
plugin to finish. The plugin runs through the same loop as `Plugin.run()`, over in-memory streams:
its worker threads, its answers, its logs. The differences: nothing touches the process's real
stdin/stdout, the environment is the one you pass (empty by default), and `Fatal` ends the session
with exit status 125 instead of ending the test process.

For step-by-step control (answer a ping while a callback is busy, close stdin mid-event), use
`PluginRunner.start()`, which returns a `LiveSession`.

Runners install their log capture on the root logger and swap `sys.stdout` while they run, so run
one at a time.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import (
    Any,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from ._log import PrintToLog, ProtocolLogHandler, install
from ._plugin import Plugin
from ._protocol import SUPPORTED, encode
from ._runner import serve
from ._subscription import Subscription, matching_subscriptions

__all__ = ["Delivery", "LiveSession", "PluginRunner", "RunResult", "GUARD_SECONDS", "legacy_runner"]

GUARD_SECONDS = 20.0
"""How long a `LiveSession` waits for the plugin before it gives up: a guard against a hung
plugin, not a measurement."""

_ANSWERS = ("ack", "nack", "term", "fatal")


@dataclass
class Delivery:
    """An event to deliver, with the delivery's details when the defaults do not do.

    `subscriptions` defaults to the names of the plugin's subscriptions that match the event;
    `event_id` to `event["id"]`.
    """

    event: Mapping[str, Any]
    attempt: int = 1
    subscriptions: Optional[Sequence[str]] = None
    deadline_ms: int = 30000
    event_id: Optional[int] = None


@dataclass
class RunResult:
    """What the plugin did in one session."""

    register: Optional[Dict[str, Any]]
    """The `register` message, or None when the plugin refused the handshake."""
    messages: List[Dict[str, Any]]
    """Every line the plugin wrote, decoded, in order (`register` included)."""
    exit_code: int
    """0 after a normal end, 125 after `fatal`."""
    logs: List[Tuple[str, str]]
    """Every log record as (level, message); levels are `error`, `warn`, `info`, `debug`,
    `trace`. Prints appear as `info` records."""
    undelivered: List[int] = field(default_factory=list)
    """The ids of the events that matched no subscription, so were not sent."""

    @property
    def answers(self) -> List[Dict[str, Any]]:
        """The `ack`, `nack`, `term` and `fatal` messages, in the order they were written."""
        return [m for m in self.messages if m.get("type") in _ANSWERS]

    @property
    def fatal(self) -> Optional[str]:
        """The error of the `fatal` message, if the plugin sent one."""
        for message in self.messages:
            if message.get("type") == "fatal":
                return str(message.get("error", ""))
        return None

    def answer(self, event_id: int) -> Dict[str, Any]:
        """The last `ack`/`nack`/`term` for `event_id`; KeyError if it got none."""
        found = [m for m in self.answers if m.get("event_id") == event_id]
        if not found:
            raise KeyError(f"event {event_id} got no answer; messages: {self.messages}")
        return found[-1]

    def progress(self, event_id: int) -> int:
        """How many `progress` messages the plugin sent for `event_id`."""
        return sum(
            1 for m in self.messages if m.get("type") == "progress" and m.get("event_id") == event_id
        )


class PluginRunner:
    """Runs a `Plugin` in memory (see the module docs).

    `plugin_name` is the `hello.plugin` it gets (and names its loggers); `environ` is where its
    credentials are read from (`SGEVENTS_SITE_URL`, ...; default: none); `sg`, when given, is the
    object `ctx.sg` returns, such as a fake `shotgun_api3.Shotgun`.
    """

    def __init__(
        self,
        plugin: Plugin,
        *,
        plugin_name: str = "test",
        environ: Optional[Mapping[str, str]] = None,
        sg: Any = None,
    ) -> None:
        self.plugin = plugin
        self.plugin_name = plugin_name
        self.environ: Mapping[str, str] = dict(environ or {})
        self.sg = sg

    def run(
        self,
        events: Iterable[Union[Mapping[str, Any], Delivery]],
        config: Optional[Mapping[str, Any]] = None,
    ) -> RunResult:
        """Handshake, deliver every event (a plain event dict, or a `Delivery`), close stdin, and
        return what the plugin did once it has exited."""
        with self.start(config) as session:
            if session.register is not None:
                for item in events:
                    session.deliver(item)
            return session.finish()

    def start(
        self, config: Optional[Mapping[str, Any]] = None, protocols: Sequence[int] = SUPPORTED
    ) -> "LiveSession":
        """Starts a session, sends `hello` and waits for the answer (`LiveSession.register`)."""
        return LiveSession(self, dict(config or {}), list(protocols))


def legacy_runner(
    path: str,
    *,
    shotgun_class: Any = None,
    environ: Optional[Mapping[str, str]] = None,
) -> PluginRunner:
    """A `PluginRunner` for the shotgunEvents plugin file at `path`, run by `sgevents.legacy`.

    ```python
    result = legacy_runner("plugins/legacy/shot_to_task.py", shotgun_class=FakeShotgun).run(
        [event], config={"site_url": "https://studio.shotgrid.autodesk.com", "use_session_uuid": True}
    )
    ```

    `config` is the `hello.config` the daemon sends legacy plugins (`site_url`, `proxy`,
    `use_session_uuid`, `ca_certs`). `shotgun_class`, when given, is called instead of
    `shotgun_api3.Shotgun` (with the same arguments) to make each callback's `sg`. The file is
    loaded into the test process: its folder goes first on `sys.path` and the module into
    `sys.modules` under the file's stem, which is also the plugin's name.
    """
    from .legacy import legacy_plugin

    stem = os.path.splitext(os.path.basename(path))[0]
    return PluginRunner(legacy_plugin(path, shotgun_class=shotgun_class), plugin_name=stem, environ=environ)


class LiveSession:
    """A session with a plugin running on a background thread, driven step by step.

    Use it as a context manager (or call `finish`). `register` is the plugin's `register`
    message, or None if it answered `fatal`. Every wait is bounded by `GUARD_SECONDS`.
    """

    def __init__(self, runner: PluginRunner, config: Dict[str, Any], protocols: List[int]) -> None:
        self._input = _Pipe()
        self._output = _MessageSink()
        self._logs = _LogSink()
        self._undelivered: List[int] = []
        self._status: Optional[int] = None
        self._error: Optional[BaseException] = None
        self._result: Optional[RunResult] = None
        self._saved_stdout = sys.stdout
        self._printer = PrintToLog()
        self._undo_logging = install(
            ProtocolLogHandler(self._logs), sdk_level=logging.DEBUG, root_level=None
        )
        sys.stdout = self._printer
        self._thread = threading.Thread(
            target=self._serve, args=(runner,), name="sgevents-testing-session", daemon=True
        )
        self._thread.start()
        self.register: Optional[Dict[str, Any]] = None
        self._subscriptions: List[Subscription] = []
        self.send({"type": "hello", "protocols": protocols, "plugin": runner.plugin_name, "config": config})
        try:
            first = self.read()
        except BaseException:
            self.finish()
            raise
        if first.get("type") == "register":
            self.register = first
            self._subscriptions = [Subscription.from_wire(s) for s in first["subscriptions"]]

    def _serve(self, runner: PluginRunner) -> None:
        try:
            self._status = serve(
                runner.plugin, self._input, self._output, environ=runner.environ, shotgun=runner.sg
            )
        except BaseException as err:  # surfaced by finish()
            self._error = err
        finally:
            self._output.close()

    def __enter__(self) -> "LiveSession":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.finish()

    @property
    def logs(self) -> List[Tuple[str, str]]:
        """The log records so far, as (level, message)."""
        return self._logs.snapshot()

    def send(self, message: Mapping[str, Any]) -> None:
        """Writes one daemon message to the plugin's stdin."""
        self._input.write(encode(message))

    def send_line(self, line: bytes) -> None:
        """Writes raw bytes to the plugin's stdin, a newline added (for malformed lines)."""
        self._input.write(line + b"\n")

    def deliver(
        self,
        event: Union[Mapping[str, Any], Delivery],
        *,
        attempt: Optional[int] = None,
        subscriptions: Optional[Sequence[str]] = None,
    ) -> bool:
        """Sends one event, addressed to the subscriptions that match it unless told otherwise.

        Returns False (and sends nothing) when no subscription matches, as the daemon would.
        """
        delivery = event if isinstance(event, Delivery) else Delivery(event)
        if attempt is not None:
            delivery = dataclasses.replace(delivery, attempt=attempt)
        if subscriptions is not None:
            delivery = dataclasses.replace(delivery, subscriptions=subscriptions)
        event_id = delivery.event_id if delivery.event_id is not None else delivery.event["id"]
        names = delivery.subscriptions
        if names is None:
            names = matching_subscriptions(self._subscriptions, delivery.event)
            if not names:
                self._undelivered.append(event_id)
                return False
        self.send(
            {
                "type": "event",
                "event_id": event_id,
                "attempt": delivery.attempt,
                "subscriptions": list(names),
                "deadline_ms": delivery.deadline_ms,
                "event": dict(delivery.event),
            }
        )
        return True

    def read(self, timeout: float = GUARD_SECONDS) -> Dict[str, Any]:
        """The next message the plugin writes. Raises `TimeoutError` if none comes in time and
        `EOFError` if the plugin closed its output."""
        return self._output.next(timeout)

    def wait_for_log(self, text: str, timeout: float = GUARD_SECONDS) -> Tuple[str, str]:
        """Waits for a log record whose message contains `text` and returns it."""
        return self._logs.wait_for(text, timeout)

    def close(self) -> None:
        """Closes the plugin's stdin (the daemon's EOF)."""
        self._input.close()

    def finish(self, timeout: float = GUARD_SECONDS) -> RunResult:
        """Closes stdin, waits for the plugin to end, and returns what it did."""
        if self._result is not None:
            return self._result
        self.close()
        self._thread.join(timeout)
        self._printer.close_lines()
        sys.stdout = self._saved_stdout
        self._undo_logging()
        if self._thread.is_alive():
            raise TimeoutError(f"the plugin did not finish within {timeout} s")
        if self._error is not None:
            raise self._error
        assert self._status is not None
        self._result = RunResult(
            register=self.register,
            messages=self._output.all(),
            exit_code=self._status,
            logs=self._logs.snapshot(),
            undelivered=list(self._undelivered),
        )
        return self._result


class _Pipe:
    """A blocking in-memory byte pipe: the plugin's stdin. `readline(size)` blocks until a whole
    line, `size` bytes or the end are there."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._closed = False
        self._cond = threading.Condition()

    def write(self, data: bytes) -> None:
        with self._cond:
            if self._closed:
                raise ValueError("the plugin's stdin is already closed")
            self._buffer += data
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def readline(self, size: int = -1) -> bytes:
        with self._cond:
            while True:
                end = self._buffer.find(b"\n")
                if end >= 0:
                    n = end + 1 if size < 0 else min(end + 1, size)
                elif 0 <= size <= len(self._buffer):
                    n = size
                elif self._closed:
                    n = len(self._buffer)
                else:
                    self._cond.wait()
                    continue
                line = bytes(self._buffer[:n])
                del self._buffer[:n]
                return line


class _MessageSink:
    """The plugin's stdout: decodes each line, keeps them all and queues them for `next`."""

    def __init__(self) -> None:
        self._partial = b""
        self._messages: List[Dict[str, Any]] = []
        self._read = 0
        self._closed = False
        self._cond = threading.Condition()

    def write(self, data: bytes) -> int:
        with self._cond:
            lines = (self._partial + data).split(b"\n")
            self._partial = lines.pop()
            for line in lines:
                self._messages.append(json.loads(line))
            self._cond.notify_all()
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def next(self, timeout: float) -> Dict[str, Any]:
        with self._cond:
            ready = self._cond.wait_for(
                lambda: self._read < len(self._messages) or self._closed, timeout
            )
            if self._read < len(self._messages):
                self._read += 1
                return self._messages[self._read - 1]
            if ready:
                raise EOFError("the plugin closed its output")
            raise TimeoutError(f"the plugin wrote nothing within {timeout} s")

    def all(self) -> List[Dict[str, Any]]:
        with self._cond:
            return list(self._messages)


class _LogSink:
    """Collects log records as (level, message)."""

    def __init__(self) -> None:
        self._records: List[Tuple[str, str]] = []
        self._cond = threading.Condition()

    def __call__(self, level: str, message: str) -> None:
        with self._cond:
            self._records.append((level, message))
            self._cond.notify_all()

    def snapshot(self) -> List[Tuple[str, str]]:
        with self._cond:
            return list(self._records)

    def wait_for(self, text: str, timeout: float) -> Tuple[str, str]:
        found: List[Tuple[str, str]] = []

        def seen() -> bool:
            found[:] = [r for r in self._records if text in r[1]]
            return bool(found)

        with self._cond:
            if not self._cond.wait_for(seen, timeout):
                raise TimeoutError(f"no log record containing {text!r} within {timeout} s")
            return found[0]
