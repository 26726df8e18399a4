"""A real browser's EventSource against the hub (and the demo page), in headless Chromium.

Skipped, with a message saying how to install it, where Chromium is missing.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from sse_starlette.broker import Broker
from tests.browser import EventSourcePage, chromium
from tests.cli import listening_socket, start_cli
from tests.redis_server import RedisServer
from tests.servers import Server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser context; the test fails on an uncaught error in any of its pages."""
    context = browser.new_context()
    errors: list[Any] = []
    context.on("page", lambda page: page.on("pageerror", lambda error: errors.append(error)))
    yield context
    context.close()
    assert not errors, f"errors in the page: {errors}"


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture
def sock() -> Iterator[socket.socket]:
    sock = listening_socket()
    yield sock
    sock.close()


def publish(hub: Server, event: dict[str, Any], topic: str = "t") -> str:
    response = httpx.post(f"{hub.url}/publish", json={"topic": topic, **event}, timeout=10)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def subscribe(page: Page, hub: Server, after: str, types: tuple[str, ...] = ()) -> EventSourcePage:
    """Open the hub's page and an EventSource on topic t, resuming after event `after` (so
    nothing published from now on can be missed, however long the subscription takes)."""
    page.goto(hub.url + "/")
    return EventSourcePage(page, f"/subscribe?topic=t&lastEventId={after}", types)


def publish_into_redis(url: str, events: list[dict[str, Any]]) -> list[str]:
    """Publish straight into Redis, as a hub process would, while no hub is running."""

    async def run() -> list[str]:
        async with Broker(url) as broker:
            return [await broker.publish("t", event) for event in events]

    # Playwright's sync API owns this thread's event loop.
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, run()).result()


EXACT: list[tuple[dict[str, Any], str, str | None]] = [
    ({"data": "plain"}, "message", "plain"),
    ({"data": "héllo wörld 🌍 中文 \u2028 \u0085 \x0c tab\there"}, "message", None),
    ({"data": "line 1\nline 2\n\nline 4"}, "message", None),
    ({"data": "trailing newline\n"}, "message", None),
    ({"data": "  two leading spaces"}, "message", None),
    ({"data": ""}, "message", None),
    ({"data": "data: not a field\nid: nor this\nevent: nor this"}, "message", None),
    ({"data": "a\r\nb\rc"}, "message", "a\nb\nc"),  # CR and CRLF end lines: LF arrives
    ({"event": "custom", "data": "typed"}, "custom", None),
    ({"event": "ünïcode", "data": "x"}, "ünïcode", None),
    ({"comment": "not an event", "data": "after a comment"}, "message", None),
    ({"data": {"text": "ü", "list": [1, 2.5, True, None], "nested": {"a": "\n"}}}, "message",
     '{"text":"ü","list":[1,2.5,true,null],"nested":{"a":"\\n"}}'),
]  # fmt: skip


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_events_arrive_exactly_as_published(
    page: Page, backend: str, request: pytest.FixtureRequest
) -> None:
    args = ["--redis", request.getfixturevalue("redis_server").url] if backend == "redis" else []
    with start_cli("hub", "--port", "0", *args) as hub:
        start = publish(hub, {"data": "before"})
        source = subscribe(page, hub, start, ("custom", "ünïcode"))
        ids = [publish(hub, event) for event, _, _ in EXACT]
        seen = source.wait_events(len(EXACT))
        expected = [
            {"type": type, "data": data if data is not None else event["data"], "lastEventId": id}
            for (event, type, data), id in zip(EXACT, ids, strict=True)
        ]
        assert [{k: e[k] for k in ("type", "data", "lastEventId")} for e in seen] == expected
        assert json.loads(seen[-1]["data"]) == EXACT[-1][0]["data"]


