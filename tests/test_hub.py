"""The Mercure hub (draft-07) in-process: publish, subscribe, selectors, tokens, private updates,
resume, CORS, limits, metrics and logs. On the memory broker under asyncio and trio; the core
of it on Redis too (asyncio only)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlencode

import anyio
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.types import Message

import sse_starlette.hub.stream
from sse_starlette.broker import Broker
from sse_starlette.hub import create_hub
from tests.asgi import ASGICall, asgi_call, http_scope
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio

SECRET = "a test secret of at least 32 bytes, shared with the hub"
PATH = "/.well-known/mercure"
FORM = "application/x-www-form-urlencoded"
ALLOWED = "https://a.example"
BOOKS = "https://example.com/books/{id}"


# --- tokens -------------------------------------------------------------------------------------


def token(
    mercure: dict[str, Any] | None = None,
    *,
    key: Any = SECRET,
    algorithm: str = "HS256",
    **claims: Any,
) -> str:
    payload = dict(claims)
    if mercure is not None:
        payload["mercure"] = mercure
    return jwt.encode(payload, key, algorithm=algorithm)


def publisher(*selectors: str, **claims: Any) -> str:
    return token({"publish": list(selectors)}, **claims)


def subscriber(*selectors: str, **claims: Any) -> str:
    return token({"subscribe": list(selectors)}, **claims)


PUBLISHER = publisher("*")


def bearer(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


def cookie(value: str) -> dict[str, str]:
    return {"cookie": f"mercureAuthorization={value}"}


def hs256_by_hand(payload: dict[str, Any], secret: bytes) -> str:
    """An HS256 token signed with any bytes (PyJWT refuses a PEM key as an HMAC secret)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(payload).encode())
    signature = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(signature)}"


@cache
def rsa_key(n: int = 0) -> rsa.RSAPrivateKey:
    """Key `n` (made once per test run: RSA keys are slow to make)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@cache
def ec_key(n: int = 0) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    return pem.decode()


# --- the hub, requests, streams -----------------------------------------------------------------


@contextlib.asynccontextmanager
async def running_hub(broker: Broker | None = None, **settings: Any) -> AsyncIterator[Starlette]:
    """A hub (HS256 `SECRET` unless told) with its lifespan running."""
    settings.setdefault("jwt_key", SECRET)
    app = create_hub(broker, **settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def app() -> AsyncIterator[Starlette]:
    async with running_hub() as app:
        yield app


@dataclass
class Reply:
    status: int
    headers: Headers
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()


async def call(
    app: Starlette,
    method: str = "GET",
    path: str = PATH,
    *,
    query: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    chunks: list[bytes] | None = None,
) -> Reply:
    """One request that ends (not a stream); `chunks`: a body sent in parts, without a
    Content-Length (as with chunked transfer encoding)."""
    header_list = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if chunks is None:
        chunks = [body]
        if method == "POST" and "content-length" not in (headers or {}):
            header_list.append((b"content-length", str(len(body)).encode()))
    scope = http_scope(
        method=method,
        path=path,
        headers=header_list,
        extra_scope={"query_string": urlencode(query or []).encode()},
    )
    parts = list(chunks)
    messages: list[Message] = []

    async def receive() -> Message:
        if parts:
            chunk = parts.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(parts)}
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        messages.append(message)

    with anyio.fail_after(5):
        await app(scope, receive, send)
    start = messages[0]
    body_sent = b"".join(m.get("body", b"") for m in messages[1:])
    return Reply(start["status"], Headers(raw=start["headers"]), body_sent)


async def publish(
    app: Starlette,
    *topics: str,
    auth: str | None = PUBLISHER,
    headers: dict[str, str] | None = None,
    **fields: str,
) -> Reply:
    """POST an update (form-encoded), authorised by `auth` in the Authorization header."""
    return await post_form(app, topics, fields, auth, headers or {})


async def post_form(
    app: Starlette,
    topics: tuple[str, ...],
    fields: dict[str, str],
    auth: str | None,
    headers: dict[str, str],
) -> Reply:
    pairs = [("topic", topic) for topic in topics] + list(fields.items())
    all_headers = {"content-type": FORM}
    if auth is not None:
        all_headers.update(bearer(auth))
    all_headers.update(headers)
    return await call(app, "POST", body=urlencode(pairs).encode(), headers=all_headers)


async def published(app: Starlette, *topics: str, **fields: str) -> str:
    """Publish, expecting success: the update's id."""
    reply = await post_form(app, topics, fields, PUBLISHER, {})
    assert reply.status == 200, reply.text
    return reply.text


@dataclass(frozen=True)
class Wire:
    """One event as its lines came on the wire."""

    lines: tuple[tuple[str, str], ...]

    def values(self, name: str) -> list[str]:
        return [value for field, value in self.lines if field == name]

    def one(self, name: str) -> str | None:
        values = self.values(name)
        assert len(values) <= 1, self
        return values[0] if values else None

    @property
    def id(self) -> str | None:
        return self.one("id")

    @property
    def data(self) -> str:
        return "\n".join(self.values("data"))


def parse_events(body: bytes) -> list[Wire]:
    """The complete events of a stream's bytes (comments dropped)."""
    blocks = re.split(r"\r\n\r\n|\n\n|\r\r", body.decode())
    events = []
    for block in blocks[:-1]:  # the last one is incomplete (or empty)
        lines = []
        for line in re.split(r"\r\n|\r|\n", block):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            lines.append((name, value.removeprefix(" ")))
        if lines:
            events.append(Wire(tuple(lines)))
    return events


