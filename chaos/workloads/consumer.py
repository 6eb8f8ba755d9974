"""`VerifiableConsumerGroup`: a consumer group of `ConsumerActor`s that records what it did.

Each member is a `ConsumerActor` (clients/consumer_actor.py) whose handler, rebalance listener
and commit hook is one `ConsumerRecorder`. Actors cannot share the driver's history writer, so
each incarnation of a member (a restart is a new incarnation, and a new member id) appends to
its own JSON-lines file, `<dir>/<name>.<incarnation>.jsonl`, stamped with the run's clock;
`merge_into` folds them into the main history by time after the run. A killed actor may leave
a torn last line, which the history reader skips.

What is recorded (chaos/history.py, `ConsumerOp`):
- `assign`: in `on_partitions_assigned`, the member's whole assignment and its generation;
- `revoke`: in `on_partitions_revoked` (after the actor's commit) / `on_partitions_lost`;
- `poll`: the records of one handled batch (one partition of one poll);
- `commit`: each commit the actor makes, `ok` with the committed offsets, `fail` with the
  error (a refused commit never counts as a position).

The group implements chaos.faults' `ConsumerGroupHandle` (kill, restart, pids and actor
handles by name). Member `NAME` runs with the fault-table node name `consumer-NAME` (the name a
`consumer:NAME` target has, chaos/targets.py), so chaos can cut it off from the brokers: its
own table drops its calls, and the brokers' tables drop calls stamped with that name.
"""

from __future__ import annotations

import heapq
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from chaos.history import (
    CommittedOffset, ConsumerFn, ConsumerOp, Event, FinalRead, HistoryWriter, OpType,
    PolledRecord, iter_history,
)
from chaos.targets import Target
from chaos.workloads.clock import RunClock
from clients.types import TopicPartition
from cluster.launcher import kill_and_wait

log = logging.getLogger(__name__)

# Member settings that keep rebalances within a short run.
CONSUMER_DEFAULTS: dict[str, Any] = {
    "session_timeout_ms": 3000,
    "heartbeat_interval_ms": 300,
    "auto_offset_reset": "earliest",
    "fetch_max_wait_ms": 100,
    "max_poll_records": 200,
    "request_timeout_ms": 4000,
    "partition_assignment_strategy": ["range"],
}


def _text(data: Any) -> Any:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data).decode("utf-8", "replace")
    return data


@dataclass(slots=True)
class _Member:
    member_id: str = ""
    generation: int = -1


_WRITERS: dict[str, HistoryWriter] = {}  # per actor process: path → writer
_MEMBERS: dict[str, _Member] = {}


