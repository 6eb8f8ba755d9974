"""A broker's metrics: per-request accounting for Produce/Fetch, ISR changes, and gauges.

Plain functions over data the broker already holds (names in `proto.metrics`). Produce and
Fetch are counted once per request from the entries and results the servicer has in hand
(lengths of bytes it already holds; a batch's record count read from its header), never per
record. Gauges are computed from the `ReplicaManager` on the broker's own loop, once a second
(`proto.metrics_runtime.PeriodicMetrics`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Any

from proto import metrics as m
from proto.records import LENGTH_OFFSET, LOG_OVERHEAD, RECORDS_COUNT_OFFSET

_INT32 = struct.Struct(">i")
_NODES: dict[int, dict[str, str]] = {}
# Bound per-topic series, so a request costs dict lookups rather than tag tuples.
_TOPIC_SERIES: dict[tuple[str, int, str], Any] = {}


def node_name(broker_id: int) -> str:
    return f"broker-{broker_id}"


def _node_tags(broker_id: int) -> dict[str, str]:
    tags = _NODES.get(broker_id)
    if tags is None:
        tags = _NODES[broker_id] = {"node": node_name(broker_id)}
    return tags


def _topic_series(metric: m.Counter, broker_id: int, topic: str) -> Any:
    key = (metric.name, broker_id, topic)
    child = _TOPIC_SERIES.get(key)
    if child is None:
        child = _TOPIC_SERIES[key] = metric.labels(node=node_name(broker_id), topic=topic)
    return child


def record_count(records: bytes | memoryview) -> int:
    """Records in a RecordBatch v2 stream, from each batch's header (nothing is decoded)."""
    count, pos, end = 0, 0, len(records)
    while end - pos >= RECORDS_COUNT_OFFSET + 4:
        size = LOG_OVERHEAD + _INT32.unpack_from(records, pos + LENGTH_OFFSET)[0]
        if size < RECORDS_COUNT_OFFSET + 4:
            break  # not a batch (appended data is validated; this only guards the loop)
        count += _INT32.unpack_from(records, pos + RECORDS_COUNT_OFFSET)[0]
        pos += size
    return count


def _count_error(node: str, request: str, error: Any) -> str:
    name = error.code.name if hasattr(error, "code") else str(error)
    m.REQUEST_ERRORS.inc(1, {"node": node, "request": request, "error": name})
    return name


def account_produce(broker_id: int, entries: Sequence[tuple[str, int, bytes]],
                    results: Sequence[Any]) -> None:
    """BytesIn / MessagesIn per topic for appended partitions; failures and their errors."""
    node = _node_tags(broker_id)["node"]
    per_topic: dict[str, list[int]] = {}
    for (topic, _, records), result in zip(entries, results):
        totals = per_topic.get(topic)
        if totals is None:
            totals = per_topic[topic] = [0, 0, 0]
        if result.error is None:
            totals[0] += len(records)
            totals[1] += record_count(records)
        else:
            totals[2] += 1
            _count_error(node, "Produce", result.error)
    for topic, (size, messages, failed) in per_topic.items():
        if size:
            _topic_series(m.BYTES_IN, broker_id, topic).inc(size)
        if messages:
            _topic_series(m.MESSAGES_IN, broker_id, topic).inc(messages)
        if failed:
            _topic_series(m.FAILED_PRODUCE_REQUESTS, broker_id, topic).inc(failed)


def account_fetch(broker_id: int, topics: Iterable[str], results: Sequence[Any],
                  follower: bool) -> None:
    """BytesOut (consumers) or ReplicationBytesOut (followers) per topic; failures."""
    node = _node_tags(broker_id)["node"]
    per_topic: dict[str, list[int]] = {}
    for topic, result in zip(topics, results):
        totals = per_topic.get(topic)
        if totals is None:
            totals = per_topic[topic] = [0, 0]
        if result.error is None:
            totals[0] += len(result.records)
        else:
            totals[1] += 1
            _count_error(node, "Fetch", result.error)
    out = m.REPLICATION_BYTES_OUT if follower else m.BYTES_OUT
    for topic, (size, failed) in per_topic.items():
        if size:
            _topic_series(out, broker_id, topic).inc(size)
        if failed:
            _topic_series(m.FAILED_FETCH_REQUESTS, broker_id, topic).inc(failed)


def account_isr_change(broker_id: int, old_isr: Sequence[int], new_isr: Sequence[int]) -> None:
    """A committed AlterPartition of a partition this broker leads: shrink or expand."""
    if len(new_isr) < len(old_isr):
        m.ISR_SHRINKS.inc(1, _node_tags(broker_id))
    elif len(new_isr) > len(old_isr):
        m.ISR_EXPANDS.inc(1, _node_tags(broker_id))


def refresh_gauges(broker_id: int, manager: Any) -> None:
    """Partition, leader and under-replicated counts from the ReplicaManager (its own loop)."""
    tags = _node_tags(broker_id)
    m.PARTITION_COUNT.set(len(manager.partitions), tags)
    m.LEADER_COUNT.set(manager.leader_count(), tags)
    m.UNDER_REPLICATED_PARTITIONS.set(manager.under_replicated_count(), tags)


def forget_gauges(broker_id: int) -> None:
    """A stopped broker reports nothing (its counters stay: they only go up)."""
    tags = _node_tags(broker_id)
    for gauge in (m.PARTITION_COUNT, m.LEADER_COUNT, m.UNDER_REPLICATED_PARTITIONS):
        gauge.remove(tags)
