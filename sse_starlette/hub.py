"""A standalone publish/subscribe hub: `POST /publish`, `GET /subscribe?topic=...`.

`create_hub()` returns a Starlette app (`python -m sse_starlette hub` serves it with uvicorn).
Events go through a `Broker`: in memory for one process, on Redis for several processes and
hosts that act as one hub. Access is granted per topic by signed tokens (JWT) whose claims
list the topics a holder may publish to and subscribe to; without a key the hub is open.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from sse_starlette.broker import (
    Broker,
    BrokerEvent,
    BrokerUnavailableError,
    Subscription,
    request_last_event_id,
)
from sse_starlette.event import check_fields, dumps
from sse_starlette.sse import EventSourceResponse, SendTimeoutError

__all__ = ["create_hub"]

logger = logging.getLogger("sse_starlette.hub")

_EVENT_FIELDS = frozenset(("topic", "data", "event", "retry", "comment"))
_DISCONNECT_REASONS = ("client", "slow-consumer", "send-timeout", "shutdown", "error")


class _Rejected(Exception):
    """A request the hub refuses: a 4xx/5xx with a message, and nothing published."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message

    def response(self) -> Response:
        headers = {}
        if self.status == 401:
            # RFC 6750: tell the client which scheme to use, and why its token failed.
            headers["WWW-Authenticate"] = (
                'Bearer error="invalid_token"' if self.reason == "invalid-token" else "Bearer"
            )
        return JSONResponse({"error": self.message}, self.status, headers=headers)


class _Grants:
    """The topics a token holder may publish to and subscribe to.

    A pattern is a topic name, or a prefix followed by `*` (`chat.*`, and `*` for every topic).
    """

    def __init__(self, publish: Sequence[str], subscribe: Sequence[str]) -> None:
        self.patterns = {"publish": tuple(publish), "subscribe": tuple(subscribe)}

    def allows(self, action: str, topic: str) -> bool:
        for pattern in self.patterns[action]:
            if pattern == topic or (pattern.endswith("*") and topic.startswith(pattern[:-1])):
                return True
        return False


_EVERYTHING = _Grants(["*"], ["*"])


class _Tokens:
    """Checks the JWT a request carries (header, query parameter or cookie) and reads its grants."""

    def __init__(
        self,
        *,
        secret: str | None,
        public_key: str | None,
        audience: str | None,
        cookie_name: str,
    ) -> None:
        if secret is not None and public_key is not None:
            raise ValueError("configure either a JWT secret (HS256) or a public key (RS256)")
        self.open = secret is None and public_key is None
        self.audience = audience
        self.cookie_name = cookie_name
        self.key: Any = None
        self.jwt: Any = None
        self.algorithm = "HS256" if secret is not None else "RS256"
        if self.open:
            return
        try:
            # Imported only when a key is configured: an open hub runs without PyJWT.
            import jwt
            from jwt.algorithms import RSAAlgorithm
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise ImportError("JWT keys need PyJWT: pip install 'sse-starlette[jwt]'") from exc
        self.jwt = jwt
        if public_key is not None:
            # Parsed now, so that a bad key file stops the hub at start-up, not at a request.
            try:
                key = RSAAlgorithm(RSAAlgorithm.SHA256).prepare_key(public_key)
            except jwt.InvalidKeyError as exc:
                raise ValueError(f"the RS256 public key cannot be read: {exc}") from None
            # A private key file works too: only its public half is used.
            self.key = getattr(key, "public_key", lambda: key)()
        else:
            if len(secret.encode()) < 32:  # type: ignore[union-attr]
                logger.warning("the JWT secret is shorter than 32 bytes: it can be brute-forced")
            self.key = secret

    def grants(self, request: Request) -> _Grants:
        if self.open:
            return _EVERYTHING
        token = self._token(request)
        try:
            claims = self.jwt.decode(
                token,
                self.key,
                algorithms=[self.algorithm],  # never the one the token names: no alg confusion
                audience=self.audience,
                options={"require": ["aud"] if self.audience is not None else []},
            )
        except self.jwt.ExpiredSignatureError:
            raise _Rejected(401, "invalid-token", "the token has expired") from None
        except self.jwt.InvalidTokenError as exc:
            raise _Rejected(401, "invalid-token", f"invalid token: {exc}") from None
        sse = claims.get("sse")
        if not isinstance(sse, dict):
            raise _Rejected(401, "invalid-token", "the token has no 'sse' claim (an object)")
        lists = []
        for action in ("publish", "subscribe"):
            topics = sse.get(action, [])
            if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
                message = f"the token's 'sse.{action}' claim must be a list of topic names"
                raise _Rejected(401, "invalid-token", message)
            lists.append(topics)
        return _Grants(*lists)

    def _token(self, request: Request) -> str:
        authorization = request.headers.get("authorization")
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise _Rejected(401, "invalid-token", "Authorization must be 'Bearer <token>'")
            return token.strip()
        # A browser's EventSource cannot set headers: the token may come in the URL or a cookie.
        token = request.query_params.get("token") or request.cookies.get(self.cookie_name, "")
        if not token:
            raise _Rejected(
                401,
                "missing-token",
                "a token is required: 'Authorization: Bearer <token>', "
                f"?token=<token> or the cookie {self.cookie_name!r}",
            )
        return token


