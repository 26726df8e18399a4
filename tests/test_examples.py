"""Each example in `examples/` does what its docstring says."""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import selectors
import subprocess
import sys
import threading
import time
from datetime import datetime

import httpx
import pytest

from sse_starlette.sse import AppStatus
from tests.asgi import ASGICall, asgi_call
from tests.servers import ROOT

basic = importlib.import_module("examples.01_basic_sse")
broadcasting = importlib.import_module("examples.02_message_broadcasting")
database = importlib.import_module("examples.03_database_streaming")
advanced = importlib.import_module("examples.04_advanced_features")


def parse_events(body: bytes) -> list[dict[str, str]]:
    """Split a stream into events: {field: value}; comments under "", `data` lines joined by LF."""
    events = []
    text = body.decode().replace("\r\n", "\n")
    for block in text.split("\n\n"):
        if not block:
            continue
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            fields[name] = f"{fields[name]}\n{value}" if name in fields else value
        events.append(fields)
    return events


def events_of(call: ASGICall, type_: str) -> list[dict[str, str]]:
    return [event for event in parse_events(call.body) if event.get("event") == type_]


# 01_basic_sse


@pytest.mark.anyio
async def test_basic_counter_streams_numbered_events(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(basic, "DELAY_SECONDS", 0)
    async with asgi_call(basic.app, path="/events") as call:
        await call.wait_until(lambda c: c.complete)
    assert call.exception is None
    assert dict(call.start["headers"])[b"content-type"].startswith(b"text/event-stream")
    numbers = [str(n) for n in range(1, basic.COUNT + 1)]
    assert parse_events(call.body) == [{"id": n, "event": "tick", "data": n} for n in numbers]


@pytest.mark.anyio
async def test_basic_sync_generator_streams_from_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(basic, "DELAY_SECONDS", 0)
    async with asgi_call(basic.app, path="/sync") as call:
        await call.wait_until(lambda c: c.complete)
    assert call.exception is None
    assert parse_events(call.body) == [
        {"id": str(n), "data": f"blocking step {n}"} for n in range(1, basic.COUNT + 1)
    ]


# 02_message_broadcasting


@pytest.mark.anyio
async def test_broadcast_reaches_every_client_and_leaving_unsubscribes() -> None:
    app, hub = broadcasting.app, broadcasting.broadcast
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://test") as http,
        asgi_call(app, path="/events") as first,
        asgi_call(app, path="/events") as second,
    ):
        # The first event is sent once the client is subscribed.
        await first.wait_chunks(1)
        await second.wait_chunks(1)
        assert parse_events(first.body) == [{"": "subscribed", "retry": "2000"}]
        assert hub.subscriber_count == 2

        response = await http.post("/messages", json={"text": "hello, both"})
        assert response.status_code == 200
        assert response.json() == {"delivered": 2}

        for call in (first, second):
            await call.wait_until(lambda c: bool(events_of(c, "message")))
        first_message, second_message = events_of(first, "message"), events_of(second, "message")
        assert first_message == second_message
        (message,) = first_message
        assert json.loads(message["data"]) == {"text": "hello, both"}
        assert message["id"].isdigit()
    assert first.exception is None and second.exception is None
    assert hub.subscriber_count == 0


@pytest.mark.anyio
async def test_broadcast_skips_a_client_whose_queue_is_full() -> None:
    hub = broadcasting.Broadcast(queue_size=1)
    with hub.subscribe() as queue:
        assert hub.publish(broadcasting.Message(text="kept")) == 1
        assert hub.publish(broadcasting.Message(text="dropped")) == 0
        (event,) = parse_events(queue.receive_nowait())
        assert json.loads(event["data"]) == {"text": "kept"}
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
    app = database.app
    async with app.router.lifespan_context(app), asgi_call(app, path="/users") as call:
        await call.wait_until(lambda c: c.complete)
    assert call.exception is None
    events = parse_events(call.body)
    assert [event["id"] for event in events] == ["1", "2", "3", "4", "5"]
    assert {event["event"] for event in events} == {"user"}
    assert [json.loads(event["data"]) for event in events] == [
        {"id": n, "name": name, "email": email}
        for n, (name, email) in enumerate(database.SAMPLE_USERS, start=1)
    ]


