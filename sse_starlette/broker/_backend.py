"""What a broker backend is: the protocol memory.py and redis.py follow, and its errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from sse_starlette.broker._event import BrokerEvent

__all__ = [
    "Backend",
    "BrokerUnavailableError",
    "Deliver",
    "PublishOutcomeUnknownError",
    "ResumeReset",
]


class BrokerUnavailableError(ConnectionError):
    """The backend could not be reached: the event was certainly not stored (`stored` False).

    Its subclass `PublishOutcomeUnknownError` (`stored` None) says the event may have been
    stored. Catch this class to answer 503 either way.
    """

    stored: bool | None = False


class PublishOutcomeUnknownError(BrokerUnavailableError):
    """The backend went away after it was sent the event and before it answered: the event
    may have been stored and delivered. Publish it again with the same `idempotency_key`:
    it is then stored once, and its id returned.
    """

    stored = None


class ResumeReset(Exception):
    """A subscriber's last event id cannot be resumed from exactly: it gets a reset event."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# Hands an event to this process's subscribers; True if any of them takes it.
Deliver = Callable[[BrokerEvent], bool]


class Backend(Protocol):
    """Where events are stored and how they reach this process.

    A backend is one log: every event has one id, ordered across all topics, the same in
    every process. `deliver` is called once per event, in id order, from the process's one
    reader (memory: from `publish` itself).
    """

    async def start(self, deliver: Deliver) -> None:
        """Connect; from now on `deliver` receives the events after the watched cursor."""

    async def run(self) -> None:
        """The process's one reader, run in the broker's task group until cancelled."""

    async def stop(self) -> None: ...

    async def publish(
        self, topics: tuple[str, ...], fields: dict[str, Any], idempotency_key: str | None
    ) -> str:
        """Store the event under all of `topics` at once and return its id (its own `id`
        field if it has one, else its position in the log); raise if it was not stored.
        A `private` field (True) is stored with it.

        An event published again under an `idempotency_key` the backend still remembers is
        not stored again: the id it got the first time is returned.
        """
        ...

    async def position(self) -> str:
        """The id of the log's last event (or its starting position when it has none)."""
        ...

    async def last(self) -> BrokerEvent | None:
        """The last event kept; None when none is."""
        ...

    async def find(self, id: str) -> BrokerEvent | None:
        """The kept event first published with this own id; None if there is none."""
        ...

    async def oldest(self) -> str:
        """The position just before the oldest event kept: a resume from it gets them all."""
        ...

    async def history(self, after: str, upto: str, limit: int) -> list[BrokerEvent]:
        """The first `limit` stored events with `after` < id <= `upto`, in order: one page.

        A resume reads page after page, `after` the last id of the page before, so that a
        subscriber holds at most one page whatever its `Last-Event-ID`. Raises `ResumeReset`
        when `after` cannot be resumed from exactly: malformed, unknown, or older than the
        kept history (also for a later page, if the history was trimmed meanwhile).
        """
        ...

    def watch(self, cursor: str) -> None:
        """Start delivering the events after `cursor` to this process."""

    def unwatch(self) -> None:
        """No subscriber in this process reads events any more."""

    async def health(self) -> str | None:
        """None when the backend can store and deliver events now; else what is wrong."""
        ...
