"""What an export to one cache-to entry has to add: the collection step.

    collected = collect_exportable(store, entry, marker=..., usage=..., fetcher=..., now=...)

The actions are those acknowledged since `marker` (the local store's durable
journal; None = since it began; a store without a journal is scanned whole) plus
the hits in `usage`. Each result is parsed for every blob a hit needs — its own
bytes (stored in the image as a blob), stdout/stderr, output files, output trees
and the files in them (a tree not held locally is fetched through `fetcher`; an
action whose tree cannot be read is skipped). `mode=min` skips non-zero exit
codes. With `mode=max`, every local blob is listed too, with its last-use time —
read before the export touches anything, since reading marks entries used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Set, Tuple

from oci_cache.cache_entries import MODE_MAX, MODE_MIN, CacheTo
from oci_cache.store.action_references import TreeCache, UnreadableResultError, parse_result_references
from oci_cache.cache_image.importing_blob_store import ImportingBlobStore
from oci_cache.cache_image.usage_log import UsageLog
from oci_cache.digests import EMPTY_DIGEST, Digest
from oci_cache.errors import CacheError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CollectedAction:
    action: Digest
    result: Digest
    exit_code: int
    used_at: int
    needed: Tuple[Digest, ...]
    """Every non-empty blob a hit needs, the ActionResult blob first."""


@dataclass
class Collected:
    actions: List[CollectedAction]
    results: Dict[Digest, bytes]
    """Bytes of blobs that are not in the local store's CAS: ActionResults (they live in
    the action cache) and, once the merge made them, Command records (secret_commands.py)."""
    end_marker: Optional[str]
    """The journal marker to store once the export succeeded (None: no journal)."""
    blob_times: Dict[Digest, int]
    """mode=max: every local blob and when it was last used."""


def collect_exportable(
    store: Optional[Any],
    entry: CacheTo,
    *,
    marker: Optional[str],
    usage: Optional[UsageLog],
    fetcher: Optional[ImportingBlobStore],
    now: int,
) -> Collected:
    """`store` is the local tier (a LocalStore, or any BlobStore + ActionCache)."""
    if store is None:
        return Collected([], {}, None, {})
    end_marker: Optional[str] = None
    digests: Dict[Digest, None] = {}
    if hasattr(store, "iter_action_writes_since"):
        end_marker = store.journal_marker()
        try:
            writes = list(store.iter_action_writes_since(marker))
        except ValueError:
            logger.warning(
                "export to %s: unreadable journal marker %r; exporting from the start", entry.to_text(), marker
            )
            writes = list(store.iter_action_writes_since(None))
        digests.update((write.action_digest, None) for write in writes)
    else:
        digests.update((digest, None) for digest in store.iter_action_digests())
    used = usage.actions() if usage is not None else {}
    for action in used:
        digests.setdefault(action, None)
    blob_times: Dict[Digest, int] = {}
    if entry.mode == MODE_MAX:
        for digest in store.iter_blob_digests():
            used_at = store.last_used(digest)
            if used_at is not None:
                blob_times[digest] = int(used_at)
    action_times = {action: store.last_used(action, action=True) for action in digests}
    actions: List[CollectedAction] = []
    results: Dict[Digest, bytes] = {}
    trees = _TreeReader(store, fetcher)
    for action in digests:
        serialized = store.get_action_result(action)
        if serialized is None:
            continue  # evicted since it was written
        try:
            references = parse_result_references(serialized)
        except UnreadableResultError as error:
            logger.warning("action %s has an unreadable result, not exported: %s", action, error)
            continue
        if entry.mode == MODE_MIN and references.exit_code != 0:
            continue
        result = Digest.of(serialized)
        needed: List[Digest] = [result] if result != EMPTY_DIGEST else []
        needed.extend(references.direct)
        files = [trees.files(tree, in_cas) for tree, in_cas in references.trees if tree.size_bytes]
        if any(found is None for found in files):
            logger.info("action %s: an output tree is not available; not exported", action)
            continue
        for found in files:
            needed.extend(found or ())
        used_at = used.get(action) or action_times.get(action) or now
        actions.append(
            CollectedAction(action, result, references.exit_code, int(used_at), tuple(dict.fromkeys(needed)))
        )
        results[result] = serialized
    return Collected(actions, results, end_marker, blob_times)


class _TreeReader:
    """The files of the trees an export needs, read (fetched when only in an imported
    image) and parsed once per export, in the one bounded TreeCache."""

    def __init__(self, store: Any, fetcher: Optional[ImportingBlobStore]) -> None:
        self._store = store
        self._fetcher = fetcher
        self._trees = TreeCache()
        self._unavailable: Set[Digest] = set()

    def files(self, tree: Digest, directories_in_cas: bool) -> Optional[Tuple[Digest, ...]]:
        """What a hit needs of `tree`; None when the tree cannot be read."""
        if tree in self._unavailable:
            return None
        try:
            return self._trees.references(tree, self._read).needed(directories_in_cas)
        except CacheError:  # UnreadableResultError included
            self._unavailable.add(tree)
            return None

    def _read(self, tree: Digest) -> bytes:
        if not self._store.contains(tree) and self._fetcher is not None and self._fetcher.ensure_local([tree]):
            raise CacheError(f"the tree {tree} cannot be fetched")
        return self._store.read_bytes(tree)


__all__ = ["Collected", "CollectedAction", "collect_exportable"]
