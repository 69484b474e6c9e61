"""An ActionCache decorator: the local tier first, then the imported cache images —
with honest hits.

`get_action_result` returns a result only when every blob it references can be
served: each one is in the local tier, or is fetched from an imported image and
verified *now* (concurrently). Pants and Bazel read every output blob right after
a hit anyway, so this costs no extra bytes — and a corrupt or missing blob in a
registry becomes a miss (the client runs the action) instead of a failed build.
This applies to local results too: a result the client wrote may name blobs that
FindMissingBlobs reported present because an imported image holds them.

A result found only in an imported image is, once servable, written to the local
tier (durable, recorded in the local journal), so it is served locally from then
on and carried forward into the next export. Every hit is recorded in the
UsageLog, which the exporter turns into `last_used` times.

Network I/O happens only after `check_may_block()` (see oci_cache.nonblocking).
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Iterator, Optional, Tuple

from oci_cache.store.action_references import (
    UnreadableResultError,
    parse_result_references,
    parse_tree_references,
)
from oci_cache.cache_image.imported_images import ImportSet
from oci_cache.cache_image.importing_blob_store import ImportingBlobStore
from oci_cache.cache_image.usage_log import UsageLog
from oci_cache.digests import Digest
from oci_cache.errors import CacheError
from oci_cache.nonblocking import check_may_block
from oci_cache.store.interfaces import ActionCache

logger = logging.getLogger(__name__)


class ImportingActionCache:
    def __init__(
        self,
        local: ActionCache,
        blobs: ImportingBlobStore,
        imports: ImportSet,
        usage: Optional[UsageLog] = None,
        *,
        max_cached_trees: int = 4096,
    ) -> None:
        self.local = local
        self.blobs = blobs
        self.imports = imports
        self.usage = usage if usage is not None else UsageLog()
        self._trees: "collections.OrderedDict[Tuple[Digest, bool], Tuple[Digest, ...]]" = collections.OrderedDict()
        self._trees_lock = threading.Lock()
        self._max_cached_trees = max_cached_trees

    def get_action_result(self, action_digest: Digest) -> Optional[bytes]:
        serialized = self.local.get_action_result(action_digest)
        imported = False
        if serialized is None:
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
            imported = True
        if not self._servable(action_digest, serialized):
            return None
        if imported:
            self.local.put_action_result(action_digest, serialized)
        self.usage.action_used(action_digest)
        return serialized

    def put_action_result(self, action_digest: Digest, serialized_result: bytes) -> None:
        self.local.put_action_result(action_digest, serialized_result)

    def iter_action_digests(self) -> Iterator[Digest]:
        return self.local.iter_action_digests()

    # ---- honest hits ----------------------------------------------------------------

    def _servable(self, action_digest: Digest, serialized: bytes) -> bool:
        try:
            references = parse_result_references(serialized)
            absent = self.blobs.ensure_local(references.direct)
            if absent:
                return self._miss(action_digest, f"blob {absent[0]} cannot be served")
            for tree, directories_in_cas in references.trees:
                if tree.size_bytes == 0:
                    continue
                absent = self.blobs.ensure_local(self._tree_references(tree, directories_in_cas))
                if absent:
                    return self._miss(action_digest, f"blob {absent[0]} in tree {tree} cannot be served")
        except UnreadableResultError as error:
            return self._miss(action_digest, str(error))
        except CacheError as error:
            return self._miss(action_digest, f"cannot check its outputs: {error}")
        return True

    def _tree_references(self, tree: Digest, directories_in_cas: bool) -> Tuple[Digest, ...]:
        key = (tree, directories_in_cas)
        with self._trees_lock:
            cached = self._trees.get(key)
            if cached is not None:
                self._trees.move_to_end(key)
                return cached
        found = parse_tree_references(self.blobs.local.read_bytes(tree), directories_in_cas)
        with self._trees_lock:
            self._trees[key] = found
            while len(self._trees) > self._max_cached_trees:
                self._trees.popitem(last=False)
        return found

    @staticmethod
    def _miss(action_digest: Digest, reason: str) -> bool:
        logger.debug("action %s: not a hit: %s", action_digest, reason)
        return False


__all__ = ["ImportingActionCache"]
