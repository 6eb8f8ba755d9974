"""Client configuration: Kafka's names, types and defaults, resolved into frozen dataclasses.

Three tables (Kafka's `ProducerConfig`, `ConsumerConfig`, `AdminClientConfig`), each a
`proto.config.ConfigDef`. `ProducerConfig.resolve({"linger.ms": 5}, acks="all")` takes a dict
of dotted names and/or snake_case keyword arguments (kwargs win; one key spelled both ways is an
error; an unknown key raises `ConfigError` naming the closest valid one), applies Kafka's
cross-field rules and returns a frozen dataclass whose fields are the snake_case names.
`config.as_dict()` gives the resolved dotted map back (what `client.config` shows).

Defaults are Kafka's (KAFKA_SEMANTICS.md §3.2, §7), with one deliberate choice:
**linger.ms defaults to 5**, Kafka 4.0's value (KIP-1030), not 3.x's 0. Current Kafka does
this because a few milliseconds of lingering buys much larger batches for almost no latency;
pass `linger_ms=0` for 3.x behaviour (the end-to-end latency benchmark does).

Cross-field rules, as Kafka applies them:
- acks "all" / "-1" / "0" / "1" becomes the int -1 / 0 / 1.
- Idempotence (`ProducerConfig.postProcessAndValidateIdempotenceConfigs`) needs acks=all,
  max.in.flight.requests.per.connection <= 5 and retries > 0. If enable.idempotence was set
  explicitly, a conflict is a ConfigError; if it was left at its default, idempotence is
  silently turned off. A transactional.id needs idempotence.
- delivery.timeout.ms >= linger.ms + request.timeout.ms (KafkaProducer.configureDeliveryTimeout):
  an explicit smaller value is a ConfigError; the default is raised to the sum.
- Consumer: enable.auto.commit is off without a group.id (an error if set explicitly);
  heartbeat.interval.ms < session.timeout.ms (Kafka's `Heartbeat`).
- Admin: default.api.timeout.ms >= request.timeout.ms (explicit: error; default: raised).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

from proto.config import (
    ConfigDef,
    ConfigError,
    ConfigKey,
    ConfigType,
    at_least,
    between,
    one_of,
)

__all__ = [
    "ADMIN_CONFIG",
    "AdminConfig",
    "CONSUMER_CONFIG",
    "ConfigError",
    "ConsumerConfig",
    "PRODUCER_CONFIG",
    "ProducerConfig",
]

B = ConfigType.BOOLEAN
I = ConfigType.INT  # noqa: E741 - short aliases keep the tables one line per key
L = ConfigType.LONG
S = ConfigType.STRING
LST = ConfigType.LIST

INT32_MAX = 2**31 - 1
LZ4_KAFKA_DEFAULT_LEVEL = 9
MAX_IN_FLIGHT_FOR_IDEMPOTENCE = 5  # the broker caches the last 5 batches per producer (KIP-98)


def _common_keys() -> list[ConfigKey]:
    """Keys every client has (Kafka's `CommonClientConfigs`)."""
    return [
        ConfigKey("bootstrap.servers", LST, [], doc="host:port,... of some brokers"),
        ConfigKey("client.id", S, "", doc="name sent with requests, shown in logs"),
        ConfigKey("request.timeout.ms", I, 30000, at_least(0), "one request's deadline"),
        ConfigKey("retry.backoff.ms", L, 100, at_least(0), "first retry backoff (KIP-580)"),
        ConfigKey("retry.backoff.max.ms", L, 1000, at_least(0), "retry backoff cap (KIP-580)"),
        ConfigKey("reconnect.backoff.ms", L, 50, at_least(0), "first reconnect backoff"),
        ConfigKey("reconnect.backoff.max.ms", L, 1000, at_least(0), "reconnect backoff cap"),
        ConfigKey("metadata.max.age.ms", L, 300000, at_least(0), "refresh metadata this often"),
    ]


PRODUCER_CONFIG = ConfigDef(
    _common_keys()
    + [
        ConfigKey("acks", S, "all", one_of("all", "-1", "0", "1"), "replicas that must ack"),
        ConfigKey("enable.idempotence", B, True, doc="exactly one copy per partition (KIP-98)"),
        ConfigKey("linger.ms", L, 5, at_least(0), "wait this long to fill a batch (KIP-1030)"),
        ConfigKey("batch.size", I, 16384, at_least(0), "batch bytes; also the sticky switch"),
        ConfigKey("buffer.memory", L, 33554432, at_least(0), "bytes of unsent batches"),
        ConfigKey("max.block.ms", L, 60000, at_least(0), "send() waits this long for space"),
        ConfigKey(
            "max.in.flight.requests.per.connection", I, 5, at_least(1), "unacked requests"
        ),
        ConfigKey("retries", I, INT32_MAX, at_least(0), "bounded by delivery.timeout.ms"),
        ConfigKey("delivery.timeout.ms", I, 120000, at_least(0), "send() to ack or failure"),
        ConfigKey("max.request.size", I, 1048576, at_least(0), "largest request and record"),
        ConfigKey(
            "compression.type", S, "none", one_of("none", "gzip", "snappy", "lz4", "zstd")
        ),
        ConfigKey("compression.gzip.level", I, -1, between(-1, 9), "-1 = zlib's default"),
        ConfigKey("compression.lz4.level", I, LZ4_KAFKA_DEFAULT_LEVEL, between(1, 17)),
        ConfigKey("compression.zstd.level", I, 3, between(-131072, 22)),
        ConfigKey("partitioner.adaptive.partitioning.enable", B, True, doc="KIP-794"),
        ConfigKey("partitioner.availability.timeout.ms", L, 0, at_least(0), "0 = off"),
        ConfigKey("partitioner.ignore.keys", B, False, doc="keyed records go sticky too"),
        ConfigKey("metadata.max.idle.ms", L, 300000, at_least(5000), "forget idle topics"),
        ConfigKey("transactional.id", S, None, doc="enables transactions (KIP-98)"),
        ConfigKey("transaction.timeout.ms", I, 60000, at_least(1)),
    ]
)

CONSUMER_CONFIG = ConfigDef(
    _common_keys()
    + [
        ConfigKey("group.id", S, None, doc="consumer group; None = manual assignment only"),
        ConfigKey("group.instance.id", S, None, doc="static membership (KIP-345)"),
        ConfigKey("group.protocol", S, "classic", one_of("classic"), "KIP-848 not supported"),
        ConfigKey("fetch.min.bytes", I, 1, at_least(0)),
        ConfigKey("fetch.max.wait.ms", I, 500, at_least(0)),
        ConfigKey("fetch.max.bytes", I, 52428800, at_least(0)),
        ConfigKey("max.partition.fetch.bytes", I, 1048576, at_least(0)),
        ConfigKey("max.poll.records", I, 500, at_least(1)),
        ConfigKey("max.poll.interval.ms", I, 300000, at_least(1), "also the rebalance timeout"),
        ConfigKey("session.timeout.ms", I, 45000, at_least(1), "KIP-735"),
        ConfigKey("heartbeat.interval.ms", I, 3000, at_least(1)),
        ConfigKey("enable.auto.commit", B, True),
        ConfigKey("auto.commit.interval.ms", I, 5000, at_least(0)),
        ConfigKey("auto.offset.reset", S, "latest", one_of("latest", "earliest", "none")),
        ConfigKey(
            "isolation.level", S, "read_uncommitted", one_of("read_uncommitted", "read_committed")
        ),
        ConfigKey(
            "partition.assignment.strategy",
            LST,
            ["range", "cooperative-sticky"],
            one_of("range", "roundrobin", "sticky", "cooperative-sticky"),
        ),
        ConfigKey("check.crcs", B, True),
        ConfigKey("allow.auto.create.topics", B, True),
        ConfigKey("exclude.internal.topics", B, True),
        ConfigKey("default.api.timeout.ms", I, 60000, at_least(0)),
        ConfigKey("client.rack", S, "", doc="fetch from the nearest replica (KIP-392)"),
    ]
)

ADMIN_CONFIG = ConfigDef(
    _common_keys()
    + [
        ConfigKey("default.api.timeout.ms", I, 60000, at_least(0)),
        ConfigKey("retries", I, INT32_MAX, at_least(0)),
    ]
)


def _field_name(dotted: str) -> str:
    return dotted.replace(".", "_").replace("-", "_")


C = TypeVar("C", bound="_ClientConfig")


class _ClientConfig:
    """Shared resolution: table lookup, explicit-key tracking, dataclass construction."""

    __slots__ = ()
    TABLE: ClassVar[ConfigDef]

    @classmethod
    def _resolve(
        cls: type[C], config: Mapping[str, Any] | None, overrides: Mapping[str, Any]
    ) -> tuple[dict[str, Any], frozenset[str]]:
        explicit = cls.TABLE.resolve(config, overrides, include_defaults=False)
        values = cls.TABLE.defaults()
        values.update(explicit)
        return values, frozenset(explicit)

    @classmethod
    def _build(cls: type[C], values: Mapping[str, Any]) -> C:
        kwargs = {}
        for name, value in values.items():
            kwargs[_field_name(name)] = tuple(value) if isinstance(value, list) else value
        return cls(**kwargs)

    def as_dict(self) -> dict[str, Any]:
        """The resolved configuration keyed by Kafka's dotted names (lists as lists)."""
        out: dict[str, Any] = {}
        for name in self.TABLE.names:
            value = getattr(self, _field_name(name))
            out[name] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True, slots=True)
