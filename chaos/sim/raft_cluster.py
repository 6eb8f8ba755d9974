"""N Raft voters in one process on a simulated clock, network and disk, driven by one seed.

A run has two phases:

1. Safety (`safety_ms` of simulated time): clients propose entries while a fault schedule
   drops, delays, duplicates and reorders messages, partitions the cluster (symmetric, one
   way, swizzle-clog: clog random links one by one, then unclog them in random order) and
   crashes nodes (the disk keeps a random prefix of unsynced writes, the last maybe torn) and
   restarts them. `RaftChecker` checks the safety invariants after every event.
2. Liveness: everything heals, crashed nodes restart, the network turns benign. A marker
   proposal must then be applied by every node within `liveness_bound_ms`.

Each node runs the same loop a real shell runs: input -> `ready()` -> write to storage ->
(disk latency) -> fsync -> send messages, apply committed entries, maybe snapshot -> `advance`.
Inputs that arrive while a Ready is being persisted wait in the node's inbox. A crash can hit
between the write and the fsync, which is where "persist before send" earns its keep.

One `random.Random(seed)` hands out sub-seeds to the parameters, network, faults, disks,
clients and every node's election jitter, so `RaftSim(seed).run()` is a pure function of seed.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections import deque
from dataclasses import dataclass, field
from functools import partial

from chaos.sim.clock import SimClock
from chaos.sim.network import LinkFaults, SimNetwork
from chaos.sim.raft_checks import InvariantViolation, RaftChecker, decode_state, encode_state
from controller.raft import NotLeaderError, RaftConfig, RaftNode, Ready, Role
from controller.raft_log import Snapshot
from controller.raft_storage import MemoryStorage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SimParams:
    nodes: int = 3
    election_timeout_ms: int = 300
    heartbeat_interval_ms: int = 75
    safety_ms: int = 2500
    liveness_bound_ms: int = 3000  # 10 x election timeout
    propose_every_ms: int = 40
    snapshot_every: int = 20  # applied entries between snapshots
    drop_rate: float = 0.05
    duplicate_rate: float = 0.02
    long_delay_rate: float = 0.02
    fault_every_ms: int = 300
    crash_rate: float = 0.25  # chance a fault slot crashes a node
    disk_latency_max_ms: int = 3
    pre_vote: bool = True

    @staticmethod
    def random(rng: random.Random) -> SimParams:
        t = 300
        return SimParams(
            nodes=rng.choice((3, 3, 5)),
            election_timeout_ms=t,
            heartbeat_interval_ms=t // 4,
            safety_ms=rng.randint(2000, 5000),
            liveness_bound_ms=10 * t,
            propose_every_ms=rng.randint(15, 80),
            snapshot_every=rng.choice((4, 15, 50, 10_000)),
            drop_rate=rng.choice((0.0, 0.02, 0.1, 0.25)),
            duplicate_rate=rng.choice((0.0, 0.03)),
            long_delay_rate=rng.choice((0.0, 0.03, 0.1)),
            fault_every_ms=rng.randint(100, 500),
            crash_rate=rng.choice((0.0, 0.2, 0.4)),
            disk_latency_max_ms=rng.choice((0, 2, 5)),
        )


@dataclass(frozen=True, slots=True)
class SimResult:
    seed: int
    params: SimParams
    events: int
    elections: int
    max_term: int
    committed: int
    crashes: int
    sim_ms: int
    liveness_ms: int  # from heal to every node applying the marker


@dataclass(slots=True)
class _Node:
    node_id: int
    storage: MemoryStorage = field(default_factory=MemoryStorage)
    raft: RaftNode | None = None
    incarnation: int = 0
    busy: bool = False
    inbox: deque[tuple[str, object]] = field(default_factory=deque)
    armed_at: int | None = None
    state: list[tuple[int, bytes]] = field(default_factory=list)  # applied (term, data)


class SimFailure(AssertionError):
    """A seed failed; the message carries the seed and a replay command."""


class RaftSim:
    def __init__(self, seed: int, params: SimParams | None = None) -> None:
        self.seed = seed
        root = random.Random(seed)
        sub = [root.randrange(2**63) for _ in range(8)]
        self.params = params or SimParams.random(random.Random(sub[0]))
        p = self.params
        self.clock = SimClock()
        self._net_rng = random.Random(sub[1])
        self._fault_rng = random.Random(sub[2])
        self._disk_rng = random.Random(sub[3])
        self._client_rng = random.Random(sub[4])
        self._node_seed = random.Random(sub[5])
        self.net = SimNetwork(
            self.clock,
            self._net_rng,
            self._deliver,
            LinkFaults(
                drop_rate=p.drop_rate,
                duplicate_rate=p.duplicate_rate,
                delay_min_ms=1,
                delay_max_ms=8,
                long_delay_rate=p.long_delay_rate,
                long_delay_max_ms=2 * p.election_timeout_ms,
            ),
        )
        self.ids = tuple(range(1, p.nodes + 1))
        self.nodes = {i: _Node(i) for i in self.ids}
        self.checker = RaftChecker()
        self.crashes = 0
        self._proposed = 0
        self._healed = False
        self._marker: bytes | None = None
        self._marker_done_ms: int | None = None
        self._marker_nodes: set[int] = set()

    # ---- running ---------------------------------------------------------------------

    def run(self) -> SimResult:
        p = self.params
        try:
            for i in self.ids:
                self._start(self.nodes[i])
            self.clock.schedule(p.propose_every_ms, self._client)
            self.clock.schedule(p.fault_every_ms, self._fault)
            self.clock.schedule(p.safety_ms, self._heal_all)
            deadline = p.safety_ms + p.liveness_bound_ms
            while self._marker_done_ms is None and self.clock.run_next():
                if self.clock.now_ms > deadline:
                    self._fail(
                        f"liveness: marker not applied everywhere {p.liveness_bound_ms} ms "
                        f"after healing; {self._describe()}"
                    )
        except (InvariantViolation, AssertionError) as exc:
            if isinstance(exc, SimFailure):
                raise
            self._fail(f"{type(exc).__name__}: {exc}", exc)
        assert self._marker_done_ms is not None
        return SimResult(
            seed=self.seed,
            params=p,
            events=self.clock.events_run,
            elections=self.checker.elections,
            max_term=max(self.checker.leaders, default=0),
            committed=self.checker.max_committed,
            crashes=self.crashes,
            sim_ms=self.clock.now_ms,
            liveness_ms=self._marker_done_ms - p.safety_ms,
        )

    def _fail(self, what: str, cause: BaseException | None = None) -> None:
        msg = (
            f"seed={self.seed} t={self.clock.now_ms}ms: {what}\n"
            f"  replay: RAFKA_SEED={self.seed} .venv/bin/python -m pytest -q "
            "tests/simulation/test_raft_sim.py -k seeds"
        )
        raise SimFailure(msg) from cause

    def _describe(self) -> str:
        parts = []
        for n in self.nodes.values():
            r = n.raft
            parts.append(
                f"{n.node_id}:down" if r is None else
                f"{n.node_id}:{r.role.value}/t{r.term}/c{r.commit_index}/l{r.last_index}"
            )
        return " ".join(parts)

    # ---- node loop -------------------------------------------------------------------

    def _start(self, n: _Node) -> None:
        p = self.params
        snap = n.storage.load_snapshot()
        n.state = decode_state(snap.data) if snap else []
        n.incarnation += 1
        n.busy = False
        n.inbox.clear()
        n.armed_at = None
        cfg = RaftConfig(
            node_id=n.node_id,
            voters=self.ids,
            election_timeout_ms=p.election_timeout_ms,
            heartbeat_interval_ms=p.heartbeat_interval_ms,
            pre_vote=p.pre_vote,
        )
        n.raft = RaftNode.from_storage(
            cfg, n.storage, rng=random.Random(self._node_seed.randrange(2**63)),
            now_ms=self.clock.now_ms,
        )
        self.checker.on_start(
            n.node_id, snap, n.storage.load_entries(), snap.last_index if snap else 0
        )
        self._after_input(n)

    def _input(self, n: _Node, kind: str, arg: object) -> None:
        if n.raft is None:
            return
        if n.busy:
            n.inbox.append((kind, arg))
            return
        self._handle(n, kind, arg)
        self._after_input(n)

    def _handle(self, n: _Node, kind: str, arg: object) -> None:
        raft = n.raft
        assert raft is not None
        now = self.clock.now_ms
        if kind == "msg":
            raft.step(arg, now)  # type: ignore[arg-type]
        elif kind == "tick":
            raft.tick(now)
        else:
            assert isinstance(arg, bytes)
            with contextlib.suppress(NotLeaderError):
                raft.propose(arg)

    def _after_input(self, n: _Node) -> None:
        raft = n.raft
        assert raft is not None
        ready = raft.ready() if raft.has_ready() else None
        if ready is not None:
            self.checker.on_ready(n.node_id, raft.role, ready)
        self.checker.after_input(n.node_id, raft.role, raft.term, raft.commit_index)
        self._arm(n)
        if ready is None:
            return
        # Write now, fsync after the disk's latency; a crash in between loses the writes.
        st = n.storage
        if ready.snapshot is not None:
            st.save_snapshot(ready.snapshot)
        if ready.entries:
            st.append_entries(ready.entries)
        if ready.hard_state is not None:
            st.save_hard_state(ready.hard_state)
        n.busy = True
        inc = n.incarnation
        latency = self._disk_rng.randint(0, self.params.disk_latency_max_ms)
        self.clock.after(latency, lambda: self._synced(n, inc, ready))

    def _synced(self, n: _Node, incarnation: int, ready: Ready) -> None:
        if n.raft is None or n.incarnation != incarnation:
            return
        raft = n.raft
        n.storage.sync()
        for m in ready.messages:
            self.net.send(m.from_id, m.to_id, m)
        if ready.snapshot is not None:
            n.state = decode_state(ready.snapshot.data)
        for e in ready.committed:
            n.state.append((e.term, e.data))
        if (
            self._marker is not None
            and n.node_id not in self._marker_nodes
            and (
                any(e.data == self._marker for e in ready.committed)
                or (ready.snapshot is not None and any(d == self._marker for _, d in n.state))
            )
        ):
                self._marker_nodes.add(n.node_id)
                if len(self._marker_nodes) == len(self.ids):
                    self._marker_done_ms = self.clock.now_ms
        self.checker.on_apply(n.node_id, ready.snapshot, ready.committed)
        raft.advance(ready)
        self._maybe_snapshot(n)
        n.busy = False
        while n.inbox:
            kind, arg = n.inbox.popleft()
            self._handle(n, kind, arg)
        self._after_input(n)

    def _maybe_snapshot(self, n: _Node) -> None:
        raft = n.raft
        assert raft is not None
        applied = raft.applied_index
        if applied - raft.raft_log.snapshot_index < self.params.snapshot_every:
            return
        assert len(n.state) == applied, (len(n.state), applied)
        term = raft.raft_log.term(applied)
        assert term is not None
        snap = Snapshot(last_index=applied, last_term=term, data=encode_state(n.state))
        n.storage.save_snapshot(snap)
        raft.compact(snap)

    def _arm(self, n: _Node) -> None:
        assert n.raft is not None
        at = n.raft.next_deadline_ms()
        if at == n.armed_at:
            return
        n.armed_at = at
        inc = n.incarnation
        self.clock.schedule(at, lambda: self._timer(n, inc, at))

    def _timer(self, n: _Node, incarnation: int, at: int) -> None:
        if n.incarnation != incarnation or n.armed_at != at:
            return
        n.armed_at = None
        self._input(n, "tick", None)

    def _deliver(self, src: int, dst: int, payload: object) -> None:
        self._input(self.nodes[dst], "msg", payload)

    # ---- clients, faults, healing ------------------------------------------------------

    def _client(self) -> None:
        if self._healed:
            return
        self._proposed += 1
        live = [n for n in self.nodes.values() if n.raft is not None]
        if live:
            n = self._client_rng.choice(live)
            assert n.raft is not None
            hint = n.raft.leader_id
            if n.raft.role is not Role.LEADER and hint is not None and self.nodes[hint].raft:
                n = self.nodes[hint]  # follow the NOT_CONTROLLER hint, as a client would
            self._input(n, "propose", b"c%d" % self._proposed)
        pause = self._client_rng.randint(1, 2 * self.params.propose_every_ms)
        self.clock.after(pause, self._client)

    def _fault(self) -> None:
        if self._healed:
            return
        rng, p = self._fault_rng, self.params
        roll = rng.random()
        live = [i for i in self.ids if self.nodes[i].raft is not None]
        leaders = [i for i in live if self._raft(i).role is Role.LEADER]
        if roll < p.crash_rate and live:
            # Half the crashes hit a leader: the interesting failover.
            self._crash(rng.choice(leaders if leaders and rng.random() < 0.5 else live))
        elif roll < p.crash_rate + 0.15:
            ids = list(self.ids)
            rng.shuffle(ids)
            cut = rng.randint(1, len(ids) - 1)
            self.net.heal()
            self.net.partition([ids[:cut], ids[cut:]])
        elif roll < p.crash_rate + 0.25 and leaders:
            isolated = rng.choice(leaders)  # cut the leader off; it must step down
            self.net.heal()
            self.net.partition([[isolated], [i for i in self.ids if i != isolated]])
        elif roll < p.crash_rate + 0.35:
            a, b = rng.sample(self.ids, 2)
            self.net.clog(a, b)  # one way
        elif roll < p.crash_rate + 0.5:
            self._swizzle()
        elif roll < p.crash_rate + 0.75:
            self.net.heal()
        down = [i for i in self.ids if self.nodes[i].raft is None]
        for i in down:
            if rng.random() < 0.5:
                self._restart(i)
        self.clock.after(rng.randint(p.fault_every_ms // 2, p.fault_every_ms * 3 // 2), self._fault)

    def _raft(self, node_id: int) -> RaftNode:
        raft = self.nodes[node_id].raft
        assert raft is not None
        return raft

    def _swizzle(self) -> None:
        """FoundationDB's swizzle-clog: clog random links one by one, unclog in random order."""
        rng = self._fault_rng
        links = [(a, b) for a in self.ids for b in self.ids if a != b]
        chosen = rng.sample(links, rng.randint(1, len(links) // 2))
        step = max(1, self.params.election_timeout_ms // 4)
        t = 0
        for a, b in chosen:
            t += rng.randint(1, step)
            self.clock.after(t, partial(self._swizzle_clog, a, b))
        order = chosen[:]
        rng.shuffle(order)
        for a, b in order:
            t += rng.randint(1, step)
            self.clock.after(t, partial(self.net.unclog, a, b))

    def _swizzle_clog(self, a: int, b: int) -> None:
        if not self._healed:
            self.net.clog(a, b)

    def _crash(self, node_id: int) -> None:
        n = self.nodes[node_id]
        assert n.raft is not None
        lost = n.storage.crash(self._disk_rng)
        log.debug("crash node %d (lost %d unsynced writes)", node_id, lost)
        self.crashes += 1
        n.raft = None
        n.incarnation += 1
        n.busy = False
        n.inbox.clear()
        n.armed_at = None
        self.checker.on_crash(node_id)

    def _restart(self, node_id: int) -> None:
        self._start(self.nodes[node_id])

    def _heal_all(self) -> None:
        self._healed = True
        self.net.heal()
        f = self.net.faults
        f.drop_rate = f.duplicate_rate = f.long_delay_rate = 0.0
        for i in self.ids:
            if self.nodes[i].raft is None:
                self._restart(i)
        self._marker = b"marker-%d" % self.seed
        self._propose_marker()

    def _propose_marker(self) -> None:
        if self._marker_done_ms is not None or self._marker_committed():
            return
        for n in self.nodes.values():
            if n.raft is not None and n.raft.role is Role.LEADER and not self._marker_in_log(n):
                self._input(n, "propose", self._marker)
        self.clock.after(self.params.election_timeout_ms // 2, self._propose_marker)

    def _marker_in_log(self, n: _Node) -> bool:
        raft = n.raft
        assert raft is not None
        lg = raft.raft_log
        lo = max(lg.first_index, raft.applied_index + 1)
        return any(e.data == self._marker for e in lg.slice(lo, lg.last_index + 1))

    def _marker_committed(self) -> bool:
        return bool(self._marker_nodes)


def run_seed(seed: int, params: SimParams | None = None) -> SimResult:
    return RaftSim(seed, params).run()
