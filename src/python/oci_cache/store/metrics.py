"""Counting decorators for the tiers the server serves from (what `oci-cache status`
and the Pants plugin's summary line report).

    metrics = StoreMetrics()
    blobs = MetricsBlobStore(stack.blobs, metrics)
    action_cache = MetricsActionCache(stack.action_cache, metrics)

Wrap the outermost layers of the serving stack, the ones the gRPC services call, so that the counters say
what clients saw: a hit is a hit the client was given (after the completeness check),
a blob read is a blob opened for a client. The counters are plain int attributes
bumped after the inner call returns (a call that raises, including a WouldBlockError
that the server repeats on a worker thread, counts nothing); a concurrent increment
from two threads may rarely be lost, which is fine for statistics and keeps the hot
path to one attribute update.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, List, Optional, Sequence

from oci_cache.digests import Digest
from oci_cache.store.interfaces import ActionCache, BlobReader, BlobStore, BlobWriter


@dataclass(frozen=True)
class MetricsSnapshot:
    action_cache_hits: int
    action_cache_misses: int
    action_results_written: int
    blobs_read: int
    bytes_read: int
    blobs_written: int
    bytes_written: int


class StoreMetrics:
    """The counters, shared by the decorators of one server."""

    __slots__ = (
        "action_cache_hits",
        "action_cache_misses",
        "action_results_written",
        "blobs_read",
        "bytes_read",
        "blobs_written",
        "bytes_written",
    )

    def __init__(self) -> None:
        self.action_cache_hits = 0
        self.action_cache_misses = 0
        self.action_results_written = 0
        self.blobs_read = 0
        self.bytes_read = 0
        self.blobs_written = 0
        self.bytes_written = 0

    def snapshot(self) -> MetricsSnapshot:
        return MetricsSnapshot(
            action_cache_hits=self.action_cache_hits,
            action_cache_misses=self.action_cache_misses,
            action_results_written=self.action_results_written,
            blobs_read=self.blobs_read,
            bytes_read=self.bytes_read,
            blobs_written=self.blobs_written,
            bytes_written=self.bytes_written,
        )


class MetricsBlobStore:
    """A BlobStore that counts blobs (and their bytes) opened for reading and written.

    A blob counts as read when it is opened or read whole (its full size, whatever
    part of it the client then reads: REAPI clients read blobs whole); as written when
    `put_bytes` or a writer's `commit()` succeeds. The reader is the inner store's own
    object, so fast paths that look at it (a file descriptor to map) still apply.
    """

    def __init__(self, inner: BlobStore, metrics: StoreMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def contains(self, digest: Digest) -> bool:
        return self._inner.contains(digest)

    def find_missing(self, digests: Iterable[Digest]) -> List[Digest]:
        return self._inner.find_missing(digests)

    def open_blob(self, digest: Digest) -> BlobReader:
        reader = self._inner.open_blob(digest)
        metrics = self._metrics
        metrics.blobs_read += 1
        metrics.bytes_read += digest.size_bytes
        return reader

    def read_bytes(self, digest: Digest) -> bytes:
        data = self._inner.read_bytes(digest)
        metrics = self._metrics
        metrics.blobs_read += 1
        metrics.bytes_read += len(data)
        return data

    def ensure_local(self, digests: Sequence[Digest]) -> List[Digest]:
        """The inner store's concurrent fetch of blobs only in imported images (not counted as
        reads: the reads that follow are); nothing to do for a store without imports."""
        inner = getattr(self._inner, "ensure_local", None)
        return inner(digests) if inner is not None else []

    def put_bytes(self, digest: Digest, data: bytes) -> None:
        self._inner.put_bytes(digest, data)
        metrics = self._metrics
        metrics.blobs_written += 1
        metrics.bytes_written += digest.size_bytes

    def begin_write(self, digest: Digest) -> BlobWriter:
        return _CountingBlobWriter(self._inner.begin_write(digest), self._metrics)


class _CountingBlobWriter:
    """Forwards to the inner writer; counts the blob once its commit succeeds."""

    __slots__ = ("_inner", "_metrics", "digest")

    def __init__(self, inner: BlobWriter, metrics: StoreMetrics) -> None:
        self._inner = inner
        self._metrics = metrics
        self.digest = inner.digest

    @property
    def committed_size(self) -> int:
        return self._inner.committed_size

    def write(self, data: bytes) -> None:
        self._inner.write(data)

    def commit(self) -> None:
        self._inner.commit()
        metrics = self._metrics
        metrics.blobs_written += 1
        metrics.bytes_written += self.digest.size_bytes

    def abort(self) -> None:
        self._inner.abort()


class MetricsActionCache:
    """An ActionCache that counts hits, misses and results written."""

    def __init__(self, inner: ActionCache, metrics: StoreMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def get_action_result(self, action_digest: Digest) -> Optional[bytes]:
        result = self._inner.get_action_result(action_digest)
        if result is None:
            self._metrics.action_cache_misses += 1
        else:
            self._metrics.action_cache_hits += 1
        return result

    def put_action_result(self, action_digest: Digest, serialized_result: bytes) -> None:
        self._inner.put_action_result(action_digest, serialized_result)
        self._metrics.action_results_written += 1

    def iter_action_digests(self) -> Iterator[Digest]:
        return self._inner.iter_action_digests()


__all__: List[str] = ["MetricsActionCache", "MetricsBlobStore", "MetricsSnapshot", "StoreMetrics"]
