"""The `EventLogEntry` dict as `shotgun_api3` returned it to shotgunEvents, made from the protocol's
flat event, with the standard library only.

shotgunEvents read the log with `sg.find("EventLogEntry", ..., ["id", "event_type",
"attribute_name", "meta", "entity", "user", "project", "session_uuid", "created_at"], ...)` on a
`Shotgun` made with the default `convert_datetimes_to_utc=True`, and handed each dict it got to the
callbacks. What `find` does to the server's JSON, in `shotgun_api3` 3.x (`shotgun.py`):

1. `_transform_inbound` (through `_visit_data`): every string, at any depth of lists and dicts
   (keys excepted), that is exactly 20 characters long and matches `_DATE_TIME_PATTERN` is parsed
   with `"%Y-%m-%dT%H:%M:%SZ"` (a string that fails to parse stays as it is), taken as UTC and
   converted with `astimezone(sg_timezone.local)`: an aware `datetime` in local time. Falsy values
   and other types are left alone.
2. `_parse_records`: in each top-level string field `&lt;` becomes `<`; a top-level dict with
   `"link_type": "local"` and the platform's `local_path_<platform>` key gets `local_path` and a
   `file://` `url`.

`api3_event` does the same to the event the daemon sends, and gives it api3's keys: `type`
(`"EventLogEntry"`, which api3 always returns), `id` and the nine fields above, in that order; other
fields of the flat shape (`description`, anything a JSON-lines source adds) are dropped, as
shotgunEvents never asked for them. Two things the daemon's shape cannot say as api3 did are put
back: an empty `event_type` (the daemon's journal stores a null one as `""`; ShotGrid never writes
an empty one) becomes None, and a top-level `created_at` in another ISO 8601 form (possible only
from a JSON-lines file; the site always sends the 20-character form) is converted too, taken as UTC
when it has no offset, because shotgunEvents' plugins could rely on it being a `datetime`.

`LocalTimezone` is a copy of `shotgun_api3.lib.sgtimezone.LocalTimezone` (the class of
`sg_timezone.local`), so that the host converts without `shotgun_api3` installed; the legacy host
passes `shotgun_api3`'s own `sg_timezone.local` once the plugin's process has imported it, so that
the datetimes a callback gets from the event and from `sg` share one `tzinfo`, as they did.
"""

from __future__ import annotations

import datetime
import re
import sys
import time
from typing import Any, Dict, Mapping, Optional, Tuple

__all__ = ["EVENT_FIELDS", "LOCAL", "UTC", "LocalTimezone", "api3_event", "transform_inbound"]

EVENT_FIELDS = (
    "id",
    "event_type",
    "attribute_name",
    "meta",
    "entity",
    "user",
    "project",
    "session_uuid",
    "created_at",
)
"""The fields shotgunEvents asked `find` for, in its order (`type` comes back too, first)."""

# `Shotgun._DATE_TIME_PATTERN`, verbatim; api3 checks the length (20) before the pattern.
_DATE_TIME_PATTERN = re.compile(
    r"^(\d{4})\D?(0[1-9]|1[0-2])\D?([12]\d|0[1-9]|3[01])"
    r"(\D?([01]\d|2[0-3])\D?([0-5]\d)\D?([0-5]\d)?\D?(\d{3})?)?$"
)

_ZERO = datetime.timedelta(0)


class _Utc(datetime.tzinfo):
    """`shotgun_api3.lib.sgtimezone.UTC`: offset zero, named `UTC`."""

    def utcoffset(self, dt: Optional[datetime.datetime]) -> datetime.timedelta:
        return _ZERO

    def tzname(self, dt: Optional[datetime.datetime]) -> str:
        return "UTC"

    def dst(self, dt: Optional[datetime.datetime]) -> datetime.timedelta:
        return _ZERO


