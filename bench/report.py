"""From rounds to results: medians, the noise, paired ratios, targets, and the text table."""

from __future__ import annotations

import itertools
import operator
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from bench.scenarios import Measurement, Value


def summary(values: Sequence[Value]) -> dict[str, Any]:
    """Median, min, max and spread ((max - min) / median: the noise) of one figure's rounds."""
    present = [v for v in values if v is not None]
    if not present:
        return {"median": None, "min": None, "max": None, "spread": None, "samples": list(values)}
    median = statistics.median(present)
    spread = (max(present) - min(present)) / abs(median) if median else None
    return {
        "median": median,
        "min": min(present),
        "max": max(present),
        "spread": spread,
        "samples": list(values),
    }


def paired_ratio(a: Sequence[Value], b: Sequence[Value]) -> dict[str, Any]:
    """a / b round by round (both ran in the same round, so they shared its noise)."""
    ratios = [x / y for x, y in zip(a, b, strict=False) if x is not None and y]
    return summary(ratios)


def results(measurement: Measurement) -> dict[str, Any]:
    """The JSON of one scenario: figures per implementation, ratios to raw and to upstream."""
    samples = measurement.samples
    out: dict[str, Any] = {
        "params": measurement.params,
        "figures": {
            impl: {figure: summary(values) for figure, values in figures.items()}
            for impl, figures in samples.items()
        },
        "ratios": {},
        "errors_logged": {
            impl: {"count": len(lines), "first": lines[:5]}
            for impl, lines in measurement.errors.items()
        },
    }
    for base in ("raw", "upstream", "floor"):
        if base not in samples:
            continue
        out["ratios"][f"vs_{base}"] = {
            impl: {
                figure: paired_ratio(samples[impl][figure], samples[base][figure])
                for figure in measurement.ratio_figures
                if figure in samples[impl]
            }
            for impl in samples
            if impl != base
        }
    return out


def _stat(scenarios: dict[str, Any], path: str, stat: str) -> float | None:
    """`scenario/figures|ratios/.../figure` -> that statistic, or None when not measured."""
    node: Any = scenarios
    for key in path.split("/"):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    value = node.get(stat) if isinstance(node, dict) else None
    return float(value) if value is not None else None


_ISSUE, _DESIGN, _SCALE, _FLOOR = "issue 3", "DESIGN §3", "issue 16", "issue 16 §1"
# (target, source, where this project's value is, statistic over rounds, test, limit), in the
# order they are printed; a row with "{n}" stands for one target per fleet size, and a run of
# such rows repeats, size by size. Leaks show as the worst round (max) or, for memory, as
# growth in every round (min): the allocator grows in sporadic steps, a leak in all of them.
_TARGETS: list[tuple[str, str, str, str, Callable[[float, float], bool], float]] = [
    ("throughput >= 0.8x raw", _ISSUE, "throughput/ratios/vs_raw/ours/events_per_s",
     "median", operator.ge, 0.8),
    ("throughput >= 2x upstream", _DESIGN, "throughput/ratios/vs_upstream/ours/events_per_s",
     "median", operator.ge, 2.0),
    ("idle memory <= 16 KiB per stream ({n:,} streams)", _ISSUE,
     "idle_{n}/figures/ours/kib_per_stream", "median", operator.le, 16),
    ("idle tasks <= 2 per stream ({n:,} streams)", _ISSUE,
     "idle_{n}/figures/ours/tasks_per_stream", "median", operator.le, 2),
    ("idle memory <= 0.5x upstream ({n:,} streams)", _DESIGN,
     "idle_{n}/ratios/vs_upstream/ours/kib_per_stream", "median", operator.le, 0.5),
    ("CPU per broadcast delivery <= 1.3x raw ({n:,} streams)", _ISSUE,
     "broadcast_{n}/ratios/vs_raw/ours/cpu_us_per_delivery", "median", operator.le, 1.3),
    ("broadcast p99 <= 0.5x upstream ({n:,} streams)", _DESIGN,
     "broadcast_{n}/ratios/vs_upstream/ours/p99_ms", "median", operator.le, 0.5),
    ("idle memory <= 1.05x floor ({n:,} streams)", _FLOOR,
     "idle_{n}/ratios/vs_floor/ours/kib_per_stream", "median", operator.le, 1.05),
    ("CPU per broadcast delivery <= 1.05x floor ({n:,} streams)", _FLOOR,
     "broadcast_{n}/ratios/vs_floor/ours/cpu_us_per_delivery", "median", operator.le, 1.05),
    ("CPU per connect/disconnect <= 1.7x raw", _ISSUE,
     "churn/ratios/vs_raw/ours/cpu_us_per_conn", "median", operator.le, 1.7),
    ("CPU per event <= 1.05x floor", _FLOOR,
     "throughput/ratios/vs_floor/ours/cpu_us_per_event", "median", operator.le, 1.05),
    ("CPU per connect/disconnect <= 1.10x floor", _FLOOR,
     "churn/ratios/vs_floor/ours/cpu_us_per_conn", "median", operator.le, 1.10),
    ("churn leaves no task behind (max over rounds)", _ISSUE,
     "churn/figures/ours/tasks_left", "max", operator.le, 0),
    ("churn leaves no stream behind (max over rounds)", _ISSUE,
     "churn/figures/ours/streams_left", "max", operator.le, 0),
    ("churn: RSS back to baseline (least growth of a round <= 0.1 KiB/conn)", _ISSUE,
     "churn/figures/ours/rss_growth_kib_per_conn", "min", operator.le, 0.1),
    ("memory broker CPU per delivery <= 1.3x raw ({n:,} streams)", "issue 6",
     "broker_{n}/ratios/vs_raw/broker/cpu_us_per_delivery", "median", operator.le, 1.3),
    ("SIGTERM: server exits in < 1 s (slowest round)", _DESIGN,
     "sigterm/figures/ours/exit_s", "max", operator.lt, 1.0),
    ("one process at its open-file limit: every stream held", _SCALE,
     "scale_limit/figures/ours/failed", "max", operator.le, 0),
    ("at the limit: <= 20 KiB per stream", _SCALE,
     "scale_limit/figures/ours/kib_per_stream", "median", operator.le, 20),
    ("at the limit: <= 2 tasks per stream", _SCALE,
     "scale_limit/figures/ours/tasks_per_stream", "median", operator.le, 2),
    ("at the limit: a broadcast received by all within 0.5 s (median)", _SCALE,
     "scale_limit/figures/ours/all_ms", "median", operator.le, 500),
    ("at the limit: nothing left once the clients close (tasks)", _SCALE,
     "scale_limit/figures/ours/tasks_left", "max", operator.le, 0),
    ("at the limit: SIGTERM does not hang", _SCALE,
     "scale_limit/figures/ours/hung", "max", operator.le, 0),
    ("at the limit: SIGTERM exits within 1 s", _SCALE,
     "scale_limit/figures/ours/exit_s", "max", operator.lt, 1.0),
    ("at the limit: SIGTERM ends every stream cleanly", _SCALE,
     "scale_limit/figures/ours/unclean", "max", operator.le, 0),
    ("{top:,} streams over workers (Broker on Redis): every stream held", _SCALE,
     "scale_{top}/figures/broker-redis/failed", "max", operator.le, 0),
    ("{top:,} streams over workers: a broadcast received by all within 2.5 s (median)", _SCALE,
     "scale_{top}/figures/broker-redis/all_ms", "median", operator.le, 2500),
]  # fmt: skip


