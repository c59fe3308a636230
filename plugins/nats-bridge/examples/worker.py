#!/usr/bin/env python3
"""A worker of the sgevents NATS bridge: consumes ShotGrid events from JetStream with nats-py.

Run as many as you like, on any machines: every worker started with the same `--durable` name
shares one durable pull consumer, so each event goes to one worker, and an event whose worker dies
or fails is delivered again (to any worker) after `--ack-wait`, at most `--max-deliver` times.

    pip install nats-py
    python3 worker.py --server nats://nats1:4222 --durable publish-versions \\
        --filter 'sgevents.mystudio.Shotgun_Version_New'

Put the work in `handle()`. Return normally to acknowledge the event; raise `Retry` to have it
delivered again after a delay; raise `Skip` to drop it for good (terminated, never redelivered).
An event that fails `--max-deliver` times is dropped by JetStream, which announces it on
`$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<durable>` (see the README: the dead letters).

The message body is the event exactly as sgevents sent it to the bridge (the JSON of an
EventLogEntry); its headers carry `Sgevents-Event-Id`, `Sgevents-Event-Type`,
`Sgevents-Created-At` and `Nats-Msg-Id` (`<site>:<event_id>`). A worker must be idempotent on the
event id: after a crash an event may be processed twice (at-least-once, like every sgevents plugin).

`--record FILE` appends the id of every acknowledged event to FILE (the tests use it).
"""

import argparse
import asyncio
import json
import logging
import signal
import sys

import nats
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

log = logging.getLogger("worker")


class Retry(Exception):
    """The event failed this time; deliver it again after `delay` seconds."""

    def __init__(self, message, delay=5.0):
        super().__init__(message)
        self.delay = delay


class Skip(Exception):
    """The event can never succeed: do not deliver it again."""


def handle(event):
    """The work for one event. Replace with yours (start a render, move files, call ShotGrid)."""
    log.debug("event %s %s on %s", event["id"], event.get("event_type"), event.get("entity"))


async def run(args):
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    nc = await nats.connect(
        servers=args.server,
        name=f"sgevents-worker {args.durable}",
        max_reconnect_attempts=-1,  # forever: a server restart is a pause, not the end
        reconnect_time_wait=1,
    )
    js = nc.jetstream()
    config = ConsumerConfig(
        durable_name=args.durable,
        ack_policy=AckPolicy.EXPLICIT,  # every event is acknowledged by the worker that did it
        ack_wait=args.ack_wait,  # seconds before an unacknowledged event goes to another worker
        max_deliver=args.max_deliver,  # then JetStream gives up and announces it (the DLQ)
        max_ack_pending=args.max_ack_pending,  # 1 keeps the filter subject's events in order
        filter_subject=args.filter,
        deliver_policy=DeliverPolicy.ALL,
    )
    # Creates the durable consumer the first time, binds to it afterwards (every worker, any host).
    sub = await js.pull_subscribe(args.filter, durable=args.durable, stream=args.stream, config=config)
    record = open(args.record, "a", buffering=1) if args.record else None
    log.info("consuming `%s` from stream %s as %s", args.filter, args.stream, args.durable)
    while not stop.is_set():
        try:
            messages = await sub.fetch(batch=args.batch, timeout=1)
        except NatsTimeout:
            continue  # nothing to do right now
        except Exception as error:  # the server restarting: wait and fetch again
            log.warning("fetch failed: %s", error)
            await asyncio.sleep(1)
            continue
        for msg in messages:
            event = json.loads(msg.data)
            try:
                handle(event)
            except Retry as error:
                log.warning("event %s: %s; retrying in %ss", event["id"], error, error.delay)
                await msg.nak(delay=error.delay)
                continue
            except Skip as error:
                log.error("event %s can never succeed: %s", event["id"], error)
                await msg.term()
                continue
            except Exception:
                log.exception("event %s failed; it is delivered again after %ss", event["id"], args.ack_wait)
                await msg.nak(delay=args.ack_wait)
                continue
            # Acknowledge and wait for the server's confirmation, so that a crash right after
            # does not bring the event back.
            await msg.ack_sync()
            if record:
                record.write(f"{event['id']}\n")
    await nc.drain()
    if record:
        record.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", action="append", help="NATS server URL (repeat for a cluster)")
    parser.add_argument("--stream", default="SGEVENTS")
    parser.add_argument("--durable", default="workers", help="the consumer's name, shared by the pool")
    parser.add_argument("--filter", default="sgevents.>", help="the subjects this kind of work takes")
    parser.add_argument("--ack-wait", type=float, default=60.0, help="seconds to finish an event")
    parser.add_argument("--max-deliver", type=int, default=5)
    parser.add_argument("--max-ack-pending", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--record", help="append the id of each acknowledged event to this file")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    args.server = args.server or ["nats://127.0.0.1:4222"]
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
