"""A real browser's EventSource against the Mercure hub (and the demo page), in headless Chromium.

The page is the hub's own `/` (same origin as its `/.well-known/mercure`). Skipped, with a
message saying how to install it, where Chromium is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
import jwt
import pytest

from sse_starlette.broker import Broker
from tests.browser import EventSourcePage, chromium
from tests.cli import listening_socket, start_cli
from tests.redis_server import RedisServer
from tests.servers import Server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Response

pytestmark = pytest.mark.server

PATH = "/.well-known/mercure"
SECRET = "the browser tests' HS256 secret, 32 bytes or more"
BOOKS = "https://example.com/books/{id}"


def token(**mercure: Any) -> str:
    """A JWS the hub accepts (signed with its `--jwt-key`), carrying `{"mercure": mercure}`."""
    return jwt.encode({"mercure": mercure}, SECRET, algorithm="HS256")


PUBLISHER = token(publish=["*"])


def start_hub(
    *args: str, sock: socket.socket | None = None
) -> contextlib.AbstractContextManager[Server]:
    """`python -m sse_starlette hub` with the tests' key: on `sock`, or on a port of its own."""
    port = ("--port", "0") if sock is None else ()
    return start_cli("hub", *port, "--jwt-key", SECRET, *args, sock=sock)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def new_context(browser: Browser) -> Iterator[Callable[[], BrowserContext]]:
    """Makes fresh browser contexts (each its own cookies); the test fails on an uncaught error
    in any of their pages."""
    contexts: list[BrowserContext] = []
    errors: list[Any] = []

    def new() -> BrowserContext:
        context = browser.new_context()
        context.on("page", lambda page: page.on("pageerror", lambda error: errors.append(error)))
        contexts.append(context)
        return context

    yield new
    for context in contexts:
        context.close()
    assert not errors, f"errors in the page: {errors}"


@pytest.fixture
def context(new_context: Callable[[], BrowserContext]) -> BrowserContext:
    return new_context()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture
def sock() -> Iterator[socket.socket]:
    sock = listening_socket()
    yield sock
    sock.close()


