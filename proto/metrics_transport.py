"""`MetricsServerInterceptor`: request rate, latency and errors per API on a `grpc.aio` server.

The request name is the RPC method name (`Produce`, `Fetch`, `JoinGroup`, `Vote`...), the same
as Kafka's `request` tag. Each call increments `kafka_network_requestmetrics_requests` and
observes `kafka_network_requestmetrics_totaltimems` (receipt of the request to the end of the
handler); an error increments `kafka_network_requestmetrics_errors` with the Kafka error name
when the response carries a top-level `error_code`, or the gRPC status name when the handler
failed or aborted. Per-partition errors of Produce/Fetch are counted by the broker's accounting
(`cluster.broker_metrics`), where the results are at hand.

The wrapped handler is built once per method and reused: a call costs two clock reads, one
counter add and one histogram observation.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from proto import metrics as m
from proto.errors import ErrorCode

_perf_counter = time.perf_counter


def _error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)


def _has_error_code(response: Any) -> bool:
    descriptor = getattr(type(response), "DESCRIPTOR", None)
    return descriptor is not None and "error_code" in descriptor.fields_by_name


class _MethodMetrics:
    __slots__ = ("node", "request", "requests", "latency", "has_error_code")

    def __init__(self, node: str, request: str) -> None:
        self.node = node
        self.request = request
        self.requests = m.REQUESTS.labels(node=node, request=request)
        self.latency = m.REQUEST_TOTAL_TIME_MS.labels(node=node, request=request)
        self.has_error_code: bool | None = None  # learnt from the first response

    def done(self, started: float, response: Any) -> None:
        self.requests.inc()
        self.latency.observe((_perf_counter() - started) * 1000.0)
        if self.has_error_code is None:
            self.has_error_code = _has_error_code(response)
        if self.has_error_code:  # a missing field would cost an AttributeError per call
            code = response.error_code
            if code:
                self.error(_error_name(code))

    def failed(self, started: float, context: Any, exc: BaseException) -> None:
        self.requests.inc()
        self.latency.observe((_perf_counter() - started) * 1000.0)
        status = None
        try:
            status = context.code()
        except Exception:  # not every context knows its code before the call ends
            status = None
        if isinstance(status, grpc.StatusCode):
            self.error(status.name)
        elif isinstance(exc, grpc.aio.AbortError):
            self.error("ABORTED")
        else:
            self.error(grpc.StatusCode.UNKNOWN.name)

    def error(self, name: str) -> None:
        m.REQUEST_ERRORS.inc(1, {"node": self.node, "request": self.request, "error": name})


def method_metrics(node: str, request: str) -> _MethodMetrics:
    """Counters for requests a handler receives inside a stream (one call, many requests),
    which the interceptor, counting calls, does not see."""
    return _MethodMetrics(node, request)


class MetricsServerInterceptor(grpc.aio.ServerInterceptor):
    """Counts and times every call on the server it is installed on.

    Args:
        node: this process's node name (`broker-1`, `controller-2`), the `node` tag.
    """

    def __init__(self, node: str) -> None:
        self.node = node
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        request = method.rsplit("/", 1)[-1]
        wrapped = _timed_handler(handler, _MethodMetrics(self.node, request))
        self._wrapped[method] = (handler, wrapped)
        return wrapped


def _timed_handler(handler: grpc.RpcMethodHandler,
                   metrics: _MethodMetrics) -> grpc.RpcMethodHandler:
    if handler.unary_unary is not None:
        inner_uu = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = _perf_counter()
            try:
                response = await inner_uu(request, context)
            except BaseException as exc:
                metrics.failed(started, context, exc)
                raise
            metrics.done(started, response)
            return response

        return grpc.unary_unary_rpc_method_handler(
            unary_unary, handler.request_deserializer, handler.response_serializer)
    if handler.unary_stream is not None:
        inner_us = handler.unary_stream

        async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = _perf_counter()
            try:
                async for item in inner_us(request, context):
                    yield item
            except BaseException as exc:
                metrics.failed(started, context, exc)
                raise
            metrics.done(started, None)

        return grpc.unary_stream_rpc_method_handler(
            unary_stream, handler.request_deserializer, handler.response_serializer)
    return handler  # streaming requests are not used by Rafka's services


def server_interceptors(node: str) -> list[grpc.aio.ServerInterceptor]:
    """The metrics interceptors for a server whose process is `node`."""
    return [MetricsServerInterceptor(node)]
