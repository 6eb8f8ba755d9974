"""MetadataImage: replay, invariants, queries, snapshot and restore (proto/metadata_image.py)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.partition_change import build_partition_change, remove_broker_from_isr
from controller.placement import assign_replicas, new_partition_record
from proto.errors import CorruptMessageError
from proto.metadata import (
    NO_LEADER,
    BrokerRegistrationChangeRecord,
    ConfigRecord,
    ConfigResourceType,
    Endpoint,
    FeatureLevelRecord,
    LeaderRecoveryState,
    MetadataRecord,
    NoOpRecord,
    PartitionChangeRecord,
    PartitionRecord,
    ProducerIdsRecord,
    RegisterBrokerRecord,
    RemoveTopicRecord,
    TopicRecord,
    UnregisterBrokerRecord,
    new_uuid,
)
from proto.metadata_image import MetadataImage, TopicIdPartition

T1 = "11111111-1111-4111-8111-111111111111"
T2 = "22222222-2222-4222-8222-222222222222"


def _register(broker_id: int, epoch: int, *, fenced: bool = False) -> RegisterBrokerRecord:
    return RegisterBrokerRecord(broker_id, f"inc-{broker_id}-{epoch}", epoch,
                                Endpoint("127.0.0.1", 9000 + broker_id), fenced=fenced)


def _image(*records: MetadataRecord) -> MetadataImage:
    image = MetadataImage()
    for offset, record in enumerate(records):
        image.apply(record, offset)
    return image


def _cluster() -> MetadataImage:
    """Brokers 1-3 unfenced; orders (T1) with 2 partitions, payments (T2) with 1."""
    return _image(
        _register(1, 0), _register(2, 1), _register(3, 2),
        TopicRecord("orders", T1),
        PartitionRecord(T1, 0, (1, 2, 3), (1, 2, 3), 1),
        PartitionRecord(T1, 1, (2, 3, 1), (2, 3), 2),
        TopicRecord("payments", T2),
        PartitionRecord(T2, 0, (3, 1), (3,), 3),
    )


# ---------------------------------------------------------------- brokers


def test_registered_broker_starts_fenced_and_is_not_live() -> None:
    image = _image(RegisterBrokerRecord(1, "inc", 0, Endpoint("h", 9092)))
    assert image.broker(1) is not None and image.broker(1).fenced  # type: ignore[union-attr]
    assert image.live_broker_ids() == ()
    assert image.registered_broker_ids() == (1,)


def test_unfence_makes_broker_live_and_active() -> None:
    image = _image(_register(1, 0, fenced=True), BrokerRegistrationChangeRecord(1, 0, fenced=False))
    assert image.live_broker_ids() == (1,)
    assert image.active_broker_ids() == (1,)


def test_broker_in_controlled_shutdown_is_live_but_not_active() -> None:
    image = _image(_register(1, 0), _register(2, 1),
                   BrokerRegistrationChangeRecord(2, 1, in_controlled_shutdown=True))
    assert image.live_broker_ids() == (1, 2)
    assert image.active_broker_ids() == (1,)


def test_reregistration_replaces_the_old_incarnation_with_a_newer_epoch() -> None:
    image = _image(_register(1, 0), _register(1, 5, fenced=True))
    registration = image.broker(1)
    assert registration is not None
    assert (registration.broker_epoch, registration.fenced) == (5, True)


def test_reregistration_with_an_older_epoch_is_a_bug() -> None:
    image = _image(_register(1, 5))
    with pytest.raises(AssertionError, match="epoch"):
        image.apply(_register(1, 3), 6)


def test_broker_change_with_a_stale_epoch_is_a_bug() -> None:
    image = _image(_register(1, 5))
    with pytest.raises(AssertionError, match="epoch 4 != registered 5"):
        image.apply(BrokerRegistrationChangeRecord(1, 4, fenced=True), 6)


def test_unregister_removes_the_broker() -> None:
    image = _image(_register(1, 0), _register(2, 1), UnregisterBrokerRecord(1, 0))
    assert image.registered_broker_ids() == (2,)


# ---------------------------------------------------------------- topics and partitions


def test_topic_lookup_by_name_and_by_id() -> None:
    image = _cluster()
    orders = image.topic("orders")
    assert orders is not None and orders.topic_id == T1
    payments = image.topic_by_id(T2)
    assert payments is not None and payments.name == "payments"
    assert image.topic("missing") is None
    assert image.topic_names() == ("orders", "payments")
    assert [t.name for t in image.topics()] == ["orders", "payments"]


def test_partition_change_bumps_partition_epoch_and_keeps_leader_epoch_without_leader() -> None:
    image = _cluster()
    image.apply(PartitionChangeRecord(T1, 0, isr=(1, 2)), 100)
    partition = image.partition(T1, 0)
    assert partition is not None
    assert (partition.isr, partition.leader, partition.leader_epoch, partition.partition_epoch) \
        == ((1, 2), 1, 0, 1)


def test_partition_change_with_a_leader_bumps_both_epochs() -> None:
    image = _cluster()
    image.apply(PartitionChangeRecord(T1, 0, isr=(2, 3), leader=2), 100)
    partition = image.partition(T1, 0)
    assert partition is not None
    assert (partition.leader, partition.leader_epoch, partition.partition_epoch) == (2, 1, 1)


def test_partition_change_for_an_unknown_partition_is_a_bug() -> None:
    image = _cluster()
    with pytest.raises(AssertionError, match="unknown partition orders-7"):
        image.apply(PartitionChangeRecord(T1, 7, leader=NO_LEADER), 100)


def test_partition_change_putting_leader_outside_isr_is_a_bug() -> None:
    image = _cluster()
    with pytest.raises(AssertionError, match="not in ISR"):
        image.apply(PartitionChangeRecord(T1, 0, isr=(2, 3)), 100)


def test_partition_change_emptying_the_isr_is_a_bug() -> None:
    image = _cluster()
    with pytest.raises(AssertionError, match="empty ISR"):
        image.apply(PartitionChangeRecord(T1, 0, isr=(), leader=NO_LEADER), 100)


def test_partitions_must_be_created_in_order() -> None:
    image = _image(TopicRecord("t", T1))
    with pytest.raises(AssertionError, match="expected 0"):
        image.apply(PartitionRecord(T1, 1, (1,), (1,), 1), 1)


def test_duplicate_topic_name_is_a_bug() -> None:
    image = _image(TopicRecord("t", T1))
    with pytest.raises(AssertionError, match="already exists"):
        image.apply(TopicRecord("t", T2), 1)


def test_offsets_must_increase() -> None:
    image = _image(NoOpRecord())
    with pytest.raises(AssertionError, match="offset 0 <= last applied 0"):
        image.apply(NoOpRecord(), 0)


def test_recovering_partition_must_have_a_single_isr_member() -> None:
    image = _cluster()
    with pytest.raises(AssertionError, match="RECOVERING"):
        image.apply(PartitionChangeRecord(
            T1, 0, leader_recovery_state=LeaderRecoveryState.RECOVERING), 100)


def test_apply_reports_changed_partitions_and_brokers() -> None:
    image = _cluster()
    change = image.apply_batch([
        PartitionChangeRecord(T1, 1, isr=(2,)),
        BrokerRegistrationChangeRecord(3, 2, fenced=True),
    ], 100)
    assert change.offset == 100 and image.last_applied_offset == 100
    assert change.partitions == (TopicIdPartition("orders", 1, T1),)
    assert change.brokers == (3,)


def test_remove_topic_drops_partitions_and_topic_configs_and_reports_them() -> None:
    image = _cluster()
    image.apply(ConfigRecord(ConfigResourceType.TOPIC, "orders", "retention.ms", "5"), 100)
    change = image.apply(RemoveTopicRecord(T1), 101)
    assert image.topic("orders") is None and image.topic_by_id(T1) is None
    assert image.configs_for(ConfigResourceType.TOPIC, "orders") == {}
    assert change.partitions == (TopicIdPartition("orders", 0, T1),
                                 TopicIdPartition("orders", 1, T1))
    assert [t.name for t in change.removed_topics] == ["orders"]


def test_remove_unknown_topic_is_a_bug() -> None:
    with pytest.raises(AssertionError, match="unknown topic"):
        _image(RemoveTopicRecord(T1))


# ---------------------------------------------------------------- queries


def test_partitions_led_by_and_with_isr_member_are_sorted_by_topic_then_partition() -> None:
    image = _cluster()
    assert image.partitions_led_by(2) == (TopicIdPartition("orders", 1, T1),)
    assert image.partitions_with_isr_member(3) == (
        TopicIdPartition("orders", 0, T1), TopicIdPartition("orders", 1, T1),
        TopicIdPartition("payments", 0, T2),
    )
    assert image.partitions_with_replica(1) == (
        TopicIdPartition("orders", 0, T1), TopicIdPartition("orders", 1, T1),
        TopicIdPartition("payments", 0, T2),
    )


def test_offline_partitions_are_those_without_leader() -> None:
    image = _cluster()
    image.apply(PartitionChangeRecord(T2, 0, leader=NO_LEADER), 100)
    assert image.offline_partitions() == (TopicIdPartition("payments", 0, T2),)


def test_topic_config_returns_value_then_default_after_delete() -> None:
    image = _cluster()
    image.apply(ConfigRecord(ConfigResourceType.TOPIC, "orders", "min.insync.replicas", "2"), 100)
    assert image.topic_config("orders", "min.insync.replicas", "1") == "2"
    image.apply(ConfigRecord(ConfigResourceType.TOPIC, "orders", "min.insync.replicas", None), 101)
    assert image.topic_config("orders", "min.insync.replicas", "1") == "1"
    assert image.configs == {}  # no empty per-resource dicts are kept


def test_producer_id_blocks_advance_and_going_backwards_is_a_bug() -> None:
    image = _cluster()
    assert image.next_producer_id == 0
    image.apply(ProducerIdsRecord(1, 0, 1000), 100)
    assert image.next_producer_id == 1000
    with pytest.raises(AssertionError, match="backwards"):
        image.apply(ProducerIdsRecord(1, 0, 1000), 101)


def test_copy_is_independent_of_the_original() -> None:
    image = _cluster()
    staged = image.copy()
    staged.apply(PartitionChangeRecord(T1, 0, leader=NO_LEADER), 100)
    original = image.partition(T1, 0)
    assert original is not None and original.leader == 1
    assert image.last_applied_offset == 7


# ---------------------------------------------------------------- snapshots


def test_snapshot_restores_an_equal_image() -> None:
    image = _cluster()
    image.apply_batch([
        FeatureLevelRecord("metadata.version", 3),
        ConfigRecord(ConfigResourceType.BROKER, "", "log.retention.ms", "10"),
        PartitionChangeRecord(T1, 0, isr=(1,), leader=1),
        BrokerRegistrationChangeRecord(2, 1, in_controlled_shutdown=True),
        ProducerIdsRecord(3, 2, 5000),
    ], 50)
    restored = MetadataImage.from_snapshot(image.snapshot(), image.last_applied_offset)
    assert restored == image
    assert MetadataImage.from_bytes(image.to_bytes()) == image


def test_snapshot_of_an_empty_image_is_empty() -> None:
    assert MetadataImage().snapshot() == []
    assert MetadataImage.from_bytes(MetadataImage().to_bytes()) == MetadataImage()


def test_snapshot_bytes_with_unknown_version_are_corrupt() -> None:
    with pytest.raises(CorruptMessageError, match="snapshot version"):
        MetadataImage.from_bytes(b"\x07\x00\x00")


class _ClusterScript:
    """Generates only valid metadata records, the way an active controller would."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.image = MetadataImage()
        self.log: list[tuple[int, list[MetadataRecord]]] = []
        self.offset = 0

    def commit(self, records: list[MetadataRecord]) -> None:
        self.offset += 1 + self.rng.randrange(3)
        self.image.apply_batch(records, self.offset)
        self.log.append((self.offset, records))

    def step(self) -> None:
        action = self.rng.choice([
            self.register, self.register, self.fence, self.unfence, self.shutdown,
            self.create_topic, self.create_topic, self.delete_topic, self.shrink_isr,
            self.config, self.producer_ids, self.unregister,
        ])
        action()

    def register(self) -> None:
        broker_id = self.rng.randrange(5)
        epoch = self.offset + 1
        current = self.image.broker(broker_id)
        if current is not None and current.broker_epoch >= epoch:
            return
        self.commit([RegisterBrokerRecord(broker_id, new_uuid(self.rng), epoch,
                                          Endpoint("127.0.0.1", 9000 + broker_id),
                                          rack=self.rng.choice([None, "a"]))])

    def _removal(self, broker_id: int) -> list[MetadataRecord]:
        records: list[MetadataRecord] = []
        active = self.image.active_broker_ids()
        for tp in self.image.partitions_with_isr_member(broker_id):
            partition = self.image.partition(tp.topic_id, tp.partition)
            assert partition is not None
            change = remove_broker_from_isr(
                partition, topic_id=tp.topic_id, partition_id=tp.partition,
                broker_id=broker_id, acceptable_leaders=active,
                unclean_leader_election_enable=self.rng.random() < 0.3)
            if change is not None:
                records.append(change)
        return records

    def fence(self) -> None:
        live = self.image.live_broker_ids()
        if live:
            broker = self.image.broker(self.rng.choice(live))
            assert broker is not None
            self.commit(self._removal(broker.broker_id) + [
                BrokerRegistrationChangeRecord(broker.broker_id, broker.broker_epoch,
                                               fenced=True)])

    def shutdown(self) -> None:
        active = self.image.active_broker_ids()
        if active:
            broker = self.image.broker(self.rng.choice(active))
            assert broker is not None
            self.commit(self._removal(broker.broker_id) + [
                BrokerRegistrationChangeRecord(broker.broker_id, broker.broker_epoch,
                                               in_controlled_shutdown=True)])

    def unregister(self) -> None:
        ids = self.image.registered_broker_ids()
        if ids:
            broker = self.image.broker(self.rng.choice(ids))
            assert broker is not None
            self.commit(self._removal(broker.broker_id) + [
                UnregisterBrokerRecord(broker.broker_id, broker.broker_epoch)])

    def unfence(self) -> None:
        fenced = [b for b in self.image.registered_broker_ids()
                  if self.image.brokers[b].fenced or self.image.brokers[b].in_controlled_shutdown]
        if not fenced:
            return
        broker = self.image.brokers[self.rng.choice(fenced)]
        self.commit([BrokerRegistrationChangeRecord(broker.broker_id, broker.broker_epoch,
                                                    fenced=False, in_controlled_shutdown=False)])
        # The controller then elects leaders for offline partitions (handleBrokerUnfenced).
        records: list[MetadataRecord] = []
        for tp in self.image.offline_partitions():
            partition = self.image.partition(tp.topic_id, tp.partition)
            assert partition is not None
            change = build_partition_change(
                partition, topic_id=tp.topic_id, partition_id=tp.partition,
                acceptable_leaders=self.image.active_broker_ids())
            if change is not None:
                records.append(change)
        if records:
            self.commit(records)

    def create_topic(self) -> None:
        active = self.image.active_broker_ids()
        if not active:
            return
        name = f"t{self.rng.randrange(20)}"
        if self.image.topic(name) is not None:
            return
        topic_id = new_uuid(self.rng)
        assignment = assign_replicas(active, num_partitions=self.rng.randint(1, 4),
                                     replication_factor=self.rng.randint(1, len(active)),
                                     rng=self.rng)
        records: list[MetadataRecord] = [TopicRecord(name, topic_id)]
        records += [new_partition_record(topic_id, p, replicas, active)
                    for p, replicas in enumerate(assignment)]
        records.append(ConfigRecord(ConfigResourceType.TOPIC, name, "retention.ms", "1000"))
        self.commit(records)

    def delete_topic(self) -> None:
        names = self.image.topic_names()
        if names:
            topic = self.image.topic(self.rng.choice(names))
            assert topic is not None
            self.commit([RemoveTopicRecord(topic.topic_id)])

    def shrink_isr(self) -> None:
        led = [(tp, reg) for tp, reg in self.image.all_partitions()
               if reg.has_leader and reg.leader_recovery_state is LeaderRecoveryState.RECOVERED]
        if not led:
            return
        tp, partition = self.rng.choice(led)
        others = [r for r in partition.replicas if r != partition.leader
                  and r in self.image.active_broker_ids() and self.rng.random() < 0.5]
        change = build_partition_change(
            partition, topic_id=tp.topic_id, partition_id=tp.partition,
            acceptable_leaders=self.image.active_broker_ids(),
            target_isr=(partition.leader, *others))
        if change is not None:
            self.commit([change])

    def config(self) -> None:
        value = self.rng.choice([None, "1", "2"])
        name = self.rng.choice(["", "b1"])
        self.commit([ConfigRecord(ConfigResourceType.BROKER, name, "x", value)])

    def producer_ids(self) -> None:
        self.commit([ProducerIdsRecord(0, 0, self.image.next_producer_id + 1000)])


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 60))
def test_restore_from_snapshot_equals_replay_of_all_records(seed: int, steps: int) -> None:
    script = _ClusterScript(random.Random(seed))
    for _ in range(steps):
        script.step()
    replayed = MetadataImage()
    for offset, records in script.log:
        replayed.apply_batch(records, offset)
    assert replayed == script.image, f"seed={seed}"
    snapshot = replayed.snapshot()
    restored = MetadataImage.from_snapshot(snapshot, replayed.last_applied_offset)
    assert restored == replayed, f"seed={seed}"
    assert restored.snapshot() == snapshot, f"seed={seed}"
    assert MetadataImage.from_bytes(replayed.to_bytes()) == replayed, f"seed={seed}"


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 40), st.data())
def test_snapshot_midway_then_replaying_the_tail_equals_full_replay(
    seed: int, steps: int, data: st.DataObject
) -> None:
    script = _ClusterScript(random.Random(seed))
    for _ in range(steps):
        script.step()
    cut = data.draw(st.integers(0, len(script.log)))
    prefix = MetadataImage()
    for offset, records in script.log[:cut]:
        prefix.apply_batch(records, offset)
    image = MetadataImage.from_bytes(prefix.to_bytes())
    for offset, records in script.log[cut:]:
        image.apply_batch(records, offset)
    assert image == script.image, f"seed={seed} cut={cut}"
