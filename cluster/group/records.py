"""The `__consumer_offsets` record codec: Kafka's key and value schemas, byte for byte.

The key's int16 version says what a record is (Kafka's `CoordinatorRecordType`):
- 0, 1: OffsetCommitKey {group, topic, partition} → OffsetCommitValue
  v0 {offset, metadata, commitTimestamp}, v1 (+ expireTimestamp), v2 (= v0), v3
  {offset, leaderEpoch, metadata, commitTimestamp}. We write key v1 and value v3
  (v1 only when an expire timestamp is set), as Kafka does.
- 2: GroupMetadataKey {group} → GroupMetadataValue v0..v3 {protocolType, generation,
  protocol?, leader?, currentStateTimestamp (v2+), members[{memberId, groupInstanceId? (v3+),
  clientId, clientHost, rebalanceTimeout (v1+), sessionTimeout, subscription, assignment}]}.
  We write v3.
- 3 and up: the KIP-848 group records, which this coordinator does not use; `decode_key`
  returns None for them so replay skips them.
A null value is a tombstone: the offset or the whole group is deleted (compaction then drops
the key). Encoding is Kafka's non-flexible format: int16-length strings (-1 = null), int32-length
bytes and arrays, big-endian.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from proto.errors import CorruptMessageError

OFFSET_COMMIT_KEY_VERSION = 1
GROUP_METADATA_KEY_VERSION = 2
OFFSET_COMMIT_VALUE_VERSION = 3
GROUP_METADATA_VALUE_VERSION = 3

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")


@dataclass(frozen=True, slots=True)
class OffsetCommitKey:
    group: str
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class GroupMetadataKey:
    group: str


@dataclass(frozen=True, slots=True)
class OffsetCommitValue:
    offset: int
    leader_epoch: int = -1
    metadata: str = ""
    commit_timestamp: int = -1
    expire_timestamp: int = -1


@dataclass(frozen=True, slots=True)
class MemberMetadata:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    subscription: bytes
    assignment: bytes


@dataclass(frozen=True, slots=True)
class GroupMetadataValue:
    protocol_type: str
    generation: int
    protocol: str | None
    leader: str | None
    current_state_timestamp: int = -1
    members: tuple[MemberMetadata, ...] = ()


RecordKey = OffsetCommitKey | GroupMetadataKey


# -- writer / reader ----------------------------------------------------------------------------


class _Writer:
    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def i16(self, v: int) -> None:
        self.parts.append(_I16.pack(v))

    def i32(self, v: int) -> None:
        self.parts.append(_I32.pack(v))

    def i64(self, v: int) -> None:
        self.parts.append(_I64.pack(v))

    def string(self, v: str | None) -> None:
        if v is None:
            self.i16(-1)
            return
        data = v.encode("utf-8")
        if len(data) > 0x7FFF:
            raise ValueError(f"string of {len(data)} bytes exceeds int16 length")
        self.i16(len(data))
        self.parts.append(data)

    def bytes_(self, v: bytes | None) -> None:
        if v is None:
            self.i32(-1)
            return
        self.i32(len(v))
        self.parts.append(bytes(v))

    def done(self) -> bytes:
        return b"".join(self.parts)


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self.pos = 0

    def _take(self, fmt: struct.Struct) -> int:
        if self.pos + fmt.size > len(self.data):
            raise CorruptMessageError(f"record truncated at byte {self.pos}")
        (v,) = fmt.unpack_from(self.data, self.pos)
        self.pos += fmt.size
        return int(v)

    def i16(self) -> int:
        return self._take(_I16)

    def i32(self) -> int:
        return self._take(_I32)

    def i64(self) -> int:
        return self._take(_I64)

    def _raw(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise CorruptMessageError(f"record truncated at byte {self.pos} (wanted {n})")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def nullable_string(self) -> str | None:
        n = self.i16()
        if n == -1:
            return None
        try:
            return self._raw(n).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CorruptMessageError(f"bad UTF-8 string: {exc}") from None

    def string(self) -> str:
        v = self.nullable_string()
        if v is None:
            raise CorruptMessageError("null where a string is required")
        return v

    def bytes_(self) -> bytes:
        n = self.i32()
        return b"" if n == -1 else self._raw(n)

    def end(self) -> None:
        if self.pos != len(self.data):
            raise CorruptMessageError(f"{len(self.data) - self.pos} trailing bytes in record")


# -- keys -------------------------------------------------------------------------------------


def encode_key(key: RecordKey) -> bytes:
    w = _Writer()
    if isinstance(key, OffsetCommitKey):
        w.i16(OFFSET_COMMIT_KEY_VERSION)
        w.string(key.group)
        w.string(key.topic)
        w.i32(key.partition)
    else:
        w.i16(GROUP_METADATA_KEY_VERSION)
        w.string(key.group)
    return w.done()


def decode_key(data: bytes) -> RecordKey | None:
    """The key, or None for record types this coordinator does not use (KIP-848, 3+).

    Raises:
        CorruptMessageError: truncated or garbled bytes.
    """
    r = _Reader(data)
    version = r.i16()
    if version in (0, 1):
        key: RecordKey = OffsetCommitKey(r.string(), r.string(), r.i32())
    elif version == 2:
        key = GroupMetadataKey(r.string())
    elif version >= 3:
        return None
    else:
        raise CorruptMessageError(f"unknown __consumer_offsets key version {version}")
    r.end()
    return key


# -- offset commit values ---------------------------------------------------------------------


def encode_offset_value(value: OffsetCommitValue) -> bytes:
    w = _Writer()
    if value.expire_timestamp >= 0:  # v1 is the only version with an expire timestamp
        w.i16(1)
        w.i64(value.offset)
        w.string(value.metadata)
        w.i64(value.commit_timestamp)
        w.i64(value.expire_timestamp)
        return w.done()
    w.i16(OFFSET_COMMIT_VALUE_VERSION)
    w.i64(value.offset)
    w.i32(value.leader_epoch)
    w.string(value.metadata)
    w.i64(value.commit_timestamp)
    return w.done()


def decode_offset_value(data: bytes) -> OffsetCommitValue:
    r = _Reader(data)
    version = r.i16()
    if version in (0, 2):
        value = OffsetCommitValue(r.i64(), -1, r.nullable_string() or "", r.i64())
    elif version == 1:
        value = OffsetCommitValue(r.i64(), -1, r.nullable_string() or "", r.i64(), r.i64())
    elif version == 3:
        value = OffsetCommitValue(r.i64(), r.i32(), r.nullable_string() or "", r.i64())
    else:
        raise CorruptMessageError(f"unsupported OffsetCommitValue version {version}")
    r.end()
    return value


# -- group metadata values ---------------------------------------------------------------------


def encode_group_value(value: GroupMetadataValue) -> bytes:
    w = _Writer()
    w.i16(GROUP_METADATA_VALUE_VERSION)
    w.string(value.protocol_type)
    w.i32(value.generation)
    w.string(value.protocol)
    w.string(value.leader)
    w.i64(value.current_state_timestamp)
    w.i32(len(value.members))
    for m in value.members:
        w.string(m.member_id)
        w.string(m.group_instance_id)
        w.string(m.client_id)
        w.string(m.client_host)
        w.i32(m.rebalance_timeout_ms)
        w.i32(m.session_timeout_ms)
        w.bytes_(m.subscription)
        w.bytes_(m.assignment)
    return w.done()


def decode_group_value(data: bytes) -> GroupMetadataValue:
    r = _Reader(data)
    version = r.i16()
    if not 0 <= version <= 3:
        raise CorruptMessageError(f"unsupported GroupMetadataValue version {version}")
    protocol_type = r.string()
    generation = r.i32()
    protocol = r.nullable_string()
    leader = r.nullable_string()
    timestamp = r.i64() if version >= 2 else -1
    count = r.i32()
    if count < -1 or count > len(data):
        raise CorruptMessageError(f"bad member count {count}")
    members = []
    for _ in range(max(count, 0)):
        member_id = r.string()
        instance_id = r.nullable_string() if version >= 3 else None
        client_id = r.string()
        client_host = r.string()
        session = -1
        rebalance = r.i32() if version >= 1 else -1
        session = r.i32()
        if version == 0:
            rebalance = session  # v0 had one timeout for both (Kafka's reading of it)
        members.append(MemberMetadata(member_id, instance_id, client_id, client_host, rebalance,
                                      session, r.bytes_(), r.bytes_()))
    r.end()
    return GroupMetadataValue(protocol_type, generation, protocol, leader, timestamp,
                              tuple(members))


def decode_value(key: RecordKey, data: bytes | None
                 ) -> OffsetCommitValue | GroupMetadataValue | None:
    """The value for `key` (None = a tombstone)."""
    if data is None:
        return None
    if isinstance(key, OffsetCommitKey):
        return decode_offset_value(data)
    return decode_group_value(data)
