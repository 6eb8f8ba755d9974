"""Unit tests of the Raft core: explicit inputs and `now_ms`, checked outputs, no I/O."""

from __future__ import annotations

import random

import pytest

from controller.raft import NotLeaderError, RaftConfig, RaftNode, Role
from controller.raft_log import HardState, LogEntry, Snapshot
from controller.raft_messages import (
    AppendRequest,
    AppendResponse,
    InstallSnapshotRequest,
    VoteRequest,
    VoteResponse,
)
from tests.unit.raft_harness import Cluster

T = 1000


def make_node(
    node_id: int = 1,
    *,
    voters: tuple[int, ...] = (1, 2, 3),
    term: int = 0,
    voted_for: int | None = None,
    entries: list[tuple[int, int]] = (),  # type: ignore[assignment]
    pre_vote: bool = True,
) -> RaftNode:
    """A node restarted from a given durable state; entries as (index, term)."""
    return RaftNode(
        RaftConfig(node_id=node_id, voters=voters, election_timeout_ms=T, pre_vote=pre_vote),
        rng=random.Random(node_id),
        now_ms=0,
        hard_state=HardState(term=term, voted_for=voted_for, commit=0),
        entries=[LogEntry(i, t, b"e%d" % i) for i, t in entries],
    )


def test_config_rejects_even_membership_and_unknown_self() -> None:
    with pytest.raises(ValueError):
        RaftConfig(node_id=1, voters=(1, 2))
    with pytest.raises(ValueError):
        RaftConfig(node_id=4, voters=(1, 2, 3))
    assert RaftConfig(node_id=1).heartbeat_ms == 200


def test_election_timeout_is_randomized_within_t_to_2t() -> None:
    deadlines = {make_node(i, voters=(1, 2, 3, 4, 5)).next_deadline_ms() for i in range(1, 6)}
    assert all(T <= d < 2 * T for d in deadlines)
    assert len(deadlines) > 1


def test_cluster_elects_one_leader_which_commits_a_noop_of_its_term() -> None:
    c = Cluster(3)
    leader = c.elect()
    node = c.node(leader)
    assert node.commit_index == 1
    c.run_for(300)  # followers learn the commit index from the next heartbeat
    for i in c.ids:
        assert [(e.index, e.term, e.data) for e in c.applied[i]] == [(1, node.term, b"")]
        assert c.node(i).leader_id == leader


def test_propose_on_a_follower_raises_not_leader_with_hint() -> None:
    c = Cluster(3)
    leader = c.elect()
    follower = next(i for i in c.ids if i != leader)
    with pytest.raises(NotLeaderError) as err:
        c.node(follower).propose(b"x")
    assert err.value.leader_id == leader
    assert err.value.retriable


def test_proposals_commit_and_apply_in_order_everywhere() -> None:
    c = Cluster(5)
    c.elect()
    for k in range(10):
        c.propose(b"v%d" % k)
    c.run_for(500)  # heartbeats carry the final commit index to followers
    want = [b""] + [b"v%d" % k for k in range(10)]
    for i in c.ids:
        assert [e.data for e in c.applied[i]] == want


def test_pre_vote_does_not_change_term_or_vote() -> None:
    node = make_node(1, term=3)
    node.tick(2 * T)
    assert node.role is Role.PRE_CANDIDATE
    ready = node.ready()
    assert node.term == 3 and node.voted_for is None
    reqs = [m for m in ready.messages if isinstance(m, VoteRequest)]
    assert [(m.to_id, m.term, m.pre_vote) for m in reqs] == [(2, 4, True), (3, 4, True)]


def test_pre_vote_majority_starts_real_election_with_persisted_vote() -> None:
    node = make_node(1, term=3)
    node.tick(2 * T)
    node.advance(node.ready())
    ready = node.step(VoteResponse(from_id=2, to_id=1, term=4, granted=True, pre_vote=True), 2 * T)
    assert node.role is Role.CANDIDATE and node.term == 4 and node.voted_for == 1
    assert ready.hard_state == HardState(term=4, voted_for=1, commit=0)
    assert all(isinstance(m, VoteRequest) and not m.pre_vote for m in ready.messages)


