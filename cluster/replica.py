"""One partition replica on one broker: leader HW, ISR, acks=all and follower truncation.

Theory of operation
-------------------
`PartitionReplica` is Kafka's `Partition` with the log taken out. It owns the replication
decisions of one partition on one broker and nothing else: no log, no file, no socket, no clock.
The shell feeds it metadata, local log end offsets, follower fetches, AlterPartition results and
`now_ms`; it answers with frozen dataclasses (HW changes, fetch decisions, AlterPartition asks,
truncations, delayed-produce completions).

Roles (moved only by committed metadata, i.e. `become_leader` / `become_follower`, or `close`):

    NONE --become_leader--> LEADER --become_follower--> FOLLOWER --become_leader--> LEADER
      \\--become_follower--> FOLLOWER                   any --close--> CLOSED

A registration older than the one applied (lower leader epoch, or same leader epoch and lower
partition epoch) is ignored (KIP-320 fencing of stale metadata).

Leader side
- Per follower a `ReplicaState` (Kafka's `ReplicaState`): LEO learnt from the fetch offset, last
  fetch time, last caught-up time, the leader LEO at the last fetch, broker epoch.
  `is_caught_up` is Kafka's `ReplicaState.isCaughtUp` (two-fetch rule, §4.5).
- `high_watermark` = min LEO over the leader and the *maximal* ISR (committed ISR plus additions
  in flight, KIP-497), plus caught-up eligible followers about to join
  (`Partition.maybeIncrementLeaderHW`). It never decreases while we lead, and it is frozen
  while |committed ISR| < min(min.insync.replicas, RF) (Kafka 3.7+, KAFKA-15583).
- acks=all: `check_produce` refuses with NOT_ENOUGH_REPLICAS when |ISR| < min.insync.replicas
  before the append; `add_delayed_produce` parks the request until HW >= required offset, i.e.
  until *every* maximal-ISR member has it (§4.4). Completions (drained with `completions()`):
    NONE                               HW >= required offset and |maximal ISR| >= min ISR
    NOT_ENOUGH_REPLICAS_AFTER_APPEND   HW >= required offset but |maximal ISR| < min ISR; or
                                       the committed ISR shrank below min ISR while parked
                                       (Rafka: Kafka 3.7+ would wait for the timeout, since the
                                       HW is frozen then; failing fast is retriable and honest)
    REQUEST_TIMED_OUT                  the deadline passed (`tick`)
    NOT_LEADER_OR_FOLLOWER             leadership lost (`become_follower`, `close`)
- ISR changes go through AlterPartition, one in flight at a time: `tick` asks to shrink
  followers that are not caught up for `replica.lag.time.max.ms`; a follower fetch asks to
  expand when the follower's LEO >= HW and >= the start offset of our leader epoch, and the
  shell says it is eligible (unfenced, not shutting down, broker epoch as registered).
  A RECOVERING partition (unclean election, KIP-704) first asks to become RECOVERED.
- Follower fetch (`on_follower_fetch`): KIP-320 epoch check (FENCED_LEADER_EPOCH /
  UNKNOWN_LEADER_EPOCH), NOT_LEADER_OR_FOLLOWER, then the divergence check of Fetch v12+ /
  KIP-595: if our end offset for the follower's last fetched epoch is below its fetch offset,
  or we lack that epoch, answer DivergingEpoch(epoch, end offset) and learn nothing; else
  OFFSET_OUT_OF_RANGE outside [log start, LEO]; else update the follower's state and answer
  "read from fetch_offset" with the HW to return.

Follower side
- `follower_fetch_request` builds the partition's entry of a Fetch; `on_fetch_response` turns
  the leader's answer into `FollowerAppend` (append the records, then HW = min(leader HW, LEO)),
  `TruncateTo` (KIP-279: min(diverging end offset, our end offset for that epoch)), `Backoff`
  (epoch errors: wait for metadata) or `IgnoreResponse` (a response to a stale request).

Shell contract: see `PartitionReplica`'s docstring.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from proto.errors import (
    ErrorCode,
    FencedLeaderEpochError,
    NotEnoughReplicasError,
    NotLeaderOrFollowerError,
    OffsetOutOfRangeError,
    RafkaError,
    UnknownLeaderEpochError,
    error_class,
)
from proto.metadata import NO_LEADER, LeaderRecoveryState
from proto.metadata_image import PartitionRegistration

log = logging.getLogger(__name__)

UNKNOWN_OFFSET = -1
UNDEFINED_EPOCH = -1
NO_EPOCH_CHECK = -1  # current_leader_epoch absent (KIP-320 is optional for old clients)
ACKS_ALL = -1

InvalidRequiredAcksError = error_class(ErrorCode.INVALID_REQUIRED_ACKS)


class EpochLookup(Protocol):
    """The leader-epoch cache query this core needs (KIP-279 `endOffsetForEpoch`).

    Returns (largest epoch <= `epoch`, its end offset): for the latest epoch the log end offset;
    (-1, -1) when the epoch is unknown (above the latest, or an empty cache).
    """

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]: ...


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    """The topic and broker settings this core uses (resolved by the shell)."""

    min_insync_replicas: int = 1  # topic min.insync.replicas
    replica_lag_time_max_ms: int = 30_000  # broker replica.lag.time.max.ms
    alter_partition_retry_backoff_ms: int = 100  # resend an AlterPartition with unknown outcome


class Role(Enum):
    NONE = "none"
    LEADER = "leader"
    FOLLOWER = "follower"
    CLOSED = "closed"


# -- outputs ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HighWatermarkChange:
    """The HW moved: wake delayed fetches; checkpoint it now and then."""

    old: int
    new: int


@dataclass(frozen=True, slots=True)
class IsrMember:
    """A proposed ISR member with the broker epoch the leader saw (AlterPartition v3, KIP-903)."""

    broker_id: int
    broker_epoch: int = -1  # -1: unknown (the controller skips the check)


@dataclass(frozen=True, slots=True)
class AlterPartitionAsk:
    """Send this AlterPartition for the partition; pass it back to `on_alter_partition_response`."""

    topic_partition: str
    leader_epoch: int
    partition_epoch: int  # the partition epoch the proposal is based on
    new_isr: tuple[IsrMember, ...]
    leader_recovery_state: LeaderRecoveryState = LeaderRecoveryState.RECOVERED

    @property
    def new_isr_ids(self) -> tuple[int, ...]:
        return tuple(m.broker_id for m in self.new_isr)


@dataclass(frozen=True, slots=True)
class AlterPartitionResult:
    """The controller's answer for one partition (or a transport error in `error`)."""

    error: ErrorCode = ErrorCode.NONE
    leader_id: int = NO_LEADER
    leader_epoch: int = -1
    isr: tuple[int, ...] = ()
    partition_epoch: int = -1
    leader_recovery_state: LeaderRecoveryState = LeaderRecoveryState.RECOVERED


