"""`MetricsServerInterceptor` on a real in-process `grpc.aio` server (loopback, no Ray)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc

from proto import broker_pb2 as pb
from proto import metrics as m
from proto.channel_options import GRPC_OPTIONS
from proto.errors import ErrorCode
from proto.fault_transport import server_interceptors as fault_interceptors
from proto.metrics_transport import MetricsServerInterceptor, server_interceptors

SERVICE = "rafka.test.Probe"


async def _ok(request: pb.FetchRequest, context: grpc.aio.ServicerContext) -> pb.FetchResponse:
    return pb.FetchResponse()


async def _kafka_error(request: pb.FetchRequest,
                       context: grpc.aio.ServicerContext) -> pb.FetchResponse:
    return pb.FetchResponse(error_code=int(ErrorCode.NOT_LEADER_OR_FOLLOWER))


async def _abort(request: pb.FetchRequest, context: grpc.aio.ServicerContext) -> pb.FetchResponse:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad")
    raise AssertionError("unreachable")


async def _crash(request: pb.FetchRequest, context: grpc.aio.ServicerContext) -> pb.FetchResponse:
    raise RuntimeError("handler bug")


async def _stream(request: pb.FetchRequest, context: grpc.aio.ServicerContext) -> Any:
    for _ in range(3):
        yield pb.FetchResponse()


def _handlers() -> grpc.GenericRpcHandler:
    def unary(fn: Any) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(
            fn, pb.FetchRequest.FromString, pb.FetchResponse.SerializeToString)

    return grpc.method_handlers_generic_handler(SERVICE, {
        "Ok": unary(_ok), "KafkaError": unary(_kafka_error), "Abort": unary(_abort),
        "Crash": unary(_crash),
        "Stream": grpc.unary_stream_rpc_method_handler(
            _stream, pb.FetchRequest.FromString, pb.FetchResponse.SerializeToString),
    })


async def _serve_and_call(node: str) -> dict[str, Any]:
    server = grpc.aio.server(options=GRPC_OPTIONS,
                             interceptors=fault_interceptors() + server_interceptors(node))
    server.add_generic_rpc_handlers((_handlers(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    codes: dict[str, Any] = {}
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=GRPC_OPTIONS) as ch:
            def call(name: str) -> Any:
                return ch.unary_unary(f"/{SERVICE}/{name}",
                                      request_serializer=pb.FetchRequest.SerializeToString,
                                      response_deserializer=pb.FetchResponse.FromString)

            for _ in range(3):
                await call("Ok")(pb.FetchRequest(), timeout=5)
            await call("KafkaError")(pb.FetchRequest(), timeout=5)
            for name in ("Abort", "Crash"):
                try:
                    await call(name)(pb.FetchRequest(), timeout=5)
                except grpc.aio.AioRpcError as exc:
                    codes[name] = exc.code()
            stream = ch.unary_stream(f"/{SERVICE}/Stream",
                                     request_serializer=pb.FetchRequest.SerializeToString,
                                     response_deserializer=pb.FetchResponse.FromString)
            codes["Stream"] = len([r async for r in stream(pb.FetchRequest(), timeout=5)])
    finally:
        await server.stop(0)
    return codes


def test_requests_latency_and_errors_are_counted_per_method() -> None:
    node = f"broker-{uuid.uuid4().hex[:6]}"
    codes = asyncio.run(_serve_and_call(node))
    assert codes == {"Abort": grpc.StatusCode.INVALID_ARGUMENT,
                     "Crash": grpc.StatusCode.UNKNOWN, "Stream": 3}
    value = m.REGISTRY.value
    requests = "kafka_network_requestmetrics_requests"
    assert value(requests, node=node, request="Ok") == 3
    for name in ("KafkaError", "Abort", "Crash", "Stream"):
        assert value(requests, node=node, request=name) == 1
    latency = value("kafka_network_requestmetrics_totaltimems", node=node, request="Ok")
    assert latency.count == 3 and latency.sum >= 0
    errors = "kafka_network_requestmetrics_errors"
    assert value(errors, node=node, request="KafkaError", error="NOT_LEADER_OR_FOLLOWER") == 1
    assert value(errors, node=node, request="Abort", error="INVALID_ARGUMENT") == 1
    assert value(errors, node=node, request="Crash", error="UNKNOWN") == 1
    assert value(errors, node=node, request="Ok", error="UNKNOWN") is None


def test_the_wrapped_handler_is_built_once_per_method() -> None:
    interceptor = MetricsServerInterceptor("broker-x")
    handler = grpc.unary_unary_rpc_method_handler(_ok)

    class _Details:
        method = f"/{SERVICE}/Ok"
        invocation_metadata = ()

    async def intercept() -> tuple[Any, Any]:
        async def continuation(_: Any) -> Any:
            return handler

        first = await interceptor.intercept_service(continuation, _Details())
        second = await interceptor.intercept_service(continuation, _Details())
        return first, second

    first, second = asyncio.run(intercept())
    assert first is second and first is not handler
