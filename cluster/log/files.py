"""The file ports the log storage engine writes through, with an OS and an in-memory version.

Theory of operation
-------------------
The log never calls `open()` or `os.*` itself. It asks a `FileSystem` for `SegmentFile`s and
does everything through these two small `typing.Protocol`s, so the same code runs on disk in a
broker and in memory in the deterministic simulation:

- `SegmentFile`: append at the end (the hot path, one `os.write` or `os.writev` per call), write
  at a position,
  read at a position, size, truncate, fsync, close. The file's size is tracked in Python, so
  `size()` costs no system call.
- `FileSystem`: list a directory, open, rename (atomic, replacing the target as POSIX does),
  delete, read a whole small file, `atomic_replace` (temp file + fsync + rename + directory
  fsync: how checkpoints are written, as Kafka's `CheckpointFile`), and directory fsync.

`OsFileSystem` is the real one (`os.open`, `os.write`, `os.pread`, `os.pwrite`, `os.fsync`).
`MemFileSystem` keeps bytes in memory and remembers, per file, what the last fsync made durable.
`crash()` then models a power loss or kernel crash: every file falls back to its durable bytes,
optionally keeping a random prefix of what was written since (a torn write, as page-cache
write-back is partial). `flip_bit()` models media corruption. Directory operations (create,
rename, delete) are treated as durable at once: a simplification (a journaling file system with
ordered metadata), documented here because `atomic_replace` still fsyncs the directory on disk.

A `MemFileSystem` is safe to use from a cleaner thread reading immutable files while the log's
thread appends elsewhere: every operation is a few dict/bytearray steps under the GIL.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

Buffer = bytes | bytearray | memoryview


class SegmentFile(Protocol):
    """What the log needs from one open file (a segment, an index being rebuilt, a snapshot)."""

    path: str

    def append(self, data: Buffer) -> int:
        """Write `data` at the end; return the position where it starts."""
        ...

    def append_parts(self, parts: Sequence[Buffer], size: int) -> int:
        """Append the concatenation of `parts` (`size` bytes in all) with one gathered write
        (`writev`); return the position where it starts. Saves copying a batch to change its
        first bytes."""
        ...

    def write_at(self, position: int, data: Buffer) -> None:
        """Overwrite (or extend) the file at `position`; the end moves if the write passes it."""
        ...

    def read_at(self, position: int, size: int) -> bytes:
        """Read up to `size` bytes at `position` (fewer at the end of the file)."""
        ...

    def size(self) -> int:
        ...

    def truncate(self, size: int) -> None:
        ...

    def fsync(self) -> None:
        ...

    def close(self) -> None:
        ...


class FileSystem(Protocol):
    """Directory-level operations. Paths are plain `str`; directories are created on demand."""

    def open(self, path: str, *, create: bool = True, truncate: bool = False) -> SegmentFile:
        """Open for read and write (creating it unless `create` is False)."""
        ...

    def exists(self, path: str) -> bool:
        ...

    def list_dir(self, path: str) -> list[str]:
        """File names (not paths) in a directory, sorted."""
        ...

    def make_dirs(self, path: str) -> None:
        ...

    def rename(self, src: str, dst: str) -> None:
        """Atomic rename; an existing `dst` is replaced."""
        ...

    def delete(self, path: str) -> None:
        """Remove a file; a missing file is not an error."""
        ...

    def read_file(self, path: str) -> bytes | None:
        """A whole (small) file, or None if it does not exist."""
        ...

    def atomic_replace(self, path: str, data: bytes) -> None:
        """Make `path` hold exactly `data`, old or new but never torn, durably."""
        ...

    def fsync_dir(self, path: str) -> None:
        ...


def join(directory: str, name: str) -> str:
    """Path join with '/' (both file systems use POSIX paths)."""
    return directory.rstrip("/") + "/" + name


# --------------------------------------------------------------------------------------------
# On disk
# --------------------------------------------------------------------------------------------


class OsFile:
    """An OS file opened O_RDWR. Appends use `os.write` at the tracked end position.

    The descriptor's own position is kept equal to `_size` (after open, truncate and every
    append), so an append is a single `os.write` system call: no seek, no `O_APPEND` (which would
    break `pwrite` on Linux).
    """

    __slots__ = ("path", "_fd", "_size")

    def __init__(self, path: str, *, create: bool = True, truncate: bool = False) -> None:
        flags = os.O_RDWR
        if create:
            flags |= os.O_CREAT
        if truncate:
            flags |= os.O_TRUNC
        self.path = path
        self._fd = os.open(path, flags, 0o644)
        self._size = os.lseek(self._fd, 0, os.SEEK_END)

    def append(self, data: Buffer) -> int:
        position = self._size
        written = os.write(self._fd, data)
        if written != len(data):  # rare for regular files (signals, full disk): finish the job
            view = memoryview(data)
            while written < len(view):
                written += os.write(self._fd, view[written:])
        self._size = position + written
        return position

    def append_parts(self, parts: Sequence[Buffer], size: int) -> int:
        position = self._size
        written = os.writev(self._fd, parts)
        if written != size:  # a short gathered write: finish with the rest, flattened
            rest = memoryview(b"".join(parts))[written:]
            while rest:
                rest = rest[os.write(self._fd, rest):]
        self._size = position + size
        return position

    def write_at(self, position: int, data: Buffer) -> None:
        view = memoryview(data)
        done = 0
        while done < len(view):
            done += os.pwrite(self._fd, view[done:], position + done)
        if position + done > self._size:
            self._size = position + done
            os.lseek(self._fd, self._size, os.SEEK_SET)

    def read_at(self, position: int, size: int) -> bytes:
        return os.pread(self._fd, size, position)

    def size(self) -> int:
        return self._size

    def truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)
        self._size = size
        os.lseek(self._fd, size, os.SEEK_SET)

    def fsync(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class OsFileSystem:
    """The real file system."""

    def open(self, path: str, *, create: bool = True, truncate: bool = False) -> OsFile:
        return OsFile(path, create=create, truncate=truncate)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def list_dir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def make_dirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def rename(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def delete(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def read_file(self, path: str) -> bytes | None:
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    def atomic_replace(self, path: str, data: bytes) -> None:
        # Kafka's CheckpointFile: write a temp file, fsync it, rename over, fsync the directory.
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        self.fsync_dir(os.path.dirname(path) or ".")

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------------------------
# In memory (simulation and tests)
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class MemInode:
    """A file's bytes, and the bytes the last fsync made durable."""

    data: bytearray = field(default_factory=bytearray)
    durable: bytes = b""


