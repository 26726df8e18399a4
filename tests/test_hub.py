"""The hub: publish and subscribe over HTTP, tokens per topic, refusals, metrics, health."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.types import Message

from sse_starlette.__main__ import main
from sse_starlette.broker import Broker
from sse_starlette.hub import create_hub
from sse_starlette.sse import AppStatus
from tests.asgi import ASGICall, asgi_call, http_scope
from tests.cli import start_cli
from tests.redis_server import RedisServer

SECRET = "a-test-secret-that-is-32-bytes-long!"


def hs256(sse: dict[str, list[str]] | None, secret: str = SECRET, **claims: Any) -> str:
    if sse is not None:
        claims["sse"] = sse
    return jwt.encode(claims, secret, algorithm="HS256")


def hmac_token(claims: dict[str, Any], key: bytes) -> str:
    """An HS256 token signed with any bytes (PyJWT refuses a PEM key as HMAC secret)."""

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signed = b64(b'{"alg":"HS256","typ":"JWT"}') + b"." + b64(json.dumps(claims).encode())
    signature = hmac.new(key, signed, hashlib.sha256).digest()
    return (signed + b"." + b64(signature)).decode()


def rsa_keys() -> tuple[str, str]:
    """A fresh RSA key pair as PEM (private, public)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format, strictly: every line a comment or `name{labels} value`."""
    samples: dict[str, float] = {}
    types: dict[str, str] = {}
    sample = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_]\w*="[^"\\\n]*",?)*\})? (\S+)')
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge"), line
            types[name] = kind
        elif line.startswith("# HELP "):
            assert len(line.split(" ", 3)) == 4, line
        else:
            match = sample.fullmatch(line)
            assert match is not None, f"not a sample line: {line!r}"
            assert match[1] in types, f"sample before its # TYPE: {line!r}"
            samples[match[1] + (match[2] or "")] = float(match[3])
    return samples


class Hub:
    """A hub app in-process, its broker started, and an HTTP client on it."""

    def __init__(self, app: Starlette, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client

    async def publish(self, body: Any, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if isinstance(body, (bytes, str)):
            return await self.client.post("/publish", content=body, headers=headers, **kwargs)
        return await self.client.post("/publish", json=body, headers=headers, **kwargs)

    async def metrics(self) -> dict[str, float]:
        response = await self.client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        return parse_metrics(response.text)

    @contextlib.asynccontextmanager
    async def subscribe(
        self, query: str, headers: dict[str, str] | None = None
    ) -> AsyncIterator[ASGICall]:
        """A stream, once it is subscribed (or refused): nothing published after is missed."""
        broker = self.app.state.hub.broker
        subscribers = broker.metrics.subscribers
        async with asgi_call(
            self.app,
            path="/subscribe",
            headers=[(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
            extra_scope={"query_string": query.encode()},
        ) as call:
            with anyio.fail_after(5):
                while broker.metrics.subscribers == subscribers and not call.done.is_set():
                    await anyio.sleep(0.005)  # polling a counter, with a deadline
            yield call


@contextlib.asynccontextmanager
async def running_hub(broker: Broker | None = None, **options: Any) -> AsyncIterator[Hub]:
    async with broker or Broker() as started:
        app = create_hub(started, **options)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            yield Hub(app, client)


def frames(call: ASGICall) -> list[str]:
    """The events the stream sent so far, each without its final blank line."""
    return [frame for frame in call.body.decode().split("\r\n\r\n") if frame]


async def wait_frames(call: ASGICall, n: int) -> list[str]:
    await call.wait_until(lambda c: c.body.count(b"\r\n\r\n") >= n)
    return frames(call)


# --- publish and subscribe --------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_published_event_reaches_every_subscriber_of_its_topic() -> None:
    async with running_hub() as hub:
        async with (
            hub.subscribe("topic=news") as first,
            hub.subscribe("topic=news") as second,
            hub.subscribe("topic=other") as other,
        ):
            response = await hub.publish(
                {"topic": "news", "event": "headline", "data": "héllo\nworld 🌍", "retry": 500}
            )
            assert response.status_code == 200
            id = response.json()["id"]
            assert response.json() == {"id": id, "topic": "news"}
            expected = f"id: {id}\r\nevent: headline\r\ndata: héllo\r\ndata: world 🌍\r\nretry: 500"
            assert await wait_frames(first, 1) == [expected]
            assert await wait_frames(second, 1) == [expected]
            assert other.body == b""
        assert first.start["status"] == 200


@pytest.mark.anyio
async def test_data_that_is_not_a_string_is_sent_as_compact_json() -> None:
    async with running_hub() as hub, hub.subscribe("topic=t") as call:
        await hub.publish({"topic": "t", "data": {"city": "Zürich", "n": [1, 2.5, None]}})
        await hub.publish({"topic": "t", "data": 42})
        (first, second) = await wait_frames(call, 2)
        assert first.endswith('data: {"city":"Zürich","n":[1,2.5,null]}')
        assert second.endswith("data: 42")


@pytest.mark.anyio
async def test_a_subscriber_resumes_after_last_event_id_from_header_or_query() -> None:
    async with running_hub() as hub:
        ids = [(await hub.publish({"topic": "t", "data": str(i)})).json()["id"] for i in range(3)]
        async with hub.subscribe("topic=t", {"Last-Event-ID": ids[0]}) as by_header:
            assert await wait_frames(by_header, 2) == [
                f"id: {ids[1]}\r\ndata: 1",
                f"id: {ids[2]}\r\ndata: 2",
            ]
        async with hub.subscribe(f"topic=t&lastEventId={ids[1]}") as by_query:
            assert await wait_frames(by_query, 1) == [f"id: {ids[2]}\r\ndata: 2"]
        async with hub.subscribe("topic=t", {"Last-Event-ID": "1-1"}) as unknown:
            (reset,) = await wait_frames(unknown, 1)
            assert "event: reset" in reset
            assert json.loads(reset.split("data: ")[1]) == {"reason": "unknown", "topics": ["t"]}
        metrics = await hub.metrics()
        assert metrics["sse_hub_resumes_total"] == 3
        assert metrics["sse_hub_resets_total"] == 1


@pytest.mark.anyio
async def test_one_stream_may_carry_several_topics() -> None:
    async with running_hub() as hub, hub.subscribe("topic=a&topic=b") as call:
        await hub.publish({"topic": "a", "data": "from a"})
        await hub.publish({"topic": "b", "data": "from b"})
        await hub.publish({"topic": "c", "data": "from c"})
        assert [frame.split("data: ")[1] for frame in await wait_frames(call, 2)] == [
            "from a",
            "from b",
        ]


@pytest.mark.anyio
async def test_subscribe_without_a_topic_is_refused() -> None:
    async with running_hub() as hub:
        response = await hub.client.get("/subscribe")
        assert response.status_code == 400
        assert "topic" in response.json()["error"]


# --- refusals: a 4xx with a message, and nothing published --------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b'{"topic": "t", "data": ', 400, "not valid JSON"),
        (b'{"topic": "t", "data": NaN}', 400, "not valid JSON"),
        (b"\xff\xfe", 400, "not valid JSON"),
        (b'["t", "x"]', 400, "must be a JSON object"),
        (b'{"data": "x"}', 400, "'topic' must be a non-empty string"),
        (b'{"topic": "", "data": "x"}', 400, "'topic' must be a non-empty string"),
        (b'{"topic": "t", "data": "x", "id": "7"}', 400, "the hub assigns event ids"),
        (b'{"topic": "t", "dat": "x"}', 400, "unknown field(s) ['dat']"),
        (b'{"topic": "t", "event": "a\\nb"}', 400, "'event'"),
        (b'{"topic": "t", "retry": -1}', 400, "'retry'"),
        (b'{"topic": "t", "retry": "5"}', 400, "retry"),
        (b'{"topic": "t", "data": "\\ud800"}', 400, "surrogate"),
        (b'{"topic": "t", "data": "' + b"x" * 200 + b'"}', 413, "exceeds the limit of 100"),
    ],
)
async def test_a_bad_publish_is_refused_with_a_message_and_publishes_nothing(
    body: bytes, status: int, message: str
) -> None:
    async with running_hub(max_payload=100) as hub, hub.subscribe("topic=t") as call:
        response = await hub.publish(body)
        assert response.status_code == status
        assert message in response.json()["error"]
        # The next good event is the first the subscriber gets: nothing came before it.
        good = (await hub.publish({"topic": "t", "data": "good"})).json()["id"]
        assert await wait_frames(call, 1) == [f"id: {good}\r\ndata: good"]
        metrics = await hub.metrics()
        assert metrics["sse_hub_events_published_total"] == 1
        assert sum(v for k, v in metrics.items() if k.startswith("sse_hub_rejected_total")) == 1


@pytest.mark.anyio
async def test_an_oversized_body_without_content_length_is_refused_as_it_streams_in() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b'{"topic": "t", "data": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}'

    async with running_hub(max_payload=10_000) as hub:
        response = await hub.client.post("/publish", content=body())
        assert response.status_code == 413
        assert (await hub.metrics())["sse_hub_events_published_total"] == 0


# --- tokens -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_hs256_tokens_grant_publish_and_subscribe_separately() -> None:
    both = hs256({"publish": ["news"], "subscribe": ["news"]})
    publisher = hs256({"publish": ["news"]})
    reader = hs256({"subscribe": ["news"]})
    async with running_hub(jwt_secret=SECRET) as hub:
        async with hub.subscribe("topic=news", {"Authorization": f"Bearer {reader}"}) as call:
            assert (await hub.publish({"topic": "news", "data": "1"}, publisher)).status_code == 200
            assert (await hub.publish({"topic": "news", "data": "2"}, both)).status_code == 200
            assert len(await wait_frames(call, 2)) == 2
            assert call.start["status"] == 200

            refused = await hub.publish({"topic": "news", "data": "3"}, reader)
            assert refused.status_code == 403
            assert refused.json() == {"error": "the token does not allow publishing to 'news'"}
            refused = await hub.publish({"topic": "sports", "data": "3"}, both)
            assert refused.status_code == 403
            refused = await hub.client.get(
                "/subscribe?topic=news", headers={"Authorization": f"Bearer {publisher}"}
            )
            assert refused.status_code == 403
            assert "does not allow subscribing to 'news'" in refused.json()["error"]
        metrics = await hub.metrics()
        assert metrics["sse_hub_events_published_total"] == 2
        assert metrics['sse_hub_rejected_total{endpoint="publish",reason="forbidden"}'] == 2
        assert metrics['sse_hub_rejected_total{endpoint="subscribe",reason="forbidden"}'] == 1


@pytest.mark.anyio
async def test_a_token_may_come_in_the_query_or_a_cookie_for_eventsource() -> None:
    reader = hs256({"subscribe": ["news"]})
    async with running_hub(jwt_secret=SECRET, cookie_name="hub") as hub:
        async with hub.subscribe(f"topic=news&token={reader}") as by_query:
            assert by_query.start["status"] == 200
        async with hub.subscribe("topic=news", {"Cookie": f"hub={reader}"}) as by_cookie:
            assert by_cookie.start["status"] == 200


@pytest.mark.anyio
async def test_patterns_ending_in_a_star_match_prefixes() -> None:
    token = hs256({"publish": ["chat.*"], "subscribe": ["*"]})
    async with running_hub(jwt_secret=SECRET) as hub:
        assert (await hub.publish({"topic": "chat.room1", "data": "x"}, token)).status_code == 200
        assert (await hub.publish({"topic": "chat", "data": "x"}, token)).status_code == 403
        assert (await hub.publish({"topic": "chatroom", "data": "x"}, token)).status_code == 403
        async with hub.subscribe(f"topic=anything&topic=at.all&token={token}") as call:
            assert call.start["status"] == 200


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "a token is required"),
        ({"Authorization": "Basic dXNlcjpwdw=="}, "Authorization must be 'Bearer <token>'"),
        ({"Authorization": "Bearer not.a.jwt"}, "invalid token"),
        (
            {"Authorization": "Bearer " + hs256({"publish": ["*"]}, secret="x" * 32 + "other")},
            "invalid token: Signature verification failed",
        ),
        (
            {"Authorization": "Bearer " + hs256({"publish": ["*"]}, exp=int(time.time()) - 5)},
            "the token has expired",
        ),
        (
            {"Authorization": "Bearer " + hs256({"publish": ["*"]}, nbf=int(time.time()) + 3600)},
            "invalid token: The token is not yet valid",
        ),
        ({"Authorization": "Bearer " + hs256(None)}, "no 'sse' claim"),
        (
            {"Authorization": "Bearer " + hs256({"publish": "news"})},  # type: ignore[dict-item]
            "'sse.publish' claim must be a list",
        ),
        (
            # alg "none": unsigned; never accepted, whatever the token says
            {"Authorization": "Bearer " + jwt.encode({"sse": {"publish": ["*"]}}, None, "none")},  # type: ignore[arg-type]
            "invalid token",
        ),
    ],
)
async def test_a_missing_bad_or_expired_token_gets_401_and_publishes_nothing(
    headers: dict[str, str], message: str
) -> None:
    async with running_hub(jwt_secret=SECRET) as hub:
        response = await hub.client.post("/publish", json={"topic": "t"}, headers=headers)
        assert response.status_code == 401
        assert message in response.json()["error"]
        assert response.headers["www-authenticate"].startswith("Bearer")
        response = await hub.client.get("/subscribe?topic=t", headers=headers)
        assert response.status_code == 401
        assert message in response.json()["error"]
        assert (await hub.metrics())["sse_hub_events_published_total"] == 0


@pytest.mark.anyio
async def test_rs256_tokens_are_verified_with_the_public_key() -> None:
    private, public = rsa_keys()
    other_private, _ = rsa_keys()
    claims = {"sse": {"publish": ["t"], "subscribe": ["t"]}}
    token = jwt.encode(claims, private, algorithm="RS256")
    async with (
        running_hub(jwt_public_key=public) as hub,
        hub.subscribe(f"topic=t&token={token}") as call,
    ):
        id = (await hub.publish({"topic": "t", "data": "signed"}, token)).json()["id"]
        assert await wait_frames(call, 1) == [f"id: {id}\r\ndata: signed"]
        forged = jwt.encode(claims, other_private, algorithm="RS256")
        assert (await hub.publish({"topic": "t", "data": "x"}, forged)).status_code == 401
        # The public key used as an HS256 secret (algorithm confusion) is refused too.
        confused = hmac_token(claims, public.encode())
        assert (await hub.publish({"topic": "t", "data": "x"}, confused)).status_code == 401
        assert (await hub.metrics())["sse_hub_events_published_total"] == 1


@pytest.mark.anyio
async def test_a_private_key_configured_as_the_public_key_verifies_with_its_public_half() -> None:
    private, _ = rsa_keys()
    claims = {"sse": {"publish": ["t"]}}
    async with running_hub(jwt_public_key=private) as hub:
        token = jwt.encode(claims, private, algorithm="RS256")
        assert (await hub.publish({"topic": "t", "data": "signed"}, token)).status_code == 200
        confused = hmac_token(claims, private.encode())
        assert (await hub.publish({"topic": "t", "data": "x"}, confused)).status_code == 401


@pytest.mark.anyio
async def test_a_stream_outlives_its_token_but_its_reconnection_needs_a_valid_one() -> None:
    # `exp` is whole seconds: at least half a second left to open the stream, at most 1.5 s.
    reader = hs256({"subscribe": ["t"]}, exp=math.ceil(time.time() + 0.5))
    publisher = hs256({"publish": ["t"]})
    async with running_hub(jwt_secret=SECRET) as hub:
        async with hub.subscribe(f"topic=t&token={reader}") as call:
            assert call.start["status"] == 200
            # Until `exp` the hub checks the token and refuses the topic it does not grant
            # (403, no stream opened); once `exp` has passed, the token itself (401).
            with anyio.fail_after(5):
                while True:
                    refused = await hub.client.get(f"/subscribe?topic=other&token={reader}")
                    if refused.status_code == 401:
                        break
                    assert refused.status_code == 403, refused.text
                    await anyio.sleep(0.02)  # polling the hub's clock, with a deadline
            assert refused.json() == {"error": "the token has expired"}
            id = (await hub.publish({"topic": "t", "data": "after exp"}, publisher)).json()["id"]
            assert await wait_frames(call, 1) == [f"id: {id}\r\ndata: after exp"]
        again = await hub.client.get(f"/subscribe?topic=t&token={reader}")
        assert again.status_code == 401
        assert again.json() == {"error": "the token has expired"}


@pytest.mark.anyio
async def test_an_audience_when_configured_is_required() -> None:
    sse = {"publish": ["t"]}
    async with running_hub(jwt_secret=SECRET, jwt_audience="hub") as hub:
        assert (await hub.publish({"topic": "t"}, hs256(sse, aud="hub"))).status_code == 200
        assert (await hub.publish({"topic": "t"}, hs256(sse, aud="other"))).status_code == 401
        assert (await hub.publish({"topic": "t"}, hs256(sse))).status_code == 401


def test_a_bad_key_configuration_fails_at_once() -> None:
    with pytest.raises(ValueError, match="either"):
        create_hub(jwt_secret=SECRET, jwt_public_key="x")
    with pytest.raises(ValueError):
        create_hub(jwt_public_key="not a PEM key")


# --- streams end for a reason, counted ----------------------------------------------------------


@pytest.mark.anyio
async def test_metrics_count_streams_events_bytes_and_disconnect_reasons() -> None:
    async with running_hub() as hub:
        async with hub.subscribe("topic=t") as call:
            metrics = await hub.metrics()
            assert metrics["sse_hub_streams_open"] == 1
            await hub.publish({"topic": "t", "data": "one"})
            await hub.publish({"topic": "t", "data": "two"})
            await wait_frames(call, 2)
            await hub.publish({"topic": "elsewhere", "data": "three"})
        metrics = await hub.metrics()
        assert metrics["sse_hub_streams_open"] == 0
        assert metrics["sse_hub_streams_total"] == 1
        assert metrics["sse_hub_events_published_total"] == 3
        assert metrics["sse_hub_events_delivered_total"] == 2
        assert metrics["sse_hub_bytes_sent_total"] == len(call.body)
        assert metrics['sse_hub_disconnects_total{reason="client"}'] == 1, metrics
        assert metrics['sse_hub_disconnects_total{reason="slow-consumer"}'] == 0


class StalledClient:
    """A client of `/subscribe?topic=t` that reads the response start, then stops reading
    (its sends block) until `resume()`."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.stalled = anyio.Event()
        self.reading = anyio.Event()
        self.ended = anyio.Event()

    async def run(self) -> None:
        scope = http_scope(path="/subscribe", extra_scope={"query_string": b"topic=t"})

        async def receive() -> Message:
            await anyio.sleep_forever()
            raise AssertionError  # pragma: no cover

        async def send(message: Message) -> None:
            if message["type"] == "http.response.body" and not self.reading.is_set():
                self.stalled.set()
                await self.reading.wait()

        try:
            await self.hub.app(scope, receive, send)
        finally:
            self.ended.set()

    async def subscribed(self) -> None:
        broker = self.hub.app.state.hub.broker
        while broker.metrics.subscribers < 1:
            await anyio.sleep(0.005)  # polling a counter, with a deadline

    def resume(self) -> None:
        self.reading.set()


