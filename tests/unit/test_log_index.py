"""Offset and time indexes: Kafka's sparse lookups, truncation and the file format."""

from __future__ import annotations

import pytest

from cluster.log.index import CorruptIndexError, OffsetIndex
from cluster.log.time_index import TimeIndex


def test_offset_index_lookup_is_greatest_entry_at_or_below_target() -> None:
    index = OffsetIndex(100, 10)
    index.append(105, 4200)
    index.append(112, 9000)
    assert index.lookup(99) == (100, 0)
    assert index.lookup(104) == (100, 0)
    assert index.lookup(105) == (105, 4200)
    assert index.lookup(111) == (105, 4200)
    assert index.lookup(10_000) == (112, 9000)


def test_offset_index_file_format_is_big_endian_relative_offset_then_position() -> None:
    index = OffsetIndex(100, 10)
    index.append(105, 4200)
    assert index.to_bytes() == (5).to_bytes(4, "big") + (4200).to_bytes(4, "big")
    again = OffsetIndex.from_bytes(100, index.to_bytes(), 10, log_size=5000)
    assert again.lookup(106) == (105, 4200)


@pytest.mark.parametrize("data", [
    b"\x00" * 7,  # partial entry
    (5).to_bytes(4, "big") + (10).to_bytes(4, "big") + (4).to_bytes(4, "big")
    + (20).to_bytes(4, "big"),  # offsets going back
    (5).to_bytes(4, "big") + (6000).to_bytes(4, "big"),  # position past the log
])
def test_offset_index_sanity_check_rejects_broken_files(data: bytes) -> None:
    with pytest.raises(CorruptIndexError):
        OffsetIndex.from_bytes(100, data, 10, log_size=5000)


def test_offset_index_truncation_by_offset_and_position() -> None:
    index = OffsetIndex(0, 10)
    for offset, position in ((10, 100), (20, 200), (30, 300)):
        index.append(offset, position)
    index.truncate_to_offset(20)
    assert index.last_entry == (10, 100)
    index.append(25, 250)
    index.truncate_to_position(250)
    assert index.last_entry == (10, 100) and len(index) == 1


def test_time_index_only_grows_and_looks_up_greatest_timestamp_at_or_below() -> None:
    index = TimeIndex(50, 10)
    index.maybe_append(1000, 55)
    index.maybe_append(1000, 60)  # not larger: ignored
    index.maybe_append(900, 61)  # smaller: ignored
    index.maybe_append(2000, 70)
    assert len(index) == 2
    assert index.lookup(999) == (-1, 50)
    assert index.lookup(1500) == (1000, 55)
    assert index.lookup(2000) == (2000, 70)
    again = TimeIndex.from_bytes(50, index.to_bytes(), 10, next_offset=71)
    assert again.last_entry == (2000, 70)
    index.truncate_to_offset(70)
    assert index.last_entry == (1000, 55)


def test_time_index_rejects_offsets_past_the_segment() -> None:
    index = TimeIndex(50, 10)
    index.maybe_append(1000, 55)
    with pytest.raises(CorruptIndexError):
        TimeIndex.from_bytes(50, index.to_bytes(), 10, next_offset=55)
