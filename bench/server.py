"""The implementations compared, and one server process of each: start, measure, stop.

Every server is uvicorn with uvloop and httptools (or, with `--server granian`, granian with
uvloop and one worker process), in its own process, on a socket the harness binds first
(127.0.0.1, no port race) and passes with `--fd`; granian takes no socket, so it gets the
port of one the harness has just bound and closed. The server runs with cwd=bench
and imports `apps.<module>`: the repository is not on its path, so `import sse_starlette` finds
the package of the interpreter's virtualenv.
What the harness reads of it comes from /proc and from the app's `/_stats` endpoint.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
BACKLOG = 4096  # the kernel caps it at net.core.somaxconn; clients keep fewer pending
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# A server holding 16,000 streams of a slow contender may take tens of seconds to answer.
CONTROL_TIMEOUT = 120.0
ERROR_LINE = re.compile(r"\bERROR\b|Traceback")


def cpu_s(pid: int) -> float:
    """CPU seconds a process has used, all threads, user and system."""
    try:
        # schedstat counts nanoseconds; /proc/<pid>/stat only 10 ms ticks.
        total = 0
        for task in Path(f"/proc/{pid}/task").iterdir():
            total += int((task / "schedstat").read_text().split()[0])
        return total / 1e9
    except (OSError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def rss_kib(pid: int) -> int:
    """Resident memory of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def tree(pid: int) -> list[int]:
    """A process and its descendants (granian serves from a worker process of its own)."""
    pids = [pid]
    for parent in pids:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{parent}/task").iterdir():
                pids += [int(child) for child in (task / "children").read_text().split()]
    return pids


# The servers, as data: how each is tuned (the same for every contender; the run's `meta`
# quotes it), and where it gets its socket (uvicorn the harness's, by `--fd`; granian a port).
SERVERS = {
    "uvicorn": (
        # uvicorn listens again on the socket: keep the larger backlog
        *("--backlog", str(BACKLOG), "--loop", "uvloop", "--http", "httptools"),
        *("--no-access-log", "--log-level", "warning"),
    ),
    "granian": (
        *("--interface", "asgi", "--backlog", str(BACKLOG), "--workers", "1"),
        # Requests in flight, per worker (default: the backlog, 4,096): every open stream is one.
        *("--backpressure", "20000"),
        *("--loop", "uvloop", "--http", "1", "--no-ws", "--log-level", "warning"),
    ),
}


def _command(server: str, python: str, app: str, fd: int, port: int) -> list[str]:
    if server == "uvicorn":
        return [python, "-m", "uvicorn", app, "--fd", str(fd), *SERVERS[server]]
    return [python, "-m", server, "--host", "127.0.0.1", "--port", str(port), *SERVERS[server], app]


@dataclass(frozen=True)
class Implementation:
    """One contender: which interpreter (virtualenv) runs which app module."""

    name: str
    python: Path
    app: str  # module:attribute in bench/apps
    needs_redis: bool = False  # served with BENCH_BROKER_URL set to the harness's redis-server


IMPLEMENTATIONS = {
    impl.name: impl
    for impl in (
        Implementation("ours", ROOT / ".venv/bin/python", "ours_upstream:app"),
        Implementation("upstream", ROOT / ".venv-upstream/bin/python", "ours_upstream:app"),
        Implementation("streaming", ROOT / ".venv/bin/python", "streaming:app"),
        Implementation("raw", ROOT / ".venv/bin/python", "raw:app"),
        # FastAPI's own SSE.
        Implementation("fastapi-sse", ROOT / ".venv/bin/python", "fastapi_sse:app"),
        # The app and Starlette with the least response (apps/floor.py): full profile only.
        Implementation("floor", ROOT / ".venv/bin/python", "floor:app"),
        # `ours` on its fallback path, anyio's scopes (apps/ours_anyio.py): full profile only.
        Implementation("ours-anyio", ROOT / ".venv/bin/python", "ours_anyio:app"),
        # `ours` with ping=0 (apps/ours_noping.py): what the ping timer costs; --impl only.
        Implementation("ours-noping", ROOT / ".venv/bin/python", "ours_noping:app"),
        # raw with each send in an anyio cancel scope, or after busy work (apps/raw_paced.py):
        # bench/granian_pacing.py's; --impl only.
        Implementation("raw-in-scope", ROOT / ".venv/bin/python", "raw_paced:in_scope"),
        Implementation("raw-spin", ROOT / ".venv/bin/python", "raw_paced:spin"),
        # The broker scenario's contenders (apps/broker.py), beside raw.
        Implementation("broker", ROOT / ".venv/bin/python", "broker:app"),
        Implementation("broker-redis", ROOT / ".venv/bin/python", "broker:app", needs_redis=True),
        # The storm's baseline: the memory broker sending one message per event.
        Implementation("broker-1msg", ROOT / ".venv/bin/python", "broker_one_message:app"),
    )
}