@pytest.mark.anyio
async def test_a_slow_consumer_is_disconnected_and_counted() -> None:
    async with running_hub(Broker(buffer=2)) as hub, anyio.create_task_group() as tg:
        client = StalledClient(hub)
        tg.start_soon(client.run)
        with anyio.fail_after(5):
            await client.subscribed()
            await hub.publish({"topic": "t", "data": "first"})
            await client.stalled.wait()
            for i in range(3):  # the stream holds "first"; its buffer holds 2: one too many
                await hub.publish({"topic": "t", "data": str(i)})
            metrics = await hub.metrics()
            assert metrics["sse_hub_slow_consumer_disconnects_total"] == 1
            client.resume()
            await client.ended.wait()
        metrics = await hub.metrics()
        assert metrics['sse_hub_disconnects_total{reason="slow-consumer"}'] == 1
        assert metrics["sse_hub_events_delivered_total"] == 1


@pytest.mark.anyio
async def test_streams_ended_by_server_shutdown_are_counted_as_shutdown() -> None:
    async with running_hub() as hub, hub.subscribe("topic=t") as call:
        AppStatus.should_exit = True
        await call.wait_until(lambda c: c.complete)
        with anyio.fail_after(5):  # the stream is counted once its response has returned
            await call.done.wait()
        AppStatus.should_exit = False
        assert (await hub.metrics())['sse_hub_disconnects_total{reason="shutdown"}'] == 1


