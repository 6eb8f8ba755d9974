"""`FaultInjector`: faults on the real actors of a `LocalCluster`, each recorded as a `FaultOp`.

    injector = FaultInjector(cluster, history=writer, rng=random.Random(seed), admin=admin)
    victims = injector.kill("leader:orders/0")     # resolved from live metadata, then ray.kill
    injector.restart(victims)                       # same id, data dir and port; waits until back
    paused = injector.pause("follower:orders/0")    # SIGSTOP of the actor's process
    injector.resume(paused)                          # SIGCONT
    injector.partition("controller:leader")         # vs every other actor, both ways
    injector.partition("consumer:c0")               # a group member cut off from the cluster
    injector.heal()
    injector.restore()                               # end of a run: resume, heal, restart all

Theory of operation
-------------------
Targets (chaos/targets.py) name actors by id or by role; roles are resolved at call time: the
active controller from the controllers' own view (the launcher's majority rule), partition
leaders, followers and group coordinators through an `Admin` (metadata, DescribeGroups), group
members through the workload's `ConsumerGroupHandle`. A resolved `Target` is what later calls
take back: `restart(kill("leader:t/0"))` restarts the broker that was killed, whereas
`restart("leader:t/0")` would bounce whoever leads now.

- kill: `ray.kill`, the process dies at once (a paused process gets SIGKILL first: a stopped
  process never runs again before dying, and Ray's own kill would wait on it).
- restart: the launcher's restart (same id, data dir and port), which returns once the broker
  is registered and unfenced or the controller serves Raft; consumers through the handle.
- pause / resume: SIGSTOP / SIGCONT of the pid the actor reported at start. Only actors on this
  machine (every LocalCluster actor is).
- Network faults: every process consults its own fault table (proto/fault_transport.py); the
  injector keeps a model of what it set on each actor (peer → drop / delay_ms, both
  directions) and pushes changes through the actors' chaos hooks. Peers are named by node name
  and address, as the project's channels and servers match them. An actor that cannot take
  the change now (paused) gets its whole table pushed on resume; a restarted one (a fresh
  process with an empty table) on restart, so a partition outlives a bounce of its members.
  `slow` sets a delay on each side's outgoing calls (so a round trip pays it twice, once each
  way); it keeps a drop already set on the link.
  Consumer members (`ConsumerActor`s of the workload's group, reached through the handle's
  `member_handle`) take part like brokers: a member is named `consumer-<NAME>` in tables and
  stamps that name on its calls. It serves nothing and has no address, so on a broker's side
  its link is the calls it makes: `partition` drops them there (and the member's own table
  drops its calls to the broker's name and address), `slow` delays them as they come in. The
  default other side of a member is every broker and controller: it is cut off from the
  cluster, stops heartbeating and its partitions move to the other members.
- Disk faults (`torn_write`, `corrupt_tail`): the broker must be down; chaos/disk_faults.py
  damages the last batch of the partition's active segment, and the restart's recovery must
  cut there.
- Node loss (`lose_node`): with `nodes=` (chaos/nodes.py, a multi-node Ray test cluster whose
  actors are pinned to nodes), the raylet of a node is removed: every actor on it dies.

Every action appends one `FaultOp` when it took effect (history schema: chaos/history.py):
`target` is the spec as given (or the resolved targets, for calls given `Target`s), and
`detail` holds `resolved` (the targets), `partitions` (the partitions aimed at: those the
affected brokers led just before the fault, so the availability checker matches acks to it),
and what else the fault did (pids, peers, bytes cut). Times come from `clock_ms` (default:
wall-clock milliseconds), which must be the run's one clock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Union

import ray

from chaos.disk_faults import flip_byte_in_last_batch, tear_last_batch
from chaos.history import FaultKind, FaultOp, HistoryWriter, Json
from chaos.targets import Target, TargetKind, TargetSpec, parse_targets, targets_text
from cluster.launcher import LocalCluster
from cluster.log_manager import partition_dir_name

if TYPE_CHECKING:
    from chaos.nodes import RayNodes
    from clients.admin import Admin

log = logging.getLogger(__name__)

TargetsArg = Union[str, Target, Sequence[Union[str, Target]]]

_ROLE_ORDER = {"controller": 0, "broker": 1, "consumer": 2}  # restart order: quorum first
ACTOR_CALL_TIMEOUT_S = 10.0


class ConsumerGroupHandle(Protocol):
    """The workload's consumer group, as the injector needs it (implemented by chaos workloads)."""

    def member_names(self) -> list[str]: ...

    def kill_member(self, name: str) -> None: ...

    def restart_member(self, name: str) -> None: ...

    def member_pid(self, name: str) -> int: ...

    def member_handle(self, name: str) -> Any:
        """The running member's actor, with the chaos hooks (LookupError: not running)."""
        ...


