"""A simulated clock that moves only when its event queue pops.

Events are callables scheduled at an absolute time in ms; ties are broken by scheduling order
(a sequence number), so a run is a pure function of its seed.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

Event = Callable[[], None]


class SimClock:
    def __init__(self) -> None:
        self.now_ms = 0
        self._seq = 0
        self._queue: list[tuple[int, int, Event]] = []
        self.events_run = 0

    def schedule(self, at_ms: int, event: Event) -> None:
        """Run `event` at `at_ms` (never in the past)."""
        self._seq += 1
        heapq.heappush(self._queue, (max(at_ms, self.now_ms), self._seq, event))

    def after(self, delay_ms: int, event: Event) -> None:
        self.schedule(self.now_ms + delay_ms, event)

    def run_next(self) -> bool:
        """Pop and run the earliest event; False if there is none."""
        if not self._queue:
            return False
        at, _, event = heapq.heappop(self._queue)
        self.now_ms = at
        self.events_run += 1
        event()
        return True

    def next_at_ms(self) -> int | None:
        return self._queue[0][0] if self._queue else None

    def __len__(self) -> int:
        return len(self._queue)
