"""RecordAccumulator: batching, readiness, drain rules, memory, retries, expiry, sequences."""

from __future__ import annotations

import random

import pytest

from clients.errors import ClientClosedError, KafkaTimeoutError, RecordTooLargeError
from clients.producer import (
    AccumulatorConfig,
    AppendResult,
    ProducerBatch,
    BatchState,
    RecordAccumulator,
    SequenceTracker,
    increment_sequence,
    retry_backoff_ms,
)
from clients.types import UNKNOWN_PARTITION, TopicPartition
from proto.errors import NotLeaderOrFollowerError, OutOfOrderSequenceNumberError
from proto.records import RecordBatch

TP0 = TopicPartition("t", 0)
TP1 = TopicPartition("t", 1)
TP2 = TopicPartition("t", 2)
VALUE = b"v" * 100
MB = 1 << 20


def make(seed: int = 0, **overrides: object) -> RecordAccumulator:
    settings: dict[str, object] = {"enable_idempotence": False, "linger_ms": 5}
    settings.update(overrides)
    return RecordAccumulator(AccumulatorConfig(**settings), random.Random(seed))  # type: ignore


def put(
    acc: RecordAccumulator, tp: TopicPartition, now_ms: int = 0, value: bytes = VALUE
) -> AppendResult:
    result = acc.append(tp, 1_700_000_000_000, None, value, (), now_ms)
    assert not result.would_block
    return result


def test_not_ready_before_linger_and_ready_after() -> None:
    acc = make(linger_ms=5)
    put(acc, TP0, now_ms=100)
    check = acc.ready(103, {TP0: 1})
    assert check.ready_nodes == ()
    assert check.next_ready_check_delay_ms == 2
    assert acc.ready(105, {TP0: 1}).ready_nodes == (1,)


def test_full_batch_is_ready_at_once() -> None:
    acc = make(linger_ms=10_000, batch_size=300)
    first = put(acc, TP0)
    assert not first.batch_is_full
    second = put(acc, TP0)
    third = put(acc, TP0)  # no room left: a new batch opens, the old one is sealed
    assert third.new_batch_created and third.batch_is_full
    assert (first.batch_id, first.relative_index) == (second.batch_id, 0)
    assert second.relative_index == 1
    assert acc.ready(0, {TP0: 1}).ready_nodes == (1,)


def test_ready_nodes_are_sorted_and_leaderless_topics_reported() -> None:
    acc = make(linger_ms=0)
    other = TopicPartition("u", 0)
    for tp in (TP0, TP1, other):
        put(acc, tp)
    check = acc.ready(0, {TP0: 3, TP1: 1, other: None})
    assert check.ready_nodes == (1, 3)
    assert check.unknown_leader_topics == ("u",)


def test_one_batch_per_partition_per_drain() -> None:
    acc = make(linger_ms=0, batch_size=200)
    for _ in range(4):
        put(acc, TP0)  # one record per batch: 4 batches
    put(acc, TP1)
    drained = acc.drain(0, [1], MB, {TP0: 1, TP1: 1})
    assert [b.topic_partition for b in drained[1]] == [TP0, TP1]
    assert all(b.state is BatchState.IN_FLIGHT and b.data is not None for b in drained[1])
    assert len(acc.queued(TP0)) == 3


def test_drain_respects_max_request_size_and_rotates() -> None:
    acc = make(linger_ms=0)
    for tp in (TP0, TP1, TP2):
        put(acc, tp)
    size = len(acc.queued(TP0)[0].builder.build())  # type: ignore[union-attr]
    leaders = {TP0: 1, TP1: 1, TP2: 1}
    first = acc.drain(0, [1], 2 * size, leaders)[1]
    assert [b.topic_partition for b in first] == [TP0, TP1]
    # The next drain starts where the last one stopped.
    assert [b.topic_partition for b in acc.drain(0, [1], 2 * size, leaders)[1]] == [TP2]


