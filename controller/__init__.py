"""The controller quorum: Raft, the metadata state machine and the active-controller logic."""

from proto import grpc_runtime as _grpc_runtime  # noqa: F401  (sets gRPC core up before grpc loads)
