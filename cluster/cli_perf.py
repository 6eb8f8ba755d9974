"""`rafka perf produce` / `rafka perf consume` (kafka-producer-perf-test / -consumer-perf-test).

produce prints Kafka's lines first, so existing tooling parses them: every reporting interval
    N records sent, X records/sec (Y MB/sec), A ms avg latency, M ms max latency.
and at the end
    N records sent, X records/sec (Y MB/sec), A ms avg latency, M ms max latency,
    P50 ms 50th, P95 ms 95th, P99 ms 99th, P999 ms 99.9th.
(latency = send() to acknowledgement, as Kafka measures it), then the Rafka addition: this
machine's raw gRPC stream rate measured in the same run (bench/grpc_limit.py, when the bench
package is importable; `--no-limit` skips it) and the ratio. consume prints Kafka's CSV header
and row, then the record age at receipt (now - record timestamp) percentiles. A progress bar
goes to stderr when it is a terminal (or with --progress). `--format json`: one JSON summary.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from cluster.cli_common import CliError, client_config, parse_pairs
from cluster.cli_output import Output

MB = 1024 * 1024
RECORD_OVERHEAD_BYTES = 10  # v2 framing of a small unkeyed record (bench/cluster_common.py)
CONSUMER_CSV_HEADER = ("start.time, end.time, data.consumed.in.MB, MB.sec, "
                       "data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, "
                       "fetch.MB.sec, fetch.nMsg.sec")


def register(commands: Any, parent: argparse.ArgumentParser) -> None:
    perf = commands.add_parser("perf", help="throughput and latency tests")
    actions = perf.add_subparsers(dest="action", required=True)

    p = actions.add_parser("produce", parents=[parent], help="kafka-producer-perf-test")
    p.add_argument("--topic", required=True)
    p.add_argument("--num-records", type=int, required=True)
    p.add_argument("--record-size", type=int, default=100, help="value bytes")
    p.add_argument("--throughput", type=float, default=-1,
                   help="max records/s (-1 = unthrottled)")
    p.add_argument("--producer-props", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--acks", choices=("all", "-1", "0", "1"), default=None)
    p.add_argument("--reporting-interval", type=int, default=5000, metavar="MS")
    p.add_argument("--no-limit", action="store_true", help="skip the gRPC limit measurement")
    p.add_argument("--progress", action="store_true", help="progress bar even if not a tty")
    p.set_defaults(run=perf_produce)

    p = actions.add_parser("consume", parents=[parent], help="kafka-consumer-perf-test")
    p.add_argument("--topic", required=True)
    p.add_argument("--messages", type=int, required=True)
    p.add_argument("--group", default=None, help="consume as this group (else assigned)")
    p.add_argument("--timeout", type=int, default=10_000, metavar="MS",
                   help="give up after this long without records")
    p.add_argument("--progress", action="store_true", help="progress bar even if not a tty")
    p.set_defaults(run=perf_consume)


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Kafka's ProducerPerformance rule: the value at index int(n * fraction)."""
    if not sorted_values:
        return 0.0
    return sorted_values[min(int(len(sorted_values) * fraction), len(sorted_values) - 1)]


def window_line(count: int, elapsed_s: float, nbytes: int, lat_sum: float,
                lat_max: float) -> str:
    rate = count / elapsed_s if elapsed_s > 0 else 0.0
    mb_per_s = nbytes / MB / max(elapsed_s, 1e-9)
    return (f"{count} records sent, {rate:.1f} records/sec ({mb_per_s:.2f} MB/sec), "
            f"{lat_sum / max(count, 1):.1f} ms avg latency, {lat_max:.1f} ms max latency.")


def total_line(summary: dict[str, Any]) -> str:
    return (f"{summary['records']} records sent, {summary['records_per_sec']:f} records/sec "
            f"({summary['mb_per_sec']:.2f} MB/sec), {summary['avg_latency_ms']:.2f} ms avg "
            f"latency, {summary['max_latency_ms']:.2f} ms max latency, "
            f"{int(summary['p50_ms'])} ms 50th, {int(summary['p95_ms'])} ms 95th, "
            f"{int(summary['p99_ms'])} ms 99th, {int(summary['p999_ms'])} ms 99.9th.")


def summarize(records: int, elapsed_s: float, record_bytes: int,
              latencies: list[float]) -> dict[str, Any]:
    lat = sorted(latencies)
    return {
        "records": records,
        "elapsed_s": round(elapsed_s, 3),
        "records_per_sec": records / elapsed_s if elapsed_s > 0 else 0.0,
        "mb_per_sec": records * record_bytes / MB / elapsed_s if elapsed_s > 0 else 0.0,
        "avg_latency_ms": sum(lat) / len(lat) if lat else 0.0,
        "max_latency_ms": lat[-1] if lat else 0.0,
        "p50_ms": percentile(lat, 0.5), "p95_ms": percentile(lat, 0.95),
        "p99_ms": percentile(lat, 0.99), "p999_ms": percentile(lat, 0.999),
    }


