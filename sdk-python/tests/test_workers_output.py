"""The worker pool and the output lock in detail: the pool starts threads only as events need them
yet still runs a whole window at once and queues what is beyond it; `Output` batches lines without
losing, splitting or delaying any."""

from __future__ import annotations

import threading
import unittest
from typing import Any, Dict, List

import _support
from _support import GUARD, shot_new_event
from sgevents import Context, Plugin
from sgevents._runner import Output, _Pool
from sgevents.testing import PluginRunner


class PoolTests(_support.TestCase):
    def test_a_full_window_runs_at_once_and_the_rest_waits_its_turn(self) -> None:
        window = 8
        plugin = Plugin(max_in_flight=window)
        barrier = threading.Barrier(window, timeout=GUARD)
        seen: List[int] = []

        def callback(ctx: Context, event: Dict[str, Any]) -> None:
            if event["id"] <= window:
                barrier.wait()
            seen.append(event["id"])

        plugin.subscribe(callback, ["*"], name="meet")
        result = PluginRunner(plugin).run([shot_new_event(i) for i in range(1, 3 * window + 1)])
        self.assertEqual(sorted(a["event_id"] for a in result.answers), list(range(1, 3 * window + 1)))
        self.assertEqual({a["type"] for a in result.answers}, {"ack"}, result.answers)
        self.assertEqual(sorted(seen), list(range(1, 3 * window + 1)))

    def test_threads_start_only_when_events_need_them(self) -> None:
        plugin = Plugin(max_in_flight=32)
        names: List[str] = []
        plugin.subscribe(lambda ctx, event: names.append(threading.current_thread().name), ["*"], name="n")
        with PluginRunner(plugin).start() as session:
            for i in range(1, 6):
                session.deliver(shot_new_event(i))
                self.assertEqual(session.read(), {"type": "ack", "event_id": i})
        self.assertEqual(len(names), 5)
        self.assertEqual(set(names), {"sgevents-worker-1"})

    def test_close_runs_the_backlog_then_joins(self) -> None:
        stop = threading.Event()
        release = threading.Event()
        done: List[int] = []

        def handle(delivery: Dict[str, Any]) -> None:
            if not release.wait(GUARD):
                raise RuntimeError("never released")
            done.append(delivery["event_id"])

        pool = _Pool(2, handle, stop)
        for i in range(1, 7):
            pool.submit({"event_id": i})
        self.assertEqual(pool.pending, 6)
        release.set()
        pool.close()
        self.assertEqual(sorted(done), [1, 2, 3, 4, 5, 6])
        self.assertEqual(pool.pending, 0)


class SlowStream:
    """A stream whose writes give other threads time to queue lines meanwhile."""

    def __init__(self) -> None:
        self.chunks: List[bytes] = []
        self.flushes = 0
        self._busy = threading.Lock()

    def write(self, data: bytes) -> int:
        if not self._busy.acquire(blocking=False):
            raise AssertionError("two writes at once")
        try:
            threading.Event().wait(0.0005)
            self.chunks.append(bytes(data))
        finally:
            self._busy.release()
        return len(data)

    def flush(self) -> None:
        self.flushes += 1


class OutputTests(unittest.TestCase):
    def test_lines_from_many_threads_are_each_written_once_whole_and_before_send_returns(self) -> None:
        stream = SlowStream()
        output = Output(stream, lambda err: None)
        threads, per_thread = 16, 50
        missing: List[bytes] = []

        def sender(t: int) -> None:
            for i in range(per_thread):
                line = b'{"type":"ack","event_id":%d}\n' % (t * 1000 + i)
                self.assertTrue(output.send_line(line))
                if line not in b"".join(stream.chunks):
                    missing.append(line)

        workers = [threading.Thread(target=sender, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(GUARD)
        self.assertEqual(missing, [])
        lines = b"".join(stream.chunks).split(b"\n")
        self.assertEqual(lines[-1], b"")
        expected = sorted(b'{"type":"ack","event_id":%d}' % (t * 1000 + i) for t in range(threads) for i in range(per_thread))
        self.assertEqual(sorted(lines[:-1]), expected)
        self.assertTrue(all(chunk.endswith(b"\n") for chunk in stream.chunks))

    def test_nothing_is_written_after_the_last_line(self) -> None:
        stream = SlowStream()
        output = Output(stream, lambda err: None)
        self.assertTrue(output.send({"type": "ack", "event_id": 1}))
        output.send_last({"type": "fatal", "error": "x"}, then=lambda: None)
        self.assertFalse(output.send({"type": "ack", "event_id": 2}))
        self.assertEqual(b"".join(stream.chunks), b'{"type":"ack","event_id":1}\n{"type":"fatal","error":"x"}\n')


if __name__ == "__main__":
    unittest.main()
