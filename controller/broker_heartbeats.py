"""Broker liveness on the active controller (Kafka's `BrokerHeartbeatManager`).

Theory of operation
-------------------
The active controller tracks, per registered broker, in memory only (never in the metadata
log): when its session expires, the last metadata offset it reported, and for a broker in
controlled shutdown the offset of the entry that put it there. A new active controller starts
from scratch: `reset` gives every registered broker a full session from the moment it became
active, so a failover does not fence the whole cluster at once (Kafka does the same).

A broker's control state comes from its registration in the metadata image plus the heartbeat
(KAFKA_SEMANTICS §5.4). `next_broker_state` is Kafka's `calculateNextBrokerState`:

    FENCED               want_shutdown                       → SHUTDOWN_NOW
                         not want_fence and caught up        → UNFENCED
                         otherwise                           → FENCED
    UNFENCED             want_fence (+ want_shutdown)        → FENCED (SHUTDOWN_NOW)
                         want_shutdown, leads something      → CONTROLLED_SHUTDOWN
                         want_shutdown, leads nothing        → SHUTDOWN_NOW
                         otherwise                           → UNFENCED
    CONTROLLED_SHUTDOWN  leads something                     → CONTROLLED_SHUTDOWN
                         its shutdown entry ≤ the lowest metadata offset of the active
                         brokers (they all know the new leaders) → SHUTDOWN_NOW
                         otherwise                           → CONTROLLED_SHUTDOWN

"Caught up" means the broker's current_metadata_offset ≥ its broker epoch, which is the offset
of its RegisterBrokerRecord. SHUTDOWN_NOW is not stored: the controller fences the broker and
answers should_shutdown=True. A session expires `broker_session_timeout_ms` after the last
heartbeat or registration; only unfenced brokers are fenced for it.

Pure: no clock (`now_ms` comes in), no I/O; all outputs are sorted.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import Enum

from proto.metadata_image import BrokerRegistration


class BrokerControlState(Enum):
    """Kafka's `BrokerControlState`."""

    FENCED = "fenced"
    UNFENCED = "unfenced"
    CONTROLLED_SHUTDOWN = "controlled_shutdown"
    SHUTDOWN_NOW = "shutdown_now"

    @property
    def is_fenced(self) -> bool:
        return self in (BrokerControlState.FENCED, BrokerControlState.SHUTDOWN_NOW)


def current_broker_state(registration: BrokerRegistration) -> BrokerControlState:
    """The stored state of a registered broker (SHUTDOWN_NOW is never stored)."""
    if registration.fenced:
        return BrokerControlState.FENCED
    if registration.in_controlled_shutdown:
        return BrokerControlState.CONTROLLED_SHUTDOWN
    return BrokerControlState.UNFENCED


def next_broker_state(
    current: BrokerControlState,
    *,
    want_fence: bool,
    want_shutdown: bool,
    caught_up: bool,
    has_leaderships: bool,
    controlled_shutdown_done: bool,
) -> BrokerControlState:
    """The state after a heartbeat (Kafka's `BrokerHeartbeatManager.calculateNextBrokerState`).

    Args:
        caught_up: current_metadata_offset ≥ the broker's registration offset.
        has_leaderships: the broker leads at least one partition.
        controlled_shutdown_done: every active broker has applied the entry that put this
            broker in controlled shutdown (only used in CONTROLLED_SHUTDOWN).
    """
    state = BrokerControlState
    if current is state.FENCED:
        if want_shutdown:
            return state.SHUTDOWN_NOW
        if not want_fence and caught_up:
            return state.UNFENCED
        return state.FENCED
    if current is state.UNFENCED:
        if want_fence:
            return state.SHUTDOWN_NOW if want_shutdown else state.FENCED
        if want_shutdown:
            return state.CONTROLLED_SHUTDOWN if has_leaderships else state.SHUTDOWN_NOW
        return state.UNFENCED
    if current is state.CONTROLLED_SHUTDOWN:
        if not has_leaderships and controlled_shutdown_done:
            return state.SHUTDOWN_NOW
        return state.CONTROLLED_SHUTDOWN
    raise AssertionError(f"{current} is never a stored broker state")