class MemFile:
    """An open handle on a `MemInode`. Handles stay usable after their name is renamed or deleted,
    as POSIX file descriptors do."""

    __slots__ = ("path", "_inode", "_closed")

    def __init__(self, path: str, inode: MemInode) -> None:
        self.path = path
        self._inode = inode
        self._closed = False

    def append(self, data: Buffer) -> int:
        assert not self._closed, f"append to closed {self.path}"
        position = len(self._inode.data)
        self._inode.data += data
        return position

    def append_parts(self, parts: Sequence[Buffer], size: int) -> int:
        position = self.append(b"".join(parts))
        assert len(self._inode.data) == position + size
        return position

    def write_at(self, position: int, data: Buffer) -> None:
        assert not self._closed, f"write to closed {self.path}"
        buf = self._inode.data
        if position > len(buf):
            buf.extend(bytes(position - len(buf)))
        buf[position:position + len(data)] = data

    def read_at(self, position: int, size: int) -> bytes:
        assert not self._closed, f"read from closed {self.path}"
        return bytes(self._inode.data[position:position + size])

    def size(self) -> int:
        return len(self._inode.data)

    def truncate(self, size: int) -> None:
        buf = self._inode.data
        if size < len(buf):
            del buf[size:]
        else:
            buf.extend(bytes(size - len(buf)))

    def fsync(self) -> None:
        self._inode.durable = bytes(self._inode.data)

    def close(self) -> None:
        self._closed = True


class MemFileSystem:
    """An in-memory file system that can crash (dropping or tearing unsynced bytes) and corrupt."""

    def __init__(self) -> None:
        self._files: dict[str, MemInode] = {}
        self._dirs: set[str] = set()
        self.fsync_count = 0  # how many file fsyncs happened (tests check the flush policy)

    # -- the FileSystem port --

    def open(self, path: str, *, create: bool = True, truncate: bool = False) -> MemFile:
        inode = self._files.get(path)
        if inode is None:
            if not create:
                raise FileNotFoundError(path)
            inode = self._files[path] = MemInode()
        elif truncate:
            del inode.data[:]
        return _CountingMemFile(path, inode, self)

    def exists(self, path: str) -> bool:
        return path in self._files or path.rstrip("/") in self._dirs

    def list_dir(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        return sorted(p[len(prefix):] for p in self._files
                      if p.startswith(prefix) and "/" not in p[len(prefix):])

    def make_dirs(self, path: str) -> None:
        self._dirs.add(path.rstrip("/"))

    def rename(self, src: str, dst: str) -> None:
        try:
            self._files[dst] = self._files.pop(src)
        except KeyError:
            raise FileNotFoundError(src) from None

    def delete(self, path: str) -> None:
        self._files.pop(path, None)

    def read_file(self, path: str) -> bytes | None:
        inode = self._files.get(path)
        return None if inode is None else bytes(inode.data)

    def atomic_replace(self, path: str, data: bytes) -> None:
        self._files[path] = MemInode(bytearray(data), bytes(data))

    def fsync_dir(self, path: str) -> None:
        return None

    # -- faults --

    def paths(self) -> Iterator[str]:
        return iter(sorted(self._files))

    def unsynced_bytes(self, path: str) -> int:
        inode = self._files[path]
        return max(0, len(inode.data) - len(inode.durable)) if inode.data.startswith(
            inode.durable) else len(inode.data)

    def crash(self, rng: random.Random | None = None) -> None:
        """Lose what no fsync covered. With `rng`, each file instead keeps a random prefix of its
        unsynced appended bytes (a torn write); without it, files revert to their durable bytes.
        Open handles must not be used afterwards: reopen the log on this file system.
        """
        for inode in self._files.values():
            current = bytes(inode.data)
            kept = inode.durable
            if rng is not None and current.startswith(kept) and len(current) > len(kept):
                kept = current[:len(kept) + rng.randrange(len(current) - len(kept) + 1)]
            inode.data = bytearray(kept)
            inode.durable = kept

    def tear_last_write(self, path: str, keep_bytes: int) -> None:
        """Cut `path` to `keep_bytes` as if its last write only partly reached the disk."""
        inode = self._files[path]
        del inode.data[keep_bytes:]
        inode.durable = bytes(inode.data)

    def flip_bit(self, path: str, position: int, bit: int = 0) -> None:
        """Flip one bit of `path` (media corruption), in the current and the durable bytes."""
        inode = self._files[path]
        inode.data[position] ^= 1 << bit
        durable = bytearray(inode.durable)
        if position < len(durable):
            durable[position] ^= 1 << bit
            inode.durable = bytes(durable)


class _CountingMemFile(MemFile):
    __slots__ = ("_fs",)

    def __init__(self, path: str, inode: MemInode, fs: MemFileSystem) -> None:
        super().__init__(path, inode)
        self._fs = fs

    def fsync(self) -> None:
        self._fs.fsync_count += 1
        super().fsync()
