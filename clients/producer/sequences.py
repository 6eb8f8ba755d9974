"""Idempotent-producer sequence bookkeeping on the client (KIP-98, KIP-360).

Kafka keeps this in `TransactionManager` (`TxnPartitionMap` / `TxnPartitionEntry`); here it is a
small core owned by the `RecordAccumulator`. Per partition it tracks:

- `next_sequence`: the base sequence the next *new* batch gets when it is first drained. It
  starts at 0 and advances by the batch's record count, wrapping from 2147483647 to 0
  (KAFKA_SEMANTICS.md §3.5).
- the *in-flight window*: every numbered batch from the oldest unfinished one on, in sequence
  (assignment) order, whether on the wire, queued for a retry, or already acknowledged behind
  an unfinished one. The first one's base sequence (`first_in_flight_sequence`) gates retries:
  a retried batch is sent only when it is the oldest unfinished one, so batches reach the
  broker in sequence order (`RecordAccumulator.shouldStopDrainBatchesForPartition`). The
  window's length (`window_size`) bounds how far the log may have moved past a batch whose
  fate is unknown; the broker remembers only its last 5 batches.
- the producer id and epoch its sequences belong to. After an epoch bump the partition keeps
  its old numbering until its in-flight batches are done; then sequences restart at 0 under
  the new epoch (`restart_sequences`; Kafka's `maybeUpdateProducerIdAndEpoch` /
  `startSequencesAtBeginning`).

The tracker knows batches only by id and record count; the accumulator stamps the numbers
onto batch bytes. It never reads the clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from clients.types import TopicPartition

__all__ = [
    "NO_PRODUCER_EPOCH",
    "NO_PRODUCER_ID",
    "NO_SEQUENCE",
    "ProducerIdAndEpoch",
    "SequenceTracker",
    "increment_sequence",
]

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1
INT32_MAX = 0x7FFFFFFF


def increment_sequence(sequence: int, increment: int) -> int:
    """`DefaultRecordBatch.incrementSequence`: add, wrapping past Int.MAX to 0."""
    if sequence > INT32_MAX - increment:
        return increment - (INT32_MAX - sequence) - 1
    return sequence + increment


@dataclass(frozen=True, slots=True)
class ProducerIdAndEpoch:
    """Kafka's `ProducerIdAndEpoch`; (-1, -1) until InitProducerId answers."""

    producer_id: int = NO_PRODUCER_ID
    epoch: int = NO_PRODUCER_EPOCH

    @property
    def is_valid(self) -> bool:
        return self.producer_id >= 0


@dataclass(slots=True)
class _InFlight:
    batch_id: int
    base_sequence: int
    record_count: int
    acked: bool = False


@dataclass(slots=True)
class _PartitionEntry:
    producer_id_and_epoch: ProducerIdAndEpoch
    next_sequence: int = 0
    last_acked_sequence: int = NO_SEQUENCE
    # invariant: in assignment order, contiguous sequences; the first entry is not acked
    in_flight: list[_InFlight] = field(default_factory=list)


