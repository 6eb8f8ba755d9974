"""Rafka's client API: Producer, Consumer and Admin (sync and asyncio).

    from clients import Producer, Consumer, Admin, NewTopic, TopicPartition

Names load lazily (PEP 562), so importing a core such as `clients.types` or
`clients.producer.accumulator` does not pull in the engine thread or the network code. grpc
itself is imported first thing, with the settings of `proto.grpc_runtime`.
"""

from __future__ import annotations

import importlib

from proto import grpc_runtime as _grpc_runtime  # noqa: F401  (sets gRPC core up before grpc loads)
from typing import Any

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # clients
    "Producer": "clients.producer.producer",
    "AsyncProducer": "clients.producer.producer",
    "Consumer": "clients.consumer.consumer",
    "AsyncConsumer": "clients.consumer.consumer",
    "ConsumerRecords": "clients.consumer.consumer",
    "ConsumerGroupMetadata": "clients.consumer.consumer",
    "RebalanceListener": "clients.consumer.consumer",
    "ConsumerActor": "clients.consumer_actor",
    "Admin": "clients.admin",
    "AsyncAdmin": "clients.admin",
    "ConfigResource": "clients.admin",
    "ConfigResourceType": "clients.admin",
    "ConfigEntry": "clients.admin",
    "ClusterDescription": "clients.admin",
    # types
    "NewTopic": "clients.types",
    "TopicPartition": "clients.types",
    "RecordMetadata": "clients.types",
    "Record": "clients.types",
    "ConsumerRecord": "clients.types",
    "OffsetAndMetadata": "clients.types",
    "OffsetAndTimestamp": "clients.types",
    "PartitionInfo": "clients.types",
    "TopicDescription": "clients.types",
    "QuorumInfo": "clients.types",
    "QuorumReplica": "clients.types",
    "GroupListing": "clients.types",
    "GroupDescription": "clients.types",
    "MemberDescription": "clients.types",
    "GroupPartitionLag": "clients.types",
    "TimestampType": "clients.types",
    "OFFSET_BEGINNING": "clients.types",
    "OFFSET_END": "clients.types",
    # config
    "ProducerConfig": "clients.config",
    "ConsumerConfig": "clients.config",
    "AdminConfig": "clients.config",
    # errors
    "RafkaError": "clients.errors",
    "ErrorCode": "clients.errors",
    "KafkaTimeoutError": "clients.errors",
    "ConfigError": "clients.errors",
    "BufferFullError": "clients.errors",
    "ClientClosedError": "clients.errors",
    "ClientError": "clients.errors",
    "CommitFailedError": "clients.errors",
    "ProducerFencedError": "clients.errors",
    "RecordTooLargeError": "clients.errors",
    "SerializationError": "clients.errors",
    "WakeupError": "clients.errors",
    # serdes
    "BytesSerde": "clients.serde",
    "StringSerde": "clients.serde",
    "JsonSerde": "clients.serde",
    # retry topics and DLQ
    "RetryingConsumer": "clients.retry_runtime",
    "RetryPolicy": "clients.retry_topics",
    "NonRetriableError": "clients.retry_topics",
    "Serializer": "clients.serde",
    "Deserializer": "clients.serde",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
