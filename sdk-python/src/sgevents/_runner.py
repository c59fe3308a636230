"""The plugin's side of a session: the reading loop, the worker threads and the output lock.

`serve` runs one session over any pair of binary streams and returns the exit status; `run_process`
wraps it for a real process (claims stdin/stdout, installs logging, exits), and `sgevents.testing`
drives the very same `serve` over in-memory streams.

Shape of a session:

- The calling thread reads stdin line by line and does everything cheap itself: the handshake,
  `pong`, `shutdown`, and refusing events after shutdown. Events go to a pool of at most
  `max_in_flight` worker threads, so a ping is answered while callbacks run.
- Every line written, by the loop or a worker, goes through `Output`: one lock, whole line, flushed.
- `fatal` is written under that lock, which is then never released for another line: in a real
  process `exit_now` ends the process from the thread that raised it (without waiting for other
  workers); in tests the session stops taking work and `serve` returns 125.
- At stdin's EOF the loop stops reading, lets the queued and running events finish and answer, and
  returns 0. After `shutdown` it keeps reading until EOF, answering new events with `nack`.
- If stdout is gone (the daemon went away) the session stops quietly once running callbacks end:
  the daemon will redeliver whatever was not answered.
"""

from __future__ import annotations

import collections
import logging
import os
import sys
import threading
import traceback
from typing import Any, Callable, Deque, Dict, List, Mapping, NoReturn, Optional, Protocol, Tuple

from ._context import Callback, Context, ShotgunConnections, read_credentials
from ._errors import CallbackError, Retry
from ._log import PrintToLog, ProtocolLogHandler, StreamSink, drop_std_stream_handlers, install
from ._protocol import (
    DEFAULT_MAX_LINE_BYTES,
    DecodeError,
    LineReader,
    LineSource,
    TooLong,
    choose_version,
    decode_daemon_line,
    encode,
    excerpt,
    no_common_version,
    validate_register,
)
from ._subscription import Subscription

_log = logging.getLogger("sgevents")

SHUTTING_DOWN = "plugin is shutting down"
"""The `nack` error of an event that arrives after `shutdown`."""
FATAL_EXIT = 125
"""The exit status after `fatal`."""


class Plugin(Protocol):
    """What a session needs of a plugin (`sgevents.Plugin` is one): its setup for one session,
    run at `hello` (subscriptions with their callbacks, the window, the alert recipients)."""

    def _prepare(self, config: Dict[str, Any]) -> Tuple[List[Tuple[Subscription, Callback]], Any, Any]: ...


class LineSink(Protocol):
    """What the loop writes to: a binary stream with `write(bytes)` and `flush()`."""

    def write(self, data: bytes, /) -> Any: ...

    def flush(self) -> Any: ...


class Output:
    """The protocol side of stdout: every message one whole line, written and flushed under one
    lock, so lines from the loop and the workers never interleave.

    A sender queues its line, then takes the lock; whoever holds the lock writes every line queued
    so far with one `write` and one `flush`. So when several answers are ready at once they go out
    together, and a line is never delayed: `send` returns only once its line is written (by itself
    or by the thread that held the lock before it).
    """

    def __init__(self, stream: LineSink, on_gone: Callable[[BaseException], None]) -> None:
        self._stream = stream
        self._on_gone = on_gone
        self._lock = threading.Lock()
        self._closed = False
        self._queued: List[bytes] = []

    def send(self, message: Mapping[str, Any]) -> bool:
        """Writes one message; False when stdout is closed (or the session has ended)."""
        return self.send_line(encode(message))

    def send_line(self, data: bytes) -> bool:
        """Writes one already encoded line (newline included); False when stdout is closed."""
        self._queued.append(data)
        with self._lock:
            return self._write_queued()

    def send_last(self, message: Mapping[str, Any], then: Callable[[], None]) -> None:
        """Writes one message, closes the output for good and calls `then` still holding the lock,
        so nothing can be written after this message."""
        data = encode(message)
        with self._lock:
            self._queued.append(data)
            self._write_queued()
            self._closed = True
            then()

    def _write_queued(self) -> bool:
        # Called with the lock held. Senders only ever append to this one list (atomic under the
        # GIL); the holder of the lock takes the first `count` lines and deletes exactly those, so
        # a line appended meanwhile stays for the next holder (its own sender, at the latest).
        queued = self._queued
        if self._closed:
            queued.clear()
            return False
        count = len(queued)
        if count == 0:
            return True
        if count == 1:
            data = queued[0]
        else:
            data = b"".join(queued[:count])
        del queued[:count]
        try:
            self._stream.write(data)
            self._stream.flush()
        except (OSError, ValueError) as err:
            self._closed = True
            self._on_gone(err)
            return False
        return True


