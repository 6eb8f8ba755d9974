"""Follower fetchers: one task per source broker, ONE Fetch RPC covering all its partitions.

Theory of operation
-------------------
Kafka's `ReplicaFetcherThread` (num.replica.fetchers = 1). For every broker that leads at least
one partition this broker follows, a task loops:
    entries = source.follower_entries(leader)      # from the ReplicaManager core
    Fetch(replica_state={replica_id, replica_epoch}, max_wait_ms=replica.fetch.wait.max.ms,
          min_bytes, max_bytes, one FetchPartition per entry)   # a long poll at the leader
    source.apply(entry, partition_data) for each entry
An RPC failure sleeps replica.fetch.backoff.ms (bounded here to keep failover quick).
`update(leaders)` starts and stops tasks as metadata moves leaderships. Channels carry the
fault interceptors so chaos hooks can cut a follower off its leader.

With replica.fetch.stream.enable (the default) the Fetches travel over one long-lived
ReplicaFetch stream per source broker instead of one unary call each: the same requests and
responses, one in flight at a time, answered in order by the leader's Fetch path. A stream
message costs about half a unary call on both sides, and an acks=all produce waits for two
follower round trips, so this is most of the produce latency the brokers control. A stream
error, a response that does not come within the long-poll wait plus RPC_MARGIN_S, or a new
leader address closes the stream; the next fetch opens a new one after the usual backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

import grpc

from cluster.replica_manager import FollowerEntry
from proto import broker_pb2, broker_pb2_grpc
from proto.broker_config import BrokerConfig
from proto.channel_options import GRPC_OPTIONS, reconnect_options
from proto.fault_transport import FaultTable, client_interceptors
from proto.stream_transport import OrderedStream, StreamEndedError

log = logging.getLogger(__name__)

RPC_MARGIN_S = 2.0
MAX_ERROR_BACKOFF_S = 0.2
IDLE_WAIT_S = 0.05
# Kafka's broker defaults (reconnect.backoff.ms, reconnect.backoff.max.ms): a restarted
# leader is fetched from again within a second.
_RECONNECT_OPTIONS = reconnect_options(50, 1000)


class FetchSource(Protocol):
    """What a fetcher needs from the replica runtime."""

    def follower_entries(self, leader_id: int) -> list[FollowerEntry]: ...

    def apply_follower_response(self, entry: FollowerEntry,
                                data: broker_pb2.FetchResponse.PartitionData) -> None: ...

    def broker_address(self, broker_id: int) -> str | None: ...


class FetcherManager:
    """The fetcher tasks of one broker; see the module docstring."""

    def __init__(self, broker_id: int, source: FetchSource, *, config: BrokerConfig,
                 broker_epoch: Callable[[], int], faults: FaultTable | None = None) -> None:
        self.broker_id = broker_id
        self._source = source
        self._config = config
        self._broker_epoch = broker_epoch
        self._faults = faults
        self._tasks: dict[int, asyncio.Task[None]] = {}
        # leader -> (address, channel, stub): a BrokerStub registers every method on
        # construction (~35 µs), so it is built once per channel, not once per fetch.
        self._channels: dict[int, tuple[str, grpc.aio.Channel, broker_pb2_grpc.BrokerStub]] = {}
        self._wake = asyncio.Event()

    def update(self, leaders: set[int]) -> None:
        """Run exactly one fetcher per broker in `leaders` (never ourselves)."""
        leaders = {b for b in leaders if b != self.broker_id and b >= 0}
        for leader in sorted(set(self._tasks) - leaders):
            self._tasks.pop(leader).cancel()
        for leader in sorted(leaders - set(self._tasks)):
            self._tasks[leader] = asyncio.get_running_loop().create_task(
                self._run(leader), name=f"fetcher-{self.broker_id}-from-{leader}")
        self._wake.set()

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        channels = [c for _, c, _ in self._channels.values()]
        self._channels.clear()
        await asyncio.gather(*(c.close() for c in channels), return_exceptions=True)

    def _stub(self, leader: int) -> broker_pb2_grpc.BrokerStub | None:
        address = self._source.broker_address(leader)
        if address is None:
            return None
        known = self._channels.get(leader)
        if known is None or known[0] != address:
            if known is not None:
                asyncio.get_running_loop().create_task(known[1].close())
            channel = grpc.aio.insecure_channel(
                address, options=GRPC_OPTIONS + _RECONNECT_OPTIONS,
                interceptors=client_interceptors(f"broker-{leader}", address, self._faults))
            known = (address, channel, broker_pb2_grpc.BrokerStub(channel))
            self._channels[leader] = known
        return known[2]

    async def _run(self, leader: int) -> None:
        log.info("[broker %d] fetcher from broker %d started", self.broker_id, leader)
        stream: OrderedStream | None = None
        try:
            while True:
                entries = self._source.follower_entries(leader)
                stub = self._stub(leader)
                if not entries or stub is None:
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), IDLE_WAIT_S)
                    except asyncio.TimeoutError:
                        pass
                    continue
                request = self._request(entries)
                timeout_s = self._config.replica_fetch_wait_max_ms / 1000 + RPC_MARGIN_S
                try:
                    if not self._config.replica_fetch_stream_enable:
                        response = await stub.Fetch(request, timeout=timeout_s)
                    else:
                        if stream is None or stream.broken or stream.stub is not stub:
                            if stream is not None:
                                stream.close()  # the leader moved to a new address
                            stream = OrderedStream(stub, stub.ReplicaFetch)
                        response = await stream.request(request, timeout_s)
                except (grpc.aio.AioRpcError, TimeoutError, StreamEndedError) as exc:
                    log.debug("[broker %d] fetch from %d failed: %s", self.broker_id, leader,
                              exc.code().name if isinstance(exc, grpc.aio.AioRpcError)
                              else repr(exc))
                    if stream is not None:
                        stream.close()
                        stream = None
                    await asyncio.sleep(min(self._config.replica_fetch_backoff_ms / 1000,
                                            MAX_ERROR_BACKOFF_S))
                    continue
                self._apply(entries, response)
        except asyncio.CancelledError:
            log.info("[broker %d] fetcher from broker %d stopped", self.broker_id, leader)
            raise
        except Exception:
            log.exception("[broker %d] fetcher from broker %d died", self.broker_id, leader)
            raise
        finally:
            if stream is not None:
                stream.close()

    def _request(self, entries: list[FollowerEntry]) -> broker_pb2.FetchRequest:
        request = broker_pb2.FetchRequest(
            max_wait_ms=self._config.replica_fetch_wait_max_ms,
            min_bytes=self._config.replica_fetch_min_bytes,
            max_bytes=self._config.replica_fetch_response_max_bytes,
        )
        request.replica_state.replica_id = self.broker_id
        request.replica_state.replica_epoch = self._broker_epoch()
        topics: dict[str, broker_pb2.FetchRequest.FetchTopic] = {}
        for e in entries:
            topic = topics.get(e.topic)
            if topic is None:
                topic = request.topics.add(name=e.topic, topic_id=e.topic_id)
                topics[e.topic] = topic
            topic.partitions.add(
                partition_index=e.partition,
                current_leader_epoch=e.request.current_leader_epoch,
                fetch_offset=e.request.fetch_offset,
                last_fetched_epoch=e.request.last_fetched_epoch,
                log_start_offset=e.log_start_offset,
                partition_max_bytes=self._config.replica_fetch_max_bytes,
            )
        return request

    def _apply(self, entries: list[FollowerEntry], response: broker_pb2.FetchResponse) -> None:
        by_key = {(t.name, p.partition_index): p for t in response.topics for p in t.partitions}
        for e in entries:
            data = by_key.get((e.topic, e.partition))
            if data is not None:
                self._source.apply_follower_response(e, data)
