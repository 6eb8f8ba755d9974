"""Kafka's error codes and the one exception tree that brokers, controllers and clients share.

Every response Rafka sends carries per-partition (or per-item) `ErrorCode` values with Kafka's
names and numbers, so logs and tools read like Kafka's. Each code has one `RafkaError` subclass
(CamelCase name + ``Error``) that knows whether the error is `retriable` and whether the client
must refresh metadata before retrying (`invalid_metadata`).

Cores raise these for operating errors (bad input, stale epoch, unknown topic). A servicer maps a
`RafkaError` to its code at the edge; anything else becomes UNKNOWN_SERVER_ERROR.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """Kafka's protocol error codes (`org.apache.kafka.common.protocol.Errors`)."""

    UNKNOWN_SERVER_ERROR = -1
    NONE = 0
    OFFSET_OUT_OF_RANGE = 1
    CORRUPT_MESSAGE = 2
    UNKNOWN_TOPIC_OR_PARTITION = 3
    INVALID_FETCH_SIZE = 4
    LEADER_NOT_AVAILABLE = 5
    NOT_LEADER_OR_FOLLOWER = 6
    REQUEST_TIMED_OUT = 7
    BROKER_NOT_AVAILABLE = 8
    REPLICA_NOT_AVAILABLE = 9
    MESSAGE_TOO_LARGE = 10
    STALE_CONTROLLER_EPOCH = 11
    OFFSET_METADATA_TOO_LARGE = 12
    NETWORK_EXCEPTION = 13
    COORDINATOR_LOAD_IN_PROGRESS = 14
    COORDINATOR_NOT_AVAILABLE = 15
    NOT_COORDINATOR = 16
    INVALID_TOPIC_EXCEPTION = 17
    RECORD_LIST_TOO_LARGE = 18
    NOT_ENOUGH_REPLICAS = 19
    NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20
    INVALID_REQUIRED_ACKS = 21
    ILLEGAL_GENERATION = 22
    INCONSISTENT_GROUP_PROTOCOL = 23
    INVALID_GROUP_ID = 24
    UNKNOWN_MEMBER_ID = 25
    INVALID_SESSION_TIMEOUT = 26
    REBALANCE_IN_PROGRESS = 27
    INVALID_COMMIT_OFFSET_SIZE = 28
    TOPIC_AUTHORIZATION_FAILED = 29
    GROUP_AUTHORIZATION_FAILED = 30
    CLUSTER_AUTHORIZATION_FAILED = 31
    INVALID_TIMESTAMP = 32
    UNSUPPORTED_SASL_MECHANISM = 33
    ILLEGAL_SASL_STATE = 34
    UNSUPPORTED_VERSION = 35
    TOPIC_ALREADY_EXISTS = 36
    INVALID_PARTITIONS = 37
    INVALID_REPLICATION_FACTOR = 38
    INVALID_REPLICA_ASSIGNMENT = 39
    INVALID_CONFIG = 40
    NOT_CONTROLLER = 41
    INVALID_REQUEST = 42
    UNSUPPORTED_FOR_MESSAGE_FORMAT = 43
    POLICY_VIOLATION = 44
    OUT_OF_ORDER_SEQUENCE_NUMBER = 45
    DUPLICATE_SEQUENCE_NUMBER = 46
    INVALID_PRODUCER_EPOCH = 47
    INVALID_TXN_STATE = 48
    INVALID_PRODUCER_ID_MAPPING = 49
    INVALID_TRANSACTION_TIMEOUT = 50
    CONCURRENT_TRANSACTIONS = 51
    TRANSACTION_COORDINATOR_FENCED = 52
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
    SECURITY_DISABLED = 54
    OPERATION_NOT_ATTEMPTED = 55
    KAFKA_STORAGE_ERROR = 56
    LOG_DIR_NOT_FOUND = 57
    SASL_AUTHENTICATION_FAILED = 58
    UNKNOWN_PRODUCER_ID = 59
    REASSIGNMENT_IN_PROGRESS = 60
    DELEGATION_TOKEN_AUTH_DISABLED = 61
    DELEGATION_TOKEN_NOT_FOUND = 62
    DELEGATION_TOKEN_OWNER_MISMATCH = 63
    DELEGATION_TOKEN_REQUEST_NOT_ALLOWED = 64
    DELEGATION_TOKEN_AUTHORIZATION_FAILED = 65
    DELEGATION_TOKEN_EXPIRED = 66
    INVALID_PRINCIPAL_TYPE = 67
    NON_EMPTY_GROUP = 68
    GROUP_ID_NOT_FOUND = 69
    FETCH_SESSION_ID_NOT_FOUND = 70
    INVALID_FETCH_SESSION_EPOCH = 71
    LISTENER_NOT_FOUND = 72
    TOPIC_DELETION_DISABLED = 73
    FENCED_LEADER_EPOCH = 74
    UNKNOWN_LEADER_EPOCH = 75
    UNSUPPORTED_COMPRESSION_TYPE = 76
    STALE_BROKER_EPOCH = 77
    OFFSET_NOT_AVAILABLE = 78
    MEMBER_ID_REQUIRED = 79
    PREFERRED_LEADER_NOT_AVAILABLE = 80
    GROUP_MAX_SIZE_REACHED = 81
    FENCED_INSTANCE_ID = 82
    ELIGIBLE_LEADERS_NOT_AVAILABLE = 83
    ELECTION_NOT_NEEDED = 84
    NO_REASSIGNMENT_IN_PROGRESS = 85
    GROUP_SUBSCRIBED_TO_TOPIC = 86
    INVALID_RECORD = 87
    UNSTABLE_OFFSET_COMMIT = 88
    THROTTLING_QUOTA_EXCEEDED = 89
    PRODUCER_FENCED = 90
    RESOURCE_NOT_FOUND = 91
    DUPLICATE_RESOURCE = 92
    UNACCEPTABLE_CREDENTIAL = 93
    INCONSISTENT_VOTER_SET = 94
    INVALID_UPDATE_VERSION = 95
    FEATURE_UPDATE_FAILED = 96
    PRINCIPAL_DESERIALIZATION_FAILURE = 97
    SNAPSHOT_NOT_FOUND = 98
    POSITION_OUT_OF_RANGE = 99
    UNKNOWN_TOPIC_ID = 100
    DUPLICATE_BROKER_REGISTRATION = 101
    BROKER_ID_NOT_REGISTERED = 102
    INCONSISTENT_TOPIC_ID = 103
    INCONSISTENT_CLUSTER_ID = 104
    TRANSACTIONAL_ID_NOT_FOUND = 105
    FETCH_SESSION_TOPIC_ID_ERROR = 106
    INELIGIBLE_REPLICA = 107
    NEW_LEADER_ELECTED = 108
    OFFSET_MOVED_TO_TIERED_STORAGE = 109
    FENCED_MEMBER_EPOCH = 110
    UNRELEASED_INSTANCE_ID = 111
    UNSUPPORTED_ASSIGNOR = 112
    STALE_MEMBER_EPOCH = 113
    MISMATCHED_ENDPOINT_TYPE = 114
    UNSUPPORTED_ENDPOINT_TYPE = 115
    UNKNOWN_CONTROLLER_ID = 116
    UNKNOWN_SUBSCRIPTION_ID = 117
    TELEMETRY_TOO_LARGE = 118
    INVALID_REGISTRATION = 119
    TRANSACTION_ABORTABLE = 120


