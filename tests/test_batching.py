"""Events that are ready together go out in one message (bounded), where the producer is
ours: a broker subscription's backlog and resume, an anyio memory object stream. A user's
generator keeps one message per event. Counted in ASGI messages, never timed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.broker import Broker
from sse_starlette.sse import _BATCH_BYTES
from tests.asgi import ASGICall, asgi_call

pytestmark = pytest.mark.anyio


def events_in(call: ASGICall) -> int:
    return call.body.count(b"\r\n\r\n")


async def test_a_resume_500_events_behind_goes_out_in_a_few_messages() -> None:
    async with Broker(buffer=256) as broker:
        ids = [await broker.publish("t", f"event {i}") for i in range(501)]
        response = EventSourceResponse(broker.subscribe("t", last_event_id=ids[0]), ping=0)
        async with asgi_call(response) as call:
            await call.wait_until(lambda c: events_in(c) == 500)
    expected = b"".join(f"id: {id}\r\ndata: event {i}\r\n\r\n".encode()
                        for i, id in enumerate(ids) if i)  # fmt: skip
    assert call.body == expected  # the same bytes, in order
    assert len(call.chunks) <= 4  # two pages of 256: not 500 messages


async def test_a_memory_stream_sends_what_is_ready_in_one_message_of_at_most_64_kib() -> None:
    send, receive = anyio.create_memory_object_stream[ServerSentEvent](1000)
    big = "x" * 1000
    for i in range(200):  # about 200 KiB, ready at once
        send.send_nowait(ServerSentEvent(big, id=str(i)))
    send.close()
    async with asgi_call(EventSourceResponse(receive, ping=0)) as call:
        await call.wait_until(lambda c: c.complete)
    chunks = call.chunks[:-1]  # the last one is the final empty chunk
    assert b"".join(chunks).count(b"\r\n\r\n") == 200
    total = sum(map(len, chunks))
    assert len(chunks) <= total // _BATCH_BYTES + 1  # not 200 messages: as few as the bound allows
    assert all(len(chunk) < _BATCH_BYTES + 2000 for chunk in chunks)  # none past it by an event


async def test_a_users_generator_keeps_one_message_per_event() -> None:
    async def numbers() -> AsyncIterator[str]:
        for i in range(20):
            yield str(i)

    async with asgi_call(EventSourceResponse(numbers(), ping=0)) as call:
        await call.wait_until(lambda c: c.complete)
    assert len(call.chunks) == 20 + 1
