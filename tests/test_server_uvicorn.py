"""EventSourceResponse under a real uvicorn process: what depends on the server."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.servers import Server, raw_request, start_server

pytestmark = pytest.mark.server


def read_until(sock: socket.socket, marker: bytes, timeout: float = 10) -> bytes:
    """Read from `sock` until `marker` has arrived (or the deadline passes)."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    data = b""
    while marker not in data:
        if time.monotonic() > deadline:
            raise AssertionError(f"{marker!r} not received; got {data[-500:]!r}")
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before {marker!r}; got {data[-500:]!r}")
        data += chunk
    return data


def read_to_eof(sock: socket.socket, timeout: float = 10) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@pytest.fixture
def server() -> Iterator[Server]:
    with start_server("tests.apps.streams:app") as server:
        yield server


def test_events_arrive_one_by_one_as_yielded(server: Server) -> None:
    with httpx.stream("GET", f"{server.url}/on-demand", timeout=10) as response:
        lines = response.iter_lines()
        assert next(lines) == "id: 1"
        assert next(lines) == "data: one"
        # The generator is now blocked before event 2, and event 1 has already arrived.
        server.wait_log("waiting for release")
        httpx.post(f"{server.url}/release", timeout=10)
        assert [next(lines) for _ in range(3)] == ["", "id: 2", "data: two"]


def test_client_disconnect_runs_close_handler_and_generator_finally(server: Server) -> None:
    sock = raw_request(server.port, "/endless?name=c1")
    read_until(sock, b"data: 2\r\n")
    sock.close()
    server.wait_log("c1: close handler got http.disconnect")
    server.wait_log("c1: finally ran")


def test_client_that_stops_reading_hits_send_timeout(server: Server) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(b"GET /flood HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    # Never read: the server's socket buffer fills, the send blocks, send_timeout fires.
    server.wait_log("SendTimeoutError")
    server.wait_log("flood: finally ran")
    sock.close()


def test_head_answers_headers_only_without_starting_the_generator(server: Server) -> None:
    sock = raw_request(server.port, "/endless?name=h1", method="HEAD")
    data = read_until(sock, b"\r\n\r\n")
    head = data.decode("latin-1").lower()
    assert head.startswith("http/1.1 200")
    assert "content-type: text/event-stream; charset=utf-8" in head
    sock.settimeout(1)
    # The response is complete: uvicorn keeps the connection for the next request.
    sock.sendall(b"GET /release-nothing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert b"404" in read_until(sock, b"\r\n\r\n")
    sock.close()
    assert "h1: generator started" not in server.log()


def test_ping_comment_arrives_on_idle_stream(server: Server) -> None:
    sock = raw_request(server.port, "/on-demand")
    read_until(sock, b"data: one")
    sock.close()
    sock = raw_request(server.port, "/endless?name=p1&ping=0.1")
    assert b": ping - " in read_until(sock, b": ping - ")
    sock.close()


def test_sigterm_ends_open_streams_cleanly_and_server_exits(server: Server) -> None:
    socks = [raw_request(server.port, f"/endless?name=s{i}") for i in range(5)]
    received = {sock: read_until(sock, b"data: 1\r\n") for sock in socks}
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    # uvicorn re-raises the captured signal once shut down, so it dies "by" SIGTERM.
    assert server.wait_exit(timeout=10) in (0, -signal.SIGTERM)
    elapsed = time.monotonic() - started
    for sock in socks:
        # The terminating zero-length chunk: the client sees a normal end of the response.
        assert (received[sock] + read_to_eof(sock)).endswith(b"\r\n0\r\n\r\n")
        sock.close()
    log = server.log()
    for i in range(5):
        assert f"s{i}: finally ran" in log
    assert "Traceback" not in log and "ERROR" not in log, log
    assert elapsed < 5, f"server took {elapsed:.2f}s to exit"


def test_sigterm_sends_farewells_and_cancels_a_generator_after_its_grace(server: Server) -> None:
    socks = [raw_request(server.port, "/farewell") for _ in range(3)]
    stubborn = raw_request(server.port, "/farewell?stubborn=1")
    received = {sock: read_until(sock, b"data: hello\r\n\r\n") for sock in [*socks, stubborn]}
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.wait_exit(timeout=10) in (0, -signal.SIGTERM)
    elapsed = time.monotonic() - started
    for sock in socks:
        body = received[sock] + read_to_eof(sock)
        assert b"event: farewell\r\ndata: bye\r\n\r\n" in body
        assert body.endswith(b"\r\n0\r\n\r\n")
    # The stubborn generator is cancelled when the 2 s grace period ends, then ends cleanly.
    assert (received[stubborn] + read_to_eof(stubborn)).endswith(b"\r\n0\r\n\r\n")
    assert 1.5 < elapsed < 6, elapsed
    assert "Traceback" not in server.log()
