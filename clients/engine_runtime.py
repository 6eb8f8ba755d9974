"""The sync clients' I/O thread: a daemon thread running its own asyncio loop.

A sync client (`Producer`, `Consumer`, `Admin`) builds its async engine on this loop and calls
into it with `submit`/`call`; the user never pumps anything (CLIENT_API.md §5.1 rule 3).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from clients.errors import ClientClosedError, KafkaTimeoutError

__all__ = ["EngineThread"]

T = TypeVar("T")


class EngineThread:
    """A client-owned daemon thread with its own event loop.

    Args:
        name: the thread's name (shows in stack dumps).
    """

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._started.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        try:
            self.loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    @property
    def thread_id(self) -> int | None:
        return self._thread.ident

    def in_thread(self) -> bool:
        """True when called from the engine thread itself."""
        return threading.get_ident() == self._thread.ident

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run a coroutine on the engine loop.

        Raises:
            ClientClosedError: the engine was closed.
        """
        if self._closed:
            coro.close()
            raise ClientClosedError("client engine is closed")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        """Run a coroutine on the engine loop and wait for its result.

        Args:
            timeout: seconds to wait (None: forever); on expiry the coroutine is cancelled.

        Raises:
            KafkaTimeoutError: it did not finish within `timeout`.
            ClientClosedError: the engine was closed.
        """
        assert not self.in_thread(), "EngineThread.call from the engine thread would deadlock"
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            if future.done():  # the coroutine's own TimeoutError (KafkaTimeoutError)
                raise
            future.cancel()
            raise KafkaTimeoutError(f"operation did not finish within {timeout} s") from None

    def call_soon(self, callback: Any, *args: Any) -> None:
        """Schedule a plain callback on the loop from any thread."""
        if not self._closed:
            self.loop.call_soon_threadsafe(callback, *args)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the loop (cancelling what still runs) and join the thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.in_thread():
            self.loop.stop()
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
