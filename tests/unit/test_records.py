"""RecordBatch v2 codec (proto/records.py) against KAFKA_SEMANTICS.md §1: the worked examples
byte for byte, varints, the header layout, round trips for every codec, and corruption."""

from __future__ import annotations

import random
import struct

import pytest
from crc32c import crc32c
from hypothesis import given, settings
from hypothesis import strategies as st

from proto.errors import (
    CorruptMessageError,
    InvalidRecordError,
    InvalidTimestampError,
    UnsupportedCompressionTypeError,
)
from proto.records import (
    ATTRIBUTES_OFFSET,
    BASE_OFFSET_OFFSET,
    BASE_SEQUENCE_OFFSET,
    BASE_TIMESTAMP_OFFSET,
    CRC_OFFSET,
    LAST_OFFSET_DELTA_OFFSET,
    LENGTH_OFFSET,
    LOG_OVERHEAD,
    MAGIC,
    MAGIC_OFFSET,
    MAX_TIMESTAMP_OFFSET,
    NO_PRODUCER_ID,
    PARTITION_LEADER_EPOCH_OFFSET,
    PRODUCER_EPOCH_OFFSET,
    PRODUCER_ID_OFFSET,
    RECORD_BATCH_OVERHEAD,
    RECORDS_COUNT_OFFSET,
    Compression,
    Record,
    RecordBatch,
    RecordBatchBuilder,
    TimestampType,
    assign_offset_and_epoch,
    decode_consumer_records,
    decode_varint,
    encode_varint,
    iter_batches,
    peek_batch_size,
)

T = 1_700_000_000_000

EXAMPLE_1 = bytes.fromhex(
    "000000000000000000000040ffffffff02db5e9cdd0000000000000000018bcfe568000000018bcfe56800"
    "ffffffffffffffffffffffffffff000000011c000000066b65790a76616c756500"
)
EXAMPLE_2 = bytes.fromhex(
    "000000000000000000000047ffffffff02698b64f80000000000010000018bcfe568000000018bcfe56805"
    "00000000000003e8000000000000000000020e000000010261001a000a02026b0462620202680276"
)


def _example_1() -> bytes:
    builder = RecordBatchBuilder()
    builder.append(b"value", key=b"key", timestamp_ms=T)
    return builder.build()


def _example_2() -> bytes:
    builder = RecordBatchBuilder(producer_id=1000, producer_epoch=0, base_sequence=0)
    builder.append(b"a", timestamp_ms=T)
    builder.append(b"bb", key=b"k", headers=[("h", b"v")], timestamp_ms=T + 5)
    return builder.build()


# --- Worked examples (§1.5) -------------------------------------------------------------------


def test_example_1_encodes_byte_for_byte() -> None:
    assert _example_1() == EXAMPLE_1
    assert len(EXAMPLE_1) == 76


def test_example_2_encodes_byte_for_byte() -> None:
    assert _example_2() == EXAMPLE_2
    assert len(EXAMPLE_2) == 83


def test_example_1_decodes() -> None:
    batch = RecordBatch(EXAMPLE_1)
    batch.validate()
    assert batch.base_offset == 0
    assert batch.batch_length == 64
    assert batch.size_in_bytes == 76
    assert batch.partition_leader_epoch == -1
    assert batch.magic == MAGIC
    assert batch.crc == 0xDB5E9CDD == batch.compute_crc()
    assert batch.attributes == 0
    assert batch.compression is Compression.NONE
    assert batch.timestamp_type is TimestampType.CREATE_TIME
    assert not batch.is_transactional and not batch.is_control and not batch.has_delete_horizon
    assert batch.last_offset_delta == 0
    assert batch.last_offset == 0 and batch.next_offset == 1
    assert batch.base_timestamp == batch.max_timestamp == T
    assert batch.producer_id == NO_PRODUCER_ID
    assert batch.producer_epoch == -1
    assert batch.base_sequence == -1 == batch.last_sequence
    assert batch.records_count == 1
    assert list(batch) == [Record(0, T, b"key", b"value", ())]


