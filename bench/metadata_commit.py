"""Metadata commit latency: one NoOpRecord proposed on the leader until committed and applied.

Run: ``python -m bench.metadata_commit [--proposals 500] [--warmup 50]``.
Prints a progress line, then one JSON line: name, params, results, limit, ratio.

Setup: a 3-controller `LocalCluster` (real Ray actors, gRPC on 127.0.0.1, on-disk Raft storage
with fsync, a private local Ray with 2 CPUs). `--proposals` sequential proposals (one in flight
at a time) of a NoOpRecord via `ControllerActor.propose_noop`, which times
`ControllerServer.propose_and_wait` inside the leader's process: leader append + fsync,
AppendEntries to both followers over gRPC, their append + fsync, the majority ack, commit, apply.
`results.commit_*` are those in-process figures; `results.via_actor_*` add the Ray actor call
from this driver. `--warmup` untimed proposals come first. Target (issue 3): p50 <= 10 ms.

Limit: a raw gRPC unary round trip from this driver to the same leader's server
(`Controller.DescribeQuorum`, which does no I/O), `--proposals` sequential calls, measured in the
same run. A commit needs at least one gRPC round trip (leader → follower) plus the fsyncs, so
`ratio` = commit p50 / round-trip p50. `limit.fsync_p50_ms` (append 100 bytes + fsync in the
cluster's data dir, same count) shows the disk's part.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from pathlib import Path
from typing import Any, cast

import grpc
import ray

from cluster.launcher import RAY_SYSTEM_CONFIG, LocalCluster, unique_name
from proto import controller_pb2 as pb
from proto import controller_pb2_grpc


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _summary(prefix: str, values: list[float]) -> dict[str, float]:
    return {
        f"{prefix}_p50_ms": round(statistics.median(values), 3),
        f"{prefix}_p99_ms": round(_pct(values, 0.99), 3),
        f"{prefix}_mean_ms": round(statistics.fmean(values), 3),
        f"{prefix}_max_ms": round(max(values), 3),
    }


def _grpc_round_trips(address: str, count: int) -> list[float]:
    with grpc.insecure_channel(address) as channel:
        stub = controller_pb2_grpc.ControllerStub(channel)  # type: ignore[no-untyped-call]
        for _ in range(20):  # warm-up: connection, HTTP/2 settings
            stub.DescribeQuorum(pb.DescribeQuorumRequest(), timeout=5)
        out = []
        for _ in range(count):
            started = time.perf_counter_ns()
            stub.DescribeQuorum(pb.DescribeQuorumRequest(), timeout=5)
            out.append((time.perf_counter_ns() - started) / 1e6)
    return out


def _fsyncs(directory: Path, count: int) -> list[float]:
    path = directory / "fsync-probe.bin"
    out = []
    with open(path, "ab") as f:
        for _ in range(count):
            started = time.perf_counter_ns()
            f.write(b"x" * 100)
            f.flush()
            os.fsync(f.fileno())
            out.append((time.perf_counter_ns() - started) / 1e6)
    path.unlink()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--proposals", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--election-timeout-ms", type=int, default=500)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING, _system_config=RAY_SYSTEM_CONFIG)
    try:
        with LocalCluster(brokers=0, controllers=3, name=unique_name("bench-commit"),
                          election_timeout_ms=args.election_timeout_ms,
                          log_level="WARNING") as cluster:
            leader = cluster.wait_for_leader(30.0)
            handle = cluster.controller_handle(leader)
            for _ in range(args.warmup):
                warm = cast(dict[str, Any], ray.get(handle.propose_noop.remote(5.0)))
                assert warm["error"] is None, warm
            commit_ms: list[float] = []
            via_actor_ms: list[float] = []
            offsets: list[int] = []
            for _ in range(args.proposals):
                started = time.perf_counter_ns()
                result = cast(dict[str, Any], ray.get(handle.propose_noop.remote(5.0)))
                via_actor_ms.append((time.perf_counter_ns() - started) / 1e6)
                assert result["error"] is None, result
                commit_ms.append(result["elapsed_ms"])
                offsets.append(result["offset"])
            assert offsets == sorted(set(offsets)), "offsets must strictly increase"
            assert cluster.controller_leader() == leader, "leadership changed during the run"
            rtt_ms = _grpc_round_trips(cluster.controller_addresses[leader], args.proposals)
            assert cluster.data_dir is not None
            fsync_ms = _fsyncs(cluster.data_dir, args.proposals)
    finally:
        ray.shutdown()

    results = {**_summary("commit", commit_ms), **_summary("via_actor", via_actor_ms)}
    results["target_p50_ms"] = 10
    results["meets_target"] = results["commit_p50_ms"] <= 10
    rtt_p50 = statistics.median(rtt_ms)
    print(f"commit p50 {results['commit_p50_ms']} ms, p99 {results['commit_p99_ms']} ms; "
          f"gRPC round trip p50 {rtt_p50:.3f} ms", flush=True)
    print(json.dumps({
        "name": "metadata_commit",
        "params": {
            "controllers": 3,
            "proposals": args.proposals,
            "warmup": args.warmup,
            "in_flight": 1,
            "record": "NoOpRecord",
            "election_timeout_ms": args.election_timeout_ms,
        },
        "results": results,
        "unit": "ms",
        "limit": {
            "grpc_unary_rtt_p50_ms": round(rtt_p50, 3),
            "grpc_unary_rtt_p99_ms": round(_pct(rtt_ms, 0.99), 3),
            "fsync_p50_ms": round(statistics.median(fsync_ms), 3),
        },
        "ratio": round(results["commit_p50_ms"] / rtt_p50, 2),
    }))


if __name__ == "__main__":
    main()
