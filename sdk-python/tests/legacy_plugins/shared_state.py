"""A shotgunEvents plugin whose two callbacks share state through the same `args` dict.

`count_event` adds one to `args["count"]` for every event; `report_count`, registered second,
sees the count after that and records it: one line `<event id> <count>` appended to the file
named by `LEGACY_OUT`, else an info record. So after events 7, 8, 9 the file reads
`7 1`, `8 2`, `9 3`: callbacks run in registration order and `args` is the same object every time.
"""

import os


def registerCallbacks(reg):
    name = os.environ.get("SHARED_STATE_SCRIPT_NAME", "shared_state")
    key = os.environ.get("SHARED_STATE_SCRIPT_KEY", "unused")
    state = {"count": 0, "out": os.environ.get("LEGACY_OUT")}
    reg.registerCallback(name, key, count_event, None, state)
    reg.registerCallback(name, key, report_count, None, state)


def count_event(sg, logger, event, args):
    args["count"] += 1


def report_count(sg, logger, event, args):
    if args["out"]:
        with open(args["out"], "a", encoding="utf-8") as out:
            out.write("%d %d\n" % (event["id"], args["count"]))
    else:
        logger.info("event %d: count is %d", event["id"], args["count"])