class _Worker:
    """One worker thread's hand-off slot: the pool puts a delivery here and releases `wake`."""

    __slots__ = ("wake", "delivery")

    def __init__(self) -> None:
        self.wake = threading.Lock()
        self.wake.acquire()
        self.delivery: Optional[Dict[str, Any]] = None


class _Pool:
    """Up to `size` worker threads running deliveries, started in arrival order.

    Threads start lazily, one more only when an event arrives and every started thread is busy,
    so a session never has more threads than events it had in flight at once. An event goes
    straight to one idle worker (waking only that one); when all `size` are busy it waits in a
    backlog that the workers empty in arrival order before going idle.
    """

    def __init__(self, size: int, handle: Callable[[Dict[str, Any]], None], stop: threading.Event) -> None:
        self._size = size
        self._handle = handle
        self._stop = stop
        self._lock = threading.Lock()
        self._pending = 0
        self._backlog: Deque[Dict[str, Any]] = collections.deque()
        self._idle: List[_Worker] = []
        self._threads: List[threading.Thread] = []
        self._closing = False

    @property
    def pending(self) -> int:
        """How many events are queued or running."""
        with self._lock:
            return self._pending

    def submit(self, delivery: Dict[str, Any]) -> None:
        with self._lock:
            self._pending += 1
            if self._idle:
                worker = self._idle.pop()
                worker.delivery = delivery
                worker.wake.release()
                return
            if len(self._threads) >= self._size:
                self._backlog.append(delivery)
                return
            thread = threading.Thread(
                target=self._work,
                args=(_Worker(), delivery),
                name=f"sgevents-worker-{len(self._threads) + 1}",
                daemon=True,
            )
            self._threads.append(thread)
        try:
            thread.start()
        except RuntimeError:
            # Out of threads: the ones already running take the event from the backlog.
            with self._lock:
                self._threads.remove(thread)
                if not self._threads:
                    self._pending -= 1
                    raise
                self._backlog.append(delivery)
            _log.warning("cannot start another worker thread; running with %d", len(self._threads))

    def close(self) -> None:
        """Lets every queued event run (unless the session stopped), then joins the workers."""
        with self._lock:
            self._closing = True
            idle, self._idle = self._idle, []
            threads = list(self._threads)
        for worker in idle:
            worker.delivery = None
            worker.wake.release()
        for thread in threads:
            thread.join()

    def _work(self, worker: _Worker, delivery: Optional[Dict[str, Any]]) -> None:
        handle = self._handle
        stop = self._stop
        lock = self._lock
        backlog = self._backlog
        while delivery is not None:
            try:
                if not stop.is_set():
                    handle(delivery)
            except Exception:
                _log.exception("event %s: the sgevents SDK failed (a bug in the SDK)", delivery.get("event_id"))
            with lock:
                self._pending -= 1
                if backlog:
                    delivery = backlog.popleft()
                    continue
                if self._closing:
                    return
                self._idle.append(worker)
            worker.wake.acquire()
            delivery = worker.delivery
            worker.delivery = None


