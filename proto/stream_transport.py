"""`OrderedStream`: request/response over one long-lived bidirectional gRPC call, in order.

Followers (ReplicaFetch) and consumers (FetchStream) send a broker one fetch at a time and wait
for its answer. On a stream that costs a message each way instead of a call, which in Python's
gRPC is several times cheaper. One request is outstanding at a time (a lock covers the write and
the read, so no answer is paired with the wrong request). A failure, a timeout or a cancellation
closes the stream, since its next message could be the abandoned request's answer: the owner
sees `broken` and opens a new one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc

from proto.fault_transport import close_stream_call


class StreamEndedError(Exception):
    """The server ended the stream, or it was closed, before answering."""


class OrderedStream:
    """See the module docstring. Use from one event loop.

    Args:
        stub: the stub the call was opened on (owners compare it to spot a moved peer).
        open_call: opens the stream-stream call, e.g. `lambda: stub.ReplicaFetch()`.
    """

    def __init__(self, stub: Any, open_call: Callable[[], Any]) -> None:
        self.stub = stub
        self._call = open_call()
        self._lock = asyncio.Lock()
        self.broken = False

    async def request(self, message: Any, timeout_s: float) -> Any:
        """Send one request and return its answer.

        Raises:
            grpc.aio.AioRpcError: the call failed.
            TimeoutError: no answer within `timeout_s`.
            StreamEndedError: the server ended the stream, or it was closed.
        """
        async with self._lock:
            if self.broken:
                raise StreamEndedError("the stream was closed")
            try:
                async with asyncio.timeout(timeout_s):
                    await self._call.write(message)
                    response = await self._call.read()
            except asyncio.InvalidStateError:  # written after the call ended
                self.close()
                raise StreamEndedError("the call has ended") from None
            except BaseException:
                self.close()
                raise
        if response is grpc.aio.EOF:
            self.close()
            raise StreamEndedError("the server ended the stream")
        return response

    def close(self) -> None:
        """End the call (idempotent)."""
        if not self.broken:
            self.broken = True
            close_stream_call(self._call)
