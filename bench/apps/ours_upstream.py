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

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

import sse_starlette
from sse_starlette import EventSourceResponse

from .common import HELLO, TICK, Event, Fanout, count, stats_body

SERVED_BY = f"sse_starlette {sse_starlette.__version__} ({sse_starlette.__file__})"

clients: Fanout[Event] = Fanout()


async def stream(request: Request) -> EventSourceResponse:
    n = request.query_params.get("n")
    return EventSourceResponse(clients.subscribe({"data": HELLO}) if n is None else count(int(n)))


async def broadcast(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(clients.broadcast({"data": TICK})))


async def stats(request: Request) -> Response:
    return Response(stats_body(SERVED_BY, len(clients)), media_type="application/json")


app = Starlette(
    routes=[Route("/stream", stream), Route("/_broadcast", broadcast), Route("/_stats", stats)]
)
