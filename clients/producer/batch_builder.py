"""The producer's RecordBatch v2 builder: records are encoded as `send()` appends them.

It writes the same bytes as `proto.records.RecordBatchBuilder` for a producer batch (no control
records, no delete horizon, offsets from 0), but is cut for the producer's hot path:

- `append_value(value, timestamp_ms, limit)` is the whole per-record cost of a record without
  key or headers: one room check, table look-ups for every varint (timestamp delta, offset
  delta, lengths) and one `list +=` of the record's parts; no per-record function calls.
- `append(value, key, headers, timestamp_ms)` takes any record (keys, headers, odd timestamps).
- `build(producer_id, producer_epoch, base_sequence)` joins the parts and writes header and
  CRC once, with the idempotence fields the accumulator assigns when the batch is drained
  (so the bytes are never re-stamped).

Sizes: `size` is the encoded size so far (header included), the same figure as
`RecordBatchBuilder.estimated_size_in_bytes`; the room check uses Kafka's upper bound per
record (`MAX_RECORD_OVERHEAD` + key + value + headers), as `RecordBatchBuilder.has_room_for`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

from crc32c import crc32c

from clients.types import Header
from proto.compression import Compression, compress
from proto.errors import InvalidRecordError
from proto.records import (
    MAGIC,
    MAX_RECORD_OVERHEAD,
    MIN_BATCH_LENGTH,
    NO_PARTITION_LEADER_EPOCH,
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    NO_SEQUENCE,
    NO_TIMESTAMP,
    RECORD_BATCH_OVERHEAD,
    TRANSACTIONAL_FLAG_MASK,
    encode_varint,
)

__all__ = ["ProducerBatchBuilder", "estimate_record_size"]

_PREFIX = struct.Struct(">qiibI")  # baseOffset, batchLength, leaderEpoch, magic, crc
_COVERED = struct.Struct(">hiqqqhii")  # attributes .. recordsCount (the CRC covers these)

# Varints of 0.._TABLE-1 (zigzag LEB128) and the size of an n-byte length-prefixed field.
_TABLE: Final = 1 << 14
_VARINT: Final[tuple[bytes, ...]] = tuple(encode_varint(n) for n in range(_TABLE))
_VARINT_LEN: Final[tuple[int, ...]] = tuple(len(v) for v in _VARINT)
_SIZED: Final[tuple[int, ...]] = tuple(n + len(_VARINT[n]) for n in range(_TABLE))
# attributes (0) + timestampDelta, for deltas 0.._TABLE-1 ms.
_ATTRS_TS: Final[tuple[bytes, ...]] = tuple(b"\x00" + v for v in _VARINT)
_ATTRS_TS_LEN: Final[tuple[int, ...]] = tuple(len(v) for v in _ATTRS_TS)
# null key + valueLength, for value lengths 0.._TABLE-1.
_NULL_KEY_VALUE_LEN: Final[tuple[bytes, ...]] = tuple(b"\x01" + v for v in _VARINT)
_NULL: Final = b"\x01"  # varint(-1)
_NO_HEADERS: Final = b"\x00"


def _varint(n: int) -> bytes:
    return _VARINT[n] if 0 <= n < _TABLE else encode_varint(n)


def estimate_record_size(
    key: bytes | None, value: bytes | None, headers: Sequence[Header] = ()
) -> int:
    """Upper bound on one record's encoded size (Kafka's DefaultRecord.MAX_RECORD_OVERHEAD)."""
    size = MAX_RECORD_OVERHEAD
    if key is not None:
        size += len(key)
    if value is not None:
        size += len(value)
    for hkey, hvalue in headers:
        size += 10 + len(hkey.encode("utf-8")) + (len(hvalue) if hvalue is not None else 0)
    return size


def _encode_headers(headers: Sequence[Header]) -> bytes:
    parts = [_varint(len(headers))]
    for hkey, hvalue in headers:
        if not isinstance(hkey, str):
            raise InvalidRecordError(f"header key must be str, got {type(hkey).__name__}")
        encoded = hkey.encode("utf-8")
        parts.append(_varint(len(encoded)))
        parts.append(encoded)
        if hvalue is None:
            parts.append(_NULL)
        else:
            parts.append(_varint(len(hvalue)))
            parts.append(bytes(hvalue))
    return b"".join(parts)


class ProducerBatchBuilder:
    """One open producer batch (Kafka's `MemoryRecordsBuilder` for the producer).

    Args:
        compression: codec name or id; the records section is compressed on `build()`.
        compression_level: codec level, None for the default.
        is_transactional: set attribute bit 4.

    Attributes:
        size: encoded bytes so far, batch header included (before compression).
        count: records appended (= the next offset delta).

    Not thread-safe: the accumulator appends under its owner's lock.
    """

    __slots__ = ("_codec", "_level", "_transactional", "parts", "size", "count", "base_ts",
                 "max_ts")

    def __init__(
        self,
        compression: str | int | Compression = Compression.NONE,
        compression_level: int | None = None,
        is_transactional: bool = False,
    ) -> None:
        self._codec = Compression.parse(compression)
        self._level = compression_level
        self._transactional = is_transactional
        self.parts: list[bytes] = []
        self.size = RECORD_BATCH_OVERHEAD
        self.count = 0
        self.base_ts = NO_TIMESTAMP  # the first record's timestamp: deltas are taken from it
        self.max_ts = NO_TIMESTAMP

    def estimated_size_in_bytes(self) -> int:
        return self.size

    def has_room_for(
        self,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[Header] = (),
        batch_size: int = 16384,
    ) -> bool:
        """Whether one more record fits `batch_size`; an empty batch always has room (a record
        larger than batch.size gets a batch of its own, as in Kafka)."""
        return self.count == 0 or self.size + estimate_record_size(key, value, headers) <= batch_size

    def append_value(self, value: bytes, timestamp_ms: int, limit: int) -> int:
        """Append a record with a null key and no headers if it fits `limit` bytes.

        Args:
            value: the value (not copied until `build()`).
            timestamp_ms: its CreateTime (>= 0).
            limit: batch.size: refuse the record when `size` + its upper bound would pass it
                (never refused by an empty batch).

        Returns:
            Its offset delta, or -1 when it does not fit.
        """
        count = self.count
        vlen = len(value)
        if count:
            if self.size + MAX_RECORD_OVERHEAD + vlen > limit:
                return -1
            delta = timestamp_ms - self.base_ts
            if timestamp_ms > self.max_ts:
                self.max_ts = timestamp_ms
        else:
            self.base_ts = self.max_ts = timestamp_ms
            delta = 0
        if 0 <= delta < _TABLE and count < _TABLE and vlen < _TABLE:
            # length, attributes + tsDelta, offsetDelta, null key + valueLength, value, headers
            body = _ATTRS_TS_LEN[delta] + _VARINT_LEN[count] + 2 + _SIZED[vlen]
            if body < _TABLE:
                self.parts += (_VARINT[body], _ATTRS_TS[delta], _VARINT[count],
                               _NULL_KEY_VALUE_LEN[vlen], value, _NO_HEADERS)
                self.size += _SIZED[body]
                self.count = count + 1
                return count
        self._encode(count, delta, None, value, _NO_HEADERS)
        return count

    def append(
        self,
        value: bytes | None,
        key: bytes | None = None,
        headers: Sequence[Header] = (),
        timestamp_ms: int = NO_TIMESTAMP,
    ) -> int:
        """Append any record at the next offset delta; returns that delta.

        Raises:
            ValueError: a negative timestamp other than NO_TIMESTAMP (-1).
            InvalidRecordError: a header key that is not a str.
        """
        if timestamp_ms < NO_TIMESTAMP:
            raise ValueError(f"invalid negative timestamp {timestamp_ms}")
        count = self.count
        if count == 0:
            self.base_ts = timestamp_ms
        if timestamp_ms > self.max_ts:
            self.max_ts = timestamp_ms
        header_part = _encode_headers(headers) if headers else _NO_HEADERS
        self._encode(count, timestamp_ms - self.base_ts, key, value, header_part)
        return count

    def _encode(
        self, count: int, ts_delta: int, key: bytes | None, value: bytes | None,
        header_part: bytes,
    ) -> None:
        fields = [b"\x00", encode_varint(ts_delta), _varint(count)]
        if key is None:
            fields.append(_NULL)
        else:
            fields += (_varint(len(key)), key)
        if value is None:
            fields.append(_NULL)
        else:
            fields += (_varint(len(value)), value)
        fields.append(header_part)
        record = b"".join(fields)
        length = _varint(len(record))
        self.parts += (length, record)
        self.size += len(length) + len(record)
        self.count = count + 1

    def build(
        self,
        producer_id: int = NO_PRODUCER_ID,
        producer_epoch: int = NO_PRODUCER_EPOCH,
        base_sequence: int = NO_SEQUENCE,
    ) -> bytes:
        """The RecordBatch bytes: header, CRC-32C and (compressed) records."""
        records = b"".join(self.parts)
        codec = self._codec
        if codec:
            records = compress(codec, records, self._level)
        attributes = int(codec)
        if self._transactional:
            attributes |= TRANSACTIONAL_FLAG_MASK
        count = self.count
        covered = _COVERED.pack(
            attributes, count - 1 if count else 0, self.base_ts, self.max_ts,
            producer_id, producer_epoch, base_sequence, count,
        )
        crc = crc32c(records, crc32c(covered))
        prefix = _PREFIX.pack(
            0, MIN_BATCH_LENGTH + len(records), NO_PARTITION_LEADER_EPOCH, MAGIC, crc
        )
        return b"".join((prefix, covered, records))
