"""The process-wide metrics registry (`REGISTRY`) and the catalog of every metric Rafka exports.

Brokers, controllers and clients record into plain counters, gauges and histograms here; the
shell `proto.metrics_runtime` mirrors them into Ray's metrics API (so Ray's Prometheus endpoint
and dashboard show them), and tests read `REGISTRY.snapshot()`. Nothing here knows about Ray.

Names are Kafka's JMX names lowered into Prometheus-legal names: `kafka.server:type=
ReplicaManager,name=UnderReplicatedPartitions` becomes `kafka_server_replicamanager_
underreplicatedpartitions`; a `*PerSec` meter becomes a counter without the `PerSec` (Prometheus
takes the rate). Counters are named without `_total`: Prometheus exposes them with it, and Ray's
exporter prefixes every name with `ray_` (`ray_kafka_network_requestmetrics_requests_total`).
Tag `node` is the process's node name (`broker-1`, `controller-2`): several servers can share
one process in tests, and a Ray node's one endpoint serves every worker (Ray adds its own labels,
`WorkerId`, `NodeAddress`, `SessionName`). An empty `client.id` becomes Kafka's default
`producer-N` / `consumer-N`.

Every process (tag `node`: `broker-<id>` or `controller-<id>`; `request` = RPC method name)
  kafka_network_requestmetrics_requests                counter    RequestMetrics RequestsPerSec
  kafka_network_requestmetrics_totaltimems             histogram  RequestMetrics TotalTimeMs
  kafka_network_requestmetrics_errors (+ tag error)    counter    RequestMetrics ErrorsPerSec
Brokers (tags node, topic)
  kafka_server_brokertopicmetrics_bytesin              counter    BytesInPerSec
  kafka_server_brokertopicmetrics_messagesin           counter    MessagesInPerSec
  kafka_server_brokertopicmetrics_bytesout             counter    BytesOutPerSec (consumers)
  kafka_server_brokertopicmetrics_replicationbytesout  counter    ReplicationBytesOutPerSec
  kafka_server_brokertopicmetrics_failedproducerequests counter   FailedProduceRequestsPerSec
  kafka_server_brokertopicmetrics_failedfetchrequests  counter    FailedFetchRequestsPerSec
Brokers (tag node)
  kafka_server_replicamanager_underreplicatedpartitions gauge     UnderReplicatedPartitions
  kafka_server_replicamanager_leadercount              gauge      LeaderCount
  kafka_server_replicamanager_partitioncount           gauge      PartitionCount
  kafka_server_replicamanager_isrshrinks               counter    IsrShrinksPerSec
  kafka_server_replicamanager_isrexpands               counter    IsrExpandsPerSec
Controllers (tag node)
  kafka_controller_kafkacontroller_activecontrollercount  gauge   ActiveControllerCount
  kafka_controller_kafkacontroller_offlinepartitionscount gauge   OfflinePartitionsCount
  kafka_controller_kafkacontroller_globalpartitioncount   gauge   GlobalPartitionCount
  kafka_controller_kafkacontroller_globaltopiccount       gauge   GlobalTopicCount
  kafka_controller_kafkacontroller_activebrokercount      gauge   ActiveBrokerCount
  kafka_controller_kafkacontroller_fencedbrokercount      gauge   FencedBrokerCount
Controllers' Raft (tag node; every voter reports its own view)
  kafka_server_raft_metrics_current_epoch              gauge      raft-metrics current-epoch (term)
  kafka_server_raft_metrics_current_leader             gauge      raft-metrics current-leader (-1)
  kafka_server_raft_metrics_high_watermark             gauge      raft-metrics high-watermark
  kafka_server_raft_metrics_log_end_offset             gauge      raft-metrics log-end-offset
  kafka_controller_kafkacontroller_lastappliedrecordoffset gauge  LastAppliedRecordOffset
Producers (tag client_id; Kafka's producer-metrics)
  kafka_producer_record_send                           counter    record-send-total
  kafka_producer_record_error                          counter    record-error-total
  kafka_producer_record_retry                          counter    record-retry-total
  kafka_producer_request                               counter    request-total
  kafka_producer_request_latency_avg                   gauge      request-latency-avg (ms)
  kafka_producer_batch_size_avg                        gauge      batch-size-avg (bytes)
  kafka_producer_buffer_available_bytes                gauge      buffer-available-bytes
  kafka_producer_requests_in_flight                    gauge      requests-in-flight
Consumers (tag client_id)
  kafka_consumer_fetch_manager_records_lag (+ topic, partition)  gauge  records-lag
  kafka_consumer_coordinator_rebalance                 counter    rebalance-total

Broker gauges are the broker's view (its ReplicaManager); offline partitions and the global
counts come from the active controller's metadata image (standbys report 0, as in Kafka).

Thread safety: one lock per registry guards every value, so a client's I/O thread, user threads
and the exporter thread may all touch it. Hot paths count per request or per batch, never per
record; bind a child once with `labels(...)` to skip the tag lookup.
"""

