"""Topic-level configuration: Kafka's names, types and defaults (`LogConfig` / `TopicConfig`).

Controllers validate CreateTopics and IncrementalAlterConfigs against this table; brokers build
each partition's log configuration from it. A value of None for `flush.messages` / `flush.ms`
means Kafka's Long.MAX_VALUE: never fsync on a schedule, durability comes from replication.
"""

from __future__ import annotations

from proto.config import ConfigDef, ConfigKey, ConfigType, at_least, between, one_of

LONG, INT, STRING, DOUBLE, BOOLEAN, LIST = (
    ConfigType.LONG,
    ConfigType.INT,
    ConfigType.STRING,
    ConfigType.DOUBLE,
    ConfigType.BOOLEAN,
    ConfigType.LIST,
)

COMPRESSION_TYPES = ("producer", "uncompressed", "none", "gzip", "snappy", "lz4", "zstd")

TOPIC_CONFIG = ConfigDef([
    ConfigKey("cleanup.policy", LIST, ["delete"], one_of("delete", "compact"),
              "delete old segments by time/size, and/or keep the last record per key"),
    ConfigKey("compression.type", STRING, "producer", one_of(*COMPRESSION_TYPES),
              "producer keeps the producer's codec (Rafka never recompresses)"),
    ConfigKey("delete.retention.ms", LONG, 86_400_000, at_least(0),
              "how long tombstones stay readable after compaction first reaches them"),
    ConfigKey("file.delete.delay.ms", LONG, 60_000, at_least(0),
              "delay before a deleted segment's files are removed"),
    ConfigKey("flush.messages", LONG, None, at_least(1),
              "fsync after this many messages (unset: never)"),
    ConfigKey("flush.ms", LONG, None, at_least(0), "fsync after this long (unset: never)"),
    ConfigKey("index.interval.bytes", INT, 4096, at_least(0),
              "bytes appended between two offset-index entries"),
    ConfigKey("max.compaction.lag.ms", LONG, 2**63 - 1, at_least(1),
              "longest a record may stay uncompacted"),
    ConfigKey("max.message.bytes", INT, 1_048_588, at_least(0),
              "largest record batch accepted (after compression)"),
    ConfigKey("message.timestamp.type", STRING, "CreateTime",
              one_of("CreateTime", "LogAppendTime"), "whose clock stamps records"),
    ConfigKey("message.timestamp.before.max.ms", LONG, 2**63 - 1, at_least(0),
              "how far in the past a CreateTime timestamp may be"),
    ConfigKey("message.timestamp.after.max.ms", LONG, 2**63 - 1, at_least(0),
              "how far in the future a CreateTime timestamp may be"),
    ConfigKey("min.cleanable.dirty.ratio", DOUBLE, 0.5, between(0.0, 1.0),
              "dirty fraction of a log before the cleaner compacts it"),
    ConfigKey("min.compaction.lag.ms", LONG, 0, at_least(0),
              "shortest time a record stays uncompacted"),
    ConfigKey("min.insync.replicas", INT, 1, at_least(1),
              "replicas that must be in sync for acks=all writes"),
    ConfigKey("retention.bytes", LONG, -1, at_least(-1),
              "largest size of a partition before old segments go (-1: no limit)"),
    ConfigKey("retention.ms", LONG, 604_800_000, at_least(-1),
              "age after which segments go (-1: keep forever)"),
    ConfigKey("segment.bytes", INT, 1_073_741_824, at_least(14),
              "segment size at which the log rolls"),
    ConfigKey("segment.index.bytes", INT, 10_485_760, at_least(8),
              "largest offset index per segment"),
    ConfigKey("segment.ms", LONG, 604_800_000, at_least(1),
              "age at which the log rolls"),
    ConfigKey("unclean.leader.election.enable", BOOLEAN, False, None,
              "elect an out-of-sync replica when no in-sync one is alive (may lose data)"),
])
