#!/usr/bin/env python3
"""Task status ledger and parent roll-up: an sgevents plugin written with the Python SDK.

On every change of a Task's `sg_status_list` (transient events skipped) it:

1. appends the transition to a per-day JSON-lines ledger, `<ledger_dir>/<YYYY-MM-DD>.jsonl` (the
   day the change happened, UTC), with the event id, the task, the old and new status, the user,
   the project and the time. A redelivered event whose id is already in that day's file is not
   written again, so the ledger holds each transition once;
2. when the new status is the final one, logs it and, if `update_parent` is on and the daemon
   gave the plugin ShotGrid credentials, sets the status of the Task's parent entity (its Shot,
   Asset, ...) to the final status too, once every Task of that parent is final (Tasks whose status
   is in `ignored_statuses` do not count). This is the incumbent framework's
   `task_status_update_entity_status` idea.

ShotGrid errors answer `nack` with a retry after `retry_after_s`; a Task without a parent answers
`term` (retrying cannot give it one). The parent step is idempotent, so a redelivery after a
failed update simply tries again.

Config (the plugin's `config` table in the daemon's configuration), all optional:

| key | default | meaning |
|---|---|---|
| `ledger_dir` | `var/task_status` | where the ledger files go (relative to the working directory) |
| `final_status` | `fin` | the status that means done |
| `update_parent` | false | roll the final status up to the parent entity |
| `ignored_statuses` | `["na", "omt"]` | Task statuses that neither block nor count for the roll-up |
| `retry_after_s` | 60 | delay before a redelivery after a ShotGrid error |
"""

from __future__ import annotations

import datetime
import json
import os
import re
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Set

from sgevents import Context, Plugin, Retry, Skip

DEFAULT_LEDGER_DIR = "var/task_status"
DEFAULT_FINAL_STATUS = "fin"
DEFAULT_IGNORED_STATUSES = ("na", "omt")
DEFAULT_RETRY_AFTER_S = 60.0

plugin = Plugin()

# Ledger files are read and appended under one lock, so two events of the same day handled at
# once (with a larger max_in_flight) cannot both miss each other's line.
_ledger_lock = threading.Lock()
# The event ids already in each ledger file, loaded on first use (see `append_once`).
_known_ids: Dict[Path, Set[Any]] = {}


@plugin.on("Shotgun_Task_Change", attributes=["sg_status_list"], skip_transient=True)
def on_task_status(ctx: Context, event: Dict[str, Any]) -> None:
    """Records the transition, then rolls a final status up to the parent entity."""
    meta = event.get("meta") or {}
    task = event.get("entity") or {"type": "Task", "id": meta.get("entity_id")}
    old_status, new_status = meta.get("old_value"), meta.get("new_value")
    record = {
        "event_id": ctx.event_id,
        "time": event.get("created_at"),
        "task": _link(task),
        "old_status": old_status,
        "new_status": new_status,
        "user": _link(event.get("user")),
        "project": _link(event.get("project")),
    }
    ledger_dir = Path(ctx.config.get("ledger_dir", DEFAULT_LEDGER_DIR))
    path = ledger_dir / f"{_day(event.get('created_at'))}.jsonl"
    if append_once(path, record):
        ctx.log.info("task %s: %s -> %s (ledger %s)", task.get("id"), old_status, new_status, path)
    else:
        ctx.log.info("event %s is already in %s; not writing it again", ctx.event_id, path)

    final = ctx.config.get("final_status", DEFAULT_FINAL_STATUS)
    if new_status != final:
        return
    ctx.log.info("task %s (%s) is final (%s)", task.get("id"), task.get("name"), final)
    if not ctx.config.get("update_parent"):
        return
    if ctx.credentials is None:
        ctx.log.warning(
            "update_parent is on but the plugin has no ShotGrid credentials; "
            "not updating the parent of task %s",
            task.get("id"),
        )
        return
    update_parent(ctx, task["id"], final)