# Codes whose Java exception extends RetriableException (Errors.java).
_RETRIABLE: frozenset[ErrorCode] = frozenset({
    ErrorCode.CORRUPT_MESSAGE,
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    ErrorCode.LEADER_NOT_AVAILABLE,
    ErrorCode.NOT_LEADER_OR_FOLLOWER,
    ErrorCode.REQUEST_TIMED_OUT,
    ErrorCode.REPLICA_NOT_AVAILABLE,
    ErrorCode.NETWORK_EXCEPTION,
    ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
    ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.NOT_COORDINATOR,
    ErrorCode.NOT_ENOUGH_REPLICAS,
    ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    ErrorCode.NOT_CONTROLLER,
    ErrorCode.CONCURRENT_TRANSACTIONS,
    ErrorCode.KAFKA_STORAGE_ERROR,
    ErrorCode.FETCH_SESSION_ID_NOT_FOUND,
    ErrorCode.INVALID_FETCH_SESSION_EPOCH,
    ErrorCode.LISTENER_NOT_FOUND,
    ErrorCode.FENCED_LEADER_EPOCH,
    ErrorCode.UNKNOWN_LEADER_EPOCH,
    ErrorCode.OFFSET_NOT_AVAILABLE,
    ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE,
    ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE,
    ErrorCode.ELECTION_NOT_NEEDED,
    ErrorCode.UNSTABLE_OFFSET_COMMIT,
    ErrorCode.THROTTLING_QUOTA_EXCEEDED,
    ErrorCode.UNKNOWN_TOPIC_ID,
    ErrorCode.INCONSISTENT_TOPIC_ID,
    ErrorCode.FETCH_SESSION_TOPIC_ID_ERROR,
})

# Codes after which a client must refresh its metadata before retrying (InvalidMetadataException).
_INVALID_METADATA: frozenset[ErrorCode] = frozenset({
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    ErrorCode.LEADER_NOT_AVAILABLE,
    ErrorCode.NOT_LEADER_OR_FOLLOWER,
    ErrorCode.NOT_CONTROLLER,
    ErrorCode.FENCED_LEADER_EPOCH,
    ErrorCode.UNKNOWN_LEADER_EPOCH,
    ErrorCode.KAFKA_STORAGE_ERROR,
    ErrorCode.UNKNOWN_TOPIC_ID,
    ErrorCode.INCONSISTENT_TOPIC_ID,
    ErrorCode.NOT_COORDINATOR,
    ErrorCode.COORDINATOR_NOT_AVAILABLE,
})


