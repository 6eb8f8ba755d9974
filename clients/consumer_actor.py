"""`ConsumerActor`: a consumer-group member as a Ray actor running a user handler.

    actor = ConsumerActor.options(name="billing-0").remote(
        handle, ["orders"], group_id="billing", bootstrap_servers=servers)
    ray.get(actor.start.remote(wait_for_assignment=30))
    ...
    ray.get(actor.stop.remote())

The actor runs a `Consumer` on its own thread: poll, call `handler(record)` for each record
(or `handler(records)` with `batch=True`), then commit. The commit comes only after the
handler returned (at-least-once): with `commit="batch"` (the default) the consumed positions
are committed synchronously after every handled batch, with `commit="auto"` the consumer's
enable.auto.commit does it at the next poll, before a rebalance and on close. A handler error
either retries the failed record (`on_error="retry"`: seek back to it), skips it (`"skip"`),
or stops the loop (`"stop"`); the error shows in `status()`.

Killing the actor (`ray.kill`) is a member crash: its partitions move to the others after
session.timeout.ms, and whatever it handled but did not commit is delivered again.
`consumed()` returns what the handler saw, for tests and chaos checkers.

Network faults: the actor carries the chaos hooks of every Rafka actor (`set_link_faults`,
`isolate_from`, `heal`, `faults`; proto/fault_transport.py), which edit the fault table of its
process, the one its consumer's channels consult. With `node_name="consumer-<member>"` the
actor names that table on `start()`, so its calls carry the name (`rafka-from`) and brokers
can drop or delay calls from it; chaos (chaos/faults.py) cuts a member off from the brokers by
setting both sides. Without a name its calls are anonymous: only its own table can cut it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

import ray

from clients.consumer.consumer import Consumer
from clients.errors import WakeupError
from clients.types import Record, TopicPartition
from proto.fault_transport import FAULTS, ActorChaosHooks

log = logging.getLogger(__name__)

__all__ = ["ConsumerActor", "ConsumerService"]

ConsumedRecord = tuple[str, int, int, Any, Any]  # topic, partition, offset, key, value


class ConsumerService(ActorChaosHooks):
    """The actor's body (a plain class; `ConsumerActor` is its Ray form).

    Args:
        handler: called with each `Record` (or each poll's list with `batch=True`).
        topics: topics to subscribe to (or `pattern=`).
        group_id: the consumer group.
        batch: call the handler once per poll with the list of records.
        commit: "batch" (commit after each handled poll) or "auto" (enable.auto.commit).
        on_error: "retry", "skip" or "stop" when the handler raises.
        keep_records: remember (topic, partition, offset, key, value) of every handled record.
        poll_timeout: seconds per poll.
        listener / pattern: passed to `Consumer.subscribe`.
        on_commit: `on_commit(consumer, offsets, error)` after each commit the actor makes
            (offsets: what was committed, None on error), e.g. for a chaos history.
        node_name: this member's name in fault tables (`consumer-<member>`), given to the
            process's table on `start()` ("" = leave the table's name alone). Process-wide:
            meant for the actor form, which has a process of its own.
        **config: consumer configs (snake_case or a `config=` dict).
    """

    def __init__(self, handler: Callable[[Any], Any], topics: Iterable[str] = (), *,
                 group_id: str, batch: bool = False, commit: str = "batch",
                 on_error: str = "retry", keep_records: bool = True, poll_timeout: float = 0.5,
                 listener: Any = None, pattern: str | None = None,
                 on_commit: Callable[[Any, dict[TopicPartition, int] | None,
                                      BaseException | None], Any] | None = None,
                 node_name: str = "", config: dict[str, Any] | None = None,
                 **kafka_config: Any) -> None:
        if commit not in ("batch", "auto"):
            raise ValueError(f"commit must be 'batch' or 'auto', got {commit!r}")
        if on_error not in ("retry", "skip", "stop"):
            raise ValueError(f"on_error must be 'retry', 'skip' or 'stop', got {on_error!r}")
        self._handler = handler
        self._topics = list(topics)
        self._pattern = pattern
        self._batch = batch
        self._commit = commit
        self._on_error = on_error
        self._keep = keep_records
        self._poll_timeout = poll_timeout
        self._listener = listener
        self._on_commit = on_commit
        self._node_name = node_name
        self._config = dict(config or {})
        self._kafka_config = dict(kafka_config, group_id=group_id)
        if commit == "batch":
            self._kafka_config.setdefault("enable_auto_commit", False)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._assigned = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Consumer[Any, Any] | None = None
        self._state = "created"
        self._processed = 0
        self._consumed: list[ConsumedRecord] = []
        self._errors: list[str] = []
        self._assignment: list[tuple[str, int]] = []
        self._generation = -1
        self._member_id = ""
        self._rebalances = 0

    # -- control (actor methods) ------------------------------------------------------------

    def start(self, wait_for_assignment: float = 0.0) -> dict[str, Any]:
        """Start consuming (idempotent); optionally wait until partitions are assigned.

        Raises:
            TimeoutError: nothing assigned within `wait_for_assignment` seconds (the loop
                keeps running).
        """
        if self._thread is None:
            if self._node_name:
                FAULTS.local_name = self._node_name  # before the consumer opens a channel
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="consumer-actor",
                                            daemon=True)
            self._state = "starting"
            self._thread.start()
        if wait_for_assignment > 0 and not self._assigned.wait(wait_for_assignment):
            raise TimeoutError(f"no partitions assigned within {wait_for_assignment} s: "
                               f"{self.status()}")
        return self.status()

    def stop(self, timeout: float = 30.0) -> dict[str, Any]:
        """Stop the loop: the consumer commits (per `commit`) and leaves the group."""
        self._stop.set()
        consumer = self._consumer
        if consumer is not None:
            consumer.wakeup()
        if self._thread is not None:
            self._thread.join(timeout)
        return self.status()

    def status(self) -> dict[str, Any]:
        """state, assignment, generation, member id, processed count, rebalances, errors."""
        with self._lock:
            return {
                "state": self._state,
                "assignment": list(self._assignment),
                "generation": self._generation,
                "member_id": self._member_id,
                "processed": self._processed,
                "rebalances": self._rebalances,
                "errors": list(self._errors[-10:]),
                "pid": os.getpid(),
            }

    def consumed(self, clear: bool = False) -> list[ConsumedRecord]:
        """Every record handled so far: (topic, partition, offset, key, value)."""
        with self._lock:
            out = list(self._consumed)
            if clear:
                self._consumed.clear()
            return out

    def ready(self) -> bool:
        return True

    def pid(self) -> int:
        return os.getpid()

    # -- the loop ---------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            consumer: Consumer[Any, Any] = Consumer(self._config, **self._kafka_config)
        except Exception as exc:  # noqa: BLE001 - reported through status()
            log.exception("consumer actor could not start")
            with self._lock:
                self._state = "failed"
                self._errors.append(repr(exc))
            return
        self._consumer = consumer
        try:
            consumer.subscribe(self._topics, pattern=self._pattern,
                               listener=_Listener(self, self._listener))
            with self._lock:
                self._state = "running"
            while not self._stop.is_set():
                try:
                    records = consumer.poll(self._poll_timeout)
                except WakeupError:
                    continue
                self._snapshot(consumer)
                if records.count():
                    if not self._handle(consumer, records):
                        break
        except Exception as exc:  # noqa: BLE001 - reported through status()
            log.exception("consumer actor loop failed")
            with self._lock:
                self._errors.append(repr(exc))
                self._state = "failed"
        finally:
            try:
                consumer.close(commit=None if self._commit == "auto" else True)
            except Exception:  # noqa: BLE001
                log.exception("consumer close failed")
            self._consumer = None
            with self._lock:
                if self._state != "failed":
                    self._state = "stopped"
                self._assignment = []

    def _handle(self, consumer: Consumer[Any, Any], records: Any) -> bool:
        """Handle one poll's records; False when the loop must stop."""
        by_tp: dict[TopicPartition, list[Record[Any, Any]]] = {
            tp: list(rs) for tp, rs in records.items()}
        for tp, rs in by_tp.items():
            units = [rs] if self._batch else [[r] for r in rs]
            for unit in units:
                try:
                    self._handler(unit if self._batch else unit[0])
                except Exception as exc:  # noqa: BLE001 - the user's handler
                    log.warning("handler failed on %s offset %d: %r", tp, unit[0].offset, exc)
                    with self._lock:
                        self._errors.append(f"{tp}@{unit[0].offset}: {exc!r}")
                    if self._on_error == "stop":
                        consumer.seek(tp, unit[0].offset)
                        with self._lock:
                            self._state = "failed"
                        return False
                    if self._on_error == "retry":
                        consumer.seek(tp, unit[0].offset)
                        break  # the rest of this partition comes again from there
                    continue  # skip: not handled, go on with the next one
                with self._lock:
                    self._processed += len(unit)
                    if self._keep:
                        self._consumed.extend(
                            (r.topic, r.partition, r.offset, r.key, r.value) for r in unit)
        if self._commit == "batch":
            self._commit_now(consumer, "commit after batch")
        return True

    def _commit_now(self, consumer: Consumer[Any, Any], what: str) -> None:
        try:
            done = consumer.commit()
        except Exception as exc:  # noqa: BLE001 - a rebalance: records come again
            log.info("%s failed: %r", what, exc)
            if self._on_commit is not None:
                self._on_commit(consumer, None, exc)
            return
        if self._on_commit is not None:
            self._on_commit(consumer, {tp: om.offset for tp, om in done.items()}, None)

    def _snapshot(self, consumer: Consumer[Any, Any]) -> None:
        assignment = sorted((tp.topic, tp.partition) for tp in consumer.assignment())
        md = consumer.group_metadata()
        with self._lock:
            self._assignment = assignment
            self._generation = md.generation_id
            self._member_id = md.member_id
            self._rebalances = consumer.rebalances
        if assignment:
            self._assigned.set()


class _Listener:
    """Commits before revocation (commit="batch") and forwards to the user's listener."""

    def __init__(self, service: ConsumerService, user: Any) -> None:
        self._service = service
        self._user = user

    def on_partitions_revoked(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        if self._service._commit == "batch" and partitions:
            # everything handled so far (the handler runs between polls)
            self._service._commit_now(consumer, "commit before revocation")
        self._forward("on_partitions_revoked", consumer, partitions)

    def on_partitions_assigned(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._forward("on_partitions_assigned", consumer, partitions)
        self._service._snapshot(consumer)

    def on_partitions_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        fn = getattr(self._user, "on_partitions_lost", None)
        if fn is not None:
            fn(consumer, partitions)
        # no commit: the partitions may belong to another member already

    def _forward(self, name: str, consumer: Any, partitions: list[TopicPartition]) -> None:
        fn = getattr(self._user, name, None)
        if fn is not None:
            fn(consumer, partitions)


# The Ray form. num_cpus=0: a consumer waits on the network, it must not hold a CPU slot.
ConsumerActor = ray.remote(num_cpus=0, max_restarts=0)(ConsumerService)

