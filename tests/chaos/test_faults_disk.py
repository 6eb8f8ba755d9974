"""Disk faults (chaos/disk_faults.py) on a real PartitionLog: recovery must cut at the damage."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from chaos.disk_faults import (
    DiskFaultError,
    flip_byte_in_last_batch,
    last_batch,
    tear_last_batch,
)
from cluster.log import LogConfig, MemFileSystem, PartitionLog
from cluster.log.recovery import CLEAN_SHUTDOWN_FILE
from proto.records import RecordBatchBuilder


def make_batch(i: int, records: int = 3) -> bytes:
    builder = RecordBatchBuilder()
    for r in range(records):
        builder.append(f"value-{i}-{r}".encode() * 4, key=f"k{i}".encode(),
                       timestamp_ms=1000 + i)
    return builder.build()


def write_log(directory: str, batches: int, *, segment_bytes: int = 1 << 20,
              close: bool = False) -> tuple[LogConfig, list[bytes]]:
    config = LogConfig(segment_bytes=segment_bytes)
    log = PartitionLog.open(directory, config, 0)
    for i in range(batches):
        log.append(make_batch(i), 0, 0)
    stored = [bytes(log.read(o, 1).records) for o in range(0, log.log_end_offset, 3)]
    if close:
        log.close()
    return config, stored


def test_a_torn_write_on_disk_is_cut_by_recovery(tmp_path: Path, seed: int) -> None:
    directory = str(tmp_path / "orders-0")
    config, stored = write_log(directory, 5)
    detail = tear_last_batch(directory, random.Random(seed))
    assert detail["base_offset"] == 12 and detail["last_offset"] == 14, f"seed={seed}"
    assert 0 < detail["kept_bytes"] < len(stored[-1]), f"seed={seed}"  # type: ignore[operator]
    assert os.path.getsize(str(detail["segment"])) == detail["size_after"]
    log = PartitionLog.open(directory, config, 0)
    assert log.recovery_report.truncated_at_offset == 12, f"seed={seed}"
    assert log.log_end_offset == 12
    assert [bytes(log.read(o, 1).records) for o in (0, 3, 6, 9)] == stored[:4]
    assert log.append(make_batch(99), 1, 0).first_offset == 12  # and it goes on


def test_a_flipped_byte_in_the_tail_fails_the_crc_and_is_cut(tmp_path: Path, seed: int) -> None:
    directory = str(tmp_path / "orders-0")
    config, stored = write_log(directory, 4)
    detail = flip_byte_in_last_batch(directory, random.Random(seed))
    assert detail["new_byte"] == detail["old_byte"] ^ 0xFF  # type: ignore[operator]
    log = PartitionLog.open(directory, config, 0)
    report = log.recovery_report
    assert report.truncated_at_offset == 9, f"seed={seed} {report}"
    assert [bytes(log.read(o, 1).records) for o in (0, 3, 6)] == stored[:3]


def test_after_a_clean_shutdown_the_marker_goes_so_recovery_still_scans(tmp_path: Path) -> None:
    directory = str(tmp_path / "t-1")
    config, _ = write_log(directory, 3, close=True)
    assert (Path(directory) / CLEAN_SHUTDOWN_FILE).exists()
    detail = tear_last_batch(directory, random.Random(7))
    assert detail["clean_shutdown_marker_removed"] is True
    log = PartitionLog.open(directory, config, 0)
    assert not log.recovery_report.clean_shutdown
    assert log.log_end_offset == 6


def test_the_last_non_empty_segment_is_the_one_damaged() -> None:
    fs = MemFileSystem()
    batch = make_batch(0)
    config = LogConfig(segment_bytes=len(batch) * 2)
    log = PartitionLog.open("/d/t-0", config, 0, fs=fs)
    for i in range(5):  # segments at 0, 6, 12 (12 holds one batch)
        log.append(make_batch(i), 0, 0)
    assert [s.base_offset for s in log.segments] == [0, 6, 12]
    found = last_batch("/d/t-0", fs)
    assert (found.base_offset, found.position) == (12, 0)
    log.roll(0)  # an empty active segment at 15: the damage goes to the one before
    assert last_batch("/d/t-0", fs).base_offset == 12
    tear_last_batch("/d/t-0", random.Random(3), fs)
    reopened = PartitionLog.open("/d/t-0", config, 0, fs=fs)
    assert reopened.log_end_offset == 12


def test_an_empty_partition_has_nothing_to_damage(tmp_path: Path) -> None:
    directory = str(tmp_path / "t-0")
    PartitionLog.open(directory, LogConfig(), 0)
    with pytest.raises(DiskFaultError, match="no segment holds a whole batch"):
        tear_last_batch(directory)
