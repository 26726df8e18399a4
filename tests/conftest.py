"""Fixtures shared by the suite: both async backends, and real servers in subprocesses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sse_starlette.sse import AppStatus
from tests.redis_cluster import RedisCluster
from tests.redis_server import RedisServer
from tests.servers import Server, start_server


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def _no_leaked_drain() -> Iterator[None]:
    # A test that drains (AppStatus.should_exit = True) must not end the next test's streams.
    yield
    AppStatus.should_exit = False


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own (persisting to tmp_path), killed at its end."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    """A 3-master Redis Cluster of the test's own (each node persisting under tmp_path), killed
    at its end."""
    cluster = RedisCluster(tmp_path)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def uvicorn_server() -> Iterator[Server]:
    """uvicorn serving tests/apps/streams.py:app in a subprocess on a free port."""
    with start_server("tests.apps.streams:app") as server:
        yield server
