"""Classic consumer-group membership, client side (Kafka's AbstractCoordinator and
ConsumerCoordinator, KAFKA_SEMANTICS.md §6.2-6.5, §6.8).

Theory of operation. The shell (membership_runtime.py) does the I/O; this core decides:

- **Coordinator.** Unknown until FindCoordinator answers; any coordinator error
  (COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR, a failed RPC) forgets it, and the shell finds it
  again before the next group request.
- **Join.** `prepare_join()` runs before each JoinGroup round: a member whose generation was
  reset *loses* its partitions (on_partitions_lost); the eager protocol *revokes* all of them;
  the cooperative protocol revokes only partitions of topics it no longer subscribes to.
  `join_request()` carries one protocol per assignor (in preference order) whose metadata is
  the encoded `Subscription` (cooperative members also send what they own and their
  generation). MEMBER_ID_REQUIRED → join again at once with the member id the coordinator made.
- **Sync.** The leader (`leader == member_id`) decodes every member's subscription, asks the
  shell for the partition count of each subscribed topic, runs the chosen assignor and sends
  all assignments; the others send none. The answer becomes an `AssignmentChange`
  (added / revoked); the cooperative protocol rejoins at once when something was revoked (the
  second phase that hands those partitions to their new owners).
- **Stable.** Heartbeats every heartbeat.interval.ms. REBALANCE_IN_PROGRESS → rejoin (keeping
  partitions until the next `prepare_join`); UNKNOWN_MEMBER_ID / ILLEGAL_GENERATION → reset the
  generation (partitions lost) and rejoin; FENCED_INSTANCE_ID is fatal. No successful heartbeat
  for session.timeout.ms → forget the coordinator.
- **Poll timer.** `on_poll(now_ms)` restarts it. When max.poll.interval.ms passes without a
  poll, a dynamic member leaves the group (LeaveGroup), and every member resets its
  generation; the next poll rejoins (partitions lost).
- **Metadata.** `update_metadata(counts)` re-evaluates a pattern subscription, and the leader
  rejoins when a subscribed topic's partition count differs from the one it assigned.

The core holds no futures, no clock and no sockets: inputs are responses and `now_ms`,
outputs are request specs, `Next` decisions and `AssignmentChange`s.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from clients.consumer.assignors import (
    PartitionAssignor,
    RebalanceProtocol,
    assignor_named,
    choose_protocol,
)
from clients.consumer.protocol import (
    CONSUMER_PROTOCOL_TYPE,
    Assignment,
    Subscription,
    decode_assignment,
    decode_subscription,
    encode_assignment,
    encode_subscription,
)
from clients.errors import CommitFailedError
from clients.types import TopicPartition
from proto.errors import ErrorCode, RafkaError

__all__ = [
    "AssignmentChange",
    "ConsumerGroupMetadata",
    "GroupMembership",
    "HeartbeatSpec",
    "JoinResult",
    "JoinSpec",
    "JoinedMember",
    "LeaveSpec",
    "ListenerCall",
    "ListenerKind",
    "MemberState",
    "Next",
    "SyncSpec",
]

NO_GENERATION = -1
_COORDINATOR_ERRORS = frozenset({
    ErrorCode.COORDINATOR_NOT_AVAILABLE, ErrorCode.NOT_COORDINATOR,
})
_GENERATION_ERRORS = frozenset({ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.ILLEGAL_GENERATION})


class MemberState(Enum):
    UNJOINED = "UNJOINED"  # no JoinGroup in flight; rejoin on the next poll
    JOINING = "JOINING"  # JoinGroup sent
    SYNCING = "SYNCING"  # SyncGroup sent
    STABLE = "STABLE"  # has a generation and an assignment


class Next(Enum):
    """What the shell does after a Join/Sync answer that is not a final assignment."""

    SYNC = "SYNC"  # send SyncGroup (as leader: after `sync_request(partition counts)`)
    JOIN = "JOIN"  # send JoinGroup again now
    JOIN_AFTER_BACKOFF = "JOIN_AFTER_BACKOFF"  # ... after retry.backoff.ms
    FIND_COORDINATOR = "FIND_COORDINATOR"  # find the coordinator, then JoinGroup again
    PREPARE = "PREPARE"  # the generation was reset: back to `prepare_join` (partitions lost)


class ListenerKind(Enum):
    REVOKED = "on_partitions_revoked"
    ASSIGNED = "on_partitions_assigned"
    LOST = "on_partitions_lost"


@dataclass(frozen=True, slots=True)
class ListenerCall:
    """A rebalance-listener callback the façade runs inside poll(), on the user's thread."""

    kind: ListenerKind
    partitions: tuple[TopicPartition, ...]


