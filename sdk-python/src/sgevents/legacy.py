"""Run a shotgunEvents plugin file unchanged: `python3 -m sgevents.legacy /abs/path/plugin.py`.

The daemon starts one such process per `*.py` file of its `[plugins] legacy_paths`. This module is
the host: it speaks the sgevents protocol through the SDK's own loop (`Plugin`, `run()`), and to
the plugin file it looks like the incumbent daemon did.

Theory of operation:

- At `hello` (a setup hook), the host puts the file's folder first on `sys.path`, executes the file
  as module `<stem>` and calls its `registerCallbacks(reg)`. A file that cannot be read or
  executed, has no `registerCallbacks`, or whose `registerCallbacks` raises, is answered `fatal`
  naming the path and the error (the traceback goes to the log): the daemon disables the plugin
  until the file changes.
- `reg.registerCallback(sgScriptName, sgScriptKey, callback, matchEvents=None, args=None,
  stopOnError=True)` records a callback. `reg.logger` and `reg.getLogger()` are the logger
  `plugin.<stem>`; `reg.setEmails(...)` sets the `alerts` of `register`.
- Each callback's `matchEvents` becomes subscriptions (`match_events_filters`) whose union the
  daemon matches; they ask for more than the callback wants only where the protocol's filters
  cannot say exactly what the incumbent meant. The host then decides itself, with the incumbent's
  rules (`MatchEvents.matches`), which callbacks an event is for, and calls them in registration
  order, one event at a time (`max_in_flight` 1), as `callback(sg, logger, event, args)`.
- `event` is the dict `shotgun_api3` returned to shotgunEvents (`_api3.api3_event`): the keys
  `type`, `id`, `event_type`, `attribute_name`, `meta`, `entity`, `user`, `project`,
  `session_uuid` and `created_at`, every date-time string at any depth an aware `datetime` in
  local time, a null `event_type` None. It is made once per event and every callback gets the same
  dict, as in shotgunEvents. The time zone is `shotgun_api3.sg_timezone.local` once the process has
  imported `shotgun_api3` (`api3_local_zone`), else a copy of it (`_api3.LOCAL`).
- `sg` (`LazyShotgun`) makes its `shotgun_api3.Shotgun` on first use and passes
  `isinstance(sg, shotgun_api3.Shotgun)` (its `__class__` is the class it makes).
- An exception in a callback registered with `stopOnError=True` answers `fatal`: the plugin is
  disabled at this event, which is not acknowledged, so it runs again (every callback of it) once
  the plugin is enabled. With `stopOnError=False` the other callbacks still run and the event is
  answered `term` (recorded as failed) naming the callback. Either way the traceback is logged;
  local variables never are.

`matchEvents` rules, as in shotgunEvents (`MatchEvents`):

1. a falsy value (None, `{}`) matches every event;
2. with a `"*"` key, its value applies to every event type and every other key is ignored;
   otherwise the event's `event_type` must be a key, compared exactly (a key is not a pattern);
3. a value of None, or containing `"*"`, matches every attribute, and events without one
   (`Shotgun_Shot_New`, `_Retirement`);
4. otherwise the event's `attribute_name` must be set and be one of the value's items, so events
   without an attribute never match and `[]` matches nothing.

One deliberate difference: a string value is one exact attribute name.
`{"Shotgun_Task_Change": "sg_status_list"}` matches `sg_status_list` only, where the incumbent
tested `attribute_name in "sg_status_list"`, a substring test that also matched `status`, `list`
or `sg_status`. (A string containing `*` still matches every attribute, as rule 3 says.)
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import types
from dataclasses import dataclass
from datetime import tzinfo
from typing import (
    AbstractSet,
    Any,
    Callable,
    Dict,
    List,
    Mapping,
    NoReturn,
    Optional,
    Sequence,
    Set,
    Tuple,
)

from . import _api3
from ._context import Context
from ._errors import Fatal, SdkError, ShotgunNotInstalled, Skip
from ._plugin import Alerts, Plugin, alert_recipients
from ._runner import _traceback

__all__ = [
    "USAGE",
    "api3_event",
    "api3_local_zone",
    "LazyShotgun",
    "LegacyConfig",
    "MatchEvents",
    "Registrar",
    "emails_to_alerts",
    "legacy_plugin",
    "main",
    "match_events_filters",
]

USAGE = "usage: python3 -m sgevents.legacy /abs/path/plugin.py"
"""The command line the daemon uses."""

AttributeRule = Optional[Tuple[str, ...]]
"""What a `matchEvents` value allows: None for every attribute (and events without one), else the
exact attribute names, in the order given."""

Filter = Tuple[Tuple[str, ...], AttributeRule]
"""One subscription's filter: (event type patterns, attributes or None for any)."""

