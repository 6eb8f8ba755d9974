"""`ControllerActor`: one controller quorum voter hosted in a Ray actor process.

Theory of operation
-------------------
This is a plain class; the launcher applies `ray.remote(...)` at spawn time (STYLE §11), so it
imports and unit-tests without Ray. It is a thin shell around `ControllerServer`
(controller/server.py), which owns the gRPC server, the Raft loop and the active-controller
logic. Every method here is control plane: lifecycle, status and chaos hooks. Metadata never
travels through the Ray object store; brokers and peers use gRPC.

Lifecycle (two-phase, because the launcher must learn every address before any voter starts):

    actor = ControllerActor(node_id, data_dir, **options)   # stores config only
    address = await actor.start()                           # gRPC port bound, not serving
    await actor.start_raft(voters)                          # recover from disk, serve, elect
    ...
    await actor.stop(grace_s)                               # drain; the launcher then kills

A restart is a new actor with the same node id, data dir and port: term, vote, log and snapshot
come back from disk (controller/raft_storage.py).

Chaos hooks (`isolate_from`, `set_link_faults`, `heal`, `faults`) act on this process's
`proto.fault_transport.FAULTS`, the table every Rafka channel and server in the process consults.
Peers are named `controller-<id>` and `broker-<id>`. `pid()` lets chaos SIGSTOP the process.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import MutableMapping
from typing import Any

from controller.server import ControllerServer
from proto.errors import RafkaError
from proto.fault_transport import ActorChaosHooks, configure_actor_logging
from proto.metrics_runtime import ActorMetricsHooks
from proto.metadata import NoOpRecord

log = logging.getLogger(__name__)


class _ActorLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes every line with `[controller N]`."""

    def __init__(self, logger: logging.Logger, node_id: int) -> None:
        super().__init__(logger, {})
        self.node_id = node_id

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        return f"[controller {self.node_id}] {msg}", kwargs


class ControllerActor(ActorChaosHooks, ActorMetricsHooks):
    """A controller quorum voter as a Ray actor; see the module docstring."""

    def __init__(
        self,
        node_id: int,
        data_dir: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        election_timeout_ms: int = 500,
        heartbeat_interval_ms: int = 100,
        snapshot_interval_entries: int = 1000,
        seed: int | None = None,
        config: Any | None = None,
        log_level: str | None = "INFO",
    ) -> None:
        """Store the configuration; nothing starts until `start()`.

        Args:
            node_id: this voter's id (the actor is named `controller-<node_id>`).
            data_dir: this controller's own directory (Raft state lives under it).
            host, port: where gRPC binds (port 0: ephemeral; the launcher passes a fixed port so
                a restarted voter keeps its address).
            election_timeout_ms: Raft's T (timeouts are random in [T, 2T)).
            heartbeat_interval_ms: the leader's heartbeat period.
            snapshot_interval_entries: applied entries between metadata snapshots.
            seed: election jitter seed (None: random).
            config: the ControlManager's config, passed through to ControllerServer.
            log_level: level of the root logger in the actor process (None: leave it alone).
        """
        self.node_id = node_id
        self.data_dir = data_dir
        self._host = host
        self._port = port
        self._election_timeout_ms = election_timeout_ms
        self._heartbeat_interval_ms = heartbeat_interval_ms
        self._snapshot_interval_entries = snapshot_interval_entries
        self._seed = seed
        self._config = config
        self._log_level = log_level
        self._log = _ActorLog(log, node_id)
        self._server: ControllerServer | None = None
        self._address: str | None = None
        self._raft_started = False

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> str:
        """Bind the gRPC port (not serving Raft yet).

        Returns:
            The address "host:port" peers and brokers use.
        """
        if self._address is not None:
            return self._address
        configure_actor_logging(self._log_level)
        os.makedirs(self.data_dir, exist_ok=True)
        self._server = ControllerServer(
            self.node_id,
            self.data_dir,
            host=self._host,
            port=self._port,
            config=self._config,
            election_timeout_ms=self._election_timeout_ms,
            heartbeat_interval_ms=self._heartbeat_interval_ms,
            seed=self._seed,
            snapshot_interval_entries=self._snapshot_interval_entries,
        )
        self._address = await self._server.bind()
        self._log.info("actor pid %d bound %s (data dir %s)", os.getpid(), self._address,
                       self.data_dir)
        return self._address

    async def start_raft(self, voters: dict[int, str]) -> None:
        """Recover from disk and start serving as a voter of `voters` (id → address)."""
        assert self._server is not None, "start() first"
        if self._raft_started:
            return
        # Ray may hand the dict over with its keys intact; normalise anyway (JSON paths give str).
        await self._server.start({int(k): v for k, v in voters.items()})
        self._raft_started = True
        self._log.info("raft started with voters %s", voters)

    def ready(self) -> bool:
        """Cheap liveness probe: True once serving Raft."""
        return self._raft_started

    async def stop(self, grace_s: float = 1.0) -> None:
        """Drain and stop everything this actor runs; the launcher then kills the process."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace_s)
        self._raft_started = False
        self._log.info("actor stopped")

    # ---- queries --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """ControllerServer.status() plus the actor's pid and address (JSON-friendly)."""
        if self._server is None:
            base: dict[str, Any] = {"node_id": self.node_id, "address": self._address,
                                    "role": "stopped"}
        else:
            base = dict(self._server.status())
        base["pid"] = os.getpid()
        base["address"] = self._address
        return base

    def leader_id(self) -> int | None:
        return self._server.leader_id() if self._server is not None else None

    def pid(self) -> int:
        """The actor's process id (chaos pauses it with SIGSTOP / SIGCONT)."""
        return os.getpid()

    def address(self) -> str | None:
        return self._address

    async def propose_noop(self, timeout_s: float = 5.0) -> dict[str, Any]:
        """Commit one NoOpRecord through this controller (tests and benches).

        Returns:
            {"offset": committed offset or None, "elapsed_ms": float, "error": str or None}.
            An error (not the leader, timeout) is returned, not raised, so callers can count it.
        """
        started = time.perf_counter_ns()
        offset: int | None = None
        error: str | None = None
        if self._server is None or not self._raft_started:
            error = f"controller {self.node_id} is not started"
        else:
            try:
                offset = await self._server.propose_and_wait([NoOpRecord()], timeout_s)
            except (RafkaError, TimeoutError) as exc:  # asyncio.TimeoutError is TimeoutError
                error = f"{type(exc).__name__}: {exc}"
        elapsed_ms = (time.perf_counter_ns() - started) / 1e6
        return {"offset": offset, "elapsed_ms": elapsed_ms, "error": error}
