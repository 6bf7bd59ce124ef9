"""A real three-primary Redis Cluster for the tests, and slot migration as redis-cli does it.

Each node is a `redis-server --cluster-enabled yes` process on a free loopback port. The
slots are split in three ranges, the nodes meet, and the harness waits until every node sees
`cluster_state:ok` with all 16384 slots assigned.
"""

from __future__ import annotations

import time
from typing import Any

import redis
from redis.cluster import RedisCluster

from auditkit import EmbeddedRedis

SLOTS = 16_384
_CONFIG = {
    "cluster-enabled": "yes",
    "cluster-config-file": "nodes.conf",
    "cluster-node-timeout": "5000",
    "cluster-require-full-coverage": "yes",
}


class Cluster:
    """Three primaries, no replicas; `client()` is a RedisCluster bootstrapped from node 0."""

    def __init__(
        self, executable: str, primaries: int = 3, *, node_timeout_ms: int = 5_000
    ) -> None:
        self.config = {**_CONFIG, "cluster-node-timeout": str(node_timeout_ms)}
        self.executable = executable
        self.nodes = [
            EmbeddedRedis(executable=executable, config=self.config) for _ in range(primaries)
        ]
        self.primaries = primaries

    def start(self) -> Cluster:
        for node in self.nodes:
            node.start()
        clients = [node.client() for node in self.nodes]
        share = SLOTS // len(self.nodes)
        for index, client in enumerate(clients):
            first = index * share
            last = SLOTS - 1 if index == len(self.nodes) - 1 else first + share - 1
            client.execute_command("CLUSTER ADDSLOTSRANGE", first, last)
        for node in self.nodes[1:]:
            clients[0].execute_command("CLUSTER MEET", node.host, node.port)
        self._wait_ok(clients)
        return self

    def add_replica(self, of: int) -> int:
        """Start a node that replicates primary `of`; returns its index once it is in sync."""
        replica = EmbeddedRedis(executable=self.executable, config=self.config).start()
        self.nodes.append(replica)
        client = replica.client()
        client.execute_command("CLUSTER MEET", self.nodes[0].host, self.nodes[0].port)
        primary_id = self.node_client(of).execute_command("CLUSTER MYID")
        deadline = time.monotonic() + 30
        while True:  # the replica must have learnt of the primary through the meeting
            try:
                client.execute_command("CLUSTER REPLICATE", primary_id)
                break
            except redis.ResponseError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        while client.info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise AssertionError("the replica did not sync")
            time.sleep(0.1)
        self._wait_ok([node.client() for node in self.nodes])
        return len(self.nodes) - 1

    def kill(self, index: int) -> None:
        """SIGKILL a node, as a crash would."""
        process = self.nodes[index]._process
        assert process is not None
        process.kill()
        process.wait()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def client(self, **kwargs: Any) -> RedisCluster:
        return RedisCluster(host=self.nodes[0].host, port=self.nodes[0].port, **kwargs)

    def node_client(self, index: int) -> redis.Redis:
        return self.nodes[index].client()

    def flush(self) -> None:
        for node in self.nodes:
            node.client().flushall()

    def index_of(self, key: str) -> int:
        """Which node owns `key`'s slot now."""
        slot = int(self._live_client().execute_command("CLUSTER KEYSLOT", key))
        for index, node in enumerate(self.nodes):
            if not node.running:
                continue
            for view in node.client().execute_command("CLUSTER NODES").values():
                if "myself" not in view["flags"]:
                    continue
                if any(int(r[0]) <= slot <= int(r[-1]) for r in view["slots"]):
                    return index
        raise AssertionError(f"no node owns slot {slot}")

    def _live_client(self) -> redis.Redis:
        return next(node.client() for node in self.nodes if node.running)

    def begin_move(self, key: str, target: int) -> tuple[int, int]:
        """Mark `key`'s slot migrating from its owner to `target` and MIGRATE the keys.

        Until `finish_move`, the source answers ASK for the moved keys: the state a client
        meets in the middle of a `redis-cli --cluster reshard`.
        """
        source = self.index_of(key)
        assert source != target, "the key is already on the target node"
        slot = int(self.node_client(0).execute_command("CLUSTER KEYSLOT", key))
        src, dst = self.node_client(source), self.node_client(target)
        src_id, dst_id = src.execute_command("CLUSTER MYID"), dst.execute_command("CLUSTER MYID")
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
        while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
            target_node = self.nodes[target]
            src.execute_command(
                "MIGRATE", target_node.host, target_node.port, "", 0, 10_000, "KEYS", *keys
            )
        return slot, target

    def finish_move(self, slot: int, target: int) -> None:
        """Assign `slot` to `target` on every node (the end of a reshard step)."""
        target_id = self.node_client(target).execute_command("CLUSTER MYID")
        for index in [target] + [i for i in range(len(self.nodes)) if i != target]:
            self.node_client(index).execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
        self._wait_ok([node.client() for node in self.nodes])

    def move(self, key: str, target: int) -> None:
        self.finish_move(*self.begin_move(key, target))

    def wait_for_primary(self, index: int, timeout: float = 30.0) -> None:
        """Wait until node `index` is a primary that every live node sees as one."""
        deadline = time.monotonic() + timeout
        while self.node_client(index).info("replication").get("role") != "master":
            if time.monotonic() > deadline:
                raise AssertionError(f"node {index} was not promoted in {timeout} s")
            time.sleep(0.1)

    def _wait_ok(self, clients: list[redis.Redis], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        states: list[dict[str, str]] = []
        while time.monotonic() < deadline:
            states = [client.execute_command("CLUSTER INFO") for client in clients]
            if all(
                state["cluster_state"] == "ok" and int(state["cluster_known_nodes"]) == len(clients)
                for state in states
            ):
                views = {
                    repr(
                        sorted(
                            (s[0], s[1], s[2][1]) for s in client.execute_command("CLUSTER SLOTS")
                        )
                    )
                    for client in clients
                }
                if len(views) == 1:
                    return
            time.sleep(0.1)
        raise AssertionError(f"cluster not ready after {timeout} s: {states}")


def _slots(client: redis.Redis) -> list[Any]:
    slots: list[Any] = client.execute_command("CLUSTER SLOTS")
    return slots
