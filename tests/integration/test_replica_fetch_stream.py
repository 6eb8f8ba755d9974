"""Followers replicate over ReplicaFetch streams, and link faults cut those streams.

In-process (no Ray): 3 ControllerServers + 3 BrokerServers, each broker with its own named
FaultTable. With replica.fetch.stream.enable (the default) the follower fetchers keep one
stream open per leader, so a fault set after the stream opened must still stop replication:
a follower cut off on its own side (outgoing drop), then on the leader's side (incoming
drop), falls behind and leaves the ISR, and after heal() catches up and rejoins. Waits are
deadline polls; everything is torn down in finally.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cluster.broker_runtime import BrokerServer
from proto import admin_pb2, common_pb2
from proto.errors import ErrorCode
from proto.fault_transport import FaultTable, LinkFault
from tests.integration.test_broker_grpc import (
    BOUND_S,
    TOPIC,
    Cluster,
    batch,
    produce,
    wait_until,
)


class NamedFaultsCluster(Cluster):
    """The data-plane test cluster, with one `broker-<id>` fault table per broker."""

    def __init__(self, root: Path, *, stream: bool) -> None:
        super().__init__(root)
        self.config = type(self.config).resolve(
            {**self.config.to_dict(), "replica.fetch.stream.enable": stream})
        self.faults: dict[int, FaultTable] = {}

    async def start_broker(self, broker_id: int) -> None:
        table = self.faults.setdefault(broker_id, FaultTable(f"broker-{broker_id}"))
        server = BrokerServer(broker_id, str(self.root / "data"), controllers=self.voters,
                              port=self.ports.get(broker_id, 0), config=self.config,
                              cluster_id="data-test", faults=table)
        address = await server.bind()
        self.ports[broker_id] = int(address.rsplit(":", 1)[1])
        self.brokers[broker_id] = server
        await server.start()


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "unary"])
def test_link_faults_cut_and_heal_replication(tmp_path: Path, stream: bool) -> None:
    asyncio.run(_scenario(tmp_path, stream))


async def _scenario(tmp_path: Path, stream: bool) -> None:
    cluster = NamedFaultsCluster(tmp_path, stream=stream)
    try:
        await cluster.start_controllers()
        for b in (1, 2, 3):
            await cluster.start_broker(b)
        for b in (1, 2, 3):
            metadata = cluster.brokers[b].metadata
            assert metadata is not None
            await metadata.wait_unfenced(BOUND_S)
        request = admin_pb2.CreateTopicsRequest(timeout_ms=5000, topics=[
            admin_pb2.CreateTopicsRequest.CreatableTopic(
                name=TOPIC, num_partitions=1, replication_factor=3,
                configs=[common_pb2.ConfigEntry(name="min.insync.replicas", value="2")])])
        created = await cluster.stub(1).CreateTopics(request, timeout=10)
        assert [t.error_code for t in created.topics] == [ErrorCode.NONE], created
        await wait_until(lambda: cluster.leader() > 0 and all(
            cluster.partition(b) is not None for b in (1, 2, 3)),
            timeout_s=BOUND_S, what="leader and followers")
        leader = cluster.leader()
        cut, other = [b for b in (1, 2, 3) if b != leader]

        def leo(b: int) -> int:
            return int(cluster.partition(b).log.log_end_offset)

        def isr() -> tuple[int, ...]:
            return tuple(cluster.partition(leader).replica.isr)

        r = await produce(cluster, leader, batch([b"a", b"b"]))
        assert r.error_code == ErrorCode.NONE, r
        await wait_until(lambda: leo(cut) == leo(other) == 2, timeout_s=BOUND_S,
                         what="both followers replicate (streams open)")

        sides = [
            ("follower's outgoing drop",
             lambda: cluster.faults[cut].set_outgoing(f"broker-{leader}", LinkFault(drop=True)),
             cluster.faults[cut]),
            ("leader's incoming drop",
             lambda: cluster.faults[leader].set_incoming(f"broker-{cut}", LinkFault(drop=True)),
             cluster.faults[leader]),
        ]
        for what, apply_fault, table in sides:
            apply_fault()
            before = leo(cut)
            for _ in range(3):
                r = await produce(cluster, leader, batch([b"x"]))  # acks=all: leader + other
                assert r.error_code == ErrorCode.NONE, (what, r)
            target = leo(leader)
            await wait_until(lambda: leo(other) == target, timeout_s=BOUND_S,
                             what=f"{what}: the other follower keeps replicating")
            await wait_until(lambda: cut not in isr(), timeout_s=BOUND_S,
                             what=f"{what}: the cut follower leaves the ISR")
            # A stream looks the fault up per message, so nothing crosses once it is set; a
            # unary long poll already in flight when the fault came may still deliver.
            assert leo(cut) == before if stream else leo(cut) < target, \
                f"{what}: records crossed a cut link ({before} -> {leo(cut)})"
            table.heal()
            await wait_until(lambda: leo(cut) == target and cut in isr(), timeout_s=BOUND_S,
                             what=f"{what}: after heal the follower catches up and rejoins")
    finally:
        await cluster.stop()
