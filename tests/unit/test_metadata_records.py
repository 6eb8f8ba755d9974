"""Metadata records and their codec (proto/metadata.py)."""

from __future__ import annotations

import json
import random
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proto.errors import CorruptMessageError
from proto.metadata import (
    RECORD_CLASSES,
    BrokerRegistrationChangeRecord,
    ConfigRecord,
    ConfigResourceType,
    Endpoint,
    FeatureLevelRecord,
    LeaderRecoveryState,
    MetadataRecord,
    MetadataRecordType,
    NoOpRecord,
    PartitionChangeRecord,
    PartitionRecord,
    ProducerIdsRecord,
    RegisterBrokerRecord,
    RemoveTopicRecord,
    TopicRecord,
    UnregisterBrokerRecord,
    decode_record,
    decode_records,
    encode_record,
    encode_records,
    new_uuid,
    write_uvarint,
)

TOPIC_ID = "6f1c2a4e-9d3b-4c1a-8e7f-0a1b2c3d4e5f"

EXAMPLES: list[MetadataRecord] = [
    RegisterBrokerRecord(1, "inc-1", 17, Endpoint("127.0.0.1", 9092), rack="r1"),
    UnregisterBrokerRecord(1, 17),
    BrokerRegistrationChangeRecord(1, 17, fenced=False),
    BrokerRegistrationChangeRecord(2, 5, in_controlled_shutdown=True),
    TopicRecord("orders", TOPIC_ID),
    PartitionRecord(TOPIC_ID, 0, (1, 2, 3), (1, 2), 1, 4, 9, LeaderRecoveryState.RECOVERED),
    PartitionChangeRecord(TOPIC_ID, 3, isr=(2,), leader=-1),
    PartitionChangeRecord(TOPIC_ID, 3, leader_recovery_state=LeaderRecoveryState.RECOVERING),
    RemoveTopicRecord(TOPIC_ID),
    ConfigRecord(ConfigResourceType.TOPIC, "orders", "retention.ms", "1000"),
    ConfigRecord(ConfigResourceType.BROKER, "", "log.retention.ms", None),
    FeatureLevelRecord("metadata.version", 1),
    ProducerIdsRecord(1, 17, 2000),
    NoOpRecord(),
]


def test_every_record_class_has_an_example_and_kafkas_api_key() -> None:
    assert {type(r) for r in EXAMPLES} == set(RECORD_CLASSES)
    assert RegisterBrokerRecord.API_KEY == 0
    assert TopicRecord.API_KEY == 2
    assert PartitionRecord.API_KEY == 3
    assert PartitionChangeRecord.API_KEY == 5
    assert RemoveTopicRecord.API_KEY == 9
    assert ProducerIdsRecord.API_KEY == 15
    assert BrokerRegistrationChangeRecord.API_KEY == 17
    assert NoOpRecord.API_KEY == 20


@pytest.mark.parametrize("record", EXAMPLES, ids=lambda r: type(r).__name__)
def test_example_records_round_trip(record: MetadataRecord) -> None:
    data = encode_record(record)
    assert decode_record(data) == record
    assert encode_record(decode_record(data)) == data


def test_frame_is_frame_version_api_key_version_then_sorted_compact_json() -> None:
    data = encode_record(TopicRecord("orders", TOPIC_ID))
    assert data[:3] == bytes([1, MetadataRecordType.TOPIC_RECORD, 0])
    assert data[3:] == b'{"name":"orders","topic_id":"' + TOPIC_ID.encode() + b'"}'


def test_partition_change_record_unset_fields_encode_as_null() -> None:
    body = json.loads(encode_record(PartitionChangeRecord(TOPIC_ID, 0, isr=(1,)))[3:])
    assert body["leader"] is None and body["replicas"] is None and body["isr"] == [1]


def test_encoding_a_list_instead_of_a_tuple_is_a_type_error() -> None:
    bad = PartitionRecord(TOPIC_ID, 0, [1, 2], (1,), 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="replicas"):
        encode_record(bad)


def test_encoding_a_bool_for_an_int_field_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="broker_id"):
        encode_record(UnregisterBrokerRecord(True, 1))


