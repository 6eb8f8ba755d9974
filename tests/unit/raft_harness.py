"""A tiny synchronous Raft cluster for unit tests: cores joined by a fake, controllable link.

Time moves only through `run_for`; messages go through `deliver` (instantly, in order) unless a
link is cut. Each node's Ready is handled as a shell would: persist (MemoryStorage + sync),
send, apply, advance.
"""

from __future__ import annotations

import random

from controller.raft import RaftConfig, RaftNode, Ready, Role
from controller.raft_log import LogEntry, Snapshot
from controller.raft_messages import RaftMessage
from controller.raft_storage import MemoryStorage, persist_ready


class Cluster:
    def __init__(
        self,
        n: int = 3,
        *,
        seed: int = 1,
        election_timeout_ms: int = 1000,
        pre_vote: bool = True,
        check_quorum: bool = True,
    ) -> None:
        self.ids = tuple(range(1, n + 1))
        self.now = 0
        self._rng = random.Random(seed)
        self.configs = {
            i: RaftConfig(
                node_id=i, voters=self.ids, election_timeout_ms=election_timeout_ms,
                pre_vote=pre_vote, check_quorum=check_quorum,
            )
            for i in self.ids
        }
        self.stores = {i: MemoryStorage() for i in self.ids}
        self.nodes: dict[int, RaftNode | None] = {}
        self.applied: dict[int, list[LogEntry]] = {i: [] for i in self.ids}
        self.snapshots: dict[int, Snapshot | None] = {i: None for i in self.ids}
        self.queue: list[RaftMessage] = []
        self.cut: set[tuple[int, int]] = set()
        self.sent: list[RaftMessage] = []
        for i in self.ids:
            self.restart(i)

    def node(self, i: int) -> RaftNode:
        node = self.nodes[i]
        assert node is not None
        return node

    def restart(self, i: int) -> None:
        self.nodes[i] = RaftNode.from_storage(
            self.configs[i], self.stores[i], rng=random.Random(self._rng.random()), now_ms=self.now
        )

    def crash(self, i: int) -> None:
        self.stores[i].crash(random.Random(0))
        self.nodes[i] = None
        self.queue = [m for m in self.queue if m.to_id != i]

    def handle(self, i: int, ready: Ready) -> None:
        persist_ready(self.stores[i], ready)
        self.queue.extend(ready.messages)
        self.sent.extend(ready.messages)
        if ready.snapshot is not None:
            self.snapshots[i] = ready.snapshot
        self.applied[i].extend(ready.committed)
        self.node(i).advance(ready)

    def flush(self, i: int) -> None:
        node = self.nodes[i]
        while node is not None and node.has_ready():
            self.handle(i, node.ready())

    def deliver(self, max_msgs: int = 100_000) -> None:
        """Deliver queued messages (and the ones they cause) until quiet."""
        for _ in range(max_msgs):
            if not self.queue:
                return
            m = self.queue.pop(0)
            target = self.nodes.get(m.to_id)
            if target is None or (m.from_id, m.to_id) in self.cut:
                continue
            target.step(m, self.now)
            self.flush(m.to_id)
        raise AssertionError("messages did not quiesce")

    def run_for(self, ms: int, step_ms: int = 10) -> None:
        end = self.now + ms
        while self.now < end:
            self.now += step_ms
            for i in self.ids:
                node = self.nodes[i]
                if node is not None and node.next_deadline_ms() <= self.now:
                    node.tick(self.now)
                    self.flush(i)
            self.deliver()

    def isolate(self, i: int) -> None:
        for j in self.ids:
            if j != i:
                self.cut.add((i, j))
                self.cut.add((j, i))

    def heal(self) -> None:
        self.cut.clear()

    def leaders(self) -> list[int]:
        live = [i for i in self.ids if self.nodes[i] is not None]
        return [i for i in live if self.node(i).role is Role.LEADER]

    def elect(self) -> int:
        """Run until exactly one leader exists; return it."""
        for _ in range(100):
            self.run_for(100)
            live = [i for i in self.leaders()]
            if len(live) == 1:
                return live[0]
        raise AssertionError("no leader elected")

    def propose(self, data: bytes) -> int:
        leader = self.leaders()[0]
        index = self.node(leader).propose(data)
        self.flush(leader)
        self.deliver()
        return index