class Stream:
    """A subscriber's response, watched as it is sent."""

    def __init__(self, call: ASGICall) -> None:
        self.call = call

    @property
    def status(self) -> int:
        return int(self.call.start["status"])

    @property
    def headers(self) -> Headers:
        return Headers(raw=self.call.start["headers"])

    @property
    def events(self) -> list[Wire]:
        return parse_events(self.call.body)

    async def take(self, n: int, timeout: float = 5) -> list[Wire]:
        await self.call.wait_until(lambda c: len(parse_events(c.body)) >= n, timeout)
        return self.events[:n]

    async def until(self, data: str, timeout: float = 5) -> list[Wire]:
        """The events that came before the one whose data is `data` (which must come)."""
        await self.call.wait_until(lambda c: any(e.data == data for e in parse_events(c.body)))
        events = self.events
        return events[: [e.data for e in events].index(data)]


@contextlib.asynccontextmanager
async def subscribe(
    app: Starlette,
    *topics: str,
    query: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[Stream]:
    """A subscription, open (the hub attached it) once this is entered."""
    pairs = [("topic", topic) for topic in topics] + (query or [])
    async with asgi_call(
        app,
        path=PATH,
        headers=[(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        extra_scope={"query_string": urlencode(pairs).encode()},
    ) as call:
        await call.wait_until(lambda c: bool(c.messages))
        stream = Stream(call)
        assert stream.status == 200, call.body
        yield stream


async def settled(app: Starlette, stream: Stream, topic: str) -> list[Wire]:
    """What `stream` received before a marker published now to `topic` (which it watches):
    everything that would have come before the marker, without waiting for nothing to come."""
    marker = f"marker {uuid.uuid4()}"
    await published(app, topic, data=marker)
    return await stream.until(marker)


def datas(events: list[Wire]) -> list[str]:
    return [event.data for event in events]


# --- metrics ------------------------------------------------------------------------------------


async def metrics(app: Starlette) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = await call(app, "GET", "/metrics")
    assert reply.status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
    }


async def metric(app: Starlette, name: str, **labels: str) -> float:
    return (await metrics(app)).get((name, tuple(sorted(labels.items()))), 0.0)


# --- Redis, for the tests that run on every broker ----------------------------------------------


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


# redis-py is asyncio-only: the Redis broker runs on asyncio, the memory one on both.
on_every_broker = pytest.mark.parametrize(
    ("anyio_backend", "broker_kind"),
    [("asyncio", "memory"), ("trio", "memory"), ("asyncio", "redis")],
    ids=["memory-asyncio", "memory-trio", "redis-asyncio"],
)


@pytest.fixture
def make_broker(request: pytest.FixtureRequest, broker_kind: str) -> Callable[[], Broker]:
    if broker_kind == "memory":
        return Broker
    server: RedisServer = request.getfixturevalue("redis_server")
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    return lambda: Broker(server.url, prefix=prefix)


# --- 1. publish ---------------------------------------------------------------------------------

UUID_URN = re.compile(
    r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
)


async def test_a_subscription_is_an_event_stream_that_no_cache_keeps(app: Starlette) -> None:
    async with subscribe(app, "news") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        directives = {d.strip() for d in stream.headers["cache-control"].split(",")}
        assert {"private", "no-store"} <= directives


@on_every_broker
async def test_a_publish_answers_200_text_plain_with_the_id_the_subscriber_sees(
    make_broker: Callable[[], Broker],
) -> None:
    async with running_hub(make_broker()) as app, subscribe(app, "news") as stream:
        reply = await publish(app, "news", data="hello")
        assert reply.status == 200
        assert reply.headers["content-type"].startswith("text/plain")
        [event] = await stream.take(1)
    assert (event.id, event.data) == (reply.text, "hello")


async def test_generated_ids_are_uuid_urns_each_different(app: Starlette) -> None:
    ids = [await published(app, "news", data=str(i)) for i in range(3)]
    assert all(UUID_URN.fullmatch(id) for id in ids), ids
    assert len(set(ids)) == 3


async def test_a_publisher_given_id_is_the_answer_and_the_events_id(app: Starlette) -> None:
    async with subscribe(app, "news") as stream:
        id = await published(app, "news", data="x", id="https://example.com/revisions/7")
        [event] = await stream.take(1)
    assert id == event.id == "https://example.com/revisions/7"


async def test_type_and_retry_become_the_event_and_retry_fields(app: Starlette) -> None:
    async with subscribe(app, "news") as stream:
        await published(app, "news", data="x", type="headline", retry="2500")
        [event] = await stream.take(1)
    assert (event.one("event"), event.one("retry"), event.data) == ("headline", "2500", "x")


async def test_multi_line_data_is_sent_as_several_data_lines(app: Starlette) -> None:
    async with subscribe(app, "news") as stream:
        await published(app, "news", data="first\nsecond\nthird")
        [event] = await stream.take(1)
    assert event.values("data") == ["first", "second", "third"]


async def test_an_update_without_data_has_one_empty_data_line_and_no_event_type(
    app: Starlette,
) -> None:
    # A browser dispatches no event without a data line.
    async with subscribe(app, "news") as stream:
        id = await published(app, "news")
        [event] = await stream.take(1)
    assert (event.id, event.values("data"), event.one("event")) == (id, [""], None)


async def test_subscribing_without_a_topic_is_400(app: Starlette) -> None:
    assert (await call(app)).status == 400
    assert (await call(app, query=[("topic", "")])).status == 400


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (urlencode({"topic": "news", "id": "#3"}).encode(), FORM),  # id starting with '#'
        (json.dumps({"topic": "news", "data": "x"}).encode(), "application/json"),
        (b"topic=news&data=caf\xe9", FORM),  # a raw byte that is not UTF-8
        (b"topic=news&data=caf%E9", FORM),  # a percent-encoded byte that is not UTF-8
        (urlencode({"data": "x"}).encode(), FORM),  # no topic
        (urlencode({"topic": "", "data": "x"}).encode(), FORM),  # an empty topic
        (urlencode({"topic": "news", "retry": "soon"}).encode(), FORM),
    ],
    ids=[
        "hash-id",
        "json",
        "invalid-utf8",
        "invalid-utf8-escaped",
        "no-topic",
        "empty-topic",
        "bad-retry",
    ],
)
async def test_a_malformed_publish_is_400_and_publishes_nothing(
    app: Starlette, body: bytes, content_type: str
) -> None:
    async with subscribe(app, "*") as stream:
        headers = {"content-type": content_type, **bearer(PUBLISHER)}
        reply = await call(app, "POST", body=body, headers=headers)
        assert reply.status == 400, reply.text
        assert await settled(app, stream, "news") == []


