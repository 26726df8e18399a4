"""Every Python snippet in the README and docs/ runs, and the apps it shows stream what it says."""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from sse_starlette.testing import SSETestClient

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SNIPPETS = re.findall(r"```python\n(.*?)```", README, flags=re.S)
# docs/<topic>.md too; a snippet that is a pytest test module (it imports pytest) is run by
# the tests of the module it documents instead.
DOC_SNIPPETS = [
    pytest.param(snippet, id=f"{page.name}:{n}")
    for page in sorted((ROOT / "docs").glob("*.md"))
    for n, snippet in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S))
    if "import pytest" not in snippet
]


def run(snippet: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "readme"}
    exec(compile(snippet, "README.md", "exec"), namespace)
    return namespace


def test_readme_has_snippets() -> None:
    assert len(SNIPPETS) >= 3


@pytest.mark.parametrize("snippet", SNIPPETS, ids=lambda s: s.split("\n", 1)[0][:40])
def test_snippet_runs(snippet: str) -> None:
    run(snippet)


@pytest.mark.parametrize("snippet", DOC_SNIPPETS)
def test_docs_snippet_runs(snippet: str) -> None:
    run(snippet)


@pytest.mark.anyio
async def test_quick_start_app_streams_numbered_events() -> None:
    quick_start = next(s for s in SNIPPETS if "Starlette(routes" in s)
    app = run(quick_start.replace("anyio.sleep(1)", "anyio.sleep(0)"))["app"]
    async with SSETestClient(app) as client, client.stream("/events") as stream:
        await stream.read_to_end()
    assert stream.complete
    assert stream.raw.startswith(b"id: 0\r\ndata: Event 0\r\n\r\nid: 1\r\ndata: Event 1\r\n\r\n")
    assert b"data: Event 9" in stream.raw


@pytest.mark.anyio
async def test_memory_channel_snippet_streams_every_item() -> None:
    snippet = next(s for s in SNIPPETS if "data_sender_callable" in s)
    endpoint = run(snippet)["channel_endpoint"]
    response = await endpoint(None)
    async with SSETestClient(response) as client, client.stream() as stream:
        await stream.read_to_end()
    assert stream.complete
    assert stream.raw == b"".join(f"data: Item {i}\r\n\r\n".encode() for i in range(10))


@pytest.mark.anyio
async def test_broker_snippet_streams_what_is_published() -> None:
    namespace = run(next(s for s in SNIPPETS if "broker.response" in s))
    app, broker = namespace["app"], namespace["broker"]
    async with SSETestClient(app) as client, client.stream("/events") as stream:
        with anyio.fail_after(5):
            while broker.metrics.subscribers != 1:  # attached: it gets what is published next
                await anyio.sleep(0.005)
        published = await client.request("POST", "/publish", content=b"hello")
        (event,) = await stream.take(1)
    assert (event.event, event.data, event.id) == ("headline", "hello", published.json()["id"])


