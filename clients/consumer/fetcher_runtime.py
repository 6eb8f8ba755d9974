"""The consumer's asyncio engine: prefetching Fetch RPCs, offset resets and ListOffsets.

`FetchEngine` drives the `Fetcher` core on one event loop: it keeps one Fetch in flight per
leader broker (covering all that broker's fetchable partitions, long-polling with
fetch.min.bytes / fetch.max.wait.ms), so records are buffered before `poll` asks for them. The
Fetches to a broker travel over one FetchStream call (a message each, not a call each).
Partitions with buffered data are not fetched again until drained (the bound on prefetch).
Lazy resets (seek_to_beginning/end, auto.offset.reset, OFFSET_OUT_OF_RANGE) are answered by
ListOffsets. A leadership error or a failed RPC triggers a metadata refresh, rate-limited by
retry.backoff.ms, before those partitions are fetched again.

`list_offsets` is shared with the admin client: one ListOffsets RPC per leader, retriable
errors retried after a metadata refresh until the deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import grpc

from clients.client_metrics import track_consumer_lag
from clients.config import ConsumerConfig
from clients.consumer.fetcher import (
    FetchedPartition,
    Fetcher,
    FetchRequestSpec,
    ListedOffset,
)
from clients.consumer.subscription import SubscriptionState
from clients.errors import KafkaTimeoutError
from clients.types import TopicPartition
from proto import broker_pb2
from proto.errors import ErrorCode, RafkaError, error_class
from proto.metrics_runtime import start_export
from proto.stream_transport import OrderedStream, StreamEndedError

log = logging.getLogger(__name__)

__all__ = ["FetchEngine", "list_offsets"]


def _now_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def fetch_request_pb(spec: FetchRequestSpec) -> broker_pb2.FetchRequest:
    """The protobuf form of a planned fetch (topics in first-seen order)."""
    topics: dict[str, list[broker_pb2.FetchRequest.FetchPartition]] = {}
    for p in spec.partitions:
        part = broker_pb2.FetchRequest.FetchPartition(
            partition_index=p.tp.partition,
            fetch_offset=p.fetch_offset,
            partition_max_bytes=p.partition_max_bytes,
        )
        if p.current_leader_epoch >= 0:
            part.current_leader_epoch = p.current_leader_epoch
        topics.setdefault(p.tp.topic, []).append(part)
    return broker_pb2.FetchRequest(
        max_wait_ms=spec.max_wait_ms,
        min_bytes=spec.min_bytes,
        max_bytes=spec.max_bytes,
        isolation_level=spec.isolation_level,  # type: ignore[arg-type]
        topics=[broker_pb2.FetchRequest.FetchTopic(name=n, partitions=ps)
                for n, ps in topics.items()],
    )


def fetched_partitions(resp: broker_pb2.FetchResponse) -> list[FetchedPartition]:
    out = []
    for t in resp.topics:
        name = t.name
        for p in t.partitions:
            out.append(FetchedPartition(
                tp=TopicPartition(name, p.partition_index),
                error_code=p.error_code,
                error_message=p.error_message,
                high_watermark=p.high_watermark,
                last_stable_offset=p.last_stable_offset,
                log_start_offset=p.log_start_offset,
                records=p.records,
            ))
    return out


def leader_of(network: Any, tp: TopicPartition) -> tuple[int, int] | None:
    """(leader id, leader epoch) from the network's ClusterMetadata, or None."""
    md = network.metadata
    leader = md.leader_for(tp)
    if leader is None or leader < 0:
        return None
    return leader, md.leader_epoch(tp)


