"""Faults on real actors (chaos/faults.py): kill, restart, pause, partition, disk, node loss.

Each test drives a `LocalCluster` through a `FaultInjector` that records into a history file,
and waits (deadline polls) for what the fault must cause: a new partition or controller
leader, an ISR that shrinks and grows back, a broker that serves again after its log was torn,
a group member cut off from the brokers whose partitions move to the others until it rejoins.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from chaos.faults import FaultInjector
from chaos.history import FaultOp, HistoryWriter, read_history
from chaos.targets import Target
from chaos.workloads.clock import RunClock
from chaos.workloads.consumer import VerifiableConsumerGroup
from clients import Admin, NewTopic, Producer
from clients.types import PartitionInfo, TopicPartition
from cluster.launcher import LocalCluster

FAST = {
    "broker.heartbeat.interval.ms": 200,
    "broker.session.timeout.ms": 1500,
    "replica.lag.time.max.ms": 2000,
    "replica.fetch.wait.max.ms": 200,
    "replica.fetch.backoff.ms": 100,
    "request.timeout.ms": 8000,
}
BOUND_S = 30.0
TOPIC = "chaos"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def admin_for() -> Iterator[Callable[[LocalCluster], Admin]]:
    made: list[Admin] = []

    def make(cluster: LocalCluster) -> Admin:
        admin = Admin(bootstrap_servers=cluster.bootstrap_servers, request_timeout_ms=2000,
                      default_api_timeout_ms=6000)
        made.append(admin)
        return admin

    yield make
    for admin in made:
        admin.close()


def info(admin: Admin, partition: int = 0) -> PartitionInfo | None:
    try:
        return admin.describe_topics([TOPIC])[TOPIC].partition(partition)
    except Exception:  # noqa: BLE001 - metadata may be briefly unavailable mid-fault
        return None


def setup_topic(cluster: LocalCluster, admin: Admin, records: int = 20) -> None:
    admin.create_topics([NewTopic(TOPIC, 1, 3, config={"min.insync.replicas": "2"})])
    cluster.wait_for(lambda: (i := info(admin)) is not None and i.leader is not None
                     and len(i.isr) == 3, BOUND_S, what="leader elected, full ISR")
    with Producer(bootstrap_servers=cluster.bootstrap_servers, acks="all",
                  linger_ms=0) as producer:
        for n in range(records):
            producer.send(TOPIC, b"v%04d" % n, partition=0).result(timeout=20)


def full_isr(admin: Admin) -> bool:
    i = info(admin)
    return i is not None and sorted(i.isr) == [1, 2, 3]


def table(cluster: LocalCluster, broker_id: int) -> dict[str, Any]:
    """The broker's fault table, as its chaos hook reports it."""
    return dict(ray.get(cluster.broker_handle(broker_id).faults.remote(), timeout=10))


def faults_of(path: Path) -> list[FaultOp]:
    return read_history(path).faults


def test_kill_and_restart_a_partition_leader_and_the_controller_leader(
        local_cluster: Callable[..., LocalCluster], admin_for: Callable[[LocalCluster], Admin],
        tmp_path: Path, seed: int) -> None:
    cluster = local_cluster(brokers=3, controllers=3, broker_config=FAST, log_level="WARNING")
    admin = admin_for(cluster)
    setup_topic(cluster, admin)
    history = tmp_path / "history.jsonl"
    with HistoryWriter(history) as writer, FaultInjector(
            cluster, history=writer, rng=random.Random(seed), admin=admin) as chaos:
        old = info(admin)
        assert old is not None and old.leader is not None
        victims = chaos.kill(f"leader:{TOPIC}/0")
        assert victims == [Target("broker", old.leader)], f"seed={seed}"
        cluster.wait_for(lambda: (i := info(admin)) is not None and i.leader not in
                         (None, old.leader), BOUND_S, what="a new partition leader")
        assert chaos.restart(victims) == victims
        cluster.wait_for(lambda: full_isr(admin), BOUND_S, what="the restarted broker in ISR")

        controller = cluster.controller_leader()
        assert controller is not None
        dead = chaos.kill("controller:leader")
        assert dead == [Target("controller", controller)]
        assert cluster.wait_for_leader(BOUND_S, exclude=[controller]) != controller
        chaos.restart(dead)
        assert cluster.controller_status(controller) is not None
        assert chaos.killed == []

    ops = faults_of(history)
    assert [(op.f.value, op.target) for op in ops] == [
        ("kill", f"leader:{TOPIC}/0"), ("restart", f"broker:{old.leader}"),
        ("kill", "controller:leader"), ("restart", f"controller:{controller}")]
    assert ops[0].detail["resolved"] == [f"broker:{old.leader}"]
    assert [TOPIC, 0] in ops[0].detail["partitions"]  # type: ignore[operator]
    assert ops[0].time_ms <= ops[1].time_ms <= ops[2].time_ms


