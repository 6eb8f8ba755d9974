"""gRPC options every Rafka channel and server uses.

gRPC caps messages at 4 MiB by default, but a Kafka fetch may return up to `fetch.max.bytes`
(50 MiB) and a metadata snapshot travels whole, so both directions are raised to 64 MiB.
Keepalives let a peer notice a dead connection without waiting for a request to time out.
"""

from __future__ import annotations

MAX_MESSAGE_BYTES = 64 * 1024 * 1024

GRPC_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
)
