"""Committed offsets in the coordinator core: commit validation (generation, member, state),
durability before the answer, append-failure mapping, fetch, retention and DeleteGroups."""

from __future__ import annotations

from cluster.group.coordinator import append_error
from cluster.group.records import OffsetCommitKey, OffsetCommitValue, decode_key, decode_value
from cluster.group.state import GroupConfig, GroupState
from proto.errors import ErrorCode
from tests.unit.group_harness import PARTITIONS, SESSION_MS, Harness

G = "g"
TP = ("orders", 0)


def test_commit_is_answered_only_after_the_append_and_then_fetched() -> None:
    h = Harness()
    a, = h.stable_group(G)
    h.auto_ack = False
    rid = h.commit(G, 1, a, {TP: 42, ("orders", 1): 7}, metadata="m")
    assert h.result(rid) is None and h.committed(G) == {}
    append = h.ack()
    assert h.commit_errors(rid) == [ErrorCode.NONE, ErrorCode.NONE]
    assert h.committed(G) == {TP: 42, ("orders", 1): 7}
    key = decode_key(append.records[0][0])
    assert key == OffsetCommitKey(G, "orders", 0)
    value = decode_value(key, append.records[0][1])
    assert isinstance(value, OffsetCommitValue) and (value.offset, value.metadata) == (42, "m")
    fetched = h.core.fetch_offsets(G, [TP, ("orders", 9)])
    assert [(p.offset, p.metadata) for p in fetched.partitions] == [(42, "m"), (-1, None)]
    assert h.core.fetch_offsets("unknown", [TP]).partitions[0].offset == -1


def test_commit_validation() -> None:
    h = Harness()
    a, b = h.stable_group(G, members=2)
    cases = [
        ((G, 1, a), ErrorCode.ILLEGAL_GENERATION),
        ((G, 2, "ghost"), ErrorCode.UNKNOWN_MEMBER_ID),
        ((G, -1, ""), ErrorCode.UNKNOWN_MEMBER_ID),  # a simple commit needs an empty group
        (("new-group", 3, "m"), ErrorCode.ILLEGAL_GENERATION),
        (("", -1, ""), ErrorCode.INVALID_GROUP_ID),
        ((G, 2, b), ErrorCode.NONE),
    ]
    for (group, generation, member), expected in cases:
        assert h.commit_errors(h.commit(group, generation, member, {TP: 1})) == [expected]
    h.join(G, a)  # leader rejoins: PreparingRebalance still accepts generation 2
    assert h.commit_errors(h.commit(G, 2, b, {TP: 2})) == [ErrorCode.NONE]
    h.join(G, b)  # → CompletingRebalance, generation 3
    assert h.core.groups[G].state is GroupState.COMPLETING_REBALANCE
    assert h.commit_errors(h.commit(G, 3, b, {TP: 3})) == [ErrorCode.REBALANCE_IN_PROGRESS]
    assert h.committed(G) == {TP: 2}


def test_simple_commits_create_a_group_without_members() -> None:
    h = Harness()
    assert h.commit_errors(h.commit("admin", -1, "", {TP: 10})) == [ErrorCode.NONE]
    assert h.committed("admin") == {TP: 10}
    assert h.core.groups["admin"].state is GroupState.EMPTY


def test_metadata_too_large_fails_only_that_partition() -> None:
    h = Harness(GroupConfig(initial_rebalance_delay_ms=0, num_partitions=PARTITIONS,
                            offset_metadata_max_bytes=4))
    rid = h.commit("admin", -1, "", {TP: 1}, metadata="toolong")
    assert h.commit_errors(rid) == [ErrorCode.OFFSET_METADATA_TOO_LARGE]
    assert h.committed("admin") == {}


