"""The classic group state machine (cluster/group/state.py) through the coordinator core, with a
fake clock: joins, protocol choice, the initial delay, syncs, heartbeats, leaves, session and
rebalance timeouts, static membership and fencing (KAFKA_SEMANTICS §6.2–6.5)."""

from __future__ import annotations

from cluster.group.state import GroupConfig, GroupState
from proto.errors import ErrorCode
from tests.unit.group_harness import PARTITIONS, REBALANCE_MS, SESSION_MS, Harness

G = "g"


def test_first_join_requires_a_member_id_then_forms_generation_one() -> None:
    h = Harness()
    first = h.join_result(h.join(G, client_id="app"))
    assert first.error is ErrorCode.MEMBER_ID_REQUIRED
    assert first.member_id.startswith("app-") and len(first.member_id) == len("app-") + 36
    joined = h.join_result(h.join(G, first.member_id, client_id="app"))
    assert joined.error is ErrorCode.NONE
    assert (joined.generation_id, joined.leader, joined.member_id) == (1, first.member_id,
                                                                       first.member_id)
    assert (joined.protocol_type, joined.protocol_name) == ("consumer", "range")
    assert [(m.member_id, m.metadata) for m in joined.members] == [(first.member_id, b"meta")]
    assert h.core.groups[G].state is GroupState.COMPLETING_REBALANCE


def test_member_ids_are_deterministic_for_a_seed() -> None:
    a, b = Harness(seed=3), Harness(seed=3)
    assert a.join_result(a.join(G)).member_id == b.join_result(b.join(G)).member_id


def test_second_member_triggers_a_rebalance_and_only_the_leader_sees_members() -> None:
    h = Harness()
    a, = h.stable_group(G)
    b = h.join_new(G)
    assert h.result(h.last_join) is None  # parked until A rejoins
    assert h.heartbeat(G, 1, a).error is ErrorCode.REBALANCE_IN_PROGRESS
    ra = h.join_result(h.join(G, a))
    rb = h.join_result(h.last_join)
    assert ra.generation_id == rb.generation_id == 2
    assert ra.leader == rb.leader == a
    assert {m.member_id for m in ra.members} == {a, b} and rb.members == ()
    assert h.core.groups[G].rebalances == 2 and h.core.rebalances == 2


def test_initial_rebalance_delay_waits_and_extends_while_members_arrive() -> None:
    h = Harness(GroupConfig(initial_rebalance_delay_ms=3000, num_partitions=PARTITIONS))
    a = h.join_new(G, rebalance_ms=10_000)
    ja = h.last_join
    h.advance(1000)
    b = h.join_new(G, rebalance_ms=10_000)
    jb = h.last_join
    h.advance(2000)  # first delay over, but a member arrived: extended
    assert h.result(ja) is None and h.result(jb) is None
    h.advance(2999)
    assert h.result(ja) is None
    h.advance(1)
    assert h.join_result(ja).generation_id == h.join_result(jb).generation_id == 1
    assert {m.member_id for m in h.join_result(ja).members} == {a, b}


def test_initial_delay_without_new_members_completes_after_one_delay() -> None:
    h = Harness(GroupConfig(initial_rebalance_delay_ms=3000, num_partitions=PARTITIONS))
    h.join_new(G)
    h.advance(2999)
    assert h.result(h.last_join) is None
    h.advance(1)
    assert h.join_result(h.last_join).generation_id == 1


def test_protocol_is_chosen_by_vote_among_those_every_member_supports() -> None:
    h = Harness(GroupConfig(initial_rebalance_delay_ms=100, num_partitions=PARTITIONS))
    rr_first = (("roundrobin", b"r"), ("range", b"g"), ("sticky", b"s"))
    range_first = (("range", b"g"), ("roundrobin", b"r"))
    h.join_new(G, protocols=rr_first)
    h.join_new(G, protocols=rr_first)
    h.join_new(G, protocols=range_first)
    h.advance(100)  # members arrived during the first delay: one more
    assert h.result(h.last_join) is None
    h.advance(100)
    result = h.join_result(h.last_join)
    assert result.protocol_name == "roundrobin"  # 2 votes to 1; sticky not supported by all
    leader_join = next(h.join_result(rid) for rid, r in h.responses.items()
                       if getattr(r, "members", ()) and r.generation_id == 1)
    assert sorted(m.metadata for m in leader_join.members) == [b"r", b"r", b"r"]