def test_vote_refused_to_candidate_with_stale_log() -> None:
    # §5.4.1: our last term is 2; a candidate whose last entry is of term 1 is behind even
    # with a longer log.
    voter = make_node(2, term=2, entries=[(1, 1), (2, 2)])
    ready = voter.step(
        VoteRequest(from_id=1, to_id=2, term=3, last_log_index=5, last_log_term=1), 0
    )
    (resp,) = ready.messages
    assert isinstance(resp, VoteResponse) and not resp.granted
    assert voter.term == 3 and voter.voted_for is None


def test_vote_granted_once_per_term_and_persisted_before_the_reply() -> None:
    voter = make_node(3, term=1)
    ready = voter.step(VoteRequest(1, 3, term=2, last_log_index=0, last_log_term=0), 0)
    assert ready.hard_state == HardState(term=2, voted_for=1, commit=0)
    assert ready.messages == (VoteResponse(from_id=3, to_id=1, term=2, granted=True),)
    # Until advance() the vote is not durable: the next Ready still asks to persist it.
    assert voter.ready().hard_state == HardState(term=2, voted_for=1, commit=0)
    voter.advance(ready)
    ready = voter.step(VoteRequest(2, 3, term=2, last_log_index=9, last_log_term=1), 0)
    assert ready.hard_state is None
    assert ready.messages == (VoteResponse(from_id=3, to_id=2, term=2, granted=False),)


def test_higher_term_makes_leader_step_down() -> None:
    c = Cluster(3)
    leader = c.elect()
    node = c.node(leader)
    term = node.term
    other = next(i for i in c.ids if i != leader)
    node.step(AppendResponse(from_id=other, to_id=leader, term=term + 5, success=False), c.now)
    assert node.role is Role.FOLLOWER and node.term == term + 5 and node.leader_id is None


def test_candidate_discovering_current_leader_steps_down() -> None:
    node = make_node(1, term=3, pre_vote=False)
    node.tick(2 * T)
    assert node.role is Role.CANDIDATE and node.term == 4
    node.step(
        AppendRequest(from_id=2, to_id=1, term=4, prev_log_index=0, prev_log_term=0,
                      entries=(), leader_commit=0),
        2 * T,
    )
    assert node.role is Role.FOLLOWER and node.leader_id == 2


def _become_leader(node: RaftNode, now: int) -> None:
    node.tick(now)
    node.advance(node.ready())
    for voter in (2, 3):
        if node.role is Role.PRE_CANDIDATE:
            node.step(VoteResponse(voter, node.node_id, node.term + 1, True, pre_vote=True), now)
            node.advance(node.ready())
    node.step(VoteResponse(2, node.node_id, node.term, True), now)
    assert node.role is Role.LEADER


def test_leader_never_commits_old_term_entry_by_counting_replicas() -> None:
    # Raft §5.4.2 / Figure 8: entry 2 (term 2) sits on a majority, but committing it by
    # counting is unsafe until an entry of the leader's own term (4) is also on a majority.
    leader = make_node(1, term=3, entries=[(1, 1), (2, 2)])
    _become_leader(leader, 2 * T)
    assert leader.term == 4
    ready = leader.ready()
    assert [(e.index, e.term) for e in ready.entries] == [(3, 4)]  # the no-op of its term
    leader.advance(ready)
    now = 2 * T
    leader.step(AppendResponse(2, 1, 4, success=True, match_index=2), now)
    assert leader.commit_index == 0, "an old-term entry must not commit by counting"
    leader.step(AppendResponse(2, 1, 4, success=True, match_index=3), now)
    assert leader.commit_index == 3  # commits 3, and 1-2 with it (Log Matching)


def test_leader_counts_its_own_entries_only_once_persisted() -> None:
    node = make_node(1, voters=(1,))
    ready = node.tick(2 * T)
    assert node.role is Role.LEADER
    assert [(e.index, e.data) for e in ready.entries] == [(1, b"")]
    assert node.commit_index == 0, "a single voter must fsync before it may commit"
    node.advance(ready)
    assert node.commit_index == 1
    assert [e.index for e in node.ready().committed] == [1]


