"""Reads blobs back out of cache layers: one entry's byte range, or a whole layer.

Range reads (`read_blob_range`, `iter_blob_range`) decode the compressed bytes of
exactly one entry, as recorded in the entry index: the tar header must be the one
the writer produces for that blob (name `blobs/sha256/<hex>`, regular file, the
recorded size), the padding must be zeros, nothing may follow, and decompression
never produces more than the entry's length (no decompression bombs). The blob's
SHA-256 is then checked unless the caller opts out.

`iter_layer` walks a whole layer (the fallback when a registry cannot serve
ranges, and the tests' independent check), verifying every blob and, if given,
the layer's uncompressed digest.
"""

from __future__ import annotations

import hashlib
import io
from typing import BinaryIO, Iterator, List, Optional, Union

from oci_cache.digests import Digest
from oci_cache.errors import DigestMismatchError
from oci_cache.image_format import estargz, tar_headers
from oci_cache.image_format.compression import Compression, open_decompressed, read_exactly
from oci_cache.image_format.errors import ImageFormatError

DEFAULT_READ_CHUNK = 1 << 20


def read_blob_range(data: bytes, digest: Digest, compression: Compression, *, verify: bool = True) -> bytes:
    """The blob `digest` from `data`, the compressed bytes of its entry's range."""
    return b"".join(iter_blob_range(io.BytesIO(data), digest, compression, verify=verify))


def iter_blob_range(
    source: BinaryIO,
    digest: Digest,
    compression: Compression,
    *,
    verify: bool = True,
    chunk_size: int = DEFAULT_READ_CHUNK,
) -> Iterator[bytes]:
    """The blob's bytes in chunks, from `source`, a stream of the compressed bytes
    of its entry's range (e.g. the body of an HTTP Range response).

    Raises ImageFormatError for a malformed range and DigestMismatchError for
    wrong contents; the last chunk is yielded only after the digest matched, so a
    consumer that commits at the end of the iteration never commits bad bytes.
    """
    what = f"entry of blob {digest}"
    reader = open_decompressed(source, compression)
    size = digest.size_bytes
    tar_headers.read_blob_entry_header(reader, digest.hash, size, what)
    hasher = hashlib.sha256() if verify else None
    remaining = size
    held: Optional[bytes] = None
    while remaining > 0:
        chunk = reader.read(min(chunk_size, remaining))
        if not chunk:
            raise ImageFormatError(f"{what} is truncated: {size - remaining} of {size} payload bytes")
        remaining -= len(chunk)
        if hasher is not None:
            hasher.update(chunk)
        if held is not None:
            yield held
        held = chunk
    _check_padding(reader, tar_headers.padding_length(size), what)
    if reader.read(1):
        raise ImageFormatError(f"{what}: data follows the entry in its range")
    if hasher is not None and hasher.hexdigest() != digest.hash:
        raise DigestMismatchError(f"blob {digest} read from a layer has SHA-256 {hasher.hexdigest()}")
    if held is not None:
        yield held


def _check_padding(reader: BinaryIO, length: int, what: str) -> None:
    if length and read_exactly(reader, length, f"{what}: padding") != bytes(length):
        raise ImageFormatError(f"{what}: tar padding is not zeros")


class LayerMember:
    """One blob met while walking a layer. Read it with `chunks()` before
    advancing the walk; if you do not, the walk skips (and still verifies) it."""

    def __init__(self, walker: "_LayerWalker", digest: Digest, tar_offset: int) -> None:
        self.digest = digest
        self.tar_offset = tar_offset
        self._walker = walker
        self._consumed = False

    def chunks(self, chunk_size: int = DEFAULT_READ_CHUNK) -> Iterator[bytes]:
        """The blob's bytes; the last chunk comes only after its digest matched."""
        if self._consumed:
            raise ValueError(f"blob {self.digest} was already read")
        self._consumed = True
        return self._walker.payload(self.digest, chunk_size)

    def read(self) -> bytes:
        return b"".join(self.chunks())

    def _skip(self) -> None:
        if not self._consumed:
            for _ in self.chunks():
                pass


class _CountingHashingReader(io.RawIOBase):
    def __init__(self, inner: BinaryIO, hasher: Optional["hashlib._Hash"], limit: Optional[int]) -> None:
        super().__init__()
        self._inner = inner
        self._hasher = hasher
        self._limit = limit
        self.position = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        data = self._inner.read(size)
        self.position += len(data)
        if self._limit is not None and self.position > self._limit:
            raise ImageFormatError(f"layer decompresses to more than {self._limit} bytes")
        if self._hasher is not None:
            self._hasher.update(data)
        return data


