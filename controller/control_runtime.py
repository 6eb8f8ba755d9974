"""The asyncio shell around `ControlManager`: the active controller's request path and timer.

Theory of operation
-------------------
`ControlRuntime` keeps the shell side of the contract in controller/control.py's docstring:

1. *One entry per result, in order, with known offsets.* A request runs `handle_*(req, now_ms)`
   and, in the same synchronous step (no `await` between them), proposes the result's records
   as ONE Raft entry; `RaftRuntime.propose` returns the entry's index at once and the shell
   asserts it equals `manager.last_written_offset`. asyncio runs one coroutine at a time, so
   results take log indexes in the order they were produced: that is the serialization the
   speculative image needs, with no lock that a slow commit could hold.
2. *Answer after commit.* The caller awaits the entry's commit; a result without records awaits
   the commit of the latest earlier proposal (if any is pending), so no answer reflects
   uncommitted state.
3. `manager.on_commit(index)` for every applied entry while active.
4. *Activation.* The Raft runtime reports `on_activate(term)` once the leader has applied its
   own term's no-op (so the committed image holds everything earlier leaders committed); the
   manager is activated with a copy of that image and `next_offset = last log index + 1`.
   `on_deactivate()` (leadership lost, or any proposal failed) drops the speculative image;
   Raft fails the proposals in flight with NotControllerError.
5. *Foreign entries.* `propose_records` (tests, benches) writes records the manager did not
   produce. It pauses the manager (deactivate), proposes, waits until everything proposed is
   applied, and activates it again from the committed image, so the manager's offsets and
   image stay exact. If that wait fails (timeout), the manager stays paused until the log is
   fully applied (checked on every commit). Requests arriving meanwhile wait for the
   activation.

`tick(now_ms)` runs while active, at `next_deadline_ms()` or every `tick_interval_ms`,
whichever is sooner; its records are proposed the same way and nobody waits for them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

from controller.control import ControlManager, ControllerResult
from controller.raft import Role
from controller.raft_runtime import NodeLog, RaftRuntime
from proto.errors import NotControllerError, RafkaError, RequestTimedOutError
from proto.metadata import MetadataRecord, encode_records

log = logging.getLogger(__name__)

Req = TypeVar("Req")
R = TypeVar("R")


class ControlRuntime:
    """Runs `ControlManager` on the active controller; see the module docstring."""

    def __init__(
        self,
        raft: RaftRuntime,
        manager: ControlManager,
        *,
        tick_interval_ms: int = 100,
        activation_wait_ms: int = 2000,
    ) -> None:
        """Args:
            raft: the Raft loop (its committed image and proposals).
            manager: the ControlManager (standby until activated).
            tick_interval_ms: the longest gap between two `manager.tick` calls while active.
            activation_wait_ms: how long a request to a leader that is not active yet (its
                no-op not applied, or paused for a foreign entry) waits before NOT_CONTROLLER.
        """
        self._raft = raft
        self._manager = manager
        self._tick_interval_ms = tick_interval_ms
        self._activation_wait_s = activation_wait_ms / 1000
        self._log = NodeLog(log, raft.node_id)
        self._active = asyncio.Event()
        self._term: int | None = None  # the Raft term we lead (even while paused)
        self._paused = 0
        self._tick_task: asyncio.Task[None] | None = None
        self._last_proposal: asyncio.Future[int] | None = None
        raft.add_leadership_listener(self)
        raft.add_commit_listener(self._on_commit)

    @property
    def manager(self) -> ControlManager:
        return self._manager

    @property
    def is_active(self) -> bool:
        return self._active.is_set()

    # ---- leadership (called from the Raft loop) ------------------------------------------

    def on_activate(self, term: int) -> None:
        self._term = term
        self._maybe_resume()

    def on_deactivate(self) -> None:
        self._term = None
        self._deactivate("leadership lost")

    def _maybe_resume(self) -> None:
        """Activate the manager if Raft is active at our term, nothing pauses it, and every
        entry in the log is applied (a foreign entry still in flight would be missing from
        the manager's image while its offsets skipped it: contract point 5)."""
        if (not self._paused and self._term is not None and self._term == self._raft.term
                and self._raft.is_active and not self._active.is_set()
                and self._raft.image.last_applied_offset >= self._raft.last_index):
            self._activate()

    def _activate(self) -> None:
        assert self._term is not None
        self._manager.activate(
            self._raft.image, self._raft.now_ms(), next_offset=self._raft.last_index + 1
        )
        self._last_proposal = None
        self._active.set()
        self._tick_task = asyncio.get_running_loop().create_task(self._tick_loop(self._term))
        self._log.info("control manager active at term %d", self._term)

    def _deactivate(self, why: str) -> None:
        if not self._active.is_set():
            return
        self._active.clear()
        if self._tick_task is not None:
            self._tick_task.cancel()
            self._tick_task = None
        self._manager.deactivate()
        self._last_proposal = None
        self._log.info("control manager inactive (%s)", why)

    def _on_commit(self, index: int, records: list[MetadataRecord]) -> None:
        if self._active.is_set():
            self._manager.on_commit(index)
        else:
            self._maybe_resume()  # a paused manager waits for the last foreign entry

    async def stop(self) -> None:
        task, self._tick_task = self._tick_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # ---- requests -------------------------------------------------------------------------

    async def call(
        self, handle: Callable[[Req, int], ControllerResult[R]], req: Req, timeout_s: float
    ) -> R:
        """Run one request on the active controller and return its response once committed.

        Raises:
            NotControllerError: this node is not (or stopped being) the active controller.
            RequestTimedOutError: the records did not commit within `timeout_s`.
            RafkaError: whatever the manager raises for the request.
        """
        await self._wait_active()
        result = handle(req, self._raft.now_ms())
        if result.records:
            fut = self._propose(result.records)
        elif self._last_proposal is not None and not self._last_proposal.done():
            fut = self._last_proposal
        else:
            return result.response
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout_s)
        except asyncio.TimeoutError:
            raise RequestTimedOutError(
                f"records not committed within {timeout_s:.1f}s"
            ) from None
        return result.response

    async def propose_records(self, records: list[MetadataRecord], timeout_s: float) -> int:
        """Commit records the manager did not produce (module docstring, point 5)."""
        self._paused += 1
        self._deactivate("foreign entry")
        try:
            _, fut = self._raft.propose(encode_records(records))
            index = await asyncio.wait_for(fut, timeout_s)
            await self._raft.wait_for_applied(self._raft.last_index, timeout_s)
            return index
        finally:
            self._paused -= 1
            self._maybe_resume()

    async def _wait_active(self) -> None:
        if self._active.is_set():
            return
        if self._raft.role is not Role.LEADER:
            raise self._not_controller()
        try:  # a fresh leader: its no-op commits within a round trip
            await asyncio.wait_for(self._active.wait(), self._activation_wait_s)
        except asyncio.TimeoutError:
            raise self._not_controller() from None

    def _propose(self, records: Sequence[MetadataRecord]) -> asyncio.Future[int]:
        try:
            index, fut = self._raft.propose(encode_records(list(records)))
        except NotControllerError:
            self._deactivate("proposal refused")
            raise
        assert index == self._manager.last_written_offset, (
            f"entry {index} != manager offset {self._manager.last_written_offset}"
        )
        fut.add_done_callback(self._on_proposal_done)
        self._last_proposal = fut
        return fut

    def _on_proposal_done(self, fut: asyncio.Future[int]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            # Contract point 4: any failed proposal drops the speculative image.
            self._deactivate("proposal failed")

    def _not_controller(self) -> RafkaError:
        return NotControllerError(
            f"controller {self._raft.node_id} is not the active controller "
            f"(leader: {self._raft.leader_id})"
        )

    # ---- timer ----------------------------------------------------------------------------

    async def _tick_loop(self, term: int) -> None:
        self._log.debug("tick task started for term %d", term)
        try:
            while self._active.is_set():
                now = self._raft.now_ms()
                result = self._manager.tick(now)
                if result.records:
                    self._propose(result.records)
                deadline = self._manager.next_deadline_ms()
                wait_ms = self._tick_interval_ms
                if deadline is not None:
                    wait_ms = max(1, min(wait_ms, deadline - self._raft.now_ms()))
                await asyncio.sleep(wait_ms / 1000)
        except NotControllerError:
            pass
        finally:
            self._log.debug("tick task for term %d ended", term)
