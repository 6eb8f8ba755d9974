"""Producer against real in-process brokers: 3 ControllerServers + 3 BrokerServers on one
asyncio loop in a background thread (no Ray), over real gRPC on 127.0.0.1.

Every acknowledged record is checked by reading the partition back with raw Broker.Fetch.
The servers are torn down in `finally`, also on failure.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from clients import Producer
from clients.errors import RecordTooLargeError
from clients.partitioner import partition_for_key
from cluster.broker_runtime import BrokerServer
from controller.server import ControllerServer
from proto import admin_pb2, broker_pb2, broker_pb2_grpc
from proto.channel_options import GRPC_OPTIONS
from proto.errors import ErrorCode
from proto.fault_transport import FaultTable
from proto.records import iter_batches

T = TypeVar("T")
BOUND_S = 20.0  # generous: the machine is shared


class Cluster:
    """3 controllers + 3 brokers on a background loop."""

    def __init__(self, root: Path, brokers: int = 3) -> None:
        self.root = root
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.controllers: dict[int, ControllerServer] = {}
        self.voters: dict[int, str] = {}
        self.brokers: dict[int, BrokerServer] = {}
        self.addresses: dict[int, str] = {}
        self.broker_ids = list(range(1, brokers + 1))

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = BOUND_S * 2) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        for i in (1, 2, 3):
            self.controllers[i] = ControllerServer(
                i, str(self.root / f"controller-{i}"), seed=i, faults=FaultTable(),
                cluster_id="producer-test",
            )
            self.voters[i] = await self.controllers[i].bind()
        for i in (1, 2, 3):
            await self.controllers[i].start(self.voters)
        for b in self.broker_ids:
            self.brokers[b] = BrokerServer(
                b, str(self.root), controllers=self.voters, cluster_id="producer-test",
                faults=FaultTable(),
            )
            self.addresses[b] = await self.brokers[b].bind()
        await asyncio.gather(*(self.brokers[b].start() for b in self.broker_ids))

    def start(self) -> None:
        self.run(self._start())

    def stop_broker(self, broker_id: int, *, controlled: bool = False) -> None:
        self.run(self.brokers.pop(broker_id).stop(0.2, controlled=controlled))

    async def _stop(self) -> None:
        for b in list(self.brokers):
            try:
                await self.brokers.pop(b).stop(0.1, controlled=False)
            except Exception:  # teardown continues
                pass
        for c in list(self.controllers):
            try:
                await self.controllers.pop(c).stop(grace_s=0.1)
            except Exception:  # teardown continues
                pass

    def close(self) -> None:
        try:
            self.run(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)

    @property
    def bootstrap(self) -> str:
        return ",".join(self.addresses[b] for b in sorted(self.brokers))

    # -- raw gRPC helpers -------------------------------------------------------------------

    async def _call(self, address: str, method: str, request: Any) -> Any:
        async with grpc.aio.insecure_channel(address, options=GRPC_OPTIONS) as channel:
            stub = broker_pb2_grpc.BrokerStub(channel)
            return await getattr(stub, method)(request, timeout=10)

    def call(self, method: str, request: Any, broker: int | None = None) -> Any:
        target = broker if broker is not None else sorted(self.brokers)[0]
        return self.run(self._call(self.addresses[target], method, request))

    def create_topic(self, name: str, partitions: int, rf: int = 3) -> None:
        request = admin_pb2.CreateTopicsRequest(
            topics=[admin_pb2.CreateTopicsRequest.CreatableTopic(
                name=name, num_partitions=partitions, replication_factor=rf)],
            timeout_ms=10_000,
        )
        deadline = time.monotonic() + BOUND_S
        while True:
            try:
                response = self.call("CreateTopics", request)
                code = response.topics[0].error_code if response.topics else 0
                if code in (ErrorCode.NONE, ErrorCode.TOPIC_ALREADY_EXISTS):
                    break
            except grpc.aio.AioRpcError:
                pass
            assert time.monotonic() < deadline, f"could not create {name}"
            time.sleep(0.2)
        self.wait_leaders(name, partitions)

    def leaders(self, topic: str) -> dict[int, int]:
        response = self.call("Metadata", broker_pb2.MetadataRequest(
            topics=[broker_pb2.MetadataRequest.MetadataRequestTopic(name=topic)]))
        return {
            p.partition_index: p.leader_id
            for t in response.topics for p in t.partitions if t.name == topic
        }

    def wait_leaders(self, topic: str, partitions: int) -> None:
        deadline = time.monotonic() + BOUND_S
        while True:
            leaders = self.leaders(topic)
            if len(leaders) == partitions and all(
                l in self.brokers for l in leaders.values()
            ):
                return
            assert time.monotonic() < deadline, f"no leaders for {topic}: {leaders}"
            time.sleep(0.1)

    def read_all(self, topic: str, partition: int) -> list[tuple[int, bytes | None]]:
        """(offset, value) of every record up to the high watermark, via raw Fetch."""
        out: list[tuple[int, bytes | None]] = []
        offset = 0
        deadline = time.monotonic() + BOUND_S
        while time.monotonic() < deadline:
            leader = self.leaders(topic).get(partition, -1)
            if leader not in self.brokers:
                time.sleep(0.1)
                continue
            request = broker_pb2.FetchRequest(
                max_wait_ms=0, min_bytes=1, max_bytes=8 << 20,
                topics=[broker_pb2.FetchRequest.FetchTopic(name=topic, partitions=[
                    broker_pb2.FetchRequest.FetchPartition(
                        partition_index=partition, fetch_offset=offset,
                        partition_max_bytes=8 << 20)])],
            )
            response = self.call("Fetch", request, broker=leader)
            part = response.topics[0].partitions[0]
            if part.error_code != ErrorCode.NONE:
                time.sleep(0.1)
                continue
            got = False
            for batch in iter_batches(part.records):
                for record in batch:
                    if record.offset >= offset:
                        out.append((record.offset, record.value))
                        got = True
                offset = batch.next_offset
            if not got and offset >= part.high_watermark:
                return out
        raise AssertionError(f"could not read {topic}-{partition}")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        c.start()
        yield c
    finally:
        c.close()


def test_acks_all_idempotent_offsets_increase_and_are_readable(cluster: Cluster) -> None:
    cluster.create_topic("orders", 3)
    with Producer(bootstrap_servers=cluster.bootstrap, acks="all",
                  enable_idempotence=True, linger_ms=5) as producer:
        futures = [producer.send("orders", b"v%d" % i) for i in range(1000)]
        producer.flush(BOUND_S)
        results = [f.result(0) for f in futures]
    per_partition: dict[int, list[int]] = defaultdict(list)
    for meta in results:
        per_partition[meta.partition].append(meta.offset)
    for partition, offsets in per_partition.items():
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
        stored = cluster.read_all("orders", partition)
        assert [o for o, _ in stored] == offsets
    assert sum(len(v) for v in per_partition.values()) == 1000


def test_keys_and_explicit_partitions(cluster: Cluster) -> None:
    cluster.create_topic("keyed", 3)
    with Producer(bootstrap_servers=cluster.bootstrap, key_serializer=str.encode) as producer:
        for key in ("21", "foobar", "a-little-bit-long-string", "abc"):
            meta = producer.send_and_wait("keyed", b"x", key, timeout=BOUND_S)
            assert meta.partition == partition_for_key(key.encode(), 3)
        assert producer.send_and_wait("keyed", b"y", partition=2, timeout=BOUND_S).partition == 2
        assert producer.partitions_for("keyed") == {0, 1, 2}


def test_record_too_large_fails_fast(cluster: Cluster) -> None:
    cluster.create_topic("big", 1)
    with Producer(bootstrap_servers=cluster.bootstrap, max_request_size=2000) as producer:
        with pytest.raises(RecordTooLargeError):
            producer.send("big", b"x" * 5000)


def test_leader_stop_retries_to_new_leader_and_no_acked_record_is_lost(cluster: Cluster) -> None:
    cluster.create_topic("failover", 1)
    acked: list[tuple[int, bytes]] = []
    with Producer(bootstrap_servers=cluster.bootstrap, linger_ms=2,
                  retry_backoff_ms=50, request_timeout_ms=5000) as producer:
        for i in range(200):
            acked.append((producer.send_and_wait("failover", b"a%d" % i,
                                                 timeout=BOUND_S).offset, b"a%d" % i))
        leader = cluster.leaders("failover")[0]
        futures = [producer.send("failover", b"b%d" % i) for i in range(200)]
        cluster.stop_broker(leader)
        futures += [producer.send("failover", b"c%d" % i) for i in range(200)]
        values = [b"b%d" % i for i in range(200)] + [b"c%d" % i for i in range(200)]
        for future, value in zip(futures, values):
            acked.append((future.result(BOUND_S * 2).offset, value))
    cluster.wait_leaders("failover", 1)
    stored = dict(cluster.read_all("failover", 0))
    for offset, value in acked:
        assert stored.get(offset) == value, (offset, value)
    assert len(stored) == len(acked)  # idempotent: no duplicates
