"""Prefetch of an imported image's hot set: bulk, coalesced, verified, bounded.

Across a wide-area link a hit costs round trips: the ActionResult, then its blobs,
each a Range read behind a redirect. A daemon that has just imported an image knows
every entry in it, and what was used last (the index's `last_used` times), before
the client asks for anything. So right after an import, `HotSetPrefetch` brings into
the local tier, in the background:

1. every ActionResult blob of the image (they are small; each GetActionResult needs
   one), then
2. the other blobs, most recently used first,

until `max_bytes` of compressed ranges have been read (or the entry's `prefetch=` bound,
never more than a quarter of the local store). Wanted entries of one layer
that lie close together (gaps up to `gap_bytes`) are read as one Range request of at
most `max_span_bytes`, several spans at a time (`threads`), so the import's cost is
bandwidth, not round trips. The spans are read in the order the build will want their
blobs: those that hold ActionResults first, then each layer front to back, because the
exporter writes a layer in the order its run used the blobs (exporting/pack_order.py).
A few small spans in flight at a time, rather than the whole hot set at once, let the
first blobs arrive first. Each span is streamed: every blob is cut out of it, verified
by its own digest and stored as soon as its bytes have arrived (the same checks as a lazy
fetch: imported_images.py); a blob that fails is left to the lazy path. Blobs already
local are skipped.

While a blob is being prefetched it is claimed in the ImportSet: a lookup that wants
it meanwhile waits for that transfer (until that blob, not the whole span, is stored)
instead of starting its own.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Set

from oci_cache.cache_image.importing.imported_images import ImportedImage, ImportSet
from oci_cache.digests import EMPTY_DIGEST, Digest
from oci_cache.errors import CacheError, DigestMismatchError
from oci_cache.image_format import BlobEntry, ImageFormatError, iter_blob_range
from oci_cache.store.interfaces import BlobStore

logger = logging.getLogger(__name__)

DEFAULT_PREFETCH_BYTES = 256 << 20
"""Compressed bytes a prefetch reads at most (also at most a quarter of the local store)."""
PREFETCH_BYTES_VARIABLE = "OCI_CACHE_PREFETCH_BYTES"
"""Overrides DEFAULT_PREFETCH_BYTES in the daemon's environment (bytes; 0 turns prefetch off)."""
GAP_BYTES = 256 << 10
MAX_SPAN_BYTES = 2 << 20
"""Small enough that the spans in flight (PREFETCH_THREADS of them) cover little more
than what the build wants next, large enough that request round trips are a small
part of a span's time at tens of MB/s."""
MAX_PREFETCHED_BLOB_BYTES = 64 << 20
"""A bigger blob is left to the lazy read."""
MAX_REQUESTS = 512
"""Spans read at most (the most urgent first): a huge, scattered hot set is bounded in
round trips too, the rest is left to lazy reads."""
PREFETCH_THREADS = 4
"""Spans read at once: enough to keep a link busy while each new request waits a round trip."""


def prefetch_bytes_bound(local_store_bytes: Optional[int]) -> int:
    """The prefetch bound for a local store of that size: the default (or the variable's
    value), and at most a quarter of the store."""
    text = os.environ.get(PREFETCH_BYTES_VARIABLE, "").strip()
    bound = DEFAULT_PREFETCH_BYTES
    if text:
        try:
            bound = max(0, int(text))
        except ValueError:
            logger.warning("%s=%r is not a number of bytes; using %d", PREFETCH_BYTES_VARIABLE, text, bound)
    return within_store(bound, local_store_bytes)


