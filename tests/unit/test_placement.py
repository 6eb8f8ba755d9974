"""Replica placement and its validation (controller/placement.py)."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.placement import (
    InvalidPartitionsError,
    InvalidReplicaAssignmentError,
    InvalidReplicationFactorError,
    assign_new_partitions,
    assign_replicas,
    new_partition_record,
    validate_manual_assignment,
)
from proto.errors import ErrorCode
from proto.metadata import PartitionRecord

TID = "11111111-1111-4111-8111-111111111111"


class _FixedRandom(random.Random):
    """randrange always returns `value`, to pin Kafka's start index and shift."""

    def __init__(self, value: int) -> None:
        super().__init__(0)
        self.value = value

    def randrange(self, *args: object, **kwargs: object) -> int:  # type: ignore[override]
        return self.value


def test_placement_matches_kafkas_rack_unaware_layout_for_fixed_start() -> None:
    # AdminUtilsTest.testReplicaAssignment-style expectation: start index 0, shift 0, 5 brokers.
    assignment = assign_replicas([0, 1, 2, 3, 4], num_partitions=10, replication_factor=3,
                                 rng=_FixedRandom(0))
    assert assignment == (
        (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 0), (4, 0, 1),
        (0, 2, 3), (1, 3, 4), (2, 4, 0), (3, 0, 1), (4, 1, 2),
    )


def test_placement_uses_sorted_broker_ids_whatever_the_input_order() -> None:
    a = assign_replicas([3, 1, 2], num_partitions=3, replication_factor=2, rng=random.Random(4))
    b = assign_replicas([2, 3, 1], num_partitions=3, replication_factor=2, rng=random.Random(4))
    assert a == b


def test_placement_is_reproducible_for_a_seed() -> None:
    def place(seed: int) -> tuple[tuple[int, ...], ...]:
        return assign_replicas(range(6), num_partitions=12, replication_factor=3,
                               rng=random.Random(seed))
    assert place(11) == place(11)


def test_zero_partitions_is_invalid_partitions() -> None:
    with pytest.raises(InvalidPartitionsError) as info:
        assign_replicas([1, 2], num_partitions=0, replication_factor=1, rng=random.Random(0))
    assert info.value.code is ErrorCode.INVALID_PARTITIONS


def test_replication_factor_above_live_brokers_is_invalid() -> None:
    with pytest.raises(InvalidReplicationFactorError, match="only 2 broker"):
        assign_replicas([1, 2], num_partitions=1, replication_factor=3, rng=random.Random(0))


def test_replication_factor_zero_is_invalid() -> None:
    with pytest.raises(InvalidReplicationFactorError):
        assign_replicas([1, 2], num_partitions=1, replication_factor=0, rng=random.Random(0))


def test_no_live_brokers_is_invalid_replication_factor() -> None:
    with pytest.raises(InvalidReplicationFactorError):
        assign_replicas([], num_partitions=1, replication_factor=1, rng=random.Random(0))


def test_add_partitions_keeps_existing_and_continues_leader_round_robin() -> None:
    existing = assign_replicas([1, 2, 3], num_partitions=2, replication_factor=2,
                               rng=_FixedRandom(1))
    assert [p[0] for p in existing] == [2, 3]
    added = assign_new_partitions(existing, [1, 2, 3], new_partition_count=5,
                                  rng=random.Random(0), topic="t")
    assert len(added) == 3
    assert [p[0] for p in existing + added] == [2, 3, 1, 2, 3]
    assert all(len(p) == 2 and len(set(p)) == 2 for p in added)


def test_add_partitions_must_increase_the_count() -> None:
    existing = ((1, 2), (2, 1))
    with pytest.raises(InvalidPartitionsError, match="already has 2"):
        assign_new_partitions(existing, [1, 2], new_partition_count=2, rng=random.Random(0))
    with pytest.raises(InvalidPartitionsError, match="would not be an increase"):
        assign_new_partitions(existing, [1, 2], new_partition_count=1, rng=random.Random(0))


def test_add_partitions_needs_enough_live_brokers_for_the_topics_replication_factor() -> None:
    with pytest.raises(InvalidReplicationFactorError):
        assign_new_partitions(((1, 2, 3),), [1, 2], new_partition_count=2, rng=random.Random(0))


