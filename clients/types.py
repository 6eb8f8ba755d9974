"""The value types of the client API (CLIENT_API.md §5.2): partitions, records, offsets, topics.

All are immutable: `TopicPartition` is a NamedTuple (a cheap dict key, unpacks as a pair, as in
kafka-python/aiokafka), and so is `Record` (the consumer makes one per record, and a tuple is
the cheapest object Python builds); the rest are frozen, slotted dataclasses. Offsets follow
Kafka's rule that a committed offset is the *next* offset to read (`Record.next_offset`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import FrozenInstanceError, dataclass, field
from types import MappingProxyType
from typing import Generic, NamedTuple, TypeVar

from proto.records import TimestampType

__all__ = [
    "ConsumerRecord",
    "Header",
    "NewTopic",
    "OFFSET_BEGINNING",
    "OFFSET_END",
    "OffsetAndMetadata",
    "OffsetAndTimestamp",
    "PartitionInfo",
    "Record",
    "RecordMetadata",
    "TimestampType",
    "TopicDescription",
    "TopicPartition",
    "UNKNOWN_PARTITION",
]

K = TypeVar("K")
V = TypeVar("V")

Header = tuple[str, "bytes | None"]

# ListOffsets special timestamps (KAFKA_SEMANTICS.md §7), also confluent's seek sentinels.
OFFSET_BEGINNING = -2
OFFSET_END = -1
# RecordMetadata.UNKNOWN_PARTITION: "let the built-in partitioner choose".
UNKNOWN_PARTITION = -1


class TopicPartition(NamedTuple):
    """A partition of a topic; hashable, ordered by (topic, partition)."""

    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}-{self.partition}"


@dataclass(frozen=True, slots=True)
class RecordMetadata:
    """What a successful send resolves to (Kafka's `RecordMetadata`).

    `offset` is -1 with acks=0; `timestamp` is the record's CreateTime, or the broker's
    LogAppendTime when the topic uses it.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int
    log_start_offset: int = -1

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


class Record(NamedTuple, Generic[K, V]):
    """One consumed record, after deserialization (`ConsumerRecord` is the same class).

    `headers` keep their order and may repeat a key; a header value may be None.
    `serialized_*_size` are the byte lengths before deserialization (-1 for a null key/value).

    A NamedTuple rather than a dataclass because the consumer builds one per record: the
    decoder makes each with one `tuple.__new__` (about a tenth of a frozen dataclass's
    `__init__`). It is immutable all the same: assigning a field raises FrozenInstanceError.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int  # ms since the epoch
    timestamp_type: TimestampType
    key: K | None
    value: V | None
    headers: tuple[Header, ...] = ()
    leader_epoch: int | None = None
    serialized_key_size: int = -1
    serialized_value_size: int = -1

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    @property
    def next_offset(self) -> int:
        """offset + 1: what `commit(record)` stores (the next offset to read)."""
        return self.offset + 1

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def header(self, name: str) -> bytes | None:
        """The value of the *last* header called `name` (Kafka's `Headers.lastHeader`), or None
        when there is none. A header whose value is null also gives None."""
        for key, value in reversed(self.headers):
            if key == name:
                return value
        return None

    def header_values(self, name: str) -> tuple[bytes | None, ...]:
        """Every value of the headers called `name`, in order (Kafka's `Headers.headers`)."""
        return tuple(value for key, value in self.headers if key == name)


ConsumerRecord = Record


@dataclass(frozen=True, slots=True)
class OffsetAndMetadata:
    """A committed position: `offset` is the next offset to read (last processed + 1)."""

    offset: int
    metadata: str = ""
    leader_epoch: int | None = None


@dataclass(frozen=True, slots=True)
class OffsetAndTimestamp:
    """`offsets_for_times` result: the earliest offset whose timestamp is >= the asked one."""

    offset: int
    timestamp: int
    leader_epoch: int | None = None


@dataclass(frozen=True, slots=True)
class NewTopic:
    """A topic to create (Kafka's `NewTopic`).

    Either give `num_partitions` and `replication_factor` (-1 = the broker defaults
    `num.partitions` / `default.replication.factor`), or `replica_assignment`
    ({partition: [broker ids, preferred leader first]}), which fixes both.

    Raises:
        ValueError: `replica_assignment` disagrees with an explicit count or factor, or is
            not partitions 0..n-1 with one replica list size.
    """

    name: str
    num_partitions: int = -1
    replication_factor: int = -1
    replica_assignment: Mapping[int, Sequence[int]] | None = field(default=None, hash=False)
    config: Mapping[str, str] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if self.config is not None:
            frozen = MappingProxyType({str(k): str(v) for k, v in self.config.items()})
            object.__setattr__(self, "config", frozen)
        if self.replica_assignment is None:
            return
        assignment = {int(p): tuple(int(b) for b in r) for p, r in self.replica_assignment.items()}
        if sorted(assignment) != list(range(len(assignment))):
            raise ValueError(f"{self.name}: replica_assignment must cover partitions 0..n-1")
        factors = {len(replicas) for replicas in assignment.values()}
        if len(factors) > 1:
            raise ValueError(f"{self.name}: every partition needs the same number of replicas")
        if self.num_partitions not in (-1, len(assignment)):
            raise ValueError(
                f"{self.name}: num_partitions={self.num_partitions} but replica_assignment "
                f"has {len(assignment)} partitions"
            )
        factor = factors.pop() if factors else -1
        if self.replication_factor not in (-1, factor):
            raise ValueError(
                f"{self.name}: replication_factor={self.replication_factor} but "
                f"replica_assignment has {factor} replicas per partition"
            )
        object.__setattr__(self, "replica_assignment", MappingProxyType(assignment))


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    """One partition of a described topic. `leader` is None while the partition is offline."""

    partition: int
    leader: int | None
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    offline_replicas: tuple[int, ...] = ()
    leader_epoch: int = -1


@dataclass(frozen=True, slots=True)
class TopicDescription:
    """`Admin.describe_topics` result: partitions sorted by partition id."""

    name: str
    partitions: tuple[PartitionInfo, ...]
    internal: bool = False
    topic_id: str | None = None

    def partition(self, partition: int) -> PartitionInfo:
        """The info of one partition.

        Raises:
            KeyError: the topic has no such partition.
        """
        for info in self.partitions:
            if info.partition == partition:
                return info
        raise KeyError(f"{self.name} has no partition {partition}")


# -- Admin results for the metadata quorum and consumer groups (issue 5) -------------------------


@dataclass(frozen=True, slots=True)
class QuorumReplica:
    """One voter or observer of the metadata quorum, as the quorum leader sees it.

    `lag` is the leader's log end offset minus this replica's (Kafka's metadata-quorum tool);
    timestamps are wall-clock ms, -1 when unknown.
    """

    replica_id: int
    log_end_offset: int
    lag: int
    last_fetch_timestamp: int = -1
    last_caught_up_timestamp: int = -1


@dataclass(frozen=True, slots=True)
class QuorumInfo:
    """`Admin.describe_quorum` result (Kafka's `QuorumInfo`)."""

    leader_id: int | None
    leader_epoch: int
    high_watermark: int
    voters: tuple[QuorumReplica, ...]
    observers: tuple[QuorumReplica, ...] = ()

    @property
    def max_follower_lag(self) -> int:
        return max((v.lag for v in self.voters if v.replica_id != self.leader_id), default=0)


@dataclass(frozen=True, slots=True)
class GroupListing:
    """`Admin.list_consumer_groups` entry. `state` uses Kafka's names (Stable, Empty, ...)."""

    group_id: str
    protocol_type: str
    state: str
    coordinator_id: int | None = None


@dataclass(frozen=True, slots=True)
class MemberDescription:
    """A member of a described group; `assignment` is decoded for "consumer" groups."""

    member_id: str
    client_id: str
    host: str
    group_instance_id: str | None = None
    assignment: tuple[TopicPartition, ...] = ()


@dataclass(frozen=True, slots=True)
class GroupDescription:
    """`Admin.describe_consumer_groups` result. `protocol` is the chosen assignor."""

    group_id: str
    state: str
    protocol_type: str
    protocol: str
    members: tuple[MemberDescription, ...]
    coordinator_id: int | None = None

    def owner_of(self, tp: TopicPartition) -> MemberDescription | None:
        """The member assigned `tp`, if any."""
        for member in self.members:
            if tp in member.assignment:
                return member
        return None


@dataclass(frozen=True, slots=True)
class GroupPartitionLag:
    """One row of a group's lag report (kafka-consumer-groups --describe).

    `current_offset` / `lag` are None when the group has committed nothing for the partition.
    """

    group_id: str
    topic: str
    partition: int
    current_offset: int | None
    log_end_offset: int
    lag: int | None
    member: MemberDescription | None = None


__all__ += [
    "GroupDescription", "GroupListing", "GroupPartitionLag", "MemberDescription",
    "QuorumInfo", "QuorumReplica",
]
