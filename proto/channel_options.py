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


def reconnect_options(initial_ms: int, max_ms: int) -> tuple[tuple[str, int], ...]:
    """Channel options for reconnecting to a peer that went away (Kafka's
    `reconnect.backoff.ms` / `reconnect.backoff.max.ms`).

    gRPC's own backoff starts at 1 s and grows to 120 s, and a channel fails calls at once
    while it waits: a broker restarted after a few seconds' outage would stay unreachable from
    that channel for seconds more, after it has become a leader again. (gRPC's "min
    reconnect backoff" is the least time given to one connection attempt, 20 s by default: a
    refused connection fails at once, a hung handshake is given up after `max_ms`.)
    """
    initial = max(1, initial_ms)
    cap = max(initial, max_ms)
    return (
        ("grpc.initial_reconnect_backoff_ms", initial),
        ("grpc.min_reconnect_backoff_ms", cap),
        ("grpc.max_reconnect_backoff_ms", cap),
    )
