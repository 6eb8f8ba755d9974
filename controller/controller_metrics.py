"""The controller's gauges (names in `proto.metrics`): its Raft state and, on the active
controller, the cluster's counts from the committed metadata image.

As in Kafka, only the active controller reports the cluster-wide counts; standbys report 0, so
a sum over every controller is the cluster's value. Refreshed once a second on the controller's
own loop (`proto.metrics_runtime.PeriodicMetrics`), never on a request path.
"""

from __future__ import annotations

from typing import Any

from proto import metrics as m
from proto.metadata_image import MetadataImage


def node_name(node_id: int) -> str:
    return f"controller-{node_id}"


def refresh_gauges(node_id: int, raft: Any) -> None:
    """Raft gauges of this voter, then the cluster gauges from its image.

    Args:
        raft: the node's `RaftRuntime` (term, leader_id, commit_index, last_index,
            applied_index, is_active, image), read on its own loop.
    """
    tags = {"node": node_name(node_id)}
    m.RAFT_CURRENT_EPOCH.set(raft.term, tags)
    leader = raft.leader_id
    m.RAFT_CURRENT_LEADER.set(-1 if leader is None else leader, tags)
    m.RAFT_HIGH_WATERMARK.set(raft.commit_index, tags)
    m.RAFT_LOG_END_OFFSET.set(raft.last_index, tags)
    m.LAST_APPLIED_RECORD_OFFSET.set(raft.applied_index, tags)
    refresh_cluster_gauges(node_id, raft.image, raft.is_active)


def refresh_cluster_gauges(node_id: int, image: MetadataImage, active: bool) -> None:
    tags = {"node": node_name(node_id)}
    m.ACTIVE_CONTROLLER_COUNT.set(1 if active else 0, tags)
    if active:
        partitions = sum(len(t.partitions) for t in image.topics_by_id.values())
        registered = len(image.registered_broker_ids())
        live = len(image.live_broker_ids())
        values = (len(image.offline_partitions()), partitions, len(image.topic_ids_by_name),
                  live, registered - live)
    else:
        values = (0, 0, 0, 0, 0)
    for gauge, value in zip(_CLUSTER_GAUGES, values):
        gauge.set(value, tags)


def forget_gauges(node_id: int) -> None:
    tags = {"node": node_name(node_id)}
    for gauge in (m.ACTIVE_CONTROLLER_COUNT, *_CLUSTER_GAUGES, *_RAFT_GAUGES):
        gauge.remove(tags)


_CLUSTER_GAUGES = (m.OFFLINE_PARTITIONS, m.GLOBAL_PARTITION_COUNT, m.GLOBAL_TOPIC_COUNT,
                   m.ACTIVE_BROKER_COUNT, m.FENCED_BROKER_COUNT)
_RAFT_GAUGES = (m.RAFT_CURRENT_EPOCH, m.RAFT_CURRENT_LEADER, m.RAFT_HIGH_WATERMARK,
                m.RAFT_LOG_END_OFFSET, m.LAST_APPLIED_RECORD_OFFSET)
