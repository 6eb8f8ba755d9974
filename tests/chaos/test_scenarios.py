"""Scenarios, the nemesis and the workloads' recording, without Ray or a cluster.

The schedules are pure functions of a seeded context; the nemesis is driven step by step
against a fake injector; the consumer recorder writes through a fake consumer; the run's own
expectations (isr-shrink-to-min) are judged on hand-built histories, including ones that
must fail.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from chaos.history import (
    ACKS_ALL, ConsumerFn, ConsumerOp, FaultKind, FaultOp, FinalRead, History, MetadataOp,
    OpType, SendOp, read_history,
)
from chaos.run_runtime import RunConfig, below_min_windows, isr_expectations
from chaos.scenarios import (
    SCENARIOS, Nemesis, NemesisHooks, ScenarioContext, Step, build_schedule, parse_scenario,
)
from chaos.targets import Target
from chaos.workloads.clock import RunClock
from chaos.workloads.consumer import ConsumerRecorder, merge_by_time
from chaos.workloads.producer import classify
from clients.errors import ClientClosedError, KafkaTimeoutError
from clients.types import TopicPartition
from proto.errors import ErrorCode, RafkaError


def ctx(duration_s: float = 30.0, seed: int = 1) -> ScenarioContext:
    return ScenarioContext(duration_s, random.Random(seed), "t", 6, "g", 3)


# -- schedules -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(set(SCENARIOS) - {"none"}))
def test_every_scenario_faults_inside_its_window_and_repairs(name: str) -> None:
    c = ctx()
    steps = build_schedule(parse_scenario(name), c)
    start, end = c.window
    assert steps, f"{name} schedules nothing"
    assert all(start <= s.at_s for s in steps)
    assert steps == sorted(steps, key=lambda s: s.at_s)
    breaking = {"kill", "pause", "partition", "slow", "kill-followers", "lose-node"}
    repairs = {"restart", "resume", "heal", "restore"}
    assert sum(s.action in breaking for s in steps) >= 1
    # every fault is undone by the scenario itself, before the run ends
    assert steps[-1].action in repairs | {"await-isr"}, steps[-1]
    assert steps[-1].at_s <= c.duration_s


def test_saved_names_are_unique_so_composed_scenarios_do_not_mix_targets() -> None:
    steps = build_schedule(parse_scenario("leader-kill+follower-kill+consumer-kill"), ctx(60))
    saves = [s.save for s in steps if s.save]
    assert len(saves) == len(set(saves))
    for s in steps:
        if s.target and s.target.startswith("@"):
            assert s.target[1:] in saves


def test_random_is_a_replayable_mix() -> None:
    a = build_schedule(parse_scenario("random"), ctx(120, seed=7))
    b = build_schedule(parse_scenario("random"), ctx(120, seed=7))
    c = build_schedule(parse_scenario("random"), ctx(120, seed=8))
    assert a == b and a != c
    assert len({s.action for s in a}) >= 3


def test_unknown_scenario_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="leader-kill"):
        parse_scenario("leader-kil")
    with pytest.raises(ValueError):
        parse_scenario("")


# -- the nemesis -----------------------------------------------------------------------------


class FakeInjector:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def kill(self, spec: Any) -> list[Target]:
        self.calls.append(("kill", spec))
        return [Target("broker", 2)] if isinstance(spec, str) and spec.startswith("leader") \
            else [Target("broker", int(x.split(":")[1])) for x in spec.split(",")]

    def restart(self, spec: Any) -> list[Any]:
        self.calls.append(("restart", spec))
        return list(spec)

    def pause(self, spec: Any) -> list[Any]:
        self.calls.append(("pause", spec))
        return [Target("broker", 3)]

    def resume(self, spec: Any) -> list[Any]:
        self.calls.append(("resume", spec))
        return list(spec)

    def partition(self, side_a: Any, side_b: Any = None) -> None:
        self.calls.append(("partition", side_a))

    def slow(self, spec: Any, delay_ms: int, peers: Any = None) -> None:
        self.calls.append(("slow", (spec, delay_ms)))

    def heal(self) -> None:
        self.calls.append(("heal", None))

    def torn_write(self, broker_id: int, topic: str, partition: int) -> Any:
        self.calls.append(("torn-write", (broker_id, topic, partition)))

    def corrupt_tail(self, broker_id: int, topic: str, partition: int) -> Any:
        self.calls.append(("corrupt", (broker_id, topic, partition)))

    def restore(self) -> None:
        self.calls.append(("restore", None))


def nemesis(inj: FakeInjector, steps: list[Step]) -> Nemesis:
    hooks = NemesisHooks(replicas_of=lambda p: (1, [1, 2, 3]), await_isr=lambda t: True)
    return Nemesis(inj, steps, "t", hooks)


def test_a_restart_brings_back_the_broker_that_was_killed_not_the_new_leader() -> None:
    inj = FakeInjector()
    n = nemesis(inj, [])
    n.run_step(Step(0, "kill", "leader:t/0", save="x"))
    n.run_step(Step(0, "torn-write", "@x", partition=0))
    n.run_step(Step(0, "restart", "@x"))
    assert inj.calls == [("kill", "leader:t/0"), ("torn-write", (2, "t", 0)),
                         ("restart", [Target("broker", 2)])]


def test_kill_followers_kills_every_replica_but_the_leader() -> None:
    inj = FakeInjector()
    n = nemesis(inj, [])
    n.run_step(Step(0, "kill-followers", None, save="f", partition=0))
    n.run_step(Step(0, "restart", "@f"))
    assert inj.calls == [("kill", "broker:2,broker:3"),
                         ("restart", [Target("broker", 2), Target("broker", 3)])]


def test_node_loss_without_a_multi_node_cluster_is_skipped_with_a_reason() -> None:
    inj = FakeInjector()
    n = nemesis(inj, [Step(0, "lose-node", "leader:t/0"), Step(0, "restore")])
    n.run(0.1)
    assert [s.action for s, _ in n.skipped] == ["lose-node"]
    assert "multi-node" in n.skipped[0][1]
    assert inj.calls == [("restore", None)]


# -- recording -------------------------------------------------------------------------------


class FakeMetadata:
    member_id = "m-1"
    generation_id = 4


class FakeConsumer:
    def group_metadata(self) -> FakeMetadata:
        return FakeMetadata()

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("t", 1), TopicPartition("t", 0)}


class Rec:
    def __init__(self, offset: int, value: bytes) -> None:
        self.topic, self.partition, self.offset = "t", 0, offset
        self.key, self.value = b"k", value


def test_consumer_recorder_writes_assign_poll_commit_and_refused_commit(tmp_path: Path) -> None:
    path = str(tmp_path / "c0.1.jsonl")
    recorder = ConsumerRecorder(path, process="c0", group="g", clock=RunClock(0))
    consumer = FakeConsumer()
    recorder.on_partitions_assigned(consumer, [TopicPartition("t", 0)])
    recorder([Rec(0, b"p0-0"), Rec(1, b"p0-1")])
    recorder.on_commit(consumer, {TopicPartition("t", 0): 2}, None)
    recorder.on_commit(consumer, None, RafkaError("rebalance"))
    recorder.on_partitions_revoked(consumer, [TopicPartition("t", 0)])
    ops = read_history(path).consumer_ops
    assert [(op.f, op.type) for op in ops] == [
        (ConsumerFn.ASSIGN, OpType.OK), (ConsumerFn.POLL, OpType.OK),
        (ConsumerFn.COMMIT, OpType.OK), (ConsumerFn.COMMIT, OpType.FAIL),
        (ConsumerFn.REVOKE, OpType.OK)]
    assert ops[0].partitions == (TopicPartition("t", 0), TopicPartition("t", 1))
    assert all(op.generation == 4 and op.member_id == "m-1" for op in ops)
    assert [r.value for r in ops[1].records] == ["p0-0", "p0-1"]
    assert ops[2].offsets[0].offset == 2


def test_merge_by_time_keeps_each_source_in_its_own_order_and_final_reads_last() -> None:
    def send(v: str, t: int, typ: OpType = OpType.INVOKE) -> SendOp:
        return SendOp(process="p", type=typ, topic="t", partition=0, key=None, value=v,
                      time_ms=t, offset=0 if typ is OpType.OK else None)
    final = FinalRead(1, "t", 0, (), 0, 0, time_ms=1)
    main = [send("a", 5), send("a", 4, OpType.OK), final]  # an outcome stamped early
    other = [ConsumerOp(ConsumerFn.POLL, "c", "c", "g", 1, time_ms=3),
             ConsumerOp(ConsumerFn.POLL, "c", "c", "g", 1, time_ms=6)]
    merged = merge_by_time([main, other])
    assert merged.index(main[0]) < merged.index(main[1])
    assert merged[-1] is final
    assert merged.index(other[0]) < merged.index(other[1])


def test_only_a_definite_broker_refusal_is_a_fail() -> None:
    assert classify(KafkaTimeoutError("delivery.timeout.ms passed")) is OpType.INFO
    assert classify(ClientClosedError("closed")) is OpType.INFO
    assert classify(RafkaError.for_code(ErrorCode.NOT_LEADER_OR_FOLLOWER)) is OpType.INFO
    assert classify(RafkaError.for_code(ErrorCode.RECORD_LIST_TOO_LARGE)) is OpType.FAIL


# -- the isr-shrink-to-min expectations ------------------------------------------------------


def isr_history(*, acks_all_fails: bool, acks1_ok: bool, grows_back: bool) -> History:
    events: list[Any] = [MetadataOp("t", 0, 1, 0, (1, 2, 3), 0),
                         FaultOp(FaultKind.KILL, "broker:2,broker:3", 1000),
                         MetadataOp("t", 0, 1, 1, (1,), 2000)]
    if acks_all_fails:
        events.append(SendOp(process="p0", type=OpType.INFO, topic="t", partition=None,
                             key="k", value="p0-1", time_ms=4000, acks=ACKS_ALL,
                             error="KafkaTimeoutError: last error NOT_ENOUGH_REPLICAS"))
    if acks1_ok:
        events.append(SendOp(process="q0", type=OpType.OK, topic="t", partition=0, key="k",
                             value="q0-1", time_ms=4500, acks=1, idempotent=False, offset=7))
    events.append(MetadataOp("t", 0, 1, 1, (1, 2, 3) if grows_back else (1, 2), 8000))
    return History.of(events)


def test_isr_shrink_expectations_hold_on_a_good_history() -> None:
    h = isr_history(acks_all_fails=True, acks1_ok=True, grows_back=True)
    assert below_min_windows(h, "t", 0, 2) == [(2000, 8000)]
    evidence: dict[str, Any] = {}
    cfg = RunConfig("isr-shrink-to-min", 10, 1, Path("."), topic="t")
    assert isr_expectations(h, cfg, evidence) == []
    assert evidence["acks_all_refused_below_min"] == 1
    assert evidence["acks1_acked_below_min"] == 1


@pytest.mark.parametrize("broken", ["acks_all_fails", "acks1_ok", "grows_back"])
def test_isr_shrink_expectations_fail_when_one_is_missing(broken: str) -> None:
    flags = {"acks_all_fails": True, "acks1_ok": True, "grows_back": True, broken: False}
    cfg = RunConfig("isr-shrink-to-min", 10, 1, Path("."), topic="t")
    assert isr_expectations(isr_history(**flags), cfg, {}) != []


class SlowInjector(FakeInjector):
    def __init__(self) -> None:
        super().__init__()
        self.times: list[tuple[str, float]] = []

    def kill(self, spec: Any) -> list[Target]:
        self.times.append(("kill", time.monotonic()))
        time.sleep(0.3)  # a fault that takes a while to take effect
        return super().kill(spec)

    def restart(self, spec: Any) -> list[Any]:
        self.times.append(("restart", time.monotonic()))
        return super().restart(spec)


def test_a_slow_step_delays_the_rest_so_a_broker_stays_down_as_long_as_scheduled() -> None:
    inj = SlowInjector()
    n = nemesis(inj, [Step(0.0, "kill", "leader:t/0", save="x"), Step(0.2, "restart", "@x"),
                      Step(5.0, "heal")])
    n.run(0.6)
    (_, killed), (_, restarted) = inj.times
    assert restarted - killed >= 0.3 + 0.2 - 0.01  # the kill's 0.3 s plus the 0.2 s gap
    assert [c[0] for c in inj.calls] == ["kill", "restart"]  # heal was due after the end
