"""Each example in `examples/` does what its docstring says."""

from __future__ import annotations

import importlib
import logging
import os
import re
import selectors
import subprocess
import sys
import threading
import time
from datetime import datetime

import anyio
import httpx
import pytest

from sse_starlette.parser import EventStreamParser
from sse_starlette.sse import AppStatus, SendTimeoutError
from sse_starlette.testing import SSETestClient
from tests.asgi import StuckClient, http_scope
from tests.servers import ROOT

basic = importlib.import_module("examples.01_basic_sse")
broadcasting = importlib.import_module("examples.02_message_broadcasting")
database = importlib.import_module("examples.03_database_streaming")
advanced = importlib.import_module("examples.04_advanced_features")


# 01_basic_sse


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "block"),
    [
        pytest.param("/events", "id: {n}\r\nevent: tick\r\ndata: {n}\r\n\r\n", id="async"),
        pytest.param("/sync", "id: {n}\r\ndata: blocking step {n}\r\n\r\n", id="sync-in-a-thread"),
    ],
)
async def test_basic_generators_stream_numbered_events(
    monkeypatch: pytest.MonkeyPatch, path: str, block: str
) -> None:
    monkeypatch.setattr(basic, "DELAY_SECONDS", 0)
    async with SSETestClient(basic.app) as client, client.stream(path) as stream:
        await stream.read_to_end()
    assert stream.complete
    assert stream.headers["content-type"].startswith("text/event-stream")
    numbers = range(1, basic.COUNT + 1)
    assert stream.raw == b"".join(block.format(n=n).encode() for n in numbers)


# 02_message_broadcasting


@pytest.mark.anyio
async def test_broadcast_reaches_every_client_and_leaving_unsubscribes() -> None:
    hub = broadcasting.broadcast
    async with (
        SSETestClient(broadcasting.app) as client,
        client.stream("/events") as first,
        client.stream("/events") as second,
    ):
        # The first event is sent once the client is subscribed.
        for stream in (first, second):
            await stream.wait(lambda s: s.raw.endswith(b"\r\n\r\n"))
            assert stream.raw == b": subscribed\r\nretry: 2000\r\n\r\n"
        assert hub.subscriber_count == 2

        response = await client.request("POST", "/messages", json={"text": "hello, both"})
        assert response.status_code == 200
        assert response.json() == {"delivered": 2}

        message = await first.next()
        assert await second.next() == message
        assert first.events == second.events == [message]
        assert message.event == "message"
        assert message.json() == {"text": "hello, both"}
        assert message.id.isdigit()
    assert hub.subscriber_count == 0


@pytest.mark.anyio
async def test_broadcast_skips_a_client_whose_queue_is_full() -> None:
    hub = broadcasting.Broadcast(queue_size=1)
    with hub.subscribe() as queue:
        assert hub.publish(broadcasting.Message(text="kept")) == 1
        assert hub.publish(broadcasting.Message(text="dropped")) == 0
        (event,) = EventStreamParser().feed(queue.receive_nowait())
        assert event.json() == {"text": "kept"}
    assert hub.subscriber_count == 0


def test_broadcast_demo_script_prints_its_address_and_serves_the_page() -> None:
    script = ROOT / "examples" / "02_message_broadcasting.py"
    process = subprocess.Popen(
        [sys.executable, str(script), "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    try:
        output: list[str] = []
        url = None
        deadline = time.monotonic() + 10
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while url is None:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no address printed: {''.join(output)}"
                if selector.select(remaining):
                    line = process.stdout.readline()
                    assert line, f"script exited: {''.join(output)}"
                    output.append(line)
                    match = re.search(r"http://127\.0\.0\.1:\d+/", line)
                    url = match.group(0) if match else None
        # The socket is bound before the address is printed: no retry needed.
        response = httpx.get(url, timeout=10)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert 'new EventSource("/events")' in response.text
        assert '"/messages"' in response.text
    finally:
        process.kill()
        process.wait(timeout=10)
        process.stdout.close()


# 03_database_streaming
#
# aiosqlite runs its sqlite3 connection in a thread and hands results back through asyncio
# futures, and SQLAlchemy's asyncio extension likewise needs asyncio: no trio here.

asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])


@pytest.mark.anyio
@asyncio_only
async def test_database_rows_arrive_in_order_as_json_with_ids() -> None:
    # The client runs the app's lifespan, which creates and fills the database.
    async with SSETestClient(database.app) as client, client.stream("/users") as stream:
        events = await stream.read_to_end()
    assert stream.complete
    assert [event.id for event in events] == ["1", "2", "3", "4", "5"]
    assert {event.event for event in events} == {"user"}
    assert [event.json() for event in events] == [
        {"id": n, "name": name, "email": email}
        for n, (name, email) in enumerate(database.SAMPLE_USERS, start=1)
    ]