from __future__ import annotations

import bisect
import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

log = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

# Request latency buckets (ms), Kafka-ish: sub-ms produce up to long-polling fetches.
LATENCY_BOUNDARIES_MS: tuple[float, ...] = (
    0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000,
)
# Raw observations kept per histogram series between two exports (Ray's API takes one value at
# a time); past this the export is a sample while the snapshot's buckets stay exact.
MAX_PENDING_OBSERVATIONS = 2048

Tags = Mapping[str, str] | None


class MetricKind(Enum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


@dataclass(frozen=True, slots=True)
class HistogramValue:
    """One histogram series: `buckets[i]` counts values <= boundaries[i]; the last is +Inf."""

    count: int
    sum: float
    buckets: tuple[int, ...]


class Metric:
    """One named metric; its series (children) are keyed by tag values in `tag_keys` order."""

    kind: MetricKind

    def __init__(self, name: str, description: str, tag_keys: Sequence[str],
                 lock: threading.Lock) -> None:
        if not _NAME_RE.match(name):
            raise ValueError(f"metric name {name!r} is not a legal Prometheus name")
        for key in tag_keys:
            if not _NAME_RE.match(key):
                raise ValueError(f"tag key {key!r} of {name} is not a legal label name")
        self.name = name
        self.description = description
        self.tag_keys = tuple(tag_keys)
        self._lock = lock
        self._children: dict[tuple[str, ...], Any] = {}

    def _key(self, tags: Tags) -> tuple[str, ...]:
        if not self.tag_keys:
            if tags:
                raise ValueError(f"{self.name} takes no tags, got {sorted(tags)}")
            return ()
        if tags is None or len(tags) != len(self.tag_keys):
            raise ValueError(f"{self.name} needs tags {self.tag_keys}, got {tags}")
        try:
            return tuple(str(tags[k]) for k in self.tag_keys)
        except KeyError as exc:
            raise ValueError(f"{self.name} needs tags {self.tag_keys}, got {tags}") from exc

    def _new_child(self) -> Any:
        raise NotImplementedError

    def _child(self, key: tuple[str, ...]) -> Any:
        child = self._children.get(key)
        if child is None:
            with self._lock:
                child = self._children.setdefault(key, self._new_child())
        return child

    def labels(self, **tags: str) -> Any:
        """The series for `tags`, to record into without a tag lookup per call."""
        return self._child(self._key(tags))

    def remove(self, tags: Tags = None) -> None:
        """Forget one series (a partition no longer assigned, a client closed)."""
        with self._lock:
            self._children.pop(self._key(tags), None)

    def series(self) -> list[tuple[tuple[str, ...], Any]]:
        """(tag values, child) of every series, in creation order."""
        with self._lock:
            return list(self._children.items())

    def tags_of(self, key: tuple[str, ...]) -> dict[str, str]:
        return dict(zip(self.tag_keys, key))


class CounterChild:
    __slots__ = ("_lock", "value")

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self.value = 0.0

    def inc(self, value: float = 1.0) -> None:
        if value < 0:
            raise ValueError(f"a counter only goes up (inc by {value})")
        with self._lock:
            self.value += value

    def set_total(self, value: float) -> None:
        """Follow a monotonic source kept elsewhere (a client's own counters); never goes down."""
        with self._lock:
            if value > self.value:
                self.value = float(value)


class Counter(Metric):
    kind = MetricKind.COUNTER

    def _new_child(self) -> CounterChild:
        return CounterChild(self._lock)

    def inc(self, value: float = 1.0, tags: Tags = None) -> None:
        self._child(self._key(tags)).inc(value)

    def set_total(self, value: float, tags: Tags = None) -> None:
        self._child(self._key(tags)).set_total(value)


class GaugeChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def set(self, value: float) -> None:
        self.value = float(value)  # one store: atomic, no lock needed


class Gauge(Metric):
    kind = MetricKind.GAUGE

    def _new_child(self) -> GaugeChild:
        return GaugeChild()

    def set(self, value: float, tags: Tags = None) -> None:
        self._child(self._key(tags)).set(value)


class HistogramChild:
    __slots__ = ("_lock", "_boundaries", "buckets", "count", "sum", "pending")

    def __init__(self, lock: threading.Lock, boundaries: tuple[float, ...]) -> None:
        self._lock = lock
        self._boundaries = boundaries
        self.buckets = [0] * (len(boundaries) + 1)
        self.count = 0
        self.sum = 0.0
        self.pending: list[float] = []

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self._boundaries, value)
        with self._lock:
            self.buckets[index] += 1
            self.count += 1
            self.sum += value
            if len(self.pending) < MAX_PENDING_OBSERVATIONS:
                self.pending.append(value)

    def value(self) -> HistogramValue:
        with self._lock:
            return HistogramValue(self.count, self.sum, tuple(self.buckets))

    def drain(self) -> list[float]:
        """The raw observations since the last drain (for an exporter that replays them)."""
        with self._lock:
            out, self.pending = self.pending, []
        return out


