"""Link faults through the real gRPC interceptors: drops, delays, one-way cuts, and healing."""

from __future__ import annotations

import asyncio
import grpc
import pytest

from proto.fault_transport import FaultTable, LinkFault, client_interceptors, server_interceptors

METHOD = "/rafka.test.Echo/Echo"


def _identity(data: bytes) -> bytes:
    return data


async def _echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return b"echo:" + request


async def _start_server(table: FaultTable) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server(interceptors=server_interceptors(table))
    handler = grpc.method_handlers_generic_handler(
        "rafka.test.Echo",
        {"Echo": grpc.unary_unary_rpc_method_handler(_echo, _identity, _identity)},
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


async def _call(channel: grpc.aio.Channel, payload: bytes) -> bytes:
    call = channel.unary_unary(METHOD, request_serializer=_identity,
                               response_deserializer=_identity)
    return await call(payload, timeout=5)


def test_calls_pass_without_faults_and_fail_when_the_link_is_cut() -> None:
    async def scenario() -> None:
        server_table, client_table = FaultTable("broker-1"), FaultTable("broker-2")
        server, address = await _start_server(server_table)
        channel = grpc.aio.insecure_channel(
            address, interceptors=client_interceptors("broker-1", address, client_table)
        )
        try:
            assert await _call(channel, b"a") == b"echo:a"

            # Outgoing cut on the caller's side.
            client_table.set_outgoing("broker-1", LinkFault(drop=True))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await _call(channel, b"b")
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            client_table.heal()
            assert await _call(channel, b"c") == b"echo:c"

            # Incoming cut on the server's side, matched by the caller's stamped name.
            server_table.set_incoming("broker-2", LinkFault(drop=True))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await _call(channel, b"d")
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "from broker-2 dropped" in (info.value.details() or "")

            # A cut from another peer does not touch this link.
            server_table.heal()
            server_table.set_incoming("broker-3", LinkFault(drop=True))
            assert await _call(channel, b"e") == b"echo:e"
        finally:
            await channel.close()
            await server.stop(None)

    asyncio.run(scenario())


def test_outgoing_fault_matches_by_address_too() -> None:
    async def scenario() -> None:
        server, address = await _start_server(FaultTable("broker-1"))
        table = FaultTable("client")
        channel = grpc.aio.insecure_channel(
            address, interceptors=client_interceptors("", address, table)
        )
        try:
            table.set_outgoing(address, LinkFault(drop=True))
            with pytest.raises(grpc.aio.AioRpcError):
                await _call(channel, b"x")
        finally:
            await channel.close()
            await server.stop(None)

    asyncio.run(scenario())


def test_delayed_link_still_delivers() -> None:
    async def scenario() -> None:
        server_table = FaultTable("broker-1")
        server, address = await _start_server(server_table)
        channel = grpc.aio.insecure_channel(
            address, interceptors=client_interceptors("broker-1", address, FaultTable("b2"))
        )
        try:
            server_table.set_incoming("b2", LinkFault(delay_ms=50))
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert await _call(channel, b"slow") == b"echo:slow"
            # The delay happened (a lower bound, not a timing assertion on speed).
            assert loop.time() - started >= 0.045
        finally:
            await channel.close()
            await server.stop(None)

    asyncio.run(scenario())