def test_example_2_decodes_with_header_and_null_key() -> None:
    batch = RecordBatch(EXAMPLE_2)
    batch.validate_for_append()
    assert batch.crc == 0x698B64F8
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (1000, 0, 0)
    assert batch.last_sequence == 1
    assert batch.max_timestamp == T + 5
    assert batch.records() == [
        Record(0, T, None, b"a", ()),
        Record(1, T + 5, b"k", b"bb", (("h", b"v"),)),
    ]


@pytest.mark.parametrize("kind", ["bytearray", "memoryview"])
def test_assigning_offset_and_epoch_keeps_the_crc(kind: str) -> None:
    buf = bytearray(EXAMPLE_1)
    batch = RecordBatch(buf if kind == "bytearray" else memoryview(buf))
    batch.set_base_offset(42)
    batch.set_partition_leader_epoch(7)
    assert bytes(buf[:21]).hex() == "000000000000002a000000400000000702db5e9cdd"
    assert buf[21:] == EXAMPLE_1[21:]
    batch.validate()
    assert batch.records()[0].offset == 42


def test_assign_offset_and_epoch_at_a_position() -> None:
    buf = bytearray(EXAMPLE_2 + EXAMPLE_1)
    assign_offset_and_epoch(buf, len(EXAMPLE_2), 42, 7)
    assert buf[len(EXAMPLE_2) :].hex().startswith("000000000000002a000000400000000702db5e9cdd")
    assert buf[: len(EXAMPLE_2)] == EXAMPLE_2
    second = list(iter_batches(buf))[1]
    assert (second.base_offset, second.partition_leader_epoch) == (42, 7)


def test_setters_refuse_read_only_bytes() -> None:
    with pytest.raises(TypeError, match="read-only"):
        RecordBatch(EXAMPLE_1).set_base_offset(1)


def test_log_append_time_sets_bit_3_and_recomputes_crc() -> None:
    buf = bytearray(EXAMPLE_2)
    batch = RecordBatch(buf)
    batch.set_max_timestamp_log_append(T + 1000)
    batch.validate()
    assert batch.timestamp_type is TimestampType.LOG_APPEND_TIME
    assert batch.max_timestamp == T + 1000
    # Readers report the append time as every record's timestamp (§1.6).
    assert [(r.timestamp, r.timestamp_type) for r in batch] == [
        (T + 1000, TimestampType.LOG_APPEND_TIME)
    ] * 2
    with pytest.raises(InvalidTimestampError):
        batch.validate_for_append()


# --- CRC, varints, layout ----------------------------------------------------------------------