class _LayerWalker:
    def __init__(self, reader: _CountingHashingReader, what: str) -> None:
        self.reader = reader
        self.what = what

    def payload(self, digest: Digest, chunk_size: int) -> Iterator[bytes]:
        what = f"{self.what}: blob {digest}"
        hasher = hashlib.sha256()
        remaining = digest.size_bytes
        held: Optional[bytes] = None
        while remaining > 0:
            chunk = self.reader.read(min(chunk_size, remaining))
            if not chunk:
                raise ImageFormatError(f"{what} is truncated")
            remaining -= len(chunk)
            hasher.update(chunk)
            if held is not None:
                yield held
            held = chunk
        _check_padding(self.reader, tar_headers.padding_length(digest.size_bytes), what)  # type: ignore[arg-type]
        if hasher.hexdigest() != digest.hash:
            raise DigestMismatchError(f"{what} has SHA-256 {hasher.hexdigest()}")
        if held is not None:
            yield held

    def skip(self, size: int, what: str) -> None:
        remaining = size + tar_headers.padding_length(size)
        while remaining > 0:
            chunk = self.reader.read(min(DEFAULT_READ_CHUNK, remaining))
            if not chunk:
                raise ImageFormatError(f"{self.what}: {what} is truncated")
            remaining -= len(chunk)


def iter_layer(
    source: BinaryIO,
    compression: Compression,
    *,
    expected_diff_id: Union[Digest, str, None] = None,
    max_uncompressed_size: Optional[int] = None,
    what: str = "layer",
) -> Iterator[LayerMember]:
    """Walks a whole layer, yielding its blobs in order. Every blob is verified;
    with `expected_diff_id` (a Digest, or "sha256:<hex>" as in the layer's
    `containerd.io/uncompressed` annotation), so is the whole tar stream, at the
    end. `max_uncompressed_size` bounds the decompressed bytes. An estargz layer's
    landmark and TOC entries are checked for place and skipped."""
    expected_hash: Optional[str] = None
    limit = max_uncompressed_size
    if isinstance(expected_diff_id, Digest):
        expected_hash = expected_diff_id.hash
        limit = expected_diff_id.size_bytes if limit is None else min(limit, expected_diff_id.size_bytes)
    elif expected_diff_id is not None:
        if not expected_diff_id.startswith("sha256:"):
            raise ValueError(f"expected_diff_id must be sha256:<hex> (got {expected_diff_id[:80]!r})")
        expected_hash = expected_diff_id[len("sha256:") :]
    hasher = hashlib.sha256() if expected_hash is not None else None
    decompressed = open_decompressed(source, compression)
    reader = _CountingHashingReader(decompressed, hasher, limit)
    walker = _LayerWalker(reader, what)
    stream: BinaryIO = reader  # type: ignore[assignment]
    seen_toc = False
    seen_names: set = set()
    previous: Optional[LayerMember] = None
    while True:
        if previous is not None:
            previous._skip()
            previous = None
        tar_offset = reader.position
        header = tar_headers.read_entry_header(stream, what)
        if header is None:
            break
        if seen_toc:
            raise ImageFormatError(f"{what}: entry {header.name[:120]!r} after the eStargz TOC")
        if compression is Compression.ESTARGZ and header.name in (estargz.NO_PREFETCH_LANDMARK, estargz.PREFETCH_LANDMARK):
            if header.size != len(estargz.LANDMARK_CONTENT):
                raise ImageFormatError(f"{what}: landmark {header.name} has {header.size} bytes")
            walker.skip(header.size, header.name)
            continue
        if compression is Compression.ESTARGZ and header.name == estargz.TOC_NAME:
            if header.size > estargz.MAX_TOC_SIZE:
                raise ImageFormatError(f"{what}: eStargz TOC of {header.size} bytes is too large")
            walker.skip(header.size, estargz.TOC_NAME)
            seen_toc = True
            continue
        if not tar_headers.is_blob_entry_name(header.name):
            raise ImageFormatError(f"{what}: unexpected tar entry {header.name[:120]!r}")
        hash_hex = header.name[len(tar_headers.BLOB_NAME_PREFIX) :]
        if hash_hex in seen_names:
            raise ImageFormatError(f"{what}: blob {hash_hex} appears twice")
        seen_names.add(hash_hex)
        previous = LayerMember(walker, Digest(hash_hex, header.size), tar_offset)
        yield previous
    if compression is Compression.ESTARGZ and not seen_toc:
        raise ImageFormatError(f"{what}: estargz layer without a TOC")
    if stream.read(1):
        raise ImageFormatError(f"{what}: data after the end of the tar archive")
    if hasher is not None and hasher.hexdigest() != expected_hash:
        raise DigestMismatchError(f"{what}: uncompressed digest is sha256:{hasher.hexdigest()}, expected sha256:{expected_hash}")


def read_layer_blobs(source: BinaryIO, compression: Compression, **kwargs: object) -> List[Digest]:
    """The digests of every blob in a layer, in order, after verifying them all."""
    digests = []
    for member in iter_layer(source, compression, **kwargs):  # type: ignore[arg-type]
        member._skip()
        digests.append(member.digest)
    return digests
