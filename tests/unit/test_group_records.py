"""The `__consumer_offsets` record codec and the coordinator partition (KAFKA_SEMANTICS
§6.7, §6.9)."""

from __future__ import annotations

import struct

import pytest

from cluster.group.hashing import coordinator_partition, java_string_hash, kafka_abs
from cluster.group.records import (
    GroupMetadataKey,
    GroupMetadataValue,
    MemberMetadata,
    OffsetCommitKey,
    OffsetCommitValue,
    decode_group_value,
    decode_key,
    decode_offset_value,
    decode_value,
    encode_group_value,
    encode_key,
    encode_offset_value,
)
from proto.errors import CorruptMessageError


@pytest.mark.parametrize("group, hash_, partition", [
    ("my-group", -1906497762, 12), ("test-group", 627841412, 12), ("group1", -1237460590, 40),
    ("", 0, 0), ("polygenelubricants", -(2**31), 0),
])
def test_coordinator_partition_matches_kafka(group: str, hash_: int, partition: int) -> None:
    assert java_string_hash(group) == hash_
    assert coordinator_partition(group, 50) == partition


def test_java_hash_uses_utf16_code_units_and_kafka_abs_maps_min_to_zero() -> None:
    assert java_string_hash("é") == 0xE9
    assert java_string_hash("😀") == 31 * 0xD83D + 0xDE00  # a surrogate pair: two units
    assert kafka_abs(-(2**31)) == 0 and kafka_abs(-5) == 5
    with pytest.raises(ValueError):
        coordinator_partition("g", 0)


def s16(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def test_keys_have_kafkas_layout() -> None:
    key = OffsetCommitKey("g", "topic", 3)
    assert encode_key(key) == b"\x00\x01" + s16("g") + s16("topic") + b"\x00\x00\x00\x03"
    assert encode_key(GroupMetadataKey("g")) == b"\x00\x02" + s16("g")
    assert decode_key(encode_key(key)) == key
    assert decode_key(b"\x00\x00" + s16("g") + s16("t") + b"\x00\x00\x00\x01") == \
        OffsetCommitKey("g", "t", 1)  # key v0
    assert decode_key(b"\x00\x03" + s16("g")) is None  # KIP-848 records: skipped


def test_offset_values_v3_written_and_v0_to_v3_read() -> None:
    value = OffsetCommitValue(42, 5, "meta", 1_700_000_000_000)
    data = encode_offset_value(value)
    assert data == (b"\x00\x03" + struct.pack(">q", 42) + struct.pack(">i", 5) + s16("meta")
                    + struct.pack(">q", 1_700_000_000_000))
    assert decode_offset_value(data) == value
    v0 = b"\x00\x00" + struct.pack(">q", 7) + s16("m") + struct.pack(">q", 99)
    assert decode_offset_value(v0) == OffsetCommitValue(7, -1, "m", 99)
    v1 = b"\x00\x01" + struct.pack(">q", 7) + s16("") + struct.pack(">qq", 99, 200)
    assert decode_offset_value(v1) == OffsetCommitValue(7, -1, "", 99, 200)
    assert decode_offset_value(encode_offset_value(OffsetCommitValue(7, -1, "", 99, 200))) == \
        OffsetCommitValue(7, -1, "", 99, 200)


def test_group_value_roundtrip_and_v0() -> None:
    value = GroupMetadataValue("consumer", 3, "range", "m-1", 123, (
        MemberMetadata("m-1", None, "c1", "/127.0.0.1", 300_000, 10_000, b"sub", b"asg"),
        MemberMetadata("m-2", "i-2", "c2", "/127.0.0.2", 300_000, 45_000, b"", b""),
    ))
    assert decode_group_value(encode_group_value(value)) == value
    empty = GroupMetadataValue("consumer", 4, None, None, 5, ())
    assert decode_group_value(encode_group_value(empty)) == empty
    v0 = (b"\x00\x00" + s16("consumer") + struct.pack(">i", 1) + s16("range") + s16("m")
          + struct.pack(">i", 1) + s16("m") + s16("c") + s16("h") + struct.pack(">i", 6000)
          + struct.pack(">i", 1) + b"s" + struct.pack(">i", 1) + b"a")
    assert decode_group_value(v0) == GroupMetadataValue(
        "consumer", 1, "range", "m", -1, (MemberMetadata("m", None, "c", "h", 6000, 6000, b"s",
                                                         b"a"),))


def test_tombstones_and_corruption() -> None:
    assert decode_value(GroupMetadataKey("g"), None) is None
    with pytest.raises(CorruptMessageError):
        decode_key(b"\x00\x01\x00")
    with pytest.raises(CorruptMessageError):
        decode_offset_value(b"\x00\x09" + b"\x00" * 20)
    with pytest.raises(CorruptMessageError):
        decode_offset_value(encode_offset_value(OffsetCommitValue(1)) + b"x")
    with pytest.raises(CorruptMessageError):
        decode_key(b"\xff\xff")
