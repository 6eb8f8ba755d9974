"""ProducerStateTable: the broker's idempotent-producer checks (KAFKA_SEMANTICS §3.5)."""

from __future__ import annotations

import random
import struct

import pytest

from cluster.producer_state import (
    ACCEPT,
    INT32_MAX,
    NUM_BATCHES_TO_RETAIN,
    CorruptSnapshotError,
    Duplicate,
    ProducerStateTable,
    decode_snapshot,
    encode_snapshot,
)
from proto.errors import (
    ErrorCode,
    InvalidProducerEpochError,
    OutOfOrderSequenceNumberError,
)

PID = 1000
TP = "orders-0"


class Log:
    """A leader: validate, 'append' (assign offsets), record_append — like the broker shell."""

    def __init__(self) -> None:
        self.table = ProducerStateTable(TP)
        self.next_offset = 0
        self.batches: list[tuple[int, int, int, int, int, int, int]] = []

    def produce(self, pid: int, epoch: int, base_seq: int, count: int,
                ts: int = 1_000) -> Duplicate | int:
        last_seq = (base_seq + count - 1) % (INT32_MAX + 1)
        result = self.table.validate(pid, epoch, base_seq, last_seq)
        if isinstance(result, Duplicate):
            return result
        base, last = self.next_offset, self.next_offset + count - 1
        self.next_offset = last + 1
        self.table.record_append(pid, epoch, base_seq, last_seq, base_offset=base,
                                 last_offset=last, timestamp_ms=ts)
        self.batches.append((pid, epoch, base_seq, last_seq, base, last, ts))
        return base


def test_in_sequence_batches_are_accepted_and_sequences_advance_by_record_count() -> None:
    log = Log()
    assert log.produce(PID, 0, 0, 3) == 0
    assert log.produce(PID, 0, 3, 2) == 3
    entry = log.table.entry(PID)
    assert entry is not None and entry.last_sequence == 4 and entry.last_offset == 4


def test_duplicate_batch_returns_original_offsets_and_is_not_appended() -> None:
    log = Log()
    log.produce(PID, 0, 0, 3, ts=10)
    log.produce(PID, 0, 3, 3, ts=20)
    dup = log.produce(PID, 0, 0, 3)
    assert dup == Duplicate(base_offset=0, last_offset=2, timestamp_ms=10)
    assert log.next_offset == 6


def test_duplicate_needs_exact_sequence_range_else_out_of_order() -> None:
    log = Log()
    log.produce(PID, 0, 0, 3)
    with pytest.raises(OutOfOrderSequenceNumberError):
        log.table.validate(PID, 0, 0, 1)  # overlaps the cached batch, not an exact match


def test_sequence_gap_is_out_of_order() -> None:
    log = Log()
    log.produce(PID, 0, 0, 3)
    with pytest.raises(OutOfOrderSequenceNumberError) as err:
        log.table.validate(PID, 0, 4, 4)
    assert err.value.code is ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert "does not follow last sequence 2" in err.value.message


def test_only_last_five_batches_are_cached_older_retry_is_out_of_order() -> None:
    log = Log()
    for i in range(NUM_BATCHES_TO_RETAIN + 1):
        log.produce(PID, 0, i, 1)
    # Batch 1 is still the 5th newest: a duplicate. Batch 0 fell out of the cache.
    assert log.produce(PID, 0, 1, 1) == Duplicate(1, 1, 1_000)
    with pytest.raises(OutOfOrderSequenceNumberError):
        log.table.validate(PID, 0, 0, 0)
    entry = log.table.entry(PID)
    assert entry is not None and len(entry.batches) == NUM_BATCHES_TO_RETAIN


def test_stale_producer_epoch_is_invalid_producer_epoch() -> None:
    log = Log()
    log.produce(PID, 3, 0, 1)
    with pytest.raises(InvalidProducerEpochError) as err:
        log.table.validate(PID, 2, 1, 1)
    assert err.value.code is ErrorCode.INVALID_PRODUCER_EPOCH


