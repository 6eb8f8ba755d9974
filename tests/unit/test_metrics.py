"""The metrics registry, its Ray exporter (against a fake backend), and the collectors and
accounting functions that feed it. No Ray, no network."""

from __future__ import annotations

import asyncio
import sys
import threading
import uuid
from types import SimpleNamespace
from typing import Any

import pytest

from clients.client_metrics import track_consumer_lag, track_producer, track_rebalances
from clients.consumer.subscription import FetchState, PartitionState
from clients.types import TopicPartition
from cluster import broker_metrics
from controller import controller_metrics
from proto import metrics as m
from proto import metrics_runtime
from proto.errors import ErrorCode, RafkaError
from proto.metadata import (
    NO_LEADER,
    Endpoint,
    PartitionRecord,
    RegisterBrokerRecord,
    TopicRecord,
)
from proto.metadata_image import MetadataImage
from proto.metrics import HistogramValue, MetricsRegistry
from proto.metrics_runtime import RayExporter
from proto.records import RecordBatchBuilder


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ---- the registry ------------------------------------------------------------------------------


def test_counter_gauge_histogram_and_snapshot() -> None:
    reg = MetricsRegistry()
    requests = reg.counter("x_requests", "d", ("request",))
    requests.inc(tags={"request": "Produce"})
    requests.inc(2, {"request": "Produce"})
    requests.labels(request="Fetch").inc(5)
    gauge = reg.gauge("x_leaders", "d")
    gauge.set(3)
    hist = reg.histogram("x_ms", "d", (1, 10), ("request",))
    for value in (0.5, 1, 5, 50):
        hist.observe(value, {"request": "Produce"})
    snap = reg.snapshot()
    assert snap["x_requests"] == [({"request": "Produce"}, 3.0), ({"request": "Fetch"}, 5.0)]
    assert snap["x_leaders"] == [({}, 3.0)]
    # buckets: <= 1 (0.5 and 1), <= 10 (5), +Inf (50)
    assert snap["x_ms"] == [({"request": "Produce"}, HistogramValue(4, 56.5, (2, 1, 1)))]
    assert reg.value("x_requests", request="Fetch") == 5.0
    assert reg.value("x_requests", request="Nope") is None
    assert reg.snapshot(prefix="x_l") == {"x_leaders": [({}, 3.0)]}


def test_same_name_is_the_same_metric_and_mismatches_are_refused() -> None:
    reg = MetricsRegistry()
    first = reg.counter("x_total_things", "d", ("a",))
    assert reg.counter("x_total_things", "other description", ("a",)) is first
    with pytest.raises(ValueError, match="already registered"):
        reg.gauge("x_total_things", "d", ("a",))
    with pytest.raises(ValueError, match="already registered"):
        reg.counter("x_total_things", "d", ("b",))


@pytest.mark.parametrize("name", ["kafka.server.bytes", "1abc", "with-dash", ""])
def test_illegal_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="legal"):
        MetricsRegistry().counter(name, "d")


def test_tags_must_match_the_tag_keys() -> None:
    reg = MetricsRegistry()
    counter = reg.counter("x_c", "d", ("node", "request"))
    with pytest.raises(ValueError, match="needs tags"):
        counter.inc(1, {"node": "broker-1"})
    with pytest.raises(ValueError, match="needs tags"):
        counter.inc(1, {"node": "broker-1", "api": "Fetch"})
    with pytest.raises(ValueError, match="takes no tags"):
        reg.gauge("x_g", "d").set(1, {"node": "x"})
    with pytest.raises(ValueError, match="only goes up"):
        counter.inc(-1, {"node": "b", "request": "r"})
    with pytest.raises(ValueError, match="boundaries"):
        reg.histogram("x_h", "d", (10, 1))