def test_pause_drops_a_follower_from_the_isr_and_resume_brings_it_back(
        local_cluster: Callable[..., LocalCluster], admin_for: Callable[[LocalCluster], Admin],
        tmp_path: Path, seed: int) -> None:
    cluster = local_cluster(brokers=3, controllers=1, broker_config=FAST, log_level="WARNING")
    admin = admin_for(cluster)
    setup_topic(cluster, admin)
    history = tmp_path / "history.jsonl"
    with HistoryWriter(history) as writer, FaultInjector(
            cluster, history=writer, rng=random.Random(seed), admin=admin) as chaos:
        [follower] = chaos.pause(f"follower:{TOPIC}/0")
        assert follower.role == "broker" and chaos.paused == [follower]
        paused_pid = cluster.broker_pid(int(follower.id))
        cluster.wait_for(lambda: (i := info(admin)) is not None and follower.id not in i.isr,
                         BOUND_S, what=f"{follower} out of the ISR")
        chaos.resume([follower])
        cluster.wait_for(lambda: full_isr(admin), BOUND_S, what=f"{follower} back in the ISR")

        # The leader cut off from every other actor (controller included) loses leadership.
        [leader] = chaos.resolve(f"leader:{TOPIC}/0")
        chaos.partition([leader])
        # Asked from the majority side: the cut-off broker's own metadata is stale by design.
        others = [b for b in cluster.broker_ids if b != leader.id]
        cluster.wait_for(lambda: any(int((st or {}).get("leaders", 0)) >= 1 for st in
                                     cluster.broker_statuses(2.0, ids=others).values()),
                         BOUND_S, what="a leader on the majority side")
        chaos.heal()
        cluster.wait_for(lambda: full_isr(admin), BOUND_S, what="ISR whole after healing")

        # A slow link delays both sides' calls; a partition outlives a restart of its member.
        chaos.slow("broker:1", 30, "broker:2")
        assert table(cluster, 1)["outgoing"]["broker-2"] == {"drop": False, "delay_ms": 30}
        assert table(cluster, 2)["outgoing"]["broker-1"] == {"drop": False, "delay_ms": 30}
        chaos.partition("broker:1", "broker:3")
        chaos.restart("broker:1")
        assert table(cluster, 1)["incoming"]["broker-3"] == {"drop": True, "delay_ms": 0}
        assert table(cluster, 1)["outgoing"]["broker-2"]["delay_ms"] == 30
        chaos.heal()
        assert all(table(cluster, b) == {"outgoing": {}, "incoming": {}} for b in (1, 2, 3))
    ops = faults_of(history)
    assert [op.f.value for op in ops] == ["pause", "resume", "partition", "heal", "slow",
                                          "partition", "restart", "heal"]
    assert ops[0].detail["pids"] == {str(follower): paused_pid}
    assert ops[2].detail["side_a"] == [str(leader)]
    assert set(map(str, ops[2].detail["side_b"])) == (  # type: ignore[arg-type]
        {"controller:1"} | {f"broker:{b}" for b in (1, 2, 3) if b != leader.id})


