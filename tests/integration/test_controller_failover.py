"""Controller quorum failover and partitions with real Ray actors and gRPC (issue 3, part 7).

Every test runs a fresh 3-controller `LocalCluster` on the session's one Ray instance. Nothing
sleeps to synchronise: each step polls a condition until a deadline (`wait_until`). Deadlines
are generous bounds (a loaded 2-core machine), never assertions on speed; speed is measured by
bench/controller_failover.py and bench/metadata_commit.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cluster.launcher import LocalCluster, unique_name

ELECTION_TIMEOUT_MS = 500
# "Within the election bound": ten election timeouts, a deadline rather than a speed assertion.
ELECTION_BOUND_S = 10 * ELECTION_TIMEOUT_MS / 1000
CATCH_UP_S = 20.0
ROOT = Path(__file__).resolve().parents[2]

MakeCluster = Callable[..., LocalCluster]


def wait_until(cond: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    """Poll `cond` until true; the pause between polls is not the synchronisation."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not true after {timeout_s}s")
        time.sleep(0.05)


def commit_noops(cluster: LocalCluster, leader: int, count: int) -> list[int]:
    """Commit `count` NoOps through `leader`; returns their offsets (all must succeed)."""
    offsets = []
    for _ in range(count):
        result = cluster.propose_noop(leader, timeout_s=5.0)
        assert result["error"] is None, result
        offsets.append(result["offset"])
    assert offsets == sorted(set(offsets)), offsets
    return offsets


def status(cluster: LocalCluster, node_id: int) -> dict[str, Any]:
    st = cluster.controller_status(node_id)
    assert st is not None, f"controller {node_id} did not answer"
    assert st["failed"] is None, st
    return st


def commit_index(cluster: LocalCluster, node_id: int) -> int:
    return int(status(cluster, node_id)["commit_index"])


def test_three_controllers_elect_one_leader_and_commit(local_cluster: MakeCluster) -> None:
    cluster = local_cluster(brokers=0, controllers=3, election_timeout_ms=ELECTION_TIMEOUT_MS)
    leader = cluster.wait_for_leader(ELECTION_BOUND_S)
    statuses = cluster.controller_statuses()
    assert [st["role"] for st in statuses.values() if st].count("leader") == 1, statuses
    offsets = commit_noops(cluster, leader, 5)
    # Every voter applies what the leader committed.
    wait_until(lambda: all(commit_index(cluster, i) >= offsets[-1] for i in cluster.controller_ids),
               timeout_s=CATCH_UP_S, what="all voters reach the last committed offset")
    # A follower cannot commit: it is not the controller.
    follower = next(i for i in cluster.controller_ids if i != leader)
    assert cluster.propose_noop(follower)["error"] is not None
    info = cluster.describe()
    assert info["namespace"] == cluster.namespace and len(info["controllers"]) == 3
    assert cluster.data_dir is not None and (cluster.data_dir / "cluster.json").exists()


def test_leader_kill_elects_new_leader_and_restart_catches_up_from_snapshot(
    local_cluster: MakeCluster,
) -> None:
    snapshot_every = 20
    cluster = local_cluster(brokers=0, controllers=3, election_timeout_ms=ELECTION_TIMEOUT_MS,
                            snapshot_interval_entries=snapshot_every)
    old = cluster.wait_for_leader(ELECTION_BOUND_S)
    old_term = status(cluster, old)["term"]
    committed = commit_noops(cluster, old, 5)
    killed_commit = commit_index(cluster, old)

    cluster.kill_controller(old)
    new = cluster.wait_for_leader(ELECTION_BOUND_S, exclude=[old])
    assert status(cluster, new)["term"] > old_term
    # No committed offset is lost: every live voter's commit index covers them all, and the
    # next entry lands after them.
    live = [i for i in cluster.controller_ids if i != old]
    wait_until(lambda: all(commit_index(cluster, i) >= committed[-1] for i in live),
               timeout_s=CATCH_UP_S, what="survivors keep every committed offset")
    committed += commit_noops(cluster, new, 1)
    assert committed[-1] > committed[-2]

    # While the old leader is down, the quorum moves on far enough to compact its log past
    # everything the dead voter holds: it can only catch up from a snapshot.
    committed += commit_noops(cluster, new, 3 * snapshot_every)
    wait_until(lambda: status(cluster, new)["log_start_index"] > killed_commit + 1,
               timeout_s=CATCH_UP_S, what="the leader compacts its log behind a snapshot")

    cluster.restart_controller(old)
    target = commit_index(cluster, new)
    wait_until(lambda: commit_index(cluster, old) >= target, timeout_s=CATCH_UP_S,
               what=f"restarted controller {old} catches up to {target}")
    restarted = status(cluster, old)
    assert restarted["last_applied"] >= committed[-1]
    assert restarted["log_start_index"] > killed_commit + 1, restarted  # from the snapshot
    assert restarted["role"] == "follower" and restarted["leader_id"] == new, restarted
    assert cluster.controller_leader() == new
    committed += commit_noops(cluster, new, 1)