def _outside_package(log_dir: Path) -> Path:
    """A directory whose `apps` is bench/apps, with no package around it. Granian puts on
    sys.path the first directory above the app that is not a package: from bench (a package)
    that is the repository, whose sse_starlette would then shadow the published one in
    .venv-upstream."""
    where = log_dir / "granian-cwd"
    if not where.exists():
        where.mkdir()
        (where / "apps").symlink_to(BENCH / "apps")
    return where


class Server:
    """A running server process (uvicorn or granian) serving one implementation."""

    def __init__(
        self,
        impl: Implementation,
        log_dir: Path,
        env: dict[str, str] | None = None,
        server: str = "uvicorn",
    ) -> None:
        self.impl = impl
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(BACKLOG)
        self.port: int = sock.getsockname()[1]
        self.log_path = log_dir / f"{impl.name}-{self.port}.log"
        cmd = _command(server, str(impl.python), f"apps.{impl.app}", sock.fileno(), self.port)
        cwd = BENCH
        if server != "uvicorn":  # it binds the port itself
            sock.close()
            cwd = _outside_package(log_dir)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                cmd,
                cwd=cwd,
                pass_fds=[sock.fileno()] if server == "uvicorn" else [],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )
        sock.close()
        self.exited_ns = 0
        self._waiter = threading.Thread(target=self._wait, daemon=True)
        self._waiter.start()
        self.served_by = str(self._ready(30.0)["served_by"])
        venv = impl.python.parent.parent
        if venv.name == ".venv-upstream" and str(venv) not in self.served_by:
            self.stop()
            raise RuntimeError(f"{impl.name} imported another package: {self.served_by}")

    def _wait(self) -> None:
        # A thread that reaps the process stamps the moment it exits (SIGTERM timing).
        self.process.wait()
        self.exited_ns = time.monotonic_ns()

    def _ready(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.stats()
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.impl.name} did not start:\n{self.log()}") from None
                time.sleep(0.05)

    def get(self, path: str) -> bytes:
        """A control request (not the measured path, so plain http.client is fine)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=CONTROL_TIMEOUT)
        try:
            conn.request("GET", path)
            return conn.getresponse().read()
        finally:
            conn.close()

    def stats(self) -> dict[str, Any]:
        """The app's view: tasks in its event loop and streams it holds."""
        stats: dict[str, Any] = json.loads(self.get("/_stats"))
        return stats

    def broadcast(self) -> int:
        """One event to every open stream; the number of streams the app sent it to."""
        return int(self.get("/_broadcast"))

    def publish(self, n: int, size: int) -> str:
        """`n` events of about `size` bytes (broker apps); the id of the event before them."""
        return self.get(f"/_publish?n={n}&size={size}").decode()

    def cpu_s(self) -> float:
        """CPU seconds the server has used, all threads and processes, user and system."""
        return sum(cpu_s(pid) for pid in tree(self.process.pid))

    def rss_kib(self) -> int:
        """Resident memory of the server's processes."""
        return sum(rss_kib(pid) for pid in tree(self.process.pid))

    def wait_streams(self, count: int, timeout: float) -> dict[str, Any]:
        """Poll `/_stats` until the app holds `count` streams (or the deadline passes)."""
        deadline = time.monotonic() + timeout
        while (stats := self.stats())["streams"] != count and time.monotonic() < deadline:
            time.sleep(0.05)
        return stats

    def quiet(self, timeout: float) -> dict[str, Any]:
        """Poll `/_stats` until the task count holds still (ended streams' tasks are gone)."""
        deadline = time.monotonic() + timeout
        stats = self.stats()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            again = self.stats()
            if again["tasks"] == stats["tasks"] and again["streams"] == stats["streams"]:
                return again
            stats = again
        return stats

    def settle(self, base: dict[str, Any], timeout: float) -> tuple[dict[str, Any], float]:
        """Poll until tasks and streams are back to `base`; the stats and the time it took."""
        start = time.monotonic()
        while True:
            stats = self.stats()
            back = stats["tasks"] <= base["tasks"] and stats["streams"] <= base["streams"]
            if back or time.monotonic() - start > timeout:
                return stats, time.monotonic() - start
            time.sleep(0.05)

    def terminate(self) -> int:
        """Send SIGTERM; the monotonic ns at which it was sent."""
        sent = time.monotonic_ns()
        self.process.send_signal(signal.SIGTERM)
        return sent

    def wait_exit(self, deadline_ns: int) -> bool:
        """Wait for the process to exit until `deadline_ns`; False: it hung and was killed."""
        self._waiter.join(max(0.0, (deadline_ns - time.monotonic_ns()) / 1e9))
        if not self._waiter.is_alive():
            return True
        self.process.kill()
        self._waiter.join(10)
        return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_errors(self) -> list[str]:
        """Lines of the server's output that report an error (there should be none)."""
        return [line for line in self.log().splitlines() if ERROR_LINE.search(line)]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(3)
            except subprocess.TimeoutExpired:  # streams that never end keep uvicorn waiting
                self.process.kill()
                self.process.wait(5)
        self._waiter.join(5)
