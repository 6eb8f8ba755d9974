"""The broker: log storage, replication, produce/fetch, groups; and the local-cluster launcher."""

from proto import grpc_runtime as _grpc_runtime  # noqa: F401  (sets gRPC core up before grpc loads)
