"""`Group`: one classic consumer group's state machine (KAFKA_SEMANTICS §6.2–6.5).

Theory of operation
-------------------
Kafka's classic `GroupMetadata` + the group parts of `GroupCoordinator`, without locks,
timers or callbacks. States: Empty → PreparingRebalance → CompletingRebalance → Stable (and
back), Dead once deleted. Requests come in with a shell-chosen request id and `now_ms`; the
group writes what it decides into an `Effects`:
- `responses`: (request id, result) pairs ready now. A JoinGroup or SyncGroup that must wait is
  *parked* on its member (`awaiting_join` / `awaiting_sync` hold the request id) and answered by
  a later call (another member's join, a leave, `tick`, `on_stored`), like Kafka's purgatory.
- `stores`: group metadata the coordinator must append to `__consumer_offsets` (acks=all)
  before the dependent answers go out (`StoreGroup`); the result comes back via `on_stored`.

Rebalance rules (Kafka's): a join with an empty member id gets MEMBER_ID_REQUIRED and a new id
(the member is *pending* until it joins with it, bounded by its session timeout); a join, leave,
expiry or metadata change moves a Stable/CompletingRebalance/Empty group to PreparingRebalance.
The join phase ends when every member rejoined and no member is pending, or at the deadline:
the largest rebalance timeout, or for an Empty group `group.initial.rebalance.delay.ms`
extended while new members keep arriving (InitialDelayedJoin). At the end dynamic members that
did not rejoin are removed, the generation increments, the protocol with most votes among
those every member supports is chosen, the leader (the first member; another rejoined member
if it did not rejoin) gets every member's metadata. Every member must then SyncGroup within
the rebalance timeout or is removed. The leader's assignment is stored, then handed out →
Stable. Static members (group.instance.id) rejoining with a new id replace the old id (fenced:
FENCED_INSTANCE_ID) and, while Stable with an unchanged protocol, keep their assignment with no
rebalance (KIP-345; skip_assignment for a leader, KIP-814). Session expiry: a member that is not
waiting in a join or sync and has not heartbeated for session.timeout.ms is removed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum

from cluster.group.messages import (
    DescribedGroup,
    DescribedMember,
    Heartbeat,
    HeartbeatResult,
    JoinedMember,
    JoinGroup,
    JoinGroupResult,
    LeaveGroupResult,
    LeavingMember,
    LeftMember,
    SyncGroup,
    SyncGroupResult,
)
from proto.errors import ErrorCode

log = logging.getLogger(__name__)

NEW_MEMBER_JOIN_TIMEOUT_MS = 5 * 60 * 1000  # Kafka's GroupCoordinator.NewMemberJoinTimeoutMs


class GroupState(Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


@dataclass(frozen=True, slots=True)
class GroupConfig:
    """The broker's group.* / offsets.* settings the cores use."""

    initial_rebalance_delay_ms: int = 3000
    min_session_timeout_ms: int = 6000
    max_session_timeout_ms: int = 1_800_000
    max_size: int = 2**31 - 1
    num_partitions: int = 50
    offsets_retention_ms: int = 10080 * 60_000
    offsets_retention_check_interval_ms: int = 600_000
    offset_metadata_max_bytes: int = 4096


@dataclass(slots=True)
class OffsetAndMetadata:
    offset: int
    leader_epoch: int = -1
    metadata: str = ""
    commit_timestamp_ms: int = -1
    expire_timestamp_ms: int = -1


@dataclass(slots=True)
class Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    protocol_type: str
    protocols: tuple[tuple[str, bytes], ...]
    assignment: bytes = b""
    awaiting_join: int | None = None
    awaiting_sync: int | None = None
    is_new: bool = False
    heartbeat_deadline_ms: int = 0

    def protocol_names(self) -> list[str]:
        return [name for name, _ in self.protocols]

    def metadata(self, protocol: str | None) -> bytes:
        for name, data in self.protocols:
            if name == protocol:
                return data
        return b""

    def vote(self, candidates: set[str]) -> str:
        return next(name for name, _ in self.protocols if name in candidates)

    def expired(self, now_ms: int) -> bool:
        if not self.is_new and (self.awaiting_join is not None or self.awaiting_sync is not None):
            return False  # waiting in a rebalance counts as alive (Kafka's hasSatisfiedHeartbeat)
        return now_ms >= self.heartbeat_deadline_ms


