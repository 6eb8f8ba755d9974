"""Compression codecs for the records section of a RecordBatch v2 (KAFKA_SEMANTICS.md §1.4).

Only the records section (bytes 61..end) of a batch is compressed, as one stream; the 61-byte
header stays plain. The stream formats match what Kafka's Java client writes, so batches are
interchangeable with Kafka's:

- gzip: a standard gzip stream (RFC 1952), as `GZIPOutputStream` writes it.
- snappy: xerial's `SnappyOutputStream` framing, not raw snappy and not the snappy "framing
  format": a 16-byte header (magic ``\\x82SNAPPY\\x00``, int32 version 1, int32 compatible
  version 1), then blocks of big-endian int32 compressed length + raw snappy block. Readers must
  also accept a stream without the header (plain raw snappy), as kafka-python and librdkafka do.
- lz4: the LZ4 frame format (magic 0x184D2204), with 64 KB independent blocks and no content
  checksum, as `KafkaLZ4BlockOutputStream` writes it.
- zstd: a standard zstd frame. Kafka's zstd-jni stream does not write the content size, so the
  decompressor must handle frames without it.

Levels (KIP-390): gzip 1..9 or -1 (zlib default, the default), lz4 python-lz4's default (fast
mode; Kafka 3.8+ defaults to 9, which only trades CPU for ratio), zstd 3.

snappy needs the optional `cramjam` package (the `snappy` extra). lz4 and zstd are required
dependencies. zstd contexts are reused: creating one costs more than compressing a small batch.
A zstd context must not be used by two threads at once (python-zstandard may crash), and one
process can hold several clients, each on its own thread. So contexts live in free lists: a
call pops one (or creates one), uses it alone and pushes it back. `list.pop`/`list.append` are
atomic under the GIL, so this needs no lock (and no `threading`, which cores may not import).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from enum import IntEnum
from types import ModuleType
from typing import Final

import lz4.frame
import zstandard

from proto.errors import CorruptMessageError, UnsupportedCompressionTypeError

try:  # optional extra: pip install rafka[snappy]
    import cramjam as _cramjam

    _snappy: ModuleType | None = _cramjam.snappy
    _SnappyError: type[Exception] = _cramjam.DecompressionError
except ImportError:  # pragma: no cover - exercised only without the extra
    _snappy = None

    class _SnappyError(Exception):  # type: ignore[no-redef]
        """Stands in for cramjam.DecompressionError when cramjam is missing (never raised)."""


class Compression(IntEnum):
    """Codec ids stored in attribute bits 0-2 (mask 0x07), Kafka's numbers."""

    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4

    @classmethod
    def parse(cls, value: str | int | Compression) -> Compression:
        """The codec for a config name ("none", "gzip", "snappy", "lz4", "zstd") or an id.

        Raises:
            UnsupportedCompressionTypeError: unknown name or id.
        """
        if isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                raise UnsupportedCompressionTypeError(
                    f"unknown compression type {value!r}: expected one of "
                    f"{', '.join(c.name.lower() for c in cls)}"
                ) from None
        try:
            return cls(value)
        except ValueError:
            raise UnsupportedCompressionTypeError(
                f"unsupported compression codec id {value}"
            ) from None


GZIP_DEFAULT_LEVEL: Final = -1
ZSTD_DEFAULT_LEVEL: Final = 3
LZ4_DEFAULT_LEVEL: Final = 0  # python-lz4's default: the fast (non-HC) compressor

# xerial SnappyOutputStream header: magic, version 1, minimum compatible version 1.
SNAPPY_XERIAL_HEADER: Final = b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1)
# SnappyOutputStream's default block size: each block is compressed on its own.
_SNAPPY_BLOCK_SIZE: Final = 32 * 1024
_INT32 = struct.Struct(">i")

# Free lists of zstd contexts (see the module docstring): per level, and for decompression.
_zstd_compressors: dict[int, list[zstandard.ZstdCompressor]] = {}
_zstd_decompressors: list[zstandard.ZstdDecompressor] = []


def _require_snappy() -> ModuleType:
    if _snappy is None:
        raise UnsupportedCompressionTypeError(
            "snappy needs the 'snappy' extra: pip install rafka[snappy]"
        )
    return _snappy


