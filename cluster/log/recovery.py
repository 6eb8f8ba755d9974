"""Loading a partition directory, and recovery after an unclean shutdown (Kafka's `LogLoader`,
`LogSegment.recover`).

Theory of operation
-------------------
`load_partition_dir` turns the files of `<data-dir>/<topic>-<partition>/` into open
`LogSegment`s, in this order:

1. Leftovers: `*.tmp` (a checkpoint being replaced) and `*.deleted` (retention victims) are
   removed. Compaction leftovers are resolved per base offset `b` (protocol in cleaner.py): if
   `b.log.cleaned` still exists the swap never committed, so every `b.*.cleaned` / `b.*.swap` is
   removed; otherwise a `b.log.swap` is renamed over `b.log` (the commit completes) and b's
   indexes are rebuilt from the new log. Index files with no `.log` are removed.
2. Clean shutdown: `close()` writes the `clean-shutdown` marker file last, after every file was
   flushed. If it is present, it is removed (before any new write) and no segment is scanned
   unless its index files fail their sanity check. Otherwise every segment from the one holding
   the recovery point (`recovery-point-offset-checkpoint`: everything below was fsynced) to the
   end is recovered.
3. Recovering a segment reads it from position 0 and validates every batch: a full 61-byte
   header, batchLength ≥ 49 and within the file, magic 2, CRC-32C, base offset ≥ the previous
   batch's next offset (and ≥ the segment's base), lastOffsetDelta ≥ 0 and the last offset
   representable relative to the segment base. Indexes are rebuilt on the way. At the first
   invalid batch (a torn write, a flipped bit, a partial header) the file is truncated there,
   and every later segment is deleted (Kafka: "once a segment is truncated, later segments are
   discarded"): what survives is a prefix of what was written, and everything before the damage
   stays readable. A recovered segment that ends below the next segment's base offset lost
   whole batches (unsynced data dropped cleanly at a batch boundary): the same cut applies.
   The recovered segments (and the cut) are then fsynced and the recovery point moves to the
   log end, so a second crash cannot resurrect torn bytes.
4. The leader-epoch cache is loaded from `leader-epoch-checkpoint`, or rebuilt from the batch
   headers of every segment if the file is missing or malformed; epochs seen in recovered
   batches are assigned (as `LogSegment.recover` does); it is then trimmed to [log start, LEO).

The result says what was cut (`RecoveryReport`) so the broker can log it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cluster.log.checkpoint import read_offset_checkpoint
from cluster.log.config import LogConfig
from cluster.log.epoch_cache import LEADER_EPOCH_CHECKPOINT, LeaderEpochCache
from cluster.log.files import FileSystem, join
from cluster.log.segment import (
    CLEANED_SUFFIX,
    DELETED_SUFFIX,
    H_BASE_OFFSET,
    H_EPOCH,
    H_LAST_DELTA,
    H_LENGTH,
    H_MAX_TS,
    HEADER,
    INDEX_SUFFIX,
    INT32_MAX,
    LOG_SUFFIX,
    SWAP_SUFFIX,
    TIME_INDEX_SUFFIX,
    LogSegment,
    offset_file_name,
    parse_offset_file_name,
)
from proto.errors import CorruptMessageError
from proto.records import LOG_OVERHEAD, RECORD_BATCH_OVERHEAD, RecordBatch

CLEAN_SHUTDOWN_FILE = "clean-shutdown"
RECOVERY_POINT_CHECKPOINT = "recovery-point-offset-checkpoint"
LOG_START_OFFSET_CHECKPOINT = "log-start-offset-checkpoint"
CLEANER_OFFSET_CHECKPOINT = "cleaner-offset-checkpoint"

_RECOVERY_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SegmentRecovery:
    """What recovering one segment found."""

    base_offset: int
    valid_bytes: int
    truncated_bytes: int
    epochs: tuple[tuple[int, int], ...]  # (epoch, first offset) where the epoch increased
    error: str | None  # why the tail was cut (None: the segment was intact)


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What `PartitionLog.open` did to the files; empty when the log was intact."""

    clean_shutdown: bool
    recovered_segments: tuple[int, ...] = ()  # base offsets scanned batch by batch
    rebuilt_indexes: tuple[int, ...] = ()  # base offsets whose index files were rebuilt
    truncated_at_offset: int | None = None  # log end offset right after the cut
    truncated_bytes: int = 0  # bytes cut from the damaged segment and the deleted ones
    deleted_segments: tuple[int, ...] = ()  # base offsets of segments after the damage
    completed_swaps: tuple[int, ...] = ()  # compaction swaps finished on load
    discarded_cleanings: tuple[int, ...] = ()  # unfinished compaction output removed
    error: str | None = None  # the first invalid batch's problem

    @property
    def truncated(self) -> bool:
        return self.truncated_at_offset is not None


