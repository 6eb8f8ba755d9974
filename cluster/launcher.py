"""`LocalCluster` and `rafka cluster up|status|down`: a Rafka cluster as named Ray actors.

Theory of operation
-------------------
A composition root (STYLE §2): it may import every package. Ray gives placement, lifecycle and
discovery; all data moves over gRPC between the actors (DESIGN.md, "Processes and transport").

`LocalCluster` is a context manager:

    with LocalCluster(controllers=3, name="demo") as cluster:
        leader = cluster.wait_for_leader(timeout_s=10)
        cluster.kill_controller(leader)          # ray.kill: immediate process death
        cluster.restart_controller(leader)       # same name, id, data dir and port

`start()`:
1. Ray: reuse the Ray already initialised in this process (tests share one per session), else
   join `address=`, else start a private local instance (`address="local"`, so a `ray start`
   head of someone else on this machine is never joined by accident). Only a Ray this object
   started is shut down by `close()`.
2. Ports: one free 127.0.0.1 port per controller is picked up front and kept for the cluster's
   life. A restarted controller binds the same port, so the voter map {id: address} never
   changes and the other voters need not learn anything (Raft membership is fixed at start).
3. Spawn `ControllerActor` as `controller-<id>` in namespace `rafka-<name>` (`num_cpus=0`,
   `max_restarts=0`; `lifetime="detached"` only for `rafka cluster up`), `start()` all (bind),
   then `start_raft(voters)` all, then wait (with a deadline) for an elected leader.
4. Brokers (after the controller leader exists): one free port per broker picked at first
   start and kept (a restarted broker keeps its address), `BrokerActor` as `broker-<id>` (ids
   1..N, data under `<data-dir>/broker-<id>/`), `start()` all concurrently, then poll each
   broker's `status()` until every one is registered and unfenced.
5. Write `<data-dir>/cluster.json` (name, namespace, controllers, brokers, bootstrap servers,
   Ray address).

`close()` (also on error inside `start()` or the `with` body): `stop(grace_s)` on every actor
with a deadline, then `ray.kill(no_restart=True)`; removes the data dir only if it created it.

The leader, as the launcher sees it (`controller_leader()`): the controller that says it is the
leader at term T, where T is the highest term that a majority of voters agree on (same term,
same leader). A dead leader that followers still remember does not count, nor does a stale
leader cut off in a minority.

Brokers mirror the controller methods: `bootstrap_servers`, `broker_ids`, `broker_addresses`,
`kill_broker(id)` (ray.kill, immediate), `stop_broker(id)` (controlled shutdown, then kill),
`restart_broker(id)` (same id, data dir and port), `broker_status(id)`; `wait_for(predicate)`
polls any condition with a deadline. `broker_config` (Kafka dotted names) goes to every broker;
its heartbeat/session timings also go to the controllers' config unless one is given, since the
controller is the one that fences.

The CLI (`cluster_up`, `cluster_status`, `cluster_down`, called by cluster/cli.py) keeps the
cluster alive after the command exits: detached actors need a Ray instance that outlives the
driver, so without `--address` `cluster up` starts its own head with `ray start --head --block`
in a new session (its own `--temp-dir` and GCS port, so it neither collides with nor becomes the
default for any other Ray on the machine), records the head's pid in cluster.json, and
`cluster down` stops exactly that process group.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import ray
from ray.actor import ActorHandle

from cluster.broker_actor import BrokerActor
from controller.control import ControllerConfig
from controller.controller_actor import ControllerActor

log = logging.getLogger(__name__)

CLUSTER_FILE = "cluster.json"
DEFAULT_DATA_ROOT = ".rafka"  # `rafka cluster up` without --data-dir: ./.rafka/<name>
RAY_HEAD_START_TIMEOUT_S = 60.0
# Ray runs its worker processes at nice 15 (`worker_niceness`), right for batch tasks that should
# yield to the driver. Brokers and controllers are servers: at nice 15 any busy process on the
# machine, the clients included, starves them (CFS weight 36 against 1024) and every request
# waits behind it. Every Ray that Rafka starts runs its actors at nice 0.
RAY_SYSTEM_CONFIG: dict[str, Any] = {"worker_niceness": 0}

Handle = ActorHandle[Any]  # a ControllerActor or BrokerActor handle


def namespace_for(name: str) -> str:
    return f"rafka-{name}"


def controller_actor_name(node_id: int) -> str:
    return f"controller-{node_id}"


def broker_actor_name(broker_id: int) -> str:
    return f"broker-{broker_id}"


def majority_leader(statuses: dict[int, dict[str, Any] | None], voters: int) -> int | None:
    """The leader a majority of `voters` agrees on at the highest such term, or None.

    Args:
        statuses: node id → its `status()` (None when unreachable or dead).
        voters: the voter count (the majority is voters // 2 + 1).
    """
    votes: Counter[tuple[int, int]] = Counter()
    claims: set[tuple[int, int]] = set()
    for node_id, st in statuses.items():
        if not st or st.get("leader_id") is None or st.get("role") == "stopped":
            continue
        key = (int(st["term"]), int(st["leader_id"]))
        votes[key] += 1
        if st.get("role") == "leader" and int(st["leader_id"]) == node_id:
            claims.add(key)
    agreed = [key for key, count in votes.items() if count >= voters // 2 + 1 and key in claims]
    return max(agreed)[1] if agreed else None


def _free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Distinct free TCP ports (held open together so they differ)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _process_gone(pid: int) -> bool:
    """True when `pid` no longer runs on this machine (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return state in ("Z", "X")


def _named_actor(name: str, namespace: str) -> Handle | None:
    try:
        return cast(Handle, ray.get_actor(name, namespace=namespace))
    except ValueError:  # no live actor of that name
        return None


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


@dataclass(slots=True)
class _ControllerSlot:
    node_id: int
    data_dir: str
    port: int
    handle: Handle | None = None
    pid: int | None = None
    address: str = ""
    restarts: int = 0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _BrokerSlot:
    broker_id: int
    port: int
    handle: Handle | None = None
    pid: int | None = None
    restarts: int = 0


def stop_actors(handles: dict[str, Handle], grace_s: float) -> None:
    """Graceful `stop(grace_s)` on all at once with a deadline, then `ray.kill(no_restart=True)`.

    Args:
        handles: actor name (for the log) → handle.
    """
    refs: dict[Any, str] = {}
    for name, handle in handles.items():
        with contextlib.suppress(Exception):
            refs[handle.stop.remote(grace_s)] = name
    if refs:
        done, pending = ray.wait(list(refs), num_returns=len(refs), timeout=grace_s + 5.0)
        for ref in done:
            try:
                ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - dead or failing: it gets killed anyway
                log.warning("%s did not stop gracefully (%s)", refs[ref], type(exc).__name__)
        for ref in pending:
            log.warning("%s did not stop within %.1fs", refs[ref], grace_s + 5.0)
    for handle in handles.values():
        with contextlib.suppress(Exception):
            ray.kill(handle, no_restart=True)


def kill_and_wait(handle: Handle, pid: int | None, *, what: str, timeout_s: float = 10.0) -> None:
    """`ray.kill` an actor and return once its process is gone.

    ray.kill only asks the raylet, which kills the worker a few milliseconds later; a broker
    "killed" at time T must not acknowledge anything after T (chaos histories and the failover
    benchmark take T as the moment of death). A zombie counts as gone.
    """
    ray.kill(handle, no_restart=True)
    if pid is None:
        return
    deadline = time.monotonic() + timeout_s
    while _process_alive(pid):
        if time.monotonic() > deadline:
            log.warning("%s (pid %d) still alive %.0fs after ray.kill", what, pid, timeout_s)
            return
        time.sleep(0.002)


def _process_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel (a zombie then still counts as alive)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return state not in ("Z", "X")


def stop_actor(handle: Handle, grace_s: float, *, what: str) -> None:
    """`stop_actors` for one actor."""
    stop_actors({what: handle}, grace_s)


def _statuses(handles: dict[int, Handle | None],
              timeout_s: float) -> dict[int, dict[str, Any] | None]:
    """`status()` of each actor, asked concurrently; None for dead (no handle) or silent ones."""
    result: dict[int, dict[str, Any] | None] = {i: None for i in handles}
    refs = {handle.status.remote(): i for i, handle in handles.items() if handle is not None}
    if not refs:
        return result
    done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
    for ref in done:
        try:
            result[refs[ref]] = ray.get(ref)
        except Exception:  # noqa: BLE001 - a dead actor answers with an error: None
            result[refs[ref]] = None
    return result


class LocalCluster:
    """Controllers (and, with the broker issue, brokers) as named Ray actors on this machine."""

    def __init__(
        self,
        brokers: int = 3,
        controllers: int = 3,
        data_dir: str | os.PathLike[str] | None = None,
        name: str = "rafka",
        address: str | None = None,
        *,
        election_timeout_ms: int = 500,
        heartbeat_interval_ms: int = 100,
        snapshot_interval_entries: int = 1000,
        controller_config: Any | None = None,
        broker_config: dict[str, Any] | None = None,
        detached: bool = False,
        start_timeout_s: float = 60.0,
        stop_grace_s: float = 1.0,
        log_level: str | None = "INFO",
        seed: int | None = None,
        actor_options: Callable[[str], dict[str, Any]] | None = None,
    ) -> None:
        """Store the configuration; `start()` (or `with`) launches.

        Args:
            brokers: brokers to start (ids 1..brokers).
            controllers: controller quorum voters (odd).
            data_dir: the cluster's directory; None: a temp dir removed on close.
            name: cluster name; the Ray namespace is `rafka-<name>`.
            address: Ray to join ("auto", "host:port"); None: reuse or start a local one.
            election_timeout_ms, heartbeat_interval_ms: Raft timing of every controller.
            snapshot_interval_entries: applied entries between controller snapshots.
            controller_config: ControlManager config passed to every controller; None: a
                ControllerConfig with broker_config's heartbeat/session/min.insync timings.
            broker_config: broker configs (Kafka dotted names) given to every broker.
            detached: actors outlive this driver (`rafka cluster up` only).
            start_timeout_s: deadline for actors to start and a leader to be elected.
            stop_grace_s: graceful stop time per actor before ray.kill.
            log_level: log level inside the actors.
            seed: base seed for election jitter (controller i gets seed + i); None: random.
            actor_options: actor name → extra Ray options (e.g. `resources` pinning an actor
                to a node of a multi-node test cluster: chaos's node loss).
        """
        if controllers < 1 or controllers % 2 == 0:
            raise ValueError(f"controllers must be odd and >= 1, not {controllers}")
        if brokers < 0:
            raise ValueError(f"brokers must be >= 0, not {brokers}")
        self.name = name
        self.namespace = namespace_for(name)
        self.brokers_requested = brokers
        self._address = address
        self._data_dir_arg = Path(data_dir) if data_dir is not None else None
        self._controller_count = controllers
        self._election_timeout_ms = election_timeout_ms
        self._heartbeat_interval_ms = heartbeat_interval_ms
        self._snapshot_interval_entries = snapshot_interval_entries
        self._broker_config = dict(broker_config or {})
        self._controller_config = controller_config or _controller_config_for(self._broker_config)
        self._detached = detached
        self._start_timeout_s = start_timeout_s
        self._stop_grace_s = stop_grace_s
        self._log_level = log_level
        self._seed = seed
        self._actor_options = actor_options

        self.data_dir: Path | None = None
        self._created_data_dir = False
        self._owns_ray = False
        self._controllers: dict[int, _ControllerSlot] = {}
        self._brokers: dict[int, _BrokerSlot] = {}
        self._started = False
        self._closed = False
        self.extra_info: dict[str, Any] = {}  # merged into cluster.json (the CLI's Ray head)

    # ---- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> LocalCluster:
        """Launch everything and wait for a controller leader; on error, tear down and raise."""
        assert not self._started, "start() twice"
        self._started = True
        try:
            self._prepare_data_dir()
            self._init_ray()
            self._start_controllers()
            leader = self.wait_for_leader(self._start_timeout_s)
            if self.brokers_requested:
                self._start_brokers()
            self.write_cluster_file()
            log.info("cluster %s up: controllers %s, leader %d", self.name,
                     self.controller_addresses, leader)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop every actor (graceful, then ray.kill), release Ray and the temp data dir."""
        if self._closed:
            return
        self._closed = True
        # Brokers first (controlled shutdown needs the controllers), then the controllers.
        brokers = {broker_actor_name(b.broker_id): b.handle
                   for b in self._brokers.values() if b.handle is not None}
        for b in self._brokers.values():
            b.handle = None
        stop_actors(brokers, self._stop_grace_s)
        handles = {controller_actor_name(slot.node_id): slot.handle
                   for slot in self._controllers.values() if slot.handle is not None}
        for slot in self._controllers.values():
            slot.handle = None
        stop_actors(handles, self._stop_grace_s)
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
        if self._created_data_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        log.info("cluster %s closed", self.name)

    def detach(self) -> None:
        """Forget the actors without stopping them (`rafka cluster up` leaves them running)."""
        assert self._detached, "only a detached cluster may outlive its driver"
        self._closed = True
        for slot in self._controllers.values():
            slot.handle = None
        for b in self._brokers.values():
            b.handle = None

    @classmethod
    def attach(cls, info: dict[str, Any], *, timeout_s: float = 2.0) -> LocalCluster:
        """The running cluster described by cluster.json `info`, for chaos against it.

        Ray must already be connected to the cluster's Ray (namespace from `info`). Actors are
        found by name; a dead one has no handle (restart_* brings it back with the same id,
        data dir and port), and one that does not answer `pid()` within `timeout_s` (paused)
        has no pid. Call `detach()` when done: `close()` would stop the cluster.
        """
        cluster = cls(brokers=len(info.get("brokers", {})), controllers=len(info["controllers"]),
                      data_dir=info["data_dir"], name=info["name"],
                      election_timeout_ms=int(info.get("election_timeout_ms", 500)),
                      broker_config=info.get("broker_config"),
                      detached=bool(info.get("detached", True)))
        cluster._started = True
        cluster.data_dir = Path(info["data_dir"])
        cluster.extra_info = {k: v for k, v in info.items() if k == "ray_head"}
        for key, address in sorted(info["controllers"].items(), key=lambda kv: int(kv[0])):
            node_id, port = int(key), int(str(address).rsplit(":", 1)[1])
            slot = _ControllerSlot(node_id=node_id, port=port, address=str(address),
                                   data_dir=str(cluster.data_dir / controller_actor_name(node_id)))
            slot.options = cluster._controller_options(node_id, port)
            slot.handle = _named_actor(controller_actor_name(node_id), cluster.namespace)
            cluster._controllers[node_id] = slot
        for key, address in sorted(info.get("brokers", {}).items(), key=lambda kv: int(kv[0])):
            broker_id = int(key)
            cluster._brokers[broker_id] = _BrokerSlot(
                broker_id=broker_id, port=int(str(address).rsplit(":", 1)[1]),
                handle=_named_actor(broker_actor_name(broker_id), cluster.namespace))
        slots: list[_ControllerSlot | _BrokerSlot] = [
            *cluster._controllers.values(), *cluster._brokers.values()]
        refs: dict[Any, _ControllerSlot | _BrokerSlot] = {
            slot.handle.pid.remote(): slot for slot in slots if slot.handle is not None}
        if refs:
            done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
            for ref in done:
                with contextlib.suppress(Exception):
                    refs[ref].pid = int(ray.get(ref))
        return cluster

    def _prepare_data_dir(self) -> None:
        if self._data_dir_arg is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix=f"rafka-{self.name}-"))
            self._created_data_dir = True
        else:
            self.data_dir = self._data_dir_arg.resolve()
            self.data_dir.mkdir(parents=True, exist_ok=True)

    def _init_ray(self) -> None:
        if ray.is_initialized():
            return  # one Ray per process (a test session, the CLI): reuse it, never shut it down
        starts_ray = self._address in (None, "local")  # else: join a Ray that others started
        ray.init(
            address=self._address or "local",
            namespace=self.namespace,
            include_dashboard=False,
            logging_level=logging.WARNING,
            _system_config=RAY_SYSTEM_CONFIG if starts_ray else None,
        )
        self._owns_ray = True

    def _start_controllers(self) -> None:
        assert self.data_dir is not None
        ids = list(range(1, self._controller_count + 1))
        ports = _free_ports(len(ids))
        for node_id, port in zip(ids, ports, strict=True):
            slot = _ControllerSlot(
                node_id=node_id,
                data_dir=str(self.data_dir / controller_actor_name(node_id)),
                port=port,
            )
            slot.options = self._controller_options(node_id, port)
            self._controllers[node_id] = slot
        for slot in self._controllers.values():
            slot.handle = self._spawn(slot)
        self._finish_controller_start()

    def _controller_options(self, node_id: int, port: int) -> dict[str, Any]:
        """The ControllerActor kwargs of one voter (the same at every (re)start)."""
        return {
            "port": port,
            "election_timeout_ms": self._election_timeout_ms,
            "heartbeat_interval_ms": self._heartbeat_interval_ms,
            "snapshot_interval_entries": self._snapshot_interval_entries,
            "seed": None if self._seed is None else self._seed + node_id,
            "config": self._controller_config,
            "log_level": self._log_level,
        }

    def _finish_controller_start(self) -> None:
        starts = {i: s.handle.start.remote() for i, s in self._controllers.items() if s.handle}
        addresses: list[str] = ray.get(list(starts.values()), timeout=self._start_timeout_s)
        for node_id, address in zip(starts, addresses, strict=True):
            self._controllers[node_id].address = address
        pids: list[int] = ray.get(
            [s.handle.pid.remote() for s in self._controllers.values() if s.handle],
            timeout=self._start_timeout_s,
        )
        for slot, pid in zip(self._controllers.values(), pids, strict=True):
            slot.pid = pid
        voters = self.controller_addresses
        ray.get([s.handle.start_raft.remote(voters)
                 for s in self._controllers.values() if s.handle],
                timeout=self._start_timeout_s)

    def _spawn(self, slot: _ControllerSlot) -> Handle:
        options: dict[str, Any] = {
            "name": controller_actor_name(slot.node_id),
            "namespace": self.namespace,
            "num_cpus": 0,
            "max_restarts": 0,
        }
        if self._detached:
            options["lifetime"] = "detached"
        if self._actor_options is not None:
            options.update(self._actor_options(str(options["name"])))
        cls = ray.remote(ControllerActor)
        deadline = time.monotonic() + 10.0
        while True:
            try:
                return cast(Handle, cls.options(**options).remote(
                    slot.node_id, slot.data_dir, **slot.options))
            except ValueError:  # the name of a just-killed actor may take a moment to free
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    # ---- controllers ----------------------------------------------------------------------

    @property
    def controller_ids(self) -> list[int]:
        return sorted(self._controllers)

    @property
    def controller_addresses(self) -> dict[int, str]:
        """id → "host:port" of every voter (fixed for the cluster's life)."""
        return {i: f"127.0.0.1:{s.port}" for i, s in sorted(self._controllers.items())}

    @property
    def election_timeout_ms(self) -> int:
        return self._election_timeout_ms

    def controller_handle(self, node_id: int) -> Handle:
        handle = self._controllers[node_id].handle
        if handle is None:
            raise LookupError(f"controller {node_id} is not running")
        return handle

    def live_controller_ids(self) -> list[int]:
        return [i for i, s in sorted(self._controllers.items()) if s.handle is not None]

    def controller_status(self, node_id: int, timeout_s: float = 5.0) -> dict[str, Any] | None:
        """The controller's `status()`, or None if it is dead or does not answer in time."""
        return self.controller_statuses(timeout_s, ids=[node_id])[node_id]

    def controller_statuses(
        self, timeout_s: float = 5.0, ids: Iterable[int] | None = None
    ) -> dict[int, dict[str, Any] | None]:
        """`status()` of each controller, asked concurrently; None for dead or silent ones."""
        wanted = sorted(ids) if ids is not None else self.controller_ids
        return _statuses({i: self._controllers[i].handle for i in wanted}, timeout_s)

    def controller_leader(self, timeout_s: float = 2.0) -> int | None:
        """The elected leader a majority agrees on (see the module docstring), or None."""
        return majority_leader(self.controller_statuses(timeout_s), self._controller_count)

    def wait_for_leader(
        self, timeout_s: float | None = None, *, exclude: Iterable[int] = (),
        poll_s: float = 0.05,
    ) -> int:
        """Poll until a leader (not in `exclude`) is elected; returns its id.

        Raises:
            TimeoutError: no such leader within `timeout_s` (default: start_timeout_s).
        """
        excluded = set(exclude)
        limit = self._start_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + limit
        while True:
            leader = self.controller_leader()
            if leader is not None and leader not in excluded:
                return leader
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"no controller leader (excluding {sorted(excluded)}) after {limit}s: "
                    f"{self.controller_statuses(1.0)}"
                )
            time.sleep(poll_s)

    def controller_pid(self, node_id: int) -> int | None:
        """The pid of the controller's current process (None: not known)."""
        return self._controllers[node_id].pid

    def kill_controller(self, node_id: int) -> None:
        """Kill the controller's process at once (ray.kill: no graceful stop, no atexit)."""
        slot = self._controllers[node_id]
        handle, slot.handle = slot.handle, None
        if handle is None:
            raise LookupError(f"controller {node_id} is not running")
        kill_and_wait(handle, slot.pid, what=controller_actor_name(node_id))
        log.info("cluster %s: killed controller %d (pid %s)", self.name, node_id, slot.pid)

    def stop_controller(self, node_id: int) -> None:
        """Stop the controller gracefully, then kill its actor."""
        slot = self._controllers[node_id]
        handle, slot.handle = slot.handle, None
        if handle is not None:
            stop_actor(handle, self._stop_grace_s, what=controller_actor_name(node_id))

    def restart_controller(self, node_id: int, timeout_s: float = 30.0) -> None:
        """Start a new actor with the same name, id, data dir and port (kill the old first).

        Returns once the new voter serves Raft; it then catches up from the leader.
        """
        slot = self._controllers[node_id]
        if slot.handle is not None:
            self.kill_controller(node_id)
        deadline = time.monotonic() + timeout_s
        # The old process must be gone before its port is bound again (gRPC sets SO_REUSEPORT,
        # so a bind could otherwise succeed while the dying process still accepts calls).
        while slot.pid is not None and not _process_gone(slot.pid):
            if time.monotonic() > deadline:
                raise TimeoutError(f"controller {node_id} (pid {slot.pid}) did not exit")
            time.sleep(0.02)
        handle = self._spawn(slot)
        slot.handle = handle
        slot.restarts += 1
        remaining = max(1.0, deadline - time.monotonic())
        address = cast(str, ray.get(handle.start.remote(), timeout=remaining))
        assert address == self.controller_addresses[node_id], (address, node_id)
        slot.pid = cast(int, ray.get(handle.pid.remote(), timeout=remaining))
        ray.get(handle.start_raft.remote(self.controller_addresses), timeout=remaining)
        log.info("cluster %s: restarted controller %d (pid %d)", self.name, node_id, slot.pid)

    def propose_noop(self, node_id: int | None = None, timeout_s: float = 5.0) -> dict[str, Any]:
        """Commit a NoOpRecord via `node_id` (default: the current leader); see the actor."""
        target = node_id if node_id is not None else self.controller_leader()
        if target is None:
            return {"offset": None, "elapsed_ms": 0.0, "error": "no controller leader"}
        return dict(ray.get(self.controller_handle(target).propose_noop.remote(timeout_s),
                            timeout=timeout_s + 10.0))

    # ---- network faults (the chaos issue builds on these) --------------------------------

    def isolate_controller(self, node_id: int) -> None:
        """Cut `node_id` off from every other controller, on both sides of each link."""
        others = [i for i in self.controller_ids if i != node_id]
        refs = [self.controller_handle(node_id).isolate_from.remote(
            [controller_actor_name(i) for i in others])]
        for other in others:
            handle = self._controllers[other].handle
            if handle is not None:
                refs.append(handle.isolate_from.remote([controller_actor_name(node_id)]))
        ray.get(refs, timeout=10.0)

    def heal_network(self) -> None:
        """Clear every link fault on every live controller."""
        ray.get([self.controller_handle(i).heal.remote() for i in self.live_controller_ids()],
                timeout=10.0)

    # ---- brokers --------------------------------------------------------------------------

    def _start_brokers(self) -> None:
        ids = list(range(1, self.brokers_requested + 1))
        ports = _free_ports(len(ids))
        for broker_id, port in zip(ids, ports, strict=True):
            self._brokers[broker_id] = _BrokerSlot(broker_id=broker_id, port=port)
        for slot in self._brokers.values():
            slot.handle = self._spawn_broker(slot)
        starts = [s.handle.start.remote() for s in self._brokers.values() if s.handle]
        ray.get(starts, timeout=self._start_timeout_s)
        pids: list[int] = ray.get(
            [s.handle.pid.remote() for s in self._brokers.values() if s.handle],
                       timeout=self._start_timeout_s)
        for slot, pid in zip(self._brokers.values(), pids, strict=True):
            slot.pid = pid
        self.wait_for_brokers_unfenced(ids, self._start_timeout_s)

    def _spawn_broker(self, slot: _BrokerSlot) -> Handle:
        assert self.data_dir is not None
        options: dict[str, Any] = {
            "name": broker_actor_name(slot.broker_id),
            "namespace": self.namespace,
            "num_cpus": 0,
            "max_restarts": 0,
        }
        if self._detached:
            options["lifetime"] = "detached"
        if self._actor_options is not None:
            options.update(self._actor_options(str(options["name"])))
        cls = ray.remote(BrokerActor)
        deadline = time.monotonic() + 10.0
        while True:
            try:
                return cast(Handle, cls.options(**options).remote(
                    slot.broker_id, str(self.data_dir), controllers=self.controller_addresses,
                    port=slot.port, config=dict(self._broker_config), cluster_id=self.name,
                    log_level=self._log_level))
            except ValueError:  # the name of a just-killed actor may take a moment to free
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @property
    def broker_ids(self) -> list[int]:
        return sorted(self._brokers)

    @property
    def broker_addresses(self) -> dict[int, str]:
        """id → "host:port" of every broker (fixed for the cluster's life)."""
        return {i: f"127.0.0.1:{s.port}" for i, s in sorted(self._brokers.items())}

    @property
    def bootstrap_servers(self) -> str:
        """"host:port,host:port,..." of every broker, for the clients."""
        return ",".join(self.broker_addresses.values())

    @property
    def broker_config(self) -> dict[str, Any]:
        return dict(self._broker_config)

    def broker_data_dir(self, broker_id: int) -> Path:
        assert self.data_dir is not None
        return self.data_dir / broker_actor_name(broker_id)

    def broker_handle(self, broker_id: int) -> Handle:
        handle = self._brokers[broker_id].handle
        if handle is None:
            raise LookupError(f"broker {broker_id} is not running")
        return handle

    def live_broker_ids(self) -> list[int]:
        return [i for i, s in sorted(self._brokers.items()) if s.handle is not None]

    def broker_status(self, broker_id: int, timeout_s: float = 5.0) -> dict[str, Any] | None:
        """The broker's `status()`, or None if it is dead or does not answer in time."""
        return self.broker_statuses(timeout_s, ids=[broker_id])[broker_id]

    def broker_statuses(
        self, timeout_s: float = 5.0, ids: Iterable[int] | None = None
    ) -> dict[int, dict[str, Any] | None]:
        """`status()` of each broker, asked concurrently; None for dead or silent ones."""
        wanted = sorted(ids) if ids is not None else self.broker_ids
        return _statuses({i: self._brokers[i].handle for i in wanted}, timeout_s)

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float, *, what: str = "condition",
                 poll_s: float = 0.05) -> None:
        """Poll `predicate` until it is true; TimeoutError after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not true after {timeout_s}s")
            time.sleep(poll_s)

    def wait_for_brokers_unfenced(self, ids: Iterable[int] | None = None,
                                  timeout_s: float = 30.0) -> None:
        """Poll until every broker in `ids` (default: all live) is registered and unfenced."""
        wanted = sorted(ids) if ids is not None else self.live_broker_ids()

        def ready() -> bool:
            statuses = self.broker_statuses(2.0, ids=wanted)
            return all(st is not None and not st.get("fenced", True)
                       and int(st.get("broker_epoch", -1)) >= 0 for st in statuses.values())

        try:
            self.wait_for(ready, timeout_s, what=f"brokers {wanted} registered and unfenced")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}: {self.broker_statuses(1.0, ids=wanted)}") from None

    def broker_pid(self, broker_id: int) -> int | None:
        """The pid of the broker's current process (None: not known)."""
        return self._brokers[broker_id].pid

    def kill_broker(self, broker_id: int) -> None:
        """Kill the broker's process at once (ray.kill: no controlled shutdown, no atexit)."""
        slot = self._brokers[broker_id]
        handle, slot.handle = slot.handle, None
        if handle is None:
            raise LookupError(f"broker {broker_id} is not running")
        kill_and_wait(handle, slot.pid, what=broker_actor_name(broker_id))
        log.info("cluster %s: killed broker %d (pid %s)", self.name, broker_id, slot.pid)

    def stop_broker(self, broker_id: int) -> None:
        """Controlled shutdown (leaderships move away), then kill its actor."""
        slot = self._brokers[broker_id]
        handle, slot.handle = slot.handle, None
        if handle is not None:
            stop_actor(handle, self._stop_grace_s, what=broker_actor_name(broker_id))

    def restart_broker(self, broker_id: int, timeout_s: float = 30.0, *,
                       wait_unfenced: bool = True) -> None:
        """A new actor with the same id, data dir and port (the old one is killed first).

        Returns once it serves (and, by default, once it is registered and unfenced); it then
        recovers its logs, truncates any divergent suffix and catches up from the leaders.
        """
        slot = self._brokers[broker_id]
        if slot.handle is not None:
            self.kill_broker(broker_id)
        deadline = time.monotonic() + timeout_s
        while slot.pid is not None and not _process_gone(slot.pid):
            if time.monotonic() > deadline:
                raise TimeoutError(f"broker {broker_id} (pid {slot.pid}) did not exit")
            time.sleep(0.02)
        handle = self._spawn_broker(slot)
        slot.handle = handle
        slot.restarts += 1
        remaining = max(1.0, deadline - time.monotonic())
        address = cast(str, ray.get(handle.start.remote(), timeout=remaining))
        assert address == self.broker_addresses[broker_id], (address, broker_id)
        slot.pid = cast(int, ray.get(handle.pid.remote(), timeout=remaining))
        if wait_unfenced:
            self.wait_for_brokers_unfenced([broker_id], max(1.0, deadline - time.monotonic()))
        log.info("cluster %s: restarted broker %d (pid %d)", self.name, broker_id, slot.pid)

    def isolate_broker_from(self, broker_id: int, peers: Iterable[int]) -> None:
        """Cut the links between `broker_id` and the brokers `peers`, on both sides."""
        peer_ids = sorted(peers)
        refs = [self.broker_handle(broker_id).isolate_from.remote(
            [broker_actor_name(p) for p in peer_ids] + [self.broker_addresses[p]
                                                         for p in peer_ids])]
        for p in peer_ids:
            refs.append(self.broker_handle(p).isolate_from.remote(
                [broker_actor_name(broker_id), self.broker_addresses[broker_id]]))
        ray.get(refs, timeout=10.0)

    def heal_brokers(self) -> None:
        """Clear every link fault on every live broker."""
        ray.get([self.broker_handle(i).heal.remote() for i in self.live_broker_ids()],
                timeout=10.0)

    # ---- cluster.json ---------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """What cluster.json holds."""
        info: dict[str, Any] = {
            "name": self.name,
            "namespace": self.namespace,
            "data_dir": str(self.data_dir) if self.data_dir else None,
            "detached": self._detached,
            "controllers": {str(i): a for i, a in self.controller_addresses.items()},
            "brokers": {str(i): a for i, a in self.broker_addresses.items()},
            "brokers_requested": self.brokers_requested,
            "bootstrap_servers": self.bootstrap_servers,
            "broker_config": self._broker_config,
            "election_timeout_ms": self._election_timeout_ms,
            "ray_address": _ray_address(),
        }
        info.update(self.extra_info)
        return info

    def write_cluster_file(self) -> Path:
        assert self.data_dir is not None
        path = self.data_dir / CLUSTER_FILE
        _write_json_atomic(path, self.describe())
        return path


def _controller_config_for(broker_config: dict[str, Any]) -> ControllerConfig | None:
    """The controllers' config matching the brokers' timing overrides (None: defaults)."""
    mapping = {
        "broker.heartbeat.interval.ms": "broker_heartbeat_interval_ms",
        "broker.session.timeout.ms": "broker_session_timeout_ms",
        "min.insync.replicas": "min_insync_replicas",
        "default.replication.factor": "default_replication_factor",
        "num.partitions": "num_partitions",
        "unclean.leader.election.enable": "unclean_leader_election_enable",
    }
    kwargs = {field_name: broker_config[key] for key, field_name in mapping.items()
              if key in broker_config}
    return ControllerConfig(**kwargs) if kwargs else None


def _ray_address() -> str | None:
    if not ray.is_initialized():
        return None
    with contextlib.suppress(Exception):
        return str(ray.get_runtime_context().gcs_address)
    return None


# ---- the CLI face: rafka cluster up | status | down ---------------------------------------


def _data_dir(args: argparse.Namespace) -> Path:
    if args.data_dir:
        return Path(str(args.data_dir)).resolve()
    return (Path.cwd() / DEFAULT_DATA_ROOT / str(args.name)).resolve()


def _read_cluster_file(data_dir: Path) -> dict[str, Any] | None:
    path = data_dir / CLUSTER_FILE
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@dataclass(frozen=True, slots=True)
class RayHead:
    """A Ray head started by `rafka cluster up` (its `ray start --block` process group)."""

    address: str
    pid: int
    temp_dir: str
    log_file: str


def start_ray_head(data_dir: Path) -> RayHead:
    """`ray start --head --block` in a new session, on a free port and a private temp dir.

    The private `--temp-dir` keeps the head from becoming the default (`ray_current_cluster`)
    that other `ray.init()` calls on this machine would join. `--block` keeps one process that
    owns the head's processes and takes them down when it gets SIGTERM.
    """
    ray_bin = Path(sys.executable).with_name("ray")
    # Short path: Ray's unix sockets live under the temp dir (107-byte limit).
    temp_dir = tempfile.mkdtemp(prefix="rafka-ray-", dir="/tmp")
    port = _free_ports(1)[0]
    log_file = data_dir / "ray-head.log"
    cmd = [str(ray_bin), "start", "--head", "--block", f"--port={port}", f"--temp-dir={temp_dir}",
           "--include-dashboard=false", "--disable-usage-stats"]
    env = dict(os.environ, RAY_AUTH_MODE=_ray_auth_mode(),
               RAY_worker_niceness=str(RAY_SYSTEM_CONFIG["worker_niceness"]))
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    address_file = Path(temp_dir) / "ray_current_cluster"
    deadline = time.monotonic() + RAY_HEAD_START_TIMEOUT_S
    while not address_file.exists() or not address_file.read_text().strip():
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}; see {log_file}")
        if time.monotonic() > deadline:
            _stop_ray_head(proc.pid, temp_dir)
            raise TimeoutError(f"Ray head not up after {RAY_HEAD_START_TIMEOUT_S}s; see {log_file}")
        time.sleep(0.1)
    return RayHead(address_file.read_text().strip(), proc.pid, temp_dir, str(log_file))


