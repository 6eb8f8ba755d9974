"""Kafka RecordBatch v2 (magic 2): the bytes on the wire, on disk and in every fetch response.

Layout (Kafka's `DefaultRecordBatch.java`; KAFKA_SEMANTICS.md §1.1, big-endian):

    offset size field                  notes
         0    8 baseOffset             the leader overwrites it (outside the CRC)
         8    4 batchLength            bytes after this field: total size = batchLength + 12
        12    4 partitionLeaderEpoch   the leader stamps it (outside the CRC)
        16    1 magic                  2
        17    4 crc                    CRC-32C over bytes [21, end)
        21    2 attributes             codec bits 0-2, LogAppendTime bit 3, transactional bit 4,
                                       control bit 5, delete horizon bit 6 (KIP-534)
        23    4 lastOffsetDelta        also the sequence delta
        27    8 baseTimestamp          first record's timestamp (or the delete horizon)
        35    8 maxTimestamp
        43    8 producerId             -1 when not idempotent
        51    2 producerEpoch
        53    4 baseSequence
        57    4 recordsCount           counted before compression
        61    . records                compressed as one stream when a codec is set

Each record (`DefaultRecord.java`): varint length, int8 attributes (0), varlong timestampDelta,
varint offsetDelta, varint keyLength (-1 = null) + key, varint valueLength (-1 = null) + value,
varint headersCount, then per header varint keyLength + UTF-8 key, varint valueLength (-1 = null)
+ value. Varints are zigzag + LEB128 (`ByteUtils.writeVarint`).

Because the CRC does not cover baseOffset, batchLength, partitionLeaderEpoch or magic, the
broker assigns offsets and stamps its epoch in place (`assign_offset_and_epoch`) with no CRC
work; only LogAppendTime (`set_max_timestamp_log_append`) rewrites covered bytes.

Speed. This module is the per-record hot path of producers and consumers, so the encoder and
decoder trade some elegance for pure-Python speed (bench/codec.py measures it):
- varints of small non-negative ints come from precomputed byte tables (`_VARINT`), and their
  encoded sizes from `_SIZED` (n + varint size of n), so appending a record does no bit work;
- `RecordBatchBuilder.append` encodes the record straight into a flat list of parts, and
  `build()` is one `b"".join` plus two struct packs and one CRC call;
- the decoder inlines one- and two-byte varint reads against a zigzag table (`_UNZIGZAG`), takes
  key/value as single slices and builds each `Record` with `tuple.__new__`.
The slow, general varint code runs only for values past 2 bytes (lengths >= 8192).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from enum import IntEnum
from typing import Any, Final, NamedTuple, TypeVar, Union

from crc32c import crc32c

from proto.compression import Compression, compress, decompress
from proto.errors import (
    CorruptMessageError,
    InvalidRecordError,
    InvalidTimestampError,
    UnsupportedCompressionTypeError,
)

__all__ = [
    "ATTRIBUTES_OFFSET",
    "BASE_OFFSET_OFFSET",
    "BASE_SEQUENCE_OFFSET",
    "BASE_TIMESTAMP_OFFSET",
    "CRC_OFFSET",
    "Compression",
    "Header",
    "LAST_OFFSET_DELTA_OFFSET",
    "LENGTH_OFFSET",
    "LOG_OVERHEAD",
    "MAGIC",
    "MAGIC_OFFSET",
    "MAX_RECORD_OVERHEAD",
    "MAX_TIMESTAMP_OFFSET",
    "MIN_BATCH_LENGTH",
    "NO_PARTITION_LEADER_EPOCH",
    "NO_PRODUCER_EPOCH",
    "NO_PRODUCER_ID",
    "NO_SEQUENCE",
    "NO_TIMESTAMP",
    "PARTITION_LEADER_EPOCH_OFFSET",
    "PRODUCER_EPOCH_OFFSET",
    "PRODUCER_ID_OFFSET",
    "RECORDS_COUNT_OFFSET",
    "RECORD_BATCH_OVERHEAD",
    "Record",
    "RecordBatch",
    "RecordBatchBuilder",
    "TimestampType",
    "assign_offset_and_epoch",
    "compute_crc",
    "decode_consumer_records",
    "decode_varint",
    "encode_varint",
    "iter_batches",
    "peek_batch_size",
]

Buffer = Union[bytes, bytearray, memoryview]
_TupleT = TypeVar("_TupleT", bound=tuple[Any, ...])
Header = tuple[str, Union[bytes, None]]

# --- Header layout (DefaultRecordBatch.java) -------------------------------------------------

MAGIC: Final = 2
BASE_OFFSET_OFFSET: Final = 0
LENGTH_OFFSET: Final = 8
PARTITION_LEADER_EPOCH_OFFSET: Final = 12
MAGIC_OFFSET: Final = 16
CRC_OFFSET: Final = 17
ATTRIBUTES_OFFSET: Final = 21
LAST_OFFSET_DELTA_OFFSET: Final = 23
BASE_TIMESTAMP_OFFSET: Final = 27
MAX_TIMESTAMP_OFFSET: Final = 35
PRODUCER_ID_OFFSET: Final = 43
PRODUCER_EPOCH_OFFSET: Final = 51
BASE_SEQUENCE_OFFSET: Final = 53
RECORDS_COUNT_OFFSET: Final = 57
RECORD_BATCH_OVERHEAD: Final = 61
LOG_OVERHEAD: Final = 12  # baseOffset + batchLength: the bytes batchLength does not count
# Smallest legal batchLength: a header with no records (61 - 12).
MIN_BATCH_LENGTH: Final = RECORD_BATCH_OVERHEAD - LOG_OVERHEAD
# Worst-case record framing without key, value and headers (DefaultRecord.MAX_RECORD_OVERHEAD).
MAX_RECORD_OVERHEAD: Final = 21

NO_TIMESTAMP: Final = -1
NO_PRODUCER_ID: Final = -1
NO_PRODUCER_EPOCH: Final = -1
NO_SEQUENCE: Final = -1
NO_PARTITION_LEADER_EPOCH: Final = -1

COMPRESSION_CODEC_MASK: Final = 0x07
TIMESTAMP_TYPE_MASK: Final = 0x08
TRANSACTIONAL_FLAG_MASK: Final = 0x10
CONTROL_FLAG_MASK: Final = 0x20
DELETE_HORIZON_FLAG_MASK: Final = 0x40

_INT32_MAX: Final = 0x7FFFFFFF

_INT64 = struct.Struct(">q")
_INT32 = struct.Struct(">i")
_UINT32 = struct.Struct(">I")
_INT16 = struct.Struct(">h")
# Bytes [0, 21): the part the CRC does not cover.
_PREFIX = struct.Struct(">qiibI")
# Bytes [21, 61): attributes .. recordsCount, the covered part of the header.
_COVERED_HEADER = struct.Struct(">hiqqqhii")
_OFFSET_EPOCH_AT = struct.Struct(">qii")  # baseOffset, batchLength, partitionLeaderEpoch

assert _PREFIX.size == ATTRIBUTES_OFFSET
assert _PREFIX.size + _COVERED_HEADER.size == RECORD_BATCH_OVERHEAD


class TimestampType(IntEnum):
    """Attribute bit 3: who set the record timestamps."""

    CREATE_TIME = 0
    LOG_APPEND_TIME = 1


class Record(NamedTuple):
    """One decoded record. `offset` is absolute (baseOffset + offsetDelta).

    `timestamp` is the record's own (CreateTime) or the batch's maxTimestamp (LogAppendTime),
    as Kafka's readers report it (§1.6); `timestamp_type` says which.
    """

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()
    timestamp_type: TimestampType = TimestampType.CREATE_TIME


# --- Varints (ByteUtils.java) ----------------------------------------------------------------


def encode_varint(value: int) -> bytes:
    """Zigzag + unsigned LEB128, as Kafka's `ByteUtils.writeVarint`/`writeVarlong`.

    Python ints are unbounded, so one function serves int32 and int64; the caller keeps the
    value in range (int32 for varints, int64 for varlongs).
    """
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def decode_varint(data: Buffer, pos: int) -> tuple[int, int]:
    """Read one zigzag varint/varlong at `pos`; returns (value, position after it).

    Raises:
        CorruptMessageError: the varint runs past the data or past 10 bytes.
    """
    result = 0
    shift = 0
    end = len(data)
    while True:
        if pos >= end:
            raise CorruptMessageError(f"varint truncated at byte {pos}")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
        if shift > 63:
            raise CorruptMessageError(f"varint longer than 10 bytes ending at byte {pos}")


# Encoded varints of 0.._TABLE_SIZE-1 (lengths, offset deltas) and their sizes.
_TABLE_SIZE: Final = 1 << 14
_VARINT: Final[tuple[bytes, ...]] = tuple(encode_varint(n) for n in range(_TABLE_SIZE))
# _SIZED[n] = n + len(varint(n)): the size of a length-prefixed field of n bytes.
_SIZED: Final[tuple[int, ...]] = tuple(n + len(_VARINT[n]) for n in range(_TABLE_SIZE))
# Record prefix after the length when timestampDelta is 0: attributes 0, tsDelta 0, offsetDelta.
_ATTRS_TS0_DELTA: Final[tuple[bytes, ...]] = tuple(b"\x00\x00" + v for v in _VARINT)
# Zigzag decoding of a 14-bit LEB128 payload (one- and two-byte varints).
_UNZIGZAG: Final[tuple[int, ...]] = tuple((u >> 1) ^ -(u & 1) for u in range(_TABLE_SIZE))
_NULL: Final = b"\x01"  # varint(-1): null key/value
_NO_HEADERS: Final = b"\x00"


def _varint(n: int) -> bytes:
    return _VARINT[n] if 0 <= n < _TABLE_SIZE else encode_varint(n)


def _sized(n: int) -> int:
    return _SIZED[n] if n < _TABLE_SIZE else n + len(encode_varint(n))


def _encode_headers(headers: Iterable[Header]) -> bytes:
    parts = []
    count = 0
    for hkey, hvalue in headers:
        if not isinstance(hkey, str):
            raise InvalidRecordError(f"header key must be str, got {type(hkey).__name__}")
        kb = hkey.encode("utf-8")
        parts.append(_varint(len(kb)))
        parts.append(kb)
        if hvalue is None:
            parts.append(_NULL)
        else:
            parts.append(_varint(len(hvalue)))
            parts.append(bytes(hvalue))
        count += 1
    return _varint(count) + b"".join(parts)


# --- Header access ---------------------------------------------------------------------------


def peek_batch_size(data: Buffer, pos: int = 0) -> int | None:
    """Total size (batchLength + 12) of the batch at `pos`, from its 12-byte prefix.

    Returns None when fewer than 12 bytes remain. The size is not checked: `RecordBatch.validate`
    does that.
    """
    if len(data) - pos < LOG_OVERHEAD:
        return None
    return int(_INT32.unpack_from(data, pos + LENGTH_OFFSET)[0]) + LOG_OVERHEAD


def compute_crc(data: Buffer, pos: int = 0, end: int | None = None) -> int:
    """CRC-32C of the covered span [pos + 21, end) of the batch at `pos`."""
    stop = len(data) if end is None else end
    return int(crc32c(memoryview(data)[pos + ATTRIBUTES_OFFSET : stop]))


def assign_offset_and_epoch(
    buf: bytearray | memoryview, pos: int, base_offset: int, leader_epoch: int
) -> None:
    """Stamp baseOffset and partitionLeaderEpoch of the batch at `pos`, in place.

    The broker's append hot path. Neither field is covered by the CRC, so the CRC stays valid
    (KAFKA_SEMANTICS.md §1.1).
    """
    _INT64.pack_into(buf, pos + BASE_OFFSET_OFFSET, base_offset)
    _INT32.pack_into(buf, pos + PARTITION_LEADER_EPOCH_OFFSET, leader_epoch)


def _last_sequence(base_sequence: int, last_offset_delta: int) -> int:
    # DefaultRecordBatch.incrementSequence: sequences wrap past Int.MAX to 0.
    if base_sequence == NO_SEQUENCE:
        return NO_SEQUENCE
    if base_sequence > _INT32_MAX - last_offset_delta:
        return last_offset_delta - (_INT32_MAX - base_sequence) - 1
    return base_sequence + last_offset_delta


class RecordBatch:
    """A view over the bytes of one RecordBatch v2.

    `data` starts with the batch and may run past it (batchLength bounds it). Header properties
    unpack their field on each access and never touch the records. Nothing is checked until
    `validate()`; call it before trusting bytes from the network or a disk.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Buffer) -> None:
        self._data = data

    def __repr__(self) -> str:
        if len(self._data) < RECORD_BATCH_OVERHEAD:
            return f"RecordBatch(<{len(self._data)} bytes, truncated>)"
        return (
            f"RecordBatch(base_offset={self.base_offset}, last_offset={self.last_offset}, "
            f"count={self.records_count}, size={self.size_in_bytes}, "
            f"compression={self.compression.name.lower()}, producer_id={self.producer_id}, "
            f"epoch={self.partition_leader_epoch})"
        )

    # -- raw access --

    @property
    def buffer(self) -> Buffer:
        """The underlying buffer as given (it may extend past this batch)."""
        return self._data

    def to_bytes(self) -> bytes:
        """Exactly this batch's bytes (a copy unless the buffer is already exactly it)."""
        data = self._data
        size = self.size_in_bytes
        if isinstance(data, bytes) and len(data) == size:
            return data
        return bytes(memoryview(data)[:size])

    # -- header fields (lazy) --

    @property
    def base_offset(self) -> int:
        return int(_INT64.unpack_from(self._data, BASE_OFFSET_OFFSET)[0])

    @property
    def batch_length(self) -> int:
        return int(_INT32.unpack_from(self._data, LENGTH_OFFSET)[0])

    @property
    def size_in_bytes(self) -> int:
        return int(_INT32.unpack_from(self._data, LENGTH_OFFSET)[0]) + LOG_OVERHEAD

    @property
    def partition_leader_epoch(self) -> int:
        return int(_INT32.unpack_from(self._data, PARTITION_LEADER_EPOCH_OFFSET)[0])

    @property
    def magic(self) -> int:
        return int(self._data[MAGIC_OFFSET])

    @property
    def crc(self) -> int:
        return int(_UINT32.unpack_from(self._data, CRC_OFFSET)[0])

    @property
    def attributes(self) -> int:
        return int(_INT16.unpack_from(self._data, ATTRIBUTES_OFFSET)[0])

    @property
    def compression(self) -> Compression:
        """The codec. Raises UnsupportedCompressionTypeError for ids 5-7."""
        return Compression.parse(self.attributes & COMPRESSION_CODEC_MASK)

    @property
    def timestamp_type(self) -> TimestampType:
        if self.attributes & TIMESTAMP_TYPE_MASK:
            return TimestampType.LOG_APPEND_TIME
        return TimestampType.CREATE_TIME

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_FLAG_MASK)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_FLAG_MASK)

    @property
    def has_delete_horizon(self) -> bool:
        return bool(self.attributes & DELETE_HORIZON_FLAG_MASK)

    @property
    def last_offset_delta(self) -> int:
        return int(_INT32.unpack_from(self._data, LAST_OFFSET_DELTA_OFFSET)[0])

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def base_timestamp(self) -> int:
        return int(_INT64.unpack_from(self._data, BASE_TIMESTAMP_OFFSET)[0])

    @property
    def max_timestamp(self) -> int:
        return int(_INT64.unpack_from(self._data, MAX_TIMESTAMP_OFFSET)[0])

    @property
    def delete_horizon_ms(self) -> int | None:
        """baseTimestamp when the delete-horizon flag is set (KIP-534), else None."""
        return self.base_timestamp if self.has_delete_horizon else None

    @property
    def producer_id(self) -> int:
        return int(_INT64.unpack_from(self._data, PRODUCER_ID_OFFSET)[0])

    @property
    def producer_epoch(self) -> int:
        return int(_INT16.unpack_from(self._data, PRODUCER_EPOCH_OFFSET)[0])

    @property
    def base_sequence(self) -> int:
        return int(_INT32.unpack_from(self._data, BASE_SEQUENCE_OFFSET)[0])

    @property
    def last_sequence(self) -> int:
        """baseSequence + lastOffsetDelta, wrapping past int32 max to 0; -1 without one."""
        return _last_sequence(self.base_sequence, self.last_offset_delta)

    @property
    def records_count(self) -> int:
        return int(_INT32.unpack_from(self._data, RECORDS_COUNT_OFFSET)[0])

    # -- integrity --

    def compute_crc(self) -> int:
        """CRC-32C over [21, end of batch), computed from the bytes (not the stored field)."""
        return compute_crc(self._data, 0, self.size_in_bytes)

    def is_valid(self) -> bool:
        """validate() as a bool."""
        try:
            self.validate()
        except CorruptMessageError:
            return False
        return True

    def validate(self, *, check_crc: bool = True) -> None:
        """Check the framing and the CRC (what the broker and the log's recovery rely on).

        Args:
            check_crc: also check the CRC (False: framing and magic only).

        Raises:
            CorruptMessageError: too few bytes for the header, batchLength below 49 or past the
                end of the data, magic other than 2, or a CRC mismatch.
        """
        data = self._data
        available = len(data)
        if available < RECORD_BATCH_OVERHEAD:
            raise CorruptMessageError(
                f"batch truncated: {available} bytes, a header needs {RECORD_BATCH_OVERHEAD}"
            )
        base_offset, length, _ = _OFFSET_EPOCH_AT.unpack_from(data, 0)
        if length < MIN_BATCH_LENGTH:
            raise CorruptMessageError(
                f"batchLength {length} below the minimum {MIN_BATCH_LENGTH} "
                f"for batch at offset {base_offset}"
            )
        size = length + LOG_OVERHEAD
        if size > available:
            raise CorruptMessageError(
                f"batch truncated: batchLength {length} needs {size} bytes, {available} present "
                f"for batch at offset {base_offset}"
            )
        magic = data[MAGIC_OFFSET]
        if magic != MAGIC:
            raise CorruptMessageError(
                f"unsupported magic {magic} (expected {MAGIC}) for batch at offset {base_offset}"
            )
        if check_crc:
            self._check_crc(base_offset, size)

    def _check_crc(self, base_offset: int, size: int) -> None:
        data = self._data
        stored = _UINT32.unpack_from(data, CRC_OFFSET)[0]
        computed = crc32c(memoryview(data)[ATTRIBUTES_OFFSET:size])
        if stored != computed:
            raise CorruptMessageError(
                f"crc mismatch: stored 0x{stored:08x}, computed 0x{computed:08x} "
                f"for batch at offset {base_offset}"
            )

    def validate_for_append(self) -> None:
        """validate() plus the leader's rules for a producer batch (LogValidator.java, §1.7).

        Raises:
            CorruptMessageError: see validate().
            InvalidRecordError: no records, lastOffsetDelta + 1 != recordsCount, a control
                batch, or a producer id without a base sequence.
            InvalidTimestampError: the producer set LogAppendTime.
            UnsupportedCompressionTypeError: codec id 5-7.
        """
        self.validate()
        count = self.records_count
        base_offset = self.base_offset
        if count <= 0:
            raise InvalidRecordError(
                f"batch at offset {base_offset} has recordsCount {count}; producer batches "
                "must hold at least one record"
            )
        lod = self.last_offset_delta
        if lod + 1 != count:
            raise InvalidRecordError(
                f"lastOffsetDelta {lod} + 1 != recordsCount {count} for batch at offset "
                f"{base_offset}"
            )
        attributes = self.attributes
        if attributes & CONTROL_FLAG_MASK:
            raise InvalidRecordError(
                f"clients may not produce control batches (batch at offset {base_offset})"
            )
        if self.producer_id >= 0 and self.base_sequence < 0:
            raise InvalidRecordError(
                f"producer id {self.producer_id} with baseSequence {self.base_sequence}: an "
                "idempotent batch needs baseSequence >= 0"
            )
        if attributes & TIMESTAMP_TYPE_MASK:
            raise InvalidTimestampError(
                f"producer set LogAppendTime on batch at offset {base_offset}; only the broker "
                "may set it"
            )
        codec = attributes & COMPRESSION_CODEC_MASK
        if codec > Compression.ZSTD:
            raise UnsupportedCompressionTypeError(
                f"unsupported compression codec id {codec} for batch at offset {base_offset}"
            )

    # -- in-place setters (bytearray or writable memoryview) --

    def set_base_offset(self, base_offset: int) -> None:
        """Write baseOffset in place. Not covered by the CRC: no recomputation."""
        _INT64.pack_into(self._writable(), BASE_OFFSET_OFFSET, base_offset)

    def set_partition_leader_epoch(self, epoch: int) -> None:
        """Write partitionLeaderEpoch in place. Not covered by the CRC: no recomputation."""
        _INT32.pack_into(self._writable(), PARTITION_LEADER_EPOCH_OFFSET, epoch)

    def set_max_timestamp_log_append(self, timestamp_ms: int) -> None:
        """Switch to LogAppendTime at `timestamp_ms`: set bit 3 and maxTimestamp, fix the CRC.

        As Kafka's `setMaxTimestamp(LOG_APPEND_TIME, ts)`; readers then report `timestamp_ms`
        as every record's timestamp.
        """
        buf = self._writable()
        attributes = self.attributes | TIMESTAMP_TYPE_MASK
        _INT16.pack_into(buf, ATTRIBUTES_OFFSET, attributes)
        _INT64.pack_into(buf, MAX_TIMESTAMP_OFFSET, timestamp_ms)
        _UINT32.pack_into(buf, CRC_OFFSET, self.compute_crc())

    def _writable(self) -> bytearray | memoryview:
        data = self._data
        if isinstance(data, bytearray) or (isinstance(data, memoryview) and not data.readonly):
            return data
        raise TypeError(
            f"RecordBatch over {type(data).__name__} is read-only; wrap a bytearray or a "
            "writable memoryview to modify it"
        )

    # -- records --

    def records_section(self) -> bytes:
        """The records section, decompressed."""
        size = self.size_in_bytes
        raw = memoryview(self._data)[RECORD_BATCH_OVERHEAD:size]
        codec = self.attributes & COMPRESSION_CODEC_MASK
        if codec == 0:
            return bytes(raw)
        if codec > Compression.ZSTD:
            raise UnsupportedCompressionTypeError(f"unsupported compression codec id {codec}")
        return decompress(codec, raw)

    def records(self) -> list[Record]:
        """Decode every record, in order (decompressing if needed).

        Raises:
            CorruptMessageError: the records section does not match recordsCount or its own
                lengths.
            UnsupportedCompressionTypeError: unknown codec, or snappy without its extra.
        """
        (
            attributes,
            _lod,
            base_timestamp,
            max_timestamp,
            _pid,
            _pepoch,
            _bseq,
            count,
        ) = _COVERED_HEADER.unpack_from(self._data, ATTRIBUTES_OFFSET)
        base_offset = int(_INT64.unpack_from(self._data, 0)[0])
        if attributes & TIMESTAMP_TYPE_MASK:
            ts_type = TimestampType.LOG_APPEND_TIME
            log_append_time: int | None = max_timestamp
        else:
            ts_type = TimestampType.CREATE_TIME
            log_append_time = None
        return _decode_records(
            self.records_section(), count, base_offset, base_timestamp, ts_type, log_append_time
        )

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records())


