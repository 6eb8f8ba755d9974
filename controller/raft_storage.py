"""Raft's durable state behind a narrow port: an in-memory version for simulation and a
crash-safe on-disk version for the controller shell.

Theory of operation. Raft needs three durable things (Figure 2): the hard state (term, vote,
commit), the log, and the latest snapshot. `RaftStorage` is the port; `persist_ready` is the
one function that writes a `Ready` through it, in the order Raft requires: snapshot, entries,
hard state, then `sync()`. Nothing a `Ready` asks to send may leave before it returns.

- `MemoryStorage` keeps a *durable* and a *visible* copy. Writes change the visible copy and
  queue an operation; `sync()` moves the queue to the durable copy. `crash(rng)` keeps a random
  prefix of the queued operations (the last one possibly torn: an append keeps only some of its
  entries) and forgets the rest, which is exactly what a power cut may leave behind.
- `FileStorage` (a directory):
    * `quorum-state`: the hard state as JSON, replaced atomically (write temp, fsync, rename,
      fsync the directory). Before it is replaced the log is fsynced, so a durable commit
      index never points past the durable log.
    * `snapshot`: a header (last index, last term, length, CRC32) and the data, replaced
      atomically the same way.
    * `raft.log`: append-only frames `[u32 length][u32 CRC32 of payload][payload]`, payload
      `[u64 index][u64 term][data]`. Opening scans the frames and truncates the file at the
      first torn or corrupt frame (short read, bad CRC, index not dense); nothing before it is
      lost. Compaction rewrites the surviving frames to a new file, atomically.

Neither class knows Raft's rules beyond one: a snapshot compacts the log behind it, keeping the
suffix only if the log holds the snapshot's (last index, last term) (Raft §7).
"""

from __future__ import annotations

import json
import os
import random
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from controller.raft_log import HardState, LogEntry, Snapshot

if TYPE_CHECKING:
    from controller.raft import Ready


class RaftStorage(Protocol):
    """The durable state of one Raft voter."""

    def load_hard_state(self) -> HardState | None: ...

    def load_snapshot(self) -> Snapshot | None: ...

    def load_entries(self) -> list[LogEntry]:
        """The entries after the snapshot, dense and in order."""
        ...

    def append_entries(self, entries: Sequence[LogEntry]) -> None:
        """Append; entries at or after `entries[0].index` are replaced (conflict cut)."""
        ...

    def truncate_suffix(self, index: int) -> None:
        """Drop every entry with index >= `index`."""
        ...

    def save_hard_state(self, hard_state: HardState) -> None: ...

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """Durable on return; compacts the log behind it (keeping a matching suffix)."""
        ...

    def compact_prefix(self, index: int) -> None:
        """Drop every entry with index <= `index` (covered by a durable snapshot)."""
        ...

    def sync(self) -> None:
        """Make every earlier append, truncation and hard-state save durable."""
        ...


def persist_ready(storage: RaftStorage, ready: Ready) -> None:
    """Write what `ready` asks to persist, in Raft's order, and make it durable."""
    if ready.snapshot is not None:
        storage.save_snapshot(ready.snapshot)
    if ready.entries:
        storage.append_entries(ready.entries)
    if ready.hard_state is not None:
        storage.save_hard_state(ready.hard_state)
    if ready.entries or ready.hard_state is not None:
        storage.sync()


# ---- in memory ---------------------------------------------------------------------------


@dataclass(slots=True)
class _MemState:
    hard_state: HardState | None = None
    snapshot: Snapshot | None = None
    entries: list[LogEntry] = field(default_factory=list)  # after the snapshot, dense

    def copy(self) -> _MemState:
        return _MemState(self.hard_state, self.snapshot, list(self.entries))

    @property
    def base(self) -> int:
        return self.snapshot.last_index if self.snapshot else 0

    def truncate(self, index: int) -> None:
        del self.entries[max(index - self.base - 1, 0) :]

    def append(self, entries: Sequence[LogEntry]) -> None:
        if not entries:
            return
        self.truncate(entries[0].index)
        assert entries[0].index == self.base + len(self.entries) + 1, "append leaves a gap"
        self.entries.extend(entries)

    def compact(self, index: int) -> None:
        del self.entries[: max(index - self.base, 0)]

    def install(self, snapshot: Snapshot) -> None:
        assert snapshot.last_index >= self.base, (snapshot.last_index, self.base)
        pos = snapshot.last_index - self.base - 1
        keep = 0 <= pos < len(self.entries) and self.entries[pos].term == snapshot.last_term
        self.entries = self.entries[pos + 1 :] if keep else []
        self.snapshot = snapshot


_Op = tuple[str, object]


