"""The producer's record accumulator: per-partition queues of batches, and when to send them.

This is the core of the producer (Kafka's `RecordAccumulator` + the batch half of `Sender`). It
owns every batch from the first record appended to it until the batch is acknowledged or fails,
and answers three questions for the shell that does the network work:

- `append(...)`: where does this record go? (a batch id and the record's index in it; futures
  are the façade's business: one shared result per batch, indexed per record)
- `ready(now_ms, leader_of)`: which brokers have something to send now, and when should I look
  again? (Kafka's `RecordAccumulator.ready`)
- `drain(now_ms, node_ids, ...)`: give me the batches for these brokers, at most one per
  partition per request (KAFKA_SEMANTICS.md §1.7; Kafka's `RecordAccumulator.drain`).

The shell reports outcomes back: `complete` (acked), `reenqueue` (retriable error: back into the
queue with backoff), `fail` (final error), `split` (MESSAGE_TOO_LARGE). `expire_batches` fails
batches past `delivery.timeout.ms`. It never reads the clock, never blocks and never holds a
future: when `buffer.memory` is used up, `append` answers `would_block` and the façade waits
(up to `max.block.ms`) for `complete`/`fail` to free memory, then tries again.

States of a batch (`BatchState`; transitions are the table `_TRANSITIONS`, applied only by
`_transition`, which raises on an illegal move):

    OPEN ──seal──► SEALED ──drain──► IN_FLIGHT ──complete──► DONE
      │                                 │  ▲  └──split──► SPLIT (its records live on in parts)
      └───────────drain─────────────────┘  │
                                  reenqueue│drain
                                           ▼
                                        RETRY
    any unfinished state ──fail / expire / abort──► FAILED

- OPEN: the last batch of its queue, still taking records.
- SEALED: full, or no longer last; waits for drain. Its bytes are built at drain time.
- IN_FLIGHT: drained; its bytes are on the wire (or about to be).
- RETRY: back in its queue after a retriable error, bytes (and sequence) kept, waiting out
  its backoff: `retry.backoff.ms · 2^attempts × U(0.8, 1.2)`, capped at `retry.backoff.max.ms`
  (KIP-580, Kafka's `ExponentialBackoff`), drawn once from the injected rng at `reenqueue`.

Readiness of a partition (Kafka's `batchReady`) looks at the first batch of its queue: it is
sendable when it is full (or not the only batch), its linger has passed, someone waits for
memory, a flush is in progress, or the accumulator is closing; and it is not backing off (a
retry whose partition changed leader since its last attempt does not: KIP-951). The linger
clock starts at the batch's creation; the backoff clock at its last attempt.

Ordering. With `max.in.flight.requests.per.connection=1` a partition with a batch on the wire is
*muted* (Kafka's `guaranteeMessageOrder`). With idempotence (KIP-98) up to 5 requests may be in
flight; sequences are assigned when a batch is first drained (`sequences.SequenceTracker`), a
retried batch keeps its sequence, goes back into its queue in sequence order, and is drained only
once it is the oldest unfinished batch of its partition (Kafka's
`shouldStopDrainBatchesForPartition`), so the broker sees sequences in order. A partition never
has more than 5 numbered batches from its oldest unfinished one on (`MAX_IN_FLIGHT_WINDOW`:
the broker's duplicate window). The per-connection request limit itself is the shell's: it
passes to `drain` only brokers that can take a request.

Idempotence bookkeeping: a batch with a sequence that fails for good leaves a hole in the
sequence space, so `epoch_bump_required` turns on (KIP-360); the shell then bumps the epoch
(InitProducerId) and calls `set_producer_id_and_epoch`. A partition restarts at sequence 0
under the new epoch only once none of its numbered batches is unfinished (Kafka's
`maybeUpdateProducerIdAndEpoch`): until then its retries keep their old epoch, sequence and
bytes, so the broker still recognises one that was already written as a duplicate. A batch
that was sent is renumbered only when the broker proved that neither it nor any earlier batch
of its partition is in the log: the partition's oldest unfinished batch was refused as out of
order, or refused for good on its only attempt (`fail(..., sequence_gap=True)`, Kafka's
`partitionsToRewriteSequences`). Renumbering a batch whose fate is unknown (expired, timed
out, failed after a lost response) would write its records a second time under the new epoch.
"""

from __future__ import annotations

import math
import random
import struct
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Final, NamedTuple

from clients.config import ProducerConfig
from clients.errors import ClientClosedError, KafkaTimeoutError, RecordTooLargeError
from clients.partitioner import BuiltInPartitioner, StickyState, partition_for_key
from clients.producer.batch_builder import ProducerBatchBuilder, estimate_record_size
from clients.producer.sequences import (
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    NO_SEQUENCE,
    SequenceTracker,
)
from clients.types import UNKNOWN_PARTITION, Header, TopicPartition
from proto.records import (
    CRC_OFFSET,
    PRODUCER_ID_OFFSET,
    RECORD_BATCH_OVERHEAD,
    RecordBatch,
    compute_crc,
)

__all__ = [
    "AccumulatorConfig",
    "AppendResult",
    "BatchState",
    "ProducerBatch",
    "ReadyCheck",
    "RecordAccumulator",
    "SplitPart",
    "retry_backoff_ms",
]

_PRODUCER_STATE = struct.Struct(">qhi")  # producerId, producerEpoch, baseSequence (bytes 43-57)
_CRC = struct.Struct(">I")
_JITTER: Final = 0.2  # CommonClientConfigs.RETRY_BACKOFF_JITTER
# The broker recognises a retried batch as a duplicate only among the last 5 batches of a
# producer (ProducerStateEntry.NUM_BATCHES_TO_RETAIN). Kafka stays inside that window because a
# connection answers in order and a lost response fails every later request on it; gRPC calls
# may complete out of order, so the core also caps, per partition, the numbered batches from
# the oldest unfinished one on: a batch whose fate is unknown is then at most 4 batches behind.
MAX_IN_FLIGHT_WINDOW: Final = 5


