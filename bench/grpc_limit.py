"""This machine's raw gRPC streaming rate: the in-run limit the cluster benchmarks report.

A trivial `grpc.aio` server runs in another process (`python -m bench.grpc_limit --serve`): one
bidi-streaming method that answers each message with an 8-byte ack and does nothing else. The
client streams `total_bytes` of payload in `message_bytes` messages, with acks read concurrently
(no per-message round trip, like a producer with many requests in flight), and reports bytes/s
and messages/s. A benchmark converts bytes/s into records/s with its own bytes per record, so
the limit is "the same payload bytes through one gRPC stream, with no broker in between".

    from bench.grpc_limit import measure_stream_limit
    limit = measure_stream_limit(message_bytes=16_384, total_bytes=64 << 20)
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from proto.channel_options import GRPC_OPTIONS

METHOD = "/rafka.bench.Sink/Stream"


def _identity(b: bytes) -> bytes:
    return b


async def _serve() -> None:
    async def stream(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        async for _ in requests:
            yield b"\0" * 8

    handler = grpc.method_handlers_generic_handler("rafka.bench.Sink", {
        "Stream": grpc.stream_stream_rpc_method_handler(
            stream, request_deserializer=_identity, response_serializer=_identity),
    })
    server = grpc.aio.server(options=GRPC_OPTIONS)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF
    await server.stop(0)


async def _client(port: int, message_bytes: int, count: int) -> float:
    payload = b"x" * message_bytes
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=GRPC_OPTIONS) as channel:
        call = channel.stream_stream(METHOD, request_serializer=_identity,
                                     response_deserializer=_identity)

        async def warm() -> AsyncIterator[bytes]:
            for _ in range(min(200, count)):
                yield payload

        async for _ in call(warm()):
            pass

        async def requests() -> AsyncIterator[bytes]:
            for _ in range(count):
                yield payload

        started = time.perf_counter_ns()
        acks = 0
        async for _ in call(requests()):
            acks += 1
        elapsed = (time.perf_counter_ns() - started) / 1e9
        assert acks == count, (acks, count)
        return elapsed


def measure_stream_limit(message_bytes: int = 16_384, total_bytes: int = 64 << 20
                         ) -> dict[str, Any]:
    """Stream `total_bytes` in `message_bytes` messages to a server process; the rates."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.grpc_limit", "--serve"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        count = max(1, total_bytes // message_bytes)
        elapsed = asyncio.run(_client(port, message_bytes, count))
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=10)
    return {
        "what": "grpc.aio bidi stream, one client, server in another process, 8-byte acks",
        "message_bytes": message_bytes,
        "messages": count,
        "bytes_per_s": round(count * message_bytes / elapsed),
        "messages_per_s": round(count / elapsed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", action="store_true", help="run the trivial server")
    parser.add_argument("--message-bytes", type=int, default=16_384)
    parser.add_argument("--total-mb", type=int, default=64)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve())
        return
    print(measure_stream_limit(args.message_bytes, args.total_mb << 20))


if __name__ == "__main__":
    main()
