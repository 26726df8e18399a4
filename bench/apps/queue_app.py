"""The Starlette app shared by ours_upstream, streaming and floor: only the response differs.

The per-client queue pattern of the published package's examples (common.Fanout), behind
the routes the harness calls. Imports Starlette, so raw.py does not use it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from .common import Fanout, stats_body
from .relay import URL, Relay

T = TypeVar("T")


def queue_app(
    served_by: str,
    respond: Callable[[AsyncIterator[T]], Response],
    hello: T,
    tick: T,
    count: Callable[[int], AsyncIterator[T]],
) -> Starlette:
    """GET /stream[?n=N], GET /_broadcast, GET /_stats, answering with `respond(items)`.
    With BENCH_FANOUT_URL, a broadcast goes through Redis to every worker (relay.py)."""
    clients: Fanout[T] = Fanout()
    relay = Relay(URL, lambda: clients.broadcast(tick)) if URL else None

    async def stream(request: Request) -> Response:
        n = request.query_params.get("n")
        return respond(clients.subscribe(hello) if n is None else count(int(n)))

    async def broadcast(request: Request) -> Response:
        sent = await relay.publish() if relay else clients.broadcast(tick)
        return PlainTextResponse(str(sent))

    async def stats(request: Request) -> Response:
        return Response(stats_body(served_by, len(clients)), media_type="application/json")

    return Starlette(
        routes=[Route("/stream", stream), Route("/_broadcast", broadcast), Route("/_stats", stats)],
        lifespan=relay.lifespan if relay else None,
    )
