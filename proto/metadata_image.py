"""MetadataImage: the cluster metadata built by replaying committed metadata records in order.

Theory of operation
-------------------
Controllers and brokers hold one `MetadataImage` each. It changes only through `apply` /
`apply_batch`, called with committed records and the metadata-log offset they were committed at
(Kafka's `MetadataDelta.replay` + `MetadataImage`, and the controller's replay path, KIP-631).
Nothing else writes to it, so two nodes that applied the same records hold equal images, and a
node that restarts rebuilds its image from a snapshot plus the log after it.

What it holds (all keyed and iterated in sorted order, never set order):
- brokers: `BrokerRegistration` per broker id (epoch, endpoint, fenced, controlled shutdown);
- topics: `TopicImage` by id, plus a name → id index; each topic's partitions map
  partition id → `PartitionRegistration` (replicas, ISR, leader, epochs, recovery state);
- configs: per (resource type, resource name), name → value;
- the last `ProducerIdsRecord` (the next free producer id) and finalized feature levels.

Values stored in the image (`BrokerRegistration`, `PartitionRegistration`, `TopicImage`, config
dicts) are never mutated once stored; a change stores a new value (copy-on-write). Callers must
treat everything they read as read-only. `copy()` is therefore a cheap shallow copy, which the
active controller can use to stage uncommitted changes (Kafka's timeline structures, §5.6).

Broken invariants are bugs and fail with AssertionError (STYLE §5): a change to an unknown
partition, a duplicate topic, an ISR outside the replicas, a leader outside the ISR, a producer
id block that goes backwards, offsets that do not increase.

Queries scan all partitions (no broker → partitions index like Kafka's BrokersToIsrs); that is
fine for the partition counts of a local cluster.

Snapshots: `snapshot()` returns a minimal record list (Kafka's image `write(ImageWriter)`);
`from_snapshot(records, offset)` replays it into a new image equal to the original;
`to_bytes()` / `from_bytes()` wrap that with `encode_records`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

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
    decode_records,
    encode_records,
    read_uvarint,
    write_uvarint,
)

SNAPSHOT_VERSION = 0

ConfigResource = tuple[ConfigResourceType, str]


@dataclass(frozen=True, slots=True)
class BrokerRegistration:
    """A registered broker (Kafka's `BrokerRegistration`)."""

    broker_id: int
    incarnation_id: str
    broker_epoch: int
    endpoint: Endpoint
    rack: str | None
    fenced: bool
    in_controlled_shutdown: bool

    @property
    def is_active(self) -> bool:
        """May lead and join ISRs: unfenced and not in controlled shutdown (§4.7)."""
        return not self.fenced and not self.in_controlled_shutdown

    def to_record(self) -> RegisterBrokerRecord:
        return RegisterBrokerRecord(
            broker_id=self.broker_id,
            incarnation_id=self.incarnation_id,
            broker_epoch=self.broker_epoch,
            endpoint=self.endpoint,
            rack=self.rack,
            fenced=self.fenced,
            in_controlled_shutdown=self.in_controlled_shutdown,
        )


@dataclass(frozen=True, slots=True)
class PartitionRegistration:
    """One partition's replication state (Kafka's `PartitionRegistration`)."""

    replicas: tuple[int, ...]  # assignment order; replicas[0] is the preferred leader
    isr: tuple[int, ...]  # invariant: non-empty, subset of replicas, no duplicates
    leader: int  # invariant: NO_LEADER or a member of isr
    leader_epoch: int  # + 1 on every leader change
    partition_epoch: int  # + 1 on every PartitionChangeRecord
    leader_recovery_state: LeaderRecoveryState = LeaderRecoveryState.RECOVERED

    @property
    def has_leader(self) -> bool:
        return self.leader != NO_LEADER

    @property
    def preferred_leader(self) -> int:
        return self.replicas[0]

    @property
    def has_preferred_leader(self) -> bool:
        return self.leader == self.replicas[0]

    @classmethod
    def from_record(cls, record: PartitionRecord) -> PartitionRegistration:
        return cls(
            replicas=record.replicas,
            isr=record.isr,
            leader=record.leader,
            leader_epoch=record.leader_epoch,
            partition_epoch=record.partition_epoch,
            leader_recovery_state=record.leader_recovery_state,
        )

    def to_record(self, topic_id: str, partition_id: int) -> PartitionRecord:
        return PartitionRecord(
            topic_id=topic_id,
            partition_id=partition_id,
            replicas=self.replicas,
            isr=self.isr,
            leader=self.leader,
            leader_epoch=self.leader_epoch,
            partition_epoch=self.partition_epoch,
            leader_recovery_state=self.leader_recovery_state,
        )

    def merge(self, change: PartitionChangeRecord) -> PartitionRegistration:
        """The registration after `change` (Kafka's `PartitionRegistration.merge`).

        partition_epoch + 1 always; leader_epoch + 1 iff the record sets `leader` (Kafka bumps
        the epoch whenever the field is set, even to the same broker).
        """
        leader, leader_epoch = self.leader, self.leader_epoch
        if change.leader is not None:
            leader, leader_epoch = change.leader, self.leader_epoch + 1
        return PartitionRegistration(
            replicas=self.replicas if change.replicas is None else change.replicas,
            isr=self.isr if change.isr is None else change.isr,
            leader=leader,
            leader_epoch=leader_epoch,
            partition_epoch=self.partition_epoch + 1,
            leader_recovery_state=(
                self.leader_recovery_state
                if change.leader_recovery_state is None
                else change.leader_recovery_state
            ),
        )

    def check_invariants(self, where: str) -> None:
        """Assert the registration is well formed (used on every apply)."""
        assert self.replicas, f"{where}: empty replicas"
        assert len(set(self.replicas)) == len(self.replicas), f"{where}: dup {self.replicas}"
        assert all(r >= 0 for r in self.replicas), f"{where}: bad replica in {self.replicas}"
        assert self.isr, f"{where}: empty ISR"
        assert len(set(self.isr)) == len(self.isr), f"{where}: duplicate in ISR {self.isr}"
        assert set(self.isr) <= set(self.replicas), (
            f"{where}: ISR {self.isr} not within replicas {self.replicas}"
        )
        assert self.leader == NO_LEADER or self.leader in self.isr, (
            f"{where}: leader {self.leader} not in ISR {self.isr}"
        )
        assert self.leader_epoch >= 0 and self.partition_epoch >= 0, f"{where}: negative epoch"
        # KIP-704: after an unclean election the ISR is just the recovering leader until it
        # reports RECOVERED; AlterPartition may not expand it meanwhile.
        assert (
            self.leader_recovery_state is LeaderRecoveryState.RECOVERED or len(self.isr) == 1
        ), f"{where}: RECOVERING with ISR {self.isr}"


@dataclass(frozen=True, slots=True)
class TopicImage:
    """A topic and its partitions. `partitions` is read-only: a change stores a new TopicImage."""

    name: str
    topic_id: str
    partitions: Mapping[int, PartitionRegistration] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, order=True)
