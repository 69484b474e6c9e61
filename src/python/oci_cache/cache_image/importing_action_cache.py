"""An ActionCache decorator: the local tier first, then the imported cache images
(read-through), and the write-back of imported hits.

`get_action_result` returns the local result, or else the result an imported image
holds for the action (its bytes are fetched and verified). It does not decide whether
that is a hit: the CompletenessCheckingActionCache stacked over it (see
serving_stack.honest_action_cache) does, and calls `hit_served` for each honest hit. There an
imported result is written to the local tier (durable, recorded in the local journal),
so it is served locally from then on and carried forward into the next export; and
every hit is recorded in the UsageLog, which the exporter turns into `last_used` times.

Network I/O happens only after `check_may_block()` (see oci_cache.nonblocking).
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Iterator, Optional

from oci_cache.cache_image.imported_images import ImportSet
from oci_cache.cache_image.importing_blob_store import ImportingBlobStore
from oci_cache.cache_image.usage_log import UsageLog
from oci_cache.digests import Digest
from oci_cache.errors import CacheError
from oci_cache.nonblocking import check_may_block
from oci_cache.store.interfaces import ActionCache

logger = logging.getLogger(__name__)

MAX_UNCONFIRMED = 4096
"""Imported results read but not (yet) confirmed as hits, kept for their write-back."""


class ImportingActionCache:
    def __init__(
        self,
        local: ActionCache,
        blobs: ImportingBlobStore,
        imports: ImportSet,
        usage: Optional[UsageLog] = None,
    ) -> None:
        self.local = local
        self.blobs = blobs
        self.imports = imports
        self.usage = usage if usage is not None else UsageLog()
        self._unconfirmed: "collections.OrderedDict[Digest, bytes]" = collections.OrderedDict()
        self._unconfirmed_lock = threading.Lock()

    def get_action_result(self, action_digest: Digest) -> Optional[bytes]:
        serialized = self.local.get_action_result(action_digest)
        if serialized is not None:
            return serialized
        self.blobs.await_import()
        located = self.imports.locate_action(action_digest)
        if located is None:
            return None
        _, entry = located
        check_may_block("fetching an action result from a cache image")
        try:
            serialized = self.blobs.read_bytes(entry.result)
        except CacheError as error:
            logger.info("action %s: imported result not usable, a miss: %s", action_digest, error)
            return None
        with self._unconfirmed_lock:
            self._unconfirmed[action_digest] = serialized
            while len(self._unconfirmed) > MAX_UNCONFIRMED:
                self._unconfirmed.popitem(last=False)
        return serialized

    def hit_served(self, action_digest: Digest, serialized: bytes) -> None:
        """Called by the completeness check for each honest hit: writes an imported
        result back to the local tier and records the use."""
        with self._unconfirmed_lock:
            imported = self._unconfirmed.pop(action_digest, None)
        if imported is not None and imported == serialized:
            self.local.put_action_result(action_digest, serialized)
        self.usage.action_used(action_digest)

    def put_action_result(self, action_digest: Digest, serialized_result: bytes) -> None:
        self.local.put_action_result(action_digest, serialized_result)

    def iter_action_digests(self) -> Iterator[Digest]:
        return self.local.iter_action_digests()


__all__ = ["ImportingActionCache"]
