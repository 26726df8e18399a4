"""One subscriber's event stream: counted, logged, and closed when its token expires."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from sse_starlette.broker import BrokerEvent, Subscription
from sse_starlette.hub.metrics import HubMetrics
from sse_starlette.sse import EventSourceResponse, SendTimeoutError

__all__ = ["HubStream"]

logger = logging.getLogger("sse_starlette.hub")
_numbers = itertools.count(1)


class HubStream(Response):
    """An `EventSourceResponse` of `subscription`, ended at `expires` (seconds since the
    epoch) if given; every end is counted once, by reason."""

    def __init__(
        self,
        subscription: Subscription,
        metrics: HubMetrics,
        *,
        headers: list[tuple[bytes, bytes]],
        expires: float | None,
        ping: float,
        send_timeout: float | None,
        stopping: anyio.Event,
        on_end: Callable[[], Awaitable[None]],
    ) -> None:
        self.subscription = subscription
        self.metrics = metrics
        self.stream_headers = headers
        self.expires = expires
        self.ping = ping
        self.send_timeout = send_timeout
        self.stopping = stopping
        self.on_end = on_end
        self.number = next(_numbers)
        self.events = 0
        self.bytes = 0
        self.client_left = False
        self.expired = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics, subscription = self.metrics, self.subscription
        client = scope.get("client")
        peer = f"{client[0]}:{client[1]}" if client else "-"
        # %r: topics and ids are the client's text; a CR or LF in them forges no log line.
        logger.info(
            "stream %d opened: %s topics=%r last-event-id=%r",
            self.number, peer, [str(t) for t in subscription.topics], subscription.last_event_id,
        )  # fmt: skip
        metrics.streams.inc()
        metrics.streams_open.inc()
        started = time.monotonic()
        reason = "error"
        try:
            response = EventSourceResponse(
                self._events(),
                ping=self.ping,
                send_timeout=self.send_timeout,
                client_close_handler_callable=self._client_left,
            )
            # Bytes of our own (a Last-Event-ID may be any IRI): a str header is Latin-1.
            replaced = {name for name, _ in self.stream_headers}
            response.raw_headers = [
                *(h for h in response.raw_headers if h[0] not in replaced),
                *self.stream_headers,
            ]
            async with anyio.create_task_group() as tasks:
                if self.expires is not None:
                    tasks.start_soon(self._expire, self.expires)
                await response(scope, receive, self._counting(send))
                tasks.cancel_scope.cancel()
            if self.client_left:
                reason = "client"
            elif self.expired:
                reason = "token-expired"
            elif self.stopping.is_set():
                reason = "shutdown"
            else:
                reason = "slow-consumer"
        except SendTimeoutError:
            reason = "send-timeout"  # the client stopped reading: the server drops it
        except anyio.get_cancelled_exc_class():
            reason = "shutdown"
            raise
        finally:
            await subscription.aclose()  # also when the response never started
            await self.on_end()
            metrics.disconnects.labels(reason).inc()
            metrics.streams_open.dec()
            logger.info(
                "stream %d closed (%s) after %.1fs: %d events, %d bytes",
                self.number, reason, time.monotonic() - started, self.events, self.bytes,
            )  # fmt: skip

    async def _expire(self, expires: float) -> None:
        await anyio.sleep(max(0.0, expires - time.time()))
        self.expired = True
        await self.subscription.aclose()  # the iteration ends: the stream closes cleanly

    def _counting(self, send: Send) -> Send:
        bytes_sent = self.metrics.bytes_sent

        async def counting_send(message: Message) -> None:
            await send(message)
            size = len(message.get("body", b""))
            self.bytes += size
            bytes_sent.inc(size)

        return counting_send

    async def _client_left(self, message: Message) -> None:
        self.client_left = True

    async def _events(self) -> AsyncIterator[BrokerEvent]:
        delivered = self.metrics.delivered
        # A resume cut short (the history trimmed while it was read) ends the subscription:
        # the client reconnects to a `Last-Event-ID: earliest` header and can tell.
        async with self.subscription as subscription:
            async for event in subscription:
                yield event
                # The response asks for the next item only once this one was sent.
                self.events += 1
                delivered.inc()
