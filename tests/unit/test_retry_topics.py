"""Retry topics and DLQ: routing and headers (core), and the runner over fake clients."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any

import pytest

from clients.consumer.consumer import ConsumerRecords
from clients.errors import SerializationError
from clients.retry_runtime import RetryingConsumer, ensure_retry_topics
from clients.retry_topics import (
    ATTEMPT,
    DUE_MS,
    EXCEPTION_CLASS,
    EXCEPTION_MESSAGE,
    ORIGINAL_OFFSET,
    ORIGINAL_PARTITION,
    ORIGINAL_TOPIC,
    DelayedPartitions,
    Destination,
    NonRetriableError,
    RetryPolicy,
    attempt_of,
    base_topic,
    is_due,
    route_failure,
)
from clients.types import (
    Header,
    OffsetAndMetadata,
    PartitionInfo,
    Record,
    RecordMetadata,
    TimestampType,
    TopicDescription,
    TopicPartition,
)

TP = TopicPartition
POLICY = RetryPolicy(delays_ms=(1000, 5000, 30000))


def rec(topic: str, offset: int, value: bytes | None = b"v", *, partition: int = 0,
        headers: Iterable[Header] = (), key: bytes | None = b"k") -> Record[bytes, bytes]:
    return Record(topic, partition, offset, 1_000 + offset, TimestampType.CREATE_TIME,
                  key, value, tuple(headers))


def forward(route: Any, offset: int = 0, partition: int = 0) -> Record[bytes, bytes]:
    """The record a route becomes once read back from its topic."""
    return rec(route.topic, offset, route.value, partition=partition, headers=route.headers,
               key=route.key)


# ---------------------------------------------------------------- core


def test_first_failure_goes_to_retry_1_with_origin_headers() -> None:
    record = rec("orders", 41, partition=2, headers=[("trace", b"abc")])
    route = route_failure(record, ValueError("boom"), POLICY, now_ms=10_000)
    assert route.destination is Destination.RETRY
    assert route.topic == "orders.retry.1"
    assert (route.key, route.value, route.attempt, route.due_ms) == (b"k", b"v", 1, 11_000)
    headers = dict(route.headers)
    assert headers["trace"] == b"abc"
    assert headers[ORIGINAL_TOPIC] == b"orders"
    assert headers[ORIGINAL_PARTITION] == b"2"
    assert headers[ORIGINAL_OFFSET] == b"41"
    assert headers[EXCEPTION_CLASS] == b"builtins.ValueError"
    assert headers[EXCEPTION_MESSAGE] == b"boom"
    assert headers[ATTEMPT] == b"1"
    assert headers[DUE_MS] == b"11000"


def test_delays_grow_through_the_retry_topics_then_the_dlq() -> None:
    record = rec("orders", 7)
    seen = []
    now = 0
    for _ in range(4):
        route = route_failure(record, RuntimeError(f"try {now}"), POLICY, now_ms=now)
        seen.append((route.topic, route.due_ms))
        record = forward(route, offset=100 + len(seen))
        now += 100_000
    assert seen == [
        ("orders.retry.1", 1_000),
        ("orders.retry.2", 105_000),
        ("orders.retry.3", 230_000),
        ("orders.dlq", None),
    ]
    # the origin survives every hop; our headers appear once; the last error is kept
    assert record.header_values(ORIGINAL_TOPIC) == (b"orders",)
    assert record.header(ORIGINAL_OFFSET) == b"7"
    assert record.header(ATTEMPT) == b"4"
    assert record.header_values(EXCEPTION_MESSAGE) == (b"try 300000",)
    assert record.header(DUE_MS) is None


@pytest.mark.parametrize("error", [NonRetriableError("bad"), SerializationError("bytes")])
def test_non_retriable_errors_go_straight_to_the_dlq(error: Exception) -> None:
    route = route_failure(rec("orders", 1), error, POLICY, now_ms=0)
    assert (route.destination, route.topic, route.attempt) == (Destination.DLQ, "orders.dlq", 1)


def test_custom_non_retriable_classes_and_no_retries() -> None:
    policy = RetryPolicy(delays_ms=(), non_retriable=(KeyError,))
    assert route_failure(rec("a", 0), ValueError(), policy, 0).topic == "a.dlq"
    assert RetryPolicy(non_retriable=(KeyError,)).is_retriable(NonRetriableError()) is True


def test_topic_names_and_levels() -> None:
    assert POLICY.topics_to_consume(["a", "b"]) == [
        "a", "a.retry.1", "a.retry.2", "a.retry.3", "b", "b.retry.1", "b.retry.2", "b.retry.3",
    ]
    assert POLICY.dlq_topic("a") == "a.dlq"
    assert [POLICY.retry_level(t) for t in ("a.retry.2", "a", "a.retry.9", ".retry.1", "a.dlq")] \
        == [2, 0, 0, 0, 0]
    # a topic that merely looks like a retry topic, read without our headers
    assert base_topic(rec("pay.retry.1", 0), POLICY) == "pay"
    with pytest.raises(ValueError):
        POLICY.retry_topic("a", 4)
    with pytest.raises(ValueError):
        RetryPolicy(delays_ms=(-1,))


def test_due_and_attempt_read_defensively() -> None:
    assert is_due(rec("a.retry.1", 0), now_ms=0)  # no header: at once
    r = rec("a.retry.1", 0, headers=[(DUE_MS, b"500"), (ATTEMPT, b"2")])
    assert not is_due(r, 499) and is_due(r, 500) and attempt_of(r) == 2
    junk = rec("a.retry.1", 0, headers=[(DUE_MS, b"\xff"), (ATTEMPT, b"x")])
    assert is_due(junk, 0) and attempt_of(junk) == 0


def test_huge_exception_messages_are_truncated() -> None:
    route = route_failure(rec("a", 0), ValueError("x" * 100_000), POLICY, 0)
    assert len(dict(route.headers)[EXCEPTION_MESSAGE] or b"") == 4096


def test_delayed_partitions() -> None:
    delayed = DelayedPartitions()
    delayed.delay(TP("a.retry.1", 0), 100)
    delayed.delay(TP("a.retry.2", 0), 50)
    assert delayed.next_due_ms() == 50
    assert delayed.pop_due(60) == [TP("a.retry.2", 0)]
    delayed.retain({TP("x", 0)})
    assert len(delayed) == 0 and delayed.next_due_ms() is None


# ---------------------------------------------------------------- runner over fakes


class FakeLog:
    """Topics as lists of records; shared by the fake consumer and producer."""

    def __init__(self, topics: Iterable[str]) -> None:
        self.topics: dict[str, list[Record[bytes, bytes]]] = {t: [] for t in topics}

    def append(self, topic: str, key: bytes | None, value: bytes | None,
               headers: Iterable[Header] = ()) -> RecordMetadata:
        log = self.topics[topic]
        log.append(rec(topic, len(log), value, headers=headers, key=key))
        return RecordMetadata(topic, 0, len(log) - 1, 0)


class FakeProducer:
    def __init__(self, log: FakeLog, fail_topics: set[str] | None = None) -> None:
        self.log = log
        self.fail_topics = fail_topics or set()

    def send(self, topic: str, value: Any = None, key: Any = None, *,
             headers: Any = None) -> Future[RecordMetadata]:
        future: Future[RecordMetadata] = Future()
        if topic in self.fail_topics:
            future.set_exception(TimeoutError("no ack"))
        else:
            future.set_result(self.log.append(topic, key, value, headers or ()))
        return future


class FakeConsumer:
    """One partition per topic; poll returns what lies after each unpaused position."""

    def __init__(self, log: FakeLog) -> None:
        self.log = log
        self.positions: dict[TopicPartition, int] = {}
        self.paused_: set[TopicPartition] = set()
        self.commits: list[dict[TopicPartition, OffsetAndMetadata]] = []
        self.subscribed: list[str] = []

    def subscribe(self, topics: list[str]) -> None:
        self.subscribed = list(topics)
        self.positions = {TP(t, 0): 0 for t in topics}

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.positions = {tp: 0 for tp in partitions}

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return {0} if topic in self.log.topics else None

    def assignment(self) -> set[TopicPartition]:
        return set(self.positions)

    def poll(self, timeout: float = 1.0) -> ConsumerRecords[bytes, bytes]:
        out = {}
        for tp, pos in self.positions.items():
            if tp in self.paused_:
                continue
            records = self.log.topics[tp.topic][pos:]
            if records:
                out[tp] = records
                self.positions[tp] = records[-1].offset + 1
        return ConsumerRecords(out)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    def pause(self, *tps: TopicPartition) -> None:
        self.paused_.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused_.difference_update(tps)

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        self.commits.append(dict(offsets))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


def _setup(handler: Any, policy: RetryPolicy = POLICY, mode: str = "subscribe",
           fail_topics: set[str] | None = None
           ) -> tuple[FakeLog, FakeConsumer, RetryingConsumer, Clock]:
    log = FakeLog(["orders", *policy.retry_topics("orders"), policy.dlq_topic("orders")])
    consumer = FakeConsumer(log)
    clock = Clock()
    runner = RetryingConsumer(consumer, FakeProducer(log, fail_topics), handler, ["orders"],
                              policy=policy, mode=mode, clock_ms=clock)  # type: ignore[arg-type]
    return log, consumer, runner, clock


def test_runner_retries_without_blocking_and_dead_letters_poison() -> None:
    handled: list[bytes] = []

    def handler(record: Record[bytes, bytes]) -> None:
        if record.value == b"poison":
            raise RuntimeError("cannot handle")
        handled.append(record.value or b"")

    log, consumer, runner, clock = _setup(handler)
    assert consumer.subscribed == ["orders", "orders.retry.1", "orders.retry.2", "orders.retry.3"]
    for value in (b"a", b"poison", b"b"):
        log.append("orders", b"k", value)
    runner.poll_once(0)
    # the main partition moved past the poison record at once, and committed after republish
    assert handled == [b"a", b"b"]
    assert [r.value for r in log.topics["orders.retry.1"]] == [b"poison"]
    assert consumer.commits[-1] == {TP("orders", 0): OffsetAndMetadata(3)}
    # not due: the retry partition is rewound and paused, nothing committed for it
    runner.poll_once(0)
    assert TP("orders.retry.1", 0) in consumer.paused_
    assert consumer.positions[TP("orders.retry.1", 0)] == 0
    assert runner.delayed == 1 and log.topics["orders.retry.2"] == []
    for delay in POLICY.delays_ms:
        clock.now += delay
        runner.poll_once(0)  # resume, handle, fail again, republish one level up
        runner.poll_once(0)  # the next level is not due yet
    dlq = log.topics["orders.dlq"]
    assert [r.value for r in dlq] == [b"poison"]
    assert dlq[0].header(ORIGINAL_TOPIC) == b"orders"
    assert dlq[0].header(ORIGINAL_OFFSET) == b"1"
    assert dlq[0].header(ATTEMPT) == b"4"
    assert (runner.handled, runner.retried, runner.dead_lettered) == (2, 3, 1)
    assert consumer.commits[-1] == {TP("orders.retry.3", 0): OffsetAndMetadata(1)}


def test_runner_sends_non_retriable_straight_to_dlq() -> None:
    def handler(record: Record[bytes, bytes]) -> None:
        raise NonRetriableError("malformed")

    log, _, runner, _ = _setup(handler)
    log.append("orders", None, b"x")
    runner.poll_once(0)
    assert [r.value for r in log.topics["orders.dlq"]] == [b"x"]
    assert log.topics["orders.retry.1"] == []


def test_failed_republish_rewinds_and_does_not_commit_past_it() -> None:
    calls: list[bytes] = []

    def handler(record: Record[bytes, bytes]) -> None:
        calls.append(record.value or b"")
        if record.value == b"bad":
            raise RuntimeError("x")

    log, consumer, runner, _ = _setup(handler, fail_topics={"orders.retry.1"})
    for value in (b"ok", b"bad", b"after"):
        log.append("orders", None, value)
    runner.poll_once(0)
    assert consumer.commits[-1] == {TP("orders", 0): OffsetAndMetadata(1)}
    assert consumer.positions[TP("orders", 0)] == 1
    runner.poll_once(0)
    assert calls == [b"ok", b"bad", b"after", b"bad", b"after"]  # at-least-once


def test_assign_mode_takes_every_partition_and_never_commits() -> None:
    def handler(record: Record[bytes, bytes]) -> None:
        raise RuntimeError("x")

    log, consumer, runner, _ = _setup(handler, mode="assign")
    assert consumer.assignment() == {TP(t, 0) for t in POLICY.topics_to_consume(["orders"])}
    log.append("orders", None, b"x")
    runner.poll_once(0)
    assert consumer.commits == [] and len(log.topics["orders.retry.1"]) == 1


def test_poll_waits_no_longer_than_the_next_due_time() -> None:
    timeouts: list[float] = []

    def handler(record: Record[bytes, bytes]) -> None:
        raise RuntimeError("x")

    log, consumer, runner, clock = _setup(handler)
    original = consumer.poll

    def poll(timeout: float = 1.0) -> ConsumerRecords[bytes, bytes]:
        timeouts.append(timeout)
        return original(timeout)

    consumer.poll = poll  # type: ignore[method-assign]
    log.append("orders", None, b"x")
    runner.poll_once(5.0)
    runner.poll_once(5.0)  # pauses retry.1 until now + 1 s
    clock.now += 400
    runner.poll_once(5.0)
    assert timeouts == [5.0, 5.0, pytest.approx(0.6)]


def test_a_delayed_partition_taken_by_a_rebalance_is_forgotten() -> None:
    def handler(record: Record[bytes, bytes]) -> None:
        raise RuntimeError("x")

    log, consumer, runner, clock = _setup(handler)
    log.append("orders", None, b"x")
    runner.poll_once(0)
    runner.poll_once(0)
    retry_1 = TP("orders.retry.1", 0)
    assert retry_1 in consumer.paused_
    del consumer.positions[retry_1]  # the group gave it to another member
    clock.now += 10_000
    resumed: list[TopicPartition] = []
    consumer.resume = lambda *tps: resumed.extend(tps)  # type: ignore[method-assign]
    runner.poll_once(0)
    assert resumed == []


def test_ensure_retry_topics_copies_partition_counts() -> None:
    class FakeAdmin:
        created: list[Any] = []

        def describe_topics(self, names: list[str], timeout: float) -> dict[str, TopicDescription]:
            parts = tuple(PartitionInfo(p, 1, (1,), (1,)) for p in range(3))
            return {n: TopicDescription(n, parts) for n in names}

        def create_topics(self, topics: list[Any], **kw: Any) -> None:
            assert kw["if_not_exists"] is True
            self.created.extend(topics)

    admin = FakeAdmin()
    names = ensure_retry_topics(admin, ["a"], RetryPolicy(delays_ms=(1, 2)))
    assert names == ["a.retry.1", "a.retry.2", "a.dlq"]
    assert {t.num_partitions for t in admin.created} == {3}
