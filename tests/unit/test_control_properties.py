"""Random request/tick sequences against ControlManager, with invariants checked after each step.

Invariants: every partition's leader is -1 or an ISR member that is active (unfenced, not
shutting down); ISR is a non-empty subset of the replicas; leader and partition epochs never
decrease (also across failovers); producer-id blocks never overlap; broker epochs only grow;
every record survives the codec; replaying every entry into a fresh image gives the manager's
image.
"""

from __future__ import annotations

import random

from controller.control import ControllerConfig
from controller.partition_change import BrokerState
from controller.requests import (
    AllocateProducerIdsRequest,
    AlterableConfig,
    AlterConfigOpType,
    AlterConfigsResource,
    AlterPartitionData,
    AlterPartitionRequest,
    CreatableTopic,
    CreatePartitionsRequest,
    CreatePartitionsTopic,
    CreateTopicsRequest,
    DeleteTopicsRequest,
    ElectionType,
    ElectLeadersRequest,
    IncrementalAlterConfigsRequest,
    TopicPartition,
)
from proto.errors import ErrorCode
from proto.metadata import NO_LEADER, ConfigResourceType, decode_records, encode_records
from tests.unit.control_harness import Shell

BROKERS = (1, 2, 3, 4)
TOPICS = ("a", "b", "c")
STEPS = 400