def test_a_batch_larger_than_the_request_limit_still_goes_alone() -> None:
    acc = make(linger_ms=0)
    put(acc, TP0, value=b"x" * 5000)
    drained = acc.drain(0, [1], 1000, {TP0: 1})
    assert len(drained[1]) == 1


def test_drain_skips_nodes_not_asked_for_and_partitions_without_leader() -> None:
    acc = make(linger_ms=0)
    put(acc, TP0)
    put(acc, TP1)
    assert acc.drain(0, [2], MB, {TP0: 1, TP1: None}) == {}
    assert list(acc.drain(0, [1, 2], MB, {TP0: 1, TP1: None})) == [1]


def test_buffer_memory_is_accounted_and_full_buffer_would_block() -> None:
    acc = make(linger_ms=10_000, batch_size=1000, buffer_memory=2000)
    put(acc, TP0)
    put(acc, TP1)
    assert acc.buffer_available() == 0
    blocked = acc.append(TP2, 0, None, VALUE, (), 0)
    assert blocked.would_block and blocked.batch_id == -1
    assert acc.queued(TP2) == ()
    # A waiting appender makes everything sendable (Kafka's "exhausted").
    assert acc.ready(0, {TP0: 1, TP1: 1}).ready_nodes == (1,)
    # Records still fit the open batches without new memory.
    assert not acc.append(TP0, 0, None, VALUE, (), 0).would_block
    batch = acc.drain(0, [1], MB, {TP0: 1})[1][0]
    assert acc.complete(batch)
    assert acc.buffer_available() == 1000
    assert not acc.append(TP2, 0, None, VALUE, (), 0).would_block


def test_record_larger_than_limits_is_refused() -> None:
    acc = make(max_request_size=1000)
    with pytest.raises(RecordTooLargeError, match="max.request.size"):
        acc.append(TP0, 0, None, b"x" * 1000, (), 0)
    acc = make(buffer_memory=500, max_request_size=MB)
    with pytest.raises(RecordTooLargeError, match="buffer.memory"):
        acc.append(TP0, 0, None, b"x" * 600, (), 0)


def test_retry_backoff_is_exponential_with_jitter_and_capped(seed: int) -> None:
    rng = random.Random(seed)
    bounds = [(80, 120), (160, 240), (320, 480), (640, 960), (800, 1000), (800, 1000)]
    for _ in range(200):
        for attempts, (low, high) in enumerate(bounds):
            backoff = retry_backoff_ms(attempts, 100, 1000, rng)
            assert low <= backoff <= high, f"seed={seed} attempts={attempts} got {backoff}"
    assert retry_backoff_ms(3, 100, 100, rng) == 100  # no exponent room: no jitter


def test_reenqueued_batch_waits_out_its_backoff(seed: int) -> None:
    acc = make(seed, linger_ms=0)
    put(acc, TP0)
    batch = acc.drain(0, [1], MB, {TP0: 1})[1][0]
    assert acc.reenqueue(batch, now_ms=1000)
    assert batch.attempts == 1 and batch.state is BatchState.RETRY
    assert 80 <= batch.retry_backoff_ms <= 120, f"seed={seed}"
    check = acc.ready(1000 + batch.retry_backoff_ms - 1, {TP0: 1})
    assert check.ready_nodes == () and check.next_ready_check_delay_ms == 1
    assert acc.drain(1000 + batch.retry_backoff_ms - 1, [1], MB, {TP0: 1}) == {}
    assert acc.ready(1000 + batch.retry_backoff_ms, {TP0: 1}).ready_nodes == (1,)
    again = acc.drain(1000 + batch.retry_backoff_ms, [1], MB, {TP0: 1})[1][0]
    assert again is batch and batch.data is not None


