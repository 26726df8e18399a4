"""`sse_starlette.client` against a real uvicorn serving tests/apps/client_streams.py."""

from __future__ import annotations

import itertools
import json
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from sse_starlette import EventSourceResponse
from sse_starlette.client import (
    DEFAULT_MAX_STATUS_RETRIES,
    EndReason,
    Event,
    EventSource,
    EventTooLargeError,
    SSEConnectionError,
    SSEError,
    SSEReconnectError,
    SSEResponseError,
    SSEStreamEndedError,
    SyncEventSource,
    _Reconnection,
)
from tests.servers import Server, start_server


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with start_server("tests.apps.client_streams:app") as server:
        yield server


def new_key() -> str:
    return uuid.uuid4().hex


def seen_by(server: Server, key: str) -> dict[str, Any]:
    """What the server recorded for `key`: Last-Event-ID per request, disconnects."""
    return httpx.get(f"{server.url}/state", params={"key": key}, timeout=10).json()  # type: ignore[no-any-return]


async def wait_log(server: Server, text: str) -> None:
    await anyio.to_thread.run_sync(server.wait_log, text)


async def collect(source: EventSource, limit: int = 20) -> list[Event]:
    """Every event until the source ends; `limit` keeps a source that never ends from hanging."""
    events: list[Event] = []
    async for event in source:
        events.append(event)
        if len(events) == limit:
            break
    return events


EXPECTED_RESUMED = [(str(i), f"event {i}") for i in range(1, 6)]


# --- reconnection against a real server ------------------------------------------------------


@pytest.mark.server
@pytest.mark.anyio
@pytest.mark.parametrize(
    ("end", "first_cause"),
    [("abort", httpx.RemoteProtocolError), ("clean", SSEStreamEndedError)],
)
async def test_drop_mid_event_resumes_from_last_id_without_gap_or_duplicate(
    server: Server, end: str, first_cause: type[Exception], caplog: pytest.LogCaptureFixture
) -> None:
    key = new_key()
    reconnects: list[tuple[int, float, Exception]] = []
    caplog.set_level(logging.INFO, logger="sse_starlette.client")
    async with EventSource(
        f"{server.url}/resume",
        params={"key": key, "end": end},
        retry_ms=10,
        on_reconnect=lambda *args: reconnects.append(args),
    ) as source:
        received = [(event.id, event.data) for event in await collect(source)]
    # The half-sent event 3 ("partial") was discarded and event 3 came whole after resuming.
    assert received == EXPECTED_RESUMED
    assert source.last_event_id == "5"
    # First request without the header; then resumed from 2 (not 3: the partial id never
    # counted); then from 5, answered 204, which ended the iteration.
    assert seen_by(server, key)["ids"] == [None, "2", "5"]
    assert [(attempt, delay) for attempt, delay, _ in reconnects] == [(1, 0.01), (1, 0.01)]
    assert isinstance(reconnects[0][2], first_cause)
    assert isinstance(reconnects[1][2], SSEStreamEndedError)
    assert caplog.text.count("reconnecting to") == 2
    assert "Last-Event-ID '2'" in caplog.text


@pytest.mark.server
@pytest.mark.anyio
@pytest.mark.parametrize(
    ("server_retry", "client_retry", "expected"), [(250, 10, 0.25), (None, 100, 0.1)]
)
async def test_server_retry_sets_the_reconnection_delay(
    server: Server, server_retry: int | None, client_retry: int, expected: float
) -> None:
    key = new_key()
    params: dict[str, Any] = {"key": key, "count": 2, "per": 1}
    if server_retry is not None:
        params["retry"] = server_retry
    delays: list[float] = []
    async with EventSource(
        f"{server.url}/events",
        params=params,
        retry_ms=client_retry,
        on_reconnect=lambda attempt, delay, cause: delays.append(delay),
    ) as source:
        first = await anext(source)
        received_first = time.monotonic()
        second = await anext(source)  # after the response ends, the wait, and a reconnect
        gap = time.monotonic() - received_first
        assert source.retry_ms == round(expected * 1000)
    assert delays == [expected]
    assert gap >= expected
    assert (first.id, second.id) == ("1", "2")
    # The stream's retry carries over to the next connection, as the last event ID does.
    assert first.retry == second.retry == server_retry


