"""The broker on a real 3-master Redis Cluster (started by the suite from redis-server)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

from sse_starlette.broker import Broker, BrokerUnavailableError
from tests.redis_cluster import RedisCluster
from tests.test_broker import publish_all, start, take

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """One cluster for the module's tests: each test uses a key prefix (a slot) of its own."""
    cluster = RedisCluster(tmp_path_factory.mktemp("cluster"))
    cluster.start()
    yield cluster
    cluster.stop()


def a_prefix() -> str:
    return f"t-{uuid.uuid4().hex[:8]}:"


def blocked_reads(cluster: RedisCluster, prefix: str) -> int:
    """The XREADs of the log of `prefix` blocked in its master now."""
    node = cluster.nodes[cluster.node_for_key("{" + prefix + "}log")]
    with redis.Redis(port=node.port) as client:
        return sum(
            1 for c in client.client_list() if c["cmd"] == "xread" and c["flags"].find("b") >= 0
        )


async def test_publish_subscribe_and_resume_across_processes_on_a_cluster(
    cluster: RedisCluster,
) -> None:
    prefix = a_prefix()
    topics = [f"room.{i}" for i in range(50)]  # over many slots, were they keys of their own
    async with (
        Broker(cluster.url, prefix=prefix) as one,
        Broker(cluster.url, prefix=prefix) as other,  # another process's broker
        one.subscribe(topics) as exact,
        other.subscribe("room.*") as pattern,
    ):
        await start(exact)
        await start(pattern)
        ids = [await one.publish(topic, topic) for topic in topics[:5]]
        ids.append(await other.publish(["room.0", "room.9"], "both", idempotency_key="k"))
        assert await other.publish(["room.0", "room.9"], "both", idempotency_key="k") == ids[-1]
        for subscription in (exact, pattern):
            events = await take(subscription, 6)
            assert [e.id for e in events] == ids  # one order, the same ids in every process
        with anyio.fail_after(5):  # one blocking read per process, not one per topic
            while blocked_reads(cluster, prefix) != 2:
                await anyio.sleep(0.02)  # polls Redis with a deadline
        async with other.subscribe(topics[1:3], last_event_id=ids[0]) as resumed:
            assert [e.data for e in await take(resumed, 2)] == topics[1:3]


async def test_a_master_killed_mid_stream_and_restarted_loses_nothing_acknowledged(
    tmp_path: Path,
) -> None:
    cluster = RedisCluster(tmp_path)  # its own: this test kills a node
    cluster.start()
    try:
        await _kill_and_restart(cluster)
    finally:
        cluster.stop()


async def _kill_and_restart(cluster: RedisCluster) -> None:
    prefix = a_prefix()
    master = cluster.node_for_key("{" + prefix + "}log")
    async with (
        Broker(cluster.url, prefix=prefix) as broker,
        broker.subscribe("t") as live,
    ):
        await start(live)
        before = await publish_all(broker, "t", ["a", "b"])
        assert [e.id for e in await take(live, 2)] == before
        cluster.kill(master)
        outcomes: list[Any] = []
        with anyio.fail_after(30):
            while True:  # until a publish is refused: the kill is seen
                try:
                    outcomes.append(await broker.publish("t", "during"))
                except BrokerUnavailableError as exc:
                    outcomes.append(exc)
                    break
        assert isinstance(outcomes[-1], BrokerUnavailableError)
        await anyio.to_thread.run_sync(cluster.restart, master)
        # restart() returned once every node reports the cluster ok: the first publish works.
        after = await broker.publish("t", "after")
        # The same stream, never ended: what was stored during the outage, then `after`.
        stored = [id for id in outcomes if isinstance(id, str)]
        got = await take(live, len(stored) + 1, timeout=30)
        assert [e.id for e in got] == [*stored, after]
        # Acknowledged before the kill: still there (AOF), and resumable.
        async with broker.subscribe("t", last_event_id=before[0]) as resumed:
            first, _ = await take(resumed, 2)
        assert (first.id, first.data) == (before[1], "b")