class SequenceTracker:
    """Next sequence and in-flight batches per partition, for one producer id and epoch."""

    def __init__(self) -> None:
        self.producer_id_and_epoch = ProducerIdAndEpoch()
        self._partitions: dict[TopicPartition, _PartitionEntry] = {}

    def _entry(self, tp: TopicPartition) -> _PartitionEntry:
        entry = self._partitions.get(tp)
        if entry is None:
            entry = self._partitions[tp] = _PartitionEntry(self.producer_id_and_epoch)
        return entry

    # -- producer id / epoch --

    def set_producer_id_and_epoch(self, producer_id: int, epoch: int) -> None:
        """Adopt a new id/epoch (InitProducerId answered). Each partition keeps its old
        numbering until the accumulator calls `restart_sequences` for it, once nothing of it is
        on the wire."""
        self.producer_id_and_epoch = ProducerIdAndEpoch(producer_id, epoch)

    def is_stale(self, tp: TopicPartition) -> bool:
        """The partition's sequences belong to an older producer id or epoch."""
        entry = self._partitions.get(tp)
        return entry is not None and entry.producer_id_and_epoch != self.producer_id_and_epoch

    def restart_sequences(self, tp: TopicPartition) -> list[tuple[int, int]]:
        """Renumber the partition's unfinished batches from 0 under the current id/epoch
        (Kafka's `startSequencesAtBeginning`), for when none of them is on the wire.

        Returns:
            (batch_id, new base sequence) for each of them, in order.
        """
        entry = self._entry(tp)
        entry.in_flight = [f for f in entry.in_flight if not f.acked]
        sequence = 0
        renumbered = []
        for flight in entry.in_flight:
            flight.base_sequence = sequence
            renumbered.append((flight.batch_id, sequence))
            sequence = increment_sequence(sequence, flight.record_count)
        entry.producer_id_and_epoch = self.producer_id_and_epoch
        entry.next_sequence = sequence
        entry.last_acked_sequence = NO_SEQUENCE
        return renumbered

    # -- sequences --

    def next_sequence(self, tp: TopicPartition) -> int:
        entry = self._partitions.get(tp)
        return entry.next_sequence if entry is not None else 0

    def last_acked_sequence(self, tp: TopicPartition) -> int:
        entry = self._partitions.get(tp)
        return entry.last_acked_sequence if entry is not None else NO_SEQUENCE

    def assign(self, tp: TopicPartition, batch_id: int, record_count: int) -> int:
        """Give a new batch its base sequence and track it as in flight.

        Returns:
            The base sequence.
        """
        assert record_count > 0
        entry = self._entry(tp)
        base = entry.next_sequence
        entry.next_sequence = increment_sequence(base, record_count)
        entry.in_flight.append(_InFlight(batch_id, base, record_count))
        return base

    def first_in_flight_sequence(self, tp: TopicPartition) -> int:
        """Base sequence of the oldest unfinished batch, NO_SEQUENCE if none."""
        entry = self._partitions.get(tp)
        if entry is None or not entry.in_flight:
            return NO_SEQUENCE
        return entry.in_flight[0].base_sequence

    def has_in_flight(self, tp: TopicPartition) -> bool:
        """Some numbered batch of the partition is unfinished."""
        entry = self._partitions.get(tp)
        return entry is not None and bool(entry.in_flight)

    def window_size(self, tp: TopicPartition) -> int:
        """Numbered batches from the oldest unfinished one on (acknowledged ones included)."""
        entry = self._partitions.get(tp)
        return len(entry.in_flight) if entry is not None else 0

    def in_flight_batch_ids(self, tp: TopicPartition) -> tuple[int, ...]:
        entry = self._partitions.get(tp)
        return tuple(f.batch_id for f in entry.in_flight) if entry is not None else ()

    def remove(self, tp: TopicPartition, batch_id: int, *, acked: bool) -> None:
        """A batch is finished: acknowledged (`acked`) or failed for good."""
        entry = self._partitions.get(tp)
        if entry is None:
            return
        flights = entry.in_flight
        for i, flight in enumerate(flights):
            if flight.batch_id == batch_id:
                if not acked:
                    del flights[i]  # a hole: an epoch bump follows (see RecordAccumulator)
                    return
                flight.acked = True
                last = increment_sequence(flight.base_sequence, flight.record_count - 1)
                entry.last_acked_sequence = last
                while flights and flights[0].acked:
                    del flights[0]
                return

    def replace(self, tp: TopicPartition, batch_id: int, parts: list[tuple[int, int]]) -> list[int]:
        """A batch was split: its place in the order goes to `parts` ((batch_id, count) in
        order), which keep its sequence range.

        Returns:
            The base sequence of each part.
        """
        entry = self._entry(tp)
        for i, flight in enumerate(entry.in_flight):
            if flight.batch_id == batch_id:
                assert sum(count for _, count in parts) == flight.record_count
                sequence = flight.base_sequence
                new = []
                for part_id, count in parts:
                    new.append(_InFlight(part_id, sequence, count))
                    sequence = increment_sequence(sequence, count)
                entry.in_flight[i : i + 1] = new
                return [f.base_sequence for f in new]
        raise AssertionError(f"batch {batch_id} of {tp} is not in flight")