def test_set_total_never_goes_down_and_remove_forgets_a_series() -> None:
    reg = MetricsRegistry()
    counter = reg.counter("x_sent", "d", ("client_id",))
    counter.set_total(10, {"client_id": "p"})
    counter.set_total(7, {"client_id": "p"})
    assert reg.value("x_sent", client_id="p") == 10.0
    counter.remove({"client_id": "p"})
    assert reg.snapshot()["x_sent"] == []


def test_histogram_keeps_exact_buckets_but_bounds_pending_raw_values() -> None:
    reg = MetricsRegistry()
    child = reg.histogram("x_lat", "d", (1,)).labels()
    for _ in range(m.MAX_PENDING_OBSERVATIONS + 10):
        child.observe(0.5)
    assert child.value().count == m.MAX_PENDING_OBSERVATIONS + 10
    assert len(child.drain()) == m.MAX_PENDING_OBSERVATIONS
    assert child.drain() == []


def test_collectors_run_before_each_snapshot_and_a_broken_one_is_contained() -> None:
    reg = MetricsRegistry()
    gauge = reg.gauge("x_now", "d")
    calls: list[int] = []

    def collect() -> None:
        calls.append(1)
        gauge.set(len(calls))

    def broken() -> None:
        raise RuntimeError("boom")

    reg.add_collector(broken)
    handle = reg.add_collector(collect)
    assert reg.snapshot()["x_now"] == [({}, 1.0)]
    assert reg.snapshot()["x_now"] == [({}, 2.0)]
    reg.remove_collector(handle)
    assert reg.snapshot()["x_now"] == [({}, 2.0)]


def test_concurrent_increments_are_not_lost() -> None:
    reg = MetricsRegistry()
    counter = reg.counter("x_hits", "d", ("t",))
    hist = reg.histogram("x_sizes", "d", (1,))

    def work() -> None:
        child = counter.labels(t="a")
        for _ in range(5000):
            child.inc()
            counter.inc(1, {"t": "b"})
            hist.observe(2)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert reg.value("x_hits", t="a") == 20000 and reg.value("x_hits", t="b") == 20000
    assert reg.value("x_sizes").count == 20000


def test_the_catalog_uses_kafka_names_without_total() -> None:
    names = [metric.name for metric in m.REGISTRY.metrics()]
    for expected in ("kafka_server_replicamanager_underreplicatedpartitions",
                     "kafka_controller_kafkacontroller_offlinepartitionscount",
                     "kafka_server_replicamanager_isrshrinks",
                     "kafka_server_replicamanager_isrexpands",
                     "kafka_network_requestmetrics_requests",
                     "kafka_network_requestmetrics_totaltimems",
                     "kafka_server_brokertopicmetrics_bytesin",
                     "kafka_server_brokertopicmetrics_bytesout",
                     "kafka_consumer_fetch_manager_records_lag",
                     "kafka_consumer_coordinator_rebalance"):
        assert expected in names
        assert expected in m.__doc__  # documented in the table
    assert not [n for n in names if n.endswith("_total")]  # Prometheus adds the suffix


# ---- the Ray exporter, against a fake ray.util.metrics ---------------------------------------


class _FakeRayMetric:
    def __init__(self, kind: str, name: str, description: str, *args: Any) -> None:
        self.kind, self.name = kind, name
        self.tag_keys = args[-1]
        self.calls: list[tuple[str, float, dict[str, str]]] = []

    def inc(self, value: float, tags: dict[str, str]) -> None:
        assert value > 0  # Ray refuses inc(<= 0)
        self.calls.append(("inc", value, tags))

    def set(self, value: float, tags: dict[str, str]) -> None:
        self.calls.append(("set", value, tags))

    def observe(self, value: float, tags: dict[str, str]) -> None:
        self.calls.append(("observe", value, tags))