def test_a_retry_goes_at_once_to_a_new_leader() -> None:
    # KIP-951: the backoff is for the broker that failed; a moved partition retries at once.
    acc = make(linger_ms=0, retry_backoff_ms=1000, retry_backoff_max_ms=1000)
    put(acc, TP0)
    batch = acc.drain(0, [1], MB, {TP0: 1})[1][0]
    assert batch.attempt_leader == 1
    assert acc.reenqueue(batch, now_ms=100)
    assert acc.ready(101, {TP0: 1}).ready_nodes == ()  # same leader: waits 1000 ms
    assert acc.drain(101, [1], MB, {TP0: 1}) == {}
    assert acc.ready(101, {TP0: 2}).ready_nodes == (2,)
    assert acc.drain(101, [2], MB, {TP0: 2}) == {2: [batch]}
    assert batch.attempt_leader == 2


def test_delivery_timeout_expires_queued_and_in_flight_batches() -> None:
    acc = make(linger_ms=0, delivery_timeout_ms=1000)
    put(acc, TP0, now_ms=0)
    put(acc, TP1, now_ms=500)
    in_flight = acc.drain(0, [1], MB, {TP0: 1})[1][0]
    assert acc.expire_batches(999) == []
    expired = acc.expire_batches(1000)
    assert expired == [in_flight]
    assert isinstance(in_flight.error, KafkaTimeoutError)
    assert "1000 ms has passed since batch creation" in str(in_flight.error)
    assert not acc.complete(in_flight)  # a late response is ignored
    assert [b.topic_partition for b in acc.expire_batches(1500)] == [TP1]
    assert acc.buffer_used == 0 and not acc.has_incomplete()


def test_flush_and_close_make_lingering_batches_ready() -> None:
    acc = make(linger_ms=60_000)
    put(acc, TP0)
    assert acc.ready(0, {TP0: 1}).ready_nodes == ()
    pending = acc.begin_flush()
    assert pending == acc.incomplete_batch_ids() and len(pending) == 1
    assert acc.ready(0, {TP0: 1}).ready_nodes == (1,)
    acc.end_flush()
    assert acc.ready(0, {TP0: 1}).ready_nodes == ()
    acc.close()
    assert acc.ready(0, {TP0: 1}).ready_nodes == (1,)
    with pytest.raises(ClientClosedError):
        put(acc, TP0)


def test_abort_all_fails_everything_and_frees_memory() -> None:
    acc = make(linger_ms=0)
    put(acc, TP0)
    put(acc, TP1)
    acc.drain(0, [1], MB, {TP0: 1})
    error = RuntimeError("closed")
    aborted = acc.abort_all(error)
    assert [b.topic_partition for b in aborted] == [TP0, TP1]
    assert all(b.state is BatchState.FAILED and b.error is error for b in aborted)
    assert acc.buffer_used == 0 and not acc.has_undrained()


def test_max_in_flight_one_mutes_the_partition() -> None:
    acc = make(linger_ms=0, batch_size=200, max_in_flight_requests_per_connection=1)
    put(acc, TP0)
    put(acc, TP0)
    first = acc.drain(0, [1], MB, {TP0: 1})[1][0]
    assert acc.ready(0, {TP0: 1}).ready_nodes == ()
    assert acc.drain(0, [1], MB, {TP0: 1}) == {}
    acc.complete(first)
    assert acc.ready(0, {TP0: 1}).ready_nodes == (1,)


def test_sticky_partitioner_fills_one_partition_then_switches(seed: int) -> None:
    acc = make(seed, linger_ms=10_000, batch_size=1000)
    unknown = TopicPartition("t", UNKNOWN_PARTITION)
    partitions = []
    for _ in range(30):
        result = acc.append(
            unknown, 0, None, VALUE, (), 0, num_partitions=3, available_partitions=[0, 1, 2]
        )
        partitions.append(result.partition)
    # ~8 records of ~110 bytes fill a 1000-byte batch; the sticky partition holds until the
    # batch is full, then may change (uniformly: possibly to the same partition again).
    first_batch = acc.queued(TopicPartition("t", partitions[0]))[0]
    assert partitions[: first_batch.record_count] == [partitions[0]] * first_batch.record_count
    assert first_batch.record_count >= 8 and first_batch.state is BatchState.SEALED, f"seed={seed}"
    assert acc.partitioner.produced_bytes("t") < 2 * 1000
    assert acc.partition_for("t", b"21", None, 3) == 0
    assert acc.partition_for("t", b"21", 2, 3) == 2
    assert acc.partition_for("t", None, None, 3) == UNKNOWN_PARTITION


