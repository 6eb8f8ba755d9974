"""`ProduceStream`: one long-lived ProduceStream call from a producer to one broker.

A unary Produce call costs more in Python's gRPC than the append it carries (a call object,
the interceptor chain, a task, status and metadata each way), and at a thousand small requests
a second it, not the log, bounds a broker. On one stream each request is a message: it is
written with a fresh correlation id, and a reader task completes the waiting request when the
response with that id arrives. Responses may come back out of order (an acks=all request waits
for the ISR; one for another partition may not).

Failure: when the call ends (broker gone, link cut), every waiting request fails with the call's
error and the stream is `broken`; the producer opens a new one on its next request. A request
that times out fails alone (its late answer is dropped), as a unary call's deadline would; the
producer retries it, and the idempotent broker recognises a duplicate.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from proto import broker_pb2
from proto.fault_transport import close_stream_call


class StreamClosedError(Exception):
    """The stream ended before a request was answered."""


class ProduceStream:
    """See the module docstring. Use from the producer's event loop only."""

    def __init__(self, stub: Any, metadata: tuple[tuple[str, str], ...]) -> None:
        self.stub = stub
        self._call = stub.ProduceStream(metadata=metadata)
        self._waiting: dict[int, asyncio.Future[broker_pb2.ProduceResponse]] = {}
        self._next_id = 0
        self._write_lock = asyncio.Lock()  # gRPC allows one write in progress per call
        self._error: BaseException | None = None
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @property
    def broken(self) -> bool:
        return self._error is not None

    async def produce(self, request: broker_pb2.ProduceRequest,
                      timeout_s: float) -> broker_pb2.ProduceResponse:
        """Send one request and wait for its response.

        Raises:
            grpc.aio.AioRpcError: the call failed (the broker's or the transport's status).
            StreamClosedError: the broker ended the stream (or another error ended it).
            TimeoutError: no answer within `timeout_s` (the stream stays usable).
        """
        if self._error is not None:
            raise self._error
        correlation_id = self._next_id
        self._next_id += 1
        request.correlation_id = correlation_id
        answer: asyncio.Future[broker_pb2.ProduceResponse] = (
            asyncio.get_running_loop().create_future())
        self._waiting[correlation_id] = answer
        try:
            async with asyncio.timeout(timeout_s):
                async with self._write_lock:
                    await self._call.write(request)
                return await answer
        except asyncio.InvalidStateError:  # written after the call ended
            raise self._error or StreamClosedError("the ProduceStream call has ended") from None
        finally:
            self._waiting.pop(correlation_id, None)

    async def _read(self) -> None:
        error: BaseException
        try:
            while True:
                response = await self._call.read()
                if response is grpc.aio.EOF:
                    error = StreamClosedError("the broker ended the ProduceStream call")
                    break
                answer = self._waiting.pop(response.correlation_id, None)
                if answer is not None and not answer.done():
                    answer.set_result(response)
        except Exception as exc:  # noqa: BLE001 - AioRpcError mostly; any end fails the waiters
            error = exc
        except asyncio.CancelledError:
            error = StreamClosedError("the ProduceStream call was closed")
        self._error = error
        for answer in self._waiting.values():
            if not answer.done():
                answer.set_exception(error)
        self._waiting.clear()

    def close(self) -> None:
        """End the call; waiting requests fail with StreamClosedError."""
        if self._error is None:
            self._error = StreamClosedError("the ProduceStream call was closed")
        close_stream_call(self._call)
        self._reader.cancel()
