"""Consumer throughput: read back 100-byte records from 6 partitions (RF=3) with the Python
`Consumer` (assign + seek_to_beginning) against a LocalCluster.

Run: ``python -m bench.consumer_throughput [--records 500000]``.
Prints a progress line, then ONE JSON line (name, params, results, limit, ratio).

Setup (untimed): a topic of 6 partitions, RF=3, filled with `records` 100-byte values by the
Producer (acks=1, linger 5 ms, 64 KiB batches). Warm-up: one untimed pass over the first
`warmup` records. Timed: a fresh Consumer polls from the beginning until it has `records`
records; the figure is records / (first poll .. last record). Limit: the raw gRPC stream rate
in the same run (bench/grpc_limit.py, 64 KiB messages, ~ a fetch response) converted to
records/s at ~110 bytes per record; ratio = measured / limit.
"""

from __future__ import annotations

import argparse
import time

from bench.cluster_common import RECORD_OVERHEAD_BYTES, create_topic, emit, start_cluster
from bench.grpc_limit import measure_stream_limit
from clients import Consumer, Producer, TopicPartition

VALUE_BYTES = 100
PARTITIONS = 6
TOPIC = "perf-consume"


def _consume(bootstrap: str, wanted: int, timeout_s: float = 300.0) -> float:
    tps = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
    with Consumer(bootstrap_servers=bootstrap, max_poll_records=10_000,
                  fetch_max_bytes=52_428_800, max_partition_fetch_bytes=4_194_304) as consumer:
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        got = 0
        started = time.perf_counter_ns()
        deadline = time.monotonic() + timeout_s
        while got < wanted:
            got += consumer.poll(0.5).count()
            if time.monotonic() > deadline:
                raise TimeoutError(f"consumed {got} of {wanted}")
        elapsed = (time.perf_counter_ns() - started) / 1e9
    return got / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--warmup", type=int, default=50_000)
    args = parser.parse_args()
    cluster = start_cluster()
    try:
        create_topic(cluster, TOPIC, PARTITIONS, 3, {"min.insync.replicas": "2"})
        value = b"v" * VALUE_BYTES
        with Producer(bootstrap_servers=cluster.bootstrap_servers, acks=1,
                      enable_idempotence=False, linger_ms=5, batch_size=65_536) as producer:
            for _ in range(args.records):
                producer.send(TOPIC, value)
            producer.flush(300.0)
        _consume(cluster.bootstrap_servers, args.warmup)
        rate = _consume(cluster.bootstrap_servers, args.records)
        print(f"consumer: {rate:,.0f} records/s", flush=True)
    finally:
        cluster.close()
    raw = measure_stream_limit(65_536, 128 << 20)
    limit_rps = raw["bytes_per_s"] / (VALUE_BYTES + RECORD_OVERHEAD_BYTES)
    emit("consumer_throughput",
         {"records": args.records, "warmup": args.warmup, "value_bytes": VALUE_BYTES,
          "partitions": PARTITIONS, "replication_factor": 3, "max_poll_records": 10_000,
          "target_records_per_s": 500_000},
         {"records_per_s": round(rate)},
         {**raw, "records_per_s_equivalent": round(limit_rps)},
         round(rate / limit_rps, 3))


if __name__ == "__main__":
    main()