@dataclass(frozen=True, slots=True)
class AccumulatorConfig:
    """The producer settings the accumulator uses (see `clients.config` for their meaning)."""

    batch_size: int = 16384
    linger_ms: int = 5
    buffer_memory: int = 33554432
    max_request_size: int = 1048576
    delivery_timeout_ms: int = 120000
    retry_backoff_ms: int = 100
    retry_backoff_max_ms: int = 1000
    max_in_flight_requests_per_connection: int = 5
    enable_idempotence: bool = True
    transactional: bool = False
    compression_type: str = "none"
    compression_level: int | None = None
    adaptive_partitioning: bool = True
    partitioner_availability_timeout_ms: int = 0
    partitioner_ignore_keys: bool = False

    @classmethod
    def from_producer_config(cls, config: ProducerConfig) -> AccumulatorConfig:
        return cls(
            batch_size=config.batch_size,
            linger_ms=config.linger_ms,
            buffer_memory=config.buffer_memory,
            max_request_size=config.max_request_size,
            delivery_timeout_ms=config.delivery_timeout_ms,
            retry_backoff_ms=config.retry_backoff_ms,
            retry_backoff_max_ms=config.retry_backoff_max_ms,
            max_in_flight_requests_per_connection=config.max_in_flight_requests_per_connection,
            enable_idempotence=config.enable_idempotence,
            transactional=config.transactional_id is not None,
            compression_type=config.compression_type,
            compression_level=config.compression_level,
            adaptive_partitioning=config.partitioner_adaptive_partitioning_enable,
            partitioner_availability_timeout_ms=config.partitioner_availability_timeout_ms,
            partitioner_ignore_keys=config.partitioner_ignore_keys,
        )


def retry_backoff_ms(attempts: int, initial_ms: int, max_ms: int, rng: random.Random) -> int:
    """Kafka's `ExponentialBackoff(initial, 2, max, 0.2).backoff(attempts)` (KIP-580).

    `initial · 2^min(attempts, log2(max/initial)) × U(0.8, 1.2)`, capped at `max_ms`; with
    `max_ms <= initial_ms` it is `initial_ms`, without jitter.
    """
    if max_ms <= initial_ms:
        return initial_ms
    exp_max = math.log(max_ms / max(initial_ms, 1)) / math.log(2)
    term = initial_ms * 2 ** min(attempts, exp_max)
    value = int(rng.uniform(1 - _JITTER, 1 + _JITTER) * term)
    return min(value, max_ms)


class BatchState(Enum):
    OPEN = "open"
    SEALED = "sealed"
    IN_FLIGHT = "in_flight"
    RETRY = "retry"
    DONE = "done"
    FAILED = "failed"
    SPLIT = "split"


_OPEN: Final = BatchState.OPEN
_UNFINISHED = (BatchState.OPEN, BatchState.SEALED, BatchState.IN_FLIGHT, BatchState.RETRY)
_TRANSITIONS: Final[dict[tuple[BatchState, str], BatchState]] = {
    (BatchState.OPEN, "seal"): BatchState.SEALED,
    (BatchState.OPEN, "drain"): BatchState.IN_FLIGHT,
    (BatchState.SEALED, "drain"): BatchState.IN_FLIGHT,
    (BatchState.RETRY, "drain"): BatchState.IN_FLIGHT,
    (BatchState.IN_FLIGHT, "reenqueue"): BatchState.RETRY,
    (BatchState.IN_FLIGHT, "complete"): BatchState.DONE,
    (BatchState.IN_FLIGHT, "split"): BatchState.SPLIT,
    **{(state, "fail"): BatchState.FAILED for state in _UNFINISHED},
}


def _backing_off(batch: ProducerBatch, waited_ms: int, leader: int) -> bool:
    """Whether a queue head must still wait out its retry backoff.

    A retry whose partition has a new leader since its last attempt goes at once (KIP-951):
    the backoff protects a struggling broker, and the new one has not been tried yet. Kafka
    compares leader epochs; the leader's id is what the drain knows, and a leader that moved
    away and back within one backoff only waits as before.
    """
    return (
        batch.attempts > 0
        and waited_ms < batch.retry_backoff_ms
        and leader == batch.attempt_leader
    )


def _transition(batch: ProducerBatch, event: str) -> None:
    try:
        batch.state = _TRANSITIONS[(batch.state, event)]
    except KeyError:
        raise AssertionError(
            f"batch {batch.batch_id} of {batch.topic_partition}: illegal {event} in "
            f"state {batch.state.name}"
        ) from None


@dataclass(slots=True, eq=False)
class ProducerBatch:
    """One batch of records for one partition (Kafka's `ProducerBatch`). Mutable core state.

    invariant: `builder` is set iff `data` is None (bytes are built once, when first drained).
    invariant: `base_sequence` is NO_SEQUENCE until the first drain of an idempotent batch.
    """

    batch_id: int
    topic_partition: TopicPartition
    created_ms: int
    delivery_deadline_ms: int  # created_ms + delivery.timeout.ms; retries never move it
    allocated_bytes: int  # counted against buffer.memory until the batch finishes
    builder: ProducerBatchBuilder | None
    state: BatchState = BatchState.OPEN
    data: bytes | None = None
    record_count: int = 0
    attempts: int = 0
    last_attempt_ms: int = 0  # linger and backoff are measured from here
    retry_backoff_ms: int = 0
    attempt_leader: int | None = None  # the broker the last attempt went to
    drained_ms: int = -1
    producer_id: int = NO_PRODUCER_ID
    producer_epoch: int = NO_PRODUCER_EPOCH
    base_sequence: int = NO_SEQUENCE
    is_split_batch: bool = False
    error: BaseException | None = None  # why it failed (FAILED only)

    @property
    def estimated_size_in_bytes(self) -> int:
        if self.data is not None:
            return len(self.data)
        assert self.builder is not None
        return self.builder.estimated_size_in_bytes()

    @property
    def has_sequence(self) -> bool:
        return self.base_sequence != NO_SEQUENCE

    @property
    def is_done(self) -> bool:
        return self.state not in _UNFINISHED

    def has_reached_delivery_timeout(self, now_ms: int) -> bool:
        return now_ms >= self.delivery_deadline_ms


