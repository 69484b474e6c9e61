"""Writes cache images straight from `oci_cache.image_format` pieces, without a server:
synthetic actions (an ActionResult blob referencing output blobs), data layers, the entry
index, config and manifest, pushed to any ImageTarget. For tests of the commands that read
images (inspect, prune) and for bench/oci_bench.py's 100,000-entry image.

    actions = synthetic_actions(count=100, outputs_per_action=2, seed=1)
    built = push_cache_image(target, "cache", actions, workdir=tmp_path, compression=Compression.ZSTD)
    built.manifest_digest, built.blob_count, built.blob_bytes
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from oci_cache.digests import Digest
from oci_cache.image_format.compression import Compression
from oci_cache.image_format.entry_index import ActionEntry, BlobEntry, encode_index
from oci_cache.image_format.layer_writer import write_layer
from oci_cache.image_format.manifest import (
    CacheConfig,
    CacheImage,
    build_index_layer,
    build_manifest,
    format_timestamp,
    layer_descriptor,
)
from oci_cache.oci.target import ImageTarget
from oci_cache.reapi import remote_execution_pb2 as re_pb2


@dataclass(frozen=True)
class SyntheticAction:
    action: Digest
    result: bytes  # a serialized ActionResult
    outputs: Tuple[Tuple[Digest, bytes], ...]  # the blobs the result references
    exit_code: int = 0
    created: int = 0
    last_used: int = 0

    @property
    def result_digest(self) -> Digest:
        return Digest.of(self.result)


def synthetic_actions(
    count: int,
    *,
    outputs_per_action: int = 2,
    min_size: int = 64,
    max_size: int = 4096,
    seed: int = 0,
    now: Optional[int] = None,
    age_spread_seconds: int = 0,
    failed_every: int = 0,
) -> List[SyntheticAction]:
    """`count` actions whose results each reference `outputs_per_action` random blobs
    (sizes log-uniform in [min_size, max_size], incompressible). Action i was created
    and last used `i * age_spread_seconds / count` seconds before `now`; with
    `failed_every` N, every Nth action exits 1."""
    rng = random.Random(seed)
    now = int(time.time()) if now is None else now
    actions = []
    for number in range(count):
        outputs = []
        for output in range(outputs_per_action):
            size = int(round(min_size * (max_size / min_size) ** rng.random()))
            data = rng.getrandbits(8 * size).to_bytes(size, "little") if size else b""
            outputs.append((Digest.of(data), data))
        result = re_pb2.ActionResult(
            exit_code=1 if failed_every and number % failed_every == failed_every - 1 else 0,
            output_files=[
                re_pb2.OutputFile(path=f"out/{number}/{index}", digest=digest.to_proto())
                for index, (digest, _) in enumerate(outputs)
            ],
        )
        action_bytes = f"synthetic action {seed}/{number}".encode()
        age = (number * age_spread_seconds) // max(count, 1)
        actions.append(
            SyntheticAction(
                action=Digest.of(action_bytes),
                result=result.SerializeToString(),
                outputs=tuple(outputs),
                exit_code=result.exit_code,
                created=now - age,
                last_used=now - age,
            )
        )
    return actions


@dataclass(frozen=True)
class BuiltImage:
    manifest_digest: str
    manifest_size: int
    config_size: int
    blob_count: int
    blob_bytes: int
    action_count: int
    layer_sizes: Tuple[int, ...]
    index_size: int
    blobs: Dict[Digest, bytes]


def push_cache_image(
    target: ImageTarget,
    tag: str,
    actions: Sequence[SyntheticAction],
    *,
    workdir: Path,
    compression: Compression = Compression.ZSTD,
    layers: int = 1,
    mode: str = "max",
    oci_mediatypes: bool = True,
    image_manifest: bool = True,
    created: Optional[int] = None,
) -> BuiltImage:
    """Packs the actions' results and outputs into `layers` data layers, pushes them,
    the index, config and manifest, and tags it. Returns what was written."""
    blobs: Dict[Digest, bytes] = {}
    blob_used: Dict[Digest, int] = {}
    blob_min: Dict[Digest, bool] = {}
    for action in actions:
        for digest, data in ((action.result_digest, action.result),) + action.outputs:
            blobs[digest] = data
            blob_used[digest] = max(blob_used.get(digest, 0), action.last_used)
            blob_min[digest] = blob_min.get(digest, False) or action.exit_code == 0
    ordered = list(blobs.items())
    per_layer = max(1, -(-len(ordered) // max(layers, 1)))
    workdir.mkdir(parents=True, exist_ok=True)
    written = []
    for number, start in enumerate(range(0, max(len(ordered), 1), per_layer)):
        path = workdir / f"layer-{number}-{os.getpid()}-{time.monotonic_ns()}"
        written.append(write_layer(str(path), ordered[start : start + per_layer], compression))
    descriptors = tuple(layer_descriptor(layer, oci_mediatypes=oci_mediatypes) for layer in written)
    entries = []
    for number, layer in enumerate(written):
        for item in layer.entries:
            entries.append(
                BlobEntry(
                    item.digest,
                    number,
                    item.compressed_offset,
                    item.compressed_length,
                    item.tar_offset,
                    blob_min[item.digest],
                    blob_used[item.digest],
                )
            )
    action_entries = [
        ActionEntry(a.action, a.result_digest, a.exit_code, a.created, a.last_used, a.exit_code == 0) for a in actions
    ]
    index_blob = encode_index([layer.digest for layer in written], entries, action_entries)
    index_layer, index_descriptor = build_index_layer(index_blob, oci_mediatypes=oci_mediatypes)
    created_text = format_timestamp(time.time() if created is None else created)
    config = CacheConfig(
        created=created_text,
        mode=mode,
        compression=compression,
        index=index_descriptor,
        layer_count=len(written),
        blob_count=len(blobs),
        action_count=len(actions),
        blob_bytes=sum(len(data) for data in blobs.values()),
    )
    config_bytes = config.to_bytes()
    for layer in written:
        target.push_blob(layer.digest, layer.path)
        os.unlink(layer.path)
    target.push_blob(index_descriptor.digest, index_layer)
    target.push_blob(config.descriptor().digest, config_bytes)
    image = CacheImage(config.descriptor(), descriptors, index_descriptor)
    data, media_type = build_manifest(
        image, created=created_text, oci_mediatypes=oci_mediatypes, image_manifest=image_manifest
    )
    digest = target.put_manifest(tag, media_type, data)
    return BuiltImage(
        manifest_digest=digest,
        manifest_size=len(data),
        config_size=len(config_bytes),
        blob_count=len(blobs),
        blob_bytes=config.blob_bytes,
        action_count=len(actions),
        layer_sizes=tuple(layer.digest.size_bytes for layer in written),
        index_size=len(index_layer),
        blobs=blobs,
    )