def test_inconsistent_protocols_and_bad_session_timeouts_are_refused() -> None:
    h = Harness()
    h.stable_group(G)
    other_type = h.join_result(h.join(G, protocol_type="connect"))
    assert other_type.error is ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    disjoint = h.join_result(h.join(G, protocols=(("roundrobin", b""),)))
    assert disjoint.error is ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    empty = h.join_result(h.join("fresh", protocols=()))
    assert empty.error is ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    for session in (5999, 1_800_001):
        r = h.join_result(h.join("fresh", session_ms=session))
        assert r.error is ErrorCode.INVALID_SESSION_TIMEOUT
    assert h.join_result(h.join("", client_id="x")).error is ErrorCode.INVALID_GROUP_ID
    unknown = h.join_result(h.join("nobody", "m-1"))
    assert unknown.error is ErrorCode.UNKNOWN_MEMBER_ID


def test_group_max_size() -> None:
    h = Harness(GroupConfig(initial_rebalance_delay_ms=0, num_partitions=PARTITIONS, max_size=1))
    h.stable_group(G)
    assert h.join_result(h.join(G)).error is ErrorCode.GROUP_MAX_SIZE_REACHED


def test_heartbeat_answers_by_state_and_generation() -> None:
    h = Harness()
    a, = h.stable_group(G)
    assert h.heartbeat(G, 1, a).error is ErrorCode.NONE
    assert h.heartbeat(G, 0, a).error is ErrorCode.ILLEGAL_GENERATION
    assert h.heartbeat(G, 1, "ghost").error is ErrorCode.UNKNOWN_MEMBER_ID
    assert h.heartbeat("nope", 1, a).error is ErrorCode.UNKNOWN_MEMBER_ID
    h.join_new(G)  # rebalance
    assert h.heartbeat(G, 1, a).error is ErrorCode.REBALANCE_IN_PROGRESS
    h.join(G, a)  # completes generation 2 → CompletingRebalance
    assert h.core.groups[G].state is GroupState.COMPLETING_REBALANCE
    assert h.heartbeat(G, 2, a).error is ErrorCode.NONE


def test_followers_sync_waits_for_the_leaders_assignment_to_be_stored() -> None:
    h = Harness(auto_ack=False)
    a = h.join_new(G)
    b = h.join_new(G)
    h.join(G, a)
    follower = h.sync(G, 2, b)
    assert h.result(follower) is None
    leader = h.sync(G, 2, a, {a: b"A", b: b"B"})
    assert h.result(leader) is None and len(h.unacked) == 1  # not before the store
    h.ack()
    assert h.sync_result(leader).assignment == b"A"
    assert (h.sync_result(follower).error, h.sync_result(follower).assignment) == (
        ErrorCode.NONE, b"B")
    assert h.core.groups[G].state is GroupState.STABLE
    late = h.sync(G, 2, b)  # a repeated sync in Stable answers at once
    assert h.sync_result(late).assignment == b"B"


def test_sync_errors() -> None:
    h = Harness()
    a = h.join_new(G)
    assert h.sync_result(h.sync(G, 5, a)).error is ErrorCode.ILLEGAL_GENERATION
    assert h.sync_result(h.sync(G, 1, "ghost")).error is ErrorCode.UNKNOWN_MEMBER_ID
    h.join_new(G)
    assert h.sync_result(h.sync(G, 1, a)).error is ErrorCode.REBALANCE_IN_PROGRESS


def test_a_failed_store_fails_the_syncs_and_rebalances() -> None:
    h = Harness(auto_ack=False)
    a = h.join_new(G)
    b = h.join_new(G)
    h.join(G, a)
    follower = h.sync(G, 2, b)
    leader = h.sync(G, 2, a, {a: b"A", b: b"B"})
    h.ack(ErrorCode.NOT_ENOUGH_REPLICAS)
    assert h.sync_result(leader).error is ErrorCode.COORDINATOR_NOT_AVAILABLE
    assert h.sync_result(follower).error is ErrorCode.COORDINATOR_NOT_AVAILABLE
    assert h.core.groups[G].state is GroupState.PREPARING_REBALANCE


