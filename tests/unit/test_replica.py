"""PartitionReplica: HW, ISR, acks=all, fencing and divergence (KAFKA_SEMANTICS §4); and the
delayed-operation bookkeeping of cluster/delayed.py."""

from __future__ import annotations

from dataclasses import dataclass, field

from cluster.delayed import CompletedProduce, DelayedFetchPurgatory, ProduceRequestJoin
from cluster.replica import (
    AlterPartitionAsk,
    AlterPartitionResult,
    Backoff,
    DivergingEpoch,
    FetchResponsePartition,
    FollowerAppend,
    FollowerFetchDecision,
    HighWatermarkChange,
    PartitionReplica,
    ProduceCompletion,
    ReplicaConfig,
    Role,
    TruncateTo,
)
from proto.errors import ErrorCode
from proto.metadata import LeaderRecoveryState
from proto.metadata_image import PartitionRegistration

TP = "orders-0"
LAG_MS = 30_000


@dataclass
class Epochs:
    """A tiny leader-epoch cache (KIP-279 semantics) over [(epoch, start_offset)] and a LEO."""

    entries: list[tuple[int, int]] = field(default_factory=list)
    leo: int = 0

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        if not self.entries or epoch > self.entries[-1][0]:
            return -1, -1
        if epoch == self.entries[-1][0]:
            return epoch, self.leo
        below = [(e, s) for e, s in self.entries if e <= epoch]
        above = [s for e, s in self.entries if e > epoch]
        if not below:
            return epoch, self.entries[0][1]
        return below[-1][0], above[0]


def reg(
    isr: tuple[int, ...] = (1, 2, 3),
    *,
    leader: int = 1,
    leader_epoch: int = 1,
    partition_epoch: int = 1,
    replicas: tuple[int, ...] = (1, 2, 3),
    recovery: LeaderRecoveryState = LeaderRecoveryState.RECOVERED,
) -> PartitionRegistration:
    return PartitionRegistration(replicas, isr, leader, leader_epoch, partition_epoch, recovery)


def make_leader(
    isr: tuple[int, ...] = (1, 2, 3),
    *,
    min_isr: int = 1,
    leo: int = 0,
    now_ms: int = 0,
    leader_epoch: int = 1,
) -> PartitionReplica:
    r = PartitionReplica(TP, 1, config=ReplicaConfig(min_isr, LAG_MS))
    assert r.become_leader(reg(isr, leader_epoch=leader_epoch), local_leo=leo, now_ms=now_ms)
    return r


def fetch(
    r: PartitionReplica,
    replica_id: int,
    offset: int,
    now_ms: int,
    *,
    epochs: Epochs | None = None,
    last_fetched_epoch: int | None = None,
    current_leader_epoch: int | None = None,
    broker_epoch: int = 10,
) -> FollowerFetchDecision:
    lookup = epochs or Epochs([(r.leader_epoch, 0)], leo=10**9)
    return r.on_follower_fetch(
        replica_id=replica_id, broker_epoch=broker_epoch, fetch_offset=offset,
        last_fetched_epoch=r.leader_epoch if last_fetched_epoch is None else last_fetched_epoch,
        current_leader_epoch=(r.leader_epoch if current_leader_epoch is None
                              else current_leader_epoch),
        now_ms=now_ms, epoch_lookup=lookup,
    )


def apply_ok(r: PartitionReplica, ask: AlterPartitionAsk, now_ms: int) -> None:
    r.on_alter_partition_response(ask, AlterPartitionResult(
        leader_id=r.broker_id, leader_epoch=ask.leader_epoch, isr=ask.new_isr_ids,
        partition_epoch=ask.partition_epoch + 1), now_ms)


# -- high watermark ---------------------------------------------------------------------------


def test_high_watermark_is_min_leo_over_isr() -> None:
    r = make_leader()
    r.on_leader_append(10, now_ms=1)
    assert r.high_watermark == 0  # followers' LEOs are unknown to a new leader
    d = fetch(r, 2, 7, now_ms=2)
    assert d.read_from_offset == 7 and d.high_watermark == 0
    d = fetch(r, 3, 4, now_ms=3)
    assert d.high_watermark_change == HighWatermarkChange(0, 4)
    d = fetch(r, 3, 10, now_ms=4)
    assert d.high_watermark == 7  # min(10, 7, 10)


