"""RecordBatch v2 codec throughput: encode (builder appends + build) and decode (every record
materialized), uncompressed and zstd.

Run: ``python -m bench.codec [--batches N] [--repeats R]``. Prints progress lines, then one JSON
line: name, params, results (records/s), limit and ratio.

Workload: fixed seed, 150 records per batch, 10-byte keys, 100-byte values (text-like, so zstd
has something to compress), no headers, one explicit timestamp per batch, as an accumulator
passes `now_ms`. Each figure is the median over `repeats` timed passes over the same batches;
one untimed warm-up pass precedes them.

Limit: the rate at which `b"".join` copies the same, already-encoded record bytes into one
batch-sized buffer (one part per record), in records/s. Any encoder must at least produce those
bytes, so it bounds encode from above; it is a memcpy-speed bound, far above what per-record
Python code can reach, so the ratio mostly says how much interpreter overhead remains. For
scale, `limit.python_call_floor_records_per_s` is the rate of the cheapest per-record Python
work an append-style API can do: one bound-method call storing one tuple.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable

from proto.records import RECORD_BATCH_OVERHEAD, RecordBatch, RecordBatchBuilder

RECORDS_PER_BATCH = 150
VALUE_SIZE = 100
KEY_SIZE = 10
SEED = 20261126
TIMESTAMP_MS = 1_700_000_000_000

_WORDS = (
    b"click", b"view", b"user", b"order", b"cart", b"item", b"price", b"session", b"page",
    b"search", b"ok", b"error", b"mobile", b"web", b"eu-west", b"us-east",
)


def _payloads(rng: random.Random, batches: int) -> list[list[tuple[bytes, bytes]]]:
    out = []
    for b in range(batches):
        batch = []
        for i in range(RECORDS_PER_BATCH):
            key = b"k-%08d" % ((b * RECORDS_PER_BATCH + i) % 100_000_000)
            words = bytearray()
            while len(words) < VALUE_SIZE:
                words += rng.choice(_WORDS) + b" %d " % rng.randrange(100_000)
            batch.append((key[:KEY_SIZE], bytes(words[:VALUE_SIZE])))
        out.append(batch)
    return out


def _time_ns(fn: Callable[[], object], repeats: int) -> list[int]:
    fn()  # warm-up, not timed
    samples = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - start)
    return samples


def _rate(records: int, samples: list[int]) -> float:
    return records / (statistics.median(samples) / 1e9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(SEED)
    payloads = _payloads(rng, args.batches)
    total = args.batches * RECORDS_PER_BATCH

    def encode(codec: str) -> Callable[[], list[bytes]]:
        def run() -> list[bytes]:
            built = []
            for batch in payloads:
                builder = RecordBatchBuilder(codec, now_ms=TIMESTAMP_MS)
                append = builder.append
                for key, value in batch:
                    append(value, key)
                built.append(builder.build())
            return built

        return run

    def decode(batches: list[bytes]) -> Callable[[], int]:
        def run() -> int:
            n = 0
            for data in batches:
                for _record in RecordBatch(data):
                    n += 1
            assert n == total, n
            return n

        return run

    results: dict[str, float] = {}
    for codec, suffix in (("none", ""), ("zstd", "_zstd")):
        encode_samples = _time_ns(encode(codec), args.repeats)
        results[f"encode{suffix}_records_per_s"] = _rate(total, encode_samples)
        encoded = encode(codec)()
        decode_samples = _time_ns(decode(encoded), args.repeats)
        results[f"decode{suffix}_records_per_s"] = _rate(total, decode_samples)
        if codec == "zstd":
            plain = sum(len(b) for b in encode("none")())
            results["zstd_ratio"] = plain / sum(len(b) for b in encoded)
        print(f"{codec}: encode {results[f'encode{suffix}_records_per_s']:,.0f}/s, "
              f"decode {results[f'decode{suffix}_records_per_s']:,.0f}/s", flush=True)

    # Limit: join the already-encoded record bytes of each batch (one part per record).
    parts = []
    for key, value in payloads[0]:
        single = RecordBatchBuilder(now_ms=TIMESTAMP_MS)
        single.append(value, key)
        parts.append(single.build()[RECORD_BATCH_OVERHEAD:])
    join = b"".join

    def copy_limit() -> None:
        for _ in range(args.batches):
            join(parts)

    sink: list[tuple[bytes, bytes]] = []
    store = sink.append

    def call_floor() -> None:
        sink.clear()
        for batch in payloads:
            for key, value in batch:
                store((value, key))

    join_rate = _rate(total, _time_ns(copy_limit, args.repeats))
    floor_rate = _rate(total, _time_ns(call_floor, args.repeats))
    print(json.dumps({
        "name": "codec",
        "params": {
            "records_per_batch": RECORDS_PER_BATCH,
            "value_bytes": VALUE_SIZE,
            "key_bytes": KEY_SIZE,
            "headers": 0,
            "batches": args.batches,
            "repeats": args.repeats,
            "statistic": "median",
            "seed": SEED,
        },
        "results": {k: round(v, 2) if k == "zstd_ratio" else round(v) for k, v in results.items()},
        "unit": "records/s",
        "limit": {
            "join_encoded_records_per_s": round(join_rate),
            "python_call_floor_records_per_s": round(floor_rate),
        },
        "ratio": round(results["encode_records_per_s"] / join_rate, 4),
    }))


if __name__ == "__main__":
    main()
