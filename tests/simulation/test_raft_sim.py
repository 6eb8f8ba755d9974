"""Deterministic simulation of the Raft quorum over many seeds (STYLE.md §9.3).

Each seed builds a 3- or 5-voter cluster on a fake clock, network and disk (chaos/sim/), runs
a safety phase under faults with the invariants checked after every event, then heals and
requires every node to apply a new proposal within 10 election timeouts.

- CI: fixed seeds 0..FIXED-1 plus FRESH random seeds (logged).
- `RAFKA_SEEDS=N`: N seeds (fixed ones first, then fresh random ones) — thousands on demand.
- `RAFKA_SEED=S` (or `--seed S`): replay exactly one seed.
A failure prints `seed=N` and the replay command.
"""

from __future__ import annotations

import os
import random

import pytest

from chaos.sim.raft_cluster import SimFailure, run_seed
from controller.raft import RaftNode
from controller.raft_log import RaftLog
from controller.raft_messages import VoteRequest

FIXED = 250
FRESH = 50


def _seeds(pytestconfig: pytest.Config) -> list[int]:
    pinned = pytestconfig.getoption("--seed")
    if pinned is None and os.environ.get("RAFKA_SEED"):
        pinned = int(os.environ["RAFKA_SEED"])
    if pinned is not None:
        return [pinned]
    total = int(os.environ.get("RAFKA_SEEDS", FIXED + FRESH))
    fixed = list(range(min(total, FIXED)))
    fresh_rng = random.SystemRandom()
    fresh = [fresh_rng.randrange(FIXED, 2**32) for _ in range(total - len(fixed))]
    return fixed + fresh


def test_seeds_hold_raft_invariants(pytestconfig: pytest.Config) -> None:
    seeds = _seeds(pytestconfig)
    print(f"running {len(seeds)} seeds; fresh: {seeds[FIXED:FIXED + 20]}...")
    failures: list[str] = []
    elections = 0
    for seed in seeds:
        try:
            elections += run_seed(seed).elections
        except SimFailure as exc:
            print(str(exc))
            failures.append(str(exc))
            if len(failures) >= 5:
                break
    assert not failures, "\n".join(failures)
    assert elections >= len(seeds), "the faults never forced a failover: the sim is too tame"


def _first_failure(limit: int) -> str:
    for seed in range(limit):
        try:
            run_seed(seed)
        except SimFailure as exc:
            return str(exc)
    return ""


def test_checker_catches_a_node_that_votes_twice_in_a_term(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A checker that cannot fail proves nothing: break §5.2 (one vote per term).
    honest = RaftNode._can_grant_vote

    def votes_for_anyone(self: RaftNode, msg: VoteRequest) -> bool:
        if msg.pre_vote:
            return honest(self, msg)
        return self.raft_log.is_up_to_date(msg.last_log_index, msg.last_log_term)

    monkeypatch.setattr(RaftNode, "_can_grant_vote", votes_for_anyone)
    failure = _first_failure(400)
    assert "Election Safety" in failure and "seed=" in failure and "replay:" in failure


def test_checker_catches_a_vote_for_a_stale_log(monkeypatch: pytest.MonkeyPatch) -> None:
    # Break §5.4.1 (the up-to-date check): a stale node can win and lose committed entries.
    monkeypatch.setattr(RaftLog, "is_up_to_date", lambda self, index, term: True)
    failure = _first_failure(200)
    assert "Leader Completeness" in failure or "Safety" in failure or "Log Matching" in failure


def test_same_seed_same_run() -> None:
    a, b = run_seed(1234), run_seed(1234)
    assert a == b
