"""The broker control plane against three real `ControllerServer`s over gRPC (no Ray, no data
plane): ControllerChannel, BrokerMetadata and AdminHandlers.

Brokers have fake endpoints (nothing listens there); AdminHandlers are called directly with a
request message and no context. Waits are deadline-based polls, never sleeps used as
synchronization; everything is torn down in `finally`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from cluster.admin_handlers import AdminHandlers
from cluster.controller_channel_transport import ControllerChannel
from cluster.metadata_runtime import BrokerMetadata
from controller.control import ControllerConfig
from controller.server import ControllerServer
from proto import admin_pb2, broker_pb2, common_pb2
from proto.broker_config import BrokerConfig
from proto.errors import ErrorCode
from proto.fault_transport import FaultTable
from proto.metadata_image import ImageChange, MetadataImage

HEARTBEAT_MS = 200
SESSION_MS = 1500
BOUND_S = 10.0  # generous: the machine is shared


async def wait_until(cond: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not true after {timeout_s}s")
        await asyncio.sleep(0.02)


class Cluster:
    """Three controllers and up to three brokers' control planes in this loop."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.controllers: dict[int, ControllerServer] = {}
        self.voters: dict[int, str] = {}
        self.config = BrokerConfig.resolve(
            broker_heartbeat_interval_ms=HEARTBEAT_MS, broker_session_timeout_ms=SESSION_MS,
            default_replication_factor=3, num_partitions=2, request_timeout_ms=8000,
        )
        self.channels: dict[int, ControllerChannel] = {}
        self.metadata: dict[int, BrokerMetadata] = {}
        self.admin: dict[int, AdminHandlers] = {}
        self.changes: dict[int, list[ImageChange]] = {}

    async def start_controllers(self) -> None:
        config = ControllerConfig(
            broker_heartbeat_interval_ms=HEARTBEAT_MS, broker_session_timeout_ms=SESSION_MS
        )
        for i in (1, 2, 3):
            self.controllers[i] = ControllerServer(
                i, str(self.root / f"controller-{i}"), config=config,
                election_timeout_ms=300, heartbeat_interval_ms=50, seed=i,
                faults=FaultTable(), cluster_id="cp-test",
            )
            self.voters[i] = await self.controllers[i].bind()
        for i in (1, 2, 3):
            await self.controllers[i].start(self.voters)

    async def start_broker(self, broker_id: int) -> None:
        channel = ControllerChannel(self.voters, local_name=f"broker {broker_id}",
                                    faults=FaultTable())
        self.channels[broker_id] = channel
        metadata = BrokerMetadata(
            broker_id, endpoint=("127.0.0.1", 19000 + broker_id), channel=channel,
            config=self.config, cluster_id="cp-test", incarnation_id="",
        )
        changes: list[ImageChange] = []
        self.changes[broker_id] = changes
        metadata.add_listener(lambda image, change: changes.append(change))
        self.metadata[broker_id] = metadata
        self.admin[broker_id] = AdminHandlers(
            broker_id=broker_id, metadata=metadata, channel=channel, config=self.config
        )
        await metadata.start()

    def active_controller(self) -> int | None:
        leaders = [i for i, s in self.controllers.items() if s.status()["role"] == "leader"]
        return leaders[0] if len(leaders) == 1 else None

    async def stop(self) -> None:
        for metadata in self.metadata.values():
            await metadata.stop()
        for channel in self.channels.values():
            await channel.close()
        for server in self.controllers.values():
            await server.stop(grace_s=0.1)


def leaders(image: MetadataImage, topic: str) -> dict[int, int]:
    found = image.topic(topic)
    assert found is not None, f"{topic} missing"
    return {p: reg.leader for p, reg in found.partitions.items()}


async def create_topic(admin: AdminHandlers, name: str, partitions: int, rf: int
                       ) -> admin_pb2.CreateTopicsResponse:
    request = admin_pb2.CreateTopicsRequest(
        timeout_ms=5000,
        topics=[admin_pb2.CreateTopicsRequest.CreatableTopic(
            name=name, num_partitions=partitions, replication_factor=rf,
            configs=[common_pb2.ConfigEntry(name="retention.ms", value="1000")],
        )],
    )
    return await admin.CreateTopics(request, None)


def test_register_create_fence_and_controlled_shutdown(tmp_path: Path) -> None:
    asyncio.run(_register_create_fence_and_controlled_shutdown(tmp_path))


