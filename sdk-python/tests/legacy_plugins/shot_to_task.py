"""A shotgunEvents plugin: when a Shot's status changes, give each of its Tasks the same status.

It reads its script credentials from `SGDAEMON_SHOT_TO_TASK_NAME` and `SGDAEMON_SHOT_TO_TASK_KEY`,
as the incumbent's examples do, and refuses to register without them. For every
`Shotgun_Shot_Change` on `sg_status_list` it finds the Shot's Tasks (`sg.find`) and updates each
Task whose status differs (`sg.update`), logging one line per Task.
"""

import os


def registerCallbacks(reg):
    name = os.environ.get("SGDAEMON_SHOT_TO_TASK_NAME")
    key = os.environ.get("SGDAEMON_SHOT_TO_TASK_KEY")
    if not name or not key:
        raise RuntimeError(
            "set SGDAEMON_SHOT_TO_TASK_NAME and SGDAEMON_SHOT_TO_TASK_KEY to the script's credentials"
        )
    reg.registerCallback(
        name,
        key,
        push_status_to_tasks,
        matchEvents={"Shotgun_Shot_Change": ["sg_status_list"]},
    )


def push_status_to_tasks(sg, logger, event, args):
    shot = event.get("entity")
    meta = event.get("meta") or {}
    status = meta.get("new_value")
    if not shot or not status:
        logger.debug("event %d has no Shot or no new status; nothing to do", event["id"])
        return
    tasks = sg.find(
        "Task",
        [["entity", "is", {"type": "Shot", "id": shot["id"]}]],
        ["content", "sg_status_list"],
    )
    for task in tasks:
        if task.get("sg_status_list") == status:
            continue
        sg.update("Task", task["id"], {"sg_status_list": status})
        logger.info("Task %d of Shot %d is now %s", task["id"], shot["id"], status)