# --- 2. several topics --------------------------------------------------------------------------


@on_every_broker
async def test_an_update_to_two_topics_reaches_each_topics_subscribers_and_both_once(
    make_broker: Callable[[], Broker],
) -> None:
    async with (
        running_hub(make_broker()) as app,
        subscribe(app, "a") as of_a,
        subscribe(app, "b") as of_b,
        subscribe(app, "a", "b") as of_both,
    ):
        id = await published(app, "a", "b", data="both")
        for stream in (of_a, of_b):
            assert [(e.id, e.data) for e in await stream.take(1)] == [(id, "both")]
        assert datas(await settled(app, of_both, "a")) == ["both"]


# --- 3. selectors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "topic", "matches"),
    [
        ("https://example.com/foo", "https://example.com/foo", True),
        ("https://example.com/foo", "https://example.com/foo/bar", False),
        ("*", "https://example.com/anything", True),
        (BOOKS, "https://example.com/books/1", True),
        (BOOKS, "https://example.com/books/1/reviews", False),
        (BOOKS, BOOKS, True),  # a template matches its own text (draft-07 step 2)
        ("foo*", "foobar", False),  # a plain selector ending in '*' is no prefix
    ],
    ids=[
        "exact",
        "exact-not-longer",
        "star",
        "template",
        "template-not-deeper",
        "template-own-text",
        "star-suffix-is-not-a-prefix",
    ],
)
async def test_a_selector_matches_the_topics_of_draft_07(
    app: Starlette, selector: str, topic: str, matches: bool
) -> None:
    async with subscribe(app, selector, "marker") as stream:
        await published(app, topic, data="update")
        received = await settled(app, stream, "marker")
    assert datas(received) == (["update"] if matches else [])


async def test_a_selector_ending_in_a_star_matches_that_very_topic(app: Starlette) -> None:
    async with subscribe(app, "foo*", "marker") as stream:
        reply = await publish(app, "foo*", data="update")
        assert reply.status == 200, reply.text
        assert datas(await settled(app, stream, "marker")) == ["update"]


# --- 4. authorization ---------------------------------------------------------------------------


async def test_publishing_without_a_token_is_401_with_www_authenticate(app: Starlette) -> None:
    reply = await publish(app, "news", data="x", auth=None)
    assert reply.status == 401
    assert reply.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "auth",
    [
        "not-a-jwt",
        publisher("*", exp=int(time.time()) - 3600),
        jwt.encode({"mercure": {"publish": ["*"]}}, "another secret, 32 bytes or more!!!"),
    ],
    ids=["garbage", "expired", "other-key"],
)
async def test_an_invalid_or_expired_token_is_401_invalid_token(app: Starlette, auth: str) -> None:
    reply = await publish(app, "news", data="x", auth=auth)
    assert reply.status == 401
    assert reply.headers["www-authenticate"] == 'Bearer error="invalid_token"'


@pytest.mark.parametrize(
    "auth",
    [token(), token({"subscribe": ["*"]}), publisher()],
    ids=["no-mercure-claim", "no-publish-key", "empty-publish"],
)
async def test_a_token_that_grants_no_publishing_is_403(app: Starlette, auth: str) -> None:
    async with subscribe(app, "*") as stream:
        assert (await publish(app, "news", data="x", auth=auth)).status == 403
        assert await settled(app, stream, "news") == []


async def test_a_publish_whose_topics_are_not_all_allowed_is_403_and_publishes_nothing(
    app: Starlette,
) -> None:
    limited = publisher("https://example.com/allowed", BOOKS)
    async with subscribe(app, "*") as stream:
        reply = await publish(
            app, "https://example.com/books/1", "https://example.com/other", data="x", auth=limited
        )
        assert reply.status == 403
        allowed = await publish(app, "https://example.com/books/2", data="ok", auth=limited)
        assert allowed.status == 200
        assert datas(await stream.take(1)) == ["ok"]


