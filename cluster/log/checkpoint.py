"""Small text checkpoint files, in Kafka's `CheckpointFile` format, written atomically.

Format (UTF-8 text, one item per line):

    <version>          always 0
    <count>            number of entry lines
    <entry>...         one line per entry, fields separated by one space

`leader-epoch-checkpoint` entries are `epoch start_offset` (Kafka's exact file), and
`replication-offset-checkpoint` (one per broker log directory: every partition's high watermark)
entries are `topic partition offset`, as Kafka's. Rafka also keeps
three single-entry offset checkpoints per partition directory (Kafka keeps them per log
directory, keyed by topic-partition): `recovery-point-offset-checkpoint`,
`log-start-offset-checkpoint` and `cleaner-offset-checkpoint`, each with one line `offset`.

Writes go through `FileSystem.atomic_replace` (temp + fsync + rename + directory fsync), so a
reader sees the old or the new file, never a torn one. A file that does not parse is reported as
None and the caller falls back (rebuild from the log, or the conservative default).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cluster.log.files import FileSystem

CHECKPOINT_VERSION = 0


def encode_checkpoint(entries: Sequence[Sequence[int]]) -> bytes:
    lines = [str(CHECKPOINT_VERSION), str(len(entries))]
    lines.extend(" ".join(str(v) for v in entry) for entry in entries)
    return ("\n".join(lines) + "\n").encode()


def decode_checkpoint(data: bytes, fields: int) -> list[tuple[int, ...]] | None:
    """Parse a checkpoint with `fields` ints per entry; None if malformed."""
    try:
        lines = data.decode().splitlines()
        if len(lines) < 2 or int(lines[0]) != CHECKPOINT_VERSION:
            return None
        count = int(lines[1])
        if count < 0 or len(lines) != 2 + count:
            return None
        entries = [tuple(int(v) for v in line.split()) for line in lines[2:]]
    except (UnicodeDecodeError, ValueError):
        return None
    if any(len(entry) != fields for entry in entries):
        return None
    return entries


def read_offset_checkpoint(fs: FileSystem, path: str) -> int | None:
    data = fs.read_file(path)
    if data is None:
        return None
    entries = decode_checkpoint(data, 1)
    if entries is None or len(entries) != 1:
        return None
    return entries[0][0]


def write_offset_checkpoint(fs: FileSystem, path: str, offset: int) -> None:
    fs.atomic_replace(path, encode_checkpoint([(offset,)]))


def encode_partition_offsets(entries: Iterable[tuple[tuple[str, int], int]]) -> bytes:
    """A per-log-directory checkpoint keyed by partition (Kafka's
    `replication-offset-checkpoint`): entry lines are `topic partition offset`."""
    items = list(entries)
    lines = [str(CHECKPOINT_VERSION), str(len(items))]
    lines.extend(f"{topic} {partition} {offset}" for (topic, partition), offset in items)
    return ("\n".join(lines) + "\n").encode()


def decode_partition_offsets(data: bytes) -> dict[tuple[str, int], int] | None:
    """Parse `encode_partition_offsets`' format; None if malformed."""
    try:
        lines = data.decode().splitlines()
        if len(lines) < 2 or int(lines[0]) != CHECKPOINT_VERSION:
            return None
        count = int(lines[1])
        if count < 0 or len(lines) != 2 + count:
            return None
        out: dict[tuple[str, int], int] = {}
        for line in lines[2:]:
            topic, partition, offset = line.split(" ")
            out[(topic, int(partition))] = int(offset)
    except (UnicodeDecodeError, ValueError):
        return None
    return out
