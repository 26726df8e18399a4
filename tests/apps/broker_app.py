"""A broker behind real uvicorn processes; configured by environment, so that several
processes can share one Redis in a test."""

from __future__ import annotations

import os
import resource

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sse_starlette.broker import Broker

broker = Broker(
    os.environ.get("SSE_TEST_BROKER_URL", "memory://"),
    prefix=os.environ.get("SSE_TEST_REDIS_PREFIX", "sse:"),
    buffer=int(os.environ.get("SSE_TEST_BUFFER", "256")),
)


async def events(request: Request) -> Response:
    return broker.response(request, request.query_params["topic"], ping=0)


async def publish(request: Request) -> Response:
    id = await broker.publish(request.query_params["topic"], (await request.body()).decode())
    return JSONResponse({"id": id})


async def stats(request: Request) -> Response:
    metrics = broker.metrics
    return JSONResponse(
        {
            "subscribers": metrics.subscribers,
            "slow_consumer_disconnects": metrics.slow_consumer_disconnects,
            "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        }
    )


app = Starlette(
    routes=[
        Route("/events", events),
        Route("/publish", publish, methods=["POST"]),
        Route("/stats", stats),
    ],
    lifespan=broker.lifespan,
)
