"""The leader-epoch cache (Kafka's `LeaderEpochFileCache`, KIP-101 / KIP-279).

It maps each leader epoch to the first offset written in it: `[(epoch, start_offset), ...]`,
both strictly increasing. Followers use it to find where their log diverged from the leader's:
`end_offset_for_epoch(e)` answers OffsetForLeaderEpoch and the fetch-time DivergingEpoch check.

Rules, as in Kafka:
- `assign(epoch, start_offset)` is called for every appended batch whose partitionLeaderEpoch is
  above the latest cached epoch (and on a new leader's first append). It is a no-op when the
  latest entry already has this epoch at an earlier or equal offset; otherwise every entry with
  an epoch ≥ `epoch` or a start offset ≥ `start_offset` is dropped first (they are stale
  leftovers of a truncated log) and the entry is added.
- `end_offset_for_epoch(e)` (KIP-279): for the latest epoch, the log end offset; for an older
  epoch, (the largest cached epoch ≤ e, the start offset of the first epoch above e); for e below
  every cached epoch, (e, the first epoch's start offset); for an unknown epoch above the latest,
  or an empty cache, (-1, -1).
- `truncate_from_end(end)` after the log is truncated to `end`: drop entries starting at ≥ end.
- `truncate_from_start(start)` after the log start moves: drop entries that end at or before
  `start`, and move the last entry starting at ≤ start to begin at `start`.

The cache is persisted to `leader-epoch-checkpoint` (checkpoint.py format) after every change,
atomically. A missing or unreadable checkpoint is rebuilt by the log from batch headers.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from cluster.log.checkpoint import decode_checkpoint, encode_checkpoint
from cluster.log.files import FileSystem

UNDEFINED_EPOCH = -1
UNDEFINED_EPOCH_OFFSET = -1

LEADER_EPOCH_CHECKPOINT = "leader-epoch-checkpoint"


class LeaderEpochCache:
    """Epoch → start offset, persisted through `fs` at `path` (None: memory only)."""

    __slots__ = ("_epochs", "_starts", "_fs", "_path")

    def __init__(self, fs: FileSystem | None = None, path: str | None = None,
                 entries: list[tuple[int, int]] | None = None) -> None:
        self._epochs: list[int] = []  # invariant: strictly increasing
        self._starts: list[int] = []  # invariant: strictly increasing
        self._fs = fs
        self._path = path
        for epoch, start in entries or ():
            self._assign(epoch, start)

    @classmethod
    def load(cls, fs: FileSystem, path: str) -> LeaderEpochCache | None:
        """The cache from its checkpoint file, or None if the file is missing or malformed."""
        data = fs.read_file(path)
        if data is None:
            return None
        parsed = decode_checkpoint(data, 2)
        if parsed is None:
            return None
        entries = [(e, s) for e, s in parsed]
        for (e1, s1), (e2, s2) in zip(entries, entries[1:]):
            if e2 <= e1 or s2 < s1:
                return None
        if any(e < 0 or s < 0 for e, s in entries):
            return None
        return cls(fs, path, entries)

    # -- queries --

    def entries(self) -> list[tuple[int, int]]:
        return list(zip(self._epochs, self._starts))

    @property
    def latest_epoch(self) -> int:
        return self._epochs[-1] if self._epochs else UNDEFINED_EPOCH

    @property
    def earliest_entry(self) -> tuple[int, int] | None:
        return (self._epochs[0], self._starts[0]) if self._epochs else None

    def epoch_for_offset(self, offset: int) -> int:
        """The epoch that wrote `offset` per the cache, or -1 if before every entry."""
        i = bisect_right(self._starts, offset)
        return self._epochs[i - 1] if i else UNDEFINED_EPOCH

    def end_offset_for_epoch(self, epoch: int, log_end_offset: int) -> tuple[int, int]:
        """KIP-279: (largest epoch ≤ `epoch`, its end offset); see the module docstring."""
        if epoch == UNDEFINED_EPOCH or not self._epochs:
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if epoch == self._epochs[-1]:
            return epoch, log_end_offset
        higher = bisect_right(self._epochs, epoch)  # first entry with an epoch above `epoch`
        if higher == len(self._epochs):
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if higher == 0:
            # Below every known epoch: the data is gone; start from the first known epoch.
            return epoch, self._starts[0]
        return self._epochs[higher - 1], self._starts[higher]

    # -- changes (each one is checkpointed) --

    def assign(self, epoch: int, start_offset: int) -> bool:
        """Record that `epoch` starts at `start_offset`; True if the cache changed."""
        changed = self._assign(epoch, start_offset)
        if changed:
            self.flush()
        return changed

    def _assign(self, epoch: int, start_offset: int) -> bool:
        assert epoch >= 0 and start_offset >= 0, (epoch, start_offset)
        if self._epochs and epoch == self._epochs[-1] and start_offset >= self._starts[-1]:
            return False
        # Drop entries with epoch >= epoch or start >= start_offset (non-monotonic leftovers).
        keep = min(bisect_left(self._epochs, epoch), bisect_left(self._starts, start_offset))
        del self._epochs[keep:]
        del self._starts[keep:]
        self._epochs.append(epoch)
        self._starts.append(start_offset)
        return True

    def truncate_from_end(self, end_offset: int) -> bool:
        """Drop the entries whose start offset is ≥ `end_offset`."""
        keep = bisect_left(self._starts, end_offset)
        if keep == len(self._starts):
            return False
        del self._epochs[keep:]
        del self._starts[keep:]
        self.flush()
        return True

    def truncate_from_start(self, start_offset: int) -> bool:
        """Drop the entries that end at or before `start_offset`; clamp the survivor."""
        upto = bisect_right(self._starts, start_offset)  # entries starting at <= start_offset
        if upto == 0 or (upto == 1 and self._starts[0] == start_offset):
            return False
        epoch = self._epochs[upto - 1]
        del self._epochs[:upto]
        del self._starts[:upto]
        self._epochs.insert(0, epoch)
        self._starts.insert(0, start_offset)
        self.flush()
        return True

    def clear(self) -> None:
        self._epochs.clear()
        self._starts.clear()
        self.flush()

    def flush(self) -> None:
        if self._fs is not None and self._path is not None:
            self._fs.atomic_replace(self._path, encode_checkpoint(self.entries()))
