"""Writes one cache layer: a tar of blobs, compressed in independent units.

Layout of the tar stream (see docs/format.md): one regular-file entry per blob,
named `blobs/sha256/<hex>`, in the order given, then two zero blocks. The
compressed layer is a concatenation of units (gzip members or zstd frames); a new
unit starts at every entry, and a payload larger than `chunk_size` is split into
several units, so each entry occupies a whole number of units and a reader can
decompress exactly the byte range of one entry:

- gzip, zstd: [header + payload chunk 1] [chunk 2] ... [last chunk + padding];
  end of archive in a unit of its own.
- estargz: [header] [payload chunk 1] ... [last chunk + padding] — the payload of
  every file starts a gzip member, as eStargz requires — preceded by the
  `.no.prefetch.landmark` entry and followed by the TOC entry `stargz.index.json`
  (with the end of archive) in its own member and the 51-byte footer.
- uncompressed: the plain tar stream.

Memory stays bounded (a few units per thread) whatever the layer or blob size, and
the output is reproducible: the same blobs in the same order with the same
compression and level give the same bytes, hence the same layer digest.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import (
    IO,
    BinaryIO,
    Callable,
    Deque,
    Iterable,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from oci_cache.digests import Digest
from oci_cache.errors import DigestMismatchError
from oci_cache.image_format import estargz, tar_headers
from oci_cache.image_format.compression import Compression, ThreadLocalUnitCompressor, unit_compressor_factory

DEFAULT_CHUNK_SIZE = 4 << 20
_BATCH_BYTES = 1 << 20
_BATCH_UNITS = 256
_NO_TAG = -1

BlobSource = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]"]
"""The bytes of a blob, or the path of a file holding exactly those bytes."""


class LayerEntry(NamedTuple):
    """Where one blob is in a layer.

    `tar_offset`: offset of the entry's first header byte in the uncompressed tar.
    `compressed_offset`, `compressed_length`: the byte range of the layer blob
    holding the entry's units (header, payload and padding) — what a Range read
    fetches. For uncompressed layers it equals the entry's range in the tar.
    """

    digest: Digest
    tar_offset: int
    compressed_offset: int
    compressed_length: int


@dataclass(frozen=True)
class WrittenLayer:
    path: str
    compression: Compression
    digest: Digest
    """Of the layer blob as stored (what the manifest's descriptor names)."""
    diff_id: Digest
    """Of the uncompressed tar stream (the `containerd.io/uncompressed` annotation)."""
    entries: Tuple[LayerEntry, ...]
    estargz_toc_digest: Optional[str] = None
    """"sha256:<hex>" of the eStargz TOC JSON (estargz layers only)."""


class _Unit(NamedTuple):
    """Uncompressed bytes that become one gzip member / zstd frame, and what
    starts or ends there: entry numbers, and an eStargz TOC entry number whose
    `offset` is this unit's compressed offset."""

    data: bytes
    starts_entry: int = _NO_TAG
    ends_entry: int = _NO_TAG
    toc_entry: int = _NO_TAG


def default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def write_layer(
    path: str,
    blobs: Iterable[Tuple[Digest, BlobSource]],
    compression: Compression,
    *,
    level: Optional[int] = None,
    threads: Optional[int] = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    verify_sources: bool = False,
) -> WrittenLayer:
    """Writes a layer holding `blobs` (in the given order) to the file `path`.

    `level` None means the codec's default (see compression.py). `threads` compress
    units in parallel (default: CPUs, at most 4). With `verify_sources`, each
    blob's bytes are hashed and a mismatch raises DigestMismatchError; a source of
    the wrong size always raises ValueError. Duplicate digests raise ValueError.
    On any error the partial file is removed.
    """
    compression.check_level(level)
    if chunk_size < tar_headers.BLOCK_SIZE:
        raise ValueError(f"chunk_size must be at least {tar_headers.BLOCK_SIZE} bytes")
    builder = _LayerBuilder(compression, chunk_size, verify_sources)
    try:
        with open(path, "wb") as out:
            # Uncompressed, the layer is the tar stream: its digest is the diff_id.
            sink = _HashingSink(out, hashing=compression is not Compression.UNCOMPRESSED)
            if compression is Compression.UNCOMPRESSED:
                for data in builder.tar_stream(blobs):
                    sink.write(data)
            else:
                threads = default_threads() if threads is None else max(1, threads)
                compress = ThreadLocalUnitCompressor(unit_compressor_factory(compression, level))
                _write_units(sink, builder.units(blobs), compress, threads, builder)
                if compression is Compression.ESTARGZ:
                    toc_offset = sink.size
                    sink.write(compress(builder.estargz_tail()))
                    sink.write(estargz.footer(toc_offset))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    diff_id = Digest(builder.tar_hasher.hexdigest(), builder.tar_size)
    digest = Digest(sink.hasher.hexdigest(), sink.size) if sink.hasher is not None else diff_id
    if compression is Compression.UNCOMPRESSED:
        entries = tuple(
            LayerEntry(d, start, start, end - start) for d, start, end in zip(builder.digests, builder.tar_starts, builder.tar_ends)
        )
    else:
        entries = tuple(
            LayerEntry(d, t, start, end - start)
            for d, t, start, end in zip(builder.digests, builder.tar_starts, builder.unit_starts, builder.unit_ends)
        )
    return WrittenLayer(
        path=str(path),
        compression=compression,
        digest=digest,
        diff_id=diff_id,
        entries=entries,
        estargz_toc_digest=builder.toc_digest,
    )


class _HashingSink:
    def __init__(self, out: IO[bytes], hashing: bool) -> None:
        self._out = out
        self.hasher = hashlib.sha256() if hashing else None
        self.size = 0

    def write(self, data: bytes) -> None:
        self._out.write(data)
        if self.hasher is not None:
            self.hasher.update(data)
        self.size += len(data)


class _LayerBuilder:
    """Turns blobs into the tar stream (uncompressed) or into units, keeping the
    bookkeeping: tar offsets, the diff_id hash, unit offsets, the eStargz TOC."""

    def __init__(self, compression: Compression, chunk_size: int, verify_sources: bool) -> None:
        self.compression = compression
        self.chunk_size = chunk_size
        self.verify_sources = verify_sources
        self.tar_hasher = hashlib.sha256()
        self.tar_size = 0
        self.digests: List[Digest] = []
        self.tar_starts: List[int] = []
        self.tar_ends: List[int] = []
        self.unit_starts: List[int] = []
        self.unit_ends: List[int] = []
        self.toc = estargz.TocBuilder() if compression is Compression.ESTARGZ else None
        self.toc_digest: Optional[str] = None
        self._seen: set = set()

    def _tar(self, data: bytes) -> bytes:
        self.tar_hasher.update(data)
        self.tar_size += len(data)
        return data

    def _begin_entry(self, digest: Digest) -> int:
        if digest.hash in self._seen:
            raise ValueError(f"blob {digest} is given twice for one layer")
        self._seen.add(digest.hash)
        self.digests.append(digest)
        self.tar_starts.append(self.tar_size)
        self.unit_starts.append(0)
        self.unit_ends.append(0)
        return len(self.digests) - 1

    def tar_stream(self, blobs: Iterable[Tuple[Digest, BlobSource]]) -> Iterator[bytes]:
        for digest, source in blobs:
            self._begin_entry(digest)
            yield self._tar(tar_headers.encode_file_header(tar_headers.blob_entry_name(digest.hash), digest.size_bytes))
            for chunk in _payload_chunks(digest, source, self.chunk_size, self.verify_sources):
                yield self._tar(chunk)
            yield self._tar(bytes(tar_headers.padding_length(digest.size_bytes)))
            self.tar_ends.append(self.tar_size)
        yield self._tar(tar_headers.END_OF_ARCHIVE)

    def units(self, blobs: Iterable[Tuple[Digest, BlobSource]]) -> Iterator[_Unit]:
        if self.toc is not None:
            yield from self._landmark_units()
        for digest, source in blobs:
            number = self._begin_entry(digest)
            header = tar_headers.encode_file_header(tar_headers.blob_entry_name(digest.hash), digest.size_bytes)
            padding = bytes(tar_headers.padding_length(digest.size_bytes))
            if self.toc is not None:
                yield from self._estargz_entry_units(number, digest, source, header, padding)
            else:
                yield from self._entry_units(number, digest, source, header, padding)
        if self.toc is None:
            yield _Unit(self._tar(tar_headers.END_OF_ARCHIVE))

    def estargz_tail(self) -> bytes:
        """The uncompressed TOC entry and end of archive (one member). Call once
        every unit before it has been placed: the TOC holds their offsets."""
        assert self.toc is not None
        toc_json, self.toc_digest = self.toc.finish()
        toc_header = tar_headers.encode_file_header(estargz.TOC_NAME, len(toc_json))
        padding = bytes(tar_headers.padding_length(len(toc_json)))
        return self._tar(toc_header + toc_json + padding + tar_headers.END_OF_ARCHIVE)

    def _entry_units(self, number: int, digest: Digest, source: BlobSource, header: bytes, padding: bytes) -> Iterator[_Unit]:
        # Each unit is held back one step so that the last one can carry the padding.
        held = header
        held_starts = True
        have_payload = False
        for chunk in _payload_chunks(digest, source, self.chunk_size, self.verify_sources):
            if have_payload:
                yield _Unit(self._tar(held), starts_entry=number if held_starts else _NO_TAG)
                held, held_starts = chunk, False
            else:
                held = header + chunk
                have_payload = True
        yield _Unit(self._tar(held + padding), starts_entry=number if held_starts else _NO_TAG, ends_entry=number)

    def _estargz_entry_units(
        self, number: int, digest: Digest, source: BlobSource, header: bytes, padding: bytes
    ) -> Iterator[_Unit]:
        assert self.toc is not None
        name = tar_headers.blob_entry_name(digest.hash)
        if digest.size_bytes == 0:
            self.toc.add_empty_file(name)
            yield _Unit(self._tar(header), starts_entry=number, ends_entry=number)
            return
        yield _Unit(self._tar(header), starts_entry=number)
        chunk_offset = 0
        held: Optional[bytes] = None
        for chunk in _payload_chunks(digest, source, self.chunk_size, self.verify_sources):
            if held is not None:
                toc_entry = self.toc.add_chunk(name, digest, chunk_offset, held, last=False)
                yield _Unit(self._tar(held), toc_entry=toc_entry)
                chunk_offset += len(held)
            held = chunk
        assert held is not None
        toc_entry = self.toc.add_chunk(name, digest, chunk_offset, held, last=True)
        yield _Unit(self._tar(held + padding), ends_entry=number, toc_entry=toc_entry)

    def _landmark_units(self) -> Iterator[_Unit]:
        assert self.toc is not None
        content = estargz.LANDMARK_CONTENT
        yield _Unit(self._tar(tar_headers.encode_file_header(estargz.NO_PREFETCH_LANDMARK, len(content))))
        toc_entry = self.toc.add_landmark(estargz.NO_PREFETCH_LANDMARK, content)
        padding = bytes(tar_headers.padding_length(len(content)))
        yield _Unit(self._tar(content + padding), toc_entry=toc_entry)

    def place(self, unit: _Unit, offset: int, length: int) -> None:
        """Records where a unit landed in the compressed layer."""
        if unit.starts_entry != _NO_TAG:
            self.unit_starts[unit.starts_entry] = offset
        if unit.ends_entry != _NO_TAG:
            self.unit_ends[unit.ends_entry] = offset + length
        if unit.toc_entry != _NO_TAG:
            assert self.toc is not None
            self.toc.set_offset(unit.toc_entry, offset)


def _payload_chunks(digest: Digest, source: BlobSource, chunk_size: int, verify: bool) -> Iterator[bytes]:
    """The blob's bytes in chunks of `chunk_size` (the last may be shorter; none
    for an empty blob), checking the size and, with `verify`, the hash."""
    hasher = hashlib.sha256() if verify else None
    total = 0
    for chunk in _read_source(source, chunk_size):
        total += len(chunk)
        if total > digest.size_bytes:
            raise ValueError(f"source of blob {digest} has more than {digest.size_bytes} bytes")
        if hasher is not None:
            hasher.update(chunk)
        yield chunk
    if total != digest.size_bytes:
        raise ValueError(f"source of blob {digest} has {total} bytes, expected {digest.size_bytes}")
    if hasher is not None and hasher.hexdigest() != digest.hash:
        raise DigestMismatchError(f"source of blob {digest} has SHA-256 {hasher.hexdigest()}")


def _read_source(source: BlobSource, chunk_size: int) -> Iterator[bytes]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source).cast("B")
        for start in range(0, len(view), chunk_size):
            yield bytes(view[start : start + chunk_size])
        return
    with open(source, "rb") as file:
        yield from _read_file(file, chunk_size)