class _FakeBackend:
    def __init__(self) -> None:
        self.made: dict[str, _FakeRayMetric] = {}

    def _make(self, kind: str, name: str, *args: Any) -> _FakeRayMetric:
        assert name not in self.made, "one Ray metric object per name"
        made = self.made[name] = _FakeRayMetric(kind, name, *args)
        return made

    def Counter(self, *args: Any) -> _FakeRayMetric:  # noqa: N802 - mirrors ray.util.metrics
        return self._make("counter", *args)

    def Gauge(self, *args: Any) -> _FakeRayMetric:  # noqa: N802
        return self._make("gauge", *args)

    def Histogram(self, *args: Any) -> _FakeRayMetric:  # noqa: N802
        return self._make("histogram", *args)


def test_exporter_pushes_counter_deltas_gauges_and_raw_observations() -> None:
    reg = MetricsRegistry()
    backend = _FakeBackend()
    exporter = RayExporter(reg, backend)
    counter = reg.counter("x_req", "d", ("request",))
    gauge = reg.gauge("x_lag", "d", ("partition",))
    hist = reg.histogram("x_ms", "d", (1, 10), ("request",))
    reg.counter("x_unused", "d")
    counter.inc(3, {"request": "Produce"})
    gauge.set(7, {"partition": "0"})
    gauge.set(2, {"partition": "1"})
    hist.observe(4, {"request": "Produce"})
    hist.observe(40, {"request": "Produce"})
    exporter.export_once()
    assert "x_unused" not in backend.made  # no series yet: no Ray object
    assert backend.made["x_req"].calls == [("inc", 3.0, {"request": "Produce"})]
    assert backend.made["x_ms"].calls == [("observe", 4.0, {"request": "Produce"}),
                                          ("observe", 40.0, {"request": "Produce"})]
    counter.inc(2, {"request": "Produce"})
    gauge.remove({"partition": "1"})
    exporter.export_once()
    assert backend.made["x_req"].calls[1:] == [("inc", 2.0, {"request": "Produce"})]
    assert backend.made["x_ms"].calls[2:] == []  # drained
    assert backend.made["x_lag"].calls[2:] == [("set", 7.0, {"partition": "0"}),
                                               ("set", 0.0, {"partition": "1"})]
    exporter.export_once()  # nothing new: no counter call (Ray refuses inc(0))
    assert len(backend.made["x_req"].calls) == 2
    assert exporter.exported_names == ["x_lag", "x_ms", "x_req"]
    # A removed and re-created counter series restarts from zero.
    counter.remove({"request": "Produce"})
    counter.inc(1, {"request": "Produce"})
    exporter.export_once()
    assert backend.made["x_req"].calls[-1] == ("inc", 1.0, {"request": "Produce"})


def test_export_is_a_no_op_outside_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were never imported
    assert not metrics_runtime.ray_initialized()
    assert metrics_runtime.start_export() is False
    assert metrics_runtime.export_now() == []


def test_periodic_metrics_refresh_at_once_and_until_stopped() -> None:
    calls: list[int] = []

    def refresh() -> None:
        calls.append(1)
        raise RuntimeError("a failing refresh is logged; the next one still runs")

    async def run() -> int:
        refresher = metrics_runtime.PeriodicMetrics(refresh, name="probe", interval_s=0.01)
        refresher.start()
        assert calls == []  # runs on the loop, not inside start()
        deadline = asyncio.get_running_loop().time() + 5
        while len(calls) < 3 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)  # polls a condition under a deadline
        await refresher.stop()
        stopped_at = len(calls)
        await asyncio.sleep(0.05)  # a window in which a live task would refresh again
        return stopped_at

    stopped_at = asyncio.run(run())
    assert stopped_at >= 3 and len(calls) == stopped_at


def test_metrics_report_outside_ray_is_the_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    report = metrics_runtime.metrics_report()
    assert report["ray_metrics"] == []
    assert "kafka_network_requestmetrics_requests" in report["snapshot"]


# ---- client collectors ---------------------------------------------------------------------


class _FakeEngine:
    def __init__(self) -> None:
        self.stats = {"record-send-total": 10.0, "record-error-total": 1.0,
                      "record-retry-total": 2.0, "request-total": 4.0,
                      "request-latency-avg": 3.5, "batch-send-total": 5.0,
                      "batch-bytes-total": 500.0, "buffer-available-bytes": 1000.0,
                      "requests-in-flight": 1.0}

    def metrics(self) -> dict[str, float]:
        return dict(self.stats)


