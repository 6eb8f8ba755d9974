"""The file ports: the OS implementation and the in-memory one with its crash faults."""

from __future__ import annotations

import random
from pathlib import Path

from cluster.log.files import MemFileSystem, OsFileSystem


def test_os_file_appends_at_the_tracked_end_and_reads_at_positions(tmp_path: Path) -> None:
    fs = OsFileSystem()
    f = fs.open(str(tmp_path / "a.log"))
    assert f.append(b"hello") == 0
    assert f.append(memoryview(b" world")) == 5
    f.write_at(0, b"J")
    assert f.read_at(0, 100) == b"Jello world"
    f.truncate(5)
    assert f.append(b"!") == 5
    assert f.size() == 6 and f.read_at(0, 6) == b"Jello!"
    f.fsync()
    f.close()
    assert fs.open(str(tmp_path / "a.log"), create=False).size() == 6


def test_os_atomic_replace_rename_list_delete(tmp_path: Path) -> None:
    fs = OsFileSystem()
    path = str(tmp_path / "cp")
    fs.atomic_replace(path, b"one")
    fs.atomic_replace(path, b"two")
    assert fs.read_file(path) == b"two"
    fs.rename(path, path + ".x")
    assert fs.list_dir(str(tmp_path)) == ["cp.x"]
    fs.delete(path + ".x")
    fs.delete(path + ".x")  # missing is fine
    assert fs.read_file(path) is None


def test_mem_crash_drops_unsynced_bytes() -> None:
    fs = MemFileSystem()
    f = fs.open("/d/a")
    f.append(b"durable")
    f.fsync()
    f.append(b"-lost")
    assert fs.unsynced_bytes("/d/a") == 5
    fs.crash()
    assert fs.read_file("/d/a") == b"durable"


def test_mem_crash_with_rng_keeps_a_torn_prefix_of_unsynced_bytes() -> None:
    fs = MemFileSystem()
    f = fs.open("/d/a")
    f.append(b"abc")
    f.fsync()
    f.append(b"0123456789")
    fs.crash(random.Random(3))
    data = fs.read_file("/d/a")
    assert data is not None and data.startswith(b"abc") and b"abc0123456789".startswith(data)


def test_mem_tear_and_flip_bit() -> None:
    fs = MemFileSystem()
    f = fs.open("/d/a")
    f.append(b"\x00\x00\x00\x00")
    fs.flip_bit("/d/a", 2, bit=3)
    assert fs.read_file("/d/a") == b"\x00\x00\x08\x00"
    fs.tear_last_write("/d/a", 1)
    assert fs.read_file("/d/a") == b"\x00"


def test_mem_handles_survive_rename_like_posix_descriptors() -> None:
    fs = MemFileSystem()
    f = fs.open("/d/a")
    f.append(b"x")
    fs.rename("/d/a", "/d/b")
    assert f.read_at(0, 1) == b"x"
    assert fs.list_dir("/d") == ["b"]