class TopicIdPartition:
    """A partition named both ways (Kafka's `TopicIdPartition`); sorts by (topic, partition)."""

    topic: str
    partition: int
    topic_id: str


@dataclass(frozen=True, slots=True)
class ImageChange:
    """What one `apply` / `apply_batch` touched, so a broker can react without diffing images.

    Look the new state up in the image; for removed topics it is gone, hence `removed_topics`.
    """

    offset: int
    brokers: tuple[int, ...] = ()  # registrations added, changed or removed
    partitions: tuple[TopicIdPartition, ...] = ()  # partitions created, changed or removed
    removed_topics: tuple[TopicImage, ...] = ()  # topics deleted, as they were before deletion
    configs: tuple[ConfigResource, ...] = ()  # resources whose configs changed


@dataclass(slots=True)
class _ChangeCollector:
    brokers: set[int] = field(default_factory=set)
    partitions: set[TopicIdPartition] = field(default_factory=set)
    removed_topics: list[TopicImage] = field(default_factory=list)
    configs: set[ConfigResource] = field(default_factory=set)

    def build(self, offset: int) -> ImageChange:
        return ImageChange(
            offset=offset,
            brokers=tuple(sorted(self.brokers)),
            partitions=tuple(sorted(self.partitions)),
            removed_topics=tuple(self.removed_topics),
            configs=tuple(sorted(self.configs)),
        )


