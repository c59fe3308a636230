#!/usr/bin/env python3
"""A no-op plugin: subscribes to every event and acknowledges it at once, doing nothing else.

It measures what the protocol and the Python SDK cost on their own (see `BENCHMARKS.md`). The
window comes from the `max_in_flight` key of the plugin's `config` table (1 to 64, default 1):

    [plugin.noop]
    command = ["python3", "sdk-python/examples/noop.py"]
    env = { PYTHONPATH = "sdk-python/src" }
    config = { max_in_flight = 32 }
"""

from __future__ import annotations

from typing import Any, Dict

from sgevents import Context, Fatal, Plugin

plugin = Plugin()


@plugin.setup
def setup(plugin: Plugin, config: Dict[str, Any]) -> None:
    window = config.get("max_in_flight", 1)
    if isinstance(window, bool) or not isinstance(window, int):
        raise Fatal(f"config `max_in_flight` must be an integer from 1 to 64, got {window!r}")
    plugin.max_in_flight = window


@plugin.on("*", name="all")
def ignore(ctx: Context, event: Dict[str, Any]) -> None:
    pass


if __name__ == "__main__":
    plugin.run()
