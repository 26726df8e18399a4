"""This project's `Broker`: every stream subscribes to one topic, `/_broadcast` publishes to it.

    GET /stream       the topic's events until the client leaves: first the "hello~" published
                      at start-up (each stream resumes from just before it, so that it has an
                      event to tell the client it is open), then every broadcast
    GET /_broadcast   publishes one event; answers how many streams are subscribed
    GET /_stats       {"tasks": ..., "streams": ..., "served_by": ...}

The backend is BENCH_BROKER_URL: memory:// (the default) or the redis:// URL of the
redis-server the harness started. The streams are the broker's own (`broker.response`): no
generator and no queue per client, each event encoded once for all of them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

import sse_starlette
from sse_starlette import EventSourceResponse
from sse_starlette.broker import Broker

from .common import HELLO, TICK, stats_body

URL = os.environ.get("BENCH_BROKER_URL", "memory://")
BACKEND = URL.split(":")[0]
SERVED_BY = (
    f"sse_starlette {sse_starlette.__version__} Broker({BACKEND}) ({sse_starlette.__file__})"
)
TOPIC = "bench"

# A key prefix of its own: a redis-server shared by several rounds starts each one empty.
broker = Broker(URL, prefix=f"bench-{os.getpid()}:")
start = ""  # the log's position before HELLO: every stream resumes from there


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    global start
    async with broker:
        start = await broker.backend.position()
        await broker.publish(TOPIC, {"data": HELLO})
        yield


async def stream(request: Request) -> EventSourceResponse:
    return broker.response(request, TOPIC, last_event_id=start)


async def broadcast(request: Request) -> PlainTextResponse:
    await broker.publish(TOPIC, {"data": TICK})
    return PlainTextResponse(str(broker.metrics.subscribers))


async def stats(request: Request) -> Response:
    return Response(
        stats_body(SERVED_BY, broker.metrics.subscribers), media_type="application/json"
    )


app = Starlette(
    routes=[Route("/stream", stream), Route("/_broadcast", broadcast), Route("/_stats", stats)],
    lifespan=lifespan,
)
