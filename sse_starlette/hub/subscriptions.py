"""Active subscriptions (draft-07 §Active Subscriptions): who subscribes to what, hub-wide.

Each subscription of a stream is a JSON-LD document; the hub publishes it (private, on the
topic that is its `id`) when the stream opens (`active: true`) and when it closes (`false`),
and serves the active ones at `/.well-known/mercure/subscriptions[/{topic}[/{subscriber}]]`.

Where the active ones are kept: in the process (memory broker), or in a Redis hash beside
the broker's log (Redis broker), each entry marked with its process, whose liveness key
expires `_LIVENESS_S` after the process stops refreshing it: a crashed process's entries
leave the list within that time.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterable
from typing import Any, Protocol
from urllib.parse import quote_plus

import anyio

from sse_starlette.broker import Broker

__all__ = ["BASE", "CONTEXT", "Presence", "presence_for", "subscription_document"]

BASE = "/.well-known/mercure/subscriptions"
CONTEXT = "https://mercure.rocks/"
_LIVENESS_S = 30


def subscription_document(topic: str, subscriber: str, payload: Any) -> dict[str, Any]:
    """One active subscription's document (its `id` is also the topic its events are
    published to)."""
    document: dict[str, Any] = {
        "id": f"{BASE}/{quote_plus(topic, safe='')}/{quote_plus(subscriber, safe='')}",
        "type": "Subscription",
        "subscriber": subscriber,
        "topic": topic,
        "active": True,
    }
    if payload is not None:
        document["payload"] = payload
    return document


class Presence(Protocol):
    """The active subscriptions of the whole hub."""

    async def run(self) -> None:
        """Keep this process's entries alive, until cancelled."""

    async def add(self, documents: Iterable[dict[str, Any]]) -> None: ...

    async def remove(self, documents: Iterable[dict[str, Any]]) -> None: ...

    async def active(self) -> list[dict[str, Any]]: ...


class _Local:
    """One process: the documents in a dict."""

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}

    async def run(self) -> None:
        pass

    async def add(self, documents: Iterable[dict[str, Any]]) -> None:
        for document in documents:
            self.documents[document["id"]] = document

    async def remove(self, documents: Iterable[dict[str, Any]]) -> None:
        for document in documents:
            self.documents.pop(document["id"], None)

    async def active(self) -> list[dict[str, Any]]:
        return list(self.documents.values())


class _Redis:
    """Every process on one Redis: a hash `{<prefix>}subscriptions` of `<process> <id>` ->
    document, and a key per process that says it is alive."""

    def __init__(self, redis: Any, prefix: str) -> None:
        self.redis = redis
        self.process = uuid.uuid4().hex
        self.hash = "{" + prefix + "}subscriptions"
        self.alive = "{" + prefix + "}process:"

    async def run(self) -> None:
        while True:
            # Redis down: the broker says so; try again at the next beat.
            with contextlib.suppress(Exception):
                await self.redis.set(self.alive + self.process, "1", ex=_LIVENESS_S)
            await anyio.sleep(_LIVENESS_S / 3)  # a heartbeat, not a synchronisation

    async def add(self, documents: Iterable[dict[str, Any]]) -> None:
        entries = {f"{self.process} {d['id']}": json.dumps(d) for d in documents}
        if entries:
            await self.redis.set(self.alive + self.process, "1", ex=_LIVENESS_S)
            await self.redis.hset(self.hash, mapping=entries)

    async def remove(self, documents: Iterable[dict[str, Any]]) -> None:
        fields = [f"{self.process} {d['id']}" for d in documents]
        if fields:
            await self.redis.hdel(self.hash, *fields)

    async def active(self) -> list[dict[str, Any]]:
        entries: dict[str, str] = await self.redis.hgetall(self.hash)
        processes = sorted({field.partition(" ")[0] for field in entries})
        alive = await self.redis.mget([self.alive + p for p in processes]) if processes else []
        dead = {p for p, flag in zip(processes, alive, strict=True) if flag is None}
        stale = [field for field in entries if field.partition(" ")[0] in dead]
        if stale:  # a process that died without removing its entries
            await self.redis.hdel(self.hash, *stale)
        gone = set(stale)
        return [json.loads(v) for field, v in entries.items() if field not in gone]


def presence_for(broker: Broker) -> Presence:
    """Where the hub keeps its active subscriptions: beside the broker's events."""
    redis = getattr(broker.backend, "redis", None)
    prefix = getattr(broker.backend, "prefix", None)
    if redis is not None and isinstance(prefix, str):
        return _Redis(redis, prefix)
    return _Local()
