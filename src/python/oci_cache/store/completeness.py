"""An ActionCache decorator that only reports hits whose outputs can all be served: the
one place that decides a hit is honest.

A client that gets an ActionResult fetches every blob it names; if one of them
is gone (evicted, never uploaded, missing from an imported image) the client
fails or falls back late. So `get_action_result` parses the result
(store/action_references.py) and returns None (a miss) unless the blob store can
serve every blob it references *now* (`ServableBlobStore.find_unservable`: for the
local store, present; for the importing blob store, present locally or fetched from
an imported image and verified):

- stdout_digest and stderr_digest,
- every output file's digest,
- every output directory's tree_digest, and every file of every Directory in
  that Tree (root and children; the Tree carries its directories inline, so
  they need not be in the CAS) — unless the output directory also sets
  root_directory_digest, which tells the client it may fetch the Directory
  messages from the CAS: then that digest and every nested directory's digest
  must be servable too.

Digests of size 0 are always present. An unparseable result or tree, or an
invalid digest in either, is a miss. Parsed trees are kept in one bounded
TreeCache, so repeated hits do not re-read or re-parse them. Each honest hit is
passed to `on_hit` (the importing action cache writes an imported result back to
the local store there, and records the use for the next export).
"""

from __future__ import annotations

import logging
from typing import Callable, Iterator, Optional, Sequence

from oci_cache.digests import Digest
from oci_cache.errors import CacheError
from oci_cache.store.action_references import TreeCache, UnreadableResultError, parse_result_references
from oci_cache.store.interfaces import ActionCache, ServableBlobStore

logger = logging.getLogger(__name__)

HitListener = Callable[[Digest, bytes], None]


class _Incomplete(Exception):
    """Why a result cannot be served (internal; becomes a miss)."""


class CompletenessCheckingActionCache:
    """Wraps an ActionCache; see the module docstring."""

    def __init__(
        self,
        inner: ActionCache,
        blobs: ServableBlobStore,
        *,
        max_cached_trees: int = 4096,
        max_cached_digests: int = 200_000,
        on_hit: Optional[HitListener] = None,
    ) -> None:
        self._inner = inner
        self._blobs = blobs
        self._trees = TreeCache(max_trees=max_cached_trees, max_digests=max_cached_digests)
        self._on_hit = on_hit

    def get_action_result(self, action_digest: Digest) -> Optional[bytes]:
        serialized = self._inner.get_action_result(action_digest)
        if serialized is None:
            return None
        try:
            self._check_complete(serialized)
        except _Incomplete as reason:
            logger.debug("action %s: hit downgraded to a miss: %s", action_digest, reason)
            return None
        if self._on_hit is not None:
            self._on_hit(action_digest, serialized)
        return serialized

    def put_action_result(self, action_digest: Digest, serialized_result: bytes) -> None:
        self._inner.put_action_result(action_digest, serialized_result)

    def iter_action_digests(self) -> Iterator[Digest]:
        return self._inner.iter_action_digests()

    # ---- checking ----------------------------------------------------------------

    def _check_complete(self, serialized: bytes) -> None:
        try:
            references = parse_result_references(serialized)
            self._require_servable(references.direct, "")
            for tree, directories_in_cas in references.trees:
                if tree.size_bytes == 0:
                    continue
                try:
                    found = self._trees.references(tree, self._blobs.read_bytes)
                except CacheError as error:
                    if isinstance(error, UnreadableResultError):
                        raise
                    raise _Incomplete(f"cannot read the tree {tree}: {error}") from None
                self._require_servable(found.needed(directories_in_cas), f" (in the tree {tree})")
        except UnreadableResultError as error:
            raise _Incomplete(str(error)) from None

    def _require_servable(self, digests: Sequence[Digest], context: str) -> None:
        if not digests:
            return
        try:
            unservable = self._blobs.find_unservable(digests)
        except CacheError as error:
            raise _Incomplete(f"cannot check blobs{context}: {error}") from None
        if unservable:
            more = f" and {len(unservable) - 1} more" if len(unservable) > 1 else ""
            raise _Incomplete(f"blob {unservable[0]}{context} cannot be served{more}")


__all__ = ["CompletenessCheckingActionCache", "HitListener"]
