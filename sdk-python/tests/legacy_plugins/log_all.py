"""A shotgunEvents plugin that logs every event it gets: one line per event id, appended to the
file named by `LEGACY_OUT`, or an info record on its logger when that variable is not set.

It never touches `sg`, so it runs without `shotgun_api3` installed. Its script credentials come
from `LOG_ALL_SCRIPT_NAME` / `LOG_ALL_SCRIPT_KEY`, like the incumbent's examples (any value does).
"""

import logging
import os


def registerCallbacks(reg):
    reg.logger.setLevel(logging.DEBUG)
    reg.registerCallback(
        os.environ.get("LOG_ALL_SCRIPT_NAME", "log_all"),
        os.environ.get("LOG_ALL_SCRIPT_KEY", "unused"),
        log_event,
        matchEvents=None,
        args={"out": os.environ.get("LEGACY_OUT")},
    )


def log_event(sg, logger, event, args):
    if args["out"]:
        with open(args["out"], "a", encoding="utf-8") as out:
            out.write("%d\n" % event["id"])
    else:
        logger.info("event %d: %s", event["id"], event["event_type"])