def test_a_torn_write_is_cut_on_restart_and_the_broker_serves_again(
        local_cluster: Callable[..., LocalCluster], admin_for: Callable[[LocalCluster], Admin],
        tmp_path: Path, seed: int) -> None:
    cluster = local_cluster(brokers=3, controllers=1, broker_config=FAST, log_level="WARNING")
    admin = admin_for(cluster)
    setup_topic(cluster, admin, records=30)
    history = tmp_path / "history.jsonl"
    with HistoryWriter(history) as writer, FaultInjector(
            cluster, history=writer, rng=random.Random(seed), admin=admin) as chaos:
        [victim] = chaos.kill(f"follower:{TOPIC}/0")
        with pytest.raises(RuntimeError, match="is running"):
            chaos.torn_write(1 if victim.id != 1 else 2, TOPIC, 0)
        detail = chaos.torn_write(int(victim.id), TOPIC, 0)
        kept, whole = detail["kept_bytes"], detail["batch_bytes"]
        assert isinstance(kept, int) and isinstance(whole, int) and kept < whole, f"seed={seed}"
        chaos.restart([victim])
        cluster.wait_for(lambda: full_isr(admin), BOUND_S, what="the torn replica back in ISR")
        with Producer(bootstrap_servers=cluster.bootstrap_servers, acks="all",
                      linger_ms=0) as producer:
            assert producer.send(TOPIC, b"after", partition=0).result(timeout=20).offset == 30
    ops = faults_of(history)
    assert [op.f.value for op in ops] == ["kill", "torn-write", "restart"]
    assert ops[1].target == str(victim) and ops[1].detail["partitions"] == [[TOPIC, 0]]


GROUP_FAST = {**FAST, "offsets.topic.num.partitions": 3, "group.initial.rebalance.delay.ms": 0,
              "group.min.session.timeout.ms": 500}
SESSION_MS = 3000
REBALANCE_SLACK_S = 4.0


def produce(cluster: LocalCluster, topic: str, partitions: int, per_partition: int,
            ) -> dict[TopicPartition, int]:
    """`per_partition` records to each partition; the end offset of each."""
    ends: dict[TopicPartition, int] = {}
    with Producer(bootstrap_servers=cluster.bootstrap_servers, acks="all",
                  linger_ms=0) as producer:
        futures = [producer.send(topic, b"v%d" % n, partition=p)
                   for p in range(partitions) for n in range(per_partition)]
        for future in futures:
            md = future.result(timeout=20)
            tp = TopicPartition(topic, md.partition)
            ends[tp] = max(ends.get(tp, 0), md.offset + 1)
    return ends


