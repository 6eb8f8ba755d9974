"""Log compaction for `cleanup.policy=compact` (Kafka's `LogCleaner` / `Cleaner`), in three steps
so that appends never wait for it.

Threading contract (for the shell)
----------------------------------
1. `task = LogCleaner().plan(log, now_ms, high_watermark)` — on the log's thread (event loop /
   under the log's lock). Cheap: picks the segments and opens private read handles on them.
2. `outcome = task.run()` — anywhere (an executor thread). Pure over the sealed, immutable
   source segments (read through its own handles, so a concurrent retention delete or rename
   cannot pull the bytes away) and new `<base>.*.cleaned` files that nothing else touches. It
   never touches the `PartitionLog` object. It decodes records (the only per-record work in the
   broker); the codec contexts in `proto.compression` are not shared across threads, so at most
   one cleaner thread should decode at a time in a process whose event loop also decodes.
3. `log.replace_segments(outcome)` — back on the log's thread: a few renames and index loads. If
   the log changed under the task (a source segment deleted, truncated or replaced), the
   outcome is discarded and False returned; plan again later.
`LogCleaner.clean(log, now_ms, ...)` runs the three in a row (tests, simple shells).

What gets cleaned
-----------------
The cleanable range is every sealed segment from the first one up to (excluding) the first
segment that is the active one, reaches the high watermark or the recovery point (only
replicated and fsynced data is cleaned, so neither a truncation nor a crash can remove the newer
records that justified dropping older ones; rolled segments are flushed promptly when the shell
follows `needs_flush`), or holds a record newer than `min.compaction.lag.ms`. It is cleaned
when its dirty ratio (bytes above the cleaner checkpoint / all bytes in the range) is at least
`min.cleanable.dirty.ratio`, or with `force`.

Rules (KAFKA_SEMANTICS.md §8.4):
- Pass 1 maps every key in the range to its highest offset. Pass 2 keeps a record iff it is that
  offset for its key (keyless records are kept; Kafka rejects them at produce time on compacted
  topics). Offsets never change: gaps appear. Control batches are copied as they are.
- A batch with nothing removed and no delete-horizon work is copied byte for byte. Otherwise it
  is rebuilt with `RecordBatchBuilder.append_at`, keeping base offset, lastOffsetDelta (so the
  offset and sequence range survive), leader epoch, producer id/epoch, base sequence,
  compression and the transactional bit. A batch left with no records is dropped, except the
  segment's last one, kept as an empty batch header so the segment still ends where it did
  (recovery checks that segments are contiguous) and its producer sequence survives.
- Tombstones (null value) follow KIP-534: the first pass that keeps a tombstone stamps its batch
  with a delete horizon (attribute bit 6, baseTimestamp = now + delete.retention.ms); a later
  pass at or after the horizon drops the tombstones of that batch. So a tombstone stays
  readable for at least delete.retention.ms after compaction first reached it.
- One cleaned segment replaces one source segment, same base offset (Kafka also merges small
  neighbours; not yet). Swap protocol: write `<base>.log.cleaned` (+ `.index.cleaned`,
  `.timeindex.cleaned`), fsync; rename all of them `.swap` (log last); then rename each `.swap`
  over the live file, in offset order (so a tombstone's removal never commits before the older
  values it deletes are gone). Recovery (recovery.py) discards a set that still has its
  `.log.cleaned` and completes one that has `.log.swap`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cluster.log.files import FileSystem, SegmentFile
from cluster.log.partition_log import PartitionLog
from cluster.log.segment import (
    CLEANED_SUFFIX,
    H_BASE_OFFSET,
    H_LAST_DELTA,
    H_LENGTH,
    H_MAX_TS,
    HEADER,
    LogSegment,
)
from proto.records import LOG_OVERHEAD, RECORD_BATCH_OVERHEAD, RecordBatch, RecordBatchBuilder

_READ_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class CleanSource:
    base_offset: int
    segment_id: int
    size: int
    handle: SegmentFile  # private read handle opened by plan()


@dataclass(frozen=True, slots=True)
class CleanedSegment:
    base_offset: int
    source_segment_id: int
    source_size: int
    size: int


@dataclass(frozen=True, slots=True)
class CleanStats:
    records_read: int = 0
    records_kept: int = 0
    tombstones_dropped: int = 0
    bytes_read: int = 0
    bytes_written: int = 0


@dataclass(frozen=True, slots=True)
class CleanOutcome:
    """What `CleanTask.run` built; hand it to `PartitionLog.replace_segments`."""

    cleaned: tuple[CleanedSegment, ...]
    end_offset: int  # first offset after the cleaned range (the new cleaner checkpoint)
    stats: CleanStats


@dataclass(slots=True)
class CleanTask:
    """The segments to clean and everything `run` needs; see the module docstring."""

    fs: FileSystem
    directory: str
    sources: tuple[CleanSource, ...]
    end_offset: int
    now_ms: int
    delete_retention_ms: int
    index_interval_bytes: int
    segment_index_bytes: int
    _stats: dict[str, int] = field(default_factory=dict)

    def run(self) -> CleanOutcome:
        """Build the cleaned segments (thread-safe with respect to the log)."""
        latest = self._offset_map()
        cleaned = [self._clean_segment(source, latest) for source in self.sources]
        for source in self.sources:
            source.handle.close()
        stats = CleanStats(**self._stats)
        return CleanOutcome(tuple(cleaned), self.end_offset, stats)

    def abort(self) -> None:
        """Release the read handles of a task that will not run."""
        for source in self.sources:
            source.handle.close()

    def _batches(self, source: CleanSource) -> list[bytes]:
        """Every batch of a source segment, whole (the segment is validated and immutable)."""
        out: list[bytes] = []
        position = 0
        while position + RECORD_BATCH_OVERHEAD <= source.size:
            chunk = source.handle.read_at(position, min(_READ_CHUNK, source.size - position))
            offset = 0
            while offset + RECORD_BATCH_OVERHEAD <= len(chunk):
                size = HEADER.unpack_from(chunk, offset)[H_LENGTH] + LOG_OVERHEAD
                if offset + size > len(chunk):
                    break
                out.append(chunk[offset:offset + size])
                offset += size
            if offset == 0:  # one batch larger than the chunk
                size = HEADER.unpack(chunk[:RECORD_BATCH_OVERHEAD])[H_LENGTH] + LOG_OVERHEAD
                out.append(source.handle.read_at(position, size))
                offset = size
            position += offset
        return out

    def _offset_map(self) -> dict[bytes, int]:
        latest: dict[bytes, int] = {}
        for source in self.sources:
            for data in self._batches(source):
                batch = RecordBatch(data)
                if batch.is_control:
                    continue
                for record in batch:
                    if record.key is not None:
                        latest[record.key] = record.offset
        return latest

    def _count(self, name: str, n: int = 1) -> None:
        self._stats[name] = self._stats.get(name, 0) + n

    def _clean_segment(self, source: CleanSource, latest: dict[bytes, int]) -> CleanedSegment:
        out = LogSegment.create(
            self.fs, self.directory, source.base_offset,
            index_interval_bytes=self.index_interval_bytes,
            segment_index_bytes=self.segment_index_bytes, created_ms=self.now_ms,
            suffix=CLEANED_SUFFIX)
        batches = self._batches(source)
        for n, data in enumerate(batches, 1):
            self._count("bytes_read", len(data))
            kept = self._clean_batch(RecordBatch(data), latest)
            if kept is None:
                if n < len(batches):
                    continue
                # Keep the last batch's header (no records): the segment still ends at the same
                # offset, so segments stay contiguous (recovery relies on it) and the producer's
                # last sequence survives, as Kafka keeps empty batches.
                kept = self._empty_batch(RecordBatch(data))
            h = HEADER.unpack_from(kept, 0)
            out.append((kept,), len(kept), h[H_BASE_OFFSET] + h[H_LAST_DELTA], h[H_MAX_TS])
            self._count("bytes_written", len(kept))
        out.log.fsync()
        out.seal()
        out.write_indexes(fsync=True)
        out.close_handles()
        return CleanedSegment(source.base_offset, source.segment_id, source.size, out.size)

    @staticmethod
    def _empty_batch(batch: RecordBatch) -> bytes:
        return RecordBatchBuilder(
            compression=batch.compression, producer_id=batch.producer_id,
            producer_epoch=batch.producer_epoch, base_sequence=batch.base_sequence,
            is_transactional=batch.is_transactional, base_offset=batch.base_offset,
            partition_leader_epoch=batch.partition_leader_epoch,
            last_offset_delta=batch.last_offset_delta).build()

    def _clean_batch(self, batch: RecordBatch, latest: dict[bytes, int]) -> bytes | None:
        """The batch's bytes after cleaning, or None if nothing is left."""
        if batch.is_control:
            return batch.to_bytes()
        records = batch.records()
        self._count("records_read", len(records))
        horizon = batch.delete_horizon_ms
        past_horizon = horizon is not None and self.now_ms >= horizon
        kept = []
        has_tombstone = False
        for record in records:
            if record.key is not None and latest.get(record.key) != record.offset:
                continue
            if record.value is None:
                if past_horizon:
                    self._count("tombstones_dropped")
                    continue
                has_tombstone = True
            kept.append(record)
        self._count("records_kept", len(kept))
        if not kept:
            return None
        if len(kept) == len(records) and not (has_tombstone and horizon is None):
            return batch.to_bytes()
        if has_tombstone and horizon is None:
            horizon = self.now_ms + self.delete_retention_ms  # KIP-534: first pass sets it
        builder = RecordBatchBuilder(
            compression=batch.compression,
            producer_id=batch.producer_id,
            producer_epoch=batch.producer_epoch,
            base_sequence=batch.base_sequence,
            is_transactional=batch.is_transactional,
            base_offset=batch.base_offset,
            partition_leader_epoch=batch.partition_leader_epoch,
            delete_horizon_ms=horizon if has_tombstone else None,
            last_offset_delta=batch.last_offset_delta,
        )
        base = batch.base_offset
        for record in kept:
            builder.append_at(record.offset - base, record.timestamp, record.key, record.value,
                              record.headers)
        return builder.build()


