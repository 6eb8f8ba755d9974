"""Client-side partition assignors: range, roundrobin, cooperative-sticky (KAFKA_SEMANTICS §6.4).

The group leader runs one of these over every member's `Subscription` (decoded JoinGroup
metadata) and sends the result in SyncGroup. They are pure functions of their inputs, with a
deterministic order everywhere, so every leader computes the same answer.

- Member order for range and roundrobin is Kafka's `MemberInfo` order: by `group.instance.id`
  when both members have one, static members before dynamic ones, otherwise by member id. Java
  compares strings by UTF-16 code unit, so we do too.
- range works per topic (contiguous ranges, the first `P mod C` members get one more);
  roundrobin deals all partitions of all subscribed topics (topics sorted) over the members,
  skipping members not subscribed to the partition's topic.
- cooperative-sticky balances first, then keeps as many current owners as it can. Claims on one
  partition are settled by generation: the higher generation wins, equal generations both lose
  it. Its COOPERATIVE rule (KIP-429) then removes from the target every partition that another
  member still owns: that owner revokes it, rejoins, and the next rebalance hands it over.

Not modelled: rack-aware range/sticky (KIP-881) — `rack_id` travels but does not steer.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from clients.consumer.protocol import Assignment, Subscription
from clients.types import TopicPartition
from proto.config import ConfigError
from proto.errors import ErrorCode, RafkaError

__all__ = [
    "CooperativeStickyAssignor",
    "PartitionAssignor",
    "RangeAssignor",
    "RebalanceProtocol",
    "RoundRobinAssignor",
    "assignor_named",
    "assignors_for",
    "choose_protocol",
    "member_sort_key",
    "validate_cooperative_assignment",
]

_GENERATION = struct.Struct(">i")
_NO_GENERATION = -1


class RebalanceProtocol(Enum):
    """Kafka's `RebalanceProtocol`; a larger value is the more advanced protocol."""

    EAGER = 0
    COOPERATIVE = 1


class PartitionAssignor(Protocol):
    name: str
    protocols: tuple[RebalanceProtocol, ...]

    def subscription_user_data(
        self, owned: Collection[TopicPartition], generation: int
    ) -> bytes | None: ...

    def assign(
        self,
        partitions_per_topic: Mapping[str, int],
        subscriptions: Mapping[str, Subscription],
        instance_ids: Mapping[str, str | None] | None = None,
    ) -> dict[str, Assignment]: ...


def _java_order(value: str) -> bytes:
    # Big-endian UTF-16 bytes compare exactly like Java's String.compareTo (code units).
    return value.encode("utf-16-be", "surrogatepass")


def member_sort_key(member_id: str, instance_id: str | None) -> tuple[int, bytes]:
    """Kafka's `MemberInfo.compareTo`: static members (by instance id) before dynamic ones
    (by member id)."""
    if instance_id is not None:
        return (0, _java_order(instance_id))
    return (1, _java_order(member_id))


def _sorted_members(
    members: Iterable[str], instance_ids: Mapping[str, str | None] | None
) -> list[str]:
    ids = instance_ids or {}
    # member id as a final tie-break keeps the order total if two members share an instance id.
    return sorted(members, key=lambda m: (member_sort_key(m, ids.get(m)), _java_order(m)))


def _result(
    members: Iterable[str], assigned: Mapping[str, Iterable[TopicPartition]]
) -> dict[str, Assignment]:
    return {m: Assignment(tuple(sorted(assigned.get(m, ())))) for m in members}


# ---------------------------------------------------------------- eager assignors


class RangeAssignor:
    """Kafka's `RangeAssignor` (without rack awareness)."""

    name = "range"
    protocols: tuple[RebalanceProtocol, ...] = (RebalanceProtocol.EAGER,)

    def subscription_user_data(
        self, owned: Collection[TopicPartition], generation: int
    ) -> bytes | None:
        return None

    def assign(
        self,
        partitions_per_topic: Mapping[str, int],
        subscriptions: Mapping[str, Subscription],
        instance_ids: Mapping[str, str | None] | None = None,
    ) -> dict[str, Assignment]:
        members = _sorted_members(subscriptions, instance_ids)
        assigned: dict[str, list[TopicPartition]] = {m: [] for m in members}
        topics = sorted({t for s in subscriptions.values() for t in s.topics})
        for topic in topics:
            count = partitions_per_topic.get(topic)
            if count is None:
                continue  # unknown to metadata: nobody gets it (Kafka logs and skips)
            consumers = [m for m in members if topic in subscriptions[m].topics]
            per_member, extra = divmod(count, len(consumers))
            for i, member in enumerate(consumers):
                start = per_member * i + min(i, extra)
                length = per_member + (1 if i < extra else 0)
                assigned[member].extend(
                    TopicPartition(topic, p) for p in range(start, start + length)
                )
        return _result(members, assigned)