class AppendResult(NamedTuple):
    """What `append` did (Kafka's `RecordAppendResult`).

    A NamedTuple rather than a frozen dataclass: one is built per record, and tuples are
    several times cheaper to create.

    Fields:
        partition: the partition the record went to (the sticky choice if it had none).
        batch_id: the batch it joined, -1 if it was not appended.
        relative_index: its index in the batch (offset = batch base offset + index).
        batch_is_full: a batch of this partition is ready to go: wake the sender.
        new_batch_created: the record opened a new batch.
        abort_for_new_batch: not appended: a new batch was needed and the caller asked to be
            told first (a custom partitioner's `on_new_batch`); append again.
        would_block: not appended: `buffer.memory` is used up; wait for memory, then retry.
    """

    partition: int
    batch_id: int
    relative_index: int
    batch_is_full: bool
    new_batch_created: bool
    abort_for_new_batch: bool = False
    would_block: bool = False


@dataclass(frozen=True, slots=True)
class ReadyCheck:
    """`ready()`'s answer (Kafka's `ReadyCheckResult`).

    Attributes:
        ready_nodes: brokers with a sendable partition, sorted.
        next_ready_check_delay_ms: look again after this long (linger or backoff left), None
            if nothing queued is waiting on a timer.
        unknown_leader_topics: topics with queued data but a partition without a leader:
            refresh metadata.
    """

    ready_nodes: tuple[int, ...]
    next_ready_check_delay_ms: int | None
    unknown_leader_topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SplitPart:
    """One piece of a split batch: records [first_index, first_index + batch.record_count) of
    the original now live in `batch`, at index `i - first_index`."""

    batch: ProducerBatch
    first_index: int


