"""Retry topics and a dead-letter queue: where a record goes when its handler fails.

The non-blocking retry pattern: a failed record is republished, with a due time, to
`<base>.retry.1`, then `.retry.2` ... `.retry.N` (one topic per delay, delays growing), and
finally to `<base>.dlq`. The main partition moves on at once; a retry partition whose head is
not due yet is paused until it is (see `clients/retry_runtime.py`, which drives this core with
a Consumer and a Producer). Errors that retrying cannot fix go straight to the DLQ.

What travels in headers (values are UTF-8 text, so the CLI prints them readably):

    rafka.original.topic / .partition / .offset / .timestamp  where the record was first read
    rafka.exception.class / .message                          the last failure
    rafka.attempt                                             failed deliveries so far
    rafka.due.ms                                              not to be handled before (epoch ms)

The record's own key, value and other headers are kept unchanged. This module is a core: the
caller passes `now_ms`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from clients.errors import SerializationError
from clients.types import Header, Record, TopicPartition

__all__ = [
    "ATTEMPT",
    "DUE_MS",
    "EXCEPTION_CLASS",
    "EXCEPTION_MESSAGE",
    "NonRetriableError",
    "ORIGINAL_OFFSET",
    "ORIGINAL_PARTITION",
    "ORIGINAL_TIMESTAMP",
    "ORIGINAL_TOPIC",
    "DelayedPartitions",
    "Destination",
    "RetryPolicy",
    "Route",
    "attempt_of",
    "base_topic",
    "due_ms",
    "is_due",
    "route_failure",
]

ORIGINAL_TOPIC = "rafka.original.topic"
ORIGINAL_PARTITION = "rafka.original.partition"
ORIGINAL_OFFSET = "rafka.original.offset"
ORIGINAL_TIMESTAMP = "rafka.original.timestamp"
EXCEPTION_CLASS = "rafka.exception.class"
EXCEPTION_MESSAGE = "rafka.exception.message"
ATTEMPT = "rafka.attempt"
DUE_MS = "rafka.due.ms"

_ORIGIN_HEADERS = (ORIGINAL_TOPIC, ORIGINAL_PARTITION, ORIGINAL_OFFSET, ORIGINAL_TIMESTAMP)
_OUR_HEADERS = frozenset(_ORIGIN_HEADERS + (EXCEPTION_CLASS, EXCEPTION_MESSAGE, ATTEMPT, DUE_MS))
_MAX_MESSAGE_BYTES = 4096  # an exception message can be huge; the header need not be


class NonRetriableError(Exception):
    """Raise (or subclass) from a handler to send the record straight to the DLQ."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a topic retries.

    Attributes:
        delays_ms: one retry topic per delay: attempt i waits delays_ms[i-1] (growing, as in
            the usual 1 s, 5 s, 30 s ladder). Empty means failures go straight to the DLQ.
        non_retriable: exception classes that skip the retries.
        retry_suffix / dlq_suffix: topic names are `<base><retry_suffix>.<i>` and
            `<base><dlq_suffix>`.
    """

    delays_ms: tuple[int, ...] = (1000, 5000, 30000)
    non_retriable: tuple[type[BaseException], ...] = field(
        default=(NonRetriableError, SerializationError)
    )
    retry_suffix: str = ".retry"
    dlq_suffix: str = ".dlq"

    def __post_init__(self) -> None:
        if any(d < 0 for d in self.delays_ms):
            raise ValueError(f"retry delays must be >= 0 ms, got {self.delays_ms}")
        if not self.retry_suffix or not self.dlq_suffix or self.retry_suffix == self.dlq_suffix:
            raise ValueError("retry_suffix and dlq_suffix must be distinct and non-empty")

    @property
    def max_retries(self) -> int:
        return len(self.delays_ms)

    def retry_topic(self, base: str, attempt: int) -> str:
        """The topic of retry number `attempt` (1-based)."""
        if not 1 <= attempt <= self.max_retries:
            raise ValueError(f"retry attempt must be 1..{self.max_retries}, got {attempt}")
        return f"{base}{self.retry_suffix}.{attempt}"

    def dlq_topic(self, base: str) -> str:
        return f"{base}{self.dlq_suffix}"

    def retry_topics(self, base: str) -> list[str]:
        return [self.retry_topic(base, i) for i in range(1, self.max_retries + 1)]

    def topics_to_consume(self, bases: Sequence[str]) -> list[str]:
        """Each base topic and its retry topics (never the DLQ: nobody handles it here)."""
        return [t for base in bases for t in (base, *self.retry_topics(base))]

    def retry_level(self, topic: str) -> int:
        """1..N for a retry topic's name, 0 for anything else."""
        head, dot, number = topic.rpartition(".")
        if dot and head.endswith(self.retry_suffix) and number.isdigit():
            level = int(number)
            if 1 <= level <= self.max_retries and head[: -len(self.retry_suffix)]:
                return level
        return 0

    def is_retriable(self, error: BaseException) -> bool:
        return not isinstance(error, self.non_retriable)


