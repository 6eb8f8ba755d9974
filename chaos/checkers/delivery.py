"""Checkers over what producers were told and what the log holds.

- `lost`: every acked send (type `ok`) is in the final leader read of its partition at the
  offset it was acked with. An acked value found at another offset is reported as
  `wrong_offset` (the ack lied about its position), an acked value found nowhere as `lost`. Not
  judged, and so never a violation: `info` (indeterminate) and pending sends, whether their
  value appears or not, and `fail` sends, whose value may appear anyway (a broker can write a
  batch and then fail the request, e.g. NOT_ENOUGH_REPLICAS_AFTER_APPEND). Their counts are
  reported, as are acks=0 sends (nothing acknowledged them). An acked send whose partition has
  no final read is a violation: a run that cannot show its data cannot claim it kept it.
- `duplicated`: a value sent by an idempotent producer appears at more than one position
  (topic, partition, offset) across the final leader reads and every poll (KIP-98).
- `reordered`: within one producer session (process, producer id) and partition, idempotent
  sends acked in invoke order got increasing offsets (idempotence keeps order with up to 5
  requests in flight).
- `inconsistent-offsets`: every source that names a value for one offset agrees: acked sends,
  polls, and the committed part (below the high watermark) of every replica's final read.
"""

from __future__ import annotations

from collections import defaultdict

from chaos.checkers.common import (
    CheckConfig, Verdict, acked_sends, bounded, leader_reads, pair_sends, send_json,
)
from chaos.history import Datum, FinalRead, History, Json, OpType
from clients.types import TopicPartition

Position = tuple[str, int, int]  # topic, partition, offset


def check_lost(history: History, reads: list[FinalRead], config: CheckConfig) -> Verdict:
    leaders = leader_reads(history, reads)
    at: dict[TopicPartition, dict[int, Datum]] = {
        tp: {r.offset: r.value for r in read.records} for tp, read in leaders.items()
    }
    where: dict[tuple[str, Datum], list[tuple[int, int]]] = defaultdict(list)
    for tp, read in leaders.items():
        for r in read.records:
            where[(tp.topic, r.value)].append((tp.partition, r.offset))

    lost: list[Json] = []
    wrong_offset: list[Json] = []
    unread: set[TopicPartition] = set()
    below_log_start = 0
    acked = acked_sends(history)
    for c in acked:
        op = c.outcome
        assert op.offset is not None, f"ok send of {op.value!r} has no offset"
        leader = leaders.get(op.tp)
        if leader is None:
            unread.add(op.tp)
            continue
        if op.offset < leader.log_start_offset:
            below_log_start += 1  # deleted by retention: nothing to judge
            continue
        found = at[op.tp].get(op.offset)
        if found == op.value and op.offset in at[op.tp]:
            continue
        elsewhere = where.get((op.topic, op.value), [])
        if elsewhere:
            wrong_offset.append(send_json(op, found_at=[list(p) for p in elsewhere[:5]]))
        else:
            lost.append(send_json(op, value_at_offset=found))

    limit = config.evidence_limit
    evidence: dict[str, Json] = {
        "acked": len(acked),
        "lost": bounded(lost, limit),
        "wrong_offset": bounded(wrong_offset, limit),
        "partitions_without_final_read": [f"{tp.topic}-{tp.partition}" for tp in sorted(unread)],
        "acked_below_log_start": below_log_start,
    }
    evidence.update(_unjudged_counts(history, where))
    return Verdict("lost", not lost and not wrong_offset and not unread, evidence)


def _unjudged_counts(
    history: History, where: dict[tuple[str, Datum], list[tuple[int, int]]]
) -> dict[str, Json]:
    """How many indeterminate and failed sends made it into the log: reported, not judged."""
    paired = pair_sends(history)
    indeterminate = [c.outcome for c in paired.completed if c.outcome.type is OpType.INFO]
    indeterminate += list(paired.pending)
    failed = [c.outcome for c in paired.completed if c.outcome.type is OpType.FAIL]
    unacked = [c.outcome for c in paired.completed
               if c.outcome.type is OpType.OK and c.outcome.offset is None]
    return {
        "acks0_sent": len(unacked),
        "indeterminate": len(indeterminate),
        "indeterminate_present": sum((op.topic, op.value) in where for op in indeterminate),
        "failed": len(failed),
        "failed_present": sum((op.topic, op.value) in where for op in failed),
    }