class MemoryStorage:
    """`RaftStorage` in memory, for simulation: loses what was not synced on `crash`."""

    def __init__(self) -> None:
        self._durable = _MemState()
        self._visible = _MemState()
        self._pending: list[_Op] = []

    def load_hard_state(self) -> HardState | None:
        return self._visible.hard_state

    def load_snapshot(self) -> Snapshot | None:
        return self._visible.snapshot

    def load_entries(self) -> list[LogEntry]:
        return list(self._visible.entries)

    def append_entries(self, entries: Sequence[LogEntry]) -> None:
        self._visible.append(entries)
        self._pending.append(("append", tuple(entries)))

    def truncate_suffix(self, index: int) -> None:
        self._visible.truncate(index)
        self._pending.append(("truncate", index))

    def save_hard_state(self, hard_state: HardState) -> None:
        self._visible.hard_state = hard_state
        self._pending.append(("hard_state", hard_state))

    def save_snapshot(self, snapshot: Snapshot) -> None:
        self.sync()
        self._visible.install(snapshot)
        self._durable.install(snapshot)

    def compact_prefix(self, index: int) -> None:
        self._visible.compact(index)
        self._pending.append(("compact", index))

    def sync(self) -> None:
        for op in self._pending:
            self._apply(self._durable, op)
        self._pending.clear()

    def crash(self, rng: random.Random) -> int:
        """Power cut: keep a random prefix of the unsynced writes (the last maybe torn).

        Returns:
            How many unsynced operations were lost (a torn one counts as lost).
        """
        keep = rng.randint(0, len(self._pending))
        for op in self._pending[:keep]:
            self._apply(self._durable, op)
        if keep < len(self._pending):
            kind, arg = self._pending[keep]
            if kind == "append":
                assert isinstance(arg, tuple)
                part = rng.randint(0, len(arg))
                if part:
                    self._durable.append(arg[:part])
        lost = len(self._pending) - keep
        self._pending.clear()
        self._visible = self._durable.copy()
        return lost

    @property
    def unsynced_ops(self) -> int:
        return len(self._pending)

    @staticmethod
    def _apply(state: _MemState, op: _Op) -> None:
        kind, arg = op
        if kind == "append":
            assert isinstance(arg, tuple)
            state.append(arg)
        elif kind == "truncate":
            assert isinstance(arg, int)
            state.truncate(arg)
        elif kind == "compact":
            assert isinstance(arg, int)
            state.compact(arg)
        else:
            assert isinstance(arg, HardState)
            state.hard_state = arg


# ---- on disk -----------------------------------------------------------------------------

_FRAME = struct.Struct(">II")  # payload length, CRC32 of payload
_ENTRY = struct.Struct(">QQ")  # index, term
_SNAP = struct.Struct(">QQQI")  # last index, last term, data length, CRC32 of data

