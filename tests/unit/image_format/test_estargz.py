"""estargz layers follow the eStargz rules: per-file gzip members, a TOC as the
last entry in its own member, the 51-byte footer, landmark, and a TOC whose
offsets and digests describe the layer (checked by reading the layer back
through the TOC alone, as a lazy puller would)."""

from __future__ import annotations

import gzip
import hashlib
import struct
import zlib
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from layer_fixtures import SMALL_CHUNK
from oci_cache.digests import Digest
from oci_cache.image_format import estargz, tar_headers
from oci_cache.image_format.compression import Compression
from oci_cache.image_format.errors import ImageFormatError
from oci_cache.image_format.layer_writer import WrittenLayer, write_layer
from oci_cache.image_format.manifest import layer_descriptor

Blobs = List[Tuple[Digest, bytes]]


def _estargz(tmp_path: Path, blobs: Blobs) -> Tuple[WrittenLayer, bytes, Dict[str, Any]]:
    layer = write_layer(str(tmp_path / "layer"), blobs, Compression.ESTARGZ, chunk_size=SMALL_CHUNK)
    data = Path(layer.path).read_bytes()
    return layer, data, estargz.read_toc(data, layer.estargz_toc_digest)


def _member(data: bytes, offset: int) -> bytes:
    """The decompressed bytes of the one gzip member starting at `offset`."""
    decompressor = zlib.decompressobj(31)
    out = decompressor.decompress(data[offset:])
    assert decompressor.eof
    return out


def test_footer_is_51_bytes_and_round_trips() -> None:
    for offset in (0, 1, 123456789, (1 << 63) - 1):
        footer = estargz.footer(offset)
        assert len(footer) == 51
        assert estargz.parse_footer(footer) == offset
        assert gzip.decompress(footer) == b"", "the footer is an empty gzip member"
        assert footer[3] == 4, "FLG has FEXTRA only"
        assert struct.unpack("<H", footer[10:12])[0] == 26
        assert footer[12:16] == b"SG\x16\x00"
        assert footer[16:38] == b"%016xSTARGZ" % offset


@pytest.mark.parametrize(
    "broken",
    [b"", bytes(51), estargz.footer(5)[:-1], estargz.footer(5).replace(b"STARGZ", b"STARGX"), estargz.footer(5)[:16] + b"zzzzzzzzzzzzzzzz" + estargz.footer(5)[32:]],
)
def test_broken_footers_are_refused(broken: bytes) -> None:
    with pytest.raises(ImageFormatError):
        estargz.parse_footer(broken)


def test_layer_ends_with_the_footer_pointing_at_the_toc_member(tmp_path: Path, blobs: Blobs) -> None:
    layer, data, toc = _estargz(tmp_path, blobs)
    toc_offset = estargz.parse_footer(data[-51:])
    member = _member(data, toc_offset)
    assert member[:100].rstrip(b"\0") == b"stargz.index.json"
    assert member.endswith(tar_headers.END_OF_ARCHIVE), "the TOC is the last entry"
    assert toc["version"] == 1
    assert layer.estargz_toc_digest == "sha256:" + hashlib.sha256(member[512 : 512 + _toc_size(member)]).hexdigest()


def _toc_size(member: bytes) -> int:
    return int(member[124:135], 8)


def test_toc_lists_the_landmark_then_every_file_and_chunk(tmp_path: Path, blobs: Blobs) -> None:
    _, data, toc = _estargz(tmp_path, blobs)
    entries = toc["entries"]
    assert entries[0]["name"] == ".no.prefetch.landmark"
    assert entries[0]["size"] == 1
    assert _member(data, entries[0]["offset"])[:1] == b"\x0f"
    names = [e["name"] for e in entries[1:] if e["type"] == "reg"]
    assert names == [f"blobs/sha256/{d.hash}" for d, _ in blobs]
    assert all(e["type"] in ("reg", "chunk") for e in entries)
    assert all(e["mode"] == 0o644 and e["uid"] == 0 and e["gid"] == 0 for e in entries if e["type"] == "reg")


def test_every_file_and_chunk_is_readable_and_verifiable_through_the_toc_alone(tmp_path: Path, blobs: Blobs) -> None:
    _, data, toc = _estargz(tmp_path, blobs)
    by_name: Dict[str, List[Dict[str, Any]]] = {}
    for entry in toc["entries"][1:]:
        by_name.setdefault(entry["name"], []).append(entry)
    for digest, content in blobs:
        chunks = by_name[f"blobs/sha256/{digest.hash}"]
        first = chunks[0]
        assert first["type"] == "reg"
        if not content:
            assert "offset" not in first and "size" not in first
            continue
        assert first["size"] == len(content)
        assert first["digest"] == digest.oci
        rebuilt = b""
        for number, chunk in enumerate(chunks):
            assert chunk.get("chunkOffset", 0) == len(rebuilt)
            last = number == len(chunks) - 1
            size = len(content) - len(rebuilt) if last else chunk["chunkSize"]
            assert chunk.get("chunkSize", 0) == (0 if last else size)
            payload = _member(data, chunk["offset"])[:size]
            assert "sha256:" + hashlib.sha256(payload).hexdigest() == chunk["chunkDigest"]
            rebuilt += payload
        assert rebuilt == content
        assert len(chunks) == max(1, -(-len(content) // SMALL_CHUNK))


def test_offsets_are_unique_and_point_at_gzip_members(tmp_path: Path, blobs: Blobs) -> None:
    _, data, toc = _estargz(tmp_path, blobs)
    offsets = [e["offset"] for e in toc["entries"] if "offset" in e]
    assert len(offsets) == len(set(offsets))
    for offset in offsets:
        assert data[offset : offset + 3] == b"\x1f\x8b\x08"


def test_the_whole_layer_is_one_valid_gzip_stream(tmp_path: Path, blobs: Blobs) -> None:
    layer, data, _ = _estargz(tmp_path, blobs)
    tar = gzip.decompress(data)
    assert Digest.of(tar) == layer.diff_id


def test_descriptor_carries_the_estargz_annotations(tmp_path: Path, blobs: Blobs) -> None:
    layer, _, _ = _estargz(tmp_path, blobs)
    descriptor = layer_descriptor(layer)
    assert descriptor.media_type == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert descriptor.annotations == {
        "containerd.io/uncompressed": layer.diff_id.oci,
        "containerd.io/snapshot/stargz/toc.digest": layer.estargz_toc_digest,
        "io.containers.estargz.uncompressed-size": str(layer.diff_id.size_bytes),
    }


def test_read_toc_refuses_a_wrong_digest_and_plain_gzip_layers(tmp_path: Path, blobs: Blobs) -> None:
    layer, data, _ = _estargz(tmp_path, blobs)
    with pytest.raises(ImageFormatError, match="digest does not match"):
        estargz.read_toc(data, "sha256:" + "0" * 64)
    plain = write_layer(str(tmp_path / "plain"), blobs, Compression.GZIP)
    with pytest.raises(ImageFormatError, match="footer"):
        estargz.read_toc(Path(plain.path).read_bytes())
    with pytest.raises(ImageFormatError, match="outside the layer"):
        estargz.read_toc(data[:-51] + estargz.footer(len(data)))
