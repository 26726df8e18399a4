"""`python -m sse_starlette ...` in a subprocess, as a user runs it, read as it prints."""

from __future__ import annotations

import contextlib
import re
import socket
import sys
from collections.abc import Iterator

from tests.servers import Server, spawn


def listening_socket() -> socket.socket:
    """A socket on a free port of 127.0.0.1, listening: servers started with `--fd` share it,
    so the port stays open (connections wait in its backlog) while a server restarts."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    return sock


@contextlib.contextmanager
def start_cli(
    *args: str, sock: socket.socket | None = None, env: dict[str, str] | None = None
) -> Iterator[Server]:
    """Run `python -m sse_starlette *args`; with `sock`, serving on it (`--fd`).

    Without `sock` the command binds its own port (pass `--port 0`): the port is read from
    the address it prints, and `Server.url` is that address. Killed on exit if still alive.
    """
    command = [sys.executable, "-m", "sse_starlette", *args]
    pass_fds: list[int] = []
    if sock is not None:
        command += ["--fd", str(sock.fileno())]
        pass_fds.append(sock.fileno())
    port = sock.getsockname()[1] if sock is not None else 0
    with spawn(command, port, pass_fds, env) as server:
        if sock is None:
            server.wait_log("http://", timeout=15)
            match = re.search(r"http://127\.0\.0\.1:(\d+)", server.log())
            assert match is not None, server.log()
            server.port = int(match[1])
            server.url = match[0]
        yield server
