"""Which partitions a consumer reads and where it is in each: the consumer's position state.

Theory of operation (Kafka's `SubscriptionState`, manual assignment only; groups arrive with
issue 5 and will drive `assign` from the group's assignment instead of the user):

- Every assigned partition has a `PartitionState`. Its **position** is the offset of the next
  record to return (KAFKA_SEMANTICS.md §7); a returned record moves it to offset + 1.
- A partition is in exactly one of these states:

  =================  =========================================  ===============================
  state              meaning                                    leaves by
  =================  =========================================  ===============================
  INITIALIZING       assigned, no position, no reset asked      `request_default_resets()`
                                                                 (auto.offset.reset), `seek`
  AWAITING_RESET     a lazy reset (seek_to_beginning/end, or    `on_reset(offset)`, `seek`
                     auto.offset.reset) waits for ListOffsets
  FETCHING           has a position                             `request_reset`, `seek`
  =================  =========================================  ===============================

- Paused partitions keep their position and their state but are never fetched or returned.
- Each position change bumps `position_epoch` (a local counter, not a leader epoch), so data
  fetched for an older position is recognised and dropped (Kafka compares the fetch offset
  with the current position before returning a completed fetch).

The core never does I/O and never reads the clock. It raises `NoOffsetForPartitionError` when
`auto.offset.reset=none` leaves a partition with nowhere to start.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from clients.types import TopicPartition
from proto.errors import OffsetOutOfRangeError

__all__ = [
    "FetchState",
    "NoOffsetForPartitionError",
    "PartitionState",
    "ResetStrategy",
    "SubscriptionState",
]


class NoOffsetForPartitionError(OffsetOutOfRangeError):  # type: ignore[misc, valid-type]
    """No position for a partition and `auto.offset.reset=none` (Kafka's
    NoOffsetForPartitionException). Seek first, or choose earliest/latest.

    Attributes:
        partitions: the partitions without a position, sorted.
    """

    def __init__(self, message: str = "", *, partitions: Iterable[TopicPartition] = ()) -> None:
        self.partitions = tuple(sorted(partitions))
        names = ", ".join(str(tp) for tp in self.partitions)
        super().__init__(
            message or f"no position for {names} and auto.offset.reset=none; seek first"
        )


class ResetStrategy(Enum):
    """auto.offset.reset, and the lazy seek_to_beginning / seek_to_end."""

    EARLIEST = "earliest"
    LATEST = "latest"
    NONE = "none"

    @property
    def timestamp(self) -> int:
        """The ListOffsets special timestamp (-2 earliest, -1 latest)."""
        assert self is not ResetStrategy.NONE, "NONE never reaches ListOffsets"
        return -2 if self is ResetStrategy.EARLIEST else -1


class FetchState(Enum):
    INITIALIZING = "INITIALIZING"
    AWAITING_RESET = "AWAITING_RESET"
    FETCHING = "FETCHING"


@dataclass(slots=True)
class PartitionState:
    """Mutable state of one assigned partition."""

    fetch_state: FetchState = FetchState.INITIALIZING
    position: int = -1  # invariant: >= 0 exactly when fetch_state is FETCHING
    reset_strategy: ResetStrategy | None = None  # set exactly when AWAITING_RESET
    position_epoch: int = 0  # bumped on every seek/reset (not on consumption)
    leader_epoch: int | None = None  # epoch of the last returned record's batch (KIP-320)
    paused: bool = False
    high_watermark: int = -1
    log_start_offset: int = -1
    last_stable_offset: int = -1


class SubscriptionState:
    """The assignment and per-partition positions of one consumer (see the module docstring).

    Args:
        default_reset: the auto.offset.reset policy.
    """

    def __init__(self, default_reset: ResetStrategy) -> None:
        self.default_reset = default_reset
        self._states: dict[TopicPartition, PartitionState] = {}

    # -- assignment --

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Replace the assignment. Partitions kept from the old one keep their state."""
        wanted = list(dict.fromkeys(TopicPartition(tp[0], tp[1]) for tp in partitions))
        old = self._states
        self._states = {tp: old.get(tp) or PartitionState() for tp in wanted}

    def assignment(self) -> set[TopicPartition]:
        return set(self._states)

    def assigned_partitions(self) -> list[TopicPartition]:
        """The assignment in assignment order (deterministic, unlike `assignment()`)."""
        return list(self._states)

    def is_assigned(self, tp: TopicPartition) -> bool:
        return tp in self._states

    def state(self, tp: TopicPartition) -> PartitionState:
        """The state of an assigned partition.

        Raises:
            IllegalStateError-like ValueError: `tp` is not assigned.
        """
        try:
            return self._states[tp]
        except KeyError:
            raise ValueError(f"partition {tp} is not assigned to this consumer") from None

    # -- positions --

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Set the position of `tp` (used by the next fetch)."""
        if offset < 0:
            raise ValueError(f"seek offset must be >= 0, got {offset} for {tp}")
        st = self.state(tp)
        st.fetch_state = FetchState.FETCHING
        st.position = offset
        st.reset_strategy = None
        st.position_epoch += 1

    def request_reset(self, tps: Iterable[TopicPartition], strategy: ResetStrategy) -> None:
        """Lazily reset `tps` (seek_to_beginning/end, or after OFFSET_OUT_OF_RANGE)."""
        assert strategy is not ResetStrategy.NONE
        for tp in tps:
            st = self.state(tp)
            st.fetch_state = FetchState.AWAITING_RESET
            st.reset_strategy = strategy
            st.position = -1
            st.position_epoch += 1

    def request_default_resets(self) -> None:
        """Apply auto.offset.reset to every INITIALIZING partition.

        Raises:
            NoOffsetForPartitionError: the policy is `none` and some partition has no position.
        """
        missing = [tp for tp, st in self._states.items()
                   if st.fetch_state is FetchState.INITIALIZING]
        if not missing:
            return
        if self.default_reset is ResetStrategy.NONE:
            raise NoOffsetForPartitionError(partitions=missing)
        self.request_reset(missing, self.default_reset)

    def reset_on_out_of_range(self, tp: TopicPartition, fetch_offset: int) -> None:
        """OFFSET_OUT_OF_RANGE for a fetch at `fetch_offset`: reset per auto.offset.reset.

        A stale answer (the position moved since the fetch was sent) is ignored.

        Raises:
            OffsetOutOfRangeError: the policy is `none` (Kafka's OffsetOutOfRangeException).
        """
        st = self._states.get(tp)
        if st is None or st.fetch_state is not FetchState.FETCHING:
            return
        if st.position != fetch_offset:
            return
        if self.default_reset is ResetStrategy.NONE:
            raise OffsetOutOfRangeError(
                f"offset {fetch_offset} is out of range for {tp} (log start "
                f"{st.log_start_offset}, high watermark {st.high_watermark}) and "
                "auto.offset.reset=none"
            )
        self.request_reset([tp], self.default_reset)

    def awaiting_reset(self) -> list[tuple[TopicPartition, ResetStrategy]]:
        """Partitions whose lazy reset waits for a ListOffsets answer, in assignment order."""
        out = []
        for tp, st in self._states.items():
            if st.fetch_state is FetchState.AWAITING_RESET:
                assert st.reset_strategy is not None
                out.append((tp, st.reset_strategy))
        return out

    def on_reset(self, tp: TopicPartition, strategy: ResetStrategy, offset: int) -> None:
        """ListOffsets answered `offset` for a reset of `tp`; ignored if no longer wanted."""
        st = self._states.get(tp)
        if st is None or st.fetch_state is not FetchState.AWAITING_RESET:
            return
        if st.reset_strategy is not strategy:
            return
        st.fetch_state = FetchState.FETCHING
        st.reset_strategy = None
        st.position = offset
        st.position_epoch += 1

    def has_position(self, tp: TopicPartition) -> bool:
        return self.state(tp).fetch_state is FetchState.FETCHING

    def position(self, tp: TopicPartition) -> int | None:
        """The next offset to return, or None while the position is unknown."""
        st = self.state(tp)
        return st.position if st.fetch_state is FetchState.FETCHING else None

    def advance(self, tp: TopicPartition, position: int, leader_epoch: int | None) -> None:
        """Records below `position` were returned: move the position (never backwards)."""
        st = self._states[tp]
        assert st.fetch_state is FetchState.FETCHING
        if position > st.position:
            st.position = position
            if leader_epoch is not None:
                st.leader_epoch = leader_epoch

    def update_offsets(
        self, tp: TopicPartition, *, high_watermark: int, log_start_offset: int,
        last_stable_offset: int,
    ) -> None:
        """Remember the partition's offsets from the latest fetch answer."""
        st = self._states.get(tp)
        if st is None:
            return
        if high_watermark >= 0:
            st.high_watermark = high_watermark
        if log_start_offset >= 0:
            st.log_start_offset = log_start_offset
        if last_stable_offset >= 0:
            st.last_stable_offset = last_stable_offset

    # -- flow control --

    def pause(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            self.state(tp).paused = True

    def resume(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            self.state(tp).paused = False

    def paused(self) -> set[TopicPartition]:
        return {tp for tp, st in self._states.items() if st.paused}

    def is_fetchable(self, tp: TopicPartition) -> bool:
        st = self._states.get(tp)
        return st is not None and not st.paused and st.fetch_state is FetchState.FETCHING

    def fetchable(self) -> list[TopicPartition]:
        """Assigned, not paused, with a position: what a fetch may ask for, in order."""
        return [
            tp for tp, st in self._states.items()
            if not st.paused and st.fetch_state is FetchState.FETCHING
        ]
