"""Which layers an export rewrites, and reading the live blobs out of them.

A layer carried over from the merge base (or an imported image) is rewritten —
its live blobs packed into new layers, the old layer dropped from the manifest —
when:
- `force-compression` is set and the layer's compression differs from the entry's;
- much of the image is dead: dead bytes (entries pruned or superseded) exceed
  DEAD_FRACTION of the image; then every layer of the merge base whose live bytes
  are under LIVE_FRACTION of its size is rewritten (layers mounted from an imported
  image are kept: they take no storage of their own, and reading them costs);
- the image is over keep-bytes: mostly dead layers of any origin are rewritten,
  then further ones from the emptiest up until the estimate fits;
- the image nears the manifest's layer budget: with more than COMPACT_AT layers,
  the smallest are merged until about COMPACT_TO remain.
Layers written by this export are never rewritten.

`spool_live_blobs` streams a whole layer from its home (verifying each blob as it
goes, layer_reader.iter_layer) and keeps the wanted ones in spool files.
"""

from __future__ import annotations

import math
import os
import uuid
from typing import Dict, List, Optional, Set, Tuple

from oci_cache.cache_image.exporting.image_plan import ORIGIN_BASE, ORIGIN_NEW, ImagePlan, LayerRecord
from oci_cache.cache_image.exporting.layer_packer import DEFAULT_MAX_LAYER_BYTES
from oci_cache.digests import Digest
from oci_cache.image_format import Compression, iter_layer
from oci_cache.errors import CacheError
from oci_cache.image_format.manifest import RECOMMENDED_MAX_LAYERS

COMPACT_AT = RECOMMENDED_MAX_LAYERS - 100
COMPACT_TO = RECOMMENDED_MAX_LAYERS - 200
LIVE_FRACTION = 0.5
DEAD_FRACTION = 0.25


def choose_layers_to_rewrite(
    plan: ImagePlan,
    *,
    compression: Compression,
    force_compression: bool,
    keep_bytes: Optional[int] = None,
    compact_at: int = COMPACT_AT,
    compact_to: int = COMPACT_TO,
    max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES,
) -> List[str]:
    live = plan.live_bytes()
    sizes = {digest: record.descriptor.size for digest, record in plan.layers.items()}
    candidates = [d for d in plan.layer_order if plan.layers[d].origin != ORIGIN_NEW]
    chosen: Set[str] = set()
    if force_compression:
        chosen.update(d for d in candidates if plan.layers[d].compression is not compression)
    total = plan.image_bytes()
    dead = sum(sizes[d] - min(live[d], sizes[d]) for d in sizes)
    over_budget = keep_bytes is not None and total > keep_bytes
    if over_budget:
        chosen.update(d for d in candidates if sizes[d] and live[d] < LIVE_FRACTION * sizes[d])
    elif dead > DEAD_FRACTION * total:
        # Layers mounted from an imported image cost no storage of their own: keep them.
        base = [d for d in candidates if plan.layers[d].origin == ORIGIN_BASE]
        chosen.update(d for d in base if sizes[d] and live[d] < LIVE_FRACTION * sizes[d])
    if over_budget:
        assert keep_bytes is not None
        estimate = total - sum(sizes[d] - live[d] for d in chosen)
        for digest in sorted(candidates, key=lambda d: (live[d] / sizes[d]) if sizes[d] else 1.0):
            if estimate <= keep_bytes:
                break
            if digest not in chosen:
                chosen.add(digest)
                estimate -= sizes[digest] - live[digest]
    remaining = len(plan.layer_order) - len(chosen) + _layers_for(sum(live[d] for d in chosen), max_layer_bytes)
    if remaining > compact_at:
        for digest in sorted((d for d in candidates if d not in chosen), key=lambda d: sizes[d]):
            if remaining <= compact_to:
                break
            chosen.add(digest)
            remaining = len(plan.layer_order) - len(chosen) + _layers_for(sum(live[d] for d in chosen), max_layer_bytes)
    return [d for d in plan.layer_order if d in chosen]


def _layers_for(byte_count: int, max_layer_bytes: int) -> int:
    return int(math.ceil(byte_count / max_layer_bytes)) if byte_count else 0


def spool_live_blobs(
    record: LayerRecord, wanted: Set[Digest], spool_directory: str
) -> Tuple[Dict[Digest, str], Optional[Exception]]:
    """Streams the layer from its home and writes each wanted blob (each verified
    by its SHA-256) to a spool file. Returns the paths of the blobs found and the
    error that ended the walk early, if one did (blobs found before it are good)."""
    if record.home is None:
        raise ValueError(f"layer {record.digest} has no home to read it from")
    found: Dict[Digest, str] = {}
    try:
        with record.home.open_blob_stream(record.descriptor.as_digest) as stream:
            for member in iter_layer(stream, record.compression, what=f"layer {record.digest}"):  # type: ignore[arg-type]
                if member.digest not in wanted or member.digest in found:
                    continue
                path = os.path.join(spool_directory, f"spool-{member.digest.hash[:16]}-{uuid.uuid4().hex[:8]}")
                try:
                    with open(path, "wb") as out:
                        for chunk in member.chunks():
                            out.write(chunk)
                except BaseException:
                    os.unlink(path)
                    raise
                found[member.digest] = path
                if len(found) == len(wanted):
                    break
    except CacheError as error:
        return found, error
    return found, None


__all__ = ["COMPACT_AT", "COMPACT_TO", "choose_layers_to_rewrite", "spool_live_blobs"]
