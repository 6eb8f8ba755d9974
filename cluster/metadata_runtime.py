"""`BrokerMetadata`: a broker's registration, heartbeats and copy of the metadata log.

Theory of operation
-------------------
KAFKA_SEMANTICS §5.4. One object per broker process, on the broker's asyncio loop:

- Follows the committed metadata log with FetchMetadata long polls (max_wait_ms 500) from
  `metadata_offset + 1` (1 for an empty image). Each log entry is applied to `image` with
  `apply_batch(records, offset)`; a snapshot (sent when the fetch offset is below the
  controller's log start) replaces the image (`MetadataImage.from_snapshot`). The fetch loop
  starts before registration, as Kafka brokers follow the log as observers first.
- Listeners (`add_listener`) are called synchronously after every applied entry with
  `(image, ImageChange)`. The first call after start, and the call after a snapshot, carries a
  synthetic full change (every broker, every partition, every config resource; after a snapshot
  also the topics that disappeared in `removed_topics`), so a listener can sync everything.
  Listeners must look state up in the image they are given: `image` is replaced by a snapshot.
- Registers (BrokerRegistration with a random incarnation id per process start) and keeps the
  returned broker epoch; DUPLICATE_BROKER_REGISTRATION (the previous incarnation's session is
  still alive) and unreachable controllers are retried until
  initial.broker.registration.timeout.ms.
- Heartbeats every broker.heartbeat.interval.ms with broker_epoch, current_metadata_offset and
  want_fence=false; the answer says whether the broker is fenced and, during a controlled
  shutdown, whether it may go. STALE_BROKER_EPOCH / BROKER_ID_NOT_REGISTERED (the controller
  lost or replaced our registration) → register again.
- `controlled_shutdown` heartbeats with want_shutdown=true until should_shutdown (the controller
  moved every leadership away), bounded by its timeout.
- `allocate_producer_id` hands out ids from blocks obtained with AllocateProducerIds.
- `sync(timeout_s)` is a read barrier for forwarded admin requests: it returns once the image
  holds everything the controller had committed when `sync` was called (a FetchMetadata sent
  after the call came back and was applied up to its high watermark).

Every task is kept, cancelled and awaited in `stop()`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

from cluster.controller_channel_transport import ControllerChannel
from proto import common_pb2
from proto import controller_pb2 as pb
from proto.broker_config import BrokerConfig
from proto.errors import ErrorCode, RafkaError, RequestTimedOutError
from proto.metadata import decode_records
from proto.metadata_image import ImageChange, MetadataImage, TopicIdPartition

log = logging.getLogger(__name__)

Listener = Callable[[MetadataImage, ImageChange], None]

FETCH_MAX_WAIT_MS = 500
FETCH_ATTEMPT_MARGIN_S = 2.0
RETRY_BACKOFF_S = 0.1
SHUTDOWN_HEARTBEAT_S = 0.1


class BrokerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes every line with `[broker N]`."""

    def __init__(self, logger: logging.Logger, broker_id: int) -> None:
        super().__init__(logger, {})
        self.broker_id = broker_id

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[broker {self.broker_id}] {msg}", kwargs


def full_change(image: MetadataImage, removed: tuple[Any, ...] = ()) -> ImageChange:
    """An ImageChange naming everything in `image` (for a listener's first sync)."""
    partitions = tuple(sorted(tp for tp, _ in image.all_partitions()))
    return ImageChange(
        offset=image.last_applied_offset,
        brokers=tuple(sorted(image.brokers)),
        partitions=partitions,
        removed_topics=removed,
        configs=tuple(sorted(image.configs)),
    )


