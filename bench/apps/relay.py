"""A broadcast across worker processes for the queue apps: what a user of a queue-per-client
SSE library writes to run several workers. `/_broadcast` PUBLISHes one message on Redis; each
process SUBSCRIBEs and puts the event in every queue it holds (common.Fanout).

Used when BENCH_FANOUT_URL is set (the scale scenario's workers); redis-py is in both
virtualenvs (the Makefile installs it beside the published package).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

from redis.asyncio import Redis

URL = os.environ.get("BENCH_FANOUT_URL")
CHANNEL = "bench-broadcast"


class Relay:
    """Redis pub/sub between the workers: `publish()` here, `deliver()` in every worker."""

    def __init__(self, url: str, deliver: Callable[[], object]) -> None:
        self._redis: Redis = Redis.from_url(url)
        self._deliver = deliver

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(CHANNEL)
        task = asyncio.create_task(self._relay(pubsub))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await pubsub.aclose()
            await self._redis.aclose()

    async def _relay(self, pubsub: Any) -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                self._deliver()

    async def publish(self) -> int:
        """One broadcast to every worker; the number of workers subscribed."""
        return int(await self._redis.publish(CHANNEL, b"tick"))
