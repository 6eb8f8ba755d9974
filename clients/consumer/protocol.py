"""Kafka's ConsumerProtocol payloads: the bytes a consumer puts in JoinGroup and SyncGroup.

The coordinator treats these as opaque; only consumers read them, so they must match Kafka's
schemas byte for byte (KAFKA_SEMANTICS.md §6.1) for tools and mixed clients to agree. Both are
non-flexible messages prefixed by an int16 version, big-endian:

    Subscription v0: Topics [string], UserData nullable bytes
                 v1: + OwnedPartitions [{Topic string, Partitions [int32]}]
                 v2: + GenerationId int32 (-1 = none)
                 v3: + RackId nullable string
    Assignment v0-3: AssignedPartitions [{Topic string, Partitions [int32]}], UserData

Arrays are an int32 count, strings an int16 length (-1 = null), bytes an int32 length.
As in Kafka, a version newer than ours is read with our newest schema (newer fields are
appended, so a prefix read is correct) and trailing bytes are ignored; a negative version,
a short buffer or bad UTF-8 is INCONSISTENT_GROUP_PROTOCOL.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from clients.types import TopicPartition
from proto.errors import ErrorCode, RafkaError

__all__ = [
    "ASSIGNMENT_VERSION",
    "Assignment",
    "CONSUMER_PROTOCOL_TYPE",
    "SUBSCRIPTION_VERSION",
    "Subscription",
    "decode_assignment",
    "decode_subscription",
    "encode_assignment",
    "encode_subscription",
]

CONSUMER_PROTOCOL_TYPE = "consumer"
SUBSCRIPTION_VERSION = 3  # highest we write and read
ASSIGNMENT_VERSION = 3

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")


@dataclass(frozen=True, slots=True)
class Subscription:
    """A member's JoinGroup metadata: what it wants, and (cooperative) what it still owns."""

    topics: tuple[str, ...]
    user_data: bytes | None = None
    owned_partitions: tuple[TopicPartition, ...] = ()  # v1+
    generation_id: int = -1  # v2+
    rack_id: str | None = None  # v3+


@dataclass(frozen=True, slots=True)
class Assignment:
    """What the leader gives one member in SyncGroup."""

    partitions: tuple[TopicPartition, ...]
    user_data: bytes | None = None


def _bad(message: str) -> RafkaError:
    return RafkaError.for_code(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, message)


def _check_version(version: int, highest: int, what: str) -> None:
    if not 0 <= version <= highest:
        raise ValueError(f"{what} version must be 0..{highest}, got {version}")


# ---------------------------------------------------------------- writing


def _string(out: bytearray, value: str | None) -> None:
    if value is None:
        out += _I16.pack(-1)
        return
    data = value.encode()
    if len(data) > 0x7FFF:
        raise ValueError(f"string of {len(data)} bytes is too long for the consumer protocol")
    out += _I16.pack(len(data))
    out += data


def _bytes(out: bytearray, value: bytes | None) -> None:
    if value is None:
        out += _I32.pack(-1)
    else:
        out += _I32.pack(len(value))
        out += value


def _topic_partitions(out: bytearray, partitions: Iterable[TopicPartition]) -> None:
    # Grouped by topic, topics and partitions sorted (Kafka's serializer sorts too).
    by_topic: dict[str, list[int]] = {}
    for tp in sorted(set(partitions)):
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    out += _I32.pack(len(by_topic))
    for topic, numbers in by_topic.items():
        _string(out, topic)
        out += _I32.pack(len(numbers))
        for number in numbers:
            out += _I32.pack(number)


def encode_subscription(s: Subscription, version: int = SUBSCRIPTION_VERSION) -> bytes:
    """Kafka's `ConsumerProtocol.serializeSubscription`; fields newer than `version` are dropped."""
    _check_version(version, SUBSCRIPTION_VERSION, "subscription")
    out = bytearray(_I16.pack(version))
    topics = sorted(set(s.topics))
    out += _I32.pack(len(topics))
    for topic in topics:
        _string(out, topic)
    _bytes(out, s.user_data)
    if version >= 1:
        _topic_partitions(out, s.owned_partitions)
    if version >= 2:
        out += _I32.pack(s.generation_id)
    if version >= 3:
        _string(out, s.rack_id)
    return bytes(out)


