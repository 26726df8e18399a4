"""The Redis Streams backend (`redis://...`): one stream per topic, shared by every process.

Ids are the stream ids, identical in every process. Each entry also stores the id of the
entry before it (`prev`), written atomically with it by a script: a subscriber resuming
from id X gets the entries after X only if the first of them says X came right before it;
otherwise events were trimmed in between and it gets a reset instead of a silent gap.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections import OrderedDict
from typing import Any

import anyio

from sse_starlette.broker._backend import (
    BrokerUnavailableError,
    Deliver,
    PublishOutcomeUnknownError,
    ResumeReset,
)
from sse_starlette.broker._event import BrokerEvent
from sse_starlette.broker._ids import parse_id

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import NoScriptError, ResponseError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "the Redis broker needs redis-py: pip install 'sse-starlette[redis]'"
    ) from exc

logger = logging.getLogger("sse_starlette.broker")

_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)
_PAGES_KEPT = 16  # full pages of history kept for the next resuming subscriber
# How long a publish's own key is kept when the caller gave none: long enough for its retry
# on a fresh connection, inside the same publish() call, and short, since every publish
# leaves one (at 10,000 publishes/s, 50,000 keys of about 100 bytes).
_OWN_KEY_MS = 5_000

# KEYS[1]: the topic's stream; KEYS[2]: the publish's idempotency key. ARGV: max length, max
# age in ms (0: none), the idempotency key's lifetime in ms, then field/value pairs.
# An event published again under a key Redis still holds is not added: the first id returns.
_PUBLISH = """
local seen = redis.call('GET', KEYS[2])
if seen then return seen end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local prev = '0-0'
if #last > 0 then prev = last[1][1] end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'prev', prev, unpack(ARGV, 4))
redis.call('SET', KEYS[2], id, 'PX', ARGV[3])
local age = tonumber(ARGV[2])
if age > 0 then
  local now = redis.call('TIME')
  local oldest = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - age
  redis.call('XTRIM', KEYS[1], 'MINID', tostring(oldest))
