"""`ControllerActor` without Ray (a plain class), and the launcher's leader rule."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from cluster.launcher import majority_leader
from controller.controller_actor import ControllerActor
from proto.fault_transport import FAULTS


def _st(node_id: int, role: str, term: int, leader: int | None) -> dict[str, Any] | None:
    return {"node_id": node_id, "role": role, "term": term, "leader_id": leader}


def test_majority_leader_needs_a_claiming_leader_and_a_majority() -> None:
    ok = {1: _st(1, "leader", 2, 1), 2: _st(2, "follower", 2, 1), 3: None}
    assert majority_leader(ok, 3) == 1
    # Followers still remember a dead leader: no leader until someone claims it.
    assert majority_leader({1: None, 2: _st(2, "follower", 2, 1),
                            3: _st(3, "follower", 2, 1)}, 3) is None
    # A stale leader alone in a minority loses to the majority's newer term.
    split = {1: _st(1, "leader", 2, 1), 2: _st(2, "leader", 3, 2), 3: _st(3, "follower", 3, 2)}
    assert majority_leader(split, 3) == 2
    assert majority_leader({1: _st(1, "leader", 2, 1), 2: None, 3: None}, 3) is None
    assert majority_leader({1: _st(1, "leader", 1, 1)}, 1) == 1


def test_actor_runs_a_single_voter_and_its_chaos_hooks_edit_the_fault_table(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        actor = ControllerActor(1, str(tmp_path / "controller-1"), election_timeout_ms=100,
                                heartbeat_interval_ms=20, log_level=None)
        assert not actor.ready() and actor.status()["role"] == "stopped"
        address = await actor.start()
        assert address.startswith("127.0.0.1:") and address == await actor.start()
        await actor.start_raft({1: address})
        try:
            assert actor.ready()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            result = await actor.propose_noop(timeout_s=1.0)
            while result["error"] is not None and loop.time() < deadline:  # until it leads
                await asyncio.sleep(0.05)
                result = await actor.propose_noop(timeout_s=1.0)
            assert result["error"] is None and result["offset"] >= 1, result
            st = actor.status()
            assert st["role"] == "leader" and actor.leader_id() == 1
            assert st["commit_index"] >= result["offset"] and st["pid"] == actor.pid()

            faults = actor.isolate_from(["controller-2"])
            assert faults["outgoing"]["controller-2"]["drop"] is True
            faults = actor.set_link_faults(incoming={"broker-1": {"delay_ms": 5}})
            assert faults["incoming"]["broker-1"] == {"drop": False, "delay_ms": 5}
            assert actor.heal() == {"outgoing": {}, "incoming": {}}
        finally:
            FAULTS.heal()
            await actor.stop(0.1)
        assert not actor.ready()

    asyncio.run(scenario())