class ProducerConfig(_ClientConfig):
    """A resolved producer configuration (see the module docstring for the rules)."""

    TABLE: ClassVar[ConfigDef] = PRODUCER_CONFIG

    bootstrap_servers: tuple[str, ...]
    client_id: str
    request_timeout_ms: int
    retry_backoff_ms: int
    retry_backoff_max_ms: int
    reconnect_backoff_ms: int
    reconnect_backoff_max_ms: int
    metadata_max_age_ms: int
    acks: int  # -1 (all), 0 or 1
    enable_idempotence: bool
    linger_ms: int
    batch_size: int
    buffer_memory: int
    max_block_ms: int
    max_in_flight_requests_per_connection: int
    retries: int
    delivery_timeout_ms: int
    max_request_size: int
    compression_type: str
    compression_gzip_level: int
    compression_lz4_level: int
    compression_zstd_level: int
    partitioner_adaptive_partitioning_enable: bool
    partitioner_availability_timeout_ms: int
    partitioner_ignore_keys: bool
    metadata_max_idle_ms: int
    transactional_id: str | None
    transaction_timeout_ms: int

    @classmethod
    def resolve(
        cls, config: Mapping[str, Any] | None = None, /, **overrides: Any
    ) -> ProducerConfig:
        """Resolve a dotted dict and snake_case overrides.

        Raises:
            ConfigError: unknown key (with a hint), bad value, or a cross-field conflict with
                an explicitly set key (idempotence, delivery.timeout.ms).
        """
        values, explicit = cls._resolve(config, overrides)
        values["acks"] = -1 if values["acks"] == "all" else int(values["acks"])
        _check_idempotence(values, explicit)
        _check_delivery_timeout(values, explicit)
        return cls._build(values)

    @property
    def compression_level(self) -> int | None:
        """The level for `compression_type` (None: the codec has none or uses its default)."""
        level: int | None = {
            "gzip": self.compression_gzip_level,
            "lz4": self.compression_lz4_level,
            "zstd": self.compression_zstd_level,
        }.get(self.compression_type)
        if level == -1:
            return None
        if self.compression_type == "lz4" and level == LZ4_KAFKA_DEFAULT_LEVEL:
            # proto.compression's lz4 default is the fast mode; Kafka 3.8's 9 only trades CPU
            # for ratio, so the default level keeps the fast mode (ask for 10 or 8 to differ).
            return None
        return level

    def as_dict(self) -> dict[str, Any]:
        out = _ClientConfig.as_dict(self)
        out["acks"] = "all" if self.acks == -1 else str(self.acks)
        return out


