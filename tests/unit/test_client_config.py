"""Client configuration: Kafka's names and defaults, both spellings, and cross-field rules."""

from __future__ import annotations

import dataclasses

import pytest

from clients.config import AdminConfig, ConfigError, ConsumerConfig, ProducerConfig


def test_producer_defaults_are_kafkas() -> None:
    config = ProducerConfig.resolve()
    assert config.acks == -1
    assert config.enable_idempotence is True
    assert config.linger_ms == 5  # Kafka 4.0 (KIP-1030); 3.x used 0
    assert config.batch_size == 16384
    assert config.buffer_memory == 33554432
    assert config.max_block_ms == 60000
    assert config.max_in_flight_requests_per_connection == 5
    assert config.retries == 2**31 - 1
    assert (config.retry_backoff_ms, config.retry_backoff_max_ms) == (100, 1000)
    assert config.delivery_timeout_ms == 120000
    assert config.request_timeout_ms == 30000
    assert config.max_request_size == 1048576
    assert config.compression_type == "none"
    assert config.partitioner_adaptive_partitioning_enable is True
    assert config.partitioner_availability_timeout_ms == 0
    assert config.partitioner_ignore_keys is False
    assert config.transactional_id is None


def test_consumer_defaults_are_kafkas() -> None:
    config = ConsumerConfig.resolve(group_id="g")
    assert config.session_timeout_ms == 45000
    assert config.heartbeat_interval_ms == 3000
    assert config.max_poll_records == 500
    assert config.max_poll_interval_ms == 300000
    assert config.fetch_min_bytes == 1 and config.fetch_max_wait_ms == 500
    assert config.fetch_max_bytes == 52428800
    assert config.max_partition_fetch_bytes == 1048576
    assert config.enable_auto_commit is True and config.auto_commit_interval_ms == 5000
    assert config.auto_offset_reset == "latest"
    assert config.isolation_level == "read_uncommitted"
    assert config.partition_assignment_strategy == ("range", "cooperative-sticky")
    assert config.default_api_timeout_ms == 60000
    assert config.check_crcs is True


def test_resolved_config_is_frozen() -> None:
    config = ProducerConfig.resolve()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.linger_ms = 1  # type: ignore[misc]


def test_dotted_dict_and_snake_case_kwargs_both_work() -> None:
    a = ProducerConfig.resolve({"linger.ms": "7", "bootstrap.servers": "a:1,b:2"})
    b = ProducerConfig.resolve(linger_ms=7, bootstrap_servers=["a:1", "b:2"])
    assert a == b
    assert a.bootstrap_servers == ("a:1", "b:2")


def test_kwargs_override_other_keys_but_one_key_twice_is_an_error() -> None:
    config = ProducerConfig.resolve({"linger.ms": 7}, batch_size=1000)
    assert (config.linger_ms, config.batch_size) == (7, 1000)
    with pytest.raises(ConfigError, match="linger.ms"):
        ProducerConfig.resolve({"linger.ms": 7}, linger_ms=8)


def test_unknown_key_names_the_closest_valid_one() -> None:
    with pytest.raises(ConfigError, match="did you mean 'linger.ms'"):
        ProducerConfig.resolve({"linger.msx": 1})
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        ProducerConfig.resolve(batch_sise=1)
    with pytest.raises(ConfigError, match="group"):
        ProducerConfig.resolve({"group.id": "g"})


def test_invalid_values_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        ProducerConfig.resolve(acks="2")
    with pytest.raises(ConfigError):
        ProducerConfig.resolve(linger_ms=-1)
    with pytest.raises(ConfigError):
        ProducerConfig.resolve(compression_type="brotli")
    with pytest.raises(ConfigError):
        ConsumerConfig.resolve(auto_offset_reset="smallest")


@pytest.mark.parametrize("acks, expected", [("all", -1), ("-1", -1), ("0", 0), ("1", 1), (1, 1)])
def test_acks_is_normalised_to_an_int(acks: object, expected: int) -> None:
    overrides = {"acks": acks}
    if expected != -1:
        overrides["enable_idempotence"] = False
    assert ProducerConfig.resolve(**overrides).acks == expected


