"""The one clock of a chaos run: milliseconds since the run started, in every process.

Workloads in the driver and consumer actors in their own processes stamp history events with
`RunClock.now_ms()`. The clock is wall time minus the run's start (`epoch_ms`), so processes on
one machine agree without talking; it is a plain value, cheap to pickle into an actor.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


def _wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class RunClock:
    epoch_ms: int = field(default_factory=_wall_ms)

    def now_ms(self) -> int:
        return _wall_ms() - self.epoch_ms