ShotgunClass = Callable[..., Any]
"""What makes a connection: `shotgun_api3.Shotgun`, or a stand-in with the same signature."""

api3_event = _api3.api3_event


def api3_local_zone() -> tzinfo:
    """The `tzinfo` of the event's datetimes: `shotgun_api3.sg_timezone.local` once the process has
    imported `shotgun_api3` (the plugin did, or its `sg` was used), else `_api3.LOCAL`, a copy that
    converts the same. The host never imports it for this: a plugin that does not use `sg` starts
    as fast as before, and runs without it installed."""
    module = sys.modules.get("shotgun_api3")
    local = getattr(getattr(module, "sg_timezone", None), "local", None)
    return local if isinstance(local, tzinfo) else _api3.LOCAL


class MatchEvents:
    """One callback's `matchEvents`, checked and normalised at registration.

    `rules` maps event types to `AttributeRule`s; the single key `"*"` stands for every event type
    (a falsy `matchEvents` becomes `{"*": None}`). `warnings` lists what the plugin probably did
    not mean (keys that can never match, items that are not names); the host logs them.
    """

    def __init__(self, match_events: Any) -> None:
        self.warnings: List[str] = []
        self.rules: Dict[str, AttributeRule] = {}
        if not match_events:
            self.rules["*"] = None
            return
        if not isinstance(match_events, Mapping):
            raise TypeError(
                f"matchEvents must be a dict of event types to attribute names, got {match_events!r}\n"
                'hint: write matchEvents={"Shotgun_Task_Change": ["sg_status_list"]}, or None for '
                "every event"
            )
        if "*" in match_events:
            others = [key for key in match_events if key != "*"]
            if others:
                self.warnings.append(
                    'matchEvents has a "*" key, so its other keys are ignored (as in shotgunEvents): '
                    + ", ".join(map(repr, others))
                )
            self.rules["*"] = self._rule("*", match_events["*"])
            return
        for key, value in match_events.items():
            if not isinstance(key, str):
                self.warnings.append(f"matchEvents key {key!r} is not an event type name; it never matches")
                continue
            if "*" in key:
                self.warnings.append(
                    f"matchEvents key {key!r} is not a pattern: event types are compared exactly "
                    '(as in shotgunEvents), so it matches no event; only a key of exactly "*" '
                    "matches every event type"
                )
            self.rules[key] = self._rule(key, value)

    def _rule(self, key: str, value: Any) -> AttributeRule:
        if value is None:
            return None
        if isinstance(value, str):
            # The deliberate difference: one exact name, not a substring test.
            return None if "*" in value else (value,)
        try:
            items = list(value)
        except TypeError:
            raise TypeError(
                f"matchEvents[{key!r}] is {value!r}, which is not None, an attribute name or a list "
                f'of them\nhint: write matchEvents={{{key!r}: ["sg_status_list"]}}, or None for '
                "every attribute"
            ) from None
        if "*" in items:
            return None
        names: List[str] = []
        for item in items:
            if not isinstance(item, str):
                self.warnings.append(
                    f"matchEvents[{key!r}] holds {item!r}, which is not an attribute name; it never matches"
                )
            elif item not in names:
                names.append(item)
        return tuple(names)

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether the callback wants `event`, by the incumbent's rules (and the one difference)."""
        if "*" in self.rules:
            rule = self.rules["*"]
        else:
            event_type = event.get("event_type")
            if not isinstance(event_type, str) or event_type not in self.rules:
                return False
            rule = self.rules[event_type]
        if rule is None:
            return True
        attribute = event.get("attribute_name")
        return isinstance(attribute, str) and bool(attribute) and attribute in rule

    def filters(self) -> List[Filter]:
        """The subscription filters that together let through every event `matches` accepts.

        Event types with the same attribute rule share one filter. They are exact but for keys
        holding a `*`, which the daemon reads as a pattern: the host drops what it lets through.
        """
        groups: Dict[AttributeRule, List[str]] = {}
        for event_type, rule in self.rules.items():
            groups.setdefault(rule, []).append(event_type)
        return [(tuple(event_types), rule) for rule, event_types in groups.items()]