class _Counters:
    """The hub's own counters; /metrics adds the broker's."""

    def __init__(self) -> None:
        self.streams_opened = 0
        self.published = 0
        self.delivered = 0
        self.bytes_sent = 0
        self.disconnects: Counter[str] = Counter({reason: 0 for reason in _DISCONNECT_REASONS})
        self.rejected: Counter[tuple[str, str]] = Counter()

    @property
    def streams_open(self) -> int:
        return self.streams_opened - self.disconnects.total()  # every end is counted once


class _Hub:
    """The hub's endpoints, its broker, its tokens and its counters."""

    def __init__(
        self,
        broker: Broker,
        tokens: _Tokens,
        *,
        max_payload: int,
        ping: float,
        send_timeout: float | None,
    ) -> None:
        self.broker = broker
        self.tokens = tokens
        self.max_payload = max_payload
        self.ping = ping
        self.send_timeout = send_timeout
        self.counters = _Counters()
        self.stopping = False
        self.stream_numbers = itertools.count(1)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        if self.tokens.open:
            logger.warning(
                "OPEN MODE: no JWT key is configured, so anyone who can reach this hub may "
                "publish to and subscribe to every topic. Set --jwt-key / SSE_HUB_JWT_KEY "
                "(HS256) or --jwt-public-key-file / SSE_HUB_JWT_PUBLIC_KEY_FILE (RS256)."
            )
        else:
            logger.info("tokens required: %s", self.tokens.algorithm)
        async with self.broker:
            try:
                yield
            finally:
                self.stopping = True

    # --- publish -----------------------------------------------------------------------------

    async def publish(self, request: Request) -> Response:
        try:
            grants = self.tokens.grants(request)
            body = await self._body(request)
            topic, fields = _parse_event(body)
            if not grants.allows("publish", topic):
                raise _Rejected(
                    403, "forbidden", f"the token does not allow publishing to {topic!r}"
                )
            try:
                id = await self.broker.publish(topic, fields)
            except (ValueError, TypeError) as exc:
                raise _Rejected(400, "invalid-event", str(exc)) from None
            except BrokerUnavailableError as exc:
                raise _Rejected(503, "unavailable", str(exc)) from None
        except _Rejected as rejected:
            self.counters.rejected["publish", rejected.reason] += 1
            return rejected.response()
        self.counters.published += 1
        return JSONResponse({"id": id, "topic": topic})

    async def _body(self, request: Request) -> bytes:
        too_large = _Rejected(
            413, "too-large", f"the payload exceeds the limit of {self.max_payload} bytes"
        )
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_payload:
            raise too_large  # refused before reading a byte of it
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.max_payload:
                raise too_large
        return bytes(body)

    # --- subscribe ---------------------------------------------------------------------------

    async def subscribe(self, request: Request) -> Response:
        try:
            topics = request.query_params.getlist("topic")
            if not topics or not all(topics):
                raise _Rejected(400, "bad-request", "name at least one topic: ?topic=<name>")
            grants = self.tokens.grants(request)
            refused = [topic for topic in topics if not grants.allows("subscribe", topic)]
            if refused:
                message = f"the token does not allow subscribing to {', '.join(map(repr, refused))}"
                raise _Rejected(403, "forbidden", message)
        except _Rejected as rejected:
            self.counters.rejected["subscribe", rejected.reason] += 1
            return rejected.response()
        last_event_id = request_last_event_id(request)
        return _HubStream(self, self.broker.subscribe(topics, last_event_id))

    # --- health and metrics ------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        problem = await self.broker.backend.health()
        if problem is not None:
            return JSONResponse({"status": "unavailable", "error": problem}, 503)
        return JSONResponse({"status": "ok"})

    async def metrics(self, request: Request) -> Response:
        return PlainTextResponse(
            self.metrics_text(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    def metrics_text(self) -> str:
        """The counters in Prometheus' text exposition format."""
        counters, broker = self.counters, self.broker.metrics
        disconnects = {
            f'{{reason="{reason}"}}': n for reason, n in sorted(counters.disconnects.items())
        }
        rejected = {
            f'{{endpoint="{endpoint}",reason="{reason}"}}': n
            for (endpoint, reason), n in sorted(counters.rejected.items())
        }
        metrics: list[tuple[str, str, str, dict[str, int]]] = [
            ("streams_open", "gauge", "Event streams open now.", {"": counters.streams_open}),
            ("streams_total", "counter", "Event streams opened.", {"": counters.streams_opened}),
            ("events_published_total", "counter", "Events published through this process.",
             {"": counters.published}),
            ("events_delivered_total", "counter",
             "Events written to the event streams of this process.", {"": counters.delivered}),
            ("bytes_sent_total", "counter", "Bytes written to event streams (events and pings).",
             {"": counters.bytes_sent}),
            ("disconnects_total", "counter", "Event streams ended, by reason.", disconnects),
            ("slow_consumer_disconnects_total", "counter",
             "Streams ended because their client fell too far behind.",
             {"": broker.slow_consumer_disconnects}),
            ("slow_consumer_drops_total", "counter",
             "Events dropped for clients that fell too far behind (drop_oldest).",
             {"": broker.slow_consumer_drops}),
            ("resumes_total", "counter", "Streams that asked to resume after a Last-Event-ID.",
             {"": broker.resumes}),
            ("resets_total", "counter",
             "Resumes that could not be served exactly and got a reset event instead.",
             {"": broker.resets}),
            ("rejected_total", "counter", "Requests refused, by endpoint and reason.", rejected),
        ]  # fmt: skip
        lines = []
        for name, kind, help, samples in metrics:
            lines.append(f"# HELP sse_hub_{name} {help}")
            lines.append(f"# TYPE sse_hub_{name} {kind}")
            lines.extend(f"sse_hub_{name}{labels} {value}" for labels, value in samples.items())
        return "\n".join(lines) + "\n"

    async def index(self, request: Request) -> Response:
        mode = "open (no token needed)" if self.tokens.open else f"{self.tokens.algorithm} tokens"
        return PlainTextResponse(
            "sse-starlette hub\n\n"
            "POST /publish        JSON {topic, data, event, retry, comment}\n"
            "GET  /subscribe      ?topic=<name> (repeatable): text/event-stream\n"
            "GET  /metrics        Prometheus text format\n"
            "GET  /healthz\n\n"
            f"access: {mode}\n"
        )


def _parse_event(body: bytes) -> tuple[str, dict[str, Any]]:
    """The topic and the event fields of a publish request's JSON body."""

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        message = json.loads(body, parse_constant=no_constant)
    except ValueError as exc:  # also UnicodeDecodeError
        raise _Rejected(400, "malformed-json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(message, dict):
        raise _Rejected(400, "bad-request", "the body must be a JSON object")
    topic = message.pop("topic", None)
    if not isinstance(topic, str) or not topic:
        raise _Rejected(400, "bad-request", "'topic' must be a non-empty string")
    if "id" in message:
        raise _Rejected(400, "invalid-event", "the hub assigns event ids: publish without 'id'")
    try:
        check_fields(message, _EVENT_FIELDS)  # `topic` was taken out: it is listed as allowed
    except TypeError as exc:
        raise _Rejected(400, "invalid-event", str(exc)) from None
    data = message.get("data")
    if data is not None and not isinstance(data, str):
        message["data"] = dumps(data)  # any other JSON value is sent as compact JSON
    return topic, {name: value for name, value in message.items() if value is not None}


class _HubStream(Response):
    """One subscriber's event stream, counted and logged from its opening to its end."""

    def __init__(self, hub: _Hub, subscription: Subscription) -> None:
        self.hub = hub
        self.subscription = subscription
        self.number = next(hub.stream_numbers)
        self.events = 0
        self.bytes = 0
        self.client_left = False
        self.ended_by_broker = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub, counters = self.hub, self.hub.counters
        client = scope.get("client")
        peer = f"{client[0]}:{client[1]}" if client else "-"
        logger.info(
            "stream %d opened: %s topics=%s last-event-id=%s",
            self.number,
            peer,
            ",".join(self.subscription.topics),
            self.subscription.last_event_id,
        )
        counters.streams_opened += 1
        started = time.monotonic()
        reason = "error"
        response = EventSourceResponse(
            self._events(),
            ping=hub.ping,
            send_timeout=hub.send_timeout,
            client_close_handler_callable=self._client_left,
        )
        try:
            await response(scope, receive, self._counting(send))
            if self.client_left:
                reason = "client"
            elif self.ended_by_broker and not hub.stopping:
                reason = "slow-consumer"
            else:
                reason = "shutdown"
        except SendTimeoutError:
            # The client stopped reading: the connection is dropped (the server closes it).
            reason = "send-timeout"
        except anyio.get_cancelled_exc_class():
            reason = "shutdown"
            raise
        finally:
            counters.disconnects[reason] += 1
            logger.info(
                "stream %d closed (%s) after %.1fs: %d events, %d bytes",
                self.number,
                reason,
                time.monotonic() - started,
                self.events,
                self.bytes,
            )

    def _counting(self, send: Send) -> Send:
        counters = self.hub.counters

        async def counting_send(message: Message) -> None:
            await send(message)
            size = len(message.get("body", b""))
            self.bytes += size
            counters.bytes_sent += size

        return counting_send

    async def _client_left(self, message: Message) -> None:
        self.client_left = True

    async def _events(self) -> AsyncIterator[BrokerEvent]:
        counters = self.hub.counters
        async with self.subscription as subscription:
            async for event in subscription:
                yield event
                # The response asks for the next item only once this one was sent.
                self.events += 1
                counters.delivered += 1
        self.ended_by_broker = True


def create_hub(
    broker: Broker | None = None,
    *,
    jwt_secret: str | None = None,
    jwt_public_key: str | None = None,
    jwt_audience: str | None = None,
    cookie_name: str = "sse_token",
    max_payload: int = 65536,
    ping: float = 15,
    send_timeout: float | None = 30,
    cors_origins: Sequence[str] = (),
) -> Starlette:
    """The hub as a Starlette app; its lifespan starts and stops `broker`.

    Args:
        broker: where events go (default: `Broker()`, in memory). A `Broker("redis://...")`
            makes every hub process on that Redis act as one hub.
        jwt_secret: HS256 secret that signs the tokens. Tokens are required when this or
            `jwt_public_key` is set; without either the hub is open to everyone.
        jwt_public_key: PEM public key that verifies RS256 tokens.
        jwt_audience: when set, tokens must carry this `aud` claim.
        cookie_name: the cookie a token may come in (besides `Authorization: Bearer` and
            `?token=`).
        max_payload: the largest `POST /publish` body accepted, in bytes (larger: 413).
        ping: seconds between keep-alive comments on event streams.
        send_timeout: seconds a write to an event stream may take before the stream is
            dropped (a client that stopped reading); None: no limit.
        cors_origins: origins whose pages may call the hub (`["*"]`: any).

    Tokens carry `{"sse": {"publish": [...], "subscribe": [...]}}`: topic names, or prefixes
    ending in `*` (`"*"` alone: every topic). See docs/hub.md.
    """
    if max_payload < 1:
        raise ValueError("max_payload must be >= 1")
    tokens = _Tokens(
        secret=jwt_secret,
        public_key=jwt_public_key,
        audience=jwt_audience,
        cookie_name=cookie_name,
    )
    hub = _Hub(
        broker if broker is not None else Broker(),
        tokens,
        max_payload=max_payload,
        ping=ping,
        send_timeout=send_timeout,
    )
    middleware = []
    if cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
                allow_credentials=True,  # the token cookie
            )
        )
    app = Starlette(
        routes=[
            Route("/", hub.index),
            Route("/publish", hub.publish, methods=["POST"]),
            Route("/subscribe", hub.subscribe),
            Route("/metrics", hub.metrics),
            Route("/healthz", hub.healthz),
        ],
        middleware=middleware,
        lifespan=hub.lifespan,
    )
    app.state.hub = hub
    return app
