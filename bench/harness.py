"""The harness's command line: run the scenarios, write the JSON, print the table, draw the chart.

.venv/bin/python bench/run.py [--quick | --smoke] [--scenario NAME ...] [--impl NAME ...]
                              [--out bench/results/latest.json] [--chart PATH | --no-chart]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import report, scale, scenarios
from bench.client import WINDOW, Clients, raise_fd_limit
from bench.profiles import PROFILES, SCENARIOS
from bench.scenarios import Context, Measurement
from bench.server import IMPLEMENTATIONS, ROOT, SERVERS

FULL_RUN = ROOT / "bench/results/full.json"  # the run the README quotes
CLIENT_PROCESSES = 2  # the machine has 2 cores: more clients would only steal the server's


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="the < 3 minute profile")
    size.add_argument("--smoke", action="store_true", help="a tiny run that checks the harness")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, help="repeatable")
    parser.add_argument("--impl", action="append", choices=list(IMPLEMENTATIONS))
    parser.add_argument("--server", choices=list(SERVERS), default="uvicorn")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/latest.json")
    chart = parser.add_mutually_exclusive_group()
    chart.add_argument("--chart", type=Path, help="PNG (default: docs/bench.png for full)")
    chart.add_argument("--no-chart", action="store_true")
    return parser.parse_args(argv)


def _chart_path(args: argparse.Namespace) -> Path | None:
    if args.no_chart:
        return None
    if args.chart is not None:
        return Path(args.chart)
    # Only the run the README quotes replaces the charts it shows; any other beside its JSON.
    if args.out.resolve() == FULL_RUN:
        return ROOT / "docs/bench.png"
    return Path(args.out).with_suffix(".png")


def _commit() -> str:
    """The project's commit, "+dirty" when the tree has changes: which code was measured."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def _loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def _cpu_times() -> tuple[float, float]:
    """Machine-wide busy and stolen CPU seconds so far (all cores)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def _own_cpu_s() -> float:
    """CPU seconds of the harness and its children (servers and clients, once reaped)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def _run(
    ctx: Context,
    wanted: list[str],
    brokers: list[str],
    stormers: list[str],
    scalers: tuple[list[str], list[str]],
) -> tuple[list[Measurement], dict[str, float]]:
    measured: list[Measurement] = []
    took: dict[str, float] = {}
    steps: list[tuple[str, Any]] = []
    if "throughput" in wanted:
        steps.append(("throughput", lambda: [scenarios.throughput(ctx)]))
    if "idle" in wanted or "broadcast" in wanted:
        for size in ctx.profile.fleets:
            steps.append(
                (
                    f"fleet_{size}",
                    lambda size=size: scenarios.fleet(
                        ctx, size, "idle" in wanted, "broadcast" in wanted
                    ),
                )
            )
    if "churn" in wanted:
        steps.append(("churn", lambda: [scenarios.churn(ctx)]))
    if "sigterm" in wanted:
        steps.append(("sigterm", lambda: [scenarios.sigterm(ctx)]))
    if "broker" in wanted:
        steps.append(("broker", lambda: scenarios.broker(ctx, brokers)))
    if "storm" in wanted:
        steps.append(("storm", lambda: scenarios.storm(ctx, stormers)))
    if "scale" in wanted and ctx.scale_clients is not None:
        scaled = replace(ctx, clients=ctx.scale_clients)
        at_limit, over_workers = scalers
        steps.append(
            (
                "scale",
                lambda: [
                    *([scale.at_limit(scaled, at_limit)] if at_limit else []),
                    *scale.over_workers(scaled, over_workers),
                ],
            )
        )
    for name, step in steps:
        start = time.monotonic()
        measured += step()
        took[name] = round(time.monotonic() - start, 1)
    order = {name: i for i, name in enumerate(SCENARIOS)}
    # The scale scenario: one process at its limit first, then over workers, size by size.
    measured.sort(
        key=lambda m: (
            order[m.name.split("_")[0]],
            m.params.get("workers", 0),
            m.params.get("streams", 0),
        )
    )
    return measured, took


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    profile = PROFILES["smoke" if args.smoke else "quick" if args.quick else "full"]
    wanted = args.scenario or list(profile.scenarios)
    # The broker and storm scenarios have contenders of their own (broker: and raw); --impl
    # picks among them too.
    brokers = [n for n in scenarios.BROKERS if not args.impl or n in args.impl]
    stormers = [n for n in scenarios.STORMERS if not args.impl or n in args.impl]
    # The scale scenario's: those of the profile (or --impl), the Broker's, and the floor (what
    # Starlette and the app's queue pattern cost before any response runs).
    scalable = args.impl or [*profile.implementations, "broker", "broker-redis", "floor"]
    scalers = (
        [n for n in scale.AT_LIMIT if n in scalable],
        [n for n in scale.OVER_WORKERS if n in scalable],
    )
    own = {*scenarios.BROKERS[:-1], *scenarios.STORMERS}  # contenders of those two only
    names = [n for n in args.impl or profile.implementations if n not in own]
    for scenario, contenders in (("broker", brokers), ("storm", stormers)):
        if contenders in ([], ["raw"]):
            if args.scenario and scenario in args.scenario:
                sys.exit(
                    f"--scenario {scenario} needs --impl broker or broker-redis (or no --impl)"
                )
            wanted = [w for w in wanted if w != scenario]
    if not names:
        wanted = [w for w in wanted if w in report.SEPARATE]
    impls = [IMPLEMENTATIONS[n] for n in names]
    for impl in impls:
        if not impl.python.exists():
            sys.exit(f"{impl.name}: {impl.python} is missing (make test sets up both venvs)")
    biggest = max([*profile.fleets, profile.sigterm_streams, profile.storm_clients, 2 * WINDOW])
    if "scale" in wanted:  # each worker's and each client process's share of the largest size
        top = max(profile.scale_sizes)
        biggest = max(biggest, top // profile.scale_workers, top // profile.scale_clients)
    if raise_fd_limit() < biggest + 1000:
        sys.exit(f"the open-file limit is below {biggest + 1000}: raise it (ulimit -Hn)")

    started = datetime.now(timezone.utc)
    commit = _commit()  # at the start: the code measured, whatever changes during the run
    load_start, clock = _loadavg(), time.monotonic()
    (busy_start, steal_start), own_start = _cpu_times(), _own_cpu_s()
    clients = Clients(CLIENT_PROCESSES)  # forked first: before any server or socket exists
    # The scale scenario's clients: more processes (each holds < its open-file limit), each
    # connecting from an address of its own.
    scale_clients = Clients(profile.scale_clients, spread=True) if "scale" in wanted else None
    try:
        with tempfile.TemporaryDirectory(prefix="bench-logs-") as logs:
            ctx = Context(
                profile,
                impls,
                clients,
                Path(logs),
                scale_clients=scale_clients,
                server_kind=args.server,
            )
            measured, took = _run(ctx, wanted, brokers, stormers, scalers)
    finally:
        clients.stop()
        if scale_clients is not None:
            scale_clients.stop()

    busy_end, steal_end = _cpu_times()
    busy, steal = busy_end - busy_start, steal_end - steal_start
    others = max(0.0, busy - (_own_cpu_s() - own_start))
    results = {m.name: report.results(m) for m in measured}
    command = "python bench/run.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    doc: dict[str, Any] = {
        "meta": {
            "profile": profile.name,
            "command": command.strip(),
            "started": started.isoformat(timespec="seconds"),
            "commit": commit,
            "duration_s": round(time.monotonic() - clock, 1),
            "scenario_durations_s": took,
            "implementations": names,
            "broker_implementations": brokers if "broker" in wanted else [],
            "storm_implementations": stormers if "storm" in wanted else [],
            "scale_implementations": scalers if "scale" in wanted else [[], []],
            "served_by": ctx.served_by,
            "server": " ".join((args.server, *SERVERS[args.server])),
            "client_processes": CLIENT_PROCESSES,
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "kernel": platform.release(),
            },
            "noise": {
                "loadavg_start": load_start,
                "loadavg_end": _loadavg(),
                # Other processes' CPU and the hypervisor's steal: noise the rounds cannot see.
                "others_cpu_s": round(others, 1),
                "steal_s": round(steal, 2),
                "note": "per figure: min, max and spread = (max - min) / median over rounds",
            },
        },
        "scenarios": results,
        "targets": report.targets(results, profile.fleets, max(profile.scale_sizes)),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")

    if any(not name.startswith(report.SEPARATE) for name in results):
        print(report.table(results, names))
        print()
    if "broker" in wanted:
        print(report.broker_table(results, brokers))
        print()
    if "storm" in wanted:
        print(report.storm_table(results, stormers))
        print()
    if "scale" in wanted:
        print(report.scale_table(results, *scalers))
        print()
    print(report.target_lines(doc["targets"]))
    print(f"\n{profile.name} profile: {doc['meta']['duration_s']} s; results in {args.out}")
    chart = _chart_path(args)
    if chart is not None:
        from bench.chart import draw, draw_scale, is_scale_size

        # A run of only the scenarios with charts of their own leaves the main chart alone.
        if any(not name.startswith(report.SEPARATE) for name in results):
            draw(doc, chart)
            print(f"chart: {chart}")
        if any(is_scale_size(name) for name in results):
            # docs/bench.png -> docs/scale.png; any other name.png -> name-scale.png
            name = "scale" if chart.stem == "bench" else f"{chart.stem}-scale"
            growth = chart.with_name(name + chart.suffix)
            draw_scale(doc, growth)
            print(f"growth chart: {growth}")
    return 0
