"""Checkers over the replicas and the metadata timeline.

- `divergent-replicas`: the final reads of one partition from different replicas hold the
  same records (offset, key, value, and batch CRC where both readers report one) at every
  offset in [max log start offset, min high watermark). Above the lowest high watermark a
  follower may still be catching up, so only the committed prefix is compared.
- `acked-below-min-isr`: no acks=all send was acked while the ISR was smaller than
  `min.insync.replicas`.

  Which direction is safe: the metadata timeline is the controller's ISR as seen by an
  observer, so it lags the leader's own view both ways. A shrink appears late (an ack judged
  in that gap sees the older, larger ISR: a missed violation, never a false one). A growth
  also appears late (an ack judged in that gap would see the smaller ISR: a false
  violation). And the leader decided to complete the request at some moment between the
  client's invoke and the client seeing the ack. So a send is flagged only when the timeline
  shows the ISR below the minimum during the whole window
  [invoke - isr_slack_ms, ack + isr_slack_ms]: if `isr_slack_ms` covers the observer's lag
  plus clock skew, every flag is a real violation, and some real ones may be missed.
  Sends with no metadata for their partition before the window are counted as unjudged.
"""

from __future__ import annotations

import bisect
from collections import defaultdict

from chaos.checkers.common import CheckConfig, Verdict, acked_sends, bounded, send_json
from chaos.history import ACKS_ALL, FinalRead, FinalRecord, History, Json, MetadataOp
from clients.types import TopicPartition


def check_divergent_replicas(
    history: History, reads: list[FinalRead], config: CheckConfig
) -> Verdict:
    del history
    by_tp: dict[TopicPartition, list[FinalRead]] = defaultdict(list)
    for read in reads:
        by_tp[read.tp].append(read)

    divergent: list[Json] = []
    compared = 0
    for tp, replicas in sorted(by_tp.items()):
        if len(replicas) < 2:
            continue
        lo = max(r.log_start_offset for r in replicas)
        hi = min(r.high_watermark for r in replicas)
        logs = [{rec.offset: rec for rec in r.records} for r in replicas]
        bad = [o for o in range(lo, hi) if not _agree([log.get(o) for log in logs])]
        compared += max(0, hi - lo)
        if bad:
            first = bad[0]
            divergent.append({
                "topic": tp.topic, "partition": tp.partition,
                "min_high_watermark": hi, "divergent_offsets": len(bad), "first_offset": first,
                "at_first_offset": {
                    str(r.replica): _record_json(log.get(first)) for r, log in zip(replicas, logs)
                },
            })
    evidence: dict[str, Json] = {
        "partitions": len(by_tp), "offsets_compared": compared,
        "divergent": bounded(divergent, config.evidence_limit),
    }
    return Verdict("divergent-replicas", not divergent, evidence)


def _agree(records: list[FinalRecord | None]) -> bool:
    first = records[0]
    for other in records[1:]:
        if first is None or other is None:
            if first is not other:
                return False
            continue
        if (first.key, first.value) != (other.key, other.value):
            return False
        if first.crc is not None and other.crc is not None and first.crc != other.crc:
            return False
    return True


def _record_json(record: FinalRecord | None) -> Json:
    if record is None:
        return None
    return {"key": record.key, "value": record.value, "crc": record.crc}


class IsrTimeline:
    """The ISR of each partition over time, from the metadata timeline (history order)."""

    def __init__(self, metadata: list[MetadataOp]) -> None:
        self._times: dict[TopicPartition, list[int]] = defaultdict(list)
        self._states: dict[TopicPartition, list[MetadataOp]] = defaultdict(list)
        for op in sorted(metadata, key=lambda m: m.time_ms):  # stable: ties keep history order
            self._times[op.tp].append(op.time_ms)
            self._states[op.tp].append(op)

    def states_during(self, tp: TopicPartition, start_ms: int, end_ms: int) -> list[MetadataOp]:
        """The state in force at `start_ms` and every change up to `end_ms`; [] when no state
        was known at `start_ms`."""
        times = self._times.get(tp, [])
        first = bisect.bisect_right(times, start_ms) - 1
        if first < 0:
            return []
        last = bisect.bisect_right(times, end_ms)
        return self._states[tp][first:last]

    def at(self, tp: TopicPartition, time_ms: int) -> MetadataOp | None:
        states = self.states_during(tp, time_ms, time_ms)
        return states[-1] if states else None


def check_acked_below_min_isr(
    history: History, reads: list[FinalRead], config: CheckConfig
) -> Verdict:
    del reads
    timeline = IsrTimeline(history.metadata)
    need = config.min_insync_replicas
    slack = config.isr_slack_ms
    violations: list[Json] = []
    judged = unjudged = 0
    for c in acked_sends(history):
        op = c.outcome
        if op.acks != ACKS_ALL:
            continue  # min.insync.replicas binds acks=all only
        states = timeline.states_during(op.tp, c.invoke_ms - slack, op.time_ms + slack)
        if not states:
            unjudged += 1
            continue
        judged += 1
        if all(len(s.isr) < need for s in states):
            isr_at_ack = timeline.at(op.tp, op.time_ms)
            isr: list[Json] = list(isr_at_ack.isr) if isr_at_ack else []
            violations.append(send_json(
                op, invoke_ms=c.invoke_ms, isr_at_ack=isr,
                isr_sizes_in_window=[len(s.isr) for s in states],
            ))
    evidence: dict[str, Json] = {
        "min_insync_replicas": need, "slack_ms": slack, "judged": judged,
        "unjudged": unjudged, "violations": bounded(violations, config.evidence_limit),
    }
    return Verdict("acked-below-min-isr", not violations, evidence)
