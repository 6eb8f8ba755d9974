"""PartitionLog: append, read, roll, indexes, timestamps, truncation, follower appends,
retention, flush policy and snapshots. In-memory files unless the test is about the disk."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from cluster.log import LogConfig, MemFileSystem, PartitionLog
from proto.errors import (
    CorruptMessageError,
    FencedLeaderEpochError,
    InvalidRecordError,
    MessageTooLargeError,
    OffsetOutOfRangeError,
)
from proto.records import RecordBatch, RecordBatchBuilder, iter_batches

DIR = "/data/orders-0"


def make_batch(n: int = 1, *, ts: int = 1000, tag: str = "v", size: int = 0,
               base_offset: int = 0, epoch: int = -1) -> bytes:
    builder = RecordBatchBuilder(base_offset=base_offset, partition_leader_epoch=epoch)
    for i in range(n):
        builder.append(f"{tag}{i}".encode() + b"x" * size, key=f"k{i}".encode(),
                       timestamp_ms=ts + i)
    return builder.build()


def open_log(fs: MemFileSystem | None = None, now_ms: int = 0, **config: object) -> PartitionLog:
    return PartitionLog.open(DIR, LogConfig(**config), now_ms,  # type: ignore[arg-type]
                             fs=fs if fs is not None else MemFileSystem())


def values(data: bytes | memoryview) -> list[tuple[int, bytes | None]]:
    return [(r.offset, r.value) for b in iter_batches(data) for r in b]


def test_append_assigns_offsets_from_the_log_end_and_stamps_the_epoch() -> None:
    log = open_log()
    first = log.append(make_batch(3), leader_epoch=4, now_ms=0)
    second = log.append(make_batch(2, tag="w"), leader_epoch=4, now_ms=0)
    assert (first.first_offset, first.last_offset) == (0, 2)
    assert (second.first_offset, second.last_offset) == (3, 4)
    assert log.log_end_offset == 5
    result = log.read(0, 1 << 20)
    batches = list(iter_batches(result.records))
    assert [b.base_offset for b in batches] == [0, 3]
    assert all(b.partition_leader_epoch == 4 for b in batches)
    assert values(result.records)[3] == (3, b"w0")
    assert log.epoch_cache.entries() == [(4, 0)]


def test_append_rejects_bad_batches_before_changing_anything() -> None:
    log = open_log(max_message_bytes=500)
    good = make_batch(1)
    corrupt = bytearray(good)
    corrupt[-1] ^= 1
    with pytest.raises(CorruptMessageError, match="crc"):
        log.append(bytes(corrupt), 0, 0)
    with pytest.raises(CorruptMessageError):
        log.append(good[:40], 0, 0)
    with pytest.raises(InvalidRecordError, match="more than one batch"):
        log.append(good + good, 0, 0)
    with pytest.raises(MessageTooLargeError):
        log.append(make_batch(1, size=600), 0, 0)
    log.append(good, 5, 0)
    with pytest.raises(FencedLeaderEpochError):
        log.append(good, 4, 0)
    assert log.log_end_offset == 1


def test_segments_roll_by_size_and_reads_stay_within_one_segment() -> None:
    batch = make_batch(2, size=100)
    log = open_log(segment_bytes=len(batch) * 3)
    infos = [log.append(batch, 0, 0) for _ in range(7)]
    assert [s.base_offset for s in log.segments] == [0, 6, 12]
    assert infos[3].rolled_segments == (6,) and infos[4].rolled_segments == ()
    result = log.read(0, 1 << 20)
    assert (result.first_offset, result.next_offset) == (0, 6)  # one segment per read
    assert log.read(6, 1 << 20).first_offset == 6


def test_segment_ms_roll_uses_the_first_batch_timestamp() -> None:
    log = open_log(segment_ms=1000)
    log.append(make_batch(1, ts=10_000), 0, now_ms=10_000)
    log.append(make_batch(1, ts=11_000), 0, now_ms=11_000)  # exactly segment.ms: no roll
    assert len(log.segments) == 1
    log.append(make_batch(1, ts=11_001), 0, now_ms=11_001)
    assert [s.base_offset for s in log.segments] == [0, 2]


def test_reading_from_the_middle_of_a_batch_returns_that_whole_batch_first() -> None:
    log = open_log(index_interval_bytes=64)
    for _ in range(20):
        log.append(make_batch(5), 0, 0)
    assert len(log.active_segment.index) > 5  # the sparse index is in use
    result = log.read(53, 1 << 20)
    assert result.first_offset == 50
    assert values(result.records)[0][0] == 50
    assert result.next_offset == 100


def test_max_bytes_returns_whole_batches_and_at_least_one_kip_74() -> None:
    log = open_log()
    batch = make_batch(3, size=50)
    for _ in range(4):
        log.append(batch, 0, 0)
    one_and_a_half = len(batch) + len(batch) // 2
    assert len(log.read(0, one_and_a_half).records) == len(batch)
    tiny = log.read(3, 10)
    assert len(tiny.records) == len(batch) and tiny.first_offset == 3  # KIP-74
    assert len(log.read(3, 10, min_one=False).records) == 0


def test_max_offset_bounds_reads_at_whole_batches() -> None:
    log = open_log()
    for _ in range(3):
        log.append(make_batch(2), 0, 0)
    assert log.read(0, 1 << 20, max_offset=4).next_offset == 4
    assert log.read(0, 1 << 20, max_offset=3).next_offset == 2  # batch 2-3 straddles
    empty = log.read(4, 1 << 20, max_offset=4)
    assert len(empty.records) == 0 and empty.first_offset == -1


def test_reads_outside_the_log_raise_offset_out_of_range() -> None:
    log = open_log()
    log.append(make_batch(2), 0, 0)
    assert len(log.read(2, 100).records) == 0  # at the LEO: empty, not an error
    with pytest.raises(OffsetOutOfRangeError):
        log.read(3, 100)
    log.maybe_increment_log_start_offset(1, high_watermark=2)
    with pytest.raises(OffsetOutOfRangeError):
        log.read(0, 100)


def test_offset_for_timestamp_uses_the_time_index_then_scans_records() -> None:
    log = open_log(index_interval_bytes=32, segment_bytes=600)
    for i in range(30):
        log.append(make_batch(2, ts=1000 + 10 * i), 0, 0)
    assert len(log.segments) > 2
    assert log.offset_for_timestamp(1000) == (0, 1000)
    assert log.offset_for_timestamp(1101) == (21, 1101)
    assert log.offset_for_timestamp(1105) == (22, 1110)
    assert log.offset_for_timestamp(5000) is None
    assert log.offset_for_timestamp(-1) == (60, -1)
    assert log.offset_for_timestamp(-2) == (0, -1)


def test_truncate_to_across_segment_boundaries() -> None:
    batch = make_batch(2)
    log = open_log(segment_bytes=len(batch) * 2)
    for epoch in (1, 1, 2, 2, 3, 3):
        log.append(batch, epoch, 0)
    assert [s.base_offset for s in log.segments] == [0, 4, 8]
    assert log.truncate_to(5)  # inside batch 4-5: the whole batch goes
    assert log.log_end_offset == 4
    assert [s.base_offset for s in log.segments] == [0, 4]  # as Kafka: emptied, kept
    assert log.active_segment.size == 0
    assert log.epoch_cache.entries() == [(1, 0)]
    assert not log.truncate_to(10)
    info = log.append(batch, 4, 0)
    assert info.first_offset == 4
    assert values(log.read(4, 1 << 20).records)[-1][0] == 5


def test_truncate_fully_and_start_at() -> None:
    log = open_log()
    log.append(make_batch(3), 1, 0)
    log.truncate_fully_and_start_at(100)
    assert (log.log_start_offset, log.log_end_offset) == (100, 100)
    assert log.epoch_cache.entries() == []
    assert log.append(make_batch(1), 2, 0).first_offset == 100


def test_follower_append_keeps_leader_offsets_and_epochs_and_accepts_gaps() -> None:
    leader = open_log()
    for epoch in (1, 1, 3):
        leader.append(make_batch(2), epoch, 0)
    fetched = bytes(leader.read(0, 1 << 20).records)
    follower = open_log()
    info = follower.append_as_follower(fetched, 0)
    assert (info.first_offset, info.last_offset) == (0, 5)
    assert follower.epoch_cache.entries() == [(1, 0), (3, 4)]
    gap = make_batch(1, base_offset=10, epoch=3)
    follower.append_as_follower(gap, 0)
    assert follower.log_end_offset == 11
    with pytest.raises(InvalidRecordError, match="expects >= 11"):
        follower.append_as_follower(make_batch(1, base_offset=5, epoch=3), 0)
    assert bytes(follower.read(0, 1 << 20).records) == fetched + gap


def test_follower_append_rolls_inside_one_fetch() -> None:
    batch = make_batch(2)
    leader = open_log()
    for _ in range(5):
        leader.append(batch, 0, 0)
    follower = open_log(segment_bytes=len(batch) * 2)
    info = follower.append_as_follower(bytes(leader.read(0, 1 << 20).records), 0)
    assert info.rolled_segments == (4, 8)
    assert [s.base_offset for s in follower.segments] == [0, 4, 8]
    assert follower.read(5, 1 << 20).first_offset == 4


def test_follower_append_rejects_a_corrupt_batch_without_writing() -> None:
    leader = open_log()
    leader.append(make_batch(2), 0, 0)
    data = bytearray(leader.read(0, 1 << 20).records)
    data[70] ^= 0x40
    follower = open_log()
    with pytest.raises(CorruptMessageError):
        follower.append_as_follower(bytes(data), 0)
    assert follower.log_end_offset == 0 and follower.active_segment.size == 0


def test_retention_by_time_deletes_old_sealed_segments_below_the_high_watermark() -> None:
    batch_len = len(make_batch(1))
    log = open_log(segment_bytes=batch_len, retention_ms=1000)
    for i in range(4):
        log.append(make_batch(1, ts=1000 * i), 0, now_ms=1000 * i)
    assert [s.base_offset for s in log.segments] == [0, 1, 2, 3]
    assert log.delete_old_segments(now_ms=3000, high_watermark=0).deleted == ()  # HW bound
    result = log.delete_old_segments(now_ms=3000, high_watermark=4)
    assert [d.base_offset for d in result.deleted] == [0, 1]
    assert {d.reason for d in result.deleted} == {"retention.ms"}
    assert log.log_start_offset == 2
    result = log.delete_old_segments(now_ms=10_000, high_watermark=4)
    assert [d.base_offset for d in result.deleted] == [2]  # never the active segment
    with pytest.raises(OffsetOutOfRangeError):
        log.read(1, 100)


def test_retention_by_bytes_keeps_the_partition_under_the_limit() -> None:
    batch = make_batch(1)
    log = open_log(segment_bytes=len(batch), retention_bytes=len(batch) * 2, retention_ms=-1)
    for _ in range(5):
        log.append(batch, 0, 0)
    result = log.delete_old_segments(now_ms=0, high_watermark=5)
    assert [d.reason for d in result.deleted] == ["retention.bytes"] * 3
    assert log.size_in_bytes == len(batch) * 2


def test_log_start_offset_deletes_segments_entirely_below_it() -> None:
    batch = make_batch(2)
    log = open_log(segment_bytes=len(batch), retention_ms=-1)
    for _ in range(4):
        log.append(batch, 0, 0)
    with pytest.raises(OffsetOutOfRangeError):
        log.maybe_increment_log_start_offset(7, high_watermark=6)
    assert log.maybe_increment_log_start_offset(5, high_watermark=6)
    result = log.delete_old_segments(now_ms=0, high_watermark=8)
    assert [(d.base_offset, d.reason) for d in result.deleted] == [
        (0, "log-start-offset"), (2, "log-start-offset")]
    assert log.log_start_offset == 5
    assert log.read(5, 1 << 20).first_offset == 4  # the batch holding 5 starts before it


def test_deleted_segment_files_are_removed_after_the_delay() -> None:
    fs = MemFileSystem()
    batch = make_batch(1)
    log = open_log(fs, segment_bytes=len(batch), retention_ms=-1, file_delete_delay_ms=100)
    for _ in range(3):
        log.append(batch, 0, 0)
    log.maybe_increment_log_start_offset(2, high_watermark=3)
    log.delete_old_segments(now_ms=1000, high_watermark=3)
    assert any(p.endswith(".deleted") for p in fs.paths())
    assert log.purge_deleted_files(1099) == []
    assert len(log.purge_deleted_files(1100)) >= 2
    assert not any(p.endswith(".deleted") for p in fs.paths())


def test_flush_policy_is_never_by_default_and_after_flush_messages_when_set() -> None:
    fs = MemFileSystem()
    log = open_log(fs)
    log.append(make_batch(5), 0, 0)
    assert log.needs_flush(now_ms=10**12) is None
    eager = PartitionLog.open("/data/eager-0", LogConfig(flush_messages=3), 0, fs=fs)
    eager.append(make_batch(2), 0, 0)
    assert eager.needs_flush(0) is None
    eager.append(make_batch(2), 0, 0)
    assert eager.needs_flush(0) == 4
    before = fs.fsync_count
    eager.flush(4, now_ms=0)
    assert fs.fsync_count > before and eager.recovery_point == 4
    assert eager.needs_flush(0) is None


def test_flush_ms_and_the_flush_after_a_roll() -> None:
    batch = make_batch(1)
    log = open_log(flush_ms=100, segment_bytes=len(batch))
    log.append(batch, 0, now_ms=0)
    assert log.needs_flush(50) is None and log.next_flush_deadline_ms() == 100
    assert log.needs_flush(100) == 1
    log.flush(now_ms=100)
    assert log.needs_flush(150) is None
    log.append(batch, 0, now_ms=101)  # rolls to segment 1 (segment 0 already flushed)
    log.append(batch, 0, now_ms=102)  # rolls to 2: the sealed segment 1 wants its fsync
    assert log.needs_flush(102) == 2


def test_snapshot_files_are_listed_kept_and_deleted_with_their_segment() -> None:
    fs = MemFileSystem()
    batch = make_batch(1)
    log = open_log(fs, segment_bytes=len(batch), retention_ms=-1)
    for _ in range(3):
        log.append(batch, 0, 0)
        fs.atomic_replace(log.snapshot_path(log.log_end_offset - 1), b"state")
    assert log.snapshot_offsets() == [0, 1, 2]
    log.close()
    log = open_log(fs, segment_bytes=len(batch), retention_ms=-1)
    assert log.snapshot_offsets() == [0, 1, 2]  # recovery keeps them
    log.maybe_increment_log_start_offset(1, high_watermark=3)
    log.delete_old_segments(0, high_watermark=3)
    assert log.snapshot_offsets() == [1, 2]
    log.truncate_to(1)
    assert log.snapshot_offsets() == [1]


def test_log_append_time_topics_stamp_the_broker_clock() -> None:
    log = open_log(message_timestamp_type="LogAppendTime")
    info = log.append(make_batch(2, ts=5), 0, now_ms=777)
    assert info.log_append_time == 777 and info.max_timestamp == 777
    batch = next(iter_batches(log.read(0, 1 << 20).records))
    batch.validate()
    assert [r.timestamp for r in batch] == [777, 777]


def test_on_disk_log_round_trip(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=2000, index_interval_bytes=100)
    log = PartitionLog.open(str(tmp_path / "t-0"), config, 0)
    for i in range(40):
        log.append(make_batch(3, tag=f"b{i}-"), i // 10, 0)
    expected = [bytes(log.read(o, 1 << 20).records) for o in (0, 33, 60)]
    log.close()
    log = PartitionLog.open(str(tmp_path / "t-0"), config, 0)
    assert log.recovery_report.clean_shutdown and not log.recovery_report.recovered_segments
    assert [bytes(log.read(o, 1 << 20).records) for o in (0, 33, 60)] == expected
    assert log.end_offset_for_epoch(1) == (1, 60)
    assert all(RecordBatch(b).is_valid() for b in expected)
    log.close()


def test_a_full_index_rolls_the_segment() -> None:
    log = open_log(segment_index_bytes=24, index_interval_bytes=0)  # 2 time-index entries
    for i in range(8):
        log.append(make_batch(1, ts=1000 + i), 0, 0)
    assert len(log.segments) > 1
    assert all(len(s.time_index) <= 2 for s in log.segments[:-1])
    assert [r for r, _ in values(log.read(0, 1 << 20).records)][0] == 0


def test_reads_of_recent_batches_find_the_batch_that_holds_the_offset(seed: int) -> None:
    """A segment remembers where its recent batches are (fetches of new data skip the index
    scan). Through gaps, truncations and more batches than it remembers, a read must start with
    the batch that holds the offset, as the segment files say."""
    rng = random.Random(seed)
    fs = MemFileSystem()
    log = open_log(fs, index_interval_bytes=300)

    def check() -> None:
        batches = [b for s in log.segments
                   for b in iter_batches(fs.read_file(s.path(".log")) or b"")]
        assert len(batches) > 500
        for o in range(log.log_start_offset, log.log_end_offset):
            holder = next(b for b in batches if b.last_offset >= o)
            first = next(iter_batches(log.read(o, 1).records))
            assert first.base_offset == holder.base_offset
            assert first.last_offset == holder.last_offset

    epoch = 1
    for i in range(1500):
        step = rng.random()
        if i == 1000:
            check()  # the remembered tail has been trimmed, nothing truncated yet
        if i > 1000 and step < 0.03:
            log.truncate_to(log.log_end_offset - rng.randrange(1, 10))
            epoch += 1
        elif step < 0.06:  # a gap, as a follower of a compacted leader sees
            gap = make_batch(1, base_offset=log.log_end_offset + rng.randrange(1, 5), epoch=epoch)
            log.append_as_follower(gap, 0)
        else:
            log.append(make_batch(rng.randrange(1, 4), size=rng.randrange(0, 60)), epoch, 0)
    check()