class Session:
    """One session with the daemon, from `hello` to the end of stdin (see the module docs)."""

    def __init__(
        self,
        plugin: Plugin,
        stdout: LineSink,
        *,
        environ: Mapping[str, str],
        exit_now: Optional[Callable[[int], None]],
        max_line_bytes: int,
        shotgun: Any,
    ) -> None:
        self._plugin = plugin
        self._output = Output(stdout, self._stdout_gone)
        self._exit_now = exit_now
        self._max_line_bytes = max_line_bytes
        self._shotgun = shotgun
        # Credentials are read once, at start, like every SDK does.
        self._credentials, self._missing_credentials = read_credentials(environ)
        self._stop = threading.Event()
        self._exit_code = 0
        self._shutting_down = False
        self._pool: Optional[_Pool] = None
        self._callbacks: Dict[str, Callback] = {}
        self._loggers: Dict[str, logging.Logger] = {}
        self._plugin_name = ""
        self._config: Dict[str, Any] = {}
        self._connections = ShotgunConnections("", None, [])

    def run(self, stdin: LineSource) -> int:
        """Reads stdin until EOF (or until the session stops) and returns the exit status."""
        reader = LineReader(stdin, self._max_line_bytes)
        while not self._stop.is_set():
            try:
                line = reader.read()
            except (OSError, ValueError) as err:
                _log.error("cannot read stdin (%s); taking it as closed", err)
                line = None
            if line is None:
                self._log_eof()
                break
            if isinstance(line, TooLong):
                _log.error(
                    "ignoring a line of %d bytes from the daemon, over the limit of %d bytes: `%s`",
                    line.length,
                    self._max_line_bytes,
                    excerpt(line.head, total=line.length),
                )
                continue
            try:
                message = decode_daemon_line(line)
            except DecodeError as err:
                _log.error("ignoring a line from the daemon: %s: `%s`", err, excerpt(line))
                continue
            code = self._dispatch(message)
            if code is not None:
                return code
        if self._pool is not None:
            self._pool.close()
        return self._exit_code

    def _log_eof(self) -> None:
        if self._pool is None:
            _log.debug("stdin closed before `hello`; nothing to do")
        else:
            _log.debug("stdin closed; finishing %d event(s) in flight", self._pool.pending)

    def _dispatch(self, message: Dict[str, Any]) -> Optional[int]:
        kind = message["type"]
        if self._pool is None:
            if kind == "hello":
                return self._hello(message)
            _log.error("ignoring `%s`, which came before `hello`", kind)
        elif kind == "event":
            self._event(message)
        elif kind == "ping":
            self._output.send({"type": "pong", "nonce": message["nonce"]})
        elif kind == "shutdown":
            self._shutting_down = True
            _log.info(
                "shutdown asked: finishing %d event(s) in flight, taking no new ones",
                self._pool.pending,
            )
        else:
            _log.error("ignoring a second `hello`")
        return None

    def _hello(self, hello: Dict[str, Any]) -> Optional[int]:
        offered: List[int] = hello["protocols"]
        self._plugin_name = hello["plugin"]
        self._config = hello.get("config", {})
        version = choose_version(offered)
        if version is None:
            return self._refuse(no_common_version(offered))
        try:
            subscriptions, window, alerts = self._plugin._prepare(self._config)
        except CallbackError as err:
            return self._refuse(err.describe())
        except Exception:
            return self._refuse("the plugin's setup hook failed:\n" + _traceback())
        register: Dict[str, Any] = {
            "type": "register",
            "protocol": version,
            "subscriptions": [sub.to_wire() for sub, _ in subscriptions],
            "max_in_flight": window,
        }
        if alerts is not None:
            register["alerts"] = alerts
        problem = validate_register(register, offered)
        if problem is not None:
            return self._refuse(problem)
        self._callbacks = {sub.name: callback for sub, callback in subscriptions}
        self._loggers = {
            sub.name: logging.getLogger(f"plugin.{self._plugin_name}.{sub.name}") for sub, _ in subscriptions
        }
        self._connections = ShotgunConnections(
            self._plugin_name, self._credentials, self._missing_credentials, self._shotgun
        )
        if self._missing_credentials:
            _log.warning(
                "only some ShotGrid credentials are set (missing: %s); `ctx.sg` will not work",
                ", ".join(self._missing_credentials),
            )
        self._pool = _Pool(window, self._handle, self._stop)
        if self._output.send(register):
            _log.debug(
                "registered %d subscription(s) with protocol %d and max_in_flight %d",
                len(subscriptions),
                version,
                window,
            )
        return None

    def _refuse(self, error: str) -> int:
        _log.error("cannot start: %s", error)
        self._output.send_last({"type": "fatal", "error": error}, then=self._fatal_exit)
        return FATAL_EXIT

    def _fatal_exit(self) -> None:
        # Called with the output lock held, right after `fatal` was written.
        self._exit_code = FATAL_EXIT
        self._stop.set()
        if self._exit_now is not None:
            self._exit_now(FATAL_EXIT)

    def _stdout_gone(self, err: BaseException) -> None:
        _log.warning(
            "stdout is closed (%s): the daemon went away; stopping once running callbacks end", err
        )
        self._stop.set()

    def _event(self, delivery: Dict[str, Any]) -> None:
        assert self._pool is not None
        if self._shutting_down:
            _log.warning("event %d came after shutdown; answering nack", delivery["event_id"])
            self._output.send(
                {"type": "nack", "event_id": delivery["event_id"], "error": SHUTTING_DOWN}
            )
            return
        self._pool.submit(delivery)

    def _handle(self, delivery: Dict[str, Any]) -> None:
        """Runs one event's callbacks on a worker thread and answers it."""
        event_id: int = delivery["event_id"]
        names: List[str] = delivery["subscriptions"]
        # A name the plugin does not know is a daemon bug: refuse the event before any callback
        # runs, rather than run half of it.
        for name in names:
            if name not in self._callbacks:
                error = f'no callback for subscription "{name}" in this plugin'
                _log.error("event %d: %s; answering term", event_id, error)
                self._output.send({"type": "term", "event_id": event_id, "error": error})
                return
        matched = tuple(names)
        for name in names:
            ctx = self._context(delivery, name, matched)
            try:
                self._callbacks[name](ctx, delivery["event"])
            except CallbackError as err:
                self._answer_error(delivery, name, err)
                return
            except (Exception, SystemExit):
                error = _traceback()
                _log.warning(
                    "event %d failed in `%s` (attempt %d); answering nack:\n%s",
                    event_id,
                    name,
                    delivery["attempt"],
                    error,
                )
                self._output.send({"type": "nack", "event_id": event_id, "error": error})
                return
        # The bytes `encode({"type": "ack", "event_id": event_id})` gives, without the JSON encoder.
        self._output.send_line(b'{"type":"ack","event_id":%d}\n' % event_id)

    def _answer_error(self, delivery: Dict[str, Any], name: str, err: CallbackError) -> None:
        event_id: int = delivery["event_id"]
        error = err.describe()
        where = f"event {event_id} in `{name}` (attempt {delivery['attempt']})"
        if err.answer == "fatal":
            _log.error("%s: the plugin cannot go on; answering fatal and exiting: %s", where, error)
            self._output.send_last({"type": "fatal", "error": error}, then=self._fatal_exit)
        elif err.answer == "term":
            _log.error("%s can never succeed; answering term: %s", where, error)
            self._output.send({"type": "term", "event_id": event_id, "error": error})
        else:
            nack: Dict[str, Any] = {"type": "nack", "event_id": event_id, "error": error}
            delay = err.retry_after_ms if isinstance(err, Retry) else None
            if delay is not None:
                nack["retry_after_ms"] = delay
            _log.warning(
                "%s failed; answering nack%s: %s",
                where,
                "" if delay is None else f" with a retry in {delay} ms",
                error,
            )
            self._output.send(nack)

    def _context(self, delivery: Dict[str, Any], name: str, matched: Tuple[str, ...]) -> Context:
        event_id: int = delivery["event_id"]
        return Context(
            plugin_name=self._plugin_name,
            config=self._config,
            event_id=event_id,
            attempt=delivery["attempt"],
            deadline_ms=delivery["deadline_ms"],
            subscription=name,
            subscriptions=matched,
            log=self._loggers.get(name),
            credentials=self._credentials,
            progress=lambda: self._progress(event_id),
            connections=self._connections,
        )

    def _progress(self, event_id: int) -> None:
        self._output.send({"type": "progress", "event_id": event_id})


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _traceback() -> str:
    """The traceback of the exception being handled, without the SDK's own leading frames (the
    loop that called the callback), which say nothing about what went wrong."""
    kind, value, tb = sys.exc_info()
    while tb is not None and os.path.dirname(os.path.abspath(tb.tb_frame.f_code.co_filename)) == _PACKAGE_DIR:
        tb = tb.tb_next
    return "".join(traceback.format_exception(kind, value, tb)).rstrip("\n")


