"""Raft requests to the other voters over gRPC: one channel and stub per peer.

Theory of operation
-------------------
`ControllerTransport.send(msg)` never blocks and never fails: it starts a task that converts
the request to protobuf, makes the unary call (`Vote`, `AppendEntries`, `InstallSnapshot`) with a
short deadline, converts the response back to the core's dataclass and hands it to the
runtime's inbox (`deliver`). A failed, timed-out or refused call is dropped with a DEBUG line:
Raft retries by itself (heartbeats, election timeouts, probes), so the transport must not.

Each peer has a bound on calls in flight (`max_in_flight_per_peer`): a dead or partitioned peer
costs at most that many pending tasks, and sends beyond it are dropped like lost packets.

Channels reconnect with a short backoff (at most one RPC timeout), so a restarted voter is
reachable again within about an election timeout. Every channel carries the fault interceptors
(`proto/fault_transport.py`) under the peer's node name `controller-<id>`, so chaos can cut or
slow any link.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import grpc

from controller import convert
from controller.raft_messages import (
    AppendRequest,
    InstallSnapshotRequest,
    RaftMessage,
    VoteRequest,
)
from controller.raft_runtime import NodeLog
from proto import controller_pb2_grpc
from proto.channel_options import GRPC_OPTIONS, reconnect_options
from proto.errors import ErrorCode
from proto.fault_transport import FaultTable, client_interceptors

log = logging.getLogger(__name__)


def controller_name(node_id: int) -> str:
    """The node name used by fault tables and the `rafka-from` call metadata."""
    return f"controller-{node_id}"


def _reconnect_options(max_backoff_ms: int) -> tuple[tuple[str, int], ...]:
    """Reconnect to a restarted peer within about one election timeout: gRPC's default
    backoff (1 s, growing to 120 s) would keep a returning voter unreachable for far longer
    than Raft needs to notice it."""
    return reconnect_options(100, max_backoff_ms)


class ControllerTransport:
    """Fire-and-forget Raft requests to peer voters; responses go to `deliver`."""

    def __init__(
        self,
        node_id: int,
        peers: dict[int, str],
        deliver: Callable[[RaftMessage], None],
        *,
        cluster_id: str = "",
        rpc_timeout_ms: int = 500,
        max_in_flight_per_peer: int = 32,
        faults: FaultTable | None = None,
    ) -> None:
        """Args:
            node_id: this voter.
            peers: the other voters' ids → "host:port".
            deliver: where responses go (RaftRuntime.deliver).
            rpc_timeout_ms: deadline of each call (about one election timeout).
            max_in_flight_per_peer: sends beyond this many pending calls are dropped.
            faults: the fault table (None: the process-wide FAULTS).
        """
        self._node_id = node_id
        self._deliver = deliver
        self._cluster_id = cluster_id
        self._timeout_s = rpc_timeout_ms / 1000
        self._max_in_flight = max_in_flight_per_peer
        self._log = NodeLog(log, node_id)
        self._channels: dict[int, grpc.aio.Channel] = {}
        self._stubs: dict[int, controller_pb2_grpc.ControllerStub] = {}
        self._in_flight: dict[int, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        for peer, address in sorted(peers.items()):
            assert peer != node_id, "a voter does not call itself"
            channel = grpc.aio.insecure_channel(
                address,
                options=GRPC_OPTIONS + _reconnect_options(rpc_timeout_ms),
                interceptors=client_interceptors(controller_name(peer), address, faults),
            )
            self._channels[peer] = channel
            self._stubs[peer] = controller_pb2_grpc.ControllerStub(channel)
            self._in_flight[peer] = 0

    def send(self, msg: RaftMessage) -> None:
        """Start the call carrying `msg` (a request) to `msg.to_id`; never awaits the peer."""
        peer = msg.to_id
        if self._closed or peer not in self._stubs:
            return
        if self._in_flight[peer] >= self._max_in_flight:
            self._log.debug("%d calls in flight to controller %d: dropped %s",
                            self._in_flight[peer], peer, type(msg).__name__)
            return
        self._in_flight[peer] += 1
        task = asyncio.get_running_loop().create_task(self._call(peer, msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Cancel and await every call in flight, then close the channels."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in self._channels.values()),
                             return_exceptions=True)
        self._log.info("transport closed (%d calls were in flight)", len(tasks))

    async def _call(self, peer: int, msg: RaftMessage) -> None:
        stub = self._stubs[peer]
        try:
            response = await self._rpc(stub, msg)
        except grpc.aio.AioRpcError as exc:
            self._log.debug("%s to controller %d failed: %s", type(msg).__name__, peer,
                            exc.code().name)
            return
        finally:
            self._in_flight[peer] -= 1
        if response is None or self._closed:
            return
        self._deliver(response)

    async def _rpc(self, stub: controller_pb2_grpc.ControllerStub,
                   msg: RaftMessage) -> RaftMessage | None:
        t, cid = self._timeout_s, self._cluster_id
        if isinstance(msg, VoteRequest):
            vote = await stub.Vote(convert.vote_request_to_pb(msg, cid), timeout=t)
            return convert.vote_response_from_pb(vote, msg) if self._ok(vote, msg) else None
        if isinstance(msg, AppendRequest):
            app = await stub.AppendEntries(convert.append_request_to_pb(msg, cid), timeout=t)
            return convert.append_response_from_pb(app, msg) if self._ok(app, msg) else None
        if isinstance(msg, InstallSnapshotRequest):
            snap = await stub.InstallSnapshot(convert.snapshot_request_to_pb(msg, cid),
                                              timeout=max(t, 5.0))
            return convert.snapshot_response_from_pb(snap, msg) if self._ok(snap, msg) else None
        raise AssertionError(f"the transport carries requests only, not {msg!r}")

    def _ok(self, response: Any, msg: RaftMessage) -> bool:
        if response.error_code == ErrorCode.NONE:
            return True
        self._log.warning("controller %d refused %s: %s %s", msg.to_id, type(msg).__name__,
                          ErrorCode(response.error_code).name, response.error_message)
        return False