class Driver:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.now_ms = 0
        self.shell = Shell(
            ControllerConfig(leader_imbalance_check_interval_ms=2000), seed=seed
        )
        self.epochs_seen: dict[tuple[str, int], tuple[int, int]] = {}
        self.broker_epochs_seen: dict[int, int] = {}
        self.producer_id_ends: list[tuple[int, int]] = []

    # ------------------------------------------------------------------ actions

    def step(self) -> str:
        action = self.rng.choices(
            [
                self.register, self.heartbeat, self.advance, self.create_topic,
                self.delete_topic, self.add_partitions, self.alter_config,
                self.alter_partition, self.elect, self.producer_ids, self.failover,
            ],
            weights=[6, 30, 12, 8, 2, 3, 4, 15, 3, 3, 1],
        )[0]
        return action()

    def register(self) -> str:
        broker_id = self.rng.choice(BROKERS)
        same = self.rng.random() < 0.3 and broker_id in self.shell.incarnations
        incarnation = self.shell.incarnations[broker_id] if same else None
        response = self.shell.register(broker_id, self.now_ms, incarnation=incarnation)
        return f"register {broker_id} same={same} → {response.error_code.name}"

    def heartbeat(self) -> str:
        if not self.shell.epochs:
            return "heartbeat (none registered)"
        broker_id = self.rng.choice(sorted(self.shell.epochs))
        committed = self.shell.committed.last_applied_offset
        offset = committed if self.rng.random() < 0.8 else self.rng.randrange(-1, committed + 1)
        response = self.shell.heartbeat(
            broker_id, self.now_ms, offset=offset,
            want_fence=self.rng.random() < 0.03, want_shutdown=self.rng.random() < 0.05,
        )
        return f"heartbeat {broker_id} offset={offset} → {response}"

    def advance(self) -> str:
        self.now_ms += self.rng.choice([100, 500, 1500, 4000])
        result = self.shell.manager.tick(self.now_ms)
        self.shell.commit(result)
        return f"tick {self.now_ms}: {len(result.records)} record(s)"

    def create_topic(self) -> str:
        configs: dict[str, str | None] = {}
        if self.rng.random() < 0.3:
            configs["unclean.leader.election.enable"] = "true"
        if self.rng.random() < 0.2:
            configs["min.insync.replicas"] = str(self.rng.randint(1, 3))
        topic = CreatableTopic(
            self.rng.choice(TOPICS), self.rng.randint(1, 3), self.rng.randint(1, 3),
            configs=configs,
        )
        response = self.shell.commit(self.shell.manager.handle_create_topics(
            CreateTopicsRequest((topic,)), self.now_ms
        ))
        return f"create {topic} → {response.topics[0].error_code.name}"

    def delete_topic(self) -> str:
        response = self.shell.commit(self.shell.manager.handle_delete_topics(
            DeleteTopicsRequest((self.rng.choice(TOPICS),)), self.now_ms
        ))
        return f"delete → {response}"

    def add_partitions(self) -> str:
        name = self.rng.choice(TOPICS)
        response = self.shell.commit(self.shell.manager.handle_create_partitions(
            CreatePartitionsRequest((CreatePartitionsTopic(name, self.rng.randint(1, 5)),)),
            self.now_ms,
        ))
        return f"add partitions {name} → {response}"

    def alter_config(self) -> str:
        name = self.rng.choice(TOPICS)
        op = self.rng.choice([
            AlterableConfig("unclean.leader.election.enable", AlterConfigOpType.SET,
                            self.rng.choice(["true", "false"])),
            AlterableConfig("unclean.leader.election.enable", AlterConfigOpType.DELETE),
            AlterableConfig("min.insync.replicas", AlterConfigOpType.SET,
                            str(self.rng.randint(1, 3))),
            AlterableConfig("cleanup.policy", AlterConfigOpType.APPEND, "compact"),
        ])
        response = self.shell.commit(self.shell.manager.handle_incremental_alter_configs(
            IncrementalAlterConfigsRequest(
                (AlterConfigsResource(ConfigResourceType.TOPIC, name, (op,)),)
            ),
            self.now_ms,
        ))
        return f"alter config {name} {op} → {response.responses[0].error_code.name}"

    def alter_partition(self) -> str:
        image = self.shell.manager.image
        led = [(tp, reg) for tp, reg in image.all_partitions() if reg.leader != NO_LEADER]
        if not led:
            return "alter partition (no leaders)"
        tp, reg = self.rng.choice(led)
        others = [r for r in reg.replicas if r != reg.leader]
        members = [reg.leader] + [r for r in others if self.rng.random() < 0.6]
        new_isr = tuple(
            BrokerState(m, self.shell.epochs.get(m, -1)) if self.rng.random() < 0.5 else m
            for m in members
        )
        stale = self.rng.random() < 0.15
        data = AlterPartitionData(
            tp.topic_id, tp.partition,
            reg.leader_epoch - (1 if stale and self.rng.random() < 0.5 else 0),
            new_isr,
            reg.partition_epoch - (1 if stale else 0),
        )
        response = self.shell.commit(self.shell.manager.handle_alter_partition(
            AlterPartitionRequest(reg.leader, self.shell.epochs[reg.leader], (data,)),
            self.now_ms,
        ))
        return f"alter partition {tp.topic}-{tp.partition} {new_isr} → {response}"

    def elect(self) -> str:
        election = self.rng.choice([ElectionType.PREFERRED, ElectionType.UNCLEAN])
        partitions = None
        if self.rng.random() < 0.5:
            partitions = (TopicPartition(self.rng.choice(TOPICS), self.rng.randint(0, 2)),)
        response = self.shell.commit(self.shell.manager.handle_elect_leaders(
            ElectLeadersRequest(election, partitions), self.now_ms
        ))
        return f"elect {election.name} {partitions} → {response}"

    def producer_ids(self) -> str:
        if not self.shell.epochs:
            return "producer ids (none registered)"
        broker_id = self.rng.choice(sorted(self.shell.epochs))
        response = self.shell.commit(self.shell.manager.handle_allocate_producer_ids(
            AllocateProducerIdsRequest(broker_id, self.shell.epochs[broker_id]), self.now_ms
        ))
        if response.error_code is ErrorCode.NONE:
            self.producer_id_ends.append(
                (response.producer_id_start, response.producer_id_start + response.producer_id_len)
            )
        return f"producer ids {broker_id} → {response}"

    def failover(self) -> str:
        self.shell.failover(self.now_ms)
        return f"failover at {self.now_ms}"

    # ------------------------------------------------------------------ invariants

    def check(self, where: str, full_replay: bool) -> None:
        image = self.shell.manager.image
        active = set(image.active_broker_ids())
        for tp, reg in image.all_partitions():
            label = f"{where}: {tp.topic}-{tp.partition} {reg}"
            leader_ok = reg.leader in reg.isr and reg.leader in active
            assert reg.leader == NO_LEADER or leader_ok, label
            assert reg.isr and set(reg.isr) <= set(reg.replicas), label
            key = (tp.topic_id, tp.partition)
            last = self.epochs_seen.get(key, (0, 0))
            assert reg.leader_epoch >= last[0] and reg.partition_epoch >= last[1], label
            self.epochs_seen[key] = (reg.leader_epoch, reg.partition_epoch)
        for broker_id, registration in image.brokers.items():
            assert registration.broker_epoch >= self.broker_epochs_seen.get(broker_id, -1), where
            self.broker_epochs_seen[broker_id] = registration.broker_epoch
        for (start1, end1), (start2, _) in zip(self.producer_id_ends, self.producer_id_ends[1:]):
            assert start1 < end1 <= start2, f"{where}: producer id blocks {self.producer_id_ends}"
        if self.shell.entries:
            records = self.shell.entries[-1][1]
            assert decode_records(encode_records(records)) == list(records), where
        assert image == self.shell.committed, where
        if full_replay:
            assert self.shell.replayed() == image, where


def test_random_request_sequences_keep_controller_invariants(seed: int) -> None:
    driver = Driver(seed)
    history: list[str] = []
    for step in range(STEPS):
        history.append(driver.step())
        where = f"seed={seed} step {step}: {history[-1]}\nlast steps: {history[-8:]}"
        driver.check(where, full_replay=step % 50 == 49)
    driver.check(f"seed={seed} end", full_replay=True)
    # The run did interesting things (guards against a driver that only produces errors).
    image = driver.shell.manager.image
    assert driver.shell.entries and image.brokers, f"seed={seed}"
