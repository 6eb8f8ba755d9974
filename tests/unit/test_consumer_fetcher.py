"""Fetcher core: fetch planning per leader, answers, skipping, resets, max.poll.records."""

from __future__ import annotations

import gc

import pytest

from clients.config import ConsumerConfig
from clients.consumer.fetcher import FetchedPartition, Fetcher, FetchRequestSpec
from clients.consumer.subscription import ResetStrategy, SubscriptionState
from clients.errors import SerializationError
from clients.types import TopicPartition
from proto.errors import CorruptMessageError, ErrorCode, OffsetOutOfRangeError
from proto.records import RecordBatchBuilder, TimestampType

A0 = TopicPartition("a", 0)
A1 = TopicPartition("a", 1)
B0 = TopicPartition("b", 0)
LEADERS = {A0: (1, 5), A1: (2, 3), B0: (1, 7)}


def batch(base_offset: int, n: int, *, epoch: int = 5, ts: int = 1000) -> bytes:
    b = RecordBatchBuilder(base_offset=base_offset, partition_leader_epoch=epoch, now_ms=ts)
    for i in range(n):
        b.append(b"v%d" % (base_offset + i), key=b"k%d" % (base_offset + i),
                 headers=[("h", b"x")], timestamp_ms=ts + base_offset + i)
    return b.build()


def make(reset: str = "earliest", **cfg: object) -> tuple[SubscriptionState, Fetcher]:
    config = ConsumerConfig.resolve(bootstrap_servers="x:1", auto_offset_reset=reset, **cfg)
    subs = SubscriptionState(ResetStrategy(reset))
    return subs, Fetcher(config, subs)


def ok(tp: TopicPartition, records: bytes, hw: int = 100, lso: int = 0) -> FetchedPartition:
    return FetchedPartition(tp, 0, "", hw, hw, lso, records)


def plan(fetcher: Fetcher) -> list[FetchRequestSpec]:
    specs, no_leader = fetcher.fetch_requests(LEADERS.get)
    assert no_leader == []
    return specs


def test_one_request_per_leader_covering_its_partitions() -> None:
    subs, fetcher = make()
    subs.assign([A0, A1, B0])
    for tp, off in ((A0, 10), (A1, 20), (B0, 30)):
        subs.seek(tp, off)
    specs = plan(fetcher)
    assert [s.node_id for s in specs] == [1, 2]
    assert [(p.tp, p.fetch_offset, p.current_leader_epoch) for p in specs[0].partitions] == [
        (A0, 10, 5), (B0, 30, 7)]
    assert specs[0].partitions[0].partition_max_bytes == 1048576
    assert plan(fetcher) == []  # both brokers have a fetch in flight


def test_paused_and_positionless_partitions_are_not_fetched() -> None:
    subs, fetcher = make()
    subs.assign([A0, A1, B0])
    subs.seek(A0, 0)
    subs.seek(B0, 0)
    subs.pause([B0])
    specs = plan(fetcher)
    assert [p.tp for s in specs for p in s.partitions] == [A0]


def test_unknown_leader_is_reported_for_a_metadata_refresh() -> None:
    subs, fetcher = make()
    subs.assign([TopicPartition("zz", 0)])
    subs.seek(TopicPartition("zz", 0), 0)
    specs, no_leader = fetcher.fetch_requests(LEADERS.get)
    assert specs == [] and no_leader == [TopicPartition("zz", 0)]


