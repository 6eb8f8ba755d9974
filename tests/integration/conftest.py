"""Fixtures for integration tests with real Ray actors and gRPC on 127.0.0.1 (STYLE §9.4).

- `ray_session`: ONE private local Ray instance per test session (`address="local"`: never a
  `ray start` head someone else runs on this machine), shut down at the end. Starting Ray costs
  seconds, so every test that needs actors shares it.
- `local_cluster`: a factory, `local_cluster(brokers=3, controllers=3, ...) -> LocalCluster`
  (LocalCluster's kwargs and defaults; started: controller leader elected, brokers unfenced), each in its own namespace `rafka-test-<random>`; the finalizer closes every
  cluster it made (graceful stop, then ray.kill), also when the test failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import ray

from cluster.launcher import RAY_SYSTEM_CONFIG, LocalCluster, unique_name


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    if ray.is_initialized():  # somebody else's session-wide Ray: share it, leave it running
        yield
        return
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        namespace="rafka-tests",
        logging_level=logging.WARNING,
        _system_config=RAY_SYSTEM_CONFIG,
    )
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture
def local_cluster(ray_session: None) -> Iterator[Callable[..., LocalCluster]]:
    made: list[LocalCluster] = []

    def make(**kwargs: Any) -> LocalCluster:
        kwargs.setdefault("name", unique_name("test"))
        cluster = LocalCluster(**kwargs)
        made.append(cluster)
        return cluster.start()

    yield make
    for cluster in reversed(made):
        cluster.close()
