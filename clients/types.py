"""The value types of the client API (CLIENT_API.md §5.2): partitions, records, offsets, topics.

All are immutable: `TopicPartition` is a NamedTuple (a cheap dict key, unpacks as a pair, as in
kafka-python/aiokafka); the rest are frozen, slotted dataclasses. Offsets follow Kafka's rule
that a committed offset is the *next* offset to read (`Record.next_offset`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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


@dataclass(frozen=True, slots=True)
class Record(Generic[K, V]):
    """One consumed record, after deserialization (`ConsumerRecord` is the same class).

    `headers` keep their order and may repeat a key; a header value may be None.
    `serialized_*_size` are the byte lengths before deserialization (-1 for a null key/value).
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
