"""Rafka's wire contract: gRPC services and messages, the RecordBatch v2 codec, error codes,
and the metadata records and image shared by controllers and brokers."""
