"""A simulated network: delays, drops, duplicates, reorders, partitions and clogged links.

Every random choice comes from the `random.Random` handed in. A link (src, dst) is one-way;
a symmetric partition clogs both directions between groups. A message on a link that is
clogged when it is sent, or when it would arrive, is lost (as with a cut cable, not a queue).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from chaos.sim.clock import SimClock


@dataclass(slots=True)
class LinkFaults:
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    delay_min_ms: int = 1
    delay_max_ms: int = 5
    long_delay_rate: float = 0.0  # a message overtaken by later ones (reordering)
    long_delay_max_ms: int = 0


class SimNetwork:
    def __init__(
        self,
        clock: SimClock,
        rng: random.Random,
        deliver: Callable[[int, int, object], None],
        faults: LinkFaults | None = None,
    ) -> None:
        self._clock = clock
        self._rng = rng
        self._deliver = deliver
        self.faults = faults or LinkFaults()
        self._clogged: set[tuple[int, int]] = set()
        self.sent = self.dropped = self.duplicated = 0

    # -- topology --

    def clog(self, src: int, dst: int) -> None:
        self._clogged.add((src, dst))

    def unclog(self, src: int, dst: int) -> None:
        self._clogged.discard((src, dst))

    def clogged_links(self) -> list[tuple[int, int]]:
        return sorted(self._clogged)

    def partition(self, groups: Iterable[Iterable[int]]) -> None:
        """Symmetric partition: no traffic between different groups."""
        gs = [sorted(g) for g in groups]
        for i, a in enumerate(gs):
            for b in gs[i + 1 :]:
                for x in a:
                    for y in b:
                        self._clogged.add((x, y))
                        self._clogged.add((y, x))

    def heal(self) -> None:
        self._clogged.clear()

    def is_clogged(self, src: int, dst: int) -> bool:
        return (src, dst) in self._clogged

    # -- traffic --

    def send(self, src: int, dst: int, payload: object) -> None:
        self.sent += 1
        f = self.faults
        rng = self._rng
        if (src, dst) in self._clogged or (f.drop_rate and rng.random() < f.drop_rate):
            self.dropped += 1
            return
        copies = 1
        if f.duplicate_rate and rng.random() < f.duplicate_rate:
            copies = 2
            self.duplicated += 1
        for _ in range(copies):
            delay = rng.randint(f.delay_min_ms, f.delay_max_ms)
            if f.long_delay_rate and rng.random() < f.long_delay_rate:
                delay += rng.randint(0, f.long_delay_max_ms)
            self._clock.after(delay, lambda: self._arrive(src, dst, payload))

    def _arrive(self, src: int, dst: int, payload: object) -> None:
        if (src, dst) in self._clogged:
            self.dropped += 1
            return
        self._deliver(src, dst, payload)