def test_high_watermark_never_decreases_on_the_leader() -> None:
    r = make_leader()
    r.on_leader_append(10, now_ms=1)
    fetch(r, 2, 8, now_ms=2)
    fetch(r, 3, 8, now_ms=2)
    assert r.high_watermark == 8
    fetch(r, 3, 5, now_ms=3)  # the follower truncated (it should not, but the HW must hold)
    assert r.high_watermark == 8


def test_single_replica_isr_moves_high_watermark_on_append() -> None:
    r = make_leader(isr=(1,))
    assert r.on_leader_append(3, now_ms=1) == HighWatermarkChange(0, 3)


def test_high_watermark_frozen_under_min_isr_kafka_3_7() -> None:
    r = make_leader(isr=(1,), min_isr=2)
    assert r.check_produce(acks=1) is None  # acks=1 is still accepted ...
    assert r.on_leader_append(5, now_ms=1) is None
    assert r.high_watermark == 0  # ... but not visible until the ISR is back to min ISR


def test_caught_up_follower_outside_isr_holds_back_the_high_watermark() -> None:
    r = make_leader(isr=(1, 2))
    r.on_leader_append(10, now_ms=1)
    d = fetch(r, 3, 10, now_ms=2)  # caught up: it is being added (maximal ISR)
    assert d.alter_partition is not None and d.alter_partition.new_isr_ids == (1, 2, 3)
    fetch(r, 2, 10, now_ms=2)
    assert r.high_watermark == 10


# -- acks=all and min.insync.replicas ---------------------------------------------------------


def test_acks_all_waits_for_every_isr_member_not_just_min_isr() -> None:
    r = make_leader(isr=(1, 2, 3), min_isr=2)
    assert r.check_produce(acks=-1) is None
    r.on_leader_append(5, now_ms=1)
    op = r.add_delayed_produce(required_offset=5, deadline_ms=30_000)
    fetch(r, 2, 5, now_ms=2)  # leader + follower 2 = min ISR, but 3 is in the ISR too
    assert r.completions() == ()
    assert r.high_watermark == 0
    fetch(r, 3, 5, now_ms=3)
    assert r.completions() == (ProduceCompletion(op, ErrorCode.NONE),)


def test_not_enough_replicas_before_append_for_acks_all_only() -> None:
    r = make_leader(isr=(1, 2), min_isr=3)
    err = r.check_produce(acks=-1)
    assert err is not None and err.code is ErrorCode.NOT_ENOUGH_REPLICAS
    assert "min.insync.replicas=3" in err.message
    assert r.check_produce(acks=1) is None and r.check_produce(acks=0) is None
    bad = r.check_produce(acks=2)
    assert bad is not None and bad.code is ErrorCode.INVALID_REQUIRED_ACKS


def test_not_enough_replicas_after_append_when_isr_shrinks_while_parked() -> None:
    r = make_leader(isr=(1, 2, 3), min_isr=2)
    r.on_leader_append(5, now_ms=0)
    op = r.add_delayed_produce(required_offset=5, deadline_ms=60_000)
    ask = r.tick(now_ms=LAG_MS + 1)  # neither follower ever fetched
    assert ask is not None and ask.new_isr_ids == (1,)
    assert r.completions() == ()  # a shrink counts only once committed
    apply_ok(r, ask, now_ms=LAG_MS + 2)
    assert r.isr == (1,)
    assert r.completions() == (ProduceCompletion(op, ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND),)
    assert r.high_watermark == 0  # frozen: the record is in the log but not committed


def test_shrinking_a_stuck_follower_lets_parked_acks_complete() -> None:
    r = make_leader(isr=(1, 2, 3), min_isr=2)
    r.on_leader_append(5, now_ms=0)
    op = r.add_delayed_produce(required_offset=5, deadline_ms=60_000)
    for t in range(0, LAG_MS + 2_000, 500):
        fetch(r, 2, 5, now_ms=t)  # follower 2 keeps up; follower 3 is stuck
    ask = r.tick(now_ms=LAG_MS + 1_000)
    assert ask is not None and ask.new_isr_ids == (1, 2)
    apply_ok(r, ask, now_ms=LAG_MS + 1_001)
    assert r.completions() == (ProduceCompletion(op, ErrorCode.NONE),)


