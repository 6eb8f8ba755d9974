"""Replication end to end with real actors: LocalCluster (3 controllers + 3 brokers on Ray).

Each test starts its own cluster (about 4 s) with fast failure detection (heartbeat 200 ms,
session 1.5 s, replica.lag.time.max.ms 2 s unless a test needs it longer) and checks what a
user relies on: no acked record lost or duplicated across a leader kill; min.insync.replicas
refuses acks=all writes that could not be durable; the ISR shrinks and grows; divergent and
corrupt log suffixes are truncated and refilled so replicas end byte-identical up to the HW;
an idempotent retry is stored once. Waits are deadline polls (`cluster.wait_for`); the
`local_cluster` fixture tears every cluster down, also on failure.

Clients: Producer/Consumer/Admin where they fit; raw gRPC (BrokerStub) to get exact error
codes, to produce to one chosen broker, and to send the same idempotent batch twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from clients import Admin, Consumer, NewTopic, Producer, TopicPartition
from clients.types import PartitionInfo
from cluster.launcher import LocalCluster
from proto import broker_pb2, broker_pb2_grpc
from proto.channel_options import GRPC_OPTIONS
from proto.errors import CorruptMessageError, ErrorCode
from proto.records import RecordBatch, RecordBatchBuilder, iter_batches

FAST = {
    "broker.heartbeat.interval.ms": 200,
    "broker.session.timeout.ms": 1500,
    "replica.lag.time.max.ms": 2000,
    "replica.fetch.wait.max.ms": 200,
    "replica.fetch.backoff.ms": 100,
    "request.timeout.ms": 8000,
}
BOUND_S = 20.0
LATEST, EARLIEST = -1, -2


# ---- helpers ------------------------------------------------------------------------------


@pytest.fixture
def cluster3(local_cluster: Callable[..., LocalCluster]) -> Callable[..., LocalCluster]:
    def make(**broker_config: Any) -> LocalCluster:
        return local_cluster(brokers=3, controllers=3, broker_config={**FAST, **broker_config},
                             log_level="WARNING")
    return make


@pytest.fixture
def stubs() -> Iterator[Callable[[str], broker_pb2_grpc.BrokerStub]]:
    channels: dict[str, grpc.Channel] = {}

    def stub(address: str) -> broker_pb2_grpc.BrokerStub:
        if address not in channels:
            channels[address] = grpc.insecure_channel(address, options=GRPC_OPTIONS)
        return broker_pb2_grpc.BrokerStub(channels[address])

    yield stub
    for channel in channels.values():
        channel.close()


def create_topic(cluster: LocalCluster, topic: str, *, partitions: int = 1,
                 config: dict[str, str] | None = None) -> None:
    with Admin(bootstrap_servers=cluster.bootstrap_servers) as admin:
        admin.create_topics([NewTopic(topic, partitions, 3, config=config or {})])
    cluster.wait_for(lambda: all((p.leader or -1) >= 1 and len(p.isr) == 3
                                 for p in describe(cluster, topic)),
                     BOUND_S, what=f"{topic}: leaders elected, full ISR")


def describe(cluster: LocalCluster, topic: str) -> list[PartitionInfo]:
    with Admin(bootstrap_servers=cluster.bootstrap_servers, request_timeout_ms=3000,
               default_api_timeout_ms=5000) as admin:
        return list(admin.describe_topics([topic])[topic].partitions)


def partition_info(cluster: LocalCluster, topic: str, partition: int = 0) -> PartitionInfo:
    return describe(cluster, topic)[partition]


def leader_of(cluster: LocalCluster, topic: str, partition: int = 0) -> int:
    leader = partition_info(cluster, topic, partition).leader
    assert leader is not None and leader >= 1, f"{topic}-{partition} has no leader"
    return leader


def batch(values: list[bytes], *, producer_id: int = -1, base_sequence: int = -1) -> bytes:
    builder = RecordBatchBuilder(producer_id=producer_id,
                                 producer_epoch=0 if producer_id >= 0 else -1,
                                 base_sequence=base_sequence, now_ms=1_700_000_000_000)
    for v in values:
        builder.append(v, key=b"k")
    return builder.build()


def raw_produce(stub: broker_pb2_grpc.BrokerStub, topic: str, records: bytes, *, acks: int = -1,
                partition: int = 0) -> Any:
    request = broker_pb2.ProduceRequest(acks=acks, timeout_ms=3000)
    request.topics.add(name=topic).partitions.add(partition_index=partition, records=records)
    return stub.Produce(request, timeout=10).topics[0].partitions[0]


def list_offset(stub: broker_pb2_grpc.BrokerStub, topic: str, timestamp: int = LATEST,
                partition: int = 0) -> int:
    request = broker_pb2.ListOffsetsRequest()
    request.topics.add(name=topic).partitions.add(partition_index=partition, timestamp=timestamp)
    answer = stub.ListOffsets(request, timeout=10).topics[0].partitions[0]
    assert answer.error_code == ErrorCode.NONE, answer
    return int(answer.offset)


def fetch_all(stub: broker_pb2_grpc.BrokerStub, topic: str, partition: int = 0
              ) -> list[RecordBatch]:
    out: list[RecordBatch] = []
    offset = 0
    while True:
        request = broker_pb2.FetchRequest(max_wait_ms=0, min_bytes=1, max_bytes=1 << 20)
        request.topics.add(name=topic).partitions.add(partition_index=partition,
                                                      fetch_offset=offset,
                                                      partition_max_bytes=1 << 20)
        data = stub.Fetch(request, timeout=10).topics[0].partitions[0]
        assert data.error_code == ErrorCode.NONE, data
        if not data.records:
            return out
        for b in iter_batches(bytes(data.records)):
            out.append(b)
            offset = b.next_offset


def disk_batches(cluster: LocalCluster, broker_id: int, topic: str, partition: int = 0
                 ) -> list[bytes]:
    """Every complete, valid batch in the replica's segment files, in offset order."""
    pdir = cluster.broker_data_dir(broker_id) / f"{topic}-{partition}"
    out: list[bytes] = []
    for segment in sorted(pdir.glob("*.log")):
        data = segment.read_bytes()
        try:
            for b in iter_batches(data):
                out.append(b.to_bytes())
        except CorruptMessageError:
            pass  # a torn or corrupt tail: what recovery truncates
    return out


