"""Leader election and ISR change rules (controller/partition_change.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.partition_change import (
    BrokerState,
    Election,
    ElectionNotNeededError,
    EligibleLeadersNotAvailableError,
    FencedLeaderEpochError,
    IneligibleReplicaError,
    InvalidUpdateVersionError,
    PreferredLeaderNotAvailableError,
    StaleBrokerEpochError,
    alter_partition,
    build_partition_change,
    check_broker_epoch,
    elect_leader,
    remove_broker_from_isr,
)
from proto.errors import ErrorCode, InvalidRequestError, NotControllerError
from proto.metadata import NO_LEADER, Endpoint, LeaderRecoveryState, PartitionChangeRecord
from proto.metadata_image import BrokerRegistration, PartitionRegistration

TID = "11111111-1111-4111-8111-111111111111"
RECOVERING = LeaderRecoveryState.RECOVERING
RECOVERED = LeaderRecoveryState.RECOVERED


def _partition(
    replicas: tuple[int, ...] = (1, 2, 3),
    isr: tuple[int, ...] = (1, 2, 3),
    leader: int = 1,
    leader_epoch: int = 5,
    partition_epoch: int = 9,
    state: LeaderRecoveryState = RECOVERED,
) -> PartitionRegistration:
    return PartitionRegistration(replicas, isr, leader, leader_epoch, partition_epoch, state)


def _change(**fields: object) -> PartitionChangeRecord:
    return PartitionChangeRecord(topic_id=TID, partition_id=0, **fields)  # type: ignore[arg-type]


def _remove(partition: PartitionRegistration, broker: int, acceptable: set[int],
            unclean: bool = False) -> PartitionChangeRecord | None:
    return remove_broker_from_isr(partition, topic_id=TID, partition_id=0, broker_id=broker,
                                  acceptable_leaders=acceptable,
                                  unclean_leader_election_enable=unclean)


# ---------------------------------------------------------------- fencing (§5.5)


def test_fenced_follower_leaves_isr_and_leader_stays() -> None:
    assert _remove(_partition(), 2, {1, 3}) == _change(isr=(1, 3))


def test_fenced_leader_is_replaced_by_first_isr_replica_in_assignment_order() -> None:
    partition = _partition(replicas=(1, 2, 3), isr=(3, 2, 1), leader=1)
    assert _remove(partition, 1, {2, 3}) == _change(isr=(3, 2), leader=2)


def test_new_leader_skips_isr_members_that_are_not_acceptable() -> None:
    assert _remove(_partition(), 1, {3}) == _change(isr=(2, 3), leader=3)


def test_fenced_broker_is_never_elected_even_if_caller_lists_it_acceptable() -> None:
    assert _remove(_partition(isr=(1, 2)), 1, {1, 2, 3}) == _change(isr=(2,), leader=2)


def test_fenced_last_isr_member_leaves_partition_offline_with_isr_kept() -> None:
    partition = _partition(isr=(1,), leader=1)
    assert _remove(partition, 1, {2, 3}) == _change(leader=NO_LEADER)


def test_fenced_leader_with_no_acceptable_isr_member_goes_offline_and_isr_shrinks() -> None:
    assert _remove(_partition(isr=(1, 2)), 1, set()) == _change(isr=(2,), leader=NO_LEADER)


def test_fencing_a_broker_outside_the_isr_changes_nothing() -> None:
    assert _remove(_partition(isr=(1, 2)), 3, {1, 2}) is None


def test_unclean_election_picks_first_live_replica_and_marks_recovering() -> None:
    partition = _partition(isr=(1,), leader=1)
    assert _remove(partition, 1, {3, 2}, unclean=True) == _change(
        isr=(2,), leader=2, leader_recovery_state=RECOVERING)


def test_unclean_election_with_no_live_replica_leaves_partition_offline() -> None:
    partition = _partition(isr=(1,), leader=1)
    assert _remove(partition, 1, set(), unclean=True) == _change(leader=NO_LEADER)


def test_unclean_election_prefers_a_clean_isr_leader_when_one_exists() -> None:
    assert _remove(_partition(isr=(1, 3)), 1, {2, 3}, unclean=True) == _change(isr=(3,), leader=3)


def test_unclean_election_while_already_recovering_keeps_state_unset() -> None:
    partition = _partition(isr=(2,), leader=2, state=RECOVERING)
    assert _remove(partition, 2, {3}, unclean=True) == _change(isr=(3,), leader=3)


# ---------------------------------------------------------------- online election


def test_offline_partition_elects_returning_last_isr_member() -> None:
    partition = _partition(isr=(2,), leader=NO_LEADER)
    record = build_partition_change(partition, topic_id=TID, partition_id=0,
                                    acceptable_leaders={2})
    assert record == _change(leader=2)


def test_valid_current_leader_is_kept_and_nothing_changes() -> None:
    record = build_partition_change(_partition(leader=3), topic_id=TID, partition_id=0,
                                    acceptable_leaders={1, 2, 3})
    assert record is None


def test_isr_expansion_keeps_leader_and_sets_isr_only() -> None:
    record = build_partition_change(_partition(isr=(1,)), topic_id=TID, partition_id=0,
                                    acceptable_leaders={1, 2, 3}, target_isr=(1, 2))
    assert record == _change(isr=(1, 2))


def test_explicit_recovered_state_is_applied() -> None:
    partition = _partition(isr=(2,), leader=2, state=RECOVERING)
    record = build_partition_change(partition, topic_id=TID, partition_id=0,
                                    acceptable_leaders={2}, target_isr=(2,),
                                    target_leader_recovery_state=RECOVERED)
    assert record == _change(leader_recovery_state=RECOVERED)


# ---------------------------------------------------------------- preferred election


def _elect(partition: PartitionRegistration, acceptable: set[int],
           election: Election = Election.PREFERRED) -> PartitionChangeRecord:
    return elect_leader(partition, topic_id=TID, partition_id=0, acceptable_leaders=acceptable,
                        election=election)


def test_preferred_election_moves_leadership_back_to_first_replica() -> None:
    assert _elect(_partition(leader=2), {1, 2, 3}) == _change(leader=1)


def test_preferred_election_when_preferred_already_leads_is_not_needed() -> None:
    with pytest.raises(ElectionNotNeededError):
        _elect(_partition(leader=1), {1, 2, 3})


def test_preferred_election_with_preferred_out_of_isr_is_not_available() -> None:
    with pytest.raises(PreferredLeaderNotAvailableError) as info:
        _elect(_partition(isr=(2, 3), leader=2), {1, 2, 3})
    assert info.value.code is ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE


def test_preferred_election_with_preferred_fenced_is_not_available() -> None:
    with pytest.raises(PreferredLeaderNotAvailableError):
        _elect(_partition(leader=2), {2, 3})


def test_unclean_admin_election_on_a_led_partition_is_not_needed() -> None:
    with pytest.raises(ElectionNotNeededError):
        _elect(_partition(), {1, 2, 3}, Election.UNCLEAN)


def test_unclean_admin_election_with_no_live_replica_has_no_eligible_leader() -> None:
    with pytest.raises(EligibleLeadersNotAvailableError):
        _elect(_partition(isr=(1,), leader=NO_LEADER), set(), Election.UNCLEAN)


def test_unclean_admin_election_elects_out_of_sync_replica() -> None:
    record = _elect(_partition(isr=(1,), leader=NO_LEADER), {3}, Election.UNCLEAN)
    assert record == _change(isr=(3,), leader=3, leader_recovery_state=RECOVERING)


# ---------------------------------------------------------------- AlterPartition (§4.5)


def _broker(broker_id: int, epoch: int = 100, *, fenced: bool = False,
            shutdown: bool = False) -> BrokerRegistration:
    return BrokerRegistration(broker_id, f"inc-{broker_id}", epoch, Endpoint("h", 1), None,
                              fenced, shutdown)


BROKERS = {b: _broker(b) for b in (1, 2, 3)}


def _alter(partition: PartitionRegistration, *, broker_id: int = 1, leader_epoch: int = 5,
           partition_epoch: int = 9, new_isr: tuple[BrokerState | int, ...] = (1, 2),
           state: LeaderRecoveryState = RECOVERED,
           brokers: dict[int, BrokerRegistration] | None = None) -> PartitionChangeRecord | None:
    return alter_partition(partition, topic_id=TID, partition_id=0, broker_id=broker_id,
                           leader_epoch=leader_epoch, partition_epoch=partition_epoch,
                           new_isr=new_isr, leader_recovery_state=state,
                           brokers=BROKERS if brokers is None else brokers)


def test_alter_partition_shrink_writes_isr_change() -> None:
    assert _alter(_partition()) == _change(isr=(1, 2))


def test_alter_partition_to_the_current_isr_returns_none() -> None:
    assert _alter(_partition(isr=(1, 2))) is None


def test_stale_leader_epoch_is_fenced() -> None:
    with pytest.raises(FencedLeaderEpochError, match="leader epoch 4 < current 5"):
        _alter(_partition(), leader_epoch=4)


def test_stale_partition_epoch_is_rejected() -> None:
    with pytest.raises(InvalidUpdateVersionError, match="partition epoch 8 < current 9") as info:
        _alter(_partition(), partition_epoch=8)
    assert info.value.code is ErrorCode.INVALID_UPDATE_VERSION


def test_newer_epochs_than_ours_mean_we_are_not_the_controller() -> None:
    with pytest.raises(NotControllerError):
        _alter(_partition(), partition_epoch=10)


def test_alter_partition_from_a_non_leader_is_an_invalid_request_as_in_kafka() -> None:
    with pytest.raises(InvalidRequestError, match="broker 2 is not the leader"):
        _alter(_partition(), broker_id=2)


def test_alter_partition_isr_without_leader_is_invalid() -> None:
    with pytest.raises(InvalidRequestError, match="omits the leader"):
        _alter(_partition(), new_isr=(2, 3))


def test_alter_partition_isr_outside_replicas_is_invalid() -> None:
    with pytest.raises(InvalidRequestError, match="not a subset"):
        _alter(_partition(), new_isr=(1, 4))


@pytest.mark.parametrize("member", [
    _broker(2, fenced=True), _broker(2, shutdown=True), None, _broker(2, epoch=7)])
def test_ineligible_isr_member_is_rejected(member: BrokerRegistration | None) -> None:
    brokers = dict(BROKERS)
    if member is None:
        del brokers[2]
    else:
        brokers[2] = member
    with pytest.raises(IneligibleReplicaError) as info:
        _alter(_partition(isr=(1,)), new_isr=(1, BrokerState(2, 100)), brokers=brokers)
    assert info.value.code is ErrorCode.INELIGIBLE_REPLICA


def test_isr_member_epoch_minus_one_skips_the_epoch_check() -> None:
    brokers = dict(BROKERS)
    brokers[2] = _broker(2, epoch=7)
    assert _alter(_partition(isr=(1,)), new_isr=(1, BrokerState(2, -1)), brokers=brokers) \
        == _change(isr=(1, 2))


def test_recovering_leader_may_not_expand_isr() -> None:
    partition = _partition(isr=(1,), state=RECOVERING)
    with pytest.raises(InvalidRequestError, match="recovering"):
        _alter(partition, new_isr=(1, 2), state=RECOVERING)


def test_recovered_leader_may_not_go_back_to_recovering() -> None:
    with pytest.raises(InvalidRequestError, match="RECOVERING"):
        _alter(_partition(isr=(1,)), new_isr=(1,), state=RECOVERING)


def test_recovering_leader_reports_recovered_and_expands() -> None:
    partition = _partition(isr=(1,), state=RECOVERING)
    assert _alter(partition, new_isr=(1, 2)) == _change(isr=(1, 2),
                                                       leader_recovery_state=RECOVERED)


def test_request_from_unregistered_or_stale_broker_epoch_is_rejected() -> None:
    check_broker_epoch(BROKERS, 1, 100)
    with pytest.raises(StaleBrokerEpochError):
        check_broker_epoch(BROKERS, 1, 99)
    with pytest.raises(StaleBrokerEpochError):
        check_broker_epoch(BROKERS, 9, 100)


# ---------------------------------------------------------------- properties


@st.composite
def _partitions(draw: st.DrawFn) -> PartitionRegistration:
    replicas = tuple(draw(st.permutations(range(1, 6)))[: draw(st.integers(1, 5))])
    isr = tuple(r for r in replicas if draw(st.booleans())) or replicas[:1]
    leader = draw(st.sampled_from((NO_LEADER, *isr)))
    return _partition(replicas=replicas, isr=isr, leader=leader)


@settings(max_examples=300, deadline=None)
@given(_partitions(), st.sets(st.integers(1, 5)), st.integers(1, 5), st.booleans())
def test_removal_result_keeps_partition_invariants(
    partition: PartitionRegistration, acceptable: set[int], broker: int, unclean: bool
) -> None:
    record = _remove(partition, broker, acceptable, unclean)
    after = partition if record is None else partition.merge(record)
    after.check_invariants("after")
    assert after.leader != broker
    assert after.leader == NO_LEADER or after.leader in acceptable
    if not unclean or after.leader_recovery_state is RECOVERED:
        # Clean: the ISR only shrinks; it stays [broker] when broker was the last member.
        assert set(after.isr) <= set(partition.isr)
        assert broker not in after.isr or after.isr == (broker,)
    if record is not None and record.leader is None:
        assert after.leader_epoch == partition.leader_epoch
    assert after.partition_epoch == partition.partition_epoch + (record is not None)
