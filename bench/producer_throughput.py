"""Producer throughput: 100-byte values, 6 partitions, RF=3, acks=all (idempotent,
min.insync.replicas=2) and acks=1, through the Python `Producer` against a LocalCluster.

Run: ``python -m bench.producer_throughput [--records 300000] [--warmup 30000]``.
Prints a line per mode, then ONE JSON line (name, params, results, limit, ratio).

Each mode: a fresh topic; `warmup` untimed records (then flush), then `records` timed sends of
distinct 100-byte values with null keys (sticky partitioner) and `flush()`; the figure is
records / (first send .. flush returned). Limit: the raw gRPC stream rate of this machine in the
same run (bench/grpc_limit.py: 16 KiB messages to a trivial server process) converted to
records/s at ~110 bytes per record; ratio = measured / limit.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.cluster_common import RECORD_OVERHEAD_BYTES, create_topic, emit, start_cluster
from bench.grpc_limit import measure_stream_limit
from clients import Producer

VALUE_BYTES = 100
PARTITIONS = 6


def _run(bootstrap: str, topic: str, records: int, warmup: int, **config: Any
         ) -> tuple[float, float]:
    """(records/s end to end, records/s of the `send()` loop alone: the client's own ceiling)."""
    value = b"v" * VALUE_BYTES
    with Producer(bootstrap_servers=bootstrap, **config) as producer:
        for _ in range(warmup):
            producer.send(topic, value)
        producer.flush(120.0)
        send = producer.send
        started = time.perf_counter_ns()
        last = None
        for _ in range(records):
            last = send(topic, value)
        sent = time.perf_counter_ns()
        producer.flush(300.0)
        elapsed = (time.perf_counter_ns() - started) / 1e9
        assert last is not None and last.result(timeout=10).offset >= 0
    return records / elapsed, records / ((sent - started) / 1e9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--warmup", type=int, default=30_000)
    parser.add_argument("--linger-ms", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=65_536)
    args = parser.parse_args()
    common = {"linger_ms": args.linger_ms, "batch_size": args.batch_size,
              "compression_type": "none"}
    modes: dict[str, dict[str, Any]] = {
        "acks_all_idempotent": {"acks": "all", "enable_idempotence": True},
        "acks_1": {"acks": 1, "enable_idempotence": False},
    }
    results: dict[str, Any] = {}
    cluster = start_cluster()
    try:
        for mode, config in modes.items():
            topic = f"perf-{mode.replace('_', '-')}"
            create_topic(cluster, topic, PARTITIONS, 3, {"min.insync.replicas": "2"})
            rate, send_rate = _run(cluster.bootstrap_servers, topic, args.records,
                                   args.warmup, **common, **config)
            results[f"{mode}_records_per_s"] = round(rate)
            results[f"{mode}_send_loop_records_per_s"] = round(send_rate)
            print(f"{mode}: {rate:,.0f} records/s (send() loop alone {send_rate:,.0f}/s)",
                  flush=True)
    finally:
        cluster.close()
    raw = measure_stream_limit(16_384, 64 << 20)
    limit_rps = raw["bytes_per_s"] / (VALUE_BYTES + RECORD_OVERHEAD_BYTES)
    limit = {**raw, "records_per_s_equivalent": round(limit_rps)}
    emit("producer_throughput",
         {"records": args.records, "warmup": args.warmup, "value_bytes": VALUE_BYTES,
          "partitions": PARTITIONS, "replication_factor": 3, "min_insync_replicas": 2,
          **common, "target_acks_all_records_per_s": 200_000},
         results, limit,
         {k.replace("_records_per_s", ""): round(v / limit_rps, 3) for k, v in results.items()
          if "send_loop" not in k})


if __name__ == "__main__":
    main()
