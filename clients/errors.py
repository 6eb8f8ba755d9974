"""Client-side exceptions (CLIENT_API.md §5.3), on top of the shared tree in `proto.errors`.

Broker errors reach users as the `proto.errors` class for their Kafka code (one class per code,
`retriable`/`invalid_metadata`/`fatal` set from Kafka's table). The classes here are the errors
that only a client raises: they carry no wire code of their own (`code` is `ErrorCode.NONE`,
"0 for client-side" in CLIENT_API.md), except `KafkaTimeoutError`, which is the client face of
Kafka's `TimeoutException` and so keeps REQUEST_TIMED_OUT.

Each also derives from the builtin a user would reach for (`TimeoutError`, `BufferError`,
`ValueError`), so `except TimeoutError:` works without importing Rafka.
"""

from __future__ import annotations

from proto.config import ConfigError
from proto.errors import (
    ErrorCode,
    MessageTooLargeError,
    RafkaError,
    error_class,
)

__all__ = [
    "BufferFullError",
    "ClientClosedError",
    "ClientError",
    "CommitFailedError",
    "ConfigError",
    "ErrorCode",
    "KafkaTimeoutError",
    "ProducerFencedError",
    "RafkaError",
    "RecordTooLargeError",
    "SerializationError",
    "WakeupError",
    "error_class",
]

# Kafka's client raises RecordTooLargeException for MESSAGE_TOO_LARGE and for a record larger
# than max.request.size or buffer.memory (KafkaProducer.ensureValidRecordSize): same class.
RecordTooLargeError = MessageTooLargeError
ProducerFencedError: type[RafkaError] = error_class(ErrorCode.PRODUCER_FENCED)


class ClientError(RafkaError):
    """Base of errors raised only by clients; `name` is a client-local name, not a wire code."""

    code = ErrorCode.NONE
    error_name = "CLIENT_ERROR"

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.error_name)

    @property
    def name(self) -> str:
        return self.error_name


class KafkaTimeoutError(RafkaError, TimeoutError):
    """An operation did not finish in time: delivery.timeout.ms, max.block.ms, flush(timeout).

    Kafka's `TimeoutException` is retriable (trying again may succeed); the client has already
    retried what it could within its own deadline.

    Attributes:
        pending: records (or requests) still outstanding when the time ran out; 0 if unknown.
    """

    code = ErrorCode.REQUEST_TIMED_OUT
    retriable = True

    def __init__(self, message: str = "", *, pending: int = 0) -> None:
        super().__init__(message)
        self.pending = pending


class SerializationError(ClientError, ValueError):
    """A key or value serializer (or deserializer) failed, or returned a non-bytes value."""

    error_name = "SERIALIZATION"


class CommitFailedError(ClientError):
    """A synchronous commit failed for good: the member left or the generation moved on.

    Attributes:
        reason: the cause in words ("max.poll.interval.ms exceeded", "generation 5 is stale").
    """

    error_name = "COMMIT_FAILED"

    def __init__(self, message: str = "", *, reason: str = "") -> None:
        if not message and reason:
            message = f"commit failed: {reason}"
        super().__init__(message)
        self.reason = reason or self.message


class WakeupError(ClientError):
    """`consumer.wakeup()` interrupted a blocking call."""

    error_name = "WAKEUP"


class ClientClosedError(ClientError):
    """The client was used after `close()`."""

    error_name = "CLIENT_CLOSED"


class BufferFullError(ClientError, BufferError):
    """`buffer.memory` stayed full for `max.block.ms` (confluent-kafka raises BufferError)."""

    error_name = "BUFFER_FULL"
