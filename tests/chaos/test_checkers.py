"""Every checker on hand-built histories: one that holds its anomaly (it must say invalid,
with the right evidence) and a clean one (it must say valid), so a checker that cannot fail
is caught. `HistoryBuilder` is shared with the report tests."""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest

from chaos.checkers import CheckConfig, check_all
from chaos.checkers.availability import check_availability
from chaos.checkers.delivery import (
    check_duplicated, check_inconsistent_offsets, check_lost, check_reordered,
)
from chaos.checkers.groups import (
    check_commit_regression, check_double_ownership, check_group_completeness,
)
from chaos.checkers.replicas import check_acked_below_min_isr, check_divergent_replicas
from chaos.history import (
    ACKS_ALL, CommittedOffset, ConsumerFn, ConsumerOp, Datum, Event, FaultKind, FaultOp,
    FinalRead, FinalRecord, History, Json, MetadataOp, OpType, PolledRecord, SendOp,
)
from clients.types import TopicPartition

CONFIG = CheckConfig(min_insync_replicas=2, isr_slack_ms=100)
T = "t"


class HistoryBuilder:
    """Builds histories by hand: `send` records an invoke and its outcome at once; `invoke`
    and `complete` interleave them."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def invoke(self, value: Datum, *, t: int, partition: int | None = 0, process: str = "p1",
               acks: int = ACKS_ALL, idempotent: bool = True) -> HistoryBuilder:
        self.events.append(SendOp(process=process, type=OpType.INVOKE, topic=T,
                                  partition=partition, key=None, value=value, time_ms=t,
                                  acks=acks, idempotent=idempotent))
        return self

    def complete(self, value: Datum, *, t: int, partition: int = 0, offset: int | None = None,
                 outcome: OpType = OpType.OK, process: str = "p1", acks: int = ACKS_ALL,
                 idempotent: bool = True, producer_id: int = 1) -> HistoryBuilder:
        self.events.append(SendOp(
            process=process, type=outcome, topic=T, partition=partition, key=None, value=value,
            time_ms=t, acks=acks, idempotent=idempotent, producer_id=producer_id,
            offset=offset if outcome is OpType.OK else None,
            error=None if outcome is OpType.OK else "REQUEST_TIMED_OUT"))
        return self

    def send(self, value: Datum, offset: int | None, *, t: int = 0, partition: int = 0,
             outcome: OpType = OpType.OK, process: str = "p1", acks: int = ACKS_ALL,
             idempotent: bool = True, latency_ms: int = 5) -> HistoryBuilder:
        self.invoke(value, t=t, partition=partition, process=process, acks=acks,
                    idempotent=idempotent)
        return self.complete(value, t=t + latency_ms, partition=partition, offset=offset,
                             outcome=outcome, process=process, acks=acks,
                             idempotent=idempotent)

    def meta(self, t: int, leader: int, isr: Iterable[int], *, partition: int = 0,
             epoch: int = 0) -> HistoryBuilder:
        self.events.append(MetadataOp(topic=T, partition=partition, leader=leader,
                                      leader_epoch=epoch, isr=tuple(isr), time_ms=t))
        return self

    def final(self, replica: int, values: list[Datum], *, partition: int = 0,
              hw: int | None = None, leader: bool = False, start: int = 0,
              crcs: list[int | None] | None = None) -> HistoryBuilder:
        records = tuple(
            FinalRecord(start + i, None, v, crcs[i] if crcs else None)
            for i, v in enumerate(values)
        )
        end = start + len(values)
        self.events.append(FinalRead(
            replica=replica, topic=T, partition=partition, records=records,
            high_watermark=end if hw is None else hw, log_end_offset=end,
            log_start_offset=start, is_leader=leader, time_ms=10_000))
        return self

    def consumer(self, f: ConsumerFn, member: str, *, t: int, gen: int = 1, group: str = "g",
                 outcome: OpType = OpType.OK, reset: bool = False,
                 partitions: Iterable[int] = (), records: Iterable[tuple[int, int, Datum]] = (),
                 offsets: dict[int, int] | None = None) -> HistoryBuilder:
        self.events.append(ConsumerOp(
            f=f, process=member, member_id=member, group=group, generation=gen, time_ms=t,
            type=outcome, reset=reset,
            partitions=tuple(TopicPartition(T, p) for p in partitions),
            records=tuple(PolledRecord(T, p, o, None, v) for p, o, v in records),
            offsets=tuple(CommittedOffset(T, p, o) for p, o in (offsets or {}).items())))
        return self

    def assign(self, member: str, partitions: Iterable[int], *, t: int, gen: int,
               group: str = "g") -> HistoryBuilder:
        return self.consumer(ConsumerFn.ASSIGN, member, t=t, gen=gen, group=group,
                             partitions=partitions)

    def poll(self, member: str, records: Iterable[tuple[int, int, Datum]], *, t: int,
             gen: int = 1, group: str = "g") -> HistoryBuilder:
        return self.consumer(ConsumerFn.POLL, member, t=t, gen=gen, group=group,
                             records=records)

    def commit(self, member: str, offsets: dict[int, int], *, t: int, gen: int = 1,
               group: str = "g", reset: bool = False,
               outcome: OpType = OpType.OK) -> HistoryBuilder:
        return self.consumer(ConsumerFn.COMMIT, member, t=t, gen=gen, group=group,
                             offsets=offsets, reset=reset, outcome=outcome)

    def fault(self, f: FaultKind, target: str, *, t: int, **detail: Json) -> HistoryBuilder:
        self.events.append(FaultOp(f=f, target=target, time_ms=t, detail=dict(detail)))
        return self

    def history(self) -> History:
        return History.of(self.events)


def _run(check, b: HistoryBuilder, config: CheckConfig = CONFIG):  # type: ignore[no-untyped-def]
    h = b.history()
    return check(h, h.final_reads, config)


def _first(verdict, key: str) -> list:  # type: ignore[no-untyped-def,type-arg]
    return verdict.evidence[key]["first"]


def clean_run() -> HistoryBuilder:
    """Three replicas, two partitions, one producer and one consumer, a leader kill, no anomaly."""
    b = HistoryBuilder()
    b.meta(0, 1, [1, 2, 3]).meta(0, 2, [1, 2, 3], partition=1)
    b.assign("c1", [0, 1], t=1, gen=1)
    for i in range(4):
        b.send(f"a{i}", i, t=10 + 10 * i).send(f"b{i}", i, t=12 + 10 * i, partition=1)
    b.fault(FaultKind.KILL, "broker:1", t=100)
    b.meta(150, 2, [2, 3], epoch=1)
    b.send("a4", 4, t=160)
    b.poll("c1", [(0, i, f"a{i}") for i in range(5)] + [(1, i, f"b{i}") for i in range(4)],
           t=200)
    b.commit("c1", {0: 5, 1: 4}, t=210)
    b.fault(FaultKind.RESTART, "broker:1", t=300)
    b.meta(350, 2, [1, 2, 3], epoch=1)
    for replica in (1, 2, 3):
        b.final(replica, [f"a{i}" for i in range(5)], leader=replica == 2)
        b.final(replica, [f"b{i}" for i in range(4)], partition=1, leader=replica == 2)
    return b


def test_a_clean_run_passes_every_checker() -> None:
    report = check_all(clean_run().history(), config=CheckConfig(
        ack_bounds_ms={"kill:broker": 2000}, rebalance_bounds_ms={"kill:consumer": 1000}))
    assert report.valid, [v for v in report.verdicts if not v.valid]
    assert len(report.verdicts) == 10
    assert report.stats["sends"] == {"invoke": 9, "ok": 9}


# -- lost ------------------------------------------------------------------------------------

def test_acked_value_missing_from_the_leader_is_lost() -> None:
    b = HistoryBuilder().send("v0", 0).send("v1", 1).send("v2", 2)
    b.final(1, ["v0", "v2"], leader=True)  # v1 vanished; v2 is at offset 1, not 2
    v = _run(check_lost, b)
    assert not v.valid
    assert [e["value"] for e in _first(v, "lost")] == ["v1"]
    assert _first(v, "lost")[0]["offset"] == 1
    assert _first(v, "lost")[0]["value_at_offset"] == "v2"
    moved = _first(v, "wrong_offset")
    assert [(e["value"], e["offset"], e["found_at"]) for e in moved] == [("v2", 2, [[0, 1]])]


def test_lost_is_judged_on_the_leader_read_not_a_lagging_follower() -> None:
    b = HistoryBuilder().send("v0", 0).send("v1", 1)
    b.final(1, ["v0"], hw=1).final(2, ["v0", "v1"], leader=True)
    assert _run(check_lost, b).valid
    # without the is_leader mark, the metadata timeline names the leader
    b = HistoryBuilder().meta(0, 1, [1, 2]).send("v0", 0).send("v1", 1).meta(50, 2, [2])
    b.final(1, ["v0"], hw=1).final(2, ["v0", "v1"])
    assert _run(check_lost, b).valid


def test_indeterminate_and_failed_sends_are_never_lost() -> None:
    b = HistoryBuilder().send("ok", 0)
    b.send("info-present", None, outcome=OpType.INFO).send("info-absent", None,
                                                           outcome=OpType.INFO)
    b.send("fail-present", None, outcome=OpType.FAIL).send("fail-absent", None,
                                                           outcome=OpType.FAIL)
    b.invoke("pending", t=50)  # never completed: indeterminate too
    b.final(1, ["ok", "info-present", "fail-present"], leader=True)
    v = _run(check_lost, b)
    assert v.valid
    assert v.evidence["indeterminate"] == 3 and v.evidence["indeterminate_present"] == 1
    assert v.evidence["failed"] == 2 and v.evidence["failed_present"] == 1


def test_acks0_sends_are_never_judged() -> None:
    b = HistoryBuilder().send("v0", None, acks=0, idempotent=False).final(1, [], leader=True)
    v = _run(check_lost, b)
    assert v.valid and v.evidence["acked"] == 0 and v.evidence["acks0_sent"] == 1


def test_acked_send_to_a_partition_without_a_final_read_is_a_violation() -> None:
    b = HistoryBuilder().send("v0", 0).send("w0", 0, partition=1).final(1, ["v0"], leader=True)
    v = _run(check_lost, b)
    assert not v.valid and v.evidence["partitions_without_final_read"] == ["t-1"]


def test_offsets_deleted_by_retention_are_not_judged() -> None:
    b = HistoryBuilder().send("v0", 0).send("v1", 1).final(1, ["v1"], start=1, leader=True)
    v = _run(check_lost, b)
    assert v.valid and v.evidence["acked_below_log_start"] == 1


# -- duplicated ------------------------------------------------------------------------------

def test_idempotent_value_at_two_offsets_is_a_duplicate() -> None:
    b = HistoryBuilder().send("v0", 0).send("v1", 1).final(1, ["v0", "v1", "v1"], leader=True)
    v = _run(check_duplicated, b)
    assert not v.valid
    assert _first(v, "duplicated") == [{"value": "v1", "positions": [[T, 0, 1], [T, 0, 2]]}]


def test_duplicate_seen_only_by_a_poll_counts() -> None:
    b = HistoryBuilder().send("v0", 0).final(1, ["v0"], leader=True).poll("c", [(0, 3, "v0")],
                                                                           t=9)
    assert not _run(check_duplicated, b).valid


def test_duplicates_without_idempotence_are_allowed() -> None:
    b = HistoryBuilder().send("v0", 0, idempotent=False, acks=1)
    b.final(1, ["v0", "v0"], leader=True).poll("c", [(0, 0, "v0"), (0, 0, "v0")], t=9)
    v = _run(check_duplicated, b)
    assert v.valid and v.evidence["allowed_duplicates_without_idempotence"] == 1


# -- reordered -------------------------------------------------------------------------------

def test_idempotent_sends_acked_out_of_invoke_order_are_reordered() -> None:
    b = HistoryBuilder()
    b.invoke("v0", t=0).invoke("v1", t=1).invoke("v2", t=2)
    b.complete("v1", t=5, offset=0).complete("v0", t=6, offset=1).complete("v2", t=7, offset=2)
    v = _run(check_reordered, b)
    assert not v.valid
    [pair] = _first(v, "reordered")
    assert pair["earlier"]["value"] == "v0" and pair["earlier"]["offset"] == 1
    assert pair["later"]["value"] == "v1" and pair["later"]["offset"] == 0


def test_acks_completing_out_of_order_with_increasing_offsets_are_fine() -> None:
    b = HistoryBuilder()
    b.invoke("v0", t=0).invoke("v1", t=1).invoke("v2", t=2).invoke("v3", t=3)
    b.complete("v2", t=5, offset=2).complete("v0", t=6, offset=0).complete("v1", t=7, offset=1)
    b.complete("v3", t=8, outcome=OpType.FAIL)
    assert _run(check_reordered, b).valid


def test_order_is_per_producer_and_partition_and_only_with_idempotence() -> None:
    b = HistoryBuilder()
    b.send("a", 5, process="p1").send("b", 0, process="p2")  # different producers
    b.send("c", 9, partition=1).send("d", 6)  # p1 on two partitions: 5 < 6 on partition 0
    b.send("x", 20, idempotent=False).send("y", 10, idempotent=False)
    assert _run(check_reordered, b).valid


# -- inconsistent offsets --------------------------------------------------------------------

def test_two_reads_disagreeing_about_one_offset_are_inconsistent() -> None:
    b = HistoryBuilder().send("v0", 0).send("v1", 1)
    b.poll("c1", [(0, 0, "v0"), (0, 1, "v1")], t=10).poll("c2", [(0, 1, "other")], t=11)
    b.final(1, ["v0", "v1"], leader=True)
    v = _run(check_inconsistent_offsets, b)
    assert not v.valid
    [bad] = _first(v, "inconsistent")
    assert (bad["partition"], bad["offset"]) == (0, 1)
    assert {x["value"]: x["seen_by"] for x in bad["values"]} == {
        "v1": ["ack:p1", "poll:c1", "replica:1"], "other": ["poll:c2"]}


def test_replicas_may_disagree_above_their_high_watermark() -> None:
    b = HistoryBuilder().send("v0", 0)
    b.final(1, ["v0", "tail-a"], hw=1, leader=True).final(2, ["v0", "tail-b"], hw=1)
    assert _run(check_inconsistent_offsets, b).valid
    b.final(3, ["other", "tail-c"], hw=1)  # committed at offset 0, and not v0
    assert not _run(check_inconsistent_offsets, b).valid


# -- divergent replicas ----------------------------------------------------------------------

def test_replicas_that_differ_below_the_min_high_watermark_diverge() -> None:
    b = HistoryBuilder()
    b.final(1, ["a", "b", "c"], leader=True).final(2, ["a", "X", "c"]).final(3, ["a", "b"])
    v = _run(check_divergent_replicas, b)
    assert not v.valid
    [d] = _first(v, "divergent")
    assert d["first_offset"] == 1 and d["divergent_offsets"] == 1 and d["min_high_watermark"] == 2
    assert d["at_first_offset"]["2"]["value"] == "X"


def test_a_differing_crc_or_a_missing_record_is_divergence() -> None:
    b = HistoryBuilder().final(1, ["a"], crcs=[1], leader=True).final(2, ["a"], crcs=[2])
    assert not _run(check_divergent_replicas, b).valid
    b = HistoryBuilder().final(1, ["a", "b"], leader=True)
    b.events.append(FinalRead(replica=2, topic=T, partition=0,
                              records=(FinalRecord(1, None, "b"),),
                              high_watermark=2, log_end_offset=2))
    assert not _run(check_divergent_replicas, b).valid


def test_replicas_agreeing_up_to_the_min_high_watermark_are_fine() -> None:
    b = HistoryBuilder()
    b.final(1, ["a", "b", "c", "d"], leader=True, crcs=[1, 2, 3, 4])
    b.final(2, ["a", "b", "Z"], hw=2, crcs=[1, 2, None])  # its tail is not yet committed
    b.final(3, ["b", "c"], start=1, crcs=[None, 3])  # retention cut offset 0
    v = _run(check_divergent_replicas, b)
    assert v.valid and v.evidence["offsets_compared"] == 1


# -- acked below min ISR ---------------------------------------------------------------------

def test_ack_while_the_isr_stayed_below_min_is_flagged() -> None:
    b = HistoryBuilder().meta(0, 1, [1, 2, 3]).meta(100, 1, [1])
    b.send("v0", 0, t=500).send("v1", 1, t=500, acks=1)
    v = _run(check_acked_below_min_isr, b)
    assert not v.valid
    [bad] = _first(v, "violations")
    assert bad["value"] == "v0" and bad["isr_at_ack"] == [1]
    assert v.evidence["judged"] == 1  # acks=1 is not bound by min.insync.replicas


def test_isr_changes_within_the_slack_are_given_the_benefit_of_the_doubt() -> None:
    # The shrink is observed just after the ack: the leader may have acked before it.
    b = HistoryBuilder().meta(0, 1, [1, 2]).send("v0", 0, t=500).meta(550, 1, [1])
    # The growth is observed just after the ack: the leader may already have had it.
    b.meta(1000, 1, [1]).send("v1", 1, t=1100).meta(1150, 1, [1, 2])
    v = _run(check_acked_below_min_isr, b)
    assert v.valid and v.evidence["judged"] == 2
    # With no slack the same growth case is flagged: the slack is what makes it safe.
    strict = _run(check_acked_below_min_isr, b, CheckConfig(min_insync_replicas=2,
                                                              isr_slack_ms=0))
    assert [x["value"] for x in _first(strict, "violations")] == ["v1"]


def test_acks_without_metadata_are_unjudged() -> None:
    b = HistoryBuilder().send("v0", 0, t=5).meta(1000, 1, [1])
    v = _run(check_acked_below_min_isr, b)
    assert v.valid and v.evidence["unjudged"] == 1


# -- double ownership ------------------------------------------------------------------------

def test_two_members_owning_one_partition_in_one_generation_is_double_ownership() -> None:
    b = HistoryBuilder().assign("c1", [0, 1], t=1, gen=3).assign("c2", [1, 2], t=2, gen=3)
    v = _run(check_double_ownership, b)
    assert not v.valid
    [d] = _first(v, "double_owned")
    assert (d["generation"], d["partition"]) == (3, 1)
    assert [m["member_id"] for m in d["members"]] == ["c1", "c2"]


def test_handover_across_generations_and_groups_is_fine() -> None:
    b = HistoryBuilder().assign("c1", [0, 1], t=1, gen=3)
    b.consumer(ConsumerFn.REVOKE, "c1", t=2, gen=3, partitions=[1])
    b.assign("c1", [0], t=3, gen=4).assign("c2", [1], t=3, gen=4)
    b.assign("other", [0, 1], t=3, gen=4, group="g2")
    b.consumer(ConsumerFn.ASSIGN, "c3", t=4, gen=4, partitions=[0], outcome=OpType.FAIL)
    assert _run(check_double_ownership, b).valid


# -- commit regression -----------------------------------------------------------------------

def test_a_lower_commit_is_a_regression() -> None:
    b = HistoryBuilder().commit("c1", {0: 10, 1: 5}, t=1).commit("c2", {0: 7}, t=2, gen=2)
    v = _run(check_commit_regression, b)
    assert not v.valid
    [r] = _first(v, "regressions")
    assert (r["offset"], r["previous_offset"], r["previous_member_id"]) == (7, 10, "c1")


def test_resets_failed_commits_and_other_groups_are_not_regressions() -> None:
    b = HistoryBuilder().commit("c1", {0: 10}, t=1)
    b.commit("zombie", {0: 3}, t=2, outcome=OpType.FAIL)  # refused: ILLEGAL_GENERATION
    b.commit("c1", {0: 4}, t=3, reset=True).commit("c1", {0: 6}, t=4)
    b.commit("x", {0: 1}, t=5, group="g2").commit("c1", {0: 6}, t=6)
    assert _run(check_commit_regression, b).valid


# -- group completeness ----------------------------------------------------------------------

def test_a_committed_record_never_polled_breaks_completeness() -> None:
    b = HistoryBuilder().final(1, ["v0", "v1", "v2", "v3"], leader=True)
    b.poll("c1", [(0, 0, "v0"), (0, 2, "v2")], t=1).commit("c1", {0: 3}, t=2)
    v = _run(check_group_completeness, b)
    assert not v.valid
    assert [(m["offset"], m["value"]) for m in _first(v, "undelivered")] == [(1, "v1")]


def test_a_poll_of_another_value_at_the_offset_is_not_delivery() -> None:
    b = HistoryBuilder().final(1, ["v0"], leader=True)
    b.poll("c1", [(0, 0, "ghost")], t=1).commit("c1", {0: 1}, t=2)
    assert not _run(check_group_completeness, b).valid


def test_everything_below_the_final_commit_delivered_is_complete() -> None:
    b = HistoryBuilder().final(1, ["v0", "v1", "v2", "v3"], leader=True)
    b.poll("c1", [(0, 0, "v0"), (0, 1, "v1")], t=1).commit("c1", {0: 2}, t=2)
    b.poll("c2", [(0, 1, "v1"), (0, 2, "v2")], t=3, gen=2).commit("c2", {0: 3}, t=4, gen=2)
    b.poll("c3", [(0, 3, "v3")], t=5, group="g2")  # another group's poll does not count
    v = _run(check_group_completeness, b)
    assert v.valid and v.evidence["records_checked"] == 3
    b.commit("c4", {0: 4}, t=6, group="g2")
    assert not _run(check_group_completeness, b).valid


# -- availability ----------------------------------------------------------------------------

def leader_kill(recover_after_ms: int) -> HistoryBuilder:
    b = HistoryBuilder().meta(0, 1, [1, 2, 3]).meta(0, 2, [2, 3, 1], partition=1)
    b.send("a0", 0, t=10).send("b0", 0, t=10, partition=1)
    b.fault(FaultKind.KILL, "broker:1", t=1000)
    b.send("b1", 1, t=1100, partition=1)  # partition 1 was not led by broker 1
    b.send("a1", 1, t=1000 + recover_after_ms - 5)
    return b


def test_time_to_first_ack_is_measured_on_the_partitions_the_broker_led() -> None:
    v = _run(check_availability, leader_kill(1500),
             CheckConfig(ack_bounds_ms={"kill:broker": 2000}))
    assert v.valid
    [row] = _first(v, "faults")
    assert row["partitions"] == ["t-0"] and row["ack_ms"] == 1500
    assert v.evidence["by_kind"]["kill:broker"]["ack_median_ms"] == 1500


def test_recovery_slower_than_the_bound_is_a_breach() -> None:
    v = _run(check_availability, leader_kill(3000), CheckConfig(ack_bounds_ms={"kill": 2000}))
    assert not v.valid
    [breach] = _first(v, "breaches")
    assert breach["what"] == "ack_median_ms" and breach["value"] == 3000


def test_no_recovery_before_the_history_ends_breaches_only_past_the_bound() -> None:
    b = HistoryBuilder().send("a0", 0, t=0).fault(FaultKind.KILL, "leader:t/0", t=1000)
    b.send("x", None, t=1100, outcome=OpType.INFO)  # history ends at 1105: censored
    v = _run(check_availability, b, CheckConfig(ack_bounds_ms={"kill:leader": 2000}))
    assert v.valid and _first(v, "faults")[0]["ack_ms"] is None
    b.send("y", None, t=4000, outcome=OpType.FAIL)
    v = _run(check_availability, b, CheckConfig(ack_bounds_ms={"kill:leader": 2000}))
    assert not v.valid and _first(v, "breaches")[0]["value"] is None


def test_rebalance_after_a_consumer_kill_is_the_next_higher_generation() -> None:
    b = HistoryBuilder().assign("c1", [0], t=0, gen=1).assign("c2", [1], t=0, gen=1)
    b.fault(FaultKind.KILL, "consumer:c2", t=1000)
    b.assign("c1", [0, 1], t=1000 + 4000, gen=2)
    ok = _run(check_availability, b, CheckConfig(rebalance_bounds_ms={"kill:consumer": 5000}))
    assert ok.valid and _first(ok, "faults")[0]["rebalance_ms"] == 4000
    late = _run(check_availability, b, CheckConfig(rebalance_bounds_ms={"kill": 3000}))
    assert not late.valid and _first(late, "breaches")[0]["what"] == "rebalance_ms"


def test_unbounded_kinds_are_reported_not_judged() -> None:
    v = _run(check_availability, leader_kill(9000))
    assert v.valid and v.evidence["by_kind"]["kill:broker"]["ack_bound_ms"] is None


# -- check_all -------------------------------------------------------------------------------

def test_check_all_is_invalid_when_any_checker_is() -> None:
    b = clean_run()
    b.events = [e for e in b.events if not (isinstance(e, FinalRead) and e.partition == 1)]
    b.final(2, ["b0", "b1", "b3"], partition=1, leader=True)  # b2 lost, b3 moved down
    report = check_all(b.history(), config=CONFIG)
    assert not report.valid
    # b3 is now at offset 2 and was polled at 3: a duplicate too
    assert {v.name for v in report.verdicts if not v.valid} == {
        "lost", "duplicated", "inconsistent-offsets", "group-completeness"}
    assert report.verdict("lost").evidence["lost"] == {"count": 1, "first": [
        {"topic": T, "partition": 1, "offset": 2, "key": None, "value": "b2", "process": "p1",
         "time_ms": 37, "value_at_offset": "b3"}]}


def test_evidence_is_bounded() -> None:
    b = HistoryBuilder()
    for i in range(50):
        b.send(f"v{i}", i)
    b.final(1, [], leader=True)
    v = _run(check_lost, b, CheckConfig(evidence_limit=5))
    assert v.evidence["lost"]["count"] == 50 and len(_first(v, "lost")) == 5


# -- every checker can fail ------------------------------------------------------------------

ANOMALIES = {
    "lost": lambda: HistoryBuilder().send("v0", 0).final(1, [], leader=True),
    "duplicated": lambda: HistoryBuilder().send("v0", 0).final(1, ["v0", "v0"], leader=True),
    "reordered": lambda: HistoryBuilder().send("v0", 1).send("v1", 0),
    "inconsistent-offsets": lambda: HistoryBuilder().send("v0", 0).poll("c", [(0, 0, "x")], t=9),
    "divergent-replicas": lambda: HistoryBuilder().final(1, ["a"]).final(2, ["b"]),
    "acked-below-min-isr": lambda: HistoryBuilder().meta(0, 1, [1]).send("v0", 0, t=500),
    "double-ownership": lambda: HistoryBuilder().assign("a", [0], t=0, gen=1)
    .assign("b", [0], t=0, gen=1),
    "commit-regression": lambda: HistoryBuilder().commit("a", {0: 5}, t=0)
    .commit("a", {0: 4}, t=1),
    "group-completeness": lambda: HistoryBuilder().final(1, ["v0"], leader=True)
    .commit("a", {0: 1}, t=0),
    "availability": lambda: HistoryBuilder().fault(FaultKind.KILL, "leader:t/0", t=0)
    .send("v0", 0, t=5000),
}
ANOMALY_CONFIG = CheckConfig(min_insync_replicas=2, ack_bounds_ms={"kill": 2000})


def test_every_checker_has_an_anomaly_here() -> None:
    names = {v.name for v in check_all(History.of([])).verdicts}
    assert names == set(ANOMALIES)


@pytest.mark.parametrize("name", sorted(ANOMALIES))
def test_each_checker_fails_on_its_anomaly(name: str) -> None:
    report = check_all(ANOMALIES[name]().history(), config=ANOMALY_CONFIG)
    assert not report.verdict(name).valid, report.verdict(name)
    assert not report.valid


def random_clean_run(rng: random.Random) -> HistoryBuilder:
    """A random valid run: interleaved producers over a few partitions, a consumer group that
    polls and commits what it read, indeterminate and failed sends, metadata changes that
    keep the ISR at or above min, and identical final reads on three replicas."""
    b = HistoryBuilder()
    partitions = rng.randint(1, 4)
    logs: list[list[Datum]] = [[] for _ in range(partitions)]
    for p in range(partitions):
        b.meta(0, 1 + p % 3, [1, 2, 3], partition=p)
    b.assign("c1", range(partitions), t=0, gen=1)
    t = 10
    for n in range(rng.randint(20, 200)):
        p, value, process = rng.randrange(partitions), f"v{n}", f"p{rng.randrange(3)}"
        roll = rng.random()
        if roll < 0.1:
            b.send(value, None, t=t, partition=p, process=process, outcome=OpType.INFO)
            if rng.random() < 0.5:
                logs[p].append(value)  # an indeterminate write that did land
        elif roll < 0.15:
            b.send(value, None, t=t, partition=p, process=process, outcome=OpType.FAIL)
        else:
            b.send(value, len(logs[p]), t=t, partition=p, process=process)
            logs[p].append(value)
        if rng.random() < 0.05:
            b.meta(t, rng.randint(1, 3), rng.sample([1, 2, 3], rng.randint(2, 3)),
                   partition=p)
        t += rng.randint(1, 50)
    for p, log in enumerate(logs):
        upto = rng.randint(0, len(log))
        b.poll("c1", [(p, o, v) for o, v in enumerate(log[:upto])], t=t)
        b.commit("c1", {p: upto}, t=t + 1)
        for replica in (1, 2, 3):
            b.final(replica, log, partition=p, leader=replica == 1)
    return b


def test_random_clean_runs_are_valid_and_a_dropped_ack_is_seen(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(20):
        b = random_clean_run(rng)
        report = check_all(b.history(), config=CONFIG)
        assert report.valid, (f"seed={seed}", [v for v in report.verdicts if not v.valid])
        acked = [e for e in b.events if isinstance(e, SendOp) and e.type is OpType.OK]
        if not acked:
            continue
        victim = rng.choice(acked)
        b.events = [_drop(e, victim) for e in b.events]
        lost = check_lost(b.history(), b.history().final_reads, CONFIG)
        assert not lost.valid, f"seed={seed}: dropping {victim.value} went unseen"
        assert victim.value in [x["value"] for x in _first(lost, "lost")], f"seed={seed}"


def _drop(event: Event, victim: SendOp) -> Event:
    """The leader's final read without the victim's record (the offsets after it shift)."""
    if not (isinstance(event, FinalRead) and event.is_leader and event.tp == victim.tp):
        return event
    kept = [r.value for r in event.records if r.value != victim.value]
    records = tuple(FinalRecord(i, None, v) for i, v in enumerate(kept))
    return FinalRead(replica=event.replica, topic=event.topic, partition=event.partition,
                     records=records, high_watermark=len(kept), log_end_offset=len(kept),
                     is_leader=True)


def test_explicit_partitions_and_odd_targets() -> None:
    b = HistoryBuilder().send("a0", 0, t=0).send("b0", 0, t=0, partition=1)
    b.fault(FaultKind.PAUSE, "broker:1", t=100, partitions=[[T, 1]])
    b.fault(FaultKind.PARTITION, "broker:1|broker:2", t=100)  # not a single broker: any ack
    b.send("a1", 1, t=200).send("b1", 1, t=400, partition=1)
    rows = _first(_run(check_availability, b), "faults")
    assert [(r["partitions"], r["ack_ms"]) for r in rows] == [(["t-1"], 305), (None, 105)]
