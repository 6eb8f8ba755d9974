"""Leader election and ISR changes as pure functions (Kafka's `PartitionChangeBuilder`).

Theory of operation
-------------------
Every change to a partition's leader or ISR goes through `build_partition_change`: given the
current `PartitionRegistration`, the brokers that are acceptable leaders (registered, unfenced,
not in controlled shutdown), an optional target ISR and an election type, it returns the one
`PartitionChangeRecord` that moves the partition there, or None when nothing would change. It
reads no clock, keeps no state and writes nothing; the ControlManager writes the record and the
`MetadataImage` applies it once committed.

Election rules (KAFKA_SEMANTICS §4.7, §5.5):
- ONLINE (clean): keep the current leader if it is in the target ISR and acceptable; else the
  first replica, in assignment order, that is in the target ISR and acceptable.
- UNCLEAN (or ONLINE with `unclean.leader.election.enable`): as ONLINE, and if nobody qualifies,
  the first acceptable replica in assignment order; the ISR becomes just that replica and the
  leader recovery state RECOVERING (KIP-704). This may lose committed data.
- PREFERRED: replicas[0] if it is in the target ISR and acceptable; else as ONLINE (without
  unclean), as Kafka does.
- If nobody qualifies the leader becomes NO_LEADER (-1): the partition is offline.
- The ISR is never set empty (no ELR, KIP-966): a target ISR that would be empty leaves the ISR
  unchanged. Fencing the last ISR member thus keeps ISR = [it] with no leader ("last replica
  standing"), and it leads again when it is unfenced.

The leader field is set only when the leader changes; applying the record then bumps the
leader epoch. Every record bumps the partition epoch.

Wrappers: `remove_broker_from_isr` (fencing, controlled shutdown, unregistration),
`elect_leader` (admin ElectLeaders and auto leader rebalance, with Kafka's errors) and
`alter_partition` (the AlterPartition checks of `ReplicationControlManager`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from proto.errors import ErrorCode, InvalidRequestError, NotControllerError, error_class
from proto.metadata import NO_LEADER, LeaderRecoveryState, PartitionChangeRecord
from proto.metadata_image import BrokerRegistration, PartitionRegistration

ElectionNotNeededError = error_class(ErrorCode.ELECTION_NOT_NEEDED)
PreferredLeaderNotAvailableError = error_class(ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE)
EligibleLeadersNotAvailableError = error_class(ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE)
FencedLeaderEpochError = error_class(ErrorCode.FENCED_LEADER_EPOCH)
InvalidUpdateVersionError = error_class(ErrorCode.INVALID_UPDATE_VERSION)
IneligibleReplicaError = error_class(ErrorCode.INELIGIBLE_REPLICA)
StaleBrokerEpochError = error_class(ErrorCode.STALE_BROKER_EPOCH)


class Election(Enum):
    """Kafka's `PartitionChangeBuilder.Election`."""

    ONLINE = "online"  # clean: from the ISR only
    UNCLEAN = "unclean"  # from the ISR, else any acceptable replica
    PREFERRED = "preferred"  # replicas[0] if it can lead, else as ONLINE


@dataclass(frozen=True, slots=True)
class BrokerState:
    """A member of the new ISR in AlterPartition v3: id plus the broker epoch the leader saw.

    broker_epoch -1 skips the epoch check (older request versions).
    """

    broker_id: int
    broker_epoch: int = -1


