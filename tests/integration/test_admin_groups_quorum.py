"""Admin's quorum and consumer-group calls against in-process servers (no Ray): 3
ControllerServers + 3 BrokerServers on one asyncio loop in a background thread, real gRPC.

A group member is played with raw JoinGroup / SyncGroup / OffsetCommit / LeaveGroup calls, so
these tests depend on the coordinator and the Admin only, not on the Consumer.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from clients.admin import Admin
from clients.consumer.protocol import Assignment, Subscription, encode_assignment
from clients.consumer.protocol import encode_subscription
from clients.types import NewTopic, OffsetAndMetadata, TopicPartition
from cluster.broker_runtime import BrokerServer
from controller.server import ControllerServer
from proto import broker_pb2, broker_pb2_grpc
from proto.broker_config import BrokerConfig
from proto.channel_options import GRPC_OPTIONS
from proto.errors import ErrorCode, RafkaError
from proto.fault_transport import FaultTable
from proto.records import RecordBatchBuilder

T = TypeVar("T")
BOUND_S = 30.0  # generous: the machine is shared
TOPIC = "orders"
GROUP = "billing"


def wait_for(cond: Callable[[], Any], *, timeout_s: float = BOUND_S, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not true after {timeout_s}s")
        time.sleep(0.05)


class Cluster:
    """3 controllers + 3 brokers on a background loop."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.controllers: dict[int, ControllerServer] = {}
        self.brokers: dict[int, BrokerServer] = {}
        self.addresses: dict[int, str] = {}
        self.config = BrokerConfig.resolve({
            "group.initial.rebalance.delay.ms": 0, "offsets.topic.num.partitions": 3})

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = BOUND_S * 2) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        voters: dict[int, str] = {}
        for i in (1, 2, 3):
            self.controllers[i] = ControllerServer(
                i, str(self.root / f"controller-{i}"), seed=i, faults=FaultTable(),
                cluster_id="admin-test")
            voters[i] = await self.controllers[i].bind()
        for i in (1, 2, 3):
            await self.controllers[i].start(voters)
        for b in (1, 2, 3):
            self.brokers[b] = BrokerServer(b, str(self.root), controllers=voters,
                                           config=self.config, cluster_id="admin-test",
                                           faults=FaultTable())
            self.addresses[b] = await self.brokers[b].bind()
        await asyncio.gather(*(server.start() for server in self.brokers.values()))

    async def _stop(self) -> None:
        for b in list(self.brokers):
            try:
                await self.brokers.pop(b).stop(0.1, controlled=False)
            except Exception:  # teardown continues
                pass
        for c in list(self.controllers):
            try:
                await self.controllers.pop(c).stop(grace_s=0.1)
            except Exception:  # teardown continues
                pass

    def close(self) -> None:
        try:
            self.run(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)

    @property
    def bootstrap(self) -> str:
        return ",".join(self.addresses[b] for b in sorted(self.addresses))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("admin-groups"))
    try:
        c.run(c._start())
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def admin(cluster: Cluster) -> Iterator[Admin]:
    with Admin(bootstrap_servers=cluster.bootstrap, default_api_timeout_ms=BOUND_S * 1000) as a:
        wait_for(lambda: len(a.describe_cluster().brokers) == 3, what="3 unfenced brokers")
        yield a


