"""`RetryingConsumer`: run a handler over topics with non-blocking retry topics and a DLQ.

    consumer = Consumer(bootstrap_servers=..., group_id="billing", enable_auto_commit=False)
    producer = Producer(bootstrap_servers=...)
    runner = RetryingConsumer(consumer, producer, handle, ["orders"],
                              policy=RetryPolicy(delays_ms=(1000, 5000, 30000)))
    runner.run()          # until runner.stop() (any thread)

The routing rules and headers are in `clients/retry_topics.py`. What this shell adds:

- It consumes each base topic and its retry topics (never the DLQ) with the given Consumer:
  subscribed as a group member (`mode="subscribe"`), or with every partition assigned
  (`mode="assign"`, one process, positions only in memory: nothing is committed).
- When the handler raises, the record is republished to its next retry topic (or the DLQ) and
  the partition moves on: one bad record never blocks the records behind it.
- A retry partition whose head record is not due yet is sought back to that record and paused;
  it is resumed once due, and `poll` never waits past that moment.
- At-least-once: offsets are committed only after every republish of the batch is acknowledged.
  A republish that fails rewinds its partition to that record, so it is handled again.

The consumer and producer should move bytes (no serdes), so records travel unchanged; the
handler gets `Record[bytes, bytes]`. Plain counters (`handled`, `retried`, `dead_lettered`,
`delayed`) are left for the metrics registry to export.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from typing import Any, Literal

from clients.retry_topics import (
    DelayedPartitions,
    Destination,
    RetryPolicy,
    Route,
    due_ms,
    route_failure,
)
from clients.types import NewTopic, OffsetAndMetadata, Record, RecordMetadata, TopicPartition
from proto.errors import ErrorCode, RafkaError

__all__ = ["RetryingConsumer", "ensure_retry_topics"]

log = logging.getLogger("rafka.retry")

Handler = Callable[[Record[bytes, bytes]], Any]


def ensure_retry_topics(admin: Any, bases: Sequence[str], policy: RetryPolicy, *,
                        replication_factor: int = -1, timeout: float = 30.0) -> list[str]:
    """Create the missing retry and DLQ topics of `bases`, each with its base's partition
    count (so keyed records keep their partition number). Returns the topics it asked for."""
    described = admin.describe_topics(list(bases), timeout=timeout)
    wanted = [
        NewTopic(name, len(described[base].partitions), replication_factor)
        for base in bases
        for name in (*policy.retry_topics(base), policy.dlq_topic(base))
    ]
    if wanted:
        admin.create_topics(wanted, if_not_exists=True, timeout=timeout)
    return [t.name for t in wanted]


class RetryingConsumer:
    """Drives a handler with retry topics and a DLQ over a public Consumer and Producer.

    Args:
        consumer: a Consumer (bytes in). Group mode needs `group.id` and should have
            `enable.auto.commit=false`: this class commits.
        producer: a Producer (bytes out) for the republishes.
        handler: called once per record; raising sends the record on.
        topics: the base topics.
        policy: delays, non-retriable errors and topic names.
        mode: "subscribe" (group member, commits) or "assign" (all partitions, no commits).
        admin: with `create_topics=True`, used once to create missing retry/DLQ topics.
        clock_ms: wall clock in epoch ms (tests may pass their own).
        send_timeout: seconds to wait for a republish to be acknowledged.
    """

    def __init__(self, consumer: Any, producer: Any, handler: Handler, topics: Iterable[str], *,
                 policy: RetryPolicy | None = None,
                 mode: Literal["subscribe", "assign"] = "subscribe",
                 admin: Any = None, create_topics: bool = False,
                 clock_ms: Callable[[], int] | None = None,
                 send_timeout: float = 30.0) -> None:
        if mode not in ("subscribe", "assign"):
            raise ValueError(f"mode must be 'subscribe' or 'assign', got {mode!r}")
        self._consumer = consumer
        self._producer = producer
        self._handler = handler
        self.bases = list(dict.fromkeys(topics))
        self.policy = policy or RetryPolicy()
        self.mode = mode
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self._send_timeout = send_timeout
        self._delayed = DelayedPartitions()
        self._stopping = False
        self.handled = 0
        self.retried = 0
        self.dead_lettered = 0
        self.delayed = 0
        if create_topics:
            if admin is None:
                raise ValueError("create_topics=True needs an admin")
            ensure_retry_topics(admin, self.bases, self.policy)
        self._start()

    @property
    def topics(self) -> list[str]:
        """Everything consumed: the base topics and their retry topics."""
        return self.policy.topics_to_consume(self.bases)

    def _start(self) -> None:
        if self.mode == "subscribe":
            self._consumer.subscribe(self.topics)
            return
        partitions: list[TopicPartition] = []
        for topic in self.topics:
            numbers = self._consumer.partitions_for_topic(topic)
            if not numbers:
                raise RafkaError.for_code(
                    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                    f"topic {topic} does not exist (create it, or "
                    "pass create_topics=True with an admin)")
            partitions.extend(TopicPartition(topic, p) for p in sorted(numbers))
        self._consumer.assign(partitions)

    # ------------------------------------------------------------ the loop

    def run(self, poll_timeout: float = 1.0) -> None:
        """Poll and handle until `stop()`."""
        while not self._stopping:
            self.poll_once(poll_timeout)

    def stop(self) -> None:
        """Make `run` return after the current batch (safe from another thread)."""
        self._stopping = True

    def poll_once(self, timeout: float = 1.0) -> int:
        """One poll: handle, republish failures, commit. Returns the records taken."""
        self._resume_due()
        now = self._clock_ms()
        next_due = self._delayed.next_due_ms()
        if next_due is not None:
            timeout = min(timeout, max(0.0, (next_due - now) / 1000))
        batch = self._consumer.poll(timeout)
        done: dict[TopicPartition, int] = {}
        sends: list[tuple[TopicPartition, int, Route, Future[RecordMetadata]]] = []
        taken = 0
        for tp in sorted(batch.partitions()):
            for record in batch[tp]:
                if self._hold_back(tp, record):
                    break
                taken += 1
                try:
                    self._handler(record)
                    self.handled += 1
                except Exception as exc:  # the handler's failure is data here
                    route = route_failure(record, exc, self.policy, self._clock_ms())
                    future = self._producer.send(route.topic, route.value, route.key,
                                                 headers=list(route.headers))
                    sends.append((tp, record.offset, route, future))
                done[tp] = record.offset + 1
        self._await_republishes(sends, done)
        self._commit(done)
        return taken

    def _hold_back(self, tp: TopicPartition, record: Record[bytes, bytes]) -> bool:
        """Pause a retry partition whose head is not due, rewound so it comes again."""
        if not self.policy.retry_level(tp.topic):
            return False
        due = due_ms(record)
        if due is None or due <= self._clock_ms():
            return False
        self._consumer.seek(tp, record.offset)
        self._consumer.pause(tp)
        self._delayed.delay(tp, due)
        self.delayed += 1
        return True

    def _resume_due(self) -> None:
        if not len(self._delayed):
            return
        self._delayed.retain(set(self._consumer.assignment()))
        ready = self._delayed.pop_due(self._clock_ms())
        if ready:
            self._consumer.resume(*ready)

    def _await_republishes(
        self,
        sends: list[tuple[TopicPartition, int, Route, Future[RecordMetadata]]],
        done: dict[TopicPartition, int],
    ) -> None:
        rewind: dict[TopicPartition, int] = {}
        for tp, offset, route, future in sends:
            try:
                future.result(timeout=self._send_timeout)
            except Exception as exc:
                log.warning("republishing %s@%d to %s failed (%r); it will be handled again",
                            tp, offset, route.topic, exc)
                rewind[tp] = min(rewind.get(tp, offset), offset)
                continue
            if route.destination is Destination.DLQ:
                self.dead_lettered += 1
            else:
                self.retried += 1
        for tp, offset in rewind.items():
            self._consumer.seek(tp, offset)
            done[tp] = offset

    def _commit(self, done: dict[TopicPartition, int]) -> None:
        if self.mode != "subscribe" or not done:
            return
        try:
            self._consumer.commit({tp: OffsetAndMetadata(o) for tp, o in done.items()})
        except RafkaError as exc:
            # A rebalance took the partitions: their new owner re-reads from the last commit
            # (at-least-once), so this is not fatal.
            log.warning("commit after retry handling failed: %r", exc)

    def close(self, timeout: float = 30.0) -> None:
        """Stop; the consumer and producer belong to the caller and stay open."""
        self._stopping = True
