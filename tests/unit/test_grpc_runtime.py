"""gRPC core settings of proto.grpc_runtime: in force once Rafka is imported, without leaking.

Each case runs a fresh interpreter (gRPC core reads its settings once per process) that starts a
grpc.aio server and calls it, with gRPC's TCP tracer on: the I/O manager's TCP endpoint logs
from tcp_posix.cc, the EventEngine's from (posix_)endpoint.cc.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROGRAM = """
import asyncio, os, sys
if sys.argv[1] == "rafka-first":
    import clients  # noqa: F401
import grpc

async def main():
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            await channel.unary_unary("/none/None")(b"", timeout=5)
        except grpc.aio.AioRpcError:
            pass
    await server.stop(None)
    print("GRPC_EXPERIMENTS" in os.environ)

asyncio.run(main())
"""


def _run(mode: str, **env: str) -> tuple[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GRPC_")}
    environment.update(GRPC_TRACE="tcp", GRPC_VERBOSITY="debug", **env)
    done = subprocess.run([sys.executable, "-c", PROGRAM, mode], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip(), done.stderr


def test_importing_rafka_first_selects_the_io_manager_transport_and_leaves_no_variable() -> None:
    leaked, trace = _run("rafka-first")
    assert "tcp_posix.cc" in trace
    assert leaked == "False"  # Ray and child processes keep their own defaults


def test_a_value_the_user_set_wins() -> None:
    leaked, trace = _run("rafka-first",
                         GRPC_EXPERIMENTS="event_engine_client,event_engine_listener")
    assert "endpoint.cc" in trace
    assert "tcp_posix.cc" not in trace
    assert leaked == "True"
