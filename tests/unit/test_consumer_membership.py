"""GroupMembership: the client side of the classic group protocol, driven with fake coordinator
answers and a fake clock (no Ray, no gRPC)."""

from __future__ import annotations

import random

import pytest

from clients.consumer.assignors import assignors_for
from clients.consumer.membership import (
    AssignmentChange,
    GroupMembership,
    JoinedMember,
    JoinResult,
    ListenerCall,
    ListenerKind,
    MemberState,
    Next,
)
from clients.consumer.protocol import (
    Assignment,
    decode_assignment,
    decode_subscription,
    encode_assignment,
)
from clients.errors import CommitFailedError
from clients.types import TopicPartition
from proto.errors import ErrorCode, RafkaError

E = ErrorCode


def tp(topic: str, p: int) -> TopicPartition:
    return TopicPartition(topic, p)


def member(strategy: str = "range", *, instance: str | None = None,
           topics: tuple[str, ...] = ("t",)) -> GroupMembership:
    m = GroupMembership("g", assignors=assignors_for(strategy), session_timeout_ms=10_000,
                        rebalance_timeout_ms=30_000, heartbeat_interval_ms=1_000,
                        group_instance_id=instance)
    m.subscribe(topics)
    m.on_coordinator(1, 0)
    return m


def join_alone(m: GroupMembership, counts: dict[str, int], now_ms: int = 0,
               generation: int = 1) -> AssignmentChange:
    """One member's whole join: MEMBER_ID_REQUIRED, join as leader, sync."""
    m.prepare_join()
    spec = m.join_request()
    if not spec.member_id:
        assert m.on_join_response(JoinResult(E.MEMBER_ID_REQUIRED, member_id="m-1")) is Next.JOIN
        spec = m.join_request()
        assert spec.member_id == "m-1"
    name, metadata = spec.protocols[0]
    step = m.on_join_response(JoinResult(
        E.NONE, generation_id=generation, protocol_name=name, leader=spec.member_id,
        member_id=spec.member_id, members=(JoinedMember(spec.member_id, None, metadata),)))
    assert step is Next.SYNC and m.must_assign
    sync = m.sync_request(counts)
    (member_id, assignment), = sync.assignments
    out = m.on_sync_response(E.NONE, assignment, now_ms)
    assert isinstance(out, AssignmentChange)
    return out


def test_first_join_retries_with_the_member_id_the_coordinator_made() -> None:
    m = member()
    assert m.needs_join() and m.prepare_join() is None
    spec = m.join_request()
    assert spec.member_id == "" and spec.protocol_type == "consumer"
    assert spec.rebalance_timeout_ms == 30_000 and spec.session_timeout_ms == 10_000
    assert [n for n, _ in spec.protocols] == ["range"]
    assert decode_subscription(spec.protocols[0][1]).topics == ("t",)
    assert m.on_join_response(JoinResult(E.MEMBER_ID_REQUIRED, member_id="c-42")) is Next.JOIN
    assert m.join_request().member_id == "c-42"


def test_leader_assigns_every_partition_and_becomes_stable() -> None:
    m = member()
    change = join_alone(m, {"t": 3, "other": 5})
    assert change.assigned == (tp("t", 0), tp("t", 1), tp("t", 2))
    assert change.added == change.assigned and change.revoked == ()
    assert m.state is MemberState.STABLE and not m.needs_join()
    assert m.rebalances == 1 and m.generation_id == 1
    md = m.group_metadata()
    assert (md.group_id, md.generation_id, md.member_id) == ("g", 1, "m-1")


def test_follower_sends_no_assignments_and_takes_what_the_leader_gave() -> None:
    m = member()
    m.prepare_join()
    m.join_request()
    step = m.on_join_response(JoinResult(E.NONE, generation_id=4, protocol_name="range",
                                         leader="other", member_id="me"))
    assert step is Next.SYNC and not m.must_assign
    sync = m.sync_request({"t": 2})
    assert sync.assignments == () and sync.generation_id == 4 and sync.member_id == "me"
    out = m.on_sync_response(E.NONE, encode_assignment(Assignment((tp("t", 1),))), 0)
    assert isinstance(out, AssignmentChange) and out.assigned == (tp("t", 1),)


def test_empty_sync_answer_is_an_empty_assignment() -> None:
    m = member()
    m.join_request()
    m.on_join_response(JoinResult(E.NONE, generation_id=1, protocol_name="range",
                                  leader="x", member_id="me"))
    out = m.on_sync_response(E.NONE, b"", 0)
    assert isinstance(out, AssignmentChange) and out.assigned == ()


