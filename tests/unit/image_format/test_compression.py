"""Compression names and levels, gzip/zstd units, and the bounded multi-member
gzip reader."""

from __future__ import annotations

import gzip
import io
import threading
import zlib
from typing import List

import pytest
import zstandard

from oci_cache.image_format import compression as comp
from oci_cache.image_format.compression import Compression, GzipMembersReader, parse_compression, unit_compressor_factory
from oci_cache.image_format.errors import ImageFormatError

DATA = b"".join(b"%d: some compressible text\n" % i for i in range(5000))


def test_names_and_level_ranges() -> None:
    assert [c.value for c in Compression] == ["uncompressed", "gzip", "estargz", "zstd"]
    assert parse_compression("estargz") is Compression.ESTARGZ
    with pytest.raises(ValueError, match="must be one of uncompressed, gzip, estargz, zstd"):
        parse_compression("lz4")
    assert Compression.GZIP.level_range == Compression.ESTARGZ.level_range == (0, 9)
    assert Compression.ZSTD.level_range == (0, 22)
    assert Compression.UNCOMPRESSED.level_range is None


@pytest.mark.parametrize("compression, level", [(Compression.GZIP, 10), (Compression.GZIP, -1), (Compression.ZSTD, 23), (Compression.ZSTD, True), (Compression.UNCOMPRESSED, 0)])
def test_bad_levels(compression: Compression, level: object) -> None:
    with pytest.raises(ValueError):
        compression.check_level(level)  # type: ignore[arg-type]


@pytest.mark.parametrize("level", [None, 0, 1, 6, 9])
@pytest.mark.parametrize("compression", [Compression.GZIP, Compression.ESTARGZ])
def test_gzip_units_are_single_members_that_gzip_reads(compression: Compression, level: object) -> None:
    unit = unit_compressor_factory(compression, level)()(DATA)  # type: ignore[arg-type]
    assert gzip.decompress(unit) == DATA
    decompressor = zlib.decompressobj(31)
    assert decompressor.decompress(unit) == DATA and decompressor.eof and not decompressor.unused_data
    assert unit[8:10] == b"\x00\xff"


def test_default_gzip_uses_isal_when_installed_and_explicit_levels_use_zlib() -> None:
    expected_default = "isal" if comp._isal_zlib is not None else "zlib"
    assert comp.gzip_backend_name(None) == expected_default
    assert comp.gzip_backend_name(6) == "zlib"
    level6 = unit_compressor_factory(Compression.GZIP, 6)()(DATA)
    reference = zlib.compressobj(6, zlib.DEFLATED, 31)
    assert level6[10:] == (reference.compress(DATA) + reference.flush())[10:], "exactly zlib's level 6 deflate stream"


@pytest.mark.parametrize("level", [None, 0, 1, 19, 22])
def test_zstd_units_are_frames_with_content_size(level: object) -> None:
    unit = unit_compressor_factory(Compression.ZSTD, level)()(DATA)  # type: ignore[arg-type]
    assert zstandard.get_frame_parameters(unit).content_size == len(DATA)
    assert zstandard.ZstdDecompressor().decompress(unit) == DATA


def test_uncompressed_has_no_units() -> None:
    with pytest.raises(ValueError):
        unit_compressor_factory(Compression.UNCOMPRESSED, None)


def test_thread_local_compressors_work_from_many_threads() -> None:
    compress = comp.ThreadLocalUnitCompressor(unit_compressor_factory(Compression.ZSTD, None))
    results: List[bytes] = []

    def work() -> None:
        for _ in range(20):
            results.append(zstandard.ZstdDecompressor().decompress(compress(DATA)))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [DATA] * 80


def _members(*parts: bytes) -> bytes:
    return b"".join(gzip.compress(part) for part in parts)


def test_members_reader_concatenates_members_and_honours_read_sizes() -> None:
    reader = GzipMembersReader(io.BytesIO(_members(b"abc", b"", DATA, b"xyz")))
    out = []
    while True:
        chunk = reader.read(7)
        assert len(chunk) <= 7
        if not chunk:
            break
        out.append(chunk)
    assert b"".join(out) == b"abc" + DATA + b"xyz"


def test_members_reader_on_empty_input_is_empty() -> None:
    assert GzipMembersReader(io.BytesIO(b"")).read() == b""


@pytest.mark.parametrize(
    "data, message",
    [
        (_members(b"abc")[:-3], "truncated gzip member"),
        (_members(b"abc") + b"garbage", "invalid gzip data|truncated gzip member"),
        (_members(b"abc") + b"garbage after a member", "invalid gzip data"),
        (b"\x1f\x8b\x08\x00" + bytes(20), "invalid gzip data"),
        (zstandard.ZstdCompressor().compress(b"abc"), "invalid gzip data"),
    ],
)
def test_members_reader_refuses_broken_input(data: bytes, message: str) -> None:
    with pytest.raises(ImageFormatError, match=message):
        GzipMembersReader(io.BytesIO(data)).read()


def test_read_exactly_reports_truncation() -> None:
    assert comp.read_exactly(io.BytesIO(b"abcdef"), 4, "x") == b"abcd"
    with pytest.raises(ImageFormatError, match="x is truncated: 3 of 4 bytes"):
        comp.read_exactly(io.BytesIO(b"abc"), 4, "x")