def test_epoch_bump_must_start_at_sequence_zero_and_clears_cache() -> None:
    log = Log()
    log.produce(PID, 0, 0, 5)
    with pytest.raises(OutOfOrderSequenceNumberError):
        log.table.validate(PID, 1, 5, 5)
    assert log.produce(PID, 1, 0, 2) == 5
    entry = log.table.entry(PID)
    assert entry is not None and entry.producer_epoch == 1 and len(entry.batches) == 1
    # The old epoch's batches are no longer duplicates: the old epoch is fenced.
    with pytest.raises(InvalidProducerEpochError):
        log.table.validate(PID, 0, 0, 4)


def test_unknown_producer_accepts_any_sequence_kip_360() -> None:
    log = Log()
    assert log.table.validate(PID, 7, 12345, 12349) is ACCEPT
    assert log.produce(PID, 7, 12345, 5) == 0
    assert log.produce(PID, 7, 12350, 1) == 5


def test_sequence_wraps_from_int_max_to_zero() -> None:
    log = Log()
    log.produce(PID, 0, INT32_MAX - 1, 2)  # sequences MAX-1, MAX
    assert log.produce(PID, 0, 0, 1) == 2
    # A batch that itself wraps: last_sequence = base + count - 1 - 2^31.
    log2 = Log()
    log2.produce(PID, 0, INT32_MAX - 1, 3)  # MAX-1, MAX, 0
    assert log2.produce(PID, 0, INT32_MAX - 1, 3) == Duplicate(0, 2, 1_000)
    assert log2.produce(PID, 0, 1, 1) == 3


def test_validate_does_not_mutate_so_a_failed_append_leaves_state_untouched() -> None:
    log = Log()
    log.produce(PID, 0, 0, 2)
    before = log.table.fingerprint()
    assert log.table.validate(PID, 0, 2, 3) is ACCEPT  # the append then fails: no record_append
    assert log.table.fingerprint() == before
    assert log.produce(PID, 0, 2, 2) == 2  # the retry is still in sequence


def test_non_idempotent_batches_are_always_accepted() -> None:
    table = ProducerStateTable(TP)
    assert table.validate(-1, -1, -1, -1) is ACCEPT


def test_follower_rebuilds_identical_state_from_replicated_batches() -> None:
    rng = random.Random(7)
    leader = Log()
    seqs = {pid: 0 for pid in (1, 2, 3)}
    epochs = {pid: 0 for pid in (1, 2, 3)}
    for _ in range(60):
        pid = rng.choice((1, 2, 3))
        if rng.random() < 0.1:
            epochs[pid] += 1
            seqs[pid] = 0
        count = rng.randint(1, 4)
        leader.produce(pid, epochs[pid], seqs[pid], count, ts=rng.randint(0, 10**6))
        seqs[pid] += count
    follower = ProducerStateTable(TP)
    for pid, epoch, base_seq, last_seq, base, last, ts in leader.batches:
        follower.apply_replicated_batch(pid, epoch, base_seq, last_seq, base_offset=base,
                                        last_offset=last, timestamp_ms=ts)
    assert follower.fingerprint() == leader.table.fingerprint()
    assert follower.map_end_offset == leader.table.map_end_offset == leader.next_offset


def test_replication_path_never_raises_on_stale_epoch() -> None:
    table = ProducerStateTable(TP)
    table.apply_replicated_batch(PID, 5, 0, 0, base_offset=0, last_offset=0, timestamp_ms=1)
    table.apply_replicated_batch(PID, 4, 9, 9, base_offset=1, last_offset=1, timestamp_ms=2)
    entry = table.entry(PID)
    assert entry is not None and entry.producer_epoch == 4  # follows the log, like Kafka


def test_snapshot_round_trip_keeps_last_batch_per_producer() -> None:
    log = Log()
    log.produce(1, 0, 0, 3, ts=5)
    log.produce(2, 4, 0, 1, ts=6)
    log.produce(1, 0, 3, 2, ts=7)
    offset, data = log.table.snapshot()
    assert offset == 6
    restored = ProducerStateTable(TP)
    restored.load_snapshot(data, offset)
    assert restored.producer_ids() == [1, 2]
    entry = restored.entry(1)
    assert entry is not None and len(entry.batches) == 1 and entry.last_sequence == 4
    # The last batch is still recognised as a duplicate after a restart.
    assert restored.validate(1, 0, 3, 4) == Duplicate(4, 5, 7)
    assert restored.validate(1, 0, 5, 5) is ACCEPT
    assert encode_snapshot(decode_snapshot(data)) == data


