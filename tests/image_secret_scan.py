"""Searching exported cache images for a secret, in every form a blob of them can take:
as stored, and decompressed (zstd frames anywhere in a file, gzip members, the members
of tar archives), recursively. (Imported by name: tests/ is on sys.path.)

    assert files_holding([layout_dir], b"tok-123") == []
    blobs = image_blobs(open_entry_target(parse_cache_from("type=local,src=DIR")))
"""

from __future__ import annotations

import gzip
import io
import tarfile
import zlib
from pathlib import Path
from typing import Dict, Iterable, Iterator, List

import zstandard

from oci_cache.digests import Digest

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
MAX_EXPANDED = 1 << 30
MAX_DEPTH = 4


def expanded_forms(data: bytes, depth: int = 0) -> Iterator[bytes]:
    """`data`, and everything it decompresses or unpacks to."""
    yield data
    if depth >= MAX_DEPTH:
        return
    start = data.find(ZSTD_MAGIC)
    while start >= 0:
        inner = _zstd_frames(data[start:])
        if inner:
            yield from expanded_forms(inner, depth + 1)
        start = data.find(ZSTD_MAGIC, start + 1)
    if data.startswith(GZIP_MAGIC):
        inner = _gzip_members(data)
        if inner:
            yield from expanded_forms(inner, depth + 1)
    if len(data) >= 512 and data[257:262] == b"ustar":
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
                for member in archive:
                    extracted = archive.extractfile(member) if member.isfile() else None
                    if extracted is not None:
                        yield from expanded_forms(extracted.read(), depth + 1)
        except tarfile.TarError:
            pass


def _zstd_frames(data: bytes) -> bytes:
    """Every zstd frame concatenated from the start of `data` (b"" if none decodes)."""
    out = bytearray()
    rest = data
    while rest.startswith(ZSTD_MAGIC) and len(out) < MAX_EXPANDED:
        decompressor = zstandard.ZstdDecompressor(max_window_size=1 << 27).decompressobj()
        try:
            out += decompressor.decompress(rest)
        except zstandard.ZstdError:
            break
        rest = decompressor.unused_data
    return bytes(out)


def _gzip_members(data: bytes) -> bytes:
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error):
        return b""


def files_holding(directories: Iterable[Path], secret: bytes) -> List[str]:
    """The files under `directories` holding `secret` in any expanded form."""
    found = []
    for directory in directories:
        for path in sorted(Path(directory).rglob("*")):
            if path.is_file() and any(secret in form for form in expanded_forms(path.read_bytes())):
                found.append(str(path))
    return found


def blobs_holding(blobs: Iterable[bytes], secret: bytes) -> int:
    """How many of `blobs` hold `secret` in any expanded form."""
    return sum(1 for blob in blobs if any(secret in form for form in expanded_forms(blob)))


def image_blobs(target: object) -> Dict[Digest, bytes]:
    """Every blob of the cache image at `target`'s tag (an ImageTarget), read from its layers."""
    from oci_cache.cache_image import load_cache_image
    from oci_cache.image_format import iter_layer

    image = load_cache_image(target)  # type: ignore[arg-type]
    blobs = {}
    for number, descriptor in enumerate(image.layers):
        with target.open_blob_stream(descriptor.as_digest) as stream:  # type: ignore[attr-defined]
            data = b"".join(stream)
        for member in iter_layer(io.BytesIO(data), image.layer_compression(number)):
            blobs[member.digest] = member.read()
    return blobs