def test_parked_produce_times_out_at_its_deadline() -> None:
    r = make_leader()
    r.on_leader_append(5, now_ms=0)
    op = r.add_delayed_produce(required_offset=5, deadline_ms=1_000)
    assert r.next_deadline_ms() == 1_000
    r.tick(now_ms=999)
    assert r.completions() == ()
    r.tick(now_ms=1_000)
    assert r.completions() == (ProduceCompletion(op, ErrorCode.REQUEST_TIMED_OUT),)


def test_parked_produce_fails_not_leader_when_leadership_is_lost() -> None:
    r = make_leader()
    r.on_leader_append(5, now_ms=0)
    op = r.add_delayed_produce(required_offset=5, deadline_ms=1_000)
    assert r.become_follower(reg(leader=2, leader_epoch=2, partition_epoch=2), now_ms=1)
    assert r.completions() == (ProduceCompletion(op, ErrorCode.NOT_LEADER_OR_FOLLOWER),)
    err = r.check_produce(acks=1)
    assert err is not None and err.code is ErrorCode.NOT_LEADER_OR_FOLLOWER


# -- ISR shrink and expand --------------------------------------------------------------------


def test_stuck_follower_is_removed_after_replica_lag_time_max_ms() -> None:
    r = make_leader(isr=(1, 2, 3))
    r.on_leader_append(5, now_ms=0)
    fetch(r, 2, 0, now_ms=100)  # follower 2 fetches once, then hangs; 3 stays caught up
    for t in range(0, LAG_MS + 200, 1_000):
        fetch(r, 3, 5, now_ms=t)
    assert r.tick(now_ms=LAG_MS) is None  # ISR members start caught up at become_leader
    ask = r.tick(now_ms=LAG_MS + 1)
    assert ask is not None and ask.new_isr_ids == (1, 3)


def test_slow_follower_is_removed_by_the_two_fetch_rule() -> None:
    # Follower 3 fetches every second but each fetch only reaches the LEO the leader had two
    # fetches ago: it never reaches the LEO of its previous fetch, so it is not caught up.
    r = make_leader(isr=(1, 2, 3))
    leo = 0
    for i in range(1, 40):
        t = i * 1_000
        leo += 10
        r.on_leader_append(leo, now_ms=t)
        fetch(r, 2, leo, now_ms=t)
        fetch(r, 3, max(0, leo - 20), now_ms=t)
    state = r.follower_state(3)
    assert state is not None and state.last_caught_up_time_ms == 0
    ask = r.tick(now_ms=39_000)
    assert ask is not None and ask.new_isr_ids == (1, 2)


def test_slow_but_steady_follower_stays_in_isr() -> None:
    # Each fetch reaches the leader's LEO as of the previous fetch: caught up then (Kafka rule).
    r = make_leader(isr=(1, 2, 3))
    leo = 0
    for i in range(1, 40):
        t = i * 1_000
        fetch(r, 3, leo, now_ms=t)  # has everything the leader had at its previous fetch
        fetch(r, 2, leo, now_ms=t)
        leo += 10
        r.on_leader_append(leo, now_ms=t)
    assert r.tick(now_ms=40_000) is None


def test_isr_expands_when_follower_reaches_hw_and_leader_epoch_start() -> None:
    # Leader 1 leads epoch 3 from offset 10; follower 3 (out of the ISR) catches up.
    r = make_leader(isr=(1, 2), leo=10, leader_epoch=3)
    r.on_leader_append(12, now_ms=1)
    fetch(r, 2, 12, now_ms=2)
    assert r.high_watermark == 12
    # Below the epoch start offset (and HW): not in sync yet.
    epochs = Epochs([(1, 0), (3, 10)], leo=12)
    d = fetch(r, 3, 8, now_ms=3, epochs=epochs, last_fetched_epoch=1)
    assert d.alter_partition is None and d.read_from_offset == 8
    d = fetch(r, 3, 12, now_ms=4, epochs=epochs, last_fetched_epoch=3)
    assert d.alter_partition is not None and d.alter_partition.new_isr_ids == (1, 2, 3)
    assert [m.broker_epoch for m in d.alter_partition.new_isr] == [-1, 10, 10]
    apply_ok(r, d.alter_partition, now_ms=5)
    assert r.isr == (1, 2, 3)


