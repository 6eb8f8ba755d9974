"""The sparse offset index of one segment (Kafka's `OffsetIndex`): offset → file position.

File format (`<20-digit base offset>.index`): 8-byte entries, big-endian, no header:
`int32 relative offset` (offset − segment base offset), `int32 physical position` (byte
position of a batch start in the `.log` file).

Theory of operation
-------------------
An entry is added when more than `index.interval.bytes` bytes have been appended since the last
entry; it maps the *last offset* of the batch being appended to the *position where that batch
starts* (Kafka's `LogSegment.append`). So an entry (o, p) promises: the batch at position p
contains offset o, and every batch before p ends below o. `lookup(target)` returns the greatest
entry with offset ≤ target (or (base, 0)); the reader scans batch headers forward from there.

Entries live in memory (two `array`s, binary-searched; encoded on demand); the segment
writes them to the `.index` file when it is sealed (rolled), flushed or closed. Kafka memory-maps
the file instead, but it too trusts an index only after a clean shutdown or for segments below
the recovery point: the active segment's index is rebuilt by recovery. Index files carry no
checksum; `from_bytes` rejects what is visibly broken (size, order, positions past the log) and
the caller rebuilds the index from the log.
"""

from __future__ import annotations

import struct
import sys
from array import array
from bisect import bisect_right

ENTRY_SIZE = 8
_ENTRY = struct.Struct(">ii")
_INT32_MAX = 0x7FFFFFFF


class CorruptIndexError(Exception):
    """An index file failed its sanity check; the caller rebuilds it from the log."""


class OffsetIndex:
    """In-memory sparse offset index for the segment starting at `base_offset`."""

    __slots__ = ("base_offset", "max_entries", "_relative", "_positions")

    def __init__(self, base_offset: int, max_entries: int) -> None:
        assert max_entries >= 1
        self.base_offset = base_offset
        self.max_entries = max_entries
        self._relative = array("i")  # invariant: strictly increasing
        self._positions = array("i")  # invariant: strictly increasing (one entry per batch)

    @classmethod
    def from_bytes(
        cls, base_offset: int, data: bytes, max_entries: int, log_size: int
    ) -> OffsetIndex:
        """Load an index file's bytes.

        Raises:
            CorruptIndexError: a partial entry, offsets or positions out of order, a position
                at or past `log_size`, or more entries than `max_entries`.
        """
        if len(data) % ENTRY_SIZE:
            raise CorruptIndexError(f"index size {len(data)} is not a multiple of {ENTRY_SIZE}")
        index = cls(base_offset, max(max_entries, len(data) // ENTRY_SIZE))
        last_rel, last_pos = -1, -1
        for rel, pos in _ENTRY.iter_unpack(data):
            if rel <= last_rel or pos <= last_pos or pos >= log_size:
                raise CorruptIndexError(
                    f"bad entry ({rel}, {pos}) after ({last_rel}, {last_pos}), log size "
                    f"{log_size}")
            last_rel, last_pos = rel, pos
            index._relative.append(rel)
            index._positions.append(pos)
        return index

    def __len__(self) -> int:
        return len(self._relative)

    @property
    def is_full(self) -> bool:
        return len(self._relative) >= self.max_entries

    @property
    def last_entry(self) -> tuple[int, int]:
        """(offset, position) of the last entry, or (base_offset, 0) when empty."""
        if not self._relative:
            return self.base_offset, 0
        return self.base_offset + self._relative[-1], self._positions[-1]

    def append(self, offset: int, position: int) -> None:
        rel = offset - self.base_offset
        assert rel <= _INT32_MAX and (not self._relative or (
            rel > self._relative[-1] and position > self._positions[-1])), (
            f"index entry ({offset}, {position}) out of order in segment {self.base_offset}")
        self._relative.append(rel)
        self._positions.append(position)

    def lookup(self, target_offset: int) -> tuple[int, int]:
        """(offset, position) of the greatest entry with offset ≤ target, else (base, 0)."""
        i = bisect_right(self._relative, target_offset - self.base_offset)
        if i == 0:
            return self.base_offset, 0
        return self.base_offset + self._relative[i - 1], self._positions[i - 1]

    def truncate_to_position(self, position: int) -> None:
        """Drop the entries at or past `position` (the log file was cut there)."""
        keep = bisect_right(self._positions, position - 1)
        self._truncate_entries(keep)

    def truncate_to_offset(self, offset: int) -> None:
        """Drop the entries for offsets ≥ `offset`."""
        keep = bisect_right(self._relative, offset - self.base_offset - 1)
        self._truncate_entries(keep)

    def _truncate_entries(self, keep: int) -> None:
        del self._relative[keep:]
        del self._positions[keep:]

    def to_bytes(self) -> bytes:
        """The entries in file format (big-endian int32 pairs, interleaved)."""
        n = len(self._relative)
        out = array("i", bytes(ENTRY_SIZE * n))
        out[0::2] = self._relative
        out[1::2] = self._positions
        if sys.byteorder == "little":
            out.byteswap()
        return out.tobytes()
