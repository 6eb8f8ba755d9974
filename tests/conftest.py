"""Shared test fixtures: seeds for randomized tests.

Every randomized test takes the `seed` fixture, which logs `seed=N` first and can be pinned with
`--seed N` or the RAFKA_SEED environment variable to replay a failure.
"""

from __future__ import annotations

import logging
import os
import random

import pytest

from proto import grpc_runtime as _grpc_runtime  # noqa: F401  (sets gRPC core up before grpc loads)

log = logging.getLogger("rafka.tests")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--seed", type=int, default=None, help="replay randomized tests with a seed")


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    pinned = request.config.getoption("--seed")
    if pinned is None and os.environ.get("RAFKA_SEED"):
        pinned = int(os.environ["RAFKA_SEED"])
    value = pinned if pinned is not None else random.SystemRandom().randrange(2**32)
    # Printed so that it shows in the captured output of a failing test.
    print(f"seed={value} (replay: RAFKA_SEED={value} pytest {request.node.nodeid})")
    log.info("seed=%d", value)
    return value