class ProgressBar:
    """`[#####-----]  50%  500/1000` redrawn on stderr at most 10 times a second."""

    def __init__(self, total: int, enabled: bool, width: int = 30) -> None:
        self.total, self.enabled, self.width = max(total, 1), enabled, width
        self._last = 0.0

    @staticmethod
    def render(done: int, total: int, width: int = 30) -> str:
        frac = min(done / max(total, 1), 1.0)
        fill = int(frac * width)
        return f"[{'#' * fill}{'-' * (width - fill)}] {frac * 100:5.1f}%  {done}/{total}"

    def update(self, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._last < 0.1):
            return
        self._last = now
        sys.stderr.write("\r" + self.render(done, self.total, self.width))
        sys.stderr.flush()

    def close(self, done: int) -> None:
        if self.enabled:
            self.update(done, force=True)
            sys.stderr.write("\n")
            sys.stderr.flush()


class _Latencies:
    """Acknowledgement latencies, recorded from the producer's I/O thread."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.errors = 0
        self.first_error: BaseException | None = None
        self.window_count = 0
        self.window_sum = 0.0
        self.window_max = 0.0
        self.window_bytes = 0
        self.lock = threading.Lock()

    def callback(self, sent_ns: int, size: int) -> Any:
        def done(future: Any) -> None:
            latency = (time.perf_counter_ns() - sent_ns) / 1e6
            error = future.exception()
            with self.lock:
                if error is not None:
                    self.errors += 1
                    self.first_error = self.first_error or error
                    return
                self.values.append(latency)
                self.window_count += 1
                self.window_sum += latency
                self.window_max = max(self.window_max, latency)
                self.window_bytes += size
        return done

    def take_window(self) -> tuple[int, float, float, int]:
        with self.lock:
            out = (self.window_count, self.window_sum, self.window_max, self.window_bytes)
            self.window_count, self.window_sum, self.window_max, self.window_bytes = 0, 0, 0, 0
        return out


def perf_produce(args: argparse.Namespace, out: Output) -> int:
    from clients.producer.producer import Producer

    if args.num_records <= 0 or args.record_size < 0:
        raise CliError("--num-records must be positive and --record-size not negative")
    config = client_config(args)
    config.update(parse_pairs(args.producer_props, "--producer-props"))
    if args.acks is not None:
        config["acks"] = args.acks
    payload = b"x" * args.record_size
    stats = _Latencies()
    bar = ProgressBar(args.num_records, args.progress or sys.stderr.isatty())
    interval_s = args.reporting_interval / 1000
    with Producer(config) as producer:
        started = time.perf_counter()
        window_start = started
        for i in range(args.num_records):
            if args.throughput > 0:  # Kafka's ThroughputThrottler: sleep when ahead
                ahead = i / args.throughput - (time.perf_counter() - started)
                if ahead > 0.001:
                    time.sleep(ahead)
            future = producer.send(args.topic, payload)
            future.add_done_callback(stats.callback(time.perf_counter_ns(), len(payload)))
            if i % 256 == 0:
                bar.update(i)
                now = time.perf_counter()
                if now - window_start >= interval_s and not out.json:
                    count, lat_sum, lat_max, nbytes = stats.take_window()
                    if bar.enabled:
                        bar.close(i)  # the window line goes below the bar
                    print(window_line(count, now - window_start, nbytes, lat_sum, lat_max),
                          flush=True)
                    window_start = now
        producer.flush(max(60.0, args.num_records / 1000))
        elapsed = time.perf_counter() - started
    bar.close(args.num_records)
    with stats.lock:
        summary = summarize(len(stats.values), elapsed, args.record_size, stats.values)
        summary["errors"] = stats.errors
    if not out.json:
        print(total_line(summary), flush=True)
    if stats.errors:
        print(f"{stats.errors} records failed; first error: {stats.first_error!r}",
              file=sys.stderr)
    limit = None if args.no_limit else _grpc_limit(args.record_size)
    if limit is not None:
        summary["limit_records_per_sec"] = limit
        summary["ratio"] = summary["records_per_sec"] / limit if limit else None
        out.line(f"Limit: {limit:.0f} records/sec through one raw gRPC stream on this machine "
                 f"(same bytes per record); this run: {summary['ratio']:.1%} of it.")
    out.value("summary", summary)
    return 1 if stats.errors else 0


def _grpc_limit(record_size: int) -> float | None:
    """Records/s of the raw gRPC stream limit at this record size, or None if unavailable."""
    try:
        from bench.grpc_limit import measure_stream_limit
    except ImportError:  # bench/ is not installed: found only next to a source checkout
        root = Path(__file__).resolve().parents[1]
        if not (root / "bench" / "grpc_limit.py").exists():
            return None
        sys.path.append(str(root))
        # its server runs as `python -m bench.grpc_limit`: give the child the same path
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)
        from bench.grpc_limit import measure_stream_limit
    try:
        limit = measure_stream_limit(message_bytes=16_384, total_bytes=16 << 20)
    except Exception as exc:  # noqa: BLE001 - the limit is an extra; the run's figures stand
        print(f"(gRPC limit not measured: {exc!r})", file=sys.stderr)
        return None
    return float(limit["bytes_per_s"]) / (record_size + RECORD_OVERHEAD_BYTES)


def _kafka_time(epoch_s: float) -> str:
    """Kafka's consumer-perf-test date format, yyyy-MM-dd HH:mm:ss:SSS."""
    return datetime.fromtimestamp(epoch_s).strftime("%Y-%m-%d %H:%M:%S:") + \
        f"{int(epoch_s * 1000) % 1000:03d}"


