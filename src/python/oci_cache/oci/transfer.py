"""Helpers that move many blobs: concurrent pushes and target-to-target copies.

Targets are thread-safe, so any ThreadPoolExecutor works; these wrap the common
cases. A registry client keeps up to `max_connections` (default 16) pooled
connections per host, so keep `max_workers` at or below it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Sequence, Tuple

from oci_cache.oci.content import BlobSource, DigestLike
from oci_cache.oci.target import ImageTarget, PushOutcome

DEFAULT_WORKERS = 8


def push_blobs_concurrently(
    target: ImageTarget,
    blobs: Sequence[Tuple[DigestLike, BlobSource]],
    max_workers: int = DEFAULT_WORKERS,
    mount_from: Optional[str] = None,
) -> List[PushOutcome]:
    """Pushes (digest, source) pairs with up to `max_workers` threads; outcomes in input order.
    The first failure is raised once every started push has finished."""
    if not blobs:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(blobs))), thread_name_prefix="oci-push") as pool:
        futures = [pool.submit(target.push_blob, digest, source, mount_from) for digest, source in blobs]
        return [future.result() for future in futures]


def copy_blob(source: ImageTarget, destination: ImageTarget, digest: DigestLike) -> PushOutcome:
    """Copies one blob between targets (any homes), verified on both sides.

    Present at the destination → nothing is read. The bytes are held in memory;
    for very large blobs stream through a temporary file instead.
    """
    if destination.blob_exists(digest) is not None:
        return PushOutcome.PRESENT
    data = source.read_blob(digest)  # verified
    return destination.push_blob(digest, data)
