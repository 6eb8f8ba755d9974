"""Metadata records: the entries of the replicated metadata log, and their byte codec.

Theory of operation
-------------------
The controller quorum's Raft log (Kafka's `__cluster_metadata`, KIP-500/KIP-631) holds these
records. The active controller decides and *writes* records; every controller and every broker
*replays* the committed ones, in order, into a `proto.metadata_image.MetadataImage`. A record is
a fact ("broker 2 registered with epoch 17", "partition p's ISR is now [1, 3]"), never a request,
so replaying the same records always yields the same image.

Names, API keys and semantics follow Kafka's `metadata/src/main/resources/common/metadata/*.json`
(KAFKA_SEMANTICS.md §5.3). Rafka keeps the subset it uses and leaves out what it has no feature
for (directories, ELR, reassignment's adding/removing replicas, ACLs, SCRAM, quotas).

Conventions shared with Kafka:
- `NO_LEADER` (-1) is "no leader: the partition is offline".
- In a `PartitionChangeRecord`, a field left as None means "no change" (Kafka's NO_LEADER_CHANGE
  and null lists). Applying one always bumps `partition_epoch` by 1, and bumps `leader_epoch` by 1
  iff the `leader` field is set (`PartitionRegistration.merge`); the controller only sets it when
  the leader actually changes.
- The broker epoch is the metadata-log offset of the broker's `RegisterBrokerRecord`; the
  controller knows it when it writes the record, so it travels as a field.

Codec (`encode_record` / `decode_record`)
-----------------------------------------
One record is framed like a KRaft metadata record value (§5.2)::

    frameVersion uvarint (= 1) | apiKey uvarint | version uvarint (= 0) | body

The body is compact JSON: UTF-8, keys sorted, no whitespace, one key per dataclass field
(snake_case), enums as their integer value, nested dataclasses as objects, tuples as arrays,
None as null. It is deterministic (equal records give equal bytes) and readable in a hex dump.
`decode_record` checks the frame, the field set and every field's type, and requires the body to
be canonical (re-encoding gives back the same bytes), so it never returns a record that would
encode differently; any failure raises `CorruptMessageError`.

`encode_records` / `decode_records` frame a list of records that must commit atomically (topic
creation writes a TopicRecord, ConfigRecords and PartitionRecords in one Raft entry)::

    count uvarint | (length uvarint | record frame) * count
"""

from __future__ import annotations

import json
import random
import types
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, is_dataclass
from enum import IntEnum
from functools import cache
from typing import ClassVar, Union, get_args, get_origin, get_type_hints

from proto.errors import CorruptMessageError

NO_LEADER = -1  # Kafka LeaderConstants.NO_LEADER: the partition has no leader (offline)
FRAME_VERSION = 1  # KRaft's metadata record frame version


class LeaderRecoveryState(IntEnum):
    """KIP-704: RECOVERING after an unclean election, until the leader reports it recovered."""

    RECOVERED = 0
    RECOVERING = 1


class ConfigResourceType(IntEnum):
    """Kafka's `ConfigResource.Type` ids (the ones Rafka stores)."""

    TOPIC = 2
    BROKER = 4