def compress(codec: Compression | int, data: bytes, level: int | None = None) -> bytes:
    """Compress a records section with `codec` in Kafka's stream format.

    Args:
        codec: the codec; NONE returns `data` unchanged.
        data: the uncompressed records section.
        level: codec level, None for the codec's default.

    Raises:
        UnsupportedCompressionTypeError: unknown codec, or snappy without cramjam.
    """
    if codec == Compression.ZSTD:
        return _zstd_compress(data, ZSTD_DEFAULT_LEVEL if level is None else level)
    if codec == Compression.LZ4:
        out: bytes = lz4.frame.compress(
            data,
            compression_level=LZ4_DEFAULT_LEVEL if level is None else level,
            block_size=lz4.frame.BLOCKSIZE_MAX64KB,
            block_linked=False,
            content_checksum=False,
            store_size=False,
        )
        return out
    if codec == Compression.GZIP:
        # mtime=0 keeps the output deterministic (the header's MTIME field is informational).
        return gzip.compress(data, GZIP_DEFAULT_LEVEL if level is None else level, mtime=0)
    if codec == Compression.SNAPPY:
        return _snappy_xerial_compress(_require_snappy(), data)
    if codec == Compression.NONE:
        return data
    raise UnsupportedCompressionTypeError(f"unsupported compression codec id {codec}")


def decompress(codec: Compression | int, data: bytes | memoryview) -> bytes:
    """Decompress a records section written by `compress` (or by Kafka).

    Raises:
        UnsupportedCompressionTypeError: unknown codec, or snappy without cramjam.
        CorruptMessageError: the stream does not decode.
    """
    try:
        if codec == Compression.ZSTD:
            return _zstd_decompress(data)
        if codec == Compression.LZ4:
            return bytes(lz4.frame.decompress(data))
        if codec == Compression.GZIP:
            # wbits 47 = auto-detect zlib or gzip header, so zlib streams are accepted too.
            return zlib.decompress(data, 47)
        if codec == Compression.SNAPPY:
            return _snappy_xerial_decompress(_require_snappy(), bytes(data))
        if codec == Compression.NONE:
            return bytes(data)
    except (zlib.error, zstandard.ZstdError, RuntimeError, _SnappyError) as exc:
        # lz4.frame raises RuntimeError on a bad frame; cramjam its DecompressionError.
        name = Compression(codec).name.lower()
        raise CorruptMessageError(f"{name} records section does not decompress: {exc}") from exc
    raise UnsupportedCompressionTypeError(f"unsupported compression codec id {codec}")


def _zstd_compress(data: bytes, level: int) -> bytes:
    pool = _zstd_compressors.setdefault(level, [])
    try:
        cctx = pool.pop()
    except IndexError:
        cctx = zstandard.ZstdCompressor(level=level)
    try:
        return cctx.compress(data)
    finally:
        pool.append(cctx)


def _zstd_decompress(data: bytes | memoryview) -> bytes:
    pool = _zstd_decompressors
    try:
        dctx = pool.pop()
    except IndexError:
        dctx = zstandard.ZstdDecompressor()
    try:
        # ZstdDecompressor.decompress needs the content size in the frame header; Kafka's Java
        # producer (zstd-jni streaming) does not write it, so fall back to the streaming API.
        if zstandard.frame_content_size(data) > 0:
            return dctx.decompress(data)
        return dctx.decompressobj().decompress(data)
    finally:
        pool.append(dctx)


def _snappy_xerial_compress(snappy: ModuleType, data: bytes) -> bytes:
    parts = [SNAPPY_XERIAL_HEADER]
    view = memoryview(data)
    pack = _INT32.pack
    for start in range(0, len(data), _SNAPPY_BLOCK_SIZE):
        block = bytes(snappy.compress_raw(view[start : start + _SNAPPY_BLOCK_SIZE]))
        parts.append(pack(len(block)))
        parts.append(block)
    return b"".join(parts)


def _snappy_xerial_decompress(snappy: ModuleType, data: bytes) -> bytes:
    if not data.startswith(SNAPPY_XERIAL_HEADER[:8]):
        # No xerial header: a plain raw snappy block (accepted by Kafka's readers too).
        return bytes(snappy.decompress_raw(data))
    if len(data) < 16:
        raise CorruptMessageError("snappy stream shorter than its 16-byte xerial header")
    out = []
    pos, end = 16, len(data)
    unpack_from = _INT32.unpack_from
    while pos < end:
        if end - pos < 4:
            raise CorruptMessageError(f"snappy block length truncated at byte {pos}")
        (size,) = unpack_from(data, pos)
        pos += 4
        if size < 0 or pos + size > end:
            raise CorruptMessageError(
                f"snappy block of {size} bytes at byte {pos} overruns the {end}-byte stream"
            )
        out.append(bytes(snappy.decompress_raw(data[pos : pos + size])))
        pos += size
    return b"".join(out)