def targets(scenarios: dict[str, Any], sizes: Sequence[int], top: int) -> list[dict[str, Any]]:
    """Each target with this run's value for this project and whether it is met (`sizes`: the
    fleets; `top`: the scale scenario's largest size). Those not measured have value None."""
    out = []
    for per_size, rows in itertools.groupby(_TARGETS, key=lambda row: "{n}" in row[2]):
        group = list(rows)
        for n in sizes if per_size else [0]:
            for text, source, path, stat, test, limit in group:
                value = _stat(scenarios, path.format(n=n, top=top), stat)
                ok = None if value is None else test(value, limit)
                name = text.format(n=n, top=top)
                out.append({"target": name, "source": source, "value": value, "ok": ok})
    return out


# The figures the table shows: (figure, label, statistic over rounds). The rest is in the JSON.
# Leaks show as the worst round (max) or, for memory, as growth in every round (min).
_BROADCAST = [
    ("p50_ms", "p50 ms", "median"),
    ("p99_ms", "p99 ms", "median"),
    ("all_ms", "all received ms", "median"),
    ("cpu_us_per_delivery", "CPU µs/delivery", "median"),
]
HEADLINES = {
    "throughput": [
        ("events_per_s", "events/s", "median"),
        ("cpu_us_per_event", "CPU µs/event", "median"),
    ],
    "idle": [
        ("kib_per_stream", "KiB/stream", "median"),
        ("tasks_per_stream", "tasks/stream", "median"),
    ],
    "broadcast": _BROADCAST,
    "churn": [
        ("cpu_us_per_conn", "CPU µs/conn", "median"),
        ("tasks_left", "tasks left (max)", "max"),
        ("streams_left", "streams left (max)", "max"),
        ("rss_growth_kib", "RSS growth KiB (min)", "min"),
    ],
    "broker": [*_BROADCAST, ("kib_per_stream", "KiB/stream", "median")],
    "storm": [
        ("all_caught_up_s", "all caught up s", "median"),
        ("p50_ms", "p50 catch-up ms", "median"),
        ("p99_ms", "p99 catch-up ms", "median"),
        ("cpu_s", "server CPU s", "median"),
        ("rss_peak_growth_mib", "RSS peak growth MiB", "median"),
        ("rss_end_growth_mib", "RSS growth at end MiB", "median"),
        ("redis_used_memory_peak_growth_mib", "Redis used_memory MiB", "median"),
        ("redis_rss_peak_growth_mib", "Redis RSS growth MiB", "median"),
        ("redis_cpu_s", "Redis CPU s", "median"),
        ("failed", "failed (max)", "max"),
        ("wrong_count", "wrong count (max)", "max"),
        ("resets", "resets (max)", "max"),
    ],
    "sigterm": [
        ("exit_s", "exit s", "median"),
        ("hung", "hung rounds (sum)", "sum"),
        ("clean", "ended cleanly (min)", "min"),
        ("errors_logged", "errors logged (max)", "max"),
    ],
    "scale": [
        ("held", "streams held", "min"),
        ("kib_per_stream", "KiB/stream", "median"),
        ("tasks_per_stream", "tasks/stream", "median"),
        ("cpu_us_per_connect", "CPU µs/connect", "median"),
        *_BROADCAST,
        ("tasks_left", "tasks left", "max"),
        ("exit_s", "SIGTERM exit s", "max"),
        ("clean", "ended cleanly", "min"),
        ("redis_cpu_s", "Redis CPU s", "median"),
    ],
}