def test_heartbeats_follow_the_interval_and_rebalance_in_progress_asks_for_a_rejoin() -> None:
    m = member()
    join_alone(m, {"t": 2}, now_ms=1_000)
    assert m.heartbeat_due_ms() == 2_000
    hb = m.heartbeat_request(2_000)
    assert (hb.generation_id, hb.member_id) == (1, "m-1")
    assert m.heartbeat_due_ms() is None  # one in flight
    m.on_heartbeat_response(E.NONE, 2_010, hb.generation_id)
    assert m.heartbeat_due_ms() == 3_000 and not m.needs_join()
    hb = m.heartbeat_request(3_000)
    m.on_heartbeat_response(E.REBALANCE_IN_PROGRESS, 3_005, hb.generation_id)
    assert m.needs_join() and m.has_valid_generation()
    # eager: everything is revoked before joining again, and the join carries no ownership
    call = m.prepare_join()
    assert call == ListenerCall(ListenerKind.REVOKED, (tp("t", 0), tp("t", 1)))
    assert m.owned == ()
    sub = decode_subscription(m.join_request().protocols[0][1])
    assert sub.owned_partitions == () and sub.generation_id == -1


def test_unknown_member_loses_partitions_and_rejoins_with_a_new_id() -> None:
    m = member()
    join_alone(m, {"t": 2})
    hb = m.heartbeat_request(1_000)
    m.on_heartbeat_response(E.UNKNOWN_MEMBER_ID, 1_001, hb.generation_id)
    assert m.needs_join() and not m.has_valid_generation() and m.member_id == ""
    call = m.prepare_join()
    assert call is not None and call.kind is ListenerKind.LOST
    assert call.partitions == (tp("t", 0), tp("t", 1))


def test_illegal_generation_keeps_the_member_id() -> None:
    m = member()
    join_alone(m, {"t": 1})
    hb = m.heartbeat_request(1_000)
    m.on_heartbeat_response(E.ILLEGAL_GENERATION, 1_001, hb.generation_id)
    assert m.member_id == "m-1" and m.generation_id == -1
    assert m.prepare_join() == ListenerCall(ListenerKind.LOST, (tp("t", 0),))


def test_answers_about_an_older_generation_are_ignored() -> None:
    m = member()
    join_alone(m, {"t": 1})
    m.on_heartbeat_response(E.ILLEGAL_GENERATION, 1_001, generation_id=0)
    assert m.has_valid_generation() and not m.needs_join()


def test_coordinator_errors_forget_the_coordinator() -> None:
    m = member()
    m.join_request()
    assert m.on_join_response(JoinResult(E.NOT_COORDINATOR)) is Next.FIND_COORDINATOR
    assert m.coordinator is None and m.needs_join()
    m.on_coordinator(2, 0)
    change = join_alone(m, {"t": 1})
    assert change.assigned == (tp("t", 0),)
    hb = m.heartbeat_request(5_000)
    m.on_heartbeat_response(E.COORDINATOR_NOT_AVAILABLE, 5_001, hb.generation_id)
    assert m.coordinator is None and m.heartbeat_due_ms() is None
    # the member keeps its generation and partitions: the next coordinator knows the group
    assert m.has_valid_generation() and not m.needs_join()
    m.on_coordinator(3, 6_000)
    assert m.heartbeat_due_ms() == 6_000


def test_retriable_join_errors_back_off_and_fatal_ones_raise() -> None:
    m = member()
    m.join_request()
    assert m.on_join_response(JoinResult(E.REBALANCE_IN_PROGRESS)) is Next.JOIN_AFTER_BACKOFF
    assert m.on_join_response(JoinResult(E.COORDINATOR_LOAD_IN_PROGRESS)) \
        is Next.JOIN_AFTER_BACKOFF
    for code in (E.INCONSISTENT_GROUP_PROTOCOL, E.INVALID_SESSION_TIMEOUT,
                 E.FENCED_INSTANCE_ID, E.GROUP_AUTHORIZATION_FAILED):
        with pytest.raises(RafkaError) as info:
            m.on_join_response(JoinResult(code, error_message="no"))
        assert info.value.code == code


