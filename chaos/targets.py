"""Fault targets: the `TARGET` syntax of `rafka chaos` and the resolved actors it names.

A spec names actors by id or by role; roles are resolved from live metadata when the fault
fires (chaos/faults.py), never here. Grammar (one spec; a comma separates several):

    broker:ID            a broker by id            broker:*      every broker
    controller:ID        a controller by id        controller:*  every controller
    controller:leader    the active controller
    leader:TOPIC/P       the leader of partition P of TOPIC
    follower:TOPIC/P     a random follower of it (the injector's seeded rng picks)
    coordinator:GROUP    the broker coordinating GROUP
    consumer:NAME        a consumer-group member of the workload
    consumer:random      a random member

Topic names never hold "/" (Kafka's legal characters are [a-zA-Z0-9._-]), so the last "/"
splits topic from partition. Every malformed spec is a ValueError saying what is accepted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

ALL = "*"


class TargetKind(str, Enum):
    BROKER = "broker"
    CONTROLLER = "controller"
    LEADER = "leader"
    FOLLOWER = "follower"
    COORDINATOR = "coordinator"
    CONSUMER = "consumer"


ROLES = ("broker", "controller", "consumer")  # what a spec resolves to

SYNTAX = ("broker:ID|*, controller:ID|*|leader, leader:TOPIC/PARTITION, "
          "follower:TOPIC/PARTITION, coordinator:GROUP, consumer:NAME|random")


@dataclass(frozen=True, slots=True)
class Target:
    """One resolved actor: a broker or controller by id, or a consumer member by name."""

    role: str  # "broker" | "controller" | "consumer"
    id: int | str

    def __post_init__(self) -> None:
        assert self.role in ROLES, f"unknown target role {self.role!r}"

    def __str__(self) -> str:
        return f"{self.role}:{self.id}"

    @property
    def actor_name(self) -> str:
        """The node name its fault table and its peers use (`broker-2`, `consumer-c0`)."""
        return f"{self.role}-{self.id}"


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """A parsed spec; which fields are set depends on `kind` (see the module docstring)."""

    kind: TargetKind
    text: str  # normalised spec, as recorded in the history (`FaultOp.target`)
    node_id: int | None = None  # broker:ID, controller:ID (None: every / the leader)
    every: bool = False  # broker:*, controller:*
    topic: str | None = None
    partition: int | None = None
    group: str | None = None
    name: str | None = None  # consumer:NAME (None: consumer:random)

    @property
    def is_controller_leader(self) -> bool:
        return self.kind is TargetKind.CONTROLLER and self.node_id is None and not self.every


def parse_target(spec: str) -> TargetSpec:
    """Parse one spec, e.g. `broker:2`, `leader:orders/0`, `controller:leader`.

    Raises:
        ValueError: not one of the forms in the module docstring (the message lists them).
    """
    text = spec.strip()
    role, sep, arg = text.partition(":")
    role, arg = role.strip().lower(), arg.strip()
    if not sep or not arg:
        raise ValueError(f"bad target {spec!r}: expected ROLE:ARG, one of {SYNTAX}")
    try:
        kind = TargetKind(role)
    except ValueError:
        raise ValueError(f"bad target {spec!r}: unknown role {role!r}; one of {SYNTAX}") from None
    if kind in (TargetKind.BROKER, TargetKind.CONTROLLER):
        if arg == ALL:
            return TargetSpec(kind, f"{role}:{ALL}", every=True)
        if kind is TargetKind.CONTROLLER and arg.lower() == "leader":
            return TargetSpec(kind, "controller:leader")
        return TargetSpec(kind, f"{role}:{_node_id(spec, arg)}", node_id=_node_id(spec, arg))
    if kind in (TargetKind.LEADER, TargetKind.FOLLOWER):
        topic, slash, part = arg.rpartition("/")
        if not slash or not topic or not part.isdigit():
            raise ValueError(f"bad target {spec!r}: expected {role}:TOPIC/PARTITION "
                             f"(e.g. {role}:orders/0)")
        return TargetSpec(kind, f"{role}:{topic}/{int(part)}", topic=topic, partition=int(part))
    if kind is TargetKind.COORDINATOR:
        return TargetSpec(kind, f"coordinator:{arg}", group=arg)
    name = None if arg.lower() == "random" else arg
    return TargetSpec(kind, f"consumer:{arg}", name=name)


def parse_targets(specs: str | Iterable[str]) -> list[TargetSpec]:
    """Several specs: a comma-separated string or a list of specs.

    Raises:
        ValueError: an empty list or a bad spec.
    """
    items = specs.split(",") if isinstance(specs, str) else list(specs)
    parsed = [parse_target(s) for s in items if s.strip()]
    if not parsed:
        raise ValueError(f"no target given in {specs!r}; one of {SYNTAX}")
    return parsed


def targets_text(targets: Iterable[Target]) -> str:
    """`broker:1,broker:2`: resolved targets in the CLI syntax (history `target` field)."""
    return ",".join(str(t) for t in targets)


def _node_id(spec: str, arg: str) -> int:
    if not arg.isdigit():
        raise ValueError(f"bad target {spec!r}: the id must be a number, not {arg!r}")
    return int(arg)
