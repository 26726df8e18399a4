"""What a stream costs the response alone: no server, no sockets, no client processes.

    .venv/bin/python bench/inprocess.py [--streams N] [--rounds R] [--out PATH]

The bench apps' Starlette app (apps/queue_app.py), answering with this project's response
(`ours`), with `ours` at `ping=0` (`ours-noping`) and with `floor`'s, driven in one process
(uvloop) by a stand-in for a server: each connection is a task that runs the app with a
`receive` that returns `http.disconnect` once the harness says the client has gone, and a
`send` that notes the first event. For each:

- bytes (tracemalloc) and garbage-collector-tracked objects that each open stream holds, with
  `streams` open at once;
- CPU per connection (open, first event, client gone, stream ended), `streams` at a time, the
  median of `rounds` interleaved rounds: once as it runs, and once with the garbage collector
  off. The difference is what the collector's passes over each stream's objects cost; the
  rest is the code's own.

What the server adds (uvicorn's protocol, the socket calls) is left out, so the ratios to
`floor` are larger here than in the harness's churn: they are the response's own share.
Writes bench/results/inprocess.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.apps import floor, ours_noping, ours_upstream
from tests.asgi import http_scope

OUT = Path(__file__).resolve().parent / "results" / "inprocess.json"
APPS = {"ours": ours_upstream.app, "ours-noping": ours_noping.app, "floor": floor.app}
App = Callable[[dict[str, Any], Any, Any], Coroutine[Any, Any, None]]


class _Connection:
    """The server's side of one connection, as the app sees it."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()
        self.first_event = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message.get("body"):
            self.first_event.set()


async def _open(app: App, n: int) -> tuple[list[_Connection], list[asyncio.Task[None]]]:
    """`n` streams, each past its first event."""
    connections = [_Connection() for _ in range(n)]
    loop = asyncio.get_running_loop()
    scope = http_scope(path="/stream")
    tasks = [loop.create_task(app(dict(scope), c.receive, c.send)) for c in connections]
    for connection in connections:
        await connection.first_event.wait()
    return connections, tasks


async def _close(connections: list[_Connection], tasks: list[asyncio.Task[None]]) -> None:
    for connection in connections:
        connection.gone.set()
    await asyncio.gather(*tasks)


async def _held(app: App, n: int) -> dict[str, float]:
    """Bytes and tracked objects per open stream."""
    gc.collect()
    before = {id(o) for o in gc.get_objects()}
    tracemalloc.start()
    start = tracemalloc.take_snapshot()
    connections, tasks = await _open(app, n)
    gc.collect()
    grown = tracemalloc.take_snapshot().compare_to(start, "filename")
    tracemalloc.stop()
    objects = sum(id(o) not in before for o in gc.get_objects())
    await _close(connections, tasks)
    return {
        "bytes_per_stream": sum(s.size_diff for s in grown) / n,
        "objects_per_stream": objects / n,
    }


async def _cpu_round(app: App, n: int) -> float:
    # No gc.collect() first: the collector's passes fall where the objects' count takes them,
    # across rounds and contenders, rather than one more or one fewer in each round.
    began = time.process_time()
    await _close(*await _open(app, n))
    return (time.process_time() - began) / n * 1e6


async def _measure(streams: int, rounds: int) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {name: {} for name in APPS}
    for app in APPS.values():  # warm-up: imports, caches, the allocator's arenas
        await _close(*await _open(app, streams))
    for name, app in APPS.items():
        results[name].update(await _held(app, streams))
    for collector in ("gc_on", "gc_off"):
        samples: dict[str, list[float]] = {name: [] for name in APPS}
        (gc.enable if collector == "gc_on" else gc.disable)()
        for rep in range(rounds):
            names = list(APPS)[rep % len(APPS) :] + list(APPS)[: rep % len(APPS)]
            for name in names:
                samples[name].append(await _cpu_round(APPS[name], streams))
        gc.enable()
        for name, values in samples.items():
            results[name][f"cpu_us_per_conn_{collector}"] = {
                "median": statistics.median(values), "samples": values,
            }  # fmt: skip
    return results


def _report(results: dict[str, dict[str, Any]]) -> None:
    floor_ = results["floor"]
    print(f"{'':12s} {'B/stream':>9s} {'objects':>8s} {'µs/conn':>8s} {'gc off':>7s}   vs floor")
    for name, r in results.items():
        on, off = r["cpu_us_per_conn_gc_on"]["median"], r["cpu_us_per_conn_gc_off"]["median"]
        ratios = (
            r["bytes_per_stream"] / floor_["bytes_per_stream"],
            on / floor_["cpu_us_per_conn_gc_on"]["median"],
            off / floor_["cpu_us_per_conn_gc_off"]["median"],
        )
        print(
            f"{name:12s} {r['bytes_per_stream']:9,.0f} {r['objects_per_stream']:8.1f} "
            f"{on:8.1f} {off:7.1f}   " + " ".join(f"{x:.2f}x" for x in ratios)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=3_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    results = uvloop.run(_measure(args.streams, args.rounds))
    _report(results)
    meta = {
        "command": " ".join(["python bench/inprocess.py", *sys.argv[1:]]),
        "streams": args.streams, "rounds": args.rounds, "python": platform.python_version(),
    }  # fmt: skip
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
