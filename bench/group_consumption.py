"""Group consumption vs plain assigned consumption, and rebalance times (issue 5 targets).

Run: ``python -m bench.group_consumption [--records 200000]``.
Prints progress lines, then ONE JSON line (name, params, results, limit, ratio).

Setup (untimed): a LocalCluster (3 brokers, group.initial.rebalance.delay.ms=0,
group.min.session.timeout.ms=1000) and a topic of 6 partitions, RF=3, filled with `records` 100-byte values. Timed, each with a fresh
`Consumer` reading from the beginning until it has `records` records:
- assigned: `assign` + `seek_to_beginning` (the limit);
- group: `subscribe` in a new group (auto.offset.reset=earliest), timed from the moment the
  member has its partitions and their positions (`wait_for_assignment`); the join itself is
  reported separately (a warm-up group created `__consumer_offsets` first).
ratio = group / assigned (target >= 0.8). Also measured: the time from a graceful `close()`
of one of two members until the other owns every partition (target <= 1 s), and the time from
`ray.kill` of a member running as a `ConsumerActor` until the other member owns every
partition (target <= session.timeout.ms + 1 s = 4 s).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import ray

from bench.cluster_common import create_topic, emit, start_cluster
from clients import Consumer, ConsumerActor, Producer, TopicPartition

VALUE_BYTES = 100
PARTITIONS = 6
TOPIC = "perf-group"
KILL_SESSION_TIMEOUT_MS = 3000
FETCH = {"max_poll_records": 10_000, "fetch_max_bytes": 52_428_800,
         "max_partition_fetch_bytes": 4_194_304}


def _drain(consumer: Consumer[Any, Any], wanted: int, timeout_s: float = 300.0) -> float:
    got = 0
    started = time.perf_counter_ns()
    deadline = time.monotonic() + timeout_s
    while got < wanted:
        got += consumer.poll(0.5).count()
        if time.monotonic() > deadline:
            raise TimeoutError(f"consumed {got} of {wanted}")
    return got / ((time.perf_counter_ns() - started) / 1e9)


def _assigned(bootstrap: str, wanted: int) -> float:
    tps = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
    with Consumer(bootstrap_servers=bootstrap, **FETCH) as consumer:
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        return _drain(consumer, wanted)


def _group(bootstrap: str, wanted: int, group: str) -> tuple[float, float]:
    """(records/s once the member has its partitions, ms to join and get them)."""
    started = time.perf_counter()
    with Consumer(TOPIC, bootstrap_servers=bootstrap, group_id=group,
                  auto_offset_reset="earliest", **FETCH) as consumer:
        consumer.wait_for_assignment(60)
        join_ms = (time.perf_counter() - started) * 1000
        return _drain(consumer, wanted), join_ms


def _graceful_leave_ms(bootstrap: str) -> float:
    cfg = dict(bootstrap_servers=bootstrap, group_id="perf-leave", heartbeat_interval_ms=500,
               session_timeout_ms=10_000)
    a: Consumer[Any, Any] = Consumer(TOPIC, **cfg)
    b: Consumer[Any, Any] = Consumer(TOPIC, **cfg)
    try:
        deadline = time.monotonic() + 60
        while not (len(a.assignment()) == PARTITIONS // 2 == len(b.assignment())):
            if time.monotonic() > deadline:
                raise TimeoutError("two members did not share the partitions")
            a.poll(0.05)
            b.poll(0.05)
        started = time.perf_counter()
        b.close()
        while len(a.assignment()) != PARTITIONS:
            a.poll(0.01)
        return (time.perf_counter() - started) * 1000
    finally:
        a.close()
        b.close()


def _ignore(record: Any) -> None:
    pass


def _killed_member_ms(bootstrap: str) -> float:
    cfg = dict(bootstrap_servers=bootstrap, group_id="perf-kill", heartbeat_interval_ms=300,
               session_timeout_ms=KILL_SESSION_TIMEOUT_MS)
    actor = ConsumerActor.remote(_ignore, [TOPIC], keep_records=False, **cfg)
    survivor: Consumer[Any, Any] = Consumer(TOPIC, **cfg)
    try:
        ray.get(actor.start.remote(wait_for_assignment=60))
        deadline = time.monotonic() + 60
        while len(survivor.assignment()) != PARTITIONS // 2:
            if time.monotonic() > deadline:
                raise TimeoutError("the two members did not share the partitions")
            survivor.poll(0.05)
        started = time.perf_counter()
        ray.kill(actor)
        while len(survivor.assignment()) != PARTITIONS:
            survivor.poll(0.01)
        return (time.perf_counter() - started) * 1000
    finally:
        ray.kill(actor)
        survivor.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    args = parser.parse_args()
    cluster = start_cluster(broker_config={"group.initial.rebalance.delay.ms": 0,
                                           "group.min.session.timeout.ms": 1000})
    try:
        create_topic(cluster, TOPIC, PARTITIONS, 3, {"min.insync.replicas": "2"})
        value = b"v" * VALUE_BYTES
        with Producer(bootstrap_servers=cluster.bootstrap_servers, acks=1,
                      enable_idempotence=False, linger_ms=5, batch_size=65_536) as producer:
            for _ in range(args.records):
                producer.send(TOPIC, value)
            producer.flush(300.0)
        bootstrap = cluster.bootstrap_servers
        _assigned(bootstrap, min(args.records, 50_000))  # warm-up
        assigned = _assigned(bootstrap, args.records)
        print(f"assigned: {assigned:,.0f} records/s", flush=True)
        _group(bootstrap, min(args.records, 50_000), "perf-warm-up")
        group, join_ms = _group(bootstrap, args.records, "perf-group-1")
        print(f"group:    {group:,.0f} records/s (join {join_ms:.0f} ms)", flush=True)
        leave_ms = _graceful_leave_ms(bootstrap)
        print(f"rebalance after a graceful leave: {leave_ms:.0f} ms", flush=True)
        killed_ms = _killed_member_ms(bootstrap)
        print(f"rebalance after a killed member: {killed_ms:.0f} ms", flush=True)
    finally:
        cluster.close()
    emit("group_consumption",
         {"records": args.records, "value_bytes": VALUE_BYTES, "partitions": PARTITIONS,
          "replication_factor": 3, "target_ratio": 0.8, "target_leave_ms": 1000,
          "kill_session_timeout_ms": KILL_SESSION_TIMEOUT_MS,
          "target_killed_ms": KILL_SESSION_TIMEOUT_MS + 1000},
         {"group_records_per_s": round(group), "join_ms": round(join_ms),
          "graceful_leave_rebalance_ms": round(leave_ms),
          "killed_member_rebalance_ms": round(killed_ms)},
         {"assigned_records_per_s": round(assigned)},
         round(group / assigned, 3))


if __name__ == "__main__":
    main()