def test_a_member_cut_off_from_the_brokers_loses_its_partitions_and_rejoins_after_heal(
        local_cluster: Callable[..., LocalCluster], admin_for: Callable[[LocalCluster], Admin],
        tmp_path: Path, seed: int) -> None:
    topic, name = "members", "cutoff"
    cluster = local_cluster(brokers=3, controllers=1, broker_config=GROUP_FAST,
                            log_level="WARNING")
    admin = admin_for(cluster)
    admin.create_topics([NewTopic(topic, 3, 2)])
    cluster.wait_for(lambda: all(p.leader is not None for p in
                                 admin.describe_topics([topic])[topic].partitions),
                     BOUND_S, what="leaders for every partition")
    ends = produce(cluster, topic, 3, 5)
    group = VerifiableConsumerGroup(cluster.bootstrap_servers, topic, name, tmp_path / "group",
                                    RunClock(), members=3, namespace=cluster.namespace,
                                    config={"session_timeout_ms": SESSION_MS})
    history = tmp_path / "history.jsonl"

    def status(member: str) -> dict[str, Any]:
        return group.statuses()[member] or {}

    def members_known() -> set[str]:
        described = admin.describe_consumer_groups([name])[name]
        return {m.client_id for m in described.members} if described.state == "Stable" \
            else set()

    try:
        group.start()
        group.wait_assigned(3, BOUND_S)
        cluster.wait_for(lambda: group.caught_up(ends), BOUND_S, what="the first records")
        with HistoryWriter(history) as writer, FaultInjector(
                cluster, history=writer, rng=random.Random(seed), admin=admin,
                consumers=group) as chaos:
            before = status("c0")["generation"]
            chaos.partition("consumer:c0")  # vs every broker and controller
            cut_at = time.monotonic()
            c0_table = ray.get(group.member_handle("c0").faults.remote(), timeout=10)
            for b in cluster.broker_ids:
                assert c0_table["outgoing"][f"broker-{b}"]["drop"]
                assert c0_table["outgoing"][cluster.broker_addresses[b]]["drop"]
                assert table(cluster, b)["incoming"]["consumer-c0"]["drop"]

            # No heartbeat gets through: the coordinator expires c0, the others take over.
            def others_own_all() -> bool:
                sts = [status(m) for m in ("c1", "c2")]
                owned = {tuple(tp) for st in sts for tp in st.get("assignment", ())}
                gens = {int(st.get("generation", -1)) for st in sts}
                return len(owned) == 3 and len(gens) == 1 and min(gens) > before

            cluster.wait_for(others_own_all, SESSION_MS / 1000 + REBALANCE_SLACK_S,
                             what=f"c1 and c2 own c0's partitions (seed={seed})")
            took = time.monotonic() - cut_at
            print(f"rebalance after a member was cut off: {took * 1000:.0f} ms "
                  f"(session.timeout.ms={SESSION_MS})")
            assert members_known() == {"chaos-c1", "chaos-c2"}

            chaos.heal()
            assert ray.get(group.member_handle("c0").faults.remote(), timeout=10) == \
                {"outgoing": {}, "incoming": {}}
            assert all(table(cluster, b) == {"outgoing": {}, "incoming": {}}
                       for b in cluster.broker_ids)
            handled = status("c0")["processed"]

            # c0 rejoins and gets a share; the group consumes what comes next, c0 included.
            cluster.wait_for(lambda: members_known() == {"chaos-c0", "chaos-c1", "chaos-c2"}
                             and bool(status("c0")["assignment"]), BOUND_S,
                             what=f"c0 back in the group with partitions (seed={seed})")
            ends = produce(cluster, topic, 3, 5)
            cluster.wait_for(lambda: group.caught_up(ends), BOUND_S,
                             what="records after the heal consumed and committed")
            cluster.wait_for(lambda: status("c0")["processed"] > handled, BOUND_S,
                             what="c0 consuming again")

            # The brokers' side alone cuts c0 off too: its calls carry its node name.
            for b in cluster.broker_ids:
                ray.get(cluster.broker_handle(b).set_link_faults.remote(
                    incoming={"consumer-c0": {"drop": True}}), timeout=10)
            cluster.wait_for(lambda: members_known() == {"chaos-c1", "chaos-c2"},
                             SESSION_MS / 1000 + REBALANCE_SLACK_S,
                             what="c0 expired by the brokers' tables alone")
            chaos.heal()  # clears every table, those set behind the injector's back too

            # A member restarted while cut off starts with the partition's table, not clean.
            chaos.partition("consumer:c1", "broker:*")
            chaos.restart("consumer:c1")
            c1_table = ray.get(group.member_handle("c1").faults.remote(), timeout=10)
            assert all(c1_table["outgoing"][f"broker-{b}"]["drop"] for b in cluster.broker_ids)
            assert "controller-1" not in c1_table["outgoing"]
            # A slow member link: its calls wait on its side and again as they come in.
            chaos.slow("consumer:c2", 50, "broker:1")
            c2_table = ray.get(group.member_handle("c2").faults.remote(), timeout=10)
            assert c2_table["outgoing"]["broker-1"] == {"drop": False, "delay_ms": 50}
            assert table(cluster, 1)["incoming"]["consumer-c2"] == {"drop": False, "delay_ms": 50}
            chaos.heal()
            assert all(ray.get(group.member_handle(m).faults.remote(), timeout=10) ==
                       {"outgoing": {}, "incoming": {}} for m in group.member_names())
    finally:
        group.stop(timeout_s=5.0)
    ops = faults_of(history)
    assert [(op.f.value, op.target) for op in ops] == [
        ("partition", "consumer:c0"), ("heal", "all"), ("heal", "all"),
        ("partition", "consumer:c1"), ("restart", "consumer:c1"), ("slow", "consumer:c2"),
        ("heal", "all")]
    assert set(ops[0].detail["side_b"]) == (  # type: ignore[arg-type]
        {"controller:1"} | {f"broker:{b}" for b in cluster.broker_ids})