class ConsumerRecorder:
    """Handler, listener and commit hook of one member incarnation (pickled into its actor).

    Its state lives in module tables of the actor process, keyed by the file path, because
    Ray unpickles each constructor argument separately (three copies of this object)."""

    def __init__(self, path: str, *, process: str, group: str, clock: RunClock) -> None:
        self.path = path
        self.process = process
        self.group = group
        self.clock = clock

    # -- state in the actor process --

    def _writer(self) -> HistoryWriter:
        writer = _WRITERS.get(self.path)
        if writer is None:
            writer = _WRITERS[self.path] = HistoryWriter(self.path, append=True)
        return writer

    def _member(self) -> _Member:
        return _MEMBERS.setdefault(self.path, _Member())

    def _append(self, fn: ConsumerFn, op_type: OpType = OpType.OK, **kw: Any) -> None:
        m = self._member()
        self._writer().append(ConsumerOp(
            f=fn, type=op_type, process=self.process, member_id=m.member_id or self.process,
            group=self.group, generation=m.generation, time_ms=self.clock.now_ms(), **kw))

    def _identify(self, consumer: Any) -> None:
        try:
            md = consumer.group_metadata()
        except Exception:  # noqa: BLE001 - left the group: keep the last identity
            return
        m = self._member()
        m.member_id, m.generation = md.member_id, md.generation_id

    # -- the handler (batch=True: one partition's records of one poll) --

    def __call__(self, records: list[Any]) -> None:
        if not records:
            return
        self._append(ConsumerFn.POLL, records=tuple(
            PolledRecord(r.topic, r.partition, r.offset, _text(r.key), _text(r.value))
            for r in records))

    # -- the rebalance listener --

    def on_partitions_assigned(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._identify(consumer)
        if self._member().generation < 0:
            return
        whole = tuple(sorted(consumer.assignment()))
        self._append(ConsumerFn.ASSIGN, partitions=whole)

    def on_partitions_revoked(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        if partitions:
            self._append(ConsumerFn.REVOKE, partitions=tuple(sorted(partitions)))

    def on_partitions_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        if partitions:
            self._append(ConsumerFn.REVOKE, OpType.INFO, partitions=tuple(sorted(partitions)),
                         error="lost")

    # -- the commit hook --

    def on_commit(self, consumer: Any, offsets: dict[TopicPartition, int] | None,
                  error: BaseException | None) -> None:
        if error is not None:
            self._append(ConsumerFn.COMMIT, OpType.FAIL, error=type(error).__name__)
            return
        assert offsets is not None
        if offsets:
            self._append(ConsumerFn.COMMIT, offsets=tuple(
                CommittedOffset(tp.topic, tp.partition, off)
                for tp, off in sorted(offsets.items())))


@dataclass(slots=True)
class _Slot:
    name: str
    incarnation: int = 0
    handle: Any = None
    pid: int | None = None
    files: list[str] = field(default_factory=list)


class VerifiableConsumerGroup:
    """`members` ConsumerActors in group `group` reading `topic`; see the module docstring."""

    def __init__(self, bootstrap_servers: str, topic: str, group: str, out_dir: str | Path,
                 clock: RunClock, *, members: int = 3, namespace: str | None = None,
                 config: dict[str, Any] | None = None,
                 actor_options: dict[str, Any] | None = None) -> None:
        self.topic = topic
        self.group = group
        self._servers = bootstrap_servers
        self._dir = Path(out_dir)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._namespace = namespace
        self._actor_options = dict(actor_options or {})  # e.g. pinned to a Ray node
        self._config = {**CONSUMER_DEFAULTS, **(config or {})}
        self._slots = {f"c{i}": _Slot(f"c{i}") for i in range(members)}

    # -- ConsumerGroupHandle --

    def member_names(self) -> list[str]:
        return sorted(self._slots)

    def live_member_names(self) -> list[str]:
        return [n for n, s in sorted(self._slots.items()) if s.handle is not None]

    def kill_member(self, name: str) -> None:
        slot = self._slots[name]
        handle, slot.handle = slot.handle, None
        if handle is None:
            raise LookupError(f"consumer {name} is not running")
        kill_and_wait(handle, slot.pid, what=f"consumer {name}")
        log.info("chaos: killed consumer %s (pid %s)", name, slot.pid)

    def restart_member(self, name: str) -> None:
        slot = self._slots[name]
        if slot.handle is not None:
            self.kill_member(name)
        self._spawn(slot)

    def member_pid(self, name: str) -> int:
        slot = self._slots[name]
        if slot.handle is None or slot.pid is None:
            raise LookupError(f"consumer {name} is not running")
        return slot.pid

    def member_handle(self, name: str) -> Any:
        """The running member's actor (its chaos hooks set its fault table)."""
        slot = self._slots[name]
        if slot.handle is None:
            raise LookupError(f"consumer {name} is not running")
        return slot.handle

    # -- lifecycle --

    def start(self) -> None:
        for slot in self._slots.values():
            self._spawn(slot)

    def _spawn(self, slot: _Slot) -> None:
        from clients.consumer_actor import ConsumerActor

        slot.incarnation += 1
        path = str(self._dir / f"{slot.name}.{slot.incarnation}.jsonl")
        slot.files.append(path)
        recorder = ConsumerRecorder(path, process=slot.name, group=self.group, clock=self._clock)
        options: dict[str, Any] = {"name": f"chaos-consumer-{slot.name}-{slot.incarnation}",
                                   **self._actor_options}
        if self._namespace:
            options["namespace"] = self._namespace
        handle: Any = ConsumerActor.options(**options).remote(  # type: ignore[attr-defined]
            recorder, [self.topic], group_id=self.group, bootstrap_servers=self._servers,
            batch=True, listener=recorder, on_commit=recorder.on_commit, keep_records=False,
            poll_timeout=0.2, client_id=f"chaos-{slot.name}",
            node_name=Target("consumer", slot.name).actor_name, **self._config)
        ray.get(handle.start.remote(), timeout=30)
        slot.pid = int(ray.get(handle.pid.remote(), timeout=30))
        slot.handle = handle

    def statuses(self) -> dict[str, dict[str, Any] | None]:
        refs = {n: s.handle.status.remote() for n, s in self._slots.items() if s.handle}
        out: dict[str, dict[str, Any] | None] = {n: None for n in self._slots}
        for name, ref in refs.items():
            try:
                out[name] = ray.get(ref, timeout=5)
            except Exception:  # noqa: BLE001 - dead or silent
                out[name] = None
        return out

    def wait_assigned(self, partitions: int, timeout_s: float) -> None:
        """Until the live members, all in one generation, own all `partitions` between them."""
        deadline = time.monotonic() + timeout_s
        while True:
            sts = [s for s in self.statuses().values() if s is not None]
            owned = {tuple(tp) for s in sts for tp in s["assignment"]}
            gens = {s["generation"] for s in sts}
            if sts and len(gens) == 1 and min(gens) >= 0 and len(owned) >= partitions:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"group {self.group}: not assigned after {timeout_s}s: "
                                   f"{sts}")
            time.sleep(0.1)

    def caught_up(self, end_offsets: dict[TopicPartition, int]) -> bool:
        """Whether the recorded commits reached `end_offsets` (the drain condition)."""
        committed: dict[TopicPartition, int] = {}
        for event in self.events():
            if isinstance(event, ConsumerOp) and event.f is ConsumerFn.COMMIT \
                    and event.type is OpType.OK:
                for o in event.offsets:
                    committed[o.tp] = max(committed.get(o.tp, 0), o.offset)
        return all(committed.get(tp, 0) >= end for tp, end in end_offsets.items() if end > 0)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop every live member gracefully (commit and leave), then kill its actor."""
        slots = [s for s in self._slots.values() if s.handle is not None]
        refs = [s.handle.stop.remote(timeout_s) for s in slots]
        try:
            ray.get(refs, timeout=timeout_s + 5)
        except Exception as exc:  # noqa: BLE001 - the kill below ends them anyway
            log.info("consumer stop: %r", exc)
        for slot in slots:
            ray.kill(slot.handle, no_restart=True)
            slot.handle = None

    # -- the recorded events --

    def files(self) -> list[str]:
        return [f for s in self._slots.values() for f in s.files if os.path.exists(f)]

    def events(self) -> list[Event]:
        out: list[Event] = []
        for path in self.files():
            out.extend(iter_history(path))
        return out

    def merge_into(self, main: Iterable[Event]) -> list[Event]:
        """The main history and every member file merged by time, each in its own order."""
        return merge_by_time([list(main)] + [list(iter_history(f)) for f in self.files()])


def merge_by_time(sources: list[list[Event]]) -> list[Event]:
    """Merge event lists by `time_ms` (final reads last), keeping each list's own order."""
    def keyed(events: list[Event]) -> Iterator[tuple[tuple[int, int], Event]]:
        for e in events:
            yield (isinstance(e, FinalRead), e.time_ms), e

    merged = heapq.merge(*(keyed(s) for s in sources), key=lambda t: t[0])
    return [e for _, e in merged]