def up_to(batches: list[bytes], offset: int) -> list[bytes]:
    return [b for b in batches if RecordBatch(b).next_offset <= offset]


def consume_all(cluster: LocalCluster, topic: str, partitions: int, expected: int,
                timeout_s: float = BOUND_S) -> list[Any]:
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    got: list[Any] = []
    with Consumer(bootstrap_servers=cluster.bootstrap_servers) as consumer:
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        while len(got) < expected and time.monotonic() < deadline:
            got.extend(consumer.poll(0.5))
        got.extend(consumer.poll(0.3))  # anything beyond `expected` (duplicates) shows up too
    return got


# ---- tests --------------------------------------------------------------------------------


def test_leader_kill_mid_stream_loses_no_acked_record(cluster3: Callable[..., LocalCluster]
                                                      ) -> None:
    cluster = cluster3()
    topic = "orders"
    create_topic(cluster, topic, config={"min.insync.replicas": "2"})
    leader = leader_of(cluster, topic)
    total = 3000
    futures = []
    with Producer(bootstrap_servers=cluster.bootstrap_servers, acks="all",
                  enable_idempotence=True, linger_ms=2, request_timeout_ms=5000,
                  delivery_timeout_ms=30_000) as producer:
        for i in range(total):
            futures.append(producer.send(topic, b"v%06d" % i, partition=0))
            if i == total // 3:
                cluster.kill_broker(leader)  # batches are in flight to it right now
        producer.flush(30.0)
    acked: list[int] = []
    failed: list[int] = []
    for i, f in enumerate(futures):
        (failed if f.exception() is not None else acked).append(i)
    assert acked, "nothing acknowledged"
    new_leader = leader_of(cluster, topic)
    assert new_leader not in (leader, -1)
    records = consume_all(cluster, topic, 1, len(acked))
    values = [r.value for r in records]
    assert len(values) == len(set(values)), "duplicates in the log"
    missing = {b"v%06d" % i for i in acked} - set(values)
    assert not missing, f"{len(missing)} acked records lost (failed sends: {len(failed)})"
    offsets = [r.offset for r in records]
    assert offsets == sorted(offsets)
    # Idempotence keeps per-partition order across the failover.
    assert values == sorted(values)


