"""The order blobs are written into a new layer: the order a build will want them.

A fresh machine reads an image's layers front to back (the hot-set prefetch streams
them in offset order), so a layer that lists its blobs in the order the next build
asks for them is served as it arrives, instead of after the whole transfer. The
exporter knows that order from the run it exports: its actions come in the order
their results were written (the journal) and then used (the usage log), and Pants
asks for an action's ActionResult before it reads that action's outputs. So a layer
holds, in this order:

1. the ActionResult blobs, in the order of their actions (they are small, and every
   lookup needs one first);
2. then each action's other blobs, in the order of the actions that need them;
3. then whatever else is pending (Commands, Actions, records of `mode=max`), by digest.

The order is a pure function of the export's inputs, so the same export writes the
same layer. Nothing reads it as a rule: any order is a valid image.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Sequence

from oci_cache.digests import Digest
from oci_cache.cache_image.exporting.export_collection import CollectedAction


def in_use_order(pending: Iterable[Digest], actions: Sequence[CollectedAction]) -> List[Digest]:
    """`pending` reordered as the module docstring says (each digest once)."""
    wanted: Dict[Digest, None] = dict.fromkeys(pending)
    ordered: Dict[Digest, None] = {}
    for action in actions:
        if action.result in wanted:
            ordered.setdefault(action.result, None)
    for action in actions:
        for digest in action.needed:
            if digest in wanted:
                ordered.setdefault(digest, None)
    ordered.update((digest, None) for digest in sorted(d for d in wanted if d not in ordered))
    return list(ordered)


__all__ = ["in_use_order"]
