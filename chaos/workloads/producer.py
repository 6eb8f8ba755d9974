"""`VerifiableProducer`: producer processes whose every send is recorded in the history.

Each process is a thread with its own `Producer` (acks and enable.idempotence as configured).
It sends unique values `"<name><proc>-<n>"` with keys `"k<n mod keys>"`, at a steady rate,
with at most `max_in_flight` sends outstanding (so an unavailable cluster is not buried under
a backlog). Every send is two history lines: an `invoke` before `send()`, then its outcome from
the delivery callback:
- `ok` with the acked partition and offset (acks=0: no offset);
- `fail` when the broker's answer says definitely not written (a non-retriable error);
- `info` when it is indeterminate: a delivery timeout (retries ran out, the last request may
  have been written), a closed producer, or anything unknown.

The pacing sleep is the workload's rate, not a synchronisation.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from chaos.history import ACKS_ALL, HistoryWriter, OpType, SendOp
from chaos.workloads.clock import RunClock
from clients.errors import ClientClosedError, KafkaTimeoutError
from clients.producer.producer import Producer
from clients.types import RecordMetadata
from proto.errors import RafkaError

log = logging.getLogger(__name__)

# Client settings that keep a chaos run's outcomes within its duration.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "linger.ms": 5,
    "request.timeout.ms": 4000,
    "delivery.timeout.ms": 12000,
    "retry.backoff.ms": 50,
    "retry.backoff.max.ms": 250,  # find a new leader soon after a failover
    "max.block.ms": 5000,
    "metadata.max.age.ms": 2000,
}


@dataclass(frozen=True, slots=True)
class ProducerSpec:
    """One group of identical producer processes."""

    name: str = "p"  # values are "<name><proc>-<n>"
    processes: int = 2
    acks: int = ACKS_ALL
    idempotent: bool = True
    rate_per_s: float = 100.0  # per process
    keys: int = 64
    max_in_flight: int = 200
    partition: int | None = None  # None: by key
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ProducerStats:
    invoked: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


def classify(error: BaseException) -> OpType:
    """`fail` only when the broker definitely did not write the record; else `info`."""
    if isinstance(error, (KafkaTimeoutError, ClientClosedError)):
        return OpType.INFO
    if isinstance(error, RafkaError) and not error.retriable and int(error.code) > 0:
        return OpType.FAIL
    return OpType.INFO


def producer_id(producer: Producer) -> int | None:
    """The producer id of an idempotent producer's current session (reordering is judged per
    session: a new id starts new sequences); None when unknown. Read on the I/O thread."""
    try:
        ids = producer._engine.accumulator.sequences.producer_id_and_epoch
    except AttributeError:
        return None
    return int(ids.producer_id) if ids.producer_id >= 0 else None


def error_name(error: BaseException) -> str:
    if isinstance(error, KafkaTimeoutError):
        return f"KafkaTimeoutError: {error}"[:200]
    code = getattr(error, "code", None)
    name = getattr(code, "name", None)
    return str(name) if name else type(error).__name__


class VerifiableProducer:
    """Producer processes writing one topic; see the module docstring."""

    def __init__(self, bootstrap_servers: str, topic: str, history: HistoryWriter,
                 clock: RunClock, spec: ProducerSpec | None = None) -> None:
        self.topic = topic
        self.spec = spec or ProducerSpec()
        self._servers = bootstrap_servers
        self._history = history
        self._clock = clock
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.stats = ProducerStats()
        self._threads: list[threading.Thread] = []
        self._producers: list[Producer] = []

    def start(self) -> None:
        for proc in range(self.spec.processes):
            config = {**PRODUCER_DEFAULTS, **self.spec.config,
                      "acks": "all" if self.spec.acks == ACKS_ALL else str(self.spec.acks),
                      "enable.idempotence": self.spec.idempotent}
            producer = Producer(config, bootstrap_servers=self._servers,
                                client_id=f"chaos-{self.spec.name}{proc}")
            self._producers.append(producer)
            thread = threading.Thread(target=self._run, args=(proc, producer),
                                      name=f"chaos-producer-{self.spec.name}{proc}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self, drain_timeout_s: float = 20.0) -> None:
        """Stop sending, wait for outstanding outcomes, close the producers."""
        self._stop.set()
        for thread in self._threads:
            thread.join(drain_timeout_s)
        for producer in self._producers:
            try:
                producer.flush(drain_timeout_s)
            except Exception as exc:  # noqa: BLE001 - the rest time out below as `info`
                log.info("producer flush: %r", exc)
            producer.close(5.0)

    def _run(self, proc: int, producer: Producer) -> None:
        spec = self.spec
        process = f"{spec.name}{proc}"
        slots = threading.BoundedSemaphore(spec.max_in_flight)
        interval = 1.0 / spec.rate_per_s
        next_at = time.monotonic()
        n = 0
        while not self._stop.is_set():
            if not slots.acquire(timeout=0.2):
                continue
            value = f"{process}-{n}"
            key = f"k{n % spec.keys}"
            n += 1
            self._record(process, OpType.INVOKE, value, key, partition=spec.partition)
            try:
                producer.send(self.topic, value.encode(), key.encode(),
                              partition=spec.partition,
                              on_delivery=self._on_delivery(producer, process, value, key, slots))
            except Exception as exc:  # noqa: BLE001 - never sent: definitely not written
                slots.release()
                self._record(process, OpType.FAIL, value, key, error=error_name(exc))
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = time.monotonic()

    def _on_delivery(self, producer: Producer, process: str, value: str, key: str,
                     slots: threading.BoundedSemaphore) -> Any:
        def done(metadata: RecordMetadata | None, error: BaseException | None) -> None:
            slots.release()
            if error is None:
                assert metadata is not None
                offset = metadata.offset if metadata.offset >= 0 else None
                self._record(process, OpType.OK, value, key, partition=metadata.partition,
                             offset=offset, producer_id=producer_id(producer))
            else:
                self._record(process, classify(error), value, key, error=error_name(error))
        return done

    def _record(self, process: str, op_type: OpType, value: str, key: str, *,
                partition: int | None = None, offset: int | None = None,
                error: str | None = None, producer_id: int | None = None) -> None:
        self._history.append(SendOp(
            process=process, type=op_type, topic=self.topic, partition=partition, key=key,
            value=value, time_ms=self._clock.now_ms(), acks=self.spec.acks,
            idempotent=self.spec.idempotent, producer_id=producer_id, offset=offset,
            error=error))
        with self._lock:
            if op_type is OpType.INVOKE:
                self.stats.invoked += 1
            else:
                self.stats.outcomes[op_type.value] += 1
