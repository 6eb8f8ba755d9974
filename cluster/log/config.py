"""`LogConfig`: the resolved topic-level settings one partition log obeys (Kafka's `LogConfig`).

Field names are Kafka's dotted names in snake_case, with Kafka's defaults. `None` for
`flush_messages` / `flush_ms` stands for Kafka's Long.MAX_VALUE: never fsync on a schedule
(durability comes from replication). Values are validated against the shared topic-config table
(`proto.topic_config.TOPIC_CONFIG`), so a bad `segment.bytes` is rejected with the same
`ConfigError` whether it comes from CreateTopics or from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from proto.config import ConfigError
from proto.topic_config import TOPIC_CONFIG

CLEANUP_POLICIES = ("delete", "compact", "delete,compact")


@dataclass(frozen=True, slots=True)
class LogConfig:
    segment_bytes: int = 1_073_741_824
    segment_ms: int = 604_800_000
    index_interval_bytes: int = 4096
    segment_index_bytes: int = 10_485_760  # bounds the entries per index (no preallocation)
    retention_ms: int = 604_800_000  # -1: keep forever
    retention_bytes: int = -1  # per partition; -1: no limit
    cleanup_policy: str = "delete"  # "delete", "compact" or "delete,compact"
    delete_retention_ms: int = 86_400_000
    min_compaction_lag_ms: int = 0
    min_cleanable_dirty_ratio: float = 0.5
    flush_messages: int | None = None  # None: never (Kafka's Long.MAX_VALUE)
    flush_ms: int | None = None  # None: never
    max_message_bytes: int = 1_048_588
    file_delete_delay_ms: int = 60_000
    message_timestamp_type: str = "CreateTime"  # or "LogAppendTime"

    def __post_init__(self) -> None:
        parts = {p.strip() for p in self.cleanup_policy.split(",")}
        normalised = ",".join(p for p in ("delete", "compact") if p in parts)
        if parts <= {"delete", "compact"} and normalised:
            object.__setattr__(self, "cleanup_policy", normalised)  # "compact,delete" too
        if self.cleanup_policy not in CLEANUP_POLICIES:
            raise ConfigError(
                f"cleanup.policy={self.cleanup_policy!r}: must be one of "
                + ", ".join(CLEANUP_POLICIES))
        if self.segment_bytes < 14:
            raise ConfigError(f"segment.bytes={self.segment_bytes}: must be at least 14")
        if self.segment_ms < 1:
            raise ConfigError(f"segment.ms={self.segment_ms}: must be at least 1")
        if self.segment_index_bytes < 12:
            raise ConfigError(
                f"segment.index.bytes={self.segment_index_bytes}: must be at least 12")
        if self.message_timestamp_type not in ("CreateTime", "LogAppendTime"):
            raise ConfigError(
                f"message.timestamp.type={self.message_timestamp_type!r}: "
                "must be CreateTime or LogAppendTime")

    @property
    def compact(self) -> bool:
        return "compact" in self.cleanup_policy

    @property
    def delete(self) -> bool:
        return "delete" in self.cleanup_policy

    @property
    def log_append_time(self) -> bool:
        return self.message_timestamp_type == "LogAppendTime"

    @classmethod
    def from_kafka_configs(cls, configs: Mapping[str, Any]) -> LogConfig:
        """Build from Kafka's dotted names (`{"segment.bytes": "1048576"}`).

        Keys of the topic table that are not about storage (`min.insync.replicas`, ...) are
        accepted and ignored; unknown keys and bad values raise.

        Raises:
            ConfigError: an unknown key (naming the closest one), a wrong type or range.
        """
        resolved = TOPIC_CONFIG.resolve(dict(configs))
        values: dict[str, Any] = {}
        for f in fields(cls):
            dotted = f.name.replace("_", ".")
            if dotted in resolved:
                values[f.name] = resolved[dotted]
        policy = values.get("cleanup_policy", ["delete"])
        assert isinstance(policy, list)
        values["cleanup_policy"] = ",".join(policy) if policy else "delete"
        return cls(**values)
