"""Per-partition idempotent-producer state (Kafka's `ProducerStateManager`, KIP-98 / KIP-360).

Theory of operation
-------------------
One `ProducerStateTable` per partition replica, on leaders and followers alike. For every
producer id it keeps a `ProducerStateEntry`: the producer epoch and metadata of the producer's
last `NUM_BATCHES_TO_RETAIN` (5) batches (last sequence, last offset, offset delta, timestamp),
which is what the broker needs to drop retried duplicates and refuse gaps (§3.5).

It never touches the log, a file or the clock. The broker shell drives it:

  leader (Produce):   validate(...)          -> Accept | Duplicate, or raises; no mutation
                      <append to the log; the log assigns offsets>
                      record_append(...)     -> the batch joins the cache
  follower / replay:  apply_replicated_batch(...)   (never raises; stale epochs only logged)

`validate` and `record_append` are split so a failed log append leaves the state untouched.
Leaders and followers run the same update (`_update`), so a follower that replicated the same
batches holds an identical table and dedupes correctly after a failover.

The leader's check (`ProducerAppendInfo.checkSequence` / `checkProducerEpoch`, and
`ProducerStateEntry.findDuplicateBatch`), in this order:
  1. same epoch and a cached batch with exactly this (first_seq, last_seq) -> Duplicate (the
     response carries the original offsets and NONE);
  2. epoch below the stored epoch                       -> INVALID_PRODUCER_EPOCH (47);
  3. epoch above the stored epoch: base sequence must be 0 (unless no state at all) else
     OUT_OF_ORDER_SEQUENCE_NUMBER (45); the cached batches are cleared on the append;
  4. same epoch: base sequence must be last_seq + 1 (0 after Int.MAX), unless the producer is
     unknown (no entry: expired or removed by retention) -- KIP-360 accepts any sequence.
A retry older than the five cached batches therefore gets OUT_OF_ORDER_SEQUENCE_NUMBER.

States of one producer id: UNKNOWN (no entry) -> KNOWN(epoch, ≤5 batches) on its first batch;
an epoch change clears the batches; `remove_expired`, `truncate_head` and `truncate_to` take it
back to UNKNOWN.

Snapshots (Kafka format v1, `<20-digit offset>.snapshot`): big-endian
  version int16 (=1) | crc uint32 (CRC-32C of everything after it) |
  count int32 | count x (producer_id int64, epoch int16, last_sequence int32, last_offset int64,
                         offset_delta int32, timestamp int64, coordinator_epoch int32,
                         current_txn_first_offset int64)
A snapshot keeps only the *last* batch of each producer; `snapshot_offset` (the file name) is
`map_end_offset`, the offset after the last batch applied. Restart = `load_snapshot` of the
newest snapshot at or below the log end, then `apply_replicated_batch` for every batch at or
above the snapshot offset (batches below `map_end_offset` are skipped, so over-replay is safe).

Transactions are out of scope (issue 4): `is_transactional` batches record
`current_txn_first_offset` for snapshot fidelity, but no markers end them here.
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import crc32c

from proto.errors import (
    ErrorCode,
    InvalidProducerEpochError,
    OutOfOrderSequenceNumberError,
    RafkaError,
)

log = logging.getLogger(__name__)

NUM_BATCHES_TO_RETAIN = 5  # ProducerStateEntry.NUM_BATCHES_TO_RETAIN
PRODUCER_ID_EXPIRATION_MS_DEFAULT = 86_400_000  # producer.id.expiration.ms (KIP-854)
INT32_MAX = 2_147_483_647
NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1
NO_OFFSET = -1

SNAPSHOT_VERSION = 1
_HEADER = struct.Struct(">hI")  # version, crc
_COUNT = struct.Struct(">i")
_ENTRY = struct.Struct(">qhiqiqiq")  # 46 bytes per producer


class CorruptSnapshotError(RafkaError):
    """A producer-state snapshot failed its version, length, CRC or field checks.

    Never sent on the wire: the caller deletes the snapshot and rebuilds the state from an older
    snapshot or from the log (Kafka's `CorruptSnapshotException`).
    """

    code = ErrorCode.CORRUPT_MESSAGE


# -- outputs ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accept:
    """Append the batch; then call `record_append` with the offsets the log assigned."""


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A retry of a batch still cached: do not append; answer NONE with the original offsets.

    For acks=all the shell still parks the request until HW > last_offset (Kafka does).
    """

    base_offset: int
    last_offset: int
    timestamp_ms: int


ValidationResult = Accept | Duplicate
ACCEPT = Accept()


# -- state ------------------------------------------------------------------------------------


def _decrement_sequence(sequence: int, decrement: int) -> int:
    """`DefaultRecordBatch.decrementSequence`: sequence - decrement with wrap below 0."""
    if sequence < decrement:
        return sequence - decrement + INT32_MAX + 1
    return sequence - decrement


def in_sequence(last_sequence: int, next_sequence: int) -> bool:
    """`ProducerAppendInfo.inSequence`: next == last + 1, or 0 right after Int.MAX."""
    return next_sequence == last_sequence + 1 or (
        next_sequence == 0 and last_sequence == INT32_MAX
    )


@dataclass(frozen=True, slots=True)
class BatchMetadata:
    """Kafka's `BatchMetadata`: what the cache keeps of one appended batch."""

    last_sequence: int
    last_offset: int
    offset_delta: int  # last_offset - base_offset
    timestamp_ms: int

    @property
    def first_sequence(self) -> int:
        return _decrement_sequence(self.last_sequence, self.offset_delta)

    @property
    def first_offset(self) -> int:
        return self.last_offset - self.offset_delta


@dataclass(slots=True)
class ProducerStateEntry:
    """Kafka's `ProducerStateEntry` for one producer id on one partition."""

    producer_id: int
    producer_epoch: int
    # invariant: len(batches) <= NUM_BATCHES_TO_RETAIN, oldest first, all of producer_epoch
    batches: deque[BatchMetadata] = field(default_factory=deque)
    coordinator_epoch: int = -1
    last_timestamp_ms: int = -1
    current_txn_first_offset: int = NO_OFFSET

    @property
    def last_sequence(self) -> int:
        return self.batches[-1].last_sequence if self.batches else NO_SEQUENCE

    @property
    def last_offset(self) -> int:
        return self.batches[-1].last_offset if self.batches else NO_OFFSET

    def find_duplicate(self, epoch: int, first_seq: int, last_seq: int) -> BatchMetadata | None:
        """`ProducerStateEntry.findDuplicateBatch`: same epoch and exact sequence range."""
        if epoch != self.producer_epoch:
            return None
        for batch in self.batches:
            if batch.first_sequence == first_seq and batch.last_sequence == last_seq:
                return batch
        return None

    def add_batch(self, epoch: int, batch: BatchMetadata) -> None:
        """`ProducerStateEntry.addBatch`: an epoch change clears the cache first."""
        if epoch != self.producer_epoch:
            self.batches.clear()
            self.producer_epoch = epoch
        self.batches.append(batch)
        while len(self.batches) > NUM_BATCHES_TO_RETAIN:
            self.batches.popleft()
        self.last_timestamp_ms = batch.timestamp_ms


@dataclass(frozen=True, slots=True)
class SnapshotEntry:
    """One producer in a v1 snapshot (its last batch only)."""

    producer_id: int
    producer_epoch: int
    last_sequence: int
    last_offset: int
    offset_delta: int
    timestamp_ms: int
    coordinator_epoch: int = -1
    current_txn_first_offset: int = NO_OFFSET


# -- snapshot codec ---------------------------------------------------------------------------


def encode_snapshot(entries: Iterable[SnapshotEntry]) -> bytes:
    """Kafka's producer snapshot format v1 (`ProducerStateManager.writeSnapshot`)."""
    items = sorted(entries, key=lambda e: e.producer_id)
    body = bytearray(_COUNT.pack(len(items)))
    for e in items:
        body += _ENTRY.pack(
            e.producer_id, e.producer_epoch, e.last_sequence, e.last_offset, e.offset_delta,
            e.timestamp_ms, e.coordinator_epoch, e.current_txn_first_offset,
        )
    return _HEADER.pack(SNAPSHOT_VERSION, crc32c.crc32c(bytes(body))) + bytes(body)


def decode_snapshot(data: bytes) -> list[SnapshotEntry]:
    """Parse and check a v1 snapshot (`ProducerStateManager.readSnapshot`).

    Raises:
        CorruptSnapshotError: short, wrong version, CRC mismatch, wrong length or bad fields.
    """
    if len(data) < _HEADER.size + _COUNT.size:
        raise CorruptSnapshotError(f"producer snapshot of {len(data)} bytes is too short")
    version, crc = _HEADER.unpack_from(data, 0)
    if version != SNAPSHOT_VERSION:
        raise CorruptSnapshotError(f"producer snapshot version {version} != {SNAPSHOT_VERSION}")
    body = bytes(data[_HEADER.size:])
    actual = crc32c.crc32c(body)
    if actual != crc:
        raise CorruptSnapshotError(
            f"producer snapshot CRC mismatch: stored {crc:#010x}, computed {actual:#010x}"
        )
    (count,) = _COUNT.unpack_from(body, 0)
    if count < 0 or len(body) != _COUNT.size + count * _ENTRY.size:
        raise CorruptSnapshotError(
            f"producer snapshot has {len(body)} body bytes for {count} entries"
        )
    out: list[SnapshotEntry] = []
    for i in range(count):
        e = SnapshotEntry(*_ENTRY.unpack_from(body, _COUNT.size + i * _ENTRY.size))
        if (e.producer_id < 0 or e.producer_epoch < 0 or e.last_sequence < 0
                or e.offset_delta < 0 or e.last_offset < e.offset_delta):
            raise CorruptSnapshotError(f"producer snapshot entry {i} is invalid: {e}")
        out.append(e)
    return out


# -- the table --------------------------------------------------------------------------------


class ProducerStateTable:
    """Idempotent-producer state of one partition replica. See the module docstring."""

    __slots__ = ("_label", "_producers", "_map_end_offset")

    def __init__(self, topic_partition: str = "", *, map_end_offset: int = 0) -> None:
        self._label = topic_partition
        self._producers: dict[int, ProducerStateEntry] = {}
        # invariant: every cached batch has last_offset < map_end_offset
        self._map_end_offset = map_end_offset

    # -- queries --

    @property
    def map_end_offset(self) -> int:
        """The offset after the last batch applied (Kafka's `mapEndOffset`)."""
        return self._map_end_offset

    def entry(self, producer_id: int) -> ProducerStateEntry | None:
        """The state of one producer (read-only for callers)."""
        return self._producers.get(producer_id)

    def producer_ids(self) -> list[int]:
        return sorted(self._producers)

    def __len__(self) -> int:
        return len(self._producers)

    def fingerprint(self) -> tuple[tuple[int, int, tuple[BatchMetadata, ...]], ...]:
        """A comparable view of the whole table (tests and simulation checkers)."""
        return tuple(
            (pid, e.producer_epoch, tuple(e.batches))
            for pid, e in sorted(self._producers.items())
        )

    # -- leader path --

    def validate(
        self,
        producer_id: int,
        producer_epoch: int,
        base_sequence: int,
        last_sequence: int,
        *,
        is_transactional: bool = False,
    ) -> ValidationResult:
        """Check one client batch before it is appended; changes nothing.

        Args:
            producer_id, producer_epoch, base_sequence, last_sequence: batch header fields
                (`RecordBatch.last_sequence` already wraps at Int.MAX).
            is_transactional: the batch's transactional bit (recorded only).

        Returns:
            ACCEPT for a batch to append (also for non-idempotent batches, producer id -1), or
            Duplicate with the original offsets of a cached retry.

        Raises:
            InvalidProducerEpochError: the epoch is older than the stored one.
            OutOfOrderSequenceNumberError: a gap, a new epoch not starting at 0, or a retry
                older than the cached batches.
        """
        del is_transactional  # transactions: scope only (module docstring)
        if producer_id == NO_PRODUCER_ID:
            return ACCEPT
        if base_sequence < 0 or last_sequence < 0:
            raise OutOfOrderSequenceNumberError(
                f"producer {producer_id} sent sequences {base_sequence}..{last_sequence} "
                f"to {self._label}: an idempotent batch needs sequences >= 0"
            )
        current = self._producers.get(producer_id)
        if current is None:
            return ACCEPT  # KIP-360: an unknown producer may start at any sequence
        duplicate = current.find_duplicate(producer_epoch, base_sequence, last_sequence)
        if duplicate is not None:
            return Duplicate(duplicate.first_offset, duplicate.last_offset, duplicate.timestamp_ms)
        self._check_producer_epoch(current, producer_epoch)
        self._check_sequence(current, producer_epoch, base_sequence)
        return ACCEPT

    def record_append(
        self,
        producer_id: int,
        producer_epoch: int,
        base_sequence: int,
        last_sequence: int,
        *,
        base_offset: int,
        last_offset: int,
        timestamp_ms: int,
        is_transactional: bool = False,
    ) -> None:
        """Add a batch the leader appended after `validate` returned ACCEPT.

        Args:
            base_offset, last_offset: offsets the log assigned to the batch.
            timestamp_ms: the batch's max timestamp (used for expiry).
        """
        self._update(producer_id, producer_epoch, base_sequence, last_sequence,
                     base_offset, last_offset, timestamp_ms, is_transactional)

    def check_and_update(
        self,
        producer_id: int,
        producer_epoch: int,
        base_sequence: int,
        last_sequence: int,
        *,
        base_offset: int,
        last_offset: int,
        timestamp_ms: int,
        is_transactional: bool = False,
    ) -> ValidationResult:
        """`validate` then, for ACCEPT, `record_append` with offsets known up front (tests)."""
        result = self.validate(producer_id, producer_epoch, base_sequence, last_sequence,
                               is_transactional=is_transactional)
        if isinstance(result, Accept):
            self.record_append(producer_id, producer_epoch, base_sequence, last_sequence,
                               base_offset=base_offset, last_offset=last_offset,
                               timestamp_ms=timestamp_ms, is_transactional=is_transactional)
        return result

    # -- replication / replay path --

    def apply_replicated_batch(
        self,
        producer_id: int,
        producer_epoch: int,
        base_sequence: int,
        last_sequence: int,
        *,
        base_offset: int,
        last_offset: int,
        timestamp_ms: int,
        is_transactional: bool = False,
    ) -> None:
        """Apply a batch read from the log (follower fetch, or replay after a snapshot).

        Never raises for sequence or epoch problems: the leader already decided (Kafka's
        AppendOrigin.REPLICATION). Batches below `map_end_offset` were applied already and are
        skipped, so replay may start anywhere at or below it.
        """
        if last_offset < self._map_end_offset:
            return
        current = self._producers.get(producer_id)
        if current is not None and producer_epoch < current.producer_epoch:
            log.warning(
                "%s: replicated batch at offset %d has producer %d epoch %d < stored epoch %d",
                self._label, base_offset, producer_id, producer_epoch, current.producer_epoch,
            )
        self._update(producer_id, producer_epoch, base_sequence, last_sequence,
                     base_offset, last_offset, timestamp_ms, is_transactional)

    # -- snapshots --

    def snapshot_entries(self) -> list[SnapshotEntry]:
        """The last batch of every producer with state, by producer id."""
        out: list[SnapshotEntry] = []
        for pid, e in sorted(self._producers.items()):
            if not e.batches:
                continue
            last = e.batches[-1]
            out.append(SnapshotEntry(
                producer_id=pid, producer_epoch=e.producer_epoch,
                last_sequence=last.last_sequence, last_offset=last.last_offset,
                offset_delta=last.offset_delta, timestamp_ms=e.last_timestamp_ms,
                coordinator_epoch=e.coordinator_epoch,
                current_txn_first_offset=e.current_txn_first_offset,
            ))
        return out

    def snapshot(self) -> tuple[int, bytes]:
        """(snapshot offset = map_end_offset, v1 bytes): write `<offset>.snapshot` atomically."""
        return self._map_end_offset, encode_snapshot(self.snapshot_entries())

    def load_snapshot(self, data: bytes, snapshot_offset: int) -> None:
        """Replace the whole table with a snapshot taken at `snapshot_offset`.

        Afterwards replay every log batch from `snapshot_offset` on with
        `apply_replicated_batch`. On CorruptSnapshotError the table is left unchanged; the
        caller deletes the file, then tries an older snapshot or `reset(log_start_offset)` and
        replays the log from there.

        Raises:
            CorruptSnapshotError: see `decode_snapshot`; also an entry at or past the offset.
        """
        entries = decode_snapshot(data)
        for e in entries:
            if e.last_offset >= snapshot_offset:
                raise CorruptSnapshotError(
                    f"{self._label}: snapshot at {snapshot_offset} holds producer "
                    f"{e.producer_id} at offset {e.last_offset}"
                )
        self._producers.clear()
        for e in entries:
            entry = ProducerStateEntry(
                producer_id=e.producer_id, producer_epoch=e.producer_epoch,
                coordinator_epoch=e.coordinator_epoch, last_timestamp_ms=e.timestamp_ms,
                current_txn_first_offset=e.current_txn_first_offset,
            )
            entry.batches.append(
                BatchMetadata(e.last_sequence, e.last_offset, e.offset_delta, e.timestamp_ms)
            )
            self._producers[e.producer_id] = entry
        self._map_end_offset = snapshot_offset

    def reset(self, map_end_offset: int) -> None:
        """Forget everything; replay of the log then starts at `map_end_offset`."""
        self._producers.clear()
        self._map_end_offset = map_end_offset

    # -- removal --

    def remove_expired(
        self, now_ms: int, producer_id_expiration_ms: int = PRODUCER_ID_EXPIRATION_MS_DEFAULT
    ) -> tuple[int, ...]:
        """Drop producers idle for `producer.id.expiration.ms` (`removeExpiredProducers`).

        Idle is measured from the producer's last batch timestamp; producers with an open
        transaction are kept. Returns the removed ids, ascending.
        """
        expired = tuple(
            pid for pid, e in sorted(self._producers.items())
            if e.current_txn_first_offset == NO_OFFSET
            and now_ms - e.last_timestamp_ms >= producer_id_expiration_ms
        )
        for pid in expired:
            del self._producers[pid]
        return expired

    def truncate_head(self, log_start_offset: int) -> tuple[int, ...]:
        """The log start moved (retention, DeleteRecords): drop producers whose last batch is
        gone (`ProducerStateManager.truncateHead`). Returns the removed ids, ascending."""
        gone = tuple(
            pid for pid, e in sorted(self._producers.items())
            if e.last_offset < log_start_offset
        )
        for pid in gone:
            del self._producers[pid]
        if self._map_end_offset < log_start_offset:
            self._map_end_offset = log_start_offset
        return gone

    def truncate_to(self, offset: int) -> bool:
        """The log was truncated to end at `offset` (divergence, recovery): drop later batches.

        Cached batches at or above `offset` go; a producer left with no cached batch is
        removed (it becomes unknown, so KIP-360 lets it continue at any sequence). The result is
        exact when every producer keeps at least one batch: an epoch bump clears the cache, so
        the surviving batches all carry the stored epoch.

        Returns:
            True if some producer lost all its cached batches. The state is still safe to serve,
            but weaker than Kafka's; for Kafka's exact state the shell rebuilds instead:
            `load_snapshot` of the newest snapshot at or below `offset` (deleting the ones
            above) and `apply_replicated_batch` for the log's batches from there to `offset`
            (Kafka's `truncateAndReload`).
        """
        lost = False
        for pid in sorted(self._producers):
            e = self._producers[pid]
            while e.batches and e.batches[-1].last_offset >= offset:
                e.batches.pop()
            if e.current_txn_first_offset >= offset:
                e.current_txn_first_offset = NO_OFFSET
            if not e.batches:
                del self._producers[pid]
                lost = True
            else:
                e.last_timestamp_ms = max(b.timestamp_ms for b in e.batches)
        self._map_end_offset = min(self._map_end_offset, offset)
        return lost

    # -- internals --

    def _check_producer_epoch(self, current: ProducerStateEntry, epoch: int) -> None:
        if epoch < current.producer_epoch:
            raise InvalidProducerEpochError(
                f"producer {current.producer_id} epoch {epoch} < current epoch "
                f"{current.producer_epoch} for {self._label}"
            )

    def _check_sequence(self, current: ProducerStateEntry, epoch: int, first_seq: int) -> None:
        """`ProducerAppendInfo.checkSequence` for a known producer (not a duplicate)."""
        if epoch != current.producer_epoch:
            if first_seq != 0 and current.producer_epoch != NO_PRODUCER_EPOCH:
                raise OutOfOrderSequenceNumberError(
                    f"producer {current.producer_id} new epoch {epoch} must start at sequence "
                    f"0, got {first_seq} (current epoch {current.producer_epoch}) "
                    f"for {self._label}"
                )
            return
        last_seq = current.last_sequence
        if last_seq == NO_SEQUENCE:
            return  # state without batches (e.g. only a marker): any start is in sequence
        if not in_sequence(last_seq, first_seq):
            raise OutOfOrderSequenceNumberError(
                f"producer {current.producer_id} epoch {epoch}: sequence {first_seq} does not "
                f"follow last sequence {last_seq} for {self._label}"
            )

    def _update(
        self,
        producer_id: int,
        producer_epoch: int,
        base_sequence: int,
        last_sequence: int,
        base_offset: int,
        last_offset: int,
        timestamp_ms: int,
        is_transactional: bool,
    ) -> None:
        assert base_offset <= last_offset, (base_offset, last_offset)
        assert last_offset >= self._map_end_offset, (
            f"{self._label}: batch at {base_offset}..{last_offset} is below map end offset "
            f"{self._map_end_offset}"
        )
        self._map_end_offset = last_offset + 1
        if producer_id == NO_PRODUCER_ID:
            return
        entry = self._producers.get(producer_id)
        if entry is None:
            entry = ProducerStateEntry(producer_id=producer_id, producer_epoch=producer_epoch)
            self._producers[producer_id] = entry
        if is_transactional and entry.current_txn_first_offset == NO_OFFSET:
            entry.current_txn_first_offset = base_offset
        batch = BatchMetadata(last_sequence, last_offset, last_offset - base_offset, timestamp_ms)
        # base_sequence is implied by last_sequence and the offset delta, as in Kafka.
        entry.add_batch(producer_epoch, batch)
