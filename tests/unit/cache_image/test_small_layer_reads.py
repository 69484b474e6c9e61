"""SmallLayerReads: the second range wanted from a small layer reads it whole (once,
verified); big, broken or unreadable layers are left to Range reads."""

from __future__ import annotations

import threading
from typing import List

from oci_cache.cache_image.importing.small_layer_reads import SmallLayerReads
from oci_cache.digests import Digest
from oci_cache.errors import UnavailableError

LAYER = bytes(range(256)) * 64  # 16 KiB
LAYER_DIGEST = Digest.of(LAYER)


class Registry:
    def __init__(self, data: bytes = LAYER, fail: bool = False) -> None:
        self.data = data
        self.fail = fail
        self.reads: List[Digest] = []
        self.lock = threading.Lock()

    def read(self, layer: Digest) -> bytes:
        with self.lock:
            self.reads.append(layer)
        if self.fail:
            raise UnavailableError("registry down")
        return self.data


def test_the_second_range_reads_the_layer_once_and_later_ranges_come_from_memory() -> None:
    registry = Registry()
    reads = SmallLayerReads(registry.read)
    assert reads.read_range(LAYER_DIGEST, 0, 10) is None  # first range: the caller reads it
    assert registry.reads == []
    assert reads.read_range(LAYER_DIGEST, 100, 50) == LAYER[100:150]
    assert reads.read_range(LAYER_DIGEST, 0, 10) == LAYER[0:10]
    assert reads.read_range(LAYER_DIGEST, 16000, 384) == LAYER[16000:16384]
    assert registry.reads == [LAYER_DIGEST]
    assert (reads.layers_read, reads.bytes_read) == (1, len(LAYER))


def test_layers_over_the_limit_and_ranges_outside_the_layer_are_not_read_whole() -> None:
    registry = Registry()
    reads = SmallLayerReads(registry.read, max_layer_bytes=len(LAYER) - 1)
    for offset in (0, 10, 20):
        assert reads.read_range(LAYER_DIGEST, offset, 5) is None
    small = SmallLayerReads(registry.read)
    assert small.read_range(LAYER_DIGEST, len(LAYER) - 5, 10) is None
    assert small.read_range(LAYER_DIGEST, -1, 10) is None
    assert registry.reads == []


def test_a_layer_with_wrong_bytes_is_never_used_whole() -> None:
    altered = bytearray(LAYER)
    altered[5000] ^= 0xFF
    registry = Registry(bytes(altered))
    reads = SmallLayerReads(registry.read)
    assert reads.read_range(LAYER_DIGEST, 0, 10) is None
    assert reads.read_range(LAYER_DIGEST, 10, 10) is None  # read whole, digest mismatch
    assert reads.read_range(LAYER_DIGEST, 20, 10) is None  # not tried again
    assert registry.reads == [LAYER_DIGEST]
    assert reads.layers_read == 0


def test_an_unreachable_registry_means_range_reads() -> None:
    registry = Registry(fail=True)
    reads = SmallLayerReads(registry.read)
    assert reads.read_range(LAYER_DIGEST, 0, 10) is None
    assert reads.read_range(LAYER_DIGEST, 10, 10) is None
    assert reads.read_range(LAYER_DIGEST, 30, 10) is None
    assert registry.reads == [LAYER_DIGEST]


def test_concurrent_ranges_share_one_whole_read() -> None:
    release = threading.Event()
    registry = Registry()

    def slow_read(layer: Digest) -> bytes:
        release.wait(5)
        return registry.read(layer)

    reads = SmallLayerReads(slow_read)
    assert reads.read_range(LAYER_DIGEST, 0, 1) is None
    results: List[object] = []
    threads = [
        threading.Thread(target=lambda o=offset: results.append(reads.read_range(LAYER_DIGEST, o, 4)))
        for offset in range(1, 9)
    ]
    for thread in threads:
        thread.start()
    release.set()
    for thread in threads:
        thread.join(10)
    assert sorted(results) == sorted(LAYER[o : o + 4] for o in range(1, 9))  # type: ignore[type-var]
    assert registry.reads == [LAYER_DIGEST]


def test_memory_is_bounded_least_recently_used_first() -> None:
    layers = [bytes([n]) * 4096 for n in range(4)]
    by_digest = {Digest.of(data): data for data in layers}
    reads = SmallLayerReads(lambda d: by_digest[d], capacity_bytes=2 * 4096)
    for data in layers:
        digest = Digest.of(data)
        reads.read_range(digest, 0, 1)
        assert reads.read_range(digest, 1, 1) == data[1:2]
    assert reads.layers_read == 4
    assert reads._cached_bytes <= 2 * 4096
