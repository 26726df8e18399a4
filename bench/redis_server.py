"""A redis-server for the broker scenario: in memory only, started per run."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tests.redis_server import RedisServer, redis_binary


@contextlib.contextmanager
def redis_server() -> Iterator[str | None]:
    """A running redis-server's URL, or None when there is no redis-server binary."""
    if redis_binary() is None:
        yield None
        return
    server = RedisServer()  # persists nothing: the scenario measures the broker, not the disk
    server.start()
    try:
        yield server.url
    finally:
        server.kill()
