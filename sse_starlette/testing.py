"""Test Server-Sent Events endpoints in-process, event by event, endless streams included.

Starlette's `TestClient` and httpx's `ASGITransport` hand over a response once its body is
complete, which an endless stream never is. `SSETestClient` calls the ASGI app itself and
hands over each event as the app sends it; every wait has a deadline, and the error raised
when it passes shows what had arrived by then.

    async with SSETestClient(app) as client:
        async with client.stream("/events") as stream:
            first = await stream.take(3)
            done = await stream.until(lambda event: event.event == "done")

Runs on asyncio and trio. With pytest, the `sse_client` fixture (sse_starlette.pytest_plugin)
opens clients that are closed after the test.
"""

from __future__ import annotations

import contextlib
import json as jsonlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol
from urllib.parse import unquote, urlencode, urljoin, urlsplit

import anyio
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Scope

from sse_starlette import _shutdown
from sse_starlette.parser import Event, EventStreamParser

__all__ = [
    "CompletedResponse",
    "Event",
    "EventStream",
    "Lifespan",
    "SSEClientFactory",
    "SSETestClient",
    "StreamEndedError",
    "StreamTimeoutError",
]

Lifespan = Literal["auto", "on", "off"]
HeaderTypes = Mapping[str, str] | Sequence[tuple[str, str]]
ParamTypes = Mapping[str, Any] | Sequence[tuple[str, Any]]

_SHOWN_EVENTS = 10
_SHOWN_BYTES = 500


class StreamTimeoutError(TimeoutError):
    """A wait on the stream passed its deadline; the message shows what had arrived."""


class StreamEndedError(Exception):
    """The response ended before what was waited for arrived; the message shows what did."""