@pytest.mark.anyio
@asyncio_only
@pytest.mark.parametrize(
    ("header", "ids"), [("2", ["3", "4", "5"]), ("junk", ["1", "2", "3", "4", "5"])]
)
async def test_database_resumes_after_last_event_id(header: str, ids: list[str]) -> None:
    async with (
        SSETestClient(database.app) as client,
        client.stream("/users", headers={"Last-Event-ID": header}) as stream,
    ):
        events = await stream.read_to_end()
    assert stream.complete
    assert [event.id for event in events] == ids


# 04_advanced_features


@pytest.mark.anyio
async def test_advanced_readings_are_pydantic_json_with_ids() -> None:
    async with SSETestClient(advanced.app) as client, client.stream("/readings") as stream:
        event = await stream.next()
        assert stream.events == [event]
    assert event.event == "reading"
    assert event.id == "1"
    reading = advanced.Reading.model_validate_json(event.data)
    assert reading == advanced.read_sensor(1).model_copy(update={"taken_at": reading.taken_at})


@pytest.mark.anyio
async def test_advanced_custom_ping_and_disconnect_log(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(advanced, "PING_SECONDS", 0.05)
    monkeypatch.setattr(advanced, "READING_SECONDS", 60)
    caplog.set_level(logging.INFO, logger=advanced.logger.name)
    async with SSETestClient(advanced.app) as client, client.stream("/readings") as stream:
        ping = await stream.until(lambda event: event.event == "ping")
    # A block of exactly these two fields (an event's id would carry over to the ping).
    assert f"\r\n\r\nevent: ping\r\ndata: {ping.data}\r\n\r\n".encode() in stream.raw
    assert datetime.fromisoformat(ping.data).tzinfo is not None
    assert any("left /readings" in record.getMessage() for record in caplog.records)


@pytest.mark.anyio
async def test_advanced_client_that_stops_reading_is_dropped_after_the_send_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(advanced, "SEND_TIMEOUT_SECONDS", 0.1)
    client = StuckClient()
    with anyio.fail_after(5), pytest.raises(SendTimeoutError):
        await advanced.app(http_scope(path="/readings"), client.receive, client.send)
    (first,) = client.blocked  # the first reading's send never completed; nothing was sent after it
    assert first["body"].startswith(b"id: 1\r\nevent: reading\r\n")


@pytest.mark.anyio
async def test_advanced_memory_channel_delivers_every_item() -> None:
    async with SSETestClient(advanced.app) as client, client.stream("/channel") as stream:
        events = await stream.read_to_end()
    assert stream.complete
    readings = [advanced.Reading.model_validate_json(event.data) for event in events]
    assert [r.celsius for r in readings] == [
        advanced.read_sensor(n).celsius for n in range(1, advanced.CHANNEL_ITEMS + 1)
    ]
    assert {r.sensor for r in readings} == {"channel"}


FAREWELL = (
    f"event: farewell\r\ndata: server is shutting down\r\nretry: {advanced.FAREWELL_RETRY_MS}"
)


@pytest.mark.anyio
async def test_advanced_shutdown_sends_a_farewell_then_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(advanced, "READING_SECONDS", 60)
    async with SSETestClient(advanced.app) as client, client.stream("/readings") as stream:
        await stream.next()
        await stream.drain()
    assert stream.complete
    assert [event.event for event in stream.events] == ["reading", "farewell"]
    # The farewell is a block of exactly these fields.
    assert stream.raw.endswith(f"\r\n\r\n{FAREWELL}\r\n\r\n".encode())


@pytest.mark.anyio
async def test_advanced_shutdown_from_outside_the_loop_reaches_every_stream() -> None:
    # A plain thread starts the drain the way uvicorn's signal handler does: outside any
    # task, with none of the event loop's context variables.
    drain = threading.Thread(target=setattr, args=(AppStatus, "should_exit", True))
    async with (
        SSETestClient(advanced.app) as client,
        client.stream("/readings") as first,
        client.stream("/readings") as second,
    ):
        await first.next()
        await second.next()
        drain.start()
        drain.join()
        for stream in (first, second):
            await stream.read_to_end(timeout=2)
            assert stream.complete
    for stream in (first, second):
        assert [event.event for event in stream.events] == ["reading", "farewell"]
