"""Codecs of proto/compression.py: round trips, Kafka's stream framings, bad input."""

from __future__ import annotations

import gzip
import struct
import threading
import zlib

import lz4.frame
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from proto import compression
from proto.compression import SNAPPY_XERIAL_HEADER, Compression, compress, decompress
from proto.errors import CorruptMessageError, UnsupportedCompressionTypeError

CODECS = list(Compression)


@settings(max_examples=40, deadline=None)
@given(codec=st.sampled_from(CODECS), data=st.binary(max_size=200_000))
def test_every_codec_round_trips(codec: Compression, data: bytes) -> None:
    assert decompress(codec, compress(codec, data)) == data


def test_parse_names_and_ids() -> None:
    assert Compression.parse("none") is Compression.NONE
    assert Compression.parse("gzip") is Compression.GZIP
    assert Compression.parse("snappy") is Compression.SNAPPY
    assert Compression.parse("LZ4") is Compression.LZ4
    assert Compression.parse("zstd") is Compression.ZSTD
    assert Compression.parse(4) is Compression.ZSTD
    with pytest.raises(UnsupportedCompressionTypeError, match="brotli"):
        Compression.parse("brotli")
    with pytest.raises(UnsupportedCompressionTypeError, match="5"):
        Compression.parse(5)


def test_unknown_codec_id_raises() -> None:
    with pytest.raises(UnsupportedCompressionTypeError):
        compress(7, b"x")
    with pytest.raises(UnsupportedCompressionTypeError):
        decompress(6, b"x")


def test_gzip_is_a_gzip_stream_and_zlib_is_accepted() -> None:
    data = b"kafka " * 100
    out = compress(Compression.GZIP, data)
    assert out[:2] == b"\x1f\x8b"
    assert gzip.decompress(out) == data
    assert decompress(Compression.GZIP, zlib.compress(data)) == data


def test_snappy_uses_xerial_framing_with_blocks() -> None:
    data = bytes(range(256)) * 300  # 76800 bytes: three 32 KiB blocks
    out = compress(Compression.SNAPPY, data)
    assert out[:16] == b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1) == SNAPPY_XERIAL_HEADER
    (first_block,) = struct.unpack_from(">i", out, 16)
    assert 0 < first_block < len(out)
    assert decompress(Compression.SNAPPY, out) == data


def test_snappy_without_xerial_header_is_raw_snappy() -> None:
    import cramjam

    data = b"raw snappy block" * 10
    assert decompress(Compression.SNAPPY, bytes(cramjam.snappy.compress_raw(data))) == data


def test_snappy_without_the_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compression, "_snappy", None)
    with pytest.raises(UnsupportedCompressionTypeError, match=r"pip install rafka\[snappy\]"):
        compress(Compression.SNAPPY, b"x")


def test_lz4_is_a_frame_with_independent_64k_blocks() -> None:
    data = b"lz4 " * 50_000
    out = compress(Compression.LZ4, data)
    assert out[:4] == b"\x04\x22\x4d\x18"  # magic 0x184D2204, little-endian
    flg, bd = out[4], out[5]
    assert flg & 0x20  # block independence
    assert not flg & 0x04  # no content checksum
    assert (bd >> 4) & 0x07 == 4  # block max size 64 KB
    assert lz4.frame.decompress(out) == data


def test_zstd_frame_without_content_size_decompresses() -> None:
    data = b"zstd from a java producer " * 1000
    frame = zstandard.ZstdCompressor(write_content_size=False).compress(data)
    assert zstandard.frame_content_size(frame) == -1
    assert decompress(Compression.ZSTD, frame) == data
    assert decompress(Compression.ZSTD, compress(Compression.ZSTD, data, level=19)) == data


@pytest.mark.parametrize("codec", [c for c in CODECS if c is not Compression.NONE])
def test_garbage_raises_corrupt_message(codec: Compression) -> None:
    garbage = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x09garbage!!"
    if codec is not Compression.SNAPPY:
        garbage = b"\x1f\x8b\x04\x22\x4d\x18 not a stream at all"
    with pytest.raises(CorruptMessageError):
        decompress(codec, garbage)


def test_zstd_contexts_are_safe_across_threads() -> None:
    # Several clients in one process each run on their own thread and share the context pool.
    data = [bytes([i]) * 5000 + b"payload %d" % i for i in range(4)]
    failures: list[str] = []

    def work(i: int) -> None:
        for _ in range(200):
            if decompress(Compression.ZSTD, compress(Compression.ZSTD, data[i])) != data[i]:
                failures.append(f"thread {i}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
