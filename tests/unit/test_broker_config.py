"""BROKER_CONFIG / BrokerConfig, and the controller's dynamic subset built from it."""

from __future__ import annotations

import pytest

from controller import config_control
from proto.broker_config import (
    BROKER_CONFIG,
    DYNAMIC_BROKER_CONFIG,
    DYNAMIC_BROKER_CONFIG_NAMES,
    TOPIC_CONFIG_SYNONYMS,
    BrokerConfig,
)
from proto.config import ConfigError
from proto.topic_config import TOPIC_CONFIG


def test_defaults_are_kafkas_or_documented_local_ones() -> None:
    config = BrokerConfig.resolve()
    assert config == BrokerConfig()
    assert config.broker_heartbeat_interval_ms == 500
    assert config.broker_session_timeout_ms == 3000
    assert config.replica_lag_time_max_ms == 10_000
    assert config.replica_fetch_wait_max_ms == 500
    assert config.message_max_bytes == 1_048_588
    assert config.auto_create_topics_enable is True
    assert config.log_cleanup_policy == ("delete",)
    assert config.get("log.cleanup.policy") == ["delete"]


def test_resolve_takes_dotted_names_and_snake_case() -> None:
    config = BrokerConfig.resolve({"num.partitions": "3"}, default_replication_factor=2)
    assert (config.num_partitions, config.default_replication_factor) == (3, 2)
    assert config.to_dict()["num.partitions"] == 3


def test_unknown_key_and_bad_values_raise() -> None:
    with pytest.raises(ConfigError, match="num.partitions"):
        BrokerConfig.resolve({"num.partition": 3})
    with pytest.raises(ConfigError):
        BrokerConfig.resolve(num_partitions=0)
    with pytest.raises(ConfigError, match="must exceed"):
        BrokerConfig.resolve(broker_heartbeat_interval_ms=3000)


def test_controller_dynamic_table_is_the_broker_subset() -> None:
    assert config_control.BROKER_CONFIG is DYNAMIC_BROKER_CONFIG
    assert DYNAMIC_BROKER_CONFIG.names == sorted(DYNAMIC_BROKER_CONFIG_NAMES)
    for name in DYNAMIC_BROKER_CONFIG.names:
        assert DYNAMIC_BROKER_CONFIG.key(name) is BROKER_CONFIG.key(name)
    with pytest.raises(ConfigError):
        DYNAMIC_BROKER_CONFIG.key("broker.heartbeat.interval.ms")


def test_topic_synonyms_name_real_keys() -> None:
    for topic_name, broker_name in TOPIC_CONFIG_SYNONYMS.items():
        assert topic_name in TOPIC_CONFIG and broker_name in BROKER_CONFIG