def iter_batches(
    data: Buffer, start: int = 0, *, check_crc: bool = True
) -> Iterator[RecordBatch]:
    """Walk concatenated batches from `start` to the end of `data`.

    Each batch is validated (framing, magic and, unless `check_crc` is False, the CRC) before
    it is yielded, and wraps a zero-copy memoryview slice of `data` (writable if `data` is).

    Raises:
        CorruptMessageError: a partial or garbled batch (including trailing bytes shorter than a
            batch). Log recovery catches it to find its truncation point.
    """
    view = memoryview(data)
    end = len(view)
    pos = start
    while pos < end:
        remaining = end - pos
        if remaining < RECORD_BATCH_OVERHEAD:
            raise CorruptMessageError(
                f"partial batch at position {pos}: {remaining} bytes, a header needs "
                f"{RECORD_BATCH_OVERHEAD}"
            )
        size = int(_INT32.unpack_from(view, pos + LENGTH_OFFSET)[0]) + LOG_OVERHEAD
        # The slice is clamped by memoryview; validate() reports a short one as truncated.
        batch = RecordBatch(view[pos : pos + max(size, RECORD_BATCH_OVERHEAD)])
        try:
            batch.validate(check_crc=check_crc)
        except CorruptMessageError as exc:
            raise CorruptMessageError(f"at position {pos}: {exc.message}") from None
        yield batch
        pos += size