def test_min_insync_refuses_acks_all_but_acks_1_works(
        cluster3: Callable[..., LocalCluster],
        stubs: Callable[[str], broker_pb2_grpc.BrokerStub]) -> None:
    cluster = cluster3()
    topic = "durable"
    create_topic(cluster, topic, config={"min.insync.replicas": "2"})
    leader = leader_of(cluster, topic)
    stub = stubs(cluster.broker_addresses[leader])
    assert raw_produce(stub, topic, batch([b"before"])).error_code == ErrorCode.NONE
    for follower in [b for b in cluster.broker_ids if b != leader]:
        cluster.kill_broker(follower)
    cluster.wait_for(lambda: list(partition_info(cluster, topic).isr) == [leader], BOUND_S,
                     what="ISR shrinks to the leader alone")
    end_before = list_offset(stub, topic)

    answer = raw_produce(stub, topic, batch([b"not durable"]), acks=-1)
    assert answer.error_code == ErrorCode.NOT_ENOUGH_REPLICAS, answer
    # retries=0 shows the broker's error itself; with retries (the default) the producer keeps
    # retrying NOT_ENOUGH_REPLICAS (retriable, as in Kafka) until delivery.timeout.ms expires.
    with Producer(bootstrap_servers=cluster.bootstrap_servers, acks="all", linger_ms=0,
                  enable_idempotence=False, retries=0) as producer:
        with pytest.raises(Exception) as info:
            producer.send(topic, b"refused", partition=0).result(timeout=15)
    error = info.value
    assert getattr(error, "code", None) == ErrorCode.NOT_ENOUGH_REPLICAS, repr(error)
    with Producer(bootstrap_servers=cluster.bootstrap_servers, acks="all", linger_ms=0,
                  request_timeout_ms=1000, delivery_timeout_ms=2500) as producer:
        future = producer.send(topic, b"refused too", partition=0)
        with pytest.raises(Exception):
            future.result(timeout=15)
    assert list_offset(stub, topic) == end_before, "an acks=all write was appended"

    with Producer(bootstrap_servers=cluster.bootstrap_servers, acks=1,
                  enable_idempotence=False) as producer:
        meta = producer.send(topic, b"acks=1 works", partition=0).result(timeout=15)
    assert meta.offset == end_before
    # Appended, but not visible to consumers: with ISR < min.insync.replicas the HW is frozen
    # (Kafka 3.7+, KAFKA-15583) until the ISR grows back.
    last = RecordBatch(disk_batches(cluster, leader, topic)[-1])
    assert [r.value for r in last.records()] == [b"acks=1 works"]
    assert list_offset(stub, topic) == end_before


def test_killed_follower_leaves_isr_and_rejoins_after_restart(
        cluster3: Callable[..., LocalCluster],
        stubs: Callable[[str], broker_pb2_grpc.BrokerStub]) -> None:
    cluster = cluster3()
    topic = "isr"
    create_topic(cluster, topic, config={"min.insync.replicas": "2"})
    leader = leader_of(cluster, topic)
    follower = next(b for b in cluster.broker_ids if b != leader)
    cluster.kill_broker(follower)
    cluster.wait_for(lambda: follower not in partition_info(cluster, topic).isr, BOUND_S,
                     what=f"broker {follower} leaves the ISR")
    with Producer(bootstrap_servers=cluster.bootstrap_servers, acks="all") as producer:
        for i in range(200):
            producer.send(topic, b"while-out-%d" % i, partition=0)
        producer.flush(15.0)
    cluster.restart_broker(follower)
    cluster.wait_for(lambda: sorted(partition_info(cluster, topic).isr) == cluster.broker_ids,
                     BOUND_S, what=f"broker {follower} rejoins the ISR")
    end = list_offset(stubs(cluster.broker_addresses[leader]), topic)
    assert up_to(disk_batches(cluster, follower, topic), end) == \
        up_to(disk_batches(cluster, leader, topic), end)


