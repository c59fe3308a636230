"""`Plugin`: the object a plugin script builds, decorates and runs."""

from __future__ import annotations

from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    NoReturn,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

from ._context import Callback, Event
from ._protocol import DEFAULT_MAX_IN_FLIGHT
from ._runner import run_process
from ._subscription import Subscription

__all__ = ["Alerts", "Callback", "Event", "Plugin", "SetupHook", "alert_recipients"]

SetupHook = Callable[["Plugin", Dict[str, Any]], Any]
"""A setup hook: `setup(plugin, config)`, called at the handshake."""
Alerts = Union[bool, List[str], None]
"""Who is mailed about the plugin's alerts: None (the daemon's default), True (the daemon's
configured recipients), False (nobody), or a list of addresses."""

F = TypeVar("F", bound=Callable[..., Any])


def _callback_name(callback: Callable[..., Any]) -> str:
    name = getattr(callback, "__name__", None)
    return name if isinstance(name, str) else type(callback).__name__


def alert_recipients(value: Any) -> Alerts:
    """Checks and normalises the `alerts` of a plugin: None, True, False, or an iterable of
    addresses (kept as a list). Raises TypeError or ValueError, with a hint, on anything else."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (str, bytes)):
        raise TypeError(
            f"`alerts` must be True, False or a list of addresses, not the string {value!r}\n"
            f"hint: write alerts=[{value!r}]"
        )
    try:
        addresses = list(value)
    except TypeError:
        raise TypeError(
            f"`alerts` must be True, False or a list of addresses, got {value!r}\n"
            "hint: write alerts=True (the daemon's recipients), alerts=False (nobody) or "
            'alerts=["td@studio.com"]'
        ) from None
    for address in addresses:
        if not isinstance(address, str) or not address.strip():
            raise ValueError(
                f"`alerts` holds {address!r}, which is not an email address\n"
                'hint: list addresses as strings, such as alerts=["td@studio.com"]'
            )
    return addresses


def _sequence(values: Iterable[Any]) -> Sequence[Any]:
    # A string is passed on as it is, for `Subscription` to refuse with a hint, rather than split
    # into characters here.
    return values if isinstance(values, str) else tuple(values)


class Plugin:
    """An sgevents plugin: subscriptions with their callbacks, an optional setup hook, and `run()`.

    ```python
    plugin = Plugin()

    @plugin.on("Shotgun_Task_Change", attributes=["sg_status_list"])
    def on_status(ctx, event):
        ctx.log.info("task %s is now %s", event["entity"]["id"], event["meta"]["new_value"])

    if __name__ == "__main__":
        plugin.run()
    ```

    `max_in_flight` (1 to 1024, default 1) is how many events the daemon may hand over before the
    first is answered; the SDK runs that many callbacks at once on worker threads, so with 1 events
    are handled strictly one after another, in order.

    `alerts` says who the daemon mails about this plugin's alerts (disabled, crash loop, failed
    events): None (default) or True for the daemon's configured recipients, False for nobody, or a
    list of addresses instead. It is sent in `register`; a setup hook may set `plugin.alerts`.
    """

    def __init__(self, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT, alerts: Alerts = None) -> None:
        self.max_in_flight = max_in_flight
        self._alerts: Alerts = alert_recipients(alerts)
        self._subscriptions: List[Tuple[Subscription, Callback]] = []
        self._setup_hooks: List[SetupHook] = []

    @property
    def alerts(self) -> Alerts:
        """Who is mailed about the plugin's alerts (see the class docs); checked when set."""
        return self._alerts

    @alerts.setter
    def alerts(self, value: Alerts) -> None:
        self._alerts = alert_recipients(value)

    @property
    def subscriptions(self) -> Tuple[Subscription, ...]:
        """The subscriptions registered so far, in registration order."""
        return tuple(sub for sub, _ in self._subscriptions)

    def on(
        self,
        *event_types: str,
        attributes: Optional[Iterable[str]] = None,
        entity_types: Optional[Iterable[str]] = None,
        project_ids: Optional[Iterable[int]] = None,
        skip_transient: bool = False,
        name: Optional[str] = None,
    ) -> Callable[[F], F]:
        """Decorator: subscribes the decorated `callback(ctx, event)` to events.

        `event_types` are glob patterns (`*` matches any run of characters) over the event type,
        such as `"Shotgun_Task_Change"` or `"Shotgun_*_New"`. `attributes`, `entity_types` and
        `project_ids` are exact values; a filter left out matches anything. `skip_transient` drops
        events whose `meta.is_transient` is true. `name` defaults to the function's `__name__` and
        must be unique within the plugin. Returns the function unchanged.
        """

        def register(callback: F) -> F:
            self.subscribe(
                callback,
                event_types,
                attributes=attributes,
                entity_types=entity_types,
                project_ids=project_ids,
                skip_transient=skip_transient,
                name=name,
            )
            return callback

        return register

    def subscribe(
        self,
        callback: Callback,
        event_types: Iterable[str],
        *,
        attributes: Optional[Iterable[str]] = None,
        entity_types: Optional[Iterable[str]] = None,
        project_ids: Optional[Iterable[int]] = None,
        skip_transient: bool = False,
        name: Optional[str] = None,
    ) -> Subscription:
        """Subscribes `callback(ctx, event)` to events; the same filters as `on`.

        For use without a decorator, typically from a setup hook where the subscriptions depend
        on the plugin's config. Returns the new `Subscription`. Callbacks of one event run in
        registration order. Whether the subscriptions form a valid `register` (names unique and
        non-empty, at least one event type each, at least one subscription) is checked at the
        handshake, which answers `fatal` when they do not.
        """
        if not callable(callback):
            raise TypeError(f"a callback must be callable, got {callback!r}")
        sub = Subscription(
            name=_callback_name(callback) if name is None else name,
            event_types=_sequence(event_types),
            attributes=None if attributes is None else _sequence(attributes),
            entity_types=None if entity_types is None else _sequence(entity_types),
            project_ids=None if project_ids is None else _sequence(project_ids),
            skip_transient=skip_transient,
        )
        self._subscriptions.append((sub, callback))
        return sub

    def setup(self, hook: SetupHook) -> SetupHook:
        """Decorator: `hook(plugin, config)` runs at the handshake with the plugin's config dict,
        before the subscriptions are sent. It may call `plugin.subscribe` / `plugin.on` and set
        `plugin.max_in_flight` and `plugin.alerts`. What it registers lasts for that session only.
        Raising `Fatal` (or anything else) refuses the handshake: the plugin answers `fatal` and
        exits with status 125. Several hooks run in the order they were declared.
        """
        self._setup_hooks.append(hook)
        return hook

    def _prepare(
        self, config: Dict[str, Any]
    ) -> Tuple[List[Tuple[Subscription, Callback]], Any, Alerts]:
        """Runs the setup hooks and returns the session's subscriptions, window and alerts.

        The plugin itself is left as it was, so running it again (in tests) starts afresh.
        """
        saved = (list(self._subscriptions), self.max_in_flight, self._alerts)
        try:
            for hook in self._setup_hooks:
                hook(self, config)
            return list(self._subscriptions), self.max_in_flight, self._alerts
        finally:
            self._subscriptions, self.max_in_flight, self._alerts = saved

    def run(self) -> NoReturn:
        """Speaks the sgevents protocol on stdin/stdout until the daemon is done, then exits.

        Claims the process's standard streams: stdout carries protocol only (prints become info
        log lines on stderr), logging goes to stderr in the protocol's format. Exits with status 0
        when stdin closes, 125 after `fatal`.
        """
        run_process(self)
