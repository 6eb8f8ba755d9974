"""Raft safety invariants, checked incrementally after every simulated event.

The checker sees what each node outputs (its `Ready`s) and its role/term/commit after each
input, and keeps just enough global history to check, cheaply, after every event:

- Election Safety: at most one leader per term.
- Leader Append-Only: a leader never truncates its own log.
- Log Matching: every log entry is summarized by a chained hash over its whole prefix; the
  first time any node holds (index, term) fixes that hash. A node holding (index, term) with a
  different chain hash has a log that disagrees on some earlier entry.
- Leader Completeness: a leader of term t holds every entry committed in a term < t. A commit
  is attributed to the term of the leader that advanced its commit index (a leader commits
  only an entry of its own term, §5.4.2). Checked when a node becomes leader (against the
  highest index committed in an earlier term) and whenever an earlier-term leader commits
  more while it still leads (its acks may arrive late). Holding the committed chain hash at an
  index means holding every committed entry up to it.
- State Machine Safety: every applied entry (and every snapshot's content) equals what was
  first committed at that index; each node applies indexes densely, in order.
- The commit index never decreases on a live node (a restart starts a new incarnation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.raft import Ready, Role
from controller.raft_log import LogEntry, Snapshot


class InvariantViolation(AssertionError):
    pass


def _chain(prev: int, term: int, data: bytes) -> int:
    return hash((prev, term, data))


@dataclass(slots=True)
class _Mirror:
    """A node's log as (term, chain hash) per index after `base`."""

    base: int = 0
    base_term: int = 0
    base_hash: int = 0
    terms: list[int] = field(default_factory=list)
    hashes: list[int] = field(default_factory=list)

    @property
    def last(self) -> int:
        return self.base + len(self.terms)

    def hash_at(self, index: int) -> int | None:
        if index == self.base:
            return self.base_hash
        k = index - self.base - 1
        return self.hashes[k] if 0 <= k < len(self.hashes) else None

    def term_at(self, index: int) -> int | None:
        if index == self.base:
            return self.base_term
        k = index - self.base - 1
        return self.terms[k] if 0 <= k < len(self.terms) else None


