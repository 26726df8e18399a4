"""The in-process backend (`memory://`): one log of events in a deque, delivery inside `publish`.

Ids are "<start time in ms>-<counter>": the start time tells an id issued before a restart
of the process (which lost its history) from a current one.
"""

from __future__ import annotations

import time
from collections import deque
from itertools import islice
from typing import Any

from sse_starlette.broker._backend import Deliver, ResumeReset
from sse_starlette.broker._event import BrokerEvent
from sse_starlette.broker._ids import parse_id

_Key = tuple[tuple[str, ...], str]  # an idempotency key, with the topics it was used for


class MemoryBackend:
    """Events kept in this process: `history` of them, for at most `max_age` seconds."""

    def __init__(self, *, history: int = 1000, max_age: float | None = None, sep: str = "\r\n"):
        self.history_length = history
        self.max_age = max_age
        self.sep = sep
        self.epoch = int(time.time() * 1000)
        self.counter = 0
        # (counter, monotonic time published, event, idempotency key or None)
        self.events: deque[tuple[int, float, BrokerEvent, _Key | None]] = deque()
        # The idempotency keys of the events kept, with their topics (as on Redis: a key
        # names one publish to those topics): remembered as long as their event is.
        self.keys: dict[_Key, str] = {}
        self.ids: dict[str, int] = {}  # events' own ids -> their counter, while kept
        self.trimmed_upto = 0  # the counter of the last event no longer kept
        self.deliver: Deliver | None = None

    async def start(self, deliver: Deliver) -> None:
        self.deliver = deliver

    async def run(self) -> None:
        pass  # no reader: publish() delivers

    async def stop(self) -> None:
        self.deliver = None

    async def publish(
        self, topics: tuple[str, ...], fields: dict[str, Any], idempotency_key: str | None
    ) -> str:
        if self.deliver is None:
            raise RuntimeError("the broker is not started: use `async with broker:`")
        # In-process, a publish either stores or raises: only a caller's key is remembered.
        key = None if idempotency_key is None else (topics, idempotency_key)
        if key is not None and key in self.keys:
            return self.keys[key]
        self.counter += 1
        position = f"{self.epoch}-{self.counter}"
        fields = dict(fields)
        own = fields.pop("id", None)
        event = BrokerEvent(topics, own or position, sep=self.sep, position=position, **fields)
        self.events.append((self.counter, time.monotonic(), event, key))
        if key is not None:
            self.keys[key] = event.id
        if own is not None:
            self.ids.setdefault(own, self.counter)  # a repeated id resumes after the first
        self._trim()
        self.deliver(event)
        return event.id

    async def position(self) -> str:
        return f"{self.epoch}-{self.counter}"

    async def last(self) -> BrokerEvent | None:
        self._trim()
        return self.events[-1][2] if self.events else None

    async def find(self, id: str) -> BrokerEvent | None:
        counter = self.ids.get(id)
        if counter is None or not self.events:
            return None
        # Counters are consecutive: the event is at a known index.
        return self.events[counter - self.events[0][0]][2]

    async def oldest(self) -> str:
        self._trim()
        return f"{self.epoch}-{self.trimmed_upto}"

    async def history(self, after: str, upto: str, limit: int) -> list[BrokerEvent]:
        position = parse_id(after)
        if position is None:
            raise ResumeReset("malformed")
        epoch, counter = position
        if epoch != self.epoch or counter > self.counter:
            raise ResumeReset("unknown")  # from before a restart, or never issued
        self._trim()
        if counter < self.trimmed_upto:
            raise ResumeReset("too-old")
        end = parse_id(upto)
        last = end[1] if end is not None and end[0] == epoch else counter
        events = self.events
        # Counters are consecutive: the event after `after` is at a known index.
        start = counter - events[0][0] + 1 if events else 0
        return [event for n, _, event, _ in islice(events, start, start + limit) if n <= last]

    def _trim(self) -> None:
        events = self.events
        while len(events) > self.history_length or (
            self.max_age is not None and events and events[0][1] < time.monotonic() - self.max_age
        ):
            self.trimmed_upto, _, event, key = events.popleft()
            if key is not None:
                self.keys.pop(key, None)
            if event.id != event.position and self.ids.get(event.id) == self.trimmed_upto:
                del self.ids[event.id]

    def watch(self, cursor: str) -> None:
        pass  # publish() delivers in-process already

    def unwatch(self) -> None:
        pass

    async def health(self) -> str | None:
        return None  # in-process: always there
