"""murmur2 exactly as Kafka, key partitioning, and the KIP-794 built-in sticky partitioner."""

from __future__ import annotations

import random

import pytest

from clients.partitioner import (
    BuiltInPartitioner,
    build_load_stats,
    murmur2,
    partition_for_key,
    to_positive,
)

# Kafka's UtilsTest.testMurmur2 (KAFKA_SEMANTICS.md §2.1), with the derived partitions.
KAFKA_VECTORS = [
    (b"21", -973932308, 1173551340, 0, 0, 0),
    (b"foobar", -790332482, 1357151166, 0, 0, 6),
    (b"a-little-bit-long-string", -985981536, 1161502112, 2, 2, 8),
    (b"a-little-bit-longer-string", -1486304829, 661178819, 2, 5, 11),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971, 2088585677, 2, 5, 5),
    (b"abc", 479470107, 479470107, 0, 3, 3),
]

# librdkafka's rdmurmur2.c unit test (unsigned hex of the same function).
LIBRDKAFKA_VECTORS = [
    (b"kafka", 0xD067CF64),
    (b"giberish123456789", 0x8F552B0C),
    (b"1234", 0x9FC97B14),
    (b"234", 0xE7C009CA),
    (b"34", 0x873930DA),
    (b"4", 0x5A4B5CA1),
    (b"", 0x106E08D9),
]


@pytest.mark.parametrize("key, hashed, positive, p3, p6, p12", KAFKA_VECTORS)
def test_murmur2_matches_kafka_vectors_and_partitions(
    key: bytes, hashed: int, positive: int, p3: int, p6: int, p12: int
) -> None:
    assert murmur2(key) == hashed
    assert to_positive(murmur2(key)) == positive
    assert (partition_for_key(key, 3), partition_for_key(key, 6), partition_for_key(key, 12)) == (
        p3,
        p6,
        p12,
    )


@pytest.mark.parametrize("key, unsigned", LIBRDKAFKA_VECTORS)
def test_murmur2_matches_librdkafka_vectors(key: bytes, unsigned: int) -> None:
    assert murmur2(key) & 0xFFFFFFFF == unsigned
    assert -(2**31) <= murmur2(key) < 2**31  # a signed int32, as Java returns it


def test_to_positive_is_not_abs() -> None:
    # Key "21" with 3 partitions: abs() would give 2, Kafka gives 0.
    assert abs(murmur2(b"21")) % 3 == 2
    assert partition_for_key(b"21", 3) == 0
    assert to_positive(-(2**31)) == 0
    assert to_positive(-1) == 2**31 - 1


def test_key_partitioning_uses_every_partition_including_the_last() -> None:
    seen = {partition_for_key(str(i).encode(), 4) for i in range(200)}
    assert seen == {0, 1, 2, 3}


def test_sticky_partition_is_kept_until_batch_size_and_switch_allowed(seed: int) -> None:
    rng = random.Random(seed)
    part = BuiltInPartitioner(100, rng, adaptive=False)
    available = [0, 1, 2, 3]
    first = part.partition("t", 4, available)
    assert part.partition("t", 4, available) == first, f"seed={seed}"
    # 150 bytes >= batch.size but the batch is still incomplete: no switch.
    assert not part.update_partition_info("t", first, 150, False, 4, available)
    assert part.sticky_partition("t") == first
    # A full batch allows the switch.
    assert part.update_partition_info("t", first, 1, True, 4, available)
    assert part.produced_bytes("t") == 0


def test_sticky_partition_switches_unconditionally_at_twice_batch_size(seed: int) -> None:
    part = BuiltInPartitioner(100, random.Random(seed), adaptive=False)
    first = part.partition("t", 4, [0, 1, 2, 3])
    assert not part.update_partition_info("t", first, 199, False, 4, [0, 1, 2, 3])
    assert part.update_partition_info("t", first, 1, False, 4, [0, 1, 2, 3])


def test_appends_to_another_partition_do_not_count(seed: int) -> None:
    part = BuiltInPartitioner(100, random.Random(seed))
    first = part.partition("t", 4, [0, 1, 2, 3])
    other = (first + 1) % 4
    assert not part.update_partition_info("t", other, 1000, True, 4, [0, 1, 2, 3])
    assert part.produced_bytes("t") == 0


def test_uniform_choice_only_among_partitions_with_a_leader(seed: int) -> None:
    part = BuiltInPartitioner(100, random.Random(seed), adaptive=False)
    chosen = {part.next_partition("t", 6, [1, 4]) for _ in range(200)}
    assert chosen == {1, 4}, f"seed={seed}"


def test_any_partition_when_none_has_a_leader(seed: int) -> None:
    part = BuiltInPartitioner(100, random.Random(seed), adaptive=False)
    chosen = {part.next_partition("t", 3, []) for _ in range(200)}
    assert chosen == {0, 1, 2}, f"seed={seed}"


def test_adaptive_weights_example_from_kip_794() -> None:
    # Queue sizes 0, 3, 1 -> weights 4, 1, 3 -> cumulative table 4, 5, 8.
    stats = build_load_stats([0, 3, 1], [0, 1, 2], 3)
    assert stats is not None
    assert stats.cumulative_frequency_table == (4, 5, 8)
    assert stats.partition_ids == (0, 1, 2)


def test_adaptive_choice_follows_the_table(seed: int) -> None:
    part = BuiltInPartitioner(100, random.Random(seed))
    part.update_partition_load_stats("t", [0, 3, 1], [0, 1, 2], 3)
    counts = {0: 0, 1: 0, 2: 0}
    for _ in range(8000):
        counts[part.next_partition("t", 3, [0, 1, 2])] += 1
    # Expected 4/8, 1/8, 3/8 of 8000 = 4000, 1000, 3000.
    assert 3700 < counts[0] < 4300 and 800 < counts[1] < 1200 and 2700 < counts[2] < 3300, (
        f"seed={seed} counts={counts}"
    )


def test_random_value_on_a_table_boundary_picks_the_next_partition() -> None:
    class Fixed(random.Random):
        def getrandbits(self, k: int) -> int:
            return 4  # == table[0]: belongs to [4, 5), partition index 1

    part = BuiltInPartitioner(100, Fixed())
    part.update_partition_load_stats("t", [0, 3, 1], [0, 1, 2], 3)
    assert part.next_partition("t", 3, [0, 1, 2]) == 1


def test_load_stats_dropped_when_queues_equal_or_single_partition() -> None:
    assert build_load_stats([2, 2, 2], [0, 1, 2], 3) is None
    assert build_load_stats([0], [0], 1) is None
    assert build_load_stats([], [], 3) is None
    # Equal queues but a partition left out (no leader / unavailable): still weighted.
    assert build_load_stats([2, 2], [0, 2], 3) is not None


def test_load_stats_ignored_when_adaptive_is_off(seed: int) -> None:
    part = BuiltInPartitioner(100, random.Random(seed), adaptive=False)
    part.update_partition_load_stats("t", [0, 3, 1], [0, 1, 2], 3)
    assert part.load_stats("t") is None
