"""The scenarios of the harness; each returns what it measured, one value per round.

Rounds interleave the implementations (and rotate their order), so that the noise of a shared
machine falls on all of them alike: ratios are taken within a round, then their median.
Server CPU and memory come from /proc, tasks and streams from the app's `/_stats`.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from redis import Redis

from bench.client import Clients
from bench.profiles import Profile
from bench.redis_server import redis_server
from bench.server import IMPLEMENTATIONS, Implementation, Server, cpu_s, rss_kib
from tests.redis_server import RedisServer

Value = float | None  # None: the round gave no figure (the server hung, the stream broke)


@dataclass
class Measurement:
    """One scenario's figures: per implementation, per figure, one value per round."""

    name: str
    params: dict[str, Any]
    ratio_figures: tuple[str, ...]  # figures where a ratio between implementations means something
    samples: dict[str, dict[str, list[Value]]] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)

    def add(self, impl: str, **figures: Value) -> None:
        for figure, value in figures.items():
            self.samples.setdefault(impl, {}).setdefault(figure, []).append(value)

    def add_errors(self, server: Server) -> None:
        lines = self.errors.setdefault(server.impl.name, [])
        lines += server.log_errors()


@dataclass
class Context:
    """What every scenario needs: the profile, the contenders and the client processes."""

    profile: Profile
    implementations: list[Implementation]
    clients: Clients
    log_dir: Path
    served_by: dict[str, str] = field(default_factory=dict)
    scale_clients: Clients | None = None  # the scale scenario's own (bench/scale.py)
    server_kind: str = "uvicorn"  # which ASGI server runs every contender (server.SERVERS)

    def rounds(
        self, reps: int, impls: list[Implementation] | None = None
    ) -> Iterator[tuple[int, list[Implementation]]]:
        # Rotate the order each round: nobody always runs first, right after a pause.
        impls = self.implementations if impls is None else impls
        for rep in range(reps):
            k = rep % len(impls)
            yield rep, impls[k:] + impls[:k]

    @contextlib.contextmanager
    def server(self, impl: Implementation, env: dict[str, str] | None = None) -> Iterator[Server]:
        server = Server(impl, self.log_dir, env, self.server_kind)
        self.served_by[impl.name] = server.served_by
        try:
            yield server
        finally:
            server.stop()

    @contextlib.contextmanager
    def servers(self) -> Iterator[dict[str, Server]]:
        with contextlib.ExitStack() as stack:
            yield {i.name: stack.enter_context(self.server(i)) for i in self.implementations}

    def say(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)


