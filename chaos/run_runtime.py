"""`run_chaos`: one chaos run from start to verdict (what `rafka chaos run` does).

1. Start a `LocalCluster` of its own (fast failure detection, a small __consumer_offsets, no
   initial rebalance delay) and create the topic.
2. Start the workloads on one clock (chaos/workloads): the metadata observer, the consumer
   group, the producers (plus an acks=1 producer when the scenario wants one).
3. Run the scenario's schedule (chaos/scenarios.py) through a `FaultInjector` for the
   duration, with a progress line on stderr.
4. Heal: `restore()` (resume, heal, restart all), wait until every ISR is full, stop the
   producers (their outcomes drain), let the group catch up, stop it, stop the observer.
5. Read every partition from every replica (chaos/workloads/final_reads.py), merge the
   actors' history files into `DIR/history.jsonl`, run every checker, add the scenario's own
   expectations as one more verdict, and write `DIR/report.json` and `DIR/timeline.html`.

The result is valid only if every verdict is; the CLI turns that into the exit code.
"""

from __future__ import annotations

import logging
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from chaos.checkers import CheckConfig, CheckReport, Verdict, check_all
from chaos.history import (
    ACKS_ALL, Event, FinalRead, History, HistoryWriter, Json, OpType, iter_history,
    write_history,
)
from chaos.report import write_report
from chaos.scenarios import (
    ISR_SHRINK_PARTITION, Nemesis, NemesisHooks, Scenario, ScenarioContext, build_schedule,
    parse_scenario,
)
from chaos.workloads.clock import RunClock
from chaos.workloads.consumer import VerifiableConsumerGroup
from chaos.workloads.final_reads import read_converged
from chaos.workloads.observer import MetadataObserver
from chaos.workloads.producer import ProducerSpec, VerifiableProducer
from clients.types import NewTopic, TopicPartition

log = logging.getLogger(__name__)

# Broker settings for a run: a dead broker fenced in ~1.5 s, groups that form at once.
# (A shorter session fences live brokers of a loaded machine: needless ISR churn.)
BROKER_FAST: dict[str, Any] = {
    "broker.heartbeat.interval.ms": 200,
    "broker.session.timeout.ms": 1500,
    "replica.lag.time.max.ms": 2000,
    "replica.fetch.wait.max.ms": 200,
    "replica.fetch.backoff.ms": 100,
    "offsets.topic.num.partitions": 3,
    "group.initial.rebalance.delay.ms": 0,
    "group.min.session.timeout.ms": 500,
}
CONSUMER_SESSION_MS = 3000


@dataclass(frozen=True, slots=True)
class RunConfig:
    scenario: str
    duration_s: float
    seed: int
    output: Path
    brokers: int = 3
    controllers: int = 3
    partitions: int = 6
    replication_factor: int = 3
    min_insync: int = 2
    acks: int = ACKS_ALL
    idempotent: bool = True
    producers: int = 2
    rate_per_s: float = 100.0  # per producer process
    consumers: int = 3
    topic: str = "chaos"
    group: str = "chaos-group"
    unclean: bool = False
    ack_bounds_ms: dict[str, int] = field(default_factory=lambda: {"kill:leader": 2000})
    rebalance_bounds_ms: dict[str, int] = field(
        default_factory=lambda: {"kill:consumer": CONSUMER_SESSION_MS + 2000})
    broker_config: dict[str, Any] = field(default_factory=dict)
    keep_data: bool = False  # keep the cluster's logs under DIR/data


@dataclass(frozen=True, slots=True)
class RunResult:
    report: CheckReport
    output: Path
    ops: int
    faults: int
    skipped: list[str]

    @property
    def valid(self) -> bool:
        return self.report.valid