@dataclass(frozen=True, slots=True)
class ConsumerGroupMetadata:
    """What `Consumer.group_metadata()` returns (for `send_offsets_to_transaction`)."""

    group_id: str
    generation_id: int = NO_GENERATION
    member_id: str = ""
    group_instance_id: str | None = None


@dataclass(frozen=True, slots=True)
class JoinSpec:
    group_id: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    member_id: str
    group_instance_id: str | None
    protocol_type: str
    protocols: tuple[tuple[str, bytes], ...]  # (assignor name, encoded Subscription)
    reason: str


@dataclass(frozen=True, slots=True)
class JoinedMember:
    member_id: str
    group_instance_id: str | None
    metadata: bytes


@dataclass(frozen=True, slots=True)
class JoinResult:
    """A JoinGroup answer, decoded from protobuf by the shell."""

    error_code: int
    generation_id: int = NO_GENERATION
    protocol_name: str | None = None
    leader: str = ""
    member_id: str = ""
    members: tuple[JoinedMember, ...] = ()
    skip_assignment: bool = False
    error_message: str = ""


@dataclass(frozen=True, slots=True)
class SyncSpec:
    group_id: str
    generation_id: int
    member_id: str
    group_instance_id: str | None
    protocol_type: str
    protocol_name: str | None
    assignments: tuple[tuple[str, bytes], ...]  # (member id, encoded Assignment); leader only


@dataclass(frozen=True, slots=True)
class HeartbeatSpec:
    group_id: str
    generation_id: int
    member_id: str
    group_instance_id: str | None


@dataclass(frozen=True, slots=True)
class LeaveSpec:
    group_id: str
    member_id: str
    group_instance_id: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class AssignmentChange:
    """A completed rebalance: the new assignment and how it differs from what was owned."""

    generation_id: int
    assigned: tuple[TopicPartition, ...]
    added: tuple[TopicPartition, ...]
    revoked: tuple[TopicPartition, ...]


@dataclass(slots=True)
class _Leader:
    """What the leader learned from JoinGroup: every member's subscription."""

    protocol_name: str
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    instance_ids: dict[str, str | None] = field(default_factory=dict)


def _sorted(tps: Iterable[TopicPartition]) -> tuple[TopicPartition, ...]:
    return tuple(sorted(set(tps)))


