"""Raft messages survive the trip core → protobuf → core (controller/convert.py)."""

from __future__ import annotations

from controller import convert
from controller.raft_log import LogEntry, Snapshot
from controller.raft_messages import (
    AppendRequest,
    AppendResponse,
    InstallSnapshotRequest,
    InstallSnapshotResponse,
    VoteRequest,
    VoteResponse,
)


def test_vote_round_trip_keeps_pre_vote_and_ids() -> None:
    req = VoteRequest(from_id=1, to_id=2, term=5, last_log_index=9, last_log_term=4,
                      pre_vote=True)
    wire = convert.vote_request_to_pb(req, "c")
    assert convert.vote_request_from_pb(wire, to_id=2) == req
    resp = VoteResponse(from_id=2, to_id=1, term=5, granted=True, pre_vote=True)
    assert convert.vote_response_from_pb(convert.vote_response_to_pb(resp), req) == resp


def test_append_reject_restores_reject_index_and_none_conflict_term() -> None:
    req = AppendRequest(from_id=1, to_id=3, term=2, prev_log_index=7, prev_log_term=2,
                        entries=(LogEntry(8, 2, b"x"), LogEntry(9, 2, b"")), leader_commit=6)
    assert convert.append_request_from_pb(convert.append_request_to_pb(req, ""), 3) == req
    reject = AppendResponse(from_id=3, to_id=1, term=2, success=False, reject_index=7,
                            conflict_index=5, conflict_term=None)
    assert convert.append_response_from_pb(convert.append_response_to_pb(reject), req) == reject
    ok = AppendResponse(from_id=3, to_id=1, term=2, success=True, match_index=9)
    assert convert.append_response_from_pb(convert.append_response_to_pb(ok), req) == ok


def test_install_snapshot_answer_carries_a_safe_match_index() -> None:
    req = InstallSnapshotRequest(from_id=1, to_id=2, term=3,
                                 snapshot=Snapshot(last_index=40, last_term=3, data=b"img"))
    wire = convert.snapshot_request_to_pb(req, "")
    assert convert.snapshot_request_from_pb(wire, 2, bytes(wire.data)) == req
    # The follower may be ahead of the snapshot: the leader learns the snapshot's index.
    ahead = InstallSnapshotResponse(from_id=2, to_id=1, term=3, match_index=45)
    back = convert.snapshot_response_from_pb(convert.snapshot_response_to_pb(ahead, wire), req)
    assert back.match_index == 40
    stale = InstallSnapshotResponse(from_id=2, to_id=1, term=4, match_index=0)
    back = convert.snapshot_response_from_pb(convert.snapshot_response_to_pb(stale, wire), req)
    assert (back.term, back.match_index) == (4, 0)
