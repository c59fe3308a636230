"""Write sgevents plugins in Python.

An sgevents plugin is a process the sgevents daemon starts; the daemon hands it ShotGrid
`EventLogEntry` events as JSON lines on stdin and reads its answers on stdout. This package hides
that protocol: declare subscriptions, write callbacks, call `run()`.

```python
from sgevents import Plugin, Retry, Skip, Fatal

plugin = Plugin()

@plugin.on("Shotgun_Task_Change", attributes=["sg_status_list"])
def on_status(ctx, event):
    ctx.log.info("task %s is now %s", event["entity"]["id"], event["meta"]["new_value"])

if __name__ == "__main__":
    plugin.run()
```

A callback `callback(ctx, event)` gets the event as the plain dict `shotgun_api3` returns, and a
`Context`: `ctx.log`, `ctx.config`, `ctx.attempt`, `ctx.event_id`, `ctx.progress()`, `ctx.sg` (a
`shotgun_api3.Shotgun` with the plugin's own credentials, made on first use). Returning normally
acknowledges the event. Raising chooses another answer: `Retry` (deliver again later, optionally
after a delay), `Skip` (can never succeed: recorded as failed), `Fatal` (the plugin cannot go on:
it is disabled at this event), anything else (retried, with the traceback recorded).

## Theory of operation

- `Plugin.run()` claims the process's standard streams: stdin and stdout carry the protocol only
  (`print()` and child processes' output go to stderr as log lines), and logging goes to stderr in
  the daemon's format (`I! message`, JSON for multi-line messages).
- The main thread reads stdin and answers pings itself, so the daemon sees the plugin alive while
  callbacks run; events run on `max_in_flight` worker threads (1 by default: one at a time, in
  order). Each event's callbacks run in registration order; the first failure decides the answer.
- At stdin's end (or after `shutdown`) the events already handed over finish and are answered,
  then the process exits 0. `Fatal` writes `fatal` and exits 125 at once.
- `sgevents.testing.PluginRunner` runs the same loop in memory for tests.
- `python3 -m sgevents.legacy PATH` (`sgevents.legacy`) runs a shotgunEvents plugin file unchanged
  through the same loop.

The wire format is specified in the sgevents repository under `protocol/`.
"""

from ._context import Callback, Context, Credentials, Event
from ._errors import (
    CallbackError,
    Fatal,
    MissingCredentials,
    Retry,
    SdkError,
    ShotgunNotInstalled,
    Skip,
)
from ._plugin import Plugin, SetupHook
from ._protocol import CURRENT, MAX_IN_FLIGHT_LIMIT, SUPPORTED
from ._subscription import Subscription

__version__ = "0.1.0"

__all__ = [
    "CURRENT",
    "MAX_IN_FLIGHT_LIMIT",
    "SUPPORTED",
    "Callback",
    "CallbackError",
    "Context",
    "Credentials",
    "Event",
    "Fatal",
    "MissingCredentials",
    "Plugin",
    "Retry",
    "SdkError",
    "SetupHook",
    "ShotgunNotInstalled",
    "Skip",
    "Subscription",
    "__version__",
]