class RoundRobinAssignor:
    """Kafka's `RoundRobinAssignor`."""

    name = "roundrobin"
    protocols: tuple[RebalanceProtocol, ...] = (RebalanceProtocol.EAGER,)

    def subscription_user_data(
        self, owned: Collection[TopicPartition], generation: int
    ) -> bytes | None:
        return None

    def assign(
        self,
        partitions_per_topic: Mapping[str, int],
        subscriptions: Mapping[str, Subscription],
        instance_ids: Mapping[str, str | None] | None = None,
    ) -> dict[str, Assignment]:
        members = _sorted_members(subscriptions, instance_ids)
        assigned: dict[str, list[TopicPartition]] = {m: [] for m in members}
        if not members:
            return {}
        topics = sorted({t for s in subscriptions.values() for t in s.topics})
        cursor = 0
        for topic in topics:
            for partition in range(partitions_per_topic.get(topic, 0)):
                # Someone subscribes to every topic in `topics`, so this loop ends.
                while topic not in subscriptions[members[cursor]].topics:
                    cursor = (cursor + 1) % len(members)
                assigned[members[cursor]].append(TopicPartition(topic, partition))
                cursor = (cursor + 1) % len(members)
        return _result(members, assigned)


# ---------------------------------------------------------------- cooperative-sticky


@dataclass(frozen=True, slots=True)
class _MemberData:
    owned: tuple[TopicPartition, ...]
    generation: int


def _member_data(subscription: Subscription) -> _MemberData:
    """Owned partitions and generation: the subscription's GenerationId (v2+), else the
    generation the cooperative-sticky assignor put in UserData, else none."""
    generation = subscription.generation_id
    if generation < 0 and subscription.user_data and len(subscription.user_data) >= 4:
        generation = _GENERATION.unpack_from(subscription.user_data)[0]
    return _MemberData(subscription.owned_partitions, generation)


class CooperativeStickyAssignor:
    """Kafka's `CooperativeStickyAssignor`: balanced, sticky, incremental (two-phase)."""

    name = "cooperative-sticky"
    protocols: tuple[RebalanceProtocol, ...] = (
        RebalanceProtocol.COOPERATIVE,
        RebalanceProtocol.EAGER,
    )

    def subscription_user_data(
        self, owned: Collection[TopicPartition], generation: int
    ) -> bytes | None:
        # Kafka's COOPERATIVE_STICKY_ASSIGNOR_USER_DATA_V0: one int32, the generation; for
        # leaders that read subscriptions older than v2 (no GenerationId field).
        return _GENERATION.pack(generation)

    def assign(
        self,
        partitions_per_topic: Mapping[str, int],
        subscriptions: Mapping[str, Subscription],
        instance_ids: Mapping[str, str | None] | None = None,
    ) -> dict[str, Assignment]:
        target = self.sticky_target(partitions_per_topic, subscriptions, instance_ids)
        # The cooperative rule (Kafka's partitionsTransferringOwnership): a partition that goes
        # to a member not owning it, while a member that owns it loses it, is withheld this
        # round; the loser revokes it and rejoins, and the next rebalance hands it over.
        revoked: set[TopicPartition] = set()
        for member, subscription in subscriptions.items():
            revoked |= set(subscription.owned_partitions) - set(target.get(member, ()))
        assigned = {
            member: [
                tp for tp in partitions
                if tp in subscriptions[member].owned_partitions or tp not in revoked
            ]
            for member, partitions in target.items()
        }
        return _result(target, assigned)

    def sticky_target(
        self,
        partitions_per_topic: Mapping[str, int],
        subscriptions: Mapping[str, Subscription],
        instance_ids: Mapping[str, str | None] | None = None,
    ) -> dict[str, list[TopicPartition]]:
        """The balanced, sticky assignment before the cooperative rule is applied."""
        members = _sorted_members(subscriptions, instance_ids)
        if not members:
            return {}
        eligible = {
            m: {t for t in subscriptions[m].topics if t in partitions_per_topic} for m in members
        }
        current = _settle_claims(members, subscriptions, eligible, partitions_per_topic)
        all_partitions = sorted(
            TopicPartition(t, p)
            for t in sorted(set().union(*eligible.values()))
            for p in range(partitions_per_topic[t])
        )
        if all(eligible[m] == eligible[members[0]] for m in members):
            return _constrained(members, current, all_partitions)
        return _general(members, current, all_partitions, eligible)


