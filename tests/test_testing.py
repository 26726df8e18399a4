"""`sse_starlette.testing` and the pytest plugin: endless streams read in-process, event by event.

Every async test runs on asyncio and on trio (see `anyio_backend` in conftest.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from sse_starlette import EventSourceResponse
from sse_starlette.sse import AppStatus
from sse_starlette.testing import (
    EventStream,
    SSEClientFactory,
    SSETestClient,
    StreamEndedError,
    StreamTimeoutError,
)

ROOT = Path(__file__).resolve().parent.parent


class Probe:
    """What the app saw: whether the generator's `finally` ran, what the close handler got."""

    def __init__(self) -> None:
        self.finalized = anyio.Event()
        self.raising = anyio.Event()  # /boom's generator is about to raise
        self.close_messages: list[Message] = []
        self.lifespan: list[str] = []


def make_app(probe: Probe) -> Starlette:
    async def endless(request: Request) -> EventSourceResponse:
        async def count() -> AsyncIterator[dict[str, str]]:
            n = 0
            try:
                while True:  # never awaits anything but the send: the client must yield
                    yield {"id": str(n), "data": str(n)}
                    n += 1
            finally:
                probe.finalized.set()

        return EventSourceResponse(count())

    async def two_then_idle(request: Request) -> EventSourceResponse:
        async def events() -> AsyncIterator[dict[str, str]]:
            try:
                yield {"event": "first", "data": "one"}
                yield {"event": "second", "data": "two"}
                await anyio.sleep_forever()
            finally:
                probe.finalized.set()

        async def on_close(message: Message) -> None:
            probe.close_messages.append(message)

        return EventSourceResponse(events(), client_close_handler_callable=on_close)

    async def finite(request: Request) -> EventSourceResponse:
        count = int(request.query_params.get("n", "3"))
        return EventSourceResponse({"data": str(n)} for n in range(count))

    async def farewell(request: Request) -> EventSourceResponse:
        shutdown = anyio.Event()

        async def events() -> AsyncIterator[dict[str, str]]:
            yield {"event": "hello", "data": "hi"}
            await shutdown.wait()
            yield {"event": "bye", "data": "farewell"}

        return EventSourceResponse(events(), shutdown_event=shutdown, shutdown_grace_period=1)

    async def boom(request: Request) -> EventSourceResponse:
        async def events() -> AsyncIterator[str]:
            yield "before"
            probe.raising.set()
            raise LookupError("the generator failed")

        return EventSourceResponse(events())

    async def early_boom(request: Request) -> EventSourceResponse:
        raise LookupError("the endpoint failed")

    async def echo(request: Request) -> EventSourceResponse:
        body = await request.body()
        seen = {
            "method": request.method,
            "path": request.url.path,
            "query": dict(request.query_params),
            "accept": request.headers.get("accept"),
            "x-test": request.headers.get("x-test"),
            "body": body.decode(),
            "state": getattr(request.state, "greeting", None),
        }
        return EventSourceResponse(
            [{"event": "seen", "data": json.dumps(seen)}],
            status_code=201,
            headers={"X-Custom": "yes"},
        )

    async def publish(request: Request) -> JSONResponse:
        return JSONResponse({"got": await request.json()}, status_code=202)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, str]]:
        probe.lifespan.append("startup")
        yield {"greeting": "hello from the lifespan"}
        probe.lifespan.append("shutdown")

    return Starlette(
        routes=[
            Route("/endless", endless),
            Route("/two-then-idle", two_then_idle),
            Route("/finite", finite),
            Route("/farewell", farewell),
            Route("/boom", boom),
            Route("/early-boom", early_boom),
            Route("/echo", echo, methods=["GET", "POST"]),
            Route("/publish", publish, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def app(probe: Probe) -> Starlette:
    return make_app(probe)


# --- reading ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_take_reads_the_first_events_of_an_endless_stream(
    app: Starlette, probe: Probe
) -> None:
    with anyio.fail_after(5):
        async with SSETestClient(app) as client, client.stream("/endless") as stream:
            first = await stream.take(3)
            following = await stream.take(2)
            assert not probe.finalized.is_set()
        # Leaving the block disconnected the client; the app returned.
    assert [event.data for event in first + following] == ["0", "1", "2", "3", "4"]
    assert [event.id for event in first] == ["0", "1", "2"]
    assert probe.finalized.is_set()
    assert stream.disconnected
    assert not stream.complete


@pytest.mark.anyio
async def test_next_and_async_for_read_in_order_then_the_loop_ends_with_the_response(
    app: Starlette,
) -> None:
    async with SSETestClient(app) as client, client.stream("/finite?n=4") as stream:
        first = await stream.next()
        rest = [event.data async for event in stream]
    assert first.data == "0"
    assert rest == ["1", "2", "3"]
    assert stream.complete
    assert stream.raw == b"".join(f"data: {n}\r\n\r\n".encode() for n in range(4))


@pytest.mark.anyio
async def test_until_returns_the_first_match_and_reads_the_events_before_it(
    app: Starlette,
) -> None:
    async with SSETestClient(app) as client, client.stream("/endless") as stream:
        match = await stream.until(lambda event: int(event.data) % 5 == 4)
        after = await stream.next()
        assert [event.data for event in stream.events[:6]] == ["0", "1", "2", "3", "4", "5"]
    assert match.data == "4"
    assert after.data == "5"


@pytest.mark.anyio
async def test_read_to_end_returns_the_unread_events(app: Starlette) -> None:
    async with SSETestClient(app) as client, client.stream("/finite?n=3") as stream:
        await stream.take(1)
        assert stream.unread == stream.events[1:]
        rest = await stream.read_to_end()
    assert [event.data for event in rest] == ["1", "2"]
    assert stream.unread == []


@pytest.mark.anyio
async def test_wait_sees_what_events_do_not_show_such_as_a_ping_comment() -> None:
    async def one() -> AsyncIterator[str]:
        yield "x"
        await anyio.sleep_forever()

    response = EventSourceResponse(one(), ping=0.05)
    async with SSETestClient(response) as client, client.stream() as stream:
        await stream.wait(lambda s: b"\r\n: ping - " in s.raw)
        with pytest.raises(StreamTimeoutError, match="waiting for the condition"):
            await stream.wait(lambda s: b"never" in s.raw, timeout=0.1)
    assert [event.data for event in stream.events] == ["x"]


# --- waits end, with what arrived -------------------------------------------------------------


@pytest.mark.anyio
async def test_take_timeout_says_what_arrived_so_far(app: Starlette) -> None:
    async with SSETestClient(app) as client, client.stream("/two-then-idle") as stream:
        began = anyio.current_time()
        with pytest.raises(StreamTimeoutError) as info:
            await stream.take(3, timeout=0.2)
        took = anyio.current_time() - began
        # The events stay unread: the test can go on reading.
        assert [event.data for event in await stream.take(2)] == ["one", "two"]
    assert 0.15 <= took < 1.0
    message = str(info.value)
    assert "timed out after 0.2s waiting for 3 more events" in message
    assert "GET /two-then-idle: status 200, response open" in message
    assert "events received: 2, read: 0" in message
    assert "Event(data='one', event='first'" in message
    assert "Event(data='two', event='second'" in message
    assert "b'event: first\\r\\ndata: one\\r\\n\\r\\nevent: second" in message
    assert isinstance(info.value, TimeoutError)


@pytest.mark.anyio
async def test_until_timeout_on_an_endless_stream_shows_the_last_events(app: Starlette) -> None:
    async with SSETestClient(app, timeout=0.2) as client, client.stream("/endless") as stream:
        with pytest.raises(StreamTimeoutError) as info:
            await stream.until(lambda event: event.event == "never")
    message = str(info.value)
    assert "timed out after 0.2s waiting for an event matching the predicate" in message
    received = int(re.search(r"events received: (\d+)", message).group(1))  # type: ignore[union-attr]
    assert received > 10
    assert f"... {received - 10} earlier" in message
    assert f"[{received - 1}] Event(data='{received - 1}'" in message


@pytest.mark.anyio
async def test_async_for_over_a_stream_that_goes_quiet_ends_with_a_timeout(
    app: Starlette,
) -> None:
    seen: list[str] = []
    async with SSETestClient(app, timeout=0.2) as client, client.stream("/two-then-idle") as stream:
        with pytest.raises(StreamTimeoutError, match="waiting for 1 more event\n"):
            async for event in stream:
                seen.append(event.data)
    assert seen == ["one", "two"]


@pytest.mark.anyio
async def test_waiting_past_the_end_raises_stream_ended_with_what_arrived(app: Starlette) -> None:
    async with SSETestClient(app) as client, client.stream("/finite?n=2") as stream:
        with pytest.raises(StreamEndedError) as info:
            await stream.take(3)
    message = str(info.value)
    assert "the response ended before 3 more events" in message
    assert "status 200, response complete" in message
    assert "[1] Event(data='1'" in message


# --- disconnect -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_disconnect_makes_the_app_see_http_disconnect(app: Starlette, probe: Probe) -> None:
    async with SSETestClient(app) as client, client.stream("/two-then-idle") as stream:
        await stream.take(2)
        assert probe.close_messages == []
        await stream.disconnect()
        # The app has returned: its generator's finally and close handler ran already.
        assert probe.close_messages == [{"type": "http.disconnect"}]
        assert probe.finalized.is_set()
    assert stream.disconnected
    assert not stream.complete


@pytest.mark.anyio
async def test_disconnect_of_an_app_that_never_returns_times_out_then_cancels_it() -> None:
    cancelled = anyio.Event()

    async def deaf(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            await anyio.sleep_forever()  # never calls receive(): never learns of the disconnect
        finally:
            cancelled.set()

    with anyio.fail_after(5):
        async with SSETestClient(deaf) as client:
            with pytest.raises(StreamTimeoutError) as info:
                async with client.stream() as stream:
                    await stream.disconnect(timeout=0.1)
            assert "timed out after 0.1s waiting for the app to return after the disconnect" in str(
                info.value
            )
            assert cancelled.is_set()


# --- drain ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_stream_drain_lets_the_generator_say_goodbye_then_ends_cleanly(
    app: Starlette,
) -> None:
    async with SSETestClient(app) as client:
        async with client.stream("/farewell") as stream:
            hello = await stream.next()
            rest = await stream.drain()
            assert AppStatus.should_exit
        assert hello.event == "hello"
        assert [(event.event, event.data) for event in rest] == [("bye", "farewell")]
        assert stream.complete
        assert not stream.disconnected
        # Streams opened during the drain end at once, as on a stopping server.
        async with client.stream("/endless") as late:
            await late.read_to_end()
        assert late.complete
    # Closing the client ended the drain it started.
    assert not AppStatus.should_exit


@pytest.mark.anyio
async def test_client_drain_ends_every_open_stream(app: Starlette, probe: Probe) -> None:
    async with (
        SSETestClient(app) as client,
        client.stream("/farewell") as polite,
        client.stream("/endless") as endless,
    ):
        await polite.next()
        await endless.take(3)
        await client.drain()
        assert polite.complete and endless.complete
        assert polite.unread[-1].event == "bye"
        assert probe.finalized.is_set()
    assert not AppStatus.should_exit


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_app_error_is_raised_by_the_wait_that_finds_it(app: Starlette) -> None:
    async with SSETestClient(app) as client, client.stream("/boom") as stream:
        with pytest.raises(LookupError, match="the generator failed"):
            await stream.take(2)
        assert [event.data for event in stream.events] == ["before"]
    # Raised once: leaving the block did not raise it again.


@pytest.mark.anyio
async def test_app_error_nobody_waited_for_is_raised_when_the_block_ends(
    app: Starlette, probe: Probe
) -> None:
    async with SSETestClient(app) as client:
        with pytest.raises(LookupError, match="the generator failed"):
            async with client.stream("/boom") as stream:
                await stream.next()
                # Leaving only once the generator has raised: a disconnect that came first
                # would end the stream before the error (either order is a correct stream).
                await probe.raising.wait()


@pytest.mark.anyio
async def test_app_error_before_the_response_starts_is_raised_by_stream() -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise LookupError("the app failed")

    async with SSETestClient(broken) as client:
        with pytest.raises(LookupError, match="the app failed"):
            async with client.stream():
                raise AssertionError("the block never runs")


@pytest.mark.anyio
async def test_endpoint_error_shows_starlettes_500_then_is_raised(app: Starlette) -> None:
    async with SSETestClient(app) as client, client.stream("/early-boom") as stream:
        # Starlette's ServerErrorMiddleware answers 500, then raises the error again.
        assert stream.status_code == 500
        with pytest.raises(LookupError, match="the endpoint failed"):
            await stream.read_to_end()


@pytest.mark.anyio
async def test_an_error_in_the_block_comes_out_as_itself_and_cancels_the_app(
    app: Starlette, probe: Probe
) -> None:
    # Not wrapped in an ExceptionGroup, though the app runs in a task group.
    with pytest.raises(KeyError, match="from the test"):
        async with SSETestClient(app) as client, client.stream("/two-then-idle") as stream:
            await stream.take(1)
            raise KeyError("from the test")
    assert probe.finalized.is_set()
    assert probe.close_messages == []  # cancelled, not disconnected


@pytest.mark.anyio
async def test_stream_needs_an_open_client(app: Starlette) -> None:
    client = SSETestClient(app)
    with pytest.raises(RuntimeError, match="open the client first"):
        async with client.stream("/endless"):
            pass


# --- lifespan ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_lifespan_runs_around_the_client_and_its_state_reaches_requests(
    app: Starlette, probe: Probe
) -> None:
    async with SSETestClient(app) as client:
        assert probe.lifespan == ["startup"]
        async with client.stream("/echo") as stream:
            (event,) = await stream.read_to_end()
        assert event.json()["state"] == "hello from the lifespan"
    assert probe.lifespan == ["startup", "shutdown"]


@pytest.mark.anyio
async def test_lifespan_off_does_not_run_it(app: Starlette, probe: Probe) -> None:
    async with (
        SSETestClient(app, lifespan="off") as client,
        client.stream("/finite?n=1") as stream,
    ):
        await stream.read_to_end()
    assert probe.lifespan == []


@pytest.mark.anyio
async def test_lifespan_auto_goes_on_without_for_an_app_that_has_none() -> None:
    async def events() -> AsyncIterator[str]:
        yield "bare"

    # A bare response used as the app answers the lifespan scope with HTTP messages.
    async with SSETestClient(EventSourceResponse(events())) as client, client.stream() as stream:
        assert [event.data for event in await stream.read_to_end()] == ["bare"]


@pytest.mark.anyio
async def test_lifespan_on_requires_the_app_to_support_it() -> None:
    async def http_only(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http", "no lifespan here"

    with pytest.raises(AssertionError, match="no lifespan here"):
        async with SSETestClient(http_only, lifespan="on"):
            pass


@pytest.mark.anyio
async def test_lifespan_startup_failure_is_raised_as_itself() -> None:
    @contextlib.asynccontextmanager
    async def broken(app: Starlette) -> AsyncIterator[None]:
        raise ConnectionRefusedError("no broker")
        yield

    with pytest.raises(ConnectionRefusedError, match="no broker"):
        async with SSETestClient(Starlette(lifespan=broken)):
            pass


# --- the request and the response -------------------------------------------------------------


@pytest.mark.anyio
async def test_status_headers_and_the_request_as_the_app_saw_it(app: Starlette) -> None:
    async with (
        SSETestClient(app, headers={"X-Test": "client"}) as client,
        client.stream("/echo?a=1", params={"b": "2"}, method="POST", content="body") as stream,
    ):
        assert stream.status_code == 201
        assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert stream.headers.getlist("x-custom") == ["yes"]
        assert stream.headers["cache-control"] == "no-store"
        (event,) = await stream.read_to_end()
    assert event.event == "seen"
    assert event.json() == {
        "method": "POST",
        "path": "/echo",
        "query": {"a": "1", "b": "2"},
        "accept": "text/event-stream",
        "x-test": "client",
        "body": "body",
        "state": "hello from the lifespan",
    }


@pytest.mark.anyio
async def test_request_header_replaces_the_client_default(app: Starlette) -> None:
    async with (
        SSETestClient(app, headers={"X-Test": "client"}) as client,
        client.stream("/echo", headers={"x-test": "request"}) as stream,
    ):
        (event,) = await stream.read_to_end()
    assert event.json()["x-test"] == "request"


@pytest.mark.anyio
async def test_last_event_id_header_starts_the_event_ids(app: Starlette) -> None:
    async with (
        SSETestClient(app) as client,
        client.stream("/finite?n=1", headers={"Last-Event-ID": "41"}) as stream,
    ):
        (event,) = await stream.read_to_end()
    assert event.id == "41"  # as a browser: the id carries over until the stream sets one


@pytest.mark.anyio
async def test_request_reads_a_whole_response(app: Starlette) -> None:
    async with SSETestClient(app) as client:
        response = await client.request("POST", "/publish", json={"text": "hi"})
    assert response.status_code == 202
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"got": {"text": "hi"}}
    assert response.text == '{"got":{"text":"hi"}}'


# --- the pytest plugin --------------------------------------------------------------------------


@pytest.fixture
def lifespan_ended_after_the_test(probe: Probe) -> Iterator[None]:
    # Set up before `sse_client`, so torn down after it.
    yield
    assert probe.lifespan == ["startup", "shutdown"]


@pytest.mark.anyio
@pytest.mark.usefixtures("lifespan_ended_after_the_test")
async def test_sse_client_fixture_opens_a_client_closed_after_the_test(
    sse_client: SSEClientFactory, app: Starlette, probe: Probe
) -> None:
    client = await sse_client(app, timeout=2)
    assert client.timeout == 2
    assert probe.lifespan == ["startup"]
    async with client.stream("/endless") as stream:
        assert isinstance(stream, EventStream)
        assert len(await stream.take(2)) == 2


BOTH_BACKENDS = """
import pytest

@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param
"""

FAILING_TESTS = """
import pytest
from sse_starlette import EventSourceResponse
from sse_starlette.sse import AppStatus

async def endless():
    while True:
        yield "x"

@pytest.mark.anyio
async def test_fails_mid_stream(sse_client):
    client = await sse_client(EventSourceResponse(endless()))
    async with client.stream() as stream:
        await stream.take(1)
        await client.drain()
        assert stream.complete
        raise AssertionError("the test failed")

def test_next_test_starts_clean():
    assert AppStatus.should_exit is False
"""


@pytest.fixture(scope="module")
def plugin_run(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One pytest run, in a subprocess, of the docs' example and of a failing test."""
    directory = tmp_path_factory.mktemp("plugin")
    page = (ROOT / "docs" / "testing.md").read_text()
    snippets = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    (example,) = [snippet for snippet in snippets if "import pytest" in snippet]
    (directory / "test_example.py").write_text(example)
    (directory / "test_failing.py").write_text(FAILING_TESTS)
    (directory / "conftest.py").write_text(BOTH_BACKENDS)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    return result.stdout + result.stderr


def test_the_docs_pytest_example_passes_on_both_backends(plugin_run: str) -> None:
    for test in ("test_ticks_count_up", "test_server_shutdown_says_goodbye"):
        for backend in ("asyncio", "trio"):
            assert f"PASSED test_example.py::{test}[{backend}]" in plugin_run, plugin_run


def test_the_fixture_cleans_up_after_a_failing_test(plugin_run: str) -> None:
    for backend in ("asyncio", "trio"):
        assert f"FAILED test_failing.py::test_fails_mid_stream[{backend}]" in plugin_run
    assert "AssertionError: the test failed" in plugin_run
    assert "ExceptionGroup" not in plugin_run
    # The drain the failing test started was ended with its client.
    assert "PASSED test_failing.py::test_next_test_starts_clean" in plugin_run, plugin_run


def test_the_plugin_imports_no_test_helpers_until_a_fixture_is_used() -> None:
    code = "import sys, sse_starlette.pytest_plugin; print('sse_starlette.testing' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert result.stdout.strip() == "False"