# --- Decoding --------------------------------------------------------------------------------


def _decode_records(
    data: bytes,
    count: int,
    base_offset: int,
    base_timestamp: int,
    ts_type: TimestampType,
    log_append_time: int | None,
) -> list[Record]:
    """Decode `count` records from an uncompressed records section.

    Hand-inlined: every varint read tries the one-byte and two-byte forms against `_UNZIGZAG`
    before calling `decode_varint`. Record lengths are checked against what was parsed, and
    the section must end exactly after the last record (Kafka: "records still remaining").
    """
    unzigzag = _UNZIGZAG
    read_varint = decode_varint
    new = tuple.__new__
    record_cls = Record
    out: list[Record] = []
    append = out.append
    pos = 0
    end = len(data)
    if count < 0:
        raise CorruptMessageError(f"negative recordsCount {count}")
    try:
        for _ in range(count):
            # length
            b = data[pos]
            if b < 0x80:
                length = unzigzag[b]
                pos += 1
            else:
                b2 = data[pos + 1]
                if b2 < 0x80:
                    length = unzigzag[(b & 0x7F) | (b2 << 7)]
                    pos += 2
                else:
                    length, pos = read_varint(data, pos)
            record_end = pos + length
            # attributes (unused, Kafka ignores them) then timestampDelta
            b = data[pos + 1]
            if b < 0x80:
                ts_delta = unzigzag[b]
                pos += 2
            else:
                ts_delta, pos = read_varint(data, pos + 1)
            # offsetDelta
            b = data[pos]
            if b < 0x80:
                offset_delta = unzigzag[b]
                pos += 1
            else:
                b2 = data[pos + 1]
                if b2 < 0x80:
                    offset_delta = unzigzag[(b & 0x7F) | (b2 << 7)]
                    pos += 2
                else:
                    offset_delta, pos = read_varint(data, pos)
            # key
            b = data[pos]
            if b < 0x80:
                key_len = unzigzag[b]
                pos += 1
            else:
                b2 = data[pos + 1]
                if b2 < 0x80:
                    key_len = unzigzag[(b & 0x7F) | (b2 << 7)]
                    pos += 2
                else:
                    key_len, pos = read_varint(data, pos)
            if key_len >= 0:
                key: bytes | None = data[pos : pos + key_len]
                pos += key_len
            elif key_len == -1:
                key = None
            else:
                raise CorruptMessageError(f"negative key length {key_len}")
            # value
            b = data[pos]
            if b < 0x80:
                value_len = unzigzag[b]
                pos += 1
            else:
                b2 = data[pos + 1]
                if b2 < 0x80:
                    value_len = unzigzag[(b & 0x7F) | (b2 << 7)]
                    pos += 2
                else:
                    value_len, pos = read_varint(data, pos)
            if value_len >= 0:
                value: bytes | None = data[pos : pos + value_len]
                pos += value_len
            elif value_len == -1:
                value = None
            else:
                raise CorruptMessageError(f"negative value length {value_len}")
            # headers
            if data[pos] == 0:
                headers: tuple[Header, ...] = ()
                pos += 1
            else:
                headers, pos = _decode_headers(data, pos)
            if pos != record_end:
                raise CorruptMessageError(
                    f"record at offset delta {offset_delta} declares {length} bytes but parses "
                    f"to {pos - record_end + length}"
                )
            append(
                new(
                    record_cls,
                    (
                        base_offset + offset_delta,
                        base_timestamp + ts_delta,
                        key,
                        value,
                        headers,
                        ts_type,
                    ),
                )
            )
    except IndexError:
        raise CorruptMessageError(
            f"records section truncated: {end} bytes hold fewer than the {count} records "
            "declared"
        ) from None
    if pos != end:
        raise CorruptMessageError(f"{end - pos} bytes left after the {count} declared records")
    if log_append_time is not None:
        # LogAppendTime: every record reports the batch's maxTimestamp (§1.6). A second pass
        # keeps the per-record loop free of the check.
        out = [
            new(record_cls, (r[0], log_append_time, r[2], r[3], r[4], ts_type)) for r in out
        ]
    return out