@pytest.mark.server
@pytest.mark.anyio
@pytest.mark.parametrize(("count", "expected_ids"), [(0, [None]), (2, [None, "2"])])
async def test_204_ends_iteration_for_good(
    server: Server, count: int, expected_ids: list[str | None]
) -> None:
    key = new_key()
    async with EventSource(
        f"{server.url}/events", params={"key": key, "count": count}, retry_ms=10
    ) as source:
        received = [event.data for event in await collect(source)]
        assert await collect(source) == []  # stays ended
    assert received == [f"event {i}" for i in range(1, count + 1)]
    assert seen_by(server, key)["ids"] == expected_ids


PLAIN, HTML = "text/plain; charset=utf-8", "text/html; charset=utf-8"


@pytest.mark.server
@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "params", "message", "status_code", "content_type"),
    [
        ("/status", {"code": 404}, "answered 404 Not Found", 404, PLAIN),
        ("/status", {"code": 401}, "answered 401 Unauthorized", 401, PLAIN),
        ("/html", {}, f"answered 200 with Content-Type '{HTML}'", 200, HTML),
    ],
)
async def test_wrong_status_or_content_type_raises_naming_what_arrived(
    server: Server,
    path: str,
    params: dict[str, Any],
    message: str,
    status_code: int,
    content_type: str,
) -> None:
    key = new_key()
    with pytest.raises(SSEResponseError, match=message) as info:
        async with EventSource(
            f"{server.url}{path}", params={**params, "key": key}, retry_ms=10, max_reconnects=1
        ) as source:
            await anext(source)
    assert (info.value.status_code, info.value.content_type) == (status_code, content_type)
    assert not info.value.transient
    assert seen_by(server, key)["ids"] == [None]  # failed, not retried


@pytest.mark.server
@pytest.mark.anyio
@pytest.mark.parametrize("code", [408, 429, 500, 502, 503, 504])
async def test_by_default_any_status_but_200_fails_at_once_as_in_a_browser(
    server: Server, code: int
) -> None:
    key = new_key()
    with pytest.raises(SSEResponseError, match=f"answered {code}") as info:
        async with EventSource(
            f"{server.url}/status", params={"key": key, "code": code}, retry_ms=10
        ) as source:
            await anext(source)
    assert info.value.transient  # worth a retry, yet not retried unless asked
    assert source.end_reason is EndReason.FAILED
    assert seen_by(server, key)["ids"] == [None]


@pytest.mark.server
@pytest.mark.anyio
@pytest.mark.parametrize("code", [429, 502, 503])
async def test_a_status_of_retry_statuses_is_retried_until_max_reconnects(
    server: Server, code: int
) -> None:
    key = new_key()
    with pytest.raises(SSEReconnectError, match=f"max_reconnects=2.*{code}") as info:
        async with EventSource(
            f"{server.url}/status",
            params={"key": key, "code": code},
            retry_ms=10,
            max_reconnects=2,
            retry_statuses={code},
        ) as source:
            await anext(source)
    assert source.end_reason is EndReason.GAVE_UP
    assert info.value.attempts == 2
    cause = info.value.__cause__
    assert isinstance(cause, SSEResponseError) and cause.status_code == code
    assert info.value.cause is cause
    assert len(seen_by(server, key)["ids"]) == 3  # the first request and two reconnects