async def list_offsets(
    network: Any,
    timestamps: Mapping[TopicPartition, int],
    *,
    isolation_level: int = 0,
    timeout_ms: int,
    retry_backoff_ms: int,
) -> dict[TopicPartition, ListedOffset]:
    """ListOffsets for each partition (timestamp, or -1 latest, -2 earliest, -3 max timestamp).

    Args:
        network: a BrokerNetwork.
        timestamps: what to look up per partition.
        isolation_level: 0 read_uncommitted (latest = HW), 1 read_committed (latest = LSO).
        timeout_ms: overall deadline; retriable errors are retried until then.
        retry_backoff_ms: pause between retries.

    Returns:
        {tp: ListedOffset}; offset -1 when no record matches the timestamp.

    Raises:
        RafkaError: the first non-retriable per-partition error (e.g. an unknown partition
            that stays unknown is retried until the deadline, as Kafka does).
        KafkaTimeoutError: retriable errors outlasted `timeout_ms`.
    """
    deadline = _now_ms() + timeout_ms
    todo = dict(timestamps)
    done: dict[TopicPartition, ListedOffset] = {}
    last_error: BaseException | None = None
    refresh = not all(leader_of(network, tp) for tp in todo)
    while todo:
        if refresh:
            try:
                await network.refresh_metadata(sorted({tp.topic for tp in todo}))
            except (RafkaError, grpc.RpcError) as exc:
                last_error = exc
        refresh = False
        by_node: dict[int, list[TopicPartition]] = {}
        for tp in todo:
            leader = leader_of(network, tp)
            if leader is None:
                refresh = True
                last_error = error_class(ErrorCode.LEADER_NOT_AVAILABLE)(
                    f"no leader known for {tp}")
                continue
            by_node.setdefault(leader[0], []).append(tp)
        remaining_ms = deadline - _now_ms()
        calls = [
            _list_offsets_at(network, node, tps, todo, isolation_level,
                             max(remaining_ms, 1) / 1000)
            for node, tps in sorted(by_node.items())
        ]
        for result in await asyncio.gather(*calls, return_exceptions=True):
            if isinstance(result, BaseException):
                if not isinstance(result, (RafkaError, grpc.RpcError)):
                    raise result
                if isinstance(result, RafkaError) and not result.retriable:
                    raise result
                last_error, refresh = result, True
                continue
            for tp, item in result.items():
                if isinstance(item, RafkaError):
                    if not item.retriable:
                        raise item
                    last_error = item
                    refresh = refresh or item.invalid_metadata
                else:
                    done[tp] = item
                    todo.pop(tp, None)
        if todo:
            if _now_ms() + retry_backoff_ms >= deadline:
                raise KafkaTimeoutError(
                    f"ListOffsets for {', '.join(str(tp) for tp in sorted(todo))} did not "
                    f"succeed within {timeout_ms} ms (last error: {last_error!r})",
                    pending=len(todo),
                )
            await asyncio.sleep(retry_backoff_ms / 1000)
    return done


async def _list_offsets_at(
    network: Any, node: int, tps: list[TopicPartition], timestamps: Mapping[TopicPartition, int],
    isolation_level: int, timeout_s: float,
) -> dict[TopicPartition, ListedOffset | RafkaError]:
    topics: dict[str, list[broker_pb2.ListOffsetsRequest.ListOffsetsPartition]] = {}
    for tp in tps:
        part = broker_pb2.ListOffsetsRequest.ListOffsetsPartition(
            partition_index=tp.partition, timestamp=timestamps[tp])
        epoch = network.metadata.leader_epoch(tp)
        if epoch is not None and epoch >= 0:
            part.current_leader_epoch = epoch
        topics.setdefault(tp.topic, []).append(part)
    req = broker_pb2.ListOffsetsRequest(
        isolation_level=isolation_level,  # type: ignore[arg-type]
        topics=[broker_pb2.ListOffsetsRequest.ListOffsetsTopic(name=n, partitions=ps)
                for n, ps in topics.items()],
    )
    try:
        stub = network.stub(node)
    except KeyError as exc:  # the broker left the metadata since it was looked up
        raise error_class(ErrorCode.NOT_LEADER_OR_FOLLOWER)(str(exc)) from None
    resp = await stub.ListOffsets(req, timeout=timeout_s, metadata=network.call_metadata)
    out: dict[TopicPartition, ListedOffset | RafkaError] = {}
    for t in resp.topics:
        for p in t.partitions:
            tp = TopicPartition(t.name, p.partition_index)
            if p.error_code:
                out[tp] = RafkaError.for_code(
                    p.error_code, f"ListOffsets {tp}: {p.error_message or ''}".rstrip(": "))
            else:
                out[tp] = ListedOffset(
                    offset=p.offset, timestamp=p.timestamp,
                    leader_epoch=p.leader_epoch if p.leader_epoch >= 0 else None)
    return out