def test_records_below_position_are_skipped_and_positions_move() -> None:
    subs, fetcher = make()
    subs.assign([A0])
    subs.seek(A0, 3)
    (spec,) = plan(fetcher)
    data = batch(0, 5) + batch(5, 2)  # the first batch starts before the fetch offset
    outcome = fetcher.handle_response(spec, [ok(A0, data, hw=7, lso=0)])
    assert outcome.records_buffered
    out = fetcher.drain(500)
    records = out[A0]
    assert [r.offset for r in records] == [3, 4, 5, 6]
    r = records[0]
    assert (r.topic, r.partition, r.key, r.value, r.headers) == ("a", 0, b"k3", b"v3",
                                                                 (("h", b"x"),))
    assert r.timestamp == 1003 and r.timestamp_type is TimestampType.CREATE_TIME
    assert r.leader_epoch == 5 and r.serialized_key_size == 2
    assert subs.position(A0) == 7
    st = subs.state(A0)
    assert (st.high_watermark, st.log_start_offset) == (7, 0)


def test_max_poll_records_buffers_the_rest_and_blocks_refetch() -> None:
    subs, fetcher = make()
    subs.assign([A0])
    subs.seek(A0, 0)
    (spec,) = plan(fetcher)
    fetcher.handle_response(spec, [ok(A0, batch(0, 10))])
    assert [r.offset for r in fetcher.drain(4)[A0]] == [0, 1, 2, 3]
    assert plan(fetcher) == []  # still buffered: not fetched again
    assert [r.offset for r in fetcher.drain(4)[A0]] == [4, 5, 6, 7]
    assert [r.offset for r in fetcher.drain(4)[A0]] == [8, 9]
    assert fetcher.drain(4) == {}
    (spec,) = plan(fetcher)
    assert spec.partitions[0].fetch_offset == 10


def test_data_fetched_before_a_seek_is_dropped() -> None:
    subs, fetcher = make()
    subs.assign([A0])
    subs.seek(A0, 0)
    (spec,) = plan(fetcher)
    subs.seek(A0, 50)
    fetcher.handle_response(spec, [ok(A0, batch(0, 3))])
    assert fetcher.drain(10) == {}
    assert subs.position(A0) == 50


def test_seek_after_buffering_discards_the_buffer() -> None:
    subs, fetcher = make()
    subs.assign([A0])
    subs.seek(A0, 0)
    (spec,) = plan(fetcher)
    fetcher.handle_response(spec, [ok(A0, batch(0, 3))])
    subs.seek(A0, 1)
    assert fetcher.drain(10) == {}
    (spec,) = plan(fetcher)
    assert spec.partitions[0].fetch_offset == 1


def test_out_of_range_resets_per_policy() -> None:
    subs, fetcher = make("latest")
    subs.assign([A0])
    subs.seek(A0, 500)
    (spec,) = plan(fetcher)
    outcome = fetcher.handle_response(
        spec, [FetchedPartition(A0, ErrorCode.OFFSET_OUT_OF_RANGE, "", 100, 100, 10)])
    assert outcome.resets_requested
    assert subs.awaiting_reset() == [(A0, ResetStrategy.LATEST)]


def test_out_of_range_with_reset_none_surfaces_on_drain() -> None:
    subs, fetcher = make("none")
    subs.assign([A0])
    subs.seek(A0, 500)
    (spec,) = plan(fetcher)
    fetcher.handle_response(
        spec, [FetchedPartition(A0, ErrorCode.OFFSET_OUT_OF_RANGE, "", 100, 100, 10)])
    with pytest.raises(OffsetOutOfRangeError):
        fetcher.drain(10)


@pytest.mark.parametrize("code", [ErrorCode.NOT_LEADER_OR_FOLLOWER,
                                  ErrorCode.FENCED_LEADER_EPOCH,
                                  ErrorCode.UNKNOWN_TOPIC_OR_PARTITION])
def test_leadership_errors_ask_for_metadata_and_keep_position(code: ErrorCode) -> None:
    subs, fetcher = make()
    subs.assign([A0])
    subs.seek(A0, 4)
    (spec,) = plan(fetcher)
    outcome = fetcher.handle_response(spec, [FetchedPartition(A0, code)])
    assert outcome.refresh_metadata
    assert fetcher.drain(10) == {} and subs.position(A0) == 4
    (spec,) = plan(fetcher)  # retried once metadata is back
    assert spec.partitions[0].fetch_offset == 4