def _check_idempotence(values: dict[str, Any], explicit: frozenset[str]) -> None:
    conflicts = []
    if values["max.in.flight.requests.per.connection"] > MAX_IN_FLIGHT_FOR_IDEMPOTENCE:
        conflicts.append(
            "max.in.flight.requests.per.connection="
            f"{values['max.in.flight.requests.per.connection']} (must be <= 5)"
        )
    if values["retries"] == 0:
        conflicts.append("retries=0 (must be > 0)")
    if values["acks"] != -1:
        conflicts.append(f"acks={values['acks']} (must be all)")
    if values["enable.idempotence"] and conflicts:
        if "enable.idempotence" in explicit:
            raise ConfigError("enable.idempotence=true conflicts with " + ", ".join(conflicts))
        # Kafka turns the default off silently when other settings rule it out.
        values["enable.idempotence"] = False
    if values["transactional.id"] is not None and not values["enable.idempotence"]:
        why = "enable.idempotence=false" if not conflicts else ", ".join(conflicts)
        raise ConfigError(f"transactional.id needs idempotence, but {why}")


def _check_delivery_timeout(values: dict[str, Any], explicit: frozenset[str]) -> None:
    needed = values["linger.ms"] + values["request.timeout.ms"]
    if values["delivery.timeout.ms"] >= needed:
        return
    if "delivery.timeout.ms" in explicit:
        raise ConfigError(
            f"delivery.timeout.ms={values['delivery.timeout.ms']} must be at least "
            f"linger.ms + request.timeout.ms = {needed}"
        )
    values["delivery.timeout.ms"] = needed


