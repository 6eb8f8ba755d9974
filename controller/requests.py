"""Requests to and responses from the active controller, as plain frozen dataclasses.

The controller's gRPC servicer converts protobuf messages (proto/controller.proto,
proto/admin.proto) to these and back; `controller.control.ControlManager` sees only these.
Names follow Kafka's JSON schemas in snake_case, like the .proto files.

Conventions:
- Every response has a request-wide `error_code` / `error_message` (NOT_CONTROLLER from a
  standby, STALE_BROKER_EPOCH for an AlterPartition from a stale broker, ...). Responses with
  per-item results carry their own codes per item; those are meaningful only when the
  request-wide code is NONE (as in admin.proto).
- Kafka's -1 sentinels stay -1 (`num_partitions=-1` means "the default").
- Items are answered in request order, one result per item.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum

from controller.partition_change import BrokerState
from proto.errors import ErrorCode
from proto.metadata import NO_LEADER, ConfigResourceType, Endpoint, LeaderRecoveryState

Assignment = tuple[tuple[int, ...], ...]  # partition (by position) → replicas in order


class AlterConfigOpType(IntEnum):
    """Kafka's `AlterConfigOp.OpType` (numbers as in common.proto's AlterConfigOpType)."""

    SET = 0
    DELETE = 1  # revert to the default
    APPEND = 2  # list-typed configs only: add items not already present
    SUBTRACT = 3  # list-typed configs only: remove items


class ElectionType(IntEnum):
    """Kafka's `ElectionType` for ElectLeaders (admin.proto numbers)."""

    PREFERRED = 0
    UNCLEAN = 1


# ------------------------------------------------------------------ broker lifecycle (§5.4)


@dataclass(frozen=True, slots=True)
class BrokerRegistrationRequest:
    """Kafka BrokerRegistration (key 62)."""

    broker_id: int
    incarnation_id: str  # random per broker process start
    endpoint: Endpoint
    rack: str | None = None
    previous_broker_epoch: int = -1  # KIP-966; -1 after an unclean shutdown or first start


@dataclass(frozen=True, slots=True)
class BrokerRegistrationResponse:
    error_code: ErrorCode = ErrorCode.NONE
    error_message: str = ""
    broker_epoch: int = -1


@dataclass(frozen=True, slots=True)
class BrokerHeartbeatRequest:
    """Kafka BrokerHeartbeat (key 63), every broker.heartbeat.interval.ms."""

    broker_id: int
    broker_epoch: int
    current_metadata_offset: int  # highest metadata offset the broker has applied (inclusive)
    want_fence: bool = False
    want_shutdown: bool = False


@dataclass(frozen=True, slots=True)
class BrokerHeartbeatResponse:
    error_code: ErrorCode = ErrorCode.NONE
    error_message: str = ""
    is_caught_up: bool = False
    is_fenced: bool = True
    should_shutdown: bool = False


# ------------------------------------------------------------------ topics


@dataclass(frozen=True, slots=True)
class CreatableTopic:
    """One topic of a CreateTopics request (Kafka's CreatableTopic)."""

    name: str
    num_partitions: int = -1  # -1: the controller's num_partitions default
    replication_factor: int = -1  # -1: the controller's default_replication_factor
    # Manual placement, one replica list per partition; requires both counts to be -1.
    assignments: Assignment | None = None
    configs: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CreateTopicsRequest:
    """Kafka CreateTopics (key 19)."""

    topics: tuple[CreatableTopic, ...]
    validate_only: bool = False


@dataclass(frozen=True, slots=True)
class CreatableTopicConfigs:
    """One effective config of a created topic (Kafka CreateTopics v5 `Configs`)."""

    name: str
    value: str | None
    is_default: bool  # False: set by the request


@dataclass(frozen=True, slots=True)
class CreatableTopicResult:
    name: str
    error_code: ErrorCode = ErrorCode.NONE
    error_message: str = ""
    topic_id: str = ""  # "" on error and for validate_only (Kafka's zero UUID)
    num_partitions: int = -1
    replication_factor: int = -1
    configs: tuple[CreatableTopicConfigs, ...] = ()


@dataclass(frozen=True, slots=True)
class CreateTopicsResponse:
    topics: tuple[CreatableTopicResult, ...] = ()
    error_code: ErrorCode = ErrorCode.NONE
    error_message: str = ""


@dataclass(frozen=True, slots=True)
class DeleteTopicsRequest:
    """Kafka DeleteTopics (key 20): topics by name and/or by id."""

    names: tuple[str, ...] = ()
    topic_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DeletableTopicResult:
    name: str  # "" for an unknown topic id
    topic_id: str  # "" for an unknown name
    error_code: ErrorCode = ErrorCode.NONE
    error_message: str = ""


@dataclass(frozen=True, slots=True)
class DeleteTopicsResponse:
    topics: tuple[DeletableTopicResult, ...] = ()  # names first, then ids, in request order
    error_code: ErrorCode = ErrorCode.NONE
    error_message: str = ""


@dataclass(frozen=True, slots=True)
class CreatePartitionsTopic:
    """Grow `name` to `count` partitions in total (Kafka's CreatePartitionsTopic)."""

    name: str
    count: int
    assignments: Assignment | None = None  # replicas of the new partitions only, in order


