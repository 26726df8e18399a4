"""Fixtures shared by the suite: both async backends, and real servers in subprocesses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sse_starlette.sse import AppStatus
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
def uvicorn_server() -> Iterator[Server]:
    """uvicorn serving tests/apps/streams.py:app in a subprocess on a free port."""
    with start_server("tests.apps.streams:app") as server:
        yield server
