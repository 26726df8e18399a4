"""`EventSourceResponse` in-process: headers, streaming, pings, disconnect, errors, shutdown.

Every async test runs on asyncio and on trio (see `anyio_backend` in conftest.py). Waits
are on events and deadlines, never on sleeps; short ping intervals appear only where a ping
is what the test is about.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from functools import partial
from typing import Any
from unittest import mock

import anyio
import pytest
from starlette.background import BackgroundTask
from starlette.types import Message

from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import AppStatus, SendTimeoutError
from tests.asgi import ASGICall, StuckClient, asgi_call, http_scope

PING_COMMENT = re.compile(
    rb": ping - \d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?\+00:00\n\n",
)


class Probe:
    """What happened to a generator: whether it started and whether its `finally` ran."""

    def __init__(self) -> None:
        self.started = False
        self.finalized = False


async def idle_after(first: Any, probe: Probe | None = None) -> AsyncIterator[Any]:
    """Yield `first`, then wait forever (the stream stays open and idle)."""
    probe = probe or Probe()
    probe.started = True
    try:
        yield first
        await anyio.sleep_forever()
    finally:
        probe.finalized = True


async def app_ended(call: ASGICall, timeout: float = 5) -> None:
    """Wait for the app to return, before leaving `asgi_call` disconnects the client."""
    with anyio.fail_after(timeout):
        await call.done.wait()


def header_pairs(call: ASGICall) -> list[tuple[str, str]]:
    return [(k.decode().lower(), v.decode()) for k, v in call.start["headers"]]


def header(call: ASGICall, name: str) -> list[str]:
    return [v for k, v in header_pairs(call) if k == name]


async def never_receives() -> Message:
    """A client that sends no more and never leaves."""
    await anyio.sleep_forever()
    raise AssertionError  # pragma: no cover


# --- headers -----------------------------------------------------------------------------


async def first_chunk(app: Any, **kwargs: Any) -> ASGICall:
    """Run `app` until its first body chunk has been sent, then disconnect."""
    async with asgi_call(app, **kwargs) as call:
        await call.wait_chunks(1)
    return call


@pytest.mark.anyio
async def test_default_headers_are_event_stream_utf8_no_store_and_no_buffering() -> None:
    call = await first_chunk(EventSourceResponse(idle_after("x")))
    assert header(call, "content-type") == ["text/event-stream; charset=utf-8"]
    assert header(call, "cache-control") == ["no-store"]
    assert header(call, "x-accel-buffering") == ["no"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("name", "value", "sent"),
    [
        ("Cache-Control", "public, max-age=5", "public, max-age=5"),
        ("cache-control", "public, max-age=5", "public, max-age=5"),
        ("CACHE-CONTROL", "public, max-age=5", "public, max-age=5"),
        (
            "Content-Type",
            "text/event-stream; charset=latin-1",
            "text/event-stream; charset=latin-1",
        ),
        # nginx would hold events back: X-Accel-Buffering stays "no" whatever is given.
        ("x-accel-buffering", "yes", "no"),
        ("X-ACCEL-BUFFERING", "yes", "no"),
    ],
)
async def test_user_header_in_any_case_replaces_the_default_but_buffering_stays_off(
    name: str, value: str, sent: str
) -> None:
    call = await first_chunk(EventSourceResponse(idle_after("x"), headers={name: value}))
    assert header(call, name.lower()) == [sent]


@pytest.mark.anyio
async def test_user_headers_are_kept() -> None:
    response = EventSourceResponse(idle_after("x"), headers={"X-Custom": "yes", "X-Other": "1"})
    call = await first_chunk(response)
    assert header(call, "x-custom") == ["yes"]
    assert header(call, "x-other") == ["1"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("http_version", "expected"),
    [("1.0", ["keep-alive"]), ("1.1", ["keep-alive"]), ("2", [])],
)
async def test_connection_keep_alive_only_on_http1(http_version: str, expected: list[str]) -> None:
    call = await first_chunk(EventSourceResponse(idle_after("x")), http_version=http_version)
    assert header(call, "connection") == expected


@pytest.mark.anyio
@pytest.mark.parametrize("value", ["keep-alive", "close", "Upgrade"])
async def test_user_connection_header_does_not_replace_keep_alive(value: str) -> None:
    # As in the published package (its tests pin it): a stream is long-lived by nature.
    response = EventSourceResponse(idle_after("x"), headers={"Connection": value})
    assert (b"connection", b"keep-alive") in response.raw_headers
    call = await first_chunk(response, http_version="1.1")
    assert header(call, "connection") == ["keep-alive"]
    call = await first_chunk(
        EventSourceResponse(idle_after("x"), headers={"Connection": value}), http_version="2"
    )
    assert header(call, "connection") == []


@pytest.mark.anyio
async def test_connection_header_set_after_construction_is_not_duplicated() -> None:
    response = EventSourceResponse(idle_after("x"))
    response.headers["Connection"] = "close"
    call = await first_chunk(response, http_version="1.1")
    assert header(call, "connection") == ["close"]


def appending_a_header(app: Any) -> Any:
    """ASGI middleware that appends a header to the start message's own list, in place."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"].append((b"x-added", b"1"))
            await send(message)

        await app(scope, receive, send_with_header)

    return wrapped


@pytest.mark.anyio
@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_middleware_may_add_to_the_start_messages_headers_in_place(method: str) -> None:
    # Responses without headers of their own share one default list of headers until they
    # are looked at: each start message still carries a list a middleware may edit, and an
    # edit reaches neither the next response nor the defaults.
    for _ in range(2):
        response = EventSourceResponse(idle_after("x"))
        async with asgi_call(appending_a_header(response), method=method) as call:
            await call.wait_until(lambda c: bool(c.messages))
        assert header(call, "x-added") == ["1"]
    assert b"x-added" not in dict(EventSourceResponse(idle_after("x")).raw_headers)


