"""The `Controller` gRPC service: Raft RPCs between voters, and the controller API.

Theory of operation
-------------------
Every method is decode → core → encode, with its one `try` at that edge (`_edge`): a
`RafkaError` becomes its code in the response header, anything else UNKNOWN_SERVER_ERROR logged
with its traceback, and serving continues. Every response carries the header (error_code,
error_message, leader_id, leader_address) so callers can follow a NOT_CONTROLLER hint.

- Raft RPCs (Vote, AppendEntries, InstallSnapshot), answered by every voter: the request becomes
  the core's message and goes to `RaftRuntime.request`, which steps it in the Raft loop and
  resolves the returned future with the core's answer after the state it vouches for is durable
  (see controller/raft_runtime.py, "RPC-answer routing"). A wrong cluster id answers
  INCONSISTENT_CLUSTER_ID and a sender outside the voter set INCONSISTENT_VOTER_SET, without
  touching the core. InstallSnapshot chunks are reassembled here; only a complete snapshot
  reaches the core.
- Controller API (broker lifecycle, AlterPartition, admin, producer ids): through
  `ControlRuntime.call` on the active controller; elsewhere NOT_CONTROLLER with the hint.
  The protobuf ↔ request converters live in controller/api_convert.py.
- FetchMetadata: a long poll answered by the Raft leader only (brokers follow the active
  controller, as KRaft observers fetch from the leader; a follower's copy may be arbitrarily
  stale while it is partitioned, so it answers NOT_CONTROLLER with the hint). It serves applied
  entries only, from `fetch_offset`, with the snapshot first when `fetch_offset` is below the
  log start. A leader that loses leadership during the wait still answers with what it has:
  committed entries stay committed. `MetadataSnapshot.data` is `encode_records(image.snapshot())`
  of the image at `end_offset - 1`: a broker rebuilds it with
  `MetadataImage.from_snapshot(decode_records(data), end_offset - 1)`. Offsets are Raft indexes
  and `high_watermark` is the applied index + 1 (what this leader can serve).
- DescribeQuorum: the leader's view of each voter's progress, and the brokers following the
  log (observers) with their last fetch offset.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from controller import api_convert as api
from controller import convert
from controller.control_runtime import ControlRuntime
from controller.raft import Role
from controller.raft_messages import RaftMessage
from controller.raft_runtime import NodeLog, RaftRuntime
from proto import admin_pb2
from proto import controller_pb2 as pb
from proto import controller_pb2_grpc
from proto.errors import (
    ErrorCode,
    NotControllerError,
    RafkaError,
    RequestTimedOutError,
    error_class,
)

log = logging.getLogger(__name__)

DEFAULT_FETCH_MAX_RECORDS = 1000
DEFAULT_FETCH_MAX_BYTES = 8 * 1024 * 1024
MAX_FETCH_WAIT_MS = 30_000

Resp = TypeVar("Resp")


@dataclass(slots=True)
class _Chunks:
    term: int
    last_included_index: int
    data: bytearray


@dataclass(slots=True)
class _Observer:
    fetch_offset: int
    wall_ms: int


def _edge(
    response_cls: type[Any],
) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """The one try/except of a servicer method (STYLE §5)."""

    def wrap(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(method)
        async def handler(self: ControllerServicer, request: Any, context: Any) -> Any:
            try:
                return await method(self, request, context)
            except RafkaError as exc:
                self._log.debug("%s: %s %s", method.__name__, exc.name, exc.message)
                return self._header(response_cls(), exc.code, exc.message)
            except Exception:
                self._log.exception("%s failed", method.__name__)
                return self._header(
                    response_cls(), ErrorCode.UNKNOWN_SERVER_ERROR, "internal error"
                )

        return handler

    return wrap


class ControllerServicer(controller_pb2_grpc.ControllerServicer):
    """One controller's gRPC service; see the module docstring."""

    def __init__(
        self,
        raft: RaftRuntime,
        control: ControlRuntime,
        *,
        voters: dict[int, str],
        cluster_id: str = "",
        raft_rpc_timeout_ms: int = 2000,
        request_timeout_ms: int = 30_000,
    ) -> None:
        """Args:
            raft: the Raft loop.
            control: the active controller's request path.
            voters: every voter's id → "host:port" (for leader hints and the voter check).
            cluster_id: checked on Raft RPCs when both sides set it.
            raft_rpc_timeout_ms: how long a Raft RPC waits for the core's answer.
            request_timeout_ms: the longest an API call waits for its records to commit
                (capped by the request's own timeout_ms where it has one).
        """
        self._raft = raft
        self._control = control
        self._voters = dict(voters)
        self._cluster_id = cluster_id
        self._raft_timeout_s = raft_rpc_timeout_ms / 1000
        self._request_timeout_s = request_timeout_ms / 1000
        self._node_id = raft.node_id
        self._log = NodeLog(log, raft.node_id)
        self._chunks: dict[int, _Chunks] = {}
        self._observers: dict[int, _Observer] = {}

    # ---- helpers --------------------------------------------------------------------------

    def _header(self, response: Resp, code: ErrorCode = ErrorCode.NONE,
                message: str = "") -> Resp:
        r: Any = response
        r.error_code = int(code)
        r.error_message = message
        return self._hint(response)

    def _hint(self, response: Resp) -> Resp:
        """Set the header's leader fields (leaves error_code alone)."""
        r: Any = response
        leader = self._raft.leader_id
        if leader is not None:
            r.leader_id = leader
            r.leader_address = self._voters.get(leader, "")
        return response

    async def _api(self, handle_name: str, request: Any, from_pb: Callable[[Any], Any],
                   to_pb: Callable[[Any], Resp], timeout_ms: int = 0) -> Resp:
        """decode → ControlManager.handle_* → propose → await commit → encode."""
        manager = self._control.manager
        timeout_s = self._request_timeout_s
        if timeout_ms > 0:
            timeout_s = min(timeout_s, timeout_ms / 1000)
        response = await self._control.call(
            getattr(manager, handle_name), from_pb(request), timeout_s
        )
        return self._hint(to_pb(response))

    def _check_voter(self, cluster_id: str, sender: int) -> None:
        if self._cluster_id and cluster_id and cluster_id != self._cluster_id:
            raise error_class(ErrorCode.INCONSISTENT_CLUSTER_ID)(
                f"cluster id {cluster_id!r} != {self._cluster_id!r}"
            )
        if sender not in self._voters or sender == self._node_id:
            raise error_class(ErrorCode.INCONSISTENT_VOTER_SET)(
                f"node {sender} is not another voter of {sorted(self._voters)}"
            )

    async def _step(self, msg: RaftMessage) -> RaftMessage:
        fut = self._raft.request(msg)
        done, _ = await asyncio.wait({fut}, timeout=self._raft_timeout_s)
        if not done or fut.cancelled():
            fut.cancel()
            raise RequestTimedOutError(f"raft loop did not answer {type(msg).__name__}")
        return fut.result()

    def _require_leader(self) -> None:
        if self._raft.role is not Role.LEADER:
            raise NotControllerError(
                f"controller {self._node_id} is not the leader (leader: {self._raft.leader_id})"
            )

    # ---- Raft ------------------------------------------------------------------------------

    @_edge(pb.VoteResponse)
    async def Vote(self, request: pb.VoteRequest, context: Any) -> pb.VoteResponse:
        self._check_voter(request.cluster_id, request.candidate_id)
        answer = await self._step(convert.vote_request_from_pb(request, self._node_id))
        return self._header(convert.vote_response_to_pb(answer))  # type: ignore[arg-type]

    @_edge(pb.AppendEntriesResponse)
    async def AppendEntries(
        self, request: pb.AppendEntriesRequest, context: Any
    ) -> pb.AppendEntriesResponse:
        self._check_voter(request.cluster_id, request.leader_id)
        answer = await self._step(convert.append_request_from_pb(request, self._node_id))
        return self._header(convert.append_response_to_pb(answer))  # type: ignore[arg-type]

    @_edge(pb.InstallSnapshotResponse)
    async def InstallSnapshot(
        self, request: pb.InstallSnapshotRequest, context: Any
    ) -> pb.InstallSnapshotResponse:
        self._check_voter(request.cluster_id, request.leader_id)
        data = self._reassemble(request)
        if data is None:  # more chunks to come: tell the leader where to continue
            buf = self._chunks.get(request.leader_id)
            return self._header(pb.InstallSnapshotResponse(
                term=self._raft.term, follower_id=self._node_id,
                last_included_index=request.last_included_index,
                next_offset=len(buf.data) if buf else 0,
            ))
        answer = await self._step(convert.snapshot_request_from_pb(request, self._node_id, data))
        return self._header(
            convert.snapshot_response_to_pb(answer, request)  # type: ignore[arg-type]
        )

    def _reassemble(self, request: pb.InstallSnapshotRequest) -> bytes | None:
        """The whole snapshot once its last chunk arrived; None while chunks are missing."""
        if request.offset == 0 and request.done:
            self._chunks.pop(request.leader_id, None)
            return bytes(request.data)
        buf = self._chunks.get(request.leader_id)
        if request.offset == 0 or buf is None or (buf.term, buf.last_included_index) != (
            request.term, request.last_included_index
        ):
            if request.offset != 0:
                return None
            buf = _Chunks(request.term, request.last_included_index, bytearray())
            self._chunks[request.leader_id] = buf
        if request.offset != len(buf.data):
            return None
        buf.data += request.data
        if not request.done:
            return None
        del self._chunks[request.leader_id]
        return bytes(buf.data)

    # ---- metadata log ----------------------------------------------------------------------

    @_edge(pb.FetchMetadataResponse)
    async def FetchMetadata(
        self, request: pb.FetchMetadataRequest, context: Any
    ) -> pb.FetchMetadataResponse:
        self._require_leader()
        fetch_offset = max(1, request.fetch_offset)
        self._observers[request.broker_id] = _Observer(fetch_offset, _wall_ms())
        wait_s = min(max(request.max_wait_ms, 0), MAX_FETCH_WAIT_MS) / 1000
        if self._raft.applied_index < fetch_offset and wait_s > 0:
            await self._raft.wait_for_applied(fetch_offset, wait_s)
        return self._header(self._fetch(fetch_offset, request))

    def _fetch(self, fetch_offset: int, request: pb.FetchMetadataRequest
               ) -> pb.FetchMetadataResponse:
        raft = self._raft
        response = pb.FetchMetadataResponse(
            high_watermark=raft.applied_index + 1, log_start_offset=raft.log_start_index
        )
        start = fetch_offset
        snap = raft.latest_snapshot
        if fetch_offset < raft.log_start_index and snap is not None:
            response.snapshot.CopyFrom(pb.MetadataSnapshot(
                end_offset=snap.last_index + 1, term=snap.last_term, data=snap.data
            ))
            start = snap.last_index + 1
        max_records = request.max_records or DEFAULT_FETCH_MAX_RECORDS
        max_bytes = request.max_bytes or DEFAULT_FETCH_MAX_BYTES
        size = 0
        for entry in raft.committed_entries(start, start + max_records):
            if response.records and size + len(entry.data) > max_bytes:
                break
            size += len(entry.data)
            response.records.append(pb.MetadataRecord(offset=entry.index, data=entry.data))
        return response

    @_edge(pb.DescribeQuorumResponse)
    async def DescribeQuorum(
        self, request: pb.DescribeQuorumRequest, context: Any
    ) -> pb.DescribeQuorumResponse:
        self._require_leader()
        status = self._raft.quorum_status()
        now_mono, now_wall = self._raft.now_ms(), _wall_ms()
        response = pb.DescribeQuorumResponse(
            term=status.term, high_watermark=status.commit_index + 1
        )
        for v in status.voters:
            contact = -1 if v.last_contact_ms is None else now_wall - (now_mono - v.last_contact_ms)
            response.voters.append(pb.DescribeQuorumResponse.ReplicaState(
                replica_id=v.node_id,
                log_end_offset=v.match_index + 1,
                last_fetch_timestamp=contact,
                last_caught_up_timestamp=contact if v.match_index >= status.commit_index else -1,
            ))
        for broker_id, obs in sorted(self._observers.items()):
            response.observers.append(pb.DescribeQuorumResponse.ReplicaState(
                replica_id=broker_id, log_end_offset=obs.fetch_offset,
                last_fetch_timestamp=obs.wall_ms, last_caught_up_timestamp=-1,
            ))
        return self._header(response)


    # ---- controller API (active controller only) -----------------------------------------

    @_edge(pb.BrokerRegistrationResponse)
    async def BrokerRegistration(
        self, request: pb.BrokerRegistrationRequest, context: Any
    ) -> pb.BrokerRegistrationResponse:
        if self._cluster_id and request.cluster_id and request.cluster_id != self._cluster_id:
            raise error_class(ErrorCode.INCONSISTENT_CLUSTER_ID)(
                f"cluster id {request.cluster_id!r} != {self._cluster_id!r}"
            )
        return await self._api("handle_broker_registration", request,
                               api.broker_registration_from_pb, api.broker_registration_to_pb)

    @_edge(pb.BrokerHeartbeatResponse)
    async def BrokerHeartbeat(
        self, request: pb.BrokerHeartbeatRequest, context: Any
    ) -> pb.BrokerHeartbeatResponse:
        return await self._api("handle_broker_heartbeat", request,
                               api.broker_heartbeat_from_pb, api.broker_heartbeat_to_pb)

    @_edge(pb.AlterPartitionResponse)
    async def AlterPartition(
        self, request: pb.AlterPartitionRequest, context: Any
    ) -> pb.AlterPartitionResponse:
        return await self._api("handle_alter_partition", request, api.alter_partition_from_pb,
                               lambda resp: api.alter_partition_to_pb(resp, request))

    @_edge(pb.AllocateProducerIdsResponse)
    async def AllocateProducerIds(
        self, request: pb.AllocateProducerIdsRequest, context: Any
    ) -> pb.AllocateProducerIdsResponse:
        return await self._api("handle_allocate_producer_ids", request,
                               api.allocate_producer_ids_from_pb,
                               api.allocate_producer_ids_to_pb)

    @_edge(admin_pb2.CreateTopicsResponse)
    async def CreateTopics(
        self, request: admin_pb2.CreateTopicsRequest, context: Any
    ) -> admin_pb2.CreateTopicsResponse:
        return await self._api("handle_create_topics", request, api.create_topics_from_pb,
                               api.create_topics_to_pb, request.timeout_ms)

    @_edge(admin_pb2.DeleteTopicsResponse)
    async def DeleteTopics(
        self, request: admin_pb2.DeleteTopicsRequest, context: Any
    ) -> admin_pb2.DeleteTopicsResponse:
        return await self._api("handle_delete_topics", request, api.delete_topics_from_pb,
                               api.delete_topics_to_pb, request.timeout_ms)

    @_edge(admin_pb2.CreatePartitionsResponse)
    async def CreatePartitions(
        self, request: admin_pb2.CreatePartitionsRequest, context: Any
    ) -> admin_pb2.CreatePartitionsResponse:
        return await self._api("handle_create_partitions", request,
                               api.create_partitions_from_pb, api.create_partitions_to_pb,
                               request.timeout_ms)

    @_edge(admin_pb2.IncrementalAlterConfigsResponse)
    async def IncrementalAlterConfigs(
        self, request: admin_pb2.IncrementalAlterConfigsRequest, context: Any
    ) -> admin_pb2.IncrementalAlterConfigsResponse:
        return await self._api("handle_incremental_alter_configs", request,
                               api.alter_configs_from_pb, api.alter_configs_to_pb)

    @_edge(admin_pb2.ElectLeadersResponse)
    async def ElectLeaders(
        self, request: admin_pb2.ElectLeadersRequest, context: Any
    ) -> admin_pb2.ElectLeadersResponse:
        return await self._api("handle_elect_leaders", request, api.elect_leaders_from_pb,
                               api.elect_leaders_to_pb, request.timeout_ms)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def add_to_server(servicer: ControllerServicer, server: grpc.aio.Server) -> None:
    controller_pb2_grpc.add_ControllerServicer_to_server(servicer, server)