def _rafka(*args: str, cwd: Path, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cluster.cli", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_the_cli_kills_and_restarts_a_broker_of_a_detached_cluster(tmp_path: Path) -> None:
    data = tmp_path / "c"
    common = ["--name", "chaoscli", "--data-dir", str(data)]
    up = _rafka("cluster", "up", "-b", "3", "-c", "1", *common, cwd=tmp_path)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        history = tmp_path / "h.jsonl"
        kill = _rafka("chaos", "kill", "broker:2", *common, "--history", str(history),
                      cwd=tmp_path)
        assert kill.returncode == 0, kill.stdout + kill.stderr
        assert "killed broker:2" in kill.stdout
        status = _rafka("cluster", "status", *common, cwd=tmp_path)
        assert status.returncode == 1 and "unreachable" in status.stdout, status.stdout
        restart = _rafka("chaos", "restart", "broker:2", *common, "--history", str(history),
                         cwd=tmp_path)
        assert restart.returncode == 0, restart.stdout + restart.stderr
        status = _rafka("cluster", "status", *common, cwd=tmp_path)
        assert status.returncode == 0, status.stdout + status.stderr
        bad = _rafka("chaos", "kill", "broker:x", *common, cwd=tmp_path)
        assert bad.returncode != 0 and "must be a number" in bad.stderr
        # A pause outlives its command: the pid waits in the state file for `resume`.
        for args in (("pause", "broker:3"), ("resume", "broker:3"),
                     ("partition", "controller:leader"), ("heal",)):
            done = _rafka("chaos", *args, *common, "--history", str(history), cwd=tmp_path)
            assert done.returncode == 0, done.stdout + done.stderr
            state = json.loads((data / "chaos-state.json").read_text())
            assert list(state["paused"]) == (["broker:3"] if args[0] == "pause" else [])
        assert [(op.f.value, op.target) for op in faults_of(history)] == [
            ("kill", "broker:2"), ("restart", "broker:2"), ("pause", "broker:3"),
            ("resume", "broker:3"), ("partition", "controller:leader"), ("heal", "all")]
    finally:
        down = _rafka("cluster", "down", "--purge", *common, cwd=tmp_path)
        assert down.returncode == 0, down.stdout + down.stderr


NODE_LOSS_SCRIPT = """
import json, random, sys, tempfile
from chaos.faults import FaultInjector
from chaos.nodes import RayNodes
from clients import Admin, NewTopic, Producer
from cluster.launcher import LocalCluster, namespace_for

FAST = json.loads(sys.argv[1])
out = {}
with RayNodes(workers=3, namespace=namespace_for("nodeloss")) as nodes:
    with LocalCluster(brokers=3, controllers=1, name="nodeloss", broker_config=FAST,
                      log_level="WARNING", actor_options=nodes.actor_options) as cluster:
        with Admin(bootstrap_servers=cluster.bootstrap_servers, request_timeout_ms=2000,
                   default_api_timeout_ms=6000) as admin:
            admin.create_topics([NewTopic("t", 1, 3)])
            def part():
                try:
                    return admin.describe_topics(["t"])["t"].partition(0)
                except Exception:
                    return None
            cluster.wait_for(lambda: (p := part()) is not None and len(p.isr) == 3, 30,
                             what="full ISR")
            with FaultInjector(cluster, admin=admin, nodes=nodes,
                               rng=random.Random(1)) as chaos:
                leader = part().leader
                node = nodes.node_of(f"broker-{leader}")
                victims = chaos.lose_node(f"node:{node}")
                out["victims"] = [str(v) for v in victims]
                cluster.wait_for(lambda: (p := part()) is not None and p.leader not in
                                 (None, leader), 30, what="a leader on a surviving node")
                out["new_leader"] = part().leader
                chaos.restore()
                cluster.wait_for(lambda: (p := part()) is not None and len(p.isr) == 3, 30,
                                 what="ISR whole after the node is back")
                out["faults"] = [op.f.value for op in chaos.recorded]
                out["leader"] = leader
print("RESULT " + json.dumps(out))
"""


def test_losing_a_ray_node_kills_its_broker_and_restore_brings_it_back(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-c", NODE_LOSS_SCRIPT, json.dumps(FAST)],
                         cwd=tmp_path, text=True, capture_output=True, timeout=240,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stdout[-3000:] + run.stderr[-3000:]
    out = json.loads(lines[0][len("RESULT "):])
    assert out["victims"] == [f"broker:{out['leader']}"]
    assert out["new_leader"] != out["leader"]
    assert out["faults"] == ["node-loss", "heal", "restart"]
