"""Subscriptions: what a plugin asks for, and the matcher that decides whether an event matches.

The daemon filters events with the matcher of `protocol/src/subscription.rs`; the SDK never filters
again when it runs for real. This copy exists for `sgevents.testing`, which stands in for the
daemon and must deliver exactly the events the daemon would. A subscription matches when every
filter it has passes, an absent filter meaning "anything":

- `event_types`: glob patterns where `*` matches any run of characters (also none); the event's
  `event_type` must match one;
- `attributes`: exact names; when present the event's `attribute_name` must be one of them, so an
  event without an attribute never matches a present list;
- `entity_types`: exact names compared with the event's entity type (`entity.type`, or
  `meta.entity_type` when the entity link is null, as it is for retired entities);
- `project_ids`: the event's project id must be listed (site-level events never match);
- `skip_transient`: when true, events whose `meta.is_transient` is true never match.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple


def glob_match(pattern: str, text: str) -> bool:
    """Matches `text` against `pattern`, where `*` stands for any run of characters (also none)
    and every other character for itself. Case-sensitive, like ShotGrid's event types."""
    # The classic linear-time wildcard match: remember the last `*` and where it started
    # matching, and on a mismatch let that star swallow one more character.
    pi = ti = 0
    star_p = star_t = -1
    while ti < len(text):
        if pi < len(pattern) and pattern[pi] == "*":
            star_p, star_t = pi, ti
            pi += 1
        elif pi < len(pattern) and pattern[pi] == text[ti]:
            pi += 1
            ti += 1
        elif star_p >= 0:
            star_t += 1
            pi, ti = star_p + 1, star_t
        else:
            return False
    return all(c == "*" for c in pattern[pi:])


def event_entity_type(event: Mapping[str, Any]) -> Optional[str]:
    """The type of the entity the event is about: `entity.type`, or `meta.entity_type` when the
    entity link is null (retired entities)."""
    entity = event.get("entity")
    if entity is not None:
        kind = entity.get("type") if isinstance(entity, Mapping) else None
        return kind if isinstance(kind, str) else None
    meta = event.get("meta")
    kind = meta.get("entity_type") if isinstance(meta, Mapping) else None
    return kind if isinstance(kind, str) else None


def event_project_id(event: Mapping[str, Any]) -> Optional[int]:
    """The id of the event's project, if it has one."""
    project = event.get("project")
    if not isinstance(project, Mapping):
        return None
    pid = project.get("id")
    return pid if isinstance(pid, int) and not isinstance(pid, bool) else None


def event_is_transient(event: Mapping[str, Any]) -> bool:
    """Whether `meta.is_transient` is `true` (a thumbnail not ready yet, for example)."""
    meta = event.get("meta")
    return isinstance(meta, Mapping) and meta.get("is_transient") is True


def _names(value: Optional[Iterable[Any]], field: str, kind: type) -> Optional[Tuple[Any, ...]]:
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        raise TypeError(
            f"`{field}` must be a list, not the string {value!r}\n"
            f"hint: write {field}=[{value!r}]"
        )
    items = tuple(value)
    for item in items:
        if not isinstance(item, kind) or isinstance(item, bool):
            raise TypeError(f"`{field}` must hold {kind.__name__} values, got {item!r}")
    return items


@dataclass(frozen=True)
class Subscription:
    """One subscription of a plugin, as sent in `register`.

    The lists given are kept as tuples (a subscription is immutable and hashable); `None` means the filter is absent. Construct it through
    `Plugin.on` or `Plugin.subscribe`; it is public so tests and setup hooks can inspect it.
    """

    name: str
    event_types: Sequence[str]
    attributes: Optional[Sequence[str]] = None
    entity_types: Optional[Sequence[str]] = None
    project_ids: Optional[Sequence[int]] = None
    skip_transient: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"a subscription name must be a string, got {self.name!r}")
        if self.event_types is None:
            raise TypeError("`event_types` must be a list of patterns, got None")
        object.__setattr__(self, "event_types", _names(self.event_types, "event_types", str))
        object.__setattr__(self, "attributes", _names(self.attributes, "attributes", str))
        object.__setattr__(self, "entity_types", _names(self.entity_types, "entity_types", str))
        object.__setattr__(self, "project_ids", _names(self.project_ids, "project_ids", int))
        if not isinstance(self.skip_transient, bool):
            raise TypeError(f"`skip_transient` must be True or False, got {self.skip_transient!r}")

    def to_wire(self) -> Dict[str, Any]:
        """The subscription object of `register`: absent filters and a false `skip_transient`
        are left out, like the protocol crate does."""
        wire: Dict[str, Any] = {"name": self.name, "event_types": list(self.event_types)}
        if self.attributes is not None:
            wire["attributes"] = list(self.attributes)
        if self.entity_types is not None:
            wire["entity_types"] = list(self.entity_types)
        if self.project_ids is not None:
            wire["project_ids"] = list(self.project_ids)
        if self.skip_transient:
            wire["skip_transient"] = True
        return wire

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> "Subscription":
        """Reads a subscription object of `register` (the inverse of `to_wire`)."""
        return cls(
            name=wire["name"],
            event_types=wire["event_types"],
            attributes=wire.get("attributes"),
            entity_types=wire.get("entity_types"),
            project_ids=wire.get("project_ids"),
            skip_transient=wire.get("skip_transient", False),
        )

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether `event` (the flat `EventLogEntry` dict) passes every filter."""
        event_type = event.get("event_type")
        if not isinstance(event_type, str):
            event_type = ""
        if not any(glob_match(p, event_type) for p in self.event_types):
            return False
        if self.attributes is not None:
            attribute = event.get("attribute_name")
            if not isinstance(attribute, str) or attribute not in self.attributes:
                return False
        if self.entity_types is not None:
            kind = event_entity_type(event)
            if kind is None or kind not in self.entity_types:
                return False
        if self.project_ids is not None:
            pid = event_project_id(event)
            if pid is None or pid not in self.project_ids:
                return False
        return not (self.skip_transient and event_is_transient(event))


def matching_subscriptions(
    subscriptions: Sequence[Subscription], event: Mapping[str, Any]
) -> List[str]:
    """The names of the subscriptions that match `event`, in registration order.

    An empty result means the daemon would not send the event to the plugin at all.
    """
    return [s.name for s in subscriptions if s.matches(event)]
