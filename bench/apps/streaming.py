"""Starlette's `StreamingResponse` yielding hand-formatted SSE: what users write without a library.

Same routes and queue pattern as ours_upstream.py; each event is formatted with an f-string.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import starlette
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

SERVED_BY = f"starlette {starlette.__version__} StreamingResponse"

# Every event the harness counts carries exactly one "~": the clients count events with
# bytes.count(b"~") instead of parsing them (headers, chunk sizes and pings never hold one).
HELLO = "hello~"  # first event of an endless stream: it tells the client the stream is open
WORD = "hello world~"  # every event of the throughput stream
TICK = "tick~"  # the broadcast event
HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}

clients: set[asyncio.Queue[str]] = set()


def stats_body(streams: int) -> bytes:
    """`GET /_stats`: tasks in the loop and open streams, so that the harness sees leaks."""
    stats = {"tasks": len(asyncio.all_tasks()), "streams": streams, "served_by": SERVED_BY}
    return json.dumps(stats).encode()


async def _count(n: int) -> AsyncIterator[str]:
    for _ in range(n):
        yield f"data: {WORD}\r\n\r\n"


async def _subscribe() -> AsyncIterator[str]:
    queue: asyncio.Queue[str] = asyncio.Queue()
    clients.add(queue)
    try:
        yield f"data: {HELLO}\r\n\r\n"
        while True:
            yield f"data: {await queue.get()}\r\n\r\n"
    finally:
        clients.discard(queue)


async def stream(request: Request) -> StreamingResponse:
    n = request.query_params.get("n")
    content = _subscribe() if n is None else _count(int(n))
    return StreamingResponse(content, media_type="text/event-stream", headers=HEADERS)


async def broadcast(request: Request) -> PlainTextResponse:
    for queue in clients:
        queue.put_nowait(TICK)
    return PlainTextResponse(str(len(clients)))


async def stats(request: Request) -> Response:
    return Response(stats_body(len(clients)), media_type="application/json")


app = Starlette(
    routes=[Route("/stream", stream), Route("/_broadcast", broadcast), Route("/_stats", stats)]
)
