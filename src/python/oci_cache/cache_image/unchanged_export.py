"""Whether an export would write the image that is already at the ref.

An end-of-run export whose run wrote nothing new still "uses" imported entries,
which raises their last_used times; publishing a new manifest for that alone costs
an index and config upload, a manifest PUT and the confirm delay on every Pants
run. So last_used times are refreshed only when they are
stale by more than a granularity (an hour, or a quarter of keep-duration when that
is shorter, so that keep-duration never prunes an entry in use): when the plan
differs from the base image by fresher-but-not-stale times alone, the export keeps
the image at the ref as it is.
"""

from __future__ import annotations

from typing import Optional

from oci_cache.cache_entries import CacheTo
from oci_cache.cache_image.image_plan import ImagePlan
from oci_cache.cache_image.loaded_image import LoadedImage

LAST_USED_REFRESH_SECONDS = 3600


def last_used_granularity(keep_duration: Optional[float]) -> float:
    """How stale a last_used time may get before an export refreshes it."""
    if keep_duration is None:
        return float(LAST_USED_REFRESH_SECONDS)
    return min(float(LAST_USED_REFRESH_SECONDS), keep_duration / 4.0)


def plan_matches_image(plan: ImagePlan, base: LoadedImage, entry: CacheTo, granularity: float) -> bool:
    """True when publishing `plan` would only refresh last_used times of `base` by
    less than `granularity` seconds (same entries, layers, flags and format)."""
    if not same_format(base, entry):
        return False
    layer_digests = [descriptor.digest for descriptor in base.layers]
    if plan.layer_order != layer_digests or any(record.pending for record in plan.blobs.values()):
        return False
    if len(plan.actions) != base.index.action_count or len(plan.blobs) != base.index.blob_count:
        return False
    for action in base.index.iter_actions():
        planned = plan.actions.get(action.action)
        if planned is None or (planned.result, planned.exit_code, planned.min_eligible) != (
            action.result,
            action.exit_code,
            action.min_eligible,
        ):
            return False
        if _stale(action.last_used or action.created, planned.last_used, granularity):
            return False
    for blob in base.index.iter_blobs():
        record = plan.blobs.get(blob.digest)
        if record is None:
            return False
        if (record.layer, record.offset, record.length, record.tar_offset, record.min_eligible) != (
            layer_digests[blob.layer],
            blob.compressed_offset,
            blob.compressed_length,
            blob.tar_offset,
            blob.min_eligible,
        ):
            return False
        if _stale(blob.last_used, record.last_used, granularity):
            return False
    return True


def _stale(stored: int, planned: int, granularity: float) -> bool:
    return not stored or planned - stored >= granularity


def same_format(base: LoadedImage, entry: CacheTo) -> bool:
    """Whether `base` was written with the entry's mode, compression and media types."""
    return (
        base.config.mode == entry.mode
        and base.config.compression == entry.compression
        and base.parsed.oci_mediatypes == entry.oci_mediatypes
        and base.parsed.image_manifest == entry.image_manifest
    )


__all__ = ["LAST_USED_REFRESH_SECONDS", "last_used_granularity", "plan_matches_image", "same_format"]
