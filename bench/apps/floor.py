"""The floor under `ours` and `upstream`: their app with the least response that works.

Same Starlette routing, same per-client `asyncio.Queue` and generators as ours_upstream.py.
The response sends each item as the generator yields it, and one plain asyncio task waits
for the client to leave and then cancels the stream: no ping, no send timeout, no shutdown
handling, no encoder, no error handling (so endless streams hold up a graceful shutdown).
What lies between `floor` and `raw` is the app's and Starlette's share of each figure; what
lies between `ours` and `floor` is the response's. Not a contender: run it with
`--impl floor`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import starlette
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

SERVED_BY = f"starlette {starlette.__version__}, a response that only sends"

# Every event the harness counts carries exactly one "~": the clients count events with
# bytes.count(b"~") instead of parsing them (headers, chunk sizes and pings never hold one).
HELLO = "hello~"  # first event of an endless stream: it tells the client the stream is open
WORD = "hello world~"  # every event of the throughput stream
TICK = "tick~"  # the broadcast event

Event = dict[str, str]
clients: set[asyncio.Queue[Event]] = set()
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),
]


def stats_body(streams: int) -> bytes:
    """`GET /_stats`: tasks in the loop and open streams, so that the harness sees leaks."""
    stats = {"tasks": len(asyncio.all_tasks()), "streams": streams, "served_by": SERVED_BY}
    return json.dumps(stats).encode()


async def _count(n: int) -> AsyncIterator[Event]:
    for _ in range(n):
        yield {"data": WORD}


async def _subscribe() -> AsyncIterator[Event]:
    queue: asyncio.Queue[Event] = asyncio.Queue()
    clients.add(queue)
    try:
        yield {"data": HELLO}
        while True:
            yield await queue.get()
    finally:
        clients.discard(queue)


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


async def stream(request: Request) -> Response:
    n = request.query_params.get("n")
    return SendOnly(_subscribe() if n is None else _count(int(n)))


async def broadcast(request: Request) -> PlainTextResponse:
    event = {"data": TICK}
    for queue in clients:
        queue.put_nowait(event)
    return PlainTextResponse(str(len(clients)))


async def stats(request: Request) -> Response:
    return Response(stats_body(len(clients)), media_type="application/json")


app = Starlette(
    routes=[Route("/stream", stream), Route("/_broadcast", broadcast), Route("/_stats", stats)]
)
