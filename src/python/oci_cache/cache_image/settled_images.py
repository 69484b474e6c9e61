"""Answering "nothing to publish" without rebuilding the plan of a large image.

The full export path turns the whole image at the ref into a plan (every entry a
Python object) before it can tell that nothing changed: about 6 s for 100,000
actions, paid at the end of every Pants run. An exporter that has just concluded,
through that full path, that the image at the ref needs nothing remembers it as
*settled* (its manifest digest and its oldest last_used). The next export of the same
entry, while the ref still names that manifest, only checks what it collected against
the image's index (bisects, no plan):

- the format is the entry's (mode, compression, media types);
- keep-duration would drop nothing yet (the oldest last_used is recent enough);
- every collected action is in the image with the same result, exit code and
  min-eligibility, and its last_used is not stale (unchanged_export.py's granularity);
- every blob those actions need, and with mode=max every local blob, is in the image,
  min-eligible where a min-eligible action needs it, and not stale.

Then the full path would find the same (it is a fixed point: it just left this very
image unchanged), so the export is "unchanged" at the cost of a HEAD and an index
read. Anything else, or any doubt, takes the full path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from oci_cache.cache_entries import CacheTo
from oci_cache.cache_image.export_collection import Collected
from oci_cache.cache_image.image_plan import ImagePlan
from oci_cache.cache_image.loaded_image import LoadedImage
from oci_cache.cache_image.secret_commands import find_blob_or_record
from oci_cache.cache_image.unchanged_export import last_used_granularity, same_format
from oci_cache.errors import CacheError
from oci_cache.image_format.entry_index import EntryIndex

SettledKey = Tuple[str, Optional[float], Optional[int]]
"""(entry text, keep-duration, keep-bytes): what an export's outcome depends on."""


@dataclass(frozen=True)
class SettledImage:
    digest: str
    oldest_last_used: int


def settled_from_plan(digest: str, plan: ImagePlan) -> SettledImage:
    times = [action.last_used for action in plan.actions.values()]
    times.extend(record.last_used for record in plan.blobs.values())
    return SettledImage(digest, min(times) if times else 0)


def nothing_to_publish(
    settled: SettledImage,
    base: LoadedImage,
    collected: Collected,
    entry: CacheTo,
    keep_duration: Optional[float],
    now: int,
) -> bool:
    """True when the full export path would leave `base` (the settled image) as it is."""
    if base.digest != settled.digest or not same_format(base, entry):
        return False
    if keep_duration is not None and settled.oldest_last_used < now - keep_duration:
        return False  # pruning is due
    try:
        return _all_in_index_and_fresh(base.index, collected, last_used_granularity(keep_duration))
    except CacheError:  # an entry the full path would refuse too: let it say so
        return False


def _all_in_index_and_fresh(index: EntryIndex, collected: Collected, granularity: float) -> bool:
    for item in collected.actions:
        min_eligible = item.exit_code == 0
        stored = index.find_action(item.action)
        if stored is None or (stored.result, stored.exit_code, stored.min_eligible) != (
            item.result,
            item.exit_code,
            min_eligible,
        ):
            return False
        if _stale(stored.last_used or stored.created, item.used_at, granularity):
            return False
        for digest in item.needed:
            blob = index.find_blob(digest)
            if blob is None or (min_eligible and not blob.min_eligible):
                return False
            if _stale(blob.last_used, item.used_at, granularity):
                return False
    for digest, used_at in collected.blob_times.items():
        blob = find_blob_or_record(index, digest)  # a Command holding a secret is there as its record
        if blob is None or _stale(blob.last_used, used_at, granularity):
            return False
    return True


def _stale(stored: int, used_at: int, granularity: float) -> bool:
    return not stored or used_at - stored >= granularity


__all__ = ["SettledImage", "SettledKey", "nothing_to_publish", "settled_from_plan"]