def test_default_idempotence_is_turned_off_silently_by_conflicts() -> None:
    assert ProducerConfig.resolve(acks=1).enable_idempotence is False
    assert ProducerConfig.resolve(retries=0).enable_idempotence is False
    assert (
        ProducerConfig.resolve(max_in_flight_requests_per_connection=6).enable_idempotence
        is False
    )


@pytest.mark.parametrize(
    "conflict",
    [{"acks": "1"}, {"retries": 0}, {"max.in.flight.requests.per.connection": 6}],
)
def test_explicit_idempotence_with_a_conflict_is_an_error(conflict: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="enable.idempotence"):
        ProducerConfig.resolve({"enable.idempotence": "true", **conflict})


def test_transactional_id_needs_idempotence() -> None:
    with pytest.raises(ConfigError, match="transactional.id"):
        ProducerConfig.resolve(transactional_id="tx", enable_idempotence=False)
    with pytest.raises(ConfigError, match="transactional.id"):
        ProducerConfig.resolve(transactional_id="tx", acks="1")
    assert ProducerConfig.resolve(transactional_id="tx").enable_idempotence


def test_default_delivery_timeout_is_raised_to_linger_plus_request_timeout() -> None:
    config = ProducerConfig.resolve(linger_ms=100000, request_timeout_ms=50000)
    assert config.delivery_timeout_ms == 150000


def test_explicit_delivery_timeout_below_the_sum_is_an_error() -> None:
    with pytest.raises(ConfigError, match="delivery.timeout.ms"):
        ProducerConfig.resolve(delivery_timeout_ms=1000, linger_ms=10)
    config = ProducerConfig.resolve(delivery_timeout_ms=30010, linger_ms=10)
    assert config.delivery_timeout_ms == 30010


def test_as_dict_gives_the_resolved_dotted_map() -> None:
    config = ProducerConfig.resolve(acks="all", linger_ms=0, bootstrap_servers="h:9092")
    resolved = config.as_dict()
    assert resolved["acks"] == "all"
    assert resolved["linger.ms"] == 0
    assert resolved["bootstrap.servers"] == ["h:9092"]
    assert ProducerConfig.resolve(resolved) == config  # round-trips


def test_consumer_auto_commit_needs_a_group() -> None:
    assert ConsumerConfig.resolve().enable_auto_commit is False
    with pytest.raises(ConfigError, match="group.id"):
        ConsumerConfig.resolve(enable_auto_commit=True)


def test_consumer_heartbeat_must_be_below_session_timeout() -> None:
    with pytest.raises(ConfigError, match="heartbeat.interval.ms"):
        ConsumerConfig.resolve(group_id="g", heartbeat_interval_ms=10000, session_timeout_ms=6000)


def test_consumer_assignment_strategy_parses_a_list() -> None:
    config = ConsumerConfig.resolve({"partition.assignment.strategy": "roundrobin, range"})
    assert config.partition_assignment_strategy == ("roundrobin", "range")
    with pytest.raises(ConfigError):
        ConsumerConfig.resolve(partition_assignment_strategy="fancy")


def test_admin_default_api_timeout_follows_request_timeout() -> None:
    assert AdminConfig.resolve(request_timeout_ms=90000).default_api_timeout_ms == 90000
    with pytest.raises(ConfigError, match="default.api.timeout.ms"):
        AdminConfig.resolve(request_timeout_ms=90000, default_api_timeout_ms=1000)


def test_compression_level_is_the_chosen_codecs() -> None:
    assert ProducerConfig.resolve(compression_type="zstd").compression_level == 3
    assert ProducerConfig.resolve(compression_type="gzip").compression_level is None
    assert (
        ProducerConfig.resolve(compression_type="gzip", compression_gzip_level=6)
        .compression_level
        == 6
    )
    assert ProducerConfig.resolve().compression_level is None
