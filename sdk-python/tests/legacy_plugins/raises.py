"""A shotgunEvents plugin whose callbacks fail on purpose, one with each `stopOnError`.

- `fails_on_even` (stopOnError=False) raises on every event with an even id: the event is
  answered `term` (recorded as failed) and the plugin moves on.
- `fails_on_boom` (stopOnError=True), registered second, raises when the event's
  `attribute_name` is `"boom"`: the plugin answers `fatal` and is disabled at that event.

Each callback first appends `<callback> <event id>` to the file named by `LEGACY_OUT` (when set),
so a test can see that `fails_on_boom` still ran after `fails_on_even` failed.
"""

import os


def registerCallbacks(reg):
    name = os.environ.get("RAISES_SCRIPT_NAME", "raises")
    key = os.environ.get("RAISES_SCRIPT_KEY", "unused")
    out = os.environ.get("LEGACY_OUT")
    reg.registerCallback(name, key, fails_on_even, None, out, stopOnError=False)
    reg.registerCallback(name, key, fails_on_boom, None, out, stopOnError=True)


def _note(out, callback, event):
    if out:
        with open(out, "a", encoding="utf-8") as file:
            file.write("%s %d\n" % (callback, event["id"]))


def fails_on_even(sg, logger, event, args):
    _note(args, "fails_on_even", event)
    if event["id"] % 2 == 0:
        raise ValueError("event %d has an even id" % event["id"])


def fails_on_boom(sg, logger, event, args):
    _note(args, "fails_on_boom", event)
    if event.get("attribute_name") == "boom":
        raise RuntimeError("boom on event %d" % event["id"])