@pytest.mark.anyio
@asyncio_only
@pytest.mark.parametrize(
    ("header", "ids"), [("2", ["3", "4", "5"]), ("junk", ["1", "2", "3", "4", "5"])]
)
async def test_database_resumes_after_last_event_id(header: str, ids: list[str]) -> None:
    app = database.app
    headers = [(b"last-event-id", header.encode())]
    async with (
        app.router.lifespan_context(app),
        asgi_call(app, path="/users", headers=headers) as call,
    ):
        await call.wait_until(lambda c: c.complete)
    assert call.exception is None
    assert [event["id"] for event in parse_events(call.body)] == ids


# 04_advanced_features


@pytest.mark.anyio
async def test_advanced_readings_are_pydantic_json_with_ids() -> None:
    async with asgi_call(advanced.app, path="/readings") as call:
        await call.wait_chunks(1)
    (event,) = parse_events(call.body)
    assert event["event"] == "reading"
    assert event["id"] == "1"
    reading = advanced.Reading.model_validate_json(event["data"])
    assert reading == advanced.read_sensor(1).model_copy(update={"taken_at": reading.taken_at})


@pytest.mark.anyio
async def test_advanced_custom_ping_and_disconnect_log(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(advanced, "PING_SECONDS", 0.05)
    monkeypatch.setattr(advanced, "READING_SECONDS", 60)
    caplog.set_level(logging.INFO, logger=advanced.logger.name)
    async with asgi_call(advanced.app, path="/readings") as call:
        await call.wait_until(lambda c: bool(events_of(c, "ping")))
    ping = events_of(call, "ping")[0]
    assert set(ping) == {"event", "data"}
    assert datetime.fromisoformat(ping["data"]).tzinfo is not None
    assert call.exception is None
    assert any("left /readings" in record.getMessage() for record in caplog.records)


@pytest.mark.anyio
async def test_advanced_memory_channel_delivers_every_item() -> None:
    async with asgi_call(advanced.app, path="/channel") as call:
        await call.wait_until(lambda c: c.complete)
    assert call.exception is None
    readings = [advanced.Reading.model_validate_json(e["data"]) for e in parse_events(call.body)]
    assert [r.celsius for r in readings] == [
        advanced.read_sensor(n).celsius for n in range(1, advanced.CHANNEL_ITEMS + 1)
    ]
    assert {r.sensor for r in readings} == {"channel"}


@pytest.mark.anyio
async def test_advanced_shutdown_sends_a_farewell_then_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(advanced, "READING_SECONDS", 60)
    async with asgi_call(advanced.app, path="/readings") as call:
        await call.wait_chunks(1)
        AppStatus.should_exit = True
        await call.wait_until(lambda c: c.complete)
    assert call.exception is None
    events = parse_events(call.body)
    assert [event["event"] for event in events] == ["reading", "farewell"]
    assert events[-1] == {
        "event": "farewell",
        "data": "server is shutting down",
        "retry": str(advanced.FAREWELL_RETRY_MS),
    }


@pytest.mark.anyio
async def test_advanced_shutdown_from_outside_the_loop_reaches_every_stream() -> None:
    # A plain thread starts the drain the way uvicorn's signal handler does: outside any
    # task, with none of the event loop's context variables.
    drain = threading.Thread(target=setattr, args=(AppStatus, "should_exit", True))
    async with (
        asgi_call(advanced.app, path="/readings") as first,
        asgi_call(advanced.app, path="/readings") as second,
    ):
        await first.wait_chunks(1)
        await second.wait_chunks(1)
        drain.start()
        drain.join()
        for call in (first, second):
            await call.wait_until(lambda c: c.complete, timeout=2)
    for call in (first, second):
        assert [event["event"] for event in parse_events(call.body)] == ["reading", "farewell"]