# The README's benchmark paragraph quotes bench/results/full.json, the latest full run: each
# number, to the decimals the README gives, is that run's median.
BENCH = json.loads((ROOT / "bench" / "results" / "full.json").read_text())
NUMBER = r"([0-9][0-9.,]*)"
QUOTED_FIGURES = [
    # (README text with the number as {}, scenario, ratio base or None, implementation, figure)
    ("sends {}x the events/s of 3.7.1", "throughput", "vs_upstream", "ours", "events_per_s"),
    ("({}x the raw ceiling", "throughput", "vs_raw", "ours", "events_per_s"),
    ("an idle stream holds {} KiB", "idle_1000", None, "ours", "kib_per_stream"),
    ("KiB and {} tasks (3.7.1", "idle_1000", None, "ours", "tasks_per_stream"),
    ("(3.7.1: {} KiB and 5)", "idle_1000", None, "upstream", "kib_per_stream"),
    ("KiB and {}); a connect", "idle_1000", None, "upstream", "tasks_per_stream"),
    ("costs {}x 3.7.1's CPU", "churn", "vs_upstream", "ours", "cpu_us_per_conn"),
    ("({}x raw) and leaves", "churn", "vs_raw", "ours", "cpu_us_per_conn"),
    ("in {}x 3.7.1's p99", "broadcast_1000", "vs_upstream", "ours", "p99_ms"),
    ("broker costs {}x raw CPU", "broker_1000", "vs_raw", "broker", "cpu_us_per_delivery"),
    ("server exits in {} s", "sigterm", None, "ours", "exit_s"),
    ("(3.7.1: {} s, also cleanly)", "sigterm", None, "upstream", "exit_s"),
    ("same run: {} events/s", "throughput", None, "fastapi-sse", "events_per_s"),
    ("(this project: {})", "throughput", None, "ours", "events_per_s"),
    ("{} KiB and 4 tasks per idle", "idle_1000", None, "fastapi-sse", "kib_per_stream"),
    ("KiB and {} tasks per idle", "idle_1000", None, "fastapi-sse", "tasks_per_stream"),
    ("p99 of {} ms at 1,000", "broadcast_1000", None, "fastapi-sse", "p99_ms"),
    ("clients (this project: {} ms)", "broadcast_1000", None, "ours", "p99_ms"),
    ("{} µs of CPU per connect", "churn", None, "fastapi-sse", "cpu_us_per_conn"),
    ("project: {} µs), and", "churn", None, "ours", "cpu_us_per_conn"),
]


def bench_median(scenario: str, base: str | None, impl: str, figure: str) -> float:
    figures = BENCH["scenarios"][scenario]["ratios" if base else "figures"]
    value = (figures[base] if base else figures)[impl][figure]
    return float(value["median"] if isinstance(value, dict) else value)


def test_bench_figures_come_from_a_full_run() -> None:
    assert BENCH["meta"]["profile"] == "full"
    # "Made by `make bench`": its recipe is the command the committed run records
    recipe = (ROOT / "Makefile").read_text().split("\nbench:", 1)[1].splitlines()[1]
    assert BENCH["meta"]["command"].removeprefix("python ") in recipe


@pytest.mark.parametrize(("text", "scenario", "base", "impl", "figure"), QUOTED_FIGURES)
def test_readme_bench_figure_is_the_full_runs(
    text: str, scenario: str, base: str | None, impl: str, figure: str
) -> None:
    # The README wraps its lines anywhere: any run of whitespace matches any other.
    words = (re.escape(word).replace(re.escape("{}"), NUMBER) for word in text.split())
    pattern = r"\s+".join(words)
    found = re.search(pattern, README)
    assert found, f"README no longer says {text!r}"
    quoted = found.group(1).rstrip(".").replace(",", "")
    decimals = len(quoted.partition(".")[2])
    measured = bench_median(scenario, base, impl, figure)
    assert round(measured, decimals) == float(quoted), (text, measured)


# The parser paragraph quotes bench/results/parser.json the same way.
PARSER = json.loads((ROOT / "bench" / "results" / "parser.json").read_text())["cases"]
QUOTED_PARSER_FIGURES = [
    # (README text with the number as {}, case, implementation or the ratio)
    ("in 256-byte reads it parses {} MB/s", "small events, 256-byte reads", "ours"),
    ("MB/s, {}x httpx-sse; a 1 MB", "small events, 256-byte reads", "ratio"),
    ("event in 256-byte reads {} MB/s", "one 1 MB event, 256-byte reads", "ours"),
    ("MB/s, {}x httpx-sse.", "one 1 MB event, 256-byte reads", "ratio"),
]


@pytest.mark.parametrize(("text", "case", "impl"), QUOTED_PARSER_FIGURES)
def test_readme_parser_figure_is_the_committed_runs(text: str, case: str, impl: str) -> None:
    words = (re.escape(word).replace(re.escape("{}"), NUMBER) for word in text.split())
    found = re.search(r"\s+".join(words), README)
    assert found, f"README no longer says {text!r}"
    figures = PARSER[case]
    measured = figures["ratio ours/httpx-sse"] if impl == "ratio" else figures[impl]["MB/s"]
    assert float(found.group(1).rstrip(".")) == measured, (text, measured)