def build_partition_change(
    partition: PartitionRegistration,
    *,
    topic_id: str,
    partition_id: int,
    acceptable_leaders: Collection[int],
    target_isr: Sequence[int] | None = None,
    target_leader_recovery_state: LeaderRecoveryState | None = None,
    election: Election = Election.ONLINE,
    unclean_leader_election_enable: bool = False,
) -> PartitionChangeRecord | None:
    """The record that applies a target ISR and re-elects the leader, or None if no change.

    Args:
        partition: the current registration.
        topic_id, partition_id: copied into the record.
        acceptable_leaders: broker ids that may lead (registered, unfenced, not shutting down).
        target_isr: the ISR wanted (None: keep); must be within the replicas, no duplicates.
        target_leader_recovery_state: e.g. RECOVERED from the leader's AlterPartition.
        election: ONLINE, UNCLEAN or PREFERRED (see the module docstring).
        unclean_leader_election_enable: the topic's config; turns ONLINE into UNCLEAN.
    """
    isr = partition.isr if target_isr is None else tuple(target_isr)
    assert len(set(isr)) == len(isr) and set(isr) <= set(partition.replicas), (
        f"target ISR {isr} is not a set within replicas {partition.replicas}"
    )
    if election is Election.ONLINE and unclean_leader_election_enable:
        election = Election.UNCLEAN
    leader, unclean = _elect(partition, isr, acceptable_leaders, election)

    new_leader: int | None = None
    new_isr: tuple[int, ...] | None = None
    new_recovery: LeaderRecoveryState | None = None
    if leader != partition.leader:
        new_leader = leader
        if unclean:
            # Unclean election: the new leader's log is the truth now (may lose data).
            new_isr = (leader,)
            if partition.leader_recovery_state is not LeaderRecoveryState.RECOVERING:
                new_recovery = LeaderRecoveryState.RECOVERING
    if new_isr is None and isr and isr != partition.isr:
        new_isr = isr  # an empty target keeps the ISR: last replica standing (§5.5)
    if (
        new_recovery is None
        and not unclean
        and target_leader_recovery_state is not None
        and target_leader_recovery_state is not partition.leader_recovery_state
    ):
        new_recovery = target_leader_recovery_state
    if new_leader is None and new_isr is None and new_recovery is None:
        return None
    final_isr = partition.isr if new_isr is None else new_isr
    assert leader == NO_LEADER or leader in final_isr, (
        f"leader {leader} outside ISR {final_isr}: target ISR omitted the leader"
    )
    return PartitionChangeRecord(
        topic_id=topic_id,
        partition_id=partition_id,
        isr=new_isr,
        leader=new_leader,
        leader_recovery_state=new_recovery,
    )


def _elect(
    partition: PartitionRegistration,
    isr: tuple[int, ...],
    acceptable: Collection[int],
    election: Election,
) -> tuple[int, bool]:
    """(leader, unclean) per Kafka's electPreferredLeader / electAnyLeader."""

    def valid(replica: int) -> bool:
        return replica in isr and replica in acceptable

    if election is Election.PREFERRED and valid(partition.replicas[0]):
        return partition.replicas[0], False
    if valid(partition.leader):
        return partition.leader, False
    for replica in partition.replicas:
        if valid(replica):
            return replica, False
    if election is Election.UNCLEAN:
        for replica in partition.replicas:
            if replica in acceptable:
                return replica, True
    return NO_LEADER, False


def remove_broker_from_isr(
    partition: PartitionRegistration,
    *,
    topic_id: str,
    partition_id: int,
    broker_id: int,
    acceptable_leaders: Collection[int],
    unclean_leader_election_enable: bool = False,
) -> PartitionChangeRecord | None:
    """The change when `broker_id` is fenced, shuts down or unregisters (§5.4, §5.5).

    New ISR = ISR − {broker}, unless that would be empty (then the ISR is kept and the partition
    goes offline). If the broker led, the first remaining ISR member in assignment order leads.
    The broker is never an acceptable leader here, whatever `acceptable_leaders` says
    (Kafka's generateLeaderAndIsrUpdates).
    """
    acceptable = frozenset(acceptable_leaders) - {broker_id}
    return build_partition_change(
        partition,
        topic_id=topic_id,
        partition_id=partition_id,
        acceptable_leaders=acceptable,
        target_isr=tuple(r for r in partition.isr if r != broker_id),
        unclean_leader_election_enable=unclean_leader_election_enable,
    )