class RafkaError(Exception):
    """Base of every typed Rafka error.

    Attributes:
        code: Kafka's error code (`ErrorCode.NONE`-free; client-side errors use
            UNKNOWN_SERVER_ERROR's slot only through their own subclasses).
        retriable: the operation may succeed if tried again.
        invalid_metadata: refresh metadata (leaders, coordinators) before retrying.
        fatal: the client instance cannot continue (e.g. a fenced producer).
    """

    code: ErrorCode = ErrorCode.UNKNOWN_SERVER_ERROR
    retriable: bool = False
    invalid_metadata: bool = False
    fatal: bool = False

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.code.name)
        self.message = message or self.code.name

    @property
    def name(self) -> str:
        return self.code.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"

    @staticmethod
    def for_code(code: int | ErrorCode, message: str = "") -> RafkaError:
        """Build the exception for a wire code, e.g. from a response's `error_code`."""
        try:
            cls = _BY_CODE[ErrorCode(code)]
        except (ValueError, KeyError):
            return UnknownServerError(message or f"unknown error code {code}")
        return cls(message)


def _class_name(code: ErrorCode) -> str:
    name = "".join(part.capitalize() for part in code.name.split("_"))
    if name.endswith("Exception"):
        name = name[: -len("Exception")]
    return name + "Error"


_BY_CODE: dict[ErrorCode, type[RafkaError]] = {}

for _code in ErrorCode:
    if _code is ErrorCode.NONE:
        continue
    _cls = type(
        _class_name(_code),
        (RafkaError,),
        {
            "code": _code,
            "retriable": _code in _RETRIABLE,
            "invalid_metadata": _code in _INVALID_METADATA,
            "fatal": _code in (ErrorCode.PRODUCER_FENCED, ErrorCode.FENCED_INSTANCE_ID),
            "__module__": __name__,
            "__doc__": f"Kafka error {_code.name} ({int(_code)}).",
        },
    )
    _BY_CODE[_code] = _cls
    globals()[_cls.__name__] = _cls

del _code, _cls

# Explicit names for the errors the code base raises, so imports are checked by tools.
UnknownServerError: type[RafkaError] = _BY_CODE[ErrorCode.UNKNOWN_SERVER_ERROR]
OffsetOutOfRangeError: type[RafkaError] = _BY_CODE[ErrorCode.OFFSET_OUT_OF_RANGE]
CorruptMessageError: type[RafkaError] = _BY_CODE[ErrorCode.CORRUPT_MESSAGE]
UnknownTopicOrPartitionError: type[RafkaError] = _BY_CODE[ErrorCode.UNKNOWN_TOPIC_OR_PARTITION]
LeaderNotAvailableError: type[RafkaError] = _BY_CODE[ErrorCode.LEADER_NOT_AVAILABLE]
NotLeaderOrFollowerError: type[RafkaError] = _BY_CODE[ErrorCode.NOT_LEADER_OR_FOLLOWER]
RequestTimedOutError: type[RafkaError] = _BY_CODE[ErrorCode.REQUEST_TIMED_OUT]
MessageTooLargeError: type[RafkaError] = _BY_CODE[ErrorCode.MESSAGE_TOO_LARGE]
InvalidTopicError: type[RafkaError] = _BY_CODE[ErrorCode.INVALID_TOPIC_EXCEPTION]
NotEnoughReplicasError: type[RafkaError] = _BY_CODE[ErrorCode.NOT_ENOUGH_REPLICAS]
NotEnoughReplicasAfterAppendError: type[RafkaError] = _BY_CODE[
    ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND
]
InvalidTimestampError: type[RafkaError] = _BY_CODE[ErrorCode.INVALID_TIMESTAMP]
InvalidConfigError: type[RafkaError] = _BY_CODE[ErrorCode.INVALID_CONFIG]
InvalidRequestError: type[RafkaError] = _BY_CODE[ErrorCode.INVALID_REQUEST]
OutOfOrderSequenceNumberError: type[RafkaError] = _BY_CODE[ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER]
InvalidProducerEpochError: type[RafkaError] = _BY_CODE[ErrorCode.INVALID_PRODUCER_EPOCH]
KafkaStorageError: type[RafkaError] = _BY_CODE[ErrorCode.KAFKA_STORAGE_ERROR]
FencedLeaderEpochError: type[RafkaError] = _BY_CODE[ErrorCode.FENCED_LEADER_EPOCH]
UnknownLeaderEpochError: type[RafkaError] = _BY_CODE[ErrorCode.UNKNOWN_LEADER_EPOCH]
UnsupportedCompressionTypeError: type[RafkaError] = _BY_CODE[
    ErrorCode.UNSUPPORTED_COMPRESSION_TYPE
]
InvalidRecordError: type[RafkaError] = _BY_CODE[ErrorCode.INVALID_RECORD]
NotControllerError: type[RafkaError] = _BY_CODE[ErrorCode.NOT_CONTROLLER]


def error_class(code: int | ErrorCode) -> type[RafkaError]:
    """The exception class for a Kafka error code (UnknownServerError for unknown codes)."""
    try:
        return _BY_CODE[ErrorCode(code)]
    except (ValueError, KeyError):
        return UnknownServerError


__all__ = ["ErrorCode", "RafkaError", "error_class"] + sorted(
    cls.__name__ for cls in _BY_CODE.values()
)