def test_isr_does_not_expand_before_the_epoch_start_even_at_hw() -> None:
    # New leader at epoch 2 starting at offset 10 with HW 0: a follower at offset 5 has passed
    # the HW but may lack records committed before this epoch began.
    r = make_leader(isr=(1,), leo=10, leader_epoch=2, min_isr=2)
    d = fetch(r, 2, 5, now_ms=1, epochs=Epochs([(2, 10)], leo=10), last_fetched_epoch=-1)
    assert r.high_watermark == 0 and d.alter_partition is None
    d = fetch(r, 2, 10, now_ms=2, epochs=Epochs([(2, 10)], leo=10), last_fetched_epoch=-1)
    assert d.alter_partition is not None


def test_ineligible_follower_is_not_added_to_isr() -> None:
    r = make_leader(isr=(1, 2))
    d = r.on_follower_fetch(replica_id=3, broker_epoch=4, fetch_offset=0, last_fetched_epoch=-1,
                            current_leader_epoch=1, now_ms=1, epoch_lookup=Epochs(),
                            follower_eligible=False)
    assert d.error is None and d.alter_partition is None


def test_only_one_alter_partition_in_flight() -> None:
    r = make_leader(isr=(1,))
    d2 = fetch(r, 2, 0, now_ms=1)
    assert d2.alter_partition is not None and d2.alter_partition.new_isr_ids == (1, 2)
    d3 = fetch(r, 3, 0, now_ms=2)
    assert d3.alter_partition is None  # waits for the first to finish
    assert r.tick(now_ms=LAG_MS * 3) is None
    apply_ok(r, d2.alter_partition, now_ms=3)
    d3 = fetch(r, 3, 0, now_ms=4)
    assert d3.alter_partition is not None and d3.alter_partition.new_isr_ids == (1, 2, 3)


def test_alter_partition_with_unknown_outcome_keeps_maximal_isr_and_is_resent() -> None:
    r = make_leader(isr=(1, 2))
    r.on_leader_append(4, now_ms=0)
    d = fetch(r, 3, 4, now_ms=1)
    ask = d.alter_partition
    assert ask is not None
    r.on_alter_partition_response(ask, AlterPartitionResult(ErrorCode.REQUEST_TIMED_OUT), 2)
    assert r.maximal_isr == (1, 2, 3)  # it may have been applied: keep waiting for 3
    assert r.tick(now_ms=50) is None
    assert r.tick(now_ms=102) == ask
    apply_ok(r, ask, now_ms=103)
    assert r.isr == (1, 2, 3) and r.partition_epoch == 2


def test_alter_partition_not_attempted_is_dropped_and_asked_again() -> None:
    r = make_leader(isr=(1, 2))
    ask = fetch(r, 3, 0, now_ms=1).alter_partition
    assert ask is not None
    r.on_alter_partition_response(ask, AlterPartitionResult(ErrorCode.OPERATION_NOT_ATTEMPTED), 2)
    assert r.alter_partition_in_flight is None and r.maximal_isr == (1, 2)
    assert fetch(r, 3, 0, now_ms=3).alter_partition == ask


def test_fenced_alter_partition_waits_for_metadata() -> None:
    r = make_leader(isr=(1, 2))
    ask = fetch(r, 3, 0, now_ms=1).alter_partition
    assert ask is not None
    r.on_alter_partition_response(ask, AlterPartitionResult(ErrorCode.INVALID_UPDATE_VERSION), 2)
    assert r.alter_partition_in_flight == ask and r.tick(now_ms=10_000) is None
    assert r.become_leader(reg((1, 2, 3), partition_epoch=2), local_leo=0, now_ms=3)
    assert r.alter_partition_in_flight is None and r.isr == (1, 2, 3)