@dataclass(slots=True)
class BrokerSession:
    """In-memory liveness of one broker on the active controller."""

    session_deadline_ms: int  # the session expires when now_ms reaches this
    metadata_offset: int = -1  # last current_metadata_offset reported (-1: none yet)
    controlled_shutdown_offset: int | None = None  # entry that started controlled shutdown


class BrokerHeartbeatManager:
    """Session deadlines and reported offsets per broker id."""

    def __init__(self, session_timeout_ms: int) -> None:
        assert session_timeout_ms > 0, session_timeout_ms
        self._session_timeout_ms = session_timeout_ms
        self._sessions: dict[int, BrokerSession] = {}

    def reset(self, broker_ids: Collection[int], now_ms: int) -> None:
        """Forget everything; give each broker a full session from now (on activation)."""
        self._sessions = {
            b: BrokerSession(now_ms + self._session_timeout_ms) for b in sorted(broker_ids)
        }

    def clear(self) -> None:
        self._sessions = {}

    def register(self, broker_id: int, now_ms: int) -> None:
        """A new registration (or incarnation): a fresh session, no offsets known."""
        self._sessions[broker_id] = BrokerSession(now_ms + self._session_timeout_ms)

    def touch(self, broker_id: int, now_ms: int, metadata_offset: int | None = None) -> None:
        """A heartbeat (or idempotent re-registration) extends the session."""
        session = self._session(broker_id, now_ms)
        session.session_deadline_ms = max(
            session.session_deadline_ms, now_ms + self._session_timeout_ms
        )
        if metadata_offset is not None:
            session.metadata_offset = max(session.metadata_offset, metadata_offset)

    def has_valid_session(self, broker_id: int, now_ms: int) -> bool:
        session = self._sessions.get(broker_id)
        return session is not None and now_ms < session.session_deadline_ms

    def expired(self, candidates: Collection[int], now_ms: int) -> tuple[int, ...]:
        """The candidates (unfenced brokers) whose session has expired, sorted."""
        return tuple(
            b for b in sorted(candidates) if not self.has_valid_session(b, now_ms)
        )

    def next_expiry_ms(self, candidates: Collection[int]) -> int | None:
        """The earliest session deadline among the candidates, or None."""
        deadlines = [
            self._sessions[b].session_deadline_ms for b in candidates if b in self._sessions
        ]
        missing = [b for b in candidates if b not in self._sessions]
        assert not missing, f"brokers without a session: {sorted(missing)}"
        return min(deadlines) if deadlines else None

    def start_controlled_shutdown(self, broker_id: int, offset: int, now_ms: int) -> None:
        session = self._session(broker_id, now_ms)
        if session.controlled_shutdown_offset is None:
            session.controlled_shutdown_offset = offset

    def controlled_shutdown_offset(self, broker_id: int) -> int | None:
        session = self._sessions.get(broker_id)
        return None if session is None else session.controlled_shutdown_offset

    def end_controlled_shutdown(self, broker_id: int) -> None:
        session = self._sessions.get(broker_id)
        if session is not None:
            session.controlled_shutdown_offset = None

    def lowest_metadata_offset(self, broker_ids: Collection[int]) -> int | None:
        """The lowest offset reported by these brokers (Kafka's lowestActiveOffset); None if
        there are none."""
        offsets = [self._sessions[b].metadata_offset for b in broker_ids if b in self._sessions]
        return min(offsets) if offsets else None

    def session(self, broker_id: int) -> BrokerSession | None:
        return self._sessions.get(broker_id)

    def _session(self, broker_id: int, now_ms: int) -> BrokerSession:
        session = self._sessions.get(broker_id)
        if session is None:
            session = self._sessions[broker_id] = BrokerSession(
                now_ms + self._session_timeout_ms
            )
        return session