def _read_file(file: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    while True:
        chunk = file.read(chunk_size)
        if not chunk:
            return
        while len(chunk) < chunk_size:  # short reads (pipes, network filesystems)
            more = file.read(chunk_size - len(chunk))
            if not more:
                break
            chunk += more
        yield chunk


def _write_units(
    sink: _HashingSink,
    units: Iterator[_Unit],
    compress: Callable[[bytes], bytes],
    threads: int,
    builder: _LayerBuilder,
) -> None:
    """Compresses units (in batches, on `threads` threads) and writes them in order."""

    def write_batch(batch: Sequence[_Unit], compressed: Sequence[bytes]) -> None:
        for unit, data in zip(batch, compressed):
            builder.place(unit, sink.size, len(data))
            sink.write(data)

    def compress_batch(batch: Sequence[_Unit]) -> List[bytes]:
        return [compress(unit.data) for unit in batch]

    if threads == 1:
        for batch in _batches(units):
            write_batch(batch, compress_batch(batch))
        return
    in_flight: Deque[Tuple[Sequence[_Unit], "Future[List[bytes]]"]] = deque()
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="layer-compress") as pool:
        try:
            for batch in _batches(units):
                in_flight.append((batch, pool.submit(compress_batch, batch)))
                while len(in_flight) > 2 * threads:
                    done_batch, future = in_flight.popleft()
                    write_batch(done_batch, future.result())
            while in_flight:
                done_batch, future = in_flight.popleft()
                write_batch(done_batch, future.result())
        finally:
            for _, future in in_flight:
                future.cancel()


def _batches(units: Iterator[_Unit]) -> Iterator[List[_Unit]]:
    batch: List[_Unit] = []
    size = 0
    for unit in units:
        batch.append(unit)
        size += len(unit.data)
        if size >= _BATCH_BYTES or len(batch) >= _BATCH_UNITS:
            yield batch
            batch = []
            size = 0
    if batch:
        yield batch
