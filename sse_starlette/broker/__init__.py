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
from sse_starlette.broker._routes import Matcher, Routes, check_topics, selection
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
# Topic names and patterns (`chat.*`, `*`), or matchers of topics (`Matcher`).
Selectors = str | Matcher | Sequence[str | Matcher]


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


def request_last_event_id(request: Request, query: str = "lastEventId") -> str | None:
    """The id a client resumes from: the `Last-Event-ID` header, else the `query` parameter
    (for clients that cannot set headers; a browser's `EventSource` reconnects to the same
    URL with a newer header, which wins).

    The header is read as UTF-8, as a browser sends an id that is not ASCII (an IRI, say);
    bytes that are not UTF-8 are read as Latin-1, as HTTP headers otherwise are.
    """
    for name, value in request.scope["headers"]:
        if name == b"last-event-id" and value:
            try:
                return str(value.decode())
            except UnicodeDecodeError:
                return str(value.decode("latin-1"))
    return request.query_params.get(query) or None


class Broker:
    """Publish events to topics from anywhere in the app; subscribe streams to them.

    The broker is one log: each event gets one id, ordered across all topics, the same in
    every process, whatever topics and patterns a stream watches.

    Args:
        url: `memory://` (in-process, the default), `redis://...` / `rediss://...` /
            `unix://...` (Redis Streams, for several processes and hosts; asyncio only), or
            `redis+cluster://host:port` / `rediss+cluster://...` (a Redis Cluster).
        backend: a `Backend` object to use instead of one made from `url` (a backend of
            your own, or one configured beyond what the URL and options say).
        history: events kept for resuming (by count, all topics together).
        max_age: seconds an event is kept for resuming (None: no age limit).
        buffer: events a subscriber may fall behind before the slow-consumer policy applies.
        slow_consumer: "disconnect" (the stream ends cleanly; the client resumes from
            history when it reconnects) or "drop_oldest" (the oldest buffered events are
            dropped and the subscriber gets a reset event, reason "slow-consumer").
        reset_event: the `event:` type of the reset event sent when a stream cannot resume
            exactly; its data is JSON `{"reason": ..., "topics": [...]}`. None: no reset
            event (`Subscription.resume` still says why).
        sep: line separator of the encoded events.
        prefix: prefix of the Redis keys (the log is `{<prefix>}log`).
        idempotency_ttl: seconds Redis remembers a publish's `idempotency_key`.
        redis_options: passed to redis-py's `from_url` (password, ssl settings, pool...).
    """

    def __init__(
        self,
        url: str = "memory://",
        *,
        history: int = 1000,
        max_age: float | None = None,
        buffer: int = 256,
        slow_consumer: SlowConsumerPolicy = "disconnect",
        reset_event: str | None = "reset",
        sep: str = "\r\n",
        prefix: str = "sse:",
        idempotency_ttl: float = 3600.0,
        backend: Backend | None = None,
        **redis_options: Any,
    ) -> None:
        if history < 1 or buffer < 1:
            raise ValueError("history and buffer must be >= 1")
        if max_age is not None and not max_age > 0:  # also refuses NaN
            raise ValueError(f"max_age must be a number of seconds > 0, or None; got {max_age!r}")
        if max_age == float("inf"):
            max_age = None
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
        elif url.startswith(("redis://", "rediss://", "unix://", "redis+cluster://",
                             "rediss+cluster://")):  # fmt: skip
            from sse_starlette.broker.redis import RedisBackend

            self.backend = RedisBackend(
                url,
                history=history,
                max_age=max_age,
                sep=sep,
                prefix=prefix,
                idempotency_ttl=idempotency_ttl,
                **redis_options,
            )
        else:
            raise ValueError(
                f"unsupported broker URL {url!r}: use memory://, redis:// or redis+cluster://"
            )
        self._routes: Routes[Subscription] = Routes()
        self._cursor = ""  # id of the last event delivered to this process
        # None: not watching the log; set: watching from `_cursor`; unset: starting to.
        self._watching: anyio.Event | None = None
        self._tasks: anyio.abc.TaskGroup | None = None
        self._state: Literal["new", "running", "stopped"] = "new"

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Broker:
        await self.backend.start(self._deliver)
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        self._tasks.start_soon(self.backend.run)
        self._state = "running"
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        assert self._tasks is not None
        self._state = "stopped"  # a stream that starts from now on ends at once
        for subscription in self._routes.subscribers():
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

    async def publish(
        self,
        topics: str | Sequence[str],
        event: Any,
        *,
        idempotency_key: str | None = None,
        private: bool = False,
    ) -> str:
        """Store `event` under `topics` (one topic, or several) and hand it to every
        subscriber of any of them, once each; return its id.

        `event` is anything an `EventSourceResponse` accepts: a `ServerSentEvent`, a dict of
        fields, a str, a Pydantic model, a dataclass... except an `id`: the broker assigns ids.
        Invalid fields or topics raise ValueError/TypeError and nothing is stored. With
        Redis, an event certainly not stored raises `BrokerUnavailableError`; one that may
        have been stored (Redis went away before it answered) raises its subclass
        `PublishOutcomeUnknownError`. Publishing again under the same `idempotency_key`
        stores it once and returns its id (for `idempotency_ttl` seconds on Redis; on the
        memory backend as long as the event is in the history).
        """
        names = check_topics(topics, "topic")
        fields = event_fields(event, self.sep)
        if private:
            fields["private"] = True
        id = await self.backend.publish(names, fields, idempotency_key)
        self.metrics.published += 1
        # Let the subscribers run before the next publish: a publisher in a tight loop would
        # otherwise fill every buffer and be taken for a slow consumer.
        await anyio.lowlevel.checkpoint()
        return id

    def _deliver(self, event: BrokerEvent) -> bool:
        self._cursor = event.position
        limit, delivered, overflowing = self.buffer, 0, None
        private = event.private
        for subscription in self._routes.match(event.topics):
            if subscription._skip is not None and subscription._skipped(event):
                continue
            if private and not subscription._may_read(event):
                continue
            buffer = subscription._buffer
            if len(buffer) >= limit:
                if overflowing is None:
                    overflowing = []
                overflowing.append(subscription)
                continue
            buffer.append(event)
            delivered += 1
            if subscription._waiter is not None:
                subscription._wake()
        self.metrics.delivered += delivered
        for subscription in overflowing or ():  # after the loop: it leaves the routes
            subscription._overflow(event)
        return delivered > 0 or overflowing is not None

    # --- subscribing -------------------------------------------------------------------------

    def subscribe(
        self,
        topics: Selectors,
        last_event_id: str | None = None,
        *,
        private: Selectors | None = None,
        positions: bool = True,
    ) -> Subscription:
        """An async iterator of the events of `topics`, after `last_event_id` if given.

        `topics` are topic names or patterns: a prefix followed by `*` (`chat.*`), or `*`
        for every topic, or `Matcher`s (a URI template, say). An event published to several
        of them comes once. `last_event_id` is an event's own id, a log position, or
        `earliest` (every event kept). A private event comes only if one of its topics is
        selected by `private` too (the selectors the subscriber is authorized for).
        `positions=False`: a last event id must be an event's own (a hub whose events all
        have one: anything else is unknown, even if it looks like a log position). Also an
        async context manager; iterating it as the content of an `EventSourceResponse`
        closes it when the client leaves.
        """
        return Subscription(self, topics, last_event_id, private, positions)

    def response(
        self,
        request: Request,
        topics: str | Sequence[str],
        *,
        last_event_id: str | None = None,
        **response_options: Any,
    ) -> EventSourceResponse:
        """An `EventSourceResponse` streaming `topics` (names or patterns, as `subscribe`)
        to the client making `request`.

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

    async def _attach(self, subscription: Subscription) -> str | None:
        """Route the log's events to `subscription` from now on; the position they start at.
        None: the broker has stopped (or stops meanwhile), the stream ends."""
        while True:
            if self._state != "running":
                return None
            watching = self._watching
            if watching is None:
                self._watching = watching = anyio.Event()
                try:
                    self._cursor = await self.backend.position()
                except BaseException:
                    self._watching = None
                    watching.set()
                    raise
                self.backend.watch(self._cursor)
                watching.set()
            elif not watching.is_set():
                await watching.wait()
                continue  # it may have failed, or stopped, meanwhile
            if self._state != "running":
                return None
            self._routes.add(subscription, subscription.topics)
            return self._cursor

    def _detach(self, subscription: Subscription) -> None:
        self._routes.remove(subscription, subscription.topics)
        if not self._routes and self._watching is not None and self._watching.is_set():
            self._watching = None
            self.backend.unwatch()


class _Replay:
    """Where a resuming subscription stands in the log: the next page of it."""

    __slots__ = ("after", "done", "page", "upto")

    def __init__(self, after: str, upto: str) -> None:
        self.after = after  # the id of the last event read from the history
        self.upto = upto  # the log's position when the subscription attached: live after
        self.page: deque[BrokerEvent] = deque()  # the events read and not yet handed out
        self.done = False  # nothing is left to read after `page`


class Subscription:
    """One stream's view of the log: its selectors, its buffer, its position, its resume.

    Yields `BrokerEvent`s, whose ids are the log's: `Last-Event-ID` resumes any set of
    topics and patterns exactly, in any process, with an id of the same size.
    """

    # Slots and a list for the rarely used resume queue: a deque is 0.7 KiB even when empty,
    # and every open stream has a subscription.
    __slots__ = (
        "_attached",
        "_authorized",
        "_buffer",
        "_closed",
        "_counted",
        "_dropped",
        "_on_dropped",
        "_pending",
        "_position",
        "_positions",
        "_replay",
        "_skip",
        "_started",
        "_waiter",
        "broker",
        "last_event_id",
        "resume",
        "topics",
    )

    def __init__(
        self,
        broker: Broker,
        topics: Selectors,
        last_event_id: str | None,
        private: Selectors | None = None,
        positions: bool = True,
    ) -> None:
        self.broker = broker
        self._positions = positions  # a last event id may be a log position
        self.topics = check_topics(topics, "selector")
        self.last_event_id = last_event_id
        # None: no last id to resume from; "exact"; or why not (the reset's reason).
        self.resume: str | None = None
        # Whether a private event's topics are some the subscriber is authorized for.
        self._authorized = None if private is None else selection(check_topics(private, "selector"))
        self._position = ""  # the id of the last event handed out (or where it started)
        self._pending: list[BrokerEvent] = []  # a reset event, before anything else
        self._buffer: deque[BrokerEvent] = deque()
        # What the stream waits on when its buffer is empty: a future on asyncio (an anyio
        # Event costs as much again per delivery as all the rest), an anyio Event on trio.
        self._waiter: asyncio.Future[None] | anyio.Event | None = None
        # Resumed from an id this process's reader has not reached: live events up to it
        # were handed out already (by another process, before the client reconnected here).
        self._skip: tuple[int, int] | None = None
        self._replay: _Replay | None = None  # after a resume: the history, a page at a time
        self._started = False
        self._attached = False
        self._counted = False
        self._closed = False
        self._dropped = False  # events were dropped (drop_oldest): a reset event is due
        self._on_dropped: Callable[[], None] | None = None  # disconnected as a slow consumer

    @property
    def stream_id(self) -> str:
        """The id that resumes this stream where it stands now."""
        return self._position

    def __aiter__(self) -> Subscription:
        return self

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop receiving events; the iteration ends."""
        self._end()

    async def start(self) -> None:
        """Attach now and look up the last event id, rather than at the first read: then
        `resume` says whether the stream resumes exactly (a response header can tell)."""
        if not self._started:
            await self._start()

    def _may_read(self, event: BrokerEvent) -> bool:
        """A private event goes only to a subscriber authorized for one of its topics."""
        return self._authorized is not None and self._authorized(event.topics)

    async def __anext__(self) -> BrokerEvent:
        if not self._started:
            await self._start()
        while True:
            event = self._sse_ready()
            if event is not None:
                return event
            replay = self._replay
            if replay is not None:  # its page is used up: read the next one
                if await self._fill(replay) and self._replay is not None:
                    # Pages may hold nothing for this stream, many in a row: let others run.
                    await anyio.lowlevel.checkpoint()
            elif self._closed:
                raise StopAsyncIteration
            else:
                await self._wait()

    def _sse_ready(self) -> BrokerEvent | None:
        """The next event that needs no waiting, or None: what a response sends together
        with the one it was handed (a resume's page, a backlog) in one message."""
        while True:
            if self._dropped and self._replay is None:  # after the history: ids never go back
                self._dropped = False
                if self.broker.reset_event is not None:
                    return self._reset("slow-consumer")
            if self._pending:
                return self._pending.pop()
            replay = self._replay
            if replay is not None:
                if not replay.page:
                    return None
                event = replay.page.popleft()
                if not replay.page and replay.done:
                    self._replay = None
            elif self._buffer:
                event = self._buffer.popleft()
            else:
                return None
            if self._skip is not None and self._skipped(event):
                continue
            self._position = event.position
            return event

    def _skipped(self, event: BrokerEvent) -> bool:
        """Whether `event` was handed out before the client reconnected here (the id it
        resumes from is past this process's reader); the first later one ends the skip."""
        if parse_id(event.position) <= self._skip:  # type: ignore[operator]
            return True
        self._skip = None
        return False

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
        if broker._state == "new":
            self._end()
            raise RuntimeError("the broker is not started: use `async with broker:`")
        # Where to resume from, looked up before attaching: nothing may be delivered to this
        # stream between its attaching and its knowing what it has seen already.
        after, failure = None, "error"
        if self.last_event_id is not None:
            try:
                after = await self._resolve(self.last_event_id)
            except ResumeReset as reset:
                failure = reset.reason
            except Exception:
                logger.exception("stream of %s could not look up its last id", self._names())
        try:
            cursor = await broker._attach(self)
        except Exception:
            # Never a 500 for what the backend did: the stream ends cleanly, the client
            # reconnects and resumes from its last id.
            logger.exception("stream of %s could not start; ended", self._names())
            self._end()
            return
        if cursor is None:  # the broker stopped: no events will come
            self._end()
            return
        if self._closed:  # closed while attaching: _end() did not detach it
            broker._detach(self)
            return
        self._attached = True
        self._counted = True  # attached: it receives every event from here on
        broker.metrics.subscribers += 1
        self._position = cursor
        if self.last_event_id is None:
            return
        broker.metrics.resumes += 1
        if after is None:
            self._reset_resume(failure)
            return
        if after == cursor:
            self.resume = "exact"
            return  # nothing missed
        pair = parse_id(after)
        if pair > parse_id(cursor):  # type: ignore[operator]
            self._skip = pair
        self._replay = _Replay(after, cursor)
        self._position = after
        # The first page now: an id too old or unknown is answered at once.
        if await self._fill(self._replay):
            self.resume = "exact"

    async def _resolve(self, last_event_id: str) -> str:
        """The log position to resume after: of the event whose own id it is, or the log
        position it is, or for `earliest` the one before the oldest event kept."""
        backend = self.broker.backend
        if last_event_id == "earliest":
            return await backend.oldest()
        found = await backend.find(last_event_id)
        if found is not None:
            if found.private and not self._may_read(found):
                # Found or not must look the same: else a guessed id tells whether a private
                # event has it.
                raise ResumeReset("unknown" if not self._positions else "malformed")
            return found.position
        if not self._positions:
            raise ResumeReset("unknown")
        pair = parse_id(last_event_id)
        if pair is None:
            raise ResumeReset("malformed")
        # As the backend writes them ("0001-2" is "1-2"): ids compare as strings there.
        return f"{pair[0]}-{pair[1]}"

    async def _fill(self, replay: _Replay) -> bool:
        """Read the next page of history; False: the resume was reset instead."""
        broker = self.broker
        try:
            page = await broker.backend.history(replay.after, replay.upto, broker.buffer)
            if self._closed:
                return False  # closed while reading: nothing more to hand out
        except ResumeReset as reset:
            self._reset_resume(reset.reason)
            return False
        except Exception:
            # The backend failed reading the history: a reset, and the stream goes on live,
            # rather than a broken stream the client re-enters for ever.
            logger.exception(
                "stream of %s could not read the history after %r", self._names(), replay.after
            )
            self._reset_resume("error")
            return False
        replay.done = len(page) < broker.buffer or page[-1].position == replay.upto
        if page:
            replay.after = page[-1].position
        wanted = selection(self.topics)
        replay.page.extend(
            event for event in page
            if wanted(event.topics) and (not event.private or self._may_read(event))
        )  # fmt: skip
        if not replay.page and replay.done:
            self._replay = None
        return True

    def _reset_resume(self, reason: str) -> None:
        """The resume cannot be exact: one reset event, then live events. Without reset
        events, a resume already said to be exact (the history was trimmed while it was
        read) ends the stream instead: its client reconnects, and is told."""
        if self._closed:
            return
        cut_short = self.resume == "exact" and self.broker.reset_event is None
        self.resume = reason
        self.broker.metrics.resets += 1
        logger.info(
            "stream of %s cannot resume from %r: %s",
            self._names(), self.last_event_id, reason,
        )  # fmt: skip
        if self._replay is not None:
            self._position = self._replay.upto  # live events follow on from there
            self._replay = None
        self._skip = None
        if self.broker.reset_event is not None:
            self._pending.append(self._reset(reason))
        elif cut_short:
            self._end()

    def _reset(self, reason: str) -> BrokerEvent:
        data = json.dumps({"reason": reason, "topics": self._names()}, separators=(",", ":"))
        return BrokerEvent(
            (), self.stream_id, data, event=self.broker.reset_event, sep=self.broker.sep
        )

    def _names(self) -> list[str]:
        return [str(selector) for selector in self.topics]

    def _overflow(self, event: BrokerEvent) -> None:
        """The subscriber fell `buffer` events behind (called while delivering `event`)."""
        broker = self.broker
        if broker.slow_consumer == "disconnect":
            broker.metrics.slow_consumer_disconnects += 1
            logger.info("slow consumer of %s disconnected at %s", self._names(), self.stream_id)
            self._end()
            if self._on_dropped is not None:
                self._on_dropped()
            return
        broker.metrics.slow_consumer_drops += 1
        broker.metrics.delivered += 1
        dropped = self._buffer.popleft()
        if self._replay is None:
            # (While the history is replayed the position follows it; the reset comes after.)
            self._position = dropped.position
        self._dropped = True
        self._buffer.append(event)

    def _end(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._buffer.clear()
        self._pending.clear()
        self._replay = None
        if self._attached:
            self._attached = False
            self.broker._detach(self)
        if self._counted:
            self.broker.metrics.subscribers -= 1
        self._wake()
