"""The asyncio shell that drives one `RaftNode`: persist, send, apply, advance, wait.

Theory of operation
-------------------
`RaftRuntime` owns the only loop that touches the Raft core, its storage and the committed
`MetadataImage` of one controller process. Peers talk to it through its inbox:

- `deliver(msg)`: a Raft *response* that came back over the transport (fire and forget);
- `request(msg)`: a Raft *request* that arrived over gRPC; returns a future for the core's answer;
- `propose(data)`: the active controller wants an entry replicated. This one calls the core at
  once (the caller needs the entry's index synchronously) and returns the index and a future
  that resolves once the entry is committed and applied.

One iteration of `run()` (STYLE §1):

    drain inbox → step / propose        (all calls into the core happen here)
    tick(now_ms)                        (the core fires whichever timers are due)
    ready = node.ready()
    persist snapshot + entries + hard state, fsync   (in the runtime's one-thread executor)
    route messages: answers to waiting RPCs, requests to the transport (never awaited)
    apply snapshot + committed entries to the image; resolve proposal and commit waiters
    advance(ready); maybe take a snapshot; report leadership changes
    wait for the inbox or node.next_deadline_ms()

RPC-answer routing. The core answers every request with exactly one response message, in the
order requests were stepped (`_answer_stale` or the matching `_on_*` handler). So when the loop
steps a request from peer P it appends the RPC's future to a FIFO keyed by (P, response type);
when that response type addressed to P comes out of a `Ready` (after the persist that it vouches
for), the loop pops the FIFO and resolves the future instead of sending anything. Responses never
go over the transport: they ride back on the unary RPC that carried the request.

Proposals and leadership. A proposal's future is keyed by (index, term) and resolves when the
entry at that index commits with that term; it fails with NotControllerError if another term's
entry commits there, or when this node stops leading. The node is the *active* controller from
the moment it leads and has applied an entry of its own term (its no-op), so its committed image
then holds everything earlier leaders committed; listeners hear `on_activate(term)` /
`on_deactivate()`.

Snapshots. After `snapshot_interval_entries` applied entries (or `snapshot_max_bytes` of entry
data) the runtime encodes the committed image (`encode_records(image.snapshot())`), saves it
durably and lets the core compact its log. On restart the image is rebuilt from the stored
snapshot and the committed entries after it are replayed through `Ready.committed`; a snapshot
installed by the leader replaces the image the same way.

Entry data is `encode_records(records)`; empty data is a Raft no-op and still advances the
image's `last_applied_offset`, so metadata offsets are exactly Raft indexes.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

from controller.raft import NotLeaderError, QuorumStatus, RaftNode, Ready, Role
from controller.raft_log import LogEntry, Snapshot
from controller.raft_messages import (
    AppendRequest,
    AppendResponse,
    InstallSnapshotRequest,
    InstallSnapshotResponse,
    RaftMessage,
    VoteRequest,
    VoteResponse,
)
from controller.raft_storage import RaftStorage, persist_ready
from proto.errors import NotControllerError, RafkaError
from proto.metadata import MetadataRecord, decode_records, encode_records
from proto.metadata_image import MetadataImage

log = logging.getLogger(__name__)

_RESPONSE_FOR: dict[type, type] = {
    VoteRequest: VoteResponse,
    AppendRequest: AppendResponse,
    InstallSnapshotRequest: InstallSnapshotResponse,
}
_RESPONSE_TYPES = tuple(_RESPONSE_FOR.values())


class NodeLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes every line with `[controller N]`."""

    def __init__(self, logger: logging.Logger, node_id: int) -> None:
        super().__init__(logger, {})
        self.node_id = node_id

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        return f"[controller {self.node_id}] {msg}", kwargs


class Transport(Protocol):
    """Where the runtime sends Raft requests (controller/controller_transport.py)."""

    def send(self, msg: RaftMessage) -> None: ...


class LeadershipListener(Protocol):
    """Told when this node becomes / stops being the active controller."""

    def on_activate(self, term: int) -> None: ...

    def on_deactivate(self) -> None: ...


def monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    """Knobs of the runtime shell.

    Attributes:
        snapshot_interval_entries: take a snapshot after this many applied entries.
        snapshot_max_bytes: ... or after this many bytes of applied entry data (Kafka's
            metadata.log.max.record.bytes.between.snapshots, 20 MiB).
    """

    snapshot_interval_entries: int = 1000
    snapshot_max_bytes: int = 20 * 1024 * 1024


@dataclass(slots=True)
class _Inbound:
    msg: RaftMessage
    reply: asyncio.Future[RaftMessage] | None


class RaftRuntime:
    """One controller's Raft loop; see the module docstring."""

    def __init__(
        self,
        node: RaftNode,
        storage: RaftStorage,
        *,
        config: RuntimeConfig | None = None,
        clock: Callable[[], int] = monotonic_ms,
    ) -> None:
        """Wrap a node restarted from `storage` (RaftNode.from_storage).

        The committed image starts from the stored snapshot; entries after it are replayed by
        the loop as the core hands them out.
        """
        self._node = node
        self._storage = storage
        self._config = config or RuntimeConfig()
        self._clock = clock
        self._log = NodeLog(log, node.node_id)
        self._transport: Transport | None = None
        self._listeners: list[LeadershipListener] = []
        self._commit_listeners: list[Callable[[int, list[MetadataRecord]], None]] = []

        snapshot = storage.load_snapshot()
        self._snapshot: Snapshot | None = snapshot
        self._image = self._image_from(snapshot)
        self._last_applied_term = snapshot.last_term if snapshot else 0
        self._since_snapshot_entries = 0
        self._since_snapshot_bytes = 0

        self._inbox: collections.deque[_Inbound] = collections.deque()
        self._wake = asyncio.Event()
        self._replies: dict[tuple[int, type], collections.deque[asyncio.Future[RaftMessage]]]
        self._replies = collections.defaultdict(collections.deque)
        self._proposals: dict[int, tuple[int, asyncio.Future[int]]] = {}  # index → (term, fut)
        self._commit_changed = asyncio.Event()
        self._active_term: int | None = None
        self._seen = (node.role, node.term, node.leader_id)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"raft-io-{node.node_id}"
        )
        self._stopping = False
        self.failure: BaseException | None = None

    # ---- wiring ---------------------------------------------------------------------------

    @property
    def node_id(self) -> int:
        return self._node.node_id

    def set_transport(self, transport: Transport) -> None:
        self._transport = transport

    def add_leadership_listener(self, listener: LeadershipListener) -> None:
        self._listeners.append(listener)

    def add_commit_listener(self, fn: Callable[[int, list[MetadataRecord]], None]) -> None:
        """`fn(index, records)` for every committed entry applied from now on (in order)."""
        self._commit_listeners.append(fn)

    # ---- inputs ---------------------------------------------------------------------------

    def deliver(self, msg: RaftMessage) -> None:
        """A response from a peer, brought back by the transport."""
        if self._stopping:
            return
        self._inbox.append(_Inbound(msg, None))
        self._wake.set()

    def request(self, msg: RaftMessage) -> asyncio.Future[RaftMessage]:
        """A request from a peer; the future gets the core's answer once it may leave."""
        assert type(msg) in _RESPONSE_FOR, msg
        fut: asyncio.Future[RaftMessage] = asyncio.get_running_loop().create_future()
        if self._stopping:
            fut.cancel()
            return fut
        self._inbox.append(_Inbound(msg, fut))
        self._wake.set()
        return fut

    def propose(self, data: bytes) -> tuple[int, asyncio.Future[int]]:
        """Append `data` (encode_records output, or b"" for a no-op) to the leader's log now.

        The core is called synchronously, so the caller learns the entry's index at once and
        proposals take indexes in call order (the ControlManager's offset contract). This is
        the one core call made outside `run()`; `RaftNode` allows it between `ready()` and
        `advance()` (new entries and messages simply wait for the next `Ready`).

        Returns:
            (index, a future resolved with the index once the entry is committed and applied;
            it fails with NotControllerError if another term's entry commits there or this
            node stops leading).
        Raises:
            NotControllerError: this node is not the leader.
        """
        if self._stopping:
            raise self._not_controller()
        try:
            index = self._node.propose(data)
        except NotLeaderError:
            raise self._not_controller() from None
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._proposals[index] = (self._node.term, fut)
        self._wake.set()
        return index, fut

    async def wait_for_applied(self, index: int, timeout_s: float) -> bool:
        """Wait until the applied index reaches `index`; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self._node.applied_index < index:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stopping:
                return False
            event = self._commit_changed
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except asyncio.TimeoutError:
                return self._node.applied_index >= index
        return True

    # ---- queries --------------------------------------------------------------------------

    @property
    def role(self) -> Role:
        return self._node.role

    @property
    def term(self) -> int:
        return self._node.term

    @property
    def leader_id(self) -> int | None:
        return self._node.leader_id

    @property
    def is_active(self) -> bool:
        """Leader with its own term's entry applied: the active controller."""
        return self._active_term is not None

    @property
    def commit_index(self) -> int:
        return self._node.commit_index

    @property
    def applied_index(self) -> int:
        return self._node.applied_index

    @property
    def last_index(self) -> int:
        """The last index in this node's log (committed or not)."""
        return self._node.last_index

    @property
    def image(self) -> MetadataImage:
        """The committed image (read-only for callers; copy() before changing it)."""
        return self._image

    @property
    def latest_snapshot(self) -> Snapshot | None:
        return self._snapshot

    @property
    def log_start_index(self) -> int:
        """The first index still held as a log entry."""
        return self._node.raft_log.first_index

    def committed_entries(self, lo: int, hi: int) -> tuple[LogEntry, ...]:
        """Applied entries with lo <= index < hi (lo must be >= log_start_index)."""
        hi = min(hi, self._node.applied_index + 1)
        if lo >= hi:
            return ()
        return self._node.raft_log.slice(lo, hi)

    def quorum_status(self) -> QuorumStatus:
        return self._node.status()

    def now_ms(self) -> int:
        return self._clock()

    # ---- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Drive the core until `stop()`; see the module docstring."""
        self._log.info("raft loop started at term %d, commit %d, applied %d",
                       self._node.term, self._node.commit_index, self._node.applied_index)
        try:
            while not self._stopping:
                now = self._clock()
                self._drain_inbox(now)
                self._node.tick(now)
                ready = self._node.ready()
                if not ready.is_empty():
                    await self._handle_ready(ready)
                    continue
                self._observe_roles()
                await self._wait(self._node.next_deadline_ms() - self._clock())
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a broken invariant: stop serving, don't corrupt state
            self.failure = exc
            self._log.exception("raft loop failed; this controller stops")
            raise
        finally:
            self._stopping = True
            self._fail_everything()
            self._log.info("raft loop ended")

    async def stop(self) -> None:
        """Stop accepting input; the caller cancels and awaits the `run()` task."""
        self._stopping = True
        self._wake.set()

    def close(self) -> None:
        """Release the executor (after `run()` ended)."""
        self._executor.shutdown(wait=True)

    async def _wait(self, timeout_ms: int) -> None:
        if self._inbox or timeout_ms <= 0:
            return
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout_ms / 1000)
        except asyncio.TimeoutError:
            pass

    def _drain_inbox(self, now: int) -> None:
        while self._inbox:
            item = self._inbox.popleft()
            msg = item.msg
            if item.reply is not None:
                key = (msg.from_id, _RESPONSE_FOR[type(msg)])
                self._replies[key].append(item.reply)
            self._node.step(msg, now)

    async def _handle_ready(self, ready: Ready) -> None:
        loop = asyncio.get_running_loop()
        if ready.snapshot is not None or ready.entries or ready.hard_state is not None:
            await loop.run_in_executor(self._executor, persist_ready, self._storage, ready)
        self._route(ready.messages)
        if ready.snapshot is not None:
            self._restore(ready.snapshot)
        for entry in ready.committed:
            self._apply(entry)
        self._node.advance(ready)
        if ready.committed or ready.snapshot is not None:
            self._commit_changed.set()
            self._commit_changed = asyncio.Event()
        await self._maybe_snapshot()
        self._observe_roles()

    def _route(self, messages: tuple[RaftMessage, ...]) -> None:
        for msg in messages:
            if isinstance(msg, _RESPONSE_TYPES):
                waiters = self._replies.get((msg.to_id, type(msg)))
                if not waiters:
                    self._log.debug("no RPC waiting for %s; dropped", msg)
                    continue
                fut = waiters.popleft()
                if not fut.done():
                    fut.set_result(msg)
            elif self._transport is not None:
                self._transport.send(msg)

    # ---- the state machine ----------------------------------------------------------------

    @staticmethod
    def _image_from(snapshot: Snapshot | None) -> MetadataImage:
        if snapshot is None:
            return MetadataImage()
        return MetadataImage.from_snapshot(decode_records(snapshot.data), snapshot.last_index)

    def _restore(self, snapshot: Snapshot) -> None:
        self._log.info("restoring image from snapshot through %d (term %d)",
                       snapshot.last_index, snapshot.last_term)
        self._image = self._image_from(snapshot)
        self._snapshot = snapshot
        self._last_applied_term = snapshot.last_term
        self._since_snapshot_entries = 0
        self._since_snapshot_bytes = 0
        for index in [i for i in self._proposals if i <= snapshot.last_index]:
            _, fut = self._proposals.pop(index)
            if not fut.done():
                fut.set_exception(self._not_controller())

    def _apply(self, entry: LogEntry) -> None:
        # A committed entry that does not decode is a bug or corruption: fail the node.
        records = decode_records(entry.data) if entry.data else []
        self._image.apply_batch(records, entry.index)
        self._last_applied_term = entry.term
        self._since_snapshot_entries += 1
        self._since_snapshot_bytes += len(entry.data)
        for fn in self._commit_listeners:
            fn(entry.index, records)
        waiter = self._proposals.pop(entry.index, None)
        if waiter is not None:
            term, fut = waiter
            if fut.done():
                return
            if term == entry.term:
                fut.set_result(entry.index)
            else:
                fut.set_exception(self._not_controller())

    async def _maybe_snapshot(self) -> None:
        cfg = self._config
        if (self._since_snapshot_entries < cfg.snapshot_interval_entries
                and self._since_snapshot_bytes < cfg.snapshot_max_bytes):
            return
        index = self._node.applied_index
        assert self._image.last_applied_offset == index, (self._image.last_applied_offset, index)
        snapshot = Snapshot(
            last_index=index,
            last_term=self._last_applied_term,
            data=encode_records(self._image.snapshot()),
        )
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._storage.save_snapshot, snapshot)
        self._node.compact(snapshot)
        self._snapshot = snapshot
        self._since_snapshot_entries = 0
        self._since_snapshot_bytes = 0
        self._log.info("snapshot through %d (term %d, %d bytes); log compacted",
                       index, snapshot.last_term, len(snapshot.data))

    # ---- leadership -----------------------------------------------------------------------

    def _observe_roles(self) -> None:
        node = self._node
        seen = (node.role, node.term, node.leader_id)
        if seen != self._seen:
            self._log.info("role %s, term %d, leader %s", node.role.value, node.term,
                           node.leader_id)
            self._seen = seen
        leading = node.role is Role.LEADER
        if self._active_term is not None and (not leading or node.term != self._active_term):
            self._deactivate()
        if (leading and self._active_term is None
                and self._last_applied_term == node.term and node.applied_index > 0):
            self._active_term = node.term
            self._log.info("active controller at term %d (applied %d)",
                           node.term, node.applied_index)
            for listener in self._listeners:
                listener.on_activate(node.term)
        if not leading and self._proposals:
            self._fail_proposals()

    def _deactivate(self) -> None:
        self._log.info("no longer the active controller (was term %s)", self._active_term)
        self._active_term = None
        for listener in self._listeners:
            listener.on_deactivate()
        self._fail_proposals()

    def _fail_proposals(self) -> None:
        proposals, self._proposals = self._proposals, {}
        for _, fut in proposals.values():
            if not fut.done():
                fut.set_exception(self._not_controller())

    def _not_controller(self) -> RafkaError:
        return NotControllerError(
            f"controller {self._node.node_id} is not the active controller "
            f"(leader: {self._node.leader_id})"
        )

    def _fail_everything(self) -> None:
        if self._active_term is not None:
            self._deactivate()
        self._fail_proposals()
        for item in self._inbox:
            if item.reply is not None and not item.reply.done():
                item.reply.cancel()
        self._inbox.clear()
        for waiters in self._replies.values():
            for fut in waiters:
                if not fut.done():
                    fut.cancel()
        self._replies.clear()
        self._commit_changed.set()
