"""FastAPI's own `fastapi.sse.EventSourceResponse` (FastAPI 0.135+): what most FastAPI users try
first. Same routes and queue pattern as ours_upstream.py, as FastAPI wants it written: path
operations that yield `ServerSentEvent`s (`raw_data`: FastAPI would JSON-quote a str `data`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import fastapi
from fastapi import FastAPI
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.responses import PlainTextResponse, Response

from .common import HELLO, TICK, WORD, Fanout, stats_body
from .relay import URL, Relay

SERVED_BY = f"fastapi {fastapi.__version__} fastapi.sse.EventSourceResponse"

clients: Fanout[ServerSentEvent] = Fanout()
# Several workers (BENCH_FANOUT_URL): a broadcast reaches them all through Redis (relay.py).
relay = Relay(URL, lambda: clients.broadcast(ServerSentEvent(raw_data=TICK))) if URL else None
app = FastAPI(lifespan=relay.lifespan if relay else None)


@app.get("/stream", response_class=EventSourceResponse)
async def stream(n: int | None = None) -> AsyncIterator[ServerSentEvent]:
    if n is None:
        async for item in clients.subscribe(ServerSentEvent(raw_data=HELLO)):
            yield item
    else:
        for _ in range(n):
            yield ServerSentEvent(raw_data=WORD)  # a new event each time, as an app makes them


@app.get("/_broadcast")
async def broadcast() -> Response:
    sent = await relay.publish() if relay else clients.broadcast(ServerSentEvent(raw_data=TICK))
    return PlainTextResponse(str(sent))


@app.get("/_stats")
async def stats() -> Response:
    return Response(stats_body(SERVED_BY, len(clients)), media_type="application/json")
