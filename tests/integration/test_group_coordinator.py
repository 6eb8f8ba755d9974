"""The group coordinator end to end over gRPC, in-process (no Ray): 3 controllers + 3 brokers.

One scenario, in order: FindCoordinator creates `__consumer_offsets` (3 partitions, RF 3,
compacted, internal in Metadata) and names a coordinator; member A joins (MEMBER_ID_REQUIRED,
then generation 1) and syncs; member B joins, A learns of the rebalance from its heartbeat and
rejoins, both get generation 2, the leader's SyncGroup assignment reaches both; commits with a
stale generation are refused (ILLEGAL_GENERATION), valid ones are stored; the coordinator's
broker is stopped without a controlled shutdown; a new coordinator is found, loads the
partition, and serves the committed offsets, the Stable group (DescribeGroups), heartbeats of
both members at generation 2, and a LeaveGroup that triggers a rebalance to generation 3.
A second scenario stops the coordinator's broker with a controlled shutdown: a parked JoinGroup
is answered NOT_COORDINATOR, and a static member restarting on the new coordinator keeps its
assignment at the same generation (skip_assignment) while its old id is fenced.
Waits are deadline polls; everything is torn down in finally.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import grpc

from cluster.broker_runtime import BrokerServer
from controller.control import ControllerConfig
from controller.server import ControllerServer
from proto import broker_pb2 as pb
from proto import broker_pb2_grpc
from proto.broker_config import BrokerConfig
from proto.channel_options import GRPC_OPTIONS
from proto.errors import ErrorCode
from proto.fault_transport import FaultTable

HEARTBEAT_MS = 200
SESSION_MS = 1500
BOUND_S = 20.0
GROUP = "orders-service"
RETRIABLE = {ErrorCode.COORDINATOR_NOT_AVAILABLE, ErrorCode.NOT_COORDINATOR,
             ErrorCode.COORDINATOR_LOAD_IN_PROGRESS}
T = TypeVar("T")


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.controllers: dict[int, ControllerServer] = {}
        self.voters: dict[int, str] = {}
        self.brokers: dict[int, BrokerServer] = {}
        self.config = BrokerConfig.resolve({
            "broker.heartbeat.interval.ms": HEARTBEAT_MS,
            "broker.session.timeout.ms": SESSION_MS,
            "replica.lag.time.max.ms": 1500, "replica.fetch.wait.max.ms": 200,
            "replica.fetch.backoff.ms": 100, "request.timeout.ms": 8000,
            "offsets.topic.num.partitions": 3, "group.initial.rebalance.delay.ms": 0,
        })
        self.channels: dict[str, grpc.aio.Channel] = {}

    async def start(self) -> None:
        config = ControllerConfig(broker_heartbeat_interval_ms=HEARTBEAT_MS,
                                  broker_session_timeout_ms=SESSION_MS)
        for i in (1, 2, 3):
            self.controllers[i] = ControllerServer(
                i, str(self.root / f"controller-{i}"), config=config,
                election_timeout_ms=300, heartbeat_interval_ms=50, seed=i,
                faults=FaultTable(), cluster_id="group-test")
            self.voters[i] = await self.controllers[i].bind()
        for i in (1, 2, 3):
            await self.controllers[i].start(self.voters)
        for b in (1, 2, 3):
            server = BrokerServer(b, str(self.root / "data"), controllers=self.voters,
                                  config=self.config, cluster_id="group-test",
                                  faults=FaultTable())
            await server.bind()
            self.brokers[b] = server
            await server.start()

    def stub(self, broker_id: int) -> broker_pb2_grpc.BrokerStub:
        address = self.brokers[broker_id].address
        assert address is not None
        if address not in self.channels:
            self.channels[address] = grpc.aio.insecure_channel(address, options=GRPC_OPTIONS)
        return broker_pb2_grpc.BrokerStub(self.channels[address])

    async def stop(self) -> None:
        for channel in self.channels.values():
            await channel.close()
        for b in list(self.brokers):
            await self.brokers.pop(b).stop(0.1, controlled=False)
        for server in self.controllers.values():
            await server.stop(grace_s=0.1)


async def retry(call: Callable[[], Awaitable[T]], ok: Callable[[T], bool], what: str) -> T:
    deadline = time.monotonic() + BOUND_S
    while True:
        result = await call()
        if ok(result):
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: last answer {result}")
        await asyncio.sleep(0.1)


async def find_coordinator(cluster: Cluster, asker: int) -> int:
    async def ask() -> pb.FindCoordinatorResponse:
        return await cluster.stub(asker).FindCoordinator(
            pb.FindCoordinatorRequest(key_type=pb.COORDINATOR_TYPE_GROUP,
                                      coordinator_keys=[GROUP]), timeout=15)

    def found(r: pb.FindCoordinatorResponse) -> bool:
        c = r.coordinators[0]
        return c.error_code == ErrorCode.NONE and c.node_id in cluster.brokers

    response = await retry(ask, found, "FindCoordinator")
    c = response.coordinators[0]
    assert c.port == int(cluster.brokers[c.node_id].address.rsplit(":", 1)[1])  # type: ignore
    return int(c.node_id)


def join_request(member_id: str) -> pb.JoinGroupRequest:
    return pb.JoinGroupRequest(
        group_id=GROUP, session_timeout_ms=10_000, rebalance_timeout_ms=10_000,
        member_id=member_id, protocol_type="consumer",
        protocols=[pb.JoinGroupRequest.JoinGroupRequestProtocol(name="range", metadata=b"sub")])


def test_group_lifecycle_survives_coordinator_failover(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path))


async def _scenario(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        await cluster.start()
        await retry(lambda: cluster.stub(1).Metadata(pb.MetadataRequest(), timeout=5),
                    lambda r: len(r.brokers) == 3, "brokers unfenced")
        coordinator = await find_coordinator(cluster, 1)
        metadata = await cluster.stub(1).Metadata(pb.MetadataRequest(all_topics=True), timeout=5)
        offsets_topic = [t for t in metadata.topics if t.name == "__consumer_offsets"]
        assert offsets_topic and offsets_topic[0].is_internal
        assert len(offsets_topic[0].partitions) == 3
        assert all(len(p.replicas) == 3 for p in offsets_topic[0].partitions)
        stub = cluster.stub(coordinator)
        md = [("rafka-client-id", "client-a")]

        # -- bad input gets typed errors and the broker keeps serving --
        txn = await stub.FindCoordinator(pb.FindCoordinatorRequest(
            key_type=pb.COORDINATOR_TYPE_TRANSACTION, coordinator_keys=["tx"]), timeout=5)
        assert txn.coordinators[0].error_code == ErrorCode.UNSUPPORTED_VERSION
        no_id = await stub.JoinGroup(pb.JoinGroupRequest(group_id="", session_timeout_ms=10_000,
                                                         protocol_type="consumer"), timeout=5)
        assert no_id.error_code == ErrorCode.INVALID_GROUP_ID
        bad_session = await stub.JoinGroup(pb.JoinGroupRequest(
            group_id=GROUP, session_timeout_ms=10, protocol_type="consumer"), timeout=5)
        assert bad_session.error_code in RETRIABLE | {ErrorCode.INVALID_SESSION_TIMEOUT}

        # -- A joins alone: MEMBER_ID_REQUIRED, then generation 1 (initial delay 0) --
        first = await retry(lambda: stub.JoinGroup(join_request(""), timeout=10, metadata=md),
                            lambda r: r.error_code not in RETRIABLE, "join A")
        assert first.error_code == ErrorCode.MEMBER_ID_REQUIRED
        a = first.member_id
        assert a.startswith("client-a-")
        joined_a = await stub.JoinGroup(join_request(a), timeout=10)
        assert joined_a.error_code == ErrorCode.NONE, joined_a
        assert (joined_a.generation_id, joined_a.leader, joined_a.protocol_name) == (1, a, "range")
        synced = await stub.SyncGroup(pb.SyncGroupRequest(
            group_id=GROUP, generation_id=1, member_id=a,
            assignments=[pb.SyncGroupRequest.SyncGroupRequestAssignment(member_id=a,
                                                                        assignment=b"all")]),
            timeout=10)
        assert (synced.error_code, synced.assignment) == (ErrorCode.NONE, b"all")

        # -- B joins: A's heartbeat says REBALANCE_IN_PROGRESS, both rejoin → generation 2 --
        b_first = await stub.JoinGroup(join_request(""), timeout=10)
        assert b_first.error_code == ErrorCode.MEMBER_ID_REQUIRED
        b = b_first.member_id
        b_join = asyncio.ensure_future(stub.JoinGroup(join_request(b), timeout=15))
        beat = await retry(lambda: stub.Heartbeat(pb.HeartbeatRequest(
            group_id=GROUP, generation_id=1, member_id=a), timeout=5),
            lambda r: r.error_code != ErrorCode.NONE, "rebalance noticed")
        assert beat.error_code == ErrorCode.REBALANCE_IN_PROGRESS
        a_join = await stub.JoinGroup(join_request(a), timeout=15)
        b_joined = await b_join
        assert a_join.error_code == b_joined.error_code == ErrorCode.NONE
        assert a_join.generation_id == b_joined.generation_id == 2
        assert a_join.leader == b_joined.leader == a
        assert sorted(m.member_id for m in a_join.members) == sorted([a, b])
        assert not b_joined.members  # only the leader sees the members
        b_sync = asyncio.ensure_future(stub.SyncGroup(pb.SyncGroupRequest(
            group_id=GROUP, generation_id=2, member_id=b), timeout=15))
        a_sync = await stub.SyncGroup(pb.SyncGroupRequest(
            group_id=GROUP, generation_id=2, member_id=a, assignments=[
                pb.SyncGroupRequest.SyncGroupRequestAssignment(member_id=a, assignment=b"p0"),
                pb.SyncGroupRequest.SyncGroupRequestAssignment(member_id=b, assignment=b"p1"),
            ]), timeout=15)
        assert (a_sync.error_code, a_sync.assignment) == (ErrorCode.NONE, b"p0")
        assert ((await b_sync).error_code, (await b_sync).assignment) == (ErrorCode.NONE, b"p1")

        # -- commits: a stale generation is refused, the current one is stored --
        def commit(member: str, generation: int, partition: int,
                   offset: int) -> pb.OffsetCommitRequest:
            request = pb.OffsetCommitRequest(group_id=GROUP, generation_id=generation,
                                             member_id=member)
            request.topics.add(name="orders").partitions.add(
                partition_index=partition, committed_offset=offset, committed_metadata="m")
            return request

        stale = await stub.OffsetCommit(commit(a, 1, 0, 5), timeout=10)
        assert stale.topics[0].partitions[0].error_code == ErrorCode.ILLEGAL_GENERATION
        for member, partition, offset in ((a, 0, 42), (b, 1, 7)):
            r = await stub.OffsetCommit(commit(member, 2, partition, offset), timeout=10)
            assert r.topics[0].partitions[0].error_code == ErrorCode.NONE, r

        # -- the coordinator's broker dies; another broker takes over the group --
        await cluster.brokers.pop(coordinator).stop(0.1, controlled=False)
        asker = min(cluster.brokers)
        new_coordinator = await retry(lambda: find_coordinator(cluster, asker),
                                      lambda c: c != coordinator, "new coordinator")
        stub = cluster.stub(new_coordinator)
        request = pb.OffsetFetchRequest(groups=[pb.OffsetFetchRequest.OffsetFetchRequestGroup(
            group_id=GROUP)])
        fetched = await retry(lambda: stub.OffsetFetch(request, timeout=10),
                              lambda r: r.groups[0].error_code not in RETRIABLE, "offset fetch")
        assert fetched.groups[0].error_code == ErrorCode.NONE
        offsets = {(t.name, p.partition_index): (p.committed_offset, p.metadata)
                   for t in fetched.groups[0].topics for p in t.partitions}
        assert offsets == {("orders", 0): (42, "m"), ("orders", 1): (7, "m")}

        described = await stub.DescribeGroups(pb.DescribeGroupsRequest(groups=[GROUP]),
                                              timeout=10)
        group = described.groups[0]
        assert (group.error_code, group.group_state, group.protocol_data) == (
            ErrorCode.NONE, "Stable", "range")
        assignments = {m.member_id: m.member_assignment for m in group.members}
        assert assignments == {a: b"p0", b: b"p1"}
        for member in (a, b):
            beat = await stub.Heartbeat(pb.HeartbeatRequest(
                group_id=GROUP, generation_id=2, member_id=member), timeout=5)
            assert beat.error_code == ErrorCode.NONE, beat
        listed = await stub.ListGroups(pb.ListGroupsRequest(), timeout=5)
        assert [(g.group_id, g.group_state) for g in listed.groups] == [(GROUP, "Stable")]

        # -- B leaves: A rejoins alone into generation 3 --
        left = await stub.LeaveGroup(pb.LeaveGroupRequest(
            group_id=GROUP, members=[pb.LeaveGroupRequest.MemberIdentity(member_id=b)]),
            timeout=5)
        assert left.members[0].error_code == ErrorCode.NONE
        rejoined = await stub.JoinGroup(join_request(a), timeout=10)
        assert (rejoined.error_code, rejoined.generation_id) == (ErrorCode.NONE, 3)
        deleted = await stub.DeleteGroups(pb.DeleteGroupsRequest(groups_names=[GROUP]),
                                          timeout=5)
        assert deleted.results[0].error_code == ErrorCode.NON_EMPTY_GROUP
    finally:
        await cluster.stop()


def test_controlled_shutdown_moves_the_group_and_answers_parked_joins(tmp_path: Path) -> None:
    asyncio.run(_controlled_shutdown(tmp_path))


async def _controlled_shutdown(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        await cluster.start()
        await retry(lambda: cluster.stub(1).Metadata(pb.MetadataRequest(), timeout=5),
                    lambda r: len(r.brokers) == 3, "brokers unfenced")
        coordinator = await find_coordinator(cluster, 1)
        stub = cluster.stub(coordinator)
        # a static member forms the group and commits
        joined = await retry(lambda: stub.JoinGroup(pb.JoinGroupRequest(
            group_id=GROUP, session_timeout_ms=10_000, rebalance_timeout_ms=10_000,
            group_instance_id="instance-1", protocol_type="consumer",
            protocols=[pb.JoinGroupRequest.JoinGroupRequestProtocol(name="range")]),
            timeout=10), lambda r: r.error_code not in RETRIABLE, "static join")
        assert joined.error_code == ErrorCode.NONE and joined.generation_id == 1
        s = joined.member_id
        synced = await stub.SyncGroup(pb.SyncGroupRequest(
            group_id=GROUP, generation_id=1, member_id=s, group_instance_id="instance-1",
            assignments=[pb.SyncGroupRequest.SyncGroupRequestAssignment(member_id=s,
                                                                        assignment=b"x")]),
            timeout=10)
        assert synced.error_code == ErrorCode.NONE
        commit = pb.OffsetCommitRequest(group_id=GROUP, generation_id=1, member_id=s,
                                        group_instance_id="instance-1")
        commit.topics.add(name="t").partitions.add(partition_index=0, committed_offset=11)
        assert (await stub.OffsetCommit(commit, timeout=10)).topics[0].partitions[0] \
            .error_code == ErrorCode.NONE
        # a dynamic member's join parks (waiting for the static member to rejoin)...
        first = await stub.JoinGroup(join_request(""), timeout=10)
        parked = asyncio.ensure_future(stub.JoinGroup(join_request(first.member_id),
                                                      timeout=15))
        await retry(lambda: stub.DescribeGroups(pb.DescribeGroupsRequest(groups=[GROUP]),
                                                timeout=5),
                    lambda r: r.groups[0].group_state == "PreparingRebalance", "join parked")
        assert not parked.done()
        # ...and is answered NOT_COORDINATOR when the coordinator's broker shuts down cleanly
        await cluster.brokers.pop(coordinator).stop(0.5, controlled=True)
        assert (await parked).error_code == ErrorCode.NOT_COORDINATOR
        new_coordinator = await retry(lambda: find_coordinator(cluster, min(cluster.brokers)),
                                      lambda c: c != coordinator, "new coordinator")
        stub = cluster.stub(new_coordinator)
        # the static member restarts with a new id: same assignment, no rebalance
        restarted = await retry(lambda: stub.JoinGroup(pb.JoinGroupRequest(
            group_id=GROUP, session_timeout_ms=10_000, rebalance_timeout_ms=10_000,
            group_instance_id="instance-1", protocol_type="consumer",
            protocols=[pb.JoinGroupRequest.JoinGroupRequestProtocol(name="range")]),
            timeout=10), lambda r: r.error_code not in RETRIABLE, "static rejoin")
        assert restarted.error_code == ErrorCode.NONE, restarted
        assert restarted.generation_id == 1 and restarted.skip_assignment
        assert restarted.member_id != s
        again = await stub.SyncGroup(pb.SyncGroupRequest(
            group_id=GROUP, generation_id=1, member_id=restarted.member_id,
            group_instance_id="instance-1"), timeout=10)
        assert (again.error_code, again.assignment) == (ErrorCode.NONE, b"x")
        old = await stub.Heartbeat(pb.HeartbeatRequest(
            group_id=GROUP, generation_id=1, member_id=s, group_instance_id="instance-1"),
            timeout=5)
        assert old.error_code == ErrorCode.FENCED_INSTANCE_ID
        fetched = await stub.OffsetFetch(pb.OffsetFetchRequest(groups=[
            pb.OffsetFetchRequest.OffsetFetchRequestGroup(group_id=GROUP)]), timeout=10)
        assert fetched.groups[0].topics[0].partitions[0].committed_offset == 11
    finally:
        await cluster.stop()
