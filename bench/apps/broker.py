"""This project's `Broker`: every stream subscribes to one topic, `/_broadcast` publishes to it.

    GET /stream       the topic's events until the client leaves: those after its
                      Last-Event-ID (a resume), or else first the "hello~" published at
                      start-up (the stream resumes from just before it, so that it has an event
                      to tell the client it is open); then every broadcast
    GET /_broadcast   publishes one event; answers how many streams are subscribed
    GET /_publish?n=N&size=S
                      publishes N events of S bytes of data; answers the id of the event
                      before them: the Last-Event-ID that resumes all N
    GET /_stats       {"tasks": ..., "streams": ..., "served_by": ..., "resumes": ...,
                      "resets": ...}

The backend is BENCH_BROKER_URL: memory:// (the default) or the redis:// URL of the
redis-server the harness started; BENCH_BROKER_HISTORY the events kept for resuming. The
streams are the broker's own (`broker.response`): no generator and no queue per client, each
event encoded once for all of them.
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
from sse_starlette.broker import Broker, request_last_event_id

from .common import HELLO, TICK, stats_body

URL = os.environ.get("BENCH_BROKER_URL", "memory://")
HISTORY = int(os.environ.get("BENCH_BROKER_HISTORY", "1000"))  # 1000: the Broker's default
BACKEND = URL.split(":")[0]
SERVED_BY = (
    f"sse_starlette {sse_starlette.__version__} Broker({BACKEND}) ({sse_starlette.__file__})"
)
TOPIC = "bench"

# A key prefix of its own: a redis-server shared by several rounds starts each one empty. The
# scale scenario's workers share one (BENCH_BROKER_PREFIX): a broadcast reaches them all.
PREFIX = os.environ.get("BENCH_BROKER_PREFIX", f"bench-{os.getpid()}:")
broker = Broker(URL, history=HISTORY, prefix=PREFIX)
start = ""  # the log's position before HELLO: every stream resumes from there


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    global start
    async with broker:
        start = await broker.backend.position()
        await broker.publish(TOPIC, {"data": HELLO})
        yield


async def stream(request: Request) -> EventSourceResponse:
    return broker.response(request, TOPIC, last_event_id=request_last_event_id(request) or start)


async def broadcast(request: Request) -> PlainTextResponse:
    await broker.publish(TOPIC, {"data": TICK})
    return PlainTextResponse(str(broker.metrics.subscribers))


def payload(n: int, size: int) -> str:
    """`size` characters of data, the counted "~" last (an app's JSON, say, as far as the
    broker can tell: it never looks inside)."""
    return f"event {n} ".ljust(size - 1, "x")[: size - 1] + "~"


async def publish(request: Request) -> PlainTextResponse:
    n, size = int(request.query_params["n"]), int(request.query_params["size"])
    # The harness is the only publisher while it asks: the position is the event before them.
    before = await broker.backend.position()
    for i in range(n):
        await broker.publish(TOPIC, {"data": payload(i, size)})
    return PlainTextResponse(before)


async def stats(request: Request) -> Response:
    metrics = broker.metrics
    body = stats_body(
        SERVED_BY, metrics.subscribers, resumes=metrics.resumes, resets=metrics.resets
    )
    return Response(body, media_type="application/json")


app = Starlette(
    routes=[
        Route("/stream", stream),
        Route("/_broadcast", broadcast),
        Route("/_publish", publish),
        Route("/_stats", stats),
    ],
    lifespan=lifespan,
)
