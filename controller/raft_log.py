"""The Raft log as the core sees it: a snapshot boundary plus the entries after it.

Theory of operation. `RaftLog` owns no I/O. It holds the last index and term covered by the
latest snapshot (`snapshot_index`, `snapshot_term`) and the entries after it, in memory. The
node appends to it (leader), reconciles it with a leader's AppendEntries (follower: consistency
check, conflict truncation; Raft §5.3), compacts it behind a snapshot (§7) and answers term
lookups. What is durable is tracked by `RaftNode`, not here: the log may hold entries the shell
has not yet fsynced.

Invariants (asserted where they could break):
- `entries[k].index == snapshot_index + 1 + k` (dense, no gaps);
- terms never decrease along the log, and no entry's term is below `snapshot_term`.

Index 0 / term 0 is the empty log's sentinel, as in the Raft paper (indexes start at 1).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One replicated entry. `data` is opaque to Raft (b"" for a leader's no-op)."""

    index: int
    term: int
    data: bytes


@dataclass(frozen=True, slots=True)
class HardState:
    """What Raft must persist before any message that depends on it leaves (§5.1, Figure 2).

    `commit` is not required for safety (a node may restart with a lower one and relearn it)
    but saves re-applying entries after a restart.
    """

    term: int
    voted_for: int | None
    commit: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A state-machine image covering every entry up to and including `last_index`."""

    last_index: int
    last_term: int
    data: bytes


@dataclass(frozen=True, slots=True)
class AppendOutcome:
    """What `RaftLog.maybe_append` did. On a reject, `conflict_*` is the fast-backtracking hint."""

    ok: bool
    last_new_index: int = 0
    truncated_from: int | None = None  # first index removed by a conflict (§5.3)
    conflict_index: int = 0
    conflict_term: int | None = None


class RaftLog:
    """Entries after a snapshot boundary; see the module docstring for its invariants."""

    __slots__ = ("snapshot_index", "snapshot_term", "_entries")

    def __init__(
        self,
        *,
        snapshot_index: int = 0,
        snapshot_term: int = 0,
        entries: tuple[LogEntry, ...] | list[LogEntry] = (),
    ) -> None:
        self.snapshot_index = snapshot_index
        self.snapshot_term = snapshot_term
        self._entries: list[LogEntry] = []
        self._extend(list(entries))

    # ---- queries -------------------------------------------------------------------------

    @property
    def first_index(self) -> int:
        """The first index still held as an entry (may be last_index + 1 if empty)."""
        return self.snapshot_index + 1

    @property
    def last_index(self) -> int:
        return self.snapshot_index + len(self._entries)

    @property
    def last_term(self) -> int:
        return self._entries[-1].term if self._entries else self.snapshot_term

    def term(self, index: int) -> int | None:
        """The term at `index`, or None if it is compacted away (below the snapshot) or past
        the end. The snapshot's own last index still has a known term."""
        if index == self.snapshot_index:
            return self.snapshot_term
        if index < self.snapshot_index or index > self.last_index:
            return None
        return self._entries[index - self.snapshot_index - 1].term

    def entry(self, index: int) -> LogEntry:
        assert self.snapshot_index < index <= self.last_index, (index, self.snapshot_index)
        return self._entries[index - self.snapshot_index - 1]

    def slice(self, lo: int, hi: int) -> tuple[LogEntry, ...]:
        """Entries with lo <= index < hi; lo must not be compacted."""
        assert lo > self.snapshot_index, (lo, self.snapshot_index)
        base = self.snapshot_index + 1
        return tuple(self._entries[max(lo - base, 0) : max(hi - base, 0)])

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft §5.4.1: a candidate's log is at least as up to date as ours."""
        return (last_term, last_index) >= (self.last_term, self.last_index)

    def first_index_of_term_at(self, index: int) -> int:
        """The first index (not compacted) whose term equals the term at `index`."""
        term = self.term(index)
        assert term is not None
        pos = bisect_left(self._entries, term, key=lambda e: e.term)
        return self.snapshot_index + 1 + pos

    def last_index_of_term(self, term: int) -> int | None:
        """The last index holding `term`, or None if the log has no entry of that term."""
        pos = bisect_left(self._entries, term + 1, key=lambda e: e.term)
        if pos > 0 and self._entries[pos - 1].term == term:
            return self.snapshot_index + pos
        if pos == 0 and self.snapshot_term == term and self.snapshot_index > 0:
            return self.snapshot_index
        return None

    # ---- changes -------------------------------------------------------------------------

    def append(self, entries: list[LogEntry]) -> None:
        """Leader-side append of new entries right after the last index."""
        self._extend(entries)

    def maybe_append(
        self, prev_index: int, prev_term: int, entries: tuple[LogEntry, ...]
    ) -> AppendOutcome:
        """AppendEntries receiver rules 2-4 (Figure 2, §5.3).

        Requires prev_index >= snapshot_index (the node trims requests below its commit).
        Entries that already match are kept: a stale or duplicated request never truncates.
        """
        assert prev_index >= self.snapshot_index, (prev_index, self.snapshot_index)
        if prev_index > self.last_index:
            return AppendOutcome(ok=False, conflict_index=self.last_index + 1)
        local_term = self.term(prev_index)
        assert local_term is not None
        if local_term != prev_term:
            return AppendOutcome(
                ok=False,
                conflict_index=self.first_index_of_term_at(prev_index),
                conflict_term=local_term,
            )
        truncated: int | None = None
        for k, e in enumerate(entries):
            assert e.index == prev_index + 1 + k, "entries in a request must be dense"
            if e.index > self.last_index:
                self._extend(list(entries[k:]))
                break
            if self.term(e.index) != e.term:
                truncated = e.index
                self.truncate_from(e.index)
                self._extend(list(entries[k:]))
                break
        return AppendOutcome(
            ok=True, last_new_index=prev_index + len(entries), truncated_from=truncated
        )

    def truncate_from(self, index: int) -> None:
        """Drop every entry at or after `index` (a conflicting suffix)."""
        assert index > self.snapshot_index, "never truncate into a snapshot (committed)"
        del self._entries[index - self.snapshot_index - 1 :]

    def compact(self, index: int, term: int) -> None:
        """Drop entries up to `index`, which becomes the snapshot boundary (§7)."""
        if index <= self.snapshot_index:
            return
        assert index <= self.last_index and self.term(index) == term, (index, term)
        del self._entries[: index - self.snapshot_index]
        self.snapshot_index, self.snapshot_term = index, term

    def restore(self, index: int, term: int) -> bool:
        """Install a snapshot boundary from a leader (§7).

        Keeps the suffix if the log holds (index, term); otherwise discards every entry.
        Returns whether the suffix was kept.
        """
        if self.term(index) == term and index <= self.last_index:
            self.compact(index, term)
            return True
        self._entries.clear()
        self.snapshot_index, self.snapshot_term = index, term
        return False

    def _extend(self, entries: list[LogEntry]) -> None:
        for e in entries:
            assert e.index == self.last_index + 1, (e.index, self.last_index)
            assert e.term >= self.last_term, (e.term, self.last_term)
            self._entries.append(e)