@dataclass(frozen=True)
class CompletedResponse:
    """A response read to its end, from `SSETestClient.request()`."""

    status_code: int
    headers: Headers
    content: bytes

    @property
    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON."""
        return jsonlib.loads(self.content)


class EventStream:
    """One request to the app, read as the app sends it; made by `SSETestClient.stream()`.

    `events` holds every event parsed so far (by the WHATWG rules, like a browser), `raw`
    every body byte. `take()`, `next()`, `until()`, `read_to_end()` and `async for` read
    the events in order, each once, waiting for them up to a deadline; `wait()` waits for
    any condition on the stream.
    """

    status_code: int
    """The status the app sent."""
    headers: Headers
    """The headers the app sent (case-insensitive; `getlist()` for repeated ones)."""

    def __init__(
        self, scope: Scope, body: bytes, timeout: float, start_drain: Callable[[], None]
    ) -> None:
        self.status_code = 0
        self.headers = Headers()
        self.events: list[Event] = []
        self.complete = False
        """The app ended the response (`more_body: False`), as opposed to being cut off."""
        self.disconnected = False
        """The client side closed the connection (`disconnect()`, or leaving the block)."""
        self._scope = scope
        self._body = body
        self._timeout = timeout
        self._start_drain = start_drain
        self._raw = bytearray()
        last_event_id = Headers(scope=scope).get("last-event-id", "")
        self._parser = EventStreamParser(last_event_id, max_event_size=None)
        self._read = 0
        self._started = False
        self._returned = False
        self._error: Exception | None = None
        self._error_raised = False
        self._request_sent = False
        self._hangup = anyio.Event()  # from then on, receive() returns http.disconnect
        self._changed = anyio.Event()
        self._cancel_scope = anyio.CancelScope()

    @property
    def raw(self) -> bytes:
        """The body bytes received so far."""
        return bytes(self._raw)

    @property
    def unread(self) -> list[Event]:
        """The events received but not yet returned by a read."""
        return self.events[self._read :]

    async def take(self, n: int, timeout: float | None = None) -> list[Event]:
        """The next `n` events, waiting for them to arrive."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        what = f"{n} more event{'' if n == 1 else 's'}"
        await self._wait(lambda: len(self.events) - self._read >= n, what, timeout)
        events = self.events[self._read : self._read + n]
        self._read += n
        return events

    async def next(self, timeout: float | None = None) -> Event:
        """The next event, waiting for it to arrive."""
        return (await self.take(1, timeout))[0]

    async def until(
        self, predicate: Callable[[Event], bool], timeout: float | None = None
    ) -> Event:
        """The first unread event for which `predicate` is true; the events before it are read."""
        found: list[Event] = []

        def matched() -> bool:
            while not found and self._read < len(self.events):
                event = self.events[self._read]
                self._read += 1
                if predicate(event):
                    found.append(event)
            return bool(found)

        await self._wait(matched, "an event matching the predicate", timeout)
        return found[0]

    async def wait(
        self, condition: Callable[[EventStream], bool], timeout: float | None = None
    ) -> None:
        """Wait until `condition(stream)` is true, checked each time the app sends.

        For what events do not show: comments and pings in `raw`, say.
        """
        await self._wait(lambda: condition(self), "the condition", timeout)

    async def read_to_end(self, timeout: float | None = None) -> list[Event]:
        """Wait for the app to return; the events not read yet."""
        await self._wait_returned("the end of the response", timeout)
        events = self.unread
        self._read = len(self.events)
        return events

    async def disconnect(self, timeout: float | None = None) -> None:
        """Close the connection from the client side and wait for the app to return.

        The app's next `receive()` returns `http.disconnect`; body it sends afterwards is
        dropped, as a server drops it.
        """
        self._hang_up()
        await self._wait_returned("the app to return after the disconnect", timeout)

    async def drain(self, timeout: float | None = None) -> list[Event]:
        """Start the server-shutdown drain and wait for the app to return.

        Returns the events not read yet: a `shutdown_event` farewell, say. The drain is
        process-wide, as on a real server; the client ends it when it closes.
        """
        self._start_drain()
        return await self.read_to_end(timeout)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        # Each wait has the client's deadline: an endless stream ends the loop with
        # StreamTimeoutError, never with a hang.
        try:
            return await self.next()
        except StreamEndedError:
            raise StopAsyncIteration from None

    # --- the app's side of the connection ------------------------------------------------

    async def _run(self, app: ASGIApp) -> None:
        try:
            with self._cancel_scope:
                await app(self._scope, self._receive, self._send)
        except Exception as exc:  # raised in the test by the next wait, or when the block ends
            self._error = exc
        finally:
            self._returned = True
            self._notify()

    async def _receive(self) -> Message:
        if not self._request_sent:
            self._request_sent = True
            return {"type": "http.request", "body": self._body, "more_body": False}
        await self._hangup.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self._started:
                raise RuntimeError("the app sent http.response.start twice")
            self._started = True
            self.status_code = message["status"]
            self.headers = Headers(
                raw=[(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
            )
        elif kind == "http.response.body":
            if not self._started:
                raise RuntimeError("the app sent http.response.body before http.response.start")
            if self.complete:
                raise RuntimeError("the app sent http.response.body after the response ended")
            if not self.disconnected:
                body = bytes(message.get("body", b""))
                self._raw += body
                self.events += self._parser.feed(body)
                if not message.get("more_body", False):
                    self.complete = True
                    # As a server does: once the response is sent, receive() reports the end.
                    self._hangup.set()
        else:
            raise RuntimeError(f"unexpected ASGI message for an HTTP request: {kind!r}")
        self._notify()
        # A server's send yields to the event loop: without it an app that never awaits
        # anything else would starve the test.
        await anyio.lowlevel.checkpoint()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    # --- waits -----------------------------------------------------------------------------

    async def _wait(self, ready: Callable[[], bool], what: str, timeout: float | None) -> None:
        limit = self._timeout if timeout is None else timeout
        deadline = anyio.current_time() + limit
        while not ready():
            if self._returned:
                self._raise_app_error()
                raise StreamEndedError(self._report(f"the response ended before {what}"))
            # Checked here too, not only by the cancel scope: an app that sends without a
            # pause wakes this task at every turn of the loop, and asyncio would then never
            # find it waiting to deliver the cancellation (a livelock).
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                raise StreamTimeoutError(
                    self._report(f"timed out after {limit}s waiting for {what}")
                )
            with anyio.move_on_after(remaining):
                await self._changed.wait()

    async def _wait_returned(self, what: str, timeout: float | None) -> None:
        await self._wait(lambda: self._returned, what, timeout)
        self._raise_app_error()

    def _raise_app_error(self) -> None:
        if self._error is not None:
            self._error_raised = True
            raise self._error

    async def _wait_started(self) -> None:
        await self._wait(lambda: self._started, "http.response.start", None)

    async def _finish(self) -> None:
        """Leaving the block normally: disconnect, and raise what the app raised, once."""
        self._hang_up()
        await self._wait(lambda: self._returned, "the app to return after the disconnect", None)
        if not self._error_raised:
            self._raise_app_error()

    def _hang_up(self) -> None:
        if not self._returned:
            self.disconnected = True
            self._hangup.set()

    async def _abort(self) -> None:
        """Leaving the block on an error: stop the app now (its `finally` blocks still run)."""
        self._cancel_scope.cancel()
        with anyio.CancelScope(shield=True), contextlib.suppress(StreamTimeoutError):
            await self._wait(lambda: self._returned, "the app to return when cancelled", None)

    def _report(self, headline: str) -> str:
        if self.complete:
            state = "complete"
        elif self._returned:
            state = "cut off (the app returned without more_body: False)"
        else:
            state = "open"
        request = f"{self._scope['method']} {self._scope['path']}"
        status = self.status_code if self._started else "no response started"
        lines = [
            headline,
            f"  {request}: status {status}, response {state}",
            f"  events received: {len(self.events)}, read: {self._read}",
        ]
        first = max(0, len(self.events) - _SHOWN_EVENTS)
        if first:
            lines.append(f"    ... {first} earlier")
        lines += [f"    [{i}] {self.events[i]!r}" for i in range(first, len(self.events))]
        tail = bytes(self._raw[-_SHOWN_BYTES:])
        cut = f", the last {len(tail)}" if len(tail) < len(self._raw) else ""
        lines.append(f"  body: {len(self._raw)} bytes{cut}: {tail!r}")
        return "\n".join(lines)


class _LifespanRun:
    """The app's ASGI lifespan, run for as long as the client is open."""

    def __init__(self, app: ASGIApp, state: dict[str, Any], required: bool) -> None:
        self._app = app
        self._state = state
        self._required = required
        self._to_app, self._app_inbox = anyio.create_memory_object_stream[Message](math.inf)
        self._app_outbox, self._from_app = anyio.create_memory_object_stream[Message](math.inf)
        self._cancel_scope = anyio.CancelScope()
        self._returned = anyio.Event()
        self._error: Exception | None = None
        self._running = False

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        try:
            with self._cancel_scope:
                await self._app(
                    {**scope, "state": self._state}, self._app_inbox.receive, self._send
                )
        except Exception as exc:
            self._error = exc
        finally:
            self._app_outbox.close()
            self._app_inbox.close()
            self._returned.set()

    async def _send(self, message: Message) -> None:
        if not message["type"].startswith("lifespan."):
            raise RuntimeError(f"unexpected ASGI message for the lifespan: {message['type']!r}")
        await self._app_outbox.send(message)

    async def _exchange(self, phase: str, timeout: float) -> Message | None:
        with anyio.move_on_after(timeout):
            try:
                await self._to_app.send({"type": f"lifespan.{phase}"})
                return await self._from_app.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):  # the app has returned
                return None
        self._cancel_scope.cancel()
        raise TimeoutError(f"the app did not answer lifespan.{phase} within {timeout}s")

    async def _raise_failure(self, phase: str, message: Message | None, timeout: float) -> None:
        with anyio.move_on_after(timeout):
            await self._returned.wait()  # Starlette sends *.failed, then raises the error
        if self._error is not None:
            raise self._error
        reason = "returned without answering" if message is None else message.get("message", "")
        raise RuntimeError(f"lifespan {phase} failed: {reason}")

    async def startup(self, task_group: anyio.abc.TaskGroup, timeout: float) -> None:
        task_group.start_soon(self._run)
        message = await self._exchange("startup", timeout)
        if message is not None and message["type"] == "lifespan.startup.complete":
            self._running = True
            return
        if message is None and not self._required:
            # ASGI: an app that raises (or returns) on the lifespan scope does not support
            # it, and the server goes on without (a bare Response object used as the app).
            return
        await self._raise_failure("startup", message, timeout)

    async def shutdown(self, timeout: float) -> None:
        if not self._running:
            self._cancel_scope.cancel()
            return
        self._running = False
        message = await self._exchange("shutdown", timeout)
        if message is None or message["type"] != "lifespan.shutdown.complete":
            await self._raise_failure("shutdown", message, timeout)
        with anyio.move_on_after(timeout):
            await self._returned.wait()
        self._cancel_scope.cancel()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        self._to_app.close()
        self._from_app.close()


class SSETestClient:
    """Call an ASGI app in-process and read its event streams as they are sent.

    Args:
        app: the ASGI app (Starlette, FastAPI, or any ASGI callable, a bare
            `EventSourceResponse` included).
        base_url: scheme, host and port the requests are addressed to.
        headers: sent with every request.
        lifespan: "auto" runs the app's lifespan (startup on enter, shutdown on exit) if it
            supports one; "on" requires it; "off" skips it.
        timeout: seconds every wait may take by default (each method takes its own too).

    Use as `async with SSETestClient(app) as client:`; leaving the block closes every
    stream still open, shuts the lifespan down and ends a drain the client started.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        base_url: str = "http://testserver",
        headers: HeaderTypes | None = None,
        lifespan: Lifespan = "auto",
        timeout: float = 5.0,
    ) -> None:
        if lifespan not in ("auto", "on", "off"):
            raise ValueError(f"lifespan must be 'auto', 'on' or 'off', got {lifespan!r}")
        self.app = app
        self.base_url = base_url
        self.headers = _header_list(headers)
        self.lifespan: Lifespan = lifespan
        self.timeout = timeout
        self._state: dict[str, Any] = {}
        self._task_group: anyio.abc.TaskGroup | None = None
        self._lifespan: _LifespanRun | None = None
        self._streams: set[EventStream] = set()
        self._drained = False

    async def __aenter__(self) -> SSETestClient:
        if self._task_group is not None:
            raise RuntimeError("this SSETestClient is already open")
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        try:
            if self.lifespan != "off":
                self._lifespan = _LifespanRun(self.app, self._state, self.lifespan == "on")
                await self._lifespan.startup(task_group, self.timeout)
        except BaseException:
            await self._close_task_group()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            with anyio.CancelScope(shield=exc is not None):
                for stream in list(self._streams):
                    await stream._abort()
                if self._lifespan is not None:
                    await self._lifespan.shutdown(self.timeout)
        finally:
            await self._close_task_group()

    async def _close_task_group(self) -> None:
        if self._drained:
            self._drained = False
            _shutdown.undrain()
        task_group, self._task_group = self._task_group, None
        lifespan, self._lifespan = self._lifespan, None
        if task_group is not None:
            task_group.cancel_scope.cancel()
            # The block's own exception (if any) never passed through the task group, and
            # must not come out wrapped in an ExceptionGroup: the group only ends its tasks.
            await task_group.__aexit__(None, None, None)
        if lifespan is not None:
            lifespan.close()

    @contextlib.asynccontextmanager
    async def stream(
        self,
        url: str = "/",
        *,
        method: str = "GET",
        headers: HeaderTypes | None = None,
        params: ParamTypes | None = None,
        content: bytes | str | None = None,
        json: Any = None,
        http_version: str = "1.1",
        timeout: float | None = None,
    ) -> AsyncIterator[EventStream]:
        """Send a request (`Accept: text/event-stream`) and yield once the response has started.

        Leaving the block disconnects the client, waits for the app to return and raises
        what the app raised; leaving it on an error cancels the app instead.
        """
        scope, body = self._request(
            method, url, headers, params, content, json, http_version, "text/event-stream"
        )
        async with self._call(scope, body, timeout) as stream:
            await stream._wait_started()
            yield stream
            await stream._finish()

    async def request(
        self,
        method: str,
        url: str = "/",
        *,
        headers: HeaderTypes | None = None,
        params: ParamTypes | None = None,
        content: bytes | str | None = None,
        json: Any = None,
        timeout: float | None = None,
    ) -> CompletedResponse:
        """Send a request and read the response to its end (a POST that publishes, say)."""
        scope, body = self._request(method, url, headers, params, content, json, "1.1", "*/*")
        async with self._call(scope, body, timeout) as stream:
            await stream.read_to_end()
        return CompletedResponse(stream.status_code, stream.headers, stream.raw)

    @contextlib.asynccontextmanager
    async def _call(
        self, scope: Scope, body: bytes, timeout: float | None
    ) -> AsyncIterator[EventStream]:
        """Call the app with one request; an error in the block cancels it."""
        task_group = self._require_open()
        limit = self.timeout if timeout is None else timeout
        stream = EventStream(scope, body, limit, self._start_drain)
        task_group.start_soon(stream._run, self.app)
        self._streams.add(stream)
        try:
            yield stream
        except BaseException:
            await stream._abort()
            raise
        finally:
            self._streams.discard(stream)

    async def drain(self, timeout: float | None = None) -> None:
        """Start the server-shutdown drain, as on SIGTERM; wait until this client's streams end.

        Open streams end (a `shutdown_event` lets their generators say goodbye first), and
        streams opened afterwards end at once, until the client closes and ends the drain.
        The drain is process-wide, as on a real server.
        """
        self._require_open()
        self._start_drain()
        for stream in list(self._streams):
            await stream._wait_returned("the end of the response after the drain", timeout)

    def _start_drain(self) -> None:
        self._drained = True
        _shutdown.drain()

    def _require_open(self) -> anyio.abc.TaskGroup:
        if self._task_group is None:
            raise RuntimeError("open the client first: `async with SSETestClient(app) as client`")
        return self._task_group

    def _request(
        self,
        method: str,
        url: str,
        headers: HeaderTypes | None,
        params: ParamTypes | None,
        content: bytes | str | None,
        json: Any,
        http_version: str,
        accept: str,
    ) -> tuple[Scope, bytes]:
        target = urlsplit(urljoin(self.base_url, url))
        query = target.query
        if params:
            pairs = list(params.items()) if isinstance(params, Mapping) else list(params)
            extra = urlencode(pairs, doseq=True)
            query = f"{query}&{extra}" if query else extra
        names: dict[str, tuple[str, str]] = {"host": ("host", target.netloc)}
        body = b""
        if json is not None:
            body = jsonlib.dumps(json).encode()
            names["content-type"] = ("content-type", "application/json")
        elif content is not None:
            body = content.encode() if isinstance(content, str) else bytes(content)
        if body:
            names["content-length"] = ("content-length", str(len(body)))
        names["accept"] = ("accept", accept)
        # Later ones replace earlier ones of the same name: the client's, then the request's.
        for name, value in [*self.headers, *_header_list(headers)]:
            names[name.lower()] = (name, value)
        default_port = 443 if target.scheme == "https" else 80
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": http_version,
            "method": method.upper(),
            "scheme": target.scheme,
            "path": unquote(target.path) or "/",
            "raw_path": (target.path or "/").encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [
                (n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in names.values()
            ],
            "client": ("testclient", 50000),
            "server": (target.hostname or "testserver", target.port or default_port),
            "state": dict(self._state),
        }
        return scope, body


def _header_list(headers: HeaderTypes | None) -> list[tuple[str, str]]:
    if headers is None:
        return []
    return list(headers.items()) if isinstance(headers, Mapping) else list(headers)


class SSEClientFactory(Protocol):
    """The `sse_client` fixture: `client = await sse_client(app)`; closed after the test."""

    def __call__(
        self,
        app: ASGIApp,
        *,
        base_url: str = ...,
        headers: HeaderTypes | None = ...,
        lifespan: Lifespan = ...,
        timeout: float = ...,
    ) -> Awaitable[SSETestClient]: ...