class LocalTimezone(datetime.tzinfo):
    """`shotgun_api3.lib.sgtimezone.LocalTimezone`: the process's local zone (`TZ`), standard or
    daylight-saving time by `time.mktime`/`time.localtime` of the wall-clock time.

    The offsets are `time.timezone`/`time.altzone` at each call, where api3 reads them once when
    its module is imported; the two differ only if a process changes `TZ` (and calls
    `time.tzset()`) after importing `shotgun_api3`.
    """

    @staticmethod
    def _offsets() -> Tuple[datetime.timedelta, datetime.timedelta]:
        std = datetime.timedelta(seconds=-time.timezone)
        return std, datetime.timedelta(seconds=-time.altzone) if time.daylight else std

    def utcoffset(self, dt: Optional[datetime.datetime]) -> datetime.timedelta:
        std, dst = self._offsets()
        return dst if self._isdst(dt) else std

    def dst(self, dt: Optional[datetime.datetime]) -> datetime.timedelta:
        std, dst = self._offsets()
        return dst - std if self._isdst(dt) else _ZERO

    def tzname(self, dt: Optional[datetime.datetime]) -> str:
        return time.tzname[self._isdst(dt)]

    def _isdst(self, dt: Optional[datetime.datetime]) -> bool:
        if dt is None:  # api3 fails here; `datetime.now(tz).tzname()` never passes None
            return False
        stamp = time.mktime((dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, dt.weekday(), 0, -1))
        return time.localtime(stamp).tm_isdst > 0

    def __repr__(self) -> str:
        return "<sgevents LocalTimezone (shotgun_api3's local time zone)>"


UTC: datetime.tzinfo = _Utc()
"""UTC, as api3's `sg_timezone.utc`."""

LOCAL: datetime.tzinfo = LocalTimezone()
"""The local zone, as api3's `sg_timezone.local`."""


def _local_path_field() -> Optional[str]:
    """`ClientCapabilities.local_path_field` of api3 for this platform."""
    system = sys.platform.lower()
    if system == "darwin":
        return "local_path_mac"
    if system.startswith("linux"):
        return "local_path_linux"
    if system == "win32":
        return "local_path_windows"
    return None


_LOCAL_PATH_FIELD = _local_path_field()


def _to_datetime(value: str, tz: Optional[datetime.tzinfo]) -> Any:
    """One string through api3's inbound visitor: a datetime, or the string unchanged."""
    if len(value) == 20 and _DATE_TIME_PATTERN.match(value):
        try:
            parsed = datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            return value
        return parsed.replace(tzinfo=UTC).astimezone(tz) if tz is not None else parsed
    return value


def transform_inbound(data: Any, tz: Optional[datetime.tzinfo] = LOCAL) -> Any:
    """`Shotgun._transform_inbound` on decoded JSON: new lists and dicts, date-time strings turned
    into datetimes in `tz` (None: naive UTC, as with `convert_datetimes_to_utc=False`)."""
    if not data:
        return data
    if isinstance(data, list):
        return [transform_inbound(item, tz) for item in data]
    if isinstance(data, tuple):
        return tuple(transform_inbound(item, tz) for item in data)
    if isinstance(data, dict):
        return {key: transform_inbound(value, tz) for key, value in data.items()}
    if isinstance(data, str):
        return _to_datetime(data, tz)
    return data


def _parse_record(record: Dict[str, Any]) -> None:
    """`Shotgun._parse_records` on one record, in place (the thumbnail branch is for servers
    older than 3.3.0 and does not apply)."""
    for key, value in record.items():
        if not value:
            continue
        if isinstance(value, str):
            record[key] = value.replace("&lt;", "<")
        if (
            isinstance(value, dict)
            and value.get("link_type") == "local"
            and _LOCAL_PATH_FIELD is not None
            and _LOCAL_PATH_FIELD in value
        ):
            local_path = value[_LOCAL_PATH_FIELD]
            value["local_path"] = local_path
            value["url"] = "file://%s" % (local_path or "",)


def _other_iso(value: Any, tz: Optional[datetime.tzinfo]) -> Any:
    """A `created_at` string api3's rule left alone, in another ISO 8601 form: a datetime too."""
    if not isinstance(value, str):
        return value
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        return value
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(tz) if tz is not None else parsed.astimezone(UTC).replace(tzinfo=None)


def api3_event(event: Mapping[str, Any], tz: Optional[datetime.tzinfo] = LOCAL) -> Dict[str, Any]:
    """The dict `shotgun_api3`'s `find` gave shotgunEvents for this flat `event` (see the module's
    documentation). `event` is not changed."""
    record: Dict[str, Any] = {"type": "EventLogEntry"}
    for field in EVENT_FIELDS:
        record[field] = event.get(field)
    if record["event_type"] == "":
        record["event_type"] = None
    record = transform_inbound(record, tz)
    record["created_at"] = _other_iso(record["created_at"], tz)
    _parse_record(record)
    return record
