"""A bare ASGI app that sends pre-encoded bytes with plain `send()`: the ceiling.

No framework, no encoding, no task of its own: what any ASGI library could at best reach
under the same server. Same routes as ours_upstream.py; a broadcast awaits each stream's
`send` in turn from the request that triggers it. On SIGTERM it ends every stream with its
final chunk, at the least cost: one task sends them all from uvicorn's signal handler (the
floor of a clean shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any
from urllib.parse import parse_qs

from .common import HELLO, TICK, WORD, stats_body

# The ASGI types, spelled out here so that the ceiling imports no framework at all.
Message = dict[str, Any]
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SERVED_BY = "raw ASGI"

START: Message = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"cache-control", b"no-store"),
        (b"x-accel-buffering", b"no"),
    ],
}
END: Message = {"type": "http.response.body", "body": b"", "more_body": False}


def _body(text: str) -> Message:
    return {
        "type": "http.response.body",
        "body": f"data: {text}\r\n\r\n".encode(),
        "more_body": True,
    }


WORD_BODY, HELLO_BODY, TICK_BODY = _body(WORD), _body(HELLO), _body(TICK)

senders: set[Send] = set()


async def _stream(scope: Scope, receive: Receive, send: Send) -> None:
    await send(START)
    query = parse_qs(scope["query_string"].decode())
    if "n" in query:
        for _ in range(int(query["n"][0])):
            await send(WORD_BODY)
        await send(END)
        return
    await send(HELLO_BODY)
    senders.add(send)
    try:
        while (await receive())["type"] != "http.disconnect":
            pass
    finally:
        senders.discard(send)


async def _text(
    send: Send, body: bytes, content_type: bytes = b"text/plain", status: int = 200
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _broadcast(send: Send) -> None:
    for target in list(senders):
        # A stream whose client just left may refuse the write; it leaves on its own.
        with contextlib.suppress(OSError):
            await target(TICK_BODY)
    await _text(send, str(len(senders)).encode())


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            LOOP.append(asyncio.get_running_loop())
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


LOOP: list[asyncio.AbstractEventLoop] = []  # the server's, from the lifespan's start-up


def _end_streams_on_exit() -> None:
    """On uvicorn's SIGTERM, send every open stream its end (uvicorn then closes it). Patched
    on import: uvicorn takes its signal handler after importing the app, before its start-up."""
    import uvicorn.server

    handle_exit = uvicorn.server.Server.handle_exit
    tasks: set[asyncio.Task[None]] = set()

    async def end_all() -> None:
        for send in list(senders):
            with contextlib.suppress(OSError):
                await send(END)

    def start() -> None:
        tasks.add(asyncio.get_running_loop().create_task(end_all()))

    def on_exit(server: uvicorn.server.Server, sig: int, frame: FrameType | None) -> None:
        handle_exit(server, sig, frame)
        for loop in LOOP:
            loop.call_soon_threadsafe(start)

    uvicorn.server.Server.handle_exit = on_exit  # type: ignore[method-assign,assignment]


_end_streams_on_exit()


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["path"] == "/stream":
        await _stream(scope, receive, send)
    elif scope["path"] == "/_broadcast":
        await _broadcast(send)
    elif scope["path"] == "/_stats":
        await _text(send, stats_body(SERVED_BY, len(senders)), b"application/json")
    else:
        await _text(send, b"not found", status=404)