@pytest.mark.anyio
async def test_a_client_that_stops_reading_is_dropped_after_send_timeout() -> None:
    async with running_hub(send_timeout=0.2) as hub, anyio.create_task_group() as tg:
        client = StalledClient(hub)
        tg.start_soon(client.run)
        with anyio.fail_after(5):
            await client.subscribed()
            await hub.publish({"topic": "t", "data": "never read"})
            await client.ended.wait()  # without resume(): the send timed out
        metrics = await hub.metrics()
        assert metrics['sse_hub_disconnects_total{reason="send-timeout"}'] == 1
        assert metrics["sse_hub_streams_open"] == 0


@pytest.mark.anyio
async def test_cors_lets_the_configured_origins_call_the_hub_with_credentials() -> None:
    async with running_hub(cors_origins=["https://app.example"]) as hub:
        preflight = await hub.client.options(
            "/publish",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        assert preflight.headers["access-control-allow-credentials"] == "true"
        other = await hub.client.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


@pytest.mark.anyio
async def test_healthz_and_index() -> None:
    async with running_hub() as hub:
        response = await hub.client.get("/healthz")
        assert (response.status_code, response.json()) == (200, {"status": "ok"})
        index = await hub.client.get("/")
        assert "POST /publish" in index.text
        assert "open" in index.text


# --- Redis -------------------------------------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_healthz_says_when_redis_is_down(redis_server: RedisServer) -> None:
    async with running_hub(Broker(redis_server.url)) as hub:
        assert (await hub.client.get("/healthz")).status_code == 200
        redis_server.kill()
        response = await hub.client.get("/healthz")
        assert response.status_code == 503
        assert response.json()["status"] == "unavailable"
        refused = await hub.publish({"topic": "t", "data": "x"})
        assert refused.status_code == 503
        assert "not stored" in refused.json()["error"]


# --- the command line ---------------------------------------------------------------------------


def read_stream(url: str, until: str, **kwargs: Any) -> str:
    """GET an event stream until `until` arrived; then leave."""
    text = ""
    with httpx.stream("GET", url, timeout=10, **kwargs) as response:
        assert response.status_code == 200, response.read()
        for chunk in response.iter_text():
            text += chunk
            if until in text:
                return text
    raise AssertionError(f"stream ended before {until!r}: {text!r}")


@pytest.mark.server
def test_the_hub_command_serves_publish_subscribe_metrics_and_logs_each_stream() -> None:
    with start_cli("hub", "--port", "0") as hub:
        hub.wait_log("Application startup complete")
        assert "OPEN MODE" in hub.log()
        with httpx.stream("GET", f"{hub.url}/subscribe?topic=news", timeout=10) as stream:
            assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
            hub.wait_log("stream 1 opened")
            published = httpx.post(f"{hub.url}/publish", json={"topic": "news", "data": "hi"})
            id = published.json()["id"]
            text = ""
            for chunk in stream.iter_text():
                text += chunk
                if "\r\n\r\n" in text:
                    break
            assert text == f"id: {id}\r\ndata: hi\r\n\r\n"
        hub.wait_log("stream 1 closed (client)")
        assert httpx.get(f"{hub.url}/healthz").json() == {"status": "ok"}
        metrics = parse_metrics(httpx.get(f"{hub.url}/metrics").text)
        assert metrics["sse_hub_events_delivered_total"] == 1


@pytest.mark.server
def test_hub_options_come_from_the_environment_and_no_token_reaches_the_log(
    tmp_path: Path,
) -> None:
    private, public = rsa_keys()
    (tmp_path / "key.pem").write_text(public)
    env = {"SSE_HUB_JWT_PUBLIC_KEY_FILE": str(tmp_path / "key.pem"), "SSE_HUB_MAX_PAYLOAD": "50"}
    with start_cli("hub", "--port", "0", env=env) as hub:
        assert "OPEN MODE" not in hub.log()
        token = jwt.encode({"sse": {"publish": ["t"], "subscribe": ["t"]}}, private, "RS256")
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.post(f"{hub.url}/publish", json={"topic": "t"}).status_code == 401
        assert httpx.post(f"{hub.url}/publish", json={"topic": "t"}, headers=auth).is_success
        big = {"topic": "t", "data": "x" * 50}
        assert httpx.post(f"{hub.url}/publish", json=big, headers=auth).status_code == 413
        with httpx.stream("GET", f"{hub.url}/subscribe?topic=t&token={token}", timeout=10):
            hub.wait_log("stream 1 opened")
        hub.wait_log("stream 1 closed")
        assert token not in hub.log()


@pytest.mark.server
def test_hub_processes_on_one_redis_act_as_one(redis_server: RedisServer) -> None:
    with (
        start_cli("hub", "--port", "0", "--redis", redis_server.url) as first,
        start_cli("hub", "--port", "0", "--redis", redis_server.url) as second,
    ):
        ids = []
        for hub in (first, second):
            response = httpx.post(f"{hub.url}/publish", json={"topic": "t", "data": hub.url})
            ids.append(response.json()["id"])
        # Each process serves what the other published, resuming from before both.
        for hub in (first, second):
            text = read_stream(f"{hub.url}/subscribe?topic=t&lastEventId=0-0", ids[1])
            assert text == (
                f"id: {ids[0]}\r\ndata: {first.url}\r\n\r\n"
                f"id: {ids[1]}\r\ndata: {second.url}\r\n\r\n"
            )


def test_help_names_every_environment_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["hub", "--help"])
    assert exit.value.code == 0
    help = capsys.readouterr().out
    for name in ("HOST", "PORT", "REDIS", "JWT_KEY", "JWT_PUBLIC_KEY_FILE", "MAX_PAYLOAD",
                 "HISTORY", "PING", "SEND_TIMEOUT", "CORS_ORIGINS"):  # fmt: skip
        assert f"SSE_HUB_{name}" in help


def test_a_bad_environment_value_is_reported_like_a_bad_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SSE_HUB_PORT", "eighty")
    with pytest.raises(SystemExit) as exit:
        main(["hub"])
    assert exit.value.code == 2
    assert "argument --port: invalid int value: 'eighty'" in capsys.readouterr().err