async def test_the_authorization_header_wins_over_the_query_parameter_and_the_cookie(
    app: Starlette,
) -> None:
    pairs = urlencode({"topic": "news", "data": "x"}).encode()
    headers = {"content-type": FORM, **bearer(PUBLISHER), **cookie("invalid"), "origin": ALLOWED}
    reply = await call(
        app, "POST", query=[("authorization", "invalid")], body=pairs, headers=headers
    )
    assert reply.status == 200, reply.text


async def test_the_query_parameter_wins_over_the_cookie(app: Starlette) -> None:
    pairs = urlencode({"topic": "news", "data": "x"}).encode()
    headers = {"content-type": FORM, **cookie("invalid")}
    reply = await call(
        app, "POST", query=[("authorization", PUBLISHER)], body=pairs, headers=headers
    )
    assert reply.status == 200, reply.text


async def test_an_invalid_header_token_is_refused_even_with_a_valid_cookie() -> None:
    async with running_hub(publish_origins=[ALLOWED]) as app:
        headers = {**cookie(PUBLISHER), "origin": ALLOWED}
        assert (await publish(app, "news", auth=None, headers=headers)).status == 200
        reply = await publish(app, "news", auth="invalid", headers=headers)
    assert reply.status == 401


async def test_an_invalid_query_token_is_refused_on_subscribe_even_with_a_valid_cookie(
    app: Starlette,
) -> None:
    query = [("topic", "news"), ("authorization", "invalid")]
    reply = await call(app, "GET", query=query, headers=cookie(subscriber("*")))
    assert reply.status == 401


async def test_with_an_rsa_key_an_hs256_token_signed_with_the_pem_is_refused() -> None:
    pem = public_pem(rsa_key())
    forged = hs256_by_hand({"mercure": {"publish": ["*"]}}, pem.encode())
    async with running_hub(jwt_key=pem) as app:
        assert (await publish(app, "news", data="x", auth=forged)).status == 401


@pytest.mark.parametrize(
    ("make_key", "algorithm"), [(rsa_key, "RS256"), (ec_key, "ES256")], ids=["RS256", "ES256"]
)
async def test_asymmetric_tokens_verify_with_their_public_key(
    make_key: Callable[[int], rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey], algorithm: str
) -> None:
    private = make_key(0)
    signed = token({"publish": ["*"]}, key=private, algorithm=algorithm)
    foreign = token({"publish": ["*"]}, key=make_key(1), algorithm=algorithm)
    async with running_hub(jwt_key=public_pem(private)) as app:
        assert (await publish(app, "news", data="x", auth=signed)).status == 200
        assert (await publish(app, "news", data="x", auth=foreign)).status == 401


@pytest.mark.parametrize(("leeway", "status"), [(None, 200), (0, 401)], ids=["default", "zero"])
async def test_a_token_issued_5s_in_the_future_is_within_the_default_leeway_only(
    leeway: float | None, status: int
) -> None:
    settings: dict[str, Any] = {} if leeway is None else {"jwt_leeway": leeway}
    future = publisher("*", iat=int(time.time()) + 5)
    async with running_hub(**settings) as app:
        assert (await publish(app, "news", data="x", auth=future)).status == status


@pytest.mark.parametrize(
    ("claims", "status"),
    [({"aud": "hub.example"}, 200), ({"aud": "other.example"}, 401), ({}, 401)],
    ids=["right", "wrong", "missing"],
)
async def test_a_configured_audience_is_required(claims: dict[str, Any], status: int) -> None:
    async with running_hub(jwt_audience="hub.example") as app:
        reply = await publish(app, "news", data="x", auth=publisher("*", **claims))
    assert reply.status == status


async def test_publisher_and_subscriber_keys_are_kept_apart() -> None:
    publisher_secret, subscriber_secret = "p" * 32, "s" * 32
    async with running_hub(
        jwt_key=None, publisher_jwt_key=publisher_secret, subscriber_jwt_key=subscriber_secret
    ) as app:
        assert (await publish(app, "n", auth=publisher("*", key=publisher_secret))).status == 200
        assert (await publish(app, "n", auth=publisher("*", key=subscriber_secret))).status == 401
        query = [("topic", "n")]
        as_publisher = bearer(subscriber("*", key=publisher_secret))
        assert (await call(app, query=query, headers=as_publisher)).status == 401
        async with subscribe(app, "n", headers=bearer(subscriber("*", key=subscriber_secret))):
            pass


# --- 5. private updates -------------------------------------------------------------------------


@on_every_broker
async def test_an_anonymous_subscriber_never_gets_a_private_update_live_or_resumed(
    make_broker: Callable[[], Broker],
) -> None:
    async with running_hub(make_broker()) as app:
        async with subscribe(app, "*") as live:
            await published(app, "news", data="secret", private="on")
            await published(app, "news", data="public")
            assert datas(await settled(app, live, "news")) == ["public"]
        async with subscribe(app, "*", query=[("lastEventID", "earliest")]) as resumed:
            received = await settled(app, resumed, "news")
        assert [data for data in datas(received) if not data.startswith("marker")] == ["public"]


async def test_a_private_field_with_an_empty_value_makes_the_update_private(
    app: Starlette,
) -> None:
    async with subscribe(app, "news") as anonymous:
        await published(app, "news", data="secret", private="")
        assert datas(await settled(app, anonymous, "news")) == []


SPEC_TOPIC = "https://example.com/books/1"
SPEC_ALTERNATE = "https://example.com/users/foo/?topic=https%3A%2F%2Fexample.com%2Fbooks%2F1"