class FetchEngine:
    """Runs the fetch loop for one consumer on the current event loop.

    Args:
        config: resolved consumer config.
        network: a BrokerNetwork (channels and ClusterMetadata).
        subscriptions / fetcher: the consumer's cores (only touched on this loop).
    """

    def __init__(self, config: ConsumerConfig, network: Any, subscriptions: SubscriptionState,
                 fetcher: Fetcher) -> None:
        self._config = config
        self._network = network
        self._subs = subscriptions
        self._fetcher = fetcher
        self._wake = asyncio.Event()
        self.data_ready = asyncio.Event()  # set when records, errors or resets may be ready
        self._task: asyncio.Task[None] | None = None
        self._fetches: set[asyncio.Task[None]] = set()
        self._streams: dict[int, OrderedStream] = {}  # broker → its FetchStream call
        self._reset_task: asyncio.Task[None] | None = None
        self._need_metadata = True
        self._next_metadata_ms = 0
        self._closed = False
        self._isolation = 1 if config.isolation_level == "read_committed" else 0
        self._lag_metrics = track_consumer_lag(subscriptions, config.client_id)

    def start(self) -> None:
        """Start the background fetch loop (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="fetcher")
            start_export()  # inside a Ray worker: the registry reaches Ray's metrics

    def wake(self) -> None:
        """Re-plan fetches (after assign, seek, resume or a drain freed the buffer)."""
        self._wake.set()

    def request_metadata(self) -> None:
        self._need_metadata = True
        self._wake.set()

    async def close(self) -> None:
        self._closed = True
        self._lag_metrics.close()
        tasks = [t for t in (self._task, self._reset_task, *self._fetches) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for stream in self._streams.values():
            stream.close()
        self._streams.clear()
        self._task = None

    async def _run(self) -> None:
        backoff_s = self._config.retry_backoff_ms / 1000
        while not self._closed:
            self._wake.clear()
            if self._need_metadata and self._subs.assigned_partitions():
                if _now_ms() >= self._next_metadata_ms:
                    await self._refresh_metadata()
            if self._subs.awaiting_reset() and self._reset_task is None:
                self._reset_task = asyncio.get_running_loop().create_task(self._resolve_resets())
            if not self._need_metadata:
                specs, no_leader = self._fetcher.fetch_requests(
                    lambda tp: leader_of(self._network, tp))
                if no_leader:
                    self._need_metadata = True
                for spec in specs:
                    task = asyncio.get_running_loop().create_task(self._fetch(spec))
                    self._fetches.add(task)
                    task.add_done_callback(self._fetches.discard)
            try:
                await asyncio.wait_for(self._wake.wait(),
                                       backoff_s if self._need_metadata else None)
            except asyncio.TimeoutError:
                pass

    async def _refresh_metadata(self) -> None:
        topics = sorted({tp.topic for tp in self._subs.assigned_partitions()})
        self._next_metadata_ms = _now_ms() + self._config.retry_backoff_ms
        try:
            await self._network.refresh_metadata(topics)
            self._need_metadata = False
        except (RafkaError, grpc.RpcError) as exc:
            log.debug("consumer metadata refresh failed: %r", exc)

    async def _fetch(self, spec: FetchRequestSpec) -> None:
        timeout_s = (spec.max_wait_ms + self._config.request_timeout_ms) / 1000
        try:
            resp = await self._stream(spec.node_id).request(fetch_request_pb(spec), timeout_s)
        except (grpc.RpcError, RafkaError, KeyError, TimeoutError, StreamEndedError) as exc:
            log.debug("fetch from broker %d failed: %r", spec.node_id, exc)
            await asyncio.sleep(self._config.retry_backoff_ms / 1000)
            self._fetcher.on_fetch_failed(spec)
            self.request_metadata()
            return
        outcome = self._fetcher.handle_response(
            spec, fetched_partitions(resp), error_code=resp.error_code,
            error_message=resp.error_message)
        if outcome.refresh_metadata:
            self._need_metadata = True
        if outcome.records_buffered or self._fetcher.pending_errors():
            self.data_ready.set()
        self._wake.set()

    def _stream(self, node_id: int) -> OrderedStream:
        """The open FetchStream to a broker; a new one if the last broke or the broker moved.

        Raises:
            KeyError: the broker is not in the current metadata.
        """
        stub = self._network.stub(node_id)
        stream = self._streams.get(node_id)
        if stream is None or stream.broken or stream.stub is not stub:
            if stream is not None:
                stream.close()
            metadata = self._network.call_metadata
            stream = self._streams[node_id] = OrderedStream(
                stub, lambda: stub.FetchStream(metadata=metadata))
        return stream

    async def _resolve_resets(self) -> None:
        try:
            await self.resolve_resets(self._config.request_timeout_ms)
        except (RafkaError, grpc.RpcError) as exc:
            log.debug("offset reset failed, retrying: %r", exc)
            await asyncio.sleep(self._config.retry_backoff_ms / 1000)
        finally:
            self._reset_task = None
            self._wake.set()

    async def resolve_resets(self, timeout_ms: int) -> None:
        """Answer every pending lazy reset now with ListOffsets.

        Raises:
            RafkaError: a non-retriable ListOffsets error.
            KafkaTimeoutError: no answer within `timeout_ms`.
        """
        pending = self._subs.awaiting_reset()
        if not pending:
            return
        found = await list_offsets(
            self._network, {tp: s.timestamp for tp, s in pending},
            isolation_level=self._isolation, timeout_ms=timeout_ms,
            retry_backoff_ms=self._config.retry_backoff_ms)
        for tp, strategy in pending:
            if tp in found:
                self._subs.on_reset(tp, strategy, found[tp].offset)
        self._wake.set()