@dataclass(slots=True)
class LoadedLog:
    """The open state of a partition directory, handed to `PartitionLog`."""

    segments: list[LogSegment]
    epoch_cache: LeaderEpochCache
    log_start_offset: int
    recovery_point: int
    cleaner_checkpoint: int
    report: RecoveryReport
    stray: list[str] = field(default_factory=list)


def recover_segment(segment: LogSegment, min_offset: int) -> SegmentRecovery:
    """Validate every batch of `segment`, rebuild its indexes, cut the file at the first invalid
    batch. `min_offset` is the lowest base offset the first batch may have."""
    segment.reset_indexes()
    file_size = segment.log.size()
    segment.size = file_size
    position = 0
    expected = max(min_offset, segment.base_offset)
    epochs: list[tuple[int, int]] = []
    latest_epoch = -1
    error: str | None = None
    while position < file_size and error is None:
        chunk = segment.log.read_at(position, min(_RECOVERY_CHUNK, file_size - position))
        offset = 0
        while offset < len(chunk):
            remaining = len(chunk) - offset
            at_eof = position + len(chunk) >= file_size
            if remaining < RECORD_BATCH_OVERHEAD:
                if not at_eof:
                    break  # the header straddles the chunk: read on from here
                error = f"partial batch header ({remaining} bytes) at position {position + offset}"
                break
            h = HEADER.unpack_from(chunk, offset)
            size = h[H_LENGTH] + LOG_OVERHEAD
            if RECORD_BATCH_OVERHEAD <= size and remaining < size and not at_eof:
                if offset:
                    break  # the batch straddles the chunk: read on from its start
                # A batch bigger than the chunk: read it whole (or up to the end of the file).
                chunk = segment.log.read_at(position, min(size, file_size - position))
                continue
            error = _check_batch(chunk, offset, h, expected, segment.base_offset, position)
            if error is not None:
                break
            last_offset = h[H_BASE_OFFSET] + h[H_LAST_DELTA]
            segment.index_batch(position + offset, size, last_offset, h[H_MAX_TS])
            if h[H_EPOCH] > latest_epoch:
                latest_epoch = h[H_EPOCH]
                epochs.append((h[H_EPOCH], h[H_BASE_OFFSET]))
            expected = last_offset + 1
            offset += size
        position += offset
    truncated = file_size - position
    if truncated:
        segment.log.truncate(position)
    segment.size = position
    segment.bytes_since_last_index_entry = position - segment.index.last_entry[1]
    return SegmentRecovery(segment.base_offset, position, truncated, tuple(epochs), error)


def _check_batch(chunk: bytes, offset: int, h: tuple[int, ...], expected: int,
                 segment_base: int, position: int) -> str | None:
    """Why the batch at chunk[offset:] is invalid, or None."""
    where = f"at position {position + offset}"
    length = h[H_LENGTH]
    if length < RECORD_BATCH_OVERHEAD - LOG_OVERHEAD:
        return f"batchLength {length} below the minimum {where}"
    size = length + LOG_OVERHEAD
    if size > len(chunk) - offset:
        return f"batch of {size} bytes runs past the end of the file {where}"
    try:
        RecordBatch(memoryview(chunk)[offset:offset + size]).validate()
    except CorruptMessageError as exc:
        return f"{exc.message} {where}"
    base = h[H_BASE_OFFSET]
    if base < expected:
        return f"base offset {base} below the expected {expected} {where}"
    if h[H_LAST_DELTA] < 0:
        return f"lastOffsetDelta {h[H_LAST_DELTA]} is negative {where}"
    if base + h[H_LAST_DELTA] - segment_base > INT32_MAX:
        return f"offset {base + h[H_LAST_DELTA]} overflows segment {segment_base} {where}"
    return None


