"""`GroupRuntime`: the asyncio shell around `GroupCoordinator` inside a broker process.

Theory of operation
-------------------
Every call into the core happens on the broker's one event loop.
- Metadata (`on_metadata`, a BrokerMetadata listener registered after the ReplicaRuntime's, so
  replica roles are already applied): for each `__consumer_offsets` partition this broker now
  leads (per its ReplicaManager, with the leader epoch) the core begins a load and a task reads
  the partition's log from the log start to the LEO seen at the start (the local PartitionLog,
  `offsets.load.buffer.size` bytes per step, yielding between steps) and replays every record;
  the partition's groups answer COORDINATOR_LOAD_IN_PROGRESS meanwhile. A partition no longer
  led (or led with a new epoch) is unloaded: its parked requests get NOT_COORDINATOR.
- Requests: each RPC gets a request id and a future; the core's `Outcome` resolves futures
  (now or later: parked joins and syncs) and lists appends. Each append becomes one RecordBatch
  produced through the local `ReplicaRuntime.produce(acks=-1, offsets.commit.timeout.ms)`; the
  tasks start in the order the core emitted them, and `produce` appends before its first await,
  so the log holds them in that order. The result goes back to the core (`on_append_done`),
  which releases the dependent answers. A parked JoinGroup/SyncGroup whose RPC is cancelled
  (the client died or gave up) is reported to the core (`abandon`), so that member's session
  timeout runs again instead of the much longer rebalance timeout.
- Time: wall-clock ms (`wall_ms`: stored timestamps are read by other brokers). A tick every
  TICK_MS runs the core's deadlines (sessions, rebalance and sync timeouts, the initial
  rebalance delay, offset expiry) and re-checks partition leadership.
- FindCoordinator is answered from the metadata image; if `__consumer_offsets` does not exist
  it is created through the controller (offsets.topic.num.partitions, RF =
  min(offsets.topic.replication.factor, live brokers), cleanup.policy=compact), then answered
  once metadata shows leaders, else COORDINATOR_NOT_AVAILABLE (the client retries).
`stop()` unloads everything (parked requests → NOT_COORDINATOR) and cancels its tasks.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from cluster.controller_channel_transport import ControllerChannel
from cluster.group.coordinator import Append, GroupCoordinator, Outcome
from cluster.group.hashing import coordinator_partition
from cluster.group.messages import (
    DeleteGroupResult,
    DescribedGroup,
    Heartbeat,
    HeartbeatResult,
    JoinGroup,
    JoinGroupResult,
    LeaveGroup,
    LeaveGroupResult,
    ListGroupsResult,
    OffsetCommit,
    OffsetCommitResult,
    OffsetFetchResult,
    SyncGroup,
    SyncGroupResult,
)
from cluster.group.state import GroupConfig
from cluster.metadata_runtime import BrokerLog, BrokerMetadata
from cluster.replica_runtime import ReplicaRuntime, monotonic_ms
from proto import admin_pb2, common_pb2
from proto.broker_config import BrokerConfig
from proto.errors import ErrorCode, RafkaError, error_class
from proto.metadata_image import MetadataImage
from proto.records import RecordBatchBuilder, iter_batches
from proto.topic_names import CONSUMER_OFFSETS_TOPIC

log = logging.getLogger(__name__)

TICK_MS = 50
LOAD_RETRY_MS = 1000
NotCoordinatorError = error_class(ErrorCode.NOT_COORDINATOR)
CREATE_TIMEOUT_S = 10.0
SYNC_AFTER_CREATE_S = 3.0


@dataclass(frozen=True, slots=True)
class CoordinatorAnswer:
    key: str
    node_id: int = -1
    host: str = ""
    port: int = -1
    error: ErrorCode = ErrorCode.NONE
    message: str = ""


def group_config(config: BrokerConfig) -> GroupConfig:
    return GroupConfig(
        initial_rebalance_delay_ms=config.group_initial_rebalance_delay_ms,
        min_session_timeout_ms=config.group_min_session_timeout_ms,
        max_session_timeout_ms=config.group_max_session_timeout_ms,
        max_size=config.group_max_size,
        num_partitions=config.offsets_topic_num_partitions,
        offsets_retention_ms=config.offsets_retention_minutes * 60_000,
        offsets_retention_check_interval_ms=config.offsets_retention_check_interval_ms,
        offset_metadata_max_bytes=config.offset_metadata_max_bytes,
    )


class GroupRuntime:
    """The group coordinator's asyncio shell; see the module docstring."""

    def __init__(self, broker_id: int, *, replicas: ReplicaRuntime, metadata: BrokerMetadata,
                 channel: ControllerChannel, config: BrokerConfig,
                 rng: random.Random | None = None) -> None:
        self.broker_id = broker_id
        self.core = GroupCoordinator(group_config(config), rng)
        self._replicas = replicas
        self._metadata = metadata
        self._channel = channel
        self._config = config
        self._log = BrokerLog(log, broker_id)
        self._waiters: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._tick_task: asyncio.Task[None] | None = None
        self._create_task: asyncio.Task[None] | None = None
        self._retry_load_at: dict[int, int] = {}
        self._stopping = False

    # -- lifecycle --

    def start(self) -> None:
        self._tick_task = asyncio.get_running_loop().create_task(
            self._tick_loop(), name=f"group-tick-{self.broker_id}")

    async def stop(self) -> None:
        self._stopping = True
        for partition in list(self.core.owned_partitions()):
            self._dispatch(self.core.unload(partition))
        tasks = [t for t in (self._tick_task, self._create_task) if t is not None]
        tasks += list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(NotCoordinatorError("the broker is shutting down"))
        self._waiters.clear()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- partition leadership --

    def on_metadata(self, image: MetadataImage, change: Any) -> None:
        """BrokerMetadata listener: load / unload `__consumer_offsets` partitions."""
        if not self._stopping:
            self._reconcile()

    def _reconcile(self) -> None:
        manager = self._replicas.manager
        topic = self._metadata.image.topic(CONSUMER_OFFSETS_TOPIC)
        wanted: dict[int, int] = {}
        if topic is not None:
            self.core.set_num_partitions(len(topic.partitions))
            for p in sorted(topic.partitions):
                part = manager.get(CONSUMER_OFFSETS_TOPIC, p)
                if part is not None and part.replica.is_leader:
                    wanted[p] = part.replica.leader_epoch
        owned = self.core.owned_partitions()
        for p, epoch in owned.items():
            if wanted.get(p) != epoch:
                self._log.info("%s-%d: no longer coordinator (epoch %d); unloading",
                               CONSUMER_OFFSETS_TOPIC, p, epoch)
                self._dispatch(self.core.unload(p))
        now = wall_ms()
        for p, epoch in wanted.items():
            if owned.get(p) != epoch and self._retry_load_at.get(p, 0) <= now:
                self._dispatch(self.core.begin_load(p, epoch))
                self._spawn(self._load_or_retry(p, epoch), f"group-load-{p}")

    async def _load_or_retry(self, partition: int, epoch: int) -> None:
        try:
            await self._load(partition, epoch)
        except asyncio.CancelledError:
            raise
        except Exception:  # e.g. a log error: unload; the tick loop retries after a pause
            self._log.exception("loading %s-%d failed; retrying in %d ms",
                                CONSUMER_OFFSETS_TOPIC, partition, LOAD_RETRY_MS)
            self._retry_load_at[partition] = wall_ms() + LOAD_RETRY_MS
            if self.core.partition_epoch(partition) == epoch:
                self._dispatch(self.core.unload(partition))

    async def _load(self, partition: int, epoch: int) -> None:
        started = wall_ms()
        part = self._replicas.manager.get(CONSUMER_OFFSETS_TOPIC, partition)
        if part is None:
            return
        offset, end = part.log.log_start_offset, part.log.log_end_offset
        records = skipped = 0
        while offset < end:
            if self.core.partition_epoch(partition) != epoch or self._stopping:
                return  # unloaded or reloaded meanwhile
            part = self._replicas.manager.get(CONSUMER_OFFSETS_TOPIC, partition)
            if part is None:
                return
            read = part.log.read(offset, self._config.offsets_load_buffer_size)
            if read.first_offset < 0:
                break
            now = wall_ms()
            for batch in iter_batches(read.records, check_crc=False):
                if batch.is_control:
                    continue
                for record in batch.records():
                    if record.offset < offset or record.offset >= end:
                        continue
                    try:
                        self.core.replay(partition, record.key, record.value, now)
                        records += 1
                    except RafkaError as exc:
                        skipped += 1
                        self._log.warning("%s-%d@%d: skipping a bad record: %s",
                                          CONSUMER_OFFSETS_TOPIC, partition, record.offset, exc)
            offset = read.next_offset
            await asyncio.sleep(0)
        if self.core.partition_epoch(partition) != epoch or not self.core.is_loading(partition):
            return
        self._dispatch(self.core.complete_load(partition, wall_ms()))
        self._log.info("%s-%d: loaded %d records (%d skipped, up to offset %d) in %d ms",
                       CONSUMER_OFFSETS_TOPIC, partition, records, skipped, end,
                       wall_ms() - started)

    # -- ticks and dispatch --

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_MS / 1000)
            try:
                self._reconcile()
                self._dispatch(self.core.tick(wall_ms()))
            except Exception:
                # A broken invariant: say so loudly; the coordinator stops ticking (STYLE §5).
                self._log.exception("group coordinator tick loop died")
                raise

    def _dispatch(self, out: Outcome) -> None:
        for request_id, result in out.responses:
            future = self._waiters.pop(request_id, None)
            if future is not None and not future.done():
                future.set_result(result)
        for append in out.appends:
            self._spawn(self._append(append), f"group-append-{append.append_id}")

    async def _append(self, append: Append) -> None:
        builder = RecordBatchBuilder(now_ms=wall_ms())
        for key, value in append.records:
            builder.append(value, key=key)
        code, message = ErrorCode.NONE, ""
        try:
            results = await self._replicas.produce(
                -1, self._config.offsets_commit_timeout_ms,
                [(CONSUMER_OFFSETS_TOPIC, append.partition, builder.build())])
            error = results[0].error
            if error is not None:
                code, message = error.code, error.message
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # reported as the append's failure
            self._log.exception("append to %s-%d failed", CONSUMER_OFFSETS_TOPIC,
                                append.partition)
            code, message = ErrorCode.UNKNOWN_SERVER_ERROR, str(exc)
        if code is not ErrorCode.NONE:
            self._log.warning("append to %s-%d failed: %s %s", CONSUMER_OFFSETS_TOPIC,
                              append.partition, code.name, message)
        self._dispatch(self.core.on_append_done(append.append_id, code, wall_ms(),
                                                message))

    async def _call(self, fn: Callable[[int, Any, int], Outcome], request: Any) -> Any:
        if self._stopping:
            raise NotCoordinatorError("the broker is shutting down")
        self._next_id += 1
        request_id = self._next_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[request_id] = future
        try:
            self._dispatch(fn(request_id, request, wall_ms()))
            return await future
        except asyncio.CancelledError:
            if not future.done() and not self._stopping:
                self.core.abandon(request_id, wall_ms())  # the client went away
            raise
        finally:
            self._waiters.pop(request_id, None)

    # -- the group RPCs --

    async def join(self, request: JoinGroup) -> JoinGroupResult:
        result: JoinGroupResult = await self._call(self.core.join, request)
        return result

    async def sync(self, request: SyncGroup) -> SyncGroupResult:
        result: SyncGroupResult = await self._call(self.core.sync, request)
        return result

    def heartbeat(self, request: Heartbeat) -> HeartbeatResult:
        return self.core.heartbeat(request, wall_ms())

    async def leave(self, request: LeaveGroup) -> LeaveGroupResult:
        result: LeaveGroupResult = await self._call(self.core.leave, request)
        return result

    async def commit(self, request: OffsetCommit) -> OffsetCommitResult:
        result: OffsetCommitResult = await self._call(self.core.commit, request)
        return result

    def fetch_offsets(self, group_id: str,
                      partitions: list[tuple[str, int]] | None) -> OffsetFetchResult:
        return self.core.fetch_offsets(group_id, partitions)

    def list_groups(self, states: set[str] | None, types: set[str] | None) -> ListGroupsResult:
        return self.core.list_groups(states, types)

    def describe(self, group_id: str) -> DescribedGroup:
        return self.core.describe(group_id)

    async def delete_group(self, group_id: str) -> DeleteGroupResult:
        result: DeleteGroupResult = await self._call(self.core.delete_group, group_id)
        return result

    # -- FindCoordinator --

    async def find_coordinator(self, keys: list[str]) -> list[CoordinatorAnswer]:
        """The coordinator of each group id (creating `__consumer_offsets` on first use)."""
        if self._metadata.image.topic(CONSUMER_OFFSETS_TOPIC) is None:
            await self._ensure_offsets_topic()
        image = self._metadata.image
        topic = image.topic(CONSUMER_OFFSETS_TOPIC)
        answers = []
        for key in keys:
            if not key:
                answers.append(CoordinatorAnswer(key, error=ErrorCode.INVALID_GROUP_ID,
                                                 message="the group id must not be empty"))
                continue
            if topic is None or not topic.partitions:
                answers.append(CoordinatorAnswer(
                    key, error=ErrorCode.COORDINATOR_NOT_AVAILABLE,
                    message=f"{CONSUMER_OFFSETS_TOPIC} is being created"))
                continue
            partition = coordinator_partition(key, len(topic.partitions))
            reg = topic.partitions.get(partition)
            broker = None if reg is None or reg.leader < 0 else image.broker(reg.leader)
            if reg is None or broker is None or broker.fenced:
                answers.append(CoordinatorAnswer(
                    key, error=ErrorCode.COORDINATOR_NOT_AVAILABLE,
                    message=f"{CONSUMER_OFFSETS_TOPIC}-{partition} has no leader"))
                continue
            answers.append(CoordinatorAnswer(key, broker.broker_id, broker.endpoint.host,
                                             broker.endpoint.port))
        return answers

    async def _ensure_offsets_topic(self) -> None:
        if self._create_task is None or self._create_task.done():
            self._create_task = asyncio.get_running_loop().create_task(
                self._create_offsets_topic(), name=f"create-offsets-{self.broker_id}")
        try:
            await asyncio.wait_for(asyncio.shield(self._create_task), CREATE_TIMEOUT_S)
        except (asyncio.TimeoutError, RafkaError) as exc:
            self._log.warning("creating %s: %s", CONSUMER_OFFSETS_TOPIC, exc)

    async def _create_offsets_topic(self) -> None:
        image = self._metadata.image
        live = sum(1 for b in image.brokers.values() if b.is_active)
        rf = max(1, min(self._config.offsets_topic_replication_factor, live))
        topic = admin_pb2.CreateTopicsRequest.CreatableTopic(
            name=CONSUMER_OFFSETS_TOPIC, num_partitions=self._config.offsets_topic_num_partitions,
            replication_factor=rf,
            configs=[common_pb2.ConfigEntry(name="cleanup.policy", value="compact"),
                     common_pb2.ConfigEntry(name="compression.type", value="producer"),
                     common_pb2.ConfigEntry(name="segment.bytes",
                                            value=str(self._config.offsets_topic_segment_bytes))])
        request = admin_pb2.CreateTopicsRequest(topics=[topic],
                                                timeout_ms=int(CREATE_TIMEOUT_S * 1000))
        response = await self._channel.call("CreateTopics", request, timeout_s=CREATE_TIMEOUT_S)
        code = response.topics[0].error_code if response.topics else response.error_code
        if code not in (ErrorCode.NONE, ErrorCode.TOPIC_ALREADY_EXISTS):
            message = response.topics[0].error_message if response.topics \
                else response.error_message
            raise RafkaError.for_code(code, f"creating {CONSUMER_OFFSETS_TOPIC}: {message}")
        if code == ErrorCode.NONE:
            self._log.info("created %s (%d partitions, RF %d)", CONSUMER_OFFSETS_TOPIC,
                           self._config.offsets_topic_num_partitions, rf)
        await self._metadata.wait_for(
            lambda img: _has_leaders(img), SYNC_AFTER_CREATE_S)


def _has_leaders(image: MetadataImage) -> bool:
    topic = image.topic(CONSUMER_OFFSETS_TOPIC)
    return topic is not None and bool(topic.partitions) and all(
        reg.leader >= 0 for reg in topic.partitions.values())


def wall_ms() -> int:
    """The coordinator's clock: wall time, as Kafka's, because commit and state timestamps
    are stored in `__consumer_offsets` and read back by other brokers (offset retention)."""
    return time.time_ns() // 1_000_000
