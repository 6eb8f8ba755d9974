"""Metrics with real actors: brokers and controllers export Kafka-named metrics through Ray.

One small cluster (1 controller, 3 brokers, fast failure detection). A topic with RF 3 gets a
few acks=all records and one consumer read; then each actor's registry (through its `metrics()`
method, which first pushes everything to Ray) shows request counts and latency per API, bytes
and messages in, bytes out, leader/partition counts, no under-replicated or offline partitions,
one active controller and its Raft state, and that the matching `ray.util.metrics` objects exist
in the actor process. The driver's own registry shows the producer's sends, the consumer's
per-partition lag and, at the end, a group member's rebalance. Cutting a follower off from the
other brokers shows ISR shrinks and under-replicated partitions; healing shows ISR expansions.

When Ray's metrics agent runs (a `ray[default]` install), its Prometheus endpoint is scraped
too; with a minimal Ray (no agent: `MetricsExportPort` is -1) that part is skipped, and the
actor-side check stands for it. Waits are deadline polls.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from typing import Any, cast

import ray

from clients import Admin, Consumer, NewTopic, Producer, TopicPartition
from cluster.launcher import LocalCluster
from proto.metrics import REGISTRY

FAST = {
    "broker.heartbeat.interval.ms": 200,
    "broker.session.timeout.ms": 1500,
    "replica.lag.time.max.ms": 2000,
    "replica.fetch.wait.max.ms": 200,
    "replica.fetch.backoff.ms": 100,
    "request.timeout.ms": 8000,
}
BOUND_S = 30.0
TOPIC = "metered"
PARTITIONS = 3
RECORDS = 12


def _wait(what: str, check: Callable[[], Any], timeout_s: float = BOUND_S) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what}: not true after {timeout_s}s (last: {last!r})")


def _value(report: dict[str, Any], name: str, **tags: str) -> float:
    """Sum of the series of `name` whose tags include `tags`."""
    total = 0.0
    for series_tags, value in report["snapshot"].get(name, []):
        if all(series_tags.get(k) == v for k, v in tags.items()):
            total += value.count if hasattr(value, "count") else value
    return total


def _reports(cluster: LocalCluster, broker_ids: list[int]) -> dict[int, dict[str, Any]]:
    return {b: cast(dict[str, Any], ray.get(cluster.broker_handle(b).metrics.remote(),
                                            timeout=10))
            for b in broker_ids}


def _prometheus_text() -> str | None:
    """Ray's Prometheus endpoint on this node, or None when no metrics agent runs."""
    ports = [n.get("MetricsExportPort", -1) for n in ray.nodes() if n.get("Alive")]
    port = next((p for p in ports if p and p > 0), None)
    if port is None:
        return None
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return str(answer.read().decode())


