"""The PNG chart: one panel per headline figure, a bar per implementation, ratio to raw on top."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.report import number

COLOURS = {
    "ours": "#1f77b4",
    "upstream": "#ff7f0e",
    "fastapi-sse": "#d62728",
    "streaming": "#7f7f7f",
    "raw": "#2ca02c",
    "floor": "#bcbd22",
    "ours-anyio": "#aec7e8",
    "broker": "#17becf",
    "broker-redis": "#9467bd",
}


def _panels(scenarios: dict[str, Any]) -> list[tuple[str, str, str, float | None, float | None]]:
    """(scenario, figure, title, target as a multiple of raw, absolute target) per panel."""
    largest, widest, brokers = (
        max((int(k.split("_")[1]) for k in scenarios if k.startswith(f"{kind}_")), default=0)
        for kind in ("idle", "broadcast", "broker")
    )
    idle, bcast, broker = f"idle_{largest}", f"broadcast_{widest}", f"broker_{brokers}"
    panels = [
        ("throughput", "events_per_s", "throughput: events/s (higher is better)", 0.8, None),
        ("throughput", "cpu_us_per_event", "throughput: server CPU µs per event", None, None),
        (idle, "kib_per_stream", f"idle, {largest:,} streams: KiB per stream", None, 16.0),
        (idle, "tasks_per_stream", f"idle, {largest:,} streams: tasks per stream", None, 2.0),
        (bcast, "p99_ms", f"broadcast to {widest:,}: p99 delivery ms", None, None),
        (bcast, "cpu_us_per_delivery", f"broadcast to {widest:,}: CPU µs/delivery", 1.3, None),
        ("churn", "cpu_us_per_conn", "churn: server CPU µs per connection", 1.7, None),
        (broker, "cpu_us_per_delivery", f"Broker to {brokers:,}: CPU µs/delivery", 1.3, None),
        (broker, "p99_ms", f"Broker to {brokers:,}: p99 delivery ms", None, None),
        ("sigterm", "exit_s", "SIGTERM: seconds to exit (hatched: hung, killed)", None, 1.0),
    ]
    return [p for p in panels if p[0] in scenarios]


def draw(doc: dict[str, Any], path: Path) -> None:
    """Write the chart of a harness run (`doc` is the results JSON) to `path`."""
    import matplotlib

    matplotlib.use("Agg")  # no display: the harness runs headless
    import matplotlib.pyplot as plt

    scenarios = doc["scenarios"]
    panels = _panels(scenarios)
    cols = 4
    rows = max(1, -(-len(panels) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, (scenario, figure, title, raw_factor, absolute) in zip(axes.flat, panels, strict=False):
        result = scenarios[scenario]
        # The broker scenario has contenders of its own.
        key = "broker_implementations" if scenario.startswith("broker") else "implementations"
        impls: list[str] = doc["meta"].get(key, [])
        hung_s = result["params"].get("hung_after_s")
        for x, impl in enumerate(impls):
            stats = result["figures"].get(impl, {}).get(figure)
            median = stats["median"] if stats else None
            hung = median is None and hung_s is not None and impl in result["figures"]
            height = hung_s if hung else (median or 0.0)
            low, high = (stats["min"], stats["max"]) if stats and median is not None else (0, 0)
            ax.bar(
                x,
                height,
                color=COLOURS.get(impl, "#999999"),
                hatch="//" if hung else None,
                alpha=0.5 if hung else 1.0,
                yerr=[[height - low], [high - height]] if median is not None else None,
                capsize=3,
            )
            ratio = result["ratios"].get("vs_raw", {}).get(impl, {}).get(figure, {})
            label = "hung" if hung else number(median)
            if ratio.get("median") is not None:
                label += f"\n{ratio['median']:.2f}x raw"
            if scenario == "sigterm":
                clean = result["figures"].get(impl, {}).get("clean", {}).get("min")
                label += f"\n{number(clean)}/{result['params']['streams']:,} clean"
            ax.annotate(label, (x, max(height, high)), ha="center", va="bottom", fontsize=7)
        raw = result["figures"].get("raw", {}).get(figure, {}).get("median")
        target = (
            absolute if absolute is not None else (raw * raw_factor if raw and raw_factor else None)
        )
        if target is not None:
            ax.axhline(target, color="#d62728", linestyle="--", linewidth=1, label="target")
            ax.legend(fontsize=7, loc="best")
        ax.set_title(title, fontsize=9)
        ax.set_xticks(range(len(impls)), impls, fontsize=8)
        ax.margins(y=0.25)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    meta = doc["meta"]
    fig.suptitle(
        "sse_starlette vs sse-starlette 3.7.1, fastapi.sse, StreamingResponse and a raw ASGI "
        f"loop; its Broker "
        f"({meta['server'].split(' --')[0]}, uvloop) - {meta['profile']} profile, "
        f"{meta['started'][:10]}\n"
        "bars: median over interleaved rounds; whiskers: min-max; labels: paired ratio to raw; "
        f"made by: {meta['command']}",
        fontsize=9,
    )
    _save(fig, path, top=0.93)


def _save(fig: Any, path: Path, top: float) -> None:
    """Lay out (the title above `top`), write the PNG, free the figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout(rect=(0, 0, 1, top))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# The scale chart: how each figure grows with the streams over workers (issue 16 §5).
