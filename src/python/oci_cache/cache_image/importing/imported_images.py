"""The cache images imported from the cache-from entries, and lazy, verified blob fetches.

`ImportSet` holds the imported images in cache-from order (the first image that
holds a digest wins) and swaps them atomically when the importer (re)loads one.
Lookups touch only the decoded entry indexes (memory, no I/O).

`ImportSet.fetch_into(digest, store)` fetches one blob: an HTTP Range read of
exactly its entry's compressed byte range (docs/format.md), decompressed, its tar
header checked and its SHA-256 verified while it streams into `store` — which
commits only after the digest matched. Nothing unverified is ever stored or
served. A blob whose bytes fail verification is read again (CONTENT_ATTEMPTS in all:
bytes damaged on the way are not the image's fault); one that keeps failing, or
whose layer is missing, is set aside in that image (bad_blobs.py: not reported
present until a back-off of minutes passes, then tried again); the next image
holding it is tried.
A failure to reach it (registry unavailable or denying, local disk full) is a
miss this time only.
Concurrent fetches of one digest share a single transfer.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from oci_cache.digests import EMPTY_DIGEST, Digest
from oci_cache.errors import CacheError, DigestMismatchError, NotFoundError, OutOfRangeError
from oci_cache.image_format import ActionEntry, BlobEntry, Compression, ImageFormatError, iter_blob_range
from oci_cache.cache_image.importing.bad_blobs import BadBlobs
from oci_cache.cache_image.loaded_image import LoadedImage
from oci_cache.cache_image.importing.small_layer_reads import SmallLayerReads
from oci_cache.oci.target import ImageTarget
from oci_cache.store.interfaces import BlobStore

logger = logging.getLogger(__name__)

SMALL_RANGE_BYTES = 8 << 20
"""Ranges up to this are read whole (with the client's retries); larger ones stream."""
CONTENT_ATTEMPTS = 3
"""Reads of a blob whose bytes fail verification before it is set aside in that image."""


class ImportedImage:
    """One imported image: its decoded index, its target and the blobs set aside."""

    def __init__(
        self,
        entry_text: str,
        target: ImageTarget,
        loaded: LoadedImage,
        clock: Callable[[], float] = time.monotonic,
        *,
        prefetch_bytes: Optional[int] = None,
    ) -> None:
        self.entry_text = entry_text
        self.prefetch_bytes = prefetch_bytes
        """The entry's `prefetch=` bound (None: the daemon's default)."""
        self.target = target
        self.loaded = loaded
        self.index = loaded.index
        self._compressions: Tuple[Compression, ...] = tuple(
            loaded.layer_compression(number) for number in range(len(loaded.layers))
        )
        self._layer_digests: Tuple[Digest, ...] = tuple(d.as_digest for d in loaded.layers)
        self.bad_blobs = BadBlobs(clock)
        self.small_layers = SmallLayerReads(lambda layer: self.target.read_blob(layer))

    @property
    def digest(self) -> str:
        return self.loaded.digest

    def find_blob(self, digest: Digest) -> Optional[BlobEntry]:
        if self.bad_blobs.is_set_aside(digest):
            return None
        try:
            return self.index.find_blob(digest)
        except CacheError as error:  # an entry pointing outside its layer: absent for good
            self.bad_blobs.set_aside_for_good(digest)
            logger.warning("cache-from %s: blob %s is not usable, treated as a miss: %s", self.entry_text, digest, error)
            return None

    def find_action(self, action: Digest) -> Optional[ActionEntry]:
        return self.index.find_action(action)

    def mark_bad(self, digest: Digest) -> float:
        """Sets the blob aside for a back-off (returned, in seconds) after failed reads."""
        return self.bad_blobs.set_aside(digest)

    def compression(self, layer: int) -> Compression:
        return self._compressions[layer]

    def layer_digest(self, layer: int) -> Digest:
        return self._layer_digests[layer]

    def read_entry(self, entry: BlobEntry, counter: "FetchCounters") -> Iterator[bytes]:
        """The blob's verified bytes in chunks (the last chunk only after the digest
        matched), from one Range read of its entry."""
        layer = self._layer_digests[entry.layer]
        compression = self._compressions[entry.layer]
        if entry.compressed_length <= SMALL_RANGE_BYTES:
            data = self.small_layers.read_range(
                layer, entry.compressed_offset, entry.compressed_length, counter.add_fetched
            )
            if data is None:
                data = self.target.read_blob(layer, entry.compressed_offset, entry.compressed_length)
                counter.add_fetched(len(data))
            if len(data) != entry.compressed_length:
                raise _Truncated(f"got {len(data)} of {entry.compressed_length} bytes of the range")
            yield from iter_blob_range(io.BytesIO(data), entry.digest, compression)
            return
        stream = self.target.open_blob_stream(layer, entry.compressed_offset, entry.compressed_length)
        try:
            counting = _CountingReader(stream, counter)
            yield from iter_blob_range(counting, entry.digest, compression)  # type: ignore[arg-type]
        finally:
            stream.close()


class _Truncated(ImageFormatError):
    pass


class _Unservable(NotFoundError):
    """A blob this daemon can never hold (larger than its whole local store)."""


_CONTENT_ERRORS = (ImageFormatError, DigestMismatchError, NotFoundError, OutOfRangeError)
"""Failures that say the image's copy is bad (ContentMismatchError, BlobNotFoundError
and BlobRangeError — an entry past the end of its layer — are among them), as opposed
to failures to reach it."""


class _CountingReader:
    def __init__(self, inner: object, counter: "FetchCounters") -> None:
        self._inner = inner
        self._counter = counter

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)  # type: ignore[attr-defined]
        self._counter.add_fetched(len(data))
        return data

    def readable(self) -> bool:
        return True


