"""The receiving side's parser: MB/s of `text/event-stream`, small and large reads.

    .venv/bin/python bench/parser.py [--quick] [--out PATH]

Compares, on the same bytes in the same process, `sse_starlette.parser.EventStreamParser`
with httpx-sse's decoder as its `EventSource.iter_sse()` drives it (an incremental UTF-8
decoder, its `SSELineDecoder`, its `SSEDecoder`). Each payload is fed in reads of a fixed size,
as a socket would hand them over; the figure is the median of `rounds` runs. Writes
`bench/results/parser.json` (the README quotes it; tests/test_readme.py checks the quote).
"""

from __future__ import annotations

import argparse
import codecs
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from httpx_sse._decoders import SSEDecoder, SSELineDecoder

from sse_starlette.parser import EventStreamParser

OUT = Path(__file__).resolve().parent / "results" / "parser.json"

# name -> (payload, read sizes): small events, and one large event, each in small and
# large reads. 256-byte reads of a long line are where a rescanning parser goes quadratic.
PAYLOADS: dict[str, bytes] = {
    "small events": b"".join(
        f'id: {i}\nevent: tick\ndata: {{"n": {i}, "text": "hello world"}}\n\n'.encode()
        for i in range(40_000)
    ),
    "one 1 MB event": b"data: " + b"x" * 1_000_000 + b"\n\n",
}
READ_SIZES = (256, 65_536)

Feed = Callable[[bytes], int]  # parses one read, returns the events it completed


def ours() -> Feed:
    parser = EventStreamParser(max_event_size=None)
    return lambda chunk: len(parser.feed(chunk))


def httpx_sse() -> Feed:
    text = codecs.getincrementaldecoder("utf-8")(errors="replace")
    lines, events = SSELineDecoder(), SSEDecoder()

    def feed(chunk: bytes) -> int:
        n = 0
        for line in lines.decode(text.decode(chunk)):
            n += events.decode(line) is not None
        return n

    return feed


PARSERS: dict[str, Callable[[], Feed]] = {"ours": ours, "httpx-sse": httpx_sse}


def run_once(make: Callable[[], Feed], payload: bytes, read_size: int) -> tuple[float, int]:
    reads = [payload[i : i + read_size] for i in range(0, len(payload), read_size)]
    feed = make()
    start = time.perf_counter()
    events = sum(feed(chunk) for chunk in reads)
    return time.perf_counter() - start, events


def measure(rounds: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for payload_name, payload in PAYLOADS.items():
        for read_size in READ_SIZES:
            case = f"{payload_name}, {read_size:,}-byte reads"
            results[case] = {}
            for name, make in PARSERS.items():
                times, counts = zip(
                    *(run_once(make, payload, read_size) for _ in range(rounds)), strict=True
                )
                assert len(set(counts)) == 1, f"{name}: event counts differ between rounds"
                mb_s = len(payload) / statistics.median(times) / 1e6
                results[case][name] = {"MB/s": round(mb_s, 1), "events": counts[0]}
                print(f"{case:40} {name:10} {mb_s:8.1f} MB/s", file=sys.stderr)
            ours_mb = results[case]["ours"]["MB/s"]
            results[case]["ratio ours/httpx-sse"] = round(
                ours_mb / results[case]["httpx-sse"]["MB/s"], 2
            )
    return results


def main(argv: list[str] | None = None) -> int:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--quick", action="store_true", help="1 round instead of 5")
    options.add_argument("--out", type=Path, default=OUT)
    args = options.parse_args(argv)
    rounds = 1 if args.quick else 5
    results = {
        "command": "bench/parser.py" + (" --quick" if args.quick else ""),
        "date": time.strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "rounds": rounds,
        "cases": measure(rounds),
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["cases"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
