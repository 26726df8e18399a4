"""How much each scenario does: the full profile, `--quick` (< 3 min) and `--smoke` (tests)."""

from __future__ import annotations

from dataclasses import dataclass, replace

SCENARIOS = ("throughput", "idle", "broadcast", "churn", "sigterm", "broker", "storm")
ALL = ("ours", "upstream", "fastapi-sse", "streaming", "raw")


@dataclass(frozen=True)
class Profile:
    """Sizes, repetitions and time limits of one harness run."""

    name: str
    implementations: tuple[str, ...]
    reps: int  # interleaved rounds of every measurement but SIGTERM
    events: int  # throughput: events in the one stream
    fleets: tuple[int, ...]  # idle, broadcast and broker: open streams per server
    broadcasts: int  # broadcast: events sent to the whole fleet per round
    churn: int  # churn: connections per round
    sigterm_streams: int
    sigterm_reps: int
    hung_s: float  # SIGTERM: how long a server may take to exit before it counts as hung
    storm_clients: int  # storm: streams that resume at once
    storm_behind: int  # storm: events each of them missed
    scenarios: tuple[str, ...] = SCENARIOS


FULL = Profile(
    name="full",
    implementations=ALL,
    reps=5,
    events=200_000,
    fleets=(1_000, 5_000),
    broadcasts=10,
    churn=5_000,
    sigterm_streams=1_000,
    sigterm_reps=3,
    hung_s=10.0,
    storm_clients=1_000,
    storm_behind=500,
)

PROFILES = {
    "full": FULL,
    "quick": replace(
        FULL,
        name="quick",
        reps=3,
        events=50_000,
        fleets=(1_000,),
        churn=1_000,
        sigterm_reps=1,
        hung_s=5.0,
    ),
    "smoke": Profile(
        name="smoke",
        implementations=("ours", "raw"),
        reps=1,
        events=2_000,
        fleets=(50,),
        broadcasts=3,
        churn=50,
        sigterm_streams=20,
        sigterm_reps=1,
        hung_s=2.0,
        storm_clients=20,
        storm_behind=20,
        # tests/test_bench.py
        scenarios=("throughput", "idle", "broadcast", "churn", "sigterm", "storm"),
    ),
}
