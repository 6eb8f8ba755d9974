"""The chaos history: every operation and every fault of a run, one JSON object per line.

Workloads and the nemesis append to one history file while a run goes on; after healing, the
harness appends a final read of every partition from every replica. The checkers
(`chaos.checkers`) are pure functions over the parsed `History`, so a live run, a simulated
run and a hand-built test history are judged by the same code.

Schema (every line has `"f"`, which names the event kind, and `"time_ms"`, milliseconds on the
one clock of the run, e.g. since its start; lines are in the order they were appended, which
is the real order of invokes and completions as seen by the recording process):

- Producer sends (`SendOp`), `f = "send"`. Each send is two lines with the same `process` and
  `value`: an `invoke`, then its outcome:
  `{"f": "send", "type": "invoke"|"ok"|"fail"|"info", "process": str, "topic": str,
  "partition": int|null, "key": scalar, "value": scalar, "offset": int|null,
  "error": str|null, "acks": -1|0|1, "idempotent": bool, "producer_id": int|null,
  "time_ms": int}`.
  `ok` carries the acked partition and offset (no offset with acks=0, where `ok` only means
  written to the socket: such sends are never judged); `fail` means the broker definitely
  rejected it (it may still appear in the log: a failed op that appears is not a violation);
  `info` is indeterminate (timeout): it may or may not have been written. Values are unique per
  run and never null (the checkers pair an outcome with its invoke by `(process, value)`).
  `acks = -1` means `acks=all`.
- Consumer operations (`ConsumerOp`), `f` in `poll | commit | assign | revoke`:
  `{"f": ..., "type": "ok"|"fail"|"info", "process": str, "member_id": str, "group": str,
  "generation": int, "partitions": [[topic, partition], ...],
  "records": [[topic, partition, offset, key, value], ...],
  "offsets": [[topic, partition, offset], ...], "reset": bool, "error": str|null,
  "time_ms": int}`.
  `assign.partitions` is the member's WHOLE assignment in `generation` (not a delta, also
  under the cooperative protocol); `revoke.partitions` are the partitions it gave up.
  `poll.records` are the records one poll returned; `commit.offsets` are the offsets a commit
  asked for (the next offset to read, as in Kafka), and `reset` marks a commit made by an
  explicit seek or `auto.offset.reset` (it may legitimately go backwards).
- Faults (`FaultOp`), `f` in `kill | restart | pause | resume | partition | heal | slow |
  torn-write | corrupt | node-loss`: `{"f": ..., "target": str, "detail": {...},
  "time_ms": int}`, written when the fault took effect. `target` uses the CLI syntax
  (`broker:2`, `controller:1`, `leader:orders/0`, `coordinator:g1`, `consumer:c1`); `detail`
  is free-form (resolved broker id, peers, bytes cut); `detail["partitions"]`, a list of
  `[topic, partition]`, names the partitions a fault aims at when the target does not.
- Metadata timeline (`MetadataOp`), `f = "metadata"`: `{"topic", "partition", "leader"
  (-1 = none), "leader_epoch", "isr": [broker ids], "time_ms"}`, appended when the observer
  sees a change. It lags the leader's own view (see `chaos.checkers.isr`).
- Final reads (`FinalRead`), `f = "final-read"`: `{"replica": broker id, "topic",
  "partition", "records": [[offset, key, value, crc|null], ...], "high_watermark",
  "log_end_offset", "log_start_offset", "is_leader": bool, "time_ms"}`, one per replica per
  partition, read after healing.

Keys and values are JSON scalars (`str`, `int` or null for keys); workloads choose them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import IO, ClassVar, Union

from clients.types import TopicPartition

Datum = Union[str, int, None]
Json = Union[str, int, float, bool, None, list["Json"], dict[str, "Json"]]

ACKS_ALL = -1
NO_LEADER = -1


class OpType(str, Enum):
    INVOKE = "invoke"
    OK = "ok"
    FAIL = "fail"  # definitely not done by the broker's word (it may still be in the log)
    INFO = "info"  # indeterminate: a timeout or a lost connection


class ConsumerFn(str, Enum):
    POLL = "poll"
    COMMIT = "commit"
    ASSIGN = "assign"
    REVOKE = "revoke"


class FaultKind(str, Enum):
    KILL = "kill"
    RESTART = "restart"
    PAUSE = "pause"
    RESUME = "resume"
    PARTITION = "partition"
    HEAL = "heal"
    SLOW = "slow"
    TORN_WRITE = "torn-write"
    CORRUPT = "corrupt"
    NODE_LOSS = "node-loss"


@dataclass(frozen=True, slots=True)
class SendOp:
    F: ClassVar[str] = "send"
    process: str
    type: OpType
    topic: str
    partition: int | None
    key: Datum
    value: Datum
    time_ms: int
    acks: int = ACKS_ALL
    idempotent: bool = True
    producer_id: int | None = None
    offset: int | None = None  # invariant: set for OK unless acks=0 (nothing acknowledges)
    error: str | None = None

    def __post_init__(self) -> None:
        assert self.value is not None, "send values are unique and never null"
        if self.type is OpType.OK:
            assert self.partition is not None, f"ok send of {self.value!r} has no partition"
            assert self.offset is not None or self.acks == 0, (
                f"ok send of {self.value!r} with acks={self.acks} has no offset")

    @property
    def tp(self) -> TopicPartition:
        assert self.partition is not None, f"send of {self.value!r} has no partition"
        return TopicPartition(self.topic, self.partition)

    def to_json(self) -> dict[str, Json]:
        return {
            "f": self.F, "type": self.type.value, "process": self.process,
            "topic": self.topic, "partition": self.partition, "key": self.key,
            "value": self.value, "offset": self.offset, "error": self.error,
            "acks": self.acks, "idempotent": self.idempotent,
            "producer_id": self.producer_id, "time_ms": self.time_ms,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Json]) -> SendOp:
        return cls(
            process=str(d["process"]), type=OpType(d["type"]), topic=str(d["topic"]),
            partition=_opt_int(d.get("partition")), key=_datum(d.get("key")),
            value=_datum(d["value"]), time_ms=_int(d["time_ms"]),
            acks=_acks(d.get("acks", ACKS_ALL)), idempotent=bool(d.get("idempotent", True)),
            producer_id=_opt_int(d.get("producer_id")), offset=_opt_int(d.get("offset")),
            error=_opt_str(d.get("error")),
        )


@dataclass(frozen=True, slots=True)
class PolledRecord:
    topic: str
    partition: int
    offset: int
    key: Datum
    value: Datum

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


@dataclass(frozen=True, slots=True)
class CommittedOffset:
    topic: str
    partition: int
    offset: int  # the next offset the group will read

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


@dataclass(frozen=True, slots=True)
class ConsumerOp:
    f: ConsumerFn
    process: str
    member_id: str
    group: str
    generation: int
    time_ms: int
    type: OpType = OpType.OK
    partitions: tuple[TopicPartition, ...] = ()
    records: tuple[PolledRecord, ...] = ()
    offsets: tuple[CommittedOffset, ...] = ()
    reset: bool = False
    error: str | None = None

    def to_json(self) -> dict[str, Json]:
        return {
            "f": self.f.value, "type": self.type.value, "process": self.process,
            "member_id": self.member_id, "group": self.group, "generation": self.generation,
            "partitions": [[tp.topic, tp.partition] for tp in self.partitions],
            "records": [[r.topic, r.partition, r.offset, r.key, r.value] for r in self.records],
            "offsets": [[o.topic, o.partition, o.offset] for o in self.offsets],
            "reset": self.reset, "error": self.error, "time_ms": self.time_ms,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Json]) -> ConsumerOp:
        return cls(
            f=ConsumerFn(d["f"]), type=OpType(d.get("type", "ok")), process=str(d["process"]),
            member_id=str(d.get("member_id", d["process"])), group=str(d["group"]),
            generation=_int(d.get("generation", -1)), time_ms=_int(d["time_ms"]),
            partitions=tuple(TopicPartition(str(t), _int(p)) for t, p in _rows(d, "partitions")),
            records=tuple(
                PolledRecord(str(t), _int(p), _int(o), _datum(k), _datum(v))
                for t, p, o, k, v in _rows(d, "records")
            ),
            offsets=tuple(
                CommittedOffset(str(t), _int(p), _int(o)) for t, p, o in _rows(d, "offsets")
            ),
            reset=bool(d.get("reset", False)), error=_opt_str(d.get("error")),
        )


@dataclass(frozen=True, slots=True)
class FaultOp:
    f: FaultKind
    target: str
    time_ms: int
    detail: Mapping[str, Json] = field(default_factory=dict)

    @property
    def role(self) -> str:
        """The target's role: `broker`, `controller`, `leader`, `coordinator`, `consumer`..."""
        return self.target.split(":", 1)[0]

    def to_json(self) -> dict[str, Json]:
        return {"f": self.f.value, "target": self.target, "detail": dict(self.detail),
                "time_ms": self.time_ms}

    @classmethod
    def from_json(cls, d: Mapping[str, Json]) -> FaultOp:
        detail = d.get("detail") or {}
        assert isinstance(detail, dict), f"fault detail must be an object: {detail!r}"
        return cls(f=FaultKind(d["f"]), target=str(d["target"]), time_ms=_int(d["time_ms"]),
                   detail=detail)


