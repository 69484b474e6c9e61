"""A BlobStore decorator: the local tier first, then the imported cache images.

- `contains` / `find_missing` count a blob held by an imported image as present
  — a lookup in the decoded indexes, no I/O.
- `open_blob` / `read_bytes` of a blob that is only in an imported image fetch it
  (one Range read, verified) into the local tier, then serve it from there.
- Writes go to the local tier.

Fetching is network I/O: it calls `check_may_block()` first, so on the server's
event loop the call is re-run on a worker thread. Until the first import is done,
lookups wait for it (at most until ImportSet's deadline, a few seconds after
start), so a client that starts together with the server does not miss.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, List, Sequence

from oci_cache.digests import EMPTY_DIGEST, Digest
from oci_cache.errors import NotFoundError
from oci_cache.nonblocking import check_may_block
from oci_cache.cache_image.imported_images import ImportSet
from oci_cache.store.interfaces import BlobReader, BlobStore, BlobWriter

FETCH_THREADS = 8


class ImportingBlobStore:
    def __init__(self, local: BlobStore, imports: ImportSet, *, fetch_threads: int = FETCH_THREADS) -> None:
        self.local = local
        self.imports = imports
        self._pool = ThreadPoolExecutor(max_workers=fetch_threads, thread_name_prefix="blob-fetch")

    # ---- reads --------------------------------------------------------------------

    def contains(self, digest: Digest) -> bool:
        if self.local.contains(digest):
            return True
        self.await_import()
        return self.imports.has_blob(digest)

    def find_missing(self, digests: Iterable[Digest]) -> List[Digest]:
        missing = self.local.find_missing(digests)
        if not missing:
            return missing
        self.await_import()
        return [digest for digest in missing if not self.imports.has_blob(digest)]

    def open_blob(self, digest: Digest) -> BlobReader:
        try:
            return self.local.open_blob(digest)
        except NotFoundError:
            pass
        for _ in range(2):  # a fetched blob may be evicted at once from a tiny store
            self._fetch(digest)
            try:
                return self.local.open_blob(digest)
            except NotFoundError:
                continue
        raise NotFoundError(f"blob {digest} not found")

    def read_bytes(self, digest: Digest) -> bytes:
        with self.open_blob(digest) as reader:
            return reader.read()

    # ---- writes -------------------------------------------------------------------

    def put_bytes(self, digest: Digest, data: bytes) -> None:
        self.local.put_bytes(digest, data)

    def begin_write(self, digest: Digest) -> BlobWriter:
        return self.local.begin_write(digest)

    # ---- import support -------------------------------------------------------------

    def await_import(self) -> None:
        """Waits (off the event loop) for the first import, bounded by its deadline."""
        left = self.imports.wait_time_left()
        if left > 0:
            check_may_block("waiting for the cache import")
            self.imports.wait_ready(left)

    def ensure_local(self, digests: Sequence[Digest]) -> List[Digest]:
        """Makes every digest present in the local tier, fetching (concurrently) those
        only in imported images. Returns the ones that could not be made present."""
        missing = self.local.find_missing([d for d in digests if d != EMPTY_DIGEST])
        if not missing:
            return []
        self.await_import()
        fetchable = [d for d in missing if self.imports.has_blob(d)]
        fetchable_set = set(fetchable)
        absent = [d for d in missing if d not in fetchable_set]
        if fetchable:
            check_may_block("fetching blobs from a cache image")
            if len(fetchable) == 1:
                outcomes = [self.imports.fetch_into(fetchable[0], self.local)]
            else:
                outcomes = list(self._pool.map(lambda d: self.imports.fetch_into(d, self.local), fetchable))
            absent.extend(d for d, ok in zip(fetchable, outcomes) if not ok)
        return absent

    def find_unservable(self, digests: Sequence[Digest]) -> List[Digest]:
        """What the completeness check asks: the digests that cannot be made local now
        (ensure_local fetches and verifies the others)."""
        return self.ensure_local(digests)

    def _fetch(self, digest: Digest) -> None:
        self.await_import()
        if not self.imports.has_blob(digest):
            raise NotFoundError(f"blob {digest} not found")
        check_may_block("fetching a blob from a cache image")
        if not self.imports.fetch_into(digest, self.local):
            raise NotFoundError(f"blob {digest} not found (its copy in the cache image is not usable)")

    def close(self) -> None:
        self._pool.shutdown(wait=False)


__all__ = ["ImportingBlobStore"]
