"""ClusterMetadata: the client's pure view of brokers, topics and leaders (no network)."""

from __future__ import annotations

from clients.metadata import BrokerNode, ClusterMetadata, MetadataSnapshot, TopicMetadata
from clients.types import PartitionInfo, TopicPartition
from proto.errors import ErrorCode

BROKERS = (BrokerNode(2, "127.0.0.1", 9002), BrokerNode(1, "127.0.0.1", 9001))


def _topic(name: str, leaders: list[int | None], epoch: int = 3) -> TopicMetadata:
    return TopicMetadata(
        name,
        partitions=tuple(
            PartitionInfo(p, leader, (1, 2, 3), (1, 2, 3), leader_epoch=epoch)
            for p, leader in reversed(list(enumerate(leaders)))
        ),
    )


def test_update_and_leader_lookup() -> None:
    md = ClusterMetadata()
    md.update(MetadataSnapshot(BROKERS, (_topic("a", [1, 2, None]),), "c1", 1), now_ms=100)
    assert list(md.brokers) == [1, 2]
    assert md.broker_address(2) == ("127.0.0.1", 9002)
    assert md.broker_address(9) is None
    assert md.leader_for(TopicPartition("a", 0)) == 1
    assert md.leader_for(TopicPartition("a", 2)) is None
    assert md.leader_for(TopicPartition("b", 0)) is None
    assert md.leader_epoch(TopicPartition("a", 1)) == 3
    assert md.leader_epoch(TopicPartition("a", 9)) == -1
    assert md.partitions_for("a") == [0, 1, 2]
    assert md.partitions_for("b") is None
    assert md.partition_counts("a") == (3, (0, 1))
    assert md.cluster_id == "c1" and md.controller_id == 1
    assert md.leaders[TopicPartition("a", 1)] == 2


def test_partial_update_keeps_other_topics_and_replaces_named_ones() -> None:
    md = ClusterMetadata()
    md.update(MetadataSnapshot(BROKERS, (_topic("a", [1, 2]), _topic("b", [2]))), now_ms=1)
    leaders_before = md.leaders
    md.update(MetadataSnapshot(BROKERS[:1], (_topic("a", [2], epoch=4),)), now_ms=2)
    assert md.partitions_for("a") == [0]
    assert TopicPartition("a", 1) not in md.leaders
    assert md.leader_for(TopicPartition("a", 0)) == 2
    assert md.leader_epoch(TopicPartition("a", 0)) == 4
    assert md.partitions_for("b") == [0]
    assert list(md.brokers) == [2]
    # the old mapping is not mutated (engines may hold it across one pass)
    assert leaders_before[TopicPartition("a", 1)] == 2
    assert md.version == 2


def test_topic_errors() -> None:
    md = ClusterMetadata()
    missing = TopicMetadata("x", ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "no such topic")
    md.update(MetadataSnapshot(BROKERS, (missing,)), now_ms=5)
    assert md.partitions_for("x") is None
    assert md.partition_counts("x") is None
    assert md.topic_error("x") == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert md.topic_error("never-asked") == ErrorCode.NONE
    md.update(MetadataSnapshot(BROKERS, (_topic("x", [1]),)), now_ms=6)
    assert md.topic_error("x") == ErrorCode.NONE and md.partitions_for("x") == [0]
    md.forget_topics(["x"])
    assert md.topics() == [] and md.leader_for(TopicPartition("x", 0)) is None


def test_staleness() -> None:
    md = ClusterMetadata()
    assert md.is_stale(0, 1000)  # never refreshed
    md.update(MetadataSnapshot(BROKERS), now_ms=1000)
    assert not md.is_stale(1500, 1000)
    assert md.is_stale(2000, 1000)
    md.request_update()
    assert md.is_stale(1001, 1000)
    md.update(MetadataSnapshot(BROKERS), now_ms=1001)
    assert not md.update_requested and not md.is_stale(1001, 1000)
    assert md.last_refresh_ms == 1001
