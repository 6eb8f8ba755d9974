"""Recovery on open: torn writes, bit flips, partial headers, lost unsynced data, broken
indexes and checkpoints. Everything before the damage must stay readable."""

from __future__ import annotations

import random

import pytest

from cluster.log import LogConfig, MemFileSystem, PartitionLog
from cluster.log.segment import offset_file_name
from proto.records import RecordBatchBuilder, iter_batches

DIR = "/data/t-0"


def make_batch(i: int, size: int = 40) -> bytes:
    builder = RecordBatchBuilder()
    builder.append(f"value-{i:04d}-".encode() + b"x" * size, key=f"k{i:04d}".encode(),
                   timestamp_ms=1000 + i)
    return builder.build()


def build_log(fs: MemFileSystem, batches: int, *, segment_batches: int = 4,
              epoch_every: int = 5) -> tuple[LogConfig, list[bytes]]:
    """A log of one-record batches, `segment_batches` per segment, not closed (a crash)."""
    size = len(make_batch(0))
    config = LogConfig(segment_bytes=size * segment_batches, index_interval_bytes=size)
    log = PartitionLog.open(DIR, config, 0, fs=fs)
    for i in range(batches):
        log.append(make_batch(i), i // epoch_every, 0)
    stored = [bytes(log.read(i, size).records) for i in range(batches)]
    return config, stored


def path(base: int, suffix: str = ".log") -> str:
    return f"{DIR}/{offset_file_name(base, suffix)}"


def readable(log: PartitionLog) -> list[bytes]:
    return [bytes(log.read(i, 1).records) for i in range(log.log_start_offset,
                                                         log.log_end_offset)]


def test_a_cut_mid_batch_truncates_that_batch_and_deletes_later_segments() -> None:
    fs = MemFileSystem()
    config, stored = build_log(fs, 12)  # segments 0, 4, 8
    segment_4 = fs.read_file(path(4))
    assert segment_4 is not None
    fs.tear_last_write(path(4), len(stored[4]) + len(stored[5]) // 2)
    log = PartitionLog.open(DIR, config, 0, fs=fs)
    report = log.recovery_report
    assert not report.clean_shutdown and report.truncated_at_offset == 5
    assert report.deleted_segments == (8,)
    assert report.truncated_bytes == len(stored[5]) // 2 + sum(len(b) for b in stored[8:])
    assert log.log_end_offset == 5
    assert readable(log) == stored[:5]
    assert not fs.exists(path(8))
    assert log.append(make_batch(99), 3, 0).first_offset == 5  # and it goes on


def test_a_single_bit_flip_in_the_tail_batch_truncates_it() -> None:
    fs = MemFileSystem()
    config, stored = build_log(fs, 6, segment_batches=100)
    tail_position = sum(len(b) for b in stored[:5])
    fs.flip_bit(path(0), tail_position + 70, bit=2)
    log = PartitionLog.open(DIR, config, 0, fs=fs)
    assert log.recovery_report.truncated_at_offset == 5
    assert "crc" in (log.recovery_report.error or "")
    assert readable(log) == stored[:5]


@pytest.mark.parametrize("keep", [1, 11, 12, 30, 60])
def test_a_partial_header_at_the_end_is_cut(keep: int) -> None:
    fs = MemFileSystem()
    config, stored = build_log(fs, 3, segment_batches=100)
    intact = sum(len(b) for b in stored[:2])
    fs.tear_last_write(path(0), intact + keep)
    log = PartitionLog.open(DIR, config, 0, fs=fs)
    assert log.recovery_report.truncated_bytes == keep
    assert readable(log) == stored[:2]
    assert fs.read_file(path(0)) == b"".join(stored[:2])  # no garbage left after


def test_an_unsynced_tail_is_lost_on_crash_and_the_rest_survives() -> None:
    fs = MemFileSystem()
    size = len(make_batch(0))
    config = LogConfig(segment_bytes=size * 4)
    log = PartitionLog.open(DIR, config, 0, fs=fs)
    for i in range(6):
        log.append(make_batch(i), 0, 0)
    log.flush()
    for i in range(6, 10):
        log.append(make_batch(i), 0, 0)
    fs.crash(random.Random(7))
    log = PartitionLog.open(DIR, config, 0, fs=fs)
    assert 6 <= log.log_end_offset <= 10
    values = [r.value for b in iter_batches(b"".join(readable(log))) for r in b]
    assert values == [make_value(i) for i in range(log.log_end_offset)]


def make_value(i: int) -> bytes:
    return f"value-{i:04d}-".encode() + b"x" * 40


@pytest.mark.parametrize("damage", ["missing", "garbage", "wrong-entry"])
def test_missing_or_corrupt_index_files_are_rebuilt(damage: str) -> None:
    fs = MemFileSystem()
    config, stored = build_log(fs, 12)
    PartitionLog.open(DIR, config, 0, fs=fs).close()
    if damage == "missing":
        fs.delete(path(4, ".index"))
    elif damage == "garbage":
        fs.atomic_replace(path(4, ".index"), b"\xff" * 13)
    else:
        fs.atomic_replace(path(4, ".index"), (1).to_bytes(4, "big") + (3).to_bytes(4, "big"))
    log = PartitionLog.open(DIR, config, 0, fs=fs)
    assert log.recovery_report.rebuilt_indexes == (4,)
    assert not log.recovery_report.truncated
    assert readable(log) == stored
    assert len(log.segments[1].index) > 0


def test_clean_shutdown_skips_the_scan_and_the_marker_is_consumed() -> None:
    fs = MemFileSystem()
    config, stored = build_log(fs, 12)
    PartitionLog.open(DIR, config, 0, fs=fs).close()
    log = PartitionLog.open(DIR, config, 0, fs=fs)
    assert log.recovery_report.clean_shutdown and log.recovery_report.recovered_segments == ()
    assert readable(log) == stored
    again = PartitionLog.open(DIR, config, 0, fs=fs)  # no close in between: unclean
    assert not again.recovery_report.clean_shutdown


def test_unclean_open_recovers_from_the_recovery_point_segment_on() -> None:
    fs = MemFileSystem()
    size = len(make_batch(0))
    config = LogConfig(segment_bytes=size * 4, index_interval_bytes=size)
    log = PartitionLog.open(DIR, config, 0, fs=fs)
    for i in range(12):
        log.append(make_batch(i), 0, 0)
    log.flush(6)
    stored = readable(log)
    reopened = PartitionLog.open(DIR, config, 0, fs=fs)
    assert reopened.recovery_report.recovered_segments == (4, 8)
    assert readable(reopened) == stored
    assert reopened.recovery_point == 12  # recovered segments are fsynced on open
    again = PartitionLog.open(DIR, config, 0, fs=fs)
    assert again.recovery_report.recovered_segments == (8,)  # only the active one


def test_the_epoch_cache_is_rebuilt_from_batch_headers_if_its_checkpoint_is_gone() -> None:
    fs = MemFileSystem()
    config, _ = build_log(fs, 12, epoch_every=4)
    fs.delete(f"{DIR}/leader-epoch-checkpoint")
    log = PartitionLog.open(DIR, config, 0, fs=fs)
    assert log.epoch_cache.entries() == [(0, 0), (1, 4), (2, 8)]
    assert log.end_offset_for_epoch(1) == (1, 8)


def test_the_epoch_cache_is_trimmed_to_the_recovered_log_end() -> None:
    fs = MemFileSystem()
    config, stored = build_log(fs, 12, epoch_every=4)
    fs.tear_last_write(path(4), len(stored[4]) + 3)
    log = PartitionLog.open(DIR, config, 0, fs=fs)
    assert log.log_end_offset == 5
    assert log.epoch_cache.entries() == [(0, 0), (1, 4)]


def test_random_crashes_keep_every_flushed_batch_and_a_clean_prefix(seed: int) -> None:
    rng = random.Random(seed)
    fs = MemFileSystem()
    size = len(make_batch(0))
    config = LogConfig(segment_bytes=size * rng.randrange(2, 6), index_interval_bytes=size * 2)
    expected: list[bytes] = []  # values of batches 0..n-1, in offset order
    flushed = 0
    for step in range(6):
        log = PartitionLog.open(DIR, config, 0, fs=fs)
        assert flushed <= log.log_end_offset <= len(expected), f"seed={seed} step={step}"
        del expected[log.log_end_offset:]
        got = [r.value for b in iter_batches(b"".join(readable(log))) for r in b]
        assert got == expected, f"seed={seed} step={step}"
        for _ in range(rng.randrange(1, 15)):
            i = len(expected)
            log.append(make_batch(i), step, 0)
            expected.append(make_value(i))
            if rng.random() < 0.2:
                log.flush()
                flushed = log.log_end_offset
        fs.crash(rng if rng.random() < 0.7 else None)


def test_leftover_temp_deleted_and_orphan_index_files_are_removed_on_open() -> None:
    fs = MemFileSystem()
    config, stored = build_log(fs, 6)
    fs.atomic_replace(f"{DIR}/leader-epoch-checkpoint.tmp", b"half")
    fs.atomic_replace(path(0) + ".deleted", b"old")
    fs.atomic_replace(path(40, ".index"), b"")
    fs.atomic_replace(path(40, ".snapshot"), b"producer state")
    log = PartitionLog.open(DIR, config, 0, fs=fs)
    names = fs.list_dir(DIR)
    assert not any(n.endswith((".tmp", ".deleted")) for n in names)
    assert offset_file_name(40, ".index") not in names
    assert offset_file_name(40, ".snapshot") in names  # snapshots are never garbage
    assert readable(log) == stored


def test_batches_larger_than_the_recovery_read_chunk() -> None:
    fs = MemFileSystem()
    config = LogConfig(max_message_bytes=4 << 20)
    log = PartitionLog.open(DIR, config, 0, fs=fs)
    big = [make_batch(i, size=(1 << 20) + 1000 * i) for i in range(3)]
    for batch in big:
        log.append(batch, 0, 0)
    fs.tear_last_write(path(0), len(big[0]) + len(big[1]) + (1 << 20))
    log = PartitionLog.open(DIR, config, 0, fs=fs)
    assert log.log_end_offset == 2
    assert [len(log.read(i, 1).records) for i in range(2)] == [len(b) for b in big[:2]]