def decode_consumer_records(
    data: Buffer,
    pos: int,
    record_cls: type[_TupleT],
    topic: str,
    partition: int,
    min_offset: int = 0,
) -> list[_TupleT]:
    """Decode the batch at `pos` of `data` straight into consumer records.

    The consumer's hot path (clients.consumer.fetcher): one tuple per record, built with
    `tuple.__new__(record_cls, ...)` in the layout of `clients.types.Record`:
    (topic, partition, offset, timestamp, timestamp_type, key, value, headers, leader_epoch,
    serialized_key_size, serialized_value_size). Records below `min_offset` are skipped. The
    batch must already have passed `RecordBatch.validate` (framing; CRC as configured); an
    uncompressed batch is read in place, without copying its records section.

    The loop is `_decode_records`' twin (same inlined varint reads and the same checks), kept
    separate so neither pays for the other's tuple layout.

    Raises:
        CorruptMessageError: the records do not match recordsCount or their own lengths.
        UnsupportedCompressionTypeError: unknown codec, or snappy without its extra.
    """
    base_offset, size, epoch, _magic, _crc = _PREFIX.unpack_from(data, pos)
    size += LOG_OVERHEAD
    (attributes, _lod, base_timestamp, max_timestamp, _pid, _pepoch, _bseq,
     count) = _COVERED_HEADER.unpack_from(data, pos + ATTRIBUTES_OFFSET)
    if count < 0:
        raise CorruptMessageError(f"negative recordsCount {count}")
    leader_epoch = epoch if epoch >= 0 else None
    codec = attributes & COMPRESSION_CODEC_MASK
    if codec:
        if codec > Compression.ZSTD:
            raise UnsupportedCompressionTypeError(f"unsupported compression codec id {codec}")
        data = decompress(codec, memoryview(data)[pos + RECORD_BATCH_OVERHEAD : pos + size])
        pos, end = 0, len(data)
    else:
        if type(data) is not bytes:  # slices must be bytes, not views
            data = bytes(memoryview(data)[pos : pos + size])
            pos = 0
        end = pos + size
        pos += RECORD_BATCH_OVERHEAD
    ts_type = (TimestampType.LOG_APPEND_TIME if attributes & TIMESTAMP_TYPE_MASK
               else TimestampType.CREATE_TIME)
    unzigzag = _UNZIGZAG
    read_varint = decode_varint
    new = tuple.__new__
    out: list[_TupleT] = []
    append = out.append
    try:
        for _ in range(count):
            b = data[pos]
            if b < 0x80:
                length = unzigzag[b]
                pos += 1
            else:
                b2 = data[pos + 1]
                if b2 < 0x80:
                    length = unzigzag[(b & 0x7F) | (b2 << 7)]
                    pos += 2
                else:
                    length, pos = read_varint(data, pos)
            record_end = pos + length
            b = data[pos + 1]
            if b < 0x80:
                ts_delta = unzigzag[b]
                pos += 2
            else:
                ts_delta, pos = read_varint(data, pos + 1)
            b = data[pos]
            if b < 0x80:
                offset_delta = unzigzag[b]
                pos += 1
            else:
                b2 = data[pos + 1]
                if b2 < 0x80:
                    offset_delta = unzigzag[(b & 0x7F) | (b2 << 7)]
                    pos += 2
                else:
                    offset_delta, pos = read_varint(data, pos)
            b = data[pos]
            if b == 1:  # varint(-1): the common null key
                key: bytes | None = None
                key_len = -1
                pos += 1
            else:
                if b < 0x80:
                    key_len = unzigzag[b]
                    pos += 1
                else:
                    b2 = data[pos + 1]
                    if b2 < 0x80:
                        key_len = unzigzag[(b & 0x7F) | (b2 << 7)]
                        pos += 2
                    else:
                        key_len, pos = read_varint(data, pos)
                if key_len >= 0:
                    key = data[pos : pos + key_len]
                    pos += key_len
                elif key_len == -1:
                    key = None
                else:
                    raise CorruptMessageError(f"negative key length {key_len}")
            b = data[pos]
            if b < 0x80:
                value_len = unzigzag[b]
                pos += 1
            else:
                b2 = data[pos + 1]
                if b2 < 0x80:
                    value_len = unzigzag[(b & 0x7F) | (b2 << 7)]
                    pos += 2
                else:
                    value_len, pos = read_varint(data, pos)
            if value_len >= 0:
                value: bytes | None = data[pos : pos + value_len]
                pos += value_len
            elif value_len == -1:
                value = None
            else:
                raise CorruptMessageError(f"negative value length {value_len}")
            if data[pos] == 0:
                headers: tuple[Header, ...] = ()
                pos += 1
            else:
                headers, pos = _decode_headers(data, pos)
            if pos != record_end:
                raise CorruptMessageError(
                    f"record at offset delta {offset_delta} declares {length} bytes but parses "
                    f"to {pos - record_end + length}"
                )
            append(new(record_cls, (topic, partition, base_offset + offset_delta,
                                    base_timestamp + ts_delta, ts_type, key, value, headers,
                                    leader_epoch, key_len, value_len)))
    except IndexError:
        raise CorruptMessageError(
            f"records section truncated: it holds fewer than the {count} records declared"
        ) from None
    if pos > end:  # read into the next batch: the lengths ran past this one
        raise CorruptMessageError(
            f"records section truncated: the {count} records declared run past its end"
        )
    if pos != end:
        raise CorruptMessageError(f"{end - pos} bytes left after the {count} declared records")
    if base_offset < min_offset:  # only the first batch of a fetch starts below the position
        out = [r for r in out if r[2] >= min_offset]
    if ts_type is TimestampType.LOG_APPEND_TIME:
        # Every record reports the batch's maxTimestamp (§1.6), as in `_decode_records`.
        out = [new(record_cls, (*r[:3], max_timestamp, *r[4:])) for r in out]
    return out


