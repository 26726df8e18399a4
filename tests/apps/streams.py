"""Endpoints for the real-server tests; what happens inside is printed to the server log."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import Message

from sse_starlette import EventSourceResponse

released = anyio.Event()


def log(text: str) -> None:
    print(text, flush=True)


async def on_demand(request: Request) -> EventSourceResponse:
    """Event 1 at once; event 2 only after POST /release: shows events are sent as yielded."""

    async def events() -> AsyncIterator[dict[str, str]]:
        yield {"data": "one", "id": "1"}
        log("waiting for release")
        await released.wait()
        yield {"data": "two", "id": "2"}

    return EventSourceResponse(events(), ping=0)


async def release(request: Request) -> PlainTextResponse:
    released.set()
    return PlainTextResponse("released")


async def endless(request: Request) -> EventSourceResponse:
    name = request.query_params.get("name", "endless")

    async def events() -> AsyncIterator[dict[str, str]]:
        log(f"{name}: generator started")
        try:
            i = 0
            while True:
                yield {"data": str(i), "id": str(i)}
                i += 1
                await anyio.sleep(0.05)
        finally:
            log(f"{name}: finally ran")

    async def closed(message: Message) -> None:
        log(f"{name}: close handler got {message['type']}")

    ping = float(request.query_params.get("ping", "15"))
    return EventSourceResponse(events(), client_close_handler_callable=closed, ping=ping)


async def flood(request: Request) -> EventSourceResponse:
    """Large events as fast as the socket takes them, for a client that stops reading."""

    async def events() -> AsyncIterator[str]:
        try:
            while True:
                yield "x" * 65536
        finally:
            log("flood: finally ran")

    return EventSourceResponse(events(), send_timeout=0.5, ping=0)


app = Starlette(
    routes=[
        Route("/on-demand", on_demand),
        Route("/release", release, methods=["POST"]),
        Route("/endless", endless, methods=["GET", "HEAD"]),
        Route("/flood", flood),
    ]
)