_GROWTH = [
    ("cpu_us_per_delivery", "server CPU µs per delivery"),
    ("kib_per_stream", "server RSS KiB per stream"),
    ("all_ms", "broadcast: ms until all received"),
    ("cpu_us_per_connect", "server CPU µs per connect"),
]


def is_scale_size(name: str) -> bool:
    """`scale_<N>`: a size of the scale scenario over workers (not `scale_limit`)."""
    return name.startswith("scale_") and name[6:].isdigit()


def _broadcast_count(scenarios: dict[str, Any], sizes: list[int]) -> int:
    return int(scenarios[f"scale_{sizes[-1]}"]["params"]["broadcasts"]) if sizes else 0


def draw_scale(doc: dict[str, Any], path: Path) -> None:
    """Write the growth chart of a run with the scale scenario: one line per contender."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = doc["scenarios"]
    sizes = sorted(int(name[6:]) for name in scenarios if is_scale_size(name))
    impls: list[str] = doc["meta"]["scale_implementations"][1]
    figures = {
        (impl, n): scenarios[f"scale_{n}"]["figures"].get(impl, {}) for impl in impls for n in sizes
    }
    labels = {}
    for impl in impls:
        # A size the harness gave up on (the servers stopped answering): said in the legend.
        lost = [n for n in sizes if figures[impl, n].get("held", {}).get("median") is None]
        labels[impl] = f"{impl} (gave up at {lost[0]:,})" if lost else impl
    fig, axes = plt.subplots(1, len(_GROWTH), figsize=(4.2 * len(_GROWTH), 3.6), squeeze=False)
    for ax, (figure, title) in zip(axes.flat, _GROWTH, strict=True):
        for impl in impls:
            points = [
                (n, stats["median"])
                for n in sizes
                if (stats := figures[impl, n].get(figure)) and stats["median"] is not None
            ]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", label=labels[impl], color=COLOURS.get(impl, "#999999"))
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("open streams (all workers)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    meta = doc["meta"]
    workers = scenarios[f"scale_{sizes[-1]}"]["params"]["workers"] if sizes else 0
    fig.suptitle(
        f"How cost grows: {workers} {meta['server'].split()[0]} processes, one broadcast through "
        "Redis reaching every "
        f"stream (median of {_broadcast_count(scenarios, sizes)}) - {meta['started'][:10]}\n"
        f"made by: {meta['command']}",
        fontsize=9,
    )
    _save(fig, path, top=0.9)