def test_recovering_leader_reports_recovered_first() -> None:
    r = PartitionReplica(TP, 1)
    r.become_leader(reg((1,), recovery=LeaderRecoveryState.RECOVERING), local_leo=0, now_ms=0)
    assert fetch(r, 2, 0, now_ms=1).alter_partition is None
    ask = r.tick(now_ms=2)
    assert ask is not None and ask.new_isr_ids == (1,)
    assert ask.leader_recovery_state is LeaderRecoveryState.RECOVERED


# -- epochs and fencing -----------------------------------------------------------------------


def test_stale_leader_epoch_is_fenced() -> None:
    r = make_leader(leader_epoch=5)
    d = fetch(r, 2, 0, now_ms=1, current_leader_epoch=4)
    assert d.error is not None and d.error.code is ErrorCode.FENCED_LEADER_EPOCH
    assert d.read_from_offset is None
    d = fetch(r, 2, 0, now_ms=1, current_leader_epoch=6)
    assert d.error is not None and d.error.code is ErrorCode.UNKNOWN_LEADER_EPOCH


def test_stale_registration_is_ignored() -> None:
    r = make_leader(leader_epoch=5)
    assert not r.become_follower(reg(leader=2, leader_epoch=4, partition_epoch=9), now_ms=1)
    assert r.is_leader and r.leader_epoch == 5
    assert r.become_leader(reg((1, 2), leader_epoch=5, partition_epoch=3), local_leo=0, now_ms=1)
    assert not r.become_leader(reg((1, 2, 3), leader_epoch=5, partition_epoch=2), local_leo=0,
                               now_ms=1)
    assert r.isr == (1, 2)


def test_fetch_from_a_non_replica_or_stale_broker_epoch_is_not_leader_or_follower() -> None:
    r = make_leader()
    d = fetch(r, 9, 0, now_ms=1)
    assert d.error is not None and d.error.code is ErrorCode.NOT_LEADER_OR_FOLLOWER
    fetch(r, 2, 0, now_ms=1, broker_epoch=20)
    d = fetch(r, 2, 0, now_ms=2, broker_epoch=19)  # an old incarnation's late request
    assert d.error is not None and d.error.code is ErrorCode.NOT_LEADER_OR_FOLLOWER


def test_follower_does_not_serve_follower_fetches() -> None:
    r = PartitionReplica(TP, 2)
    r.become_follower(reg(leader=1), now_ms=0)
    d = fetch(r, 3, 0, now_ms=1)
    assert d.error is not None and d.error.code is ErrorCode.NOT_LEADER_OR_FOLLOWER


def test_fetch_below_log_start_is_offset_out_of_range() -> None:
    r = make_leader(leo=10)
    r.on_log_start_offset(5)
    d = fetch(r, 2, 3, now_ms=1, last_fetched_epoch=-1)
    assert d.error is not None and d.error.code is ErrorCode.OFFSET_OUT_OF_RANGE
    assert d.log_start_offset == 5


# -- divergence (KIP-101 / KIP-279, fetch-based truncation) ------------------------------------


def _follower(broker_id: int, registration: PartitionRegistration) -> PartitionReplica:
    f = PartitionReplica(TP, broker_id)
    assert f.become_follower(registration, now_ms=0)
    return f


def _exchange(leader: PartitionReplica, leader_epochs: Epochs, follower: PartitionReplica,
              follower_epochs: Epochs, now_ms: int) -> tuple[FollowerFetchDecision,
                                                             FollowerAppend | TruncateTo]:
    last_epoch = follower_epochs.entries[-1][0] if follower_epochs.entries else -1
    req = follower.follower_fetch_request(follower_epochs.leo, last_epoch)
    assert req is not None
    d = leader.on_follower_fetch(
        replica_id=follower.broker_id, broker_epoch=1, fetch_offset=req.fetch_offset,
        last_fetched_epoch=req.last_fetched_epoch, current_leader_epoch=req.current_leader_epoch,
        now_ms=now_ms, epoch_lookup=leader_epochs)
    assert d.error is None
    resp = FetchResponsePartition(
        ErrorCode.NONE, d.high_watermark, d.log_start_offset, d.diverging_epoch,
        records_end_offset=None if d.read_from_offset is None else leader_epochs.leo)
    action = follower.on_fetch_response(req, resp, local_leo=follower_epochs.leo,
                                        epoch_lookup=follower_epochs)
    assert isinstance(action, (FollowerAppend, TruncateTo))
    return d, action


