"""The client's gRPC shell: one channel per broker, bootstrap, metadata refresh.

`BrokerNetwork` is shared by the producer, consumer and admin engines. It lives on one asyncio
loop (the client's engine thread, or the caller's loop for the asyncio clients): every method
must be called from that loop. Channels use `GRPC_OPTIONS` and the fault-injection interceptors
(`proto.fault_transport.client_interceptors`), named `broker-<id>` once the id is known, so
chaos tests can cut a client off from one broker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import grpc

from clients.errors import KafkaTimeoutError
from clients.metadata import BrokerNode, ClusterMetadata, MetadataSnapshot, TopicMetadata
from clients.types import PartitionInfo
from proto import broker_pb2, broker_pb2_grpc
from proto.channel_options import GRPC_OPTIONS, reconnect_options
from proto.errors import ErrorCode, RafkaError
from proto.fault_transport import client_interceptors

__all__ = ["CLIENT_ID_METADATA_KEY", "BrokerNetwork", "parse_bootstrap", "snapshot_from_response"]

log = logging.getLogger(__name__)

CLIENT_ID_METADATA_KEY = "rafka-client-id"


def parse_bootstrap(servers: str | Sequence[str]) -> list[str]:
    """Split "host:port,host:port" (or a sequence of such strings) into addresses.

    Raises:
        ValueError: no address, or one without a port.
    """
    items = [servers] if isinstance(servers, str) else list(servers)
    addresses: list[str] = []
    for item in items:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            host, sep, port = part.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"bootstrap server {part!r} is not host:port")
            addresses.append(part)
    if not addresses:
        raise ValueError("bootstrap.servers is empty")
    return addresses


def snapshot_from_response(response: broker_pb2.MetadataResponse) -> MetadataSnapshot:
    """Convert a Metadata response into the core's `MetadataSnapshot`."""
    brokers = tuple(
        BrokerNode(b.node_id, b.host, b.port, b.rack if b.HasField("rack") else None)
        for b in response.brokers
    )
    topics = tuple(
        TopicMetadata(
            name=t.name,
            error_code=t.error_code,
            error_message=t.error_message,
            partitions=tuple(
                PartitionInfo(
                    partition=p.partition_index,
                    leader=p.leader_id if p.leader_id >= 0 else None,
                    replicas=tuple(p.replicas),
                    isr=tuple(p.isr),
                    offline_replicas=tuple(p.offline_replicas),
                    leader_epoch=p.leader_epoch,
                )
                for p in t.partitions
            ),
            internal=t.is_internal,
            topic_id=t.topic_id,
        )
        for t in response.topics
    )
    return MetadataSnapshot(brokers, topics, response.cluster_id, response.controller_id)