class Destination(Enum):
    RETRY = "retry"
    DLQ = "dlq"


@dataclass(frozen=True, slots=True)
class Route:
    """Where and how to republish one failed record."""

    destination: Destination
    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...]
    attempt: int  # failed deliveries including this one
    due_ms: int | None  # None for the DLQ


def _text(record: Record[bytes, bytes], name: str) -> str | None:
    raw = record.header(name)
    if raw is None:
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None


def _int_header(record: Record[bytes, bytes], name: str) -> int | None:
    text = _text(record, name)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def attempt_of(record: Record[bytes, bytes]) -> int:
    """Failed deliveries before this one (0 for a record that never failed)."""
    return max(_int_header(record, ATTEMPT) or 0, 0)


def due_ms(record: Record[bytes, bytes]) -> int | None:
    """When a record read from a retry topic may be handled (None: at once)."""
    return _int_header(record, DUE_MS)


def is_due(record: Record[bytes, bytes], now_ms: int) -> bool:
    due = due_ms(record)
    return due is None or due <= now_ms


def base_topic(record: Record[bytes, bytes], policy: RetryPolicy) -> str:
    """The topic a record first came from: its header, else its topic minus a retry suffix."""
    original = _text(record, ORIGINAL_TOPIC)
    if original:
        return original
    level = policy.retry_level(record.topic)
    if level:
        return record.topic[: -len(f"{policy.retry_suffix}.{level}")]
    return record.topic


def _error_name(error: BaseException) -> str:
    cls = type(error)
    return f"{cls.__module__}.{cls.__qualname__}"


def _error_message(error: BaseException) -> str:
    data = str(error).encode()
    if len(data) > _MAX_MESSAGE_BYTES:
        data = data[:_MAX_MESSAGE_BYTES]
    return data.decode(errors="ignore")


def route_failure(
    record: Record[bytes, bytes], error: BaseException, policy: RetryPolicy, now_ms: int
) -> Route:
    """Decide where a record whose handler raised `error` goes next, with which headers."""
    attempt = attempt_of(record) + 1
    base = base_topic(record, policy)
    retry = policy.is_retriable(error) and attempt <= policy.max_retries
    due = now_ms + policy.delays_ms[attempt - 1] if retry else None
    # Keep the user's headers; ours are replaced. The origin stays the first one seen.
    kept = tuple((k, v) for k, v in record.headers if k not in _OUR_HEADERS)
    origin: tuple[Header, ...]
    if record.header(ORIGINAL_TOPIC) is not None:
        origin = tuple(
            (k, record.header(k)) for k in _ORIGIN_HEADERS if record.header(k) is not None
        )
    else:
        origin = (
            (ORIGINAL_TOPIC, record.topic.encode()),
            (ORIGINAL_PARTITION, str(record.partition).encode()),
            (ORIGINAL_OFFSET, str(record.offset).encode()),
            (ORIGINAL_TIMESTAMP, str(record.timestamp).encode()),
        )
    ours: list[Header] = [
        *origin,
        (EXCEPTION_CLASS, _error_name(error).encode()),
        (EXCEPTION_MESSAGE, _error_message(error).encode()),
        (ATTEMPT, str(attempt).encode()),
    ]
    if due is not None:
        ours.append((DUE_MS, str(due).encode()))
    return Route(
        destination=Destination.RETRY if retry else Destination.DLQ,
        topic=policy.retry_topic(base, attempt) if retry else policy.dlq_topic(base),
        key=record.key,
        value=record.value,
        headers=kept + tuple(ours),
        attempt=attempt,
        due_ms=due,
    )


class DelayedPartitions:
    """Retry partitions paused because their head record is not due yet, and until when.

    Retry topics fill in due order (one delay per topic), so when the head is not due nothing
    behind it is either: pausing the partition, not skipping the record, keeps order.
    """

    def __init__(self) -> None:
        self._due: dict[TopicPartition, int] = {}

    def delay(self, tp: TopicPartition, until_ms: int) -> None:
        self._due[tp] = until_ms

    def pop_due(self, now_ms: int) -> list[TopicPartition]:
        """The partitions to resume now (sorted), forgotten here."""
        ready = sorted(tp for tp, until in self._due.items() if until <= now_ms)
        for tp in ready:
            del self._due[tp]
        return ready

    def next_due_ms(self) -> int | None:
        return min(self._due.values(), default=None)

    def retain(self, assigned: set[TopicPartition]) -> None:
        """Forget partitions no longer assigned (a rebalance took them)."""
        for tp in [tp for tp in self._due if tp not in assigned]:
            del self._due[tp]

    def __contains__(self, tp: object) -> bool:
        return tp in self._due

    def __len__(self) -> int:
        return len(self._due)
