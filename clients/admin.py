"""The admin clients: `AsyncAdmin` (asyncio core of the façade) and `Admin` (sync, engine thread).

Topic and config changes go to any broker, which forwards them to the active controller and
answers once its own metadata shows the change. Metadata-backed calls (list/describe) are
answered by any broker; `list_offsets` and `delete_records` go to each partition's leader.

Retriable errors (a whole-request error such as REQUEST_TIMED_OUT or NOT_CONTROLLER, an
unreachable broker, or a retriable per-item code) are retried with retry.backoff.ms until
default.api.timeout.ms (or the call's `timeout`), then raise `KafkaTimeoutError`. Batch calls
raise the first per-item error, or with `return_exceptions=True` return {item: None | error}.

Group calls find the group's coordinator with FindCoordinator (any broker) and send to it;
NOT_COORDINATOR / COORDINATOR_NOT_AVAILABLE / COORDINATOR_LOAD_IN_PROGRESS look the
coordinator up again. `describe_quorum` is forwarded by any broker to the active controller.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, TypeVar

import grpc

from clients.config import AdminConfig
from clients.consumer.fetcher import ListedOffset
from clients.consumer.fetcher_runtime import leader_of, list_offsets
from clients.engine_runtime import EngineThread
from clients.errors import ClientClosedError, KafkaTimeoutError
from clients.network_transport import BrokerNetwork
from clients.consumer.protocol import decode_assignment
from clients.types import (
    GroupDescription,
    GroupListing,
    GroupPartitionLag,
    MemberDescription,
    NewTopic,
    OffsetAndMetadata,
    PartitionInfo,
    QuorumInfo,
    QuorumReplica,
    TopicDescription,
    TopicPartition,
)
from proto import admin_pb2, broker_pb2, common_pb2, controller_pb2
from proto.errors import ErrorCode, RafkaError, error_class

__all__ = [
    "Admin",
    "AsyncAdmin",
    "BrokerNode",
    "ClusterDescription",
    "ConfigEntry",
    "ConfigResource",
    "ConfigResourceType",
    "ListedOffset",
]

T = TypeVar("T")
TopicAlreadyExistsError = error_class(ErrorCode.TOPIC_ALREADY_EXISTS)
_OFFSET_SPECS = {"earliest": -2, "latest": -1, "max_timestamp": -3}
# Retriable in general (stale metadata), but final when the controller or coordinator says it
# about the item itself: deleting or growing a topic that does not exist fails at once.
_FINAL_CODES = frozenset({ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.UNKNOWN_TOPIC_ID})


class ConfigResourceType(IntEnum):
    """Kafka's ConfigResource.Type numbers."""

    TOPIC = 2
    BROKER = 4


@dataclass(frozen=True, slots=True)
class ConfigResource:
    """A topic (name) or a broker (id as a string; "" = cluster-wide default)."""

    type: ConfigResourceType
    name: str


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    name: str
    value: str | None
    source: int = 0  # common.proto ConfigSource
    read_only: bool = False
    is_sensitive: bool = False
    is_default: bool = False


@dataclass(frozen=True, slots=True)
class BrokerNode:
    node_id: int
    host: str
    port: int
    rack: str | None = None


@dataclass(frozen=True, slots=True)
class ClusterDescription:
    brokers: tuple[BrokerNode, ...]
    controller_id: int | None
    cluster_id: str
    extra: dict[str, Any] = field(default_factory=dict)