def _percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def throughput(ctx: Context) -> Measurement:
    """One stream of many small events: events/s at the client, server CPU per event."""
    n = ctx.profile.events
    timeout = max(60.0, n / 5_000)
    m = Measurement("throughput", {"events": n}, ("events_per_s", "cpu_us_per_event"))
    with ctx.servers() as servers:
        for server in servers.values():  # warm-up: imports, caches, the allocator's arenas
            ctx.clients.throughput(server.port, max(1_000, n // 10), timeout)
        for rep, order in ctx.rounds(ctx.profile.reps):
            for impl in order:
                server = servers[impl.name]
                cpu = server.cpu_s()
                got = ctx.clients.throughput(server.port, n, timeout)
                cpu = server.cpu_s() - cpu
                whole = got["complete"] and got["events"] == n
                m.add(
                    impl.name,
                    events_per_s=n / got["s"] if whole else None,
                    cpu_us_per_event=cpu / n * 1e6 if whole else None,
                )
                ctx.say(f"[throughput {rep + 1}] {impl.name:9s} {n / got['s']:9,.0f} events/s")
        for server in servers.values():
            m.add_errors(server)
    return m


def fleet(ctx: Context, size: int, idle: bool, broadcast: bool) -> list[Measurement]:
    """`size` open streams on a fresh server: memory and tasks each, then broadcasts to all."""
    idle_m = Measurement(f"idle_{size}", {"streams": size}, ("kib_per_stream", "tasks_per_stream"))
    broadcast_m = Measurement(
        f"broadcast_{size}",
        {"streams": size, "broadcasts_per_round": ctx.profile.broadcasts},
        ("p50_ms", "p99_ms", "all_ms", "cpu_us_per_delivery"),
    )
    for rep, order in ctx.rounds(ctx.profile.reps):
        for impl in order:
            with ctx.server(impl) as server:
                opened, sent = _fleet_round(ctx, server, size, broadcast)
                idle_m.add(impl.name, **opened)
                broadcast_m.add(impl.name, **sent)
                idle_m.add_errors(server)
                broadcast_m.add_errors(server)
            ctx.say(
                f"[fleet {size} {rep + 1}] {impl.name:9s} {opened['kib_per_stream']:6.1f} "
                f"KiB/stream {opened['tasks_per_stream']:4.2f} tasks/stream"
            )
    return [m for m, wanted in ((idle_m, idle), (broadcast_m, broadcast)) if wanted]


def _fleet_round(
    ctx: Context, server: Server, size: int, broadcast: bool
) -> tuple[dict[str, float], dict[str, Value]]:
    """`size` streams on a fresh server (freed memory stays in the allocator and would hide
    the next round's growth): their figures, and those of the broadcasts to them (if asked)."""
    base = warm_up(ctx, server, min(50, size))
    base_rss = server.rss_kib()
    opened = ctx.clients.open(server.port, size, max(30.0, size * 0.01))
    if opened["done"] != size:
        raise RuntimeError(f"{server.impl.name}: opened {opened['done']} of {size} streams")
    stats = server.wait_streams(size, 10)
    figures = {
        "kib_per_stream": (server.rss_kib() - base_rss) / size,
        "tasks_per_stream": (stats["tasks"] - base["tasks"]) / size,
        "open_s": opened["s"],
    }
    sent = broadcasts(ctx, server, size) if broadcast else {}
    ctx.clients.close()
    server.wait_streams(0, 10)
    return figures, sent


def warm_up(ctx: Context, server: Server, streams: int) -> dict[str, Any]:
    """Open and close a few streams: the first pay for lazy imports and first pools, which a
    measurement would take for growth. The app's stats once it is quiet again."""
    ctx.clients.open(server.port, streams, 30)
    ctx.clients.close()
    server.wait_streams(0, 10)
    return server.quiet(5)


class Broadcaster(Protocol):
    """A server, or several (bench/scale.py), that broadcasts to all its streams."""

    def cpu_s(self) -> float: ...
    def broadcast(self) -> int: ...


def broadcasts(
    ctx: Context, server: Broadcaster, size: int, count: int | None = None
) -> dict[str, Value]:
    """`count` (the profile's number by default) broadcasts to the open fleet: latencies
    (median of them) and CPU per delivery."""
    p50s, p99s, alls = [], [], []
    cpu_total = 0.0
    deliveries = missed = 0
    for _ in range(count or ctx.profile.broadcasts):
        sent_ns = cpu_before = 0.0

        def trigger() -> None:
            nonlocal sent_ns, cpu_before
            cpu_before = server.cpu_s()
            sent_ns = time.monotonic_ns()
            server.broadcast()

        got = ctx.clients.collect(trigger, 10 + size * 0.002)
        cpu_total += server.cpu_s() - cpu_before
        latencies = sorted((t - sent_ns) / 1e6 for t in got["arrivals"])
        deliveries += len(latencies)
        missed += got["missed"]
        if latencies:
            p50s.append(_percentile(latencies, 0.50))
            p99s.append(_percentile(latencies, 0.99))
            alls.append(latencies[-1])
        time.sleep(0.05)  # let the server settle back to idle between broadcasts
    return {
        "p50_ms": statistics.median(p50s) if p50s else None,
        "p99_ms": statistics.median(p99s) if p99s else None,
        "all_ms": statistics.median(alls) if alls else None,
        "cpu_us_per_delivery": cpu_total / deliveries * 1e6 if deliveries else None,
        "missed": float(missed),
    }


def churn(ctx: Context) -> Measurement:
    """Connections that read one event and reset: CPU each, and what they leave behind."""
    n = ctx.profile.churn
    timeout = max(60.0, n * 0.01)
    m = Measurement("churn", {"connections": n}, ("cpu_us_per_conn", "conns_per_s"))
    with ctx.servers() as servers:
        for server in servers.values():  # warm-up, at the same concurrency as the rounds
            ctx.clients.churn(server.port, min(n, 1_000), timeout)
        for rep, order in ctx.rounds(ctx.profile.reps):
            for impl in order:
                server = servers[impl.name]
                base = server.quiet(5)  # the last round's (or warm-up's) tasks are gone
                base_rss, cpu = server.rss_kib(), server.cpu_s()
                got = ctx.clients.churn(server.port, n, timeout)
                after, settle_s = server.settle(base, 5)
                cpu = server.cpu_s() - cpu  # after settling: the clean-up is part of the cost
                done = got["done"]
                m.add(
                    impl.name,
                    cpu_us_per_conn=cpu / done * 1e6 if done else None,
                    conns_per_s=done / got["s"] if done else None,
                    tasks_left=after["tasks"] - base["tasks"],
                    streams_left=after["streams"] - base["streams"],
                    rss_growth_kib=(grown := server.rss_kib() - base_rss),
                    rss_growth_kib_per_conn=grown / done if done else None,
                    settle_s=settle_s,
                    failed=got["failed"],
                )
                ctx.say(
                    f"[churn {rep + 1}] {impl.name:9s} {cpu / max(done, 1) * 1e6:7.0f} µs/conn "
                    f"tasks left {after['tasks'] - base['tasks']}"
                )
        for server in servers.values():
            m.add_errors(server)
    return m


def sigterm(ctx: Context) -> Measurement:
    """SIGTERM with open streams: time to exit, how the streams ended, errors logged."""
    size, hung_s = ctx.profile.sigterm_streams, ctx.profile.hung_s
    m = Measurement("sigterm", {"streams": size, "hung_after_s": hung_s}, ())
    for rep, order in ctx.rounds(ctx.profile.sigterm_reps):
        for impl in order:
            with ctx.server(impl) as server:
                opened = ctx.clients.open(server.port, size, max(30.0, size * 0.01))
                server.wait_streams(opened["done"], 10)
                ended = terminate(ctx, server)
                m.add(impl.name, **ended, errors_logged=len(server.log_errors()))
                m.add_errors(server)
                exit_s = ended["exit_s"]
                ctx.say(
                    f"[sigterm {rep + 1}] {impl.name:9s} "
                    + (f"exit {exit_s:.2f} s" if exit_s is not None else "hung")
                    + f", {ended['clean']:.0f}/{size} ended cleanly"
                )
    return m


def terminate(ctx: Context, server: Server) -> dict[str, Value]:
    """SIGTERM to a server with its streams open: the seconds until it exited (None: it hung
    past the profile's limit and was killed) and how each stream ended."""
    hung_s = ctx.profile.hung_s
    sent = 0

    def trigger() -> None:
        nonlocal sent
        sent = server.terminate()

    # The clients stop watching when a server that is still up counts as hung.
    ends = ctx.clients.watch_end(trigger, hung_s + 0.5)
    exited = server.wait_exit(sent + int(hung_s * 1e9))
    last = ends["last_end_ns"]
    return {
        "exit_s": (server.exited_ns - sent) / 1e9 if exited else None,
        "hung": 0.0 if exited else 1.0,
        "streams_end_s": (last - sent) / 1e9 if last and exited else None,
        "clean": float(ends["clean"]),
        "cut": float(ends["eof"] + ends["reset"]),
        "left_open": float(ends["open"]),
    }


BROKERS = ("broker", "broker-redis", "raw")


@contextlib.contextmanager
def _with_redis(
    ctx: Context, names: list[str], scenario: str
) -> Iterator[tuple[list[Implementation], RedisServer | None]]:
    """The implementations `names`, and the redis-server for those that need one (they are
    left out when there is no redis-server binary)."""
    with contextlib.ExitStack() as stack:
        server = None
        if any(IMPLEMENTATIONS[name].needs_redis for name in names):
            server = stack.enter_context(redis_server())
            if server is None:
                ctx.say(f"[{scenario}] no redis-server binary: broker-redis is left out")
        impls = [
            IMPLEMENTATIONS[name]
            for name in names
            if server is not None or not IMPLEMENTATIONS[name].needs_redis
        ]
        yield impls, server


def _broker_env(impl: Implementation, redis_url: str | None, **more: str) -> dict[str, str]:
    """The environment of a broker app: the redis-server's URL if `impl` uses Redis."""
    env = {"BENCH_BROKER_URL": redis_url} if impl.needs_redis and redis_url else {}
    return {**env, **more}


def broker(ctx: Context, names: list[str]) -> list[Measurement]:
    """Broadcasts through this project's `Broker` (memory and Redis) to a fleet, beside raw."""
    with _with_redis(ctx, names, "broker") as (impls, redis):
        url = redis.url if redis else None
        return [_broker_fleet(ctx, impls, size, url) for size in ctx.profile.fleets]


def _broker_fleet(
    ctx: Context, impls: list[Implementation], size: int, redis_url: str | None
) -> Measurement:
    m = Measurement(
        f"broker_{size}",
        {
            "streams": size,
            "broadcasts_per_round": ctx.profile.broadcasts,
            "redis": "in-memory redis-server, no persistence" if redis_url else None,
        },
        ("p50_ms", "p99_ms", "all_ms", "cpu_us_per_delivery", "kib_per_stream"),
    )
    for rep, order in ctx.rounds(ctx.profile.reps, impls):
        for impl in order:
            with ctx.server(impl, _broker_env(impl, redis_url)) as server:
                opened, sent = _fleet_round(ctx, server, size, broadcast=True)
                m.add(impl.name, **opened, **sent)
                m.add_errors(server)
            ctx.say(
                f"[broker {size} {rep + 1}] {impl.name:12s} "
                f"{sent['cpu_us_per_delivery'] or 0:6.1f} µs/delivery"
            )
    return m


# raw keeps no history: nothing to resume; broker-1msg: the memory broker, one message per event
STORMERS = ("broker", "broker-redis", "broker-1msg")
STORM_EVENT_BYTES = 200  # data per event: about what an app's JSON message is
STORM_HISTORY = 10_000  # events the broker keeps: more than any profile's clients miss
SAMPLE_S = 0.02  # memory is sampled this often during a storm: its peak, not its end


@contextlib.contextmanager
def _peaks(read: Callable[[], dict[str, float]], interval: float) -> Iterator[dict[str, float]]:
    """The highest value of each of `read()`'s readings while the block runs: a thread reads
    them every `interval` seconds, and once more at the end."""
    peaks = read()
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval):
            for key, value in read().items():
                peaks[key] = max(peaks[key], value)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peaks
    finally:
        stop.set()
        sampler.join()
        for key, value in read().items():
            peaks[key] = max(peaks[key], value)


@contextlib.contextmanager
def _storm_readings(
    server: Server, redis: RedisServer | None
) -> Iterator[Callable[[], dict[str, float]]]:
    """What a storm samples: the server's VmRSS; Redis's `used_memory` (INFO) and VmRSS."""
    pid = server.process.pid
    if redis is None or redis.process is None:
        yield lambda: {"rss_kib": rss_kib(pid)}
        return
    redis_pid = redis.process.pid
    with Redis.from_url(redis.url) as client:

        def read() -> dict[str, float]:
            return {
                "rss_kib": rss_kib(pid),
                "redis_used_kib": client.info("memory")["used_memory"] / 1024,
                "redis_rss_kib": rss_kib(redis_pid),
            }

        yield read


def storm(ctx: Context, names: list[str]) -> list[Measurement]:
    """Clients that all resume at once from the same id, each that many events behind: how
    long until the last has caught up, and the memory and CPU that costs (memory and Redis)."""
    clients, behind = ctx.profile.storm_clients, ctx.profile.storm_behind
    with _with_redis(ctx, names, "storm") as (impls, redis):
        m = Measurement(
            "storm",
            {
                "clients": clients,
                "events_behind": behind,
                "event_bytes": STORM_EVENT_BYTES,
                "history": STORM_HISTORY,
                "buffer": "the Broker's default (256): the events of one page of history",
                "memory": f"VmRSS, Redis INFO used_memory: sampled every {SAMPLE_S * 1e3:.0f} ms",
                "redis": "in-memory redis-server, no persistence" if redis else None,
            },
            (),
        )
        for rep, order in ctx.rounds(ctx.profile.reps, impls):
            for impl in order:
                url = redis.url if redis else None
                env = _broker_env(impl, url, BENCH_BROKER_HISTORY=str(STORM_HISTORY))
                with ctx.server(impl, env) as server:
                    used = redis if impl.needs_redis else None
                    figures = _storm_round(ctx, server, used, clients, behind)
                    m.add(impl.name, **figures)
                    m.add_errors(server)
                caught_up = figures["all_caught_up_s"]
                ctx.say(
                    f"[storm {rep + 1}] {impl.name:12s} "
                    + (f"all caught up in {caught_up:.2f} s" if caught_up else "not all caught up")
                    + f", RSS +{figures['rss_peak_growth_mib']:.1f} MiB at most"
                )
    return [m]


def _storm_round(
    ctx: Context, server: Server, redis: RedisServer | None, clients: int, behind: int
) -> dict[str, Value]:
    """One storm on a fresh server: `clients` streams resume at once, `behind` events back."""
    warm_up(ctx, server, min(50, clients))
    last_event_id = server.publish(behind, STORM_EVENT_BYTES)
    base = server.stats()
    redis_pid = redis.process.pid if redis and redis.process else None
    timeout = max(30.0, clients * behind / 10_000)
    with _storm_readings(server, redis) as read:
        start = read()
        cpu, redis_cpu = server.cpu_s(), cpu_s(redis_pid) if redis_pid else 0.0
        with _peaks(read, SAMPLE_S) as peaks:
            got = ctx.clients.resume(server.port, clients, last_event_id, behind, timeout)
        end = read()  # the streams still open, all caught up: what the peak was above
    cpu = server.cpu_s() - cpu
    redis_cpu = cpu_s(redis_pid) - redis_cpu if redis_pid else 0.0
    # A fence: one live event after the history. A stream is one ordered byte stream, so a
    # stream that has it has had everything sent to it before: exactly `behind` + 1 events.
    fenced = ctx.clients.collect(server.broadcast, 10 + clients * 0.002)
    after = server.stats()
    ctx.clients.close()
    server.wait_streams(0, 10)
    took = sorted(t / 1e6 for t in got["took_ns"])
    whole = got["done"] == clients
    growth = {key: (peaks[key] - start[key]) / 1024 for key in peaks}
    return {
        "all_caught_up_s": (got["last_ns"] - got["first_ns"]) / 1e9 if whole else None,
        "p50_ms": _percentile(took, 0.50) if took else None,
        "p99_ms": _percentile(took, 0.99) if took else None,
        "cpu_s": cpu,
        "cpu_us_per_event": cpu / (got["done"] * behind) * 1e6 if got["done"] else None,
        "rss_peak_growth_mib": growth["rss_kib"],
        "rss_end_growth_mib": (end["rss_kib"] - start["rss_kib"]) / 1024,
        "redis_used_memory_peak_growth_mib": growth.get("redis_used_kib"),
        "redis_rss_peak_growth_mib": growth.get("redis_rss_kib"),
        "redis_cpu_s": redis_cpu if redis_pid else None,
        "failed": float(clients - got["done"]),
        "wrong_count": float(sum(n for seen, n in fenced["seen"].items() if seen != behind + 1)),
        "resumes": float(after["resumes"] - base["resumes"]),
        "resets": float(after["resets"] - base["resets"]),
    }