class LogCleaner:
    """Plans compaction of a log; stateless (the cleaner checkpoint lives in the log)."""

    def plan(self, log: PartitionLog, now_ms: int, high_watermark: int | None = None, *,
             force: bool = False) -> CleanTask | None:
        """The next compaction of `log`, or None if it is not a compacted log, nothing is
        cleanable, or the dirty ratio is below min.cleanable.dirty.ratio (unless `force`)."""
        config = log.config
        if not config.compact:
            return None
        hw = log.log_end_offset if high_watermark is None else high_watermark
        # Only durable data (below the recovery point) is cleaned: a crash must not take away
        # the newer records that justified dropping older ones.
        bound = min(hw, log.recovery_point)
        segments = log.segments
        chosen: list[LogSegment] = []
        for segment, following in zip(segments, segments[1:]):
            if following.base_offset > bound:
                break
            if segment.max_timestamp > now_ms - config.min_compaction_lag_ms:
                break
            chosen.append(segment)
        if not chosen:
            return None
        end_offset = segments[len(chosen)].base_offset
        total = sum(s.size for s in chosen)
        dirty = sum(s.size for s in chosen if s.next_offset > log.cleaner_checkpoint)
        if not force and (total == 0 or dirty / total < config.min_cleanable_dirty_ratio):
            return None
        sources = tuple(
            CleanSource(s.base_offset, s.segment_id, s.size,
                        log.fs.open(s.path(".log"), create=False))
            for s in chosen)
        return CleanTask(log.fs, log.dir, sources, end_offset, now_ms,
                         config.delete_retention_ms, config.index_interval_bytes,
                         config.segment_index_bytes)

    def clean(self, log: PartitionLog, now_ms: int, high_watermark: int | None = None, *,
              force: bool = False) -> CleanOutcome | None:
        """plan + run + replace_segments in one go; None if nothing was (or could be) done."""
        task = self.plan(log, now_ms, high_watermark, force=force)
        if task is None:
            return None
        outcome = task.run()
        return outcome if log.replace_segments(outcome) else None