def test_sync_errors() -> None:
    m = member()
    join_alone(m, {"t": 1})
    m.request_rejoin("test")
    m.prepare_join()
    m.join_request()
    m.on_join_response(JoinResult(E.NONE, generation_id=2, protocol_name="range",
                                  leader="x", member_id="m-1"))
    assert m.on_sync_response(E.REBALANCE_IN_PROGRESS, b"", 0) is Next.JOIN
    assert m.has_valid_generation()
    m.join_request()
    m.on_join_response(JoinResult(E.NONE, generation_id=3, protocol_name="range",
                                  leader="x", member_id="m-1"))
    assert m.on_sync_response(E.UNKNOWN_MEMBER_ID, b"", 0) is Next.PREPARE
    assert m.member_id == "" and not m.has_valid_generation()


def test_fenced_instance_in_a_heartbeat_is_kept_as_a_fatal_error() -> None:
    m = member(instance="i-1")
    join_alone(m, {"t": 1})
    hb = m.heartbeat_request(1_000)
    m.on_heartbeat_response(E.FENCED_INSTANCE_ID, 1_001, hb.generation_id)
    assert m.fatal_error is not None and m.fatal_error.code == E.FENCED_INSTANCE_ID


def test_session_expires_without_successful_heartbeats() -> None:
    m = member()
    join_alone(m, {"t": 1}, now_ms=0)
    assert not m.session_expired(10_000)
    assert m.session_expired(10_001)


def test_poll_timeout_leaves_the_group_for_a_dynamic_member() -> None:
    m = member()
    join_alone(m, {"t": 1})
    m.on_poll(1_000)
    assert m.check_poll_timeout(31_000) == (False, None)
    expired, leave = m.check_poll_timeout(31_001)
    assert expired and leave is not None and leave.member_id == "m-1"
    assert "max.poll.interval.ms" in leave.reason
    assert m.needs_join() and m.member_id == "" and not m.has_valid_generation()
    assert m.check_poll_timeout(99_999) == (False, None)  # only once
    assert m.prepare_join() == ListenerCall(ListenerKind.LOST, (tp("t", 0),))


def test_poll_timeout_of_a_static_member_sends_no_leave() -> None:
    m = member(instance="i-1")
    join_alone(m, {"t": 1})
    m.on_poll(0)
    expired, leave = m.check_poll_timeout(30_001)
    assert expired and leave is None and m.member_id == "m-1"
    assert m.leave_request("close") is None


def test_leave_request_and_on_left() -> None:
    m = member()
    join_alone(m, {"t": 2})
    leave = m.leave_request("the consumer is closing")
    assert leave is not None and (leave.group_id, leave.member_id) == ("g", "m-1")
    m.on_left()
    assert m.owned == () and m.member_id == "" and m.state is MemberState.UNJOINED


def test_commit_identity_and_commit_errors() -> None:
    m = GroupMembership("g", assignors=assignors_for("range"))
    assert m.commit_identity() == (-1, "", None)  # manual assignment: a "simple" commit
    m.subscribe(["t"])
    m.on_coordinator(1, 0)
    with pytest.raises(RafkaError) as info:
        m.commit_identity()
    assert info.value.code == E.REBALANCE_IN_PROGRESS
    join_alone(m, {"t": 1})
    assert m.commit_identity() == (1, "m-1", None)
    assert m.on_commit_error(E.NOT_COORDINATOR) is Next.FIND_COORDINATOR
    assert m.on_commit_error(E.COORDINATOR_LOAD_IN_PROGRESS) is Next.JOIN_AFTER_BACKOFF
    with pytest.raises(RafkaError) as info:
        m.on_commit_error(E.OFFSET_METADATA_TOO_LARGE)
    assert info.value.code == E.OFFSET_METADATA_TOO_LARGE
    with pytest.raises(RafkaError) as info:
        m.on_commit_error(E.REBALANCE_IN_PROGRESS)
    assert m.needs_join()
    with pytest.raises(CommitFailedError):
        m.on_commit_error(E.ILLEGAL_GENERATION)
    assert not m.has_valid_generation()


def test_pattern_subscription_follows_metadata() -> None:
    m = GroupMembership("g", assignors=assignors_for("range"))
    m.subscribe(pattern=r"orders\..*", available=["orders.eu", "payments", "__consumer_offsets"])
    assert m.topics == {"orders.eu"} and m.metadata_topics() is None
    m.on_coordinator(1, 0)
    join_alone(m, {"orders.eu": 1})
    m.update_metadata({"orders.eu": 1, "payments": 1})
    assert not m.needs_join()
    m.update_metadata({"orders.eu": 1, "orders.us": 2, "payments": 1})
    assert m.topics == {"orders.eu", "orders.us"} and m.needs_join()


def test_leader_rejoins_when_a_topic_gains_partitions() -> None:
    m = member()
    join_alone(m, {"t": 2})
    m.update_metadata({"t": 2})
    assert not m.needs_join()
    m.update_metadata({"t": 4})
    assert m.needs_join() and "t" in m.rejoin_reason


