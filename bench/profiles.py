"""How much each scenario does: the full profile, `--quick` (< 3 min) and `--smoke` (tests)."""

from __future__ import annotations

from dataclasses import dataclass, replace

SCENARIOS = ("throughput", "idle", "broadcast", "churn", "sigterm", "broker", "storm", "scale")
PEERS = ("ours", "upstream", "fastapi-sse", "streaming", "raw")
# The full profile adds what bounds this project (the floor: the app with the least response)
# and its fallback path (anyio scopes, as on Python 3.10), paired with the rest in one run.
ALL = (*PEERS, "floor", "ours-anyio")


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
    scale_limit: int  # scale: streams on one process (0: as many as its open-file limit allows)
    scale_sizes: tuple[int, ...]  # scale: streams over the workers, one fresh set per size
    scale_workers: int  # scale: server processes sharing the streams through Redis
    scale_clients: int  # scale: client processes, each from its own 127.0.1.x address
    scale_broadcasts: int  # scale: broadcasts per fleet (figures: their median)
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
    scale_limit=0,
    scale_sizes=(1_000, 10_000, 30_000, 100_000),
    # 100,000 streams over 5 workers is 20,000 each: the open-file limit itself. 6 hold 16,667.
    scale_workers=6,
    scale_clients=6,
    scale_broadcasts=3,
)

PROFILES = {
    "full": FULL,
    "quick": replace(
        FULL,
        name="quick",
        implementations=PEERS,
        reps=3,
        events=50_000,
        fleets=(1_000,),
        churn=1_000,
        sigterm_reps=1,
        hung_s=5.0,
        scale_limit=5_000,
        scale_sizes=(1_000, 10_000),
        scale_workers=2,
        scale_clients=2,
        # The quick profile stays under 3 minutes: scale only when asked (--scenario scale).
        scenarios=SCENARIOS[:-1],
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
        scale_limit=100,
        scale_sizes=(60,),
        scale_workers=2,
        scale_clients=3,
        scale_broadcasts=2,
        # tests/test_bench.py
        scenarios=("throughput", "idle", "broadcast", "churn", "sigterm", "storm", "scale"),
    ),
}
