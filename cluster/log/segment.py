"""`LogSegment`: one `.log` file of whole record batches plus its offset and time indexes.

Theory of operation
-------------------
A segment holds the batches whose offsets start at `base_offset` (its file name, 20 digits) and
end before the next segment's base. Only the last segment of a log (the active one) is
appended to; the others are sealed and immutable until retention deletes them or the cleaner
replaces them with a compacted copy. A segment never decodes records: it reads and writes whole
batches and looks at their 61-byte headers only (layout in `proto/records.py`).

What it tracks in memory (rebuilt by `open_existing` or by recovery):
- `size`: bytes in the `.log` file (only whole, validated batches once the log is open);
- `next_offset`: last offset of the last batch + 1 (`base_offset` when empty);
- `max_timestamp` and `offset_of_max_timestamp` (Kafka's `maxTimestampAndOffsetSoFar`), the
  basis of time retention and of the time index;
- `first_batch_timestamp` (Kafka's `rollingBasedTimestamp`) for `segment.ms` rolling;
- the indexes (index.py, time_index.py), whose entries are appended by `append` exactly as
  Kafka's `LogSegment.append` does (see index.py) and written to their files on `seal`,
  `flush` and `close`.

File names: `<base>.log`, `<base>.index`, `<base>.timeindex`, with the transient suffixes
`.cleaned` / `.swap` (compaction) and `.deleted` (retention) added after them, as in Kafka.
"""

from __future__ import annotations

import itertools
import struct
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from cluster.log.files import Buffer, FileSystem, SegmentFile, join
from cluster.log.index import ENTRY_SIZE as INDEX_ENTRY_SIZE
from cluster.log.index import CorruptIndexError, OffsetIndex
from cluster.log.time_index import ENTRY_SIZE as TIME_INDEX_ENTRY_SIZE
from cluster.log.time_index import NO_TIMESTAMP, TimeIndex
from proto.records import LOG_OVERHEAD, RECORD_BATCH_OVERHEAD

# The whole 61-byte header: baseOffset, batchLength, partitionLeaderEpoch, magic, crc,
# attributes, lastOffsetDelta, baseTimestamp, maxTimestamp, producerId, producerEpoch,
# baseSequence, recordsCount.
HEADER = struct.Struct(">qiibIhiqqqhii")
assert HEADER.size == RECORD_BATCH_OVERHEAD
H_BASE_OFFSET, H_LENGTH, H_EPOCH, H_MAGIC, H_CRC, H_ATTRIBUTES, H_LAST_DELTA = range(7)
H_BASE_TS, H_MAX_TS, H_PRODUCER_ID, H_PRODUCER_EPOCH, H_BASE_SEQ, H_COUNT = range(7, 13)

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"
SNAPSHOT_SUFFIX = ".snapshot"
CLEANED_SUFFIX = ".cleaned"
SWAP_SUFFIX = ".swap"
DELETED_SUFFIX = ".deleted"
SEGMENT_SUFFIXES = (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX)

# baseOffset, batchLength, lastOffsetDelta: all the read path needs from a header.
_OFFSETS = struct.Struct(">qi11xi")
assert _OFFSETS.size == 27

INT32_MAX = 0x7FFFFFFF
INT64_MAX = 0x7FFFFFFFFFFFFFFF
_SCAN_CHUNK = 64 * 1024
# Index entries are index.interval.bytes (4096 by default) apart: a lookup lands a few KiB
# before its batch, so the translate scan starts with a small read.
_TRANSLATE_CHUNK = 8 * 1024
_TAIL_BATCHES = 512  # recent batches whose positions a segment keeps (see LogSegment.__init__)

_segment_ids = itertools.count(1)


def offset_file_name(offset: int, suffix: str) -> str:
    """`00000000000000000042.log` for (42, ".log"), as Kafka's `LogFileUtils`."""
    assert offset >= 0
    return f"{offset:020d}{suffix}"


def parse_offset_file_name(name: str) -> tuple[int, str] | None:
    """(offset, suffix) for `<20 digits><suffix>`, or None for any other name."""
    digits, dot, _ = name.partition(".")
    if len(digits) != 20 or not digits.isdigit() or not dot:
        return None
    return int(digits), name[20:]


@dataclass(frozen=True, slots=True)
class BatchPosition:
    """Where one batch sits in a segment file, from its header."""

    position: int
    size: int
    base_offset: int
    last_offset: int
    max_timestamp: int
    partition_leader_epoch: int


