"""The Redis Streams backend (`redis://...`, `redis+cluster://...`): one stream, the log,
shared by every process.

Ids are the stream ids, identical in every process. Each entry stores its topics, and the id
of the entry before it (`prev`), written atomically with it by a script: a subscriber
resuming from id X gets the entries after X only if the first of them says X came right
before it; otherwise events were trimmed in between and it gets a reset instead of a gap.

Every key of a broker shares one hash tag, `{<prefix>}`: on a Redis Cluster the publish
script's keys are in one slot, and the log is one key, read by one blocking XREAD.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
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
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import (
        AskError,
        ClusterDownError,
        MovedError,
        NoScriptError,
        RedisClusterException,
        ResponseError,
        SlotNotCoveredError,
        TryAgainError,
    )
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "the Redis broker needs redis-py: pip install 'sse-starlette[redis]'"
    ) from exc

logger = logging.getLogger("sse_starlette.broker")

# RedisClusterException: the cluster client could not reach any node to learn the topology.
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError, RedisClusterException)
# A cluster refused the command before running it: its slots moved, or are not served now.
_REDIRECTED = (AskError, ClusterDownError, MovedError, SlotNotCoveredError, TryAgainError)
_PAGES_KEPT = 16  # full pages of history kept for the next resuming subscriber
# How long a publish's own key is kept when the caller gave none: long enough for its retry
# on a fresh connection, inside the same publish() call, and short, since every publish
# leaves one (at 10,000 publishes/s, 50,000 keys of about 100 bytes).
_OWN_KEY_MS = 5_000

# KEYS[1]: the log; KEYS[2]: the publish's idempotency key; KEYS[3]: the hash of events' own
# ids -> their position. ARGV: max length, max age in ms (0: none), the idempotency key's
# lifetime in ms, the event's own id ("": none), then field/value pairs.
# An event published again under a key Redis still holds is not added: the first id returns.
# The own ids of entries trimmed are forgotten with them: the hash is as long as the log.
_PUBLISH = """
local seen = redis.call('GET', KEYS[2])
if seen then return seen end
local indexed = redis.call('EXISTS', KEYS[3]) == 1
local function forget(entries)
  for _, entry in ipairs(entries) do
    local fields = entry[2]
    for i = 1, #fields, 2 do
      if fields[i] == 'id' and redis.call('HGET', KEYS[3], fields[i + 1]) == entry[1] then
        redis.call('HDEL', KEYS[3], fields[i + 1])
      end
    end
  end
end
local excess = redis.call('XLEN', KEYS[1]) + 1 - tonumber(ARGV[1])
if indexed and excess > 0 then
  forget(redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess))
end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local prev = '0-0'
if #last > 0 then prev = last[1][1] end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'prev', prev, unpack(ARGV, 5))
local answer = id
if ARGV[4] ~= '' then
  redis.call('HSETNX', KEYS[3], ARGV[4], id)  -- a repeated id resumes after the first
  answer = ARGV[4]
end
redis.call('SET', KEYS[2], answer, 'PX', ARGV[3])
local age = tonumber(ARGV[2])
if age > 0 then
  local now = redis.call('TIME')
  local oldest = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - age
  if oldest > 0 then
    oldest = string.format('%d', oldest)
    if indexed or ARGV[4] ~= '' then forget(redis.call('XRANGE', KEYS[1], '-', '(' .. oldest)) end
    redis.call('XTRIM', KEYS[1], 'MINID', oldest)
  end
