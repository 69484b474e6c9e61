"""The blobs of one imported image that are not served, and when to look again.

A blob whose bytes failed verification on every read, or whose layer is missing,
is set aside: lookups treat it as absent, so the next image holding it is tried or
it is a miss. Wire damage or a layer not yet replicated can look the same as a bad
copy, so a set-aside blob is offered again after a back-off that doubles on each
failure (RECHECK_FIRST_SECONDS, up to RECHECK_MAX_SECONDS): an unlucky burst costs
misses for minutes, not for the daemon's lifetime, and a copy that is really bad
costs CONTENT_ATTEMPTS reads an hour at most. A blob whose index entry itself is
impossible (pointing outside its layer, larger than the local store) is set aside
for good: reading again cannot change that.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Dict, Optional, Tuple

from oci_cache.digests import Digest

RECHECK_FIRST_SECONDS = 300.0
RECHECK_MAX_SECONDS = 3600.0


class BadBlobs:
    """Digests set aside, each with the time it may be tried again (None: never)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._set_aside: Dict[Digest, Tuple[Optional[float], float]] = {}  # digest -> (retry at, last back-off)

    def is_set_aside(self, digest: Digest) -> bool:
        """On every lookup of the image: a lock-free read (one dict get; the writers
        replace whole records under the lock)."""
        record = self._set_aside.get(digest)
        if record is None:
            return False
        retry_at = record[0]
        return retry_at is None or self._clock() < retry_at

    def set_aside(self, digest: Digest) -> float:
        """Sets the blob aside until a back-off passes; returns that back-off in seconds."""
        with self._lock:
            record = self._set_aside.get(digest)
            if record is not None and record[0] is None:
                return float("inf")
            backoff = RECHECK_FIRST_SECONDS if record is None else min(record[1] * 2, RECHECK_MAX_SECONDS)
            self._set_aside[digest] = (self._clock() + backoff, backoff)
            return backoff

    def set_aside_for_good(self, digest: Digest) -> None:
        with self._lock:
            self._set_aside[digest] = (None, float("inf"))

    def was_set_aside(self, digest: Digest) -> bool:
        """True if the blob was ever set aside (a later failure is a re-check failing)."""
        with self._lock:
            return digest in self._set_aside

    def forget(self, digest: Digest) -> None:
        """The blob was read and verified after all."""
        with self._lock:
            self._set_aside.pop(digest, None)


__all__ = ["BadBlobs", "RECHECK_FIRST_SECONDS", "RECHECK_MAX_SECONDS"]
