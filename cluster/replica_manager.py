"""`ReplicaManager`: the broker's data-plane decisions over all its partition replicas.

Theory of operation
-------------------
Kafka's `ReplicaManager` without threads, sockets or clocks. Per partition replica this core
keeps a `Partition`: the `PartitionLog` (storage), the `PartitionReplica` (HW, ISR, acks=all,
follower truncation) and the `ProducerStateTable` (idempotence). It drives them in the order
their docstrings' "shell contracts" require and returns what the shell must do next:

- Metadata (`apply_metadata`): for every partition in an `ImageChange` naming this broker,
  open the log (configs from the image), then `become_leader` (after recording the new leader
  epoch in the epoch cache at the LEO, Kafka's `maybeAssignEpochStartOffset`) or
  `become_follower`. Partitions no longer assigned here are closed; removed topics are closed
  and their directories handed back for deletion. Config changes reach logs and replicas.
- Produce (`produce`, one batch per partition): existence, leadership, size, batch checks,
  min ISR for acks=all (before the append), idempotence, append, producer state,
  `on_leader_append`; acks=all parks in the replica (`ProducePartitionResult.wait_op`).
- Fetch (`fetch_partition`): a follower fetch goes through `on_follower_fetch` (divergence,
  ISR expansion) and reads up to the LEO; a consumer fetch checks the leader epoch (KIP-320)
  and reads below the HW only.
- ListOffsets (incl. MAX_TIMESTAMP, KIP-734) / DeleteRecords on the leader; `low_watermark`
  (the smallest log start among the leader and its live followers) tells the shell when a
  DeleteRecords is done.
- Durability helpers: a producer-state snapshot at every segment roll (leader and follower),
  and `high_watermark_checkpoint()` (read back at startup, so a restarted replica keeps its
  HW instead of starting at its log start).
- Follower side: `follower_fetch_entries` builds the fetch entries per source broker;
  `on_follower_fetch_response` appends, truncates or backs off.
- `tick`: parked produce deadlines, ISR shrink; `on_alter_partition_result` feeds results back.

Every call that may complete parked produces or move a HW leaves events for the shell:
`drain_events()` returns the produce completions, the HW advances (with the bytes they made
visible, for delayed consumer fetches) and the leader appends (for delayed follower fetches).
Batches stay bytes: the broker reads batch headers, never records.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

from cluster.log.checkpoint import decode_partition_offsets, encode_partition_offsets
from cluster.log.files import join
from cluster.log.partition_log import PartitionLog, ReadResult
from cluster.log_manager import LogManager
from cluster.producer_state import Accept, Duplicate, ProducerStateTable, encode_snapshot
from cluster.replica import (
    ACKS_ALL,
    AlterPartitionAsk,
    AlterPartitionResult,
    Backoff,
    DivergingEpoch,
    FetchResponsePartition,
    FollowerAppend,
    FollowerFetchRequest,
    HighWatermarkChange,
    PartitionReplica,
    ProduceCompletion,
    ReplicaConfig,
    Role,
    TruncateTo,
)
from proto.broker_config import BrokerConfig
from proto.errors import (
    ErrorCode,
    InvalidRecordError,
    MessageTooLargeError,
    NotLeaderOrFollowerError,
    OffsetOutOfRangeError,
    RafkaError,
    UnknownTopicOrPartitionError,
    error_class,
)
from proto.metadata import NO_LEADER, ConfigResourceType
from proto.metadata_image import ImageChange, MetadataImage, TopicImage
from proto.records import RecordBatch, iter_batches

log = logging.getLogger(__name__)

LATEST_TIMESTAMP = -1
EARLIEST_TIMESTAMP = -2
MAX_TIMESTAMP = -3
REPLAY_CHUNK_BYTES = 1 << 20
HW_CHECKPOINT_FILE = "replication-offset-checkpoint"
InvalidRequiredAcksError = error_class(ErrorCode.INVALID_REQUIRED_ACKS)
UnsupportedVersionError = error_class(ErrorCode.UNSUPPORTED_VERSION)


def tp_label(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


@dataclass(slots=True)
class Partition:
    """One local replica: its log, replication core and producer state."""

    topic: str
    partition: int
    topic_id: str
    log: PartitionLog
    replica: PartitionReplica
    producers: ProducerStateTable
    backoff_until_ms: int = 0  # follower: no fetch before this
    # leader: (end offset, bytes) of appends not yet below the HW, for delayed consumer fetches
    unexposed: deque[tuple[int, int]] = field(default_factory=deque)

    @property
    def label(self) -> str:
        return tp_label(self.topic, self.partition)


# -- outputs ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeaderHint:
    leader_id: int
    leader_epoch: int


@dataclass(frozen=True, slots=True)
class ProducePartitionResult:
    error: RafkaError | None
    base_offset: int = -1
    log_append_time_ms: int = -1
    log_start_offset: int = -1
    wait_op: int | None = None  # acks=all: the replica's op id to wait for
    current_leader: LeaderHint | None = None


@dataclass(frozen=True, slots=True)
class FetchPartitionResult:
    error: RafkaError | None
    high_watermark: int = -1
    log_start_offset: int = -1
    records: memoryview | bytes = b""
    diverging_epoch: DivergingEpoch | None = None
    current_leader: LeaderHint | None = None


@dataclass(frozen=True, slots=True)
class ListOffsetsResult:
    error: RafkaError | None
    offset: int = -1
    timestamp: int = -1
    leader_epoch: int = -1


@dataclass(frozen=True, slots=True)
class FollowerEntry:
    """One partition's part of a follower Fetch; hand `request` back with the answer."""

    topic: str
    partition: int
    topic_id: str
    request: FollowerFetchRequest
    log_start_offset: int


