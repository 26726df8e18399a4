"""The scale scenario (issue 16 §3): as many streams as one process may hold, then 100,000 on
the machine, over worker processes that share a broadcast through Redis.

The open-file limit is per process (20,000 here, and only root may raise the hard limit), so
one server process holds at most the limit less the files it needs itself, and 100,000 streams
take several processes on each side. The clients are their own processes, each connecting from
an address of its own in 127.0.1.0/24.

Why one port per worker rather than `uvicorn --workers N` on one socket: workers that share a
listening socket take connections as fast as each accepts them, unevenly, and a worker given
more than its open-file limit refuses the rest. A load balancer (or SO_REUSEPORT) spreads them
evenly; the harness does the same by dealing the client processes out to the workers' ports.
"""

from __future__ import annotations

import contextlib
import functools
import resource
import time
from collections.abc import Callable, Iterator
from typing import Any

from bench.redis_server import redis_server
from bench.scenarios import Context, Measurement, Value, broadcasts, terminate, warm_up
from bench.server import IMPLEMENTATIONS, Implementation, Server, cpu_s

# One process at its limit: the queue-per-client apps, the Broker, the floor of the queue apps
# (their app and Starlette with the least response: no shutdown handling, so it hangs on
# SIGTERM) and raw (the ceiling, and the floor of a clean shutdown).
AT_LIMIT = ("ours", "upstream", "fastapi-sse", "broker", "floor", "raw")
# Over workers: the Broker on Redis, and the queue apps with a Redis pub/sub relay (relay.py).
OVER_WORKERS = ("broker-redis", "ours", "upstream", "fastapi-sse")
OWN_FILES = 100  # what a server process holds besides its streams (sockets, pipes, epoll, logs)


class Workers:
    """Several server processes of one implementation, each on its own port, read as one."""

    def __init__(self, servers: list[Server]) -> None:
        self.servers = servers
        self.ports = [s.port for s in servers]

    def cpu_s(self) -> float:
        return sum(s.cpu_s() for s in self.servers)

    def rss_kib(self) -> int:
        return sum(s.rss_kib() for s in self.servers)

    def broadcast(self) -> int:
        """One event to every stream of every worker: any worker publishes it to all."""
        return self.servers[0].broadcast()

    def stats(self) -> dict[str, int]:
        every = [s.stats() for s in self.servers]
        return {key: sum(int(st[key]) for st in every) for key in ("tasks", "streams")}

    def wait_streams(self, count: int, timeout: float) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        while (stats := self.stats())["streams"] < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return stats


def _open(
    ctx: Context, target: Server | Workers, size: int
) -> tuple[dict[str, Any], dict[str, Value]]:
    """Open `size` streams and hold them: the app's stats, and what they cost (per stream held;
    a contender that cannot hold them all is measured on those it held)."""
    base_rss, cpu = target.rss_kib(), target.cpu_s()
    ports = target.ports if isinstance(target, Workers) else target.port
    opened = ctx.clients.open(ports, size, 60 + size * 0.003)
    held = opened["done"]
    stats = target.wait_streams(held, 30)
    cpu = target.cpu_s() - cpu
    return stats, {
        "held": float(held),
        "failed": float(opened["failed"]),
        "open_s": opened["s"],
        "cpu_us_per_connect": cpu / held * 1e6 if held else None,
        "kib_per_stream": (target.rss_kib() - base_rss) / held if held else None,
    }


def at_limit(ctx: Context, names: list[str]) -> Measurement:
    """One server process holding as many streams as its open-file limit allows: memory and
    tasks per stream, broadcasts to all, the clients leaving, then SIGTERM with all open."""
    limit = ctx.profile.scale_limit or _fd_limit() - OWN_FILES
    m = Measurement(
        "scale_limit",
        {
            "streams": limit,
            "fd_limit": _fd_limit(),
            "broadcasts": ctx.profile.scale_broadcasts,
            "client_processes": ctx.clients.processes,
        },
        ("kib_per_stream", "tasks_per_stream", "all_ms", "p50_ms", "cpu_us_per_delivery"),
    )
    impls = [IMPLEMENTATIONS[name] for name in names]
    for _, order in ctx.rounds(1, impls):
        for impl in order:
            with ctx.server(impl) as server:
                figures = _given_up(
                    ctx, m, impl, functools.partial(_limit_round, ctx, server, limit)
                )
                m.add(impl.name, **figures)
                m.add_errors(server)
            ctx.say(
                f"[scale limit] {impl.name:12s} held {figures.get('held') or 0:,.0f}, "
                f"all received in {figures.get('all_ms') or 0:,.0f} ms, "
                f"exit {figures.get('exit_s')} s"
            )
    return m


