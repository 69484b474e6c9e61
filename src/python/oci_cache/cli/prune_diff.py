"""What a prune dropped: the difference between a cache image before and after.

Computed from the two entry indexes (not from the pruner's own account), so it is
what the registry now holds. If another exporter merged entries in between, the
counts are net of those additions (`added_*` says how many).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from oci_cache.cache_image.loaded_image import LoadedImage
from oci_cache.cli.progress import human_bytes, plural
from oci_cache.image_format.manifest import format_timestamp

JSON_SCHEMA = "pants-oci-cache/prune/v1"


@dataclass(frozen=True)
class PruneDiff:
    before_digest: str
    after_digest: str
    actions_before: int
    actions_after: int
    actions_dropped: int
    actions_added: int
    blobs_before: int
    blobs_after: int
    blobs_dropped: int
    blob_bytes_dropped: int
    blobs_added: int
    stored_bytes_before: int
    stored_bytes_after: int
    layers_before: int
    layers_after: int
    dropped_last_used_newest: Optional[int]
    """The most recent last-used time among the dropped actions (Unix seconds)."""

    @property
    def changed(self) -> bool:
        return self.before_digest != self.after_digest


def diff_images(before: LoadedImage, after: LoadedImage) -> PruneDiff:
    after_actions = {entry.action.hash for entry in after.index.iter_actions()}
    after_blobs = {entry.digest.hash for entry in after.index.iter_blobs()}
    actions_dropped = 0
    newest: Optional[int] = None
    before_actions = set()
    for entry in before.index.iter_actions():
        before_actions.add(entry.action.hash)
        if entry.action.hash not in after_actions:
            actions_dropped += 1
            if entry.last_used > 0 and (newest is None or entry.last_used > newest):
                newest = entry.last_used
    blobs_dropped = 0
    blob_bytes_dropped = 0
    before_blobs = set()
    for blob in before.index.iter_blobs():
        before_blobs.add(blob.digest.hash)
        if blob.digest.hash not in after_blobs:
            blobs_dropped += 1
            blob_bytes_dropped += blob.digest.size_bytes
    return PruneDiff(
        before_digest=before.digest,
        after_digest=after.digest,
        actions_before=before.index.action_count,
        actions_after=after.index.action_count,
        actions_dropped=actions_dropped,
        actions_added=len(after_actions - before_actions),
        blobs_before=before.index.blob_count,
        blobs_after=after.index.blob_count,
        blobs_dropped=blobs_dropped,
        blob_bytes_dropped=blob_bytes_dropped,
        blobs_added=len(after_blobs - before_blobs),
        stored_bytes_before=before.total_bytes,
        stored_bytes_after=after.total_bytes,
        layers_before=len(before.layers),
        layers_after=len(after.layers),
        dropped_last_used_newest=newest,
    )


def diff_lines(diff: PruneDiff, location: str) -> List[str]:
    if not diff.changed:
        return [f"{location}: nothing to drop; the image is already within the limits ({diff.before_digest})"]
    lines = [
        f"{location}: dropped {diff.actions_dropped:,} of {plural(diff.actions_before, 'action')} and "
        f"{diff.blobs_dropped:,} of {plural(diff.blobs_before, 'blob')} ({human_bytes(diff.blob_bytes_dropped)})",
        f"  image {human_bytes(diff.stored_bytes_before)} -> {human_bytes(diff.stored_bytes_after)}, "
        f"{diff.layers_before} -> {plural(diff.layers_after, 'data layer')}",
        f"  tag moved {diff.before_digest} -> {diff.after_digest}",
    ]
    if diff.dropped_last_used_newest is not None:
        lines.insert(
            1, f"  dropped actions were last used at or before {format_timestamp(diff.dropped_last_used_newest)}"
        )
    if diff.actions_added or diff.blobs_added:
        lines.append(
            f"  meanwhile another exporter added {plural(diff.actions_added, 'action')} and "
            f"{plural(diff.blobs_added, 'blob')} (counts above are net)"
        )
    return lines


def diff_json(diff: PruneDiff, location: str, entry: str) -> Dict[str, Any]:
    newest = diff.dropped_last_used_newest
    return {
        "schema": JSON_SCHEMA,
        "location": location,
        "entry": entry,
        "changed": diff.changed,
        "manifest_before": diff.before_digest,
        "manifest_after": diff.after_digest,
        "actions": {
            "before": diff.actions_before,
            "after": diff.actions_after,
            "dropped": diff.actions_dropped,
            "added": diff.actions_added,
        },
        "blobs": {
            "before": diff.blobs_before,
            "after": diff.blobs_after,
            "dropped": diff.blobs_dropped,
            "dropped_bytes": diff.blob_bytes_dropped,
            "added": diff.blobs_added,
        },
        "stored_bytes": {"before": diff.stored_bytes_before, "after": diff.stored_bytes_after},
        "layers": {"before": diff.layers_before, "after": diff.layers_after},
        "dropped_last_used_newest": None if newest is None else format_timestamp(newest),
    }


__all__: List[str] = ["JSON_SCHEMA", "PruneDiff", "diff_images", "diff_json", "diff_lines"]