def _decode_headers(data: bytes, pos: int) -> tuple[tuple[Header, ...], int]:
    count, pos = decode_varint(data, pos)
    if count < 0:
        raise CorruptMessageError(f"negative header count {count}")
    headers = []
    for _ in range(count):
        key_len, pos = decode_varint(data, pos)
        if key_len < 0:
            raise CorruptMessageError(f"header key length {key_len}: header keys are not null")
        if pos + key_len > len(data):
            raise IndexError
        try:
            hkey = data[pos : pos + key_len].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CorruptMessageError(f"header key is not UTF-8: {exc}") from None
        pos += key_len
        value_len, pos = decode_varint(data, pos)
        if value_len >= 0:
            hvalue: bytes | None = data[pos : pos + value_len]
            pos += value_len
        elif value_len == -1:
            hvalue = None
        else:
            raise CorruptMessageError(f"negative header value length {value_len}")
        headers.append((hkey, hvalue))
    return tuple(headers), pos


# --- Encoding --------------------------------------------------------------------------------


class RecordBatchBuilder:
    """Builds one RecordBatch v2, as the Java producer's `MemoryRecordsBuilder` does.

    Records are encoded as they are appended (into a flat list of byte parts); `build()` joins
    them, compresses the section if a codec is set, and writes the header and CRC.

    Timestamps: a proto module never reads the clock (STYLE.md §1). `append(...,
    timestamp_ms=None)` uses the builder's `now_ms` (given at construction: the batch's creation
    time, which the accumulator knows), so every such record in a batch shares one timestamp.
    Kafka's producer stamps each `send()`; the difference is bounded by linger.ms. Pass
    `timestamp_ms` per record for exact send times. baseTimestamp is the first record's
    timestamp (or the delete horizon, KIP-534), maxTimestamp the largest.

    Not thread-safe; one builder per open batch.
    """

    __slots__ = (
        "_codec",
        "_level",
        "_producer_id",
        "_producer_epoch",
        "_base_sequence",
        "_transactional",
        "_control",
        "_base_offset",
        "_partition_leader_epoch",
        "_now_ms",
        "_delete_horizon",
        "_forced_last_offset_delta",
        "_parts",
        "_next_delta",
        "_count",
        "_base_ts",
        "_max_ts",
        "_size",
    )

    def __init__(
        self,
        compression: str | int | Compression = Compression.NONE,
        producer_id: int = NO_PRODUCER_ID,
        producer_epoch: int = NO_PRODUCER_EPOCH,
        base_sequence: int = NO_SEQUENCE,
        is_transactional: bool = False,
        compression_level: int | None = None,
        base_offset: int = 0,
        partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
        *,
        now_ms: int | None = None,
        is_control: bool = False,
        delete_horizon_ms: int | None = None,
        last_offset_delta: int | None = None,
    ) -> None:
        """Args:
            compression: codec name or id; the records section is compressed on build().
            producer_id, producer_epoch, base_sequence: idempotence fields (-1 = none).
            is_transactional: set attribute bit 4.
            compression_level: codec level, None for the default (see proto.compression).
            base_offset, partition_leader_epoch: header values (the leader overwrites both).
            now_ms: timestamp for records appended without one.
            is_control: set attribute bit 5 (transaction markers; the caller encodes the
                control key/value).
            delete_horizon_ms: set attribute bit 6 and use this as baseTimestamp (log cleaner).
            last_offset_delta: force lastOffsetDelta (compaction keeps the original offset
                and sequence range after dropping records); must be >= the last appended delta.
        """
        self._codec = Compression.parse(compression)
        self._level = compression_level
        self._producer_id = producer_id
        self._producer_epoch = producer_epoch
        self._base_sequence = base_sequence
        self._transactional = is_transactional
        self._control = is_control
        self._base_offset = base_offset
        self._partition_leader_epoch = partition_leader_epoch
        self._now_ms = now_ms
        self._delete_horizon = delete_horizon_ms
        self._forced_last_offset_delta = last_offset_delta
        self._parts: list[bytes] = []
        self._next_delta = 0
        self._count = 0
        # Deltas are taken from baseTimestamp: the delete horizon if set, else the first
        # record's timestamp (set on the first append).
        self._base_ts: int | None = delete_horizon_ms
        self._max_ts = NO_TIMESTAMP
        self._size = RECORD_BATCH_OVERHEAD

    # -- size accounting --

    @property
    def records_count(self) -> int:
        return self._count

    @property
    def compression(self) -> Compression:
        return self._codec

    def estimated_size_in_bytes(self) -> int:
        """Header + encoded records so far, before compression (an upper bound after it for
        any realistic payload; Kafka's estimate also ignores the codec's framing)."""
        return self._size

    @staticmethod
    def estimate_record_size(
        key: bytes | None, value: bytes | None, headers: Sequence[Header] = ()
    ) -> int:
        """Upper bound on one record's encoded size (DefaultRecord.MAX_RECORD_OVERHEAD)."""
        size = MAX_RECORD_OVERHEAD
        if key is not None:
            size += len(key)
        if value is not None:
            size += len(value)
        for hkey, hvalue in headers:
            size += 10 + len(hkey.encode("utf-8")) + (len(hvalue) if hvalue is not None else 0)
        return size

    def has_room_for(
        self,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[Header] = (),
        batch_size: int = 16384,
    ) -> bool:
        """Whether one more record fits within `batch_size`. An empty batch always has room,
        so a record larger than batch.size still gets a batch of its own (as in Kafka)."""
        if self._count == 0:
            return True
        return self._size + self.estimate_record_size(key, value, headers) <= batch_size

    # -- appending --

    def append(
        self,
        value: bytes | None,
        key: bytes | None = None,
        headers: Sequence[Header] = (),
        timestamp_ms: int | None = None,
    ) -> int:
        """Append a record at the next offset delta; returns that delta.

        `key` and `value` are referenced, not copied, until build(): do not mutate a bytearray
        passed here before then.

        Args:
            value: the value, None for a tombstone.
            key: the key, None for none.
            headers: (str key, bytes | None value) pairs.
            timestamp_ms: CreateTime; None uses the builder's `now_ms`.

        Raises:
            ValueError: no timestamp and the builder has no `now_ms`, or a negative timestamp
                other than NO_TIMESTAMP (-1), as Kafka's MemoryRecordsBuilder.
        """
        delta = self._next_delta
        if timestamp_ms is None:
            timestamp_ms = self._now_ms
            if timestamp_ms is None:
                raise ValueError("timestamp_ms is None and the builder has no now_ms")
        base_ts = self._base_ts
        if base_ts is None:
            base_ts = self._base_ts = timestamp_ms
        if timestamp_ms > self._max_ts:
            self._max_ts = timestamp_ms
        elif timestamp_ms < NO_TIMESTAMP:  # max_ts >= -1, so this costs nothing on the fast path
            raise ValueError(f"invalid negative timestamp {timestamp_ms}")
        # Fast path: timestampDelta 0 and a small offset delta take their prefix from a table;
        # lengths below 2**14 take varints and sizes from tables (see the module docstring).
        if timestamp_ms == base_ts and delta < _TABLE_SIZE:
            prefix = _ATTRS_TS0_DELTA[delta]
        else:
            prefix = b"\x00" + encode_varint(timestamp_ms - base_ts) + _varint(delta)
        header_part = _encode_headers(headers) if headers else _NO_HEADERS
        if value is None:
            value_len_part = _NULL
            body = len(prefix) + 1 + len(header_part)
        else:
            vlen = len(value)
            if vlen < _TABLE_SIZE:
                value_len_part = _VARINT[vlen]
                body = len(prefix) + _SIZED[vlen] + len(header_part)
            else:
                value_len_part = encode_varint(vlen)
                body = len(prefix) + len(value_len_part) + vlen + len(header_part)
        if key is None:
            body += 1
            if body < _TABLE_SIZE:
                self._size += _SIZED[body]
                length_part = _VARINT[body]
            else:
                length_part = encode_varint(body)
                self._size += len(length_part) + body
            if value is None:
                self._parts += (length_part, prefix, _NULL, _NULL, header_part)
            else:
                self._parts += (length_part, prefix, _NULL, value_len_part, value, header_part)
        else:
            body += _sized(len(key))
            if body < _TABLE_SIZE:
                self._size += _SIZED[body]
                length_part = _VARINT[body]
            else:
                length_part = encode_varint(body)
                self._size += len(length_part) + body
            if value is None:
                self._parts += (length_part, prefix, _varint(len(key)), key, _NULL, header_part)
            else:
                self._parts += (
                    length_part, prefix, _varint(len(key)), key, value_len_part, value,
                    header_part,
                )
        self._next_delta = delta + 1
        self._count += 1
        return delta

    def append_at(
        self,
        offset_delta: int,
        timestamp_ms: int,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[Header] = (),
    ) -> int:
        """Append a record at an explicit offset delta (rebuilding a compacted batch).

        Deltas must increase; gaps are allowed. Returns `offset_delta`.

        Raises:
            ValueError: `offset_delta` is not above the previous record's.
        """
        if offset_delta < self._next_delta:
            raise ValueError(
                f"offset delta {offset_delta} must exceed the previous {self._next_delta - 1}"
            )
        self._next_delta = offset_delta
        return self.append(value, key, headers, timestamp_ms)

    # -- building --

    def build(self) -> bytes:
        """Encode the batch: header, CRC-32C and (compressed) records.

        Raises:
            ValueError: a forced last_offset_delta below the last appended delta.
        """
        records = b"".join(self._parts)
        codec = self._codec
        if codec:
            records = compress(codec, records, self._level)
        last_offset_delta = self._next_delta - 1 if self._count else 0
        forced = self._forced_last_offset_delta
        if forced is not None:
            if forced < last_offset_delta:
                raise ValueError(
                    f"forced last_offset_delta {forced} below the last record's {last_offset_delta}"
                )
            last_offset_delta = forced
        attributes = int(codec)
        if self._transactional:
            attributes |= TRANSACTIONAL_FLAG_MASK
        if self._control:
            attributes |= CONTROL_FLAG_MASK
        if self._delete_horizon is not None:
            attributes |= DELETE_HORIZON_FLAG_MASK
        base_ts = self._base_ts if self._base_ts is not None else NO_TIMESTAMP
        covered = _COVERED_HEADER.pack(
            attributes,
            last_offset_delta,
            base_ts,
            self._max_ts,
            self._producer_id,
            self._producer_epoch,
            self._base_sequence,
            self._count,
        )
        crc = crc32c(records, crc32c(covered))
        prefix = _PREFIX.pack(
            self._base_offset,
            MIN_BATCH_LENGTH + len(records),
            self._partition_leader_epoch,
            MAGIC,
            crc,
        )
        return b"".join((prefix, covered, records))
