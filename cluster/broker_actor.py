"""`BrokerActor`: one broker process as a Ray actor (a plain class; Ray is applied at spawn).

The launcher spawns it with `ray.remote(num_cpus=0, max_restarts=0)(BrokerActor)` named
`broker-<id>` in the cluster's namespace. The constructor only stores configuration;
`start()` builds a `BrokerServer` (cluster/broker_runtime.py), binds, recovers logs, registers
and returns the address; `stop(grace_s)` shuts down in a controlled way. Actor methods are
control plane only (lifecycle, status, chaos hooks); data goes over gRPC. Chaos hooks edit
`proto.fault_transport.FAULTS`, the table every channel and server in the process consults.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from cluster.broker_runtime import BrokerServer
from proto.broker_config import BrokerConfig
from proto.fault_transport import ActorChaosHooks, configure_actor_logging
from proto.metrics_runtime import ActorMetricsHooks
from proto.records import iter_batches

log = logging.getLogger(__name__)


class BrokerActor(ActorChaosHooks, ActorMetricsHooks):
    """A broker as a Ray actor; see the module docstring."""

    def __init__(self, broker_id: int, data_dir: str, *, controllers: dict[int, str],
                 host: str = "127.0.0.1", port: int = 0,
                 config: dict[str, Any] | BrokerConfig | None = None, cluster_id: str = "",
                 log_level: str | None = "INFO") -> None:
        """Store the configuration; nothing starts until `start()`.

        Args:
            broker_id: the broker id (the actor is named `broker-<id>`).
            data_dir: the cluster's data dir (logs under `broker-<id>/`).
            controllers: every controller's id → "host:port".
            host, port: where gRPC binds (a fixed port keeps a restarted broker's address).
            config: broker configs (dotted names) or a resolved BrokerConfig.
            cluster_id: sent with the registration.
            log_level: root logger level in the actor process (None: leave it alone).
        """
        self.broker_id = broker_id
        self.data_dir = data_dir
        self._controllers = dict(controllers)
        self._host = host
        self._port = port
        self._config = config
        self._cluster_id = cluster_id
        self._log_level = log_level
        self._server: BrokerServer | None = None
        self._address: str | None = None
        self._started = False

    async def start(self) -> str:
        """Bind, recover logs, register and serve; returns "host:port"."""
        if self._started and self._address is not None:
            return self._address
        configure_actor_logging(self._log_level)
        os.makedirs(self.data_dir, exist_ok=True)
        config = self._config if isinstance(self._config, BrokerConfig) else \
            BrokerConfig.resolve(self._config or {})
        self._server = BrokerServer(self.broker_id, self.data_dir,
                                    controllers=self._controllers, host=self._host,
                                    port=self._port, config=config, cluster_id=self._cluster_id)
        self._address = await self._server.bind()
        await self._server.start()
        self._started = True
        log.info("[broker %d] actor pid %d serving %s", self.broker_id, os.getpid(),
                 self._address)
        return self._address

    def ready(self) -> bool:
        return self._started

    async def stop(self, grace_s: float = 1.0) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace_s)
        self._started = False

    def status(self) -> dict[str, Any]:
        if self._server is None:
            base: dict[str, Any] = {"broker_id": self.broker_id, "state": "stopped"}
        else:
            base = dict(self._server.status())
        base["pid"] = os.getpid()
        base["address"] = self._address
        return base

    def pid(self) -> int:
        return os.getpid()

    def read_replica(self, topic: str, partition: int) -> dict[str, Any] | None:
        """A chaos hook: this replica's records up to its log end offset, with its high
        watermark, log start offset and role; None when the broker holds no such replica.
        Runs on the actor's event loop, so the log does not move during the read."""
        runtime = self._server.replicas if self._server is not None else None
        part = runtime.manager.get(topic, partition) if runtime is not None else None
        if part is None:
            return None
        plog = part.log
        rows: list[tuple[int, bytes | None, bytes | None, int]] = []
        offset = plog.log_start_offset
        while offset < plog.log_end_offset:
            got = plog.read(offset, 1 << 20)
            if got.first_offset < 0 or got.next_offset <= offset:
                break
            for batch in iter_batches(got.records):
                if batch.is_control:
                    continue
                rows += [(r.offset, r.key, r.value, batch.crc) for r in batch.records()
                         if r.offset >= offset]
            offset = got.next_offset
        return {"records": rows, "high_watermark": part.replica.high_watermark,
                "log_end_offset": plog.log_end_offset,
                "log_start_offset": plog.log_start_offset, "is_leader": part.replica.is_leader,
                "leader_epoch": part.replica.leader_epoch}

    def address(self) -> str | None:
        return self._address
