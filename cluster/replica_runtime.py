"""`ReplicaRuntime`: the asyncio shell around `ReplicaManager` (purgatories, ticks, fetchers).

Theory of operation
-------------------
Every call into the core happens on the broker's one event loop, with no await between a
decision and the state change it describes. The runtime:
- answers Produce: acks=0/1 at once; acks=all parks the request in a `ProduceRequestJoin`
  until every partition's `ProduceCompletion` arrived (HW reached, NOT_ENOUGH_REPLICAS_AFTER_
  APPEND, REQUEST_TIMED_OUT from the replica's own deadline, NOT_LEADER_OR_FOLLOWER);
- answers Fetch: reads at once; if fewer than min_bytes are readable and max_wait_ms > 0 the
  fetch parks in a `DelayedFetchPurgatory` (consumers wake when a HW moves, followers when the
  leader appends; any partition change wakes both) and is read again when woken;
- answers DeleteRecords once the followers on live brokers report the new log start in their
  fetches (the low watermark; Kafka's DelayedDeleteRecords), or REQUEST_TIMED_OUT;
- ticks the core every TICK_MS (parked produce deadlines, ISR shrink, fetch deadlines),
  sends AlterPartition asks through the `ControllerChannel` and feeds the results back,
  applies retention every log.retention.check.interval.ms and the flush policy, and writes
  the high watermarks (replication-offset-checkpoint) off the loop every
  replica.high.watermark.checkpoint.interval.ms;
- applies metadata (`on_metadata`, a BrokerMetadata listener) and keeps one follower fetcher
  per source broker (`FetcherManager`); deletes removed partitions' directories off-loop.
`stop()` cancels and awaits every task and fails parked requests.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from cluster.broker_metrics import account_isr_change
from cluster.controller_channel_transport import ControllerChannel
from cluster.delayed import CompletedProduce, DelayedFetchPurgatory, ProduceRequestJoin
from cluster.fetcher_transport import FetcherManager
from cluster.metadata_runtime import BrokerMetadata, full_change
from cluster.replica import ACKS_ALL, AlterPartitionAsk, AlterPartitionResult, DivergingEpoch
from cluster.replica_manager import (
    FetchPartitionResult,
    FollowerEntry,
    ProducePartitionResult,
    ReplicaManager,
    tp_label,
)
from proto import broker_pb2
from proto import controller_pb2 as cpb
from proto.broker_config import BrokerConfig
from proto.errors import ErrorCode, RafkaError, RequestTimedOutError, error_class
from proto.fault_transport import FaultTable
from proto.metadata import LeaderRecoveryState
from proto.metadata_image import ImageChange, MetadataImage, TopicImage

log = logging.getLogger(__name__)

TICK_MS = 50
FLUSH_CHECK_MS = 1000
ALTER_PARTITION_TIMEOUT_S = 5.0


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class FetchPartitionSpec:
    topic: str
    partition: int
    fetch_offset: int
    partition_max_bytes: int
    current_leader_epoch: int = -1
    last_fetched_epoch: int = -1
    log_start_offset: int = -1  # a follower's own log start (DeleteRecords' low watermark)


@dataclass(frozen=True, slots=True)
class FetchSpec:
    partitions: tuple[FetchPartitionSpec, ...]
    max_wait_ms: int
    min_bytes: int
    max_bytes: int
    replica_id: int = -1
    broker_epoch: int = -1


class ReplicaRuntime:
    """The data plane's asyncio shell; see the module docstring."""

    def __init__(self, manager: ReplicaManager, *, channel: ControllerChannel,
                 metadata: BrokerMetadata, config: BrokerConfig,
                 faults: FaultTable | None = None) -> None:
        self.manager = manager
        self.broker_id = manager.broker_id
        self._channel = channel
        self._metadata = metadata
        self._config = config
        self._consumer_fetches = DelayedFetchPurgatory()
        self._follower_fetches = DelayedFetchPurgatory()
        self._fetch_waiters: dict[int, asyncio.Future[None]] = {}
        self._delete_waiters: dict[int, asyncio.Future[None]] = {}  # parked DeleteRecords
        self._produce_join = ProduceRequestJoin()
        self._produce_waiters: dict[int, asyncio.Future[CompletedProduce]] = {}
        self._next_id = 1
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._deferred = False
        self._synced = False
        self._deferred_removed: list[TopicImage] = []
        self._hw_task: asyncio.Task[None] | None = None  # replication-offset-checkpoint write
        self.fetchers = FetcherManager(self.broker_id, self, config=config,
                                       broker_epoch=lambda: metadata.broker_epoch, faults=faults)

    # -- lifecycle --

    def start(self) -> None:
        self._loop_task = asyncio.get_running_loop().create_task(
            self._tick_loop(), name=f"replica-tick-{self.broker_id}")

    async def stop(self) -> None:
        self._stopping = True
        await self.fetchers.stop()
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._hw_task is not None:
            await asyncio.gather(self._hw_task, return_exceptions=True)
        await asyncio.to_thread(self.manager.close_all)  # every task is done: no sharing
        self._process_events()
        for future in self._fetch_waiters.values():
            if not future.done():
                future.set_result(None)
        self._wake_deletes()
        for pfuture in self._produce_waiters.values():
            pfuture.cancel()
        log.info("[broker %d] replica runtime stopped", self.broker_id)

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- metadata --

    def on_metadata(self, image: MetadataImage, change: ImageChange) -> None:
        """BrokerMetadata listener: roles, configs, deletions, fetchers."""
        if self._stopping:
            return
        epoch = self._metadata.broker_epoch
        if epoch < 0 or image.last_applied_offset < epoch:
            # Replaying history (a restart): old registrations would make us leader of stale
            # epochs. Apply nothing until the image holds our own registration (Kafka brokers
            # publish metadata only once caught up); keep deletions for the catch-up sync.
            self._deferred_removed.extend(change.removed_topics)
            self._deferred = True
            return
        if self._deferred:
            removed = tuple(self._deferred_removed) + change.removed_topics
            self._deferred, self._deferred_removed = False, []
            change = full_change(image, removed)
        outcome = self.manager.apply_metadata(image, change, monotonic_ms())
        delete_dirs = outcome.delete_dirs
        if not self._synced:
            self._synced = True
            delete_dirs += self.manager.remove_strays()
        for directory in delete_dirs:
            self._spawn(asyncio.to_thread(shutil.rmtree, directory, True),
                        f"delete-{directory}")
        self._process_events()
        self._wake_deletes()  # leadership or liveness may have changed
        self.fetchers.update(self.manager.followed_leaders())

    def broker_address(self, broker_id: int) -> str | None:
        reg = self.manager.image.broker(broker_id)
        return None if reg is None else reg.endpoint.address

    # -- produce --

    async def produce(self, acks: int, timeout_ms: int,
                      entries: list[tuple[str, int, bytes]]) -> list[ProducePartitionResult]:
        """Append each (topic, partition, records); acks=all waits for the ISR."""
        now = monotonic_ms()
        bad_acks = self.manager.check_acks(acks)
        if bad_acks is not None:
            return [ProducePartitionResult(bad_acks) for _ in entries]
        results = [self.manager.produce(t, p, r, acks=acks, timeout_ms=timeout_ms, now_ms=now)
                   for t, p, r in entries]
        if acks != ACKS_ALL:
            self._process_events()
            return results
        ops = {tp_label(t, p): r.wait_op for (t, p, _), r in zip(entries, results)
               if r.wait_op is not None}
        request_id = self._new_id()
        completed = self._produce_join.watch(request_id, ops)
        if completed is None:
            future: asyncio.Future[CompletedProduce] = asyncio.get_running_loop().create_future()
            self._produce_waiters[request_id] = future
            self._process_events()
            try:
                completed = await future
            finally:
                self._produce_waiters.pop(request_id, None)
        codes = dict(completed.errors)
        out = []
        for (t, p, _), r in zip(entries, results):
            code = codes.get(tp_label(t, p), ErrorCode.NONE)
            if r.error is None and code is not ErrorCode.NONE:
                r = ProducePartitionResult(
                    error_class(code)(f"{tp_label(t, p)}: {code.name} while waiting for acks=all"),
                    r.base_offset, r.log_append_time_ms, r.log_start_offset)
            out.append(r)
        return out

    # -- fetch --

    async def fetch(self, spec: FetchSpec) -> list[FetchPartitionResult]:
        """Read now; long-poll when fewer than min_bytes are readable."""
        results, total, done = self._read(spec)
        if done or total >= spec.min_bytes or spec.max_wait_ms <= 0 or not spec.partitions:
            return results
        fetch_id = self._new_id()
        purgatory = self._follower_fetches if spec.replica_id >= 0 else self._consumer_fetches
        labels = [tp_label(p.topic, p.partition) for p in spec.partitions]
        now = monotonic_ms()
        if purgatory.watch(fetch_id, labels, min_bytes=spec.min_bytes, available_bytes=total,
                           deadline_ms=now + spec.max_wait_ms):
            return self._read(spec)[0]
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._fetch_waiters[fetch_id] = future
        # The purgatory answers at the deadline; this timer is only the safety net. (A plain
        # timer, not asyncio.wait_for: this runs for every long-polling fetch.)
        safety_net = loop.call_later(spec.max_wait_ms / 1000 + 1.0, _resolve, future)
        try:
            await future
        finally:
            safety_net.cancel()
            self._fetch_waiters.pop(fetch_id, None)
            purgatory.cancel(fetch_id)
        if self._stopping:
            return results
        return self._read(spec)[0]

    def _read(self, spec: FetchSpec) -> tuple[list[FetchPartitionResult], int, bool]:
        now = monotonic_ms()
        remaining = spec.max_bytes if spec.max_bytes > 0 else 1 << 30
        total = 0
        done = False  # an error or divergence answers at once
        results = []
        for p in spec.partitions:
            limit = min(p.partition_max_bytes, remaining) if p.partition_max_bytes > 0 \
                else remaining
            r = self.manager.fetch_partition(
                p.topic, p.partition, fetch_offset=p.fetch_offset, max_bytes=max(limit, 0),
                min_one=total == 0, current_leader_epoch=p.current_leader_epoch, now_ms=now,
                replica_id=spec.replica_id, broker_epoch=spec.broker_epoch,
                last_fetched_epoch=p.last_fetched_epoch,
                follower_log_start_offset=p.log_start_offset)
            size = len(r.records)
            total += size
            remaining -= size
            done = done or r.error is not None or r.diverging_epoch is not None
            results.append(r)
        self._send_asks(self.manager.drain_asks())
        self._process_events()
        if spec.replica_id >= 0 and self._delete_waiters:
            self._wake_deletes()  # a follower may have reported a newer log start
        return results, total, done

    # -- delete records --

    async def delete_records(self, entries: list[tuple[str, int, int]], timeout_ms: int
                             ) -> list[tuple[RafkaError | None, int]]:
        """Move each (topic, partition)'s log start to its offset (-1: the HW), then wait until
        the followers on live brokers have moved theirs too (Kafka's DelayedDeleteRecords), so
        a leader change cannot bring the deleted records back. Returns (error, low watermark)
        per entry; REQUEST_TIMED_OUT (retriable) for those still waiting after `timeout_ms`."""
        out = [self.manager.delete_records(t, p, offset) for t, p, offset in entries]
        self._process_events()  # wakes parked follower fetches: they learn the new log start
        waiting = {i: (t, p, low) for i, ((t, p, _), (error, low)) in enumerate(zip(entries, out))
                   if error is None}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout_ms, 0) / 1000
        while True:
            for i, (t, p, required) in sorted(waiting.items()):
                error, low = self.manager.low_watermark(t, p)
                if error is not None or low >= required:
                    out[i] = (error, low)
                    del waiting[i]
            remaining = deadline - loop.time()
            if not waiting or remaining <= 0 or self._stopping:
                break
            waiter_id = self._new_id()
            future: asyncio.Future[None] = loop.create_future()
            self._delete_waiters[waiter_id] = future
            try:
                await asyncio.wait_for(future, remaining)
            except asyncio.TimeoutError:
                pass
            finally:
                self._delete_waiters.pop(waiter_id, None)
        for i, (t, p, _) in waiting.items():
            out[i] = (RequestTimedOutError(
                f"{tp_label(t, p)}: followers did not reach the new log start offset within "
                f"{timeout_ms} ms"), -1)
        return out

    def _wake_deletes(self) -> None:
        for future in self._delete_waiters.values():
            if not future.done():
                future.set_result(None)

    # -- follower side (FetchSource) --

    def follower_entries(self, leader_id: int) -> list[FollowerEntry]:
        if self._stopping:
            return []
        return self.manager.follower_fetch_entries(monotonic_ms()).get(leader_id, [])

    def apply_follower_response(self, entry: FollowerEntry,
                                data: broker_pb2.FetchResponse.PartitionData) -> None:
        if self._stopping:
            return
        diverging = None
        if data.HasField("diverging_epoch") and data.diverging_epoch.epoch >= 0:
            diverging = DivergingEpoch(data.diverging_epoch.epoch,
                                       data.diverging_epoch.end_offset)
        try:
            code = ErrorCode(data.error_code)
        except ValueError:
            code = ErrorCode.UNKNOWN_SERVER_ERROR
        self.manager.on_follower_fetch_response(
            entry, code, high_watermark=data.high_watermark,
            log_start_offset=data.log_start_offset, diverging_epoch=diverging,
            records=data.records, now_ms=monotonic_ms())
        self._process_events()

    # -- ticks, AlterPartition --

    async def _tick_loop(self) -> None:
        last_retention = last_flush = last_hw_checkpoint = monotonic_ms()
        while True:
            await asyncio.sleep(TICK_MS / 1000)
            now = monotonic_ms()
            try:
                self._send_asks(self.manager.tick(now))
                for purgatory in (self._consumer_fetches, self._follower_fetches):
                    for fetch_id in purgatory.tick(now):
                        self._wake_fetch(fetch_id)
                if now - last_retention >= self._config.log_retention_check_interval_ms:
                    last_retention = now
                    self.manager.retention(now)
                if now - last_flush >= FLUSH_CHECK_MS:
                    last_flush = now
                    self.manager.flush_due(now)
                hw_interval = self._config.replica_high_watermark_checkpoint_interval_ms
                if now - last_hw_checkpoint >= hw_interval and (
                        self._hw_task is None or self._hw_task.done()):
                    last_hw_checkpoint = now
                    self._checkpoint_high_watermarks()
                self._process_events()
            except RafkaError as exc:
                log.warning("[broker %d] replica tick failed: %s", self.broker_id, exc)
            except Exception:
                # A broken invariant: say so loudly; the data plane stops ticking (STYLE §5).
                log.exception("[broker %d] replica tick loop died", self.broker_id)
                raise

    def _checkpoint_high_watermarks(self) -> None:
        """Write replication-offset-checkpoint off the loop (temp file, fsync, rename)."""
        data = self.manager.high_watermark_checkpoint()
        if data is None:
            return

        async def write() -> None:
            try:
                await asyncio.to_thread(self.manager.logs.fs.atomic_replace,
                                        self.manager.hw_checkpoint_path, data)
            except OSError as exc:
                log.warning("[broker %d] high watermark checkpoint failed: %s",
                            self.broker_id, exc)

        # Not in self._tasks: stop() lets it finish (a cancelled to_thread would keep writing
        # the same file while close_all writes the final checkpoint).
        self._hw_task = asyncio.get_running_loop().create_task(write(), name="hw-checkpoint")

    def _send_asks(self, asks: list[AlterPartitionAsk]) -> None:
        for ask in asks:
            self._spawn(self._alter_partition(ask), f"alter-{ask.topic_partition}")

    async def _alter_partition(self, ask: AlterPartitionAsk) -> None:
        part = self.manager.partitions.get(ask.topic_partition)
        if part is None:
            return
        isr_before = part.replica.isr
        request = cpb.AlterPartitionRequest(broker_id=self.broker_id,
                                            broker_epoch=self._metadata.broker_epoch)
        topic = request.topics.add(topic_id=part.topic_id, name=part.topic)
        pd = topic.partitions.add(partition_index=part.partition, leader_epoch=ask.leader_epoch,
                                  leader_recovery_state=int(ask.leader_recovery_state),
                                  partition_epoch=ask.partition_epoch)
        for m in ask.new_isr:
            pd.new_isr_with_epochs.add(broker_id=m.broker_id, broker_epoch=m.broker_epoch)
        try:
            response = await self._channel.call("AlterPartition", request,
                                                timeout_s=ALTER_PARTITION_TIMEOUT_S)
            result = _alter_partition_result(response, part.partition)
        except RafkaError as exc:
            result = AlterPartitionResult(error=exc.code)
        if self._stopping:
            return
        self.manager.on_alter_partition_result(ask, result, monotonic_ms())
        if result.error == ErrorCode.NONE:
            account_isr_change(self.broker_id, isr_before, result.isr)
        self._process_events()

    # -- events --

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _wake_fetch(self, fetch_id: int) -> None:
        future = self._fetch_waiters.get(fetch_id)
        if future is not None:
            _resolve(future)

    def _process_events(self) -> None:
        events = self.manager.drain_events()
        for label, completion in events.completions:
            done = self._produce_join.on_completion(label, completion.op_id, completion.error)
            if done is not None:
                future = self._produce_waiters.get(done.request_id)
                if future is not None and not future.done():
                    future.set_result(done)
        for label, n in events.visible_bytes:
            for fetch_id in self._consumer_fetches.on_bytes_available(label, n):
                self._wake_fetch(fetch_id)
        for label, n in events.appended_bytes:
            for fetch_id in self._follower_fetches.on_bytes_available(label, n):
                self._wake_fetch(fetch_id)
        for label in events.changed:
            for purgatory in (self._consumer_fetches, self._follower_fetches):
                for fetch_id in purgatory.on_partition_changed(label):
                    self._wake_fetch(fetch_id)


def _alter_partition_result(response: cpb.AlterPartitionResponse,
                            partition: int) -> AlterPartitionResult:
    if response.error_code != ErrorCode.NONE:
        return AlterPartitionResult(error=_code(response.error_code))
    for topic in response.topics:
        for p in topic.partitions:
            if p.partition_index == partition:
                return AlterPartitionResult(
                    error=_code(p.error_code), leader_id=p.leader_id,
                    leader_epoch=p.leader_epoch, isr=tuple(p.isr),
                    partition_epoch=p.partition_epoch,
                    leader_recovery_state=LeaderRecoveryState(p.leader_recovery_state))
    return AlterPartitionResult(error=ErrorCode.UNKNOWN_SERVER_ERROR)


def _code(value: int) -> ErrorCode:
    try:
        return ErrorCode(value)
    except ValueError:
        return ErrorCode.UNKNOWN_SERVER_ERROR
