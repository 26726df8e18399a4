"""What a broker backend is, and the event it stores: shared by memory.py and redis.py."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Protocol

from sse_starlette.event import ServerSentEvent, check_fields, data_text, encode_event

__all__ = [
    "Backend",
    "BrokerEvent",
    "BrokerUnavailableError",
    "PublishOutcomeUnknownError",
    "ResumeReset",
    "event_fields",
    "parse_id",
]

# ASCII digits only: `\d` would take any Unicode digit ("١٢-٣" is 12-3 to int()).
_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
_MAX_PART = 2**64 - 1  # what a Redis stream id holds in each part


def parse_id(value: str) -> tuple[int, int] | None:
    """A broker id ("<milliseconds>-<sequence>", as Redis stream ids) as a sortable pair;
    None for anything else, including values a Redis stream id cannot hold."""
    match = _ID.fullmatch(value)
    if match is None:
        return None
    pair = int(match[1]), int(match[2])
    if pair[0] > _MAX_PART or pair[1] > _MAX_PART:
        return None
    return pair


class BrokerEvent(ServerSentEvent):
    """An event as the broker stores and delivers it: its topic, its id, its wire bytes.

    Encoded once when it enters the process; every subscriber is handed the same object and
    the same bytes. Treat it as read-only.
    """

    __slots__ = ("_body", "_wire", "topic")
    id: str  # always set: the broker assigned it

    def __init__(
        self,
        topic: str,
        id: str,
        data: str | None = None,
        *,
        event: str | None = None,
        retry: int | None = None,
        comment: str | None = None,
        sep: str = "\r\n",
    ) -> None:
        super().__init__(data, event=event, id=id, retry=retry, comment=comment, sep=sep)
        self.topic = topic
        self._body = encode_event(data, event, None, retry, comment, sep)
        self._wire = f"id: {id}{sep}".encode() + self._body

    def encode(self) -> bytes:
        return self._wire

    def with_id(self, id: str) -> BrokerEvent:
        """The same event under another id (a stream of several topics has ids of its own)."""
        copy = object.__new__(BrokerEvent)
        for name in ("data", "event", "retry", "comment", "_sep", "topic", "_body"):
            setattr(copy, name, getattr(self, name))
        copy.id = id
        copy._wire = f"id: {id}{self._sep}".encode() + self._body
        return copy


def event_fields(item: Any, sep: str) -> dict[str, Any]:
    """The fields of something `publish()` was given, checked so that it encodes.

    Raises ValueError/TypeError naming the field, before anything is stored. A dict's `sep`
    is not a field: the broker's own separator is used.
    """
    if isinstance(item, ServerSentEvent):
        fields = {name: getattr(item, name) for name in ("data", "event", "id", "retry", "comment")}
    elif isinstance(item, dict):
        check_fields(item)
        fields = {name: item.get(name) for name in ("data", "event", "id", "retry", "comment")}
    else:
        fields = {"data": item}
    if fields.pop("id", None) is not None:
        raise ValueError("the broker assigns event ids; publish the event without 'id'")
    fields = {name: value for name, value in fields.items() if value is not None}
    if "data" in fields:
        fields["data"] = data_text(fields["data"])
    for name in ("event", "comment"):
        if name in fields:
            fields[name] = str(fields[name])
    get = fields.get
    encode_event(get("data"), get("event"), None, get("retry"), get("comment"), sep)
    return fields


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


Deliver = Callable[[BrokerEvent], None]


class Backend(Protocol):
    """Where events are stored and how they reach this process.

    `deliver` is called once per event, in id order per topic, from the process's one reader
    (memory: from `publish` itself).
    """

    async def start(self, deliver: Deliver) -> None:
        """Connect; from now on `deliver` receives the events of watched topics."""

    async def run(self) -> None:
        """The process's one reader, run in the broker's task group until cancelled."""

    async def stop(self) -> None: ...

    async def publish(self, topic: str, fields: dict[str, Any], idempotency_key: str | None) -> str:
        """Store the event and return its id; raise if it was not stored.

        An event published again under an `idempotency_key` the backend still remembers is
        not stored again: the id it got the first time is returned.
        """
        ...

    async def position(self, topic: str) -> str:
        """The id of the topic's last event (or its starting position when it has none)."""
        ...

    async def history(self, topic: str, after: str, upto: str, limit: int) -> list[BrokerEvent]:
        """The first `limit` stored events with `after` < id <= `upto`, in order: one page.

        A resume reads page after page, `after` the last id of the page before, so that a
        subscriber holds at most one page whatever its `Last-Event-ID`. Raises `ResumeReset`
        when `after` cannot be resumed from exactly: malformed, unknown, or older than the
        kept history (also for a later page, if the history was trimmed meanwhile).
        """
        ...

    def watch(self, topic: str, cursor: str) -> None:
        """Start delivering the topic's events after `cursor` to this process."""

    def unwatch(self, topic: str) -> None:
        """No subscriber in this process reads the topic any more."""

    async def health(self) -> str | None:
        """None when the backend can store and deliver events now; else what is wrong."""
        ...