# docs/broker.md quotes bench/results/broker_log.json (why one log, and what it costs).
BROKER_LOG = json.loads((ROOT / "bench" / "results" / "broker_log.json").read_text())


@pytest.mark.parametrize(
    ("text", "figure"),
    [
        ("matches costs the process {} µs of CPU", "elsewhere_cpu_us_per_event"),
        ("and read by it, {} µs.", "delivered_cpu_us_per_event"),
    ],
)
def test_broker_doc_log_figures_are_the_committed_runs(text: str, figure: str) -> None:
    assert_quoted(BROKER_DOC, text, BROKER_LOG[figure])


BROKER_DOC = (ROOT / "docs" / "broker.md").read_text()


def assert_quoted(doc: str, text: str, measured: float) -> None:
    """`doc` says `text` with `measured` in place of {}, to the decimals it quotes."""
    words = (re.escape(word).replace(re.escape("{}"), NUMBER) for word in text.split())
    found = re.search(r"\s+".join(words), doc)
    assert found, f"the doc no longer says {text!r}"
    quoted = found.group(1).rstrip(".").replace(",", "")
    assert round(measured, len(quoted.partition(".")[2])) == float(quoted), (text, measured)


# docs/broker.md quotes the resume storm of bench/results/storm.json.
STORM = json.loads((ROOT / "bench" / "results" / "storm.json").read_text())
QUOTED_STORM_FIGURES = [
    # (text with the number as {}, implementation, figure)
    ("have caught up after {} s, on Redis", "broker", "all_caught_up_s"),
    ("on Redis after {} s (one uvicorn", "broker-redis", "all_caught_up_s"),
    ("CPU-bound: {} and", "broker", "cpu_us_per_event"),
    ("and {} µs of server CPU per event", "broker-redis", "cpu_us_per_event"),
    ("in the same run) takes {} s", "broker-1msg", "all_caught_up_s"),
    ("s and {} µs per event.", "broker-1msg", "cpu_us_per_event"),
    ("Server RSS grows by {} and", "broker", "rss_peak_growth_mib"),
    ("and {} MiB at its peak", "broker-redis", "rss_peak_growth_mib"),
    ("message per event: {} MiB)", "broker-1msg", "rss_peak_growth_mib"),
    ("`used_memory` grows by {} MiB", "broker-redis", "redis_used_memory_peak_growth_mib"),
    ("spends {} s of CPU", "broker-redis", "redis_cpu_s"),
]


@pytest.mark.parametrize(("text", "impl", "figure"), QUOTED_STORM_FIGURES)
def test_broker_doc_storm_figures_are_the_committed_run(text: str, impl: str, figure: str) -> None:
    figures = STORM["scenarios"]["storm"]["figures"][impl]
    assert_quoted(BROKER_DOC, text, figures[figure]["median"])
    for counter in ("failed", "wrong_count", "resets"):  # "every client, exactly"
        assert figures[counter]["max"] == 0