def test_the_page_reconnects_after_retry_and_a_lost_history_is_an_explicit_reset(
    page: Page, sock: socket.socket
) -> None:
    with start_cli("hub", sock=sock) as first:
        start = publish(first, {"data": "hello"})
        source = subscribe(page, first, start)
        publish(first, {"retry": 200})
        before = publish(first, {"data": "before the restart"})
        source.wait_events(1)
        # The next hub shares the listening socket; the first one dies: the page's
        # connection drops and its reconnection reaches the new process.
        with start_cli("hub", sock=sock) as second:
            second.wait_log("Application startup complete")
            first.signal_group(signal.SIGKILL)
            source.wait_for("seen.some(e => e.type === 'reset')")
            # The page asked to resume after the last event it had ...
            second.wait_log(f"last-event-id={before}")
            after = publish(second, {"data": "after the restart"})
            seen = source.wait_events(3)
    # ... which the new in-memory hub never had: an explicit reset, not a silent gap.
    assert [e["data"] for e in seen] == [
        "before the restart",
        json.dumps({"reason": "unknown", "topics": ["t"]}, separators=(",", ":")),
        "after the restart",
    ]
    assert seen[1]["type"] == "reset"
    assert seen[-1]["lastEventId"] == after
    records = source.seen()
    kinds = [r["kind"] for r in records]
    assert kinds.count("open") == 2
    error = next(r for r in records if r["kind"] == "error")
    reopened = [r for r in records if r["kind"] == "open"][1]
    # retry: 200 ms honoured, not the browser's default of about 3 s.
    assert 150 <= reopened["t"] - error["t"] < 1500, records


def test_a_page_resumes_without_loss_across_a_restart_of_a_hub_on_redis(
    page: Page, sock: socket.socket, redis_server: RedisServer
) -> None:
    args = ("hub", "--redis", redis_server.url)
    with start_cli(*args, sock=sock) as first:
        start = publish(first, {"data": "hello"})
        source = subscribe(page, first, start)
        publish(first, {"retry": 200})
        ids = [publish(first, {"data": f"event {i}"}) for i in range(3)]
        source.wait_events(3)
        first.signal_group(signal.SIGKILL)
        source.wait_for("seen.some(e => e.kind === 'error')")
    # No hub runs now: what is published meanwhile must reach the page once one is back.
    ids += publish_into_redis(redis_server.url, [{"data": f"event {i}"} for i in range(3, 6)])
    with start_cli(*args, sock=sock) as second:
        source.wait_events(6)
        ids += [publish(second, {"data": f"event {i}"}) for i in range(6, 8)]
        seen = source.wait_events(8)
        second.wait_log(f"last-event-id={ids[2]}")
    assert [(e["data"], e["lastEventId"]) for e in seen] == [
        (f"event {i}", id) for i, id in enumerate(ids)
    ]
    assert [r["kind"] for r in source.seen()].count("open") == 2


def text_of(element: str) -> str:
    """A JS expression: the text of the page's element `element` (an id)."""
    return f"document.getElementById('{element}').textContent"


def test_demo_tabs_share_the_chat_and_the_ticker(context: BrowserContext) -> None:
    with start_cli("demo", "--port", "0", "--tick", "0.05") as demo:
        first, second = context.new_page(), context.new_page()
        for tab in (first, second):
            tab.goto(demo.url)
            tab.wait_for_function(f"() => {text_of('state')} === 'connected'")
        first.fill("#name", "ada")
        first.fill("#text", "hello from tab one ✓")
        first.click("button")
        line = json.dumps("ada: hello from tab one ✓")
        for tab in (first, second):
            tab.wait_for_function(f"() => {text_of('messages')}.includes({line})")
            tab.wait_for_function("() => document.querySelectorAll('#chart polyline').length === 1")
        assert first.input_value("#text") == ""


def test_a_demo_tab_says_so_when_a_restarted_server_cannot_replay_what_it_missed(
    page: Page, sock: socket.socket
) -> None:
    with start_cli("demo", "--tick", "0", sock=sock) as first:
        page.goto(first.url)
        page.wait_for_function(f"() => {text_of('state')} === 'connected'")
        httpx.post(f"{first.url}/chat", json={"name": "ada", "text": "hi"}, timeout=10)
        page.wait_for_function(f"() => {text_of('messages')}.includes('ada: hi')")
        # The next server shares the listening socket; the first one dies, and its memory.
        with start_cli("demo", "--tick", "0", sock=sock) as second:
            second.wait_log("Application startup complete")
            first.signal_group(signal.SIGKILL)
            page.wait_for_function(f"() => {text_of('state')} === 'reconnecting…'")
            page.wait_for_function(f"() => {text_of('state')}.startsWith('reconnected')")
            notice = "some events could not be replayed (unknown)"
            page.wait_for_function(f"() => {text_of('messages')}.includes('{notice}')")
            # It asked to resume after the chat message it had (one id for both topics).
            second.wait_log(f"cannot resume from {page.evaluate(text_of('last-id'))!r}: unknown")
