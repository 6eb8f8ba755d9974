"""Client metrics: collectors that copy a client's own counters into `proto.metrics.REGISTRY`.

The producer engine already keeps Kafka's producer-metrics counters (`Producer.metrics()`), and
a consumer's `SubscriptionState` knows each partition's position and high watermark. Rather than
counting twice on the hot path, a collector reads them when the registry is read (a snapshot, or
the Ray exporter's tick, every couple of seconds). Both sources are read from another thread:
they are plain numbers and dicts copied in one step, and a round that races a resize is
skipped (the next one catches up).
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable
from typing import Any

from proto import metrics as m


_CLIENT_SEQUENCE = itertools.count(1)  # next() is atomic: ids stay unique across threads
# A consumer's fetcher and group membership report under one default id, keyed by its
# SubscriptionState (both shells hold it).
_CONSUMER_IDS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def client_id_or_default(client_id: str, kind: str) -> str:
    """`client.id`, or Kafka's default `producer-N` / `consumer-N` when it is empty."""
    return client_id or f"{kind}-{next(_CLIENT_SEQUENCE)}"


def consumer_client_id(client_id: str, subscriptions: Any) -> str:
    """`client.id`, or one default `consumer-N` per consumer (per SubscriptionState)."""
    if client_id:
        return client_id
    found = _CONSUMER_IDS.get(subscriptions)
    if found is None:
        found = _CONSUMER_IDS.setdefault(subscriptions, client_id_or_default("", "consumer"))
    return found


class _TrackedClient:
    """A registered collector plus the series it wrote, removed together by `close()`."""

    def __init__(self, client_id: str, source: Any,
                 collect: Callable[[Any, _TrackedClient], None],
                 metrics: tuple[m.Metric, ...]) -> None:
        self.client_id = client_id
        self._source = weakref.ref(source)  # a client never closed still gets collected
        self._collect = collect
        self._metrics = metrics
        self.last_series: set[tuple[str, int]] = set()  # per-partition series set last round
        self._handle: int | None = m.REGISTRY.add_collector(self._run)

    def _run(self) -> None:
        source = self._source()
        if source is None:
            self.close()
            return
        try:
            self._collect(source, self)
        except RuntimeError:  # "changed size during iteration": the owner's loop was mid-update
            pass

    def close(self) -> None:
        """Stop collecting and forget this client's series (Kafka drops a closed client's)."""
        if self._handle is None:
            return
        m.REGISTRY.remove_collector(self._handle)
        self._handle = None
        for metric in self._metrics:
            for key, _ in metric.series():
                tags = metric.tags_of(key)
                if tags.get("client_id") == self.client_id:
                    metric.remove(tags)


_PRODUCER_METRICS: tuple[m.Metric, ...] = (
    m.PRODUCER_RECORD_SEND, m.PRODUCER_RECORD_ERROR, m.PRODUCER_RECORD_RETRY,
    m.PRODUCER_REQUEST, m.PRODUCER_REQUEST_LATENCY_AVG, m.PRODUCER_BATCH_SIZE_AVG,
    m.PRODUCER_BUFFER_AVAILABLE, m.PRODUCER_IN_FLIGHT,
)


def _collect_producer(engine: Any, tracked: _TrackedClient) -> None:
    stats: dict[str, float] = engine.metrics()
    tags = {"client_id": tracked.client_id}
    m.PRODUCER_RECORD_SEND.set_total(stats.get("record-send-total", 0.0), tags)
    m.PRODUCER_RECORD_ERROR.set_total(stats.get("record-error-total", 0.0), tags)
    m.PRODUCER_RECORD_RETRY.set_total(stats.get("record-retry-total", 0.0), tags)
    m.PRODUCER_REQUEST.set_total(stats.get("request-total", 0.0), tags)
    m.PRODUCER_REQUEST_LATENCY_AVG.set(stats.get("request-latency-avg", 0.0), tags)
    batches = stats.get("batch-send-total", 0.0)
    if batches and "batch-bytes-total" in stats:
        m.PRODUCER_BATCH_SIZE_AVG.set(stats["batch-bytes-total"] / batches, tags)
    m.PRODUCER_BUFFER_AVAILABLE.set(stats.get("buffer-available-bytes", 0.0), tags)
    m.PRODUCER_IN_FLIGHT.set(stats.get("requests-in-flight", 0.0), tags)


def track_producer(engine: Any, client_id: str) -> _TrackedClient:
    """Mirror `engine.metrics()` (Kafka's producer-metrics names) into the registry."""
    return _TrackedClient(client_id_or_default(client_id, "producer"), engine, _collect_producer,
                          _PRODUCER_METRICS)


def _collect_lag(subscriptions: Any, tracked: _TrackedClient) -> None:
    client_id = tracked.client_id
    states = dict(subscriptions._states)  # one C-level copy; assign() swaps the whole dict
    current: set[tuple[str, int]] = set()
    for tp, state in states.items():
        position, high_watermark = state.position, state.high_watermark
        if position < 0 or high_watermark < 0:
            continue  # not fetched yet: no lag to report (Kafka reports none either)
        current.add((tp.topic, tp.partition))
        m.CONSUMER_RECORDS_LAG.set(max(high_watermark - position, 0), {
            "client_id": client_id, "topic": tp.topic, "partition": str(tp.partition)})
    for topic, partition in tracked.last_series - current:  # revoked or reset partitions
        m.CONSUMER_RECORDS_LAG.remove(
            {"client_id": client_id, "topic": topic, "partition": str(partition)})
    tracked.last_series = current


def track_consumer_lag(subscriptions: Any, client_id: str) -> _TrackedClient:
    """Report high watermark - position for every assigned, fetched partition."""
    return _TrackedClient(consumer_client_id(client_id, subscriptions), subscriptions,
                          _collect_lag, (m.CONSUMER_RECORDS_LAG,))


def track_rebalances(membership: Any, client_id: str, subscriptions: Any,
                     attribute: str = "rebalances") -> _TrackedClient:
    """Mirror a membership core's plain rebalance counter into the registry (`subscriptions`:
    the consumer's SubscriptionState, for its default client id)."""
    def collect(source: Any, tracked: _TrackedClient) -> None:
        m.CONSUMER_REBALANCES.set_total(float(getattr(source, attribute, 0)),
                                        {"client_id": tracked.client_id})
    return _TrackedClient(consumer_client_id(client_id, subscriptions), membership, collect,
                          (m.CONSUMER_REBALANCES,))
