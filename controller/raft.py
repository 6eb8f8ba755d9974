"""The Raft core of the controller quorum: a plain class with no I/O.

Theory of operation
-------------------
`RaftNode` is one voter of a fixed membership (odd count, 3 by default). It never touches a
socket, a file, a clock, a thread or Ray. The shell drives it with three inputs:

- `step(msg, now_ms)`: a `RaftMessage` from a peer;
- `tick(now_ms)`: the clock reached `next_deadline_ms()` (or any later time);
- `propose(data)`: the application wants an entry replicated (leader only).

and collects its outputs with `ready()` (also returned by `step` and `tick`). A `Ready` must be
handled in this order, then acknowledged with `advance(ready)`:

1. persist `snapshot` (if any), then append `entries` (the first one's index tells the storage
   where to cut a conflicting suffix), then save `hard_state`; fsync (`persist_ready` in
   controller/raft_storage.py does exactly this);
2. only then send `messages` (a vote grant or an append ack must never leave before the term,
   vote and entries it vouches for are durable: Raft §5.1, §5.3, Figure 2; an ack queued
   before a newer leader cut the entries it vouches for leaves with the newer term, so the
   old leader steps down instead of counting it: `_restamp_pending_acks`);
3. apply `snapshot` then `committed` to the state machine, in order;
4. `advance(ready)`.

Durability is an output: the node counts entries as stable only in `advance`, and a leader
counts its own log toward a commit majority only up to what is stable.

Roles and what moves between them (the table `_TRANSITIONS`, applied only by `_transition`):

    FOLLOWER      --election timeout-->         PRE_CANDIDATE  (CANDIDATE if pre_vote is off)
    PRE_CANDIDATE --pre-vote majority-->        CANDIDATE      (term + 1, votes for itself)
    PRE_CANDIDATE / CANDIDATE --timeout-->      PRE_CANDIDATE  (a new round)
    CANDIDATE     --vote majority-->            LEADER         (appends a no-op of its term)
    any role      --higher term, a current-term leader, a lost election--> FOLLOWER
    LEADER        --no majority heard from within an election timeout--> FOLLOWER (check-quorum)

Timers (all in ms of the shell's clock, passed in as `now_ms`): the election timeout is drawn
from [T, 2T) with the injected `random.Random` on every reset (§5.2); a leader sends heartbeats
every `heartbeat_interval_ms` and checks its quorum every T (thesis §6.2). Pre-vote (thesis
§9.6): a node first asks whether it *could* win at term + 1 without adopting that term; voters
refuse while they have heard from a leader within T, so a node returning from a partition
cannot depose a healthy leader or inflate the term.

Replication: per-follower progress is PROBE (one append in flight until answered or the next
heartbeat), REPLICATE (optimistic pipelining: `next_index` advances as entries are sent) or
SNAPSHOT (an InstallSnapshot is in flight, §7). A reject carries a hint (the follower's last
index, or its conflicting term and that term's first index) so the leader skips a whole term
per round trip. A leader commits index N only when a majority holds N and N is of its current
term (§5.4.2, the "Figure 8" rule); earlier entries commit with it.

What this module never does: membership changes, leader transfer, observers (brokers follow the
committed log through another RPC), chunked snapshots.
"""

from __future__ import annotations

import enum
import logging
import random
from collections.abc import MutableMapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from controller.raft_log import HardState, LogEntry, RaftLog, Snapshot
from controller.raft_messages import (
    AppendRequest,
    AppendResponse,
    InstallSnapshotRequest,
    InstallSnapshotResponse,
    RaftMessage,
    VoteRequest,
    VoteResponse,
)
from proto.errors import ErrorCode, RafkaError

if TYPE_CHECKING:
    from controller.raft_storage import RaftStorage

log = logging.getLogger(__name__)


class NotLeaderError(RafkaError):
    """`propose` on a node that is not the leader (maps to Kafka's NOT_CONTROLLER)."""

    code = ErrorCode.NOT_CONTROLLER
    retriable = True
    invalid_metadata = True

    def __init__(self, node_id: int, leader_id: int | None) -> None:
        super().__init__(f"node {node_id} is not the Raft leader (leader: {leader_id})")
        self.leader_id = leader_id


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class RoleEvent(enum.Enum):
    START_PRE_VOTE = "start pre-vote"
    START_ELECTION = "start election"
    WIN_ELECTION = "win election"
    STEP_DOWN = "step down"
    LOSE_QUORUM = "lose quorum"


