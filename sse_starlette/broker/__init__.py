"""Topics, broadcast and exact resume: `Broker` and its `Subscription`s.

Data path of one event: `publish()` -> the backend stores it and assigns its id -> one
reader per process hands it to `_deliver` -> appended to each subscriber's bounded buffer ->
each connection's own send loop writes the same bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import anyio

from sse_starlette.broker._backend import (
    Backend,
    BrokerUnavailableError,
    PublishOutcomeUnknownError,
    ResumeReset,
)
from sse_starlette.broker._event import BrokerEvent, event_fields
from sse_starlette.broker._ids import parse_id
from sse_starlette.event import check_sep
from sse_starlette.sse import EventSourceResponse

if TYPE_CHECKING:
    from starlette.requests import Request

__all__ = [
    "Broker",
    "BrokerEvent",
    "BrokerMetrics",
    "BrokerUnavailableError",
    "PublishOutcomeUnknownError",
    "Subscription",
    "request_last_event_id",
]

logger = logging.getLogger(__name__)

SlowConsumerPolicy = Literal["disconnect", "drop_oldest"]


@dataclass
class BrokerMetrics:
    """Counters since the broker started (a hub exports them; cheap to read)."""

    published: int = 0
    delivered: int = 0
    subscribers: int = 0  # attached now: each receives every event published from here on
    resumes: int = 0
    resets: int = 0
    slow_consumer_disconnects: int = 0
    slow_consumer_drops: int = 0


def request_last_event_id(request: Request) -> str | None:
    """The id a client resumes from: the `Last-Event-ID` header, else the `lastEventId` query
    parameter (for clients that cannot set headers; a browser's `EventSource` reconnects to
    the same URL with a newer header, which wins)."""
    return request.headers.get("last-event-id") or request.query_params.get("lastEventId")


class _Topic:
    __slots__ = ("cursor", "ready", "subscribers")

    def __init__(self) -> None:
        self.cursor = ""  # id of the last event delivered to this process
        self.ready = anyio.Event()
        self.subscribers: set[Subscription] = set()


class Broker:
    """Publish events to topics from anywhere in the app; subscribe streams to them.

    Args:
        url: `memory://` (in-process, the default) or `redis://...` / `rediss://...` /
            `unix://...` (Redis Streams, for several processes and hosts; asyncio only).
        backend: a `Backend` object to use instead of one made from `url` (a backend of
            your own, or one configured beyond what the URL and options say).
        history: events kept per topic for resuming (by count).
        max_age: seconds an event is kept for resuming (None: no age limit).
        buffer: events a subscriber may fall behind before the slow-consumer policy applies.
        slow_consumer: "disconnect" (the stream ends cleanly; the client resumes from
            history when it reconnects) or "drop_oldest" (the oldest buffered events are
            dropped and the subscriber gets a reset event, reason "slow-consumer").
        reset_event: the `event:` type of the reset event sent when a stream cannot resume
            exactly; its data is JSON `{"reason": ..., "topics": [...]}`.
        sep: line separator of the encoded events.
        redis_prefix: prefix of the Redis stream keys (one stream per topic).
        idempotency_ttl: seconds Redis remembers a publish's `idempotency_key`.
        redis_options: passed to `redis.asyncio.from_url` (password, ssl settings, pool...).
    """

    def __init__(
        self,
        url: str = "memory://",
        *,
        history: int = 1000,
        max_age: float | None = None,
        buffer: int = 256,
        slow_consumer: SlowConsumerPolicy = "disconnect",
        reset_event: str = "reset",
        sep: str = "\r\n",
        redis_prefix: str = "sse:",
        idempotency_ttl: float = 3600.0,
        backend: Backend | None = None,
        **redis_options: Any,
    ) -> None:
        if history < 1 or buffer < 1:
            raise ValueError("history and buffer must be >= 1")
        if slow_consumer not in ("disconnect", "drop_oldest"):
            raise ValueError(
                f"slow_consumer must be 'disconnect' or 'drop_oldest', got {slow_consumer!r}"
            )
        self.url = url
        self.buffer = buffer
        self.slow_consumer = slow_consumer
        self.reset_event = reset_event
        self.sep = check_sep(sep)
        self.metrics = BrokerMetrics()
        self.backend: Backend
        if backend is not None:
            self.backend = backend
        elif url.startswith("memory://"):
            from sse_starlette.broker.memory import MemoryBackend

            self.backend = MemoryBackend(history=history, max_age=max_age, sep=sep)
        elif url.startswith(("redis://", "rediss://", "unix://")):
            from sse_starlette.broker.redis import RedisBackend

            self.backend = RedisBackend(
                url,
                history=history,
                max_age=max_age,
                sep=sep,
                prefix=redis_prefix,
                idempotency_ttl=idempotency_ttl,
                **redis_options,
            )
        else:
            raise ValueError(f"unsupported broker URL {url!r}: use memory:// or redis://")
        self._topics: dict[str, _Topic] = {}
        self._tasks: anyio.abc.TaskGroup | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Broker:
        await self.backend.start(self._deliver)
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        self._tasks.start_soon(self.backend.run)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        assert self._tasks is not None
        for topic in list(self._topics.values()):
            for subscription in list(topic.subscribers):
                subscription._end()
        self._tasks.cancel_scope.cancel()
        await self._tasks.__aexit__(None, None, None)
        self._tasks = None
        await self.backend.stop()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """`Starlette(lifespan=broker.lifespan)` / `FastAPI(lifespan=broker.lifespan)`."""
        async with self:
            yield

    # --- publishing --------------------------------------------------------------------------

    async def publish(self, topic: str, event: Any, *, idempotency_key: str | None = None) -> str:
        """Store `event` under `topic` and hand it to every subscriber; return its id.

        `event` is anything an `EventSourceResponse` accepts: a `ServerSentEvent`, a dict of
        fields, a str, a Pydantic model, a dataclass... except an `id`: the broker assigns ids.
        Invalid fields raise ValueError/TypeError and nothing is stored. With Redis, an event
        certainly not stored raises `BrokerUnavailableError`; one that may have been stored
        (Redis went away before it answered) raises its subclass
        `PublishOutcomeUnknownError`. Publishing again under the same `idempotency_key`
        stores it once and returns its id (for `idempotency_ttl` seconds on Redis; on the
        memory backend as long as the event is in the history).
        """
        fields = event_fields(event, self.sep)
        id = await self.backend.publish(topic, fields, idempotency_key)
        self.metrics.published += 1
        # Let the subscribers run before the next publish: a publisher in a tight loop would
        # otherwise fill every buffer and be taken for a slow consumer.
        await anyio.lowlevel.checkpoint()
        return id

    def _deliver(self, event: BrokerEvent) -> None:
        topic = self._topics.get(event.topic)
        if topic is None:
            return
        topic.cursor = event.id
        overflowing = []
        for subscription in topic.subscribers:
            buffer = subscription._buffer
            if len(buffer) >= self.buffer:
                overflowing.append(subscription)
                continue
            buffer.append(event)
            if subscription._waiter is not None:
                subscription._wake()
        self.metrics.delivered += len(topic.subscribers) - len(overflowing)
        for subscription in overflowing:  # after the loop: it leaves topic.subscribers
            subscription._overflow(event)

    # --- subscribing -------------------------------------------------------------------------

    def subscribe(
        self, topics: str | Sequence[str], last_event_id: str | None = None
    ) -> Subscription:
        """An async iterator of the topics' events, starting after `last_event_id` if given.

        Also an async context manager; iterating it as the content of an
        `EventSourceResponse` closes it when the client leaves.
        """
        return Subscription(self, [topics] if isinstance(topics, str) else topics, last_event_id)

    def response(
        self,
        request: Request,
        topics: str | Sequence[str],
        *,
        last_event_id: str | None = None,
        **response_options: Any,
    ) -> EventSourceResponse:
        """An `EventSourceResponse` streaming `topics` to the client making `request`.

        Resumes after the `Last-Event-ID` header, or else the `lastEventId` query parameter
        (for clients that cannot set headers; a browser's `EventSource` reconnects to the
        same URL with a newer header, which wins). `response_options` go to the response.
        """
        if last_event_id is None:
            last_event_id = request_last_event_id(request)
        subscription = self.subscribe(topics, last_event_id)
        response = EventSourceResponse(subscription, **response_options)
        # Dropped as a slow consumer: the connection goes too, even if it never reads again.
        subscription._on_dropped = response._abandon
        return response

    async def _attach(self, name: str, subscription: Subscription) -> str:
        while True:
            topic = self._topics.get(name)
            if topic is None:
                topic = self._topics[name] = _Topic()
                try:
                    topic.cursor = await self.backend.position(name)
                except BaseException:
                    del self._topics[name]
                    topic.ready.set()
                    raise
                self.backend.watch(name, topic.cursor)
                topic.ready.set()
            elif not topic.ready.is_set():
                await topic.ready.wait()
                continue  # it may have been dropped meanwhile
            topic.subscribers.add(subscription)
            return topic.cursor

    def _detach(self, name: str, subscription: Subscription) -> None:
        topic = self._topics.get(name)
        if topic is None:
            return
        topic.subscribers.discard(subscription)
        if not topic.subscribers and topic.ready.is_set():
            del self._topics[name]
            self.backend.unwatch(name)


class _Replay:
    """Where a resuming subscription stands in one topic's history: the next page of it."""

    __slots__ = ("after", "last_page", "page", "upto")

    def __init__(self, after: str, upto: str) -> None:
        self.after = after  # the id of the last event handed out
        self.upto = upto  # the topic's position when the subscription attached: live after
        self.page: deque[BrokerEvent] = deque()
        self.last_page = False  # the page held is the last one

    @property
    def head(self) -> tuple[int, int]:
        return parse_id(self.page[0].id)  # type: ignore[return-value]


