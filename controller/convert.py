"""Converters between the Raft core's message dataclasses and controller.proto's messages.

Pure functions, no I/O: the transport (requests out, responses in) and the servicer (requests
in, responses out) are their only users, so generated protobuf classes stop at those shells
(STYLE §4).

Where the two shapes differ:
- A wire request names its sender only (`candidate_id`, `leader_id`); the recipient is the node
  that received it, so decoding takes `to_id`. Likewise a wire response names its responder; the
  transport that made the call supplies the rest from the request it sent.
- `AppendResponse.reject_index` (the `prev_log_index` that failed) is not on the wire: the core
  always sets it to the request's `prev_log_index`, so the transport restores it from the request.
- `conflict_term` None (the follower's log is shorter) is 0 on the wire (no entry has term 0).
- InstallSnapshot: the core sends the whole snapshot in one message; the wire carries it as one
  chunk (offset 0, done). The response's `last_included_index` echoes the snapshot when the
  follower holds it (its match index is at least that), else carries the core's match index (0
  for a stale-term answer, which makes the leader step down anyway); the transport takes it as
  the follower's match index, a safe lower bound.
"""

from __future__ import annotations

from controller.raft_log import LogEntry, Snapshot
from controller.raft_messages import (
    AppendRequest,
    AppendResponse,
    InstallSnapshotRequest,
    InstallSnapshotResponse,
    VoteRequest,
    VoteResponse,
)
from proto import controller_pb2 as pb

# ---- requests: core → wire (transport) and wire → core (servicer) -------------------------


def vote_request_to_pb(msg: VoteRequest, cluster_id: str) -> pb.VoteRequest:
    return pb.VoteRequest(
        cluster_id=cluster_id,
        term=msg.term,
        candidate_id=msg.from_id,
        last_log_index=msg.last_log_index,
        last_log_term=msg.last_log_term,
        pre_vote=msg.pre_vote,
    )


def vote_request_from_pb(req: pb.VoteRequest, to_id: int) -> VoteRequest:
    return VoteRequest(
        from_id=req.candidate_id,
        to_id=to_id,
        term=req.term,
        last_log_index=req.last_log_index,
        last_log_term=req.last_log_term,
        pre_vote=req.pre_vote,
    )


def append_request_to_pb(msg: AppendRequest, cluster_id: str) -> pb.AppendEntriesRequest:
    return pb.AppendEntriesRequest(
        cluster_id=cluster_id,
        term=msg.term,
        leader_id=msg.from_id,
        prev_log_index=msg.prev_log_index,
        prev_log_term=msg.prev_log_term,
        entries=[pb.RaftEntry(term=e.term, index=e.index, data=e.data) for e in msg.entries],
        leader_commit=msg.leader_commit,
    )


def append_request_from_pb(req: pb.AppendEntriesRequest, to_id: int) -> AppendRequest:
    return AppendRequest(
        from_id=req.leader_id,
        to_id=to_id,
        term=req.term,
        prev_log_index=req.prev_log_index,
        prev_log_term=req.prev_log_term,
        entries=tuple(LogEntry(index=e.index, term=e.term, data=e.data) for e in req.entries),
        leader_commit=req.leader_commit,
    )


def snapshot_request_to_pb(
    msg: InstallSnapshotRequest, cluster_id: str
) -> pb.InstallSnapshotRequest:
    return pb.InstallSnapshotRequest(
        cluster_id=cluster_id,
        term=msg.term,
        leader_id=msg.from_id,
        last_included_index=msg.snapshot.last_index,
        last_included_term=msg.snapshot.last_term,
        offset=0,
        data=msg.snapshot.data,
        done=True,
    )


def snapshot_request_from_pb(
    req: pb.InstallSnapshotRequest, to_id: int, data: bytes
) -> InstallSnapshotRequest:
    """`data` is the whole snapshot (the servicer reassembles chunks)."""
    return InstallSnapshotRequest(
        from_id=req.leader_id,
        to_id=to_id,
        term=req.term,
        snapshot=Snapshot(
            last_index=req.last_included_index, last_term=req.last_included_term, data=data
        ),
    )


# ---- responses: core → wire (servicer) and wire → core (transport) ------------------------


def vote_response_to_pb(msg: VoteResponse) -> pb.VoteResponse:
    return pb.VoteResponse(
        term=msg.term, vote_granted=msg.granted, voter_id=msg.from_id, pre_vote=msg.pre_vote
    )


def vote_response_from_pb(resp: pb.VoteResponse, sent: VoteRequest) -> VoteResponse:
    return VoteResponse(
        from_id=sent.to_id,
        to_id=sent.from_id,
        term=resp.term,
        granted=resp.vote_granted,
        pre_vote=resp.pre_vote,
    )


def append_response_to_pb(msg: AppendResponse) -> pb.AppendEntriesResponse:
    return pb.AppendEntriesResponse(
        term=msg.term,
        success=msg.success,
        follower_id=msg.from_id,
        match_index=msg.match_index,
        conflict_index=msg.conflict_index,
        conflict_term=msg.conflict_term or 0,
    )


def append_response_from_pb(resp: pb.AppendEntriesResponse, sent: AppendRequest) -> AppendResponse:
    return AppendResponse(
        from_id=sent.to_id,
        to_id=sent.from_id,
        term=resp.term,
        success=resp.success,
        match_index=resp.match_index,
        reject_index=0 if resp.success else sent.prev_log_index,
        conflict_index=resp.conflict_index,
        conflict_term=resp.conflict_term or None,
    )


def snapshot_response_to_pb(
    msg: InstallSnapshotResponse, req: pb.InstallSnapshotRequest
) -> pb.InstallSnapshotResponse:
    holds = msg.match_index >= req.last_included_index
    return pb.InstallSnapshotResponse(
        term=msg.term,
        follower_id=msg.from_id,
        last_included_index=req.last_included_index if holds else msg.match_index,
        next_offset=req.offset + len(req.data),
    )


def snapshot_response_from_pb(
    resp: pb.InstallSnapshotResponse, sent: InstallSnapshotRequest
) -> InstallSnapshotResponse:
    return InstallSnapshotResponse(
        from_id=sent.to_id,
        to_id=sent.from_id,
        term=resp.term,
        match_index=resp.last_included_index,
    )