@dataclass(frozen=True, slots=True)
class MetadataOp:
    F: ClassVar[str] = "metadata"
    topic: str
    partition: int
    leader: int  # NO_LEADER when offline
    leader_epoch: int
    isr: tuple[int, ...]
    time_ms: int

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def to_json(self) -> dict[str, Json]:
        return {"f": self.F, "topic": self.topic, "partition": self.partition,
                "leader": self.leader, "leader_epoch": self.leader_epoch,
                "isr": list(self.isr), "time_ms": self.time_ms}

    @classmethod
    def from_json(cls, d: Mapping[str, Json]) -> MetadataOp:
        isr = d.get("isr") or []
        assert isinstance(isr, list)
        leader = d.get("leader")
        return cls(topic=str(d["topic"]), partition=_int(d["partition"]),
                   leader=NO_LEADER if leader is None else _int(leader),
                   leader_epoch=_int(d.get("leader_epoch", -1)),
                   isr=tuple(_int(b) for b in isr), time_ms=_int(d["time_ms"]))


@dataclass(frozen=True, slots=True)
class FinalRecord:
    offset: int
    key: Datum
    value: Datum
    crc: int | None = None  # the batch CRC, when the reader has it: replicas compare it too


@dataclass(frozen=True, slots=True)
class FinalRead:
    F: ClassVar[str] = "final-read"
    replica: int
    topic: str
    partition: int
    records: tuple[FinalRecord, ...]
    high_watermark: int
    log_end_offset: int
    log_start_offset: int = 0
    is_leader: bool = False
    time_ms: int = 0

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def to_json(self) -> dict[str, Json]:
        return {"f": self.F, "replica": self.replica, "topic": self.topic,
                "partition": self.partition,
                "records": [[r.offset, r.key, r.value, r.crc] for r in self.records],
                "high_watermark": self.high_watermark, "log_end_offset": self.log_end_offset,
                "log_start_offset": self.log_start_offset, "is_leader": self.is_leader,
                "time_ms": self.time_ms}

    @classmethod
    def from_json(cls, d: Mapping[str, Json]) -> FinalRead:
        records = tuple(
            FinalRecord(_int(row[0]), _datum(row[1]), _datum(row[2]),
                        _opt_int(row[3]) if len(row) > 3 else None)
            for row in _rows(d, "records")
        )
        return cls(replica=_int(d["replica"]), topic=str(d["topic"]),
                   partition=_int(d["partition"]), records=records,
                   high_watermark=_int(d["high_watermark"]),
                   log_end_offset=_int(d["log_end_offset"]),
                   log_start_offset=_int(d.get("log_start_offset", 0)),
                   is_leader=bool(d.get("is_leader", False)), time_ms=_int(d.get("time_ms", 0)))