# The README's first screen and its benchmark paragraph quote the scale scenario of the same run.
QUOTED_SCALE_FIGURES = [
    # (README text with the number as {}, scenario, implementation, figure, unit factor)
    ("all of them in {} s (median of 3)", "scale_100000", "broker-redis", "all_ms", 1e-3),
    ("One process holds {} streams", "scale_limit", "ours", "held", 1),
    ("at {} KiB and 2 tasks each", "scale_limit", "ours", "kib_per_stream", 1),
    ("KiB and {} tasks each", "scale_limit", "ours", "tasks_per_stream", 1),
    ("(3.7.1: {} KiB and 5;", "scale_limit", "upstream", "kib_per_stream", 1),
    ("KiB and {}; `fastapi.sse`:", "scale_limit", "upstream", "tasks_per_stream", 1),
    ("`fastapi.sse`: {} KiB and 4)", "scale_limit", "fastapi-sse", "kib_per_stream", 1),
    ("KiB and {}); a broadcast", "scale_limit", "fastapi-sse", "tasks_per_stream", 1),
    ("reaches all of them in {} s", "scale_limit", "ours", "all_ms", 1e-3),
    ("s (3.7.1: {} s; `fastapi.sse`:", "scale_limit", "upstream", "all_ms", 1e-3),
    ("`fastapi.sse`: {} s), and SIGTERM", "scale_limit", "fastapi-sse", "all_ms", 1e-3),
    ("ends every one cleanly in {} s", "scale_limit", "ours", "exit_s", 1),
    ("(3.7.1: {} s; `fastapi.sse`'s never", "scale_limit", "upstream", "exit_s", 1),
    ("`fastapi.sse` got to {} over", "scale_30000", "fastapi-sse", "held", 1),
    ("(a broadcast took {} s)", "scale_30000", "fastapi-sse", "all_ms", 1e-3),
    ("CPU per delivery was {} µs", "scale_100000", "ours", "cpu_us_per_delivery", 1),
    ("against 3.7.1's {} µs in that", "scale_100000", "upstream", "cpu_us_per_delivery", 1),
    ("(at 30,000, {} against", "scale_30000", "ours", "cpu_us_per_delivery", 1),
    ("against {} µs; the `Broker`", "scale_30000", "upstream", "cpu_us_per_delivery", 1),
    ("the `Broker`: {} µs at 100,000)", "scale_100000", "broker-redis", "cpu_us_per_delivery", 1),
]


@pytest.mark.parametrize(("text", "scenario", "impl", "figure", "unit"), QUOTED_SCALE_FIGURES)
def test_readme_scale_figure_is_the_full_runs(
    text: str, scenario: str, impl: str, figure: str, unit: float
) -> None:
    assert_quoted(
        README, text, BENCH["scenarios"][scenario]["figures"][impl][figure]["median"] * unit
    )


def test_readme_scale_claims_without_a_number_hold() -> None:
    limit = BENCH["scenarios"]["scale_limit"]
    streams = limit["params"]["streams"]
    # "hold 100,000 open streams" over "6 uvicorn processes"
    top = BENCH["scenarios"]["scale_100000"]
    assert top["params"]["workers"] == 6
    assert top["figures"]["broker-redis"]["held"]["min"] == 100_000
    assert top["figures"]["broker-redis"]["missed"]["max"] == 0
    # "(its open-file limit)": the hard limit less the server's own files
    assert streams == limit["params"]["fd_limit"] - 100
    # "ends every one cleanly"; "`fastapi.sse`'s never end"
    assert limit["figures"]["ours"]["clean"]["min"] == streams
    assert limit["figures"]["upstream"]["clean"]["min"] == streams
    assert limit["figures"]["fastapi-sse"]["clean"]["max"] == 0
    # "at 100,000 they stopped answering": the harness gave up on them
    assert top["figures"]["fastapi-sse"]["held"]["median"] is None
    assert "gave up" in top["errors_logged"]["fastapi-sse"]["first"][0]


# The README's granian paragraph quotes bench/results/granian.json, a run of the headline
# scenarios under granian.
GRANIAN = json.loads((ROOT / "bench" / "results" / "granian.json").read_text())
QUOTED_GRANIAN_FIGURES = [
    # (README text with the number as {}, scenario, ratio base or None, implementation, figure)
    (
        "idle stream holds {} KiB and 2 tasks (3.7.1: 50",
        "idle_1000",
        None,
        "ours",
        "kib_per_stream",
    ),
    ("tasks (3.7.1: {} KiB and 5), a connect", "idle_1000", None, "upstream", "kib_per_stream"),
    ("a connect costs {}x 3.7.1's CPU", "churn", "vs_upstream", "ours", "cpu_us_per_conn"),
    ("arrives in {}x its p99", "broadcast_1000", "vs_upstream", "ours", "p99_ms"),
    ("throughput, {}x 3.7.1's events/s", "throughput", "vs_upstream", "ours", "events_per_s"),
    ("events/s ({} against", "throughput", None, "ours", "events_per_s"),
    ("against {}) at about", "throughput", None, "upstream", "events_per_s"),
    ("CPU per event ({} against", "throughput", None, "ours", "cpu_us_per_event"),
    ("against {} µs), so granian", "throughput", None, "upstream", "cpu_us_per_event"),
    ("this project gets ({} events/s)", "throughput", None, "raw", "events_per_s"),
    ("under granian too (p99 {} against", "broadcast_1000", None, "streaming", "p99_ms"),
    ("against {} ms).", "broadcast_1000", None, "ours", "p99_ms"),
]


