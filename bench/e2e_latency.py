"""End-to-end latency: send → a Consumer's poll returns it, at a fixed rate with linger.ms=0.

Run: ``python -m bench.e2e_latency [--rate 1000] [--seconds 10] [--warmup-seconds 2]``.
Prints a progress line, then ONE JSON line (name, params, results, limit, ratio).

Setup: a LocalCluster, one topic of 1 partition, RF=3, min.insync.replicas=2. A Producer
(acks=all, idempotent, linger.ms=0) sends `rate` records/s, paced against the clock; each value
carries its send time (`perf_counter_ns`, same process); the send → ack time is reported too. A Consumer (assign, end of log,
fetch.max.wait.ms=100) polls in another thread and records receive - send per record. Records
of the first `warmup-seconds` are excluded. Limit: the round-trip latency of one small message
on a raw grpc.aio bidi stream to a trivial server process in the same run (p50/p99 over the same
count), i.e. the floor of one network hop; a record here takes at least produce + replicate +
fetch, about three such hops. Ratio = measured / limit per percentile.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from bench.cluster_common import create_topic, emit, start_cluster
from bench.grpc_limit import METHOD
from clients import Consumer, Producer, TopicPartition
from proto.channel_options import GRPC_OPTIONS

TOPIC = "perf-latency"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _rtt_samples(port: int, count: int) -> list[float]:
    out: list[float] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=GRPC_OPTIONS) as channel:
        call = channel.stream_stream(METHOD, request_serializer=lambda b: b,
                                     response_deserializer=lambda b: b)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()

        async def requests() -> AsyncIterator[bytes]:
            while (item := await queue.get()) is not None:
                yield item

        stream = call(requests())
        for _ in range(count):
            started = time.perf_counter_ns()
            await queue.put(b"x" * 120)
            await stream.read()
            out.append((time.perf_counter_ns() - started) / 1e6)
        await queue.put(None)
    return out


def grpc_rtt(count: int) -> dict[str, Any]:
    proc = subprocess.Popen([sys.executable, "-m", "bench.grpc_limit", "--serve"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        samples = asyncio.run(_rtt_samples(int(proc.stdout.readline()), count + 200))[200:]
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=10)
    return {"what": "grpc.aio bidi stream round trip, 120-byte message, server process",
            "p50_ms": round(_pct(samples, 0.5), 3), "p99_ms": round(_pct(samples, 0.99), 3)}


def _ack_stamp(acked: dict[int, float], seq: int, sent: int) -> Any:
    def done(metadata: Any, error: Any) -> None:
        if error is None:
            acked[seq] = (time.perf_counter_ns() - sent) / 1e6
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup-seconds", type=float, default=2.0)
    parser.add_argument("--acks", default="all", choices=["all", "1"])
    parser.add_argument("--fetch-max-wait-ms", type=int, default=100)
    args = parser.parse_args()
    total = int(args.rate * (args.seconds + args.warmup_seconds))
    warm = int(args.rate * args.warmup_seconds)
    latencies: dict[int, float] = {}
    acked: dict[int, float] = {}  # seq -> send..ack ms (the producer's share of the latency)
    cluster = start_cluster()
    try:
        create_topic(cluster, TOPIC, 1, 3, {"min.insync.replicas": "2"})
        tp = TopicPartition(TOPIC, 0)
        done = threading.Event()
        consumer = Consumer(bootstrap_servers=cluster.bootstrap_servers,
                            fetch_max_wait_ms=args.fetch_max_wait_ms, fetch_min_bytes=1)
        consumer.assign([tp])
        consumer.seek_to_end(tp)
        consumer.position(tp)

        def consume() -> None:
            while not done.is_set() and len(latencies) < total:
                for record in consumer.poll(0.2):
                    now = time.perf_counter_ns()
                    seq, sent = struct.unpack_from(">QQ", record.value)
                    latencies[seq] = (now - sent) / 1e6

        reader = threading.Thread(target=consume, daemon=True)
        reader.start()
        acks: Any = "all" if args.acks == "all" else 1
        with Producer(bootstrap_servers=cluster.bootstrap_servers, acks=acks,
                      enable_idempotence=args.acks == "all", linger_ms=0) as producer:
            interval_ns = 1_000_000_000 // args.rate
            start = time.perf_counter_ns()
            pad = b"p" * 84
            for seq in range(total):
                due = start + seq * interval_ns
                if (now := time.perf_counter_ns()) < due:
                    # One sleep, no spinning: a spin would take a core from the brokers. A late
                    # wake-up only shifts this record's send time, which is what is measured from.
                    time.sleep((due - now) / 1e9)
                sent = time.perf_counter_ns()
                producer.send(TOPIC, struct.pack(">QQ", seq, sent) + pad, partition=0,
                              on_delivery=_ack_stamp(acked, seq, sent))
            producer.flush(30.0)
        deadline = time.monotonic() + 30
        while len(latencies) < total and time.monotonic() < deadline:
            time.sleep(0.05)
        done.set()
        reader.join(5.0)
        consumer.close()
    finally:
        cluster.close()
    measured = [v for k, v in latencies.items() if k >= warm]
    ack_ms = [v for k, v in acked.items() if k >= warm]
    p50, p99 = _pct(measured, 0.5), _pct(measured, 0.99)
    print(f"e2e latency: p50 {p50:.2f} ms, p99 {p99:.2f} ms over {len(measured)} records",
          flush=True)
    limit = grpc_rtt(len(measured))
    emit("e2e_latency",
         {"rate_per_s": args.rate, "seconds": args.seconds, "warmup_seconds": args.warmup_seconds,
          "partitions": 1, "replication_factor": 3, "acks": args.acks, "linger_ms": 0,
          "value_bytes": 100, "fetch_max_wait_ms": args.fetch_max_wait_ms, "target_p50_ms": 5, "target_p99_ms": 25},
         {"p50_ms": round(p50, 3), "p99_ms": round(p99, 3),
          "mean_ms": round(statistics.fmean(measured), 3), "max_ms": round(max(measured), 3),
          "records": len(measured), "lost": total - len(latencies),
          "produce_ack_p50_ms": round(_pct(ack_ms, 0.5), 3),
          "produce_ack_p99_ms": round(_pct(ack_ms, 0.99), 3)},
         limit,
         {"p50": round(p50 / limit["p50_ms"], 2), "p99": round(p99 / limit["p99_ms"], 2)})


if __name__ == "__main__":
    main()
