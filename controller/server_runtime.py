"""`ControllerServer`: the composition of one controller process, without Ray.

Theory of operation
-------------------
One `ControllerServer` is one quorum voter: on-disk Raft storage under `<data_dir>/raft`, the
`RaftNode` restarted from it, the `RaftRuntime` loop that drives it, the `ControllerTransport`
to the other voters, the `ControlManager` behind a `ControlRuntime`, and a `grpc.aio` server
carrying the `ControllerServicer` (with the fault interceptors). `ControllerActor` (Ray) and the
in-process integration tests both host exactly this object.

Lifecycle (two-phase, because a launcher must learn every address before it can tell each voter
who the others are):

    server = ControllerServer(node_id, data_dir)   # stores config only
    address = await server.bind()                  # port bound, nothing served yet
    await server.start(voters)                     # {id: address} incl. self; serving from here
    ...
    await server.stop(grace_s)                     # every task cancelled and awaited

A restart is a new `ControllerServer` with the same node id and data dir: term, vote, log and
snapshot come back from disk, and the node rejoins as a follower.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from typing import Any

import grpc

from controller import controller_metrics
from controller.control import ControlManager, ControllerConfig
from controller.control_runtime import ControlRuntime
from controller.controller_servicer import ControllerServicer, add_to_server
from controller.controller_transport import ControllerTransport, controller_name
from controller.raft import RaftConfig, RaftNode
from controller.raft_runtime import NodeLog, RaftRuntime, RuntimeConfig, monotonic_ms
from controller.raft_storage import FileStorage
from proto.channel_options import GRPC_OPTIONS
from proto.errors import NotControllerError
from proto.fault_transport import FAULTS, FaultTable, server_interceptors
from proto.metrics_runtime import PeriodicMetrics, start_export
from proto.metrics_transport import server_interceptors as metrics_interceptors
from proto.metadata import MetadataRecord
from proto.metadata_image import MetadataImage

log = logging.getLogger(__name__)


class ControllerServer:
    """One controller process's shells around its cores; see the module docstring."""

    def __init__(
        self,
        node_id: int,
        data_dir: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        config: ControllerConfig | None = None,
        election_timeout_ms: int = 500,
        heartbeat_interval_ms: int = 100,
        seed: int | None = None,
        faults: FaultTable | None = None,
        cluster_id: str = "",
        snapshot_interval_entries: int = 1000,
        rpc_timeout_ms: int | None = None,
        tick_interval_ms: int = 100,
    ) -> None:
        """Store the configuration; nothing starts until `bind()` / `start()`.

        Args:
            node_id: this voter's id.
            data_dir: this controller's directory (Raft state under `raft/`).
            host, port: where to serve (port 0: an ephemeral port).
            config: the ControlManager's config (`controller.control.ControllerConfig`);
                None for its defaults.
            election_timeout_ms: Raft's T (timeouts are random in [T, 2T)).
            heartbeat_interval_ms: the leader's heartbeat period.
            seed: seeds election jitter and the manager's randomness (None: random).
            faults: the fault table for this server's calls (None: the process-wide FAULTS;
                tests with several controllers in one process pass one table each).
            cluster_id: checked on Raft RPCs when set.
            snapshot_interval_entries: applied entries between snapshots.
            rpc_timeout_ms: deadline of Raft calls to peers (default: election_timeout_ms).
            tick_interval_ms: how often the active controller's ControlManager ticks.
        """
        self.node_id = node_id
        self.data_dir = data_dir
        self._host = host
        self._port = port
        self._config = config
        self._election_timeout_ms = election_timeout_ms
        self._heartbeat_interval_ms = heartbeat_interval_ms
        self._seed = seed
        self._faults = faults if faults is not None else FAULTS
        self._cluster_id = cluster_id
        self._snapshot_interval_entries = snapshot_interval_entries
        self._rpc_timeout_ms = rpc_timeout_ms or election_timeout_ms
        self._tick_interval_ms = tick_interval_ms
        self._log = NodeLog(log, node_id)

        self._server: grpc.aio.Server | None = None
        self._address: str | None = None
        self._storage: FileStorage | None = None
        self._raft: RaftRuntime | None = None
        self._control: ControlRuntime | None = None
        self._transport: ControllerTransport | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._metrics: PeriodicMetrics | None = None

    # ---- lifecycle ------------------------------------------------------------------------

    async def bind(self) -> str:
        """Bind the gRPC port (not serving yet).

        Returns:
            "host:port".
        """
        assert self._server is None, "bind() twice"
        self._faults.local_name = controller_name(self.node_id)
        self._server = grpc.aio.server(
            options=GRPC_OPTIONS,
            interceptors=server_interceptors(self._faults)
            + metrics_interceptors(controller_metrics.node_name(self.node_id)),
        )
        port = self._server.add_insecure_port(f"{self._host}:{self._port}")
        if port == 0:
            raise OSError(f"could not bind {self._host}:{self._port}")
        self._address = f"{self._host}:{port}"
        self._log.info("bound %s", self._address)
        return self._address

    async def start(self, voters: dict[int, str]) -> None:
        """Recover from disk, start the Raft loop and serve.

        Args:
            voters: every voter's id → "host:port", this one included.
        """
        assert self._server is not None and self._address is not None, "bind() first"
        assert self._raft is None, "start() twice"
        if self.node_id not in voters:
            raise ValueError(f"node {self.node_id} is not among the voters {sorted(voters)}")
        voters = dict(voters)
        voters[self.node_id] = self._address
        raft_dir = os.path.join(self.data_dir, "raft")
        self._storage = await asyncio.to_thread(FileStorage, raft_dir)
        rng = random.Random(self._seed)
        node = RaftNode.from_storage(
            RaftConfig(
                node_id=self.node_id,
                voters=tuple(sorted(voters)),
                election_timeout_ms=self._election_timeout_ms,
                heartbeat_interval_ms=self._heartbeat_interval_ms,
            ),
            self._storage,
            rng=rng,
            now_ms=monotonic_ms(),
        )
        self._raft = RaftRuntime(
            node,
            self._storage,
            config=RuntimeConfig(snapshot_interval_entries=self._snapshot_interval_entries),
        )
        self._transport = ControllerTransport(
            self.node_id,
            {v: a for v, a in voters.items() if v != self.node_id},
            self._raft.deliver,
            cluster_id=self._cluster_id,
            rpc_timeout_ms=self._rpc_timeout_ms,
            faults=self._faults,
        )
        self._raft.set_transport(self._transport)
        manager = ControlManager(self._config, rng=random.Random(rng.getrandbits(64)))
        self._control = ControlRuntime(
            self._raft, manager, tick_interval_ms=self._tick_interval_ms
        )
        servicer = ControllerServicer(
            self._raft, self._control, voters=voters, cluster_id=self._cluster_id
        )
        add_to_server(servicer, self._server)
        self._run_task = asyncio.get_running_loop().create_task(
            self._raft.run(), name=f"raft-{self.node_id}"
        )
        await self._server.start()
        raft = self._raft
        self._metrics = PeriodicMetrics(
            lambda: controller_metrics.refresh_gauges(self.node_id, raft),
            name=f"controller-{self.node_id}-metrics")
        self._metrics.start()
        start_export()
        self._log.info("serving on %s; voters %s; recovered term %d, commit %d",
                       self._address, voters, node.term, node.commit_index)

    async def stop(self, grace_s: float = 1.0) -> None:
        """Stop the Raft loop, then the server, the transport and the storage."""
        if self._metrics is not None:
            await self._metrics.stop()
            controller_metrics.forget_gauges(self.node_id)
        if self._control is not None:
            await self._control.stop()
        if self._raft is not None:
            await self._raft.stop()
        if self._run_task is not None:
            self._run_task.cancel()
            await asyncio.gather(self._run_task, return_exceptions=True)
            self._run_task = None
        if self._server is not None:
            await self._server.stop(grace_s)
        if self._transport is not None:
            await self._transport.close()
        if self._raft is not None:
            await asyncio.to_thread(self._raft.close)
        if self._storage is not None:
            await asyncio.to_thread(self._storage.close)
            self._storage = None
        self._log.info("stopped")

    # ---- queries and test hooks -----------------------------------------------------------

    @property
    def address(self) -> str | None:
        return self._address

    @property
    def faults(self) -> FaultTable:
        return self._faults

    @property
    def raft(self) -> RaftRuntime:
        assert self._raft is not None, "start() first"
        return self._raft

    @property
    def control(self) -> ControlRuntime:
        assert self._control is not None, "start() first"
        return self._control

    def leader_id(self) -> int | None:
        return self._raft.leader_id if self._raft is not None else None

    def status(self) -> dict[str, Any]:
        """Role, term, leader, commit and applied index, and each voter's progress."""
        if self._raft is None:
            return {"node_id": self.node_id, "address": self._address, "role": "stopped"}
        st = self._raft.quorum_status()
        now = self._raft.now_ms()
        return {
            "node_id": self.node_id,
            "address": self._address,
            "role": st.role.value,
            "active": self._raft.is_active,
            "term": st.term,
            "leader_id": st.leader_id,
            "commit_index": st.commit_index,
            "last_applied": self._raft.applied_index,
            "log_start_index": self._raft.log_start_index,
            "failed": repr(self._raft.failure) if self._raft.failure else None,
            "voters": {
                v.node_id: {
                    "match_index": v.match_index,
                    "last_contact_ms_ago": None if v.last_contact_ms is None
                    else now - v.last_contact_ms,
                }
                for v in st.voters
            },
        }

    def committed_image(self) -> MetadataImage:
        """A copy of the committed metadata image."""
        return self.raft.image.copy()

    async def propose_and_wait(self, records: list[MetadataRecord], timeout_s: float) -> int:
        """Commit `records` as one entry (tests, benches); returns its offset (Raft index).

        Raises:
            NotControllerError: this node is not the leader.
            TimeoutError: not committed within `timeout_s`.
        """
        if self._raft is None:
            raise NotControllerError(f"controller {self.node_id} is not started")
        assert self._control is not None
        return await self._control.propose_records(records, timeout_s)