def perf_consume(args: argparse.Namespace, out: Output) -> int:
    from clients.consumer.consumer import Consumer
    from clients.types import TopicPartition

    base: dict[str, Any] = {"auto.offset.reset": "earliest"}
    if args.group:
        base["group.id"] = args.group
    consumer: Consumer[bytes, bytes] = Consumer(client_config(args, base))
    bar = ProgressBar(args.messages, args.progress or sys.stderr.isatty())
    count = nbytes = 0
    ages: list[float] = []
    start_wall = time.time()
    started = time.perf_counter()
    rebalance_ms = 0.0
    try:
        if not args.group:
            parts = sorted(consumer.partitions_for_topic(args.topic) or ())
            if not parts:
                raise CliError(f"topic {args.topic} does not exist")
            tps = [TopicPartition(args.topic, p) for p in parts]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
        else:
            consumer.subscribe([args.topic])
            consumer.wait_for_assignment(args.timeout / 1000)
            rebalance_ms = (time.perf_counter() - started) * 1000
        fetch_started = time.perf_counter()
        last = fetch_started
        while count < args.messages:
            batch = consumer.poll(0.5, max_records=args.messages - count)
            now_ms = time.time() * 1000
            for record in batch:
                count += 1
                nbytes += max(record.serialized_value_size, 0) + \
                    max(record.serialized_key_size, 0)
                ages.append(max(now_ms - record.timestamp, 0.0))
            now = time.perf_counter()
            if batch.count():
                last = now
                bar.update(count)
            elif (now - last) * 1000 >= args.timeout:
                print(f"WARNING: Exiting before consuming the expected number of messages: "
                      f"timeout ({args.timeout} ms) exceeded.", file=sys.stderr)
                break
        ended = time.perf_counter()
    finally:
        consumer.close()
    bar.close(count)
    elapsed = max(ended - started, 1e-9)
    fetch_s = max(ended - fetch_started, 1e-9)
    mb = nbytes / MB
    ages.sort()
    summary = {
        "start_time": _kafka_time(start_wall), "end_time": _kafka_time(start_wall + elapsed),
        "data_consumed_in_mb": mb, "mb_sec": mb / elapsed,
        "data_consumed_in_nmsg": count, "nmsg_sec": count / elapsed,
        "rebalance_time_ms": int(rebalance_ms), "fetch_time_ms": int(fetch_s * 1000),
        "fetch_mb_sec": mb / fetch_s, "fetch_nmsg_sec": count / fetch_s,
        "age_p50_ms": percentile(ages, 0.5), "age_p95_ms": percentile(ages, 0.95),
        "age_p99_ms": percentile(ages, 0.99), "age_p999_ms": percentile(ages, 0.999),
    }
    if not out.json:
        print(CONSUMER_CSV_HEADER)
        print(f"{summary['start_time']}, {summary['end_time']}, {mb:.4f}, "
              f"{summary['mb_sec']:.4f}, {count}, {summary['nmsg_sec']:.4f}, "
              f"{summary['rebalance_time_ms']}, {summary['fetch_time_ms']}, "
              f"{summary['fetch_mb_sec']:.4f}, {summary['fetch_nmsg_sec']:.4f}")
        print(f"Record age at receipt: {summary['age_p50_ms']:.0f} ms 50th, "
              f"{summary['age_p95_ms']:.0f} ms 95th, {summary['age_p99_ms']:.0f} ms 99th, "
              f"{summary['age_p999_ms']:.0f} ms 99.9th.")
    out.value("summary", summary)
    return 0 if count >= args.messages else 1
