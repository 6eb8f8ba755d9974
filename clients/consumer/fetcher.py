"""The consumer's fetch logic: what to ask each leader for, and what its answers mean.

Theory of operation (Kafka's `AbstractFetch` / `FetchCollector`, without fetch sessions):

- `fetch_requests(leader_of)` groups every fetchable partition (assigned, not paused, with a
  position, nothing buffered, not already in flight) by its leader and returns one
  `FetchRequestSpec` per leader broker that has no fetch in flight. Partitions without a
  known leader are returned separately so the shell refreshes metadata.
- `handle_response(spec, partitions)` turns an answer into buffered `CompletedFetch`es and
  bookkeeping: high watermark, log start offset, OFFSET_OUT_OF_RANGE → reset per
  auto.offset.reset, leadership errors → "refresh metadata". Answers for a partition whose
  position changed since the request (seek, reset, reassignment) are dropped.
- `drain(max_records)` decodes buffered batches into `clients.types.Record` lists, skipping
  records below the position (the first batch may start before the fetch offset) and control
  batches, stops after `max_records` (max.poll.records), and moves positions. A partition with
  buffered data is not fetched again until it is drained: that bounds the buffer at one
  partition-fetch per partition, and is Kafka's prefetch rule.
- Errors that the user must see (CORRUPT_MESSAGE, out of range with reset=none, authorization,
  deserialization) are queued and raised by the next `drain` that has no records to return
  first, so records already fetched are never lost to a later error.

The core never does I/O and never reads the clock; the shell (fetcher_runtime.py) converts
between these dataclasses and the protobuf messages.
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from clients.config import ConsumerConfig
from clients.consumer.subscription import SubscriptionState
from clients.errors import SerializationError
from clients.serde import Deserializer, deserialize
from clients.types import Record, TopicPartition
from proto.errors import (
    CorruptMessageError,
    ErrorCode,
    RafkaError,
    error_class,
)
from proto.records import RecordBatch, decode_consumer_records, peek_batch_size

__all__ = [
    "CompletedFetch",
    "FetchOutcome",
    "FetchRequestSpec",
    "FetchedPartition",
    "Fetcher",
    "ListedOffset",
    "PartitionFetchSpec",
]

READ_UNCOMMITTED = 0
READ_COMMITTED = 1
_RECORD_BATCH_OVERHEAD = 61
_IS_CONTROL = 0x20
_ATTRIBUTES_AT = 21
_LEADER_EPOCH_AT = 12
_LAST_OFFSET_DELTA_AT = 23


@dataclass(frozen=True, slots=True)
class PartitionFetchSpec:
    """One partition of a Fetch request."""

    tp: TopicPartition
    fetch_offset: int
    current_leader_epoch: int  # -1 = not checked
    partition_max_bytes: int
    position_epoch: int  # SubscriptionState's counter when the request was built


@dataclass(frozen=True, slots=True)
class FetchRequestSpec:
    """One Fetch RPC to one leader broker, covering all its fetchable partitions."""

    node_id: int
    max_wait_ms: int
    min_bytes: int
    max_bytes: int
    isolation_level: int  # 0 read_uncommitted, 1 read_committed
    partitions: tuple[PartitionFetchSpec, ...]


@dataclass(frozen=True, slots=True)
class FetchedPartition:
    """One partition of a Fetch answer, decoded from protobuf by the shell."""

    tp: TopicPartition
    error_code: int
    error_message: str = ""
    high_watermark: int = -1
    last_stable_offset: int = -1
    log_start_offset: int = -1
    records: bytes = b""


@dataclass(frozen=True, slots=True)
class FetchOutcome:
    """What the shell must do after an answer."""

    refresh_metadata: bool = False  # a leadership error: refresh before fetching these again
    records_buffered: bool = False  # a poll waiting for data may wake up
    resets_requested: bool = False  # OFFSET_OUT_OF_RANGE moved partitions to AWAITING_RESET


@dataclass(frozen=True, slots=True)
class ListedOffset:
    """A ListOffsets answer for one partition; offset -1 when no record matches."""

    offset: int
    timestamp: int = -1
    leader_epoch: int | None = None


@dataclass(slots=True)
class CompletedFetch:
    """Raw batches fetched for one partition, drained batch by batch."""

    tp: TopicPartition
    position_epoch: int
    data: bytes
    pos: int = 0  # byte offset of the next undecoded batch
    pending: list[Record[Any, Any]] = field(default_factory=list)  # decoded, not yet returned
    pending_epoch: int | None = None  # leader epoch of the batch `pending` came from


class Fetcher:
    """Fetch planning and decoding for one consumer (see the module docstring).

    Args:
        config: the resolved consumer config (fetch sizes, waits, check.crcs, isolation).
        subscriptions: the consumer's position state, shared with the consumer.
        key_deserializer / value_deserializer: applied to non-null keys/values when given;
            None leaves bytes as they are (no per-record call).
    """

    def __init__(
        self,
        config: ConsumerConfig,
        subscriptions: SubscriptionState,
        *,
        key_deserializer: Deserializer[Any] | None = None,
        value_deserializer: Deserializer[Any] | None = None,
    ) -> None:
        self._config = config
        self._subs = subscriptions
        self._key_deserializer = key_deserializer
        self._value_deserializer = value_deserializer
        self._isolation = (
            READ_COMMITTED if config.isolation_level == "read_committed" else READ_UNCOMMITTED
        )
        self._completed: deque[CompletedFetch] = deque()
        self._in_flight_nodes: set[int] = set()
        self._in_flight_tps: set[TopicPartition] = set()
        self._errors: deque[RafkaError] = deque()

    # -- planning --

    def fetch_requests(
        self, leader_of: Callable[[TopicPartition], tuple[int, int] | None]
    ) -> tuple[list[FetchRequestSpec], list[TopicPartition]]:
        """Plan Fetch RPCs and mark them in flight.

        Args:
            leader_of: (leader node id, leader epoch) of a partition, or None if unknown.

        Returns:
            (one request per leader broker without a fetch in flight, in node order;
            fetchable partitions whose leader is unknown).
        """
        buffered = {cf.tp for cf in self._completed}
        by_node: dict[int, list[PartitionFetchSpec]] = {}
        no_leader: list[TopicPartition] = []
        for tp in self._subs.fetchable():
            if tp in buffered or tp in self._in_flight_tps:
                continue
            leader = leader_of(tp)
            if leader is None or leader[0] < 0:
                no_leader.append(tp)
                continue
            node_id, leader_epoch = leader
            if node_id in self._in_flight_nodes:
                continue
            st = self._subs.state(tp)
            by_node.setdefault(node_id, []).append(
                PartitionFetchSpec(
                    tp=tp,
                    fetch_offset=st.position,
                    current_leader_epoch=leader_epoch,
                    partition_max_bytes=self._config.max_partition_fetch_bytes,
                    position_epoch=st.position_epoch,
                )
            )
        specs = []
        for node_id in sorted(by_node):
            spec = FetchRequestSpec(
                node_id=node_id,
                max_wait_ms=self._config.fetch_max_wait_ms,
                min_bytes=self._config.fetch_min_bytes,
                max_bytes=self._config.fetch_max_bytes,
                isolation_level=self._isolation,
                partitions=tuple(by_node[node_id]),
            )
            self._in_flight_nodes.add(node_id)
            self._in_flight_tps.update(p.tp for p in spec.partitions)
            specs.append(spec)
        return specs, no_leader

    def in_flight(self) -> int:
        return len(self._in_flight_nodes)

    # -- answers --

    def on_fetch_failed(self, spec: FetchRequestSpec) -> FetchOutcome:
        """The RPC itself failed (broker down, timeout): retry after a metadata refresh."""
        self._done(spec)
        return FetchOutcome(refresh_metadata=True)

    def handle_response(
        self, spec: FetchRequestSpec, partitions: list[FetchedPartition], *,
        error_code: int = 0, error_message: str = "",
    ) -> FetchOutcome:
        """Apply one Fetch answer (see the module docstring)."""
        self._done(spec)
        if error_code != ErrorCode.NONE:
            err = RafkaError.for_code(error_code, error_message)
            if not err.retriable:
                self._errors.append(err)
            return FetchOutcome(refresh_metadata=err.invalid_metadata or err.retriable)
        asked = {p.tp: p for p in spec.partitions}
        refresh = buffered = resets = False
        for fp in partitions:
            req = asked.get(fp.tp)
            if req is None or not self._is_current(req):
                continue  # not asked for, or the position moved since: drop the stale data
            code = fp.error_code
            if code == ErrorCode.NONE:
                self._subs.update_offsets(
                    fp.tp, high_watermark=fp.high_watermark,
                    log_start_offset=fp.log_start_offset,
                    last_stable_offset=fp.last_stable_offset,
                )
                if fp.records:
                    self._completed.append(
                        CompletedFetch(fp.tp, req.position_epoch, fp.records)
                    )
                    buffered = True
            elif code == ErrorCode.OFFSET_OUT_OF_RANGE:
                self._subs.update_offsets(
                    fp.tp, high_watermark=fp.high_watermark,
                    log_start_offset=fp.log_start_offset,
                    last_stable_offset=fp.last_stable_offset,
                )
                try:
                    self._subs.reset_on_out_of_range(fp.tp, req.fetch_offset)
                    resets = True
                except RafkaError as exc:
                    self._errors.append(exc)
            else:
                err_cls = error_class(code)
                if err_cls.invalid_metadata or err_cls.retriable:
                    refresh = refresh or err_cls.invalid_metadata
                else:
                    self._errors.append(
                        err_cls(f"fetch {fp.tp} at offset {req.fetch_offset}: "
                                f"{fp.error_message or err_cls.code.name}")
                    )
        return FetchOutcome(refresh_metadata=refresh, records_buffered=buffered,
                            resets_requested=resets)

    def _done(self, spec: FetchRequestSpec) -> None:
        self._in_flight_nodes.discard(spec.node_id)
        for p in spec.partitions:
            self._in_flight_tps.discard(p.tp)

    def _is_current(self, req: PartitionFetchSpec) -> bool:
        st = self._subs._states.get(req.tp)  # noqa: SLF001 - the same core, hot path
        return (
            st is not None
            and st.position_epoch == req.position_epoch
            and st.position == req.fetch_offset
        )

    # -- returning records --

    def has_buffered(self) -> bool:
        """Records (or errors) could be returned now without fetching."""
        if self._errors:
            return True
        subs = self._subs
        return any(subs.is_fetchable(cf.tp) for cf in self._completed)

    def discard_unassigned(self) -> None:
        """Drop buffered data of partitions no longer assigned (after `assign`)."""
        self._completed = deque(cf for cf in self._completed if self._subs.is_assigned(cf.tp))

    def drain(self, max_records: int) -> dict[TopicPartition, list[Record[Any, Any]]]:
        """Take up to `max_records` records from the buffer, moving positions past them.

        The cyclic garbage collector is paused while the records are built (when it was
        enabled): each record is one GC-tracked object, so a 10,000-record poll would run ~14
        young collections that all find nothing to free, and promote the poll's records to the
        old generations, whose growth then triggers full collections of the whole heap (about
        a quarter of the consumer's time in bench/consumer_throughput.py). Paused, the poll
        costs one young collection afterwards, and records the application drops between
        polls die young. Reference counting still frees everything as usual.

        Raises:
            RafkaError: a queued error (corrupt batch, out of range with reset=none, ...)
                when there is no record to return first.
            SerializationError: a deserializer failed; the position stays at that record.
        """
        if not gc.isenabled():
            return self._drain(max_records)
        gc.disable()
        try:
            return self._drain(max_records)
        finally:
            gc.enable()

    def _drain(self, max_records: int) -> dict[TopicPartition, list[Record[Any, Any]]]:
        out: dict[TopicPartition, list[Record[Any, Any]]] = {}
        left = max_records
        keep: deque[CompletedFetch] = deque()
        subs = self._subs
        while self._completed and left > 0:
            cf = self._completed.popleft()
            st = subs._states.get(cf.tp)  # noqa: SLF001 - the same core, hot path
            if st is None or st.position_epoch != cf.position_epoch:
                continue  # sought or reassigned since: stale
            if st.paused:
                keep.append(cf)
                continue
            try:
                taken = self._take(cf, st.position, left)
            except RafkaError as exc:
                self._errors.append(exc)
                continue
            if taken:
                last = taken[-1]
                subs.advance(cf.tp, last.offset + 1, last.leader_epoch)
                out.setdefault(cf.tp, []).extend(taken)
                left -= len(taken)
            # Keep what is left; a partial trailing batch (cut by a size limit) is dropped.
            if cf.pending or (cf.pos < len(cf.data) and _has_full_batch(cf.data, cf.pos)):
                keep.append(cf)
        keep.extend(self._completed)
        self._completed = keep
        if not out and self._errors:
            raise self._errors.popleft()
        return out

    def _take(self, cf: CompletedFetch, position: int, limit: int) -> list[Record[Any, Any]]:
        """Up to `limit` records at or above `position` from `cf`; control batches skipped."""
        taken: list[Record[Any, Any]] = []
        errors = len(self._errors)
        while len(taken) < limit:
            if not cf.pending:
                if len(self._errors) > errors:
                    break  # a deserializer failed in this fetch: stop at that record
                if not self._decode_next_batch(cf, taken[-1].offset + 1 if taken else position):
                    break
                continue
            pending = cf.pending
            room = limit - len(taken)
            if len(pending) <= room:
                taken.extend(pending)
                cf.pending = []
            else:
                taken.extend(pending[:room])
                cf.pending = pending[room:]
        return taken

    def _decode_next_batch(self, cf: CompletedFetch, position: int) -> bool:
        """Decode the next whole batch of `cf` into `cf.pending`; False when none is left."""
        data = cf.data
        while True:
            pos = cf.pos
            size = peek_batch_size(data, pos)
            if size is None or pos + size > len(data) or size < _RECORD_BATCH_OVERHEAD:
                cf.pos = len(data)  # nothing, or a partial batch cut by a size limit
                return False
            cf.pos = pos + size
            view = memoryview(data)[pos:pos + size]
            batch = RecordBatch(view)
            try:
                batch.validate(check_crc=self._config.check_crcs)
            except CorruptMessageError as exc:
                cf.pos = len(data)
                raise CorruptMessageError(
                    f"{cf.tp}: {exc.message} (fetched at position {position})"
                ) from None
            if batch.next_offset <= position:
                continue  # wholly below the position (the log returned from a batch start)
            if batch.attributes & _IS_CONTROL:
                if self._subs.is_fetchable(cf.tp):
                    self._subs.advance(cf.tp, batch.next_offset, None)
                continue
            cf.pending = self._to_records(cf, pos, position)
            if cf.pending:
                return True
            if cf.pos == pos:
                return False  # a deserializer failed at the first record: error queued

    def _to_records(
        self, cf: CompletedFetch, batch_pos: int, position: int
    ) -> list[Record[Any, Any]]:
        """The batch at `batch_pos` as client records at or above `position`.

        Without deserializers the decoder's records are returned as they are (one
        `tuple.__new__` per record, no second pass). A deserializer failure keeps the records
        before it, queues the error and rewinds `cf` to this batch, so the next drain returns
        those records and then raises at the failing one, whose position stays put (Kafka's
        RecordDeserializationException rule).
        """
        topic, partition = cf.tp
        records: list[Record[Any, Any]] = decode_consumer_records(
            cf.data, batch_pos, Record, topic, partition, position)
        kd = self._key_deserializer
        vd = self._value_deserializer
        if kd is None and vd is None:
            return records
        new = tuple.__new__
        out: list[Record[Any, Any]] = []
        for r in records:
            key = r[5]
            value = r[6]
            try:
                if kd is not None and key is not None:
                    key = deserialize(kd, topic, r[7], key, is_key=True)
                if vd is not None and value is not None:
                    value = deserialize(vd, topic, r[7], value, is_key=False)
            except SerializationError as exc:
                self._errors.append(exc)
                cf.pos = batch_pos
                return out
            out.append(new(Record, (topic, partition, r[2], r[3], r[4], key, value, r[7],
                                    r[8], r[9], r[10])))
        return out

    # -- bookkeeping for the façade --

    def buffered_partitions(self) -> list[TopicPartition]:
        return [cf.tp for cf in self._completed]

    def pending_errors(self) -> int:
        return len(self._errors)

    def take_error(self) -> RafkaError | None:
        return self._errors.popleft() if self._errors else None


def _has_full_batch(data: bytes, pos: int) -> bool:
    size = peek_batch_size(data, pos)
    return size is not None and pos + size <= len(data)


def group_by_topic(
    partitions: Mapping[TopicPartition, Any]
) -> dict[str, list[tuple[int, Any]]]:
    """{tp: x} → {topic: [(partition, x)]}, topics and partitions in first-seen order."""
    out: dict[str, list[tuple[int, Any]]] = {}
    for tp, value in partitions.items():
        out.setdefault(tp.topic, []).append((tp.partition, value))
    return out
