"""The asyncio shells (`RaftRuntime`, `ControlRuntime`) in one process: one voter, in-memory
storage with a gate on fsync, no gRPC and no Ray. Waits are deadline polls, not sleeps."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

from controller.control import ControlManager
from controller.control_runtime import ControlRuntime
from controller.raft import RaftConfig, RaftNode, Role
from controller.raft_runtime import RaftRuntime, monotonic_ms
from controller.raft_storage import MemoryStorage
from proto.errors import NotControllerError
from proto.metadata import FeatureLevelRecord

BOUND_S = 10.0


class GatedStorage(MemoryStorage):
    """`sync()` blocks (in the runtime's I/O thread) while the gate is closed."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()

    def sync(self) -> None:
        assert self.gate.wait(BOUND_S), "gate never reopened"
        super().sync()


async def wait_until(cond: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not true after {timeout_s}s")
        await asyncio.sleep(0.01)


@dataclass
class Single:
    raft: RaftRuntime
    control: ControlRuntime
    storage: GatedStorage


@asynccontextmanager
async def single_voter(election_timeout_ms: int = 50) -> AsyncIterator[Single]:
    storage = GatedStorage()
    node = RaftNode.from_storage(
        RaftConfig(node_id=1, voters=(1,), election_timeout_ms=election_timeout_ms,
                   heartbeat_interval_ms=10),
        storage, rng=random.Random(1), now_ms=monotonic_ms(),
    )
    raft = RaftRuntime(node, storage)
    control = ControlRuntime(raft, ControlManager(rng=random.Random(2)))
    task = asyncio.get_running_loop().create_task(raft.run())
    try:
        yield Single(raft, control, storage)
    finally:
        storage.gate.set()
        await control.stop()
        await raft.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raft.close()


def feature(n: int) -> FeatureLevelRecord:
    return FeatureLevelRecord(name=f"test.feature.{n}", feature_level=n)


def test_failed_proposals_do_not_keep_a_node_from_campaigning() -> None:
    # The reported starvation: a retry loop of propose_records on a node that is not leader
    # yet. Each failed call raises NotControllerError synchronously (no await inside), so a
    # caller that never yields starves the whole event loop, as any such asyncio loop would.
    # A retry loop that yields even once per attempt (sleep(0): no time passes) must not
    # hold the runtime back: failed proposals touch no timer and wake nothing.
    async def scenario() -> None:
        async with single_voter() as s:
            assert s.raft.role is Role.FOLLOWER
            deadline = time.monotonic() + BOUND_S
            attempts = 0
            while True:
                attempts += 1
                try:
                    offset = await s.control.propose_records([feature(1)], timeout_s=BOUND_S)
                    break
                except NotControllerError:
                    assert time.monotonic() < deadline, f"never leader after {attempts} tries"
                    await asyncio.sleep(0)
            assert attempts > 1  # it really was not leader at first
            assert s.raft.role is Role.LEADER and s.raft.image.feature_level(
                "test.feature.1") == 1
            assert offset == s.raft.applied_index

    asyncio.run(scenario())


def test_a_timed_out_foreign_entry_does_not_leave_the_manager_without_it() -> None:
    # propose_records pauses the manager, proposes an entry the manager did not produce and
    # resumes it. If the commit wait times out, the manager must not resume from an image
    # that lacks the still-pending entry (its offsets would skip it and its speculative image
    # would never see it); it resumes once everything in the log is applied.
    async def scenario() -> None:
        async with single_voter() as s:
            await wait_until(lambda: s.control.is_active, timeout_s=BOUND_S, what="active")
            s.storage.gate.clear()  # the next fsync hangs: nothing new commits
            with pytest.raises(TimeoutError):
                await s.control.propose_records([feature(7)], timeout_s=0.2)
            assert s.raft.image.feature_level("test.feature.7") is None
            s.storage.gate.set()
            await wait_until(
                lambda: s.raft.image.feature_level("test.feature.7") == 7,
                timeout_s=BOUND_S, what="the foreign entry commits",
            )
            await wait_until(lambda: s.control.is_active, timeout_s=BOUND_S,
                             what="manager active again")
            manager = s.control.manager
            assert manager.image.feature_level("test.feature.7") == 7
            assert manager.next_offset == s.raft.last_index + 1

    asyncio.run(scenario())