class Histogram(Metric):
    kind = MetricKind.HISTOGRAM

    def __init__(self, name: str, description: str, boundaries: Sequence[float],
                 tag_keys: Sequence[str], lock: threading.Lock) -> None:
        super().__init__(name, description, tag_keys, lock)
        bounds = tuple(float(b) for b in boundaries)
        if not bounds or any(b <= 0 for b in bounds) or list(bounds) != sorted(set(bounds)):
            raise ValueError(f"{name}: boundaries must be positive and increasing: {bounds}")
        self.boundaries = bounds

    def _new_child(self) -> HistogramChild:
        return HistogramChild(self._lock, self.boundaries)

    def observe(self, value: float, tags: Tags = None) -> None:
        self._child(self._key(tags)).observe(value)


Snapshot = dict[str, list[tuple[dict[str, str], Any]]]


class MetricsRegistry:
    """Named metrics (one object per name) plus collectors run before each read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._metrics: dict[str, Metric] = {}
        self._collectors: dict[int, Callable[[], None]] = {}
        self._next_collector = 0

    def _get(self, cls: type[Metric], name: str, description: str, tag_keys: Sequence[str],
             **extra: Any) -> Any:
        with self._lock:
            existing = self._metrics.get(name)
            if existing is None:
                if cls is Histogram:
                    metric: Metric = Histogram(name, description, extra["boundaries"],
                                               tag_keys, self._lock)
                else:
                    metric = cls(name, description, tag_keys, self._lock)
                self._metrics[name] = metric
                return metric
        if type(existing) is not cls or existing.tag_keys != tuple(tag_keys):
            raise ValueError(f"metric {name} already registered as {existing.kind.value} "
                             f"with tags {existing.tag_keys}")
        return existing

    def counter(self, name: str, description: str, tag_keys: Sequence[str] = ()) -> Counter:
        result: Counter = self._get(Counter, name, description, tag_keys)
        return result

    def gauge(self, name: str, description: str, tag_keys: Sequence[str] = ()) -> Gauge:
        result: Gauge = self._get(Gauge, name, description, tag_keys)
        return result

    def histogram(self, name: str, description: str, boundaries: Sequence[float],
                  tag_keys: Sequence[str] = ()) -> Histogram:
        result: Histogram = self._get(Histogram, name, description, tag_keys,
                                      boundaries=boundaries)
        return result

    def metrics(self) -> Iterator[Metric]:
        with self._lock:
            found = list(self._metrics.values())
        return iter(found)

    # -- collectors: values computed at read time, so hot paths pay nothing --

    def add_collector(self, collect: Callable[[], None]) -> int:
        """Run `collect()` before every snapshot/export; returns a handle for `remove_collector`."""
        with self._lock:
            self._next_collector += 1
            self._collectors[self._next_collector] = collect
            return self._next_collector

    def remove_collector(self, handle: int) -> None:
        with self._lock:
            self._collectors.pop(handle, None)

    def collect(self) -> None:
        with self._lock:
            collectors = list(self._collectors.values())
        for collect in collectors:
            try:
                collect()
            except Exception:  # a broken collector must not break the others or the caller
                log.exception("metrics collector %r failed", collect)

    def snapshot(self, prefix: str = "") -> Snapshot:
        """{name: [(tags, value)]} of every series (names starting with `prefix`); collectors
        run first. Histogram values are `HistogramValue`s."""
        self.collect()
        out: Snapshot = {}
        for metric in self.metrics():
            if not metric.name.startswith(prefix):
                continue
            rows = []
            for key, child in metric.series():
                value = child.value() if isinstance(child, HistogramChild) else child.value
                rows.append((metric.tags_of(key), value))
            out[metric.name] = rows
        return out

    def value(self, name: str, **tags: str) -> Any:
        """One series' current value (None when absent); collectors are not run."""
        metric = self._metrics.get(name)
        if metric is None:
            return None
        child = metric._children.get(metric._key(tags) if metric.tag_keys else ())
        if child is None:
            return None
        return child.value() if isinstance(child, HistogramChild) else child.value


