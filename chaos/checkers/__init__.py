"""Checkers: pure functions from a recorded history and final reads to verdicts.

`check_all(history, final_reads, config)` runs every checker and returns a `CheckReport`
whose `valid` is true only if every verdict is. Each checker module's docstring says what
its verdict proves and what it deliberately does not judge.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from chaos.checkers.availability import check_availability, measure
from chaos.checkers.common import CheckConfig, Verdict
from chaos.checkers.delivery import (
    check_duplicated, check_inconsistent_offsets, check_lost, check_reordered,
)
from chaos.checkers.groups import (
    check_commit_regression, check_double_ownership, check_group_completeness,
)
from chaos.checkers.replicas import check_acked_below_min_isr, check_divergent_replicas
from chaos.history import FinalRead, History, Json

Checker = Callable[[History, list[FinalRead], CheckConfig], Verdict]

CHECKERS: tuple[Checker, ...] = (
    check_lost,
    check_duplicated,
    check_reordered,
    check_inconsistent_offsets,
    check_divergent_replicas,
    check_acked_below_min_isr,
    check_double_ownership,
    check_commit_regression,
    check_group_completeness,
    check_availability,
)


@dataclass(frozen=True, slots=True)
class CheckReport:
    valid: bool
    verdicts: tuple[Verdict, ...]
    stats: dict[str, Json]

    def verdict(self, name: str) -> Verdict:
        for v in self.verdicts:
            if v.name == name:
                return v
        raise KeyError(name)

    def to_json(self) -> dict[str, Json]:
        """`{"valid": bool, "checks": {name: {"valid": bool, ...evidence}}, "stats": {...}}`"""
        return {"valid": self.valid,
                "checks": {v.name: v.to_json() for v in self.verdicts},
                "stats": self.stats}


def check_all(
    history: History,
    final_reads: Iterable[FinalRead] | None = None,
    config: CheckConfig | None = None,
    checkers: Iterable[Checker] = CHECKERS,
) -> CheckReport:
    """Run the checkers over a history and the final reads (by default the history's own).

    Args:
        history: the parsed history.
        final_reads: the final read of every partition from every replica; None takes the
            `final-read` lines of the history.
        config: how to judge; defaults to `CheckConfig()`.
        checkers: which checkers to run (all by default).
    Returns:
        A `CheckReport`: valid iff every verdict is.
    """
    config = config or CheckConfig()
    reads = list(history.final_reads if final_reads is None else final_reads)
    verdicts = tuple(check(history, reads, config) for check in checkers)
    return CheckReport(all(v.valid for v in verdicts), verdicts,
                       history_stats(history, reads, config))


def history_stats(history: History, reads: list[FinalRead], config: CheckConfig) -> dict[str, Json]:
    sends = Counter(op.type.value for op in history.sends)
    consumer = Counter(op.f.value for op in history.consumer_ops)
    faults = Counter(op.f.value for op in history.faults)
    return {
        "duration_ms": history.end_ms() - history.start_ms(),
        "sends": dict(sorted(sends.items())),
        "consumer_ops": dict(sorted(consumer.items())),
        "faults": dict(sorted(faults.items())),
        "final_reads": len(reads),
        "recoveries": [r.to_json() for r in measure(history, config)],
    }


__all__ = [
    "CHECKERS", "CheckConfig", "CheckReport", "Checker", "Verdict", "check_all",
    "history_stats",
]
