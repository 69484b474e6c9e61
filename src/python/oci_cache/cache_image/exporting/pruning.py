"""keep-duration and keep-bytes: which entries an export drops (on an ImagePlan).

Times. Every entry has a `last_used` (Unix seconds). The exporter keeps the
invariant that a blob referenced by an action it knows about was used at least
as recently as that action, so dropping by time never leaves a kept action
without its blobs: an action is dropped no later than its blobs.

- keep-duration D: drop every action and blob not used within D of `now`.
- keep-bytes B: drop least recently used entries (at equal times actions first)
  until the blobs left take at most B bytes (their compressed bytes in the
  image, or their size when not yet packed). An action's ActionResult blob goes
  with it unless another kept action shares it.

What is left may still sit in layers with dead bytes; the exporter rewrites such
layers (compaction.py) to bring the image itself under keep-bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Set, Tuple

from oci_cache.cache_image.exporting.image_plan import ImagePlan
from oci_cache.digests import Digest


@dataclass
class PruneOutcome:
    actions_dropped: int = 0
    blobs_dropped: int = 0
    bytes_dropped: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.actions_dropped or self.blobs_dropped)

    def add(self, other: "PruneOutcome") -> None:
        self.actions_dropped += other.actions_dropped
        self.blobs_dropped += other.blobs_dropped
        self.bytes_dropped += other.bytes_dropped


def prune_by_duration(plan: ImagePlan, keep_seconds: float, now: float) -> PruneOutcome:
    cutoff = now - keep_seconds
    old_actions = [digest for digest, action in plan.actions.items() if action.last_used < cutoff]
    old_blobs = [digest for digest, record in plan.blobs.items() if record.last_used < cutoff]
    outcome = PruneOutcome(len(old_actions), len(old_blobs), sum(plan.blobs[d].length for d in old_blobs))
    plan.drop_actions(old_actions)
    plan.drop_blobs(old_blobs)
    return outcome


def prune_by_bytes(plan: ImagePlan, keep_bytes: int) -> PruneOutcome:
    total = sum(record.length for record in plan.blobs.values())
    outcome = PruneOutcome()
    if total <= keep_bytes:
        return outcome
    result_users: Dict[Digest, int] = {}
    for action in plan.actions.values():
        result_users[action.result] = result_users.get(action.result, 0) + 1
    # (time, 0 = action / 1 = blob, digest): oldest first, actions before blobs at a tie.
    order: List[Tuple[int, int, Digest]] = [(a.last_used, 0, d) for d, a in plan.actions.items()]
    order.extend((r.last_used, 1, d) for d, r in plan.blobs.items())
    order.sort(key=lambda item: (item[0], item[1], item[2].hash))
    dropped_actions: List[Digest] = []
    dropped_blobs: List[Digest] = []
    gone: Set[Digest] = set()
    for _, kind, digest in order:
        if total <= keep_bytes:
            break
        if kind == 0:
            action = plan.actions[digest]
            dropped_actions.append(digest)
            result_users[action.result] -= 1
            if result_users[action.result] == 0:
                freed = _drop_blob(plan, action.result, gone, dropped_blobs)
                total -= freed
                outcome.bytes_dropped += freed
        else:
            freed = _drop_blob(plan, digest, gone, dropped_blobs)
            total -= freed
            outcome.bytes_dropped += freed
    outcome.actions_dropped = len(dropped_actions)
    outcome.blobs_dropped = len(dropped_blobs)
    plan.drop_actions(dropped_actions)
    plan.drop_blobs(dropped_blobs)
    return outcome


def _drop_blob(plan: ImagePlan, digest: Digest, gone: Set[Digest], dropped: List[Digest]) -> int:
    record = plan.blobs.get(digest)
    if digest in gone or record is None:
        return 0
    gone.add(digest)
    dropped.append(digest)
    return record.length


__all__ = ["PruneOutcome", "prune_by_bytes", "prune_by_duration"]