Event = Union[SendOp, ConsumerOp, FaultOp, MetadataOp, FinalRead]

_CONSUMER_FNS = {fn.value for fn in ConsumerFn}
_FAULT_KINDS = {k.value for k in FaultKind}


def event_from_json(d: Mapping[str, Json]) -> Event:
    """Parse one history line's object; raises ValueError on an unknown `f`."""
    f = d.get("f")
    if f == SendOp.F:
        return SendOp.from_json(d)
    if f in _CONSUMER_FNS:
        return ConsumerOp.from_json(d)
    if f in _FAULT_KINDS:
        return FaultOp.from_json(d)
    if f == MetadataOp.F:
        return MetadataOp.from_json(d)
    if f == FinalRead.F:
        return FinalRead.from_json(d)
    raise ValueError(f"unknown history event f={f!r}")


@dataclass(frozen=True, slots=True)
class History:
    """A parsed history: events in append order, plus views by kind (same order)."""

    events: tuple[Event, ...]

    @classmethod
    def of(cls, events: Iterable[Event]) -> History:
        return cls(tuple(events))

    @property
    def sends(self) -> list[SendOp]:
        return [e for e in self.events if isinstance(e, SendOp)]

    @property
    def consumer_ops(self) -> list[ConsumerOp]:
        return [e for e in self.events if isinstance(e, ConsumerOp)]

    @property
    def faults(self) -> list[FaultOp]:
        return [e for e in self.events if isinstance(e, FaultOp)]

    @property
    def metadata(self) -> list[MetadataOp]:
        return [e for e in self.events if isinstance(e, MetadataOp)]

    @property
    def final_reads(self) -> list[FinalRead]:
        return [e for e in self.events if isinstance(e, FinalRead)]

    def end_ms(self) -> int:
        """The latest time of the run (0 when empty); final reads, taken after it, don't count."""
        return max((e.time_ms for e in self.events if not isinstance(e, FinalRead)), default=0)

    def start_ms(self) -> int:
        return min((e.time_ms for e in self.events if not isinstance(e, FinalRead)), default=0)


