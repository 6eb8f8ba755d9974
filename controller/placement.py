"""Replica placement for new topics and partitions, and the validation around it.

Theory of operation
-------------------
Placement is Kafka's rack-unaware assignment (`AdminUtils.assignReplicasToBrokersRackUnaware`),
a pure function of the sorted active broker list, two indexes and the partition ids:

    first replica of partition p = brokers[(p + start_index) % n]
    replica j+1 (j = 0..rf-2)    = brokers[(first + 1 + (shift + j) % (n - 1)) % n]
    shift += 1 each time p reaches a multiple of n (p > 0)

Leaders (first replicas) therefore go round-robin over the brokers, so for consecutive
partitions each broker's leader count differs by at most one; followers are offset from the
leader by 1..n-1 and the offset rotates every n partitions, spreading followers too; replicas of
one partition are distinct because the offsets 1 + (shift + j) % (n - 1) are distinct for rf ≤ n.

Randomness: for a new topic, `start_index` and the initial `shift` come from an injected
`random.Random` (Kafka uses a random start so that many small topics don't all lead on the
first broker). The simulation seeds it, so placement is reproducible per seed.
Adding partitions is deterministic, like Kafka's `AdminZkClient.createNewPartitionsAssignment`:
existing assignments are kept, and the new partitions continue the spread with start_index =
shift = the position of partition 0's first replica in the broker list (random only if that
broker is no longer active).

Only active brokers (registered, unfenced, not in controlled shutdown) receive replicas. Manual
assignments are validated like KRaft's `ReplicationControlManager` does: non-empty, no duplicate
broker, every broker registered, one replication factor for all partitions, and at least one
active replica per partition (it becomes the first leader).

Errors: INVALID_PARTITIONS (37), INVALID_REPLICATION_FACTOR (38), INVALID_REPLICA_ASSIGNMENT (39).
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence

from proto.errors import ErrorCode, error_class
from proto.metadata import PartitionRecord

InvalidPartitionsError = error_class(ErrorCode.INVALID_PARTITIONS)
InvalidReplicationFactorError = error_class(ErrorCode.INVALID_REPLICATION_FACTOR)
InvalidReplicaAssignmentError = error_class(ErrorCode.INVALID_REPLICA_ASSIGNMENT)

Assignment = tuple[tuple[int, ...], ...]  # partition id (index) → replicas in order


def assign_replicas(
    active_brokers: Collection[int],
    *,
    num_partitions: int,
    replication_factor: int,
    rng: random.Random,
) -> Assignment:
    """Place a new topic's partitions.

    Args:
        active_brokers: brokers that may receive replicas (unfenced, not shutting down).
        num_partitions: partitions to create (≥ 1).
        replication_factor: replicas per partition (1 ≤ rf ≤ len(active_brokers)).
        rng: chooses the start index and replica shift.

    Raises:
        InvalidPartitionsError: num_partitions < 1.
        InvalidReplicationFactorError: rf < 1 or more than the active brokers.
    """
    validate_partition_count(num_partitions)
    brokers = _brokers_for(active_brokers, replication_factor)
    start_index = rng.randrange(len(brokers))
    shift = rng.randrange(len(brokers))
    return _rack_unaware(brokers, num_partitions, replication_factor, start_index, shift, 0)


def assign_new_partitions(
    existing: Sequence[Sequence[int]],
    active_brokers: Collection[int],
    *,
    new_partition_count: int,
    rng: random.Random,
    topic: str = "",
) -> Assignment:
    """Place the partitions CreatePartitions adds; returns only the new ones (ids len(existing)..).

    The replication factor is that of partition 0. Existing assignments are never changed.

    Raises:
        InvalidPartitionsError: new_partition_count is not above the current count.
        InvalidReplicationFactorError: fewer active brokers than the topic's replication factor.
    """
    validate_partition_increase(len(existing), new_partition_count, topic)
    replication_factor = len(existing[0])
    brokers = _brokers_for(active_brokers, replication_factor)
    first = existing[0][0]
    start_index = brokers.index(first) if first in brokers else rng.randrange(len(brokers))
    return _rack_unaware(
        brokers,
        new_partition_count - len(existing),
        replication_factor,
        start_index,
        start_index,  # Kafka passes the fixed start index as the initial shift too
        len(existing),
    )


def _brokers_for(active_brokers: Collection[int], replication_factor: int) -> list[int]:
    brokers = sorted(set(active_brokers))
    if replication_factor < 1:
        raise InvalidReplicationFactorError(
            f"Replication factor must be larger than 0, not {replication_factor}."
        )
    if replication_factor > len(brokers):
        raise InvalidReplicationFactorError(
            f"Unable to replicate the partition {replication_factor} time(s): The target "
            f"replication factor of {replication_factor} cannot be reached because only "
            f"{len(brokers)} broker(s) are active."
        )
    return brokers


def _rack_unaware(
    brokers: Sequence[int],
    num_partitions: int,
    replication_factor: int,
    start_index: int,
    shift: int,
    start_partition_id: int,
) -> Assignment:
    """Kafka's assignReplicasToBrokersRackUnaware, for partition ids from start_partition_id."""
    n = len(brokers)
    result: list[tuple[int, ...]] = []
    for partition_id in range(start_partition_id, start_partition_id + num_partitions):
        if partition_id > 0 and partition_id % n == 0:
            shift += 1
        first = (partition_id + start_index) % n
        replicas = [brokers[first]]
        for j in range(replication_factor - 1):
            replicas.append(brokers[(first + 1 + (shift + j) % (n - 1)) % n])
        result.append(tuple(replicas))
    return tuple(result)