def test_old_leader_with_extra_suffix_gets_diverging_epoch_and_truncates() -> None:
    # Broker 1 led epoch 1 and wrote 0..4; broker 2 had 0..2 when it took over at epoch 2 and
    # wrote 3..5. Broker 1 returns: its 3..4 (epoch 1) must go.
    leader = PartitionReplica(TP, 2)
    leader.become_leader(reg((2, 1), leader=2, leader_epoch=2), local_leo=3, now_ms=0)
    leader.on_leader_append(6, now_ms=0)
    leader_epochs = Epochs([(1, 0), (2, 3)], leo=6)
    old = _follower(1, reg((2, 1), leader=2, leader_epoch=2))
    old_epochs = Epochs([(1, 0)], leo=5)
    d, action = _exchange(leader, leader_epochs, old, old_epochs, now_ms=1)
    assert d.diverging_epoch == DivergingEpoch(1, 3) and d.read_from_offset is None
    assert action == TruncateTo(3, high_watermark=0)
    old_epochs.leo = 3
    d, action = _exchange(leader, leader_epochs, old, old_epochs, now_ms=2)
    assert d.read_from_offset == 3 and isinstance(action, FollowerAppend)


def test_truncation_uses_min_of_leader_and_own_end_offset_kip_279() -> None:
    # Leader: epoch 1 at 0, epoch 3 at 5. Follower: epoch 1 at 0, epoch 2 at 3 (never on the
    # leader), LEO 8. The leader has no epoch 2: it answers (1, 5); the follower's own epoch 1
    # ends at 3, so offsets 3.. diverge.
    leader = PartitionReplica(TP, 2)
    leader.become_leader(reg((2, 1), leader=2, leader_epoch=3), local_leo=5, now_ms=0)
    leader.on_leader_append(9, now_ms=0)
    leader_epochs = Epochs([(1, 0), (3, 5)], leo=9)
    f = _follower(1, reg((2, 1), leader=2, leader_epoch=3))
    f_epochs = Epochs([(1, 0), (2, 3)], leo=8)
    d, action = _exchange(leader, leader_epochs, f, f_epochs, now_ms=1)
    assert d.diverging_epoch == DivergingEpoch(1, 5)
    assert action == TruncateTo(3, high_watermark=0)


def test_follower_high_watermark_is_min_of_leader_hw_and_own_leo() -> None:
    f = _follower(2, reg(leader=1))
    req = f.follower_fetch_request(0, -1)
    assert req is not None
    action = f.on_fetch_response(req, FetchResponsePartition(
        ErrorCode.NONE, high_watermark=50, log_start_offset=0, records_end_offset=20),
        local_leo=0, epoch_lookup=Epochs())
    assert action == FollowerAppend(high_watermark=20, log_start_offset=0)
    assert f.high_watermark == 20


def test_follower_backs_off_on_epoch_errors_and_ignores_stale_responses() -> None:
    f = _follower(2, reg(leader=1))
    req = f.follower_fetch_request(0, -1)
    assert req is not None
    resp = FetchResponsePartition(ErrorCode.FENCED_LEADER_EPOCH)
    assert f.on_fetch_response(req, resp, local_leo=0, epoch_lookup=Epochs()) == Backoff(
        ErrorCode.FENCED_LEADER_EPOCH)
    f.become_follower(reg(leader=3, leader_epoch=2, partition_epoch=2), now_ms=1)
    ok = FetchResponsePartition(ErrorCode.NONE, 5, 0, records_end_offset=5)
    action = f.on_fetch_response(req, ok, local_leo=0, epoch_lookup=Epochs())
    assert type(action).__name__ == "IgnoreResponse"


def test_follower_below_leader_log_start_restarts_there() -> None:
    f = _follower(2, reg(leader=1))
    req = f.follower_fetch_request(3, 1)
    assert req is not None
    resp = FetchResponsePartition(ErrorCode.OFFSET_OUT_OF_RANGE, high_watermark=40,
                                  log_start_offset=30)
    action = f.on_fetch_response(req, resp, local_leo=3, epoch_lookup=Epochs([(1, 0)], 3))
    assert action == TruncateTo(30, high_watermark=30, full=True)