def test_failed_appends_map_to_kafkas_codes_and_change_nothing() -> None:
    for append_code, answer in [
        (ErrorCode.NOT_ENOUGH_REPLICAS, ErrorCode.COORDINATOR_NOT_AVAILABLE),
        (ErrorCode.REQUEST_TIMED_OUT, ErrorCode.COORDINATOR_NOT_AVAILABLE),
        (ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.NOT_COORDINATOR),
        (ErrorCode.MESSAGE_TOO_LARGE, ErrorCode.INVALID_COMMIT_OFFSET_SIZE),
        (ErrorCode.CORRUPT_MESSAGE, ErrorCode.UNKNOWN_SERVER_ERROR),
    ]:
        h = Harness(auto_ack=False)
        rid = h.commit("admin", -1, "", {TP: 5})
        h.ack(append_code)
        assert h.commit_errors(rid) == [answer], append_code
        assert h.committed("admin") == {}
    assert append_error(ErrorCode.MESSAGE_TOO_LARGE, commit=False) is \
        ErrorCode.UNKNOWN_SERVER_ERROR


def test_offsets_of_an_empty_group_expire_after_retention_then_the_group_goes() -> None:
    retention = 60_000
    h = Harness(GroupConfig(initial_rebalance_delay_ms=0, num_partitions=PARTITIONS,
                            offsets_retention_ms=retention,
                            offsets_retention_check_interval_ms=1000))
    a, = h.stable_group(G)
    h.commit(G, 1, a, {TP: 9})
    h.leave(G, (a, None))
    assert h.core.groups[G].state is GroupState.EMPTY
    h.advance(retention - 1000)
    assert h.committed(G) == {TP: 9}
    h.advance(2000)
    assert G not in h.core.groups and h.committed(G) == {}
    partition = h.core.partition_for(G)
    tombstones = [k for k, v in h.logs[partition][-2:] if v is None]
    assert len(tombstones) == 2  # the offset, then the group


def test_offsets_of_an_active_group_do_not_expire() -> None:
    h = Harness(GroupConfig(initial_rebalance_delay_ms=0, num_partitions=PARTITIONS,
                            offsets_retention_ms=10_000,
                            offsets_retention_check_interval_ms=1000))
    a, = h.stable_group(G)
    h.commit(G, 1, a, {TP: 9})
    for _ in range(6):
        h.advance(SESSION_MS // 2)
        assert h.heartbeat(G, 1, a).error is ErrorCode.NONE
    assert h.committed(G) == {TP: 9}


def test_simple_group_offsets_expire_by_commit_time() -> None:
    h = Harness(GroupConfig(initial_rebalance_delay_ms=0, num_partitions=PARTITIONS,
                            offsets_retention_ms=10_000,
                            offsets_retention_check_interval_ms=1000))
    h.commit("admin", -1, "", {TP: 1})
    h.advance(5000)
    h.commit("admin", -1, "", {("orders", 1): 2})
    h.advance(6000)
    assert h.committed("admin") == {("orders", 1): 2}


def test_delete_groups() -> None:
    h = Harness(auto_ack=False)
    h.commit("admin", -1, "", {TP: 1})
    h.ack()
    rid = 900
    h.apply(h.core.delete_group(rid, "admin", h.now))
    assert h.result(rid) is None  # after the tombstones are stored
    h.ack()
    assert h.result(rid).error is ErrorCode.NONE
    assert "admin" not in h.core.groups
    h.apply(h.core.delete_group(901, "admin", h.now))
    assert h.result(901).error is ErrorCode.GROUP_ID_NOT_FOUND
    h.auto_ack = True
    h.stable_group(G)
    h.apply(h.core.delete_group(902, G, h.now))
    assert h.result(902).error is ErrorCode.NON_EMPTY_GROUP


def test_failed_delete_keeps_the_group() -> None:
    h = Harness(auto_ack=False)
    h.commit("admin", -1, "", {TP: 1})
    h.ack()
    h.apply(h.core.delete_group(5, "admin", h.now))
    h.ack(ErrorCode.NOT_ENOUGH_REPLICAS)
    assert h.result(5).error is ErrorCode.COORDINATOR_NOT_AVAILABLE
    assert h.committed("admin") == {TP: 1}
    assert h.core.groups["admin"].state is GroupState.EMPTY