@pytest.mark.parametrize(("text", "scenario", "base", "impl", "figure"), QUOTED_GRANIAN_FIGURES)
def test_readme_granian_figure_is_the_granian_runs(
    text: str, scenario: str, base: str | None, impl: str, figure: str
) -> None:
    figures = GRANIAN["scenarios"][scenario]["ratios" if base else "figures"]
    value = (figures[base] if base else figures)[impl][figure]["median"]
    assert_quoted(README, text, value)


def test_readme_granian_claims_hold() -> None:
    assert GRANIAN["meta"]["server"].startswith("granian")
    # the upstream contender ran the published package, not this project
    assert ".venv-upstream" in GRANIAN["meta"]["served_by"]["upstream"]
    sigterm = GRANIAN["scenarios"]["sigterm"]
    streams = sigterm["params"]["streams"]
    # "only this project's streams end on SIGTERM ... did not exit until killed, every round"
    assert sigterm["figures"]["ours"]["clean"]["min"] == streams
    for impl in ("upstream", "fastapi-sse", "streaming"):
        assert all(sigterm["figures"][impl]["hung"]["samples"]), impl
    # "so granian spent 1.4 cores on 3.7.1's stream and 0.8 on ours"
    throughput = GRANIAN["scenarios"]["throughput"]["figures"]
    cores = {
        i: throughput[i]["events_per_s"]["median"]
        * throughput[i]["cpu_us_per_event"]["median"]
        / 1e6
        for i in ("ours", "upstream")
    }
    assert_quoted(README, "granian spent {} cores", cores["upstream"])
    assert_quoted(README, "cores on 3.7.1's stream and {} on ours", cores["ours"])


# bench/README.md's tables of what bounds the figures: the same full run, cell by cell.
BENCH_README = (ROOT / "bench" / "README.md").read_text()
FLOOR_ROWS = [
    ("throughput", "cpu_us_per_event", "throughput, CPU µs/event"),
    ("idle_1000", "kib_per_stream", "idle, KiB/stream (1,000)"),
    ("idle_5000", "kib_per_stream", "idle, KiB/stream (5,000)"),
    ("broadcast_1000", "cpu_us_per_delivery", "broadcast, CPU µs/delivery (1,000)"),
    ("broadcast_5000", "cpu_us_per_delivery", "broadcast, CPU µs/delivery (5,000)"),
    ("churn", "cpu_us_per_conn", "churn, CPU µs/connection"),
]
LIMIT_ROWS = [
    ("kib_per_stream", "KiB/stream"),
    ("all_ms", "broadcast, all received ms"),
    ("exit_s", "SIGTERM, exit s"),
]


def _row(label: str, cells: list[str]) -> str:
    return f"| {label} | " + " | ".join(cells) + " |"


@pytest.mark.parametrize(("scenario", "figure", "label"), FLOOR_ROWS)
def test_bench_readme_floor_row_is_the_full_runs(scenario: str, figure: str, label: str) -> None:
    from bench.report import number

    figures = BENCH["scenarios"][scenario]["figures"]
    ratios = BENCH["scenarios"][scenario]["ratios"]["vs_floor"]
    cells = [number(figures[i][figure]["median"]) for i in ("ours", "floor", "raw", "ours-anyio")]
    cells += [f"{ratios[i][figure]['median']:.2f}x" for i in ("ours", "ours-anyio")]
    assert _row(label, cells) in BENCH_README