class Subscription:
    """One stream's view of one or more topics: its buffer, its position, its resume.

    Yields `BrokerEvent`s. On several topics, each event's `id` is the stream's position in
    every topic (`"<checksum>:<id>,<id>..."`, topics in sorted order), so that
    `Last-Event-ID` resumes all of them exactly.
    """

    # Slots and a list for the rarely used resume queue: a deque is 0.7 KiB even when empty,
    # and every open stream has a subscription.
    __slots__ = (
        "_attached",
        "_buffer",
        "_checksum",
        "_closed",
        "_counted",
        "_dropped",
        "_on_dropped",
        "_pending",
        "_positions",
        "_replay",
        "_skip",
        "_started",
        "_waiter",
        "broker",
        "last_event_id",
        "topics",
    )

    def __init__(self, broker: Broker, topics: Sequence[str], last_event_id: str | None) -> None:
        names = sorted(set(topics))
        if not names:
            raise ValueError("subscribe to at least one topic")
        self.broker = broker
        self.topics = names
        self.last_event_id = last_event_id
        self._positions: dict[str, str] = {}
        # Reset and history, before live events; in reverse order: the next one is the last.
        self._pending: list[BrokerEvent] = []
        self._buffer: deque[BrokerEvent] = deque()
        # What the stream waits on when its buffer is empty: a future on asyncio (an anyio
        # Event costs as much again per delivery as all the rest), an anyio Event on trio.
        self._waiter: asyncio.Future[None] | anyio.Event | None = None
        self._skip: dict[str, tuple[int, int]] = {}
        # Topics still being replayed after a resume: their history is read a page at a time.
        self._replay: dict[str, _Replay] = {}
        self._started = False
        self._counted = False
        self._closed = False
        self._dropped = False  # events were dropped (drop_oldest): a reset event is due
        self._on_dropped: Callable[[], None] | None = None  # disconnected as a slow consumer
        self._attached: list[str] = []
        self._checksum = f"{zlib.crc32(chr(10).join(names).encode()):08x}"

    @property
    def stream_id(self) -> str:
        """The id that resumes this stream where it stands now."""
        if len(self.topics) == 1:
            return self._positions[self.topics[0]]
        return self._checksum + ":" + ",".join(self._positions[name] for name in self.topics)

    def __aiter__(self) -> Subscription:
        return self

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop receiving events; the iteration ends."""
        self._end()

    async def __anext__(self) -> BrokerEvent:
        if not self._started:
            await self._start()
        while True:
            if self._dropped and not self._replay:  # after the history: ids never go back
                self._dropped = False
                return self._reset("slow-consumer")
            if self._pending:
                event = self._pending.pop()
            elif self._replay:
                replayed = await self._replayed()
                if replayed is None:
                    continue
                event = replayed
            elif self._buffer:
                event = self._buffer.popleft()
            elif self._closed:
                raise StopAsyncIteration
            else:
                await self._wait()
                continue
            topic = event.topic
            if self._skip and topic in self._skip:
                if parse_id(event.id) <= self._skip[topic]:  # type: ignore[operator]
                    continue  # already seen in another process before reconnecting here
                del self._skip[topic]
            if topic in self._positions:  # not a reset event
                self._positions[topic] = event.id
                if len(self.topics) > 1:
                    return event.with_id(self.stream_id)
            return event

    async def _wait(self) -> None:
        loop = asyncio._get_running_loop()
        if loop is None:
            self._waiter = event = anyio.Event()
            await event.wait()
        else:
            self._waiter = future = loop.create_future()
            await future

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if isinstance(waiter, anyio.Event):
            waiter.set()
        elif waiter is not None and not waiter.done():  # done: its stream was cancelled
            waiter.set_result(None)

    async def _start(self) -> None:
        self._started = True
        if self._closed:
            return
        broker = self.broker
        for name in self.topics:
            try:
                self._positions[name] = await broker._attach(name, self)
            except Exception:
                # Never a 500 for what the backend did: the stream ends cleanly, the client
                # reconnects and resumes from its last id.
                logger.exception("stream of %s could not start; ended", self.topics)
                self._end()
                return
            self._attached.append(name)
            if self._closed:  # closed while attaching: _end() did not see this topic yet
                broker._detach(name, self)
                return
        self._counted = True  # attached: it receives every event from here on
        broker.metrics.subscribers += 1
        if self.last_event_id is None:
            return
        broker.metrics.resumes += 1
        cursors = dict(self._positions)
        try:
            wanted = self._parse(self.last_event_id)
        except ResumeReset as reset:
            self._reset_resume(reset.reason)
            return
        for name in self.topics:
            after, upto = wanted[name], cursors[name]
            if parse_id(after) > parse_id(upto):  # type: ignore[operator]
                self._skip[name] = parse_id(after)  # type: ignore[assignment]
            if after != upto:
                self._replay[name] = _Replay(after, upto)
        self._positions.update(wanted)
        # The first page of each topic now: an id too old or unknown is answered at once.
        for name, replay in list(self._replay.items()):
            if not await self._fill(name, replay):
                return

    async def _fill(self, name: str, replay: _Replay) -> bool:
        """Read the topic's next page of history; False: the resume was reset instead."""
        broker = self.broker
        size = max(1, broker.buffer // len(self.topics))  # at most `buffer` events held
        try:
            page = await broker.backend.history(name, replay.after, replay.upto, size)
            if self._closed:
                return False  # closed while reading: nothing more to hand out
        except ResumeReset as reset:
            self._reset_resume(reset.reason)
            return False
        except Exception:
            # The backend failed reading the history: a reset, and the stream goes on live,
            # rather than a broken stream the client re-enters for ever.
            logger.exception(
                "stream of %s could not read the history after %r", self.topics, replay.after
            )
            self._reset_resume("error")
            return False
        replay.page.extend(page)
        replay.last_page = len(page) < size
        if not page:
            self._replay.pop(name, None)
        return True

    async def _replayed(self) -> BrokerEvent | None:
        """The next missed event, oldest first across topics; None when none is left."""
        for name, replay in list(self._replay.items()):
            if not replay.page and not await self._fill(name, replay):
                return None  # reset: the reset event is pending
        if not self._replay:
            return None
        name = min(self._replay, key=lambda topic: self._replay[topic].head)
        replay = self._replay[name]
        event = replay.page.popleft()
        replay.after = event.id
        if not replay.page and (replay.last_page or event.id == replay.upto):
            self._replay.pop(name, None)
        return event

    def _reset_resume(self, reason: str) -> None:
        """The resume cannot be exact: one reset event, then live events."""
        if self._closed:
            return
        self.broker.metrics.resets += 1
        logger.info(
            "stream of %s cannot resume from %r: %s", self.topics, self.last_event_id, reason
        )
        for name, replay in self._replay.items():
            self._positions[name] = replay.upto  # live events follow on from there
        self._replay.clear()
        self._pending.append(self._reset(reason))

    def _parse(self, last_event_id: str) -> dict[str, str]:
        if len(self.topics) == 1:
            ids = [last_event_id]
        else:
            checksum, _, joined = last_event_id.partition(":")
            if checksum != self._checksum:
                raise ResumeReset("malformed")  # or an id of another set of topics
            ids = joined.split(",")
        pairs = [parse_id(id) for id in ids]
        if len(ids) != len(self.topics) or None in pairs:
            raise ResumeReset("malformed")
        # As the backend writes them ("0001-2" is "1-2"): ids compare as strings there.
        return {
            name: f"{pair[0]}-{pair[1]}"  # type: ignore[index]
            for name, pair in zip(self.topics, pairs, strict=True)
        }

    def _reset(self, reason: str) -> BrokerEvent:
        data = json.dumps({"reason": reason, "topics": self.topics}, separators=(",", ":"))
        return BrokerEvent(
            "", self.stream_id, data, event=self.broker.reset_event, sep=self.broker.sep
        )

    def _overflow(self, event: BrokerEvent) -> None:
        """The subscriber fell `buffer` events behind (called while delivering `event`)."""
        broker = self.broker
        if broker.slow_consumer == "disconnect":
            broker.metrics.slow_consumer_disconnects += 1
            logger.info("slow consumer of %s disconnected at %s", self.topics, self.stream_id)
            self._end()
            if self._on_dropped is not None:
                self._on_dropped()
            return
        broker.metrics.slow_consumer_drops += 1
        broker.metrics.delivered += 1
        dropped = self._buffer.popleft()
        if dropped.topic in self._positions and not self._replay:
            # (While the history is replayed the position follows it; the reset comes after.)
            self._positions[dropped.topic] = dropped.id
        self._dropped = True
        self._buffer.append(event)

    def _end(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._buffer.clear()
        self._pending.clear()
        self._replay.clear()
        for name in self._attached:
            self.broker._detach(name, self)
        if self._counted:
            self.broker.metrics.subscribers -= 1
        self._attached = []
        self._wake()
