"""The layer reader meets hostile or broken input: decompression bombs, tar entries
that are not what the index says (names, links, sizes, checksums), truncated and
overlong ranges, wrong contents, and whole layers that break the format."""

from __future__ import annotations

import gzip
import io
import tarfile
import tracemalloc
from pathlib import Path
from typing import Callable, List, Tuple

import pytest
import zstandard

from oci_cache.digests import Digest
from oci_cache.errors import DigestMismatchError
from oci_cache.image_format import tar_headers
from oci_cache.image_format.compression import Compression, unit_compressor_factory
from oci_cache.image_format.errors import ImageFormatError
from oci_cache.image_format.layer_reader import iter_layer, read_blob_range, read_layer_blobs
from oci_cache.image_format.layer_writer import write_layer

ALL = list(Compression)
CONTENT = b"the blob the index promised\n" * 20
DIGEST = Digest.of(CONTENT)


def _compress(data: bytes, compression: Compression) -> bytes:
    if compression is Compression.UNCOMPRESSED:
        return data
    return unit_compressor_factory(compression, None)()(data)


def _entry(name: str, content: bytes, **overrides: object) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    info.mode = 0o644
    for key, value in overrides.items():
        setattr(info, key, value)
    header = info.tobuf(format=tarfile.USTAR_FORMAT)
    return header + content + bytes(tar_headers.padding_length(len(content)))


def _good_entry() -> bytes:
    return tar_headers.encode_file_header(tar_headers.blob_entry_name(DIGEST.hash), len(CONTENT)) + CONTENT + bytes(
        tar_headers.padding_length(len(CONTENT))
    )


@pytest.mark.parametrize("compression", ALL)
def test_a_well_formed_range_is_accepted(compression: Compression) -> None:
    assert read_blob_range(_compress(_good_entry(), compression), DIGEST, compression) == CONTENT


@pytest.mark.parametrize("compression", [Compression.GZIP, Compression.ZSTD])
def test_a_decompression_bomb_is_refused_without_inflating_it(compression: Compression) -> None:
    bomb = _compress(_good_entry() + bytes(200 << 20), compression)
    assert len(bomb) < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(ImageFormatError, match="data follows the entry"):
            read_blob_range(bomb, DIGEST, compression)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"reading a bomb used {peak} bytes"


@pytest.mark.parametrize("compression", [Compression.GZIP, Compression.ZSTD])
def test_a_header_claiming_a_huge_size_is_refused_before_reading_it(compression: Compression) -> None:
    header = tar_headers.encode_file_header(tar_headers.blob_entry_name(DIGEST.hash), 50 << 30)
    with pytest.raises(ImageFormatError, match="has 53687091200 bytes, expected"):
        read_blob_range(_compress(header + bytes(4096), compression), DIGEST, compression)


def test_a_bomb_in_a_whole_layer_is_bounded_by_the_declared_size() -> None:
    layer = _compress(_entry(tar_headers.blob_entry_name("0" * 64), bytes(100 << 20)), Compression.ZSTD)
    with pytest.raises(ImageFormatError, match="more than 1000000 bytes"):
        read_layer_blobs(io.BytesIO(layer), Compression.ZSTD, max_uncompressed_size=1_000_000)
    with pytest.raises(ImageFormatError, match="more than 512 bytes"):
        list(iter_layer(io.BytesIO(layer), Compression.ZSTD, expected_diff_id=Digest("0" * 64, 512)))


