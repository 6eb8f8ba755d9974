"""`PartitionLog`: the storage engine of one partition replica (Kafka's `UnifiedLog` + `LocalLog`).

Theory of operation
-------------------
A log is a directory of segments (segment.py) ordered by base offset; the last one is active.
It owns: the segment list, the log end offset (LEO), the log start offset, the recovery point
(everything below it is fsynced), the leader-epoch cache (epoch_cache.py) and the names of
producer-state snapshot files. It never decodes records on the append or read paths; it does not
know about replicas, the high watermark or producers (callers pass the HW where it bounds an
operation). It is a core: no threads, no clock (`now_ms` comes in), files only through the
`FileSystem` port (files.py). One caller at a time (the broker's event loop or a lock); the one
exception is compaction, whose expensive step runs elsewhere (cleaner.py).

Operations and the Kafka rules they follow:
- `open` loads and recovers the directory (recovery.py) and reports what it cut.
- `append` (leader): validate the header (size, magic, count, CRC), stamp baseOffset = LEO and
  the leader epoch (outside the CRC) into a fresh 16-byte head written together with the rest
  of the caller's bytes by one `writev` (no copy of the batch, no re-encoding), roll if
  needed, index, and bump the epoch cache when the epoch grows.
  `append_as_follower` keeps the leader's offsets and epochs; it accepts several batches, whose
  offsets must increase and start at or above the LEO (gaps allowed: compacted leaders).
- Rolling (Kafka's `LogSegment.shouldRoll`): the segment is non-empty and (size + batch >
  segment.bytes, or the batch's max timestamp − the segment's first batch timestamp >
  segment.ms (falling back to now − creation time when the first batch has no timestamp), or
  an index is full, or the last offset does not fit in an int32 relative to the base). The
  sealed segment's index files are written, and the shell is asked to fsync it (Kafka flushes
  rolled segments in the background; that is what moves the recovery point).
- `read`: whole batches from the one holding `from_offset` (the first may start before it),
  within one segment, up to `max_bytes` but at least one batch (KIP-74). `max_offset` is an
  exclusive bound: a batch is returned only if its *last* offset is below it (as Kafka, which
  stops at the position of the batch holding the high watermark; on a leader the HW is always
  a batch boundary, so nothing visible is withheld).
- Retention deletes whole sealed segments below the HW, oldest first (by retention.ms over the
  segment's largest timestamp, retention.bytes per partition, and the log start offset). Files
  are renamed `.deleted` and removed by `purge_deleted_files` after file.delete.delay.ms.
- Truncation (`truncate_to`) drops batches whose last offset is ≥ the target; a batch straddling
  the target goes entirely, so the LEO may end below the target (followers truncate at epoch
  boundaries, which are batch boundaries). The cut is fsynced at once, unlike Kafka: otherwise
  a crash could bring back batches of a diverged epoch that the epoch cache no longer lists.
- Flushing: nothing is fsynced by default (flush.messages / flush.ms unset, as Kafka); the shell
  asks `needs_flush(now_ms)` and calls `flush(offset)` (both cheap to ask; flush blocks on
  fsync, so run it where blocking is fine).
- `close` flushes everything, checkpoints, and writes the `clean-shutdown` marker last.

Per-partition files: `<base>.log/.index/.timeindex`, `<offset>.snapshot` (producer state,
written by the broker through `snapshot_path`), `leader-epoch-checkpoint`,
`recovery-point-offset-checkpoint`, `log-start-offset-checkpoint`,
`cleaner-offset-checkpoint`, `clean-shutdown` (checkpoint.py has the formats).
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from crc32c import crc32c

from cluster.log.checkpoint import write_offset_checkpoint
from cluster.log.config import LogConfig
from cluster.log.epoch_cache import LeaderEpochCache
from cluster.log.files import Buffer, FileSystem, OsFileSystem, join
from cluster.log.recovery import (
    CLEAN_SHUTDOWN_FILE,
    CLEANER_OFFSET_CHECKPOINT,
    LOG_START_OFFSET_CHECKPOINT,
    RECOVERY_POINT_CHECKPOINT,
    RecoveryReport,
    load_partition_dir,
)
from cluster.log.segment import (
    CLEANED_SUFFIX,
    H_BASE_OFFSET,
    H_COUNT,
    H_CRC,
    H_EPOCH,
    H_LAST_DELTA,
    H_LENGTH,
    H_MAGIC,
    H_MAX_TS,
    HEADER,
    INDEX_SUFFIX,
    INT32_MAX,
    LOG_SUFFIX,
    SNAPSHOT_SUFFIX,
    SWAP_SUFFIX,
    TIME_INDEX_SUFFIX,
    BatchPosition,
    LogSegment,
    offset_file_name,
    parse_offset_file_name,
)
from proto.errors import (
    CorruptMessageError,
    FencedLeaderEpochError,
    InvalidRecordError,
    MessageTooLargeError,
    OffsetOutOfRangeError,
)
from proto.records import LOG_OVERHEAD, MAGIC, RECORD_BATCH_OVERHEAD, RecordBatch

if TYPE_CHECKING:
    from cluster.log.cleaner import CleanOutcome

# baseOffset, batchLength, partitionLeaderEpoch: stamped together in one pack_into.
_STAMP = struct.Struct(">qii")
# batchLength, magic, crc, lastOffsetDelta, maxTimestamp, recordsCount: what append checks.
_APPEND_FIELDS = struct.Struct(">8xi4xbI2xi8xq14xi")
assert _APPEND_FIELDS.size == RECORD_BATCH_OVERHEAD
LATEST_TIMESTAMP = -1  # ListOffsets sentinels
EARLIEST_TIMESTAMP = -2


class AppendInfo(NamedTuple):
    """What one append wrote.

    A NamedTuple rather than a frozen dataclass: it is built once per append on the hot path,
    and a tuple builds in a quarter of the time (bench/log_append.py).
    """

    first_offset: int  # base offset of the first batch (-1: nothing appended)
    last_offset: int
    max_timestamp: int
    offset_of_max_timestamp: int
    log_append_time: int  # the broker's time for LogAppendTime topics, else -1
    log_start_offset: int
    records_count: int
    size_in_bytes: int
    rolled_segments: tuple[int, ...] = ()  # base offsets of segments this append created


@dataclass(frozen=True, slots=True)
class ReadResult:
    """Whole batches, as stored. `records` is a zero-copy view of immutable bytes."""

    records: memoryview
    first_offset: int  # base offset of the first batch returned (-1 if none)
    next_offset: int  # offset after the last batch returned (from_offset if none)
    log_start_offset: int
    log_end_offset: int


@dataclass(frozen=True, slots=True)
class DeletedSegment:
    base_offset: int
    next_offset: int
    size_in_bytes: int
    reason: str  # "retention.ms", "retention.bytes" or "log-start-offset"


@dataclass(frozen=True, slots=True)
class RetentionResult:
    deleted: tuple[DeletedSegment, ...]
    log_start_offset: int

    @property
    def deleted_bytes(self) -> int:
        return sum(d.size_in_bytes for d in self.deleted)


class PartitionLog:
    """One partition's log. Build it with `PartitionLog.open`."""

    def __init__(self, fs: FileSystem, directory: str, config: LogConfig, now_ms: int) -> None:
        loaded = load_partition_dir(fs, directory, config, now_ms)
        self.fs = fs
        self.dir = directory
        self.config = config
        self._segments = loaded.segments  # invariant: non-empty, base offsets increasing
        self._bases = [s.base_offset for s in self._segments]
        self._active = self._segments[-1]
        self._log_end_offset = self._active.next_offset
        self._log_start_offset = loaded.log_start_offset  # invariant: <= log_end_offset
        self._recovery_point = loaded.recovery_point  # invariant: <= log_end_offset
        self._cleaner_checkpoint = loaded.cleaner_checkpoint
        self.epoch_cache: LeaderEpochCache = loaded.epoch_cache
        self.recovery_report: RecoveryReport = loaded.report
        self._unflushed_messages = 0
        self._last_flush_ms = now_ms
        # Sealed segments below this want their fsync (after a roll, as Kafka's background
        # flush; after an unclean open, the recovered segments).
        self._roll_flush_offset = self._active.base_offset
        self._pending_deletes: list[tuple[int, list[str]]] = []  # (due_ms, paths)
        self._closed = False
        self._apply_config(config)
        if not loaded.report.clean_shutdown:
            # The checkpoint may name offsets recovery just cut: never trust them again.
            self._checkpoint_recovery_point()

    @classmethod
    def open(cls, directory: str, config: LogConfig, now_ms: int,
             fs: FileSystem | None = None) -> PartitionLog:
        """Open (creating if needed) the log in `directory`, recovering it after a crash.

        `recovery_report` on the result says what recovery cut.
        """
        return cls(fs if fs is not None else OsFileSystem(), directory, config, now_ms)

    def _apply_config(self, config: LogConfig) -> None:
        self.config = config
        self._segment_bytes = config.segment_bytes
        self._segment_ms = config.segment_ms
        self._max_message_bytes = config.max_message_bytes
        self._log_append_time = config.log_append_time

    def update_config(self, config: LogConfig) -> None:
        """Apply new topic configs (IncrementalAlterConfigs); takes effect on the next call."""
        self._apply_config(config)

    # -- state --

    @property
    def log_start_offset(self) -> int:
        return self._log_start_offset

    @property
    def log_end_offset(self) -> int:
        return self._log_end_offset

    @property
    def recovery_point(self) -> int:
        return self._recovery_point

    @property
    def segments(self) -> tuple[LogSegment, ...]:
        return tuple(self._segments)

    @property
    def active_segment(self) -> LogSegment:
        return self._active

    @property
    def size_in_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    @property
    def latest_epoch(self) -> int:
        return self.epoch_cache.latest_epoch

    @property
    def cleaner_checkpoint(self) -> int:
        return self._cleaner_checkpoint

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """KIP-279: (largest epoch ≤ `epoch`, its end offset), or (-1, -1) if unknown."""
        return self.epoch_cache.end_offset_for_epoch(epoch, self._log_end_offset)

    # -- appending --

    def append(self, batch: bytes | bytearray | memoryview, leader_epoch: int,
               now_ms: int, *, validated: bool = False) -> AppendInfo:
        """Append one producer batch as leader: assign offsets from the LEO, stamp the epoch.

        Args:
            batch: exactly one RecordBatch v2, as the producer sent it.
            leader_epoch: the leader's epoch, stamped into the batch.
            now_ms: the broker's clock (rolling by segment.ms, LogAppendTime).
            validated: the caller already ran `RecordBatch.validate_for_append()` on these
                bytes (the produce path does, to read the producer fields first), so the
                CRC is not computed again; the framing checks below always run.

        Raises:
            CorruptMessageError: short data, bad batchLength, magic other than 2, CRC mismatch.
            InvalidRecordError: not exactly one batch, no records, or lastOffsetDelta + 1 !=
                recordsCount.
            MessageTooLargeError: the batch is larger than max.message.bytes.
            FencedLeaderEpochError: `leader_epoch` is below the log's latest epoch.
        """
        size = len(batch)
        if size < RECORD_BATCH_OVERHEAD:
            raise CorruptMessageError(
                f"batch of {size} bytes is shorter than a header for {self.dir}")
        length, magic, crc, last_delta, max_ts, count = _APPEND_FIELDS.unpack_from(batch, 0)
        if length + LOG_OVERHEAD != size or magic != MAGIC or size > self._max_message_bytes \
                or last_delta + 1 != count or count <= 0:
            self._reject(HEADER.unpack_from(batch, 0), size)
        view = memoryview(batch)
        if not validated and crc32c(view[21:]) != crc:
            raise CorruptMessageError(f"crc mismatch in batch appended to {self.dir}")
        latest_epoch = self.epoch_cache.latest_epoch
        if leader_epoch < latest_epoch:
            raise FencedLeaderEpochError(
                f"epoch {leader_epoch} < latest {latest_epoch} for {self.dir}")
        base = self._log_end_offset
        # Stamp baseOffset and partitionLeaderEpoch (outside the CRC): a new 16-byte head and
        # the rest of the caller's bytes, gathered by one writev; the batch is never copied.
        parts: tuple[Buffer, ...] = (_STAMP.pack(base, length, leader_epoch),
                                     view[16:])
        log_append_time = -1
        if self._log_append_time:
            # LogAppendTime rewrites covered bytes and the CRC: this path copies the batch.
            buf = bytearray(batch)
            _STAMP.pack_into(buf, 0, base, length, leader_epoch)
            RecordBatch(buf).set_max_timestamp_log_append(now_ms)
            max_ts = log_append_time = now_ms
            parts = (buf,)
        last = base + last_delta
        segment = self._active
        rolled: tuple[int, ...] = ()
        # _should_roll, inlined: this runs for every batch.
        segment_size = segment.size
        first_ts = segment.first_batch_timestamp
        waited = max_ts - first_ts if first_ts is not None and first_ts >= 0 else (
            now_ms - segment.created_ms)
        if segment_size and (segment_size > self._segment_bytes - size
                             or waited > self._segment_ms or segment.indexes_full
                             or last - segment.base_offset > INT32_MAX):
            segment = self._roll(base, now_ms)
            rolled = (base,)
        segment.append(parts, size, last, max_ts)
        self._log_end_offset = last + 1
        if leader_epoch > latest_epoch:
            self.epoch_cache.assign(leader_epoch, base)
        self._unflushed_messages += count
        return AppendInfo(base, last, max_ts, last, log_append_time, self._log_start_offset,
                          count, size, rolled)

    def _reject(self, h: tuple[int, ...], size: int) -> None:
        length = h[H_LENGTH] + LOG_OVERHEAD
        if length > size or h[H_LENGTH] < RECORD_BATCH_OVERHEAD - LOG_OVERHEAD:
            raise CorruptMessageError(
                f"batchLength {h[H_LENGTH]} does not fit the {size} bytes given for {self.dir}")
        if h[H_MAGIC] != MAGIC:
            raise CorruptMessageError(f"unsupported magic {h[H_MAGIC]} for {self.dir}")
        if length < size:
            raise InvalidRecordError(
                f"{size} bytes hold more than one batch ({length}); a produce request carries "
                f"exactly one batch per partition ({self.dir})")
        if size > self._max_message_bytes:
            raise MessageTooLargeError(
                f"batch of {size} bytes exceeds max.message.bytes {self._max_message_bytes} "
                f"for {self.dir}")
        raise InvalidRecordError(
            f"recordsCount {h[H_COUNT]} with lastOffsetDelta {h[H_LAST_DELTA]} for {self.dir}")

    def append_as_follower(self, data: bytes | bytearray | memoryview,
                           now_ms: int) -> AppendInfo:
        """Append batches fetched from the leader, keeping their offsets and epochs.

        Raises:
            CorruptMessageError: a partial or corrupt batch (nothing is appended).
            MessageTooLargeError: a batch larger than max.message.bytes.
            InvalidRecordError: offsets below the LEO or not increasing (Kafka's
                UnexpectedAppendOffsetException; the fetcher should have truncated first).
        """
        view = memoryview(data)
        batches = self._validate_follower_batches(view)
        if not batches:
            return AppendInfo(-1, -1, -1, -1, -1, self._log_start_offset, 0, 0)
        rolled: list[int] = []
        chunk_start = 0
        chunk: list[BatchPosition] = []
        segment = self._active
        max_ts, offset_of_max = -1, -1
        previous_next = self._log_end_offset
        for b in batches:
            pending = b.position - chunk_start
            first_ts = segment.first_batch_timestamp
            if first_ts is None and chunk:
                first_ts = chunk[0].max_timestamp
            if (segment.size + pending and self._should_roll(
                    segment, segment.size + pending, first_ts, b.size, b.max_timestamp,
                    b.last_offset, now_ms)) or not segment.fits(b.last_offset):
                if chunk:
                    segment.append_chunk(view[chunk_start:b.position], chunk)
                # The new segment starts where the log ends, even if the leader's next batch
                # starts later (a compacted leader): segments stay contiguous, which is what
                # recovery checks. Only an int32 overflow forces the batch's own base.
                new_base = previous_next if b.last_offset - previous_next <= INT32_MAX else (
                    b.base_offset)
                segment = self._roll(new_base, now_ms)
                rolled.append(new_base)
                chunk_start, chunk = b.position, []
            previous_next = b.last_offset + 1
            chunk.append(BatchPosition(b.position - chunk_start, b.size, b.base_offset,
                                       b.last_offset, b.max_timestamp, b.partition_leader_epoch))
            if b.max_timestamp > max_ts:
                max_ts, offset_of_max = b.max_timestamp, b.last_offset
        segment.append_chunk(view[chunk_start:], chunk)
        self._log_end_offset = batches[-1].last_offset + 1
        for b in batches:
            epoch = b.partition_leader_epoch
            if epoch >= 0 and epoch > self.epoch_cache.latest_epoch:
                self.epoch_cache.assign(epoch, b.base_offset)
        count = sum(b.last_offset - b.base_offset + 1 for b in batches)
        self._unflushed_messages += count
        return AppendInfo(batches[0].base_offset, batches[-1].last_offset, max_ts, offset_of_max,
                          -1, self._log_start_offset, count, len(view), tuple(rolled))

    def _validate_follower_batches(self, view: memoryview) -> list[BatchPosition]:
        batches: list[BatchPosition] = []
        expected = self._log_end_offset
        position = 0
        while position < len(view):
            remaining = len(view) - position
            if remaining < RECORD_BATCH_OVERHEAD:
                raise CorruptMessageError(
                    f"partial batch of {remaining} bytes at the end of a fetch for {self.dir}")
            h = HEADER.unpack_from(view, position)
            size = h[H_LENGTH] + LOG_OVERHEAD
            if size < RECORD_BATCH_OVERHEAD or size > remaining:
                raise CorruptMessageError(f"batchLength {h[H_LENGTH]} at position {position} "
                                          f"does not fit the fetched data for {self.dir}")
            RecordBatch(view[position:position + size]).validate()
            if size > self._max_message_bytes:
                raise MessageTooLargeError(
                    f"batch of {size} bytes exceeds max.message.bytes for {self.dir}")
            base, last = h[H_BASE_OFFSET], h[H_BASE_OFFSET] + h[H_LAST_DELTA]
            if base < expected or last < base:
                raise InvalidRecordError(
                    f"follower append at offset {base} (last {last}) but the log expects "
                    f">= {expected} for {self.dir}")
            batches.append(BatchPosition(position, size, base, last, h[H_MAX_TS], h[H_EPOCH]))
            expected = last + 1
            position += size
        return batches

    def _should_roll(self, segment: LogSegment, segment_size: int, first_ts: int | None,
                     batch_size: int, max_ts: int, last_offset: int, now_ms: int) -> bool:
        """Kafka's `LogSegment.shouldRoll` for a non-empty segment."""
        if segment_size > self._segment_bytes - batch_size:
            return True
        if first_ts is not None and first_ts >= 0:
            waited = max_ts - first_ts
        else:
            waited = now_ms - segment.created_ms
        if waited > self._segment_ms:
            return True
        return segment.indexes_full or last_offset - segment.base_offset > INT32_MAX

    def _roll(self, new_base: int, now_ms: int) -> LogSegment:
        old = self._active
        if old.size == 0:
            # An empty active segment is replaced rather than sealed (follower offset jumps).
            old.close_handles()
            for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX):
                self.fs.delete(old.path(suffix))
            self._segments.pop()
            self._bases.pop()
        else:
            old.seal()
            self._roll_flush_offset = new_base
        assert not self._bases or new_base > self._bases[-1], (new_base, self._bases)
        segment = LogSegment.create(
            self.fs, self.dir, new_base, index_interval_bytes=self.config.index_interval_bytes,
            segment_index_bytes=self.config.segment_index_bytes, created_ms=now_ms)
        self._segments.append(segment)
        self._bases.append(new_base)
        self._active = segment
        return segment

    def roll(self, now_ms: int) -> bool:
        """Force a roll (if the active segment is non-empty); True if one happened."""
        if self._active.size == 0:
            return False
        self._roll(self._log_end_offset, now_ms)
        return True

    # -- reading --

    def read(self, from_offset: int, max_bytes: int, max_offset: int | None = None, *,
             min_one: bool = True) -> ReadResult:
        """Whole batches starting with the one that holds `from_offset`.

        Args:
            from_offset: the fetch offset; the first batch returned may start before it.
            max_bytes: soft limit; the first batch is returned even if larger (KIP-74) unless
                `min_one` is False.
            max_offset: exclusive bound (the high watermark for consumers): only batches whose
                last offset is below it are returned.

        Raises:
            OffsetOutOfRangeError: `from_offset` below the log start offset or above the LEO.
        """
        if from_offset < self._log_start_offset or from_offset > self._log_end_offset:
            raise OffsetOutOfRangeError(
                f"offset {from_offset} is outside [{self._log_start_offset}, "
                f"{self._log_end_offset}] for {self.dir}")
        if from_offset < self._log_end_offset and (max_offset is None or from_offset < max_offset):
            i = bisect_right(self._bases, from_offset) - 1
            for segment in self._segments[max(i, 0):]:
                found = segment.read(from_offset, max_bytes, max_offset, min_one)
                if found is not None:
                    data, first, next_offset = found
                    return ReadResult(data, first, next_offset, self._log_start_offset,
                                      self._log_end_offset)
                if segment.size and segment.next_offset > from_offset:
                    break  # data here, but held back by max_offset or max_bytes
        return ReadResult(memoryview(b""), -1, from_offset, self._log_start_offset,
                          self._log_end_offset)

    def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        """The earliest offset whose record timestamp is ≥ `timestamp`, with that timestamp
        (ListOffsets). -1 (latest) gives (LEO, -1), -2 (earliest) (log start, -1). None if no
        record is that recent."""
        if timestamp == LATEST_TIMESTAMP:
            return self._log_end_offset, -1
        if timestamp == EARLIEST_TIMESTAMP:
            return self._log_start_offset, -1
        for segment in self._segments:
            if segment.max_timestamp < timestamp or segment.next_offset <= self._log_start_offset:
                continue
            _, entry_offset = segment.time_index.lookup(timestamp)
            start = segment.index.lookup(max(entry_offset, self._log_start_offset))[1]
            for b in segment.scan(start):
                if b.max_timestamp < timestamp or b.last_offset < self._log_start_offset:
                    continue
                for record in RecordBatch(segment.log.read_at(b.position, b.size)):
                    if record.timestamp >= timestamp and record.offset >= self._log_start_offset:
                        return record.offset, record.timestamp
        return None

    def max_timestamp_offset(self) -> tuple[int, int] | None:
        """(offset, timestamp) of the earliest record holding the log's largest timestamp, at
        or above the log start (ListOffsets MAX_TIMESTAMP, KIP-734); None for an empty log.

        The segments' `max_timestamp` picks the segment (the first one holding the maximum,
        as Kafka's `maxBy`); one scan of its batch headers and a decode of one batch find the
        record. If the segment's maximum sits below the log start, every batch is scanned.
        """
        start = self._log_start_offset
        live = [s for s in self._segments if s.size and s.next_offset > start]
        if not live:
            return None
        best = max(live, key=lambda s: s.max_timestamp)  # first of equals
        hit = self._max_timestamp_in(best, best.max_timestamp)
        if hit is not None:
            return hit
        top, where = -1, None
        for segment in live:  # the maximum is below the log start: find the live one
            for b in segment.scan():
                if b.last_offset >= start and b.max_timestamp > top:
                    top, where = b.max_timestamp, segment
        return None if where is None else self._max_timestamp_in(where, top)

    def _max_timestamp_in(self, segment: LogSegment, timestamp: int) -> tuple[int, int] | None:
        start = self._log_start_offset
        for b in segment.scan():
            if b.max_timestamp != timestamp or b.last_offset < start:
                continue
            for record in RecordBatch(segment.log.read_at(b.position, b.size)):
                if record.timestamp == timestamp and record.offset >= start:
                    return record.offset, record.timestamp
        return None

    # -- truncation --

    def truncate_to(self, offset: int) -> bool:
        """Drop every batch whose last offset is ≥ `offset` (follower truncation, KIP-101).

        Returns False (no-op) when `offset` ≥ LEO. A target below the first segment empties the
        log and restarts it at `offset`.
        """
        assert offset >= 0, offset
        if offset >= self._log_end_offset:
            return False
        if offset < self._bases[0]:
            self.truncate_fully_and_start_at(offset)
            return True
        keep = bisect_right(self._bases, offset)
        if self._bases[keep - 1] == offset and keep > 1:
            keep -= 1  # the segment starting at `offset` would be empty: drop it too
        for segment in self._segments[keep:]:
            self._delete_segment_files(segment, due_ms=None)
        del self._segments[keep:]
        del self._bases[keep:]
        self._active = self._segments[-1]
        self._active.truncate_to(offset)
        # Make the cut durable now: a crash must not resurrect batches of a diverged epoch
        # under an epoch cache that no longer lists it (Kafka leaves this to the next flush).
        self._active.log.fsync()
        self.fs.fsync_dir(self.dir)
        self._after_truncation()
        return True

    def _after_truncation(self) -> None:
        self._log_end_offset = self._active.next_offset
        self._log_start_offset = min(self._log_start_offset, self._log_end_offset)
        self.epoch_cache.truncate_from_end(self._log_end_offset)
        self._recovery_point = min(self._recovery_point, self._log_end_offset)
        self._roll_flush_offset = min(self._roll_flush_offset, self._log_end_offset)
        self._checkpoint_recovery_point()
        if self._cleaner_checkpoint > self._log_end_offset:
            self._cleaner_checkpoint = self._log_end_offset
            write_offset_checkpoint(self.fs, join(self.dir, CLEANER_OFFSET_CHECKPOINT),
                                    self._cleaner_checkpoint)
        for snapshot in self.snapshot_offsets():
            if snapshot > self._log_end_offset:
                self.fs.delete(self.snapshot_path(snapshot))

    def truncate_fully_and_start_at(self, offset: int, now_ms: int = 0) -> None:
        """Delete every segment and start an empty log at `offset` (Kafka's
        `truncateFullyAndStartAt`: the follower is behind the leader's log start)."""
        for segment in self._segments:
            self._delete_segment_files(segment, due_ms=None)
        for snapshot in self.snapshot_offsets():
            self.fs.delete(self.snapshot_path(snapshot))
        segment = LogSegment.create(
            self.fs, self.dir, offset, index_interval_bytes=self.config.index_interval_bytes,
            segment_index_bytes=self.config.segment_index_bytes, created_ms=now_ms)
        self.fs.fsync_dir(self.dir)
        self._segments = [segment]
        self._bases = [offset]
        self._active = segment
        self._log_end_offset = self._log_start_offset = offset
        self._recovery_point = self._roll_flush_offset = offset
        self._cleaner_checkpoint = offset
        self.epoch_cache.clear()
        self._checkpoint_recovery_point()
        self._checkpoint_log_start()
        write_offset_checkpoint(self.fs, join(self.dir, CLEANER_OFFSET_CHECKPOINT), offset)

    # -- log start offset and retention --

    def maybe_increment_log_start_offset(self, offset: int, high_watermark: int) -> bool:
        """Move the log start offset forward (DeleteRecords). Segments wholly below it go on
        the next `delete_old_segments`.

        Raises:
            OffsetOutOfRangeError: `offset` above the high watermark (or the LEO).
        """
        limit = min(high_watermark, self._log_end_offset)
        if offset > limit:
            raise OffsetOutOfRangeError(
                f"cannot move the log start offset to {offset}: above the high watermark "
                f"{high_watermark} / log end offset {self._log_end_offset} for {self.dir}")
        if offset <= self._log_start_offset:
            return False
        self._log_start_offset = offset
        self.epoch_cache.truncate_from_start(offset)
        self._checkpoint_log_start()
        return True

    def delete_old_segments(self, now_ms: int, high_watermark: int) -> RetentionResult:
        """Delete whole sealed segments that are entirely below the high watermark and breach
        retention.ms, retention.bytes (cleanup.policy has delete) or the log start offset.

        Oldest first; each rule stops at the first segment it keeps (Kafka's
        `deleteOldSegments`). The active segment is never deleted.
        """
        deleted: list[DeletedSegment] = []
        config = self.config
        if config.delete and config.retention_ms >= 0:
            retention_ms = config.retention_ms
            deleted += self._delete_while(
                lambda s: now_ms - s.max_timestamp > retention_ms, "retention.ms",
                high_watermark, now_ms)
        if config.delete and config.retention_bytes >= 0:
            excess = [self.size_in_bytes - config.retention_bytes]

            def over_size(segment: LogSegment) -> bool:
                if excess[0] - segment.size >= 0:
                    excess[0] -= segment.size
                    return True
                return False

            deleted += self._delete_while(over_size, "retention.bytes", high_watermark, now_ms)
        deleted += self._delete_while(lambda s: False, "log-start-offset", high_watermark, now_ms)
        if deleted:
            first_base = self._segments[0].base_offset
            if first_base > self._log_start_offset:
                self._log_start_offset = first_base
                self.epoch_cache.truncate_from_start(first_base)
            self._checkpoint_log_start()
            self.fs.fsync_dir(self.dir)
        return RetentionResult(tuple(deleted), self._log_start_offset)

    def _delete_while(self, predicate: Callable[[LogSegment], bool], reason: str,
                      high_watermark: int, now_ms: int) -> list[DeletedSegment]:
        deleted: list[DeletedSegment] = []
        while len(self._segments) > 1:
            segment, upper = self._segments[0], self._bases[1]
            if upper > high_watermark:
                break
            if not (upper <= self._log_start_offset or predicate(segment)):
                break
            deleted.append(DeletedSegment(segment.base_offset, upper, segment.size, reason))
            self._delete_segment_files(segment, due_ms=now_ms + self.config.file_delete_delay_ms)
            self.fs.delete(self.snapshot_path(segment.base_offset))
            self._segments.pop(0)
            self._bases.pop(0)
            if self._log_start_offset < upper:
                self._log_start_offset = upper
        return deleted

    def _delete_segment_files(self, segment: LogSegment, due_ms: int | None) -> None:
        """Close a segment and rename its files `.deleted`; remove them now (due_ms None) or
        leave them to `purge_deleted_files`."""
        segment.close_handles()
        paths = segment.rename_to_deleted()
        if due_ms is None:
            for path in paths:
                self.fs.delete(path)
        else:
            self._pending_deletes.append((due_ms, paths))

    def purge_deleted_files(self, now_ms: int) -> list[str]:
        """Remove `.deleted` files whose file.delete.delay.ms has passed; return their paths."""
        due = [p for t, paths in self._pending_deletes if t <= now_ms for p in paths]
        self._pending_deletes = [(t, ps) for t, ps in self._pending_deletes if t > now_ms]
        for path in due:
            self.fs.delete(path)
        return due

    # -- flushing --

    def needs_flush(self, now_ms: int) -> int | None:
        """The offset to `flush` up to now, or None. Asks for a flush after a roll (the sealed
        segment, as Kafka's background flush), after flush.messages messages, or flush.ms after
        the last flush."""
        if self._roll_flush_offset > self._recovery_point:
            return self._roll_flush_offset
        if self._log_end_offset <= self._recovery_point:
            return None
        flush_messages, flush_ms = self.config.flush_messages, self.config.flush_ms
        if flush_messages is not None and self._unflushed_messages >= flush_messages:
            return self._log_end_offset
        if flush_ms is not None and now_ms - self._last_flush_ms >= flush_ms:
            return self._log_end_offset
        return None

    def next_flush_deadline_ms(self) -> int | None:
        """When `needs_flush` will next say yes on time alone (flush.ms), if ever."""
        if self.config.flush_ms is None or self._log_end_offset <= self._recovery_point:
            return None
        return self._last_flush_ms + self.config.flush_ms

    def flush(self, offset: int | None = None, now_ms: int | None = None) -> None:
        """fsync the segments holding offsets below `offset` (default: the LEO) and their
        indexes, then move and checkpoint the recovery point."""
        target = self._log_end_offset if offset is None else min(offset, self._log_end_offset)
        if target <= self._recovery_point:
            return
        first = max(bisect_right(self._bases, self._recovery_point) - 1, 0)
        for segment in self._segments[first:]:
            if segment.base_offset >= target:
                break
            segment.flush()
        self.fs.fsync_dir(self.dir)  # new segment files' names must be durable too
        self._recovery_point = target
        self._checkpoint_recovery_point()
        if target == self._log_end_offset:
            self._unflushed_messages = 0
            if now_ms is not None:
                self._last_flush_ms = now_ms

    def _checkpoint_recovery_point(self) -> None:
        write_offset_checkpoint(self.fs, join(self.dir, RECOVERY_POINT_CHECKPOINT),
                                self._recovery_point)

    def _checkpoint_log_start(self) -> None:
        write_offset_checkpoint(self.fs, join(self.dir, LOG_START_OFFSET_CHECKPOINT),
                                self._log_start_offset)

    def close(self) -> None:
        """Flush everything, checkpoint, and leave the clean-shutdown marker."""
        if self._closed:
            return
        self.flush()
        active = self._active
        active.time_index.maybe_append(active.max_timestamp, active.offset_of_max_timestamp,
                                       skip_full_check=True)
        active.write_indexes(fsync=True)
        for segment in self._segments:
            segment.close_handles()
        self._checkpoint_log_start()
        self.epoch_cache.flush()
        self.purge_deleted_files(2**62)
        self.fs.atomic_replace(join(self.dir, CLEAN_SHUTDOWN_FILE), b"")
        self._closed = True

    # -- producer-state snapshots (written by the broker) --

    def snapshot_path(self, offset: int) -> str:
        """`<dir>/<20-digit offset>.snapshot`: producer state as of `offset`."""
        return join(self.dir, offset_file_name(offset, SNAPSHOT_SUFFIX))

    def snapshot_offsets(self) -> list[int]:
        parsed = (parse_offset_file_name(n) for n in self.fs.list_dir(self.dir))
        return sorted(p[0] for p in parsed if p is not None and p[1] == SNAPSHOT_SUFFIX)

    def delete_snapshots_below(self, offset: int) -> None:
        for snapshot in self.snapshot_offsets():
            if snapshot < offset:
                self.fs.delete(self.snapshot_path(snapshot))

    # -- compaction support (cleaner.py) --

    def replace_segments(self, result: CleanOutcome) -> bool:
        """Swap cleaned copies in for their source segments (the short step of compaction).

        Returns False, discarding the cleaned files, if any source segment changed since the
        task was planned (deleted, truncated, replaced). Crash safety: all `.cleaned` files are
        renamed `.swap` (log file last) before the first `.swap` replaces its `.log`; segments
        commit in offset order; recovery finishes or discards a swap (recovery.py).
        """
        current = {s.base_offset: s for s in self._segments}
        stale = any(
            (s := current.get(c.base_offset)) is None or s.segment_id != c.source_segment_id
            or s.size != c.source_size or s is self._active
            for c in result.cleaned)
        if stale:
            for c in result.cleaned:
                for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX):
                    self.fs.delete(self._path(c.base_offset, suffix + CLEANED_SUFFIX))
            return False
        for c in result.cleaned:
            for suffix in (INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX):
                self.fs.rename(self._path(c.base_offset, suffix + CLEANED_SUFFIX),
                               self._path(c.base_offset, suffix + SWAP_SUFFIX))
        self.fs.fsync_dir(self.dir)
        for c in result.cleaned:
            for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX):
                self.fs.rename(self._path(c.base_offset, suffix + SWAP_SUFFIX),
                               self._path(c.base_offset, suffix))
            old = current[c.base_offset]
            old.close_handles()
            fresh, ok = LogSegment.open_existing(
                self.fs, self.dir, c.base_offset,
                index_interval_bytes=self.config.index_interval_bytes,
                segment_index_bytes=self.config.segment_index_bytes, created_ms=old.created_ms)
            assert ok, f"cleaned segment {c.base_offset} has broken indexes"
            i = self._bases.index(c.base_offset)
            self._segments[i] = fresh
        self.fs.fsync_dir(self.dir)
        if result.end_offset > self._cleaner_checkpoint:
            self._cleaner_checkpoint = result.end_offset
            write_offset_checkpoint(self.fs, join(self.dir, CLEANER_OFFSET_CHECKPOINT),
                                    result.end_offset)
        return True

    def _path(self, base_offset: int, suffix: str) -> str:
        return join(self.dir, offset_file_name(base_offset, suffix))

    def __repr__(self) -> str:
        return (f"PartitionLog({self.dir!r}, start={self._log_start_offset}, "
                f"end={self._log_end_offset}, segments={len(self._segments)})")
