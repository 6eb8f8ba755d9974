"""The coordinator core's partitions: NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS, rebuilding
groups and offsets by replaying `__consumer_offsets`, unloading with parked requests, and the
ListGroups / DescribeGroups views. Includes a randomized rebuild check (seeded)."""

from __future__ import annotations

import random

from cluster.group.coordinator import GroupCoordinator
from cluster.group.messages import Heartbeat
from cluster.group.state import GroupConfig, GroupState
from proto.errors import ErrorCode
from tests.unit.group_harness import PARTITIONS, SESSION_MS, Harness

G = "g"
TP = ("orders", 0)


def rebuild(h: Harness, now_ms: int) -> GroupCoordinator:
    """A new coordinator loading every partition from the harness's logs."""
    core = GroupCoordinator(h.config, random.Random(99))
    for p, records in h.logs.items():
        core.begin_load(p, 2)
        for key, value in records:
            core.replay(p, key, value, now_ms)
        core.complete_load(p, now_ms)
    return core


def test_groups_of_partitions_not_held_or_loading_are_refused() -> None:
    h = Harness()
    p = h.core.partition_for(G)
    h.apply(h.core.unload(p))
    assert h.join_result(h.join(G)).error is ErrorCode.NOT_COORDINATOR
    assert h.heartbeat(G, 1, "m").error is ErrorCode.NOT_COORDINATOR
    assert h.core.fetch_offsets(G, None).error is ErrorCode.NOT_COORDINATOR
    assert h.core.describe(G).error is ErrorCode.NOT_COORDINATOR
    h.core.begin_load(p, 2)
    assert h.join_result(h.join(G)).error is ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
    assert h.commit_errors(h.commit(G, -1, "", {TP: 1})) == \
        [ErrorCode.COORDINATOR_LOAD_IN_PROGRESS]
    assert h.core.list_groups().error is ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
    h.core.complete_load(p, h.now)
    assert h.join_result(h.join(G)).error is ErrorCode.MEMBER_ID_REQUIRED


def test_a_new_coordinator_rebuilds_groups_and_offsets_from_the_log() -> None:
    h = Harness()
    a, b = h.stable_group(G, members=2)
    h.commit(G, 2, a, {TP: 42})
    h.commit(G, 2, b, {("orders", 1): 7})
    h.commit(G, 2, b, {("orders", 1): 8})
    h.stable_group("other")
    h.commit("admin", -1, "", {TP: 3})
    core = rebuild(h, h.now + 1)
    group = core.groups[G]
    assert (group.state, group.generation, group.leader_id, group.protocol_name) == (
        GroupState.STABLE, 2, a, "range")
    assert {m: x.assignment for m, x in group.members.items()} == {a: a.encode(), b: b.encode()}
    fetched = core.fetch_offsets(G, None)
    assert {(p.topic, p.partition): p.offset for p in fetched.partitions} == {
        TP: 42, ("orders", 1): 8}
    assert core.groups["admin"].state is GroupState.EMPTY
    assert [g.group_id for g in core.list_groups().groups] == ["admin", G, "other"]
    # members keep their session on the new coordinator and may heartbeat at generation 2
    assert core.heartbeat(Heartbeat(G, 2, a), h.now + 2).error is ErrorCode.NONE
    described = core.describe(G)
    assert described.state == "Stable" and {m.member_id for m in described.members} == {a, b}


def test_rebuilt_members_expire_if_they_never_come_back() -> None:
    h = Harness()
    a, = h.stable_group(G)
    core = rebuild(h, h.now)
    core.tick(h.now + SESSION_MS - 1)
    assert a in core.groups[G].members
    out = core.tick(h.now + SESSION_MS)
    group = core.groups[G]
    assert a not in group.members
    assert (group.state, group.generation) == (GroupState.EMPTY, 2)  # the last one left
    assert len(out.appends) == 1  # the Empty group is stored


def test_deleted_and_emptied_groups_replay_as_such() -> None:
    h = Harness()
    a, = h.stable_group(G)
    h.commit(G, 1, a, {TP: 1})
    h.leave(G, (a, None))
    h.commit("gone", -1, "", {TP: 5})
    h.apply(h.core.delete_group(1000, "gone", h.now))
    core = rebuild(h, h.now)
    assert "gone" not in core.groups
    group = core.groups[G]
    assert (group.state, group.generation, group.members) == (GroupState.EMPTY, 2, {})
    assert core.fetch_offsets(G, None).partitions[0].offset == 1