def _hostile_entries() -> List[Tuple[str, bytes, str]]:
    name = tar_headers.blob_entry_name(DIGEST.hash)
    other = tar_headers.blob_entry_name("f" * 64)
    good = bytearray(_good_entry())
    bad_checksum = bytearray(good)
    bad_checksum[148:156] = b"0000000\0"
    gnu_magic = bytearray(good)
    gnu_magic[257:265] = b"ustar  \0"
    prefixed = bytearray(tarfile.TarInfo("x").tobuf(format=tarfile.USTAR_FORMAT))
    nonzero_padding = bytearray(good)
    nonzero_padding[-1] = 1
    return [
        ("another blob's name", _entry(other, CONTENT), "expected 'blobs/sha256/"),
        ("parent directory", _entry("../../etc/passwd", CONTENT), "unsafe tar entry name"),
        ("absolute path", _entry("/etc/passwd", CONTENT), "unsafe tar entry name"),
        ("name with a suffix", _entry(name + "/x", CONTENT), "expected 'blobs/sha256/"),
        ("symlink", _entry(name, b"", type=tarfile.SYMTYPE, linkname="/etc/passwd"), "link name"),
        ("hard link", _entry(name, b"", type=tarfile.LNKTYPE, linkname="etc/passwd"), "link name"),
        ("directory", _entry(name, b"", type=tarfile.DIRTYPE), "not a regular file"),
        ("fifo", _entry(name, b"", type=tarfile.FIFOTYPE), "not a regular file"),
        ("device", _entry(name, b"", type=tarfile.CHRTYPE), "not a regular file"),
        ("bad checksum", bytes(bad_checksum), "checksum"),
        ("GNU magic", bytes(gnu_magic), "not a POSIX ustar header"),
        ("empty prefix header", bytes(prefixed) + CONTENT, "expected 'blobs/sha256/"),
        ("wrong size in header", _entry(name, CONTENT + b"!"), "expected 560"),
        ("pax path record", _pax_entry(b"path", name.encode()), "unexpected PAX record"),
        ("padding not zeros", bytes(nonzero_padding), "padding is not zeros"),
        ("two entries", _good_entry() + _entry(other, b"x"), "data follows the entry"),
        ("end of archive in place of the entry", tar_headers.END_OF_ARCHIVE, "end of archive where"),
        ("lone zero block", bytes(512) + _good_entry(), "lone zero block"),
    ]


def _pax_entry(key: bytes, value: bytes) -> bytes:
    record_body = b" " + key + b"=" + value + b"\n"
    length = len(record_body) + 1
    while len(str(length)) + len(record_body) != length:
        length = len(str(length)) + len(record_body)
    record = str(length).encode() + record_body
    assert len(record) == length
    pax_header = tarfile.TarInfo("././@PaxHeader")
    pax_header.size = len(record)
    pax_header.type = tarfile.XHDTYPE
    header = pax_header.tobuf(format=tarfile.USTAR_FORMAT)
    return header + record + bytes(tar_headers.padding_length(len(record))) + _good_entry()


@pytest.mark.parametrize("compression", ALL)
@pytest.mark.parametrize("label, entry, message", _hostile_entries(), ids=[h[0] for h in _hostile_entries()])
def test_hostile_tar_entries_are_refused(compression: Compression, label: str, entry: bytes, message: str) -> None:
    with pytest.raises(ImageFormatError, match=message.replace("(", r"\(")):
        read_blob_range(_compress(entry, compression), DIGEST, compression)


@pytest.mark.parametrize("compression", ALL)
def test_a_pax_size_header_is_read_as_the_writer_writes_it(compression: Compression, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tar_headers, "USTAR_MAX_SIZE", 100)
    entry = tar_headers.encode_file_header(tar_headers.blob_entry_name(DIGEST.hash), len(CONTENT)) + CONTENT
    entry += bytes(tar_headers.padding_length(len(CONTENT)))
    assert read_blob_range(_compress(entry, compression), DIGEST, compression) == CONTENT