def update_parent(ctx: Context, task_id: int, final: str) -> None:
    """Sets the parent of `task_id` to `final` once all its Tasks are final."""
    ignored = set(ctx.config.get("ignored_statuses", DEFAULT_IGNORED_STATUSES))
    retry_after = float(ctx.config.get("retry_after_s", DEFAULT_RETRY_AFTER_S))
    sg = ctx.sg

    def shotgrid(what: str, call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except Exception as err:
            raise Retry(f"shotgrid request failed: {what}", retry_after=retry_after) from err

    task = shotgrid(f"read Task {task_id}", sg.find_one, "Task", [["id", "is", task_id]], ["entity"])
    if task is None:
        raise Skip(f"task {task_id} no longer exists in ShotGrid, so it has no parent to update")
    parent = task.get("entity")
    if not parent:
        raise Skip(f"task {task_id} has no parent entity, so there is no status to roll up")
    kind, pid = parent["type"], parent["id"]
    siblings = shotgrid(
        f"read the Tasks of {kind} {pid}",
        sg.find,
        "Task",
        [["entity", "is", {"type": kind, "id": pid}]],
        ["content", "sg_status_list"],
    )
    pending = [
        t for t in siblings if t.get("sg_status_list") != final and t.get("sg_status_list") not in ignored
    ]
    if pending:
        ctx.log.info(
            "%s %s keeps its status: %d of its %d tasks are not %s yet",
            kind, pid, len(pending), len(siblings), final,
        )
        return
    current = shotgrid(f"read {kind} {pid}", sg.find_one, kind, [["id", "is", pid]], ["sg_status_list"])
    if current is None:
        raise Skip(f"{kind} {pid}, the parent of task {task_id}, no longer exists in ShotGrid")
    if current.get("sg_status_list") == final:
        ctx.log.info("%s %s is already %s", kind, pid, final)
        return
    shotgrid(f"update {kind} {pid}", sg.update, kind, pid, {"sg_status_list": final})
    ctx.log.info("%s %s is now %s: all its tasks are %s", kind, pid, final, final)


def append_once(path: Path, record: Dict[str, Any]) -> bool:
    """Appends `record` as one line to `path` unless a line with its event id is there already.

    Returns whether it wrote. The line is flushed and synced before returning: the event is only
    acknowledged once its line is on disk.
    """
    with _ledger_lock:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The ids of a file are read once, then kept up to date here: this plugin is the file's
        # only writer, and reading the whole file for every event would make a day quadratic.
        known = _known_ids.get(path)
        if known is None:
            known = {entry.get("event_id") for entry in read_ledger(path)}
            _known_ids[path] = known
        if record["event_id"] in known:
            return False
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        with open(path, "a+b") as f:
            # A crash mid-write can leave a last line without its newline; end it first so the new
            # line stays a line of its own.
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    line = "\n" + line
            f.write(line.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        known.add(record["event_id"])
        return True


def read_ledger(path: Path) -> Iterator[Dict[str, Any]]:
    """The entries of one ledger file; lines that are not JSON objects are skipped."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict):
                    yield entry
    except FileNotFoundError:
        return


def _day(created_at: Optional[str]) -> str:
    """The UTC day of an event's `created_at`, or today when it has none that can be read."""
    if isinstance(created_at, str):
        try:
            when = datetime.datetime.fromisoformat(created_at.replace("Z", "+00:00"))
        except ValueError:
            match = re.match(r"\d{4}-\d{2}-\d{2}", created_at)
            if match:
                return match.group(0)
        else:
            if when.tzinfo is not None:
                when = when.astimezone(datetime.timezone.utc)
            return when.date().isoformat()
    return datetime.datetime.now(datetime.timezone.utc).date().isoformat()


def _link(link: Any) -> Optional[Dict[str, Any]]:
    if not isinstance(link, dict):
        return None
    return {"type": link.get("type"), "id": link.get("id"), "name": link.get("name")}


if __name__ == "__main__":
    plugin.run()
