#!/usr/bin/env python3
"""count_events: an sgevents plugin written from protocol/PROTOCOL.md alone, with no SDK.

It subscribes to every event, counts them by event type, and logs the counts every `report_every`
events (from its config, default 1000) and when it stops. Standard library only.
"""
import collections
import json
import sys

counts = collections.Counter()
report_every = 1000


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def log(level, text):
    sys.stderr.write("%s! %s\n" % (level, text))
    sys.stderr.flush()


def report():
    summary = ", ".join("%s=%d" % item for item in sorted(counts.items()))
    log("I", "%d events: %s" % (sum(counts.values()), summary or "none"))


for line in sys.stdin:
    if not line.strip():
        continue
    try:
        message = json.loads(line)
    except ValueError:
        log("E", "ignoring a line that is not JSON: %r" % line[:200])
        continue
    kind = message.get("type")
    if kind == "hello":
        if 1 not in message.get("protocols", []):
            send({"type": "fatal", "error": "no common protocol version: offered %s, I speak [1]"
                  % message.get("protocols")})
            sys.exit(125)
        report_every = int(message.get("config", {}).get("report_every", report_every))
        send({"type": "register", "protocol": 1, "max_in_flight": 1,
              "subscriptions": [{"name": "count", "event_types": ["*"]}]})
    elif kind == "event":
        counts[message["event"].get("event_type") or "(none)"] += 1
        send({"type": "ack", "event_id": message["event_id"]})
        if sum(counts.values()) % report_every == 0:
            report()
    elif kind == "ping":
        send({"type": "pong", "nonce": message["nonce"]})
    elif kind == "shutdown":
        pass  # nothing is in flight between two lines: wait for the end of stdin
    else:
        log("E", "ignoring a message of unknown type %r" % kind)

report()
