"""Raft storage: the in-memory port loses exactly what was not synced; the on-disk one survives
torn and corrupt tails, and snapshots compact it."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from controller.raft_log import HardState, LogEntry, Snapshot
from controller.raft_storage import LOG_FILE, FileStorage, MemoryStorage


def entries(lo: int, hi: int, term: int = 1) -> list[LogEntry]:
    return [LogEntry(i, term, b"data-%d" % i) for i in range(lo, hi + 1)]


def test_memory_storage_crash_keeps_synced_and_loses_unsynced() -> None:
    st = MemoryStorage()
    st.append_entries(entries(1, 3))
    st.save_hard_state(HardState(1, 1, 2))
    st.sync()
    st.append_entries(entries(4, 6))
    st.save_hard_state(HardState(2, None, 3))
    for seed in range(50):
        probe = MemoryStorage()
        probe.append_entries(entries(1, 3))
        probe.save_hard_state(HardState(1, 1, 2))
        probe.sync()
        probe.append_entries(entries(4, 6))
        probe.save_hard_state(HardState(2, None, 3))
        probe.crash(random.Random(seed))
        got = [e.index for e in probe.load_entries()]
        assert got[:3] == [1, 2, 3] and got == list(range(1, len(got) + 1))  # a prefix survives
        hs = probe.load_hard_state()
        assert hs in (HardState(1, 1, 2), HardState(2, None, 3))
        if hs == HardState(2, None, 3):
            assert got == [1, 2, 3, 4, 5, 6]  # later writes imply earlier ones


def test_memory_storage_conflicting_append_replaces_suffix() -> None:
    st = MemoryStorage()
    st.append_entries(entries(1, 5, term=1))
    st.append_entries(entries(3, 4, term=2))
    st.sync()
    assert [(e.index, e.term) for e in st.load_entries()] == [(1, 1), (2, 1), (3, 2), (4, 2)]


def test_file_storage_round_trip(tmp_path: Path) -> None:
    st = FileStorage(tmp_path)
    st.append_entries(entries(1, 10))
    st.save_hard_state(HardState(term=3, voted_for=2, commit=7))
    st.append_entries(entries(8, 9, term=3))  # conflict cut at 8
    st.sync()
    st.close()
    again = FileStorage(tmp_path)
    assert again.load_hard_state() == HardState(term=3, voted_for=2, commit=7)
    assert [(e.index, e.term) for e in again.load_entries()] == [(i, 1) for i in range(1, 8)] + [
        (8, 3), (9, 3)
    ]
    assert again.load_snapshot() is None
    assert again.recovered_bytes_dropped == 0


@pytest.mark.parametrize("cut", [1, 5, 9, 20])
def test_file_storage_truncates_a_torn_tail(tmp_path: Path, cut: int) -> None:
    st = FileStorage(tmp_path)
    st.append_entries(entries(1, 5))
    st.sync()
    st.close()
    path = tmp_path / LOG_FILE
    size = path.stat().st_size
    with open(path, "r+b") as f:  # the last frame only partly reached the disk
        f.truncate(size - cut)
    again = FileStorage(tmp_path)
    assert [e.index for e in again.load_entries()] == [1, 2, 3, 4]
    assert again.recovered_bytes_dropped > 0
    # Appending after recovery continues cleanly from the cut.
    again.append_entries(entries(5, 6, term=2))
    again.sync()
    again.close()
    assert [(e.index, e.term) for e in FileStorage(tmp_path).load_entries()][-2:] == [
        (5, 2), (6, 2)
    ]


def test_file_storage_drops_everything_from_a_corrupt_frame(tmp_path: Path) -> None:
    st = FileStorage(tmp_path)
    st.append_entries(entries(1, 3))
    st.sync()
    st.close()
    path = tmp_path / LOG_FILE
    buf = bytearray(path.read_bytes())
    frame = len(buf) // 3
    buf[frame + 20] ^= 0xFF  # flip a byte inside entry 2's payload
    path.write_bytes(bytes(buf))
    again = FileStorage(tmp_path)
    assert [e.index for e in again.load_entries()] == [1]
    assert path.stat().st_size == frame  # truncated on disk, not only ignored


def test_file_storage_garbage_after_the_tail_is_truncated(tmp_path: Path) -> None:
    st = FileStorage(tmp_path)
    st.append_entries(entries(1, 2))
    st.sync()
    st.close()
    with open(tmp_path / LOG_FILE, "ab") as f:
        f.write(b"\x00\x00\x01\x00garbage")
    assert [e.index for e in FileStorage(tmp_path).load_entries()] == [1, 2]


def test_file_storage_snapshot_compacts_and_survives_restart(tmp_path: Path) -> None:
    st = FileStorage(tmp_path)
    st.append_entries(entries(1, 10))
    st.sync()
    st.save_snapshot(Snapshot(last_index=6, last_term=1, data=b"image"))
    assert [e.index for e in st.load_entries()] == [7, 8, 9, 10]
    st.append_entries(entries(11, 12, term=2))
    st.sync()
    st.close()
    again = FileStorage(tmp_path)
    assert again.load_snapshot() == Snapshot(6, 1, b"image")
    assert [e.index for e in again.load_entries()] == [7, 8, 9, 10, 11, 12]
    # A snapshot that does not match the log (installed from a leader) discards the log.
    again.save_snapshot(Snapshot(last_index=20, last_term=5, data=b"newer"))
    assert again.load_entries() == []
    again.append_entries(entries(21, 21, term=5))
    again.sync()
    assert [e.index for e in FileStorage(tmp_path).load_entries()] == [21]


def test_file_storage_ignores_log_covered_by_snapshot_after_crash(tmp_path: Path) -> None:
    # A crash between saving the snapshot and rewriting the log leaves covered entries.
    st = FileStorage(tmp_path)
    st.append_entries(entries(1, 5))
    st.sync()
    st.close()
    from controller.raft_storage import SNAPSHOT_FILE, _atomic_write, _SNAP
    import zlib

    data = b"img"
    _atomic_write(tmp_path / SNAPSHOT_FILE, _SNAP.pack(3, 1, len(data), zlib.crc32(data)) + data)
    assert [e.index for e in FileStorage(tmp_path).load_entries()] == [4, 5]
    _atomic_write(tmp_path / SNAPSHOT_FILE, _SNAP.pack(3, 9, len(data), zlib.crc32(data)) + data)
    assert FileStorage(tmp_path).load_entries() == []  # term mismatch: nothing continues it


def test_raft_node_restarts_from_file_storage(tmp_path: Path) -> None:
    from controller.raft import RaftConfig, RaftNode, Role
    from controller.raft_storage import persist_ready

    cfg = RaftConfig(node_id=1, voters=(1,), election_timeout_ms=100)
    st = FileStorage(tmp_path)
    node = RaftNode.from_storage(cfg, st, rng=random.Random(1), now_ms=0)
    node.tick(500)
    assert node.role is Role.LEADER
    for k in range(3):
        node.propose(b"rec%d" % k)
    while node.has_ready():
        ready = node.ready()
        persist_ready(st, ready)
        node.advance(ready)
    assert node.commit_index == 4
    st.close()
    again = RaftNode.from_storage(cfg, FileStorage(tmp_path), rng=random.Random(2), now_ms=0)
    assert (again.term, again.voted_for, again.commit_index, again.last_index) == (1, 1, 4, 4)
    assert [e.data for e in again.ready().committed] == [b"", b"rec0", b"rec1", b"rec2"]


def test_file_storage_makes_a_new_directory_itself_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The term and vote live in files inside the directory; if the directory's own entry in
    # its parent is lost on a power cut, the node restarts blank and may vote twice in a term.
    import controller.raft_storage as rs

    synced: list[Path] = []
    real = rs._fsync_dir

    def recording_fsync_dir(path: Path) -> None:
        synced.append(Path(path))
        real(path)

    monkeypatch.setattr(rs, "_fsync_dir", recording_fsync_dir)
    st = FileStorage(tmp_path / "data" / "raft")
    st.close()
    assert tmp_path / "data" in synced and tmp_path in synced, synced
    synced.clear()
    FileStorage(tmp_path / "data" / "raft").close()  # existing: nothing new to make durable
    assert tmp_path not in synced and tmp_path / "data" not in synced