@pytest.mark.parametrize("compression", ALL)
def test_truncated_ranges_are_refused(compression: Compression) -> None:
    data = _compress(_good_entry(), compression)
    for cut in sorted({1, 10, len(data) // 2, len(data) - 9, len(data) - 1}):
        with pytest.raises((ImageFormatError, DigestMismatchError)):
            read_blob_range(data[:cut], DIGEST, compression)


@pytest.mark.parametrize("compression", ALL)
def test_an_empty_range_is_refused(compression: Compression) -> None:
    with pytest.raises(ImageFormatError, match="truncated"):
        read_blob_range(b"", DIGEST, compression)


@pytest.mark.parametrize("compression", [Compression.GZIP, Compression.ZSTD])
def test_garbage_after_the_last_unit_is_refused(compression: Compression) -> None:
    with pytest.raises(ImageFormatError):
        read_blob_range(_compress(_good_entry(), compression) + b"garbage!", DIGEST, compression)


@pytest.mark.parametrize("compression", [Compression.GZIP, Compression.ZSTD])
def test_corrupt_compressed_bytes_are_refused(compression: Compression) -> None:
    data = bytearray(_compress(_good_entry(), compression))
    data[len(data) // 2] ^= 0xFF
    with pytest.raises((ImageFormatError, DigestMismatchError)):
        read_blob_range(bytes(data), DIGEST, compression)


@pytest.mark.parametrize("compression", ALL)
def test_wrong_contents_under_the_right_header_are_refused(compression: Compression) -> None:
    wrong = CONTENT.replace(b"promised", b"promises")
    entry = tar_headers.encode_file_header(tar_headers.blob_entry_name(DIGEST.hash), len(wrong)) + wrong
    entry += bytes(tar_headers.padding_length(len(wrong)))
    with pytest.raises(DigestMismatchError):
        read_blob_range(_compress(entry, compression), DIGEST, compression)
    assert read_blob_range(_compress(entry, compression), DIGEST, compression, verify=False) == wrong


@pytest.mark.parametrize("compression", ALL)
def test_a_digest_with_the_wrong_size_is_refused(compression: Compression) -> None:
    with pytest.raises(ImageFormatError, match="expected 561"):
        read_blob_range(_compress(_good_entry(), compression), Digest(DIGEST.hash, 561), compression)


def test_a_gzip_range_must_start_at_a_member(tmp_path: Path) -> None:
    data = _compress(_good_entry(), Compression.GZIP)
    with pytest.raises(ImageFormatError, match="invalid gzip data"):
        read_blob_range(data[5:], DIGEST, Compression.GZIP)
    with pytest.raises(ImageFormatError, match="invalid zstd data"):
        read_blob_range(data, DIGEST, Compression.ZSTD)


LayerMaker = Callable[[], bytes]


def _layer_tar(*entries: bytes) -> bytes:
    return b"".join(entries) + tar_headers.END_OF_ARCHIVE


def _blob_entry(content: bytes) -> bytes:
    digest = Digest.of(content)
    return tar_headers.encode_file_header(tar_headers.blob_entry_name(digest.hash), len(content)) + content + bytes(
        tar_headers.padding_length(len(content))
    )


@pytest.mark.parametrize(
    "label, tar, compression, message",
    [
        ("duplicate blob", _layer_tar(_blob_entry(b"a"), _blob_entry(b"a")), Compression.ZSTD, "appears twice"),
        ("foreign file", _layer_tar(_entry("etc/passwd", b"root")), Compression.GZIP, "unexpected tar entry"),
        ("garbage after the archive", _layer_tar(_blob_entry(b"a")) + b"x", Compression.UNCOMPRESSED, "after the end"),
        ("no end of archive", _blob_entry(b"a"), Compression.ZSTD, "truncated tar header"),
        ("estargz without a TOC", _layer_tar(_blob_entry(b"a")), Compression.ESTARGZ, "without a TOC"),
        (
            "entry after the TOC",
            _layer_tar(_entry("stargz.index.json", b"{}"), _blob_entry(b"a")),
            Compression.ESTARGZ,
            "after the eStargz TOC",
        ),
        ("bad landmark", _layer_tar(_entry(".no.prefetch.landmark", b"xx")), Compression.ESTARGZ, "landmark"),
        ("wrong contents", _layer_tar(_entry(tar_headers.blob_entry_name("a" * 64), b"a")), Compression.GZIP, None),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_hostile_whole_layers_are_refused(label: str, tar: bytes, compression: Compression, message: str) -> None:
    layer = gzip.compress(tar) if compression.is_gzip_family else _compress(tar, compression)
    with pytest.raises((ImageFormatError, DigestMismatchError), match=message):
        read_layer_blobs(io.BytesIO(layer), compression)


def test_a_whole_layer_with_the_wrong_diff_id_is_refused(tmp_path: Path) -> None:
    layer = write_layer(str(tmp_path / "layer"), [(DIGEST, CONTENT)], Compression.ZSTD)
    with open(layer.path, "rb") as source:
        with pytest.raises(DigestMismatchError, match="uncompressed digest"):
            read_layer_blobs(source, Compression.ZSTD, expected_diff_id=Digest("0" * 64, layer.diff_id.size_bytes))
    with open(layer.path, "rb") as source:
        with pytest.raises(DigestMismatchError, match="uncompressed digest"):
            read_layer_blobs(source, Compression.ZSTD, expected_diff_id="sha256:" + "0" * 64)


def test_a_truncated_whole_layer_is_refused(tmp_path: Path) -> None:
    layer = write_layer(str(tmp_path / "layer"), [(DIGEST, CONTENT)], Compression.GZIP)
    data = Path(layer.path).read_bytes()
    with pytest.raises(ImageFormatError):
        read_layer_blobs(io.BytesIO(data[:-10]), Compression.GZIP)


def test_zstd_frames_needing_a_huge_window_are_refused() -> None:
    params = zstandard.ZstdCompressionParameters.from_level(19, window_log=30, write_content_size=False)
    compressor = zstandard.ZstdCompressor(compression_params=params).compressobj()  # size unknown: window kept
    data = compressor.compress(_good_entry()) + compressor.flush()
    assert zstandard.get_frame_parameters(data).window_size == 1 << 30
    with pytest.raises(ImageFormatError, match="invalid zstd data"):
        read_blob_range(data, DIGEST, Compression.ZSTD)