def test_unload_answers_parked_requests_and_late_acks_are_ignored() -> None:
    h = Harness(auto_ack=False)
    a = h.join_new(G)
    b = h.join_new(G)
    parked = h.join(G, a)  # completes gen 2 for both...
    sync_b = h.sync(G, 2, b)  # ...b's sync parks
    p = h.core.partition_for(G)
    same = next(f"s{i}" for i in range(100) if h.core.partition_for(f"s{i}") == p)
    commit = h.commit(same, -1, "", {TP: 1})  # waits for its append
    assert h.result(sync_b) is None and h.result(commit) is None and h.result(parked)
    h.apply(h.core.unload(p))
    assert h.sync_result(sync_b).error is ErrorCode.NOT_COORDINATOR
    assert h.commit_errors(commit) == [ErrorCode.NOT_COORDINATOR]
    h.ack_all()  # the appends finish after the unload: nothing more happens
    assert G not in h.core.groups and same not in h.core.groups


def test_describe_and_list() -> None:
    h = Harness()
    a, = h.stable_group(G)
    d = h.core.describe(G)
    assert (d.error, d.state, d.protocol_type, d.protocol) == (ErrorCode.NONE, "Stable",
                                                               "consumer", "range")
    assert [(m.member_id, m.client_id, m.client_host, m.metadata, m.assignment)
            for m in d.members] == [(a, "client", "/127.0.0.1", b"meta", a.encode())]
    assert h.core.describe("nope").error is ErrorCode.GROUP_ID_NOT_FOUND
    h.join_new(G)
    d = h.core.describe(G)
    assert d.state == "PreparingRebalance" and d.protocol == "" and d.members[0].metadata == b""
    listed = h.core.list_groups({"Stable"})
    assert listed.groups == ()
    listed = h.core.list_groups({"preparingrebalance"}, {"classic"})
    assert [(g.group_id, g.protocol_type, g.state) for g in listed.groups] == [
        (G, "consumer", "PreparingRebalance")]
    assert h.core.list_groups(None, {"consumer"}).groups == ()


def test_random_histories_rebuild_to_the_same_groups_and_offsets(seed: int) -> None:
    rng = random.Random(seed)
    h = Harness(GroupConfig(initial_rebalance_delay_ms=0, num_partitions=PARTITIONS), seed=seed)
    groups = [f"g{i}" for i in range(4)]
    members: dict[str, list[str]] = {g: [] for g in groups}
    for _ in range(200):
        g = rng.choice(groups)
        action = rng.random()
        group = h.core.groups.get(g)
        if action < 0.3 or group is None:
            members[g] = h.stable_group(g, members=rng.randint(1, 3)) if group is None or \
                group.state is GroupState.EMPTY else members[g]
        elif action < 0.6 and group.state is GroupState.STABLE:
            m = rng.choice(list(group.members))
            h.commit(g, group.generation, m, {(f"t{rng.randint(0, 2)}", rng.randint(0, 3)):
                                              rng.randint(0, 1000)})
        elif action < 0.7 and group.state is GroupState.EMPTY:
            h.apply(h.core.delete_group(10_000 + rng.randint(0, 10**6), g, h.now))
        elif action < 0.85 and group.members:
            h.leave(g, *[(m, None) for m in list(group.members)])
        else:
            h.advance(rng.randint(1, 3000))
            for grp in h.core.groups.values():
                for m in list(grp.members):
                    h.heartbeat(grp.group_id, grp.generation, m)
    core = rebuild(h, h.now)
    for g in groups:
        old, new = h.core.groups.get(g), core.groups.get(g)
        old_offsets = h.core.fetch_offsets(g, None).partitions
        assert core.fetch_offsets(g, None).partitions == old_offsets, g
        if old is None or old.state is GroupState.EMPTY:
            assert new is None or new.state is GroupState.EMPTY
            continue
        if old.state is GroupState.STABLE:
            assert new is not None and new.generation == old.generation
            assert {m: x.assignment for m, x in new.members.items()} == \
                {m: x.assignment for m, x in old.members.items()}
