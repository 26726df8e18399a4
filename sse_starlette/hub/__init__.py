"""A Mercure hub (draft-07, as the Go hub 0.x speaks it) on the broker: `create_hub()`.

    POST /.well-known/mercure   publish an update (form-encoded; a publisher's token)
    GET  /.well-known/mercure   subscribe: ?topic=<selector> (repeatable), text/event-stream
    GET  /metrics               Prometheus text format
    GET  /healthz               200, or 503 when the broker's backend is unavailable

Events go through a `Broker`: in memory for one process, on Redis (or a Redis Cluster) for
several processes and hosts that act as one hub. See docs/hub.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote_plus

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from sse_starlette.broker import Broker, BrokerUnavailableError, request_last_event_id
from sse_starlette.hub.access import AccessLog
from sse_starlette.hub.auth import Claims, Key, Rejected, origin_allowed, read_token
from sse_starlette.hub.metrics import HubMetrics
from sse_starlette.hub.publish import parse_update, read_body
from sse_starlette.hub.selectors import allows, compile_selectors, templates
from sse_starlette.hub.settings import HubSettings
from sse_starlette.hub.stream import HubStream
from sse_starlette.hub.subscriptions import BASE, CONTEXT, presence_for, subscription_document

__all__ = ["HubSettings", "create_hub"]

logger = logging.getLogger("sse_starlette.hub")

PATH = "/.well-known/mercure"
# What the Go hub sends: no cache, anywhere, of a stream or of the token in its URL.
_NO_CACHE = "private, no-cache, no-store, must-revalidate, max-age=0"


class _Hub:
    """The hub's endpoints, its broker, its keys and its counters."""

    def __init__(self, broker: Broker, settings: HubSettings) -> None:
        self.broker = broker
        self.settings = settings
        self.metrics = HubMetrics(broker.metrics)
        self.stopping = anyio.Event()
        # The URI templates subscribed to in this process, by the streams using each: every
        # distinct one is matched against every update, so their number is bounded.
        self.templates: Counter[str] = Counter()
        self.presence = presence_for(broker) if settings.subscriptions else None
        self.streams_per_token: Counter[str] = Counter()  # by the token's hash
        options = {"audience": settings.jwt_audience, "leeway": settings.jwt_leeway}
        publisher = settings.publisher_jwt_key or settings.jwt_key
        subscriber = settings.subscriber_jwt_key or settings.jwt_key
        # Keys are read now: a bad key stops the hub at start-up, not at a request.
        self.publisher_key = None if publisher is None else Key(publisher, **options)  # type: ignore[arg-type]
        self.subscriber_key = None if subscriber is None else Key(subscriber, **options)  # type: ignore[arg-type]

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        if self.publisher_key is None:
            logger.warning("no publisher key (jwt_key): nobody can publish to this hub")
        async with self.broker, anyio.create_task_group() as tasks:
            if self.presence is not None:
                tasks.start_soon(self.presence.run)
            try:
                yield
            finally:
                self.stopping.set()
                tasks.cancel_scope.cancel()

    def _refused(self, endpoint: str, rejected: Rejected) -> Response:
        self.metrics.rejected.labels(endpoint, rejected.reason).inc()
        headers = {}
        if rejected.status == 401:
            # RFC 6750: tell the client which scheme to use, and why its token failed.
            headers["WWW-Authenticate"] = (
                'Bearer error="invalid_token"' if rejected.reason == "invalid-token" else "Bearer"
            )
        return PlainTextResponse(rejected.message + "\n", rejected.status, headers=headers)

    # --- publish -----------------------------------------------------------------------------

    async def publish(self, request: Request) -> Response:
        settings = self.settings
        try:
            token = read_token(request, settings.cookie_name)
            if token is None:
                raise Rejected(401, "missing-token", "publishing needs a token")
            if self.publisher_key is None:
                raise Rejected(401, "invalid-token", "this hub has no key for publishers")
            claims = self.publisher_key.claims(token)
            if token.source == "cookie" and not origin_allowed(request, settings.publish_origins):
                # A page of any site could make a browser send the cookie (CSRF).
                raise Rejected(403, "forbidden-origin", "this origin may not publish")
            body = await read_body(request, settings.max_body)
            update = parse_update(request.headers.get("content-type", ""), body, settings)
            refused = [topic for topic in update.topics if not allows(claims.publish, topic)]
            if refused:
                message = f"the token does not allow publishing to {refused[0]!r}"
                raise Rejected(403, "forbidden", message)
            try:
                id = await self.broker.publish(update.topics, update.fields, private=update.private)
            except (ValueError, TypeError) as exc:
                raise Rejected(400, "invalid-update", str(exc)) from None
            except BrokerUnavailableError as exc:
                raise Rejected(503, "unavailable", str(exc)) from None
        except Rejected as rejected:
            return self._refused("publish", rejected)
        except ClientDisconnect:
            # The client went away while sending: there is no one to answer.
            return self._refused("publish", Rejected(400, "client-left", "incomplete body"))
        self.metrics.published.inc()
        return PlainTextResponse(id)

    # --- subscribe ---------------------------------------------------------------------------

    async def subscribe(self, request: Request) -> Response:
        settings = self.settings
        try:
            texts = request.query_params.getlist("topic")
            if not texts or not all(texts):
                raise Rejected(400, "bad-request", "missing topic: ?topic=<selector>")
            if len(texts) > settings.max_selectors:
                message = f"a subscription has at most {settings.max_selectors} selectors"
                raise Rejected(400, "too-many-selectors", message)
            # Counted before anything is compiled: compiling costs too.
            budget = settings.max_template_bytes
            if sum(len(t.encode()) for t in texts if "{" in t) > budget:
                message = f"a subscription's URI templates hold at most {budget} bytes"
                raise Rejected(400, "templates-too-large", message)
            claims = self._subscriber(request)
            selectors = compile_selectors(texts)
            used = templates(selectors)
            if len(self.templates.keys() | used) > settings.max_templates:
                raise Rejected(429, "too-many-templates", "this hub holds too many templates now")
            # Counted by the token's hash, and only when there is a limit to count for.
            limit = settings.max_streams_per_token
            holder = hashlib.sha256(claims.token.encode()).hexdigest() if claims and limit else ""
            if holder and self.streams_per_token[holder] >= limit:
                message = f"at most {limit} streams may be open at once with one token"
                raise Rejected(429, "too-many-streams", message)
        except Rejected as rejected:
            return self._refused("subscribe", rejected)
        self.templates.update(used)
        if holder:
            self.streams_per_token[holder] += 1
        last_event_id = request_last_event_id(request, "lastEventID")
        private = claims.subscribe if claims is not None and claims.subscribe else None
        subscription = self.broker.subscribe(
            selectors, last_event_id, private=private, positions=False
        )
        # Attached and resumed now: the Last-Event-ID response header says from where.
        await subscription.start()
        documents = []
        if self.presence is not None:
            subscriber = f"urn:uuid:{uuid.uuid4()}"
            payload = None if claims is None else claims.payload
            documents = [subscription_document(text, subscriber, payload) for text in texts]
            await self._announce(documents, active=True)
        headers = [(b"cache-control", _NO_CACHE.encode()), (b"x-accel-buffering", b"no")]
        if last_event_id is not None:
            # UTF-8: an id may be any IRI. Echoed only when found, and only when a header can
            # carry it (the hub refuses such ids; one published through the broker may not).
            exact = subscription.resume == "exact" and _header_safe(last_event_id)
            echoed = last_event_id if exact else "earliest"
            headers.append((b"last-event-id", echoed.encode()))
        return HubStream(
            subscription,
            self.metrics,
            headers=headers,
            expires=None if claims is None else claims.expires,
            ping=settings.ping,
            send_timeout=settings.send_timeout or None,
            stopping=self.stopping,
            on_end=lambda: self._release(used, documents, holder),
        )

    async def _release(self, used: set[str], documents: list[dict[str, Any]], holder: str) -> None:
        # Counter's -= drops what reaches zero: the counters hold only what is in use.
        self.streams_per_token -= Counter([holder] if holder else [])
        self.templates -= Counter(used)
        if documents:
            await self._announce(documents, active=False)

    async def _announce(self, documents: list[dict[str, Any]], *, active: bool) -> None:
        """Record the subscriptions as active (or not), and publish each as a private update."""
        assert self.presence is not None
        try:
            if active:
                await self.presence.add(documents)
            else:
                await self.presence.remove(documents)
            for document in documents:
                content = {"@context": CONTEXT, **document, "active": active}
                update = {"data": json.dumps(content, indent=2), "id": f"urn:uuid:{uuid.uuid4()}"}
                await self.broker.publish(document["id"], update, private=True)
        except Exception as exc:  # the backend is down, or the broker stopped: the stream goes on
            logger.warning("subscription update not published: %s", exc)

    # --- active subscriptions ----------------------------------------------------------------

    async def subscriptions(self, request: Request) -> Response:
        """The active subscriptions: all, of one selector, or one (draft-07 §Subscription API)."""
        if self.presence is None:
            return PlainTextResponse("Not Found\n", 404)
        raw = request.scope.get("raw_path") or request.scope["path"].encode()
        current = raw.decode("latin-1")
        if request.scope.get("query_string"):
            current += "?" + request.scope["query_string"].decode("latin-1")
        try:
            claims = self._subscriber(request)
            if claims is None:
                raise Rejected(401, "missing-token", "the subscriptions API needs a token")
            if not allows(claims.subscribe, current):
                raise Rejected(403, "forbidden", "the token does not allow this URL")
        except Rejected as rejected:
            return self._refused("subscriptions", rejected)
        parts = [unquote_plus(p) for p in raw.decode("latin-1")[len(BASE) :].split("/")[1:]]
        if len(parts) > 2:
            return PlainTextResponse("Not Found\n", 404)
        documents = await self.presence.active()
        if parts:
            documents = [d for d in documents if d["topic"] == parts[0]]
        if len(parts) == 2:
            documents = [d for d in documents if d["subscriber"] == parts[1]]
        last = await self.broker.backend.last()
        last_event_id = "earliest" if last is None else last.id
        if len(parts) == 2:
            if not documents:
                return PlainTextResponse("Not Found\n", 404)
            body: dict[str, Any] = {
                "@context": CONTEXT,
                **documents[0],
                "lastEventID": last_event_id,
            }
        else:
            body = {"@context": CONTEXT, "id": current, "type": "Subscriptions",
                    "lastEventID": last_event_id, "subscriptions": documents}  # fmt: skip
        return Response(json.dumps(body), media_type="application/ld+json")

    def _subscriber(self, request: Request) -> Claims | None:
        """The subscriber's claims; None: anonymous (public updates only)."""
        token = read_token(request, self.settings.cookie_name)
        if token is None:
            if not self.settings.anonymous:
                raise Rejected(401, "missing-token", "subscribing needs a token")
            return None
        if self.subscriber_key is None:
            raise Rejected(401, "invalid-token", "this hub has no key for subscribers")
        return self.subscriber_key.claims(token)

    # --- health, metrics, index --------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        problem = await self.broker.backend.health()
        if problem is not None:
            return JSONResponse({"status": "unavailable", "error": problem}, 503)
        return JSONResponse({"status": "ok"})

    async def prometheus(self, request: Request) -> Response:
        return Response(self.metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def index(self, request: Request) -> Response:
        return PlainTextResponse(
            "sse-starlette Mercure hub\n\n"
            f"POST {PATH}   publish (form: topic, data, private, id, type, retry)\n"
            f"GET  {PATH}   subscribe: ?topic=<selector> (repeatable)\n"
            "GET  /metrics   Prometheus text format\n"
            "GET  /healthz\n"
        )


def _header_safe(value: str) -> bool:
    """No control characters: a value a response header may carry (an update published
    straight through the broker, not the hub, could hold one)."""
    return not any(c < " " or c == "\x7f" for c in value)


def create_hub(broker: Broker | None = None, **settings: Any) -> Starlette:
    """The hub as a Starlette app; its lifespan starts and stops `broker`.

    Args:
        broker: where updates go (default: `Broker()`, in memory). A `Broker("redis://...")`
            makes every hub process on that Redis act as one hub.
        settings: the fields of `HubSettings` (keys, limits, CORS...): see docs/hub.md.
    """
    config = HubSettings(**settings)
    broker = broker if broker is not None else Broker()
    broker.reset_event = None  # Mercure has no reset event: the Last-Event-ID header tells
    hub = _Hub(broker, config)
    middleware = [Middleware(AccessLog)]
    if config.cors_origins:
        any_origin = "*" in config.cors_origins
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(config.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "Cache-Control"],
                expose_headers=["Last-Event-ID"],
                # Credentials (the token cookie) only for origins named: with `*` Starlette
                # would reflect any origin and let every site read cookie-authorized streams.
                allow_credentials=not any_origin,
            )
        )
    app = Starlette(
        routes=[
            Route("/", hub.index),
            Route(PATH, hub.subscribe, methods=["GET"]),
            Route(PATH, hub.publish, methods=["POST"]),
            Route(BASE, hub.subscriptions),
            Route(BASE + "/{rest:path}", hub.subscriptions),
            Route("/metrics", hub.prometheus),
            Route("/healthz", hub.healthz),
        ],
        middleware=middleware,
        lifespan=hub.lifespan,
    )
    # No redirect for a trailing slash: Starlette's redirect rebuilds the URL from the raw
    # query string, which fails on bytes an ASGI server other than uvicorn lets through.
    app.router.redirect_slashes = False
    app.state.hub = hub
    return app