class BrokerMetadata:
    """Registration, heartbeats, metadata log follower, controlled shutdown; see module doc."""

    def __init__(
        self,
        broker_id: int,
        *,
        endpoint: tuple[str, int],
        channel: ControllerChannel,
        config: BrokerConfig,
        cluster_id: str,
        incarnation_id: str = "",
    ) -> None:
        """Args:
            incarnation_id: "" → a random UUID (one per process start).
        """
        self.broker_id = broker_id
        self.endpoint = endpoint
        self.cluster_id = cluster_id
        self.incarnation_id = incarnation_id or str(uuid.uuid4())
        self.image = MetadataImage()
        self.broker_epoch = -1
        self.fenced = True
        self._channel = channel
        self._config = config
        self._log = BrokerLog(log, broker_id)
        self._listeners: list[Listener] = []
        self._notified_full = False
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._unfenced = asyncio.Event()
        self._should_shutdown = asyncio.Event()
        self._want_shutdown = False
        self._heartbeat_now = asyncio.Event()
        self._applied = asyncio.Event()
        self._register_lock = asyncio.Lock()
        # read barrier: fetches are numbered when sent; a waiter registered at fetch n is
        # released by the first fetch > n that leaves the image caught up.
        self._fetch_seq = 0
        self._fetch_call: asyncio.Task[Any] | None = None
        self._fetch_is_long_poll = False
        self._sync_waiters: list[tuple[int, asyncio.Future[None]]] = []
        # producer ids
        self._pid_lock = asyncio.Lock()
        self._pid_next = 0
        self._pid_end = 0

    # ------------------------------------------------------------------ public surface

    @property
    def metadata_offset(self) -> int:
        """The last applied metadata offset (0 before anything was applied)."""
        return max(0, self.image.last_applied_offset)

    @property
    def controller_id(self) -> int | None:
        return self._channel.active_controller_id

    def add_listener(self, fn: Listener) -> None:
        """Add a listener; one added after the first sync is called at once with a full change."""
        self._listeners.append(fn)
        if self._notified_full:
            fn(self.image, full_change(self.image))

    async def start(self) -> None:
        """Follow the log, register (retrying), then heartbeat in the background.

        Raises:
            RequestTimedOutError: not registered within initial.broker.registration.timeout.ms.
            RafkaError: the controller refused the registration for good (e.g. cluster id).
        """
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._fetch_loop(), name=f"metadata-{self.broker_id}"))
        await self._register(self._config.initial_broker_registration_timeout_ms / 1000)
        self._tasks.append(
            loop.create_task(self._heartbeat_loop(), name=f"heartbeat-{self.broker_id}")
        )

    async def wait_unfenced(self, timeout_s: float) -> None:
        """Raises RequestTimedOutError if still fenced after `timeout_s`."""
        try:
            await asyncio.wait_for(self._unfenced.wait(), timeout_s)
        except asyncio.TimeoutError:
            raise RequestTimedOutError(
                f"broker {self.broker_id} still fenced after {timeout_s}s (epoch "
                f"{self.broker_epoch}, metadata offset {self.metadata_offset})"
            ) from None

    async def wait_for(self, predicate: Callable[[MetadataImage], bool], timeout_s: float) -> bool:
        """Wait until `predicate(image)` holds (checked after each applied entry); False on
        timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not predicate(self.image):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            event = self._applied
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except asyncio.TimeoutError:
                return predicate(self.image)
        return True

    async def sync(self, timeout_s: float) -> bool:
        """Read barrier: True once the image holds everything committed before this call;
        False on timeout."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sync_waiters.append((self._fetch_seq, future))
        call = self._fetch_call
        if call is not None and self._fetch_is_long_poll and not call.done():
            call.cancel()  # cut the long poll short: the loop re-fetches without waiting
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout_s)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            self._sync_waiters = [(s, f) for s, f in self._sync_waiters if f is not future]

    async def controlled_shutdown(self, timeout_s: float) -> None:
        """Heartbeat with want_shutdown until the controller answers should_shutdown (it moved
        this broker's leaderships away), or `timeout_s` passes (logged, not raised)."""
        if self.broker_epoch < 0 or not self._tasks:
            return
        self._log.info("controlled shutdown requested")
        self._want_shutdown = True
        self._heartbeat_now.set()
        try:
            await asyncio.wait_for(self._should_shutdown.wait(), timeout_s)
            self._log.info("controlled shutdown granted")
        except asyncio.TimeoutError:
            self._log.warning("controlled shutdown not granted within %.1fs", timeout_s)

    async def stop(self) -> None:
        """Cancel and await every task (does not close the channel: its owner does)."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        if self._fetch_call is not None:
            self._fetch_call.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._fetch_call is not None:
            await asyncio.gather(self._fetch_call, return_exceptions=True)
        self._tasks.clear()
        for _, future in self._sync_waiters:
            future.cancel()
        self._log.info("metadata stopped at offset %d", self.metadata_offset)

    async def allocate_producer_id(self) -> int:
        """The next producer id of this broker's block, fetching a new block when exhausted.

        Raises:
            RafkaError: the controller refused (e.g. STALE_BROKER_EPOCH) or did not answer.
        """
        async with self._pid_lock:
            if self._pid_next >= self._pid_end:
                request = pb.AllocateProducerIdsRequest(
                    broker_id=self.broker_id, broker_epoch=self.broker_epoch
                )
                response = await self._channel.call(
                    "AllocateProducerIds", request, timeout_s=self._request_timeout_s
                )
                if response.error_code != ErrorCode.NONE:
                    raise RafkaError.for_code(response.error_code, response.error_message)
                self._pid_next = response.producer_id_start
                self._pid_end = response.producer_id_start + response.producer_id_len
                self._log.info("producer id block [%d, %d)", self._pid_next, self._pid_end)
            producer_id = self._pid_next
            self._pid_next += 1
            return producer_id

    # ------------------------------------------------------------------ registration

    @property
    def _request_timeout_s(self) -> float:
        return self._config.request_timeout_ms / 1000

    async def _register(self, timeout_s: float) -> None:
        async with self._register_lock:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout_s
            host, port = self.endpoint
            request = pb.BrokerRegistrationRequest(
                broker_id=self.broker_id,
                cluster_id=self.cluster_id,
                incarnation_id=self.incarnation_id,
                listeners=[common_pb2.Listener(name="PLAINTEXT", host=host, port=port)],
            )
            if self._config.broker_rack is not None:
                request.rack = self._config.broker_rack
            while not self._stopping:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise RequestTimedOutError(
                        f"broker {self.broker_id} not registered within {timeout_s:.1f}s"
                    )
                try:
                    response = await self._channel.call(
                        "BrokerRegistration", request, timeout_s=remaining
                    )
                except RafkaError as exc:
                    self._log.warning("registration: %s", exc.message)
                    continue
                code = response.error_code
                if code == ErrorCode.NONE:
                    self.broker_epoch = response.broker_epoch
                    self._set_fenced(True)
                    self._should_shutdown.clear()
                    self._log.info("registered with broker epoch %d (incarnation %s)",
                                   self.broker_epoch, self.incarnation_id)
                    return
                error = RafkaError.for_code(code, response.error_message)
                if not (error.retriable or code == ErrorCode.DUPLICATE_BROKER_REGISTRATION):
                    raise error
                self._log.info("registration: %s %s; retrying", error.name, error.message)
                await asyncio.sleep(min(RETRY_BACKOFF_S * 5, max(0.0, remaining)))

    def _set_fenced(self, fenced: bool) -> None:
        if fenced != self.fenced:
            self._log.info("%s at epoch %d", "fenced" if fenced else "unfenced",
                           self.broker_epoch)
        self.fenced = fenced
        if fenced:
            self._unfenced.clear()
        else:
            self._unfenced.set()

    # ------------------------------------------------------------------ heartbeats

    async def _heartbeat_loop(self) -> None:
        interval_s = self._config.broker_heartbeat_interval_ms / 1000
        timeout_s = self._config.broker_session_timeout_ms / 1000
        while not self._stopping:
            self._heartbeat_now.clear()
            try:
                await self._heartbeat_once(timeout_s)
            except RafkaError as exc:
                self._log.warning("heartbeat: %s", exc.message)
            wait_s = min(interval_s, SHUTDOWN_HEARTBEAT_S) if self._want_shutdown else interval_s
            try:
                await asyncio.wait_for(self._heartbeat_now.wait(), wait_s)
            except asyncio.TimeoutError:
                pass

    async def _heartbeat_once(self, timeout_s: float) -> None:
        request = pb.BrokerHeartbeatRequest(
            broker_id=self.broker_id,
            broker_epoch=self.broker_epoch,
            current_metadata_offset=self.metadata_offset,
            want_fence=False,
            want_shutdown=self._want_shutdown,
        )
        response = await self._channel.call("BrokerHeartbeat", request, timeout_s=timeout_s)
        code = response.error_code
        if code in (ErrorCode.STALE_BROKER_EPOCH, ErrorCode.BROKER_ID_NOT_REGISTERED):
            self._log.warning("heartbeat: %s %s; registering again",
                              ErrorCode(code).name, response.error_message)
            self._set_fenced(True)
            await self._register(self._config.initial_broker_registration_timeout_ms / 1000)
            return
        if code != ErrorCode.NONE:
            error = RafkaError.for_code(code, response.error_message)
            self._log.warning("heartbeat: %s %s", error.name, error.message)
            return
        self._set_fenced(response.is_fenced)
        if response.should_shutdown and self._want_shutdown:
            self._should_shutdown.set()

    # ------------------------------------------------------------------ metadata log

    async def _fetch_loop(self) -> None:
        while not self._stopping:
            self._fetch_seq += 1
            seq = self._fetch_seq
            long_poll = not self._sync_waiters
            request = pb.FetchMetadataRequest(
                broker_id=self.broker_id,
                fetch_offset=self.metadata_offset + 1,
                max_wait_ms=FETCH_MAX_WAIT_MS if long_poll else 0,
            )
            if self.broker_epoch >= 0:
                request.broker_epoch = self.broker_epoch
            call = asyncio.get_running_loop().create_task(self._channel.call(
                "FetchMetadata", request, timeout_s=self._request_timeout_s,
                attempt_timeout_s=FETCH_MAX_WAIT_MS / 1000 + FETCH_ATTEMPT_MARGIN_S,
            ))
            self._fetch_call, self._fetch_is_long_poll = call, long_poll
            try:
                await asyncio.wait({call})
            finally:
                self._fetch_call = None
            if call.cancelled():
                continue  # cut short by sync() (or by stop(), which ends the loop)
            exc = call.exception()
            if isinstance(exc, RafkaError):
                self._log.warning("metadata fetch: %s", exc.message)
                continue
            if exc is not None:
                self._log.critical("metadata fetch loop failed", exc_info=exc)
                raise exc
            response = call.result()
            if response.error_code != ErrorCode.NONE:
                self._log.warning("metadata fetch: error %d %s", response.error_code,
                                  response.error_message)
                await asyncio.sleep(RETRY_BACKOFF_S)
                continue
            try:
                self._apply_response(response)
            except Exception:
                self._log.critical("applying metadata failed at offset %d; metadata stops",
                                   self.metadata_offset, exc_info=True)
                raise
            if self.metadata_offset >= response.high_watermark - 1:
                self._release_sync_waiters(seq)

    def _apply_response(self, response: pb.FetchMetadataResponse) -> None:
        if response.HasField("snapshot") and response.snapshot.end_offset - 1 > \
                self.image.last_applied_offset:
            self._load_snapshot(response.snapshot)
        elif not self._notified_full and not response.records:
            self._notify_full(())
        for record in response.records:
            if record.offset <= self.image.last_applied_offset:
                continue
            assert record.offset == self.metadata_offset + 1, (
                f"metadata gap: got offset {record.offset} after {self.metadata_offset}"
            )
            records = decode_records(record.data) if record.data else []  # empty: a no-op entry
            change = self.image.apply_batch(records, record.offset)
            if self._notified_full:
                self._notify(change)
            else:
                self._notify_full(())
        self._wake_appliers()

    def _load_snapshot(self, snapshot: pb.MetadataSnapshot) -> None:
        old = self.image
        image = MetadataImage.from_snapshot(decode_records(snapshot.data),
                                            snapshot.end_offset - 1)
        removed = tuple(t for t in old.topics() if image.topic_by_id(t.topic_id) is None)
        self.image = image
        self._log.info("loaded metadata snapshot at offset %d (%d topics, %d brokers)",
                       snapshot.end_offset - 1, len(image.topics_by_id), len(image.brokers))
        self._notify_full(removed)

    def _notify_full(self, removed: tuple[Any, ...]) -> None:
        self._notified_full = True
        self._notify(full_change(self.image, removed))

    def _notify(self, change: ImageChange) -> None:
        for listener in self._listeners:
            try:
                listener(self.image, change)
            except Exception:
                self._log.exception("metadata listener %r failed at offset %d", listener,
                                    change.offset)

    def _wake_appliers(self) -> None:
        self._applied.set()
        self._applied = asyncio.Event()

    def _release_sync_waiters(self, seq: int) -> None:
        for registered, future in self._sync_waiters:
            if registered < seq and not future.done():
                future.set_result(None)


__all__ = ["BrokerLog", "BrokerMetadata", "Listener", "TopicIdPartition", "full_change"]
