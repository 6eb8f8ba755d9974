"""Converters between the controller API's protobuf messages and controller/requests.py.

Pure functions used only by the servicer: `*_from_pb` builds the request dataclass the
`ControlManager` takes, `*_to_pb` fills the protobuf response from its response dataclass. The
response header's leader fields are the servicer's business, not these functions'.

Kafka sentinels: an absent optional count is -1, an absent `previous_broker_epoch` is -1. A
BrokerRegistration's endpoint is its first listener (Rafka serves one listener per broker).
"""

from __future__ import annotations

from controller import requests as rq
from controller.partition_change import BrokerState
from proto import admin_pb2, common_pb2
from proto import controller_pb2 as pb
from proto.errors import InvalidRequestError
from proto.metadata import ConfigResourceType, Endpoint, LeaderRecoveryState

# ---- broker lifecycle ----------------------------------------------------------------------


def broker_registration_from_pb(req: pb.BrokerRegistrationRequest) -> rq.BrokerRegistrationRequest:
    if not req.listeners:
        raise InvalidRequestError(f"broker {req.broker_id} registered with no listener")
    first = req.listeners[0]
    return rq.BrokerRegistrationRequest(
        broker_id=req.broker_id,
        incarnation_id=req.incarnation_id,
        endpoint=Endpoint(host=first.host, port=first.port),
        rack=req.rack if req.HasField("rack") else None,
        previous_broker_epoch=(
            req.previous_broker_epoch if req.HasField("previous_broker_epoch") else -1
        ),
    )


def broker_registration_to_pb(resp: rq.BrokerRegistrationResponse) -> pb.BrokerRegistrationResponse:
    return pb.BrokerRegistrationResponse(
        error_code=int(resp.error_code), error_message=resp.error_message,
        broker_epoch=resp.broker_epoch,
    )


def broker_heartbeat_from_pb(req: pb.BrokerHeartbeatRequest) -> rq.BrokerHeartbeatRequest:
    return rq.BrokerHeartbeatRequest(
        broker_id=req.broker_id,
        broker_epoch=req.broker_epoch,
        current_metadata_offset=req.current_metadata_offset,
        want_fence=req.want_fence,
        want_shutdown=req.want_shutdown,
    )


def broker_heartbeat_to_pb(resp: rq.BrokerHeartbeatResponse) -> pb.BrokerHeartbeatResponse:
    return pb.BrokerHeartbeatResponse(
        error_code=int(resp.error_code), error_message=resp.error_message,
        is_caught_up=resp.is_caught_up, is_fenced=resp.is_fenced,
        should_shutdown=resp.should_shutdown,
    )


# ---- topics --------------------------------------------------------------------------------


def _configs(entries: object) -> dict[str, str | None]:
    return {
        e.name: (e.value if e.HasField("value") else None)
        for e in entries  # type: ignore[attr-defined]
    }


def create_topics_from_pb(req: admin_pb2.CreateTopicsRequest) -> rq.CreateTopicsRequest:
    topics = []
    for t in req.topics:
        assignments = None
        if t.assignments:
            ordered = sorted(t.assignments, key=lambda a: a.partition_index)
            if [a.partition_index for a in ordered] != list(range(len(ordered))):
                raise InvalidRequestError(f"assignments of {t.name!r} must cover 0..n-1")
            assignments = tuple(tuple(a.broker_ids) for a in ordered)
        topics.append(rq.CreatableTopic(
            name=t.name,
            num_partitions=t.num_partitions if t.HasField("num_partitions") else -1,
            replication_factor=(
                t.replication_factor if t.HasField("replication_factor") else -1
            ),
            assignments=assignments,
            configs=_configs(t.configs),
        ))
    return rq.CreateTopicsRequest(topics=tuple(topics), validate_only=req.validate_only)


def create_topics_to_pb(resp: rq.CreateTopicsResponse) -> admin_pb2.CreateTopicsResponse:
    out = admin_pb2.CreateTopicsResponse(
        error_code=int(resp.error_code), error_message=resp.error_message
    )
    for t in resp.topics:
        result = out.topics.add(
            name=t.name, topic_id=t.topic_id, error_code=int(t.error_code),
            error_message=t.error_message, num_partitions=t.num_partitions,
            replication_factor=t.replication_factor,
        )
        for c in t.configs:
            described = result.configs.add(
                name=c.name,
                config_source=(
                    common_pb2.CONFIG_SOURCE_DEFAULT_CONFIG if c.is_default
                    else common_pb2.CONFIG_SOURCE_TOPIC_CONFIG
                ),
            )
            if c.value is not None:
                described.value = c.value
    return out


def delete_topics_from_pb(req: admin_pb2.DeleteTopicsRequest) -> rq.DeleteTopicsRequest:
    names: list[str] = []
    ids: list[str] = []
    for t in req.topics:
        if t.topic_id:
            # By id when given; a name given too is not cross-checked (Kafka would answer
            # INCONSISTENT_TOPIC_ID on a mismatch).
            ids.append(t.topic_id)
        else:
            names.append(t.name)
    return rq.DeleteTopicsRequest(names=tuple(names), topic_ids=tuple(ids))


def delete_topics_to_pb(resp: rq.DeleteTopicsResponse) -> admin_pb2.DeleteTopicsResponse:
    out = admin_pb2.DeleteTopicsResponse(
        error_code=int(resp.error_code), error_message=resp.error_message
    )
    for t in resp.topics:
        out.topics.add(name=t.name, topic_id=t.topic_id, error_code=int(t.error_code),
                       error_message=t.error_message)
    return out


