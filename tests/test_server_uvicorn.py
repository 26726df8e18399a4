"""EventSourceResponse under a real uvicorn process: what depends on the server."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.servers import Server, raw_request

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


def test_events_arrive_one_by_one_as_yielded(uvicorn_server: Server) -> None:
    with httpx.stream("GET", f"{uvicorn_server.url}/on-demand", timeout=10) as response:
        lines = response.iter_lines()
        assert next(lines) == "id: 1"
        assert next(lines) == "data: one"
        # The generator is now blocked before event 2, and event 1 has already arrived.
        uvicorn_server.wait_log("waiting for release")
        httpx.post(f"{uvicorn_server.url}/release", timeout=10)
        assert [next(lines) for _ in range(3)] == ["", "id: 2", "data: two"]


def test_client_disconnect_runs_close_handler_and_generator_finally(uvicorn_server: Server) -> None:
    sock = raw_request(uvicorn_server.port, "/endless?name=c1")
    read_until(sock, b"data: 2\r\n")
    sock.close()
    uvicorn_server.wait_log("c1: close handler got http.disconnect")
    uvicorn_server.wait_log("c1: finally ran")


def test_client_that_stops_reading_hits_send_timeout(uvicorn_server: Server) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", uvicorn_server.port))
    sock.sendall(b"GET /flood HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    # Never read: the server's socket buffer fills, the send blocks, send_timeout fires.
    uvicorn_server.wait_log("SendTimeoutError")
    uvicorn_server.wait_log("flood: finally ran")
    sock.close()


def test_head_answers_headers_only_without_starting_the_generator(uvicorn_server: Server) -> None:
    sock = raw_request(uvicorn_server.port, "/endless?name=h1", method="HEAD")
    data = read_until(sock, b"\r\n\r\n")
    head = data.decode("latin-1").lower()
    assert head.startswith("http/1.1 200")
    assert "content-type: text/event-stream; charset=utf-8" in head
    sock.settimeout(1)
    # The response is complete: uvicorn keeps the connection for the next request.
    sock.sendall(b"GET /release-nothing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert b"404" in read_until(sock, b"\r\n\r\n")
    sock.close()
    assert "h1: generator started" not in uvicorn_server.log()


def test_ping_comment_arrives_between_events(uvicorn_server: Server) -> None:
    sock = raw_request(uvicorn_server.port, "/endless?name=p1&ping=0.1")
    assert b": ping - " in read_until(sock, b": ping - ")
    sock.close()
