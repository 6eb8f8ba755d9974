from __future__ import annotations

import pytest

from proto.config import ConfigError
from proto.errors import ErrorCode
from proto.topic_config import TOPIC_CONFIG


def test_dotted_names_and_snake_case_kwargs_resolve_to_the_same_key() -> None:
    resolved = TOPIC_CONFIG.resolve({"retention.ms": "1000"}, {"min_insync_replicas": 2})
    assert resolved["retention.ms"] == 1000
    assert resolved["min.insync.replicas"] == 2
    assert resolved["segment.bytes"] == 1_073_741_824  # Kafka's default fills the rest


def test_unknown_key_names_the_closest_valid_key() -> None:
    with pytest.raises(ConfigError, match="did you mean 'retention.ms'"):
        TOPIC_CONFIG.resolve({"retention.msec": 5})


def test_config_error_carries_kafkas_invalid_config_code() -> None:
    with pytest.raises(ConfigError) as info:
        TOPIC_CONFIG.resolve({"min.insync.replicas": 0})
    assert info.value.code is ErrorCode.INVALID_CONFIG
    assert "at least 1" in str(info.value)


def test_same_key_spelled_both_ways_is_rejected() -> None:
    with pytest.raises(ConfigError, match="given both"):
        TOPIC_CONFIG.resolve({"retention.ms": 1}, {"retention_ms": 2})


@pytest.mark.parametrize(
    ("name", "raw", "parsed"),
    [
        ("unclean.leader.election.enable", "true", True),
        ("unclean.leader.election.enable", False, False),
        ("cleanup.policy", "compact,delete", ["compact", "delete"]),
        ("min.cleanable.dirty.ratio", "0.25", 0.25),
        ("segment.bytes", "1048576", 1_048_576),
    ],
)
def test_kafka_string_forms_are_parsed(name: str, raw: object, parsed: object) -> None:
    assert TOPIC_CONFIG.parse_value(name, raw) == parsed


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("segment.bytes", "lots"),
        ("segment.bytes", 2**31),
        ("unclean.leader.election.enable", "yes"),
        ("cleanup.policy", "shred"),
        ("message.timestamp.type", "WallClock"),
    ],
)
def test_bad_values_are_rejected_with_the_key_named(name: str, raw: object) -> None:
    with pytest.raises(ConfigError, match=name.replace(".", r"\.")):
        TOPIC_CONFIG.parse_value(name, raw)
