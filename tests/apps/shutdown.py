"""Endpoints for the shutdown tests under every server; what happens goes to the server log."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from sse_starlette import EventSourceResponse


def log(text: str) -> None:
    print(text, flush=True)


async def idle(request: Request) -> EventSourceResponse:
    """One event, then nothing: an open stream as most of them are, waiting for news."""
    name = request.query_params.get("name", "idle")

    async def events() -> AsyncIterator[dict[str, str]]:
        try:
            yield {"data": "hello"}
            await anyio.sleep_forever()
        finally:
            if name != "quiet":
                log(f"{name}: finally ran")

    return EventSourceResponse(events(), ping=0)


async def ticks(request: Request) -> EventSourceResponse:
    """An event every 20 ms: a stream that is visibly still running."""

    async def events() -> AsyncIterator[dict[str, str]]:
        i = 0
        while True:
            yield {"data": str(i)}
            i += 1
            await anyio.sleep(0.02)

    return EventSourceResponse(events(), ping=0)


async def farewell(request: Request) -> EventSourceResponse:
    """Cooperative: says goodbye when `shutdown_event` is set; `stubborn=1` ignores it."""
    stop = anyio.Event()
    stubborn = request.query_params.get("stubborn") == "1"
    grace: float | str = request.query_params.get("grace", "2")
    grace = grace if grace == "server" else float(grace)

    async def events() -> AsyncIterator[dict[str, str]]:
        yield {"data": "hello"}
        if stubborn:
            try:
                await anyio.sleep_forever()
            finally:
                log(f"stubborn: cancelled at {time.monotonic():.3f}")
        await stop.wait()
        log(f"farewell: shutdown_event set at {time.monotonic():.3f}")
        yield {"event": "farewell", "data": "bye"}

    return EventSourceResponse(
        events(),
        shutdown_event=stop,
        shutdown_grace_period=grace,  # type: ignore[arg-type]
        ping=0,
    )


async def blocked_thread(request: Request) -> EventSourceResponse:
    """A sync iterator whose next() blocks in its thread until the test process releases it."""
    never = threading.Event()

    def events() -> Iterator[str]:
        yield "hello"
        log("sync iterator: blocked in its thread")
        never.wait()
        yield "never sent"

    return EventSourceResponse(events(), ping=0)


async def stuck_cleanup(request: Request) -> EventSourceResponse:
    """For a client that stops reading: the generator's cleanup never finishes by itself."""

    async def events() -> AsyncIterator[str]:
        try:
            # More than the socket buffers hold: the send of the next event blocks.
            yield "x" * (16 << 20)
            log("stuck cleanup: parked")
            yield "next"
        finally:
            log(f"stuck cleanup: started at {time.monotonic():.3f}")
            try:
                await anyio.sleep(60)
            finally:
                log(f"stuck cleanup: cut at {time.monotonic():.3f}")

    return EventSourceResponse(events(), ping=0, cleanup_timeout=0.5)


async def unread(request: Request) -> EventSourceResponse:
    """For a client that has stopped reading: more than the socket buffers hold, then more."""

    async def events() -> AsyncIterator[str]:
        yield "x" * (16 << 20)
        log("unread: parked")
        yield "next"

    return EventSourceResponse(events(), ping=0)


async def hang(request: Request) -> PlainTextResponse:
    """A plain request that never finishes: no stream, so no drain reaches it."""
    log("hang: waiting forever")
    await anyio.sleep_forever()
    return PlainTextResponse("never")


app = Starlette(
    routes=[
        Route("/idle", idle),
        Route("/ticks", ticks),
        Route("/farewell", farewell),
        Route("/blocked-thread", blocked_thread),
        Route("/stuck-cleanup", stuck_cleanup),
        Route("/unread", unread),
        Route("/hang", hang),
    ]
)