@pytest.mark.parametrize(("figure", "label"), LIMIT_ROWS)
def test_bench_readme_limit_row_is_the_full_runs(figure: str, label: str) -> None:
    from bench.report import number

    figures = BENCH["scenarios"]["scale_limit"]["figures"]
    medians = [figures[i][figure]["median"] for i in ("ours", "broker", "floor", "raw")]
    cells = ["hung" if m is None else number(m) for m in medians]
    assert _row(label, cells) in BENCH_README


def test_bench_readme_bounds_claims_hold() -> None:
    scenarios = BENCH["scenarios"]
    # "per event 1.04x", "per broadcast delivery 1.04x at 1,000 streams and 1.03x at 5,000
    # (from 0.98x to 1.05x over the rounds)"
    per_event_ours = scenarios["throughput"]["ratios"]["vs_floor"]["ours"]["cpu_us_per_event"]
    assert_quoted(BENCH_README, "per event {}x (sending", per_event_ours["median"])
    for size, text in ((1000, "delivery {}x at 1,000"), (5000, "and {}x at 5,000 (from")):
        paired = scenarios[f"broadcast_{size}"]["ratios"]["vs_floor"]["ours"]
        assert_quoted(BENCH_README, text, paired["cpu_us_per_delivery"]["median"])
    wide = scenarios["broadcast_5000"]["ratios"]["vs_floor"]["ours"]["cpu_us_per_delivery"]
    assert_quoted(BENCH_README, "(from {}x to", wide["min"])
    assert_quoted(BENCH_README, "to {}x over the rounds), and", wide["max"])
    # "holds 0.86 KiB more than `floor`'s at 1,000 streams ... 1.0 KiB more at 5,000"
    for size, text in ((1000, "holds {} KiB more than"), (5000, "and {} KiB more at 5,000")):
        idle = scenarios[f"idle_{size}"]["figures"]
        more = idle["ours"]["kib_per_stream"]["median"] - idle["floor"]["kib_per_stream"]["median"]
        assert_quoted(BENCH_README, text, more)
    churn = scenarios["churn"]["figures"]
    per_conn = {i: churn[i]["cpu_us_per_conn"]["median"] for i in ("ours", "floor", "ours-anyio")}
    assert_quoted(BENCH_README, "a connection: {} µs more", per_conn["ours"] - per_conn["floor"])
    assert_quoted(BENCH_README, "event and {} µs more", per_conn["ours-anyio"] - per_conn["ours"])
    per_event = scenarios["throughput"]["ratios"]["vs_floor"]["ours-anyio"]["cpu_us_per_event"]
    assert_quoted(BENCH_README, "path costs {}x `floor` per", per_event["median"])
    limit = scenarios["scale_limit"]["figures"]
    # "The `Broker` ... meets the first two, at ... KiB and ... ms"; `floor` "itself holds ...
    # KiB per stream and takes ... ms"; "takes uvicorn ... s"
    broker = {f: limit["broker"][f]["median"] for f in ("kib_per_stream", "all_ms")}
    assert broker["kib_per_stream"] <= 20 and broker["all_ms"] <= 500
    assert_quoted(BENCH_README, "the first two, at {} KiB", broker["kib_per_stream"])
    assert_quoted(BENCH_README, "KiB and {} ms. The queue", broker["all_ms"])
    assert_quoted(BENCH_README, "itself holds {} KiB", limit["floor"]["kib_per_stream"]["median"])
    assert_quoted(BENCH_README, "takes {} ms for the", limit["floor"]["all_ms"]["median"])
    assert_quoted(BENCH_README, "takes uvicorn {} s even", limit["raw"]["exit_s"]["median"])
    # "...x that, and 3.7.1 takes longer still (... s)"
    exits = {i: limit[i]["exit_s"]["median"] for i in ("ours", "raw", "upstream")}
    assert_quoted(BENCH_README, "waited for), {}x that", exits["ours"] / exits["raw"])
    assert_quoted(BENCH_README, "longer still ({} s)", exits["upstream"])


# bench/README.md's measure of what the ping timer costs: bench/results/ablation.json.
ABLATION = json.loads((ROOT / "bench" / "results" / "ablation.json").read_text())["scenarios"]