class RecordAccumulator:
    """Per-partition batch queues of one producer. Not thread-safe: one owner (the engine).

    Args:
        config: the settings (`AccumulatorConfig.from_producer_config(producer_config)`).
        rng: randomness for sticky partitions and retry jitter.
    """

    def __init__(self, config: AccumulatorConfig, rng: random.Random) -> None:
        self.config = config
        self._rng = rng
        self._partitioner = BuiltInPartitioner(
            config.batch_size, rng, adaptive=config.adaptive_partitioning
        )
        self._sticky_limit = self._partitioner.sticky_batch_size
        self._sticky_states: dict[str, StickyState] = {}  # the partitioner's, for append_value
        self._sequences = SequenceTracker()
        # topic -> partition -> queue; the flat map is the append hot path.
        self._topics: dict[str, dict[int, deque[ProducerBatch]]] = {}
        self._deques: dict[TopicPartition, deque[ProducerBatch]] = {}
        self._num_partitions: dict[str, int] = {}
        self._incomplete: dict[int, ProducerBatch] = {}  # every unfinished batch, by id
        # <= the earliest delivery deadline of `_incomplete` (exact after a scan; finished
        # batches only raise the true minimum), so the Sender's frequent expiry checks and
        # wake-up computations are O(1) with hundreds of batches queued.
        self._deadline_floor = math.inf
        self._on_wire: dict[TopicPartition, int] = {}  # IN_FLIGHT batches per partition
        self._next_batch_id = 0
        self._buffer_used = 0
        self._memory_waiting = False  # an append was refused for memory and not yet retried
        self._flushes_in_progress = 0
        self._closed = False
        self._drain_from: dict[int, TopicPartition] = {}  # per node: where the next drain starts
        self._node_ready_ms: dict[int, int] = {}
        self._node_drain_ms: dict[int, int] = {}
        self.epoch_bump_required = False
        # Partitions whose unfinished numbered batches are known not to be in the log (see the
        # module doc): renumbered under the next epoch, not sent before that.
        self._rewrite_sequences: set[TopicPartition] = set()
        self._guarantee_order = config.max_in_flight_requests_per_connection == 1
        # A record too large for a request could still fit an open batch only if batch.size
        # is above the limits; otherwise checking when a batch opens is enough.
        self._check_every_record = config.batch_size > min(
            config.max_request_size, config.buffer_memory
        )
        self._batch_size = config.batch_size
        self._fast_path = not self._check_every_record  # append_value may run (not closed)

    # -- partitions -------------------------------------------------------------------------

    def partition_for(
        self, topic: str, key_bytes: bytes | None, partition: int | None, num_partitions: int
    ) -> int:
        """The partition a record must go to, or UNKNOWN_PARTITION for the sticky choice that
        `append` makes. An explicit partition wins; then the key (murmur2, unless
        `partitioner.ignore.keys`); then stickiness (Kafka's `KafkaProducer.partition`)."""
        if partition is not None:
            return partition
        if key_bytes is not None and not self.config.partitioner_ignore_keys:
            return partition_for_key(key_bytes, num_partitions)
        return UNKNOWN_PARTITION

    @property
    def partitioner(self) -> BuiltInPartitioner:
        return self._partitioner

    # -- append -----------------------------------------------------------------------------

    def append(
        self,
        tp: TopicPartition,
        timestamp_ms: int,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[Header],
        now_ms: int,
        *,
        num_partitions: int = 0,
        available_partitions: Sequence[int] = (),
        abort_on_new_batch: bool = False,
    ) -> AppendResult:
        """Add one serialized record to its partition's queue (Kafka's `append`).

        Args:
            tp: the partition; `partition == UNKNOWN_PARTITION` lets the built-in sticky
                partitioner choose (then `num_partitions` and `available_partitions`, the
                partitions with a leader, are required).
            timestamp_ms: the record's CreateTime (wall clock), chosen by the façade.
            now_ms: the shell's monotonic clock, for linger and delivery timeout.
            num_partitions: the topic's partition count (also enables adaptive stats).
            abort_on_new_batch: return `abort_for_new_batch` instead of opening a batch.

        Returns:
            An `AppendResult`; check `would_block` and `abort_for_new_batch` first.

        Raises:
            RecordTooLargeError: the record alone exceeds max.request.size or buffer.memory.
            ClientClosedError: the accumulator is closed.
        """
        if self._closed:
            raise ClientClosedError("producer closed while send in progress")
        topic = tp.topic
        sticky = tp.partition == UNKNOWN_PARTITION
        if num_partitions > 0:
            self._num_partitions[topic] = num_partitions
        if sticky:
            partition = self._partitioner.partition(topic, num_partitions, available_partitions)
            if topic not in self._sticky_states:
                self._sticky_states[topic] = self._partitioner.sticky_state(topic)
            tp = TopicPartition(topic, partition)
        else:
            partition = tp.partition
        dq = self._deques.get(tp)
        if dq is None:
            dq = self._new_deque(tp)
        batch_size = self.config.batch_size
        if dq:
            last = dq[-1]
            if last.state is BatchState.OPEN:
                builder = last.builder
                assert builder is not None
                if self._check_every_record:
                    self._check_record_size(
                        tp, RECORD_BATCH_OVERHEAD
                        + estimate_record_size(key, value, headers),
                    )
                if builder.has_room_for(key, value, headers, batch_size):
                    before = builder.estimated_size_in_bytes()
                    index = builder.append(value, key, headers, timestamp_ms)
                    last.record_count += 1
                    after = builder.estimated_size_in_bytes()
                    full = after >= batch_size
                    if full:
                        _transition(last, "seal")
                    if sticky:
                        self._partitioner.update_partition_info(
                            topic, partition, after - before, full, num_partitions,
                            available_partitions,
                        )
                    self._memory_waiting = False
                    return AppendResult(partition, last.batch_id, index, full or len(dq) > 1, False)
                _transition(last, "seal")  # Kafka's closeForRecordAppends
        if abort_on_new_batch:
            return AppendResult(partition, -1, -1, False, False, abort_for_new_batch=True)
        record_size = RECORD_BATCH_OVERHEAD + estimate_record_size(key, value, headers)
        self._check_record_size(tp, record_size)
        allocation = max(batch_size, record_size)
        if self._buffer_used + allocation > self.config.buffer_memory:
            self._memory_waiting = True
            return AppendResult(partition, -1, -1, False, False, would_block=True)
        batch = self._new_batch(tp, allocation, now_ms)
        builder = batch.builder
        assert builder is not None
        index = builder.append(value, key, headers, timestamp_ms)
        batch.record_count = 1
        dq.append(batch)
        size = builder.estimated_size_in_bytes()
        full = size >= batch_size
        if full:
            _transition(batch, "seal")
        if sticky:
            self._partitioner.update_partition_info(
                topic, partition, size - RECORD_BATCH_OVERHEAD, full, num_partitions,
                available_partitions,
            )
        self._memory_waiting = False
        return AppendResult(partition, batch.batch_id, index, full or len(dq) > 1, True)

    def append_value(
        self,
        topic: str,
        partition: int,
        timestamp_ms: int,
        value: bytes,
        num_partitions: int,
        available_partitions: Sequence[int],
    ) -> tuple[ProducerBatch, int, bool] | None:
        """`append`'s hot path: a record without key or headers that joins the open batch of
        its partition (the sticky one for `partition == UNKNOWN_PARTITION`), with the same
        effects as `append` there. One call, no per-record objects.

        Args:
            timestamp_ms: the record's CreateTime, >= 0.

        Returns:
            (batch, the record's index in it, a batch of the partition is ready: wake the
            sender), or None when the record needs more than that (a new batch, a first
            sticky choice, a per-record size check): call `append`.
        """
        partitions = self._topics.get(topic)
        if partitions is None or not self._fast_path:
            return None
        if partition < 0:
            sticky = self._sticky_states.get(topic)
            if sticky is None:
                return None
            partition = sticky.partition
            if not 0 <= partition < num_partitions:
                return None
        else:
            sticky = None
        dq = partitions.get(partition)
        if not dq:
            return None
        batch = dq[-1]
        if batch.state is not _OPEN:
            return None
        builder = batch.builder
        assert builder is not None
        before = builder.size
        batch_size = self._batch_size
        index = builder.append_value(value, timestamp_ms, batch_size)
        if index < 0:
            return None
        batch.record_count += 1
        after = builder.size
        full = after >= batch_size
        if full:
            _transition(batch, "seal")
        if sticky is not None:
            produced = sticky.produced_bytes = sticky.produced_bytes + after - before
            limit = self._sticky_limit
            if produced >= limit and (full or produced >= 2 * limit):  # switch (rare)
                self._partitioner.update_partition_info(
                    topic, partition, 0, full, num_partitions, available_partitions
                )
        self._memory_waiting = False
        return batch, index, full or len(dq) > 1

    def _check_record_size(self, tp: TopicPartition, size: int) -> None:
        # KafkaProducer.ensureValidRecordSize
        if size > self.config.max_request_size:
            raise RecordTooLargeError(
                f"record for {tp} is {size} bytes serialized, larger than max.request.size="
                f"{self.config.max_request_size}"
            )
        if size > self.config.buffer_memory:
            raise RecordTooLargeError(
                f"record for {tp} is {size} bytes serialized, larger than buffer.memory="
                f"{self.config.buffer_memory}"
            )

    def _new_deque(self, tp: TopicPartition) -> deque[ProducerBatch]:
        dq: deque[ProducerBatch] = deque()
        self._deques[tp] = dq
        self._topics.setdefault(tp.topic, {})[tp.partition] = dq
        return dq

    def _new_batch(
        self, tp: TopicPartition, allocation: int, now_ms: int, created_ms: int | None = None
    ) -> ProducerBatch:
        created = now_ms if created_ms is None else created_ms
        builder = ProducerBatchBuilder(
            self.config.compression_type,
            self.config.compression_level,
            self.config.transactional,
        )
        batch = ProducerBatch(
            batch_id=self._next_batch_id,
            topic_partition=tp,
            created_ms=created,
            delivery_deadline_ms=created + self.config.delivery_timeout_ms,
            allocated_bytes=allocation,
            builder=builder,
            last_attempt_ms=created,
        )
        self._next_batch_id += 1
        self._buffer_used += allocation
        self._incomplete[batch.batch_id] = batch
        if batch.delivery_deadline_ms < self._deadline_floor:
            self._deadline_floor = batch.delivery_deadline_ms
        return batch

    # -- memory -----------------------------------------------------------------------------

    def buffer_available(self) -> int:
        """Bytes of `buffer.memory` not held by unfinished batches."""
        return self.config.buffer_memory - self._buffer_used

    @property
    def buffer_used(self) -> int:
        return self._buffer_used

    def _release(self, batch: ProducerBatch) -> None:
        self._buffer_used -= batch.allocated_bytes
        batch.allocated_bytes = 0
        assert self._buffer_used >= 0

    # -- ready ------------------------------------------------------------------------------

    def ready(self, now_ms: int, leader_of: Mapping[TopicPartition, int | None]) -> ReadyCheck:
        """Which brokers have sendable data (Kafka's `RecordAccumulator.ready`/`batchReady`).

        Also refreshes the adaptive partitioner's load stats from queue lengths, as Kafka's
        `partitionReady` does.

        Args:
            leader_of: the leader broker of each known partition (None or absent: no leader).
        """
        if self.config.enable_idempotence and not self.has_producer_id:
            # Nothing can be drained before InitProducerId answers (`needs_producer_id`).
            return ReadyCheck((), None, ())
        ready_nodes: set[int] = set()
        unknown_topics: set[str] = set()
        next_delay: int | None = None
        sendable_anyway = (
            self._memory_waiting or self._closed or self._flushes_in_progress > 0
        )
        linger = self.config.linger_ms
        availability_timeout = self.config.partitioner_availability_timeout_ms
        for topic, partitions in self._topics.items():
            num_partitions = self._num_partitions.get(topic, 0)
            collect = (
                self.config.adaptive_partitioning
                and num_partitions > 0
                and len(partitions) >= num_partitions
            )
            queue_sizes: list[int] = []
            partition_ids: list[int] = []
            for partition, dq in partitions.items():
                tp = TopicPartition(topic, partition)
                leader = leader_of.get(tp)
                if not dq:
                    if collect and leader is not None:
                        queue_sizes.append(0)
                        partition_ids.append(partition)
                    continue
                if leader is None:
                    unknown_topics.add(topic)
                    continue
                if collect and not (
                    availability_timeout > 0
                    and self._node_ready_ms.get(leader, 0) - self._node_drain_ms.get(leader, 0)
                    > availability_timeout
                ):
                    queue_sizes.append(len(dq))
                    partition_ids.append(partition)
                if leader in ready_nodes or self._is_muted(tp):
                    continue
                first = dq[0]
                waited = now_ms - first.last_attempt_ms
                backing_off = _backing_off(first, waited, leader)
                wait_ms = first.retry_backoff_ms if backing_off else linger
                full = len(dq) > 1 or first.state is not BatchState.OPEN
                if (full or waited >= wait_ms or sendable_anyway) and not backing_off:
                    ready_nodes.add(leader)
                else:
                    left = max(wait_ms - waited, 0)
                    next_delay = left if next_delay is None else min(next_delay, left)
            if collect:
                self._partitioner.update_partition_load_stats(
                    topic, queue_sizes, partition_ids, len(partitions)
                )
            elif self.config.adaptive_partitioning:
                self._partitioner.update_partition_load_stats(topic, None)
        for node in ready_nodes:
            self._node_ready_ms[node] = now_ms
        return ReadyCheck(tuple(sorted(ready_nodes)), next_delay, tuple(sorted(unknown_topics)))

    def _is_muted(self, tp: TopicPartition) -> bool:
        return self._guarantee_order and self._on_wire.get(tp, 0) > 0

    # -- drain ------------------------------------------------------------------------------

    def drain(
        self,
        now_ms: int,
        node_ids: Iterable[int],
        max_request_size: int,
        leader_of: Mapping[TopicPartition, int | None],
    ) -> dict[int, list[ProducerBatch]]:
        """Take batches for the given brokers: at most one per partition, each broker's up to
        `max_request_size` bytes (a single larger batch still goes alone). Kafka's `drain` /
        `drainBatchesForOneNode`.

        Pass only brokers that can take another request (max.in.flight per connection). The
        drained batches are IN_FLIGHT; their `data` is the encoded RecordBatch to send.

        Returns:
            {node: batches}, nodes in ascending order, only nodes with something to send.
        """
        nodes = sorted(set(node_ids))
        by_node: dict[int, list[TopicPartition]] = {node: [] for node in nodes}
        for tp, dq in self._deques.items():
            if dq:
                leader = leader_of.get(tp)
                if leader is not None and leader in by_node:
                    by_node[leader].append(tp)
        drained: dict[int, list[ProducerBatch]] = {}
        for node in nodes:
            self._node_drain_ms[node] = now_ms
            parts = sorted(by_node[node])
            if parts:
                batches = self._drain_node(node, parts, max_request_size, now_ms)
                if batches:
                    drained[node] = batches
        return drained

    def _drain_node(
        self, node: int, parts: list[TopicPartition], max_size: int, now_ms: int
    ) -> list[ProducerBatch]:
        # Start where the previous drain of this node stopped, so no partition starves.
        mark = self._drain_from.get(node)
        start = bisect_left(parts, mark) % len(parts) if mark is not None else 0
        ready: list[ProducerBatch] = []
        size = 0
        stopped_at: TopicPartition | None = None
        for i in range(len(parts)):
            tp = parts[(start + i) % len(parts)]
            if self._is_muted(tp):
                continue
            dq = self._deques[tp]
            if not dq:
                continue
            first = dq[0]
            if _backing_off(first, now_ms - first.last_attempt_ms, node):
                continue
            if ready and size + first.estimated_size_in_bytes > max_size:
                stopped_at = tp
                break
            if self.config.enable_idempotence and self._should_stop_drain(first, tp):
                # Kafka breaks out of the whole node here; skipping only this partition keeps
                # the others flowing while one waits for its retry's turn.
                continue
            dq.popleft()
            self._start_attempt(first, now_ms)
            first.attempt_leader = node
            size += len(first.data) if first.data is not None else 0
            ready.append(first)
        if stopped_at is not None:
            self._drain_from[node] = stopped_at
        else:
            self._drain_from[node] = parts[(start + 1) % len(parts)]
        return ready

    def _should_stop_drain(self, first: ProducerBatch, tp: TopicPartition) -> bool:
        """Kafka's `shouldStopDrainBatchesForPartition` for the idempotent producer."""
        sequences = self._sequences
        if not sequences.producer_id_and_epoch.is_valid:
            return True
        if tp in self._rewrite_sequences:
            return True  # renumbered once the new epoch is known and nothing is on the wire
        if not first.has_sequence and sequences.is_stale(tp):
            # New epoch: restart at 0, but only once nothing numbered under the old one is
            # unfinished.
            if not self._can_restart_sequences(tp):
                return True
            self._restart_sequences(tp)
        if not first.has_sequence and sequences.window_size(tp) >= MAX_IN_FLIGHT_WINDOW:
            return True
        first_in_flight = sequences.first_in_flight_sequence(tp)
        return (
            first.has_sequence
            and first_in_flight != NO_SEQUENCE
            and first.base_sequence != first_in_flight
        )

    def _start_attempt(self, batch: ProducerBatch, now_ms: int) -> None:
        """Seal, number and encode a batch leaving its queue (Kafka: setProducerState, close,
        drained)."""
        tp = batch.topic_partition
        _transition(batch, "drain")
        numbered = False
        if self.config.enable_idempotence and not batch.has_sequence:
            ids = self._sequences.producer_id_and_epoch
            batch.producer_id = ids.producer_id
            batch.producer_epoch = ids.epoch
            batch.base_sequence = self._sequences.assign(tp, batch.batch_id, batch.record_count)
            numbered = True
        if batch.data is None:
            # First drain: encode with the producer state at once (no re-stamp, one CRC).
            builder = batch.builder
            assert builder is not None
            batch.data = builder.build(batch.producer_id, batch.producer_epoch,
                                       batch.base_sequence)
            batch.builder = None
        elif numbered:
            self._stamp(batch)
        batch.drained_ms = now_ms
        self._on_wire[tp] = self._on_wire.get(tp, 0) + 1

    @staticmethod
    def _stamp(batch: ProducerBatch) -> None:
        """Write producer id, epoch and base sequence into the batch bytes and fix the CRC.

        The builder takes these at construction, but Kafka assigns sequences at drain time
        (`ProducerBatch.setProducerState`); the fields are covered by the CRC, so recompute it.
        """
        assert batch.data is not None
        buf = bytearray(batch.data)
        _PRODUCER_STATE.pack_into(
            buf, PRODUCER_ID_OFFSET, batch.producer_id, batch.producer_epoch, batch.base_sequence
        )
        _CRC.pack_into(buf, CRC_OFFSET, compute_crc(buf))
        batch.data = bytes(buf)

    # -- outcomes ---------------------------------------------------------------------------

    def complete(self, batch: ProducerBatch) -> bool:
        """The broker acknowledged the batch. Frees its memory.

        Returns:
            False if the batch had already finished (expired or aborted meanwhile): ignore the
            response, as Kafka's `ProducerBatch.done` does.
        """
        if batch.is_done:
            return False
        tp = batch.topic_partition
        _transition(batch, "complete")
        self._leave_wire(tp)
        self._finish(batch)
        if batch.has_sequence:
            self._sequences.remove(tp, batch.batch_id, acked=True)
        self._maybe_restart_sequences(tp)
        return True

    def reenqueue(self, batch: ProducerBatch, now_ms: int) -> bool:
        """Put a batch that failed with a retriable error back at the front of its queue,
        with a fresh backoff (Kafka's `reenqueue`; KIP-580 jitter from the injected rng).

        The caller checks retries and the delivery deadline first (`fail` otherwise). With
        idempotence the batch keeps its sequence and goes back in sequence order.

        Returns:
            False if the batch had already finished (ignore).
        """
        if batch.is_done:
            return False
        tp = batch.topic_partition
        _transition(batch, "reenqueue")
        self._leave_wire(tp)
        batch.retry_backoff_ms = retry_backoff_ms(
            batch.attempts, self.config.retry_backoff_ms, self.config.retry_backoff_max_ms,
            self._rng,
        )
        batch.attempts += 1
        batch.last_attempt_ms = now_ms
        self._insert_in_order(batch)
        self._maybe_restart_sequences(tp)
        return True

    def _insert_in_order(self, batch: ProducerBatch) -> None:
        """Front of the queue; with sequences, after the queued batches numbered before it
        (Kafka's `insertInSequenceOrder`)."""
        tp = batch.topic_partition
        dq = self._deques[tp]
        if not batch.has_sequence:
            dq.appendleft(batch)
            return
        rank = {bid: i for i, bid in enumerate(self._sequences.in_flight_batch_ids(tp))}
        mine = rank[batch.batch_id]
        position = 0
        for queued in dq:
            if not queued.has_sequence or rank.get(queued.batch_id, -1) > mine:
                break
            position += 1
        dq.insert(position, batch)

    def fail(
        self, batch: ProducerBatch, error: BaseException, *, sequence_gap: bool = False
    ) -> bool:
        """The batch failed for good (non-retriable error, retries or time exhausted). It
        leaves its queue if it is queued, and frees its memory.

        Args:
            sequence_gap: the broker proved the batch is not in the log while it was its
                partition's oldest unfinished batch (OUT_OF_ORDER_SEQUENCE_NUMBER, or a
                non-retriable error on its only attempt): then no later batch of the partition
                is either, and those are renumbered under the new epoch. Otherwise they keep
                their numbering until they finish.

        Returns:
            False if it had already finished (ignore).
        """
        if batch.is_done:
            return False
        tp = batch.topic_partition
        was_on_wire = batch.state is BatchState.IN_FLIGHT
        if not was_on_wire:
            self._deques[tp].remove(batch)
        _transition(batch, "fail")
        batch.error = error
        if was_on_wire:
            self._leave_wire(tp)
        self._finish(batch)
        if batch.has_sequence:
            # A hole in the sequence space: the broker will refuse what follows (KIP-360).
            self._sequences.remove(tp, batch.batch_id, acked=False)
            self.epoch_bump_required = True
            if sequence_gap:
                self._rewrite_sequences.add(tp)
        self._maybe_restart_sequences(tp)
        return True

    def _leave_wire(self, tp: TopicPartition) -> None:
        count = self._on_wire[tp] - 1
        assert count >= 0
        if count:
            self._on_wire[tp] = count
        else:
            del self._on_wire[tp]

    def _finish(self, batch: ProducerBatch) -> None:
        del self._incomplete[batch.batch_id]
        self._release(batch)
        batch.builder = None

    def expire_batches(self, now_ms: int) -> list[ProducerBatch]:
        """Fail every batch past its delivery deadline (`delivery.timeout.ms`, Kafka's
        `expiredBatches` + `Sender.getExpiredInflightBatches`), queued or on the wire.

        Returns:
            The expired batches (state FAILED, `error` a KafkaTimeoutError), by batch id.
        """
        if now_ms < self._deadline_floor:
            return []
        expired = []
        floor = math.inf
        for batch in self._incomplete.values():
            deadline = batch.delivery_deadline_ms
            if now_ms >= deadline:
                expired.append(batch)
            elif deadline < floor:
                floor = deadline
        self._deadline_floor = floor
        for batch in expired:
            waited = now_ms - batch.created_ms
            error = KafkaTimeoutError(
                f"Expiring {batch.record_count} record(s) for {batch.topic_partition}: "
                f"{waited} ms has passed since batch creation",
                pending=batch.record_count,
            )
            self.fail(batch, error)
        return expired

    def split(
        self, batch: ProducerBatch, now_ms: int, max_batch_size: int | None = None
    ) -> tuple[SplitPart, ...]:
        """Split an IN_FLIGHT batch refused with MESSAGE_TOO_LARGE into smaller batches,
        queued at the front in order (Kafka's `splitAndReenqueue`). Not a retry: the parts keep
        the creation time (so the delivery deadline) and, under idempotence, the original's
        sequence range.

        Parts hold at most `max_batch_size` bytes (default batch.size). Kafka splits at
        batch.size, which only helps when compression fooled the size estimate; when the
        batch already fits that bound, the bound halves so the split always makes progress.

        Returns:
            The parts in record order; the façade moves each record's future to its part.

        Raises:
            AssertionError: the batch is not in flight or has fewer than 2 records.
        """
        assert batch.state is BatchState.IN_FLIGHT and batch.data is not None
        assert batch.record_count > 1, f"cannot split a batch of {batch.record_count} record"
        tp = batch.topic_partition
        limit = self.config.batch_size if max_batch_size is None else max_batch_size
        if len(batch.data) <= limit:
            limit = len(batch.data) // 2
        parts: list[SplitPart] = []
        current: ProducerBatch | None = None
        builder: ProducerBatchBuilder | None = None
        for index, record in enumerate(RecordBatch(batch.data)):
            if current is None or builder is None or not builder.has_room_for(
                record.key, record.value, record.headers, limit
            ):
                current = self._new_batch(tp, 0, now_ms, created_ms=batch.created_ms)
                current.is_split_batch = True
                parts.append(SplitPart(current, index))
                builder = current.builder
            assert builder is not None
            builder.append(record.value, record.key, record.headers, record.timestamp)
            current.record_count += 1
        _transition(batch, "split")
        self._leave_wire(tp)
        # The original's memory moves to the first part: the bytes are still held.
        parts[0].batch.allocated_bytes = batch.allocated_bytes
        batch.allocated_bytes = 0
        del self._incomplete[batch.batch_id]
        for part in parts:
            _transition(part.batch, "seal")
        if batch.has_sequence:
            sequences = self._sequences.replace(
                tp, batch.batch_id, [(p.batch.batch_id, p.batch.record_count) for p in parts]
            )
            for part, sequence in zip(parts, sequences):
                piece = part.batch
                assert piece.builder is not None
                piece.producer_id = batch.producer_id
                piece.producer_epoch = batch.producer_epoch
                piece.base_sequence = sequence
                piece.data = piece.builder.build(batch.producer_id, batch.producer_epoch,
                                                 sequence)
                piece.builder = None
            for part in reversed(parts):
                self._insert_in_order(part.batch)
        else:
            self._deques[tp].extendleft(part.batch for part in reversed(parts))
        self._maybe_restart_sequences(tp)
        return tuple(parts)

    # -- idempotence ------------------------------------------------------------------------

    @property
    def has_producer_id(self) -> bool:
        return self._sequences.producer_id_and_epoch.is_valid

    @property
    def needs_producer_id(self) -> bool:
        """Idempotent and without a producer id (or due an epoch bump): send InitProducerId
        before draining anything."""
        return self.config.enable_idempotence and (
            not self.has_producer_id or self.epoch_bump_required
        )

    @property
    def sequences(self) -> SequenceTracker:
        return self._sequences

    def set_producer_id_and_epoch(self, producer_id: int, epoch: int) -> None:
        """InitProducerId answered (first time or after a bump). Partitions restart their
        sequences at 0 under the new epoch as soon as nothing of theirs is on the wire."""
        self._sequences.set_producer_id_and_epoch(producer_id, epoch)
        self.epoch_bump_required = False
        for tp in sorted(self._deques):
            self._maybe_restart_sequences(tp)

    def _can_restart_sequences(self, tp: TopicPartition) -> bool:
        """Nothing of the partition is on the wire, and every unfinished numbered batch of it
        is known not to be in the log (none, or a proven gap): renumbering writes no record
        twice."""
        if self._on_wire.get(tp, 0) > 0:
            return False
        return tp in self._rewrite_sequences or not self._sequences.has_in_flight(tp)

    def _maybe_restart_sequences(self, tp: TopicPartition) -> None:
        if self._sequences.is_stale(tp) and self._can_restart_sequences(tp):
            self._restart_sequences(tp)

    def _restart_sequences(self, tp: TopicPartition) -> None:
        """Kafka's `startSequencesAtBeginning`: renumber the queued retries from 0 (only those
        of a proven gap: `_can_restart_sequences`)."""
        self._rewrite_sequences.discard(tp)
        ids = self._sequences.producer_id_and_epoch
        for batch_id, sequence in self._sequences.restart_sequences(tp):
            batch = self._incomplete[batch_id]
            batch.producer_id = ids.producer_id
            batch.producer_epoch = ids.epoch
            batch.base_sequence = sequence
            self._stamp(batch)

    # -- flush, close, abort ----------------------------------------------------------------

    def begin_flush(self) -> tuple[int, ...]:
        """Make every queued batch sendable now (Kafka's `beginFlush`).

        Returns:
            The ids of the batches unfinished at this moment, ascending: the flush is over
            when all of them are (the façade waits on their results), then call `end_flush`.
        """
        self._flushes_in_progress += 1
        return tuple(sorted(self._incomplete))

    def end_flush(self) -> None:
        assert self._flushes_in_progress > 0
        self._flushes_in_progress -= 1

    @property
    def flush_in_progress(self) -> bool:
        return self._flushes_in_progress > 0

    def close(self) -> None:
        """No more appends; everything queued becomes sendable (Kafka's `close`)."""
        self._closed = True
        self._fast_path = False

    @property
    def closed(self) -> bool:
        return self._closed

    def abort_all(self, error: BaseException) -> list[ProducerBatch]:
        """Fail every unfinished batch with `error` (Kafka's `abortIncompleteBatches`; after
        the shell stopped sending, or on a fatal error).

        Returns:
            The aborted batches, by batch id.
        """
        aborted = [self._incomplete[bid] for bid in sorted(self._incomplete)]
        for batch in aborted:
            self.fail(batch, error)
        return aborted

    # -- queries ----------------------------------------------------------------------------

    def has_undrained(self) -> bool:
        """Some batch is queued (not on the wire)."""
        return any(self._deques.values())

    def has_incomplete(self) -> bool:
        """Some batch is unfinished (queued or on the wire)."""
        return bool(self._incomplete)

    def incomplete_batch_ids(self) -> tuple[int, ...]:
        return tuple(sorted(self._incomplete))

    def incomplete_partitions(self) -> set[TopicPartition]:
        """Partitions with an unfinished batch (queued or on the wire)."""
        return {b.topic_partition for b in self._incomplete.values()}

    def batch(self, batch_id: int) -> ProducerBatch | None:
        """An unfinished batch by id."""
        return self._incomplete.get(batch_id)

    def queued(self, tp: TopicPartition) -> tuple[ProducerBatch, ...]:
        """The queue of one partition, front first."""
        return tuple(self._deques.get(tp, ()))

    def in_flight(self, tp: TopicPartition | None = None) -> list[ProducerBatch]:
        """Batches on the wire (of one partition, or all), by batch id."""
        return [
            b
            for b in self._incomplete.values()
            if b.state is BatchState.IN_FLIGHT and (tp is None or b.topic_partition == tp)
        ]

    def next_wakeup_ms(self, now_ms: int) -> int | None:
        """When the shell must next call `ready`/`expire_batches` even with no other input:
        the earliest linger or backoff end of a queue head, or delivery deadline. None if
        nothing is unfinished. May be <= now_ms when something is sendable now."""
        wake: int | None = None
        linger = self.config.linger_ms
        for tp, dq in self._deques.items():
            if dq and not self._is_muted(tp):
                first = dq[0]
                wait = first.retry_backoff_ms if first.attempts > 0 else linger
                if first.state is not BatchState.OPEN and first.attempts == 0:
                    wait = 0
                at = first.last_attempt_ms + wait
                wake = at if wake is None else min(wake, at)
        if self._incomplete:
            # A lower bound: waking early only makes `expire_batches` refresh it.
            floor = self._deadline_floor
            at = int(floor) if floor != math.inf else None
            if at is not None:
                wake = at if wake is None else min(wake, at)
        return wake