def number(value: float | None) -> str:
    """A figure in at most 3 significant digits or as a whole number (also the chart's labels)."""
    if value is None:
        return "-"
    if abs(value) >= 10_000:
        return f"{value / 1000:,.0f}k"
    if abs(value) >= 100 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _cell(figure: dict[str, Any] | None, stat: str) -> str:
    if not figure or figure["median"] is None:
        return "-"
    if stat == "sum":
        return number(sum(v for v in figure["samples"] if v is not None))
    if stat != "median":
        return number(figure[stat])
    spread = figure["spread"]
    noise = f" [{spread:.0%}]" if spread is not None else ""
    return number(figure["median"]) + noise


def _ratio(ratios: dict[str, Any], base: str, figure: str, impl: str) -> str:
    value = ratios.get(f"vs_{base}", {}).get(impl, {}).get(figure, {}).get("median")
    return "-" if value is None else f"{value:.2f}x"


def _table(
    scenarios: dict[str, Any], implementations: Sequence[str], ratios: Sequence[tuple[str, str]]
) -> str:
    """One row per headline figure: its median over rounds [spread] per implementation, then
    each paired ratio (implementation, base) of `ratios`."""
    columns = [(impl, base, max(9, len(f"{impl}/{base}"))) for impl, base in ratios]
    head = f"{'scenario':14s} {'figure':22s}" + "".join(f" {i:>14s}" for i in implementations)
    head += "".join(f" {f'{impl}/{base}':>{width}s}" for impl, base, width in columns)
    lines = [head, "-" * len(head)]
    for name, result in scenarios.items():
        for figure, label, stat in HEADLINES[name.split("_")[0]]:
            cells = "".join(
                f" {_cell(result['figures'].get(impl, {}).get(figure), stat):>14s}"
                for impl in implementations
            )
            cells += "".join(
                f" {_ratio(result['ratios'], base, figure, impl):>{width}s}"
                for impl, base, width in columns
            )
            lines.append(f"{name:14s} {label:22s}{cells}")
    lines.append("median over rounds; [x%] = (max - min) / median, the noise; ratios are paired")
    return "\n".join(lines)


# The scenarios with contenders of their own: each has a table of its own.
SEPARATE = ("broker", "storm", "scale")


def table(scenarios: dict[str, Any], implementations: Sequence[str]) -> str:
    """The figures as text: medians over rounds, [spread], and this project's paired ratios."""
    rows = {name: r for name, r in scenarios.items() if not name.startswith(SEPARATE)}
    ratios = [("ours", base) for base in ("raw", "upstream", "floor") if base in implementations]
    ratios += [("ours-anyio", "floor")] if {"ours-anyio", "floor"} <= set(implementations) else []
    return _table(rows, implementations, ratios)


def broker_table(scenarios: dict[str, Any], implementations: Sequence[str]) -> str:
    """The broker scenario: this project's `Broker` on each backend beside the raw ceiling."""
    rows = {name: r for name, r in scenarios.items() if name.startswith("broker")}
    return _table(rows, implementations, [(i, "raw") for i in implementations if i != "raw"])


def storm_table(scenarios: dict[str, Any], implementations: Sequence[str]) -> str:
    """The storm scenario: the `Broker`'s backends, no ratios (raw keeps nothing to resume)."""
    rows = {name: r for name, r in scenarios.items() if name.startswith("storm")}
    return _table(rows, implementations, [])


def scale_table(
    scenarios: dict[str, Any], at_limit: Sequence[str], over_workers: Sequence[str]
) -> str:
    """The scale scenario: one process at its limit, then over workers, size by size."""
    limit = {name: r for name, r in scenarios.items() if name == "scale_limit"}
    grown = {
        name: r for name, r in scenarios.items() if name.startswith("scale_") and name not in limit
    }
    tables = [
        _table(rows, impls, [("ours", "upstream")] if "upstream" in impls else [])
        for rows, impls in ((limit, at_limit), (grown, over_workers))
        if rows
    ]
    return "\n\n".join(tables)


def target_lines(checked: list[dict[str, Any]]) -> str:
    marks = {True: "met   ", False: "MISSED", None: "n/a   "}
    width = max((len(t["target"]) for t in checked), default=0)
    return "\n".join(
        f"{marks[t['ok']]} {t['target']:{width}s} {number(t['value']):>8s}  ({t['source']})"
        for t in checked
    )
