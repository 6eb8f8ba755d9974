"""The asyncio clients in one place: `from clients.aio import AsyncProducer, AsyncConsumer,
AsyncAdmin`. Each has the same method names as its sync twin, as coroutines (CLIENT_API.md §5.2).
"""

from __future__ import annotations

from clients.admin import AsyncAdmin
from clients.consumer.consumer import AsyncConsumer
from clients.producer.producer import AsyncProducer

__all__ = ["AsyncAdmin", "AsyncConsumer", "AsyncProducer"]
