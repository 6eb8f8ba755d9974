"""The consumer façades: `AsyncConsumer` (asyncio) and `Consumer` (sync, on an engine thread).

Manual assignment only: consumer groups (`subscribe`, `commit`, `committed`) arrive with
issue 5 and raise `ConsumerGroupsUnavailableError` until then; `group.id` is accepted so the
configuration does not change when they land.

One core, never two: `AsyncConsumer` owns the `SubscriptionState` and `Fetcher` cores and the
`FetchEngine` on its event loop. `Consumer` runs an `AsyncConsumer` on a client-owned
`EngineThread` and calls into it (every state change happens on that loop). Records are decoded
on the loop and handed over as whole lists.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Mapping, AsyncIterator
from typing import Any, Generic, TypeVar

from clients.config import ConsumerConfig
from clients.consumer.fetcher import Fetcher
from clients.consumer.fetcher_runtime import FetchEngine, list_offsets
from clients.consumer.subscription import (
    NoOffsetForPartitionError,
    ResetStrategy,
    SubscriptionState,
)
from clients.engine_runtime import EngineThread
from clients.errors import ClientClosedError, ClientError, WakeupError
from clients.network_transport import BrokerNetwork
from clients.serde import as_deserializer
from clients.types import OffsetAndTimestamp, Record, TopicPartition

__all__ = [
    "AsyncConsumer",
    "Consumer",
    "ConsumerGroupsUnavailableError",
    "ConsumerRecords",
    "NoOffsetForPartitionError",
]

K = TypeVar("K")
V = TypeVar("V")
_Records = dict[TopicPartition, list[Record[Any, Any]]]


class ConsumerGroupsUnavailableError(ClientError, NotImplementedError):
    """Group membership and offset commits are not available yet (they arrive with issue 5)."""

    error_name = "GROUPS_UNAVAILABLE"


def _groups_unavailable(what: str) -> ConsumerGroupsUnavailableError:
    return ConsumerGroupsUnavailableError(
        f"{what} needs consumer groups, which arrive with issue 5; use assign() and seek()")


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


class AsyncConsumer(Generic[K, V]):
    """The asyncio consumer (aiokafka-shaped). State calls are plain methods; calls that may
    touch the network are coroutines.

    Args:
        config: a dict of Kafka dotted config names.
        key_deserializer / value_deserializer: see `clients.serde` (None keeps bytes).
        **kafka_config: snake_case config overrides (`bootstrap_servers="h:p"`, ...).

    Raises:
        ConfigError: an unknown key or a bad value.
    """

    def __init__(self, config: Mapping[str, Any] | None = None, /, *,
                 key_deserializer: Any = None, value_deserializer: Any = None,
                 **kafka_config: Any) -> None:
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
            request_timeout_ms=cfg.request_timeout_ms, retry_backoff_ms=cfg.retry_backoff_ms)
        self._engine = FetchEngine(cfg, self._network, self._subs, self._fetcher)
        self._engine.start()

    async def stop(self) -> None:
        """Stop fetching and close connections (idempotent)."""
        self._closed = True
        if self._engine is not None:
            await self._engine.close()
            self._engine.data_ready.set()
        if self._network is not None:
            await self._network.close()
        self._engine = None
        self._network = None

    close = stop

    async def __aenter__(self) -> AsyncConsumer[K, V]:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _started(self) -> FetchEngine:
        if self._engine is None:
            await self.start()
        assert self._engine is not None
        return self._engine

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("consumer is closed")

    # -- groups (issue 5) --

    def subscribe(self, *args: Any, **kwargs: Any) -> None:
        """Raises ConsumerGroupsUnavailableError: groups arrive with issue 5."""
        raise _groups_unavailable("subscribe()")

    def commit(self, *args: Any, **kwargs: Any) -> None:
        """Raises ConsumerGroupsUnavailableError: groups arrive with issue 5."""
        raise _groups_unavailable("commit()")

    def committed(self, *args: Any, **kwargs: Any) -> None:
        """Raises ConsumerGroupsUnavailableError: groups arrive with issue 5."""
        raise _groups_unavailable("committed()")

    # -- assignment and positions (state only) --

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Read exactly these partitions (replacing the previous assignment)."""
        self._check_open()
        self._subs.assign(_tps(partitions))
        self._fetcher.discard_unassigned()
        if self._engine is not None:
            self._engine.request_metadata()

    def unassign(self) -> None:
        self.assign([])

    def assignment(self) -> set[TopicPartition]:
        return self._subs.assignment()

    def subscription(self) -> set[str]:
        return set()

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
        self._check_open()
        engine = await self._started()
        limit = max_records or self.config.max_poll_records
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        self._subs.request_default_resets()
        engine.wake()
        while True:
            if self._wakeup:
                self._wakeup = False
                raise WakeupError("poll() interrupted by wakeup()")
            self._check_open()
            engine.data_ready.clear()
            drained = self._fetcher.drain(limit)
            if drained:
                engine.wake()  # the drained partitions may be fetched again
                return ConsumerRecords(drained)
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
        config: a dict of Kafka dotted config names.
        key_deserializer / value_deserializer: see `clients.serde` (None keeps bytes).
        **kafka_config: snake_case config overrides (`bootstrap_servers="h:p"`, ...).

    Raises:
        ConfigError: an unknown key or a bad value.
    """

    def __init__(self, config: Mapping[str, Any] | None = None, /, *,
                 key_deserializer: Any = None, value_deserializer: Any = None,
                 **kafka_config: Any) -> None:
        self._async: AsyncConsumer[K, V] = AsyncConsumer(
            config, key_deserializer=key_deserializer, value_deserializer=value_deserializer,
            **kafka_config)
        self.config = self._async.config
        self._engine = EngineThread("rafka-consumer")
        self._closed = False
        try:
            self._call(self._async.start())
        except BaseException:
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

    def subscribe(self, *args: Any, **kwargs: Any) -> None:
        """Raises ConsumerGroupsUnavailableError: groups arrive with issue 5."""
        raise _groups_unavailable("subscribe()")

    def commit(self, *args: Any, **kwargs: Any) -> None:
        """Raises ConsumerGroupsUnavailableError: groups arrive with issue 5."""
        raise _groups_unavailable("commit()")

    def committed(self, *args: Any, **kwargs: Any) -> None:
        """Raises ConsumerGroupsUnavailableError: groups arrive with issue 5."""
        raise _groups_unavailable("committed()")

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Read exactly these partitions (replacing the previous assignment)."""
        self._state(self._async.assign, list(partitions))

    def unassign(self) -> None:
        self._state(self._async.unassign)

    def assignment(self) -> set[TopicPartition]:
        return self._state(self._async.assignment)  # type: ignore[no-any-return]

    def subscription(self) -> set[str]:
        return set()

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
        if self._closed:
            raise ClientClosedError("consumer is closed")
        return self._call(  # type: ignore[no-any-return]
            self._async.poll(timeout, max_records),
            timeout + self.config.request_timeout_ms / 1000)

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

    def close(self, timeout: float = 30.0) -> None:
        """Stop fetching, close connections and the engine thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._call(self._async.stop(), timeout)
        finally:
            self._engine.close()

    def __enter__(self) -> Consumer[K, V]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
