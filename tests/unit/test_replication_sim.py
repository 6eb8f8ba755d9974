"""A seeded simulation of one partition on three brokers, driving PartitionReplica cores.

Each broker has an in-memory log (a list of (leader epoch, record id) per offset, plus a
leader-epoch cache with KIP-279 lookups) and one `PartitionReplica`. A tiny fake controller
holds the PartitionRegistration: it fences disconnected brokers (removing them from the ISR
unless last, electing the first live ISR member in assignment order with epoch + 1), applies
AlterPartition with Kafka's checks, and publishes metadata that brokers may see late.

Events, chosen by one `random.Random`: produce (acks=all or 1) to any broker that believes it
leads; a follower fetch is sent (the leader decides at once) and its response delivered later;
AlterPartition responses arrive later, sometimes lost after being applied or never applied;
time advances and every core ticks; brokers disconnect (zombie leaders keep serving), crash
(restart with a fresh core, a new broker epoch and their log), reconnect; metadata syncs.

Checked after every event:
- a leader's HW never decreases (per broker incarnation and leader epoch); HW <= LEO;
- replicas agree on every offset below both of their high watermarks;
- every acked (acks=all completed with NONE) record is in the log of every ISR member;
Then everything heals, and within a bound all logs are identical and the ISR is full.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

import pytest

from cluster.replica import (
    AlterPartitionAsk,
    AlterPartitionResult,
    FetchResponsePartition,
    FollowerAppend,
    FollowerFetchRequest,
    PartitionReplica,
    ReplicaConfig,
    TruncateTo,
)
from proto.errors import ErrorCode
from proto.metadata import NO_LEADER
from proto.metadata_image import PartitionRegistration

TP = "sim-0"
BROKERS = (1, 2, 3)
LAG_MS = 2_000
Entry = tuple[int, int]  # (leader epoch, record id)


class SimLog:
    """Records and a leader-epoch cache (Kafka's LeaderEpochFileCache rules, in memory)."""

    def __init__(self) -> None:
        self.records: list[Entry] = []
        self.epochs: list[tuple[int, int]] = []  # (epoch, start offset), both increasing

    @property
    def leo(self) -> int:
        return len(self.records)

    @property
    def latest_epoch(self) -> int:
        return self.epochs[-1][0] if self.epochs else -1

    def assign(self, epoch: int, start: int) -> None:
        if self.epochs and self.epochs[-1][0] == epoch and start >= self.epochs[-1][1]:
            return
        self.epochs = [(e, s) for e, s in self.epochs if e < epoch and s < start]
        self.epochs.append((epoch, start))

    def append(self, entries: list[Entry]) -> None:
        for epoch, rid in entries:
            if epoch > self.latest_epoch:
                self.assign(epoch, self.leo)
            self.records.append((epoch, rid))

    def truncate(self, offset: int) -> None:
        del self.records[offset:]
        self.epochs = [(e, s) for e, s in self.epochs if s < offset]

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        if not self.epochs or epoch > self.epochs[-1][0] or epoch < 0:
            return -1, -1
        if epoch == self.epochs[-1][0]:
            return epoch, self.leo
        below = [e for e, _ in self.epochs if e <= epoch]
        above = [s for e, s in self.epochs if e > epoch]
        if not below:
            return epoch, self.epochs[0][1]
        return below[-1], above[0]


@dataclass
class Broker:
    broker_id: int
    config: ReplicaConfig
    log: SimLog = field(default_factory=SimLog)
    alive: bool = True
    connected: bool = True
    broker_epoch: int = 1
    incarnation: int = 0
    replica: PartitionReplica = field(init=False)
    seen_registration: PartitionRegistration | None = None
    # A fetch in flight: the request, the leader's answer, and the records it carries.
    in_flight: tuple[FollowerFetchRequest, FetchResponsePartition, list[Entry]] | None = None

    def __post_init__(self) -> None:
        self.replica = PartitionReplica(TP, self.broker_id, config=self.config)

    def restart(self) -> None:
        hw = self.replica.high_watermark  # the replication-offset checkpoint
        self.incarnation += 1
        self.broker_epoch += 1
        self.replica = PartitionReplica(TP, self.broker_id, config=self.config,
                                        high_watermark=min(hw, self.log.leo))
        self.seen_registration = None
        self.in_flight = None


class FakeController:
    """Holds the registration; fences, elects, and answers AlterPartition (§4.5, §4.7)."""

    def __init__(self, brokers: dict[int, Broker]) -> None:
        self.brokers = brokers
        self.reg = PartitionRegistration(BROKERS, BROKERS, 1, 0, 0)

    def acceptable(self, b: int) -> bool:
        return self.brokers[b].alive and self.brokers[b].connected

    def eligible(self, b: int, broker_epoch: int) -> bool:
        return self.acceptable(b) and broker_epoch == self.brokers[b].broker_epoch

    def _change(self, isr: tuple[int, ...], leader: int) -> None:
        reg = self.reg
        if isr == reg.isr and leader == reg.leader:
            return
        self.reg = replace(reg, isr=isr, leader=leader, partition_epoch=reg.partition_epoch + 1,
                           leader_epoch=reg.leader_epoch + (leader != reg.leader))

    def _elect(self, isr: tuple[int, ...]) -> int:
        if self.reg.leader in isr and self.acceptable(self.reg.leader):
            return self.reg.leader
        return next((b for b in self.reg.replicas if b in isr and self.acceptable(b)), NO_LEADER)

    def fence(self, b: int) -> None:
        isr = self.reg.isr
        if b in isr and len(isr) > 1:
            isr = tuple(x for x in isr if x != b)  # never empty: last replica standing
        self._change(isr, self._elect(isr))

    def unfence(self, b: int) -> None:
        self._change(self.reg.isr, self._elect(self.reg.isr))

    def alter_partition(self, sender: int, ask: AlterPartitionAsk) -> AlterPartitionResult:
        reg = self.reg
        current = AlterPartitionResult(leader_id=reg.leader, leader_epoch=reg.leader_epoch,
                                       isr=reg.isr, partition_epoch=reg.partition_epoch)
        if sender != reg.leader or ask.leader_epoch != reg.leader_epoch:
            return replace(current, error=ErrorCode.FENCED_LEADER_EPOCH)
        if ask.partition_epoch != reg.partition_epoch:
            return replace(current, error=ErrorCode.INVALID_UPDATE_VERSION)
        for m in ask.new_isr:
            if m.broker_id not in reg.isr and not self.eligible(m.broker_id, m.broker_epoch):
                return replace(current, error=ErrorCode.INELIGIBLE_REPLICA)
        self._change(ask.new_isr_ids, reg.leader)
        return AlterPartitionResult(leader_id=self.reg.leader, leader_epoch=self.reg.leader_epoch,
                                    isr=self.reg.isr, partition_epoch=self.reg.partition_epoch)


class Sim:
    metadata_lag = 0.7  # chance a broker does not see a metadata change in a given step
    fault_rate = 0.08  # chance per step of a disconnect or crash (two brokers down at most)

    def __init__(self, seed: int, *, min_isr: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        config = ReplicaConfig(min_insync_replicas=min_isr, replica_lag_time_max_ms=LAG_MS)
        self.brokers = {b: Broker(b, config) for b in BROKERS}
        self.controller = FakeController(self.brokers)
        self.now_ms = 0
        self.next_record = 1
        self.ops: dict[tuple[int, int, int], list[tuple[int, int]]] = {}
        self.acked: dict[int, int] = {}  # offset -> record id
        self.leader_hw: dict[tuple[int, int, int], int] = {}
        self.alter_in_flight: list[tuple[int, int, AlterPartitionAsk, AlterPartitionResult]] = []
        self.events = 0
        self.sync_metadata(force=True)

    # -- plumbing --

    def fail(self, what: str) -> None:
        raise AssertionError(f"seed={self.seed} event={self.events} t={self.now_ms}: {what}")

    def sync_metadata(self, *, force: bool = False) -> None:
        reg = self.controller.reg
        for b in self.brokers.values():
            if not (b.alive and b.connected) or b.seen_registration == reg:
                continue
            if not force and self.rng.random() < self.metadata_lag:
                continue  # this broker sees the change later
            b.seen_registration = reg
            if reg.leader == b.broker_id:
                b.log.assign(reg.leader_epoch, b.log.leo)  # Kafka: maybeAssignEpochStartOffset
                b.replica.become_leader(reg, local_leo=b.log.leo, now_ms=self.now_ms)
            elif b.broker_id in reg.replicas:
                b.replica.become_follower(reg, now_ms=self.now_ms)
            self.drain(b)

    def drain(self, b: Broker) -> None:
        for c in b.replica.completions():
            records = self.ops.pop((b.broker_id, b.incarnation, c.op_id))
            if c.error is ErrorCode.NONE:
                for offset, rid in records:
                    self.acked[offset] = rid

    def send_alter(self, b: Broker, ask: AlterPartitionAsk | None) -> None:
        if ask is None or not b.connected:
            return
        roll = self.rng.random()
        if roll < 0.1:  # never reached the controller
            result = AlterPartitionResult(ErrorCode.REQUEST_TIMED_OUT)
        else:
            result = self.controller.alter_partition(b.broker_id, ask)
            if roll < 0.2:  # applied, but the response was lost
                result = AlterPartitionResult(ErrorCode.REQUEST_TIMED_OUT)
        self.alter_in_flight.append((b.broker_id, b.incarnation, ask, result))

    # -- events --

    def produce(self) -> None:
        leaders = [b for b in self.brokers.values() if b.alive and b.replica.is_leader]
        if not leaders:
            return
        b = self.rng.choice(leaders)
        acks = self.rng.choice((-1, -1, 1))
        if b.replica.check_produce(acks) is not None:
            return
        epoch = b.replica.leader_epoch
        entries = [(epoch, self.next_record + i) for i in range(self.rng.randint(1, 3))]
        self.next_record += len(entries)
        base = b.log.leo
        b.log.append(entries)
        b.replica.on_leader_append(b.log.leo, self.now_ms)
        if acks == -1:
            op = b.replica.add_delayed_produce(b.log.leo, self.now_ms + 5_000)
            self.ops[(b.broker_id, b.incarnation, op)] = [
                (base + i, rid) for i, (_, rid) in enumerate(entries)]
        self.drain(b)

    def fetch_send(self, f: Broker) -> None:
        req = f.replica.follower_fetch_request(f.log.leo, f.log.latest_epoch)
        if req is None:
            return
        leader = self.brokers[req.leader_id]
        if not (leader.alive and leader.connected):
            return
        d = leader.replica.on_follower_fetch(
            replica_id=f.broker_id, broker_epoch=f.broker_epoch, fetch_offset=req.fetch_offset,
            last_fetched_epoch=req.last_fetched_epoch,
            current_leader_epoch=req.current_leader_epoch, now_ms=self.now_ms,
            epoch_lookup=leader.log,
            follower_eligible=self.controller.eligible(f.broker_id, f.broker_epoch))
        self.drain(leader)
        self.send_alter(leader, d.alter_partition)
        entries: list[Entry] = []
        if d.error is not None:
            resp = FetchResponsePartition(d.error.code, d.high_watermark, d.log_start_offset)
        else:
            if d.read_from_offset is not None:
                start = d.read_from_offset
                entries = list(leader.log.records[start:start + self.rng.randint(1, 6)])
            resp = FetchResponsePartition(
                ErrorCode.NONE, d.high_watermark, d.log_start_offset, d.diverging_epoch,
                records_end_offset=(req.fetch_offset + len(entries)) if entries else None)
        f.in_flight = (req, resp, entries)

    def fetch_deliver(self, f: Broker) -> None:
        assert f.in_flight is not None
        req, resp, entries = f.in_flight
        f.in_flight = None
        action = f.replica.on_fetch_response(req, resp, local_leo=f.log.leo,
                                             epoch_lookup=f.log)
        if isinstance(action, TruncateTo):
            assert not action.full
            f.log.truncate(action.offset)
        elif isinstance(action, FollowerAppend) and entries:
            f.log.append(entries)

    def deliver_alter(self) -> None:
        broker_id, incarnation, ask, result = self.alter_in_flight.pop(
            self.rng.randrange(len(self.alter_in_flight)))
        b = self.brokers[broker_id]
        if b.alive and b.incarnation == incarnation:
            b.replica.on_alter_partition_response(ask, result, self.now_ms)
            self.drain(b)

    def tick(self, step_ms: int) -> None:
        self.now_ms += step_ms
        for b in self.brokers.values():
            if b.alive:
                self.send_alter(b, b.replica.tick(self.now_ms))
                self.drain(b)

    def disconnect(self, b: Broker, *, crash: bool) -> None:
        b.connected = False
        if crash:
            b.alive = False
            b.in_flight = None
        self.controller.fence(b.broker_id)

    def reconnect(self, b: Broker) -> None:
        if not b.alive:
            b.alive = True
            b.restart()
        b.connected = True
        self.controller.unfence(b.broker_id)

    def step(self) -> None:
        self.events += 1
        rng = self.rng
        roll = rng.random()
        down = [b for b in self.brokers.values() if not (b.alive and b.connected)]
        if roll < 0.25:
            self.produce()
        elif roll < 0.55:
            f = rng.choice(list(self.brokers.values()))
            if f.alive and f.connected:
                self.fetch_deliver(f) if f.in_flight else self.fetch_send(f)
        elif roll < 0.65 and self.alter_in_flight:
            self.deliver_alter()
        elif roll < 0.8:
            self.tick(rng.choice((10, 100, 500, 1_500)))
        elif roll < 0.8 + self.fault_rate and len(down) < 2:
            self.disconnect(rng.choice(list(self.brokers.values())), crash=rng.random() < 0.5)
        elif roll < 0.86 + self.fault_rate and down:
            self.reconnect(rng.choice(down))
        self.sync_metadata()
        self.check()

    # -- invariants --

    def check(self) -> None:
        for b in self.brokers.values():
            r = b.replica
            if r.is_leader:
                if r.high_watermark > b.log.leo:
                    self.fail(f"broker {b.broker_id}: HW {r.high_watermark} > LEO {b.log.leo}")
                key = (b.broker_id, b.incarnation, r.leader_epoch)
                if r.high_watermark < self.leader_hw.get(key, 0):
                    self.fail(f"leader {key} HW went back to {r.high_watermark}")
                self.leader_hw[key] = r.high_watermark
        for a in self.brokers.values():
            for b in self.brokers.values():
                if a.broker_id < b.broker_id:
                    hw = min(a.replica.high_watermark, b.replica.high_watermark,
                             a.log.leo, b.log.leo)
                    if a.log.records[:hw] != b.log.records[:hw]:
                        self.fail(f"brokers {a.broker_id} and {b.broker_id} disagree below {hw}")
        for member in self.controller.reg.isr:
            records = self.brokers[member].log.records
            for offset, rid in self.acked.items():
                if offset >= len(records) or records[offset][1] != rid:
                    self.fail(f"acked record {rid} at offset {offset} missing on ISR member "
                              f"{member} (ISR {self.controller.reg.isr})")

    # -- heal --

    def heal(self) -> None:
        for b in self.brokers.values():
            if not (b.alive and b.connected):
                self.reconnect(b)
        for _ in range(400):
            while self.alter_in_flight:
                self.deliver_alter()
            self.sync_metadata(force=True)
            for f in self.brokers.values():
                if f.in_flight:
                    self.fetch_deliver(f)
                self.fetch_send(f)
                if f.in_flight:
                    self.fetch_deliver(f)
            self.tick(50)
            self.check()
            if self.converged():
                return
        self.fail(f"no convergence after healing: {self.describe()}")

    def converged(self) -> bool:
        reg = self.controller.reg
        if reg.leader == NO_LEADER or sorted(reg.isr) != list(BROKERS):
            return False
        logs = [b.log.records for b in self.brokers.values()]
        hws = {b.replica.high_watermark for b in self.brokers.values()}
        return all(x == logs[0] for x in logs) and hws == {len(logs[0])}

    def describe(self) -> str:
        reg = self.controller.reg
        parts = [f"reg leader={reg.leader} epoch={reg.leader_epoch} isr={reg.isr}"]
        for b in self.brokers.values():
            parts.append(f"b{b.broker_id}: role={b.replica.role.value} leo={b.log.leo} "
                         f"hw={b.replica.high_watermark} isr={b.replica.isr} "
                         f"epochs={b.log.epochs}")
        return "; ".join(parts)


def run(seed: int, events: int) -> Sim:
    sim = Sim(seed, min_isr=random.Random(seed).choice((1, 2)))
    for _ in range(events):
        sim.step()
    sim.heal()
    return sim


@pytest.mark.parametrize("fixed_seed", [1, 2, 3, 4])
def test_replication_is_safe_and_converges_fixed_seeds(fixed_seed: int) -> None:
    sim = run(fixed_seed, events=800)
    assert sim.acked, f"seed={fixed_seed}: the workload acknowledged nothing"


def test_replication_is_safe_and_converges_random_seed(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(5):
        run(rng.randrange(2**32), events=800)