class GroupMembership:
    """One consumer's membership in a classic group (see the module docstring).

    Args:
        group_id / group_instance_id: group.id, group.instance.id (None = dynamic member).
        session_timeout_ms / rebalance_timeout_ms / heartbeat_interval_ms: session.timeout.ms,
            max.poll.interval.ms (also the rebalance timeout), heartbeat.interval.ms.
        assignors: partition.assignment.strategy, in preference order.
        rack_id: client.rack ("" = none), sent in the subscription.
    """

    def __init__(
        self,
        group_id: str,
        *,
        assignors: Sequence[PartitionAssignor],
        session_timeout_ms: int = 45_000,
        rebalance_timeout_ms: int = 300_000,
        heartbeat_interval_ms: int = 3_000,
        group_instance_id: str | None = None,
        rack_id: str = "",
    ) -> None:
        self.group_id = group_id
        self.group_instance_id = group_instance_id
        self.session_timeout_ms = session_timeout_ms
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.max_poll_interval_ms = rebalance_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.assignors = list(assignors)
        self.protocol = choose_protocol(self.assignors)
        self.rack_id = rack_id or None

        # subscription
        self.topics: frozenset[str] = frozenset()  # explicit topics, or the pattern's matches
        self.pattern: re.Pattern[str] | None = None
        self.subscribed = False

        # group state
        self.coordinator: int | None = None
        self.state = MemberState.UNJOINED
        self.generation_id = NO_GENERATION
        self.member_id = ""
        self.protocol_name: str | None = None
        self.leader_id = ""
        self.owned: tuple[TopicPartition, ...] = ()
        self.rejoin_needed = True
        self.rejoin_reason = "initial join"
        self.join_prepared = False
        self.fatal_error: RafkaError | None = None
        self._leader: _Leader | None = None
        self._assigned_counts: dict[str, int] = {}  # leader: partition counts it assigned

        # timers
        self.last_poll_ms: int | None = None
        self.last_heartbeat_sent_ms = 0
        self.last_heartbeat_ok_ms = 0
        self.heartbeat_in_flight = False

        self.rebalances = 0  # completed rebalances (metrics: consumer rebalance count)

    # -- subscription ---------------------------------------------------------------------

    @property
    def cooperative(self) -> bool:
        return self.protocol is RebalanceProtocol.COOPERATIVE

    @property
    def is_static(self) -> bool:
        return self.group_instance_id is not None

    @property
    def is_leader(self) -> bool:
        return bool(self.member_id) and self.leader_id == self.member_id

    def subscribe(self, topics: Iterable[str] = (), pattern: str | re.Pattern[str] | None = None,
                  available: Iterable[str] | None = None) -> None:
        """Subscribe to `topics`, or to every topic matching `pattern` (a full match, as Kafka).

        Args:
            available: topic names known now (to resolve the pattern at once).

        Raises:
            ValueError: both or neither of topics and pattern, or an empty topic name.
        """
        names = frozenset(topics)
        if pattern is not None and names:
            raise ValueError("subscribe() takes topics or a pattern, not both")
        if any(not t for t in names):
            raise ValueError("topic names must not be empty")
        if pattern is None and not names:
            raise ValueError("subscribe() needs topics or a pattern; use unsubscribe() to stop")
        self.pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
        if self.pattern is not None:
            names = self._matching(available or ())
        self.subscribed = True
        self._set_topics(names, "subscription changed")

    def unsubscribe(self) -> None:
        self.subscribed = False
        self.topics = frozenset()
        self.pattern = None

    def _matching(self, available: Iterable[str]) -> frozenset[str]:
        assert self.pattern is not None
        return frozenset(t for t in available
                         if self.pattern.fullmatch(t) and not t.startswith("__"))

    def _set_topics(self, names: frozenset[str], reason: str) -> None:
        if names != self.topics:
            self.topics = names
            if self.state is not MemberState.UNJOINED or self.generation_id != NO_GENERATION:
                self.request_rejoin(reason)

    def metadata_topics(self) -> list[str] | None:
        """Topics whose metadata the member needs (None = all topics, for a pattern)."""
        if self.pattern is not None:
            return None
        wanted = set(self.topics)
        if self.is_leader and self._leader is not None:
            for s in self._leader.subscriptions.values():
                wanted.update(s.topics)
        return sorted(wanted)

    def update_metadata(self, partition_counts: Mapping[str, int]) -> None:
        """New metadata: {topic: partition count} of the topics known now.

        A pattern subscription is re-evaluated; the leader rejoins when a topic it assigned
        changed its partition count (or appeared/disappeared).
        """
        if not self.subscribed:
            return
        if self.pattern is not None:
            self._set_topics(self._matching(partition_counts), "pattern matches changed")
        if self.is_leader and self.state is MemberState.STABLE and self._leader is not None:
            for topic in self.assignment_topics():
                now = partition_counts.get(topic)
                before = self._assigned_counts.get(topic, 0)
                if now is not None and now != before:
                    self.request_rejoin(
                        f"partitions of {topic} changed from {before} to {now}")
                    break

    # -- coordinator ----------------------------------------------------------------------

    def on_coordinator(self, node_id: int, now_ms: int) -> None:
        self.coordinator = node_id
        self.last_heartbeat_ok_ms = now_ms  # a fresh session clock for the new coordinator

    def coordinator_dead(self) -> None:
        self.coordinator = None
        self.heartbeat_in_flight = False

    def on_request_failed(self) -> None:
        """A JoinGroup/SyncGroup RPC failed (unreachable coordinator): find it, join again."""
        self.coordinator_dead()
        self.state = MemberState.UNJOINED
        self.rejoin_needed = True
        self._leader = None

    # -- join -----------------------------------------------------------------------------

    def needs_join(self) -> bool:
        return self.subscribed and (self.rejoin_needed or self.state is MemberState.UNJOINED)

    def request_rejoin(self, reason: str) -> None:
        self.rejoin_needed = True
        self.rejoin_reason = reason

    def has_valid_generation(self) -> bool:
        return self.generation_id != NO_GENERATION and bool(self.member_id)

    def prepare_join(self) -> ListenerCall | None:
        """Before a JoinGroup round: what to give up first (Kafka's onJoinPrepare).

        Returns:
            the callback to run (the partitions are no longer in `owned` already; the shell
            removes them from the consumer's assignment after the callback), or None.
        """
        self.join_prepared = True
        owned = self.owned
        if not owned:
            return None
        if not self.has_valid_generation():
            self.owned = ()
            return ListenerCall(ListenerKind.LOST, owned)
        if not self.cooperative:
            self.owned = ()
            return ListenerCall(ListenerKind.REVOKED, owned)
        gone = tuple(tp for tp in owned if tp.topic not in self.topics)
        if gone:
            self.owned = tuple(tp for tp in owned if tp.topic in self.topics)
            return ListenerCall(ListenerKind.REVOKED, gone)
        return None

    def join_request(self) -> JoinSpec:
        """The JoinGroup to send (state → JOINING)."""
        self.state = MemberState.JOINING
        self.rejoin_needed = False
        owned = self.owned if self.cooperative else ()
        generation = self.generation_id if self.cooperative else NO_GENERATION
        topics = tuple(sorted(self.topics))
        protocols = tuple(
            (a.name, encode_subscription(Subscription(
                topics=topics,
                user_data=a.subscription_user_data(owned, generation),
                owned_partitions=owned,
                generation_id=generation,
                rack_id=self.rack_id,
            )))
            for a in self.assignors
        )
        return JoinSpec(
            group_id=self.group_id,
            session_timeout_ms=self.session_timeout_ms,
            rebalance_timeout_ms=self.rebalance_timeout_ms,
            member_id=self.member_id,
            group_instance_id=self.group_instance_id,
            protocol_type=CONSUMER_PROTOCOL_TYPE,
            protocols=protocols,
            reason=self.rejoin_reason,
        )

    def on_join_response(self, r: JoinResult) -> Next:
        """Handle a JoinGroup answer.

        Raises:
            RafkaError: a fatal error (FENCED_INSTANCE_ID, INCONSISTENT_GROUP_PROTOCOL,
                INVALID_SESSION_TIMEOUT, GROUP_AUTHORIZATION_FAILED, ...).
        """
        code = r.error_code
        if code == ErrorCode.NONE:
            self.generation_id = r.generation_id
            self.member_id = r.member_id
            self.protocol_name = r.protocol_name
            self.leader_id = r.leader
            self.state = MemberState.SYNCING
            self._leader = None
            if self.is_leader and not r.skip_assignment:
                self._leader = self._decode_members(r)
            return Next.SYNC
        self.state = MemberState.UNJOINED
        self.rejoin_needed = True
        if code == ErrorCode.MEMBER_ID_REQUIRED:
            self.member_id = r.member_id
            return Next.JOIN
        if code in _COORDINATOR_ERRORS:
            self.coordinator_dead()
            return Next.FIND_COORDINATOR
        if code in (ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, ErrorCode.REBALANCE_IN_PROGRESS):
            return Next.JOIN_AFTER_BACKOFF
        if code in _GENERATION_ERRORS:
            return self._reset_after(code)
        raise self._fatal(code, r.error_message, "JoinGroup")

    def _decode_members(self, r: JoinResult) -> _Leader:
        if r.protocol_name is None:
            raise RafkaError.for_code(ErrorCode.INCONSISTENT_GROUP_PROTOCOL,
                                      "JoinGroup chose no assignor")
        assignor_named(self.assignors, r.protocol_name)  # raises if unknown here
        leader = _Leader(r.protocol_name)
        for m in r.members:
            leader.subscriptions[m.member_id] = decode_subscription(m.metadata)
            leader.instance_ids[m.member_id] = m.group_instance_id
        return leader

    def assignment_topics(self) -> list[str]:
        """Leader: every topic some member subscribes to (the shell looks up their counts)."""
        if self._leader is None:
            return []
        return sorted({t for s in self._leader.subscriptions.values() for t in s.topics})

    @property
    def must_assign(self) -> bool:
        """True when this member leads the SyncGroup about to be sent."""
        return self.state is MemberState.SYNCING and self._leader is not None

    def sync_request(self, partition_counts: Mapping[str, int] | None = None) -> SyncSpec:
        """The SyncGroup to send; the leader computes every assignment from `partition_counts`
        ({topic: partition count}; unknown topics are left out)."""
        assignments: tuple[tuple[str, bytes], ...] = ()
        if self._leader is not None:
            counts = {t: n for t, n in (partition_counts or {}).items()
                      if t in set(self.assignment_topics()) and n > 0}
            assignor = assignor_named(self.assignors, self._leader.protocol_name)
            result = assignor.assign(counts, self._leader.subscriptions,
                                     self._leader.instance_ids)
            members = sorted(self._leader.subscriptions)
            assignments = tuple(
                (m, encode_assignment(result.get(m, Assignment(()))))
                for m in members
            )
            self._assigned_counts = dict(counts)
        else:
            self._assigned_counts = {}
        return SyncSpec(
            group_id=self.group_id,
            generation_id=self.generation_id,
            member_id=self.member_id,
            group_instance_id=self.group_instance_id,
            protocol_type=CONSUMER_PROTOCOL_TYPE,
            protocol_name=self.protocol_name,
            assignments=assignments,
        )

    def on_sync_response(self, error_code: int, assignment: bytes, now_ms: int,
                         error_message: str = "") -> AssignmentChange | Next:
        """Handle a SyncGroup answer: the new assignment, or what to do next.

        Raises:
            RafkaError: a fatal error, or assignment bytes that do not decode.
        """
        code = error_code
        if code != ErrorCode.NONE:
            self.state = MemberState.UNJOINED
            self.rejoin_needed = True
            self._leader = None
            if code == ErrorCode.REBALANCE_IN_PROGRESS:
                return Next.JOIN
            if code in _COORDINATOR_ERRORS:
                self.coordinator_dead()
                return Next.FIND_COORDINATOR
            if code in _GENERATION_ERRORS:
                return self._reset_after(code)
            raise self._fatal(code, error_message, "SyncGroup")
        new = _sorted(decode_assignment(assignment).partitions)
        old = set(self.owned)
        added = _sorted(set(new) - old)
        revoked = _sorted(old - set(new)) if self.cooperative else ()
        self.owned = new
        self.state = MemberState.STABLE
        self.join_prepared = False
        self.rebalances += 1
        self.last_heartbeat_sent_ms = now_ms
        self.last_heartbeat_ok_ms = now_ms
        if revoked:
            self.request_rejoin("partitions were revoked (cooperative second phase)")
        elif any(tp.topic not in self.topics for tp in new):
            self.request_rejoin("assigned partitions of topics not subscribed")
        else:
            self.rejoin_needed = False
        return AssignmentChange(self.generation_id, new, added, revoked)

    # -- heartbeats -----------------------------------------------------------------------

    def heartbeat_due_ms(self) -> int | None:
        """When the next heartbeat is due, None when none should be sent."""
        if self.state is not MemberState.STABLE or self.coordinator is None \
                or self.heartbeat_in_flight:
            return None
        return self.last_heartbeat_sent_ms + self.heartbeat_interval_ms

    def heartbeat_request(self, now_ms: int) -> HeartbeatSpec:
        self.heartbeat_in_flight = True
        self.last_heartbeat_sent_ms = now_ms
        return HeartbeatSpec(self.group_id, self.generation_id, self.member_id,
                             self.group_instance_id)

    def on_heartbeat_response(self, error_code: int, now_ms: int, generation_id: int,
                              error_message: str = "") -> None:
        """Handle a Heartbeat answer for the generation it was sent with. A fatal error
        (FENCED_INSTANCE_ID) is kept in `fatal_error` for the next poll to raise."""
        self.heartbeat_in_flight = False
        code = error_code
        if generation_id != self.generation_id:
            return  # an answer about an older generation
        if code == ErrorCode.NONE:
            self.last_heartbeat_ok_ms = now_ms
        elif code == ErrorCode.REBALANCE_IN_PROGRESS:
            self.last_heartbeat_ok_ms = now_ms
            self.request_rejoin("the group is rebalancing")
        elif code in _COORDINATOR_ERRORS:
            self.coordinator_dead()
        elif code in _GENERATION_ERRORS:
            self._reset_after(code)
        elif code == ErrorCode.FENCED_INSTANCE_ID:
            self.fatal_error = self._fatal(code, error_message, "Heartbeat")
        # anything else: keep going; the session timeout decides

    def on_heartbeat_failed(self) -> None:
        """The Heartbeat RPC itself failed (unreachable broker)."""
        self.heartbeat_in_flight = False
        self.coordinator_dead()

    def session_expired(self, now_ms: int) -> bool:
        """No successful heartbeat for session.timeout.ms: the coordinator is presumed gone."""
        return (self.state is MemberState.STABLE
                and now_ms - self.last_heartbeat_ok_ms > self.session_timeout_ms)

    # -- poll timer -----------------------------------------------------------------------

    def on_poll(self, now_ms: int) -> None:
        self.last_poll_ms = now_ms

    def poll_deadline_ms(self) -> int | None:
        if self.last_poll_ms is None or not self.subscribed \
                or not self.has_valid_generation():
            return None
        return self.last_poll_ms + self.max_poll_interval_ms

    def check_poll_timeout(self, now_ms: int) -> tuple[bool, LeaveSpec | None]:
        """max.poll.interval.ms passed without a poll: leave (dynamic members) and reset.

        Returns:
            (expired, the LeaveGroup to send: None for a static member, which only waits
            for its session to expire, or when there is nobody to tell).
        """
        deadline = self.poll_deadline_ms()
        if deadline is None or now_ms <= deadline:
            return False, None
        reason = (f"consumer poll timeout has expired: no poll() for more than "
                  f"max.poll.interval.ms={self.max_poll_interval_ms}")
        leave = self.leave_request(reason)
        self._reset(reset_member_id=not self.is_static)
        self.request_rejoin(reason)
        return True, leave

    # -- leaving --------------------------------------------------------------------------

    def leave_request(self, reason: str) -> LeaveSpec | None:
        """The LeaveGroup to send on close/unsubscribe, None for a static member or one that
        has no member id (Kafka's maybeLeaveGroup)."""
        if self.is_static or not self.member_id or self.coordinator is None:
            return None
        return LeaveSpec(self.group_id, self.member_id, self.group_instance_id, reason)

    def on_left(self) -> None:
        """The member left (or closes): forget the generation and the assignment."""
        self._reset(reset_member_id=not self.is_static)
        self.owned = ()
        self.join_prepared = False

    # -- commits --------------------------------------------------------------------------

    def commit_identity(self) -> tuple[int, str, str | None]:
        """(generation, member id, instance id) for OffsetCommit.

        A member of no group (manual assignment with a group.id) commits as a "simple"
        consumer: generation -1 and an empty member id.

        Raises:
            RafkaError: REBALANCE_IN_PROGRESS while the member is (re)joining.
        """
        if not self.subscribed:
            return NO_GENERATION, "", self.group_instance_id
        if self.state is not MemberState.STABLE or not self.has_valid_generation():
            raise RafkaError.for_code(
                ErrorCode.REBALANCE_IN_PROGRESS,
                f"group {self.group_id!r} is rebalancing; poll() to rejoin, then commit")
        return self.generation_id, self.member_id, self.group_instance_id

    def on_commit_error(self, code: int, message: str = "") -> Next:
        """An OffsetCommit error: FIND_COORDINATOR (retry after finding it) or JOIN_AFTER_BACKOFF
        (retriable, retry the commit).

        Raises:
            CommitFailedError: the generation moved on (the member was removed or the group
                rebalanced): the offsets belong to partitions that may now be someone else's.
            RafkaError: REBALANCE_IN_PROGRESS, or a non-retriable error.
        """
        if code in _COORDINATOR_ERRORS:
            self.coordinator_dead()
            return Next.FIND_COORDINATOR
        if code == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS:
            return Next.JOIN_AFTER_BACKOFF
        if code in _GENERATION_ERRORS and self.subscribed:
            name = ErrorCode(code).name
            self._reset_after(code)
            raise CommitFailedError(
                reason=f"{name}: the group rebalanced and this member's generation is no "
                f"longer valid (was poll() called within max.poll.interval.ms?)")
        if code == ErrorCode.REBALANCE_IN_PROGRESS:
            self.request_rejoin("commit saw a rebalance")
        err = RafkaError.for_code(code, message or f"OffsetCommit failed for {self.group_id!r}")
        if err.retriable and code != ErrorCode.REBALANCE_IN_PROGRESS:
            return Next.JOIN_AFTER_BACKOFF
        raise err

    # -- state ----------------------------------------------------------------------------

    def group_metadata(self) -> ConsumerGroupMetadata:
        return ConsumerGroupMetadata(self.group_id, self.generation_id, self.member_id,
                                     self.group_instance_id)

    def _reset_after(self, code: int) -> Next:
        self._reset(reset_member_id=code == ErrorCode.UNKNOWN_MEMBER_ID)
        self.request_rejoin(f"{ErrorCode(code).name}: rejoining with a new generation")
        return Next.PREPARE

    def _reset(self, *, reset_member_id: bool) -> None:
        self.generation_id = NO_GENERATION
        self.protocol_name = None
        self.leader_id = ""
        self._leader = None
        if reset_member_id:
            self.member_id = ""
        self.state = MemberState.UNJOINED
        self.join_prepared = False
        self.heartbeat_in_flight = False

    def _fatal(self, code: int, message: str, api: str) -> RafkaError:
        try:
            name = ErrorCode(code).name
        except ValueError:
            name = str(code)
        return RafkaError.for_code(
            code, message or f"{api} for group {self.group_id!r} failed: {name}")