def _settle_claims(
    members: list[str],
    subscriptions: Mapping[str, Subscription],
    eligible: Mapping[str, set[str]],
    partitions_per_topic: Mapping[str, int],
) -> dict[str, list[TopicPartition]]:
    """Who may keep what: claims on existing, still-subscribed partitions; of two claims the
    higher generation wins, equal generations invalidate both (a zombie or a bug; Kafka logs
    an error and revokes the partition from both)."""
    # partition -> (owner, generation); owner None = two claims of that generation cancelled.
    owner: dict[TopicPartition, tuple[str | None, int]] = {}
    for member in members:
        data = _member_data(subscriptions[member])
        for tp in data.owned:
            if tp.topic not in eligible[member]:
                continue
            if not 0 <= tp.partition < partitions_per_topic[tp.topic]:
                continue
            previous = owner.get(tp)
            if previous is None or data.generation > previous[1]:
                owner[tp] = (member, data.generation)
            elif data.generation == previous[1] and previous[0] != member:
                owner[tp] = (None, data.generation)
    current: dict[str, list[TopicPartition]] = {m: [] for m in members}
    for tp, (holder, _) in sorted(owner.items()):
        if holder is not None:
            current[holder].append(tp)
    return current


def _constrained(
    members: list[str],
    current: Mapping[str, list[TopicPartition]],
    all_partitions: list[TopicPartition],
) -> dict[str, list[TopicPartition]]:
    """Equal subscriptions: every member ends with minQuota or maxQuota partitions, exactly
    `P mod C` of them with maxQuota, and keeps as many of its own as that allows."""
    min_quota, over = divmod(len(all_partitions), len(members))
    max_quota = min_quota + (1 if over else 0)
    assigned: dict[str, list[TopicPartition]] = {}
    at_max = 0
    # Members owning the most keep the maxQuota slots: that maximises what stays put.
    for member in sorted(members, key=lambda m: -len(current[m])):
        owned = current[member]
        if len(owned) >= max_quota and at_max < over:
            assigned[member] = owned[:max_quota]
            at_max += 1
        else:
            assigned[member] = owned[:min_quota]
    taken = {tp for partitions in assigned.values() for tp in partitions}
    free = [tp for tp in all_partitions if tp not in taken]
    # Deal round-robin (spreads each topic over members) up to minQuota, then hand out the
    # remaining maxQuota slots. The counts add up exactly, so `free` ends empty.
    pending = deque(free)
    under = [m for m in members if len(assigned[m]) < min_quota]
    while under:
        for member in list(under):
            assigned[member].append(pending.popleft())
            if len(assigned[member]) == min_quota:
                under.remove(member)
    for member in members:
        if not pending:
            break
        if len(assigned[member]) == min_quota and at_max < over:
            assigned[member].append(pending.popleft())
            at_max += 1
    return {m: assigned[m] for m in members}


def _general(
    members: list[str],
    current: Mapping[str, list[TopicPartition]],
    all_partitions: list[TopicPartition],
    eligible: Mapping[str, set[str]],
) -> dict[str, list[TopicPartition]]:
    """Unequal subscriptions: keep current owners, give each free partition to the least
    loaded member that can take it (hardest-to-place first), then move partitions from fuller
    to emptier members until no single move makes the assignment more even."""
    assigned = {m: list(current[m]) for m in members}
    kept = {tp: m for m, tps in assigned.items() for tp in tps}
    order = {m: i for i, m in enumerate(members)}
    by_topic = {
        topic: [m for m in members if topic in eligible[m]]
        for topic in sorted({tp.topic for tp in all_partitions})
    }
    free = [tp for tp in all_partitions if tp not in kept]
    free.sort(key=lambda tp: (len(by_topic[tp.topic]), tp))
    for tp in free:
        member = min(by_topic[tp.topic], key=lambda m: (len(assigned[m]), order[m]))
        assigned[member].append(tp)
    # Each move lowers the sum of squared counts, so this terminates.
    while True:
        move = _best_move(members, assigned, by_topic, kept, order)
        if move is None:
            break
        tp, source, target = move
        assigned[source].remove(tp)
        assigned[target].append(tp)
    return {m: sorted(assigned[m]) for m in members}


