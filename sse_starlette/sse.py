"""`EventSourceResponse`: an endless streaming response that speaks `text/event-stream`.

Per open stream there are two tasks: the server's own task, which runs the body loop (get an
item, encode it, send it), and one helper that waits for `http.disconnect`. A ping is sent
by a short-lived task its timer starts (one loop timer serves the pings of every stream:
`_timers`; on trio, a third task that sleeps sends them). Shutdown reaches a stream through
`_shutdown`, not through a task. The cancel scopes and helper tasks come from `_scopes` (on
asyncio cheaper than anyio's; see there why).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine, Iterable, Mapping
from datetime import datetime, timezone
from types import AsyncGeneratorType
from typing import Any, Literal

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream
from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from sse_starlette import _servers, _shutdown, _threads
from sse_starlette._scopes import HelperTasks, move_on_after
from sse_starlette._shutdown import AppStatus
from sse_starlette.event import ServerSentEvent, check_sep, ensure_bytes

__all__ = ["AppStatus", "EventSourceResponse", "SendTimeoutError"]

logger = logging.getLogger(__name__)

Content = str | bytes | dict[str, Any] | ServerSentEvent | Any
SyncContentStream = Iterable[Content]
AsyncContentStream = AsyncIterable[Content]
ContentStream = AsyncContentStream | SyncContentStream


# Items ready together go out in one message (one trip through the middleware's `send`s and
# one socket write, not one per event), up to this many bytes: each stream joins its own
# copy, so the bound is memory per stream (64 KiB cost a resume storm 55 KiB per client).
_BATCH_BYTES = 16_384
_NOT_READY = object()


def _ready_items(iterator: Any) -> tuple[Callable[[], Any], Any] | None:
    """For a producer that can tell: a function returning its next item ready now, without
    waiting, and what it returns when none is. A broker subscription (its backlog, its
    resume's page: None) and an anyio memory object stream (whose items may be None). A
    user's generator cannot tell: one message per item."""
    if type(iterator) is AsyncGeneratorType:  # the commonest, at the cost of one look
        return None
    if isinstance(iterator, MemoryObjectReceiveStream):

        def receive_ready() -> Any:
            try:
                return iterator.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):
                return _NOT_READY

        return receive_ready, _NOT_READY
    ready = getattr(iterator, "_sse_ready", None)
    return None if ready is None else (ready, None)


def _with_ready(body: bytes, ready: Callable[[], Any], nothing: Any, sep: str) -> bytes:
    """`body` and the encoded items ready after it, up to `_BATCH_BYTES`."""
    chunks = None
    size = len(body)
    while size < _BATCH_BYTES:
        item = ready()
        if item is nothing:
            break
        chunk = ensure_bytes(item, sep)
        if chunks is None:
            chunks = [body]
        chunks.append(chunk)
        size += len(chunk)
    return body if chunks is None else b"".join(chunks)


class SendTimeoutError(TimeoutError):
    """A send (event or ping) did not complete within `send_timeout`: the client stopped reading."""


# Servers imported later are hooked on import; this hooks those already imported.
_servers.install()


def _ping_comment(sep: str) -> ServerSentEvent:
    return ServerSentEvent(comment=f"ping - {datetime.now(timezone.utc)}", sep=sep)


def _websocket_denial(send: Send) -> Send:
    # ASGI's "websocket.http.response" extension: answer a websocket handshake with HTTP.
    async def wrapped(message: Message) -> None:
        await send({**message, "type": "websocket." + message["type"]})

    return wrapped