class Member:
    """A group member speaking the raw classic protocol to the coordinator."""

    CLIENT_ID = "raw-member"

    def __init__(self, cluster: Cluster) -> None:
        self.channel = grpc.insecure_channel(self._coordinator(cluster), options=GRPC_OPTIONS)
        self.stub = broker_pb2_grpc.BrokerStub(self.channel)
        self.member_id = ""
        self.generation = -1

    @staticmethod
    def _coordinator(cluster: Cluster) -> str:
        def find() -> str | None:
            with grpc.insecure_channel(cluster.addresses[1], options=GRPC_OPTIONS) as ch:
                resp = broker_pb2_grpc.BrokerStub(ch).FindCoordinator(
                    broker_pb2.FindCoordinatorRequest(
                        key_type=broker_pb2.COORDINATOR_TYPE_GROUP, coordinator_keys=[GROUP]),
                    timeout=10)
            c = resp.coordinators[0]
            return f"{c.host}:{c.port}" if c.error_code == 0 else None

        return str(wait_for(find, what="the group has a coordinator"))

    def _call(self, rpc: str, request: Any) -> Any:
        return getattr(self.stub, rpc)(
            request, timeout=15, metadata=(("rafka-client-id", self.CLIENT_ID),))

    def join_and_sync(self, partitions: list[TopicPartition]) -> None:
        protocol = broker_pb2.JoinGroupRequest.JoinGroupRequestProtocol(
            name="range", metadata=encode_subscription(Subscription((TOPIC,))))

        def join() -> broker_pb2.JoinGroupResponse:
            return self._call("JoinGroup", broker_pb2.JoinGroupRequest(
                group_id=GROUP, session_timeout_ms=30_000, rebalance_timeout_ms=30_000,
                member_id=self.member_id, protocol_type="consumer", protocols=[protocol]))

        resp = join()
        if resp.error_code == ErrorCode.MEMBER_ID_REQUIRED:
            self.member_id = resp.member_id
            resp = join()
        assert resp.error_code == ErrorCode.NONE, resp
        assert resp.leader == self.member_id
        self.member_id, self.generation = resp.member_id, resp.generation_id
        sync = self._call("SyncGroup", broker_pb2.SyncGroupRequest(
            group_id=GROUP, generation_id=self.generation, member_id=self.member_id,
            protocol_type="consumer", protocol_name="range",
            assignments=[broker_pb2.SyncGroupRequest.SyncGroupRequestAssignment(
                member_id=self.member_id,
                assignment=encode_assignment(Assignment(tuple(partitions))))]))
        assert sync.error_code == ErrorCode.NONE, sync

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        req = broker_pb2.OffsetCommitRequest(group_id=GROUP, generation_id=self.generation,
                                             member_id=self.member_id)
        t = req.topics.add(name=TOPIC)
        for tp, offset in offsets.items():
            t.partitions.add(partition_index=tp.partition, committed_offset=offset)
        resp = self._call("OffsetCommit", req)
        assert all(p.error_code == 0 for t in resp.topics for p in t.partitions), resp

    def leave(self) -> None:
        resp = self._call("LeaveGroup", broker_pb2.LeaveGroupRequest(
            group_id=GROUP,
            members=[broker_pb2.LeaveGroupRequest.MemberIdentity(member_id=self.member_id)]))
        assert resp.error_code == ErrorCode.NONE, resp
        self.channel.close()


def _produce(cluster: Cluster, admin: Admin, partition: int, n: int) -> None:
    builder = RecordBatchBuilder(now_ms=1_000)
    for i in range(n):
        builder.append(b"v%d" % i, key=b"k", timestamp_ms=1_000 + i)
    req = broker_pb2.ProduceRequest(acks=-1, timeout_ms=10_000)
    req.topics.add(name=TOPIC).partitions.add(partition_index=partition, records=builder.build())
    leader = wait_for(lambda: admin.describe_topics([TOPIC])[TOPIC].partition(partition).leader,
                      what="a leader")
    with grpc.insecure_channel(cluster.addresses[leader], options=GRPC_OPTIONS) as channel:
        resp = broker_pb2_grpc.BrokerStub(channel).Produce(req, timeout=15)
    assert resp.topics[0].partitions[0].error_code == ErrorCode.NONE, resp