# --------------------------------------------------------------------------------------------
# Loading a directory
# --------------------------------------------------------------------------------------------


def load_partition_dir(fs: FileSystem, directory: str, config: LogConfig,
                       now_ms: int) -> LoadedLog:
    """Open every segment of `directory`, recovering as needed (module docstring)."""
    fs.make_dirs(directory)
    completed, discarded, rebuild = _resolve_leftovers(fs, directory)
    names = fs.list_dir(directory)
    bases = sorted(p[0] for p in map(parse_offset_file_name, names)
                   if p is not None and p[1] == LOG_SUFFIX)
    clean = CLEAN_SHUTDOWN_FILE in names
    if clean:
        # Forget the marker before anything else is written: a crash from now on is unclean.
        fs.delete(join(directory, CLEAN_SHUTDOWN_FILE))
        fs.fsync_dir(directory)
    checkpointed_start = read_offset_checkpoint(
        fs, join(directory, LOG_START_OFFSET_CHECKPOINT)) or 0
    recovery_point = read_offset_checkpoint(
        fs, join(directory, RECOVERY_POINT_CHECKPOINT)) or 0
    cleaner_checkpoint = read_offset_checkpoint(
        fs, join(directory, CLEANER_OFFSET_CHECKPOINT)) or 0
    interval, index_bytes = config.index_interval_bytes, config.segment_index_bytes
    if not bases:
        bases = [checkpointed_start]
        LogSegment.create(fs, directory, checkpointed_start, index_interval_bytes=interval,
                          segment_index_bytes=index_bytes, created_ms=now_ms).close()
    recover_from = max([b for b in bases if b <= recovery_point] or [bases[0]])

    segments: list[LogSegment] = []
    recovered: list[int] = []
    rebuilt: list[int] = []
    recovered_epochs: list[tuple[int, int]] = []
    cut: SegmentRecovery | None = None
    for i, base in enumerate(bases):
        if base in rebuild:
            for suffix in (INDEX_SUFFIX, TIME_INDEX_SUFFIX):
                fs.delete(join(directory, offset_file_name(base, suffix)))
        segment, indexes_ok = LogSegment.open_existing(
            fs, directory, base, index_interval_bytes=interval, segment_index_bytes=index_bytes,
            created_ms=now_ms)
        segments.append(segment)
        if indexes_ok and (clean or base < recover_from):
            continue
        if not indexes_ok:
            rebuilt.append(base)
        recovered.append(base)
        previous_next = segments[-2].next_offset if len(segments) > 1 else 0
        result = recover_segment(segment, previous_next)
        recovered_epochs.extend(result.epochs)
        later = bases[i + 1:]
        if result.error is None and later and segment.next_offset != later[0]:
            # Segments are contiguous by construction (rolls start at the log end, cleaning
            # keeps each segment's last batch), so a hole means this segment lost unsynced
            # batches whole while a later file kept its own: cut here too.
            result = SegmentRecovery(
                result.base_offset, result.valid_bytes, result.truncated_bytes, result.epochs,
                f"segment {base} ends at offset {segment.next_offset} but the next segment "
                f"starts at {later[0]}")
        if result.error is not None:
            cut = result
            break
    deleted, deleted_bytes = [], 0
    if cut is not None:
        for base in later:
            for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX):
                path = join(directory, offset_file_name(base, suffix))
                if suffix == LOG_SUFFIX:
                    handle = fs.open(path)
                    deleted_bytes += handle.size()
                    handle.close()
                fs.delete(path)
            deleted.append(base)
        fs.fsync_dir(directory)
        # The cut segment is the active one now: its indexes are in memory only.
    if recovered:
        # Make what recovery validated (and any cut it made) durable, so the next crash
        # cannot bring back the torn bytes, and move the recovery point past it.
        for segment in segments:
            if segment.base_offset >= recovered[0]:
                segment.flush()
        fs.fsync_dir(directory)
        recovery_point = segments[-1].next_offset
    log_end_offset = segments[-1].next_offset
    log_start_offset = min(max(checkpointed_start, segments[0].base_offset), log_end_offset)
    epoch_cache = _load_epoch_cache(fs, directory, segments, recovered_epochs)
    epoch_cache.truncate_from_end(log_end_offset)
    epoch_cache.truncate_from_start(log_start_offset)
    report = RecoveryReport(
        clean_shutdown=clean,
        recovered_segments=tuple(recovered),
        rebuilt_indexes=tuple(rebuilt),
        truncated_at_offset=None if cut is None else log_end_offset,
        truncated_bytes=(0 if cut is None else cut.truncated_bytes) + deleted_bytes,
        deleted_segments=tuple(deleted),
        completed_swaps=tuple(completed),
        discarded_cleanings=tuple(discarded),
        error=None if cut is None else cut.error,
    )
    return LoadedLog(
        segments=segments,
        epoch_cache=epoch_cache,
        log_start_offset=log_start_offset,
        recovery_point=min(recovery_point, log_end_offset),
        cleaner_checkpoint=min(cleaner_checkpoint, log_end_offset),
        report=report,
    )