class Progress:
    """A live line on a stream: ops/s, acks, errors and faults, refreshed every second."""

    def __init__(self, stream: IO[str] | None, name: str, duration_s: float,
                 producers: list[VerifiableProducer], faults: Callable[[], int]) -> None:
        self._stream = stream
        self._name = name
        self._duration_s = duration_s
        self._producers = producers
        self._faults = faults
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-progress", daemon=True)
        self._tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self._t0 = time.monotonic()

    def start(self) -> None:
        if self._stream is not None:
            self._t0 = time.monotonic()
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
            self._line(end="\n")

    def _totals(self) -> tuple[int, int, int]:
        invoked = ok = errors = 0
        for p in self._producers:
            invoked += p.stats.invoked
            ok += p.stats.outcomes["ok"]
            errors += p.stats.outcomes["fail"] + p.stats.outcomes["info"]
        return invoked, ok, errors

    def _line(self, rate: float = 0.0, end: str = "") -> None:
        assert self._stream is not None
        invoked, ok, errors = self._totals()
        elapsed = time.monotonic() - self._t0
        text = (f"[chaos {self._name}] {elapsed:5.1f}/{self._duration_s:.0f}s "
                f"{rate:6.0f} ops/s  sent {invoked}  acked {ok}  errors {errors}  "
                f"faults {self._faults()}")
        self._stream.write(("\r" + text if self._tty else text + "\n") + end)
        self._stream.flush()

    def _run(self) -> None:
        last, last_t, tick = 0, time.monotonic(), 0
        while not self._stop.wait(1.0):
            now = time.monotonic()
            ok = self._totals()[1]
            tick += 1
            if self._tty or tick % 5 == 0:
                self._line((ok - last) / max(now - last_t, 1e-3))
            last, last_t = ok, now


def run_chaos(config: RunConfig, *, progress: IO[str] | None = sys.stderr) -> RunResult:
    """Run one scenario against a fresh cluster; see the module docstring.

    Raises:
        ValueError: an unknown scenario name.
    """
    import ray

    from cluster.launcher import LocalCluster, unique_name

    scenarios = parse_scenario(config.scenario)
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    nodes: Any = None
    if any(s.needs_nodes for s in scenarios) and not ray.is_initialized():
        from chaos.nodes import RayNodes  # a multi-node Ray of its own, for node loss

        nodes = RayNodes(workers=config.brokers).start()
    broker_config = {**BROKER_FAST, "min.insync.replicas": config.min_insync,
                     "unclean.leader.election.enable": config.unclean,
                     "offsets.topic.replication.factor": min(3, config.brokers),
                     **config.broker_config}
    cluster = LocalCluster(
        brokers=config.brokers, controllers=config.controllers, name=unique_name("chaos"),
        data_dir=str(out / "data") if config.keep_data else None,
        broker_config=broker_config, log_level="WARNING", seed=config.seed,
        actor_options=nodes.actor_options if nodes is not None else None)
    try:
        cluster.start()
        return _Run(config, scenarios, cluster, out, progress, nodes).run()
    finally:
        cluster.close()
        if nodes is not None:
            nodes.shutdown()