def _now_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class _Retry(Exception):
    """Internal: a retriable failure; the attempt loop sleeps and tries again."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(repr(cause))
        self.cause = cause


def _raise_top_level(resp: Any) -> None:
    if resp.error_code:
        err = RafkaError.for_code(resp.error_code, resp.error_message)
        if err.retriable or resp.error_code == ErrorCode.NOT_CONTROLLER:
            raise _Retry(err)
        raise err


def _finish(results: dict[str, BaseException | None], return_exceptions: bool) -> Any:
    if return_exceptions:
        return results
    for err in results.values():
        if err is not None:
            raise err
    return None


class AsyncAdmin:
    """The asyncio admin client.

    Args:
        config: a dict of Kafka dotted config names.
        **kafka_config: snake_case overrides (`bootstrap_servers="h:p"`, ...).

    Raises:
        ConfigError: an unknown key or a bad value.
    """

    def __init__(self, config: Mapping[str, Any] | None = None, /, **kafka_config: Any) -> None:
        self.config = AdminConfig.resolve(config, **kafka_config)
        self._network: BrokerNetwork | None = None
        self._closed = False

    async def start(self) -> None:
        if self._closed:
            raise ClientClosedError("admin client is closed")
        if self._network is None:
            cfg = self.config
            self._network = BrokerNetwork(
                ",".join(cfg.bootstrap_servers), client_id=cfg.client_id or "rafka-admin",
                request_timeout_ms=cfg.request_timeout_ms, retry_backoff_ms=cfg.retry_backoff_ms,
                reconnect_backoff_ms=cfg.reconnect_backoff_ms,
                reconnect_backoff_max_ms=cfg.reconnect_backoff_max_ms)

    async def close(self) -> None:
        self._closed = True
        if self._network is not None:
            await self._network.close()
            self._network = None

    async def __aenter__(self) -> AsyncAdmin:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _net(self) -> BrokerNetwork:
        if self._network is None:
            await self.start()
        assert self._network is not None
        return self._network

    async def _retrying(self, attempt: Callable[[float], Awaitable[T]],
                        timeout: float | None, what: str) -> T:
        """Run `attempt(rpc_timeout_s)` until it stops raising `_Retry` or time runs out."""
        total_ms = (self.config.default_api_timeout_ms if timeout is None
                    else max(int(timeout * 1000), 1))
        deadline = _now_ms() + total_ms
        while True:
            remaining = deadline - _now_ms()
            rpc_timeout = min(remaining, self.config.request_timeout_ms) / 1000
            try:
                return await attempt(max(rpc_timeout, 0.001))
            except _Retry as exc:
                cause: BaseException = exc.cause
            except grpc.RpcError as exc:
                cause = exc
                if self._network is not None:
                    self._network.rotate()  # try another broker next time
            if _now_ms() + self.config.retry_backoff_ms >= deadline:
                raise KafkaTimeoutError(f"{what} did not succeed within {total_ms} ms: "
                                        f"{cause!r}")
            await asyncio.sleep(self.config.retry_backoff_ms / 1000)

    async def _any(self, rpc: str, request: Any, timeout_s: float) -> Any:
        net = await self._net()
        stub = await net.any_stub()
        return await getattr(stub, rpc)(request, timeout=timeout_s, metadata=net.call_metadata)

    # -- topics --

    async def create_topics(self, topics: Iterable[NewTopic], *, if_not_exists: bool = False,
                            validate_only: bool = False, timeout: float = 30.0,
                            return_exceptions: bool = False) -> Any:
        """Create topics (forwarded to the controller).

        Args:
            topics: what to create.
            if_not_exists: an existing topic is not an error.
            validate_only: check only; nothing is created.
            timeout: seconds for the whole call.
            return_exceptions: return {name: None or error} instead of raising.

        Raises:
            TopicAlreadyExistsError, InvalidPartitionsError, InvalidReplicationFactorError,
            InvalidConfigError, ...: the first per-topic error.
            KafkaTimeoutError: retriable errors outlasted `timeout`.
        """
        todo = {t.name: t for t in topics}
        results: dict[str, BaseException | None] = {}

        async def attempt(rpc_timeout: float) -> None:
            req = admin_pb2.CreateTopicsRequest(
                timeout_ms=int(rpc_timeout * 1000), validate_only=validate_only,
                topics=[_creatable(t) for t in todo.values()])
            resp = await self._any("CreateTopics", req, rpc_timeout)
            _raise_top_level(resp)
            retry: BaseException | None = None
            for r in resp.topics:
                if r.name not in todo:
                    continue
                err = (None if r.error_code == 0
                       else RafkaError.for_code(r.error_code, f"{r.name}: {r.error_message}"))
                if err is not None and err.retriable:
                    retry = err
                    continue
                if isinstance(err, TopicAlreadyExistsError) and if_not_exists:
                    err = None
                results[r.name] = err
                del todo[r.name]
            if todo:
                raise _Retry(retry or RafkaError(f"no result for {sorted(todo)}"))

        await self._retrying(attempt, timeout, "CreateTopics")
        return _finish(results, return_exceptions)

    async def delete_topics(self, names: Iterable[str], *, timeout: float = 30.0,
                            return_exceptions: bool = False) -> Any:
        """Delete topics by name.

        Raises:
            UnknownTopicOrPartitionError: a topic does not exist (first per-topic error).
            KafkaTimeoutError: retriable errors outlasted `timeout`.
        """
        todo = list(dict.fromkeys(names))
        results: dict[str, BaseException | None] = {}

        async def attempt(rpc_timeout: float) -> None:
            req = admin_pb2.DeleteTopicsRequest(
                timeout_ms=int(rpc_timeout * 1000),
                topics=[admin_pb2.DeleteTopicsRequest.DeleteTopicState(name=n) for n in todo])
            resp = await self._any("DeleteTopics", req, rpc_timeout)
            _raise_top_level(resp)
            _collect(resp.topics, todo, results, lambda r: r.name)

        await self._retrying(attempt, timeout, "DeleteTopics")
        return _finish(results, return_exceptions)

    async def create_partitions(self, counts: Mapping[str, int], *, validate_only: bool = False,
                                timeout: float = 30.0, return_exceptions: bool = False) -> Any:
        """Grow topics to `counts[topic]` partitions in total.

        Raises:
            InvalidPartitionsError: a count is not larger than the current one.
            UnknownTopicOrPartitionError: no such topic.
        """
        todo = list(counts)
        results: dict[str, BaseException | None] = {}

        async def attempt(rpc_timeout: float) -> None:
            req = admin_pb2.CreatePartitionsRequest(
                timeout_ms=int(rpc_timeout * 1000), validate_only=validate_only,
                topics=[admin_pb2.CreatePartitionsRequest.CreatePartitionsTopic(
                    name=n, count=counts[n]) for n in todo])
            resp = await self._any("CreatePartitions", req, rpc_timeout)
            _raise_top_level(resp)
            _collect(resp.topics, todo, results, lambda r: r.name)

        await self._retrying(attempt, timeout, "CreatePartitions")
        return _finish(results, return_exceptions)

    async def _metadata(self, names: list[str] | None,
                        timeout: float | None) -> broker_pb2.MetadataResponse:
        async def attempt(rpc_timeout: float) -> broker_pb2.MetadataResponse:
            req = broker_pb2.MetadataRequest(all_topics=names is None)
            for n in names or ():
                req.topics.add(name=n)
            return await self._any("Metadata", req, rpc_timeout)  # type: ignore[no-any-return]

        return await self._retrying(attempt, timeout, "Metadata")

    async def list_topics(self, *, internal: bool = False,
                          timeout: float | None = None) -> list[str]:
        """Topic names, sorted (internal topics such as __consumer_offsets only if asked)."""
        resp = await self._metadata(None, timeout)
        return sorted(t.name for t in resp.topics
                      if t.error_code == 0 and (internal or not t.is_internal))

    async def describe_topics(self, names: Iterable[str] | None = None, *,
                              timeout: float | None = None) -> dict[str, TopicDescription]:
        """Per-partition leader, replicas, isr and offline replicas of each topic.

        Raises:
            UnknownTopicOrPartitionError: a named topic does not exist.
        """
        wanted = None if names is None else list(names)
        resp = await self._metadata(wanted, timeout)
        out: dict[str, TopicDescription] = {}
        for t in resp.topics:
            if t.error_code:
                if wanted is not None:
                    raise RafkaError.for_code(t.error_code, f"{t.name}: {t.error_message}")
                continue
            parts = tuple(sorted(
                (PartitionInfo(
                    partition=p.partition_index,
                    leader=p.leader_id if p.leader_id >= 0 else None,
                    replicas=tuple(p.replicas), isr=tuple(p.isr),
                    offline_replicas=tuple(p.offline_replicas), leader_epoch=p.leader_epoch)
                 for p in t.partitions), key=lambda info: info.partition))
            out[t.name] = TopicDescription(t.name, parts, t.is_internal, t.topic_id or None)
        return dict(sorted(out.items()))

    async def describe_cluster(self, *, timeout: float | None = None) -> ClusterDescription:
        """Live (unfenced) brokers, the active controller id and the cluster id."""
        resp = await self._metadata([], timeout)
        brokers = tuple(sorted(
            (BrokerNode(b.node_id, b.host, b.port, b.rack if b.HasField("rack") else None)
             for b in resp.brokers), key=lambda b: b.node_id))
        controller = resp.controller_id if resp.controller_id >= 0 else None
        return ClusterDescription(brokers, controller, resp.cluster_id)

    async def describe_quorum(self, *, timeout: float | None = None) -> QuorumInfo:
        """The metadata quorum: leader, epoch, high watermark, voters' and observers' progress.

        Raises:
            KafkaTimeoutError: no active controller answered in time.
        """
        async def attempt(rpc_timeout: float) -> controller_pb2.DescribeQuorumResponse:
            resp = await self._any("DescribeQuorum", controller_pb2.DescribeQuorumRequest(),
                                   rpc_timeout)
            _raise_top_level(resp)
            return resp  # type: ignore[no-any-return]

        resp = await self._retrying(attempt, timeout, "DescribeQuorum")
        leader = resp.leader_id if resp.HasField("leader_id") else None
        leader_leo = max((v.log_end_offset for v in resp.voters if v.replica_id == leader),
                         default=resp.high_watermark)

        def replica(r: Any) -> QuorumReplica:
            lag = max(leader_leo - r.log_end_offset, 0) if r.log_end_offset >= 0 else -1
            return QuorumReplica(r.replica_id, r.log_end_offset, lag, r.last_fetch_timestamp,
                                 r.last_caught_up_timestamp)

        return QuorumInfo(leader, resp.term, resp.high_watermark,
                          tuple(replica(v) for v in resp.voters),
                          tuple(replica(o) for o in resp.observers))

    # -- consumer groups --

    async def _node_stub(self, node_id: int, rpc_timeout: float) -> Any:
        """The stub of broker `node_id`; _Retry while it is not in the metadata (fenced)."""
        net = await self._net()
        if node_id not in net.metadata.brokers:
            await net.refresh_metadata([], timeout_s=rpc_timeout)
        try:
            return net.stub(node_id)
        except KeyError as exc:
            raise _Retry(exc) from None

    async def _coordinator(self, group_id: str, rpc_timeout: float) -> tuple[int, Any]:
        """(node id, stub) of the group's coordinator; _Retry while there is none."""
        req = broker_pb2.FindCoordinatorRequest(
            key_type=broker_pb2.COORDINATOR_TYPE_GROUP, coordinator_keys=[group_id])
        resp = await self._any("FindCoordinator", req, rpc_timeout)
        found = next((c for c in resp.coordinators if c.key == group_id), None)
        if found is None:
            raise _Retry(RafkaError(f"FindCoordinator gave no answer for group {group_id!r}"))
        _check_item(found.error_code, f"group {group_id}: {found.error_message}")
        return found.node_id, await self._node_stub(found.node_id, rpc_timeout)

    async def list_consumer_groups(self, *, states: Iterable[str] = (),
                                   timeout: float | None = None) -> list[GroupListing]:
        """Every group of every live broker (each broker lists those it coordinates).

        Args:
            states: only groups in these states (Kafka's names); empty = all.
        """
        state_filter = list(states)

        async def attempt(rpc_timeout: float) -> list[GroupListing]:
            net = await self._net()
            await net.refresh_metadata([], timeout_s=rpc_timeout)
            found: dict[str, GroupListing] = {}
            for node in sorted(net.metadata.brokers):
                resp = await net.stub(node).ListGroups(
                    broker_pb2.ListGroupsRequest(states_filter=state_filter),
                    timeout=rpc_timeout, metadata=net.call_metadata)
                _raise_top_level(resp)
                for g in resp.groups:
                    found[g.group_id] = GroupListing(g.group_id, g.protocol_type,
                                                     g.group_state, node)
            return sorted(found.values(), key=lambda g: g.group_id)

        return await self._retrying(attempt, timeout, "ListGroups")

    async def describe_consumer_groups(self, group_ids: Iterable[str], *,
                                       timeout: float | None = None
                                       ) -> dict[str, GroupDescription]:
        """State, assignor and members (client id, host, decoded assignment) of each group.

        A group the coordinator does not know is reported in state "Dead" with no members,
        as Kafka does.

        Raises:
            RafkaError: a non-retriable per-group error.
        """
        out: dict[str, GroupDescription] = {}
        for group_id in dict.fromkeys(group_ids):
            async def attempt(rpc_timeout: float, group_id: str = group_id) -> GroupDescription:
                node, stub = await self._coordinator(group_id, rpc_timeout)
                resp = await stub.DescribeGroups(
                    broker_pb2.DescribeGroupsRequest(groups=[group_id]), timeout=rpc_timeout,
                    metadata=(await self._net()).call_metadata)
                g = next((g for g in resp.groups if g.group_id == group_id), None)
                if g is None:
                    raise _Retry(RafkaError(f"DescribeGroups gave no answer for {group_id!r}"))
                _check_item(g.error_code, f"group {group_id}: {g.error_message}")
                members = tuple(_member(m, g.protocol_type) for m in g.members)
                return GroupDescription(group_id, g.group_state or "Dead", g.protocol_type,
                                        g.protocol_data, members, node)

            out[group_id] = await self._retrying(attempt, timeout, "DescribeGroups")
        return out

    async def list_consumer_group_offsets(
        self, group_id: str, partitions: Iterable[TopicPartition] | None = None, *,
        timeout: float | None = None,
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        """The group's committed offsets (all, or of `partitions`); uncommitted ones are left
        out.

        Raises:
            RafkaError: a non-retriable group or partition error.
        """
        wanted = None if partitions is None else [TopicPartition(*tp) for tp in partitions]

        async def attempt(rpc_timeout: float) -> dict[TopicPartition, OffsetAndMetadata]:
            _, stub = await self._coordinator(group_id, rpc_timeout)
            req = broker_pb2.OffsetFetchRequest()
            g = req.groups.add(group_id=group_id)
            for topic in dict.fromkeys(tp.topic for tp in wanted or ()):
                g.topics.add(name=topic, partition_indexes=[
                    tp.partition for tp in wanted or () if tp.topic == topic])
            resp = await stub.OffsetFetch(req, timeout=rpc_timeout,
                                          metadata=(await self._net()).call_metadata)
            result: dict[TopicPartition, OffsetAndMetadata] = {}
            for rg in resp.groups:
                if rg.group_id != group_id:
                    continue
                _check_item(rg.error_code, f"group {group_id}: {rg.error_message}")
                for t in rg.topics:
                    for p in t.partitions:
                        tp = TopicPartition(t.name, p.partition_index)
                        _check_item(p.error_code, f"{group_id} {tp}: {p.error_message}")
                        if p.committed_offset >= 0:
                            result[tp] = OffsetAndMetadata(
                                p.committed_offset, p.metadata if p.HasField("metadata") else "",
                                p.committed_leader_epoch
                                if p.HasField("committed_leader_epoch") else None)
            return dict(sorted(result.items()))

        return await self._retrying(attempt, timeout, "OffsetFetch")

    async def alter_consumer_group_offsets(
        self, group_id: str, offsets: Mapping[TopicPartition, int | OffsetAndMetadata], *,
        timeout: float | None = None, return_exceptions: bool = False,
    ) -> Any:
        """Set committed offsets of a group with no active members (a "simple" commit:
        generation -1 and no member id, as Kafka's admin client sends).

        Raises:
            UnknownMemberIdError / RebalanceInProgressError: the group has active members.
            RafkaError: the first per-partition error.
        """
        todo = {TopicPartition(*tp): (o if isinstance(o, OffsetAndMetadata)
                                      else OffsetAndMetadata(int(o)))
                for tp, o in offsets.items()}
        results: dict[TopicPartition, BaseException | None] = {}

        async def attempt(rpc_timeout: float) -> None:
            _, stub = await self._coordinator(group_id, rpc_timeout)
            req = broker_pb2.OffsetCommitRequest(group_id=group_id, generation_id=-1,
                                                 member_id="")
            for topic in dict.fromkeys(tp.topic for tp in todo):
                t = req.topics.add(name=topic)
                for tp, om in todo.items():
                    if tp.topic == topic:
                        p = t.partitions.add(partition_index=tp.partition,
                                             committed_offset=om.offset,
                                             committed_metadata=om.metadata)
                        if om.leader_epoch is not None:
                            p.committed_leader_epoch = om.leader_epoch
            resp = await stub.OffsetCommit(req, timeout=rpc_timeout,
                                           metadata=(await self._net()).call_metadata)
            retry: BaseException | None = None
            for t in resp.topics:
                for p in t.partitions:
                    tp = TopicPartition(t.name, p.partition_index)
                    if tp not in todo:
                        continue
                    err = (None if p.error_code == 0 else
                           RafkaError.for_code(p.error_code, f"{group_id} {tp}: "
                                               f"{p.error_message}"))
                    if err is not None and err.retriable:
                        retry = err
                        continue
                    results[tp] = err
                    del todo[tp]
            if todo:
                raise _Retry(retry or RafkaError(f"no result for {sorted(todo)}"))

        await self._retrying(attempt, timeout, "OffsetCommit")
        return _finish(results, return_exceptions)  # type: ignore[arg-type]

    async def delete_consumer_groups(self, group_ids: Iterable[str], *,
                                     timeout: float | None = None,
                                     return_exceptions: bool = False) -> Any:
        """Delete groups with no members and their committed offsets.

        Raises:
            NonEmptyGroupError: the group has members; GroupIdNotFoundError: no such group.
        """
        results: dict[str, BaseException | None] = {}
        for group_id in dict.fromkeys(group_ids):
            async def attempt(rpc_timeout: float, group_id: str = group_id) -> None:
                _, stub = await self._coordinator(group_id, rpc_timeout)
                resp = await stub.DeleteGroups(
                    broker_pb2.DeleteGroupsRequest(groups_names=[group_id]),
                    timeout=rpc_timeout, metadata=(await self._net()).call_metadata)
                _collect(resp.results, [group_id], results, lambda r: r.group_id)

            try:
                await self._retrying(attempt, timeout, "DeleteGroups")
            except KafkaTimeoutError as exc:
                results[group_id] = exc
        return _finish(results, return_exceptions)

    async def consumer_group_lag(self, group_id: str, *,
                                 timeout: float | None = None) -> list[GroupPartitionLag]:
        """Per partition: committed offset, log end offset (high watermark), lag and owner —
        the partitions the group committed for or its members are assigned, sorted."""
        description = (await self.describe_consumer_groups([group_id], timeout=timeout))[group_id]
        committed = await self.list_consumer_group_offsets(group_id, timeout=timeout)
        tps = set(committed)
        for member in description.members:
            tps.update(member.assignment)
        ends = await self.list_offsets({tp: "latest" for tp in tps}, timeout=timeout) \
            if tps else {}
        rows = []
        for tp in sorted(tps):
            end = ends[tp].offset if tp in ends else -1
            current = committed[tp].offset if tp in committed else None
            lag = None if current is None or end < 0 else max(end - current, 0)
            rows.append(GroupPartitionLag(group_id, tp.topic, tp.partition, current, end, lag,
                                          description.owner_of(tp)))
        return rows

    # -- configs --

    async def describe_configs(self, resources: Iterable[ConfigResource], *,
                               timeout: float | None = None
                               ) -> dict[ConfigResource, dict[str, ConfigEntry]]:
        """Every config of each resource, with its source. A broker's own configs (name = its
        id) are asked of that broker, as Kafka does; topics and the cluster default ("") of
        any broker.

        Raises:
            RafkaError: the first per-resource error (e.g. UNKNOWN_TOPIC_OR_PARTITION).
        """
        by_node: dict[int | None, list[ConfigResource]] = {}
        for r in resources:
            node = int(r.name) if r.type == ConfigResourceType.BROKER and r.name else None
            by_node.setdefault(node, []).append(r)

        async def attempt(rpc_timeout: float) -> list[Any]:
            results: list[Any] = []
            for node, res in by_node.items():
                req = broker_pb2.DescribeConfigsRequest(resources=[
                    broker_pb2.DescribeConfigsRequest.DescribeConfigsResource(
                        resource_type=int(r.type), resource_name=r.name)  # type: ignore[arg-type]
                    for r in res])
                if node is None:
                    resp = await self._any("DescribeConfigs", req, rpc_timeout)
                else:
                    resp = await (await self._node_stub(node, rpc_timeout)).DescribeConfigs(
                        req, timeout=rpc_timeout, metadata=(await self._net()).call_metadata)
                results.extend(resp.results)
            return results

        out: dict[ConfigResource, dict[str, ConfigEntry]] = {}
        for r in await self._retrying(attempt, timeout, "DescribeConfigs"):
            key = ConfigResource(ConfigResourceType(r.resource_type), r.resource_name)
            if r.error_code:
                raise RafkaError.for_code(r.error_code, f"{key.name}: {r.error_message}")
            out[key] = {
                c.name: ConfigEntry(
                    c.name, c.value if c.HasField("value") else None, int(c.config_source),
                    c.read_only, c.is_sensitive,
                    c.config_source == common_pb2.CONFIG_SOURCE_DEFAULT_CONFIG)
                for c in r.configs}
        return out

    async def incremental_alter_configs(
        self, changes: Mapping[ConfigResource, Mapping[str, str | None]], *,
        validate_only: bool = False, timeout: float | None = None,
    ) -> None:
        """Set (a str) or delete (None → back to default) config values.

        Raises:
            InvalidConfigError / UnknownTopicOrPartitionError: the first per-resource error.
        """
        async def attempt(rpc_timeout: float) -> None:
            req = admin_pb2.IncrementalAlterConfigsRequest(validate_only=validate_only)
            for res, entries in changes.items():
                item = req.resources.add(resource_type=int(res.type),  # type: ignore[arg-type]
                                         resource_name=res.name)
                for name, value in entries.items():
                    c = item.configs.add(name=name, config_operation=(
                        common_pb2.ALTER_CONFIG_OP_TYPE_DELETE if value is None
                        else common_pb2.ALTER_CONFIG_OP_TYPE_SET))
                    if value is not None:
                        c.value = str(value)
            resp = await self._any("IncrementalAlterConfigs", req, rpc_timeout)
            _raise_top_level(resp)
            for r in resp.responses:
                if r.error_code:
                    err = RafkaError.for_code(r.error_code,
                                              f"{r.resource_name}: {r.error_message}")
                    if err.retriable:
                        raise _Retry(err)
                    raise err

        await self._retrying(attempt, timeout, "IncrementalAlterConfigs")

    # -- offsets and records --

    async def list_offsets(self, specs: Mapping[TopicPartition, int | str], *,
                           read_committed: bool = False,
                           timeout: float | None = None) -> dict[TopicPartition, ListedOffset]:
        """Offsets per partition: "earliest", "latest" (HW), "max_timestamp", or a timestamp.

        Raises:
            ValueError: an unknown spec.
        """
        timestamps = {}
        for tp, spec in specs.items():
            if isinstance(spec, str):
                if spec not in _OFFSET_SPECS:
                    raise ValueError(f"offset spec {spec!r} is not one of {sorted(_OFFSET_SPECS)}")
                timestamps[TopicPartition(*tp)] = _OFFSET_SPECS[spec]
            else:
                timestamps[TopicPartition(*tp)] = int(spec)
        net = await self._net()
        total = self.config.default_api_timeout_ms if timeout is None else int(timeout * 1000)
        return await list_offsets(net, timestamps, isolation_level=int(read_committed),
                                  timeout_ms=total, retry_backoff_ms=self.config.retry_backoff_ms)

    async def delete_records(self, before: Mapping[TopicPartition, int], *,
                             timeout: float | None = None) -> dict[TopicPartition, int]:
        """Move log start offsets forward (-1 = to the high watermark).

        Returns:
            {tp: new log start offset (low watermark)}.

        Raises:
            OffsetOutOfRangeError: an offset above the high watermark (first error).
        """
        net = await self._net()
        todo = {TopicPartition(*tp): off for tp, off in before.items()}
        done: dict[TopicPartition, int] = {}

        async def attempt(rpc_timeout: float) -> dict[TopicPartition, int]:
            await net.refresh_metadata(sorted({tp.topic for tp in todo}))
            by_node: dict[int, list[TopicPartition]] = {}
            for tp in todo:
                leader = leader_of(net, tp)
                if leader is None:
                    raise _Retry(RafkaError.for_code(ErrorCode.LEADER_NOT_AVAILABLE, str(tp)))
                by_node.setdefault(leader[0], []).append(tp)
            retry: BaseException | None = None
            for node, tps in sorted(by_node.items()):
                req = broker_pb2.DeleteRecordsRequest(timeout_ms=int(rpc_timeout * 1000))
                for topic in dict.fromkeys(tp.topic for tp in tps):
                    t = req.topics.add(name=topic)
                    for tp in tps:
                        if tp.topic == topic:
                            t.partitions.add(partition_index=tp.partition, offset=todo[tp])
                resp = await net.stub(node).DeleteRecords(
                    req, timeout=rpc_timeout, metadata=net.call_metadata)
                for t in resp.topics:
                    for p in t.partitions:
                        tp = TopicPartition(t.name, p.partition_index)
                        if p.error_code:
                            err = RafkaError.for_code(p.error_code, f"{tp}: {p.error_message}")
                            if not err.retriable:
                                raise err
                            retry = err
                        elif tp in todo:
                            done[tp] = p.low_watermark
                            del todo[tp]
            if todo:
                raise _Retry(retry or RafkaError(f"no result for {sorted(todo)}"))
            return done

        return await self._retrying(attempt, timeout, "DeleteRecords")

    async def elect_leaders(self, election_type: str = "preferred",
                            partitions: Iterable[TopicPartition] | None = None, *,
                            timeout: float | None = None
                            ) -> dict[TopicPartition, BaseException | None]:
        """Run preferred or unclean leader election (KIP-460).

        Returns:
            {tp: None if elected, else the error (ELECTION_NOT_NEEDED, ...)}.
        """
        kind = {"preferred": admin_pb2.ELECTION_TYPE_PREFERRED,
                "unclean": admin_pb2.ELECTION_TYPE_UNCLEAN}[election_type]
        tps = None if partitions is None else [TopicPartition(*tp) for tp in partitions]

        async def attempt(rpc_timeout: float) -> dict[TopicPartition, BaseException | None]:
            req = admin_pb2.ElectLeadersRequest(
                election_type=kind, all_topic_partitions=tps is None,
                timeout_ms=int(rpc_timeout * 1000))
            for topic in dict.fromkeys(tp.topic for tp in tps or ()):
                req.topic_partitions.add(topic=topic, partitions=[
                    tp.partition for tp in tps or () if tp.topic == topic])
            resp = await self._any("ElectLeaders", req, rpc_timeout)
            _raise_top_level(resp)
            return {
                TopicPartition(t.name, p.partition_index):
                    None if p.error_code == 0
                    else RafkaError.for_code(p.error_code, p.error_message)
                for t in resp.topics for p in t.partitions}

        return await self._retrying(attempt, timeout, "ElectLeaders")


def _creatable(t: NewTopic) -> admin_pb2.CreateTopicsRequest.CreatableTopic:
    out = admin_pb2.CreateTopicsRequest.CreatableTopic(name=t.name)
    if t.replica_assignment is not None:
        for p, replicas in sorted(t.replica_assignment.items()):
            out.assignments.add(partition_index=p, broker_ids=list(replicas))
    else:
        if t.num_partitions != -1:
            out.num_partitions = t.num_partitions
        if t.replication_factor != -1:
            out.replication_factor = t.replication_factor
    for name, value in (t.config or {}).items():
        out.configs.add(name=name, value=value)
    return out


def _check_item(code: int, message: str) -> None:
    """Raise a group/partition error: _Retry if retriable (coordinator moved, loading...)."""
    if code:
        err = RafkaError.for_code(code, message)
        if err.retriable:
            raise _Retry(err)
        raise err


def _member(m: Any, protocol_type: str) -> MemberDescription:
    partitions: tuple[TopicPartition, ...] = ()
    if protocol_type == "consumer" and m.member_assignment:
        try:
            partitions = tuple(sorted(decode_assignment(m.member_assignment).partitions))
        except RafkaError:
            partitions = ()  # not Kafka's consumer protocol: shown without an assignment
    return MemberDescription(
        m.member_id, m.client_id, m.client_host,
        m.group_instance_id if m.HasField("group_instance_id") else None, partitions)


def _collect(items: Iterable[Any], todo: list[str], results: dict[str, BaseException | None],
             name_of: Callable[[Any], str]) -> None:
    """Record per-item results; raise _Retry while retriable ones remain."""
    retry: BaseException | None = None
    for r in items:
        name = name_of(r)
        if name not in todo:
            continue
        err = (None if r.error_code == 0
               else RafkaError.for_code(r.error_code, f"{name}: {r.error_message}"))
        if err is not None and err.retriable and r.error_code not in _FINAL_CODES:
            retry = err
            continue
        results[name] = err
        todo.remove(name)
    if todo:
        raise _Retry(retry or RafkaError(f"no result for {sorted(todo)}"))


class Admin:
    """The synchronous admin client: an `AsyncAdmin` on a client-owned engine thread.

    Same methods and arguments as `AsyncAdmin`, blocking; see there for Raises.
    """

    def __init__(self, config: Mapping[str, Any] | None = None, /, **kafka_config: Any) -> None:
        self._async = AsyncAdmin(config, **kafka_config)
        self.config = self._async.config
        self._engine = EngineThread("rafka-admin")
        self._closed = False

    def _call(self, coro: Any) -> Any:
        if self._closed:
            coro.close()
            raise ClientClosedError("admin client is closed")
        return self._engine.call(coro, self.config.default_api_timeout_ms / 1000 + 5.0)

    def create_topics(self, topics: Iterable[NewTopic], **kw: Any) -> Any:
        """See `AsyncAdmin.create_topics`."""
        return self._call(self._async.create_topics(list(topics), **kw))

    def delete_topics(self, names: Iterable[str], **kw: Any) -> Any:
        return self._call(self._async.delete_topics(list(names), **kw))

    def create_partitions(self, counts: Mapping[str, int], **kw: Any) -> Any:
        return self._call(self._async.create_partitions(dict(counts), **kw))

    def list_topics(self, **kw: Any) -> list[str]:
        return self._call(self._async.list_topics(**kw))  # type: ignore[no-any-return]

    def describe_topics(self, names: Iterable[str] | None = None,
                        **kw: Any) -> dict[str, TopicDescription]:
        names = None if names is None else list(names)
        return self._call(self._async.describe_topics(names, **kw))  # type: ignore[no-any-return]

    def describe_cluster(self, **kw: Any) -> ClusterDescription:
        return self._call(self._async.describe_cluster(**kw))  # type: ignore[no-any-return]

    def describe_configs(self, resources: Iterable[ConfigResource],
                         **kw: Any) -> dict[ConfigResource, dict[str, ConfigEntry]]:
        return self._call(  # type: ignore[no-any-return]
            self._async.describe_configs(list(resources), **kw))

    def incremental_alter_configs(
        self, changes: Mapping[ConfigResource, Mapping[str, str | None]], **kw: Any
    ) -> None:
        self._call(self._async.incremental_alter_configs(changes, **kw))

    def list_offsets(self, specs: Mapping[TopicPartition, int | str],
                     **kw: Any) -> dict[TopicPartition, ListedOffset]:
        return self._call(self._async.list_offsets(specs, **kw))  # type: ignore[no-any-return]

    def delete_records(self, before: Mapping[TopicPartition, int],
                       **kw: Any) -> dict[TopicPartition, int]:
        return self._call(self._async.delete_records(before, **kw))  # type: ignore[no-any-return]

    def elect_leaders(self, election_type: str = "preferred",
                      partitions: Iterable[TopicPartition] | None = None,
                      **kw: Any) -> dict[TopicPartition, BaseException | None]:
        return self._call(  # type: ignore[no-any-return]
            self._async.elect_leaders(election_type, partitions, **kw))

    def describe_quorum(self, **kw: Any) -> QuorumInfo:
        return self._call(self._async.describe_quorum(**kw))  # type: ignore[no-any-return]

    def list_consumer_groups(self, **kw: Any) -> list[GroupListing]:
        return self._call(self._async.list_consumer_groups(**kw))  # type: ignore[no-any-return]

    def describe_consumer_groups(self, group_ids: Iterable[str],
                                 **kw: Any) -> dict[str, GroupDescription]:
        return self._call(  # type: ignore[no-any-return]
            self._async.describe_consumer_groups(list(group_ids), **kw))

    def list_consumer_group_offsets(self, group_id: str,
                                    partitions: Iterable[TopicPartition] | None = None,
                                    **kw: Any) -> dict[TopicPartition, OffsetAndMetadata]:
        partitions = None if partitions is None else list(partitions)
        return self._call(  # type: ignore[no-any-return]
            self._async.list_consumer_group_offsets(group_id, partitions, **kw))

    def alter_consumer_group_offsets(
        self, group_id: str, offsets: Mapping[TopicPartition, int | OffsetAndMetadata],
        **kw: Any,
    ) -> Any:
        return self._call(self._async.alter_consumer_group_offsets(group_id, dict(offsets), **kw))

    def delete_consumer_groups(self, group_ids: Iterable[str], **kw: Any) -> Any:
        return self._call(self._async.delete_consumer_groups(list(group_ids), **kw))

    def consumer_group_lag(self, group_id: str, **kw: Any) -> list[GroupPartitionLag]:
        return self._call(  # type: ignore[no-any-return]
            self._async.consumer_group_lag(group_id, **kw))

    def close(self) -> None:
        """Close connections and the engine thread (idempotent)."""
        if self._closed:
            return
        try:
            self._call(self._async.close())
        finally:
            self._closed = True
            self._engine.close()

    def __enter__(self) -> Admin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