class EventSourceResponse(Response):
    """Streaming response implementing Server-Sent Events.

    Args:
        content: async iterable, or sync iterator (run in a thread pool), of items: `str`,
            `bytes` (sent as is), `dict` of fields, `ServerSentEvent`, Pydantic model,
            dataclass, or anything `str()`-able.
        status_code, headers, media_type, background: as for Starlette's `Response`.
            A `Cache-Control` in `headers` replaces the default `no-store`.
        ping: seconds between keep-alive comments (int or float, default 15, 0 disables).
        sep: line separator, "\\r\\n" (default), "\\n" or "\\r".
        ping_message_factory: returns the `ServerSentEvent` sent as ping.
        data_sender_callable: coroutine function run beside the stream (for example one
            that feeds the memory channel given as `content`).
        send_timeout: seconds a send (event or ping) may take; on expiry the generator is
            closed and `SendTimeoutError` raised.
        client_close_handler_callable: awaited with the `http.disconnect` message.
        shutdown_event: set on server shutdown, so the generator can send farewell events.
        shutdown_grace_period: seconds the generator may go on after `shutdown_event` is set
            before it is cancelled; "server": a little less than the stopping server's own
            graceful-shutdown timeout (docs/shutdown.md).
        cleanup_timeout: seconds the generator's `aclose()` may take after a failed or
            interrupted send before it is cancelled and a warning logged (None: no limit).
    """

    DEFAULT_PING_INTERVAL = 15
    DEFAULT_SEPARATOR = "\r\n"
    DEFAULT_CLEANUP_TIMEOUT = 30.0

    body_iterator: AsyncContentStream

    def __init__(
        self,
        content: ContentStream,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str = "text/event-stream",
        background: BackgroundTask | None = None,
        ping: int | float | None = None,
        sep: str | None = None,
        ping_message_factory: Callable[[], ServerSentEvent] | None = None,
        data_sender_callable: Callable[[], Coroutine[None, None, None]] | None = None,
        send_timeout: float | None = None,
        client_close_handler_callable: Callable[[Message], Awaitable[None]] | None = None,
        shutdown_event: anyio.Event | None = None,
        shutdown_grace_period: float | Literal["server"] = 0,
        cleanup_timeout: float | None = DEFAULT_CLEANUP_TIMEOUT,
    ) -> None:
        self.sep = self.DEFAULT_SEPARATOR if sep is None else check_sep(sep)
        if isinstance(content, AsyncIterable):
            self.body_iterator = content
        else:
            self.body_iterator = _threads.iterate(content)
        self.status_code = status_code
        self.media_type = media_type
        self.background = background
        self.data_sender_callable = data_sender_callable
        self.send_timeout = _non_negative("send_timeout", send_timeout)
        self.ping_interval = self.DEFAULT_PING_INTERVAL if ping is None else ping
        self.ping_message_factory = ping_message_factory
        self.client_close_handler_callable = client_close_handler_callable
        self._shutdown_event = shutdown_event
        self._shutdown_grace_period: float | Literal["server"] = (
            "server"
            if shutdown_grace_period == "server"
            else _non_negative("shutdown_grace_period", shutdown_grace_period)
        )
        self._cleanup_timeout = _non_negative("cleanup_timeout", cleanup_timeout)
        self.active = True
        self._stream: _Stream | None = None  # while it streams

        self.init_headers(headers)

    def init_headers(self, headers: Mapping[str, str] | None = None) -> None:
        self._raw_headers: list[tuple[bytes, bytes]] | tuple[tuple[bytes, bytes], ...]
        if headers:
            self._raw_headers = list(_header_list(headers, self.media_type, self.charset))
        else:
            # Most responses have no headers of their own: they share one tuple until a look
            # at `raw_headers` gives them a list of their own (`response.headers` edits it).
            self._raw_headers = _default_headers(self.media_type, self.charset)

    @property
    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """The response's headers as (name, value) byte pairs, as Starlette's `Response` has
        them: a list of its own, which `response.headers` edits in place."""
        headers = self._raw_headers
        if isinstance(headers, tuple):
            headers = self._raw_headers = list(headers)
        return headers

    @raw_headers.setter
    def raw_headers(self, value: list[tuple[bytes, bytes]]) -> None:
        self._raw_headers = value

    @property
    def ping_interval(self) -> int | float:
        """Seconds between keep-alive pings; 0 disables them."""
        return self._ping_interval

    @ping_interval.setter
    def ping_interval(self, value: int | float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"ping interval must be int or float, got {value!r}")
        if value < 0:
            raise ValueError(f"ping interval must be >= 0 (0 disables ping), got {value}")
        self._ping_interval = value

    def _abandon(self) -> None:
        # For the broker: a subscriber dropped as a slow consumer must not keep its
        # connection until it reads again (a send blocks for as long as it does not).
        if self._stream is not None:
            self._stream.abandon()

    def enable_compression(self, force: bool = False) -> None:
        raise NotImplementedError("Compression is not supported for SSE streams.")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        _servers.install()
        # A scope without `type` or `method` (`{}`, in tests written for the published
        # package) is an HTTP GET.
        kind = scope.get("type", "http")
        headers = self._raw_headers
        if kind == "websocket":
            # An event stream is no websocket: answer the handshake with the response's
            # status and headers and no body, and never start the generator.
            send = _websocket_denial(send)
            headers = _without_connection(headers)  # the server closes it after the denial
        elif kind != "http":
            # ASGI: an app raises on a scope type it does not support (a bare response used
            # as the app gets `lifespan`), before touching its content or data sender.
            raise RuntimeError(f"EventSourceResponse cannot serve an ASGI {kind!r} scope")
        elif scope.get("http_version", "1.1") not in ("1.0", "1.1"):
            headers = _without_connection(headers)  # forbidden in HTTP/2 and 3
        method = scope.get("method", "GET")
        if kind == "websocket" or (method != "GET" and method.upper() == "HEAD"):
            send = _bounded(send, self.send_timeout)
            await send(_start(self.status_code, headers))
            await send(_final_chunk())
        else:
            stream = self._stream = _Stream(self, send)
            _shutdown.register(stream)  # a drain under way ends it at once
            try:
                await stream.run(receive, headers)
            finally:
                # Only now: a server hook that waits for the streams to end (daphne's) waits
                # for complete responses.
                _shutdown.unregister(stream)
                self._stream = None
        if self.background is not None:
            await self.background()


