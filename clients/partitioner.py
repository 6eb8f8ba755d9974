"""Partitioning: murmur2 for keyed records, the KIP-794 built-in sticky partitioner otherwise.

Keyed records (KAFKA_SEMANTICS.md §2.1): `toPositive(murmur2(key)) % numPartitions` over *all*
partitions of the topic, exactly as Kafka's `Utils.murmur2` / `BuiltInPartitioner
.partitionForKey`, so a key lands on the same partition as with any Kafka client. `to_positive`
is `n & 0x7fffffff`, not `abs()`.

Records without a key (or every record with `partitioner.ignore.keys`) go through
`BuiltInPartitioner` (Kafka's `BuiltInPartitioner`, KIP-794), which keeps per topic:
- a *sticky* partition and the bytes produced to it since it was chosen;
- optional load stats: a cumulative frequency table built from queue lengths.

The accumulator drives it. `partition(...)` answers the current sticky partition (choosing one
the first time). After each append the accumulator calls `update_partition_info(...)` with the
appended bytes and whether the partition's queue has no incomplete batch; the partitioner
switches when produced bytes >= batch.size and the switch is allowed, or unconditionally at
2 x batch.size. `ready()` feeds it queue lengths (`update_partition_load_stats`), from which the
next partition is picked with weight `maxQueueLen + 1 - queueLen` (adaptive partitioning):
queue sizes 0, 3, 1 give weights 4, 1, 3 and the table 4, 5, 8.

Randomness comes in as a `random.Random`; `toPositive(nextInt())` becomes `getrandbits(31)`.
This module never reads the clock and holds no cluster metadata: callers pass the partition
count and the partitions that have a leader.
"""

from __future__ import annotations

import random
import struct
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "BuiltInPartitioner",
    "PartitionLoadStats",
    "StickyState",
    "murmur2",
    "partition_for_key",
    "to_positive",
]

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK32 = 0xFFFFFFFF

# Compiled little-endian uint32 block readers by block count (keys are short; cache them).
_BLOCKS: dict[int, struct.Struct] = {}


def murmur2(data: bytes) -> int:
    """Kafka's `Utils.murmur2`: 32-bit MurmurHash2 with seed 0x9747b28c, as a signed int32.

    Blocks are read little-endian; the tail falls through 3, 2, 1 bytes as in the Java switch.
    All arithmetic is kept in 32 bits with `& 0xffffffff`, so `>>` acts as Java's `>>>`.
    """
    length = len(data)
    h = _SEED ^ length
    nblocks = length >> 2
    if nblocks:
        reader = _BLOCKS.get(nblocks)
        if reader is None:
            reader = _BLOCKS[nblocks] = struct.Struct(f"<{nblocks}I")
        m = _M
        mask = _MASK32
        for k in reader.unpack_from(data):
            k = (k * m) & mask
            k ^= k >> 24
            h = ((h * m) & mask) ^ ((k * m) & mask)
    tail = length & 3
    if tail:
        i = length - tail
        if tail == 3:
            h ^= data[i + 2] << 16
        if tail >= 2:
            h ^= data[i + 1] << 8
        h = ((h ^ data[i]) * _M) & _MASK32
    h ^= h >> 13
    h = (h * _M) & _MASK32
    h ^= h >> 15
    return h - 0x100000000 if h & 0x80000000 else h


def to_positive(number: int) -> int:
    """Kafka's `Utils.toPositive`: clear the sign bit (`-2**31` maps to 0; not `abs`)."""
    return number & 0x7FFFFFFF


def partition_for_key(key_bytes: bytes, num_partitions: int) -> int:
    """The partition of a keyed record: `toPositive(murmur2(key)) % numPartitions`.

    Args:
        key_bytes: the serialized key.
        num_partitions: every partition of the topic, with a leader or not (§2.1).
    """
    return (murmur2(key_bytes) & 0x7FFFFFFF) % num_partitions


@dataclass(frozen=True, slots=True)
class PartitionLoadStats:
    """Adaptive partitioning table (Kafka's `BuiltInPartitioner.PartitionLoadStats`).

    invariant: `cumulative_frequency_table` is strictly increasing, one entry per partition in
    `partition_ids`; partition i is picked for random r in [table[i-1], table[i]).
    """

    cumulative_frequency_table: tuple[int, ...]
    partition_ids: tuple[int, ...]


def build_load_stats(
    queue_sizes: Sequence[int], partition_ids: Sequence[int], num_partitions: int
) -> PartitionLoadStats | None:
    """Kafka's `updatePartitionLoadStats`: weights `max + 1 - size`, accumulated.

    Args:
        queue_sizes: batches queued per partition, for the partitions with a leader that are
            not excluded (same order as `partition_ids`).
        partition_ids: those partitions.
        num_partitions: partitions the producer has queues for (Kafka's `queueSizes.length`).

    Returns:
        None (use uniform choice) when there is nothing to weigh, the topic has fewer than two
        partitions, or every partition is present and all queues are equal.
    """
    assert len(queue_sizes) == len(partition_ids)
    length = len(queue_sizes)
    if length < 1 or num_partitions < 2:
        return None
    max_plus_1 = max(queue_sizes) + 1
    if length == num_partitions and all(q == queue_sizes[0] for q in queue_sizes):
        return None
    table = []
    total = 0
    for size in queue_sizes:
        total += max_plus_1 - size
        table.append(total)
    return PartitionLoadStats(tuple(table), tuple(partition_ids))