@dataclass(frozen=True, slots=True)
class ProduceCompletion:
    """A parked acks=all produce is done with `error` (NONE = acknowledged)."""

    op_id: int
    error: ErrorCode


@dataclass(frozen=True, slots=True)
class DivergingEpoch:
    """Fetch v12+ `DivergingEpoch`: the leader's (largest epoch <= asked, its end offset)."""

    epoch: int
    end_offset: int


@dataclass(frozen=True, slots=True)
class FollowerFetchDecision:
    """The leader's answer to one follower's fetch of this partition.

    Exactly one of: `error` set; `diverging_epoch` set (no records); or `read_from_offset` set
    (read records from there up to the LEO, within the fetch's byte limits).
    """

    error: RafkaError | None
    high_watermark: int
    log_start_offset: int
    diverging_epoch: DivergingEpoch | None = None
    read_from_offset: int | None = None
    high_watermark_change: HighWatermarkChange | None = None
    alter_partition: AlterPartitionAsk | None = None  # ISR expansion to send


@dataclass(frozen=True, slots=True)
class FollowerFetchRequest:
    """This partition's entry of a follower Fetch to `leader_id`; pass it back with the answer."""

    leader_id: int
    fetch_offset: int  # our LEO
    last_fetched_epoch: int  # epoch of our last batch; -1 if the log is empty
    current_leader_epoch: int


@dataclass(frozen=True, slots=True)
class FetchResponsePartition:
    """What the follower got back from the leader for this partition."""

    error: ErrorCode
    high_watermark: int = UNKNOWN_OFFSET
    log_start_offset: int = UNKNOWN_OFFSET
    diverging_epoch: DivergingEpoch | None = None
    records_end_offset: int | None = None  # last offset + 1 of the records returned; None: none


@dataclass(frozen=True, slots=True)
class FollowerAppend:
    """Append the response's records; then the HW is `high_watermark`; move the log start up to
    `log_start_offset` if it is ahead of ours."""

    high_watermark: int
    log_start_offset: int


@dataclass(frozen=True, slots=True)
class TruncateTo:
    """Truncate the log (and epoch cache, producer state) to end at `offset`; fetch again.

    `full` means: delete everything and restart the log at `offset` (fetch below the leader's
    log start). `high_watermark` is ours afterwards.
    """

    offset: int
    high_watermark: int
    full: bool = False


@dataclass(frozen=True, slots=True)
class Backoff:
    """Do not fetch this partition until new metadata arrives (or replica.fetch.backoff.ms)."""

    error: ErrorCode


@dataclass(frozen=True, slots=True)
class IgnoreResponse:
    """The response answers a request made under older state; drop it and fetch again."""


FollowerAction = FollowerAppend | TruncateTo | Backoff | IgnoreResponse


# -- leader-side follower state ---------------------------------------------------------------


@dataclass(slots=True)
class ReplicaState:
    """The leader's view of one follower (Kafka's `ReplicaState`)."""

    broker_id: int
    log_end_offset: int = UNKNOWN_OFFSET
    last_fetch_time_ms: int = 0
    last_caught_up_time_ms: int = 0
    last_fetch_leader_log_end_offset: int = UNKNOWN_OFFSET
    broker_epoch: int = -1
    eligible: bool = True  # may join the ISR (shell: unfenced, not shutting down, epoch ok)
    log_start_offset: int = UNKNOWN_OFFSET  # from its fetches (DeleteRecords' low watermark)

    def update_fetch_state(
        self, fetch_offset: int, now_ms: int, leader_log_end_offset: int, broker_epoch: int
    ) -> None:
        """`ReplicaState.updateFetchStateOrThrow`: the caught-up time moves to this fetch if it
        reached the leader's LEO, else to the previous fetch if this one reached the leader LEO
        seen then (so a slow but steadily fetching follower counts as caught up)."""
        if fetch_offset >= leader_log_end_offset:
            caught_up = max(self.last_caught_up_time_ms, now_ms)
        elif fetch_offset >= self.last_fetch_leader_log_end_offset >= 0:
            caught_up = max(self.last_caught_up_time_ms, self.last_fetch_time_ms)
        else:
            caught_up = self.last_caught_up_time_ms
        self.log_end_offset = fetch_offset
        self.last_caught_up_time_ms = caught_up
        self.last_fetch_leader_log_end_offset = leader_log_end_offset
        self.last_fetch_time_ms = now_ms
        if broker_epoch >= 0:
            self.broker_epoch = broker_epoch

    def is_caught_up(self, leader_log_end_offset: int, now_ms: int, max_lag_ms: int) -> bool:
        """`ReplicaState.isCaughtUp`."""
        return (
            self.log_end_offset == leader_log_end_offset
            or now_ms - self.last_caught_up_time_ms <= max_lag_ms
        )


