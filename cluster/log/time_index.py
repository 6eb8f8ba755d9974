"""The sparse time index of one segment (Kafka's `TimeIndex`): timestamp → offset.

File format (`<20-digit base offset>.timeindex`): 12-byte entries, big-endian, no header:
`int64 timestamp` (ms), `int32 relative offset`.

Theory of operation
-------------------
Entries are offered together with offset-index entries (every `index.interval.bytes`) and once
more when the segment is sealed; an entry is added only when the segment's max timestamp so far
grew, so timestamps strictly increase and offsets never decrease. An entry (t, o) means: the
batch holding offset o is the first whose max timestamp reached t, and every batch before it has
a max timestamp < t. `lookup(t)` returns the greatest entry with timestamp ≤ t (or
(-1, base_offset)); the caller then scans batches from that offset. As with the offset index,
entries are kept in memory and written out when the segment is sealed, flushed or closed.
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_right

from cluster.log.index import CorruptIndexError

ENTRY_SIZE = 12
_ENTRY = struct.Struct(">qi")
_INT32_MAX = 0x7FFFFFFF
NO_TIMESTAMP = -1


class TimeIndex:
    """In-memory sparse time index for the segment starting at `base_offset`."""

    __slots__ = ("base_offset", "max_entries", "last_timestamp", "_timestamps", "_relative",
                 "_raw")

    def __init__(self, base_offset: int, max_entries: int) -> None:
        assert max_entries >= 1
        self.base_offset = base_offset
        self.max_entries = max_entries
        self._timestamps = array("q")  # invariant: strictly increasing
        self._relative = array("i")  # invariant: non-decreasing
        self._raw = bytearray()
        self.last_timestamp = NO_TIMESTAMP  # the last entry's (a plain field: hot path)

    @classmethod
    def from_bytes(
        cls, base_offset: int, data: bytes, max_entries: int, next_offset: int | None = None
    ) -> TimeIndex:
        """Load a time index file's bytes.

        Raises:
            CorruptIndexError: a partial entry, timestamps not increasing, offsets decreasing,
                or an offset at or past `next_offset` (when known).
        """
        if len(data) % ENTRY_SIZE:
            raise CorruptIndexError(
                f"time index size {len(data)} is not a multiple of {ENTRY_SIZE}")
        index = cls(base_offset, max(max_entries, len(data) // ENTRY_SIZE))
        last_ts, last_rel = NO_TIMESTAMP - 1, 0
        for ts, rel in _ENTRY.iter_unpack(data):
            too_far = next_offset is not None and base_offset + rel >= next_offset
            if ts <= last_ts or rel < last_rel or too_far:
                raise CorruptIndexError(f"bad time index entry ({ts}, {rel})")
            last_ts, last_rel = ts, rel
            index._timestamps.append(ts)
            index._relative.append(rel)
        index._raw += data
        index.last_timestamp = last_ts if index._timestamps else NO_TIMESTAMP
        return index

    def __len__(self) -> int:
        return len(self._timestamps)

    @property
    def is_full(self) -> bool:
        return len(self._timestamps) >= self.max_entries

    @property
    def last_entry(self) -> tuple[int, int]:
        """(timestamp, offset) of the last entry, or (-1, base_offset) when empty."""
        if not self._timestamps:
            return NO_TIMESTAMP, self.base_offset
        return self._timestamps[-1], self.base_offset + self._relative[-1]

    def maybe_append(self, timestamp: int, offset: int, *, skip_full_check: bool = False) -> None:
        """Add (timestamp, offset) if `timestamp` is above the last entry's."""
        if self._timestamps and timestamp <= self._timestamps[-1]:
            return
        if timestamp < 0:
            return
        assert skip_full_check or not self.is_full
        rel = offset - self.base_offset
        assert 0 <= rel <= _INT32_MAX
        assert not self._relative or rel >= self._relative[-1]
        self._timestamps.append(timestamp)
        self._relative.append(rel)
        self._raw += _ENTRY.pack(timestamp, rel)
        self.last_timestamp = timestamp

    def lookup(self, timestamp: int) -> tuple[int, int]:
        """(timestamp, offset) of the greatest entry with timestamp ≤ target, else
        (-1, base_offset)."""
        i = bisect_right(self._timestamps, timestamp)
        if i == 0:
            return NO_TIMESTAMP, self.base_offset
        return self._timestamps[i - 1], self.base_offset + self._relative[i - 1]

    def truncate_to_offset(self, offset: int) -> None:
        """Drop the entries for offsets ≥ `offset`."""
        keep = bisect_right(self._relative, offset - self.base_offset - 1)
        del self._timestamps[keep:]
        del self._relative[keep:]
        del self._raw[keep * ENTRY_SIZE:]
        self.last_timestamp = self._timestamps[-1] if self._timestamps else NO_TIMESTAMP

    def to_bytes(self) -> bytes:
        return bytes(self._raw)
