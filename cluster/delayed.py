"""Waiting requests: delayed fetches and multi-partition acks=all produces (Kafka's purgatories).

Theory of operation
-------------------
Kafka parks requests that cannot be answered yet in `DelayedOperationPurgatory`, watched by
partition key, and completes each one when an event on a watched partition lets it, or when its
deadline passes. These two classes are that bookkeeping, pure: ids in, ids out, no futures.

`DelayedFetchPurgatory` (Kafka's `DelayedFetch`, fetch.min.bytes / fetch.max.wait.ms and the
replica.fetch.* equivalents):
- `watch(fetch_id, partitions, min_bytes, available_bytes, deadline_ms)` parks a fetch that
  found fewer than `min_bytes` readable bytes. It returns True instead of parking when
  `available_bytes >= min_bytes` already.
- The shell reports growth: `on_bytes_available(partition, new_bytes)` when bytes became
  readable for that fetch kind (a consumer fetch: the HW moved; a follower fetch: the leader
  appended). Each parked fetch watching the partition adds them; those reaching min_bytes
  are returned for completion. Parked fetches were all at the end of the readable range when
  they parked (else they would have had enough bytes), so the same delta applies to each.
- `on_partition_changed(partition)` (leadership lost, log truncated, partition deleted)
  completes every fetch watching it at once, as Kafka's DelayedFetch.tryComplete cases A-C do;
  the shell then answers with the per-partition error or data it reads afresh.
- `tick(now_ms)` returns fetches whose deadline passed (answered with whatever is there).

`ProduceRequestJoin` (Kafka's one `DelayedProduce` spanning partitions): a Produce with acks=all
touches several partitions, each parked in its own `PartitionReplica` with an op id. `watch`
registers which (partition, op id) pairs a request waits for; `on_completion` records each
`ProduceCompletion` and returns the requests whose every partition is done, with the per-
partition error codes. Timeouts need nothing here: every replica times out its own ops.

Every output is sorted by id, never by set order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from proto.errors import ErrorCode


@dataclass(slots=True)
class _WaitingFetch:
    fetch_id: int
    partitions: tuple[str, ...]
    min_bytes: int
    accumulated_bytes: int
    deadline_ms: int


class DelayedFetchPurgatory:
    """Parked fetches keyed by partition. See the module docstring."""

    __slots__ = ("_fetches", "_watchers")

    def __init__(self) -> None:
        self._fetches: dict[int, _WaitingFetch] = {}
        # invariant: fetch_id in _watchers[p] iff p in _fetches[fetch_id].partitions
        self._watchers: dict[str, set[int]] = {}

    def __len__(self) -> int:
        return len(self._fetches)

    def watch(
        self,
        fetch_id: int,
        partitions: Iterable[str],
        *,
        min_bytes: int,
        available_bytes: int,
        deadline_ms: int,
    ) -> bool:
        """Park a fetch; returns True (not parked) if it can complete now."""
        assert fetch_id not in self._fetches, f"fetch {fetch_id} is already parked"
        if available_bytes >= min_bytes:
            return True
        parts = tuple(sorted(set(partitions)))
        self._fetches[fetch_id] = _WaitingFetch(fetch_id, parts, min_bytes, available_bytes,
                                                deadline_ms)
        for p in parts:
            self._watchers.setdefault(p, set()).add(fetch_id)
        return False

    def on_bytes_available(self, partition: str, new_bytes: int) -> tuple[int, ...]:
        """`new_bytes` became readable on `partition`; returns the fetches to complete now."""
        assert new_bytes >= 0, new_bytes
        done: list[int] = []
        for fetch_id in sorted(self._watchers.get(partition, ())):
            fetch = self._fetches[fetch_id]
            fetch.accumulated_bytes += new_bytes
            if fetch.accumulated_bytes >= fetch.min_bytes:
                done.append(fetch_id)
        for fetch_id in done:
            self._remove(fetch_id)
        return tuple(done)

    def on_partition_changed(self, partition: str) -> tuple[int, ...]:
        """Leadership lost / truncation / deletion: every fetch watching it completes now."""
        done = tuple(sorted(self._watchers.get(partition, ())))
        for fetch_id in done:
            self._remove(fetch_id)
        return done

    def tick(self, now_ms: int) -> tuple[int, ...]:
        """Fetches whose fetch.max.wait.ms passed; answer them with what is readable."""
        done = tuple(sorted(f.fetch_id for f in self._fetches.values() if f.deadline_ms <= now_ms))
        for fetch_id in done:
            self._remove(fetch_id)
        return done

    def cancel(self, fetch_id: int) -> bool:
        """Forget a fetch (client gone); True if it was parked."""
        if fetch_id not in self._fetches:
            return False
        self._remove(fetch_id)
        return True

    def next_deadline_ms(self) -> int | None:
        return min((f.deadline_ms for f in self._fetches.values()), default=None)

    def _remove(self, fetch_id: int) -> None:
        fetch = self._fetches.pop(fetch_id)
        for p in fetch.partitions:
            watchers = self._watchers[p]
            watchers.discard(fetch_id)
            if not watchers:
                del self._watchers[p]


@dataclass(frozen=True, slots=True)
class CompletedProduce:
    """Every partition of an acks=all Produce is done; answer it with these codes."""

    request_id: int
    errors: tuple[tuple[str, ErrorCode], ...]  # (partition, code), sorted by partition


@dataclass(slots=True)
class _WaitingProduce:
    request_id: int
    waiting: set[tuple[str, int]]  # (partition, op id) still parked
    errors: dict[str, ErrorCode] = field(default_factory=dict)


class ProduceRequestJoin:
    """Joins per-partition `ProduceCompletion`s back into whole Produce responses."""

    __slots__ = ("_requests", "_by_op")

    def __init__(self) -> None:
        self._requests: dict[int, _WaitingProduce] = {}
        self._by_op: dict[tuple[str, int], int] = {}  # (partition, op id) -> request id

    def __len__(self) -> int:
        return len(self._requests)

    def watch(
        self,
        request_id: int,
        ops: Mapping[str, int],
        *,
        immediate: Mapping[str, ErrorCode] | None = None,
    ) -> CompletedProduce | None:
        """Register a request waiting on `ops` (partition -> op id).

        `immediate` holds the partitions already answered (errors before append, or acks
        satisfied at once). Returns the completed request if nothing is left to wait for.
        """
        assert request_id not in self._requests, f"produce {request_id} is already parked"
        waiting = _WaitingProduce(request_id, set(ops.items()), dict(immediate or {}))
        if not waiting.waiting:
            return self._completed(waiting)
        self._requests[request_id] = waiting
        for key in ops.items():
            assert key not in self._by_op, f"op {key} is already watched"
            self._by_op[key] = request_id
        return None

    def on_completion(
        self, partition: str, op_id: int, error: ErrorCode
    ) -> CompletedProduce | None:
        """One partition's parked op completed; returns the request if it is now complete."""
        request_id = self._by_op.pop((partition, op_id), None)
        if request_id is None:
            return None  # not ours (acks=1 path or already cancelled)
        waiting = self._requests[request_id]
        waiting.waiting.discard((partition, op_id))
        waiting.errors[partition] = error
        if waiting.waiting:
            return None
        del self._requests[request_id]
        return self._completed(waiting)

    @staticmethod
    def _completed(waiting: _WaitingProduce) -> CompletedProduce:
        return CompletedProduce(waiting.request_id, tuple(sorted(waiting.errors.items())))