def test_subscribe_validates_its_arguments() -> None:
    m = GroupMembership("g", assignors=assignors_for("range"))
    with pytest.raises(ValueError):
        m.subscribe(["a"], pattern="b")
    with pytest.raises(ValueError):
        m.subscribe([])
    with pytest.raises(ValueError):
        m.subscribe([""])


def test_changing_the_subscription_of_a_stable_member_rejoins() -> None:
    m = member("cooperative-sticky", topics=("a", "b"))
    join_alone(m, {"a": 1, "b": 1})
    m.subscribe(["a"])
    assert m.needs_join()
    # cooperative: only partitions of the dropped topic are revoked
    assert m.prepare_join() == ListenerCall(ListenerKind.REVOKED, (tp("b", 0),))
    assert m.owned == (tp("a", 0),)


def test_default_strategy_is_eager_and_cooperative_needs_every_assignor() -> None:
    assert not member("range,cooperative-sticky").cooperative
    assert member("cooperative-sticky").cooperative


# -- several members against a minimal fake coordinator -------------------------------------


class FakeCoordinator:
    """Just enough of the classic protocol for whole-group rounds: everybody joins, the first
    member is the leader, it assigns, everybody syncs."""

    def __init__(self) -> None:
        self.generation = 0
        self.next_id = 0

    def rebalance(self, members: list[GroupMembership], counts: dict[str, int],
                  now_ms: int = 0) -> dict[int, AssignmentChange]:
        self.generation += 1
        specs = []
        for m in members:
            m.prepare_join()
            spec = m.join_request()
            if not spec.member_id:
                self.next_id += 1
                m.on_join_response(JoinResult(E.MEMBER_ID_REQUIRED,
                                              member_id=f"m-{self.next_id:03d}"))
                spec = m.join_request()
            specs.append(spec)
        # protocol: the first assignor of the leader that every member supports
        common = set.intersection(*({n for n, _ in s.protocols} for s in specs))
        name = next(n for n, _ in specs[0].protocols if n in common)
        leader = specs[0].member_id
        joined = tuple(JoinedMember(s.member_id, s.group_instance_id, dict(s.protocols)[name])
                       for s in specs)
        for m, s in zip(members, specs):
            m.on_join_response(JoinResult(
                E.NONE, generation_id=self.generation, protocol_name=name, leader=leader,
                member_id=s.member_id, members=joined if s.member_id == leader else ()))
        assignments = dict(members[0].sync_request(counts).assignments)
        out = {}
        for i, (m, s) in enumerate(zip(members, specs)):
            if i:
                m.sync_request(counts)
            change = m.on_sync_response(E.NONE, assignments.get(s.member_id, b""), now_ms)
            assert isinstance(change, AssignmentChange)
            out[i] = change
        return out


def owners(members: list[GroupMembership]) -> dict[TopicPartition, list[int]]:
    found: dict[TopicPartition, list[int]] = {}
    for i, m in enumerate(members):
        for p in m.owned:
            found.setdefault(p, []).append(i)
    return found


@pytest.mark.parametrize("strategy", ["range", "roundrobin", "cooperative-sticky"])
def test_every_partition_has_exactly_one_owner_after_members_come_and_go(
        strategy: str, seed: int) -> None:
    rng = random.Random(seed)
    coord = FakeCoordinator()
    counts = {"a": rng.randint(1, 8), "b": rng.randint(1, 8)}
    all_tps = {tp(t, p) for t, n in counts.items() for p in range(n)}
    members = [member(strategy, topics=("a", "b"))]
    for _ in range(6):
        if len(members) > 1 and rng.random() < 0.4:
            members.pop(rng.randrange(len(members))).on_left()
        else:
            members.append(member(strategy, topics=("a", "b")))
        for _ in range(3):  # cooperative needs a second round for what was revoked
            coord.rebalance(members, counts)
            if not any(m.needs_join() for m in members):
                break
        assert not any(m.needs_join() for m in members)
        found = owners(members)
        assert set(found) == all_tps
        assert all(len(v) == 1 for v in found.values()), found


