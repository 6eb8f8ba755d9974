"""`GroupHandlers`: the bodies of the Broker service's ten group RPCs.

`BrokerServicer` delegates FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
OffsetCommit, OffsetFetch, ListGroups, DescribeGroups and DeleteGroups here with the same
`(request, context)` signature. Each is decode → `GroupRuntime` (the coordinator core) →
encode, with its one try at the edge: a `RafkaError` becomes its code in the response's error
fields (per partition / per group / per member where the response has no top-level code);
anything else is logged with its traceback and answered UNKNOWN_SERVER_ERROR. The member's
client id comes from the `rafka-client-id` call metadata, its host from the peer address.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from cluster.group.messages import (
    CommitPartition,
    Heartbeat,
    JoinGroup,
    LeaveGroup,
    LeavingMember,
    OffsetCommit,
    SyncGroup,
)
from cluster.group_runtime import GroupRuntime
from proto import broker_pb2 as pb
from proto.errors import ErrorCode, RafkaError

log = logging.getLogger(__name__)

CLIENT_ID_METADATA_KEY = "rafka-client-id"
R = TypeVar("R")


def _opt(message: Any, name: str) -> Any:
    return getattr(message, name) if message.HasField(name) else None


def _client(context: Any) -> tuple[str, str]:
    client_id, host = "", ""
    try:
        for key, value in context.invocation_metadata() or ():
            if key == CLIENT_ID_METADATA_KEY:
                client_id = value if isinstance(value, str) else value.decode()
        peer = context.peer() or ""  # "ipv4:127.0.0.1:5555" / "ipv6:[::1]:5555"
        if peer.startswith(("ipv4:", "ipv6:")):
            host = "/" + peer.split(":", 1)[1].rsplit(":", 1)[0].strip("[]")
    except Exception:  # a test context without metadata: leave them empty
        pass
    return client_id, host


class GroupHandlers:
    """The group RPC bodies; see the module docstring."""

    def __init__(self, broker_id: int, runtime: GroupRuntime) -> None:
        self.broker_id = broker_id
        self._runtime = runtime

    def _error(self, rpc: str, exc: Exception) -> RafkaError:
        if isinstance(exc, RafkaError):
            log.debug("[broker %d] %s: %s", self.broker_id, rpc, exc)
            return exc
        log.exception("[broker %d] %s failed", self.broker_id, rpc)
        return RafkaError.for_code(ErrorCode.UNKNOWN_SERVER_ERROR, f"{rpc}: internal error")

    async def _edge(self, rpc: str, body: Callable[[], R | Awaitable[R]],
                    on_error: Callable[[RafkaError], R]) -> R:
        try:
            result = body()
            if isinstance(result, Awaitable):
                return await result
            return result
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the edge: one try per RPC (STYLE §5)
            return on_error(self._error(rpc, exc))

    # -- FindCoordinator --

    async def FindCoordinator(self, request: pb.FindCoordinatorRequest,
                              context: Any) -> pb.FindCoordinatorResponse:
        keys = list(request.coordinator_keys)

        def fail(error: RafkaError) -> pb.FindCoordinatorResponse:
            return pb.FindCoordinatorResponse(coordinators=[
                pb.FindCoordinatorResponse.Coordinator(
                    key=k, node_id=-1, port=-1, error_code=int(error.code),
                    error_message=error.message) for k in keys])

        if request.key_type != pb.COORDINATOR_TYPE_GROUP:
            return fail(RafkaError.for_code(ErrorCode.UNSUPPORTED_VERSION,
                                            "transactions are not supported"))

        async def body() -> pb.FindCoordinatorResponse:
            answers = await self._runtime.find_coordinator(keys)
            return pb.FindCoordinatorResponse(coordinators=[
                pb.FindCoordinatorResponse.Coordinator(
                    key=a.key, node_id=a.node_id, host=a.host, port=a.port,
                    error_code=int(a.error), error_message=a.message) for a in answers])

        return await self._edge("FindCoordinator", body, fail)

    # -- membership --

    async def JoinGroup(self, request: pb.JoinGroupRequest,
                        context: Any) -> pb.JoinGroupResponse:
        client_id, host = _client(context)
        join = JoinGroup(
            group_id=request.group_id, member_id=request.member_id,
            session_timeout_ms=request.session_timeout_ms,
            rebalance_timeout_ms=(request.rebalance_timeout_ms if request.rebalance_timeout_ms > 0
                                  else request.session_timeout_ms),
            protocol_type=request.protocol_type,
            protocols=tuple((p.name, bytes(p.metadata)) for p in request.protocols),
            group_instance_id=_opt(request, "group_instance_id"), client_id=client_id,
            client_host=host, reason=_opt(request, "reason"))

        async def body() -> pb.JoinGroupResponse:
            r = await self._runtime.join(join)
            response = pb.JoinGroupResponse(
                error_code=int(r.error), error_message=r.message, generation_id=r.generation_id,
                leader=r.leader, skip_assignment=r.skip_assignment, member_id=r.member_id)
            if r.protocol_type is not None:
                response.protocol_type = r.protocol_type
            if r.protocol_name is not None:
                response.protocol_name = r.protocol_name
            for m in r.members:
                entry = response.members.add(member_id=m.member_id, metadata=m.metadata)
                if m.group_instance_id is not None:
                    entry.group_instance_id = m.group_instance_id
            return response

        return await self._edge("JoinGroup", body, lambda e: pb.JoinGroupResponse(
            error_code=int(e.code), error_message=e.message, generation_id=-1,
            member_id=request.member_id))

    async def SyncGroup(self, request: pb.SyncGroupRequest,
                        context: Any) -> pb.SyncGroupResponse:
        sync = SyncGroup(
            group_id=request.group_id, generation_id=request.generation_id,
            member_id=request.member_id, group_instance_id=_opt(request, "group_instance_id"),
            protocol_type=_opt(request, "protocol_type"),
            protocol_name=_opt(request, "protocol_name"),
            assignments=tuple((a.member_id, bytes(a.assignment)) for a in request.assignments))

        async def body() -> pb.SyncGroupResponse:
            r = await self._runtime.sync(sync)
            response = pb.SyncGroupResponse(error_code=int(r.error), error_message=r.message,
                                            assignment=r.assignment)
            if r.protocol_type is not None:
                response.protocol_type = r.protocol_type
            if r.protocol_name is not None:
                response.protocol_name = r.protocol_name
            return response

        return await self._edge("SyncGroup", body, lambda e: pb.SyncGroupResponse(
            error_code=int(e.code), error_message=e.message))

    async def Heartbeat(self, request: pb.HeartbeatRequest,
                        context: Any) -> pb.HeartbeatResponse:
        beat = Heartbeat(request.group_id, request.generation_id, request.member_id,
                         _opt(request, "group_instance_id"))

        def body() -> pb.HeartbeatResponse:
            r = self._runtime.heartbeat(beat)
            return pb.HeartbeatResponse(error_code=int(r.error), error_message=r.message)

        return await self._edge("Heartbeat", body, lambda e: pb.HeartbeatResponse(
            error_code=int(e.code), error_message=e.message))

    async def LeaveGroup(self, request: pb.LeaveGroupRequest,
                         context: Any) -> pb.LeaveGroupResponse:
        leave = LeaveGroup(request.group_id, tuple(
            LeavingMember(m.member_id, _opt(m, "group_instance_id"), _opt(m, "reason"))
            for m in request.members))

        async def body() -> pb.LeaveGroupResponse:
            r = await self._runtime.leave(leave)
            response = pb.LeaveGroupResponse(error_code=int(r.error), error_message=r.message)
            for m in r.members:
                entry = response.members.add(member_id=m.member_id, error_code=int(m.error),
                                             error_message=m.message)
                if m.group_instance_id is not None:
                    entry.group_instance_id = m.group_instance_id
            return response

        return await self._edge("LeaveGroup", body, lambda e: pb.LeaveGroupResponse(
            error_code=int(e.code), error_message=e.message))

    # -- offsets --

    async def OffsetCommit(self, request: pb.OffsetCommitRequest,
                           context: Any) -> pb.OffsetCommitResponse:
        commit = OffsetCommit(
            group_id=request.group_id, generation_id=request.generation_id,
            member_id=request.member_id, group_instance_id=_opt(request, "group_instance_id"),
            partitions=tuple(
                CommitPartition(t.name, p.partition_index, p.committed_offset,
                                p.committed_leader_epoch if p.HasField("committed_leader_epoch")
                                else -1, _opt(p, "committed_metadata"))
                for t in request.topics for p in t.partitions))

        def encode(entries: list[tuple[str, int, int, str]]) -> pb.OffsetCommitResponse:
            response = pb.OffsetCommitResponse()
            topics: dict[str, Any] = {}
            for topic, partition, code, message in entries:
                t = topics.get(topic)
                if t is None:
                    t = topics[topic] = response.topics.add(name=topic)
                t.partitions.add(partition_index=partition, error_code=code,
                                 error_message=message)
            return response

        async def body() -> pb.OffsetCommitResponse:
            r = await self._runtime.commit(commit)
            return encode([(p.topic, p.partition, int(p.error), p.message)
                           for p in r.partitions])

        return await self._edge("OffsetCommit", body, lambda e: encode([
            (p.topic, p.partition, int(e.code), e.message) for p in commit.partitions]))

    async def OffsetFetch(self, request: pb.OffsetFetchRequest,
                          context: Any) -> pb.OffsetFetchResponse:
        def body() -> pb.OffsetFetchResponse:
            response = pb.OffsetFetchResponse()
            for g in request.groups:
                wanted = [(t.name, p) for t in g.topics for p in t.partition_indexes] \
                    if len(g.topics) else None
                r = self._runtime.fetch_offsets(g.group_id, wanted)
                group = response.groups.add(group_id=g.group_id, error_code=int(r.error),
                                            error_message=r.message)
                topics: dict[str, Any] = {}
                for o in r.partitions:
                    t = topics.get(o.topic)
                    if t is None:
                        t = topics[o.topic] = group.topics.add(name=o.topic)
                    entry = t.partitions.add(partition_index=o.partition,
                                             committed_offset=o.offset,
                                             error_code=int(o.error))
                    if o.leader_epoch >= 0:
                        entry.committed_leader_epoch = o.leader_epoch
                    if o.metadata is not None:
                        entry.metadata = o.metadata
            return response

        def fail(e: RafkaError) -> pb.OffsetFetchResponse:
            return pb.OffsetFetchResponse(groups=[
                pb.OffsetFetchResponse.OffsetFetchResponseGroup(
                    group_id=g.group_id, error_code=int(e.code), error_message=e.message)
                for g in request.groups])

        return await self._edge("OffsetFetch", body, fail)

    # -- admin --

    async def ListGroups(self, request: pb.ListGroupsRequest,
                         context: Any) -> pb.ListGroupsResponse:
        def body() -> pb.ListGroupsResponse:
            r = self._runtime.list_groups(set(request.states_filter) or None,
                                          set(request.types_filter) or None)
            return pb.ListGroupsResponse(
                error_code=int(r.error), error_message=r.message,
                groups=[pb.ListGroupsResponse.ListedGroup(
                    group_id=g.group_id, protocol_type=g.protocol_type, group_state=g.state,
                    group_type=g.group_type) for g in r.groups])

        return await self._edge("ListGroups", body, lambda e: pb.ListGroupsResponse(
            error_code=int(e.code), error_message=e.message))

    async def DescribeGroups(self, request: pb.DescribeGroupsRequest,
                             context: Any) -> pb.DescribeGroupsResponse:
        def body() -> pb.DescribeGroupsResponse:
            response = pb.DescribeGroupsResponse()
            for group_id in request.groups:
                d = self._runtime.describe(group_id)
                group = response.groups.add(
                    error_code=int(d.error), error_message=d.message, group_id=d.group_id,
                    group_state=d.state, protocol_type=d.protocol_type, protocol_data=d.protocol)
                for m in d.members:
                    entry = group.members.add(member_id=m.member_id, client_id=m.client_id,
                                              client_host=m.client_host,
                                              member_metadata=m.metadata,
                                              member_assignment=m.assignment)
                    if m.group_instance_id is not None:
                        entry.group_instance_id = m.group_instance_id
            return response

        return await self._edge("DescribeGroups", body, lambda e: pb.DescribeGroupsResponse(
            groups=[pb.DescribeGroupsResponse.DescribedGroup(
                group_id=g, error_code=int(e.code), error_message=e.message, group_state="Dead")
                for g in request.groups]))

    async def DeleteGroups(self, request: pb.DeleteGroupsRequest,
                           context: Any) -> pb.DeleteGroupsResponse:
        names = list(request.groups_names)

        async def body() -> pb.DeleteGroupsResponse:
            results = await asyncio.gather(*(self._runtime.delete_group(g) for g in names))
            return pb.DeleteGroupsResponse(results=[
                pb.DeleteGroupsResponse.DeletableGroupResult(
                    group_id=r.group_id, error_code=int(r.error), error_message=r.message)
                for r in results])

        return await self._edge("DeleteGroups", body, lambda e: pb.DeleteGroupsResponse(
            results=[pb.DeleteGroupsResponse.DeletableGroupResult(
                group_id=g, error_code=int(e.code), error_message=e.message) for g in names]))