def publish(hub: Server, topics: str | list[str] = "t", **fields: str) -> str:
    """POST an update (form-encoded, with a publisher's token); the id the hub answers."""
    response = httpx.post(
        hub.url + PATH,
        data={"topic": topics, **fields},
        headers={"Authorization": f"Bearer {PUBLISHER}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    assert response.text, "no id"
    return response.text


def subscribe(
    page: Page,
    hub: Server,
    selectors: Sequence[str] = ("t",),
    after: str | None = None,
    types: tuple[str, ...] = (),
    **query: str,
) -> EventSourcePage:
    """Open the hub's page and an EventSource on `selectors`, resuming after update `after`
    (`lastEventID`): nothing published after it can be missed, however long the subscription
    takes to start. `query`: more query parameters (`authorization`)."""
    page.goto(hub.url + "/")
    params = [("topic", selector) for selector in selectors]
    if after is not None:
        params.append(("lastEventID", after))
    params += query.items()
    return EventSourcePage(page, f"{PATH}?{urlencode(params)}", types)


def stream_headers(page: Page) -> list[dict[str, str]]:
    """The headers of each response of the hub's subscription endpoint the page gets, as they
    arrive (a list the page's event handler fills)."""
    headers: list[dict[str, str]] = []

    def record(response: Response) -> None:
        if PATH in response.url and response.request.method == "GET":
            headers.append(response.headers)

    page.on("response", record)
    return headers


def publish_into_redis(url: str, updates: list[tuple[str, str]]) -> None:
    """Publish `(data, id)` updates to topic t straight into Redis, as a hub process would,
    while no hub is running."""

    async def run() -> list[str]:
        async with Broker(url) as broker:
            return [await broker.publish(["t"], {"data": d, "id": id}) for d, id in updates]

    # Playwright's sync API owns this thread's event loop.
    with ThreadPoolExecutor(1) as thread:
        ids = thread.submit(asyncio.run, run()).result()
    assert ids == [id for _, id in updates]


def fields(seen: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(e["type"], e["data"], e["lastEventId"]) for e in seen]


# Mercure's update fields (data, type, id, retry), and what a browser's EventSource then gets:
# its type, and its data if not the data sent.
EXACT: list[tuple[dict[str, str], str, str | None]] = [
    ({"data": "plain"}, "message", "plain"),
    ({"data": "héllo wörld 🌍 中文 \u2028 \u0085 \x0c tab\there"}, "message", None),
    ({"data": "line 1\nline 2\n\nline 4"}, "message", None),
    ({"data": "trailing newline\n"}, "message", None),
    ({"data": "  two leading spaces"}, "message", None),
    ({"data": ""}, "message", None),
    ({"data": "data: not a field\nid: nor this\nevent: nor this\nretry: 1"}, "message", None),
    ({"data": "a\r\nb\rc"}, "message", "a\nb\nc"),  # CR and CRLF end lines: LF arrives
    ({"type": "custom", "data": "typed"}, "custom", None),
    ({"type": "ünïcode", "data": "x"}, "ünïcode", None),
    ({"id": "https://example.com/books/1#révision-2", "data": "a publisher's id"}, "message", None),
    ({"data": "with a retry", "retry": "60000"}, "message", None),
    ({"data": json.dumps({"text": "ü", "list": [1, 2.5, True, None], "nested": {"a": "\n"}})},
     "message", None),  # JSON is text like any other
]  # fmt: skip


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_updates_arrive_exactly_as_published(
    page: Page, backend: str, request: pytest.FixtureRequest
) -> None:
    args = ["--redis", request.getfixturevalue("redis_server").url] if backend == "redis" else []
    with start_hub(*args) as hub:
        start = publish(hub, data="before")
        assert start.startswith("urn:uuid:"), start
        source = subscribe(page, hub, after=start, types=("custom", "ünïcode"))
        ids = [publish(hub, **update) for update, _, _ in EXACT]
        seen = source.wait_events(len(EXACT))
    expected = [
        (type, data if data is not None else update["data"], id)
        for (update, type, data), id in zip(EXACT, ids, strict=True)
    ]
    assert fields(seen) == expected
    # The id the POST answered is the browser's lastEventId: the hub's, or the publisher's.
    assert len(set(ids)) == len(ids)
    chosen = next(i for i, (update, _, _) in enumerate(EXACT) if "id" in update)
    assert ids[chosen] == EXACT[chosen][0]["id"]
    assert all(id.startswith("urn:uuid:") for i, id in enumerate(ids) if i != chosen)
    assert json.loads(seen[-1]["data"])["nested"] == {"a": "\n"}


def test_an_update_without_data_reaches_the_page(page: Page) -> None:
    """An update published without `data` (a bare "this topic changed" notice, or only a
    `retry`) is still an update the hub MUST dispatch to its subscribers (draft-07
    §Publication: `data` is optional)."""
    with start_hub() as hub:
        start = publish(hub, data="before")
        source = subscribe(page, hub, after=start)
        bare = publish(hub)
        retry = publish(hub, retry="60000")
        end = publish(hub, data="end")
        source.wait_for("seen.some(e => e.data === 'end')")
        seen = source.events()
    # Here the page gets only "end": the other two updates set its lastEventId, silently.
    assert fields(seen) == [("message", "", bare), ("message", "", retry), ("message", "end", end)]


def test_selectors_exact_any_and_a_uri_template_each_get_exactly_their_updates(
    context: BrowserContext,
) -> None:
    book1, book2 = "https://example.com/books/1", "https://example.com/books/2"
    reviews, ada = "https://example.com/books/1/reviews", "https://example.com/authors/ada"
    subscriptions = {
        "exact": [book1],
        "any": ["*"],
        "template": [BOOKS],
        "two": [book1, ada],
    }
    updates = [
        ([book1], "book 1"),
        ([book2], "book 2"),
        ([reviews], "reviews of book 1"),  # {id} takes no "/"
        ([ada], "ada"),
        (["urn:other"], "other"),
        ([book1, ada], "book 1 and ada"),  # two topics: once, even to "two" that has both
        ([ada, book2], "ada and book 2"),
        ([book1], "end"),
    ]
    wanted = {
        "exact": ["book 1", "book 1 and ada", "end"],
        "any": [data for _, data in updates],
        "template": ["book 1", "book 2", "book 1 and ada", "ada and book 2", "end"],
        "two": ["book 1", "ada", "book 1 and ada", "ada and book 2", "end"],
    }
    with start_hub() as hub:
        start = publish(hub, ["urn:start"], data="start")
        # Half the updates are published before the pages subscribe (they come from the
        # history), half after (live).
        ids = {data: publish(hub, topics, data=data) for topics, data in updates[:4]}
        sources = {
            name: subscribe(context.new_page(), hub, selectors, after=start)
            for name, selectors in subscriptions.items()
        }
        ids |= {data: publish(hub, topics, data=data) for topics, data in updates[4:]}
        # "end" comes to every page, last: all that was due came before it.
        seen = {name: source.wait_events(len(wanted[name])) for name, source in sources.items()}
    for name, source in sources.items():
        assert fields(seen[name]) == [("message", data, ids[data]) for data in wanted[name]], name
        assert [r["kind"] for r in source.seen()].count("open") == 1


def cookie_page(context: BrowserContext, allowed: list[str]) -> Page:
    """A page of `context`, which gets a `mercureAuthorization` cookie for the hub's host and
    path whose token allows subscribing to `allowed` (selectors)."""
    context.add_cookies([
        {"name": "mercureAuthorization", "value": token(subscribe=allowed),
         "domain": "127.0.0.1", "path": PATH, "httpOnly": True, "sameSite": "Strict"},
    ])  # fmt: skip
    return context.new_page()


def test_private_updates_reach_only_pages_whose_token_allows_them(
    new_context: Callable[[], BrowserContext],
) -> None:
    book1, book2 = "https://example.com/books/1", "https://example.com/books/2"
    secret = "https://example.com/secret/1"
    updates: list[tuple[list[str], str, bool]] = [
        ([book1], "public", False),
        ([book1], "private book", True),
        ([secret], "private secret", True),  # no token here allows it
        ([secret, book2], "private, one topic allowed", True),
        ([book2], "end", False),
    ]
    allowed = ["public", "private book", "private, one topic allowed", "end"]
    public = ["public", "end"]
    wanted = {"anonymous": public, "query token": allowed, "cookie": allowed,
              "cookie for other topics": public}  # fmt: skip

    def send(hub: Server, updates: list[tuple[list[str], str, bool]]) -> dict[str, str]:
        private = {"private": "on"}
        return {data: publish(hub, topics, data=data, **(private if p else {}))
                for topics, data, p in updates}  # fmt: skip

    with start_hub() as hub:
        start = publish(hub, ["urn:start"], data="start")
        # The first updates come to the pages from the history, the others live.
        ids = send(hub, updates[:2])
        anonymous = new_context()
        sources = {
            "anonymous": subscribe(anonymous.new_page(), hub, ["*"], start),
            # Every subscriber selects all topics: only its token limits what it gets.
            "query token": subscribe(
                anonymous.new_page(), hub, ["*"], start, authorization=token(subscribe=[BOOKS])
            ),
            "cookie": subscribe(cookie_page(new_context(), [BOOKS]), hub, ["*"], start),
            "cookie for other topics": subscribe(
                cookie_page(new_context(), ["https://example.com/authors/{name}"]),
                hub,
                ["*"],
                start,
            ),
        }
        ids |= send(hub, updates[2:])
        seen = {name: source.wait_events(len(wanted[name])) for name, source in sources.items()}
    for name in sources:
        expected = [("message", data, ids[data]) for data in wanted[name]]
        assert fields(seen[name]) == expected, name


def test_the_page_reconnects_after_retry_and_gets_live_updates_from_a_hub_that_lost_its_history(
    page: Page, sock: socket.socket
) -> None:
    headers = stream_headers(page)
    with start_hub(sock=sock) as first:
        start = publish(first, data="start")
        source = subscribe(page, first, after=start)
        publish(first, data="hello", retry="200")
        before = publish(first, data="before the restart")
        source.wait_events(2)
        # The next hub shares the listening socket; the first one dies: the page's
        # connection drops and its reconnection reaches the new process.
        with start_hub(sock=sock) as second:
            second.wait_log("Application startup complete")
            first.signal_group(signal.SIGKILL)
            source.wait_for("seen.filter(e => e.kind === 'open').length === 2")
            # The page asked to resume after the last update it had ...
            second.wait_log(f"last-event-id={before!r}")
            after = publish(second, data="after the restart")
            seen = source.wait_events(3)
            still = publish(second, data="still connected")
            seen = source.wait_events(4)
            records = source.seen()  # now: the hub's end is another drop
    # ... which the new in-memory hub never had: live updates, no reset event (Mercure has
    # none), and the response said so (Last-Event-ID: earliest, draft-07 §Reconciliation).
    assert [(e["type"], e["data"]) for e in seen] == [
        ("message", "hello"),
        ("message", "before the restart"),
        ("message", "after the restart"),
        ("message", "still connected"),
    ]
    assert [e["lastEventId"] for e in seen[2:]] == [after, still]
    assert [h.get("last-event-id") for h in headers] == [start, "earliest"]
    # One drop, one reconnection, no error loop.
    assert [r["kind"] for r in records] == ["open", "event", "event", "error", "open", "event",
                                            "event"]  # fmt: skip
    error, reopened = records[3], records[4]
    assert error["state"] == 0  # CONNECTING: the browser retries by itself
    # retry: 200 ms honoured, not the browser's default of about 3 s.
    assert 150 <= reopened["t"] - error["t"] < 1500, records


def test_a_page_resumes_without_loss_across_a_restart_of_a_hub_on_redis(
    page: Page, sock: socket.socket, redis_server: RedisServer
) -> None:
    headers = stream_headers(page)
    args = ("--redis", redis_server.url)
    with start_hub(*args, sock=sock) as first:
        start = publish(first, data="start")
        source = subscribe(page, first, after=start)
        ids = [publish(first, data="event 0", retry="200")]
        ids += [publish(first, data=f"event {i}") for i in range(1, 3)]
        source.wait_events(3)
        first.signal_group(signal.SIGKILL)
        source.wait_for("seen.some(e => e.kind === 'error')")
    # No hub runs now: what is published meanwhile must reach the page once one is back.
    published = [(f"event {i}", f"urn:example:while-down:{i}") for i in range(3, 6)]
    publish_into_redis(redis_server.url, published)
    ids += [id for _, id in published]
    with start_hub(*args, sock=sock) as second:
        source.wait_events(6)
        ids += [publish(second, data=f"event {i}") for i in range(6, 8)]
        seen = source.wait_events(8)
        second.wait_log(f"last-event-id={ids[2]!r}")
    assert [(e["data"], e["lastEventId"]) for e in seen] == [
        (f"event {i}", id) for i, id in enumerate(ids)
    ]
    assert [r["kind"] for r in source.seen()].count("open") == 2
    # Resumed exactly: the update before the first one sent is the one the page asked for.
    assert [h.get("last-event-id") for h in headers] == [start, ids[2]]


def test_a_page_resumes_after_a_non_ascii_id_across_a_restart_of_a_hub_on_redis(
    page: Page, sock: socket.socket, redis_server: RedisServer
) -> None:
    """A publisher's id SHOULD be an IRI (draft-07 §Publication), and an IRI may hold any
    Unicode character. The browser resumes by sending it in a `Last-Event-ID` header."""
    headers = stream_headers(page)
    args = ("--redis", redis_server.url)
    iri = "https://example.com/books/1#révision-1"
    with start_hub(*args, sock=sock) as first:
        start = publish(first, data="start")
        source = subscribe(page, first, after=start)
        assert publish(first, data="révision 1", retry="200", id=iri) == iri
        source.wait_events(1)
        first.signal_group(signal.SIGKILL)
        source.wait_for("seen.some(e => e.kind === 'error')")
    publish_into_redis(redis_server.url, [("while down", "urn:example:while-down")])
    with start_hub(*args, sock=sock) as second:
        source.wait_for("seen.filter(e => e.kind === 'open').length === 2")
        after = publish(second, data="after")
        source.wait_for("seen.some(e => e.data === 'after')")
        seen = source.events()
    # Read as Latin-1 ("rÃ©vision"), the id would be unknown and "while down" lost, silently.
    assert [(e["data"], e["lastEventId"]) for e in seen] == [
        ("révision 1", iri),
        ("while down", "urn:example:while-down"),
        ("after", after),
    ]
    # The hub sends the id's UTF-8 bytes (as the Go hub does); Chromium reports header
    # bytes as Latin-1 characters.
    echoed = [h.get("last-event-id", "").encode("latin-1").decode() for h in headers]
    assert echoed == [start, iri]


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
