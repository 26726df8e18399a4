"""pytest plugin (registered through the `pytest11` entry point): fixtures for SSE tests.

pytest loads this module in every run where sse-starlette is installed, so it imports
nothing beyond pytest and the standard library until a test asks for a fixture, and defines
no autouse fixture.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from sse_starlette.testing import SSEClientFactory, SSETestClient


@pytest.fixture
async def sse_client() -> AsyncIterator[SSEClientFactory]:
    """Open `SSETestClient`s in a test: `client = await sse_client(app, **options)`.

    Every client opened is closed after the test (streams still open are cancelled, the
    lifespan shut down, a drain it started ended). The test runs under anyio's pytest
    plugin (`@pytest.mark.anyio`), on asyncio or trio.
    """
    from sse_starlette.testing import SSETestClient

    async with contextlib.AsyncExitStack() as clients:

        async def open_client(app: ASGIApp, **options: Any) -> SSETestClient:
            return await clients.enter_async_context(SSETestClient(app, **options))

        yield open_client
