"""The basics: an async generator and a sync generator, each streamed as Server-Sent Events.

Run it and watch the events arrive:

    python examples/01_basic_sse.py
    curl -N http://127.0.0.1:8000/events     # async generator: a counter, one event a second
    curl -N http://127.0.0.1:8000/sync       # sync generator, run in a thread pool

Each counter event carries an `id`, so a browser's `EventSource` that reconnects tells the
server where it stopped (the `Last-Event-ID` request header).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from sse_starlette import EventSourceResponse, ServerSentEvent

COUNT = 10
DELAY_SECONDS = 1.0


async def count_up() -> AsyncIterator[ServerSentEvent]:
    for n in range(1, COUNT + 1):
        yield ServerSentEvent(data=str(n), event="tick", id=str(n))
        await anyio.sleep(DELAY_SECONDS)


def count_up_blocking() -> Iterator[dict[str, str]]:
    # A plain generator may block (here time.sleep, in real code a blocking client
    # library): EventSourceResponse iterates it in a worker thread, off the event loop.
    for n in range(1, COUNT + 1):
        yield {"data": f"blocking step {n}", "id": str(n)}
        time.sleep(DELAY_SECONDS)


async def events(request: Request) -> EventSourceResponse:
    return EventSourceResponse(count_up())


async def sync_events(request: Request) -> EventSourceResponse:
    return EventSourceResponse(count_up_blocking())


app = Starlette(routes=[Route("/events", events), Route("/sync", sync_events)])


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=8000)
