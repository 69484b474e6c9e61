"""Layers written by layer_writer read back by layer_reader (per-entry ranges and
whole layers) and by the standard tools (tar, gzip -d, zstd -d), for every
compression; reproducibility; chunking; source checks."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import List, Tuple

import pytest
import zstandard

from layer_fixtures import SMALL_CHUNK, make_blob
from oci_cache.digests import Digest
from oci_cache.errors import DigestMismatchError
from oci_cache.image_format import tar_headers
from oci_cache.image_format.compression import Compression
from oci_cache.image_format.layer_reader import iter_blob_range, iter_layer, read_blob_range, read_layer_blobs
from oci_cache.image_format.layer_writer import WrittenLayer, write_layer

ALL = list(Compression)
Blobs = List[Tuple[Digest, bytes]]


def _write(tmp_path: Path, blobs: Blobs, compression: Compression, name: str = "layer", **kwargs: object) -> WrittenLayer:
    kwargs.setdefault("chunk_size", SMALL_CHUNK)
    return write_layer(str(tmp_path / name), blobs, compression, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("compression", ALL)
def test_every_entry_reads_back_from_its_own_range(tmp_path: Path, blobs: Blobs, compression: Compression) -> None:
    layer = _write(tmp_path, blobs, compression)
    data = Path(layer.path).read_bytes()
    assert [e.digest for e in layer.entries] == [d for d, _ in blobs]
    for entry, (_, content) in zip(layer.entries, blobs):
        part = data[entry.compressed_offset : entry.compressed_offset + entry.compressed_length]
        assert read_blob_range(part, entry.digest, compression) == content
        streamed = b"".join(iter_blob_range(io.BytesIO(part), entry.digest, compression, chunk_size=1000))
        assert streamed == content


@pytest.mark.parametrize("compression", ALL)
def test_ranges_tile_the_layer_and_tar_offsets_match_the_tar_stream(
    tmp_path: Path, blobs: Blobs, compression: Compression
) -> None:
    layer = _write(tmp_path, blobs, compression)
    ends = [e.compressed_offset + e.compressed_length for e in layer.entries]
    starts = [e.compressed_offset for e in layer.entries]
    assert starts[1:] == ends[:-1], "consecutive entries' ranges are adjacent"
    tar_bytes = _decompress(Path(layer.path).read_bytes(), compression)
    for entry in layer.entries:
        header = tar_bytes[entry.tar_offset : entry.tar_offset + 512]
        assert header[:100].rstrip(b"\0").decode() == f"blobs/sha256/{entry.digest.hash}"
    assert layer.diff_id == Digest.of(tar_bytes)
    assert layer.digest == Digest.of(Path(layer.path).read_bytes())


@pytest.mark.parametrize("compression", ALL)
def test_whole_layer_walk_verifies_every_blob_and_the_diff_id(tmp_path: Path, blobs: Blobs, compression: Compression) -> None:
    layer = _write(tmp_path, blobs, compression)
    with open(layer.path, "rb") as source:
        members = [(m.digest, m.tar_offset, m.read()) for m in iter_layer(source, compression, expected_diff_id=layer.diff_id)]
    assert [(d, c) for d, _, c in members] == blobs
    assert [t for _, t, _ in members] == [e.tar_offset for e in layer.entries]
    with open(layer.path, "rb") as source:
        assert read_layer_blobs(source, compression, expected_diff_id=layer.diff_id.oci) == [d for d, _ in blobs]


_DECOMPRESS_COMMAND = {
    Compression.UNCOMPRESSED: None,
    Compression.GZIP: ["gzip", "-d", "-c"],
    Compression.ESTARGZ: ["gzip", "-d", "-c"],
    Compression.ZSTD: ["zstd", "-d", "-c", "-q"],
}


@pytest.mark.parametrize("compression", ALL)
def test_standard_tools_list_and_extract_every_layer(tmp_path: Path, blobs: Blobs, compression: Compression) -> None:
    if shutil.which("tar") is None or shutil.which("gzip") is None or shutil.which("zstd") is None:
        pytest.fail("tar, gzip and zstd are required (apt-get install tar gzip zstd)")
    layer = _write(tmp_path, blobs, compression)
    command = _DECOMPRESS_COMMAND[compression]
    if command is None:
        tar_path = Path(layer.path)
    else:
        tar_path = tmp_path / "layer.tar"
        with open(layer.path, "rb") as source, open(tar_path, "wb") as out:
            subprocess.run(command, stdin=source, stdout=out, check=True)
    listing = subprocess.run(["tar", "-tf", str(tar_path)], capture_output=True, text=True, check=True)
    names = listing.stdout.split()
    expected = [f"blobs/sha256/{d.hash}" for d, _ in blobs]
    if compression is Compression.ESTARGZ:
        assert names == [".no.prefetch.landmark"] + expected + ["stargz.index.json"]
    else:
        assert names == expected
    assert listing.stderr == ""
    out_dir = tmp_path / "extracted"
    out_dir.mkdir()
    subprocess.run(["tar", "-xf", str(tar_path), "-C", str(out_dir)], check=True)
    for digest, content in blobs:
        extracted = out_dir / "blobs" / "sha256" / digest.hash
        assert extracted.read_bytes() == content
        assert extracted.stat().st_mode & 0o777 == 0o644
        assert extracted.stat().st_mtime == 0


def test_python_tarfile_reads_the_layer_with_reproducible_metadata(tmp_path: Path, blobs: Blobs) -> None:
    layer = _write(tmp_path, blobs, Compression.GZIP)
    with tarfile.open(layer.path, "r:gz") as archive:
        members = archive.getmembers()
    assert [m.name for m in members] == [f"blobs/sha256/{d.hash}" for d, _ in blobs]
    assert {(m.mode, m.uid, m.gid, m.uname, m.gname, m.mtime, m.type) for m in members} == {
        (0o644, 0, 0, "", "", 0, tarfile.REGTYPE)
    }


def _decompress(data: bytes, compression: Compression) -> bytes:
    if compression is Compression.UNCOMPRESSED:
        return data
    if compression is Compression.ZSTD:
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True).read()
    return gzip.decompress(data)


def _units(data: bytes, compression: Compression) -> List[int]:
    """Offsets where gzip members / zstd frames start (walking the stream)."""
    offsets = []
    position = 0
    while position < len(data):
        offsets.append(position)
        if compression is Compression.ZSTD:
            decompressor = zstandard.ZstdDecompressor().decompressobj()
            decompressor.decompress(data[position:])
            position = len(data) - len(decompressor.unused_data)
        else:
            import zlib

            decompressor = zlib.decompressobj(31)
            decompressor.decompress(data[position:])
            position = len(data) - len(decompressor.unused_data)
    return offsets


@pytest.mark.parametrize("compression", [Compression.GZIP, Compression.ZSTD, Compression.ESTARGZ])
def test_each_entry_starts_a_unit_and_large_blobs_span_several(tmp_path: Path, blobs: Blobs, compression: Compression) -> None:
    layer = _write(tmp_path, blobs, compression)
    data = Path(layer.path).read_bytes()
    units = _units(data, compression)
    for entry in layer.entries:
        assert entry.compressed_offset in units
        inside = [u for u in units if entry.compressed_offset <= u < entry.compressed_offset + entry.compressed_length]
        chunks = max(1, -(-entry.digest.size_bytes // SMALL_CHUNK))
        header_unit = 1 if compression is Compression.ESTARGZ and entry.digest.size_bytes else 0
        assert len(inside) == chunks + header_unit


@pytest.mark.parametrize("compression", ALL)
def test_same_input_gives_the_same_layer_whatever_the_thread_count(
    tmp_path: Path, blobs: Blobs, compression: Compression
) -> None:
    first = _write(tmp_path, blobs, compression, "a", threads=1)
    second = _write(tmp_path, blobs, compression, "b", threads=4)
    assert first.digest == second.digest
    assert first.diff_id == second.diff_id
    assert first.entries == second.entries
    assert Path(first.path).read_bytes() == Path(second.path).read_bytes()


@pytest.mark.parametrize("compression", [Compression.GZIP, Compression.ESTARGZ])
def test_gzip_member_headers_do_not_depend_on_the_platform(tmp_path: Path, blobs: Blobs, compression: Compression) -> None:
    layer = _write(tmp_path, blobs, compression)
    data = Path(layer.path).read_bytes()
    for offset in _units(data, compression):
        assert data[offset : offset + 3] == b"\x1f\x8b\x08"
        assert data[offset + 4 : offset + 8] == b"\0\0\0\0", "MTIME is zero"
        assert data[offset + 9] == 255, "OS is 'unknown'"


def test_different_order_gives_a_different_layer(tmp_path: Path, blobs: Blobs) -> None:
    forward = _write(tmp_path, blobs, Compression.ZSTD, "a")
    backward = _write(tmp_path, list(reversed(blobs)), Compression.ZSTD, "b")
    assert forward.digest != backward.digest


@pytest.mark.parametrize("compression, low, high", [(Compression.GZIP, 1, 9), (Compression.ZSTD, 1, 19), (Compression.ESTARGZ, 0, 9)])
def test_compression_level_is_honoured(tmp_path: Path, compression: Compression, low: int, high: int) -> None:
    text = b"".join(b"%d: the quick brown fox jumps over the lazy dog %d\n" % (i, i * i % 977) for i in range(40000))
    blobs = [(Digest.of(text), text)]
    fast = _write(tmp_path, blobs, compression, "fast", level=low)
    small = _write(tmp_path, blobs, compression, "small", level=high)
    assert small.digest.size_bytes < fast.digest.size_bytes
    for layer in (fast, small):
        entry = layer.entries[0]
        data = Path(layer.path).read_bytes()
        part = data[entry.compressed_offset : entry.compressed_offset + entry.compressed_length]
        assert read_blob_range(part, entry.digest, compression) == text


def test_gzip_level_zero_stores_without_compression(tmp_path: Path) -> None:
    content = b"a" * 100_000
    layer = _write(tmp_path, [(Digest.of(content), content)], Compression.GZIP, level=0)
    assert layer.digest.size_bytes > 100_000


def test_sources_may_be_file_paths(tmp_path: Path, blobs: Blobs) -> None:
    sources = []
    for digest, content in blobs:
        path = tmp_path / digest.hash
        path.write_bytes(content)
        sources.append((digest, str(path)))
    from_files = _write(tmp_path, sources, Compression.ZSTD, "files")  # type: ignore[arg-type]
    from_bytes = _write(tmp_path, blobs, Compression.ZSTD, "bytes")
    assert from_files.digest == from_bytes.digest


def test_an_empty_layer_is_an_empty_archive(tmp_path: Path) -> None:
    for compression in ALL:
        layer = _write(tmp_path, [], compression, compression.value)
        assert layer.entries == ()
        with open(layer.path, "rb") as source:
            assert list(iter_layer(source, compression, expected_diff_id=layer.diff_id)) == []


def test_a_source_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    content = b"12345"
    with pytest.raises(ValueError, match="has 5 bytes, expected 6"):
        _write(tmp_path, [(Digest(Digest.of(content).hash, 6), content)], Compression.ZSTD)
    with pytest.raises(ValueError, match="more than 4 bytes"):
        _write(tmp_path, [(Digest(Digest.of(content).hash, 4), content)], Compression.GZIP)
    assert not (tmp_path / "layer").exists(), "the partial layer is removed"


def test_verify_sources_catches_wrong_bytes(tmp_path: Path) -> None:
    digest = Digest.of(b"right")
    _write(tmp_path, [(digest, b"wrong")], Compression.ZSTD)  # not checked by default
    with pytest.raises(DigestMismatchError):
        _write(tmp_path, [(digest, b"wrong")], Compression.ZSTD, verify_sources=True)


def test_a_blob_given_twice_is_refused(tmp_path: Path) -> None:
    content = b"twice"
    with pytest.raises(ValueError, match="given twice"):
        _write(tmp_path, [(Digest.of(content), content)] * 2, Compression.UNCOMPRESSED)


def test_invalid_levels_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="from 0 to 9"):
        _write(tmp_path, [], Compression.GZIP, level=10)
    with pytest.raises(ValueError, match="does not apply"):
        _write(tmp_path, [], Compression.UNCOMPRESSED, level=1)


@pytest.mark.parametrize("compression", ALL)
def test_blobs_beyond_ustar_size_get_a_pax_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compression: Compression
) -> None:
    """The PAX path (blobs of 8 GiB and more) exercised with a lowered threshold."""
    monkeypatch.setattr(tar_headers, "USTAR_MAX_SIZE", 1000)
    content = make_blob(5000, 7)
    small = make_blob(10, 8)
    blobs = [(Digest.of(content), content), (Digest.of(small), small)]
    layer = _write(tmp_path, blobs, compression)
    data = Path(layer.path).read_bytes()
    entry = layer.entries[0]
    assert layer.entries[1].tar_offset - entry.tar_offset == 1536 + 5000 + tar_headers.padding_length(5000)
    part = data[entry.compressed_offset : entry.compressed_offset + entry.compressed_length]
    assert read_blob_range(part, entry.digest, compression) == content
    with tarfile.open(fileobj=io.BytesIO(_decompress(data, compression))) as archive:
        sizes = {m.name: m.size for m in archive.getmembers()}
    assert sizes[f"blobs/sha256/{entry.digest.hash}"] == 5000
    with open(layer.path, "rb") as source:
        assert [m.read() for m in iter_layer(source, compression)] == [content, small]


def test_large_blob_round_trip_with_default_chunks(tmp_path: Path) -> None:
    content = os.urandom(9 << 20)
    digest = Digest.of(content)
    for compression in (Compression.ZSTD, Compression.ESTARGZ):
        layer = write_layer(str(tmp_path / compression.value), [(digest, content)], compression)
        entry = layer.entries[0]
        with open(layer.path, "rb") as source:
            source.seek(entry.compressed_offset)
            part = source.read(entry.compressed_length)
        got = hashlib.sha256()
        for chunk in iter_blob_range(io.BytesIO(part), digest, compression):
            assert len(chunk) <= 1 << 20
            got.update(chunk)
        assert got.hexdigest() == digest.hash
