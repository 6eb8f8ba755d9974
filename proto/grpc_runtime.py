"""gRPC core settings, applied when grpc is first imported in a Rafka process.

grpcio's default EventEngine does socket I/O on its own thread pool, so a message reaches the
asyncio loop after more thread hand-offs, each a wake-up and a context switch. On the 2-core
machine Rafka is measured on, a 120-byte round trip on a `grpc.aio` stream cost about 220 µs of
CPU on each side. gRPC core's long-standing I/O manager (EventEngine client and listener turned
off through `GRPC_EXPERIMENTS`) delivers the same messages with fewer hand-offs: about 120-150
µs per side, and the round trip falls from ~350 to ~200 µs. A partition leader handles about
eight messages per record at linger.ms=0, so this is most of its CPU.

grpc reads `GRPC_EXPERIMENTS` once, when it is first imported, so every Rafka package imports
this module before anything imports grpc. The variable is set only around that import: Ray's own
gRPC and the processes Ray starts keep their defaults. A value the user already set wins, and
nothing is changed if grpc was imported before Rafka.
"""

from __future__ import annotations

import os
import sys

GRPC_EXPERIMENTS = "-event_engine_client,-event_engine_listener"


def _import_grpc_with_core_settings() -> None:
    if "grpc" in sys.modules or "GRPC_EXPERIMENTS" in os.environ:
        return
    os.environ["GRPC_EXPERIMENTS"] = GRPC_EXPERIMENTS
    try:
        import grpc  # noqa: F401  (gRPC core reads its experiments here)
    finally:
        del os.environ["GRPC_EXPERIMENTS"]


_import_grpc_with_core_settings()
