"""`BrokerServicer`: the Broker gRPC service (data RPCs + delegations to `AdminHandlers`).

Each data method is decode → core (through `ReplicaRuntime`) → encode, with its one `try` at
this edge: a `RafkaError` becomes its code on every partition of the request; anything else is
logged with its traceback and answered UNKNOWN_SERVER_ERROR per partition; serving continues.
ReplicaFetch, a follower's stream of Fetches, and FetchStream, a consumer's, answer each one
through Fetch, in order.
ProduceStream, a producer's stream of Produces, answers each one through Produce as soon as it
completes (tagged with its correlation_id), so an acks=all request waiting for the ISR does not
hold back the ones behind it; the producer bounds how many are open
(max.in.flight.requests.per.connection).
Metadata, CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs,
IncrementalAlterConfigs, ElectLeaders and InitProducerId are one-line delegations to
`AdminHandlers`; the ten group RPCs (FindCoordinator ... DeleteGroups) are one-line delegations
to `GroupHandlers` (cluster/group_servicer.py); a servicer built without one fails them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from cluster.admin_handlers import AdminHandlers
from cluster.broker_metrics import account_fetch, account_produce, node_name
from cluster.group_servicer import GroupHandlers
from cluster.replica_manager import LeaderHint
from cluster.replica_runtime import FetchPartitionSpec, FetchSpec, ReplicaRuntime
from proto import broker_pb2 as pb
from proto import broker_pb2_grpc
from proto.errors import ErrorCode, RafkaError
from proto.metrics_transport import method_metrics

log = logging.getLogger(__name__)


def _error_fields(error: RafkaError | None) -> tuple[int, str]:
    if error is None:
        return ErrorCode.NONE, ""
    return int(error.code), error.message


def _set_leader(target: Any, hint: LeaderHint | None) -> None:
    if hint is not None:
        target.current_leader.leader_id = hint.leader_id
        target.current_leader.leader_epoch = hint.leader_epoch


class BrokerServicer(broker_pb2_grpc.BrokerServicer):
    """See the module docstring."""

    def __init__(self, broker_id: int, runtime: ReplicaRuntime, admin: AdminHandlers,
                 groups: GroupHandlers | None = None) -> None:
        self.broker_id = broker_id
        self._runtime = runtime
        self._admin = admin
        self._groups = groups
        self._streams: set[asyncio.Task[Any]] = set()  # open ReplicaFetch/ProduceStream handlers
        self._stream_produce_metrics = method_metrics(node_name(broker_id), "Produce")
        self._stream_fetch_metrics = method_metrics(node_name(broker_id), "Fetch")

    # -- data plane --

    async def Produce(self, request: pb.ProduceRequest, context: Any) -> pb.ProduceResponse:
        entries = [(t.name, p.partition_index, p.records)
                   for t in request.topics for p in t.partitions]
        try:
            results = await self._runtime.produce(request.acks, request.timeout_ms, entries)
        except Exception as exc:  # the edge: one try per RPC (STYLE §5)
            error = self._unexpected("Produce", exc)
            return self._produce_error(request, error)
        account_produce(self.broker_id, entries, results)
        if request.acks == 0:
            return pb.ProduceResponse()  # Kafka sends nothing for acks=0
        response = pb.ProduceResponse()
        topics: dict[str, pb.ProduceResponse.TopicProduceResponse] = {}
        for (topic, partition, _), r in zip(entries, results):
            t = topics.get(topic)
            if t is None:
                t = topics[topic] = response.topics.add(name=topic)
            code, message = _error_fields(r.error)
            p = t.partitions.add(partition_index=partition, error_code=code,
                                 error_message=message, base_offset=r.base_offset,
                                 log_append_time_ms=r.log_append_time_ms,
                                 log_start_offset=r.log_start_offset)
            _set_leader(p, r.current_leader)
        return response

    async def ProduceStream(self, request_iterator: AsyncIterator[pb.ProduceRequest],
                            context: Any) -> AsyncIterator[pb.ProduceResponse]:
        """A producer's stream of Produces, each answered when done (see the module docstring)."""
        task = asyncio.current_task()
        if task is not None:
            self._streams.add(task)
        answers: asyncio.Queue[pb.ProduceResponse | None] = asyncio.Queue()
        open_requests: set[asyncio.Task[None]] = set()
        metrics = self._stream_produce_metrics

        async def answer(request: pb.ProduceRequest) -> None:
            started = time.perf_counter()
            response = await self.Produce(request, context)
            metrics.done(started, response)
            response.correlation_id = request.correlation_id
            answers.put_nowait(response)

        async def read() -> None:
            try:
                async for request in request_iterator:
                    t = asyncio.get_running_loop().create_task(answer(request))
                    open_requests.add(t)
                    t.add_done_callback(open_requests.discard)
                if open_requests:  # the producer is done writing: answer what it sent
                    await asyncio.gather(*open_requests, return_exceptions=True)
            finally:
                answers.put_nowait(None)

        reader = asyncio.get_running_loop().create_task(read())
        try:
            while (response := await answers.get()) is not None:
                yield response
        finally:
            reader.cancel()
            for t in list(open_requests):
                t.cancel()
            self._streams.discard(task)  # type: ignore[arg-type]

    @staticmethod
    def _produce_error(request: pb.ProduceRequest, error: RafkaError) -> pb.ProduceResponse:
        response = pb.ProduceResponse()
        for t in request.topics:
            rt = response.topics.add(name=t.name)
            for p in t.partitions:
                rt.partitions.add(partition_index=p.partition_index, error_code=int(error.code),
                                  error_message=error.message, base_offset=-1)
        return response

    async def ReplicaFetch(self, request_iterator: AsyncIterator[pb.FetchRequest],
                           context: Any) -> AsyncIterator[pb.FetchResponse]:
        """A follower's fetch stream: each request is a follower Fetch, answered in order."""
        task = asyncio.current_task()
        if task is not None:
            self._streams.add(task)
        metrics = self._stream_fetch_metrics
        try:
            async for request in request_iterator:
                started = time.perf_counter()
                response = await self.Fetch(request, context)
                metrics.done(started, response)
                yield response
        finally:
            self._streams.discard(task)  # type: ignore[arg-type]

    # A consumer's fetch stream is served the same way (Fetch tells the two kinds apart).
    FetchStream = ReplicaFetch

    def end_streams(self) -> None:
        """End every open follower stream, so a stopping server need not wait out its grace."""
        for task in list(self._streams):
            task.cancel()

    async def Fetch(self, request: pb.FetchRequest, context: Any) -> pb.FetchResponse:
        follower = request.HasField("replica_state") and request.replica_state.replica_id >= 0
        spec = FetchSpec(
            partitions=tuple(
                FetchPartitionSpec(
                    t.name, p.partition_index, p.fetch_offset, p.partition_max_bytes,
                    p.current_leader_epoch if p.HasField("current_leader_epoch") else -1,
                    p.last_fetched_epoch if p.HasField("last_fetched_epoch") else -1,
                    p.log_start_offset if p.HasField("log_start_offset") else -1)
                for t in request.topics for p in t.partitions),
            max_wait_ms=request.max_wait_ms, min_bytes=request.min_bytes,
            max_bytes=request.max_bytes,
            replica_id=request.replica_state.replica_id if follower else -1,
            broker_epoch=request.replica_state.replica_epoch if follower else -1,
        )
        try:
            results = await self._runtime.fetch(spec)
        except Exception as exc:  # the edge
            error = self._unexpected("Fetch", exc)
            return pb.FetchResponse(error_code=int(error.code), error_message=error.message)
        account_fetch(self.broker_id, [s.topic for s in spec.partitions], results, follower)
        response = pb.FetchResponse()
        topics: dict[str, pb.FetchResponse.FetchableTopicResponse] = {}
        for s, r in zip(spec.partitions, results):
            t = topics.get(s.topic)
            if t is None:
                t = topics[s.topic] = response.topics.add(name=s.topic)
            code, message = _error_fields(r.error)
            p = t.partitions.add(partition_index=s.partition, error_code=code,
                                 error_message=message, high_watermark=r.high_watermark,
                                 last_stable_offset=r.high_watermark,
                                 log_start_offset=r.log_start_offset, records=bytes(r.records))
            if r.diverging_epoch is not None:
                p.diverging_epoch.epoch = r.diverging_epoch.epoch
                p.diverging_epoch.end_offset = r.diverging_epoch.end_offset
            _set_leader(p, r.current_leader)
        return response

    async def ListOffsets(self, request: pb.ListOffsetsRequest,
                          context: Any) -> pb.ListOffsetsResponse:
        response = pb.ListOffsetsResponse()
        try:
            for t in request.topics:
                rt = response.topics.add(name=t.name)
                for p in t.partitions:
                    epoch = p.current_leader_epoch if p.HasField("current_leader_epoch") else -1
                    r = self._runtime.manager.list_offsets(
                        t.name, p.partition_index, timestamp=p.timestamp,
                        current_leader_epoch=epoch)
                    code, message = _error_fields(r.error)
                    rt.partitions.add(partition_index=p.partition_index, error_code=code,
                                      error_message=message, timestamp=r.timestamp,
                                      offset=r.offset, leader_epoch=r.leader_epoch)
        except Exception as exc:  # the edge
            error = self._unexpected("ListOffsets", exc)
            response = pb.ListOffsetsResponse()
            for t in request.topics:
                rt = response.topics.add(name=t.name)
                for p in t.partitions:
                    rt.partitions.add(partition_index=p.partition_index,
                                      error_code=int(error.code), error_message=error.message,
                                      offset=-1, timestamp=-1, leader_epoch=-1)
        return response

    async def DeleteRecords(self, request: pb.DeleteRecordsRequest,
                            context: Any) -> pb.DeleteRecordsResponse:
        response = pb.DeleteRecordsResponse()
        try:
            entries = [(t.name, p.partition_index, p.offset)
                       for t in request.topics for p in t.partitions]
            results = await self._runtime.delete_records(entries, request.timeout_ms)
            topics: dict[str, pb.DeleteRecordsResponse.DeleteRecordsTopicResult] = {}
            for (topic, partition, _), (error, low) in zip(entries, results):
                rt = topics.get(topic)
                if rt is None:
                    rt = topics[topic] = response.topics.add(name=topic)
                code, message = _error_fields(error)
                rt.partitions.add(partition_index=partition, low_watermark=low,
                                  error_code=code, error_message=message)
        except Exception as exc:  # the edge
            error = self._unexpected("DeleteRecords", exc)
            response = pb.DeleteRecordsResponse()
            for t in request.topics:
                rt = response.topics.add(name=t.name)
                for p in t.partitions:
                    rt.partitions.add(partition_index=p.partition_index, low_watermark=-1,
                                      error_code=int(error.code), error_message=error.message)
        return response

    def _unexpected(self, rpc: str, exc: Exception) -> RafkaError:
        if isinstance(exc, RafkaError):
            log.debug("[broker %d] %s: %s", self.broker_id, rpc, exc)
            return exc
        log.exception("[broker %d] %s failed", self.broker_id, rpc)
        return RafkaError.for_code(ErrorCode.UNKNOWN_SERVER_ERROR, f"{rpc}: internal error")

    # -- delegations to AdminHandlers (A1) --

    async def Metadata(self, request: Any, context: Any) -> Any:
        return await self._admin.Metadata(request, context)

    async def CreateTopics(self, request: Any, context: Any) -> Any:
        return await self._admin.CreateTopics(request, context)

    async def DeleteTopics(self, request: Any, context: Any) -> Any:
        return await self._admin.DeleteTopics(request, context)

    async def CreatePartitions(self, request: Any, context: Any) -> Any:
        return await self._admin.CreatePartitions(request, context)

    async def DescribeConfigs(self, request: Any, context: Any) -> Any:
        return await self._admin.DescribeConfigs(request, context)

    async def IncrementalAlterConfigs(self, request: Any, context: Any) -> Any:
        return await self._admin.IncrementalAlterConfigs(request, context)

    async def ElectLeaders(self, request: Any, context: Any) -> Any:
        return await self._admin.ElectLeaders(request, context)

    async def DescribeQuorum(self, request: Any, context: Any) -> Any:
        return await self._admin.DescribeQuorum(request, context)

    async def InitProducerId(self, request: Any, context: Any) -> Any:
        return await self._admin.InitProducerId(request, context)

    # -- delegations to GroupHandlers (the group coordinator) --

    def _group_handlers(self, context: Any) -> GroupHandlers:
        if self._groups is None:
            raise NotImplementedError("this broker runs without a group coordinator")
        return self._groups

    async def FindCoordinator(self, request: Any, context: Any) -> Any:
        return await self._group_handlers(context).FindCoordinator(request, context)

    async def JoinGroup(self, request: Any, context: Any) -> Any:
        return await self._group_handlers(context).JoinGroup(request, context)

    async def SyncGroup(self, request: Any, context: Any) -> Any:
        return await self._group_handlers(context).SyncGroup(request, context)

    async def Heartbeat(self, request: Any, context: Any) -> Any:
        return await self._group_handlers(context).Heartbeat(request, context)

    async def LeaveGroup(self, request: Any, context: Any) -> Any:
        return await self._group_handlers(context).LeaveGroup(request, context)

    async def OffsetCommit(self, request: Any, context: Any) -> Any:
        return await self._group_handlers(context).OffsetCommit(request, context)

    async def OffsetFetch(self, request: Any, context: Any) -> Any:
        return await self._group_handlers(context).OffsetFetch(request, context)

    async def ListGroups(self, request: Any, context: Any) -> Any:
        return await self._group_handlers(context).ListGroups(request, context)

    async def DescribeGroups(self, request: Any, context: Any) -> Any:
        return await self._group_handlers(context).DescribeGroups(request, context)

    async def DeleteGroups(self, request: Any, context: Any) -> Any:
        return await self._group_handlers(context).DeleteGroups(request, context)
