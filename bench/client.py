"""Client processes on raw sockets: open streams, count events, reset, watch streams end.

Each worker is a separate process that owns its sockets and answers commands from the harness
over a pipe. The hot path parses nothing: every event the apps send carries one "~", so a
worker counts events with `bytes.count(b"~")` and remembers the last 7 bytes of each stream
to tell a clean end (the chunked terminator) from a cut. Every loop has a deadline.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import resource
import selectors
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

MARK = b"~"
END = b"\r\n0\r\n\r\n"  # the last chunk of a chunked response: the stream ended cleanly
RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, no TIME_WAIT
# Bind the source address, leave the port to connect(): it is then unique per 4-tuple, not per
# address, so a process is not held to the 28k ports of the ephemeral range. (linux/in.h)
IP_BIND_ADDRESS_NO_PORT = 24
WINDOW = 400  # streams a worker has connecting at once: well under the listen backlog
READ_SIZE = 1 << 16


def raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard limit (5,000 streams need it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def request(path: str, last_event_id: str | None = None) -> bytes:
    resume = "" if last_event_id is None else f"Last-Event-ID: {last_event_id}\r\n"
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n{resume}\r\n"
    ).encode()


STREAM = request("/stream")  # an endless stream: its first event, then every broadcast


@dataclass(eq=False)  # compared (and hashed) as itself: `connect` keeps a set of them
class _Stream:
    sock: socket.socket
    opened: int  # monotonic ns at which its request was sent
    awaited: int  # the count `connect`, then `collect`, waits for
    seen: int = 0  # events counted so far
    tail: bytes = b""
    end: str = ""  # "", or how it ended: "clean", "eof", "reset"
    arrived: int = 0  # monotonic ns at which `seen` reached `awaited`


@dataclass
class _Worker:
    """The state of one client process: its streams, and the selector that watches them."""

    source: str = "127.0.0.1"  # this process's own address: the scale scenario spreads them
    selector: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)
    streams: list[_Stream] = field(default_factory=list)

    def _connect(self, port: int, head: bytes, awaited: int) -> _Stream:
        sock = socket.socket()
        try:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((self.source, 0))
            sock.settimeout(10)
            # A blocking connect returns as soon as the kernel queued it (at most `window`
            # pending).
            sock.connect(("127.0.0.1", port))
            sock.sendall(head)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        stream = _Stream(sock, time.monotonic_ns(), awaited)
        self.selector.register(sock, selectors.EVENT_READ, stream)
        return stream

    def _read(self, stream: _Stream) -> None:
        try:
            chunk = stream.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except ConnectionResetError:
            chunk = None
        if chunk:
            stream.seen += chunk.count(MARK)
            stream.tail = (stream.tail + chunk[-7:])[-7:]
            return
        stream.end = "clean" if stream.tail == END else ("eof" if chunk == b"" else "reset")
        self.selector.unregister(stream.sock)
        stream.sock.close()

    def _poll(self, timeout: float) -> tuple[int, list[_Stream]]:
        """Read whatever is ready: the monotonic ns at which the data was there, the streams."""
        ready = self.selector.select(timeout)
        now = time.monotonic_ns()  # one stamp per wake-up: cheaper, and closer to arrival
        streams = [key.data for key, _ in ready]
        for stream in streams:
            self._read(stream)
        return now, streams

    def connect(
        self,
        port: int,
        count: int,
        timeout: float,
        keep: bool,
        head: bytes = STREAM,
        awaited: int = 1,
        window: int = WINDOW,
    ) -> dict[str, Any]:
        """Open `count` endless streams (`head` is their request), up to `window` at once,
        until each has had `awaited` events; then keep it open (a fleet) or reset it (churn).
        How long each took, from its request to its last awaited event."""
        start = time.monotonic()
        first = time.monotonic_ns()
        deadline = start + timeout
        waiting: set[_Stream] = set()
        took: list[int] = []
        done = failed = last = 0
        while done + failed < count and time.monotonic() < deadline:
            while len(waiting) < window and done + failed + len(waiting) < count:
                try:
                    waiting.add(self._connect(port, head, awaited))
                except OSError:
                    failed += 1
            now, read = self._poll(0.05)
            # Only the streams just read: a scan of all the waiting ones per wake-up would
            # delay the next wake-up's stamp (see `collect`).
            for stream in waiting.intersection(read):
                if stream.seen >= awaited:
                    waiting.discard(stream)
                    done, last = done + 1, now
                    took.append(now - stream.opened)
                    if keep:
                        self.streams.append(stream)
                    else:
                        self._drop(stream, reset=True)
                elif stream.end:
                    waiting.discard(stream)
                    failed += 1
        for stream in waiting:
            self._drop(stream, reset=True)
        return {
            "done": done,
            "failed": failed + len(waiting),
            "s": time.monotonic() - start,
            "first_ns": first,
            "last_ns": last,
            "took_ns": took,
        }

    def collect(self, timeout: float, ready: Callable[[], None]) -> dict[str, Any]:
        """Wait until every open stream has one event more than now; its arrival times."""
        self._poll(0)  # whatever came before the trigger (a ping) is not part of it
        live = [s for s in self.streams if not s.end]
        for stream in live:
            stream.awaited, stream.arrived = stream.seen + 1, 0
        pending = len(live)
        ready()
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            # Only the streams just read: a scan of thousands per wake-up would take the CPU
            # the server needs, and delay the next wake-up's stamp.
            now, read = self._poll(min(0.5, max(0.0, deadline - time.monotonic())))
            for stream in read:
                if not stream.arrived and stream.seen >= stream.awaited:
                    stream.arrived = now
                    pending -= 1
        return {
            "arrivals": [s.arrived for s in live if s.arrived],
            "missed": pending,
            "seen": Counter(s.seen for s in live),  # events per stream: how many had how many
        }

    def watch_end(self, timeout: float, ready: Callable[[], None]) -> dict[str, Any]:
        """Wait until every stream has ended (server shutdown); count how each ended."""
        ready()
        deadline = time.monotonic() + timeout
        ended = sum(1 for s in self.streams if s.end)
        last = 0
        while ended < len(self.streams) and time.monotonic() < deadline:
            now, read = self._poll(min(0.5, max(0.0, deadline - time.monotonic())))
            if just := sum(1 for s in read if s.end):  # an ended stream is not watched again
                ended, last = ended + just, now
        counts = {"clean": 0, "eof": 0, "reset": 0, "open": 0}
        for stream in self.streams:
            key = stream.end if stream.end in counts else "open"
            counts[key] += 1
        self.close(reset=True)
        return {**counts, "last_end_ns": last}

    def _drop(self, stream: _Stream, reset: bool) -> None:
        if stream.end:
            return
        stream.end = "dropped"
        self.selector.unregister(stream.sock)
        if reset:
            with contextlib.suppress(OSError):
                stream.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RST)
        stream.sock.close()

    def close(self, reset: bool) -> dict[str, Any]:
        """Close every stream: FIN (a client that leaves) or RST (one that vanishes)."""
        closed = 0
        for stream in self.streams:
            if not stream.end:
                self._drop(stream, reset)
                closed += 1
        self.streams = []
        return {"closed": closed}


def throughput(port: int, n: int, timeout: float, blocking: bool = False) -> dict[str, Any]:
    """Read one stream of `n` events to its end; events counted, bytes, seconds.

    `blocking`: read with no socket timeout, where Python calls recv() alone, instead of
    poll() before each recv() (bench/granian_pacing.py: granian's pace depends on it)."""
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    events = size = 0
    tail = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        if blocking:
            # The kernel's receive timeout, not Python's: a recv() that waits too long fails.
            sock.settimeout(None)
            limit = struct.pack("ll", int(timeout), 0)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, limit)
        start = time.perf_counter()
        deadline = time.monotonic() + timeout
        sock.sendall(request(f"/stream?n={n}"))
        while tail != END and time.monotonic() < deadline:
            got = sock.recv_into(view)
            if not got:
                break
            events += buf.count(MARK, 0, got)
            size += got
            tail = (tail + bytes(view[max(0, got - 7) : got]))[-7:]
        elapsed = time.perf_counter() - start
    return {"events": events, "bytes": size, "s": elapsed, "complete": tail == END}


