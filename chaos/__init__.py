"""Fault injection, workloads, history checkers and scenarios for Rafka clusters."""

from proto import grpc_runtime as _grpc_runtime  # noqa: F401  (sets gRPC core up before grpc loads)
