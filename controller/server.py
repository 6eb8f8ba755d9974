"""`ControllerServer`, the composition of one controller process (Ray-free).

The implementation lives in `controller/server_runtime.py`: it imports `grpc` and `asyncio`, and
the layering rule (tests/unit/test_layering.py) lets only shell modules (`*_runtime.py`, ...) do
that. This module is the stable import path for the actor, the launcher and tests.
"""

from __future__ import annotations

from controller.server_runtime import ControllerServer

__all__ = ["ControllerServer"]
