"""ConsumerProtocol Subscription/Assignment bytes: Kafka's layouts, round trips, garbage."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clients.consumer.protocol import (
    Assignment,
    Subscription,
    decode_assignment,
    decode_subscription,
    encode_assignment,
    encode_subscription,
)
from clients.types import TopicPartition
from proto.errors import ErrorCode, RafkaError

TP = TopicPartition

# Hand-built Kafka bytes (big-endian; int16 version, int32 array counts, int16 string lengths,
# int32 bytes lengths, -1 = null).
SUB_V0 = bytes.fromhex(
    "0000"            # version 0
    "00000002"        # 2 topics
    "0003626172"      # "bar"
    "0003666f6f"      # "foo"
    "ffffffff"        # user_data null
)
SUB_V3 = bytes.fromhex(
    "0003"                    # version 3
    "00000001" "000174"       # topics ["t"]
    "00000002" "abcd"         # user_data 0xabcd
    "00000001" "000174"       # owned: topic "t"
    "00000002" "00000000" "00000003"  # partitions [0, 3]
    "00000007"                # generation 7
    "000272 31"               # rack "r1"
    .replace(" ", "")
)
ASSIGN_V0 = bytes.fromhex(
    "0000"
    "00000002"                 # 2 topics
    "000161" "00000001" "00000002"   # a: [2]
    "000162" "00000002" "00000000" "00000001"  # b: [0, 1]
    "00000000"                 # user_data empty (not null)
)


def test_encodes_kafka_v0_subscription_with_sorted_topics() -> None:
    assert encode_subscription(Subscription(("foo", "bar")), version=0) == SUB_V0


def test_decodes_kafka_v0_subscription() -> None:
    assert decode_subscription(SUB_V0) == Subscription(("bar", "foo"))


def test_v3_subscription_both_ways() -> None:
    expected = Subscription(
        ("t",), b"\xab\xcd", (TP("t", 0), TP("t", 3)), generation_id=7, rack_id="r1"
    )
    assert decode_subscription(SUB_V3) == expected
    assert encode_subscription(expected) == SUB_V3


def test_older_versions_drop_newer_fields() -> None:
    full = Subscription(("t",), None, (TP("t", 1),), generation_id=4, rack_id="r")
    assert decode_subscription(encode_subscription(full, 1)) == Subscription(
        ("t",), None, (TP("t", 1),)
    )
    assert decode_subscription(encode_subscription(full, 2)) == Subscription(
        ("t",), None, (TP("t", 1),), generation_id=4
    )
    assert encode_subscription(full, 2) == bytes.fromhex(
        "0002" "00000001" "000174" "ffffffff"                       # v2, ["t"], null
        "00000001" "000174" "00000001" "00000001" "00000004"        # owned t:[1], gen 4
    )


def test_assignment_both_ways() -> None:
    assignment = Assignment((TP("b", 1), TP("a", 2), TP("b", 0)), b"")
    assert encode_assignment(assignment, version=0) == ASSIGN_V0
    assert decode_assignment(ASSIGN_V0) == Assignment((TP("a", 2), TP("b", 0), TP("b", 1)), b"")


def test_empty_bytes_are_an_empty_assignment() -> None:
    assert decode_assignment(b"") == Assignment(())


def test_newer_version_is_read_as_our_newest_and_trailing_bytes_ignored() -> None:
    newer = b"\x00\x04" + SUB_V3[2:] + b"\x00\x00\x00\x09future"
    assert decode_subscription(newer) == decode_subscription(SUB_V3)
    assert decode_assignment(b"\x00\x05" + ASSIGN_V0[2:] + b"xx") == decode_assignment(ASSIGN_V0)


@pytest.mark.parametrize(
    "data",
    [
        b"\x00",                                   # no room for the version
        b"\xff\xff" + SUB_V0[2:],                  # negative version
        SUB_V0[:-1],                               # truncated user data length
        b"\x00\x00\x7f\xff\xff\xff",               # absurd topic count
        b"\x00\x00\x00\x00\x00\x01\x00\x05ab",     # string longer than the buffer
        b"\x00\x00\x00\x00\x00\x01\xff\xff\xff\xff\xff\xff",  # null topic name
        b"\x00\x00\x00\x00\x00\x01\x00\x02\xff\xfe\xff\xff\xff\xff",  # not UTF-8
        b"GET / HTTP/1.1\r\n",
    ],
)
def test_garbage_subscription_is_inconsistent_group_protocol(data: bytes) -> None:
    with pytest.raises(RafkaError) as info:
        decode_subscription(data)
    assert info.value.code is ErrorCode.INCONSISTENT_GROUP_PROTOCOL


@pytest.mark.parametrize("data", [b"\x00", b"\x00\x00\x00\x00\x00\x01\x00", ASSIGN_V0[:-2]])
def test_garbage_assignment_is_inconsistent_group_protocol(data: bytes) -> None:
    with pytest.raises(RafkaError) as info:
        decode_assignment(data)
    assert info.value.code is ErrorCode.INCONSISTENT_GROUP_PROTOCOL


def test_encode_rejects_unknown_versions() -> None:
    with pytest.raises(ValueError):
        encode_subscription(Subscription(()), version=4)
    with pytest.raises(ValueError):
        encode_assignment(Assignment(()), version=-1)


_names = st.text(min_size=1, max_size=12)
_tps = st.builds(TP, _names, st.integers(0, 2**31 - 1))
_blobs = st.none() | st.binary(max_size=40)


@settings(max_examples=200)
@given(
    topics=st.frozensets(_names, max_size=5),
    user_data=_blobs,
    owned=st.frozensets(_tps, max_size=8),
    generation=st.integers(-1, 2**31 - 1),
    rack=st.none() | _names,
)
def test_subscription_round_trip(
    topics: frozenset[str], user_data: bytes | None, owned: frozenset[TopicPartition],
    generation: int, rack: str | None,
) -> None:
    s = Subscription(tuple(sorted(topics)), user_data, tuple(sorted(owned)), generation, rack)
    assert decode_subscription(encode_subscription(s)) == s


@settings(max_examples=200)
@given(partitions=st.frozensets(_tps, max_size=10), user_data=_blobs)
def test_assignment_round_trip(
    partitions: frozenset[TopicPartition], user_data: bytes | None
) -> None:
    a = Assignment(tuple(sorted(partitions)), user_data)
    assert decode_assignment(encode_assignment(a)) == a


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_random_bytes_decode_or_raise_typed_error(data: bytes) -> None:
    for decode in (decode_subscription, decode_assignment):
        try:
            decode(data)
        except RafkaError as exc:
            assert exc.code is ErrorCode.INCONSISTENT_GROUP_PROTOCOL