def test_roles_move_only_through_metadata() -> None:
    r = PartitionReplica(TP, 1)
    roles = [r.role]
    assert r.follower_fetch_request(0, -1) is None
    r.become_follower(reg(leader=2), now_ms=0)
    roles.append(r.role)
    r.become_leader(reg(leader_epoch=2, partition_epoch=2), local_leo=0, now_ms=0)
    roles.append(r.role)
    assert r.follower_fetch_request(0, -1) is None
    r.close()
    roles.append(r.role)
    assert roles == [Role.NONE, Role.FOLLOWER, Role.LEADER, Role.CLOSED]
    assert not r.become_leader(reg(leader_epoch=3, partition_epoch=3), local_leo=0, now_ms=0)


# -- cluster/delayed.py -----------------------------------------------------------------------


def test_delayed_fetch_completes_on_min_bytes_or_deadline() -> None:
    p = DelayedFetchPurgatory()
    assert p.watch(1, ["a-0"], min_bytes=10, available_bytes=10, deadline_ms=500) is True
    assert p.watch(2, ["a-0", "b-0"], min_bytes=100, available_bytes=30, deadline_ms=500) is False
    assert p.watch(3, ["b-0"], min_bytes=50, available_bytes=0, deadline_ms=400) is False
    assert p.next_deadline_ms() == 400
    assert p.on_bytes_available("a-0", 60) == ()
    assert p.on_bytes_available("b-0", 20) == (2,)  # 30 + 60 + 20 >= 100
    assert p.tick(now_ms=399) == ()
    assert p.tick(now_ms=400) == (3,)
    assert len(p) == 0


def test_delayed_fetch_completes_when_partition_changes() -> None:
    p = DelayedFetchPurgatory()
    p.watch(5, ["a-0"], min_bytes=1, available_bytes=0, deadline_ms=500)
    p.watch(4, ["a-0", "b-0"], min_bytes=1, available_bytes=0, deadline_ms=500)
    assert p.on_partition_changed("a-0") == (4, 5)
    assert p.on_bytes_available("b-0", 100) == ()


def test_produce_request_completes_when_every_partition_is_done() -> None:
    join = ProduceRequestJoin()
    assert join.watch(7, {"a-0": 1, "b-0": 1},
                      immediate={"c-0": ErrorCode.NOT_ENOUGH_REPLICAS}) is None
    assert join.on_completion("a-0", 1, ErrorCode.NONE) is None
    assert join.on_completion("b-0", 1, ErrorCode.REQUEST_TIMED_OUT) == CompletedProduce(7, (
        ("a-0", ErrorCode.NONE), ("b-0", ErrorCode.REQUEST_TIMED_OUT),
        ("c-0", ErrorCode.NOT_ENOUGH_REPLICAS)))
    assert join.on_completion("a-0", 1, ErrorCode.NONE) is None and len(join) == 0


def test_a_fenced_follower_stops_holding_back_the_high_watermark() -> None:
    # Follower 3 was caught up when it died; the controller fences it and drops it from the
    # ISR. The leader must not keep waiting for it to "rejoin" until replica.lag.time.max.ms.
    r = make_leader(isr=(1, 2, 3), min_isr=2, now_ms=0)
    fetch(r, 2, 0, now_ms=1)
    fetch(r, 3, 0, now_ms=1)
    r.on_leader_append(5, now_ms=2)
    op = r.add_delayed_produce(required_offset=5, deadline_ms=30_000)
    assert r.become_leader(reg((1, 2), partition_epoch=2), local_leo=5, now_ms=3)
    fetch(r, 2, 5, now_ms=4)
    assert r.completions() == () and r.high_watermark == 0  # 3 still looks about to rejoin
    change = r.on_follower_ineligible(3, now_ms=5)
    assert change == HighWatermarkChange(0, 5)
    assert r.completions() == (ProduceCompletion(op, ErrorCode.NONE),)
    assert r.on_follower_ineligible(3, now_ms=6) is None  # already known
