"""Benchmarks: `python -m bench.<name>`, each ending with one JSON line."""

from proto import grpc_runtime as _grpc_runtime  # noqa: F401  (sets gRPC core up before grpc loads)