def _best_move(
    members: list[str],
    assigned: Mapping[str, list[TopicPartition]],
    by_topic: Mapping[str, list[str]],
    kept: Mapping[TopicPartition, str],
    order: Mapping[str, int],
) -> tuple[TopicPartition, str, str] | None:
    """The partition move that evens counts the most: biggest gap first; among equals a
    partition the source did not already own before this rebalance, then member order."""
    counts = {m: len(assigned[m]) for m in members}
    lightest = {
        topic: min(candidates, key=lambda m: (counts[m], order[m]))
        for topic, candidates in by_topic.items()
    }
    best: tuple[tuple[int, int, int, int], tuple[TopicPartition, str, str]] | None = None
    for source in sorted(members, key=lambda m: (-counts[m], order[m])):
        if best is not None and counts[source] - min(counts.values()) < -best[0][0]:
            break  # nobody lighter-loaded can give a bigger gap
        for tp in assigned[source]:
            target = lightest[tp.topic]
            gap = counts[source] - counts[target]
            if gap < 2:
                continue
            rank = (-gap, 1 if kept.get(tp) == source else 0, order[source], order[target])
            if best is None or rank < best[0]:
                best = (rank, (tp, source, target))
    return None if best is None else best[1]


# ---------------------------------------------------------------- selection


_BY_NAME: dict[str, type[RangeAssignor | RoundRobinAssignor | CooperativeStickyAssignor]] = {
    "range": RangeAssignor,
    "roundrobin": RoundRobinAssignor,
    "cooperative-sticky": CooperativeStickyAssignor,
    "org.apache.kafka.clients.consumer.RangeAssignor": RangeAssignor,
    "org.apache.kafka.clients.consumer.RoundRobinAssignor": RoundRobinAssignor,
    "org.apache.kafka.clients.consumer.CooperativeStickyAssignor": CooperativeStickyAssignor,
}


def assignors_for(strategy: Sequence[str] | str) -> list[PartitionAssignor]:
    """The assignors of `partition.assignment.strategy`, in preference order.

    Accepts short names and Kafka class names; a string is a comma-separated list.

    Raises:
        ConfigError: an unknown or repeated name, or an empty list.
    """
    names = strategy.split(",") if isinstance(strategy, str) else list(strategy)
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise ConfigError("partition.assignment.strategy must name at least one assignor")
    result: list[PartitionAssignor] = []
    for raw in names:
        cls = _BY_NAME.get(raw)
        if cls is None:
            known = ", ".join(n for n in _BY_NAME if "." not in n)
            raise ConfigError(
                f"partition.assignment.strategy: unknown assignor {raw!r} (known: {known})"
            )
        if any(a.name == cls.name for a in result):
            raise ConfigError(f"partition.assignment.strategy names {cls.name!r} twice")
        result.append(cls())
    return result


def assignor_named(assignors: Sequence[PartitionAssignor], name: str) -> PartitionAssignor:
    """The assignor the coordinator chose (JoinGroup's ProtocolName).

    Raises:
        RafkaError: INCONSISTENT_GROUP_PROTOCOL when this member does not have it.
    """
    for assignor in assignors:
        if assignor.name == name:
            return assignor
    raise RafkaError.for_code(
        ErrorCode.INCONSISTENT_GROUP_PROTOCOL, f"the group chose assignor {name!r}, unknown here"
    )


def choose_protocol(assignors: Sequence[PartitionAssignor]) -> RebalanceProtocol:
    """Kafka's rule (ConsumerCoordinator): the most advanced protocol every assignor supports.

    Raises:
        ConfigError: no assignors, or no protocol common to all of them.
    """
    if not assignors:
        raise ConfigError("partition.assignment.strategy must name at least one assignor")
    common = set(assignors[0].protocols)
    for assignor in assignors[1:]:
        common &= set(assignor.protocols)
    if not common:
        raise ConfigError(
            "partition.assignment.strategy: the assignors share no rebalance protocol: "
            + ", ".join(f"{a.name}={[p.name for p in a.protocols]}" for a in assignors)
        )
    return max(common, key=lambda p: p.value)


def validate_cooperative_assignment(
    owned: Mapping[str, Collection[TopicPartition]], assignment: Mapping[str, Assignment]
) -> None:
    """The leader's check (Kafka's `validateCooperativeAssignment`): no partition may go to a
    new owner while another member still owns it.

    Raises:
        RafkaError: INCONSISTENT_GROUP_PROTOCOL naming the offending partitions.
    """
    added: set[TopicPartition] = set()
    revoked: set[TopicPartition] = set()
    for member, a in assignment.items():
        mine = set(owned.get(member, ()))
        added |= set(a.partitions) - mine
        revoked |= mine - set(a.partitions)
    bad = sorted(added & revoked)
    if bad:
        raise RafkaError.for_code(
            ErrorCode.INCONSISTENT_GROUP_PROTOCOL,
            "cooperative assignment gives partitions still owned by other members: "
            + ", ".join(str(tp) for tp in bad),
        )
