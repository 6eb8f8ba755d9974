"""The producer's send hot path: the batch builder's bytes, `append_value` against `append`,
and delivery futures that share their batch's state (also across a split)."""

from __future__ import annotations

import concurrent.futures
import random
import threading

import pytest

from clients.producer import AccumulatorConfig, RecordAccumulator
from clients.producer.batch_builder import ProducerBatchBuilder
from clients.producer.sender_runtime import DeliveryFuture, _BatchSink
from clients.types import UNKNOWN_PARTITION, TopicPartition
from proto.errors import InvalidRecordError
from proto.records import RecordBatch, RecordBatchBuilder

TP = TopicPartition("t", 0)


def _random_record(rng: random.Random, base_ts: int) -> tuple:
    size = rng.choice([0, 1, 63, 64, 100, 127, 128, 8191, 8192, 16383, 16384, 20000])
    value = None if rng.random() < 0.1 else rng.randbytes(size)
    key = None if rng.random() < 0.5 else rng.randbytes(rng.choice([0, 3, 200]))
    headers = [] if rng.random() < 0.7 else [("h", b"x"), ("nul", None)]
    ts = base_ts + rng.choice([0, 1, 63, 64, 9000, 20000, -5])
    return value, key, headers, ts


@pytest.mark.parametrize("codec", ["none", "gzip"])
def test_builder_writes_the_same_bytes_as_the_reference_builder(seed: int, codec: str) -> None:
    rng = random.Random(seed)
    base_ts = 1_700_000_000_000
    ours = ProducerBatchBuilder(codec)
    reference = RecordBatchBuilder(codec, producer_id=7, producer_epoch=2, base_sequence=40,
                                   now_ms=base_ts)
    for i in range(300):
        value, key, headers, ts = _random_record(rng, base_ts)
        fast = key is None and not headers and value is not None and ts >= base_ts
        index = ours.append_value(value, ts, 1 << 30) if fast else ours.append(
            value, key, headers, ts)
        assert index == reference.append(value, key, headers, ts) == i
        assert ours.size == reference.estimated_size_in_bytes()
    data = ours.build(7, 2, 40)
    assert data == reference.build()
    batch = RecordBatch(data)
    batch.validate()
    assert batch.base_sequence == 40 and batch.records_count == 300


def test_builder_room_check_and_errors() -> None:
    builder = ProducerBatchBuilder()
    assert builder.append_value(b"x" * 500, 10, 100) == 0  # an empty batch always takes one
    assert builder.append_value(b"x", 10, 100) == -1
    assert not builder.has_room_for(None, b"x", (), 100)
    with pytest.raises(ValueError):
        builder.append(b"x", None, (), -2)
    with pytest.raises(InvalidRecordError):
        builder.append(b"x", None, [(b"bytes-key", b"v")], 10)  # type: ignore[list-item]


def test_append_value_matches_append(seed: int) -> None:
    """The same records through the fast path and through `append` alone: same partitions,
    same batches, same bytes."""
    config = AccumulatorConfig(enable_idempotence=False, batch_size=2048, linger_ms=5)
    fast = RecordAccumulator(config, random.Random(seed))
    slow = RecordAccumulator(config, random.Random(seed))
    rng = random.Random(seed)
    available = (0, 1, 2, 3)
    for i in range(3000):
        value = rng.randbytes(rng.choice([10, 100, 300]))
        explicit = rng.random() < 0.2
        partition = rng.randrange(4) if explicit else UNKNOWN_PARTITION
        ts = 1000 + i // 7
        hit = fast.append_value("t", partition, ts, value, 4, available)
        expected = slow.append(TopicPartition("t", partition), ts, None, value, (), ts,
                               num_partitions=4, available_partitions=available)
        if hit is None:
            got = fast.append(TopicPartition("t", partition), ts, None, value, (), ts,
                              num_partitions=4, available_partitions=available)
            assert got == expected
        else:
            batch, index, ready = hit
            assert (batch.topic_partition.partition, batch.batch_id, index) == (
                expected.partition, expected.batch_id, expected.relative_index)
            assert ready == expected.batch_is_full
    for p in available:
        tp = TopicPartition("t", p)
        ours = [b.builder.build() for b in fast.queued(tp)]  # type: ignore[union-attr]
        theirs = [b.builder.build() for b in slow.queued(tp)]  # type: ignore[union-attr]
        assert ours == theirs


def _future(sink: _BatchSink, index: int) -> DeliveryFuture:
    return DeliveryFuture(sink, index, 123)


def test_futures_share_the_batch_outcome() -> None:
    sink = _BatchSink(TP)
    futures = [_future(sink, i) for i in range(3)]
    called: list[object] = []
    futures[1].add_done_callback(lambda f: called.append(f.result().offset))
    waiter = threading.Thread(target=lambda: called.append(futures[2].result(10).offset))
    waiter.start()
    assert not any(f.done() for f in futures)
    sink.succeed(100, -1, 0)
    waiter.join(10)
    assert sorted(called) == [101, 102]  # type: ignore[type-var]
    assert [f.result(0).offset for f in futures] == [100, 101, 102]
    assert futures[0].result(0).timestamp == 123
    done, _ = concurrent.futures.wait(futures, timeout=0)
    assert len(done) == 3
    late: list[object] = []
    futures[0].add_done_callback(lambda f: late.append(f.exception()))
    assert late == [None]


def test_futures_follow_a_split_batch() -> None:
    sink = _BatchSink(TP)
    futures = [_future(sink, i) for i in range(6)]
    seen: dict[int, object] = {}
    for i, f in enumerate(futures):
        f.add_done_callback(lambda f, i=i: seen.__setitem__(
            i, f.exception() or f.result().offset))
    first, second = _BatchSink(TP, sink.cond), _BatchSink(TP, sink.cond)
    sink.split([(0, first), (4, second)])
    third, fourth = _BatchSink(TP, sink.cond), _BatchSink(TP, sink.cond)
    first.split([(0, third), (2, fourth)])  # split again: records 0-1 and 2-3
    second.succeed(50, -1, 0)
    assert seen == {4: 50, 5: 51} and not futures[0].done()
    error = RuntimeError("boom")
    third.fail(error)
    fourth.succeed(10, -1, 0)
    assert seen == {0: error, 1: error, 2: 10, 3: 11, 4: 50, 5: 51}
    assert futures[3].result(0).offset == 11
    with pytest.raises(RuntimeError):
        futures[1].result(0)