def test_producer_metrics_mirror_the_engine_counters() -> None:
    engine = _FakeEngine()
    client_id = _unique("p")
    tracked = track_producer(engine, client_id)
    m.REGISTRY.snapshot()
    value = m.REGISTRY.value
    assert value("kafka_producer_record_send", client_id=client_id) == 10.0
    assert value("kafka_producer_record_error", client_id=client_id) == 1.0
    assert value("kafka_producer_record_retry", client_id=client_id) == 2.0
    assert value("kafka_producer_request", client_id=client_id) == 4.0
    assert value("kafka_producer_request_latency_avg", client_id=client_id) == 3.5
    assert value("kafka_producer_batch_size_avg", client_id=client_id) == 100.0
    assert value("kafka_producer_buffer_available_bytes", client_id=client_id) == 1000.0
    engine.stats["record-send-total"] = 25.0
    m.REGISTRY.snapshot()
    assert value("kafka_producer_record_send", client_id=client_id) == 25.0
    tracked.close()
    m.REGISTRY.snapshot()
    assert value("kafka_producer_record_send", client_id=client_id) is None


def test_an_empty_client_id_gets_a_unique_default() -> None:
    first, second = track_producer(_FakeEngine(), ""), track_producer(_FakeEngine(), "")
    assert first.client_id.startswith("producer-") and first.client_id != second.client_id
    first.close()
    second.close()


def test_a_collected_client_unregisters_itself() -> None:
    engine = _FakeEngine()
    client_id = _unique("gone")
    track_producer(engine, client_id)
    m.REGISTRY.snapshot()
    del engine
    m.REGISTRY.snapshot()  # the collector sees the engine is gone and drops its series
    assert m.REGISTRY.value("kafka_producer_record_send", client_id=client_id) is None


class _Weakrefable(SimpleNamespace):
    """SimpleNamespace takes no weak references and compares by value; the real cores take
    weak references and compare by identity."""

    __eq__ = object.__eq__
    __hash__ = object.__hash__  # type: ignore[assignment]


def test_consumer_lag_per_partition_follows_the_assignment() -> None:
    a0, a1 = TopicPartition("lag-a", 0), TopicPartition("lag-a", 1)
    subs = _Weakrefable(_states={
        a0: PartitionState(fetch_state=FetchState.FETCHING, position=40, high_watermark=100),
        a1: PartitionState(),  # no position yet: no lag reported
    })
    client_id = _unique("c")
    tracked = track_consumer_lag(subs, client_id)
    m.REGISTRY.snapshot()
    lag = m.REGISTRY.value
    assert lag("kafka_consumer_fetch_manager_records_lag", client_id=client_id,
               topic="lag-a", partition="0") == 60.0
    assert lag("kafka_consumer_fetch_manager_records_lag", client_id=client_id,
               topic="lag-a", partition="1") is None
    subs._states = {a1: PartitionState(fetch_state=FetchState.FETCHING, position=5,
                                       high_watermark=5)}
    m.REGISTRY.snapshot()
    assert lag("kafka_consumer_fetch_manager_records_lag", client_id=client_id,
               topic="lag-a", partition="0") is None  # revoked: series dropped
    assert lag("kafka_consumer_fetch_manager_records_lag", client_id=client_id,
               topic="lag-a", partition="1") == 0.0
    tracked.close()


def test_rebalance_counter_follows_the_membership_core() -> None:
    core = _Weakrefable(rebalances=2)
    client_id = _unique("g")
    tracked = track_rebalances(core, client_id, _Weakrefable())
    m.REGISTRY.snapshot()
    assert m.REGISTRY.value("kafka_consumer_coordinator_rebalance", client_id=client_id) == 2.0
    tracked.close()