def validate_partition_count(num_partitions: int) -> None:
    """Raises InvalidPartitionsError unless num_partitions ≥ 1."""
    if num_partitions < 1:
        raise InvalidPartitionsError(
            f"Number of partitions was set to an invalid non-positive value: {num_partitions}."
        )


def validate_partition_increase(current: int, new_total: int, topic: str = "") -> None:
    """Raises InvalidPartitionsError unless new_total > current (CreatePartitions)."""
    if new_total == current:
        raise InvalidPartitionsError(f"Topic {topic} already has {current} partition(s).")
    if new_total < current:
        raise InvalidPartitionsError(
            f"The topic {topic} currently has {current} partition(s); {new_total} would not "
            "be an increase."
        )


def validate_manual_assignment(
    assignment: Sequence[Sequence[int]],
    *,
    registered_brokers: Collection[int],
    active_brokers: Collection[int],
    replication_factor: int | None = None,
    first_partition_id: int = 0,
) -> Assignment:
    """Check a user-given assignment (CreateTopics / CreatePartitions with assignments).

    Args:
        assignment: replicas for partitions first_partition_id, first_partition_id + 1, ...
        registered_brokers: every registered broker id.
        active_brokers: brokers that may be in the initial ISR.
        replication_factor: required size of each replica list (the topic's, when adding
            partitions); None: taken from the first entry.

    Returns:
        The assignment as tuples.

    Raises:
        InvalidReplicaAssignmentError: empty, a duplicate broker, an unregistered broker,
            inconsistent replication factors, or no active replica in a partition.
    """
    if not assignment:
        raise InvalidReplicaAssignmentError("The manual partition assignment is empty.")
    registered = set(registered_brokers)
    active = set(active_brokers)
    expected = replication_factor
    result: list[tuple[int, ...]] = []
    for index, replicas in enumerate(assignment):
        partition_id = first_partition_id + index
        if not replicas:
            raise InvalidReplicaAssignmentError(
                f"The manual partition assignment includes an empty replica list for "
                f"partition {partition_id}."
            )
        for broker in replicas:
            if replicas.count(broker) > 1:
                raise InvalidReplicaAssignmentError(
                    f"The manual partition assignment for partition {partition_id} includes "
                    f"the broker {broker} more than once."
                )
            if broker not in registered:
                raise InvalidReplicaAssignmentError(
                    f"The manual partition assignment for partition {partition_id} includes "
                    f"broker {broker}, but no such broker is registered."
                )
        if expected is None:
            expected = len(replicas)
        elif len(replicas) != expected:
            raise InvalidReplicaAssignmentError(
                f"The manual partition assignment includes a partition with {len(replicas)} "
                f"replica(s), but this is not consistent with previous partitions, which have "
                f"{expected} replica(s)."
            )
        if not any(broker in active for broker in replicas):
            raise InvalidReplicaAssignmentError(
                f"All brokers specified in the manual partition assignment for partition "
                f"{partition_id} are fenced or in controlled shutdown."
            )
        result.append(tuple(replicas))
    return tuple(result)


def new_partition_record(
    topic_id: str,
    partition_id: int,
    replicas: Sequence[int],
    active_brokers: Collection[int],
) -> PartitionRecord:
    """The PartitionRecord for a new partition: ISR = active replicas, leader = ISR[0] (§5.6).

    Raises:
        InvalidReplicaAssignmentError: no replica is active.
    """
    active = set(active_brokers)
    isr = tuple(r for r in replicas if r in active)
    if not isr:
        raise InvalidReplicaAssignmentError(
            f"All brokers specified for partition {partition_id} are fenced or in controlled "
            "shutdown."
        )
    return PartitionRecord(
        topic_id=topic_id,
        partition_id=partition_id,
        replicas=tuple(replicas),
        isr=isr,
        leader=isr[0],
    )
