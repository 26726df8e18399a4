"""`EventSourceResponse` with the per-client queue pattern of the published package's examples.

The same module serves this project (run by .venv/bin/python) and the published
sse-starlette 3.7.0 (run by .venv-upstream/bin/python): the interpreter's virtualenv decides
which `sse_starlette` is imported, so both run exactly the same application code.

    GET /stream?n=N   N events, then the end of the response (throughput)
    GET /stream       one event, then whatever /_broadcast sends, until the client leaves
    GET /_broadcast   one event to every open stream; answers how many streams got it
    GET /_stats       {"tasks": ..., "streams": ..., "served_by": ...}
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

import sse_starlette
from sse_starlette import EventSourceResponse

SERVED_BY = f"sse_starlette {sse_starlette.__version__} ({sse_starlette.__file__})"

# Every event the harness counts carries exactly one "~": the clients count events with
# bytes.count(b"~") instead of parsing them (headers, chunk sizes and pings never hold one).
HELLO = "hello~"  # first event of an endless stream: it tells the client the stream is open
WORD = "hello world~"  # every event of the throughput stream
TICK = "tick~"  # the broadcast event

Event = dict[str, str]
clients: set[asyncio.Queue[Event]] = set()


def stats_body(streams: int) -> bytes:
    """`GET /_stats`: tasks in the loop and open streams, so that the harness sees leaks."""
    stats = {"tasks": len(asyncio.all_tasks()), "streams": streams, "served_by": SERVED_BY}
    return json.dumps(stats).encode()


async def _count(n: int) -> AsyncIterator[Event]:
    for _ in range(n):
        yield {"data": WORD}


async def _subscribe() -> AsyncIterator[Event]:
    queue: asyncio.Queue[Event] = asyncio.Queue()
    clients.add(queue)
    try:
        yield {"data": HELLO}
        while True:
            yield await queue.get()
    finally:
        clients.discard(queue)


async def stream(request: Request) -> EventSourceResponse:
    n = request.query_params.get("n")
    return EventSourceResponse(_subscribe() if n is None else _count(int(n)))


async def broadcast(request: Request) -> PlainTextResponse:
    event = {"data": TICK}
    for queue in clients:
        queue.put_nowait(event)
    return PlainTextResponse(str(len(clients)))


async def stats(request: Request) -> Response:
    return Response(stats_body(len(clients)), media_type="application/json")


app = Starlette(
    routes=[Route("/stream", stream), Route("/_broadcast", broadcast), Route("/_stats", stats)]
)
