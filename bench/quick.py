"""Quick side-by-side: events/s on one stream and tasks per idle stream, this project vs the
published sse-starlette 3.7.0 (in .venv-upstream), both under uvicorn (uvloop, httptools).

    make bench            # or: .venv/bin/python bench/quick.py [--events N] [--rounds R]

The full harness is bench/README (issue 3); this script is the quick check for the core.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PYTHONS = {"ours": ROOT / ".venv/bin/python", "upstream": ROOT / ".venv-upstream/bin/python"}


@contextlib.contextmanager
def serve(python: Path) -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    port = sock.getsockname()[1]
    cmd = [
        str(python),
        "-m",
        "uvicorn",
        "app:app",
        "--fd",
        str(sock.fileno()),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    proc = subprocess.Popen(cmd, cwd=HERE, pass_fds=[sock.fileno()])
    sock.close()
    try:
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


def get(port: int, path: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return s


def throughput(port: int, n: int) -> float:
    s = get(port, f"/events?n={n}")
    start = time.perf_counter()
    tail = b""
    while not tail.endswith(b"\r\n0\r\n\r\n"):
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        tail = (tail + chunk)[-16:]
    elapsed = time.perf_counter() - start
    s.close()
    return n / elapsed


def tasks_per_stream(port: int, k: int) -> float:
    def count() -> int:
        s = get(port, "/tasks")
        data = b""
        while b"\r\n\r\n" not in data or not data.split(b"\r\n\r\n", 1)[1]:
            data += s.recv(4096)
        s.close()
        return int(data.split(b"\r\n\r\n", 1)[1])

    base = count()
    streams = [get(port, "/events") for _ in range(k)]
    for s in streams:
        s.recv(4096)  # headers: the stream is open
    deadline = time.monotonic() + 10
    while (now := count()) - base < k and time.monotonic() < deadline:
        pass
    for s in streams:
        s.close()
    return (now - base) / k


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {name: [] for name in PYTHONS}
    tasks: dict[str, float] = {}
    servers = {name: contextlib.ExitStack() for name in PYTHONS}
    ports = {name: servers[name].enter_context(serve(py)) for name, py in PYTHONS.items()}
    try:
        for port in ports.values():  # warm-up, and the server is up
            deadline = time.monotonic() + 20
            while True:
                try:
                    throughput(port, 1000)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
        for _ in range(args.rounds):  # interleaved, so machine noise hits both alike
            for name, port in ports.items():
                rates[name].append(throughput(port, args.events))
        for name, port in ports.items():
            tasks[name] = tasks_per_stream(port, 100)
    finally:
        for stack in servers.values():
            stack.close()
    for name in PYTHONS:
        med = statistics.median(rates[name])
        spread = (max(rates[name]) - min(rates[name])) / med
        print(
            f"{name:9s} events/s median {med:9.0f} (spread {spread:.0%})  "
            f"tasks per idle stream {tasks[name]:.2f}"
        )
    ratio = statistics.median(rates["ours"]) / statistics.median(rates["upstream"])
    print(f"ratio ours/upstream events/s: {ratio:.2f}x")


if __name__ == "__main__":
    main()
