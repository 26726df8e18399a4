"""What the bench apps share: the events the clients count, `/_stats`, a queue per client.

Standard library only: raw.py (the ceiling) imports no framework, and ours_upstream.py also
runs in .venv-upstream, where neither this project nor anything only its venv has is installed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

# Every event the harness counts carries exactly one "~": the clients count events with
# bytes.count(b"~") instead of parsing them (headers, chunk sizes and pings never hold one).
HELLO = "hello~"  # first event of an endless stream: it tells the client the stream is open
WORD = "hello world~"  # every event of the throughput stream
TICK = "tick~"  # the broadcast event

Event = dict[str, str]
T = TypeVar("T")


def stats_body(served_by: str, streams: int, **counters: int) -> bytes:
    """`GET /_stats`: tasks in the loop and open streams, so that the harness sees leaks, and
    the app's own `counters`."""
    stats = {"tasks": len(asyncio.all_tasks()), "streams": streams, "served_by": served_by}
    return json.dumps({**stats, **counters}).encode()


async def count(n: int) -> AsyncIterator[Event]:
    """The throughput stream: `n` events, each a new dict, as an app makes them."""
    for _ in range(n):
        yield {"data": WORD}


class Fanout(Generic[T]):
    """The broadcast pattern of the published package's examples: an `asyncio.Queue` per client,
    drained by the client's generator."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[T]] = set()

    def __len__(self) -> int:
        return len(self._queues)

    async def subscribe(self, first: T) -> AsyncIterator[T]:
        """`first`, then every item broadcast, until the generator is closed."""
        queue: asyncio.Queue[T] = asyncio.Queue()
        self._queues.add(queue)
        try:
            yield first
            while True:
                yield await queue.get()
        finally:
            self._queues.discard(queue)

    def broadcast(self, item: T) -> int:
        """Put `item` in every client's queue; the number of clients."""
        for queue in self._queues:
            queue.put_nowait(item)
        return len(self._queues)