def test_describe_quorum_reports_leader_voters_and_observers(admin: Admin) -> None:
    info = wait_for(lambda: (q := admin.describe_quorum()).leader_id is not None
                    and len(q.observers) == 3 and q, what="quorum with 3 observers")
    assert info.leader_id in (1, 2, 3)
    assert info.leader_epoch >= 1
    assert info.high_watermark >= 1
    assert sorted(v.replica_id for v in info.voters) == [1, 2, 3]
    assert sorted(o.replica_id for o in info.observers) == [1, 2, 3]
    leader = next(v for v in info.voters if v.replica_id == info.leader_id)
    assert leader.lag == 0 and leader.log_end_offset >= info.high_watermark
    assert all(v.lag >= 0 and v.last_fetch_timestamp > 0 for v in info.voters)


def test_group_lifecycle_through_admin(cluster: Cluster, admin: Admin) -> None:
    admin.create_topics([NewTopic(TOPIC, 3, 3)])
    for p, n in ((0, 5), (1, 3)):
        _produce(cluster, admin, p, n)
    tps = [TopicPartition(TOPIC, p) for p in range(3)]
    member = Member(cluster)
    try:
        member.join_and_sync(tps)
        member.commit({tps[0]: 2, tps[1]: 3})

        listed = {g.group_id: g for g in admin.list_consumer_groups()}
        assert listed[GROUP].state == "Stable" and listed[GROUP].protocol_type == "consumer"

        described = admin.describe_consumer_groups([GROUP])[GROUP]
        assert (described.state, described.protocol, len(described.members)) == (
            "Stable", "range", 1)
        m = described.members[0]
        assert m.member_id == member.member_id and m.client_id == Member.CLIENT_ID
        assert m.host and m.assignment == tuple(tps)

        assert admin.list_consumer_group_offsets(GROUP) == {
            tps[0]: OffsetAndMetadata(2, "", None), tps[1]: OffsetAndMetadata(3, "", None)}
        lag = {(r.partition): r for r in admin.consumer_group_lag(GROUP)}
        assert (lag[0].current_offset, lag[0].log_end_offset, lag[0].lag) == (2, 5, 3)
        assert (lag[1].current_offset, lag[1].lag) == (3, 0)
        assert lag[2].current_offset is None and lag[2].lag is None
        assert lag[2].member is not None and lag[2].member.member_id == member.member_id

        # An active group refuses admin commits and deletion.
        with pytest.raises(RafkaError):
            admin.alter_consumer_group_offsets(GROUP, {tps[0]: 0})
        result = admin.delete_consumer_groups([GROUP], return_exceptions=True)
        assert getattr(result[GROUP], "code", None) == ErrorCode.NON_EMPTY_GROUP
    finally:
        member.leave()

    wait_for(lambda: admin.describe_consumer_groups([GROUP])[GROUP].state == "Empty",
             what="the group is Empty after the leave")
    admin.alter_consumer_group_offsets(GROUP, {tps[0]: 0, tps[2]: OffsetAndMetadata(0, "m")})
    offsets = admin.list_consumer_group_offsets(GROUP, [tps[0], tps[2]])
    assert offsets == {tps[0]: OffsetAndMetadata(0, "", None),
                       tps[2]: OffsetAndMetadata(0, "m", None)}

    admin.delete_consumer_groups([GROUP])
    assert GROUP not in {g.group_id for g in admin.list_consumer_groups()}
    again = admin.delete_consumer_groups([GROUP], return_exceptions=True)
    assert getattr(again[GROUP], "code", None) == ErrorCode.GROUP_ID_NOT_FOUND


def test_delete_of_unknown_topic_fails_fast(admin: Admin) -> None:
    started = time.monotonic()
    result = admin.delete_topics(["no-such-topic"], return_exceptions=True)
    assert getattr(result["no-such-topic"], "code", None) == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert time.monotonic() - started < 10