def serve(
    plugin: Plugin,
    stdin: LineSource,
    stdout: LineSink,
    *,
    environ: Optional[Mapping[str, str]] = None,
    exit_now: Optional[Callable[[int], None]] = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    shotgun: Any = None,
) -> int:
    """Runs one session of `plugin` over `stdin` (needs `readline(size)`) and `stdout` (needs
    `write(bytes)` and `flush()`), and returns the exit status: 0, or 125 after `fatal`.

    `environ` (default `os.environ`) holds the credentials. `exit_now(status)`, when given, is
    called right after `fatal` is written, from whichever thread wrote it; a real process exits
    there. `shotgun`, when given, is what `ctx.sg` returns.
    """
    session = Session(
        plugin,
        stdout,
        environ=os.environ if environ is None else environ,
        exit_now=exit_now,
        max_line_bytes=max_line_bytes,
        shotgun=shotgun,
    )
    return session.run(stdin)


class _FdWriter:
    """Writes to a file descriptor with no buffer: `write` loops until every byte is out, so a
    line is never left half-written in a buffer (not even at exit, after the reader went away)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        return len(data)

    def flush(self) -> None:
        pass


_STDIN_BUFFER = 256 * 1024


def _claim_stdio() -> Tuple[LineSource, LineSink]:
    """Takes the process's stdin and stdout for the protocol, out of user code's reach.

    The protocol keeps private copies of file descriptors 0 and 1; fd 0 then reads /dev/null and
    fd 1 becomes a copy of stderr. So a child process the plugin starts (which inherits 0 and 1)
    cannot eat the daemon's messages or write into the protocol: its output lands in the log.
    If the descriptors cannot be moved, the streams are used as they are.
    """
    try:
        sys.stdout.flush()
        proto_in = os.dup(0)
        proto_out = os.dup(1)
    except (OSError, AttributeError, ValueError):
        return sys.stdin.buffer, sys.stdout.buffer
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        try:
            os.dup2(null, 0)
        finally:
            os.close(null)
        os.dup2(2, 1)
    except OSError:
        pass
    # A large read buffer: one `read` takes in every line the daemon has written so far (a pipe
    # read returns what is there; it never waits to fill the buffer).
    return os.fdopen(proto_in, "rb", buffering=_STDIN_BUFFER), _FdWriter(proto_out)


def run_process(plugin: Plugin) -> NoReturn:
    """`Plugin.run`: one session over the real stdin/stdout, then exit (see `Plugin.run`)."""
    stdin, stdout = _claim_stdio()
    stderr = sys.stderr
    drop_std_stream_handlers()
    install(
        ProtocolLogHandler(StreamSink(stderr.buffer, stderr)),
        sdk_level=logging.INFO,
        root_level=logging.INFO,
    )
    logging.captureWarnings(True)
    printer = PrintToLog()
    sys.stdout = printer

    def exit_now(status: int) -> NoReturn:
        printer.close_lines()
        try:
            stderr.flush()
        finally:
            os._exit(status)

    try:
        status = serve(plugin, stdin, stdout, environ=os.environ, exit_now=exit_now)
    except KeyboardInterrupt:
        _log.warning("interrupted")
        exit_now(130)
    except Exception:
        _log.exception("the sgevents SDK failed (a bug in the SDK)")
        exit_now(1)
    printer.close_lines()
    if status != 0:
        exit_now(status)
    sys.exit(0)
