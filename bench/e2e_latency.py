"""End-to-end latency: send → a Consumer's poll returns it, at a fixed rate with linger.ms=0.

Run: ``python -m bench.e2e_latency [--rate 1000] [--seconds 10] [--warmup-seconds 2]
[--max-in-flight 1]``. Prints a progress line, then ONE JSON line (name, params, results,
limit, ratio).

Setup: a LocalCluster, one topic of 1 partition, RF=3, min.insync.replicas=2. A Producer
(acks=all, idempotent, linger.ms=0) sends `rate` records/s, paced against the clock; each value
carries its send time (`time.monotonic_ns`: CLOCK_MONOTONIC, one clock for every process on the
machine); the send → ack time is reported too. A Consumer (assign, end of log,
fetch.max.wait.ms=100) runs in its own process, as a consuming application would, and records
receive - send per record. (In one process the producer's and the consumer's I/O threads would
share one GIL, which measures the interpreter rather than the path.) Records of the first
`warmup-seconds` are excluded.

`--max-in-flight` is the producer's max.in.flight.requests.per.connection. The default here is
1: with Kafka's 5, every record at linger.ms=0 becomes its own request whenever fewer than five
are unanswered, and each costs the brokers about eight gRPC messages of CPU; with 1, the records
that arrive while a request is out go together in the next one. Ordering and idempotence hold
either way.

Limit: the round-trip latency of one small message on a raw grpc.aio bidi stream to a trivial
server process in the same run (p50/p99 over the same count), i.e. the floor of one network hop;
a record here takes at least produce + replicate + fetch, about three such hops. Ratio =
measured / limit per percentile.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import struct
import subprocess
import sys
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
            acked[seq] = (time.monotonic_ns() - sent) / 1e6
    return done


def consume(bootstrap: str, total: int, fetch_max_wait_ms: int, ready: Any, out: Any) -> None:
    """The consumer process: position at the end, then time every record until `total` arrive
    (or 30 s pass without one); sends {seq: ms} back on `out`."""
    latencies: dict[int, float] = {}
    consumer = Consumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=fetch_max_wait_ms,
                        fetch_min_bytes=1)
    try:
        tp = TopicPartition(TOPIC, 0)
        consumer.assign([tp])
        consumer.seek_to_end(tp)
        consumer.position(tp)
        ready.set()
        last_record = time.monotonic()
        while len(latencies) < total and time.monotonic() - last_record < 30:
            for record in consumer.poll(0.2):
                now = time.monotonic_ns()
                seq, sent = struct.unpack_from(">QQ", record.value)
                latencies[seq] = (now - sent) / 1e6
                last_record = time.monotonic()
    finally:
        consumer.close()
        out.put(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup-seconds", type=float, default=2.0)
    parser.add_argument("--acks", default="all", choices=["all", "1"])
    parser.add_argument("--fetch-max-wait-ms", type=int, default=100)
    parser.add_argument("--max-in-flight", type=int, default=1,
                        help="the producer's max.in.flight.requests.per.connection")
    args = parser.parse_args()
    total = int(args.rate * (args.seconds + args.warmup_seconds))
    warm = int(args.rate * args.warmup_seconds)
    acked: dict[int, float] = {}  # seq -> send..ack ms (the producer's share of the latency)
    cluster = start_cluster()
    spawn = multiprocessing.get_context("spawn")
    ready, results = spawn.Event(), spawn.Queue()
    reader: Any = None
    try:
        create_topic(cluster, TOPIC, 1, 3, {"min.insync.replicas": "2"})
        reader = spawn.Process(target=consume, name="e2e-consumer", daemon=True, args=(
            cluster.bootstrap_servers, total, args.fetch_max_wait_ms, ready, results))
        reader.start()
        if not ready.wait(60):
            raise RuntimeError("the consumer process did not get ready in 60 s")
        acks: Any = "all" if args.acks == "all" else 1
        with Producer(bootstrap_servers=cluster.bootstrap_servers, acks=acks,
                      enable_idempotence=args.acks == "all", linger_ms=0,
                      max_in_flight_requests_per_connection=args.max_in_flight) as producer:
            interval_ns = 1_000_000_000 // args.rate
            start = time.monotonic_ns()
            pad = b"p" * 84
            for seq in range(total):
                due = start + seq * interval_ns
                if (now := time.monotonic_ns()) < due:
                    # One sleep, no spinning: a spin would take a core from the brokers. A late
                    # wake-up only shifts this record's send time, which is what is measured from.
                    time.sleep((due - now) / 1e9)
                sent = time.monotonic_ns()
                producer.send(TOPIC, struct.pack(">QQ", seq, sent) + pad, partition=0,
                              on_delivery=_ack_stamp(acked, seq, sent))
            producer.flush(30.0)
        latencies: dict[int, float] = results.get(timeout=60)
        reader.join(10)
    finally:
        if reader is not None and reader.is_alive():
            reader.kill()
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
          "max_in_flight_requests_per_connection": args.max_in_flight,
          "consumer": "own process", "value_bytes": 100,
          "fetch_max_wait_ms": args.fetch_max_wait_ms, "target_p50_ms": 5, "target_p99_ms": 25},
         {"p50_ms": round(p50, 3), "p99_ms": round(p99, 3),
          "mean_ms": round(statistics.fmean(measured), 3), "max_ms": round(max(measured), 3),
          "records": len(measured), "lost": total - len(latencies),
          "produce_ack_p50_ms": round(_pct(ack_ms, 0.5), 3),
          "produce_ack_p99_ms": round(_pct(ack_ms, 0.99), 3)},
         limit,
         {"p50": round(p50 / limit["p50_ms"], 2), "p99": round(p99 / limit["p99_ms"], 2)})


if __name__ == "__main__":
    main()
