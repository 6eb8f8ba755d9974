"""Consumer (no groups) and Admin against a real cluster: LocalCluster (3 controllers + 3
brokers as Ray actors, gRPC on 127.0.0.1), shared by the tests of this module.

Records are produced with a raw gRPC Produce to the partition leader, so these tests depend
on the Consumer and Admin only (the Producer has its own tests).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from clients.admin import Admin
from clients.consumer import Consumer, NoOffsetForPartitionError
from clients.types import NewTopic, TopicPartition
from cluster.launcher import LocalCluster, unique_name
from proto import broker_pb2, broker_pb2_grpc
from proto.channel_options import GRPC_OPTIONS
from proto.errors import ErrorCode
from proto.errors import TopicAlreadyExistsError  # type: ignore[attr-defined]
from proto.records import RecordBatchBuilder


class _Cluster:
    """The module's LocalCluster plus what the tests need from it."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.bootstrap = cluster.bootstrap_servers


def _wait(cond: Any, *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not true after {timeout_s}s")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def cluster(ray_session: None) -> Iterator[_Cluster]:
    local = LocalCluster(brokers=3, controllers=3, name=unique_name("consumer-admin"),
                         log_level="WARNING")
    try:
        local.start()
        yield _Cluster(local)
    finally:
        local.close()


def _produce(cluster: _Cluster, admin: Admin, tp: TopicPartition, n: int) -> None:
    b = RecordBatchBuilder(now_ms=1_000)
    for i in range(n):
        b.append(b"v%d" % i, key=b"k%d" % i, headers=[("h", b"%d" % i)],
                 timestamp_ms=1_000 + i)
    req = broker_pb2.ProduceRequest(acks=-1, timeout_ms=10_000)
    req.topics.add(name=tp.topic).partitions.add(partition_index=tp.partition,
                                                 records=b.build())
    def leader() -> int:
        return admin.describe_topics([tp.topic])[tp.topic].partitions[tp.partition].leader or -1

    _wait(lambda: leader() >= 1, timeout_s=15, what=f"{tp} has a leader")
    with grpc.insecure_channel(cluster.cluster.broker_addresses[leader()],
                               options=GRPC_OPTIONS) as channel:
        answer = broker_pb2_grpc.BrokerStub(channel).Produce(req, timeout=15)
    part = answer.topics[0].partitions[0]
    assert part.error_code == ErrorCode.NONE, part


def test_admin_topic_lifecycle(cluster: _Cluster) -> None:
    with Admin(bootstrap_servers=cluster.bootstrap) as admin:
        admin.create_topics([NewTopic("orders", 3, 3)])
        with pytest.raises(TopicAlreadyExistsError):
            admin.create_topics([NewTopic("orders", 3, 3)])
        admin.create_topics([NewTopic("orders", 3, 3)], if_not_exists=True)
        assert "orders" in admin.list_topics()
        desc = admin.describe_topics(["orders"])["orders"]
        assert [p.partition for p in desc.partitions] == [0, 1, 2]
        assert all(len(p.replicas) == 3 and p.leader in p.isr for p in desc.partitions)
        admin.delete_topics(["orders"])
        _wait(lambda: "orders" not in admin.list_topics(), timeout_s=10, what="deleted")


def test_consume_from_beginning_in_order(cluster: _Cluster) -> None:
    tp = TopicPartition("events", 0)
    with Admin(bootstrap_servers=cluster.bootstrap) as admin:
        admin.create_topics([NewTopic("events", 1, 3)], if_not_exists=True)
        _produce(cluster, admin, tp, 100)
    with Consumer(bootstrap_servers=cluster.bootstrap) as consumer:
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        got: list[Any] = []
        deadline = time.monotonic() + 20
        while len(got) < 100 and time.monotonic() < deadline:
            got.extend(consumer.poll(0.5))
        assert [r.offset for r in got] == list(range(100))
        assert got[7].key == b"k7" and got[7].header("h") == b"7"
        assert got[7].timestamp == 1_007
        assert consumer.position(tp) == 100
        assert consumer.end_offsets([tp]) == {tp: 100}
        assert consumer.beginning_offsets([tp]) == {tp: 0}
        found = consumer.offsets_for_times({tp: 1_050})[tp]
        assert found is not None and found.offset == 50
        consumer.seek(tp, 95)
        assert [r.offset for r in consumer.poll(5.0)] == [95, 96, 97, 98, 99]
        consumer.seek(tp, 0)
        consumer.pause(tp)
        assert consumer.poll(0.3).count() == 0 and consumer.position(tp) == 0
        consumer.resume(tp)
        _wait(lambda: consumer.poll(0.2).count() > 0, timeout_s=10, what="resumed")


def test_auto_offset_reset_none_raises(cluster: _Cluster) -> None:
    tp = TopicPartition("events", 0)
    with Consumer(bootstrap_servers=cluster.bootstrap, auto_offset_reset="none") as consumer:
        consumer.assign([tp])
        with pytest.raises(NoOffsetForPartitionError):
            consumer.poll(0.1)