class StoreKind(Enum):
    SYNC = "sync"  # the leader's assignment: answer the syncs once stored
    STATIC_JOIN = "static-join"  # a static member replaced its id while Stable
    EMPTY = "empty"  # the group became Empty: stored, nobody waits


@dataclass(frozen=True, slots=True)
class StoreGroup:
    group_id: str
    kind: StoreKind
    generation: int
    assignment: dict[str, bytes] = field(default_factory=dict)
    request_id: int | None = None  # STATIC_JOIN: the join to answer
    member_id: str = ""  # STATIC_JOIN: the new member id
    previous: Member | None = None  # STATIC_JOIN: the old member, to revert to on failure


@dataclass(slots=True)
class Effects:
    responses: list[tuple[int, object]] = field(default_factory=list)
    stores: list[StoreGroup] = field(default_factory=list)

    def respond(self, request_id: int | None, result: object) -> None:
        if request_id is not None:
            self.responses.append((request_id, result))


def _join_error(code: ErrorCode, message: str, member_id: str = "") -> JoinGroupResult:
    return JoinGroupResult(code, message, member_id=member_id)


class Group:
    """One classic group; see the module docstring."""

    def __init__(self, group_id: str, partition: int, config: GroupConfig, now_ms: int) -> None:
        self.group_id = group_id
        self.partition = partition
        self.config = config
        self.state = GroupState.EMPTY
        self.state_timestamp_ms = now_ms
        self.protocol_type: str | None = None
        self.protocol_name: str | None = None
        self.generation = 0
        self.leader_id: str | None = None
        self.members: dict[str, Member] = {}
        self.static_members: dict[str, str] = {}  # group.instance.id → member id
        self.pending_members: dict[str, int] = {}  # MEMBER_ID_REQUIRED ids → expiry
        self.pending_sync: set[str] = set()
        self.join_deadline_ms: int | None = None
        self.sync_deadline_ms: int | None = None
        self._initial_delay = False
        self._initial_remaining_ms = 0
        self._new_member_added = False
        self.offsets: dict[tuple[str, int], OffsetAndMetadata] = {}
        self.rebalances = 0  # completed join phases (for the rebalance metrics)
        self.reported_rebalances = 0  # the part already added to the coordinator's counter

    # -- queries --

    def is_(self, *states: GroupState) -> bool:
        return self.state in states

    def has_member(self, member_id: str) -> bool:
        return member_id in self.members

    def _transition(self, state: GroupState, now_ms: int) -> None:
        self.state = state
        self.state_timestamp_ms = now_ms

    def _fenced(self, instance_id: str | None, member_id: str) -> bool:
        if instance_id is None:
            return False
        existing = self.static_members.get(instance_id)
        return existing is not None and existing != member_id

    def rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    def supports(self, protocol_type: str, names: list[str]) -> bool:
        if self.state is GroupState.EMPTY:
            return bool(protocol_type) and bool(names)
        if protocol_type != self.protocol_type:
            return False
        return any(all(n in m.protocol_names() for m in self.members.values()) for n in names)

    def select_protocol(self) -> str:
        members = list(self.members.values())
        candidates = set(members[0].protocol_names())
        for m in members[1:]:
            candidates &= set(m.protocol_names())
        if not candidates:  # members changed protocols mid-rebalance: the first one's choice
            return members[0].protocols[0][0]
        votes: dict[str, int] = {}  # insertion order: the earliest vote wins a tie
        for m in members:
            choice = m.vote(candidates)
            votes[choice] = votes.get(choice, 0) + 1
        best = max(votes.values())
        return next(name for name, n in votes.items() if n == best)

    def next_deadline_ms(self) -> int | None:
        deadlines = [d for d in (self.join_deadline_ms, self.sync_deadline_ms) if d is not None]
        deadlines += self.pending_members.values()
        deadlines += (m.heartbeat_deadline_ms for m in self.members.values())
        return min(deadlines, default=None)

    def describe(self) -> DescribedGroup:
        stable = self.state is GroupState.STABLE
        members = tuple(
            DescribedMember(m.member_id, m.group_instance_id, m.client_id, m.client_host,
                            m.metadata(self.protocol_name) if stable else b"",
                            m.assignment if stable else b"")
            for m in self.members.values())
        return DescribedGroup(self.group_id, ErrorCode.NONE, "", self.state.value,
                              self.protocol_type or "",
                              (self.protocol_name or "") if stable else "", members)

    # -- JoinGroup --

    def join(self, request_id: int, req: JoinGroup, now_ms: int, fx: Effects,
             new_id: Callable[[str], str]) -> None:
        if self.state is GroupState.DEAD:
            fx.respond(request_id, _join_error(ErrorCode.COORDINATOR_NOT_AVAILABLE,
                                               f"group {self.group_id} is being deleted",
                                               req.member_id))
            return
        names = [name for name, _ in req.protocols]
        if not self.supports(req.protocol_type, names):
            fx.respond(request_id, _join_error(
                ErrorCode.INCONSISTENT_GROUP_PROTOCOL,
                f"protocol type {req.protocol_type!r} / protocols {names} are not supported by "
                f"every member of group {self.group_id}", req.member_id))
            return
        known_static = (req.group_instance_id is not None
                        and req.group_instance_id in self.static_members)
        is_new = (req.member_id not in self.members and req.member_id not in self.pending_members
                  and not known_static)
        if is_new and len(self.members) + len(self.pending_members) >= self.config.max_size:
            fx.respond(request_id, _join_error(
                ErrorCode.GROUP_MAX_SIZE_REACHED,
                f"group {self.group_id} has reached group.max.size={self.config.max_size}",
                req.member_id))
            return
        if req.member_id == "":
            self._join_unknown(request_id, req, now_ms, fx, new_id)
        else:
            self._join_known(request_id, req, now_ms, fx)
        self._try_complete_join(now_ms, fx)

    def _join_unknown(self, request_id: int, req: JoinGroup, now_ms: int, fx: Effects,
                      new_id: Callable[[str], str]) -> None:
        instance = req.group_instance_id
        member_id = new_id(instance if instance is not None else req.client_id)
        if instance is not None:
            old_id = self.static_members.get(instance)
            if old_id is not None:
                self._replace_static(request_id, req, old_id, member_id, now_ms, fx)
            else:
                self._add_member_and_rebalance(request_id, member_id, req, now_ms, fx)
            return
        # KIP-394: the member must come back with this id, so a lost response leaves no ghost.
        self.pending_members[member_id] = now_ms + req.session_timeout_ms
        fx.respond(request_id, _join_error(ErrorCode.MEMBER_ID_REQUIRED,
                                           "rejoin with the given member id", member_id))

    def _join_known(self, request_id: int, req: JoinGroup, now_ms: int, fx: Effects) -> None:
        member_id = req.member_id
        if member_id in self.pending_members:
            del self.pending_members[member_id]
            self._add_member_and_rebalance(request_id, member_id, req, now_ms, fx)
            return
        if self._fenced(req.group_instance_id, member_id):
            fx.respond(request_id, _join_error(
                ErrorCode.FENCED_INSTANCE_ID,
                f"instance {req.group_instance_id} is now member "
                f"{self.static_members.get(req.group_instance_id or '')}", member_id))
            return
        member = self.members.get(member_id)
        if member is None or self.state in (GroupState.EMPTY, GroupState.DEAD):
            fx.respond(request_id, _join_error(
                ErrorCode.UNKNOWN_MEMBER_ID,
                f"member {member_id} is not in group {self.group_id}", member_id))
            return
        if self.state is GroupState.PREPARING_REBALANCE:
            self._update_member(member, req, request_id, fx)
        elif self.state is GroupState.COMPLETING_REBALANCE:
            if member.protocols == req.protocols:
                # The member lost our join response: answer again for this generation.
                fx.respond(request_id, self._join_result(member, skip_assignment=False))
            else:
                self._update_member(member, req, request_id, fx)
                self._prepare_rebalance(now_ms, fx)
        else:  # STABLE
            if member_id == self.leader_id or member.protocols != req.protocols:
                self._update_member(member, req, request_id, fx)
                self._prepare_rebalance(now_ms, fx)
            else:
                fx.respond(request_id, self._join_result(member, skip_assignment=False,
                                                         with_members=False))

    def _update_member(self, member: Member, req: JoinGroup, request_id: int,
                       fx: Effects) -> None:
        if member.awaiting_join is not None and member.awaiting_join != request_id:
            fx.respond(member.awaiting_join, _join_error(
                ErrorCode.REBALANCE_IN_PROGRESS, "superseded by a newer JoinGroup",
                member.member_id))
        member.protocols = req.protocols
        member.rebalance_timeout_ms = req.rebalance_timeout_ms
        member.session_timeout_ms = req.session_timeout_ms
        member.awaiting_join = request_id

    def _add_member_and_rebalance(self, request_id: int, member_id: str, req: JoinGroup,
                                  now_ms: int, fx: Effects) -> None:
        member = Member(member_id, req.group_instance_id, req.client_id, req.client_host,
                        req.rebalance_timeout_ms, req.session_timeout_ms, req.protocol_type,
                        req.protocols, awaiting_join=request_id, is_new=True,
                        heartbeat_deadline_ms=now_ms + max(NEW_MEMBER_JOIN_TIMEOUT_MS,
                                                           req.session_timeout_ms))
        if self.state is GroupState.PREPARING_REBALANCE and self.generation == 0:
            self._new_member_added = True
        if not self.members:
            self.protocol_type = req.protocol_type
        self.members[member_id] = member
        if req.group_instance_id is not None:
            self.static_members[req.group_instance_id] = member_id
        if self.leader_id is None:
            self.leader_id = member_id
        self._maybe_prepare_rebalance(now_ms, fx)

    def _replace_static(self, request_id: int, req: JoinGroup, old_id: str, new_id: str,
                        now_ms: int, fx: Effects) -> None:
        old = self.members[old_id]
        fenced = _join_error(ErrorCode.FENCED_INSTANCE_ID,
                             f"instance {req.group_instance_id} rejoined as {new_id}", old_id)
        fx.respond(old.awaiting_join, fenced)
        fx.respond(old.awaiting_sync, SyncGroupResult(ErrorCode.FENCED_INSTANCE_ID,
                                                      fenced.message))
        previous = replace(old, awaiting_join=None, awaiting_sync=None)
        member = self._rename(old_id, new_id)
        member.client_id, member.client_host = req.client_id, req.client_host
        member.protocols = req.protocols
        member.rebalance_timeout_ms = req.rebalance_timeout_ms
        member.session_timeout_ms = req.session_timeout_ms
        member.awaiting_join = member.awaiting_sync = None
        member.heartbeat_deadline_ms = now_ms + req.session_timeout_ms
        if self.state is GroupState.STABLE:
            if self.protocol_name == self.select_protocol():
                # Same protocol: keep the assignment, no rebalance; answer once stored.
                fx.stores.append(StoreGroup(
                    self.group_id, StoreKind.STATIC_JOIN, self.generation,
                    {m.member_id: m.assignment for m in self.members.values()},
                    request_id=request_id, member_id=new_id, previous=previous))
                return
            member.awaiting_join = request_id
            self._prepare_rebalance(now_ms, fx)
        elif self.state is GroupState.COMPLETING_REBALANCE:
            # The leader may have assigned to the old id: rebalance so nothing is lost.
            member.awaiting_join = request_id
            self._prepare_rebalance(now_ms, fx)
        else:  # PREPARING_REBALANCE
            member.awaiting_join = request_id

    def _rename(self, old_id: str, new_id: str) -> Member:
        member = self.members.pop(old_id)
        member.member_id = new_id
        self.members[new_id] = member
        if member.group_instance_id is not None:
            self.static_members[member.group_instance_id] = new_id
        if self.leader_id == old_id:
            self.leader_id = new_id
        if old_id in self.pending_sync:
            self.pending_sync.discard(old_id)
            self.pending_sync.add(new_id)
        return member

    def on_static_join_stored(self, store: StoreGroup, error: ErrorCode, message: str,
                              fx: Effects) -> None:
        member = self.members.get(store.member_id)
        if error is not ErrorCode.NONE:
            if member is not None and store.previous is not None:
                restored = self._rename(store.member_id, store.previous.member_id)
                restored.protocols = store.previous.protocols
                restored.client_id = store.previous.client_id
                restored.client_host = store.previous.client_host
                restored.rebalance_timeout_ms = store.previous.rebalance_timeout_ms
                restored.session_timeout_ms = store.previous.session_timeout_ms
            fx.respond(store.request_id, _join_error(error, message, store.member_id))
            return
        if member is None:
            fx.respond(store.request_id, _join_error(
                ErrorCode.UNKNOWN_MEMBER_ID, f"member {store.member_id} left meanwhile",
                store.member_id))
            return
        is_leader = member.member_id == self.leader_id
        fx.respond(store.request_id, self._join_result(member, skip_assignment=is_leader,
                                                       with_members=is_leader))

    def _join_result(self, member: Member, *, skip_assignment: bool,
                     with_members: bool | None = None) -> JoinGroupResult:
        if with_members is None:
            with_members = member.member_id == self.leader_id
        members = tuple(JoinedMember(m.member_id, m.group_instance_id,
                                     m.metadata(self.protocol_name))
                        for m in self.members.values()) if with_members else ()
        return JoinGroupResult(ErrorCode.NONE, "", self.generation, self.protocol_type,
                               self.protocol_name, self.leader_id or "", skip_assignment,
                               member.member_id, members)

    # -- rebalance phases --

    def _maybe_prepare_rebalance(self, now_ms: int, fx: Effects) -> None:
        if self.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE, GroupState.EMPTY):
            self._prepare_rebalance(now_ms, fx)

    def _prepare_rebalance(self, now_ms: int, fx: Effects) -> None:
        log.info("group %s: preparing to rebalance in state %s (generation %d, %d members)",
                 self.group_id, self.state.value, self.generation, len(self.members))
        if self.state is GroupState.COMPLETING_REBALANCE:
            self._reset_assignment(ErrorCode.REBALANCE_IN_PROGRESS,
                                   "the group is rebalancing: rejoin", fx)
        self.pending_sync.clear()
        self.sync_deadline_ms = None
        if self.state is GroupState.EMPTY:
            delay = self.config.initial_rebalance_delay_ms
            self._initial_delay = True
            self._initial_remaining_ms = max(self.rebalance_timeout_ms() - delay, 0)
            self.join_deadline_ms = now_ms + delay
        else:
            self._initial_delay = False
            self.join_deadline_ms = now_ms + self.rebalance_timeout_ms()
        self._transition(GroupState.PREPARING_REBALANCE, now_ms)
        self._try_complete_join(now_ms, fx)

    def _reset_assignment(self, error: ErrorCode, message: str, fx: Effects) -> None:
        for m in self.members.values():
            m.assignment = b""
            if m.awaiting_sync is not None:
                fx.respond(m.awaiting_sync, SyncGroupResult(error, message))
                m.awaiting_sync = None

    def _all_joined(self) -> bool:
        return (not self.pending_members
                and all(m.awaiting_join is not None for m in self.members.values()))

    def _try_complete_join(self, now_ms: int, fx: Effects) -> None:
        if (self.state is GroupState.PREPARING_REBALANCE and not self._initial_delay
                and self._all_joined()):
            self._complete_join(now_ms, fx)

    def _on_join_deadline(self, now_ms: int, fx: Effects) -> None:
        if self._initial_delay and self._new_member_added and self._initial_remaining_ms > 0:
            self._new_member_added = False
            delay = min(self.config.initial_rebalance_delay_ms, self._initial_remaining_ms)
            self._initial_remaining_ms = max(self._initial_remaining_ms - delay, 0)
            self.join_deadline_ms = now_ms + delay
            return
        self._complete_join(now_ms, fx)

    def _complete_join(self, now_ms: int, fx: Effects) -> None:
        self.join_deadline_ms = None
        self._initial_delay = False
        for m in [m for m in self.members.values()
                  if m.awaiting_join is None and m.group_instance_id is None]:
            log.info("group %s: member %s did not rejoin in time; removed", self.group_id,
                     m.member_id)
            self._remove(m.member_id)  # did not rejoin within the rebalance timeout
        leader = self.members.get(self.leader_id or "")
        if leader is not None and leader.awaiting_join is None:
            self.leader_id = next((m.member_id for m in self.members.values()
                                   if m.awaiting_join is not None), None)
        if self.members and self.leader_id is None:
            # Only static members that did not rejoin: wait for them or their session expiry.
            self.join_deadline_ms = now_ms + self.rebalance_timeout_ms()
            return
        self.generation += 1
        self.rebalances += 1
        if not self.members:
            self.protocol_name = None  # the protocol type stays (Kafka's initNextGeneration)
            self.leader_id = None
            self._transition(GroupState.EMPTY, now_ms)
            fx.stores.append(StoreGroup(self.group_id, StoreKind.EMPTY, self.generation))
            return
        self.protocol_name = self.select_protocol()
        self._transition(GroupState.COMPLETING_REBALANCE, now_ms)
        log.info("group %s: generation %d with %d members, protocol %s, leader %s",
                 self.group_id, self.generation, len(self.members), self.protocol_name,
                 self.leader_id)
        for m in self.members.values():
            if m.awaiting_join is not None:
                fx.respond(m.awaiting_join, self._join_result(m, skip_assignment=False))
                m.awaiting_join = None
            m.is_new = False
            m.heartbeat_deadline_ms = now_ms + m.session_timeout_ms
        self.pending_sync = set(self.members)
        self.sync_deadline_ms = now_ms + self.rebalance_timeout_ms()

    def _on_sync_deadline(self, now_ms: int, fx: Effects) -> None:
        self.sync_deadline_ms = None
        if self.state not in (GroupState.COMPLETING_REBALANCE, GroupState.STABLE):
            return
        late = sorted(self.pending_sync)
        self.pending_sync.clear()
        if not late:
            return
        for member_id in late:  # no SyncGroup within the rebalance timeout
            member = self.members.get(member_id)
            if member is not None:
                fx.respond(member.awaiting_join, _join_error(ErrorCode.UNKNOWN_MEMBER_ID,
                                                             "removed", member_id))
                self._remove(member_id)
        self._maybe_prepare_rebalance(now_ms, fx)

    # -- SyncGroup --

    def sync(self, request_id: int, req: SyncGroup, now_ms: int, fx: Effects) -> None:
        error = self._check_member(req.member_id, req.group_instance_id, req.generation_id)
        if error is None and req.protocol_type is not None \
                and req.protocol_type != self.protocol_type:
            error = (ErrorCode.INCONSISTENT_GROUP_PROTOCOL,
                     f"protocol type {req.protocol_type!r} != {self.protocol_type!r}")
        if error is None and req.protocol_name is not None \
                and req.protocol_name != self.protocol_name:
            error = (ErrorCode.INCONSISTENT_GROUP_PROTOCOL,
                     f"protocol {req.protocol_name!r} != {self.protocol_name!r}")
        if error is None and self.state is GroupState.PREPARING_REBALANCE:
            error = (ErrorCode.REBALANCE_IN_PROGRESS, "the group is rebalancing: rejoin")
        if error is not None:
            fx.respond(request_id, SyncGroupResult(error[0], error[1]))
            return
        member = self.members[req.member_id]
        member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms
        self.pending_sync.discard(member.member_id)
        if self.state is GroupState.STABLE:
            fx.respond(request_id, SyncGroupResult(ErrorCode.NONE, "", self.protocol_type,
                                                   self.protocol_name, member.assignment))
            return
        # CompletingRebalance: park until the leader's assignment is stored.
        if member.awaiting_sync is not None:
            fx.respond(member.awaiting_sync, SyncGroupResult(
                ErrorCode.REBALANCE_IN_PROGRESS, "superseded by a newer SyncGroup"))
        member.awaiting_sync = request_id
        if member.member_id == self.leader_id:
            given = dict(req.assignments)
            assignment = {m: given.get(m, b"") for m in self.members}
            fx.stores.append(StoreGroup(self.group_id, StoreKind.SYNC, self.generation,
                                        assignment))

    def on_sync_stored(self, store: StoreGroup, error: ErrorCode, message: str, now_ms: int,
                       fx: Effects) -> None:
        if self.state is not GroupState.COMPLETING_REBALANCE \
                or self.generation != store.generation:
            return  # the group moved on; its syncs were answered then
        if error is not ErrorCode.NONE:
            self._reset_assignment(error, message, fx)
            self._maybe_prepare_rebalance(now_ms, fx)
            return
        for m in self.members.values():
            m.assignment = store.assignment.get(m.member_id, b"")
            m.heartbeat_deadline_ms = now_ms + m.session_timeout_ms
            if m.awaiting_sync is not None:
                fx.respond(m.awaiting_sync, SyncGroupResult(
                    ErrorCode.NONE, "", self.protocol_type, self.protocol_name, m.assignment))
                m.awaiting_sync = None
        self._transition(GroupState.STABLE, now_ms)

    def _check_member(self, member_id: str, instance_id: str | None,
                      generation: int) -> tuple[ErrorCode, str] | None:
        if self.state is GroupState.DEAD:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, f"group {self.group_id} is being deleted"
        if self._fenced(instance_id, member_id):
            current = self.static_members[instance_id or ""]
            return ErrorCode.FENCED_INSTANCE_ID, f"instance {instance_id} is now member {current}"
        if member_id not in self.members:
            return (ErrorCode.UNKNOWN_MEMBER_ID,
                    f"member {member_id!r} is not in group {self.group_id}")
        if generation != self.generation:
            return (ErrorCode.ILLEGAL_GENERATION,
                    f"generation {generation} is not the group's {self.generation}")
        if self.state is GroupState.EMPTY:
            return ErrorCode.UNKNOWN_MEMBER_ID, f"group {self.group_id} is empty"
        return None

    # -- Heartbeat --

    def heartbeat(self, req: Heartbeat, now_ms: int) -> HeartbeatResult:
        error = self._check_member(req.member_id, req.group_instance_id, req.generation_id)
        if error is not None:
            return HeartbeatResult(error[0], error[1])
        member = self.members[req.member_id]
        member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms
        if self.state is GroupState.PREPARING_REBALANCE:
            return HeartbeatResult(ErrorCode.REBALANCE_IN_PROGRESS,
                                   "the group is rebalancing: rejoin")
        return HeartbeatResult(ErrorCode.NONE)

    # -- LeaveGroup --

    def leave(self, members: tuple[LeavingMember, ...], now_ms: int,
              fx: Effects) -> LeaveGroupResult:
        if self.state is GroupState.DEAD:
            return LeaveGroupResult(ErrorCode.COORDINATOR_NOT_AVAILABLE,
                                    f"group {self.group_id} is being deleted")
        results = []
        for leaving in members:
            member_id, instance = leaving.member_id, leaving.group_instance_id
            code, message = ErrorCode.NONE, ""
            if member_id == "":
                found = self.static_members.get(instance) if instance is not None else None
                if found is None:
                    code, message = ErrorCode.UNKNOWN_MEMBER_ID, f"unknown instance {instance}"
                else:
                    self.remove_member_and_update(found, now_ms, fx)
            elif member_id in self.pending_members:
                del self.pending_members[member_id]
                self._try_complete_join(now_ms, fx)
            elif self._fenced(instance, member_id):
                code, message = ErrorCode.FENCED_INSTANCE_ID, f"instance {instance} was fenced"
            elif member_id not in self.members:
                code, message = ErrorCode.UNKNOWN_MEMBER_ID, f"unknown member {member_id}"
            else:
                self.remove_member_and_update(member_id, now_ms, fx)
            results.append(LeftMember(member_id, instance, code, message))
        return LeaveGroupResult(ErrorCode.NONE, "", tuple(results))

    def remove_member_and_update(self, member_id: str, now_ms: int, fx: Effects) -> None:
        member = self.members[member_id]
        gone = f"member {member_id} left group {self.group_id}"
        fx.respond(member.awaiting_join, _join_error(ErrorCode.UNKNOWN_MEMBER_ID, gone,
                                                     member_id))
        fx.respond(member.awaiting_sync, SyncGroupResult(ErrorCode.UNKNOWN_MEMBER_ID, gone))
        self._remove(member_id)
        if self.state is GroupState.PREPARING_REBALANCE:
            self._try_complete_join(now_ms, fx)
        else:
            self._maybe_prepare_rebalance_unless_empty(now_ms, fx)

    def _maybe_prepare_rebalance_unless_empty(self, now_ms: int, fx: Effects) -> None:
        if self.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            self._prepare_rebalance(now_ms, fx)

    def _remove(self, member_id: str) -> None:
        member = self.members.pop(member_id)
        if member.group_instance_id is not None \
                and self.static_members.get(member.group_instance_id) == member_id:
            del self.static_members[member.group_instance_id]
        self.pending_sync.discard(member_id)
        if self.leader_id == member_id:
            self.leader_id = next(iter(self.members), None)

    # -- offsets --

    def validate_commit(self, member_id: str, instance_id: str | None,
                        generation: int, now_ms: int) -> tuple[ErrorCode, str] | None:
        """Kafka's ClassicGroup.validateOffsetCommit; a valid member also heartbeats."""
        if self.state is GroupState.DEAD:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, f"group {self.group_id} is being deleted"
        if generation < 0 and self.state is GroupState.EMPTY:
            return None  # admin or manual-assignment commit to a group without members
        if generation >= 0 or member_id or instance_id is not None:
            if self._fenced(instance_id, member_id):
                return ErrorCode.FENCED_INSTANCE_ID, f"instance {instance_id} was fenced"
            if member_id not in self.members:
                return (ErrorCode.UNKNOWN_MEMBER_ID,
                        f"member {member_id!r} is not in group {self.group_id}")
            if generation != self.generation:
                return (ErrorCode.ILLEGAL_GENERATION,
                        f"generation {generation} is not the group's {self.generation}")
        elif self.state is not GroupState.EMPTY:
            return (ErrorCode.UNKNOWN_MEMBER_ID,
                    f"group {self.group_id} has members: commit with a member id and generation")
        if self.state is GroupState.COMPLETING_REBALANCE:
            return ErrorCode.REBALANCE_IN_PROGRESS, "the group is completing a rebalance"
        member = self.members.get(member_id)
        if member is not None:
            member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms
        return None

    # -- timers --

    def tick(self, now_ms: int, fx: Effects) -> None:
        for member_id, deadline in sorted(self.pending_members.items()):
            if now_ms >= deadline:
                del self.pending_members[member_id]
                self._try_complete_join(now_ms, fx)
        for member in list(self.members.values()):
            if member.member_id in self.members and member.expired(now_ms):
                log.info("group %s: member %s expired (session.timeout.ms=%d)", self.group_id,
                         member.member_id, member.session_timeout_ms)
                self.remove_member_and_update(member.member_id, now_ms, fx)
        if self.join_deadline_ms is not None and now_ms >= self.join_deadline_ms \
                and self.state is GroupState.PREPARING_REBALANCE:
            self._on_join_deadline(now_ms, fx)
        if self.sync_deadline_ms is not None and now_ms >= self.sync_deadline_ms:
            self._on_sync_deadline(now_ms, fx)

    # -- load from __consumer_offsets --

    def load_members(self, protocol_type: str, generation: int, protocol: str | None,
                     leader: str | None, timestamp_ms: int, members: list[Member],
                     now_ms: int) -> None:
        """Replace the membership with a stored GroupMetadataValue (replay)."""
        self.protocol_type = protocol_type or None
        self.generation = generation
        self.protocol_name = protocol
        self.members = {m.member_id: m for m in members}
        self.static_members = {m.group_instance_id: m.member_id for m in members
                               if m.group_instance_id is not None}
        self.leader_id = leader if leader in self.members else next(iter(self.members), None)
        self.pending_members.clear()
        self.pending_sync.clear()
        self.join_deadline_ms = self.sync_deadline_ms = None
        self.state = GroupState.STABLE if members else GroupState.EMPTY
        self.state_timestamp_ms = timestamp_ms if timestamp_ms >= 0 else now_ms

    def start_sessions(self, now_ms: int) -> None:
        """After a load: every member gets a fresh session (Kafka schedules them on load)."""
        for m in self.members.values():
            m.heartbeat_deadline_ms = now_ms + m.session_timeout_ms

    def abandon(self, request_id: int, now_ms: int) -> bool:
        """The client gave up on a parked join/sync (its RPC was cancelled: it died or timed
        out). The member no longer counts as waiting, so its session timeout applies again,
        from now: a killed member leaves within session.timeout.ms, not the rebalance
        timeout. (Kafka cannot see this; a consumer that retries simply rejoins.)"""
        for m in self.members.values():
            if request_id in (m.awaiting_join, m.awaiting_sync):
                if m.awaiting_join == request_id:
                    m.awaiting_join = None
                else:
                    m.awaiting_sync = None
                m.is_new = False
                m.heartbeat_deadline_ms = now_ms + m.session_timeout_ms
                return True
        return False

    def fail_waiters(self, error: ErrorCode, message: str, fx: Effects) -> None:
        """Answer every parked join and sync (the partition is being unloaded)."""
        for m in self.members.values():
            fx.respond(m.awaiting_join, _join_error(error, message, m.member_id))
            fx.respond(m.awaiting_sync, SyncGroupResult(error, message))
            m.awaiting_join = m.awaiting_sync = None