def encode_assignment(a: Assignment, version: int = ASSIGNMENT_VERSION) -> bytes:
    """Kafka's `ConsumerProtocol.serializeAssignment` (v0-v3 share one layout)."""
    _check_version(version, ASSIGNMENT_VERSION, "assignment")
    out = bytearray(_I16.pack(version))
    _topic_partitions(out, a.partitions)
    _bytes(out, a.user_data)
    return bytes(out)


# ---------------------------------------------------------------- reading


class _Reader:
    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def _take(self, n: int) -> memoryview:
        end = self._pos + n
        if n < 0 or end > len(self._data):
            raise _bad(f"consumer protocol payload truncated at byte {self._pos}")
        chunk = self._data[self._pos:end]
        self._pos = end
        return chunk

    def i16(self) -> int:
        value: int = _I16.unpack(self._take(2))[0]
        return value

    def i32(self) -> int:
        value: int = _I32.unpack(self._take(4))[0]
        return value

    def count(self) -> int:
        n = self.i32()
        # Each element takes at least 2 bytes, so a count beyond that is garbage (and would
        # otherwise make us loop for a long time).
        if n < 0 or n * 2 > len(self._data) - self._pos:
            raise _bad(f"bad array length {n} at byte {self._pos - 4}")
        return n

    def string(self) -> str:
        value = self.nullable_string()
        if value is None:
            raise _bad(f"null string at byte {self._pos - 2}")
        return value

    def nullable_string(self) -> str | None:
        n = self.i16()
        if n == -1:
            return None
        if n < 0:
            raise _bad(f"bad string length {n} at byte {self._pos - 2}")
        try:
            return bytes(self._take(n)).decode()
        except UnicodeDecodeError as exc:
            raise _bad(f"string is not UTF-8: {exc}") from None

    def nullable_bytes(self) -> bytes | None:
        n = self.i32()
        if n == -1:
            return None
        if n < 0:
            raise _bad(f"bad bytes length {n} at byte {self._pos - 4}")
        return bytes(self._take(n))

    def topic_partitions(self) -> tuple[TopicPartition, ...]:
        result: list[TopicPartition] = []
        for _ in range(self.count()):
            topic = self.string()
            for _ in range(self.count()):
                result.append(TopicPartition(topic, self.i32()))
        return tuple(result)


def _version(reader: _Reader, what: str) -> int:
    version = reader.i16()
    if version < 0:
        raise _bad(f"unsupported {what} version {version}")
    return version


def decode_subscription(data: bytes) -> Subscription:
    """Kafka's `ConsumerProtocol.deserializeSubscription`.

    Raises:
        RafkaError: INCONSISTENT_GROUP_PROTOCOL for bytes that are not a subscription.
    """
    reader = _Reader(data)
    version = _version(reader, "subscription")
    topics = tuple(reader.string() for _ in range(reader.count()))
    user_data = reader.nullable_bytes()
    owned: tuple[TopicPartition, ...] = ()
    generation_id = -1
    rack_id: str | None = None
    if version >= 1:
        owned = reader.topic_partitions()
    if version >= 2:
        generation_id = reader.i32()
    if version >= 3:
        rack_id = reader.nullable_string()
    return Subscription(topics, user_data, owned, generation_id, rack_id)


def decode_assignment(data: bytes) -> Assignment:
    """Kafka's `ConsumerProtocol.deserializeAssignment`; empty bytes are an empty assignment
    (what the coordinator hands a member the leader gave nothing).

    Raises:
        RafkaError: INCONSISTENT_GROUP_PROTOCOL for bytes that are not an assignment.
    """
    if not data:
        return Assignment(())
    reader = _Reader(data)
    _version(reader, "assignment")
    partitions = reader.topic_partitions()
    user_data = reader.nullable_bytes()
    return Assignment(partitions, user_data)