def _limit_round(ctx: Context, server: Server, size: int) -> dict[str, Value]:
    base = warm_up(ctx, server, 50)
    stats, figures = _open(ctx, server, size)
    held = int(figures["held"] or 0)
    figures["tasks_per_stream"] = (stats["tasks"] - base["tasks"]) / held if held else None
    figures.update(broadcasts(ctx, server, held, ctx.profile.scale_broadcasts))
    ctx.clients.close()  # FIN: clients that leave
    after, settle_s = server.settle(base, 60)
    figures.update(
        tasks_left=after["tasks"] - base["tasks"],
        streams_left=after["streams"] - base["streams"],
        settle_s=settle_s,
    )
    # SIGTERM with every stream open again: all end cleanly, and soon.
    again = ctx.clients.open(server.port, size, 60 + size * 0.003)["done"]
    server.wait_streams(again, 30)
    figures.update(ended := terminate(ctx, server))
    figures["unclean"] = size - (ended["clean"] or 0)  # cut, left open or never reopened
    return figures


def over_workers(ctx: Context, names: list[str]) -> list[Measurement]:
    """`size` streams over worker processes, a broadcast through Redis reaching them all, for
    each size of the profile: how cost grows with the number of streams."""
    workers = ctx.profile.scale_workers
    with redis_server() as redis:
        if redis is None:
            ctx.say("[scale] no redis-server binary: the workers part is left out")
            return []
        out = []
        for size in ctx.profile.scale_sizes:
            m = Measurement(
                f"scale_{size}",
                {
                    "streams": size,
                    "workers": workers,
                    "broadcasts": ctx.profile.scale_broadcasts,
                    "client_processes": ctx.clients.processes,
                    "redis": "in-memory redis-server, no persistence",
                },
                ("kib_per_stream", "all_ms", "p50_ms", "cpu_us_per_delivery"),
            )
            for _, order in ctx.rounds(1, [IMPLEMENTATIONS[n] for n in names]):
                for impl in order:
                    with _workers(ctx, impl, workers, redis.url) as group:
                        measure = functools.partial(_workers_round, ctx, group, size, redis.process)
                        figures = _given_up(ctx, m, impl, measure)
                        m.add(impl.name, **figures)
                        for server in group.servers:
                            m.add_errors(server)
                    ctx.say(
                        f"[scale {size:,}] {impl.name:12s} held {figures.get('held') or 0:,.0f}, "
                        f"all received in {figures.get('all_ms') or 0:,.0f} ms"
                    )
            out.append(m)
        return out


@contextlib.contextmanager
def _workers(ctx: Context, impl: Implementation, count: int, redis_url: str) -> Iterator[Workers]:
    # One broker log (shared prefix) or one pub/sub channel for all the workers of a round; a
    # prefix per round, so that a round starts with an empty log.
    env = {
        "BENCH_BROKER_URL": redis_url,
        "BENCH_BROKER_PREFIX": f"scale-{time.monotonic_ns()}:",
        "BENCH_FANOUT_URL": redis_url,
    }
    with contextlib.ExitStack() as stack:
        yield Workers([stack.enter_context(ctx.server(impl, env)) for _ in range(count)])


def _workers_round(ctx: Context, group: Workers, size: int, redis: Any) -> dict[str, Value]:
    base = group.stats()
    stats, figures = _open(ctx, group, size)
    held = int(figures["held"] or 0)
    figures["tasks_per_stream"] = (stats["tasks"] - base["tasks"]) / held if held else None
    redis_cpu = cpu_s(redis.pid) if redis else 0.0
    figures.update(broadcasts(ctx, group, held, ctx.profile.scale_broadcasts))
    figures["redis_cpu_s"] = cpu_s(redis.pid) - redis_cpu if redis else None
    ctx.clients.close(reset=True)  # RST: no TIME_WAIT left to hold the next size's ports
    return figures


def _given_up(
    ctx: Context, m: Measurement, impl: Implementation, measure: Callable[[], dict[str, Value]]
) -> dict[str, Value]:
    """`measure()`, or, should a server stop answering the harness (a contender that cannot
    cope), no figures and the reason among the errors: how far each got is the result."""
    try:
        return measure()
    except OSError as exc:  # the control requests: refused, reset, timed out
        m.errors.setdefault(impl.name, []).append(f"the harness gave up: {exc!r}")
        ctx.clients.close(reset=True)
        # Not one stream counts as held: every target on this size is missed, not n/a.
        return {"held": None, "failed": float(m.params["streams"]), "hung": 1.0}


def _fd_limit() -> int:
    """The hard limit on open files (the harness has raised its soft limit to it)."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]