def test_follower_truncates_conflicting_suffix_and_persists_from_the_cut() -> None:
    follower = make_node(2, term=3, entries=[(1, 1), (2, 2), (3, 2), (4, 2)])
    req = AppendRequest(
        from_id=1, to_id=2, term=3, prev_log_index=2, prev_log_term=2,
        entries=(LogEntry(3, 3, b"new3"), LogEntry(4, 3, b"new4"), LogEntry(5, 3, b"new5")),
        leader_commit=4,
    )
    ready = follower.step(req, 0)
    assert [(e.index, e.term) for e in ready.entries] == [(3, 3), (4, 3), (5, 3)]
    assert ready.messages == (AppendResponse(2, 1, 3, success=True, match_index=5),)
    assert follower.commit_index == 4
    # A stale duplicate of an older, shorter request must not truncate anything.
    follower.advance(ready)
    stale = AppendRequest(1, 2, 3, prev_log_index=2, prev_log_term=2,
                          entries=(LogEntry(3, 3, b"new3"),), leader_commit=4)
    ready = follower.step(stale, 0)
    assert ready.entries == () and follower.last_index == 5


def test_reject_carries_a_hint_that_skips_a_whole_term() -> None:
    follower = make_node(2, term=5, entries=[(1, 1)] + [(i, 2) for i in range(2, 30)])
    req = AppendRequest(1, 2, 5, prev_log_index=29, prev_log_term=4, entries=(), leader_commit=0)
    (resp,) = follower.step(req, 0).messages
    assert isinstance(resp, AppendResponse) and not resp.success
    assert (resp.conflict_term, resp.conflict_index, resp.reject_index) == (2, 2, 29)
    short = make_node(3, term=5, entries=[(1, 1)])
    (resp,) = short.step(
        AppendRequest(1, 3, 5, prev_log_index=29, prev_log_term=4, entries=(), leader_commit=0), 0
    ).messages
    assert isinstance(resp, AppendResponse)
    assert (resp.conflict_term, resp.conflict_index) == (None, 2)


def test_lagging_follower_converges_through_the_hint() -> None:
    c = Cluster(3)
    leader = c.elect()
    lagger = next(i for i in c.ids if i != leader)
    c.isolate(lagger)
    for k in range(30):
        c.propose(b"p%d" % k)
    c.heal()
    c.run_for(1000)
    assert c.node(lagger).last_index == c.node(leader).last_index
    assert [e.data for e in c.applied[lagger]] == [e.data for e in c.applied[leader]]


def test_check_quorum_leader_steps_down_when_isolated() -> None:
    c = Cluster(3)
    leader = c.elect()
    c.isolate(leader)
    c.run_for(2 * T + 100)
    assert c.node(leader).role is Role.FOLLOWER
    others = [i for i in c.ids if i != leader]
    assert len([i for i in others if c.node(i).role is Role.LEADER]) == 1


def test_prevote_rejoining_node_does_not_raise_term_or_depose_leader() -> None:
    c = Cluster(3, pre_vote=True)
    leader = c.elect()
    term = c.node(leader).term
    loner = next(i for i in c.ids if i != leader)
    c.isolate(loner)
    c.run_for(10 * T)  # the loner times out over and over
    assert c.node(loner).term == term, "pre-vote must not bump the term"
    c.heal()
    c.run_for(3 * T)
    assert c.leaders() == [leader]
    assert {c.node(i).term for i in c.ids} == {term}
    assert c.node(loner).leader_id == leader


def test_without_prevote_a_rejoining_node_disrupts_the_leader() -> None:
    # The control for the test above: it shows the scenario is the one pre-vote fixes.
    c = Cluster(3, pre_vote=False)
    leader = c.elect()
    term = c.node(leader).term
    loner = next(i for i in c.ids if i != leader)
    c.isolate(loner)
    c.run_for(10 * T)
    assert c.node(loner).term > term
    c.heal()
    c.run_for(3 * T)
    assert max(c.node(i).term for i in c.ids) > term


def test_compaction_and_snapshot_install_for_a_follower_behind_the_log_start() -> None:
    c = Cluster(3)
    leader = c.elect()
    lagger = next(i for i in c.ids if i != leader)
    c.crash(lagger)
    for k in range(20):
        c.propose(b"s%d" % k)
    node = c.node(leader)
    applied = node.applied_index
    snap = Snapshot(applied, node.term, data=b"image@%d" % applied)
    c.stores[leader].save_snapshot(snap)
    node.compact(snap)
    assert node.raft_log.first_index == applied + 1
    c.restart(lagger)
    c.run_for(1000)
    follower = c.node(lagger)
    assert c.snapshots[lagger] == snap  # Ready.snapshot handed to the application
    assert follower.commit_index == node.commit_index and follower.applied_index == applied
    assert c.stores[lagger].load_snapshot() == snap
    assert any(isinstance(m, InstallSnapshotRequest) for m in c.sent)
    # The follower keeps replicating normally after the snapshot.
    c.propose(b"after")
    c.run_for(500)
    assert c.applied[lagger][-1].data == b"after"