def test_a_consumer_without_client_id_reports_lag_and_rebalances_under_one_id() -> None:
    subs, other = _Weakrefable(_states={}), _Weakrefable(_states={})
    lag = track_consumer_lag(subs, "")
    rebalances = track_rebalances(_Weakrefable(rebalances=0), "", subs)
    elsewhere = track_consumer_lag(other, "")
    assert lag.client_id == rebalances.client_id != elsewhere.client_id
    assert lag.client_id.startswith("consumer-")
    for tracked in (lag, rebalances, elsewhere):
        tracked.close()


# ---- broker accounting and gauges ------------------------------------------------------------


def _batch(n: int) -> bytes:
    builder = RecordBatchBuilder(now_ms=1000)
    for i in range(n):
        builder.append(b"v%d" % i, key=None)
    return builder.build()


def _ok(records: bytes = b"") -> SimpleNamespace:
    return SimpleNamespace(error=None, records=records)


def test_record_count_reads_every_batch_header() -> None:
    assert broker_metrics.record_count(_batch(3) + _batch(4)) == 7
    assert broker_metrics.record_count(b"") == 0
    assert broker_metrics.record_count(b"\x00" * 70) == 0  # not a batch: no endless loop


def test_produce_accounting_counts_bytes_messages_and_failures_per_topic() -> None:
    broker_id = 9001
    node, topic = broker_metrics.node_name(broker_id), _unique("t")
    one, two = _batch(3), _batch(5)
    failed = SimpleNamespace(error=RafkaError.for_code(ErrorCode.NOT_LEADER_OR_FOLLOWER, "x"))
    broker_metrics.account_produce(
        broker_id, [(topic, 0, one), (topic, 1, two), (topic, 2, _batch(1))],
        [_ok(), _ok(), failed])
    value = m.REGISTRY.value
    assert value("kafka_server_brokertopicmetrics_bytesin", node=node, topic=topic) \
        == len(one) + len(two)
    assert value("kafka_server_brokertopicmetrics_messagesin", node=node, topic=topic) == 8
    assert value("kafka_server_brokertopicmetrics_failedproducerequests", node=node,
                 topic=topic) == 1
    assert value("kafka_network_requestmetrics_errors", node=node, request="Produce",
                 error="NOT_LEADER_OR_FOLLOWER") >= 1


def test_fetch_accounting_splits_consumers_from_followers() -> None:
    broker_id = 9002
    node, topic = broker_metrics.node_name(broker_id), _unique("t")
    broker_metrics.account_fetch(broker_id, [topic, topic], [_ok(b"x" * 10), _ok(b"y" * 5)],
                                 follower=False)
    broker_metrics.account_fetch(broker_id, [topic], [_ok(b"z" * 7)], follower=True)
    value = m.REGISTRY.value
    assert value("kafka_server_brokertopicmetrics_bytesout", node=node, topic=topic) == 15
    assert value("kafka_server_brokertopicmetrics_replicationbytesout", node=node,
                 topic=topic) == 7


def test_isr_changes_and_broker_gauges() -> None:
    broker_id = 9003
    node = broker_metrics.node_name(broker_id)
    broker_metrics.account_isr_change(broker_id, (1, 2, 3), (1, 2))
    broker_metrics.account_isr_change(broker_id, (1, 2), (1, 2, 3))
    broker_metrics.account_isr_change(broker_id, (1, 2), (1, 2))
    broker_metrics.account_isr_change(broker_id, (1, 2), (2, 3, 1))
    value = m.REGISTRY.value
    assert value("kafka_server_replicamanager_isrshrinks", node=node) == 1
    assert value("kafka_server_replicamanager_isrexpands", node=node) == 2
    manager = SimpleNamespace(partitions={"a-0": 1, "a-1": 2, "b-0": 3},
                              leader_count=lambda: 2, under_replicated_count=lambda: 1)
    broker_metrics.refresh_gauges(broker_id, manager)
    assert value("kafka_server_replicamanager_partitioncount", node=node) == 3
    assert value("kafka_server_replicamanager_leadercount", node=node) == 2
    assert value("kafka_server_replicamanager_underreplicatedpartitions", node=node) == 1
    broker_metrics.forget_gauges(broker_id)
    assert value("kafka_server_replicamanager_leadercount", node=node) is None


