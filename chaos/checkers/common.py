"""What every checker shares: the verdict, the configuration, bounded evidence, and the two
derived views of a history that several checkers need (sends paired with their invokes, and
the authoritative final read of each partition).

A checker is a pure function `(History, final reads, CheckConfig) -> Verdict`. Evidence is
plain JSON data (records, offsets, times), bounded to the first `evidence_limit` items with
their full count, so a report stays small however bad a run was.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from chaos.history import Datum, FinalRead, History, Json, OpType, SendOp
from clients.types import TopicPartition


@dataclass(frozen=True, slots=True)
class Verdict:
    name: str
    valid: bool
    evidence: dict[str, Json]

    def to_json(self) -> dict[str, Json]:
        return {"valid": self.valid, **self.evidence}


@dataclass(frozen=True, slots=True)
class CheckConfig:
    """How the checkers judge a run.

    `isr_slack_ms` widens the window in which an acks=all ack could have been decided (see
    `chaos.checkers.isr`); it must cover the metadata observer's lag plus clock skew.
    `ack_bounds_ms` / `rebalance_bounds_ms` map a fault kind (`"kill:leader"`, or just
    `"kill"`) to the bound on the median time to the first ack after such a fault, and on the
    longest time to a completed rebalance. A kind without a bound is reported, not judged.
    """

    min_insync_replicas: int = 2
    isr_slack_ms: int = 500
    ack_bounds_ms: Mapping[str, int] = field(default_factory=dict)
    rebalance_bounds_ms: Mapping[str, int] = field(default_factory=dict)
    evidence_limit: int = 20


def bounded(items: Sequence[Json], limit: int) -> dict[str, Json]:
    """`{"count": n, "first": items[:limit]}`: evidence that stays small."""
    return {"count": len(items), "first": list(items[:limit])}


def tp_json(tp: TopicPartition) -> str:
    return f"{tp.topic}-{tp.partition}"


@dataclass(frozen=True, slots=True)
class CompletedSend:
    """A send's outcome with the position of its invoke in the history (its real order)."""

    invoke_index: int
    invoke_ms: int
    outcome: SendOp


@dataclass(frozen=True, slots=True)
class PairedSends:
    completed: tuple[CompletedSend, ...]  # in invoke order
    pending: tuple[SendOp, ...]  # invoked, never completed: indeterminate, like `info`


def pair_sends(history: History) -> PairedSends:
    """Pair every send outcome with its invoke by `(process, value)` (values are unique).

    An outcome without an invoke keeps its own position and time (a workload may record
    only outcomes); an invoke without an outcome is pending, which counts as indeterminate.
    """
    open_: dict[tuple[str, Datum], tuple[int, SendOp]] = {}
    completed: list[CompletedSend] = []
    for index, event in enumerate(history.events):
        if not isinstance(event, SendOp):
            continue
        key = (event.process, event.value)
        if event.type is OpType.INVOKE:
            open_[key] = (index, event)
            continue
        invoked = open_.pop(key, None)
        if invoked is None:
            completed.append(CompletedSend(index, event.time_ms, event))
        else:
            completed.append(CompletedSend(invoked[0], invoked[1].time_ms, event))
    completed.sort(key=lambda c: c.invoke_index)
    pending = tuple(op for _, op in sorted(open_.values(), key=lambda p: p[0]))
    return PairedSends(tuple(completed), pending)


def acked_sends(history: History) -> list[CompletedSend]:
    """Sends a broker acknowledged with an offset (acks=0 sends never are), in invoke order."""
    return [c for c in pair_sends(history).completed
            if c.outcome.type is OpType.OK and c.outcome.offset is not None]


def leader_reads(history: History, reads: Iterable[FinalRead]) -> dict[TopicPartition, FinalRead]:
    """The authoritative final read of each partition.

    The read marked `is_leader`; else the read from the last leader in the metadata
    timeline; else the read with the highest high watermark, then log end offset.
    """
    by_tp: dict[TopicPartition, list[FinalRead]] = {}
    for read in reads:
        by_tp.setdefault(read.tp, []).append(read)
    last_leader = {m.tp: m.leader for m in history.metadata}
    chosen: dict[TopicPartition, FinalRead] = {}
    for tp, candidates in by_tp.items():
        marked = [r for r in candidates if r.is_leader]
        from_metadata = [r for r in candidates if r.replica == last_leader.get(tp)]
        if marked:
            chosen[tp] = marked[-1]
        elif from_metadata:
            chosen[tp] = from_metadata[-1]
        else:
            chosen[tp] = max(candidates, key=lambda r: (r.high_watermark, r.log_end_offset))
    return chosen


def send_json(op: SendOp, **extra: Json) -> dict[str, Json]:
    """A send as evidence."""
    out: dict[str, Json] = {
        "topic": op.topic, "partition": op.partition, "offset": op.offset, "key": op.key,
        "value": op.value, "process": op.process, "time_ms": op.time_ms,
    }
    out.update(extra)
    return out


def nearest_rank(samples: Sequence[int], q: float) -> int | None:
    """The q-quantile (0 < q <= 1) by nearest rank; None when there are no samples."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, -(-int(q * 1000) * len(ordered) // 1000))
    return ordered[min(rank, len(ordered)) - 1]