def test_ready_feeds_adaptive_load_stats() -> None:
    acc = make(linger_ms=10_000, batch_size=200)
    for tp, count in ((TP0, 0), (TP1, 3), (TP2, 1)):
        for _ in range(count):
            put(acc, tp)
    acc.append(TP0, 0, None, VALUE, (), 0, num_partitions=3)  # let it learn the count
    acc.drain(0, [1], MB, {TP0: 1})  # TP0's queue is now empty
    acc.ready(0, {TP0: 1, TP1: 1, TP2: 1})
    stats = acc.partitioner.load_stats("t")
    assert stats is not None
    # Queue sizes 0, 3, 1 -> weights 4, 1, 3 (partitions in queue-creation order).
    table = stats.cumulative_frequency_table
    weights = [hi - lo for lo, hi in zip((0,) + table, table)]
    assert dict(zip(stats.partition_ids, weights)) == {0: 4, 1: 1, 2: 3}


# -- idempotence ------------------------------------------------------------------------------


def idempotent(seed: int = 0, **overrides: object) -> RecordAccumulator:
    acc = make(seed, enable_idempotence=True, linger_ms=0, **overrides)
    acc.set_producer_id_and_epoch(1000, 0)
    return acc


def fill(acc: RecordAccumulator, tp: TopicPartition, records: int) -> None:
    for _ in range(records):
        put(acc, tp)


def test_nothing_is_sent_before_the_producer_id_is_known() -> None:
    acc = make(enable_idempotence=True, linger_ms=0)
    put(acc, TP0)
    assert acc.needs_producer_id
    assert acc.ready(0, {TP0: 1}).ready_nodes == ()
    assert acc.drain(0, [1], MB, {TP0: 1}) == {}
    acc.set_producer_id_and_epoch(7, 0)
    assert acc.drain(0, [1], MB, {TP0: 1})[1][0].producer_id == 7


def test_sequences_start_at_zero_and_advance_by_record_count() -> None:
    acc = idempotent(batch_size=400)
    fill(acc, TP0, 6)  # 3 records per batch
    leaders = {TP0: 1}
    batches = [acc.drain(0, [1], MB, leaders)[1][0] for _ in range(2)]
    assert [b.record_count for b in batches] == [3, 3]
    assert [b.base_sequence for b in batches] == [0, 3]
    for batch in batches:
        decoded = RecordBatch(batch.data)  # type: ignore[arg-type]
        assert decoded.is_valid()
        assert (decoded.producer_id, decoded.producer_epoch) == (1000, 0)
        assert decoded.base_sequence == batch.base_sequence
    assert acc.sequences.next_sequence(TP0) == 6


def test_sequences_wrap_at_int32_max() -> None:
    assert increment_sequence(2**31 - 1, 1) == 0
    assert increment_sequence(2**31 - 2, 3) == 1
    tracker = SequenceTracker()
    tracker.set_producer_id_and_epoch(1, 0)
    assert tracker.assign(TP0, 1, 2**31 - 1) == 0
    assert tracker.assign(TP0, 2, 3) == 2**31 - 1
    assert tracker.next_sequence(TP0) == 2


def test_retried_batch_keeps_its_sequence_and_bytes() -> None:
    acc = idempotent()
    put(acc, TP0)
    batch = acc.drain(0, [1], MB, {TP0: 1})[1][0]
    data = batch.data
    acc.reenqueue(batch, now_ms=0)
    again = acc.drain(10_000, [1], MB, {TP0: 1})[1][0]
    assert again is batch and batch.base_sequence == 0 and batch.data == data
    assert acc.sequences.next_sequence(TP0) == 1