def check_duplicated(history: History, reads: list[FinalRead], config: CheckConfig) -> Verdict:
    idempotent: dict[Datum, bool] = {}
    for op in history.sends:
        idempotent[op.value] = idempotent.get(op.value, False) or op.idempotent
    positions: dict[Datum, set[Position]] = defaultdict(set)
    for tp, read in leader_reads(history, reads).items():
        for r in read.records:
            positions[r.value].add((tp.topic, tp.partition, r.offset))
    for poll in history.consumer_ops:
        for p in poll.records:
            positions[p.value].add((p.topic, p.partition, p.offset))

    duplicates: list[Json] = []
    allowed = 0
    for value, where in positions.items():
        if len(where) < 2:
            continue
        if not idempotent.get(value, False):
            allowed += 1  # at-least-once: retries without idempotence may duplicate
            continue
        duplicates.append({"value": value, "positions": [list(p) for p in sorted(where)]})
    evidence: dict[str, Json] = {
        "values_seen": len(positions),
        "duplicated": bounded(duplicates, config.evidence_limit),
        "allowed_duplicates_without_idempotence": allowed,
    }
    return Verdict("duplicated", not duplicates, evidence)


def check_reordered(history: History, reads: list[FinalRead], config: CheckConfig) -> Verdict:
    del reads  # judged from the acks alone
    streams: dict[tuple[str, int | None, TopicPartition], list[tuple[int, int, Datum]]] = (
        defaultdict(list)
    )
    for c in acked_sends(history):  # already in invoke order
        op = c.outcome
        if not op.idempotent:
            continue
        assert op.offset is not None
        streams[(op.process, op.producer_id, op.tp)].append((c.invoke_index, op.offset, op.value))

    reordered: list[Json] = []
    for (process, producer_id, tp), acks in streams.items():
        top: tuple[int, int, Datum] | None = None  # the earlier-invoked send with the max offset
        for index, offset, value in acks:
            if top is not None and offset < top[1]:
                reordered.append({
                    "process": process, "producer_id": producer_id, "topic": tp.topic,
                    "partition": tp.partition,
                    "earlier": {"value": top[2], "offset": top[1], "invoke_index": top[0]},
                    "later": {"value": value, "offset": offset, "invoke_index": index},
                })
            if top is None or offset > top[1]:
                top = (index, offset, value)
    evidence: dict[str, Json] = {
        "streams": len(streams), "reordered": bounded(reordered, config.evidence_limit),
    }
    return Verdict("reordered", not reordered, evidence)


def check_inconsistent_offsets(
    history: History, reads: list[FinalRead], config: CheckConfig
) -> Verdict:
    seen: dict[Position, dict[Datum, list[str]]] = defaultdict(lambda: defaultdict(list))
    for c in acked_sends(history):
        op = c.outcome
        assert op.partition is not None and op.offset is not None
        seen[(op.topic, op.partition, op.offset)][op.value].append(f"ack:{op.process}")
    for poll in history.consumer_ops:
        for p in poll.records:
            seen[(p.topic, p.partition, p.offset)][p.value].append(f"poll:{poll.member_id}")
    for read in reads:
        for r in read.records:
            if r.offset < read.high_watermark:  # above it, replicas may still disagree
                seen[(read.topic, read.partition, r.offset)][r.value].append(
                    f"replica:{read.replica}"
                )

    inconsistent: list[Json] = []
    for (topic, partition, offset), values in sorted(seen.items(), key=lambda kv: kv[0]):
        if len(values) < 2:
            continue
        inconsistent.append({
            "topic": topic, "partition": partition, "offset": offset,
            "values": [{"value": v, "seen_by": _sources(src)} for v, src in values.items()],
        })
    evidence: dict[str, Json] = {
        "offsets_seen": len(seen), "inconsistent": bounded(inconsistent, config.evidence_limit),
    }
    return Verdict("inconsistent-offsets", not inconsistent, evidence)


def _sources(sources: list[str]) -> list[Json]:
    return list(sorted(set(sources))[:10])
