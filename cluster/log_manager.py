"""`LogManager`: which partition logs this broker keeps, where they live, and their configs.

Theory of operation
-------------------
Kafka's `LogManager`, cut down to naming and configuration. Every partition replica's log lives
in `<logs_dir>/<topic>-<partition>/` (`logs_dir` = `<data_dir>/broker-<id>`). This core:
- names the directory of a partition and parses directory names back (`existing_partitions`);
- resolves a topic's effective configuration: the topic's dynamic configs from the metadata
  image, over this broker's and then the cluster-wide dynamic broker configs, over this
  broker's static configs
  (Kafka's synonyms: `retention.ms` ← `log.retention.ms`, ...), into a `LogConfig` for the log
  and a `min.insync.replicas` for the replica;
- opens logs through the `FileSystem` port (recovery happens in `PartitionLog.open`).

It never deletes directories (the shell does, off the event loop) and never reads the clock.
"""

from __future__ import annotations

from typing import Any

from cluster.log.config import LogConfig
from cluster.log.files import FileSystem, OsFileSystem, join
from cluster.log.partition_log import PartitionLog
from proto.broker_config import TOPIC_CONFIG_SYNONYMS, BrokerConfig
from proto.metadata import ConfigResourceType
from proto.metadata_image import MetadataImage
from proto.topic_config import TOPIC_CONFIG

TOPIC = ConfigResourceType.TOPIC
BROKER = ConfigResourceType.BROKER


def partition_dir_name(topic: str, partition: int) -> str:
    """`<topic>-<partition>`, Kafka's directory name (topic names may contain '-')."""
    return f"{topic}-{partition}"


def parse_partition_dir_name(name: str) -> tuple[str, int] | None:
    """The inverse of `partition_dir_name`; None for other names (`.deleted` dirs, files)."""
    topic, sep, number = name.rpartition("-")
    if not sep or not topic or not number.isdigit():
        return None
    return topic, int(number)


class LogManager:
    """Names, configs and opening of this broker's partition logs. See the module docstring."""

    def __init__(self, logs_dir: str, config: BrokerConfig, fs: FileSystem | None = None,
                 *, broker_id: int = -1) -> None:
        self.logs_dir = logs_dir
        self.broker_id = broker_id
        self.config = config
        self.fs: FileSystem = fs if fs is not None else OsFileSystem()

    def partition_dir(self, topic: str, partition: int) -> str:
        return join(self.logs_dir, partition_dir_name(topic, partition))

    def existing_partitions(self) -> list[tuple[str, int]]:
        """Partition directories present on disk, sorted."""
        self.fs.make_dirs(self.logs_dir)
        found = (parse_partition_dir_name(n) for n in self.fs.list_dir(self.logs_dir))
        return sorted(p for p in found if p is not None)

    def topic_configs(self, image: MetadataImage, topic: str) -> dict[str, Any]:
        """The effective topic configs (dotted names, values typed or as strings)."""
        cluster = dict(image.configs_for(BROKER, ""))
        if self.broker_id >= 0:
            cluster.update(image.configs_for(BROKER, str(self.broker_id)))
        values: dict[str, Any] = {}
        for name, synonym in TOPIC_CONFIG_SYNONYMS.items():
            if synonym in cluster:
                values[name] = cluster[synonym]
                continue
            value = self.config.get(synonym)
            if value is not None:
                values[name] = value
        values.update(image.configs_for(TOPIC, topic))
        return {k: v for k, v in values.items() if k in TOPIC_CONFIG.names}

    def log_config(self, image: MetadataImage, topic: str) -> LogConfig:
        """`LogConfig` of `topic` (ConfigError if a stored value is invalid)."""
        configs = self.topic_configs(image, topic)
        return LogConfig.from_kafka_configs(configs)

    def min_insync_replicas(self, image: MetadataImage, topic: str) -> int:
        value = self.topic_configs(image, topic).get("min.insync.replicas", 1)
        return int(value)

    def rename_for_delete(self, directory: str, tag: str) -> str:
        """Rename a closed log's directory to `<dir>.<tag>-delete` (Kafka's future-delete
        name, never parsed as a partition) and return the new path for the shell to remove.

        File systems without directory entries (the in-memory one) get each file renamed.
        """
        doomed = f"{directory}.{tag}-delete"
        try:
            self.fs.rename(directory, doomed)
        except FileNotFoundError:
            self.fs.make_dirs(doomed)
            for name in self.fs.list_dir(directory):
                self.fs.rename(join(directory, name), join(doomed, name))
        return doomed

    def open_log(self, topic: str, partition: int, config: LogConfig, now_ms: int) -> PartitionLog:
        """Open (create or recover) the log of one partition."""
        directory = self.partition_dir(topic, partition)
        self.fs.make_dirs(directory)
        return PartitionLog.open(directory, config, now_ms, fs=self.fs)