class HistoryWriter:
    """Appends events to a JSON-lines file; each line is flushed as it is written.

    Thread-safe: workload threads and the nemesis share one writer, and the lock makes the
    file order the order in which `append` was called. Usable as a context manager. Events
    appended after `close` (a late delivery callback of an interrupted run) are dropped and
    counted in `dropped`: the history ended when it was closed.
    """

    def __init__(self, path: str | Path, *, append: bool = False) -> None:
        """Open `path` for writing: truncated, or with `append=True` added to."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file: IO[str] | None = self.path.open("a" if append else "w", encoding="utf-8")
        self.dropped = 0

    def append(self, event: Event) -> None:
        line = json.dumps(event.to_json(), separators=(",", ":"), sort_keys=False)
        with self._lock:
            if self._file is None:
                self.dropped += 1
                return
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_history(path: str | Path) -> Iterator[Event]:
    """Yield the events of a history file. A torn last line (the writer died mid-write) is
    skipped; a bad line anywhere else raises ValueError naming its line number."""
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            yield event_from_json(json.loads(line))
        except (ValueError, KeyError, TypeError, AssertionError) as e:
            if i == last and not line.endswith("}"):
                return
            raise ValueError(f"{path}:{i + 1}: bad history line: {e}") from e


def read_history(path: str | Path) -> History:
    return History.of(iter_history(path))


def write_history(path: str | Path, events: Iterable[Event], *, append: bool = False) -> None:
    """Write a whole history at once (tests and the simulator)."""
    with HistoryWriter(path, append=append) as writer:
        for event in events:
            writer.append(event)


def _rows(d: Mapping[str, Json], key: str) -> list[list[Json]]:
    rows = d.get(key) or []
    assert isinstance(rows, list), f"{key} must be a list"
    out: list[list[Json]] = []
    for row in rows:
        assert isinstance(row, list), f"{key} rows must be lists: {row!r}"
        out.append(row)
    return out


def _int(x: Json) -> int:
    if isinstance(x, bool) or not isinstance(x, int):
        raise ValueError(f"expected an integer, got {x!r}")
    return x


def _opt_int(x: Json) -> int | None:
    return None if x is None else _int(x)


def _opt_str(x: Json) -> str | None:
    return None if x is None else str(x)


def _datum(x: Json) -> Datum:
    if x is None or isinstance(x, (str, int)) and not isinstance(x, bool):
        return x
    raise ValueError(f"keys and values are str, int or null, got {x!r}")


def _acks(x: Json) -> int:
    if x == "all":
        return ACKS_ALL
    acks = _int(x)
    if acks not in (ACKS_ALL, 0, 1):
        raise ValueError(f"acks must be all, -1, 0 or 1, got {acks}")
    return acks
