"""What a callback gets besides the event: the `Context`, the plugin's ShotGrid credentials, and
the lazily made `shotgun_api3` connection behind `ctx.sg`."""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from ._errors import MissingCredentials, ShotgunNotInstalled

ENV_SITE_URL = "SGEVENTS_SITE_URL"
ENV_SCRIPT_NAME = "SGEVENTS_SCRIPT_NAME"
ENV_SCRIPT_KEY = "SGEVENTS_SCRIPT_KEY"
_ENV_NAMES = (ENV_SITE_URL, ENV_SCRIPT_NAME, ENV_SCRIPT_KEY)


@dataclass(frozen=True, repr=False)
class Credentials:
    """The plugin's own ShotGrid script credentials, given by the daemon in the environment.

    The key never appears in `repr()` or `str()`, so logging a context or its credentials is safe.
    """

    site_url: str
    script_name: str
    script_key: str

    def __repr__(self) -> str:
        return (
            f"Credentials(site_url={self.site_url!r}, script_name={self.script_name!r}, "
            "script_key=<redacted>)"
        )

    @classmethod
    def from_environ(cls, environ: Optional[Mapping[str, str]] = None) -> Optional["Credentials"]:
        """Reads `SGEVENTS_SITE_URL`, `SGEVENTS_SCRIPT_NAME` and `SGEVENTS_SCRIPT_KEY` from
        `environ` (default `os.environ`): all three, or None when any is missing or empty."""
        if environ is None:
            import os

            environ = os.environ
        return read_credentials(environ)[0]


def read_credentials(environ: Mapping[str, str]) -> Tuple[Optional[Credentials], List[str]]:
    """The credentials in `environ`, and the names of the variables missing when only some of
    the three are set (empty when all or none are)."""
    values = [environ.get(name) or "" for name in _ENV_NAMES]
    missing = [name for name, value in zip(_ENV_NAMES, values) if not value]
    if not missing:
        return Credentials(*values), []
    if len(missing) == len(_ENV_NAMES):
        return None, []
    return None, missing


class ShotgunConnections:
    """Makes the `shotgun_api3.Shotgun` connection behind `ctx.sg`: on first use, once per worker
    thread, then reused for the life of the process.

    `shotgun_api3.Shotgun` is not thread-safe, so with `max_in_flight` above 1 each worker thread
    gets its own; with the default window there is exactly one. A failed attempt is not
    remembered: the next use tries again. `override`, when given, is returned instead (tests).
    """

    def __init__(
        self,
        plugin_name: str,
        credentials: Optional[Credentials],
        missing: List[str],
        override: Any = None,
    ) -> None:
        self._plugin_name = plugin_name
        self._credentials = credentials
        self._missing = missing
        self._override = override
        self._local = threading.local()

    def get(self) -> Any:
        """The calling thread's connection, made now if it has none."""
        if self._override is not None:
            return self._override
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _connect(self) -> Any:
        creds = self._credentials
        if creds is None:
            if self._missing:
                what = "only part of its ShotGrid credentials (missing: " + ", ".join(self._missing) + ")"
            else:
                what = "no ShotGrid credentials (" + ", ".join(_ENV_NAMES) + " are not set)"
            raise MissingCredentials(
                f"cannot make `ctx.sg`: plugin `{self._plugin_name}` has {what}\n"
                f"hint: set script_name and script_key_env in the plugin's "
                f"[plugin.{self._plugin_name}] table"
            )
        try:
            module = importlib.import_module("shotgun_api3")
        except ImportError as err:
            raise ShotgunNotInstalled(
                f"cannot make `ctx.sg`: `shotgun_api3` cannot be imported by `{sys.executable}` "
                f"({err})\nhint: pip install shotgun_api3 into the plugin's Python"
            ) from err
        return module.Shotgun(creds.site_url, script_name=creds.script_name, api_key=creds.script_key)


class Context:
    """What a callback gets besides the event. One per callback call.

    Attributes: `plugin_name` (the plugin's name in the daemon's configuration), `config` (its
    `config` table, a dict), `event_id`, `attempt` (1 on the first delivery, counting up on
    redeliveries), `deadline_ms` (how long the plugin has to answer or report progress),
    `subscription` (the name of the subscription whose callback this is), `subscriptions` (the
    names of every subscription this delivery matched, in registration order), `log` (a
    `logging.Logger` named `plugin.<plugin name>.<subscription name>`), and `credentials`
    (`Credentials` or None).
    """

    def __init__(
        self,
        *,
        plugin_name: str,
        config: Dict[str, Any],
        event_id: int,
        attempt: int,
        deadline_ms: int,
        subscription: str,
        credentials: Optional[Credentials],
        progress: Callable[[], None],
        connections: ShotgunConnections,
        log: Optional[logging.Logger] = None,
        subscriptions: Optional[Tuple[str, ...]] = None,
    ) -> None:
        self.plugin_name = plugin_name
        self.config = config
        self.event_id = event_id
        self.attempt = attempt
        self.deadline_ms = deadline_ms
        self.subscription = subscription
        self.subscriptions: Tuple[str, ...] = (subscription,) if subscriptions is None else subscriptions
        self.credentials = credentials
        # `log` is the very logger `logging.getLogger` returns for this name, looked up once per
        # subscription by the session instead of once per call.
        self.log = log if log is not None else logging.getLogger(f"plugin.{plugin_name}.{subscription}")
        self._progress = progress
        self._connections = connections

    def progress(self) -> None:
        """Tells the daemon the event is still being worked on, which extends its deadline.

        The `progress` line is written at once.
        """
        self._progress()

    @property
    def sg(self) -> Any:
        """A `shotgun_api3.Shotgun` connection with the plugin's own credentials.

        Made on first use and reused afterwards (one per worker thread, since connections are not
        thread-safe). Raises `MissingCredentials` when the daemon gave none and
        `ShotgunNotInstalled` when `shotgun_api3` cannot be imported, both `SdkError`s whose
        message ends with a `hint:` line.
        """
        return self._connections.get()

    def __repr__(self) -> str:
        return (
            f"Context(plugin_name={self.plugin_name!r}, event_id={self.event_id}, "
            f"attempt={self.attempt}, subscription={self.subscription!r}, "
            f"credentials={self.credentials!r})"
        )


Event = Dict[str, Any]
"""An event as the callback gets it: the flat `EventLogEntry` dict of `shotgun_api3`."""
Callback = Callable[[Context, Event], Any]
"""A callback: `callback(ctx, event)`; its return value is ignored."""