def _validate(assignment: list[list[int]], replication_factor: int | None = None,
              first_partition_id: int = 0) -> tuple[tuple[int, ...], ...]:
    return validate_manual_assignment(
        assignment, registered_brokers={1, 2, 3}, active_brokers={1, 2},
        replication_factor=replication_factor, first_partition_id=first_partition_id)


def test_valid_manual_assignment_is_returned_as_tuples() -> None:
    assert _validate([[1, 2], [3, 1]]) == ((1, 2), (3, 1))


@pytest.mark.parametrize(("assignment", "message"), [
    ([], "empty"),
    ([[1, 2], []], "empty replica list for partition 1"),
    ([[1, 1]], "broker 1 more than once"),
    ([[1, 9]], "broker 9, but no such broker is registered"),
    ([[1, 2], [1]], "1 replica\\(s\\), but .* which have 2"),
    ([[3]], "fenced or in controlled shutdown"),
])
def test_bad_manual_assignment_is_invalid_replica_assignment(
    assignment: list[list[int]], message: str
) -> None:
    with pytest.raises(InvalidReplicaAssignmentError, match=message) as info:
        _validate(assignment)
    assert info.value.code is ErrorCode.INVALID_REPLICA_ASSIGNMENT


def test_manual_assignment_for_new_partitions_must_match_topic_replication_factor() -> None:
    with pytest.raises(InvalidReplicaAssignmentError, match="which have 3"):
        _validate([[1, 2]], replication_factor=3, first_partition_id=4)


def test_new_partition_isr_is_active_replicas_and_first_leads() -> None:
    assert new_partition_record(TID, 0, (3, 1, 2), {1, 2}) == PartitionRecord(
        TID, 0, (3, 1, 2), (1, 2), 1)


def test_new_partition_with_no_active_replica_is_rejected() -> None:
    with pytest.raises(InvalidReplicaAssignmentError):
        new_partition_record(TID, 0, (3,), {1, 2})


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 8), st.data(), st.integers(0, 2**32 - 1))
def test_placement_spreads_leaders_within_one_and_never_repeats_a_broker(
    num_brokers: int, data: st.DataObject, seed: int
) -> None:
    brokers = list(range(100, 100 + num_brokers))
    rf = data.draw(st.integers(1, num_brokers))
    partitions = data.draw(st.integers(1, 40))
    assignment = assign_replicas(brokers, num_partitions=partitions, replication_factor=rf,
                                 rng=random.Random(seed))
    assert len(assignment) == partitions, f"seed={seed}"
    for replicas in assignment:
        assert len(replicas) == rf and len(set(replicas)) == rf, f"seed={seed}"
        assert set(replicas) <= set(brokers), f"seed={seed}"
    leaders = Counter(replicas[0] for replicas in assignment)
    counts = [leaders.get(b, 0) for b in brokers]
    assert max(counts) - min(counts) <= 1, f"seed={seed} leaders={counts}"
    if partitions % num_brokers == 0:
        # Whole rounds: every broker holds the same number of replicas.
        replica_counts = Counter(b for replicas in assignment for b in replicas)
        assert len({replica_counts[b] for b in brokers}) == 1, f"seed={seed}"


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 6), st.data(), st.integers(0, 2**32 - 1))
def test_add_partitions_keeps_leaders_balanced_across_old_and_new(
    num_brokers: int, data: st.DataObject, seed: int
) -> None:
    brokers = list(range(num_brokers))
    rf = data.draw(st.integers(1, num_brokers))
    before = data.draw(st.integers(1, 20))
    after = before + data.draw(st.integers(1, 20))
    existing = assign_replicas(brokers, num_partitions=before, replication_factor=rf,
                               rng=random.Random(seed))
    added = assign_new_partitions(existing, brokers, new_partition_count=after,
                                  rng=random.Random(seed))
    leaders = Counter(p[0] for p in existing + added)
    counts = [leaders.get(b, 0) for b in brokers]
    assert max(counts) - min(counts) <= 1, f"seed={seed} leaders={counts}"
    assert all(len(set(p)) == rf for p in added), f"seed={seed}"