def test_controller_raft_gauges_and_cluster_gauges_only_on_the_active_controller() -> None:
    image = SimpleNamespace(
        topics_by_id={"t1": SimpleNamespace(partitions={0: 1, 1: 2}),
                      "t2": SimpleNamespace(partitions={0: 1})},
        topic_ids_by_name={"a": "t1", "b": "t2"},
        registered_broker_ids=lambda: (1, 2, 3), live_broker_ids=lambda: (1, 2),
        offline_partitions=lambda: ("b-0",))
    value = m.REGISTRY.value

    def raft(active: bool, leader: int | None) -> SimpleNamespace:
        return SimpleNamespace(term=4, leader_id=leader, commit_index=17, last_index=18,
                               applied_index=16, is_active=active, image=image)

    controller_metrics.refresh_gauges(9101, raft(True, 9101))
    controller_metrics.refresh_gauges(9102, raft(False, None))
    active, standby = "controller-9101", "controller-9102"
    assert value("kafka_server_raft_metrics_current_epoch", node=active) == 4
    assert value("kafka_server_raft_metrics_current_leader", node=active) == 9101
    assert value("kafka_server_raft_metrics_current_leader", node=standby) == -1
    assert value("kafka_server_raft_metrics_high_watermark", node=active) == 17
    assert value("kafka_server_raft_metrics_log_end_offset", node=active) == 18
    assert value("kafka_controller_kafkacontroller_lastappliedrecordoffset", node=active) == 16
    assert value("kafka_controller_kafkacontroller_activecontrollercount", node=active) == 1
    assert value("kafka_controller_kafkacontroller_offlinepartitionscount", node=active) == 1
    assert value("kafka_controller_kafkacontroller_globalpartitioncount", node=active) == 3
    assert value("kafka_controller_kafkacontroller_globaltopiccount", node=active) == 2
    assert value("kafka_controller_kafkacontroller_activebrokercount", node=active) == 2
    assert value("kafka_controller_kafkacontroller_fencedbrokercount", node=active) == 1
    assert value("kafka_controller_kafkacontroller_activecontrollercount", node=standby) == 0
    assert value("kafka_controller_kafkacontroller_offlinepartitionscount", node=standby) == 0
    controller_metrics.forget_gauges(9101)
    controller_metrics.forget_gauges(9102)
    assert value("kafka_controller_kafkacontroller_activecontrollercount", node=active) is None
    assert value("kafka_server_raft_metrics_current_epoch", node=active) is None


def test_offline_partitions_from_a_replayed_image() -> None:
    topic_id = "33333333-3333-4333-8333-333333333333"
    image = MetadataImage()
    records = [
        RegisterBrokerRecord(1, "inc-1", 0, Endpoint("127.0.0.1", 9001), fenced=False),
        RegisterBrokerRecord(2, "inc-2", 1, Endpoint("127.0.0.1", 9002), fenced=True),
        TopicRecord("orders", topic_id),
        PartitionRecord(topic_id, 0, (1, 2), (1, 2), 1),
        PartitionRecord(topic_id, 1, (2,), (2,), NO_LEADER),  # its only replica is fenced
    ]
    for offset, record in enumerate(records):
        image.apply(record, offset)
    controller_metrics.refresh_cluster_gauges(9201, image, active=True)
    node, value = "controller-9201", m.REGISTRY.value
    assert value("kafka_controller_kafkacontroller_offlinepartitionscount", node=node) == 1
    assert value("kafka_controller_kafkacontroller_globalpartitioncount", node=node) == 2
    assert value("kafka_controller_kafkacontroller_fencedbrokercount", node=node) == 1
    controller_metrics.forget_gauges(9201)
