"""A fake `shotgun_api3` for the legacy host's tests (not the real library): `Shotgun` records
how it was made and what it was asked, and serves Tasks from `TASKS`.

In process, tests read `made` and set `TASKS`. In a subprocess (this folder on `PYTHONPATH`),
every construction and call is appended as one JSON line to the file named by
`FAKE_SHOTGUN_LOG`, and `TASKS` is read from the JSON in `FAKE_SHOTGUN_TASKS`
(`{"<shot id>": [task, ...]}`).
"""

import json
import os

made = []
"""Every `Shotgun` made, in order."""
TASKS = json.loads(os.environ.get("FAKE_SHOTGUN_TASKS") or "{}")
"""The Tasks of each Shot, by Shot id (a string)."""


def _record(entry):
    path = os.environ.get("FAKE_SHOTGUN_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")


class Shotgun:
    def __init__(self, base_url, script_name=None, api_key=None, convert_datetimes_to_utc=True,
                 http_proxy=None, connect=True, ca_certs=None, **others):
        self.base_url = base_url
        self.script_name = script_name
        self.api_key = api_key
        self.http_proxy = http_proxy
        self.ca_certs = ca_certs
        self.session_uuids = []
        self.calls = []
        made.append(self)
        _record({"call": "Shotgun", "base_url": base_url, "script_name": script_name,
                 "http_proxy": http_proxy, "ca_certs": ca_certs})

    def set_session_uuid(self, session_uuid):
        self.session_uuids.append(session_uuid)
        _record({"call": "set_session_uuid", "script_name": self.script_name, "session_uuid": session_uuid})

    def find(self, entity_type, filters, fields=None, **others):
        self.calls.append(("find", entity_type, filters, fields))
        _record({"call": "find", "entity_type": entity_type, "filters": filters})
        shot = filters[0][2]["id"] if entity_type == "Task" and filters else None
        return [dict(task) for task in TASKS.get(str(shot), [])]

    def update(self, entity_type, entity_id, data, **others):
        self.calls.append(("update", entity_type, entity_id, data))
        _record({"call": "update", "entity_type": entity_type, "id": entity_id, "data": data})
        return dict(data, type=entity_type, id=entity_id)