def within_store(bound: int, local_store_bytes: Optional[int]) -> int:
    """`bound`, and at most a quarter of a local store of that size (None or 0: unknown)."""
    return min(bound, local_store_bytes // 4) if local_store_bytes else bound


def entry_prefetch_bound(prefetch_bytes: Optional[int], default_bound: int, local_store_bytes: Optional[int]) -> int:
    """The bound of an entry whose `prefetch=` is `prefetch_bytes`: that (None: `default_bound`,
    already within the store), at most a quarter of the local store either way."""
    if prefetch_bytes is None:
        return default_bound
    return within_store(prefetch_bytes, local_store_bytes)


@dataclass
class Span:
    """One Range read: [start, end) of layer `layer`, covering `entries`."""

    layer: int
    start: int
    end: int
    entries: List[BlobEntry] = field(default_factory=list)

    @property
    def length(self) -> int:
        return self.end - self.start


def plan_spans(entries: Iterable[BlobEntry], gap_bytes: int = GAP_BYTES, max_span_bytes: int = MAX_SPAN_BYTES) -> List[Span]:
    """Groups entries into Range reads: per layer, in offset order, merging an entry into
    the span before it when the gap is at most `gap_bytes` and the span stays within
    `max_span_bytes` (an entry larger than that is a span of its own)."""
    spans: List[Span] = []
    by_layer = sorted(entries, key=lambda e: (e.layer, e.compressed_offset))
    current: Optional[Span] = None
    for entry in by_layer:
        start, end = entry.compressed_offset, entry.compressed_offset + entry.compressed_length
        if (
            current is not None
            and current.layer == entry.layer
            and start - current.end <= gap_bytes
            and max(end, current.end) - current.start <= max_span_bytes
        ):
            current.end = max(current.end, end)
            current.entries.append(entry)
            continue
        current = Span(entry.layer, start, end, [entry])
        spans.append(current)
    return spans


def _result_digests(image: ImportedImage) -> Dict[Digest, None]:
    """The image's ActionResult blobs (not the empty one), in index order."""
    return {action.result: None for action in image.index.iter_actions() if action.result != EMPTY_DIGEST}


@dataclass
class PrefetchStats:
    blobs: int = 0
    blob_bytes: int = 0
    fetched_bytes: int = 0
    requests: int = 0
    failures: int = 0
    seconds: float = 0.0


class HotSetPrefetch:
    """Prefetches the hot set of each image the importer installs (see the module docstring)."""

    def __init__(
        self,
        imports: ImportSet,
        store: BlobStore,
        max_bytes: int,
        *,
        threads: int = PREFETCH_THREADS,
        gap_bytes: int = GAP_BYTES,
        max_span_bytes: int = MAX_SPAN_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.imports = imports
        self.store = store
        self.max_bytes = max_bytes
        self.threads = threads
        self.gap_bytes = gap_bytes
        self.max_span_bytes = max_span_bytes
        self._clock = clock
        self._done: Set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.last_stats: Optional[PrefetchStats] = None

    def image_installed(self, image: ImportedImage) -> None:
        """Starts the prefetch of a newly imported image in the background (once per image)."""
        if self.bound(image) <= 0:
            return
        with self._lock:
            if image.digest in self._done:
                return
            self._done.add(image.digest)
        threading.Thread(target=self._run_logged, args=(image,), name="hot-set-prefetch", daemon=True).start()

    def _run_logged(self, image: ImportedImage) -> None:
        try:
            self.run(image)
        except Exception:  # noqa: BLE001 - a bug here must cost the prefetch only, never the daemon
            logger.warning("cache-from %s: the prefetch stopped on an unexpected error", image.entry_text, exc_info=True)

    def close(self) -> None:
        self._stop.set()

    def bound(self, image: ImportedImage) -> int:
        """Compressed bytes to read for `image`: its entry's `prefetch=`, else `max_bytes`;
        at most a quarter of the local store either way."""
        store_bytes = getattr(self.store, "max_size_bytes", None)
        return entry_prefetch_bound(image.prefetch_bytes, self.max_bytes, store_bytes if isinstance(store_bytes, int) else None)

    # ---- the work -------------------------------------------------------------------

    def choose(self, image: ImportedImage) -> List[BlobEntry]:
        """The entries to prefetch, in priority order, within the byte bound."""
        index = image.index
        results: List[BlobEntry] = []
        result_digests = _result_digests(image)
        for digest in result_digests:
            entry = image.find_blob(digest)
            if entry is not None:
                results.append(entry)
        others = [
            entry
            for entry in index.iter_blobs()
            if entry.digest not in result_digests and entry.digest != EMPTY_DIGEST
        ]
        others.sort(key=lambda entry: -entry.last_used)
        chosen: List[BlobEntry] = []
        budget = self.bound(image)
        store_bytes = getattr(self.store, "max_size_bytes", None)
        for entry in results + others:
            if entry.compressed_length > min(budget, MAX_PREFETCHED_BLOB_BYTES):
                continue
            if isinstance(store_bytes, int) and entry.digest.size_bytes > store_bytes // 4:
                continue  # (an entry may claim any size: never trusted, left to the lazy read's checks)
            if image.bad_blobs.is_set_aside(entry.digest) or self.store.contains(entry.digest):
                continue
            chosen.append(entry)
            budget -= entry.compressed_length
            if budget <= 0:
                break
        return chosen

    def run(self, image: ImportedImage) -> PrefetchStats:
        started = self._clock()
        stats = PrefetchStats()
        try:
            chosen = self.choose(image)
        except CacheError as error:
            logger.info("cache-from %s: no prefetch: %s", image.entry_text, error)
            return stats
        bound = self.bound(image)
        claimed = set(self.imports.claim_fetches([entry.digest for entry in chosen]))
        wanted = [entry for entry in chosen if entry.digest in claimed]
        # Spans in the order of their most urgent entry: `chosen` lists the ActionResults first.
        spans = self._spans_in_priority_order(image, wanted)
        kept: List[Span] = []
        total = 0
        for span in spans:  # the bound counts every byte read, the gaps in spans too
            if len(kept) < MAX_REQUESTS and total + span.length <= bound:
                kept.append(span)
                total += span.length
            else:
                for entry in span.entries:
                    self.imports.release_fetch(entry.digest)
        spans = kept
        lock = threading.Lock()

        def fetch(span: Span) -> None:
            pending = {entry.digest for entry in span.entries}

            def release(digest: Digest) -> None:  # once per claimed digest
                if digest in pending:
                    pending.discard(digest)
                    self.imports.release_fetch(digest)

            try:
                if not self._stop.is_set():
                    self._fetch_span(image, span, stats, lock, release)
            finally:
                for digest in list(pending):
                    release(digest)

        try:
            with ThreadPoolExecutor(max_workers=max(1, self.threads), thread_name_prefix="prefetch") as pool:
                list(pool.map(fetch, spans))
        finally:
            stats.seconds = self._clock() - started
            self.last_stats = stats
        logger.info(
            "cache-from %s: prefetched %d blobs (%d bytes; %d bytes read in %d requests, %d failed) in %.2fs",
            image.entry_text,
            stats.blobs,
            stats.blob_bytes,
            stats.fetched_bytes,
            stats.requests,
            stats.failures,
            stats.seconds,
        )
        return stats

    def _spans_in_priority_order(self, image: ImportedImage, wanted: Sequence[BlobEntry]) -> List[Span]:
        """Spans that hold an ActionResult first, then in layer order, each layer front
        to back: the exporter writes a layer in the order a build wants its blobs
        (exporting/pack_order.py), ActionResults first."""
        results = _result_digests(image)
        spans = plan_spans(wanted, self.gap_bytes, self.max_span_bytes)
        spans.sort(key=lambda span: (not any(e.digest in results for e in span.entries), span.layer, span.start))
        return spans

    def _fetch_span(
        self, image: ImportedImage, span: Span, stats: PrefetchStats, lock: threading.Lock, release: Callable[[Digest], None]
    ) -> None:
        """Streams the span; each blob is stored (verified) and released as soon as its bytes
        have arrived, so a lookup waiting for it does not wait for the rest of the span."""
        layer = image.layer_digest(span.layer)
        compression = image.compression(span.layer)
        try:
            stream = image.target.open_blob_stream(layer, span.start, span.length)
        except (CacheError, OSError) as error:
            logger.info("cache-from %s: prefetch of %d bytes of layer %s failed: %s", image.entry_text, span.length, layer, error)
            with lock:
                stats.failures += len(span.entries)
                stats.requests += 1
            return
        with lock:
            stats.requests += 1
        position = span.start
        try:
            for entry in sorted(span.entries, key=lambda e: e.compressed_offset):
                if entry.compressed_offset < position or self._stop.is_set():
                    continue  # (overlapping entries: left to the lazy read)
                if self._read_exactly(stream, entry.compressed_offset - position, stats, lock) is None:
                    break
                piece = self._read_exactly(stream, entry.compressed_length, stats, lock)
                if piece is None:
                    break
                position = entry.compressed_offset + entry.compressed_length
                self._store(image, entry, piece, compression, stats, lock)
                release(entry.digest)
        except (CacheError, OSError) as error:
            logger.info("cache-from %s: prefetch of layer %s stopped: %s", image.entry_text, layer, error)
            with lock:
                stats.failures += 1
        finally:
            stream.close()

    def _read_exactly(self, stream: object, size: int, stats: PrefetchStats, lock: threading.Lock) -> Optional[bytes]:
        """`size` bytes of the stream (None when it ends first); counted as fetched."""
        parts: List[bytes] = []
        left = size
        while left > 0:
            data = stream.read(min(left, 1 << 20))  # type: ignore[attr-defined]
            if not data:
                return None
            parts.append(data)
            left -= len(data)
            self.imports.counters.add_fetched(len(data))
            with lock:
                stats.fetched_bytes += len(data)
        return b"".join(parts)

    def _store(self, image: ImportedImage, entry: BlobEntry, piece: bytes, compression: object, stats: PrefetchStats, lock: threading.Lock) -> None:
        if self.store.contains(entry.digest):
            return
        writer = None
        committed = False
        try:
            writer = self.store.begin_write(entry.digest)
            for chunk in iter_blob_range(io.BytesIO(piece), entry.digest, compression):  # type: ignore[arg-type]
                writer.write(chunk)
            writer.commit()
            committed = True
        except (ImageFormatError, DigestMismatchError, CacheError, OSError) as error:
            logger.info("cache-from %s: prefetched blob %s not stored (left to a lazy read): %s", image.entry_text, entry.digest, error)
            with lock:
                stats.failures += 1
        finally:
            if writer is not None and not committed:
                writer.abort()
        if committed:
            self.imports.counters.add_blob(entry.digest.size_bytes)
            with lock:
                stats.blobs += 1
                stats.blob_bytes += entry.digest.size_bytes


__all__ = [
    "DEFAULT_PREFETCH_BYTES",
    "HotSetPrefetch",
    "entry_prefetch_bound",
    "PREFETCH_BYTES_VARIABLE",
    "PrefetchStats",
    "Span",
    "plan_spans",
    "prefetch_bytes_bound",
]