def _is_our_ray_head(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"start" in cmdline and b"--head" in cmdline and b"--block" in cmdline


def _stop_ray_head(pid: int, temp_dir: str, timeout_s: float = 30.0) -> None:
    """SIGTERM the `ray start --block` process (it stops its children), then its group."""
    if _is_our_ray_head(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while not _process_gone(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        # Whatever the head left behind in its own session (pgid == pid: start_new_session).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    shutil.rmtree(temp_dir, ignore_errors=True)


def _ray_auth_mode() -> str:
    """The RAY_AUTH_MODE that `ray start --head` itself would pick on this machine.

    Ray 2.60 asymmetry: `ray start` turns token auth on when a token exists (~/.ray/auth_token,
    RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH) and RAY_AUTH_MODE is unset, but `ray.init(address=...)`
    joining a cluster does not, and then fails with InvalidAuthToken. So we decide the mode once,
    start the head with it explicitly and set it before joining.
    """
    if os.environ.get("RAY_AUTH_MODE"):
        return os.environ["RAY_AUTH_MODE"]
    token_path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    return "token" if os.environ.get("RAY_AUTH_TOKEN") or Path(token_path).exists() else "disabled"


def _use_auth_mode_of_ray_start() -> None:
    """Before joining a head: pick the auth mode `ray start` picked (see `_ray_auth_mode`)."""
    if os.environ.get("RAY_AUTH_MODE"):
        return
    os.environ["RAY_AUTH_MODE"] = _ray_auth_mode()
    # Ray caches its config at import; this is what `ray start` itself calls to refresh it.
    with contextlib.suppress(ImportError):
        from ray._raylet import Config  # type: ignore[attr-defined]  # noqa: PLC0415

        Config.initialize("")


def _connect(address: str, namespace: str) -> None:
    _use_auth_mode_of_ray_start()
    ray.init(address=address, namespace=namespace, logging_level=logging.WARNING,
             log_to_driver=False)


def _status_rows(
    info: dict[str, Any], statuses: dict[int, dict[str, Any] | None], leader: int | None
) -> list[list[str]]:
    rows = [["ID", "ROLE", "ADDRESS", "TERM", "COMMIT-INDEX", "STATUS"]]
    for node_id in sorted(statuses):
        st = statuses[node_id]
        address = info["controllers"].get(str(node_id), "")
        if st is None:
            rows.append([str(node_id), "-", address, "-", "-", "unreachable"])
            continue
        role = str(st.get("role", "?")) + ("*" if node_id == leader else "")
        state = "failed" if st.get("failed") else "alive"
        rows.append([str(node_id), role, str(st.get("address") or address),
                     str(st.get("term", "-")), str(st.get("commit_index", "-")), state])
    return rows


def _print_table(rows: list[list[str]]) -> None:
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _query_controllers(info: dict[str, Any], timeout_s: float = 5.0
                       ) -> dict[int, dict[str, Any] | None]:
    namespace = info["namespace"]
    refs: dict[Any, int] = {}
    statuses: dict[int, dict[str, Any] | None] = {}
    for key in sorted(info["controllers"], key=int):
        node_id = int(key)
        statuses[node_id] = None
        try:
            handle = ray.get_actor(controller_actor_name(node_id), namespace=namespace)
        except ValueError:
            continue
        refs[handle.status.remote()] = node_id
    if refs:
        done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
        for ref in done:
            with contextlib.suppress(Exception):
                statuses[refs[ref]] = ray.get(ref)
    return statuses


def _query_brokers(info: dict[str, Any], timeout_s: float = 5.0
                   ) -> dict[int, dict[str, Any] | None]:
    namespace = info["namespace"]
    refs: dict[Any, int] = {}
    statuses: dict[int, dict[str, Any] | None] = {}
    for key in sorted(info.get("brokers", {}), key=int):
        broker_id = int(key)
        statuses[broker_id] = None
        try:
            handle = ray.get_actor(broker_actor_name(broker_id), namespace=namespace)
        except ValueError:
            continue
        refs[handle.status.remote()] = broker_id
    if refs:
        done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
        for ref in done:
            with contextlib.suppress(Exception):
                statuses[refs[ref]] = ray.get(ref)
    return statuses


def _broker_rows(info: dict[str, Any], statuses: dict[int, dict[str, Any] | None]
                 ) -> list[list[str]]:
    rows = [["ID", "ROLE", "ADDRESS", "EPOCH", "FENCED", "LEADERS", "FOLLOWERS",
             "UNDER-REPLICATED", "STATUS"]]
    for broker_id in sorted(statuses):
        st = statuses[broker_id]
        address = info.get("brokers", {}).get(str(broker_id), "")
        if st is None:
            rows.append([str(broker_id), "broker", address, "-", "-", "-", "-", "-",
                         "unreachable"])
            continue
        rows.append([str(broker_id), "broker", str(st.get("address") or address),
                     str(st.get("broker_epoch", "-")), str(st.get("fenced", "-")).lower(),
                     str(st.get("leaders", "-")), str(st.get("followers", "-")),
                     str(st.get("under_replicated", "-")), "alive"])
    return rows


def cluster_up(args: argparse.Namespace) -> int:
    """`rafka cluster up`: start a cluster that outlives this command; print it."""
    data_dir = _data_dir(args)
    data_dir.mkdir(parents=True, exist_ok=True)
    existing = _read_cluster_file(data_dir)
    if existing is not None:
        print(f"cluster {args.name} looks up already ({data_dir / CLUSTER_FILE}); "
              f"run `rafka cluster down --name {args.name}` first")
        return 1
    head: RayHead | None = None
    if args.address:
        address = args.address
    else:
        head = start_ray_head(data_dir)
        address = head.address
    cluster = LocalCluster(
        brokers=args.brokers, controllers=args.controllers, data_dir=data_dir, name=args.name,
        address=address, detached=True,
    )
    try:
        _connect(address, cluster.namespace)
        if head is not None:
            cluster.extra_info["ray_head"] = {
                "started_by_rafka": True, "pid": head.pid, "temp_dir": head.temp_dir,
                "log_file": head.log_file, "address": head.address,
            }
        cluster.start()
        leader = cluster.controller_leader()
        print(f"cluster {args.name} up (namespace {cluster.namespace}, Ray {address})")
        for node_id, addr in cluster.controller_addresses.items():
            mark = "  (leader)" if node_id == leader else ""
            print(f"  controller-{node_id}  {addr}{mark}")
        for broker_id, addr in cluster.broker_addresses.items():
            print(f"  broker-{broker_id}      {addr}")
        print(f"controller leader: {leader}")
        if cluster.broker_ids:
            print(f"bootstrap servers: {cluster.bootstrap_servers}")
        print(f"cluster file: {data_dir / CLUSTER_FILE}")
        cluster.detach()
    except BaseException:
        if head is not None:
            if ray.is_initialized():
                ray.shutdown()
            _stop_ray_head(head.pid, head.temp_dir)
        raise
    finally:
        if ray.is_initialized():
            ray.shutdown()
    return 0


def cluster_status(args: argparse.Namespace) -> int:
    """`rafka cluster status`: controllers, brokers, partition counts; exit 1 if unhealthy

    (no controller leader, or a broker unreachable or fenced).
    """
    data_dir = _data_dir(args)
    info = _read_cluster_file(data_dir)
    if info is None:
        print(f"no cluster {args.name}: {data_dir / CLUSTER_FILE} does not exist")
        return 1
    address = str(args.address or info.get("ray_address"))
    try:
        _connect(address, info["namespace"])
    except Exception as exc:  # noqa: BLE001 - a CLI reports and exits non-zero
        print(f"cluster {info['name']}: cannot reach Ray at {address}: {exc}")
        return 1
    try:
        statuses = _query_controllers(info)
        broker_statuses = _query_brokers(info)
    finally:
        ray.shutdown()
    leader = majority_leader(statuses, len(info["controllers"]))
    print(f"cluster {info['name']} (namespace {info['namespace']}, Ray {address})")
    _print_table(_status_rows(info, statuses, leader))
    print(f"controller leader: {leader if leader is not None else 'none'}")
    if broker_statuses:
        _print_table(_broker_rows(info, broker_statuses))
        live = [st for st in broker_statuses.values() if st is not None]
        print(f"bootstrap servers: {info.get('bootstrap_servers', '')}")
        print(f"brokers: {len(live)} of {len(broker_statuses)} alive, "
              f"{sum(1 for st in live if not st.get('fenced', True))} unfenced; "
              f"partition leaders {sum(int(st.get('leaders', 0)) for st in live)}, "
              f"under-replicated {sum(int(st.get('under_replicated', 0)) for st in live)}")
    healthy = all(st is not None and not st.get("fenced", True)
                  for st in broker_statuses.values())
    return 0 if leader is not None and healthy else 1


def cluster_down(args: argparse.Namespace) -> int:
    """`rafka cluster down [--purge]`: stop the actors and the Ray head `up` started.

    `--purge` also deletes the data dir; without it the Raft state stays and a later
    `cluster up` with the same data dir recovers it.
    """
    data_dir = _data_dir(args)
    info = _read_cluster_file(data_dir)
    if info is None:
        print(f"no cluster {args.name}: {data_dir / CLUSTER_FILE} does not exist")
        if args.purge and data_dir.exists():
            shutil.rmtree(data_dir, ignore_errors=True)
            print(f"purged {data_dir}")
        return 1
    address = str(args.address or info.get("ray_address"))
    stopped: list[str] = []
    try:
        _connect(address, info["namespace"])
    except Exception as exc:  # noqa: BLE001 - the head may be gone already; still clean up
        print(f"cannot reach Ray at {address} ({type(exc).__name__}); its actors are gone")
    else:
        try:
            brokers: dict[str, Handle] = {}
            for key in sorted(info.get("brokers", {}), key=int):
                name = broker_actor_name(int(key))
                with contextlib.suppress(ValueError):
                    brokers[name] = ray.get_actor(name, namespace=info["namespace"])
            stop_actors(brokers, 1.0)  # first: controlled shutdown needs the controllers
            stopped += list(brokers)
            handles: dict[str, Handle] = {}
            for key in sorted(info["controllers"], key=int):
                name = controller_actor_name(int(key))
                with contextlib.suppress(ValueError):
                    handles[name] = ray.get_actor(name, namespace=info["namespace"])
            stop_actors(handles, 1.0)
            stopped += list(handles)
        finally:
            ray.shutdown()
    print(f"stopped {', '.join(stopped) if stopped else 'no actors'}")
    head = info.get("ray_head")
    if head and head.get("started_by_rafka") and not args.address:
        _stop_ray_head(int(head["pid"]), str(head["temp_dir"]))
        print(f"stopped the Ray head this tool started (pid {head['pid']})")
    if args.purge:
        shutil.rmtree(data_dir, ignore_errors=True)
        print(f"purged {data_dir}")
    else:
        (data_dir / CLUSTER_FILE).unlink(missing_ok=True)
    return 0


def unique_name(prefix: str = "test") -> str:
    """A cluster name no other cluster in this Ray uses (tests, benches)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"