class StickyState:
    """Per-topic state: Kafka's `StickyPartitionInfo` plus the topic's load stats. The
    accumulator's append fast path reads `partition` and adds to `produced_bytes` directly,
    and calls `update_partition_info` only once they reach the switch threshold."""

    __slots__ = ("partition", "produced_bytes", "load_stats")

    def __init__(self) -> None:
        self.partition = -1  # -1: none chosen yet
        self.produced_bytes = 0
        self.load_stats: PartitionLoadStats | None = None


class BuiltInPartitioner:
    """KIP-794 sticky partitioner for every topic of one producer.

    Args:
        sticky_batch_size: switch threshold in bytes (Kafka uses batch.size).
        rng: the injected source of randomness.
        adaptive: `partitioner.adaptive.partitioning.enable`; when False, load stats are
            ignored even if given.
    """

    def __init__(self, sticky_batch_size: int, rng: random.Random, *, adaptive: bool = True):
        self.sticky_batch_size = max(1, sticky_batch_size)
        self.adaptive = adaptive
        self._rng = rng
        self._topics: dict[str, StickyState] = {}

    def _state(self, topic: str) -> StickyState:
        state = self._topics.get(topic)
        if state is None:
            state = self._topics[topic] = StickyState()
        return state

    def sticky_state(self, topic: str) -> StickyState:
        """The topic's mutable sticky state (created empty: `partition` -1)."""
        return self._state(topic)

    def partition(
        self, topic: str, num_partitions: int, available_partitions: Sequence[int]
    ) -> int:
        """The topic's current sticky partition, chosen now if there is none (Kafka's
        `peekCurrentPartitionInfo`).

        Args:
            num_partitions: all partitions of the topic (must be > 0).
            available_partitions: the partitions that have a leader, sorted.
        """
        state = self._topics.get(topic)
        if state is None:
            state = self._topics[topic] = StickyState()
        if not 0 <= state.partition < num_partitions:
            state.partition = self.next_partition(topic, num_partitions, available_partitions)
            state.produced_bytes = 0
        return state.partition

    def next_partition(
        self, topic: str, num_partitions: int, available_partitions: Sequence[int]
    ) -> int:
        """Pick a partition: weighted by load stats if there are any, else uniformly among the
        partitions with a leader (all partitions if none has one). Kafka's `nextPartition`."""
        assert num_partitions > 0, f"{topic} has no partitions"
        random_value = self._rng.getrandbits(31)  # toPositive(ThreadLocalRandom.nextInt())
        stats = self._state(topic).load_stats if self.adaptive else None
        if stats is None:
            if available_partitions:
                return available_partitions[random_value % len(available_partitions)]
            return random_value % num_partitions
        table = stats.cumulative_frequency_table
        weighted = random_value % table[-1]
        # Arrays.binarySearch + abs(result + 1) == the first entry strictly above `weighted`.
        return stats.partition_ids[bisect_right(table, weighted)]

    def update_partition_info(
        self,
        topic: str,
        partition: int,
        appended_bytes: int,
        enable_switch: bool,
        num_partitions: int,
        available_partitions: Sequence[int],
    ) -> bool:
        """Account an append to the sticky partition; maybe switch (Kafka's
        `updatePartitionInfo`).

        Args:
            partition: where the record went; ignored unless it is the sticky partition.
            appended_bytes: the record's encoded size.
            enable_switch: the partition's queue has no incomplete batch (its last batch is
                full, or it is empty), so switching will not leave a half-full batch behind.

        Returns:
            True if the sticky partition changed.
        """
        state = self._topics.get(topic)
        if state is None or partition != state.partition:
            return False
        state.produced_bytes += appended_bytes
        produced = state.produced_bytes
        limit = self.sticky_batch_size
        if (produced >= limit and enable_switch) or produced >= 2 * limit:
            state.partition = self.next_partition(topic, num_partitions, available_partitions)
            state.produced_bytes = 0
            return True
        return False

    def update_partition_load_stats(
        self,
        topic: str,
        queue_sizes: Sequence[int] | None,
        partition_ids: Sequence[int] = (),
        num_partitions: int = 0,
    ) -> None:
        """Replace the topic's load stats (None drops them: uniform choice)."""
        state = self._state(topic)
        if queue_sizes is None or not self.adaptive:
            state.load_stats = None
            return
        state.load_stats = build_load_stats(queue_sizes, partition_ids, num_partitions)

    def load_stats(self, topic: str) -> PartitionLoadStats | None:
        state = self._topics.get(topic)
        return state.load_stats if state is not None else None

    def sticky_partition(self, topic: str) -> int | None:
        """The current sticky partition of `topic`, None if none was chosen yet."""
        state = self._topics.get(topic)
        return state.partition if state is not None and state.partition >= 0 else None

    def produced_bytes(self, topic: str) -> int:
        state = self._topics.get(topic)
        return state.produced_bytes if state is not None else 0
