"""Endpoints the client tests connect to; each remembers, per `key`, what its requests carried.

`GET /state?key=K` answers what the server saw for K: the `Last-Event-ID` of every request
(null when absent) and how many responses saw the client disconnect.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from sse_starlette import EventSourceResponse, ServerSentEvent

STATE: dict[str, dict[str, Any]] = {}
TOTAL = 5  # events in /resume


def log(text: str) -> None:
    print(text, flush=True)


def seen(request: Request) -> tuple[str, str | None]:
    """Record this request under its key; return the key and the Last-Event-ID it sent."""
    key = request.query_params.get("key", "")
    raw = request.headers.get("last-event-id")
    # Starlette decodes headers as Latin-1; the client sends the id as UTF-8.
    last_event_id = None if raw is None else raw.encode("latin-1").decode("utf-8", "replace")
    state = STATE.setdefault(key, {"ids": [], "disconnects": 0})
    state["ids"].append(last_event_id)
    return key, last_event_id


def next_id(last_event_id: str | None) -> int:
    return int(last_event_id) + 1 if last_event_id else 1


class Resume:
    """Events 1..5 by id. The first response sends 1 and 2, then half of 3 (no blank line), and
    then either aborts the connection (`end=abort`) or ends the response (`end=clean`). Later
    responses send the rest from `Last-Event-ID` on; past the last event, 204."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        _, last_event_id = seen(request)
        start = next_id(last_event_id)
        if start > TOTAL:
            await Response(status_code=204)(scope, receive, send)
            return
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})

        async def body(chunk: bytes, more_body: bool = True) -> None:
            await send({"type": "http.response.body", "body": chunk, "more_body": more_body})

        if start == 1:
            await body(b"id: 1\ndata: event 1\n\n")
            await body(b"id: 2\ndata: event 2\n\n")
            await body(b"id: 3\ndata: partial\n")
            if request.query_params.get("end") == "clean":
                await body(b"", more_body=False)
            # Otherwise return with the response incomplete: the server aborts the connection.
            return
        for i in range(start, TOTAL + 1):
            await body(f"id: {i}\ndata: event {i}\n\n".encode())
        await body(b"", more_body=False)


async def events(request: Request) -> Response:
    """Events `count` (default 3) by id, `per` per response (default all), resuming from
    Last-Event-ID; past the last, 204. `retry=MS` goes with the first event, `size=N` makes
    each event's data N characters (`char`, default x), `pause=1` holds each response open
    after its events."""
    key, last_event_id = seen(request)
    query = request.query_params
    count = int(query.get("count", "3"))
    start = next_id(last_event_id)
    if start > count:
        return Response(status_code=204)
    stop = min(count, start + int(query.get("per", str(count))) - 1)
    retry = int(query["retry"]) if "retry" in query else None
    size = int(query["size"]) if "size" in query else None
    char = query.get("char", "x")

    async def stream() -> AsyncIterator[ServerSentEvent]:
        for i in range(start, stop + 1):
            data = char * size if size is not None else f"event {i}"
            yield ServerSentEvent(data, id=str(i), retry=retry if i == 1 else None)
        if query.get("pause") == "1":
            await anyio.sleep_forever()

    async def disconnected(message: Message) -> None:
        STATE[key]["disconnects"] += 1
        log(f"{key}: disconnect")

    return EventSourceResponse(stream(), ping=0, client_close_handler_callable=disconnected)


async def oversized_after_one(request: Request) -> Response:
    """In one body chunk: a valid event of 900 bytes of data, then a 1,500-byte line."""
    seen(request)
    body = b"id: 1\ndata: " + b"v" * 900 + b"\n\ndata: " + b"x" * 1500 + b"\n\n"
    return Response(body, media_type="text/event-stream")


async def status(request: Request) -> Response:
    seen(request)
    return PlainTextResponse("not an event stream", status_code=int(request.query_params["code"]))


async def html(request: Request) -> Response:
    seen(request)
    return HTMLResponse("<p>not an event stream</p>")


async def state(request: Request) -> Response:
    return JSONResponse(STATE.get(request.query_params["key"], {"ids": [], "disconnects": 0}))


app = Starlette(
    routes=[
        Route("/resume", Resume()),
        Route("/events", events),
        Route("/status", status),
        Route("/oversized_after_one", oversized_after_one),
        Route("/html", html),
        Route("/state", state),
    ]
)