def test_retries_are_sent_in_sequence_order(seed: int) -> None:
    acc = idempotent(seed, batch_size=200)
    fill(acc, TP0, 3)
    leaders = {TP0: 1}
    a, b, c = (acc.drain(0, [1], MB, leaders)[1][0] for _ in range(3))
    assert [x.base_sequence for x in (a, b, c)] == [0, 1, 2]
    # Responses come back out of order: c and b fail first, then a.
    acc.reenqueue(c, 0)
    acc.reenqueue(b, 0)
    acc.reenqueue(a, 0)
    assert acc.queued(TP0) == (a, b, c), f"seed={seed}"
    later = 10_000
    assert acc.drain(later, [1], MB, leaders)[1] == [a]
    # b is next in the queue but a (sequence 0) is still unfinished: b waits.
    assert acc.drain(later, [1], MB, leaders) == {}
    acc.complete(a)
    assert acc.drain(later, [1], MB, leaders)[1] == [b]
    acc.complete(b)
    assert acc.drain(later, [1], MB, leaders)[1] == [c]


def test_new_batches_queue_behind_retries() -> None:
    acc = idempotent(batch_size=200)
    fill(acc, TP0, 1)
    a = acc.drain(0, [1], MB, {TP0: 1})[1][0]
    fill(acc, TP0, 1)
    acc.reenqueue(a, 0)
    queued = acc.queued(TP0)
    assert queued[0] is a and not queued[1].has_sequence


def test_a_sequence_gap_requires_an_epoch_bump_and_renumbers_retries() -> None:
    acc = idempotent(batch_size=200)
    fill(acc, TP0, 3)
    leaders = {TP0: 1}
    a, b, c = (acc.drain(0, [1], MB, leaders)[1][0] for _ in range(3))
    # The oldest unfinished batch refused as out of order: a, b and c are not in the log.
    acc.fail(a, OutOfOrderSequenceNumberError("gap"), sequence_gap=True)
    assert acc.epoch_bump_required and acc.needs_producer_id
    acc.reenqueue(b, 0)
    acc.reenqueue(c, 0)
    assert acc.drain(10_000, [1], MB, leaders) == {}  # not under the old epoch any more
    acc.set_producer_id_and_epoch(1000, 1)
    assert not acc.epoch_bump_required
    assert [(x.producer_epoch, x.base_sequence) for x in (b, c)] == [(1, 0), (1, 1)]
    decoded = RecordBatch(c.data)
    assert decoded.is_valid() and (decoded.producer_epoch, decoded.base_sequence) == (1, 1)
    assert acc.sequences.next_sequence(TP0) == 2


def test_an_epoch_bump_keeps_the_numbering_of_retries_whose_fate_is_unknown() -> None:
    # A batch of another partition expires: the epoch is bumped. b's response was lost, so b
    # may be in the log under epoch 0 / sequence 0; renumbered, it would be written twice.
    acc = idempotent(batch_size=200, delivery_timeout_ms=1000)
    put(acc, TP0, now_ms=0)
    put(acc, TP1, now_ms=500)
    leaders = {TP0: 1, TP1: 1}
    drained = acc.drain(500, [1], MB, leaders)[1]
    a, b = sorted(drained, key=lambda x: x.topic_partition)
    data = b.data
    acc.reenqueue(b, 500)  # response lost
    assert acc.expire_batches(1000) == [a]
    assert acc.needs_producer_id
    acc.set_producer_id_and_epoch(1000, 1)
    assert (b.producer_epoch, b.base_sequence, b.data) == (0, 0, data)
    put(acc, TP1, now_ms=1000)
    assert acc.drain(1200, [1], MB, leaders)[1] == [b]  # the retry, as first sent
    assert b.data == data
    assert acc.drain(1200, [1], MB, leaders) == {}  # new epoch waits for b's outcome
    assert acc.complete(b)  # the broker answered: a duplicate of the write under epoch 0
    fresh = acc.drain(1200, [1], MB, leaders)[1][0]
    assert (fresh.producer_epoch, fresh.base_sequence) == (1, 0)