REGISTRY = MetricsRegistry()


# ---- the catalog (names and tags: see the module docstring's table) -------------------------

_R = REGISTRY
REQUESTS = _R.counter("kafka_network_requestmetrics_requests",
                      "Requests served, per API", ("node", "request"))
REQUEST_TOTAL_TIME_MS = _R.histogram("kafka_network_requestmetrics_totaltimems",
                                     "Time to serve a request (ms), per API",
                                     LATENCY_BOUNDARIES_MS, ("node", "request"))
REQUEST_ERRORS = _R.counter("kafka_network_requestmetrics_errors",
                            "Responses carrying an error, per API and error name",
                            ("node", "request", "error"))

BYTES_IN = _R.counter("kafka_server_brokertopicmetrics_bytesin",
                      "Record bytes appended from producers", ("node", "topic"))
MESSAGES_IN = _R.counter("kafka_server_brokertopicmetrics_messagesin",
                         "Records appended from producers", ("node", "topic"))
BYTES_OUT = _R.counter("kafka_server_brokertopicmetrics_bytesout",
                       "Record bytes sent to consumers", ("node", "topic"))
REPLICATION_BYTES_OUT = _R.counter("kafka_server_brokertopicmetrics_replicationbytesout",
                                   "Record bytes sent to follower replicas", ("node", "topic"))
FAILED_PRODUCE_REQUESTS = _R.counter("kafka_server_brokertopicmetrics_failedproducerequests",
                                     "Produce partitions answered with an error",
                                     ("node", "topic"))
FAILED_FETCH_REQUESTS = _R.counter("kafka_server_brokertopicmetrics_failedfetchrequests",
                                   "Fetch partitions answered with an error", ("node", "topic"))

UNDER_REPLICATED_PARTITIONS = _R.gauge("kafka_server_replicamanager_underreplicatedpartitions",
                                       "Led partitions whose ISR is smaller than the replicas",
                                       ("node",))
LEADER_COUNT = _R.gauge("kafka_server_replicamanager_leadercount",
                        "Partitions this broker leads", ("node",))
