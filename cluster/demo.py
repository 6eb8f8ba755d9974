"""`rafka demo`: the storage engine end to end, as a user would watch it.

Writes Kafka RecordBatch v2 batches (some zstd-compressed) into a partition log with small
segments, tears the tail of the active segment the way a crash mid-write would, reopens the log
(recovery truncates the torn batch and keeps everything before it), and reads every surviving
record back. This is a composition root for the CLI, so it may read the wall clock.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

from cluster.log import LogConfig, PartitionLog
from proto.records import RecordBatch, RecordBatchBuilder, iter_batches

BATCHES = 24
RECORDS_PER_BATCH = 50


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _build_batch(batch_no: int, now_ms: int) -> bytes:
    builder = RecordBatchBuilder(compression="zstd" if batch_no % 2 else "none", now_ms=now_ms)
    for i in range(RECORDS_PER_BATCH):
        n = batch_no * RECORDS_PER_BATCH + i
        builder.append(
            f"order {n}: {'x' * 40}".encode(),
            key=f"customer-{n % 7}".encode(),
            headers=(("source", b"demo"),),
            timestamp_ms=now_ms + n,
        )
    return builder.build()


def _describe(log: PartitionLog) -> str:
    segments = ", ".join(f"{s.base_offset:020d}.log" for s in log.segments)
    return (f"log start {log.log_start_offset}, log end {log.log_end_offset}, "
            f"{len(log.segments)} segments [{segments}]")


def run_demo(data_dir: str | None = None) -> int:
    """Run the demo; returns the process exit code (0 when every check held)."""
    owned = data_dir is None
    root = tempfile.mkdtemp(prefix="rafka-demo-") if owned else data_dir
    assert root is not None
    partition_dir = os.path.join(root, "orders-0")
    if os.path.exists(partition_dir):
        shutil.rmtree(partition_dir)
    config = LogConfig(segment_bytes=16 * 1024)
    try:
        print(f"Rafka storage demo in {partition_dir}")
        log = PartitionLog.open(partition_dir, config, _now_ms())
        last_offsets = []
        for batch_no in range(BATCHES):
            info = log.append(_build_batch(batch_no, _now_ms()), leader_epoch=1,
                              now_ms=_now_ms())
            last_offsets.append(info.last_offset)
        print(f"1. appended {BATCHES} batches x {RECORDS_PER_BATCH} records "
              f"(every other one zstd): {_describe(log)}")

        # A crash mid-write: no clean shutdown, and the last batch only partly on disk.
        active = log.segments[-1]
        torn_path = os.path.join(partition_dir, f"{active.base_offset:020d}.log")
        log.flush()
        del log
        size = os.path.getsize(torn_path)
        with open(torn_path, "r+b") as f:
            f.truncate(size - 37)
        print(f"2. crash: cut 37 bytes off {os.path.basename(torn_path)} mid-batch")

        log = PartitionLog.open(partition_dir, config, _now_ms())
        report = log.recovery_report
        print(f"3. reopened: recovery truncated at offset {report.truncated_at_offset} "
              f"({report.truncated_bytes} bytes: {report.error}); {_describe(log)}")

        expected_end = last_offsets[-2] + 1  # the torn batch is gone, the one before intact
        records = []
        offset = log.log_start_offset
        while offset < log.log_end_offset:
            result = log.read(offset, 1 << 20)
            for batch in iter_batches(result.records):
                records.extend(r for r in RecordBatch(batch.buffer) if r.offset >= offset)
            offset = result.next_offset
        print(f"4. read back {len(records)} records, offsets 0..{records[-1].offset}:")
        for record in records[:2] + records[-2:]:
            print(f"     offset {record.offset:5d}  key={record.key.decode():12s}  "
                  f"value={record.value[:24].decode()}...  headers={record.headers}")
        found = log.offset_for_timestamp(records[600].timestamp)
        print(f"5. offset for timestamp {records[600].timestamp}: {found}")

        ok = (log.log_end_offset == expected_end
              and [r.offset for r in records] == list(range(expected_end))
              and all(r.value == f"order {r.offset}: {'x' * 40}".encode() for r in records)
              and found is not None and found[0] == 600)
        log.close()
        print("OK: every record before the torn write survived, with its value" if ok
              else "FAILED: the log did not recover as expected")
        return 0 if ok else 1
    finally:
        if owned:
            shutil.rmtree(root, ignore_errors=True)