@dataclass(slots=True)
class _DelayedProduce:
    op_id: int
    required_offset: int
    deadline_ms: int


@dataclass(slots=True)
class _PendingIsrChange:
    """The AlterPartition in flight (Kafka's PendingExpandIsr / PendingShrinkIsr)."""

    ask: AlterPartitionAsk
    resend_at_ms: int | None = None  # outcome unknown: resend the same ask then (via tick)


# -- the core ---------------------------------------------------------------------------------


class PartitionReplica:
    """Replication state of one partition on one broker. See the module docstring.

    Shell contract:
    - Apply every committed PartitionRegistration naming this broker: `become_leader` when it
      is the leader (after assigning the new leader epoch in the log's epoch cache at the LEO,
      Kafka's `maybeAssignEpochStartOffset`), else `become_follower`; `close` when the replica
      is removed. After any call, drain `completions()` and answer those produce requests.
    - Leader: `check_produce` before validating/appending a Produce; after the append call
      `on_leader_append(new_leo)`; for acks=all call `add_delayed_produce(last_offset + 1)` (also
      for a duplicate batch: wait for its original last offset). Serve follower fetches with
      `on_follower_fetch` (divergence and out-of-range answers carry no records). Send each
      `AlterPartitionAsk` returned (from fetches or `tick`) and hand the result back with
      `on_alter_partition_response` (use `AlterPartitionResult(error=...)` for a transport
      failure). Call `tick(now_ms)` by `next_deadline_ms()` and at least every
      replica.lag.time.max.ms / 2 (Kafka's isr-expiration task). Consumers read below HW only.
    - Follower: fetch with `follower_fetch_request(leo, last_fetched_epoch)`, then apply the
      `FollowerAction` of `on_fetch_response`: truncate the log, epoch cache and producer state
      (rebuild it from snapshot + log, see ProducerStateTable.truncate_to) before the next
      fetch; or append the records, rebuild producer state from them, then move the log start.
    - Call every method from one task per partition, without awaiting in between a decision and
      the log change it describes.
    """

    def __init__(
        self,
        topic_partition: str,
        broker_id: int,
        *,
        config: ReplicaConfig | None = None,
        high_watermark: int = 0,
        log_start_offset: int = 0,
    ) -> None:
        """Args:
            topic_partition: label for logs and errors ("orders-3").
            broker_id: this broker.
            config: min ISR and lag settings (`update_config` changes them).
            high_watermark: from the replication-offset checkpoint (0 if none).
            log_start_offset: the local log's start offset.
        """
        self.topic_partition = topic_partition
        self.broker_id = broker_id
        self._config = config or ReplicaConfig()
        self._role = Role.NONE
        self._registration: PartitionRegistration | None = None
        self._leader_epoch = UNDEFINED_EPOCH
        self._partition_epoch = -1
        # invariant: log_start_offset <= high_watermark <= log_end_offset (when leader)
        self._high_watermark = high_watermark
        self._log_start_offset = log_start_offset
        self._log_end_offset = UNKNOWN_OFFSET  # leader only
        self._leader_epoch_start_offset = UNKNOWN_OFFSET  # leader only
        self._followers: dict[int, ReplicaState] = {}
        self._pending: _PendingIsrChange | None = None
        self._delayed: dict[int, _DelayedProduce] = {}
        self._next_op_id = 1
        self._outbox: list[ProduceCompletion] = []

    # -- queries --

    @property
    def role(self) -> Role:
        return self._role

    @property
    def is_leader(self) -> bool:
        return self._role is Role.LEADER

    @property
    def leader_id(self) -> int:
        reg = self._registration
        return reg.leader if reg is not None and self._role is not Role.CLOSED else NO_LEADER

    @property
    def leader_epoch(self) -> int:
        return self._leader_epoch

    @property
    def partition_epoch(self) -> int:
        return self._partition_epoch

    @property
    def isr(self) -> tuple[int, ...]:
        """The committed ISR (as of the last registration or AlterPartition result)."""
        return self._registration.isr if self._registration is not None else ()

    @property
    def maximal_isr(self) -> tuple[int, ...]:
        """Committed ISR plus members being added (KIP-497); shrinks count only once done."""
        isr = self.isr
        if self._pending is None:
            return isr
        return isr + tuple(b for b in self._pending.ask.new_isr_ids if b not in isr)

    @property
    def replicas(self) -> tuple[int, ...]:
        return self._registration.replicas if self._registration is not None else ()

    @property
    def high_watermark(self) -> int:
        return self._high_watermark

    @property
    def log_start_offset(self) -> int:
        return self._log_start_offset

    @property
    def alter_partition_in_flight(self) -> AlterPartitionAsk | None:
        return self._pending.ask if self._pending is not None else None

    def follower_state(self, broker_id: int) -> ReplicaState | None:
        """The leader's view of a follower (read-only for callers)."""
        return self._followers.get(broker_id)

    def pending_produce_ops(self) -> tuple[int, ...]:
        return tuple(sorted(self._delayed))

    def next_deadline_ms(self) -> int | None:
        """The earliest time `tick` has work: a produce deadline or an AlterPartition resend."""
        times = [op.deadline_ms for op in self._delayed.values()]
        if self._pending is not None and self._pending.resend_at_ms is not None:
            times.append(self._pending.resend_at_ms)
        return min(times) if times else None

    def update_config(self, config: ReplicaConfig, now_ms: int) -> HighWatermarkChange | None:
        """New min.insync.replicas / lag settings; the HW and parked produces are re-checked."""
        self._config = config
        if self._role is not Role.LEADER:
            return None
        return self._after_state_change(now_ms)

    # -- metadata --

    def become_leader(
        self, registration: PartitionRegistration, *, local_leo: int, now_ms: int
    ) -> bool:
        """Apply a committed registration that makes this broker the leader (`makeLeader`).

        Args:
            registration: replicas, ISR, leader (must be us), leader and partition epochs.
            local_leo: our log end offset; a new leader epoch starts here.
            now_ms: ISR members start as caught up now (Kafka's resetReplicaState).

        Returns:
            False if the registration is stale and was ignored.
        """
        assert registration.leader == self.broker_id, (registration, self.broker_id)
        assert self.broker_id in registration.isr, (registration, self.broker_id)
        if not self._is_newer(registration) or self._role is Role.CLOSED:
            return False
        if self._role is Role.LEADER and registration == self._registration:
            return True  # already applied (e.g. our own AlterPartition result): keep in-flight
        new_leader = self._role is not Role.LEADER
        new_epoch = registration.leader_epoch != self._leader_epoch
        old_isr = self.isr
        self._set_registration(registration)
        self._pending = None  # committed metadata supersedes anything in flight (KIP-497)
        self._log_end_offset = local_leo
        if new_leader or new_epoch:
            self._leader_epoch_start_offset = local_leo
        if new_leader:
            self._followers = {}
            self._high_watermark = max(min(self._high_watermark, local_leo),
                                       self._log_start_offset)
            log.info("%s: leader at epoch %d (partition epoch %d), ISR %s, LEO %d, HW %d",
                     self.topic_partition, registration.leader_epoch,
                     registration.partition_epoch, list(registration.isr), local_leo,
                     self._high_watermark)
        elif old_isr != registration.isr:
            log.info("%s: ISR %s → %s (metadata, partition epoch %d)", self.topic_partition,
                     list(old_isr), list(registration.isr), registration.partition_epoch)
        self._role = Role.LEADER
        self._reset_follower_states(now_ms, new_leader)
        self._after_state_change(now_ms)
        return True

    def become_follower(self, registration: PartitionRegistration, *, now_ms: int) -> bool:
        """Apply a committed registration where another broker (or nobody) leads.

        Parked produces complete with NOT_LEADER_OR_FOLLOWER. Returns False if stale.
        """
        del now_ms  # kept for symmetry with become_leader; followers keep no timers
        assert registration.leader != self.broker_id, (registration, self.broker_id)
        if not self._is_newer(registration) or self._role is Role.CLOSED:
            return False
        if self._role is Role.FOLLOWER and registration == self._registration:
            return True
        was_leader = self._role is Role.LEADER
        self._set_registration(registration)
        self._role = Role.FOLLOWER
        if was_leader:
            log.info("%s: follower of %d at epoch %d (was leader)", self.topic_partition,
                     registration.leader, registration.leader_epoch)
            self._fail_all_delayed(ErrorCode.NOT_LEADER_OR_FOLLOWER)
        self._followers = {}
        self._pending = None
        self._log_end_offset = UNKNOWN_OFFSET
        self._leader_epoch_start_offset = UNKNOWN_OFFSET
        return True

    def close(self) -> None:
        """The replica is deleted or moved away: parked produces fail, nothing more is served."""
        self._fail_all_delayed(ErrorCode.NOT_LEADER_OR_FOLLOWER)
        self._role = Role.CLOSED
        self._followers = {}
        self._pending = None

    def on_log_start_offset(self, log_start_offset: int) -> None:
        """The local log start moved up (retention, DeleteRecords, follower catch-up)."""
        assert log_start_offset >= self._log_start_offset, (log_start_offset,
                                                             self._log_start_offset)
        self._log_start_offset = log_start_offset
        if self._high_watermark < log_start_offset:
            self._high_watermark = log_start_offset

    # -- leader: produce --

    def validate_leader_epoch(
        self, current_leader_epoch: int, *, require_leader: bool = True
    ) -> RafkaError | None:
        """KIP-320 check for Fetch / ListOffsets / OffsetForLeaderEpoch from a client or follower.

        Returns FENCED_LEADER_EPOCH if the caller's epoch is older than ours,
        UNKNOWN_LEADER_EPOCH if newer (we are behind on metadata), NOT_LEADER_OR_FOLLOWER if we
        do not lead and `require_leader`; None if fine. -1 skips the epoch check.
        """
        if current_leader_epoch != NO_EPOCH_CHECK:
            if current_leader_epoch < self._leader_epoch:
                return FencedLeaderEpochError(
                    f"epoch {current_leader_epoch} < current {self._leader_epoch} "
                    f"for {self.topic_partition}"
                )
            if current_leader_epoch > self._leader_epoch:
                return UnknownLeaderEpochError(
                    f"epoch {current_leader_epoch} > current {self._leader_epoch} "
                    f"for {self.topic_partition}"
                )
        if require_leader and self._role is not Role.LEADER:
            return NotLeaderOrFollowerError(
                f"broker {self.broker_id} is not the leader of {self.topic_partition} "
                f"(leader {self.leader_id}, epoch {self._leader_epoch})"
            )
        return None

    def check_produce(self, acks: int) -> RafkaError | None:
        """Checks before a Produce appends (`Partition.appendRecordsToLeader`).

        Returns NOT_LEADER_OR_FOLLOWER, INVALID_REQUIRED_ACKS, or NOT_ENOUGH_REPLICAS for acks=-1
        when |ISR| < min.insync.replicas (nothing is written); None to go ahead.
        """
        if self._role is not Role.LEADER:
            return NotLeaderOrFollowerError(
                f"broker {self.broker_id} is not the leader of {self.topic_partition}"
            )
        if acks not in (ACKS_ALL, 0, 1):
            return InvalidRequiredAcksError(f"acks={acks} for {self.topic_partition}")
        min_isr = self._config.min_insync_replicas
        if acks == ACKS_ALL and len(self.isr) < min_isr:
            return NotEnoughReplicasError(
                f"ISR {list(self.isr)} of {self.topic_partition} is smaller than "
                f"min.insync.replicas={min_isr}"
            )
        return None

    def on_leader_append(self, new_leo: int, now_ms: int) -> HighWatermarkChange | None:
        """The leader appended locally; its LEO is now `new_leo`."""
        assert self._role is Role.LEADER, f"{self.topic_partition}: append while {self._role}"
        assert new_leo >= self._log_end_offset, (new_leo, self._log_end_offset)
        self._log_end_offset = new_leo
        return self._after_state_change(now_ms)

    def add_delayed_produce(self, required_offset: int, deadline_ms: int) -> int:
        """Park an acks=all produce until HW >= `required_offset` (last offset + 1).

        Returns the op id its `ProduceCompletion` will carry. It may complete at once (drain
        `completions()`).
        """
        assert self._role is Role.LEADER, f"{self.topic_partition}: park while {self._role}"
        assert required_offset <= self._log_end_offset, (required_offset, self._log_end_offset)
        op_id = self._next_op_id
        self._next_op_id += 1
        self._delayed[op_id] = _DelayedProduce(op_id, required_offset, deadline_ms)
        self._check_delayed()
        return op_id

    def completions(self) -> tuple[ProduceCompletion, ...]:
        """Drain the completed parked produces, in completion order."""
        out = tuple(self._outbox)
        self._outbox.clear()
        return out

    # -- leader: follower fetch --

    def on_follower_fetch(
        self,
        *,
        replica_id: int,
        broker_epoch: int,
        fetch_offset: int,
        last_fetched_epoch: int,
        current_leader_epoch: int,
        now_ms: int,
        epoch_lookup: EpochLookup,
        follower_eligible: bool = True,
        log_start_offset: int = UNKNOWN_OFFSET,
    ) -> FollowerFetchDecision:
        """Decide one follower fetch (`Partition.fetchRecords` + `updateFollowerFetchState`).

        Args:
            replica_id, broker_epoch: the fetching follower (broker epoch -1: unknown).
            fetch_offset: the follower's LEO; last_fetched_epoch: epoch of its last batch.
            current_leader_epoch: the leader epoch the follower believes in (KIP-320).
            epoch_lookup: our leader-epoch cache.
            follower_eligible: from metadata: registered, unfenced, not in controlled
                shutdown, and `broker_epoch` matches the registration (ISR expansion only).
            log_start_offset: the follower's log start (-1: not sent), for `low_watermark`.
        """
        error = self.validate_leader_epoch(current_leader_epoch)
        if error is None:
            error = self._check_follower(replica_id, broker_epoch)
        if error is not None:
            return self._decision(error)
        if last_fetched_epoch != UNDEFINED_EPOCH:
            epoch, end_offset = epoch_lookup.end_offset_for_epoch(last_fetched_epoch)
            if epoch < last_fetched_epoch or end_offset < fetch_offset:
                # Fetch v12+ / KIP-595: the follower's log diverged; it truncates and refetches.
                # Its fetch state is not updated (Kafka skips it for diverging fetches).
                return self._decision(None, diverging=DivergingEpoch(epoch, end_offset))
        if not self._log_start_offset <= fetch_offset <= self._log_end_offset:
            return self._decision(OffsetOutOfRangeError(
                f"fetch offset {fetch_offset} from replica {replica_id} is outside "
                f"[{self._log_start_offset}, {self._log_end_offset}] of {self.topic_partition}"
            ))
        state = self._followers[replica_id]
        state.update_fetch_state(fetch_offset, now_ms, self._log_end_offset, broker_epoch)
        state.eligible = follower_eligible
        if log_start_offset >= 0:
            state.log_start_offset = log_start_offset
        ask = self._maybe_expand_isr(state)
        change = self._after_state_change(now_ms)
        return self._decision(None, read_from=fetch_offset, change=change, ask=ask)

    def on_follower_ineligible(self, replica_id: int, now_ms: int) -> HighWatermarkChange | None:
        """Metadata says a follower was fenced or is shutting down: stop holding the high
        watermark back for it while it is outside the ISR (Kafka's isReplicaIsrEligible).
        Without this a dead follower that was caught up when it died would stall acks=all
        until `replica.lag.time.max.ms` after its last fetch. Its next fetch re-evaluates."""
        state = self._followers.get(replica_id)
        if self._role is not Role.LEADER or state is None or not state.eligible:
            return None
        state.eligible = False
        return self._after_state_change(now_ms)

    def low_watermark(self, alive: Callable[[int], bool]) -> int:
        """`Partition.lowWatermarkIfLeader`: the smallest log start offset among this leader
        and its followers on `alive` (registered, unfenced) brokers; DeleteRecords completes
        once it reaches the requested offset. A live follower that has not reported its log
        start yet gives -1."""
        assert self._role is Role.LEADER, f"{self.topic_partition}: low watermark as {self._role}"
        low = self._log_start_offset
        for b in sorted(self._followers):
            state = self._followers[b]
            if state.log_start_offset < low and alive(b):
                low = state.log_start_offset
        return low

    # -- leader: ISR maintenance --

    def tick(self, now_ms: int) -> AlterPartitionAsk | None:
        """Time passed: expire parked produces; resend or start an AlterPartition.

        Returns the AlterPartition to send: a resend of one with unknown outcome, RECOVERED
        after an unclean election, or a shrink of the ISR followers that are not caught up
        (`Partition.maybeShrinkIsr`); None otherwise.
        """
        for op in sorted(self._delayed.values(), key=lambda o: o.op_id):
            if op.deadline_ms <= now_ms:
                self._complete(op.op_id, ErrorCode.REQUEST_TIMED_OUT)
        if self._role is not Role.LEADER:
            return None
        if self._pending is not None:
            resend = self._pending.resend_at_ms
            if resend is None or now_ms < resend:
                return None
            self._pending.resend_at_ms = None
            return self._pending.ask
        assert self._registration is not None
        if self._registration.leader_recovery_state is LeaderRecoveryState.RECOVERING:
            return self._propose(self.isr, "report recovered")
        lag_ms = self._config.replica_lag_time_max_ms
        out_of_sync = [
            b for b in self.isr
            if b != self.broker_id
            and not self._followers[b].is_caught_up(self._log_end_offset, now_ms, lag_ms)
        ]
        if not out_of_sync:
            return None
        for b in out_of_sync:
            state = self._followers[b]
            log.info("%s: shrinking ISR: replica %d is out of sync (LEO %d vs %d, caught up "
                     "%d ms ago, last fetch %d ms ago)", self.topic_partition, b,
                     state.log_end_offset, self._log_end_offset,
                     now_ms - state.last_caught_up_time_ms, now_ms - state.last_fetch_time_ms)
        return self._propose(tuple(b for b in self.isr if b not in out_of_sync), "shrink")

    def on_alter_partition_response(
        self, ask: AlterPartitionAsk, result: AlterPartitionResult, now_ms: int
    ) -> HighWatermarkChange | None:
        """Apply the controller's answer to `ask` (`Partition.handleAlterPartitionUpdate`).

        - NONE: adopt the returned ISR and partition epoch (ignored if for another leader epoch
          or older than what we have).
        - OPERATION_NOT_ATTEMPTED, INELIGIBLE_REPLICA, INVALID_REQUEST: certainly not applied;
          drop it, a later fetch or tick asks again.
        - FENCED_LEADER_EPOCH, INVALID_UPDATE_VERSION, UNKNOWN_TOPIC_OR_PARTITION,
          NEW_LEADER_ELECTED: our metadata is stale; keep it in flight (no new ask) until the
          next registration.
        - anything else (timeouts, NOT_CONTROLLER, transport): outcome unknown; keep the
          maximal ISR and resend the same ask after the retry backoff (via `tick`).
        """
        if self._pending is None or self._pending.ask != ask or self._role is not Role.LEADER:
            return None  # answers an ask superseded by newer metadata
        if result.error is ErrorCode.NONE:
            return self._apply_alter_partition(result, now_ms)
        if result.error in (ErrorCode.OPERATION_NOT_ATTEMPTED, ErrorCode.INELIGIBLE_REPLICA,
                            ErrorCode.INVALID_REQUEST):
            log.info("%s: AlterPartition to ISR %s not applied: %s", self.topic_partition,
                     list(ask.new_isr_ids), result.error.name)
            self._pending = None
            return self._after_state_change(now_ms)
        if result.error in (ErrorCode.FENCED_LEADER_EPOCH, ErrorCode.INVALID_UPDATE_VERSION,
                            ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.NEW_LEADER_ELECTED):
            log.info("%s: AlterPartition to ISR %s failed with %s; waiting for metadata",
                     self.topic_partition, list(ask.new_isr_ids), result.error.name)
            return None
        log.warning("%s: AlterPartition to ISR %s failed with %s; will retry",
                    self.topic_partition, list(ask.new_isr_ids), result.error.name)
        self._pending.resend_at_ms = now_ms + self._config.alter_partition_retry_backoff_ms
        return None

    # -- follower --

    def follower_fetch_request(
        self, local_leo: int, last_fetched_epoch: int
    ) -> FollowerFetchRequest | None:
        """This partition's Fetch entry, or None when not a follower or there is no leader."""
        if self._role is not Role.FOLLOWER or self.leader_id == NO_LEADER:
            return None
        return FollowerFetchRequest(
            leader_id=self.leader_id, fetch_offset=local_leo,
            last_fetched_epoch=last_fetched_epoch, current_leader_epoch=self._leader_epoch,
        )

    def on_fetch_response(
        self,
        request: FollowerFetchRequest,
        response: FetchResponsePartition,
        *,
        local_leo: int,
        epoch_lookup: EpochLookup,
    ) -> FollowerAction:
        """Turn the leader's answer into a log action (`AbstractFetcherThread`).

        Args:
            request: the entry this answers; local_leo: our LEO now.
            epoch_lookup: our own leader-epoch cache.
        """
        if (self._role is not Role.FOLLOWER or request.current_leader_epoch != self._leader_epoch
                or request.leader_id != self.leader_id or request.fetch_offset != local_leo):
            return IgnoreResponse()
        if response.error is ErrorCode.OFFSET_OUT_OF_RANGE:
            return self._on_out_of_range(request, response, local_leo)
        if response.error is not ErrorCode.NONE:
            return Backoff(response.error)
        if response.diverging_epoch is not None:
            return self._truncate(self._divergence_offset(response.diverging_epoch, local_leo,
                                                          epoch_lookup))
        new_leo = local_leo if response.records_end_offset is None else response.records_end_offset
        assert new_leo >= local_leo, (new_leo, local_leo)
        log_start = max(self._log_start_offset, response.log_start_offset)
        self._log_start_offset = min(log_start, new_leo)
        # A follower's HW is min(leader HW, own LEO) (§4.1); it may move back after a leader
        # change, as in Kafka.
        self._high_watermark = max(min(response.high_watermark, new_leo), self._log_start_offset)
        return FollowerAppend(self._high_watermark, self._log_start_offset)

    # -- internals: metadata --

    def _is_newer(self, registration: PartitionRegistration) -> bool:
        if registration.leader_epoch != self._leader_epoch:
            if registration.leader_epoch < self._leader_epoch:
                log.info("%s: ignoring registration with stale leader epoch %d < %d",
                         self.topic_partition, registration.leader_epoch, self._leader_epoch)
                return False
            return True
        if registration.partition_epoch < self._partition_epoch:
            log.info("%s: ignoring registration with stale partition epoch %d < %d",
                     self.topic_partition, registration.partition_epoch, self._partition_epoch)
            return False
        return True

    def _set_registration(self, registration: PartitionRegistration) -> None:
        self._registration = registration
        self._leader_epoch = registration.leader_epoch
        self._partition_epoch = registration.partition_epoch

    def _reset_follower_states(self, now_ms: int, new_leader: bool) -> None:
        """Kafka's `resetReplicaState`: a new leader knows no follower LEO; ISR members count
        as caught up now, others never were. Same leader, new registration: keep what we know."""
        old = {} if new_leader else self._followers
        self._followers = {}
        for b in self.replicas:
            if b == self.broker_id:
                continue
            state = old.get(b)
            if state is None:
                state = ReplicaState(b)
                if b in self.isr:
                    state.last_caught_up_time_ms = now_ms
            self._followers[b] = state

    def _check_follower(self, replica_id: int, broker_epoch: int) -> RafkaError | None:
        state = self._followers.get(replica_id)
        if state is None:
            return NotLeaderOrFollowerError(
                f"replica {replica_id} is not a follower of {self.topic_partition} "
                f"(replicas {list(self.replicas)})"
            )
        if 0 <= broker_epoch < state.broker_epoch:
            return NotLeaderOrFollowerError(
                f"fetch from replica {replica_id} with stale broker epoch {broker_epoch} < "
                f"{state.broker_epoch} for {self.topic_partition}"
            )
        return None

    # -- internals: ISR --

    def _propose(self, new_isr: tuple[int, ...], why: str) -> AlterPartitionAsk:
        assert self._pending is None and self._registration is not None
        assert self.broker_id in new_isr, (new_isr, self.broker_id)
        members = tuple(
            IsrMember(b, -1 if b == self.broker_id else self._followers[b].broker_epoch)
            for b in new_isr
        )
        ask = AlterPartitionAsk(
            topic_partition=self.topic_partition, leader_epoch=self._leader_epoch,
            partition_epoch=self._partition_epoch, new_isr=members,
            leader_recovery_state=LeaderRecoveryState.RECOVERED,
        )
        self._pending = _PendingIsrChange(ask)
        log.debug("%s: AlterPartition (%s) ISR %s → %s at partition epoch %d",
                  self.topic_partition, why, list(self.isr), list(new_isr),
                  self._partition_epoch)
        return ask

    def _maybe_expand_isr(self, state: ReplicaState) -> AlterPartitionAsk | None:
        """`Partition.maybeExpandIsr`: one change at a time; the follower must have reached the
        HW and the start of our epoch (so it holds everything committed before we led)."""
        reg = self._registration
        assert reg is not None
        if (self._pending is not None or state.broker_id in reg.isr or not state.eligible
                or reg.leader_recovery_state is LeaderRecoveryState.RECOVERING):
            return None
        if not self._is_in_sync(state):
            return None
        return self._propose(reg.isr + (state.broker_id,), "expand")

    def _is_in_sync(self, state: ReplicaState) -> bool:
        return (state.log_end_offset >= self._high_watermark
                and state.log_end_offset >= self._leader_epoch_start_offset >= 0)

    def _apply_alter_partition(
        self, result: AlterPartitionResult, now_ms: int
    ) -> HighWatermarkChange | None:
        reg = self._registration
        assert reg is not None
        self._pending = None
        if result.leader_epoch != self._leader_epoch or result.leader_id != self.broker_id:
            log.info("%s: ignoring AlterPartition result for leader %d epoch %d (we are at %d)",
                     self.topic_partition, result.leader_id, result.leader_epoch,
                     self._leader_epoch)
            return self._after_state_change(now_ms)
        if result.partition_epoch < self._partition_epoch:
            return self._after_state_change(now_ms)
        log.info("%s: ISR %s → %s (partition epoch %d)", self.topic_partition, list(reg.isr),
                 list(result.isr), result.partition_epoch)
        self._set_registration(PartitionRegistration(
            replicas=reg.replicas, isr=result.isr, leader=reg.leader,
            leader_epoch=reg.leader_epoch, partition_epoch=result.partition_epoch,
            leader_recovery_state=result.leader_recovery_state,
        ))
        return self._after_state_change(now_ms)

    # -- internals: HW and parked produces --

    def _after_state_change(self, now_ms: int) -> HighWatermarkChange | None:
        change = self._maybe_increment_hw(now_ms)
        self._check_delayed()
        return change

    def _maybe_increment_hw(self, now_ms: int) -> HighWatermarkChange | None:
        """`Partition.maybeIncrementLeaderHW` (§4.3)."""
        if self._role is not Role.LEADER:
            return None
        effective_min_isr = min(self._config.min_insync_replicas, len(self.replicas))
        if len(self.isr) < effective_min_isr:
            return None  # frozen under min ISR (Kafka 3.7+, KAFKA-15583)
        maximal = self.maximal_isr
        new_hw = self._log_end_offset
        for b in sorted(self._followers):
            state = self._followers[b]
            counts = b in maximal or self._should_wait_for(state, now_ms)
            if counts and state.log_end_offset < new_hw:
                new_hw = state.log_end_offset
        if new_hw <= self._high_watermark:
            return None
        change = HighWatermarkChange(self._high_watermark, new_hw)
        self._high_watermark = new_hw
        # invariant: high_watermark <= log_end_offset
        assert self._high_watermark <= self._log_end_offset, (self._high_watermark,
                                                              self._log_end_offset)
        return change

    def _should_wait_for(self, state: ReplicaState, now_ms: int) -> bool:
        """A caught-up follower that may join the ISR: wait for it rather than run away from it
        (`Partition.shouldWaitForReplicaToJoinIsr`)."""
        return (state.eligible and self._is_in_sync(state) and state.is_caught_up(
            self._log_end_offset, now_ms, self._config.replica_lag_time_max_ms))

    def _check_delayed(self) -> None:
        """`DelayedProduce.tryComplete` via `Partition.checkEnoughReplicasReachOffset`."""
        if not self._delayed:
            return
        min_isr = self._config.min_insync_replicas
        isr_too_small = len(self.isr) < min_isr
        enough = len(self.maximal_isr) >= min_isr
        for op in sorted(self._delayed.values(), key=lambda o: o.op_id):
            if self._high_watermark >= op.required_offset:
                self._complete(op.op_id, ErrorCode.NONE if enough
                               else ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND)
            elif isr_too_small:
                self._complete(op.op_id, ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND)

    def _complete(self, op_id: int, error: ErrorCode) -> None:
        del self._delayed[op_id]
        self._outbox.append(ProduceCompletion(op_id, error))

    def _fail_all_delayed(self, error: ErrorCode) -> None:
        for op_id in sorted(self._delayed):
            self._complete(op_id, error)

    def _decision(
        self,
        error: RafkaError | None,
        *,
        diverging: DivergingEpoch | None = None,
        read_from: int | None = None,
        change: HighWatermarkChange | None = None,
        ask: AlterPartitionAsk | None = None,
    ) -> FollowerFetchDecision:
        return FollowerFetchDecision(
            error=error, high_watermark=self._high_watermark,
            log_start_offset=self._log_start_offset, diverging_epoch=diverging,
            read_from_offset=read_from, high_watermark_change=change, alter_partition=ask,
        )

    # -- internals: follower truncation --

    def _divergence_offset(
        self, diverging: DivergingEpoch, local_leo: int, epoch_lookup: EpochLookup
    ) -> int:
        """KIP-279: truncate to min(leader's end offset for the epoch, ours for that epoch).

        If our largest epoch <= the leader's is below it, this may not be the final point: the
        next fetch sends the new last epoch and the leader checks again.
        """
        if diverging.epoch == UNDEFINED_EPOCH or diverging.end_offset < 0:
            # The leader knows no epoch at or below ours: fall back to our HW (pre-KIP-101).
            return min(self._high_watermark, local_leo)
        own_epoch, own_end = epoch_lookup.end_offset_for_epoch(diverging.epoch)
        if own_epoch == UNDEFINED_EPOCH or own_end < 0:
            return min(self._high_watermark, local_leo, diverging.end_offset)
        return min(diverging.end_offset, own_end, local_leo)

    def _truncate(self, offset: int) -> TruncateTo:
        offset = max(offset, self._log_start_offset)
        if offset < self._high_watermark:
            log.warning("%s: truncating to %d below the high watermark %d",
                        self.topic_partition, offset, self._high_watermark)
            self._high_watermark = offset
        log.info("%s: truncating to %d (leader %d, epoch %d)", self.topic_partition, offset,
                 self.leader_id, self._leader_epoch)
        return TruncateTo(offset, self._high_watermark)

    def _on_out_of_range(
        self, request: FollowerFetchRequest, response: FetchResponsePartition, local_leo: int
    ) -> FollowerAction:
        """`AbstractFetcherThread.handleOutOfRangeError`, with the leader's answer as input."""
        if request.fetch_offset < response.log_start_offset:
            # Behind the leader's log start: start over there (Kafka: truncateFullyAndStartAt).
            start = response.log_start_offset
            self._log_start_offset = start
            self._high_watermark = start
            log.info("%s: fetch offset %d is below the leader's log start %d; restarting there",
                     self.topic_partition, request.fetch_offset, start)
            return TruncateTo(start, start, full=True)
        # Ahead of the leader without epoch information (an empty epoch cache): its HW is safe.
        return self._truncate(min(local_leo, max(response.high_watermark, 0)))