@on_every_broker
async def test_a_private_update_goes_to_subscribers_authorized_for_one_of_its_topics(
    make_broker: Callable[[], Broker],
) -> None:
    # draft-07 §Subscribers: canonical topic matched by the subscription, an alternate topic
    # matched by the token's mercure.subscribe.
    foo = bearer(subscriber("https://example.com/users/foo/{?topic}"))
    bar = bearer(subscriber("https://example.com/users/bar/{?topic}"))
    canonical = bearer(subscriber(SPEC_TOPIC))
    async with (
        running_hub(make_broker()) as app,
        subscribe(app, BOOKS, headers=foo) as of_foo,
        subscribe(app, BOOKS, headers=bar) as of_bar,
        subscribe(app, BOOKS, headers=canonical) as of_canonical,
    ):
        await published(app, SPEC_TOPIC, SPEC_ALTERNATE, data="private", private="on")
        await published(app, "https://example.com/books/2", data="marker")
        received = [await stream.until("marker") for stream in (of_foo, of_canonical, of_bar)]
    assert [datas(events) for events in received] == [["private"], ["private"], []]


async def test_a_private_update_is_resumed_only_by_an_authorized_subscriber(
    app: Starlette,
) -> None:
    await published(app, "news", data="private", private="on")
    earliest = [("lastEventID", "earliest")]
    async with subscribe(app, "news", query=earliest, headers=bearer(subscriber("news"))) as ok:
        assert datas(await settled(app, ok, "news")) == ["private"]
    async with subscribe(app, "news", query=earliest, headers=bearer(subscriber("x"))) as no:
        assert "private" not in datas(await settled(app, no, "news"))


async def test_without_anonymous_subscribing_needs_a_token() -> None:
    async with running_hub(anonymous=False) as app:
        reply = await call(app, query=[("topic", "news")])
        assert reply.status == 401
        assert reply.headers["www-authenticate"].startswith("Bearer")
        async with subscribe(app, "news", headers=bearer(subscriber())):
            pass


# --- 6. token expiry ----------------------------------------------------------------------------


async def test_the_hub_ends_a_stream_when_its_token_expires() -> None:
    expiring = subscriber("*", exp=time.time() + 1.5)
    async with running_hub(jwt_leeway=0) as app:
        async with subscribe(app, "news", headers=bearer(expiring)) as stream:
            assert datas(await settled(app, stream, "news")) == []  # open, and live
            assert not stream.call.complete
            await stream.call.wait_until(lambda c: c.complete, timeout=5)
        # The stream's app has returned (subscribe waits for it): its end is counted.
        assert await metric(app, "mercure_disconnects_total", reason="token-expired") == 1


# --- 7. resume ----------------------------------------------------------------------------------


@on_every_broker
@pytest.mark.parametrize("own_ids", [True, False], ids=["publisher-ids", "generated-ids"])
async def test_resuming_after_a_known_id_gets_exactly_the_later_updates(
    make_broker: Callable[[], Broker], own_ids: bool
) -> None:
    async with running_hub(make_broker()) as app:
        ids = []
        for n in range(4):
            fields = {"data": f"n{n}"} | ({"id": f"https://example.com/r/{n}"} if own_ids else {})
            ids.append(await published(app, "news", **fields))
        await published(app, "other", data="elsewhere")
        headers = {"last-event-id": ids[1]}
        async with subscribe(app, "news", headers=headers) as stream:
            assert stream.headers["last-event-id"] == ids[1]
            received = await settled(app, stream, "news")
    assert [(e.id, e.data) for e in received] == [(ids[2], "n2"), (ids[3], "n3")]


async def test_the_last_event_id_query_parameter_resumes_too(app: Starlette) -> None:
    first = await published(app, "news", data="n0")
    await published(app, "news", data="n1")
    async with subscribe(app, "news", query=[("lastEventID", first)]) as stream:
        assert stream.headers["last-event-id"] == first
        assert datas(await settled(app, stream, "news")) == ["n1"]


async def test_the_last_event_id_header_wins_over_the_query_parameter(app: Starlette) -> None:
    ids = [await published(app, "news", data=f"n{n}") for n in range(3)]
    headers = {"last-event-id": ids[1]}
    async with subscribe(app, "news", query=[("lastEventID", ids[0])], headers=headers) as stream:
        assert stream.headers["last-event-id"] == ids[1]
        assert datas(await settled(app, stream, "news")) == ["n2"]


@on_every_broker
async def test_earliest_gets_the_whole_history_and_the_header_earliest(
    make_broker: Callable[[], Broker],
) -> None:
    async with running_hub(make_broker()) as app:
        for n in range(3):
            await published(app, "news", data=f"n{n}")
        async with subscribe(app, "news", query=[("lastEventID", "earliest")]) as stream:
            assert stream.headers["last-event-id"] == "earliest"
            assert datas(await settled(app, stream, "news")) == ["n0", "n1", "n2"]


@pytest.mark.parametrize(
    "unknown", ["urn:uuid:00000000-0000-4000-8000-000000000000", "1-1", "never"]
)
async def test_an_unknown_id_gets_live_updates_only_and_the_header_earliest(
    app: Starlette, unknown: str
) -> None:
    await published(app, "news", data="before")
    async with subscribe(app, "news", headers={"last-event-id": unknown}) as stream:
        assert stream.headers["last-event-id"] == "earliest"
        assert datas(await settled(app, stream, "news")) == []