def _start(status: int, headers: Any) -> Message:
    # Made as it is sent, not kept: each open stream would hold its start for its whole life.
    # A list, as Starlette sends it: middleware edits the start's headers in place, and the
    # shared tuple of default headers must reach none of them.
    if type(headers) is not list:
        headers = list(headers)
    return {"type": "http.response.start", "status": status, "headers": headers}


def _final_chunk() -> Message:
    # The end of a response: the client sees a clean end of the stream. A new dict each time:
    # a server or a middleware may change the message it is given.
    return {"type": "http.response.body", "body": b"", "more_body": False}


def _bounded(send: Send, timeout: float | None) -> Send:
    """`send`, raising `SendTimeoutError` when one send takes longer than `timeout` seconds."""
    if timeout is None:
        return send

    async def bounded(message: Message) -> None:
        with move_on_after(timeout) as timer:
            await send(message)
        if timer.cancelled_caught:
            raise SendTimeoutError(f"send did not complete within send_timeout={timeout}s")

    return bounded


def _header_list(
    headers: Mapping[str, str] | None, media_type: str | None, charset: str
) -> tuple[tuple[bytes, bytes], ...]:
    """The response's raw headers."""
    # Header names compare case-insensitively: a user's Cache-Control or Content-Type
    # replaces the default; as in the published package, Connection stays keep-alive (a
    # stream is long-lived by nature; `__call__` drops it on HTTP/2) and X-Accel-Buffering
    # "no" (nginx would otherwise hold events back).
    user = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in (headers or {}).items()
        if name.lower() not in ("x-accel-buffering", "connection")
    ]
    names = {name for name, _ in user}
    raw = [] if b"cache-control" in names else [(b"cache-control", b"no-store")]
    raw += user
    raw.append((b"connection", b"keep-alive"))
    raw.append((b"x-accel-buffering", b"no"))
    content_type = media_type
    if content_type is not None and b"content-type" not in names:
        if content_type.startswith("text/") and "charset=" not in content_type.lower():
            content_type += "; charset=" + charset
        raw.append((b"content-type", content_type.encode("latin-1")))
    return tuple(raw)


@functools.lru_cache(maxsize=32)
def _default_headers(media_type: str | None, charset: str) -> tuple[tuple[bytes, bytes], ...]:
    # Most responses have no headers of their own: build their list once, not per stream.
    return _header_list(None, media_type, charset)