class MetadataRecordType(IntEnum):
    """apiKey of each metadata record (Kafka's `MetadataRecordType`)."""

    REGISTER_BROKER_RECORD = 0
    UNREGISTER_BROKER_RECORD = 1
    TOPIC_RECORD = 2
    PARTITION_RECORD = 3
    CONFIG_RECORD = 4
    PARTITION_CHANGE_RECORD = 5
    REMOVE_TOPIC_RECORD = 9
    FEATURE_LEVEL_RECORD = 12
    PRODUCER_IDS_RECORD = 15
    BROKER_REGISTRATION_CHANGE_RECORD = 17
    NO_OP_RECORD = 20


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a broker serves clients and followers (Kafka's BrokerEndpoint, one listener)."""

    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class RegisterBrokerRecord:
    """A broker registered (BrokerRegistration request, §5.4). A new incarnation replaces the old.

    Kafka writes it with fenced=True; it is unfenced later by a BrokerRegistrationChangeRecord.
    Snapshots write the current state (possibly unfenced or in controlled shutdown) in one record.
    """

    API_KEY: ClassVar[MetadataRecordType] = MetadataRecordType.REGISTER_BROKER_RECORD
    broker_id: int
    incarnation_id: str  # UUID string, random per broker process start
    broker_epoch: int  # the offset of this record in the metadata log
    endpoint: Endpoint
    rack: str | None = None
    fenced: bool = True
    in_controlled_shutdown: bool = False


@dataclass(frozen=True, slots=True)
class UnregisterBrokerRecord:
    """A broker's registration was removed (UnregisterBroker admin call)."""

    API_KEY: ClassVar[MetadataRecordType] = MetadataRecordType.UNREGISTER_BROKER_RECORD
    broker_id: int
    broker_epoch: int


@dataclass(frozen=True, slots=True)
class BrokerRegistrationChangeRecord:
    """Fence, unfence or mark controlled shutdown (the newer way; replaces Fence/UnfenceBroker).

    None means "no change" for `fenced` and `in_controlled_shutdown`.
    """

    API_KEY: ClassVar[MetadataRecordType] = MetadataRecordType.BROKER_REGISTRATION_CHANGE_RECORD
    broker_id: int
    broker_epoch: int  # must match the current registration's epoch
    fenced: bool | None = None
    in_controlled_shutdown: bool | None = None


@dataclass(frozen=True, slots=True)
class TopicRecord:
    """A topic was created. Its partitions follow as PartitionRecords (ids 0..n-1, in order)."""

    API_KEY: ClassVar[MetadataRecordType] = MetadataRecordType.TOPIC_RECORD
    name: str
    topic_id: str  # UUID string


@dataclass(frozen=True, slots=True)
class PartitionRecord:
    """A partition was created, with its full state (also how snapshots store partitions)."""

    API_KEY: ClassVar[MetadataRecordType] = MetadataRecordType.PARTITION_RECORD
    topic_id: str
    partition_id: int
    replicas: tuple[int, ...]  # assignment order; replicas[0] is the preferred leader
    isr: tuple[int, ...]  # invariant: non-empty subset of replicas
    leader: int  # NO_LEADER or a member of isr
    leader_epoch: int = 0
    partition_epoch: int = 0
    leader_recovery_state: LeaderRecoveryState = LeaderRecoveryState.RECOVERED


@dataclass(frozen=True, slots=True)
class PartitionChangeRecord:
    """A change to one partition; None fields mean "no change" (Kafka's PartitionChangeRecord).

    Applying it bumps partition_epoch by 1, and leader_epoch by 1 iff `leader` is set.
    """

    API_KEY: ClassVar[MetadataRecordType] = MetadataRecordType.PARTITION_CHANGE_RECORD
    topic_id: str
    partition_id: int
    isr: tuple[int, ...] | None = None
    leader: int | None = None  # NO_LEADER (-1) means "now offline"; None means unchanged
    replicas: tuple[int, ...] | None = None
    leader_recovery_state: LeaderRecoveryState | None = None


@dataclass(frozen=True, slots=True)
class RemoveTopicRecord:
    """A topic was deleted, with all its partitions and its topic configs."""

    API_KEY: ClassVar[MetadataRecordType] = MetadataRecordType.REMOVE_TOPIC_RECORD
    topic_id: str


@dataclass(frozen=True, slots=True)
class ConfigRecord:
    """A dynamic config was set (value) or deleted (value None) on a topic or broker.

    For BROKER resources, resource_name "" is the cluster-wide default (as in Kafka).
    """

    API_KEY: ClassVar[MetadataRecordType] = MetadataRecordType.CONFIG_RECORD
    resource_type: ConfigResourceType
    resource_name: str
    name: str
    value: str | None


@dataclass(frozen=True, slots=True)
class FeatureLevelRecord:
    """A finalized feature level (e.g. metadata.version); Rafka stores but does not act on it."""

    API_KEY: ClassVar[MetadataRecordType] = MetadataRecordType.FEATURE_LEVEL_RECORD
    name: str
    feature_level: int


@dataclass(frozen=True, slots=True)
class ProducerIdsRecord:
    """A block of producer ids was handed to a broker; ids below next_producer_id are taken."""

    API_KEY: ClassVar[MetadataRecordType] = MetadataRecordType.PRODUCER_IDS_RECORD
    broker_id: int
    broker_epoch: int
    next_producer_id: int  # invariant: strictly increases from record to record


@dataclass(frozen=True, slots=True)
class NoOpRecord:
    """Written periodically so followers see the log advance (metadata.max.idle.interval.ms)."""

    API_KEY: ClassVar[MetadataRecordType] = MetadataRecordType.NO_OP_RECORD


MetadataRecord = Union[
    RegisterBrokerRecord,
    UnregisterBrokerRecord,
    BrokerRegistrationChangeRecord,
    TopicRecord,
    PartitionRecord,
    PartitionChangeRecord,
    RemoveTopicRecord,
    ConfigRecord,
    FeatureLevelRecord,
    ProducerIdsRecord,
    NoOpRecord,
]

RECORD_CLASSES: tuple[type[MetadataRecord], ...] = get_args(MetadataRecord)
RECORD_CLASS_BY_API_KEY: dict[int, type[MetadataRecord]] = {
    int(cls.API_KEY): cls for cls in RECORD_CLASSES
}
RECORD_VERSION = 0  # every record is at version 0; bump per class when a field is added


def new_uuid(rng: random.Random) -> str:
    """A random (version 4) UUID string from an injected `random.Random` (topic/incarnation ids).

    Never the zero UUID, which Kafka reserves (`Uuid.ZERO_UUID`).
    """
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


# --------------------------------------------------------------------------------------------
# Codec
# --------------------------------------------------------------------------------------------


def encode_record(record: MetadataRecord) -> bytes:
    """Frame one record: frameVersion, apiKey, version (uvarints), then canonical JSON.

    Raises:
        TypeError: a field holds a value of the wrong type (a bug in the writer).
    """
    cls = type(record)
    if cls not in RECORD_CLASS_BY_API_KEY.values():
        raise TypeError(f"not a metadata record: {cls.__name__}")
    body = _to_json_value(cls, record, cls.__name__)
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    header = (
        write_uvarint(FRAME_VERSION)
        + write_uvarint(int(record.API_KEY))
        + write_uvarint(RECORD_VERSION)
    )
    return header + text.encode("utf-8")


def decode_record(data: bytes | bytearray | memoryview) -> MetadataRecord:
    """Parse one framed record (the inverse of `encode_record`).

    Raises:
        CorruptMessageError: bad frame version, unknown apiKey or version, invalid UTF-8 or
            JSON, missing/extra/mistyped fields, or a non-canonical body.
    """
    buf = bytes(data)
    frame_version, pos = read_uvarint(buf, 0)
    if frame_version != FRAME_VERSION:
        raise CorruptMessageError(f"metadata record frame version {frame_version} != 1")
    api_key, pos = read_uvarint(buf, pos)
    version, pos = read_uvarint(buf, pos)
    cls = RECORD_CLASS_BY_API_KEY.get(api_key)
    if cls is None:
        raise CorruptMessageError(f"unknown metadata record apiKey {api_key}")
    if version != RECORD_VERSION:
        raise CorruptMessageError(f"unsupported version {version} of {cls.__name__}")
    try:
        body = json.loads(buf[pos:].decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptMessageError(f"{cls.__name__}: body is not valid JSON: {exc}") from None
    record = _from_json_value(cls, body, cls.__name__)
    assert isinstance(record, cls)
    if encode_record(record) != buf:
        raise CorruptMessageError(f"{cls.__name__}: body is not in canonical form")
    return record


def encode_records(records: Sequence[MetadataRecord]) -> bytes:
    """Frame records that commit together: count, then each record length-prefixed."""
    out = bytearray(write_uvarint(len(records)))
    for record in records:
        frame = encode_record(record)
        out += write_uvarint(len(frame))
        out += frame
    return bytes(out)


def decode_records(data: bytes | bytearray | memoryview) -> list[MetadataRecord]:
    """Parse `encode_records` output.

    Raises:
        CorruptMessageError: truncated, trailing bytes, or any record that fails to decode.
    """
    buf = bytes(data)
    count, pos = read_uvarint(buf, 0)
    records: list[MetadataRecord] = []
    for index in range(count):
        length, pos = read_uvarint(buf, pos)
        if pos + length > len(buf):
            raise CorruptMessageError(
                f"record {index} of {count}: length {length} runs past the end ({len(buf)} bytes)"
            )
        records.append(decode_record(buf[pos:pos + length]))
        pos += length
    if pos != len(buf):
        raise CorruptMessageError(f"{len(buf) - pos} trailing bytes after {count} records")
    return records


def write_uvarint(value: int) -> bytes:
    """Kafka's unsigned varint (ByteUtils.writeUnsignedVarint): 7 bits per byte, LSB first."""
    assert value >= 0, value
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_uvarint(buf: bytes, pos: int, max_bytes: int = 5) -> tuple[int, int]:
    """Read an unsigned varint at `pos`; returns (value, next position).

    At most `max_bytes` bytes: 5 is Kafka's 32-bit unsigned varint, 10 holds 64 bits.

    Raises:
        CorruptMessageError: truncated or too long.
    """
    value = 0
    for shift in range(0, 7 * max_bytes, 7):
        if pos >= len(buf):
            raise CorruptMessageError(f"truncated varint at byte {pos}")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    raise CorruptMessageError(f"varint longer than {max_bytes} bytes ending at byte {pos}")


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


@cache
def _field_types(cls: type) -> tuple[tuple[str, object], ...]:
    """(field name, resolved annotation) for a record or nested dataclass, in field order."""
    hints = get_type_hints(cls)
    return tuple((f.name, hints[f.name]) for f in fields(cls))


def _optional_arm(tp: object) -> object | None:
    """For `X | None` return X; otherwise None."""
    if get_origin(tp) in (Union, types.UnionType):
        arms = [arm for arm in get_args(tp) if arm is not type(None)]
        assert len(arms) == 1, f"only X | None unions are supported: {tp}"
        arm: object = arms[0]
        return arm
    return None


def _to_json_value(tp: object, value: object, path: str) -> object:
    """Check `value` against annotation `tp` and convert it to a JSON value."""
    arm = _optional_arm(tp)
    if arm is not None:
        return None if value is None else _to_json_value(arm, value, path)
    if get_origin(tp) is tuple:
        item_tp = get_args(tp)[0]
        if type(value) is not tuple:
            raise TypeError(f"{path}: expected a tuple, got {type(value).__name__}")
        return [_to_json_value(item_tp, item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(tp, type) and issubclass(tp, IntEnum):
        if not isinstance(value, tp):
            raise TypeError(f"{path}: expected {tp.__name__}, got {value!r}")
        return int(value)
    if isinstance(tp, type) and is_dataclass(tp):
        if type(value) is not tp:
            raise TypeError(f"{path}: expected {tp.__name__}, got {type(value).__name__}")
        return {
            name: _to_json_value(field_tp, getattr(value, name), f"{path}.{name}")
            for name, field_tp in _field_types(tp)
        }
    if tp in (int, bool, str):
        if type(value) is not tp:
            expected_name = getattr(tp, "__name__", str(tp))
            raise TypeError(f"{path}: expected {expected_name}, got {value!r}")
        return value
    raise AssertionError(f"{path}: unsupported field type {tp}")


def _from_json_value(tp: object, value: object, path: str) -> object:
    """Check a decoded JSON value against annotation `tp` and build the Python value."""
    arm = _optional_arm(tp)
    if arm is not None:
        return None if value is None else _from_json_value(arm, value, path)
    if get_origin(tp) is tuple:
        item_tp = get_args(tp)[0]
        if type(value) is not list:
            raise CorruptMessageError(f"{path}: expected an array, got {value!r}")
        return tuple(_from_json_value(item_tp, item, f"{path}[{i}]") for i, item in
                     enumerate(value))
    if isinstance(tp, type) and issubclass(tp, IntEnum):
        if type(value) is not int or value not in tp._value2member_map_:
            raise CorruptMessageError(f"{path}: {value!r} is not a {tp.__name__}")
        return tp(value)
    if isinstance(tp, type) and is_dataclass(tp):
        return _dataclass_from_json(tp, value, path)
    if tp in (int, bool, str):
        if type(value) is not tp:
            expected_name = getattr(tp, "__name__", str(tp))
            raise CorruptMessageError(f"{path}: expected {expected_name}, got {value!r}")
        return value
    raise AssertionError(f"{path}: unsupported field type {tp}")


def _dataclass_from_json(cls: type, value: object, path: str) -> object:
    if type(value) is not dict:
        raise CorruptMessageError(f"{path}: expected an object, got {value!r}")
    field_types = _field_types(cls)
    expected = {name for name, _ in field_types}
    if set(value) != expected:
        missing = sorted(expected - set(value))
        extra = sorted(set(value) - expected)
        raise CorruptMessageError(f"{path}: missing fields {missing}, unknown fields {extra}")
    kwargs = {
        name: _from_json_value(field_tp, value[name], f"{path}.{name}")
        for name, field_tp in field_types
    }
    factory: Callable[..., object] = cls
    return factory(**kwargs)