async def test_no_last_event_id_header_when_none_was_requested(app: Starlette) -> None:
    await published(app, "news", data="before")
    async with subscribe(app, "news") as stream:
        assert "last-event-id" not in stream.headers
        assert datas(await settled(app, stream, "news")) == []


@on_every_broker
async def test_an_id_of_one_topic_resumes_a_subscription_to_others_exactly(
    make_broker: Callable[[], Broker],
) -> None:
    async with running_hub(make_broker()) as app:
        await published(app, "b", data="b0")
        cursor = await published(app, "a", data="a0", id="a-0")
        await published(app, "b", data="b1")
        await published(app, "a", data="a1")
        await published(app, "https://example.com/books/9", data="c1")
        headers = {"last-event-id": cursor}
        async with subscribe(app, "b", BOOKS, headers=headers) as stream:
            assert stream.headers["last-event-id"] == cursor
            assert datas(await settled(app, stream, "b")) == ["b1", "c1"]


@pytest.mark.parametrize(("anyio_backend", "broker_kind"), [("asyncio", "redis")], ids=["redis"])
async def test_an_id_shaped_like_a_log_position_is_an_unknown_id(
    make_broker: Callable[[], Broker],
) -> None:
    async with running_hub(make_broker()) as app:
        await published(app, "news", data="before")
        async with subscribe(app, "news", headers={"last-event-id": "0-0"}) as stream:
            assert stream.headers["last-event-id"] == "earliest"
            assert datas(await settled(app, stream, "news")) == []


UNICODE_ID = "https://example.com/книги/1"  # an IRI, as draft-07 recommends for ids


async def test_a_non_ascii_id_sent_as_utf8_in_the_header_resumes_exactly(app: Starlette) -> None:
    await published(app, "news", data="n0", id=UNICODE_ID)
    await published(app, "news", data="n1")
    async with subscribe(app, "news", headers={"last-event-id": UNICODE_ID}) as stream:
        assert stream.headers["last-event-id"].encode("latin-1") == UNICODE_ID.encode()
        assert datas(await settled(app, stream, "news")) == ["n1"]


async def test_a_non_latin1_id_in_the_query_resumes_exactly(app: Starlette) -> None:
    await published(app, "news", data="n0", id=UNICODE_ID)
    await published(app, "news", data="n1")
    async with subscribe(app, "news", query=[("lastEventID", UNICODE_ID)]) as stream:
        assert stream.headers["last-event-id"].encode("latin-1") == UNICODE_ID.encode()
        assert datas(await settled(app, stream, "news")) == ["n1"]


async def test_a_stream_that_fails_to_start_is_neither_counted_open_nor_left_attached(
    app: Starlette, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the response cannot be built")

    monkeypatch.setattr(sse_starlette.hub.stream, "EventSourceResponse", broken)
    query = urlencode([("topic", "news")]).encode()
    async with asgi_call(app, path=PATH, extra_scope={"query_string": query}) as failing:
        await failing.wait_until(lambda c: bool(c.messages))
    assert failing.start["status"] == 500
    assert await metric(app, "mercure_streams_open") == 0
    assert await metric(app, "mercure_broker_subscribers") == 0


# --- 8. CORS ------------------------------------------------------------------------------------


def preflight(origin: str) -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": "GET",
        "access-control-request-headers": "last-event-id",
    }


async def test_cors_allows_a_named_origin_with_credentials_and_exposes_last_event_id() -> None:
    async with running_hub(cors_origins=[ALLOWED]) as app:
        reply = await call(app, "OPTIONS", headers=preflight(ALLOWED))
        assert reply.status == 200
        assert reply.headers["access-control-allow-origin"] == ALLOWED
        assert reply.headers["access-control-allow-credentials"] == "true"
        await published(app, "news", data="x")
        headers = {"origin": ALLOWED, "last-event-id": "earliest"}
        async with subscribe(app, "news", headers=headers) as stream:
            assert stream.headers["access-control-allow-origin"] == ALLOWED
            assert stream.headers["access-control-allow-credentials"] == "true"
            exposed = stream.headers["access-control-expose-headers"].lower()
            assert "last-event-id" in exposed.replace(" ", "").split(",")


async def test_cors_refuses_another_origin() -> None:
    async with running_hub(cors_origins=[ALLOWED]) as app:
        reply = await call(app, "OPTIONS", headers=preflight("https://evil.example"))
        assert reply.status >= 400
        assert "access-control-allow-origin" not in reply.headers
        async with subscribe(app, "news", headers={"origin": "https://evil.example"}) as stream:
            assert "access-control-allow-origin" not in stream.headers


async def test_cors_any_origin_never_allows_credentials() -> None:
    evil = "https://evil.example"
    credentials = {"origin": evil, **cookie(subscriber("*"))}
    async with running_hub(cors_origins=["*"]) as app:
        replies = [
            await call(app, "OPTIONS", headers=preflight(evil)),
            await call(app, "GET", "/healthz", headers=credentials),
        ]
        async with subscribe(app, "news", headers=credentials) as stream:
            replies.append(Reply(stream.status, stream.headers, b""))
    for reply in replies:
        assert reply.headers.get("access-control-allow-credentials") != "true"
        assert reply.headers.get("access-control-allow-origin") in ("*", evil)
    assert replies[0].headers["access-control-allow-origin"] == "*"


