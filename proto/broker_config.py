"""The broker's configuration table (Kafka's `KafkaConfig` names and defaults) and `BrokerConfig`.

Theory of operation
-------------------
`BROKER_CONFIG` is the one table of broker settings: Kafka's dotted names, types, defaults and
validators. Brokers resolve their static configuration from it (`BrokerConfig.resolve`), the
broker's DescribeConfigs lists it, and the controller validates dynamic broker configs
(IncrementalAlterConfigs on a BROKER resource) against `DYNAMIC_BROKER_CONFIG`, the subset that
may change at runtime (controller/config_control.py).

Defaults are Kafka's except where a local, single-machine cluster wants faster reactions; each
such key says so in its doc:
- broker.heartbeat.interval.ms = 500 (Kafka 2000) and broker.session.timeout.ms = 3000 (Kafka
  9000): a killed broker is fenced, and its leaderships move, within ~3 s.
- replica.lag.time.max.ms = 10000 (Kafka 30000): on one machine a healthy follower is never
  seconds behind, so a stuck one can leave the ISR sooner and acks=all writes stall for less
  time; still far above replica.fetch.wait.max.ms so a quiet partition never shrinks its ISR.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from proto.config import ConfigDef, ConfigError, ConfigKey, ConfigType, at_least, one_of
from proto.topic_config import COMPRESSION_TYPES

LONG_MAX = 2**63 - 1

_K = ConfigKey
_INT, _LONG, _BOOL = ConfigType.INT, ConfigType.LONG, ConfigType.BOOLEAN
_STR, _LIST = ConfigType.STRING, ConfigType.LIST

BROKER_CONFIG = ConfigDef([
    # -- lifecycle (KAFKA_SEMANTICS §5.4)
    _K("broker.heartbeat.interval.ms", _INT, 500, at_least(1),
       "Heartbeat period to the active controller (Kafka 2000; local-cluster default)."),
    _K("broker.session.timeout.ms", _INT, 3000, at_least(1),
       "No heartbeat for this long and the controller fences the broker (Kafka 9000)."),
    _K("initial.broker.registration.timeout.ms", _INT, 60_000, at_least(1),
       "How long a starting broker keeps trying to register before giving up."),
    _K("broker.rack", _STR, None, None, "The broker's rack, for rack-aware placement."),
    _K("request.timeout.ms", _INT, 30_000, at_least(1),
       "Bound on calls the broker makes to the controller (forwarded admin requests)."),
    # -- replication
    _K("replica.lag.time.max.ms", _LONG, 10_000, at_least(1),
       "A follower that has not caught up for this long leaves the ISR (Kafka 30000: "
       "a local follower is never seconds behind, so shrink sooner)."),
    _K("replica.fetch.wait.max.ms", _INT, 500, at_least(0),
       "Max wait of a follower's Fetch (must stay below replica.lag.time.max.ms)."),
    _K("replica.fetch.min.bytes", _INT, 1, at_least(1), "Min bytes a follower Fetch waits for."),
    _K("replica.fetch.max.bytes", _INT, 1_048_576, at_least(0),
       "Bytes per partition a follower asks for (the first batch is sent even if larger)."),
    _K("replica.fetch.response.max.bytes", _INT, 10_485_760, at_least(0),
       "Bytes per follower Fetch response."),
    _K("replica.fetch.backoff.ms", _INT, 1000, at_least(0),
       "Sleep after a follower Fetch failed."),
    _K("replica.high.watermark.checkpoint.interval.ms", _LONG, 5000, at_least(1),
       "How often high watermarks are checkpointed to disk."),
    _K("num.replica.fetchers", _INT, 1, at_least(1), "Fetcher tasks per source broker."),
    _K("replica.fetch.stream.enable", _BOOL, True, None,
       "Followers fetch over one ReplicaFetch stream per source broker, not a Fetch call "
       "each (Rafka only: a stream message costs half a gRPC call; false for A/B runs)."),
    _K("message.max.bytes", _INT, 1_048_588, at_least(0),
       "Largest record batch the broker accepts (default of topic max.message.bytes)."),
    # -- topics
    _K("num.partitions", _INT, 1, at_least(1), "Partitions of auto-created topics."),
    _K("default.replication.factor", _INT, 1, at_least(1),
       "Replication factor of auto-created topics."),
    _K("min.insync.replicas", _INT, 1, at_least(1),
       "Default of the topic config min.insync.replicas."),
    _K("unclean.leader.election.enable", _BOOL, False, None,
       "Default of the topic config unclean.leader.election.enable."),
    _K("auto.create.topics.enable", _BOOL, True, None,
       "Metadata requests with allow_auto_topic_creation create missing topics."),
    _K("compression.type", _STR, "producer", one_of(*COMPRESSION_TYPES),
       "Default of the topic config compression.type."),
    # -- logs
    _K("log.segment.bytes", _INT, 1_073_741_824, at_least(14), "Default segment.bytes."),
    _K("log.roll.ms", _LONG, 604_800_000, at_least(1), "Default segment.ms (log.roll.hours=168)."),
    _K("log.retention.ms", _LONG, 604_800_000, at_least(-1),
       "Default retention.ms (log.retention.hours=168)."),
    _K("log.retention.bytes", _LONG, -1, at_least(-1), "Default retention.bytes."),
    _K("log.cleanup.policy", _LIST, ["delete"], one_of("delete", "compact"),
       "Default cleanup.policy."),
    _K("log.retention.check.interval.ms", _LONG, 300_000, at_least(1),
       "How often retention is checked."),
    _K("log.segment.delete.delay.ms", _LONG, 60_000, at_least(0),
       "Delay before a deleted segment's files are removed."),
    _K("log.index.size.max.bytes", _INT, 10_485_760, at_least(4),
       "Default segment.index.bytes."),
    _K("log.index.interval.bytes", _INT, 4096, at_least(0), "Default index.interval.bytes."),
    _K("log.flush.interval.messages", _LONG, LONG_MAX, at_least(1),
       "Default flush.messages: fsync after this many messages."),
    _K("log.flush.interval.ms", _LONG, None, at_least(0),
       "Default flush.ms; null = log.flush.scheduler.interval.ms."),
    _K("log.flush.scheduler.interval.ms", _LONG, LONG_MAX, at_least(0),
       "How often logs are checked for a time-based flush."),
    _K("log.flush.offset.checkpoint.interval.ms", _INT, 60_000, at_least(0),
       "How often the recovery points are checkpointed."),
    _K("log.message.timestamp.type", _STR, "CreateTime", one_of("CreateTime", "LogAppendTime"),
       "Default message.timestamp.type."),
    # -- producers
    _K("producer.id.expiration.ms", _INT, 86_400_000, at_least(1),
       "Producer state is dropped after this long without activity (KIP-854)."),
    # -- consumer groups and __consumer_offsets (KAFKA_SEMANTICS §6)
    _K("group.initial.rebalance.delay.ms", _INT, 3000, at_least(0),
       "An Empty group's first rebalance waits this long, extended while members arrive."),
    _K("group.min.session.timeout.ms", _INT, 6000, at_least(0),
       "Smallest session.timeout.ms a member may ask for (else INVALID_SESSION_TIMEOUT)."),
    _K("group.max.session.timeout.ms", _INT, 1_800_000, at_least(0),
       "Largest session.timeout.ms a member may ask for (else INVALID_SESSION_TIMEOUT)."),
    _K("group.max.size", _INT, 2**31 - 1, at_least(1),
       "Members per group (else GROUP_MAX_SIZE_REACHED)."),
    _K("offsets.topic.num.partitions", _INT, 50, at_least(1),
       "Partitions of __consumer_offsets (set when it is created on first use)."),
    _K("offsets.topic.replication.factor", _INT, 3, at_least(1),
       "Replication factor of __consumer_offsets (capped at the live brokers at creation)."),
    _K("offsets.topic.segment.bytes", _INT, 104_857_600, at_least(14),
       "segment.bytes of __consumer_offsets."),
    _K("offsets.retention.minutes", _INT, 10080, at_least(1),
       "Committed offsets of a group Empty for this long are deleted (KIP-186)."),
    _K("offsets.retention.check.interval.ms", _LONG, 600_000, at_least(1),
       "How often expired offsets are looked for."),
    _K("offsets.commit.timeout.ms", _INT, 5000, at_least(1),
       "How long an offset commit (or group store) waits for acks=all."),
    _K("offsets.load.buffer.size", _INT, 5_242_880, at_least(1),
       "Bytes read per step while a coordinator loads its __consumer_offsets partition."),
    _K("offset.metadata.max.bytes", _INT, 4096, at_least(0),
       "Longest metadata string of a committed offset (else OFFSET_METADATA_TOO_LARGE)."),
])

# The broker configs IncrementalAlterConfigs may set (cluster-wide "" or per broker id).
DYNAMIC_BROKER_CONFIG_NAMES: tuple[str, ...] = (
    "min.insync.replicas",
    "unclean.leader.election.enable",
    "log.retention.ms",
    "log.retention.bytes",
    "log.segment.bytes",
    "log.cleanup.policy",
    "compression.type",
    "message.max.bytes",
)

DYNAMIC_BROKER_CONFIG = ConfigDef(BROKER_CONFIG.key(n) for n in DYNAMIC_BROKER_CONFIG_NAMES)

# Topic config → the broker config that supplies its default (Kafka's synonyms).
TOPIC_CONFIG_SYNONYMS: dict[str, str] = {
    "cleanup.policy": "log.cleanup.policy",
    "compression.type": "compression.type",
    "flush.messages": "log.flush.interval.messages",
    "flush.ms": "log.flush.interval.ms",
    "index.interval.bytes": "log.index.interval.bytes",
    "max.message.bytes": "message.max.bytes",
    "message.timestamp.type": "log.message.timestamp.type",
    "min.insync.replicas": "min.insync.replicas",
    "retention.bytes": "log.retention.bytes",
    "retention.ms": "log.retention.ms",
    "segment.bytes": "log.segment.bytes",
    "segment.index.bytes": "log.index.size.max.bytes",
    "segment.ms": "log.roll.ms",
    "unclean.leader.election.enable": "unclean.leader.election.enable",
}


def _attr(name: str) -> str:
    return name.replace(".", "_")


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """A broker's resolved static configuration (one field per BROKER_CONFIG key)."""

    broker_heartbeat_interval_ms: int = 500
    broker_session_timeout_ms: int = 3000
    initial_broker_registration_timeout_ms: int = 60_000
    broker_rack: str | None = None
    request_timeout_ms: int = 30_000
    replica_lag_time_max_ms: int = 10_000
    replica_fetch_wait_max_ms: int = 500
    replica_fetch_min_bytes: int = 1
    replica_fetch_max_bytes: int = 1_048_576
    replica_fetch_response_max_bytes: int = 10_485_760
    replica_fetch_backoff_ms: int = 1000
    replica_high_watermark_checkpoint_interval_ms: int = 5000
    num_replica_fetchers: int = 1
    replica_fetch_stream_enable: bool = True
    message_max_bytes: int = 1_048_588
    num_partitions: int = 1
    default_replication_factor: int = 1
    min_insync_replicas: int = 1
    unclean_leader_election_enable: bool = False
    auto_create_topics_enable: bool = True
    compression_type: str = "producer"
    log_segment_bytes: int = 1_073_741_824
    log_roll_ms: int = 604_800_000
    log_retention_ms: int = 604_800_000
    log_retention_bytes: int = -1
    log_cleanup_policy: tuple[str, ...] = ("delete",)
    log_retention_check_interval_ms: int = 300_000
    log_segment_delete_delay_ms: int = 60_000
    log_index_size_max_bytes: int = 10_485_760
    log_index_interval_bytes: int = 4096
    log_flush_interval_messages: int = LONG_MAX
    log_flush_interval_ms: int | None = None
    log_flush_scheduler_interval_ms: int = LONG_MAX
    log_flush_offset_checkpoint_interval_ms: int = 60_000
    log_message_timestamp_type: str = "CreateTime"
    producer_id_expiration_ms: int = 86_400_000
    group_initial_rebalance_delay_ms: int = 3000
    group_min_session_timeout_ms: int = 6000
    group_max_session_timeout_ms: int = 1_800_000
    group_max_size: int = 2**31 - 1
    offsets_topic_num_partitions: int = 50
    offsets_topic_replication_factor: int = 3
    offsets_topic_segment_bytes: int = 104_857_600
    offsets_retention_minutes: int = 10080
    offsets_retention_check_interval_ms: int = 600_000
    offsets_commit_timeout_ms: int = 5000
    offsets_load_buffer_size: int = 5_242_880
    offset_metadata_max_bytes: int = 4096

    @classmethod
    def resolve(cls, config: Mapping[str, Any] | None = None, **overrides: Any) -> BrokerConfig:
        """Build from Kafka's dotted names and/or snake_case keyword arguments.

        Raises:
            ConfigError: an unknown key (naming the closest one) or an invalid value.
        """
        values = BROKER_CONFIG.resolve(config, overrides)
        kwargs: dict[str, Any] = {}
        for name, value in values.items():
            kwargs[_attr(name)] = tuple(value) if isinstance(value, list) else value
        resolved = cls(**kwargs)
        if resolved.broker_session_timeout_ms <= resolved.broker_heartbeat_interval_ms:
            raise ConfigError(
                f"broker.session.timeout.ms={resolved.broker_session_timeout_ms} must exceed "
                f"broker.heartbeat.interval.ms={resolved.broker_heartbeat_interval_ms}"
            )
        return resolved

    def get(self, name: str) -> Any:
        """A value by Kafka's dotted name (lists as Python lists)."""
        BROKER_CONFIG.key(name)  # ConfigError for unknown names
        value = getattr(self, _attr(name))
        return list(value) if isinstance(value, tuple) else value

    def to_dict(self) -> dict[str, Any]:
        """Every value by dotted name, in BROKER_CONFIG's (sorted) order."""
        return {name: self.get(name) for name in BROKER_CONFIG.names}


def _check_fields_match_table() -> None:
    names = {f.name for f in fields(BrokerConfig)}
    table = {_attr(n) for n in BROKER_CONFIG.names}
    assert names == table, f"BrokerConfig fields != BROKER_CONFIG: {names ^ table}"
    defaults = BrokerConfig()
    for name in BROKER_CONFIG.names:
        default = BROKER_CONFIG.key(name).default
        assert defaults.get(name) == default, f"default of {name} differs"


_check_fields_match_table()
