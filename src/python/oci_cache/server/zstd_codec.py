"""zstd for the `compressed-blobs/zstd` resources and ZSTD batch entries.

Decompression is always bounded by the declared (uncompressed) digest size: a
small input that would inflate past it stops as soon as the output exceeds the
size, so a decompression bomb costs at most one zstd output block of memory.
"""

from __future__ import annotations

import threading
from typing import Callable, Iterator, List

import zstandard

from oci_cache.errors import DigestMismatchError, InvalidArgumentError

COMPRESSION_LEVEL = 1  # loopback and LAN: speed matters more than ratio
_OUTPUT_CHUNK = 128 * 1024

_contexts = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    compressor = getattr(_contexts, "compressor", None)
    if compressor is None:
        compressor = _contexts.compressor = zstandard.ZstdCompressor(level=COMPRESSION_LEVEL)
    return compressor


def compress(data: bytes) -> bytes:
    """One zstd frame holding `data` (its size recorded in the frame header)."""
    return _compressor().compress(data)


class _BoundedSink:
    """Receives zstandard's output; a separate object so that the stream writer (a C
    type the garbage collector cannot see into) never points back at its owner."""

    def __init__(self, sink: Callable[[bytes], None], max_output_bytes: int) -> None:
        self._sink = sink
        self._max_output_bytes = max_output_bytes
        self.output_bytes = 0

    # Called by zstandard's stream writer with each piece of output.
    def write(self, chunk: bytes) -> int:
        self.output_bytes += len(chunk)
        if self.output_bytes > self._max_output_bytes:
            raise DigestMismatchError(
                f"zstd data decompresses to more than the declared {self._max_output_bytes} bytes"
            )
        self._sink(chunk)
        return len(chunk)


class BoundedDecompressor:
    """Feeds compressed input, hands decompressed output to `sink` in bounded chunks.

    Raises DigestMismatchError as soon as the output exceeds `max_output_bytes`, and
    InvalidArgumentError when the input is not valid zstd. Concatenated frames are
    one stream. `output_bytes` counts what went to the sink.
    """

    def __init__(self, sink: Callable[[bytes], None], max_output_bytes: int) -> None:
        self._output = _BoundedSink(sink, max_output_bytes)
        self._writer = zstandard.ZstdDecompressor().stream_writer(
            self._output, write_size=_OUTPUT_CHUNK, write_return_read=True
        )

    @property
    def output_bytes(self) -> int:
        return self._output.output_bytes

    def feed(self, data: bytes) -> None:
        try:
            self._writer.write(data)
        except zstandard.ZstdError as error:
            raise InvalidArgumentError(f"invalid zstd data: {error}") from None


def decompress_bounded(data: bytes, expected_size: int) -> bytes:
    """All of `data` decompressed, never more than `expected_size` bytes of it."""
    chunks: List[bytes] = []
    decompressor = BoundedDecompressor(chunks.append, expected_size)
    decompressor.feed(data)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def compressed_chunks(source: "object", chunk_size: int) -> Iterator[bytes]:
    """zstd-compresses a readable stream (from its current position) into chunks."""
    compressor = zstandard.ZstdCompressor(level=COMPRESSION_LEVEL)
    return compressor.read_to_iter(source, read_size=chunk_size, write_size=chunk_size)