def test_cooperative_sticky_moves_only_what_it_must_in_two_phases() -> None:
    coord = FakeCoordinator()
    counts = {"t": 6}
    a = member("cooperative-sticky")
    coord.rebalance([a], counts)
    assert len(a.owned) == 6
    b = member("cooperative-sticky")
    first = coord.rebalance([a, b], counts)
    # phase 1: a keeps three partitions and revokes three; b gets nothing yet
    assert len(first[0].revoked) == 3 and first[0].added == ()
    assert first[1].assigned == ()
    assert a.needs_join() and not b.needs_join()
    kept = set(a.owned)
    # the join of phase 2 carries what a still owns
    sub = decode_subscription(a.join_request().protocols[0][1])
    assert set(sub.owned_partitions) == kept and sub.generation_id == coord.generation
    a.on_join_response(JoinResult(E.REBALANCE_IN_PROGRESS))  # undo that probe
    second = coord.rebalance([a, b], counts)
    assert second[0].revoked == () and second[0].added == ()
    assert set(second[1].added) == set(first[0].revoked)
    assert set(a.owned) == kept  # nothing a kept ever moved


def test_assignment_bytes_are_kafka_consumer_protocol() -> None:
    m = member()
    m.prepare_join()
    m.join_request()
    m.on_join_response(JoinResult(E.MEMBER_ID_REQUIRED, member_id="m-1"))
    spec = m.join_request()
    m.on_join_response(JoinResult(
        E.NONE, generation_id=1, protocol_name="range", leader="m-1", member_id="m-1",
        members=(JoinedMember("m-1", None, spec.protocols[0][1]),
                 JoinedMember("m-2", None, spec.protocols[0][1]))))
    sync = m.sync_request({"t": 3})
    got = {mid: decode_assignment(a).partitions for mid, a in sync.assignments}
    assert got == {"m-1": (tp("t", 0), tp("t", 1)), "m-2": (tp("t", 2),)}


# -- the façade's listener dispatch and commit arguments (no network) ------------------------


def test_listener_dispatch_follows_kafka_defaults() -> None:
    from clients.consumer.consumer import RebalanceListener, _commit_offsets, _Listener
    from clients.types import OffsetAndMetadata, Record, TimestampType

    seen: list[tuple[str, object, list[TopicPartition]]] = []

    class Mine(RebalanceListener):
        def on_partitions_revoked(self, consumer: object, partitions: list[TopicPartition]
                                  ) -> None:
            seen.append(("revoked", consumer, partitions))

    parts = (tp("t", 0),)
    listener = _Listener(Mine())
    listener.invoke("c", ListenerCall(ListenerKind.LOST, parts))  # lost → revoked by default
    listener.invoke("c", ListenerCall(ListenerKind.ASSIGNED, parts))  # base class: no-op
    assert seen == [("revoked", "c", [tp("t", 0)])]
    # callables: (consumer, partitions) or kafka-python's (partitions); on_lost falls back
    got: list[object] = []
    callables = _Listener(on_assign=lambda ps: got.append(("a", ps)),
                          on_revoke=lambda c, ps: got.append(("r", c, ps)))
    callables.invoke("c", ListenerCall(ListenerKind.ASSIGNED, parts))
    callables.invoke("c", ListenerCall(ListenerKind.LOST, parts))
    assert got == [("a", [tp("t", 0)]), ("r", "c", [tp("t", 0)])]
    assert _Listener().invoke("c", ListenerCall(ListenerKind.REVOKED, parts)) is None

    record = Record("t", 1, 41, 0, TimestampType.CREATE_TIME, None, b"v", leader_epoch=3)
    assert _commit_offsets(record) == {tp("t", 1): OffsetAndMetadata(42, "", 3)}
    assert _commit_offsets({("t", 0): 5}) == {tp("t", 0): OffsetAndMetadata(5)}
    assert _commit_offsets(None) is None
    with pytest.raises(ValueError):
        _commit_offsets({tp("t", 0): -1})
    with pytest.raises(TypeError):
        _commit_offsets(42)


def test_group_calls_without_a_group_id_raise_invalid_group_id() -> None:
    from clients.consumer.consumer import AsyncConsumer

    c: AsyncConsumer[bytes, bytes] = AsyncConsumer(bootstrap_servers="127.0.0.1:1")
    for call in (lambda: c.subscribe(["t"]), c.group_metadata, c.commit_async):
        with pytest.raises(RafkaError) as info:
            call()
        assert info.value.code == E.INVALID_GROUP_ID
    g: AsyncConsumer[bytes, bytes] = AsyncConsumer(bootstrap_servers="127.0.0.1:1",
                                                   group_id="g")
    g.subscribe("^orders.*")  # one name starting with ^ is a pattern
    assert g.subscription() == set()
    with pytest.raises(ValueError):
        g.assign([tp("t", 0)])
    assert g.group_metadata().generation_id == -1