def elect_leader(
    partition: PartitionRegistration,
    *,
    topic_id: str,
    partition_id: int,
    acceptable_leaders: Collection[int],
    election: Election,
) -> PartitionChangeRecord:
    """Admin ElectLeaders for one partition (Kafka's ReplicationControlManager.electLeader).

    Raises:
        ElectionNotNeededError: PREFERRED and replicas[0] already leads; UNCLEAN and the
            partition has a leader.
        PreferredLeaderNotAvailableError: PREFERRED and no change is possible (replicas[0] is
            out of the ISR or not acceptable).
        EligibleLeadersNotAvailableError: ONLINE/UNCLEAN and no replica can lead.
    """
    label = f"{topic_id}-{partition_id}"
    if election is Election.PREFERRED and partition.has_preferred_leader:
        raise ElectionNotNeededError(
            f"{label}: preferred replica {partition.replicas[0]} already leads"
        )
    if election is Election.UNCLEAN and partition.has_leader:
        raise ElectionNotNeededError(f"{label}: leader {partition.leader} is online")
    record = build_partition_change(
        partition,
        topic_id=topic_id,
        partition_id=partition_id,
        acceptable_leaders=acceptable_leaders,
        election=election,
    )
    if record is None or record.leader is None:
        if election is Election.PREFERRED:
            raise PreferredLeaderNotAvailableError(
                f"{label}: preferred replica {partition.replicas[0]} is not in ISR "
                f"{list(partition.isr)} or cannot lead"
            )
        raise EligibleLeadersNotAvailableError(f"{label}: no replica can lead")
    return record


def check_broker_epoch(
    brokers: Mapping[int, BrokerRegistration], broker_id: int, broker_epoch: int
) -> None:
    """Reject a request from a broker whose epoch is not the registered one.

    Raises:
        StaleBrokerEpochError: unknown broker, or `broker_epoch` differs from its registration
            (Kafka's ClusterControlManager.checkBrokerEpoch).
    """
    registration = brokers.get(broker_id)
    if registration is None:
        raise StaleBrokerEpochError(f"broker {broker_id} is not registered")
    if registration.broker_epoch != broker_epoch:
        raise StaleBrokerEpochError(
            f"broker {broker_id}: epoch {broker_epoch} != registered {registration.broker_epoch}"
        )


