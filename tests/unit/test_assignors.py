"""Assignors: Kafka's examples, member order, negotiation, and properties under random groups."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clients.consumer.assignors import (
    CooperativeStickyAssignor,
    PartitionAssignor,
    RangeAssignor,
    RebalanceProtocol,
    RoundRobinAssignor,
    assignor_named,
    assignors_for,
    choose_protocol,
    validate_cooperative_assignment,
)
from clients.consumer.protocol import Assignment, Subscription
from clients.types import TopicPartition
from proto.config import ConfigError
from proto.errors import ErrorCode, RafkaError

TP = TopicPartition


def tps(spec: str) -> set[TopicPartition]:
    """'t0p0 t1p2' -> {TP('t0', 0), TP('t1', 2)}"""
    out = set()
    for item in spec.split():
        topic, _, partition = item.rpartition("p")
        out.add(TP(topic, int(partition)))
    return out


def as_sets(result: Mapping[str, Assignment]) -> dict[str, set[TopicPartition]]:
    return {m: set(a.partitions) for m, a in result.items()}


def subs(**topics: tuple[str, ...]) -> dict[str, Subscription]:
    return {m: Subscription(t) for m, t in topics.items()}


# ---------------------------------------------------------------- Kafka's examples


def test_range_example_from_kafka_docs() -> None:
    result = RangeAssignor().assign({"t0": 3, "t1": 3}, subs(C0=("t0", "t1"), C1=("t0", "t1")))
    assert as_sets(result) == {"C0": tps("t0p0 t0p1 t1p0 t1p1"), "C1": tps("t0p2 t1p2")}


def test_roundrobin_example_from_kafka_docs() -> None:
    result = RoundRobinAssignor().assign(
        {"t0": 3, "t1": 3}, subs(C0=("t0", "t1"), C1=("t0", "t1"))
    )
    assert as_sets(result) == {"C0": tps("t0p0 t0p2 t1p1"), "C1": tps("t0p1 t1p0 t1p2")}


def test_range_is_per_topic_and_only_to_subscribers() -> None:
    result = RangeAssignor().assign(
        {"a": 5, "b": 2}, subs(m1=("a",), m2=("a", "b"), m3=("b",))
    )
    assert as_sets(result) == {
        "m1": tps("ap0 ap1 ap2"),
        "m2": tps("ap3 ap4 bp0"),
        "m3": tps("bp1"),
    }


def test_roundrobin_skips_members_not_subscribed() -> None:
    # Kafka's RoundRobinAssignorTest.testTwoConsumersOneTopicTwoTopics-style unequal case.
    result = RoundRobinAssignor().assign(
        {"t0": 1, "t1": 2, "t2": 3},
        subs(C0=("t0",), C1=("t0", "t1"), C2=("t0", "t1", "t2")),
    )
    assert as_sets(result) == {
        "C0": tps("t0p0"),
        "C1": tps("t1p0"),
        "C2": tps("t1p1 t2p0 t2p1 t2p2"),
    }


def test_unknown_topics_are_skipped_and_every_member_gets_an_entry() -> None:
    for assignor in (RangeAssignor(), RoundRobinAssignor(), CooperativeStickyAssignor()):
        result = assignor.assign({"a": 1}, subs(m1=("a",), m2=("missing",)))
        assert as_sets(result) == {"m1": tps("ap0"), "m2": set()}, assignor.name
        assert assignor.assign({"a": 1}, {}) == {}


# ---------------------------------------------------------------- member order


def test_static_members_sort_by_instance_id_before_dynamic_ones() -> None:
    subscriptions = subs(a=("t",), b=("t",), c=("t",))
    # member ids are random per incarnation; instance ids make the order stable.
    result = RangeAssignor().assign({"t": 3}, subscriptions, {"a": "z", "b": None, "c": "y"})
    assert as_sets(result) == {"c": tps("tp0"), "a": tps("tp1"), "b": tps("tp2")}


def test_static_assignment_survives_a_restart_with_a_new_member_id() -> None:
    before = RangeAssignor().assign(
        {"t": 4}, subs(m1=("t",), m2=("t",)), {"m1": "host-b", "m2": "host-a"}
    )
    after = RangeAssignor().assign(
        {"t": 4}, subs(m1=("t",), m0=("t",)), {"m1": "host-b", "m0": "host-a"}
    )
    assert as_sets(before)["m2"] == as_sets(after)["m0"]
    assert as_sets(before)["m1"] == as_sets(after)["m1"]


def test_member_ids_compare_like_java_strings() -> None:
    # U+FF21 sorts after U+1F600 by code point but before it by UTF-16 code unit (Java).
    result = RangeAssignor().assign({"t": 2}, subs(**{"\U0001F600": ("t",), "\uFF21": ("t",)}))
    assert as_sets(result) == {"\U0001F600": tps("tp0"), "\uFF21": tps("tp1")}


# ---------------------------------------------------------------- names and negotiation


def test_assignors_for_accepts_short_and_kafka_class_names() -> None:
    found = assignors_for([
        "org.apache.kafka.clients.consumer.RangeAssignor",
        "roundrobin",
        "org.apache.kafka.clients.consumer.CooperativeStickyAssignor",
    ])
    assert [a.name for a in found] == ["range", "roundrobin", "cooperative-sticky"]
    assert [a.name for a in assignors_for("range, cooperative-sticky")] == [
        "range", "cooperative-sticky",
    ]


@pytest.mark.parametrize("strategy", [[], "", ["sticky-ish"], ["range", "range"]])
def test_assignors_for_rejects_bad_lists(strategy: list[str] | str) -> None:
    with pytest.raises(ConfigError):
        assignors_for(strategy)


def test_protocol_is_cooperative_only_if_every_assignor_supports_it() -> None:
    assert choose_protocol(assignors_for(["cooperative-sticky"])) is RebalanceProtocol.COOPERATIVE
    # Kafka 3.0+'s default list: eager until range is dropped.
    default = assignors_for(["range", "cooperative-sticky"])
    assert choose_protocol(default) is RebalanceProtocol.EAGER
    assert choose_protocol(assignors_for(["roundrobin"])) is RebalanceProtocol.EAGER
    with pytest.raises(ConfigError):
        choose_protocol([])


def test_assignor_named_finds_the_groups_choice() -> None:
    assignors = assignors_for(["range", "cooperative-sticky"])
    assert assignor_named(assignors, "cooperative-sticky").name == "cooperative-sticky"
    with pytest.raises(RafkaError) as info:
        assignor_named(assignors, "roundrobin")
    assert info.value.code is ErrorCode.INCONSISTENT_GROUP_PROTOCOL


def test_cooperative_sticky_user_data_is_the_generation() -> None:
    assert CooperativeStickyAssignor().subscription_user_data([], 7) == b"\x00\x00\x00\x07"
    assert RangeAssignor().subscription_user_data([], 7) is None


# ---------------------------------------------------------------- cooperative-sticky examples


def _owning(topics: tuple[str, ...], owned: str, generation: int) -> Subscription:
    return Subscription(topics, owned_partitions=tuple(sorted(tps(owned))),
                        generation_id=generation)


def test_cooperative_sticky_joins_in_two_phases() -> None:
    assignor = CooperativeStickyAssignor()
    counts = {"t": 4}
    first = as_sets(assignor.assign(counts, subs(a=("t",), b=("t",))))
    assert {len(p) for p in first.values()} == {2}
    # c joins: the target moves one partition from a and one from b to c, but while a and b
    # still own them c gets nothing; a and b just lose them.
    second_in = {m: _owning(("t",), " ".join(f"{tp.topic}p{tp.partition}" for tp in first[m]), 1)
                 for m in first}
    second_in["c"] = Subscription(("t",))
    second = as_sets(assignor.assign(counts, second_in))
    assert second["c"] == set()
    assert second["a"] < first["a"] or second["b"] < first["b"]
    revoked = (first["a"] - second["a"]) | (first["b"] - second["b"])
    assert len(revoked) == 1  # 4 partitions, 3 members: only one has to move
    # Second round: the revoked partition goes to c; nothing else moves.
    third_in = {m: Subscription(("t",), owned_partitions=tuple(sorted(second[m])), generation_id=2)
                for m in second}
    third = as_sets(assignor.assign(counts, third_in))
    assert third["c"] == revoked
    assert third["a"] == second["a"] and third["b"] == second["b"]


def test_higher_generation_wins_a_disputed_partition() -> None:
    assignor = CooperativeStickyAssignor()
    result = as_sets(assignor.assign({"t": 2}, {
        "old": _owning(("t",), "tp0 tp1", 3),
        "new": _owning(("t",), "tp0", 4),
    }))
    # new keeps tp0; old keeps tp1; tp0 is not handed to anyone else.
    assert result == {"new": tps("tp0"), "old": tps("tp1")}


def test_equal_generations_invalidate_both_claims() -> None:
    # Two claims of one generation: neither keeps tp0 by right, so it is placed like a free
    # partition (here to a, which has room); b loses it.
    target = CooperativeStickyAssignor().sticky_target({"t": 3}, {
        "a": _owning(("t",), "tp0", 5),
        "b": _owning(("t",), "tp0 tp1 tp2", 5),
    })
    assert {m: set(p) for m, p in target.items()} == {"a": tps("tp0"), "b": tps("tp1 tp2")}
    target = CooperativeStickyAssignor().sticky_target({"t": 2}, {
        "a": _owning(("t",), "tp0", 5),
        "b": _owning(("t",), "tp0", 5),
        "c": Subscription(("t",)),
    })
    # a, b and c are all below quota and tp0 is free: the first member in order takes it.
    assert {m: set(p) for m, p in target.items()} == {"a": tps("tp0"), "b": tps("tp1"), "c": set()}


def test_generation_from_user_data_when_the_subscription_has_none() -> None:
    assignor = CooperativeStickyAssignor()
    v1_style = {
        "old": Subscription(("t",), user_data=assignor.subscription_user_data((), 3),
                            owned_partitions=(TP("t", 0),)),
        "new": Subscription(("t",), user_data=assignor.subscription_user_data((), 4),
                            owned_partitions=(TP("t", 0),)),
    }
    assert as_sets(assignor.assign({"t": 1}, v1_style)) == {"new": tps("tp0"), "old": set()}


def test_validate_cooperative_assignment() -> None:
    owned = {"a": [TP("t", 0)], "b": []}
    validate_cooperative_assignment(owned, {"a": Assignment((TP("t", 0),)), "b": Assignment(())})
    with pytest.raises(RafkaError) as info:
        validate_cooperative_assignment(
            owned, {"a": Assignment(()), "b": Assignment((TP("t", 0),))}
        )
    assert info.value.code is ErrorCode.INCONSISTENT_GROUP_PROTOCOL


# ---------------------------------------------------------------- properties


@st.composite
def groups(
    draw: st.DrawFn, equal: bool | None = None
) -> tuple[dict[str, int], dict[str, Subscription]]:
    topic_names = [f"t{i}" for i in range(draw(st.integers(1, 4)))]
    counts = {t: draw(st.integers(0, 7)) for t in topic_names}
    members = draw(st.lists(st.text("abcxyz", min_size=1, max_size=4), min_size=1, max_size=6,
                            unique=True))
    same = draw(st.booleans()) if equal is None else equal
    shared = tuple(draw(st.lists(st.sampled_from(topic_names + ["gone"]), min_size=1, unique=True)))
    subscriptions = {}
    for m in members:
        topics = shared if same else tuple(draw(st.lists(st.sampled_from(topic_names), min_size=1,
                                                         unique=True)))
        subscriptions[m] = Subscription(topics)
    return counts, subscriptions


def _check_exactly_once(counts: Mapping[str, int], subscriptions: Mapping[str, Subscription],
                        result: Mapping[str, Assignment], cooperative: bool = False) -> None:
    assert set(result) == set(subscriptions)
    owners = Counter(tp for a in result.values() for tp in a.partitions)
    assert all(n == 1 for n in owners.values()), owners
    for member, a in result.items():
        for tp in a.partitions:
            assert tp.topic in subscriptions[member].topics
            assert 0 <= tp.partition < counts[tp.topic]
    subscribed = {t for s in subscriptions.values() for t in s.topics if t in counts}
    every = {TP(t, p) for t in subscribed for p in range(counts[t])}
    if not cooperative:
        assert set(owners) == every


ASSIGNORS: list[PartitionAssignor] = [
    RangeAssignor(), RoundRobinAssignor(), CooperativeStickyAssignor(),
]


@settings(max_examples=150, print_blob=True)
@given(groups())
def test_every_partition_assigned_exactly_once_to_a_subscriber(
    group: tuple[dict[str, int], dict[str, Subscription]],
) -> None:
    counts, subscriptions = group
    for assignor in ASSIGNORS:
        _check_exactly_once(counts, subscriptions, assignor.assign(counts, subscriptions))


@settings(max_examples=150, print_blob=True)
@given(groups(equal=True))
def test_balance_with_equal_subscriptions(
    group: tuple[dict[str, int], dict[str, Subscription]],
) -> None:
    counts, subscriptions = group
    for assignor in (RoundRobinAssignor(), CooperativeStickyAssignor()):
        sizes = [len(a.partitions) for a in assignor.assign(counts, subscriptions).values()]
        assert max(sizes) - min(sizes) <= 1, assignor.name
    # range balances each topic, not the total
    result = RangeAssignor().assign(counts, subscriptions)
    for topic in subscriptions[next(iter(subscriptions))].topics:
        per = [sum(tp.topic == topic for tp in a.partitions) for a in result.values()]
        assert max(per) - min(per) <= 1


def _no_improving_move(subscriptions: Mapping[str, Subscription],
                       result: Mapping[str, list[TopicPartition]]) -> bool:
    """Kafka's notion of balanced for unequal subscriptions: no partition could move to a member
    that subscribes to it and has at least two fewer partitions."""
    for source, partitions in result.items():
        for tp in partitions:
            for target, s in subscriptions.items():
                if tp.topic in s.topics and len(result[target]) < len(partitions) - 1:
                    return False
    return True


@settings(max_examples=150, print_blob=True)
@given(groups(equal=False))
def test_sticky_target_is_balanced_with_unequal_subscriptions(
    group: tuple[dict[str, int], dict[str, Subscription]],
) -> None:
    counts, subscriptions = group
    target = CooperativeStickyAssignor().sticky_target(counts, subscriptions)
    assert _no_improving_move(subscriptions, target)


def _converge(assignor: CooperativeStickyAssignor, counts: Mapping[str, int],
              topics: Mapping[str, tuple[str, ...]], owned: dict[str, set[TopicPartition]],
              generation: int) -> tuple[dict[str, set[TopicPartition]], int, int]:
    """Rebalance until the assignment is stable; returns (assignment, rounds, moves): rounds
    that changed something (the last, confirming one is not counted) and partitions that
    changed from one owner to another."""
    rounds = moves = 0
    start = {tp: m for m, p in owned.items() for tp in p}
    while True:
        rounds += 1
        subscriptions = {
            m: Subscription(topics[m], owned_partitions=tuple(sorted(owned.get(m, ()))),
                            generation_id=generation)
            for m in topics
        }
        result = assignor.assign(counts, subscriptions)
        _check_exactly_once(counts, subscriptions, result, cooperative=True)
        # Cooperative invariant: nothing goes to a new owner while another still owns it.
        validate_cooperative_assignment({m: owned.get(m, set()) for m in topics}, result)
        new = as_sets(result)
        generation += 1
        done = new == {m: owned.get(m, set()) for m in topics}
        owned = new
        if done:
            rounds -= 1
            break
        assert rounds < 5, "cooperative-sticky did not converge"
    moves = sum(1 for m, p in owned.items() for tp in p if start.get(tp) not in (None, m))
    return owned, rounds, moves


def test_cooperative_sticky_moves_only_what_it_must(seed: int) -> None:
    """Random joins and leaves: every rebalance ends balanced with all partitions owned, and
    the partitions that change owner are exactly the minimum balance needs."""
    rng = random.Random(seed)
    assignor = CooperativeStickyAssignor()
    for _ in range(60):
        counts = {f"t{i}": rng.randint(1, 6) for i in range(rng.randint(1, 3))}
        total = sum(counts.values())
        names = [f"m{i:02d}" for i in range(rng.randint(1, 6))]
        topics = {m: tuple(counts) for m in names}
        owned, _, _ = _converge(assignor, counts, topics, {}, 1)
        for _step in range(4):
            before = {m: set(p) for m, p in owned.items()}
            if len(topics) > 1 and rng.random() < 0.5:
                gone = rng.choice(sorted(topics))
                del topics[gone]
                owned.pop(gone)
            else:
                newcomer = f"n{rng.randrange(10**6)}"
                topics[newcomer] = tuple(counts)
            owned, rounds, moves = _converge(assignor, counts, topics, owned, 10 + _step * 10)
            sizes = sorted(len(owned[m]) for m in topics)
            assert sizes[-1] - sizes[0] <= 1
            assert sum(sizes) == total
            # Minimum moves: survivors keep min(owned, quota), with the maxQuota slots going to
            # the members that own the most.
            survivors = {m: len(p) for m, p in before.items() if m in topics}
            lo, extra = divmod(total, len(topics))
            slots, keep = extra, 0
            for n in sorted(survivors.values(), reverse=True):
                if n > lo and slots:
                    keep += min(n, lo + 1)
                    slots -= 1
                else:
                    keep += min(n, lo)
            must_move = sum(survivors.values()) - keep
            assert moves == must_move, (before, owned)
            assert rounds <= 2  # revoke, then hand over (KIP-429's two phases)


@settings(max_examples=100, print_blob=True)
@given(groups(), st.data())
def test_cooperative_sticky_converges_and_stays_put(
    group: tuple[dict[str, int], dict[str, Subscription]], data: st.DataObject,
) -> None:
    counts, subscriptions = group
    topics = {m: s.topics for m, s in subscriptions.items()}
    assignor = CooperativeStickyAssignor()
    owned, _, _ = _converge(assignor, counts, topics, {}, 1)
    # A rebalance with nothing changed moves nothing.
    again, rounds, moves = _converge(assignor, counts, topics, owned, 2)
    assert (again, rounds, moves) == (owned, 0, 0)
    if len(topics) > 1:
        gone = data.draw(st.sampled_from(sorted(topics)))
        del topics[gone]
        owned.pop(gone)
        after, _, _ = _converge(assignor, counts, topics, owned, 3)
        remaining = {m: Subscription(t) for m, t in topics.items()}
        assert _no_improving_move(remaining, {m: sorted(p) for m, p in after.items()})


@settings(max_examples=100, print_blob=True)
@given(groups(), st.randoms(use_true_random=False))
def test_result_does_not_depend_on_the_order_members_arrive(
    group: tuple[dict[str, int], dict[str, Subscription]], rnd: random.Random,
) -> None:
    counts, subscriptions = group
    members = list(subscriptions)
    rnd.shuffle(members)
    shuffled = {m: subscriptions[m] for m in members}
    for assignor in ASSIGNORS:
        assert assignor.assign(counts, shuffled) == assignor.assign(counts, subscriptions)
