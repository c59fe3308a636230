"""A shotgunEvents plugin written the incumbent's way, relying on the event being what
`shotgun_api3` returns: when a Shot's delivery (`sg_delivery_at`, a `date_time` field) changes,
every Task of the Shot gets the new delivery (`sg_delivery_at`, a datetime written back through
`sg`), its local date (`sg_delivery_date`) and a note saying when, in local time.

It reads its script credentials with `os.environ[...]` at registration (a KeyError without them),
checks `event["type"]`, that `sg` is a `shotgun_api3.Shotgun`, that `created_at` is an aware
datetime it can `strftime` and compare with `datetime.now(tz)`, and that `meta["new_value"]` is a
datetime; anything else raises, so the plugin stops at that event (stopOnError=True).
"""

import datetime
import os

import shotgun_api3
from shotgun_api3 import sg_timezone


def registerCallbacks(reg):
    matchEvents = {"Shotgun_Shot_Change": ["sg_delivery_at"]}
    reg.registerCallback(
        os.environ["SGDAEMON_DELIVERY_NAME"],
        os.environ["SGDAEMON_DELIVERY_KEY"],
        delivery_changed,
        matchEvents,
        None,
    )


def delivery_changed(sg, logger, event, args):
    if event["type"] != "EventLogEntry":
        raise ValueError("not an EventLogEntry: %r" % (event.get("type"),))
    if not isinstance(sg, shotgun_api3.Shotgun):
        raise TypeError("sg is not a shotgun_api3.Shotgun: %r" % (sg,))
    created = event["created_at"]
    now = datetime.datetime.now(sg_timezone.local)
    if created > now:
        raise ValueError("event %d was created in the future: %s" % (event["id"], created))
    # What shotgunEvents itself did with it (naive local time).
    if datetime.datetime.now() - created.replace(tzinfo=None) > datetime.timedelta(minutes=5):
        logger.info("event %d is more than five minutes old", event["id"])
    delivery = event["meta"]["new_value"]
    if delivery is None:
        logger.info("Shot %d has no delivery any more", event["entity"]["id"])
        return
    if not isinstance(delivery, datetime.datetime):
        raise TypeError("meta.new_value is not a datetime: %r" % (delivery,))
    shot = event["entity"]
    note = "delivery %s (changed %s)" % (
        delivery.strftime("%a %d %b %Y %H:%M %Z"),
        created.strftime("%Y-%m-%d %H:%M %Z"),
    )
    for task in sg.find("Task", [["entity", "is", shot]], ["content"]):
        sg.update(
            "Task",
            task["id"],
            {"sg_delivery_at": delivery, "sg_delivery_date": delivery.date(), "sg_delivery_note": note},
        )
        logger.info("Task %d (%s): %s", task["id"], task["content"], note)
