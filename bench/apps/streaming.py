"""Starlette's `StreamingResponse` yielding hand-formatted SSE: what users write without a library.

Same routes and queue pattern as ours_upstream.py; each event is formatted with an f-string
(a broadcast once, for every queue).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import starlette
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from .common import HELLO, TICK, WORD, Fanout, stats_body

SERVED_BY = f"starlette {starlette.__version__} StreamingResponse"
HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}

clients: Fanout[str] = Fanout()


async def _count(n: int) -> AsyncIterator[str]:
    for _ in range(n):
        yield f"data: {WORD}\r\n\r\n"


async def stream(request: Request) -> StreamingResponse:
    n = request.query_params.get("n")
    content = clients.subscribe(f"data: {HELLO}\r\n\r\n") if n is None else _count(int(n))
    return StreamingResponse(content, media_type="text/event-stream", headers=HEADERS)


async def broadcast(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(clients.broadcast(f"data: {TICK}\r\n\r\n")))


async def stats(request: Request) -> Response:
    return Response(stats_body(SERVED_BY, len(clients)), media_type="application/json")


app = Starlette(
    routes=[Route("/stream", stream), Route("/_broadcast", broadcast), Route("/_stats", stats)]
)