def create_partitions_from_pb(
    req: admin_pb2.CreatePartitionsRequest,
) -> rq.CreatePartitionsRequest:
    return rq.CreatePartitionsRequest(
        topics=tuple(
            rq.CreatePartitionsTopic(
                name=t.name,
                count=t.count,
                assignments=(
                    tuple(tuple(a.broker_ids) for a in t.assignments) if t.assignments else None
                ),
            )
            for t in req.topics
        ),
        validate_only=req.validate_only,
    )


def create_partitions_to_pb(
    resp: rq.CreatePartitionsResponse,
) -> admin_pb2.CreatePartitionsResponse:
    out = admin_pb2.CreatePartitionsResponse(
        error_code=int(resp.error_code), error_message=resp.error_message
    )
    for t in resp.topics:
        out.topics.add(name=t.name, error_code=int(t.error_code), error_message=t.error_message)
    return out


# ---- configs -------------------------------------------------------------------------------


def alter_configs_from_pb(
    req: admin_pb2.IncrementalAlterConfigsRequest,
) -> rq.IncrementalAlterConfigsRequest:
    resources = []
    for r in req.resources:
        try:
            resource_type = ConfigResourceType(r.resource_type)
        except ValueError:
            raise InvalidRequestError(
                f"config resource type {r.resource_type} is not supported"
            ) from None
        resources.append(rq.AlterConfigsResource(
            resource_type=resource_type,
            resource_name=r.resource_name,
            configs=tuple(
                rq.AlterableConfig(
                    name=c.name,
                    op=rq.AlterConfigOpType(c.config_operation),
                    value=c.value if c.HasField("value") else None,
                )
                for c in r.configs
            ),
        ))
    return rq.IncrementalAlterConfigsRequest(
        resources=tuple(resources), validate_only=req.validate_only
    )


def alter_configs_to_pb(
    resp: rq.IncrementalAlterConfigsResponse,
) -> admin_pb2.IncrementalAlterConfigsResponse:
    out = admin_pb2.IncrementalAlterConfigsResponse(
        error_code=int(resp.error_code), error_message=resp.error_message
    )
    for r in resp.responses:
        out.responses.add(
            error_code=int(r.error_code), error_message=r.error_message,
            resource_type=int(r.resource_type),
            resource_name=r.resource_name,
        )
    return out


# ---- producer ids, elections, ISR ------------------------------------------------------------


def allocate_producer_ids_from_pb(
    req: pb.AllocateProducerIdsRequest,
) -> rq.AllocateProducerIdsRequest:
    return rq.AllocateProducerIdsRequest(broker_id=req.broker_id, broker_epoch=req.broker_epoch)


def allocate_producer_ids_to_pb(
    resp: rq.AllocateProducerIdsResponse,
) -> pb.AllocateProducerIdsResponse:
    return pb.AllocateProducerIdsResponse(
        error_code=int(resp.error_code), error_message=resp.error_message,
        producer_id_start=resp.producer_id_start, producer_id_len=resp.producer_id_len,
    )


def elect_leaders_from_pb(req: admin_pb2.ElectLeadersRequest) -> rq.ElectLeadersRequest:
    partitions = None
    if not req.all_topic_partitions:
        partitions = tuple(
            rq.TopicPartition(tp.topic, p) for tp in req.topic_partitions for p in tp.partitions
        )
    return rq.ElectLeadersRequest(
        election_type=rq.ElectionType(req.election_type), partitions=partitions
    )


def elect_leaders_to_pb(resp: rq.ElectLeadersResponse) -> admin_pb2.ElectLeadersResponse:
    out = admin_pb2.ElectLeadersResponse(
        error_code=int(resp.error_code), error_message=resp.error_message
    )
    by_topic: dict[str, admin_pb2.ElectLeadersResponse.ReplicaElectionResult] = {}
    for p in resp.partitions:
        topic = by_topic.get(p.topic)
        if topic is None:
            topic = by_topic[p.topic] = out.topics.add(name=p.topic)
        topic.partitions.add(partition_index=p.partition, error_code=int(p.error_code),
                             error_message=p.error_message)
    return out


def alter_partition_from_pb(req: pb.AlterPartitionRequest) -> rq.AlterPartitionRequest:
    return rq.AlterPartitionRequest(
        broker_id=req.broker_id,
        broker_epoch=req.broker_epoch,
        partitions=tuple(
            rq.AlterPartitionData(
                topic_id=t.topic_id,
                partition_id=p.partition_index,
                leader_epoch=p.leader_epoch,
                new_isr=tuple(
                    BrokerState(s.broker_id, s.broker_epoch) for s in p.new_isr_with_epochs
                ),
                partition_epoch=p.partition_epoch,
                leader_recovery_state=LeaderRecoveryState(p.leader_recovery_state),
            )
            for t in req.topics
            for p in t.partitions
        ),
    )


def alter_partition_to_pb(
    resp: rq.AlterPartitionResponse, req: pb.AlterPartitionRequest
) -> pb.AlterPartitionResponse:
    """Results are grouped by topic as in the request (names copied from it)."""
    names = {t.topic_id: t.name for t in req.topics}
    out = pb.AlterPartitionResponse(
        error_code=int(resp.error_code), error_message=resp.error_message
    )
    by_topic: dict[str, pb.AlterPartitionResponse.TopicData] = {}
    for p in resp.partitions:
        topic = by_topic.get(p.topic_id)
        if topic is None:
            topic = by_topic[p.topic_id] = out.topics.add(
                topic_id=p.topic_id, name=names.get(p.topic_id, "")
            )
        topic.partitions.add(
            partition_index=p.partition_id, error_code=int(p.error_code),
            error_message=p.error_message, leader_id=p.leader_id, leader_epoch=p.leader_epoch,
            isr=list(p.isr),
            leader_recovery_state=int(p.leader_recovery_state),
            partition_epoch=p.partition_epoch,
        )
    return out