end
return id
"""


class RedisBackend:
    def __init__(
        self,
        url: str,
        *,
        history: int,
        max_age: float | None,
        sep: str,
        prefix: str,
        idempotency_ttl: float = 3600.0,
        block_ms: int = 10_000,
        **options: Any,
    ) -> None:
        self.url = url
        self.idempotency_ttl_ms = max(1, int(idempotency_ttl * 1000))
        self.history_length = history
        self.max_age_ms = 0 if max_age is None else max(1, int(max_age * 1000))
        self.sep = sep
        self.prefix = prefix
        self.block_ms = block_ms
        # A pooled connection is dead after Redis restarts: try the command again on a new
        # one rather than fail the first publish after every restart.
        options.setdefault("retry", Retry(ExponentialBackoff(cap=0.5, base=0.05), 3))
        options.setdefault("retry_on_error", [RedisConnectionError, RedisTimeoutError])
        self.redis = aioredis.from_url(url, decode_responses=True, **options)
        self.script = self.redis.register_script(_PUBLISH)
        self.deliver: Deliver | None = None
        self.cursors: dict[str, str] = {}  # watched topic -> id of the last entry read
        self.changed = anyio.Event()
        self.read_scope: anyio.CancelScope | None = None
        # Pages of history being read or recently read, shared by resuming subscribers.
        self.pages: OrderedDict[tuple[str, str, int], asyncio.Future[Any]] = OrderedDict()

    async def start(self, deliver: Deliver) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError("the Redis broker runs on asyncio only (redis-py)") from None
        self.deliver = deliver

    async def stop(self) -> None:
        self.deliver = None
        await self.redis.aclose()

    async def publish(self, topic: str, fields: dict[str, Any], idempotency_key: str | None) -> str:
        # Always under a key: the one try again, on a fresh connection, that a reply lost to
        # a dropped connection calls for is then safe (redis-py's own retry would not be).
        ttl = self.idempotency_ttl_ms
        if idempotency_key is None:
            idempotency_key, ttl = uuid.uuid4().hex, _OWN_KEY_MS
        # Hashed: no topic and key can make another pair's name, whatever they contain.
        pair = hashlib.sha256(f"{len(topic)}:{topic}:{idempotency_key}".encode()).hexdigest()
        keys = [self.prefix + topic, f"{self.prefix}idempotency:{pair}"]
        args: list[Any] = [self.history_length, self.max_age_ms, ttl]
        for name, value in fields.items():
            args += [name, value]
        sent: Exception | None = None  # an attempt that may have reached Redis
        for _ in range(2):
            try:
                connection = await self.redis.connection_pool.get_connection()  # type: ignore[no-untyped-call]
            except _UNAVAILABLE as exc:
                if sent is not None:
                    raise _unknown(topic, sent) from sent
                raise BrokerUnavailableError(
                    f"event for topic {topic!r} was not stored: Redis is unavailable ({exc})"
                ) from exc
            started = time.monotonic()
            try:
                return str(await self._evaluate(connection, keys, args))
            except ResponseError as exc:
                # Redis refused to run it (OOM, READONLY after a failover, MISCONF, NOPERM,
                # LOADING...): the script fails before it adds anything.
                raise BrokerUnavailableError(
                    f"event for topic {topic!r} was not stored: Redis refused it ({exc})"
                ) from exc
            except _UNAVAILABLE as exc:
                sent = exc
                await connection.disconnect()
                # The key must outlive the first try for the second to be safe.
                if time.monotonic() - started > ttl / 2000:
                    raise _unknown(topic, exc) from exc
            finally:
                await self.redis.connection_pool.release(connection)
        assert sent is not None
        raise _unknown(topic, sent) from sent

    async def _evaluate(self, connection: Any, keys: list[str], args: list[Any]) -> Any:
        """The publish script on `connection`, loading it first where Redis lacks it."""
        for _ in range(2):
            await connection.send_command("EVALSHA", self.script.sha, len(keys), *keys, *args)
            try:
                return await connection.read_response()
            except NoScriptError:  # a new or restarted Redis: nothing ran
                await connection.send_command("SCRIPT", "LOAD", _PUBLISH)
                await connection.read_response()
        raise RuntimeError("Redis did not keep the publish script")  # pragma: no cover

    async def position(self, topic: str) -> str:
        last = await self._retrying(self.redis.xrevrange, self.prefix + topic, "+", "-", count=1)
        return str(last[0][0]) if last else "0-0"

    async def history(self, topic: str, after: str, upto: str, limit: int) -> list[BrokerEvent]:
        position, end = parse_id(after), parse_id(upto)
        if position is None:
            raise ResumeReset("malformed")
        assert end is not None
        if position > end:
            # Seen in another process whose reader is ahead of ours: valid if Redis has it.
            last = parse_id(await self.position(topic))
            if last is None or position > last:
                raise ResumeReset("unknown")
            return []
        page = await self._page(topic, after, limit)
        if len(page) < limit and (not page or parse_id(page[-1][1].id) < end):  # type: ignore[operator]
            # A short page ending before `upto` was read (by another subscriber) before
            # events this one has been promised were stored: read it afresh.
            page = await self._page(topic, after, limit, shared=False)
        # The first entry after `after` must say `after` came right before it: else entries
        # were trimmed in between (one COUNT-bounded read tells, not the whole range).
        if not page or page[0][0] != after:
            raise ResumeReset("too-old")
        return [event for _, event in page if parse_id(event.id) <= end]  # type: ignore[operator]

    async def _page(
        self, topic: str, after: str, limit: int, *, shared: bool = True
    ) -> list[tuple[str, BrokerEvent]]:
        """Up to `limit` entries after `after`, as (prev, event): shared by every subscriber
        that asks for the same page at the same time or soon after (a resume storm asks for
        the same pages a thousand times), so their encoded bytes are held once."""
        key = (topic, after, limit)
        cached = self.pages.get(key) if shared else None
        if cached is not None:
            self.pages.move_to_end(key)
            # asyncio.wait, not await: our own cancellation propagates and never cancels the
            # read others wait for; theirs (the reader cancelled) is not taken for ours.
            await asyncio.wait({cached})
            if not cached.cancelled():
                return cached.result()  # type: ignore[no-any-return]
            # The subscriber reading it was cancelled: read it ourselves.
        future: asyncio.Future[list[tuple[str, BrokerEvent]]]
        future = asyncio.get_running_loop().create_future()
        if shared:
            self.pages[key] = future
        try:
            entries = await self._retrying(
                self.redis.xrange, self.prefix + topic, "(" + after, "+", count=limit
            )
            page = [
                (fields.get("prev", ""), self._event(topic, id, fields)) for id, fields in entries
            ]
        except BaseException as exc:
            if self.pages.get(key) is future:
                del self.pages[key]
            if isinstance(exc, Exception):
                future.set_exception(exc)
                future.exception()  # retrieved: there may be no other waiter
            else:
                future.cancel()
            raise
        future.set_result(page)
        # Only a full page never changes (entries are immutable; a short one may grow): keep
        # it for the next subscriber, a bounded number of them.
        if len(page) < limit and self.pages.get(key) is future:
            del self.pages[key]
        while len(self.pages) > _PAGES_KEPT:
            self.pages.popitem(last=False)
        return page

    def watch(self, topic: str, cursor: str) -> None:
        self.cursors[topic] = cursor
        self._wake()

    def unwatch(self, topic: str) -> None:
        self.cursors.pop(topic, None)

    async def health(self) -> str | None:
        try:
            with anyio.fail_after(2):
                await self.redis.ping()
        except Exception as exc:
            return f"Redis: {exc or type(exc).__name__}"
        return None

    def _wake(self) -> None:
        # The blocking XREAD lists the topics it reads: restart it to read the new one too.
        self.changed.set()
        if self.read_scope is not None:
            self.read_scope.cancel()

    async def run(self) -> None:
        delay = 0.05
        while True:
            if not self.cursors:
                self.changed = anyio.Event()
                await self.changed.wait()
                continue
            streams: Any = {self.prefix + topic: cursor for topic, cursor in self.cursors.items()}
            reply: Any = None  # stays None when a new topic restarted the read
            try:
                with anyio.CancelScope() as self.read_scope:
                    reply = await self.redis.xread(streams, count=1000, block=self.block_ms)
            except Exception as exc:
                # The reader must outlive any outage: subscribers keep their connections and
                # get every event Redis kept once it answers again.
                log = logger.warning if isinstance(exc, _UNAVAILABLE) else logger.exception
                log("reading from Redis failed, again in %.2fs: %s", delay, exc)
                await anyio.sleep(delay)  # a back-off, not a synchronisation
                delay = min(delay * 2, 2.0)
                continue
            finally:
                self.read_scope = None
            delay = 0.05
            for key, entries in reply or ():
                topic = key[len(self.prefix) :]
                for id, fields in entries:
                    if topic not in self.cursors:
                        break  # unwatched while we read
                    self.cursors[topic] = id
                    if self.deliver is not None:
                        self.deliver(self._event(topic, id, fields))
                        # A reply holds up to 1,000 events: let subscribers send each one
                        # before the next, or a burst would overflow every buffer.
                        await anyio.lowlevel.checkpoint()

    def _event(self, topic: str, id: str, fields: dict[str, str]) -> BrokerEvent:
        retry = fields.get("retry")
        return BrokerEvent(
            topic,
            id,
            fields.get("data"),
            event=fields.get("event"),
            retry=None if retry is None else int(retry),
            comment=fields.get("comment"),
            sep=self.sep,
        )

    async def _retrying(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        """A read that waits out a Redis outage (the subscriber keeps its connection)."""
        delay = 0.05
        while True:
            try:
                return await call(*args, **kwargs)
            except _UNAVAILABLE as exc:
                logger.warning("Redis unavailable, retrying in %.2fs: %s", delay, exc)
                await anyio.sleep(delay)
                delay = min(delay * 2, 2.0)


def _unknown(topic: str, cause: Exception) -> PublishOutcomeUnknownError:
    return PublishOutcomeUnknownError(
        f"event for topic {topic!r} may have been stored: Redis went away before it answered "
        f"({cause}); publish it again with the same idempotency_key to store it once"
    )