class LogSegment:
    """One segment. Single-threaded: the owning `PartitionLog` serialises every call."""

    __slots__ = (
        "fs", "dir", "base_offset", "log", "index", "time_index", "size", "next_offset",
        "max_timestamp", "offset_of_max_timestamp", "first_batch_timestamp", "created_ms",
        "index_interval_bytes", "bytes_since_last_index_entry", "segment_id", "_suffix",
        "indexes_full", "_entries_left", "_tail_from", "_tail_last_offsets", "_tail_positions",
    )

    def __init__(self, fs: FileSystem, directory: str, base_offset: int, log: SegmentFile,
                 *, index_interval_bytes: int, segment_index_bytes: int, created_ms: int,
                 suffix: str = "") -> None:
        self.fs = fs
        self.dir = directory
        self.base_offset = base_offset
        self.log = log
        self.index = OffsetIndex(base_offset, max(1, segment_index_bytes // INDEX_ENTRY_SIZE))
        self.time_index = TimeIndex(
            base_offset, max(1, segment_index_bytes // TIME_INDEX_ENTRY_SIZE))
        self.size = log.size()
        self.next_offset = base_offset  # invariant: >= base_offset
        self.max_timestamp = NO_TIMESTAMP
        self.offset_of_max_timestamp = base_offset
        self.first_batch_timestamp: int | None = None
        self.created_ms = created_ms
        self.index_interval_bytes = index_interval_bytes
        self.bytes_since_last_index_entry = 0
        # Identity for the cleaner: a segment replaced or recreated gets a new id.
        self.segment_id = next(_segment_ids)
        self._suffix = suffix  # "" for live files, ".cleaned" while the cleaner builds one
        self.indexes_full = False  # an index reached segment.index.bytes: roll (Kafka)
        self._entries_left = 0
        self._update_indexes_full()
        # The last batches appended or indexed in this process (at most _TAIL_BATCHES), by last
        # offset and position; every batch before them ends below `_tail_from`. Followers and
        # consumers mostly fetch what was just appended: they find it here, not by a scan from
        # the sparse index entry (up to index.interval.bytes of headers per fetch).
        self._tail_from = base_offset
        self._tail_last_offsets: list[int] = []
        self._tail_positions: list[int] = []

    # -- construction --

    @classmethod
    def create(cls, fs: FileSystem, directory: str, base_offset: int, *,
               index_interval_bytes: int, segment_index_bytes: int, created_ms: int,
               suffix: str = "") -> LogSegment:
        """A new empty segment (any old files with this name are emptied)."""
        log = fs.open(join(directory, offset_file_name(base_offset, LOG_SUFFIX + suffix)),
                      truncate=True)
        return cls(fs, directory, base_offset, log, index_interval_bytes=index_interval_bytes,
                   segment_index_bytes=segment_index_bytes, created_ms=created_ms,
                   suffix=suffix)

    @classmethod
    def open_existing(cls, fs: FileSystem, directory: str, base_offset: int, *,
                      index_interval_bytes: int, segment_index_bytes: int,
                      created_ms: int) -> tuple[LogSegment, bool]:
        """Open a segment from its files. Returns (segment, indexes_ok).

        With indexes_ok the in-memory state (next offset, max timestamp, first timestamp) is
        derived from the index files plus a short header scan past the last index entry; the
        batches themselves are not validated. Without it, the caller must `recover` the
        segment (which rebuilds the indexes) before using it.
        """
        log = fs.open(join(directory, offset_file_name(base_offset, LOG_SUFFIX)))
        segment = cls(fs, directory, base_offset, log, index_interval_bytes=index_interval_bytes,
                      segment_index_bytes=segment_index_bytes, created_ms=created_ms)
        try:
            segment._load_indexes(segment_index_bytes)
        except CorruptIndexError:
            segment.reset_indexes()
            return segment, False
        return segment, True

    def _load_indexes(self, segment_index_bytes: int) -> None:
        index_data = self.fs.read_file(self.path(INDEX_SUFFIX))
        time_data = self.fs.read_file(self.path(TIME_INDEX_SUFFIX))
        if index_data is None or time_data is None:
            raise CorruptIndexError(f"missing index files for segment {self.base_offset}")
        self.index = OffsetIndex.from_bytes(
            self.base_offset, index_data, max(1, segment_index_bytes // INDEX_ENTRY_SIZE),
            self.size)
        # The scan past the last index entry finds next_offset and checks that entry points
        # at a batch containing its offset (Kafka's sanity check, a little stronger).
        last_offset, last_position = self.index.last_entry
        self.next_offset = self.base_offset
        found_entry = len(self.index) == 0
        tail_max_ts, tail_max_offset = NO_TIMESTAMP, self.base_offset
        for batch in self.scan(last_position):
            if batch.position == last_position and len(self.index):
                if not batch.base_offset <= last_offset <= batch.last_offset:
                    raise CorruptIndexError(f"index entry {last_offset} @ {last_position} "
                                            f"does not match batch {batch}")
                found_entry = True
            if batch.last_offset < self.next_offset or batch.position + batch.size > self.size:
                raise CorruptIndexError(f"batch {batch} out of order during index check")
            self.next_offset = batch.last_offset + 1
            if batch.max_timestamp > tail_max_ts:
                tail_max_ts, tail_max_offset = batch.max_timestamp, batch.last_offset
        if not found_entry:
            raise CorruptIndexError(f"index entry {last_offset} @ {last_position} not a batch")
        self.time_index = TimeIndex.from_bytes(
            self.base_offset, time_data,
            max(1, segment_index_bytes // TIME_INDEX_ENTRY_SIZE), self.next_offset)
        self.max_timestamp, self.offset_of_max_timestamp = self.time_index.last_entry
        if tail_max_ts > self.max_timestamp:
            self.max_timestamp, self.offset_of_max_timestamp = tail_max_ts, tail_max_offset
        first = self.read_batch_position(0)
        self.first_batch_timestamp = None if first is None else first.max_timestamp
        self._update_indexes_full()

    def reset_indexes(self) -> None:
        """Empty the indexes and the derived state (before a rebuild by recovery)."""
        self.index = OffsetIndex(self.base_offset, self.index.max_entries)
        self.time_index = TimeIndex(self.base_offset, self.time_index.max_entries)
        self._update_indexes_full()
        self.next_offset = self.base_offset
        self.max_timestamp = NO_TIMESTAMP
        self.offset_of_max_timestamp = self.base_offset
        self.first_batch_timestamp = None
        self.bytes_since_last_index_entry = 0
        self._forget_tail()

    # -- names --

    def path(self, suffix: str) -> str:
        return join(self.dir, offset_file_name(self.base_offset, suffix + self._suffix))

    # -- appending (the hot path) --

    def append(self, parts: Sequence[Buffer], size: int, last_offset: int,
               max_timestamp: int) -> int:
        """Append one batch (already validated and stamped), given as byte pieces whose
        concatenation is the batch (`size` bytes); return its position.

        Index rule (Kafka's `LogSegment.append`): if more than `index.interval.bytes` were
        appended since the last entry, map this batch's last offset to its start position.
        """
        position = self.log.append_parts(parts, size)
        self._remember_tail(last_offset, position)
        if max_timestamp > self.max_timestamp:
            self.max_timestamp = max_timestamp
            self.offset_of_max_timestamp = last_offset
        if self.bytes_since_last_index_entry > self.index_interval_bytes:
            self._add_index_entry(last_offset, position)
            self.bytes_since_last_index_entry = size
        else:
            self.bytes_since_last_index_entry += size
        self.size = position + size
        if position == 0:
            self.first_batch_timestamp = max_timestamp
        self.next_offset = last_offset + 1
        return position

    def append_chunk(self, data: memoryview, batches: list[BatchPosition]) -> None:
        """Append several batches with one write; `batches` positions are relative to `data`."""
        start = self.log.append(data)
        for b in batches:
            self.index_batch(start + b.position, b.size, b.last_offset, b.max_timestamp)
        self.size = start + len(data)

    def index_batch(self, position: int, size: int, last_offset: int, max_timestamp: int) -> None:
        """Account for a batch already in the file at `position` (appends and rebuilds)."""
        self._remember_tail(last_offset, position)
        if max_timestamp > self.max_timestamp:
            self.max_timestamp = max_timestamp
            self.offset_of_max_timestamp = last_offset
        if self.bytes_since_last_index_entry > self.index_interval_bytes:
            self._add_index_entry(last_offset, position)
            self.bytes_since_last_index_entry = 0
        self.bytes_since_last_index_entry += size
        if position == 0:
            self.first_batch_timestamp = max_timestamp
        self.next_offset = last_offset + 1

    def _remember_tail(self, last_offset: int, position: int) -> None:
        """Before `next_offset` moves past the batch ending at `last_offset`."""
        last_offsets, positions = self._tail_last_offsets, self._tail_positions
        if not positions:
            self._tail_from = self.next_offset
        elif len(positions) >= _TAIL_BATCHES:
            half = _TAIL_BATCHES // 2
            self._tail_from = last_offsets[half - 1] + 1
            del last_offsets[:half], positions[:half]
        last_offsets.append(last_offset)
        positions.append(position)

    def _forget_tail(self) -> None:
        self._tail_last_offsets.clear()
        self._tail_positions.clear()

    def _add_index_entry(self, last_offset: int, position: int) -> None:
        self.index.append(last_offset, position)
        time_index = self.time_index
        if self.max_timestamp > time_index.last_timestamp:
            time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
        # Each call adds at most one entry to each index: count down, then look exactly.
        self._entries_left -= 1
        if self._entries_left <= 0:
            self._update_indexes_full()

    def _update_indexes_full(self) -> None:
        index, time_index = self.index, self.time_index
        self._entries_left = min(index.max_entries - len(index),
                                 time_index.max_entries - len(time_index))
        self.indexes_full = self._entries_left <= 0

    def fits(self, last_offset: int) -> bool:
        """Whether `last_offset` is representable as an int32 relative offset here."""
        return last_offset - self.base_offset <= INT32_MAX

    # -- reading --

    def read_batch_position(self, position: int) -> BatchPosition | None:
        """The batch header at `position`, or None at (or near) the end of the file."""
        if position + RECORD_BATCH_OVERHEAD > self.size:
            return None
        h = HEADER.unpack(self.log.read_at(position, RECORD_BATCH_OVERHEAD))
        size = h[H_LENGTH] + LOG_OVERHEAD
        if size < RECORD_BATCH_OVERHEAD or position + size > self.size:
            return None
        return BatchPosition(position, size, h[H_BASE_OFFSET], h[H_BASE_OFFSET] + h[H_LAST_DELTA],
                             h[H_MAX_TS], h[H_EPOCH])

    def scan(self, start_position: int = 0, end_position: int | None = None,
             chunk_bytes: int = _SCAN_CHUNK) -> Iterator[BatchPosition]:
        """Headers of the batches in [start_position, end) (whole batches only), read in
        chunks. Trusts the framing: use it on validated segments only."""
        end = self.size if end_position is None else end_position
        position = start_position
        while position + RECORD_BATCH_OVERHEAD <= end:
            chunk = self.log.read_at(position, min(chunk_bytes, end - position))
            offset = 0
            while offset + RECORD_BATCH_OVERHEAD <= len(chunk):
                h = HEADER.unpack_from(chunk, offset)
                size = h[H_LENGTH] + LOG_OVERHEAD
                if size < RECORD_BATCH_OVERHEAD or position + offset + size > end:
                    return
                yield BatchPosition(position + offset, size, h[H_BASE_OFFSET],
                                    h[H_BASE_OFFSET] + h[H_LAST_DELTA], h[H_MAX_TS], h[H_EPOCH])
                offset += size
            if offset == 0:
                return
            position += offset

    def translate_offset(self, offset: int) -> BatchPosition | None:
        """The first batch whose last offset is ≥ `offset` (Kafka's `translateOffset`)."""
        if offset >= self._tail_from and self._tail_positions:
            i = bisect_left(self._tail_last_offsets, offset)
            if i == len(self._tail_positions):
                return None  # past the last batch
            found = self.read_batch_position(self._tail_positions[i])
            if found is not None:
                return found
        _, start = self.index.lookup(offset)
        for batch in self.scan(start, chunk_bytes=_TRANSLATE_CHUNK):
            if batch.last_offset >= offset:
                return batch
        return None

    def read(self, offset: int, max_bytes: int, max_offset: int | None,
             min_one: bool) -> tuple[memoryview, int, int] | None:
        """Whole batches from the one holding `offset`, up to `max_bytes`.

        Returns (bytes, first batch's base offset, next offset after the last batch returned),
        or None if no batch here qualifies. With `min_one`, the first batch is returned even if
        it is larger than `max_bytes` (KIP-74). Only batches whose last offset is below
        `max_offset` are returned.
        """
        first = self.translate_offset(offset)
        if first is None or (max_offset is not None and first.last_offset >= max_offset):
            return None
        if first.size > max_bytes:
            if not min_one:
                return None
            data = self.log.read_at(first.position, first.size)
            return memoryview(data), first.base_offset, first.last_offset + 1
        data = self.log.read_at(first.position, min(max_bytes, self.size - first.position))
        end, next_offset = 0, first.base_offset
        limit = len(data)
        bound = INT64_MAX if max_offset is None else max_offset
        unpack = _OFFSETS.unpack_from
        while end + RECORD_BATCH_OVERHEAD <= limit:
            base, length, last_delta = unpack(data, end)
            size = length + LOG_OVERHEAD
            last = base + last_delta
            if end + size > limit or last >= bound:
                break
            end += size
            next_offset = last + 1
        assert end > 0
        return memoryview(data)[:end], first.base_offset, next_offset

    # -- truncation --

    def truncate_to(self, offset: int) -> int:
        """Drop the batches whose last offset is ≥ `offset`; return the bytes removed.

        A batch straddling `offset` goes entirely (batches are never split), so the segment
        may end below `offset`.
        """
        first_gone = self.translate_offset(offset)
        if first_gone is None:
            return 0
        removed = self.size - first_gone.position
        self._forget_tail()
        self.log.truncate(first_gone.position)
        self.size = first_gone.position
        self.index.truncate_to_position(first_gone.position)
        self.time_index.truncate_to_offset(first_gone.base_offset)
        self._update_indexes_full()
        self._recompute_tail()
        return removed

    def _recompute_tail(self) -> None:
        """After a truncation: next offset, max timestamp and first timestamp from the tail.

        The time index's last surviving entry covers every batch before its index point; the
        scan from the batch it names covers the rest.
        """
        ts, ts_offset = self.time_index.last_entry
        start = self.index.lookup(ts_offset)[1] if len(self.time_index) else 0
        self.max_timestamp, self.offset_of_max_timestamp = ts, ts_offset
        self.next_offset = self.base_offset
        last_index_position = self.index.last_entry[1]
        for batch in self.scan(start):
            self.next_offset = batch.last_offset + 1
            if batch.max_timestamp > self.max_timestamp:
                self.max_timestamp = batch.max_timestamp
                self.offset_of_max_timestamp = batch.last_offset
        if self.size == 0:
            self.first_batch_timestamp = None
            self.next_offset = self.base_offset
        elif self.next_offset == self.base_offset:
            # Every batch sits before the time-index point: fall back to the last index entry.
            for batch in self.scan(last_index_position):
                self.next_offset = batch.last_offset + 1
        self.bytes_since_last_index_entry = self.size - last_index_position

    # -- sealing, flushing, closing --

    def seal(self) -> None:
        """The segment stops being active: final time-index entry, index files written
        (Kafka's `onBecomeInactiveSegment`)."""
        self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp,
                                     skip_full_check=True)
        self.write_indexes()

    def write_indexes(self, *, fsync: bool = False) -> None:
        for suffix, data in ((INDEX_SUFFIX, self.index.to_bytes()),
                             (TIME_INDEX_SUFFIX, self.time_index.to_bytes())):
            handle = self.fs.open(self.path(suffix), truncate=True)
            try:
                if data:
                    handle.append(data)
                if fsync:
                    handle.fsync()
            finally:
                handle.close()

    def flush(self) -> None:
        """fsync the log file and write + fsync the indexes."""
        self.log.fsync()
        self.write_indexes(fsync=True)

    def close(self) -> None:
        self.seal()
        self.log.close()

    def close_handles(self) -> None:
        """Close the file without writing indexes (the segment is being deleted or replaced)."""
        self.log.close()

    def rename_to_deleted(self) -> list[str]:
        """Rename every file of this segment to `.deleted`; return the new paths."""
        renamed = []
        for suffix in SEGMENT_SUFFIXES:
            src = self.path(suffix)
            if self.fs.exists(src):
                self.fs.rename(src, src + DELETED_SUFFIX)
                renamed.append(src + DELETED_SUFFIX)
        return renamed

    def __repr__(self) -> str:
        return (f"LogSegment(base={self.base_offset}, size={self.size}, "
                f"next_offset={self.next_offset})")