class BrokerNetwork:
    """gRPC channels to the brokers of one client, and its `ClusterMetadata`.

    Args:
        bootstrap_servers: "host:port,..." (or a sequence) to ask first.
        client_id: sent as the `rafka-client-id` call metadata.
        request_timeout_ms: the deadline of each call (`request.timeout.ms`).
        retry_backoff_ms: pause between rounds over all brokers in `refresh_metadata`.
        reconnect_backoff_ms, reconnect_backoff_max_ms: how soon a channel to a broker that
            went away tries again (`reconnect.backoff.ms`, `reconnect.backoff.max.ms`).
        local_name: this client's name for fault injection, stamped on its calls ("" = the
            process table's name, e.g. `consumer-<member>` in a ConsumerActor).
    """

    def __init__(
        self,
        bootstrap_servers: str | Sequence[str],
        *,
        client_id: str,
        request_timeout_ms: int,
        retry_backoff_ms: int = 100,
        reconnect_backoff_ms: int = 50,
        reconnect_backoff_max_ms: int = 1000,
        local_name: str = "",
    ) -> None:
        self.bootstrap = parse_bootstrap(bootstrap_servers)
        self.client_id = client_id
        self.request_timeout_ms = request_timeout_ms
        self.retry_backoff_ms = retry_backoff_ms
        self._options = GRPC_OPTIONS + reconnect_options(
            reconnect_backoff_ms, reconnect_backoff_max_ms
        )
        self.local_name = local_name
        self.metadata = ClusterMetadata()
        self.call_metadata: tuple[tuple[str, str], ...] = (
            (CLIENT_ID_METADATA_KEY, client_id),
        )
        self._channels: dict[str, tuple[grpc.aio.Channel, broker_pb2_grpc.BrokerStub]] = {}
        self._rotation = 0
        self._closed = False

    # -- channels ---------------------------------------------------------------------------

    def _stub_for(self, address: str, peer: str) -> broker_pb2_grpc.BrokerStub:
        entry = self._channels.get(address)
        if entry is None:
            channel = grpc.aio.insecure_channel(
                address, options=self._options,
                interceptors=client_interceptors(peer, address, local_name=self.local_name),
            )
            entry = (channel, broker_pb2_grpc.BrokerStub(channel))
            self._channels[address] = entry
        return entry[1]

    def stub(self, node_id: int) -> broker_pb2_grpc.BrokerStub:
        """The stub of a broker known from metadata.

        Raises:
            KeyError: the broker is not in the current metadata.
        """
        node = self.metadata.brokers.get(node_id)
        if node is None:
            raise KeyError(f"broker {node_id} is not in the cluster metadata")
        return self._stub_for(node.address, f"broker-{node_id}")

    def _candidates(self) -> list[tuple[str, str]]:
        """(address, peer) to try, live brokers first (rotated), then the bootstrap list."""
        known = [(n.address, f"broker-{n.node_id}") for n in self.metadata.brokers.values()]
        seen = {address for address, _ in known}
        boot = [(address, "") for address in self.bootstrap if address not in seen]
        candidates = known + boot
        if candidates:
            shift = self._rotation % len(candidates)
            candidates = candidates[shift:] + candidates[:shift]
        return candidates

    async def any_stub(self) -> broker_pb2_grpc.BrokerStub:
        """A stub of some broker: a live one from metadata, else a bootstrap address."""
        address, peer = self._candidates()[0]
        return self._stub_for(address, peer)

    def rotate(self) -> None:
        """The last `any_stub` broker failed: start with the next one next time."""
        self._rotation += 1

    @property
    def timeout_s(self) -> float:
        return self.request_timeout_ms / 1000.0

    # -- metadata ---------------------------------------------------------------------------

    async def refresh_metadata(
        self,
        topics: Sequence[str] | None = None,
        *,
        allow_auto_create: bool = False,
        timeout_s: float | None = None,
    ) -> ClusterMetadata:
        """Ask a live broker for metadata and apply it to `self.metadata`.

        Args:
            topics: topics to describe; None = all topics, [] = brokers only.
            allow_auto_create: let the broker create missing topics.
            timeout_s: overall deadline (default request.timeout.ms); brokers are tried in
                turn, with `retry.backoff.ms` between rounds.

        Returns:
            The updated metadata.

        Raises:
            KafkaTimeoutError: no broker answered in time.
        """
        request = broker_pb2.MetadataRequest(
            topics=[broker_pb2.MetadataRequest.MetadataRequestTopic(name=t) for t in topics or ()],
            all_topics=topics is None,
            allow_auto_topic_creation=allow_auto_create,
        )
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        last_error: BaseException | None = None
        while not self._closed:
            for address, peer in self._candidates():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                stub = self._stub_for(address, peer)
                try:
                    response = await stub.Metadata(
                        request, timeout=min(left, self.timeout_s), metadata=self.call_metadata
                    )
                except grpc.aio.AioRpcError as exc:
                    last_error = exc
                    log.debug("metadata from %s failed: %s", address, exc.code())
                    self.rotate()
                    continue
                self.metadata.update(
                    snapshot_from_response(response), int(time.monotonic() * 1000)
                )
                return self.metadata
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await asyncio.sleep(min(self.retry_backoff_ms / 1000.0, left))
        raise KafkaTimeoutError(f"no broker answered a Metadata request: {last_error}")

    @staticmethod
    def error_for(code: int, message: str = "") -> RafkaError:
        """The typed error of a wire code."""
        return RafkaError.for_code(ErrorCode(code), message)

    async def close(self) -> None:
        """Close every channel. Idempotent."""
        self._closed = True
        channels, self._channels = self._channels, {}
        for channel, _ in channels.values():
            await channel.close()