@dataclass(slots=True)
class _Links:
    """The link faults the injector set on one actor's table: peer → {"drop", "delay_ms"}."""

    outgoing: dict[str, dict[str, Json]] = field(default_factory=dict)
    incoming: dict[str, dict[str, Json]] = field(default_factory=dict)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class FaultInjector:
    """Kill, restart, pause, partition, slow and damage the actors of one cluster.

    Args:
        cluster: the cluster (started, or `LocalCluster.attach`ed).
        history: where each fault is appended as a `FaultOp` (None: not recorded).
        rng: picks random followers and members (seed it for a replayable run).
        consumers: the workload's group, for `consumer:` targets.
        admin: for live metadata; None: one is made on first need (and closed by `close()`).
        clock_ms: the run's clock for `time_ms` (default: wall-clock ms).
        nodes: the multi-node Ray test cluster the actors are pinned to (node loss).
        restart_timeout_s: how long a restarted actor may take to serve again.
    """

    def __init__(self, cluster: LocalCluster, *, history: HistoryWriter | None = None,
                 rng: random.Random | None = None, consumers: ConsumerGroupHandle | None = None,
                 admin: Admin | None = None, clock_ms: Callable[[], int] | None = None,
                 nodes: RayNodes | None = None, restart_timeout_s: float = 30.0) -> None:
        self.cluster = cluster
        self.history = history
        self.rng = rng or random.Random()
        self.consumers = consumers
        self.nodes = nodes
        self.restart_timeout_s = restart_timeout_s
        self.recorded: list[FaultOp] = []  # every FaultOp this injector produced, in order
        self._admin = admin
        self._owns_admin = admin is None
        self._clock = clock_ms or wall_clock_ms
        self._killed: dict[Target, None] = {}  # ordered set
        self._paused: dict[Target, int] = {}  # target → pid
        self._links: dict[Target, _Links] = {}
        self._stale: set[Target] = set()  # tables to push in full when reachable again
        self._changes: dict[Target, _Links] = {}  # entries set but not yet pushed
        self._lost_nodes: dict[int, list[Target]] = {}

    # ---- context --------------------------------------------------------------------------

    def __enter__(self) -> FaultInjector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self.close()

    def close(self) -> None:
        """Close the admin client the injector made (not one it was given)."""
        admin, self._admin = self._admin, None
        if admin is not None and self._owns_admin:
            with contextlib.suppress(Exception):
                admin.close()

    @property
    def killed(self) -> list[Target]:
        return list(self._killed)

    @property
    def paused(self) -> list[Target]:
        return list(self._paused)

    def paused_pids(self) -> dict[Target, int]:
        return dict(self._paused)

    # ---- targets --------------------------------------------------------------------------

    def resolve(self, spec: TargetsArg) -> list[Target]:
        """The actors `spec` names now (duplicates dropped, order kept).

        Raises:
            ValueError: a bad spec, an unknown id, or consumers without a handle.
            LookupError: a role nobody holds now (offline partition, no controller leader).
        """
        out: dict[Target, None] = {}
        for item in _items(spec):
            if isinstance(item, Target):
                out[item] = None
                continue
            for ts in parse_targets(item):
                for target in self._resolve_one(ts):
                    out[target] = None
        return list(out)

    def _resolve_one(self, ts: TargetSpec) -> list[Target]:
        if ts.kind is TargetKind.BROKER:
            return self._by_id("broker", self.cluster.broker_ids, ts)
        if ts.kind is TargetKind.CONTROLLER:
            if ts.is_controller_leader:
                return [Target("controller", self._controller_leader())]
            return self._by_id("controller", self.cluster.controller_ids, ts)
        if ts.kind is TargetKind.CONSUMER:
            return [Target("consumer", self._member(ts))]
        if ts.kind is TargetKind.COORDINATOR:
            assert ts.group is not None
            group = self.admin().describe_consumer_groups([ts.group])[ts.group]
            if group.coordinator_id is None:
                raise LookupError(f"{ts.text}: group {ts.group!r} has no coordinator now")
            return [self._up(ts, Target("broker", group.coordinator_id))]
        assert ts.topic is not None and ts.partition is not None
        try:
            info = self.admin().describe_topics([ts.topic])[ts.topic].partition(ts.partition)
        except KeyError:
            raise ValueError(f"{ts.text}: topic {ts.topic!r} has no partition "
                             f"{ts.partition}") from None
        if ts.kind is TargetKind.LEADER:
            if info.leader is None:
                raise LookupError(f"{ts.text}: the partition is offline (no leader)")
            return [self._up(ts, Target("broker", info.leader))]
        # A follower that is up (killed or paused ones are already out of the game), in the
        # ISR if one is.
        followers = [r for r in info.replicas if r != info.leader and self._is_up(r)]
        pool = sorted(r for r in followers if r in info.isr) or sorted(followers)
        if not pool:
            raise LookupError(f"{ts.text}: the partition has no follower that is up "
                              f"(replicas {list(info.replicas)}, leader {info.leader})")
        return [Target("broker", self.rng.choice(pool))]

    def _is_up(self, broker_id: int) -> bool:
        target = Target("broker", broker_id)
        return target not in self._killed and target not in self._paused

    def _up(self, ts: TargetSpec, target: Target) -> Target:
        """Metadata lags a fault by up to a session timeout: a role it gives to an actor this
        injector took down is refused rather than hitting a corpse."""
        if target in self._killed or target in self._paused:
            state = "killed" if target in self._killed else "paused"
            raise LookupError(f"{ts.text}: metadata still names {target}, which is {state}")
        return target

    @staticmethod
    def _by_id(role: str, ids: list[int], ts: TargetSpec) -> list[Target]:
        if ts.every:
            return [Target(role, i) for i in ids]
        if ts.node_id not in ids:
            raise ValueError(f"{ts.text}: no {role} {ts.node_id} in this cluster "
                             f"({role}s {ids})")
        return [Target(role, ts.node_id)]

    def _controller_leader(self) -> int:
        try:
            return self.cluster.wait_for_leader(timeout_s=self.cluster.election_timeout_ms
                                                / 1000 * 6 + 2.0)
        except TimeoutError as exc:
            raise LookupError(f"controller:leader: no controller leader now ({exc})") from None

    def _member(self, ts: TargetSpec) -> str:
        if self.consumers is None:
            raise ValueError(f"{ts.text}: consumer targets need the workload's consumer group "
                             "(FaultInjector(consumers=...))")
        names = sorted(self.consumers.member_names())
        if ts.name is None:
            if not names:
                raise LookupError("consumer:random: the group has no members")
            return self.rng.choice(names)
        if ts.name not in names:
            raise LookupError(f"{ts.text}: no member {ts.name!r} (members {names})")
        return ts.name

    def admin(self) -> Admin:
        """The admin client used for live metadata (made on first use when none was given)."""
        if self._admin is None:
            from clients.admin import Admin  # noqa: PLC0415 - only when metadata is needed

            self._admin = Admin({"bootstrap.servers": self.cluster.bootstrap_servers,
                                 "client.id": "rafka-chaos", "request.timeout.ms": 3000,
                                 "default.api.timeout.ms": 10000})
            self._owns_admin = True
        return self._admin

    def led_by(self, broker_ids: Iterable[int]) -> list[Json]:
        """[[topic, partition], ...] the brokers lead now (empty if metadata is unavailable)."""
        wanted = set(broker_ids)
        if not wanted:
            return []
        try:
            topics = self.admin().describe_topics()
        except Exception as exc:  # noqa: BLE001 - the fault goes ahead; the detail is thinner
            log.warning("chaos: no metadata for the partitions of brokers %s (%s)",
                        sorted(wanted), exc)
            return []
        led: list[Json] = []
        for name, desc in sorted(topics.items()):
            for p in desc.partitions:
                if p.leader in wanted:
                    pair: list[Json] = [name, p.partition]
                    led.append(pair)
        return led

    # ---- kill / restart -------------------------------------------------------------------

    def kill(self, spec: TargetsArg) -> list[Target]:
        """`ray.kill` every actor `spec` names: each process dies at once.

        Raises:
            LookupError: an actor is not running (already killed).
        """
        targets = self.resolve(spec)
        detail = self._aim(targets)
        for target in targets:
            self._kill_one(target)
        self._record(FaultKind.KILL, spec, targets, detail)
        return targets

    def _kill_one(self, target: Target) -> None:
        pid = self._paused.pop(target, None)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if target.role == "broker":
            self.cluster.kill_broker(int(target.id))
        elif target.role == "controller":
            self.cluster.kill_controller(int(target.id))
        else:
            self._need_consumers().kill_member(str(target.id))
        self._killed[target] = None
        log.info("chaos: killed %s", target)

    def restart(self, spec_or_targets: TargetsArg) -> list[Target]:
        """Start each named actor again: same id, data dir and port; waits until it is back.

        A running actor is killed first (a bounce). Controllers go first, then brokers (which
        need a quorum to register), then consumers.
        """
        targets = sorted(self.resolve(spec_or_targets), key=lambda t: _ROLE_ORDER[t.role])
        started_ms = self._clock()
        for target in targets:
            pid = self._paused.pop(target, None)
            if pid is not None:  # a bounce of a paused actor: it dies without running again
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if target.role == "broker":
                self.cluster.restart_broker(int(target.id), timeout_s=self.restart_timeout_s)
            elif target.role == "controller":
                self.cluster.restart_controller(int(target.id),
                                                timeout_s=self.restart_timeout_s)
            else:
                self._need_consumers().restart_member(str(target.id))
            self._killed.pop(target, None)
            self._stale.add(target)
            self._push_stale()
            log.info("chaos: restarted %s", target)
        self._record(FaultKind.RESTART, spec_or_targets, targets, {"started_ms": started_ms})
        return targets

    # ---- pause / resume -------------------------------------------------------------------

    def pause(self, spec: TargetsArg) -> list[Target]:
        """SIGSTOP each named actor's process (already paused ones stay as they are)."""
        targets = self.resolve(spec)
        detail = self._aim(targets)
        pids: dict[str, Json] = {}
        for target in targets:
            if target in self._paused:
                continue
            pid = self._pid(target)
            os.kill(pid, signal.SIGSTOP)
            self._paused[target] = pid
            pids[str(target)] = pid
            log.info("chaos: paused %s (pid %d)", target, pid)
        detail["pids"] = pids
        self._record(FaultKind.PAUSE, spec, targets, detail)
        return targets

    def resume(self, spec_or_targets: TargetsArg) -> list[Target]:
        """SIGCONT each named actor's process; pending link-fault changes are pushed to it."""
        targets = self.resolve(spec_or_targets)
        for target in targets:
            pid = self._paused.pop(target, None)
            if pid is None:
                pid = self._pid(target)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
            log.info("chaos: resumed %s (pid %d)", target, pid)
        self._push_stale()
        self._record(FaultKind.RESUME, spec_or_targets, targets, {})
        return targets

    def mark_paused(self, target: Target, pid: int) -> None:
        """Adopt a pause made by another process (the CLI keeps them in a state file)."""
        self._paused[target] = pid

    def _pid(self, target: Target) -> int:
        if target.role == "consumer":
            pid: int | None = self._need_consumers().member_pid(str(target.id))
        elif target.role == "broker":
            pid = self.cluster.broker_pid(int(target.id))
        else:
            pid = self.cluster.controller_pid(int(target.id))
        if pid is None or target in self._killed:
            raise LookupError(f"{target} is not running (no process to signal)")
        return pid

    # ---- network --------------------------------------------------------------------------

    def partition(self, side_a: TargetsArg, side_b: TargetsArg | None = None) -> None:
        """Drop every call between each actor of `side_a` and each of `side_b`, both ways.

        Args:
            side_a, side_b: specs or targets (brokers, controllers, consumer members);
                `side_b` None: every other broker and controller of the cluster.

        Raises:
            ValueError: an actor on both sides (or consumers without a group handle).
        """
        a = self.resolve(side_a)
        b = self.resolve(side_b) if side_b is not None else self._others(a)
        if set(a) & set(b):
            raise ValueError(f"partition: {targets_text(sorted(set(a) & set(b), key=str))} "
                             "on both sides")
        drop: dict[str, Json] = {"drop": True, "delay_ms": 0}
        for x in a:
            for y in b:
                self._set_link(x, y, drop, both=True)
                self._set_link(y, x, drop, both=True)
        self._push_changes(a + b)
        detail: dict[str, Json] = {
            "side_a": [str(t) for t in a], "side_b": [str(t) for t in b],
            "partitions": self.led_by(int(t.id) for t in a if t.role == "broker")}
        self._record(FaultKind.PARTITION, side_a, a, detail)

    def slow(self, spec: TargetsArg, delay_ms: int, peers: TargetsArg | None = None) -> None:
        """Delay calls between each named actor and each peer by `delay_ms`, each way.

        Args:
            spec: brokers, controllers or consumer members.
            peers: specs or targets; None: every other broker and controller.
        """
        if delay_ms < 0:
            raise ValueError(f"slow: delay_ms must be >= 0, not {delay_ms}")
        targets = self.resolve(spec)
        others = self.resolve(peers) if peers is not None else self._others(targets)
        for x in targets:
            for y in others:
                if x == y:
                    continue
                self._set_link(x, y, {"delay_ms": delay_ms}, both=False)
                self._set_link(y, x, {"delay_ms": delay_ms}, both=False)
        self._push_changes(targets + others)
        detail: dict[str, Json] = {"peers": [str(t) for t in others], "delay_ms": delay_ms,
                                   "partitions": self.led_by(int(t.id) for t in targets
                                                             if t.role == "broker")}
        self._record(FaultKind.SLOW, spec, targets, detail)

    def heal(self) -> None:
        """Clear every link fault on every broker, controller and consumer member (paused ones
        on resume, dead ones on restart)."""
        self._links.clear()
        self._stale.update(self._table_owners())
        self._push_stale()
        self._record(FaultKind.HEAL, "all", [], {})

    def _table_owners(self) -> list[Target]:
        """Every actor whose fault table the injector may have set."""
        members = self.consumers.member_names() if self.consumers is not None else []
        return [Target("controller", i) for i in self.cluster.controller_ids] + \
               [Target("broker", i) for i in self.cluster.broker_ids] + \
               [Target("consumer", n) for n in sorted(members)]

    def _others(self, targets: list[Target]) -> list[Target]:
        every = [Target("controller", i) for i in self.cluster.controller_ids] + \
                [Target("broker", i) for i in self.cluster.broker_ids]
        return [t for t in every if t not in targets]

    def _peer_names(self, target: Target) -> list[str]:
        if target.role == "consumer":
            return [target.actor_name]  # a client: it serves nothing, so it has no address
        if target.role == "broker":
            address = self.cluster.broker_addresses[int(target.id)]
        else:
            address = self.cluster.controller_addresses[int(target.id)]
        return [target.actor_name, address]

    def _set_link(self, on: Target, peer: Target, spec: dict[str, Json], *, both: bool) -> None:
        """Set `spec` on `on`'s calls to `peer` (`both`: and on its calls from `peer`), over
        what the link already has. `on` never calls a consumer: its side of a one-way fault
        to a consumer is on the calls the consumer makes to it."""
        links = self._links.setdefault(on, _Links())
        changed = self._changes.setdefault(on, _Links())
        for name in self._peer_names(peer):
            if peer.role == "consumer" and not both:
                merged = {**{"drop": False, "delay_ms": 0}, **links.incoming.get(name, {}),
                          **spec}
                links.incoming[name] = changed.incoming[name] = merged
                continue
            merged = {**{"drop": False, "delay_ms": 0}, **links.outgoing.get(name, {}), **spec}
            links.outgoing[name] = changed.outgoing[name] = merged
            if both:
                links.incoming[name] = changed.incoming[name] = dict(merged)

    def _push_changes(self, targets: Iterable[Target]) -> None:
        """Send the entries just set (`_changes`) to the actors that can take them now."""
        changes, self._changes = self._changes, {}
        calls: dict[Target, Any] = {}
        for target in dict.fromkeys(targets):
            delta = changes.get(target)
            if delta is None:
                continue
            handle = self._live_handle(target)
            if handle is None:
                self._stale.add(target)  # dead: its next process starts clean anyway
                continue
            calls[target] = handle.set_link_faults.remote(delta.outgoing, delta.incoming)
        self._await(calls, "set link faults")

    def _push_stale(self) -> None:
        """Replace the whole table of each stale actor that can take it now."""
        heals: dict[Target, Any] = {}
        for target in sorted(self._stale, key=str):
            handle = self._live_handle(target)
            if handle is not None:
                heals[target] = handle.heal.remote()
        done = self._await(heals, "heal")
        sets: dict[Target, Any] = {}
        for target in done:
            self._stale.discard(target)
            links = self._links.get(target)
            if links is not None and (links.outgoing or links.incoming):
                handle = self._live_handle(target)
                assert handle is not None
                sets[target] = handle.set_link_faults.remote(links.outgoing, links.incoming)
        self._await(sets, "set link faults")

    def _live_handle(self, target: Target) -> Any | None:
        """The actor's handle if it can answer now (running and not paused)."""
        if target in self._paused:
            return None
        try:
            if target.role == "consumer":
                return self._need_consumers().member_handle(str(target.id))
            if target.role == "broker":
                return self.cluster.broker_handle(int(target.id))
            return self.cluster.controller_handle(int(target.id))
        except LookupError:
            return None

    @staticmethod
    def _await(calls: dict[Target, Any], what: str) -> list[Target]:
        """Wait for actor calls; the targets whose call succeeded."""
        if not calls:
            return []
        refs = {ref: target for target, ref in calls.items()}
        done, pending = ray.wait(list(refs), num_returns=len(refs), timeout=ACTOR_CALL_TIMEOUT_S)
        ok: list[Target] = []
        for ref in done:
            try:
                ray.get(ref)
                ok.append(refs[ref])
            except Exception as exc:  # noqa: BLE001 - a dying actor: its table dies with it
                log.warning("chaos: %s on %s failed: %s", what, refs[ref], exc)
        for ref in pending:
            log.warning("chaos: %s on %s: no answer in %.0fs", what, refs[ref],
                        ACTOR_CALL_TIMEOUT_S)
        return ok

    # ---- disk -----------------------------------------------------------------------------

    def torn_write(self, broker_id: int, topic: str, partition: int) -> dict[str, Json]:
        """Cut the partition's active segment mid-batch on a broker that is down.

        Returns:
            The detail recorded (segment, offsets of the damaged batch, bytes kept and cut).

        Raises:
            RuntimeError: the broker is running.
            chaos.disk_faults.DiskFaultError: the replica has no whole batch to damage.
        """
        directory = self._down_partition_dir(broker_id, topic, partition)
        detail = tear_last_batch(directory, self.rng)
        detail["partitions"] = [[topic, partition]]
        self._record(FaultKind.TORN_WRITE, f"broker:{broker_id}", [Target("broker", broker_id)],
                     detail)
        return detail

    def corrupt_tail(self, broker_id: int, topic: str, partition: int) -> dict[str, Json]:
        """Flip a byte in the last batch of the partition's active segment (broker down)."""
        directory = self._down_partition_dir(broker_id, topic, partition)
        detail = flip_byte_in_last_batch(directory, self.rng)
        detail["partitions"] = [[topic, partition]]
        self._record(FaultKind.CORRUPT, f"broker:{broker_id}", [Target("broker", broker_id)],
                     detail)
        return detail

    def _down_partition_dir(self, broker_id: int, topic: str, partition: int) -> str:
        if broker_id not in self.cluster.broker_ids:
            raise ValueError(f"no broker {broker_id} in this cluster")
        if broker_id in self.cluster.live_broker_ids():
            raise RuntimeError(f"broker {broker_id} is running: kill it before damaging its disk")
        path = Path(self.cluster.broker_data_dir(broker_id)) / partition_dir_name(topic, partition)
        if not path.is_dir():
            raise ValueError(f"broker {broker_id} has no replica of {topic}-{partition} ({path})")
        return str(path)

    # ---- node loss ------------------------------------------------------------------------

    def lose_node(self, spec: str) -> list[Target]:
        """Remove a whole Ray node: `node:K`, or the node(s) hosting the actors `spec` names.

        Every actor on the node dies with it; `restore()` (or `restore_nodes()`) adds the node
        back and restarts them.
        """
        if self.nodes is None:
            raise ValueError("node loss needs a multi-node Ray test cluster "
                             "(FaultInjector(nodes=chaos.nodes.RayNodes(...)))")
        if spec.strip().startswith("node:"):
            node_ids = [self.nodes.parse_node(spec)]
        else:
            node_ids = sorted({self.nodes.node_of(t.actor_name) for t in self.resolve(spec)})
        victims = [t for k in node_ids for t in self._actors_on(k)]
        detail = self._aim(victims)
        detail["nodes"] = list(node_ids)
        for k in node_ids:
            self.nodes.remove(k)
            self._lost_nodes[k] = self._actors_on(k)
        for target in victims:  # their processes are gone: forget the handles
            with contextlib.suppress(Exception):
                self._kill_one(target)
            self._killed[target] = None
        self._record(FaultKind.NODE_LOSS, spec, victims, detail)
        return victims

    def _actors_on(self, node: int) -> list[Target]:
        assert self.nodes is not None
        every = [Target("controller", i) for i in self.cluster.controller_ids] + \
                [Target("broker", i) for i in self.cluster.broker_ids]
        return [t for t in every if self.nodes.node_of(t.actor_name) == node]

    def restore_nodes(self) -> None:
        """Add every lost node back (its actors stay down until restarted)."""
        assert self.nodes is not None or not self._lost_nodes
        for k in sorted(self._lost_nodes):
            assert self.nodes is not None
            self.nodes.add_back(k)
            log.info("chaos: node %d is back", k)
        self._lost_nodes.clear()

    # ---- the end of a run -----------------------------------------------------------------

    def restore(self) -> None:
        """Resume every paused actor, heal every link, bring back lost nodes, restart the dead."""
        if self._paused:
            self.resume(list(self._paused))
        self.heal()
        self.restore_nodes()
        if self._killed:
            self.restart(list(self._killed))

    def release(self) -> None:
        """Best effort, for cleanup after a failure: SIGCONT every paused process, heal links.

        Nothing is restarted and nothing is recorded; the cluster can then be closed.
        """
        for target, pid in list(self._paused.items()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
            del self._paused[target]
        self._links.clear()
        with contextlib.suppress(Exception):
            self._stale.update(self._table_owners())
            self._push_stale()
        if self.nodes is not None:
            with contextlib.suppress(Exception):
                self.restore_nodes()

    # ---- recording ------------------------------------------------------------------------

    def _aim(self, targets: Sequence[Target]) -> dict[str, Json]:
        """The detail every fault starts with: what it resolved to and what it aims at."""
        return {"resolved": [str(t) for t in targets],
                "partitions": self.led_by(int(t.id) for t in targets if t.role == "broker")}

    def _record(self, kind: FaultKind, spec: TargetsArg, targets: Sequence[Target],
                detail: dict[str, Json]) -> FaultOp:
        detail.setdefault("resolved", [str(t) for t in targets])
        text = spec if kind in (FaultKind.HEAL, FaultKind.TORN_WRITE, FaultKind.CORRUPT) \
            or isinstance(spec, str) and spec.startswith("node:") else _spec_text(spec)
        assert isinstance(text, str)
        op = FaultOp(f=kind, target=text, time_ms=self._clock(), detail=detail)
        self.recorded.append(op)
        if self.history is not None:
            self.history.append(op)
        return op

    def _need_consumers(self) -> ConsumerGroupHandle:
        if self.consumers is None:
            raise ValueError("consumer targets need FaultInjector(consumers=...)")
        return self.consumers


def _items(spec: TargetsArg) -> list[str | Target]:
    if isinstance(spec, (str, Target)):
        return [spec]
    return list(spec)


def _spec_text(spec: TargetsArg) -> str:
    """The history's `target`: normalised specs, or resolved targets, comma-separated."""
    parts: list[str] = []
    for item in _items(spec):
        if isinstance(item, Target):
            parts.append(str(item))
        else:
            parts.extend(ts.text for ts in parse_targets(item))
    return ",".join(parts)
