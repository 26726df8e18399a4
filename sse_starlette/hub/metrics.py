"""The hub's counters, and `/metrics` in Prometheus' text format (through prometheus_client).

Each hub has a registry of its own (several hubs in one process, as tests make, never
share counters); the broker's counters are read when scraped, not copied.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sse_starlette.broker import BrokerMetrics

__all__ = ["HubMetrics"]

DISCONNECT_REASONS = (
    "client",
    "slow-consumer",
    "send-timeout",
    "token-expired",
    "shutdown",
    "error",
)


class _BrokerCollector(Collector):
    def __init__(self, metrics: BrokerMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        yield GaugeMetricFamily(
            "mercure_broker_subscribers", "Subscriptions attached in this process.", m.subscribers
        )
        for name, help, value in (
            ("events_delivered", "Events handed to subscribers' buffers.", m.delivered),
            ("resumes", "Streams that asked to resume after a last event id.", m.resumes),
            ("resets", "Resumes that could not be exact.", m.resets),
            ("slow_consumer_disconnects", "Streams ended for falling behind.",
             m.slow_consumer_disconnects),
            ("slow_consumer_drops", "Events dropped for slow consumers.", m.slow_consumer_drops),
        ):  # fmt: skip
            yield CounterMetricFamily(f"mercure_broker_{name}", help, value)


class HubMetrics:
    """What one hub counts: streams, updates, bytes, disconnects and refusals."""

    def __init__(self, broker: BrokerMetrics) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.streams_open = Gauge("mercure_streams_open", "Event streams open now.",
                                  registry=registry)  # fmt: skip
        self.streams = Counter("mercure_streams", "Event streams opened.", registry=registry)
        self.published = Counter(
            "mercure_updates_published", "Updates published through this process.",
            registry=registry,
        )  # fmt: skip
        self.delivered = Counter(
            "mercure_updates_delivered", "Updates written to this process's streams.",
            registry=registry,
        )  # fmt: skip
        self.bytes_sent = Counter(
            "mercure_bytes_sent", "Bytes written to event streams (updates and pings).",
            registry=registry,
        )  # fmt: skip
        self.disconnects = Counter(
            "mercure_disconnects", "Event streams ended, by reason.", ["reason"],
            registry=registry,
        )  # fmt: skip
        for reason in DISCONNECT_REASONS:
            self.disconnects.labels(reason)
        self.rejected = Counter(
            "mercure_rejected", "Requests refused, by endpoint and reason.",
            ["endpoint", "reason"], registry=registry,
        )  # fmt: skip
        registry.register(_BrokerCollector(broker))

    def text(self) -> bytes:
        return generate_latest(self.registry)