def test_bench_readme_ablation_figures_are_the_committed_runs() -> None:
    idle, churn = ABLATION["idle_1000"], ABLATION["churn"]
    kib = {
        i: idle["figures"][i]["kib_per_stream"]["median"] for i in ("ours", "floor", "ours-noping")
    }
    assert_quoted(BENCH_README, "stream holds {} KiB against", kib["ours-noping"])
    assert_quoted(BENCH_README, "against `floor`'s {} (1", kib["floor"])
    ratios = idle["ratios"]["vs_floor"]
    noping = ratios["ours-noping"]["kib_per_stream"]["median"]
    assert_quoted(BENCH_README, "({}x, where `ours`", noping)
    assert_quoted(BENCH_README, "where `ours` is {}x)", ratios["ours"]["kib_per_stream"]["median"])
    assert_quoted(BENCH_README, "is {} KiB of the", kib["ours"] - kib["ours-noping"])
    assert_quoted(BENCH_README, "KiB of the {} KiB", kib["ours"] - kib["floor"])
    conn = churn["ratios"]["vs_floor"]
    assert_quoted(
        BENCH_README,
        "connection costs {}x `floor`'s CPU",
        conn["ours-noping"]["cpu_us_per_conn"]["median"],
    )
    assert_quoted(
        BENCH_README, "`ours`' {}x in that run", conn["ours"]["cpu_us_per_conn"]["median"]
    )


# bench/README.md's table of what a stream costs the response alone: bench/results/inprocess.json.
INPROCESS = json.loads((ROOT / "bench" / "results" / "inprocess.json").read_text())["results"]
INPROCESS_ROWS = [
    ("bytes/idle stream", lambda r: r["bytes_per_stream"], "{:,.0f}"),
    ("tracked objects/idle stream", lambda r: r["objects_per_stream"], "{:.1f}"),
    ("CPU µs/connection", lambda r: r["cpu_us_per_conn_gc_on"]["median"], "{:.1f}"),
    ("CPU µs/connection, collector off", lambda r: r["cpu_us_per_conn_gc_off"]["median"], "{:.1f}"),
]


@pytest.mark.parametrize(("label", "value", "form"), INPROCESS_ROWS)
def test_bench_readme_inprocess_row_is_the_committed_runs(
    label: str, value: Callable[[dict[str, Any]], float], form: str
) -> None:
    cells = [form.format(value(INPROCESS[i])) for i in ("ours", "ours-noping", "floor")]
    assert _row(label, cells) in BENCH_README


def test_bench_readme_inprocess_split_holds() -> None:
    # "Of the 19 µs ..., 14 µs is the code's own and 5 µs the collector's passes over the 6
    # more objects each stream keeps"
    ours, floor = INPROCESS["ours"], INPROCESS["floor"]
    on, off = (
        ours[k]["median"] - floor[k]["median"]
        for k in ("cpu_us_per_conn_gc_on", "cpu_us_per_conn_gc_off")
    )
    assert_quoted(BENCH_README, "Of the {} µs a connection", on)
    assert_quoted(BENCH_README, "here, {} µs is the code's own", off)
    assert_quoted(BENCH_README, "own and {} µs the collector's", on - off)
    assert_quoted(
        BENCH_README,
        "over the {} more objects",
        ours["objects_per_stream"] - floor["objects_per_stream"],
    )


# bench/README.md's granian pacing table: bench/results/granian_pacing.json.
PACING = json.loads((ROOT / "bench" / "results" / "granian_pacing.json").read_text())


