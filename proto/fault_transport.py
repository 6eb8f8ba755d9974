"""Network fault injection for every gRPC client and server in a process.

Each Rafka process (broker, controller, consumer actor, client) has one `FaultTable`. Every
channel the project opens carries `client_interceptors(peer)`, and every server carries
`server_interceptors()`, so the table decides, per call, whether a call to or from a given peer is
dropped (fails with UNAVAILABLE, as a cut link would after its timeout) or delayed. Chaos sets the
tables of the processes on both sides of a link to build partitions (symmetric or one-way) and slow
links; `heal()` clears them.

Bidirectional streams (the followers' ReplicaFetch) live for minutes, so their faults are looked up
again for every message, not once per call: a drop set while a stream is open fails that stream
with UNAVAILABLE at its next message (nothing more is delivered either way), and a delay delays
each request message on the client and each incoming message on the server.

Peers are named by node name (`broker-2`, `controller-1`, `consumer-x`) or by address
(`127.0.0.1:40123`). Clients stamp their own node name on every call (`rafka-from` metadata) so the
server side can match incoming calls by name: a caller's source port says nothing about who it is.
The name stamped is the table's `local_name` (each shell names its process's table: `broker-<id>`,
`controller-<id>`, `consumer-<member>` for a group member's `ConsumerActor`), unless a channel
is given its own (`client_interceptors(..., local_name=)`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc

log = logging.getLogger(__name__)

FROM_METADATA_KEY = "rafka-from"


@dataclass(frozen=True, slots=True)
class LinkFault:
    """What happens to calls on one direction of a link."""

    drop: bool = False
    delay_ms: int = 0


class FaultTable:
    """The per-process table of link faults, keyed by peer name or address."""

    def __init__(self, local_name: str = "") -> None:
        self.local_name = local_name
        self._outgoing: dict[str, LinkFault] = {}
        self._incoming: dict[str, LinkFault] = {}

    def set_outgoing(self, peer: str, fault: LinkFault) -> None:
        """Calls this process makes to `peer`."""
        self._outgoing[peer] = fault
        log.info("[%s] fault on calls to %s: %s", self.local_name, peer, fault)

    def set_incoming(self, peer: str, fault: LinkFault) -> None:
        """Calls `peer` makes to this process."""
        self._incoming[peer] = fault
        log.info("[%s] fault on calls from %s: %s", self.local_name, peer, fault)

    def isolate_from(self, peers: Iterable[str]) -> None:
        """Drop every call to and from each of `peers` (one side of a partition)."""
        for peer in peers:
            self.set_outgoing(peer, LinkFault(drop=True))
            self.set_incoming(peer, LinkFault(drop=True))

    def heal(self) -> None:
        self._outgoing.clear()
        self._incoming.clear()
        log.info("[%s] all link faults healed", self.local_name)

    def outgoing(self, *peers: str) -> LinkFault | None:
        for peer in peers:
            fault = self._outgoing.get(peer)
            if fault is not None:
                return fault
        return None

    def incoming(self, peer: str) -> LinkFault | None:
        return self._incoming.get(peer)

    def describe(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {
            "outgoing": {p: {"drop": f.drop, "delay_ms": f.delay_ms}
                         for p, f in sorted(self._outgoing.items())},
            "incoming": {p: {"drop": f.drop, "delay_ms": f.delay_ms}
                         for p, f in sorted(self._incoming.items())},
        }


# One table per process: shells and clients share it, and chaos reaches it through actor methods.
FAULTS = FaultTable()


def _dropped(method: str, peer: str) -> grpc.aio.AioRpcError:
    # The caller sees what an unreachable peer gives: UNAVAILABLE.
    return grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(),
        details=f"fault injection: call {method} to {peer} dropped",
    )


async def _apply_outgoing(table: FaultTable, names: tuple[str, ...], method: str) -> None:
    fault = table.outgoing(*names)
    if fault is None:
        return
    if fault.delay_ms:
        await asyncio.sleep(fault.delay_ms / 1000)
    if fault.drop:
        raise _dropped(method, names[0])


def _with_from(details: grpc.aio.ClientCallDetails, local_name: str) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata()
    for key, value in details.metadata or ():
        metadata.add(key, value)
    if local_name:
        metadata.add(FROM_METADATA_KEY, local_name)
    return grpc.aio.ClientCallDetails(
        method=details.method,
        timeout=details.timeout,
        metadata=metadata,
        credentials=details.credentials,
        wait_for_ready=details.wait_for_ready,
    )


class _ClientFaults:
    """What every client interceptor holds: the table, the peer's names, the name to stamp."""

    def __init__(self, table: FaultTable, names: tuple[str, ...], local_name: str = "") -> None:
        self._table = table
        self._names = names
        self._local_name = local_name

    @property
    def _stamp(self) -> str:
        # Read per call: a shell may name its process's table after its channels exist.
        return self._local_name or self._table.local_name


