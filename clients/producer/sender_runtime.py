"""The producer's engine: appends from any thread, the async Sender loop, delivery futures.

One `ProducerEngine` per producer (sync or asyncio; the sync `Producer` runs it on its
`EngineThread`). It drives the pure `RecordAccumulator` and `ClusterMetadata` cores:

- **Caller → engine hand-off.** `try_append` runs on the caller's thread: it takes the engine
  lock, appends the serialized record straight into the accumulator and returns the record's
  future. It wakes the Sender only when the append opened a new batch or filled one (one
  `call_soon_threadsafe` per batch, not per record; a pending wake-up is never doubled).
  Everything that touches the accumulator holds `lock`; network I/O never does.
- **Futures.** Each batch has one `_BatchSink`: one `threading.Condition`, the state and,
  once known, the shared outcome (base offset, append time, log start offset) of all its
  records' `DeliveryFuture`s. A `DeliveryFuture` is a `concurrent.futures.Future` holding
  only its sink, index and timestamp: state, exception and Condition are read from the sink,
  and its `RecordMetadata` is built lazily, on `result()`. Finishing a batch touches only the
  futures someone waits on or attached a callback to; the engine keeps no other reference.
- **Sender** (Kafka's `Sender.runOnce`): InitProducerId first when idempotent; then
  `ready` → metadata refresh for unknown leaders → `drain` for brokers under
  `max.in.flight.requests.per.connection` → one ProduceRequest per broker, sent as a task →
  per-partition outcome: complete / reenqueue / split / fail. It sleeps until the
  accumulator's next deadline or a wake-up (new batch, response, metadata).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures._base import FINISHED, PENDING
from typing import Any

import grpc

from clients.client_metrics import track_producer
from clients.config import ProducerConfig
from clients.errors import ClientClosedError, KafkaTimeoutError
from clients.network_transport import BrokerNetwork
from clients.producer.accumulator import (
    AccumulatorConfig,
    BatchState,
    ProducerBatch,
    RecordAccumulator,
)
from clients.producer.produce_stream_transport import ProduceStream
from clients.producer.sequences import NO_SEQUENCE
from clients.types import UNKNOWN_PARTITION, Header, RecordMetadata, TopicPartition
from proto import broker_pb2
from proto.errors import ErrorCode, RafkaError
from proto.metrics_runtime import start_export

__all__ = ["DeliveryFuture", "NEED_MEMORY", "NEED_METADATA", "ProducerEngine"]

log = logging.getLogger(__name__)

NEED_METADATA = "need_metadata"  # try_append: the topic (or partition) is not known yet
NEED_MEMORY = "need_memory"  # try_append: buffer.memory is used up

_NETWORK_RETRY_CODES = {grpc.StatusCode.DEADLINE_EXCEEDED: ErrorCode.REQUEST_TIMED_OUT}
_METADATA_RETRY_TOPIC_CODES = (
    ErrorCode.NONE,
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    ErrorCode.LEADER_NOT_AVAILABLE,
)


_monotonic = time.monotonic


def _network_error(node: int, exc: BaseException) -> RafkaError:
    """The retriable error of a request that got no answer from broker `node`."""
    if isinstance(exc, grpc.aio.AioRpcError):
        code = _NETWORK_RETRY_CODES.get(exc.code(), ErrorCode.NETWORK_EXCEPTION)
        return RafkaError.for_code(
            code, f"Produce to broker {node} failed: {exc.code().name} {exc.details()}")
    if isinstance(exc, TimeoutError):
        return RafkaError.for_code(
            ErrorCode.REQUEST_TIMED_OUT, f"Produce to broker {node}: no answer in time")
    return RafkaError.for_code(
        ErrorCode.NETWORK_EXCEPTION, f"Produce to broker {node} failed: {exc!r}")


def _now_ms() -> int:
    return int(_monotonic() * 1000)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _BatchSink:
    """The shared outcome of one batch's futures: their state lives here, so finishing a
    batch is a few assignments whatever its record count, and the engine holds no future
    (a future the caller dropped is freed at once).

    A batch split after MESSAGE_TOO_LARGE hands its records to one sink per part: `parts`
    then maps record indexes to them (`resolve`).
    """

    __slots__ = ("cond", "watched", "tp", "state", "error", "base_offset", "append_time",
                 "log_start", "parts")

    def __init__(self, tp: TopicPartition, cond: threading.Condition | None = None) -> None:
        self.cond = threading.Condition() if cond is None else cond
        self.watched: list[DeliveryFuture] = []  # futures with waiters or callbacks
        self.tp = tp
        self.state = PENDING
        self.error: BaseException | None = None
        self.base_offset = -1
        self.append_time = -1
        self.log_start = -1
        self.parts: list[tuple[int, _BatchSink]] | None = None  # (first index, sink), split

    def resolve(self, index: int) -> tuple[_BatchSink, int]:
        """The sink that holds record `index` now, and its index there (through splits)."""
        sink = self
        while sink.parts is not None:
            for first, piece in reversed(sink.parts):
                if index >= first:
                    sink, index = piece, index - first
                    break
        return sink, index

    def split(self, parts: Sequence[tuple[int, _BatchSink]]) -> None:
        """Hand the records to the sinks of the parts (which share `cond`)."""
        with self.cond:  # no waiter or callback registers half-way
            self.parts = list(parts)
            watched, self.watched = self.watched, []
            for future in watched:
                future._leaf().watched.append(future)

    def succeed(self, base_offset: int, append_time: int, log_start: int) -> None:
        self.base_offset = base_offset
        self.append_time = append_time
        self.log_start = log_start
        self._finish(None)

    def fail(self, error: BaseException) -> None:
        self._finish(error)

    def _finish(self, error: BaseException | None) -> None:
        with self.cond:
            self.error = error
            self.state = FINISHED
            self.cond.notify_all()
            # A waiter or callback registered from now on sees FINISHED and runs at once.
            watched, self.watched = self.watched, []
        for future in watched:
            if future._waiter_list:
                for waiter in future._waiter_list:
                    if error is None:
                        waiter.add_result(future)
                    else:
                        waiter.add_exception(future)
            if future._callback_list:
                future._invoke_callbacks()


class DeliveryFuture(concurrent.futures.Future):  # type: ignore[type-arg]
    """The future of one sent record: resolves to its `RecordMetadata`.

    Cheap to create (three attributes per record, nothing else holds it): its state,
    exception and Condition are its batch's (`_BatchSink`), it creates waiter and callback
    lists only when someone uses them, and builds the RecordMetadata on the first `result()`.
    It cannot be cancelled (the record may already be on the wire), nor completed from outside.
    """

    # Class-level defaults: no per-record lists until `wait()` / `add_done_callback` need one.
    _waiter_list: list[Any] | None = None
    _callback_list: list[Any] | None = None
    _result: RecordMetadata | None = None

    def __init__(self, sink: _BatchSink, index: int, timestamp_ms: int) -> None:  # noqa: D107
        # No super().__init__(): it would build a Condition and two lists per record.
        self._sink = sink
        self._index = index
        self._timestamp_ms = timestamp_ms

    def _leaf(self) -> _BatchSink:
        sink = self._sink
        return sink if sink.parts is None else sink.resolve(self._index)[0]

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]
        return self._sink.cond  # shared by the parts of a split batch too

    @property
    def _state(self) -> str:  # type: ignore[override]
        return self._leaf().state

    @property
    def _exception(self) -> BaseException | None:  # type: ignore[override]
        return self._leaf().error

    def _watch(self) -> None:
        # Under the condition (`wait()` / `add_done_callback` create the lists), once.
        sink = self._leaf()
        if sink.state is PENDING:
            sink.watched.append(self)

    @property
    def _waiters(self) -> list[Any]:  # type: ignore[override]
        waiters = self._waiter_list
        if waiters is None:
            waiters = self._waiter_list = []
            self._watch()
        return waiters

    @property
    def _done_callbacks(self) -> list[Any]:  # type: ignore[override]
        callbacks = self._callback_list
        if callbacks is None:
            callbacks = self._callback_list = []
            self._watch()
        return callbacks

    def cancel(self) -> bool:
        return False

    def result(self, timeout: float | None = None) -> RecordMetadata:
        """The record's metadata, waiting up to `timeout` seconds.

        Raises:
            TimeoutError: not delivered within `timeout` (concurrent.futures.TimeoutError).
            RafkaError: the delivery failed (the typed error).
        """
        super().result(timeout)
        metadata = self._result
        if metadata is None:
            sink, index = self._sink.resolve(self._index)
            offset = sink.base_offset + index if sink.base_offset >= 0 else -1
            timestamp = sink.append_time if sink.append_time > 0 else self._timestamp_ms
            metadata = RecordMetadata(sink.tp.topic, sink.tp.partition, offset, timestamp,
                                      sink.log_start)
            self._result = metadata
        return metadata

    # `get` is kafka-python's spelling.
    get = result


class ProducerEngine:
    """Accumulator, network and Sender of one producer. Built anywhere; `start()` runs on the
    loop that will own it.

    Args:
        config: the resolved producer configuration.
        rng: randomness for partitioning and backoff jitter (seeded in tests).
    """

    def __init__(self, config: ProducerConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self.accumulator = RecordAccumulator(
            AccumulatorConfig.from_producer_config(config), rng or random.Random()
        )
        self.lock = threading.Lock()
        self._memory = threading.Condition(self.lock)
        self._memory_waiters = 0
        self.network = BrokerNetwork(
            config.bootstrap_servers,
            client_id=config.client_id,
            request_timeout_ms=config.request_timeout_ms,
            retry_backoff_ms=config.retry_backoff_ms,
            reconnect_backoff_ms=config.reconnect_backoff_ms,
            reconnect_backoff_max_ms=config.reconnect_backoff_max_ms,
        )
        self.metadata = self.network.metadata
        self._sinks: dict[int, _BatchSink] = {}
        self._topics: set[str] = set()
        self._in_flight: dict[int, int] = {}
        # Brokers whose last Produce failed on the network (dead or cut off): while one still
        # leads a partition, metadata is asked again every retry.backoff.ms to find its
        # successor, whatever the retries' own backoffs.
        self._unreachable: set[int] = set()
        self._streams: dict[int, ProduceStream] = {}  # broker → its ProduceStream call
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = -1
        self._woken = False  # a wake-up since the Sender last looked (loop thread only)
        self._wake_waiter: asyncio.Future[None] | None = None  # the Sender's sleep
        self._wake_pending = False  # a cross-thread wake-up is scheduled
        self._progress: asyncio.Event | None = None
        self._sender: asyncio.Task[None] | None = None
        self._refresh: asyncio.Task[None] | None = None
        self._stopping = False
        self._closed = False
        self.fatal_error: BaseException | None = None
        self._tp_cache: dict[tuple[str, int], TopicPartition] = {}
        self._open_sink_id = -1  # the last appended batch's sink: most records join it
        self._open_sink = _BatchSink(TopicPartition("", -1))
        self.records_sent = 0
        self._metrics: dict[str, float] = {
            "record-error-total": 0,
            "record-retry-total": 0,
            "batch-send-total": 0,
            "batch-complete-total": 0,
            "batch-retry-total": 0,
            "batch-split-total": 0,
            "batch-error-total": 0,
            "request-total": 0,
            "metadata-refresh-total": 0,
            "batch-bytes-total": 0,
        }
        self._latency_sum_ms = 0.0
        self._client_metrics = track_producer(self, config.client_id)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind to the running loop and start the Sender. No network call is made here."""
        self._loop = asyncio.get_running_loop()
        start_export()  # inside a Ray worker: the registry reaches Ray's metrics
        self._loop_thread = threading.get_ident()
        self._progress = asyncio.Event()
        self._sender = asyncio.create_task(self._run(), name="rafka-producer-sender")

    @property
    def closed(self) -> bool:
        return self._closed

    # -- append (any thread) ----------------------------------------------------------------

    def try_append(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[Header],
        partition: int | None,
        timestamp_ms: int,
    ) -> DeliveryFuture | str:
        """Append one serialized record, or say why not yet (never blocks on I/O).

        Returns:
            The record's future, or NEED_METADATA / NEED_MEMORY: wait, then call again.

        Raises:
            RecordTooLargeError: the record can never fit a request.
            ClientClosedError: the producer is closed.
            RafkaError: a fatal error stopped the producer earlier.
        """
        if self.fatal_error is not None:
            raise self.fatal_error
        counts = self.metadata.partition_counts(topic)
        if counts is None:
            return NEED_METADATA
        num_partitions, available = counts
        acc = self.accumulator
        if partition is None:
            chosen = UNKNOWN_PARTITION if key is None else acc.partition_for(
                topic, key, None, num_partitions
            )
        elif 0 <= partition < num_partitions:
            chosen = partition
        else:
            return NEED_METADATA
        lock = self.lock
        lock.acquire()  # not `with`: half the cost on the hot path
        try:
            hit = (
                acc.append_value(topic, chosen, timestamp_ms, value, num_partitions, available)
                if key is None and not headers and timestamp_ms >= 0 and type(value) is bytes
                else None
            )
            if hit is not None:  # the hot path: joined the open batch of its partition
                batch, index, ready = hit
                if batch.batch_id == self._open_sink_id:
                    sink = self._open_sink
                else:
                    sink = self._sink_for(batch.batch_id, *batch.topic_partition)
            else:
                tp = self._tp_cache.get((topic, chosen))
                if tp is None:
                    tp = self._tp_cache[(topic, chosen)] = TopicPartition(topic, chosen)
                res = acc.append(
                    tp, timestamp_ms, key, value, headers, _now_ms(),
                    num_partitions=num_partitions, available_partitions=available,
                )
                if res.would_block:
                    return NEED_MEMORY
                sink = (
                    self._open_sink if res.batch_id == self._open_sink_id
                    else self._sink_for(res.batch_id, topic, res.partition)
                )
                index = res.relative_index
                ready = res.new_batch_created or res.batch_is_full
        finally:
            lock.release()
        if ready:
            self.wake()
        # Outside the lock: the future reads its state from the sink, even if the batch was
        # acknowledged or split meanwhile.
        return DeliveryFuture(sink, index, timestamp_ms)

    def _sink_for(self, batch_id: int, topic: str, partition: int) -> _BatchSink:
        """The futures sink of an open batch (under the lock); remembers the last one."""
        sink = self._sinks.get(batch_id)
        if sink is None:
            sink = self._sinks[batch_id] = _BatchSink(TopicPartition(topic, partition))
        self._open_sink_id = batch_id
        self._open_sink = sink
        return sink

    def wait_for_memory(self, timeout_s: float) -> None:
        """Block the calling (non-engine) thread until a batch frees memory or timeout."""
        with self._memory:
            self._memory_waiters += 1
            try:
                self._memory.wait(timeout_s)
            finally:
                self._memory_waiters -= 1

    def wake(self) -> None:
        """Wake the Sender (from any thread; at most one pending cross-thread wake-up)."""
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._set_woken()
        elif not self._wake_pending:
            self._wake_pending = True
            try:
                loop.call_soon_threadsafe(self._on_wake)
            except RuntimeError:  # loop closed
                pass

    def _on_wake(self) -> None:
        self._wake_pending = False
        self._set_woken()

    def _set_woken(self) -> None:
        self._woken = True
        waiter = self._wake_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _sleep(self, delay_s: float) -> None:
        """Until a wake-up or `delay_s`: one future and one timer, no task per wait."""
        if self._woken:
            return
        assert self._loop is not None
        waiter = self._wake_waiter = self._loop.create_future()
        timer = self._loop.call_later(delay_s, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._wake_waiter = None

    # -- metadata (engine loop) -------------------------------------------------------------

    async def wait_for_topic(self, topic: str, partition: int | None, timeout_s: float) -> None:
        """Refresh metadata until `topic` (and `partition`) is known.

        Raises:
            KafkaTimeoutError: still unknown after `timeout_s`.
            RafkaError: the topic has a non-retriable error (e.g. INVALID_TOPIC_EXCEPTION).
        """
        self._topics.add(topic)
        deadline = time.monotonic() + timeout_s
        while True:
            counts = self.metadata.partition_counts(topic)
            if counts is not None and (partition is None or partition < counts[0]):
                return
            code = self.metadata.topic_error(topic)
            if code not in _METADATA_RETRY_TOPIC_CODES:
                error = RafkaError.for_code(ErrorCode(code), f"topic {topic}")
                if not error.retriable:
                    raise error
            left = deadline - time.monotonic()
            if left <= 0:
                what = f"topic {topic}" if partition is None else f"partition {partition} of {topic}"
                raise KafkaTimeoutError(
                    f"{what} not present in metadata after {int(timeout_s * 1000)} ms"
                )
            try:
                await self.network.refresh_metadata(
                    sorted(self._topics), allow_auto_create=True, timeout_s=left
                )
                self._metrics["metadata-refresh-total"] += 1
            except KafkaTimeoutError:
                continue
            if self.metadata.partition_counts(topic) is None:
                await asyncio.sleep(min(self.config.retry_backoff_ms / 1000.0, max(left, 0)))
        # unreachable

    def _schedule_refresh(self) -> None:
        if self._refresh is not None and not self._refresh.done():
            return
        self._refresh = asyncio.create_task(self._refresh_once())

    async def _refresh_once(self) -> None:
        try:
            await self.network.refresh_metadata(sorted(self._topics), allow_auto_create=True)
            self._metrics["metadata-refresh-total"] += 1
        except KafkaTimeoutError as exc:
            log.warning("producer metadata refresh failed: %s", exc)
            await asyncio.sleep(self.config.retry_backoff_ms / 1000.0)
        finally:
            self.wake()

    # -- the Sender loop --------------------------------------------------------------------

    async def _run(self) -> None:
        acc = self.accumulator
        cfg = self.config
        max_in_flight = cfg.max_in_flight_requests_per_connection
        while not self._stopping:
            self._woken = False
            if acc.needs_producer_id:
                self._expire(_now_ms())
                await self._init_producer_id()
                continue
            now = _now_ms()
            with self.lock:
                expired = acc.expire_batches(now)
                leaders = self.metadata.leaders
                check = acc.ready(now, leaders)
                brokers = self.metadata.brokers
                nodes = [
                    n for n in check.ready_nodes
                    if n in brokers and self._in_flight.get(n, 0) < max_in_flight
                ]
                drained = (
                    acc.drain(now, nodes, cfg.max_request_size, self._drainable(leaders))
                    if nodes else {}
                )
                wake_at = acc.next_wakeup_ms(now)
                more = bool(drained) and acc.has_undrained()
                sinks = self._pop_sinks(expired)
                if expired:
                    self._memory.notify_all()
            for batch, sink in sinks:
                self._metrics["batch-error-total"] += 1
                self._metrics["record-error-total"] += batch.record_count
                sink.fail(batch.error or KafkaTimeoutError("batch expired"))
            if expired:
                self._signal_progress()
            watching = self._watch_unreachable(leaders)
            if (
                check.unknown_leader_topics
                or any(n not in brokers for n in check.ready_nodes)
                or (self._topics and self.metadata.is_stale(now, cfg.metadata_max_age_ms))
                or (watching and now - self.metadata.last_refresh_ms >= cfg.retry_backoff_ms)
            ):
                self._schedule_refresh()
            for node, batches in drained.items():
                self._send(node, batches, now)
            if more:
                # Batches are left (another request's worth, or a broker at its in-flight
                # limit): let the requests go out, then look again.
                await asyncio.sleep(0)
                continue
            delays = [d for d in (check.next_ready_check_delay_ms,) if d is not None]
            if wake_at is not None:
                delays.append(wake_at - now)
            if watching:
                delays.append(cfg.retry_backoff_ms)
            delay = min(delays) if delays else 1000
            if delay <= 0:
                delay = 50  # sendable but blocked (in-flight limit, muted): a response wakes us
            await self._sleep(min(delay, 1000) / 1000.0)

    def _watch_unreachable(self, leaders: Mapping[TopicPartition, int | None]) -> bool:
        """Whether an unreachable broker still leads a partition this producer has unfinished
        batches for (forgetting brokers that lead none of them any more)."""
        if not self._unreachable:
            return False
        waiting = {leaders.get(tp) for tp in self.accumulator.incomplete_partitions()}
        self._unreachable &= waiting
        return bool(self._unreachable)

    def _drainable(
        self, leaders: Mapping[TopicPartition, int | None]
    ) -> Mapping[TopicPartition, int | None]:
        """The leaders map for `drain`, hiding partitions whose first batch under the current
        producer id/epoch is still unacknowledged (under the lock).

        gRPC calls on one channel may be served concurrently, so two requests in flight can
        reach the broker out of order. A broker without state for a producer accepts any
        first sequence, so a second batch that overtook the first would be taken as the start
        and the first refused (OUT_OF_ORDER_SEQUENCE_NUMBER, not retriable). Later overtakes
        are safe: the broker refuses them and they are retried in order.
        """
        if not self.config.enable_idempotence:
            return leaders
        acc = self.accumulator
        sequences = acc.sequences
        hidden = []
        for tp in leaders:
            if sequences.last_acked_sequence(tp) != NO_SEQUENCE:
                continue
            ids = sequences.in_flight_batch_ids(tp)
            if ids:
                first = acc.batch(ids[0])
                if first is not None and first.state is BatchState.IN_FLIGHT:
                    hidden.append(tp)
        if not hidden:
            return leaders
        view = dict(leaders)
        for tp in hidden:
            view[tp] = None
        return view

    def _expire(self, now: int) -> None:
        with self.lock:
            expired = self.accumulator.expire_batches(now)
            sinks = self._pop_sinks(expired)
            if expired:
                self._memory.notify_all()
        for batch, sink in sinks:
            sink.fail(batch.error or KafkaTimeoutError("batch expired"))
        if expired:
            self._signal_progress()

    def _pop_sinks(self, batches: Sequence[ProducerBatch]) -> list[tuple[ProducerBatch, _BatchSink]]:
        out: list[tuple[ProducerBatch, _BatchSink]] = []
        for batch in batches:
            sink = self._sinks.pop(batch.batch_id, None)
            if sink is not None:
                out.append((batch, sink))
        return out

    def _signal_progress(self) -> None:
        if self._progress is not None:
            self._progress.set()
            self._progress = asyncio.Event()

    async def _init_producer_id(self) -> None:
        """InitProducerId via any broker (a bump after a sequence hole: KIP-360)."""
        acc = self.accumulator
        with self.lock:
            bump = acc.has_producer_id and acc.epoch_bump_required
            ids = acc.sequences.producer_id_and_epoch
        request = broker_pb2.InitProducerIdRequest(
            transaction_timeout_ms=self.config.transaction_timeout_ms
        )
        if bump:
            request.producer_id = ids.producer_id
            request.producer_epoch = ids.epoch
        backoff_s = self.config.retry_backoff_ms / 1000.0
        try:
            stub = await self.network.any_stub()
            response = await stub.InitProducerId(
                request, timeout=self.network.timeout_s, metadata=self.network.call_metadata
            )
        except grpc.aio.AioRpcError as exc:
            log.debug("InitProducerId failed: %s", exc.code())
            self.network.rotate()
            await asyncio.sleep(backoff_s)
            return
        if response.error_code != ErrorCode.NONE:
            error = RafkaError.for_code(ErrorCode(response.error_code), response.error_message)
            if error.retriable:
                self.network.rotate()
                await asyncio.sleep(backoff_s)
                return
            log.error("producer fatal error in InitProducerId: %r", error)
            self.fatal_error = error
            self._abort_all(error)
            self._stopping = True
            return
        with self.lock:
            acc.set_producer_id_and_epoch(response.producer_id, response.producer_epoch)
        log.debug("producer id %d epoch %d", response.producer_id, response.producer_epoch)

    # -- produce ----------------------------------------------------------------------------

    def _send(self, node: int, batches: list[ProducerBatch], now: int) -> None:
        by_topic: dict[str, list[broker_pb2.ProduceRequest.PartitionProduceData]] = {}
        for batch in batches:
            if batch.attempts == 0 and not batch.is_split_batch:
                self.records_sent += batch.record_count  # Kafka counts them in the Sender
            tp = batch.topic_partition
            by_topic.setdefault(tp.topic, []).append(
                broker_pb2.ProduceRequest.PartitionProduceData(
                    partition_index=tp.partition, records=batch.data
                )
            )
        request = broker_pb2.ProduceRequest(
            acks=self.config.acks,
            timeout_ms=self.config.request_timeout_ms,
            topics=[
                broker_pb2.ProduceRequest.TopicProduceData(name=name, partitions=parts)
                for name, parts in by_topic.items()
            ],
        )
        self._metrics["batch-send-total"] += len(batches)
        self._metrics["batch-bytes-total"] += sum(len(b.data or b"") for b in batches)
        self._metrics["request-total"] += 1
        stub = self.network.stub(node)
        if self.config.acks == 0:
            task = asyncio.create_task(self._fire_and_forget(stub, request))
            self._track(task)
            with self.lock:
                done = [b for b in batches if self.accumulator.complete(b)]
                sinks = self._pop_sinks(done)
                self._memory.notify_all()
            for _, sink in sinks:
                sink.succeed(-1, -1, -1)
            self._metrics["batch-complete-total"] += len(sinks)
            self._signal_progress()
            return
        self._in_flight[node] = self._in_flight.get(node, 0) + 1
        self._track(asyncio.create_task(self._produce(node, stub, request, batches)))

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _stream(self, node: int, stub: Any) -> ProduceStream:
        """The open ProduceStream to a broker; a new one if the last broke or the broker
        moved (a new stub)."""
        stream = self._streams.get(node)
        if stream is None or stream.broken or stream.stub is not stub:
            if stream is not None:
                stream.close()
            stream = self._streams[node] = ProduceStream(stub, self.network.call_metadata)
        return stream

    async def _fire_and_forget(self, stub: Any, request: broker_pb2.ProduceRequest) -> None:
        try:
            await stub.Produce(
                request, timeout=self.network.timeout_s, metadata=self.network.call_metadata
            )
        except grpc.aio.AioRpcError as exc:
            log.debug("acks=0 produce failed: %s", exc.code())
            self.metadata.request_update()

    async def _produce(
        self, node: int, stub: Any, request: broker_pb2.ProduceRequest,
        batches: list[ProducerBatch],
    ) -> None:
        started = time.monotonic()
        results: dict[TopicPartition, broker_pb2.ProduceResponse.PartitionProduceResponse] = {}
        network_error: RafkaError | None = None
        try:
            response = await self._stream(node, stub).produce(
                request, self.network.timeout_s + 1.0)
            for topic in response.topics:
                for part in topic.partitions:
                    results[TopicPartition(topic.name, part.partition_index)] = part
        except Exception as exc:  # noqa: BLE001 - every way a request can fail on the wire
            network_error = _network_error(node, exc)
            self.metadata.request_update()
            self._unreachable.add(node)
        else:
            self._unreachable.discard(node)
        finally:
            self._in_flight[node] -= 1
        self._latency_sum_ms += (time.monotonic() - started) * 1000.0
        self._handle_response(node, batches, results, network_error)
        self._signal_progress()
        self.wake()

    def _handle_response(
        self,
        node: int,
        batches: list[ProducerBatch],
        results: dict[TopicPartition, broker_pb2.ProduceResponse.PartitionProduceResponse],
        network_error: RafkaError | None,
    ) -> None:
        acc = self.accumulator
        now = _now_ms()
        succeeded: list[tuple[_BatchSink, int, int, int]] = []
        failed: list[tuple[_BatchSink, BaseException]] = []
        with self.lock:
            for batch in batches:
                tp = batch.topic_partition
                part = results.get(tp)
                if network_error is None and part is None:
                    error: RafkaError | None = RafkaError.for_code(
                        ErrorCode.NETWORK_EXCEPTION, f"no result for {tp} from broker {node}"
                    )
                elif network_error is not None:
                    error = network_error
                elif part is not None and part.error_code in (
                    ErrorCode.NONE, ErrorCode.DUPLICATE_SEQUENCE_NUMBER
                ):
                    error = None
                else:
                    assert part is not None
                    error = RafkaError.for_code(
                        ErrorCode(part.error_code),
                        part.error_message or f"{ErrorCode(part.error_code).name} for {tp} "
                        f"from broker {node}",
                    )
                if error is None:
                    assert part is not None
                    if acc.complete(batch):
                        sink = self._sinks.pop(batch.batch_id, None)
                        if sink is not None:
                            succeeded.append((sink, part.base_offset, part.log_append_time_ms,
                                              part.log_start_offset))
                    continue
                outcome = self._on_batch_error(batch, error, now)
                if outcome is not None:
                    sink = self._sinks.pop(batch.batch_id, None)
                    if sink is not None:
                        failed.append((sink, outcome))
                        self._metrics["record-error-total"] += batch.record_count
            self._memory.notify_all()
        for sink, base, append_time, log_start in succeeded:
            sink.succeed(base, append_time, log_start)
        for sink, exc in failed:
            sink.fail(exc)
        self._metrics["batch-complete-total"] += len(succeeded)
        self._metrics["batch-error-total"] += len(failed)

    def _on_batch_error(
        self, batch: ProducerBatch, error: RafkaError, now: int
    ) -> BaseException | None:
        """Retry, split or fail one batch (under the lock). Returns the error to deliver when
        the batch failed for good, else None."""
        acc = self.accumulator
        tp = batch.topic_partition
        code = error.code
        if code == ErrorCode.MESSAGE_TOO_LARGE and batch.record_count > 1:
            parts = acc.split(batch, now)
            self._metrics["batch-split-total"] += 1
            sink = self._sinks.pop(batch.batch_id, None)
            if sink is not None:
                pieces = []
                for part in parts:
                    piece = self._sinks[part.batch.batch_id] = _BatchSink(tp, sink.cond)
                    pieces.append((part.first_index, piece))
                sink.split(pieces)
            return None
        retriable = error.retriable
        oldest = batch.has_sequence and (
            batch.base_sequence == acc.sequences.first_in_flight_sequence(tp)
        )
        # The log lacks this batch, so also every later one of its partition (they may be
        # renumbered under the new epoch): the broker refused it as out of order (checked after
        # duplicates), or refused its only attempt for good.
        sequence_gap = oldest and (
            code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
            or (not retriable and batch.attempts == 0)
        )
        if code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER and batch.has_sequence:
            # An earlier batch of this partition is unresolved or was retried: this one only
            # overtook it; retry in order (Kafka's canRetry for idempotent producers).
            retriable = not oldest
        if (
            retriable
            and not batch.has_reached_delivery_timeout(now)
            and batch.attempts < self.config.retries
            and not self._stopping
        ):
            if error.invalid_metadata:
                self.metadata.request_update()
            if acc.reenqueue(batch, now):
                self._metrics["batch-retry-total"] += 1
                self._metrics["record-retry-total"] += batch.record_count
            log.debug("retrying %s (attempt %d): %s", tp, batch.attempts, error)
            return None
        if batch.has_reached_delivery_timeout(now) and retriable:
            error = KafkaTimeoutError(
                f"Expiring {batch.record_count} record(s) for {tp}: delivery.timeout.ms "
                f"passed; last error {error}", pending=batch.record_count,
            )
        if acc.fail(batch, error, sequence_gap=sequence_gap):
            return error
        return None

    # -- flush / close ----------------------------------------------------------------------

    def _pending_records(self, batch_ids: Sequence[int]) -> int:
        total = 0
        for batch_id in batch_ids:
            batch = self.accumulator.batch(batch_id)
            if batch is not None:
                total += batch.record_count
        return total

    async def _wait_batches(self, batch_ids: Sequence[int] | None, timeout_s: float) -> int:
        """Wait until the given batches (None: all) finished; returns records still pending
        (0 when done)."""
        deadline = time.monotonic() + timeout_s
        acc = self.accumulator
        # Batches finish about in id order: drop finished ones from the front and look no
        # further while the oldest is unfinished (O(1) per wake-up, not O(batches)).
        remaining = None if batch_ids is None else deque(batch_ids)
        while True:
            with self.lock:
                if remaining is None:
                    done = not acc.has_incomplete()
                else:
                    while remaining and acc.batch(remaining[0]) is None:
                        remaining.popleft()
                    done = not remaining
            if done:
                return 0
            left = deadline - time.monotonic()
            if left <= 0:
                with self.lock:
                    ids = acc.incomplete_batch_ids() if remaining is None else [
                        b for b in remaining if acc.batch(b) is not None
                    ]
                    pending = self._pending_records(ids)
                return max(pending, 1) if ids else 0
            assert self._progress is not None
            try:
                await asyncio.wait_for(self._progress.wait(), min(left, 0.5))
            except asyncio.TimeoutError:
                pass

    async def flush(self, timeout_s: float) -> None:
        """Send everything queued now and wait for every batch unfinished at the call.

        Raises:
            KafkaTimeoutError: not all done within `timeout_s` (`pending` = records left).
        """
        with self.lock:
            batch_ids = self.accumulator.begin_flush()
        self.wake()
        try:
            pending = await self._wait_batches(batch_ids, timeout_s)
        finally:
            with self.lock:
                self.accumulator.end_flush()
        if pending:
            raise KafkaTimeoutError(
                f"flush timed out after {timeout_s} s with {pending} record(s) pending",
                pending=pending,
            )

    def _abort_all(self, error: BaseException) -> None:
        with self.lock:
            aborted = self.accumulator.abort_all(error)
            sinks = self._pop_sinks(aborted)
            self._memory.notify_all()
        for _, sink in sinks:
            sink.fail(error)
        self._signal_progress()

    async def close(self, timeout_s: float) -> None:
        """Deliver what is queued (up to `timeout_s`), then stop; undelivered records fail
        with ClientClosedError. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with self.lock:
            self.accumulator.close()
        self.wake()
        if timeout_s > 0:
            await self._wait_batches(None, timeout_s)
        self._stopping = True
        self._abort_all(ClientClosedError("producer closed before the record was delivered"))
        self.wake()
        tasks = [t for t in (self._sender, self._refresh, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for stream in self._streams.values():
            stream.close()
        self._streams.clear()
        await self.network.close()
        self._client_metrics.close()

    # -- queries ----------------------------------------------------------------------------

    def metrics(self) -> dict[str, float]:
        """A few counters (Kafka's producer-metrics names)."""
        out = dict(self._metrics)
        out["record-send-total"] = float(self.records_sent)
        requests = out["request-total"]
        out["request-latency-avg"] = self._latency_sum_ms / requests if requests else 0.0
        out["buffer-available-bytes"] = float(self.accumulator.buffer_available())
        out["requests-in-flight"] = float(sum(self._in_flight.values()))
        return out