def test_an_expired_batch_does_not_renumber_the_retries_behind_it() -> None:
    acc = idempotent(batch_size=200, delivery_timeout_ms=1000)
    leaders = {TP0: 1}
    put(acc, TP0, now_ms=0)
    a = acc.drain(0, [1], MB, leaders)[1][0]
    fill_at = 400
    put(acc, TP0, now_ms=fill_at)
    put(acc, TP0, now_ms=fill_at)
    b, c = (acc.drain(fill_at, [1], MB, leaders)[1][0] for _ in range(2))
    acc.reenqueue(b, fill_at)  # responses lost: b and c may be in the log
    acc.reenqueue(c, fill_at)
    assert acc.expire_batches(1000) == [a]  # a's fate is unknown too
    acc.set_producer_id_and_epoch(1000, 1)
    assert [(x.producer_epoch, x.base_sequence) for x in (b, c)] == [(0, 1), (0, 2)]
    # b is refused as out of order: a is not in the log, so neither are b and c.
    assert acc.drain(1000, [1], MB, leaders)[1] == [b]
    acc.fail(b, OutOfOrderSequenceNumberError("gap"), sequence_gap=True)
    assert acc.needs_producer_id
    acc.set_producer_id_and_epoch(1000, 2)
    assert c.base_sequence == 0 and c.producer_epoch >= 1  # a fresh epoch for this partition
    decoded = RecordBatch(c.data)  # type: ignore[arg-type]
    assert decoded.is_valid()
    assert (decoded.producer_epoch, decoded.base_sequence) == (c.producer_epoch, 0)


def test_new_epoch_waits_for_old_batches_on_the_wire() -> None:
    acc = idempotent(batch_size=200)
    fill(acc, TP0, 2)
    a = acc.drain(0, [1], MB, {TP0: 1})[1][0]
    acc.set_producer_id_and_epoch(1000, 1)
    assert acc.drain(0, [1], MB, {TP0: 1}) == {}  # old epoch still in flight
    acc.complete(a)
    fresh = acc.drain(0, [1], MB, {TP0: 1})[1][0]
    assert (fresh.producer_epoch, fresh.base_sequence) == (1, 0)


def test_split_keeps_records_order_and_sequence_range() -> None:
    acc = idempotent(batch_size=1000)
    fill(acc, TP0, 8)
    batch = acc.drain(0, [1], MB, {TP0: 1})[1][0]
    assert batch.record_count == 8
    memory = acc.buffer_used
    parts = acc.split(batch, now_ms=5, max_batch_size=300)  # after MESSAGE_TOO_LARGE
    assert batch.state is BatchState.SPLIT
    assert [p.first_index for p in parts] == [0, 2, 4, 6]
    assert [p.batch.record_count for p in parts] == [2, 2, 2, 2]
    assert [p.batch.base_sequence for p in parts] == [0, 2, 4, 6]
    assert all(p.batch.created_ms == batch.created_ms for p in parts)
    assert acc.queued(TP0) == tuple(p.batch for p in parts)
    assert acc.buffer_used == memory  # the records are still held
    drained = acc.drain(5, [1], MB, {TP0: 1})[1][0]
    assert drained is parts[0].batch
    decoded = RecordBatch(drained.data)  # type: ignore[arg-type]
    assert decoded.is_valid() and decoded.base_sequence == 0 and decoded.records_count == 2
    assert acc.complete(drained)
    assert acc.buffer_used == 0


def test_split_without_a_smaller_bound_halves_the_batch() -> None:
    acc = make(linger_ms=0, batch_size=1000)
    fill(acc, TP0, 4)
    batch = acc.drain(0, [1], MB, {TP0: 1})[1][0]
    parts = acc.split(batch, now_ms=0)
    assert len(parts) >= 2 and sum(p.batch.record_count for p in parts) == 4
    assert not any(p.batch.has_sequence for p in parts)


