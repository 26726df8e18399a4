"""The live demo behind `python -m sse_starlette demo`: a shared chat and a ticker.

One page (`static/demo.html`), one event stream per tab (`GET /events`, topics `chat` and
`ticker` on one connection: browsers allow six HTTP/1.1 connections per host across all
tabs), `POST /chat` to say something. Every event goes through a `Broker`, so a tab that
loses its connection resumes with `Last-Event-ID` and misses nothing; on Redis several demo
processes act as one (each one's ticker draws its own line on every page).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from sse_starlette.broker import Broker, BrokerUnavailableError, request_last_event_id
from sse_starlette.event import ServerSentEvent, dumps
from sse_starlette.sse import EventSourceResponse

__all__ = ["create_demo"]

logger = logging.getLogger("sse_starlette.demo")

TOPICS = ("chat", "ticker")
RETRY_MS = 1000  # reconnect soon after a server restart (browsers wait about 3 s by default)
MAX_NAME, MAX_TEXT = 40, 500


def create_demo(
    broker: Broker | None = None, *, label: str = "demo", tick: float = 1.0
) -> Starlette:
    """The demo app; its lifespan starts `broker` (default: in memory) and the ticker.

    Args:
        broker: carries the events; `Broker("redis://...")` lets several demo processes
            share one chat.
        label: names this process's line in the ticker chart.
        tick: seconds between two ticker values (0: no ticker).
    """
    broker = broker if broker is not None else Broker(history=10_000)
    page = resources.files("sse_starlette").joinpath("static/demo.html").read_text("utf-8")

    async def ticker() -> None:
        value = 100.0
        while True:
            value = max(1.0, value + random.gauss(0, 1))
            data = {"server": label, "value": round(value, 2), "at": int(time.time() * 1000)}
            try:
                await broker.publish("ticker", {"event": "tick", "data": dumps(data)})
            except BrokerUnavailableError as exc:
                logger.warning("ticker: %s", exc)
            await anyio.sleep(tick)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with broker, anyio.create_task_group() as tasks:
            if tick > 0:
                tasks.start_soon(ticker)
            yield
            tasks.cancel_scope.cancel()

    async def index(request: Request) -> Response:
        return HTMLResponse(page)

    async def events(request: Request) -> Response:
        last_event_id = request_last_event_id(request)
        subscription = broker.subscribe(TOPICS, last_event_id)

        async def stream() -> AsyncIterator[Any]:
            yield ServerSentEvent(retry=RETRY_MS)  # no id: the page's lastEventId stays
            async with subscription:
                async for event in subscription:
                    yield event

        return EventSourceResponse(stream(), send_timeout=30)

    async def chat(request: Request) -> Response:
        body = await request.body()
        try:
            message = json.loads(body) if len(body) <= 4096 else None
        except ValueError:
            message = None
        if not isinstance(message, dict):
            return JSONResponse({"error": "send JSON {name, text}"}, 400)
        name, text = message.get("name"), message.get("text")
        if not isinstance(name, str) or not isinstance(text, str) or not text.strip():
            return JSONResponse({"error": "'name' and 'text' must be strings, text not empty"}, 400)
        name = name.strip()[:MAX_NAME] or "anonymous"
        data = dumps({"name": name, "text": text[:MAX_TEXT], "via": label})
        try:
            id = await broker.publish("chat", {"event": "chat", "data": data})
        except ValueError as exc:  # a lone surrogate: not sendable as UTF-8
            return JSONResponse({"error": str(exc)}, 400)
        except BrokerUnavailableError as exc:
            return JSONResponse({"error": str(exc)}, 503)
        return JSONResponse({"id": id})

    return Starlette(
        routes=[
            Route("/", index),
            Route("/events", events),
            Route("/chat", chat, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
