"""Unavailability after a leader kill: time from `ray.kill` of a partition leader to the first
successful acks=all ack of a record sent after the kill.

Run: ``python -m bench.leader_failover [--trials 3]``.
Prints one line per trial, then ONE JSON line (name, params, results, limit, ratio).

Setup: a LocalCluster with the default broker timings (heartbeat 500 ms, session 3000 ms), a
topic of 1 partition, RF=3, min.insync.replicas=2, a Producer (acks=all, idempotent,
linger.ms=0, retry.backoff.ms=50) sending one record every 2 ms with a callback that stamps each
ack. Each trial: steady traffic, `ray.kill` the leader, keep sending; the figure is the first
ack time (perf_counter_ns) of a record sent after the kill, minus the kill time. The kill time
is when the leader's process is gone (`kill_broker` waits for it): records sent while ray.kill
was still on its way are acked by the old leader and say nothing about failover. The killed
broker is restarted and rejoins the ISR between trials. The target (issue 4) is
broker.session.timeout.ms + 1 s: the controller fences a silent broker only after the session
timeout (counted from its last heartbeat, so up to one heartbeat interval less), so that
timeout is about the floor; `limit` is that floor and `ratio` = median / floor.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from typing import Any

from bench.cluster_common import create_topic, emit, start_cluster
from clients import Admin, Producer
from cluster.launcher import LocalCluster

TOPIC = "perf-failover"
SESSION_TIMEOUT_MS = 3000


def _leader(cluster: LocalCluster) -> int:
    with Admin(bootstrap_servers=cluster.bootstrap_servers) as admin:
        return int(admin.describe_topics([TOPIC])[TOPIC].partitions[0].leader)


def _isr(cluster: LocalCluster) -> list[int]:
    with Admin(bootstrap_servers=cluster.bootstrap_servers) as admin:
        return sorted(admin.describe_topics([TOPIC])[TOPIC].partitions[0].isr)


def _trial(cluster: LocalCluster, producer: Producer) -> float:
    acks: list[tuple[int, int]] = []  # (send ns, ack ns)
    lock = threading.Lock()
    stop = threading.Event()

    def on_ack(sent: int) -> Any:
        def done(metadata: Any, error: Any) -> None:
            if error is None:
                with lock:
                    acks.append((sent, time.perf_counter_ns()))
        return done

    def pump() -> None:
        while not stop.is_set():
            sent = time.perf_counter_ns()
            producer.send(TOPIC, b"f" * 100, partition=0, on_delivery=on_ack(sent))
            time.sleep(0.002)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    try:
        cluster.wait_for(lambda: len(acks) > 200, 30.0, what="steady traffic")
        leader = _leader(cluster)
        cluster.kill_broker(leader)  # returns once the process is gone
        killed = time.perf_counter_ns()

        def first_after() -> int | None:
            with lock:
                after = [ack for sent, ack in acks if sent > killed]
            return min(after) if after else None

        cluster.wait_for(lambda: first_after() is not None, 60.0, what="first ack after kill")
        gap_ms = ((first_after() or 0) - killed) / 1e6
    finally:
        stop.set()
        thread.join(5.0)
    producer.flush(60.0)
    cluster.restart_broker(leader)
    cluster.wait_for(lambda: _isr(cluster) == cluster.broker_ids, 60.0, what="full ISR again")
    return gap_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    gaps: list[float] = []
    cluster = start_cluster()
    try:
        create_topic(cluster, TOPIC, 1, 3, {"min.insync.replicas": "2"})
        with Producer(bootstrap_servers=cluster.bootstrap_servers, acks="all",
                      enable_idempotence=True, linger_ms=0, retry_backoff_ms=50,
                      retry_backoff_max_ms=200, request_timeout_ms=5000,
                      delivery_timeout_ms=60_000) as producer:
            for i in range(args.trials):
                gap = _trial(cluster, producer)
                gaps.append(gap)
                print(f"trial {i + 1}: first ack {gap:.0f} ms after the leader kill", flush=True)
    finally:
        cluster.close()
    median = statistics.median(gaps)
    emit("leader_failover",
         {"trials": args.trials, "partitions": 1, "replication_factor": 3,
          "min_insync_replicas": 2, "acks": "all", "broker_session_timeout_ms":
          SESSION_TIMEOUT_MS, "broker_heartbeat_interval_ms": 500,
          "target_ms": SESSION_TIMEOUT_MS + 1000},
         {"median_ms": round(median, 1), "max_ms": round(max(gaps), 1),
          "min_ms": round(min(gaps), 1), "trials_ms": [round(g, 1) for g in gaps]},
         {"what": "broker.session.timeout.ms: a killed broker is fenced only after it",
          "floor_ms": SESSION_TIMEOUT_MS},
         round(median / SESSION_TIMEOUT_MS, 3))


if __name__ == "__main__":
    main()
