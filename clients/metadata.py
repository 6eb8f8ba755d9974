"""The client's view of the cluster: brokers, topics, partition leaders (Kafka's `Metadata`).

A pure core (STYLE.md §1): the network shell (`clients.network_transport.BrokerNetwork`) turns a
broker's Metadata response into a `MetadataSnapshot` and calls `update(snapshot, now_ms)`; the
producer and consumer engines ask it who leads a partition, how many partitions a topic has and
whether the view is too old. It never reads the clock.

Topics named in a snapshot replace what was known of them; topics not named keep their entry
(a refresh for one topic does not forget the others). The broker list is replaced whole, since
every response carries all unfenced brokers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from clients.types import PartitionInfo, TopicPartition
from proto.errors import ErrorCode

__all__ = [
    "BrokerNode",
    "ClusterMetadata",
    "MetadataSnapshot",
    "TopicMetadata",
]


@dataclass(frozen=True, slots=True)
class BrokerNode:
    """One live broker as the Metadata response lists it."""

    node_id: int
    host: str
    port: int
    rack: str | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class TopicMetadata:
    """One topic of a Metadata response. `error_code` is NONE when the topic is usable;
    partitions are sorted by partition id."""

    name: str
    error_code: int = ErrorCode.NONE
    error_message: str = ""
    partitions: tuple[PartitionInfo, ...] = ()
    internal: bool = False
    topic_id: str = ""


@dataclass(frozen=True, slots=True)
class MetadataSnapshot:
    """A decoded Metadata response (the transport builds it from the protobuf)."""

    brokers: tuple[BrokerNode, ...]
    topics: tuple[TopicMetadata, ...] = ()
    cluster_id: str = ""
    controller_id: int = -1


@dataclass(slots=True)
class _TopicState:
    """What the accumulator needs on every send, precomputed once per update."""

    metadata: TopicMetadata
    num_partitions: int
    available_partitions: tuple[int, ...]  # partitions with a leader, ascending


@dataclass(slots=True)
class ClusterMetadata:
    """Mutable cluster view of one client. Not thread-safe: its owner serialises access.

    Attributes:
        last_refresh_ms: `now_ms` of the last successful update, -1 before the first.
        update_requested: someone saw stale data (NOT_LEADER_OR_FOLLOWER, unknown leader) and
            asked for a refresh; cleared by the next update.
        version: bumped by every update (engines compare it to notice changes).
    """

    brokers: dict[int, BrokerNode] = field(default_factory=dict)
    cluster_id: str = ""
    controller_id: int = -1
    last_refresh_ms: int = -1
    update_requested: bool = False
    version: int = 0
    _topics: dict[str, _TopicState] = field(default_factory=dict)
    _leaders: dict[TopicPartition, int | None] = field(default_factory=dict)
    _epochs: dict[TopicPartition, int] = field(default_factory=dict)

    # -- updates ----------------------------------------------------------------------------

    def update(self, snapshot: MetadataSnapshot, now_ms: int) -> None:
        """Apply a Metadata response received at `now_ms`.

        Topics in the snapshot replace their previous entry (an errored topic keeps no
        partitions); other topics are kept. Brokers are replaced.
        """
        self.brokers = {b.node_id: b for b in sorted(snapshot.brokers, key=lambda b: b.node_id)}
        self.cluster_id = snapshot.cluster_id or self.cluster_id
        self.controller_id = snapshot.controller_id
        leaders = dict(self._leaders)
        epochs = dict(self._epochs)
        for topic in snapshot.topics:
            old = self._topics.get(topic.name)
            if old is not None:
                for info in old.metadata.partitions:
                    tp = TopicPartition(topic.name, info.partition)
                    leaders.pop(tp, None)
                    epochs.pop(tp, None)
            if topic.error_code != ErrorCode.NONE and not topic.partitions:
                self._topics[topic.name] = _TopicState(topic, 0, ())
                continue
            partitions = tuple(sorted(topic.partitions, key=lambda p: p.partition))
            kept = TopicMetadata(
                topic.name, topic.error_code, topic.error_message, partitions, topic.internal,
                topic.topic_id,
            )
            available: list[int] = []
            for info in partitions:
                tp = TopicPartition(topic.name, info.partition)
                leader = info.leader if info.leader is not None and info.leader >= 0 else None
                leaders[tp] = leader
                epochs[tp] = info.leader_epoch
                if leader is not None:
                    available.append(info.partition)
            self._topics[topic.name] = _TopicState(kept, len(partitions), tuple(available))
        self._leaders = leaders
        self._epochs = epochs
        self.last_refresh_ms = now_ms
        self.update_requested = False
        self.version += 1

    def request_update(self) -> None:
        """Mark the view stale: the next engine pass refreshes it."""
        self.update_requested = True

    def forget_topics(self, names: Iterable[str]) -> None:
        """Drop topics nobody uses any more."""
        for name in names:
            state = self._topics.pop(name, None)
            if state is None:
                continue
            for info in state.metadata.partitions:
                tp = TopicPartition(name, info.partition)
                self._leaders.pop(tp, None)
                self._epochs.pop(tp, None)

    # -- queries ----------------------------------------------------------------------------

    @property
    def leaders(self) -> Mapping[TopicPartition, int | None]:
        """Leader of every known partition (None: no leader). Replaced, never mutated, by
        `update`: safe to hold across one engine pass."""
        return self._leaders

    def leader_for(self, tp: TopicPartition) -> int | None:
        """The partition's leader, None if unknown or offline."""
        return self._leaders.get(tp)

    def leader_epoch(self, tp: TopicPartition) -> int:
        """The partition's leader epoch, -1 if unknown."""
        return self._epochs.get(tp, -1)

    def partitions_for(self, topic: str) -> list[int] | None:
        """Partition ids of a topic, None if the topic is unknown (or errored)."""
        state = self._topics.get(topic)
        if state is None or state.num_partitions == 0:
            return None
        return [info.partition for info in state.metadata.partitions]

    def partition_counts(self, topic: str) -> tuple[int, tuple[int, ...]] | None:
        """(partition count, partitions with a leader) of a known topic, else None. The send
        hot path: one dict lookup."""
        state = self._topics.get(topic)
        if state is None or state.num_partitions == 0:
            return None
        return state.num_partitions, state.available_partitions

    def topic(self, topic: str) -> TopicMetadata | None:
        """The last answer about a topic (possibly an error), None if never asked."""
        state = self._topics.get(topic)
        return None if state is None else state.metadata

    def topic_error(self, topic: str) -> int:
        """The topic's error code in the last answer (NONE if fine or never asked)."""
        state = self._topics.get(topic)
        return ErrorCode.NONE if state is None else state.metadata.error_code

    def topics(self) -> list[str]:
        """Known topic names, sorted."""
        return sorted(self._topics)

    def broker_address(self, node_id: int) -> tuple[str, int] | None:
        """(host, port) of a live broker, None if not in the last answer."""
        node = self.brokers.get(node_id)
        return None if node is None else (node.host, node.port)

    def is_stale(self, now_ms: int, max_age_ms: int) -> bool:
        """True when never refreshed, when a refresh was requested, or when the last one is
        older than `max_age_ms` (`metadata.max.age.ms`)."""
        return (
            self.last_refresh_ms < 0
            or self.update_requested
            or now_ms - self.last_refresh_ms >= max_age_ms
        )
