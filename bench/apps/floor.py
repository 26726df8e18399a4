"""The floor under `ours` and `upstream`: their app with the least response that works.

The same Starlette routing, per-client `asyncio.Queue` and generators (common.py) as
ours_upstream.py. The response sends each item as the generator yields it, and one plain
asyncio task waits for the client to leave and then cancels the stream: no ping, no send
timeout, no shutdown handling, no encoder, no error handling (so endless streams hold up a
graceful shutdown). What lies between `floor` and `raw` is the app's and Starlette's share of
each figure; what lies between `ours` and `floor` is the response's. Not a contender: the full
profile runs it beside them (or `--impl floor`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import starlette
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .common import HELLO, TICK, Event, count
from .queue_app import queue_app

SERVED_BY = f"starlette {starlette.__version__}, a response that only sends"
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),
]


class SendOnly(Response):
    def __init__(self, events: AsyncIterator[Event]) -> None:
        self.events = events
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        stream = asyncio.current_task()
        assert stream is not None

        async def listen() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            stream.cancel()

        listener = asyncio.get_running_loop().create_task(listen())
        try:
            async for event in self.events:
                body = f"data: {event['data']}\r\n\r\n".encode()
                await send({"type": "http.response.body", "body": body, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not listener.done():
                raise  # not the client leaving
        finally:
            listener.cancel()


app = queue_app(SERVED_BY, SendOnly, {"data": HELLO}, {"data": TICK}, count)
