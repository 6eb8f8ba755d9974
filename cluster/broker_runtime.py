"""`BrokerServer`: the composition of one broker process, without Ray.

Theory of operation
-------------------
One asyncio loop hosts: the `ControllerChannel` to the quorum, `BrokerMetadata` (registration,
heartbeats, metadata log), `AdminHandlers`, the data plane (`LogManager` + `ReplicaManager`
cores inside a `ReplicaRuntime`, which owns the follower fetchers), the group coordinator
(`GroupRuntime` around `cluster/group/`, fed by the same metadata) and a `grpc.aio` server
carrying the `BrokerServicer` with the fault interceptors. `BrokerActor` (Ray) and in-process
tests both host exactly this object.

    server = BrokerServer(broker_id, data_dir, controllers={id: "host:port"})  # stores only
    address = await server.bind()          # port bound, nothing served yet
    await server.start()                   # recover logs, serve, register, follow metadata
    await server.stop(grace_s)             # controlled shutdown, fetchers, logs closed cleanly

Logs live in `<data_dir>/broker-<id>/<topic>-<partition>/`. A restart is a new BrokerServer
with the same id and data dir: logs are recovered (unclean tail truncated) before serving, and
metadata decides every role again.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import grpc

from cluster import broker_metrics
from cluster.admin_handlers import AdminHandlers
from cluster.broker_servicer import BrokerServicer
from cluster.controller_channel_transport import ControllerChannel
from cluster.group_runtime import GroupRuntime
from cluster.group_servicer import GroupHandlers
from cluster.log_manager import LogManager
from cluster.metadata_runtime import BrokerMetadata
from cluster.replica_manager import ReplicaManager
from cluster.replica_runtime import ReplicaRuntime, monotonic_ms
from proto import broker_pb2_grpc
from proto.broker_config import BrokerConfig
from proto.channel_options import GRPC_OPTIONS
from proto.fault_transport import FAULTS, FaultTable, server_interceptors
from proto.metrics_runtime import PeriodicMetrics, start_export
from proto.metrics_transport import server_interceptors as metrics_interceptors

log = logging.getLogger(__name__)

CONTROLLED_SHUTDOWN_TIMEOUT_S = 5.0


class BrokerServer:
    """One broker process's shells around its cores; see the module docstring."""

    def __init__(self, broker_id: int, data_dir: str, *, controllers: dict[int, str],
                 host: str = "127.0.0.1", port: int = 0, config: BrokerConfig | None = None,
                 cluster_id: str = "", faults: FaultTable | None = None) -> None:
        """Store the configuration; nothing starts until `bind()` / `start()`.

        Args:
            broker_id: this broker's id.
            data_dir: the cluster's data dir (logs under `broker-<id>/`).
            controllers: every controller's id → "host:port".
            host, port: where to serve (port 0: an ephemeral port).
            config: resolved broker config (None: defaults).
            cluster_id: sent with the registration.
            faults: fault table (None: the process-wide FAULTS, renamed `broker-<id>`).
        """
        self.broker_id = broker_id
        self.data_dir = data_dir
        self.logs_dir = os.path.join(data_dir, f"broker-{broker_id}")
        self._controllers = dict(controllers)
        self._host = host
        self._port = port
        self.config = config or BrokerConfig.resolve()
        self._cluster_id = cluster_id
        self._own_faults = faults is None
        self._faults = faults if faults is not None else FAULTS
        self._server: grpc.aio.Server | None = None
        self._address: str | None = None
        self._channel: ControllerChannel | None = None
        self.metadata: BrokerMetadata | None = None
        self.replicas: ReplicaRuntime | None = None
        self.groups: GroupRuntime | None = None
        self._metrics: PeriodicMetrics | None = None
        self._servicer: BrokerServicer | None = None
        self._started = False

    @property
    def address(self) -> str | None:
        return self._address

    @property
    def faults(self) -> FaultTable:
        return self._faults

    async def bind(self) -> str:
        """Bind the gRPC port (not serving yet); returns "host:port"."""
        assert self._server is None, "bind() twice"
        if self._own_faults:
            self._faults.local_name = f"broker-{self.broker_id}"
        self._server = grpc.aio.server(
            options=GRPC_OPTIONS,
            interceptors=server_interceptors(self._faults)
            + metrics_interceptors(broker_metrics.node_name(self.broker_id)))
        port = self._server.add_insecure_port(f"{self._host}:{self._port}")
        if port == 0:
            raise OSError(f"could not bind {self._host}:{self._port}")
        self._port = port
        self._address = f"{self._host}:{port}"
        log.info("[broker %d] bound %s", self.broker_id, self._address)
        return self._address

    async def start(self) -> None:
        """Recover logs, serve, register with the controller and follow metadata."""
        if self._server is None:
            await self.bind()
        assert self._server is not None and not self._started, "start() twice"
        self._started = True
        channel = ControllerChannel(self._controllers, local_name=f"broker {self.broker_id}",
                                    faults=self._faults)
        self._channel = channel
        metadata = BrokerMetadata(self.broker_id, endpoint=(self._host, self._port),
                                  channel=channel, config=self.config,
                                  cluster_id=self._cluster_id)
        self.metadata = metadata
        logs = LogManager(self.logs_dir, self.config, broker_id=self.broker_id)
        manager = ReplicaManager(self.broker_id, logs, self.config)
        opened = await asyncio.to_thread(manager.open_existing, monotonic_ms())
        if opened:
            log.info("[broker %d] opened %d existing logs", self.broker_id, len(opened))
        runtime = ReplicaRuntime(manager, channel=channel, metadata=metadata,
                                 config=self.config, faults=self._faults)
        self.replicas = runtime
        admin = AdminHandlers(broker_id=self.broker_id, metadata=metadata, channel=channel,
                              config=self.config)
        groups = GroupRuntime(self.broker_id, replicas=runtime, metadata=metadata,
                              channel=channel, config=self.config)
        self.groups = groups
        self._servicer = BrokerServicer(self.broker_id, runtime, admin,
                                        GroupHandlers(self.broker_id, groups))
        broker_pb2_grpc.add_BrokerServicer_to_server(self._servicer, self._server)
        await self._server.start()
        runtime.start()
        groups.start()
        metadata.add_listener(runtime.on_metadata)
        metadata.add_listener(groups.on_metadata)  # after the replicas: roles are applied
        await metadata.start()
        self._metrics = PeriodicMetrics(
            lambda: broker_metrics.refresh_gauges(self.broker_id, manager),
            name=f"broker-{self.broker_id}-metrics")
        self._metrics.start()
        start_export()
        log.info("[broker %d] started at %s (broker epoch %d)", self.broker_id, self._address,
                 metadata.broker_epoch)

    async def stop(self, grace_s: float = 1.0, *, controlled: bool = True) -> None:
        """Controlled shutdown (leaderships move away), then stop everything and close logs."""
        if self.metadata is not None and controlled:
            try:
                await self.metadata.controlled_shutdown(
                    min(CONTROLLED_SHUTDOWN_TIMEOUT_S, max(grace_s, 0.5) * 5))
            except Exception:  # shutdown continues whatever the controller says
                log.exception("[broker %d] controlled shutdown failed", self.broker_id)
        if self._metrics is not None:
            await self._metrics.stop()
            broker_metrics.forget_gauges(self.broker_id)
        if self.metadata is not None:
            await self.metadata.stop()
        if self.groups is not None:
            await self.groups.stop()
        if self._servicer is not None:
            self._servicer.end_streams()  # followers' streams would hold the server for grace_s
        if self._server is not None:
            await self._server.stop(grace_s)
        if self.replicas is not None:
            await self.replicas.stop()
        if self._channel is not None:
            await self._channel.close()
        log.info("[broker %d] stopped", self.broker_id)

    def status(self) -> dict[str, Any]:
        metadata, runtime = self.metadata, self.replicas
        manager = runtime.manager if runtime is not None else None
        return {
            "broker_id": self.broker_id,
            "address": self._address,
            "broker_epoch": metadata.broker_epoch if metadata else -1,
            "fenced": metadata.fenced if metadata else True,
            "metadata_offset": metadata.metadata_offset if metadata else 0,
            "leaders": manager.leader_count() if manager else 0,
            "followers": manager.follower_count() if manager else 0,
            "under_replicated": manager.under_replicated_count() if manager else 0,
        }