def match_events_filters(match_events: Any) -> List[Filter]:
    """The subscription filters of one `matchEvents` (see `MatchEvents.filters`)."""
    return MatchEvents(match_events).filters()


def emails_to_alerts(emails: Sequence[Any]) -> Alerts:
    """The `alerts` of `register` for the arguments of `reg.setEmails(*emails)`.

    `setEmails(True)`: the daemon's configured recipients; `setEmails(False)`: nobody;
    `setEmails("a@b.com", "c@d.com")` or `setEmails(["a@b.com", "c@d.com"])`: these addresses;
    `setEmails()`: nobody.
    """
    if len(emails) == 1 and isinstance(emails[0], bool):
        return emails[0]
    addresses: List[Any] = []
    for item in emails:
        if isinstance(item, str):
            addresses.append(item)
        elif isinstance(item, (list, tuple, set, frozenset)):
            addresses.extend(item)
        else:
            raise TypeError(
                f"setEmails takes True, False or email addresses, got {item!r}\n"
                'hint: call reg.setEmails(True), reg.setEmails(False) or reg.setEmails("td@studio.com")'
            )
    if not addresses:
        return False
    for address in addresses:
        if not isinstance(address, str) or "@" not in address:
            raise ValueError(
                f"setEmails got {address!r}, which is not an email address\n"
                'hint: call reg.setEmails("td@studio.com", ...); True and False go alone'
            )
    return alert_recipients(addresses)


@dataclass(frozen=True)
class LegacyConfig:
    """What the daemon sends in `hello.config` for a legacy plugin; a missing key takes its
    default. `proxy` is `host:port` (with `user:password@` if needed) for `http_proxy`."""

    site_url: Optional[str] = None
    proxy: Optional[str] = None
    use_session_uuid: bool = False
    ca_certs: Optional[str] = None
    legacy_path: Optional[str] = None

    @classmethod
    def from_hello(cls, config: Mapping[str, Any]) -> "LegacyConfig":
        """Reads `hello.config`; raises `Fatal` naming a key whose value has the wrong type."""
        values: Dict[str, Any] = {}
        for key in ("site_url", "proxy", "ca_certs", "legacy_path"):
            value = config.get(key)
            if value is not None and not isinstance(value, str):
                raise Fatal(_bad_config(key, value, "a string or null"))
            values[key] = value or None
        session = config.get("use_session_uuid", False)
        if session is None:
            session = False
        if not isinstance(session, bool):
            raise Fatal(_bad_config("use_session_uuid", session, "true or false"))
        values["use_session_uuid"] = session
        return cls(**values)


def _bad_config(key: str, value: Any, what: str) -> str:
    return (
        f"`hello.config.{key}` is {value!r}, not {what}\n"
        "hint: this is the daemon's config for legacy plugins; upgrade the daemon and the SDK together"
    )