def test_expired_session_removes_the_member_and_rebalances() -> None:
    h = Harness()
    a, b = h.stable_group(G, members=2)
    h.advance(SESSION_MS // 2)
    assert h.heartbeat(G, 2, a).error is ErrorCode.NONE  # b stays silent
    h.advance(SESSION_MS // 2 - 1)
    assert b in h.core.groups[G].members
    h.advance(1)
    assert b not in h.core.groups[G].members
    assert h.heartbeat(G, 2, a).error is ErrorCode.REBALANCE_IN_PROGRESS
    rejoined = h.join_result(h.join(G, a))
    assert (rejoined.generation_id, [m.member_id for m in rejoined.members]) == (3, [a])
    assert h.heartbeat(G, 2, b).error is ErrorCode.UNKNOWN_MEMBER_ID


def test_a_member_that_does_not_rejoin_within_the_rebalance_timeout_is_removed() -> None:
    h = Harness()
    a, b = h.stable_group(G, members=2)
    c = h.join_new(G, rebalance_ms=REBALANCE_MS)
    h.join(G, a)
    jc = h.last_join
    # b heartbeats (REBALANCE_IN_PROGRESS) but never rejoins: a max.poll.interval.ms breach.
    for _ in range(REBALANCE_MS // 5000):
        h.advance(5000)
        h.heartbeat(G, 2, b)
        if h.result(jc) is not None:
            break
    result = h.join_result(jc)
    assert result.generation_id == 3
    assert set(h.core.groups[G].members) == {a, c}


def test_members_that_never_sync_are_removed_after_the_rebalance_timeout() -> None:
    h = Harness()
    a = h.join_new(G)
    b = h.join_new(G)
    h.join(G, a)
    h.sync(G, 2, a, {a: b"A", b: b"B"})  # b never syncs
    for _ in range(REBALANCE_MS // 5000):
        h.advance(5000)
        h.heartbeat(G, 2, a)
    assert set(h.core.groups[G].members) == {a}
    assert h.core.groups[G].state is GroupState.PREPARING_REBALANCE
    assert h.heartbeat(G, 2, a).error is ErrorCode.REBALANCE_IN_PROGRESS
    assert h.join_result(h.join(G, a)).generation_id == 3


def test_pending_member_blocks_the_join_until_its_session_expires() -> None:
    h = Harness()
    a, = h.stable_group(G)
    pending = h.join_result(h.join(G))  # MEMBER_ID_REQUIRED, never comes back
    assert pending.error is ErrorCode.MEMBER_ID_REQUIRED
    rid = h.join(G, a)  # the leader rejoins: a rebalance waiting for the pending id
    assert h.result(rid) is None
    h.advance(SESSION_MS - 1)
    assert h.result(rid) is None
    h.advance(1)
    assert h.join_result(rid).generation_id == 2


def test_leave_group_batch_and_empty_group_is_stored() -> None:
    h = Harness()
    a, b = h.stable_group(G, members=2)
    result = h.leave(G, (b, None), ("ghost", None), (a, None))
    assert [m.error for m in result.members] == [ErrorCode.NONE, ErrorCode.UNKNOWN_MEMBER_ID,
                                                 ErrorCode.NONE]
    group = h.core.groups[G]
    assert (group.state, group.generation, group.protocol_type) == (GroupState.EMPTY, 3,
                                                                    "consumer")
    assert h.heartbeat(G, 2, a).error is ErrorCode.UNKNOWN_MEMBER_ID
    assert h.leave("nope", (a, None)).error is ErrorCode.UNKNOWN_MEMBER_ID


def test_leaving_during_a_rebalance_completes_it_for_the_rest() -> None:
    h = Harness()
    a, b = h.stable_group(G, members=2)
    rid = h.join(G, a)  # the leader rejoins: rebalance, waits for b
    assert h.result(rid) is None
    h.leave(G, (b, None))
    assert h.join_result(rid).generation_id == 3


def test_static_member_restart_keeps_its_assignment_without_a_rebalance() -> None:
    h = Harness(auto_ack=False)
    first = h.join_result(h.join(G, instance="i-1"))  # static: no MEMBER_ID_REQUIRED
    assert first.error is ErrorCode.NONE and first.member_id.startswith("i-1-")
    old = first.member_id
    h.sync(G, 1, old, {old: b"P"}, instance="i-1")
    h.ack()
    restart = h.join(G, instance="i-1")  # same instance, new incarnation
    assert h.result(restart) is None and len(h.unacked) == 1  # answered once stored
    h.ack()
    again = h.join_result(restart)
    assert again.error is ErrorCode.NONE and again.member_id != old
    assert again.generation_id == 1 and again.skip_assignment and again.leader == again.member_id
    group = h.core.groups[G]
    assert group.state is GroupState.STABLE and group.generation == 1
    assert group.members[again.member_id].assignment == b"P"
    # the old incarnation is fenced everywhere
    assert h.heartbeat(G, 1, old, "i-1").error is ErrorCode.FENCED_INSTANCE_ID
    assert h.sync_result(h.sync(G, 1, old, instance="i-1")).error is \
        ErrorCode.FENCED_INSTANCE_ID
    assert h.join_result(h.join(G, old, instance="i-1")).error is ErrorCode.FENCED_INSTANCE_ID
    rid = h.commit(G, 1, old, {("t", 0): 1}, instance="i-1")
    assert h.commit_errors(rid) == [ErrorCode.FENCED_INSTANCE_ID]
    assert h.sync_result(h.sync(G, 1, again.member_id, instance="i-1")).assignment == b"P"


def test_static_replacement_store_failure_reverts() -> None:
    h = Harness(auto_ack=False)
    old = h.join_result(h.join(G, instance="i-1")).member_id
    h.sync(G, 1, old, {old: b"P"}, instance="i-1")
    h.ack()
    restart = h.join(G, instance="i-1")
    h.ack(ErrorCode.NOT_LEADER_OR_FOLLOWER)
    assert h.join_result(restart).error is ErrorCode.NOT_COORDINATOR
    assert list(h.core.groups[G].members) == [old]
    assert h.heartbeat(G, 1, old, "i-1").error is ErrorCode.NONE


def test_static_member_is_kept_through_a_rebalance_until_its_session_expires() -> None:
    h = Harness()
    s = h.join_result(h.join(G, instance="i-1", session_ms=60_000)).member_id
    h.sync(G, 1, s, {s: b"P"}, instance="i-1")
    d = h.join_new(G)  # dynamic member joins → rebalance; the static one stays silent
    h.advance(REBALANCE_MS)
    result = h.join_result(h.last_join)
    assert result.generation_id == 2 and result.leader == d
    assert {m.member_id for m in result.members} == {s, d}  # not removed by the rebalance
    for _ in range(REBALANCE_MS // 5000):  # ...but once it neither syncs nor heartbeats
        h.advance(5000)
        h.heartbeat(G, 2, d)
    assert s not in h.core.groups[G].members


def test_static_member_leaves_by_instance_id() -> None:
    h = Harness()
    s = h.join_result(h.join(G, instance="i-1")).member_id
    result = h.leave(G, ("", "i-1"))
    assert result.members[0].error is ErrorCode.NONE
    assert s not in h.core.groups[G].members
    assert h.leave(G, ("", "i-9")).members[0].error is ErrorCode.UNKNOWN_MEMBER_ID


def test_static_rejoin_while_completing_rebalance_triggers_another_rebalance() -> None:
    h = Harness()
    s = h.join_result(h.join(G, instance="i-1")).member_id
    assert h.core.groups[G].state is GroupState.COMPLETING_REBALANCE
    rid = h.join(G, instance="i-1")
    new = h.join_result(rid)
    assert new.member_id != s and new.generation_id == 2  # alone: rebalanced at once


def test_leader_rejoining_a_stable_group_rebalances_others_get_current_generation() -> None:
    h = Harness()
    a, b = h.stable_group(G, members=2)
    same = h.join_result(h.join(G, b))  # follower, same metadata: current generation
    assert (same.error, same.generation_id, same.members) == (ErrorCode.NONE, 2, ())
    assert h.core.groups[G].state is GroupState.STABLE
    h.join(G, a)
    assert h.core.groups[G].state is GroupState.PREPARING_REBALANCE


def test_an_abandoned_join_lets_the_session_timeout_remove_the_member() -> None:
    h = Harness()
    a, b = h.stable_group(G, members=2)
    jb = h.join(G, b, protocols=(("range", b"new"),))  # b's metadata changed: rebalance
    assert h.result(jb) is None
    h.core.abandon(jb, h.now)  # b's process died with its JoinGroup parked
    ja = h.join(G, a)
    assert h.result(ja) is None  # b no longer counts as rejoined
    h.advance(SESSION_MS - 1)
    assert h.result(ja) is None
    h.advance(1)  # b's session ran out (not the 30 s rebalance timeout)
    result = h.join_result(ja)
    assert (result.generation_id, [m.member_id for m in result.members]) == (3, [a])
