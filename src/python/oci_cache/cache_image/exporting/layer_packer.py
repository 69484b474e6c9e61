"""Packs blobs into new data layers and uploads each as soon as it is written.

    packer = LayerPacker(target, directory, compression, level)
    for written in packer.pack(digests, source):   # digests in the order to pack them
        ...                                        # each written layer (upload in flight)
    outcomes = packer.finish()                     # waits for every upload

A layer holds blobs until their sizes reach `max_layer_bytes` (256 MiB by
default; a larger blob gets a layer of its own). Compressing layer N+1 (on the
codec's threads) overlaps uploading layer N (on an upload thread), so an export
costs about the slower of the two, not their sum.

Sources are verified before they are packed: `BlobSourceResolver.resolve`
returns bytes or a file whose SHA-256 was checked, or None for a blob that is
gone or corrupt — the packer leaves it out and reports it in `skipped`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterator, List, Optional, Sequence, Set, Tuple, Union

from oci_cache.digests import Digest
from oci_cache.errors import CacheError
from oci_cache.image_format import Compression, WrittenLayer, write_layer
from oci_cache.oci.target import ImageTarget, PushOutcome
from oci_cache.store.interfaces import BlobStore

logger = logging.getLogger(__name__)

DEFAULT_MAX_LAYER_BYTES = 64 << 20
IN_MEMORY_LIMIT = 16 << 20
"""Blobs up to this size are read into memory; larger ones are copied to a spool file."""

Source = Union[bytes, str]
SourceFunction = Callable[[Digest], Optional[Source]]


class BlobSourceResolver:
    """Verified bytes (or a verified spool file) for blobs of a BlobStore, or of a
    spool directory that already holds them (layers being rewritten)."""

    def __init__(self, store: Optional[BlobStore], spool_directory: str) -> None:
        self._store = store
        self._spool = spool_directory
        self.spooled: dict = {}
        """Digest → path of a verified file (filled by whoever rewrote a layer)."""

    def resolve(self, digest: Digest) -> Optional[Source]:
        path = self.spooled.get(digest)
        if path is not None:
            return path
        if self._store is None:
            return None
        try:
            reader = self._store.open_blob(digest)
        except CacheError:
            return None
        with reader:
            if digest.size_bytes <= IN_MEMORY_LIMIT:
                data = reader.read()
                if len(data) != digest.size_bytes or hashlib.sha256(data).hexdigest() != digest.hash:
                    logger.warning("local blob %s is corrupt; left out of the export", digest)
                    return None
                return data
            return self._spool_copy(digest, reader)

    def _spool_copy(self, digest: Digest, reader: object) -> Optional[str]:
        path = os.path.join(self._spool, f"blob-{digest.hash[:16]}-{uuid.uuid4().hex[:8]}")
        hasher = hashlib.sha256()
        size = 0
        with open(path, "wb") as out:
            while True:
                chunk = reader.read(1 << 20)  # type: ignore[attr-defined]
                if not chunk:
                    break
                hasher.update(chunk)
                size += len(chunk)
                out.write(chunk)
        if size != digest.size_bytes or hasher.hexdigest() != digest.hash:
            os.unlink(path)
            logger.warning("local blob %s is corrupt; left out of the export", digest)
            return None
        return path


def group_for_layers(digests: Sequence[Digest], max_layer_bytes: int) -> List[List[Digest]]:
    """Consecutive groups whose sizes add up to at most `max_layer_bytes` (a bigger
    blob alone)."""
    groups: List[List[Digest]] = []
    current: List[Digest] = []
    current_bytes = 0
    for digest in digests:
        if current and current_bytes + digest.size_bytes > max_layer_bytes:
            groups.append(current)
            current, current_bytes = [], 0
        current.append(digest)
        current_bytes += digest.size_bytes
    if current:
        groups.append(current)
    return groups


class LayerPacker:
    def __init__(
        self,
        target: ImageTarget,
        directory: str,
        compression: Compression,
        level: Optional[int] = None,
        *,
        max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES,
        upload_threads: int = 2,
    ) -> None:
        self._target = target
        self._directory = directory
        self._compression = compression
        self._level = level
        self._max_layer_bytes = max_layer_bytes
        self._uploads = ThreadPoolExecutor(max_workers=upload_threads, thread_name_prefix="layer-upload")
        self._pending: List[Tuple[WrittenLayer, "Future[PushOutcome]"]] = []
        self.skipped: Set[Digest] = set()
        self.uploaded_bytes = 0
        self.uploaded_layers = 0
        self.present_layers = 0

    def pack(self, digests: Sequence[Digest], source: SourceFunction) -> Iterator[WrittenLayer]:
        for group in group_for_layers(digests, self._max_layer_bytes):
            written = self._write(group, source)
            if written is None:
                continue
            self._pending.append((written, self._uploads.submit(self._target.push_blob, written.digest, written.path)))
            yield written

    def _write(self, group: List[Digest], source: SourceFunction) -> Optional[WrittenLayer]:
        def blobs() -> Iterator[Tuple[Digest, Source]]:
            for digest in group:
                data = source(digest)
                if data is None:
                    self.skipped.add(digest)
                    continue
                yield digest, data

        path = os.path.join(self._directory, f"layer-{uuid.uuid4().hex}")
        written = write_layer(path, blobs(), self._compression, level=self._level)
        if not written.entries:
            os.unlink(path)
            return None
        return written

    def finish(self) -> None:
        """Waits for every upload; raises the first failure."""
        try:
            for written, future in self._pending:
                outcome = future.result()
                if outcome is PushOutcome.UPLOADED:
                    self.uploaded_bytes += written.digest.size_bytes
                    self.uploaded_layers += 1
                else:
                    self.present_layers += 1
        finally:
            self._pending = []

    def close(self) -> None:
        self._uploads.shutdown(wait=True)


__all__ = ["BlobSourceResolver", "DEFAULT_MAX_LAYER_BYTES", "LayerPacker", "group_for_layers"]