def test_failed_rpc_frees_the_broker_for_a_retry() -> None:
    subs, fetcher = make()
    subs.assign([A0])
    subs.seek(A0, 0)
    (spec,) = plan(fetcher)
    assert fetcher.on_fetch_failed(spec).refresh_metadata
    assert len(plan(fetcher)) == 1


def test_corrupt_batch_raises_when_crcs_are_checked() -> None:
    subs, fetcher = make()
    subs.assign([A0])
    subs.seek(A0, 0)
    (spec,) = plan(fetcher)
    data = bytearray(batch(0, 3))
    data[-1] ^= 0xFF
    fetcher.handle_response(spec, [ok(A0, bytes(data))])
    with pytest.raises(CorruptMessageError):
        fetcher.drain(10)
    assert subs.position(A0) == 0


def test_drain_pauses_the_garbage_collector_and_restores_its_state() -> None:
    seen: list[bool] = []

    def spy(topic: str, headers: object, data: bytes) -> bytes:
        seen.append(gc.isenabled())
        if data == b"v1":
            raise ValueError("bad")
        return data

    config = ConsumerConfig.resolve(bootstrap_servers="x:1", auto_offset_reset="earliest")
    subs = SubscriptionState(ResetStrategy("earliest"))
    fetcher = Fetcher(config, subs, value_deserializer=spy)
    subs.assign([A0])
    subs.seek(A0, 0)
    (spec,) = plan(fetcher)
    fetcher.handle_response(spec, [ok(A0, batch(0, 3))])
    assert gc.isenabled()
    assert [r.value for r in fetcher.drain(10)[A0]] == [b"v0"]
    with pytest.raises(SerializationError):
        fetcher.drain(10)  # the failure surfaces; the collector is back on all the same
    assert gc.isenabled() and seen and not any(seen)
    gc.disable()
    try:
        with pytest.raises(SerializationError):
            fetcher.drain(10)
        assert not gc.isenabled()  # an application's choice is left alone
    finally:
        gc.enable()


def test_partial_trailing_batch_is_ignored() -> None:
    subs, fetcher = make()
    subs.assign([A0])
    subs.seek(A0, 0)
    (spec,) = plan(fetcher)
    full = batch(0, 2)
    fetcher.handle_response(spec, [ok(A0, full + batch(2, 3)[:30])])
    assert [r.offset for r in fetcher.drain(10)[A0]] == [0, 1]
    assert fetcher.drain(10) == {}
    assert subs.position(A0) == 2


def test_paused_partition_buffer_is_kept_until_resume() -> None:
    subs, fetcher = make()
    subs.assign([A0])
    subs.seek(A0, 0)
    (spec,) = plan(fetcher)
    fetcher.handle_response(spec, [ok(A0, batch(0, 2))])
    subs.pause([A0])
    assert fetcher.drain(10) == {}
    subs.resume([A0])
    assert [r.offset for r in fetcher.drain(10)[A0]] == [0, 1]


def test_deserializers_apply_and_failures_stop_at_the_bad_record() -> None:
    config = ConsumerConfig.resolve(bootstrap_servers="x:1")
    subs = SubscriptionState(ResetStrategy.EARLIEST)

    def value(topic: str, headers: object, data: bytes) -> str:
        if data == b"v2":
            raise ValueError("bad")
        return data.decode()

    fetcher = Fetcher(config, subs, value_deserializer=value)
    subs.assign([A0])
    subs.seek(A0, 0)
    (spec,) = plan(fetcher)
    fetcher.handle_response(spec, [ok(A0, batch(0, 4))])
    assert [r.value for r in fetcher.drain(10)[A0]] == ["v0", "v1"]
    with pytest.raises(SerializationError):
        fetcher.drain(10)
    assert subs.position(A0) == 2