@pytest.mark.parametrize(
    ("client", "label"), [("poll", "poll (the harness's)"), ("blocking", "blocking")]
)
def test_bench_readme_granian_pacing_row_is_the_committed_runs(client: str, label: str) -> None:
    from bench.report import number

    by = PACING["medians"][client]
    names = ("ours", "upstream", "raw", "raw-in-scope", "raw-spin")
    cells = [f"{by[n]['events_per_s']:,.0f} ({number(by[n]['cpu_us_per_event'])})" for n in names]
    assert _row(label, cells) in BENCH_README
    # "as soon as each send is inside an anyio.CancelScope() ... or comes after ... an empty
    # loop, and it then costs granian less CPU per event, not more"
    for paced in ("raw-in-scope", "raw-spin"):
        assert by[paced]["events_per_s"] > 1.5 * by["raw"]["events_per_s"]
        assert by[paced]["cpu_us_per_event"] < by["raw"]["cpu_us_per_event"]
    assert by["ours"]["events_per_s"] < 1.1 * by["raw"]["events_per_s"]


def test_readme_bench_claims_without_a_number_hold() -> None:
    throughput = BENCH["scenarios"]["throughput"]["figures"]
    churn = BENCH["scenarios"]["churn"]["figures"]["ours"]
    sigterm = BENCH["scenarios"]["sigterm"]["figures"]
    # StreamingResponse "sends one stream 1.08x as fast (this project: 0.93x its events/s)"
    ours, streaming = (throughput[i]["events_per_s"]["median"] for i in ("ours", "streaming"))
    assert_quoted(README, "sends one stream {}x as fast", streaming / ours)
    assert_quoted(README, "(this project: {}x its events/s)", ours / streaming)
    # "leaves nothing behind"
    assert [churn[left]["max"] for left in ("tasks_left", "streams_left", "failed")] == [0, 0, 0]
    # "ends every one cleanly (3.7.1: ..., also cleanly)"; fastapi.sse's "do not end"
    streams = BENCH["scenarios"]["sigterm"]["params"]["streams"]
    assert sigterm["ours"]["clean"]["min"] == sigterm["upstream"]["clean"]["min"] == streams
    assert sigterm["fastapi-sse"]["clean"]["max"] == 0
    # StreamingResponse's broadcast: "this project's p99 is 1.15x its, paired, from 1.03x to
    # 1.32x over the rounds); at 5,000 clients this project's is the sooner (0.97x, from
    # 0.90x to 0.99x)"
    paired = {}
    for size in (1000, 5000):
        wide = BENCH["scenarios"][f"broadcast_{size}"]["figures"]
        ours_p99s, streaming_p99s = (wide[i]["p99_ms"]["samples"] for i in ("ours", "streaming"))
        paired[size] = [a / b for a, b in zip(ours_p99s, streaming_p99s, strict=True)]
    assert_quoted(README, "p99 is {}x its, paired", statistics.median(paired[1000]))
    assert_quoted(README, "paired, from {}x to", min(paired[1000]))
    assert_quoted(README, "x to {}x over the rounds", max(paired[1000]))
    assert min(paired[1000]) > 1
    assert_quoted(README, "is the sooner ({}x, from", statistics.median(paired[5000]))
    assert_quoted(README, "x, from {}x to 0", min(paired[5000]))
    assert_quoted(README, "x to {}x). These", max(paired[5000]))
    assert max(paired[5000]) < 1


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the Redis broker is asyncio-only
@pytest.mark.parametrize("page", ["README.md", "docs/broker.md"], ids=["README", "docs/broker.md"])
async def test_broker_snippet_answers_503_when_redis_is_down(
    anyio_backend: str, page: str, tmp_path: Path
) -> None:
    import httpx

    from sse_starlette.broker import Broker
    from tests.redis_server import RedisServer

    text = (ROOT / page).read_text()
    snippet = next(
        s
        for s in re.findall(r"```python\n(.*?)```", text, flags=re.S)
        if "lifespan=broker.lifespan" in s
    )
    namespace = run(snippet)
    server = RedisServer(tmp_path)
    server.start()
    async with Broker(server.url, socket_connect_timeout=1) as broker:
        namespace["broker"] = broker  # the snippet's handlers, on a Redis that goes away
        server.kill()
        transport = httpx.ASGITransport(namespace["app"])
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            path = "/publish" if page == "README.md" else "/say"
            answer = await client.post(path, content=b"hello")
    assert answer.status_code == 503
    assert "not stored" in answer.json()["error"]
