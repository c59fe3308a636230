"""Logging in the format of a plugin's stderr (`protocol/src/log.rs`), and the stand-in for
`sys.stdout` that keeps user prints off the protocol.

One record is one line: a single-line message as `"I! message"` (prefix by level: `E!` `W!` `I!`
`D!` `T!`), a message holding a newline (a traceback) as a JSON object
`{"level":"error","message":"..."}`. Python levels map to protocol levels by threshold: ERROR and
above is error, WARNING warn, INFO info, DEBUG debug, anything lower trace.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
from typing import Any, BinaryIO, Callable, Dict, List, Optional, TextIO

LEVELS = ("error", "warn", "info", "debug", "trace")
"""The protocol's levels, most severe first."""

_PREFIXES = {"error": "E!", "warn": "W!", "info": "I!", "debug": "D!", "trace": "T!"}

PRINT_LOGGER = "sgevents.print"
"""The logger that receives what user code prints."""
SDK_LOGGER = "sgevents"
"""The logger of the SDK's own messages (bad lines, failed events)."""
PLUGIN_LOGGER = "plugin"
"""The parent of every callback's logger, `plugin.<plugin name>.<subscription name>`."""

Sink = Callable[[str, str], None]
"""Receives one record as (protocol level, message)."""


def level_name(levelno: int) -> str:
    """The protocol level of a Python logging level."""
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warn"
    if levelno >= logging.INFO:
        return "info"
    if levelno >= logging.DEBUG:
        return "debug"
    return "trace"


def format_log_line(level: str, message: str) -> str:
    """One record as one stderr line, newline included: prefixed text when the message is one
    line, a JSON object otherwise (like `sgevents_protocol::log::format_log_line`)."""
    if "\n" in message or "\r" in message:
        record = {"level": level, "message": message}
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
    return f"{_PREFIXES[level]} {message}\n"


class ProtocolLogHandler(logging.Handler):
    """A logging handler that hands each record, as (level, message), to a sink.

    The message is the formatted record: the text, then the traceback when the record carries one;
    trailing line breaks are dropped (they would turn a one-line message into a JSON record). Records are emitted under the handler's lock, so lines from different threads never interleave.
    """

    def __init__(self, sink: Sink) -> None:
        super().__init__(logging.NOTSET)
        self._sink = sink
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._sink(level_name(record.levelno), self.format(record).rstrip("\r\n"))
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


class StreamSink:
    """Writes records to a binary stream (the real stderr) in the protocol's format, one whole line
    per write, flushed at once. `text` is the text layer over the same file, flushed first so
    whatever was written to it earlier comes out first."""

    def __init__(self, stream: BinaryIO, text: Optional[TextIO] = None) -> None:
        self._stream = stream
        self._text = text

    def __call__(self, level: str, message: str) -> None:
        if self._text is not None:
            self._text.flush()
        self._stream.write(format_log_line(level, message).encode("utf-8", "backslashreplace"))
        self._stream.flush()


class _Levels:
    """Saves the levels `install` changes, to put them back."""

    def __init__(self, names: List[str]) -> None:
        self._saved = {name: logging.getLogger(name).level for name in names}

    def restore(self) -> None:
        for name, level in self._saved.items():
            logging.getLogger(name).setLevel(level)


def install(handler: logging.Handler, *, sdk_level: int, root_level: Optional[int]) -> Callable[[], None]:
    """Routes every log record of the process to `handler`, and returns a function that undoes it.

    The handler goes on the root logger, which `plugin.*` and `sgevents.*` propagate to, so user
    code's own loggers and libraries' loggers come out in the same format. The `plugin` logger is
    set to DEBUG (unless the plugin set a level already): a callback's debug records are the
    plugin's to emit and the daemon's to filter. `root_level`, when given, replaces the default
    WARNING of the root logger so that libraries' info records come out too.
    """
    root = logging.getLogger()
    levels = _Levels(["", PLUGIN_LOGGER, SDK_LOGGER])
    if root_level is not None and root.level == logging.WARNING:
        root.setLevel(root_level)
    plugin = logging.getLogger(PLUGIN_LOGGER)
    if plugin.level == logging.NOTSET:
        plugin.setLevel(logging.DEBUG)
    sdk = logging.getLogger(SDK_LOGGER)
    if sdk.level == logging.NOTSET:
        sdk.setLevel(sdk_level)
    root.addHandler(handler)

    def undo() -> None:
        root.removeHandler(handler)
        levels.restore()

    return undo


def drop_std_stream_handlers() -> None:
    """Removes root handlers that write to the standard streams (what `logging.basicConfig` adds),
    which would print every record a second time in another format."""
    root = logging.getLogger()
    std = {id(s) for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__) if s is not None}
    for handler in list(root.handlers):
        if type(handler) is logging.StreamHandler and id(handler.stream) in std:
            root.removeHandler(handler)


class PrintToLog(io.TextIOBase):
    """Stands in for `sys.stdout`: every printed line becomes an info record of `sgevents.print`.

    Lines are assembled per thread, so two callbacks printing at once do not mix their words. A
    partial line waits for its newline (or `close_lines`). `fileno()` is refused: the file
    descriptor behind the real stdout carries the protocol.
    """

    def __init__(self, logger: Optional[logging.Logger] = None) -> None:
        super().__init__()
        self._logger = logger or logging.getLogger(PRINT_LOGGER)
        self._lock = threading.Lock()
        self._pending: Dict[int, str] = {}
        self._busy = threading.local()
        self._buffer = _BytesToText(self)

    encoding = "utf-8"
    errors = "strict"

    @property
    def buffer(self) -> "_BytesToText":
        """A binary view: bytes written to it are decoded as UTF-8 and logged the same way."""
        return self._buffer

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise io.UnsupportedOperation(
            "stdout is reserved for the sgevents protocol; print() output goes to the log"
        )

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if getattr(self._busy, "on", False):
            # A handler that writes to sys.stdout (a StreamHandler made after the swap) would loop
            # back here; the record already went to stderr through the SDK's handler.
            return len(text)
        key = threading.get_ident()
        with self._lock:
            lines = (self._pending.pop(key, "") + text).split("\n")
            if lines[-1]:
                self._pending[key] = lines[-1]
        self._busy.on = True
        try:
            for line in lines[:-1]:
                self._logger.info("%s", line)
        finally:
            self._busy.on = False
        return len(text)

    def flush(self) -> None:
        # A partial line waits for its newline: flushing after every print (print(..., flush=True))
        # must not split lines.
        pass

    def close_lines(self) -> None:
        """Logs every partial line still waiting for its newline."""
        with self._lock:
            pending = list(self._pending.values())
            self._pending.clear()
        for line in pending:
            self._logger.info("%s", line)


class _BytesToText(io.RawIOBase):
    """The `buffer` of `PrintToLog`: bytes are decoded and written to the text side."""

    def __init__(self, text: PrintToLog) -> None:
        super().__init__()
        self._text = text

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = bytes(data)
        self._text.write(view.decode("utf-8", "replace"))
        return len(view)
