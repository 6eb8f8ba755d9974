"""Target specs of `rafka chaos` and the injector: parsing, and resolution of fixed ids."""

from __future__ import annotations

import random

import pytest

from chaos.faults import FaultInjector
from chaos.targets import Target, TargetKind, parse_target, parse_targets, targets_text
from clients.types import GroupDescription, PartitionInfo, TopicDescription


@pytest.mark.parametrize(("spec", "kind", "text"), [
    ("broker:2", TargetKind.BROKER, "broker:2"),
    (" Broker : 3 ", TargetKind.BROKER, "broker:3"),
    ("broker:*", TargetKind.BROKER, "broker:*"),
    ("controller:1", TargetKind.CONTROLLER, "controller:1"),
    ("controller:leader", TargetKind.CONTROLLER, "controller:leader"),
    ("leader:orders/0", TargetKind.LEADER, "leader:orders/0"),
    ("leader:my.topic-v2/12", TargetKind.LEADER, "leader:my.topic-v2/12"),
    ("follower:orders/3", TargetKind.FOLLOWER, "follower:orders/3"),
    ("coordinator:billing", TargetKind.COORDINATOR, "coordinator:billing"),
    ("consumer:c-1", TargetKind.CONSUMER, "consumer:c-1"),
    ("consumer:random", TargetKind.CONSUMER, "consumer:random"),
])
def test_every_documented_form_parses(spec: str, kind: TargetKind, text: str) -> None:
    parsed = parse_target(spec)
    assert parsed.kind is kind
    assert parsed.text == text


def test_parsed_fields_name_what_the_spec_names() -> None:
    assert parse_target("broker:2").node_id == 2
    assert parse_target("broker:*").every
    assert parse_target("controller:leader").is_controller_leader
    assert not parse_target("controller:1").is_controller_leader
    leader = parse_target("leader:a.b/7")
    assert (leader.topic, leader.partition) == ("a.b", 7)
    assert parse_target("coordinator:g1").group == "g1"
    assert parse_target("consumer:c1").name == "c1"
    assert parse_target("consumer:random").name is None


