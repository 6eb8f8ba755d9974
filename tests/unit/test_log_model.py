"""Seeded random operation sequences against a PartitionLog on the in-memory file system,
checked after every step against a plain model of what the log must hold.

Operations: leader appends (epochs grow now and then), follower-style truncation, forced rolls,
flushes, DeleteRecords + retention, compaction, clean close + reopen, and crashes that drop or
tear unsynced bytes followed by a reopen. The model is the list of (offset, value) appended and
not truncated; a crash may shorten it, never below the last flush.
"""

from __future__ import annotations

import random

from cluster.log import LogCleaner, LogConfig, MemFileSystem, PartitionLog
from proto.records import RecordBatchBuilder, iter_batches

DIR = "/data/model-0"


def _batch(rng: random.Random, serial: int, count: int) -> tuple[bytes, list[tuple[str, bytes]]]:
    builder = RecordBatchBuilder(compression=rng.choice(["none", "none", "zstd"]))
    records = []
    for j in range(count):
        key = f"key{rng.randrange(6)}"
        value = f"{serial}.{j}".encode() + b"." * rng.randrange(0, 120)
        builder.append(value, key=key.encode(), timestamp_ms=1000 + serial)
        records.append((key, value))
    return builder.build(), records


def _contents(log: PartitionLog) -> list[tuple[int, str, bytes | None]]:
    out: list[tuple[int, str, bytes | None]] = []
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        result = log.read(offset, rng_bytes(offset))
        assert len(result.records) > 0, f"no batch at {offset} below LEO {log.log_end_offset}"
        for batch in iter_batches(result.records):
            for r in batch:
                if r.offset >= log.log_start_offset:
                    assert r.key is not None
                    out.append((r.offset, r.key.decode(), r.value))
        assert result.next_offset > offset
        offset = result.next_offset
    return out


def rng_bytes(offset: int) -> int:
    return 1 + (offset * 7919) % 3000  # small, varied max_bytes: exercises KIP-74 too


def _check(log: PartitionLog, model: list[tuple[int, str, bytes]], compacted: bool,
           where: str) -> None:
    got = _contents(log)
    live = [m for m in model if m[0] >= log.log_start_offset]
    if compacted:
        # Compaction may drop superseded records, never change or invent one, and keeps the
        # latest value of every key.
        assert set(got) <= set(live), where
        latest = {key: (o, v) for o, key, v in live}
        kept = {key: (o, v) for o, key, v in got}
        assert kept == latest, where
    else:
        assert got == live, where
    leo = log.log_end_offset
    assert all(start < leo or start == log.log_start_offset
               for _, start in log.epoch_cache.entries()), where
    if log.epoch_cache.entries():
        assert log.end_offset_for_epoch(log.latest_epoch) == (log.latest_epoch, leo), where


def _run(seed: int, compact: bool) -> None:
    rng = random.Random(seed)
    fs = MemFileSystem()
    config = LogConfig(segment_bytes=rng.choice([300, 700, 2000]),
                       index_interval_bytes=rng.choice([0, 100, 4096]), retention_ms=-1,
                       cleanup_policy="compact" if compact else "delete")
    log = PartitionLog.open(DIR, config, 0, fs=fs)
    model: list[tuple[int, str, bytes]] = []
    flushed, epoch, serial = 0, 0, 0
    for step in range(120):
        where = f"seed={seed} step={step}"
        op = rng.random()
        if op < 0.55:
            data, records = _batch(rng, serial, rng.randrange(1, 5))
            serial += 1
            if rng.random() < 0.1:
                epoch += 1
            info = log.append(data, epoch, now_ms=step)
            assert info.first_offset == (model[-1][0] + 1 if model else log.log_start_offset)
            model += [(info.first_offset + j, k, v) for j, (k, v) in enumerate(records)]
        elif op < 0.62 and model:
            # Never below what compaction has cleaned: it cleans below the high watermark only,
            # and replicas never truncate below the high watermark.
            low = max(log.log_start_offset, log.cleaner_checkpoint)
            target = rng.randrange(low, log.log_end_offset + 1)
            log.truncate_to(target)
            model = [m for m in model if m[0] < log.log_end_offset]
            flushed = min(flushed, log.log_end_offset)
        elif op < 0.67:
            log.roll(now_ms=step)
        elif op < 0.74:
            log.flush(now_ms=step)
            flushed = log.log_end_offset
        elif op < 0.79 and model:
            hw = log.log_end_offset
            log.maybe_increment_log_start_offset(rng.randrange(log.log_start_offset, hw + 1), hw)
            log.delete_old_segments(now_ms=step, high_watermark=hw)
        elif op < 0.86 and compact:
            LogCleaner().clean(log, now_ms=step * 1000, force=True)
        elif op < 0.92:
            log.close()
            log = PartitionLog.open(DIR, config, step, fs=fs)
            assert log.recovery_report.clean_shutdown and not log.recovery_report.truncated, where
            flushed = log.log_end_offset
        else:
            end_before = log.log_end_offset
            fs.crash(rng if rng.random() < 0.6 else None)
            log = PartitionLog.open(DIR, config, step, fs=fs)
            assert flushed <= log.log_end_offset <= end_before, where
            model = [m for m in model if m[0] < log.log_end_offset]
            flushed = log.log_end_offset  # recovery fsyncs what it kept
        _check(log, model, compact, where)


def test_random_operations_on_a_delete_log(seed: int) -> None:
    for sub in range(3):
        _run(seed + sub, compact=False)


def test_random_operations_on_a_compacted_log(seed: int) -> None:
    for sub in range(3):
        _run(seed + sub, compact=True)
