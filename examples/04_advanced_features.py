"""The advanced knobs of `EventSourceResponse`, on a small sensor feed.

`GET /readings`: a Pydantic model as each event's data, a custom ping, a send timeout, a log
line when the client leaves, and on server shutdown a farewell event before the stream ends.
`GET /channel`: a producer task fills an anyio memory stream that is the response's content.

    python examples/04_advanced_features.py
    curl -N http://127.0.0.1:8000/readings     # then stop the server (Ctrl+C): "farewell"
    curl -N http://127.0.0.1:8000/channel
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from functools import partial

import anyio
import uvicorn
from anyio.streams.memory import MemoryObjectSendStream
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Message

from sse_starlette import EventSourceResponse, ServerSentEvent

logger = logging.getLogger(__name__)

READING_SECONDS = 1.0
PING_SECONDS = 5.0
SEND_TIMEOUT_SECONDS = 10.0
SHUTDOWN_GRACE_SECONDS = 2.0
FAREWELL_RETRY_MS = 10_000
CHANNEL_ITEMS = 20
CHANNEL_BUFFER = 4


class Reading(BaseModel):
    sensor: str
    celsius: float
    taken_at: datetime


def read_sensor(n: int, sensor: str = "greenhouse") -> Reading:
    # A made-up but deterministic signal, so that runs are comparable.
    celsius = round(20 + 3 * math.sin(n / 4), 2)
    return Reading(sensor=sensor, celsius=celsius, taken_at=datetime.now(timezone.utc))


def ping_event() -> ServerSentEvent:
    # A named event instead of the default comment: comments never reach the page's
    # JavaScript, a "ping" event does, so the page can tell a quiet feed from a dead one.
    return ServerSentEvent(datetime.now(timezone.utc).isoformat(), event="ping")


async def reading_events(shutdown: anyio.Event) -> AsyncIterator[ServerSentEvent]:
    n = 0
    while not shutdown.is_set():
        n += 1
        yield ServerSentEvent(read_sensor(n), event="reading", id=str(n))
        with anyio.move_on_after(READING_SECONDS):
            await shutdown.wait()
    # The server is stopping and this generator has SHUTDOWN_GRACE_SECONDS left. `retry`
    # asks the browser to wait before reconnecting, giving the server time to come back.
    yield ServerSentEvent("server is shutting down", event="farewell", retry=FAREWELL_RETRY_MS)


async def readings(request: Request) -> EventSourceResponse:
    client = f"{request.client.host}:{request.client.port}" if request.client else "unknown"

    async def log_disconnect(message: Message) -> None:
        logger.info("client %s left /readings", client)

    shutdown = anyio.Event()
    return EventSourceResponse(
        reading_events(shutdown),
        ping=PING_SECONDS,
        ping_message_factory=ping_event,
        # A client that stops reading (a suspended laptop) would otherwise keep this
        # stream's generator alive until the TCP connection times out, minutes later.
        send_timeout=SEND_TIMEOUT_SECONDS,
        client_close_handler_callable=log_disconnect,
        shutdown_event=shutdown,
        shutdown_grace_period=SHUTDOWN_GRACE_SECONDS,
    )


async def produce(send: MemoryObjectSendStream[Reading]) -> None:
    # Closing the send side (leaving the `async with`) is what ends the response.
    async with send:
        for n in range(1, CHANNEL_ITEMS + 1):
            await send.send(read_sensor(n, sensor="channel"))


async def channel(request: Request) -> EventSourceResponse:
    # The buffer bounds how far the producer can run ahead of a slow client.
    send, receive = anyio.create_memory_object_stream[Reading](max_buffer_size=CHANNEL_BUFFER)
    return EventSourceResponse(receive, data_sender_callable=partial(produce, send))


app = Starlette(routes=[Route("/readings", readings), Route("/channel", channel)])


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    uvicorn.run(app, host="127.0.0.1", port=8000)