@pytest.mark.server
@pytest.mark.anyio
async def test_status_retries_are_bounded_by_default_and_each_is_a_warning(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    key = new_key()
    reconnects: list[tuple[int, Exception]] = []
    with pytest.raises(SSEReconnectError, match="at most 5") as info:
        async with EventSource(
            f"{server.url}/status",
            params={"key": key, "code": 503},
            retry_ms=1,
            retry_statuses={503},
            on_reconnect=lambda attempt, delay, cause: reconnects.append((attempt, cause)),
        ) as source:
            await anext(source)
    assert info.value.attempts == DEFAULT_MAX_STATUS_RETRIES == 5
    assert len(seen_by(server, key)["ids"]) == 6
    assert [attempt for attempt, _ in reconnects] == [1, 2, 3, 4, 5]
    assert all(isinstance(cause, SSEResponseError) for _, cause in reconnects)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 5 and "503" in warnings[0].getMessage()


@pytest.mark.server
@pytest.mark.anyio
async def test_gives_up_at_max_reconnect_time(server: Server) -> None:
    key = new_key()
    start = time.monotonic()
    with pytest.raises(SSEReconnectError, match=r"max_reconnect_time=0\.3.*503") as info:
        async with EventSource(
            f"{server.url}/status",
            params={"key": key, "code": 503},
            retry_ms=100,
            max_reconnect_time=0.3,
            retry_statuses={503},
        ) as source:
            await anext(source)
    # Each attempt waited its delay first; the one that would end past the deadline was not made.
    attempts = info.value.attempts
    assert 1 <= attempts <= 3
    assert time.monotonic() - start >= 0.1 * attempts
    assert len(seen_by(server, key)["ids"]) == attempts + 1


@pytest.mark.anyio
async def test_connection_refused_is_retried_then_gives_up() -> None:
    with socket.socket() as bound:  # bound, never listening: connecting is refused
        bound.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound.getsockname()[1]}/events"
        causes: list[Exception] = []
        with pytest.raises(SSEReconnectError) as info:
            async with EventSource(
                url,
                retry_ms=10,
                max_reconnects=1,
                on_reconnect=lambda attempt, delay, cause: causes.append(cause),
            ) as source:
                await anext(source)
    assert isinstance(info.value.cause, httpx.ConnectError)
    assert len(causes) == 1 and isinstance(causes[0], httpx.ConnectError)


@pytest.mark.server
@pytest.mark.anyio
async def test_timeout_applies_with_a_given_client_and_a_read_timeout_reconnects(
    server: Server,
) -> None:
    key = new_key()
    causes: list[Exception] = []
    # The client's own 5 s default would not fire within the test: the source's timeout does.
    async with (
        httpx.AsyncClient() as client,
        EventSource(
            f"{server.url}/events",
            params={"key": key, "count": 2, "per": 1, "pause": 1},
            client=client,
            timeout=httpx.Timeout(10.0, read=0.1),
            retry_ms=10,
            on_reconnect=lambda attempt, delay, cause: causes.append(cause),
        ) as source,
    ):
        with anyio.fail_after(5):
            assert [(await anext(source)).id, (await anext(source)).id] == ["1", "2"]
    assert [type(cause) for cause in causes] == [httpx.ReadTimeout]
    assert seen_by(server, key)["ids"] == [None, "1"]


@pytest.mark.server
@pytest.mark.anyio
async def test_without_reconnect_one_response_is_read(server: Server) -> None:
    key = new_key()
    url = f"{server.url}/resume"
    async with EventSource(url, params={"key": key, "end": "clean"}, reconnect=False) as source:
        assert [event.id for event in await collect(source)] == ["1", "2"]
        assert source.end_reason is EndReason.SERVER_CLOSED
    # Every error the client raises is an SSEError; this one is also httpx's TransportError.
    with pytest.raises(SSEConnectionError) as info:
        async with EventSource(url, params={"key": key, "end": "abort"}, reconnect=False) as s:
            assert [await anext(s), await anext(s)] == [
                Event("event 1", id="1"),
                Event("event 2", id="2"),
            ]
            await anext(s)
    assert isinstance(info.value, SSEError) and isinstance(info.value, httpx.TransportError)
    assert isinstance(info.value.__cause__, httpx.RemoteProtocolError)
    assert s.end_reason is EndReason.FAILED
    assert seen_by(server, key)["ids"] == [None, None]


