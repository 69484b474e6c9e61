"""Remembered blob redirects: one round trip less per read of a layer already read once.

GHCR, ECR and Docker Hub answer every blob GET with a redirect to their storage (a
signed S3 or CDN URL, valid for some minutes). A cache daemon reads many ranges of the
same few layers, and each read would pay the registry's round trip before the storage's.
`RedirectMemory` keeps the storage URL a blob GET was redirected to, for `ttl` seconds
(well inside the validity of the signed URLs seen in practice), so later reads of the
same blob go to the storage directly. The caller forgets a URL whose storage answers
anything but 200/206 (expired, revoked, moved) and asks the registry again.

Only GETs of `/v2/<name>/blobs/<digest>` on the registry's own origin are remembered,
and only redirects to another origin (where no Authorization is ever sent); the
registry's answer for the blob is content-addressed, so the target stays valid for the
same digest.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from typing import Callable, Optional, Tuple
from urllib.parse import urlsplit

DEFAULT_TTL_SECONDS = 60.0
MAX_REMEMBERED = 1024
_BLOB_PATH = re.compile(r"^/v2/.+/blobs/sha256:[0-9a-f]{64}$")


class RedirectMemory:
    def __init__(
        self, ttl: float = DEFAULT_TTL_SECONDS, capacity: int = MAX_REMEMBERED, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl
        self._capacity = capacity
        self._clock = clock
        self._lock = threading.Lock()
        self._targets: "OrderedDict[str, Tuple[str, float]]" = OrderedDict()

    @staticmethod
    def is_blob_url(url: str) -> bool:
        return bool(_BLOB_PATH.match(urlsplit(url).path)) and not urlsplit(url).query

    def remember(self, blob_url: str, target: str) -> None:
        """`blob_url` (a registry blob URL) was redirected to `target` (absolute URL)."""
        if self._ttl <= 0 or not self.is_blob_url(blob_url):
            return
        a, b = urlsplit(blob_url), urlsplit(target)
        if (a.scheme, a.netloc) == (b.scheme, b.netloc):
            return  # a redirect within the registry: nothing to save, and it may carry auth
        with self._lock:
            self._targets[blob_url] = (target, self._clock() + self._ttl)
            self._targets.move_to_end(blob_url)
            while len(self._targets) > self._capacity:
                self._targets.popitem(last=False)

    def lookup(self, blob_url: str) -> Optional[str]:
        """The remembered target of `blob_url`, or None (never remembered, or expired)."""
        with self._lock:
            found = self._targets.get(blob_url)
            if found is None:
                return None
            target, expires = found
            if self._clock() >= expires:
                del self._targets[blob_url]
                return None
            return target

    def forget(self, blob_url: str) -> None:
        with self._lock:
            self._targets.pop(blob_url, None)


__all__ = ["DEFAULT_TTL_SECONDS", "RedirectMemory"]
