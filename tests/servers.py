"""Real ASGI servers in subprocesses, on a socket the test binds first (no port race)."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Server:
    """A server process whose output is read as it comes, so waits wake on each new line."""

    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self._lines.append(line.decode(errors="replace"))
                self._changed.notify_all()
        with self._changed:  # EOF: the process is gone; wake waiters to say so
            self._lines.append("")
            self._changed.notify_all()

    def log(self) -> str:
        with self._changed:
            return "".join(self._lines)

    def signal_group(self, sig: int = signal.SIGINT) -> None:
        """Signal the server and all its workers at once, as Ctrl+C in a terminal does."""
        os.killpg(self.process.pid, sig)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.process.send_signal(sig)

    def wait_accepting(self, timeout: float = 15.0) -> None:
        """Wait until the server accepts connections (for a server that binds its own port).

        A poll, not `wait_log`: granian (2.8) prints no line once it listens; its worker logs
        "Started worker-N" just before it binds and listens.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None:
                    raise AssertionError(f"server exited early:\n{self.log()}") from None
                if time.monotonic() > deadline:
                    raise AssertionError(f"server not accepting:\n{self.log()}") from None
                time.sleep(0.05)  # no listener yet, and no line to wait on

    def wait_exit(self, timeout: float) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout)  # the whole log has been read
        return code

    def wait_log(self, text: str, timeout: float = 10.0, count: int = 1) -> None:
        """Wait until `text` appears `count` times in the server's output, or fail at the
        deadline."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while "".join(self._lines).count(text) < count:
                if self._lines[-1:] == [""]:
                    raise AssertionError(f"server exited early:\n{''.join(self._lines)}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{text!r} not in server log:\n{''.join(self._lines)}")
                self._changed.wait(remaining)


SERVERS = ("uvicorn", "uvicorn.run", "gunicorn", "hypercorn", "granian", "daphne")


def _command(server: str, app: str, fd: int, port: int, args: tuple[str, ...]) -> list[str]:
    python = sys.executable
    if server == "uvicorn":
        return [python, "-m", "uvicorn", app, "--fd", str(fd), "--log-level", "info", *args]
    if server == "uvicorn.run":
        # The app (and so sse_starlette) is imported before uvicorn, the order isort gives a
        # script that ends in uvicorn.run(app): the hooks must still find uvicorn.
        module, attr = app.split(":")
        options = ", ".join(args)
        script = (
            f"from {module} import {attr} as app\n"
            "import uvicorn\n"
            f"uvicorn.run(app, fd={fd}, log_level='info', {options})\n"
        )
        return [python, "-c", script]
    if server == "gunicorn":
        return [
            *(python, "-m", "gunicorn", app, "--bind", f"fd://{fd}"),
            *("--worker-class", "uvicorn.workers.UvicornWorker", "--no-control-socket", *args),
        ]
    if server == "hypercorn":
        return [python, "-m", "hypercorn", app, "--bind", f"fd://{fd}", *args]
    if server == "granian":
        return [
            *(python, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1"),
            *("--port", str(port), *args, app),
        ]
    if server == "daphne":
        return [python, "-m", "daphne", "--fd", str(fd), *args, app]
    raise ValueError(f"unknown server {server!r}; one of {SERVERS}")


@contextlib.contextmanager
def spawn(
    command: list[str],
    port: int,
    pass_fds: Sequence[int] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[Server]:
    """Run `command` from the project root, its output read as it comes; on exit, kill its
    process group if it is still alive.

    Its own session, so its own process group: a test may signal the whole group, as Ctrl+C
    in a terminal does, and the kill reaches its workers too.
    """
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        pass_fds=pass_fds,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        start_new_session=True,
    )
    try:
        yield Server(process, port)
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        assert process.stdout is not None
        process.stdout.close()


@contextlib.contextmanager
def start_server(app: str, *args: str, server: str = "uvicorn") -> Iterator[Server]:
    """Start `server` on 127.0.0.1 with `app` (module:attr); kill it on exit if still alive.

    `server` is one of `SERVERS`; `args` go to its command line ("uvicorn.run": keyword
    arguments of `uvicorn.run`, as source). Every server but granian gets a socket that is
    already listening, so clients may connect at once; granian binds its port itself
    (SO_REUSEPORT): the port is held for it until it accepts connections.
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if server == "granian":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", 0))
    if server != "granian":
        sock.listen(2048)
    port, fd = sock.getsockname()[1], sock.fileno()
    with sock, spawn(_command(server, app, fd, port, args), port, pass_fds=[fd]) as running:
        if server == "granian":
            running.wait_accepting()
        sock.close()  # the server has its own copy (granian: its own socket, listening now)
        yield running


def raw_request(port: int, path: str, method: str = "GET", headers: str = "") -> socket.socket:
    """Open a connection and send a bare HTTP/1.1 request; the caller reads (or doesn't)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    request = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n"
    sock.sendall(request.encode())
    return sock


class Streams:
    """Many raw HTTP/1.1 clients at once, read with one selector (1,000 sockets, one thread).

    For each client it records when its chunked response ended (the final `0\r\n\r\n`
    chunk arrived) and when the server closed the connection.
    """

    LAST_CHUNK = b"\r\n0\r\n\r\n"

    def __init__(self, port: int, paths: list[str]) -> None:
        self.socks = [socket.socket() for _ in paths]
        self.data = [b""] * len(paths)
        self.ended_at: list[float | None] = [None] * len(paths)
        self.closed_at: list[float | None] = [None] * len(paths)
        self._selector = selectors.DefaultSelector()
        for i, (sock, path) in enumerate(zip(self.socks, paths, strict=True)):
            sock.connect(("127.0.0.1", port))
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ, i)

    def _read_until(self, done: Callable[[int], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        waiting = {i for i in range(len(self.socks)) if not done(i)}
        while waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                sample = [self.data[i][-200:] for i in sorted(waiting)[:3]]
                raise AssertionError(f"{len(waiting)} clients still waiting for {what}: {sample}")
            for key, _ in self._selector.select(remaining):
                i = key.data
                chunk = self.socks[i].recv(65536)
                now = time.monotonic()
                if chunk:
                    self.data[i] += chunk
                    if self.ended_at[i] is None and self.data[i].endswith(self.LAST_CHUNK):
                        self.ended_at[i] = now
                else:
                    self.closed_at[i] = now
                    self._selector.unregister(self.socks[i])
                if done(i) or self.closed_at[i] is not None:
                    waiting.discard(i)

    def wait_for(self, marker: bytes, timeout: float = 30) -> None:
        """Every client has received `marker` (its stream is open and streaming)."""
        self._read_until(lambda i: marker in self.data[i], repr(marker), timeout)
        closed = [i for i, at in enumerate(self.closed_at) if at is not None]
        assert not closed, f"closed before {marker!r}: {[self.data[i] for i in closed[:3]]}"

    def wait_ended(self, timeout: float = 10) -> None:
        """Every response has ended (its final chunk arrived); the connection may stay open."""
        self._read_until(lambda i: self.ended_at[i] is not None, "the final chunk", timeout)

    def wait_closed(self, timeout: float = 10) -> None:
        """Every server has closed its side of the connection (end of file)."""
        self._read_until(lambda i: self.closed_at[i] is not None, "the end", timeout)

    def close(self) -> None:
        self._selector.close()
        for sock in self.socks:
            sock.close()