def test_brokers_and_controllers_export_kafka_metrics_through_ray(
        local_cluster: Callable[..., LocalCluster]) -> None:
    cluster = local_cluster(brokers=3, controllers=1, broker_config=FAST, log_level="WARNING")
    with Admin(bootstrap_servers=cluster.bootstrap_servers) as admin:
        admin.create_topics([NewTopic(TOPIC, PARTITIONS, 3)])
    with Producer(bootstrap_servers=cluster.bootstrap_servers, acks="all", linger_ms=0,
                  client_id="metered-producer") as p:
        for i in range(RECORDS):
            p.send(TOPIC, b"v%d" % i, partition=i % PARTITIONS).result(timeout=BOUND_S)
        # Client metrics live in the client's process (here the driver's registry).
        assert REGISTRY.snapshot()["kafka_producer_record_send"] == [
            ({"client_id": "metered-producer"}, RECORDS)]
    tps = [TopicPartition(TOPIC, i) for i in range(PARTITIONS)]
    with Consumer(bootstrap_servers=cluster.bootstrap_servers,
                  client_id="metered-consumer") as consumer:
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        got: list[Any] = []
        deadline = time.monotonic() + BOUND_S
        while len(got) < RECORDS and time.monotonic() < deadline:
            got.extend(consumer.poll(0.5))
        lag = sorted((tags["partition"], value) for tags, value in
                     REGISTRY.snapshot()["kafka_consumer_fetch_manager_records_lag"]
                     if tags["client_id"] == "metered-consumer")
        assert lag == [(str(i), 0.0) for i in range(PARTITIONS)]  # everything consumed
    assert len(got) == RECORDS

    brokers = cluster.broker_ids

    def settled() -> dict[int, dict[str, Any]] | None:
        reports = _reports(cluster, brokers)
        leaders = sum(_value(r, "kafka_server_replicamanager_leadercount")
                      for r in reports.values())
        messages = sum(_value(r, "kafka_server_brokertopicmetrics_messagesin", topic=TOPIC)
                       for r in reports.values())
        under = sum(_value(r, "kafka_server_replicamanager_underreplicatedpartitions")
                    for r in reports.values())
        return reports if leaders == PARTITIONS and messages == RECORDS and under == 0 \
            else None

    reports = _wait("leaders, messages in and full ISRs visible in the brokers' metrics",
                    settled)
    total = {name: sum(_value(r, name, topic=TOPIC) for r in reports.values()) for name in (
        "kafka_server_brokertopicmetrics_bytesin", "kafka_server_brokertopicmetrics_bytesout",
        "kafka_server_brokertopicmetrics_replicationbytesout")}
    assert all(v > 0 for v in total.values()), total
    assert sum(_value(r, "kafka_server_replicamanager_partitioncount")
               for r in reports.values()) == PARTITIONS * 3
    produce = sum(_value(r, "kafka_network_requestmetrics_requests", request="Produce")
                  for r in reports.values())
    assert produce >= RECORDS  # one acks=all send at a time: one request per record here
    assert sum(_value(r, "kafka_network_requestmetrics_totaltimems", request="Produce")
               for r in reports.values()) == produce  # one latency observation per request
    assert sum(_value(r, "kafka_network_requestmetrics_requests", request="Fetch")
               for r in reports.values()) > 0
    for report in reports.values():  # the registry reached Ray's API in every broker process
        assert {"kafka_network_requestmetrics_requests",
                "kafka_network_requestmetrics_totaltimems",
                "kafka_server_replicamanager_underreplicatedpartitions",
                "kafka_server_replicamanager_leadercount"} <= set(report["ray_metrics"])

    controller = cluster.controller_handle(cluster.controller_ids[0])

    def controller_report() -> dict[str, Any] | None:
        report = cast(dict[str, Any], ray.get(controller.metrics.remote(), timeout=10))
        partitions = _value(report, "kafka_controller_kafkacontroller_globalpartitioncount")
        return report if partitions == PARTITIONS else None

    report = _wait("the active controller's gauges", controller_report)
    assert _value(report, "kafka_controller_kafkacontroller_activecontrollercount") == 1
    assert _value(report, "kafka_controller_kafkacontroller_offlinepartitionscount") == 0
    assert _value(report, "kafka_controller_kafkacontroller_activebrokercount") == 3
    assert _value(report, "kafka_server_raft_metrics_current_epoch") >= 1
    assert _value(report, "kafka_server_raft_metrics_current_leader") == cluster.controller_ids[0]
    assert _value(report, "kafka_controller_kafkacontroller_lastappliedrecordoffset") > 0
    assert _value(report, "kafka_network_requestmetrics_requests",
                  request="BrokerHeartbeat") > 0
    assert "kafka_controller_kafkacontroller_activecontrollercount" in report["ray_metrics"]

    if _prometheus_text() is not None:  # Ray's agent runs: the same names, prefixed `ray_`
        wanted = ('ray_kafka_network_requestmetrics_requests_total{',
                  'ray_kafka_network_requestmetrics_totaltimems_bucket{',
                  'ray_kafka_server_brokertopicmetrics_messagesin_total{',
                  'ray_kafka_server_replicamanager_underreplicatedpartitions{',
                  'ray_kafka_controller_kafkacontroller_activecontrollercount{')

        def scraped() -> list[str]:
            text = _prometheus_text() or ""
            return [w for w in wanted if w not in text]

        missing = scraped()
        deadline = time.monotonic() + 60
        while missing and time.monotonic() < deadline:  # the agent scrapes workers periodically
            time.sleep(1.0)
            missing = scraped()
        assert not missing, f"not on Ray's Prometheus endpoint: {missing}"
        assert 'request="Produce"' in (_prometheus_text() or "")

    # A follower cut off from the other brokers (still heartbeating to the controller): the
    # leaders shrink their ISRs through AlterPartition; after healing it catches up and rejoins.
    victim = brokers[-1]
    cluster.isolate_broker_from(victim, [b for b in brokers if b != victim])
    # A caught-up follower stays in sync (Kafka's isCaughtUp): new records make it fall behind.
    with Producer(bootstrap_servers=cluster.bootstrap_servers, acks=1, linger_ms=0) as p:
        for i in range(PARTITIONS):
            p.send(TOPIC, b"more", partition=i).result(timeout=BOUND_S)

    def isr_metric(name: str) -> float:
        return sum(_value(r, name) for r in _reports(cluster, brokers).values())

    _wait("ISR shrinks and under-replicated partitions while a follower is cut off",
          lambda: isr_metric("kafka_server_replicamanager_isrshrinks") >= 1
          and isr_metric("kafka_server_replicamanager_underreplicatedpartitions") >= 1)
    cluster.heal_brokers()
    _wait("ISR expands back after healing",
          lambda: isr_metric("kafka_server_replicamanager_isrexpands") >= 1
          and isr_metric("kafka_server_replicamanager_underreplicatedpartitions") == 0)

    # A group member counts its rebalances (last: the group adds __consumer_offsets).
    with Consumer(bootstrap_servers=cluster.bootstrap_servers, group_id="metered-group",
                  client_id="metered-member") as member:
        member.subscribe([TOPIC])
        assert len(member.wait_for_assignment(BOUND_S)) == PARTITIONS
        assert REGISTRY.snapshot()["kafka_consumer_coordinator_rebalance"] == [
            ({"client_id": "metered-member"}, 1.0)]
