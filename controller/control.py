"""ControlManager: the active controller's decisions, as a pure core (Kafka's QuorumController
with its ClusterControlManager, ReplicationControlManager and ProducerIdControlManager).

Theory of operation
-------------------
The controller quorum's Raft leader is the *active controller*. Brokers and admins send it
requests; it answers each with a `ControllerResult(records, response)`: the metadata records
that carry out the decision and the response to send once they are committed. This class
decides and never does I/O: no clock (time comes in as `now_ms`), no Raft, no gRPC. Randomness
(topic ids, placement start) comes from an injected `random.Random`.

States: STANDBY (no image) and ACTIVE (an image). `activate` / `deactivate` move between them.
On a standby, every `handle_*` answers NOT_CONTROLLER (the shell adds the leader hint) and
`tick` does nothing.

Speculative apply (KAFKA_SEMANTICS §5.6). The active manager holds a `MetadataImage` and
applies every result's records to it *as soon as it produces them*, at the next metadata
offset, so the next request already sees the effect (Kafka's timeline data structures). The
shell must:

1. Propose each result with records as ONE Raft entry (the records commit atomically), in the
   order the results were produced, before asking the manager anything else. The manager
   numbers results with consecutive offsets starting at the `next_offset` given to
   `activate`; after proposing, `last_written_offset` must equal the entry's Raft index (the
   shell may assert it). A result without records needs no entry.
2. Answer a request only after its entry is committed; a result without records only after
   everything written before it (`last_written_offset` at that time) is committed, so no
   response ever reveals uncommitted state (Kafka defers such replies the same way).
3. Call `on_commit(offset)` as the commit index advances (informational: `committed_offset`).
4. If leadership is lost, or a proposal fails for any reason, call `deactivate()`: the
   speculative image, which may hold uncommitted changes, is dropped. On becoming leader again
   call `activate(committed_image, now_ms, next_offset=...)`.
5. Call `activate` only once the committed image covers every entry before the leader's first
   entry of its term (Kafka fires handleLeaderChange the same way), with `next_offset` = the
   index the next proposal will get. Otherwise a record from the previous term that commits
   late would not be in the speculative image and could conflict with new decisions.

Broker epochs. Kafka's broker epoch is the offset of the broker's RegisterBrokerRecord. The
manager knows that offset under contract (1): it is the offset of the registration's result.
If the shell breaks the contract the epoch is a lower bound of the real offset, which is still
unique and monotonic per broker id, also across failovers: a new active controller starts
numbering after its committed image, whose entries include every epoch ever answered.

Broker liveness (KAFKA_SEMANTICS §5.4, `controller.broker_heartbeats`). Registration writes a
fenced RegisterBrokerRecord. A heartbeat unfences the broker once its current_metadata_offset
reaches its registration offset; no heartbeat for `broker_session_timeout_ms` → `tick` fences
it. Fencing, controlled shutdown and re-registration of a new incarnation remove the broker
from every ISR (never below one member: the last replica stays, leaderless) and move its
leaderships to the next ISR replica in assignment order, or to nobody (leader -1) unless
unclean election is enabled for the topic (§5.5, `controller.partition_change`). Unfencing
elects leaders for leaderless partitions; the preferred replica gets its leadership back at
the next periodic leader check (`auto.leader.rebalance.enable`). A new incarnation is refused
(DUPLICATE_BROKER_REGISTRATION) while the old one is unfenced with a live session, as Kafka's
hasValidSession. Controlled shutdown answers should_shutdown once the broker leads nothing and
every active broker has reported applying the entry that started it (Kafka's
controlledShutdownOffset ≤ lowestActiveOffset); the broker is then fenced.

Topics and configs are validated and turned into records by pure helpers:
`controller.topic_control` (CreateTopics, CreatePartitions) and `controller.config_control`
(topic configs, IncrementalAlterConfigs, the effective unclean-election setting). Each request
item fails on its own with a typed error; the others still apply. validate_only writes nothing.

Defaults for a local cluster: `broker_heartbeat_interval_ms` 500 (Kafka 2000) and
`broker_session_timeout_ms` 3000 (Kafka 9000). All brokers run on one machine, so a missed
heartbeat is a dead or paused process, not a slow network: fencing after 3 s gives fast
failover while still tolerating five lost heartbeats and a stop-the-world pause.

Simplifications (documented where they apply): no ELR (KIP-966), no reassignment, no rack
awareness, the preferred-leader rebalance ignores Kafka's 10% imbalance threshold (every
partition whose preferred replica can lead gets it back), AlterPartition by topic id only.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from controller import config_control, topic_control
from controller.broker_heartbeats import (
    BrokerControlState,
    BrokerHeartbeatManager,
    current_broker_state,
    next_broker_state,
)
from controller.partition_change import (
    Election,
    alter_partition,
    build_partition_change,
    check_broker_epoch,
    elect_leader,
    remove_broker_from_isr,
)
from controller.requests import (
    AllocateProducerIdsRequest,
    AllocateProducerIdsResponse,
    AlterConfigsResourceResponse,
    AlterPartitionData,
    AlterPartitionPartitionResult,
    AlterPartitionRequest,
    AlterPartitionResponse,
    BrokerHeartbeatRequest,
    BrokerHeartbeatResponse,
    BrokerRegistrationRequest,
    BrokerRegistrationResponse,
    CreatableTopicResult,
    CreatePartitionsRequest,
    CreatePartitionsResponse,
    CreatePartitionsTopicResult,
    CreateTopicsRequest,
    CreateTopicsResponse,
    DeletableTopicResult,
    DeleteTopicsRequest,
    DeleteTopicsResponse,
    ElectionType,
    ElectLeadersPartitionResult,
    ElectLeadersRequest,
    ElectLeadersResponse,
    IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
)
from proto.config import ConfigError
from proto.errors import ErrorCode, InvalidRequestError, RafkaError
from proto.metadata import (
    BrokerRegistrationChangeRecord,
    ConfigResourceType,
    MetadataRecord,
    PartitionChangeRecord,
    ProducerIdsRecord,
    RegisterBrokerRecord,
    RemoveTopicRecord,
)
from proto.metadata_image import MetadataImage, PartitionRegistration, TopicIdPartition

log = logging.getLogger(__name__)

R = TypeVar("R")

NOT_CONTROLLER_MESSAGE = "this controller is not the active controller"


@dataclass(frozen=True, slots=True)
class ControllerConfig:
    """The active controller's settings (Kafka's names, snake_case; local-cluster defaults).

    Raises:
        ConfigError: a value out of range (at construction).
    """

    broker_heartbeat_interval_ms: int = 500  # Kafka 2000; brokers use it, the manager checks it
    broker_session_timeout_ms: int = 3000  # Kafka 9000; see the module docstring
    default_replication_factor: int = 1  # default.replication.factor
    num_partitions: int = 1  # num.partitions
    min_insync_replicas: int = 1  # min.insync.replicas (broker default for topics)
    unclean_leader_election_enable: bool = False  # broker default for topics
    auto_leader_rebalance_enable: bool = True
    leader_imbalance_check_interval_ms: int = 300_000  # Kafka: ...interval.seconds = 300
    producer_id_block_size: int = 1000  # Kafka's ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE

    def __post_init__(self) -> None:
        checks = (
            (self.broker_heartbeat_interval_ms > 0, "broker_heartbeat_interval_ms must be > 0"),
            (
                self.broker_session_timeout_ms > self.broker_heartbeat_interval_ms,
                "broker_session_timeout_ms must exceed broker_heartbeat_interval_ms",
            ),
            (self.default_replication_factor >= 1, "default_replication_factor must be >= 1"),
            (self.num_partitions >= 1, "num_partitions must be >= 1"),
            (self.min_insync_replicas >= 1, "min_insync_replicas must be >= 1"),
            (
                self.leader_imbalance_check_interval_ms > 0,
                "leader_imbalance_check_interval_ms must be > 0",
            ),
            (self.producer_id_block_size >= 1, "producer_id_block_size must be >= 1"),
        )
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


@dataclass(frozen=True, slots=True)
class ControllerResult(Generic[R]):
    """Records to commit as one Raft entry, and the response to send once they are committed
    (Kafka's ControllerResult / CoordinatorResult)."""

    records: tuple[MetadataRecord, ...]
    response: R


class _RecordBatch:
    """The records of one result, applied to a scratch copy of the image as they are added,
    so later decisions in the same request see earlier ones. The copy is made on the first
    add: most heartbeats write nothing."""

    def __init__(self, image: MetadataImage) -> None:
        self._base = image
        self._scratch: MetadataImage | None = None
        self.records: list[MetadataRecord] = []

    @property
    def image(self) -> MetadataImage:
        """The image with this batch's records applied. Read-only for callers."""
        return self._base if self._scratch is None else self._scratch

    def add(self, record: MetadataRecord) -> None:
        if self._scratch is None:
            self._scratch = self._base.copy()
        # Scratch offsets only: the real image applies the whole batch at the entry's offset.
        self._scratch.apply(record, self._scratch.last_applied_offset + 1)
        self.records.append(record)


class ControlManager:
    """The active controller's state machine. See the module docstring for the shell contract."""

    def __init__(self, config: ControllerConfig | None = None, *, rng: random.Random) -> None:
        self._config = config if config is not None else ControllerConfig()
        self._rng = rng
        self._image: MetadataImage | None = None  # None: standby
        self._next_offset = 0  # offset of the next result with records
        self._last_written_offset = -1
        self._committed_offset = -1
        self._heartbeats = BrokerHeartbeatManager(self._config.broker_session_timeout_ms)
        self._next_leader_check_ms = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def config(self) -> ControllerConfig:
        return self._config

    @property
    def is_active(self) -> bool:
        return self._image is not None

    @property
    def image(self) -> MetadataImage:
        """The speculative image (committed + produced records). Read-only for callers."""
        assert self._image is not None, "standby controller has no image"
        return self._image

    @property
    def last_written_offset(self) -> int:
        """Offset of the last result with records (or of the committed image after activate)."""
        return self._last_written_offset

    @property
    def next_offset(self) -> int:
        """The offset the next result with records will be applied at."""
        return self._next_offset

    @property
    def committed_offset(self) -> int:
        return self._committed_offset

    def activate(
        self, committed_image: MetadataImage, now_ms: int, *, next_offset: int | None = None
    ) -> None:
        """Become the active controller, starting from the committed image.

        Args:
            committed_image: the image of every committed entry; copied, never modified.
            now_ms: every registered broker gets a full session from now.
            next_offset: the Raft index the next proposal will get (default: just after the
                image). Must be greater than the image's last applied offset.
        """
        image = committed_image.copy()
        last = image.last_applied_offset
        start = last + 1 if next_offset is None else next_offset
        assert start > last, f"next_offset {start} <= committed offset {last}"
        self._image = image
        self._next_offset = start
        self._last_written_offset = last
        self._committed_offset = last
        self._heartbeats.reset(image.registered_broker_ids(), now_ms)
        for broker_id in image.registered_broker_ids():
            registration = image.brokers[broker_id]
            if registration.in_controlled_shutdown and not registration.fenced:
                self._heartbeats.start_controlled_shutdown(broker_id, last, now_ms)
        self._next_leader_check_ms = now_ms + self._config.leader_imbalance_check_interval_ms
        log.info(
            "active controller from committed offset %d; next offset %d; %d broker(s), "
            "%d topic(s)", last, start, len(image.brokers), len(image.topics_by_id),
        )

    def deactivate(self) -> None:
        """Become standby; uncommitted speculative state is dropped."""
        if self._image is not None:
            log.info("no longer the active controller (last written offset %d, committed %d)",
                     self._last_written_offset, self._committed_offset)
        self._image = None
        self._heartbeats.clear()

    def on_commit(self, offset: int) -> None:
        """The shell saw the commit index reach `offset`."""
        self._committed_offset = max(self._committed_offset, offset)

    def next_deadline_ms(self) -> int | None:
        """When `tick` next has work: a session expiry or the periodic leader check."""
        if self._image is None:
            return None
        expiry = self._heartbeats.next_expiry_ms(self._image.live_broker_ids())
        if expiry is None:
            return self._next_leader_check_ms
        return min(expiry, self._next_leader_check_ms)

    def tick(self, now_ms: int) -> ControllerResult[None]:
        """Fence brokers whose session expired; run the periodic leader check when due:
        elect leaders for leaderless partitions (unclean where enabled) and, with
        auto_leader_rebalance_enable, give leadership back to preferred replicas."""
        if self._image is None:
            return ControllerResult((), None)
        batch = _RecordBatch(self._image)
        for broker_id in self._heartbeats.expired(self._image.live_broker_ids(), now_ms):
            self._fence(batch, broker_id, "session expired")
        if now_ms >= self._next_leader_check_ms:
            self._next_leader_check_ms = now_ms + self._config.leader_imbalance_check_interval_ms
            self._elect_offline_leaders(batch)
            if self._config.auto_leader_rebalance_enable:
                self._rebalance_preferred_leaders(batch)
        return self._finish(batch, None)

    # ------------------------------------------------------------------ brokers

    def handle_broker_registration(
        self, req: BrokerRegistrationRequest, now_ms: int
    ) -> ControllerResult[BrokerRegistrationResponse]:
        """Register a broker (new incarnation → new epoch, fenced; same one → idempotent).

        Errors: DUPLICATE_BROKER_REGISTRATION (another incarnation is alive: unfenced with a
        valid session), INVALID_REQUEST (bad id or port).
        """
        if self._image is None:
            return _not_controller(BrokerRegistrationResponse())
        broker_id = req.broker_id
        if broker_id < 0 or not 0 < req.endpoint.port < 65536:
            return ControllerResult((), BrokerRegistrationResponse(
                ErrorCode.INVALID_REQUEST, f"bad broker id {broker_id} or endpoint {req.endpoint}"
            ))
        existing = self._image.broker(broker_id)
        if existing is not None and existing.incarnation_id == req.incarnation_id:
            self._heartbeats.touch(broker_id, now_ms)
            return ControllerResult((), BrokerRegistrationResponse(
                broker_epoch=existing.broker_epoch
            ))
        if (
            existing is not None
            and not existing.fenced
            and self._heartbeats.has_valid_session(broker_id, now_ms)
        ):
            message = (
                f"another incarnation of broker {broker_id} ({existing.incarnation_id}) is "
                f"registered and alive"
            )
            log.info("rejecting registration of broker %d: %s", broker_id, message)
            return ControllerResult((), BrokerRegistrationResponse(
                ErrorCode.DUPLICATE_BROKER_REGISTRATION, message
            ))
        batch = _RecordBatch(self._image)
        if existing is not None:
            # The old incarnation may have lost unflushed data: take it out of every ISR and
            # move its leaderships first (Kafka's handleBrokerUncleanShutdown without ELR).
            self._remove_from_isrs(batch, broker_id)
        epoch = self._next_offset  # the offset of this result's entry (module docstring)
        batch.add(RegisterBrokerRecord(
            broker_id=broker_id,
            incarnation_id=req.incarnation_id,
            broker_epoch=epoch,
            endpoint=req.endpoint,
            rack=req.rack,
            fenced=True,
        ))
        self._heartbeats.register(broker_id, now_ms)
        log.info("broker %d registered at %s with epoch %d (incarnation %s)",
                 broker_id, req.endpoint.address, epoch, req.incarnation_id)
        return self._finish(batch, BrokerRegistrationResponse(broker_epoch=epoch))

    def handle_broker_heartbeat(
        self, req: BrokerHeartbeatRequest, now_ms: int
    ) -> ControllerResult[BrokerHeartbeatResponse]:
        """Extend the broker's session and move it between FENCED, UNFENCED and
        CONTROLLED_SHUTDOWN (`broker_heartbeats.next_broker_state`).

        Errors: BROKER_ID_NOT_REGISTERED, STALE_BROKER_EPOCH.
        """
        if self._image is None:
            return _not_controller(BrokerHeartbeatResponse())
        broker_id = req.broker_id
        registration = self._image.broker(broker_id)
        if registration is None:
            return ControllerResult((), BrokerHeartbeatResponse(
                ErrorCode.BROKER_ID_NOT_REGISTERED, f"broker {broker_id} is not registered"
            ))
        if registration.broker_epoch != req.broker_epoch:
            return ControllerResult((), BrokerHeartbeatResponse(
                ErrorCode.STALE_BROKER_EPOCH,
                f"broker {broker_id}: epoch {req.broker_epoch} != registered "
                f"{registration.broker_epoch}",
            ))
        self._heartbeats.touch(broker_id, now_ms, req.current_metadata_offset)
        caught_up = req.current_metadata_offset >= registration.broker_epoch
        current = current_broker_state(registration)
        following = next_broker_state(
            current,
            want_fence=req.want_fence,
            want_shutdown=req.want_shutdown,
            caught_up=caught_up,
            has_leaderships=(
                (req.want_shutdown or current is BrokerControlState.CONTROLLED_SHUTDOWN)
                and bool(self._image.partitions_led_by(broker_id))  # only scanned when used
            ),
            controlled_shutdown_done=self._controlled_shutdown_done(broker_id),
        )
        batch = _RecordBatch(self._image)
        if following is not current:
            if following.is_fenced:
                if current is not BrokerControlState.FENCED:
                    reason = "shutdown" if req.want_shutdown else "it asked to be fenced"
                    self._fence(batch, broker_id, reason)
            elif following is BrokerControlState.UNFENCED:
                self._unfence(batch, broker_id)
            else:
                self._enter_controlled_shutdown(batch, broker_id, now_ms)
        return self._finish(batch, BrokerHeartbeatResponse(
            is_caught_up=caught_up,
            is_fenced=following.is_fenced,
            should_shutdown=following is BrokerControlState.SHUTDOWN_NOW,
        ))

    def _controlled_shutdown_done(self, broker_id: int) -> bool:
        """Every active broker has applied the entry that started this broker's controlled
        shutdown (Kafka: controlledShutdownOffset <= lowestActiveOffset)."""
        offset = self._heartbeats.controlled_shutdown_offset(broker_id)
        if offset is None:
            return True
        assert self._image is not None
        others = [b for b in self._image.active_broker_ids() if b != broker_id]
        lowest = self._heartbeats.lowest_metadata_offset(others)
        return lowest is None or offset <= lowest

    def _fence(self, batch: _RecordBatch, broker_id: int, reason: str) -> None:
        registration = batch.image.brokers[broker_id]
        self._remove_from_isrs(batch, broker_id)
        batch.add(BrokerRegistrationChangeRecord(
            broker_id=broker_id,
            broker_epoch=registration.broker_epoch,
            fenced=True,
            in_controlled_shutdown=False if registration.in_controlled_shutdown else None,
        ))
        self._heartbeats.end_controlled_shutdown(broker_id)
        log.info("broker %d fenced (%s)", broker_id, reason)

    def _unfence(self, batch: _RecordBatch, broker_id: int) -> None:
        registration = batch.image.brokers[broker_id]
        batch.add(BrokerRegistrationChangeRecord(
            broker_id=broker_id, broker_epoch=registration.broker_epoch, fenced=False
        ))
        log.info("broker %d unfenced", broker_id)
        # Leaderless partitions where it is the last ISR member get it back as leader.
        self._elect_offline_leaders(batch)

    def _enter_controlled_shutdown(self, batch: _RecordBatch, broker_id: int, now_ms: int) -> None:
        registration = batch.image.brokers[broker_id]
        batch.add(BrokerRegistrationChangeRecord(
            broker_id=broker_id, broker_epoch=registration.broker_epoch,
            in_controlled_shutdown=True,
        ))
        self._remove_from_isrs(batch, broker_id)
        self._heartbeats.start_controlled_shutdown(broker_id, self._next_offset, now_ms)
        log.info("broker %d in controlled shutdown", broker_id)

    # ------------------------------------------------------------------ elections

    def _remove_from_isrs(self, batch: _RecordBatch, broker_id: int) -> None:
        """Take the broker out of every ISR (but the last member) and move its leaderships."""
        acceptable = batch.image.active_broker_ids()
        for tp, partition in list(batch.image.all_partitions()):
            if broker_id not in partition.isr:
                continue
            record = remove_broker_from_isr(
                partition,
                topic_id=tp.topic_id,
                partition_id=tp.partition,
                broker_id=broker_id,
                acceptable_leaders=acceptable,
                unclean_leader_election_enable=self._unclean(batch.image, tp.topic),
            )
            if record is not None:
                self._add_partition_change(batch, tp, partition, record)

    def _elect_offline_leaders(self, batch: _RecordBatch) -> None:
        """Elect a leader for each leaderless partition that has a candidate."""
        acceptable = batch.image.active_broker_ids()
        for tp in batch.image.offline_partitions():
            partition = batch.image.partition(tp.topic_id, tp.partition)
            assert partition is not None
            record = build_partition_change(
                partition,
                topic_id=tp.topic_id,
                partition_id=tp.partition,
                acceptable_leaders=acceptable,
                unclean_leader_election_enable=self._unclean(batch.image, tp.topic),
            )
            if record is not None:
                self._add_partition_change(batch, tp, partition, record)

    def _rebalance_preferred_leaders(self, batch: _RecordBatch) -> None:
        """Give leadership back to each preferred replica that is in the ISR and active."""
        active = batch.image.active_broker_ids()
        for tp, partition in list(batch.image.all_partitions()):
            preferred = partition.preferred_leader
            if partition.has_preferred_leader or preferred not in partition.isr:
                continue
            if preferred not in active:
                continue
            record = build_partition_change(
                partition,
                topic_id=tp.topic_id,
                partition_id=tp.partition,
                acceptable_leaders=active,
                election=Election.PREFERRED,
            )
            if record is not None:
                self._add_partition_change(batch, tp, partition, record)

    def _add_partition_change(
        self,
        batch: _RecordBatch,
        tp: TopicIdPartition,
        before: PartitionRegistration,
        record: PartitionChangeRecord,
    ) -> None:
        batch.add(record)
        after = batch.image.partition(tp.topic_id, tp.partition)
        assert after is not None
        if after.leader != before.leader:
            log.info("leader of %s-%d moved %d → %d at epoch %d (ISR %s)", tp.topic,
                     tp.partition, before.leader, after.leader, after.leader_epoch,
                     list(after.isr))
        elif after.isr != before.isr:
            log.info("ISR of %s-%d %s → %s at partition epoch %d", tp.topic, tp.partition,
                     list(before.isr), list(after.isr), after.partition_epoch)

    def _unclean(self, image: MetadataImage, topic: str) -> bool:
        return config_control.unclean_leader_election_enabled(
            image, topic, self._config.unclean_leader_election_enable
        )

    # ------------------------------------------------------------------ topics

    def handle_create_topics(
        self, req: CreateTopicsRequest, now_ms: int
    ) -> ControllerResult[CreateTopicsResponse]:
        """Create topics: TopicRecord, ConfigRecords, PartitionRecords per topic (§5.6).

        Per-topic errors: INVALID_REQUEST (duplicate name in the request, counts given with
        assignments, `__cluster_metadata`), INVALID_TOPIC_EXCEPTION, TOPIC_ALREADY_EXISTS,
        INVALID_PARTITIONS, INVALID_REPLICATION_FACTOR, INVALID_REPLICA_ASSIGNMENT,
        INVALID_CONFIG.
        """
        if self._image is None:
            return _not_controller(CreateTopicsResponse())
        batch = _RecordBatch(self._image)
        counts = Counter(topic.name for topic in req.topics)
        results: list[CreatableTopicResult] = []
        for topic in req.topics:
            try:
                if counts[topic.name] > 1:
                    raise InvalidRequestError(f"Duplicate topic name {topic.name}.")
                records, result = topic_control.plan_new_topic(
                    batch.image,
                    topic,
                    default_num_partitions=self._config.num_partitions,
                    default_replication_factor=self._config.default_replication_factor,
                    config_defaults=self._topic_config_defaults(batch.image),
                    rng=self._rng,
                    validate_only=req.validate_only,
                )
            except RafkaError as error:
                log.debug("create topic %s failed: %s", topic.name, error.message)
                results.append(CreatableTopicResult(topic.name, error.code, error.message))
                continue
            for record in records:
                batch.add(record)
            if records:
                log.info("created topic %s (id %s) with %d partition(s), replication factor %d",
                         topic.name, result.topic_id, result.num_partitions,
                         result.replication_factor)
            results.append(result)
        return self._finish(batch, CreateTopicsResponse(tuple(results)))

    def _topic_config_defaults(self, image: MetadataImage) -> dict[str, str | None]:
        """Cluster-wide defaults of the topic configs the controller has defaults for."""
        cluster = image.configs_for(ConfigResourceType.BROKER, "")
        defaults: dict[str, str | None] = {
            config_control.MIN_INSYNC_REPLICAS: str(self._config.min_insync_replicas),
            config_control.UNCLEAN_LEADER_ELECTION_ENABLE: config_control.format_config_value(
                self._config.unclean_leader_election_enable
            ),
        }
        for name in sorted(defaults):
            if name in cluster:
                defaults[name] = cluster[name]
        return defaults

    def handle_delete_topics(
        self, req: DeleteTopicsRequest, now_ms: int
    ) -> ControllerResult[DeleteTopicsResponse]:
        """Delete topics by name or id: one RemoveTopicRecord each.

        Per-topic errors: UNKNOWN_TOPIC_OR_PARTITION (name), UNKNOWN_TOPIC_ID (id),
        INVALID_REQUEST (the same topic twice in the request).
        """
        if self._image is None:
            return _not_controller(DeleteTopicsResponse())
        batch = _RecordBatch(self._image)
        deleted: set[str] = set()
        results: list[DeletableTopicResult] = []
        items = [(name, True) for name in req.names] + [(tid, False) for tid in req.topic_ids]
        for key, by_name in items:
            topic_id = self._image.topic_ids_by_name.get(key) if by_name else key
            name = key if by_name else ""
            topic = None if topic_id is None else self._image.topic_by_id(topic_id)
            if topic is None:
                code = (
                    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION if by_name
                    else ErrorCode.UNKNOWN_TOPIC_ID
                )
                results.append(DeletableTopicResult(name, "" if by_name else key, code,
                                                    f"unknown topic {key}"))
                continue
            if topic.topic_id in deleted:
                results.append(DeletableTopicResult(topic.name, topic.topic_id,
                                                    ErrorCode.INVALID_REQUEST,
                                                    f"topic {topic.name} given twice"))
                continue
            deleted.add(topic.topic_id)
            batch.add(RemoveTopicRecord(topic.topic_id))
            log.info("deleted topic %s (id %s)", topic.name, topic.topic_id)
            results.append(DeletableTopicResult(topic.name, topic.topic_id))
        return self._finish(batch, DeleteTopicsResponse(tuple(results)))

    def handle_create_partitions(
        self, req: CreatePartitionsRequest, now_ms: int
    ) -> ControllerResult[CreatePartitionsResponse]:
        """Grow topics; placement continues the topic's spread (or follows assignments).

        Per-topic errors: UNKNOWN_TOPIC_OR_PARTITION, INVALID_PARTITIONS (not an increase),
        INVALID_REPLICATION_FACTOR (too few active brokers), INVALID_REPLICA_ASSIGNMENT,
        INVALID_REQUEST (duplicate topic in the request).
        """
        if self._image is None:
            return _not_controller(CreatePartitionsResponse())
        batch = _RecordBatch(self._image)
        counts = Counter(topic.name for topic in req.topics)
        results: list[CreatePartitionsTopicResult] = []
        for topic in req.topics:
            try:
                if counts[topic.name] > 1:
                    raise InvalidRequestError(f"Duplicate topic name {topic.name}.")
                records = topic_control.plan_new_partitions(batch.image, topic, self._rng)
            except RafkaError as error:
                results.append(CreatePartitionsTopicResult(topic.name, error.code, error.message))
                continue
            if not req.validate_only:
                for record in records:
                    batch.add(record)
                log.info("topic %s grew to %d partitions", topic.name, topic.count)
            results.append(CreatePartitionsTopicResult(topic.name))
        return self._finish(batch, CreatePartitionsResponse(tuple(results)))

    # ------------------------------------------------------------------ configs

    def handle_incremental_alter_configs(
        self, req: IncrementalAlterConfigsRequest, now_ms: int
    ) -> ControllerResult[IncrementalAlterConfigsResponse]:
        """Alter topic and broker configs (`config_control.plan_config_changes`).

        Per-resource errors: UNKNOWN_TOPIC_OR_PARTITION, INVALID_CONFIG, INVALID_REQUEST
        (also for a resource given twice). Enabling unclean election re-runs elections for
        leaderless partitions in the same entry.
        """
        if self._image is None:
            return _not_controller(IncrementalAlterConfigsResponse())
        batch = _RecordBatch(self._image)
        counts = Counter((r.resource_type, r.resource_name) for r in req.resources)
        results: list[AlterConfigsResourceResponse] = []
        rerun_elections = False
        for resource in req.resources:
            kind, name = resource.resource_type, resource.resource_name
            try:
                if counts[(kind, name)] > 1:
                    raise InvalidRequestError(f"Duplicate resource {kind.name} {name!r}.")
                records = config_control.plan_config_changes(batch.image, resource)
            except RafkaError as error:
                results.append(AlterConfigsResourceResponse(kind, name, error.code, error.message))
                continue
            if not req.validate_only:
                for record in records:
                    batch.add(record)
                    log.info("config %s %r: %s = %r", kind.name, name, record.name, record.value)
                rerun_elections |= config_control.touches_unclean_election(records)
            results.append(AlterConfigsResourceResponse(kind, name))
        if rerun_elections:
            self._elect_offline_leaders(batch)
        return self._finish(batch, IncrementalAlterConfigsResponse(tuple(results)))

    # ------------------------------------------------------------------ producer ids

    def handle_allocate_producer_ids(
        self, req: AllocateProducerIdsRequest, now_ms: int
    ) -> ControllerResult[AllocateProducerIdsResponse]:
        """Hand the broker the next block of producer ids (ProducerIdsRecord).

        Errors: STALE_BROKER_EPOCH (unknown broker or wrong epoch).
        """
        if self._image is None:
            return _not_controller(AllocateProducerIdsResponse())
        try:
            check_broker_epoch(self._image.brokers, req.broker_id, req.broker_epoch)
        except RafkaError as error:
            return ControllerResult((), AllocateProducerIdsResponse(error.code, error.message))
        start = self._image.next_producer_id
        size = self._config.producer_id_block_size
        batch = _RecordBatch(self._image)
        batch.add(ProducerIdsRecord(req.broker_id, req.broker_epoch, start + size))
        log.info("producer ids [%d, %d) to broker %d", start, start + size, req.broker_id)
        return self._finish(batch, AllocateProducerIdsResponse(
            producer_id_start=start, producer_id_len=size
        ))

    # ------------------------------------------------------------------ leaders and ISR

    def handle_elect_leaders(
        self, req: ElectLeadersRequest, now_ms: int
    ) -> ControllerResult[ElectLeadersResponse]:
        """Admin ElectLeaders: preferred or unclean, for the listed partitions or all.

        Per-partition errors: UNKNOWN_TOPIC_OR_PARTITION, ELECTION_NOT_NEEDED (left out when
        electing all partitions), PREFERRED_LEADER_NOT_AVAILABLE, ELIGIBLE_LEADERS_NOT_AVAILABLE.
        """
        if self._image is None:
            return _not_controller(ElectLeadersResponse())
        election = (
            Election.PREFERRED if req.election_type is ElectionType.PREFERRED else Election.UNCLEAN
        )
        elect_all = req.partitions is None
        if req.partitions is None:
            targets = [(tp.topic, tp.partition) for tp, _ in self._image.all_partitions()]
        else:
            targets = [(tp.topic, tp.partition) for tp in req.partitions]
        batch = _RecordBatch(self._image)
        results: list[ElectLeadersPartitionResult] = []
        for topic_name, partition_id in targets:
            topic = batch.image.topic(topic_name)
            partition = None if topic is None else topic.partitions.get(partition_id)
            if topic is None or partition is None:
                results.append(ElectLeadersPartitionResult(
                    topic_name, partition_id, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                    f"unknown partition {topic_name}-{partition_id}",
                ))
                continue
            try:
                record = elect_leader(
                    partition,
                    topic_id=topic.topic_id,
                    partition_id=partition_id,
                    acceptable_leaders=batch.image.active_broker_ids(),
                    election=election,
                )
            except RafkaError as error:
                if not (elect_all and error.code is ErrorCode.ELECTION_NOT_NEEDED):
                    results.append(ElectLeadersPartitionResult(
                        topic_name, partition_id, error.code, error.message
                    ))
                continue
            tp = TopicIdPartition(topic_name, partition_id, topic.topic_id)
            self._add_partition_change(batch, tp, partition, record)
            results.append(ElectLeadersPartitionResult(topic_name, partition_id))
        return self._finish(batch, ElectLeadersResponse(tuple(results)))

    def handle_alter_partition(
        self, req: AlterPartitionRequest, now_ms: int
    ) -> ControllerResult[AlterPartitionResponse]:
        """A partition leader's ISR change, checked by `partition_change.alter_partition`.

        Request-wide error: STALE_BROKER_EPOCH. Per-partition errors: UNKNOWN_TOPIC_ID,
        UNKNOWN_TOPIC_OR_PARTITION, FENCED_LEADER_EPOCH, INVALID_UPDATE_VERSION,
        INELIGIBLE_REPLICA, INVALID_REQUEST (the requester is not the leader, bad ISR),
        NOT_CONTROLLER (epochs newer than ours), NEW_LEADER_ELECTED (the change moved the
        leadership: written anyway, as Kafka does).
        """
        if self._image is None:
            return _not_controller(AlterPartitionResponse())
        try:
            check_broker_epoch(self._image.brokers, req.broker_id, req.broker_epoch)
        except RafkaError as error:
            return ControllerResult((), AlterPartitionResponse(
                error_code=error.code, error_message=error.message
            ))
        batch = _RecordBatch(self._image)
        results = [self._alter_one(batch, req.broker_id, data) for data in req.partitions]
        return self._finish(batch, AlterPartitionResponse(tuple(results)))

    def _alter_one(
        self, batch: _RecordBatch, broker_id: int, data: AlterPartitionData
    ) -> AlterPartitionPartitionResult:
        topic = batch.image.topic_by_id(data.topic_id)
        partition = None if topic is None else topic.partitions.get(data.partition_id)
        if topic is None or partition is None:
            code = (
                ErrorCode.UNKNOWN_TOPIC_ID if topic is None
                else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            )
            return AlterPartitionPartitionResult(
                data.topic_id, data.partition_id, code,
                f"unknown partition {data.topic_id}-{data.partition_id}",
            )
        try:
            record = alter_partition(
                partition,
                topic_id=data.topic_id,
                partition_id=data.partition_id,
                broker_id=broker_id,
                leader_epoch=data.leader_epoch,
                partition_epoch=data.partition_epoch,
                new_isr=data.new_isr,
                leader_recovery_state=data.leader_recovery_state,
                brokers=batch.image.brokers,
                unclean_leader_election_enable=self._unclean(batch.image, topic.name),
            )
        except RafkaError as error:
            log.debug("AlterPartition %s-%d from broker %d rejected: %s", topic.name,
                      data.partition_id, broker_id, error.message)
            return _partition_result(data, partition, error.code, error.message)
        code = ErrorCode.NONE
        if record is not None:
            tp = TopicIdPartition(topic.name, data.partition_id, data.topic_id)
            self._add_partition_change(batch, tp, partition, record)
            if record.leader is not None:
                code = ErrorCode.NEW_LEADER_ELECTED
        after = batch.image.partition(data.topic_id, data.partition_id)
        assert after is not None
        return _partition_result(data, after, code, "")

    # ------------------------------------------------------------------ results

    def _finish(self, batch: _RecordBatch, response: R) -> ControllerResult[R]:
        """Apply the batch to the speculative image at the next offset (one Raft entry)."""
        assert self._image is not None
        records = tuple(batch.records)
        if records:
            offset = self._next_offset
            self._image.apply_batch(records, offset)
            self._last_written_offset = offset
            self._next_offset = offset + 1
        return ControllerResult(records, response)


def _not_controller(response: R) -> ControllerResult[R]:
    """`response` (built with defaults) turned into a NOT_CONTROLLER answer."""
    return ControllerResult((), replace(  # type: ignore[type-var]
        response, error_code=ErrorCode.NOT_CONTROLLER, error_message=NOT_CONTROLLER_MESSAGE
    ))


def _partition_result(
    data: AlterPartitionData, partition: PartitionRegistration, code: ErrorCode, message: str
) -> AlterPartitionPartitionResult:
    return AlterPartitionPartitionResult(
        topic_id=data.topic_id,
        partition_id=data.partition_id,
        error_code=code,
        error_message=message,
        leader_id=partition.leader,
        leader_epoch=partition.leader_epoch,
        isr=partition.isr,
        partition_epoch=partition.partition_epoch,
        leader_recovery_state=partition.leader_recovery_state,
    )
