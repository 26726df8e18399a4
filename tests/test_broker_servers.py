"""The broker behind real uvicorn processes sharing a real redis-server."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import Iterator

import pytest

from sse_starlette.broker import Broker
from sse_starlette.parser import EventStreamParser
from tests.redis_server import RedisServer
from tests.servers import Server, start_server

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server.url
    server.kill()


@pytest.fixture
def prefix(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> str:
    prefix = f"servers-{uuid.uuid4().hex[:8]}:"
    monkeypatch.setenv("SSE_TEST_BROKER_URL", redis_url)
    monkeypatch.setenv("SSE_TEST_REDIS_PREFIX", prefix)
    return prefix


def stats(server: Server) -> dict[str, int]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return json.loads(reply.split(b"\r\n\r\n", 1)[1])  # type: ignore[no-any-return]


async def wait_stats(server: Server, key: str, value: int, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (seen := await asyncio.to_thread(stats, server))[key] != value:
        assert asyncio.get_running_loop().time() < deadline, f"{key}: {seen}\n{server.log()}"
        await asyncio.sleep(0.05)  # polls another process, with a deadline


def dechunk(raw: bytes) -> bytes:
    """The body of a chunked HTTP/1.1 response (headers and chunk framing removed)."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower(), head
    body: list[bytes] = []
    at = 0
    while True:
        end = rest.find(b"\r\n", at)
        if end < 0:
            return b"".join(body)
        size = int(rest[at:end], 16)
        body.append(rest[end + 2 : end + 2 + size])
        at = end + 2 + size + 2
        if size == 0:
            return b"".join(body)


_writers: list[asyncio.StreamWriter] = []  # a writer that is garbage-collected closes


async def open_stream(port: int, topic: str, last_event_id: str = "") -> asyncio.StreamReader:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    header = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id else ""
    writer.write(f"GET /events?topic={topic} HTTP/1.1\r\nHost: x\r\n{header}\r\n".encode())
    await writer.drain()
    _writers.append(writer)
    return reader


async def read_body(reader: asyncio.StreamReader, until: bytes) -> bytes:
    """Read until `until` arrived (or the server ended the response); return the body."""
    raw = b""
    while chunk := await reader.read(1 << 20):
        raw += chunk
        if until in raw[-len(chunk) - len(until) :]:
            break
    return dechunk(raw)


def test_two_processes_on_one_redis_deliver_every_event_in_order_with_the_same_ids(
    prefix: str, redis_url: str
) -> None:
    per_server, events = 1000, 1000

    async def scenario(servers: list[Server]) -> None:
        readers = [
            await open_stream(server.port, "scale") for server in servers for _ in range(per_server)
        ]
        for server in servers:
            await wait_stats(server, "subscribers", per_server)
        async with Broker(redis_url, prefix=prefix) as publisher:
            ids = [await publisher.publish("scale", f"event {i}") for i in range(events)]
        expected = b"".join(
            f"id: {id}\r\ndata: event {i}\r\n\r\n".encode() for i, id in enumerate(ids)
        )
        last = f"data: event {events - 1}\r\n\r\n".encode()
        bodies = await asyncio.wait_for(
            asyncio.gather(*(read_body(reader, last) for reader in readers)), 120
        )
        wrong = [body for body in bodies if body != expected]
        assert not wrong, f"{len(wrong)} of {len(bodies)} differ; first: {wrong[0][:300]!r}"

    with (
        start_server("tests.apps.broker_app:app") as first,
        start_server("tests.apps.broker_app:app") as second,
    ):
        first.wait_log("Application startup complete")
        second.wait_log("Application startup complete")
        asyncio.run(scenario([first, second]))
        assert "Traceback" not in first.log() + second.log()


def test_a_client_that_stops_reading_keeps_server_memory_bounded_and_resumes_without_loss(
    prefix: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSE_TEST_BUFFER", "16")
    events, size = 5000, 8192  # 40 MiB: held by the server, it would show in its memory

    async def scenario(server: Server) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"GET /events?topic=slow HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        await wait_stats(server, "subscribers", 1)
        before = (await asyncio.to_thread(stats, server))["max_rss_kib"]
        async with Broker(redis_url, prefix=prefix, history=events) as publisher:
            ids = [await publisher.publish("slow", "x" * size) for _ in range(events)]
        await wait_stats(server, "slow_consumer_disconnects", 1)
        after = (await asyncio.to_thread(stats, server))["max_rss_kib"]
        assert after - before < 20 * 1024, f"server grew {after - before} KiB"

        # It reads again: what was in flight, then the end of the connection (the server
        # gave up on it without waiting for it to read: no final chunk, which could not be
        # sent either), then the rest after reconnecting.
        first = await asyncio.wait_for(reader.read(-1), 30)
        assert not first.endswith(b"0\r\n\r\n")
        assert dechunk(first).endswith(b"\r\n\r\n")  # whole events only
        parser = EventStreamParser(max_event_size=None)
        seen = [event.id for event in parser.feed(dechunk(first))]
        assert seen, "nothing arrived before the disconnect"
        again = await open_stream(server.port, "slow", parser.last_event_id)
        # The whole last event (one chunk on the wire), not just its id line.
        rest = await read_body(again, f"id: {ids[-1]}\r\ndata: {'x' * size}\r\n\r\n".encode())
        seen += [event.id for event in parser.feed(rest)]
        assert seen == ids

    with start_server("tests.apps.broker_app:app") as server:
        server.wait_log("Application startup complete")
        asyncio.run(scenario(server))