class _IdempotentBroker:
    """One partition's leader as KIP-98 describes it: appends the next sequence only, answers
    a duplicate of its last 5 batches with success, refuses anything else."""

    def __init__(self) -> None:
        self.log: list[int] = []  # the sequence number of each appended record
        self.cached: list[tuple[int, int]] = []  # (base sequence, count), last 5 batches

    def produce(self, base_sequence: int, count: int) -> str:
        if (base_sequence, count) in self.cached:
            return "duplicate"
        if base_sequence != len(self.log):
            return "out_of_order_sequence"
        self.log.extend(range(base_sequence, base_sequence + count))
        self.cached = (self.cached + [(base_sequence, count)])[-5:]
        return "ok"


def test_idempotent_retries_keep_order_and_never_duplicate(seed: int) -> None:
    rng = random.Random(seed)
    acc = idempotent(seed, batch_size=300)
    broker = _IdempotentBroker()
    leaders = {TP0: 1}
    responses: list[tuple[ProducerBatch, str]] = []
    appended = 0
    now = 0

    def send(faulty: bool) -> None:
        if len(acc.in_flight()) >= 5:  # max.in.flight.requests.per.connection
            return
        for batch in acc.drain(now, [1], MB, leaders).get(1, []):
            if faulty and rng.random() < 0.2:
                responses.append((batch, "request_lost"))
                continue
            result = broker.produce(batch.base_sequence, batch.record_count)
            if faulty and rng.random() < 0.2:
                result = "response_lost"  # applied (or not), but the client never hears
            responses.append((batch, result))

    def answer(index: int) -> None:
        batch, result = responses.pop(index)
        if result in ("ok", "duplicate"):
            assert acc.complete(batch)
        else:
            assert acc.reenqueue(batch, now)

    for _ in range(600):
        now += rng.randrange(0, 40)
        roll = rng.random()
        if roll < 0.4 and appended < 120:
            put(acc, TP0, now)
            appended += 1
        elif roll < 0.7:
            send(faulty=True)
        elif responses:
            answer(rng.randrange(len(responses)))  # responses in any order
    for _ in range(10_000):  # heal: no more faults, answer in order
        if not acc.has_incomplete():
            break
        now += 1000
        send(faulty=False)
        while responses:
            answer(0)
    assert not acc.has_incomplete(), f"seed={seed}"
    assert broker.log == list(range(appended)), f"seed={seed}"


class _EpochBroker:
    """One partition's leader with producer epochs (KIP-98 / KIP-360): duplicates of the last 5
    batches succeed; a lower epoch is refused; a new epoch starts at sequence 0; a producer the
    partition has not seen may start anywhere."""

    def __init__(self) -> None:
        self.log: list[int] = []  # batch ids, in append order
        self.epoch = -1
        self.last_sequence = -1
        self.cached: list[tuple[int, int, int]] = []  # (epoch, base sequence, count)

    def produce(self, batch: ProducerBatch) -> str:
        epoch, base, count = batch.producer_epoch, batch.base_sequence, batch.record_count
        if (epoch, base, count) in self.cached:
            return "duplicate"
        if self.epoch >= 0:
            if epoch < self.epoch:
                return "invalid_epoch"
            if epoch > self.epoch and base != 0:
                return "out_of_order_sequence"
            if epoch == self.epoch and base != self.last_sequence + 1:
                return "out_of_order_sequence"
        if epoch != self.epoch:
            self.cached = []
        self.epoch, self.last_sequence = epoch, base + count - 1
        self.cached = (self.cached + [(epoch, base, count)])[-5:]
        self.log.append(batch.batch_id)
        return "ok"