def alter_partition(
    partition: PartitionRegistration,
    *,
    topic_id: str,
    partition_id: int,
    broker_id: int,
    leader_epoch: int,
    partition_epoch: int,
    new_isr: Sequence[BrokerState | int],
    leader_recovery_state: LeaderRecoveryState,
    brokers: Mapping[int, BrokerRegistration],
    unclean_leader_election_enable: bool = False,
) -> PartitionChangeRecord | None:
    """Validate one partition of an AlterPartition request and build its change (§4.5).

    The checks and their order follow `ReplicationControlManager.validateAlterPartitionData`.
    The request-level broker epoch is checked separately (`check_broker_epoch`).

    Args:
        partition: the current registration.
        broker_id: the requesting broker (must be the leader).
        leader_epoch, partition_epoch: the epochs the leader's request is based on.
        new_isr: the ISR the leader wants (ids, or BrokerState with the member's broker epoch).
        leader_recovery_state: the leader's recovery state (RECOVERED once it has recovered).
        brokers: current broker registrations (for ISR eligibility and acceptable leaders).

    Returns:
        The change record, or None when the request asks for the current state (the caller
        answers with the current state). If the record sets `leader` (possible only when the
        requester is no longer an acceptable leader), reply NEW_LEADER_ELECTED as Kafka does.

    Raises:
        NotControllerError: the request's epochs are newer than ours (we are likely stale).
        FencedLeaderEpochError: the request's leader epoch is stale.
        InvalidRequestError: the requester is not the leader (Kafka's code for this case); the
            ISR is not a duplicate-free subset of the replicas or omits the leader; RECOVERING
            with more than one ISR member; RECOVERED → RECOVERING.
        InvalidUpdateVersionError: the request's partition epoch is stale.
        IneligibleReplicaError: a new ISR member is unregistered, fenced, shutting down or has a
            different broker epoch.
    """
    label = f"{topic_id}-{partition_id}"
    members = tuple(m if isinstance(m, BrokerState) else BrokerState(m) for m in new_isr)
    isr = tuple(m.broker_id for m in members)
    _check_epochs(partition, label, broker_id, leader_epoch, partition_epoch)
    if len(set(isr)) != len(isr) or not set(isr) <= set(partition.replicas):
        raise InvalidRequestError(
            f"{label}: new ISR {list(isr)} is not a subset of replicas {list(partition.replicas)}"
        )
    if partition.leader not in isr:
        raise InvalidRequestError(f"{label}: new ISR {list(isr)} omits the leader {broker_id}")
    if leader_recovery_state is LeaderRecoveryState.RECOVERING and len(isr) > 1:
        raise InvalidRequestError(
            f"{label}: ISR {list(isr)} has more than one replica while the leader is recovering"
        )
    if (
        partition.leader_recovery_state is LeaderRecoveryState.RECOVERED
        and leader_recovery_state is LeaderRecoveryState.RECOVERING
    ):
        raise InvalidRequestError(f"{label}: leader recovery state cannot go back to RECOVERING")
    ineligible = [_ineligibility(m, brokers) for m in members]
    reasons = [reason for reason in ineligible if reason]
    if reasons:
        raise IneligibleReplicaError(f"{label}: ineligible replicas in new ISR: {reasons}")
    return build_partition_change(
        partition,
        topic_id=topic_id,
        partition_id=partition_id,
        acceptable_leaders=frozenset(b for b, reg in brokers.items() if reg.is_active),
        target_isr=isr,
        target_leader_recovery_state=leader_recovery_state,
        unclean_leader_election_enable=unclean_leader_election_enable,
    )


def _check_epochs(
    partition: PartitionRegistration,
    label: str,
    broker_id: int,
    leader_epoch: int,
    partition_epoch: int,
) -> None:
    if leader_epoch > partition.leader_epoch or partition_epoch > partition.partition_epoch:
        # Newer than ours: this controller is probably no longer active.
        raise NotControllerError(
            f"{label}: request epochs (leader {leader_epoch}, partition {partition_epoch}) are "
            f"newer than ours ({partition.leader_epoch}, {partition.partition_epoch})"
        )
    if leader_epoch < partition.leader_epoch:
        raise FencedLeaderEpochError(
            f"{label}: leader epoch {leader_epoch} < current {partition.leader_epoch}"
        )
    if broker_id != partition.leader:
        raise InvalidRequestError(
            f"{label}: broker {broker_id} is not the leader (leader is {partition.leader})"
        )
    if partition_epoch < partition.partition_epoch:
        raise InvalidUpdateVersionError(
            f"{label}: partition epoch {partition_epoch} < current {partition.partition_epoch}"
        )


def _ineligibility(member: BrokerState, brokers: Mapping[int, BrokerRegistration]) -> str:
    """Why a new ISR member can't join ("" if it can), as Kafka's ineligibleReplicasForIsr."""
    registration = brokers.get(member.broker_id)
    if registration is None:
        return f"{member.broker_id} not registered"
    if registration.in_controlled_shutdown:
        return f"{member.broker_id} shutting down"
    if registration.fenced:
        return f"{member.broker_id} fenced"
    if member.broker_epoch != -1 and member.broker_epoch != registration.broker_epoch:
        return (
            f"{member.broker_id} broker epoch mismatch: requested={member.broker_epoch} "
            f"expected={registration.broker_epoch}"
        )
    return ""

