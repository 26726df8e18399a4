"""Why 3.7.1's one stream outruns raw ASGI under granian: a question of pace, not of cost.

    .venv/bin/python bench/granian_pacing.py [--events N] [--rounds R] [--out PATH]

Under granian, the throughput scenario measures 3.7.1's stream at about twice the events/s of
this project's and of raw ASGI's, at about the same CPU per event (bench/results/granian.json).
This runs one granian server (the harness's flags) for each of `ours`, `upstream` (3.7.1),
`raw`, and raw with something done before each `send` (apps/raw_paced.py): `raw-in-scope`
(the send inside an `anyio.CancelScope()`, as 3.7.1 wraps its sends) and `raw-spin` (600
turns of an empty loop first). It reads one stream of `events` from each, in interleaved rounds,
with two clients that differ only in how they wait for data:

- `poll`: the harness's client (a socket timeout: Python polls before each recv());
- `blocking`: the same with no Python timeout (recv() alone, the kernel's timeout).

Events/s and the server's CPU µs per event, medians of `rounds`. Writes
bench/results/granian_pacing.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.client import throughput
from bench.server import IMPLEMENTATIONS, Server

OUT = Path(__file__).resolve().parent / "results" / "granian_pacing.json"
CONTENDERS = ("ours", "upstream", "raw", "raw-in-scope", "raw-spin")
CLIENTS = {"poll": False, "blocking": True}  # name -> throughput(blocking=...)
FIGURES = ("events_per_s", "cpu_us_per_event")


def _read(server: Server, events: int, blocking: bool) -> dict[str, float | None]:
    cpu = server.cpu_s()
    got = throughput(server.port, events, max(60.0, events / 5_000), blocking)
    cpu = server.cpu_s() - cpu
    if not (got["complete"] and got["events"] == events):
        return dict.fromkeys(FIGURES)
    return {"events_per_s": events / got["s"], "cpu_us_per_event": cpu / events * 1e6}


def _median(values: list[float | None]) -> float | None:
    whole = [v for v in values if v is not None]
    return statistics.median(whole) if len(whole) == len(values) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    samples: dict[str, Any] = {
        c: {n: {f: [] for f in FIGURES} for n in CONTENDERS} for c in CLIENTS
    }
    with tempfile.TemporaryDirectory() as logs:
        servers = [Server(IMPLEMENTATIONS[n], Path(logs), server="granian") for n in CONTENDERS]
        try:
            for server in servers:  # warm-up
                _read(server, args.events // 10, blocking=False)
            for rep in range(args.rounds):
                turn = servers[rep % len(servers) :] + servers[: rep % len(servers)]
                for client, blocking in CLIENTS.items():
                    for server in turn:
                        got = _read(server, args.events, blocking)
                        for figure, value in got.items():
                            samples[client][server.impl.name][figure].append(value)
                        rate = got["events_per_s"] or 0
                        print(f"[{rep + 1}] {client:8s} {server.impl.name:12s} {rate:10,.0f}")
        finally:
            for server in servers:
                server.stop()
    medians = {
        client: {name: {f: _median(v) for f, v in figures.items()} for name, figures in by.items()}
        for client, by in samples.items()
    }
    print(f"{'':22s}" + "".join(f"{name:>13s}" for name in CONTENDERS))
    for client, by in medians.items():
        for figure in FIGURES:
            cells = "".join(f"{by[name][figure] or 0:13,.1f}" for name in CONTENDERS)
            print(f"{client:8s} {figure:13s}" + cells)
    meta = {
        "command": " ".join(["python bench/granian_pacing.py", *sys.argv[1:]]),
        "events": args.events,
        "rounds": args.rounds,
        "served_by": {server.impl.name: server.served_by for server in servers},
    }
    result = {"meta": meta, "medians": medians, "samples": samples}
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
