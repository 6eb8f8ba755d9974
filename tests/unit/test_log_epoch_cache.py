"""The leader-epoch cache (KIP-101, KIP-279) and its checkpoint file."""

from __future__ import annotations

from cluster.log.epoch_cache import LeaderEpochCache
from cluster.log.files import MemFileSystem

PATH = "/d/t-0/leader-epoch-checkpoint"


def _cache(*entries: tuple[int, int]) -> LeaderEpochCache:
    cache = LeaderEpochCache(MemFileSystem(), PATH)
    for epoch, start in entries:
        cache.assign(epoch, start)
    return cache


def test_end_offset_for_epoch_follows_kip_279() -> None:
    cache = _cache((1, 0), (3, 100), (5, 250))
    leo = 300
    assert cache.end_offset_for_epoch(5, leo) == (5, 300)  # latest epoch: the LEO
    assert cache.end_offset_for_epoch(3, leo) == (3, 250)
    assert cache.end_offset_for_epoch(4, leo) == (3, 250)  # largest epoch <= 4, its end
    assert cache.end_offset_for_epoch(2, leo) == (1, 100)
    assert cache.end_offset_for_epoch(0, leo) == (0, 0)  # below every epoch: first start
    assert cache.end_offset_for_epoch(6, leo) == (-1, -1)  # unknown, above the latest
    assert cache.end_offset_for_epoch(-1, leo) == (-1, -1)
    assert _cache().end_offset_for_epoch(1, 0) == (-1, -1)


def test_assign_ignores_same_epoch_later_offset_and_drops_conflicting_entries() -> None:
    cache = _cache((1, 0), (2, 10))
    assert not cache.assign(2, 15)
    assert cache.assign(3, 8)  # start below epoch 2's: epoch 2 was a truncated leftover
    assert cache.entries() == [(1, 0), (3, 8)]


def test_truncate_from_end_and_start() -> None:
    cache = _cache((1, 0), (2, 10), (3, 20))
    cache.truncate_from_end(20)
    assert cache.entries() == [(1, 0), (2, 10)]
    cache.truncate_from_start(15)
    assert cache.entries() == [(2, 15)]
    assert not cache.truncate_from_start(15)


def test_checkpoint_round_trip_in_kafka_text_format() -> None:
    fs = MemFileSystem()
    cache = LeaderEpochCache(fs, PATH)
    cache.assign(0, 0)
    cache.assign(4, 120)
    assert fs.read_file(PATH) == b"0\n2\n0 0\n4 120\n"
    loaded = LeaderEpochCache.load(fs, PATH)
    assert loaded is not None and loaded.entries() == [(0, 0), (4, 120)]


def test_malformed_checkpoint_loads_as_none() -> None:
    fs = MemFileSystem()
    fs.atomic_replace(PATH, b"0\n3\n0 0\n")
    assert LeaderEpochCache.load(fs, PATH) is None
    fs.atomic_replace(PATH, b"0\n2\n4 0\n1 5\n")  # epochs not increasing
    assert LeaderEpochCache.load(fs, PATH) is None
    assert LeaderEpochCache.load(fs, "/nowhere") is None