PARTITION_COUNT = _R.gauge("kafka_server_replicamanager_partitioncount",
                           "Partitions this broker hosts (leader or follower)", ("node",))
ISR_SHRINKS = _R.counter("kafka_server_replicamanager_isrshrinks",
                         "ISR shrinks committed for partitions this broker leads", ("node",))
ISR_EXPANDS = _R.counter("kafka_server_replicamanager_isrexpands",
                         "ISR expansions committed for partitions this broker leads", ("node",))

ACTIVE_CONTROLLER_COUNT = _R.gauge("kafka_controller_kafkacontroller_activecontrollercount",
                                   "1 on the active controller, else 0", ("node",))
OFFLINE_PARTITIONS = _R.gauge("kafka_controller_kafkacontroller_offlinepartitionscount",
                              "Partitions without a leader (active controller)", ("node",))
GLOBAL_PARTITION_COUNT = _R.gauge("kafka_controller_kafkacontroller_globalpartitioncount",
                                  "Partitions in the cluster (active controller)", ("node",))
GLOBAL_TOPIC_COUNT = _R.gauge("kafka_controller_kafkacontroller_globaltopiccount",
                              "Topics in the cluster (active controller)", ("node",))
ACTIVE_BROKER_COUNT = _R.gauge("kafka_controller_kafkacontroller_activebrokercount",
                               "Registered, unfenced brokers (active controller)", ("node",))
FENCED_BROKER_COUNT = _R.gauge("kafka_controller_kafkacontroller_fencedbrokercount",
                               "Registered, fenced brokers (active controller)", ("node",))

RAFT_CURRENT_EPOCH = _R.gauge("kafka_server_raft_metrics_current_epoch",
                              "This voter's Raft term", ("node",))
RAFT_CURRENT_LEADER = _R.gauge("kafka_server_raft_metrics_current_leader",
                               "The leader this voter knows (-1: none)", ("node",))
RAFT_HIGH_WATERMARK = _R.gauge("kafka_server_raft_metrics_high_watermark",
                               "This voter's commit index", ("node",))
RAFT_LOG_END_OFFSET = _R.gauge("kafka_server_raft_metrics_log_end_offset",
                               "The last index in this voter's log", ("node",))
LAST_APPLIED_RECORD_OFFSET = _R.gauge("kafka_controller_kafkacontroller_lastappliedrecordoffset",
                                      "The last metadata log index applied to the image",
                                      ("node",))

PRODUCER_RECORD_SEND = _R.counter("kafka_producer_record_send", "Records sent",
                                  ("client_id",))
PRODUCER_RECORD_ERROR = _R.counter("kafka_producer_record_error",
                                   "Records whose send failed", ("client_id",))
PRODUCER_RECORD_RETRY = _R.counter("kafka_producer_record_retry",
                                   "Records retried", ("client_id",))
PRODUCER_REQUEST = _R.counter("kafka_producer_request", "Produce requests sent",
                              ("client_id",))
PRODUCER_REQUEST_LATENCY_AVG = _R.gauge("kafka_producer_request_latency_avg",
                                        "Mean Produce request latency (ms)", ("client_id",))
PRODUCER_BATCH_SIZE_AVG = _R.gauge("kafka_producer_batch_size_avg",
                                   "Mean bytes per partition batch sent", ("client_id",))
PRODUCER_BUFFER_AVAILABLE = _R.gauge("kafka_producer_buffer_available_bytes",
                                     "Unused buffer.memory (bytes)", ("client_id",))
PRODUCER_IN_FLIGHT = _R.gauge("kafka_producer_requests_in_flight",
                              "Produce requests awaiting a response", ("client_id",))

CONSUMER_RECORDS_LAG = _R.gauge("kafka_consumer_fetch_manager_records_lag",
                                "High watermark minus position, per assigned partition",
                                ("client_id", "topic", "partition"))
CONSUMER_REBALANCES = _R.counter("kafka_consumer_coordinator_rebalance",
                                 "Rebalances this consumer completed", ("client_id",))