LOG_FILE = "raft.log"
HARD_STATE_FILE = "quorum-state"
SNAPSHOT_FILE = "snapshot"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_durable_dir(path: Path) -> None:
    """mkdir -p, then fsync the parent of each directory created, so a power cut cannot lose
    the directory (and with it the term and vote) after files in it were fsynced."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    for created in reversed(missing):
        _fsync_dir(created.parent)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write temp, fsync, rename over `path`, fsync the directory."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _encode_entry(e: LogEntry) -> bytes:
    payload = _ENTRY.pack(e.index, e.term) + e.data
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def _scan_log(buf: bytes) -> tuple[list[LogEntry], list[int], int]:
    """Parse frames; stop at the first torn or corrupt one.

    Returns:
        (entries, byte offset of each entry, length of the valid prefix)
    """
    entries: list[LogEntry] = []
    offsets: list[int] = []
    pos = 0
    while pos + _FRAME.size <= len(buf):
        length, crc = _FRAME.unpack_from(buf, pos)
        start, end = pos + _FRAME.size, pos + _FRAME.size + length
        if length < _ENTRY.size or end > len(buf):
            break
        payload = buf[start:end]
        if zlib.crc32(payload) != crc:
            break
        index, term = _ENTRY.unpack_from(payload, 0)
        if entries and (index != entries[-1].index + 1 or term < entries[-1].term):
            break
        entries.append(LogEntry(index=index, term=term, data=payload[_ENTRY.size :]))
        offsets.append(pos)
        pos = end
    return entries, offsets, pos


class FileStorage:
    """Crash-safe `RaftStorage` in a directory (see the module docstring for the layout)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self._dir = Path(directory)
        _make_durable_dir(self._dir)
        self._log_path = self._dir / LOG_FILE
        created = not self._log_path.exists()
        self._file = open(self._log_path, "a+b")  # noqa: SIM115 - owned until close()
        if created:
            _fsync_dir(self._dir)
        self._offsets: list[int] = []
        self._terms: list[int] = []
        self._first_index = 0  # index of the first frame in the file (0: empty)
        self._dirty = False
        self.recovered_bytes_dropped = self._recover()

    def close(self) -> None:
        self.sync()
        self._file.close()

    # -- loading --

    def _recover(self) -> int:
        """Scan the log, truncate a torn or corrupt tail. Returns the bytes dropped."""
        self._file.seek(0)
        buf = self._file.read()
        entries, offsets, valid = _scan_log(buf)
        dropped = len(buf) - valid
        if dropped:
            self._file.truncate(valid)
            self._file.flush()
            os.fsync(self._file.fileno())
        self._offsets = offsets
        self._terms = [e.term for e in entries]
        self._first_index = entries[0].index if entries else 0
        return dropped

    def load_hard_state(self) -> HardState | None:
        path = self._dir / HARD_STATE_FILE
        if not path.exists():
            return None
        doc = json.loads(path.read_text())
        return HardState(term=doc["term"], voted_for=doc["voted_for"], commit=doc["commit"])

    def load_snapshot(self) -> Snapshot | None:
        path = self._dir / SNAPSHOT_FILE
        if not path.exists():
            return None
        buf = path.read_bytes()
        last_index, last_term, length, crc = _SNAP.unpack_from(buf, 0)
        data = buf[_SNAP.size : _SNAP.size + length]
        # Written by atomic replace, so a mismatch is corruption, not a torn write.
        assert len(data) == length and zlib.crc32(data) == crc, "snapshot file is corrupt"
        return Snapshot(last_index=last_index, last_term=last_term, data=data)

    def load_entries(self) -> list[LogEntry]:
        self._file.seek(0)
        entries, _, _ = _scan_log(self._file.read())
        snap = self.load_snapshot()
        if snap is None:
            return entries
        # A crash between saving a snapshot and rewriting the log leaves entries it covers;
        # keep the suffix only if it continues the snapshot (Raft §7).
        if not entries:
            return []
        first = entries[0].index
        if first > snap.last_index + 1:
            return []
        if first == snap.last_index + 1:
            return entries
        pos = snap.last_index - first
        if pos < len(entries) and entries[pos].term == snap.last_term:
            return entries[pos + 1 :]
        return []

    # -- writing --

    @property
    def _last_index(self) -> int:
        return self._first_index + len(self._offsets) - 1 if self._offsets else 0

    def append_entries(self, entries: Sequence[LogEntry]) -> None:
        if not entries:
            return
        first = entries[0].index
        if self._offsets and first <= self._last_index:
            self.truncate_suffix(first)
        if self._offsets:
            assert first == self._last_index + 1, (first, self._last_index)
        else:
            self._first_index = first
        self._file.seek(0, os.SEEK_END)
        pos = self._file.tell()
        chunks = []
        for e in entries:
            frame = _encode_entry(e)
            self._offsets.append(pos)
            self._terms.append(e.term)
            pos += len(frame)
            chunks.append(frame)
        self._file.write(b"".join(chunks))
        self._dirty = True

    def truncate_suffix(self, index: int) -> None:
        if not self._offsets or index > self._last_index:
            return
        k = max(index - self._first_index, 0)
        self._file.flush()
        self._file.truncate(self._offsets[k])
        del self._offsets[k:]
        del self._terms[k:]
        if not self._offsets:
            self._first_index = 0
        self._dirty = True

    def save_hard_state(self, hard_state: HardState) -> None:
        self.sync()  # the durable commit index must never point past the durable log
        doc = {"term": hard_state.term, "voted_for": hard_state.voted_for,
               "commit": hard_state.commit}
        _atomic_write(self._dir / HARD_STATE_FILE, json.dumps(doc).encode())

    def save_snapshot(self, snapshot: Snapshot) -> None:
        self.sync()
        header = _SNAP.pack(
            snapshot.last_index, snapshot.last_term, len(snapshot.data), zlib.crc32(snapshot.data)
        )
        _atomic_write(self._dir / SNAPSHOT_FILE, header + snapshot.data)
        k = snapshot.last_index - self._first_index
        if self._offsets and 0 <= k < len(self._terms) and self._terms[k] == snapshot.last_term:
            self.compact_prefix(snapshot.last_index)
        else:
            self._rewrite_from(None)

    def compact_prefix(self, index: int) -> None:
        if not self._offsets or index < self._first_index:
            return
        self._rewrite_from(index + 1 if index < self._last_index else None)

    def sync(self) -> None:
        if self._dirty:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._dirty = False

    def _rewrite_from(self, index: int | None) -> None:
        """Atomically replace the log with its frames from `index` on (None: empty)."""
        self.sync()
        if index is None or not self._offsets:
            tail = b""
        else:
            self._file.seek(self._offsets[index - self._first_index])
            tail = self._file.read()
        self._file.close()
        _atomic_write(self._log_path, tail)
        self._file = open(self._log_path, "a+b")  # noqa: SIM115
        self._recover()
