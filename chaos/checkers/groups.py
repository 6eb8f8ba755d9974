"""Checkers over consumer groups: ownership, commits and delivery.

- `double-ownership`: no two members own one partition in the same generation. An `assign`
  op holds a member's whole assignment for its generation, and the coordinator hands out
  one assignment per generation, so two members whose `assign` ops of one (group,
  generation) both hold a partition is a violation, whatever either revoked in between.
  Members are told apart by member id (a restarted consumer is a new member).
- `commit-regression`: per group and partition, each successful commit is at least the
  highest earlier successful commit (history order), unless the commit is marked `reset`
  (an explicit seek or `auto.offset.reset`), which starts a new baseline. A zombie's commit
  from an old generation must be refused by the coordinator (a `fail` op), so it is never
  counted.
- `group-completeness`: every record of the final leader read below a group's final
  committed offset (its last successful commit) was returned by some poll of that group,
  with the same value at the same offset (Kafka's at-least-once for committed positions).
"""

from __future__ import annotations

from collections import defaultdict

from chaos.checkers.common import CheckConfig, Verdict, bounded, leader_reads
from chaos.history import ConsumerFn, ConsumerOp, Datum, FinalRead, History, Json, OpType
from clients.types import TopicPartition


def _ok(history: History, fn: ConsumerFn) -> list[ConsumerOp]:
    return [op for op in history.consumer_ops if op.f is fn and op.type is OpType.OK]


def check_double_ownership(
    history: History, reads: list[FinalRead], config: CheckConfig
) -> Verdict:
    del reads
    owners: dict[tuple[str, int, TopicPartition], dict[str, int]] = defaultdict(dict)
    for op in _ok(history, ConsumerFn.ASSIGN):
        for tp in op.partitions:
            owners[(op.group, op.generation, tp)].setdefault(op.member_id, op.time_ms)

    doubles: list[Json] = []
    for (group, generation, tp), members in sorted(owners.items()):
        if len(members) > 1:
            doubles.append({
                "group": group, "generation": generation, "topic": tp.topic,
                "partition": tp.partition,
                "members": [{"member_id": m, "assigned_ms": t} for m, t in members.items()],
            })
    evidence: dict[str, Json] = {
        "claims": len(owners), "double_owned": bounded(doubles, config.evidence_limit),
    }
    return Verdict("double-ownership", not doubles, evidence)


def check_commit_regression(
    history: History, reads: list[FinalRead], config: CheckConfig
) -> Verdict:
    del reads
    highest: dict[tuple[str, TopicPartition], tuple[int, str]] = {}
    regressions: list[Json] = []
    commits = 0
    for op in _ok(history, ConsumerFn.COMMIT):
        for committed in op.offsets:
            commits += 1
            key = (op.group, committed.tp)
            before = highest.get(key)
            if op.reset or before is None or committed.offset >= before[0]:
                highest[key] = (committed.offset, op.member_id)
                continue
            regressions.append({
                "group": op.group, "topic": committed.topic, "partition": committed.partition,
                "offset": committed.offset, "member_id": op.member_id,
                "generation": op.generation, "time_ms": op.time_ms,
                "previous_offset": before[0], "previous_member_id": before[1],
            })
    evidence: dict[str, Json] = {
        "commits": commits, "regressions": bounded(regressions, config.evidence_limit),
    }
    return Verdict("commit-regression", not regressions, evidence)


def final_committed(history: History) -> dict[tuple[str, TopicPartition], int]:
    """Each group's last successful commit per partition (what the coordinator holds)."""
    last: dict[tuple[str, TopicPartition], int] = {}
    for op in _ok(history, ConsumerFn.COMMIT):
        for committed in op.offsets:
            last[(op.group, committed.tp)] = committed.offset
    return last


def check_group_completeness(
    history: History, reads: list[FinalRead], config: CheckConfig
) -> Verdict:
    leaders = leader_reads(history, reads)
    delivered: dict[tuple[str, TopicPartition, int], set[Datum]] = defaultdict(set)
    for op in _ok(history, ConsumerFn.POLL):
        for r in op.records:
            delivered[(op.group, r.tp, r.offset)].add(r.value)

    missing: list[Json] = []
    unread: list[Json] = []
    beyond_log_end: list[Json] = []
    checked = 0
    for (group, tp), committed in sorted(final_committed(history).items()):
        read = leaders.get(tp)
        if read is None:
            unread.append({"group": group, "topic": tp.topic, "partition": tp.partition})
            continue
        if committed > read.log_end_offset:
            beyond_log_end.append({"group": group, "topic": tp.topic, "partition": tp.partition,
                                   "committed": committed, "log_end_offset": read.log_end_offset})
        for rec in read.records:
            if rec.offset < read.log_start_offset or rec.offset >= committed:
                continue
            checked += 1
            if rec.value not in delivered.get((group, tp, rec.offset), set()):
                missing.append({"group": group, "topic": tp.topic, "partition": tp.partition,
                                "offset": rec.offset, "value": rec.value,
                                "committed": committed})
    limit = config.evidence_limit
    evidence: dict[str, Json] = {
        "records_checked": checked, "undelivered": bounded(missing, limit),
        "partitions_without_final_read": bounded(unread, limit),
        "committed_beyond_log_end": bounded(beyond_log_end, limit),
    }
    return Verdict("group-completeness", not missing and not unread, evidence)
