"""Shared setup of the cluster benchmarks: a LocalCluster, topics, the JSON result line.

Every cluster benchmark runs a real `LocalCluster` (3 controllers + 3 brokers as Ray actors in a
private local Ray, gRPC on 127.0.0.1, logs in a temp dir) on this machine, measures with
`time.perf_counter_ns`, excludes a warm-up, and ends with ONE JSON line: name, params, results,
the raw gRPC streaming limit measured in the same run (bench/grpc_limit.py) and the ratio.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from clients import Admin, NewTopic
from cluster.launcher import LocalCluster, unique_name

RECORD_OVERHEAD_BYTES = 10  # a 100-byte value with no key in a v2 batch: ~10 bytes of framing


def start_cluster(brokers: int = 3, broker_config: dict[str, Any] | None = None) -> LocalCluster:
    logging.basicConfig(level=logging.WARNING)
    cluster = LocalCluster(brokers=brokers, controllers=3, name=unique_name("bench"),
                           broker_config=broker_config, log_level="WARNING")
    return cluster.start()


def create_topic(cluster: LocalCluster, topic: str, partitions: int, rf: int = 3,
                 config: dict[str, str] | None = None, timeout_s: float = 30.0) -> None:
    with Admin(bootstrap_servers=cluster.bootstrap_servers) as admin:
        admin.create_topics([NewTopic(topic, partitions, rf, config=config or {})])
        deadline = time.monotonic() + timeout_s
        while True:
            parts = admin.describe_topics([topic])[topic].partitions
            if all(p.leader >= 1 and len(p.isr) == rf for p in parts):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: no full ISR after {timeout_s}s: {parts}")
            time.sleep(0.05)


def emit(name: str, params: dict[str, Any], results: dict[str, Any], limit: dict[str, Any],
         ratio: dict[str, Any] | float) -> None:
    print(json.dumps({"name": name, "params": params, "results": results, "limit": limit,
                      "ratio": ratio}, sort_keys=True), flush=True)