def _frame(api_key: int, body: bytes, *, frame_version: int = 1, version: int = 0) -> bytes:
    return write_uvarint(frame_version) + write_uvarint(api_key) + write_uvarint(version) + body


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "truncated varint"),
        (b"\x01", "truncated varint"),
        (b"\x01\xff\xff\xff\xff\xff\x00", "longer than 5 bytes"),
        (_frame(2, b'{"name":"a","topic_id":"b"}', frame_version=0), "frame version"),
        (_frame(99, b"{}"), "unknown metadata record apiKey 99"),
        (_frame(2, b'{"name":"a","topic_id":"b"}', version=1), "unsupported version 1"),
        (_frame(2, b'{"name":"a"'), "not valid JSON"),
        (_frame(2, b'\xff\xfe'), "not valid JSON"),
        (_frame(2, b'{"name":"a"}'), r"missing fields \['topic_id'\]"),
        (_frame(2, b'{"extra":1,"name":"a","topic_id":"b"}'), r"unknown fields \['extra'\]"),
        (_frame(2, b'{"name":"a","name":"c","topic_id":"b"}'), "duplicate key"),
        (_frame(2, b'{"name":1,"topic_id":"b"}'), "TopicRecord.name: expected str"),
        (_frame(1, b'{"broker_epoch":1,"broker_id":true}'), "expected int"),
        (_frame(2, b'{"topic_id":"b","name":"a"}'), "canonical"),
        (_frame(2, b'{"name": "a","topic_id":"b"}'), "canonical"),
        (_frame(20, b"[]"), "expected an object"),
        (_frame(4, b'{"name":"n","resource_name":"r","resource_type":3,"value":null}'),
         "not a ConfigResourceType"),
        (_frame(3, b'{"isr":[1],"leader":1,"leader_epoch":0,"leader_recovery_state":0,'
                   b'"partition_epoch":0,"partition_id":0,"replicas":[1.5],"topic_id":"t"}'),
         r"replicas\[0\]: expected int"),
    ],
)
def test_garbage_is_rejected_as_corrupt_message(data: bytes, message: str) -> None:
    with pytest.raises(CorruptMessageError, match=message):
        decode_record(data)


def test_record_list_round_trips_in_order() -> None:
    assert decode_records(encode_records(EXAMPLES)) == EXAMPLES
    assert decode_records(encode_records([])) == []


def test_record_list_with_trailing_or_missing_bytes_is_corrupt() -> None:
    data = encode_records(EXAMPLES[:3])
    with pytest.raises(CorruptMessageError, match="trailing"):
        decode_records(data + b"\x00")
    with pytest.raises(CorruptMessageError, match="past the end"):
        decode_records(data[:-1])


def test_new_uuid_is_a_version_4_uuid_determined_by_the_injected_rng() -> None:
    first = new_uuid(random.Random(7))
    assert first == new_uuid(random.Random(7))
    assert uuid.UUID(first).version == 4
    assert first != new_uuid(random.Random(8))


# ---------------------------------------------------------------- property tests

ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
ids = st.integers(min_value=-1, max_value=2**31 - 1)
text = st.text(max_size=20)
replica_lists = st.lists(ids, max_size=6).map(tuple)


def _optional(strategy: st.SearchStrategy) -> st.SearchStrategy:  # type: ignore[type-arg]
    return st.none() | strategy


RECORDS = st.one_of(
    st.builds(RegisterBrokerRecord, ids, text, ints,
              st.builds(Endpoint, text, st.integers(0, 65535)), _optional(text), st.booleans(),
              st.booleans()),
    st.builds(UnregisterBrokerRecord, ids, ints),
    st.builds(BrokerRegistrationChangeRecord, ids, ints, _optional(st.booleans()),
              _optional(st.booleans())),
    st.builds(TopicRecord, text, text),
    st.builds(PartitionRecord, text, ids, replica_lists, replica_lists, ids, ints, ints,
              st.sampled_from(LeaderRecoveryState)),
    st.builds(PartitionChangeRecord, text, ids, _optional(replica_lists), _optional(ids),
              _optional(replica_lists), _optional(st.sampled_from(LeaderRecoveryState))),
    st.builds(RemoveTopicRecord, text),
    st.builds(ConfigRecord, st.sampled_from(ConfigResourceType), text, text, _optional(text)),
    st.builds(FeatureLevelRecord, text, ints),
    st.builds(ProducerIdsRecord, ids, ints, ints),
    st.just(NoOpRecord()),
)


@settings(max_examples=300, deadline=None)
@given(RECORDS)
def test_every_record_round_trips_exactly(record: MetadataRecord) -> None:
    data = encode_record(record)
    assert decode_record(data) == record
    assert encode_record(record) == data  # deterministic


@settings(max_examples=50, deadline=None)
@given(st.lists(RECORDS, max_size=8))
def test_record_lists_round_trip(records: list[MetadataRecord]) -> None:
    assert decode_records(encode_records(records)) == records


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_decode_or_raise_corrupt_message(data: bytes) -> None:
    try:
        record = decode_record(data)
    except CorruptMessageError:
        return
    assert encode_record(record) == data


@settings(max_examples=200, deadline=None)
@given(RECORDS, st.data())
def test_a_flipped_byte_never_decodes_to_a_different_encoding(
    record: MetadataRecord, data: st.DataObject
) -> None:
    encoded = bytearray(encode_record(record))
    index = data.draw(st.integers(0, len(encoded) - 1))
    encoded[index] ^= data.draw(st.integers(1, 255))
    try:
        decoded = decode_record(bytes(encoded))
    except CorruptMessageError:
        return
    assert encode_record(decoded) == bytes(encoded)  # a valid record, never a mangled one