class RaftChecker:
    def __init__(self) -> None:
        self.leaders: dict[int, int] = {}  # term -> leader id
        self.entry_hash: dict[tuple[int, int], int] = {(0, 0): 0}
        self.committed: dict[int, tuple[int, bytes]] = {}  # index -> (term, data)
        self.committed_hash: dict[int, int] = {0: 0}
        self.max_committed = 0
        self.commit_by_term: dict[int, int] = {}  # leader term -> highest index it committed
        self._leader_term: dict[int, int] = {}  # current leaders: node -> term
        self._mirrors: dict[int, _Mirror] = {}
        self._commit: dict[int, int] = {}
        self._applied: dict[int, int] = {}
        self._role: dict[int, Role] = {}
        self.elections = 0

    def fail(self, what: str) -> None:
        raise InvariantViolation(what)

    # -- lifecycle --

    def on_start(
        self, node_id: int, snapshot: Snapshot | None, entries: list[LogEntry], applied: int
    ) -> None:
        """A node (re)started from its storage."""
        m = _Mirror()
        if snapshot is not None:
            self._check_snapshot(node_id, snapshot)
            m.base, m.base_term = snapshot.last_index, snapshot.last_term
            m.base_hash = self.committed_hash[snapshot.last_index]
        self._mirrors[node_id] = m
        self._append(node_id, m, entries)
        self._commit[node_id] = 0
        self._applied[node_id] = applied
        self._role[node_id] = Role.FOLLOWER

    def on_crash(self, node_id: int) -> None:
        self._mirrors.pop(node_id, None)
        self._commit.pop(node_id, None)
        self._role.pop(node_id, None)
        self._leader_term.pop(node_id, None)

    # -- per event --

    def on_ready(self, node_id: int, role: Role, ready: Ready) -> None:
        m = self._mirrors[node_id]
        if ready.snapshot is not None:
            snap = ready.snapshot
            self._check_snapshot(node_id, snap)
            if m.term_at(snap.last_index) != snap.last_term:
                self._mirrors[node_id] = m = _Mirror(
                    base=snap.last_index,
                    base_term=snap.last_term,
                    base_hash=self.committed_hash[snap.last_index],
                )
        if ready.entries:
            first = ready.entries[0].index
            if role is Role.LEADER and first <= m.last:
                self.fail(f"leader {node_id} overwrote its log from index {first}")
            if first <= m.base:
                self.fail(f"node {node_id} rewrote index {first} under its snapshot {m.base}")
            del m.terms[first - m.base - 1 :]
            del m.hashes[first - m.base - 1 :]
            self._append(node_id, m, list(ready.entries))

    def on_apply(
        self, node_id: int, snapshot: Snapshot | None, entries: tuple[LogEntry, ...]
    ) -> None:
        if snapshot is not None:
            self._applied[node_id] = snapshot.last_index
        for e in entries:
            if e.index != self._applied[node_id] + 1:
                self.fail(f"node {node_id} applied {e.index} after {self._applied[node_id]}")
            self._applied[node_id] = e.index
            seen = self.committed.setdefault(e.index, (e.term, e.data))
            if seen != (e.term, e.data):
                self.fail(
                    f"State Machine Safety: node {node_id} applied index {e.index} as "
                    f"(term {e.term}, {e.data!r}) but it was committed as {seen}"
                )

    def after_input(self, node_id: int, role: Role, term: int, commit: int) -> None:
        """After a node handled an input and its Ready (if any) went through `on_ready`."""
        if role is Role.LEADER:
            holder = self.leaders.setdefault(term, node_id)
            if holder != node_id:
                self.fail(f"Election Safety: nodes {holder} and {node_id} both lead term {term}")
            if self._leader_term.get(node_id) != term:
                self.elections += 1
                self._leader_term[node_id] = term
                earlier = [c for t, c in self.commit_by_term.items() if t < term]
                self._check_completeness(node_id, term, max(earlier, default=0))
        else:
            self._leader_term.pop(node_id, None)
        self._role[node_id] = role
        prev = self._commit.get(node_id, 0)
        if commit < prev:
            self.fail(f"node {node_id}'s commit index went back from {prev} to {commit}")
        if commit > prev:
            self._commit[node_id] = commit
            m = self._mirrors[node_id]
            if commit > m.last:
                self.fail(f"node {node_id} commits {commit} beyond its log ({m.last})")
            for index in range(max(prev, m.base) + 1, commit + 1):
                h = m.hash_at(index)
                assert h is not None
                seen = self.committed_hash.setdefault(index, h)
                if seen != h:
                    self.fail(
                        f"State Machine Safety: node {node_id} commits a different log at {index}"
                    )
            if commit > self.max_committed:
                self.max_committed = commit
            if role is Role.LEADER:
                if commit > self.commit_by_term.get(term, 0):
                    self.commit_by_term[term] = commit
                for other, other_term in sorted(self._leader_term.items()):
                    if other_term > term:
                        self._check_completeness(other, other_term, commit)

    # -- helpers --

    def _append(self, node_id: int, m: _Mirror, entries: list[LogEntry]) -> None:
        h = m.hash_at(m.last)
        assert h is not None
        for e in entries:
            if e.index != m.last + 1:
                self.fail(f"node {node_id} log gap: {e.index} after {m.last}")
            h = _chain(h, e.term, e.data)
            seen = self.entry_hash.setdefault((e.index, e.term), h)
            if seen != h:
                self.fail(
                    f"Log Matching: node {node_id} holds (index {e.index}, term {e.term}) "
                    "with a prefix that differs from another log's"
                )
            m.terms.append(e.term)
            m.hashes.append(h)

    def _check_completeness(self, node_id: int, term: int, c: int) -> None:
        m = self._mirrors[node_id]
        if c <= m.base:
            return  # covered by its snapshot, which was checked against the committed log
        if m.hash_at(c) != self.committed_hash[c]:
            self.fail(
                f"Leader Completeness: node {node_id} leads term {term} without committed "
                f"index {c}"
            )

    def _check_snapshot(self, node_id: int, snap: Snapshot) -> None:
        for index, (term, data) in enumerate(decode_state(snap.data), start=1):
            seen = self.committed.setdefault(index, (term, data))
            if seen != (term, data):
                self.fail(f"State Machine Safety: node {node_id}'s snapshot differs at {index}")
        if snap.last_index not in self.committed_hash:
            self.fail(f"node {node_id} has a snapshot at uncommitted index {snap.last_index}")


def encode_state(applied: list[tuple[int, bytes]]) -> bytes:
    """The sim's state machine image: every applied (term, data), length-prefixed."""
    out = bytearray()
    for term, data in applied:
        out += term.to_bytes(8, "big") + len(data).to_bytes(4, "big") + data
    return bytes(out)


def decode_state(buf: bytes) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(buf):
        term = int.from_bytes(buf[pos : pos + 8], "big")
        n = int.from_bytes(buf[pos + 8 : pos + 12], "big")
        out.append((term, bytes(buf[pos + 12 : pos + 12 + n])))
        pos += 12 + n
    return out
