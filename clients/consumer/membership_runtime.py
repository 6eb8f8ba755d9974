"""The asyncio shell of group membership: RPCs to the coordinator, the heartbeat task, commits.

`MembershipRuntime` drives the `GroupMembership` core on the consumer's event loop:

- `poll_step(deadline)` is called by every poll(). It hands out the rebalance-listener calls
  one at a time (the façade runs each on the user's thread, then calls again), starts a
  JoinGroup→SyncGroup round in a background task when the core asks for one (poll does not
  wait for it: with the cooperative protocol the owned partitions keep being fetched), applies
  a finished round to the consumer's `SubscriptionState`, looks up committed offsets
  (OffsetFetch) for newly assigned partitions before they are fetched, and sends auto-commits.
- Before a revocation the consumed positions are committed when enable.auto.commit is on
  (eager: before JoinGroup; cooperative: the revoked partitions, before their callback).
- A heartbeat task keeps the membership alive between polls: heartbeats every
  heartbeat.interval.ms, re-finds a lost coordinator, enforces max.poll.interval.ms (a dynamic
  member leaves the group) and refreshes metadata every metadata.max.age.ms (pattern
  subscriptions, partition-count changes).
- `commit`, `fetch_committed`, `begin_leave` / `finish_leave` are the façade's calls.

Every method runs on the consumer's loop; nothing here is thread-safe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc

from clients.client_metrics import track_rebalances
from clients.config import ConsumerConfig
from clients.consumer.membership import (
    AssignmentChange,
    GroupMembership,
    JoinedMember,
    JoinResult,
    ListenerCall,
    ListenerKind,
    MemberState,
    Next,
)
from clients.consumer.subscription import FetchState, SubscriptionState
from clients.errors import KafkaTimeoutError
from clients.types import OffsetAndMetadata, TopicPartition
from proto import broker_pb2
from proto.errors import ErrorCode, RafkaError

log = logging.getLogger(__name__)

__all__ = ["MembershipRuntime"]

_Item = ListenerCall | Callable[[], None]


def _now_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def _opt(value: str | None) -> dict[str, str]:
    return {} if value is None else {"group_instance_id": value}


class MembershipRuntime:
    """Group membership for one consumer (see the module docstring).

    Args:
        config: the consumer's resolved config (group.id set).
        network: the consumer's BrokerNetwork.
        subs: the consumer's SubscriptionState (assignment and positions).
        core: the membership core.
        apply_assignment: replaces the consumer's assignment (SubscriptionState, fetcher
            buffers, fetch metadata) with the given partitions.
        wake: wakes a waiting poll (something for it to do: a finished join, a rejoin).
    """

    def __init__(self, config: ConsumerConfig, network: Any, subs: SubscriptionState,
                 core: GroupMembership, *,
                 apply_assignment: Callable[[Sequence[TopicPartition]], None],
                 wake: Callable[[], None]) -> None:
        self.config = config
        self.network = network
        self.subs = subs
        self.core = core
        self._apply_assignment = apply_assignment
        self._wake_poll = wake
        self._queue: deque[_Item] = deque()
        self._commit_first: ListenerCall | None = None  # auto-commit before this revocation
        self._join_task: asyncio.Task[AssignmentChange | Next] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._metadata_task: asyncio.Task[None] | None = None
        self._hb_wake = asyncio.Event()
        self._coordinator_lock = asyncio.Lock()
        self._commits: set[asyncio.Task[Any]] = set()
        self._next_auto_commit_ms = _now_ms() + config.auto_commit_interval_ms
        self._next_metadata_ms = 0
        self._closed = False
        self.positions_ready = True  # committed offsets known for every new partition
        self._rebalance_metrics = track_rebalances(core, config.client_id, subs)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the heartbeat task (idempotent)."""
        if self._heartbeat_task is None and not self._closed:
            self._heartbeat_task = asyncio.get_running_loop().create_task(
                self._heartbeat_loop(), name=f"heartbeat-{self.core.group_id}")

    async def close(self) -> None:
        self._closed = True
        self._rebalance_metrics.close()
        tasks = [t for t in (self._heartbeat_task, self._join_task, self._metadata_task)
                 if t is not None]
        tasks += list(self._commits)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._heartbeat_task = self._join_task = None

    def metadata_now(self) -> None:
        """Refresh metadata before the next join (a new subscription)."""
        self._next_metadata_ms = 0
        self._hb_wake.set()

    # -- the poll-driven part ---------------------------------------------------------------

    async def poll_step(self, deadline_ms: int) -> ListenerCall | None:
        """Advance membership; returns the next listener call for the façade to run (then it
        calls again), or None when poll may go on fetching.

        Raises:
            RafkaError: a fatal group error (FENCED_INSTANCE_ID, INCONSISTENT_GROUP_PROTOCOL...).
        """
        core = self.core
        core.on_poll(_now_ms())
        while True:
            while self._queue:
                item = self._queue.popleft()
                if isinstance(item, ListenerCall):
                    if item is self._commit_first:
                        # cooperative: the partitions were fetched during the rebalance
                        self._commit_first = None
                        await self._commit_quietly(
                            {tp: om for tp, om in self.consumed_offsets().items()
                             if tp in item.partitions}, self._left(deadline_ms))
                    return item
                item()
            if core.fatal_error is not None:
                err, core.fatal_error = core.fatal_error, None
                raise err
            if not core.subscribed:
                return None
            if self._next_metadata_ms == 0:  # a new subscription: resolve it before joining
                await self._refresh_metadata(self._left(deadline_ms))
            task = self._join_task
            if task is not None:
                if not task.done():
                    return None
                self._join_task = None
                outcome = task.result()  # a fatal error raises here
                if isinstance(outcome, AssignmentChange):
                    self._on_assignment(outcome)
                continue  # Next.PREPARE: the generation was lost, prepare again
            if core.needs_join():
                if not core.join_prepared:
                    if self.config.enable_auto_commit and core.owned \
                            and core.has_valid_generation() \
                            and core.state is MemberState.STABLE:
                        await self._commit_quietly(self.consumed_offsets(),
                                                   self._left(deadline_ms))
                    call = core.prepare_join()
                    if call is not None:
                        self._queue.append(call)
                        keep = core.owned
                        self._queue.append(lambda: self._apply_assignment(keep))
                        continue
                self._start_join()
                return None
            break
        await self.refresh_committed(deadline_ms)
        self.maybe_auto_commit()
        return None

    def _start_join(self) -> None:
        task = asyncio.get_running_loop().create_task(self._join_and_sync(),
                                                       name=f"join-{self.core.group_id}")
        task.add_done_callback(lambda _t: self._wake_poll())
        self._join_task = task

    def _on_assignment(self, change: AssignmentChange) -> None:
        log.info("group %s generation %d: assigned %s (added %s, revoked %s)",
                 self.core.group_id, change.generation_id,
                 [str(tp) for tp in change.assigned], [str(tp) for tp in change.added],
                 [str(tp) for tp in change.revoked])
        if change.revoked:
            # Kafka: the revoke callback runs while the partitions are still assigned.
            call = ListenerCall(ListenerKind.REVOKED, change.revoked)
            if self.config.enable_auto_commit:
                self._commit_first = call
            self._queue.append(call)
        assigned = change.assigned
        self._queue.append(lambda: self._apply_assignment(assigned))
        self._queue.append(ListenerCall(ListenerKind.ASSIGNED, change.added))
        self.positions_ready = False
        self._next_auto_commit_ms = _now_ms() + self.config.auto_commit_interval_ms
        self._hb_wake.set()

    def _left(self, deadline_ms: int) -> int:
        return max(min(deadline_ms - _now_ms(), self.config.request_timeout_ms),
                   self.config.request_timeout_ms // 3, 1)

    # -- join / sync ------------------------------------------------------------------------

    async def _join_and_sync(self) -> AssignmentChange | Next:
        core = self.core
        backoff_s = self.config.retry_backoff_ms / 1000
        rpc_timeout_s = (core.rebalance_timeout_ms + self.config.request_timeout_ms) / 1000 + 5
        while not self._closed:
            if core.coordinator is None:
                if not await self.ensure_coordinator(_now_ms() + self.config.request_timeout_ms):
                    await asyncio.sleep(backoff_s)
                    continue
            assert core.coordinator is not None
            spec = core.join_request()
            request = broker_pb2.JoinGroupRequest(
                group_id=spec.group_id, session_timeout_ms=spec.session_timeout_ms,
                rebalance_timeout_ms=spec.rebalance_timeout_ms, member_id=spec.member_id,
                protocol_type=spec.protocol_type, reason=spec.reason,
                protocols=[broker_pb2.JoinGroupRequest.JoinGroupRequestProtocol(
                    name=n, metadata=m) for n, m in spec.protocols],
                **_opt(spec.group_instance_id))
            try:
                resp = await self.network.stub(core.coordinator).JoinGroup(
                    request, timeout=rpc_timeout_s, metadata=self.network.call_metadata)
            except (grpc.RpcError, KeyError) as exc:
                log.debug("JoinGroup to %s failed: %r", core.coordinator, exc)
                core.on_request_failed()
                await asyncio.sleep(backoff_s)
                continue
            result = JoinResult(
                error_code=resp.error_code, generation_id=resp.generation_id,
                protocol_name=resp.protocol_name if resp.HasField("protocol_name") else None,
                leader=resp.leader, member_id=resp.member_id,
                members=tuple(JoinedMember(
                    m.member_id,
                    m.group_instance_id if m.HasField("group_instance_id") else None,
                    m.metadata) for m in resp.members),
                skip_assignment=resp.skip_assignment, error_message=resp.error_message)
            step = core.on_join_response(result)
            if step is Next.PREPARE:
                return step
            if step is Next.JOIN_AFTER_BACKOFF:
                await asyncio.sleep(backoff_s)
            if step is not Next.SYNC:
                continue
            outcome = await self._sync(rpc_timeout_s)
            if isinstance(outcome, AssignmentChange) or outcome is Next.PREPARE:
                return outcome
            if outcome is Next.JOIN_AFTER_BACKOFF:
                await asyncio.sleep(backoff_s)
        return Next.JOIN

    async def _sync(self, rpc_timeout_s: float) -> AssignmentChange | Next:
        core = self.core
        counts: dict[str, int] | None = None
        if core.must_assign:
            topics = core.assignment_topics()
            try:
                await self.network.refresh_metadata(topics)
            except (RafkaError, grpc.RpcError) as exc:
                log.warning("leader of %s: metadata for %s failed: %r", core.group_id,
                            topics, exc)
            md = self.network.metadata
            counts = {t: len(md.partitions_for(t) or ()) for t in topics}
        spec = core.sync_request(counts)
        assert core.coordinator is not None
        request = broker_pb2.SyncGroupRequest(
            group_id=spec.group_id, generation_id=spec.generation_id,
            member_id=spec.member_id, protocol_type=spec.protocol_type,
            assignments=[broker_pb2.SyncGroupRequest.SyncGroupRequestAssignment(
                member_id=m, assignment=a) for m, a in spec.assignments],
            **_opt(spec.group_instance_id),
            **({} if spec.protocol_name is None else {"protocol_name": spec.protocol_name}))
        try:
            resp = await self.network.stub(core.coordinator).SyncGroup(
                request, timeout=rpc_timeout_s, metadata=self.network.call_metadata)
        except (grpc.RpcError, KeyError) as exc:
            log.debug("SyncGroup failed: %r", exc)
            core.on_request_failed()
            return Next.JOIN_AFTER_BACKOFF
        return core.on_sync_response(resp.error_code, resp.assignment, _now_ms(),
                                     resp.error_message)

    # -- coordinator ------------------------------------------------------------------------

    async def ensure_coordinator(self, deadline_ms: int) -> bool:
        """Find the group's coordinator (FindCoordinator) unless known; False on timeout."""
        async with self._coordinator_lock:
            while self.core.coordinator is None and not self._closed:
                left_ms = deadline_ms - _now_ms()
                try:
                    stub = await self.network.any_stub()
                    resp = await stub.FindCoordinator(
                        broker_pb2.FindCoordinatorRequest(
                            key_type=broker_pb2.COORDINATOR_TYPE_GROUP,
                            coordinator_keys=[self.core.group_id]),
                        timeout=max(min(left_ms, self.config.request_timeout_ms), 1) / 1000,
                        metadata=self.network.call_metadata)
                except grpc.RpcError as exc:
                    log.debug("FindCoordinator failed: %r", exc)
                    self.network.rotate()
                else:
                    found = [c for c in resp.coordinators if c.key == self.core.group_id]
                    c = found[0] if found else None
                    if c is not None and c.error_code == ErrorCode.NONE and c.node_id >= 0:
                        if c.node_id not in self.network.metadata.brokers:
                            try:
                                await self.network.refresh_metadata([])
                            except (RafkaError, grpc.RpcError):
                                pass
                        if c.node_id in self.network.metadata.brokers:
                            self.core.on_coordinator(c.node_id, _now_ms())
                            log.debug("group %s: coordinator is broker %d", self.core.group_id,
                                      c.node_id)
                            break
                    elif c is not None:
                        log.debug("FindCoordinator: %s", ErrorCode(c.error_code).name)
                if _now_ms() + self.config.retry_backoff_ms >= deadline_ms:
                    return False
                await asyncio.sleep(self.config.retry_backoff_ms / 1000)
            return self.core.coordinator is not None

    def _coordinator_stub(self) -> Any:
        assert self.core.coordinator is not None
        return self.network.stub(self.core.coordinator)

    # -- heartbeats, poll timer, metadata ---------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        backoff_s = self.config.retry_backoff_ms / 1000
        while not self._closed:
            try:
                await self._heartbeat_pass()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - membership must outlive a bug in one pass
                log.exception("group %s: heartbeat pass failed", self.core.group_id)
                await asyncio.sleep(backoff_s)

    async def _heartbeat_pass(self) -> None:
        """One round of the heartbeat task: poll timer, session, coordinator, metadata,
        heartbeat, then sleep until the next of those is due."""
        core = self.core
        backoff_s = self.config.retry_backoff_ms / 1000
        self._hb_wake.clear()
        now = _now_ms()
        expired, leave = core.check_poll_timeout(now)
        if expired:
            log.warning("group %s: %s; leaving the group", core.group_id,
                        core.rejoin_reason)
            if leave is not None:
                await self._send_leave(leave.member_id, leave.group_instance_id,
                                       leave.reason)
            self._wake_poll()
            return
        if core.session_expired(now):
            log.info("group %s: no heartbeat answer within session.timeout.ms; "
                     "finding the coordinator again", core.group_id)
            core.coordinator_dead()
        if core.state is MemberState.STABLE and core.coordinator is None:
            if not await self.ensure_coordinator(now + self.config.request_timeout_ms):
                await asyncio.sleep(backoff_s)
                return
        if core.subscribed and now >= self._next_metadata_ms \
                and self._metadata_task is None:
            # in its own task: a slow Metadata answer must not delay heartbeats
            self._metadata_task = asyncio.get_running_loop().create_task(
                self._background_metadata())
        due = core.heartbeat_due_ms()
        if due is not None and now >= due:
            await self._heartbeat(now)
            return
        wake_at = [self._next_metadata_ms if core.subscribed else None, due,
                   core.poll_deadline_ms()]
        nearest = min((w for w in wake_at if w is not None), default=now + 1000)
        try:
            await asyncio.wait_for(self._hb_wake.wait(),
                                   max(nearest - _now_ms(), 1) / 1000 + 0.001)
        except asyncio.TimeoutError:
            pass

    async def _heartbeat(self, now: int) -> None:
        core = self.core
        spec = core.heartbeat_request(now)
        try:
            resp = await self._coordinator_stub().Heartbeat(
                broker_pb2.HeartbeatRequest(
                    group_id=spec.group_id, generation_id=spec.generation_id,
                    member_id=spec.member_id, **_opt(spec.group_instance_id)),
                # bounded by the session: an unanswered heartbeat must not outlive it
                timeout=min(self.config.request_timeout_ms,
                            self.config.session_timeout_ms) / 1000,
                metadata=self.network.call_metadata)
        except (grpc.RpcError, KeyError) as exc:
            log.debug("heartbeat failed: %r", exc)
            core.on_heartbeat_failed()
            return
        before = core.needs_join() or core.fatal_error is not None
        core.on_heartbeat_response(resp.error_code, _now_ms(), spec.generation_id,
                                   resp.error_message)
        if resp.error_code:
            log.info("group %s heartbeat: %s", core.group_id,
                     ErrorCode(resp.error_code).name)
        if not before and (core.needs_join() or core.fatal_error is not None):
            self._wake_poll()

    async def _background_metadata(self) -> None:
        try:
            await self._refresh_metadata(self.config.request_timeout_ms)
            if self.core.needs_join():
                self._wake_poll()
        finally:
            self._metadata_task = None
            self._hb_wake.set()

    async def _refresh_metadata(self, timeout_ms: int) -> None:
        core = self.core
        self._next_metadata_ms = _now_ms() + self.config.metadata_max_age_ms
        topics = core.metadata_topics()
        try:
            await self.network.refresh_metadata(topics, timeout_s=max(timeout_ms, 1) / 1000)
        except (RafkaError, grpc.RpcError) as exc:
            log.debug("group metadata refresh failed: %r", exc)
            self._next_metadata_ms = _now_ms() + self.config.retry_backoff_ms
            return
        md = self.network.metadata
        names = md.topics() if topics is None else topics
        counts = {t: len(p) for t in names if (p := md.partitions_for(t))}
        core.update_metadata(counts)

    # -- commits ----------------------------------------------------------------------------

    def consumed_offsets(self) -> dict[TopicPartition, OffsetAndMetadata]:
        """The position of every assigned partition that has one (what auto-commit stores)."""
        out: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp in self.subs.assigned_partitions():
            st = self.subs.state(tp)
            if st.fetch_state is FetchState.FETCHING:
                out[tp] = OffsetAndMetadata(st.position, "", st.leader_epoch)
        return out

    def maybe_auto_commit(self) -> None:
        """Commit the consumed positions in the background once auto.commit.interval.ms
        has passed (enable.auto.commit)."""
        if not self.config.enable_auto_commit:
            return
        now = _now_ms()
        if now < self._next_auto_commit_ms:
            return
        self._next_auto_commit_ms = now + self.config.auto_commit_interval_ms
        core = self.core
        if core.subscribed and (core.state is not MemberState.STABLE or core.needs_join()):
            return
        offsets = self.consumed_offsets()
        if offsets:
            self.commit_in_background(offsets)

    def commit_in_background(
        self, offsets: Mapping[TopicPartition, OffsetAndMetadata]
    ) -> asyncio.Task[dict[TopicPartition, OffsetAndMetadata]]:
        """commit_async: one attempt chain in a task; failures are logged by auto-commit."""
        task = asyncio.get_running_loop().create_task(
            self.commit(offsets, self.config.default_api_timeout_ms))
        self._commits.add(task)
        task.add_done_callback(self._commit_done)
        return task

    def _commit_done(self, task: asyncio.Task[Any]) -> None:
        self._commits.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.info("group %s: async commit failed: %r", self.core.group_id, task.exception())

    async def _commit_quietly(self, offsets: Mapping[TopicPartition, OffsetAndMetadata],
                              timeout_ms: int) -> None:
        try:
            await self.commit(offsets, timeout_ms)
        except (RafkaError, grpc.RpcError) as exc:
            log.warning("group %s: commit before rebalance failed: %r", self.core.group_id, exc)

    async def commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata],
                     timeout_ms: int) -> dict[TopicPartition, OffsetAndMetadata]:
        """OffsetCommit, retried on coordinator errors until `timeout_ms`.

        Raises:
            CommitFailedError: the generation is no longer valid.
            KafkaTimeoutError: no coordinator answered in time.
            RafkaError: REBALANCE_IN_PROGRESS or another commit error.
        """
        offsets = dict(offsets)
        if not offsets:
            return offsets
        core = self.core
        deadline = _now_ms() + timeout_ms
        by_topic: dict[str, list[broker_pb2.OffsetCommitRequest.OffsetCommitRequestPartition]]
        by_topic = {}
        for tp, om in sorted(offsets.items()):
            part = broker_pb2.OffsetCommitRequest.OffsetCommitRequestPartition(
                partition_index=tp.partition, committed_offset=om.offset,
                committed_metadata=om.metadata)
            if om.leader_epoch is not None:
                part.committed_leader_epoch = om.leader_epoch
            by_topic.setdefault(tp.topic, []).append(part)
        topics = [broker_pb2.OffsetCommitRequest.OffsetCommitRequestTopic(name=n, partitions=p)
                  for n, p in by_topic.items()]
        last: BaseException | None = None
        while True:
            if core.coordinator is None and not await self.ensure_coordinator(deadline):
                raise KafkaTimeoutError(
                    f"commit for group {core.group_id!r}: no coordinator within "
                    f"{timeout_ms} ms (last error: {last!r})")
            generation, member, instance = core.commit_identity()
            request = broker_pb2.OffsetCommitRequest(
                group_id=core.group_id, generation_id=generation, member_id=member,
                topics=topics, **_opt(instance))
            try:
                resp = await self._coordinator_stub().OffsetCommit(
                    request, timeout=max(deadline - _now_ms(), 1) / 1000,
                    metadata=self.network.call_metadata)
            except (grpc.RpcError, KeyError) as exc:
                last = exc
                core.coordinator_dead()
            else:
                errors = [(p.error_code, p.error_message) for t in resp.topics
                          for p in t.partitions if p.error_code]
                if not errors:
                    return offsets
                last = RafkaError.for_code(*errors[0])
                core.on_commit_error(*errors[0])  # raises unless retriable
            if _now_ms() + self.config.retry_backoff_ms >= deadline:
                raise KafkaTimeoutError(
                    f"commit for group {core.group_id!r} did not succeed within "
                    f"{timeout_ms} ms (last error: {last!r})")
            await asyncio.sleep(self.config.retry_backoff_ms / 1000)

    async def fetch_committed(self, partitions: Sequence[TopicPartition], timeout_ms: int
                              ) -> dict[TopicPartition, OffsetAndMetadata | None]:
        """OffsetFetch: the group's committed offset of each partition (None: none).

        Raises:
            KafkaTimeoutError: no answer within `timeout_ms`.
            RafkaError: a non-retriable error.
        """
        tps = sorted(set(partitions))
        if not tps:
            return {}
        core = self.core
        deadline = _now_ms() + timeout_ms
        by_topic: dict[str, list[int]] = {}
        for tp in tps:
            by_topic.setdefault(tp.topic, []).append(tp.partition)
        request = broker_pb2.OffsetFetchRequest(
            groups=[broker_pb2.OffsetFetchRequest.OffsetFetchRequestGroup(
                group_id=core.group_id,
                topics=[broker_pb2.OffsetFetchRequest.OffsetFetchRequestTopics(
                    name=n, partition_indexes=p) for n, p in by_topic.items()])],
            require_stable=self.config.isolation_level == "read_committed")
        last: BaseException | None = None
        while True:
            if core.coordinator is None and not await self.ensure_coordinator(deadline):
                raise KafkaTimeoutError(
                    f"OffsetFetch for group {core.group_id!r}: no coordinator within "
                    f"{timeout_ms} ms (last error: {last!r})")
            try:
                resp = await self._coordinator_stub().OffsetFetch(
                    request, timeout=max(deadline - _now_ms(), 1) / 1000,
                    metadata=self.network.call_metadata)
            except (grpc.RpcError, KeyError) as exc:
                last = exc
                core.coordinator_dead()
            else:
                result, error = self._offsets_from(resp, tps)
                if error is None:
                    return result
                last = error
                if error.code in (ErrorCode.NOT_COORDINATOR, ErrorCode.COORDINATOR_NOT_AVAILABLE):
                    core.coordinator_dead()
                elif not error.retriable:
                    raise error
            if _now_ms() + self.config.retry_backoff_ms >= deadline:
                raise KafkaTimeoutError(
                    f"OffsetFetch for group {core.group_id!r} did not succeed within "
                    f"{timeout_ms} ms (last error: {last!r})")
            await asyncio.sleep(self.config.retry_backoff_ms / 1000)

    def _offsets_from(self, resp: Any, tps: Sequence[TopicPartition]
                      ) -> tuple[dict[TopicPartition, OffsetAndMetadata | None], RafkaError | None]:
        result: dict[TopicPartition, OffsetAndMetadata | None] = {tp: None for tp in tps}
        for g in resp.groups:
            if g.group_id != self.core.group_id:
                continue
            if g.error_code:
                return result, RafkaError.for_code(g.error_code, g.error_message or "")
            for t in g.topics:
                for p in t.partitions:
                    tp = TopicPartition(t.name, p.partition_index)
                    if p.error_code:
                        return result, RafkaError.for_code(p.error_code, p.error_message or "")
                    if tp in result and p.committed_offset >= 0:
                        result[tp] = OffsetAndMetadata(
                            p.committed_offset, p.metadata if p.HasField("metadata") else "",
                            p.committed_leader_epoch
                            if p.HasField("committed_leader_epoch")
                            and p.committed_leader_epoch >= 0 else None)
        return result, None

    async def refresh_committed(self, deadline_ms: int) -> None:
        """Position every assigned partition that has none yet at its committed offset;
        partitions without one are left to auto.offset.reset (`positions_ready`)."""
        waiting = [tp for tp in self.subs.assigned_partitions()
                   if self.subs.state(tp).fetch_state is FetchState.INITIALIZING]
        if not waiting:
            self.positions_ready = True
            return
        try:
            found = await self.fetch_committed(waiting, self._left(deadline_ms))
        except (RafkaError, grpc.RpcError) as exc:
            log.info("group %s: committed offsets not available yet: %r",
                     self.core.group_id, exc)
            self.positions_ready = False
            return
        for tp, om in found.items():
            if om is not None and self.subs.is_assigned(tp) \
                    and self.subs.state(tp).fetch_state is FetchState.INITIALIZING:
                self.subs.seek(tp, om.offset)
        self.positions_ready = True

    # -- leaving ----------------------------------------------------------------------------

    async def begin_leave(self, commit: bool, timeout_ms: int) -> ListenerCall | None:
        """Before close/unsubscribe: commit (if asked) and say which callback to run."""
        core = self.core
        if self._join_task is not None:
            self._join_task.cancel()
            await asyncio.gather(self._join_task, return_exceptions=True)
            self._join_task = None
        self._queue.clear()
        if commit:
            if not core.subscribed or (core.state is MemberState.STABLE
                                       and core.has_valid_generation()):
                try:
                    await self.commit(self.consumed_offsets(), timeout_ms)
                except (RafkaError, grpc.RpcError) as exc:
                    log.warning("group %s: commit on close failed: %r", core.group_id, exc)
        owned = tuple(core.owned) if core.subscribed else ()
        if not owned:
            return None
        kind = ListenerKind.REVOKED if core.has_valid_generation() else ListenerKind.LOST
        return ListenerCall(kind, owned)

    async def finish_leave(self, reason: str) -> None:
        """LeaveGroup (dynamic members), then forget the generation and the assignment."""
        core = self.core
        if core.subscribed:
            leave = core.leave_request(reason)
            if leave is not None:
                await self._send_leave(leave.member_id, leave.group_instance_id, reason)
            core.on_left()
            self._apply_assignment(())
        self.positions_ready = True

    async def _send_leave(self, member_id: str, instance_id: str | None, reason: str) -> None:
        try:
            resp = await self._coordinator_stub().LeaveGroup(
                broker_pb2.LeaveGroupRequest(
                    group_id=self.core.group_id,
                    members=[broker_pb2.LeaveGroupRequest.MemberIdentity(
                        member_id=member_id, reason=reason, **_opt(instance_id))]),
                # best effort, and close() must not hang on it: the session ends it anyway
                timeout=min(self.config.request_timeout_ms, 5000) / 1000,
                metadata=self.network.call_metadata)
            if resp.error_code:
                log.info("LeaveGroup: %s", ErrorCode(resp.error_code).name)
        except (grpc.RpcError, KeyError, AssertionError) as exc:
            log.info("group %s: LeaveGroup failed: %r", self.core.group_id, exc)
