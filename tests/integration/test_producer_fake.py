"""Producer against in-process fake brokers (real gRPC, a scripted Broker servicer).

The fake brokers answer Metadata, InitProducerId and Produce (also over ProduceStream) from one
shared, scripted cluster state, so these tests pin the client's behaviour (batching, partitioning, retries on leader
change, splitting, futures, flush/close) without the broker side. Tests against real
BrokerServers are in test_producer.py.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import pytest

from clients import AsyncProducer, ConfigError, Producer, RecordMetadata
from clients.errors import ClientClosedError, KafkaTimeoutError, RecordTooLargeError
from clients.partitioner import partition_for_key
from proto import broker_pb2, broker_pb2_grpc, common_pb2
from proto.channel_options import GRPC_OPTIONS
from proto.errors import ErrorCode, NotLeaderOrFollowerError
from proto.records import RecordBatch


@dataclass
class FakeCluster:
    """State shared by the fake brokers: topics, leaders, logs, scripted errors."""

    leaders: dict[tuple[str, int], int] = field(default_factory=dict)
    logs: dict[tuple[str, int], list[tuple[int, bytes | None, bytes | None]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    # (topic, partition) -> error codes to answer before accepting
    errors: dict[tuple[str, int], list[int]] = field(default_factory=lambda: defaultdict(list))
    max_batch_records: int = 1 << 30  # batches with more records get MESSAGE_TOO_LARGE
    addresses: dict[int, str] = field(default_factory=dict)
    produce_requests: int = 0
    next_pid: int = 1000
    lock: threading.Lock = field(default_factory=threading.Lock)
    # (topic, partition) -> next expected sequence, for the idempotence check
    sequences: dict[tuple[str, int], int] = field(default_factory=dict)
    store_records: bool = True  # False: count only (client benchmarks)
    counts: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))
    # > 0: each ProduceStream call fails with UNAVAILABLE after answering this many requests
    stream_requests_before_abort: int = 0
    streams_opened: int = 0

    def add_topic(self, name: str, partitions: int, brokers: list[int]) -> None:
        for p in range(partitions):
            self.leaders[(name, p)] = brokers[p % len(brokers)]


class FakeBroker(broker_pb2_grpc.BrokerServicer):
    def __init__(self, node_id: int, cluster: FakeCluster) -> None:
        self.node_id = node_id
        self.cluster = cluster

    async def Metadata(self, request, context):  # noqa: N802
        c = self.cluster
        names = sorted({t for t, _ in c.leaders}) if request.all_topics else [
            t.name for t in request.topics
        ]
        response = broker_pb2.MetadataResponse(
            brokers=[
                common_pb2.Node(node_id=n, host=a.rsplit(":", 1)[0], port=int(a.rsplit(":", 1)[1]))
                for n, a in sorted(c.addresses.items())
            ],
            cluster_id="fake", controller_id=-1,
        )
        for name in names:
            parts = sorted(p for t, p in c.leaders if t == name)
            topic = response.topics.add(name=name)
            if not parts:
                topic.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                continue
            for p in parts:
                leader = c.leaders[(name, p)]
                topic.partitions.add(
                    partition_index=p, leader_id=leader, leader_epoch=1,
                    replicas=sorted(c.addresses), isr=sorted(c.addresses),
                )
        return response

    async def InitProducerId(self, request, context):  # noqa: N802
        with self.cluster.lock:
            self.cluster.next_pid += 1
            self.cluster.sequences.clear()
            return broker_pb2.InitProducerIdResponse(producer_id=self.cluster.next_pid)

    async def Produce(self, request, context):  # noqa: N802
        c = self.cluster
        response = broker_pb2.ProduceResponse()
        with c.lock:
            c.produce_requests += 1
            for topic in request.topics:
                out = response.topics.add(name=topic.name)
                for part in topic.partitions:
                    tp = (topic.name, part.partition_index)
                    res = out.partitions.add(partition_index=part.partition_index, base_offset=-1)
                    if c.leaders.get(tp) != self.node_id:
                        res.error_code = ErrorCode.NOT_LEADER_OR_FOLLOWER
                        continue
                    if c.errors[tp]:
                        res.error_code = c.errors[tp].pop(0)
                        continue
                    batch = RecordBatch(part.records)
                    if not c.store_records:
                        res.base_offset = c.counts[tp]
                        c.counts[tp] += batch.records_count
                        continue
                    batch.validate()
                    if batch.records_count > c.max_batch_records:
                        res.error_code = ErrorCode.MESSAGE_TOO_LARGE
                        continue
                    if batch.producer_id >= 0:
                        expected = c.sequences.get(tp, 0)
                        if batch.base_sequence != expected:
                            res.error_code = ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
                            continue
                        c.sequences[tp] = expected + batch.records_count
                    log = c.logs[tp]
                    res.base_offset = len(log)
                    res.log_start_offset = 0
                    for record in batch:
                        log.append((record.timestamp, record.key, record.value))
        return response

    async def ProduceStream(self, request_iterator, context):  # noqa: N802
        with self.cluster.lock:
            self.cluster.streams_opened += 1
        answered = 0
        limit = self.cluster.stream_requests_before_abort
        async for request in request_iterator:  # in order: this Produce never waits
            if limit and answered == limit:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "stream cut by the test")
            response = await self.Produce(request, context)
            response.correlation_id = request.correlation_id
            answered += 1
            yield response


class FakeBrokers:
    """N fake brokers on one asyncio loop in a background thread."""

    def __init__(self, count: int = 3) -> None:
        self.cluster = FakeCluster()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: dict[int, grpc.aio.Server] = {}
        for node in range(1, count + 1):
            self.start_broker(node)

    def run(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def start_broker(self, node: int) -> None:
        async def start() -> None:
            server = grpc.aio.server(options=GRPC_OPTIONS)
            broker_pb2_grpc.add_BrokerServicer_to_server(FakeBroker(node, self.cluster), server)
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            self.servers[node] = server
            self.cluster.addresses[node] = f"127.0.0.1:{port}"

        self.run(start())

    def stop_broker(self, node: int) -> None:
        self.run(self.servers.pop(node).stop(0))
        del self.cluster.addresses[node]

    @property
    def bootstrap(self) -> str:
        return ",".join(self.cluster.addresses.values())

    def close(self) -> None:
        for node in list(self.servers):
            self.stop_broker(node)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def brokers() -> Iterator[FakeBrokers]:
    fake = FakeBrokers(3)
    try:
        yield fake
    finally:
        fake.close()


def _producer(brokers: FakeBrokers, **config: object) -> Producer:
    config.setdefault("linger_ms", 2)
    config.setdefault("request_timeout_ms", 3000)
    return Producer(bootstrap_servers=brokers.bootstrap, **config)


def test_send_resolves_futures_with_increasing_offsets(brokers: FakeBrokers) -> None:
    brokers.cluster.add_topic("orders", 3, [1, 2, 3])
    with _producer(brokers) as producer:
        futures = [producer.send("orders", b"v%d" % i) for i in range(1000)]
        producer.flush(10)
        results = [f.result(0) for f in futures]
    per_partition: dict[int, list[int]] = defaultdict(list)
    for meta in results:
        assert isinstance(meta, RecordMetadata) and meta.topic == "orders"
        per_partition[meta.partition].append(meta.offset)
    for partition, offsets in per_partition.items():
        assert offsets == list(range(len(offsets))), partition
        assert len(brokers.cluster.logs[("orders", partition)]) == len(offsets)
    assert sum(len(v) for v in per_partition.values()) == 1000
    assert brokers.cluster.produce_requests < 1000 // 5  # batched


def test_a_broken_produce_stream_is_reopened_and_nothing_is_lost_or_doubled(
    brokers: FakeBrokers,
) -> None:
    # Every ProduceStream call dies after 3 answers, with a request unanswered: the producer
    # fails what was waiting, opens a new stream and retries (idempotent: in order, once each).
    brokers.cluster.add_topic("s", 1, [1])
    brokers.cluster.stream_requests_before_abort = 3
    with _producer(brokers, linger_ms=0, retry_backoff_ms=10) as producer:
        futures = []
        for i in range(40):
            futures.append(producer.send("s", b"v%d" % i))
            if i % 4 == 3:
                producer.flush(15)  # many small requests, so streams break often
        offsets = [f.result(15).offset for f in futures]
    assert offsets == list(range(40))
    assert [v for _, _, v in brokers.cluster.logs[("s", 0)]] == [b"v%d" % i for i in range(40)]
    assert brokers.cluster.streams_opened >= 3  # it did break, more than once


def test_keys_explicit_partitions_headers_and_timestamps(brokers: FakeBrokers) -> None:
    brokers.cluster.add_topic("k", 6, [1, 2, 3])
    with _producer(brokers, key_serializer=str.encode) as producer:
        keyed = {key: producer.send("k", b"x", key) for key in ("21", "foobar", "abc", "kafka")}
        explicit = producer.send("k", b"y", partition=4, timestamp_ms=12345,
                                 headers={"h": "v"})
        for key, future in keyed.items():
            assert future.result(10).partition == partition_for_key(key.encode(), 6)
        meta = explicit.result(10)
        assert meta.partition == 4 and meta.timestamp == 12345
        assert producer.partitions_for("k") == set(range(6))
        assert producer.send_and_wait("k", b"z", partition=1).partition == 1
        metrics = producer.metrics()
        assert metrics["record-send-total"] == 6 and metrics["request-latency-avg"] > 0


def test_retries_to_new_leader_after_leader_stops(brokers: FakeBrokers) -> None:
    brokers.cluster.add_topic("t", 1, [1])
    with _producer(brokers, retry_backoff_ms=20) as producer:
        assert producer.send_and_wait("t", b"before", timeout=10).offset == 0
        brokers.stop_broker(1)
        brokers.cluster.leaders[("t", 0)] = 2
        futures = [producer.send("t", b"after-%d" % i) for i in range(50)]
        offsets = [f.result(15).offset for f in futures]
    assert offsets == list(range(1, 51))
    assert [v for _, _, v in brokers.cluster.logs[("t", 0)]] == [b"before"] + [
        b"after-%d" % i for i in range(50)
    ]


def test_retriable_errors_are_retried_in_order(brokers: FakeBrokers) -> None:
    brokers.cluster.add_topic("r", 1, [2])
    brokers.cluster.errors[("r", 0)] = [
        ErrorCode.NOT_ENOUGH_REPLICAS, ErrorCode.REQUEST_TIMED_OUT, ErrorCode.LEADER_NOT_AVAILABLE
    ]
    with _producer(brokers, retry_backoff_ms=10, batch_size=200) as producer:
        futures = [producer.send("r", b"%04d" % i) for i in range(100)]
        offsets = [f.result(15).offset for f in futures]
        assert producer.metrics()["batch-retry-total"] >= 3
    assert offsets == list(range(100))
    assert [v for _, _, v in brokers.cluster.logs[("r", 0)]] == [b"%04d" % i for i in range(100)]


def test_fatal_error_fails_the_batch_with_a_typed_error(brokers: FakeBrokers) -> None:
    brokers.cluster.add_topic("f", 1, [1])
    brokers.cluster.errors[("f", 0)] = [ErrorCode.TOPIC_AUTHORIZATION_FAILED]
    with _producer(brokers) as producer:
        future = producer.send("f", b"x")
        with pytest.raises(Exception) as info:
            future.result(10)
        assert getattr(info.value, "code", None) == ErrorCode.TOPIC_AUTHORIZATION_FAILED
        # the producer bumps its epoch and keeps working
        assert producer.send_and_wait("f", b"y", timeout=10).offset == 0


def test_message_too_large_splits_the_batch(brokers: FakeBrokers) -> None:
    brokers.cluster.add_topic("s", 1, [3])
    brokers.cluster.max_batch_records = 10
    with _producer(brokers, linger_ms=50) as producer:
        futures = [producer.send("s", b"%03d" % i) for i in range(40)]
        offsets = [f.result(15).offset for f in futures]
        assert producer.metrics()["batch-split-total"] >= 1
    assert offsets == list(range(40))


def test_record_larger_than_max_request_size_fails_fast(brokers: FakeBrokers) -> None:
    brokers.cluster.add_topic("big", 1, [1])
    with _producer(brokers, max_request_size=1000) as producer:
        started = time.monotonic()
        with pytest.raises(RecordTooLargeError):
            producer.send("big", b"x" * 2000)
        assert time.monotonic() - started < 2


def test_unknown_config_key_and_unknown_topic(brokers: FakeBrokers) -> None:
    with pytest.raises(ConfigError, match="linger"):
        Producer(bootstrap_servers=brokers.bootstrap, linger_msx=5)
    with _producer(brokers, max_block_ms=300) as producer:
        with pytest.raises(KafkaTimeoutError):
            producer.send("missing", b"x")


def test_flush_close_and_callbacks(brokers: FakeBrokers) -> None:
    brokers.cluster.add_topic("c", 2, [1, 2])
    delivered: list[tuple[object, object]] = []
    producer = _producer(brokers, linger_ms=10_000)  # only flush/close send
    futures = [
        producer.send("c", b"a", on_delivery=lambda m, e: delivered.append((m, e)))
        for _ in range(5)
    ]
    time.sleep(0.2)
    assert not any(f.done() for f in futures)
    producer.flush(10)
    assert all(f.done() for f in futures) and len(delivered) == 5
    assert all(e is None for _, e in delivered)
    assert not futures[0].cancel()
    last = producer.send("c", b"b")
    producer.close(10)
    assert last.result(0).offset >= 0  # close delivers what is queued
    producer.close()  # idempotent
    with pytest.raises(ClientClosedError):
        producer.send("c", b"late")
    done, _ = concurrent.futures.wait(futures, timeout=0)
    assert len(done) == 5


def test_acks_zero_completes_with_offset_minus_one(brokers: FakeBrokers) -> None:
    brokers.cluster.add_topic("z", 1, [1])
    with _producer(brokers, acks=0, enable_idempotence=False) as producer:
        meta = producer.send_and_wait("z", b"x", timeout=10)
    assert meta.offset == -1


def test_async_producer(brokers: FakeBrokers) -> None:
    brokers.cluster.add_topic("a", 2, [1, 2])

    async def main() -> list[int]:
        async with AsyncProducer(bootstrap_servers=brokers.bootstrap, linger_ms=1) as producer:
            futures = [await producer.send("a", b"x", partition=0) for _ in range(20)]
            await producer.flush()
            meta = await producer.send_and_wait("a", b"y", partition=1)
            assert meta.offset == 0
            return [(await f).offset for f in futures]

    assert asyncio.run(main()) == list(range(20))