# --- 9. cookie publish origin check -------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 403),
        ({"origin": "https://evil.example"}, 403),
        ({"referer": "https://evil.example/page"}, 403),
        ({"origin": ALLOWED}, 200),
        ({"referer": f"{ALLOWED}/some/page?x=1"}, 200),
        ({"origin": "https://evil.example", "referer": f"{ALLOWED}/page"}, 403),  # Origin first
        ({"referer": f"{ALLOWED}.evil.example/page"}, 403),
        ({"referer": "https://a.example@evil.example/page"}, 403),
    ],
    ids=[
        "neither",
        "other-origin",
        "other-referer",
        "origin",
        "referer",
        "origin-wins",
        "referer-suffixed-host",
        "referer-userinfo",
    ],
)
async def test_a_cookie_authorized_publish_must_come_from_an_allowed_origin(
    headers: dict[str, str], status: int
) -> None:
    async with running_hub(publish_origins=[ALLOWED]) as app, subscribe(app, "*") as stream:
        reply = await publish(
            app, "news", data="x", auth=None, headers={**cookie(PUBLISHER), **headers}
        )
        assert reply.status == status, reply.text
        assert datas(await settled(app, stream, "news")) == (["x"] if status == 200 else [])


async def test_a_header_authorized_publish_is_not_origin_checked() -> None:
    async with running_hub(publish_origins=[ALLOWED]) as app:
        reply = await publish(app, "news", data="x", headers={"origin": "https://evil.example"})
    assert reply.status == 200


# --- 10. limits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_body_over_max_body_is_413_and_publishes_nothing(chunked: bool) -> None:
    body = urlencode({"topic": "news", "data": "x" * 300}).encode()
    headers = {"content-type": FORM, **bearer(PUBLISHER)}
    async with running_hub(max_body=200) as app, subscribe(app, "*") as stream:
        if chunked:
            chunks = [body[i : i + 50] for i in range(0, len(body), 50)]
            reply = await call(app, "POST", headers=headers, chunks=chunks)
        else:
            reply = await call(app, "POST", headers=headers, body=body)
        assert reply.status == 413
        assert await settled(app, stream, "news") == []
        assert (await publish(app, "news", data="x" * 150)).status == 200  # at the limit: fine


async def test_more_than_max_topics_is_400_and_publishes_nothing() -> None:
    async with running_hub(max_topics=2) as app, subscribe(app, "*") as stream:
        assert (await publish(app, "a", "b", "c", data="x")).status == 400
        assert await settled(app, stream, "a") == []
        assert (await publish(app, "a", "b", data="y")).status == 200


async def test_more_than_max_selectors_is_400() -> None:
    async with running_hub(max_selectors=2) as app:
        reply = await call(app, query=[("topic", "a"), ("topic", "b"), ("topic", "c")])
        assert reply.status == 400
        assert await metric(app, "mercure_streams_total") == 0
        async with subscribe(app, "a", "b"):
            pass


# --- 11. metrics and health ---------------------------------------------------------------------


async def test_metrics_count_updates_streams_and_refusals(app: Starlette) -> None:
    await published(app, "news", data="x")
    await published(app, "news", data="y")
    await publish(app, "news", auth=None)
    await publish(app, "news", auth=publisher("other"))
    await call(app, query=[("topic", "")])
    async with subscribe(app, "news"), subscribe(app, "other"):
        assert await metric(app, "mercure_streams_open") == 2
    assert await metric(app, "mercure_streams_open") == 0  # both apps have returned
    samples = await metrics(app)
    assert samples[("mercure_updates_published_total", ())] == 2
    assert samples[("mercure_streams_total", ())] == 2

    def rejected(endpoint: str, reason: str) -> float:
        return samples[("mercure_rejected_total", (("endpoint", endpoint), ("reason", reason)))]

    assert rejected("publish", "missing-token") == 1
    assert rejected("publish", "forbidden") == 1
    assert rejected("subscribe", "bad-request") == 1


