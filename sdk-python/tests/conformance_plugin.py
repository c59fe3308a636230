#!/usr/bin/env python3
"""The conformance plugin of the Python SDK (spec: protocol/transcripts/README.md).

An ordinary plugin, written with the public API only, whose behaviour each transcript chooses:
the subscriptions and the window come from `hello.config`, and each event's `conformance` field
says what its callbacks do. The transcript tests run it as a real process.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

try:
    import sgevents  # noqa: F401
except ImportError:  # run from a checkout without PYTHONPATH: use the SDK next door
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from sgevents import Context, Fatal, Plugin, Retry, Skip

plugin = Plugin()

# Per delivery (event id, attempt): the subscriptions whose callbacks ran so far.
_called: Dict[Tuple[int, int], List[str]] = {}
_called_lock = threading.Lock()


@plugin.setup
def configure(plugin: Plugin, config: Dict[str, Any]) -> None:
    for sub in config.get("subscriptions", []):
        plugin.subscribe(
            callback,
            sub["event_types"],
            name=sub["name"],
            attributes=sub.get("attributes"),
            entity_types=sub.get("entity_types"),
            project_ids=sub.get("project_ids"),
            skip_transient=sub.get("skip_transient", False),
        )
    plugin.max_in_flight = config.get("max_in_flight", 1)


def callback(ctx: Context, event: Dict[str, Any]) -> None:
    with _called_lock:
        called = _called.setdefault((ctx.event_id, ctx.attempt), [])
        called.append(ctx.subscription)
        names = list(called)
    spec = event.get("conformance") or {"action": "ack"}
    action = spec.get("action", "ack")
    if "in" in spec and spec["in"] != ctx.subscription:
        return
    if "attempts" in spec and ctx.attempt > spec["attempts"]:
        return
    error = spec.get("error", "")
    if action == "ack":
        return
    if action == "nack":
        if "in" in spec:
            error = f"{error} [called: {','.join(names)}]"
        if "retry_after_ms" in spec:
            raise Retry(error, retry_after=spec["retry_after_ms"] / 1000)
        raise RuntimeError(error)
    if action == "term":
        raise Skip(error)
    if action == "fatal":
        raise Fatal(error)
    if action == "slow":
        sleep_s = spec.get("sleep_ms", 0) / 1000
        progress = spec.get("progress", 0)
        for _ in range(progress):
            ctx.progress()
            time.sleep(sleep_s)
        if progress == 0:
            time.sleep(sleep_s)
        return
    raise RuntimeError(f"unknown conformance action `{action}`")


if __name__ == "__main__":
    plugin.run()
