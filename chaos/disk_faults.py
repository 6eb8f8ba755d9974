"""Disk faults on a stopped broker's partition directory: a torn write, a flipped byte.

Both act on the last batch of the partition's active segment (the newest non-empty `.log`), as
a crash would leave it: `tear_last_batch` cuts the file in the middle of that batch (its write
only partly reached the disk), `flip_byte_in_last_batch` flips one byte inside the CRC-covered
part of it (media corruption of the tail). Either way the `clean-shutdown` marker is removed,
so the broker's next start recovers the segment (cluster/log/recovery.py) and must truncate
at that batch's start: what survives is the prefix before it, and replication refills the
rest from the leader.

Files go through the log's `FileSystem` port (cluster/log/files.py), so the same code runs on
disk and on `MemFileSystem` in unit tests. The broker must be down: a running broker holds the
file open and would append over the damage.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from chaos.history import Json
from cluster.log.files import FileSystem, OsFileSystem, join
from cluster.log.recovery import CLEAN_SHUTDOWN_FILE
from cluster.log.segment import (
    H_BASE_OFFSET,
    H_LAST_DELTA,
    H_LENGTH,
    HEADER,
    LOG_SUFFIX,
    parse_offset_file_name,
)
from proto.records import LOG_OVERHEAD

# The CRC covers the batch from the attributes field on (byte 21 of the header); flipping a
# byte there is caught by CRC-32C, which is what a real tail corruption would hit.
CRC_COVERED_FROM = 21


@dataclass(frozen=True, slots=True)
class LastBatch:
    """Where the last whole batch of a segment file sits."""

    segment: str  # path of the .log file
    position: int
    size: int
    base_offset: int
    last_offset: int
    file_size: int  # bytes in the file (a torn tail after the last batch counts here)


class DiskFaultError(Exception):
    """The directory has nothing to damage (no segment, no whole batch)."""


def last_batch(directory: str, fs: FileSystem | None = None) -> LastBatch:
    """The last whole batch of the newest segment that holds one.

    Raises:
        DiskFaultError: the partition has no segment with a whole batch.
    """
    files = fs or OsFileSystem()
    segments = sorted(
        (parsed[0], name) for name in files.list_dir(directory)
        if (parsed := parse_offset_file_name(name)) is not None and parsed[1] == LOG_SUFFIX)
    for _, name in reversed(segments):
        found = _scan_last(files, join(directory, name))
        if found is not None:
            return found
    raise DiskFaultError(f"{directory}: no segment holds a whole batch")


def tear_last_batch(directory: str, rng: random.Random | None = None,
                    fs: FileSystem | None = None) -> dict[str, Json]:
    """Cut the active segment inside its last batch (keeping 1..size-1 of its bytes).

    Returns:
        What was done: segment, batch offsets and position, bytes kept and cut.
    """
    files = fs or OsFileSystem()
    batch = last_batch(directory, files)
    keep = (rng or random.Random()).randrange(1, batch.size)
    handle = files.open(batch.segment, create=False)
    try:
        handle.truncate(batch.position + keep)
        handle.fsync()
    finally:
        handle.close()
    marker = _remove_clean_marker(files, directory)
    return {"segment": batch.segment, "position": batch.position,
            "base_offset": batch.base_offset, "last_offset": batch.last_offset,
            "batch_bytes": batch.size, "kept_bytes": keep,
            "cut_bytes": batch.file_size - batch.position - keep,
            "size_before": batch.file_size, "size_after": batch.position + keep,
            "clean_shutdown_marker_removed": marker}


def flip_byte_in_last_batch(directory: str, rng: random.Random | None = None,
                            fs: FileSystem | None = None) -> dict[str, Json]:
    """Flip every bit of one byte in the CRC-covered part of the active segment's last batch.

    Returns:
        What was done: segment, batch offsets, the file position and its old and new value.
    """
    files = fs or OsFileSystem()
    batch = last_batch(directory, files)
    position = batch.position + (rng or random.Random()).randrange(CRC_COVERED_FROM, batch.size)
    handle = files.open(batch.segment, create=False)
    try:
        old = handle.read_at(position, 1)[0]
        handle.write_at(position, bytes([old ^ 0xFF]))
        handle.fsync()
    finally:
        handle.close()
    marker = _remove_clean_marker(files, directory)
    return {"segment": batch.segment, "position": position, "batch_position": batch.position,
            "base_offset": batch.base_offset, "last_offset": batch.last_offset,
            "old_byte": old, "new_byte": old ^ 0xFF,
            "clean_shutdown_marker_removed": marker}


def _scan_last(files: FileSystem, path: str) -> LastBatch | None:
    """Walk the batch headers of one file; the last batch that fits whole, or None."""
    handle = files.open(path, create=False)
    try:
        size = handle.size()
        position, found = 0, None
        while position + HEADER.size <= size:
            h = HEADER.unpack(handle.read_at(position, HEADER.size))
            batch_size = LOG_OVERHEAD + h[H_LENGTH]
            if h[H_LENGTH] <= 0 or position + batch_size > size:
                break
            found = LastBatch(path, position, batch_size, h[H_BASE_OFFSET],
                              h[H_BASE_OFFSET] + h[H_LAST_DELTA], size)
            position += batch_size
        return found
    finally:
        handle.close()


def _remove_clean_marker(files: FileSystem, directory: str) -> bool:
    """A killed broker leaves no marker; a stopped one does and would skip recovery."""
    marker = join(directory, CLEAN_SHUTDOWN_FILE)
    if not files.exists(marker):
        return False
    files.delete(marker)
    return True
