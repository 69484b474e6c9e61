"""A whole cache image, written into an OCI image layout, is accepted by skopeo
(inspect --raw, copy between layouts byte-exactly), and what skopeo copied reads
back through manifest -> config -> index -> per-entry range reads."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from layer_fixtures import make_blob
from oci_cache.digests import Digest
from oci_cache.image_format import manifest as mf
from oci_cache.image_format.compression import Compression
from oci_cache.image_format.entry_index import ActionEntry, BlobEntry, decode_index, encode_index
from oci_cache.image_format.layer_reader import read_blob_range
from oci_cache.image_format.layer_writer import write_layer


def _skopeo() -> str:
    path = shutil.which("skopeo")
    if path is None:
        pytest.fail("skopeo is required (apt-get install skopeo)")
    return path


def _put(root: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / "sha256" / digest).write_bytes(data)
    return digest


def _write_image(root: Path, tmp_path: Path) -> Dict[Digest, bytes]:
    contents: Dict[Digest, bytes] = {}
    layers = []
    entries: List[BlobEntry] = []
    for number, compression in enumerate(Compression):
        blobs: List[Tuple[Digest, bytes]] = []
        for seed in range(3):
            content = make_blob(1000 + 70_000 * seed, 10 * number + seed)
            blobs.append((Digest.of(content), content))
            contents[Digest.of(content)] = content
        layer = write_layer(str(tmp_path / f"layer{number}"), blobs, compression, chunk_size=64 << 10)
        _put(root, Path(layer.path).read_bytes())
        layers.append(layer)
        for entry in layer.entries:
            entries.append(BlobEntry(entry.digest, number, entry.compressed_offset, entry.compressed_length, entry.tar_offset))
    action = ActionEntry(Digest.of(b"action"), next(iter(contents)), 0, 1, 2, True)
    index_layer, index_descriptor = mf.build_index_layer(encode_index([l.digest for l in layers], entries, [action]))
    _put(root, index_layer)
    config = mf.CacheConfig(mf.format_timestamp(1_700_000_000), "max", Compression.ZSTD, index_descriptor, len(layers),
                            len(entries), 1, sum(d.size_bytes for d in contents))
    _put(root, config.to_bytes())
    image = mf.CacheImage(config.descriptor(), tuple(mf.layer_descriptor(l) for l in layers), index_descriptor)
    manifest, media_type = mf.build_manifest(image, created=config.created)
    manifest_digest = _put(root, manifest)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    descriptor = {"mediaType": media_type, "digest": f"sha256:{manifest_digest}", "size": len(manifest),
                  "annotations": {"org.opencontainers.image.ref.name": "cache"}}
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": mf.OCI_INDEX, "manifests": [descriptor]}))
    return contents


def _blob(root: Path, oci_digest: str) -> bytes:
    return (root / "blobs" / "sha256" / oci_digest[len("sha256:") :]).read_bytes()


def test_skopeo_copies_a_cache_image_byte_exactly_and_it_reads_back(tmp_path: Path) -> None:
    skopeo = _skopeo()
    source, copy = tmp_path / "source", tmp_path / "copy"
    contents = _write_image(source, tmp_path)
    raw = subprocess.run([skopeo, "inspect", "--raw", f"oci:{source}:cache"], capture_output=True, check=True).stdout
    subprocess.run([skopeo, "copy", "--quiet", f"oci:{source}:cache", f"oci:{copy}:cache"], check=True)
    copied = subprocess.run([skopeo, "inspect", "--raw", f"oci:{copy}:cache"], capture_output=True, check=True).stdout
    assert copied == raw
    assert sorted(p.name for p in (copy / "blobs" / "sha256").iterdir()) == sorted(
        p.name for p in (source / "blobs" / "sha256").iterdir()
    )

    parsed = mf.parse_manifest(copied)
    config = mf.parse_config(_blob(copy, parsed.config.digest))
    image = mf.resolve_image(parsed, config)
    index = decode_index(mf.read_index_layer(_blob(copy, image.index.digest)))
    assert index.layers == tuple(layer.as_digest for layer in image.layers)
    assert index.blob_count == len(contents) and index.action_count == 1
    for digest, content in contents.items():
        entry = index.find_blob(digest)
        assert entry is not None
        layer = image.layers[entry.layer]
        data = _blob(copy, layer.digest)[entry.compressed_offset : entry.compressed_offset + entry.compressed_length]
        assert read_blob_range(data, digest, mf.layer_compression(layer)) == content
