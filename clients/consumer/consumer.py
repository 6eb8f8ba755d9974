"""The consumer façades: `AsyncConsumer` (asyncio) and `Consumer` (sync, on an engine thread).

Manual assignment (`assign`) or group membership (`subscribe`, classic protocol: the
`GroupMembership` core driven by `MembershipRuntime`), commits (`commit`, `commit_async`,
`committed`, enable.auto.commit) and the rebalance listener.

One core, never two: `AsyncConsumer` owns the `SubscriptionState`, `Fetcher` and
`GroupMembership` cores, the `FetchEngine` and the `MembershipRuntime` on its event loop.
`Consumer` runs an `AsyncConsumer` on a client-owned `EngineThread` and calls into it (every
state change happens on that loop). Rebalance-listener callbacks run inside poll() on the
*caller's* thread: the loop hands them out one at a time (`ListenerCall`), the façade runs each
and asks again, so a callback may call `commit()` or `position()` like any user code.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from clients.config import ConsumerConfig
from clients.consumer.assignors import assignors_for
from clients.consumer.fetcher import Fetcher
from clients.consumer.fetcher_runtime import FetchEngine, list_offsets
from clients.consumer.membership import (
    ConsumerGroupMetadata,
    GroupMembership,
    ListenerCall,
    ListenerKind,
)
from clients.consumer.membership_runtime import MembershipRuntime
from clients.consumer.subscription import (
    NoOffsetForPartitionError,
    ResetStrategy,
    SubscriptionState,
)
from clients.engine_runtime import EngineThread
from clients.errors import ClientClosedError, KafkaTimeoutError, WakeupError
from clients.network_transport import BrokerNetwork
from clients.serde import as_deserializer
from clients.types import OffsetAndMetadata, OffsetAndTimestamp, Record, TopicPartition
from proto.errors import ErrorCode, RafkaError

__all__ = [
    "AsyncConsumer",
    "Consumer",
    "ConsumerGroupMetadata",
    "ConsumerRecords",
    "NoOffsetForPartitionError",
    "RebalanceListener",
]

log = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")
_Records = dict[TopicPartition, list[Record[Any, Any]]]


class ConsumerRecords(Mapping[TopicPartition, list[Record[K, V]]]):
    """What `poll` returns: {partition: records in offset order}.

    Like Kafka's ConsumerRecords, iterating yields the *records* (partition by partition);
    `keys()`, `items()`, `values()`, `[tp]` and `len()` (number of partitions) are the mapping
    view, and `count()` is the number of records.
    """

    __slots__ = ("_by_tp",)

    def __init__(self, by_tp: Mapping[TopicPartition, list[Record[K, V]]] | None = None) -> None:
        self._by_tp: dict[TopicPartition, list[Record[K, V]]] = dict(by_tp or {})

    def __getitem__(self, tp: TopicPartition) -> list[Record[K, V]]:
        return self._by_tp[tp]

    def __len__(self) -> int:
        return len(self._by_tp)

    def __iter__(self) -> Iterator[Record[K, V]]:  # type: ignore[override]
        for records in self._by_tp.values():
            yield from records

    def __contains__(self, tp: object) -> bool:
        return tp in self._by_tp

    def keys(self) -> Any:
        return self._by_tp.keys()

    def items(self) -> Any:
        return self._by_tp.items()

    def values(self) -> Any:
        return self._by_tp.values()

    def get(self, tp: TopicPartition, default: Any = None) -> Any:
        return self._by_tp.get(tp, default)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ConsumerRecords):
            return self._by_tp == other._by_tp
        if isinstance(other, Mapping):
            return self._by_tp == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"ConsumerRecords({self.count()} records in {len(self._by_tp)} partitions)"

    def count(self) -> int:
        """The number of records."""
        return sum(len(r) for r in self._by_tp.values())

    def partitions(self) -> set[TopicPartition]:
        return set(self._by_tp)

    def records(self, tp: TopicPartition) -> list[Record[K, V]]:
        """The records of one partition ([] when none)."""
        return self._by_tp.get(tp, [])


def _tps(partitions: Iterable[Any]) -> list[TopicPartition]:
    return [TopicPartition(p[0], p[1]) for p in partitions]


class RebalanceListener:
    """Kafka's ConsumerRebalanceListener; subclass it or pass `on_assign=` / `on_revoke=` /
    `on_lost=` callables to `subscribe`. Each takes `(consumer, partitions)` (or only
    `(partitions)`, as kafka-python's listener), runs inside poll() on the caller's thread, and
    may be a coroutine function with `AsyncConsumer`.

    Order (Kafka's): before a rebalance, `on_partitions_revoked` (eager: everything; after a
    cooperative rebalance: only what moved away) while the partitions are still assigned, so
    the callback can commit; then `on_partitions_assigned` with the partitions added (called
    even when empty). `on_partitions_lost` replaces the revocation when the member was already
    removed from the group (its partitions may be someone else's now: do not commit); by
    default it calls `on_partitions_revoked`.
    """

    def on_partitions_revoked(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        pass

    def on_partitions_assigned(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        pass

    def on_partitions_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self.on_partitions_revoked(consumer, partitions)


@dataclass(slots=True)
class _Listener:
    listener: Any = None
    on_assign: Callable[..., Any] | None = None
    on_revoke: Callable[..., Any] | None = None
    on_lost: Callable[..., Any] | None = None

    def target(self, kind: ListenerKind) -> Callable[..., Any] | None:
        if kind is ListenerKind.ASSIGNED:
            return self.on_assign or getattr(self.listener, kind.value, None)
        revoke = self.on_revoke or getattr(self.listener, ListenerKind.REVOKED.value, None)
        if kind is ListenerKind.REVOKED:
            return revoke
        return self.on_lost or getattr(self.listener, kind.value, None) or revoke

    def invoke(self, consumer: Any, call: ListenerCall) -> Any:
        """Run the callback for `call`; returns what it returned (maybe an awaitable)."""
        fn = self.target(call.kind)
        if fn is None:
            return None
        partitions = list(call.partitions)
        if _positional_arity(fn) >= 2:
            return fn(consumer, partitions)
        return fn(partitions)


def _positional_arity(fn: Callable[..., Any]) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 2
    return sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


def _commit_offsets(offsets: Any) -> dict[TopicPartition, OffsetAndMetadata] | None:
    """commit()'s argument as {tp: OffsetAndMetadata}: a Record commits offset + 1."""
    if offsets is None:
        return None
    if isinstance(offsets, Record):
        return {offsets.topic_partition: OffsetAndMetadata(offsets.next_offset, "",
                                                            offsets.leader_epoch)}
    if isinstance(offsets, Mapping):
        out: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp, value in offsets.items():
            om = value if isinstance(value, OffsetAndMetadata) else OffsetAndMetadata(int(value))
            if om.offset < 0:
                raise ValueError(f"commit offset must be >= 0, got {om.offset} for {tp}")
            out[TopicPartition(tp[0], tp[1])] = om
        return out
    raise TypeError(f"commit() takes None, a Record or a mapping, not {type(offsets).__name__}")


def _split_args(args: tuple[Any, ...], config: Mapping[str, Any] | None
                ) -> tuple[Mapping[str, Any] | None, list[str]]:
    """`Consumer(*topics, config=...)`; a positional dict is the config (the old spelling)."""
    names: list[str] = []
    for arg in args:
        if isinstance(arg, str):
            names.append(arg)
        elif isinstance(arg, Mapping) and config is None:
            config = arg
        else:
            raise TypeError(f"Consumer() takes topic names and one config dict, not {arg!r}")
    return config, names


def _no_group(what: str) -> RafkaError:
    return RafkaError.for_code(
        ErrorCode.INVALID_GROUP_ID,
        f"{what} needs a group.id: set group_id=... (or use assign() and seek())")


def _now_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class AsyncConsumer(Generic[K, V]):
    """The asyncio consumer (aiokafka-shaped). State calls are plain methods; calls that may
    touch the network are coroutines.

    Args:
        *topics: topics to `subscribe` to at once (needs a group.id); a dict here is taken
            as `config`.
        config: a dict of Kafka dotted config names.
        key_deserializer / value_deserializer: see `clients.serde` (None keeps bytes).
        listener: the rebalance listener of the `*topics` subscription.
        **kafka_config: snake_case config overrides (`bootstrap_servers="h:p"`, ...).

    Raises:
        ConfigError: an unknown key or a bad value.
    """

    def __init__(self, *topics: Any, config: Mapping[str, Any] | None = None,
                 key_deserializer: Any = None, value_deserializer: Any = None,
                 listener: Any = None, **kafka_config: Any) -> None:
        config, names = _split_args(topics, config)
        self.config = ConsumerConfig.resolve(config, **kafka_config)
        self._subs = SubscriptionState(ResetStrategy(self.config.auto_offset_reset))
        self._fetcher = Fetcher(
            self.config, self._subs,
            key_deserializer=None if key_deserializer is None
            else as_deserializer(key_deserializer),
            value_deserializer=None if value_deserializer is None
            else as_deserializer(value_deserializer),
        )
        self._network: BrokerNetwork | None = None
        self._engine: FetchEngine | None = None
        self._wakeup = False
        self._closed = False
        cfg = self.config
        self._core: GroupMembership | None = None
        if cfg.group_id is not None:
            self._core = GroupMembership(
                cfg.group_id, assignors=assignors_for(cfg.partition_assignment_strategy),
                session_timeout_ms=cfg.session_timeout_ms,
                rebalance_timeout_ms=cfg.max_poll_interval_ms,
                heartbeat_interval_ms=cfg.heartbeat_interval_ms,
                group_instance_id=cfg.group_instance_id, rack_id=cfg.client_rack)
        self._group: MembershipRuntime | None = None
        self._listener = _Listener()
        self._manual = False  # assign() was used (exclusive with subscribe)
        if names:
            self.subscribe(names, listener=listener)

    # -- lifecycle --

    async def start(self) -> None:
        """Connect and start prefetching (idempotent; other coroutines start it lazily)."""
        if self._closed:
            raise ClientClosedError("consumer is closed")
        if self._engine is not None:
            return
        cfg = self.config
        self._network = BrokerNetwork(
            ",".join(cfg.bootstrap_servers), client_id=cfg.client_id or "rafka-consumer",
            request_timeout_ms=cfg.request_timeout_ms, retry_backoff_ms=cfg.retry_backoff_ms,
            reconnect_backoff_ms=cfg.reconnect_backoff_ms,
            reconnect_backoff_max_ms=cfg.reconnect_backoff_max_ms)
        self._engine = FetchEngine(cfg, self._network, self._subs, self._fetcher)
        self._engine.start()
        if self._core is not None:
            self._group = MembershipRuntime(
                cfg, self._network, self._subs, self._core,
                apply_assignment=self._apply_assignment, wake=self._wake_poll)
            if self._core.subscribed:
                self._group.start()

    async def close(self, timeout: float = 30.0, *, commit: bool | None = None) -> None:
        """Leave the group and stop (idempotent).

        With a group: commits the consumed positions (`commit=None`: iff enable.auto.commit),
        runs on_partitions_revoked, then sends LeaveGroup (not for a static member, whose
        partitions wait for it until session.timeout.ms).
        """
        if self._closed:
            return
        try:
            if self._group is not None:
                call = await self._begin_leave(commit, timeout)
                if call is not None:
                    try:
                        await self._run_listener(call)
                    except Exception:  # noqa: BLE001 - closing goes on
                        log.exception("rebalance listener failed during close()")
                await self._group.finish_leave("the consumer is closing")
        finally:
            await self._shutdown()

    async def stop(self) -> None:
        """aiokafka's name for `close()`."""
        await self.close()

    async def _shutdown(self) -> None:
        """Stop fetching and close connections (no commit, no LeaveGroup)."""
        self._closed = True
        if self._group is not None:
            await self._group.close()
            self._group = None
        if self._engine is not None:
            await self._engine.close()
            self._engine.data_ready.set()
        if self._network is not None:
            await self._network.close()
        self._engine = None
        self._network = None

    async def _begin_leave(self, commit: bool | None, timeout: float) -> ListenerCall | None:
        if self._group is None:
            return None
        do_commit = self.config.enable_auto_commit if commit is None else commit
        return await self._group.begin_leave(
            do_commit and self.config.group_id is not None, self._timeout_ms(timeout))

    async def _finish_close(self) -> None:
        try:
            if self._group is not None:
                await self._group.finish_leave("the consumer is closing")
        finally:
            await self._shutdown()

    async def __aenter__(self) -> AsyncConsumer[K, V]:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _started(self) -> FetchEngine:
        if self._engine is None:
            await self.start()
        assert self._engine is not None
        return self._engine

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("consumer is closed")

    # -- groups --

    def subscribe(self, topics: Iterable[str] | str = (), *, pattern: str | re.Pattern[str] |
                  None = None, listener: Any = None, on_assign: Callable[..., Any] | None = None,
                  on_revoke: Callable[..., Any] | None = None,
                  on_lost: Callable[..., Any] | None = None) -> None:
        """Join the consumer group and read the partitions it assigns to this member.

        Args:
            topics: topic names (a single name starting with "^" is a pattern, as in
                confluent-kafka), or
            pattern: a regex; every non-internal topic that fully matches it, re-evaluated at
                each metadata refresh (metadata.max.age.ms).
            listener: a `RebalanceListener`; or the callables `on_assign`, `on_revoke`,
                `on_lost`, each `(consumer, partitions)`.

        Raises:
            RafkaError: INVALID_GROUP_ID when the consumer has no group.id.
            ValueError: both topics and a pattern, neither, or the consumer uses assign().
        """
        self._check_open()
        core = self._require_group("subscribe()")
        names = [topics] if isinstance(topics, str) else list(topics)
        if pattern is None and len(names) == 1 and names[0].startswith("^"):
            pattern, names = names[0], []
        if self._manual and self._subs.assigned_partitions():
            raise ValueError("subscribe() and assign() are exclusive: unassign() first")
        available = self._network.metadata.topics() if self._network is not None else ()
        core.subscribe(names, pattern, available)
        self._manual = False
        self._listener = _Listener(listener, on_assign, on_revoke, on_lost)
        if self._group is not None:
            self._group.metadata_now()
            self._group.start()
        self._wake_poll()

    async def unsubscribe(self) -> None:
        """Leave the group: commit (if enable.auto.commit), run on_partitions_revoked, send
        LeaveGroup and clear the assignment."""
        self._check_open()
        if self._core is None or not self._core.subscribed:
            if self._manual:
                self.assign([])
            return
        await self._started()
        call = await self._begin_leave(None, self.config.default_api_timeout_ms / 1000)
        if call is not None:
            await self._run_listener(call)
        await self._leave_and_unsubscribe()

    async def _leave_and_unsubscribe(self) -> None:
        assert self._group is not None and self._core is not None
        await self._group.finish_leave("the consumer unsubscribed")
        self._core.unsubscribe()

    async def commit(self, offsets: Any = None, *, timeout: float | None = None
                     ) -> dict[TopicPartition, OffsetAndMetadata]:
        """Commit synchronously: `None` = every consumed position, a `Record` = its offset + 1,
        or {tp: offset | OffsetAndMetadata} (the next offset to read).

        Returns:
            what was committed.

        Raises:
            CommitFailedError: the group rebalanced and this member's generation is gone.
            RafkaError: REBALANCE_IN_PROGRESS (poll, then commit again), INVALID_GROUP_ID, ...
            KafkaTimeoutError: no coordinator answered within `timeout` seconds.
        """
        self._check_open()
        self._require_group("commit()")
        return await self._commit_now(_commit_offsets(offsets), timeout)

    def commit_async(self, offsets: Any = None
                     ) -> asyncio.Future[dict[TopicPartition, OffsetAndMetadata]]:
        """Like `commit` but returns at once; the future resolves to what was committed.
        Call it on the consumer's loop (it returns an asyncio.Future)."""
        self._check_open()
        self._require_group("commit_async()")
        return asyncio.ensure_future(self._commit_now(_commit_offsets(offsets), None))

    async def _commit_now(self, wanted: dict[TopicPartition, OffsetAndMetadata] | None,
                          timeout: float | None) -> dict[TopicPartition, OffsetAndMetadata]:
        await self._started()
        assert self._group is not None
        if wanted is None:
            wanted = self._group.consumed_offsets()
        return await self._group.commit(wanted, self._timeout_ms(timeout))

    async def committed(self, partitions: Iterable[TopicPartition] | TopicPartition,
                        timeout: float | None = None
                        ) -> dict[TopicPartition, OffsetAndMetadata | None]:
        """The group's committed offsets (None where nothing is committed).

        Raises:
            RafkaError: INVALID_GROUP_ID without a group.id.
            KafkaTimeoutError: no answer within `timeout` seconds.
        """
        self._check_open()
        self._require_group("committed()")
        await self._started()
        assert self._group is not None
        tps = [partitions] if isinstance(partitions, TopicPartition) else _tps(partitions)
        return await self._group.fetch_committed(tps, self._timeout_ms(timeout))

    async def wait_for_assignment(self, timeout: float = 30.0) -> set[TopicPartition]:
        """Drive the group (and the listener) without returning records until this member has
        a non-empty assignment whose starting positions are known.

        Raises:
            KafkaTimeoutError: still nothing assigned after `timeout` seconds.
        """
        self._check_open()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            out = await self._poll_once(max(deadline - loop.time(), 0.0), None, fetch=False)
            if isinstance(out, ListenerCall):
                await self._run_listener(out)
                continue
            if self._assignment_ready():
                return self._subs.assignment()
            if loop.time() >= deadline:
                raise KafkaTimeoutError(f"no partitions assigned within {timeout} s")

    def _assignment_ready(self) -> bool:
        return bool(self._subs.assignment()) and (
            self._group is None or self._group.positions_ready)

    def group_metadata(self) -> ConsumerGroupMetadata:
        """(group id, generation, member id, instance id) for send_offsets_to_transaction."""
        return self._require_group("group_metadata()").group_metadata()

    @property
    def rebalances(self) -> int:
        """Completed rebalances of this member (a metric)."""
        return 0 if self._core is None else self._core.rebalances

    def _require_group(self, what: str) -> GroupMembership:
        if self._core is None:
            raise _no_group(what)
        return self._core

    async def _run_listener(self, call: ListenerCall) -> None:
        result = self._listener.invoke(self, call)
        if inspect.isawaitable(result):
            await result

    def _apply_assignment(self, partitions: Iterable[TopicPartition]) -> None:
        self._subs.assign(partitions)
        self._fetcher.discard_unassigned()
        if self._engine is not None:
            self._engine.request_metadata()

    def _wake_poll(self) -> None:
        if self._engine is not None:
            self._engine.data_ready.set()

    # -- assignment and positions (state only) --

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Read exactly these partitions (replacing the previous assignment).

        Raises:
            ValueError: the consumer is subscribed (unsubscribe first).
        """
        self._check_open()
        tps = _tps(partitions)
        if self._core is not None and self._core.subscribed:
            raise ValueError("assign() and subscribe() are exclusive: unsubscribe() first")
        self._manual = bool(tps)
        self._subs.assign(tps)
        self._fetcher.discard_unassigned()
        if self._engine is not None:
            self._engine.request_metadata()

    def unassign(self) -> None:
        self.assign([])

    def assignment(self) -> set[TopicPartition]:
        return self._subs.assignment()

    def subscription(self) -> set[str]:
        """The subscribed topics (a pattern's current matches)."""
        if self._core is None or not self._core.subscribed:
            return set()
        return set(self._core.topics)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Make `offset` the next offset the consumer returns for `partition`.

        Raises:
            ValueError: negative offset, or the partition is not assigned.
        """
        self._subs.seek(TopicPartition(*partition), offset)
        self._wake()

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        """Lazily move to the log start offset (all assigned partitions when none given)."""
        tps = _tps(partitions) or self._subs.assigned_partitions()
        self._subs.request_reset(tps, ResetStrategy.EARLIEST)
        self._wake()

    def seek_to_end(self, *partitions: TopicPartition) -> None:
        """Lazily move to the high watermark (all assigned partitions when none given)."""
        tps = _tps(partitions) or self._subs.assigned_partitions()
        self._subs.request_reset(tps, ResetStrategy.LATEST)
        self._wake()

    def pause(self, *partitions: TopicPartition) -> None:
        """Stop fetching and returning these partitions; positions are kept."""
        self._subs.pause(_tps(partitions))

    def resume(self, *partitions: TopicPartition) -> None:
        self._subs.resume(_tps(partitions))
        self._wake()

    def paused(self) -> set[TopicPartition]:
        return self._subs.paused()

    def highwater(self, partition: TopicPartition) -> int | None:
        """The last high watermark seen in a fetch of `partition` (None before any)."""
        hw = self._subs.state(TopicPartition(*partition)).high_watermark
        return hw if hw >= 0 else None

    def wakeup(self) -> None:
        """Make the current (or next) blocking poll raise WakeupError. Loop thread only."""
        self._wakeup = True
        if self._engine is not None:
            self._engine.data_ready.set()

    def _wake(self) -> None:
        if self._engine is not None:
            self._engine.wake()

    # -- network calls --

    async def position(self, partition: TopicPartition, timeout: float | None = None) -> int:
        """The offset of the next record `poll` returns, resolving a pending reset first.

        Raises:
            NoOffsetForPartitionError: no position and auto.offset.reset=none.
            KafkaTimeoutError: the reset lookup did not finish within `timeout` seconds
                (default: default.api.timeout.ms).
        """
        tp = TopicPartition(*partition)
        pos = self._subs.position(tp)
        if pos is not None:
            return pos
        engine = await self._started()
        if self._group is not None:  # a group.id: start from the committed offset
            await self._group.refresh_committed(_now_ms() + self._timeout_ms(timeout))
            pos = self._subs.position(tp)
            if pos is not None:
                return pos
        self._subs.request_default_resets()
        await engine.resolve_resets(self._timeout_ms(timeout))
        pos = self._subs.position(tp)
        assert pos is not None
        return pos

    async def poll(self, timeout: float = 1.0,
                   max_records: int | None = None) -> ConsumerRecords[K, V]:
        """Records fetched since the last poll, waiting up to `timeout` seconds for some.

        Args:
            timeout: seconds to wait when nothing is buffered (0 = don't wait).
            max_records: cap on the records returned (default max.poll.records).

        Returns:
            ConsumerRecords (empty on timeout). Each partition's position moves past them.

        Raises:
            NoOffsetForPartitionError / OffsetOutOfRangeError: auto.offset.reset=none.
            WakeupError: `wakeup()` was called.
            RafkaError: a fetch error that retrying cannot fix (e.g. CORRUPT_MESSAGE).
        """
        while True:
            out = await self._poll_once(timeout, max_records)
            if isinstance(out, ListenerCall):
                await self._run_listener(out)
                continue
            return out

    async def _poll_once(self, timeout: float, max_records: int | None, *,
                         fetch: bool = True) -> ConsumerRecords[K, V] | ListenerCall:
        """One poll: records, or a listener call the façade runs before polling again."""
        self._check_open()
        engine = await self._started()
        limit = max_records or self.config.max_poll_records
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        deadline_ms = _now_ms() + int(max(timeout, 0.0) * 1000)
        engine.wake()
        while True:
            if self._wakeup:
                self._wakeup = False
                raise WakeupError("poll() interrupted by wakeup()")
            self._check_open()
            engine.data_ready.clear()
            group = self._group if self._core is not None and self._core.subscribed else None
            if group is not None:
                call = await group.poll_step(deadline_ms)
                if call is not None:
                    return call
            elif self._group is not None and self._subs.assigned_partitions():
                # assign() with a group.id: start from the committed offsets; auto-commit
                group = self._group
                await group.refresh_committed(deadline_ms)
                group.maybe_auto_commit()
            if group is None or group.positions_ready:
                self._subs.request_default_resets()
                engine.wake()
            if fetch:
                drained = self._fetcher.drain(limit)
                if drained:
                    engine.wake()  # the drained partitions may be fetched again
                    return ConsumerRecords(drained)
            elif self._assignment_ready():
                return ConsumerRecords()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return ConsumerRecords()
            try:
                await asyncio.wait_for(engine.data_ready.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    getmany = poll

    def __aiter__(self) -> AsyncIterator[Record[K, V]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Record[K, V]]:
        while not self._closed:
            try:
                batch = await self.poll(1.0)
            except (WakeupError, ClientClosedError):
                return
            for record in batch:
                yield record

    async def beginning_offsets(self, partitions: Iterable[TopicPartition],
                                timeout: float | None = None) -> dict[TopicPartition, int]:
        """The log start offset of each partition (ListOffsets -2)."""
        found = await self._list({tp: -2 for tp in _tps(partitions)}, timeout)
        return {tp: v.offset for tp, v in found.items()}

    async def end_offsets(self, partitions: Iterable[TopicPartition],
                          timeout: float | None = None) -> dict[TopicPartition, int]:
        """The high watermark of each partition (LSO with read_committed; ListOffsets -1)."""
        found = await self._list({tp: -1 for tp in _tps(partitions)}, timeout)
        return {tp: v.offset for tp, v in found.items()}

    async def offsets_for_times(
        self, timestamps: Mapping[TopicPartition, int], timeout: float | None = None,
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        """The earliest offset whose timestamp is >= the given one, or None if none.

        Raises:
            ValueError: a negative timestamp.
        """
        for tp, ts in timestamps.items():
            if ts < 0:
                raise ValueError(f"timestamp must be >= 0, got {ts} for {tp}")
        found = await self._list({TopicPartition(*tp): ts for tp, ts in timestamps.items()},
                                 timeout)
        return {
            tp: None if v.offset < 0 else OffsetAndTimestamp(v.offset, v.timestamp,
                                                             v.leader_epoch)
            for tp, v in found.items()
        }

    async def partitions_for_topic(self, topic: str) -> set[int] | None:
        """The partition ids of `topic` (None when it does not exist)."""
        await self._started()
        assert self._network is not None
        await self._network.refresh_metadata([topic])
        parts = self._network.metadata.partitions_for(topic)
        return None if parts is None else set(parts)

    async def _list(self, timestamps: dict[TopicPartition, int],
                    timeout: float | None) -> Any:
        self._check_open()
        await self._started()
        return await list_offsets(
            self._network, timestamps,
            isolation_level=1 if self.config.isolation_level == "read_committed" else 0,
            timeout_ms=self._timeout_ms(timeout),
            retry_backoff_ms=self.config.retry_backoff_ms)

    def _timeout_ms(self, timeout: float | None) -> int:
        if timeout is None:
            return self.config.default_api_timeout_ms
        return max(int(timeout * 1000), 1)


async def _apply(fn: Any, *args: Any) -> Any:
    return fn(*args)


class Consumer(Generic[K, V]):
    """The synchronous consumer: an `AsyncConsumer` run on a client-owned engine thread.

    Single owner: call it from one thread. `wakeup()` (and `close()`) may come from another.

    Args:
        *topics: topics to `subscribe` to at once (needs a group.id); a dict here is taken
            as `config`.
        config: a dict of Kafka dotted config names.
        key_deserializer / value_deserializer: see `clients.serde` (None keeps bytes).
        listener: the rebalance listener of the `*topics` subscription.
        **kafka_config: snake_case config overrides (`bootstrap_servers="h:p"`, ...).

    Raises:
        ConfigError: an unknown key or a bad value.
    """

    def __init__(self, *topics: Any, config: Mapping[str, Any] | None = None,
                 key_deserializer: Any = None, value_deserializer: Any = None,
                 listener: Any = None, **kafka_config: Any) -> None:
        config, names = _split_args(topics, config)
        self._async: AsyncConsumer[K, V] = AsyncConsumer(
            config=config, key_deserializer=key_deserializer,
            value_deserializer=value_deserializer, **kafka_config)
        self.config = self._async.config
        self._engine = EngineThread("rafka-consumer")
        self._closed = False
        try:
            self._call(self._async.start())
            if names:
                self.subscribe(names, listener=listener)
        except BaseException:
            try:
                self._call(self._async._shutdown(), 10.0)
            finally:
                self._engine.close()
            raise

    def _call(self, coro: Any, timeout: float | None = None) -> Any:
        if timeout is None:
            timeout = self.config.default_api_timeout_ms / 1000 + 5.0
        return self._engine.call(coro, timeout)

    def _state(self, fn: Any, *args: Any) -> Any:
        if self._closed:
            raise ClientClosedError("consumer is closed")
        return self._call(_apply(fn, *args))

    # -- groups (see AsyncConsumer; listener callbacks run here, on the caller's thread) --

    def subscribe(self, topics: Iterable[str] | str = (), *, pattern: Any = None,
                  listener: Any = None, on_assign: Callable[..., Any] | None = None,
                  on_revoke: Callable[..., Any] | None = None,
                  on_lost: Callable[..., Any] | None = None) -> None:
        """See `AsyncConsumer.subscribe`; callbacks receive this `Consumer`."""
        names = topics if isinstance(topics, str) else list(topics)
        self._state(lambda: self._async.subscribe(
            names, pattern=pattern, listener=listener, on_assign=on_assign,
            on_revoke=on_revoke, on_lost=on_lost))

    def unsubscribe(self) -> None:
        """See `AsyncConsumer.unsubscribe`."""
        self._check_open()
        a = self._async
        if a._core is None or not a._core.subscribed:
            self._state(a.assign, [])
            return
        call = self._call(a._begin_leave(None, self.config.default_api_timeout_ms / 1000))
        if call is not None:
            self._run_listener(call)
        self._call(a._leave_and_unsubscribe())

    def commit(self, offsets: Any = None, *, timeout: float | None = None
               ) -> dict[TopicPartition, OffsetAndMetadata]:
        """See `AsyncConsumer.commit` (synchronous)."""
        self._check_open()
        return self._call(  # type: ignore[no-any-return]
            self._async.commit(offsets, timeout=timeout), self._timeout(timeout))

    def commit_async(self, offsets: Any = None
                     ) -> Future[dict[TopicPartition, OffsetAndMetadata]]:
        """See `AsyncConsumer.commit_async`; returns a concurrent.futures.Future."""
        self._check_open()
        self._async._require_group("commit_async()")
        wanted = _commit_offsets(offsets)
        return self._engine.submit(self._async._commit_now(wanted, None))

    def committed(self, partitions: Iterable[TopicPartition] | TopicPartition,
                  timeout: float | None = None
                  ) -> dict[TopicPartition, OffsetAndMetadata | None]:
        """See `AsyncConsumer.committed`."""
        self._check_open()
        tps = partitions if isinstance(partitions, TopicPartition) else list(partitions)
        return self._call(  # type: ignore[no-any-return]
            self._async.committed(tps, timeout), self._timeout(timeout))

    def wait_for_assignment(self, timeout: float = 30.0) -> set[TopicPartition]:
        """See `AsyncConsumer.wait_for_assignment`."""
        self._check_open()
        deadline = time.monotonic() + timeout
        while True:
            left = max(deadline - time.monotonic(), 0.0)
            out = self._call(self._async._poll_once(left, None, fetch=False),
                             left + self._slack())
            if isinstance(out, ListenerCall):
                self._run_listener(out)
                continue
            if self._state(self._async._assignment_ready):
                return self.assignment()
            if time.monotonic() >= deadline:
                raise KafkaTimeoutError(f"no partitions assigned within {timeout} s")

    def group_metadata(self) -> ConsumerGroupMetadata:
        return self._state(self._async.group_metadata)  # type: ignore[no-any-return]

    @property
    def rebalances(self) -> int:
        return self._async.rebalances

    def _run_listener(self, call: ListenerCall) -> None:
        result = self._async._listener.invoke(self, call)
        if inspect.isawaitable(result):
            self._call(result)

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("consumer is closed")

    def _timeout(self, timeout: float | None) -> float:
        base = self.config.default_api_timeout_ms / 1000 if timeout is None else timeout
        return base + 5.0

    def _slack(self) -> float:
        # A poll may also commit before a rebalance and look up committed offsets.
        return 2 * self.config.request_timeout_ms / 1000 + 5.0

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Read exactly these partitions (replacing the previous assignment)."""
        self._state(self._async.assign, list(partitions))

    def unassign(self) -> None:
        self._state(self._async.unassign)

    def assignment(self) -> set[TopicPartition]:
        return self._state(self._async.assignment)  # type: ignore[no-any-return]

    def subscription(self) -> set[str]:
        """The subscribed topics (a pattern's current matches)."""
        return self._state(self._async.subscription)  # type: ignore[no-any-return]

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Make `offset` the next offset returned for `partition`.

        Raises:
            ValueError: negative offset, or the partition is not assigned.
        """
        self._state(self._async.seek, partition, offset)

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        """Lazily move to the log start (resolved on the next poll or position)."""
        self._state(self._async.seek_to_beginning, *partitions)

    def seek_to_end(self, *partitions: TopicPartition) -> None:
        """Lazily move to the high watermark (resolved on the next poll or position)."""
        self._state(self._async.seek_to_end, *partitions)

    def pause(self, *partitions: TopicPartition) -> None:
        self._state(self._async.pause, *partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self._state(self._async.resume, *partitions)

    def paused(self) -> set[TopicPartition]:
        return self._state(self._async.paused)  # type: ignore[no-any-return]

    def highwater(self, partition: TopicPartition) -> int | None:
        return self._state(self._async.highwater, partition)  # type: ignore[no-any-return]

    def position(self, partition: TopicPartition, timeout: float | None = None) -> int:
        """See `AsyncConsumer.position`."""
        return self._call(self._async.position(partition, timeout))  # type: ignore[no-any-return]

    def beginning_offsets(self, partitions: Iterable[TopicPartition],
                          timeout: float | None = None) -> dict[TopicPartition, int]:
        return self._call(  # type: ignore[no-any-return]
            self._async.beginning_offsets(list(partitions), timeout))

    def end_offsets(self, partitions: Iterable[TopicPartition],
                    timeout: float | None = None) -> dict[TopicPartition, int]:
        return self._call(  # type: ignore[no-any-return]
            self._async.end_offsets(list(partitions), timeout))

    def offsets_for_times(self, timestamps: Mapping[TopicPartition, int],
                          timeout: float | None = None
                          ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        return self._call(  # type: ignore[no-any-return]
            self._async.offsets_for_times(dict(timestamps), timeout))

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self._call(self._async.partitions_for_topic(topic))  # type: ignore[no-any-return]

    def poll(self, timeout: float = 1.0,
             max_records: int | None = None) -> ConsumerRecords[K, V]:
        """See `AsyncConsumer.poll`."""
        self._check_open()
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            left = max(deadline - time.monotonic(), 0.0)
            out = self._call(self._async._poll_once(left, max_records), left + self._slack())
            if isinstance(out, ListenerCall):
                self._run_listener(out)
                continue
            return out  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[Record[K, V]]:
        """Records forever; ends quietly on close() or wakeup()."""
        while not self._closed:
            try:
                batch = self.poll(1.0)
            except (WakeupError, ClientClosedError):
                return
            yield from batch

    def wakeup(self) -> None:
        """Make the current (or next) blocking poll raise WakeupError. Any thread."""
        self._engine.call_soon(self._async.wakeup)

    def close(self, timeout: float = 30.0, *, commit: bool | None = None) -> None:
        """Leave the group (see `AsyncConsumer.close`), stop fetching, close connections and
        the engine thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            try:
                call = self._call(self._async._begin_leave(commit, timeout), timeout + 5.0)
                if call is not None:
                    try:
                        self._run_listener(call)
                    except Exception:  # noqa: BLE001 - closing goes on
                        log.exception("rebalance listener failed during close()")
            finally:
                self._call(self._async._finish_close(), timeout + 5.0)
        finally:
            self._engine.close()

    def __enter__(self) -> Consumer[K, V]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