def test_crc32c_vectors() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"Some String") == 608512271


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, "00"), (-1, "01"), (1, "02"), (3, "06"), (5, "0a"), (7, "0e"), (14, "1c"), (64, "8001")],
)
def test_varint_examples(value: int, encoded: str) -> None:
    assert encode_varint(value).hex() == encoded
    assert decode_varint(bytes.fromhex(encoded), 0) == (value, len(encoded) // 2)


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_varlong_round_trips(value: int) -> None:
    encoded = encode_varint(value)
    assert len(encoded) <= 10
    assert decode_varint(encoded + b"\xff", 0) == (value, len(encoded))


def test_varint_truncated_or_too_long_raises() -> None:
    with pytest.raises(CorruptMessageError):
        decode_varint(b"\x80\x80", 0)
    with pytest.raises(CorruptMessageError):
        decode_varint(b"\xff" * 11, 0)


def test_header_offsets_and_sizes_match_the_layout() -> None:
    # (field, offset, struct format) in DefaultRecordBatch order; each field ends where the
    # next begins and the header is 61 bytes.
    layout = [
        ("baseOffset", BASE_OFFSET_OFFSET, ">q"),
        ("batchLength", LENGTH_OFFSET, ">i"),
        ("partitionLeaderEpoch", PARTITION_LEADER_EPOCH_OFFSET, ">i"),
        ("magic", MAGIC_OFFSET, ">b"),
        ("crc", CRC_OFFSET, ">I"),
        ("attributes", ATTRIBUTES_OFFSET, ">h"),
        ("lastOffsetDelta", LAST_OFFSET_DELTA_OFFSET, ">i"),
        ("baseTimestamp", BASE_TIMESTAMP_OFFSET, ">q"),
        ("maxTimestamp", MAX_TIMESTAMP_OFFSET, ">q"),
        ("producerId", PRODUCER_ID_OFFSET, ">q"),
        ("producerEpoch", PRODUCER_EPOCH_OFFSET, ">h"),
        ("baseSequence", BASE_SEQUENCE_OFFSET, ">i"),
        ("recordsCount", RECORDS_COUNT_OFFSET, ">i"),
    ]
    position = 0
    for name, offset, fmt in layout:
        assert offset == position, name
        position += struct.calcsize(fmt)
    assert position == RECORD_BATCH_OVERHEAD == 61
    assert LOG_OVERHEAD == 12
    fields = [struct.unpack_from(fmt, EXAMPLE_2, off)[0] for _, off, fmt in layout]
    assert fields == [0, 71, -1, 2, 0x698B64F8, 0, 1, T, T + 5, 1000, 0, 0, 2]


def test_last_sequence_wraps_past_int32_max() -> None:
    builder = RecordBatchBuilder(producer_id=1, producer_epoch=0, base_sequence=2**31 - 2)
    for _ in range(4):
        builder.append(b"v", timestamp_ms=T)
    batch = RecordBatch(builder.build())
    assert batch.last_offset_delta == 3
    assert batch.last_sequence == 1  # 2^31-2, 2^31-1, 0, 1


def test_peek_batch_size() -> None:
    data = EXAMPLE_1 + EXAMPLE_2
    assert peek_batch_size(data, 0) == 76
    assert peek_batch_size(data, 76) == 83
    assert peek_batch_size(data, len(data) - 11) is None
    assert peek_batch_size(data, len(data)) is None


# --- Round trips -------------------------------------------------------------------------------

_bytes_or_none = st.none() | st.binary(max_size=300)
_headers = st.lists(
    st.tuples(st.text(max_size=20), st.none() | st.binary(max_size=40)), max_size=3
).map(tuple)
_record = st.tuples(
    _bytes_or_none,  # key
    _bytes_or_none,  # value
    _headers,
    st.integers(min_value=-1, max_value=2**41),  # timestamp (-1 = NO_TIMESTAMP)
)


@settings(max_examples=60, deadline=None)
@given(
    codec=st.sampled_from(list(Compression)),
    records=st.lists(_record, min_size=1, max_size=40),
    base_offset=st.integers(min_value=0, max_value=2**62),
    producer=st.sampled_from([(-1, -1, -1), (7, 3, 0), (2**40, 2**15 - 1, 2**31 - 1)]),
    transactional=st.booleans(),
)
def test_round_trip_every_codec(
    codec: Compression,
    records: list[tuple[bytes | None, bytes | None, tuple[tuple[str, bytes | None], ...], int]],
    base_offset: int,
    producer: tuple[int, int, int],
    transactional: bool,
) -> None:
    pid, pepoch, bseq = producer
    builder = RecordBatchBuilder(
        codec.name.lower(),
        producer_id=pid,
        producer_epoch=pepoch,
        base_sequence=bseq,
        is_transactional=transactional,
        base_offset=base_offset,
    )
    for i, (key, value, headers, ts) in enumerate(records):
        assert builder.append(value, key=key, headers=headers, timestamp_ms=ts) == i
    assert builder.records_count == len(records)
    data = builder.build()
    if codec is Compression.NONE:
        assert builder.estimated_size_in_bytes() == len(data)
    batch = RecordBatch(data)
    batch.validate_for_append()
    assert batch.compression is codec
    assert batch.is_transactional is transactional
    assert batch.records_count == len(records)
    assert batch.last_offset_delta == len(records) - 1
    assert batch.base_timestamp == records[0][3]
    assert batch.max_timestamp == max(r[3] for r in records)
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == producer
    assert list(batch) == [
        Record(base_offset + i, ts, key, value, headers) for i, (key, value, headers, ts) in
        enumerate(records)
    ]
    _assert_consumer_decode_matches(data, base_offset + len(records) // 2)


def _assert_consumer_decode_matches(data: bytes, min_offset: int, epoch: int | None = None
                                    ) -> None:
    """The consumer's decoder gives the proto decoder's records in the client layout."""
    pad = b"\x07" * 13  # the batch sits inside a larger fetch buffer
    got = decode_consumer_records(pad + data + pad, len(pad), tuple, "t", 4, min_offset)
    assert got == [
        ("t", 4, r.offset, r.timestamp, r.timestamp_type, r.key, r.value, r.headers, epoch,
         -1 if r.key is None else len(r.key), -1 if r.value is None else len(r.value))
        for r in RecordBatch(data).records() if r.offset >= min_offset
    ]


def test_many_records_with_large_fields_round_trip(seed: int) -> None:
    rng = random.Random(seed)
    expected = []
    builder = RecordBatchBuilder("zstd", now_ms=T)
    for i in range(20_000):
        key = rng.randbytes(rng.choice([0, 5, 9000])) if i % 3 else None
        value = rng.randbytes(rng.choice([0, 100, 20_000])) if i % 7 else None
        builder.append(value, key)
        expected.append(Record(i, T, key, value))
    batch = RecordBatch(builder.build())
    batch.validate()
    assert batch.records() == expected, f"seed={seed}"
    _assert_consumer_decode_matches(bytes(batch.buffer), 0)


def test_consumer_decode_epoch_and_log_append_time() -> None:
    builder = RecordBatchBuilder(base_offset=10, partition_leader_epoch=3)
    for i in range(3):
        builder.append(b"v%d" % i, timestamp_ms=T + i)
    data = bytearray(builder.build())
    _assert_consumer_decode_matches(bytes(data), 11, epoch=3)
    RecordBatch(data).set_max_timestamp_log_append(T + 99)
    got = decode_consumer_records(bytes(data), 0, tuple, "t", 0)
    assert [(r[3], r[4]) for r in got] == [(T + 99, TimestampType.LOG_APPEND_TIME)] * 3
    # a memoryview (not bytes) still yields bytes keys/values
    assert decode_consumer_records(memoryview(data), 0, tuple, "t", 0)[0][6] == b"v0"


def test_append_at_keeps_original_offsets_and_forced_last_offset_delta() -> None:
    builder = RecordBatchBuilder(
        producer_id=5, producer_epoch=1, base_sequence=100, base_offset=1000, last_offset_delta=9
    )
    builder.append_at(2, T, b"a", b"1", ())
    builder.append_at(7, T + 3, b"b", None, ())
    with pytest.raises(ValueError):
        builder.append_at(7, T, b"c", b"3", ())
    batch = RecordBatch(builder.build())
    batch.validate()
    assert batch.last_offset_delta == 9 and batch.last_sequence == 109
    assert batch.records_count == 2
    assert [(r.offset, r.timestamp, r.value) for r in batch] == [
        (1002, T, b"1"),
        (1007, T + 3, None),
    ]
    # A compacted batch is not a valid producer batch: count and last delta disagree.
    with pytest.raises(InvalidRecordError, match="lastOffsetDelta"):
        batch.validate_for_append()


def test_forced_last_offset_delta_below_last_record_raises() -> None:
    builder = RecordBatchBuilder(last_offset_delta=0)
    builder.append_at(3, T, None, b"x")
    with pytest.raises(ValueError):
        builder.build()


def test_empty_batch_keeps_header_fields() -> None:
    data = RecordBatchBuilder(base_offset=10, last_offset_delta=4).build()
    batch = RecordBatch(data)
    batch.validate()
    assert batch.size_in_bytes == RECORD_BATCH_OVERHEAD
    assert (batch.records_count, batch.last_offset, batch.records()) == (0, 14, [])
    with pytest.raises(InvalidRecordError, match="recordsCount 0"):
        batch.validate_for_append()


def test_timestamp_defaults_to_builder_now_ms() -> None:
    builder = RecordBatchBuilder(now_ms=T)
    builder.append(b"x")
    builder.append(b"y", timestamp_ms=T - 10)  # negative delta
    assert [r.timestamp for r in RecordBatch(builder.build())] == [T, T - 10]
    with pytest.raises(ValueError, match="now_ms"):
        RecordBatchBuilder().append(b"x")
    with pytest.raises(ValueError, match="negative timestamp"):
        RecordBatchBuilder().append(b"x", timestamp_ms=-2)


def test_control_and_delete_horizon_attributes() -> None:
    builder = RecordBatchBuilder(
        producer_id=1, producer_epoch=0, base_sequence=-1, is_transactional=True,
        is_control=True, delete_horizon_ms=T + 86_400_000,
    )
    builder.append(b"\x00\x00\x00\x00\x00\x05", key=b"\x00\x00\x00\x01", timestamp_ms=T)
    batch = RecordBatch(builder.build())
    batch.validate()
    assert batch.is_control and batch.is_transactional and batch.has_delete_horizon
    assert batch.delete_horizon_ms == batch.base_timestamp == T + 86_400_000
    assert batch.records()[0].timestamp == T
    with pytest.raises(InvalidRecordError, match="control"):
        batch.validate_for_append()


def test_size_estimates_and_room() -> None:
    builder = RecordBatchBuilder(now_ms=T)
    assert builder.estimated_size_in_bytes() == RECORD_BATCH_OVERHEAD
    assert builder.has_room_for(None, b"x" * 100_000, (), batch_size=100)  # empty batch
    while builder.has_room_for(b"key", b"v" * 100, (), batch_size=16384):
        builder.append(b"v" * 100, b"key")
    size = len(builder.build())
    assert size == builder.estimated_size_in_bytes()
    assert 16384 - 200 < size <= 16384
    bound = RecordBatchBuilder.estimate_record_size(b"k", b"v", [("h", b"x"), ("i", None)])
    one = RecordBatchBuilder(now_ms=T)
    one.append(b"v", b"k", [("h", b"x"), ("i", None)])
    assert len(one.build()) - RECORD_BATCH_OVERHEAD <= bound


def test_iter_batches_walks_concatenated_batches() -> None:
    data = EXAMPLE_1 + EXAMPLE_2 + EXAMPLE_1
    batches = list(iter_batches(data))
    assert [b.size_in_bytes for b in batches] == [76, 83, 76]
    assert batches[1].to_bytes() == EXAMPLE_2
    assert [b.size_in_bytes for b in iter_batches(data, 76)] == [83, 76]
    garbled = bytearray(data)
    garbled[-1] ^= 1
    with pytest.raises(CorruptMessageError, match="at position 159: crc mismatch"):
        list(iter_batches(garbled))
    assert len(list(iter_batches(garbled, check_crc=False))) == 3


# --- Validation and corruption ----------------------------------------------------------------


def test_every_bit_flip_in_the_crc_span_is_caught() -> None:
    for original in (EXAMPLE_1, EXAMPLE_2):
        for byte in range(ATTRIBUTES_OFFSET, len(original)):
            for bit in range(8):
                buf = bytearray(original)
                buf[byte] ^= 1 << bit
                with pytest.raises(CorruptMessageError, match="crc mismatch"):
                    RecordBatch(buf).validate()


def test_crc_mismatch_message_names_both_values_and_offset() -> None:
    buf = bytearray(EXAMPLE_1)
    buf[-1] ^= 0xFF
    assign_offset_and_epoch(buf, 0, 42, 7)
    with pytest.raises(CorruptMessageError, match=r"stored 0xdb5e9cdd, computed 0x[0-9a-f]{8} "
                       r"for batch at offset 42"):
        RecordBatch(buf).validate()


def test_every_truncation_is_caught() -> None:
    for cut in range(len(EXAMPLE_2)):
        with pytest.raises(CorruptMessageError, match="truncated"):
            RecordBatch(EXAMPLE_2[:cut]).validate()
        if cut:  # iter_batches stops cleanly only at the end of the data
            with pytest.raises(CorruptMessageError, match=f"at position {len(EXAMPLE_1)}"):
                list(iter_batches(EXAMPLE_1 + EXAMPLE_2[:cut]))


def test_bad_magic_and_batch_length() -> None:
    buf = bytearray(EXAMPLE_1)
    buf[MAGIC_OFFSET] = 1
    with pytest.raises(CorruptMessageError, match="magic 1"):
        RecordBatch(buf).validate()
    buf = bytearray(EXAMPLE_1)
    struct.pack_into(">i", buf, LENGTH_OFFSET, 48)
    with pytest.raises(CorruptMessageError, match="batchLength 48 below"):
        RecordBatch(buf).validate()
    with pytest.raises(CorruptMessageError, match="batchLength 48 below"):
        list(iter_batches(buf))


def _with_covered(original: bytes, offset: int, fmt: str, value: int) -> bytes:
    """`original` with one covered field rewritten and the CRC fixed up."""
    buf = bytearray(original)
    struct.pack_into(fmt, buf, offset, value)
    struct.pack_into(">I", buf, CRC_OFFSET, crc32c(bytes(buf[ATTRIBUTES_OFFSET:])))
    return bytes(buf)


def test_unsupported_codec_id_raises() -> None:
    data = _with_covered(EXAMPLE_1, ATTRIBUTES_OFFSET, ">h", 5)
    batch = RecordBatch(data)
    batch.validate()  # framing and CRC are fine
    with pytest.raises(UnsupportedCompressionTypeError):
        _ = batch.compression
    with pytest.raises(UnsupportedCompressionTypeError):
        batch.records()
    with pytest.raises(UnsupportedCompressionTypeError):
        batch.validate_for_append()


def test_validate_for_append_rules() -> None:
    RecordBatch(EXAMPLE_1).validate_for_append()
    cases = [
        (RECORDS_COUNT_OFFSET, ">i", 0, InvalidRecordError, "recordsCount 0"),
        (LAST_OFFSET_DELTA_OFFSET, ">i", 1, InvalidRecordError, "lastOffsetDelta 1"),
        (ATTRIBUTES_OFFSET, ">h", 0x20, InvalidRecordError, "control"),
        (ATTRIBUTES_OFFSET, ">h", 0x08, InvalidTimestampError, "LogAppendTime"),
        (PRODUCER_ID_OFFSET, ">q", 1000, InvalidRecordError, "baseSequence -1"),
    ]
    for offset, fmt, value, error, message in cases:
        with pytest.raises(error, match=message):
            RecordBatch(_with_covered(EXAMPLE_1, offset, fmt, value)).validate_for_append()


@settings(max_examples=300, deadline=None)
@given(section=st.binary(max_size=200), count=st.integers(min_value=-1, max_value=5))
def test_garbled_records_section_raises_only_corrupt_message(section: bytes, count: int) -> None:
    data = bytearray(EXAMPLE_1[:RECORD_BATCH_OVERHEAD] + section)
    struct.pack_into(">i", data, LENGTH_OFFSET, len(data) - LOG_OVERHEAD)
    data = bytearray(_with_covered(bytes(data), RECORDS_COUNT_OFFSET, ">i", count))
    batch = RecordBatch(data)
    batch.validate()
    try:
        consumer_records = decode_consumer_records(bytes(data) + b"\x00" * 8, 0, tuple, "t", 0)
    except CorruptMessageError:
        consumer_records = None
    try:
        records = batch.records()
    except CorruptMessageError:
        assert consumer_records is None
        return
    assert len(records) == count
    assert consumer_records is not None and len(consumer_records) == count


def test_records_section_overrun_is_corrupt() -> None:
    # Claim two records where one is stored: the decoder runs out of bytes.
    data = _with_covered(EXAMPLE_1, RECORDS_COUNT_OFFSET, ">i", 2)
    with pytest.raises(CorruptMessageError, match="truncated"):
        RecordBatch(data).records()
    # Claim zero: the stored record is left over.
    data = _with_covered(EXAMPLE_1, RECORDS_COUNT_OFFSET, ">i", 0)
    with pytest.raises(CorruptMessageError, match="left after"):
        RecordBatch(data).records()
    # The consumer decoder reads in place: running into the next batch is caught too.
    for count in (2, 0):
        data = _with_covered(EXAMPLE_1, RECORDS_COUNT_OFFSET, ">i", count)
        with pytest.raises(CorruptMessageError):
            decode_consumer_records(data + EXAMPLE_1, 0, tuple, "t", 0)
        with pytest.raises(CorruptMessageError):
            decode_consumer_records(data, 0, tuple, "t", 0)
