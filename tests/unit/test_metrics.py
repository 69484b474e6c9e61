"""store.metrics: the counters the daemon reports, over the real local store."""

from __future__ import annotations

from pathlib import Path

import pytest

from oci_cache.digests import Digest
from oci_cache.errors import DigestMismatchError, NotFoundError
from oci_cache.nonblocking import WouldBlockError
from oci_cache.store.local_store import LocalStore
from oci_cache.store.metrics import MetricsActionCache, MetricsBlobStore, MetricsSnapshot, StoreMetrics


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    with LocalStore(tmp_path / "store", 1 << 30) as local:
        yield local


def test_reads_and_writes_are_counted_with_their_bytes(store: LocalStore) -> None:
    metrics = StoreMetrics()
    blobs = MetricsBlobStore(store, metrics)
    small, large = b"hello", b"x" * 100_000
    blobs.put_bytes(Digest.of(small), small)
    writer = blobs.begin_write(Digest.of(large))
    writer.write(large[:50_000])
    writer.write(large[50_000:])
    assert metrics.blobs_written == 1  # not before the commit
    writer.commit()
    assert blobs.read_bytes(Digest.of(small)) == small
    with blobs.open_blob(Digest.of(large)) as reader:
        assert hasattr(reader, "fileno")  # the store's own reader: its fast paths still apply
        assert reader.read() == large
    assert blobs.contains(Digest.of(small)) and blobs.find_missing([Digest.of(b"absent")]) == [Digest.of(b"absent")]
    assert metrics.snapshot() == MetricsSnapshot(
        action_cache_hits=0,
        action_cache_misses=0,
        action_results_written=0,
        blobs_read=2,
        bytes_read=len(small) + len(large),
        blobs_written=2,
        bytes_written=len(small) + len(large),
    )


def test_failures_count_nothing(store: LocalStore) -> None:
    metrics = StoreMetrics()
    blobs = MetricsBlobStore(store, metrics)
    with pytest.raises(NotFoundError):
        blobs.open_blob(Digest.of(b"missing"))
    with pytest.raises(DigestMismatchError):
        blobs.put_bytes(Digest.of(b"right"), b"wrong")
    writer = blobs.begin_write(Digest.of(b"right"))
    writer.write(b"wrong")
    with pytest.raises(DigestMismatchError):
        writer.commit()
    aborted = blobs.begin_write(Digest.of(b"abc"))
    aborted.write(b"ab")
    aborted.abort()
    assert metrics.snapshot() == MetricsSnapshot(0, 0, 0, 0, 0, 0, 0)


def test_action_cache_hits_misses_and_writes(store: LocalStore) -> None:
    metrics = StoreMetrics()
    action_cache = MetricsActionCache(store, metrics)
    action = Digest.of(b"action")
    assert action_cache.get_action_result(action) is None
    action_cache.put_action_result(action, b"result")
    assert action_cache.get_action_result(action) == b"result"
    assert action_cache.get_action_result(action) == b"result"
    assert list(action_cache.iter_action_digests()) == [action]
    snapshot = metrics.snapshot()
    assert (snapshot.action_cache_hits, snapshot.action_cache_misses, snapshot.action_results_written) == (2, 1, 1)


class _BlocksOnce:
    """An ActionCache whose first call says "would block", as a registry-backed tier does on the event loop."""

    def __init__(self) -> None:
        self.calls = 0

    def get_action_result(self, action_digest: Digest) -> bytes:
        self.calls += 1
        if self.calls == 1:
            raise WouldBlockError("registry lookup")
        return b"result"


def test_a_call_repeated_after_would_block_counts_once() -> None:
    metrics = StoreMetrics()
    action_cache = MetricsActionCache(_BlocksOnce(), metrics)  # type: ignore[arg-type]
    with pytest.raises(WouldBlockError):
        action_cache.get_action_result(Digest.of(b"a"))
    assert action_cache.get_action_result(Digest.of(b"a")) == b"result"
    assert (metrics.action_cache_hits, metrics.action_cache_misses) == (1, 0)
