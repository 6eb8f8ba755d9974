"""Compaction: last value per key, offsets kept, tombstones after delete.retention.ms
(KIP-534), the active segment untouched, and crash-safe swaps."""

from __future__ import annotations

from cluster.log import LogCleaner, LogConfig, MemFileSystem, PartitionLog
from cluster.log.segment import offset_file_name
from proto.records import RecordBatchBuilder, iter_batches

DIR = "/data/compacted-0"
DAY = 86_400_000


def kv_batch(*pairs: tuple[str, str | None], ts: int = 1000) -> bytes:
    builder = RecordBatchBuilder(producer_id=7, producer_epoch=1, base_sequence=0)
    for key, value in pairs:
        builder.append(None if value is None else value.encode(), key=key.encode(),
                       timestamp_ms=ts)
    return builder.build()


def compacted_log(fs: MemFileSystem, **overrides: object) -> PartitionLog:
    config = LogConfig(cleanup_policy="compact", segment_bytes=200, **overrides)  # type: ignore
    return PartitionLog.open(DIR, config, 0, fs=fs)


def contents(log: PartitionLog) -> list[tuple[int, str, str | None]]:
    out = []
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        result = log.read(offset, 1 << 20)
        for batch in iter_batches(result.records):
            batch.validate()
            for r in batch:
                assert r.key is not None
                out.append((r.offset, r.key.decode(), None if r.value is None
                            else r.value.decode()))
        offset = result.next_offset
    return out


def fill(log: PartitionLog) -> None:
    for round_ in range(6):
        log.append(kv_batch(("a", f"a{round_}"), ("b", f"b{round_}"), ("c", f"c{round_}")),
                   0, 0)
    assert len(log.segments) >= 3
    log.flush()  # only durable segments are cleaned


def test_compaction_keeps_the_last_value_per_key_and_preserves_offsets() -> None:
    fs = MemFileSystem()
    log = compacted_log(fs)
    fill(log)
    before = contents(log)
    active_before = log.active_segment.size
    outcome = LogCleaner().clean(log, now_ms=10_000, force=True)
    assert outcome is not None and outcome.stats.records_kept < outcome.stats.records_read
    after = contents(log)
    assert set(after) <= set(before)  # same offsets, same values: nothing renumbered
    sealed_end = log.active_segment.base_offset
    latest = {key: (offset, value) for offset, key, value in before}
    for offset, key, value in after:
        if offset < sealed_end:
            assert latest[key] == (offset, value) or any(
                o >= sealed_end and k == key for o, k, _ in before)
    assert log.active_segment.size == active_before  # the active segment is never touched
    final = {key: value for _, key, value in after}
    assert final == {"a": "a5", "b": "b5", "c": "c5"}
    assert log.cleaner_checkpoint == sealed_end


def test_compacted_log_reopens_consistently() -> None:
    fs = MemFileSystem()
    log = compacted_log(fs)
    fill(log)
    LogCleaner().clean(log, now_ms=10_000, force=True)
    expected = contents(log)
    log.close()
    reopened = compacted_log(fs)
    assert contents(reopened) == expected
    assert reopened.cleaner_checkpoint == log.cleaner_checkpoint


def test_tombstones_survive_delete_retention_ms_after_the_first_cleaning() -> None:
    fs = MemFileSystem()
    log = compacted_log(fs, delete_retention_ms=DAY)
    log.append(kv_batch(("a", "1"), ("b", "1")), 0, 0)
    log.append(kv_batch(("a", None)), 0, 0)  # delete a
    log.append(kv_batch(("z", "pad" * 40)), 0, 0)
    log.append(kv_batch(("z", "pad" * 40)), 0, 0)
    log.roll(now_ms=0)
    log.append(kv_batch(("c", "1")), 0, 0)
    log.flush()
    cleaner = LogCleaner()
    t0 = 5_000
    cleaner.clean(log, now_ms=t0, force=True)
    assert [(k, v) for _, k, v in contents(log) if k == "a"] == [("a", None)]
    cleaner.clean(log, now_ms=t0 + DAY - 1, force=True)
    assert ("a", None) in [(k, v) for _, k, v in contents(log)]
    outcome = cleaner.clean(log, now_ms=t0 + DAY, force=True)
    assert outcome is not None and outcome.stats.tombstones_dropped == 1
    assert [k for _, k, _ in contents(log)] == ["b", "z", "c"]