class _Connections:
    """The host's `shotgun_api3.Shotgun` connections, one per (script name, key), each made on
    first use and reused for the life of the process."""

    def __init__(self, plugin: str, config: LegacyConfig, shotgun_class: Optional[ShotgunClass]) -> None:
        self._plugin = plugin
        self._config = config
        self._shotgun_class = shotgun_class
        self._proxies: Dict[Tuple[Any, Any], LazyShotgun] = {}

    def get(self, script_name: Any, script_key: Any) -> "LazyShotgun":
        key = (script_name, script_key)
        try:
            proxy = self._proxies.get(key)
        except TypeError:  # an unhashable name or key: a connection of its own
            return LazyShotgun(lambda: self._make(script_name, script_key), script_name, self._class)
        if proxy is None:
            proxy = LazyShotgun(lambda: self._make(script_name, script_key), script_name, self._class)
            self._proxies[key] = proxy
        return proxy

    def _class(self) -> Optional[type]:
        """The class `_make` makes, without making one: `shotgun_api3.Shotgun` (None when it
        cannot be imported), or the stand-in when it is a class."""
        if self._shotgun_class is not None:
            return self._shotgun_class if isinstance(self._shotgun_class, type) else None
        try:
            made = importlib.import_module("shotgun_api3").Shotgun
        except Exception:
            return None
        return made if isinstance(made, type) else None

    def _make(self, script_name: Any, script_key: Any) -> Any:
        config = self._config
        what = f"cannot make `sg` for script `{script_name}` of legacy plugin `{self._plugin}`"
        if not config.site_url:
            raise SdkError(
                f"{what}: the daemon gave no `site_url`\n"
                "hint: set the ShotGrid site in the daemon's configuration"
            )
        make = self._shotgun_class
        extra: Dict[str, Any] = {}
        if make is None:
            try:
                make = importlib.import_module("shotgun_api3").Shotgun
            except ImportError as err:
                raise ShotgunNotInstalled(
                    f"{what}: `shotgun_api3` cannot be imported by `{sys.executable}` ({err})\n"
                    "hint: pip install shotgun_api3 into the Python that runs legacy plugins"
                ) from err
            # Made on first use, which may be `sg.base_url` or `sg.set_session_uuid`: the site is
            # asked for its version (`info`) at the first call to it, not here.
            extra["connect"] = False
        return make(
            config.site_url,
            script_name=script_name,
            api_key=script_key,
            http_proxy=config.proxy,
            ca_certs=config.ca_certs,
            **extra,
        )