def _load_epoch_cache(fs: FileSystem, directory: str, segments: list[LogSegment],
                      recovered_epochs: list[tuple[int, int]]) -> LeaderEpochCache:
    path = join(directory, LEADER_EPOCH_CHECKPOINT)
    cache = LeaderEpochCache.load(fs, path)
    if cache is None:
        # Missing or unreadable checkpoint: rebuild from every batch header (KIP-101).
        cache = LeaderEpochCache(fs, path)
        for segment in segments:
            for batch in segment.scan():
                epoch = batch.partition_leader_epoch
                if epoch >= 0 and epoch > cache.latest_epoch:
                    cache.assign(epoch, batch.base_offset)
        cache.flush()
        return cache
    for epoch, start in recovered_epochs:
        if epoch >= 0 and epoch > cache.latest_epoch:
            cache.assign(epoch, start)
    return cache


def _resolve_leftovers(fs: FileSystem, directory: str) -> tuple[list[int], list[int], set[int]]:
    """Remove temp/deleted files; finish or discard compaction swaps (cleaner.py protocol).

    Returns (bases whose swap completed, bases whose cleaning was discarded, bases whose index
    files must be rebuilt).
    """
    completed: list[int] = []
    discarded: list[int] = []
    rebuild: set[int] = set()
    names = fs.list_dir(directory)
    pending: dict[int, list[str]] = {}
    logs: set[int] = set()
    for name in names:
        path = join(directory, name)
        if name.endswith(".tmp") or name.endswith(DELETED_SUFFIX):
            fs.delete(path)
            continue
        parsed = parse_offset_file_name(name)
        if parsed is None:
            continue
        base, suffix = parsed
        if suffix.endswith(CLEANED_SUFFIX) or suffix.endswith(SWAP_SUFFIX):
            pending.setdefault(base, []).append(name)
        elif suffix == LOG_SUFFIX:
            logs.add(base)
    for base, files in sorted(pending.items()):
        if offset_file_name(base, LOG_SUFFIX + CLEANED_SUFFIX) in files:
            for name in files:
                fs.delete(join(directory, name))
            discarded.append(base)
            continue
        swap = offset_file_name(base, LOG_SUFFIX + SWAP_SUFFIX)
        if swap in files:
            fs.rename(join(directory, swap), join(directory, offset_file_name(base, LOG_SUFFIX)))
            completed.append(base)
            logs.add(base)
        for name in files:
            if name != swap:
                fs.delete(join(directory, name))
        rebuild.add(base)
    for name in fs.list_dir(directory):
        parsed = parse_offset_file_name(name)
        if parsed and parsed[1] in (INDEX_SUFFIX, TIME_INDEX_SUFFIX) and parsed[0] not in logs:
            fs.delete(join(directory, name))
    if completed or discarded:
        fs.fsync_dir(directory)
    return completed, discarded, rebuild
