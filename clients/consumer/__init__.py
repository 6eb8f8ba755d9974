"""The consumer: manual assignment or group membership, positions, commits, prefetching fetcher.

The façade names load lazily, so importing a core (`clients.consumer.fetcher`) does not pull in
grpc and the engine thread.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AsyncConsumer",
    "Consumer",
    "ConsumerGroupMetadata",
    "ConsumerRecords",
    "NoOffsetForPartitionError",
    "RebalanceListener",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from clients.consumer import consumer

        return getattr(consumer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