def test_partitioned_follower_cannot_commit_and_rejoins_without_deposing_the_leader(
    local_cluster: MakeCluster,
) -> None:
    cluster = local_cluster(brokers=0, controllers=3, election_timeout_ms=ELECTION_TIMEOUT_MS)
    leader = cluster.wait_for_leader(ELECTION_BOUND_S)
    commit_noops(cluster, leader, 3)
    term = status(cluster, leader)["term"]
    follower = next(i for i in cluster.controller_ids if i != leader)
    wait_until(lambda: status(cluster, follower)["leader_id"] == leader, timeout_s=CATCH_UP_S,
               what="the follower knows the leader")

    cluster.isolate_controller(follower)
    # The follower's election timer fires (it forgets the leader and pre-votes) ...
    wait_until(lambda: status(cluster, follower)["leader_id"] is None,
               timeout_s=ELECTION_BOUND_S, what="the isolated follower times out")
    cut_at = commit_index(cluster, follower)
    # ... while the majority keeps committing and the isolated one cannot.
    offsets = commit_noops(cluster, leader, 5)
    assert cluster.propose_noop(follower, timeout_s=1.0)["error"] is not None
    assert commit_index(cluster, follower) == cut_at < offsets[-1]
    # Pre-vote: failed pre-votes never raised its term.
    assert status(cluster, follower)["term"] == term

    cluster.heal_network()
    wait_until(lambda: commit_index(cluster, follower) >= offsets[-1], timeout_s=CATCH_UP_S,
               what="the healed follower catches up")
    after = status(cluster, leader)
    assert after["role"] == "leader" and after["term"] == term, after
    assert cluster.controller_leader() == leader
    commit_noops(cluster, leader, 1)


def test_partitioned_leader_stops_committing_and_majority_elects_a_new_one(
    local_cluster: MakeCluster,
) -> None:
    cluster = local_cluster(brokers=0, controllers=3, election_timeout_ms=ELECTION_TIMEOUT_MS)
    old = cluster.wait_for_leader(ELECTION_BOUND_S)
    before = commit_noops(cluster, old, 3)

    cluster.isolate_controller(old)
    new = cluster.wait_for_leader(ELECTION_BOUND_S, exclude=[old])
    new_term = status(cluster, new)["term"]
    offsets = commit_noops(cluster, new, 5)
    assert offsets[0] > before[-1]
    # The cut-off leader cannot commit: proposals fail (it steps down by check-quorum).
    stale = cluster.propose_noop(old, timeout_s=1.0)
    assert stale["error"] is not None, stale
    wait_until(lambda: status(cluster, old)["role"] != "leader", timeout_s=ELECTION_BOUND_S,
               what="the isolated leader steps down (check-quorum)")
    assert commit_index(cluster, old) < offsets[-1]

    cluster.heal_network()
    wait_until(lambda: commit_index(cluster, old) >= offsets[-1], timeout_s=CATCH_UP_S,
               what="the old leader rejoins and catches up")
    assert status(cluster, old)["leader_id"] == new
    after = status(cluster, new)
    assert after["role"] == "leader" and after["term"] == new_term, after
    commit_noops(cluster, new, 1)


def _rafka_command() -> list[str]:
    """The installed console script if there is one, else the same entry point (main)."""
    script = Path(sys.executable).with_name("rafka")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from cluster.cli import main; sys.exit(main())"]


@pytest.mark.slow
def test_cli_cluster_up_status_down(tmp_path: Path) -> None:
    """`rafka cluster up/status/down` end to end, with its own `ray start` head."""
    if not (ROOT / "cluster" / "cli.py").exists():
        pytest.skip("cluster/cli.py (the lead's) is not there yet")
    name = unique_name("cli")
    data_dir = tmp_path / "cluster"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    common = ["--name", name, "--data-dir", str(data_dir)]

    def rafka(*argv: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*_rafka_command(), "cluster", *argv, *common], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=timeout_s, check=False)

    up = rafka("up", "-c", "3", "-b", "0")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "controller leader: " in up.stdout and "controller-3" in up.stdout, up.stdout
        assert (data_dir / "cluster.json").exists()
        # The actors outlived the `up` process: status finds them and a leader.
        st = rafka("status")
        assert st.returncode == 0, st.stdout + st.stderr
        header = next(line for line in st.stdout.splitlines() if line.startswith("ID"))
        assert header.split() == ["ID", "ROLE", "ADDRESS", "TERM", "COMMIT-INDEX", "STATUS"]
        assert st.stdout.count(" alive") == 3, st.stdout
    finally:
        down = rafka("down", "--purge")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "stopped the Ray head" in down.stdout, down.stdout
    assert not data_dir.exists()
    shutil.rmtree(tmp_path, ignore_errors=True)