F, P, C, L = Role.FOLLOWER, Role.PRE_CANDIDATE, Role.CANDIDATE, Role.LEADER
_TRANSITIONS: dict[tuple[Role, RoleEvent], Role] = {
    (F, RoleEvent.START_PRE_VOTE): P,
    (P, RoleEvent.START_PRE_VOTE): P,
    (C, RoleEvent.START_PRE_VOTE): P,
    (F, RoleEvent.START_ELECTION): C,  # pre_vote disabled
    (P, RoleEvent.START_ELECTION): C,
    (C, RoleEvent.START_ELECTION): C,  # pre_vote disabled
    (C, RoleEvent.WIN_ELECTION): L,
    (F, RoleEvent.STEP_DOWN): F,
    (P, RoleEvent.STEP_DOWN): F,
    (C, RoleEvent.STEP_DOWN): F,
    (L, RoleEvent.STEP_DOWN): F,
    (L, RoleEvent.LOSE_QUORUM): F,
}
del F, P, C, L


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """Resolved Raft settings for one voter.

    Attributes:
        node_id: this voter's id; must be in `voters`.
        voters: the fixed membership (odd count).
        election_timeout_ms: T; the actual timeout is random in [T, 2T). Kafka's
            controller.quorum.election.timeout.ms defaults to 1000.
        heartbeat_interval_ms: leader heartbeat period; None means T // 5.
        pre_vote: run a pre-vote round before bumping the term (thesis §9.6).
        check_quorum: a leader steps down after T without hearing from a majority.
        max_entries_per_append: cap on entries in one AppendRequest.
    """

    node_id: int
    voters: tuple[int, ...] = (1, 2, 3)
    election_timeout_ms: int = 1000
    heartbeat_interval_ms: int | None = None
    pre_vote: bool = True
    check_quorum: bool = True
    max_entries_per_append: int = 64

    def __post_init__(self) -> None:
        if len(set(self.voters)) != len(self.voters) or len(self.voters) % 2 == 0:
            raise ValueError(f"voters must be distinct and odd in number: {self.voters}")
        if self.node_id not in self.voters:
            raise ValueError(f"node_id {self.node_id} is not one of the voters {self.voters}")
        if self.election_timeout_ms <= 0 or self.max_entries_per_append <= 0:
            raise ValueError("election_timeout_ms and max_entries_per_append must be > 0")
        if not 0 < self.heartbeat_ms < self.election_timeout_ms:
            raise ValueError(
                f"heartbeat interval {self.heartbeat_ms} ms must be in "
                f"(0, election timeout {self.election_timeout_ms} ms)"
            )

    @property
    def heartbeat_ms(self) -> int:
        if self.heartbeat_interval_ms is not None:
            return self.heartbeat_interval_ms
        return max(1, self.election_timeout_ms // 5)


@dataclass(frozen=True, slots=True)
class Ready:
    """Everything the shell must do, in order: persist, send, apply; then `advance(self)`."""

    hard_state: HardState | None  # term + vote + commit: fsync before anything leaves
    entries: tuple[LogEntry, ...]  # append (cutting the suffix at entries[0].index) + fsync
    messages: tuple[RaftMessage, ...]  # send only after the above are durable
    committed: tuple[LogEntry, ...]  # apply to the state machine, in order
    snapshot: Snapshot | None = None  # persist, then restore the state machine from it

    def is_empty(self) -> bool:
        return (
            self.hard_state is None
            and not self.entries
            and not self.messages
            and not self.committed
            and self.snapshot is None
        )


@dataclass(frozen=True, slots=True)
class VoterStatus:
    node_id: int
    match_index: int
    last_contact_ms: int | None  # the leader's clock when it last heard from this voter


@dataclass(frozen=True, slots=True)
class QuorumStatus:
    """What DescribeQuorum reports (as seen by this node)."""

    node_id: int
    role: Role
    leader_id: int | None
    term: int
    commit_index: int
    voters: tuple[VoterStatus, ...]  # match/contact are only known on the leader


@dataclass(slots=True)
class Progress:
    """The leader's view of one follower. invariant: match_index < next_index."""

    next_index: int
    match_index: int = 0
    state: ProgressState = ProgressState.PROBE
    probe_sent: bool = False  # PROBE: an append is in flight; wait for a reply or heartbeat
    snapshot_index: int = 0  # SNAPSHOT: the snapshot in flight (its last index and term)
    snapshot_term: int = 0
    snapshot_sent_ms: int = 0
    last_contact_ms: int | None = None


class _NodeLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes every line with the node id and its clock, so a sim run reads like a log."""

    def __init__(self, node: RaftNode) -> None:
        super().__init__(log, {})
        self._node = node

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        return f"[raft {self._node.node_id} t={self._node.now_ms}] {msg}", kwargs


class RaftNode:
    """One Raft voter; see the module docstring. Not thread-safe (one shell loop drives it)."""

    def __init__(
        self,
        config: RaftConfig,
        *,
        rng: random.Random,
        now_ms: int,
        hard_state: HardState | None = None,
        snapshot: Snapshot | None = None,
        entries: tuple[LogEntry, ...] | list[LogEntry] = (),
    ) -> None:
        """Start (or restart) from what storage holds.

        Args:
            config: resolved settings.
            rng: the only source of randomness (election jitter).
            now_ms: the shell's clock now.
            hard_state, snapshot, entries: as loaded from `RaftStorage`; entries covered by
                the snapshot are ignored. The shell restores its state machine from `snapshot`
                itself; `Ready.committed` then carries the entries after it.
        """
        self.config = config
        self.node_id = config.node_id
        self._rng = rng
        self.now_ms = now_ms
        self._peers = tuple(sorted(v for v in config.voters if v != config.node_id))
        self._quorum = len(config.voters) // 2 + 1
        self._log_ = _NodeLog(self)

        snap_index = snapshot.last_index if snapshot else 0
        snap_term = snapshot.last_term if snapshot else 0
        self._log = RaftLog(
            snapshot_index=snap_index,
            snapshot_term=snap_term,
            entries=[e for e in entries if e.index > snap_index],
        )
        hs = hard_state or HardState(term=0, voted_for=None, commit=0)
        self.term = max(hs.term, self._log.last_term)
        self.voted_for = hs.voted_for if self.term == hs.term else None
        # The commit index is a cache: clamping it to what survived is always safe.
        self.commit_index = min(max(hs.commit, snap_index), self._log.last_index)
        self._persisted_hs = hard_state
        self._stable_index = self._log.last_index  # everything loaded is durable
        self._applied = snap_index
        self._snapshot = snapshot  # the latest snapshot with data, to send to laggards
        self._pending_snapshot: Snapshot | None = None  # from a leader, for the app
        self._outbox: list[RaftMessage] = []

        self.role = Role.FOLLOWER
        self.leader_id: int | None = None
        self._last_leader_contact_ms: int | None = None
        self._votes: dict[int, bool] = {}
        self._progress: dict[int, Progress] = {}
        self._election_deadline_ms = 0
        self._heartbeat_deadline_ms = 0
        self._check_quorum_deadline_ms = 0
        self._reset_election_timer()

    # ---- public API ----------------------------------------------------------------------

    @classmethod
    def from_storage(
        cls, config: RaftConfig, storage: RaftStorage, *, rng: random.Random, now_ms: int
    ) -> RaftNode:
        """Restart from a `RaftStorage` (see controller/raft_storage.py)."""
        return cls(
            config,
            rng=rng,
            now_ms=now_ms,
            hard_state=storage.load_hard_state(),
            snapshot=storage.load_snapshot(),
            entries=storage.load_entries(),
        )

    @property
    def last_index(self) -> int:
        return self._log.last_index

    @property
    def applied_index(self) -> int:
        return self._applied

    @property
    def stable_index(self) -> int:
        return self._stable_index

    @property
    def raft_log(self) -> RaftLog:
        """Read-only use: tests and invariant checkers inspect it."""
        return self._log

    def step(self, msg: RaftMessage, now_ms: int) -> Ready:
        """Handle one message from a peer.

        Returns:
            The pending `Ready` (as `ready()`).
        """
        assert msg.to_id == self.node_id, (msg, self.node_id)
        self._observe_clock(now_ms)
        if msg.term > self.term and not self._is_future_term_probe(msg):
            from_leader = isinstance(msg, (AppendRequest, InstallSnapshotRequest))
            leader = msg.from_id if from_leader else None
            self._log_.info(
                "saw term %d > %d from node %d (%s)",
                msg.term, self.term, msg.from_id, type(msg).__name__,
            )
            self._become_follower(msg.term, leader)
        elif msg.term < self.term:
            self._answer_stale(msg)
            return self.ready()
        if isinstance(msg, AppendRequest):
            self._on_append_request(msg)
        elif isinstance(msg, AppendResponse):
            self._on_append_response(msg)
        elif isinstance(msg, VoteRequest):
            self._on_vote_request(msg)
        elif isinstance(msg, VoteResponse):
            self._on_vote_response(msg)
        elif isinstance(msg, InstallSnapshotRequest):
            self._on_install_snapshot(msg)
        else:
            self._on_install_snapshot_response(msg)
        return self.ready()

    def tick(self, now_ms: int) -> Ready:
        """Let time pass: fire whichever timers are due at `now_ms`."""
        self._observe_clock(now_ms)
        if self.role is Role.LEADER:
            if self.config.check_quorum and now_ms >= self._check_quorum_deadline_ms:
                if self._quorum_active():
                    self._check_quorum_deadline_ms = now_ms + self.config.election_timeout_ms
                else:
                    self._log_.info(
                        "check-quorum: no majority heard from in %d ms; stepping down at term %d",
                        self.config.election_timeout_ms, self.term,
                    )
                    self._transition(RoleEvent.LOSE_QUORUM)
                    self._reset_as_follower(leader_id=None)
                    return self.ready()
            if now_ms >= self._heartbeat_deadline_ms:
                self._heartbeat_deadline_ms = now_ms + self.config.heartbeat_ms
                for peer in self._peers:
                    self._send_append(peer, heartbeat=True)
        elif now_ms >= self._election_deadline_ms:
            self._campaign()
        return self.ready()

    def propose(self, data: bytes) -> int:
        """Append `data` to the leader's log and start replicating it.

        Returns:
            The entry's index; it is committed once it appears in `Ready.committed`.
        Raises:
            NotLeaderError: this node is not the leader (carries `leader_id`, if known).
        """
        if self.role is not Role.LEADER:
            raise NotLeaderError(self.node_id, self.leader_id)
        return self._append_and_broadcast(data)

    def ready(self) -> Ready:
        """The pending outputs. Idempotent until `advance`."""
        hs = self._hard_state()
        start = max(self._stable_index, self._log.snapshot_index) + 1
        entries = self._log.slice(start, self._log.last_index + 1)
        lo = self._applied + 1
        if self._pending_snapshot is not None:
            lo = max(lo, self._pending_snapshot.last_index + 1)
        committed = self._log.slice(lo, self.commit_index + 1) if lo <= self.commit_index else ()
        return Ready(
            hard_state=hs if hs != self._persisted_hs else None,
            entries=entries,
            messages=tuple(self._outbox),
            committed=committed,
            snapshot=self._pending_snapshot,
        )

    def has_ready(self) -> bool:
        return bool(
            self._outbox
            or self._stable_index < self._log.last_index
            or self._applied < self.commit_index
            or self._pending_snapshot is not None
            or self._hard_state() != self._persisted_hs
        )

    def advance(self, ready: Ready) -> None:
        """The shell persisted, sent and applied `ready` (in that order)."""
        if ready.hard_state is not None:
            self._persisted_hs = ready.hard_state
        if ready.snapshot is not None:
            self._stable_index = max(self._stable_index, ready.snapshot.last_index)
            self._applied = max(self._applied, ready.snapshot.last_index)
            if self._pending_snapshot == ready.snapshot:
                self._pending_snapshot = None
        for e in reversed(ready.entries):
            # An entry truncated meanwhile (step between ready and advance) is not stable.
            if self._log.term(e.index) == e.term:
                self._stable_index = max(self._stable_index, e.index)
                break
        del self._outbox[: len(ready.messages)]
        if ready.committed:
            self._applied = max(self._applied, ready.committed[-1].index)
        if self.role is Role.LEADER:
            self._maybe_commit()

    def next_deadline_ms(self) -> int:
        """When the node next needs `tick` (absent other input)."""
        if self.role is Role.LEADER:
            if self.config.check_quorum:
                return min(self._heartbeat_deadline_ms, self._check_quorum_deadline_ms)
            return self._heartbeat_deadline_ms
        return self._election_deadline_ms

    def compact(self, snapshot: Snapshot) -> None:
        """The application took `snapshot` of its applied state; drop the log behind it (§7).

        The shell must have saved it durably first (`RaftStorage.save_snapshot`).
        """
        assert snapshot.last_index <= self._applied, (snapshot.last_index, self._applied)
        if snapshot.last_index <= self._log.snapshot_index:
            return
        self._log.compact(snapshot.last_index, snapshot.last_term)
        self._snapshot = snapshot
        self._log_.debug("compacted log through %d", snapshot.last_index)

    def status(self) -> QuorumStatus:
        """DescribeQuorum: leader, term, commit index, each voter's match index and contact."""
        voters = []
        for v in sorted(self.config.voters):
            if v == self.node_id:
                voters.append(VoterStatus(v, self._stable_index, self.now_ms))
            elif self.role is Role.LEADER:
                pr = self._progress[v]
                voters.append(VoterStatus(v, pr.match_index, pr.last_contact_ms))
            else:
                voters.append(VoterStatus(v, 0, None))
        return QuorumStatus(
            node_id=self.node_id,
            role=self.role,
            leader_id=self.leader_id,
            term=self.term,
            commit_index=self.commit_index,
            voters=tuple(voters),
        )

    # ---- roles ---------------------------------------------------------------------------

    def _transition(self, event: RoleEvent) -> None:
        """The one place roles change; an event not in the table is a bug."""
        nxt = _TRANSITIONS.get((self.role, event))
        if nxt is None:
            raise AssertionError(f"illegal Raft transition: {self.role.name} on {event.name}")
        self.role = nxt

    def _campaign(self) -> None:
        if not self.config.pre_vote:
            self._start_election()
            return
        self._transition(RoleEvent.START_PRE_VOTE)
        self.leader_id = None
        self._votes = {self.node_id: True}
        self._reset_election_timer()
        self._log_.info("election timeout: pre-vote for term %d", self.term + 1)
        self._request_votes(term=self.term + 1, pre_vote=True)
        if self._quorum == 1:
            self._start_election()

    def _start_election(self) -> None:
        """§5.2: increment the term, vote for ourselves, ask everyone."""
        self._transition(RoleEvent.START_ELECTION)
        self.term += 1
        self.voted_for = self.node_id
        self.leader_id = None
        self._votes = {self.node_id: True}
        self._reset_election_timer()
        self._log_.info("starting election for term %d", self.term)
        self._request_votes(term=self.term, pre_vote=False)
        if self._quorum == 1:
            self._become_leader()

    def _become_leader(self) -> None:
        self._transition(RoleEvent.WIN_ELECTION)
        self.leader_id = self.node_id
        self._votes = {}
        nxt = self._log.last_index + 1
        self._progress = {
            p: Progress(next_index=nxt, last_contact_ms=self.now_ms) for p in self._peers
        }
        self._heartbeat_deadline_ms = self.now_ms + self.config.heartbeat_ms
        self._check_quorum_deadline_ms = self.now_ms + self.config.election_timeout_ms
        self._log_.info("elected leader for term %d (last index %d)", self.term, nxt - 1)
        # §5.4.2 / §8: a no-op of the new term lets earlier-term entries commit promptly.
        self._append_and_broadcast(b"")

    def _become_follower(self, term: int, leader_id: int | None) -> None:
        assert term >= self.term
        if term > self.term:
            self.term = term
            self.voted_for = None
            self._restamp_pending_acks()
        self._transition(RoleEvent.STEP_DOWN)
        self._reset_as_follower(leader_id)

    def _restamp_pending_acks(self) -> None:
        """Append/snapshot answers still in the outbox leave with the new term.

        They leave only after this `Ready` is persisted, and by then a leader of the new term
        may have cut the entries they acknowledged (both requests stepped in one inbox drain).
        An old leader must not count such an ack toward a commit; with the new term on it,
        it steps down instead. The answer itself stays (one answer per request, in order).
        """
        self._outbox = [
            replace(m, term=self.term)
            if isinstance(m, (AppendResponse, InstallSnapshotResponse)) and m.term < self.term
            else m
            for m in self._outbox
        ]

    def _reset_as_follower(self, leader_id: int | None) -> None:
        if leader_id is not None and leader_id != self.leader_id:
            self._log_.info("following leader %d at term %d", leader_id, self.term)
        self.leader_id = leader_id
        self._votes = {}
        self._progress = {}
        if leader_id is not None:
            self._last_leader_contact_ms = self.now_ms
        self._reset_election_timer()

    # ---- votes (§5.2, §5.4.1, thesis §9.6) -------------------------------------------------

    def _request_votes(self, *, term: int, pre_vote: bool) -> None:
        for p in self._peers:
            self._send(
                VoteRequest(
                    from_id=self.node_id,
                    to_id=p,
                    term=term,
                    last_log_index=self._log.last_index,
                    last_log_term=self._log.last_term,
                    pre_vote=pre_vote,
                )
            )

    def _in_leader_lease(self) -> bool:
        """We lead, or heard from a leader within T: refuse pre-votes (thesis §9.6, §4.2.3)."""
        if self.role is Role.LEADER:
            return True
        return (
            self.leader_id is not None
            and self._last_leader_contact_ms is not None
            and self.now_ms - self._last_leader_contact_ms < self.config.election_timeout_ms
        )

    def _can_grant_vote(self, msg: VoteRequest) -> bool:
        """One vote per term (§5.2), and only to a candidate whose log is at least as up to
        date as ours (§5.4.1). A pre-vote also needs a future term and no live leader."""
        if not self._log.is_up_to_date(msg.last_log_index, msg.last_log_term):
            return False
        if msg.pre_vote:
            return msg.term > self.term and not self._in_leader_lease()
        return self.voted_for == msg.from_id or (self.voted_for is None and self.leader_id is None)

    def _on_vote_request(self, msg: VoteRequest) -> None:
        grant = self._can_grant_vote(msg)
        if grant and not msg.pre_vote:
            self.voted_for = msg.from_id  # persisted (Ready.hard_state) before the reply leaves
            self._reset_election_timer()
        self._log_.debug(
            "%s %s from %d for term %d",
            "granted" if grant else "refused", "pre-vote" if msg.pre_vote else "vote",
            msg.from_id, msg.term,
        )
        self._send(
            VoteResponse(
                from_id=self.node_id,
                to_id=msg.from_id,
                term=msg.term if (grant and msg.pre_vote) else self.term,
                granted=grant,
                pre_vote=msg.pre_vote,
            )
        )

    def _on_vote_response(self, msg: VoteResponse) -> None:
        if msg.pre_vote:
            if self.role is not Role.PRE_CANDIDATE:
                return
            if msg.granted and msg.term != self.term + 1:
                return  # a grant for some other round
        elif self.role is not Role.CANDIDATE or msg.term != self.term:
            return
        self._votes[msg.from_id] = msg.granted
        granted = sum(1 for g in self._votes.values() if g)
        refused = len(self._votes) - granted
        if granted >= self._quorum:
            if msg.pre_vote:
                self._start_election()
            else:
                self._become_leader()
        elif refused >= self._quorum:
            self._log_.info("lost %s for term %d", "pre-vote" if msg.pre_vote else "election",
                            self.term + (1 if msg.pre_vote else 0))
            self._become_follower(self.term, None)

    def _is_future_term_probe(self, msg: RaftMessage) -> bool:
        """Pre-vote traffic names a term nobody has adopted yet: it must not move ours."""
        if isinstance(msg, VoteRequest):
            return msg.pre_vote
        if isinstance(msg, VoteResponse):
            return msg.pre_vote and msg.granted
        return False

    def _answer_stale(self, msg: RaftMessage) -> None:
        """A sender with an older term (§5.1): tell requesters our term; drop responses."""
        if isinstance(msg, AppendRequest):
            self._send(AppendResponse(
                from_id=self.node_id, to_id=msg.from_id, term=self.term, success=False,
                reject_index=msg.prev_log_index,
            ))
        elif isinstance(msg, InstallSnapshotRequest):
            self._send(InstallSnapshotResponse(
                from_id=self.node_id, to_id=msg.from_id, term=self.term, match_index=0,
            ))
        elif isinstance(msg, VoteRequest):
            self._send(VoteResponse(
                from_id=self.node_id, to_id=msg.from_id, term=self.term, granted=False,
                pre_vote=msg.pre_vote,
            ))

    # ---- follower side of replication (§5.3, §7) ------------------------------------------

    def _accept_leader(self, leader_id: int) -> None:
        """A current-term leader spoke: follow it and hold off elections (§5.2)."""
        assert self.role is not Role.LEADER, f"two leaders in term {self.term}"
        if self.role is not Role.FOLLOWER or self.leader_id != leader_id:
            self._become_follower(self.term, leader_id)
        self._last_leader_contact_ms = self.now_ms
        self._reset_election_timer()

    def _on_append_request(self, msg: AppendRequest) -> None:
        self._accept_leader(msg.from_id)
        prev_index, prev_term, entries = msg.prev_log_index, msg.prev_log_term, msg.entries
        if prev_index < self.commit_index:
            # Our committed prefix matches every leader's log (§5.4.3); skip that part, which
            # may be compacted away here.
            for e in entries:
                if e.index == self.commit_index:
                    assert e.term == self._log.term(e.index), "committed entry differs"
            entries = tuple(e for e in entries if e.index > self.commit_index)
            prev_index = self.commit_index
            term = self._log.term(prev_index)
            assert term is not None
            prev_term = term
        outcome = self._log.maybe_append(prev_index, prev_term, entries)
        if not outcome.ok:
            self._send(AppendResponse(
                from_id=self.node_id, to_id=msg.from_id, term=self.term, success=False,
                reject_index=msg.prev_log_index,
                conflict_index=outcome.conflict_index, conflict_term=outcome.conflict_term,
            ))
            return
        if outcome.truncated_from is not None:
            assert outcome.truncated_from > self.commit_index, "truncated a committed entry"
            self._stable_index = min(self._stable_index, outcome.truncated_from - 1)
            self._log_.debug("truncated conflicting suffix from %d", outcome.truncated_from)
        # Figure 2: commit = min(leaderCommit, index of last new entry) — never past what
        # this request proved matches the leader.
        new_commit = min(msg.leader_commit, outcome.last_new_index)
        if new_commit > self.commit_index:
            self.commit_index = new_commit
        self._send(AppendResponse(
            from_id=self.node_id, to_id=msg.from_id, term=self.term, success=True,
            match_index=outcome.last_new_index,
        ))

    def _on_install_snapshot(self, msg: InstallSnapshotRequest) -> None:
        self._accept_leader(msg.from_id)
        snap = msg.snapshot
        if snap.last_index > self.commit_index:
            kept = self._log.restore(snap.last_index, snap.last_term)
            if not kept:
                self._stable_index = min(self._stable_index, snap.last_index)
            self.commit_index = snap.last_index
            self._snapshot = snap
            self._pending_snapshot = snap
            self._log_.info(
                "installing snapshot through %d (term %d) from leader %d; %s log suffix",
                snap.last_index, snap.last_term, msg.from_id, "kept" if kept else "discarded",
            )
        self._send(InstallSnapshotResponse(
            from_id=self.node_id, to_id=msg.from_id, term=self.term,
            match_index=self.commit_index,
        ))

    # ---- leader side of replication ------------------------------------------------------

    def _append_and_broadcast(self, data: bytes) -> int:
        entry = LogEntry(index=self._log.last_index + 1, term=self.term, data=data)
        self._log.append([entry])
        for peer in self._peers:
            self._send_append(peer, heartbeat=False)
        return entry.index

    def _send_append(self, peer: int, *, heartbeat: bool) -> None:
        """Send what `peer` needs next, if its progress state allows."""
        pr = self._progress[peer]
        if pr.state is ProgressState.SNAPSHOT:
            if heartbeat:
                if self.now_ms - pr.snapshot_sent_ms >= self.config.election_timeout_ms:
                    self._send_snapshot(peer, pr)  # presumably lost; try again
                else:
                    # Keep the follower from timing out while the snapshot is in flight.
                    self._send(AppendRequest(
                        from_id=self.node_id, to_id=peer, term=self.term,
                        prev_log_index=pr.snapshot_index, prev_log_term=pr.snapshot_term,
                        entries=(), leader_commit=self.commit_index,
                    ))
            return
        if pr.state is ProgressState.PROBE:
            if heartbeat:
                pr.probe_sent = False
            if pr.probe_sent:
                return
        elif not heartbeat and pr.next_index > self._log.last_index:
            return  # REPLICATE and nothing new
        prev = pr.next_index - 1
        prev_term = self._log.term(prev)
        if prev_term is None:  # compacted: only a snapshot can catch it up (§7)
            self._send_snapshot(peer, pr)
            return
        hi = min(self._log.last_index + 1, pr.next_index + self.config.max_entries_per_append)
        entries = self._log.slice(pr.next_index, hi) if pr.next_index < hi else ()
        self._send(AppendRequest(
            from_id=self.node_id, to_id=peer, term=self.term, prev_log_index=prev,
            prev_log_term=prev_term, entries=entries, leader_commit=self.commit_index,
        ))
        if pr.state is ProgressState.PROBE:
            pr.probe_sent = True
        elif entries:
            pr.next_index = entries[-1].index + 1  # optimistic pipelining

    def _send_snapshot(self, peer: int, pr: Progress) -> None:
        assert self._snapshot is not None and self._snapshot.last_index == self._log.snapshot_index
        pr.state = ProgressState.SNAPSHOT
        pr.snapshot_index = self._snapshot.last_index
        pr.snapshot_term = self._snapshot.last_term
        pr.snapshot_sent_ms = self.now_ms
        self._log_.info("sending snapshot through %d to node %d", pr.snapshot_index, peer)
        self._send(InstallSnapshotRequest(
            from_id=self.node_id, to_id=peer, term=self.term, snapshot=self._snapshot,
        ))

    def _on_append_response(self, msg: AppendResponse) -> None:
        if self.role is not Role.LEADER:
            return
        pr = self._progress[msg.from_id]
        pr.last_contact_ms = self.now_ms
        if msg.success:
            self._on_match(msg.from_id, pr, msg.match_index)
            return
        if pr.state is ProgressState.SNAPSHOT:
            return
        if pr.state is ProgressState.REPLICATE and msg.reject_index <= pr.match_index:
            return  # stale: that prefix is known to match
        if pr.state is ProgressState.PROBE and msg.reject_index != pr.next_index - 1:
            return  # stale: not the probe in flight
        nxt = msg.conflict_index
        if msg.conflict_term is not None:
            last_of_term = self._log.last_index_of_term(msg.conflict_term)
            if last_of_term is not None:
                nxt = last_of_term + 1
        pr.next_index = max(pr.match_index + 1, min(nxt, msg.reject_index))
        pr.state = ProgressState.PROBE
        pr.probe_sent = False
        self._send_append(msg.from_id, heartbeat=False)

    def _on_install_snapshot_response(self, msg: InstallSnapshotResponse) -> None:
        if self.role is not Role.LEADER:
            return
        pr = self._progress[msg.from_id]
        pr.last_contact_ms = self.now_ms
        if pr.state is ProgressState.SNAPSHOT:
            pr.state = ProgressState.PROBE
            pr.probe_sent = False
        self._on_match(msg.from_id, pr, msg.match_index)

    def _on_match(self, peer: int, pr: Progress, match_index: int) -> None:
        if match_index > pr.match_index:
            pr.match_index = match_index
        pr.next_index = max(pr.next_index, pr.match_index + 1)
        if pr.state is ProgressState.PROBE:
            pr.state = ProgressState.REPLICATE
            pr.probe_sent = False
        elif pr.state is ProgressState.SNAPSHOT and pr.match_index >= pr.snapshot_index:
            pr.state = ProgressState.REPLICATE
        self._maybe_commit()
        if pr.state is ProgressState.REPLICATE and pr.next_index <= self._log.last_index:
            self._send_append(peer, heartbeat=False)

    def _commit_allowed(self, index: int) -> bool:
        """§5.4.2: only an entry of the current term commits by counting replicas."""
        return self._log.term(index) == self.term

    def _maybe_commit(self) -> None:
        matches = sorted(
            [self._stable_index] + [self._progress[p].match_index for p in self._peers],
            reverse=True,
        )
        candidate = matches[self._quorum - 1]
        if candidate > self.commit_index and self._commit_allowed(candidate):
            self.commit_index = candidate

    def _quorum_active(self) -> bool:
        t = self.config.election_timeout_ms
        active = 1 + sum(
            1
            for p in self._peers
            if (c := self._progress[p].last_contact_ms) is not None and self.now_ms - c < t
        )
        return active >= self._quorum

    # ---- plumbing ------------------------------------------------------------------------

    def _send(self, msg: RaftMessage) -> None:
        self._outbox.append(msg)

    def _hard_state(self) -> HardState:
        return HardState(term=self.term, voted_for=self.voted_for, commit=self.commit_index)

    def _observe_clock(self, now_ms: int) -> None:
        if now_ms > self.now_ms:
            self.now_ms = now_ms

    def _reset_election_timer(self) -> None:
        t = self.config.election_timeout_ms
        self._election_deadline_ms = self.now_ms + t + self._rng.randrange(t)
