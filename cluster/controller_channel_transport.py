"""`ControllerChannel`: a broker's gRPC client to the controller quorum.

Theory of operation
-------------------
Brokers talk only to the active controller (the Raft leader); every other controller answers
the non-Raft RPCs with NOT_CONTROLLER and a hint (leader_id, leader_address) in the response
header shared by controller.proto and admin.proto. `call(rpc, request, timeout_s=...)`:

1. sends to the controller believed active (at first the lowest id);
2. on NOT_CONTROLLER follows the hint at once if it names another controller, else waits and
   tries the next one; on a transport failure (UNAVAILABLE, DEADLINE_EXCEEDED, ...) moves to the
   next controller in id order;
3. waits between attempts with exponential backoff, 50 ms doubling to 1 s, until the overall
   deadline, then raises `NotControllerError` (the last answer was NOT_CONTROLLER: no leader
   known) or `RequestTimedOutError` (no controller answered), naming the RPC and the last error.

Any other response, including per-request error codes other than NOT_CONTROLLER, is returned
to the caller as is: the caller decides what STALE_BROKER_EPOCH etc. mean.

One channel per controller, created up front, with GRPC_OPTIONS, a short reconnect backoff and
the fault interceptors under the peer name `controller-<id>`, so chaos can cut any link.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc

from proto import controller_pb2_grpc
from proto.channel_options import GRPC_OPTIONS, reconnect_options
from proto.errors import ErrorCode, NotControllerError, RequestTimedOutError
from proto.fault_transport import FaultTable, client_interceptors

log = logging.getLogger(__name__)

INITIAL_BACKOFF_S = 0.05
MAX_BACKOFF_S = 1.0
DEFAULT_ATTEMPT_TIMEOUT_S = 2.0

_RECONNECT_OPTIONS = reconnect_options(100, 1000)


def controller_name(node_id: int) -> str:
    """The node name fault tables use for a controller."""
    return f"controller-{node_id}"


class _Adapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['name']}] {msg}", kwargs  # type: ignore[index]


class ControllerChannel:
    """Calls to the active controller, following NOT_CONTROLLER hints; see the module doc."""

    def __init__(
        self,
        controllers: dict[int, str],
        *,
        local_name: str,
        faults: FaultTable | None = None,
        attempt_timeout_s: float = DEFAULT_ATTEMPT_TIMEOUT_S,
    ) -> None:
        """Args:
            controllers: every controller's id → "host:port".
            local_name: this node's name for logs (e.g. "broker 1").
            faults: the fault table (None: the process-wide FAULTS).
            attempt_timeout_s: the deadline of one attempt, unless a call gives its own.
        """
        assert controllers, "no controllers"
        self._addresses = dict(sorted(controllers.items()))
        self._order = list(self._addresses)
        self._log = _Adapter(log, {"name": local_name})
        self._attempt_timeout_s = attempt_timeout_s
        self._channels: dict[int, grpc.aio.Channel] = {}
        self._stubs: dict[int, controller_pb2_grpc.ControllerStub] = {}
        for node_id, address in self._addresses.items():
            channel = grpc.aio.insecure_channel(
                address,
                options=GRPC_OPTIONS + _RECONNECT_OPTIONS,
                interceptors=client_interceptors(controller_name(node_id), address, faults),
            )
            self._channels[node_id] = channel
            self._stubs[node_id] = controller_pb2_grpc.ControllerStub(channel)
        self._active: int | None = None
        self._closed = False

    @property
    def active_controller_id(self) -> int | None:
        """The controller that last answered without NOT_CONTROLLER (None if none yet)."""
        return self._active

    async def call(
        self, rpc: str, request: Any, *, timeout_s: float, attempt_timeout_s: float | None = None
    ) -> Any:
        """Call `rpc` (a Controller method name) on the active controller.

        Args:
            rpc: e.g. "AlterPartition".
            request: the request message.
            timeout_s: overall deadline, retries included.
            attempt_timeout_s: deadline of one attempt (long polls pass their wait + margin).

        Returns:
            The first response whose error_code is not NOT_CONTROLLER.

        Raises:
            NotControllerError: the deadline passed and the last answer was NOT_CONTROLLER.
            RequestTimedOutError: the deadline passed without any controller answering.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        per_attempt = attempt_timeout_s or self._attempt_timeout_s
        target = self._active if self._active is not None else self._order[0]
        backoff = INITIAL_BACKOFF_S
        last_error = "no attempt made"
        last_was_not_controller = False
        attempts = 0
        while True:
            if self._closed:
                raise RequestTimedOutError(f"{rpc}: controller channel closed")
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            attempts += 1
            hinted: int | None = None
            try:
                method = getattr(self._stubs[target], rpc)
                response = await method(request, timeout=min(per_attempt, remaining))
            except grpc.aio.AioRpcError as exc:
                last_error = f"controller {target}: {exc.code().name} {exc.details() or ''}"
                last_was_not_controller = False
                self._log.debug("%s failed: %s", rpc, last_error)
                if self._active == target:
                    self._active = None
            else:
                if response.error_code != ErrorCode.NOT_CONTROLLER:
                    if self._active != target:
                        self._log.info("active controller is now %d", target)
                        self._active = target
                    return response
                last_was_not_controller = True
                last_error = f"controller {target}: NOT_CONTROLLER {response.error_message}"
                if self._active == target:
                    self._active = None
                if response.HasField("leader_id") and response.leader_id in self._stubs:
                    hinted = response.leader_id
                self._log.debug("%s: %s (hint %s)", rpc, last_error, hinted)
            if hinted is not None and hinted != target:
                target = hinted  # follow the hint without waiting
                continue
            target = self._next(target)
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await asyncio.sleep(min(backoff, remaining))
            backoff = min(backoff * 2, MAX_BACKOFF_S)
        error = NotControllerError if last_was_not_controller else RequestTimedOutError
        raise error(
            f"{rpc}: no active controller answered within {timeout_s:.1f}s "
            f"({attempts} attempts); last: {last_error}"
        )

    def _next(self, node_id: int) -> int:
        index = self._order.index(node_id)
        return self._order[(index + 1) % len(self._order)]

    async def close(self) -> None:
        """Close every channel (calls in flight fail with CANCELLED)."""
        self._closed = True
        await asyncio.gather(
            *(channel.close() for channel in self._channels.values()), return_exceptions=True
        )