@pytest.mark.server
@pytest.mark.anyio
async def test_oversize_event_raises_and_does_not_reconnect(server: Server) -> None:
    key = new_key()
    with pytest.raises(EventTooLargeError, match="max_event_size=1000"):
        async with EventSource(
            f"{server.url}/events",
            params={"key": key, "count": 1, "size": 5000},
            max_event_size=1000,
            retry_ms=10,
        ) as source:
            await anext(source)
    assert seen_by(server, key)["ids"] == [None]


@pytest.mark.server
@pytest.mark.anyio
async def test_events_before_an_oversized_one_in_the_same_read_are_delivered_first(
    server: Server,
) -> None:
    # One body chunk: a valid 900-byte event, then a 1,500-byte line, max_event_size=1000.
    key = new_key()
    received: list[Event] = []
    with pytest.raises(EventTooLargeError, match="max_event_size=1000"):
        async with EventSource(
            f"{server.url}/oversized_after_one",
            params={"key": key},
            max_event_size=1000,
            retry_ms=10,
        ) as source:
            async for event in source:
                received.append(event)
                assert source.end_reason is None  # still handing out events: live
    assert received == [Event("v" * 900, id="1")]
    assert source.last_event_id == "1"
    assert source.end_reason is EndReason.FAILED
    assert seen_by(server, key)["ids"] == [None]


@pytest.mark.server
@pytest.mark.anyio
async def test_max_event_size_counts_utf8_bytes(server: Server) -> None:
    key = new_key()
    with pytest.raises(EventTooLargeError):  # 600 characters: 1,200 bytes of "é"
        async with EventSource(
            f"{server.url}/events",
            params={"key": key, "count": 1, "size": 600, "char": "é"},
            max_event_size=1000,
        ) as source:
            await anext(source)


@pytest.mark.server
@pytest.mark.anyio
async def test_end_reason_says_why_iteration_ended(server: Server) -> None:
    async with EventSource(f"{server.url}/events", params={"key": new_key(), "count": 0}) as source:
        assert await collect(source) == []
        assert source.end_reason is EndReason.NO_CONTENT
    async with EventSource(
        f"{server.url}/events", params={"key": new_key(), "count": 1, "pause": 1}
    ) as source:
        await anext(source)
        assert source.end_reason is None  # still live
    assert source.end_reason is EndReason.CLOSED


# --- closing ---------------------------------------------------------------------------------


@pytest.mark.server
@pytest.mark.anyio
async def test_leaving_the_block_closes_the_response_and_the_server_sees_it(
    server: Server,
) -> None:
    key = new_key()
    async with httpx.AsyncClient() as client:  # stays open: only the response may be closed
        async with EventSource(
            f"{server.url}/events", params={"key": key, "count": 1, "pause": 1}, client=client
        ) as source:
            assert (await anext(source)).data == "event 1"
            # The server now holds the response open with nothing more to send.
        await wait_log(server, f"{key}: disconnect")
        assert not client.is_closed
    assert seen_by(server, key) == {"ids": [None], "disconnects": 1}
    with pytest.raises(StopAsyncIteration):
        await anext(source)


@pytest.mark.server
@pytest.mark.anyio
async def test_aclose_closes_an_owned_client(server: Server) -> None:
    key = new_key()
    source = EventSource(f"{server.url}/events", params={"key": key, "count": 1, "pause": 1})
    assert (await anext(source)).data == "event 1"
    client = source._client
    assert client is not None
    await source.aclose()
    assert client.is_closed
    await wait_log(server, f"{key}: disconnect")


@pytest.mark.server
@pytest.mark.anyio
async def test_cancelled_read_closes_the_response_and_iterating_again_resumes(
    server: Server,
) -> None:
    key = new_key()
    reconnects: list[int] = []
    source = EventSource(
        f"{server.url}/events",
        params={"key": key, "count": 2, "per": 1, "pause": 1},
        retry_ms=60_000,
        on_reconnect=lambda attempt, delay, cause: reconnects.append(attempt),
    )
    try:
        assert (await anext(source)).id == "1"
        with anyio.move_on_after(0.2) as scope:
            await anext(source)  # nothing comes: the server holds the response open
        assert scope.cancelled_caught
        await wait_log(server, f"{key}: disconnect")
        with anyio.fail_after(5):  # at once: not after the 60 s retry
            assert (await anext(source)).id == "2"
    finally:
        await source.aclose()
    assert seen_by(server, key)["ids"] == [None, "1"]
    assert reconnects == []  # no attempt counted


