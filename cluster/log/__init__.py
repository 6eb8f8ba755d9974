"""Log storage: a partition's segments, indexes, epoch cache, recovery, retention, compaction.

Public surface: `PartitionLog` (partition_log.py), `LogConfig` (config.py), `LogCleaner`
(cleaner.py), the file ports `FileSystem` / `SegmentFile` with `OsFileSystem` and
`MemFileSystem` (files.py), and `LeaderEpochCache` (epoch_cache.py).
"""

from cluster.log.cleaner import CleanOutcome, CleanTask, LogCleaner
from cluster.log.config import LogConfig
from cluster.log.epoch_cache import LeaderEpochCache
from cluster.log.files import FileSystem, MemFileSystem, OsFileSystem, SegmentFile
from cluster.log.partition_log import (
    AppendInfo,
    DeletedSegment,
    PartitionLog,
    ReadResult,
    RetentionResult,
)
from cluster.log.recovery import RecoveryReport

__all__ = [
    "AppendInfo",
    "CleanOutcome",
    "CleanTask",
    "DeletedSegment",
    "FileSystem",
    "LeaderEpochCache",
    "LogCleaner",
    "LogConfig",
    "MemFileSystem",
    "OsFileSystem",
    "PartitionLog",
    "ReadResult",
    "RecoveryReport",
    "RetentionResult",
    "SegmentFile",
]
