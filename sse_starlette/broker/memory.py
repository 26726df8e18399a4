"""The in-process backend (`memory://`): history in a deque per topic, delivery inside `publish`.

Ids are "<start time in ms>-<counter>": the counter is shared by all topics, so ids order
events across topics too, and the start time tells an id issued before a restart of the
process (which lost its history) from a current one.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from sse_starlette.broker._backend import Deliver, ResumeReset
from sse_starlette.broker._event import BrokerEvent
from sse_starlette.broker._ids import parse_id


class _History:
    __slots__ = ("events", "keys", "trimmed_upto")

    def __init__(self, start: tuple[int, int]) -> None:
        # (id as a pair, monotonic time published, event, idempotency key or "")
        self.events: deque[tuple[tuple[int, int], float, BrokerEvent, str]] = deque()
        # The idempotency keys of the events kept: remembered as long as their event is.
        self.keys: dict[str, str] = {}
        # The id of the last event no longer kept; ids are shared by all topics, so before the
        # first trim nothing up to the topic's first event is missing.
        self.trimmed_upto = start


class MemoryBackend:
    def __init__(self, *, history: int, max_age: float | None, sep: str) -> None:
        self.max_events = history
        self.max_age = max_age
        self.sep = sep
        self.epoch = int(time.time() * 1000)
        self.counter = 0
        self.topics: dict[str, _History] = {}
        self.deliver: Deliver | None = None

    async def start(self, deliver: Deliver) -> None:
        self.deliver = deliver

    async def run(self) -> None:
        pass  # no reader: publish() delivers

    async def stop(self) -> None:
        self.deliver = None

    async def publish(self, topic: str, fields: dict[str, Any], idempotency_key: str | None) -> str:
        if self.deliver is None:
            raise RuntimeError("the broker is not started: use `async with broker:`")
        history = self.topics.get(topic)
        if history is None:
            history = self.topics[topic] = _History((self.epoch, 0))
        # In-process, a publish either stores or raises: only a caller's key is remembered.
        if idempotency_key is not None and idempotency_key in history.keys:
            return history.keys[idempotency_key]
        self.counter += 1
        id = f"{self.epoch}-{self.counter}"
        event = BrokerEvent(topic, id, sep=self.sep, **fields)
        key = idempotency_key or ""
        history.events.append(((self.epoch, self.counter), time.monotonic(), event, key))
        if key:
            history.keys[key] = id
        self._trim(history)
        self.deliver(event)
        return id

    async def position(self, topic: str) -> str:
        history = self.topics.get(topic)
        if history is None:
            return f"{self.epoch}-0"
        if history.events:
            return "{}-{}".format(*history.events[-1][0])
        return "{}-{}".format(*history.trimmed_upto)

    async def history(self, topic: str, after: str, upto: str, limit: int) -> list[BrokerEvent]:
        position = parse_id(after)
        if position is None:
            raise ResumeReset("malformed")
        if position[0] != self.epoch or position[1] > self.counter:
            raise ResumeReset("unknown")  # from before a restart, or never issued
        history = self.topics.get(topic)
        if history is None:
            if position[1] == 0:
                return []  # the start position of a topic with no events yet
            raise ResumeReset("unknown")
        self._trim(history)
        if position < history.trimmed_upto:
            raise ResumeReset("too-old")
        end = parse_id(upto) or position
        page: list[BrokerEvent] = []
        for key, _, event, _ in history.events:
            if key > end or len(page) == limit:
                break
            if key > position:
                page.append(event)
        return page

    def _trim(self, history: _History) -> None:
        events = history.events
        while len(events) > self.max_events or (
            self.max_age is not None and events and events[0][1] < time.monotonic() - self.max_age
        ):
            history.trimmed_upto, _, _, key = events.popleft()
            if key:
                history.keys.pop(key, None)

    def watch(self, topic: str, cursor: str) -> None:
        pass  # publish() delivers in-process already

    def unwatch(self, topic: str) -> None:
        pass

    async def health(self) -> str | None:
        return None  # in-process: always there
