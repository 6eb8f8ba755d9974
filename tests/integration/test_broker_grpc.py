"""Brokers end to end over gRPC, in-process (no Ray): 3 ControllerServers + 3 BrokerServers.

One scenario, in order: CreateTopics RF=3 through a broker; acks=all produce to the leader;
consumer fetch returns the batches byte-identical except offset/epoch stamping; followers reach
the leader's end offset; idempotent duplicate stored once; bad CRC → CORRUPT_MESSAGE and the
broker keeps serving; two followers stopped → ISR shrinks → acks=all NOT_ENOUGH_REPLICAS while
acks=1 works; followers restarted with the same data dir catch up and rejoin the ISR; leader
stopped → a new leader is elected, produce works, no acked record is lost; the old leader
restarts, catches up and rejoins. Waits are deadline polls; everything is torn down in finally.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from cluster.broker_runtime import BrokerServer
from controller.control import ControllerConfig
from controller.server import ControllerServer
from proto import admin_pb2, broker_pb2, broker_pb2_grpc, common_pb2
from proto.broker_config import BrokerConfig
from proto.channel_options import GRPC_OPTIONS
from proto.errors import ErrorCode
from proto.fault_transport import FaultTable
from proto.records import RecordBatch, RecordBatchBuilder, iter_batches

HEARTBEAT_MS = 200
SESSION_MS = 1500
BOUND_S = 15.0
TOPIC = "orders"


async def wait_until(cond: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not true after {timeout_s}s")
        await asyncio.sleep(0.05)


def batch(values: list[bytes], *, producer_id: int = -1, base_sequence: int = -1) -> bytes:
    builder = RecordBatchBuilder(producer_id=producer_id, producer_epoch=0 if producer_id >= 0
                                 else -1, base_sequence=base_sequence, now_ms=1_700_000_000_000)
    for v in values:
        builder.append(v, key=b"k")
    return builder.build()


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.controllers: dict[int, ControllerServer] = {}
        self.voters: dict[int, str] = {}
        self.brokers: dict[int, BrokerServer] = {}
        self.ports: dict[int, int] = {}
        self.config = BrokerConfig.resolve(
            broker_heartbeat_interval_ms=HEARTBEAT_MS, broker_session_timeout_ms=SESSION_MS,
            replica_lag_time_max_ms=1500, replica_fetch_wait_max_ms=200,
            replica_fetch_backoff_ms=100, request_timeout_ms=8000,
        )
        self.channels: dict[str, grpc.aio.Channel] = {}

    async def start_controllers(self) -> None:
        config = ControllerConfig(broker_heartbeat_interval_ms=HEARTBEAT_MS,
                                  broker_session_timeout_ms=SESSION_MS)
        for i in (1, 2, 3):
            self.controllers[i] = ControllerServer(
                i, str(self.root / f"controller-{i}"), config=config,
                election_timeout_ms=300, heartbeat_interval_ms=50, seed=i,
                faults=FaultTable(), cluster_id="data-test")
            self.voters[i] = await self.controllers[i].bind()
        for i in (1, 2, 3):
            await self.controllers[i].start(self.voters)

    async def start_broker(self, broker_id: int) -> None:
        server = BrokerServer(broker_id, str(self.root / "data"), controllers=self.voters,
                              port=self.ports.get(broker_id, 0), config=self.config,
                              cluster_id="data-test", faults=FaultTable())
        address = await server.bind()
        self.ports[broker_id] = int(address.rsplit(":", 1)[1])
        self.brokers[broker_id] = server
        await server.start()

    async def stop_broker(self, broker_id: int, *, controlled: bool = False) -> None:
        server = self.brokers.pop(broker_id)
        await server.stop(0.1, controlled=controlled)

    def stub(self, broker_id: int) -> broker_pb2_grpc.BrokerStub:
        address = f"127.0.0.1:{self.ports[broker_id]}"
        if address not in self.channels:
            self.channels[address] = grpc.aio.insecure_channel(address, options=GRPC_OPTIONS)
        return broker_pb2_grpc.BrokerStub(self.channels[address])

    def partition(self, broker_id: int):  # type: ignore[no-untyped-def]
        runtime = self.brokers[broker_id].replicas
        assert runtime is not None
        return runtime.manager.get(TOPIC, 0)

    def leader(self) -> int:
        for b, server in self.brokers.items():
            part = self.partition(b)
            if part is not None and part.replica.is_leader:
                return b
        return -1

    async def stop(self) -> None:
        for channel in self.channels.values():
            await channel.close()
        for b in list(self.brokers):
            await self.stop_broker(b)
        for server in self.controllers.values():
            await server.stop(grace_s=0.1)


async def produce(cluster: Cluster, broker_id: int, records: bytes, acks: int = -1
                  ) -> broker_pb2.ProduceResponse.PartitionProduceResponse:
    request = broker_pb2.ProduceRequest(acks=acks, timeout_ms=5000)
    request.topics.add(name=TOPIC).partitions.add(partition_index=0, records=records)
    response = await cluster.stub(broker_id).Produce(request, timeout=10)
    return response.topics[0].partitions[0]


async def fetch(cluster: Cluster, broker_id: int, offset: int
                ) -> broker_pb2.FetchResponse.PartitionData:
    request = broker_pb2.FetchRequest(max_wait_ms=0, min_bytes=1, max_bytes=1 << 20)
    request.topics.add(name=TOPIC).partitions.add(partition_index=0, fetch_offset=offset,
                                                  partition_max_bytes=1 << 20)
    response = await cluster.stub(broker_id).Fetch(request, timeout=10)
    return response.topics[0].partitions[0]


async def read_all(cluster: Cluster, broker_id: int) -> list[RecordBatch]:
    out: list[RecordBatch] = []
    offset = 0
    while True:
        data = await fetch(cluster, broker_id, offset)
        assert data.error_code == ErrorCode.NONE, data
        if not data.records:
            return out
        for b in iter_batches(bytes(data.records)):
            out.append(b)
            offset = b.next_offset


def test_broker_data_plane(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path))


async def _scenario(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
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
            timeout_s=BOUND_S, what="leader and followers of orders-0")
        leader = cluster.leader()
        followers = [b for b in (1, 2, 3) if b != leader]
        meta = await cluster.stub(followers[0]).Metadata(
            broker_pb2.MetadataRequest(topics=[{"name": TOPIC}]), timeout=10)
        assert meta.topics[0].partitions[0].leader_id == leader

        # acks=all to the leader: offsets in order.
        sent = [batch([b"a", b"b"]), batch([b"c"]), batch([b"d", b"e", b"f"])]
        offsets = []
        for records in sent:
            r = await produce(cluster, leader, records)
            assert r.error_code == ErrorCode.NONE, r
            offsets.append(r.base_offset)
        assert offsets == [0, 2, 3]
        # Not the leader: NOT_LEADER_OR_FOLLOWER with a hint.
        r = await produce(cluster, followers[0], batch([b"x"]))
        assert r.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
        assert r.current_leader.leader_id == leader

        # Consumer fetch: byte-identical except baseOffset and partitionLeaderEpoch.
        got = await read_all(cluster, leader)
        assert len(got) == 3
        for original, stored in zip(sent, got):
            raw = stored.to_bytes()
            assert raw[8:12] == original[8:12] and raw[16:] == original[16:]
        await wait_until(lambda: all(
            cluster.partition(b).log.log_end_offset == 6 for b in followers),
            timeout_s=BOUND_S, what="followers reach LEO 6")

        # ListOffsets: earliest / latest (the HW, once followers have everything).
        await wait_until(lambda: cluster.partition(leader).replica.high_watermark == 6,
                         timeout_s=BOUND_S, what="HW 6")
        lo = broker_pb2.ListOffsetsRequest()
        lo.topics.add(name=TOPIC).partitions.add(partition_index=0, timestamp=-2)
        lo.topics[0].partitions.add(partition_index=0, timestamp=-1)
        listed = await cluster.stub(leader).ListOffsets(lo, timeout=10)
        assert [p.offset for p in listed.topics[0].partitions] == [0, 6], listed

        # A consumer long poll (min_bytes) is woken by a produce, before max_wait_ms.
        poll = broker_pb2.FetchRequest(max_wait_ms=8000, min_bytes=1, max_bytes=1 << 20)
        poll.topics.add(name=TOPIC).partitions.add(partition_index=0, fetch_offset=6,
                                                   partition_max_bytes=1 << 20)
        started = time.monotonic()
        pending = asyncio.ensure_future(cluster.stub(leader).Fetch(poll, timeout=10))
        await asyncio.sleep(0.1)  # let the fetch park (not a sync: the result is checked)
        fire = broker_pb2.ProduceRequest(acks=0, timeout_ms=5000)
        fire.topics.add(name=TOPIC).partitions.add(partition_index=0, records=batch([b"woke"]))
        assert not (await cluster.stub(leader).Produce(fire, timeout=10)).topics  # acks=0
        polled = (await pending).topics[0].partitions[0]
        assert [b.base_offset for b in iter_batches(bytes(polled.records))] == [6]
        assert time.monotonic() - started < 8.0, "woken by the HW move, not the timeout"

        # Idempotence: a retried batch is stored once, with its original offset.
        pid = (await cluster.stub(leader).InitProducerId(
            broker_pb2.InitProducerIdRequest(), timeout=10)).producer_id
        idem = batch([b"i1", b"i2"], producer_id=pid, base_sequence=0)
        first = await produce(cluster, leader, idem)
        again = await produce(cluster, leader, idem)
        assert first.error_code == again.error_code == ErrorCode.NONE, (first, again)
        assert first.base_offset == again.base_offset == 7
        assert cluster.partition(leader).log.log_end_offset == 9

        # Bad CRC: CORRUPT_MESSAGE, nothing stored, the broker keeps serving.
        bad = bytearray(batch([b"corrupt me"]))
        bad[-1] ^= 0xFF
        r = await produce(cluster, leader, bytes(bad))
        assert r.error_code == ErrorCode.CORRUPT_MESSAGE, r
        r = await produce(cluster, leader, b"\x00" * 10)
        assert r.error_code == ErrorCode.CORRUPT_MESSAGE, r
        r = await produce(cluster, leader, batch([b"ok"]))
        assert r.error_code == ErrorCode.NONE and r.base_offset == 9

        # Two followers down: the ISR shrinks, acks=all refused, acks=1 accepted.
        for b in followers:
            await cluster.stop_broker(b)
        await wait_until(lambda: cluster.partition(leader).replica.isr == (leader,),
                         timeout_s=BOUND_S, what="ISR shrinks to the leader")
        r = await produce(cluster, leader, batch([b"refused"]))
        assert r.error_code == ErrorCode.NOT_ENOUGH_REPLICAS, r
        r = await produce(cluster, leader, batch([b"acks1"]), acks=1)
        assert r.error_code == ErrorCode.NONE and r.base_offset == 10, r

        # Restart them with the same data dirs: they catch up and rejoin the ISR.
        for b in followers:
            await cluster.start_broker(b)
        await wait_until(lambda: sorted(cluster.partition(leader).replica.isr) == [1, 2, 3],
                         timeout_s=BOUND_S, what="followers rejoin the ISR")
        await wait_until(lambda: all(cluster.partition(b) is not None and
                                     cluster.partition(b).log.log_end_offset == 11
                                     for b in followers),
                         timeout_s=BOUND_S, what="followers catch up")

        # Leader down (controlled shutdown moves leadership first): a new leader; produce
        # works; nothing acked is lost.
        await cluster.stop_broker(leader, controlled=True)
        await wait_until(lambda: cluster.leader() in followers, timeout_s=BOUND_S,
                         what="a new leader")
        new_leader = cluster.leader()
        r = await produce(cluster, new_leader, batch([b"after failover"]))
        assert r.error_code == ErrorCode.NONE and r.base_offset == 11, r
        values = [rec.value for b in await read_all(cluster, new_leader) for rec in b]
        assert values == [b"a", b"b", b"c", b"d", b"e", b"f", b"woke", b"i1", b"i2", b"ok",
                          b"acks1", b"after failover"]

        # The old leader restarts: it catches up and rejoins the ISR.
        await cluster.start_broker(leader)
        await wait_until(lambda: sorted(cluster.partition(new_leader).replica.isr) == [1, 2, 3],
                         timeout_s=BOUND_S, what="old leader rejoins the ISR")
        await wait_until(lambda: cluster.partition(leader).log.log_end_offset == 12,
                         timeout_s=BOUND_S, what="old leader catches up")

        # DeleteRecords on the new leader moves the log start; followers learn it.
        dr = broker_pb2.DeleteRecordsRequest(timeout_ms=5000)
        dr.topics.add(name=TOPIC).partitions.add(partition_index=0, offset=2)
        deleted = await cluster.stub(new_leader).DeleteRecords(dr, timeout=10)
        assert deleted.topics[0].partitions[0].low_watermark == 2, deleted
        # The answer waited for the live followers (Kafka's DelayedDeleteRecords).
        assert all(cluster.partition(b).log.log_start_offset == 2 for b in (1, 2, 3))
        await produce(cluster, new_leader, batch([b"last"]))
        await wait_until(lambda: all(cluster.partition(b).log.log_start_offset == 2
                                     for b in (1, 2, 3)),
                         timeout_s=BOUND_S, what="followers learn the log start")
    finally:
        await cluster.stop()