@pytest.mark.parametrize(("spec", "says"), [
    ("broker", "ROLE:ARG"),
    ("broker:", "ROLE:ARG"),
    ("broker:two", "must be a number"),
    ("controller:-1", "must be a number"),
    ("leader:orders", "TOPIC/PARTITION"),
    ("leader:orders/x", "TOPIC/PARTITION"),
    ("leader:/0", "TOPIC/PARTITION"),
    ("follower:orders/", "TOPIC/PARTITION"),
    ("node:1", "unknown role"),
    ("", "ROLE:ARG"),
])
def test_a_bad_spec_is_a_value_error_that_says_what_is_accepted(spec: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as info:
        parse_target(spec)
    assert repr(spec) in str(info.value)


def test_several_specs_split_on_commas() -> None:
    assert [t.text for t in parse_targets("broker:1, controller:leader")] == [
        "broker:1", "controller:leader"]
    assert [t.text for t in parse_targets(["broker:1", "broker:2"])] == ["broker:1", "broker:2"]
    with pytest.raises(ValueError, match="no target"):
        parse_targets(" , ")


def test_targets_print_in_the_cli_syntax() -> None:
    targets = [Target("broker", 1), Target("controller", 3), Target("consumer", "c1")]
    assert targets_text(targets) == "broker:1,controller:3,consumer:c1"
    assert Target("broker", 2).actor_name == "broker-2"
    with pytest.raises(AssertionError):
        Target("leader", 1)


class _FakeCluster:
    broker_ids = [1, 2, 3]
    controller_ids = [1]


class _FakeGroup:
    def __init__(self) -> None:
        self.killed: list[str] = []

    def member_names(self) -> list[str]:
        return ["c2", "c0", "c1"]

    def kill_member(self, name: str) -> None:
        self.killed.append(name)

    def restart_member(self, name: str) -> None:
        pass

    def member_pid(self, name: str) -> int:
        return 1

    def member_handle(self, name: str) -> object:
        raise LookupError(f"consumer {name} is not running")


def test_fixed_ids_resolve_without_metadata_and_unknown_ids_are_refused() -> None:
    injector = FaultInjector(_FakeCluster(), rng=random.Random(1))  # type: ignore[arg-type]
    assert injector.resolve("broker:2") == [Target("broker", 2)]
    assert injector.resolve("broker:*,broker:1") == [Target("broker", i) for i in (1, 2, 3)]
    assert injector.resolve([Target("controller", 1), "broker:3"]) == [
        Target("controller", 1), Target("broker", 3)]
    with pytest.raises(ValueError, match="no broker 9"):
        injector.resolve("broker:9")
    with pytest.raises(ValueError, match="consumers="):
        injector.resolve("consumer:random")


def test_a_random_member_is_chosen_by_the_seeded_rng(seed: int) -> None:
    def pick(s: int) -> list[Target]:
        injector = FaultInjector(_FakeCluster(), rng=random.Random(s),  # type: ignore[arg-type]
                                 consumers=_FakeGroup())
        return [injector.resolve("consumer:random")[0] for _ in range(5)]

    assert pick(seed) == pick(seed), f"seed={seed}"
    injector = FaultInjector(_FakeCluster(), consumers=_FakeGroup())  # type: ignore[arg-type]
    assert injector.resolve("consumer:c1") == [Target("consumer", "c1")]
    with pytest.raises(LookupError, match="no member 'c9'"):
        injector.resolve("consumer:c9")


def test_a_consumer_kill_goes_through_the_group_handle_and_is_recorded() -> None:
    group = _FakeGroup()
    times = iter(range(100, 200))
    injector = FaultInjector(_FakeCluster(), consumers=group,  # type: ignore[arg-type]
                             clock_ms=lambda: next(times))
    assert injector.kill("consumer:c0") == [Target("consumer", "c0")]
    assert group.killed == ["c0"]
    [op] = injector.recorded
    assert (op.f.value, op.target, op.time_ms) == ("kill", "consumer:c0", 100)
    assert op.detail["resolved"] == ["consumer:c0"] and op.detail["partitions"] == []
    assert injector.killed == [Target("consumer", "c0")]


class _FakeAdmin:
    """describe_topics / describe_consumer_groups from fixed metadata."""

    def __init__(self, leader: int | None, isr: tuple[int, ...] = (1, 2, 3)) -> None:
        self.leader = leader
        self.isr = isr

    def describe_topics(self, names: list[str] | None = None) -> dict[str, TopicDescription]:
        parts = (PartitionInfo(0, self.leader, (1, 2, 3), self.isr),
                 PartitionInfo(1, 3, (3, 1, 2), (3, 1, 2)))
        return {"t": TopicDescription("t", parts)}

    def describe_consumer_groups(self, ids: list[str]) -> dict[str, GroupDescription]:
        return {g: GroupDescription(g, "Stable", "consumer", "range", (), self.leader)
                for g in ids}


class _KillableCluster(_FakeCluster):
    def kill_broker(self, broker_id: int) -> None:
        pass


def _injector(admin: _FakeAdmin, seed: int = 0) -> FaultInjector:
    return FaultInjector(_KillableCluster(), admin=admin,  # type: ignore[arg-type]
                         rng=random.Random(seed))


def test_roles_resolve_from_live_metadata() -> None:
    injector = _injector(_FakeAdmin(leader=2))
    assert injector.resolve("leader:t/0") == [Target("broker", 2)]
    assert injector.resolve("coordinator:g") == [Target("broker", 2)]
    assert injector.resolve("follower:t/0")[0] in (Target("broker", 1), Target("broker", 3))
    assert injector.led_by([3]) == [["t", 1]]
    with pytest.raises(ValueError, match="no partition 7"):
        injector.resolve("leader:t/7")
    with pytest.raises(LookupError, match="offline"):
        _injector(_FakeAdmin(leader=None)).resolve("leader:t/0")


def test_a_follower_is_picked_among_live_in_sync_replicas(seed: int) -> None:
    injector = _injector(_FakeAdmin(leader=1, isr=(1, 3)), seed)
    assert {injector.resolve("follower:t/0")[0] for _ in range(10)} == {Target("broker", 3)}, \
        f"seed={seed}"
    injector.kill("broker:3")
    # Broker 3 is down: the out-of-sync follower is all that is left.
    assert injector.resolve("follower:t/0") == [Target("broker", 2)], f"seed={seed}"


def test_stale_metadata_naming_a_killed_leader_is_refused() -> None:
    injector = _injector(_FakeAdmin(leader=2))
    [victim] = injector.kill("leader:t/0")
    assert injector.recorded[0].detail["partitions"] == [["t", 0]]
    with pytest.raises(LookupError, match="broker:2, which is killed"):
        injector.kill("leader:t/0")
    with pytest.raises(LookupError, match="broker:2, which is killed"):
        injector.resolve("coordinator:g")
    assert victim == Target("broker", 2)


@pytest.mark.parametrize("argv", [
    ["chaos", "partition", "consumer:c0"],
    ["chaos", "partition", "broker:1", "broker:2,consumer:c1"],
    ["chaos", "slow", "broker:1", "--delay-ms", "50", "--peers", "consumer:random"],
    ["chaos", "kill", "consumer:c0"],
])
def test_the_cli_says_why_it_cannot_reach_the_consumers_of_an_ad_hoc_cluster(
        argv: list[str], tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    from cluster.cli import build_parser, run_client_command

    # Refused before looking for the cluster (none exists at this data dir).
    args = build_parser().parse_args([*argv, "--data-dir", str(tmp_path)])
    assert run_client_command(args) != 0
    err = capsys.readouterr().err
    assert "not reachable by name" in err and "consumer:" in err, err