@pytest.mark.anyio
async def test_base_http_middleware_may_set_a_header_on_the_response() -> None:
    # Starlette's (and FastAPI's @app.middleware("http")) documented pattern.
    import httpx
    from starlette.applications import Starlette
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def events() -> AsyncIterator[dict[str, str]]:
        yield {"data": "hello"}

    async def endpoint(request: Request) -> Response:
        return EventSourceResponse(events())

    async def timed(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers["X-Process-Time"] = "1"
        return response

    app = Starlette(routes=[Route("/", endpoint)])
    app.add_middleware(BaseHTTPMiddleware, dispatch=timed)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        got = await client.get("/")
    assert got.status_code == 200
    assert got.headers["x-process-time"] == "1"
    assert got.text == "data: hello\r\n\r\n"


@pytest.mark.anyio
async def test_status_code_is_honoured() -> None:
    call = await first_chunk(EventSourceResponse(idle_after("x"), status_code=202))
    assert call.start["status"] == 202


@pytest.mark.anyio
async def test_media_type_is_honoured() -> None:
    response = EventSourceResponse(idle_after("x"), media_type="text/plain")
    call = await first_chunk(response)
    assert header(call, "content-type") == ["text/plain; charset=utf-8"]


# --- items on the wire ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_items_reach_the_wire_one_by_one_in_order_then_a_final_empty_chunk() -> None:
    items: list[Any] = [
        "plain",
        {"event": "e", "data": "d"},
        ServerSentEvent("s", id="1"),
        b"data: raw\r\n\r\n",
    ]
    expected = [
        b"data: plain\r\n\r\n",
        b"event: e\r\ndata: d\r\n\r\n",
        b"id: 1\r\ndata: s\r\n\r\n",
        b"data: raw\r\n\r\n",
    ]
    release_send, release_receive = anyio.create_memory_object_stream[None](0)

    async def one_per_release() -> AsyncIterator[Any]:
        for item in items:
            await release_receive.receive()
            yield item

    async with asgi_call(EventSourceResponse(one_per_release())) as call:
        for i in range(len(items)):
            with anyio.fail_after(5):
                await release_send.send(None)
            # Item i is on the wire before item i + 1 is even produced: no buffering.
            assert (await call.wait_chunks(i + 1))[: i + 1] == expected[: i + 1]
        await call.wait_until(lambda c: c.complete)
    assert call.messages[1:] == [
        *({"type": "http.response.body", "body": b, "more_body": True} for b in expected),
        {"type": "http.response.body", "body": b"", "more_body": False},
    ]
    release_send.close()
    release_receive.close()


@pytest.mark.anyio
async def test_a_list_is_streamed() -> None:
    items: list[Any] = ["a", {"data": "b"}]
    async with asgi_call(EventSourceResponse(items)) as call:
        await call.wait_until(lambda c: c.complete)
    assert call.chunks == [b"data: a\r\n\r\n", b"data: b\r\n\r\n", b""]


@pytest.mark.anyio
async def test_a_sync_generator_is_streamed_from_a_worker_thread() -> None:
    threads: list[threading.Thread] = []

    def numbers() -> Iterator[str]:
        for i in range(3):
            threads.append(threading.current_thread())
            yield str(i)

    async with asgi_call(EventSourceResponse(numbers())) as call:
        await call.wait_until(lambda c: c.complete)
    assert call.chunks == [b"data: 0\r\n\r\n", b"data: 1\r\n\r\n", b"data: 2\r\n\r\n", b""]
    assert threads and threading.current_thread() not in threads


@pytest.mark.anyio
async def test_sep_applies_to_str_and_dict_items() -> None:
    items = ["a", "x\ny", {"event": "e", "data": "d"}]
    async with asgi_call(EventSourceResponse(iter(items), sep="\n")) as call:
        await call.wait_until(lambda c: c.complete)
    assert call.chunks == [b"data: a\n\n", b"data: x\ndata: y\n\n", b"event: e\ndata: d\n\n", b""]


# --- ping ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_default_ping_is_a_timestamp_comment_with_the_response_sep() -> None:
    async with asgi_call(EventSourceResponse(idle_after("x"), ping=0.05, sep="\n")) as call:
        chunks = await call.wait_chunks(2)
    assert chunks[0] == b"data: x\n\n"
    assert PING_COMMENT.fullmatch(chunks[1]), chunks[1]


@pytest.mark.anyio
async def test_ping_zero_sends_no_ping() -> None:
    silent = EventSourceResponse(idle_after("quiet"), ping=0)
    pinging = EventSourceResponse(idle_after("loud"), ping=0.05)
    async with asgi_call(silent) as quiet, asgi_call(pinging) as loud:
        await quiet.wait_chunks(1)
        # Several pings of the comparison stream bound the time the silent one had to ping.
        await loud.wait_chunks(4)
        assert quiet.chunks == [b"data: quiet\r\n\r\n"]


@pytest.mark.anyio
async def test_a_new_ping_interval_takes_effect_at_the_next_ping() -> None:
    response = EventSourceResponse(idle_after("x"), ping=0.05)
    slow = EventSourceResponse(idle_after("y"), ping=0.05)
    async with asgi_call(response) as call, asgi_call(slow) as other:
        await call.wait_chunks(2)  # one ping at the old interval
        response.ping_interval = 0.01
        slow.ping_interval = 30
        await call.wait_chunks(12)  # 10 pings at the new interval...
        assert len(other.chunks) <= 3  # ...while the other, set to 30 s, sent one at most


@pytest.mark.anyio
async def test_no_ping_is_sent_after_the_disconnect_while_the_generator_cleans_up() -> None:
    cleaned_up = anyio.Event()
    release = anyio.Event()

    async def slow_cleanup() -> AsyncIterator[str]:
        try:
            yield "x"
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                cleaned_up.set()
                await release.wait()

    reference = EventSourceResponse(idle_after("y"), ping=0.01)
    async with (
        asgi_call(EventSourceResponse(slow_cleanup(), ping=0.01)) as call,
        asgi_call(reference) as other,
    ):
        await call.wait_chunks(1)
        call.disconnect()
        with anyio.fail_after(5):
            await cleaned_up.wait()
        sent = len(call.messages)
        await other.wait_chunks(6)  # pings of the other stream bound the time this one had
        assert len(call.messages) == sent
        release.set()
        await app_ended(call)
    assert len(call.messages) == sent


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_no_ping_timer_outlives_a_stream_whose_send_swallows_the_cancellation() -> None:
    # A send (a server's, or middleware's) may swallow the cancellation of a write under way
    # when the stream ends: that ping must not start the next ping timer then.
    ping_waiting = anyio.Event()
    after_end: list[Message] = []
    ended = False

    async def send(message: Message) -> None:
        if ended:
            after_end.append(message)
        elif message.get("body", b"").startswith(b": ping"):
            ping_waiting.set()
            with contextlib.suppress(asyncio.CancelledError):
                await anyio.sleep_forever()  # a client that does not read

    async def ends_while_a_ping_waits() -> AsyncIterator[str]:
        yield "x"
        await ping_waiting.wait()

    call = ASGICall()
    response = EventSourceResponse(ends_while_a_ping_waits(), ping=0.01)
    await response(http_scope(), call.receive, send)
    ended = True
    reference = EventSourceResponse(idle_after("y"), ping=0.01)
    async with asgi_call(reference) as other:
        await other.wait_chunks(6)  # its pings bound the time a stray timer had
    assert after_end == []


@pytest.mark.anyio
async def test_float_ping_interval_is_honoured() -> None:
    response = EventSourceResponse(idle_after("x"), ping=0.1)
    assert response.ping_interval == 0.1
    began = anyio.current_time()
    async with asgi_call(response) as call:
        await call.wait_chunks(2, timeout=1)
        first_ping_after = anyio.current_time() - began
        # Three pings well within what an interval rounded up to 1 s would take.
        chunks = await call.wait_chunks(4, timeout=1.5)
    assert first_ping_after >= 0.095
    assert all(chunk.startswith(b": ping - ") for chunk in chunks[1:4])


@pytest.mark.anyio
async def test_ping_message_factory_is_used() -> None:
    response = EventSourceResponse(
        idle_after("x"),
        ping=0.05,
        ping_message_factory=lambda: ServerSentEvent(comment="still here"),
    )
    async with asgi_call(response) as call:
        chunks = await call.wait_chunks(3)
    assert chunks[1:3] == [b": still here\r\n\r\n"] * 2


@pytest.mark.parametrize(
    ("ping", "error"),
    [(-1, ValueError), (-0.5, ValueError), ("5", TypeError), (True, TypeError), (False, TypeError)],
)
def test_invalid_ping_is_rejected(ping: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        EventSourceResponse(iter([]), ping=ping)


@pytest.mark.parametrize(
    ("ping", "error"),
    [(-1, ValueError), ("5", TypeError), (True, TypeError), (None, TypeError)],
)
def test_ping_interval_setter_validates(ping: Any, error: type[Exception]) -> None:
    response = EventSourceResponse(iter([]), ping=3)
    with pytest.raises(error):
        response.ping_interval = ping
    assert response.ping_interval == 3


def test_ping_interval_setter_accepts_int_and_float() -> None:
    response = EventSourceResponse(iter([]))
    assert response.ping_interval == EventSourceResponse.DEFAULT_PING_INTERVAL
    response.ping_interval = 0
    assert response.ping_interval == 0
    response.ping_interval = 2.5
    assert response.ping_interval == 2.5


# --- constructor validation -------------------------------------------------------------------


@pytest.mark.parametrize("sep", ["", "\t", "\n\n", "\r\n\r\n", " "])
def test_invalid_sep_is_rejected(sep: str) -> None:
    with pytest.raises(ValueError):
        EventSourceResponse(iter([]), sep=sep)


@pytest.mark.parametrize("name", ["shutdown_grace_period", "cleanup_timeout", "send_timeout"])
def test_negative_timeouts_are_rejected(name: str) -> None:
    with pytest.raises(ValueError):
        EventSourceResponse(iter([]), **{name: -0.1})  # type: ignore[arg-type]


def test_enable_compression_is_not_supported() -> None:
    with pytest.raises(NotImplementedError):
        EventSourceResponse(iter([])).enable_compression()


# --- disconnect --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_disconnect_runs_the_generator_finally_and_the_app_returns_cleanly() -> None:
    probe = Probe()
    async with asgi_call(EventSourceResponse(idle_after("x", probe))) as call:
        await call.wait_chunks(1)
        call.disconnect()
        await app_ended(call)
    assert probe.finalized
    assert call.exception is None


@pytest.mark.anyio
async def test_an_await_in_the_generator_finally_is_cancelled_too() -> None:
    # As an anyio task group would: cancellation holds until the generator has gone, so a
    # clean-up that would wait for ever cannot keep the response open.
    cleanup_started = anyio.Event()

    async def waits_in_finally() -> AsyncIterator[str]:
        try:
            yield "x"
            await anyio.sleep_forever()
        finally:
            cleanup_started.set()
            await anyio.sleep_forever()

    async with asgi_call(EventSourceResponse(waits_in_finally())) as call:
        await call.wait_chunks(1)
        call.disconnect()
        await app_ended(call)
    assert cleanup_started.is_set()
    assert call.exception is None


@pytest.mark.anyio
async def test_a_generator_that_swallows_the_cancellation_cannot_keep_the_stream_open() -> None:
    swallowed = anyio.Event()

    async def stubborn() -> AsyncIterator[str]:
        yield "x"
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            swallowed.set()
        await anyio.sleep_forever()

    async with asgi_call(EventSourceResponse(stubborn())) as call:
        await call.wait_chunks(1)
        AppStatus.should_exit = True
        await app_ended(call)
    assert swallowed.is_set()
    assert call.complete


@pytest.mark.anyio
async def test_a_cancelled_server_task_propagates_its_cancellation_through_the_response() -> None:
    # The response swallows only the cancellations it made itself: the server's reaches the
    # server, even when the client leaves in the same moment. On asyncio the server cancels
    # its task once, natively; on trio it is a cancel scope.
    call = ASGICall()
    outer = anyio.CancelScope()
    outcome: list[str] = []

    async def server_task() -> None:
        with outer:
            try:
                await EventSourceResponse(idle_after("x"))(http_scope(), call.receive, call.send)
            except anyio.get_cancelled_exc_class():
                outcome.append("cancelled")
                raise
            outcome.append("returned")

    async with anyio.create_task_group() as tg:
        if asyncio_running():
            task = asyncio.get_running_loop().create_task(server_task())
        else:
            tg.start_soon(server_task)
        await call.wait_chunks(1)
        await anyio.wait_all_tasks_blocked()  # the stream's listener waits for the disconnect
        call.disconnect()
        if asyncio_running():
            task.cancel()
            with anyio.fail_after(5), pytest.raises(asyncio.CancelledError):
                await task
        else:
            outer.cancel()
    assert outcome == ["cancelled"]


def asyncio_running() -> bool:
    return asyncio._get_running_loop() is not None


@pytest.mark.anyio
async def test_no_body_is_sent_after_the_disconnect() -> None:
    sent_when_disconnected: list[int] = []

    async def endless() -> AsyncIterator[str]:
        while True:
            yield "tick"
            await anyio.sleep(0)

    async def on_close(message: Message) -> None:
        sent_when_disconnected.append(len(call.messages))

    response = EventSourceResponse(endless(), client_close_handler_callable=on_close)
    async with asgi_call(response) as call:
        await call.wait_chunks(3)
        call.disconnect()
        await app_ended(call)
    assert sent_when_disconnected == [len(call.messages)]
    assert not call.complete  # nor the final empty chunk: nobody is there to read it


@pytest.mark.anyio
async def test_client_close_handler_is_awaited_with_the_disconnect_message_first() -> None:
    # README: the handler is awaited before the generator is cancelled.
    received: list[Any] = []

    async def on_close(message: Message) -> None:
        await anyio.lowlevel.checkpoint()
        received.append(message)

    async def events() -> AsyncIterator[str]:
        try:
            yield "x"
            await anyio.sleep_forever()
        finally:
            received.append("generator finally")

    response = EventSourceResponse(events(), client_close_handler_callable=on_close)
    await first_chunk(response)
    assert received == [{"type": "http.disconnect"}, "generator finally"]


@pytest.mark.anyio
async def test_response_becomes_inactive_on_disconnect() -> None:
    response = EventSourceResponse(idle_after("x"))
    async with asgi_call(response) as call:
        await call.wait_chunks(1)
        assert response.active
    assert response.active is False


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_generator_exception_propagates_as_itself() -> None:
    boom = RuntimeError("boom")

    async def failing() -> AsyncIterator[str]:
        yield "x"
        raise boom

    async with asgi_call(EventSourceResponse(failing())) as call:
        await app_ended(call)
    assert call.exception is boom


@pytest.mark.anyio
@pytest.mark.parametrize(
    "item",
    [{"id": "a\nb", "data": "x"}, {"data": "x", "retry": -1}],
    ids=["id-with-newline", "negative-retry"],
)
async def test_encoding_error_raises_value_error_and_closes_the_generator(
    item: dict[str, Any],
) -> None:
    probe = Probe()
    async with asgi_call(EventSourceResponse(idle_after(item, probe))) as call:
        await app_ended(call)
    assert type(call.exception) is ValueError
    assert probe.finalized
    assert call.chunks == []


@pytest.mark.anyio
async def test_error_in_generator_cleanup_is_logged_and_the_original_error_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def events() -> AsyncIterator[dict[str, Any]]:
        try:
            yield {"data": "x", "retry": -1}
        finally:
            raise RuntimeError("cleanup failed")

    async with asgi_call(EventSourceResponse(events())) as call:
        await app_ended(call)
    assert type(call.exception) is ValueError
    assert "generator raised while being closed" in caplog.text
    assert "cleanup failed" in caplog.text


@pytest.mark.anyio
async def test_data_sender_exception_propagates_as_itself() -> None:
    boom = LookupError("sender failed")

    async def sender() -> None:
        raise boom

    response = EventSourceResponse(idle_after("x"), data_sender_callable=sender)
    async with asgi_call(response) as call:
        await app_ended(call)
    assert call.exception is boom


# --- send_timeout -------------------------------------------------------------------------------


def test_send_timeout_error_is_a_timeout_error() -> None:
    assert issubclass(SendTimeoutError, TimeoutError)


@pytest.mark.anyio
async def test_event_send_that_never_completes_raises_send_timeout_and_closes_generator() -> None:
    probe = Probe()
    client = StuckClient()
    response = EventSourceResponse(idle_after("x", probe), send_timeout=0.1)
    with anyio.fail_after(5), pytest.raises(SendTimeoutError):
        await response(http_scope(), client.receive, client.send)
    assert client.blocked[0]["body"] == b"data: x\r\n\r\n"
    assert probe.finalized


@pytest.mark.anyio
async def test_ping_send_that_never_completes_raises_send_timeout_and_closes_generator() -> None:
    probe = Probe()
    started = anyio.Event()

    async def silent() -> AsyncIterator[str]:
        probe.started = True
        started.set()
        try:
            await anyio.sleep_forever()
            yield "never"
        finally:
            probe.finalized = True

    client = StuckClient()
    response = EventSourceResponse(silent(), ping=0.05, send_timeout=0.1)
    with anyio.fail_after(5), pytest.raises(SendTimeoutError):
        await response(http_scope(), client.receive, client.send)
    assert started.is_set()
    assert [m["body"][:9] for m in client.blocked] == [b": ping - "]
    assert probe.finalized


# --- cleanup_timeout ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_generator_cleanup_is_cut_off_after_cleanup_timeout_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cleanup_started = anyio.Event()
    release = anyio.Event()

    async def stubborn() -> AsyncIterator[dict[str, Any]]:
        try:
            yield {"id": "a\nb"}
        finally:
            cleanup_started.set()
            await release.wait()  # forever, as far as the response can tell

    response = EventSourceResponse(stubborn(), cleanup_timeout=0.2)
    began = anyio.current_time()
    with caplog.at_level(logging.WARNING, logger="sse_starlette"):
        async with asgi_call(response) as call:
            try:
                with anyio.fail_after(2):
                    await call.done.wait()
                took = anyio.current_time() - began
            finally:
                release.set()  # a response that does wait for the cleanup fails, not hangs
    assert type(call.exception) is ValueError
    assert cleanup_started.is_set()
    assert 0.19 <= took < 1.0
    assert [r.levelno for r in caplog.records if r.name.startswith("sse_starlette")] == [
        logging.WARNING
    ]


# --- data_sender_callable ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_memory_channel_fed_by_data_sender_streams_all_items_then_ends() -> None:
    send_channel, receive_channel = anyio.create_memory_object_stream[dict[str, str]](2)

    async def data_producer(channel: anyio.abc.ObjectSendStream[dict[str, str]]) -> None:
        async with channel:
            for i in range(5):
                await channel.send({"data": f"Item {i}"})

    response = EventSourceResponse(
        receive_channel, data_sender_callable=partial(data_producer, send_channel)
    )
    async with asgi_call(response) as call:
        await call.wait_until(lambda c: c.complete)
    receive_channel.close()
    # Items ready together may share a message (tests/test_batching.py): the bytes count.
    assert call.body == b"".join(f"data: Item {i}\r\n\r\n".encode() for i in range(5))
    assert call.chunks[-1] == b"" and call.exception is None


@pytest.mark.anyio
async def test_the_data_sender_starts_alongside_the_response_start() -> None:
    # A transport whose writer must register before the server's first `send` returns (the
    # MCP SDK's, say) deadlocks if the data sender starts only after the start was sent.
    registered = anyio.Event()
    sent: list[Message] = []

    async def sender() -> None:
        registered.set()

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            await registered.wait()
        sent.append(message)

    response = EventSourceResponse(iter(["a"]), ping=0, data_sender_callable=sender)
    with anyio.fail_after(5):
        await response(http_scope(), never_receives, send)
    assert [m["type"] for m in sent] == ["http.response.start", *["http.response.body"] * 2]


@pytest.mark.anyio
async def test_a_data_sender_still_cleaning_up_is_waited_for_before_the_response_ends() -> None:
    order: list[str] = []

    async def sender() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                for _ in range(5):  # a cleanup that takes several loop cycles
                    await anyio.sleep(0)
            order.append("sender cleaned up")

    async def background() -> None:
        order.append("response ended")

    response = EventSourceResponse(
        idle_after("x"), data_sender_callable=sender, background=BackgroundTask(background)
    )
    async with asgi_call(response) as call:
        await call.wait_chunks(1)
        AppStatus.should_exit = True
        await app_ended(call)
    assert order == ["sender cleaned up", "response ended"]
    assert call.chunks == [b"data: x\r\n\r\n", b""]


# --- HEAD, websocket, background ----------------------------------------------------------------


@pytest.mark.anyio
async def test_head_sends_headers_and_an_empty_body_without_starting_the_generator() -> None:
    probe = Probe()
    async with asgi_call(EventSourceResponse(idle_after("x", probe)), method="HEAD") as call:
        await call.wait_until(lambda c: c.complete)
    assert [m["type"] for m in call.messages] == ["http.response.start", "http.response.body"]
    assert header(call, "content-type") == ["text/event-stream; charset=utf-8"]
    assert call.messages[1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert not probe.started


@pytest.mark.anyio
@pytest.mark.parametrize("method", ["head", "Head"])
async def test_head_in_any_case_is_answered_with_headers_only(method: str) -> None:
    probe = Probe()
    async with asgi_call(EventSourceResponse(idle_after("x", probe)), method=method) as call:
        await app_ended(call)
    assert [m["type"] for m in call.messages] == ["http.response.start", "http.response.body"]
    assert call.complete
    assert not probe.started


@pytest.mark.anyio
@pytest.mark.parametrize("stalls", ["http.response.start", "http.response.body"])
async def test_send_timeout_bounds_both_sends_of_a_head_response(stalls: str) -> None:
    ran: list[str] = []

    async def send(message: Message) -> None:
        if message["type"] == stalls:
            await anyio.sleep_forever()

    response = EventSourceResponse(
        idle_after("x"), send_timeout=0.05, background=BackgroundTask(ran.append, "bg")
    )
    with anyio.fail_after(5), pytest.raises(SendTimeoutError):
        await response({"type": "http", "method": "HEAD"}, never_receives, send)
    assert ran == []  # as for any failed response: the background task does not run


@pytest.mark.anyio
@pytest.mark.parametrize("scope", [{}, {"type": "http"}, {"method": "GET"}])
async def test_a_scope_without_type_or_method_is_an_http_get(scope: dict[str, Any]) -> None:
    # The published package's tests (and users' tests written after them) call `response({},
    # receive, send)`.
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    with anyio.fail_after(5):
        await EventSourceResponse(iter(["a"]), ping=0)(scope, never_receives, send)
    assert [m.get("body") for m in sent] == [None, b"data: a\r\n\r\n", b""]


@pytest.mark.anyio
async def test_head_still_runs_the_background_task() -> None:
    ran: list[str] = []
    response = EventSourceResponse(
        idle_after("x"), background=BackgroundTask(ran.append, "background")
    )
    async with asgi_call(response, method="HEAD") as call:
        await app_ended(call)
    assert ran == ["background"]


@pytest.mark.anyio
async def test_websocket_scope_gets_a_websocket_http_response_without_the_generator() -> None:
    probe = Probe()
    response = EventSourceResponse(idle_after("x", probe), status_code=403)
    async with asgi_call(response, scope_type="websocket") as call:
        await app_ended(call)
    assert [m["type"] for m in call.messages] == [
        "websocket.http.response.start",
        "websocket.http.response.body",
    ]
    assert call.start["status"] == 403
    assert header(call, "connection") == []  # the server closes it after the denial
    assert call.messages[1]["body"] == b""
    assert not call.messages[1]["more_body"]
    assert not probe.started
    assert call.exception is None


@pytest.mark.anyio
async def test_background_task_runs_after_the_stream_ends() -> None:
    seen: list[list[bytes]] = []
    calls: list[ASGICall] = []

    async def after() -> None:
        seen.append(calls[0].chunks)

    response = EventSourceResponse(iter(["a", "b"]), background=BackgroundTask(after))
    async with asgi_call(response) as call:
        calls.append(call)
        await app_ended(call)
    assert seen == [[b"data: a\r\n\r\n", b"data: b\r\n\r\n", b""]]


# --- the final empty chunk -------------------------------------------------------------------

FINAL_CHUNK = {"type": "http.response.body", "body": b"", "more_body": False}


@pytest.mark.anyio
async def test_a_request_message_during_the_final_send_does_not_cancel_it() -> None:
    # The listener keeps listening until the response is complete: a message other than
    # http.disconnect arriving while the final chunk is being sent changes nothing.
    final_started, listener_woke = anyio.Event(), anyio.Event()
    sent: list[Message] = []
    receives = 0

    async def receive() -> Message:
        nonlocal receives
        receives += 1
        if receives == 1:
            await final_started.wait()
            listener_woke.set()
            return {"type": "http.request", "body": b"", "more_body": False}
        await anyio.sleep_forever()
        raise AssertionError  # pragma: no cover

    async def send(message: Message) -> None:
        if message == FINAL_CHUNK:
            final_started.set()
            await listener_woke.wait()
            await anyio.lowlevel.checkpoint()
        sent.append(message)

    with anyio.fail_after(5):
        await EventSourceResponse(iter(["last"]), ping=0)(http_scope(), receive, send)
    assert sent[-1] == FINAL_CHUNK


def final_send_fails(how: str, drain: bool) -> Any:
    """A send whose final chunk raises OSError or stalls; `drain`: the first event drains."""

    async def send(message: Message) -> None:
        if message.get("body") and drain:
            AppStatus.should_exit = True
        if message == FINAL_CHUNK:
            if how == "OSError":
                raise OSError("peer gone")  # what ASGI 2.4 servers raise
            await anyio.sleep_forever()

    return send


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["OSError", "stalls"])
@pytest.mark.parametrize("ending", ["generator ends", "drain"])
async def test_a_failed_final_send_ends_the_response_quietly_and_background_runs(
    how: str, ending: str, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []
    content = iter(["a"]) if ending == "generator ends" else idle_after("a")
    response = EventSourceResponse(
        content, ping=0, send_timeout=0.05, background=BackgroundTask(ran.append, "background")
    )
    send = final_send_fails(how, drain=ending == "drain")
    with anyio.fail_after(5):
        await response(http_scope(), never_receives, send)
    assert ran == ["background"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.anyio
async def test_a_disconnect_ends_a_stalled_final_send_without_send_timeout() -> None:
    stalled = anyio.Event()

    async def send(message: Message) -> None:
        if message == FINAL_CHUNK:
            stalled.set()
            await anyio.sleep_forever()

    async def receive() -> Message:
        await stalled.wait()
        return {"type": "http.disconnect"}

    with anyio.fail_after(5):
        await EventSourceResponse(iter(["a"]), ping=0)(http_scope(), receive, send)


@pytest.mark.anyio
async def test_a_drain_before_the_start_still_sends_the_start_then_the_final_chunk() -> None:
    # Never a body without a start (a server answers that with a 500), whatever the send.
    sent: list[Message] = []

    async def send(message: Message) -> None:
        await anyio.lowlevel.checkpoint()  # a send that suspends, as a server's may
        sent.append(message)

    AppStatus.should_exit = True
    with anyio.fail_after(5):
        await EventSourceResponse(idle_after("x"), ping=0)(http_scope(), never_receives, send)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[-1] == FINAL_CHUNK


@pytest.mark.anyio
async def test_a_drain_while_the_final_chunk_is_sent_does_not_cut_it() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        if message == FINAL_CHUNK:
            AppStatus.should_exit = True  # shutdown arrives while the final chunk is on its way
            for _ in range(10):
                await anyio.lowlevel.checkpoint()
        sent.append(message)

    with anyio.fail_after(5):
        await EventSourceResponse(iter(["last"]), ping=0)(http_scope(), never_receives, send)
    assert sent[-1] == FINAL_CHUNK


@pytest.mark.anyio
async def test_an_error_of_the_final_send_is_raised_as_itself() -> None:
    async def send(message: Message) -> None:
        if message == FINAL_CHUNK:
            raise RuntimeError("the server broke")

    with anyio.fail_after(5), pytest.raises(RuntimeError, match="the server broke"):
        await EventSourceResponse(iter(["a"]), ping=0)(http_scope(), never_receives, send)


@pytest.mark.anyio
async def test_a_ping_in_flight_as_the_stream_ends_leaves_the_final_chunk_to_decide() -> None:
    # The client stopped reading: the ping's send blocks, then the generator ends, then the
    # final chunk's send times out too. The response ends quietly, background runs.
    ping_blocked = anyio.Event()
    ran: list[str] = []

    async def send(message: Message) -> None:
        if message.get("body", b"").startswith(b": ping"):
            ping_blocked.set()
        if message["type"] == "http.response.body":
            await anyio.sleep_forever()

    async def ends_once_a_ping_is_blocked() -> AsyncIterator[str]:
        await ping_blocked.wait()
        return
        yield  # pragma: no cover

    response = EventSourceResponse(
        ends_once_a_ping_is_blocked(),
        ping=0.01,
        send_timeout=0.2,
        background=BackgroundTask(ran.append, "background"),
    )
    with anyio.fail_after(5):
        await response(http_scope(), never_receives, send)
    assert ran == ["background"]


@pytest.mark.anyio
async def test_the_servers_disconnect_after_the_final_chunk_is_not_the_clients() -> None:
    # uvicorn and hypercorn answer receive() with http.disconnect once the response is
    # complete; on trio that can reach the listener before the final send has returned.
    complete = anyio.Event()
    closed: list[Message] = []

    async def send(message: Message) -> None:
        if message == FINAL_CHUNK:
            complete.set()
            await anyio.lowlevel.checkpoint()

    async def receive() -> Message:
        await complete.wait()
        return {"type": "http.disconnect"}

    async def on_close(message: Message) -> None:
        closed.append(message)

    response = EventSourceResponse(iter(["a"]), ping=0, client_close_handler_callable=on_close)
    with anyio.fail_after(5):
        await response(http_scope(), receive, send)
    assert closed == []
    assert response.active


# --- shutdown ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_should_exit_ends_an_open_stream_cleanly_and_closes_the_generator() -> None:
    probe = Probe()
    async with asgi_call(EventSourceResponse(idle_after("x", probe))) as call:
        await call.wait_chunks(1)
        AppStatus.should_exit = True
        await call.wait_until(lambda c: c.complete, timeout=2)
        await app_ended(call)
    assert call.chunks == [b"data: x\r\n\r\n", b""]
    assert probe.finalized
    assert call.exception is None


@pytest.mark.anyio
async def test_stream_started_while_should_exit_ends_at_once() -> None:
    AppStatus.should_exit = True
    async with asgi_call(EventSourceResponse(idle_after("x"))) as call:
        await call.wait_until(lambda c: c.complete, timeout=1)
    assert call.chunks[-1] == b""
    assert call.exception is None


@pytest.mark.anyio
async def test_should_exit_waits_for_a_shielded_section_of_the_generator() -> None:
    entered, release = anyio.Event(), anyio.Event()

    async def shielded() -> AsyncIterator[str]:
        yield "x"
        with anyio.CancelScope(shield=True):
            entered.set()
            await release.wait()
        await anyio.sleep_forever()

    async with (
        asgi_call(EventSourceResponse(shielded())) as call,
        asgi_call(EventSourceResponse(idle_after("x"))) as other,
    ):
        await call.wait_chunks(1)
        with anyio.fail_after(5):
            await entered.wait()
        AppStatus.should_exit = True
        # One callback ends every stream of this loop: once the other has ended, the
        # drain has reached the shielded one too.
        await other.wait_until(lambda c: c.complete)
        assert not call.complete
        release.set()
        await call.wait_until(lambda c: c.complete)
    assert call.chunks == [b"data: x\r\n\r\n", b""]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_asyncio_shield_is_cancelled_at_once_and_its_work_goes_on_alone() -> None:
    entered, release = anyio.Event(), anyio.Event()

    async def work() -> str:
        entered.set()
        await release.wait()
        return "done"

    shielded_work = asyncio.ensure_future(work())

    async def shields_with_asyncio() -> AsyncIterator[str]:
        yield "x"
        await asyncio.shield(shielded_work)

    async with asgi_call(EventSourceResponse(shields_with_asyncio())) as call:
        await call.wait_chunks(1)
        with anyio.fail_after(5):
            await entered.wait()
        AppStatus.should_exit = True
        await call.wait_until(lambda c: c.complete)
    assert not shielded_work.done()
    release.set()
    with anyio.fail_after(5):
        assert await shielded_work == "done"


@pytest.mark.anyio
async def test_shutdown_event_lets_the_generator_send_a_farewell_before_the_end() -> None:
    shutdown = anyio.Event()

    async def polite() -> AsyncIterator[Any]:
        yield "hello"
        await shutdown.wait()
        yield {"event": "bye", "data": "farewell"}

    response = EventSourceResponse(polite(), shutdown_event=shutdown, shutdown_grace_period=1)
    async with asgi_call(response) as call:
        await call.wait_chunks(1)
        AppStatus.should_exit = True
        await call.wait_until(lambda c: c.complete, timeout=0.9)
    assert call.chunks == [b"data: hello\r\n\r\n", b"event: bye\r\ndata: farewell\r\n\r\n", b""]
    assert call.exception is None


@pytest.mark.anyio
async def test_generator_ignoring_shutdown_event_is_cancelled_after_the_grace_period() -> None:
    shutdown = anyio.Event()
    probe = Probe()
    response = EventSourceResponse(
        idle_after("x", probe), shutdown_event=shutdown, shutdown_grace_period=0.2
    )
    async with asgi_call(response) as call:
        await call.wait_chunks(1)
        began = anyio.current_time()
        AppStatus.should_exit = True
        await call.wait_until(lambda c: c.complete, timeout=2)
        took = anyio.current_time() - began
    assert shutdown.is_set()
    assert 0.15 <= took < 1.0
    assert probe.finalized
    assert call.chunks == [b"data: x\r\n\r\n", b""]


@pytest.fixture
def saved_app_status() -> Iterator[None]:
    saved = AppStatus.enable_automatic_graceful_drain, AppStatus.original_handler
    AppStatus.original_handler = None
    yield
    AppStatus.enable_automatic_graceful_drain, AppStatus.original_handler = saved


@pytest.mark.usefixtures("saved_app_status")
def test_automatic_graceful_drain_can_be_disabled_and_enabled_again() -> None:
    AppStatus.disable_automatic_graceful_drain()
    assert AppStatus.enable_automatic_graceful_drain is False
    AppStatus.enable_automatic_graceful_drain_mode()
    assert AppStatus.enable_automatic_graceful_drain is True


@pytest.mark.usefixtures("saved_app_status")
def test_handle_exit_sets_should_exit_only_when_automatic_drain_is_enabled() -> None:
    AppStatus.disable_automatic_graceful_drain()
    AppStatus.handle_exit()
    assert AppStatus.should_exit is False
    AppStatus.enable_automatic_graceful_drain_mode()
    AppStatus.handle_exit()
    assert AppStatus.should_exit is True


@pytest.mark.usefixtures("saved_app_status")
def test_handle_exit_calls_the_original_handler_with_its_arguments() -> None:
    calls: list[tuple[Any, ...]] = []
    AppStatus.original_handler = lambda *args, **kwargs: calls.append((args, kwargs))
    AppStatus.handle_exit("server", 15, frame=None)
    assert calls == [(("server", 15), {"frame": None})]


def test_monkeypatching_should_exit_is_undone_cleanly() -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AppStatus, "should_exit", True)
        assert AppStatus.should_exit is True
    assert AppStatus.should_exit is False


def test_mock_patching_should_exit_is_undone_cleanly() -> None:
    with mock.patch.object(AppStatus, "should_exit", True):
        assert AppStatus.should_exit is True
    assert AppStatus.should_exit is False


def test_should_exit_ends_streams_in_several_event_loops_in_several_threads() -> None:
    backends = ["asyncio", "asyncio", "trio"]
    ready = [threading.Event() for _ in backends]
    results: list[dict[str, Any]] = [{} for _ in backends]

    async def one_stream(ready: threading.Event, result: dict[str, Any]) -> None:
        probe = Probe()
        async with asgi_call(EventSourceResponse(idle_after("x", probe))) as call:
            await call.wait_chunks(1)
            ready.set()
            await call.wait_until(lambda c: c.complete, timeout=5)
        result.update(chunks=call.chunks, exception=call.exception, finalized=probe.finalized)

    def run(backend: str, ready: threading.Event, result: dict[str, Any]) -> None:
        try:
            anyio.run(one_stream, ready, result, backend=backend)
        except BaseException as exc:
            result["error"] = exc
            ready.set()

    threads = [
        threading.Thread(target=run, args=args, daemon=True)
        for args in zip(backends, ready, results, strict=True)
    ]
    for thread in threads:
        thread.start()
    try:
        assert all(event.wait(5) for event in ready), results
        AppStatus.should_exit = True
    finally:
        AppStatus.should_exit = True  # never leave a thread waiting on a failed test
        for thread in threads:
            thread.join(5)
    assert not any(thread.is_alive() for thread in threads)
    assert results == [
        {"chunks": [b"data: x\r\n\r\n", b""], "exception": None, "finalized": True}
    ] * len(backends)


# --- lean ---------------------------------------------------------------------------------------


def task_count(backend: str) -> int:
    if backend == "asyncio":
        return len(asyncio.all_tasks())
    import trio

    root = trio.lowlevel.current_root_task()
    assert root is not None
    count, pending = 0, [root]
    while pending:
        task = pending.pop()
        count += 1
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return count


@pytest.mark.anyio
async def test_an_idle_stream_adds_at_most_two_tasks_and_leaves_none_behind(
    anyio_backend: str,
) -> None:
    # On asyncio a ping is sent by a task its timer starts; trio has no timers outside a
    # task, so there a third task sleeps until the next ping.
    most = 2 if anyio_backend == "asyncio" else 3
    baseline = task_count(anyio_backend)
    async with asgi_call(EventSourceResponse(idle_after("x"))) as call:
        await call.wait_chunks(1)
        # Counting the task that runs the app, as a server runs it.
        during = task_count(anyio_backend)
    after = task_count(anyio_backend)
    assert baseline < during <= baseline + most
    assert after == baseline


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_a_long_stream_keeps_no_finished_ping_tasks() -> None:
    def ping_tasks() -> int:
        gc.collect()
        return sum(
            1
            for obj in gc.get_objects()
            if isinstance(obj, asyncio.Task) and "_run_and_rearm" in repr(obj.get_coro())
        )

    async with asgi_call(EventSourceResponse(idle_after("x"), ping=0.001)) as call:
        await call.wait_until(lambda c: len(c.chunks) > 100)
        assert ping_tasks() <= 3


@pytest.mark.parametrize("sync", [False, True], ids=["async generator", "sync iterator"])
def test_an_event_loop_is_not_kept_alive_by_its_ended_streams(sync: bool) -> None:
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def one() -> AsyncIterator[str]:
        yield "x"

    async def one_stream() -> None:
        call = ASGICall()
        content = iter(["x"]) if sync else one()
        await EventSourceResponse(content)(http_scope(), call.receive, call.send)
        assert call.complete
        loops.append(weakref.ref(asyncio.get_running_loop()))

    asyncio.run(one_stream())
    # Polled: a sync iterator's worker thread lets go of its last job just after it ran.
    deadline = time.monotonic() + 5
    while gc.collect() is not None and loops[0]() is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert loops[0]() is None


@pytest.mark.anyio
async def test_a_send_that_changes_the_final_message_changes_no_other_response() -> None:
    received: list[Message] = []

    async def send(message: Message) -> None:
        received.append(dict(message))
        message["body"] = b"changed by a middleware"  # as a wrapper may, in place

    for _ in range(2):
        with anyio.fail_after(5):
            await EventSourceResponse(iter(["a"]), ping=0)(http_scope(), never_receives, send)
    assert [m for m in received if not m.get("more_body", True)] == [FINAL_CHUNK] * 2
