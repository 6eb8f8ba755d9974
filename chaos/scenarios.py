"""Chaos scenarios: named, composable schedules of fault steps over a run.

A scenario is a function `(ScenarioContext) -> list[Step]`. A `Step` says when (seconds
since the workloads started) to do what (`action`) to whom (`target`, a chaos/targets.py
spec, or `@name`: the targets an earlier step saved under `name`). The `Nemesis` runs the
steps in time order on the main thread against a `FaultInjector` (chaos/faults.py), which
records every fault in the history. Faults start after a warm-up and stop before the run's
end, so every run ends healed and with time to recover.

Names compose with `+` (`leader-kill+consumer-kill`): the schedules are merged by time, each
keeping its own saved names. `random` is a seeded mix of the other episodes, one at a time.

Actions:
    kill / pause            target; saves the resolved targets under `save`
    restart / resume        target (usually `@saved`)
    partition               target (side A) against every other broker and controller
    slow                    target, `delay_ms`
    heal                    every link
    torn-write / corrupt    the broker(s) of target, partition `partition` (broker down)
    kill-followers          every replica of partition `partition` except its leader
    await-isr               wait (bounded) until every partition's ISR is full again
    lose-node               target's Ray node (a multi-node Ray of the run's own; else skipped)
    restore                 resume, heal, restart everything (the end of a run does it too)
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Step:
    at_s: float
    action: str
    target: str | None = None
    save: str | None = None  # remember the resolved targets under this name
    partition: int | None = None
    delay_ms: int = 0


@dataclass(frozen=True, slots=True)
class Expectation:
    """What a scenario promises beyond the checkers (judged by chaos.run_runtime)."""

    acks_all_refused_below_min_isr: bool = False  # acks=all sends fail while ISR < min
    acks1_acked_below_min_isr: bool = False  # while acks=1 sends still succeed
    isr_grows_back: bool = False  # and the ISR is full again at the end


@dataclass(frozen=True, slots=True)
class ScenarioContext:
    duration_s: float
    rng: random.Random
    topic: str
    partitions: int
    group: str
    brokers: int
    warmup_s: float = 3.0
    cooldown_s: float = 3.0

    @property
    def window(self) -> tuple[float, float]:
        """When faults may start: after the warm-up, until the cool-down."""
        return self.warmup_s, max(self.warmup_s + 1.0, self.duration_s - self.cooldown_s)

    def some_partition(self) -> int:
        return self.rng.randrange(self.partitions)


Episode = Callable[[ScenarioContext, float, str], tuple[list[Step], float]]
"""(context, start time, name prefix) -> (steps, seconds the episode lasts)."""


# -- episodes: one fault and its repair ------------------------------------------------------


def _bounce(kind: str, spec: Callable[[ScenarioContext], str], down_s: float,
            undo: str) -> Episode:
    def episode(ctx: ScenarioContext, t: float, name: str) -> tuple[list[Step], float]:
        return [Step(t, kind, spec(ctx), save=name),
                Step(t + down_s, undo, f"@{name}")], down_s
    return episode


def _leader(ctx: ScenarioContext) -> str:
    return f"leader:{ctx.topic}/{ctx.some_partition()}"


def _follower(ctx: ScenarioContext) -> str:
    return f"follower:{ctx.topic}/{ctx.some_partition()}"


leader_kill = _bounce("kill", _leader, 3.0, "restart")
follower_kill = _bounce("kill", _follower, 3.0, "restart")
controller_leader_kill = _bounce("kill", lambda ctx: "controller:leader", 3.0, "restart")
pause_leader = _bounce("pause", _leader, 3.0, "resume")
consumer_kill = _bounce("kill", lambda ctx: "consumer:random", 4.0, "restart")
coordinator_kill = _bounce("kill", lambda ctx: f"coordinator:{ctx.group}", 3.0, "restart")


def partition_leader_from_majority(ctx: ScenarioContext, t: float,
                                   name: str) -> tuple[list[Step], float]:
    return [Step(t, "partition", _leader(ctx)), Step(t + 4.0, "heal")], 4.0


def slow_leader(ctx: ScenarioContext, t: float, name: str) -> tuple[list[Step], float]:
    return [Step(t, "slow", _leader(ctx), delay_ms=150), Step(t + 3.0, "heal")], 3.0


def torn_write_restart(ctx: ScenarioContext, t: float, name: str) -> tuple[list[Step], float]:
    p = ctx.some_partition()
    action = "torn-write" if ctx.rng.random() < 0.7 else "corrupt"
    return [Step(t, "kill", f"leader:{ctx.topic}/{p}", save=name),
            Step(t + 0.5, action, f"@{name}", partition=p),
            Step(t + 2.5, "restart", f"@{name}")], 2.5


def rolling_restart(ctx: ScenarioContext, t: float, name: str) -> tuple[list[Step], float]:
    steps: list[Step] = []
    at = t
    for broker in range(1, ctx.brokers + 1):
        # Steps block (a restart returns once the broker is back, await-isr once every ISR
        # is full), so these times are only the earliest starts: the next broker goes down
        # after the previous one caught up, however long that takes.
        steps += [Step(at, "kill", f"broker:{broker}", save=f"{name}{broker}"),
                  Step(at + 0.5, "restart", f"@{name}{broker}"),
                  Step(at + 0.6, "await-isr")]
        at += 1.0
    return steps, at - t


ISR_SHRINK_PARTITION = 0


def isr_shrink_to_min(ctx: ScenarioContext, t: float, name: str) -> tuple[list[Step], float]:
    p = ISR_SHRINK_PARTITION  # the acks=1 producer writes there too
    return [Step(t, "kill-followers", None, save=name, partition=p),
            Step(t + 6.0, "restart", f"@{name}"),
            Step(t + 6.5, "await-isr")], 6.5


def node_loss(ctx: ScenarioContext, t: float, name: str) -> tuple[list[Step], float]:
    return [Step(t, "lose-node", _leader(ctx)), Step(t + 4.0, "restore")], 4.0


# -- scenarios -------------------------------------------------------------------------------


def repeat(episode: Episode, *, min_gap_s: float = 3.0, limit: int | None = None
           ) -> Callable[[ScenarioContext, str], list[Step]]:
    """The episode again and again through the fault window, `min_gap_s` apart."""
    def schedule(ctx: ScenarioContext, prefix: str) -> list[Step]:
        start, end = ctx.window
        steps: list[Step] = []
        t, n = start, 0
        while limit is None or n < limit:
            got, length = episode(ctx, t, f"{prefix}{n}")
            if t + length > end and n > 0:
                break
            steps += got
            n += 1
            t += length + min_gap_s + ctx.rng.uniform(0, 1.0)
        return steps
    return schedule


RANDOM_EPISODES: dict[str, Episode] = {
    "leader-kill": leader_kill,
    "follower-kill": follower_kill,
    "controller-leader-kill": controller_leader_kill,
    "pause-leader": pause_leader,
    "partition-leader-from-majority": partition_leader_from_majority,
    "consumer-kill": consumer_kill,
    "coordinator-kill": coordinator_kill,
    "torn-write-restart": torn_write_restart,
    "slow-leader": slow_leader,
}


def random_mix(ctx: ScenarioContext, prefix: str) -> list[Step]:
    """A seeded sequence of episodes, one at a time, with short gaps."""
    start, end = ctx.window
    names = sorted(RANDOM_EPISODES)
    steps: list[Step] = []
    t, n = start, 0
    while True:
        episode = RANDOM_EPISODES[ctx.rng.choice(names)]
        got, length = episode(ctx, t, f"{prefix}{n}")
        if t + length > end and n > 0:
            break
        steps += got
        n += 1
        t += length + ctx.rng.uniform(1.0, 3.0)
    return steps


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    schedule: Callable[[ScenarioContext, str], list[Step]]
    doc: str
    expect: Expectation = field(default_factory=Expectation)
    acks1_producer: bool = False  # also run an acks=1 producer (isr-shrink-to-min)
    needs_nodes: bool = False


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("none", lambda ctx, prefix: [], "no faults (a baseline)"),
    Scenario("leader-kill", repeat(leader_kill), "kill a partition leader, restart it"),
    Scenario("follower-kill", repeat(follower_kill), "kill a follower, restart it"),
    Scenario("controller-leader-kill", repeat(controller_leader_kill),
             "kill the active controller, restart it"),
    Scenario("rolling-restart", repeat(rolling_restart, limit=1),
             "kill and restart each broker in turn, waiting for the ISR in between"),
    Scenario("pause-leader", repeat(pause_leader), "SIGSTOP a partition leader, then SIGCONT"),
    Scenario("partition-leader-from-majority", repeat(partition_leader_from_majority),
             "cut a partition leader off from every other broker and controller, then heal"),
    Scenario("isr-shrink-to-min", repeat(isr_shrink_to_min, limit=1),
             "kill the followers of a partition: acks=all must fail, acks=1 succeed; "
             "restart them and the ISR grows back",
             Expectation(True, True, True), acks1_producer=True),
    Scenario("consumer-kill", repeat(consumer_kill), "kill a group member, restart it"),
    Scenario("coordinator-kill", repeat(coordinator_kill),
             "kill the group's coordinator broker, restart it"),
    Scenario("torn-write-restart", repeat(torn_write_restart),
             "kill a leader, tear (or corrupt) its last batch, restart it"),
    Scenario("node-loss", repeat(node_loss, limit=1),
             "lose the Ray node of a partition leader (multi-node Ray only)", needs_nodes=True),
    Scenario("random", random_mix, "a seeded mix of the episodes above, one at a time"),
)}


def parse_scenario(text: str) -> list[Scenario]:
    """`a+b` (or `a,b`) → the named scenarios.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    names = [n.strip() for n in text.replace(",", "+").split("+") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        raise ValueError(f"unknown scenario {text!r}; one of {', '.join(SCENARIOS)} "
                         "(compose with +)")
    return [SCENARIOS[n] for n in names]


def build_schedule(scenarios: Sequence[Scenario], ctx: ScenarioContext) -> list[Step]:
    """Every scenario's steps, merged by time (stable: a scenario's own order is kept)."""
    steps: list[Step] = []
    for i, scenario in enumerate(scenarios):
        steps += scenario.schedule(ctx, f"s{i}.")
    return sorted(steps, key=lambda s: s.at_s)


# -- running a schedule ----------------------------------------------------------------------


class Injector(Protocol):
    """What the nemesis needs of chaos.faults.FaultInjector."""

    def kill(self, spec: Any) -> list[Any]: ...
    def restart(self, spec_or_targets: Any) -> list[Any]: ...
    def pause(self, spec: Any) -> list[Any]: ...
    def resume(self, spec_or_targets: Any) -> list[Any]: ...
    def partition(self, side_a: Any, side_b: Any = None) -> None: ...
    def slow(self, spec: Any, delay_ms: int, peers: Any = None) -> None: ...
    def heal(self) -> None: ...
    def torn_write(self, broker_id: int, topic: str, partition: int) -> Any: ...
    def corrupt_tail(self, broker_id: int, topic: str, partition: int) -> Any: ...
    def restore(self) -> None: ...


@dataclass(slots=True)
class NemesisHooks:
    """What some actions need from the run (the replicas of a partition, the ISR)."""

    replicas_of: Callable[[int], tuple[int, list[int]]]  # partition → (leader, replicas)
    await_isr: Callable[[float], bool]  # timeout_s → whether every ISR is full
    lose_node: Callable[[str], Any] | None = None


class Nemesis:
    """Runs a schedule on the calling thread (the main one: Ray's node tools need signals);
    a step that fails is logged and skipped."""

    def __init__(self, injector: Injector, steps: Sequence[Step], topic: str,
                 hooks: NemesisHooks) -> None:
        self._inj = injector
        self._steps = list(steps)
        self._topic = topic
        self._hooks = hooks
        self._saved: dict[str, list[Any]] = {}
        self.done: list[tuple[float, Step]] = []
        self.skipped: list[tuple[Step, str]] = []

    def run(self, duration_s: float) -> None:
        """Run the steps at their times; returns after `duration_s`.

        A step that takes long (a restart waits until the broker is back) delays the rest of
        the schedule by as much, so the gaps between steps (how long a broker stays down)
        are kept. Steps that would then start after `duration_s` are dropped (the run's end
        restores everything); a step under way at the end finishes first.
        """
        t0 = time.monotonic()
        lag = 0.0
        for step in self._steps:
            if step.at_s + lag >= duration_s:
                break
            wait = t0 + step.at_s + lag - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # the schedule's own timing
            try:
                self.run_step(step)
                self.done.append((time.monotonic() - t0, step))
            except Exception as exc:  # noqa: BLE001 - a fault that cannot fire now is skipped
                log.warning("chaos: step %s failed: %r", step, exc)
                self.skipped.append((step, repr(exc)))
            lag = max(lag, time.monotonic() - t0 - step.at_s)
        left = t0 + duration_s - time.monotonic()
        if left > 0:
            time.sleep(left)

    def _target(self, step: Step) -> Any:
        assert step.target is not None, f"{step.action} needs a target"
        if step.target.startswith("@"):
            return self._saved.get(step.target[1:], [])
        return step.target

    def _remember(self, step: Step, targets: list[Any]) -> None:
        if step.save:
            self._saved[step.save] = list(targets)

    def run_step(self, step: Step) -> None:
        inj, action = self._inj, step.action
        if action == "kill":
            self._remember(step, inj.kill(self._target(step)))
        elif action == "pause":
            self._remember(step, inj.pause(self._target(step)))
        elif action in ("restart", "resume"):
            target = self._target(step)
            if target:
                (inj.restart if action == "restart" else inj.resume)(target)
        elif action == "partition":
            inj.partition(self._target(step))
        elif action == "slow":
            inj.slow(self._target(step), step.delay_ms)
        elif action == "heal":
            inj.heal()
        elif action in ("torn-write", "corrupt"):
            assert step.partition is not None
            fault = inj.torn_write if action == "torn-write" else inj.corrupt_tail
            for target in self._target(step):
                fault(int(target.id), self._topic, step.partition)
        elif action == "kill-followers":
            assert step.partition is not None
            leader, replicas = self._hooks.replicas_of(step.partition)
            followers = [f"broker:{b}" for b in replicas if b != leader]
            self._remember(step, inj.kill(",".join(followers)))
        elif action == "await-isr":
            self._hooks.await_isr(20.0)
        elif action == "lose-node":
            if self._hooks.lose_node is None:
                raise RuntimeError("node-loss needs a multi-node Ray cluster; skipped")
            self._hooks.lose_node(self._target(step))
        elif action == "restore":
            inj.restore()
        else:
            raise ValueError(f"unknown chaos action {action!r}")
