"""Which `__consumer_offsets` partition coordinates a group (KAFKA_SEMANTICS §6.9).

Kafka's `GroupCoordinatorService.partitionFor`: `Utils.abs(groupId.hashCode()) % partitions`,
with Java's `String.hashCode` (h = 31*h + c over UTF-16 code units, int32 wrap) and
`Utils.abs`, which maps Integer.MIN_VALUE to 0 (Python's `abs` would not).
"""

from __future__ import annotations

_INT_MIN = -(2**31)


def java_string_hash(text: str) -> int:
    """Java's `String.hashCode` as a signed int32."""
    h = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def kafka_abs(n: int) -> int:
    """Kafka's `Utils.abs`: |n|, except Integer.MIN_VALUE → 0."""
    return 0 if n == _INT_MIN else abs(n)


def coordinator_partition(group_id: str, num_partitions: int) -> int:
    """The `__consumer_offsets` partition whose leader coordinates `group_id`."""
    if num_partitions <= 0:
        raise ValueError(f"num_partitions must be positive, not {num_partitions}")
    return kafka_abs(java_string_hash(group_id)) % num_partitions
