"""`MetadataObserver`: the leader / leader epoch / ISR timeline of a topic, as seen by a client.

A thread asks `Admin.describe_topics` every `interval_s` and appends a `MetadataOp` to the
history whenever a partition's (leader, leader_epoch, isr) differs from what it saw last.
It sees the cluster through a broker's metadata image, so it lags the controller by up to a
metadata propagation plus one interval; the ISR checker's slack covers that. A failed
describe (no broker answers) is skipped, not recorded: the timeline keeps its last state.
"""

from __future__ import annotations

import logging
import threading

from chaos.history import NO_LEADER, HistoryWriter, MetadataOp
from chaos.workloads.clock import RunClock
from clients.admin import Admin

log = logging.getLogger(__name__)

State = tuple[int, int, tuple[int, ...]]  # leader, leader_epoch, isr


class MetadataObserver:
    def __init__(self, bootstrap_servers: str, topics: list[str], history: HistoryWriter,
                 clock: RunClock, *, interval_s: float = 0.15) -> None:
        self.topics = list(topics)
        self._history = history
        self._clock = clock
        self._interval_s = interval_s
        self._admin = Admin(bootstrap_servers=bootstrap_servers, request_timeout_ms=1500,
                            default_api_timeout_ms=2500)
        self._last: dict[tuple[str, int], State] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-metadata", daemon=True)
        self.changes = 0
        self.errors = 0

    def start(self) -> None:
        self.observe_once()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10.0)
        self._admin.close()

    def current(self) -> dict[tuple[str, int], State]:
        return dict(self._last)

    def observe_once(self) -> bool:
        """One describe; records the changes. False when no broker answered."""
        try:
            described = self._admin.describe_topics(self.topics, timeout=2.0)
        except Exception as exc:  # noqa: BLE001 - cluster degraded: try again next round
            self.errors += 1
            log.debug("describe_topics failed: %r", exc)
            return False
        now_ms = self._clock.now_ms()
        for topic, desc in described.items():
            for p in desc.partitions:
                leader = NO_LEADER if p.leader is None else p.leader
                state: State = (leader, p.leader_epoch, tuple(sorted(p.isr)))
                if self._last.get((topic, p.partition)) == state:
                    continue
                self._last[(topic, p.partition)] = state
                self.changes += 1
                self._history.append(MetadataOp(topic=topic, partition=p.partition,
                                                leader=leader, leader_epoch=p.leader_epoch,
                                                isr=state[2], time_ms=now_ms))
        return True

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.observe_once()