@dataclass(frozen=True, slots=True)
class CreatePartitionsRequest:
    """Kafka CreatePartitions (key 37)."""

    topics: tuple[CreatePartitionsTopic, ...]
    validate_only: bool = False


@dataclass(frozen=True, slots=True)
class CreatePartitionsTopicResult:
    name: str
    error_code: ErrorCode = ErrorCode.NONE
    error_message: str = ""


@dataclass(frozen=True, slots=True)
class CreatePartitionsResponse:
    topics: tuple[CreatePartitionsTopicResult, ...] = ()
    error_code: ErrorCode = ErrorCode.NONE
    error_message: str = ""


# ------------------------------------------------------------------ configs


@dataclass(frozen=True, slots=True)
class AlterableConfig:
    name: str
    op: AlterConfigOpType
    value: str | None = None  # required for SET/APPEND/SUBTRACT, ignored for DELETE


@dataclass(frozen=True, slots=True)
class AlterConfigsResource:
    """A topic (by name) or a broker (decimal id, "" = cluster-wide default)."""

    resource_type: ConfigResourceType
    resource_name: str
    configs: tuple[AlterableConfig, ...]


@dataclass(frozen=True, slots=True)
class IncrementalAlterConfigsRequest:
    """Kafka IncrementalAlterConfigs (key 44)."""

    resources: tuple[AlterConfigsResource, ...]
    validate_only: bool = False


@dataclass(frozen=True, slots=True)
class AlterConfigsResourceResponse:
    resource_type: ConfigResourceType
    resource_name: str
    error_code: ErrorCode = ErrorCode.NONE
    error_message: str = ""


@dataclass(frozen=True, slots=True)
class IncrementalAlterConfigsResponse:
    responses: tuple[AlterConfigsResourceResponse, ...] = ()
    error_code: ErrorCode = ErrorCode.NONE
    error_message: str = ""


# ------------------------------------------------------------------ producer ids


@dataclass(frozen=True, slots=True)
class AllocateProducerIdsRequest:
    """Kafka AllocateProducerIds (key 67)."""

    broker_id: int
    broker_epoch: int


@dataclass(frozen=True, slots=True)
class AllocateProducerIdsResponse:
    error_code: ErrorCode = ErrorCode.NONE
    error_message: str = ""
    producer_id_start: int = -1  # the block is [start, start + len)
    producer_id_len: int = 0


# ------------------------------------------------------------------ leaders and ISR


@dataclass(frozen=True, slots=True, order=True)
class TopicPartition:
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class ElectLeadersRequest:
    """Kafka ElectLeaders (key 43). partitions=None: every partition (Kafka's null)."""

    election_type: ElectionType
    partitions: tuple[TopicPartition, ...] | None = None


@dataclass(frozen=True, slots=True)
class ElectLeadersPartitionResult:
    topic: str
    partition: int
    error_code: ErrorCode = ErrorCode.NONE
    error_message: str = ""


@dataclass(frozen=True, slots=True)
class ElectLeadersResponse:
    # For partitions=None, partitions that need no election are left out (as Kafka does).
    partitions: tuple[ElectLeadersPartitionResult, ...] = ()
    error_code: ErrorCode = ErrorCode.NONE
    error_message: str = ""


@dataclass(frozen=True, slots=True)
class AlterPartitionData:
    """One partition of an AlterPartition request (Kafka AlterPartition v3, KIP-903)."""

    topic_id: str
    partition_id: int
    leader_epoch: int
    new_isr: tuple[BrokerState | int, ...]  # an int means "no broker epoch check" (-1)
    partition_epoch: int
    leader_recovery_state: LeaderRecoveryState = LeaderRecoveryState.RECOVERED


@dataclass(frozen=True, slots=True)
class AlterPartitionRequest:
    """Kafka AlterPartition (key 56): a partition leader changes its ISR (§4.5)."""

    broker_id: int
    broker_epoch: int
    partitions: tuple[AlterPartitionData, ...]


@dataclass(frozen=True, slots=True)
class AlterPartitionPartitionResult:
    """The partition's state after the change, or the current state on error (if known)."""

    topic_id: str
    partition_id: int
    error_code: ErrorCode = ErrorCode.NONE
    error_message: str = ""
    leader_id: int = NO_LEADER
    leader_epoch: int = -1
    isr: tuple[int, ...] = ()
    partition_epoch: int = -1
    leader_recovery_state: LeaderRecoveryState = LeaderRecoveryState.RECOVERED


@dataclass(frozen=True, slots=True)
class AlterPartitionResponse:
    partitions: tuple[AlterPartitionPartitionResult, ...] = ()
    error_code: ErrorCode = ErrorCode.NONE
    error_message: str = ""


ControllerResponse = (
    BrokerRegistrationResponse
    | BrokerHeartbeatResponse
    | CreateTopicsResponse
    | DeleteTopicsResponse
    | CreatePartitionsResponse
    | IncrementalAlterConfigsResponse
    | AllocateProducerIdsResponse
    | ElectLeadersResponse
    | AlterPartitionResponse
    | None
)
