"""Client value types, serdes and client-side errors."""

from __future__ import annotations

import dataclasses

import pytest

from clients.errors import (
    BufferFullError,
    ClientClosedError,
    CommitFailedError,
    ConfigError,
    KafkaTimeoutError,
    RafkaError,
    SerializationError,
    WakeupError,
)
from clients.serde import (
    BytesSerde,
    JsonSerde,
    StringSerde,
    as_deserializer,
    as_serializer,
    deserialize,
    serialize,
)
from clients.types import (
    NewTopic,
    OffsetAndMetadata,
    PartitionInfo,
    Record,
    RecordMetadata,
    TimestampType,
    TopicDescription,
    TopicPartition,
)


def test_topic_partition_is_a_hashable_ordered_pair() -> None:
    tp = TopicPartition("orders", 3)
    topic, partition = tp
    assert (topic, partition) == ("orders", 3)
    assert {tp: 1}[TopicPartition("orders", 3)] == 1
    assert sorted([TopicPartition("b", 0), TopicPartition("a", 2), TopicPartition("a", 1)]) == [
        ("a", 1),
        ("a", 2),
        ("b", 0),
    ]
    assert str(tp) == "orders-3"


def test_record_next_offset_and_headers() -> None:
    record: Record[str, str] = Record(
        "t", 1, 41, 1000, TimestampType.CREATE_TIME, "k", "v",
        headers=(("a", b"1"), ("b", None), ("a", b"2")),
    )
    assert record.next_offset == 42
    assert record.topic_partition == TopicPartition("t", 1)
    assert record.header("a") == b"2"  # the last one, as Kafka's lastHeader
    assert record.header("b") is None
    assert record.header("missing") is None
    assert record.header_values("a") == (b"1", b"2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.offset = 1  # type: ignore[misc]


def test_record_metadata_and_offsets() -> None:
    meta = RecordMetadata("t", 2, 10, 1000)
    assert meta.log_start_offset == -1
    assert meta.topic_partition == TopicPartition("t", 2)
    assert OffsetAndMetadata(5) == OffsetAndMetadata(5, "", None)


def test_new_topic_with_replica_assignment_fixes_counts() -> None:
    topic = NewTopic("t", replica_assignment={0: [1, 2], 1: [2, 3]}, config={"retention.ms": "1"})
    assert topic.config == {"retention.ms": "1"}
    assert topic.replica_assignment == {0: (1, 2), 1: (2, 3)}
    hash(topic)  # usable in sets despite the mappings
    with pytest.raises(ValueError):
        NewTopic("t", num_partitions=3, replica_assignment={0: [1], 1: [2]})
    with pytest.raises(ValueError):
        NewTopic("t", replica_assignment={0: [1, 2], 1: [2]})
    with pytest.raises(ValueError):
        NewTopic("t", replica_assignment={1: [1]})


def test_topic_description_partition_lookup() -> None:
    info = PartitionInfo(0, 1, (1, 2), (1,), offline_replicas=(2,))
    desc = TopicDescription("t", (info,))
    assert desc.partition(0).isr == (1,)
    with pytest.raises(KeyError):
        desc.partition(1)


def test_serdes_round_trip() -> None:
    headers: list[tuple[str, bytes | None]] = []
    for serde, value in [
        (BytesSerde(), b"\x00\x01"),
        (StringSerde(), "héllo"),
        (StringSerde("latin-1"), "héllo"),
        (JsonSerde(), {"a": [1, 2, None], "b": "x"}),
    ]:
        data = serde.serialize("t", headers, value)  # type: ignore[attr-defined]
        assert isinstance(data, bytes)
        assert serde.deserialize("t", (), data) == value  # type: ignore[attr-defined]
    assert JsonSerde().serialize("t", headers, {"a": 1}) == b'{"a":1}'


def test_none_bypasses_serializers_so_tombstones_stay_null() -> None:
    json_serializer = as_serializer(JsonSerde())
    assert serialize(json_serializer, "t", [], None, is_key=False) is None
    assert deserialize(as_deserializer(JsonSerde()), "t", (), None, is_key=True) is None


def test_serializer_failures_become_serialization_errors() -> None:
    with pytest.raises(SerializationError, match="expected bytes"):
        serialize(as_serializer(None), "t", [], "not bytes", is_key=False)
    with pytest.raises(SerializationError, match="not bytes"):
        serialize(lambda topic, headers, data: 42, "t", [], "x", is_key=True)  # type: ignore
    with pytest.raises(SerializationError, match="deserialize value"):
        deserialize(as_deserializer(JsonSerde()), "t", (), b"{", is_key=False)


def test_one_argument_callables_are_accepted() -> None:
    ser = as_serializer(lambda v: v.encode())
    assert ser("t", [], "x") == b"x"
    de = as_deserializer(bytes.decode)
    assert de("t", (), b"x") == "x"


def test_client_errors_are_also_the_builtins_users_expect() -> None:
    timeout = KafkaTimeoutError("flush timed out", pending=3)
    assert isinstance(timeout, TimeoutError) and isinstance(timeout, RafkaError)
    assert timeout.pending == 3 and timeout.retriable
    assert isinstance(BufferFullError(), BufferError)
    assert isinstance(SerializationError("x"), ValueError)
    assert isinstance(ConfigError("x"), RafkaError)
    failed = CommitFailedError(reason="generation 5 is stale")
    assert failed.reason == "generation 5 is stale" and "stale" in str(failed)
    for cls in (WakeupError, ClientClosedError, BufferFullError):
        err = cls()
        assert int(err.code) == 0 and err.name == cls.error_name and not err.retriable