@dataclass(frozen=True, slots=True)
class ConsumerConfig(_ClientConfig):
    """A resolved consumer configuration."""

    TABLE: ClassVar[ConfigDef] = CONSUMER_CONFIG

    bootstrap_servers: tuple[str, ...]
    client_id: str
    request_timeout_ms: int
    retry_backoff_ms: int
    retry_backoff_max_ms: int
    reconnect_backoff_ms: int
    reconnect_backoff_max_ms: int
    metadata_max_age_ms: int
    group_id: str | None
    group_instance_id: str | None
    group_protocol: str
    fetch_min_bytes: int
    fetch_max_wait_ms: int
    fetch_max_bytes: int
    max_partition_fetch_bytes: int
    max_poll_records: int
    max_poll_interval_ms: int
    session_timeout_ms: int
    heartbeat_interval_ms: int
    enable_auto_commit: bool
    auto_commit_interval_ms: int
    auto_offset_reset: str
    isolation_level: str
    partition_assignment_strategy: tuple[str, ...]
    check_crcs: bool
    allow_auto_create_topics: bool
    exclude_internal_topics: bool
    default_api_timeout_ms: int
    client_rack: str

    @classmethod
    def resolve(
        cls, config: Mapping[str, Any] | None = None, /, **overrides: Any
    ) -> ConsumerConfig:
        """Resolve a dotted dict and snake_case overrides.

        Raises:
            ConfigError: unknown key, bad value, enable.auto.commit=true without group.id,
                heartbeat.interval.ms >= session.timeout.ms, or an empty strategy list.
        """
        values, explicit = cls._resolve(config, overrides)
        if values["group.id"] is None and values["enable.auto.commit"]:
            if "enable.auto.commit" in explicit:
                raise ConfigError("enable.auto.commit=true needs a group.id")
            values["enable.auto.commit"] = False  # KafkaConsumer does the same
        if values["heartbeat.interval.ms"] >= values["session.timeout.ms"]:
            raise ConfigError(
                f"heartbeat.interval.ms={values['heartbeat.interval.ms']} must be lower than "
                f"session.timeout.ms={values['session.timeout.ms']}"
            )
        if not values["partition.assignment.strategy"]:
            raise ConfigError("partition.assignment.strategy must name at least one assignor")
        return cls._build(values)


@dataclass(frozen=True, slots=True)
class AdminConfig(_ClientConfig):
    """A resolved admin client configuration."""

    TABLE: ClassVar[ConfigDef] = ADMIN_CONFIG

    bootstrap_servers: tuple[str, ...]
    client_id: str
    request_timeout_ms: int
    retry_backoff_ms: int
    retry_backoff_max_ms: int
    reconnect_backoff_ms: int
    reconnect_backoff_max_ms: int
    metadata_max_age_ms: int
    default_api_timeout_ms: int
    retries: int

    @classmethod
    def resolve(cls, config: Mapping[str, Any] | None = None, /, **overrides: Any) -> AdminConfig:
        """Resolve a dotted dict and snake_case overrides.

        Raises:
            ConfigError: unknown key, bad value, or an explicit default.api.timeout.ms below
                request.timeout.ms (KafkaAdminClient.configureDefaultApiTimeoutMs).
        """
        values, explicit = cls._resolve(config, overrides)
        if values["default.api.timeout.ms"] < values["request.timeout.ms"]:
            if "default.api.timeout.ms" in explicit:
                raise ConfigError(
                    f"default.api.timeout.ms={values['default.api.timeout.ms']} must be at "
                    f"least request.timeout.ms={values['request.timeout.ms']}"
                )
            values["default.api.timeout.ms"] = values["request.timeout.ms"]
        return cls._build(values)


def _check_tables() -> None:
    # Every key has a field and every field a key: a mismatch is a bug, caught at import.
    for cls in (ProducerConfig, ConsumerConfig, AdminConfig):
        names = {_field_name(n) for n in cls.TABLE.names}
        assert names == {f.name for f in fields(cls)}, (cls.__name__, names)


_check_tables()