def test_snapshot_layout_is_kafka_v1() -> None:
    log = Log()
    log.produce(PID, 2, 0, 1, ts=99)
    _, data = log.table.snapshot()
    version, _crc, count = struct.unpack_from(">hIi", data, 0)
    assert (version, count) == (1, 1)
    assert len(data) == 2 + 4 + 4 + 46
    assert struct.unpack_from(">qhiqiqiq", data, 10) == (PID, 2, 0, 0, 0, 99, -1, -1)


def test_snapshot_crc_corruption_is_detected_and_state_is_untouched() -> None:
    log = Log()
    log.produce(PID, 0, 0, 3)
    offset, data = log.table.snapshot()
    corrupt = bytearray(data)
    corrupt[20] ^= 0x01
    table = ProducerStateTable(TP)
    table.apply_replicated_batch(9, 0, 0, 0, base_offset=0, last_offset=0, timestamp_ms=1)
    with pytest.raises(CorruptSnapshotError, match="CRC mismatch"):
        table.load_snapshot(bytes(corrupt), offset)
    with pytest.raises(CorruptSnapshotError):
        table.load_snapshot(data[:-3], offset)
    with pytest.raises(CorruptSnapshotError, match="version"):
        table.load_snapshot(b"\x00\x02" + data[2:], offset)
    assert table.producer_ids() == [9]


def test_load_snapshot_then_replay_after_it_rebuilds_the_cache() -> None:
    log = Log()
    for i in range(4):
        log.produce(PID, 0, i, 1)
    offset, data = log.table.snapshot()
    for i in range(4, 7):
        log.produce(PID, 0, i, 1)
    restored = ProducerStateTable(TP)
    restored.load_snapshot(data, offset)
    for pid, epoch, base_seq, last_seq, base, last, ts in log.batches:  # over-replay is skipped
        restored.apply_replicated_batch(pid, epoch, base_seq, last_seq, base_offset=base,
                                        last_offset=last, timestamp_ms=ts)
    assert restored.validate(PID, 0, 6, 6) == Duplicate(6, 6, 1_000)
    assert restored.validate(PID, 0, 7, 7) is ACCEPT
    assert restored.map_end_offset == 7


def test_producer_state_expires_after_producer_id_expiration_ms() -> None:
    table = ProducerStateTable(TP)
    table.apply_replicated_batch(1, 0, 0, 0, base_offset=0, last_offset=0, timestamp_ms=1_000)
    table.apply_replicated_batch(2, 0, 0, 0, base_offset=1, last_offset=1, timestamp_ms=5_000)
    assert table.remove_expired(now_ms=86_401_000) == (1,)
    assert table.producer_ids() == [2]
    assert table.remove_expired(now_ms=86_404_999) == ()
    # An expired producer is unknown: any sequence is accepted (KIP-360).
    assert table.validate(1, 0, 77, 77) is ACCEPT


def test_truncate_head_drops_producers_whose_last_batch_is_gone() -> None:
    log = Log()
    log.produce(1, 0, 0, 2)  # offsets 0-1
    log.produce(2, 0, 0, 2)  # offsets 2-3
    assert log.table.truncate_head(2) == (1,)
    assert log.table.producer_ids() == [2]


def test_truncate_to_drops_batches_at_or_above_the_offset() -> None:
    log = Log()
    log.produce(1, 0, 0, 2)  # 0-1
    log.produce(1, 0, 2, 2)  # 2-3
    log.produce(2, 0, 0, 1)  # 4
    assert log.table.truncate_to(2) is True  # producer 2 lost all its batches
    assert log.table.producer_ids() == [1]
    assert log.table.map_end_offset == 2
    assert log.table.validate(1, 0, 2, 3) is ACCEPT  # the truncated batch may be re-sent
