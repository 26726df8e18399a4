"""Real ASGI servers in subprocesses, on a socket the test binds first (no port race)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Server:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.process = process
        self.port = port
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.process.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def wait_log(self, text: str, timeout: float = 10.0) -> None:
        """Poll the server's log until `text` appears (deadline, not a fixed sleep)."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in server log:\n{self.log()}")
            if self.process.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.log()}")
            time.sleep(0.02)


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
    with tempfile.NamedTemporaryFile(prefix="server-", suffix=".log") as log:
        process = subprocess.Popen(
            cmd, cwd=ROOT, pass_fds=[fd], stdout=log, stderr=subprocess.STDOUT, env=env
        )
        sock.close()
        try:
            yield Server(process, port, Path(log.name))
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


def raw_request(port: int, path: str, method: str = "GET", headers: str = "") -> socket.socket:
    """Open a connection and send a bare HTTP/1.1 request; the caller reads (or doesn't)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    request = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n"
    sock.sendall(request.encode())
    return sock
