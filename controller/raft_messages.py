"""Raft's messages between voters: frozen dataclasses, no I/O.

Every message names its sender (`from_id`), its recipient (`to_id`) and the sender's `term`
(Raft §5.1: a higher term seen anywhere makes the receiver a follower; a lower one marks a stale
sender). The shell's transport converts these to and from the wire; the core never sees bytes.

- `VoteRequest` / `VoteResponse`: RequestVote (§5.2) and, with `pre_vote=True`, the pre-vote
  round (Ongaro's thesis §9.6). A pre-vote request carries the term the sender *would* use
  (current term + 1) without having adopted it; a granted pre-vote response echoes that term.
- `AppendRequest` / `AppendResponse`: AppendEntries (§5.3). A reject carries the fast
  backtracking hint (`conflict_index`, `conflict_term`; thesis §5.3 / etcd's "reject hint").
- `InstallSnapshotRequest` / `InstallSnapshotResponse`: §7, the whole snapshot in one message
  (metadata snapshots are small; chunking would be a transport concern).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from controller.raft_log import LogEntry, Snapshot


@dataclass(frozen=True, slots=True)
class VoteRequest:
    from_id: int
    to_id: int
    term: int  # the candidate's term (for a pre-vote: the term it would campaign in)
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False


@dataclass(frozen=True, slots=True)
class VoteResponse:
    from_id: int
    to_id: int
    term: int  # granted pre-vote: the request's term; otherwise the voter's current term
    granted: bool
    pre_vote: bool = False


@dataclass(frozen=True, slots=True)
class AppendRequest:
    from_id: int
    to_id: int
    term: int
    prev_log_index: int
    prev_log_term: int
    entries: tuple[LogEntry, ...]
    leader_commit: int


@dataclass(frozen=True, slots=True)
class AppendResponse:
    from_id: int
    to_id: int
    term: int
    success: bool
    # success: the follower's log matches the leader's through match_index (persisted).
    match_index: int = 0
    # reject: the prev_log_index that failed the consistency check, so the leader can ignore
    # stale rejects, and the hint: the follower's last index + 1 (conflict_term None) or the
    # first index of the follower's conflicting term.
    reject_index: int = 0
    conflict_index: int = 0
    conflict_term: int | None = None


@dataclass(frozen=True, slots=True)
class InstallSnapshotRequest:
    from_id: int
    to_id: int
    term: int
    snapshot: Snapshot


@dataclass(frozen=True, slots=True)
class InstallSnapshotResponse:
    from_id: int
    to_id: int
    term: int
    match_index: int  # the follower's log now matches the leader's through this index


RaftMessage: TypeAlias = (
    VoteRequest
    | VoteResponse
    | AppendRequest
    | AppendResponse
    | InstallSnapshotRequest
    | InstallSnapshotResponse
)