def _without_connection(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    # Looked for on each call, not noted at construction: `response.headers` may have
    # set or removed the Connection header since.
    return [(name, value) for name, value in headers if name != b"connection"]


def _non_negative(name: str, value: float | None) -> Any:
    if value is not None and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


class _Stream:
    """The state of one open stream, from the response start to the end of the response."""

    __slots__ = (
        "completing",
        "disconnected",
        "error",
        "iterating",
        "loop",
        "response",
        "scope",
        "send",
        "send_start",
    )

    def __init__(self, response: EventSourceResponse, send: Send) -> None:
        self.response = response
        # As in the published package, `send_timeout` bounds the body's sends, not the start.
        self.send = _bounded(send, response.send_timeout)
        self.send_start = send
        self.loop = _shutdown.loop_handle()
        # What a disconnect, a helper's error or a drain cancels: the body loop only. Helpers
        # are cancelled when it has ended, and the generator is closed outside this scope, so
        # that its clean-up gets `cleanup_timeout` whatever cancelled the loop.
        self.scope = move_on_after()
        self.disconnected = False
        self.iterating = False  # the iterator was started and has not ended: close it
        self.completing = False  # sending the final chunk: no more pings, no drain
        self.error: BaseException | None = None

    async def run(self, receive: Receive, headers: Any) -> None:
        """The start, then each item as it comes (with what is ready after it), then the final
        chunk; raises the error that ended the stream, if any."""
        response, send, sep = self.response, self.send, self.response.sep
        async with HelperTasks() as helpers:
            helpers.start(self._listen(receive))
            # Beside the response start, as the published package starts it: a data sender
            # may have to run before the server's `send` of the start returns.
            if response.data_sender_callable is not None:
                helpers.start(self._guarded(response.data_sender_callable()))
            try:
                # Outside the scope: a drain or a disconnect must not cut the start short, or
                # the server would be sent a body without one.
                await self.send_start(_start(response.status_code, headers))
                if self.error is None:  # the data sender's
                    with self.scope:
                        if response.ping_interval:
                            helpers.every(response.ping_interval, _Stream._ping, self)
                        self.iterating = True
                        ready = _ready_items(response.body_iterator)
                        async for item in response.body_iterator:
                            if self.disconnected:
                                break
                            body = ensure_bytes(item, sep)
                            if ready is not None:
                                body = _with_ready(body, *ready, sep)
                            await send(
                                {"type": "http.response.body", "body": body, "more_body": True}
                            )
                        else:
                            self.iterating = False
            except Exception as exc:
                self._fail(exc)
            finally:
                if self.iterating:
                    await self._close(response.body_iterator)
            if self.error is None and not self.disconnected:
                # Still beside the listener: it listens until the response is complete.
                await self._complete()
        if self.error is not None:
            raise self.error

    async def _guarded(self, work: Awaitable[None]) -> None:
        try:
            await work
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        # The first error ends the stream and is raised as itself after the helpers have
        # ended, never wrapped in an ExceptionGroup (as the published package raises it).
        if self.error is None:
            self.error = exc
        self.scope.cancel()

    async def _complete(self) -> None:
        """Send the final empty chunk: the client sees a clean end of the response.

        Only a disconnect cancels it (a drain that arrives now lets it finish); a peer that has
        gone (ASGI 2.4's `OSError`) or stopped reading (`SendTimeoutError`) ends the response
        quietly: there is nobody left to tell, and `background` still runs.
        """
        self.completing = True
        self.scope = move_on_after()
        try:
            with self.scope:
                await self.send(_final_chunk())
        except OSError:
            pass
        except Exception as exc:
            self._fail(exc)  # raised as itself once the helpers have ended

    async def _close(self, iterator: Any) -> None:
        """Close the generator after a failed or interrupted send, so its `finally` runs."""
        aclose = getattr(iterator, "aclose", None)
        # A generator cancelled while it waited for its next item has ended already
        # (`ag_frame` is None): closing it again would only cost a cancel scope.
        if aclose is None or getattr(iterator, "ag_frame", True) is None:
            return
        limit = self.response._cleanup_timeout
        with anyio.move_on_after(limit, shield=True) as timer:
            try:
                await aclose()
            except Exception:
                # The error that interrupted the stream is the one to raise, not this.
                logger.exception("generator raised while being closed")
        # `cancel_called`: a generator that swallowed the cancellation was still cut short.
        if timer.cancel_called:
            logger.warning("generator cleanup exceeded cleanup_timeout=%ss; cancelled", limit)

    async def _listen(self, receive: Receive) -> None:
        """Wait for the client to leave, then end the stream."""
        response = self.response
        try:
            while (message := await receive())["type"] != "http.disconnect":
                pass
            if self.completing:
                # The server's note that the response is over (hypercorn's, on trio), or a
                # client gone while the final chunk was sent: end that send, nobody to tell.
                self.scope.cancel()
                return
            self.disconnected = True
            response.active = False
            if response.client_close_handler_callable is not None:
                await response.client_close_handler_callable(message)
        except Exception as exc:
            self._fail(exc)
            return
        self.scope.cancel()

    async def _ping(self) -> float:
        """Send a ping; return the seconds until the next one, 0 for none."""
        response = self.response
        if self.disconnected or self.error is not None or self.completing:
            return 0  # nobody to keep alive, or the stream is ending
        try:
            factory = response.ping_message_factory
            ping = factory() if factory is not None else _ping_comment(response.sep)
            message = {
                "type": "http.response.body",
                "body": ensure_bytes(ping, response.sep),
                "more_body": True,
            }
            await self.send(message)
        except Exception as exc:
            if not self.completing:  # else the final chunk, sent meanwhile, decides
                self._fail(exc)
            return 0
        return response.ping_interval  # read each time, as the published package does

    def abandon(self) -> None:
        """The producer gave up on a client that stopped reading: end now, even mid-send,
        and send no final chunk (it would block as well). The server closes the connection
        once it has flushed what it holds: ASGI gives an app no way to abort it."""
        self.disconnected = True
        self.scope.cancel()

    def on_drain(self, server_grace: float | None) -> None:
        """Server shutdown: end the stream, or let the generator say goodbye first."""
        if self.completing:
            return  # the final chunk is on its way: the clean end the drain is after
        event = self.response._shutdown_event
        if event is None:
            self.scope.cancel()
            return
        event.set()
        grace = self.response._shutdown_grace_period
        if grace == "server":
            grace = _shutdown.server_grace(server_grace)
        self.scope.deadline = min(self.scope.deadline, self.loop.clock() + grace)
