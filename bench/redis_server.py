"""A redis-server for the broker scenarios: in memory only, started per run."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tests.redis_server import RedisServer, redis_binary


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer | None]:
    """A running redis-server (`.url`, `.process`), or None when there is no binary."""
    if redis_binary() is None:
        yield None
        return
    server = RedisServer()  # persists nothing: the scenario measures the broker, not the disk
    server.start()
    try:
        yield server
    finally:
        server.kill()
