"""A fake-clock harness around `GroupCoordinator` for the group unit tests (no I/O, no Ray).

It plays the shell: numbers requests, collects responses by request id, keeps each
`__consumer_offsets` partition's log as appended records, and acknowledges appends either at
once (`auto_ack=True`) or when the test says so (`ack(error)`), so failure paths can be driven.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from cluster.group.coordinator import Append, GroupCoordinator, Outcome
from cluster.group.messages import (
    CommitPartition,
    Heartbeat,
    HeartbeatResult,
    JoinGroup,
    JoinGroupResult,
    LeaveGroup,
    LeaveGroupResult,
    LeavingMember,
    OffsetCommit,
    OffsetCommitResult,
    SyncGroup,
    SyncGroupResult,
)
from cluster.group.state import GroupConfig
from proto.errors import ErrorCode

PARTITIONS = 3
SESSION_MS = 10_000
REBALANCE_MS = 30_000


@dataclass
class Harness:
    config: GroupConfig = field(default_factory=lambda: GroupConfig(
        initial_rebalance_delay_ms=0, num_partitions=PARTITIONS))
    seed: int = 7
    auto_ack: bool = True
    now: int = 1_000_000

    def __post_init__(self) -> None:
        self.core = GroupCoordinator(self.config, random.Random(self.seed))
        self.responses: dict[int, Any] = {}
        self.logs: dict[int, list[tuple[bytes, bytes | None]]] = {
            p: [] for p in range(self.config.num_partitions)}
        self.unacked: list[Append] = []
        self._next = 0
        for p in range(self.config.num_partitions):
            self.core.begin_load(p, 1)
            self.core.complete_load(p, self.now)

    # -- plumbing --

    def _rid(self) -> int:
        self._next += 1
        return self._next

    def apply(self, out: Outcome) -> None:
        for rid, result in out.responses:
            assert rid not in self.responses, f"request {rid} answered twice"
            self.responses[rid] = result
        self.unacked.extend(out.appends)
        if self.auto_ack:
            self.ack_all()

    def ack(self, error: ErrorCode = ErrorCode.NONE) -> Append:
        append = self.unacked.pop(0)
        if error is ErrorCode.NONE:
            self.logs[append.partition].extend(append.records)
        self.apply(self.core.on_append_done(append.append_id, error, self.now))
        return append

    def ack_all(self) -> None:
        while self.unacked:
            self.ack()

    def advance(self, ms: int) -> None:
        self.now += ms
        self.apply(self.core.tick(self.now))

    def result(self, rid: int) -> Any:
        return self.responses.get(rid)

    # -- requests --

    def join(self, group: str, member_id: str = "", *, instance: str | None = None,
             protocols: tuple[tuple[str, bytes], ...] = (("range", b"meta"),),
             session_ms: int = SESSION_MS, rebalance_ms: int = REBALANCE_MS,
             protocol_type: str = "consumer", client_id: str = "client") -> int:
        rid = self._rid()
        self.apply(self.core.join(rid, JoinGroup(
            group, member_id, session_ms, rebalance_ms, protocol_type, protocols, instance,
            client_id, "/127.0.0.1"), self.now))
        return rid

    def join_new(self, group: str, **kwargs: Any) -> str:
        """Two-step join of a dynamic member; returns its id (the second join may park)."""
        first = self.result(self.join(group, **kwargs))
        assert first.error is ErrorCode.MEMBER_ID_REQUIRED, first
        self.last_join = self.join(group, first.member_id, **kwargs)
        return str(first.member_id)

    def sync(self, group: str, generation: int, member_id: str,
             assignments: dict[str, bytes] | None = None, instance: str | None = None) -> int:
        rid = self._rid()
        self.apply(self.core.sync(rid, SyncGroup(
            group, generation, member_id, instance, None, None,
            tuple((assignments or {}).items())), self.now))
        return rid

    def heartbeat(self, group: str, generation: int, member_id: str,
                  instance: str | None = None) -> HeartbeatResult:
        return self.core.heartbeat(Heartbeat(group, generation, member_id, instance), self.now)

    def leave(self, group: str, *members: tuple[str, str | None]) -> LeaveGroupResult:
        rid = self._rid()
        self.apply(self.core.leave(rid, LeaveGroup(group, tuple(
            LeavingMember(m, i) for m, i in members)), self.now))
        result = self.result(rid)
        assert isinstance(result, LeaveGroupResult)
        return result

    def commit(self, group: str, generation: int, member_id: str,
               offsets: dict[tuple[str, int], int], metadata: str | None = None,
               instance: str | None = None) -> int:
        rid = self._rid()
        self.apply(self.core.commit(rid, OffsetCommit(group, generation, member_id, tuple(
            CommitPartition(t, p, o, -1, metadata) for (t, p), o in offsets.items()),
            instance), self.now))
        return rid

    def commit_errors(self, rid: int) -> list[ErrorCode]:
        result = self.result(rid)
        assert isinstance(result, OffsetCommitResult), result
        return [p.error for p in result.partitions]

    def committed(self, group: str) -> dict[tuple[str, int], int]:
        r = self.core.fetch_offsets(group, None)
        assert r.error is ErrorCode.NONE, r
        return {(p.topic, p.partition): p.offset for p in r.partitions}

    def stable_group(self, group: str, members: int = 1) -> list[str]:
        """Members that joined one after another and synced; returns ids, leader first."""
        ids = []
        for _ in range(members):
            member = self.join_new(group)
            ids.append(member)
            if len(ids) > 1:  # the others learn of the rebalance and rejoin
                for other in ids[:-1]:
                    self.join(group, other)
        generation = self.core.groups[group].generation
        leader = self.core.groups[group].leader_id
        assert leader is not None
        self.sync(group, generation, leader, {m: m.encode() for m in ids})
        for m in ids:
            if m != leader:
                self.sync(group, generation, m)
        assert self.core.groups[group].state.value == "Stable"
        return [leader] + [m for m in ids if m != leader]

    def join_result(self, rid: int) -> JoinGroupResult:
        result = self.result(rid)
        assert isinstance(result, JoinGroupResult), result
        return result

    def sync_result(self, rid: int) -> SyncGroupResult:
        result = self.result(rid)
        assert isinstance(result, SyncGroupResult), result
        return result