@dataclass(slots=True)
class MetadataImage:
    """The metadata state machine. Build it only with `apply`/`apply_batch`/`from_snapshot`."""

    last_applied_offset: int = -1  # invariant: increases with every apply_batch
    brokers: dict[int, BrokerRegistration] = field(default_factory=dict)
    topics_by_id: dict[str, TopicImage] = field(default_factory=dict)
    topic_ids_by_name: dict[str, str] = field(default_factory=dict)
    configs: dict[ConfigResource, dict[str, str]] = field(default_factory=dict)  # no empty dicts
    producer_ids: ProducerIdsRecord | None = None
    features: dict[str, int] = field(default_factory=dict)

    # ---------------------------------------------------------------- replay

    def apply(self, record: MetadataRecord, offset: int) -> ImageChange:
        """Apply one committed record at metadata-log `offset` (> last_applied_offset).

        Raises:
            AssertionError: the record breaks an invariant (a bug in whoever wrote it).
        """
        return self.apply_batch((record,), offset)

    def apply_batch(self, records: Iterable[MetadataRecord], offset: int) -> ImageChange:
        """Apply records committed together in one log entry at `offset`, in order.

        Raises:
            AssertionError: offsets do not increase, or a record breaks an invariant.
        """
        assert offset > self.last_applied_offset, (
            f"offset {offset} <= last applied {self.last_applied_offset}"
        )
        changes = _ChangeCollector()
        for record in records:
            self._apply_one(record, changes)
        self.last_applied_offset = offset
        return changes.build(offset)

    def _apply_one(self, record: MetadataRecord, ch: _ChangeCollector) -> None:
        match record:
            case RegisterBrokerRecord():
                self._apply_register_broker(record, ch)
            case UnregisterBrokerRecord():
                self._apply_unregister_broker(record, ch)
            case BrokerRegistrationChangeRecord():
                self._apply_broker_change(record, ch)
            case TopicRecord():
                self._apply_topic(record, ch)
            case PartitionRecord():
                self._apply_partition(record, ch)
            case PartitionChangeRecord():
                self._apply_partition_change(record, ch)
            case RemoveTopicRecord():
                self._apply_remove_topic(record, ch)
            case ConfigRecord():
                self._apply_config(record, ch)
            case ProducerIdsRecord():
                self._apply_producer_ids(record, ch)
            case FeatureLevelRecord():
                self.features[record.name] = record.feature_level
            case NoOpRecord():
                pass
            case _:
                raise AssertionError(f"not a metadata record: {record!r}")

    def _apply_register_broker(self, rec: RegisterBrokerRecord, ch: _ChangeCollector) -> None:
        previous = self.brokers.get(rec.broker_id)
        assert previous is None or rec.broker_epoch > previous.broker_epoch, (
            f"broker {rec.broker_id}: epoch {rec.broker_epoch} <= current "
            f"{previous.broker_epoch if previous else None}"
        )
        assert 0 < rec.endpoint.port < 65536, f"broker {rec.broker_id}: bad port"
        self.brokers[rec.broker_id] = BrokerRegistration(
            broker_id=rec.broker_id,
            incarnation_id=rec.incarnation_id,
            broker_epoch=rec.broker_epoch,
            endpoint=rec.endpoint,
            rack=rec.rack,
            fenced=rec.fenced,
            in_controlled_shutdown=rec.in_controlled_shutdown,
        )
        ch.brokers.add(rec.broker_id)

    def _apply_unregister_broker(
        self, rec: UnregisterBrokerRecord, ch: _ChangeCollector
    ) -> None:
        current = self._registration(rec.broker_id, rec.broker_epoch)
        del self.brokers[current.broker_id]
        ch.brokers.add(rec.broker_id)

    def _apply_broker_change(
        self, rec: BrokerRegistrationChangeRecord, ch: _ChangeCollector
    ) -> None:
        current = self._registration(rec.broker_id, rec.broker_epoch)
        self.brokers[rec.broker_id] = replace(
            current,
            fenced=current.fenced if rec.fenced is None else rec.fenced,
            in_controlled_shutdown=(
                current.in_controlled_shutdown
                if rec.in_controlled_shutdown is None
                else rec.in_controlled_shutdown
            ),
        )
        ch.brokers.add(rec.broker_id)

    def _registration(self, broker_id: int, broker_epoch: int) -> BrokerRegistration:
        current = self.brokers.get(broker_id)
        assert current is not None, f"broker {broker_id} is not registered"
        assert current.broker_epoch == broker_epoch, (
            f"broker {broker_id}: record epoch {broker_epoch} != registered "
            f"{current.broker_epoch}"
        )
        return current

    def _apply_topic(self, rec: TopicRecord, ch: _ChangeCollector) -> None:
        assert rec.name not in self.topic_ids_by_name, f"topic {rec.name} already exists"
        assert rec.topic_id not in self.topics_by_id, f"topic id {rec.topic_id} already exists"
        self.topics_by_id[rec.topic_id] = TopicImage(rec.name, rec.topic_id, {})
        self.topic_ids_by_name[rec.name] = rec.topic_id

    def _apply_partition(self, rec: PartitionRecord, ch: _ChangeCollector) -> None:
        topic = self.topics_by_id.get(rec.topic_id)
        assert topic is not None, f"PartitionRecord for unknown topic id {rec.topic_id}"
        # Partitions are created in order 0..n-1 (CreateTopics, CreatePartitions).
        assert rec.partition_id == len(topic.partitions), (
            f"{topic.name}: PartitionRecord for partition {rec.partition_id}, expected "
            f"{len(topic.partitions)}"
        )
        registration = PartitionRegistration.from_record(rec)
        registration.check_invariants(f"{topic.name}-{rec.partition_id}")
        self._store_partition(topic, rec.partition_id, registration, ch)

    def _apply_partition_change(
        self, rec: PartitionChangeRecord, ch: _ChangeCollector
    ) -> None:
        topic = self.topics_by_id.get(rec.topic_id)
        assert topic is not None, f"PartitionChangeRecord for unknown topic id {rec.topic_id}"
        current = topic.partitions.get(rec.partition_id)
        assert current is not None, (
            f"PartitionChangeRecord for unknown partition {topic.name}-{rec.partition_id}"
        )
        registration = current.merge(rec)
        registration.check_invariants(f"{topic.name}-{rec.partition_id}")
        self._store_partition(topic, rec.partition_id, registration, ch)

    def _store_partition(
        self,
        topic: TopicImage,
        partition_id: int,
        registration: PartitionRegistration,
        ch: _ChangeCollector,
    ) -> None:
        partitions = dict(topic.partitions)
        partitions[partition_id] = registration
        self.topics_by_id[topic.topic_id] = replace(topic, partitions=partitions)
        ch.partitions.add(TopicIdPartition(topic.name, partition_id, topic.topic_id))

    def _apply_remove_topic(self, rec: RemoveTopicRecord, ch: _ChangeCollector) -> None:
        topic = self.topics_by_id.pop(rec.topic_id, None)
        assert topic is not None, f"RemoveTopicRecord for unknown topic id {rec.topic_id}"
        del self.topic_ids_by_name[topic.name]
        # Kafka drops the topic's dynamic configs with the topic
        # (ConfigurationControlManager.deleteTopicConfigs).
        resource = (ConfigResourceType.TOPIC, topic.name)
        if self.configs.pop(resource, None) is not None:
            ch.configs.add(resource)
        ch.partitions.update(
            TopicIdPartition(topic.name, p, topic.topic_id) for p in topic.partitions
        )
        ch.removed_topics.append(topic)

    def _apply_config(self, rec: ConfigRecord, ch: _ChangeCollector) -> None:
        resource = (rec.resource_type, rec.resource_name)
        values = dict(self.configs.get(resource, {}))
        if rec.value is None:
            values.pop(rec.name, None)
        else:
            values[rec.name] = rec.value
        if values:
            self.configs[resource] = values
        else:
            self.configs.pop(resource, None)  # no empty dicts: keeps replay == restore
        ch.configs.add(resource)

    def _apply_producer_ids(self, rec: ProducerIdsRecord, ch: _ChangeCollector) -> None:
        assert rec.next_producer_id > self.next_producer_id or (
            self.producer_ids is None and rec.next_producer_id >= 0
        ), f"producer id block went backwards: {rec.next_producer_id} <= {self.next_producer_id}"
        self.producer_ids = rec

    # ---------------------------------------------------------------- queries: brokers

    def broker(self, broker_id: int) -> BrokerRegistration | None:
        return self.brokers.get(broker_id)

    def registered_broker_ids(self) -> tuple[int, ...]:
        return tuple(sorted(self.brokers))

    def live_broker_ids(self) -> tuple[int, ...]:
        """Unfenced brokers (including those in controlled shutdown), sorted."""
        return tuple(sorted(b for b, reg in self.brokers.items() if not reg.fenced))

    def active_broker_ids(self) -> tuple[int, ...]:
        """Brokers that may lead or join ISRs: unfenced, not in controlled shutdown; sorted."""
        return tuple(sorted(b for b, reg in self.brokers.items() if reg.is_active))

    # ---------------------------------------------------------------- queries: topics

    def topic(self, name: str) -> TopicImage | None:
        topic_id = self.topic_ids_by_name.get(name)
        return None if topic_id is None else self.topics_by_id[topic_id]

    def topic_by_id(self, topic_id: str) -> TopicImage | None:
        return self.topics_by_id.get(topic_id)

    def topic_names(self) -> tuple[str, ...]:
        return tuple(sorted(self.topic_ids_by_name))

    def topics(self) -> Iterator[TopicImage]:
        """Topics sorted by name."""
        for name in sorted(self.topic_ids_by_name):
            yield self.topics_by_id[self.topic_ids_by_name[name]]

    def partition(self, topic_id: str, partition_id: int) -> PartitionRegistration | None:
        topic = self.topics_by_id.get(topic_id)
        return None if topic is None else topic.partitions.get(partition_id)

    def all_partitions(self) -> Iterator[tuple[TopicIdPartition, PartitionRegistration]]:
        """Every partition, sorted by (topic name, partition id)."""
        for topic in self.topics():
            for partition_id in sorted(topic.partitions):
                yield (
                    TopicIdPartition(topic.name, partition_id, topic.topic_id),
                    topic.partitions[partition_id],
                )

    def partitions_led_by(self, broker_id: int) -> tuple[TopicIdPartition, ...]:
        return tuple(tp for tp, reg in self.all_partitions() if reg.leader == broker_id)

    def partitions_with_isr_member(self, broker_id: int) -> tuple[TopicIdPartition, ...]:
        return tuple(tp for tp, reg in self.all_partitions() if broker_id in reg.isr)

    def partitions_with_replica(self, broker_id: int) -> tuple[TopicIdPartition, ...]:
        return tuple(tp for tp, reg in self.all_partitions() if broker_id in reg.replicas)

    def offline_partitions(self) -> tuple[TopicIdPartition, ...]:
        """Partitions with no leader (leader == NO_LEADER)."""
        return tuple(tp for tp, reg in self.all_partitions() if not reg.has_leader)

    # ---------------------------------------------------------------- queries: configs, ids

    def configs_for(self, resource_type: ConfigResourceType, name: str) -> Mapping[str, str]:
        """The dynamic configs set on one resource (empty if none). Read-only."""
        return self.configs.get((resource_type, name), {})

    def topic_config(self, topic: str, name: str, default: str | None = None) -> str | None:
        """A topic's dynamic config value, or `default` when it is not set."""
        return self.configs.get((ConfigResourceType.TOPIC, topic), {}).get(name, default)

    @property
    def next_producer_id(self) -> int:
        """The first producer id not yet handed out (0 before any block)."""
        return 0 if self.producer_ids is None else self.producer_ids.next_producer_id

    def feature_level(self, name: str) -> int | None:
        return self.features.get(name)

    # ---------------------------------------------------------------- copy and snapshots

    def copy(self) -> MetadataImage:
        """An independent image; cheap, because stored values are never mutated."""
        return MetadataImage(
            last_applied_offset=self.last_applied_offset,
            brokers=dict(self.brokers),
            topics_by_id=dict(self.topics_by_id),
            topic_ids_by_name=dict(self.topic_ids_by_name),
            configs=dict(self.configs),
            producer_ids=self.producer_ids,
            features=dict(self.features),
        )

    def snapshot(self) -> list[MetadataRecord]:
        """A minimal record list that rebuilds an equal image (Kafka's image write path).

        Order: features, brokers, then per topic (by name) its TopicRecord and PartitionRecords,
        then configs, then the producer id block.
        """
        records: list[MetadataRecord] = [
            FeatureLevelRecord(name, level) for name, level in sorted(self.features.items())
        ]
        records.extend(self.brokers[b].to_record() for b in sorted(self.brokers))
        for topic in self.topics():
            records.append(TopicRecord(topic.name, topic.topic_id))
            records.extend(
                topic.partitions[p].to_record(topic.topic_id, p) for p in sorted(topic.partitions)
            )
        for (resource_type, resource_name), values in sorted(self.configs.items()):
            records.extend(
                ConfigRecord(resource_type, resource_name, name, value)
                for name, value in sorted(values.items())
            )
        if self.producer_ids is not None:
            records.append(self.producer_ids)
        return records

    @classmethod
    def from_snapshot(
        cls, records: Sequence[MetadataRecord], last_applied_offset: int
    ) -> MetadataImage:
        """Rebuild an image from `snapshot()` output taken at `last_applied_offset`."""
        image = cls()
        if last_applied_offset >= 0:
            image.apply_batch(records, last_applied_offset)
        else:
            assert not records, "records in a snapshot of an empty log"
        return image

    def to_bytes(self) -> bytes:
        """version uvarint | (last_applied_offset + 1) uvarint | encode_records(snapshot())."""
        return (
            write_uvarint(SNAPSHOT_VERSION)
            + write_uvarint(self.last_applied_offset + 1)
            + encode_records(self.snapshot())
        )

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> MetadataImage:
        """Parse `to_bytes` output.

        Raises:
            CorruptMessageError: unknown version or undecodable records.
        """
        buf = bytes(data)
        version, pos = read_uvarint(buf, 0)
        if version != SNAPSHOT_VERSION:
            raise CorruptMessageError(f"metadata snapshot version {version} != 0")
        offset_plus_one, pos = read_uvarint(buf, pos, max_bytes=10)
        return cls.from_snapshot(decode_records(buf[pos:]), offset_plus_one - 1)