async def _register_create_fence_and_controlled_shutdown(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        await cluster.start_controllers()
        for broker_id in (1, 2, 3):
            await cluster.start_broker(broker_id)
        for metadata in cluster.metadata.values():
            await metadata.wait_unfenced(BOUND_S)
            assert metadata.broker_epoch > 0
        assert any(1 in c.brokers for c in cluster.changes[1]), "listeners hear of broker 1"

        # CreateTopics through broker 1: once answered, broker 1's own image has the topic.
        response = await create_topic(cluster.admin[1], "orders", 3, 3)
        assert response.error_code == ErrorCode.NONE, response
        assert [t.error_code for t in response.topics] == [ErrorCode.NONE]
        assert cluster.metadata[1].image.topic("orders") is not None
        for metadata in cluster.metadata.values():
            await wait_until(lambda m=metadata: m.image.topic("orders") is not None,
                             timeout_s=BOUND_S, what="every broker sees orders")
        assert any(c.partitions for c in cluster.changes[2])

        # Metadata: brokers, controller, partitions; unknown and invalid names.
        md = await cluster.admin[2].Metadata(broker_pb2.MetadataRequest(
            topics=[broker_pb2.MetadataRequest.MetadataRequestTopic(name=n)
                    for n in ("orders", "nope", "bad name!")],
        ), None)
        assert [b.node_id for b in md.brokers] == [1, 2, 3]
        assert md.brokers[0].port == 19001
        assert md.controller_id == cluster.active_controller()
        orders, nope, bad = md.topics
        assert orders.error_code == ErrorCode.NONE and orders.topic_id
        assert [p.partition_index for p in orders.partitions] == [0, 1, 2]
        assert all(sorted(p.replicas) == [1, 2, 3] and p.leader_id in (1, 2, 3)
                   for p in orders.partitions)
        assert nope.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        assert bad.error_code == ErrorCode.INVALID_TOPIC_EXCEPTION

        # Auto-creation: LEADER_NOT_AVAILABLE first, then the topic with broker defaults.
        auto_req = broker_pb2.MetadataRequest(
            topics=[broker_pb2.MetadataRequest.MetadataRequestTopic(name="auto")],
            allow_auto_topic_creation=True,
        )
        first = await cluster.admin[3].Metadata(auto_req, None)
        assert first.topics[0].error_code == ErrorCode.LEADER_NOT_AVAILABLE
        await wait_until(lambda: cluster.metadata[3].image.topic("auto") is not None,
                         timeout_s=BOUND_S, what="auto topic visible")
        second = await cluster.admin[3].Metadata(auto_req, None)
        assert second.topics[0].error_code == ErrorCode.NONE
        assert len(second.topics[0].partitions) == 2  # num.partitions

        # DescribeConfigs: explicit topic config + defaults; unknown topic.
        dc = await cluster.admin[1].DescribeConfigs(broker_pb2.DescribeConfigsRequest(
            resources=[
                broker_pb2.DescribeConfigsRequest.DescribeConfigsResource(
                    resource_type=common_pb2.CONFIG_RESOURCE_TYPE_TOPIC, resource_name="orders"),
                broker_pb2.DescribeConfigsRequest.DescribeConfigsResource(
                    resource_type=common_pb2.CONFIG_RESOURCE_TYPE_TOPIC, resource_name="nope"),
                broker_pb2.DescribeConfigsRequest.DescribeConfigsResource(
                    resource_type=common_pb2.CONFIG_RESOURCE_TYPE_BROKER, resource_name="1",
                    configuration_keys=["broker.heartbeat.interval.ms"]),
            ]), None)
        topic_configs = {c.name: c for c in dc.results[0].configs}
        assert topic_configs["retention.ms"].value == "1000"
        assert topic_configs["retention.ms"].config_source == common_pb2.CONFIG_SOURCE_TOPIC_CONFIG
        assert topic_configs["cleanup.policy"].value == "delete"
        assert dc.results[1].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        assert [(c.name, c.value) for c in dc.results[2].configs] == [
            ("broker.heartbeat.interval.ms", str(HEARTBEAT_MS))]

        # IncrementalAlterConfigs is visible on this broker when it returns.
        alter = await cluster.admin[2].IncrementalAlterConfigs(
            admin_pb2.IncrementalAlterConfigsRequest(resources=[
                admin_pb2.IncrementalAlterConfigsRequest.AlterConfigsResource(
                    resource_type=common_pb2.CONFIG_RESOURCE_TYPE_TOPIC, resource_name="orders",
                    configs=[admin_pb2.IncrementalAlterConfigsRequest.AlterableConfig(
                        name="retention.ms", value="2000")])]), None)
        assert alter.error_code == ErrorCode.NONE and alter.responses[0].error_code == 0
        assert cluster.metadata[2].image.topic_config("orders", "retention.ms") == "2000"

        # Producer ids: distinct across brokers; InitProducerId and an epoch bump.
        ids = [await cluster.metadata[b].allocate_producer_id() for b in (1, 2, 3, 1, 2, 3)]
        assert len(set(ids)) == len(ids)
        init = await cluster.admin[1].InitProducerId(broker_pb2.InitProducerIdRequest(), None)
        assert init.error_code == ErrorCode.NONE and init.producer_epoch == 0
        assert init.producer_id not in ids
        bump = await cluster.admin[1].InitProducerId(broker_pb2.InitProducerIdRequest(
            producer_id=init.producer_id, producer_epoch=0), None)
        assert (bump.producer_id, bump.producer_epoch) == (init.producer_id, 1)
        txn = await cluster.admin[1].InitProducerId(
            broker_pb2.InitProducerIdRequest(transactional_id="t"), None)
        assert txn.error_code == ErrorCode.UNSUPPORTED_VERSION

        # Broker 3 dies (no controlled shutdown): fenced after the session timeout, and the
        # others' images show new leaders.
        await cluster.metadata.pop(3).stop()
        for b in (1, 2):
            await wait_until(
                lambda b=b: cluster.metadata[b].image.brokers[3].fenced
                and 3 not in leaders(cluster.metadata[b].image, "orders").values(),
                timeout_s=BOUND_S, what="broker 3 fenced, leaders moved")
        md = await cluster.admin[1].Metadata(broker_pb2.MetadataRequest(all_topics=True), None)
        assert [b.node_id for b in md.brokers] == [1, 2]
        orders = next(t for t in md.topics if t.name == "orders")
        assert all(p.offline_replicas == [3] and p.leader_id in (1, 2) for p in orders.partitions)

        # Controlled shutdown of broker 2: leadership moves to 1 before it returns.
        await cluster.metadata[2].controlled_shutdown(BOUND_S)
        assert await cluster.metadata[1].sync(BOUND_S)
        assert set(leaders(cluster.metadata[1].image, "orders").values()) == {1}
    finally:
        await cluster.stop()


def test_calls_follow_a_new_active_controller(tmp_path: Path) -> None:
    asyncio.run(_calls_follow_a_new_active_controller(tmp_path))


async def _calls_follow_a_new_active_controller(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        await cluster.start_controllers()
        for broker_id in (1, 2):
            await cluster.start_broker(broker_id)
        for metadata in cluster.metadata.values():
            await metadata.wait_unfenced(BOUND_S)
        old = cluster.channels[1].active_controller_id
        assert old is not None and old == cluster.active_controller()
        first_ids = {await cluster.metadata[b].allocate_producer_id() for b in (1, 2)}

        await cluster.controllers.pop(old).stop(grace_s=0.1)
        response = await create_topic(cluster.admin[1], "after-failover", 2, 2)
        assert response.error_code == ErrorCode.NONE, response
        assert cluster.metadata[1].image.topic("after-failover") is not None
        new = cluster.channels[1].active_controller_id
        assert new is not None and new != old
        await wait_until(
            lambda: cluster.metadata[2].image.topic("after-failover") is not None,
            timeout_s=BOUND_S, what="broker 2 follows the new controller's log")
        # Heartbeats reach the new controller: nobody gets fenced for a session timeout.
        await wait_until(lambda: cluster.channels[2].active_controller_id == new,
                         timeout_s=BOUND_S, what="broker 2 found the new controller")
        image = cluster.metadata[1].image
        assert not image.brokers[1].fenced and not image.brokers[2].fenced
        # Producer id blocks continue past the old controller's allocations.
        cluster.metadata[1]._pid_next = cluster.metadata[1]._pid_end  # force a new block
        later = await cluster.metadata[1].allocate_producer_id()
        assert later > max(first_ids)
    finally:
        await cluster.stop()