@pytest.mark.server
@pytest.mark.anyio
async def test_aclose_from_another_task_ends_a_pending_read(server: Server) -> None:
    key = new_key()
    received: list[str] = []
    three = anyio.Event()

    async def consume(source: EventSource) -> None:
        async for event in source:
            received.append(event.id)
            if len(received) == 3:
                three.set()

    async with (
        EventSource(f"{server.url}/events", params={"key": key, "pause": 1}) as source,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(consume, source)
        with anyio.fail_after(5):
            await three.wait()
        # The consumer is now blocked reading a response that sends nothing more.
        await source.aclose()
    assert received == ["1", "2", "3"]
    await wait_log(server, f"{key}: disconnect")


# --- the synchronous source --------------------------------------------------------------------


@pytest.mark.server
def test_sync_source_resumes_after_drop_and_stops_on_204(server: Server) -> None:
    key = new_key()
    reconnects: list[int] = []
    with SyncEventSource(
        f"{server.url}/resume",
        params={"key": key, "end": "abort"},
        retry_ms=10,
        on_reconnect=lambda attempt, delay, cause: reconnects.append(attempt),
    ) as source:
        received = [(event.id, event.data) for event in itertools.islice(source, 20)]
    assert received == EXPECTED_RESUMED
    assert reconnects == [1, 1]
    assert seen_by(server, key)["ids"] == [None, "2", "5"]


@pytest.mark.server
def test_sync_source_close_disconnects(server: Server) -> None:
    key = new_key()
    with SyncEventSource(
        f"{server.url}/events", params={"key": key, "count": 1, "pause": 1}
    ) as source:
        assert next(source).data == "event 1"
    server.wait_log(f"{key}: disconnect")
    assert seen_by(server, key) == {"ids": [None], "disconnects": 1}


@pytest.mark.server
@pytest.mark.parametrize(
    ("code", "error", "message", "requests"),
    [(404, SSEResponseError, "answered 404", 1), (502, SSEReconnectError, "max_reconnects=1", 2)],
)
def test_sync_source_errors_match_async(
    server: Server, code: int, error: type[Exception], message: str, requests: int
) -> None:
    key = new_key()
    with (
        pytest.raises(error, match=message),
        SyncEventSource(
            f"{server.url}/status",
            params={"key": key, "code": code},
            retry_ms=10,
            max_reconnects=1,
            retry_statuses={502},
        ) as source,
    ):
        next(source)
    assert len(seen_by(server, key)["ids"]) == requests


@pytest.mark.server
def test_sync_close_from_another_thread_ends_a_reconnection_wait_at_once(server: Server) -> None:
    key = new_key()
    waiting = threading.Event()
    source = SyncEventSource(
        f"{server.url}/events",
        params={"key": key, "count": 2, "per": 1},
        retry_ms=60_000,
        on_reconnect=lambda attempt, delay, cause: waiting.set(),
    )
    assert next(source).id == "1"

    def close_once_waiting() -> None:
        waiting.wait(10)
        source.close()

    closer = threading.Thread(target=close_once_waiting)
    closer.start()
    started = time.monotonic()
    with pytest.raises(StopIteration):
        next(source)  # the response ended: waits 60 s to reconnect, unless closed
    closer.join()
    assert time.monotonic() - started < 10
    assert source.end_reason is EndReason.CLOSED
    assert seen_by(server, key)["ids"] == [None]


_CTRL_C = """
import sys
from sse_starlette.client import SyncEventSource

source = SyncEventSource(
    sys.argv[1],
    params={"key": sys.argv[2], "count": 2, "per": 1},
    retry_ms=60_000,
    on_reconnect=lambda attempt, delay, cause: print("waiting", flush=True),
)
next(source)
try:
    next(source)  # the response ended: waits 60 s to reconnect
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


@pytest.mark.server
def test_ctrl_c_ends_a_sync_reconnection_wait_at_once(server: Server) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", _CTRL_C, f"{server.url}/events", new_key()],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    watchdog = threading.Timer(20, process.kill)  # a hang fails the test, never the suite
    watchdog.start()
    try:
        assert process.stdout.readline().strip() == "waiting"
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        assert process.stdout.readline().strip() == "interrupted"
        assert process.wait(10) == 0
        assert time.monotonic() - started < 10
    finally:
        watchdog.cancel()
        process.kill()


@pytest.mark.server
def test_sync_close_from_another_thread_ends_a_blocked_read(server: Server) -> None:
    key = new_key()
    source = SyncEventSource(f"{server.url}/events", params={"key": key, "count": 1, "pause": 1})
    assert next(source).id == "1"
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            next(source)  # blocks: the server holds the response open with nothing to send
        except BaseException as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    reader.join(0.3)
    assert reader.is_alive()  # blocked in the read
    source.close()
    reader.join(5)
    assert not reader.is_alive()
    assert [type(exc) for exc in outcome] == [StopIteration]
    server.wait_log(f"{key}: disconnect")


@pytest.mark.anyio
async def test_retry_seconds_still_works_with_a_deprecation_warning() -> None:
    with pytest.warns(DeprecationWarning, match="retry_ms") as warned:
        source = EventSource("http://127.0.0.1:1/", retry=0.25)
    assert warned[0].filename == __file__  # it points at the caller's line
    assert source.retry_ms == 250
    with pytest.warns(DeprecationWarning, match="retry_ms"):
        assert source.retry == 0.25
    with pytest.raises(TypeError, match="retry_ms"):
        EventSource("http://127.0.0.1:1/", retry=0.25, retry_ms=250)
    with pytest.raises(TypeError, match="milliseconds"):
        EventSource("http://127.0.0.1:1/", retry_ms=0.5)  # type: ignore[arg-type]


# --- in process, through httpx.ASGITransport ------------------------------------------------


async def numbers(request: Request) -> EventSourceResponse:
    async def events() -> AsyncIterator[dict[str, str]]:
        for n in range(3):
            yield {"data": json.dumps({"n": n}), "id": str(n)}

    return EventSourceResponse(events(), ping=0)


@pytest.mark.anyio
async def test_asgi_transport_finite_stream_and_a_given_client_left_open() -> None:
    app = Starlette(routes=[Route("/numbers", numbers)])
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        async with EventSource("/numbers", client=client, reconnect=False) as source:
            # ASGITransport delivers the body in one piece: all three events parse at once,
            # yet last_event_id follows the events as they are handed out.
            seen = []
            async for event in source:
                seen.append((event.json(), source.last_event_id))
                if len(seen) == 10:
                    break
        assert not client.is_closed
    assert seen == [({"n": 0}, "0"), ({"n": 1}, "1"), ({"n": 2}, "2")]
    # Leaving early drops the events not handed out, and the id does not count them.
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        async with EventSource("/numbers", client=client, reconnect=False) as source:
            assert (await anext(source)).id == "0"
        assert source.last_event_id == "0"


@pytest.mark.anyio
async def test_request_carries_method_body_headers_and_a_utf8_last_event_id() -> None:
    requests: list[tuple[str, dict[bytes, bytes], bytes]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        requests.append((scope["method"], dict(scope["headers"]), body))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app)) as client:
        source = EventSource(
            "http://app/",
            client=client,
            method="POST",
            json={"q": 1},
            headers={"Authorization": "Bearer t"},
            last_event_id="é-1",
        )
        async with source:
            assert await collect(source) == []
        # A Last-Event-ID among the headers is the initial id, sent once.
        async with EventSource("http://app/", client=client, headers={"Last-Event-ID": "7"}) as s:
            assert await collect(s) == []
    [(method, headers, body), (_, second_headers, _)] = requests
    assert (method, json.loads(body)) == ("POST", {"q": 1})
    assert headers[b"last-event-id"] == "é-1".encode()
    assert headers[b"accept"] == b"text/event-stream"
    # What a browser's EventSource sends.
    assert headers[b"cache-control"] == b"no-cache"
    assert headers[b"pragma"] == b"no-cache"
    assert headers[b"authorization"] == b"Bearer t"
    assert second_headers[b"last-event-id"] == b"7"


@pytest.mark.anyio
async def test_a_redirect_is_followed() -> None:
    app = Starlette(
        routes=[
            Route("/old", lambda request: RedirectResponse("/numbers")),
            Route("/numbers", numbers),
        ]
    )
    transport = httpx.ASGITransport(app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://app") as client,
        EventSource("/old", client=client, reconnect=False) as source,
    ):
        assert [event.id for event in await collect(source)] == ["0", "1", "2"]


@pytest.mark.anyio
async def test_aclose_during_the_request_closes_the_response_that_arrives_after() -> None:
    entered, release = anyio.Event(), anyio.Event()
    responses: list[httpx.Response] = []

    async def late(scope: Scope, receive: Receive, send: Send) -> None:
        entered.set()
        await release.wait()
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"data: late\n\n"})

    async def keep(response: httpx.Response) -> None:
        responses.append(response)

    transport = httpx.ASGITransport(late)
    received: list[Event] = []
    async with httpx.AsyncClient(transport=transport, event_hooks={"response": [keep]}) as client:
        source = EventSource("http://app/", client=client)

        async def consume() -> None:
            received.extend(await collect(source))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await entered.wait()  # the consumer is waiting for the response
                await source.aclose()
                release.set()
        assert received == []
        [response] = responses
        assert response.is_closed


# --- the reconnection schedule, without a server ---------------------------------------------

CAUSE = SSEStreamEndedError("the server ended the response")


def schedule(**options: Any) -> _Reconnection:
    defaults: dict[str, Any] = {
        "retry": 1.0,
        "backoff": 1.0,
        "max_delay": 60.0,
        "jitter": False,
        "max_reconnects": None,
        "max_reconnect_time": None,
    }
    return _Reconnection(**{**defaults, **options})


def test_backoff_grows_is_capped_and_restarts_once_connected() -> None:
    reconnection = schedule(retry=1.0, backoff=2.0, max_delay=5.0)
    assert [reconnection.next_delay(CAUSE, now=0) for _ in range(6)] == [1, 2, 4, 5, 5, 5]
    assert reconnection.attempt == 6
    reconnection.connected()
    assert reconnection.next_delay(CAUSE, now=0) == 1
    assert reconnection.delay(100_000) == 5  # no overflow however long it runs


def test_without_backoff_every_delay_is_retry_and_the_cap_never_cuts_retry() -> None:
    assert [schedule(retry=3.0).delay(n) for n in (1, 2, 10)] == [3, 3, 3]
    assert [schedule(retry=10.0, backoff=2.0, max_delay=5.0).delay(n) for n in (1, 4)] == [10, 10]


def test_jitter_spreads_delays_between_retry_and_the_cap() -> None:
    reconnection = schedule(retry=1.0, backoff=2.0, max_delay=6.0, jitter=True)
    for attempt, (low, high) in {1: (1, 1.5), 2: (1, 3), 3: (2, 6), 4: (3, 6), 9: (3, 6)}.items():
        delays = {reconnection.delay(attempt) for _ in range(200)}
        assert low <= min(delays) and max(delays) <= high
        assert len(delays) > 1
    bounds = schedule(retry=1.0, backoff=2.0, max_delay=6.0, jitter=True, uniform=lambda a, b: b)
    assert [bounds.delay(n) for n in (1, 2, 3, 4)] == [1.5, 3, 6, 6]


def test_max_reconnects_counts_attempts_since_the_last_connection() -> None:
    reconnection = schedule(retry=0.5, max_reconnects=2)
    assert [reconnection.next_delay(CAUSE, now=0), reconnection.next_delay(CAUSE, now=1)] == [
        0.5,
        0.5,
    ]
    with pytest.raises(SSEReconnectError, match="after 2 reconnection attempts") as info:
        reconnection.next_delay(CAUSE, now=2)
    assert info.value.cause is CAUSE and info.value.__cause__ is CAUSE
    reconnection.connected()
    assert reconnection.next_delay(CAUSE, now=3) == 0.5


def test_max_reconnect_time_gives_up_before_a_wait_that_would_pass_it() -> None:
    reconnection = schedule(retry=1.0, max_reconnect_time=2.5)
    assert reconnection.next_delay(CAUSE, now=10.0) == 1  # lost at 10; attempt at 11
    assert reconnection.next_delay(CAUSE, now=11.2) == 1  # attempt at 12.2 <= 12.5
    with pytest.raises(SSEReconnectError, match=r"max_reconnect_time=2\.5") as info:
        reconnection.next_delay(CAUSE, now=12.2)  # 13.2 would pass 12.5
    assert info.value.attempts == 2
    reconnection.connected()  # the clock restarts at the next loss
    assert reconnection.next_delay(CAUSE, now=100.0) == 1


@pytest.mark.parametrize(
    "options",
    [
        {"retry": -1},
        {"backoff": 0.5},
        {"max_delay": -1},
        {"max_reconnects": -1},
        {"max_reconnect_time": -1},
    ],
)
def test_nonsensical_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        schedule(**options)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("url", "cause"),
    [
        ("ftp://127.0.0.1/events", httpx.UnsupportedProtocol),
        ("http://[::1/events", httpx.InvalidURL),
        ("http://app/loop", httpx.TooManyRedirects),
    ],
)
async def test_an_error_that_would_recur_is_raised_not_retried(
    url: str, cause: type[Exception]
) -> None:
    # The redirect loop is an app's; the scheme and the URL fail in httpx's own transport.
    loop = Starlette(routes=[Route("/loop", lambda request: RedirectResponse("/loop"))])
    transport = httpx.ASGITransport(loop) if url.startswith("http://app") else None
    calls: list[int] = []
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(SSEConnectionError) as info:
            async with EventSource(
                url, client=client, on_reconnect=lambda *args: calls.append(1)
            ) as source:
                await anext(source)
    assert isinstance(info.value.__cause__, cause)
    assert source.end_reason is EndReason.FAILED
    assert calls == []


@pytest.mark.anyio
async def test_a_body_that_cannot_be_read_raises_an_sse_error() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream"), (b"content-encoding", b"gzip")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"not gzip at all"})

    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(SSEConnectionError) as info:
            async with EventSource("http://app/", client=client) as source:
                await anext(source)
    assert isinstance(info.value.__cause__, httpx.DecodingError)
    assert source.end_reason is EndReason.FAILED


@pytest.mark.anyio
async def test_closing_before_a_deferred_error_is_raised_is_a_close() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        body = b"data: ok\n\ndata: " + b"x" * 2000 + b"\n\n"
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    transport = httpx.ASGITransport(app)
    async with (
        httpx.AsyncClient(transport=transport) as client,
        EventSource("http://app/", client=client, max_event_size=1000) as source,
    ):
        assert (await anext(source)).data == "ok"
        assert source.end_reason is None
    assert source.end_reason is EndReason.CLOSED


def test_the_policy_bounds_retried_statuses_even_without_max_reconnects() -> None:
    refused = SSEResponseError(httpx.Response(503, request=httpx.Request("GET", "http://x/")))
    reconnection = schedule(retry=0.5)
    assert [reconnection.next_delay(refused, now=0) for _ in range(5)] == [0.5] * 5
    with pytest.raises(SSEReconnectError, match="at most 5 by default") as info:
        reconnection.next_delay(refused, now=0)
    assert info.value.attempts == 5
    # A dropped connection is not bounded that way: a browser retries it for ever.
    assert schedule(retry=0.5).next_delay(CAUSE, now=0) == 0.5
    dropped = schedule(retry=0.5)
    assert [dropped.next_delay(CAUSE, now=0) for _ in range(50)] == [0.5] * 50
