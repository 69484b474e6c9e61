from __future__ import annotations

import io

import pytest
import zstandard

from oci_cache.errors import DigestMismatchError, InvalidArgumentError
from oci_cache.server import zstd_codec


def test_round_trip_and_concatenated_frames() -> None:
    data = b"hello zstd " * 1000
    assert zstd_codec.decompress_bounded(zstd_codec.compress(data), len(data)) == data
    two_frames = zstandard.ZstdCompressor().compress(b"hello ") + zstandard.ZstdCompressor().compress(b"world")
    assert zstd_codec.decompress_bounded(two_frames, 11) == b"hello world"


def test_a_bomb_stops_at_the_declared_size_without_inflating() -> None:
    bomb = zstandard.ZstdCompressor().compress(b"\0" * (512 << 20))  # ~16 KiB of input
    received = []
    decompressor = zstd_codec.BoundedDecompressor(received.append, 1000)
    with pytest.raises(DigestMismatchError):
        decompressor.feed(bomb)
    assert sum(len(chunk) for chunk in received) <= 1000
    assert decompressor.output_bytes <= 256 * 1024  # stopped after one output block


def test_streamed_input_in_tiny_pieces() -> None:
    data = bytes(range(256)) * 400
    compressed = zstandard.ZstdCompressor().compress(data)
    received = []
    decompressor = zstd_codec.BoundedDecompressor(received.append, len(data))
    for i in range(0, len(compressed), 7):
        decompressor.feed(compressed[i : i + 7])
    assert b"".join(received) == data


def test_garbage_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgumentError):
        zstd_codec.decompress_bounded(b"definitely not zstd", 100)


def test_compressed_chunks_of_a_stream() -> None:
    data = bytes(range(256)) * 10000
    chunks = list(zstd_codec.compressed_chunks(io.BytesIO(data), 64 * 1024))
    assert len(chunks) > 1
    assert zstandard.ZstdDecompressor().decompressobj().decompress(b"".join(chunks)) == data