class _Run:
    """One run's moving parts (kept together so that teardown reaches all of them)."""

    def __init__(self, config: RunConfig, scenarios: list[Scenario], cluster: Any, out: Path,
                 progress: IO[str] | None, nodes: Any = None) -> None:
        from clients.admin import Admin

        self.config = config
        self.scenarios = scenarios
        self.cluster = cluster
        self.out = out
        self.progress_stream = progress
        self.nodes = nodes  # chaos.nodes.RayNodes, or None on a one-node Ray
        self.admin = Admin(bootstrap_servers=cluster.bootstrap_servers,
                           request_timeout_ms=3000, default_api_timeout_ms=10000)
        self.live_path = out / "history.live.jsonl"
        self.history_path = out / "history.jsonl"

    # -- the phases --

    def run(self) -> RunResult:
        from chaos.faults import FaultInjector

        cfg = self.config
        self._create_topic()
        clock = RunClock()
        writer = HistoryWriter(self.live_path)
        observer = MetadataObserver(self.cluster.bootstrap_servers, [cfg.topic], writer, clock)
        group = VerifiableConsumerGroup(
            self.cluster.bootstrap_servers, cfg.topic, cfg.group, self.out / "consumers",
            clock, members=cfg.consumers, config={"session_timeout_ms": CONSUMER_SESSION_MS},
            actor_options=self.nodes.actor_options("consumer") if self.nodes else None)
        producers = self._producers(writer, clock)
        injector = FaultInjector(self.cluster, history=writer, rng=random.Random(cfg.seed + 1),
                                 consumers=group, admin=self.admin, clock_ms=clock.now_ms,
                                 nodes=self.nodes)
        ctx = ScenarioContext(cfg.duration_s, random.Random(cfg.seed), cfg.topic,
                              cfg.partitions, cfg.group, cfg.brokers)
        nemesis = Nemesis(injector, build_schedule(self.scenarios, ctx), cfg.topic, NemesisHooks(
            replicas_of=self._replicas_of, await_isr=lambda t: self._await_isr(observer, t),
            lose_node=injector.lose_node if self.nodes is not None else None))
        progress = Progress(self.progress_stream, cfg.scenario, cfg.duration_s, producers,
                            lambda: len(injector.recorded))
        try:
            self._under_faults(observer, group, producers, nemesis, progress, injector)
            reads = read_converged(self.cluster, cfg.topic, cfg.partitions,
                                   cfg.replication_factor, clock)
        finally:
            writer.close()
            injector.close()
            self.admin.close()
        history = self._merge(group, reads.reads)
        skipped = [f"{s.action} {s.target or ''} at {s.at_s:.1f}s: {why}"
                   for s, why in nemesis.skipped]
        report = self._judge(history, reads.reads, reads.converged, skipped)
        write_report(self.out, report, history)
        invoked = sum(op.type is OpType.INVOKE for op in history.sends)
        return RunResult(report, self.out, invoked, len(history.faults), skipped)

    def _under_faults(self, observer: MetadataObserver, group: VerifiableConsumerGroup,
                      producers: list[VerifiableProducer], nemesis: Nemesis,
                      progress: Progress, injector: Any) -> None:
        """Workloads on, the schedule, then heal and drain; everything stops on any error."""
        cfg = self.config
        try:
            observer.start()
            group.start()
            group.wait_assigned(cfg.partitions, 30.0)
            for p in producers:
                p.start()
            progress.start()
            nemesis.run(cfg.duration_s)  # the run itself; the workloads go on meanwhile
            progress.stop()
            injector.restore()
            self._await_isr(observer, 30.0)
            for p in producers:
                p.stop()
            self._drain(group)
            group.stop()
        finally:
            progress.stop()
            try:
                injector.release()
            finally:  # the workloads stop even if releasing the faults failed (Ctrl-C)
                for p in producers:
                    p.stop(drain_timeout_s=1.0)
                group.stop(timeout_s=2.0)
                observer.observe_once()
                observer.stop()

    def _judge(self, history: History, reads: list[FinalRead], converged: bool,
               skipped: list[str]) -> CheckReport:
        cfg = self.config
        check_config = CheckConfig(min_insync_replicas=cfg.min_insync,
                                   ack_bounds_ms=dict(cfg.ack_bounds_ms),
                                   rebalance_bounds_ms=dict(cfg.rebalance_bounds_ms))
        report = check_all(history, reads, check_config)
        return self._with_expectations(report, history, converged, skipped)

    def _create_topic(self) -> None:
        cfg = self.config
        self.admin.create_topics([NewTopic(cfg.topic, cfg.partitions, cfg.replication_factor)])
        deadline = time.monotonic() + 30.0
        while True:
            try:
                desc = self.admin.describe_topics([cfg.topic])[cfg.topic]
                if all(p.leader is not None and len(p.isr) == cfg.replication_factor
                       for p in desc.partitions):
                    return
            except Exception as exc:  # noqa: BLE001 - not propagated yet: ask again
                log.debug("describe %s: %r", cfg.topic, exc)
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {cfg.topic} has no full ISR after 30s")
            time.sleep(0.1)

    def _producers(self, writer: HistoryWriter, clock: RunClock) -> list[VerifiableProducer]:
        cfg = self.config
        servers = self.cluster.bootstrap_servers
        extra: dict[str, Any] = {}
        acks1 = any(s.acks1_producer for s in self.scenarios)
        if acks1:  # acks=all must visibly fail while the ISR is below min
            extra = {"delivery.timeout.ms": 3000, "request.timeout.ms": 1500}
        out = [VerifiableProducer(servers, cfg.topic, writer, clock, ProducerSpec(
            name="p", processes=cfg.producers, acks=cfg.acks,
            idempotent=cfg.idempotent and cfg.acks == ACKS_ALL, rate_per_s=cfg.rate_per_s,
            config=extra))]
        if acks1:
            out.append(VerifiableProducer(servers, cfg.topic, writer, clock, ProducerSpec(
                name="q", processes=1, acks=1, idempotent=False, rate_per_s=cfg.rate_per_s,
                partition=ISR_SHRINK_PARTITION)))
        return out

    def _replicas_of(self, partition: int) -> tuple[int, list[int]]:
        info = self.admin.describe_topics([self.config.topic])[self.config.topic]
        p = info.partition(partition)
        if p.leader is None:
            raise LookupError(f"{self.config.topic}-{partition} has no leader")
        return p.leader, list(p.replicas)

    def _await_isr(self, observer: MetadataObserver, timeout_s: float) -> bool:
        """Until every partition of the topic has a leader and a full ISR (False: gave up)."""
        rf = self.config.replication_factor
        deadline = time.monotonic() + timeout_s
        while True:
            observer.observe_once()
            state = observer.current()
            if len(state) >= self.config.partitions and all(
                    leader >= 0 and len(isr) >= rf for leader, _, isr in state.values()):
                return True
            if time.monotonic() > deadline:
                log.warning("ISR not full after %.0fs: %s", timeout_s, state)
                return False
            time.sleep(0.2)

    def _drain(self, group: VerifiableConsumerGroup) -> None:
        """Give the group a bounded time to commit up to the end of every partition."""
        cfg = self.config
        try:
            listed = self.admin.list_offsets(
                {TopicPartition(cfg.topic, p): "latest" for p in range(cfg.partitions)})
        except Exception as exc:  # noqa: BLE001 - judge whatever the group got to
            log.warning("list_offsets failed: %r", exc)
            return
        ends = {tp: lo.offset for tp, lo in listed.items()}
        deadline = time.monotonic() + 15.0
        while not group.caught_up(ends) and time.monotonic() < deadline:
            time.sleep(0.25)

    def _merge(self, group: VerifiableConsumerGroup, reads: list[FinalRead]) -> History:
        main: list[Event] = list(iter_history(self.live_path))
        merged = group.merge_into(main)
        merged += reads
        write_history(self.history_path, merged)
        return History.of(merged)

    # -- the scenario's own verdict --

    def _with_expectations(self, report: CheckReport, history: History, converged: bool,
                           skipped: list[str]) -> CheckReport:
        evidence: dict[str, Json] = {
            "scenario": self.config.scenario, "seed": self.config.seed,
            "replicas_converged": converged, "skipped_steps": list(skipped),
        }
        problems: list[Json] = []
        if any(s.expect.acks_all_refused_below_min_isr for s in self.scenarios):
            problems += isr_expectations(history, self.config, evidence)
        verdict = Verdict("scenario", not problems, {**evidence, "problems": problems})
        verdicts = report.verdicts + (verdict,)
        stats = {**report.stats, "scenario": self.config.scenario, "seed": self.config.seed}
        return replace(report, valid=report.valid and verdict.valid, verdicts=verdicts,
                       stats=stats)


