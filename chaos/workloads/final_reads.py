"""Final reads: after healing, every partition read from every replica that holds it.

Each live broker is asked through its actor's `read_replica(topic, partition)` chaos hook
(cluster/broker_actor.py), which reads the replica's local log on the broker's event loop: all
records up to its log end offset, with its high watermark, log start offset and role. Reading
the live log (rather than the files of a stopped broker) gives the high watermark the replica
really holds, not the last checkpoint.

`read_converged` repeats the reads until the replicas settle (every replica's high watermark
and log end offset equal the leader's, and exactly one claims leadership) or a deadline
passes; the checkers judge whatever the last round saw, and `converged` says which it was.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import ray

from chaos.history import FinalRead, FinalRecord
from chaos.workloads.clock import RunClock
from cluster.launcher import LocalCluster

log = logging.getLogger(__name__)


def _text(data: bytes | None) -> str | None:
    return None if data is None else bytes(data).decode("utf-8", "replace")


def read_replicas(cluster: LocalCluster, topic: str, partitions: int,
                  clock: RunClock, timeout_s: float = 20.0) -> list[FinalRead]:
    """One read of every partition from every live broker holding a replica of it."""
    refs: dict[Any, tuple[int, int]] = {}
    for broker_id in cluster.live_broker_ids():
        handle = cluster.broker_handle(broker_id)
        for p in range(partitions):
            refs[handle.read_replica.remote(topic, p)] = (broker_id, p)
    out: list[FinalRead] = []
    now_ms = clock.now_ms()
    for ref, (broker_id, p) in refs.items():
        try:
            got = ray.get(ref, timeout=timeout_s)
        except Exception as exc:  # noqa: BLE001 - a dead broker has nothing to show
            log.warning("final read of %s-%d from broker %d failed: %r", topic, p, broker_id,
                        exc)
            continue
        if got is None:
            continue
        out.append(FinalRead(
            replica=broker_id, topic=topic, partition=p,
            records=tuple(FinalRecord(o, _text(k), _text(v), crc)
                          for o, k, v, crc in got["records"]),
            high_watermark=got["high_watermark"], log_end_offset=got["log_end_offset"],
            log_start_offset=got["log_start_offset"], is_leader=got["is_leader"],
            time_ms=now_ms))
    return out


@dataclass(frozen=True, slots=True)
class FinalReads:
    reads: list[FinalRead]
    converged: bool
    rounds: int


def settled(reads: list[FinalRead], partitions: int, replication_factor: int) -> bool:
    by_p: dict[int, list[FinalRead]] = {}
    for r in reads:
        by_p.setdefault(r.partition, []).append(r)
    for p in range(partitions):
        rs = by_p.get(p, [])
        leaders = [r for r in rs if r.is_leader]
        if len(rs) < replication_factor or len(leaders) != 1:
            return False
        leo = leaders[0].log_end_offset
        if any(r.log_end_offset != leo or r.high_watermark != leo for r in rs):
            return False
    return True


def read_converged(cluster: LocalCluster, topic: str, partitions: int, replication_factor: int,
                   clock: RunClock, *, timeout_s: float = 30.0) -> FinalReads:
    deadline = time.monotonic() + timeout_s
    rounds = 0
    while True:
        rounds += 1
        reads = read_replicas(cluster, topic, partitions, clock)
        if settled(reads, partitions, replication_factor):
            return FinalReads(reads, True, rounds)
        if time.monotonic() > deadline:
            log.warning("replicas of %s did not settle within %.0fs; judging the last read",
                        topic, timeout_s)
            return FinalReads(reads, False, rounds)
        time.sleep(0.5)