def test_divergent_old_leader_is_truncated_to_match(
        cluster3: Callable[..., LocalCluster],
        stubs: Callable[[str], broker_pb2_grpc.BrokerStub]) -> None:
    # A long lag time: the cut-off leader must not shrink its ISR (then nobody could take over).
    cluster = cluster3(**{"replica.lag.time.max.ms": 20_000})
    topic = "diverge"
    create_topic(cluster, topic)
    old = leader_of(cluster, topic)
    others = [b for b in cluster.broker_ids if b != old]
    old_stub = stubs(cluster.broker_addresses[old])
    for i in range(5):
        assert raw_produce(old_stub, topic, batch([b"replicated-%d" % i])).error_code == 0
    cluster.wait_for(lambda: all(len(disk_batches(cluster, b, topic)) == 5 for b in others),
                     BOUND_S, what="followers have the 5 replicated batches")

    cluster.isolate_broker_from(old, others)
    for i in range(4):  # acks=1: on the old leader only
        answer = raw_produce(old_stub, topic, batch([b"unreplicated-%d" % i]), acks=1)
        assert answer.error_code == ErrorCode.NONE, answer
    assert len(disk_batches(cluster, old, topic)) == 9
    cluster.kill_broker(old)
    cluster.heal_brokers()
    cluster.wait_for(lambda: partition_info(cluster, topic).leader in others, BOUND_S,
                     what="a follower takes over")
    new = leader_of(cluster, topic)
    new_stub = stubs(cluster.broker_addresses[new])
    for i in range(3):
        assert raw_produce(new_stub, topic, batch([b"new-leader-%d" % i, b"x"])).error_code == 0

    # The truth: what the new leader holds. (A follower fetch already parked on the old leader
    # when the links were cut may have carried the first unreplicated batch over; the rest can't.)
    truth = [r.value for b in fetch_all(new_stub, topic) for r in b.records()]
    assert b"unreplicated-3" not in truth

    cluster.restart_broker(old)
    cluster.wait_for(lambda: sorted(partition_info(cluster, topic).isr) == cluster.broker_ids,
                     BOUND_S, what="old leader back in the ISR")
    hw = list_offset(new_stub, topic)
    assert hw == len(truth)
    cluster.wait_for(lambda: len({tuple(up_to(disk_batches(cluster, b, topic), hw))
                                  for b in cluster.broker_ids}) == 1,
                     BOUND_S, what="replicas byte-identical up to the HW")
    old_values = [r.value for b in disk_batches(cluster, old, topic)
                  for r in RecordBatch(b).records()]
    assert old_values == truth
    assert b"unreplicated-3" not in old_values


def test_retried_idempotent_batch_is_stored_once(
        cluster3: Callable[..., LocalCluster],
        stubs: Callable[[str], broker_pb2_grpc.BrokerStub]) -> None:
    cluster = cluster3()
    topic = "idem"
    create_topic(cluster, topic)
    leader = leader_of(cluster, topic)
    stub = stubs(cluster.broker_addresses[leader])
    pid = stub.InitProducerId(broker_pb2.InitProducerIdRequest(), timeout=10).producer_id
    assert pid >= 0
    first_batch = batch([b"once-a", b"once-b"], producer_id=pid, base_sequence=0)
    first = raw_produce(stub, topic, first_batch)
    retry = raw_produce(stub, topic, first_batch)
    assert first.error_code == retry.error_code == ErrorCode.NONE, (first, retry)
    assert first.base_offset == retry.base_offset == 0
    nxt = raw_produce(stub, topic, batch([b"next"], producer_id=pid, base_sequence=2))
    assert nxt.error_code == ErrorCode.NONE and nxt.base_offset == 2
    gap = raw_produce(stub, topic, batch([b"gap"], producer_id=pid, base_sequence=9))
    assert gap.error_code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, gap
    values = [r.value for b in fetch_all(stub, topic) for r in b.records()]
    assert values == [b"once-a", b"once-b", b"next"]
    cluster.wait_for(lambda: all(len(disk_batches(cluster, b, topic)) == 2
                                 for b in cluster.broker_ids),
                     BOUND_S, what="followers hold the two batches, once each")


def test_corrupt_segment_tail_is_truncated_and_refilled(
        cluster3: Callable[..., LocalCluster],
        stubs: Callable[[str], broker_pb2_grpc.BrokerStub]) -> None:
    cluster = cluster3()
    topic = "recover"
    create_topic(cluster, topic)
    leader = leader_of(cluster, topic)
    stub = stubs(cluster.broker_addresses[leader])
    for i in range(10):
        assert raw_produce(stub, topic, batch([b"r-%d-%d" % (i, j) for j in range(5)])
                           ).error_code == 0
    follower = next(b for b in cluster.broker_ids if b != leader)
    cluster.wait_for(lambda: len(disk_batches(cluster, follower, topic)) == 10, BOUND_S,
                     what="follower has all 10 batches")
    cluster.kill_broker(follower)

    segment = max((cluster.broker_data_dir(follower) / f"{topic}-0").glob("*.log"))
    data = bytearray(segment.read_bytes())
    data[-3] ^= 0xFF  # inside the last batch's records: its CRC no longer matches
    segment.write_bytes(bytes(data))
    assert len(disk_batches(cluster, follower, topic)) == 9

    cluster.restart_broker(follower)
    end = list_offset(stub, topic)
    assert end == 50
    cluster.wait_for(lambda: disk_batches(cluster, follower, topic) ==
                     disk_batches(cluster, leader, topic), BOUND_S,
                     what="follower refilled, byte-identical to the leader")
    assert len(disk_batches(cluster, follower, topic)) == 10
    assert Path(segment).exists()