def below_min_windows(history: History, topic: str, partition: int,
                      min_insync: int) -> list[tuple[int, int]]:
    """[start, end) times when the partition's observed ISR was below `min_insync`."""
    windows: list[tuple[int, int]] = []
    start: int | None = None
    for m in history.metadata:
        if m.topic != topic or m.partition != partition:
            continue
        below = len(m.isr) < min_insync
        if below and start is None:
            start = m.time_ms
        elif not below and start is not None:
            windows.append((start, m.time_ms))
            start = None
    if start is not None:
        windows.append((start, history.end_ms()))
    return windows


def isr_expectations(history: History, config: RunConfig,
                     evidence: dict[str, Json]) -> list[Json]:
    """isr-shrink-to-min: while the ISR was below min, acks=all sends failed (none acked: the
    checker judges that) and acks=1 sends were acked; at the end every ISR is full."""
    windows = below_min_windows(history, config.topic, ISR_SHRINK_PARTITION, config.min_insync)

    def inside(t: int) -> bool:
        return any(a <= t < b for a, b in windows)

    all_refused = [op for op in history.sends
                   if op.acks == ACKS_ALL and op.type in (OpType.FAIL, OpType.INFO)
                   and inside(op.time_ms)]
    acks1_ok = [op for op in history.sends
                if op.acks == 1 and op.type is OpType.OK and inside(op.time_ms)]
    last: dict[int, tuple[int, ...]] = {}
    for m in history.metadata:
        if m.topic == config.topic:
            last[m.partition] = m.isr
    short: dict[str, Json] = {str(p): [b for b in isr] for p, isr in sorted(last.items())
                              if len(isr) < config.replication_factor}
    evidence.update({
        "below_min_windows_ms": [[a, b] for a, b in windows],
        "acks_all_refused_below_min": len(all_refused),
        "acks_all_refused_errors": [e for e in sorted({op.error or "" for op in all_refused})[:5]],
        "acks1_acked_below_min": len(acks1_ok),
        "partitions_with_short_isr_at_end": short,
    })
    problems: list[Json] = []
    if not windows:
        problems.append("the ISR never dropped below min.insync.replicas")
    if windows and not all_refused:
        problems.append("no acks=all send failed while the ISR was below min")
    if windows and not acks1_ok:
        problems.append("no acks=1 send was acked while the ISR was below min")
    if short:
        problems.append("the ISR did not grow back")
    return problems