end
return answer
"""


class RedisBackend:
    """Events kept in Redis (standalone, or a Redis Cluster with a `+cluster` URL scheme)."""

    def __init__(
        self,
        url: str,
        *,
        history: int = 1000,
        max_age: float | None = None,
        sep: str = "\r\n",
        prefix: str = "sse:",
        idempotency_ttl: float = 3600.0,
        block_ms: int = 10_000,
        **options: Any,
    ) -> None:
        if not prefix or "{" in prefix or "}" in prefix:
            # The prefix is the keys' hash tag: empty or with braces, a cluster would spread
            # the publish script's keys over slots.
            raise ValueError(f"prefix must be non-empty and without braces, got {prefix!r}")
        self.url = url
        self.history_length = history
        self.max_age = max_age
        self.sep = sep
        self.prefix = prefix
        self.idempotency_ttl = idempotency_ttl
        self.block_ms = block_ms
        # The hash tag keeps every key of the broker in one cluster slot (see the docstring).
        self.log = "{" + prefix + "}log"
        self.ids = "{" + prefix + "}ids"
        self.cluster = url.startswith(("redis+cluster://", "rediss+cluster://"))
        self.redis: Any
        if self.cluster:
            # redis-py's cluster client follows MOVED/ASK and re-reads the topology itself.
            url = url.replace("+cluster://", "://", 1)
            self.redis = RedisCluster.from_url(url, decode_responses=True, **options)
        else:
            # A pooled connection is dead after Redis restarts: try the command again on a
            # new one rather than fail the first publish after every restart.
            options.setdefault("retry", Retry(ExponentialBackoff(cap=0.5, base=0.05), 3))
            options.setdefault("retry_on_error", [RedisConnectionError, RedisTimeoutError])
            self.redis = aioredis.from_url(url, decode_responses=True, **options)
        self.script_sha = hashlib.sha1(_PUBLISH.encode()).hexdigest()
        self.deliver: Deliver | None = None
        self.cursor: str | None = None  # id of the last entry read; None: not watching
        self.changed = anyio.Event()
        self.read_scope: anyio.CancelScope | None = None
        # Pages of history being read or recently read, shared by resuming subscribers.
        self.pages: OrderedDict[tuple[str, int], asyncio.Future[Any]] = OrderedDict()

    async def start(self, deliver: Deliver) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError("the Redis broker runs on asyncio only (redis-py)") from None
        self.deliver = deliver

    async def stop(self) -> None:
        self.deliver = None
        await self.redis.aclose()

    async def publish(
        self, topics: tuple[str, ...], fields: dict[str, Any], idempotency_key: str | None
    ) -> str:
        # Always under a key: the one try again, on a fresh connection, that a reply lost to
        # a dropped connection calls for is then safe (redis-py's own retry would not be).
        ttl = max(1, int(self.idempotency_ttl * 1000))
        if idempotency_key is None:
            idempotency_key, ttl = uuid.uuid4().hex, _OWN_KEY_MS
        # Hashed: no topics and key can make another pair's name, whatever they contain.
        named = json.dumps([topics, idempotency_key])
        key = "{" + self.prefix + "}idempotency:" + hashlib.sha256(named.encode()).hexdigest()
        max_age_ms = 0 if self.max_age is None else max(1, int(self.max_age * 1000))
        args: list[Any] = [self.history_length, max_age_ms, ttl, fields.get("id", "")]
        if len(topics) == 1:
            args += ["topic", topics[0]]
        else:
            args += ["topics", json.dumps(topics, ensure_ascii=False)]
        for name, value in fields.items():
            args += [name, "1" if value is True else value]
        what = f"event for {_named(topics)}"
        sent: Exception | None = None  # an attempt that may have reached Redis
        refused: Exception | None = None
        for _ in range(3):  # a reply lost is tried once more; a cluster's redirect, twice
            try:
                async with self._connection() as connection:
                    started = time.monotonic()
                    try:
                        keys = [self.log, key, self.ids]
                        return str(await self._evaluate(connection, keys, args))
                    except _UNAVAILABLE as exc:
                        await connection.disconnect()
                        # The key must outlive the first try for the second to be safe.
                        if sent is not None or time.monotonic() - started > ttl / 2000:
                            raise _unknown(what, exc) from exc
                        sent = exc
            except BrokerUnavailableError:
                raise
            except _REDIRECTED as exc:
                # The cluster ran nothing: read where the slot lives now, and try there.
                refused = exc
                await self._refresh_topology()
            except ResponseError as exc:
                # Redis refused to run it (OOM, READONLY after a failover, MISCONF, NOPERM,
                # LOADING...): the script fails before it adds anything. A try before this
                # one may have, though.
                if sent is not None:
                    raise _unknown(what, sent) from exc
                raise BrokerUnavailableError(
                    f"{what} was not stored: Redis refused it ({exc})"
                ) from exc
            except _UNAVAILABLE as exc:  # no connection: nothing was sent this time
                if sent is not None:
                    raise _unknown(what, sent) from sent
                raise BrokerUnavailableError(
                    f"{what} was not stored: Redis is unavailable ({exc})"
                ) from exc
        if sent is not None:
            raise _unknown(what, sent) from sent
        raise BrokerUnavailableError(
            f"{what} was not stored: the Redis Cluster refused it ({refused})"
        )

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """A connection of our own to the Redis that holds the log, connected: what is sent
        on it, and whether it was, is known exactly."""
        if not self.cluster:
            connection = await self.redis.connection_pool.get_connection()
            try:
                yield connection
            finally:
                await self.redis.connection_pool.release(connection)
            return
        await self.redis.initialize()
        node = self.redis.get_node_from_key(self.log)
        connection = node.acquire_connection()
        try:
            await connection.connect()
            yield connection
        finally:
            node.release(connection)

    async def _refresh_topology(self) -> None:
        if self.cluster:
            with contextlib.suppress(Exception):  # the next try says what is wrong, if any
                await self.redis.nodes_manager.initialize()

    async def _evaluate(self, connection: Any, keys: list[str], args: list[Any]) -> Any:
        """The publish script on `connection`, loading it first where Redis lacks it."""
        for _ in range(2):
            await connection.send_command("EVALSHA", self.script_sha, len(keys), *keys, *args)
            try:
                return await connection.read_response()
            except NoScriptError:  # a new or restarted Redis: nothing ran
                await connection.send_command("SCRIPT", "LOAD", _PUBLISH)
                await connection.read_response()
        raise RuntimeError("Redis did not keep the publish script")  # pragma: no cover

    async def position(self) -> str:
        last = await self._retrying(self.redis.xrevrange, self.log, "+", "-", count=1)
        return str(last[0][0]) if last else "0-0"

    async def last(self) -> BrokerEvent | None:
        last = await self._retrying(self.redis.xrevrange, self.log, "+", "-", count=1)
        return self._event(last[0][0], last[0][1]) if last else None

    async def find(self, id: str) -> BrokerEvent | None:
        position = await self._retrying(self.redis.hget, self.ids, id)
        if position is None:
            return None
        entries = await self._retrying(self.redis.xrange, self.log, position, position)
        return self._event(entries[0][0], entries[0][1]) if entries else None

    async def oldest(self) -> str:
        first = await self._retrying(self.redis.xrange, self.log, "-", "+", count=1)
        return str(first[0][1].get("prev", "0-0")) if first else await self.position()

    async def history(self, after: str, upto: str, limit: int) -> list[BrokerEvent]:
        position, end = parse_id(after), parse_id(upto)
        if position is None:
            raise ResumeReset("malformed")
        assert end is not None
        if position > end:
            # Seen in another process whose reader is ahead of ours: valid if Redis has it.
            last = parse_id(await self.position())
            if last is None or position > last:
                raise ResumeReset("unknown")
            return []
        future, page = await self._page(after, limit)
        while len(page) < limit and (not page or parse_id(page[-1][1].position) < end):  # type: ignore[operator]
            # A short page ending before `upto` was read (for another subscriber) before
            # events this one has been promised were stored: read it again, for all.
            future, page = await self._page(after, limit, stale=future)
        # The first entry after `after` must say `after` came right before it: else entries
        # were trimmed in between (one COUNT-bounded read tells, not the whole range).
        if not page or page[0][0] != after:
            raise ResumeReset("too-old")
        return [event for _, event in page if parse_id(event.position) <= end]  # type: ignore[operator]

    async def _page(
        self, after: str, limit: int, *, stale: asyncio.Future[Any] | None = None
    ) -> tuple[asyncio.Future[Any], list[tuple[str, BrokerEvent]]]:
        """Up to `limit` entries after `after`, as (prev, event), and the read they came from:
        shared by every subscriber that asks for the same page at the same time or soon
        after (a resume storm asks for the same pages a thousand times), so that it is read
        once and its encoded bytes are held once. A read its caller found `stale` (short,
        and older than what it needs) is done again, and the new one shared instead."""
        key = (after, limit)
        cached = self.pages.get(key)
        if cached is not None and cached is not stale:
            self.pages.move_to_end(key)
            # asyncio.wait, not await: our own cancellation propagates and never cancels the
            # read others wait for; theirs (the reader cancelled) is not taken for ours.
            await asyncio.wait({cached})
            if not cached.cancelled():
                return cached, cached.result()
            # The subscriber reading it was cancelled: read it ourselves.
        future: asyncio.Future[list[tuple[str, BrokerEvent]]]
        future = asyncio.get_running_loop().create_future()
        self.pages[key] = future
        self.pages.move_to_end(key)
        try:
            entries = await self._retrying(
                self.redis.xrange, self.log, "(" + after, "+", count=limit
            )
            page = [(fields.get("prev", ""), self._event(id, fields)) for id, fields in entries]
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
        # Kept for the next subscribers, a bounded number of pages: a full page never
        # changes (entries are immutable); a short one may grow, which its reader checks.
        while len(self.pages) > _PAGES_KEPT:
            self.pages.popitem(last=False)
        return future, page

    def watch(self, cursor: str) -> None:
        self.cursor = cursor
        self.changed.set()

    def unwatch(self) -> None:
        self.cursor = None
        if self.read_scope is not None:
            self.read_scope.cancel()  # nobody here reads: stop reading the log

    async def health(self) -> str | None:
        try:
            with anyio.fail_after(2):
                await self.redis.exists(self.log)  # on a cluster: the node holding the log
        except Exception as exc:
            return f"Redis: {exc or type(exc).__name__}"
        return None

    async def run(self) -> None:
        delay = 0.05
        while True:
            cursor = self.cursor
            if cursor is None:
                self.changed = anyio.Event()
                await self.changed.wait()
                continue
            reply: Any = None  # stays None when the read was stopped by unwatch()
            try:
                with anyio.CancelScope() as self.read_scope:
                    reply = await self.redis.xread(
                        {self.log: cursor}, count=1000, block=self.block_ms
                    )
            except Exception as exc:
                # The reader must outlive any outage: subscribers keep their connections and
                # get every event Redis kept once it answers again.
                log = (
                    logger.warning
                    if isinstance(exc, _UNAVAILABLE + _REDIRECTED)
                    else logger.exception
                )
                log("reading from Redis failed, again in %.2fs: %s", delay, exc)
                await anyio.sleep(delay)  # a back-off, not a synchronisation
                delay = min(delay * 2, 2.0)
                continue
            finally:
                self.read_scope = None
            delay = 0.05
            for _, entries in reply or ():
                for id, fields in entries:
                    if self.cursor is None:
                        break  # unwatched while we read
                    self.cursor = id
                    # A reply holds up to 1,000 events: let subscribers send each one
                    # before the next, or a burst would overflow every buffer.
                    if self.deliver is not None and self.deliver(self._event(id, fields)):
                        await anyio.lowlevel.checkpoint()

    def _event(self, id: str, fields: dict[str, str]) -> BrokerEvent:
        topic = fields.get("topic")
        topics = (topic,) if topic is not None else tuple(json.loads(fields.get("topics", "[]")))
        retry = fields.get("retry")
        return BrokerEvent(
            topics,
            fields.get("id") or id,
            fields.get("data"),
            event=fields.get("event"),
            retry=None if retry is None else int(retry),
            comment=fields.get("comment"),
            sep=self.sep,
            position=id,
            private="private" in fields,
        )

    async def _retrying(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        """A read that waits out a Redis outage (the subscriber keeps its connection)."""
        delay = 0.05
        while True:
            try:
                return await call(*args, **kwargs)
            except _UNAVAILABLE + _REDIRECTED as exc:
                logger.warning("Redis unavailable, retrying in %.2fs: %s", delay, exc)
                await anyio.sleep(delay)
                delay = min(delay * 2, 2.0)


def _named(topics: tuple[str, ...]) -> str:
    return f"topic {topics[0]!r}" if len(topics) == 1 else f"topics {list(topics)!r}"


def _unknown(what: str, cause: Exception) -> PublishOutcomeUnknownError:
    return PublishOutcomeUnknownError(
        f"{what} may have been stored: Redis went away before it answered "
        f"({cause}); publish it again with the same idempotency_key to store it once"
    )
