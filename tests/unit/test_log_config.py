"""LogConfig: Kafka's names and defaults, validated like topic configs."""

from __future__ import annotations

import pytest

from cluster.log.config import LogConfig
from proto.config import ConfigError


def test_defaults_are_kafkas() -> None:
    config = LogConfig()
    assert config.segment_bytes == 1_073_741_824 and config.segment_ms == 604_800_000
    assert config.retention_ms == 604_800_000 and config.retention_bytes == -1
    assert config.index_interval_bytes == 4096 and config.max_message_bytes == 1_048_588
    assert config.flush_messages is None and config.flush_ms is None
    assert config.delete and not config.compact


def test_from_kafka_configs_parses_dotted_names_and_string_values() -> None:
    config = LogConfig.from_kafka_configs({
        "segment.bytes": "1048576", "cleanup.policy": "compact,delete", "flush.messages": 10,
        "min.insync.replicas": 2,  # a topic config the log ignores
    })
    assert config.segment_bytes == 1_048_576
    assert config.cleanup_policy == "delete,compact" and config.compact and config.delete
    assert config.flush_messages == 10


@pytest.mark.parametrize("configs", [
    {"segment.bytes": "big"}, {"retention.ms": -5}, {"segmnt.bytes": 1},
    {"cleanup.policy": "shred"},
])
def test_from_kafka_configs_rejects_bad_input(configs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        LogConfig.from_kafka_configs(configs)


def test_direct_construction_validates_cleanup_policy() -> None:
    with pytest.raises(ConfigError):
        LogConfig(cleanup_policy="nope")
