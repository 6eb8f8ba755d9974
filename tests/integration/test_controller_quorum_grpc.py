"""Three `ControllerServer`s in one asyncio loop, over real gRPC on 127.0.0.1 (no Ray).

Each server has its own `FaultTable`, so a partition is built by cutting links on both sides.
Waits are deadline-based polls (`wait_until`), never sleeps used as synchronization. Every test
tears its servers down in `finally`, also on failure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest

from controller.server import ControllerServer
from proto import admin_pb2, common_pb2, controller_pb2, controller_pb2_grpc
from proto.channel_options import GRPC_OPTIONS
from proto.errors import ErrorCode, NotControllerError
from proto.fault_transport import FaultTable, client_interceptors
from proto.metadata import FeatureLevelRecord, TopicRecord, decode_records

ELECTION_TIMEOUT_MS = 300
HEARTBEAT_MS = 50
BOUND_S = 10.0  # generous: the machine is shared


async def wait_until(cond: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not true after {timeout_s}s")
        await asyncio.sleep(0.02)


class Quorum:
    """Three voters with per-server fault tables; restartable by id."""

    def __init__(self, root: Path, *, snapshot_interval_entries: int = 1000) -> None:
        self.root = root
        self.snapshot_interval_entries = snapshot_interval_entries
        self.servers: dict[int, ControllerServer] = {}
        self.voters: dict[int, str] = {}

    def _new(self, node_id: int, port: int = 0) -> ControllerServer:
        return ControllerServer(
            node_id, str(self.root / f"controller-{node_id}"), port=port,
            election_timeout_ms=ELECTION_TIMEOUT_MS, heartbeat_interval_ms=HEARTBEAT_MS,
            seed=node_id, faults=FaultTable(), cluster_id="test-cluster",
            snapshot_interval_entries=self.snapshot_interval_entries,
        )

    async def start(self, ids: tuple[int, ...] = (1, 2, 3)) -> None:
        for i in ids:
            self.servers[i] = self._new(i)
            self.voters[i] = await self.servers[i].bind()
        for i in ids:
            await self.servers[i].start(self.voters)

    async def stop_one(self, node_id: int) -> None:
        await self.servers.pop(node_id).stop(grace_s=0.1)

    async def restart(self, node_id: int) -> ControllerServer:
        port = int(self.voters[node_id].rsplit(":", 1)[1])
        server = self._new(node_id, port)
        await server.bind()
        await server.start(self.voters)
        self.servers[node_id] = server
        return server

    async def stop_all(self) -> None:
        for node_id in list(self.servers):
            await self.stop_one(node_id)

    def leaders(self) -> list[int]:
        return [i for i, s in self.servers.items() if s.status()["role"] == "leader"]

    async def wait_leader(self, among: tuple[int, ...] | None = None) -> int:
        def one_active() -> bool:
            active = [i for i in self.leaders() if self.servers[i].raft.is_active]
            return len(active) == 1 and (among is None or active[0] in among)

        await wait_until(one_active, timeout_s=BOUND_S, what="one active controller")
        return self.leaders()[0]

    def cut(self, node_id: int) -> None:
        """Partition `node_id` from every other voter (both directions, both sides)."""
        others = [f"controller-{i}" for i in self.voters if i != node_id]
        self.servers[node_id].faults.isolate_from(others)
        for i, s in self.servers.items():
            if i != node_id:
                s.faults.isolate_from([f"controller-{node_id}"])

    def heal(self) -> None:
        for s in self.servers.values():
            s.faults.heal()


@asynccontextmanager
async def quorum(root: Path, **kwargs: int) -> AsyncIterator[Quorum]:
    q = Quorum(root, **kwargs)
    try:
        await q.start()
        yield q
    finally:
        await q.stop_all()


@asynccontextmanager
async def stub_to(address: str) -> AsyncIterator[controller_pb2_grpc.ControllerStub]:
    channel = grpc.aio.insecure_channel(
        address, options=GRPC_OPTIONS,
        interceptors=client_interceptors("controller", address, FaultTable("test-client")),
    )
    try:
        yield controller_pb2_grpc.ControllerStub(channel)
    finally:
        await channel.close()


def feature(n: int) -> FeatureLevelRecord:
    return FeatureLevelRecord(name=f"test.feature.{n}", feature_level=n)


def has_feature(server: ControllerServer, n: int) -> bool:
    return server.raft.image.feature_level(f"test.feature.{n}") == n


# ---- tests ----------------------------------------------------------------------------------


def test_leader_elected_and_a_proposal_commits_on_all_three(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with quorum(tmp_path) as q:
            leader = await q.wait_leader()
            offset = await q.servers[leader].propose_and_wait([feature(1)], timeout_s=BOUND_S)
            await wait_until(
                lambda: all(has_feature(s, 1) for s in q.servers.values()),
                timeout_s=BOUND_S, what="record applied on every voter",
            )
            for s in q.servers.values():
                assert s.committed_image().last_applied_offset >= offset
            follower = next(i for i in q.servers if i != leader)
            with pytest.raises(NotControllerError):
                await q.servers[follower].propose_and_wait([feature(2)], timeout_s=BOUND_S)

    asyncio.run(scenario())


def test_leader_failover_keeps_commits_and_restart_catches_up_from_snapshot(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with quorum(tmp_path, snapshot_interval_entries=5) as q:
            old = await q.wait_leader()
            await q.servers[old].propose_and_wait([feature(1)], timeout_s=BOUND_S)
            await q.stop_one(old)

            new = await q.wait_leader()
            assert new != old
            assert has_feature(q.servers[new], 1), "a committed record was lost in failover"
            # Enough entries for the leader to snapshot and compact past the stopped voter.
            for n in range(2, 14):
                await q.servers[new].propose_and_wait([feature(n)], timeout_s=BOUND_S)
            leader_raft = q.servers[new].raft
            assert leader_raft.log_start_index > 3, "leader did not compact its log"

            back = await q.restart(old)
            await wait_until(
                lambda: back.raft.applied_index >= leader_raft.commit_index,
                timeout_s=BOUND_S, what="restarted voter caught up",
            )
            assert back.raft.latest_snapshot is not None
            assert all(has_feature(back, n) for n in range(1, 14))
            assert back.committed_image().features == q.servers[new].committed_image().features

    asyncio.run(scenario())


def test_full_restart_recovers_the_committed_log_from_disk(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with quorum(tmp_path) as q:
            leader = await q.wait_leader()
            for n in (1, 2, 3):
                await q.servers[leader].propose_and_wait([feature(n)], timeout_s=BOUND_S)
            terms = {i: s.raft.term for i, s in q.servers.items()}
            for i in list(q.servers):
                await q.stop_one(i)
            for i in sorted(terms):
                await q.restart(i)
            for i, s in q.servers.items():
                assert s.raft.term >= terms[i], "term went backwards across a restart"
            leader = await q.wait_leader()
            await q.servers[leader].propose_and_wait([feature(4)], timeout_s=BOUND_S)
            await wait_until(
                lambda: all(has_feature(s, n) for s in q.servers.values() for n in (1, 2, 3, 4)),
                timeout_s=BOUND_S, what="every record on every voter after a full restart",
            )

    asyncio.run(scenario())


def test_partitioned_leader_cannot_commit_while_the_majority_does(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with quorum(tmp_path) as q:
            old = await q.wait_leader()
            await q.servers[old].propose_and_wait([feature(1)], timeout_s=BOUND_S)
            q.cut(old)
            stuck = asyncio.ensure_future(
                q.servers[old].propose_and_wait([feature(99)], timeout_s=BOUND_S)
            )
            majority = tuple(i for i in q.servers if i != old)
            new = await q.wait_leader(among=majority)
            await q.servers[new].propose_and_wait([feature(2)], timeout_s=BOUND_S)
            # The old leader's entry never commits: check-quorum deposes it (or it times out).
            with pytest.raises((NotControllerError, asyncio.TimeoutError)):
                await stuck
            assert not has_feature(q.servers[old], 2)
            assert not any(has_feature(q.servers[i], 99) for i in q.servers)

            q.heal()
            await wait_until(
                lambda: all(has_feature(s, 2) for s in q.servers.values()),
                timeout_s=BOUND_S, what="healed voter caught up",
            )
            assert not any(has_feature(s, 99) for s in q.servers.values())
            # Pre-vote: the returning voter does not depose the healthy leader.
            assert await q.wait_leader() == new

    asyncio.run(scenario())


def test_fetch_metadata_long_poll_and_not_controller_hint(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with quorum(tmp_path) as q:
            leader = await q.wait_leader()
            follower = next(i for i in q.servers if i != leader)
            async with stub_to(q.voters[leader]) as stub, stub_to(q.voters[follower]) as other:
                vote = await other.Vote(controller_pb2.VoteRequest(
                    cluster_id="another-cluster", term=99, candidate_id=leader))
                assert vote.error_code == ErrorCode.INCONSISTENT_CLUSTER_ID
                assert not vote.vote_granted

                resp = await other.FetchMetadata(controller_pb2.FetchMetadataRequest(
                    broker_id=7, fetch_offset=1, max_wait_ms=0))
                assert resp.error_code == ErrorCode.NOT_CONTROLLER
                assert resp.leader_id == leader and resp.leader_address == q.voters[leader]

                next_offset = q.servers[leader].raft.applied_index + 1
                poll = asyncio.ensure_future(stub.FetchMetadata(
                    controller_pb2.FetchMetadataRequest(
                        broker_id=7, fetch_offset=next_offset, max_wait_ms=5000)))
                offset = await q.servers[leader].propose_and_wait([feature(5)], BOUND_S)
                resp = await poll
                assert resp.error_code == ErrorCode.NONE
                assert [r.offset for r in resp.records] == [offset]
                assert decode_records(resp.records[0].data) == [feature(5)]
                assert resp.high_watermark == offset + 1

                quorum_resp = await stub.DescribeQuorum(controller_pb2.DescribeQuorumRequest())
                assert quorum_resp.error_code == ErrorCode.NONE
                assert quorum_resp.leader_id == leader
                assert sorted(v.replica_id for v in quorum_resp.voters) == [1, 2, 3]
                assert [o.replica_id for o in quorum_resp.observers] == [7]

    asyncio.run(scenario())


def test_create_topics_after_broker_registration_is_visible_in_fetch_metadata(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with quorum(tmp_path) as q:
            leader = await q.wait_leader()
            async with stub_to(q.voters[leader]) as stub:
                epochs = {}
                for b in (1, 2, 3):
                    reg = await stub.BrokerRegistration(controller_pb2.BrokerRegistrationRequest(
                        broker_id=b, cluster_id="test-cluster", incarnation_id=f"inc-{b}",
                        listeners=[common_pb2.Listener(name="PLAINTEXT", host="127.0.0.1",
                                                       port=9000 + b)],
                    ))
                    assert reg.error_code == ErrorCode.NONE, reg
                    epochs[b] = reg.broker_epoch

                async def heartbeat_all() -> bool:
                    offset = q.servers[leader].raft.applied_index
                    fenced = False
                    for b, epoch in epochs.items():
                        hb = await stub.BrokerHeartbeat(controller_pb2.BrokerHeartbeatRequest(
                            broker_id=b, broker_epoch=epoch, current_metadata_offset=offset))
                        assert hb.error_code == ErrorCode.NONE, hb
                        fenced = fenced or hb.is_fenced
                    return not fenced

                deadline = time.monotonic() + BOUND_S
                while not await heartbeat_all():
                    assert time.monotonic() < deadline, "brokers never unfenced"
                    await asyncio.sleep(0.05)

                start = q.servers[leader].raft.applied_index + 1
                created = await stub.CreateTopics(admin_pb2.CreateTopicsRequest(
                    topics=[admin_pb2.CreateTopicsRequest.CreatableTopic(
                        name="orders", num_partitions=3, replication_factor=3)],
                    timeout_ms=5000,
                ))
                assert created.error_code == ErrorCode.NONE, created
                assert created.topics[0].error_code == ErrorCode.NONE, created
                fetched = await stub.FetchMetadata(controller_pb2.FetchMetadataRequest(
                    broker_id=1, fetch_offset=start, max_wait_ms=1000))
                records = [r for m in fetched.records for r in decode_records(m.data)]
                topics = [r for r in records if isinstance(r, TopicRecord)]
                assert [t.name for t in topics] == ["orders"]
                parts = [r for r in records if type(r).__name__ == "PartitionRecord"]
                assert sorted(p.partition_id for p in parts) == [0, 1, 2]

                follower = next(i for i in q.servers if i != leader)
                async with stub_to(q.voters[follower]) as other:
                    refused = await other.CreateTopics(admin_pb2.CreateTopicsRequest(
                        topics=[admin_pb2.CreateTopicsRequest.CreatableTopic(name="x")]))
                    assert refused.error_code == ErrorCode.NOT_CONTROLLER
                    assert refused.leader_address == q.voters[leader]

    asyncio.run(scenario())
