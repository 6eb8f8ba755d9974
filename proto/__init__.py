"""Rafka's wire contract: gRPC services and messages, the RecordBatch v2 codec, error codes,
and the metadata records and image shared by controllers and brokers."""

from proto import grpc_runtime as _grpc_runtime  # noqa: F401  (sets gRPC core up before grpc loads)
