"""The producer façades: `Producer` (sync, thread-safe) and `AsyncProducer` (asyncio).

Both are thin wrappers over one `ProducerEngine` (clients/producer/sender_runtime.py): the sync
`Producer` runs the engine on its own `EngineThread` and appends records from the caller's
thread; `AsyncProducer` runs the same engine on the caller's loop. CLIENT_API.md §5.2.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from clients.config import ProducerConfig
from clients.engine_runtime import EngineThread
from clients.errors import BufferFullError, ClientClosedError, KafkaTimeoutError
from clients.producer.sender_runtime import (
    NEED_MEMORY,
    NEED_METADATA,
    DeliveryFuture,
    ProducerEngine,
)
from clients.serde import Serializer, as_serializer, serialize
from clients.types import Header, RecordMetadata

__all__ = ["AsyncProducer", "DeliveryCallback", "Producer"]

_wall = time.time
_NO_HEADERS: list[Header] = []  # never mutated: appended records copy their headers

HeadersArg = Mapping[str, "bytes | str | None"] | Iterable[tuple[str, "bytes | str | None"]] | None
DeliveryCallback = Callable[["RecordMetadata | None", "BaseException | None"], object]


def _resolve_config(
    config: Mapping[str, Any] | None, bootstrap_servers: Any, kafka_config: dict[str, Any]
) -> ProducerConfig:
    overrides = dict(kafka_config)
    if bootstrap_servers is not None:
        overrides["bootstrap_servers"] = bootstrap_servers
    return ProducerConfig.resolve(config, **overrides)


def _headers(headers: HeadersArg) -> list[Header]:
    if not headers:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: list[Header] = []
    for name, value in items:
        if isinstance(value, str):
            value = value.encode()
        out.append((str(name), value))
    return out


def _on_delivery_adapter(
    callback: DeliveryCallback,
) -> Callable[[concurrent.futures.Future[RecordMetadata]], None]:
    def done(future: concurrent.futures.Future[RecordMetadata]) -> None:
        error = future.exception()
        if error is None:
            callback(future.result(), None)
        else:
            callback(None, error)

    return done


class _Core:
    """What both façades share: config, serializers, the engine, the serialize step."""

    def __init__(
        self,
        config: Mapping[str, Any] | None,
        bootstrap_servers: Any,
        key_serializer: object | None,
        value_serializer: object | None,
        kafka_config: dict[str, Any],
    ) -> None:
        self.config = _resolve_config(config, bootstrap_servers, kafka_config)
        self.key_serializer: Serializer[Any] = as_serializer(key_serializer)
        self.value_serializer: Serializer[Any] = as_serializer(value_serializer)
        self.engine = ProducerEngine(self.config)
        self.max_block_s = self.config.max_block_ms / 1000.0
        self.raw_keys = key_serializer is None
        self.raw_values = value_serializer is None

    def prepare(
        self, topic: str, value: Any, key: Any, headers: HeadersArg, timestamp_ms: int | None
    ) -> tuple[bytes | None, bytes | None, list[Header], int]:
        header_list = _headers(headers) if headers else []
        # Fast path: bytes (or None) with the default serializer skip the serialize call.
        if key is None or (self.raw_keys and type(key) is bytes):
            key_bytes = key
        else:
            key_bytes = serialize(self.key_serializer, topic, header_list, key, is_key=True)
        if value is None or (self.raw_values and type(value) is bytes):
            value_bytes = value
        else:
            value_bytes = serialize(
                self.value_serializer, topic, header_list, value, is_key=False
            )
        ts = int(_wall() * 1000) if timestamp_ms is None else int(timestamp_ms)
        return key_bytes, value_bytes, header_list, ts


class Producer:
    """A thread-safe Kafka producer (CLIENT_API.md §5.2). A background I/O thread does all
    network work; `send` only serializes and appends to a batch.

    Args:
        config: Kafka config as a dict of dotted names (`{"linger.ms": 5}`).
        bootstrap_servers: "host:port,..." of any brokers.
        key_serializer: serializer object/callable for keys (bytes pass through by default).
        value_serializer: likewise for values.
        **kafka_config: more config as snake_case names (`acks="all"`); override `config`.

    Raises:
        ConfigError: an unknown key (naming the closest valid one) or a bad value.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        /,
        *,
        bootstrap_servers: Any = None,
        key_serializer: object | None = None,
        value_serializer: object | None = None,
        **kafka_config: Any,
    ) -> None:
        self._core = _Core(config, bootstrap_servers, key_serializer, value_serializer,
                           kafka_config)
        self.config = self._core.config
        self._engine = self._core.engine
        self._thread = EngineThread(f"rafka-producer-{self.config.client_id or id(self)}")
        self._closed = False
        self._thread.call(self._engine.start(), timeout=10.0)

    def send(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: HeadersArg = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> concurrent.futures.Future[RecordMetadata]:
        """Queue one record; returns the future of its `RecordMetadata`.

        Args:
            topic: the topic.
            value: the value (None = a tombstone; never passed to the serializer).
            key: the key; keyed records go to murmur2(key bytes) % partitions.
            partition: an explicit partition (wins over the key).
            timestamp_ms: CreateTime (default: now).
            headers: a dict or a sequence of (name, bytes) pairs.
            on_delivery: `callback(metadata, error)` on the I/O thread once the record is
                acknowledged (error None) or failed (metadata None).

        Returns:
            A `concurrent.futures.Future` of the record's metadata.

        Raises:
            KafkaTimeoutError: the topic's metadata was not available within max.block.ms.
            BufferFullError: buffer.memory stayed full for max.block.ms.
            RecordTooLargeError: the record exceeds max.request.size or buffer.memory.
            SerializationError: a serializer failed.
            ClientClosedError: the producer is closed.
        """
        core = self._core
        key_bytes: bytes | None
        value_bytes: bytes | None
        if (key is None and headers is None and timestamp_ms is None and core.raw_values
                and type(value) is bytes):
            # The hot path: nothing to serialize.
            key_bytes, value_bytes, header_list, ts = None, value, _NO_HEADERS, int(_wall() * 1000)
        else:
            key_bytes, value_bytes, header_list, ts = core.prepare(
                topic, value, key, headers, timestamp_ms
            )
        result = self._engine.try_append(topic, key_bytes, value_bytes, header_list, partition, ts)
        deadline = 0.0
        while type(result) is not DeliveryFuture:
            if self._closed:
                raise ClientClosedError("producer is closed")
            now = time.monotonic()
            if not deadline:
                deadline = now + core.max_block_s
            left = deadline - now
            if result == NEED_METADATA:
                if left <= 0:
                    raise KafkaTimeoutError(
                        f"topic {topic} not present in metadata after "
                        f"{self.config.max_block_ms} ms"
                    )
                self._thread.call(
                    self._engine.wait_for_topic(topic, partition, left), timeout=left + 5.0
                )
            elif result == NEED_MEMORY:
                if left <= 0:
                    raise BufferFullError(
                        f"buffer.memory={self.config.buffer_memory} stayed full for "
                        f"max.block.ms={self.config.max_block_ms}"
                    )
                self._engine.wake()
                self._engine.wait_for_memory(min(left, 0.1))
            result = self._engine.try_append(
                topic, key_bytes, value_bytes, header_list, partition, ts
            )
        if on_delivery is not None:
            result.add_done_callback(_on_delivery_adapter(on_delivery))
        return result

    def send_and_wait(
        self, topic: str, value: Any = None, key: Any = None, *, timeout: float = 30.0,
        **kwargs: Any,
    ) -> RecordMetadata:
        """`send(...)` then wait for the record's metadata.

        Raises:
            KafkaTimeoutError: not acknowledged within `timeout` seconds.
            RafkaError: the delivery failed.
        """
        future = self.send(topic, value, key, **kwargs)
        self.flush_if_lingering()
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            if future.done():
                raise
            raise KafkaTimeoutError(f"record not acknowledged within {timeout} s") from None

    def flush_if_lingering(self) -> None:
        """Nudge the sender (a no-op hook kept cheap; linger still applies)."""
        self._engine.wake()

    def flush(self, timeout: float = 30.0) -> None:
        """Send every queued record now and wait until all sent before the call are done.

        Raises:
            KafkaTimeoutError: not all done within `timeout` (its `pending` = records left).
        """
        self._check_open()
        self._thread.call(self._engine.flush(timeout), timeout=timeout + 5.0)

    def partitions_for(self, topic: str, timeout: float | None = None) -> set[int]:
        """Partition ids of `topic` (fetching metadata if needed, up to max.block.ms).

        Raises:
            KafkaTimeoutError: metadata not available in time.
        """
        self._check_open()
        wait = self._core.max_block_s if timeout is None else timeout
        self._thread.call(self._engine.wait_for_topic(topic, None, wait), timeout=wait + 5.0)
        return set(self._engine.metadata.partitions_for(topic) or ())

    def metrics(self) -> dict[str, float]:
        """Counters: record-send-total, batch-*-total, request-total, request-latency-avg..."""
        return self._engine.metrics()

    def close(self, timeout: float = 30.0) -> None:
        """Deliver what is queued (up to `timeout` seconds), then stop the I/O thread.
        Records still undelivered fail with ClientClosedError. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._thread.call(self._engine.close(timeout), timeout=timeout + 10.0)
        finally:
            self._thread.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("producer is closed")

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        thread = getattr(self, "_thread", None)
        if thread is not None and not getattr(self, "_closed", True):
            thread.close(timeout=0.1)


class AsyncProducer:
    """The asyncio producer: same names as `Producer`, as coroutines (aiokafka-compatible).

    `await send(...)` queues the record and returns an `asyncio.Future` of its metadata;
    `await send_and_wait(...)` returns the metadata. Use `async with AsyncProducer(...)` or
    `await start()` / `await stop()`. Args and errors as `Producer`.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        /,
        *,
        bootstrap_servers: Any = None,
        key_serializer: object | None = None,
        value_serializer: object | None = None,
        **kafka_config: Any,
    ) -> None:
        self._core = _Core(config, bootstrap_servers, key_serializer, value_serializer,
                           kafka_config)
        self.config = self._core.config
        self._engine = self._core.engine
        self._started = False
        self._closed = False

    async def start(self) -> None:
        """Start the engine on the running loop (no network call yet)."""
        if not self._started:
            self._started = True
            await self._engine.start()

    async def send(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: HeadersArg = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        """Queue one record; returns an asyncio.Future of its metadata (see `Producer.send`).

        Raises:
            KafkaTimeoutError, BufferFullError, RecordTooLargeError, SerializationError,
            ClientClosedError: as `Producer.send`.
        """
        if not self._started:
            await self.start()
        core = self._core
        key_bytes, value_bytes, header_list, ts = core.prepare(
            topic, value, key, headers, timestamp_ms
        )
        deadline = 0.0
        while True:
            result = self._engine.try_append(
                topic, key_bytes, value_bytes, header_list, partition, ts
            )
            if isinstance(result, DeliveryFuture):
                break
            if self._closed:
                raise ClientClosedError("producer is closed")
            now = time.monotonic()
            if not deadline:
                deadline = now + core.max_block_s
            left = deadline - now
            if result == NEED_METADATA:
                if left <= 0:
                    raise KafkaTimeoutError(
                        f"topic {topic} not present in metadata after "
                        f"{self.config.max_block_ms} ms"
                    )
                await self._engine.wait_for_topic(topic, partition, left)
            elif result == NEED_MEMORY:
                if left <= 0:
                    raise BufferFullError(
                        f"buffer.memory={self.config.buffer_memory} stayed full for "
                        f"max.block.ms={self.config.max_block_ms}"
                    )
                self._engine.wake()
                await asyncio.sleep(0.005)
        if on_delivery is not None:
            result.add_done_callback(_on_delivery_adapter(on_delivery))
        return asyncio.wrap_future(result)

    async def send_and_wait(
        self, topic: str, value: Any = None, key: Any = None, **kwargs: Any
    ) -> RecordMetadata:
        """`await (await send(...))`: the record's metadata."""
        future = await self.send(topic, value, key, **kwargs)
        return await future

    async def flush(self, timeout: float = 30.0) -> None:
        """Send everything queued now and wait for it.

        Raises:
            KafkaTimeoutError: not all done within `timeout`.
        """
        if self._started:
            await self._engine.flush(timeout)

    async def partitions_for(self, topic: str) -> set[int]:
        """Partition ids of `topic` (fetching metadata if needed)."""
        if not self._started:
            await self.start()
        await self._engine.wait_for_topic(topic, None, self._core.max_block_s)
        return set(self._engine.metadata.partitions_for(topic) or ())

    def metrics(self) -> dict[str, float]:
        return self._engine.metrics()

    async def stop(self, timeout: float = 30.0) -> None:
        """Deliver what is queued (up to `timeout`), then stop. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._started:
            await self._engine.close(timeout)

    close = stop

    async def __aenter__(self) -> AsyncProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
