"""A layout removes the blobs nothing references once they have been unreferenced
for the grace period (oci/layout_garbage.py); live images, other tags, readers of the
image a tag just stopped naming and blobs a writer is about to reference are kept."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Set

from oci_fixtures import artifact_manifest, random_blob

from oci_cache.oci import OciLayoutTarget
from oci_cache.oci.layout_garbage import collect_garbage, reachable_blobs
from oci_cache.oci.media_types import OCI_MANIFEST

HOUR = 3600.0

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "cache_image"))
from action_scenario import make_action, store_action  # noqa: E402

from oci_cache.cache_entries import parse_cache_from, parse_cache_to  # noqa: E402
from oci_cache.cache_image import load_cache_image, open_entry_target  # noqa: E402
from oci_cache.cache_image.exporting.exporter import CacheExporter  # noqa: E402
from oci_cache.store.local_store import LocalStore  # noqa: E402


def _blob_names(layout: Path) -> Set[str]:
    return {name for name in os.listdir(layout / "blobs" / "sha256") if not name.startswith(".")}


def _age_everything(layout: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    for name in _blob_names(layout):
        os.utime(layout / "blobs" / "sha256" / name, (stamp, stamp))


def _live(layout: Path) -> Set[str]:
    roots = json.loads((layout / "index.json").read_text())["manifests"]
    return reachable_blobs(layout / "blobs" / "sha256", roots)


def _put_image(target: OciLayoutTarget, tag: str, size: int = 5000) -> str:
    _, layer = random_blob(size)
    return target.put_manifest(tag, OCI_MANIFEST, artifact_manifest(target, layer))


def test_exports_to_a_layout_leave_only_the_live_image_once_the_grace_has_passed(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    entry = parse_cache_to(f"type=local,dest={layout}")
    store = LocalStore(tmp_path / "store", 1 << 30)
    exporter = CacheExporter(store, tmp_path / "work", confirm_delay=0)
    actions = [make_action(seed) for seed in (1, 2, 3, 4)]
    try:
        for recorded in actions[:2]:
            store_action(store, recorded)
            assert exporter.export([entry]).ok
        assert _blob_names(layout) > _live(layout)  # the first image's manifest, config, index
        for recorded in actions[2:]:
            _age_everything(layout, 2 * HOUR)
            previous_image = _live(layout)
            store_action(store, recorded)
            assert exporter.export([entry]).ok
            # Left: the image the tag named until now (its grace starts now); gone: the rest.
            assert _blob_names(layout) - _live(layout) == previous_image - _live(layout) != set()
    finally:
        store.close()
    image = load_cache_image(open_entry_target(parse_cache_from(f"type=local,src={layout}")))
    assert image.index.action_count == len(actions)
    assert all(image.index.find_blob(digest) is not None for recorded in actions for digest in recorded.outputs)
    target = OciLayoutTarget(layout)
    for layer in image.layers:
        assert target.blob_exists(layer.digest) == layer.size


def test_a_reader_of_the_superseded_image_can_read_it_through_the_grace(tmp_path: Path) -> None:
    target = OciLayoutTarget(tmp_path / "layout")
    first = target.get_manifest(target.put_manifest("cache", OCI_MANIFEST, artifact_manifest(target, b"old layer")))
    assert first is not None
    _age_everything(target.path, 2 * HOUR)  # written long ago, superseded only now
    _put_image(target, "cache")
    old_layer = json.loads(first.data)["layers"][0]["digest"]
    assert target.read_blob(old_layer) == b"old layer"
    assert target.read_blob(first.digest) == first.data


def test_orphans_go_after_the_grace_and_blobs_being_reused_stay(tmp_path: Path) -> None:
    target = OciLayoutTarget(tmp_path / "layout")
    _put_image(target, "cache")
    old_orphan, old_data = random_blob(300)
    reused, reused_data = random_blob(400)
    fresh_orphan, fresh_data = random_blob(500)
    target.push_blob(old_orphan, old_data)  # e.g. a layer of an export killed before its manifest
    target.push_blob(reused, reused_data)
    _age_everything(target.path, 2 * HOUR)
    assert target.push_blob(reused, reused_data).name == "PRESENT"  # a writer about to reference it
    target.push_blob(fresh_orphan, fresh_data)  # a concurrent export's new layer
    _put_image(target, "cache")
    assert target.blob_exists(old_orphan) is None
    assert target.blob_exists(reused) == 400 and target.blob_exists(fresh_orphan) == 500


def test_other_tags_are_kept_and_an_unknown_manifest_kind_stops_the_collection(tmp_path: Path) -> None:
    target = OciLayoutTarget(tmp_path / "layout")
    other = _put_image(target, "someone-elses")
    _put_image(target, "cache")
    orphan, data = random_blob(100)
    target.push_blob(orphan, data)
    _age_everything(target.path, 2 * HOUR)
    index_path = target.path / "index.json"
    index = json.loads(index_path.read_text())
    strange = b'{"schemaVersion": 2, "mediaType": "application/vnd.example.unknown+json"}'
    strange_digest = "sha256:" + __import__("hashlib").sha256(strange).hexdigest()
    target.push_blob(strange_digest, strange)
    index["manifests"].append({"mediaType": "application/vnd.example.unknown+json", "digest": strange_digest, "size": len(strange)})
    index_path.write_text(json.dumps(index))
    _put_image(target, "cache")
    assert target.blob_exists(orphan) == 100  # not removed: the walk met a kind it does not know
    report = collect_garbage(target.path / "blobs" / "sha256", json.loads(index_path.read_text())["manifests"], 0)
    assert report.removed_blobs == 0 and "unknown+json" in (report.skipped_because or "")

    index["manifests"] = [m for m in json.loads(index_path.read_text())["manifests"] if m["digest"] != strange_digest]
    index_path.write_text(json.dumps(index))
    _put_image(target, "cache")
    assert target.blob_exists(orphan) is None
    assert target.get_manifest("someone-elses") is not None and target.head_manifest("someone-elses") == other
    for layer in json.loads(target.get_manifest("someone-elses").data)["layers"]:  # type: ignore[union-attr]
        assert target.blob_exists(layer["digest"]) == layer["size"]
