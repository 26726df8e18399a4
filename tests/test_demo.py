"""The demo: one command prints an address that serves a page and a shared event stream."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx
import pytest
from starlette.applications import Starlette

from sse_starlette.broker import Broker
from sse_starlette.demo import create_demo
from tests.asgi import asgi_call
from tests.cli import start_cli
from tests.redis_server import RedisServer


class Stream:
    """An open `GET /events`, read on demand."""

    def __init__(self, response: httpx.Response) -> None:
        self.chunks = response.iter_text()
        self.text = ""

    def read_until(self, pattern: str) -> re.Match[str]:
        """Read until `pattern` (a regex) matches the text so far, and return the match."""
        deadline = time.monotonic() + 10
        while (match := re.search(pattern, self.text)) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not in {self.text[-2000:]!r}")
            self.text += next(self.chunks)  # the read timeout bounds each read
        return match


@contextlib.contextmanager
def events(url: str, last_event_id: str | None = None) -> Iterator[Stream]:
    headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
    with httpx.stream("GET", f"{url}/events", headers=headers, timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        yield Stream(response)


def chat(url: str, name: str, text: str) -> str:
    response = httpx.post(f"{url}/chat", json={"name": name, "text": text}, timeout=10)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def chat_pattern(via: str, text: str) -> str:
    data = json.dumps(
        {"name": "ada", "text": text, "via": via}, separators=(",", ":"), ensure_ascii=False
    )
    return r"id: (\S+)\r\nevent: chat\r\ndata: " + re.escape(data) + "\r\n\r\n"


@pytest.mark.server
def test_demo_prints_its_address_and_serves_the_page_and_one_stream_for_every_tab() -> None:
    with start_cli("demo", "--port", "0", "--tick", "0.05") as demo:
        assert f"open {demo.url} in two browser tabs" in demo.log()
        page = httpx.get(demo.url, timeout=10)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert 'new EventSource("/events")' in page.text
        with events(demo.url) as first, events(demo.url) as second:
            for stream in (first, second):
                stream.read_until("event: tick")  # subscribed: the ticker reaches it
                assert stream.text.startswith("retry: 1000\r\n\r\n")
            chat(demo.url, "ada", "hello ✓")
            label = demo.url.removeprefix("http://")
            ids = {
                stream.read_until(chat_pattern(label, "hello ✓"))[1] for stream in (first, second)
            }
            assert len(ids) == 1  # the same event, the same id


@pytest.mark.server
def test_demo_processes_on_one_redis_share_the_chat_and_both_tickers(
    redis_server: RedisServer,
) -> None:
    args = ("demo", "--port", "0", "--tick", "0.05", "--redis", redis_server.url)
    with start_cli(*args) as first, start_cli(*args) as second:
        assert "run it again with another --port" in first.log()
        with events(second.url) as stream:
            for demo in (first, second):
                label = demo.url.removeprefix("http://")
                stream.read_until(f'"server":"{re.escape(label)}"')
            chat(first.url, "ada", "from the first process")
            stream.read_until(
                chat_pattern(first.url.removeprefix("http://"), "from the first process")
            )


@pytest.mark.server
def test_a_demo_on_redis_restarted_loses_nothing(redis_server: RedisServer) -> None:
    args = ("demo", "--port", "0", "--tick", "0", "--redis", redis_server.url)
    with start_cli(*args) as demo:
        label = demo.url.removeprefix("http://")
        with events(demo.url) as stream:
            chat(demo.url, "ada", "before")
            seen = stream.read_until(chat_pattern(label, "before"))[1]
    with start_cli(*args) as restarted:
        chat(restarted.url, "ada", "while away")
        with events(restarted.url, last_event_id=seen) as stream:
            stream.read_until(chat_pattern(restarted.url.removeprefix("http://"), "while away"))
            assert "before" not in stream.text
            assert "event: reset" not in stream.text


# --- in-process ----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def demo_app() -> AsyncIterator[tuple[httpx.AsyncClient, Broker, Starlette]]:
    async with Broker() as broker:
        app = create_demo(broker, label="test", tick=0)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
            yield client, broker, app


async def subscribed(broker: Broker, count: int) -> None:
    with anyio.fail_after(5):
        while broker.metrics.subscribers < count:
            await anyio.sleep(0.005)  # polling a counter, with a deadline


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"name": "ada"}',
        b'{"name": 1, "text": "x"}',
        b'{"name": "a", "text": " "}',
        b'{"name": "a", "text": "' + b"x" * 5000 + b'"}',
        b'{"name": "a", "text": "\\ud800"}',
    ],
)
async def test_chat_refuses_what_is_not_a_message(body: bytes) -> None:
    async with demo_app() as (client, broker, _):
        response = await client.post("/chat", content=body)
        assert response.status_code == 400
        assert response.json()["error"]
        assert broker.metrics.published == 0


@pytest.mark.anyio
async def test_a_tab_that_reconnects_gets_what_it_missed() -> None:
    async with demo_app() as (client, broker, app):
        async with asgi_call(app, path="/events") as first:
            await subscribed(broker, 1)
            await client.post("/chat", json={"name": "ada", "text": "one"})
            await first.wait_until(lambda c: b'"one"' in c.body)
            last_event_id = re.findall(r"id: (\S+)", first.body.decode())[-1]
        await client.post("/chat", json={"name": "ada", "text": "two"})
        headers = [(b"last-event-id", last_event_id.encode())]
        async with asgi_call(app, path="/events", headers=headers) as second:
            await second.wait_until(lambda c: b'"two"' in c.body)
            assert b'"one"' not in second.body
            assert second.body.startswith(b"retry: 1000\r\n\r\nid: ")