def test_only_flushed_segments_are_cleaned() -> None:
    fs = MemFileSystem()
    log = compacted_log(fs)
    for round_ in range(6):
        log.append(kv_batch(("a", f"a{round_}"), ("b", f"b{round_}")), 0, 0)
    cleaner = LogCleaner()
    assert cleaner.plan(log, now_ms=10_000, force=True) is None
    log.flush(log.segments[1].base_offset)
    task = cleaner.plan(log, now_ms=10_000, force=True)
    assert task is not None and [s.base_offset for s in task.sources] == [0]
    task.abort()


def test_dirty_ratio_and_min_compaction_lag_gate_cleaning() -> None:
    fs = MemFileSystem()
    log = compacted_log(fs, min_compaction_lag_ms=1000)
    fill(log)
    cleaner = LogCleaner()
    assert cleaner.plan(log, now_ms=1500) is None  # records are younger than the lag
    assert cleaner.plan(log, now_ms=2001) is not None
    cleaner.clean(log, now_ms=2001)
    assert cleaner.plan(log, now_ms=2001) is None  # nothing dirty left
    delete_only = PartitionLog.open("/data/plain-0", LogConfig(), 0, fs=fs)
    assert cleaner.plan(delete_only, now_ms=0, force=True) is None


def test_an_outcome_for_segments_that_changed_meanwhile_is_discarded() -> None:
    fs = MemFileSystem()
    log = compacted_log(fs)
    fill(log)
    before = contents(log)
    task = LogCleaner().plan(log, now_ms=10_000, force=True)
    assert task is not None
    log.append(kv_batch(("d", "1")), 0, 0)  # appends may go on while the task runs
    outcome = task.run()
    log.truncate_to(3)  # ...but a truncation invalidates the task
    assert not log.replace_segments(outcome)
    assert contents(log) == before[:3]
    assert not any(p.endswith(".cleaned") for p in fs.paths())


def _planned_and_built(fs: MemFileSystem) -> tuple[PartitionLog, list[tuple[int, str, str | None]],
                                                  list[int]]:
    log = compacted_log(fs)
    fill(log)
    before = contents(log)
    task = LogCleaner().plan(log, now_ms=10_000, force=True)
    assert task is not None
    outcome = task.run()
    return log, before, [c.base_offset for c in outcome.cleaned]


def test_crash_before_the_swap_discards_the_cleaned_files() -> None:
    fs = MemFileSystem()
    _, before, bases = _planned_and_built(fs)
    name = f"{DIR}/{offset_file_name(bases[0], '.index')}"
    fs.rename(name + ".cleaned", name + ".swap")  # crashed half-way through the renames
    reopened = compacted_log(fs)
    assert contents(reopened) == before
    assert reopened.recovery_report.discarded_cleanings == tuple(bases)
    assert not any(p.endswith((".cleaned", ".swap")) for p in fs.paths())


def test_crash_after_the_swap_files_are_ready_completes_the_swap() -> None:
    fs = MemFileSystem()
    _, before, bases = _planned_and_built(fs)
    for base in bases:
        for suffix in (".index", ".timeindex", ".log"):
            name = f"{DIR}/{offset_file_name(base, suffix)}"
            fs.rename(name + ".cleaned", name + ".swap")
    # Crash after the first segment committed and before the second one did.
    first = f"{DIR}/{offset_file_name(bases[0], '.log')}"
    fs.rename(first + ".swap", first)
    reopened = compacted_log(fs)
    assert set(reopened.recovery_report.completed_swaps) == set(bases[1:])
    after = contents(reopened)
    assert set(after) < set(before)
    assert {k: v for _, k, v in after} == {"a": "a5", "b": "b5", "c": "c5"}
    assert not any(p.endswith((".cleaned", ".swap")) for p in fs.paths())