class LazyShotgun:
    """The `sg` a callback gets: a proxy for the `shotgun_api3.Shotgun` it makes on first use.

    Any attribute read (`sg.find`, `sg.update`, ...) makes the real connection if there is none
    yet, then goes to it; attribute writes go to it too. `set_session_uuid` before the first use
    is kept and applied when the connection is made, so `use_session_uuid` alone never connects
    (nor needs `shotgun_api3` installed). A failed attempt is not remembered: the next use tries
    again. The script key never appears in `repr()`.

    `sg.__class__` is the class of the connection (before it is made: the class `kind()` names,
    importing `shotgun_api3` but connecting nothing), so `isinstance(sg, shotgun_api3.Shotgun)` is
    true, as with the incumbent's `sg`; only `type(sg)` tells the proxy. Without `shotgun_api3`
    it is `LazyShotgun`.
    """

    __slots__ = ("_make", "_script_name", "_real", "_session_uuid", "_kind")

    def __init__(
        self, make: Callable[[], Any], script_name: Any, kind: Callable[[], Optional[type]] = lambda: None
    ) -> None:
        object.__setattr__(self, "_make", make)
        object.__setattr__(self, "_script_name", script_name)
        object.__setattr__(self, "_real", None)
        object.__setattr__(self, "_session_uuid", ())
        object.__setattr__(self, "_kind", kind)

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        real = self._real
        if real is not None:
            return type(real)
        return self._kind() or LazyShotgun

    def _connection(self) -> Any:
        real = self._real
        if real is None:
            real = self._make()
            object.__setattr__(self, "_real", real)
            if self._session_uuid:
                real.set_session_uuid(self._session_uuid[0])
        return real

    def set_session_uuid(self, session_uuid: Optional[str]) -> None:
        """Like `Shotgun.set_session_uuid`: applied now if connected, else when connected."""
        if self._real is None:
            object.__setattr__(self, "_session_uuid", (session_uuid,))
        else:
            self._real.set_session_uuid(session_uuid)

    def __getattr__(self, name: str) -> Any:
        # Dunder lookups (copy, pickle) and unset slots must not connect.
        if name in LazyShotgun.__slots__ or (name.startswith("__") and name.endswith("__")):
            raise AttributeError(name)
        return getattr(self._connection(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._connection(), name, value)

    def __repr__(self) -> str:
        state = "connected" if self._real is not None else "not connected yet"
        return f"<sg for script {self._script_name!r} ({state})>"


@dataclass
class _Callback:
    name: str
    function: Callable[..., Any]
    match: MatchEvents
    args: Any
    stop_on_error: bool
    logger: logging.Logger
    sg: LazyShotgun


class Registrar:
    """The `reg` that `registerCallbacks(reg)` gets, with the incumbent's API and nothing else:
    `logger` (the plugin's logger, `plugin.<file stem>`), `getLogger()`, `setEmails(...)` and
    `registerCallback(...)`."""

    def __init__(self, host: "_Host") -> None:
        self._host = host
        self.logger: logging.Logger = host.logger

    def getLogger(self) -> logging.Logger:
        """The plugin's logger, `plugin.<file stem>` (the same as `reg.logger`)."""
        return self.logger

    def setEmails(self, *emails: Any) -> None:
        """Who is mailed about this plugin's alerts: `True` (the daemon's recipients), `False`
        (nobody) or addresses (`setEmails("a@b.com", "c@d.com")` or a list)."""
        self._host.alerts = emails_to_alerts(emails)
        self._host.alerts_set = True

    def registerCallback(
        self,
        sgScriptName: Any,
        sgScriptKey: Any,
        callback: Callable[..., Any],
        matchEvents: Any = None,
        args: Any = None,
        stopOnError: bool = True,
    ) -> None:
        """Registers `callback(sg, logger, event, args)` for the events `matchEvents` selects.

        `sg` is a `shotgun_api3.Shotgun` for `sgScriptName`/`sgScriptKey` (made on first use,
        shared by the callbacks with the same script), `logger` is `plugin.<stem>.<callback>`,
        `args` is passed as it is, the same object every time.
        """
        self._host.add_callback(sgScriptName, sgScriptKey, callback, matchEvents, args, stopOnError)


class _Host:
    """One legacy plugin file: loads it at the handshake and dispatches its events."""

    def __init__(self, path: str, shotgun_class: Optional[ShotgunClass]) -> None:
        self.path = os.path.abspath(path)
        self.name = os.path.splitext(os.path.basename(self.path))[0]
        self.logger = logging.getLogger(f"plugin.{self.name}")
        self._shotgun_class = shotgun_class
        self._config = LegacyConfig()
        self._connections = _Connections(self.name, self._config, shotgun_class)
        self._callbacks: List[_Callback] = []
        self.alerts: Alerts = None
        self.alerts_set = False
        self._registering = False

    def setup(self, plugin: Plugin, config: Dict[str, Any]) -> None:
        """The setup hook: reads the config, runs the file and its `registerCallbacks`, and
        subscribes. Raises `Fatal` (the handshake answers `fatal`) when the file is unusable."""
        self._config = LegacyConfig.from_hello(config)
        if self._config.legacy_path and os.path.abspath(self._config.legacy_path) != self.path:
            self.logger.warning(
                "the daemon says this plugin is `%s`, but this process runs `%s`",
                self._config.legacy_path,
                self.path,
            )
        self._connections = _Connections(self.name, self._config, self._shotgun_class)
        self._callbacks = []
        self.alerts, self.alerts_set = None, False
        module = self._load()
        register = getattr(module, "registerCallbacks", None)
        if not callable(register):
            raise Fatal(
                f"legacy plugin `{self.path}` has no registerCallbacks function\n"
                "hint: define registerCallbacks(reg) at the top level of the file; the plugin "
                "starts again when the file changes"
            )
        self._registering = True
        try:
            register(Registrar(self))
        except (Exception, SystemExit) as err:
            self.logger.error("registerCallbacks of `%s` failed:\n%s", self.path, _traceback())
            raise Fatal(
                f"registerCallbacks of legacy plugin `{self.path}` failed: {_summary(err)}\n"
                "hint: fix the plugin (the traceback is in its log); it starts again when the "
                "file changes"
            ) from None
        finally:
            self._registering = False
        plugin.max_in_flight = 1
        if self.alerts_set:
            plugin.alerts = self.alerts
        self._subscribe(plugin)

    def _load(self) -> types.ModuleType:
        """Executes the plugin file as a fresh module named after it."""
        path = self.path
        try:
            with open(path, "rb") as file:
                source = file.read()
        except OSError as err:
            raise Fatal(
                f"cannot read legacy plugin `{path}`: {err.strerror or err}\n"
                "hint: check that the file exists and that the daemon's user can read it; the "
                "plugin starts again when the file changes"
            ) from None
        folder = os.path.dirname(path)
        if not sys.path or sys.path[0] != folder:
            sys.path.insert(0, folder)
        spec = importlib.util.spec_from_file_location(self.name, path)
        if spec is not None:
            module = importlib.util.module_from_spec(spec)
        else:  # a file name without the `.py` suffix
            module = types.ModuleType(self.name)
            module.__file__ = path
        # Registered under its name (unless that name is taken by another module, such as a
        # standard one) so that pickle, dataclasses and `import <stem>` from helpers work.
        existing = sys.modules.get(self.name)
        register = existing is None or getattr(existing, "__file__", None) == path
        if register:
            sys.modules[self.name] = module
        try:
            code = compile(source, path, "exec", dont_inherit=True)
            exec(code, module.__dict__)
        except (Exception, SystemExit) as err:
            if register:
                sys.modules.pop(self.name, None)
            self.logger.error("cannot load `%s`:\n%s", path, _traceback())
            raise Fatal(
                f"cannot load legacy plugin `{path}`: {_summary(err)}\n"
                "hint: fix the file (the traceback is in the plugin's log); the plugin starts "
                "again when the file changes"
            ) from None
        return module

    def add_callback(
        self,
        script_name: Any,
        script_key: Any,
        callback: Callable[..., Any],
        match_events: Any,
        args: Any,
        stop_on_error: bool,
    ) -> None:
        if not self._registering:
            raise RuntimeError(
                "registerCallback was called after registerCallbacks returned; the subscriptions "
                "are fixed by then\nhint: register every callback inside registerCallbacks(reg)"
            )
        if not callable(callback):
            raise TypeError(
                f"registerCallback needs a callable (function, method or callable object), got "
                f"{callback!r}\nhint: pass the function itself: reg.registerCallback(name, key, "
                "my_callback, ...)"
            )
        match = MatchEvents(match_events)
        name = _unique(_callback_name(callback), {cb.name for cb in self._callbacks})
        logger = logging.getLogger(f"{self.logger.name}.{name}")
        for warning in match.warnings:
            self.logger.warning("callback `%s`: %s", name, warning)
        self._callbacks.append(
            _Callback(
                name=name,
                function=callback,
                match=match,
                args=args,
                stop_on_error=bool(stop_on_error),
                logger=logger,
                sg=self._connections.get(script_name, script_key),
            )
        )

    def _subscribe(self, plugin: Plugin) -> None:
        # One subscription per filter: `<callback>`, then `<callback>[2]`, `<callback>[3]`, ...
        taken: Set[str] = set()
        for callback in self._callbacks:
            for number, (event_types, attributes) in enumerate(callback.match.filters(), 1):
                name = _unique(callback.name if number == 1 else f"{callback.name}[{number}]", taken)
                taken.add(name)
                plugin.subscribe(self.dispatch, event_types, attributes=attributes, name=name)
        if not self._callbacks:
            self.logger.warning(
                "registerCallbacks of `%s` registered no callback: the plugin will get no events",
                self.path,
            )
            # A subscription that matches nothing, so that `register` is valid.
            plugin.subscribe(self.dispatch, ["*"], attributes=[], name="no_callbacks")

    def dispatch(self, ctx: Context, flat: Dict[str, Any]) -> None:
        """The SDK callback of every subscription: runs the event's callbacks, once per delivery
        (at its first matched subscription), in registration order, each with the same dict in
        api3's shape."""
        if ctx.subscriptions and ctx.subscription != ctx.subscriptions[0]:
            return
        event = api3_event(flat, api3_local_zone())
        failures: List[str] = []
        for callback in self._callbacks:
            if not callback.match.matches(event):
                continue
            self.logger.debug("dispatching event %d to callback `%s`", ctx.event_id, callback.name)
            try:
                if self._config.use_session_uuid:
                    callback.sg.set_session_uuid(event.get("session_uuid"))
                callback.function(callback.sg, callback.logger, event, callback.args)
            except (Exception, SystemExit) as err:
                trace = _traceback()
                if callback.stop_on_error:
                    callback.logger.critical(
                        "event %d failed in callback `%s` (stopOnError=True); the plugin stops "
                        "at this event:\n%s",
                        ctx.event_id,
                        callback.name,
                        trace,
                    )
                    raise Fatal(
                        f"callback `{callback.name}` of legacy plugin `{self.name}` failed on event "
                        f"{ctx.event_id} (stopOnError=True): {_summary(err)}\n"
                        "hint: fix the plugin (the traceback is in its log), then enable it: it "
                        "starts again at this event, running each of its callbacks again"
                    ) from None
                callback.logger.error(
                    "event %d failed in callback `%s` (stopOnError=False); it is recorded as "
                    "failed and the plugin moves on:\n%s",
                    ctx.event_id,
                    callback.name,
                    trace,
                )
                failures.append(f"callback `{callback.name}` failed (stopOnError=False): {_summary(err)}")
        if failures:
            raise Skip("; ".join(failures))


def _callback_name(callback: Callable[..., Any]) -> str:
    name = getattr(callback, "__name__", None)
    return name if isinstance(name, str) and name else type(callback).__name__


def _unique(name: str, taken: AbstractSet[str]) -> str:
    if name not in taken:
        return name
    number = 2
    while f"{name}#{number}" in taken:
        number += 1
    return f"{name}#{number}"


def _summary(err: BaseException) -> str:
    """`Type: message` of an exception, for a one-line error."""
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def legacy_plugin(path: str, *, shotgun_class: Optional[ShotgunClass] = None) -> Plugin:
    """A `Plugin` that hosts the shotgunEvents plugin file at `path`.

    Nothing is read until the handshake; run it with `.run()`, or in tests with
    `sgevents.testing.PluginRunner` (which loads the file into the test process: its folder
    joins `sys.path` and the module `sys.modules`). `shotgun_class`, when given, is called instead
    of `shotgun_api3.Shotgun` (same arguments) to make each `sg`.
    """
    host = _Host(path, shotgun_class)
    plugin = Plugin(max_in_flight=1)
    plugin.setup(host.setup)
    return plugin


def main(argv: Optional[Sequence[str]] = None) -> NoReturn:
    """`python3 -m sgevents.legacy PATH`: hosts the plugin file at PATH until stdin closes."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["-h"], ["--help"]):
        sys.stderr.write(USAGE + "\n")
        sys.exit(0)
    if len(args) != 1 or not args[0]:
        sys.stderr.write(
            f"{USAGE}\nerror: expected the path of one plugin file, got {len(args)} argument(s)\n"
        )
        sys.exit(2)
    legacy_plugin(args[0]).run()


if __name__ == "__main__":
    main()