class _UnaryUnaryFaults(_ClientFaults, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        await _apply_outgoing(self._table, self._names, _method_name(client_call_details))
        return await continuation(_with_from(client_call_details, self._stamp), request)


class _UnaryStreamFaults(_ClientFaults, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        await _apply_outgoing(self._table, self._names, _method_name(client_call_details))
        return await continuation(_with_from(client_call_details, self._stamp), request)


class _StreamStreamFaults(_ClientFaults, grpc.aio.StreamStreamClientInterceptor):
    """Checks the table when the stream opens, then again for every request and response."""

    async def intercept_stream_stream(
        self, continuation: Callable[..., Any], client_call_details: grpc.aio.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        method = _method_name(client_call_details)
        await _apply_outgoing(self._table, self._names, method)
        link = _StreamLink(self._table, self._names, method)
        call = await continuation(_with_from(client_call_details, self._stamp),
                                  link.requests(request_iterator))
        return link.responses(call)


class _StreamLink:
    """One client stream under the fault table. A drop found while sending ends the request
    side instead of raising there (an exception in a request iterator makes gRPC cancel the
    call locally, which surfaces as a CancelledError the caller would take for its own)."""

    def __init__(self, table: FaultTable, names: tuple[str, ...], method: str) -> None:
        self._table = table
        self._names = names
        self._method = method
        self._cut = False

    def _dropping(self) -> bool:
        fault = self._table.outgoing(*self._names)
        self._cut = self._cut or (fault is not None and fault.drop)
        return self._cut

    async def requests(self, requests: Any) -> AsyncIterator[Any]:
        async for request in requests:
            fault = self._table.outgoing(*self._names)
            if fault is not None and fault.delay_ms:
                await asyncio.sleep(fault.delay_ms / 1000)
            if self._dropping():
                return  # not delivered; the reader fails with UNAVAILABLE
            yield request

    async def responses(self, call: Any) -> AsyncIterator[Any]:
        try:
            async for response in call:
                if self._dropping():
                    break
                yield response
            if self._dropping():
                raise _dropped(self._method, self._names[0])
        except grpc.aio.AioRpcError:
            if self._dropping():
                raise _dropped(self._method, self._names[0]) from None
            raise
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if call.cancelled() and task is not None and not task.cancelling():
                # The call was cancelled, not the reader's task: report it as a failed call.
                raise grpc.aio.AioRpcError(
                    grpc.StatusCode.CANCELLED, grpc.aio.Metadata(), grpc.aio.Metadata(),
                    details=f"{self._method} cancelled") from None
            raise
        finally:
            call.cancel()  # no-op once finished; ends the RPC when the reader goes away


def close_stream_call(call: Any) -> None:
    """Cancel a client stream-stream call opened through `client_interceptors`, and end its
    writes.

    A call that had already ended (its server died) ignores `cancel()`, and gRPC's task feeding
    the intercepted request side would wait forever for another write, to be garbage-collected
    while pending (an asyncio error in the log). Ending the writes lets it finish.
    """
    call.cancel()
    task = asyncio.get_running_loop().create_task(_end_writes(call))
    _CLOSING.add(task)
    task.add_done_callback(_CLOSING.discard)


async def _end_writes(call: Any) -> None:
    try:
        await asyncio.wait_for(call.done_writing(), 1.0)
    except (Exception, asyncio.CancelledError):  # noqa: BLE001 - best effort on a dead call
        pass


_CLOSING: set[asyncio.Task[None]] = set()  # strong references until they finish


def _method_name(details: grpc.aio.ClientCallDetails) -> str:
    method = details.method
    return method.decode() if isinstance(method, bytes) else str(method)


def client_interceptors(
    peer: str, address: str = "", table: FaultTable | None = None, *, local_name: str = ""
) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors for a channel to `peer` (its node name) at `address`.

    Args:
        table: the fault table consulted (None: the process-wide `FAULTS`).
        local_name: the name stamped on this channel's calls ("" = the table's `local_name`).
    """
    names = tuple(n for n in (peer, address) if n)
    chosen = table if table is not None else FAULTS
    return [_UnaryUnaryFaults(chosen, names, local_name),
            _UnaryStreamFaults(chosen, names, local_name),
            _StreamStreamFaults(chosen, names, local_name)]


class _ServerFaults(grpc.aio.ServerInterceptor):
    def __init__(self, table: FaultTable) -> None:
        self._table = table

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        caller = ""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == FROM_METADATA_KEY:
                caller = value if isinstance(value, str) else value.decode()
        if caller and handler is not None and handler.stream_stream is not None:
            # A stream outlives any one fault: look the fault up for every message.
            return _stream_faults_handler(handler, self._table, caller,
                                          handler_call_details.method)
        fault = self._table.incoming(caller) if caller else None
        if fault is None or handler is None:
            return handler
        return _faulty_handler(handler, fault, caller, handler_call_details.method)


def _stream_faults_handler(handler: grpc.RpcMethodHandler, table: FaultTable, caller: str,
                           method: str) -> grpc.RpcMethodHandler:
    inner = handler.stream_stream

    async def check(context: grpc.aio.ServicerContext) -> None:
        fault = table.incoming(caller)
        if fault is None:
            return
        if fault.delay_ms:
            await asyncio.sleep(fault.delay_ms / 1000)
        if fault.drop:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, f"fault injection: call {method} from {caller} dropped"
            )

    async def requests(request_iterator: Any, context: grpc.aio.ServicerContext
                       ) -> AsyncIterator[Any]:
        async for request in request_iterator:
            await check(context)
            yield request

    async def stream_stream(request_iterator: Any, context: grpc.aio.ServicerContext
                            ) -> AsyncIterator[Any]:
        await check(context)
        async for response in inner(requests(request_iterator, context), context):
            fault = table.incoming(caller)
            if fault is not None and fault.drop:
                await check(context)  # aborts: a reply across a cut link is never delivered
            yield response

    return grpc.stream_stream_rpc_method_handler(
        stream_stream, handler.request_deserializer, handler.response_serializer
    )


def _faulty_handler(
    handler: grpc.RpcMethodHandler, fault: LinkFault, caller: str, method: str
) -> grpc.RpcMethodHandler:
    async def before(context: grpc.aio.ServicerContext) -> None:
        if fault.delay_ms:
            await asyncio.sleep(fault.delay_ms / 1000)
        if fault.drop:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, f"fault injection: call {method} from {caller} dropped"
            )

    if handler.unary_unary is not None:
        inner_uu = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await before(context)
            return await inner_uu(request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary, handler.request_deserializer, handler.response_serializer
        )
    if handler.unary_stream is not None:
        inner_us = handler.unary_stream

        async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await before(context)
            async for item in inner_us(request, context):
                yield item

        return grpc.unary_stream_rpc_method_handler(
            unary_stream, handler.request_deserializer, handler.response_serializer
        )
    return handler  # stream-stream handlers go through _stream_faults_handler


def server_interceptors(table: FaultTable | None = None) -> list[grpc.aio.ServerInterceptor]:
    return [_ServerFaults(table if table is not None else FAULTS)]


def link_fault(spec: dict[str, Any] | LinkFault) -> LinkFault:
    """A LinkFault from chaos's wire spec {"drop": bool, "delay_ms": int}."""
    if isinstance(spec, LinkFault):
        return spec
    return LinkFault(drop=bool(spec.get("drop", False)), delay_ms=int(spec.get("delay_ms", 0)))


_ACTOR_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_actor_logging(level: str | None) -> None:
    """Give an actor process one stream handler at `level` (once per process)."""
    if level is None:
        return
    root = logging.getLogger()
    root.setLevel(level.upper())
    if not any(getattr(h, "_rafka", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(_ACTOR_LOG_FORMAT))
        handler._rafka = True  # type: ignore[attr-defined]
        root.addHandler(handler)


class ActorChaosHooks:
    """The chaos hooks every Rafka actor exposes; they act on this process's `FAULTS`."""

    def set_link_faults(self, outgoing: dict[str, dict[str, Any]] | None = None,
                        incoming: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
        """Add link faults: peer name or address → {"drop": bool, "delay_ms": int}."""
        for peer, spec in sorted((outgoing or {}).items()):
            FAULTS.set_outgoing(peer, link_fault(spec))
        for peer, spec in sorted((incoming or {}).items()):
            FAULTS.set_incoming(peer, link_fault(spec))
        return self.faults()

    def isolate_from(self, peers: list[str]) -> dict[str, Any]:
        """Drop every call to and from each of `peers` (this side of a partition)."""
        FAULTS.isolate_from(sorted(peers))
        return self.faults()

    def heal(self) -> dict[str, Any]:
        """Clear every link fault of this process."""
        FAULTS.heal()
        return self.faults()

    def faults(self) -> dict[str, Any]:
        return FAULTS.describe()