def test_restart_keeps_term_vote_and_log() -> None:
    c = Cluster(3)
    leader = c.elect()
    c.propose(b"x")
    term = c.node(leader).term
    c.crash(leader)
    c.restart(leader)
    node = c.node(leader)
    assert node.term == term and node.voted_for == leader
    assert node.last_index == 2 and node.role is Role.FOLLOWER


def test_status_reports_match_index_and_contact_per_voter() -> None:
    c = Cluster(3)
    leader = c.elect()
    c.propose(b"x")
    st = c.node(leader).status()
    assert st.leader_id == leader and st.role is Role.LEADER and st.commit_index == 2
    assert [v.node_id for v in st.voters] == [1, 2, 3]
    assert all(v.match_index == 2 and v.last_contact_ms is not None for v in st.voters)


def test_leader_ignores_stale_append_rejects_in_replicate_state() -> None:
    c = Cluster(3)
    leader = c.elect()
    other = next(i for i in c.ids if i != leader)
    c.propose(b"x")
    node = c.node(leader)
    ready = node.step(
        AppendResponse(other, leader, node.term, success=False, reject_index=0, conflict_index=1),
        c.now,
    )
    assert ready.messages == ()


def test_an_ack_queued_before_a_truncation_cannot_count_toward_the_old_leaders_commit() -> None:
    # Five voters. Old leader 1 (term 2) and new leader 3 (term 3, elected by 3, 4, 5 while
    # partitioned from 1) both reach follower 2 within one inbox drain, so both answers leave
    # in the same Ready, after one persist. The first answer acked 5..7 of term 2, but the
    # second request cut them: only (5, term 3) is on disk when the ack leaves. If leader 1
    # (still at term 2) counted it, it could commit 5..7 with 1, 2 and one more voter, and
    # leader 3 would then overwrite a committed entry.
    voters = (1, 2, 3, 4, 5)
    follower = make_node(2, voters=voters, term=1, entries=[(i, 1) for i in range(1, 5)])
    old = AppendRequest(1, 2, 2, prev_log_index=4, prev_log_term=1,
                        entries=tuple(LogEntry(i, 2, b"old%d" % i) for i in (5, 6, 7)),
                        leader_commit=4)
    new = AppendRequest(3, 2, 3, prev_log_index=4, prev_log_term=1,
                        entries=(LogEntry(5, 3, b"new5"),), leader_commit=4)
    follower.step(old, 0)
    ready = follower.step(new, 0)
    assert [(e.index, e.term) for e in ready.entries] == [(5, 3)]
    to_old = [m for m in ready.messages if m.to_id == 1]
    assert len(to_old) == 1 and isinstance(to_old[0], AppendResponse)  # one answer per request
    # Either the ack no longer claims the cut entries, or it carries the new term (so the old
    # leader steps down instead of counting it).
    ack = to_old[0]
    assert ack.term == 3 or not ack.success or ack.match_index <= 4, ack
    # And the old leader, fed that answer, never commits past what it can prove.
    leader = make_node(1, voters=voters, term=1, entries=[(i, 1) for i in range(1, 5)])
    leader.tick(10 * T)  # pre-vote
    for v in (3, 4):
        leader.step(VoteResponse(v, 1, 2, granted=True, pre_vote=True), 10 * T)
    for v in (3, 4):
        leader.step(VoteResponse(v, 1, 2, granted=True), 10 * T)
    assert leader.role is Role.LEADER and leader.term == 2
    leader.advance(leader.ready())
    for i in (6, 7):
        leader.propose(b"old%d" % i)  # 5 is its no-op here; 5..7 of term 2 either way
    leader.advance(leader.ready())
    leader.step(AppendResponse(5, 1, 2, success=True, match_index=7), 10 * T)
    leader.step(ack, 10 * T)
    assert leader.commit_index <= 4 or leader.role is not Role.LEADER