@dataclass(slots=True)
class Events:
    """What changed since the last drain (see the module docstring)."""

    completions: list[tuple[str, ProduceCompletion]] = field(default_factory=list)
    visible_bytes: list[tuple[str, int]] = field(default_factory=list)  # HW moved (consumers)
    appended_bytes: list[tuple[str, int]] = field(default_factory=list)  # leader appended
    changed: list[str] = field(default_factory=list)  # role change, truncation, deletion


@dataclass(frozen=True, slots=True)
class MetadataOutcome:
    delete_dirs: tuple[str, ...] = ()  # directories of removed partitions (logs closed)
    leaders_changed: bool = False  # the set of partitions followed (or their leaders) changed


class ReplicaManager:
    """All partition replicas of one broker. See the module docstring."""

    def __init__(self, broker_id: int, logs: LogManager, config: BrokerConfig) -> None:
        self.broker_id = broker_id
        self.logs = logs
        self.config = config
        self.image = MetadataImage()
        self.partitions: dict[str, Partition] = {}
        self._events = Events()
        self._touched: set[str] = set()
        self._asks: list[AlterPartitionAsk] = []
        # The high watermarks last checkpointed (read at startup, so a restarted replica does
        # not begin at its log start: Kafka's replication-offset-checkpoint).
        self._checkpointed_hw = self._read_hw_checkpoint()

    # -- queries --

    def leader_count(self) -> int:
        return sum(1 for p in self.partitions.values() if p.replica.is_leader)

    def follower_count(self) -> int:
        return sum(1 for p in self.partitions.values() if p.replica.role is Role.FOLLOWER)

    def under_replicated_count(self) -> int:
        return sum(1 for p in self.partitions.values()
                   if p.replica.is_leader and len(p.replica.isr) < len(p.replica.replicas))

    def get(self, topic: str, partition: int) -> Partition | None:
        return self.partitions.get(tp_label(topic, partition))

    # -- startup / shutdown --

    def open_existing(self, now_ms: int) -> list[str]:
        """Open (and recover) every partition directory on disk; returns their labels.

        Replicas start in Role.NONE until metadata assigns a role.
        """
        opened = []
        for topic, partition in self.logs.existing_partitions():
            label = tp_label(topic, partition)
            if label in self.partitions:
                continue
            log_config = self.logs.log_config(self.image, topic)
            plog = self.logs.open_log(topic, partition, log_config, now_ms)
            report = plog.recovery_report
            if not report.clean_shutdown:
                log.warning("[broker %d] %s: recovered after an unclean shutdown: %s",
                            self.broker_id, label, report)
            self._add(topic, partition, "", plog, self.logs.min_insync_replicas(self.image, topic))
            opened.append(label)
        return opened

    @property
    def hw_checkpoint_path(self) -> str:
        return join(self.logs.logs_dir, HW_CHECKPOINT_FILE)

    def _read_hw_checkpoint(self) -> dict[tuple[str, int], int]:
        data = self.logs.fs.read_file(self.hw_checkpoint_path)
        if data is None:
            return {}
        parsed = decode_partition_offsets(data)
        if parsed is None:
            log.warning("[broker %d] %s does not parse; high watermarks start at the log start",
                        self.broker_id, self.hw_checkpoint_path)
            return {}
        return parsed

    def high_watermark_checkpoint(self) -> bytes | None:
        """The `replication-offset-checkpoint` contents (every partition's HW) when some HW
        moved since the last call, else None. The shell writes it to `hw_checkpoint_path`
        every replica.high.watermark.checkpoint.interval.ms and at shutdown."""
        current = {(p.topic, p.partition): p.replica.high_watermark
                   for p in self.partitions.values()}
        if current == self._checkpointed_hw:
            return None
        self._checkpointed_hw = current
        return encode_partition_offsets(sorted(current.items()))

    def close_all(self) -> None:
        """Clean shutdown: HW checkpoint, producer-state snapshot at the LEO, close every log."""
        data = self.high_watermark_checkpoint()
        if data is not None:
            self.logs.fs.atomic_replace(self.hw_checkpoint_path, data)
        for label in sorted(self.partitions):
            part = self.partitions.pop(label)
            part.replica.close()
            self.close_replica_completions(part.replica)
            self._close_log(part, snapshot=True)
        self._collect()

    def _close_log(self, part: Partition, *, snapshot: bool) -> None:
        end = part.log.log_end_offset
        if snapshot and end > part.log.log_start_offset:
            # The table is exact as of the LEO (batches without a producer id change nothing),
            # so the snapshot is named by the LEO and a restart replays nothing.
            data = encode_snapshot(part.producers.snapshot_entries())
            part.log.fs.atomic_replace(part.log.snapshot_path(end), data)
            part.log.delete_snapshots_below(end)
        part.log.close()

    @staticmethod
    def _snapshot_producers(part: Partition) -> None:
        """A segment rolled: snapshot the producer state at the LEO (Kafka takes one per roll),
        so recovery after a crash replays only the batches after it, not the whole log.
        Snapshots below the log start can never be used again."""
        plog = part.log
        end = plog.log_end_offset
        plog.fs.atomic_replace(plog.snapshot_path(end),
                               encode_snapshot(part.producers.snapshot_entries()))
        plog.delete_snapshots_below(plog.log_start_offset)

    def _add(self, topic: str, partition: int, topic_id: str, plog: PartitionLog,
             min_isr: int) -> Partition:
        label = tp_label(topic, partition)
        hw = self._checkpointed_hw.get((topic, partition), plog.log_start_offset)
        replica = PartitionReplica(
            label, self.broker_id, config=self._replica_config(min_isr),
            high_watermark=min(max(hw, plog.log_start_offset), plog.log_end_offset),
            log_start_offset=plog.log_start_offset)
        producers = self._rebuild_producers(label, plog)
        part = Partition(topic, partition, topic_id, plog, replica, producers)
        self.partitions[label] = part
        return part

    def _replica_config(self, min_isr: int) -> ReplicaConfig:
        return ReplicaConfig(min_insync_replicas=min_isr,
                             replica_lag_time_max_ms=self.config.replica_lag_time_max_ms)

    def _rebuild_producers(self, label: str, plog: PartitionLog) -> ProducerStateTable:
        """Newest snapshot at or below the LEO, then replay the log's batch headers after it."""
        table = ProducerStateTable(label, map_end_offset=plog.log_start_offset)
        for offset in reversed(plog.snapshot_offsets()):
            if offset > plog.log_end_offset:
                # Recovery cut the log below it: stale once the log grows again.
                plog.fs.delete(plog.snapshot_path(offset))
                continue
            if offset < plog.log_start_offset:
                continue
            data = plog.fs.read_file(plog.snapshot_path(offset))
            if data is None:
                continue
            try:
                table.load_snapshot(data, offset)
                break
            except RafkaError as exc:
                log.warning("[broker %d] %s: dropping snapshot %d: %s", self.broker_id, label,
                            offset, exc)
                plog.fs.delete(plog.snapshot_path(offset))
                table.reset(plog.log_start_offset)
        self._replay(table, plog, table.map_end_offset)
        return table

    @staticmethod
    def _replay(table: ProducerStateTable, plog: PartitionLog, start: int) -> None:
        offset = max(start, plog.log_start_offset)
        while offset < plog.log_end_offset:
            read = plog.read(offset, REPLAY_CHUNK_BYTES)
            if read.first_offset < 0:
                break
            for batch in iter_batches(read.records, check_crc=False):
                _apply_batch_to_producers(table, batch)
            offset = read.next_offset

    # -- metadata --

    def apply_metadata(self, image: MetadataImage, change: ImageChange,
                       now_ms: int) -> MetadataOutcome:
        """Apply one committed metadata change (see the module docstring)."""
        self.image = image
        delete_dirs: list[str] = []
        followers_changed = False
        for topic in change.removed_topics:
            delete_dirs += self._remove_topic(topic)
            followers_changed = True
        changed_topics = {name for kind, name in change.configs
                          if kind == ConfigResourceType.TOPIC}
        cluster_changed = any(kind != ConfigResourceType.TOPIC for kind, _ in change.configs)
        for tp in change.partitions:
            reg = image.partition(tp.topic_id, tp.partition)
            label = tp_label(tp.topic, tp.partition)
            part = self.partitions.get(label)
            if reg is None or self.broker_id not in reg.replicas:
                if part is not None and reg is not None:
                    self._stop_partition(part)
                    followers_changed = True
                continue
            if part is None:
                config = self.logs.log_config(image, tp.topic)
                plog = self.logs.open_log(tp.topic, tp.partition, config, now_ms)
                part = self._add(tp.topic, tp.partition, tp.topic_id, plog,
                                 self.logs.min_insync_replicas(image, tp.topic))
            part.topic_id = tp.topic_id
            was = (part.replica.role, part.replica.leader_id)
            self._become(part, image, now_ms)
            if (part.replica.role, part.replica.leader_id) != was:
                followers_changed = True
                self._events.changed.append(label)
        for label, part in sorted(self.partitions.items()):
            if cluster_changed or part.topic in changed_topics:
                self._update_configs(part, image, now_ms)
        self._drop_ineligible_followers(image, change.brokers, now_ms)
        self._collect()
        return MetadataOutcome(tuple(delete_dirs), followers_changed)

    def _drop_ineligible_followers(self, image: MetadataImage, brokers: tuple[int, ...],
                                   now_ms: int) -> None:
        gone = [b for b in brokers if b != self.broker_id
                and ((reg := image.broker(b)) is None or not reg.is_active)]
        if not gone:
            return
        for part in self.partitions.values():
            for broker_id in gone:
                change = part.replica.on_follower_ineligible(broker_id, now_ms)
                if change is not None:
                    self._note_hw(part, change)
                    self._touched.add(part.label)

    def _become(self, part: Partition, image: MetadataImage, now_ms: int) -> None:
        reg = image.partition(part.topic_id, part.partition)
        assert reg is not None
        replica = part.replica
        if reg.leader == self.broker_id:
            if reg.leader_epoch > part.log.latest_epoch:
                # Kafka's maybeAssignEpochStartOffset: the new epoch starts at our LEO.
                part.log.epoch_cache.assign(reg.leader_epoch, part.log.log_end_offset)
            replica.become_leader(reg, local_leo=part.log.log_end_offset, now_ms=now_ms)
            part.unexposed.clear()
        else:
            if replica.become_follower(reg, now_ms=now_ms):
                part.backoff_until_ms = 0
                part.unexposed.clear()
        self._touched.add(part.label)

    def _update_configs(self, part: Partition, image: MetadataImage, now_ms: int) -> None:
        try:
            part.log.update_config(self.logs.log_config(image, part.topic))
            min_isr = self.logs.min_insync_replicas(image, part.topic)
        except RafkaError as exc:
            log.warning("[broker %d] %s: bad topic config ignored: %s", self.broker_id,
                        part.label, exc)
            return
        self._note_hw(part, part.replica.update_config(self._replica_config(min_isr), now_ms))
        self._touched.add(part.label)

    def _stop_partition(self, part: Partition) -> None:
        log.info("[broker %d] %s: no longer a replica here; closing", self.broker_id, part.label)
        part.replica.close()
        self.close_replica_completions(part.replica)
        self._events.changed.append(part.label)
        del self.partitions[part.label]
        self._close_log(part, snapshot=True)

    def _remove_topic(self, topic: TopicImage) -> list[str]:
        dirs = []
        for partition in sorted(topic.partitions):
            label = tp_label(topic.name, partition)
            part = self.partitions.get(label)
            if part is None:
                continue
            log.info("[broker %d] %s: topic deleted; removing the log", self.broker_id, label)
            part.replica.close()
            self.close_replica_completions(part.replica)
            self._events.changed.append(label)
            del self.partitions[label]
            part.log.close()
            # Rename first (Kafka's `<dir>.<id>-delete`): a topic re-created under the same
            # name opens a fresh directory while the old one is removed off the loop.
            dirs.append(self.logs.rename_for_delete(part.log.dir, topic.topic_id))
        return dirs

    def remove_strays(self) -> tuple[str, ...]:
        """After the first caught-up metadata sync: logs on disk of partitions that metadata
        no longer assigns here (topic deleted while we were down) are closed and handed back
        for deletion."""
        dirs: list[str] = []
        for label, part in sorted(self.partitions.items()):
            topic = self.image.topic(part.topic)
            reg = None if topic is None else topic.partitions.get(part.partition)
            if reg is not None and self.broker_id in reg.replicas:
                continue
            log.info("[broker %d] %s: stray log (not assigned here); removing", self.broker_id,
                     label)
            part.replica.close()
            self.close_replica_completions(part.replica)
            del self.partitions[label]
            part.log.close()
            dirs.append(self.logs.rename_for_delete(part.log.dir, "stray"))
        return tuple(dirs)

    def _leader_hint(self, topic: str, partition: int) -> LeaderHint | None:
        t = self.image.topic(topic)
        reg = None if t is None else t.partitions.get(partition)
        if reg is None:
            return None
        return LeaderHint(reg.leader, reg.leader_epoch)

    def _lookup(self, topic: str, partition: int) -> Partition | RafkaError:
        t = self.image.topic(topic)
        if t is None or partition not in t.partitions:
            return UnknownTopicOrPartitionError(
                f"unknown topic or partition {tp_label(topic, partition)}")
        part = self.partitions.get(tp_label(topic, partition))
        if part is None:
            reg = t.partitions[partition]
            return NotLeaderOrFollowerError(
                f"broker {self.broker_id} holds no replica of {tp_label(topic, partition)} "
                f"(leader {reg.leader})")
        return part

    # -- produce --

    @staticmethod
    def check_acks(acks: int) -> RafkaError | None:
        if acks not in (ACKS_ALL, 0, 1):
            return InvalidRequiredAcksError(f"acks={acks}: must be -1, 0 or 1")
        return None

    def produce(self, topic: str, partition: int, records: bytes, *, acks: int, timeout_ms: int,
                now_ms: int) -> ProducePartitionResult:
        """Validate and append one partition's batch as leader (see the module docstring)."""
        found = self._lookup(topic, partition)
        if isinstance(found, RafkaError):
            return ProducePartitionResult(found, current_leader=self._leader_hint(topic,
                                                                                  partition))
        part = found
        replica, plog = part.replica, part.log
        if not replica.is_leader:
            return ProducePartitionResult(
                NotLeaderOrFollowerError(
                    f"broker {self.broker_id} is not the leader of {part.label} "
                    f"(leader {replica.leader_id})"),
                current_leader=LeaderHint(replica.leader_id, replica.leader_epoch))
        try:
            batch = self._validate_batch(part, records)
        except RafkaError as exc:
            return ProducePartitionResult(exc)
        refused = replica.check_produce(acks)
        if refused is not None:
            return ProducePartitionResult(refused)
        try:
            decision = part.producers.validate(
                batch.producer_id, batch.producer_epoch, batch.base_sequence,
                batch.last_sequence, is_transactional=batch.is_transactional)
        except RafkaError as exc:
            return ProducePartitionResult(exc, log_start_offset=plog.log_start_offset)
        deadline = now_ms + max(timeout_ms, 0)
        if isinstance(decision, Duplicate):
            log.debug("[broker %d] %s: duplicate batch of producer %d at %d", self.broker_id,
                      part.label, batch.producer_id, decision.base_offset)
            op = None
            if acks == ACKS_ALL:
                op = replica.add_delayed_produce(decision.last_offset + 1, deadline)
                self._touched.add(part.label)
            return ProducePartitionResult(None, decision.base_offset, -1, plog.log_start_offset,
                                          op)
        assert isinstance(decision, Accept)
        active = plog.active_segment
        try:
            info = plog.append(records, replica.leader_epoch, now_ms, validated=True)
        except RafkaError as exc:
            return ProducePartitionResult(exc)
        if batch.producer_id >= 0:
            part.producers.record_append(
                batch.producer_id, batch.producer_epoch, batch.base_sequence, batch.last_sequence,
                base_offset=info.first_offset, last_offset=info.last_offset,
                timestamp_ms=info.max_timestamp, is_transactional=batch.is_transactional)
        if plog.active_segment is not active:
            self._snapshot_producers(part)
        end = info.last_offset + 1
        part.unexposed.append((end, info.size_in_bytes))
        self._events.appended_bytes.append((part.label, info.size_in_bytes))
        self._note_hw(part, replica.on_leader_append(end, now_ms))
        op = None
        if acks == ACKS_ALL:
            op = replica.add_delayed_produce(end, deadline)
        self._touched.add(part.label)
        return ProducePartitionResult(None, info.first_offset, info.log_append_time,
                                      info.log_start_offset, op)

    @staticmethod
    def _validate_batch(part: Partition, records: bytes) -> RecordBatch:
        size = len(records)
        max_bytes = part.log.config.max_message_bytes
        if size > max_bytes:
            raise MessageTooLargeError(
                f"{size} bytes exceed max.message.bytes {max_bytes} for {part.label}")
        batch = RecordBatch(records)
        batch.validate_for_append()
        if batch.size_in_bytes != size:
            raise InvalidRecordError(
                f"{size} bytes hold more than one batch ({batch.size_in_bytes}); a produce "
                f"request carries exactly one batch per partition ({part.label})")
        return batch

    # -- fetch --

    def fetch_partition(
        self, topic: str, partition: int, *, fetch_offset: int, max_bytes: int, min_one: bool,
        current_leader_epoch: int, now_ms: int, replica_id: int = -1, broker_epoch: int = -1,
        last_fetched_epoch: int = -1, follower_log_start_offset: int = -1,
    ) -> FetchPartitionResult:
        """One partition of a Fetch; `replica_id >= 0` makes it a follower fetch (which may
        report the follower's log start offset, for DeleteRecords' low watermark)."""
        found = self._lookup(topic, partition)
        if isinstance(found, RafkaError):
            return FetchPartitionResult(found,
                                        current_leader=self._leader_hint(topic, partition))
        part = found
        replica, plog = part.replica, part.log
        if replica_id >= 0:
            decision = replica.on_follower_fetch(
                replica_id=replica_id, broker_epoch=broker_epoch, fetch_offset=fetch_offset,
                last_fetched_epoch=last_fetched_epoch, current_leader_epoch=current_leader_epoch,
                now_ms=now_ms, epoch_lookup=plog,
                follower_eligible=self._eligible(replica_id, broker_epoch),
                log_start_offset=follower_log_start_offset)
            self._note_hw(part, decision.high_watermark_change)
            self._touched.add(part.label)
            if decision.alter_partition is not None:
                self._asks.append(decision.alter_partition)
            hint = LeaderHint(replica.leader_id, replica.leader_epoch)
            if decision.error is not None:
                return FetchPartitionResult(decision.error, decision.high_watermark,
                                            decision.log_start_offset, current_leader=hint)
            if decision.diverging_epoch is not None:
                return FetchPartitionResult(None, decision.high_watermark,
                                            decision.log_start_offset,
                                            diverging_epoch=decision.diverging_epoch)
            assert decision.read_from_offset is not None
            data = plog.read(decision.read_from_offset, max_bytes, min_one=min_one)
            return FetchPartitionResult(None, replica.high_watermark, plog.log_start_offset,
                                        data.records)
        error = replica.validate_leader_epoch(current_leader_epoch)
        if error is not None:
            return FetchPartitionResult(
                error, current_leader=LeaderHint(replica.leader_id, replica.leader_epoch))
        hw = replica.high_watermark
        try:
            read: ReadResult = plog.read(fetch_offset, max_bytes, max_offset=hw, min_one=min_one)
        except OffsetOutOfRangeError as exc:
            return FetchPartitionResult(exc, hw, plog.log_start_offset)
        return FetchPartitionResult(None, hw, plog.log_start_offset, read.records)

    def _eligible(self, replica_id: int, broker_epoch: int) -> bool:
        # KIP-903: only the registered incarnation may join the ISR (a restarted broker may
        # have lost unflushed data, and its old registration can still look active).
        reg = self.image.broker(replica_id)
        return reg is not None and reg.is_active and reg.broker_epoch == broker_epoch >= 0

    # -- list offsets / delete records --

    def list_offsets(self, topic: str, partition: int, *, timestamp: int,
                     current_leader_epoch: int) -> ListOffsetsResult:
        found = self._lookup(topic, partition)
        if isinstance(found, RafkaError):
            return ListOffsetsResult(found)
        replica, plog = found.replica, found.log
        error = replica.validate_leader_epoch(current_leader_epoch)
        if error is not None:
            return ListOffsetsResult(error)
        hw = replica.high_watermark
        if timestamp == LATEST_TIMESTAMP:
            return ListOffsetsResult(None, hw, -1, replica.leader_epoch)
        if timestamp == EARLIEST_TIMESTAMP:
            start = plog.log_start_offset
            return ListOffsetsResult(None, start, -1, plog.epoch_cache.epoch_for_offset(start))
        if timestamp == MAX_TIMESTAMP:
            top = plog.max_timestamp_offset()
            if top is None or top[0] >= hw:  # Kafka: only offsets below the HW
                return ListOffsetsResult(None, -1, -1, -1)
            return ListOffsetsResult(None, top[0], top[1],
                                     plog.epoch_cache.epoch_for_offset(top[0]))
        if timestamp < 0:
            return ListOffsetsResult(UnsupportedVersionError(
                f"ListOffsets timestamp {timestamp} is not supported for {found.label}"))
        hit = plog.offset_for_timestamp(timestamp)
        if hit is None or hit[0] >= hw:
            return ListOffsetsResult(None, -1, -1, -1)
        offset, ts = hit
        return ListOffsetsResult(None, offset, ts, plog.epoch_cache.epoch_for_offset(offset))

    def delete_records(self, topic: str, partition: int, offset: int) -> tuple[RafkaError | None,
                                                                                int]:
        """Move the log start up to `offset` (-1: the HW). Returns (error, low watermark)."""
        found = self._lookup(topic, partition)
        if isinstance(found, RafkaError):
            return found, -1
        part = found
        replica, plog = part.replica, part.log
        if not replica.is_leader:
            return NotLeaderOrFollowerError(
                f"broker {self.broker_id} is not the leader of {part.label}"), -1
        hw = replica.high_watermark
        target = hw if offset == -1 else offset
        try:
            if plog.maybe_increment_log_start_offset(target, hw):
                self._after_log_start(part)
                # Wake parked follower fetches: their answers carry the new log start, and
                # their next fetches report it back (the DeleteRecords low watermark).
                self._events.changed.append(part.label)
        except OffsetOutOfRangeError as exc:
            return exc, plog.log_start_offset
        return None, plog.log_start_offset

    def low_watermark(self, topic: str, partition: int) -> tuple[RafkaError | None, int]:
        """(error, the smallest log start offset among the leader and the followers on live
        brokers): a DeleteRecords is done when this reaches its offset (Kafka's
        DelayedDeleteRecords). NOT_LEADER_OR_FOLLOWER once leadership moved."""
        found = self._lookup(topic, partition)
        if isinstance(found, RafkaError):
            return found, -1
        if not found.replica.is_leader:
            return NotLeaderOrFollowerError(
                f"broker {self.broker_id} is no longer the leader of {found.label}"), -1

        def alive(broker_id: int) -> bool:
            reg = self.image.broker(broker_id)
            return reg is not None and not reg.fenced

        return None, found.replica.low_watermark(alive)

    def _after_log_start(self, part: Partition) -> None:
        start = part.log.log_start_offset
        if start > part.replica.log_start_offset:
            part.replica.on_log_start_offset(start)
        part.producers.truncate_head(start)

    # -- follower side --

    def follower_fetch_entries(self, now_ms: int) -> dict[int, list[FollowerEntry]]:
        """The entries of the next follower Fetch, by leader broker id."""
        out: dict[int, list[FollowerEntry]] = {}
        for label in sorted(self.partitions):
            part = self.partitions[label]
            if part.backoff_until_ms > now_ms:
                continue
            request = part.replica.follower_fetch_request(part.log.log_end_offset,
                                                          part.log.latest_epoch)
            if request is None:
                continue
            out.setdefault(request.leader_id, []).append(FollowerEntry(
                part.topic, part.partition, part.topic_id, request, part.log.log_start_offset))
        return out

    def followed_leaders(self) -> set[int]:
        return {p.replica.leader_id for p in self.partitions.values()
                if p.replica.role is Role.FOLLOWER and p.replica.leader_id != NO_LEADER}

    def on_follower_fetch_response(self, entry: FollowerEntry, error: ErrorCode, *,
                                   high_watermark: int, log_start_offset: int,
                                   diverging_epoch: DivergingEpoch | None, records: bytes,
                                   now_ms: int) -> None:
        """Apply the leader's answer for one partition (append / truncate / back off)."""
        part = self.partitions.get(tp_label(entry.topic, entry.partition))
        if part is None:
            return
        plog = part.log
        try:
            end = _records_end_offset(records) if error is ErrorCode.NONE else None
        except RafkaError as exc:
            log.warning("[broker %d] %s: corrupt fetch response from %d: %s", self.broker_id,
                        part.label, entry.request.leader_id, exc)
            part.backoff_until_ms = now_ms + self.config.replica_fetch_backoff_ms
            return
        response = FetchResponsePartition(error, high_watermark, log_start_offset,
                                          diverging_epoch, end)
        action = part.replica.on_fetch_response(entry.request, response,
                                                local_leo=plog.log_end_offset, epoch_lookup=plog)
        if isinstance(action, FollowerAppend):
            if records:
                active = plog.active_segment
                try:
                    plog.append_as_follower(records, now_ms)
                except RafkaError as exc:
                    log.warning("[broker %d] %s: follower append failed: %s", self.broker_id,
                                part.label, exc)
                    part.backoff_until_ms = now_ms + self.config.replica_fetch_backoff_ms
                    return
                for batch in iter_batches(records, check_crc=False):
                    _apply_batch_to_producers(part.producers, batch)
                if plog.active_segment is not active:
                    self._snapshot_producers(part)
            if action.log_start_offset > plog.log_start_offset:
                plog.maybe_increment_log_start_offset(
                    action.log_start_offset, max(action.high_watermark, action.log_start_offset))
                part.producers.truncate_head(plog.log_start_offset)
        elif isinstance(action, TruncateTo):
            if action.full:
                plog.truncate_fully_and_start_at(action.offset, now_ms)
                part.producers.reset(action.offset)
            else:
                plog.truncate_to(action.offset)
                if part.producers.truncate_to(plog.log_end_offset):
                    part.producers = self._rebuild_producers(part.label, plog)
            self._events.changed.append(part.label)
        elif isinstance(action, Backoff):
            log.info("[broker %d] %s: fetch from %d failed with %s; backing off",
                     self.broker_id, part.label, entry.request.leader_id, action.error.name)
            part.backoff_until_ms = now_ms + self.config.replica_fetch_backoff_ms

    # -- time, ISR changes --

    def tick(self, now_ms: int) -> list[AlterPartitionAsk]:
        """Expire parked produces and shrink ISRs; returns AlterPartition asks (plus those from
        follower fetches since the last call)."""
        for label, part in sorted(self.partitions.items()):
            if part.replica.is_leader or part.replica.pending_produce_ops():
                ask = part.replica.tick(now_ms)
                if ask is not None:
                    self._asks.append(ask)
                self._touched.add(label)
        self._collect()
        return self.drain_asks()

    def drain_asks(self) -> list[AlterPartitionAsk]:
        asks, self._asks = self._asks, []
        return asks

    def on_alter_partition_result(self, ask: AlterPartitionAsk, result: AlterPartitionResult,
                                  now_ms: int) -> None:
        part = self.partitions.get(ask.topic_partition)
        if part is None:
            return
        self._note_hw(part, part.replica.on_alter_partition_response(ask, result, now_ms))
        self._touched.add(part.label)
        self._collect()

    def retention(self, now_ms: int) -> int:
        """Delete old segments of every log (below its HW); returns bytes deleted."""
        deleted = 0
        for _, part in sorted(self.partitions.items()):
            result = part.log.delete_old_segments(now_ms, part.replica.high_watermark)
            deleted += result.deleted_bytes
            if result.deleted:
                self._after_log_start(part)
            part.log.purge_deleted_files(now_ms)
        return deleted

    def flush_due(self, now_ms: int) -> None:
        for _, part in sorted(self.partitions.items()):
            offset = part.log.needs_flush(now_ms)
            if offset is not None:
                part.log.flush(offset, now_ms)

    # -- events --

    def _note_hw(self, part: Partition, change: HighWatermarkChange | None) -> None:
        if change is None:
            return
        visible = 0
        while part.unexposed and part.unexposed[0][0] <= change.new:
            visible += part.unexposed.popleft()[1]
        self._events.visible_bytes.append((part.label, max(visible, 1)))

    def _collect(self) -> None:
        for label in sorted(self._touched):
            part = self.partitions.get(label)
            if part is None:
                continue
            for completion in part.replica.completions():
                self._events.completions.append((label, completion))
        self._touched.clear()

    def close_replica_completions(self, replica: PartitionReplica) -> None:
        for completion in replica.completions():
            self._events.completions.append((replica.topic_partition, completion))

    def drain_events(self) -> Events:
        self._collect()
        events, self._events = self._events, Events()
        return events


def _apply_batch_to_producers(table: ProducerStateTable, batch: RecordBatch) -> None:
    if batch.producer_id < 0 or batch.is_control:
        return
    table.apply_replicated_batch(
        batch.producer_id, batch.producer_epoch, batch.base_sequence, batch.last_sequence,
        base_offset=batch.base_offset, last_offset=batch.last_offset,
        timestamp_ms=batch.max_timestamp, is_transactional=batch.is_transactional)


def _records_end_offset(records: bytes) -> int | None:
    """Offset after the last whole batch in `records` (headers only); None if empty."""
    end = None
    for batch in iter_batches(records, check_crc=False):
        end = batch.next_offset
    return end