async def test_metrics_are_prometheus_text(app: Starlette) -> None:
    reply = await call(app, "GET", "/metrics")
    assert reply.headers["content-type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(reply.text)}
    assert {"mercure_updates_published", "mercure_streams_open", "mercure_rejected"} <= names


async def test_healthz(app: Starlette) -> None:
    reply = await call(app, "GET", "/healthz")
    assert (reply.status, json.loads(reply.body)) == (200, {"status": "ok"})


# --- 12. logs -----------------------------------------------------------------------------------


async def test_the_access_log_has_neither_the_query_string_nor_the_token(
    app: Starlette, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sse_starlette")
    secret = subscriber("*")
    async with subscribe(app, "news", query=[("authorization", secret)]):
        pass
    access = [r for r in caplog.records if r.name == "sse_starlette.hub.access"]
    assert [json.loads(r.getMessage())["path"] for r in access] == [PATH]
    for record in caplog.records:
        message = record.getMessage()
        assert secret not in message
        assert "authorization" not in message.lower()
        assert "topic=" not in message


async def test_cr_and_lf_sent_by_a_client_forge_no_log_line(
    app: Starlette, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sse_starlette")
    forged = 'a\r\n{"method": "GET", "path": "/forged"}\nb'
    async with subscribe(app, forged, query=[("lastEventID", "x\r\ny")]):
        pass
    await call(app, "GET", "/x\ny")  # a path a server decoded from %0A
    messages = [record.getMessage() for record in caplog.records]
    assert any("forged" in message for message in messages)  # the topic was logged...
    for message in messages:  # ...escaped
        assert "\n" not in message and "\r" not in message, message


# --- what the security review found -----------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_resume_cut_short_by_trimming_ends_the_stream_rather_than_skip_silently() -> None:
    async with running_hub(Broker(history=10, buffer=4)) as app:
        for n in range(1, 11):
            await published(app, "t", data=f"e{n}", id=f"e{n}")
        release, sent_body, ended, messages = anyio.Event(), anyio.Event(), anyio.Event(), []
        requested = False

        async def receive() -> Message:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

        async def send(message: Message) -> None:
            messages.append(message)
            if message["type"] == "http.response.body":
                sent_body.set()
                if not message.get("more_body"):
                    ended.set()
                await release.wait()  # a slow client: the first page is held meanwhile

        scope = http_scope(path=PATH, headers=[(b"last-event-id", b"e1")],
                           extra_scope={"query_string": b"topic=t"})  # fmt: skip
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(app, scope, receive, send)
            with anyio.fail_after(5):
                await sent_body.wait()
            for n in range(10):  # other topics trim e1..e10 from the log meanwhile
                await published(app, "other", data=f"o{n}")
            release.set()
            with anyio.fail_after(5):
                await ended.wait()
        body = b"".join(m.get("body", b"") for m in messages[1:])
        assert datas(parse_events(body)) == ["e2", "e3", "e4", "e5"]  # then it ended
        async with subscribe(app, "t", headers={"last-event-id": "e5"}) as again:
            assert again.headers["last-event-id"] == "earliest"  # the client can tell


async def test_a_repeated_id_resumes_after_its_first_update(app: Starlette) -> None:
    b0 = await published(app, "b", data="b0")
    await published(app, "b", data="b1")
    assert (await publish(app, "a", auth=publisher("a"), data="x", id=b0)).status == 200
    async with subscribe(app, "b", headers={"last-event-id": b0}) as stream:
        assert stream.headers["last-event-id"] == b0
        assert datas(await settled(app, stream, "b")) == ["b1"]


async def test_earliest_is_no_update_id(app: Starlette) -> None:
    reply = await publish(app, "t", data="x", id="earliest")
    assert reply.status == 400 and "reserved" in reply.text


async def test_the_header_does_not_tell_which_private_ids_exist(app: Starlette) -> None:
    await published(app, "inbox", data="hi", id="urn:message:17", private="on")
    answers = []
    for guess in ("urn:message:17", "urn:message:18"):
        async with subscribe(app, "inbox", headers={"last-event-id": guess}) as stream:
            answers.append(stream.headers["last-event-id"])
    assert answers == ["earliest", "earliest"]
    async with subscribe(  # authorized for it: an exact resume
        app, "inbox", headers={"last-event-id": "urn:message:17", **bearer(subscriber("inbox"))}
    ) as stream:
        assert stream.headers["last-event-id"] == "urn:message:17"


async def test_a_token_with_an_aud_is_taken_when_no_audience_is_configured(app: Starlette) -> None:
    auth = jwt.encode({"aud": "https://hub.example", "mercure": {"publish": ["*"]}}, SECRET)
    assert (await publish(app, "t", auth=auth, data="x")).status == 200


async def test_uri_templates_are_bounded_per_subscription_and_per_process() -> None:
    async with running_hub(max_template_bytes=64, max_templates=2) as app:
        too_big = [("topic", "https://example.com/{" + "x" * 80 + "}")]
        assert (await call(app, query=too_big)).status == 400
        async with subscribe(app, "https://example.com/a/{id}", "https://example.com/b/{id}"):
            third = [("topic", "https://example.com/c/{id}")]
            reply = await call(app, query=third)
            assert reply.status == 429  # a third distinct template, while two are in use
            async with subscribe(app, "https://example.com/a/{id}"):  # one in use: fine
                pass
        async with subscribe(app, "https://example.com/c/{id}"):  # released when they end
            pass


async def test_streams_per_token_are_bounded_when_configured() -> None:
    async with running_hub(max_streams_per_token=1) as app:
        auth = bearer(subscriber("t"))
        async with subscribe(app, "t", headers=auth):
            second = await call(app, query=[("topic", "t")], headers=auth)
            assert second.status == 429 and "streams" in second.text
            async with subscribe(app, "t"), subscribe(app, "t"):  # anonymous: not counted
                pass
        async with subscribe(app, "t", headers=auth):  # the first one ended: room again
            pass


async def test_a_form_as_fetch_sends_it_is_published_and_arrives_exactly(app: Starlette) -> None:
    # fetch() with a URLSearchParams body says `;charset=UTF-8`; data of several lines, one
    # blank, one indented, as the Mercure conformance suite sends it.
    data = "data for\n\n        a name"
    body = urlencode([("topic", "t"), ("id", 'id-["t"]'), ("data", data)]).encode()
    headers = {"content-type": "application/x-www-form-urlencoded;charset=UTF-8",
               **bearer(PUBLISHER)}  # fmt: skip
    async with subscribe(app, "foo", "t") as stream:
        reply = await call(app, "POST", body=body, headers=headers)
        assert (reply.status, reply.text) == (200, 'id-["t"]')
        assert reply.headers["content-type"].startswith("text/plain")
        (event,) = await stream.take(1)
    assert (event.id, event.data) == ('id-["t"]', data)
