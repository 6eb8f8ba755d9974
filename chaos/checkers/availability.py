"""Availability: how long the cluster took to serve again after each fault.

For every fault, two times are measured from the moment it took effect:
- `ack_ms`: to the first successful ack (by ack time) on each partition the fault aimed at,
  the slowest of them being the fault's figure. The aimed-at partitions are
  `detail["partitions"]` if given; the partition of a `leader:TOPIC/PARTITION` target; for a
  `broker:ID` target, the partitions it led at that moment (metadata timeline); otherwise any
  partition. Partitions that never saw a send are left out (if that leaves none, any
  partition counts). An ack that was already on its
  way when the fault struck counts too, so the figure leans low by up to one round trip.
- `rebalance_ms`: to a completed rebalance, i.e. the first `assign` of each group with a
  generation above the highest one assigned before the fault (the slowest group counts).
  Measured for faults aimed at consumers or coordinators, and for kinds with a bound.

A fault kind is `"f:role"` (`"kill:leader"`, `"pause:consumer"`); a bound may be given for
the kind or for `f` alone, the more specific winning. Validity: for each kind with an ack
bound, the median `ack_ms` is within it; with a rebalance bound, every `rebalance_ms` is
(these mirror the issue's targets). A fault never followed by recovery breaks its bound only
if the history went on past the bound after it (otherwise it is censored, not judged).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from chaos.checkers.common import (
    CheckConfig, Verdict, acked_sends, bounded, nearest_rank,
)
from chaos.checkers.replicas import IsrTimeline
from chaos.history import ConsumerFn, ConsumerOp, FaultOp, FinalRead, History, Json, OpType
from clients.types import TopicPartition

REBALANCE_ROLES = ("consumer", "coordinator")


def fault_kind(fault: FaultOp) -> str:
    return f"{fault.f.value}:{fault.role}"


def _bound(bounds: Mapping[str, int], fault: FaultOp) -> int | None:
    kind = fault_kind(fault)
    if kind in bounds:
        return bounds[kind]
    return bounds.get(fault.f.value)


def _aimed_at(
    fault: FaultOp, timeline: IsrTimeline, written: set[TopicPartition]
) -> set[TopicPartition] | None:
    """The partitions a fault aims at (restricted to those written to); None = any."""
    explicit = fault.detail.get("partitions")
    aimed: set[TopicPartition] | None = None
    if isinstance(explicit, list):
        aimed = {TopicPartition(str(p[0]), p[1]) for p in explicit
                 if isinstance(p, list) and len(p) == 2 and isinstance(p[1], int)}
    elif fault.role == "leader":
        topic, _, partition = fault.target.split(":", 1)[1].rpartition("/")
        if topic and partition.isdigit():
            aimed = {TopicPartition(topic, int(partition))}
    elif fault.role == "broker" and fault.target.split(":", 1)[1].isdigit():
        broker = int(fault.target.split(":", 1)[1])
        aimed = set()
        for tp in written:
            state = timeline.at(tp, fault.time_ms)
            if state is not None and state.leader == broker:
                aimed.add(tp)
    if aimed is None:
        return None
    return (aimed & written) or None  # aimed at partitions nobody writes: any ack will do


def _first_after(times: Iterable[int], after_ms: int) -> int | None:
    return min((t for t in times if t > after_ms), default=None)


@dataclass(frozen=True, slots=True)
class Recovery:
    """How long the cluster took to serve again after one fault (None: not seen)."""

    fault: FaultOp
    partitions: tuple[TopicPartition, ...] | None  # None: any partition
    ack_ms: int | None
    rebalance_ms: int | None  # None also when not measured for this kind

    def to_json(self) -> dict[str, Json]:
        return {
            "kind": fault_kind(self.fault), "target": self.fault.target,
            "time_ms": self.fault.time_ms,
            "partitions": None if self.partitions is None
            else [f"{tp.topic}-{tp.partition}" for tp in self.partitions],
            "ack_ms": self.ack_ms, "rebalance_ms": self.rebalance_ms,
        }


def measure(history: History, config: CheckConfig) -> list[Recovery]:
    """One `Recovery` per fault, in history order."""
    ack_times: dict[TopicPartition, list[int]] = defaultdict(list)
    for c in acked_sends(history):
        ack_times[c.outcome.tp].append(c.outcome.time_ms)
    every_ack = sorted(t for ts in ack_times.values() for t in ts)
    written = {op.tp for op in history.sends if op.partition is not None}
    timeline = IsrTimeline(history.metadata)
    assigns = [op for op in history.consumer_ops
               if op.f is ConsumerFn.ASSIGN and op.type is OpType.OK]
    out: list[Recovery] = []
    for fault in history.faults:
        aimed = _aimed_at(fault, timeline, written)
        targets = None if aimed is None else tuple(sorted(aimed))
        if targets is None:
            first = _first_after(every_ack, fault.time_ms)
            ack_ms = None if first is None else first - fault.time_ms
        else:
            firsts = [_first_after(ack_times.get(tp, []), fault.time_ms) for tp in targets]
            done = [f for f in firsts if f is not None]
            ack_ms = max(done) - fault.time_ms if done and len(done) == len(firsts) else None
        wants_rebalance = (fault.role in REBALANCE_ROLES
                           or _bound(config.rebalance_bounds_ms, fault) is not None)
        rebalance_ms = _rebalance_ms(fault, assigns) if wants_rebalance else None
        out.append(Recovery(fault, targets, ack_ms, rebalance_ms))
    return out


def _rebalance_ms(fault: FaultOp, assigns: list[ConsumerOp]) -> int | None:
    before: dict[str, int] = {}
    for op in assigns:
        if op.time_ms <= fault.time_ms:
            before[op.group] = max(before.get(op.group, -1), op.generation)
    if not before:
        return None
    worst = 0
    for group, generation in sorted(before.items()):
        done = _first_after((op.time_ms for op in assigns
                             if op.group == group and op.generation > generation), fault.time_ms)
        if done is None:
            return None
        worst = max(worst, done - fault.time_ms)
    return worst


def check_availability(history: History, reads: list[FinalRead], config: CheckConfig) -> Verdict:
    del reads
    recoveries = measure(history, config)
    end_ms = history.end_ms()
    by_kind: dict[str, list[Recovery]] = defaultdict(list)
    for r in recoveries:
        by_kind[fault_kind(r.fault)].append(r)

    summary: dict[str, Json] = {}
    breaches: list[Json] = []
    for kind, rows in sorted(by_kind.items()):
        ack_bound = _bound(config.ack_bounds_ms, rows[0].fault)
        rebalance_bound = _bound(config.rebalance_bounds_ms, rows[0].fault)
        acks = [r.ack_ms for r in rows if r.ack_ms is not None]
        rebalances = [r.rebalance_ms for r in rows if r.rebalance_ms is not None]
        median_ack = nearest_rank(acks, 0.5)
        summary[kind] = {
            "count": len(rows), "ack_recovered": len(acks), "ack_median_ms": median_ack,
            "ack_max_ms": max(acks, default=None), "ack_bound_ms": ack_bound,
            "rebalance_recovered": len(rebalances),
            "rebalance_max_ms": max(rebalances, default=None),
            "rebalance_bound_ms": rebalance_bound,
        }
        if ack_bound is not None:
            if median_ack is not None and median_ack > ack_bound:
                breaches.append({"kind": kind, "what": "ack_median_ms", "value": median_ack,
                                 "bound_ms": ack_bound})
            breaches += [_breach(r, "ack_ms", None, ack_bound, end_ms) for r in rows
                         if r.ack_ms is None and end_ms - r.fault.time_ms > ack_bound]
        if rebalance_bound is not None:
            breaches += [_breach(r, "rebalance_ms", r.rebalance_ms, rebalance_bound, end_ms)
                         for r in rows if _late(r.rebalance_ms, r.fault, rebalance_bound, end_ms)]
    evidence: dict[str, Json] = {
        "faults": bounded([r.to_json() for r in recoveries], config.evidence_limit),
        "by_kind": summary,
        "breaches": bounded(breaches, config.evidence_limit),
    }
    return Verdict("availability", not breaches, evidence)


def _late(value: int | None, fault: FaultOp, bound: int, end_ms: int) -> bool:
    if value is None:  # never seen: late only if the history went on past the bound
        return end_ms - fault.time_ms > bound
    return value > bound


def _breach(r: Recovery, what: str, value: int | None, bound: int, end_ms: int) -> Json:
    return {"kind": fault_kind(r.fault), "what": what, "target": r.fault.target,
            "time_ms": r.fault.time_ms, "value": value, "bound_ms": bound,
            "history_end_ms": end_ms}