def test_configs_of_topics_and_brokers_records_and_elections(cluster: Cluster,
                                                             admin: Admin) -> None:
    from clients.admin import ConfigResource, ConfigResourceType

    topic = ConfigResource(ConfigResourceType.TOPIC, "configs")
    everyone = ConfigResource(ConfigResourceType.BROKER, "")
    broker2 = ConfigResource(ConfigResourceType.BROKER, "2")
    admin.create_topics([NewTopic("configs", 1, 3)])
    admin.incremental_alter_configs({everyone: {"log.retention.ms": "123456"}})
    admin.incremental_alter_configs({broker2: {"log.retention.ms": "777"},
                                     topic: {"cleanup.policy": "compact"}})
    described = admin.describe_configs([topic, everyone, broker2,
                                        ConfigResource(ConfigResourceType.BROKER, "1")])
    assert described[topic]["cleanup.policy"].value == "compact"
    assert described[topic]["retention.ms"].value == "123456"  # the cluster-wide default
    assert described[broker2]["log.retention.ms"].value == "777"  # asked of broker 2 itself
    assert described[ConfigResource(ConfigResourceType.BROKER, "1")][
        "log.retention.ms"].value == "123456"
    admin.incremental_alter_configs({topic: {"cleanup.policy": None},
                                     everyone: {"log.retention.ms": None}})
    after = admin.describe_configs([topic])[topic]
    assert after["cleanup.policy"].value == "delete" and after["cleanup.policy"].is_default

    tp = TopicPartition("configs", 0)
    builder = RecordBatchBuilder(now_ms=1_000)
    for i in range(4):
        builder.append(b"v", key=b"k%d" % i)
    req = broker_pb2.ProduceRequest(acks=-1, timeout_ms=10_000)
    req.topics.add(name="configs").partitions.add(partition_index=0, records=builder.build())
    leader = wait_for(lambda: admin.describe_topics(["configs"])["configs"].partition(0).leader,
                      what="a leader")
    with grpc.insecure_channel(cluster.addresses[leader], options=GRPC_OPTIONS) as channel:
        broker_pb2_grpc.BrokerStub(channel).Produce(req, timeout=15)
    assert admin.delete_records({tp: 3}) == {tp: 3}
    assert admin.list_offsets({tp: "earliest"})[tp].offset == 3

    result = admin.elect_leaders("preferred", [tp])
    assert getattr(result[tp], "code", None) in (None, ErrorCode.ELECTION_NOT_NEEDED)


def test_broker_describe_quorum_shares_the_controller_messages() -> None:
    from proto import controller_pb2

    on_broker = broker_pb2.DESCRIPTOR.services_by_name["Broker"].methods_by_name["DescribeQuorum"]
    on_controller = controller_pb2.DESCRIPTOR.services_by_name[
        "Controller"].methods_by_name["DescribeQuorum"]
    assert on_broker.input_type is on_controller.input_type
    assert on_broker.output_type is on_controller.output_type


def test_offline_partitions_are_visible(cluster: Cluster, admin: Admin) -> None:
    # Last in this module: it stops a broker for good.
    admin.create_topics([NewTopic("lonely", replica_assignment={0: [3]}),
                         NewTopic("sturdy", replica_assignment={0: [3, 1, 2]})])
    wait_for(lambda: admin.describe_topics(["lonely"])["lonely"].partition(0).leader == 3,
             what="lonely-0 led by broker 3")
    cluster.run(cluster.brokers.pop(3).stop(0.1, controlled=False))

    def offline() -> bool:
        d = admin.describe_topics(["lonely", "sturdy"])
        return (d["lonely"].partition(0).leader is None
                and d["sturdy"].partition(0).leader in (1, 2))

    wait_for(offline, what="broker 3 fenced and lonely-0 offline")
    described = admin.describe_topics(["lonely", "sturdy"])
    lonely, sturdy = described["lonely"].partition(0), described["sturdy"].partition(0)
    assert lonely.replicas == (3,) and lonely.offline_replicas == (3,)
    assert 3 in sturdy.offline_replicas and 3 not in sturdy.isr
    assert 3 not in {b.node_id for b in admin.describe_cluster().brokers}
