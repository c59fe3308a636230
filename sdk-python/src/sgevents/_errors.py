"""The exceptions of the public API: the ones a callback raises to choose its event's answer, and
the ones the SDK raises when it is used or set up wrongly."""

from __future__ import annotations

import datetime
from typing import ClassVar, Optional, Union


class CallbackError(Exception):
    """Base of the exceptions a callback raises to choose how its event is answered.

    `answer` is the protocol message the event gets (`nack`, `term` or `fatal`). The error text
    sent to the daemon is the message, followed by `": <cause>"` for each exception chained with
    `raise ... from cause`. Any other exception is answered `nack` with its full traceback.
    """

    answer: ClassVar[str] = "nack"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = str(message)

    def describe(self) -> str:
        """The error text sent to the daemon: the message, then each explicit cause."""
        text = self.message
        cause = self.__cause__
        seen = {id(self)}
        while cause is not None and id(cause) not in seen:
            seen.add(id(cause))
            text += f": {cause}" if str(cause) else f": {type(cause).__name__}"
            cause = cause.__cause__
        return text


class Retry(CallbackError):
    """The event failed this time; answer `nack` so the daemon delivers it again later.

    `retry_after` (seconds, or a `timedelta`) asks for that delay before the redelivery; without
    it the daemon uses its own backoff. Unlike an ordinary exception, the error text is the message
    (and its causes), not a traceback: raise it for failures you expected, such as a busy server.
    """

    answer: ClassVar[str] = "nack"

    def __init__(
        self, message: str, retry_after: Union[float, datetime.timedelta, None] = None
    ) -> None:
        super().__init__(message)
        if isinstance(retry_after, datetime.timedelta):
            retry_after = retry_after.total_seconds()
        if retry_after is not None and not retry_after >= 0:
            raise ValueError(f"retry_after must be zero or more seconds, got {retry_after!r}")
        # The delay asked for, in seconds, or None.
        self.retry_after = retry_after

    @property
    def retry_after_ms(self) -> Optional[int]:
        """The delay asked for, in whole milliseconds as sent on the wire, or None."""
        if self.retry_after is None:
            return None
        return int(round(self.retry_after * 1000))


class Skip(CallbackError):
    """The event can never succeed: answer `term`, so the daemon records it as failed and moves on.

    Use it when retrying cannot help (a Task without a parent, a malformed field). To ignore an
    event you do not care about, just return: that is a success.
    """

    answer: ClassVar[str] = "term"


class Fatal(CallbackError):
    """The plugin cannot go on at all: answer `fatal` and exit with status 125 at once.

    The daemon disables the plugin and keeps its position at this event, so nothing is lost while
    an operator fixes the cause (a revoked licence, a missing mount). Raised from a setup hook it
    refuses the handshake the same way.
    """

    answer: ClassVar[str] = "fatal"
    exit_code: ClassVar[int] = 125


class SdkError(Exception):
    """The SDK was used or set up wrongly; the message says what is wrong and, on a `hint:` line,
    what to do. Raised in a callback it is an ordinary exception (the event is answered `nack`)."""


class ShotgunNotInstalled(SdkError):
    """`ctx.sg` was used but `shotgun_api3` cannot be imported by the plugin's Python."""


class MissingCredentials(SdkError):
    """`ctx.sg` was used but the daemon gave the plugin no ShotGrid credentials."""
