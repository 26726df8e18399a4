"""Consume Server-Sent Events in Python, the way a browser's `EventSource` does.

`EventSource` (async, asyncio or trio) and `SyncEventSource` (blocking) read a
`text/event-stream` response with the shared WHATWG parser, reconnect after a drop, honour the
server's `retry`, send `Last-Event-ID` and stop for good on `204 No Content`. As a browser does,
any other status than 200 (or another content type) fails the stream, unless the status is
one of `retry_statuses`. The sans-I/O core (`_EventSourceBase`, `_Reconnection`) is shared; the
two classes add the I/O.

Needs httpx: `pip install "sse-starlette[client]"`.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import random
import socket
import threading
import time
import warnings
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping
from types import TracebackType
from typing import Any, Generic, NoReturn, TypeVar

import anyio

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        'sse_starlette.client needs httpx: pip install "sse-starlette[client]"'
    ) from exc

from sse_starlette.parser import (
    _DEFAULT_MAX_EVENT_SIZE,
    Event,
    EventStreamParser,
    EventTooLargeError,
    SSEError,
)

__all__ = [
    "EndReason",
    "Event",
    "EventSource",
    "EventTooLargeError",
    "SSEConnectionError",
    "SSEError",
    "SSEReconnectError",
    "SSEResponseError",
    "SSEStreamEndedError",
    "SyncEventSource",
]

logger = logging.getLogger("sse_starlette.client")

DEFAULT_RETRY_MS = 3000  # the spec leaves the initial reconnection time to the client
# An idle event stream is normal, so no read timeout (a browser has none either).
DEFAULT_TIMEOUT = httpx.Timeout(10.0, read=None)
# Consecutive answers with a status of `retry_statuses` retried, unless `max_reconnects` says.
DEFAULT_MAX_STATUS_RETRIES = 5

# Answers worth another try (`SSEResponseError.transient`): the server is overloaded or
# restarting, not refusing us. Retried only when listed in `retry_statuses`.
_TRANSIENT_STATUSES = frozenset((408, 429, 500, 502, 503, 504))

# Failures of the connection, worth another try; a LocalProtocolError or UnsupportedProtocol
# (also transport errors) would fail the same way again.
_NETWORK_ERRORS = (
    httpx.NetworkError,
    httpx.TimeoutException,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)

OnReconnect = Callable[[int, float, Exception], object]


class EndReason(enum.Enum):
    """Why a source stopped (`EventSource.end_reason`); None while it is still live."""

    NO_CONTENT = "no-content"  # the server answered 204: stop for good, as a browser does
    SERVER_CLOSED = "server-closed"  # with reconnect=False, the server ended the response
    CLOSED = "closed"  # aclose() / close() (or leaving the `with` block)
    GAVE_UP = "gave-up"  # max_reconnects, max_reconnect_time or the status retries ran out
    FAILED = "failed"  # an error was raised: a refused response, an oversized event, ...


class SSEConnectionError(SSEError, httpx.TransportError):
    """The request failed: a network error with `reconnect=False`, or an error that would
    recur (an unsupported scheme, an invalid URL, too many redirects). httpx's own error is
    `__cause__`; this is also an `httpx.TransportError`, so code catching those still does.
    """


class SSEResponseError(SSEError):
    """The server answered with something other than `200` and `text/event-stream`.

    `status_code`, `content_type` (`""` when absent) and `url` say what arrived; `transient`
    is true for the statuses worth another try (408, 429, 500, 502, 503, 504), which a source
    retries only when they are among its `retry_statuses`. The body is not read.
    """

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.status_code = response.status_code
        self.content_type = response.headers.get("content-type", "")
        self.url = str(response.request.url)
        self.transient = self.status_code in _TRANSIENT_STATUSES
        where = f"{response.request.method} {self.url}"
        if self.status_code == 200:
            message = (
                f"{where} answered 200 with Content-Type {self.content_type or '(none)'!r}; "
                "an event stream needs text/event-stream"
            )
        else:
            message = (
                f"{where} answered {self.status_code} {response.reason_phrase}; "
                "an event stream needs 200 with Content-Type text/event-stream"
            )
        super().__init__(message)


class SSEStreamEndedError(SSEError):
    """The server ended the response. Not raised on its own: the cause of a reconnection."""


class SSEReconnectError(SSEError):
    """Reconnecting gave up (`max_reconnects`, `max_reconnect_time`, or the status retries).

    `attempts` is the number of reconnection attempts made since the last established
    connection; `cause` (also `__cause__`) is why the last connection was lost or refused.
    """

    def __init__(self, message: str, attempts: int, cause: Exception) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.cause = cause


class _Reconnection:
    """When to reconnect and when to give up; no I/O and no clock of its own.

    The delay before attempt n (counted from 1 since the last established connection) is
    `retry * backoff ** (n - 1)`, capped at `max(max_delay, retry)`: the cap bounds the
    backoff, never the server's own `retry`, which is the minimum wait the spec asks for.
    With `jitter` the delay is drawn uniformly from [d/2, 3d/2] clipped to [retry, cap], so
    clients dropped together do not come back together.
    """

    def __init__(
        self,
        retry: float,
        backoff: float,
        max_delay: float,
        jitter: bool,
        max_reconnects: int | None,
        max_reconnect_time: float | None,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        _check("retry", retry, 0)
        _check("backoff", backoff, 1)
        _check("max_delay", max_delay, 0)
        if max_reconnects is not None:
            _check("max_reconnects", max_reconnects, 0)
        if max_reconnect_time is not None:
            _check("max_reconnect_time", max_reconnect_time, 0)
        self.retry = retry
        self.backoff = backoff
        self.max_delay = max_delay
        self.jitter = jitter
        self.max_reconnects = max_reconnects
        self.max_reconnect_time = max_reconnect_time
        self.attempt = 0
        self._uniform = uniform
        self._lost_at: float | None = None  # when the first of the current attempts began

    def connected(self) -> None:
        """A connection was established: the next loss starts counting afresh."""
        self.attempt = 0
        self._lost_at = None

    def delay(self, attempt: int) -> float:
        """The wait before reconnection attempt `attempt` (from 1)."""
        cap = max(self.max_delay, self.retry)
        try:
            delay = min(self.retry * self.backoff ** (attempt - 1), cap)
        except OverflowError:
            delay = cap
        if self.jitter:
            delay = self._uniform(max(self.retry, delay / 2), min(delay * 3 / 2, cap))
        return delay

    def next_delay(self, cause: Exception, now: float) -> float:
        """Count one more attempt and return the wait before it, or raise `SSEReconnectError`."""
        if self._lost_at is None:
            self._lost_at = now
        limit, bound = self.max_reconnects, f"max_reconnects={self.max_reconnects}"
        if limit is None and isinstance(cause, SSEResponseError):
            # A refused answer retried (`retry_statuses`) is bounded even when nothing is set.
            limit = DEFAULT_MAX_STATUS_RETRIES
            bound = f"at most {limit} by default for a status"
        if limit is not None and self.attempt >= limit:
            raise SSEReconnectError(
                f"gave up after {self.attempt} reconnection attempts ({bound}); "
                f"last cause: {_describe(cause)}",
                self.attempt,
                cause,
            ) from cause
        delay = self.delay(self.attempt + 1)
        if (
            self.max_reconnect_time is not None
            and now + delay - self._lost_at > self.max_reconnect_time
        ):
            raise SSEReconnectError(
                f"gave up after {self.attempt} reconnection attempts in "
                f"{now - self._lost_at:.3f} s: the next, in {delay:.3f} s, would pass "
                f"max_reconnect_time={self.max_reconnect_time}; last cause: {_describe(cause)}",
                self.attempt,
                cause,
            ) from cause
        self.attempt += 1
        return delay


def _check(name: str, value: float, minimum: float) -> None:
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _retry_seconds(retry_ms: int | None, retry: float | None) -> float:
    """The initial reconnection time, from `retry_ms=` or the deprecated `retry=` (seconds)."""
    if retry is not None:
        if retry_ms is not None:
            raise TypeError("give retry_ms= (milliseconds), not also retry= (seconds)")
        warnings.warn(
            "retry= (seconds) is deprecated: use retry_ms= (milliseconds, the unit of the "
            "stream's own retry: field and of Event.retry)",
            DeprecationWarning,
            stacklevel=3,  # _retry_seconds <- __init__ <- the caller's line
        )
        return retry
    if retry_ms is None:
        return DEFAULT_RETRY_MS / 1000
    if isinstance(retry_ms, bool) or not isinstance(retry_ms, int):
        raise TypeError(f"retry_ms must be an int (milliseconds), got {retry_ms!r}")
    return retry_ms / 1000


def _request_of(error: httpx.RequestError) -> httpx.Request | None:
    try:
        return error.request
    except RuntimeError:  # httpx: "The .request property has not been set."
        return None


def _describe(cause: Exception) -> str:
    return f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__


ClientT = TypeVar("ClientT", httpx.AsyncClient, httpx.Client)


class _EventSourceBase(Generic[ClientT]):
    """What the async and the sync source share: the request, the checks, the bookkeeping."""

    _chunks: Any  # the open response's byte iterator (async or sync)

    def __init__(
        self,
        url: str | httpx.URL,
        *,
        client: ClientT | None = None,
        method: str = "GET",
        params: httpx.QueryParams | Mapping[str, Any] | None = None,
        headers: httpx.Headers | Mapping[str, str] | None = None,
        content: str | bytes | None = None,
        data: Mapping[str, Any] | None = None,
        json: Any = None,
        timeout: httpx.Timeout | float | None = DEFAULT_TIMEOUT,
        last_event_id: str = "",
        retry_ms: int | None = None,
        backoff: float = 1.0,
        max_delay: float = 60.0,
        jitter: bool = False,
        max_reconnects: int | None = None,
        max_reconnect_time: float | None = None,
        reconnect: bool = True,
        max_event_size: int | None = _DEFAULT_MAX_EVENT_SIZE,
        on_reconnect: OnReconnect | None = None,
        retry_statuses: Collection[int] = (),
        retry: float | None = None,
    ) -> None:
        self._client: ClientT | None = client
        self._owns_client = client is None
        self._response: httpx.Response | None = None
        self._chunks = None
        self.url = url
        self.method = method
        self._params = params
        self._headers = httpx.Headers(headers)
        # A Last-Event-ID among the headers is the initial id; the source sends its own.
        header_id = self._headers.pop("Last-Event-ID", "")
        last_event_id = last_event_id or header_id
        # What a browser's EventSource sends (its fetch is in no-store mode, which adds the
        # no-cache pair): no cache on the way may answer for the server.
        self._headers.setdefault("Accept", "text/event-stream")
        self._headers.setdefault("Cache-Control", "no-cache")
        self._headers.setdefault("Pragma", "no-cache")
        self._content = content
        self._data = data
        self._json = json
        self._timeout = timeout
        self._reconnection = _Reconnection(
            _retry_seconds(retry_ms, retry),
            backoff,
            max_delay,
            jitter,
            max_reconnects,
            max_reconnect_time,
        )
        self._retry_statuses = frozenset(retry_statuses)
        self._reconnect = reconnect
        self._max_event_size = max_event_size
        self._on_reconnect = on_reconnect
        self._parser: EventStreamParser | None = None
        self._received_id = last_event_id  # sent on reconnect: events queued are already in
        self._delivered_id = last_event_id  # the id as of the last event handed out
        self._stream_retry: int | None = None  # ms, as the stream last set it
        self._pending: deque[Event] = deque()
        self._delay: float | None = None  # set after a loss: wait this long, then reconnect
        self._done = False
        self._closed = False
        self._failure: EventTooLargeError | None = None  # raised once the events before it are out
        self.end_reason: EndReason | None = None

    @property
    def last_event_id(self) -> str:
        """The last event ID as of the last event this source returned.

        Set it initially with `last_event_id=`; it is sent as `Last-Event-ID` when not empty.
        An id-only block (no data) counts once every event before it has been returned.
        """
        return self._delivered_id if self._pending else self._received_id

    @property
    def retry_ms(self) -> int:
        """The current reconnection time in milliseconds: `retry_ms=`, or what the stream set."""
        return round(self._reconnection.retry * 1000)

    @property
    def retry(self) -> float:
        """Deprecated: the reconnection time in seconds; use `retry_ms`."""
        warnings.warn("EventSource.retry is deprecated: use retry_ms", DeprecationWarning, 2)
        return self._reconnection.retry

    def _end(self, reason: EndReason) -> None:
        self._done = True
        if self.end_reason is None:
            self.end_reason = reason

    def _raise_failure(self) -> None:
        """The source is done: raise the error it deferred until its events were out, once."""
        failure, self._failure = self._failure, None
        if failure is not None:
            self._end(EndReason.FAILED)
            raise failure

    def _close_state(self) -> None:
        self._closed = True
        self._failure = None
        self._end(EndReason.CLOSED)
        self._discard_pending()

    def _request(self, client: ClientT) -> httpx.Request:
        headers: httpx.Headers = self._headers
        if self._received_id:
            # The spec sends the id UTF-8 encoded; httpx would encode a str value as ASCII.
            last_event_id = (b"Last-Event-ID", self._received_id.encode())
            headers = httpx.Headers([*headers.raw, last_event_id])
        return client.build_request(
            self.method,
            self.url,
            params=self._params,
            headers=headers,
            content=self._content,
            data=self._data,
            json=self._json,
            timeout=self._timeout,
        )

    def _accept(self, response: httpx.Response) -> bool:
        """True: read `response` as the stream. False: close it, then pass it to `_reject`."""
        media_type = response.headers.get("content-type", "").partition(";")[0]
        if (
            self._closed
            or response.status_code != 200
            or media_type.strip().lower() != "text/event-stream"
        ):
            return False
        self._reconnection.connected()
        # Each connection parses from a clean state (a partial event is discarded), but the
        # last event ID and the reconnection time carry over, as in a browser.
        self._parser = EventStreamParser(self._received_id, self._max_event_size)
        self._parser.retry = self._stream_retry
        return True

    def _feed(self, chunk: bytes) -> bool:
        """Parse `chunk`. False: an event was too large, which ends the source (a retry
        would fail alike) once the events completed before it have been handed out."""
        assert self._parser is not None
        try:
            self._pending.extend(self._parser.feed(chunk))
        except EventTooLargeError as exc:
            self._pending.extend(exc.events)
            self._received_id = self._parser.last_event_id
            self._failure = exc
            self._done = True  # FAILED once the error is raised, after those events
            return False
        self._received_id = self._parser.last_event_id
        if self._parser.retry is not None and self._parser.retry != self._stream_retry:
            self._stream_retry = self._parser.retry
            self._reconnection.retry = self._parser.retry / 1000
        return True

    def _next_event(self) -> Event | None:
        try:
            event = self._pending.popleft()
        except IndexError:  # close() from another thread emptied it meanwhile
            return None
        self._delivered_id = event.id
        return event

    def _discard_pending(self) -> None:
        # Events parsed but never handed out are dropped, so last_event_id must not count them.
        if self._pending:
            self._received_id = self._delivered_id
            self._pending.clear()

    def _reject(self, response: httpx.Response) -> None:
        """A response `_accept` refused: 204 stops, a status of `retry_statuses` retries
        (a bounded number of times), any other fails the source, as in a browser."""
        if self._closed:
            return
        if response.status_code == 204:
            self._end(EndReason.NO_CONTENT)
            return
        error = SSEResponseError(response)
        if response.status_code not in self._retry_statuses or response.status_code == 200:
            self._end(EndReason.FAILED)
            raise error
        self._lost(error)  # the reconnection policy bounds it

    def _refused(self, error: Exception) -> NoReturn:
        """A request that would fail the same way again (a bad URL or scheme, too many
        redirects, a protocol error of ours): raised at once, as an `SSEConnectionError`."""
        self._end(EndReason.FAILED)
        request = _request_of(error) if isinstance(error, httpx.RequestError) else None
        raise SSEConnectionError(_describe(error), request=request) from error

    def _lost(self, cause: Exception) -> None:
        """The connection is gone or was refused: schedule the next one, stop, or raise."""
        self._parser = None
        if self._closed:
            return
        if not self._reconnect:
            if isinstance(cause, SSEStreamEndedError):
                self._end(EndReason.SERVER_CLOSED)
                return
            self._end(EndReason.FAILED)
            if isinstance(cause, httpx.TransportError) and not isinstance(cause, SSEError):
                raise SSEConnectionError(_describe(cause), request=_request_of(cause)) from cause
            raise cause
        try:
            delay = self._reconnection.next_delay(cause, time.monotonic())
        except SSEReconnectError:
            self._end(EndReason.GAVE_UP)
            raise
        attempt = self._reconnection.attempt
        # A refused answer retried is worth a look; a dropped connection is routine.
        level = logging.WARNING if isinstance(cause, SSEResponseError) else logging.INFO
        logger.log(
            level,
            "reconnecting to %s in %.3f s (attempt %d, Last-Event-ID %r) after %s",
            self.url,
            delay,
            attempt,
            self._received_id,
            _describe(cause),
        )
        if self._on_reconnect is not None:
            self._on_reconnect(attempt, delay, cause)
        self._delay = delay


class EventSource(_EventSourceBase[httpx.AsyncClient]):
    """An async event stream that reconnects like a browser's `EventSource`.

    ```
    async with EventSource("http://localhost:8000/events") as source:
        async for event in source:
            print(event.event, event.id, event.data)
    ```

    Connects on the first iteration. After a network error or the end of the response it
    waits `retry_ms` milliseconds (or the server's `retry:`), optionally growing by `backoff`
    up to `max_delay` seconds with `jitter`, and reconnects sending `Last-Event-ID`. As in a
    browser, a `204` ends the iteration and any other status than 200 (or another content
    type) raises `SSEResponseError`, unless the status is in `retry_statuses`: those are
    retried, at most `max_reconnects` times in a row (default 5), each with a WARNING.
    `max_reconnects` / `max_reconnect_time` bound the attempts since the last established
    connection; past them `SSEReconnectError` is raised. `reconnect=False` reads one
    response: its end ends the iteration, a network error raises `SSEConnectionError`.
    Every error raised is an `SSEError`; `end_reason` says why the iteration ended.

    `client` is used as given and left open (its base URL, auth, cookies, transport apply);
    without one the source creates and closes its own. Leaving `async with` or `aclose()`
    closes the response at once. `on_reconnect(attempt, delay, cause)` is called before each
    wait; each reconnection is also logged on `sse_starlette.client` (INFO, WARNING for a
    retried status). `retry=` (seconds) is the deprecated spelling of `retry_ms=`.
    """

    _chunks: AsyncIterator[bytes] | None
    # Set by aclose() to cut a reconnection wait; made by the first wait, in its event loop.
    _wake: anyio.Event | None = None
    _reading = False

    async def __aenter__(self) -> EventSource:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> EventSource:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._pending and (event := self._next_event()) is not None:
                return event
            if self._done:
                self._raise_failure()
                raise StopAsyncIteration
            if self._response is None:
                await self._connect()
            else:
                await self._read()

    async def aclose(self) -> None:
        """Close the response (the server sees the disconnect) and an owned client; idempotent."""
        self._close_state()
        if self._wake is not None:
            self._wake.set()
        await self._drop()
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            with anyio.CancelScope(shield=True):
                await client.aclose()

    async def _connect(self) -> None:
        if self._delay is not None:
            if self._wake is None:
                self._wake = anyio.Event()
            with anyio.move_on_after(self._delay):
                await self._wake.wait()
            self._delay = None
            if self._closed:
                return
        if self._client is None:
            self._client = httpx.AsyncClient()
        try:
            response = await self._client.send(
                self._request(self._client), stream=True, follow_redirects=True
            )
        except _NETWORK_ERRORS as exc:
            self._lost(exc)
            return
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            self._refused(exc)
        if self._accept(response):
            self._response, self._chunks = response, response.aiter_bytes()
        else:
            with anyio.CancelScope(shield=True):
                await response.aclose()
            self._reject(response)

    async def _read(self) -> None:
        try:
            chunk = await self._next_chunk()
        except StopAsyncIteration:
            cause: Exception = SSEStreamEndedError("the server ended the response")
        except _NETWORK_ERRORS as exc:
            cause = exc
        except BaseException as exc:
            # Cancelled (or closed under us) mid-read: the response is in an unknown state.
            # Drop it; iterating again reconnects from the last event ID.
            await self._drop()
            if self._closed and isinstance(exc, Exception):
                return
            if isinstance(exc, Exception):
                self._refused(exc)  # a body that cannot be read (a bad encoding, say)
            raise
        else:
            if not self._closed and not self._feed(chunk):
                await self._drop()
            return
        await self._drop()
        self._lost(cause)

    async def _next_chunk(self) -> bytes:
        assert self._chunks is not None
        self._reading = True  # until it ends, _drop() in another task must leave the iterator be
        try:
            return await self._chunks.__anext__()
        finally:
            self._reading = False

    async def _drop(self) -> None:
        chunks, self._chunks = self._chunks, None
        response, self._response = self._response, None
        with anyio.CancelScope(shield=True):
            if response is not None:
                await response.aclose()
            # A read in another task ends by itself now that the response is closed.
            if chunks is not None and not self._reading:
                await _finish(chunks)


async def _finish(chunks: AsyncIterator[bytes]) -> None:
    # httpx reads through a chain of async generators, and closing the outer one leaves the
    # inner ones suspended until garbage collection (a ResourceWarning on trio). One more read
    # of the closed response, cancelled at its first checkpoint, unwinds the whole chain.
    with anyio.CancelScope() as scope, contextlib.suppress(Exception):
        scope.cancel()
        async for _ in chunks:
            pass


class SyncEventSource(_EventSourceBase[httpx.Client]):
    """The blocking twin of `EventSource`, on `httpx.Client`, for scripts.

    ```
    with SyncEventSource("http://localhost:8000/events") as source:
        for event in source:
            print(event.data)
    ```

    Same parameters and rules as `EventSource`; `close()` instead of `aclose()`. `close()`
    may be called from another thread: it ends a reconnection wait or a blocked read at once.
    """

    _chunks: Iterator[bytes] | None
    _wake: threading.Event | None = None  # set by close() to cut a reconnection wait
    _reading = False

    def __enter__(self) -> SyncEventSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> SyncEventSource:
        return self

    def __next__(self) -> Event:
        while True:
            if self._pending and (event := self._next_event()) is not None:
                return event
            if self._done:
                self._raise_failure()
                raise StopIteration
            if self._response is None:
                self._connect()
            else:
                self._read()

    def close(self) -> None:
        """Close the response (the server sees the disconnect) and an owned client; idempotent.

        Thread-safe: from another thread it ends a reconnection wait or a read at once.
        """
        self._close_state()
        if self._wake is not None:
            self._wake.set()
        self._drop()
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            client.close()

    def _connect(self) -> None:
        if self._delay is not None:
            if self._wake is None:
                self._wake = threading.Event()
            # close() sets _closed before it looks for _wake: one of the two sees the other.
            if not self._closed:
                # An Event, not time.sleep: close() from another thread ends the wait at once
                # (and Ctrl+C still interrupts it in the main thread).
                self._wake.wait(min(self._delay, threading.TIMEOUT_MAX))
            self._delay = None
            if self._closed:
                return
        if self._client is None:
            self._client = httpx.Client()
        try:
            response = self._client.send(
                self._request(self._client), stream=True, follow_redirects=True
            )
        except _NETWORK_ERRORS as exc:
            self._lost(exc)
            return
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            self._refused(exc)
        if self._accept(response):
            self._response, self._chunks = response, response.iter_bytes()
        else:
            response.close()
            self._reject(response)

    def _read(self) -> None:
        chunks = self._chunks
        if chunks is None:
            return  # close() from another thread dropped the response meanwhile
        self._reading = True  # until it ends, close() in another thread leaves the iterator be
        try:
            chunk = next(chunks)
        except StopIteration:
            cause: Exception = SSEStreamEndedError("the server ended the response")
        except _NETWORK_ERRORS as exc:
            cause = exc
        except BaseException as exc:
            self._reading = False
            self._drop()
            # Closed from another thread mid-read: the iteration ends, not with its error.
            if self._closed and isinstance(exc, Exception):
                return
            if isinstance(exc, Exception):
                self._refused(exc)  # a body that cannot be read (a bad encoding, say)
            raise
        else:
            self._reading = False
            if not self._closed and not self._feed(chunk):
                self._drop()
            return
        self._reading = False
        self._drop()
        self._lost(cause)

    def _drop(self) -> None:
        chunks, self._chunks = self._chunks, None
        response, self._response = self._response, None
        if response is not None:
            if self._reading:
                _shut_down(response)
            response.close()
        close = getattr(chunks, "close", None)
        if close is not None and not self._reading:
            close()


def _shut_down(response: httpx.Response) -> None:
    # Closing a socket does not wake a recv() blocked on it in another thread; shutting it
    # down does. httpx exposes the connection's stream as the "network_stream" extension.
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
