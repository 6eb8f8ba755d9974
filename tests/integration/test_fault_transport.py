"""Link faults through the real gRPC interceptors: drops, delays, one-way cuts, and healing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from proto.fault_transport import FaultTable, LinkFault, client_interceptors, server_interceptors

METHOD = "/rafka.test.Echo/Echo"


def _identity(data: bytes) -> bytes:
    return data


async def _echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return b"echo:" + request


async def _start_server(table: FaultTable, method: str = "Echo") -> tuple[grpc.aio.Server, str]:
    """A server of one `rafka.test.Echo` method (unary Echo or bidi Stream) behind `table`."""
    server = grpc.aio.server(interceptors=server_interceptors(table))
    handlers = {
        "Echo": grpc.unary_unary_rpc_method_handler(_echo, _identity, _identity),
        "Stream": grpc.stream_stream_rpc_method_handler(_echo_stream, _identity, _identity),
    }
    handler = grpc.method_handlers_generic_handler("rafka.test.Echo", {method: handlers[method]})
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


def test_a_channel_stamps_its_own_name_or_the_table_name_read_at_call_time() -> None:
    async def scenario() -> None:
        server_table = FaultTable("broker-1")
        server, address = await _start_server(server_table)
        process = FaultTable()  # a process whose shell names its table after channels exist
        named = grpc.aio.insecure_channel(address, interceptors=client_interceptors(
            "broker-1", address, process, local_name="consumer-x"))
        anonymous = grpc.aio.insecure_channel(
            address, interceptors=client_interceptors("broker-1", address, process))
        try:
            server_table.set_incoming("consumer-x", LinkFault(drop=True))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await _call(named, b"a")
            assert "from consumer-x dropped" in (info.value.details() or "")
            assert await _call(anonymous, b"b") == b"echo:b"  # no name: no match
            process.local_name = "consumer-x"
            with pytest.raises(grpc.aio.AioRpcError):
                await _call(anonymous, b"c")
        finally:
            await named.close()
            await anonymous.close()
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


# --- bidirectional streams (the followers' ReplicaFetch): faults apply per message -------------

STREAM_METHOD = "/rafka.test.Echo/Stream"


async def _echo_stream(requests: AsyncIterator[bytes],
                       context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    async for request in requests:
        if request.startswith(b"slow"):
            await asyncio.sleep(0.3)  # a long poll: the answer comes later
        yield b"echo:" + request


def _open_stream(channel: grpc.aio.Channel) -> Any:
    return channel.stream_stream(STREAM_METHOD, request_serializer=_identity,
                                 response_deserializer=_identity)()


async def _round_trip(call: Any, payload: bytes) -> bytes:
    async with asyncio.timeout(5):
        await call.write(payload)
        response = await call.read()
    assert response is not grpc.aio.EOF
    return response  # type: ignore[no-any-return]


async def _fails_unavailable(call: Any, payload: bytes) -> str:
    """The stream fails: either the write is refused (already finished) or the read raises."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async with asyncio.timeout(5):
            try:
                await call.write(payload)
            except asyncio.InvalidStateError:
                pass  # finished before the write; the reason comes from read()
            await call.read()
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value
    return info.value.details() or ""


def test_open_stream_is_cut_by_a_later_outgoing_drop_and_reopens_after_heal() -> None:
    async def scenario() -> None:
        client_table = FaultTable("broker-2")
        server, address = await _start_server(FaultTable("broker-1"), "Stream")
        channel = grpc.aio.insecure_channel(
            address, interceptors=client_interceptors("broker-1", address, client_table))
        try:
            call = _open_stream(channel)
            assert await _round_trip(call, b"a") == b"echo:a"
            client_table.set_outgoing("broker-1", LinkFault(drop=True))  # stream already open
            assert "to broker-1 dropped" in await _fails_unavailable(call, b"b")
            # While cut, a new stream fails at once too.
            assert "dropped" in await _fails_unavailable(_open_stream(channel), b"c")
            client_table.heal()
            assert await _round_trip(_open_stream(channel), b"d") == b"echo:d"
        finally:
            await channel.close()
            await server.stop(None)

    asyncio.run(scenario())


def test_open_stream_is_cut_by_a_later_incoming_drop_on_the_server() -> None:
    async def scenario() -> None:
        server_table = FaultTable("broker-1")
        server, address = await _start_server(server_table, "Stream")
        channel = grpc.aio.insecure_channel(
            address, interceptors=client_interceptors("broker-1", address, FaultTable("broker-2")))
        try:
            call = _open_stream(channel)
            assert await _round_trip(call, b"a") == b"echo:a"
            server_table.set_incoming("broker-3", LinkFault(drop=True))  # another peer: no effect
            assert await _round_trip(call, b"b") == b"echo:b"
            server_table.set_incoming("broker-2", LinkFault(drop=True))
            assert "from broker-2 dropped" in await _fails_unavailable(call, b"c")
            server_table.heal()
            assert await _round_trip(_open_stream(channel), b"d") == b"echo:d"
        finally:
            await channel.close()
            await server.stop(None)

    asyncio.run(scenario())


def test_a_response_in_flight_when_the_link_is_cut_is_not_delivered() -> None:
    async def scenario() -> None:
        client_table = FaultTable("broker-2")
        server, address = await _start_server(FaultTable("broker-1"), "Stream")
        channel = grpc.aio.insecure_channel(
            address, interceptors=client_interceptors("broker-1", address, client_table))
        try:
            call = _open_stream(channel)
            await call.write(b"slow")  # the server answers after 0.3 s
            client_table.set_outgoing("broker-1", LinkFault(drop=True))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async with asyncio.timeout(5):
                    await call.read()
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            await channel.close()
            await server.stop(None)

    asyncio.run(scenario())


def test_stream_delay_applies_to_every_message() -> None:
    async def scenario() -> None:
        client_table, server_table = FaultTable("broker-2"), FaultTable("broker-1")
        server, address = await _start_server(server_table, "Stream")
        channel = grpc.aio.insecure_channel(
            address, interceptors=client_interceptors("broker-1", address, client_table))
        loop = asyncio.get_running_loop()
        try:
            call = _open_stream(channel)
            assert await _round_trip(call, b"warm") == b"echo:warm"
            for table_side in ("client", "server"):
                if table_side == "client":
                    client_table.set_outgoing("broker-1", LinkFault(delay_ms=50))
                else:
                    server_table.set_incoming("broker-2", LinkFault(delay_ms=50))
                for i in range(2):  # each message of the same open stream is delayed
                    started = loop.time()
                    assert await _round_trip(call, b"%d" % i) == b"echo:%d" % i
                    assert loop.time() - started >= 0.045, table_side
                client_table.heal()
                server_table.heal()
        finally:
            await channel.close()
            await server.stop(None)

    asyncio.run(scenario())