def serve(conn: Connection, source: str) -> None:
    """The worker process: run the commands the harness sends until "stop"."""
    raise_fd_limit()
    worker = _Worker(source)

    def ready() -> None:
        conn.send(("ready",))

    while True:
        command, *args = conn.recv()
        if command == "stop":
            worker.close(reset=True)
            return
        if command == "connect":
            conn.send(("done", worker.connect(*args)))
        elif command == "collect":
            conn.send(("done", worker.collect(args[0], ready)))
        elif command == "watch_end":
            conn.send(("done", worker.watch_end(args[0], ready)))
        elif command == "close":
            conn.send(("done", worker.close(*args)))
        elif command == "throughput":
            conn.send(("done", throughput(*args)))
        else:
            raise ValueError(f"unknown command {command!r}")


class ClientsOutOfStep(RuntimeError):
    """A client process did not answer: its pipe may hold a late reply, so no command after
    this one can be trusted (not an OSError: a server that stops answering is one)."""


class Clients:
    """The harness's handle on its client processes; work is split evenly between them."""

    def __init__(self, processes: int = 2, spread: bool = False) -> None:
        """`spread`: each process connects from an address of its own, 127.0.1.1, 127.0.1.2...
        (the whole of 127.0.0.0/8 is loopback), as clients of many machines would."""
        # fork: started first thing, before any server or socket exists, so they inherit none.
        context = multiprocessing.get_context("fork")
        self._conns: list[Connection] = []
        self._procs = []
        for i in range(processes):
            source = f"127.0.1.{i + 1}" if spread else "127.0.0.1"
            parent, child = context.Pipe()
            proc = context.Process(target=serve, args=(child, source), daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)

    def _split(self, count: int) -> list[int]:
        k = len(self._conns)
        return [count // k + (1 if i < count % k else 0) for i in range(k)]

    def _all(self, commands: list[tuple[Any, ...]], timeout: float) -> list[dict[str, Any]]:
        for conn, command in zip(self._conns, commands, strict=True):
            conn.send(command)
        return [self._reply(conn, timeout) for conn in self._conns]

    @staticmethod
    def _reply(conn: Connection, timeout: float) -> Any:
        if not conn.poll(timeout):
            raise ClientsOutOfStep("client process did not answer in time")
        kind, *payload = conn.recv()
        return payload[0] if payload else kind

    @property
    def processes(self) -> int:
        return len(self._conns)

    def _connect(
        self, port: int | list[int], count: int, timeout: float, keep: bool, *extra: Any
    ) -> dict[str, Any]:
        # Several ports (one per server process): process i connects to the i-th, round robin.
        ports = port if isinstance(port, list) else [port]
        commands = [
            ("connect", ports[i % len(ports)], part, timeout, keep, *extra)
            for i, part in enumerate(self._split(count))
        ]
        replies = self._all(commands, timeout + 10)
        return {
            "done": sum(r["done"] for r in replies),
            "failed": sum(r["failed"] for r in replies),
            "s": max(r["s"] for r in replies),
            "first_ns": min(r["first_ns"] for r in replies),
            "last_ns": max(r["last_ns"] for r in replies),
            "took_ns": [t for r in replies for t in r["took_ns"]],
        }

    def open(self, port: int | list[int], count: int, timeout: float) -> dict[str, Any]:
        """Open `count` endless streams, split between the processes; each has had one event.
        Given several ports, the processes are dealt out to them in turn."""
        return self._connect(port, count, timeout, keep=True)

    def close(self, reset: bool = False) -> int:
        return sum(r["closed"] for r in self._all([("close", reset)] * len(self._conns), 30))

    def _triggered(
        self, command: tuple[Any, ...], trigger: Callable[[], object], timeout: float
    ) -> list[dict[str, Any]]:
        # Every process is watching its sockets before `trigger` runs: nothing arrives unseen.
        for conn in self._conns:
            conn.send(command)
        for conn in self._conns:
            if self._reply(conn, 30) != "ready":
                raise ClientsOutOfStep("client process out of step")
        try:
            trigger()
        finally:
            # Even when the trigger failed: a reply left in a pipe would answer the next command.
            replies = [self._reply(conn, timeout + 10) for conn in self._conns]
        return replies

    def collect(self, trigger: Callable[[], object], timeout: float) -> dict[str, Any]:
        """Run `trigger` (a broadcast) and gather when each open stream received it."""
        replies = self._triggered(("collect", timeout), trigger, timeout)
        return {
            "arrivals": [t for r in replies for t in r["arrivals"]],
            "missed": sum(r["missed"] for r in replies),
            "seen": sum((r["seen"] for r in replies), Counter[int]()),
        }

    def watch_end(self, trigger: Callable[[], None], timeout: float) -> dict[str, Any]:
        """Run `trigger` (SIGTERM) and count how the open streams end."""
        replies = self._triggered(("watch_end", timeout), trigger, timeout)
        counts = {key: sum(r[key] for r in replies) for key in ("clean", "eof", "reset", "open")}
        return {**counts, "last_end_ns": max(r["last_end_ns"] for r in replies)}

    def resume(
        self, port: int, count: int, last_event_id: str, events: int, timeout: float
    ) -> dict[str, Any]:
        """`count` streams at once, all resuming after `last_event_id`, kept open once each has
        had the `events` it missed; when each got them (`took_ns`, from its request)."""
        head = request("/stream", last_event_id)
        # No window: every stream of a process connects before it reads any (a storm).
        return self._connect(port, count, timeout, True, head, events, count)

    def churn(self, port: int, count: int, timeout: float) -> dict[str, Any]:
        """`count` connections that read one event and reset, split between the processes."""
        return self._connect(port, count, timeout, keep=False)

    def throughput(self, port: int, n: int, timeout: float) -> dict[str, Any]:
        """One stream of `n` events, read by the first process."""
        self._conns[0].send(("throughput", port, n, timeout))
        result: dict[str, Any] = self._reply(self._conns[0], timeout + 10)
        return result

    def stop(self) -> None:
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.send(("stop",))
        for proc in self._procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