def test_expiries_and_epoch_bumps_never_write_a_batch_twice(seed: int) -> None:
    # The Sender's rules over lost requests and responses, delivery timeouts and epoch bumps:
    # a batch that may be in the log keeps its epoch and sequence until it finishes.
    rng = random.Random(seed)
    acc = idempotent(seed, batch_size=200, delivery_timeout_ms=1500)
    brokers = {TP0: _EpochBroker(), TP1: _EpochBroker()}
    leaders = {TP0: 1, TP1: 1}
    responses: list[tuple[ProducerBatch, str]] = []
    acked: list[int] = []
    epoch = 0
    now = 0

    def drainable() -> dict[TopicPartition, int | None]:
        # The Sender's `_drainable`: while nothing is acknowledged under the current epoch,
        # only one batch of a partition is on the wire (the broker may take any first one).
        view: dict[TopicPartition, int | None] = dict(leaders)
        for tp in leaders:
            ids = acc.sequences.in_flight_batch_ids(tp)
            first = acc.batch(ids[0]) if ids else None
            if (
                acc.sequences.last_acked_sequence(tp) == -1
                and first is not None
                and first.state is BatchState.IN_FLIGHT
            ):
                view[tp] = None
        return view

    def send(faulty: bool) -> None:
        if acc.needs_producer_id or len(acc.in_flight()) >= 5:
            return
        for batch in acc.drain(now, [1], MB, drainable()).get(1, []):
            if faulty and rng.random() < 0.25:
                responses.append((batch, "request_lost"))
                continue
            result = brokers[batch.topic_partition].produce(batch)
            if faulty and rng.random() < 0.25:
                result = "response_lost"
            responses.append((batch, result))

    def answer(index: int) -> None:
        batch, result = responses.pop(index)
        if batch.is_done:
            return  # expired meanwhile
        if result in ("ok", "duplicate"):
            assert acc.complete(batch)
            acked.append(batch.batch_id)
            return
        tp = batch.topic_partition
        oldest = batch.base_sequence == acc.sequences.first_in_flight_sequence(tp)
        if result == "out_of_order_sequence":
            gap, retriable = oldest, not oldest
        else:
            retriable = result != "invalid_epoch"
            gap = oldest and not retriable and batch.attempts == 0
        if retriable and not batch.has_reached_delivery_timeout(now):
            assert acc.reenqueue(batch, now)
        else:
            assert acc.fail(batch, KafkaTimeoutError(result), sequence_gap=gap)

    def bump() -> None:
        nonlocal epoch
        epoch += 1
        acc.set_producer_id_and_epoch(1000, epoch)

    for _ in range(1500):
        now += rng.randrange(0, 40)
        acc.expire_batches(now)
        roll = rng.random()
        if acc.needs_producer_id and roll < 0.3:
            bump()  # InitProducerId answered
        elif roll < 0.35:
            put(acc, rng.choice((TP0, TP1)), now)
        elif roll < 0.7:
            send(faulty=True)
        elif responses:
            answer(rng.randrange(len(responses)))  # responses in any order
    for _ in range(10_000):  # heal: no more faults, answer in order
        if not acc.has_incomplete() and not responses:
            break
        now += 1000
        acc.expire_batches(now)
        if acc.needs_producer_id:
            bump()
        send(faulty=False)
        while responses:
            answer(0)
    assert not acc.has_incomplete(), f"seed={seed}"
    for tp, broker in brokers.items():
        assert len(broker.log) == len(set(broker.log)), f"{tp} wrote a batch twice, seed={seed}"
    written = {bid for broker in brokers.values() for bid in broker.log}
    assert set(acked) <= written, f"seed={seed}"


def test_at_most_five_numbered_batches_past_the_oldest_unfinished_one() -> None:
    # The broker recognises duplicates only among its last 5 batches (KIP-98).
    acc = idempotent(batch_size=200)
    fill(acc, TP0, 7)
    leaders = {TP0: 1}
    sent = [acc.drain(0, [1], MB, leaders)[1][0] for _ in range(5)]
    assert acc.drain(0, [1], MB, leaders) == {}
    acc.complete(sent[1])  # acked, but sent[0] is still unresolved: the window stays 5
    assert acc.drain(0, [1], MB, leaders) == {}
    acc.complete(sent[0])  # the window slides past 0 and 1
    assert [b.base_sequence for b in acc.drain(0, [1], MB, leaders)[1]] == [5]
