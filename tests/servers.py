"""Real ASGI servers in subprocesses, on a socket the test binds first (no port race)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
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

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.process.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout)  # the whole log has been read
        return code

    def wait_log(self, text: str, timeout: float = 10.0) -> None:
        """Wait until `text` appears in the server's output, or fail at the deadline."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while text not in "".join(self._lines):
                if self._lines[-1:] == [""]:
                    raise AssertionError(f"server exited early:\n{''.join(self._lines)}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{text!r} not in server log:\n{''.join(self._lines)}")
                self._changed.wait(remaining)


@contextlib.contextmanager
def start_server(app: str, *args: str, server: str = "uvicorn") -> Iterator[Server]:
    """Start `server` on 127.0.0.1 with `app` (module:attr); kill it on exit if still alive."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    port = sock.getsockname()[1]
    fd = sock.fileno()
    if server == "uvicorn":
        cmd = [sys.executable, "-m", "uvicorn", app, "--fd", str(fd), "--log-level", "info", *args]
    else:  # pragma: no cover - other servers arrive with the shutdown issue
        raise ValueError(server)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        cmd, cwd=ROOT, pass_fds=[fd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
    )
    sock.close()
    try:
        yield Server(process, port)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        assert process.stdout is not None
        process.stdout.close()


def raw_request(port: int, path: str, method: str = "GET", headers: str = "") -> socket.socket:
    """Open a connection and send a bare HTTP/1.1 request; the caller reads (or doesn't)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    request = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n"
    sock.sendall(request.encode())
    return sock