@dataclass
class FetchStats:
    blobs_fetched: int = 0
    bytes_fetched: int = 0
    """Compressed bytes read from registries/layouts for blobs (index reads not counted)."""
    blob_bytes_stored: int = 0
    """Uncompressed bytes of the fetched blobs."""
    failures: int = 0
    index_bytes_read: int = 0


class FetchCounters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stats = FetchStats()

    def add_fetched(self, count: int) -> None:
        with self._lock:
            self.stats.bytes_fetched += count

    def add_blob(self, size: int) -> None:
        with self._lock:
            self.stats.blobs_fetched += 1
            self.stats.blob_bytes_stored += size

    def add_index_read(self, count: int) -> None:
        with self._lock:
            self.stats.index_bytes_read += count

    def add_failure(self) -> None:
        with self._lock:
            self.stats.failures += 1

    def snapshot(self) -> FetchStats:
        with self._lock:
            return FetchStats(**vars(self.stats))


class ImportSet:
    """The imported images, in cache-from order (see the module docstring)."""

    def __init__(self, expected: int = 0, ready_deadline_seconds: float = 3.0) -> None:
        self._images: Tuple[Optional[ImportedImage], ...] = (None,) * expected
        self._lock = threading.Lock()
        self._ready = threading.Event()
        if expected == 0:
            self._ready.set()
        self._deadline = time.monotonic() + ready_deadline_seconds
        self._in_flight: Dict[Digest, threading.Event] = {}
        self.counters = FetchCounters()
        self._install_listeners: List[Callable[[ImportedImage], None]] = []

    def add_install_listener(self, listener: Callable[[ImportedImage], None]) -> None:
        """`listener(image)` is called after each image is installed (e.g. the hot-set prefetch)."""
        self._install_listeners.append(listener)

    # ---- membership ---------------------------------------------------------------

    def set_image(self, position: int, image: Optional[ImportedImage]) -> None:
        """Installs (or, with None, removes) the image of the `position`-th entry."""
        with self._lock:
            images = list(self._images)
            while len(images) <= position:
                images.append(None)
            images[position] = image
            self._images = tuple(images)
        if image is not None:
            self.counters.add_index_read(image.loaded.bytes_read)
            for listener in self._install_listeners:
                listener(image)

    def images(self) -> List[ImportedImage]:
        return [image for image in self._images if image is not None]

    def mark_ready(self) -> None:
        self._ready.set()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def wait_time_left(self) -> float:
        """How long a lookup may still wait for the first import (0 when done or late)."""
        if self._ready.is_set():
            return 0.0
        return max(0.0, self._deadline - time.monotonic())

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    # ---- lookups ------------------------------------------------------------------

    def locate_blob(self, digest: Digest) -> Optional[Tuple[ImportedImage, BlobEntry]]:
        for image in self._images:
            if image is not None:
                entry = image.find_blob(digest)
                if entry is not None:
                    return image, entry
        return None

    def has_blob(self, digest: Digest) -> bool:
        if digest == EMPTY_DIGEST:
            return True
        return self.locate_blob(digest) is not None

    def locate_action(self, action: Digest) -> Optional[Tuple[ImportedImage, ActionEntry]]:
        for image in self._images:
            if image is not None:
                entry = image.find_action(action)
                if entry is not None:
                    return image, entry
        return None

    # ---- fetching -----------------------------------------------------------------

    def fetch_into(self, digest: Digest, store: BlobStore) -> bool:
        """Fetches `digest` from the first image that holds it (then the next, if that
        fails) into `store`, verified. True when the store now holds it."""
        while True:
            with self._lock:
                waiting = self._in_flight.get(digest)
                if waiting is None:
                    done = threading.Event()
                    self._in_flight[digest] = done
            if waiting is None:
                break
            waiting.wait()
            if store.contains(digest):
                return True
        try:
            return self._fetch_from_any(digest, store)
        finally:
            with self._lock:
                del self._in_flight[digest]
            done.set()

    def claim_fetches(self, digests: Iterable[Digest]) -> List[Digest]:
        """Marks blobs as being fetched by a bulk transfer (hot_set_prefetch.py): a
        fetch_into of one of them waits until `release_fetch`, then finds it stored (or
        fetches it itself). Returns the digests claimed (those not in flight already)."""
        claimed: List[Digest] = []
        with self._lock:
            for digest in digests:
                if digest not in self._in_flight:
                    self._in_flight[digest] = threading.Event()
                    claimed.append(digest)
        return claimed

    def release_fetch(self, digest: Digest) -> None:
        """Ends a claim of `claim_fetches` (call it once per claimed digest)."""
        with self._lock:
            done = self._in_flight.pop(digest, None)
        if done is not None:
            done.set()

    def _fetch_from_any(self, digest: Digest, store: BlobStore) -> bool:
        for image in self._images:
            if image is None:
                continue
            entry = image.find_blob(digest)
            if entry is None:
                continue
            for attempt in range(1, CONTENT_ATTEMPTS + 1):
                try:
                    self._fetch_entry(image, entry, store)
                    image.bad_blobs.forget(digest)
                    return True
                except _Unservable as error:  # the entry itself is impossible: never from this image
                    self.counters.add_failure()
                    image.bad_blobs.set_aside_for_good(digest)
                    logger.warning(
                        "cache-from %s: blob %s is not usable, treated as a miss: %s", image.entry_text, digest, error
                    )
                except _CONTENT_ERRORS as error:  # corrupt, truncated or missing: set aside for a while
                    self.counters.add_failure()
                    if attempt < CONTENT_ATTEMPTS and not isinstance(error, (NotFoundError, OutOfRangeError)):
                        # Bytes damaged on the way look the same as damaged in the image: read again.
                        logger.info("cache-from %s: blob %s: %s; reading it again", image.entry_text, digest, error)
                        continue
                    again = "still " if image.bad_blobs.was_set_aside(digest) else ""
                    backoff = image.mark_bad(digest)
                    logger.warning(
                        "cache-from %s: blob %s is %snot usable, treated as a miss (read again in %d min): %s",
                        image.entry_text,
                        digest,
                        again,
                        backoff // 60,
                        error,
                    )
                except CacheError as error:  # unreachable, denied, local disk full: a miss this time only
                    self.counters.add_failure()
                    logger.warning(
                        "cache-from %s: cannot fetch blob %s now, a miss: %s", image.entry_text, digest, error
                    )
                break
        return False

    def _fetch_entry(self, image: ImportedImage, entry: BlobEntry, store: BlobStore) -> None:
        limit = getattr(store, "max_size_bytes", None)
        if isinstance(limit, int) and entry.digest.size_bytes > limit:  # e.g. an entry claiming 2^62 bytes
            raise _Unservable(f"it declares {entry.digest.size_bytes} bytes, more than the local store's {limit}")
        writer = store.begin_write(entry.digest)
        committed = False
        try:
            for chunk in image.read_entry(entry, self.counters):
                writer.write(chunk)
            writer.commit()
            committed = True
        finally:
            if not committed:
                writer.abort()
        self.counters.add_blob(entry.digest.size_bytes)


__all__ = ["FetchCounters", "FetchStats", "ImportSet", "ImportedImage", "SMALL_RANGE_BYTES"]
