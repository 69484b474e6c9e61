"""Blob helpers for the layer tests: sizes around the tar block and chunk
boundaries. (Imported by name: several conftest.py files exist in tests/.)"""

from __future__ import annotations

import random
from typing import List, Tuple

from oci_cache.digests import Digest

SMALL_CHUNK = 64 << 10
"""A chunk size the tests use so that "large" blobs span several units."""

BLOB_SIZES = (0, 1, 511, 512, 513, 4096, 100_000, SMALL_CHUNK, SMALL_CHUNK + 1, 3 * SMALL_CHUNK + 17)


def make_blob(size: int, seed: int) -> bytes:
    """Half compressible text, half random bytes."""
    rng = random.Random(seed)
    text = b"".join(b"line %d of blob %d: the quick brown fox\n" % (i, seed) for i in range(size // 20 + 1))
    noise = rng.getrandbits(8 * size).to_bytes(size, "little") if size else b""
    mixed = bytes(a if i % 2 else b for i, (a, b) in enumerate(zip(text, noise)))
    assert len(mixed) >= size
    return mixed[:size]


def sample_blobs() -> List[Tuple[Digest, bytes]]:
    result = []
    for seed, size in enumerate(BLOB_SIZES):
        data = make_blob(size, seed)
        result.append((Digest.of(data), data))
    return result
